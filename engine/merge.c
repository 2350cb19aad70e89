/*
** merge.c -- the merging iterator, the level iterator and the error iterator.
**
** MERGING ITERATOR
** Merges n child iterators over internal keys into one sorted stream. Moving
** forward it keeps a min-heap of the valid children; backward, a max-heap.
** Internal keys are unique across children (a sequence number is used once),
** so there are no ties to break. Changing direction re-seeks every child
** but the current one to the current key, as a merge must.
**
** A step moves the top child and restores the heap. Scans usually take
** runs of entries from one child (the biggest level holds most keys), so
** the iterator remembers which of the top's two children is the smaller
** (iSecond): after a step one comparison with it says whether the top
** stays, and if not, it is the new top without comparing again, and the
** sift continues below it. iSecond is forgotten whenever the heap
** changes otherwise.
**
** SEEKS
** A seek moves every child, and with random targets each child's seek is a
** chain of cache misses. The table iterators among the children (and the
** table a level iterator's seek lands in) are therefore seeked together by
** strataSstIterSeekMany, which overlaps their misses (SEEKING SEVERAL
** TABLES in sstable.c); the other children, memtables, are seeked while
** its first prefetches are in flight. The children's kinds are noted once,
** when the iterator is made.
**
** KEY PREFIXES
** Each heap slot carries the first 8 bytes of its child's user key as a
** big-endian integer (zero padded), taken once per step of that child.
** Comparisons in the heap compare those first and look at the keys only
** when they are equal, which for most keys (integers, short or varied
** prefixes) is never: one integer comparison instead of a key compare
** through two child pointers.
**
** KEPT ENTRIES
** Moving backward, a step moves only the top child, so whether it keeps
** the current entry in place (bKeepOnPrev, strataInt.h) is the top's to
** say. A direction change re-seeks the other children: moving forward the
** flag is 0.
**
** LEVEL ITERATOR
** Concatenates the tables of one level (sorted, non-overlapping), opening
** only the table under the cursor. A seek binary-searches the files by
** their largest key; a merging iterator's seek does that part
** (levelSeekOpen), seeks the table with its other tables, then lets the
** level finish (levelSeekDone).
*/
#include "strataInt.h"

/* ERROR ITERATOR */

typedef struct ErrorIter {
  StrataIter base;
} ErrorIter;

static void errNop(StrataIter *p) { (void)p; }
static void errSeek(StrataIter *p, const u8 *k, size_t n) { (void)p; (void)k; (void)n; }
static void errClose(StrataIter *p) { strataFreeMem(p); }
static const StrataIterMethods errorMethods = {errNop, errNop, errSeek, errNop, errNop, errClose};

StrataIter *strataErrorIterNew(int rc) {
  ErrorIter *p = strataMallocZero(sizeof(*p));
  if (!p) return NULL;
  p->base.pMethods = &errorMethods;
  p->base.rc = rc;
  return &p->base;
}

/* MERGING ITERATOR */

/* What a child is, for mergeSeek (SEEKING SEVERAL TABLES in sstable.c). */
#define MERGE_CHILD_OTHER 0
#define MERGE_CHILD_TABLE 1 /* a table iterator */
#define MERGE_CHILD_LEVEL 2 /* a level iterator */

/* A heap slot: a valid child and the key prefix it is ordered by first. */
typedef struct MergeSlot {
  u64 pfx;       /* keyPrefix() of c's current key */
  StrataIter *c;
} MergeSlot;

typedef struct MergeIter {
  StrataIter base;
  int nChild;
  StrataIter **apChild;
  StrataIter **apSeek; /* mergeSeek's scratch: the table iterators to seek */
  u8 *aKind;           /* per child: MERGE_CHILD_* */
  int bForward;     /* direction of the heap */
  int nHeap;
  MergeSlot *aHeap; /* heap of valid children; aHeap[0] is current */
  int iSecond;      /* 1 or 2: the smaller child of aHeap[0]; 0: not known */
} MergeIter;

/* The first 8 bytes of the user key of internal key pKey/nKey as a
** big-endian integer, zero padded: keys whose prefixes differ are ordered
** by them, equal prefixes say nothing (KEY PREFIXES). */
static inline u64 keyPrefix(const u8 *pKey, size_t nKey) {
  if (LIKELY(nKey >= 16)) return __builtin_bswap64(strataGet64(pKey));
  if (nKey <= STRATA_TRAILER) return 0;
  /* A short user key: its trailer follows, so 8 bytes can be read; keep
  ** only the user key's. */
  return __builtin_bswap64(strataGet64(pKey)) & (~(u64)0 << (8 * (16 - nKey)));
}

static inline void slotSet(MergeSlot *s, StrataIter *c) {
  s->c = c;
  s->pfx = keyPrefix(c->pKey, c->nKey);
}

/* 1 if a is above b in the heap: it sorts first (bFwd) or last. Callers
** pass a constant bFwd so that each direction gets its own code. */
static __attribute__((noinline)) int slotTieBefore(const MergeSlot *a, const MergeSlot *b,
                                                   int bFwd) {
  int c = strataIkeyCompare(a->c->pKey, a->c->nKey, b->c->pKey, b->c->nKey);
  return bFwd ? c < 0 : c > 0;
}

static inline __attribute__((always_inline)) int slotBefore(const MergeSlot *a,
                                                            const MergeSlot *b, int bFwd) {
  if (LIKELY(a->pfx != b->pfx)) return bFwd ? a->pfx < b->pfx : a->pfx > b->pfx;
  return slotTieBefore(a, b, bFwd); /* out of line: keeps the step's registers few */
}

static inline __attribute__((always_inline)) void heapSiftDownDir(MergeIter *m, int i, int bFwd) {
  MergeSlot *h = m->aHeap;
  int n = m->nHeap;
  MergeSlot x = h[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && slotBefore(&h[c + 1], &h[c], bFwd)) c++;
    if (!slotBefore(&h[c], &x, bFwd)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

static void heapSiftDownFwd(MergeIter *m, int i) { heapSiftDownDir(m, i, 1); }
static void heapSiftDownRev(MergeIter *m, int i) { heapSiftDownDir(m, i, 0); }

static void heapSiftDown(MergeIter *m, int i) {
  if (m->bForward) {
    heapSiftDownFwd(m, i);
  } else {
    heapSiftDownRev(m, i);
  }
}

/* Rebuild the heap from the children (in m->bForward's direction). */
static void mergeBuild(MergeIter *m) {
  int i;
  m->nHeap = 0;
  m->iSecond = 0;
  for (i = 0; i < m->nChild; i++) {
    StrataIter *c = m->apChild[i];
    if (c->rc && !m->base.rc) m->base.rc = c->rc;
    if (c->bValid) slotSet(&m->aHeap[m->nHeap++], c);
  }
  for (i = m->nHeap / 2 - 1; i >= 0; i--) heapSiftDown(m, i);
}

static inline void mergePublish(MergeIter *m) {
  const StrataIter *c;
  if (UNLIKELY(m->base.rc || m->nHeap == 0)) {
    m->base.bValid = 0;
    return;
  }
  c = m->aHeap[0].c;
  m->base.bValid = 1;
  m->base.pKey = c->pKey;
  m->base.nKey = c->nKey;
  m->base.pVal = c->pVal;
  m->base.nVal = c->nVal;
  m->base.bKeepOnPrev = m->bForward ? 0 : c->bKeepOnPrev;
}

static void mergeSeekFirst(StrataIter *p) {
  MergeIter *m = (MergeIter *)p;
  int i;
  for (i = 0; i < m->nChild; i++) m->apChild[i]->pMethods->xSeekFirst(m->apChild[i]);
  m->bForward = 1;
  mergeBuild(m);
  mergePublish(m);
}

static void mergeSeekLast(StrataIter *p) {
  MergeIter *m = (MergeIter *)p;
  int i;
  for (i = 0; i < m->nChild; i++) m->apChild[i]->pMethods->xSeekLast(m->apChild[i]);
  m->bForward = 0;
  mergeBuild(m);
  mergePublish(m);
}

static StrataIter *levelSeekOpen(StrataIter *p, const u8 *pKey, size_t nKey);
static void levelSeekDone(StrataIter *p);
static int isLevelIter(const StrataIter *p);

/* What mergeSeek seeks while the tables' first prefetches are in flight. */
typedef struct MergeSeekOthers {
  StrataIter **ap;
  int n;
  const u8 *pKey;
  size_t nKey;
} MergeSeekOthers;

static void mergeSeekOthers(void *pArg) {
  MergeSeekOthers *o = pArg;
  int i;
  for (i = 0; i < o->n; i++) o->ap[i]->pMethods->xSeek(o->ap[i], o->pKey, o->nKey);
}

/* The table iterators among the children, and the current table of each
** level iterator, are seeked together (SEEKING SEVERAL TABLES in
** sstable.c), and the other children (memtables) in the middle of that. */
static void mergeSeek(StrataIter *p, const u8 *pKey, size_t nKey) {
  MergeIter *m = (MergeIter *)p;
  MergeSeekOthers o;
  int i, nSst = 0, bLevel = 0;
  /* apSeek holds the tables from its start, the others from its end. */
  o.ap = m->apSeek + m->nChild;
  o.n = 0;
  o.pKey = pKey;
  o.nKey = nKey;
  for (i = 0; i < m->nChild; i++) {
    StrataIter *c = m->apChild[i];
    int eKind = m->aKind[i];
    if (eKind == MERGE_CHILD_LEVEL) {
      bLevel = 1;
      c = levelSeekOpen(c, pKey, nKey);
      if (!c) continue;
      eKind = strataSstIterIs(c) ? MERGE_CHILD_TABLE : MERGE_CHILD_OTHER;
    }
    if (eKind == MERGE_CHILD_TABLE) {
      m->apSeek[nSst++] = c;
    } else {
      *--o.ap = c;
      o.n++;
    }
  }
  strataSstIterSeekMany(m->apSeek, nSst, pKey, nKey, mergeSeekOthers, &o);
  if (bLevel) {
    for (i = 0; i < m->nChild; i++) {
      if (m->aKind[i] == MERGE_CHILD_LEVEL) levelSeekDone(m->apChild[i]);
    }
  }
  m->bForward = 1;
  mergeBuild(m);
  mergePublish(m);
}

/* Step the top child (forward if bFwd, which is the heap's direction) and
** restore the heap. */
static inline __attribute__((always_inline)) void mergeStep(MergeIter *m, int bFwd) {
  MergeSlot *h = m->aHeap;
  StrataIter *c = h[0].c;
  if (bFwd) {
    c->pMethods->xNext(c);
  } else {
    c->pMethods->xPrev(c);
  }
  if (UNLIKELY(c->rc)) {
    m->base.rc = c->rc;
    m->base.bValid = 0;
    return;
  }
  if (LIKELY(c->bValid)) {
    h[0].pfx = keyPrefix(c->pKey, c->nKey);
    if (m->nHeap > 1) {
      int j = m->iSecond;
      if (j == 0) j = m->iSecond = (m->nHeap > 2 && slotBefore(&h[2], &h[1], bFwd)) ? 2 : 1;
      if (!slotBefore(&h[0], &h[j], bFwd)) {
        /* h[j] is the smallest now: it goes up, c sifts down from j. */
        MergeSlot x = h[0];
        h[0] = h[j];
        h[j] = x;
        if (2 * j + 1 < m->nHeap) heapSiftDownDir(m, j, bFwd);
        m->iSecond = 0;
        c = h[0].c;
      }
    }
    /* Valid before and after the step, without an error: publish c. */
    m->base.pKey = c->pKey;
    m->base.nKey = c->nKey;
    m->base.pVal = c->pVal;
    m->base.nVal = c->nVal;
    if (!bFwd) m->base.bKeepOnPrev = c->bKeepOnPrev;
    return;
  } else {
    h[0] = h[--m->nHeap];
    if (m->nHeap) heapSiftDownDir(m, 0, bFwd);
    m->iSecond = 0;
  }
  mergePublish(m);
}

/* Direction change: every child but the current one moves to the first
** entry after the current key (bForward) or the last entry before it; the
** current one is then stepped like any top. Returns 0 if that failed
** (published invalid). */
static int mergeTurn(MergeIter *m, int bForward) {
  StrataIter *cur = m->aHeap[0].c;
  const u8 *pKey = cur->pKey;
  size_t nKey = cur->nKey;
  int i;
  for (i = 0; i < m->nChild; i++) {
    StrataIter *c = m->apChild[i];
    if (c == cur) continue;
    c->pMethods->xSeek(c, pKey, nKey);
    if (bForward) {
      if (c->bValid && strataIkeyCompare(c->pKey, c->nKey, pKey, nKey) == 0) c->pMethods->xNext(c);
    } else if (c->bValid) {
      c->pMethods->xPrev(c); /* last entry < key: one step back from >= key */
    } else if (!c->rc) {
      c->pMethods->xSeekLast(c);
    }
  }
  m->bForward = bForward;
  m->base.bKeepOnPrev = 0; /* other children moved; forward: stays 0 */
  mergeBuild(m); /* cur is in the heap at its own key, the top */
  if (m->base.rc) {
    mergePublish(m);
    return 0;
  }
  return 1;
}

static void mergeNext(StrataIter *p) {
  MergeIter *m = (MergeIter *)p;
  if (UNLIKELY(!m->bForward) && !mergeTurn(m, 1)) return;
  mergeStep(m, 1);
}

static void mergePrev(StrataIter *p) {
  MergeIter *m = (MergeIter *)p;
  if (UNLIKELY(m->bForward) && !mergeTurn(m, 0)) return;
  mergeStep(m, 0);
}

static void mergeClose(StrataIter *p) {
  MergeIter *m = (MergeIter *)p;
  int i;
  for (i = 0; i < m->nChild; i++) strataIterClose(m->apChild[i]);
  strataFreeMem(m); /* the arrays are in the same allocation */
}

static const StrataIterMethods mergeMethods = {mergeSeekFirst, mergeSeekLast, mergeSeek,
                                               mergeNext,      mergePrev,     mergeClose};

int strataMergeIterNew(StrataIter **apChild, int nChild, StrataIter **ppIter) {
  /* One allocation (an iterator is made per statement): the struct, the
  ** heap, the children, mergeSeek's scratch, the children's kinds. */
  size_t nSlot = (size_t)(nChild ? nChild : 1);
  size_t nHead = (sizeof(MergeIter) + sizeof(MergeSlot) - 1) / sizeof(MergeSlot) * sizeof(MergeSlot);
  MergeIter *m = strataMalloc(nHead + nSlot * (sizeof(MergeSlot) + 2 * sizeof(StrataIter *) + 1));
  int i;
  *ppIter = NULL;
  if (!m) {
    for (i = 0; i < nChild; i++) strataIterClose(apChild[i]);
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  memset(m, 0, sizeof(*m));
  m->aHeap = (MergeSlot *)(void *)((u8 *)m + nHead);
  m->apChild = (StrataIter **)(void *)(m->aHeap + nSlot);
  m->apSeek = m->apChild + nSlot;
  m->aKind = (u8 *)(m->apSeek + nSlot);
  m->base.pMethods = &mergeMethods;
  m->nChild = nChild;
  if (nChild) memcpy(m->apChild, apChild, sizeof(StrataIter *) * (size_t)nChild);
  for (i = 0; i < nChild; i++) {
    m->aKind[i] = isLevelIter(apChild[i])       ? MERGE_CHILD_LEVEL
                  : strataSstIterIs(apChild[i]) ? MERGE_CHILD_TABLE
                                                : MERGE_CHILD_OTHER;
  }
  m->bForward = 1;
  *ppIter = &m->base;
  return STRATA_OK;
}

/* LEVEL ITERATOR */

typedef struct LevelIter {
  StrataIter base;
  FileMeta **aFile;
  int nFile;
  int iFile;          /* file of pTable, or -1 */
  StrataIter *pTable; /* iterator of the current file */
  StrataOpenTableIter xOpen;
  void *pCtx;
} LevelIter;

static void levelPublish(LevelIter *l) {
  StrataIter *t = l->pTable;
  if (t && t->rc && !l->base.rc) l->base.rc = t->rc;
  if (l->base.rc || !t || !t->bValid) {
    l->base.bValid = 0;
    return;
  }
  l->base.bValid = 1;
  l->base.pKey = t->pKey;
  l->base.nKey = t->nKey;
  l->base.pVal = t->pVal;
  l->base.nVal = t->nVal;
  l->base.bKeepOnPrev = t->bKeepOnPrev;
}

/* Make file i current (opening its table); 0 if it failed. */
static int levelOpen(LevelIter *l, int i) {
  if (l->iFile == i && l->pTable) return 1;
  strataIterClose(l->pTable);
  l->pTable = NULL;
  l->iFile = -1;
  if (i < 0 || i >= l->nFile) return 0;
  {
    int rc = l->xOpen(l->pCtx, l->aFile[i], &l->pTable);
    if (rc) {
      l->base.rc = rc;
      return 0;
    }
  }
  l->iFile = i;
  return 1;
}

/* Move forward over files whose table is exhausted. */
static void levelSkipForward(LevelIter *l) {
  while (l->pTable && !l->pTable->bValid && !l->pTable->rc && l->iFile + 1 < l->nFile) {
    if (!levelOpen(l, l->iFile + 1)) return;
    l->pTable->pMethods->xSeekFirst(l->pTable);
  }
}

static void levelSkipBackward(LevelIter *l) {
  while (l->pTable && !l->pTable->bValid && !l->pTable->rc && l->iFile > 0) {
    if (!levelOpen(l, l->iFile - 1)) return;
    l->pTable->pMethods->xSeekLast(l->pTable);
  }
}

static void levelSeekFirst(StrataIter *p) {
  LevelIter *l = (LevelIter *)p;
  if (levelOpen(l, 0)) {
    l->pTable->pMethods->xSeekFirst(l->pTable);
    levelSkipForward(l);
  }
  levelPublish(l);
}

static void levelSeekLast(StrataIter *p) {
  LevelIter *l = (LevelIter *)p;
  if (levelOpen(l, l->nFile - 1)) {
    l->pTable->pMethods->xSeekLast(l->pTable);
    levelSkipBackward(l);
  }
  levelPublish(l);
}

/* The first half of levelSeek: make current the file that holds the first
** key >= pKey, if any, and return its table iterator for the caller to
** seek (NULL: nothing to seek). levelSeekDone is the second half. */
static StrataIter *levelSeekOpen(StrataIter *p, const u8 *pKey, size_t nKey) {
  LevelIter *l = (LevelIter *)p;
  int lo = 0, hi = l->nFile;
  /* First file whose largest key >= pKey. */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    const FileMeta *f = l->aFile[mid];
    if (strataIkeyCompare(f->largest.a, f->largest.n, pKey, nKey) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo >= l->nFile) {
    strataIterClose(l->pTable);
    l->pTable = NULL;
    l->iFile = -1;
    return NULL;
  }
  return levelOpen(l, lo) ? l->pTable : NULL;
}

/* After the table levelSeekOpen returned (if any) was seeked. */
static void levelSeekDone(StrataIter *p) {
  LevelIter *l = (LevelIter *)p;
  levelSkipForward(l);
  levelPublish(l);
}

static void levelSeek(StrataIter *p, const u8 *pKey, size_t nKey) {
  StrataIter *t = levelSeekOpen(p, pKey, nKey);
  if (t) t->pMethods->xSeek(t, pKey, nKey);
  levelSeekDone(p);
}

/* A step that stays inside the current table: publish it directly. */
static inline int levelStepped(LevelIter *l) {
  StrataIter *t = l->pTable;
  if (LIKELY(t->bValid)) {
    l->base.pKey = t->pKey;
    l->base.nKey = t->nKey;
    l->base.pVal = t->pVal;
    l->base.nVal = t->nVal;
    return 1;
  }
  return 0;
}

static void levelNext(StrataIter *p) {
  LevelIter *l = (LevelIter *)p;
  l->pTable->pMethods->xNext(l->pTable);
  if (levelStepped(l)) return;
  levelSkipForward(l);
  levelPublish(l);
}

static void levelPrev(StrataIter *p) {
  LevelIter *l = (LevelIter *)p;
  l->pTable->pMethods->xPrev(l->pTable);
  if (levelStepped(l)) {
    /* A step that keeps the entry stays in the table, which stays open. */
    l->base.bKeepOnPrev = l->pTable->bKeepOnPrev;
    return;
  }
  levelSkipBackward(l);
  levelPublish(l);
}

static void levelClose(StrataIter *p) {
  LevelIter *l = (LevelIter *)p;
  strataIterClose(l->pTable);
  strataFreeMem(l);
}

static const StrataIterMethods levelMethods = {levelSeekFirst, levelSeekLast, levelSeek,
                                               levelNext,      levelPrev,     levelClose};

static int isLevelIter(const StrataIter *p) { return p->pMethods == &levelMethods; }

int strataLevelIterNew(FileMeta **aFile, int nFile, StrataOpenTableIter xOpen, void *pCtx,
                       StrataIter **ppIter) {
  LevelIter *l = strataMallocZero(sizeof(*l));
  *ppIter = NULL;
  if (!l) return strataErr(STRATA_NOMEM, "out of memory");
  l->base.pMethods = &levelMethods;
  l->aFile = aFile;
  l->nFile = nFile;
  l->iFile = -1;
  l->xOpen = xOpen;
  l->pCtx = pCtx;
  *ppIter = &l->base;
  return STRATA_OK;
}
