/*
** batch.c -- write batches: the public strata_batch_* calls and the batch
** encoding, which is also the payload of a WAL record.
**
** ENCODING (doc/FORMAT.md is authoritative)
**
**   batch = seq fixed64 | count fixed32 | op[count]
**   op    = type u8 | klen varint32 | key[klen]                       (type 0, delete)
**         | type u8 | klen varint32 | key[klen] | vlen varint32 | value[vlen]  (type 1)
**
**   seq is the sequence number of the first operation, filled in at commit;
**   operation i gets seq + i. The batch is kept encoded from the start, so a
**   commit writes b->rep to the log as it is, with no re-encoding.
**
** PARSING
**
**   strataBatchIterate reads WAL payloads after a crash and must trust
**   nothing: every length is checked against the end of the buffer before it
**   is used. It validates the whole batch before calling xOp for any
**   operation, so a damaged batch is rejected as a unit and never half
**   applied. The extra pass is a walk over a few varints per operation,
**   small next to a memtable insert.
**
** LIMITS
**
**   Keys up to STRATA_MAX_KEY, values up to STRATA_MAX_VALUE, and a whole
**   encoding up to BATCH_MAX_BYTES, so that it fits in one log record (whose
**   length is 32 bits): a batch that could never be committed is refused at
**   the put that would make it so.
*/
#include "strataInt.h"

#include <assert.h>

#define BATCH_SEQ 0   /* offset of the fixed64 sequence number */
#define BATCH_COUNT 8 /* offset of the fixed32 operation count */
#define BATCH_MAX_BYTES ((u64)0xffffffffu - 64)

static void batchSetCount(strata_batch *b, u32 n) { strataPut32(b->rep.a + BATCH_COUNT, n); }

/* Returns OK or NOMEM. b's previous contents are ignored (not freed). */
int strataBatchInit(strata_batch *b) {
  memset(b, 0, sizeof(*b));
  if (strataBufReserve(&b->rep, 64)) return STRATA_NOMEM;
  memset(b->rep.a, 0, STRATA_BATCH_HEADER);
  b->rep.n = STRATA_BATCH_HEADER;
  return STRATA_OK;
}

u32 strataBatchCount(const strata_batch *b) { return strataGet32(b->rep.a + BATCH_COUNT); }
void strataBatchSetSeq(strata_batch *b, u64 seq) { strataPut64(b->rep.a + BATCH_SEQ, seq); }
u64 strataBatchSeq(const strata_batch *b) { return strataGet64(b->rep.a + BATCH_SEQ); }

/* Returns OK, MISUSE (ppBatch NULL) or NOMEM. */
int strata_batch_new(strata_batch **ppBatch) {
  strata_batch *b;
  if (!ppBatch) return strataErr(STRATA_MISUSE, "strata_batch_new: NULL output pointer");
  *ppBatch = NULL;
  b = strataMalloc(sizeof(*b));
  if (!b) return strataErr(STRATA_NOMEM, "out of memory");
  if (strataBatchInit(b)) {
    strataFreeMem(b);
    return STRATA_NOMEM;
  }
  *ppBatch = b;
  return STRATA_OK;
}

void strata_batch_free(strata_batch *pBatch) {
  if (!pBatch) return;
  strataBufFree(&pBatch->rep);
  strataFreeMem(pBatch);
}

/* Append one operation. Checks first, then reserves the whole operation at
** once, so a failure (MISUSE, TOOBIG, NOMEM) leaves the batch unchanged. */
static int batchAdd(strata_batch *b, const char *zFunc, int type, const void *pKey, size_t nKey,
                    const void *pVal, size_t nVal) {
  u64 nOp;
  u32 nCount;
  u8 *p;
  if (!b) return strataErr(STRATA_MISUSE, "%s: NULL batch", zFunc);
  if ((!pKey && nKey) || (!pVal && nVal)) {
    return strataErr(STRATA_MISUSE, "%s: NULL pointer with a nonzero length", zFunc);
  }
  if (nKey > STRATA_MAX_KEY) {
    return strataErr(STRATA_TOOBIG, "%s: key of %zu bytes exceeds the limit of %d bytes", zFunc,
                     nKey, STRATA_MAX_KEY);
  }
  if (nVal > STRATA_MAX_VALUE) {
    return strataErr(STRATA_TOOBIG, "%s: value of %zu bytes exceeds the limit of %d bytes", zFunc,
                     nVal, STRATA_MAX_VALUE);
  }
  nCount = strataBatchCount(b);
  nOp = 1 + 5 + (u64)nKey + (type == STRATA_TYPE_VALUE ? 5 + (u64)nVal : 0);
  if (nCount == 0xffffffffu || b->rep.n + nOp > BATCH_MAX_BYTES) {
    return strataErr(STRATA_TOOBIG, "%s: batch too large (%zu bytes, %u operations)", zFunc,
                     b->rep.n, nCount);
  }
  if (strataBufReserve(&b->rep, (size_t)nOp)) return STRATA_NOMEM;
  p = b->rep.a + b->rep.n;
  *p++ = (u8)type;
  p += strataPutVarint32(p, (u32)nKey);
  if (nKey) memcpy(p, pKey, nKey);
  p += nKey;
  if (type == STRATA_TYPE_VALUE) {
    p += strataPutVarint32(p, (u32)nVal);
    if (nVal) memcpy(p, pVal, nVal);
    p += nVal;
  }
  b->rep.n = (size_t)(p - b->rep.a);
  batchSetCount(b, nCount + 1);
  b->nUserBytes += nKey + nVal;
  return STRATA_OK;
}

/* Returns OK, MISUSE (NULL batch, NULL pointer with a length), TOOBIG or
** NOMEM; on failure the batch is unchanged. */
int strata_batch_put(strata_batch *pBatch, const void *pKey, size_t nKey, const void *pVal,
                     size_t nVal) {
  return batchAdd(pBatch, "strata_batch_put", STRATA_TYPE_VALUE, pKey, nKey, pVal, nVal);
}

/* As strata_batch_put. */
int strata_batch_delete(strata_batch *pBatch, const void *pKey, size_t nKey) {
  return batchAdd(pBatch, "strata_batch_delete", STRATA_TYPE_DELETE, pKey, nKey, NULL, 0);
}

/* Empty the batch, keeping its memory. Accepts NULL. */
void strata_batch_clear(strata_batch *pBatch) {
  if (!pBatch) return;
  memset(pBatch->rep.a, 0, STRATA_BATCH_HEADER);
  pBatch->rep.n = STRATA_BATCH_HEADER;
  pBatch->nUserBytes = 0;
}

/* Operations in the batch; 0 for NULL. */
size_t strata_batch_count(const strata_batch *pBatch) {
  return pBatch ? strataBatchCount(pBatch) : 0;
}

/* Append src's operations after dst's. Returns OK, TOOBIG (the result would
** exceed the limits) or NOMEM; on failure dst is unchanged. */
int strataBatchAppend(strata_batch *pDst, const strata_batch *pSrc) {
  u32 nDst = strataBatchCount(pDst), nSrc = strataBatchCount(pSrc);
  size_t nBody = pSrc->rep.n - STRATA_BATCH_HEADER;
  if (nSrc > 0xffffffffu - nDst || (u64)pDst->rep.n + nBody > BATCH_MAX_BYTES) {
    return strataErr(STRATA_TOOBIG, "batch too large (%zu + %zu bytes)", pDst->rep.n, nBody);
  }
  if (strataBufAppend(&pDst->rep, pSrc->rep.a + STRATA_BATCH_HEADER, nBody)) return STRATA_NOMEM;
  batchSetCount(pDst, nDst + nSrc);
  pDst->nUserBytes += pSrc->nUserBytes;
  return STRATA_OK;
}

/* One operation parsed from [p, pEnd). */
typedef struct BatchOp {
  int type;
  const u8 *pKey;
  u32 nKey;
  const u8 *pVal;
  u32 nVal;
} BatchOp;

/* Parse the operation at p. Returns the byte after it, or NULL if it is
** damaged (*pzWhy says how). Never reads at or past pEnd. */
static const u8 *batchParseOp(const u8 *p, const u8 *pEnd, BatchOp *pOp, const char **pzWhy) {
  if (p >= pEnd) {
    *pzWhy = "fewer operations than its count";
    return NULL;
  }
  pOp->type = *p++;
  if (pOp->type != STRATA_TYPE_VALUE && pOp->type != STRATA_TYPE_DELETE) {
    *pzWhy = "unknown operation type";
    return NULL;
  }
  p = strataGetVarint32(p, pEnd, &pOp->nKey);
  if (!p || pOp->nKey > (size_t)(pEnd - p) || pOp->nKey > STRATA_MAX_KEY) {
    *pzWhy = "bad key length";
    return NULL;
  }
  pOp->pKey = p;
  p += pOp->nKey;
  pOp->pVal = NULL;
  pOp->nVal = 0;
  if (pOp->type == STRATA_TYPE_VALUE) {
    p = strataGetVarint32(p, pEnd, &pOp->nVal);
    if (!p || pOp->nVal > (size_t)(pEnd - p) || pOp->nVal > STRATA_MAX_VALUE) {
      *pzWhy = "bad value length";
      return NULL;
    }
    pOp->pVal = p;
    p += pOp->nVal;
  }
  return p;
}

/* Returns CORRUPT (with the message) if rep/n is damaged, else OK, or the
** first nonzero value xOp returned. xOp is called only for a batch that
** parsed completely. Sequence numbers must stay within STRATA_MAX_SEQ. */
int strataBatchIterate(const u8 *rep, size_t n, void *pCtx,
                       int (*xOp)(void *pCtx, u64 seq, int type, const u8 *pKey, size_t nKey,
                                  const u8 *pVal, size_t nVal)) {
  const u8 *pEnd = rep + n, *p;
  const char *zWhy = NULL;
  BatchOp op;
  u64 seq;
  u32 nCount, i;
  if (n < STRATA_BATCH_HEADER) {
    return strataErr(STRATA_CORRUPT, "batch: %zu bytes is shorter than a batch header", n);
  }
  seq = strataGet64(rep + BATCH_SEQ);
  nCount = strataGet32(rep + BATCH_COUNT);
  if (nCount && (seq > STRATA_MAX_SEQ || nCount - 1 > STRATA_MAX_SEQ - seq)) {
    return strataErr(STRATA_CORRUPT, "batch: sequence numbers %llu + %u out of range",
                     (unsigned long long)seq, nCount);
  }
  /* Pass 1: validate everything. */
  p = rep + STRATA_BATCH_HEADER;
  for (i = 0; i < nCount; i++) {
    p = batchParseOp(p, pEnd, &op, &zWhy);
    if (!p) {
      return strataErr(STRATA_CORRUPT, "batch: operation %u of %u: %s", i, nCount, zWhy);
    }
  }
  if (p != pEnd) {
    return strataErr(STRATA_CORRUPT, "batch: %zu bytes after the last of %u operations",
                     (size_t)(pEnd - p), nCount);
  }
  /* Pass 2: apply. */
  p = rep + STRATA_BATCH_HEADER;
  for (i = 0; i < nCount; i++) {
    int rc;
    p = batchParseOp(p, pEnd, &op, &zWhy);
    rc = xOp(pCtx, seq + i, op.type, op.pKey, op.nKey, op.pVal, op.nVal);
    if (rc) return rc;
  }
  return STRATA_OK;
}

/* Call xOp for the operations of b from byte offset iOff, which must be
** where an operation starts (STRATA_BATCH_HEADER for the first), giving the
** first of them sequence number seq and the next ones seq + 1, ... Only for
** a batch built by the calls above: its encoding is trusted, not checked.
** Returns OK or the first nonzero value xOp returned. */
int strataBatchForEach(const strata_batch *b, size_t iOff, u64 seq, void *pCtx,
                       int (*xOp)(void *pCtx, u64 seq, int type, const u8 *pKey, size_t nKey,
                                  const u8 *pVal, size_t nVal)) {
  const u8 *p = b->rep.a + iOff, *pEnd = b->rep.a + b->rep.n;
  const char *zWhy = NULL;
  BatchOp op;
  while (p < pEnd) {
    int rc;
    p = batchParseOp(p, pEnd, &op, &zWhy);
    if (!p) return strataErr(STRATA_CORRUPT, "batch: %s", zWhy); /* cannot happen */
    rc = xOp(pCtx, seq++, op.type, op.pKey, op.nKey, op.pVal, op.nVal);
    if (rc) return rc;
  }
  return STRATA_OK;
}

/* A trusted varint32 at p: the one-byte form inline. */
static inline const u8 *batchGetLen(const u8 *p, const u8 *pEnd, u32 *pn) {
  if (LIKELY(*p < 0x80)) {
    *pn = *p;
    return p + 1;
  }
  return strataGetVarint32(p, pEnd, pn);
}

/* The operations of b by reference, for a commit to sort: a plain walk
** over the trusted encoding, without a call per operation. */
u32 strataBatchCollect(const strata_batch *b, BatchOpRef *a) {
  const u8 *p = b->rep.a + STRATA_BATCH_HEADER, *pEnd = b->rep.a + b->rep.n;
  u32 i;
  for (i = 0; p < pEnd; i++) {
    BatchOpRef *r = &a[i];
    r->type = *p++;
    p = batchGetLen(p, pEnd, &r->nKey);
    assert(p && r->nKey <= (size_t)(pEnd - p));
    r->pKey = p;
    p += r->nKey;
    if (r->type == STRATA_TYPE_VALUE) {
      p = batchGetLen(p, pEnd, &r->nVal);
      assert(p && r->nVal <= (size_t)(pEnd - p));
      r->pVal = p;
      p += r->nVal;
    } else {
      r->pVal = NULL;
      r->nVal = 0;
    }
    r->iOp = i;
  }
  assert(i == strataBatchCount(b));
  return i;
}
