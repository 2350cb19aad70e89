/*
** log.c -- the record log: an append-only file of checksummed records. The
** write-ahead log and the manifest are both record logs.
**
** FILE FORMAT (doc/FORMAT.md is authoritative)
**
**   file   = file_header record*
**   file_header (16) = magic "strataLG" (8) | version u32 | kind u32
**   record = header (16) | payload (length bytes)
**   header = hcrc u32 | length u32 | pcrc u32 | type u32
**
**   hcrc is the masked CRC-32C of header bytes 4..15, pcrc the masked CRC-32C
**   of the payload, type is 1 (a full record; other values are reserved). A
**   record is one contiguous run of bytes however large it is: there are no
**   blocks and no fragments, so a record costs 16 bytes and one checksum pass.
**
** WRITER
**
**   Records are framed straight into a 64 KiB user-space buffer, and the
**   buffer goes to the file in one strataFileAppend when it fills or at
**   strataLogFlush/Sync, so a group of small commits costs one write(). A
**   record whose frame is larger than the buffer tops the buffer up with its
**   header and the start of its payload, and the rest of the payload is
**   written from the caller's memory: two calls, no copy of a large payload
**   and no buffer that grows to the size of the largest value ever written.
**   The file header is buffered too, so a new log costs no write until its
**   first flush (a crash before that leaves a short file: an empty log).
**
** STICKY FAILURE
**
**   After any failed write or sync the file holds an unknown prefix of what
**   was handed to it (a short write lands part of the buffer). Retrying could
**   write a partial record twice or records out of order, so the writer
**   stops: every later call returns the first error, and the engine reopens,
**   which recovers through the reader (a partial record is a torn tail).
**
** READER
**
**   The reader keeps a window of the file in one buffer (256 KiB, grown for
**   larger records) and returns records as pointers into it, so reading a
**   log costs one read per 256 KiB and no allocation per record. Its state
**   is a file, a window and an offset: it can serve as a WAL iterator that
**   picks up records appended after it reached the end.
**
** TORN TAIL OR CORRUPTION
**
**   A crash can leave the last record incomplete or followed by garbage or
**   zeros; that is a torn tail, and recovery drops it: the writer never
**   acknowledged a commit that is not wholly on disk. Damage with a valid
**   record after it is something else (a bad sector, a stray write): the
**   records after it were acknowledged, so skipping them would lose data
**   silently, and the reader reports STRATA_CORRUPT instead. Only after
**   damage does the reader look for a valid record further on:
**   - if the damaged record's header checks, its length is trusted and the
**     search starts after its payload (so user data inside it that happens
**     to look like a record cannot fool the search); a trusted length that
**     runs past the end of the file is a torn write by construction;
**   - otherwise the search tries every byte offset after the damaged one for
**     16 bytes whose header CRC checks and whose payload CRC checks too.
**   A record with valid checksums and an unknown type is always corruption.
**   So is a last record that is all there, with a header that checks and a
**   payload that does not, unless it ends in zeros from a sector boundary
**   (sectors a crash never wrote): a bit flip must not pass for a torn tail.
*/
#include "strataInt.h"

#include <assert.h>
#include <stdio.h>

#define LOG_MAGIC "strataLG"
#define LOG_FILE_HEADER 16   /* magic (8) | version (4) | kind (4) */
#define LOG_RECORD_HEADER 16 /* hcrc (4) | length (4) | pcrc (4) | type (4) */
#define LOG_TYPE_FULL 1

/* Offsets in the file header and in a record header. */
#define LOG_FH_VERSION 8
#define LOG_FH_KIND 12
#define LOG_HCRC 0
#define LOG_LEN 4
#define LOG_PCRC 8
#define LOG_TYPE 12

#define LOG_WRITE_BUF (64 * 1024)
#define LOG_READ_BUF (256 * 1024)
#define LOG_MAX_PAYLOAD 0xffffffffu

struct LogWriter {
  StrataFile *pFile;
  u8 *aBuf;      /* LOG_WRITE_BUF bytes + LOG_RECORD_HEADER of slack */
  size_t nBuf;   /* bytes buffered */
  u64 nWritten;  /* bytes handed to the file */
  int rc;        /* first write/sync error: once set, every call returns it */
  char *zPath;
  char zErr[256]; /* message of the first error */
};

struct LogReader {
  StrataFile *pFile;
  char *zPath;
  u8 *aBuf;        /* file bytes [bufOff, bufOff + nBuf) */
  size_t nAlloc;
  size_t nBuf;
  u64 bufOff;
  u64 off;         /* start of the next record = end of the last good one */
  int rcEnd;       /* 0 while reading; NOTFOUND (torn) or CORRUPT once stopped */
  int bTorn;
  u64 offBad;      /* the damaged record, once stopped */
  u64 offValid;    /* the valid record after it (CORRUPT only) */
  const char *zWhy;
};

static const char *kindName(u32 kind) {
  switch (kind) {
    case STRATA_LOG_WAL: return "write-ahead log";
    case STRATA_LOG_MANIFEST: return "manifest";
    default: return "log of unknown kind";
  }
}

static void fileHeaderEncode(u8 *a, u32 kind) {
  memcpy(a, LOG_MAGIC, 8);
  strataPut32(a + LOG_FH_VERSION, STRATA_FORMAT_VERSION);
  strataPut32(a + LOG_FH_KIND, kind);
}

/* Fill the 16-byte record header a for payload p/n. */
static void recordHeaderEncode(u8 *a, const u8 *p, size_t n) {
  strataPut32(a + LOG_LEN, (u32)n);
  strataPut32(a + LOG_PCRC, strataCrcMask(strataCrc32c(0, p, n)));
  strataPut32(a + LOG_TYPE, LOG_TYPE_FULL);
  strataPut32(a + LOG_HCRC, strataCrcMask(strataCrc32c(0, a + 4, LOG_RECORD_HEADER - 4)));
}

static int headerOk(const u8 *a) {
  return strataCrcUnmask(strataGet32(a + LOG_HCRC)) ==
         strataCrc32c(0, a + 4, LOG_RECORD_HEADER - 4);
}

static int payloadOk(const u8 *a, u32 len) {
  return strataCrcUnmask(strataGet32(a + LOG_PCRC)) == strataCrc32c(0, a + LOG_RECORD_HEADER, len);
}

/* ------------------------------------------------------------------ */
/* WRITER */

/* The error of a writer that already failed: its first error, again. */
static int writerFailed(LogWriter *w) {
  return strataErr(w->rc, "log %s: an earlier write failed, the log must be reopened (%s)",
                   w->zPath, w->zErr);
}

/* Hand p/n to the file; on failure the writer becomes sticky-failed. */
static int writerWrite(LogWriter *w, const void *p, size_t n) {
  int rc = strataFileAppend(w->pFile, p, n);
  if (UNLIKELY(rc)) {
    w->rc = rc;
    snprintf(w->zErr, sizeof(w->zErr), "%s", strataErrMsgGet());
    return rc;
  }
  w->nWritten += n;
  return STRATA_OK;
}

static void writerFree(LogWriter *w) {
  strataFileClose(w->pFile);
  strataFreeMem(w->aBuf);
  strataFreeMem(w->zPath);
  strataFreeMem(w);
}

/* Returns OK, MISUSE for a bad kind, NOMEM, or the error of creating the
** file. Nothing is written until the first flush. */
int strataLogWriterOpen(strata_env *env, const char *zPath, u32 kind, StrataIoStats *pStats,
                        LogWriter **ppWriter) {
  LogWriter *w;
  int rc;
  *ppWriter = NULL;
  if (kind != STRATA_LOG_WAL && kind != STRATA_LOG_MANIFEST) {
    return strataErr(STRATA_MISUSE, "log %s: bad log kind %u", zPath, kind);
  }
  w = strataMallocZero(sizeof(*w));
  if (!w) return strataErr(STRATA_NOMEM, "out of memory");
  w->zPath = strataStrdup(zPath);
  w->aBuf = strataMalloc(LOG_WRITE_BUF + LOG_RECORD_HEADER);
  if (!w->zPath || !w->aBuf) {
    writerFree(w);
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  rc = strataEnvOpen(env, zPath, STRATA_OPEN_WRITE, pStats, &w->pFile);
  if (rc) {
    writerFree(w);
    return rc;
  }
  fileHeaderEncode(w->aBuf, kind);
  w->nBuf = LOG_FILE_HEADER;
  *ppWriter = w;
  return STRATA_OK;
}

/* A record whose frame does not fit in an empty buffer: buffer + header +
** the start of the payload in one call, the rest of the payload in another.
** The slack after the buffer always has room for the header. */
static int writerAppendLarge(LogWriter *w, const u8 *p, size_t n) {
  size_t nHead;
  int rc;
  recordHeaderEncode(w->aBuf + w->nBuf, p, n);
  w->nBuf += LOG_RECORD_HEADER;
  nHead = w->nBuf < LOG_WRITE_BUF ? LOG_WRITE_BUF - w->nBuf : 0;
  assert(nHead < n);
  memcpy(w->aBuf + w->nBuf, p, nHead);
  w->nBuf += nHead;
  rc = writerWrite(w, w->aBuf, w->nBuf);
  if (rc) return rc;
  w->nBuf = 0;
  return writerWrite(w, p + nHead, n - nHead);
}

/* Returns OK, TOOBIG for a payload over 4 GiB - 1, the sticky error, or the
** error of writing out a full buffer (which makes the writer sticky). */
int strataLogAppend(LogWriter *w, const u8 *p, size_t n) {
  u8 *a;
  if (UNLIKELY(w->rc)) return writerFailed(w);
  if (UNLIKELY((u64)n > LOG_MAX_PAYLOAD)) {
    return strataErr(STRATA_TOOBIG, "log %s: record of %zu bytes is too large", w->zPath, n);
  }
  if (UNLIKELY(w->nBuf + LOG_RECORD_HEADER + n > LOG_WRITE_BUF)) {
    int rc;
    if (LOG_RECORD_HEADER + n > LOG_WRITE_BUF) return writerAppendLarge(w, p, n);
    rc = strataLogFlush(w);
    if (rc) return rc;
  }
  a = w->aBuf + w->nBuf;
  recordHeaderEncode(a, p, n);
  if (n) memcpy(a + LOG_RECORD_HEADER, p, n);
  w->nBuf += LOG_RECORD_HEADER + n;
  return STRATA_OK;
}

/* Returns OK (nothing buffered costs no call), the sticky error, or the
** error of the write (which makes the writer sticky). */
int strataLogFlush(LogWriter *w) {
  int rc;
  if (UNLIKELY(w->rc)) return writerFailed(w);
  if (w->nBuf == 0) return STRATA_OK;
  rc = writerWrite(w, w->aBuf, w->nBuf);
  if (rc) return rc;
  w->nBuf = 0;
  return STRATA_OK;
}

/* Flush + fdatasync. A failed sync is sticky too: after one, the kernel may
** have dropped the dirty pages, and what reached the disk is unknown. */
int strataLogSync(LogWriter *w) {
  int rc = strataLogFlush(w);
  if (rc) return rc;
  rc = strataFileSync(w->pFile);
  if (rc) {
    w->rc = rc;
    snprintf(w->zErr, sizeof(w->zErr), "%s", strataErrMsgGet());
  }
  return rc;
}

u64 strataLogSize(const LogWriter *w) { return w->nWritten + w->nBuf; }

/* Flush, close and free. Returns the flush error or the sticky error. */
int strataLogWriterClose(LogWriter *w) {
  int rc;
  if (!w) return STRATA_OK;
  rc = strataLogFlush(w);
  writerFree(w);
  return rc;
}

/* ------------------------------------------------------------------ */
/* READER */

/* Make file bytes [off, off + n) available in the window. *pp points at off;
** *pnAvail is n, or fewer if the file ends first. Bytes of the window from
** off on are kept; the rest of the window is refilled with one read.
** Returns OK, NOMEM (growing for a large record) or a read error. */
static int readerFetch(LogReader *r, u64 off, size_t n, const u8 **pp, size_t *pnAvail) {
  size_t nKeep = 0, nRead = 0;
  int rc;
  if (LIKELY(off >= r->bufOff && off + n <= r->bufOff + r->nBuf)) {
    *pp = r->aBuf + (off - r->bufOff);
    *pnAvail = n;
    return STRATA_OK;
  }
  *pp = NULL;
  *pnAvail = 0;
  if (n > r->nAlloc) {
    size_t nNew = r->nAlloc;
    u8 *aNew;
    while (nNew < n) nNew *= 2;
    aNew = strataRealloc(r->aBuf, nNew);
    if (!aNew) return strataErr(STRATA_NOMEM, "out of memory (%zu bytes)", nNew);
    r->aBuf = aNew;
    r->nAlloc = nNew;
  }
  if (off >= r->bufOff && off < r->bufOff + r->nBuf) {
    nKeep = (size_t)(r->bufOff + r->nBuf - off);
    memmove(r->aBuf, r->aBuf + (off - r->bufOff), nKeep);
  }
  r->bufOff = off;
  r->nBuf = nKeep;
  rc = strataFileRead(r->pFile, r->aBuf + nKeep, r->nAlloc - nKeep, off + nKeep, &nRead);
  if (rc) return rc;
  r->nBuf += nRead;
  *pp = r->aBuf;
  *pnAvail = r->nBuf < n ? r->nBuf : n;
  return STRATA_OK;
}

/* Look for a valid record (both CRCs good) starting at or after offset
** from. *pOff is its offset, or 0 if there is none. Returns OK or an I/O
** error. */
static int readerFindValid(LogReader *r, u64 from, u64 *pOff) {
  u64 size, pos;
  int rc;
  *pOff = 0;
  rc = strataFileSize(r->pFile, &size);
  if (rc) return rc;
  for (pos = from; pos + LOG_RECORD_HEADER <= size; pos++) {
    const u8 *a;
    size_t nAvail;
    u32 len;
    rc = readerFetch(r, pos, LOG_RECORD_HEADER, &a, &nAvail);
    if (rc) return rc;
    if (nAvail < LOG_RECORD_HEADER) break; /* the file shrank meanwhile */
    if (LIKELY(!headerOk(a))) continue;
    len = strataGet32(a + LOG_LEN);
    if (len > size - pos - LOG_RECORD_HEADER) continue;
    rc = readerFetch(r, pos, LOG_RECORD_HEADER + (size_t)len, &a, &nAvail);
    if (rc) return rc;
    if (nAvail == LOG_RECORD_HEADER + (size_t)len && payloadOk(a, len)) {
      *pOff = pos;
      return STRATA_OK;
    }
  }
  return STRATA_OK;
}

/* The result a reader that has stopped gives on every later call. */
static int readerStopped(LogReader *r) {
  if (r->rcEnd == STRATA_NOTFOUND) return STRATA_NOTFOUND;
  if (r->zWhy == NULL) {
    return strataErr(STRATA_CORRUPT, "log %s: record at offset %llu has an unknown type", r->zPath,
                     (unsigned long long)r->offBad);
  }
  if (r->offValid == 0) {
    return strataErr(STRATA_CORRUPT, "log %s: bad payload checksum in the complete last record at "
                     "offset %llu", r->zPath, (unsigned long long)r->offBad);
  }
  return strataErr(STRATA_CORRUPT,
                   "log %s: damaged record at offset %llu (%s) is followed by a valid record at "
                   "offset %llu",
                   r->zPath, (unsigned long long)r->offBad, r->zWhy,
                   (unsigned long long)r->offValid);
}

/* 1 if the n-byte record a (at file offset off) ends in zeros from a
** 512-byte boundary on: the shape of a write that a crash cut short, whose
** last sectors never reached the disk. */
static int zeroFilledTail(const u8 *a, size_t n, u64 off) {
  u64 end = off + n, b = end & ~(u64)511;
  size_t i;
  if (b <= off + LOG_RECORD_HEADER) b = off + LOG_RECORD_HEADER;
  if (b >= end) return 0;
  for (i = (size_t)(b - off); i < n; i++) {
    if (a[i]) return 0;
  }
  return 1;
}

/* The record at r->off is damaged (zWhy says how). Search for a valid record
** from offset from on: none is a torn tail (NOTFOUND), one is corruption
** (CORRUPT). An I/O error of the search is returned without stopping the
** reader, so a later call tries again. */
static int readerDamaged(LogReader *r, const char *zWhy, u64 from) {
  u64 offValid;
  int rc = readerFindValid(r, from, &offValid);
  if (rc) return rc;
  r->offBad = r->off;
  r->zWhy = zWhy;
  if (offValid == 0) {
    r->bTorn = 1;
    r->rcEnd = STRATA_NOTFOUND;
  } else {
    r->offValid = offValid;
    r->rcEnd = STRATA_CORRUPT;
  }
  return readerStopped(r);
}

/* Check the file header (nAvail bytes of it exist). Returns OK or CORRUPT. */
static int readerCheckHeader(LogReader *r, const u8 *a, size_t nAvail, u32 kind) {
  u8 aWant[LOG_FILE_HEADER];
  u32 v;
  fileHeaderEncode(aWant, kind);
  if (nAvail < LOG_FILE_HEADER) {
    /* A crash right after creation: an empty log, if what is there is the
    ** start of the right header. */
    if (memcmp(a, aWant, nAvail)) {
      return strataErr(STRATA_CORRUPT, "log %s: not a strata log (a %zu-byte file)", r->zPath,
                       nAvail);
    }
    return STRATA_OK;
  }
  if (memcmp(a, LOG_MAGIC, 8)) {
    return strataErr(STRATA_CORRUPT, "log %s: not a strata log (bad magic number)", r->zPath);
  }
  v = strataGet32(a + LOG_FH_VERSION);
  if (v != STRATA_FORMAT_VERSION) {
    return strataErr(STRATA_CORRUPT,
                     "log %s: format version %u is not supported (this build reads %u)", r->zPath,
                     v, STRATA_FORMAT_VERSION);
  }
  v = strataGet32(a + LOG_FH_KIND);
  if (v != kind) {
    return strataErr(STRATA_CORRUPT, "log %s: is a %s (kind %u), expected a %s", r->zPath,
                     kindName(v), v, kindName(kind));
  }
  return STRATA_OK;
}

/* Returns OK, CANTOPEN if the file is absent, NOMEM, a read error, or
** CORRUPT if the file header is not that of a log of this kind. */
int strataLogReaderOpen(strata_env *env, const char *zPath, u32 kind, LogReader **ppReader) {
  LogReader *r;
  const u8 *a;
  size_t nAvail;
  int rc;
  *ppReader = NULL;
  r = strataMallocZero(sizeof(*r));
  if (!r) return strataErr(STRATA_NOMEM, "out of memory");
  r->zPath = strataStrdup(zPath);
  r->nAlloc = LOG_READ_BUF;
  r->aBuf = strataMalloc(r->nAlloc);
  if (!r->zPath || !r->aBuf) {
    rc = strataErr(STRATA_NOMEM, "out of memory");
    goto open_failed;
  }
  rc = strataEnvOpen(env, zPath, STRATA_OPEN_READ, NULL, &r->pFile);
  if (rc) goto open_failed;
  rc = readerFetch(r, 0, LOG_FILE_HEADER, &a, &nAvail);
  if (rc == STRATA_OK) rc = readerCheckHeader(r, a, nAvail, kind);
  if (rc) goto open_failed;
  if (nAvail == LOG_FILE_HEADER) {
    r->off = LOG_FILE_HEADER;
  } else {
    r->rcEnd = STRATA_NOTFOUND; /* empty log; torn if part of a header is there */
    r->bTorn = nAvail > 0;
  }
  *ppReader = r;
  return STRATA_OK;

open_failed:
  strataLogReaderClose(r);
  return rc;
}

/* Returns OK with the next record, NOTFOUND at the end (a clean end, which a
** later call retries in case the log grew, or a torn tail, which is final),
** CORRUPT (final), or an I/O / NOMEM error (a later call retries). */
int strataLogRead(LogReader *r, const u8 **pp, size_t *pn) {
  const u8 *a;
  size_t nAvail;
  u32 len;
  int rc;
  *pp = NULL;
  *pn = 0;
  if (UNLIKELY(r->rcEnd)) return readerStopped(r);
  rc = readerFetch(r, r->off, LOG_RECORD_HEADER, &a, &nAvail);
  if (rc) return rc;
  if (nAvail == 0) return STRATA_NOTFOUND;
  if (nAvail < LOG_RECORD_HEADER) return readerDamaged(r, "truncated record header", r->off + 1);
  if (!headerOk(a)) return readerDamaged(r, "bad header checksum", r->off + 1);
  len = strataGet32(a + LOG_LEN);
  if (LOG_RECORD_HEADER + (size_t)len > r->nAlloc) {
    /* Before growing the window for a big record, make sure it is all there:
    ** a torn record must not cost an allocation of its claimed size. */
    u64 size;
    rc = strataFileSize(r->pFile, &size);
    if (rc) return rc;
    if (r->off + LOG_RECORD_HEADER + len > size) {
      return readerDamaged(r, "record runs past the end of the file", size);
    }
  }
  rc = readerFetch(r, r->off, LOG_RECORD_HEADER + (size_t)len, &a, &nAvail);
  if (rc) return rc;
  if (nAvail < LOG_RECORD_HEADER + (size_t)len) {
    /* The header checks, so the length is the writer's: a torn write. */
    return readerDamaged(r, "record runs past the end of the file",
                         r->off + LOG_RECORD_HEADER + len);
  }
  if (!payloadOk(a, len)) {
    rc = readerDamaged(r, "bad payload checksum", r->off + LOG_RECORD_HEADER + len);
    if (rc == STRATA_NOTFOUND && !zeroFilledTail(a, LOG_RECORD_HEADER + (size_t)len, r->off)) {
      /* Nothing follows, but the record is all there and its end was
      ** written: a crash leaves unwritten sectors as zeros, so this is
      ** damage to a record that may have been acknowledged. */
      r->bTorn = 0;
      r->offValid = 0;
      r->rcEnd = STRATA_CORRUPT;
      return readerStopped(r);
    }
    return rc;
  }
  if (UNLIKELY(strataGet32(a + LOG_TYPE) != LOG_TYPE_FULL)) {
    r->offBad = r->off;
    r->zWhy = NULL;
    r->rcEnd = STRATA_CORRUPT;
    return readerStopped(r);
  }
  *pp = a + LOG_RECORD_HEADER;
  *pn = len;
  r->off += LOG_RECORD_HEADER + len;
  return STRATA_OK;
}

u64 strataLogReaderOffset(const LogReader *r) { return r->off; }
int strataLogReaderTorn(const LogReader *r) { return r->bTorn; }

void strataLogReaderClose(LogReader *r) {
  if (!r) return;
  strataFileClose(r->pFile);
  strataFreeMem(r->aBuf);
  strataFreeMem(r->zPath);
  strataFreeMem(r);
}
