/*
** test_merge.c -- the merging iterator and the level iterator, checked
** against a sorted reference, with direction changes and seeks.
*/
#include "strataInt.h"
#include "testutil.h"

#define NCHILD 5
#define NKEY 4000

typedef struct Ref {
  u8 k[24];
  size_t n;
  int child;
} Ref;

static Ref aRef[NKEY];
static int nRef;

static int refCmp(const void *a, const void *b) {
  const Ref *x = a, *y = b;
  return strataIkeyCompare(x->k, x->n, y->k, y->n);
}

/* Build NCHILD memtables with disjoint (key, seq) entries. */
static void buildChildren(Memtable **apMem, TestRng *r) {
  int i;
  nRef = 0;
  for (i = 0; i < NCHILD; i++) strataMemtableNew(&apMem[i]);
  for (i = 0; i < NKEY; i++) {
    char z[16];
    int c = (int)test_randn(r, NCHILD);
    int nz = snprintf(z, sizeof z, "k%05d", (int)test_randn(r, NKEY / 2));
    u64 seq = (u64)i + 1;
    strataMemtableAdd(apMem[c], seq, STRATA_TYPE_VALUE, (const u8 *)z, (size_t)nz, (const u8 *)&seq, 8);
    memcpy(aRef[nRef].k, z, (size_t)nz);
    strataPut64(aRef[nRef].k + nz, strataPackTrailer(seq, STRATA_TYPE_VALUE));
    aRef[nRef].n = (size_t)nz + 8;
    aRef[nRef].child = c;
    nRef++;
  }
  qsort(aRef, (size_t)nRef, sizeof(Ref), refCmp);
}

static int atRef(StrataIter *it, int i) {
  if (i < 0 || i >= nRef) return !it->bValid;
  return it->bValid && it->nKey == aRef[i].n && !memcmp(it->pKey, aRef[i].k, it->nKey);
}

/* From reference position pos (where it stands), up to `steps` random
** steps either way, checking each against the reference. Returns the
** number of mismatches. */
static int zigzag(StrataIter *it, TestRng *r, int pos, int steps) {
  int j, nBad = 0;
  for (j = 0; j < steps && it->bValid; j++) {
    if (test_randn(r, 2)) {
      it->pMethods->xNext(it);
      pos++;
    } else {
      it->pMethods->xPrev(it);
      pos--;
    }
    if (!atRef(it, pos)) nBad++;
    if (pos < 0 || pos >= nRef) break;
  }
  return nBad;
}

/* First reference index >= key. */
static int lowerBound(const u8 *k, size_t n) {
  int lo = 0, hi = nRef;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (strataIkeyCompare(aRef[mid].k, aRef[mid].n, k, n) < 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

static void checkWalk(StrataIter *it, TestRng *r) {
  int i, pos, nBad = 0;
  it->pMethods->xSeekFirst(it);
  for (i = 0; i < nRef && nBad < 3; i++) {
    if (!atRef(it, i)) nBad++;
    it->pMethods->xNext(it);
  }
  CHECK(!it->bValid);
  CHECK_EQ(nBad, 0);
  it->pMethods->xSeekLast(it);
  for (i = nRef - 1; i >= 0 && nBad < 3; i--) {
    if (!atRef(it, i)) nBad++;
    it->pMethods->xPrev(it);
  }
  CHECK(!it->bValid);
  CHECK_EQ(nBad, 0);
  /* Random seeks and zig-zags. */
  for (i = 0; i < 2000 && nBad < 3; i++) {
    char z[16];
    u8 k[32];
    int nz = snprintf(z, sizeof z, "k%05d", (int)test_randn(r, NKEY / 2 + 10));
    int steps = (int)test_randn(r, 8);
    memcpy(k, z, (size_t)nz);
    strataPut64(k + nz, strataPackTrailer(test_randn(r, NKEY + 2), STRATA_TYPE_VALUE));
    it->pMethods->xSeek(it, k, (size_t)nz + 8);
    pos = lowerBound(k, (size_t)nz + 8);
    if (!atRef(it, pos)) nBad++;
    nBad += zigzag(it, r, pos, steps);
  }
  CHECK_EQ(nBad, 0);
  CHECK_EQ(it->rc, STRATA_OK);
}

static void test_merge_random(void) {
  TestRng r;
  Memtable *apMem[NCHILD];
  StrataIter *apIt[NCHILD], *pMerge = NULL;
  int i;
  test_srand(&r, test_seed("merge"));
  buildChildren(apMem, &r);
  for (i = 0; i < NCHILD; i++) strataMemtableIterNew(apMem[i], &apIt[i]);
  CHECK_EQ(strataMergeIterNew(apIt, NCHILD, &pMerge), STRATA_OK);
  if (pMerge) {
    checkWalk(pMerge, &r);
    strataIterClose(pMerge);
  }
  for (i = 0; i < NCHILD; i++) strataMemtableUnref(apMem[i]);
}

/* Keys built to defeat the heap's key prefixes: lengths around 8, zero
** bytes (so "ab" and "ab\0" pad to the same prefix), long keys equal in
** their first 8 bytes, and several versions of one user key in different
** children. The merge must still follow the reference exactly, both ways,
** and across direction changes at every kind of tie. */
static void test_merge_prefix_ties(void) {
  static const u8 aAlpha[4] = {0x00, 0x01, 'a', 0xff};
  TestRng r;
  Memtable *apMem[NCHILD];
  StrataIter *apIt[NCHILD], *pMerge = NULL;
  int i, nBad = 0;
  test_srand(&r, test_seed("merge-ties"));
  nRef = 0;
  for (i = 0; i < NCHILD; i++) strataMemtableNew(&apMem[i]);
  for (i = 0; i < NKEY; i++) {
    u8 z[16];
    int c = (int)test_randn(&r, NCHILD), j;
    int nz = (int)test_randn(&r, 15); /* 0..14 bytes */
    u64 seq = (u64)i + 1;
    /* Half share an 8-byte head, so only the bytes after it differ. */
    int bHead = test_randn(&r, 2) == 0;
    for (j = 0; j < nz; j++) z[j] = (bHead && j < 8) ? (u8)"prefix!!"[j] : aAlpha[test_randn(&r, 4)];
    strataMemtableAdd(apMem[c], seq, STRATA_TYPE_VALUE, z, (size_t)nz, (const u8 *)&seq, 8);
    memcpy(aRef[nRef].k, z, (size_t)nz);
    strataPut64(aRef[nRef].k + nz, strataPackTrailer(seq, STRATA_TYPE_VALUE));
    aRef[nRef].n = (size_t)nz + 8;
    aRef[nRef].child = c;
    nRef++;
  }
  qsort(aRef, (size_t)nRef, sizeof(Ref), refCmp);
  for (i = 0; i < NCHILD; i++) strataMemtableIterNew(apMem[i], &apIt[i]);
  CHECK_EQ(strataMergeIterNew(apIt, NCHILD, &pMerge), STRATA_OK);
  if (pMerge) {
    StrataIter *it = pMerge;
    it->pMethods->xSeekFirst(it);
    for (i = 0; i < nRef && nBad < 3; i++) {
      if (!atRef(it, i)) nBad++;
      it->pMethods->xNext(it);
    }
    CHECK(!it->bValid);
    it->pMethods->xSeekLast(it);
    for (i = nRef - 1; i >= 0 && nBad < 3; i--) {
      if (!atRef(it, i)) nBad++;
      it->pMethods->xPrev(it);
    }
    CHECK(!it->bValid);
    /* Seek to reference keys and zig-zag from there. */
    for (i = 0; i < 2000 && nBad < 3; i++) {
      int pos = (int)test_randn(&r, (u64)nRef), steps = (int)test_randn(&r, 12);
      it->pMethods->xSeek(it, aRef[pos].k, aRef[pos].n);
      if (!atRef(it, pos)) nBad++;
      nBad += zigzag(it, &r, pos, steps);
    }
    CHECK_EQ(nBad, 0);
    CHECK_EQ(it->rc, STRATA_OK);
    strataIterClose(pMerge);
  }
  for (i = 0; i < NCHILD; i++) strataMemtableUnref(apMem[i]);
}

static void test_merge_empty(void) {
  StrataIter *pMerge = NULL;
  Memtable *m;
  StrataIter *ap[1];
  CHECK_EQ(strataMergeIterNew(NULL, 0, &pMerge), STRATA_OK);
  pMerge->pMethods->xSeekFirst(pMerge);
  CHECK(!pMerge->bValid);
  pMerge->pMethods->xSeekLast(pMerge);
  CHECK(!pMerge->bValid);
  strataIterClose(pMerge);
  strataMemtableNew(&m);
  strataMemtableIterNew(m, &ap[0]);
  CHECK_EQ(strataMergeIterNew(ap, 1, &pMerge), STRATA_OK);
  pMerge->pMethods->xSeekFirst(pMerge);
  CHECK(!pMerge->bValid);
  strataIterClose(pMerge);
  strataMemtableUnref(m);
}

static void test_merge_error(void) {
  StrataIter *ap[2], *pMerge = NULL;
  Memtable *m;
  strataMemtableNew(&m);
  strataMemtableAdd(m, 1, STRATA_TYPE_VALUE, (const u8 *)"a", 1, (const u8 *)"x", 1);
  strataMemtableIterNew(m, &ap[0]);
  ap[1] = strataErrorIterNew(STRATA_CORRUPT);
  CHECK_EQ(strataMergeIterNew(ap, 2, &pMerge), STRATA_OK);
  pMerge->pMethods->xSeekFirst(pMerge);
  CHECK(!pMerge->bValid);
  CHECK_EQ(pMerge->rc, STRATA_CORRUPT);
  strataIterClose(pMerge);
  strataMemtableUnref(m);
}

/* The level iterator over "files" that are memtables. */
typedef struct FakeLevel {
  Memtable *apMem[8];
  int nOpen;
} FakeLevel;

static int fakeOpen(void *pCtx, FileMeta *f, StrataIter **pp) {
  FakeLevel *l = pCtx;
  l->nOpen++;
  if (f->number == 99) return strataErr(STRATA_IOERR, "injected");
  return strataMemtableIterNew(l->apMem[f->number], pp);
}

static void test_level_iter(void) {
  FakeLevel lvl;
  FileMeta *aFile[8];
  StrataIter *it = NULL;
  TestRng r;
  int i, j;
  test_srand(&r, 7);
  memset(&lvl, 0, sizeof lvl);
  nRef = 0;
  for (i = 0; i < 8; i++) {
    strataMemtableNew(&lvl.apMem[i]);
    aFile[i] = strataFileMetaNew();
    aFile[i]->number = (u64)i;
    for (j = 0; j < 300; j++) {
      char z[16];
      int nz = snprintf(z, sizeof z, "f%d-%04d", i, j);
      u64 seq = (u64)(i * 1000 + j + 1);
      /* File 3 is empty: skipped in both directions. */
      if (i == 3) break;
      strataMemtableAdd(lvl.apMem[i], seq, STRATA_TYPE_VALUE, (const u8 *)z, (size_t)nz, (const u8 *)"v", 1);
      memcpy(aRef[nRef].k, z, (size_t)nz);
      strataPut64(aRef[nRef].k + nz, strataPackTrailer(seq, STRATA_TYPE_VALUE));
      aRef[nRef].n = (size_t)nz + 8;
      if (j == 0) strataBufSet(&aFile[i]->smallest, aRef[nRef].k, aRef[nRef].n);
      strataBufSet(&aFile[i]->largest, aRef[nRef].k, aRef[nRef].n);
      nRef++;
    }
    if (i == 3) { /* give the empty file a range between its neighbours */
      strataIkeyBuild(&aFile[i]->smallest, (const u8 *)"f3", 2, 1, 1);
      strataIkeyBuild(&aFile[i]->largest, (const u8 *)"f3z", 3, 1, 1);
    }
  }
  CHECK_EQ(strataLevelIterNew(aFile, 8, fakeOpen, &lvl, &it), STRATA_OK);
  checkWalk(it, &r);
  CHECK(lvl.nOpen < 3 * 2000 + 100); /* opens only the file under the cursor */
  strataIterClose(it);
  /* A file that fails to open surfaces its error. */
  aFile[5]->number = 99;
  CHECK_EQ(strataLevelIterNew(aFile, 8, fakeOpen, &lvl, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  while (it->bValid) it->pMethods->xNext(it);
  CHECK_EQ(it->rc, STRATA_IOERR);
  strataIterClose(it);
  for (i = 0; i < 8; i++) {
    strataMemtableUnref(lvl.apMem[i]);
    strataFileMetaUnref(aFile[i]);
  }
}

int main(void) {
  RUN(test_merge_random);
  RUN(test_merge_prefix_ties);
  RUN(test_merge_empty);
  RUN(test_merge_error);
  RUN(test_level_iter);
  return TEST_SUMMARY();
}
