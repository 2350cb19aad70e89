/*
** compress.c -- block compression. The only file that includes zstd.h.
**
** FORMATS
**
**   STRATA_COMPRESSION_NONE (0): the bytes as they are.
**   STRATA_COMPRESSION_ZSTD (1): one standard zstd frame whose header records
**   the content size, so a reader knows the decoded size before decoding
**   (strataDecompressedSize) and can allocate the output exactly once. No
**   zstd checksum: every block already carries a CRC-32C (see sstable.c).
**
** CONTEXTS
**
**   Creating a zstd context costs far more than compressing a 4 KiB block, so
**   each thread keeps one compression and one decompression context for its
**   lifetime (created on first use, freed by a pthread key destructor when
**   the thread exits, or when it closes a database). A context is never
**   shared between threads.
**
** ERRORS
**
**   zstd error codes never leave this file: a failed decompression is
**   STRATA_CORRUPT (the input is damaged, or not what its header claims), a
**   failed compression is STRATA_NOMEM or STRATA_ERROR; the message carries
**   zstd's own text.
*/
#include "strataInt.h"

#include <pthread.h>
#include <zstd.h>
#include <zstd_errors.h>

/* No object strata compresses decodes to more than this (the largest block
** is a 1 GiB value plus a bounded amount of other entries); a frame header
** that claims more is damage, and must not make us allocate it. */
#define COMPRESS_MAX_DECODED ((u64)0x80000000u)

/* PER-THREAD CONTEXTS */

typedef struct ZstdCtx {
  ZSTD_CCtx *pC;
  ZSTD_DCtx *pD;
} ZstdCtx;

static pthread_key_t ctxKey;
static pthread_once_t ctxKeyOnce = PTHREAD_ONCE_INIT;
static int bCtxKeyOk;
static _Thread_local ZstdCtx *tlCtx;

static void ctxFree(void *p) {
  ZstdCtx *ctx = p;
  if (!ctx) return;
  ZSTD_freeCCtx(ctx->pC);
  ZSTD_freeDCtx(ctx->pD);
  strataFreeMem(ctx);
}

static void ctxKeyInit(void) {
  bCtxKeyOk = pthread_key_create(&ctxKey, ctxFree) == 0;
}

/* The calling thread's context holder, or NULL (message set) on OOM. */
static ZstdCtx *ctxGet(void) {
  ZstdCtx *ctx = tlCtx;
  if (LIKELY(ctx != NULL)) return ctx;
  pthread_once(&ctxKeyOnce, ctxKeyInit);
  ctx = strataMallocZero(sizeof(*ctx));
  if (!ctx) {
    strataErr(STRATA_NOMEM, "out of memory (zstd context)");
    return NULL;
  }
  /* Without the key the context is simply never freed at thread exit. */
  if (bCtxKeyOk) pthread_setspecific(ctxKey, ctx);
  tlCtx = ctx;
  return ctx;
}

void strataCompressThreadRelease(void) {
  if (!tlCtx) return;
  if (bCtxKeyOk) pthread_setspecific(ctxKey, NULL);
  ctxFree(tlCtx);
  tlCtx = NULL;
}

/* COMPRESSION */

/* Append the compressed form of p/n to pOut. NONE appends the bytes as they
** are. Returns STRATA_OK; STRATA_NOMEM; STRATA_ERROR for an unknown type or a
** zstd failure. pOut->n is unchanged on error. */
int strataCompress(int type, int level, const u8 *p, size_t n, StrataBuf *pOut) {
  ZstdCtx *ctx;
  size_t nBound, r;
  int rc;
  if (type == STRATA_COMPRESSION_NONE) return strataBufAppend(pOut, p, n);
  if (type != STRATA_COMPRESSION_ZSTD) {
    return strataErr(STRATA_ERROR, "unknown compression type %d", type);
  }
  if ((ctx = ctxGet()) == NULL) return STRATA_NOMEM;
  if (!ctx->pC && (ctx->pC = ZSTD_createCCtx()) == NULL) {
    return strataErr(STRATA_NOMEM, "out of memory (zstd compression context)");
  }
  if (level < ZSTD_minCLevel()) level = ZSTD_minCLevel();
  if (level > ZSTD_maxCLevel()) level = ZSTD_maxCLevel();
  nBound = ZSTD_compressBound(n);
  rc = strataBufReserve(pOut, nBound);
  if (rc) return rc;
  /* compressCCtx writes the content size into the frame header. */
  r = ZSTD_compressCCtx(ctx->pC, pOut->a + pOut->n, nBound, p, n, level);
  if (ZSTD_isError(r)) {
    int rcErr = ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? STRATA_NOMEM : STRATA_ERROR;
    return strataErr(rcErr, "zstd compression failed: %s", ZSTD_getErrorName(r));
  }
  pOut->n += r;
  return STRATA_OK;
}

/* DECOMPRESSION */

/* Set *pnOut to the decoded size of the compressed object p/n. Returns
** STRATA_OK, or STRATA_CORRUPT if the header is damaged, does not state the
** size, or states an impossible one; STRATA_ERROR for an unknown type. */
int strataDecompressedSize(int type, const u8 *p, size_t n, size_t *pnOut) {
  unsigned long long sz;
  *pnOut = 0;
  if (type == STRATA_COMPRESSION_NONE) {
    *pnOut = n;
    return STRATA_OK;
  }
  if (type != STRATA_COMPRESSION_ZSTD) {
    return strataErr(STRATA_CORRUPT, "unknown compression type %d", type);
  }
  sz = ZSTD_getFrameContentSize(p, n);
  if (sz == ZSTD_CONTENTSIZE_ERROR) {
    return strataErr(STRATA_CORRUPT, "zstd: not a valid frame header (%zu bytes)", n);
  }
  if (sz == ZSTD_CONTENTSIZE_UNKNOWN) {
    return strataErr(STRATA_CORRUPT, "zstd: frame does not record its size");
  }
  if (sz > COMPRESS_MAX_DECODED) {
    return strataErr(STRATA_CORRUPT, "zstd: frame claims an impossible size (%llu bytes)", sz);
  }
  *pnOut = (size_t)sz;
  return STRATA_OK;
}

/* Decode p/n into pOut, which must receive exactly nOut bytes. Returns
** STRATA_OK; STRATA_CORRUPT if the input is damaged or decodes to a
** different size; STRATA_NOMEM if no context can be made. */
int strataDecompress(int type, const u8 *p, size_t n, u8 *pOut, size_t nOut) {
  ZstdCtx *ctx;
  size_t r;
  if (type == STRATA_COMPRESSION_NONE) {
    if (n != nOut) {
      return strataErr(STRATA_CORRUPT, "size mismatch (%zu bytes, expected %zu)", n, nOut);
    }
    if (n) memcpy(pOut, p, n);
    return STRATA_OK;
  }
  if (type != STRATA_COMPRESSION_ZSTD) {
    return strataErr(STRATA_CORRUPT, "unknown compression type %d", type);
  }
  if ((ctx = ctxGet()) == NULL) return STRATA_NOMEM;
  if (!ctx->pD && (ctx->pD = ZSTD_createDCtx()) == NULL) {
    return strataErr(STRATA_NOMEM, "out of memory (zstd decompression context)");
  }
  r = ZSTD_decompressDCtx(ctx->pD, pOut, nOut, p, n);
  if (ZSTD_isError(r)) {
    return strataErr(STRATA_CORRUPT, "zstd decompression failed: %s", ZSTD_getErrorName(r));
  }
  if (r != nOut) {
    return strataErr(STRATA_CORRUPT, "zstd: decoded %zu bytes, expected %zu", r, nOut);
  }
  return STRATA_OK;
}
