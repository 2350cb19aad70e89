/*
** util.c -- allocation hooks, per-thread error messages, varints, buffers.
*/
#include "strataInt.h"

#include <sys/mman.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ALLOCATION
** Every engine allocation passes through strataMalloc/strataRealloc so a test
** can make the Nth one fail and check that the caller recovers. */
static _Atomic int nFailCountdown; /* > 0: fail when it reaches 0 */
static _Atomic int bFailSticky;

static int allocShouldFail(void) {
  int n = atomic_load_explicit(&nFailCountdown, memory_order_relaxed);
  if (LIKELY(n <= 0)) return 0;
  n = atomic_fetch_sub(&nFailCountdown, 1);
  if (n == 1) {
    if (atomic_load(&bFailSticky)) atomic_store(&nFailCountdown, 1);
    return 1;
  }
  return 0;
}

void strataTestFailMalloc(int n, int bSticky) {
  atomic_store(&bFailSticky, bSticky);
  atomic_store(&nFailCountdown, n > 0 ? n : 0);
}

void *strataMalloc(size_t n) {
  if (UNLIKELY(allocShouldFail())) return NULL;
  return malloc(n ? n : 1);
}

void *strataMapAlloc(size_t n) {
  void *p;
  if (UNLIKELY(allocShouldFail())) return NULL;
  p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void strataMapFree(void *p, size_t n) {
  if (p) munmap(p, n ? n : 1);
}

void *strataMallocZero(size_t n) {
  if (UNLIKELY(allocShouldFail())) return NULL;
  return calloc(1, n ? n : 1);
}

void *strataRealloc(void *p, size_t n) {
  if (UNLIKELY(allocShouldFail())) return NULL;
  return realloc(p, n ? n : 1);
}

void strataFreeMem(void *p) { free(p); }

char *strataStrdup(const char *z) {
  size_t n;
  char *zNew;
  if (!z) return NULL;
  n = strlen(z) + 1;
  zNew = strataMalloc(n);
  if (zNew) memcpy(zNew, z, n);
  return zNew;
}

char *strataMprintf(const char *zFmt, ...) {
  va_list ap;
  int n;
  char *z;
  va_start(ap, zFmt);
  n = vsnprintf(NULL, 0, zFmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  z = strataMalloc((size_t)n + 1);
  if (!z) return NULL;
  va_start(ap, zFmt);
  vsnprintf(z, (size_t)n + 1, zFmt, ap);
  va_end(ap);
  return z;
}

void strata_free(void *p) { free(p); }

/* ERROR MESSAGES
** One message per thread: the public API is called from many threads and a
** message must describe the caller's own failure. */
static _Thread_local char zThreadErr[512];

int strataErr(int rc, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(zThreadErr, sizeof(zThreadErr), zFmt, ap);
  va_end(ap);
  return rc;
}

const char *strataErrMsgGet(void) { return zThreadErr[0] ? zThreadErr : "not an error"; }
void strataErrClear(void) { zThreadErr[0] = 0; }
const char *strata_errmsg(void) { return strataErrMsgGet(); }

const char *strata_errstr(int rc) {
  switch (rc) {
    case STRATA_OK: return "not an error";
    case STRATA_ERROR: return "error";
    case STRATA_BUSY: return "database is busy";
    case STRATA_NOMEM: return "out of memory";
    case STRATA_READONLY: return "database is read-only after a failed write";
    case STRATA_IOERR: return "I/O error";
    case STRATA_CORRUPT: return "database is corrupt";
    case STRATA_NOTFOUND: return "not found";
    case STRATA_FULL: return "disk is full";
    case STRATA_CANTOPEN: return "cannot open database";
    case STRATA_TOOBIG: return "key or value too big";
    case STRATA_MISUSE: return "API misuse";
    default: return "unknown error";
  }
}

u64 strataNowMicros(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (u64)ts.tv_sec * 1000000u + (u64)ts.tv_nsec / 1000u;
}

int strataMemcmp(const void *a, const void *b, size_t n) { return memcmp(a, b, n); }

/* VARINTS */
int strataPutVarint32(u8 *p, u32 v) { return strataPutVarint64(p, v); }

int strataPutVarint64(u8 *p, u64 v) {
  int i = 0;
  while (v >= 0x80) {
    p[i++] = (u8)(v | 0x80);
    v >>= 7;
  }
  p[i++] = (u8)v;
  return i;
}

int strataVarintLen(u64 v) {
  int n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

const u8 *strataGetVarint32(const u8 *p, const u8 *pEnd, u32 *pv) {
  u32 v = 0;
  int shift;
  if (LIKELY(p < pEnd && *p < 0x80)) {
    *pv = *p;
    return p + 1;
  }
  /* At most 5 bytes; the fifth carries only 4 value bits. */
  for (shift = 0; shift <= 28 && p < pEnd; shift += 7) {
    u32 b = *p++;
    if (shift == 28 && b > 0x0f) return NULL;
    v |= (b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *pv = v;
      return p;
    }
  }
  return NULL;
}

const u8 *strataGetVarint64(const u8 *p, const u8 *pEnd, u64 *pv) {
  u64 v = 0;
  int shift;
  /* At most 10 bytes; the tenth carries only 1 value bit. */
  for (shift = 0; shift <= 63 && p < pEnd; shift += 7) {
    u64 b = *p++;
    if (shift == 63 && b > 1) return NULL;
    v |= (b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *pv = v;
      return p;
    }
  }
  return NULL;
}

/* BUFFERS */
int strataBufReserve(StrataBuf *b, size_t nExtra) {
  size_t nNeed = b->n + nExtra;
  if (nNeed > b->nAlloc) {
    size_t nNew = b->nAlloc ? b->nAlloc * 2 : 64;
    u8 *aNew;
    while (nNew < nNeed) nNew *= 2;
    aNew = strataRealloc(b->a, nNew);
    if (!aNew) return strataErr(STRATA_NOMEM, "out of memory (%zu bytes)", nNew);
    b->a = aNew;
    b->nAlloc = nNew;
  }
  return STRATA_OK;
}

int strataBufAppend(StrataBuf *b, const void *p, size_t n) {
  if (UNLIKELY(b->n + n > b->nAlloc)) {
    int rc = strataBufReserve(b, n);
    if (rc) return rc;
  }
  if (n) memcpy(b->a + b->n, p, n);
  b->n += n;
  return STRATA_OK;
}

int strataBufAppendVarint(StrataBuf *b, u64 v) {
  if (UNLIKELY(b->n + 10 > b->nAlloc)) {
    int rc = strataBufReserve(b, 10);
    if (rc) return rc;
  }
  b->n += (size_t)strataPutVarint64(b->a + b->n, v);
  return STRATA_OK;
}

int strataBufAppend32(StrataBuf *b, u32 v) {
  u8 a[4];
  strataPut32(a, v);
  return strataBufAppend(b, a, 4);
}

int strataBufAppend64(StrataBuf *b, u64 v) {
  u8 a[8];
  strataPut64(a, v);
  return strataBufAppend(b, a, 8);
}

int strataBufSet(StrataBuf *b, const void *p, size_t n) {
  b->n = 0;
  return strataBufAppend(b, p, n);
}

void strataBufFree(StrataBuf *b) {
  strataFreeMem(b->a);
  b->a = NULL;
  b->n = b->nAlloc = 0;
}

int strataIkeyBuild(StrataBuf *b, const u8 *pUkey, size_t nUkey, u64 seq, int type) {
  int rc;
  b->n = 0;
  rc = strataBufReserve(b, nUkey + 8);
  if (rc) return rc;
  if (nUkey) memcpy(b->a, pUkey, nUkey);
  strataPut64(b->a + nUkey, strataPackTrailer(seq, type));
  b->n = nUkey + 8;
  return STRATA_OK;
}
