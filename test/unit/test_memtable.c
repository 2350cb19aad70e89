/*
** test_memtable.c -- unit tests of the memtable (engine/memtable.c).
**
** Covers: add/get with snapshot visibility (the newest entry <= seq) for
** values and deletions; edge-case keys (empty, prefixes of each other, zero
** bytes, keys that tie on their first 8 bytes); a 64 KiB key and a value
** over 1 MiB; iteration forward, backward and by seek against a sorted
** reference array of 100k random entries; backward steps with keys added
** between them; seeks before the start and past
** the end; reference counting (an iterator outlives the creator's
** reference); allocation failures (STRATA_NOMEM, memtable unchanged) and
** oversized lengths (STRATA_TOOBIG); one writer racing two lock-free
** readers that check order and contents of everything they see. Ends with
** an informational micro-benchmark printed as a '#' line.
*/
#include "strataInt.h"
#include "testutil.h"

#include <pthread.h>

/* Build the internal key (k, seq, type) into a; returns its length. */
static size_t mkIkey(u8 *a, const void *k, size_t n, u64 seq, int type) {
  if (n) memmove(a, k, n); /* k may be a itself */
  strataPut64(a + n, strataPackTrailer(seq, type));
  return n + 8;
}

static int addStr(Memtable *p, u64 seq, int type, const char *zKey, const char *zVal) {
  return strataMemtableAdd(p, seq, type, (const u8 *)zKey, strlen(zKey), (const u8 *)zVal,
                           zVal ? strlen(zVal) : 0);
}

/* 1 if Get(zKey, seq) finds a value equal to zVal (or, with zVal NULL, a
** deletion). */
static int getIs(Memtable *p, const char *zKey, u64 seq, const char *zVal) {
  int type = -1;
  const u8 *pVal = (const u8 *)"junk";
  size_t nVal = 99;
  if (!strataMemtableGet(p, (const u8 *)zKey, strlen(zKey), seq, &type, &pVal, &nVal)) return 0;
  if (!zVal) return type == STRATA_TYPE_DELETE && pVal == NULL && nVal == 0;
  return type == STRATA_TYPE_VALUE && nVal == strlen(zVal) && memcmp(pVal, zVal, nVal) == 0;
}

static int getMissing(Memtable *p, const void *pKey, size_t nKey, u64 seq) {
  int type = 77;
  const u8 *pVal = (const u8 *)"junk";
  size_t nVal = 99;
  int r = strataMemtableGet(p, pKey, nKey, seq, &type, &pVal, &nVal);
  return r == 0 && type == 77 && pVal == NULL && nVal == 0;
}

static void test_empty(void) {
  Memtable *p = NULL;
  StrataIter *it = NULL;
  u8 a[16];
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  CHECK(p != NULL);
  CHECK_EQ(strataMemtableCount(p), 0);
  CHECK(getMissing(p, "", 0, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "a", 1, STRATA_MAX_SEQ));
  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
  CHECK_EQ(it->bValid, 0);
  CHECK_EQ(it->rc, STRATA_OK);
  it->pMethods->xSeekFirst(it);
  CHECK_EQ(it->bValid, 0);
  it->pMethods->xSeekLast(it);
  CHECK_EQ(it->bValid, 0);
  it->pMethods->xSeek(it, a, mkIkey(a, "k", 1, 5, STRATA_TYPE_VALUE));
  CHECK_EQ(it->bValid, 0);
  it->pMethods->xSeek(it, a, 0);
  CHECK_EQ(it->bValid, 0);
  strataIterClose(it);
  strataMemtableUnref(p);
  strataMemtableUnref(NULL); /* accepted */
}

static void test_snapshots(void) {
  Memtable *p = NULL;
  StrataIter *it = NULL;
  static const struct {
    const char *zKey;
    u64 seq;
    int type;
    const char *zVal;
  } aWant[] = {
      {"apple", 30, STRATA_TYPE_VALUE, "v30"},  {"apple", 20, STRATA_TYPE_DELETE, NULL},
      {"apple", 10, STRATA_TYPE_VALUE, "v10"},  {"apple", 3, STRATA_TYPE_VALUE, ""},
      {"banana", 15, STRATA_TYPE_VALUE, "b15"},
  };
  int i;
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  /* Added out of order on purpose: order comes from the keys. */
  CHECK_EQ(addStr(p, 10, STRATA_TYPE_VALUE, "apple", "v10"), STRATA_OK);
  CHECK_EQ(addStr(p, 15, STRATA_TYPE_VALUE, "banana", "b15"), STRATA_OK);
  CHECK_EQ(addStr(p, 30, STRATA_TYPE_VALUE, "apple", "v30"), STRATA_OK);
  CHECK_EQ(addStr(p, 20, STRATA_TYPE_DELETE, "apple", NULL), STRATA_OK);
  CHECK_EQ(addStr(p, 3, STRATA_TYPE_VALUE, "apple", ""), STRATA_OK);
  CHECK_EQ(strataMemtableCount(p), 5);
  CHECK(strataMemtableMemoryUsage(p) > 0);

  CHECK(getMissing(p, "apple", 5, 0));
  CHECK(getMissing(p, "apple", 5, 2));
  CHECK(getIs(p, "apple", 3, ""));
  CHECK(getIs(p, "apple", 9, ""));
  CHECK(getIs(p, "apple", 10, "v10"));
  CHECK(getIs(p, "apple", 19, "v10"));
  CHECK(getIs(p, "apple", 20, NULL));
  CHECK(getIs(p, "apple", 29, NULL));
  CHECK(getIs(p, "apple", 30, "v30"));
  CHECK(getIs(p, "apple", STRATA_MAX_SEQ, "v30"));
  CHECK(getIs(p, "apple", UINT64_MAX, "v30")); /* clamped, not wrapped */
  CHECK(getIs(p, "apple", ((u64)1 << 56) + 5, "v30"));
  CHECK(getMissing(p, "banana", 6, 14));
  CHECK(getIs(p, "banana", 15, "b15"));
  CHECK(getIs(p, "banana", 1000, "b15"));
  CHECK(getMissing(p, "appl", 4, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "applf", 5, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "apple\0", 6, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "", 0, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "cherry", 6, STRATA_MAX_SEQ));

  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  for (i = 0; i < 5; i++) {
    size_t nk = strlen(aWant[i].zKey);
    CHECK(it->bValid);
    if (!it->bValid) break;
    CHECK_EQ(it->nKey, nk + 8);
    CHECK(memcmp(it->pKey, aWant[i].zKey, nk) == 0);
    CHECK_EQ(strataIkeySeq(it->pKey, it->nKey), aWant[i].seq);
    CHECK_EQ(strataIkeyType(it->pKey, it->nKey), aWant[i].type);
    if (aWant[i].zVal) {
      CHECK_EQ(it->nVal, strlen(aWant[i].zVal));
      CHECK(memcmp(it->pVal, aWant[i].zVal, it->nVal) == 0);
    } else {
      CHECK_EQ(it->nVal, 0);
    }
    it->pMethods->xNext(it);
  }
  CHECK_EQ(it->bValid, 0);
  CHECK(it->pKey == NULL);
  /* Seek between versions of one key: (apple, 25) lands on the deletion at 20. */
  {
    u8 a[32];
    it->pMethods->xSeek(it, a, mkIkey(a, "apple", 5, 25, STRATA_TYPE_VALUE));
    CHECK(it->bValid && strataIkeySeq(it->pKey, it->nKey) == 20);
    it->pMethods->xSeek(it, a, mkIkey(a, "apple", 5, 20, STRATA_TYPE_VALUE));
    CHECK(it->bValid && strataIkeySeq(it->pKey, it->nKey) == 20);
    it->pMethods->xSeek(it, a, mkIkey(a, "apple", 5, 20, STRATA_TYPE_DELETE));
    CHECK(it->bValid && strataIkeySeq(it->pKey, it->nKey) == 20);
    it->pMethods->xSeek(it, a, mkIkey(a, "apple", 5, 2, STRATA_TYPE_VALUE));
    CHECK(it->bValid && it->nKey == 14 && memcmp(it->pKey, "banana", 6) == 0);
    it->pMethods->xPrev(it);
    CHECK(it->bValid && strataIkeySeq(it->pKey, it->nKey) == 3);
    it->pMethods->xSeek(it, (const u8 *)"b", 1); /* a bare user key */
    CHECK(it->bValid && it->nKey == 14 && memcmp(it->pKey, "banana", 6) == 0);
  }
  strataIterClose(it);
  strataMemtableUnref(p);
}

/* Keys chosen to stress the comparison: empty, prefixes, zero bytes, and
** pairs that tie on the first 8 bytes (the comparison's fast path). */
static void test_edge_keys(void) {
  static const struct {
    const char *z;
    size_t n;
  } aKey[] = {
      {"", 0},
      {"\0", 1},
      {"\0\0", 2},
      {"\0\1", 2},
      {"\0\0\0\0\0\0\0\0", 8},
      {"\0\0\0\0\0\0\0\0\0", 9},
      {"a", 1},
      {"a\0", 2},
      {"ab", 2},
      {"abc", 3},
      {"abcdefg", 7},
      {"abcdefgg", 8},
      {"abcdefgh", 8},
      {"abcdefgh\0", 9},
      {"abcdefghi", 9},
      {"abcdefgh\xff", 9},
      {"abcdefghijklmnop", 16},
      {"abcdefghijklmnoq", 16},
      {"abcdefghijklmnopq", 17},
      {"b", 1},
      {"\x7f", 1},
      {"\x80", 1},
      {"\xff", 1},
      {"\xff\xff\xff\xff\xff\xff\xff\xff", 8},
      {"\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9},
  };
  enum { N = sizeof(aKey) / sizeof(aKey[0]) };
  int aOrder[N], aSorted[N];
  Memtable *p = NULL;
  StrataIter *it = NULL;
  TestRng rng;
  int i, j;
  char zVal[32];

  test_srand(&rng, 42);
  for (i = 0; i < N; i++) aOrder[i] = aSorted[i] = i;
  for (i = N - 1; i > 0; i--) { /* insert in a shuffled order */
    j = (int)test_randn(&rng, (u64)i + 1);
    int t = aOrder[i];
    aOrder[i] = aOrder[j];
    aOrder[j] = t;
  }
  /* Expected order by strataUkeyCompare (insertion sort, N is tiny). */
  for (i = 1; i < N; i++) {
    for (j = i; j > 0; j--) {
      int a = aSorted[j - 1], b = aSorted[j];
      if (strataUkeyCompare((const u8 *)aKey[a].z, aKey[a].n, (const u8 *)aKey[b].z, aKey[b].n) <=
          0)
        break;
      aSorted[j - 1] = b;
      aSorted[j] = a;
    }
  }

  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  for (i = 0; i < N; i++) {
    int k = aOrder[i];
    snprintf(zVal, sizeof(zVal), "v%d", k);
    CHECK_EQ(strataMemtableAdd(p, (u64)(100 + k), STRATA_TYPE_VALUE, (const u8 *)aKey[k].z,
                               aKey[k].n, (const u8 *)zVal, strlen(zVal)),
             STRATA_OK);
  }
  for (i = 0; i < N; i++) {
    int type = -1;
    const u8 *pVal;
    size_t nVal;
    snprintf(zVal, sizeof(zVal), "v%d", i);
    CHECK(strataMemtableGet(p, (const u8 *)aKey[i].z, aKey[i].n, STRATA_MAX_SEQ, &type, &pVal,
                            &nVal) == 1 &&
          type == STRATA_TYPE_VALUE && nVal == strlen(zVal) && memcmp(pVal, zVal, nVal) == 0);
    CHECK(getMissing(p, aKey[i].z, aKey[i].n, (u64)(100 + i - 1)));
  }
  CHECK(getMissing(p, "\0\0\0", 3, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "abcd", 4, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "abcdefghijklmno", 15, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "abcdefghijklmnopp", 17, STRATA_MAX_SEQ));
  CHECK(getMissing(p, "\xff\xff", 2, STRATA_MAX_SEQ));

  /* A deletion of the empty key shadows its value from seq 500 on. */
  CHECK_EQ(strataMemtableAdd(p, 500, STRATA_TYPE_DELETE, NULL, 0, NULL, 0), STRATA_OK);
  CHECK(getIs(p, "", 499, "v0"));
  CHECK(getIs(p, "", 500, NULL));

  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  CHECK(it->bValid && it->nKey == 8 && strataIkeySeq(it->pKey, 8) == 500);
  it->pMethods->xNext(it);
  for (i = 0; i < N; i++) {
    int k = aSorted[i];
    CHECK(it->bValid);
    if (!it->bValid) break;
    CHECK_EQ(it->nKey, aKey[k].n + 8);
    CHECK(it->nKey == aKey[k].n + 8 && memcmp(it->pKey, aKey[k].z, aKey[k].n) == 0);
    CHECK_EQ(strataIkeySeq(it->pKey, it->nKey), 100 + k);
    it->pMethods->xNext(it);
  }
  CHECK_EQ(it->bValid, 0);
  /* And backwards. */
  it->pMethods->xSeekLast(it);
  for (i = N - 1; i >= 0; i--) {
    int k = aSorted[i];
    CHECK(it->bValid && it->nKey == aKey[k].n + 8 && memcmp(it->pKey, aKey[k].z, aKey[k].n) == 0);
    if (!it->bValid) break;
    it->pMethods->xPrev(it);
  }
  CHECK(it->bValid && it->nKey == 8 && strataIkeySeq(it->pKey, 8) == 500);
  it->pMethods->xPrev(it);
  CHECK_EQ(it->bValid, 0);
  strataIterClose(it);
  strataMemtableUnref(p);
}

static void fillPattern(u8 *a, size_t n, u32 seed) {
  for (size_t i = 0; i < n; i++) a[i] = (u8)((i * 2654435761u + seed) >> 13);
}

static void test_large(void) {
  const size_t nKey = STRATA_MAX_KEY;          /* 64 KiB */
  const size_t nBig = (size_t)1024 * 1024 + 3; /* over 1 MiB */
  u8 *aKey = malloc(nKey), *aKey2 = malloc(nKey), *aVal = malloc(nBig), *aSeek = malloc(nKey + 8);
  Memtable *p = NULL;
  StrataIter *it = NULL;
  int type;
  const u8 *pVal;
  size_t nVal, nUsage0;

  fillPattern(aKey, nKey, 1);
  memcpy(aKey2, aKey, nKey);
  aKey2[nKey - 1] ^= 0x01; /* differs only in the last byte */
  fillPattern(aVal, nBig, 7);
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  CHECK_EQ(addStr(p, 1, STRATA_TYPE_VALUE, "small", "x"), STRATA_OK);
  nUsage0 = strataMemtableMemoryUsage(p);
  CHECK_EQ(strataMemtableAdd(p, 2, STRATA_TYPE_VALUE, aKey, nKey, aVal, nBig), STRATA_OK);
  CHECK(strataMemtableMemoryUsage(p) >= nUsage0 + nKey + nBig);
  CHECK_EQ(strataMemtableAdd(p, 3, STRATA_TYPE_VALUE, aKey2, nKey, aVal, 65536), STRATA_OK);
  CHECK_EQ(strataMemtableAdd(p, 4, STRATA_TYPE_VALUE, (const u8 *)"mid", 3, aVal + 1, 70001),
           STRATA_OK);
  /* The small entry after the large ones still comes from an ordinary block. */
  CHECK_EQ(addStr(p, 5, STRATA_TYPE_VALUE, "small2", "y"), STRATA_OK);
  CHECK_EQ(strataMemtableCount(p), 5);

  CHECK(strataMemtableGet(p, aKey, nKey, STRATA_MAX_SEQ, &type, &pVal, &nVal) == 1);
  CHECK(type == STRATA_TYPE_VALUE && nVal == nBig && memcmp(pVal, aVal, nBig) == 0);
  CHECK(strataMemtableGet(p, aKey2, nKey, STRATA_MAX_SEQ, &type, &pVal, &nVal) == 1);
  CHECK(type == STRATA_TYPE_VALUE && nVal == 65536 && memcmp(pVal, aVal, 65536) == 0);
  CHECK(getMissing(p, aKey, nKey, 1));
  CHECK(getMissing(p, aKey, nKey - 1, STRATA_MAX_SEQ));
  CHECK(strataMemtableGet(p, (const u8 *)"mid", 3, 4, &type, &pVal, &nVal) == 1);
  CHECK(nVal == 70001 && memcmp(pVal, aVal + 1, 70001) == 0);
  CHECK(getIs(p, "small", 9, "x"));
  CHECK(getIs(p, "small2", 9, "y"));

  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
  memcpy(aSeek, aKey, nKey);
  strataPut64(aSeek + nKey, strataPackTrailer(STRATA_MAX_SEQ, STRATA_TYPE_VALUE));
  it->pMethods->xSeek(it, aSeek, nKey + 8);
  CHECK(it->bValid && it->nKey == nKey + 8 && it->nVal == nBig);
  CHECK(it->bValid && memcmp(it->pKey, aKey, nKey) == 0 && memcmp(it->pVal, aVal, nBig) == 0);
  it->pMethods->xNext(it);
  CHECK(it->bValid && it->nKey == nKey + 8 && it->nVal == 65536 &&
        memcmp(it->pKey, aKey2, nKey) == 0);
  it->pMethods->xPrev(it);
  CHECK(it->bValid && it->nVal == nBig && strataIkeySeq(it->pKey, it->nKey) == 2);
  strataIterClose(it);
  strataMemtableUnref(p);
  free(aKey);
  free(aKey2);
  free(aVal);
  free(aSeek);
}

/* RANDOM ENTRIES AGAINST A SORTED REFERENCE */

typedef struct RefEntry {
  const u8 *pKey; /* internal key */
  size_t nKey;
  u64 seq;
  int type;
} RefEntry;

static int refCmp(const void *a, const void *b) {
  const RefEntry *x = a, *y = b;
  return strataIkeyCompare(x->pKey, x->nKey, y->pKey, y->nKey);
}

/* Index of the first entry >= ikey (n if none). */
static size_t refLowerBound(const RefEntry *a, size_t n, const u8 *pKey, size_t nKey) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strataIkeyCompare(a[mid].pKey, a[mid].nKey, pKey, nKey) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* The value stored for sequence seq: 0..23 bytes derived from it. */
static size_t valFor(u64 seq, u8 *a) {
  size_t n = (size_t)(seq * 7 % 24);
  for (size_t i = 0; i < n; i++) a[i] = (u8)(seq * 131 + i * 17);
  return n;
}

/* A random user key: from a pool of 3000 (so keys get many versions) or
** fresh; bytes from a small alphabet so prefixes and ties are common. */
static size_t randUkey(TestRng *r, u8 *a) {
  static const u8 aAlpha[] = {0x00, 'a', 'b', 0xff};
  TestRng pool;
  TestRng *src = r;
  size_t n, i;
  if (test_randn(r, 2) == 0) {
    test_srand(&pool, 1 + test_randn(r, 3000));
    src = &pool;
  }
  n = (size_t)test_randn(src, 25);
  for (i = 0; i < n; i++) a[i] = aAlpha[test_randn(src, 4)];
  return n;
}

static int sameEntry(const StrataIter *it, const RefEntry *e) {
  u8 aVal[32];
  size_t nVal;
  if (!it->bValid || it->nKey != e->nKey || memcmp(it->pKey, e->pKey, e->nKey) != 0) return 0;
  nVal = e->type == STRATA_TYPE_VALUE ? valFor(e->seq, aVal) : 0;
  return it->nVal == nVal && memcmp(it->pVal, aVal, nVal) == 0;
}

static void test_random_vs_reference(void) {
  const size_t N = 100000;
  RefEntry *aRef = malloc(N * sizeof(RefEntry));
  u8 *aKeyMem = malloc(N * 40), *pK = aKeyMem;
  Memtable *p = NULL;
  StrataIter *it = NULL;
  TestRng rng;
  u8 aTmp[64], aVal[32];
  size_t i, nBad;
  u64 seed = test_seed("memtable random");

  test_srand(&rng, seed);
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  for (i = 0; i < N; i++) {
    size_t nU = randUkey(&rng, pK);
    u64 seq = i + 1;
    int type = test_randn(&rng, 5) == 0 ? STRATA_TYPE_DELETE : STRATA_TYPE_VALUE;
    size_t nVal = type == STRATA_TYPE_VALUE ? valFor(seq, aVal) : 0;
    strataPut64(pK + nU, strataPackTrailer(seq, type));
    aRef[i].pKey = pK;
    aRef[i].nKey = nU + 8;
    aRef[i].seq = seq;
    aRef[i].type = type;
    if (strataMemtableAdd(p, seq, type, pK, nU, aVal, nVal) != STRATA_OK) {
      CHECK(0);
      break;
    }
    pK += nU + 8;
  }
  qsort(aRef, N, sizeof(RefEntry), refCmp);
  CHECK_EQ(strataMemtableCount(p), N);
  /* Searches below start from the search index, built at 4096 entries and
  ** at every quarter of growth since: the last build missed the newest
  ** entries, as an index usually does. */
  CHECK(strataMemtableIndexSize(p) > 100);
  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);

  /* Forward. */
  nBad = 0;
  it->pMethods->xSeekFirst(it);
  for (i = 0; i < N && it->bValid; i++) {
    if (!sameEntry(it, &aRef[i])) nBad++;
    it->pMethods->xNext(it);
  }
  CHECK_EQ(i, N);
  CHECK_EQ(nBad, 0);
  CHECK_EQ(it->bValid, 0);

  /* Backward. */
  nBad = 0;
  it->pMethods->xSeekLast(it);
  for (i = N; i > 0 && it->bValid; i--) {
    if (!sameEntry(it, &aRef[i - 1])) nBad++;
    it->pMethods->xPrev(it);
  }
  CHECK_EQ(i, 0);
  CHECK_EQ(nBad, 0);
  CHECK_EQ(it->bValid, 0);

  /* Seeks: to existing keys and to random targets, then a step each way. */
  nBad = 0;
  for (i = 0; i < 20000; i++) {
    size_t nT, idx;
    if (i % 2 == 0) {
      const RefEntry *e = &aRef[test_randn(&rng, N)];
      memcpy(aTmp, e->pKey, e->nKey);
      nT = e->nKey;
    } else {
      size_t nU = randUkey(&rng, aTmp);
      nT = mkIkey(aTmp, aTmp, nU, test_randn(&rng, N + 2), (int)test_randn(&rng, 2));
    }
    idx = refLowerBound(aRef, N, aTmp, nT);
    it->pMethods->xSeek(it, aTmp, nT);
    if (idx == N) {
      if (it->bValid) nBad++;
      continue;
    }
    if (!sameEntry(it, &aRef[idx])) {
      nBad++;
      continue;
    }
    it->pMethods->xNext(it);
    if (idx + 1 < N ? !sameEntry(it, &aRef[idx + 1]) : it->bValid) nBad++;
    if (idx + 1 < N) {
      it->pMethods->xPrev(it);
      it->pMethods->xPrev(it);
      if (idx > 0 ? !sameEntry(it, &aRef[idx - 1]) : it->bValid) nBad++;
    }
  }
  CHECK_EQ(nBad, 0);

  /* Before the start: the smallest possible internal key, and a bare "". */
  it->pMethods->xSeek(it, aTmp, mkIkey(aTmp, "", 0, STRATA_MAX_SEQ, STRATA_TYPE_VALUE));
  CHECK(sameEntry(it, &aRef[0]));
  it->pMethods->xSeek(it, aTmp, 0);
  CHECK(sameEntry(it, &aRef[0]));
  /* Past the end: keys are at most 24 bytes, so 40 x 0xff sorts after all. */
  memset(aTmp, 0xff, 40);
  it->pMethods->xSeek(it, aTmp, mkIkey(aTmp, aTmp, 40, 0, STRATA_TYPE_DELETE));
  CHECK_EQ(it->bValid, 0);
  CHECK(it->pKey == NULL && it->nKey == 0 && it->pVal == NULL);
  it->pMethods->xSeek(it, aRef[N - 1].pKey, aRef[N - 1].nKey);
  CHECK(sameEntry(it, &aRef[N - 1]));
  it->pMethods->xNext(it);
  CHECK_EQ(it->bValid, 0);
  it->pMethods->xSeekFirst(it); /* usable again after running off the end */
  CHECK(sameEntry(it, &aRef[0]));
  it->pMethods->xPrev(it);
  CHECK_EQ(it->bValid, 0);

  /* Gets at random snapshots: the reference answer is the first entry >=
  ** (ukey, seq, VALUE), if it has the same user key. */
  nBad = 0;
  for (i = 0; i < 20000; i++) {
    size_t nU = randUkey(&rng, aTmp), idx;
    u64 seq = test_randn(&rng, N + 2);
    int type = -1, r;
    const u8 *pVal;
    size_t nVal, nT = mkIkey(aTmp, aTmp, nU, seq, STRATA_TYPE_VALUE);
    idx = refLowerBound(aRef, N, aTmp, nT);
    r = strataMemtableGet(p, aTmp, nU, seq, &type, &pVal, &nVal);
    if (idx < N && aRef[idx].nKey == nT && memcmp(aRef[idx].pKey, aTmp, nU) == 0) {
      size_t nWant = aRef[idx].type == STRATA_TYPE_VALUE ? valFor(aRef[idx].seq, aVal) : 0;
      if (r != 1 || type != aRef[idx].type || nVal != nWant ||
          (nWant && memcmp(pVal, aVal, nWant) != 0))
        nBad++;
    } else if (r != 0) {
      nBad++;
    }
  }
  CHECK_EQ(nBad, 0);

  strataIterClose(it);
  strataMemtableUnref(p);
  free(aRef);
  free(aKeyMem);
}

/* Backward steps while new keys are added between them (an iterator may
** run alongside Adds): every step must land on the predecessor as of that
** moment, whether an earlier step recorded it or it was added since, with
** forward zig-zags and seeks in between. */
static int keyIs(const StrataIter *it, int k) {
  char z[16];
  int n = snprintf(z, sizeof z, "%07d", k);
  return it->bValid && it->nKey == (size_t)n + 8 && memcmp(it->pKey, z, (size_t)n) == 0;
}

static void test_reverse_inserts(void) {
  enum { N = 20000, SPACE = 4 * N };
  static u8 aHave[SPACE];
  Memtable *p = NULL;
  StrataIter *it = NULL;
  TestRng rng;
  u64 seq = 0;
  int i, cur, nBad = 0, nStep = 0, nRound;
  test_srand(&rng, test_seed("memtable reverse"));
  memset(aHave, 0, sizeof aHave);
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  for (i = 0; i < SPACE; i += 4) {
    char z[16];
    snprintf(z, sizeof z, "%07d", i);
    CHECK_EQ(addStr(p, ++seq, STRATA_TYPE_VALUE, z, "v"), STRATA_OK);
    aHave[i] = 1;
  }
  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
  for (nRound = 0; nRound < 3; nRound++) {
    if (nRound == 0) {
      it->pMethods->xSeekLast(it);
      cur = SPACE - 1;
    } else {
      /* From a seek to a random present key. */
      char z[16];
      u8 k[32];
      int n;
      cur = (int)test_randn(&rng, SPACE);
      while (!aHave[cur]) cur--; /* key 0 is present */
      n = snprintf(z, sizeof z, "%07d", cur);
      it->pMethods->xSeek(it, k, mkIkey(k, z, (size_t)n, STRATA_MAX_SEQ, STRATA_TYPE_VALUE));
    }
    while (cur >= 0 && !aHave[cur]) cur--;
    while (cur >= 0 && nBad < 3) {
      int r = (int)test_randn(&rng, 16);
      if (!keyIs(it, cur)) nBad++;
      if (r < 3 && cur > 0) {
        /* Just before the current key, or anywhere. */
        int k = r < 2 ? cur - 1 - (int)test_randn(&rng, 3) : (int)test_randn(&rng, SPACE);
        if (k >= 0 && !aHave[k]) {
          char z[16];
          snprintf(z, sizeof z, "%07d", k);
          CHECK_EQ(addStr(p, ++seq, STRATA_TYPE_VALUE, z, "n"), STRATA_OK);
          aHave[k] = 1;
        }
      } else if (r == 3) {
        /* Forward and back again. */
        int nx = cur + 1;
        while (nx < SPACE && !aHave[nx]) nx++;
        it->pMethods->xNext(it);
        if (nx < SPACE ? !keyIs(it, nx) : it->bValid) nBad++;
        if (it->bValid) {
          it->pMethods->xPrev(it);
        } else {
          it->pMethods->xSeekLast(it); /* cur is the last key */
        }
        if (!keyIs(it, cur)) nBad++;
      }
      it->pMethods->xPrev(it);
      nStep++;
      do cur--; while (cur >= 0 && !aHave[cur]);
    }
    if (cur < 0 && it->bValid) nBad++;
  }
  CHECK_EQ(nBad, 0);
  CHECK(nStep > N);
  strataIterClose(it);
  strataMemtableUnref(p);
}

/* Insert orders that take the writer's splice path (ascending runs) or
** leave it at once (descending, versions of one key, jitter), checked
** against the sorted reference. */
static void test_insert_patterns(void) {
  enum { N = 20000 };
  static const char *azPattern[] = {"ascending", "descending", "two streams",
                                    "jitter",    "versions",   "500 streams"};
  RefEntry *aRef = malloc(N * sizeof(RefEntry));
  u8 *aKeyMem = malloc(N * 24);
  TestRng rng;
  test_srand(&rng, 7);
  for (int iPat = 0; iPat < (int)(sizeof(azPattern) / sizeof(azPattern[0])); iPat++) {
    Memtable *p = NULL;
    StrataIter *it = NULL;
    size_t i, nBad = 0;
    u8 aVal[32];
    CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
    for (i = 0; i < N; i++) {
      u8 *pK = aKeyMem + i * 24;
      u32 k;
      size_t nU = 12;
      switch (iPat) {
        case 0:
          k = (u32)i;
          break;
        case 1:
          k = (u32)(N - i);
          break;
        case 2:
          k = (u32)(i % 2 ? i : i + 1000000);
          break;
        case 3:
          k = (u32)(i * 4 + test_randn(&rng, 9)) * 8 + (u32)(i % 8);
          break; /* unique */
        case 4:
          k = (u32)(i / 100);
          break; /* 100 versions each, newest added last */
        default:
          k = (u32)((i % 500) * 1000 + i / 500);
          break; /* 500 interleaved streams */
      }
      memcpy(pK, "pattern:", 8);
      strataPut32(pK + 8, __builtin_bswap32(k));
      strataPut64(pK + nU, strataPackTrailer(i + 1, STRATA_TYPE_VALUE));
      aRef[i].pKey = pK;
      aRef[i].nKey = nU + 8;
      aRef[i].seq = i + 1;
      aRef[i].type = STRATA_TYPE_VALUE;
      if (strataMemtableAdd(p, i + 1, STRATA_TYPE_VALUE, pK, nU, aVal, valFor(i + 1, aVal))) nBad++;
    }
    qsort(aRef, N, sizeof(RefEntry), refCmp);
    CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
    it->pMethods->xSeekFirst(it);
    for (i = 0; i < N && it->bValid; i++) {
      if (!sameEntry(it, &aRef[i])) nBad++;
      it->pMethods->xNext(it);
    }
    CHECK_EQ(i, N);
    CHECK_EQ(it->bValid, 0);
    for (i = 0; i < N; i += 7) {
      int type;
      const u8 *pVal;
      size_t nVal;
      const RefEntry *e = &aRef[i];
      /* The newest version at e's sequence is e itself. */
      if (strataMemtableGet(p, e->pKey, e->nKey - 8, e->seq, &type, &pVal, &nVal) != 1 ||
          nVal != valFor(e->seq, aVal) || (nVal && memcmp(pVal, aVal, nVal) != 0))
        nBad++;
    }
    if (nBad) printf("  pattern %s: %zu bad\n", azPattern[iPat], nBad);
    CHECK_EQ(nBad, 0);
    strataIterClose(it);
    strataMemtableUnref(p);
  }
  free(aRef);
  free(aKeyMem);
}

static void test_refcount(void) {
  Memtable *p = NULL;
  StrataIter *it1 = NULL, *it2 = NULL;
  char zKey[32], zVal[32];
  int i, n;
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  for (i = 0; i < 1000; i++) {
    snprintf(zKey, sizeof(zKey), "key%05d", i);
    snprintf(zVal, sizeof(zVal), "val%d", i * 3);
    CHECK_EQ(addStr(p, (u64)i + 1, STRATA_TYPE_VALUE, zKey, zVal), STRATA_OK);
  }
  CHECK_EQ(strataMemtableIterNew(p, &it1), STRATA_OK);
  CHECK_EQ(strataMemtableIterNew(p, &it2), STRATA_OK);
  strataMemtableRef(p);
  strataMemtableUnref(p);
  strataMemtableUnref(p); /* the creator's reference: the iterators keep p alive */
  p = NULL;
  it1->pMethods->xSeekFirst(it1);
  it2->pMethods->xSeekLast(it2);
  strataIterClose(it2);
  for (n = 0; it1->bValid; n++) {
    snprintf(zKey, sizeof(zKey), "key%05d", n);
    snprintf(zVal, sizeof(zVal), "val%d", n * 3);
    CHECK(it1->nKey == strlen(zKey) + 8 && memcmp(it1->pKey, zKey, it1->nKey - 8) == 0);
    CHECK(it1->nVal == strlen(zVal) && memcmp(it1->pVal, zVal, it1->nVal) == 0);
    it1->pMethods->xNext(it1);
  }
  CHECK_EQ(n, 1000);
  strataIterClose(it1); /* frees the memtable (ASan / valgrind see a leak or reuse) */
  strataIterClose(NULL);
}

/* A big memtable: its blocks grow to mapped ones (ARENA), usage tracks the
** bytes added, every entry stays readable, a failed mapped block leaves
** the memtable as it was, and an entry big enough for a block of its own
** works too. */
static void test_arena_growth(void) {
  Memtable *p = NULL;
  char zKey[32], zVal[128];
  u8 *aBig;
  int i, n = 40000, nOk, rc;
  size_t nUse;
  memset(zVal, 'v', sizeof(zVal) - 1);
  zVal[sizeof(zVal) - 1] = 0;
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  if (!p) return;
  for (i = 0; i < n; i++) {
    snprintf(zKey, sizeof(zKey), "key%08d", (i * 7919) % n);
    CHECK_EQ(addStr(p, 1 + (u64)i, STRATA_TYPE_VALUE, zKey, zVal), STRATA_OK);
  }
  nUse = strataMemtableMemoryUsage(p);
  /* 11-byte keys, 127-byte values, 8-byte trailers, headers and towers. */
  CHECK(nUse >= (size_t)n * (11 + 127 + 8));
  CHECK(nUse <= (size_t)n * (11 + 127 + 8 + 8 + 8 * 12 + 8));
  for (i = 0; i < n; i += 97) {
    snprintf(zKey, sizeof(zKey), "key%08d", i);
    CHECK(getIs(p, zKey, STRATA_MAX_SEQ, zVal));
  }
  /* Every further block fails (by now each would be a mapping). */
  strataTestFailMalloc(1, 1);
  for (nOk = 0, rc = STRATA_OK; nOk < 100000; nOk++) {
    snprintf(zKey, sizeof(zKey), "more%06d", nOk);
    rc = addStr(p, 100000 + (u64)nOk, STRATA_TYPE_VALUE, zKey, zVal);
    if (rc) break;
  }
  strataTestFailMalloc(0, 0);
  CHECK_EQ(rc, STRATA_NOMEM);
  CHECK_EQ(strataMemtableCount(p), (u64)(n + nOk));
  for (i = 0; i < nOk; i += 13) {
    snprintf(zKey, sizeof(zKey), "more%06d", i);
    CHECK(getIs(p, zKey, STRATA_MAX_SEQ, zVal));
  }
  aBig = calloc(1, 600000);
  aBig[599999] = 0x5a;
  CHECK_EQ(strataMemtableAdd(p, 999999, STRATA_TYPE_VALUE, (const u8 *)"big", 3, aBig, 600000),
           STRATA_OK);
  {
    int type = 0;
    const u8 *pV = NULL;
    size_t nV = 0;
    CHECK(strataMemtableGet(p, (const u8 *)"big", 3, STRATA_MAX_SEQ, &type, &pV, &nV));
    CHECK_EQ(nV, 600000);
    CHECK(pV && pV[599999] == 0x5a);
  }
  free(aBig);
  strataMemtableUnref(p);
}

static void test_nomem(void) {
  Memtable *p = (Memtable *)&p;
  StrataIter *it = (StrataIter *)&it;
  char zKey[32];
  u8 *aBig;
  int i, nOk, rc;

  strataTestFailMalloc(1, 0);
  CHECK_EQ(strataMemtableNew(&p), STRATA_NOMEM);
  CHECK(p == NULL);
  CHECK(strstr(strataErrMsgGet(), "memory") != NULL);
  strataTestFailMalloc(0, 0);

  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  strataTestFailMalloc(1, 0); /* the first block */
  CHECK_EQ(addStr(p, 1, STRATA_TYPE_VALUE, "a", "1"), STRATA_NOMEM);
  strataTestFailMalloc(0, 0);
  CHECK_EQ(strataMemtableCount(p), 0);
  CHECK_EQ(strataMemtableMemoryUsage(p), 0);
  CHECK(getMissing(p, "a", 1, STRATA_MAX_SEQ));
  CHECK_EQ(addStr(p, 2, STRATA_TYPE_VALUE, "a", "2"), STRATA_OK);
  CHECK(getIs(p, "a", 9, "2"));

  /* Every further block fails: adds succeed while the block has room, then
  ** fail, and everything added before stays readable. */
  strataTestFailMalloc(1, 1);
  for (nOk = 0, rc = STRATA_OK; nOk < 100000; nOk++) {
    snprintf(zKey, sizeof(zKey), "k%06d", nOk);
    rc = addStr(p, 10 + (u64)nOk, STRATA_TYPE_VALUE, zKey, "some value bytes");
    if (rc) break;
  }
  CHECK_EQ(rc, STRATA_NOMEM);
  CHECK(nOk > 100); /* the first 64 KiB block held many */
  aBig = calloc(1, 100000);
  CHECK_EQ(strataMemtableAdd(p, 999999, STRATA_TYPE_VALUE, (const u8 *)"big", 3, aBig, 100000),
           STRATA_NOMEM);
  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_NOMEM);
  CHECK(it == NULL);
  strataTestFailMalloc(0, 0);
  CHECK_EQ(strataMemtableCount(p), 1 + nOk);
  for (i = 0; i < nOk; i++) {
    snprintf(zKey, sizeof(zKey), "k%06d", i);
    CHECK(getIs(p, zKey, STRATA_MAX_SEQ, "some value bytes"));
  }
  CHECK(getMissing(p, "big", 3, STRATA_MAX_SEQ));

  /* Recovered: the failed key can be added now. */
  snprintf(zKey, sizeof(zKey), "k%06d", nOk);
  CHECK_EQ(addStr(p, 10 + (u64)nOk, STRATA_TYPE_VALUE, zKey, "late"), STRATA_OK);
  CHECK_EQ(strataMemtableAdd(p, 999999, STRATA_TYPE_VALUE, (const u8 *)"big", 3, aBig, 100000),
           STRATA_OK);
  CHECK_EQ(strataMemtableIterNew(p, &it), STRATA_OK);
  /* Still sorted and complete: the failed adds left no half-linked node. */
  it->pMethods->xSeekFirst(it);
  {
    u8 aPrev[64];
    size_t nPrev = 0, nOut = 0;
    for (i = 0; it->bValid; i++) {
      if (nPrev && strataIkeyCompare(aPrev, nPrev, it->pKey, it->nKey) >= 0) nOut++;
      if (it->nKey <= sizeof(aPrev)) memcpy(aPrev, it->pKey, nPrev = it->nKey);
      it->pMethods->xNext(it);
    }
    CHECK_EQ(nOut, 0);
  }
  CHECK_EQ(i, nOk + 3);
  strataIterClose(it);

  /* Lengths that do not fit 32 bits are refused before any byte is read. */
  CHECK_EQ(strataMemtableAdd(p, 5, STRATA_TYPE_VALUE, (const u8 *)"x", (size_t)UINT32_MAX,
                             (const u8 *)"y", 1),
           STRATA_TOOBIG);
  CHECK_EQ(strataMemtableAdd(p, 5, STRATA_TYPE_VALUE, (const u8 *)"x", 1, (const u8 *)"y",
                             (size_t)UINT32_MAX + 1),
           STRATA_TOOBIG);
  CHECK_EQ(strataMemtableCount(p), nOk + 3);
  strataMemtableUnref(p);
  free(aBig);
}

/* CONCURRENCY
** One writer adds entry i = 0..nWrite-1 (in an order scattered over the key
** space); two readers iterate, seek and get while it runs. Everything about
** entry i is a function of i, so a reader can check any entry it meets. */

typedef struct RaceCtx {
  Memtable *p;
  u32 nWrite;
  _Atomic u32 nDone; /* entries 0..nDone-1 are fully added */
  _Atomic int bStop;
  _Atomic u64 nBad;  /* reader-detected errors */
  _Atomic u64 nPass; /* complete iterations by readers */
  _Atomic u64 nSeen; /* entries seen by readers */
  u64 seed;
} RaceCtx;

static u64 mix64(u64 x) { /* a bijection, so keys are distinct */
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

/* The user key of entry i: be64(mix(i)) be32(i) then i%7 bytes of (u8)i. */
static size_t raceKey(u32 i, u8 *a) {
  size_t n = 12 + i % 7;
  strataPut64(a, __builtin_bswap64(mix64(i)));
  strataPut32(a + 8, __builtin_bswap32(i));
  memset(a + 12, (int)(u8)i, n - 12);
  return n;
}

static size_t raceVal(u32 i, u8 *a) {
  size_t n = (size_t)i * 7 % 61;
  for (size_t j = 0; j < n; j++) a[j] = (u8)(i * 131 + j * 7);
  return n;
}

static int raceType(u32 i) {
  return i % 10 == 9 ? STRATA_TYPE_DELETE : STRATA_TYPE_VALUE;
}

/* 1 if the iterator's entry is well-formed entry i of the race (i < nWrite). */
static int raceCheckEntry(const RaceCtx *c, const StrataIter *it) {
  u8 aKey[32], aVal[64];
  u32 i;
  size_t nK, nV;
  if (it->nKey < 20 || it->nKey > 18 + 8) return 0;
  i = __builtin_bswap32(strataGet32(it->pKey + 8));
  if (i >= c->nWrite) return 0;
  nK = raceKey(i, aKey);
  if (it->nKey != nK + 8 || memcmp(it->pKey, aKey, nK) != 0) return 0;
  if (strataIkeyTrailer(it->pKey, it->nKey) != strataPackTrailer((u64)i + 1, raceType(i))) return 0;
  nV = raceType(i) == STRATA_TYPE_VALUE ? raceVal(i, aVal) : 0;
  return it->nVal == nV && memcmp(it->pVal, aVal, nV) == 0;
}

static void *raceWriter(void *pArg) {
  RaceCtx *c = pArg;
  u8 aKey[32], aVal[64];
  for (u32 i = 0; i < c->nWrite; i++) {
    size_t nK = raceKey(i, aKey), nV = raceVal(i, aVal);
    int type = raceType(i);
    if (strataMemtableAdd(c->p, (u64)i + 1, type, aKey, nK, aVal, type ? nV : 0)) {
      atomic_fetch_add(&c->nBad, 1);
      break;
    }
    atomic_store_explicit(&c->nDone, i + 1, memory_order_release);
  }
  atomic_store(&c->bStop, 1);
  return NULL;
}

static void *raceReader(void *pArg) {
  RaceCtx *c = pArg;
  StrataIter *it = NULL;
  TestRng rng;
  u8 aPrev[40], aKey[40], aVal[64];
  size_t nPrev;
  u64 nBad = 0, nPass = 0, nSeen = 0;
  int bLast = 0;

  test_srand(&rng, c->seed ^ (u64)(uintptr_t)&rng);
  if (strataMemtableIterNew(c->p, &it)) {
    atomic_fetch_add(&c->nBad, 1);
    return NULL;
  }
  while (!bLast) {
    u32 nBefore;
    u64 n = 0;
    bLast = atomic_load(&c->bStop); /* one full pass after the writer stops */
    nBefore = atomic_load_explicit(&c->nDone, memory_order_acquire);

    /* A full forward pass: strictly increasing, all well-formed, and at
    ** least every entry that was complete before the pass began. */
    it->pMethods->xSeekFirst(it);
    nPrev = 0;
    for (; it->bValid; it->pMethods->xNext(it), n++) {
      if (!raceCheckEntry(c, it)) nBad++;
      if (nPrev && strataIkeyCompare(aPrev, nPrev, it->pKey, it->nKey) >= 0) nBad++;
      if (it->nKey <= sizeof(aPrev)) {
        memcpy(aPrev, it->pKey, it->nKey);
        nPrev = it->nKey;
      }
    }
    if (n < nBefore) nBad++;
    nSeen += n;
    nPass++;

    /* A stretch backwards from the end. */
    it->pMethods->xSeekLast(it);
    nPrev = 0;
    for (int k = 0; k < 200 && it->bValid; k++, it->pMethods->xPrev(it)) {
      if (!raceCheckEntry(c, it)) nBad++;
      if (nPrev && strataIkeyCompare(it->pKey, it->nKey, aPrev, nPrev) >= 0) nBad++;
      if (it->nKey <= sizeof(aPrev)) {
        memcpy(aPrev, it->pKey, it->nKey);
        nPrev = it->nKey;
      }
    }

    /* Gets and seeks of entries known to be complete. */
    for (int k = 0; k < 500 && nBefore > 0; k++) {
      u32 i = (u32)test_randn(&rng, nBefore);
      size_t nK = raceKey(i, aKey), nV = raceVal(i, aVal);
      int type = -1;
      const u8 *pVal;
      size_t nVal;
      if (strataMemtableGet(c->p, aKey, nK, STRATA_MAX_SEQ, &type, &pVal, &nVal) != 1 ||
          type != raceType(i) ||
          (type == STRATA_TYPE_VALUE && (nVal != nV || memcmp(pVal, aVal, nV))))
        nBad++;
      if (strataMemtableGet(c->p, aKey, nK, i, &type, &pVal, &nVal) != 0) nBad++; /* seq i < i+1 */
      strataPut64(aKey + nK, strataPackTrailer(STRATA_MAX_SEQ, STRATA_TYPE_VALUE));
      it->pMethods->xSeek(it, aKey, nK + 8);
      if (!it->bValid || !raceCheckEntry(c, it) || it->nKey != nK + 8 ||
          memcmp(it->pKey, aKey, nK) != 0)
        nBad++;
    }
  }
  strataIterClose(it);
  atomic_fetch_add(&c->nBad, nBad);
  atomic_fetch_add(&c->nPass, nPass);
  atomic_fetch_add(&c->nSeen, nSeen);
  return NULL;
}

static void test_concurrent(void) {
  RaceCtx c;
  pthread_t aThread[3];
  StrataIter *it = NULL;
  u64 n;
  int i;
  memset(&c, 0, sizeof(c));
  c.nWrite = test_valgrind() ? 20000 : 200000;
  c.seed = test_seed("memtable race");
  CHECK_EQ(strataMemtableNew(&c.p), STRATA_OK);
  CHECK_EQ(pthread_create(&aThread[0], NULL, raceWriter, &c), 0);
  CHECK_EQ(pthread_create(&aThread[1], NULL, raceReader, &c), 0);
  CHECK_EQ(pthread_create(&aThread[2], NULL, raceReader, &c), 0);
  for (i = 0; i < 3; i++) pthread_join(aThread[i], NULL);
  CHECK_EQ(atomic_load(&c.nBad), 0);
  CHECK_EQ(atomic_load(&c.nDone), c.nWrite);
  CHECK_EQ(strataMemtableCount(c.p), c.nWrite);
  CHECK(atomic_load(&c.nPass) >= 2);
  printf("# race: %llu reader passes, %llu entries seen\n",
         (unsigned long long)atomic_load(&c.nPass), (unsigned long long)atomic_load(&c.nSeen));
  /* Afterwards: exactly the written entries, in order. */
  CHECK_EQ(strataMemtableIterNew(c.p, &it), STRATA_OK);
  it->pMethods->xSeekFirst(it);
  for (n = 0; it->bValid; n++) {
    if (!raceCheckEntry(&c, it)) {
      CHECK(0);
      break;
    }
    it->pMethods->xNext(it);
  }
  CHECK_EQ(n, c.nWrite);
  strataIterClose(it);
  strataMemtableUnref(c.p);
}

/* Informational only: never asserted on timing. */
static void test_bench(void) {
  const size_t N = test_valgrind() ? 50000 : 1000000;
  u8 *aKey = malloc(N * 16);
  Memtable *p = NULL;
  TestRng rng;
  u64 t0, t1, t2;
  size_t i, nFound = 0;
  u8 aVal[8] = {1, 2, 3, 4, 5, 6, 7, 8};

  test_srand(&rng, 12345);
  for (i = 0; i < N * 2; i++) strataPut64(aKey + i * 8, test_rand(&rng));
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  t0 = strataNowMicros();
  for (i = 0; i < N; i++) {
    if (strataMemtableAdd(p, i + 1, STRATA_TYPE_VALUE, aKey + i * 16, 16, aVal, 8)) break;
  }
  t1 = strataNowMicros();
  CHECK_EQ(i, N);
  for (i = 0; i < N; i++) {
    int type;
    const u8 *pVal;
    size_t nVal;
    /* a different order from the inserts: a stride coprime with N */
    size_t j = (i * 7919) % N;
    nFound += (size_t)strataMemtableGet(p, aKey + j * 16, 16, STRATA_MAX_SEQ, &type, &pVal, &nVal);
  }
  t2 = strataNowMicros();
  CHECK_EQ(nFound, N);
  printf("# memtable bench: %zu random 16-byte keys: %.0f inserts/s, %.0f gets/s, arena %.1f MiB\n",
         N, (double)N * 1e6 / (double)(t1 - t0 + 1), (double)N * 1e6 / (double)(t2 - t1 + 1),
         (double)strataMemtableMemoryUsage(p) / (1024.0 * 1024.0));
  strataMemtableUnref(p);
  free(aKey);
}

/* The key filter: every present key is found (no false negatives), most
** absent keys are rejected, deletions are found too. */
static void test_bloom(void) {
  Memtable *p = NULL;
  int i, nFound = 0;
  CHECK_EQ(strataMemtableNew(&p), STRATA_OK);
  if (!p) return;
  CHECK_EQ(strataMemtableEnableBloom(p, 20000 * 16), STRATA_OK);
  for (i = 0; i < 20000; i++) {
    char k[32];
    int n = snprintf(k, sizeof k, "key%d", i);
    CHECK_EQ(strataMemtableAdd(p, (u64)i + 1, (i % 5) ? STRATA_TYPE_VALUE : STRATA_TYPE_DELETE,
                               (const u8 *)k, (size_t)n, (const u8 *)"v", 1), STRATA_OK);
  }
  CHECK_EQ(strataMemtableAdd(p, 30000, STRATA_TYPE_VALUE, (const u8 *)"", 0, (const u8 *)"e", 1), STRATA_OK);
  for (i = 0; i < 20000; i++) {
    char k[32];
    int type = -1, n = snprintf(k, sizeof k, "key%d", i);
    const u8 *pv;
    size_t nv;
    CHECK_EQ(strataMemtableGet(p, (const u8 *)k, (size_t)n, STRATA_MAX_SEQ, &type, &pv, &nv), 1);
    CHECK_EQ(type, (i % 5) ? STRATA_TYPE_VALUE : STRATA_TYPE_DELETE);
  }
  {
    int type;
    const u8 *pv;
    size_t nv;
    CHECK_EQ(strataMemtableGet(p, (const u8 *)"", 0, STRATA_MAX_SEQ, &type, &pv, &nv), 1);
    for (i = 0; i < 20000; i++) {
      char k[32];
      int n = snprintf(k, sizeof k, "absent%d", i);
      nFound += strataMemtableGet(p, (const u8 *)k, (size_t)n, STRATA_MAX_SEQ, &type, &pv, &nv);
    }
  }
  CHECK_EQ(nFound, 0);
  /* Enabling is refused silently once entries exist (the filter would miss them). */
  CHECK_EQ(strataMemtableEnableBloom(p, 1000), STRATA_OK);
  strataMemtableUnref(p);
}

int main(void) {
  RUN(test_bloom);
  RUN(test_empty);
  RUN(test_snapshots);
  RUN(test_edge_keys);
  RUN(test_large);
  RUN(test_random_vs_reference);
  RUN(test_reverse_inserts);
  RUN(test_insert_patterns);
  RUN(test_refcount);
  RUN(test_arena_growth);
  RUN(test_nomem);
  RUN(test_concurrent);
  RUN(test_bench);
  return TEST_SUMMARY();
}
