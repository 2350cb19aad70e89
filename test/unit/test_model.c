/*
** test_model.c -- randomized model test: long random sequences of every
** public operation, each result checked against an in-memory ordered map.
**
** THE MODEL
** A sorted array of (key, value) pairs with binary search. Keys and values
** are reference-counted blobs, so a copy of the model (one per live
** snapshot, per open iterator, per transaction savepoint) costs an array
** copy, not a copy of the data.
**
** OPERATIONS
** put, delete, write batch (several operations, some on the same key, one
** atomic commit), get, seek, seek_for_prev, full scans both ways, iterators
** with bounds walked at random (while the database keeps changing under
** them), snapshots with reads at old snapshots, flush, compact_range, close
** and reopen, transactions (reads see own writes, savepoints, rollback_to,
** release, commit or rollback, and the BUSY of a stale snapshot), oversized
** keys. Keys come from a small space (so overwrites and deletes hit) with
** the empty key, keys that are prefixes of others, bytes 0x00 and 0xff, and
** a few long keys; values range from empty to 100 KiB.
**
** VARIANTS
** Small memtables (64 KiB) and data blocks make flushes frequent. One
** variant disables compaction so L0 files pile up (and the table cache is
** smaller than the number of tables); one runs compaction without
** compression or bloom filters; one uses sync=off, changes compression at
** every reopen and reopens often (close must write the buffered WAL).
**
** REPLAY
** Each variant prints its seed; STRATA_SEED=<seed> replays it exactly.
** STRATA_SOAK multiplies the number of operations by 10.
*/
#include "strata.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdint.h>

#define MAX_NKEY 4000   /* the largest key space of a variant */
#define MAX_SNAP 4      /* live snapshots at a time */
#define MAX_SAVEPOINT 8 /* savepoints per transaction */
#define LARGE_VALUE (100 * 1024)

/* BLOBS */

typedef struct Blob {
  int nRef;
  size_t n;
  unsigned char a[];
} Blob;

static Blob *blob_new(const void *p, size_t n) {
  Blob *b = malloc(sizeof(Blob) + n + 1);
  if (!b) {
    fprintf(stderr, "test_model: out of memory\n");
    exit(2);
  }
  b->nRef = 1;
  b->n = n;
  if (n && p) memcpy(b->a, p, n);
  return b;
}

static Blob *blob_ref(Blob *b) {
  b->nRef++;
  return b;
}

static void blob_unref(Blob *b) {
  if (b && --b->nRef == 0) free(b);
}

/* Key order: memcmp, a prefix before the longer key. */
static int key_cmp(const void *a, size_t na, const void *b, size_t nb) {
  size_t n = na < nb ? na : nb;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return na < nb ? -1 : (na > nb ? 1 : 0);
}

/* THE MODEL: a sorted array. */

typedef struct Entry {
  Blob *k;
  Blob *v;
} Entry;

typedef struct Model {
  Entry *a;
  int n, nAlloc;
} Model;

/* Index of the first entry with key >= k. */
static int model_lower(const Model *m, const void *k, size_t n) {
  int lo = 0, hi = m->n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (key_cmp(m->a[mid].k->a, m->a[mid].k->n, k, n) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* Index of the first entry with key > k. */
static int model_upper(const Model *m, const void *k, size_t n) {
  int i = model_lower(m, k, n);
  if (i < m->n && key_cmp(m->a[i].k->a, m->a[i].k->n, k, n) == 0) i++;
  return i;
}

static const Entry *model_get(const Model *m, const void *k, size_t n) {
  int i = model_lower(m, k, n);
  if (i < m->n && key_cmp(m->a[i].k->a, m->a[i].k->n, k, n) == 0) return &m->a[i];
  return NULL;
}

/* Set k to v (takes a new reference to both). */
static void model_put(Model *m, Blob *k, Blob *v) {
  int i = model_lower(m, k->a, k->n);
  if (i < m->n && key_cmp(m->a[i].k->a, m->a[i].k->n, k->a, k->n) == 0) {
    blob_unref(m->a[i].v);
    m->a[i].v = blob_ref(v);
    return;
  }
  if (m->n == m->nAlloc) {
    m->nAlloc = m->nAlloc ? m->nAlloc * 2 : 64;
    m->a = realloc(m->a, sizeof(Entry) * (size_t)m->nAlloc);
    if (!m->a) exit(2);
  }
  memmove(&m->a[i + 1], &m->a[i], sizeof(Entry) * (size_t)(m->n - i));
  m->a[i].k = blob_ref(k);
  m->a[i].v = blob_ref(v);
  m->n++;
}

static void model_del(Model *m, const Blob *k) {
  int i = model_lower(m, k->a, k->n);
  if (i < m->n && key_cmp(m->a[i].k->a, m->a[i].k->n, k->a, k->n) == 0) {
    blob_unref(m->a[i].k);
    blob_unref(m->a[i].v);
    memmove(&m->a[i], &m->a[i + 1], sizeof(Entry) * (size_t)(m->n - i - 1));
    m->n--;
  }
}

static void model_clear(Model *m) {
  int i;
  for (i = 0; i < m->n; i++) {
    blob_unref(m->a[i].k);
    blob_unref(m->a[i].v);
  }
  free(m->a);
  memset(m, 0, sizeof(*m));
}

/* dst = src (dst's old contents are released). */
static void model_copy(Model *dst, const Model *src) {
  int i;
  model_clear(dst);
  dst->nAlloc = src->n ? src->n : 1;
  dst->a = malloc(sizeof(Entry) * (size_t)dst->nAlloc);
  if (!dst->a) exit(2);
  for (i = 0; i < src->n; i++) {
    dst->a[i].k = blob_ref(src->a[i].k);
    dst->a[i].v = blob_ref(src->a[i].v);
  }
  dst->n = src->n;
}

/* THE TEST CONTEXT */

typedef struct Snap {
  const strata_snapshot *p;
  Model m;
} Snap;

typedef struct Variant {
  const char *zName;
  int compression;
  int sync;
  int bDisableCompaction;
  size_t blockSize;
  int bloomBits;
  size_t cacheSize;
  int maxOpenFiles;
  int reopenPerMille;     /* weight of close + reopen */
  int bToggleCompression; /* switch compression at each reopen */
  int compactPerMille;    /* weight of compact_range */
  int nMaxL0;             /* compact everything when L0 holds more tables (0: never) */
  int nKey;               /* size of the key space */
  long nOp;
} Variant;

typedef struct Ctx {
  const Variant *pVar;
  TestRng rng;
  char zDir[4096];
  strata_options opts;
  strata *db;
  strata_batch *pBatch;
  Model m;
  Blob *aKey[MAX_NKEY];
  int nKey; /* size of the key space */
  Snap aSnap[MAX_SNAP];
  int nSnap;
  long iOp;
  int bStop;
  uint64_t nValSeq; /* makes every value written distinct */
  strata_value val;
  /* What the run exercised (printed at the end). */
  long nFlush, nReopen, nTxnCommit, nTxnRollback, nLarge, nIterStep, nMaxL0;
  long nCompaction; /* engine compactions, summed over reopens */
} Ctx;

static const char *hexz(const void *p, size_t n) {
  static char az[4][200];
  static int i;
  char *z = az[i++ & 3];
  size_t j, k = 0;
  for (j = 0; j < n && k < sizeof(az[0]) - 12; j++)
    k += (size_t)sprintf(z + k, "%02x", ((const unsigned char *)p)[j]);
  if (j < n) k += (size_t)sprintf(z + k, "..(%zu)", n);
  if (n == 0)
    sprintf(z, "(empty)");
  else
    z[k] = 0;
  return z;
}

/* Record a failed check with the operation number and stop the variant
** (one failure tends to cascade). Returns 0. */
static int fail_at(Ctx *x, int line, const char *zCond, const char *zFmt, ...) {
  va_list ap;
  tu_curFail++;
  if (tu_curFail <= 10) {
    fprintf(stderr, "  %s:%d: %s op %ld: CHECK(%s) failed: ", __FILE__, line, x->pVar->zName,
            x->iOp, zCond);
    va_start(ap, zFmt);
    vfprintf(stderr, zFmt, ap);
    va_end(ap);
    fprintf(stderr, " [rc msg: %s]\n", strata_errmsg());
  }
  x->bStop = 1;
  return 0;
}
#define MCHECK(x, c, ...) ((c) ? 1 : fail_at((x), __LINE__, #c, __VA_ARGS__))

/* KEYS AND VALUES */

static const unsigned char aAlpha[] = {0x00, 0x01, 'a', 'b', 'c', 0x7f, 0x80, 0xff};

static size_t gen_key_bytes(Ctx *x, unsigned char *z, size_t nMax) {
  size_t n, i;
  uint64_t r = test_randn(&x->rng, 100);
  if (r < 3) {
    n = 100 + (size_t)test_randn(&x->rng, 1900); /* a long key */
  } else {
    n = 1 + (size_t)test_randn(&x->rng, 12);
  }
  if (n > nMax) n = nMax;
  for (i = 0; i < n; i++) z[i] = aAlpha[test_randn(&x->rng, sizeof(aAlpha))];
  return n;
}

/* The key space: the empty key, keys that extend earlier keys (prefix
** chains), short keys over a small alphabet and a few long ones. */
static void make_keys(Ctx *x) {
  unsigned char z[4096];
  int i = 0, j;
  x->aKey[i++] = blob_new("", 0);
  while (i < x->nKey) {
    size_t n;
    if (test_randn(&x->rng, 100) < 30) {
      const Blob *pBase = x->aKey[test_randn(&x->rng, (uint64_t)i)];
      size_t nExt = 1 + (size_t)test_randn(&x->rng, 3);
      if (pBase->n + nExt > sizeof(z)) continue;
      memcpy(z, pBase->a, pBase->n);
      for (j = 0; j < (int)nExt; j++)
        z[pBase->n + (size_t)j] = aAlpha[test_randn(&x->rng, sizeof(aAlpha))];
      n = pBase->n + nExt;
    } else {
      n = gen_key_bytes(x, z, sizeof(z));
    }
    for (j = 0; j < i; j++) {
      if (key_cmp(x->aKey[j]->a, x->aKey[j]->n, z, n) == 0) break;
    }
    if (j == i) x->aKey[i++] = blob_new(z, n);
  }
}

/* A key to write: from the key space. */
static Blob *pick_key(Ctx *x) {
  return x->aKey[test_randn(&x->rng, (uint64_t)x->nKey)];
}

/* A key to look up or seek to: usually from the key space, sometimes new. */
static Blob *probe_key(Ctx *x) {
  unsigned char z[4096];
  if (test_randn(&x->rng, 100) < 75) return blob_ref(pick_key(x));
  return blob_new(z, gen_key_bytes(x, z, sizeof(z)));
}

static Blob *make_value(Ctx *x) {
  uint64_t r = test_randn(&x->rng, 1000);
  size_t n, i;
  Blob *b;
  if (r < 100) {
    n = 0;
  } else if (r < 500) {
    n = 1 + (size_t)test_randn(&x->rng, 32);
  } else if (r < 850) {
    n = 33 + (size_t)test_randn(&x->rng, 600);
  } else if (r < 995) {
    n = 600 + (size_t)test_randn(&x->rng, 3400);
  } else {
    n = LARGE_VALUE;
    x->nLarge++;
  }
  b = blob_new(NULL, n);
  for (i = 0; i + 8 <= n; i += 8) {
    uint64_t w = test_rand(&x->rng);
    memcpy(b->a + i, &w, 8);
  }
  for (; i < n; i++) b->a[i] = (unsigned char)test_rand(&x->rng);
  /* The first bytes are a counter, so no two values written are equal. */
  x->nValSeq++;
  if (n >= 8) memcpy(b->a, &x->nValSeq, 8);
  return b;
}

/* CHECKS */

static void check_get(Ctx *x, const Model *m, const strata_snapshot *s, const Blob *k) {
  const Entry *e = model_get(m, k->a, k->n);
  int rc = strata_get(x->db, s, k->a, k->n, &x->val);
  if (e) {
    if (MCHECK(x, rc == STRATA_OK, "get %s%s: rc=%d, expected a value of %zu bytes",
               hexz(k->a, k->n), s ? " at snapshot" : "", rc, e->v->n)) {
      MCHECK(x, x->val.n == e->v->n && (e->v->n == 0 || memcmp(x->val.p, e->v->a, e->v->n) == 0),
             "get %s%s: wrong value (%zu bytes %s, expected %zu bytes %s)", hexz(k->a, k->n),
             s ? " at snapshot" : "", x->val.n, hexz(x->val.p, x->val.n < 16 ? x->val.n : 16),
             e->v->n, hexz(e->v->a, e->v->n < 16 ? e->v->n : 16));
    }
  } else {
    MCHECK(x, rc == STRATA_NOTFOUND, "get %s%s: rc=%d, expected NOTFOUND", hexz(k->a, k->n),
           s ? " at snapshot" : "", rc);
  }
}

/* The iterator must be at model entry pos if lo <= pos < hi, else invalid. */
static void check_iter(Ctx *x, strata_iter *it, const Model *m, int pos, int lo, int hi,
                       const char *zStep) {
  x->nIterStep++;
  if (pos >= lo && pos < hi) {
    const Entry *e = &m->a[pos];
    size_t nK = 0, nV = 0;
    const void *pK, *pV;
    if (!MCHECK(x, strata_iter_valid(it), "%s: iterator invalid (status %d), expected key %s",
                zStep, strata_iter_status(it), hexz(e->k->a, e->k->n))) {
      return;
    }
    pK = strata_iter_key(it, &nK);
    pV = strata_iter_value(it, &nV);
    if (!MCHECK(x, key_cmp(pK, nK, e->k->a, e->k->n) == 0, "%s: key %s, expected %s", zStep,
                hexz(pK, nK), hexz(e->k->a, e->k->n))) {
      return;
    }
    MCHECK(x, nV == e->v->n && (nV == 0 || memcmp(pV, e->v->a, nV) == 0),
           "%s: key %s: value of %zu bytes differs (expected %zu bytes)", zStep, hexz(pK, nK), nV,
           e->v->n);
  } else {
    size_t nK = 0;
    const void *pK = strata_iter_valid(it) ? strata_iter_key(it, &nK) : "";
    MCHECK(x, !strata_iter_valid(it), "%s: iterator at %s, expected the end", zStep, hexz(pK, nK));
    MCHECK(x, strata_iter_status(it) == STRATA_OK, "%s: status %d", zStep, strata_iter_status(it));
  }
}

/* Full scan forward then backward. */
static void check_scan(Ctx *x, strata_iter *it, const Model *m, int lo, int hi) {
  int pos;
  strata_iter_seek_first(it);
  for (pos = lo; !x->bStop; pos++) {
    check_iter(x, it, m, pos, lo, hi, "scan forward");
    if (pos >= hi || !strata_iter_valid(it)) break;
    strata_iter_next(it);
  }
  strata_iter_seek_last(it);
  for (pos = hi - 1; !x->bStop; pos--) {
    check_iter(x, it, m, pos < lo ? -1 : pos, lo, hi, "scan backward");
    if (pos < lo || !strata_iter_valid(it)) break;
    strata_iter_prev(it);
  }
}

/* Random bounds; sets the model range [*pLo, *pHi). The bounds' blobs are
** returned in apB (to be released by the caller) since ro points into them. */
static void pick_bounds(Ctx *x, const Model *m, strata_read_options *ro, Blob **apB, int *pLo,
                        int *pHi) {
  uint64_t r = test_randn(&x->rng, 4);
  apB[0] = apB[1] = NULL;
  *pLo = 0;
  *pHi = m->n;
  if (r & 1) {
    apB[0] = probe_key(x);
    ro->lower = apB[0]->a;
    ro->nLower = apB[0]->n;
    *pLo = model_lower(m, apB[0]->a, apB[0]->n);
  }
  if (r & 2) {
    apB[1] = probe_key(x);
    ro->upper = apB[1]->a;
    ro->nUpper = apB[1]->n;
    *pHi = model_lower(m, apB[1]->a, apB[1]->n);
  }
  if (*pHi < *pLo) *pHi = *pLo; /* lower > upper: an empty range */
}

static void do_write_op(Ctx *x); /* a random put or delete, for walks */

/* Walk an iterator at random over the frozen model m, comparing every
** step. If bMutate, the database changes during the walk (the iterator
** must not see it). */
static void iter_walk(Ctx *x, strata_iter *it, const Model *m, int lo, int hi, int nStep,
                      int bMutate) {
  int pos = -1, i;
  for (i = 0; i < nStep && !x->bStop; i++) {
    uint64_t r = test_randn(&x->rng, 100);
    int bValid = pos >= lo && pos < hi;
    if (bMutate && r < 5) {
      if (test_randn(&x->rng, 8) == 0) {
        MCHECK(x, strata_flush(x->db) == STRATA_OK, "flush during a walk");
        x->nFlush++;
      } else {
        do_write_op(x);
      }
      continue;
    }
    if (bValid && r < 45) {
      strata_iter_next(it);
      pos++;
      check_iter(x, it, m, pos, lo, hi, "next");
    } else if (bValid && r < 75) {
      strata_iter_prev(it);
      pos--;
      check_iter(x, it, m, pos, lo, hi, "prev");
    } else if (r < 82) {
      strata_iter_seek_first(it);
      pos = lo;
      check_iter(x, it, m, pos, lo, hi, "seek_first");
    } else if (r < 87) {
      strata_iter_seek_last(it);
      pos = hi - 1;
      check_iter(x, it, m, pos, lo, hi, "seek_last");
    } else if (r < 94) {
      Blob *k = probe_key(x);
      char zStep[300];
      strata_iter_seek(it, k->a, k->n);
      pos = model_lower(m, k->a, k->n);
      if (pos < lo) pos = lo;
      snprintf(zStep, sizeof(zStep), "seek %s", hexz(k->a, k->n));
      check_iter(x, it, m, pos, lo, hi, zStep);
      blob_unref(k);
    } else {
      Blob *k = probe_key(x);
      char zStep[300];
      strata_iter_seek_for_prev(it, k->a, k->n);
      pos = model_upper(m, k->a, k->n) - 1;
      if (pos >= hi) pos = hi - 1;
      snprintf(zStep, sizeof(zStep), "seek_for_prev %s", hexz(k->a, k->n));
      check_iter(x, it, m, pos < lo ? -1 : pos, lo, hi, zStep);
      if (pos < lo) pos = -1;
      blob_unref(k);
    }
    if (!(pos >= lo && pos < hi)) pos = -1;
  }
}

/* OPEN AND CLOSE */

static void db_open(Ctx *x) {
  int rc = strata_open(x->zDir, &x->opts, &x->db);
  MCHECK(x, rc == STRATA_OK, "open %s: rc=%d", x->zDir, rc);
}

static void release_snapshots(Ctx *x) {
  while (x->nSnap > 0) {
    x->nSnap--;
    strata_snapshot_release(x->db, x->aSnap[x->nSnap].p);
    model_clear(&x->aSnap[x->nSnap].m);
  }
}

static void full_check(Ctx *x) {
  strata_iter *it = NULL;
  int rc = strata_iter_new(x->db, NULL, &it);
  if (MCHECK(x, rc == STRATA_OK, "iter_new: rc=%d", rc)) check_scan(x, it, &x->m, 0, x->m.n);
  strata_iter_free(it);
}

static void do_reopen(Ctx *x) {
  int rc;
  if (x->nSnap > 0 && test_randn(&x->rng, 2)) {
    /* Closing with a live snapshot is refused, and the handle stays usable. */
    rc = strata_close(x->db);
    MCHECK(x, rc == STRATA_MISUSE, "close with a live snapshot: rc=%d", rc);
  }
  release_snapshots(x);
  {
    strata_stats st;
    if (strata_get_stats(x->db, &st) == STRATA_OK) x->nCompaction += (long)st.compactions;
  }
  rc = strata_close(x->db);
  x->db = NULL;
  MCHECK(x, rc == STRATA_OK, "close: rc=%d", rc);
  if (x->pVar->bToggleCompression) {
    x->opts.compression = x->opts.compression == STRATA_COMPRESSION_ZSTD ? STRATA_COMPRESSION_NONE
                                                                         : STRATA_COMPRESSION_ZSTD;
  }
  db_open(x);
  x->nReopen++;
  if (x->db) full_check(x);
}

/* OPERATIONS */

static void do_put(Ctx *x) {
  Blob *k = pick_key(x), *v = make_value(x);
  int rc = strata_put(x->db, k->a, k->n, v->a, v->n);
  if (MCHECK(x, rc == STRATA_OK, "put %s (%zu bytes): rc=%d", hexz(k->a, k->n), v->n, rc)) {
    model_put(&x->m, k, v);
  }
  blob_unref(v);
}

static void do_delete(Ctx *x) {
  Blob *k = pick_key(x);
  int rc = strata_delete(x->db, k->a, k->n);
  if (MCHECK(x, rc == STRATA_OK, "delete %s: rc=%d", hexz(k->a, k->n), rc)) model_del(&x->m, k);
}

static void do_write_op(Ctx *x) {
  if (test_randn(&x->rng, 4) == 0) {
    do_delete(x);
  } else {
    do_put(x);
  }
}

static void do_batch(Ctx *x) {
  int nOp = (int)test_randn(&x->rng, 12), i, rc;
  Blob *aK[12], *aV[12];
  strata_batch_clear(x->pBatch);
  for (i = 0; i < nOp; i++) {
    /* Sometimes the same key again: the later operation must win. */
    aK[i] =
        (i > 0 && test_randn(&x->rng, 5) == 0) ? aK[test_randn(&x->rng, (uint64_t)i)] : pick_key(x);
    if (test_randn(&x->rng, 3) == 0) {
      aV[i] = NULL;
      rc = strata_batch_delete(x->pBatch, aK[i]->a, aK[i]->n);
    } else {
      aV[i] = make_value(x);
      rc = strata_batch_put(x->pBatch, aK[i]->a, aK[i]->n, aV[i]->a, aV[i]->n);
    }
    MCHECK(x, rc == STRATA_OK, "batch op: rc=%d", rc);
  }
  MCHECK(x, strata_batch_count(x->pBatch) == (size_t)nOp, "batch count %zu, expected %d",
         strata_batch_count(x->pBatch), nOp);
  rc = strata_write(x->db, x->pBatch);
  if (MCHECK(x, rc == STRATA_OK, "write batch of %d: rc=%d", nOp, rc)) {
    for (i = 0; i < nOp; i++) {
      if (aV[i]) {
        model_put(&x->m, aK[i], aV[i]);
      } else {
        model_del(&x->m, aK[i]);
      }
    }
  }
  for (i = 0; i < nOp; i++) blob_unref(aV[i]);
}

static void do_get(Ctx *x) {
  Blob *k = probe_key(x);
  check_get(x, &x->m, NULL, k);
  blob_unref(k);
}

static void do_seek(Ctx *x, int bForPrev) {
  strata_iter *it = NULL;
  Blob *k = probe_key(x);
  int rc = strata_iter_new(x->db, NULL, &it), pos;
  char zStep[300];
  if (MCHECK(x, rc == STRATA_OK, "iter_new: rc=%d", rc)) {
    if (bForPrev) {
      strata_iter_seek_for_prev(it, k->a, k->n);
      pos = model_upper(&x->m, k->a, k->n) - 1;
    } else {
      strata_iter_seek(it, k->a, k->n);
      pos = model_lower(&x->m, k->a, k->n);
    }
    snprintf(zStep, sizeof(zStep), "%s %s", bForPrev ? "seek_for_prev" : "seek", hexz(k->a, k->n));
    check_iter(x, it, &x->m, pos, 0, x->m.n, zStep);
    /* A couple of steps on from there. */
    if (pos >= 0 && pos < x->m.n && !x->bStop) {
      if (bForPrev) {
        strata_iter_prev(it);
        check_iter(x, it, &x->m, pos - 1, 0, x->m.n, "prev after seek_for_prev");
      } else {
        strata_iter_next(it);
        check_iter(x, it, &x->m, pos + 1, 0, x->m.n, "next after seek");
      }
    }
  }
  strata_iter_free(it);
  blob_unref(k);
}

/* An iterator with random bounds, walked at random; sometimes at a
** snapshot, sometimes while the database changes. */
static void do_iter_walk(Ctx *x, int bAtSnapshot) {
  strata_read_options ro;
  strata_iter *it = NULL;
  Blob *apB[2];
  Model frozen = {0};
  const Model *m = &x->m;
  int lo, hi, rc, bMutate = 0;
  strata_read_options_init(&ro);
  if (bAtSnapshot && x->nSnap > 0) {
    Snap *s = &x->aSnap[test_randn(&x->rng, (uint64_t)x->nSnap)];
    ro.snapshot = s->p;
    m = &s->m;
    bMutate = test_randn(&x->rng, 2);
  } else if (test_randn(&x->rng, 3) == 0) {
    model_copy(&frozen, &x->m);
    m = &frozen;
    bMutate = 1;
  }
  ro.fill_cache = (int)test_randn(&x->rng, 2);
  pick_bounds(x, m, &ro, apB, &lo, &hi);
  rc = strata_iter_new(x->db, &ro, &it);
  if (MCHECK(x, rc == STRATA_OK, "iter_new: rc=%d", rc)) {
    if (test_randn(&x->rng, 4) == 0) {
      check_scan(x, it, m, lo, hi);
    } else {
      iter_walk(x, it, m, lo, hi, 10 + (int)test_randn(&x->rng, 60), bMutate);
    }
  }
  strata_iter_free(it);
  blob_unref(apB[0]);
  blob_unref(apB[1]);
  model_clear(&frozen);
}

static void do_snapshot_new(Ctx *x) {
  Snap *s;
  if (x->nSnap == MAX_SNAP) {
    /* Release a random one to make room. */
    int i = (int)test_randn(&x->rng, MAX_SNAP);
    strata_snapshot_release(x->db, x->aSnap[i].p);
    model_clear(&x->aSnap[i].m);
    x->aSnap[i] = x->aSnap[--x->nSnap];
  }
  s = &x->aSnap[x->nSnap];
  memset(s, 0, sizeof(*s));
  s->p = strata_snapshot_new(x->db);
  if (!MCHECK(x, s->p != NULL, "snapshot_new returned NULL")) return;
  model_copy(&s->m, &x->m);
  x->nSnap++;
}

static void do_snapshot_read(Ctx *x) {
  Snap *s;
  Blob *k;
  if (x->nSnap == 0) return;
  s = &x->aSnap[test_randn(&x->rng, (uint64_t)x->nSnap)];
  k = probe_key(x);
  check_get(x, &s->m, s->p, k);
  blob_unref(k);
}

static void do_snapshot_release(Ctx *x) {
  int i;
  if (x->nSnap == 0) return;
  i = (int)test_randn(&x->rng, (uint64_t)x->nSnap);
  strata_snapshot_release(x->db, x->aSnap[i].p);
  model_clear(&x->aSnap[i].m);
  x->aSnap[i] = x->aSnap[--x->nSnap];
}

static void do_flush(Ctx *x) {
  strata_stats st;
  int rc = strata_flush(x->db);
  MCHECK(x, rc == STRATA_OK, "flush: rc=%d", rc);
  x->nFlush++;
  if (strata_get_stats(x->db, &st) == STRATA_OK) {
    if (st.level_files[0] > x->nMaxL0) x->nMaxL0 = st.level_files[0];
    if (x->pVar->nMaxL0 && st.level_files[0] > x->pVar->nMaxL0) {
      /* Keep reads from slowing down without end. */
      rc = strata_compact_range(x->db, NULL, 0, NULL, 0);
      MCHECK(x, rc == STRATA_OK, "compact_range: rc=%d", rc);
      if (strata_get_stats(x->db, &st) == STRATA_OK) {
        MCHECK(x, st.level_files[0] == 0, "%d L0 tables after a full compact_range",
               st.level_files[0]);
      }
    }
  }
}

static void do_compact_range(Ctx *x) {
  Blob *lo = test_randn(&x->rng, 3) ? probe_key(x) : NULL;
  Blob *hi = test_randn(&x->rng, 3) ? probe_key(x) : NULL;
  int rc;
  if (lo && hi && key_cmp(lo->a, lo->n, hi->a, hi->n) > 0) {
    Blob *t = lo;
    lo = hi;
    hi = t;
  }
  rc = strata_compact_range(x->db, lo ? lo->a : NULL, lo ? lo->n : 0, hi ? hi->a : NULL,
                            hi ? hi->n : 0);
  MCHECK(x, rc == STRATA_OK, "compact_range: rc=%d", rc);
  blob_unref(lo);
  blob_unref(hi);
}

/* Keys and values that break the limits are refused and change nothing. */
static void do_toobig(Ctx *x) {
  static unsigned char aBig[STRATA_MAX_KEY + 1];
  int rc = strata_put(x->db, aBig, sizeof(aBig), "v", 1);
  MCHECK(x, rc == STRATA_TOOBIG, "put of an oversized key: rc=%d", rc);
  rc = strata_delete(x->db, aBig, sizeof(aBig));
  MCHECK(x, rc == STRATA_TOOBIG, "delete of an oversized key: rc=%d", rc);
  rc = strata_get(x->db, NULL, aBig, sizeof(aBig), &x->val);
  MCHECK(x, rc == STRATA_NOTFOUND, "get of an oversized key: rc=%d", rc);
  /* An empty batch commits nothing. */
  strata_batch_clear(x->pBatch);
  rc = strata_write(x->db, x->pBatch);
  MCHECK(x, rc == STRATA_OK, "write of an empty batch: rc=%d", rc);
}

/* A transaction checked against its own view of the model, with a stack
** of views for its savepoints. */
static void do_txn(Ctx *x) {
  strata_txn *t = NULL;
  Model view = {0};
  Model aSp[MAX_SAVEPOINT];
  size_t aSpCount[MAX_SAVEPOINT];
  size_t nBuffered = 0;
  int nSp = 0, i, rc, nStep = 1 + (int)test_randn(&x->rng, 30);
  int flags = test_randn(&x->rng, 2) ? STRATA_TXN_WRITE : STRATA_TXN_READ;

  memset(aSp, 0, sizeof(aSp));
  rc = strata_txn_begin(x->db, flags, &t);
  if (!MCHECK(x, rc == STRATA_OK, "txn_begin: rc=%d", rc)) return;
  model_copy(&view, &x->m);

  if (flags == STRATA_TXN_READ && test_randn(&x->rng, 10) == 0) {
    /* A commit after the snapshot: the transaction's first write is BUSY,
    ** and its reads stay at the snapshot. */
    Blob *k = pick_key(x), *v = make_value(x);
    rc = strata_put(x->db, k->a, k->n, v->a, v->n);
    if (MCHECK(x, rc == STRATA_OK, "put beside a read transaction: rc=%d", rc))
      model_put(&x->m, k, v);
    rc = strata_txn_put(t, k->a, k->n, "x", 1);
    MCHECK(x, rc == STRATA_BUSY, "txn_put on a stale snapshot: rc=%d, expected BUSY", rc);
    {
      const Entry *e = model_get(&view, k->a, k->n);
      rc = strata_txn_get(t, k->a, k->n, &x->val);
      if (e) {
        MCHECK(x,
               rc == STRATA_OK && x->val.n == e->v->n &&
                   (e->v->n == 0 || memcmp(x->val.p, e->v->a, e->v->n) == 0),
               "txn_get after BUSY: rc=%d, expected the snapshot's value", rc);
      } else {
        MCHECK(x, rc == STRATA_NOTFOUND, "txn_get after BUSY: rc=%d, expected NOTFOUND", rc);
      }
    }
    blob_unref(v);
    strata_txn_rollback(t);
    model_clear(&view);
    x->nTxnRollback++;
    return;
  }

  for (i = 0; i < nStep && !x->bStop; i++) {
    uint64_t r = test_randn(&x->rng, 100);
    if (r < 35) {
      Blob *k = pick_key(x), *v = make_value(x);
      rc = strata_txn_put(t, k->a, k->n, v->a, v->n);
      if (MCHECK(x, rc == STRATA_OK, "txn_put: rc=%d", rc)) {
        model_put(&view, k, v);
        nBuffered++;
      }
      blob_unref(v);
    } else if (r < 50) {
      Blob *k = pick_key(x);
      rc = strata_txn_delete(t, k->a, k->n);
      if (MCHECK(x, rc == STRATA_OK, "txn_delete: rc=%d", rc)) {
        model_del(&view, k);
        nBuffered++;
      }
    } else if (r < 72) {
      Blob *k = probe_key(x);
      const Entry *e = model_get(&view, k->a, k->n);
      rc = strata_txn_get(t, k->a, k->n, &x->val);
      if (e) {
        if (MCHECK(x, rc == STRATA_OK, "txn_get %s: rc=%d, expected a value", hexz(k->a, k->n),
                   rc)) {
          MCHECK(x,
                 x->val.n == e->v->n && (e->v->n == 0 || memcmp(x->val.p, e->v->a, e->v->n) == 0),
                 "txn_get %s: wrong value", hexz(k->a, k->n));
        }
      } else {
        MCHECK(x, rc == STRATA_NOTFOUND, "txn_get %s: rc=%d, expected NOTFOUND", hexz(k->a, k->n),
               rc);
      }
      blob_unref(k);
    } else if (r < 78) {
      /* Uncommitted writes are invisible outside the transaction. */
      Blob *k = probe_key(x);
      check_get(x, &x->m, NULL, k);
      blob_unref(k);
    } else if (r < 85) {
      if (nSp < MAX_SAVEPOINT) {
        int iSp = -1;
        rc = strata_txn_savepoint(t, &iSp);
        if (MCHECK(x, rc == STRATA_OK && iSp == nSp, "savepoint: rc=%d, number %d (expected %d)",
                   rc, iSp, nSp)) {
          model_copy(&aSp[nSp], &view);
          aSpCount[nSp] = nBuffered;
          nSp++;
        }
      }
    } else if (r < 90) {
      if (nSp > 0) {
        int iSp = (int)test_randn(&x->rng, (uint64_t)nSp), j;
        rc = strata_txn_rollback_to(t, iSp);
        if (MCHECK(x, rc == STRATA_OK, "rollback_to %d: rc=%d", iSp, rc)) {
          model_copy(&view, &aSp[iSp]);
          nBuffered = aSpCount[iSp];
          for (j = iSp + 1; j < nSp; j++) model_clear(&aSp[j]);
          nSp = iSp + 1;
        }
      }
    } else if (r < 93) {
      if (nSp > 0) {
        int iSp = (int)test_randn(&x->rng, (uint64_t)nSp), j;
        rc = strata_txn_release(t, iSp);
        if (MCHECK(x, rc == STRATA_OK, "release %d: rc=%d", iSp, rc)) {
          for (j = iSp; j < nSp; j++) model_clear(&aSp[j]);
          nSp = iSp;
        }
      }
    } else {
      /* The transaction's iterator: its snapshot merged with its writes,
      ** including writes made after the iterator was created. */
      strata_read_options ro;
      strata_iter *it = NULL;
      Blob *apB[2];
      int lo, hi;
      strata_read_options_init(&ro);
      pick_bounds(x, &view, &ro, apB, &lo, &hi);
      rc = strata_txn_iter_new(t, &ro, &it);
      if (MCHECK(x, rc == STRATA_OK, "txn_iter_new: rc=%d", rc)) {
        if (test_randn(&x->rng, 2)) {
          Blob *k = pick_key(x), *v = make_value(x);
          rc = strata_txn_put(t, k->a, k->n, v->a, v->n);
          if (MCHECK(x, rc == STRATA_OK, "txn_put: rc=%d", rc)) {
            model_put(&view, k, v);
            nBuffered++;
          }
          blob_unref(v);
          /* The bounds' range in the model may have moved. */
          lo = ro.lower ? model_lower(&view, ro.lower, ro.nLower) : 0;
          hi = ro.upper ? model_lower(&view, ro.upper, ro.nUpper) : view.n;
          if (hi < lo) hi = lo;
        }
        if (test_randn(&x->rng, 2)) {
          check_scan(x, it, &view, lo, hi);
        } else {
          iter_walk(x, it, &view, lo, hi, 5 + (int)test_randn(&x->rng, 30), 0);
        }
      }
      strata_iter_free(it);
      blob_unref(apB[0]);
      blob_unref(apB[1]);
    }
    MCHECK(x, strata_txn_count(t) == nBuffered, "txn_count %zu, expected %zu", strata_txn_count(t),
           nBuffered);
  }

  if (test_randn(&x->rng, 10) < 7) {
    rc = strata_txn_commit(t);
    if (MCHECK(x, rc == STRATA_OK, "txn_commit: rc=%d", rc)) model_copy(&x->m, &view);
    x->nTxnCommit++;
  } else {
    strata_txn_rollback(t);
    x->nTxnRollback++;
  }
  for (i = 0; i < nSp; i++) model_clear(&aSp[i]);
  model_clear(&view);
}

/* THE DRIVER */

static void run_variant(const Variant *v) {
  Ctx *x = calloc(1, sizeof(Ctx));
  uint64_t seed;
  long nOp = test_soak() ? v->nOp * 10 : test_valgrind() ? v->nOp / 25 : v->nOp;
  int i;
  time_t t0 = time(0);
  char zWhat[100];

  if (!x) exit(2);
  x->pVar = v;
  x->nKey = v->nKey;
  snprintf(zWhat, sizeof(zWhat), "model %s", v->zName);
  seed = test_seed(zWhat);
  test_srand(&x->rng, seed);
  snprintf(x->zDir, sizeof(x->zDir), "%s", test_dir(v->zName));
  strata_options_init(&x->opts);
  x->opts.memtable_size = 64 * 1024;
  x->opts.block_size = v->blockSize;
  x->opts.compression = v->compression;
  x->opts.sync = v->sync;
  x->opts.bloom_bits_per_key = v->bloomBits;
  x->opts.cache_size = v->cacheSize;
  x->opts.max_open_files = v->maxOpenFiles;
  x->opts.disable_compaction = v->bDisableCompaction;
  if (!v->bDisableCompaction) {
    /* Compaction at 4 files; no write stop, so the run never waits on it. */
    x->opts.l0_slowdown_trigger = 1000;
    x->opts.l0_stop_trigger = 1000;
    x->opts.target_file_size = 64 * 1024;
    /* Small levels, so the data reaches L3 and beyond. */
    x->opts.level_base_size = 128 * 1024;
    x->opts.level_multiplier = 4;
  }
  make_keys(x);
  if (strata_batch_new(&x->pBatch) != STRATA_OK) exit(2);
  db_open(x);

  for (x->iOp = 0; x->iOp < nOp && !x->bStop && x->db; x->iOp++) {
    int r = (int)test_randn(&x->rng, 1000);
    if ((r -= 250) < 0) {
      do_put(x);
    } else if ((r -= 90) < 0) {
      do_delete(x);
    } else if ((r -= 80) < 0) {
      do_batch(x);
    } else if ((r -= 200) < 0) {
      do_get(x);
    } else if ((r -= 60) < 0) {
      do_seek(x, 0);
    } else if ((r -= 40) < 0) {
      do_seek(x, 1);
    } else if ((r -= 70) < 0) {
      do_iter_walk(x, 0);
    } else if ((r -= 20) < 0) {
      do_snapshot_new(x);
    } else if ((r -= 50) < 0) {
      if (test_randn(&x->rng, 3) == 0) {
        do_iter_walk(x, 1);
      } else {
        do_snapshot_read(x);
      }
    } else if ((r -= 20) < 0) {
      do_snapshot_release(x);
    } else if ((r -= 7) < 0) {
      do_flush(x);
    } else if ((r -= v->compactPerMille) < 0) {
      do_compact_range(x);
    } else if ((r -= 40) < 0) {
      do_txn(x);
    } else if ((r -= 2) < 0) {
      do_toobig(x);
    } else if ((r -= v->reopenPerMille) < 0) {
      do_reopen(x);
    } else {
      do_put(x);
    }
    if (x->iOp % 2000 == 1999 && !x->bStop) full_check(x);
  }
  if (!x->bStop && x->db) {
    strata_stats st;
    full_check(x);
    /* A last reopen: everything survives close. */
    do_reopen(x);
    if (x->db && strata_get_stats(x->db, &st) == STRATA_OK) {
      printf(
          "#   %s: %ld ops, %ld keys live, %ld flushes asked, max L0 files %ld, "
          "%ld compactions, %ld reopens, %ld txn commits, %ld rollbacks, %ld large values, "
          "%ld iterator steps, %ld s; files per level now %d %d %d %d %d %d %d\n",
          v->zName, x->iOp, (long)x->m.n, x->nFlush, x->nMaxL0, x->nCompaction, x->nReopen,
          x->nTxnCommit, x->nTxnRollback, x->nLarge, x->nIterStep, (long)(time(0) - t0),
          st.level_files[0], st.level_files[1], st.level_files[2], st.level_files[3],
          st.level_files[4], st.level_files[5], st.level_files[6]);
    }
  }
  /* The run must have exercised what it is for (valgrind's runs are short). */
  if (!x->bStop && !test_valgrind()) {
    MCHECK(x, x->nFlush > 5, "only %ld flushes", x->nFlush);
    MCHECK(x, x->nTxnCommit > 5, "only %ld transactions committed", x->nTxnCommit);
    if (v->bDisableCompaction)
      MCHECK(x, x->nMaxL0 >= 8, "L0 never held 8 files (max %ld)", x->nMaxL0);
    if (!v->bDisableCompaction) MCHECK(x, x->nCompaction > 0, "no compaction ran");
  }
  if (x->bStop) fprintf(stderr, "  replay with STRATA_SEED=%llu\n", (unsigned long long)seed);

  if (x->db) {
    release_snapshots(x);
    strata_close(x->db);
  }
  strata_batch_free(x->pBatch);
  strata_value_free(&x->val);
  model_clear(&x->m);
  for (i = 0; i < x->nKey; i++) blob_unref(x->aKey[i]);
  if (!x->bStop) test_rmdir(x->zDir);
  free(x);
}

static const Variant aVariant[] = {
    /* name, compression, sync, no compaction, block, bloom, cache, files, reopen, toggle,
    ** compact_range, max L0, keys, ops */
    {"l0_pileup_zstd", STRATA_COMPRESSION_ZSTD, STRATA_SYNC_NORMAL, 1, 512, 10, 256 * 1024, 10, 1,
     0, 0, 60, 300, 20000},
    /* More keys, so the data outgrows L1 and compaction reaches deeper levels. */
    {"compaction_nocompress", STRATA_COMPRESSION_NONE, STRATA_SYNC_NORMAL, 0, 256, 0, 64 * 1024,
     500, 1, 0, 3, 0, 4000, 30000},
    {"sync_off_reopen", STRATA_COMPRESSION_ZSTD, STRATA_SYNC_OFF, 0, 1024, 10, 1 << 20, 50, 8, 1, 3,
     0, 300, 25000},
};

static void test_model_l0_pileup(void) {
  run_variant(&aVariant[0]);
}
static void test_model_compaction_nocompress(void) {
  run_variant(&aVariant[1]);
}
static void test_model_sync_off_reopen(void) {
  run_variant(&aVariant[2]);
}

/* A memtable holds about memtable_size bytes of writes before it is
** switched: 100 small puts (about 12 KiB) fit in a 64 KiB memtable, so they
** cause no flush at all (not one per write). */
static void test_model_memtable_budget(void) {
  strata_options o;
  strata *db = NULL;
  strata_stats st;
  const char *zDir = test_dir("budget");
  char zKey[32], zVal[100];
  int i, rc;
  strata_options_init(&o);
  o.memtable_size = 64 * 1024;
  o.disable_compaction = 1;
  rc = strata_open(zDir, &o, &db);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) return;
  memset(zVal, 'v', sizeof(zVal));
  for (i = 0; i < 100; i++) {
    snprintf(zKey, sizeof(zKey), "key%06d", i);
    CHECK_EQ(strata_put(db, zKey, strlen(zKey), zVal, sizeof(zVal)), STRATA_OK);
  }
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  CHECK_EQ(strata_get_stats(db, &st), STRATA_OK);
  if (st.flushes > 1) {
    fprintf(stderr,
            "  100 puts of 110 bytes into a 64 KiB memtable made %llu flushes and %d L0 "
            "tables (memtable usage %llu bytes)\n",
            (unsigned long long)st.flushes, st.level_files[0],
            (unsigned long long)st.memtable_bytes);
  }
  CHECK(st.flushes <= 1);
  CHECK_EQ(strata_close(db), STRATA_OK);
  test_rmdir(zDir);
}

int main(void) {
  RUN(test_model_memtable_budget);
  RUN(test_model_l0_pileup);
  RUN(test_model_compaction_nocompress);
  RUN(test_model_sync_off_reopen);
  return TEST_SUMMARY();
}
