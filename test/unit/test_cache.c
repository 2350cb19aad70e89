/*
** test_cache.c -- the sharded LRU cache (engine/cache.c).
**
** Every value is a TestVal that records its own key and a magic number;
** xFree checks the magic, poisons it and counts, so the tests can see
** exactly which values were freed, that none was freed twice or while
** pinned, and that every inserted value is freed by strataCacheFree.
** Values are allocated with malloc, not strataMalloc, so that
** strataTestFailMalloc aims at the cache's own allocations.
**
** test_stress runs 4 threads for about 2 seconds (30 with STRATA_SOAK) on a
** small key space; test_release_race runs 4 threads on a few hot entries
** for about a second (40 with STRATA_SOAK); test_perf prints hit lookup
** rates and asserts nothing.
*/
#include "strataInt.h"
#include "testutil.h"

#include <pthread.h>
#include <unistd.h>

#define VAL_MAGIC 0x5ca1ab1e0ddba11ull
#define VAL_DEAD 0xdeadbeefdeadbeefull

typedef struct TestVal {
  u64 magic;
  u64 id, off;
  u64 serial; /* distinguishes two values inserted under one key */
} TestVal;

static _Atomic long nValAlloc; /* values created */
static _Atomic long nValFree;  /* values passed to xFree */
static _Atomic long nBadFree;  /* xFree of a value that was not live */

static TestVal *valNew(u64 id, u64 off, u64 serial) {
  TestVal *v = malloc(sizeof(*v));
  v->magic = VAL_MAGIC;
  v->id = id;
  v->off = off;
  v->serial = serial;
  atomic_fetch_add(&nValAlloc, 1);
  return v;
}

static void valFree(void *p) {
  TestVal *v = p;
  if (v->magic != VAL_MAGIC) atomic_fetch_add(&nBadFree, 1);
  v->magic = VAL_DEAD;
  atomic_fetch_add(&nValFree, 1);
  free(v);
}

static void countersReset(void) {
  atomic_store(&nValAlloc, 0);
  atomic_store(&nValFree, 0);
  atomic_store(&nBadFree, 0);
}

/* Insert a fresh value for (id, off) and return the pinned handle. */
static CacheHandle *put(BlockCache *c, u64 id, u64 off, size_t nCharge, u64 serial) {
  return strataCacheInsert(c, id, off, valNew(id, off, serial), nCharge, valFree);
}

/* Insert and release at once. */
static void putRelease(BlockCache *c, u64 id, u64 off, size_t nCharge) {
  strataCacheRelease(c, put(c, id, off, nCharge, 0));
}

/* 1 if the handle's value is live and belongs to (id, off). */
static int valOk(CacheHandle *h, u64 id, u64 off) {
  TestVal *v = h ? strataCacheValue(h) : NULL;
  return v && v->magic == VAL_MAGIC && v->id == id && v->off == off;
}

/* 1 if the key is cached (this touches it in the LRU order). */
static int present(BlockCache *c, u64 id, u64 off) {
  CacheHandle *h = strataCacheLookup(c, id, off);
  int bOk = valOk(h, id, off);
  if (h) strataCacheRelease(c, h);
  return bOk;
}

/* Free the cache and check that every value ever created was freed once. */
static void freeAndCheck(BlockCache *c) {
  strataCacheFree(c);
  CHECK_EQ(atomic_load(&nValFree), atomic_load(&nValAlloc));
  CHECK_EQ(atomic_load(&nBadFree), 0);
}

static void test_basic(void) {
  BlockCache *c = NULL;
  CacheHandle *h, *h2;
  u64 nHit, nMiss;
  countersReset();
  CHECK_EQ(strataCacheNew(1 << 20, &c), STRATA_OK);
  CHECK(c != NULL);
  if (!c) return;
  CHECK(strataCacheLookup(c, 1, 0) == NULL);
  h = put(c, 1, 0, 100, 7);
  CHECK(valOk(h, 1, 0));
  CHECK_EQ(((TestVal *)strataCacheValue(h))->serial, 7);
  h2 = strataCacheLookup(c, 1, 0);
  CHECK(h2 == h);
  CHECK(strataCacheLookup(c, 1, 1) == NULL); /* same id, other offset */
  CHECK(strataCacheLookup(c, 2, 0) == NULL); /* same offset, other id */
  strataCacheRelease(c, h);
  strataCacheRelease(c, h2);
  strataCacheRelease(c, NULL); /* no-op */
  CHECK(present(c, 1, 0));
  strataCacheCounters(c, &nHit, &nMiss);
  CHECK_EQ(nHit, 2);
  CHECK_EQ(nMiss, 3);
  CHECK_EQ(strataCacheCount(c), 1);
  CHECK_EQ(strataCacheUsage(c), 100);
  CHECK_EQ(atomic_load(&nValFree), 0);

  /* Many keys, including extreme ids and offsets, all found again. */
  for (u64 i = 0; i < 2000; i++) putRelease(c, i * 0x100000001ull, i << 12, 1);
  putRelease(c, ~0ull, ~0ull, 1);
  putRelease(c, 0, 0, 1);
  CHECK_EQ(strataCacheCount(c), 1 + 2000 + 1); /* the last (0, 0) replaced i == 0 */
  CHECK_EQ(atomic_load(&nValFree), 1);
  for (u64 i = 0; i < 2000; i++) CHECK(present(c, i * 0x100000001ull, i << 12));
  CHECK(present(c, ~0ull, ~0ull));
  CHECK(present(c, 1, 0));
  CHECK_EQ(strataCacheUsage(c), 100 + 2001);
  strataCacheFree(NULL);
  freeAndCheck(c);
}

/* A capacity under 64 uses one shard, so the LRU order is global. */
static void test_lru_order(void) {
  BlockCache *c = NULL;
  countersReset();
  CHECK_EQ(strataCacheNew(30, &c), STRATA_OK);
  if (!c) return;
  putRelease(c, 1, 0, 10);
  putRelease(c, 2, 0, 10);
  putRelease(c, 3, 0, 10);
  CHECK_EQ(strataCacheUsage(c), 30);
  CHECK_EQ(atomic_load(&nValFree), 0);
  CHECK(present(c, 1, 0)); /* order, oldest first: 2 3 1 */
  putRelease(c, 4, 0, 10); /* evicts 2: 3 1 4 */
  CHECK_EQ(atomic_load(&nValFree), 1);
  CHECK_EQ(strataCacheCount(c), 3);
  CHECK(strataCacheLookup(c, 2, 0) == NULL);
  CHECK(present(c, 3, 0)); /* 1 4 3 */
  putRelease(c, 5, 0, 20); /* needs 20: evicts 1 and 4: 3 5 */
  CHECK_EQ(atomic_load(&nValFree), 3);
  CHECK(strataCacheLookup(c, 1, 0) == NULL);
  CHECK(strataCacheLookup(c, 4, 0) == NULL);
  CHECK_EQ(strataCacheUsage(c), 30);
  CHECK(present(c, 3, 0)); /* 5 3 */
  CHECK(present(c, 5, 0)); /* 3 5 */
  putRelease(c, 6, 0, 5);  /* evicts 3: 5 6 */
  CHECK(strataCacheLookup(c, 3, 0) == NULL);
  CHECK(present(c, 5, 0));
  CHECK(present(c, 6, 0));
  CHECK_EQ(strataCacheUsage(c), 25);
  /* A charge above the whole capacity is held while pinned, then dropped,
  ** and evicts everything older on its way in. */
  {
    CacheHandle *h = put(c, 7, 0, 100, 0);
    CHECK(valOk(h, 7, 0));
    CHECK_EQ(strataCacheUsage(c), 100);
    CHECK_EQ(strataCacheCount(c), 1);
    CHECK(present(c, 7, 0));
    strataCacheRelease(c, h);
  }
  CHECK_EQ(strataCacheUsage(c), 0);
  CHECK_EQ(strataCacheCount(c), 0);
  CHECK_EQ(atomic_load(&nValFree), 7);
  freeAndCheck(c);
}

/* A larger single shard: touching the older half saves it from eviction. */
static void test_lru_large(void) {
  BlockCache *c = NULL;
  u64 i;
  int n = 0;
  countersReset();
  CHECK_EQ(strataCacheNew(60, &c), STRATA_OK);
  if (!c) return;
  for (i = 0; i < 60; i++) putRelease(c, 1, i, 1);
  for (i = 0; i < 30; i++) CHECK(present(c, 1, i));
  for (i = 100; i < 130; i++) putRelease(c, 1, i, 1);
  for (i = 0; i < 30; i++) n += present(c, 1, i);
  for (i = 30; i < 60; i++) n += 10 * (strataCacheLookup(c, 1, i) != NULL);
  CHECK_EQ(n, 30);
  CHECK_EQ(strataCacheCount(c), 60);
  freeAndCheck(c);
}

/* Shards of 200 entries, where a hit only marks its entry (SECOND CHANCE
** in cache.c): the marked entries, though the oldest, survive the inserts
** that evict unmarked ones after them, and are marked again by later hits
** (a second round of inserts still keeps them). The keys spread unevenly
** over the shards, so the counts leave room for that. */
static void test_second_chance(void) {
  BlockCache *c = NULL;
  u64 i;
  int nKept = 0, nOld = 0;
  countersReset();
  CHECK_EQ(strataCacheNew(16 * 200, &c), STRATA_OK);
  if (!c) return;
  for (i = 0; i < 2400; i++) putRelease(c, 1, i, 1); /* ~150 a shard */
  CHECK_EQ(strataCacheCount(c), 2400);
  for (i = 0; i < 600; i++) CHECK(present(c, 1, i)); /* the oldest quarter */
  for (i = 0; i < 1200; i++) putRelease(c, 2, i, 1); /* ~25 evictions a shard */
  for (i = 0; i < 600; i++) nKept += present(c, 1, i);
  CHECK_EQ(nKept, 600);
  nOld = (int)atomic_load(&nValFree); /* all evicted from the unmarked old ones */
  CHECK(nOld > 200);
  CHECK_EQ(strataCacheCount(c), 3600 - nOld);
  /* Used again by the check above: another round keeps them too. */
  for (i = 1200; i < 1800; i++) putRelease(c, 2, i, 1);
  for (i = 0, nKept = 0; i < 600; i++) nKept += present(c, 1, i);
  CHECK_EQ(nKept, 600);
  CHECK(strataCacheUsage(c) <= 3200);
  freeAndCheck(c);
}

/* The shards' shares add up to the capacity: with many more keys than
** that, exactly the capacity stays cached. */
static void test_shares(void) {
  static const size_t aCap[] = {1, 2, 31, 63, 64, 65, 127, 128, 529, 1000, 4111};
  for (size_t k = 0; k < sizeof(aCap) / sizeof(aCap[0]); k++) {
    BlockCache *c = NULL;
    countersReset();
    CHECK_EQ(strataCacheNew(aCap[k], &c), STRATA_OK);
    if (!c) return;
    for (u64 i = 0; i < 40 * aCap[k] + 100; i++) putRelease(c, 9, i * 4096, 1);
    CHECK_EQ(strataCacheCount(c), aCap[k]);
    CHECK_EQ(strataCacheUsage(c), aCap[k]);
    freeAndCheck(c);
  }
}

/* With 16 shards the budget holds overall and a key used after every insert
** is never evicted. */
static void test_byte_budget(void) {
  BlockCache *c = NULL;
  CacheHandle *h;
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew(16 * 1000, &c), STRATA_OK);
  if (!c) return;
  putRelease(c, 99, 0, 100);
  for (i = 0; i < 5000; i++) {
    putRelease(c, 1, (u64)i * 4096, 100);
    CHECK(strataCacheUsage(c) <= 16 * 1000);
    CHECK(present(c, 99, 0));
  }
  CHECK_EQ(strataCacheUsage(c), strataCacheCount(c) * 100);
  /* Uneven spread over shards may leave a few units unused, not many. */
  CHECK(strataCacheCount(c) >= 100);
  CHECK_EQ(atomic_load(&nValFree) + (long)strataCacheCount(c), 5001);
  /* The most recent inserts are still there. */
  CHECK(present(c, 1, 4999 * 4096));
  h = strataCacheLookup(c, 1, 0);
  CHECK(h == NULL);
  freeAndCheck(c);
}

/* Lowering the capacity evicts the oldest unpinned entries at once, keeps
** pinned ones, and raising it again lets the cache fill back up. */
static void test_set_capacity(void) {
  BlockCache *c = NULL;
  CacheHandle *hPin;
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew(64 * 1000, &c), STRATA_OK);
  if (!c) return;
  hPin = put(c, 7, 0, 100, 0);
  for (i = 0; i < 600; i++) putRelease(c, 1, (u64)i * 4096, 100);
  CHECK(strataCacheUsage(c) >= 50 * 1000);
  strataCacheSetCapacity(c, 16 * 1000);
  /* Unpinned entries within the new budget; the pinned one is extra. */
  CHECK(strataCacheUsage(c) <= 16 * 1000 + 100);
  CHECK(strataCacheUsage(c) >= 8 * 1000);
  CHECK(valOk(hPin, 7, 0));
  CHECK(present(c, 1, 599 * 4096));
  CHECK(!present(c, 1, 0));
  for (i = 0; i < 600; i++) {
    putRelease(c, 2, (u64)i * 4096, 100);
    CHECK(strataCacheUsage(c) <= 16 * 1000 + 100);
  }
  strataCacheSetCapacity(c, 64 * 1000);
  for (i = 0; i < 600; i++) putRelease(c, 3, (u64)i * 4096, 100);
  CHECK(strataCacheUsage(c) >= 50 * 1000);
  CHECK(strataCacheUsage(c) <= 64 * 1000 + 100);
  strataCacheRelease(c, hPin);
  strataCacheSetCapacity(c, 0);
  CHECK_EQ(strataCacheUsage(c), 0);
  freeAndCheck(c);
}

/* RESERVATIONS: bytes reserved count against the capacity at once, so the
** charges of unpinned entries plus the reservations stay within it (pinned
** entries are kept, and are the only excess); giving them back lets the
** cache fill up again; reservations beyond the capacity leave no unpinned
** entry; a new capacity still has the reservations taken from it. */
static void test_reserve(void) {
  BlockCache *c = NULL;
  CacheHandle *hPin;
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew(64 * 1000, &c), STRATA_OK);
  if (!c) return;
  CHECK_EQ(strataCacheReserved(c), 0);
  hPin = put(c, 7, 0, 100, 0);
  for (i = 0; i < 700; i++) putRelease(c, 1, (u64)i * 4096, 100);
  CHECK(strataCacheUsage(c) >= 50 * 1000);
  /* Reserving evicts the oldest unpinned entries at once. */
  strataCacheReserve(c, 40 * 1000);
  CHECK_EQ(strataCacheReserved(c), 40 * 1000);
  CHECK(strataCacheUsage(c) + strataCacheReserved(c) <= 64 * 1000 + 100);
  CHECK(strataCacheUsage(c) >= 10 * 1000);
  CHECK(valOk(hPin, 7, 0));
  CHECK(present(c, 1, 699 * 4096));
  CHECK(!present(c, 1, 0));
  /* New entries stay within what the reservations leave. */
  for (i = 0; i < 700; i++) {
    putRelease(c, 2, (u64)i * 4096, 100);
    CHECK(strataCacheUsage(c) + strataCacheReserved(c) <= 64 * 1000 + 100);
  }
  /* Reservations add up; given back in parts. */
  strataCacheReserve(c, 10 * 1000);
  CHECK_EQ(strataCacheReserved(c), 50 * 1000);
  CHECK(strataCacheUsage(c) <= 14 * 1000 + 100);
  strataCacheUnreserve(c, 30 * 1000);
  CHECK_EQ(strataCacheReserved(c), 20 * 1000);
  for (i = 0; i < 700; i++) putRelease(c, 3, (u64)i * 4096, 100);
  CHECK(strataCacheUsage(c) >= 36 * 1000);
  CHECK(strataCacheUsage(c) + strataCacheReserved(c) <= 64 * 1000 + 100);
  /* A lower capacity has the reservations taken from it too. */
  strataCacheSetCapacity(c, 32 * 1000);
  CHECK(strataCacheUsage(c) <= 12 * 1000 + 100);
  CHECK(valOk(hPin, 7, 0));
  /* More reserved than the capacity: no unpinned entry stays, not even a
  ** new one; the pinned one does. */
  strataCacheReserve(c, 100 * 1000);
  CHECK_EQ(strataCacheUsage(c), 100);
  CHECK_EQ(strataCacheCount(c), 1);
  putRelease(c, 4, 0, 100);
  CHECK(!present(c, 4, 0));
  CHECK(valOk(hPin, 7, 0));
  CHECK_EQ(strataCacheUsage(c), 100);
  /* All given back: the whole capacity again. */
  strataCacheUnreserve(c, 120 * 1000);
  CHECK_EQ(strataCacheReserved(c), 0);
  strataCacheSetCapacity(c, 64 * 1000);
  for (i = 0; i < 700; i++) putRelease(c, 5, (u64)i * 4096, 100);
  CHECK(strataCacheUsage(c) >= 50 * 1000);
  CHECK(strataCacheUsage(c) <= 64 * 1000 + 100);
  strataCacheRelease(c, hPin);
  freeAndCheck(c);
}

/* Reservations taken and given back by several threads while others insert
** and look up: the sum comes back to zero, and the usage stays within the
** capacity less what is reserved at the end. */
typedef struct ReserveCtx {
  BlockCache *c;
  int iThread;
} ReserveCtx;

static void *reserveThread(void *pArg) {
  ReserveCtx *x = pArg;
  int i;
  for (i = 0; i < 2000; i++) {
    if (x->iThread % 2) {
      strataCacheReserve(x->c, 1000 + (size_t)(i % 7) * 100);
      strataCacheUnreserve(x->c, 1000 + (size_t)(i % 7) * 100);
    } else {
      putRelease(x->c, 10 + (u64)x->iThread, (u64)(i % 500) * 4096, 100);
      (void)present(x->c, 10 + (u64)x->iThread, (u64)(i % 500) * 4096);
    }
  }
  return NULL;
}

static void test_reserve_threads(void) {
  BlockCache *c = NULL;
  pthread_t aTh[4];
  ReserveCtx aCtx[4];
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew(64 * 1000, &c), STRATA_OK);
  if (!c) return;
  for (i = 0; i < 4; i++) {
    aCtx[i].c = c;
    aCtx[i].iThread = i;
    CHECK_EQ(pthread_create(&aTh[i], NULL, reserveThread, &aCtx[i]), 0);
  }
  for (i = 0; i < 4; i++) pthread_join(aTh[i], NULL);
  CHECK_EQ(strataCacheReserved(c), 0);
  CHECK(strataCacheUsage(c) <= 64 * 1000);
  strataCacheReserve(c, 60 * 1000);
  CHECK(strataCacheUsage(c) <= 4 * 1000);
  strataCacheUnreserve(c, 60 * 1000);
  freeAndCheck(c);
}

static void test_pinned(void) {
  BlockCache *c = NULL;
  CacheHandle *hA, *aH[5];
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew(30, &c), STRATA_OK);
  if (!c) return;
  hA = put(c, 100, 0, 10, 0);
  for (i = 1; i <= 20; i++) putRelease(c, (u64)i, 0, 10);
  CHECK(valOk(hA, 100, 0)); /* oldest, yet pinned: never evicted */
  CHECK_EQ(strataCacheUsage(c), 30);
  CHECK_EQ(atomic_load(&nValFree), 18);
  CHECK(present(c, 100, 0));
  CHECK(valOk(hA, 100, 0));
  strataCacheRelease(c, hA); /* now evictable and newest: 19 20 100 */
  CHECK_EQ(atomic_load(&nValFree), 18);
  CHECK(present(c, 100, 0));
  putRelease(c, 21, 0, 10);   /* evicts 19 */
  CHECK(strataCacheLookup(c, 19, 0) == NULL);
  CHECK(present(c, 100, 0));

  /* All pinned: usage goes over capacity, nothing is freed; releasing
  ** brings it back to the capacity, keeping the most recently released. */
  for (i = 0; i < 5; i++) aH[i] = put(c, 200 + (u64)i, 0, 10, 0);
  CHECK_EQ(strataCacheUsage(c), 50); /* 20 21 100 all evicted on the way */
  CHECK_EQ(atomic_load(&nValFree), 22);
  for (i = 0; i < 5; i++) CHECK(valOk(aH[i], 200 + (u64)i, 0));
  for (i = 0; i < 5; i++) strataCacheRelease(c, aH[i]);
  CHECK_EQ(strataCacheUsage(c), 30);
  CHECK(strataCacheLookup(c, 200, 0) == NULL);
  CHECK(strataCacheLookup(c, 201, 0) == NULL);
  CHECK(present(c, 202, 0));
  CHECK(present(c, 203, 0));
  CHECK(present(c, 204, 0));
  freeAndCheck(c);
}

static void test_replace(void) {
  BlockCache *c = NULL;
  CacheHandle *h1, *h2, *h3, *h;
  countersReset();
  CHECK_EQ(strataCacheNew(1000, &c), STRATA_OK);
  if (!c) return;
  h1 = put(c, 5, 8, 10, 1);
  h2 = put(c, 5, 8, 20, 2); /* replaces while h1 is pinned */
  CHECK(valOk(h1, 5, 8));
  CHECK(valOk(h2, 5, 8));
  CHECK_EQ(((TestVal *)strataCacheValue(h1))->serial, 1);
  CHECK_EQ(atomic_load(&nValFree), 0);
  CHECK_EQ(strataCacheCount(c), 1);
  CHECK_EQ(strataCacheUsage(c), 30); /* the old value is still held */
  h = strataCacheLookup(c, 5, 8);
  CHECK(h == h2);
  if (h) strataCacheRelease(c, h);
  strataCacheRelease(c, h1); /* the last pin of the replaced value frees it */
  CHECK_EQ(atomic_load(&nValFree), 1);
  CHECK_EQ(strataCacheUsage(c), 20);
  strataCacheRelease(c, h2);
  h3 = put(c, 5, 8, 5, 3); /* replaces an unpinned value: freed at once */
  CHECK_EQ(atomic_load(&nValFree), 2);
  CHECK_EQ(strataCacheUsage(c), 5);
  strataCacheRelease(c, h3);
  h = strataCacheLookup(c, 5, 8);
  CHECK(valOk(h, 5, 8) && ((TestVal *)strataCacheValue(h))->serial == 3);
  if (h) strataCacheRelease(c, h);
  CHECK_EQ(strataCacheCount(c), 1);
  freeAndCheck(c);
}

static void test_erase(void) {
  BlockCache *c = NULL;
  CacheHandle *h, *hPin;
  u64 i;
  int bAll;
  countersReset();
  CHECK_EQ(strataCacheNew(1 << 30, &c), STRATA_OK);
  if (!c) return;
  putRelease(c, 1, 1, 10);
  putRelease(c, 1, 2, 10);
  strataCacheErase(c, 1, 1);
  CHECK_EQ(atomic_load(&nValFree), 1);
  CHECK(strataCacheLookup(c, 1, 1) == NULL);
  CHECK(present(c, 1, 2));
  strataCacheErase(c, 1, 1); /* absent: no-op */
  strataCacheErase(c, 9, 9);
  CHECK_EQ(atomic_load(&nValFree), 1);
  h = strataCacheLookup(c, 1, 2);
  strataCacheErase(c, 1, 2); /* pinned: stays valid until released */
  CHECK(strataCacheLookup(c, 1, 2) == NULL);
  CHECK(valOk(h, 1, 2));
  CHECK_EQ(atomic_load(&nValFree), 1);
  CHECK_EQ(strataCacheUsage(c), 10);
  CHECK_EQ(strataCacheCount(c), 0);
  strataCacheRelease(c, h);
  CHECK_EQ(atomic_load(&nValFree), 2);
  CHECK_EQ(strataCacheUsage(c), 0);

  /* EraseId over enough entries to grow the tables and span several scan
  ** chunks per shard; one entry of the erased id stays pinned. */
  countersReset();
  for (i = 0; i < 40000; i++) {
    putRelease(c, 5, i * 4096, 1);
    putRelease(c, 6, i * 4096, 1);
  }
  putRelease(c, 55, 0, 1);
  hPin = strataCacheLookup(c, 5, 123 * 4096);
  CHECK_EQ(strataCacheCount(c), 80001);
  strataCacheEraseId(c, 5);
  CHECK_EQ(strataCacheCount(c), 40001);
  CHECK_EQ(strataCacheUsage(c), 40002); /* the pinned one is still held */
  CHECK_EQ(atomic_load(&nValFree), 39999);
  bAll = 1;
  for (i = 0; i < 40000; i++) {
    if (strataCacheLookup(c, 5, i * 4096) != NULL) bAll = 0;
    if (!present(c, 6, i * 4096)) bAll = 0;
  }
  CHECK(bAll);
  CHECK(present(c, 55, 0));
  CHECK(valOk(hPin, 5, 123 * 4096));
  strataCacheRelease(c, hPin);
  CHECK_EQ(atomic_load(&nValFree), 40000);
  strataCacheEraseId(c, 77); /* no entries: no-op */
  strataCacheEraseId(c, 6);
  CHECK_EQ(strataCacheCount(c), 1);
  CHECK_EQ(strataCacheUsage(c), 1);
  freeAndCheck(c);
}

static void test_capacity0(void) {
  BlockCache *c = NULL;
  CacheHandle *h, *h2, *h3;
  countersReset();
  CHECK_EQ(strataCacheNew(0, &c), STRATA_OK);
  if (!c) return;
  putRelease(c, 1, 0, 1);
  CHECK_EQ(atomic_load(&nValFree), 1);
  CHECK(strataCacheLookup(c, 1, 0) == NULL);
  putRelease(c, 1, 0, 0); /* even a charge of 0 does not stay */
  CHECK_EQ(atomic_load(&nValFree), 2);
  CHECK_EQ(strataCacheCount(c), 0);

  h = put(c, 2, 0, 50, 0);
  CHECK(valOk(h, 2, 0));
  CHECK_EQ(strataCacheUsage(c), 50);
  h2 = strataCacheLookup(c, 2, 0); /* found while pinned */
  CHECK(h2 == h);
  h3 = put(c, 3, 0, 10, 0); /* another insert evicts nothing pinned */
  CHECK(valOk(h, 2, 0));
  strataCacheRelease(c, h);
  CHECK_EQ(atomic_load(&nValFree), 2);
  CHECK(valOk(h2, 2, 0));
  strataCacheRelease(c, h2);
  CHECK_EQ(atomic_load(&nValFree), 3);
  CHECK(valOk(h3, 3, 0));
  strataCacheRelease(c, h3);
  CHECK_EQ(atomic_load(&nValFree), 4);
  CHECK_EQ(strataCacheUsage(c), 0);
  CHECK_EQ(strataCacheCount(c), 0);
  freeAndCheck(c);
}

/* The table cache: charge 1 per entry and a capacity of a few files. */
static void test_tiny_capacity(void) {
  BlockCache *c = NULL;
  u64 i;
  countersReset();
  CHECK_EQ(strataCacheNew(3, &c), STRATA_OK);
  if (!c) return;
  for (i = 1; i <= 100; i++) {
    putRelease(c, i, 0, 1);
    CHECK(strataCacheCount(c) <= 3);
  }
  CHECK_EQ(strataCacheCount(c), 3);
  CHECK(present(c, 98, 0));
  CHECK(present(c, 99, 0));
  CHECK(present(c, 100, 0));
  CHECK_EQ(atomic_load(&nValFree), 97);
  freeAndCheck(c);

  countersReset();
  CHECK_EQ(strataCacheNew(1, &c), STRATA_OK);
  if (!c) return;
  putRelease(c, 1, 0, 1);
  putRelease(c, 2, 0, 1);
  CHECK(strataCacheLookup(c, 1, 0) == NULL);
  CHECK(present(c, 2, 0));
  freeAndCheck(c);
}

static void test_usage(void) {
  BlockCache *c = NULL;
  CacheHandle *aH[100];
  size_t nSum = 0;
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew((size_t)1 << 40, &c), STRATA_OK);
  if (!c) return;
  CHECK_EQ(strataCacheUsage(c), 0);
  CHECK_EQ(strataCacheCount(c), 0);
  for (i = 0; i < 100; i++) {
    aH[i] = put(c, 3, (u64)i, (size_t)i * 1000 + 1, 0);
    nSum += (size_t)i * 1000 + 1;
  }
  CHECK_EQ(strataCacheUsage(c), nSum);
  for (i = 0; i < 100; i++) strataCacheRelease(c, aH[i]);
  CHECK_EQ(strataCacheUsage(c), nSum); /* released entries are still held */
  CHECK_EQ(strataCacheCount(c), 100);
  for (i = 0; i < 100; i += 2) {
    strataCacheErase(c, 3, (u64)i);
    nSum -= (size_t)i * 1000 + 1;
  }
  CHECK_EQ(strataCacheUsage(c), nSum);
  CHECK_EQ(strataCacheCount(c), 50);
  freeAndCheck(c);
}

static void test_new_id(void) {
  BlockCache *c = NULL, *c2 = NULL;
  u64 prev, id;
  int i, bOk = 1;
  CHECK_EQ(strataCacheNew(10, &c), STRATA_OK);
  CHECK_EQ(strataCacheNew(10, &c2), STRATA_OK);
  if (!c || !c2) return;
  prev = strataCacheNewId(c);
  CHECK(prev >= (1ull << 62));
  for (i = 0; i < 1000; i++) {
    id = strataCacheNewId(c);
    if (id <= prev) bOk = 0;
    prev = id;
  }
  CHECK(bOk);
  CHECK(strataCacheNewId(c2) >= (1ull << 62));
  strataCacheFree(c);
  strataCacheFree(c2);
}

/* xFree runs outside the shard lock, so it may use the cache itself. */
static BlockCache *pReentrant;
static _Atomic int nReentrantFree;
static void reentrantFree(void *p) {
  TestVal *v = p;
  CacheHandle *h = strataCacheLookup(pReentrant, v->id, v->off); /* same shard */
  if (h) strataCacheRelease(pReentrant, h);
  strataCacheErase(pReentrant, v->id, v->off + 1);
  atomic_fetch_add(&nReentrantFree, 1);
  valFree(p);
}

static void test_reentrant_free(void) {
  BlockCache *c = NULL;
  countersReset();
  CHECK_EQ(strataCacheNew(0, &c), STRATA_OK);
  if (!c) return;
  pReentrant = c;
  atomic_store(&nReentrantFree, 0);
  strataCacheRelease(c, strataCacheInsert(c, 1, 0, valNew(1, 0, 0), 1, reentrantFree));
  strataCacheRelease(c, strataCacheInsert(c, 1, 0, valNew(1, 0, 0), 1, reentrantFree));
  CHECK_EQ(atomic_load(&nReentrantFree), 2);
  freeAndCheck(c);
}

static void test_nomem(void) {
  BlockCache *c = NULL;
  CacheHandle *h;
  int n, rc = STRATA_NOMEM;
  countersReset();
  CHECK_EQ(strataCacheNew(1000, &c), STRATA_OK);
  if (!c) return;
  strataErrClear();
  strataTestFailMalloc(1, 0);
  h = put(c, 1, 0, 10, 0);
  strataTestFailMalloc(0, 0);
  CHECK(h == NULL);
  CHECK_EQ(atomic_load(&nValFree), 1); /* xFree has run */
  CHECK(strstr(strataErrMsgGet(), "out of memory") != NULL);
  CHECK(strataCacheLookup(c, 1, 0) == NULL);
  CHECK_EQ(strataCacheUsage(c), 0);
  CHECK_EQ(strataCacheCount(c), 0);
  /* A failing allocation while replacing leaves the old entry in place. */
  putRelease(c, 2, 0, 10);
  strataTestFailMalloc(1, 0);
  h = put(c, 2, 0, 10, 9);
  strataTestFailMalloc(0, 0);
  CHECK(h == NULL);
  h = strataCacheLookup(c, 2, 0);
  CHECK(valOk(h, 2, 0) && ((TestVal *)strataCacheValue(h))->serial == 0);
  if (h) strataCacheRelease(c, h);
  /* NULL xFree is allowed. */
  strataTestFailMalloc(1, 0);
  CHECK(strataCacheInsert(c, 3, 0, NULL, 1, NULL) == NULL);
  strataTestFailMalloc(0, 0);
  /* When the hash table cannot grow (the allocation after the handle's
  ** fails), inserts go on until a shard's table is 7/8 full, then fail
  ** cleanly; entries already in stay reachable. */
  {
    static u8 aIn[2000];
    long nOk = 0, nFail = 0, nFreeBefore = atomic_load(&nValFree);
    for (int i = 0; i < 2000; i++) {
      strataTestFailMalloc(2, 0);
      h = put(c, 4, (u64)i, 0, 0);
      strataTestFailMalloc(0, 0);
      aIn[i] = (h != NULL);
      if (h) {
        nOk++;
        CHECK(valOk(h, 4, (u64)i));
        strataCacheRelease(c, h);
      } else {
        nFail++;
      }
    }
    CHECK(nOk >= 16 * 8 && nOk <= 16 * 14);
    CHECK_EQ(nOk + nFail, 2000);
    CHECK_EQ(atomic_load(&nValFree) - nFreeBefore, nFail);
    CHECK_EQ(strataCacheCount(c), 1 + nOk); /* and (2, 0) */
    n = 0;
    for (int i = 0; i < 2000; i++) n += (present(c, 4, (u64)i) == aIn[i]);
    CHECK_EQ(n, 2000);
    for (int i = 0; i < 2000; i++) putRelease(c, 5, (u64)i, 0); /* grows again */
    n = 0;
    for (int i = 0; i < 2000; i++) n += (present(c, 4, (u64)i) == aIn[i]) + present(c, 5, (u64)i);
    CHECK_EQ(n, 4000);
  }
  freeAndCheck(c);

  /* strataCacheNew fails cleanly at each of its allocations. */
  for (n = 1; n < 100; n++) {
    strataTestFailMalloc(n, 0);
    rc = strataCacheNew(1 << 20, &c);
    strataTestFailMalloc(0, 0);
    if (rc == STRATA_OK) break;
    CHECK_EQ(rc, STRATA_NOMEM);
    CHECK(c == NULL);
  }
  CHECK_EQ(rc, STRATA_OK);
  CHECK(n > 1);
  strataCacheFree(c);
}

/* strataCacheAdd: the entry goes in unpinned, so it is found by lookups,
** evictable at once and freed by strataCacheFree without a Release. */
static void test_add_unpinned(void) {
  BlockCache *c = NULL;
  CacheHandle *h;
  u64 i;
  countersReset();
  CHECK_EQ(strataCacheNew(40, &c), STRATA_OK); /* one shard */
  if (!c) return;
  CHECK_EQ(strataCacheAdd(c, 1, 0, valNew(1, 0, 0), 10, valFree), STRATA_OK);
  CHECK_EQ(strataCacheCount(c), 1);
  CHECK_EQ(strataCacheUsage(c), 10);
  CHECK(present(c, 1, 0));
  /* Replacing an unpinned entry frees the old value at once. */
  CHECK_EQ(strataCacheAdd(c, 1, 0, valNew(1, 0, 1), 10, valFree), STRATA_OK);
  CHECK_EQ(atomic_load(&nValFree), 1);
  h = strataCacheLookup(c, 1, 0);
  CHECK(valOk(h, 1, 0) && ((TestVal *)strataCacheValue(h))->serial == 1);
  /* Too big for the capacity: freed at once, a pinned entry is not. */
  CHECK_EQ(strataCacheAdd(c, 2, 0, valNew(2, 0, 0), 100, valFree), STRATA_OK);
  CHECK_EQ(atomic_load(&nValFree), 2);
  CHECK(strataCacheLookup(c, 2, 0) == NULL);
  CHECK(valOk(h, 1, 0));
  strataCacheRelease(c, h);
  for (i = 0; i < 100; i++) CHECK_EQ(strataCacheAdd(c, 3, i, valNew(3, i, 0), 1, valFree), STRATA_OK);
  CHECK_EQ(strataCacheUsage(c), 40);
  for (i = 60; i < 100; i++) CHECK(present(c, 3, i)); /* the newest 40 */
  /* NULL xFree is allowed, and with capacity 0 nothing stays. */
  CHECK_EQ(strataCacheAdd(c, 4, 0, NULL, 1, NULL), STRATA_OK);
  freeAndCheck(c);
  countersReset();
  CHECK_EQ(strataCacheNew(0, &c), STRATA_OK);
  if (!c) return;
  CHECK_EQ(strataCacheAdd(c, 1, 0, valNew(1, 0, 0), 0, valFree), STRATA_OK);
  CHECK_EQ(atomic_load(&nValFree), 1);
  CHECK_EQ(strataCacheCount(c), 0);
  freeAndCheck(c);
}

/* RECYCLING: once full, an insert takes a victim's handle, so it needs no
** allocation at all (here every allocation fails); each victim's value is
** freed exactly once and every key still cached keeps its own value. */
static void test_recycle(void) {
  BlockCache *c = NULL;
  CacheHandle *h;
  u64 i;
  long nOk = 0;
  countersReset();
  CHECK_EQ(strataCacheNew(40, &c), STRATA_OK);
  if (!c) return;
  for (i = 0; i < 40; i++) putRelease(c, 1, i, 1);
  strataTestFailMalloc(1, 1); /* every allocation from here on fails */
  for (i = 40; i < 1000; i++) {
    h = put(c, 1, i, 1, i);
    nOk += valOk(h, 1, i);
    if (h) strataCacheRelease(c, h);
    if (i % 2) nOk += strataCacheAdd(c, 2, i, valNew(2, i, i), 1, valFree) == STRATA_OK;
  }
  strataTestFailMalloc(0, 0);
  CHECK_EQ(nOk, 960 + 480);
  CHECK_EQ(strataCacheCount(c), 40);
  CHECK_EQ(strataCacheUsage(c), 40);
  CHECK_EQ(atomic_load(&nValFree), atomic_load(&nValAlloc) - 40);
  for (i = 980; i < 1000; i++) {
    h = strataCacheLookup(c, 1, i);
    CHECK(valOk(h, 1, i) && ((TestVal *)strataCacheValue(h))->serial == i);
    if (h) strataCacheRelease(c, h);
    if (i % 2) CHECK(present(c, 2, i));
  }
  freeAndCheck(c);
}

/* MULTI-THREADED STRESS
** Threads look up, insert, release and erase on a small key space while
** holding several handles at once, checking every value they see. */
#define STRESS_THREADS 4
#define STRESS_HOLD 8
#define STRESS_IDS 8
#define STRESS_OFFS 32

typedef struct StressArg {
  BlockCache *c;
  u64 seed;
  double secs;
  long nOps;
  long nBad;
  _Atomic u64 *pSerial;
} StressArg;

static void *stressThread(void *pArg) {
  StressArg *a = pArg;
  TestRng rng;
  CacheHandle *aH[STRESS_HOLD] = {0};
  u64 aId[STRESS_HOLD], aOff[STRESS_HOLD];
  u64 tEnd = strataNowMicros() + (u64)(a->secs * 1e6);
  int i;
  test_srand(&rng, a->seed);
  while (1) {
    if ((a->nOps & 255) == 0 && strataNowMicros() >= tEnd) break;
    a->nOps++;
    int slot = (int)test_randn(&rng, STRESS_HOLD);
    u64 id = 1 + test_randn(&rng, STRESS_IDS);
    u64 off = test_randn(&rng, STRESS_OFFS) * 4096;
    int op = (int)test_randn(&rng, 1000);
    if (aH[slot]) { /* check and release what this slot holds */
      if (!valOk(aH[slot], aId[slot], aOff[slot])) a->nBad++;
      strataCacheRelease(a->c, aH[slot]);
      aH[slot] = NULL;
    }
    if (op < 550) {
      CacheHandle *h = strataCacheLookup(a->c, id, off);
      if (h) {
        if (!valOk(h, id, off)) a->nBad++;
        aH[slot] = h;
      }
    } else if (op < 650) { /* unpinned: the value may be gone at once */
      u64 serial = atomic_fetch_add(a->pSerial, 1);
      if (strataCacheAdd(a->c, id, off, valNew(id, off, serial), 1 + test_randn(&rng, 8), valFree)) {
        a->nBad++;
      }
    } else if (op < 900) {
      u64 serial = atomic_fetch_add(a->pSerial, 1);
      CacheHandle *h = put(a->c, id, off, 1 + test_randn(&rng, 8), serial);
      if (!h || !valOk(h, id, off) || ((TestVal *)strataCacheValue(h))->serial != serial) {
        a->nBad++;
      }
      aH[slot] = h;
    } else if (op < 990) {
      strataCacheErase(a->c, id, off);
    } else if (op < 995) {
      strataCacheEraseId(a->c, id);
    } else {
      (void)strataCacheUsage(a->c);
      (void)strataCacheCount(a->c);
    }
    aId[slot] = id;
    aOff[slot] = off;
    for (i = 0; i < STRESS_HOLD; i++) {
      if (aH[i] && !valOk(aH[i], aId[i], aOff[i])) a->nBad++;
    }
  }
  for (i = 0; i < STRESS_HOLD; i++) {
    if (aH[i]) strataCacheRelease(a->c, aH[i]);
  }
  return NULL;
}

static void stressRun(size_t nCapacity, double secs, u64 seed) {
  BlockCache *c = NULL;
  pthread_t aThread[STRESS_THREADS];
  StressArg aArg[STRESS_THREADS];
  _Atomic u64 iSerial = 1;
  long nOps = 0, nBad = 0;
  int i;
  countersReset();
  CHECK_EQ(strataCacheNew(nCapacity, &c), STRATA_OK);
  if (!c) return;
  for (i = 0; i < STRESS_THREADS; i++) {
    aArg[i] = (StressArg){c, seed + (u64)i * 7919, secs, 0, 0, &iSerial};
    CHECK_EQ(pthread_create(&aThread[i], NULL, stressThread, &aArg[i]), 0);
  }
  for (i = 0; i < STRESS_THREADS; i++) {
    pthread_join(aThread[i], NULL);
    nOps += aArg[i].nOps;
    nBad += aArg[i].nBad;
  }
  CHECK_EQ(nBad, 0);
  CHECK(strataCacheUsage(c) <= nCapacity); /* nothing pinned any more */
  CHECK_EQ(atomic_load(&nValFree) + (long)strataCacheCount(c), atomic_load(&nValAlloc));
  printf("# stress capacity %zu: %ld ops, %ld values, %zu left cached\n", nCapacity, nOps,
         (long)atomic_load(&nValAlloc), strataCacheCount(c));
  freeAndCheck(c);
}

static void test_stress(void) {
  u64 seed = test_seed("stress");
  double secs = test_soak() ? 30.0 : 0.6;
  stressRun(0, secs, seed);          /* nothing cached: every release frees */
  stressRun(40, secs, seed + 1);     /* one shard, constant eviction */
  stressRun(600, secs * 1.4, seed + 2); /* 16 shards, some eviction */
}

/* RELEASES RACING THE MUTEX HOLDERS
** Release drops a pin without the shard mutex unless it is the last pin of
** an entry off the LRU list or out of the table (LOCK-FREE RELEASE in
** cache.c). Here readers pin and release a few hot keys of one shard,
** holding one to three pins of the same entry at a time, while a mutator
** erases and replaces those very entries, floods the shard so that
** eviction keeps meeting pinned heads, and swings the capacity down to 0
** and back: every release races a detach, an eviction or a re-append.
** Each value is checked while pinned (a value freed under a pin has lost
** its magic), every value must be freed exactly once, and at the end the
** usage must equal the entries left (charge 1 each): a pin dropped without
** its accounting, or an unpinned entry left off the list, shows there. */
#define RACE_READERS 3
#define RACE_HOT 4

typedef struct RaceArg {
  BlockCache *c;
  u64 seed;
  _Atomic int *pbStop;
  _Atomic u64 *pSerial;
  int bSwing; /* the mutator changes the capacity too */
  long nOps, nBad, nFound;
} RaceArg;

static void *raceReader(void *pArg) {
  RaceArg *a = pArg;
  TestRng rng;
  test_srand(&rng, a->seed);
  while (!atomic_load(a->pbStop)) {
    u64 off = test_randn(&rng, RACE_HOT);
    CacheHandle *aH[3];
    int n = 1 + (int)test_randn(&rng, 3), i, nGot = 0;
    for (i = 0; i < n; i++) {
      aH[nGot] = strataCacheLookup(a->c, 1, off);
      if (aH[nGot]) nGot++;
    }
    for (i = 0; i < nGot; i++) {
      if (!valOk(aH[i], 1, off)) a->nBad++;
      if (i > 0 && aH[i] != aH[0] && ((TestVal *)strataCacheValue(aH[i]))->serial <=
                                          ((TestVal *)strataCacheValue(aH[0]))->serial) {
        a->nBad++; /* a replacement is always a newer value */
      }
    }
    /* Release in a random order; the last one may be anywhere. */
    while (nGot > 0) {
      int j = (int)test_randn(&rng, (u64)nGot);
      if (!valOk(aH[j], 1, off)) a->nBad++;
      strataCacheRelease(a->c, aH[j]);
      aH[j] = aH[--nGot];
      a->nFound++;
    }
    a->nOps++;
  }
  return NULL;
}

static void *raceMutator(void *pArg) {
  RaceArg *a = pArg;
  TestRng rng;
  test_srand(&rng, a->seed);
  while (!atomic_load(a->pbStop)) {
    int op = (int)test_randn(&rng, 100);
    u64 off = test_randn(&rng, RACE_HOT);
    if (op < 40) { /* (re)insert a hot key, replacing (detaching) the old one */
      u64 serial = atomic_fetch_add(a->pSerial, 1);
      if (op < 20) {
        strataCacheRelease(a->c, put(a->c, 1, off, 1, serial));
      } else if (strataCacheAdd(a->c, 1, off, valNew(1, off, serial), 1, valFree)) {
        a->nBad++;
      }
    } else if (op < 55) {
      strataCacheErase(a->c, 1, off);
    } else if (op < 85) { /* flood: evictions pass the pinned hot entries */
      putRelease(a->c, 2, test_randn(&rng, 64), 1);
    } else if (op < 90 || !a->bSwing) {
      strataCacheEraseId(a->c, 1);
    } else if (op < 95) {
      strataCacheSetCapacity(a->c, op < 92 ? 0 : 8);
    } else {
      strataCacheSetCapacity(a->c, 16);
    }
    a->nOps++;
  }
  return NULL;
}

static void test_release_race(void) {
  BlockCache *c = NULL;
  pthread_t aThread[RACE_READERS + 1];
  RaceArg aArg[RACE_READERS + 1];
  _Atomic int bStop = 0;
  _Atomic u64 iSerial = 1;
  u64 seed = test_seed("release race");
  long nBad = 0, nFound = 0, nMut;
  int i, round;
  for (round = 0; round < 2; round++) { /* round 1 swings the capacity */
    countersReset();
    atomic_store(&bStop, 0);
    /* 16 units: one shard (CACHE_MIN_SHARE), so every key meets every other. */
    CHECK_EQ(strataCacheNew(16, &c), STRATA_OK);
    if (!c) return;
    for (i = 0; i <= RACE_READERS; i++) {
      aArg[i] = (RaceArg){c, seed + (u64)round * 101 + (u64)i * 7919, &bStop, &iSerial, round, 0, 0, 0};
      CHECK_EQ(pthread_create(&aThread[i], NULL, i < RACE_READERS ? raceReader : raceMutator,
                              &aArg[i]),
               0);
    }
    usleep(test_soak() ? 20000000 : 400000);
    atomic_store(&bStop, 1);
    nMut = 0;
    for (i = 0; i <= RACE_READERS; i++) {
      pthread_join(aThread[i], NULL);
      nBad += aArg[i].nBad;
      if (i < RACE_READERS) nFound += aArg[i].nFound;
      else nMut = aArg[i].nOps;
    }
    CHECK_EQ(nBad, 0);
    if (round == 1) strataCacheSetCapacity(c, 16); /* the mutator may have left it at 0 */
    CHECK_EQ(strataCacheUsage(c), strataCacheCount(c));
    CHECK(strataCacheUsage(c) <= 16);
    CHECK_EQ(atomic_load(&nValFree) + (long)strataCacheCount(c), atomic_load(&nValAlloc));
    printf("# release race round %d: %ld pins released, %ld mutations, %zu left cached\n", round,
           nFound, nMut, strataCacheCount(c));
    /* Every entry left is unpinned and on the list: a capacity of 0 frees all. */
    strataCacheSetCapacity(c, 0);
    CHECK_EQ(strataCacheCount(c), 0);
    CHECK_EQ(strataCacheUsage(c), 0);
    CHECK_EQ(atomic_load(&nValFree), atomic_load(&nValAlloc));
    freeAndCheck(c);
    c = NULL;
  }
}

/* Informational: lookup+release on hits, one thread and two. Never asserted. */
typedef struct PerfArg {
  BlockCache *c;
  int nKey;
  long nOps;
  double secs;
} PerfArg;

static void *perfThread(void *pArg) {
  PerfArg *a = pArg;
  TestRng rng;
  u64 t0 = strataNowMicros();
  u64 tEnd = t0 + (u64)(a->secs * 1e6);
  test_srand(&rng, (u64)(uintptr_t)a);
  while (strataNowMicros() < tEnd) {
    for (int i = 0; i < 1024; i++) {
      u64 k = test_randn(&rng, (u64)a->nKey);
      CacheHandle *h = strataCacheLookup(a->c, 1 + (k & 7), (k >> 3) * 4096);
      if (h) strataCacheRelease(a->c, h);
    }
    a->nOps += 1024;
  }
  a->secs = (double)(strataNowMicros() - t0) / 1e6;
  return NULL;
}

static void perfRun(int nKey, double secs) {
  BlockCache *c = NULL;
  int i, nThread;
  countersReset();
  CHECK_EQ(strataCacheNew((size_t)nKey * 4096 * 2, &c), STRATA_OK);
  if (!c) return;
  for (i = 0; i < nKey; i++) putRelease(c, 1 + ((u64)i & 7), ((u64)i >> 3) * 4096, 4096);
  CHECK_EQ(strataCacheCount(c), (size_t)nKey);
  for (nThread = 1; nThread <= 2; nThread++) {
    pthread_t aThread[2];
    PerfArg aArg[2];
    double rate = 0;
    for (i = 0; i < nThread; i++) {
      aArg[i] = (PerfArg){c, nKey, 0, secs};
      pthread_create(&aThread[i], NULL, perfThread, &aArg[i]);
    }
    for (i = 0; i < nThread; i++) {
      pthread_join(aThread[i], NULL);
      rate += (double)aArg[i].nOps / aArg[i].secs;
    }
    printf("# %6d keys, %d thread(s): %.2fM hit lookups+releases/s (%.0f ns each per thread)\n",
           nKey, nThread, rate / 1e6, 1e9 * nThread / rate);
  }
  freeAndCheck(c);
}

static void test_perf(void) {
  perfRun(1000, 0.2);
  perfRun(100000, 0.2);
}

int main(void) {
  RUN(test_basic);
  RUN(test_lru_order);
  RUN(test_lru_large);
  RUN(test_second_chance);
  RUN(test_shares);
  RUN(test_byte_budget);
  RUN(test_set_capacity);
  RUN(test_reserve);
  RUN(test_reserve_threads);
  RUN(test_pinned);
  RUN(test_replace);
  RUN(test_erase);
  RUN(test_capacity0);
  RUN(test_tiny_capacity);
  RUN(test_usage);
  RUN(test_new_id);
  RUN(test_reentrant_free);
  RUN(test_nomem);
  RUN(test_add_unpinned);
  RUN(test_recycle);
  RUN(test_stress);
  RUN(test_release_race);
  RUN(test_perf);
  return TEST_SUMMARY();
}
