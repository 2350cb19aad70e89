/*
** cache.c -- a sharded LRU cache with a byte budget, keyed by (id, offset).
**
** The block cache holds decoded blocks under (table id, block offset); the
** table cache holds open table readers under (file number, 0) with a charge
** of 1 each. Both are this one structure.
**
** SHARDS
**
** The key is hashed to 32 bits; the top bits pick one of up to 16 shards,
** each with its own mutex, hash table, LRU list and share of the capacity,
** so readers of different blocks rarely meet on a lock. The shard count is
** lowered for small capacities (under 32 units per shard), where an uneven
** spread of keys over many tiny shards would waste the budget: a table
** cache of a few dozen files is one shard. The shares add up to exactly
** nCapacity. Each shard starts on its own cache line.
**
** HASH TABLE
**
** Open addressing with linear probing over 16-byte slots holding the entry
** pointer, its 32-bit hash and the low 32 bits of its id. A lookup reads
** one slot line and dereferences only the entry whose hash matches: two
** cache misses for a cold hit instead of one per chain link. Removal
** shifts the rest of the probe run back (no tombstones). The table doubles
** when half full; if that allocation fails it carries on up to 7/8 full,
** and beyond that Insert fails with STRATA_NOMEM. EraseId scans the slots
** sequentially, comparing the id bits kept in the slot, so it touches only
** the entries it removes. strataCachePrefetch asks for a key's home slot
** line without the lock (reading the array's address and size atomically),
** so that a caller about to look up several keys waits for those lines
** together.
**
** ENTRIES, PINS AND THE LRU LIST
**
** A handle given to a caller is one pin; Lookup and Insert pin,
** Release unpins. An entry is in the table (found by lookups) until it is
** evicted, erased or replaced; a pinned entry leaving the table is
** "detached" and freed by its last Release. A pinned entry is never freed.
**
** The LRU list (oldest at the head) holds the table's entries, pinned ones
** possibly included: a hit does not unlink its entry, which would write to
** two neighbouring entries, likely two more cache misses. Eviction pops
** the head; a pinned head is just taken off the list, and put back as the
** newest when its last pin goes. So usage may exceed the capacity only by
** pinned entries, and with capacity 0 an entry is freed as soon as it is
** unpinned.
**
** A hit moves its entry to the newest end, except when it is already in the
** newest quarter of the list: each append stamps the entry with a per-shard
** tick, and fewer than nEntry/4 ticks since the stamp mean fewer than
** nEntry/4 entries are newer. Hot entries thus cost no list writes at all,
** and the order is LRU to within a quarter of the shard (exact while a
** shard has fewer than 8 entries).
**
** SECOND CHANCE
**
** In a shard of CACHE_DEFER_MIN entries or more, a hit outside the newest
** quarter does not move its entry either: it only sets the entry's bRef,
** in the line the lookup has just read. Moving it would write its two list
** neighbours, entries of random age that are almost never in the CPU's
** caches: two misses under the mutex on most hits of a large cache (the
** lookup's largest cost when the working set fits). Eviction instead gives
** a head with bRef set a second chance: it is cleared and appended as the
** newest, and the next head is considered. So an entry used since it was
** last appended is never evicted before one that was not (CLOCK); it just
** joins the newest end when it reaches the head rather than when it was
** used. Each head is passed over at most once per eviction, as clearing
** happens before any new hit can set it again. Smaller shards keep the
** exact moves, where they cost little.
**
** EVICTION PREFETCH
**
** Once the cache is full every insert evicts, and a victim is by nature
** the coldest memory the shard has: its entry, its slot, its LRU neighbour
** and its value each cost a miss, under the shard mutex. An eviction
** therefore prefetches what the next one in the shard will touch (see
** evictPrefetch), so that by then those lines have arrived.
**
** LOCK-FREE RELEASE
**
** An entry's pins and its two flags, "in the table" and "on the LRU
** list", share one atomic word (state). Pins are only added, and flags only
** changed, under the shard mutex; pins are dropped with atomic operations,
** so a Release needs the mutex only when dropping the last pin must do
** something: free an entry that left the table, or put back on the list
** one that eviction took off. Otherwise (another pin remains, or the entry
** is in the table and on the list) one compare-and-swap unpins it: a
** reader's lookup takes the mutex once, not twice. Nothing else is
** needed then: whenever the mutex is free, a shard over its budget has an
** empty list (eviction stops only under budget or out of entries), so an
** entry on the list can be unpinned without evicting. The mutex holder
** that changes flags does so in one atomic step (entryDetach) or by
** compare-and-swap (shardEvict), so that a release racing with it either
** dropped its pin first, and the entry is seen unpinned, or sees the new
** flags and takes the mutex. A release then no longer touches the entry.
**
** RECYCLING
**
** Once the cache is full, an insert evicts as much as the new entry needs
** before it goes in, and takes the first victim's handle for it (the
** victim's value is freed after the unlock as usual): the miss path of a
** full cache allocates and frees no handle. Only a shard with room to
** spare allocates one, with its mutex released meanwhile.
**
** USAGE
**
** Usage is the sum of the charges of entries whose value has not been
** freed, detached pinned ones included: it is memory really held. A cache
** charged in bytes counts each entry's own cost too (the block cache adds
** strataCacheEntryOverhead to every block's charge), so that its capacity
** bounds the memory it holds, not just the values'.
** strataCacheCount counts only the entries a lookup can find.
**
** RESERVATIONS
**
** Memory its owner holds outside the cache can be charged to the cache's
** capacity: strataCacheReserve adds to the bytes reserved, and every
** shard's capacity becomes its share of the capacity less the reserved
** bytes (zero when they exceed it), evicting what no longer fits at once;
** strataCacheUnreserve gives bytes back. So the charges of unpinned
** entries plus the reservations stay within the capacity. The database
** reserves an immutable memtable until its flush is done, the index and
** filter blocks of open tables, and the buffers of flushes and
** compactions. A reservation takes every shard's mutex in turn (under
** resMu, which orders concurrent changes): meant for changes of tens of
** KiB or more, not for every block.
**
** FREEING
**
** xFree runs exactly once per inserted value, and never under a shard
** mutex: entries to free are unlinked under the lock, chained on a local
** list and freed after unlocking. So xFree may be slow (closing a table)
** and may itself use a cache (a table reader releasing its blocks).
*/
#include "strataInt.h"

#include <assert.h>
#include <pthread.h>

#define CACHE_MAX_SHARD_BITS 4
#define CACHE_MIN_SHARE 32        /* smallest per-shard capacity worth a shard */
#define CACHE_INIT_SLOTS 16       /* per shard, a power of two */
#define CACHE_LINE 64
#define CACHE_FIRST_ID (1ull << 62) /* above any file number */
#define CACHE_DEFER_MIN 64        /* shard entries from which hits are deferred (SECOND CHANCE) */

/* CacheHandle.state (LOCK-FREE RELEASE): the pins, and two flags. */
#define CACHE_IN_TABLE 1u /* found by lookups */
#define CACHE_ON_LRU 2u   /* linked in the shard's LRU list */
#define CACHE_FLAGS (CACHE_IN_TABLE | CACHE_ON_LRU)
#define CACHE_PIN 4u /* one pin: the pin count is state / CACHE_PIN */

struct CacheHandle {
  /* Read by every lookup first. */
  u64 id, off;
  _Atomic u32 state; /* pins held by callers, and the CACHE_* flags */
  u32 iStamp;  /* the shard's tick when last appended to the LRU list */
  u32 hash;
  u8 bRef;     /* hit since last appended, not yet moved (SECOND CHANCE) */
  /* The LRU list; pLruNext also chains entries waiting to be freed. */
  CacheHandle *pLruPrev, *pLruNext;
  void *pValue;
  void (*xFree)(void *);
  size_t nCharge;
};

typedef struct CacheSlot {
  CacheHandle *e; /* NULL: empty */
  u32 hash;
  u32 idLow; /* (u32)e->id, for EraseId */
} CacheSlot;

typedef struct CacheShard {
  _Alignas(CACHE_LINE) pthread_mutex_t mutex;
  CacheSlot *aSlot;
  u32 nSlot;  /* a power of two */
  u32 iTick;  /* counts LRU appends */
  size_t nEntry;  /* entries in the table */
  size_t nUsage;  /* charges of entries not yet freed */
  size_t nCapacity;
  u64 nHit, nMiss;
  CacheHandle lru; /* list head: lru.pLruNext is the oldest, lru.pLruPrev the newest */
} CacheShard;

struct BlockCache {
  int nShardBits;
  int nShard;
  _Atomic u64 iNextId;
  void *pAlloc; /* the allocation this struct lives in (aligned within it) */
  /* RESERVATIONS: resMu guards both, and orders changes of the shares. */
  pthread_mutex_t resMu;
  size_t nBase;     /* the capacity set (New, SetCapacity) */
  size_t nReserved; /* bytes reserved */
  CacheShard aShard[];
};

/* A well-mixed 32-bit hash of the key (block offsets share low bits). */
static inline u32 cacheHash(u64 id, u64 off) {
  u64 h = id * 0x9e3779b97f4a7c15ull ^ off;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return (u32)h;
}

/* The top bits pick the shard, the low bits the slot. */
static inline CacheShard *shardFor(BlockCache *c, u32 hash) {
  return &c->aShard[c->nShardBits ? hash >> (32 - c->nShardBits) : 0];
}

/* LRU LIST */

/* Link e as the newest. These two move list pointers only: the caller keeps
** CACHE_ON_LRU in e->state right. */
static inline void lruAppend(CacheShard *s, CacheHandle *e) {
  e->pLruNext = &s->lru;
  e->pLruPrev = s->lru.pLruPrev;
  e->pLruPrev->pLruNext = e;
  s->lru.pLruPrev = e;
  e->bRef = 0;
  e->iStamp = ++s->iTick;
}

static inline void lruUnlink(CacheHandle *e) {
  e->pLruPrev->pLruNext = e->pLruNext;
  e->pLruNext->pLruPrev = e->pLruPrev;
}

/* Make a hit entry the newest unless it is already in the newest quarter;
** in a large shard, just mark it for its second chance. */
static inline void lruTouch(CacheShard *s, CacheHandle *e) {
  if ((atomic_load_explicit(&e->state, memory_order_relaxed) & CACHE_ON_LRU) &&
      (u32)(s->iTick - e->iStamp) >= (u32)(s->nEntry >> 2)) {
    if (s->nEntry >= CACHE_DEFER_MIN) {
      e->bRef = 1;
    } else {
      lruUnlink(e);
      lruAppend(s, e);
    }
  }
}

/* HASH TABLE */

/* The slot holding the key, or the empty slot ending its probe run. */
static inline u32 slotFind(const CacheShard *s, u32 hash, u64 id, u64 off) {
  u32 mask = s->nSlot - 1;
  u32 i = hash & mask;
  for (;; i = (i + 1) & mask) {
    const CacheSlot *p = &s->aSlot[i];
    if (!p->e || (p->hash == hash && p->e->id == id && p->e->off == off)) return i;
  }
}

/* The slot holding entry e, which is in the table. */
static u32 slotOf(const CacheShard *s, const CacheHandle *e) {
  u32 mask = s->nSlot - 1;
  u32 i = e->hash & mask;
  while (s->aSlot[i].e != e) {
    assert(s->aSlot[i].e != NULL);
    i = (i + 1) & mask;
  }
  return i;
}

/* Empty slot i, moving back later entries of the run whose home slot is at
** or before i so that every entry stays reachable from its home. */
static void slotClear(CacheShard *s, u32 i) {
  u32 mask = s->nSlot - 1;
  u32 j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!s->aSlot[j].e) break;
    /* The entry at j may move to i unless its home lies in (i, j]. */
    if (((j - (s->aSlot[j].hash & mask)) & mask) >= ((j - i) & mask)) {
      s->aSlot[i] = s->aSlot[j];
      i = j;
    }
  }
  s->aSlot[i].e = NULL;
}

/* Double the slot array. Returns 0, or 1 if the allocation failed (the
** table is then unchanged). */
static int slotGrow(CacheShard *s) {
  u32 nNew = s->nSlot * 2, i;
  CacheSlot *aNew;
  if (nNew == 0) return 1;
  aNew = strataMallocZero(sizeof(CacheSlot) * nNew);
  if (!aNew) return 1;
  for (i = 0; i < s->nSlot; i++) {
    if (s->aSlot[i].e) {
      u32 j = s->aSlot[i].hash & (nNew - 1);
      while (aNew[j].e) j = (j + 1) & (nNew - 1);
      aNew[j] = s->aSlot[i];
    }
  }
  strataFreeMem(s->aSlot);
  /* Atomic stores: strataCachePrefetch reads these two without the lock. */
  __atomic_store_n(&s->aSlot, aNew, __ATOMIC_RELAXED);
  __atomic_store_n(&s->nSlot, nNew, __ATOMIC_RELAXED);
  return 0;
}

/* ENTRIES */

/* Entry e has left the table (its slot is already cleared or reused). If
** unpinned its charge is dropped and it goes on *ppFree, to be freed after
** the unlock; if pinned, the last Release frees it. */
static void entryDetach(CacheShard *s, CacheHandle *e, CacheHandle **ppFree) {
  /* One atomic step: a release racing with it either unpinned before (and
  ** the entry is freed here) or finds the flags clear and takes the lock. */
  u32 old = atomic_fetch_and_explicit(&e->state, ~CACHE_FLAGS, memory_order_acq_rel);
  if (old & CACHE_ON_LRU) lruUnlink(e);
  if (old < CACHE_PIN) {
    s->nUsage -= e->nCharge;
    e->pLruNext = *ppFree;
    *ppFree = e;
  }
}

/* Remove the entry in slot i from the table. */
static void shardRemove(CacheShard *s, u32 i, CacheHandle **ppFree) {
  CacheHandle *e = s->aSlot[i].e;
  slotClear(s, i);
  s->nEntry--;
  entryDetach(s, e, ppFree);
}

/* After an eviction (EVICTION PREFETCH): ask for the lines the next one
** will touch, the new head's slot and value, and the entry after it (whose
** pLruPrev the next unlink writes). The head itself was asked for by the
** eviction before. Reads only the head, which is in the table. */
static inline void evictPrefetch(const CacheShard *s) {
  const CacheHandle *h = s->lru.pLruNext;
  if (h == &s->lru) return;
  __builtin_prefetch(h->pLruNext, 1);
  __builtin_prefetch(&s->aSlot[h->hash & (s->nSlot - 1)], 1);
  if (h->pValue) __builtin_prefetch(h->pValue, 1);
}

/* Evict from the oldest end while the shard's usage plus nRoom is over its
** share (a share of 0 keeps nothing unpinned, even entries of charge 0).
** Pinned entries met on the way leave the list until released; heads with
** bRef set are moved to the newest end instead (SECOND CHANCE). Victims go
** on *ppFree. */
static void shardEvict(CacheShard *s, size_t nRoom, CacheHandle **ppFree) {
  int bEvicted = 0;
  while ((s->nUsage + nRoom > s->nCapacity || s->nCapacity == 0) && s->lru.pLruNext != &s->lru) {
    CacheHandle *e = s->lru.pLruNext;
    u32 st = atomic_load_explicit(&e->state, memory_order_acquire);
    if (st >= CACHE_PIN) {
      /* Off the list until its last release. That release may be happening
      ** now, without the lock: then the exchange fails and e is looked at
      ** again, unpinned (pins are only added under the lock). */
      if (!atomic_compare_exchange_strong_explicit(&e->state, &st, st & ~CACHE_ON_LRU,
                                                   memory_order_acq_rel, memory_order_acquire)) {
        continue;
      }
      lruUnlink(e);
    } else if (e->bRef) { /* used since it was appended: its second chance */
      lruUnlink(e);
      lruAppend(s, e);
    } else {
      shardRemove(s, slotOf(s, e), ppFree);
      bEvicted = 1;
    }
  }
  if (bEvicted) evictPrefetch(s);
}

/* Run xFree for every entry on the list (chained by pLruNext) and free the
** handles. Called with no shard mutex held. */
static void freeList(CacheHandle *e) {
  while (e) {
    CacheHandle *pNext = e->pLruNext;
    if (e->xFree) e->xFree(e->pValue);
    strataFreeMem(e);
    e = pNext;
  }
}

/* PUBLIC INTERFACE */

/* Create a cache holding up to nCapacity units of charge in unpinned
** entries. STRATA_NOMEM (with *ppCache NULL) if allocation fails. */
int strataCacheNew(size_t nCapacity, BlockCache **ppCache) {
  int nBits = CACHE_MAX_SHARD_BITS;
  int nShard, i;
  void *pAlloc;
  BlockCache *c;

  *ppCache = NULL;
  /* Capacity 0 caches nothing: all shards then just spread the locks. */
  if (nCapacity > 0) {
    while (nBits > 0 && nCapacity / ((size_t)1 << nBits) < CACHE_MIN_SHARE) nBits--;
  }
  nShard = 1 << nBits;
  pAlloc = strataMallocZero(sizeof(BlockCache) + sizeof(CacheShard) * (size_t)nShard + CACHE_LINE);
  if (!pAlloc) return strataErr(STRATA_NOMEM, "out of memory (cache)");
  c = (BlockCache *)(((uintptr_t)pAlloc + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1));
  c->pAlloc = pAlloc;
  c->nBase = nCapacity;
  c->nShardBits = nBits;
  c->nShard = nShard;
  atomic_init(&c->iNextId, CACHE_FIRST_ID);
  for (i = 0; i < nShard; i++) {
    CacheShard *s = &c->aShard[i];
    /* Spread the remainder so that the shares add up to nCapacity. */
    s->nCapacity = nCapacity / (size_t)nShard + ((size_t)i < nCapacity % (size_t)nShard);
    s->lru.pLruNext = s->lru.pLruPrev = &s->lru;
    s->nSlot = CACHE_INIT_SLOTS;
    s->aSlot = strataMallocZero(sizeof(CacheSlot) * CACHE_INIT_SLOTS);
    if (!s->aSlot || pthread_mutex_init(&s->mutex, NULL) != 0) {
      strataFreeMem(s->aSlot);
      while (--i >= 0) {
        pthread_mutex_destroy(&c->aShard[i].mutex);
        strataFreeMem(c->aShard[i].aSlot);
      }
      strataFreeMem(pAlloc);
      return strataErr(STRATA_NOMEM, "out of memory (cache)");
    }
  }
  if (pthread_mutex_init(&c->resMu, NULL) != 0) {
    for (i = 0; i < nShard; i++) {
      pthread_mutex_destroy(&c->aShard[i].mutex);
      strataFreeMem(c->aShard[i].aSlot);
    }
    strataFreeMem(pAlloc);
    return strataErr(STRATA_NOMEM, "out of memory (cache)");
  }
  *ppCache = c;
  return STRATA_OK;
}

/* Give every shard its share of the capacity less the reservations (split
** as at creation; the shard count stays) and evict what no longer fits.
** c->resMu held. */
static void cacheApplyCapacity(BlockCache *c) {
  size_t nCapacity = c->nBase > c->nReserved ? c->nBase - c->nReserved : 0;
  int i;
  for (i = 0; i < c->nShard; i++) {
    CacheShard *s = &c->aShard[i];
    CacheHandle *pFree = NULL;
    pthread_mutex_lock(&s->mutex);
    s->nCapacity = nCapacity / (size_t)c->nShard + ((size_t)i < nCapacity % (size_t)c->nShard);
    shardEvict(s, 0, &pFree);
    pthread_mutex_unlock(&s->mutex);
    freeList(pFree);
  }
}

/* Change the capacity and evict what no longer fits (reservations still
** count against the new one). */
void strataCacheSetCapacity(BlockCache *c, size_t nCapacity) {
  pthread_mutex_lock(&c->resMu);
  c->nBase = nCapacity;
  cacheApplyCapacity(c);
  pthread_mutex_unlock(&c->resMu);
}

/* Charge n bytes held outside the cache to its capacity (RESERVATIONS),
** evicting unpinned entries until they fit beside them. */
void strataCacheReserve(BlockCache *c, size_t n) {
  if (n == 0) return;
  pthread_mutex_lock(&c->resMu);
  c->nReserved += n;
  cacheApplyCapacity(c);
  pthread_mutex_unlock(&c->resMu);
}

/* Give back n bytes of an earlier strataCacheReserve. */
void strataCacheUnreserve(BlockCache *c, size_t n) {
  if (n == 0) return;
  pthread_mutex_lock(&c->resMu);
  assert(n <= c->nReserved);
  c->nReserved -= n < c->nReserved ? n : c->nReserved;
  cacheApplyCapacity(c);
  pthread_mutex_unlock(&c->resMu);
}

/* Bytes reserved now. */
size_t strataCacheReserved(BlockCache *c) {
  size_t n;
  pthread_mutex_lock(&c->resMu);
  n = c->nReserved;
  pthread_mutex_unlock(&c->resMu);
  return n;
}

/* Free the cache and every value in it. Every handle must have been
** released first. NULL is a no-op. */
void strataCacheFree(BlockCache *c) {
  int i;
  if (!c) return;
  for (i = 0; i < c->nShard; i++) {
    CacheShard *s = &c->aShard[i];
    CacheHandle *pFree = NULL;
    u32 j;
    for (j = 0; j < s->nSlot; j++) {
      CacheHandle *e = s->aSlot[j].e;
      if (e) {
        assert(atomic_load(&e->state) < CACHE_PIN);
        e->pLruNext = pFree;
        pFree = e;
      }
    }
    freeList(pFree);
    pthread_mutex_destroy(&s->mutex);
    strataFreeMem(s->aSlot);
  }
  pthread_mutex_destroy(&c->resMu);
  strataFreeMem(c->pAlloc);
}

/* The entry for the key, pinned (release it with strataCacheRelease), or
** NULL if absent. Counts a hit or a miss. */
CacheHandle *strataCacheLookup(BlockCache *c, u64 id, u64 off) {
  u32 hash = cacheHash(id, off);
  CacheShard *s = shardFor(c, hash);
  CacheHandle *e;
  pthread_mutex_lock(&s->mutex);
  e = s->aSlot[slotFind(s, hash, id, off)].e;
  if (LIKELY(e != NULL)) {
    /* Atomic even under the lock: releases subtract without it. */
    atomic_fetch_add_explicit(&e->state, CACHE_PIN, memory_order_relaxed);
    lruTouch(s, e);
    s->nHit++;
  } else {
    s->nMiss++;
  }
  pthread_mutex_unlock(&s->mutex);
  return e;
}

/* Ask for the line of the hash slot that a lookup of the key reads first,
** for a caller about to look up several keys (SEEKING SEVERAL TABLES in
** sstable.c): the misses then overlap. No lock: the shard's slot array and
** its size are read atomically, and a stale pair (a resize in between) only
** makes the prefetch useless, as prefetching never faults. */
void strataCachePrefetch(BlockCache *c, u64 id, u64 off) {
  u32 hash = cacheHash(id, off);
  CacheShard *s = shardFor(c, hash);
  uintptr_t a = (uintptr_t)__atomic_load_n(&s->aSlot, __ATOMIC_RELAXED);
  u32 mask = __atomic_load_n(&s->nSlot, __ATOMIC_RELAXED) - 1;
  __builtin_prefetch((const void *)(a + (uintptr_t)(hash & mask) * sizeof(CacheSlot)));
}

/* Insert for strataCacheInsert (bPin = 1) and strataCacheAdd (bPin = 0).
** Returns the new entry, pinned if bPin, or NULL (out of memory, with
** xFree(pValue) run). A full shard evicts before it inserts (RECYCLING). */
static CacheHandle *cacheInsert(BlockCache *c, u64 id, u64 off, void *pValue, size_t nCharge,
                                void (*xFree)(void *), int bPin) {
  u32 hash = cacheHash(id, off);
  CacheShard *s = shardFor(c, hash);
  CacheHandle *pFree = NULL, *e = NULL;
  void (*xOldFree)(void *) = NULL; /* the value of the victim whose handle e is */
  void *pOldValue = NULL;
  CacheSlot *p;

  pthread_mutex_lock(&s->mutex);
  shardEvict(s, nCharge, &pFree);
  if (pFree) {
    e = pFree;
    pFree = e->pLruNext;
    xOldFree = e->xFree;
    pOldValue = e->pValue;
  } else {
    /* Room to spare: the shard is still filling up. Allocate unlocked. */
    pthread_mutex_unlock(&s->mutex);
    e = strataMalloc(sizeof(CacheHandle));
    if (!e) goto insert_nomem;
    pthread_mutex_lock(&s->mutex);
  }
  e->id = id;
  e->off = off;
  /* Nobody else can see e yet: not in the table, and a recycled victim
  ** had no pins. */
  atomic_store_explicit(&e->state, CACHE_FLAGS | (bPin ? CACHE_PIN : 0), memory_order_relaxed);
  e->hash = hash;
  e->pValue = pValue;
  e->xFree = xFree;
  e->nCharge = nCharge;
  if ((s->nEntry + 1) * 2 > s->nSlot && slotGrow(s) && (s->nEntry + 1) * 8 > (size_t)s->nSlot * 7) {
    /* Cannot grow and too full to probe well; a replacement would still fit,
    ** but failing it too keeps the rule simple and leaves the old value. */
    pthread_mutex_unlock(&s->mutex);
    strataFreeMem(e);
    freeList(pFree);
    if (xOldFree) xOldFree(pOldValue);
    goto insert_nomem;
  }
  p = &s->aSlot[slotFind(s, hash, id, off)];
  if (p->e) {
    entryDetach(s, p->e, &pFree); /* the slot is reused in place */
  } else {
    p->hash = hash;
    p->idLow = (u32)id;
    s->nEntry++;
  }
  p->e = e;
  s->nUsage += nCharge;
  lruAppend(s, e);
  shardEvict(s, 0, &pFree); /* a replacement, a capacity of 0, an unpinned entry too big */
  pthread_mutex_unlock(&s->mutex);
  freeList(pFree);
  if (xOldFree) xOldFree(pOldValue);
  return e;

insert_nomem:
  if (xFree) xFree(pValue);
  strataErr(STRATA_NOMEM, "out of memory (cache entry)");
  return NULL;
}

/* Insert pValue under the key, replacing (detaching) any entry already
** there, and return the new entry pinned. nCharge counts against the
** capacity; xFree(pValue) runs (if xFree is not NULL) once the entry has
** left the cache and is unpinned. Returns NULL, with STRATA_NOMEM set and
** xFree(pValue) already run, if memory for the entry cannot be found. */
CacheHandle *strataCacheInsert(BlockCache *c, u64 id, u64 off, void *pValue, size_t nCharge,
                               void (*xFree)(void *)) {
  return cacheInsert(c, id, off, pValue, nCharge, xFree, 1);
}

/* As strataCacheInsert, but the entry is left unpinned (evictable at once):
** for a caller done with the value, which saves a Release. STRATA_OK, or
** STRATA_NOMEM with xFree(pValue) run. */
int strataCacheAdd(BlockCache *c, u64 id, u64 off, void *pValue, size_t nCharge,
                   void (*xFree)(void *)) {
  return cacheInsert(c, id, off, pValue, nCharge, xFree, 0) ? STRATA_OK : STRATA_NOMEM;
}

/* The value of a pinned entry; valid until the handle is released. */
void *strataCacheValue(CacheHandle *h) { return h->pValue; }

/* Drop one pin. An entry still in the table becomes evictable; one that
** was replaced or erased meanwhile is freed. NULL is a no-op. Takes the
** shard lock only when the last pin of an entry that is off the LRU list
** goes (LOCK-FREE RELEASE). */
void strataCacheRelease(BlockCache *c, CacheHandle *h) {
  CacheShard *s;
  CacheHandle *pFree = NULL;
  u32 st;
  if (!h) return;
  st = atomic_load_explicit(&h->state, memory_order_relaxed);
  while (st >= 2 * CACHE_PIN || (st & CACHE_FLAGS) == CACHE_FLAGS) {
    assert(st >= CACHE_PIN);
    /* Release order: the caller's reads of the value come before whoever
    ** then sees the entry unpinned and frees it. */
    if (atomic_compare_exchange_weak_explicit(&h->state, &st, st - CACHE_PIN, memory_order_release,
                                              memory_order_relaxed)) {
      return;
    }
  }
  s = shardFor(c, h->hash);
  pthread_mutex_lock(&s->mutex);
  st = atomic_fetch_sub_explicit(&h->state, CACHE_PIN, memory_order_acq_rel);
  assert(st >= CACHE_PIN);
  st -= CACHE_PIN;
  if (st < CACHE_PIN) {
    if (!(st & CACHE_IN_TABLE)) {
      s->nUsage -= h->nCharge;
      h->pLruNext = NULL;
      pFree = h;
    } else {
      if (!(st & CACHE_ON_LRU)) { /* eviction took it off while pinned */
        atomic_fetch_or_explicit(&h->state, CACHE_ON_LRU, memory_order_relaxed);
        lruAppend(s, h);
      }
      shardEvict(s, 0, &pFree);
    }
  }
  pthread_mutex_unlock(&s->mutex);
  freeList(pFree);
}

/* Remove the entry for the key, if any. A pinned entry stays valid for its
** holders and is freed by the last Release. */
void strataCacheErase(BlockCache *c, u64 id, u64 off) {
  u32 hash = cacheHash(id, off);
  CacheShard *s = shardFor(c, hash);
  CacheHandle *pFree = NULL;
  u32 i;
  pthread_mutex_lock(&s->mutex);
  i = slotFind(s, hash, id, off);
  if (s->aSlot[i].e) shardRemove(s, i, &pFree);
  pthread_mutex_unlock(&s->mutex);
  freeList(pFree);
}

/* Remove every entry with this id, as Erase does for one. Each shard's slot
** array is scanned once under its lock: a sequential read of 16 bytes per
** slot, dereferencing only entries whose low id bits match. */
void strataCacheEraseId(BlockCache *c, u64 id) {
  int iShard;
  for (iShard = 0; iShard < c->nShard; iShard++) {
    CacheShard *s = &c->aShard[iShard];
    CacheHandle *pFree = NULL;
    u32 i = 0;
    pthread_mutex_lock(&s->mutex);
    while (i < s->nSlot) {
      CacheSlot *p = &s->aSlot[i];
      if (p->e && p->idLow == (u32)id && p->e->id == id) {
        /* Removal may shift a later entry into slot i: look at it again.
        ** Entries shifted from the (already scanned) start of the array
        ** into later slots were kept there, so nothing is missed. */
        shardRemove(s, i, &pFree);
      } else {
        i++;
      }
    }
    pthread_mutex_unlock(&s->mutex);
    freeList(pFree);
  }
}

/* The memory an entry takes beyond its value: the handle with its
** allocator header, and up to four slots (the table doubles when half full),
** three on average; plus the header of the value's own allocation. A cache
** of 4 KiB blocks that did not count these would hold ~3.5% more memory
** than its capacity. */
size_t strataCacheEntryOverhead(void) {
  return sizeof(CacheHandle) + 16 + 3 * sizeof(CacheSlot) + 16;
}

/* Sum of the charges of entries not yet freed (pinned ones included). */
size_t strataCacheUsage(BlockCache *c) {
  size_t n = 0;
  int i;
  for (i = 0; i < c->nShard; i++) {
    CacheShard *s = &c->aShard[i];
    pthread_mutex_lock(&s->mutex);
    n += s->nUsage;
    pthread_mutex_unlock(&s->mutex);
  }
  return n;
}

/* A fresh id, never returned before by this cache and above any file number. */
u64 strataCacheNewId(BlockCache *c) {
  return atomic_fetch_add_explicit(&c->iNextId, 1, memory_order_relaxed);
}

/* Hits and misses of strataCacheLookup since the cache was created. Either
** pointer may be NULL. */
void strataCacheCounters(BlockCache *c, u64 *pnHit, u64 *pnMiss) {
  u64 nHit = 0, nMiss = 0;
  int i;
  for (i = 0; i < c->nShard; i++) {
    CacheShard *s = &c->aShard[i];
    pthread_mutex_lock(&s->mutex);
    nHit += s->nHit;
    nMiss += s->nMiss;
    pthread_mutex_unlock(&s->mutex);
  }
  if (pnHit) *pnHit = nHit;
  if (pnMiss) *pnMiss = nMiss;
}

/* Number of entries a lookup can find. */
size_t strataCacheCount(BlockCache *c) {
  size_t n = 0;
  int i;
  for (i = 0; i < c->nShard; i++) {
    CacheShard *s = &c->aShard[i];
    pthread_mutex_lock(&s->mutex);
    n += s->nEntry;
    pthread_mutex_unlock(&s->mutex);
  }
  return n;
}
