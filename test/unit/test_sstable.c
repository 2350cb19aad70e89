/*
** test_sstable.c -- sstable build, read, iteration, cache use, corruption
** and I/O faults (sstable.c with block.c, bloom.c, compress.c, cache.c).
**
** Tables are built from a sorted in-memory model (several versions per user
** key, deletions, empty and long values) and read back every way:
** - Get of every user key at the latest sequence and at random older ones,
**   and of absent keys between, before and after the present ones;
** - full iteration forward and backward, SeekLast then Prev to the start,
**   Seek to random keys followed by a few steps either way;
** - properties and strataSstVerify;
** over 1..200k entries, both compressions, block sizes from 64 bytes to
** 64 KiB, restart intervals 1 and 16, with and without a block cache.
** Corruption: a byte flipped in a data block, the index, the filter, the
** properties or the footer, and truncated files, give STRATA_CORRUPT (at
** open or read) and never wrong data. Faults: read errors reach Get and the
** iterator's rc as STRATA_IOERR; write errors fail the build and remove
** the file. The cache test checks hits, bFillCache = 0, that a long scan
** stops filling the cache while short range reads fill it, that an
** iterator releases a handle it holds when closed, that a cached block
** is used in place of the disk, and that a steady-state Get or scan does not
** allocate. Four threads share one reader and a small cache. Informational
** '#' lines give build and Get speed for 1M entries.
*/
#include "strataInt.h"
#include "block.h"
#include "testutil.h"

#include <pthread.h>

static int bValgrind; /* scale the big tests down */
static char zDir[4096];

/* ------------------------------------------------------------------ */
/* MODEL */

typedef struct Ent {
  u8 *k; /* internal key */
  size_t nk;
  u8 *v;
  size_t nv;
} Ent;

typedef struct Model {
  Ent *a;
  int n;
} Model;

static int entCmp(const void *a, const void *b) {
  const Ent *x = a, *y = b;
  return strataIkeyCompare(x->k, x->nk, y->k, y->nk);
}

/* User key number i: even numbers are present, odd ones absent. */
static size_t userKey(u8 *u, u64 i, int bLong) {
  size_t n = (size_t)snprintf((char *)u, 40, "key%09llu", (unsigned long long)i);
  if (bLong && i % 7 == 0) { /* a longer key sharing the prefix */
    memcpy(u + n, "/suffix-of-some-length", 22);
    n += 22;
  }
  return n;
}

/* nUser user keys (numbers 0, 2, 4, ...), each with 1..maxVer versions of
** distinct sequences, about 1 in 6 a deletion. */
static void modelMake(Model *m, int nUser, int maxVer, int nMaxVal, TestRng *rng) {
  int i, j, cap = nUser * maxVer + 1;
  m->a = calloc((size_t)cap, sizeof(Ent));
  m->n = 0;
  for (i = 0; i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2, 1);
    int nVer = 1 + (int)test_randn(rng, (u64)maxVer);
    u64 seq = 1 + test_randn(rng, 1000);
    for (j = 0; j < nVer; j++) {
      Ent *e = &m->a[m->n++];
      int type = test_randn(rng, 6) == 0 ? STRATA_TYPE_DELETE : STRATA_TYPE_VALUE;
      size_t q;
      seq += 1 + test_randn(rng, 5);
      e->nk = nu + 8;
      e->k = malloc(e->nk);
      memcpy(e->k, u, nu);
      strataPut64(e->k + nu, strataPackTrailer(seq, type));
      e->nv = type == STRATA_TYPE_DELETE ? 0
              : test_randn(rng, 5) == 0  ? 0
                                         : test_randn(rng, (u64)nMaxVal + 1);
      e->v = malloc(e->nv + 1);
      for (q = 0; q < e->nv; q++)
        e->v[q] = (u8)(q % 3 ? (u64)('a' + (i + j) % 26) : test_rand(rng));
    }
  }
  qsort(m->a, (size_t)m->n, sizeof(Ent), entCmp);
}

static void modelFree(Model *m) {
  int i;
  for (i = 0; i < m->n; i++) {
    free(m->a[i].k);
    free(m->a[i].v);
  }
  free(m->a);
  m->a = NULL;
  m->n = 0;
}

static int modelLowerBound(const Model *m, const u8 *k, size_t nk) {
  int lo = 0, hi = m->n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (strataIkeyCompare(m->a[mid].k, m->a[mid].nk, k, nk) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The entry Get(u, seq) must return: index into m, or -1. */
static int modelGet(const Model *m, const u8 *u, size_t nu, u64 seq) {
  u8 k[128];
  int i;
  memcpy(k, u, nu);
  strataPut64(k + nu, strataPackTrailer(seq, STRATA_TYPE_VALUE));
  i = modelLowerBound(m, k, nu + 8);
  if (i < m->n && strataUkeyCompare(m->a[i].k, m->a[i].nk - 8, u, nu) == 0) return i;
  return -1;
}

static int buildTable(const char *zPath, const Model *m, const SstOptions *o, strata_env *env,
                      SstProps *pProps) {
  SstBuilder *b = NULL;
  int rc = strataSstBuilderNew(env ? env : strataEnvDefault(), zPath, o, NULL, &b);
  int i;
  memset(pProps, 0, sizeof(*pProps));
  if (rc) return rc;
  for (i = 0; i < m->n && rc == STRATA_OK; i++) {
    rc = strataSstBuilderAdd(b, m->a[i].k, m->a[i].nk, m->a[i].v, m->a[i].nv);
  }
  CHECK_EQ(strataSstBuilderCount(b), i);
  if (rc) {
    strataSstBuilderAbandon(b);
    return rc;
  }
  return strataSstBuilderFinish(b, pProps);
}

static SstOptions defaultOpts(void) {
  SstOptions o;
  memset(&o, 0, sizeof(o));
  o.nBlockSize = 4096;
  o.compression = STRATA_COMPRESSION_ZSTD;
  o.compressionLevel = 1;
  o.bloomBitsPerKey = 10;
  o.restartInterval = 16;
  return o;
}

static const char *tablePath(const char *zName) {
  static char z[4200];
  snprintf(z, sizeof(z), "%s/%s", zDir, zName);
  return z;
}

static u64 fileSizeOf(const char *zPath) {
  struct stat st;
  return stat(zPath, &st) == 0 ? (u64)st.st_size : 0;
}

static int entMatches(const StrataIter *it, const Ent *e) {
  return it->bValid && it->nKey == e->nk && memcmp(it->pKey, e->k, e->nk) == 0 &&
         it->nVal == e->nv && (e->nv == 0 || memcmp(it->pVal, e->v, e->nv) == 0);
}

/* ------------------------------------------------------------------ */
/* THE FULL CHECK OF ONE TABLE */

static void checkProps(const SstProps *p, const Model *m, const char *zPath) {
  u64 nDel = 0, nRawK = 0, nRawV = 0, minSeq = m->n ? STRATA_MAX_SEQ : 0, maxSeq = 0;
  int i;
  for (i = 0; i < m->n; i++) {
    u64 s = strataIkeySeq(m->a[i].k, m->a[i].nk);
    nDel += strataIkeyType(m->a[i].k, m->a[i].nk) == STRATA_TYPE_DELETE;
    nRawK += m->a[i].nk;
    nRawV += m->a[i].nv;
    if (s < minSeq) minSeq = s;
    if (s > maxSeq) maxSeq = s;
  }
  CHECK_EQ(p->nEntries, m->n);
  CHECK_EQ(p->nDeletes, nDel);
  CHECK_EQ(p->nRawKeyBytes, nRawK);
  CHECK_EQ(p->nRawValBytes, nRawV);
  CHECK_EQ(p->minSeq, minSeq);
  CHECK_EQ(p->maxSeq, maxSeq);
  CHECK_EQ(p->fileSize, fileSizeOf(zPath));
  CHECK(m->n == 0 || p->nDataBlocks >= 1);
  if (m->n) {
    CHECK(p->smallest.n == m->a[0].nk && memcmp(p->smallest.a, m->a[0].k, p->smallest.n) == 0);
    CHECK(p->largest.n == m->a[m->n - 1].nk &&
          memcmp(p->largest.a, m->a[m->n - 1].k, p->largest.n) == 0);
  } else {
    CHECK_EQ(p->smallest.n, 0);
    CHECK_EQ(p->largest.n, 0);
  }
}

/* Gets of every key at several sequences and of absent keys. bBloom: the
** table has a filter, which must never reject a present key and must
** reject most absent ones. */
static void checkGets(SstReader *r, const Model *m, int nUser, int bBloom, TestRng *rng) {
  StrataBuf val = {0};
  StrataReadStats rs = {0, 0}, rsAbsent = {0, 0};
  int i, nBad = 0, nAbsent = 0;
  for (i = 0; i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2, 1);
    int found = -1, type = -1, rc, want;
    u64 seq;
    /* Latest, then an older snapshot, then one below every version. */
    for (int pass = 0; pass < 3; pass++) {
      if (pass == 0)
        seq = STRATA_MAX_SEQ;
      else if (pass == 1)
        seq = test_randn(rng, 1100);
      else
        seq = 0;
      want = modelGet(m, u, nu, seq);
      rc = strataSstGet(r, u, nu, seq, &rs, &found, &type, &val);
      if (rc != STRATA_OK)
        nBad++;
      else if (want < 0)
        nBad += found != 0;
      else if (!found || type != strataIkeyType(m->a[want].k, m->a[want].nk))
        nBad++;
      else if (type == STRATA_TYPE_VALUE &&
               (val.n != m->a[want].nv || (val.n && memcmp(val.a, m->a[want].v, val.n) != 0))) {
        nBad++;
      }
    }
    /* Absent: the odd number after it. */
    nu = userKey(u, (u64)i * 2 + 1, 0);
    rc = strataSstGet(r, u, nu, STRATA_MAX_SEQ, &rsAbsent, &found, &type, &val);
    if (rc != STRATA_OK || found) nBad++;
    nAbsent++;
  }
  /* Outside the key range on both sides. */
  {
    int found = 1, type;
    CHECK_EQ(strataSstGet(r, (const u8 *)"a", 1, STRATA_MAX_SEQ, &rs, &found, &type, &val),
             STRATA_OK);
    CHECK_EQ(found, 0);
    CHECK_EQ(strataSstGet(r, (const u8 *)"zzz", 3, STRATA_MAX_SEQ, &rs, &found, &type, &val),
             STRATA_OK);
    CHECK_EQ(found, 0);
    CHECK_EQ(strataSstGet(r, (const u8 *)"", 0, STRATA_MAX_SEQ, &rs, &found, &type, &val),
             STRATA_OK);
    CHECK_EQ(found, 0);
  }
  CHECK_EQ(nBad, 0);
  if (bBloom) {
    /* Every present key is in range and consulted the filter, which never
    ** said no; the absent ones are in range but the last. */
    CHECK_EQ(rs.nBloomCheck, 3 * (u64)nUser);
    CHECK_EQ(rs.nBloomUseful, 0);
    CHECK_EQ(rsAbsent.nBloomCheck, nAbsent ? nAbsent - 1 : 0);
    CHECK(rsAbsent.nBloomUseful + 2 + rsAbsent.nBloomCheck / 20 >= rsAbsent.nBloomCheck);
  } else {
    CHECK_EQ(rs.nBloomCheck + rsAbsent.nBloomCheck, 0);
  }
  strataBufFree(&val);
}

static void checkIteration(SstReader *r, const Model *m, int bFill, int nSeek, TestRng *rng) {
  StrataIter *it = NULL;
  int i, nBad = 0, step;
  CHECK_EQ(strataSstIterNew(r, bFill, &it), STRATA_OK);
  if (!it) return;
  CHECK(!it->bValid);
  /* Forward. */
  it->pMethods->xSeekFirst(it);
  for (i = 0; i < m->n; i++) {
    if (!entMatches(it, &m->a[i])) nBad++;
    if (it->bValid) it->pMethods->xNext(it);
  }
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_OK);
  CHECK_EQ(nBad, 0);
  /* Backward from the last entry to the first. */
  it->pMethods->xSeekLast(it);
  for (i = m->n - 1; i >= 0; i--) {
    if (!entMatches(it, &m->a[i])) nBad++;
    if (it->bValid) it->pMethods->xPrev(it);
  }
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_OK);
  CHECK_EQ(nBad, 0);
  /* Seek to random keys (present internal keys, user keys with random
  ** sequences, keys between), then wander a few steps. */
  for (step = 0; step < nSeek; step++) {
    static u8 k[STRATA_MAX_KEY + 64];
    size_t nk;
    int want, q;
    if (m->n && step % 3 == 0) {
      const Ent *e = &m->a[test_randn(rng, (u64)m->n)];
      memcpy(k, e->k, e->nk);
      nk = e->nk;
    } else {
      nk = userKey(k, test_randn(rng, (u64)(m->n ? m->n * 2 + 4 : 4)), (int)test_randn(rng, 2));
      if (step % 3 == 2 && nk > 4) nk -= 1 + test_randn(rng, 3); /* a prefix: between keys */
      strataPut64(k + nk, strataPackTrailer(test_randn(rng, 1200), (int)test_randn(rng, 2)));
      nk += 8;
    }
    want = modelLowerBound(m, k, nk);
    it->pMethods->xSeek(it, k, nk);
    if (want >= m->n ? it->bValid : !entMatches(it, &m->a[want])) nBad++;
    if (!it->bValid) continue;
    if (step % 2) {
      for (q = 1; q <= 20 && want + q <= m->n; q++) {
        it->pMethods->xNext(it);
        if (want + q == m->n ? it->bValid : !entMatches(it, &m->a[want + q])) nBad++;
      }
    } else {
      for (q = 1; q <= 20 && want - q >= -1; q++) {
        it->pMethods->xPrev(it);
        if (want - q < 0 ? it->bValid : !entMatches(it, &m->a[want - q])) nBad++;
      }
    }
  }
  CHECK_EQ(it->rc, STRATA_OK);
  CHECK_EQ(nBad, 0);
  strataIterClose(it);
}

static BlockCache *gCache; /* shared by the tests that use a cache */

/* KEPT ENTRIES (strataInt.h): walking backward, every entry published
** since the last step taken with bKeepOnPrev 0 must still hold its bytes,
** in place, after each step. Walks down from SeekLast and from random
** seeks (after which the flag means nothing until the first step back). */
typedef struct Held {
  const u8 *pKey, *pVal;
  u8 *aKey, *aVal; /* copies */
  size_t nKey, nVal;
} Held;

static int heldClear(Held *a, int n) {
  int i;
  for (i = 0; i < n; i++) {
    free(a[i].aKey);
    free(a[i].aVal);
  }
  return 0;
}

static void checkKeptEntries(SstReader *r, const Model *m, int bFill, int bRecord, TestRng *rng) {
  StrataIter *it = NULL;
  Held *aHeld = calloc((size_t)m->n + 1, sizeof(Held));
  int nHeld = 0, nBad = 0, nKept = 0, walk, i;
  CHECK_EQ(strataSstIterNew(r, bFill, &it), STRATA_OK);
  if (!it || !aHeld) goto kept_done;
  for (walk = 0; walk < 20; walk++) {
    int bTrust = 1;
    if (walk == 0 || m->n == 0) {
      it->pMethods->xSeekLast(it);
    } else {
      const Ent *e = &m->a[test_randn(rng, (u64)m->n)];
      it->pMethods->xSeek(it, e->k, e->nk);
      bTrust = 0; /* a seek does not set the flag */
    }
    nHeld = heldClear(aHeld, nHeld);
    while (it->bValid) {
      Held *h = &aHeld[nHeld++];
      /* Hold the current entry: published since the last step with the
      ** flag 0 (or the seek). */
      h->pKey = it->pKey;
      h->nKey = it->nKey;
      h->pVal = it->pVal;
      h->nVal = it->nVal;
      h->aKey = malloc(it->nKey + 1);
      h->aVal = malloc(it->nVal + 1);
      memcpy(h->aKey, it->pKey, it->nKey);
      if (it->nVal) memcpy(h->aVal, it->pVal, it->nVal);
      if (!bTrust || !it->bKeepOnPrev) {
        nHeld = heldClear(aHeld, nHeld); /* this step may move them all */
      } else {
        nKept++;
      }
      it->pMethods->xPrev(it);
      bTrust = 1;
      for (i = 0; i < nHeld; i++) {
        h = &aHeld[i];
        if (memcmp(h->pKey, h->aKey, h->nKey) != 0 ||
            (h->nVal && memcmp(h->pVal, h->aVal, h->nVal) != 0)) {
          nBad++;
        }
      }
    }
    CHECK_EQ(it->rc, STRATA_OK);
  }
  CHECK_EQ(nBad, 0);
  if (bRecord) CHECK(nKept > 0); /* regions of several entries: the flag is set */
kept_done:
  if (aHeld) heldClear(aHeld, nHeld);
  free(aHeld);
  strataIterClose(it);
}

static void test_sst_kept_entries(void) {
  static const size_t aBlock[] = {64, 512, 4096};
  static const int aRestart[] = {1, 4, 16};
  TestRng rng;
  int b, q;
  test_srand(&rng, 29);
  for (b = 0; b < 3; b++) {
    for (q = 0; q < 3; q++) {
      Model m;
      SstOptions o = defaultOpts();
      SstProps props;
      const char *zPath = tablePath("kept.sst");
      int bCache;
      modelMake(&m, 800, 3, 120, &rng);
      o.nBlockSize = aBlock[b];
      o.restartInterval = aRestart[q];
      o.compression = q == 1 ? STRATA_COMPRESSION_NONE : STRATA_COMPRESSION_ZSTD;
      CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
      strataSstPropsFree(&props);
      for (bCache = 0; bCache < 2; bCache++) {
        BlockCache *c = bCache ? gCache : NULL;
        SstReader *r = NULL;
        CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, c ? strataCacheNewId(c) : 1, c, NULL, &r),
                 STRATA_OK);
        if (!r) continue;
        checkKeptEntries(r, &m, 1, aRestart[q] > 1, &rng);
        checkKeptEntries(r, &m, 0, aRestart[q] > 1, &rng);
        strataSstClose(r);
      }
      modelFree(&m);
    }
  }
}


/* The number of data blocks the cut rule gives m's entries: a block closes
** once its encoded size reaches nBlockSize. Exact, so a builder that cuts
** too early, too late or never fails whatever the random sizes. */
static u64 expectedBlocks(const Model *m, size_t nBlockSize, int restartInterval) {
  BlockBuilder bb;
  u64 n = 0;
  int i;
  strataBlockBuilderInit(&bb, restartInterval);
  for (i = 0; i < m->n; i++) {
    CHECK_EQ(strataBlockBuilderAdd(&bb, m->a[i].k, m->a[i].nk, m->a[i].v, m->a[i].nv), STRATA_OK);
    if (strataBlockBuilderSize(&bb) >= nBlockSize) {
      n++;
      strataBlockBuilderReset(&bb);
    }
  }
  if (!strataBlockBuilderEmpty(&bb)) n++;
  strataBlockBuilderFree(&bb);
  return n;
}

/* bMap: read through a mapping of the file (MAPPED TABLES). */
static void checkTable(const char *zPath, const Model *m, int nUser, int bCache, int bBloom,
                       int bMap, TestRng *rng) {
  SstReader *r = NULL;
  BlockCache *c = bCache ? gCache : NULL;
  int rc = strataSstOpen(strataEnvDefault(), zPath, c ? strataCacheNewId(c) : 1, c, NULL, &r);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) {
    printf("  open: %s\n", strataErrMsgGet());
    return;
  }
  if (bMap) CHECK_EQ(strataSstMap(r, 0), STRATA_OK);
  checkProps(strataSstProps(r), m, zPath);
  CHECK(strataSstMemoryUsage(r) > 0);
  rc = strataSstVerify(r);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) printf("  verify: %s\n", strataErrMsgGet());
  checkGets(r, m, nUser, bBloom, rng);
  checkIteration(r, m, (int)test_randn(rng, 2), 300 + m->n / 50, rng);
  strataSstClose(r);
}

/* ------------------------------------------------------------------ */
/* TESTS */

static void test_sst_matrix(void) {
  static const int aUser[] = {1, 2, 17, 500, 5000};
  static const size_t aBlock[] = {64, 1024, 4096, 65536};
  TestRng rng;
  int iu, ib, comp, nTables = 0;
  test_srand(&rng, test_seed("sst_matrix"));
  for (iu = 0; iu < (int)(sizeof(aUser) / sizeof(aUser[0])); iu++) {
    Model m;
    modelMake(&m, aUser[iu], 3, 120, &rng);
    for (ib = 0; ib < (int)(sizeof(aBlock) / sizeof(aBlock[0])); ib++) {
      for (comp = 0; comp <= 1; comp++) {
        SstOptions o = defaultOpts();
        SstProps props;
        const char *zPath = tablePath("matrix.sst");
        o.nBlockSize = aBlock[ib];
        o.compression = comp;
        o.restartInterval = (ib + comp) % 2 ? 1 : 16;
        o.bloomBitsPerKey = ib == 3 ? 0 : 10;
        CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
        checkProps(&props, &m, zPath);
        CHECK_EQ(props.nDataBlocks, expectedBlocks(&m, o.nBlockSize, o.restartInterval));
        strataSstPropsFree(&props);
        checkTable(zPath, &m, aUser[iu], (ib + iu) % 2, o.bloomBitsPerKey > 0, 0, &rng);
        checkTable(zPath, &m, aUser[iu], (ib + iu + 1) % 2, o.bloomBitsPerKey > 0, 1, &rng);
        nTables++;
      }
    }
    modelFree(&m);
  }
  CHECK_EQ(nTables, 40);
}

static void test_sst_large_tables(void) {
  TestRng rng;
  Model m;
  int comp, nUser = bValgrind ? 20000 : 100000;
  test_srand(&rng, test_seed("sst_large_tables"));
  modelMake(&m, nUser, 3, 60, &rng); /* ~200k entries */
  printf("# %d entries\n", m.n);
  for (comp = 0; comp <= 1; comp++) {
    SstOptions o = defaultOpts();
    SstProps props;
    const char *zPath = tablePath("large.sst");
    o.compression = comp;
    CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
    checkProps(&props, &m, zPath);
    if (comp == 1)
      printf("# zstd table: %llu bytes for %llu raw\n", (unsigned long long)props.fileSize,
             (unsigned long long)(props.nRawKeyBytes + props.nRawValBytes));
    strataSstPropsFree(&props);
    checkTable(zPath, &m, nUser, comp, 1, comp, &rng);
  }
  modelFree(&m);
}

/* Build zPath from nRandom entries of random values followed by nSame of
** 'a's, with SstOptions.nSkipHint = nHint; returns the file size and sets
** *pnHintOut to the builder's hint before Finish. */
static u64 buildSkipTable(const char *zPath, int nHint, int nRandom, int nSame, int *pnHintOut) {
  SstOptions o = defaultOpts();
  SstBuilder *b = NULL;
  SstProps props;
  TestRng rng;
  u8 aKey[32], aVal[100];
  u64 nSize;
  int i, j;
  test_srand(&rng, test_seed("sst_skip_hint"));
  memset(&props, 0, sizeof(props));
  o.nSkipHint = nHint;
  CHECK_EQ(strataSstBuilderNew(strataEnvDefault(), zPath, &o, NULL, &b), STRATA_OK);
  if (!b) return 0;
  for (i = 0; i < nRandom + nSame; i++) {
    int nk = snprintf((char *)aKey, sizeof(aKey), "k%09d", i);
    strataPut64(aKey + nk, strataPackTrailer(1, STRATA_TYPE_VALUE));
    for (j = 0; j < 100; j++) aVal[j] = i < nRandom ? (u8)test_randn(&rng, 256) : (u8)'a';
    CHECK_EQ(strataSstBuilderAdd(b, aKey, (size_t)nk + 8, aVal, 100), STRATA_OK);
  }
  *pnHintOut = strataSstBuilderSkipHint(b);
  CHECK_EQ(strataSstBuilderFinish(b, &props), STRATA_OK);
  nSize = props.fileSize;
  strataSstPropsFree(&props);
  return nSize;
}

/* Incompressible values make the builder stop trying to compress (backing
** off further at every failed probe); compressible ones after them are
** compressed again once a probe succeeds. Every entry reads back. */
static void test_sst_compression_backoff(void) {
  const char *zPath = tablePath("backoff.sst");
  SstReader *r = NULL;
  StrataIter *it = NULL;
  int nRandom = 12000, nSame = 100000, n = 0, nBad = 0, nHint = 0;
  u64 nSize = buildSkipTable(zPath, 0, nRandom, nSame, &nHint);
  /* The random part (~1.4 MB) is stored as it is; of the ~12 MB of 'a's
  ** only the blocks of one skip (at most ~1024 x 4 KiB) are stored raw. */
  CHECK(nSize < (u64)nRandom * 120 + (u64)nSame * 120 / 2);
  CHECK(nSize > (u64)nRandom * 100);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 1, NULL, NULL, &r), STRATA_OK);
  if (!r) return;
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  if (it) {
    for (it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it), n++) {
      if (it->nVal != 100 || (n >= nRandom && it->pVal[n % 100] != 'a')) nBad++;
    }
    CHECK_EQ(it->rc, STRATA_OK);
    strataIterClose(it);
  }
  CHECK_EQ(n, nRandom + nSame);
  CHECK_EQ(nBad, 0);
  CHECK_EQ(strataSstVerify(r), STRATA_OK);
  strataSstClose(r);
}

/* A table of random values ends with a skip hint; a table started with it
** probes its first block and skips on at once (so compressible data right
** after one random block is stored raw for the hinted stretch), and one
** whose first block compresses compresses everything and ends with no
** hint. Without a hint the same data is compressed from its second block. */
static void test_sst_skip_hint(void) {
  const char *zPath = tablePath("skiphint.sst");
  int nHint = -1, nHint2 = -1, nHint3 = -1, nHint4 = -1;
  u64 nRaw = 40 + 600 * 120, nSize;
  /* Random values: the builder backs off and hands on a hint. */
  buildSkipTable(zPath, 0, 12000, 0, &nHint);
  CHECK(nHint >= 64);
  /* With the hint: one random block (~30 entries), then 600 entries of 'a's,
  ** all inside the first skip: stored as they are. */
  nSize = buildSkipTable(zPath, nHint, 30, 600, &nHint2);
  CHECK(nSize > (u64)600 * 100);
  CHECK(nHint2 >= nHint);
  /* Without it the 'a's are compressed. */
  nSize = buildSkipTable(zPath, 0, 30, 600, &nHint3);
  CHECK(nSize < nRaw / 2);
  CHECK_EQ(nHint3, 0);
  /* A hint whose first probe succeeds is dropped. */
  nSize = buildSkipTable(zPath, nHint, 0, 20000, &nHint4);
  CHECK(nSize < (u64)20000 * 20);
  CHECK_EQ(nHint4, 0);
}

static void test_sst_empty_table(void) {
  Model m = {NULL, 0};
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataIter *it = NULL;
  StrataBuf val = {0};
  const char *zPath = tablePath("empty.sst");
  int found = 1, type;
  TestRng rng;
  test_srand(&rng, 3);
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  CHECK_EQ(props.nEntries, 0);
  CHECK_EQ(props.nDataBlocks, 0);
  strataSstPropsFree(&props);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 1, NULL, NULL, &r), STRATA_OK);
  if (!r) return;
  CHECK_EQ(strataSstVerify(r), STRATA_OK);
  CHECK_EQ(strataSstGet(r, (const u8 *)"x", 1, STRATA_MAX_SEQ, NULL, &found, &type, &val),
           STRATA_OK);
  CHECK_EQ(found, 0);
  CHECK_EQ(strataSstIterNew(r, 1, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  CHECK(!it->bValid);
  it->pMethods->xSeekLast(it);
  CHECK(!it->bValid);
  {
    u8 k[9] = {'x', 0, 0, 0, 0, 0, 0, 0, 0};
    it->pMethods->xSeek(it, k, 9);
    CHECK(!it->bValid);
  }
  CHECK_EQ(it->rc, STRATA_OK);
  strataIterClose(it);
  strataSstClose(r);
  checkTable(zPath, &m, 0, 0, 1, 1, &rng);
  strataBufFree(&val);
}

/* One user key with thousands of versions over many small blocks: index
** separators cannot shorten, and Get must find the right version whichever
** block holds it. */
static void test_sst_many_versions(void) {
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataBuf val = {0};
  const char *zPath = tablePath("versions.sst");
  TestRng rng;
  int i, n = 3000, nBad = 0;
  test_srand(&rng, 11);
  m.a = calloc((size_t)n, sizeof(Ent));
  m.n = n;
  for (i = 0; i < n; i++) { /* sequences 3n+1 down to 4, step 3 */
    Ent *e = &m.a[i];
    e->nk = 4 + 8;
    e->k = malloc(e->nk);
    memcpy(e->k, "same", 4);
    strataPut64(e->k + 4, strataPackTrailer((u64)(n - i) * 3 + 1, i % 5 == 0 ? 0 : 1));
    e->nv = i % 5 == 0 ? 0 : 8;
    e->v = malloc(12);
    snprintf((char *)e->v, 12, "%08u", (unsigned)i % 100000000u);
  }
  o.nBlockSize = 128;
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  CHECK(props.nDataBlocks > 100);
  strataSstPropsFree(&props);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 1, NULL, NULL, &r), STRATA_OK);
  if (!r) return;
  for (u64 seq = 0; seq <= (u64)n * 3 + 5; seq++) {
    int found = -1, type = -1, want = modelGet(&m, (const u8 *)"same", 4, seq);
    int rc = strataSstGet(r, (const u8 *)"same", 4, seq, NULL, &found, &type, &val);
    if (rc || (want < 0) != (found == 0)) {
      nBad++;
    } else if (want >= 0) {
      if (type != (want % 5 == 0 ? 0 : 1))
        nBad++;
      else if (type == 1 && (val.n != 8 || memcmp(val.a, m.a[want].v, 8) != 0))
        nBad++;
    }
  }
  CHECK_EQ(nBad, 0);
  strataSstClose(r);
  checkTable(zPath, &m, 0, 1, 1, 1, &rng);
  modelFree(&m);
  strataBufFree(&val);
}

/* Maximum-size keys, keys longer than the lookup buffer, a huge value. */
static void test_sst_big_keys_and_values(void) {
  size_t nBig = bValgrind ? 3 * 1024 * 1024 : 12 * 1024 * 1024;
  TestRng rng;
  Model m;
  int i, comp;
  test_srand(&rng, 21);
  m.n = 12;
  m.a = calloc((size_t)m.n, sizeof(Ent));
  for (i = 0; i < m.n; i++) {
    Ent *e = &m.a[i];
    size_t nu = i < 4 ? STRATA_MAX_KEY : i < 8 ? 600 + (size_t)i : 10, q;
    e->nk = nu + 8;
    e->k = malloc(e->nk);
    memset(e->k, 'a' + i, nu);
    strataPut64(e->k + nu, strataPackTrailer(100 + (u64)i, 1));
    e->nv = i == 9 ? nBig : 50;
    e->v = malloc(e->nv);
    for (q = 0; q < e->nv; q++) e->v[q] = (u8)(q % 1000 == 0 ? test_rand(&rng) : q / 1000);
  }
  for (comp = 0; comp <= 1; comp++) {
    SstOptions o = defaultOpts();
    SstProps props;
    SstReader *r = NULL;
    StrataBuf val = {0};
    const char *zPath = tablePath("big.sst");
    o.compression = comp;
    CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
    strataSstPropsFree(&props);
    CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 1, comp ? gCache : NULL, NULL, &r),
             STRATA_OK);
    if (!r) continue;
    CHECK_EQ(strataSstVerify(r), STRATA_OK);
    for (i = 0; i < m.n; i++) {
      int found = 0, type = 0;
      CHECK_EQ(strataSstGet(r, m.a[i].k, m.a[i].nk - 8, STRATA_MAX_SEQ, NULL, &found, &type, &val),
               STRATA_OK);
      CHECK(found && type == 1 && val.n == m.a[i].nv && memcmp(val.a, m.a[i].v, val.n) == 0);
    }
    checkIteration(r, &m, comp, 40, &rng);
    strataSstClose(r);
    strataBufFree(&val);
  }
  modelFree(&m);
}

static void test_sst_builder_misuse(void) {
  SstOptions o = defaultOpts();
  SstBuilder *b = NULL;
  SstProps props;
  StrataBuf k = {0};
  const char *zPath = tablePath("misuse.sst");
  CHECK_EQ(strataSstBuilderNew(strataEnvDefault(), zPath, &o, NULL, &b), STRATA_OK);
  strataIkeyBuild(&k, (const u8 *)"m", 1, 5, 1);
  CHECK_EQ(strataSstBuilderAdd(b, k.a, k.n, (const u8 *)"v", 1), STRATA_OK);
  /* Same key again, an older-ordered key, a too-short key: refused, and the
  ** builder carries on. */
  CHECK_EQ(strataSstBuilderAdd(b, k.a, k.n, (const u8 *)"v", 1), STRATA_MISUSE);
  strataIkeyBuild(&k, (const u8 *)"a", 1, 5, 1);
  CHECK_EQ(strataSstBuilderAdd(b, k.a, k.n, (const u8 *)"v", 1), STRATA_MISUSE);
  strataIkeyBuild(&k, (const u8 *)"m", 1, 6, 1); /* newer sorts first: out of order */
  CHECK_EQ(strataSstBuilderAdd(b, k.a, k.n, (const u8 *)"v", 1), STRATA_MISUSE);
  CHECK_EQ(strataSstBuilderAdd(b, (const u8 *)"abc", 3, (const u8 *)"v", 1), STRATA_MISUSE);
  {
    u8 *big = calloc(STRATA_MAX_KEY + 9, 1);
    memset(big, 'z', STRATA_MAX_KEY + 1);
    CHECK_EQ(strataSstBuilderAdd(b, big, STRATA_MAX_KEY + 9, (const u8 *)"v", 1), STRATA_TOOBIG);
    free(big);
  }
  strataIkeyBuild(&k, (const u8 *)"m", 1, 4, 0); /* an older version of m: fine */
  CHECK_EQ(strataSstBuilderAdd(b, k.a, k.n, NULL, 0), STRATA_OK);
  CHECK_EQ(strataSstBuilderCount(b), 2);
  CHECK(strataSstBuilderFileSize(b) > 0);
  CHECK_EQ(strataSstBuilderFinish(b, &props), STRATA_OK);
  CHECK_EQ(props.nEntries, 2);
  CHECK_EQ(props.nDeletes, 1);
  strataSstPropsFree(&props);
  /* Unknown compression. */
  o.compression = 7;
  b = (SstBuilder *)1;
  CHECK_EQ(strataSstBuilderNew(strataEnvDefault(), zPath, &o, NULL, &b), STRATA_ERROR);
  CHECK(b == NULL);
  /* Abandon removes the file. */
  o = defaultOpts();
  CHECK_EQ(strataSstBuilderNew(strataEnvDefault(), zPath, &o, NULL, &b), STRATA_OK);
  strataSstBuilderAbandon(b);
  CHECK(!strataEnvDefault()->xExists(strataEnvDefault(), zPath));
  strataSstBuilderAbandon(NULL);
  strataBufFree(&k);
}

/* ------------------------------------------------------------------ */
/* CORRUPTION */

static void copyFile(const char *zFrom, const char *zTo, u64 nKeep) {
  FILE *in = fopen(zFrom, "rb"), *out = fopen(zTo, "wb");
  char buf[65536];
  u64 nDone = 0;
  size_t n;
  while (in && out && nDone < nKeep && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
    if (n > nKeep - nDone) n = (size_t)(nKeep - nDone);
    if (fwrite(buf, 1, n, out) != n) break;
    nDone += n;
  }
  if (in) fclose(in);
  if (out) fclose(out);
}

static void flipByte(const char *zPath, u64 off, u8 mask) {
  FILE *f = fopen(zPath, "r+b");
  int c;
  if (!f) return;
  fseek(f, (long)off, SEEK_SET);
  c = fgetc(f);
  fseek(f, (long)off, SEEK_SET);
  fputc(c ^ mask, f);
  fclose(f);
}

typedef struct Layout {
  u64 size;
  u64 aOff[3], aSize[3]; /* index, filter, props (from the footer) */
  u64 dataEnd;
} Layout;

static void readLayout(const char *zPath, Layout *l) {
  FILE *f = fopen(zPath, "rb");
  u8 foot[64];
  int i;
  memset(l, 0, sizeof(*l));
  l->size = fileSizeOf(zPath);
  if (!f) return;
  fseek(f, (long)(l->size - 64), SEEK_SET);
  if (fread(foot, 1, 64, f) != 64) memset(foot, 0, 64);
  fclose(f);
  l->dataEnd = l->size;
  for (i = 0; i < 3; i++) {
    l->aOff[i] = strataGet64(foot + 16 * i);
    l->aSize[i] = strataGet64(foot + 16 * i + 8);
    if (l->aSize[i] && l->aOff[i] < l->dataEnd) l->dataEnd = l->aOff[i];
  }
}

/* Read everything from a damaged table: no result may differ from the
** model; returns the number of STRATA_CORRUPT results seen (open failing
** counts as one and ends it). */
static int readDamaged(const char *zPath, const Model *m, int nUser, BlockCache *c, int bMap,
                       int *pnWrong) {
  SstReader *r = NULL;
  StrataIter *it = NULL;
  StrataBuf val = {0};
  int nCorrupt = 0, i, rc;
  rc = strataSstOpen(strataEnvDefault(), zPath, c ? strataCacheNewId(c) : 7, c, NULL, &r);
  if (rc) {
    CHECK_EQ(rc, STRATA_CORRUPT);
    CHECK(strstr(strataErrMsgGet(), zPath) != NULL);
    return 1;
  }
  if (bMap) CHECK_EQ(strataSstMap(r, 0), STRATA_OK);
  for (i = 0; i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2, 1);
    int found = 0, type = 0, want = modelGet(m, u, nu, STRATA_MAX_SEQ);
    rc = strataSstGet(r, u, nu, STRATA_MAX_SEQ, NULL, &found, &type, &val);
    if (rc == STRATA_CORRUPT) {
      nCorrupt++;
      CHECK(strstr(strataErrMsgGet(), zPath) != NULL);
      continue;
    }
    CHECK_EQ(rc, STRATA_OK);
    if (want < 0 ? found
                 : (!found || type != strataIkeyType(m->a[want].k, m->a[want].nk) ||
                    (type == 1 &&
                     (val.n != m->a[want].nv || (val.n && memcmp(val.a, m->a[want].v, val.n)))))) {
      (*pnWrong)++;
    }
  }
  CHECK_EQ(strataSstIterNew(r, 1, &it), STRATA_OK);
  i = 0;
  for (it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) {
    if (i >= m->n || !entMatches(it, &m->a[i])) (*pnWrong)++;
    i++;
  }
  if (it->rc == STRATA_CORRUPT)
    nCorrupt++;
  else
    CHECK(it->rc == STRATA_OK && i == m->n);
  /* Sticky: the iterator stays failed. */
  if (it->rc) {
    it->pMethods->xSeekFirst(it);
    CHECK(!it->bValid && it->rc == STRATA_CORRUPT);
  }
  strataIterClose(it);
  /* Backward without filling the cache: through the read-ahead windows, so
  ** blocks are checked from the window, not from a read of their own. It
  ** must stop at the damage (or see none), never return damaged data. */
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  i = m->n - 1;
  for (it->pMethods->xSeekLast(it); it->bValid; it->pMethods->xPrev(it)) {
    if (i < 0 || !entMatches(it, &m->a[i])) (*pnWrong)++;
    i--;
  }
  CHECK(it->rc == STRATA_CORRUPT || (it->rc == STRATA_OK && i == -1));
  strataIterClose(it);
  rc = strataSstVerify(r);
  if (rc == STRATA_CORRUPT)
    nCorrupt++;
  else
    CHECK_EQ(rc, STRATA_OK);
  strataSstClose(r);
  strataBufFree(&val);
  return nCorrupt;
}

static void test_sst_corruption(void) {
  TestRng rng;
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  Layout l;
  char zOrig[4200], zBad[4200];
  int nUser = 600, region, k, nWrong = 0;
  test_srand(&rng, test_seed("sst_corruption"));
  modelMake(&m, nUser, 2, 80, &rng);
  snprintf(zOrig, sizeof(zOrig), "%s", tablePath("orig.sst"));
  snprintf(zBad, sizeof(zBad), "%s", tablePath("bad.sst"));
  o.nBlockSize = 1024;
  CHECK_EQ(buildTable(zOrig, &m, &o, NULL, &props), STRATA_OK);
  strataSstPropsFree(&props);
  readLayout(zOrig, &l);
  CHECK(l.dataEnd > 1000);
  CHECK(l.aSize[1] > 0); /* there is a filter */

  /* The intact copy reads back cleanly. */
  copyFile(zOrig, zBad, l.size);
  CHECK_EQ(readDamaged(zBad, &m, nUser, NULL, 0, &nWrong), 0);
  CHECK_EQ(readDamaged(zBad, &m, nUser, NULL, 1, &nWrong), 0);

  /* region 0: data blocks, 1: index, 2: filter, 3: properties, 4: footer */
  for (region = 0; region < 5; region++) {
    for (k = 0; k < 12; k++) {
      u64 lo, n, off;
      int nCorrupt;
      switch (region) {
        case 0:
          lo = 0;
          n = l.dataEnd;
          break;
        case 4:
          lo = l.size - 64;
          n = 64;
          break;
        default:
          lo = l.aOff[region == 1 ? 0 : region == 2 ? 1 : 2];
          n = l.aSize[region == 1 ? 0 : region == 2 ? 1 : 2] + 5;
          break;
      }
      off = lo + (k == 0 ? 0 : k == 1 ? n - 1 : test_randn(&rng, n));
      copyFile(zOrig, zBad, l.size);
      flipByte(zBad, off, (u8)(1u << test_randn(&rng, 8)));
      /* Every third read maps the file (MAPPED TABLES). */
      nCorrupt = readDamaged(zBad, &m, nUser, (k % 2) ? gCache : NULL, k % 3 == 2, &nWrong);
      if (region == 0) {
        /* The scan and the verify read every block; a Get only reads the
        ** block that holds the newest version of its key, and the last
        ** block may hold nothing but older versions. */
        CHECK(nCorrupt >= 2);
      } else {
        CHECK_EQ(nCorrupt, 1); /* refused at open */
      }
    }
  }
  CHECK_EQ(nWrong, 0);

  /* Truncations: the footer moves, so open refuses. */
  {
    u64 aLen[] = {0, 1, 63, 64, 65, l.size / 2, l.dataEnd, l.size - 65, l.size - 64, l.size - 1};
    size_t i;
    for (i = 0; i < sizeof(aLen) / sizeof(aLen[0]); i++) {
      SstReader *r = NULL;
      copyFile(zOrig, zBad, aLen[i]);
      CHECK_EQ(fileSizeOf(zBad), aLen[i]);
      CHECK_EQ(strataSstOpen(strataEnvDefault(), zBad, 1, NULL, NULL, &r), STRATA_CORRUPT);
      CHECK(r == NULL);
    }
  }

  /* Not an sstable at all. */
  {
    SstReader *r = NULL;
    FILE *f = fopen(zBad, "wb");
    int i;
    for (i = 0; i < 1000; i++) fputs("this is not a table. ", f);
    fclose(f);
    CHECK_EQ(strataSstOpen(strataEnvDefault(), zBad, 1, NULL, NULL, &r), STRATA_CORRUPT);
    CHECK(strstr(strataErrMsgGet(), "not an sstable") != NULL);
    CHECK_EQ(strataSstOpen(strataEnvDefault(), tablePath("missing.sst"), 1, NULL, NULL, &r),
             STRATA_CANTOPEN);
  }
  modelFree(&m);
}

/* MAPPED TABLES: blocks stored uncompressed are used in place, never
** cached, and verified at their first use (VERIFIED BLOCKS) or, mapped with
** bVerifyAlways, at every use; compressed ones are decoded from the mapping
** into the cache; an env that cannot map leaves the reader reading. */
static int getFirst(SstReader *r, const Model *m, StrataBuf *pVal, int *pFound) {
  int type;
  return strataSstGet(r, m->a[0].k, m->a[0].nk - 8, STRATA_MAX_SEQ, NULL, pFound, &type, pVal);
}

/* Damage block 0 of the table at zPath (left damaged): a Get of its first
** key and a scan from the start must both report it. */
static void checkDamageSeen(SstReader *r, const Model *m, const char *zPath, StrataBuf *pVal) {
  StrataIter *it = NULL;
  int found;
  flipByte(zPath, 10, 0x40);
  CHECK_EQ(getFirst(r, m, pVal, &found), STRATA_CORRUPT);
  CHECK(strstr(strataErrMsgGet(), "checksum") != NULL);
  CHECK_EQ(strataSstIterNew(r, 1, &it), STRATA_OK);
  if (!it) return;
  it->pMethods->xSeekFirst(it);
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_CORRUPT);
  strataIterClose(it);
}

static void test_sst_mapped(void) {
  static const int aComp[] = {0, 0, 1}, aAlways[] = {1, 0, 0};
  TestRng rng;
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataIter *it = NULL;
  StrataBuf val = {0};
  BlockCache *c = NULL;
  StrataIoStats io;
  strata_env *pFault;
  const char *zPath = tablePath("mapped.sst");
  int iCase, comp, bAlways, found, n;
  u64 nRead0;
  test_srand(&rng, test_seed("sst_mapped"));
  modelMake(&m, 2000, 2, 60, &rng);
  CHECK_EQ(strataCacheNew(64 * 1024 * 1024, &c), STRATA_OK);
  for (iCase = 0; iCase < 3; iCase++) {
    comp = aComp[iCase];
    bAlways = aAlways[iCase];
    o.compression = comp ? STRATA_COMPRESSION_ZSTD : STRATA_COMPRESSION_NONE;
    CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
    strataSstPropsFree(&props);
    memset(&io, 0, sizeof(io));
    CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, strataCacheNewId(c), c, &io, &r), STRATA_OK);
    if (!r) continue;
    CHECK_EQ(strataSstMap(r, bAlways), STRATA_OK);
    if (!comp && !bAlways) {
      /* Damaged before its first use: caught at every use, for a damaged
      ** block is never marked verified. */
      checkDamageSeen(r, &m, zPath, &val);
      CHECK_EQ(getFirst(r, &m, &val, &found), STRATA_CORRUPT); /* still */
      flipByte(zPath, 10, 0x40); /* repair */
      CHECK_EQ(getFirst(r, &m, &val, &found), STRATA_OK);
      CHECK(found);
      /* Verified now: damage after the check is not looked for again
      ** (the cost of checking once; bVerifyAlways, below, sees it). */
      flipByte(zPath, 10, 0x40);
      CHECK_EQ(getFirst(r, &m, &val, &found), STRATA_OK);
      flipByte(zPath, 10, 0x40); /* repair */
    }
    nRead0 = atomic_load(&io.nRead);
    checkGets(r, &m, 2000, 1, &rng);
    checkIteration(r, &m, 1, 200, &rng);
    /* What came from the mapping counts as read. */
    CHECK(atomic_load(&io.nRead) > nRead0);
    if (comp) {
      CHECK(strataCacheCount(c) > 0); /* decoded blocks are cached */
    } else {
      CHECK_EQ(strataCacheCount(c), 0); /* used in place */
    }
    if (bAlways) {
      /* Damage under the open reader is seen at the next use: nothing
      ** verified earlier is trusted. */
      checkDamageSeen(r, &m, zPath, &val);
      flipByte(zPath, 10, 0x40); /* repair */
      CHECK_EQ(getFirst(r, &m, &val, &found), STRATA_OK);
      CHECK(found);
    }
    CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
    for (n = 0, it->pMethods->xSeekLast(it); it->bValid; it->pMethods->xPrev(it)) n++;
    CHECK_EQ(it->rc, STRATA_OK);
    CHECK_EQ(n, m.n);
    strataIterClose(it);
    strataSstClose(r);
    r = NULL;
  }
  /* An env without xMap: STRATA_NOTFOUND, and the reader reads the file. */
  pFault = strataFaultEnvNew(strataEnvDefault());
  CHECK_EQ(strataSstOpen(pFault, zPath, strataCacheNewId(c), c, NULL, &r), STRATA_OK);
  if (r) {
    CHECK_EQ(strataSstMap(r, 0), STRATA_NOTFOUND);
    checkGets(r, &m, 2000, 1, &rng);
    strataSstClose(r);
  }
  strataFaultEnvFree(pFault);
  strataBufFree(&val);
  strataCacheFree(c);
  modelFree(&m);
}

/* ------------------------------------------------------------------ */
/* FAULTS */

static void test_sst_read_faults(void) {
  TestRng rng;
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataIter *it = NULL;
  StrataBuf val = {0};
  strata_env *env = strataFaultEnvNew(NULL);
  const char *zPath;
  int n, found, type, rc, nUser = 2000, nOpenFaults = 0;
  test_srand(&rng, 5);
  modelMake(&m, nUser, 1, 50, &rng);
  zPath = tablePath("fault.sst");
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  strataSstPropsFree(&props);

  /* Each read of open failing in turn. */
  for (n = 1; n < 20; n++) {
    strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, n);
    rc = strataSstOpen(env, zPath, 1, NULL, NULL, &r);
    if (!strataFaultEnvFired(env)) {
      CHECK_EQ(rc, STRATA_OK);
      break;
    }
    CHECK_EQ(rc, STRATA_IOERR);
    CHECK(r == NULL);
    nOpenFaults++;
  }
  CHECK(nOpenFaults >= 4); /* open file, footer, properties, index, filter */
  strataFaultEnvDisarm(env);
  if (!r) CHECK_EQ(strataSstOpen(env, zPath, 1, NULL, NULL, &r), STRATA_OK);
  if (!r) return;

  /* Get: the data block read fails. */
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, 1);
  rc = strataSstGet(r, m.a[10].k, m.a[10].nk - 8, STRATA_MAX_SEQ, NULL, &found, &type, &val);
  CHECK_EQ(rc, STRATA_IOERR);
  CHECK_EQ(found, 0);
  strataFaultEnvDisarm(env);
  rc = strataSstGet(r, m.a[10].k, m.a[10].nk - 8, STRATA_MAX_SEQ, NULL, &found, &type, &val);
  CHECK_EQ(rc, STRATA_OK);
  CHECK_EQ(found, 1);

  /* Iterators without cache, filling or not (readahead): the nth read fails. */
  for (int bFill = 0; bFill <= 1; bFill++) {
    static int anReads[2];
    int nReads, nSeen;
    /* Count the reads of a full scan, then fail each in turn. */
    CHECK_EQ(strataSstIterNew(r, bFill, &it), STRATA_OK);
    strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, 1000000);
    for (it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) {
    }
    nReads = strataFaultEnvCount(env);
    strataIterClose(it);
    anReads[bFill] = nReads;
    if (bFill == 1)
      CHECK(anReads[0] * 2 < anReads[1]); /* the scan that does not fill reads ahead */
    for (n = 1; n <= nReads; n += 1 + nReads / 8) {
      CHECK_EQ(strataSstIterNew(r, bFill, &it), STRATA_OK);
      strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, n);
      nSeen = 0;
      for (it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) {
        if (!entMatches(it, &m.a[nSeen])) nSeen = -1000000;
        nSeen++;
      }
      CHECK(strataFaultEnvFired(env));
      CHECK_EQ(it->rc, STRATA_IOERR);
      CHECK(nSeen >= 0 && nSeen < m.n);
      strataFaultEnvDisarm(env);
      it->pMethods->xSeekFirst(it); /* sticky */
      CHECK(!it->bValid);
      CHECK_EQ(it->rc, STRATA_IOERR);
      strataIterClose(it);
    }
  }
  /* Backward and Seek too. */
  CHECK_EQ(strataSstIterNew(r, 1, &it), STRATA_OK);
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, 1);
  it->pMethods->xSeek(it, m.a[m.n / 2].k, m.a[m.n / 2].nk);
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_IOERR);
  strataIterClose(it);
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, 3);
  for (n = 0, it->pMethods->xSeekLast(it); it->bValid && n < 2 * m.n; it->pMethods->xPrev(it)) n++;
  CHECK_EQ(it->rc, STRATA_IOERR);
  strataIterClose(it);
  strataFaultEnvDisarm(env);
  CHECK_EQ(strataSstVerify(r), STRATA_OK);
  strataSstClose(r);
  strataBufFree(&val);
  strataFaultEnvFree(env);
  modelFree(&m);
}

static void test_sst_write_faults(void) {
  TestRng rng;
  Model m;
  strata_env *env = strataFaultEnvNew(NULL);
  const char *zPath = tablePath("wfault.sst");
  int n, nFired = 0;
  test_srand(&rng, 6);
  modelMake(&m, 20000, 1, 40, &rng); /* > 256 KiB of blocks: several writes */
  for (n = 1; n < 40; n++) {
    SstOptions o = defaultOpts();
    SstProps props;
    int kind = n % 3 == 0   ? STRATA_FAULT_ENOSPC
               : n % 3 == 1 ? STRATA_FAULT_EIO
                            : STRATA_FAULT_SHORT;
    int rc;
    o.compression = STRATA_COMPRESSION_NONE;
    strataFaultEnvArm(env, kind, STRATA_FAULTOP_WRITE, n);
    rc = buildTable(zPath, &m, &o, env, &props);
    if (!strataFaultEnvFired(env)) {
      CHECK_EQ(rc, STRATA_OK);
      strataSstPropsFree(&props);
      break;
    }
    nFired++;
    CHECK_EQ(rc, kind == STRATA_FAULT_ENOSPC ? STRATA_FULL : STRATA_IOERR);
    CHECK(!strataEnvDefault()->xExists(strataEnvDefault(), zPath)); /* removed */
    CHECK_EQ(props.nEntries, 0);
  }
  CHECK(nFired >= 3);
  /* A failed fsync fails Finish when bSync is set. */
  {
    SstOptions o = defaultOpts();
    SstProps props;
    o.bSync = 1;
    strataFaultEnvArm(env, STRATA_FAULT_SYNC, STRATA_FAULTOP_SYNC, 1);
    CHECK_EQ(buildTable(zPath, &m, &o, env, &props), STRATA_IOERR);
    CHECK(strataFaultEnvFired(env));
    CHECK(!strataEnvDefault()->xExists(strataEnvDefault(), zPath));
    strataFaultEnvDisarm(env);
    CHECK_EQ(buildTable(zPath, &m, &o, env, &props), STRATA_OK);
    strataSstPropsFree(&props);
  }
  strataFaultEnvFree(env);
  modelFree(&m);
}

/* ------------------------------------------------------------------ */
/* CACHE */

static int nHoldFreed;
static void holdFree(void *p) {
  (*(int *)p)++;
}

static void test_sst_cache(void) {
  TestRng rng;
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataIter *it = NULL;
  StrataBuf val = {0};
  BlockCache *c = NULL;
  const char *zPath = tablePath("cache.sst");
  u64 id, nHit0, nMiss0, nHit1, nMiss1, nBlocks;
  int i, nUser = 3000, nBad = 0, found, type, n;
  test_srand(&rng, 8);
  modelMake(&m, nUser, 2, 60, &rng);
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  nBlocks = props.nDataBlocks;
  strataSstPropsFree(&props);
  CHECK_EQ(strataCacheNew(64 * 1024 * 1024, &c), STRATA_OK);
  id = strataCacheNewId(c);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, id, c, NULL, &r), STRATA_OK);
  if (!r) return;
  /* The index and filter are reserved in the cache, not entries of it. */
  CHECK_EQ(strataCacheCount(c), 0);
  CHECK_EQ(strataCacheUsage(c), 0);
  CHECK_EQ(strataCacheReserved(c), strataSstMemoryUsage(r));
  CHECK(strataSstMemoryUsage(r) > 1000);

  /* An iterator holding a pinned handle (as a table cache entry keeps the
  ** reader open) lets go of it when closed, not before. */
  {
    u64 idHold = strataCacheNewId(c);
    CacheHandle *h = strataCacheInsert(c, idHold, 0, &nHoldFreed, 1, holdFree);
    nHoldFreed = 0;
    CHECK(h != NULL);
    CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
    if (h && it) {
      strataSstIterHold(it, c, h);
      it->pMethods->xSeekFirst(it);
      CHECK(it->bValid);
      strataCacheErase(c, idHold, 0); /* out of the cache, still pinned */
      CHECK_EQ(nHoldFreed, 0);
      strataIterClose(it);
      CHECK_EQ(nHoldFreed, 1);
    }
  }

  /* A scan that does not fill leaves the cache as it was. */
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  for (n = 0, it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) n++;
  CHECK_EQ(n, m.n);
  strataIterClose(it);
  CHECK_EQ(strataCacheCount(c), 0);
  /* A filling scan caches its first blocks, then, being a long scan, stops
  ** adding them; backward too. */
  CHECK(nBlocks > 30);
  CHECK_EQ(strataSstIterNew(r, 1, &it), STRATA_OK);
  for (n = 0, it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) n++;
  CHECK_EQ(n, m.n);
  CHECK(strataCacheCount(c) > 4);
  CHECK(strataCacheCount(c) < nBlocks / 2);
  strataCacheEraseId(c, id);
  for (n = 0, it->pMethods->xSeekLast(it); it->bValid; it->pMethods->xPrev(it)) n++;
  CHECK_EQ(n, m.n);
  CHECK(strataCacheCount(c) > 4);
  CHECK(strataCacheCount(c) < nBlocks / 2);
  /* Short range reads (a seek, a few steps) fill it, however many there
  ** are; charge covers the decoded blocks. */
  for (i = 0; i < m.n; i += 7) {
    int j;
    it->pMethods->xSeek(it, m.a[i].k, m.a[i].nk);
    for (j = 0; j < 20 && it->bValid; j++) it->pMethods->xNext(it);
  }
  CHECK_EQ(it->rc, STRATA_OK);
  strataIterClose(it);
  CHECK_EQ(strataCacheCount(c), nBlocks);
  strataSstClose(r); /* reopen, so that the index and filter are charged again */
  CHECK_EQ(strataCacheReserved(c), 0);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, id, c, NULL, &r), STRATA_OK);
  if (!r) return;
  CHECK_EQ(strataCacheCount(c), nBlocks);
  CHECK(strataCacheUsage(c) >= nBlocks * 1000);
  CHECK_EQ(strataCacheReserved(c), strataSstMemoryUsage(r));

  /* Gets now hit. */
  strataCacheCounters(c, &nHit0, &nMiss0);
  for (i = 0; i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2, 1);
    int want = modelGet(&m, u, nu, STRATA_MAX_SEQ);
    if (strataSstGet(r, u, nu, STRATA_MAX_SEQ, NULL, &found, &type, &val) != STRATA_OK ||
        found != 1 ||
        (type == 1 && (val.n != m.a[want].nv || (val.n && memcmp(val.a, m.a[want].v, val.n))))) {
      nBad++;
    }
  }
  strataCacheCounters(c, &nHit1, &nMiss1);
  CHECK_EQ(nBad, 0);
  CHECK_EQ(nMiss1, nMiss0);
  CHECK(nHit1 - nHit0 >= (u64)nUser);

  /* Steady state: Gets on cached blocks, and a scan over them, allocate
  ** nothing (every allocation from now on would fail). */
  CHECK_EQ(strataBufReserve(&val, 4096), STRATA_OK);
  CHECK_EQ(strataSstIterNew(r, 1, &it), STRATA_OK);
  strataTestFailMalloc(1, 1);
  for (i = 0; i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2 + (u64)(i % 2), 1);
    if (strataSstGet(r, u, nu, STRATA_MAX_SEQ, NULL, &found, &type, &val) != STRATA_OK) nBad++;
  }
  for (n = 0, it->pMethods->xSeekFirst(it); it->bValid && n < 3 * m.n; it->pMethods->xNext(it)) n++;
  for (it->pMethods->xSeekLast(it); it->bValid && n < 3 * m.n; it->pMethods->xPrev(it)) n++;
  strataTestFailMalloc(0, 0);
  CHECK_EQ(nBad, 0);
  CHECK_EQ(it->rc, STRATA_OK);
  CHECK_EQ(n, 2 * m.n);
  strataIterClose(it);

  /* Damage the file under the open reader: cached blocks still serve, even
  ** to a scan that does not fill; once evicted, the damage is reported. */
  flipByte(zPath, 10, 0x40);
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  for (n = 0, it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) n++;
  CHECK_EQ(n, m.n);
  CHECK_EQ(it->rc, STRATA_OK);
  strataIterClose(it);
  strataCacheEraseId(c, id);
  CHECK_EQ(strataCacheCount(c), 0);
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_CORRUPT);
  strataIterClose(it);
  CHECK_EQ(strataSstGet(r, m.a[0].k, m.a[0].nk - 8, STRATA_MAX_SEQ, NULL, &found, &type, &val),
           STRATA_CORRUPT);
  CHECK_EQ(strataCacheCount(c), 0);   /* a damaged block is never cached */
  CHECK(strataCacheReserved(c) > 0);   /* the index and filter, reserved */
  strataSstClose(r);
  CHECK_EQ(strataCacheReserved(c), 0); /* ...and given back by close */
  CHECK_EQ(strataCacheUsage(c), 0);

  /* A cache far smaller than the table: blocks come and go, results stay right. */
  strataCacheFree(c);
  flipByte(zPath, 10, 0x40); /* repair */
  CHECK_EQ(strataCacheNew(16 * 1024, &c), STRATA_OK);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, strataCacheNewId(c), c, NULL, &r), STRATA_OK);
  if (r) {
    checkIteration(r, &m, 1, 300, &rng);
    CHECK(strataCacheUsage(c) <= 64 * 1024);
    strataSstClose(r);
  }
  strataCacheFree(c);
  strataBufFree(&val);
  modelFree(&m);
}

/* ------------------------------------------------------------------ */
/* THREADS: one reader, a small shared cache, Gets and scans at once. */

typedef struct ThreadCtx {
  SstReader *r;
  const Model *m;
  int nUser;
  u64 seed;
  int nBad;
} ThreadCtx;

static void *readerThread(void *p) {
  ThreadCtx *t = p;
  StrataBuf val = {0};
  TestRng rng;
  int i;
  test_srand(&rng, t->seed);
  for (i = 0; i < 4000; i++) {
    if (i % 100 == 99) { /* a short scan from a random key */
      StrataIter *it = NULL;
      int j = (int)test_randn(&rng, (u64)t->m->n), q;
      if (strataSstIterNew(t->r, (int)(i % 2), &it) != STRATA_OK) {
        t->nBad++;
        continue;
      }
      it->pMethods->xSeek(it, t->m->a[j].k, t->m->a[j].nk);
      for (q = j; q < j + 200 && q < t->m->n; q++) {
        if (!entMatches(it, &t->m->a[q])) t->nBad++;
        it->pMethods->xNext(it);
      }
      if (it->rc) t->nBad++;
      strataIterClose(it);
    } else {
      u8 u[64];
      size_t nu = userKey(u, test_randn(&rng, (u64)t->nUser * 2), 1);
      u64 seq = test_randn(&rng, 2) ? STRATA_MAX_SEQ : test_randn(&rng, 1100);
      int found = 0, type = 0, want = modelGet(t->m, u, nu, seq);
      int rc = strataSstGet(t->r, u, nu, seq, NULL, &found, &type, &val);
      if (rc || (want >= 0) != (found == 1)) {
        t->nBad++;
      } else if (want >= 0 && type == STRATA_TYPE_VALUE &&
                 (val.n != t->m->a[want].nv || (val.n && memcmp(val.a, t->m->a[want].v, val.n)))) {
        t->nBad++;
      }
    }
  }
  strataBufFree(&val);
  return NULL;
}

static void test_sst_threads(void) {
  TestRng rng;
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  BlockCache *c = NULL;
  ThreadCtx aCtx[4];
  pthread_t aThread[4];
  const char *zPath = tablePath("threads.sst");
  int i, nUser = 5000;
  u64 id;
  test_srand(&rng, test_seed("sst_threads"));
  modelMake(&m, nUser, 3, 100, &rng);
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  strataSstPropsFree(&props);
  CHECK_EQ(strataCacheNew(64 * 1024, &c), STRATA_OK); /* far smaller than the table */
  id = strataCacheNewId(c);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, id, c, NULL, &r), STRATA_OK);
  if (r) {
    for (i = 0; i < 4; i++) {
      aCtx[i].r = r;
      aCtx[i].m = &m;
      aCtx[i].nUser = nUser;
      aCtx[i].seed = test_rand(&rng);
      aCtx[i].nBad = 0;
      CHECK_EQ(pthread_create(&aThread[i], NULL, readerThread, &aCtx[i]), 0);
    }
    for (i = 0; i < 4; i++) {
      pthread_join(aThread[i], NULL);
      CHECK_EQ(aCtx[i].nBad, 0);
    }
    strataSstClose(r);
  }
  /* Data blocks may stay cached after the reader closes (as the engine
  ** erases a deleted table's blocks by id): nothing else may remain. */
  strataCacheEraseId(c, id);
  CHECK_EQ(strataCacheUsage(c), 0);
  strataCacheFree(c);
  modelFree(&m);
}

/* ------------------------------------------------------------------ */
/* SPEED (informational) */

/* The index windows (sstable.c, INDEX WINDOWS): user keys whose 8 bytes
** after the prefix common to the table are the same for half the table
** ("pre0AAAAAAAAAA..." and "pre1AAAAAAAAAA..."), so the window search falls
** back to full keys; keys shorter than prefix + 8; and targets below, above,
** inside and a prefix of the common prefix. Get and Seek against the model. */
static void test_sst_index_windows(void) {
  static const char *azTarget[] = {"",     "p",     "pr",    "pre",   "pre0",  "pre0A",
                                   "pre1", "pre2",  "prf",   "\xff", "pra",   "pre0B",
                                   "pre0AAAAAAAAAA", "pre1AAAAAAAAAA999999", "pre1AAAAAAAAAA"};
  Model m;
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataBuf val = {0};
  StrataIter *it = NULL;
  TestRng rng;
  const char *zPath = tablePath("windows.sst");
  int i, n = 3000, nBad = 0, t;
  test_srand(&rng, 5);
  m.a = calloc((size_t)n, sizeof(Ent));
  m.n = 0;
  for (i = 0; i < n; i++) {
    Ent *e = &m.a[m.n++];
    char z[64];
    size_t nu;
    if (i % 10 == 9)
      nu = (size_t)snprintf(z, sizeof(z), "pre%d", i / 1500 + 2); /* short keys above */
    else
      nu = (size_t)snprintf(z, sizeof(z), "pre%dAAAAAAAAAA%06d", i / 1500, (i % 1500) * 2);
    e->nk = nu + 8;
    e->k = malloc(e->nk);
    memcpy(e->k, z, nu);
    strataPut64(e->k + nu, strataPackTrailer((u64)i + 1, STRATA_TYPE_VALUE));
    e->nv = 10;
    e->v = malloc(e->nv);
    memset(e->v, 'a' + i % 26, e->nv);
  }
  qsort(m.a, (size_t)m.n, sizeof(Ent), entCmp);
  /* Drop duplicate user keys (the short ones repeat): keep the newest. */
  {
    int j = 0;
    for (i = 0; i < m.n; i++) {
      if (j > 0 && strataUkeyCompare(m.a[j - 1].k, m.a[j - 1].nk - 8, m.a[i].k, m.a[i].nk - 8) == 0) {
        free(m.a[i].k);
        free(m.a[i].v);
      } else {
        m.a[j++] = m.a[i];
      }
    }
    m.n = j;
  }
  o.nBlockSize = 256; /* many index entries */
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  strataSstPropsFree(&props);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 1, NULL, NULL, &r), STRATA_OK);
  if (!r) {
    modelFree(&m);
    return;
  }
  CHECK_EQ(strataSstVerify(r), STRATA_OK);
  /* Every key, and one absent key next to each. */
  for (i = 0; i < m.n; i++) {
    int found = 0, type = 0;
    u8 k[64];
    size_t nu = m.a[i].nk - 8;
    if (strataSstGet(r, m.a[i].k, nu, STRATA_MAX_SEQ, NULL, &found, &type, &val) != STRATA_OK ||
        !found || val.n != m.a[i].nv || memcmp(val.a, m.a[i].v, val.n) != 0) {
      nBad++;
    }
    memcpy(k, m.a[i].k, nu);
    k[nu] = '5';
    if (strataSstGet(r, k, nu + 1, STRATA_MAX_SEQ, NULL, &found, &type, &val) != STRATA_OK ||
        found) {
      nBad++;
    }
  }
  CHECK_EQ(nBad, 0);
  /* Seeks to the odd targets, with every trailer kind. */
  CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
  for (t = 0; it && t < (int)(sizeof(azTarget) / sizeof(azTarget[0])); t++) {
    u8 k[64];
    size_t nu = strlen(azTarget[t]);
    int want, q;
    memcpy(k, azTarget[t], nu);
    for (q = 0; q < 3; q++) {
      strataPut64(k + nu, q == 0 ? ~(u64)0 : q == 1 ? 0 : strataPackTrailer(1500, 1));
      want = modelLowerBound(&m, k, nu + 8);
      it->pMethods->xSeek(it, k, nu + 8);
      if (want >= m.n ? it->bValid : !entMatches(it, &m.a[want])) nBad++;
    }
  }
  CHECK_EQ(nBad, 0);
  strataIterClose(it);
  checkIteration(r, &m, 0, 2000, &rng);
  strataSstClose(r);
  strataBufFree(&val);
  modelFree(&m);
}

/* SEEKING SEVERAL TABLES: strataSstIterSeekMany must leave every iterator
** exactly as its own xSeek would, and in the same state for the steps that
** follow. Five tables split one model between them (as the runs of an LSM
** tree do), read with and without the cache, filling it or not, zstd or
** not, one with a damaged data block; iterators over them are seeked in
** pairs, one by xSeek, one in batches (of 22, so in two rounds of the
** batch, with a repeated table), and compared after the seek and after
** steps both ways. Targets: present keys, keys between, before and after
** everything (past the last separator), the same key again and nearby keys
** (blocks kept, positions used as hints). */
typedef struct SeekManyCount {
  int n;
} SeekManyCount;

static void seekManyDuring(void *p) { ((SeekManyCount *)p)->n++; }

static int sameEntry(const StrataIter *a, const StrataIter *b) {
  if (a->rc != b->rc || a->bValid != b->bValid) return 0;
  if (!a->bValid) return 1;
  return a->nKey == b->nKey && memcmp(a->pKey, b->pKey, a->nKey) == 0 && a->nVal == b->nVal &&
         (a->nVal == 0 || memcmp(a->pVal, b->pVal, a->nVal) == 0);
}

static void test_sst_seek_many(void) {
  enum { nTable = 5, nIter = 22 };
  TestRng rng;
  Model m, aPart[nTable];
  SstReader *aR[nTable] = {0};
  StrataIter *aSolo[nIter] = {0}, *aMany[nIter] = {0};
  BlockCache *c = NULL;
  int i, j, step, nBad = 0, nCorrupt = 0, nSteps = bValgrind ? 300 : 1500;
  test_srand(&rng, 31);
  modelMake(&m, 4000, 2, 80, &rng);
  for (j = 0; j < nTable; j++) {
    aPart[j].a = calloc((size_t)m.n + 1, sizeof(Ent));
    aPart[j].n = 0;
  }
  for (i = 0; i < m.n; i++) { /* each entry to one table; the model keeps ownership */
    Model *p = &aPart[test_randn(&rng, nTable)];
    p->a[p->n++] = m.a[i];
  }
  CHECK_EQ(strataCacheNew(64 * 1024 * 1024, &c), STRATA_OK);
  for (j = 0; j < nTable; j++) {
    char zName[32];
    SstOptions o = defaultOpts();
    SstProps props;
    if (j == 1) o.compression = STRATA_COMPRESSION_NONE;
    o.nBlockSize = j == 2 ? 512 : 4096;
    snprintf(zName, sizeof(zName), "seekmany%d.sst", j);
    CHECK_EQ(buildTable(tablePath(zName), &aPart[j], &o, NULL, &props), STRATA_OK);
    strataSstPropsFree(&props);
    if (j == 4) { /* damage the first data block's stored bytes */
      flipByte(tablePath(zName), 20, 0x40);
    }
    CHECK_EQ(strataSstOpen(strataEnvDefault(), tablePath(zName), strataCacheNewId(c),
                           j == 3 ? NULL : c, NULL, &aR[j]),
             STRATA_OK);
  }
  for (i = 0; i < nIter; i++) {
    SstReader *r = aR[i % nTable];
    int bFill = (i / nTable) % 2;
    if (!r) continue;
    CHECK_EQ(strataSstIterNew(r, bFill, &aSolo[i]), STRATA_OK);
    CHECK_EQ(strataSstIterNew(r, bFill, &aMany[i]), STRATA_OK);
  }
  for (step = 0; step < nSteps; step++) {
    static u8 k[256];
    size_t nk;
    SeekManyCount during = {0};
    int q, kind = (int)test_randn(&rng, 10);
    if (kind < 3) { /* a present internal key */
      const Ent *e = &m.a[test_randn(&rng, (u64)m.n)];
      memcpy(k, e->k, e->nk);
      nk = e->nk;
    } else if (kind == 3) { /* after everything */
      memcpy(k, "zzz", 3);
      strataPut64(k + 3, strataPackTrailer(5, 1));
      nk = 11;
    } else if (kind == 4) { /* before everything */
      strataPut64(k, strataPackTrailer(5, 1));
      nk = 8;
    } else if (kind == 5 && step > 0) { /* the previous target again */
      nk = 0;
    } else { /* user keys present or absent, prefixes, any sequence */
      nk = userKey(k, test_randn(&rng, (u64)m.n * 2 + 4), (int)test_randn(&rng, 2));
      if (kind == 9 && nk > 4) nk -= 1 + test_randn(&rng, 3);
      strataPut64(k + nk, strataPackTrailer(test_randn(&rng, 1200), (int)test_randn(&rng, 2)));
      nk += 8;
    }
    {
      static size_t nPrev;
      if (nk == 0) nk = nPrev;
      nPrev = nk;
    }
    for (i = 0; i < nIter; i++) {
      if (aSolo[i]) aSolo[i]->pMethods->xSeek(aSolo[i], k, nk);
    }
    strataSstIterSeekMany(aMany, aMany[nIter - 1] ? nIter : 0, k, nk, seekManyDuring, &during);
    if (during.n != 1) nBad++;
    for (i = 0; i < nIter; i++) {
      if (!aSolo[i]) continue;
      if (!sameEntry(aSolo[i], aMany[i])) nBad++;
      if (aSolo[i]->rc == STRATA_CORRUPT) nCorrupt++;
    }
    /* The same steps on both sides. */
    for (q = 0; q < 6; q++) {
      int bBack = test_randn(&rng, 3) == 0;
      for (i = 0; i < nIter; i++) {
        if (!aSolo[i] || !aSolo[i]->bValid || !aMany[i]->bValid) continue;
        if (bBack) {
          aSolo[i]->pMethods->xPrev(aSolo[i]);
          aMany[i]->pMethods->xPrev(aMany[i]);
        } else {
          aSolo[i]->pMethods->xNext(aSolo[i]);
          aMany[i]->pMethods->xNext(aMany[i]);
        }
        if (!sameEntry(aSolo[i], aMany[i])) nBad++;
      }
    }
    /* A damaged table fails for good: give its iterators a fresh start now
    ** and then, so that the healthy blocks of it keep being compared. */
    if (step % 50 == 49) {
      for (i = 4; i < nIter; i += nTable) {
        if (!aR[4]) continue;
        strataIterClose(aSolo[i]);
        strataIterClose(aMany[i]);
        aSolo[i] = aMany[i] = NULL;
        CHECK_EQ(strataSstIterNew(aR[4], (i / nTable) % 2, &aSolo[i]), STRATA_OK);
        CHECK_EQ(strataSstIterNew(aR[4], (i / nTable) % 2, &aMany[i]), STRATA_OK);
      }
    }
  }
  CHECK_EQ(nBad, 0);
  CHECK(nCorrupt > 0); /* the damaged block was met */
  for (i = 0; i < nIter; i++) {
    strataIterClose(aSolo[i]);
    strataIterClose(aMany[i]);
  }
  for (j = 0; j < nTable; j++) {
    strataSstClose(aR[j]);
    free(aPart[j].a);
  }
  strataCacheFree(c);
  modelFree(&m);
}

static void test_sst_speed(void) {
  int nEnt = bValgrind ? 50000 : 1000000, nGet = nEnt / 4, i, nFound = 0;
  SstOptions o = defaultOpts();
  SstBuilder *b = NULL;
  SstProps props;
  SstReader *r = NULL;
  BlockCache *c = NULL;
  StrataBuf val = {0};
  TestRng rng;
  u8 k[32], v[100];
  const char *zPath = tablePath("speed.sst");
  u64 t0, t1, nRaw = 0;
  test_srand(&rng, 1);
  for (i = 0; i < (int)sizeof(v); i++) v[i] = (u8)(i < 50 ? test_rand(&rng) : 'x');
  CHECK_EQ(strataSstBuilderNew(strataEnvDefault(), zPath, &o, NULL, &b), STRATA_OK);
  if (!b) return;
  t0 = strataNowMicros();
  for (i = 0; i < nEnt; i++) {
    int nk = snprintf((char *)k, sizeof(k), "%016d", i);
    strataPut64(k + nk, strataPackTrailer((u64)i + 1, 1));
    v[0] = (u8)i;
    if (strataSstBuilderAdd(b, k, (size_t)nk + 8, v, sizeof(v))) break;
    nRaw += (size_t)nk + 8 + sizeof(v);
  }
  CHECK_EQ(strataSstBuilderFinish(b, &props), STRATA_OK);
  t1 = strataNowMicros();
  printf("# build: %d entries, %.1f MB raw -> %.1f MB, %.0f MB/s\n", nEnt, nRaw / 1e6,
         props.fileSize / 1e6, nRaw / (double)(t1 - t0 + 1));
  strataSstPropsFree(&props);
  CHECK_EQ(strataCacheNew(512 * 1024 * 1024, &c), STRATA_OK);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, strataCacheNewId(c), c, NULL, &r), STRATA_OK);
  if (r) {
    int pass, found, type;
    for (pass = 0; pass < 2; pass++) {
      t0 = strataNowMicros();
      for (i = 0; i < nGet; i++) {
        int nk = snprintf((char *)k, sizeof(k), "%016d", (int)test_randn(&rng, (u64)nEnt));
        if (strataSstGet(r, k, (size_t)nk, STRATA_MAX_SEQ, NULL, &found, &type, &val) ==
            STRATA_OK) {
          nFound += found;
        }
      }
      t1 = strataNowMicros();
      printf("# get (%s cache): %.0f Get/s\n", pass ? "warm" : "cold",
             nGet / ((t1 - t0 + 1) / 1e6));
    }
    CHECK_EQ(nFound, 2 * nGet);
    {
      StrataIter *it = NULL;
      int n = 0;
      CHECK_EQ(strataSstIterNew(r, 0, &it), STRATA_OK);
      t0 = strataNowMicros();
      for (it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) n++;
      t1 = strataNowMicros();
      CHECK_EQ(n, nEnt);
      printf("# scan: %.0f entries/s\n", n / ((t1 - t0 + 1) / 1e6));
      strataIterClose(it);
    }
    strataSstClose(r);
  }
  strataCacheFree(c);
  strataBufFree(&val);
}

/* strataSstGetHashed: with the key's own filter hash it answers as Get
** does; the filter tests the hash it is given (a lookup hashes the key once
** for all its tables), so a wrong hash must make it reject most present
** keys. strataSstPrefetch is only a hint, with or without a filter. */
static void test_sst_get_hashed(void) {
  const char *zPath = tablePath("hashed.sst");
  Model m;
  TestRng rng = {4242};
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL, *rNoFilter = NULL;
  StrataBuf val = {0};
  int i, nUser = 3000, nSame = 0, nRejected = 0;
  modelMake(&m, nUser, 1, 40, &rng);
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  strataSstPropsFree(&props);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 901, gCache, NULL, &r), STRATA_OK);
  for (i = 0; r && i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2, 1);
    u32 h = strataBloomHash(u, nu);
    int f1 = -1, t1 = -1, f2 = -1, t2 = -1;
    size_t n1;
    strataSstPrefetch(r, h);
    CHECK_EQ(strataSstGet(r, u, nu, STRATA_MAX_SEQ, NULL, &f1, &t1, &val), STRATA_OK);
    n1 = val.n;
    CHECK_EQ(strataSstGetHashed(r, u, nu, h, STRATA_MAX_SEQ, NULL, &f2, &t2, &val), STRATA_OK);
    nSame += f1 == 1 && f1 == f2 && t1 == t2 && n1 == val.n;
    CHECK_EQ(strataSstGetHashed(r, u, nu, ~h * 0x9E3779B1u, STRATA_MAX_SEQ, NULL, &f2, &t2, &val),
             STRATA_OK);
    nRejected += f2 == 0;
  }
  CHECK_EQ(nSame, nUser);
  CHECK(nRejected > nUser * 9 / 10);
  strataSstClose(r);
  /* Without a filter the hash is not used: every key is found. */
  o.bloomBitsPerKey = 0;
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  strataSstPropsFree(&props);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, 902, gCache, NULL, &rNoFilter), STRATA_OK);
  for (i = 0, nSame = 0; rNoFilter && i < nUser; i++) {
    u8 u[64];
    size_t nu = userKey(u, (u64)i * 2, 1);
    int f = -1, t = -1;
    strataSstPrefetch(rNoFilter, 12345);
    CHECK_EQ(strataSstGetHashed(rNoFilter, u, nu, 12345, STRATA_MAX_SEQ, NULL, &f, &t, &val),
             STRATA_OK);
    nSame += f == 1;
  }
  CHECK_EQ(nSame, nUser);
  strataSstClose(rNoFilter);
  strataBufFree(&val);
  modelFree(&m);
}

/* A cached data block is charged its buffer and the cache entry's own cost
** (strataCacheEntryOverhead), so that the cache's capacity bounds the memory
** it really holds. Uncompressed 4 KiB blocks: every block but the last holds
** at least 4096 bytes, so its buffer (rounded to 128 bytes, with the 5-byte
** trailer read into it) has at least 4224 bytes after a 16-byte header. */
static void test_sst_cache_charge(void) {
  const char *zPath = tablePath("charge.sst");
  Model m;
  TestRng rng = {77};
  SstOptions o = defaultOpts();
  SstProps props;
  SstReader *r = NULL;
  StrataBuf val = {0};
  BlockCache *c = NULL;
  size_t nMeta;
  int found = 0, type = 0;
  u8 u[64];
  size_t nu;
  o.compression = STRATA_COMPRESSION_NONE;
  modelMake(&m, 2000, 1, 60, &rng);
  CHECK_EQ(buildTable(zPath, &m, &o, NULL, &props), STRATA_OK);
  CHECK(props.nDataBlocks > 2);
  strataSstPropsFree(&props);
  CHECK(strataCacheEntryOverhead() >= 100);
  CHECK_EQ(strataCacheNew(8 * 1024 * 1024, &c), STRATA_OK);
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, strataCacheNewId(c), c, NULL, &r), STRATA_OK);
  if (!r || !c) return;
  nMeta = strataCacheUsage(c); /* 0: the index and filter are reserved */
  /* The first key: a miss, added to the cache unpinned. */
  nu = userKey(u, 0, 1);
  CHECK_EQ(strataSstGet(r, u, nu, STRATA_MAX_SEQ, NULL, &found, &type, &val), STRATA_OK);
  CHECK_EQ(found, 1);
  CHECK_EQ(strataCacheCount(c), 1);
  CHECK(strataCacheUsage(c) - nMeta >= 16 + 4224 + strataCacheEntryOverhead());
  CHECK(strataCacheUsage(c) - nMeta < 16 + 4224 + 512 + strataCacheEntryOverhead());
  strataSstClose(r);
  strataCacheFree(c);
  strataBufFree(&val);
  modelFree(&m);
}

/* A builder given a budget reserves its buffers in the budget's cache while
** it lives; iterators of a reader given one charge their read-ahead windows
** to it, all together within nReadaheadMax, and give them back when
** closed. Scans read the same entries whatever the budget allows. */
static int scanCount(SstReader *r, const Model *m, int bBackward, StrataBudget *pB,
                     size_t *pnMaxRa) {
  StrataIter *it = NULL;
  int n = 0, bOk = 1;
  if (strataSstIterNew(r, 0, &it) != STRATA_OK) return -1;
  if (bBackward) {
    for (it->pMethods->xSeekLast(it); it->bValid; it->pMethods->xPrev(it)) {
      if (!entMatches(it, &m->a[m->n - 1 - n])) bOk = 0;
      n++;
      if (atomic_load(&pB->nReadahead) > *pnMaxRa) *pnMaxRa = atomic_load(&pB->nReadahead);
    }
  } else {
    for (it->pMethods->xSeekFirst(it); it->bValid; it->pMethods->xNext(it)) {
      if (!entMatches(it, &m->a[n])) bOk = 0;
      n++;
      if (atomic_load(&pB->nReadahead) > *pnMaxRa) *pnMaxRa = atomic_load(&pB->nReadahead);
    }
  }
  if (it->rc) bOk = 0;
  strataIterClose(it);
  return bOk ? n : -1;
}

static void test_sst_budget(void) {
  const char *zPath = tablePath("budget.sst");
  Model m;
  TestRng rng = {91};
  SstOptions o = defaultOpts();
  SstProps props;
  SstBuilder *b = NULL;
  SstReader *r = NULL;
  BlockCache *c = NULL;
  StrataBudget budget;
  StrataIter *it1 = NULL, *it2 = NULL;
  size_t nMeta, nMaxRa = 0;
  int i, rc = STRATA_OK;
  modelMake(&m, 20000, 1, 200, &rng);
  CHECK_EQ(strataCacheNew(8 * 1024 * 1024, &c), STRATA_OK);
  if (!c) return;
  memset(&budget, 0, sizeof(budget));
  budget.pCache = c;
  budget.nReadaheadMax = 64 * 1024;
  o.compression = STRATA_COMPRESSION_NONE;
  o.pBudget = &budget;

  /* The builder: its write buffer and what grows is reserved, all given
  ** back when it is done. */
  CHECK_EQ(strataSstBuilderNew(strataEnvDefault(), zPath, &o, NULL, &b), STRATA_OK);
  if (!b) return;
  CHECK(strataCacheReserved(c) >= 256 * 1024);
  for (i = 0; i < m.n && rc == STRATA_OK; i++) {
    rc = strataSstBuilderAdd(b, m.a[i].k, m.a[i].nk, m.a[i].v, m.a[i].nv);
  }
  CHECK_EQ(rc, STRATA_OK);
  CHECK(strataCacheReserved(c) >= 256 * 1024 + 4 * 20000); /* + the filter's key hashes */
  CHECK_EQ(strataSstBuilderFinish(b, &props), STRATA_OK);
  CHECK(props.nDataBlocks > 100);
  strataSstPropsFree(&props);
  CHECK_EQ(strataCacheReserved(c), 0);
  CHECK(atomic_load(&budget.nFreed) >= 256 * 1024);

  /* The reader: index and filter reserved; windows within the budget. */
  CHECK_EQ(strataSstOpen(strataEnvDefault(), zPath, strataCacheNewId(c), c, NULL, &r), STRATA_OK);
  if (!r) return;
  strataSstSetBudget(r, &budget);
  nMeta = strataCacheReserved(c);
  CHECK_EQ(nMeta, strataSstMemoryUsage(r));
  CHECK_EQ(scanCount(r, &m, 0, &budget, &nMaxRa), m.n);
  CHECK(nMaxRa > 16 * 1024); /* it did read ahead */
  CHECK(nMaxRa <= 64 * 1024);
  CHECK_EQ(atomic_load(&budget.nReadahead), 0);
  CHECK_EQ(strataCacheReserved(c), nMeta);
  nMaxRa = 0;
  CHECK_EQ(scanCount(r, &m, 1, &budget, &nMaxRa), m.n);
  CHECK(nMaxRa > 16 * 1024 && nMaxRa <= 64 * 1024);
  CHECK_EQ(strataCacheReserved(c), nMeta);

  /* Two scans at once share the budget; windows are reserved while held. */
  CHECK_EQ(strataSstIterNew(r, 0, &it1), STRATA_OK);
  CHECK_EQ(strataSstIterNew(r, 0, &it2), STRATA_OK);
  if (it1 && it2) {
    int n1 = 0, n2 = 0;
    it1->pMethods->xSeekFirst(it1);
    it2->pMethods->xSeekFirst(it2);
    while (it1->bValid || it2->bValid) {
      if (it1->bValid) {
        CHECK(entMatches(it1, &m.a[n1]));
        n1++;
        it1->pMethods->xNext(it1);
      }
      if (it2->bValid && (!it1->bValid || n2 < n1 / 2 + 10)) {
        CHECK(entMatches(it2, &m.a[n2]));
        n2++;
        it2->pMethods->xNext(it2);
      }
      CHECK(atomic_load(&budget.nReadahead) <= 64 * 1024);
      CHECK_EQ(strataCacheReserved(c), nMeta + atomic_load(&budget.nReadahead));
    }
    CHECK_EQ(n1, m.n);
    CHECK_EQ(n2, m.n);
    CHECK_EQ(it1->rc, STRATA_OK);
    CHECK_EQ(it2->rc, STRATA_OK);
  }
  strataIterClose(it1);
  strataIterClose(it2);
  CHECK_EQ(atomic_load(&budget.nReadahead), 0);
  CHECK_EQ(strataCacheReserved(c), nMeta);

  /* No room for any window: block by block, same entries. */
  budget.nReadaheadMax = 0;
  nMaxRa = 0;
  CHECK_EQ(scanCount(r, &m, 0, &budget, &nMaxRa), m.n);
  CHECK_EQ(scanCount(r, &m, 1, &budget, &nMaxRa), m.n);
  CHECK_EQ(nMaxRa, 0);
  strataSstClose(r);
  CHECK_EQ(strataCacheReserved(c), 0);
  strataCacheFree(c);
  modelFree(&m);
}

int main(void) {
  const char *zPre = getenv("LD_PRELOAD");
  bValgrind = zPre && strstr(zPre, "vgpreload") != NULL;
  snprintf(zDir, sizeof(zDir), "%s", test_dir("sstable"));
  mkdir(zDir, 0755);
  if (strataCacheNew(8 * 1024 * 1024, &gCache) != STRATA_OK) return 1;
  RUN(test_sst_matrix);
  RUN(test_sst_large_tables);
  RUN(test_sst_compression_backoff);
  RUN(test_sst_skip_hint);
  RUN(test_sst_empty_table);
  RUN(test_sst_many_versions);
  RUN(test_sst_big_keys_and_values);
  RUN(test_sst_kept_entries);
  RUN(test_sst_builder_misuse);
  RUN(test_sst_corruption);
  RUN(test_sst_mapped);
  RUN(test_sst_read_faults);
  RUN(test_sst_write_faults);
  RUN(test_sst_cache);
  RUN(test_sst_threads);
  RUN(test_sst_index_windows);
  RUN(test_sst_seek_many);
  RUN(test_sst_get_hashed);
  RUN(test_sst_cache_charge);
  RUN(test_sst_budget);
  RUN(test_sst_speed);
  strataCacheFree(gCache);
  test_rmdir(zDir);
  return TEST_SUMMARY();
}
