/*
** test_block.c -- the block builder and iterator (block.c).
**
** Every test builds a block from a sorted reference array of internal keys
** and values and checks the iterator against it: full scans both ways, Seek
** to every key and to absent keys (against a lower bound computed on the
** reference), random walks mixing Seek/Next/Prev, restart intervals from 1
** to larger than the block, a single-entry block, an empty block, empty
** values, keys longer than the inline key buffer, a huge value; then
** damaged blocks: every kind of truncation and random byte flips must give
** STRATA_CORRUPT or plausible entries, never a crash or an out-of-bounds
** read (run under ASan and valgrind), and strataBlockCheck must accept good
** blocks and reject structural damage.
*/
#include "block.h"
#include "testutil.h"

typedef struct Ent {
  u8 *k;
  size_t nk;
  u8 *v;
  size_t nv;
} Ent;

typedef struct Ref {
  Ent *a;
  int n;
} Ref;

static int entCmp(const void *a, const void *b) {
  const Ent *x = a, *y = b;
  return strataIkeyCompare(x->k, x->nk, y->k, y->nk);
}

static u8 *mkIkey(const u8 *u, size_t nu, u64 seq, int type, size_t *pn) {
  u8 *k = malloc(nu + 8);
  memcpy(k, u, nu);
  strataPut64(k + nu, strataPackTrailer(seq, type));
  *pn = nu + 8;
  return k;
}

/* nEnt random entries: user keys from a small alphabet with long shared
** prefixes (so prefix compression matters), some with several versions,
** some empty values, the occasional long key. Sorted, no duplicates. */
static void refMake(Ref *r, int nEnt, TestRng *rng, int bLongKeys) {
  int i, j;
  r->a = calloc((size_t)nEnt + 1, sizeof(Ent));
  r->n = 0;
  for (i = 0; i < nEnt; i++) {
    u8 u[70000];
    size_t nu = 0;
    int kind = (int)test_randn(rng, 10);
    Ent *e = &r->a[r->n];
    if (kind < 4) {
      nu = (size_t)snprintf((char *)u, sizeof(u), "user/%04d/item", (int)test_randn(rng, 300));
    } else if (kind < 8) {
      nu = 1 + test_randn(rng, 12);
      for (j = 0; j < (int)nu; j++) u[j] = (u8)("abc\0\xff"[test_randn(rng, 5)]);
    } else {
      nu = (size_t)snprintf((char *)u, sizeof(u), "zz%llu", (unsigned long long)test_rand(rng));
    }
    if (bLongKeys && test_randn(rng, 20) == 0) {
      size_t nExtra = test_randn(rng, 2) ? 150 + test_randn(rng, 400) : 60000;
      memset(u + nu, 'L', nExtra);
      nu += nExtra;
    }
    e->k = mkIkey(u, nu, 1 + test_randn(rng, 1000000), (int)test_randn(rng, 2), &e->nk);
    e->nv = test_randn(rng, 4) == 0 ? 0 : test_randn(rng, 40);
    e->v = malloc(e->nv + 1);
    for (j = 0; j < (int)e->nv; j++) e->v[j] = (u8)test_rand(rng);
    r->n++;
  }
  qsort(r->a, (size_t)r->n, sizeof(Ent), entCmp);
  /* Drop exact duplicates. */
  for (i = j = 0; i < r->n; i++) {
    if (j > 0 && entCmp(&r->a[j - 1], &r->a[i]) == 0) {
      free(r->a[i].k);
      free(r->a[i].v);
      continue;
    }
    r->a[j++] = r->a[i];
  }
  r->n = j;
}

static void refFree(Ref *r) {
  int i;
  for (i = 0; i < r->n; i++) {
    free(r->a[i].k);
    free(r->a[i].v);
  }
  free(r->a);
}

/* Index of the first reference entry >= key (r->n if none). */
static int refLowerBound(const Ref *r, const u8 *k, size_t nk) {
  int lo = 0, hi = r->n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (strataIkeyCompare(r->a[mid].k, r->a[mid].nk, k, nk) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static StrataBuf buildBlock(const Ref *r, int restartInterval) {
  BlockBuilder b;
  StrataBuf out = {0};
  const u8 *p;
  size_t n, nEst;
  int i;
  strataBlockBuilderInit(&b, restartInterval);
  for (i = 0; i < r->n; i++) {
    CHECK_EQ(strataBlockBuilderAdd(&b, r->a[i].k, r->a[i].nk, r->a[i].v, r->a[i].nv), STRATA_OK);
  }
  CHECK_EQ(strataBlockBuilderEmpty(&b), r->n == 0);
  nEst = strataBlockBuilderSize(&b);
  CHECK_EQ(strataBlockBuilderFinish(&b, &p, &n), STRATA_OK);
  if (r->n > 0) CHECK_EQ(n, nEst); /* the size estimate is exact */
  strataBufSet(&out, p, n);
  strataBlockBuilderFree(&b);
  return out;
}

static int atRef(const StrataIter *it, const Ref *r, int i) {
  if (i < 0 || i >= r->n) return !it->bValid && it->rc == STRATA_OK;
  return it->bValid && it->nKey == r->a[i].nk && memcmp(it->pKey, r->a[i].k, it->nKey) == 0 &&
         it->nVal == r->a[i].nv && (it->nVal == 0 || memcmp(it->pVal, r->a[i].v, it->nVal) == 0);
}

/* Run the full battery on one reference and restart interval. */
static void checkBlock(const Ref *r, int restartInterval, TestRng *rng) {
  StrataBuf blk = buildBlock(r, restartInterval);
  StrataIter *it;
  u64 nCheck = 0;
  int i, nBad = 0, step;
  CHECK_EQ(strataBlockCheck(blk.a, blk.n, &nCheck), STRATA_OK);
  CHECK_EQ(nCheck, r->n);
  CHECK_EQ(strataBlockIterNew(blk.a, blk.n, &it), STRATA_OK);
  CHECK(!it->bValid);

  /* Forward. */
  it->pMethods->xSeekFirst(it);
  for (i = 0; i < r->n; i++) {
    if (!atRef(it, r, i)) nBad++;
    it->pMethods->xNext(it);
  }
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_OK);
  CHECK_EQ(nBad, 0);

  /* Backward. */
  it->pMethods->xSeekLast(it);
  for (i = r->n - 1; i >= 0; i--) {
    if (!atRef(it, r, i)) nBad++;
    it->pMethods->xPrev(it);
  }
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_OK);
  CHECK_EQ(nBad, 0);

  /* Both ways again through the inline steps the table iterator uses,
  ** falling back to Next/Prev where they decline, as it does. */
  {
    BlockIter *bi = (BlockIter *)it;
    int nFast = 0;
    strataBlockIterSeekFirst(bi);
    for (i = 0; i < r->n; i++) {
      if (!atRef(it, r, i)) nBad++;
      if (strataBlockIterStep(bi)) {
        nFast++;
      } else {
        strataBlockIterNext(bi);
      }
    }
    CHECK(!it->bValid);
    strataBlockIterSeekLast(bi);
    for (i = r->n - 1; i >= 0; i--) {
      if (!atRef(it, r, i)) nBad++;
      if (strataBlockIterStepBack(bi)) {
        nFast++;
      } else {
        strataBlockIterPrev(bi);
      }
    }
    CHECK(!it->bValid);
    CHECK_EQ(it->rc, STRATA_OK);
    CHECK_EQ(nBad, 0);
    if (r->n > 100 && restartInterval > 1) CHECK(nFast > r->n / 2);
  }

  /* Backward again, on an iterator that cannot allocate its reverse record
  ** (the forward scan first grows its key buffer): the same entries. */
  {
    StrataIter *it2;
    CHECK_EQ(strataBlockIterNew(blk.a, blk.n, &it2), STRATA_OK);
    for (it2->pMethods->xSeekFirst(it2); it2->bValid; it2->pMethods->xNext(it2)) {
    }
    strataTestFailMalloc(1, 1);
    it2->pMethods->xSeekLast(it2);
    for (i = r->n - 1; i >= 0; i--) {
      if (!atRef(it2, r, i)) nBad++;
      it2->pMethods->xPrev(it2);
    }
    strataTestFailMalloc(0, 0);
    CHECK(!it2->bValid);
    CHECK_EQ(it2->rc, STRATA_OK);
    CHECK_EQ(nBad, 0);
    strataIterClose(it2);
  }

  /* Seek to every key, from an unpositioned iterator and from a positioned
  ** one (both directions), then one step each way. */
  for (i = 0; i < r->n; i++) {
    if (i % 3 == 0) {
      strataIterClose(it);
      CHECK_EQ(strataBlockIterNew(blk.a, blk.n, &it), STRATA_OK);
    }
    it->pMethods->xSeek(it, r->a[i].k, r->a[i].nk);
    if (!atRef(it, r, i)) nBad++;
    if (i % 2) {
      it->pMethods->xNext(it);
      if (!atRef(it, r, i + 1)) nBad++;
    } else {
      it->pMethods->xPrev(it);
      if (!atRef(it, r, i - 1)) nBad++;
    }
  }
  CHECK_EQ(nBad, 0);

  /* Seek to absent keys: neighbours of present keys (same user key with
  ** other sequences, one byte longer or shorter) and random ones. */
  for (step = 0; step < 3 * r->n + 50; step++) {
    u8 k[70000];
    size_t nk;
    int j = r->n ? (int)test_randn(rng, (u64)r->n) : 0, want;
    if (r->n && step % 4 != 3) {
      size_t nu = r->a[j].nk - 8;
      memcpy(k, r->a[j].k, nu);
      switch (step % 4) {
        case 0:
          nk = nu;
          break; /* same user key */
        case 1:
          k[nu] = (u8)test_rand(rng);
          nk = nu + 1;
          break; /* longer */
        default:
          nk = nu ? nu - 1 : 0;
          break; /* shorter */
      }
      strataPut64(k + nk, strataPackTrailer(test_randn(rng, 1100000), (int)test_randn(rng, 2)));
      nk += 8;
    } else {
      nk = test_randn(rng, 6);
      for (size_t q = 0; q < nk; q++) k[q] = (u8)("abcuz\xff"[test_randn(rng, 6)]);
      strataPut64(k + nk, test_rand(rng));
      nk += 8;
    }
    want = refLowerBound(r, k, nk);
    it->pMethods->xSeek(it, k, nk);
    if (!atRef(it, r, want)) nBad++;
  }
  CHECK_EQ(nBad, 0);

  /* Random walk: Seek / Next / Prev / SeekFirst / SeekLast against an index. */
  {
    int cur = -1; /* -1 or r->n: invalid */
    for (step = 0; step < 4 * r->n + 100; step++) {
      int op = (int)test_randn(rng, 10);
      if (op < 4 && cur >= 0 && cur < r->n) {
        it->pMethods->xNext(it);
        cur++;
      } else if (op < 8 && cur >= 0 && cur < r->n) {
        it->pMethods->xPrev(it);
        cur--;
      } else if (op == 8 && r->n) {
        int j = (int)test_randn(rng, (u64)r->n);
        it->pMethods->xSeek(it, r->a[j].k, r->a[j].nk);
        cur = j;
      } else if (op == 9) {
        it->pMethods->xSeekLast(it);
        cur = r->n - 1;
      } else {
        it->pMethods->xSeekFirst(it);
        cur = r->n ? 0 : -1;
      }
      if (!atRef(it, r, cur)) nBad++;
      if (cur < 0) cur = -1;
      if (cur >= r->n) cur = r->n;
    }
    CHECK_EQ(nBad, 0);
  }
  strataIterClose(it);
  strataBufFree(&blk);
}

static void test_block_random(void) {
  static const int aInterval[] = {1, 2, 3, 16, 1000};
  TestRng rng;
  int i, n;
  test_srand(&rng, test_seed("block_random"));
  for (n = 1; n <= 2000; n = n * 3 + 1) {
    for (i = 0; i < (int)(sizeof(aInterval) / sizeof(aInterval[0])); i++) {
      Ref r;
      refMake(&r, n, &rng, 0);
      checkBlock(&r, aInterval[i], &rng);
      refFree(&r);
    }
  }
}

static void test_block_long_keys(void) {
  TestRng rng;
  Ref r;
  test_srand(&rng, 1234);
  refMake(&r, 400, &rng, 1);
  checkBlock(&r, 16, &rng);
  checkBlock(&r, 1, &rng);
  refFree(&r);
}

/* Keys that cross a restart boundary exactly, and shared prefixes of every
** length up to the whole key. */
static void test_block_restart_boundaries(void) {
  TestRng rng;
  Ref r;
  int i, interval;
  test_srand(&rng, 77);
  r.n = 0;
  r.a = calloc(100, sizeof(Ent));
  for (i = 0; i < 64; i++) {
    u8 u[80];
    memset(u, 'p', sizeof(u));
    r.a[i].k = mkIkey(u, (size_t)i + 1, 5, 1, &r.a[i].nk); /* each a prefix of the next */
    r.a[i].nv = (size_t)(i % 3);
    r.a[i].v = malloc(4);
    memcpy(r.a[i].v, "abc", 3);
    r.n++;
  }
  for (interval = 1; interval <= 65; interval++) checkBlock(&r, interval, &rng);
  refFree(&r);
}

static void test_block_single_and_empty(void) {
  TestRng rng;
  Ref r;
  StrataBuf blk;
  StrataIter *it;
  u64 nEnt = 99;
  u8 k[9];
  size_t nk;
  test_srand(&rng, 5);
  /* One entry, empty value. */
  r.a = calloc(1, sizeof(Ent));
  r.a[0].k = mkIkey((const u8 *)"only", 4, 1, 1, &r.a[0].nk);
  r.a[0].v = malloc(1);
  r.a[0].nv = 0;
  r.n = 1;
  checkBlock(&r, 16, &rng);
  /* Empty user key. */
  free(r.a[0].k);
  r.a[0].k = mkIkey((const u8 *)"", 0, 7, 0, &r.a[0].nk);
  checkBlock(&r, 16, &rng);
  refFree(&r);

  /* No entries at all: 8 bytes, every positioning call ends invalid. */
  r.a = NULL;
  r.n = 0;
  blk = buildBlock(&r, 16);
  CHECK_EQ(blk.n, 8);
  CHECK_EQ(strataBlockCheck(blk.a, blk.n, &nEnt), STRATA_OK);
  CHECK_EQ(nEnt, 0);
  CHECK_EQ(strataBlockIterNew(blk.a, blk.n, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  CHECK(!it->bValid);
  it->pMethods->xSeekLast(it);
  CHECK(!it->bValid);
  memcpy(k, "a", 1);
  strataPut64(k + 1, 0);
  nk = 9;
  it->pMethods->xSeek(it, k, nk);
  CHECK(!it->bValid);
  CHECK_EQ(it->rc, STRATA_OK);
  strataIterClose(it);
  strataBufFree(&blk);
}

static void test_block_huge_value(void) {
  Ref r;
  TestRng rng;
  size_t nBig = 20 * 1024 * 1024;
  int i;
  test_srand(&rng, 9);
  r.a = calloc(3, sizeof(Ent));
  r.n = 3;
  for (i = 0; i < 3; i++) {
    char u[3] = {'k', (char)('0' + i), 0};
    r.a[i].k = mkIkey((const u8 *)u, 2, 1, 1, &r.a[i].nk);
    r.a[i].nv = i == 1 ? nBig : 3;
    r.a[i].v = malloc(r.a[i].nv);
    memset(r.a[i].v, 'v' + i, r.a[i].nv);
  }
  checkBlock(&r, 16, &rng);
  refFree(&r);
}

/* Keys as the SQL layer writes integers (a type byte, 8 bytes big-endian),
** dense and sparse, some with several versions: the prefix scan of Seek
** decides most entries from one differing byte. Besides checkBlock, seek
** ascending through the block from a positioned iterator (a Seek goes on
** from the current entry when the target is in its restart region), to
** every key, its neighbours and other versions of it. */
static void test_block_int_keys(void) {
  TestRng rng;
  int round;
  test_srand(&rng, test_seed("block_int_keys"));
  for (round = 0; round < 6; round++) {
    Ref r;
    StrataBuf blk;
    StrataIter *it;
    int i, n = 0, nBad = 0, aInt[] = {1, 3, 16};
    u64 v = round < 3 ? 1000 : ((u64)1 << 40) - 300;
    r.a = calloc(600, sizeof(Ent));
    for (i = 0; i < 300; i++) {
      u8 u[9];
      int nVer = test_randn(&rng, 5) == 0 ? 2 : 1, j;
      v += round % 3 == 0 ? 1 : 1 + test_randn(&rng, round % 3 == 1 ? 5 : 70000);
      u[0] = 0x3;
      strataPut64(u + 1, __builtin_bswap64(v));
      for (j = 0; j < nVer; j++) {
        Ent *e = &r.a[n++];
        e->k = mkIkey(u, 9, 100 - (u64)j * 10, 1, &e->nk);
        e->nv = 1 + test_randn(&rng, 30);
        e->v = malloc(e->nv);
        memset(e->v, 'a' + j, e->nv);
      }
    }
    r.n = n;
    checkBlock(&r, aInt[round % 3], &rng);
    blk = buildBlock(&r, aInt[round % 3]);
    CHECK_EQ(strataBlockIterNew(blk.a, blk.n, &it), STRATA_OK);
    it->pMethods->xSeekFirst(it);
    for (i = 0; i < r.n; i++) {
      u8 k[17];
      u64 kv = __builtin_bswap64(strataGet64(r.a[i].k + 1)), seq;
      int d;
      for (d = -1; d <= 1; d++) {
        int want;
        k[0] = 0x3;
        strataPut64(k + 1, __builtin_bswap64(kv + (u64)d));
        /* A seq above, between and below the versions. */
        seq = d == 0 ? 95 + test_randn(&rng, 3) * 5 : 200;
        strataPut64(k + 9, strataPackTrailer(seq, 1));
        want = refLowerBound(&r, k, 17);
        if (d < 0 && want < i) continue; /* seeks only go forward here */
        it->pMethods->xSeek(it, k, 17);
        if (!atRef(it, &r, want)) nBad++;
      }
    }
    CHECK_EQ(nBad, 0);
    strataIterClose(it);
    strataBufFree(&blk);
    refFree(&r);
  }
}

/* The inline steps both ways in a random walk, as the table iterator takes
** them (StepBack, else Prev; Step, else Next), from every kind of
** position: a key used in place (a restart entry, or one a Seek found
** whole), a key assembled in the key buffer, a key of the reverse record.
** Step must take the entry after a key in place when it can (it copies the
** shared prefix from the block), and decline from a key of the record. */
static void walkInline(const Ref *r, int restartInterval, TestRng *rng) {
  StrataBuf blk = buildBlock(r, restartInterval);
  BlockIter bi;
  StrataIter *it = &bi.base;
  int cur = -1, step, nBad = 0;
  bi.aKey = NULL;
  strataBlockIterInit(&bi, blk.a, blk.n);
  for (step = 0; step < 6 * r->n + 50; step++) {
    int op = (int)test_randn(rng, 10);
    if (op < 4 && cur >= 0 && cur < r->n) {
      if (!strataBlockIterStep(&bi)) strataBlockIterNext(&bi);
      cur++;
    } else if (op < 8 && cur >= 0 && cur < r->n) {
      if (!strataBlockIterStepBack(&bi)) strataBlockIterPrev(&bi);
      cur--;
    } else if (op == 8 && r->n) {
      int j = (int)test_randn(rng, (u64)r->n);
      strataBlockIterSeek(&bi, r->a[j].k, r->a[j].nk);
      cur = j;
    } else if (test_randn(rng, 2)) {
      strataBlockIterSeekLast(&bi);
      cur = r->n - 1;
    } else {
      strataBlockIterSeekFirst(&bi);
      cur = r->n ? 0 : -1;
    }
    if (!atRef(it, r, cur)) nBad++;
    if (cur < 0 || cur >= r->n) cur = -1;
  }
  CHECK_EQ(nBad, 0);
  CHECK_EQ(it->rc, STRATA_OK);
  strataBlockIterRelease(&bi);
  strataBufFree(&blk);
}

static void test_block_inline_walk(void) {
  static const int aInterval[] = {1, 2, 5, 16, 1000};
  TestRng rng;
  int n, i;
  test_srand(&rng, test_seed("block_inline_walk"));
  for (n = 1; n <= 800; n = n * 3 + 2) {
    for (i = 0; i < (int)(sizeof(aInterval) / sizeof(aInterval[0])); i++) {
      Ref r;
      refMake(&r, n, &rng, n > 100);
      walkInline(&r, aInterval[i], &rng);
      refFree(&r);
    }
  }
}

/* Backward through restart regions whose entries change form in the middle
** (one-byte lengths, then a key or value of 128 bytes or more, then
** one-byte lengths again), in a region longer than the reverse record has
** grown to so far, and the same with the record unable to grow there: the
** decoding of a region moves from its fast loop to its general one at any
** entry, and to decoding without a record when memory fails. */
static void test_block_prev_forms(void) {
  TestRng rng;
  int round;
  test_srand(&rng, test_seed("block_prev_forms"));
  for (round = 0; round < 12; round++) {
    Ref r;
    StrataBuf blk;
    BlockIter bi;
    int i, n = 10 + (int)test_randn(&rng, 200), nBad = 0, bFail = round % 2;
    int interval = round < 4 ? 16 : round < 8 ? 1000 : 3;
    r.a = calloc((size_t)n, sizeof(Ent));
    for (i = 0; i < n; i++) {
      u8 u[300];
      size_t nu = 9;
      int form = (int)test_randn(&rng, 8);
      u[0] = 0x5;
      strataPut64(u + 1, __builtin_bswap64((u64)i * 3 + 1000));
      if (form == 0) { /* a long key: unshared >= 128 */
        memset(u + 9, 'L', 150);
        nu += 150;
      }
      r.a[i].k = mkIkey(u, nu, 7, 1, &r.a[i].nk);
      r.a[i].nv = form == 1 ? 128 + test_randn(&rng, 100) : test_randn(&rng, 30);
      r.a[i].v = malloc(r.a[i].nv + 1);
      memset(r.a[i].v, 'a' + i % 26, r.a[i].nv);
    }
    r.n = n;
    blk = buildBlock(&r, interval);
    bi.aKey = NULL;
    strataBlockIterInit(&bi, blk.a, blk.n);
    /* A first backward step over a short region grows a small record. */
    strataBlockIterSeekFirst(&bi);
    if (!strataBlockIterStep(&bi)) strataBlockIterNext(&bi);
    strataBlockIterPrev(&bi);
    if (!atRef(&bi.base, &r, 0)) nBad++;
    if (bFail) strataTestFailMalloc(1, 1);
    strataBlockIterSeekLast(&bi);
    for (i = n - 1; i >= 0; i--) {
      if (!atRef(&bi.base, &r, i)) nBad++;
      if (!strataBlockIterStepBack(&bi)) strataBlockIterPrev(&bi);
    }
    if (bFail) strataTestFailMalloc(0, 0);
    CHECK(!bi.base.bValid);
    CHECK_EQ(bi.base.rc, STRATA_OK);
    CHECK_EQ(nBad, 0);
    strataBlockIterRelease(&bi);
    strataBufFree(&blk);
    refFree(&r);
  }
}

/* Builder reuse after Reset produces identical blocks. */
static void test_block_builder_reset(void) {
  BlockBuilder b;
  const u8 *p;
  size_t n;
  StrataBuf first = {0};
  int round, i;
  strataBlockBuilderInit(&b, 4);
  for (round = 0; round < 3; round++) {
    for (i = 0; i < 50; i++) {
      u8 k[32];
      int nk = snprintf((char *)k, 20, "key%05d", i);
      strataPut64(k + nk, strataPackTrailer(100, 1));
      CHECK_EQ(strataBlockBuilderAdd(&b, k, (size_t)nk + 8, (const u8 *)"val", 3), STRATA_OK);
    }
    CHECK_EQ(strataBlockBuilderFinish(&b, &p, &n), STRATA_OK);
    if (round == 0)
      strataBufSet(&first, p, n);
    else
      CHECK(n == first.n && memcmp(p, first.a, n) == 0);
    strataBlockBuilderReset(&b);
    CHECK(strataBlockBuilderEmpty(&b));
  }
  /* Prefix compression actually happens: 50 keys of 16 bytes + 3-byte values
  ** would be >1000 bytes stored whole. */
  CHECK(first.n < 50 * (16 + 3 + 3));
  strataBlockBuilderFree(&b);
  strataBufFree(&first);
}

/* Iterate a damaged block every way; the iterator must end valid-or-corrupt
** without reading out of bounds. Returns the final rc of a full scan. */
static int scanDamaged(const u8 *a, size_t n, const Ref *r) {
  StrataIter *it;
  int rc, i, nSteps = 0;
  /* Copy to an exact-size heap buffer so ASan catches any overrun. */
  u8 *copy = malloc(n ? n : 1);
  memcpy(copy, a, n);
  CHECK_EQ(strataBlockIterNew(copy, n, &it), STRATA_OK);
  for (it->pMethods->xSeekFirst(it); it->bValid && nSteps < 100000; it->pMethods->xNext(it))
    nSteps++;
  rc = it->rc;
  it->pMethods->xSeekLast(it);
  for (; it->bValid && nSteps < 200000; it->pMethods->xPrev(it)) nSteps++;
  if (rc == STRATA_OK) rc = it->rc;
  for (i = 0; i < r->n; i += 7) {
    it->pMethods->xSeek(it, r->a[i].k, r->a[i].nk);
    if (it->bValid) it->pMethods->xPrev(it);
    if (it->bValid) it->pMethods->xNext(it);
    if (rc == STRATA_OK) rc = it->rc;
  }
  CHECK(nSteps < 200000); /* terminates */
  CHECK(rc == STRATA_OK || rc == STRATA_CORRUPT);
  strataIterClose(it);
  free(copy);
  return rc;
}

static void test_block_damage(void) {
  TestRng rng;
  Ref r;
  StrataBuf blk;
  u8 *a;
  size_t i;
  u64 nEnt;
  int nCorrupt = 0, nCheckBad = 0, nTrial = 0;
  test_srand(&rng, test_seed("block_damage"));
  refMake(&r, 300, &rng, 0);
  blk = buildBlock(&r, 16);
  a = malloc(blk.n);

  /* Truncations: every length below the real one. Those shorter than the
  ** restart array or with a count that does not fit are always corrupt. */
  for (i = 0; i < blk.n; i += (i < 64 || blk.n - i < 200) ? 1 : 37) {
    int rc = scanDamaged(blk.a, i, &r);
    if (i < 8) CHECK_EQ(rc, STRATA_CORRUPT);
    if (strataBlockCheck(blk.a, i, &nEnt) != STRATA_OK) nCheckBad++;
    nTrial++;
  }
  CHECK_EQ(nCheckBad, nTrial); /* a truncated block never passes the check */

  /* Restart count damage. */
  memcpy(a, blk.a, blk.n);
  strataPut32(a + blk.n - 4, 0);
  CHECK_EQ(scanDamaged(a, blk.n, &r), STRATA_CORRUPT);
  strataPut32(a + blk.n - 4, 0xffffffffu);
  CHECK_EQ(scanDamaged(a, blk.n, &r), STRATA_CORRUPT);
  CHECK_EQ(strataBlockCheck(a, blk.n, &nEnt), STRATA_CORRUPT);

  /* A restart offset pointing past the entries. */
  memcpy(a, blk.a, blk.n);
  strataPut32(a + blk.n - 8, 0x7fffffff);
  CHECK_EQ(scanDamaged(a, blk.n, &r), STRATA_CORRUPT);
  CHECK_EQ(strataBlockCheck(a, blk.n, &nEnt), STRATA_CORRUPT);

  /* Random single-byte and multi-byte damage anywhere. */
  nTrial = 0;
  for (i = 0; i < 3000; i++) {
    int nFlip = 1 + (int)test_randn(&rng, 3), j;
    memcpy(a, blk.a, blk.n);
    for (j = 0; j < nFlip; j++) a[test_randn(&rng, blk.n)] ^= (u8)(1 + test_randn(&rng, 255));
    if (scanDamaged(a, blk.n, &r) == STRATA_CORRUPT) nCorrupt++;
    nTrial++;
  }
  printf("# block damage: %d of %d random damages detected while iterating\n", nCorrupt, nTrial);
  CHECK(nCorrupt > 0);
  free(a);
  strataBufFree(&blk);
  refFree(&r);
}

int main(void) {
  RUN(test_block_random);
  RUN(test_block_long_keys);
  RUN(test_block_restart_boundaries);
  RUN(test_block_single_and_empty);
  RUN(test_block_huge_value);
  RUN(test_block_int_keys);
  RUN(test_block_inline_walk);
  RUN(test_block_prev_forms);
  RUN(test_block_builder_reset);
  RUN(test_block_damage);
  return TEST_SUMMARY();
}
