/*
** memtable.c -- the memtable: an arena-allocated skiplist of internal keys.
**
** Writes land here (after the WAL) and stay until the memtable is flushed to
** an L0 sstable. Reads and scans of recent data come here first, so lookups
** and iteration are the hot paths: they take no locks and allocate nothing.
**
** ARENA
**
** Every entry is one allocation from an arena the memtable owns: blocks
** carved front to back, 8-byte aligned. The first block is ARENA_BLOCK
** bytes and each next one twice the last, up to ARENA_BLOCK_MAX: a small
** memtable (a transaction's index) stays small, and a full write buffer
** lives mostly in blocks of ARENA_MAP_MIN bytes or more, which are
** mappings of their own (strataMapAlloc): freeing a flushed memtable gives
** its memory back to the system instead of leaving holes in the heap that
** the next memtable, growing beside other allocations, cannot reuse (the
** C library's own threshold for mapping moves, so it is not relied on). An entry larger
** than ARENA_LARGE gets a block of its own so that it neither wastes the
** rest of the current block nor forces a huge block size. Nothing is freed
** before the whole memtable is, so allocation is a pointer bump and entries
** never move: pointers into the arena (keys, values) stay valid for as long
** as a reference to the memtable is held. strataMemtableMemoryUsage reports
** the bytes of all blocks (headers included); the caller compares it with
** its write buffer size to decide when the memtable is full.
**
** NODE LAYOUT
**
** A node of height h is laid out as
**
**     next[h-1] ... next[1] next[0] | nKey (u32) nVal (u32) | ikey | value
**                                   ^ MemNode *
**
** The tower of next pointers sits *before* the node header, addressed
** backwards from it, so the header, the start of the key and the level-0
** link (the ones every search step and every Next touch) usually share a
** cache line, and no per-node height or key offset is needed. ikey is the
** full internal key (user key + 8-byte trailer, see strataInt.h); nKey
** counts the trailer. Lengths are 32-bit: keys up to 64 KiB and values up
** to 1 GiB (the engine's limits) fit with room to spare; anything beyond
** 4 GiB is STRATA_TOOBIG.
**
** The head node has the maximum height and no key; it lives inside the
** Memtable struct (aHeadNext followed by head), laid out the same way.
**
** SKIPLIST
**
** At most MEM_MAX_HEIGHT (12) levels; a node reaches each further level with
** probability 1/4, which keeps searches at about log4(n) * 3 steps with 1.33
** pointers per node on average (12 levels serve 4^12 = 16M entries). Heights
** come from a per-memtable xorshift generator seeded with a constant, so a
** given sequence of inserts always builds the same list.
**
** Comparisons never materialize an internal key: the target is passed as
** (user key, trailer), user keys are compared first, then trailers
** descending. A search computes the target's first 8 key bytes as one
** big-endian integer (its window) once; a step loads a node's window and
** compares two integers, which decides almost every step, and only equal
** windows go on to compare the remaining bytes. Both are forced inline:
** left to itself the compiler made the comparison a call, which cost more
** than the comparison. A search remembers the node it last found to be >=
** the target, so it does not compare it again on the way down.
**
** SEARCH INDEX
**
** Even so, a search of a large memtable is a chain of dependent cache
** misses, about three nodes per level from the top level down: the largest
** single cost of a short range read. So the writer keeps beside the list a
** dense array of the nodes of one level (iLevel) in order, with their
** windows: a reader's search binary-searches the windows (a few lines of one
** array) for the last node whose window is below the target's, which is
** below the target, and descends the list from that node at iLevel, skipping
** every level above. iLevel is chosen by the entry count so that the array
** holds a few hundred to MEM_INDEX_MAX nodes; at 60k entries (a full 8 MiB
** memtable of 100-byte rows) that skips about half the steps. The writer
** rebuilds it, in the arena, each time the memtable has grown by half since
** the last build (from MEM_INDEX_MIN entries on), and publishes it with a
** release store; all the arrays a memtable ever built take about 1.5% of
** it. An older array stays
** valid (the arena frees nothing before the memtable): entries are never
** removed, and any node below the target is a correct place to start, so a
** node missing from a stale array only costs a few more steps at iLevel.
** The writer's own searches (inserts) do not use it: they need the
** predecessors at every level.
**
** WRITER SPLICE
**
** The writer remembers, per level, the last node <= the key it added last
** (aSplice). If the next key is larger and its place is within the first
** MEM_SPLICE_CLIMB levels of that splice, the insert starts there instead
** of at the head: ascending keys (an integer primary key, a bulk load, a
** sequential fill) then cost one or two comparisons with nodes still in
** cache instead of a full O(log n) search. An insert rewrites the splice
** only at the levels it searched or linked the new node into: above them
** the splice already holds the predecessors. Other keys pay at most a few
** comparisons with those cached nodes before the usual search. Six levels
** (4^6 = 4096 nodes per interval) let a sorted batch of a thousand keys
** into a memtable of a hundred thousand find every place from the splice;
** with four, a quarter of them fell back to the full search.
**
** CONCURRENCY
**
** One writer at a time (the caller serializes them); any number of readers
** run concurrently with it without locks. The writer fills a node completely
** (key, value, its own next pointers) before it publishes it with release
** stores into its predecessors, level 0 first; readers load next pointers
** with acquire, so a node a reader reaches is always fully initialized.
** Node contents are never modified after publication. The current list
** height is a relaxed atomic: a reader that sees a new height before the
** head links at that level just finds NULL there and descends. The entry
** count and arena usage are relaxed atomics so other threads may read them.
** The reference count is atomic; the last Unref frees everything.
*/
#include "strataInt.h"

#include <assert.h>

#define MEM_MAX_HEIGHT 12
#define MEM_BRANCH_BITS 2       /* next level with probability 1 / 2^MEM_BRANCH_BITS */
#define MEM_SPLICE_CLIMB 6      /* levels the writer climbs from its splice before searching */
#define MEM_INDEX_MIN 4096      /* entries from which the writer keeps a SEARCH INDEX */
#define MEM_INDEX_MAX 2048      /* nodes the index aims to hold at most */
#define ARENA_BLOCK (64 * 1024) /* bytes of the first ordinary block, header included */
#define ARENA_BLOCK_MAX (1024 * 1024) /* ordinary blocks double up to this */
#define ARENA_MAP_MIN (256 * 1024)     /* blocks this large are mappings of their own */
#define ARENA_LARGE (ARENA_BLOCK / 4) /* larger entries get their own block */
#define ARENA_ALIGN 8

typedef struct ArenaBlock ArenaBlock;
typedef struct MemIter MemIter;
typedef struct MemNode MemNode;
typedef struct MemIndex MemIndex;
typedef _Atomic(MemNode *) MemLink;

/* The SEARCH INDEX: the nodes of level iLevel in order, with their windows. */
struct MemIndex {
  u32 n;
  int iLevel;
  const u64 *aWin;
  MemNode *const *aNode;
};

struct MemNode {
  u32 nKey; /* bytes of internal key (trailer included) after this header */
  u32 nVal; /* bytes of value after the key */
};

/* A block of the arena; its data follows the header. */
struct ArenaBlock {
  ArenaBlock *pNext; /* the previously allocated block */
  size_t nByte;      /* bytes of this allocation, header included */
};

struct Memtable {
  /* Read by every search. aHeadNext must immediately precede head: the
  ** head's tower is addressed backwards from it like any node's. */
  MemLink aHeadNext[MEM_MAX_HEIGHT]; /* aHeadNext[MEM_MAX_HEIGHT-1-i] is level i */
  MemNode head;
  _Atomic int nHeight; /* levels in use, 1..MEM_MAX_HEIGHT */
  _Atomic(const MemIndex *) pIndex; /* the SEARCH INDEX, or NULL */
  _Atomic int nRef;
  /* Written on every Add: a cache line's worth of padding keeps these off
  ** the lines that readers share (malloc aligns only to 16, so _Alignas
  ** would promise more than the allocator gives). */
  u8 aPad[64];
  _Atomic u64 nEntry;
  _Atomic size_t nUsage;            /* bytes of all arena blocks */
  _Atomic size_t nUnused;           /* of which the free tail of the current block */
  _Atomic u64 *aBloom;              /* optional filter of user keys (see BLOOM) */
  u32 nBloomWords;
  u64 rng;                          /* xorshift state for node heights */
  MemNode *aSplice[MEM_MAX_HEIGHT]; /* per level, the last node <= the last key added */
  u64 nIndexAt;                     /* entry count at which to rebuild the index */
  u8 *pFree;                        /* unused part of the current block */
  size_t nFree;
  size_t nBlockNext;                /* size of the next ordinary block (0: ARENA_BLOCK) */
  ArenaBlock *pBlocks; /* every block, newest first */
};

_Static_assert(offsetof(Memtable, head) == sizeof(MemLink) * MEM_MAX_HEIGHT,
               "the head tower must sit right before the head node");
_Static_assert(sizeof(MemNode) % ARENA_ALIGN == 0, "keys must start aligned");
_Static_assert(sizeof(ArenaBlock) % ARENA_ALIGN == 0, "block data must start aligned");

/* Nodes a backward step may record (see ITERATOR). With it the iterator
** stays below 1 KiB, which malloc serves from its per-thread cache: an
** iterator is made per statement. */
#define MEM_BACK_MAX 112
/* Highest level a backward step searches down to before walking level 0. */
#define MEM_BACK_LEVEL 3

struct MemIter {
  StrataIter base;
  Memtable *pMem;
  MemNode *pNode; /* current entry, NULL when not valid */
  int nBack;      /* nodes in aBack */
  int iBackLevel; /* level the next backward search stops at */
  MemNode *aBack[MEM_BACK_MAX]; /* nodes before pNode, in order (ITERATOR) */
};
_Static_assert(sizeof(MemIter) <= 1024, "see MEM_BACK_MAX");

/* ARENA */

/* Allocate a block with nData usable bytes and link it. NULL on NOMEM. */
static u8 *arenaNewBlock(Memtable *p, size_t nData) {
  ArenaBlock *pBlk;
  size_t nByte;
  if (nData > SIZE_MAX - sizeof(ArenaBlock)) return NULL;
  nByte = sizeof(ArenaBlock) + nData;
  pBlk = nByte >= ARENA_MAP_MIN ? strataMapAlloc(nByte) : strataMalloc(nByte);
  if (!pBlk) return NULL;
  pBlk->pNext = p->pBlocks;
  pBlk->nByte = nByte;
  p->pBlocks = pBlk;
  atomic_store_explicit(&p->nUsage, atomic_load_explicit(&p->nUsage, memory_order_relaxed) + nByte,
                        memory_order_relaxed);
  return (u8 *)(pBlk + 1);
}

static void *arenaAllocSlow(Memtable *p, size_t n) {
  u8 *pData;
  size_t nBlock = p->nBlockNext ? p->nBlockNext : ARENA_BLOCK;
  if (n > ARENA_LARGE) return arenaNewBlock(p, n); /* keep the current block's tail */
  pData = arenaNewBlock(p, nBlock - sizeof(ArenaBlock));
  if (!pData) return NULL;
  if (nBlock < ARENA_BLOCK_MAX) p->nBlockNext = nBlock * 2;
  p->pFree = pData + n;
  p->nFree = nBlock - sizeof(ArenaBlock) - n;
  return pData;
}

/* n bytes, ARENA_ALIGN-aligned, valid until the memtable is freed. NULL on
** NOMEM (the arena is unchanged then). Writer only. */
static inline void *arenaAlloc(Memtable *p, size_t n) {
  u8 *pRet;
  if (n > SIZE_MAX - ARENA_ALIGN) return NULL;
  n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (UNLIKELY(n > p->nFree)) return arenaAllocSlow(p, n);
  pRet = p->pFree;
  p->pFree += n;
  p->nFree -= n;
  return pRet;
}

static void arenaFree(Memtable *p) {
  ArenaBlock *pBlk = p->pBlocks;
  while (pBlk) {
    ArenaBlock *pNext = pBlk->pNext;
    if (pBlk->nByte >= ARENA_MAP_MIN) {
      strataMapFree(pBlk, pBlk->nByte);
    } else {
      strataFreeMem(pBlk);
    }
    pBlk = pNext;
  }
  p->pBlocks = NULL;
}

/* NODES */

/* The level-i link of node x (which has more than i levels). */
static inline MemLink *nodeLink(MemNode *x, int i) {
  return (MemLink *)(void *)x - 1 - i;
}

static inline MemNode *nodeNext(MemNode *x, int i) {
  return atomic_load_explicit(nodeLink(x, i), memory_order_acquire);
}

static inline const u8 *nodeKey(const MemNode *x) {
  return (const u8 *)(x + 1);
}

/* Start loading node x (its header, key and value) into the cache. Nodes
** sit in the arena in insertion order, not key order, so a scan in key
** order misses the cache at every node; fetching two nodes ahead while
** the caller works on the current one (a flush builds blocks, a commit
** copies the entry) hides most of that wait. */
static inline void nodePrefetchHead(const MemNode *x) {
  if (x) __builtin_prefetch(x);
}

static inline void nodePrefetch(const MemNode *x) {
  if (x) {
    __builtin_prefetch(x);
    __builtin_prefetch((const u8 *)x + 64);
    __builtin_prefetch((const u8 *)x + 128);
  }
}

/* A search target: an internal key given as (user key, trailer), with the
** user key's first 8 bytes as a big-endian integer (strataKeyWindow). Most
** steps of a search are decided by that window alone: one load and one
** integer comparison, instead of a byte comparison of the keys. */
typedef struct MemTarget {
  const u8 *pUkey;
  size_t nUkey;
  u64 window;
  u64 trailer;
} MemTarget;

static inline void targetInit(MemTarget *t, const u8 *pUkey, size_t nUkey, u64 trailer) {
  t->pUkey = pUkey;
  t->nUkey = nUkey;
  t->window = strataKeyWindow(pUkey, nUkey, 0);
  t->trailer = trailer;
}

/* The window of node x's user key (as targetInit computes a target's). */
static inline __attribute__((always_inline)) u64 nodeWindow(const MemNode *x) {
  const u8 *a = nodeKey(x);
  size_t na = x->nKey - STRATA_TRAILER;
  return LIKELY(na >= 8) ? __builtin_bswap64(strataGet64(a)) : strataKeyWindow(a, na, 0);
}

/* nodeCompare for keys with equal windows: the rest of the user keys, then
** the trailers. */
static inline __attribute__((always_inline)) int nodeCompareTail(const MemNode *x,
                                                                 const MemTarget *t) {
  const u8 *a = nodeKey(x);
  size_t na = x->nKey - STRATA_TRAILER;
  u64 ta;
  int c;
  /* Equal windows: equal first 8 bytes, unless a key is shorter than that. */
  if (na >= 8 && t->nUkey >= 8) {
    c = strataUkeyCompare(a + 8, na - 8, t->pUkey + 8, t->nUkey - 8);
  } else {
    c = strataUkeyCompare(a, na, t->pUkey, t->nUkey);
  }
  if (c) return c;
  ta = strataGet64(a + na);
  return ta > t->trailer ? -1 : (ta < t->trailer ? 1 : 0);
}

/* Compare node x's internal key with the target: negative if x sorts first,
** 0 if equal, positive if x sorts after. */
static inline __attribute__((always_inline)) int nodeCompare(const MemNode *x,
                                                             const MemTarget *t) {
  u64 w = nodeWindow(x);
  if (w != t->window) return w < t->window ? -1 : 1;
  return nodeCompareTail(x, t);
}

static int randomHeight(Memtable *p) {
  u64 x = p->rng;
  int h = 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  p->rng = x;
  x *= 0x2545F4914F6CDD1DULL;
  x >>= 32; /* the high bits of xorshift64* are the good ones */
  while (h < MEM_MAX_HEIGHT && (x & ((1u << MEM_BRANCH_BITS) - 1)) == 0) {
    h++;
    x >>= MEM_BRANCH_BITS;
  }
  return h;
}


/* Where a reader's search may start (SEARCH INDEX): if the index has a node
** whose window is below the target's, and its level is at least iStop (the
** level the caller must pass through), *px becomes that node and *pi its
** level. Otherwise both are left as they are (the head, the top level). */
static inline void indexStart(Memtable *p, const MemTarget *t, int iStop, MemNode **px, int *pi) {
  const MemIndex *pIx = atomic_load_explicit(&p->pIndex, memory_order_acquire);
  const u64 *a;
  u32 lo, n;
  if (!pIx || pIx->iLevel < iStop || pIx->iLevel > *pi) return;
  /* lo: the number of windows below the target's (branch-free halving). */
  a = pIx->aWin;
  lo = 0;
  n = pIx->n;
  while (n > 1) {
    u32 half = n / 2;
    lo = a[lo + half - 1] < t->window ? lo + half : lo;
    n -= half;
  }
  if (n == 1 && a[lo] < t->window) lo++;
  if (lo == 0) return;
  *px = pIx->aNode[lo - 1];
  *pi = pIx->iLevel;
}

/* Writer only: build the SEARCH INDEX anew from the list as it is, and
** publish it. Out of arena memory just keeps the old one. */
static void indexBuild(Memtable *p) {
  u64 nEntry = atomic_load_explicit(&p->nEntry, memory_order_relaxed);
  int nHeight = atomic_load_explicit(&p->nHeight, memory_order_relaxed);
  int iLevel = 0;
  u64 nWant = nEntry, nCap;
  u32 n = 0;
  u64 *aWin;
  MemNode **aNode;
  MemIndex *pIx;
  MemNode *x;
  p->nIndexAt = nEntry + nEntry / 2;
  /* About nEntry / 4^i nodes reach level i. */
  while (nWant > MEM_INDEX_MAX && iLevel + 1 < nHeight) {
    iLevel++;
    nWant >>= MEM_BRANCH_BITS;
  }
  if (iLevel == 0) return; /* nothing to skip */
  nCap = nWant + nWant / 4 + 64; /* level counts stray little from n / 4^i */
  pIx = arenaAlloc(p, sizeof(MemIndex) + nCap * (sizeof(u64) + sizeof(MemNode *)));
  if (!pIx) return;
  aWin = (u64 *)(void *)(pIx + 1);
  aNode = (MemNode **)(void *)(aWin + nCap);
  for (x = nodeNext(&p->head, iLevel); x; x = nodeNext(x, iLevel)) {
    if (n == nCap) return; /* far more than expected: keep the old index */
    aWin[n] = nodeWindow(x);
    aNode[n++] = x;
  }
  pIx->n = n;
  pIx->iLevel = iLevel;
  pIx->aWin = aWin;
  pIx->aNode = aNode;
  atomic_store_explicit(&p->pIndex, pIx, memory_order_release);
}

/* The first node >= the target, or NULL if there is none. If aPrev is not
** NULL, aPrev[i] is set to the last node < the target at level i, for every
** level below the current height. */
static MemNode *searchGe(Memtable *p, const MemTarget *t, MemNode **aPrev) {
  MemNode *x = &p->head;
  MemNode *pKnownGe = NULL; /* already found >= target: no need to compare again */
  int i = atomic_load_explicit(&p->nHeight, memory_order_relaxed) - 1;
  if (!aPrev) indexStart(p, t, 0, &x, &i);
  for (;;) {
    MemNode *pNext = nodeNext(x, i);
    if (pNext && pNext != pKnownGe && nodeCompare(pNext, t) < 0) {
      x = pNext;
      continue;
    }
    pKnownGe = pNext;
    if (aPrev) aPrev[i] = x;
    if (i == 0) return pNext;
    i--;
  }
}

/* searchGe for (pUkey/nUkey, trailer). */
static MemNode *findGreaterOrEqual(Memtable *p, const u8 *pUkey, size_t nUkey, u64 trailer,
                                   MemNode **aPrev) {
  MemTarget t;
  targetInit(&t, pUkey, nUkey, trailer);
  return searchGe(p, &t, aPrev);
}

/* The last node of level iStop (or of the highest level, if that is lower)
** that is < (pUkey/nUkey, trailer), or the head if there is none. */
static MemNode *findLessThan(Memtable *p, const u8 *pUkey, size_t nUkey, u64 trailer, int iStop) {
  MemNode *x = &p->head;
  MemNode *pKnownGe = NULL;
  int i = atomic_load_explicit(&p->nHeight, memory_order_relaxed) - 1;
  MemTarget t;
  targetInit(&t, pUkey, nUkey, trailer);
  indexStart(p, &t, iStop, &x, &i);
  for (;;) {
    MemNode *pNext = nodeNext(x, i);
    if (pNext && pNext != pKnownGe && nodeCompare(pNext, &t) < 0) {
      x = pNext;
      continue;
    }
    pKnownGe = pNext;
    if (i <= iStop) return x;
    i--;
  }
}

/* The last node, or the head if the list is empty. */
static MemNode *findLast(Memtable *p) {
  MemNode *x = &p->head;
  int i = atomic_load_explicit(&p->nHeight, memory_order_relaxed) - 1;
  for (;;) {
    MemNode *pNext = nodeNext(x, i);
    if (pNext) {
      x = pNext;
      continue;
    }
    if (i == 0) return x;
    i--;
  }
}

/* Writer only: find where the target goes from the splice left by the
** previous insert (see WRITER SPLICE), without a search from the top.
** Returns the number n of levels it searched, with aPrev[i] (i < n) the
** last node < the target at level i; at every level from n up, the splice
** node is that node. Returns -1, with aPrev untouched, if the target is not
** a little after the previous key. */
static int spliceFind(Memtable *p, const MemTarget *t, MemNode **aPrev) {
  MemNode *x = p->aSplice[0];
  int nHeight = atomic_load_explicit(&p->nHeight, memory_order_relaxed);
  int iLevel, i;
  if (x != &p->head && nodeCompare(x, t) >= 0) return -1;
  /* The lowest level whose splice interval holds the key; every level above
  ** holds it too, since their next nodes are no closer to the previous key. */
  for (iLevel = 0;; iLevel++) {
    MemNode *pNext;
    if (iLevel == MEM_SPLICE_CLIMB || iLevel == nHeight) return -1;
    pNext = atomic_load_explicit(nodeLink(p->aSplice[iLevel], iLevel), memory_order_relaxed);
    if (!pNext || nodeCompare(pNext, t) >= 0) break;
  }
  x = p->aSplice[iLevel];
  for (i = iLevel - 1; i >= 0; i--) {
    for (;;) {
      MemNode *pNext = atomic_load_explicit(nodeLink(x, i), memory_order_relaxed);
      /* If the walk descends at x, the next level starts with x's successor
      ** there: fetch it alongside pNext, so the two misses overlap. */
      if (i > 0) nodePrefetchHead(atomic_load_explicit(nodeLink(x, i - 1), memory_order_relaxed));
      if (!pNext || nodeCompare(pNext, t) >= 0) break;
      x = pNext;
    }
    aPrev[i] = x;
  }
  return iLevel;
}

/* MEMTABLE */

/* A new empty memtable with one reference. STRATA_NOMEM if the struct
** cannot be allocated (*ppMem NULL then). The arena's first block is
** allocated by the first Add. */
int strataMemtableNew(Memtable **ppMem) {
  Memtable *p = strataMallocZero(sizeof(Memtable));
  *ppMem = NULL;
  if (!p) return strataErr(STRATA_NOMEM, "out of memory (memtable)");
  for (int i = 0; i < MEM_MAX_HEIGHT; i++) {
    atomic_init(&p->aHeadNext[i], NULL);
    p->aSplice[i] = &p->head;
  }
  atomic_init(&p->nHeight, 1);
  atomic_init(&p->nRef, 1);
  atomic_init(&p->nEntry, 0);
  atomic_init(&p->nUsage, 0);
  atomic_init(&p->nUnused, 0);
  atomic_init(&p->pIndex, NULL);
  p->nIndexAt = MEM_INDEX_MIN;
  p->rng = 0x9E3779B97F4A7C15ULL;
  *ppMem = p;
  return STRATA_OK;
}

/* Take a reference. The caller must already hold one. */
void strataMemtableRef(Memtable *p) {
  atomic_fetch_add_explicit(&p->nRef, 1, memory_order_relaxed);
}

/* Drop a reference; the last one frees the memtable and its arena. Accepts
** NULL. Pointers into the memtable must not be used after the caller's
** reference is gone. */
void strataMemtableUnref(Memtable *p) {
  if (!p) return;
  /* acq_rel: every use by other holders happens before the free. */
  if (atomic_fetch_sub_explicit(&p->nRef, 1, memory_order_acq_rel) == 1) {
    arenaFree(p);
    strataFreeMem((void *)p->aBloom);
    strataFreeMem(p);
  }
}

/* BLOOM
** A point lookup of a key that is not in the memtable still walks the whole
** skiplist, a dozen cache misses. An optional filter of the user keys (two
** bits in one 64-bit word per key) answers most such lookups at once. The
** writer sets a key's bits before the entry is linked, and the database
** publishes its sequence number after that, so a reader that may see an
** entry also sees its bits. */
static inline u64 memBloomHash(const u8 *pKey, size_t nKey) { return strataKeyHash64(pKey, nKey); }

int strataMemtableEnableBloom(Memtable *p, size_t nBits) {
  u32 nWords = (u32)((nBits + 63) / 64);
  if (nWords == 0 || p->aBloom || atomic_load(&p->nEntry) != 0) return STRATA_OK;
  p->aBloom = strataMallocZero(sizeof(u64) * nWords);
  if (!p->aBloom) return strataErr(STRATA_NOMEM, "out of memory");
  p->nBloomWords = nWords;
  return STRATA_OK;
}

/* The word of hash h: its high 32 bits scaled to the word count (a multiply
** instead of a division on every lookup). The bit positions use the low
** 12 bits. */
static inline u32 memBloomWord(const Memtable *p, u64 h) {
  return (u32)(((h >> 32) * (u64)p->nBloomWords) >> 32);
}

static inline void memBloomAdd(Memtable *p, const u8 *pKey, size_t nKey) {
  u64 h = memBloomHash(pKey, nKey);
  _Atomic u64 *w = &p->aBloom[memBloomWord(p, h)];
  u64 bits = ((u64)1 << (h & 63)) | ((u64)1 << ((h >> 6) & 63));
  if ((atomic_load_explicit(w, memory_order_relaxed) & bits) != bits) {
    atomic_fetch_or_explicit(w, bits, memory_order_relaxed);
  }
}

static inline int memBloomMayContain(Memtable *p, const u8 *pKey, size_t nKey) {
  u64 h = memBloomHash(pKey, nKey);
  u64 bits = ((u64)1 << (h & 63)) | ((u64)1 << ((h >> 6) & 63));
  return (atomic_load_explicit(&p->aBloom[memBloomWord(p, h)], memory_order_relaxed) &
          bits) == bits;
}

/* Insert (pKey, seq, type) -> pVal. Writer only (callers serialize Adds);
** concurrent readers see the entry once it is linked at level 0. Returns
** STRATA_NOMEM if the arena cannot grow and STRATA_TOOBIG if a length does
** not fit 32 bits; on error the memtable is unchanged. */
int strataMemtableAdd(Memtable *p, u64 seq, int type, const u8 *pKey, size_t nKey, const u8 *pVal,
                      size_t nVal) {
  MemNode *aPrev[MEM_MAX_HEIGHT];
  MemNode *x;
  MemTarget t;
  u64 trailer;
  size_t nTower, nByte;
  u8 *pMem, *pDst;
  int h, nHeight, nFound;

  assert(seq <= STRATA_MAX_SEQ);
  assert(type == STRATA_TYPE_DELETE || type == STRATA_TYPE_VALUE);
  if (UNLIKELY(nKey > UINT32_MAX - STRATA_TRAILER || nVal > UINT32_MAX)) {
    return strataErr(STRATA_TOOBIG, "memtable entry too big (key %zu, value %zu bytes)", nKey,
                     nVal);
  }
  trailer = strataPackTrailer(seq, type);
  h = randomHeight(p);
  nTower = (size_t)h * sizeof(MemLink);
  nByte = nTower + sizeof(MemNode) + nKey + STRATA_TRAILER + nVal; /* nKey, nVal < 4 GiB */
  pMem = arenaAlloc(p, nByte);
  if (UNLIKELY(!pMem)) return strataErr(STRATA_NOMEM, "out of memory (memtable, %zu bytes)", nByte);

  x = (MemNode *)(void *)(pMem + nTower);
  x->nKey = (u32)(nKey + STRATA_TRAILER);
  x->nVal = (u32)nVal;
  pDst = (u8 *)(x + 1);
  if (nKey) memcpy(pDst, pKey, nKey);
  strataPut64(pDst + nKey, trailer);
  if (nVal) memcpy(pDst + nKey + STRATA_TRAILER, pVal, nVal);

  nHeight = atomic_load_explicit(&p->nHeight, memory_order_relaxed);
  targetInit(&t, pKey, nKey, trailer);
  nFound = spliceFind(p, &t, aPrev);
  if (nFound < 0) {
    MemNode *pGe = searchGe(p, &t, aPrev);
    (void)pGe;
    assert(pGe == NULL || nodeCompare(pGe, &t) != 0); /* no duplicates */
    nFound = nHeight;
  }
  /* Above the levels searched the splice holds the predecessors (the head
  ** above the current height): only the levels x joins need them. */
  for (int i = nFound; i < h; i++) aPrev[i] = p->aSplice[i];
  if (h > nHeight) atomic_store_explicit(&p->nHeight, h, memory_order_relaxed);
  /* x's link at level i is written before the release store that makes x
  ** reachable at level i, and a reader follows x's links only at levels
  ** where it reached x, so x's own links can be relaxed. Bottom-up, so x is
  ** never reachable at level i > 0 before it is at level 0. */
  if (p->aBloom) memBloomAdd(p, pKey, nKey); /* before the entry is reachable */
  for (int i = 0; i < h; i++) {
    atomic_store_explicit(nodeLink(x, i),
                          atomic_load_explicit(nodeLink(aPrev[i], i), memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(nodeLink(aPrev[i], i), x, memory_order_release);
  }
  /* The splice changes only where x was linked or a level was searched. */
  for (int i = 0; i < h; i++) p->aSplice[i] = x;
  for (int i = h; i < nFound; i++) p->aSplice[i] = aPrev[i];
  atomic_store_explicit(&p->nEntry, atomic_load_explicit(&p->nEntry, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  if (UNLIKELY(atomic_load_explicit(&p->nEntry, memory_order_relaxed) >= p->nIndexAt)) {
    indexBuild(p);
  }
  atomic_store_explicit(&p->nUnused, p->nFree, memory_order_relaxed);
  return STRATA_OK;
}

u32 strataMemtableIndexSize(const Memtable *p) {
  const MemIndex *pIx = atomic_load_explicit(&p->pIndex, memory_order_acquire);
  return pIx ? pIx->n : 0;
}

/* Add every entry of pSrc to p in key order, its sequence number s becoming
** s - seqFrom + seqTo (every entry of pSrc has s >= seqFrom, and the results
** stay within STRATA_MAX_SEQ). Ascending keys let the writer splice place
** each entry with a few comparisons near the previous one, where entries
** in any other order each cost a full search. Writer only on p; pSrc must
** not change meanwhile. Errors as Add; after one, p holds the entries added
** before it (the caller treats that as fatal, as a failed Add of a batch). */
int strataMemtableAddAll(Memtable *p, Memtable *pSrc, u64 seqFrom, u64 seqTo) {
  MemNode *x;
  for (x = nodeNext(&pSrc->head, 0); x; x = nodeNext(x, 0)) {
    const u8 *pKey = nodeKey(x);
    MemNode *pNext = nodeNext(x, 0); /* usually in cache: prefetched a step ago */
    if (pNext) nodePrefetch(nodeNext(pNext, 0));
    size_t nKey = x->nKey - STRATA_TRAILER;
    u64 trailer = strataGet64(pKey + nKey);
    int rc;
    assert((trailer >> 8) >= seqFrom);
    rc = strataMemtableAdd(p, (trailer >> 8) - seqFrom + seqTo, (int)(trailer & 0xff), pKey, nKey,
                           pKey + x->nKey, x->nVal);
    if (rc) return rc;
  }
  return STRATA_OK;
}

/* The newest entry for user key pKey with sequence <= seq: 1 with *pType
** and, for a value, *ppVal and *pnVal pointing into the arena; 0 (with *ppVal
** NULL, *pnVal 0, *pType untouched) if there is none. A deletion gives
** *ppVal NULL and *pnVal 0. Never allocates; safe concurrently with Add. */
int strataMemtableGet(Memtable *p, const u8 *pKey, size_t nKey, u64 seq, int *pType,
                      const u8 **ppVal, size_t *pnVal) {
  MemNode *x;
  u64 trailer;
  if (p->aBloom && !memBloomMayContain(p, pKey, nKey)) {
    *ppVal = NULL;
    *pnVal = 0;
    return 0;
  }
  if (seq > STRATA_MAX_SEQ) seq = STRATA_MAX_SEQ;
  /* (seq, VALUE) is the largest trailer with sequence seq, so the first entry
  ** >= it is the newest version of the key that is visible at seq. */
  trailer = strataPackTrailer(seq, STRATA_TYPE_VALUE);
  x = findGreaterOrEqual(p, pKey, nKey, trailer, NULL);
  *ppVal = NULL;
  *pnVal = 0;
  if (x && x->nKey - STRATA_TRAILER == nKey && (nKey == 0 || memcmp(nodeKey(x), pKey, nKey) == 0)) {
    int type = (int)(strataGet64(nodeKey(x) + nKey) & 0xff);
    *pType = type;
    if (type == STRATA_TYPE_VALUE) {
      *ppVal = nodeKey(x) + x->nKey;
      *pnVal = x->nVal;
    }
    return 1;
  }
  return 0;
}

/* Bytes the memtable holds (any thread): arena bytes in use, and its key
** filter, so that a write buffer with its filter stays within the size the
** caller compares this with. */
size_t strataMemtableMemoryUsage(const Memtable *p) {
  /* Bytes in use, not blocks allocated: a small write buffer must not look
  ** full after its first entry just because a block is 64 KiB. */
  return atomic_load_explicit(&p->nUsage, memory_order_relaxed) -
         atomic_load_explicit(&p->nUnused, memory_order_relaxed) + sizeof(u64) * p->nBloomWords;
}

/* Entries added so far (any thread). */
u64 strataMemtableCount(const Memtable *p) {
  return atomic_load_explicit(&p->nEntry, memory_order_relaxed);
}

/* ITERATOR
** The current entry is a node pointer; the base fields point into the
** arena, so they stay valid while the iterator (and its reference) lives.
**
** Nodes have no back links, so a step back searches for the last node
** before the current one. Rather than search from the head at every step,
** it stops the search at level iBackLevel, walks level 0 from the node it
** found up to the current one, and records the nodes passed in aBack (the
** last MEM_BACK_MAX of them): the following steps back pop them, 4^level
** of them on average per search. A recorded node y is used only if its
** level-0 successor is still the current node, which proves it is the
** predecessor now (nodes are never removed); a node inserted since the
** walk breaks that link and the step searches again. Each search after
** the first of a backward run stops one level higher, up to MEM_BACK_LEVEL
** (64 nodes per search on average), so a single step back after a seek
** walks few. */

static void iterSet(MemIter *pIter, MemNode *x) {
  StrataIter *b = &pIter->base;
  pIter->pNode = x;
  if (x) {
    MemNode *pNext = nodeNext(x, 0); /* usually in cache: prefetched a step ago */
    if (pNext) nodePrefetch(nodeNext(pNext, 0));
    b->bValid = 1;
    b->pKey = nodeKey(x);
    b->nKey = x->nKey;
    b->pVal = b->pKey + x->nKey;
    b->nVal = x->nVal;
  } else {
    b->bValid = 0;
    b->pKey = b->pVal = NULL;
    b->nKey = b->nVal = 0;
  }
}

/* A positioning other than a step back: the next backward run starts with
** a short walk. */
static inline void iterSeekSet(MemIter *pIter, MemNode *x) {
  pIter->iBackLevel = 0;
  iterSet(pIter, x);
}

static void memIterSeekFirst(StrataIter *pBase) {
  MemIter *pIter = (MemIter *)pBase;
  iterSeekSet(pIter, nodeNext(&pIter->pMem->head, 0));
}

static void memIterSeekLast(StrataIter *pBase) {
  MemIter *pIter = (MemIter *)pBase;
  MemNode *x = findLast(pIter->pMem);
  iterSeekSet(pIter, x == &pIter->pMem->head ? NULL : x);
}

/* First entry >= the internal key pKey/nKey. A key shorter than a trailer
** is taken as a bare user key: the first entry with a user key >= it. */
static void memIterSeek(StrataIter *pBase, const u8 *pKey, size_t nKey) {
  MemIter *pIter = (MemIter *)pBase;
  MemNode *x;
  if (LIKELY(nKey >= STRATA_TRAILER)) {
    x = findGreaterOrEqual(pIter->pMem, pKey, nKey - STRATA_TRAILER,
                           strataGet64(pKey + nKey - STRATA_TRAILER), NULL);
  } else {
    x = findGreaterOrEqual(pIter->pMem, pKey, nKey, UINT64_MAX, NULL);
  }
  iterSeekSet(pIter, x);
}

static void memIterNext(StrataIter *pBase) {
  MemIter *pIter = (MemIter *)pBase;
  if (pIter->pNode) iterSet(pIter, nodeNext(pIter->pNode, 0));
}

/* Record the nodes from x (excluded if it is the head) up to but not
** including pStop, which follows x on level 0. */
static void backRecord(MemIter *pIter, MemNode *x, MemNode *pStop) {
  int n = 0;
  if (x == &pIter->pMem->head) x = nodeNext(x, 0);
  while (x != pStop) {
    if (n == MEM_BACK_MAX) {
      /* Keep the newer half: only the nodes nearest pStop get used first. */
      memcpy(pIter->aBack, pIter->aBack + MEM_BACK_MAX / 2, sizeof(MemNode *) * (MEM_BACK_MAX / 2));
      n = MEM_BACK_MAX / 2;
    }
    pIter->aBack[n++] = x;
    x = nodeNext(x, 0);
  }
  pIter->nBack = n;
}

static void memIterPrev(StrataIter *pBase) {
  MemIter *pIter = (MemIter *)pBase;
  MemNode *x = pIter->pNode;
  if (!x) return;
  if (pIter->nBack > 0) {
    MemNode *y = pIter->aBack[pIter->nBack - 1];
    if (nodeNext(y, 0) == x) {
      pIter->nBack--;
      iterSet(pIter, y);
      return;
    }
  }
  {
    MemNode *p = findLessThan(pIter->pMem, nodeKey(x), x->nKey - STRATA_TRAILER,
                              strataGet64(nodeKey(x) + x->nKey - STRATA_TRAILER),
                              pIter->iBackLevel);
    if (pIter->iBackLevel < MEM_BACK_LEVEL) pIter->iBackLevel++;
    backRecord(pIter, p, x);
  }
  if (pIter->nBack == 0) {
    iterSet(pIter, NULL); /* x was the first */
    return;
  }
  iterSet(pIter, pIter->aBack[--pIter->nBack]);
}

static void memIterClose(StrataIter *pBase) {
  MemIter *pIter = (MemIter *)pBase;
  strataMemtableUnref(pIter->pMem);
  strataFreeMem(pIter);
}

static const StrataIterMethods memIterMethods = {
    memIterSeekFirst, memIterSeekLast, memIterSeek, memIterNext, memIterPrev, memIterClose,
};

/* A new iterator over p's internal keys, not yet positioned (bValid 0). It
** holds a reference to p until it is closed. STRATA_NOMEM if it cannot be
** allocated (*ppIter NULL then). Safe to use concurrently with Add. */
int strataMemtableIterNew(Memtable *p, StrataIter **ppIter) {
  MemIter *pIter = strataMalloc(sizeof(MemIter)); /* aBack needs no zeroing */
  *ppIter = NULL;
  if (!pIter) return strataErr(STRATA_NOMEM, "out of memory (memtable iterator)");
  memset(pIter, 0, offsetof(MemIter, aBack));
  pIter->base.pMethods = &memIterMethods;
  pIter->base.bKeepOnPrev = 1; /* entries live in the arena */
  pIter->pMem = p;
  strataMemtableRef(p);
  *ppIter = &pIter->base;
  return STRATA_OK;
}
