/*
** block.c -- encoding and iteration of sstable blocks (data and index).
**
** BLOCK LAYOUT
**
**   entry[0] .. entry[n-1]
**   restart[0] .. restart[r-1]   u32 each: offset of an entry stored whole
**   r                            u32, >= 1
**
**   entry = varint32 shared     bytes of key shared with the previous key
**           varint32 unshared   bytes of key that follow
**           varint32 nVal
**           key[shared .. shared+unshared)
**           value[nVal]
**
**   Every restartInterval-th entry is a restart point: it stores its key
**   whole (shared = 0) and its offset is in the restart array, so a reader
**   can start decoding there. restart[0] = 0. An empty block is just
**   restart[0] = 0, r = 1 (8 bytes). Offsets and lengths are 32 bits: a
**   block is below 2 GiB (STRATA_BLOCK_MAX).
**
** ITERATION
**
**   Seek binary-searches the restart keys (which are read in place, never
**   copied), then decodes forward from the chosen restart. If the iterator
**   is already positioned, its current restart narrows the search, and a
**   forward seek that lands in the current restart region continues from the
**   current entry: merging iterators seek near where they are all the time.
**   Prev: see REVERSE.
**
** PREFIX SCAN
**
**   Seek's forward scan mostly does not assemble the keys it passes. It
**   keeps m, the first byte at which the last key passed (< target) differs
**   from the target, inside both user keys. An entry that shares more than
**   m bytes with its predecessor has the same byte m, so it is < target too
**   and is skipped on its header alone; one that shares s <= m bytes starts
**   with the target's first s bytes, so it is compared from byte s on,
**   straight from the block, and either gives a new m or is the answer. Only
**   the answer's key is assembled (the target's first s bytes, then its own).
**   Keys with nothing to reason from (one user key a prefix of the other)
**   and entries off the common form go to the plain scan, which assembles
**   every key.
**
**   A key that starts a restart region (shared = 0) is used in place; other
**   keys are assembled in the iterator's key buffer, which starts as an
**   inline array and grows (once) only when a longer key appears, the key
**   after one used in place taking its shared prefix from the block. So
**   stepping through a block never allocates.
**
** REVERSE
**
**   Prefix compression only decodes forward, so the first step back into a
**   restart region decodes the region from its restart point up to the
**   entry just before the current one, recording each entry (offsets, and
**   its key, assembled in place in prevKeys from the key recorded before
**   it); the following steps back within the region just pop the record.
**   A backward scan thus decodes every entry once instead of
**   restartInterval / 2 times on average. Entries of the common form
**   (one-byte lengths, room in the record) are decoded by a loop of their
**   own with its state in locals and each record entry written in three
**   stores; the first entry of another form hands the rest of the region to
**   the general loop (prevFillGeneral). SeekLast fills
**   the record of the last region the same way. The record is trusted only
**   while its last entry is the current entry of the same block (Init
**   empties it); if its memory cannot be had, Prev decodes from the restart
**   point every time, as correct and slower.
**
** DAMAGE
**
**   Blocks are checksummed before they get here, but every length is still
**   treated as hostile: a varint that runs off the end, an entry that
**   overruns the entries, a shared prefix longer than the previous key, a
**   key shorter than an internal key trailer, a restart offset out of range:
**   each makes the iterator invalid with base.rc = STRATA_CORRUPT when it
**   decodes that entry (the prefix scan passes over entries checking only
**   their lengths, as a Seek passes over whole regions). Nothing is ever
**   read outside [a, a+n).
*/
#include "block.h"

/* BUILDER */

void strataBlockBuilderInit(BlockBuilder *b, int restartInterval) {
  memset(b, 0, sizeof(*b));
  b->restartInterval = restartInterval < 1 ? 1 : restartInterval;
}

void strataBlockBuilderReset(BlockBuilder *b) {
  b->buf.n = 0;
  b->restarts.n = 0;
  b->lastKey.n = 0;
  b->nSinceRestart = 0;
  b->nEntries = 0;
  b->bFinished = 0;
}

void strataBlockBuilderFree(BlockBuilder *b) {
  strataBufFree(&b->buf);
  strataBufFree(&b->restarts);
  strataBufFree(&b->lastKey);
}

/* Length of the common prefix of a/na and b/nb, 8 bytes at a time. */
static size_t commonPrefix(const u8 *a, size_t na, const u8 *b, size_t nb) {
  size_t n = na < nb ? na : nb, i = 0;
  while (i + 8 <= n) {
    u64 x = strataGet64(a + i) ^ strataGet64(b + i);
    if (x) return i + ((size_t)__builtin_ctzll(x) >> 3); /* little-endian: low byte first */
    i += 8;
  }
  while (i < n && a[i] == b[i]) i++;
  return i;
}

/* Write length v as a varint at p; returns the end. Lengths under 128 (short
** keys, small values) take the inline one-byte path. */
static inline u8 *builderPutLen(u8 *p, u32 v) {
  if (LIKELY(v < 0x80)) {
    *p = (u8)v;
    return p + 1;
  }
  return p + strataPutVarint32(p, v);
}

int strataBlockBuilderAdd(BlockBuilder *b, const u8 *pKey, size_t nKey, const u8 *pVal,
                          size_t nVal) {
  size_t shared = 0, nUnshared;
  u8 *p;
  int rc;
  if (b->nEntries == 0 || b->nSinceRestart >= b->restartInterval) {
    rc = strataBufAppend32(&b->restarts, (u32)b->buf.n);
    if (rc) return rc;
    b->nSinceRestart = 0;
  } else {
    shared = commonPrefix(b->lastKey.a, b->lastKey.n, pKey, nKey);
  }
  nUnshared = nKey - shared;
  if ((u64)b->buf.n + 15 + nUnshared + nVal + b->restarts.n + 4 > STRATA_BLOCK_MAX) {
    return strataErr(STRATA_TOOBIG, "block would exceed %llu bytes",
                     (unsigned long long)STRATA_BLOCK_MAX);
  }
  /* Reserve everything first so a failure leaves the builder consistent
  ** (the calls only when a buffer must grow: this runs for every entry a
  ** flush or compaction writes). */
  if (UNLIKELY(b->buf.n + 15 + nUnshared + nVal > b->buf.nAlloc)) {
    rc = strataBufReserve(&b->buf, 15 + nUnshared + nVal);
    if (rc) return rc;
  }
  if (UNLIKELY(nKey > b->lastKey.nAlloc)) {
    b->lastKey.n = shared;
    rc = strataBufReserve(&b->lastKey, nUnshared);
    if (rc) return rc;
  }
  p = b->buf.a + b->buf.n;
  p = builderPutLen(p, (u32)shared);
  p = builderPutLen(p, (u32)nUnshared);
  p = builderPutLen(p, (u32)nVal);
  memcpy(p, pKey + shared, nUnshared);
  p += nUnshared;
  if (nVal) memcpy(p, pVal, nVal);
  p += nVal;
  b->buf.n = (size_t)(p - b->buf.a);
  memcpy(b->lastKey.a + shared, pKey + shared, nUnshared);
  b->lastKey.n = nKey;
  b->nSinceRestart++;
  b->nEntries++;
  return STRATA_OK;
}

int strataBlockBuilderFinish(BlockBuilder *b, const u8 **ppOut, size_t *pnOut) {
  int rc = STRATA_OK;
  *ppOut = NULL;
  *pnOut = 0;
  if (!b->bFinished) {
    if (b->restarts.n == 0) rc = strataBufAppend32(&b->restarts, 0);
    if (rc == STRATA_OK) rc = strataBufReserve(&b->buf, b->restarts.n + 4);
    if (rc) return rc;
    memcpy(b->buf.a + b->buf.n, b->restarts.a, b->restarts.n);
    b->buf.n += b->restarts.n;
    strataPut32(b->buf.a + b->buf.n, (u32)(b->restarts.n / 4));
    b->buf.n += 4;
    b->bFinished = 1;
  }
  *ppOut = b->buf.a;
  *pnOut = b->buf.n;
  return STRATA_OK;
}

/* ITERATOR */

static const StrataIterMethods blockIterMethods;

static inline u32 restartAt(const BlockIter *it, u32 i) {
  return strataGet32(it->aRestart + 4 * (size_t)i);
}

/* Make the iterator invalid with STRATA_CORRUPT. Returns 0. */
static int blockCorrupt(BlockIter *it, const char *zWhy, u32 off) {
  it->base.rc = strataErr(STRATA_CORRUPT, "corrupt block: %s (block offset %u)", zWhy, off);
  it->base.bValid = 0;
  return 0;
}

void strataBlockIterInit(BlockIter *it, const u8 *a, size_t n) {
  u32 nRestart;
  it->base.pMethods = &blockIterMethods;
  it->base.bValid = 0;
  it->base.rc = STRATA_OK;
  it->base.pKey = NULL;
  it->base.nKey = 0;
  it->base.pVal = NULL;
  it->base.nVal = 0;
  it->base.bKeepOnPrev = 0;
  if (it->aKey == NULL) {
    it->aKey = it->aKeyInline;
    it->nKeyAlloc = BLOCK_INLINE_KEY;
    it->aPrev = NULL;
    it->nPrevAlloc = 0;
    memset(&it->prevKeys, 0, sizeof(it->prevKeys));
  }
  it->nPrev = 0;
  it->aData = a;
  it->aRestart = a;
  it->nLimit = 0;
  it->nRestart = 0;
  it->iCur = it->iNext = it->iRestart = 0;
  it->iRestartNext = UINT32_MAX;
  if (n < 8 || n > STRATA_BLOCK_MAX) {
    blockCorrupt(it, n < 8 ? "too short" : "too long", 0);
    return;
  }
  nRestart = strataGet32(a + n - 4);
  if (nRestart == 0 || nRestart > (n - 4) / 4) {
    blockCorrupt(it, "bad restart count", (u32)(n - 4));
    return;
  }
  it->nLimit = (u32)(n - 4 - 4 * (size_t)nRestart);
  it->aRestart = a + it->nLimit;
  it->nRestart = nRestart;
}

void strataBlockIterRelease(BlockIter *it) {
  if (it->aKey == NULL) return; /* never Init'ed, or already released */
  if (it->aKey != it->aKeyInline) strataFreeMem(it->aKey);
  it->aKey = NULL;
  it->nKeyAlloc = 0;
  strataFreeMem(it->aPrev);
  it->aPrev = NULL;
  it->nPrev = it->nPrevAlloc = 0;
  strataBufFree(&it->prevKeys);
}

/* Make i the current restart region. */
static inline void setRestart(BlockIter *it, u32 i) {
  it->iRestart = i;
  it->iRestartNext = i + 1 < it->nRestart ? restartAt(it, i + 1) : UINT32_MAX;
}

/* Position before the entry at restart point i. Returns 0 on damage. */
static int seekToRestart(BlockIter *it, u32 i) {
  setRestart(it, i);
  it->iNext = restartAt(it, i);
  it->base.pKey = NULL;
  it->base.nKey = 0; /* so the entry there must not claim a shared prefix */
  if (it->iNext > it->nLimit) return blockCorrupt(it, "restart offset out of range", it->iNext);
  return 1;
}

/* Decode the three varints of an entry at p. Returns the byte after them or
** NULL if they run past pLimit or are malformed. */
static inline const u8 *entryHeader(const u8 *p, const u8 *pLimit, u32 *pShared, u32 *pUnshared,
                                    u32 *pnVal) {
  if (LIKELY(pLimit - p >= 3 && (p[0] | p[1] | p[2]) < 0x80)) {
    *pShared = p[0];
    *pUnshared = p[1];
    *pnVal = p[2];
    return p + 3;
  }
  if ((p = strataGetVarint32(p, pLimit, pShared)) == NULL) return NULL;
  if ((p = strataGetVarint32(p, pLimit, pUnshared)) == NULL) return NULL;
  return strataGetVarint32(p, pLimit, pnVal);
}

/* Move iRestart forward to the region that holds iCur. */
static inline void restartFollow(BlockIter *it) {
  if (UNLIKELY(it->iCur >= it->iRestartNext)) {
    u32 r = it->iRestart + 1;
    while (r + 1 < it->nRestart && restartAt(it, r + 1) <= it->iCur) r++;
    setRestart(it, r);
  }
}

void strataBlockIterFollowRestart(BlockIter *it) {
  restartFollow(it);
}

/* Decode the entry at iNext and make it current. Returns 1 if positioned;
** 0 at the end of the entries (bValid = 0, rc unchanged) or on damage or
** OOM (rc set). Inlined: it is the inner loop of Next and of Seek. */
static inline __attribute__((always_inline)) int parseNext(BlockIter *it) {
  const u8 *p, *pLimit;
  u32 shared, unshared, nVal;
  size_t nKey;
  if (it->iNext >= it->nLimit) {
    it->base.bValid = 0;
    return 0;
  }
  p = it->aData + it->iNext;
  pLimit = it->aData + it->nLimit;
  if ((p = entryHeader(p, pLimit, &shared, &unshared, &nVal)) == NULL) {
    return blockCorrupt(it, "bad entry header", it->iNext);
  }
  if (shared > it->base.nKey) return blockCorrupt(it, "shared prefix too long", it->iNext);
  if ((u64)unshared + nVal > (u64)(pLimit - p)) {
    return blockCorrupt(it, "entry overruns the block", it->iNext);
  }
  nKey = (size_t)shared + unshared;
  if (nKey < STRATA_TRAILER) return blockCorrupt(it, "key too short", it->iNext);
  if (shared == 0) {
    it->base.pKey = p; /* whole key in the block: use it in place */
  } else {
    if (UNLIKELY(nKey > it->nKeyAlloc)) {
      size_t nNew = it->nKeyAlloc * 2;
      u8 *aNew;
      while (nNew < nKey) nNew *= 2;
      aNew = strataMalloc(nNew);
      if (!aNew) {
        it->base.rc = strataErr(STRATA_NOMEM, "out of memory (%zu byte key)", nNew);
        it->base.bValid = 0;
        return 0;
      }
      memcpy(aNew, it->base.pKey, shared);
      if (it->aKey != it->aKeyInline) strataFreeMem(it->aKey);
      it->aKey = aNew;
      it->nKeyAlloc = nNew;
    } else if (it->base.pKey != it->aKey) {
      memcpy(it->aKey, it->base.pKey, shared); /* the previous key was in place */
    }
    /* The key bytes end at or before pLimit, and the restart array and its
    ** count (8 bytes at least) follow pLimit: a word copy may overrun the
    ** source, and does not overrun the key buffer if it has 7 bytes spare. */
    if (LIKELY(nKey + 8 <= it->nKeyAlloc))
      strataBlockCopyWords(it->aKey + shared, p, unshared);
    else
      memcpy(it->aKey + shared, p, unshared);
    it->base.pKey = it->aKey;
  }
  it->base.nKey = nKey;
  it->base.pVal = p + unshared;
  it->base.nVal = nVal;
  it->iCur = it->iNext;
  it->iNext = (u32)(p + unshared + nVal - it->aData);
  restartFollow(it);
  it->base.bValid = 1;
  return 1;
}

/* A Seek's target, with its first 8 user key bytes as a big-endian integer
** (when it has 8): most keys of a block already differ from the target
** there, and one integer comparison then orders them. */
typedef struct SeekKey {
  const u8 *p;
  size_t n;
  u64 w;   /* first 8 bytes, big-endian */
  int bW;  /* the user key has 8 bytes or more: w is set */
} SeekKey;

static inline void seekKeyInit(SeekKey *k, const u8 *pKey, size_t nKey) {
  k->p = pKey;
  k->n = nKey;
  k->bW = nKey >= STRATA_TRAILER + 8;
  k->w = k->bW ? __builtin_bswap64(strataGet64(pKey)) : 0;
}

/* strataIkeyCompare(pK, nK, target). Equal first 8 bytes leave the rest of
** both user keys to compare, in the same order. */
static inline int seekCompare(const u8 *pK, size_t nK, const SeekKey *k) {
  if (k->bW && nK >= STRATA_TRAILER + 8) {
    u64 w = __builtin_bswap64(strataGet64(pK));
    if (w != k->w) return w < k->w ? -1 : 1;
    return strataIkeyCompare(pK + 8, nK - 8, k->p + 8, k->n - 8);
  }
  return strataIkeyCompare(pK, nK, k->p, k->n);
}

/* Seek's forward scan the plain way: make current the first entry from
** iNext on that is >= the target k (invalid at the end), assembling every
** key. It is parseNext and a comparison in a
** loop, with the iterator's state kept in locals (stores into the key
** buffer would otherwise make the compiler reload it after every entry)
** while entries take the common form: one-byte lengths, and a key with
** room for word copies. Anything else is left to parseNext. */
static void seekScanKeys(BlockIter *it, const SeekKey *k) {
  const u8 *a = it->aData, *pLimit = a + it->nLimit;
  u8 *aKey = it->aKey;
  const size_t nKeyMax = it->nKeyAlloc - 8; /* nKeyAlloc >= BLOCK_INLINE_KEY */
  const u8 *pK = it->base.pKey, *pV = NULL;
  size_t nK = it->base.nKey, nV = 0;
  u32 iCur = it->iCur, iNext = it->iNext;
  int bAny = 0, bFound = 0;
  for (;;) {
    const u8 *p = a + iNext;
    u32 shared, unshared, nVal;
    size_t nk;
    if (pLimit - p < 3 || (p[0] | p[1] | p[2]) >= 0x80) break;
    shared = p[0];
    unshared = p[1];
    nVal = p[2];
    p += 3;
    nk = (size_t)shared + unshared;
    if (shared > nK || (size_t)unshared + nVal > (size_t)(pLimit - p) || nk < STRATA_TRAILER ||
        nk > nKeyMax) {
      break;
    }
    if (shared == 0) {
      pK = p;
    } else {
      if (pK != aKey) memcpy(aKey, pK, shared);
      strataBlockCopyWords(aKey + shared, p, unshared); /* safe: see parseNext */
      pK = aKey;
    }
    nK = nk;
    pV = p + unshared;
    nV = nVal;
    iCur = iNext;
    iNext = (u32)(pV + nVal - a);
    bAny = 1;
    if (seekCompare(pK, nK, k) >= 0) {
      bFound = 1;
      break;
    }
  }
  if (bAny) {
    it->base.pKey = pK;
    it->base.nKey = nK;
    it->base.pVal = pV;
    it->base.nVal = nV;
    it->iCur = iCur;
    it->iNext = iNext;
    restartFollow(it);
    it->base.bValid = 1;
    if (bFound) return;
  }
  while (parseNext(it)) {
    if (seekCompare(it->base.pKey, it->base.nKey, k) >= 0) return;
  }
}

/* The first index below n where a and b differ, or n. Word reads from
** below n may go 7 bytes past it: the callers' bytes there are user key
** bytes followed by an 8-byte trailer. */
static inline size_t ukeyDiff(const u8 *a, const u8 *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i += 8) {
    u64 x = strataGet64(a + i) ^ strataGet64(b + i);
    if (x) {
      i += (size_t)__builtin_ctzll(x) >> 3; /* little-endian: low byte first */
      return i < n ? i : n;
    }
  }
  return n;
}

/* Make the entry at offset iCur current: its header ends at p, its key is
** the first `shared` bytes of pPrefix, then `unshared` bytes at p. */
static inline void seekTake(BlockIter *it, u32 iCur, const u8 *p, const u8 *pPrefix, u32 shared,
                            u32 unshared, u32 nVal) {
  if (shared == 0) {
    it->base.pKey = p;
  } else {
    memcpy(it->aKey, pPrefix, shared);
    strataBlockCopyWords(it->aKey + shared, p, unshared); /* safe: see parseNext */
    it->base.pKey = it->aKey;
  }
  it->base.nKey = (size_t)shared + unshared;
  it->base.pVal = p + unshared;
  it->base.nVal = nVal;
  it->iCur = iCur;
  it->iNext = (u32)(p + unshared + nVal - it->aData);
  restartFollow(it);
  it->base.bValid = 1;
}

/* Seek's forward scan by prefixes (PREFIX SCAN): the first entry from iNext
** on that is >= k becomes current, or the iterator goes invalid at the end
** of the entries; returns 1 then. Returns 0 when it stops short, with the
** iterator in a state seekScanKeys goes on from: on an entry < k,
** assembled, or back at the restart point it started from. */
static int seekScanPrefix(BlockIter *it, const SeekKey *k) {
  const u8 *a = it->aData, *pT = k->p;
  const u32 nLimit = it->nLimit;
  const size_t nuT = k->n - STRATA_TRAILER;
  const size_t nKeyMax = it->nKeyAlloc - 8; /* nKeyAlloc >= BLOCK_INLINE_KEY */
  const u32 r0 = it->iRestart;
  u32 iNext = it->iNext;
  size_t m = 0;
  if (it->base.nKey) {
    /* Going on from the current entry, which is < k. */
    size_t nuK = it->base.nKey - STRATA_TRAILER, lim = nuK < nuT ? nuK : nuT;
    m = ukeyDiff(it->base.pKey, pT, lim);
    if (m == lim) return 0; /* one user key is a prefix of the other */
  }
  for (;;) {
    const u8 *p = a + iNext;
    u32 shared, unshared, nVal, iEnd;
    size_t nk, nuK, lim, d;
    if (iNext == nLimit) { /* the entries end exactly there (iNext never passes it) */
      it->iNext = iNext;
      it->base.bValid = 0;
      return 1;
    }
    /* p < the restart array, which is 8 bytes or more: p[0..2] are in the
    ** block even if the entry is not. */
    if ((p[0] | p[1] | p[2]) >= 0x80) break;
    shared = p[0];
    unshared = p[1];
    nVal = p[2];
    iEnd = iNext + 3 + unshared + nVal; /* no overflow: nLimit < 2 GiB */
    if (iEnd > nLimit) break;
    p += 3;
    if (shared > m) {
      /* Like the key before it, < k. Only what moving on needs is checked:
      ** the entry is not read (a Seek does not read every entry). */
      iNext = iEnd;
      continue;
    }
    nk = (size_t)shared + unshared;
    if (nk < STRATA_TRAILER || nk > nKeyMax) break;
    /* Its first `shared` bytes are its predecessor's, which are k's: the
    ** comparison starts there. (This holds for keys stored whole, shared =
    ** 0, too, and does not depend on `shared` being the longest possible.) */
    m = shared;
    nuK = nk - STRATA_TRAILER;
    if (nuK < m) break; /* cannot follow its predecessor: see seekScanKeys */
    lim = nuK < nuT ? nuK : nuT;
    d = m + ukeyDiff(p, pT + m, lim - m);
    if (d < lim) {
      if (p[d - m] < pT[d]) {
        m = d;
        iNext = (u32)(p + unshared + nVal - a);
        continue;
      }
    } else if (nuK < nuT || (nuK == nuT && strataGet64(p + nuK - m) > strataGet64(pT + nuT))) {
      /* < k (a shorter user key, or the same with a larger trailer, which
      ** sorts first), with no differing byte to go on from. */
      seekTake(it, iNext, p, pT, shared, unshared, nVal);
      return 0;
    }
    /* >= k. */
    seekTake(it, iNext, p, pT, shared, unshared, nVal);
    return 1;
  }
  /* An entry the fast path does not take (long lengths, a long key, or
  ** damage): the plain scan starts over from the restart point, and
  ** reports any damage. */
  seekToRestart(it, r0);
  return 0;
}

/* Seek's forward scan: make current the first entry from iNext on that is
** >= the target k (invalid at the end). */
static void seekScan(BlockIter *it, const SeekKey *k) {
  if (seekScanPrefix(it, k)) return;
  if (it->base.rc == STRATA_OK) seekScanKeys(it, k);
}

/* The key of restart entry i, in place. Returns 0 on damage (rc set). */
static int restartKey(BlockIter *it, u32 i, const u8 **ppKey, size_t *pnKey) {
  u32 off = restartAt(it, i), shared, unshared, nVal;
  const u8 *pLimit = it->aData + it->nLimit, *p;
  if (off >= it->nLimit) return blockCorrupt(it, "restart offset out of range", off);
  p = entryHeader(it->aData + off, pLimit, &shared, &unshared, &nVal);
  if (!p) return blockCorrupt(it, "bad entry header", off);
  if (shared != 0) return blockCorrupt(it, "restart entry shares a prefix", off);
  if ((u64)unshared + nVal > (u64)(pLimit - p))
    return blockCorrupt(it, "entry overruns the block", off);
  if (unshared < STRATA_TRAILER) return blockCorrupt(it, "key too short", off);
  *ppKey = p;
  *pnKey = unshared;
  return 1;
}

int strataBlockRestartKey(BlockIter *it, u32 i, const u8 **ppKey, size_t *pnKey) {
  if (it->base.rc) return it->base.rc;
  if (i >= it->nRestart) {
    blockCorrupt(it, "restart index out of range", i);
  } else {
    restartKey(it, i, ppKey, pnKey);
  }
  return it->base.rc;
}

void strataBlockIterSeekRestart(BlockIter *it, u32 i) {
  if (it->base.rc) return;
  if (i >= it->nRestart) {
    it->base.bValid = 0;
    return;
  }
  if (seekToRestart(it, i)) parseNext(it);
}

void strataBlockIterSeekFirst(BlockIter *it) {
  if (it->base.rc) return;
  if (seekToRestart(it, 0)) parseNext(it);
}

/* Make room in the reverse record for one more entry with a key of nKey
** bytes (and 8 spare for word copies). Returns 0 if it cannot be had. */
static int prevReserve(BlockIter *it, u32 n, size_t nKeyBytes, size_t nKey) {
  if (n == it->nPrevAlloc) {
    u32 nNew = it->nPrevAlloc ? it->nPrevAlloc * 2 : 32;
    struct BlockPrevEntry *aNew = strataRealloc(it->aPrev, nNew * sizeof(*aNew));
    if (!aNew) return 0;
    it->aPrev = aNew;
    it->nPrevAlloc = nNew;
  }
  if (nKeyBytes + nKey + 8 > it->prevKeys.nAlloc) {
    it->prevKeys.n = nKeyBytes;
    if (strataBufReserve(&it->prevKeys, nKey + 8) != STRATA_OK) return 0;
  }
  return 1;
}

/* prevFill without the record (its memory could not be had): decode from
** restart r to the entry that ends at stop and leave it current. */
static int prevFillSlow(BlockIter *it, u32 r, u32 stop) {
  it->nPrev = 0;
  if (!seekToRestart(it, r)) return 0;
  do {
    if (!parseNext(it)) return 0;
  } while (it->iNext < stop);
  return 1;
}

/* Where prevFill's loop stopped: the next entry's offset, the next record
** slot, the end of the keys recorded and the length of the last one. */
typedef struct PrevFillPos {
  u32 off;
  u32 n;
  size_t nKeyBytes;
  size_t nPrevKey;
} PrevFillPos;

/* prevFill's loop for entries of every form, from pos on. Returns 1 with
** pos updated, 0 if prevFill fails (the iterator is invalid, rc set on
** damage), or 2 if the record could not grow and prevFillSlow did the
** work without it. */
static __attribute__((noinline)) int prevFillGeneral(BlockIter *it, u32 r, u32 stop,
                                                     PrevFillPos *pos) {
  const u8 *a = it->aData, *pLimit = a + it->nLimit;
  u32 off = pos->off, n = pos->n;
  size_t nKeyBytes = pos->nKeyBytes, nPrevKey = pos->nPrevKey;
  do {
    const u8 *p;
    u8 *pKey;
    struct BlockPrevEntry *e;
    u32 shared, unshared, nVal;
    size_t nKey;
    if ((p = entryHeader(a + off, pLimit, &shared, &unshared, &nVal)) == NULL) {
      return blockCorrupt(it, "bad entry header", off);
    }
    if (shared > nPrevKey) return blockCorrupt(it, "shared prefix too long", off);
    if ((u64)unshared + nVal > (u64)(pLimit - p)) {
      return blockCorrupt(it, "entry overruns the block", off);
    }
    nKey = (size_t)shared + unshared;
    if (nKey < STRATA_TRAILER) return blockCorrupt(it, "key too short", off);
    if (n == it->nPrevAlloc || nKeyBytes + nKey + 8 > it->prevKeys.nAlloc) {
      if (!prevReserve(it, n, nKeyBytes, nKey)) return prevFillSlow(it, r, stop) ? 2 : 0;
    }
    /* See prevFill on the word copies. */
    pKey = it->prevKeys.a + nKeyBytes;
    if (shared) strataBlockCopyWords(pKey, pKey - nPrevKey, shared);
    strataBlockCopyWords(pKey + shared, p, unshared);
    e = &it->aPrev[n++];
    e->iCur = off;
    e->iKey = (u32)nKeyBytes;
    e->nKey = (u32)nKey;
    e->iVal = (u32)(p + unshared - a);
    e->nVal = nVal;
    nPrevKey = nKey;
    nKeyBytes += nKey;
    off = e->iVal + nVal;
  } while (off < stop);
  pos->off = off;
  pos->n = n;
  pos->nKeyBytes = nKeyBytes;
  return 1;
}

_Static_assert(offsetof(struct BlockPrevEntry, iKey) == offsetof(struct BlockPrevEntry, iCur) + 4 &&
                   offsetof(struct BlockPrevEntry, iVal) ==
                       offsetof(struct BlockPrevEntry, nKey) + 4,
               "prevFill stores these pairs as one word each");

/* strataBlockCopyWords for prevFill's loop, where most copies are of a word
** or two: the first word is copied without a test (so n = 0 copies one
** too, which the callers have room for). */
static inline void prevCopyWords(u8 *pDst, const u8 *pSrc, size_t n) {
  size_t i;
  strataPut64(pDst, strataGet64(pSrc));
  for (i = 8; i < n; i += 8) strataPut64(pDst + i, strataGet64(pSrc + i));
}

/* Decode restart region r from its restart point through the entry that
** ends at offset stop (or the last entry before the end of the entries),
** recording each (REVERSE), and leave the last one current. Each key is
** assembled in its place in prevKeys, from the key recorded before it, so
** an entry is decoded and copied once. Returns 0 if no entry was decoded or
** on damage (rc set) or end of the entries; then the iterator is invalid.
**
** Entries of the common form (one-byte lengths, inside [off, stop), room in
** the record) take prevFill's own loop, whose state is kept in locals; the
** first entry off that form, and every one after it, prevFillGeneral's,
** which grows the record and reports damage. */
static int prevFill(BlockIter *it, u32 r, u32 stop) {
  const u8 *a = it->aData;
  const u32 nLimit = it->nLimit;
  PrevFillPos pos;
  u32 off, n;
  size_t nKeyBytes, nPrevKey = 0;
  /* In locals: the key copies are byte stores, which could alias the
  ** iterator's fields as far as the compiler knows. */
  struct BlockPrevEntry *aPrev = it->aPrev, *e = aPrev, *eEnd = aPrev;
  u8 *aKeys = it->prevKeys.a, *pKey = aKeys, *pKeyMax = aKeys;
  it->nPrev = 0;
  it->prevKeys.n = 0;
  setRestart(it, r);
  off = restartAt(it, r);
  if (off > nLimit) return blockCorrupt(it, "restart offset out of range", off);
  if (stop > nLimit) stop = nLimit;
  if (aPrev) eEnd = aPrev + it->nPrevAlloc; /* none yet: prevFillGeneral makes them */
  /* A key fits at pKey, with 8 spare for word copies, if it ends by pKeyMax. */
  if (aKeys && it->prevKeys.nAlloc >= 8) pKeyMax = aKeys + it->prevKeys.nAlloc - 8;

  /* The common form. off < stop <= nLimit: p[0..3] are in the block even
  ** if the entry is not (the restart array, 8 bytes or more, follows). An
  ** entry that would end past stop is left to prevFillGeneral too: within
  ** the entries it is damage that strataBlockIterPrev reports. */
  while (off < stop) {
    const u8 *p = a + off;
    u32 h = strataGet32(p), shared, unshared, nVal, iVal, iEnd;
    size_t nKey;
    if (h & 0x808080) break;
    shared = h & 0xff;
    unshared = (h >> 8) & 0xff;
    nVal = (h >> 16) & 0xff;
    iVal = off + 3 + unshared;
    iEnd = iVal + nVal; /* no overflow: nLimit < 2 GiB */
    nKey = (size_t)shared + unshared;
    if (shared > nPrevKey || iEnd > stop || nKey < STRATA_TRAILER || e == eEnd ||
        nKey > (size_t)(pKeyMax - pKey)) {
      break;
    }
    /* The shared bytes come from the key just before, which ends where
    ** this one starts: a word copy may read past them into bytes it has
    ** just written, but those land at or after pKey + shared, which the
    ** unshared copy then overwrites. That one may read up to 7 bytes past
    ** the key, as in parseNext. */
    if (shared) prevCopyWords(pKey, pKey - nPrevKey, shared);
    prevCopyWords(pKey + shared, p + 3, unshared);
    /* The five fields in three stores (a compiler would otherwise gather
    ** them in a vector register first, at more cost). */
    strataPut64((u8 *)&e->iCur, (u64)off | (u64)(pKey - aKeys) << 32);
    strataPut64((u8 *)&e->nKey, (u64)nKey | (u64)iVal << 32);
    e->nVal = nVal;
    e++;
    pKey += nKey;
    nPrevKey = nKey;
    off = iEnd;
  }
  n = (u32)(e - aPrev);
  nKeyBytes = (size_t)(pKey - aKeys);
  if (off < stop) {
    /* Every other form, and damage. */
    int rc;
    pos.off = off;
    pos.n = n;
    pos.nKeyBytes = nKeyBytes;
    pos.nPrevKey = nPrevKey;
    rc = prevFillGeneral(it, r, stop, &pos);
    if (rc != 1) return rc != 0;
    off = pos.off;
    n = pos.n;
    nKeyBytes = pos.nKeyBytes;
    aPrev = it->aPrev;
    aKeys = it->prevKeys.a;
  }

  if (n == 0) {
    it->base.bValid = 0;
    return 0;
  }
  it->nPrev = n;
  it->prevKeys.n = nKeyBytes;
  e = &aPrev[n - 1];
  it->base.pKey = aKeys + e->iKey;
  it->base.nKey = e->nKey;
  it->base.pVal = a + e->iVal;
  it->base.nVal = e->nVal;
  it->iCur = e->iCur;
  it->iNext = off;
  it->base.bValid = 1;
  return 1;
}

void strataBlockIterSeekLast(BlockIter *it) {
  if (it->base.rc) return;
  prevFill(it, it->nRestart - 1, it->nLimit);
}

void strataBlockIterSeek(BlockIter *it, const u8 *pKey, size_t nKey) {
  u32 lo = 0, hi = it->nRestart - 1;
  int c = 0;
  SeekKey k;
  if (it->base.rc) return;
  seekKeyInit(&k, pKey, nKey);
  if (it->base.bValid) {
    c = strataIkeyCompare(it->base.pKey, it->base.nKey, pKey, nKey);
    if (c == 0) return;
    if (c < 0)
      lo = it->iRestart; /* its restart key <= current < target */
    else
      hi = it->iRestart; /* the answer is at or before the current entry */
  }
  /* A fresh seek in a block of few restarts (a data block) asks for every
  ** restart entry it may read at once: a block from the cache is cold, and
  ** the search would otherwise wait for them one after the other. */
  if (!it->base.bValid && hi - lo < 16) {
    u32 i;
    for (i = lo; i <= hi; i++) {
      u32 off = restartAt(it, i);
      if (off < it->nLimit) __builtin_prefetch(it->aData + off);
    }
  }
  /* Find the last restart whose key is < target. */
  while (lo < hi) {
    u32 mid = lo + (hi - lo + 1) / 2;
    const u8 *pMid;
    size_t nMid;
    if (!restartKey(it, mid, &pMid, &nMid)) return;
    if (seekCompare(pMid, nMid, &k) < 0)
      lo = mid;
    else
      hi = mid - 1;
  }
  /* A forward seek within the current region goes on from where we are. */
  if (!(it->base.bValid && c < 0 && lo == it->iRestart)) {
    if (!seekToRestart(it, lo)) return;
  }
  seekScan(it, &k);
}

void strataBlockIterNext(BlockIter *it) {
  if (!it->base.bValid) return;
  parseNext(it);
}

void strataBlockIterPrev(BlockIter *it) {
  u32 orig = it->iCur, r = it->iRestart;
  if (!it->base.bValid) return;
  if (strataBlockIterStepBack(it)) return;
  while (restartAt(it, r) >= orig) {
    if (r == 0) {
      it->base.bValid = 0; /* before the first entry */
      return;
    }
    r--;
  }
  if (!prevFill(it, r, orig)) {
    if (!it->base.rc) blockCorrupt(it, "restart points out of order", orig);
    return;
  }
  if (it->iNext != orig) blockCorrupt(it, "restart points out of order", orig);
}

/* The StrataIter face of a heap-allocated BlockIter. */
static void biSeekFirst(StrataIter *p) {
  strataBlockIterSeekFirst((BlockIter *)p);
}
static void biSeekLast(StrataIter *p) {
  strataBlockIterSeekLast((BlockIter *)p);
}
static void biSeek(StrataIter *p, const u8 *k, size_t n) {
  strataBlockIterSeek((BlockIter *)p, k, n);
}
static void biNext(StrataIter *p) {
  strataBlockIterNext((BlockIter *)p);
}
static void biPrev(StrataIter *p) {
  strataBlockIterPrev((BlockIter *)p);
}
static void biClose(StrataIter *p) {
  strataBlockIterRelease((BlockIter *)p);
  strataFreeMem(p);
}
static const StrataIterMethods blockIterMethods = {biSeekFirst, biSeekLast, biSeek,
                                                   biNext,      biPrev,     biClose};

int strataBlockIterNew(const u8 *a, size_t n, StrataIter **ppIter) {
  BlockIter *it = strataMallocZero(sizeof(*it));
  *ppIter = NULL;
  if (!it) return strataErr(STRATA_NOMEM, "out of memory");
  strataBlockIterInit(it, a, n);
  *ppIter = &it->base;
  return STRATA_OK;
}

/* CHECK */

int strataBlockCheck(const u8 *a, size_t n, u64 *pnEntries) {
  BlockIter it;
  StrataBuf prev = {0};
  u64 nEntries = 0;
  u32 j = 0, i;
  int rc = STRATA_OK;
  *pnEntries = 0;
  it.aKey = NULL;
  strataBlockIterInit(&it, a, n);
  if (it.base.rc) return it.base.rc;
  if (restartAt(&it, 0) != 0) {
    blockCorrupt(&it, "first restart is not at 0", restartAt(&it, 0));
    goto check_done;
  }
  for (i = 1; i < it.nRestart; i++) {
    if (restartAt(&it, i) <= restartAt(&it, i - 1) || restartAt(&it, i) >= it.nLimit) {
      blockCorrupt(&it, "restart offsets out of order", restartAt(&it, i));
      goto check_done;
    }
  }
  for (strataBlockIterSeekFirst(&it); it.base.bValid; strataBlockIterNext(&it)) {
    if (j < it.nRestart && restartAt(&it, j) == it.iCur) {
      const u8 *pK;
      size_t nK;
      if (!restartKey(&it, j, &pK, &nK)) goto check_done;
      j++;
    } else if (j < it.nRestart && restartAt(&it, j) < it.iCur) {
      blockCorrupt(&it, "restart offset is not an entry", restartAt(&it, j));
      goto check_done;
    }
    if (nEntries > 0 && strataIkeyCompare(prev.a, prev.n, it.base.pKey, it.base.nKey) >= 0) {
      blockCorrupt(&it, "keys out of order", it.iCur);
      goto check_done;
    }
    if ((rc = strataBufSet(&prev, it.base.pKey, it.base.nKey)) != STRATA_OK) goto check_done;
    nEntries++;
  }
  if (it.base.rc == STRATA_OK && nEntries > 0 && j != it.nRestart) {
    blockCorrupt(&it, "restart offset is not an entry", restartAt(&it, j));
  }
check_done:
  if (rc == STRATA_OK) rc = it.base.rc;
  strataBlockIterRelease(&it);
  strataBufFree(&prev);
  if (rc == STRATA_OK) *pnEntries = nEntries;
  return rc;
}
