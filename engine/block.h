/*
** block.h -- the block encoding (block.c), shared by sstable.c only.
**
** A block is a run of prefix-compressed entries followed by an array of
** restart offsets; see block.c and doc/FORMAT.md for the layout. Keys are
** internal keys (at least 8 bytes, ordered by strataIkeyCompare): data
** blocks map internal keys to values, index blocks map separator keys to
** block handles.
*/
#ifndef STRATA_BLOCK_H
#define STRATA_BLOCK_H

#include "strataInt.h"

/* A decoded block is never larger than this (a reader rejects claims above
** it before allocating). The builder keeps to it: blocks are cut at
** nBlockSize, at most SST_MAX_BLOCK_SIZE, before an entry of at most
** 1 GiB + 64 KiB is added. */
#define STRATA_BLOCK_MAX ((u64)0x80000000u)

/* Bytes of key the iterator decodes without allocating. */
#define BLOCK_INLINE_KEY 200

/* BUILDER. Zero-initialize, then strataBlockBuilderInit. */
typedef struct BlockBuilder {
  StrataBuf buf;      /* entries; restarts are appended by Finish */
  StrataBuf restarts; /* u32 offsets of restart entries */
  StrataBuf lastKey;  /* the previous key, for prefix compression */
  int restartInterval;
  int nSinceRestart; /* entries since the last restart point */
  u64 nEntries;
  int bFinished;
} BlockBuilder;

void strataBlockBuilderInit(BlockBuilder *b, int restartInterval);
/* Forget the contents (keep the memory) to start the next block. */
void strataBlockBuilderReset(BlockBuilder *b);
void strataBlockBuilderFree(BlockBuilder *b);
/* Append an entry. Keys must be added in increasing order (not checked
** here). STRATA_OK or STRATA_NOMEM (the builder is then unusable). */
int strataBlockBuilderAdd(BlockBuilder *b, const u8 *pKey, size_t nKey, const u8 *pVal,
                          size_t nVal);
/* Append the restart array; *ppOut, *pnOut is the finished block, valid
** until the next Reset or Free. STRATA_OK or STRATA_NOMEM. */
int strataBlockBuilderFinish(BlockBuilder *b, const u8 **ppOut, size_t *pnOut);
/* Size of the block if finished now. */
static inline size_t strataBlockBuilderSize(const BlockBuilder *b) {
  return b->buf.n + b->restarts.n + 4;
}
static inline int strataBlockBuilderEmpty(const BlockBuilder *b) {
  return b->nEntries == 0;
}

/* An entry of the reverse record (REVERSE in block.c). Every entry of a
** record is in the same restart region, iRestart's while the record is in
** use. */
struct BlockPrevEntry {
  u32 iCur; /* offset of the entry */
  u32 iKey; /* its key is prevKeys.a[iKey .. iKey + nKey) */
  u32 nKey;
  u32 iVal; /* its value is aData[iVal .. iVal + nVal) */
  u32 nVal;
}; /* prevFill stores iCur with iKey, and nKey with iVal, as one word each */

/* ITERATOR. A BlockIter reads a block it does not own: the block bytes must
** stay unchanged while the iterator uses them. It may live on the stack or
** inside another object (no allocation moving forward unless a key is
** longer than BLOCK_INLINE_KEY; the first backward move allocates a small
** buffer of decoded entries, kept until Release, and goes on without it if
** that fails); strataBlockIterNew makes a standalone StrataIter.
** Its base.pKey/pVal point into the block or into the iterator. Errors
** (damaged block: STRATA_CORRUPT; STRATA_NOMEM) are in base.rc, with the
** message set, and leave it invalid until the next strataBlockIterInit. */
typedef struct BlockIter {
  StrataIter base;
  const u8 *aData; /* the block */
  const u8 *aRestart;
  u32 nLimit; /* end of the entries = start of the restart array */
  u32 nRestart;
  u32 iCur;     /* offset of the current entry */
  u32 iNext;    /* offset of the entry after it */
  u32 iRestart; /* restart region that holds the current entry */
  u32 iRestartNext; /* offset of restart iRestart + 1 (UINT32_MAX: none) */
  u8 *aKey;     /* decoded key buffer: aKeyInline or a heap buffer */
  size_t nKeyAlloc;
  /* Reverse steps: the entries of one restart region, decoded once (see
  ** REVERSE in block.c). Heap buffers, made by the first backward move. */
  struct BlockPrevEntry *aPrev;
  u32 nPrev;   /* entries recorded; aPrev[nPrev - 1] is the current one */
  u32 nPrevAlloc;
  StrataBuf prevKeys; /* their keys, back to back */
  u8 aKeyInline[BLOCK_INLINE_KEY];
} BlockIter;

/* Copy n bytes in 8-byte words: may read and write up to 7 bytes past
** the end of both. */
static inline void strataBlockCopyWords(u8 *pDst, const u8 *pSrc, size_t n) {
  size_t i;
  for (i = 0; i < n; i += 8) strataPut64(pDst + i, strataGet64(pSrc + i));
}

/* Move iRestart to the region of the current entry (for strataBlockIterStep). */
void strataBlockIterFollowRestart(BlockIter *it);

/* The common case of strataBlockIterNext, inline for the table iterator's
** step: the iterator is valid, the next entry has one-byte lengths and a
** key that fits the key buffer with room for word copies, and it either
** starts a restart region or extends the key before it, in the buffer or
** in place in the block. Returns
** 1 if it stepped; 0 (nothing changed) if the caller must use
** strataBlockIterNext, which handles every case, the end of the entries
** and damage included. */
static inline int strataBlockIterStep(BlockIter *it) {
  const u8 *a = it->aData, *p;
  u32 off = it->iNext, shared, unshared, nVal, iEnd;
  size_t nKey;
  /* off < nLimit: p[0..2] are in the block (the restart array follows). */
  if (off >= it->nLimit) return 0;
  p = a + off;
  shared = p[0];
  unshared = p[1];
  nVal = p[2];
  if ((shared | unshared | nVal) >= 0x80) return 0;
  iEnd = off + 3 + unshared + nVal; /* no overflow: nLimit < 2 GiB */
  nKey = (size_t)shared + unshared;
  if (iEnd > it->nLimit || nKey < STRATA_TRAILER) return 0;
  p += 3;
  if (shared == 0) {
    it->base.pKey = p; /* whole key in the block: used in place */
  } else {
    if (shared > it->base.nKey || nKey + 8 > it->nKeyAlloc) return 0;
    if (it->base.pKey != it->aKey) {
      /* The previous key was in place (it started a restart region): its
      ** shared bytes come first. Word reads from it stay in the block (the
      ** restart array follows the entries); anywhere else (a key of the
      ** reverse record), Next takes the step. */
      if ((uintptr_t)it->base.pKey - (uintptr_t)a >= it->nLimit) return 0;
      strataBlockCopyWords(it->aKey, it->base.pKey, shared);
      it->base.pKey = it->aKey;
    }
    strataBlockCopyWords(it->aKey + shared, p, unshared); /* safe: see parseNext */
  }
  it->base.nKey = nKey;
  it->base.pVal = p + unshared;
  it->base.nVal = nVal;
  it->iCur = off;
  it->iNext = iEnd;
  if (UNLIKELY(off >= it->iRestartNext)) strataBlockIterFollowRestart(it);
  return 1;
}

/* 1 if the entry before the current one is in the reverse record, so that
** strataBlockIterStepBack will take it: a step that writes nothing, and
** leaves every key and value the iterator has published since its record
** was filled where it is (KEPT ENTRIES in strataInt.h). */
static inline int strataBlockIterCanStepBack(const BlockIter *it) {
  return it->nPrev >= 2 && it->aPrev[it->nPrev - 1].iCur == it->iCur;
}

/* The common case of strataBlockIterPrev, inline: the iterator is valid
** and the entry before the current one is in the reverse record. Returns 1
** if it stepped back; 0 (nothing changed) if the caller must use
** strataBlockIterPrev. */
static inline int strataBlockIterStepBack(BlockIter *it) {
  const struct BlockPrevEntry *e;
  if (!strataBlockIterCanStepBack(it)) return 0;
  e = &it->aPrev[--it->nPrev - 1];
  it->base.pKey = it->prevKeys.a + e->iKey;
  it->base.nKey = e->nKey;
  it->base.pVal = it->aData + e->iVal;
  it->base.nVal = e->nVal;
  it->iCur = e->iCur;
  it->iNext = e->iVal + e->nVal;
  return 1; /* same restart region */
}

/* Point it at block a/n (keeping any buffers). Unpositioned afterwards;
** a structurally impossible block (restart array) sets base.rc =
** STRATA_CORRUPT. Call first with aKey = NULL (the other buffers are then
** set up too), or after strataBlockIterRelease. */
void strataBlockIterInit(BlockIter *it, const u8 *a, size_t n);
/* Free the buffers (the iterator can be Init'ed again afterwards). */
void strataBlockIterRelease(BlockIter *it);
void strataBlockIterSeekFirst(BlockIter *it);
void strataBlockIterSeekLast(BlockIter *it);
void strataBlockIterSeek(BlockIter *it, const u8 *pKey, size_t nKey); /* first key >= */
/* Position on the entry that restart point i starts (invalid if i is
** nRestart or more). For blocks whose every entry is a restart point (index
** blocks) entry i is restart i, so a caller that has located an entry by
** other means can land on it without a search. */
void strataBlockIterSeekRestart(BlockIter *it, u32 i);
/* The key of restart entry i (< nRestart), in place. STRATA_OK or
** STRATA_CORRUPT (the iterator is then invalid with rc set). */
int strataBlockRestartKey(BlockIter *it, u32 i, const u8 **ppKey, size_t *pnKey);
void strataBlockIterNext(BlockIter *it);
void strataBlockIterPrev(BlockIter *it);

/* A heap-allocated iterator over a/n (which must outlive it), closed with
** strataIterClose. STRATA_OK or STRATA_NOMEM; a damaged block yields an
** iterator whose rc is STRATA_CORRUPT. */
int strataBlockIterNew(const u8 *a, size_t n, StrataIter **ppIter);

/* Walk the whole block checking its structure: restart array, every entry
** in bounds, restart entries unshared, first restart at 0, keys strictly
** increasing. Sets *pnEntries. STRATA_OK or STRATA_CORRUPT (message set). */
int strataBlockCheck(const u8 *a, size_t n, u64 *pnEntries);

#endif /* STRATA_BLOCK_H */
