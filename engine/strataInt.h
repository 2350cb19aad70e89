/*
** strataInt.h -- internal types and per-module interfaces of the engine.
**
** Every engine .c file includes this header. Functions are named after the
** module that owns them (strataWalAppend is in wal.c). Unless stated
** otherwise a function returns STRATA_OK or an error code, and on error has
** set the thread's message with strataErr(); out-parameters are NULL/0 on
** failure.
**
** INTERNAL KEYS
**
** The engine stores every write as an internal key: the user key followed by
** an 8-byte little-endian trailer (sequence << 8 | type). Internal keys sort
** by user key (memcmp, shorter prefix first), then by sequence descending,
** then by type descending, so the newest version of a key comes first.
*/
#ifndef STRATA_INT_H
#define STRATA_INT_H

#include "strata.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Sorted typedef list. */
typedef struct BlockCache BlockCache;
typedef struct BloomFilter BloomFilter;
typedef struct CacheHandle CacheHandle;
typedef struct LogReader LogReader;
typedef struct LogWriter LogWriter;
typedef struct Memtable Memtable;
typedef struct ReadView ReadView;
typedef struct SstBuilder SstBuilder;
typedef struct SstOptions SstOptions;
typedef struct SstProps SstProps;
typedef struct SstReader SstReader;
typedef struct StrataBuf StrataBuf;
typedef struct StrataFile StrataFile;
typedef struct StrataFileMethods StrataFileMethods;
typedef struct StrataIoStats StrataIoStats;
typedef struct StrataIter StrataIter;
typedef struct StrataIterMethods StrataIterMethods;
typedef struct StrataReadStats StrataReadStats;

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

#define STRATA_FORMAT_VERSION 1

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#endif

/* ------------------------------------------------------------------ */
/* util.c: allocation, error messages, integer coding, buffers. */

/* All engine allocations go through these, so tests can fail the Nth one. */
void *strataMalloc(size_t n);
void *strataMallocZero(size_t n);
void *strataRealloc(void *p, size_t n);
void strataFreeMem(void *p);
/* Zeroed pages of their own (an anonymous mapping), for large long-lived
** buffers whose memory must go back to the system when freed; free with
** strataMapFree and the same size. Fails like strataMalloc in tests. */
void *strataMapAlloc(size_t n);
void strataMapFree(void *p, size_t n);
char *strataStrdup(const char *z);
char *strataMprintf(const char *zFmt, ...) __attribute__((format(printf, 1, 2)));
/* Test hook: the nth allocation from now fails (and every one after it
** while bSticky); n <= 0 disables. */
void strataTestFailMalloc(int n, int bSticky);

/* Set the calling thread's error message and return rc. */
int strataErr(int rc, const char *zFmt, ...) __attribute__((format(printf, 2, 3)));
const char *strataErrMsgGet(void);
void strataErrClear(void);

static inline void strataPut16(u8 *p, u16 v) { memcpy(p, &v, 2); }
static inline void strataPut32(u8 *p, u32 v) { memcpy(p, &v, 4); }
static inline void strataPut64(u8 *p, u64 v) { memcpy(p, &v, 8); }
static inline u16 strataGet16(const u8 *p) { u16 v; memcpy(&v, p, 2); return v; }
static inline u32 strataGet32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }
static inline u64 strataGet64(const u8 *p) { u64 v; memcpy(&v, p, 8); return v; }
/* (The engine assumes a little-endian host; configure checks.) */

/* LEB128 varints. Put returns bytes written (at most 5 / 10). Get returns
** the byte after the varint, or NULL if it is truncated or overlong. */
int strataPutVarint32(u8 *p, u32 v);
int strataPutVarint64(u8 *p, u64 v);
int strataVarintLen(u64 v);
const u8 *strataGetVarint32(const u8 *p, const u8 *pEnd, u32 *pv);
const u8 *strataGetVarint64(const u8 *p, const u8 *pEnd, u64 *pv);

/* A growable byte buffer. Zero-initialize; free with strataBufFree. */
struct StrataBuf {
  u8 *a;
  size_t n;
  size_t nAlloc;
};
int strataBufReserve(StrataBuf *b, size_t nExtra); /* room for n+nExtra bytes */
int strataBufAppend(StrataBuf *b, const void *p, size_t n);
int strataBufAppendVarint(StrataBuf *b, u64 v);
int strataBufAppend32(StrataBuf *b, u32 v);
int strataBufAppend64(StrataBuf *b, u64 v);
int strataBufSet(StrataBuf *b, const void *p, size_t n);
void strataBufFree(StrataBuf *b);
/* strataBufSet with the common case (it fits) inline, for the paths that
** set a buffer once per entry (scans, merges, table building). */
static inline int strataBufSetFast(StrataBuf *b, const void *p, size_t n) {
  if (LIKELY(n <= b->nAlloc && n > 0)) {
    memcpy(b->a, p, n);
    b->n = n;
    return STRATA_OK;
  }
  return strataBufSet(b, p, n);
}

/* crc32c.c: CRC-32C (Castagnoli), hardware accelerated where available. */
u32 strataCrc32c(u32 crc, const void *p, size_t n);
u32 strataCrc32cSoftware(u32 crc, const void *p, size_t n); /* the table version (tests) */
/* Stored CRCs are masked (rotated and offset) so that a CRC of data that
** itself contains CRCs stays well distributed. */
static inline u32 strataCrcMask(u32 c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }
static inline u32 strataCrcUnmask(u32 m) { u32 r = m - 0xa282ead8u; return (r >> 17) | (r << 15); }

u64 strataNowMicros(void);

/* ------------------------------------------------------------------ */
/* Internal keys. */

#define STRATA_TYPE_DELETE 0
#define STRATA_TYPE_VALUE 1
#define STRATA_MAX_SEQ ((((u64)1) << 56) - 1)
#define STRATA_TRAILER 8

static inline u64 strataPackTrailer(u64 seq, int type) { return (seq << 8) | (u64)type; }
static inline u64 strataIkeyTrailer(const u8 *pIkey, size_t n) { return strataGet64(pIkey + n - 8); }

/* The window of key u/nu after its first c bytes: the next 8 bytes as a
** big-endian integer, zero padded. Windows that differ order their keys as
** the bytes do; equal windows leave the rest to compare. */
static inline u64 strataKeyWindow(const u8 *u, size_t nu, size_t c) {
  u8 a[8] = {0};
  if (LIKELY(nu >= c + 8)) return __builtin_bswap64(strataGet64(u + c));
  if (nu > c) memcpy(a, u + c, nu - c);
  return __builtin_bswap64(strataGet64(a));
}

/* A 64-bit hash of a user key for in-memory key filters (the memtable's and
** a transaction's): fast on short keys, every output bit depends on every
** input bit. Not the table filters' hash, which is part of the file format. */
static inline u64 strataKeyHash64(const u8 *pKey, size_t nKey) {
  u64 h = 0x9E3779B97F4A7C15ull ^ nKey;
  size_t i = 0;
  for (; i + 8 <= nKey; i += 8) h = (h ^ strataGet64(pKey + i)) * 0xff51afd7ed558ccdull, h ^= h >> 32;
  for (; i < nKey; i++) h = (h ^ pKey[i]) * 0x100000001b3ull;
  h ^= h >> 29;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 32);
}
static inline u64 strataIkeySeq(const u8 *pIkey, size_t n) { return strataIkeyTrailer(pIkey, n) >> 8; }
static inline int strataIkeyType(const u8 *pIkey, size_t n) { return (int)(strataIkeyTrailer(pIkey, n) & 0xff); }

int strataMemcmp(const void *a, const void *b, size_t n); /* memcmp, out of line */

/* memcmp order, a prefix before the longer key. Short keys (the common
** case) are compared 8 bytes at a time without a call into libc. */
static inline int strataUkeyCompare(const u8 *a, size_t na, const u8 *b, size_t nb) {
  size_t n = na < nb ? na : nb, i = 0;
  if (n > 64) {
    int c = strataMemcmp(a, b, n);
    if (c) return c;
  } else {
    for (; i + 8 <= n; i += 8) {
      u64 x = strataGet64(a + i), y = strataGet64(b + i);
      if (x != y) {
        x = __builtin_bswap64(x);
        y = __builtin_bswap64(y);
        return x < y ? -1 : 1;
      }
    }
    for (; i < n; i++) {
      if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    }
  }
  return na < nb ? -1 : (na > nb ? 1 : 0);
}

/* Internal key order (see the file header). Both keys are >= 8 bytes. */
static inline int strataIkeyCompare(const u8 *a, size_t na, const u8 *b, size_t nb) {
  int c = strataUkeyCompare(a, na - 8, b, nb - 8);
  if (c) return c;
  {
    u64 ta = strataGet64(a + na - 8), tb = strataGet64(b + nb - 8);
    return ta > tb ? -1 : (ta < tb ? 1 : 0);
  }
}

/* Build an internal key into b (replacing its contents). */
int strataIkeyBuild(StrataBuf *b, const u8 *pUkey, size_t nUkey, u64 seq, int type);

/* ------------------------------------------------------------------ */
/* env.c: the file system interface. Everything the engine does to files goes
** through a strata_env so tests can inject faults. */

#define STRATA_OPEN_READ 1   /* existing file, read only */
#define STRATA_OPEN_WRITE 2  /* create or truncate, write by appending */
#define STRATA_OPEN_APPEND 3 /* existing or new file, append at its end */

/* Counters shared by every file a database opens (atomic). */
struct StrataIoStats {
  _Atomic u64 nWritten; /* bytes appended to any file */
  _Atomic u64 nRead;    /* bytes read */
};

struct StrataFile {
  const StrataFileMethods *pMethods;
  StrataIoStats *pStats; /* may be NULL; set by strataEnvOpen */
};

struct StrataFileMethods {
  /* Read up to n bytes at offset off; *pnRead is set to the count read
  ** (less than n only at end of file). */
  int (*xRead)(StrataFile *, void *pBuf, size_t n, u64 off, size_t *pnRead);
  /* Append all n bytes at the end of the file (a short write is an error). */
  int (*xAppend)(StrataFile *, const void *p, size_t n);
  int (*xSync)(StrataFile *); /* fdatasync */
  int (*xSize)(StrataFile *, u64 *pSize);
  int (*xTruncate)(StrataFile *, u64 size);
  void (*xClose)(StrataFile *);
  /* Optional (NULL: not supported). Map the file's first n bytes read-only
  ** and set *pp to them; the mapping lives until xClose. For files that no
  ** one changes while they are open (tables). STRATA_IOERR if it cannot. */
  int (*xMap)(StrataFile *, u64 n, const u8 **pp);
};

struct strata_env {
  int (*xOpen)(strata_env *, const char *zPath, int flags, StrataFile **ppFile);
  int (*xDelete)(strata_env *, const char *zPath);
  int (*xRename)(strata_env *, const char *zFrom, const char *zTo);
  int (*xMkdir)(strata_env *, const char *zPath); /* OK if it exists */
  int (*xRmdir)(strata_env *, const char *zPath);
  int (*xSyncDir)(strata_env *, const char *zPath);
  int (*xExists)(strata_env *, const char *zPath); /* 1 yes, 0 no */
  /* Names (not paths) of the entries of a directory; free with strataFreeList. */
  int (*xListDir)(strata_env *, const char *zPath, char ***pazName, int *pnName);
  /* Take an exclusive advisory lock on zPath (created if absent); STRATA_BUSY
  ** if another holder has it. Release by closing the file. */
  int (*xLock)(strata_env *, const char *zPath, StrataFile **ppFile);
  void *pAppData;
};

strata_env *strataEnvDefault(void);
void strataFreeList(char **azName, int nName);
int strataEnvOpen(strata_env *env, const char *zPath, int flags, StrataIoStats *pStats,
                  StrataFile **ppFile);
static inline int strataFileRead(StrataFile *f, void *p, size_t n, u64 off, size_t *pnRead) {
  int rc = f->pMethods->xRead(f, p, n, off, pnRead);
  if (rc == STRATA_OK && f->pStats) atomic_fetch_add_explicit(&f->pStats->nRead, *pnRead, memory_order_relaxed);
  return rc;
}
static inline int strataFileAppend(StrataFile *f, const void *p, size_t n) {
  int rc = f->pMethods->xAppend(f, p, n);
  if (rc == STRATA_OK && f->pStats) atomic_fetch_add_explicit(&f->pStats->nWritten, n, memory_order_relaxed);
  return rc;
}
static inline int strataFileSync(StrataFile *f) { return f->pMethods->xSync(f); }
static inline int strataFileSize(StrataFile *f, u64 *p) { return f->pMethods->xSize(f, p); }
static inline int strataFileTruncate(StrataFile *f, u64 n) { return f->pMethods->xTruncate(f, n); }
static inline void strataFileClose(StrataFile *f) { if (f) f->pMethods->xClose(f); }
/* Map the first n bytes read-only (see xMap); STRATA_NOTFOUND if the file's
** env cannot map. */
static inline int strataFileMap(StrataFile *f, u64 n, const u8 **pp) {
  *pp = NULL;
  return f->pMethods->xMap ? f->pMethods->xMap(f, n, pp) : STRATA_NOTFOUND;
}
/* Read exactly n bytes at off; a short read is STRATA_CORRUPT (truncated file). */
int strataFileReadExact(StrataFile *f, void *p, size_t n, u64 off, const char *zWhat);
/* Write a whole small file (temp + rename + syncs): used for CURRENT. */
/* *pbInstalled is set to 1 once the rename is done: a later failure (the
** directory sync) leaves the new file in place. */
int strataEnvWriteFileAtomic(strata_env *env, const char *zDir, const char *zName,
                             const void *p, size_t n, int bSync, int *pbInstalled);
int strataEnvReadFile(strata_env *env, const char *zPath, StrataBuf *pOut);

/* Fault injection (tests): an env that wraps another and fails the Nth I/O
** operation of the chosen kinds. See env.c. */
#define STRATA_FAULT_EIO 1
#define STRATA_FAULT_ENOSPC 2
#define STRATA_FAULT_SHORT 3 /* a short write: part of the data lands, then an error */
#define STRATA_FAULT_SYNC 4  /* fsync fails */
#define STRATA_FAULT_CRASH 5 /* from the Nth op on, every op fails: a simulated crash */
#define STRATA_FAULTOP_READ 0x01
#define STRATA_FAULTOP_WRITE 0x02
#define STRATA_FAULTOP_SYNC 0x04
#define STRATA_FAULTOP_META 0x08 /* open-for-write, rename, delete, mkdir, syncdir */
#define STRATA_FAULTOP_ALL 0x0f
strata_env *strataFaultEnvNew(strata_env *pBase);
void strataFaultEnvFree(strata_env *env);
/* Arm: the nth operation (1-based) matching opMask from now fails with kind. */
void strataFaultEnvArm(strata_env *env, int kind, int opMask, int n);
void strataFaultEnvDisarm(strata_env *env);
int strataFaultEnvCount(strata_env *env);  /* matching operations seen since arming */
int strataFaultEnvFired(strata_env *env);  /* 1 if the fault has fired */

/* ------------------------------------------------------------------ */
/* Internal iterators: over internal keys (or, for blocks, raw keys). The
** current entry lives in the base struct so the hot path is a field read.
** Once rc is set the iterator is invalid and stays so. */

struct StrataIterMethods {
  void (*xSeekFirst)(StrataIter *);
  void (*xSeekLast)(StrataIter *);
  void (*xSeek)(StrataIter *, const u8 *pKey, size_t nKey); /* first entry >= key */
  void (*xNext)(StrataIter *);                               /* requires bValid */
  void (*xPrev)(StrataIter *);                               /* requires bValid */
  void (*xClose)(StrataIter *);
};

struct StrataIter {
  const StrataIterMethods *pMethods;
  int bValid;
  int rc;
  const u8 *pKey;
  size_t nKey;
  const u8 *pVal;
  size_t nVal;
  /* KEPT ENTRIES. Set by xPrev and xSeekLast (stale after other moves;
  ** always 0 in a merging iterator moving forward): 1 if the next xPrev
  ** leaves the bytes of the current entry where they are, and also of every
  ** entry published since the last xPrev made with it 0. The db iterator
  ** moving backward so keeps the entry it will return in place instead of
  ** copying it. 0 is always correct. */
  int bKeepOnPrev;
};

static inline void strataIterClose(StrataIter *p) { if (p) p->pMethods->xClose(p); }

/* Per-read counters a lookup fills in (the caller aggregates them). */
struct StrataReadStats {
  u64 nBloomCheck;
  u64 nBloomUseful;
};

/* ------------------------------------------------------------------ */
/* memtable.c: an arena-allocated skiplist of internal keys. One writer at a
** time (the caller serializes writers); any number of readers without locks.
** Reference counted: readers and iterators hold a reference. */

int strataMemtableNew(Memtable **ppMem);
void strataMemtableRef(Memtable *p);
void strataMemtableUnref(Memtable *p); /* frees on the last reference */
/* Add an entry. Returns STRATA_NOMEM if the arena cannot grow. The same
** (key, seq) is never added twice. */
int strataMemtableAdd(Memtable *p, u64 seq, int type, const u8 *pKey, size_t nKey,
                      const u8 *pVal, size_t nVal);
/* Add all of pSrc's entries, sequence s becoming s - seqFrom + seqTo, in key
** order (cheap for the skiplist). On error p holds some of them. */
int strataMemtableAddAll(Memtable *p, Memtable *pSrc, u64 seqFrom, u64 seqTo);
/* Newest entry for pKey with sequence <= seq. Returns 0 if there is none;
** otherwise 1 with *pType set and, for a value, *ppVal and *pnVal pointing into
** the memtable (valid while the caller holds a reference). */
int strataMemtableGet(Memtable *p, const u8 *pKey, size_t nKey, u64 seq, int *pType,
                      const u8 **ppVal, size_t *pnVal);
size_t strataMemtableMemoryUsage(const Memtable *p); /* bytes in use in the arena */
/* Give an empty memtable a filter of nBits over its user keys, so that Get of
** an absent key is answered without a search. */
int strataMemtableEnableBloom(Memtable *p, size_t nBits);
u64 strataMemtableCount(const Memtable *p);          /* entries added */
u32 strataMemtableIndexSize(const Memtable *p);      /* nodes in its search index (tests) */
/* An iterator over the internal keys; it holds a reference to p. */
int strataMemtableIterNew(Memtable *p, StrataIter **ppIter);

/* ------------------------------------------------------------------ */
/* log.c: the record log used by the WAL and the manifest. A file is a
** 16-byte header (magic, format version, kind) followed by records, each a
** 16-byte header (header CRC, length, payload CRC, type) and its payload.
** See doc/FORMAT.md. */

#define STRATA_LOG_WAL 1
#define STRATA_LOG_MANIFEST 2

/* Create (truncate) zPath and write the file header. */
int strataLogWriterOpen(strata_env *env, const char *zPath, u32 kind, StrataIoStats *pStats,
                        LogWriter **ppWriter);
/* Append one record to the writer's buffer. The buffer goes to the OS when
** it fills, at strataLogFlush or strataLogSync. */
int strataLogAppend(LogWriter *w, const u8 *p, size_t n);
int strataLogFlush(LogWriter *w); /* buffered bytes to the OS (one write) */
int strataLogSync(LogWriter *w);  /* flush + fdatasync */
u64 strataLogSize(const LogWriter *w); /* bytes in the file, buffered included */
/* Flush and close; NULL is fine. Returns the flush error, if any. */
int strataLogWriterClose(LogWriter *w);

int strataLogReaderOpen(strata_env *env, const char *zPath, u32 kind, LogReader **ppReader);
/* Next record. STRATA_OK with *pp and *pn (valid until the next call), or
** STRATA_NOTFOUND at the end of the log (including a torn tail: a damaged
** last record that nothing valid follows), or STRATA_CORRUPT if a damaged
** record is followed by valid ones (the message gives the offset). */
int strataLogRead(LogReader *r, const u8 **pp, size_t *pn);
u64 strataLogReaderOffset(const LogReader *r); /* end of the last good record */
int strataLogReaderTorn(const LogReader *r);   /* 1 if the end was a torn tail */
void strataLogReaderClose(LogReader *r);

/* ------------------------------------------------------------------ */
/* batch.c: the write batch and its encoding, which is also the WAL record
** payload: seq (8) | count (4) | count x (type (1) | varint klen | key
** [| varint vlen | value]). */

struct strata_batch {
  StrataBuf rep; /* the encoding above; seq is filled at commit */
  u64 nUserBytes;
};
#define STRATA_BATCH_HEADER 12
int strataBatchInit(strata_batch *b);
u32 strataBatchCount(const strata_batch *b);
void strataBatchSetSeq(strata_batch *b, u64 seq);
u64 strataBatchSeq(const strata_batch *b);
int strataBatchAppend(strata_batch *pDst, const strata_batch *pSrc); /* ops of src after dst's */
/* Call xOp for every operation of an encoded batch (rep/n) in order; stops at
** the first nonzero return. STRATA_CORRUPT if the encoding is damaged. */
int strataBatchIterate(const u8 *rep, size_t n, void *pCtx,
                       int (*xOp)(void *pCtx, u64 seq, int type, const u8 *pKey, size_t nKey,
                                  const u8 *pVal, size_t nVal));
/* The same for a batch built in memory (trusted), from the operation that
** starts at byte iOff, numbering them from seq. */
int strataBatchForEach(const strata_batch *b, size_t iOff, u64 seq, void *pCtx,
                       int (*xOp)(void *pCtx, u64 seq, int type, const u8 *pKey, size_t nKey,
                                  const u8 *pVal, size_t nVal));
/* One operation of a batch, by reference into it; iOp is its position. */
typedef struct BatchOpRef {
  const u8 *pKey, *pVal;
  u32 nKey, nVal;
  u32 iOp;
  int type;
} BatchOpRef;
/* Fill a[i] (room for strataBatchCount(b)) with operation i of a batch built
** in memory (trusted); returns the number of operations. */
u32 strataBatchCollect(const strata_batch *b, BatchOpRef *a);

/* ------------------------------------------------------------------ */
/* cache.c: a sharded LRU cache with a byte budget, keyed by (id, offset).
** Used for data/index/filter blocks and, with charge 1 per entry, as the
** table cache of open files. */

int strataCacheNew(size_t nCapacity, BlockCache **ppCache);
void strataCacheFree(BlockCache *c);
/* Returns a pinned handle or NULL. */
CacheHandle *strataCacheLookup(BlockCache *c, u64 id, u64 off);
/* Prefetch what a lookup of the key will read first (no lock, no effect). */
void strataCachePrefetch(BlockCache *c, u64 id, u64 off);
/* Insert (replacing any entry with the same key) and return it pinned.
** xFree(pValue) runs when the entry is evicted or replaced and unpinned.
** Returns NULL only if the handle cannot be allocated (then xFree has run). */
CacheHandle *strataCacheInsert(BlockCache *c, u64 id, u64 off, void *pValue, size_t nCharge,
                               void (*xFree)(void *));
/* As Insert, leaving the entry unpinned: STRATA_OK or STRATA_NOMEM. */
int strataCacheAdd(BlockCache *c, u64 id, u64 off, void *pValue, size_t nCharge,
                   void (*xFree)(void *));
void *strataCacheValue(CacheHandle *h);
void strataCacheRelease(BlockCache *c, CacheHandle *h);
void strataCacheErase(BlockCache *c, u64 id, u64 off);
/* Erase every entry with this id (a deleted file). */
void strataCacheEraseId(BlockCache *c, u64 id);
size_t strataCacheUsage(BlockCache *c);
/* Bytes an entry costs beyond its value (its handle, its share of the slot
** array, allocator headers): callers whose charge is bytes add it. */
size_t strataCacheEntryOverhead(void);
/* Set a new capacity, evicting unpinned entries beyond it. */
void strataCacheSetCapacity(BlockCache *c, size_t nCapacity);
/* Charge n bytes held outside the cache to its capacity (the cache evicts
** to make room at once), and give them back. Unpinned entries plus
** reservations stay within the capacity. */
void strataCacheReserve(BlockCache *c, size_t n);
void strataCacheUnreserve(BlockCache *c, size_t n);
size_t strataCacheReserved(BlockCache *c);
u64 strataCacheNewId(BlockCache *c); /* a fresh id, for readers without a file number */
void strataCacheCounters(BlockCache *c, u64 *pnHit, u64 *pnMiss);
size_t strataCacheCount(BlockCache *c);

/* ------------------------------------------------------------------ */
/* bloom.c: a cache-line-blocked bloom filter over user keys, one per table. */

u32 strataBloomHash(const u8 *p, size_t n);
/* Append a filter for nKey hashes to pOut. */
int strataBloomBuild(const u32 *aHash, size_t nKey, int bitsPerKey, StrataBuf *pOut);
/* 0 if the key is certainly absent, 1 if it may be present. A malformed
** filter answers 1. */
int strataBloomMayContain(const u8 *pFilter, size_t n, u32 hash);
/* A filter's geometry, read from its trailer once (strataBloomInit), so that
** a check touches only the line it tests. nLines = 0: malformed, answers 1. */
struct BloomFilter {
  const u8 *aLine;
  u32 nLines;
  int nProbes;
};
void strataBloomInit(BloomFilter *f, const u8 *pFilter, size_t n);
/* As strataBloomMayContain, for a filter set up by strataBloomInit. */
int strataBloomCheck(const BloomFilter *f, u32 hash);
/* Prefetch the line strataBloomCheck(f, hash) will read (a hint only). */
void strataBloomPrefetch(const BloomFilter *f, u32 hash);

/* compress.c: the only file that knows zstd. */
/* Append the compressed form of p/n to pOut. */
int strataCompress(int type, int level, const u8 *p, size_t n, StrataBuf *pOut);
/* Uncompressed size of a compressed block, or STRATA_CORRUPT. */
int strataDecompressedSize(int type, const u8 *p, size_t n, size_t *pnOut);
/* Decompress into pOut (which holds exactly nOut bytes). STRATA_CORRUPT on
** damage or a size mismatch. */
int strataDecompress(int type, const u8 *p, size_t n, u8 *pOut, size_t nOut);
/* Free the calling thread's zstd contexts now rather than at its exit. */
void strataCompressThreadRelease(void);

/* ------------------------------------------------------------------ */
/* sstable.c (+ block.c): immutable sorted tables of internal keys. */

/* Where table builders and iterators charge their buffers (one per
** database; see MEMORY BUDGET in db.c): every byte is reserved in pCache
** while allocated, and the read-ahead windows of all iterators together
** stay within nReadaheadMax (a window that may not grow stays as it is). */
typedef struct StrataBudget {
  BlockCache *pCache;        /* the reservations go here */
  size_t nReadaheadMax;      /* bytes of read-ahead windows allowed at once */
  _Atomic size_t nReadahead; /* bytes of read-ahead windows now */
  _Atomic size_t nFreed;     /* bytes given back so far (builders, windows, readers) */
} StrataBudget;

struct SstOptions {
  size_t nBlockSize;
  int compression;
  int compressionLevel;
  int bloomBitsPerKey;
  int restartInterval; /* keys between restart points (16) */
  int bSync;           /* fsync the file before Finish returns */
  int nSkipHint;       /* 0, or strataSstBuilderSkipHint of an earlier table: data seen so
                       ** far did not compress, so probe it this many blocks apart */
  StrataBudget *pBudget; /* NULL, or where the builder's buffers are charged */
};

struct SstProps {
  u64 nEntries;
  u64 nDeletes;
  u64 nDataBlocks;
  u64 nRawKeyBytes;
  u64 nRawValBytes;
  u64 minSeq, maxSeq;
  u64 fileSize;
  StrataBuf smallest; /* internal keys */
  StrataBuf largest;
};
void strataSstPropsFree(SstProps *p);

/* Create zPath. Entries must be added in strictly increasing internal key
** order. */
int strataSstBuilderNew(strata_env *env, const char *zPath, const SstOptions *opts,
                        StrataIoStats *pStats, SstBuilder **ppBuilder);
int strataSstBuilderAdd(SstBuilder *b, const u8 *pIkey, size_t nIkey, const u8 *pVal, size_t nVal);
u64 strataSstBuilderFileSize(const SstBuilder *b); /* bytes so far, estimated */
u64 strataSstBuilderCount(const SstBuilder *b);
/* How far apart b now probes its data blocks for compression (0: it
** compresses each; -1: it does not compress), for SstOptions.nSkipHint of
** the next table. */
int strataSstBuilderSkipHint(const SstBuilder *b);
/* Write the remaining blocks and the footer, sync if asked, close the file
** and free b. *pProps describes the table (free with strataSstPropsFree). */
int strataSstBuilderFinish(SstBuilder *b, SstProps *pProps);
/* Close and delete the partial file; free b. Accepts NULL. */
void strataSstBuilderAbandon(SstBuilder *b);

/* Open a table: read and check footer, index, filter and properties. Data
** blocks go through pCache (which may be NULL) under the key (id, offset);
** the index and filter blocks are held by the reader and reserved in pCache
** (the caller keeps readers in the table cache, so they are bounded too). */
int strataSstOpen(strata_env *env, const char *zPath, u64 id, BlockCache *pCache,
                  StrataIoStats *pStats, SstReader **ppReader);
void strataSstClose(SstReader *r);
/* Charge the read-ahead windows of r's iterators to pBudget (before any
** iterator is made); without one they are neither charged nor bounded. */
void strataSstSetBudget(SstReader *r, StrataBudget *pBudget);
/* Map r's file and read uncompressed data blocks in place from then on
** (MAPPED TABLES in sstable.c). STRATA_OK; STRATA_NOTFOUND if its env cannot
** map; or the error mapping failed with. Either way r keeps working (by
** reading the file when not mapped). Call before any read. A block read
** in place has its checksum verified at its first use, or at every use if
** bVerifyAlways (VERIFIED BLOCKS in sstable.c). */
int strataSstMap(SstReader *r, int bVerifyAlways);
/* Free the calling thread's stash of spare block buffers and its closed
** table iterator now rather than at its exit. */
void strataSstThreadRelease(void);
const SstProps *strataSstProps(const SstReader *r);
/* Bytes the reader holds in memory (index + filter): its cache charge. */
size_t strataSstMemoryUsage(const SstReader *r);
/* Newest entry for user key pUkey with sequence <= seq. *pFound = 0 if none;
** else 1 with *pType and, for a value, the value copied into pVal. */
int strataSstGet(SstReader *r, const u8 *pUkey, size_t nUkey, u64 seq, StrataReadStats *pStats,
                 int *pFound, int *pType, StrataBuf *pVal);
/* The same, for a caller that probes several tables: hash is
** strataBloomHash(pUkey, nUkey), computed once per lookup. The caller has
** found the key within the table's key range (the file's bounds): it is
** not checked again (a key outside would still be reported absent). */
int strataSstGetHashed(SstReader *r, const u8 *pUkey, size_t nUkey, u32 hash, u64 seq,
                       StrataReadStats *pStats, int *pFound, int *pType, StrataBuf *pVal);
/* 0 if the table certainly has no entry for the key with filter hash
** `hash` (no entries, or its filter says so), 1 if it may. Counts the filter
** check in pStats (may be NULL). A lookup of many tables asks this first:
** most answer 0, for far less than a Get costs. */
int strataSstFilterCheck(const SstReader *r, u32 hash, StrataReadStats *pStats);
/* Start loading what a Get of the key with filter hash `hash` reads first
** (its filter line). Only a hint: no effect on results. */
void strataSstPrefetch(const SstReader *r, u32 hash);
/* An iterator over the table's internal keys. bFillCache = 0 leaves the
** cache unchanged by blocks it reads (for compaction and scans); with 1 it
** adds them, except those past the first few of a long run of consecutive
** blocks (see SCANS in sstable.c). */
int strataSstIterNew(SstReader *r, int bFillCache, StrataIter **ppIter);
/* Make a table iterator release h, pinned in cache c, when it is closed
** (after it is done with its reader, which h may keep open). */
void strataSstIterHold(StrataIter *pIter, BlockCache *c, CacheHandle *h);
/* 1 if p is a table iterator (made by strataSstIterNew). */
int strataSstIterIs(const StrataIter *p);
/* Seek each of the n table iterators ap[0..n) to the first entry >= pKey,
** exactly as their xSeek would, with the memory reads of the n seeks
** overlapped (SEEKING SEVERAL TABLES in sstable.c). xDuring(pArg), if not
** NULL, runs once in the middle (n may be 0): the caller's other work. */
void strataSstIterSeekMany(StrataIter **ap, int n, const u8 *pKey, size_t nKey,
                           void (*xDuring)(void *), void *pArg);
/* Check every block's checksum and the key order (tools, tests). */
int strataSstVerify(SstReader *r);


/* ------------------------------------------------------------------ */
/* version.c: live files per level (a Version), version edits, and the
** manifest that logs them. */

typedef struct FileMeta FileMeta;
typedef struct Version Version;
typedef struct VersionEdit VersionEdit;
typedef struct VersionSet VersionSet;

struct FileMeta {
  _Atomic int nRef;
  u64 number;
  u64 size;
  u64 minSeq, maxSeq;
  u64 nEntries, nDeletes;
  StrataBuf smallest; /* internal keys */
  StrataBuf largest;
  int bCompacting;    /* guarded by the db mutex */
  _Atomic unsigned nSeeks;     /* seeks charged to the file (SEEK COMPACTION), */
  _Atomic unsigned nSeekAllow; /* and how many it may take (0: not yet known) */
  /* Set when an edit removes the file from the current version: the file is
  ** deleted (xObsolete) when the last version holding it goes away. */
  _Atomic int bObsolete;
  void (*xObsolete)(void *pCtx, u64 number);
  void *pObsoleteCtx;
};

struct Version {
  _Atomic int nRef;
  int nFile[STRATA_MAX_LEVELS];
  FileMeta **aFile[STRATA_MAX_LEVELS]; /* L0: by number ascending; L1+: by smallest key */
};

typedef struct EditFile {
  int level;
  FileMeta *pMeta; /* owned by the edit (one reference) */
} EditFile;

typedef struct EditDel {
  int level;
  u64 number;
} EditDel;

struct VersionEdit {
  int bLogNumber, bNextFile, bLastSeq;
  u64 logNumber, nextFile, lastSeq;
  int nAdd, nAddAlloc;
  EditFile *aAdd;
  int nDel, nDelAlloc;
  EditDel *aDel;
};

struct VersionSet {
  strata_env *env;
  char *zDir;
  StrataIoStats *pIoStats;
  int bSync;           /* fsync manifest and directory at each edit */
  Version *pCurrent;   /* one reference held by the set */
  u64 nextFile;
  u64 lastSeq;         /* recovered value; the db keeps the live one */
  u64 logNumber;       /* WALs numbered below this are obsolete */
  u64 manifestNumber;
  LogWriter *pManifest;
  pthread_cond_t writerCv; /* an edit's manifest write finished (see LogAndApply) */
  int bWriting;            /* an edit is being written with the caller's mutex released */
};

FileMeta *strataFileMetaNew(void);
/* A new FileMeta (one reference) describing table `number` from its properties. */
int strataFileMetaFromProps(u64 number, const SstProps *p, FileMeta **ppMeta);
void strataFileMetaRef(FileMeta *f);
void strataFileMetaUnref(FileMeta *f);
void strataVersionRef(Version *v);
void strataVersionUnref(Version *v);
u64 strataVersionLevelBytes(const Version *v, int level);
/* Check the structural invariants (levels >= 1 sorted, non-overlapping;
** smallest <= largest). STRATA_CORRUPT with a message if one fails. */
int strataVersionCheck(const Version *v);

void strataEditInit(VersionEdit *e);
void strataEditClear(VersionEdit *e); /* releases added FileMetas */
int strataEditAddFile(VersionEdit *e, int level, FileMeta *pMeta); /* takes a reference */
int strataEditDelFile(VersionEdit *e, int level, u64 number);
int strataEditEncode(const VersionEdit *e, StrataBuf *pOut);
int strataEditDecode(VersionEdit *e, const u8 *p, size_t n);
/* A new version: pBase with e applied. */
int strataVersionApply(const Version *pBase, const VersionEdit *e, Version **ppOut);

/* Open the set for directory zDir: read CURRENT and replay the manifest. If
** CURRENT is absent, *pbExists = 0 and the set is empty. */
int strataVersionSetOpen(strata_env *env, const char *zDir, StrataIoStats *pIoStats, int bSync,
                         VersionSet **ppSet, int *pbExists);
/* Start a new manifest holding the whole current version (plus e, if not
** NULL), and point CURRENT at it. Used at open, and when the manifest grows. */
int strataVersionSetNewManifest(VersionSet *vs, const VersionEdit *e);
/* Apply e to the current version, append it to the manifest (synced if
** bSync) and install the result. pMu: NULL, or the mutex the caller holds,
** released while the record is written and synced (edits still go one at a
** time, each onto the version the one before installed). */
int strataVersionSetLogAndApply(VersionSet *vs, VersionEdit *e, pthread_mutex_t *pMu);
void strataVersionSetClose(VersionSet *vs);
u64 strataVersionSetNewFileNumber(VersionSet *vs);

/* File names inside a database directory. */
#define STRATA_FILE_WAL 1
#define STRATA_FILE_SST 2
#define STRATA_FILE_MANIFEST 3
#define STRATA_FILE_CURRENT 4
#define STRATA_FILE_LOCK 5
#define STRATA_FILE_TEMP 6
char *strataFileName(const char *zDir, int type, u64 number); /* strataFreeMem() it */
/* Parse a directory entry name: returns its type (0 if not ours). */
int strataParseFileName(const char *zName, u64 *pNumber);

/* ------------------------------------------------------------------ */
/* merge.c: the merging iterator, and the level iterator that concatenates
** the sorted, non-overlapping files of one level. */

/* Takes ownership of the children (closed with it, or on failure). */
int strataMergeIterNew(StrataIter **apChild, int nChild, StrataIter **ppIter);

/* Opens a table iterator for a file; used by the level iterator. */
typedef int (*StrataOpenTableIter)(void *pCtx, FileMeta *pFile, StrataIter **ppIter);
/* An iterator over the files (which must outlive it: hold the Version). */
int strataLevelIterNew(FileMeta **aFile, int nFile, StrataOpenTableIter xOpen, void *pCtx,
                       StrataIter **ppIter);
/* An iterator that is empty and reports rc (for errors in constructors). */
StrataIter *strataErrorIterNew(int rc);

/* ------------------------------------------------------------------ */
/* dbiter.c: the user-facing iterator over an internal iterator: hides
** versions newer than the snapshot, older versions and deletions, applies
** the bounds. Entries with sequence >= STRATA_TXN_SEQ_BASE (a transaction's
** own writes) are always visible. */

#define STRATA_TXN_SEQ_BASE (((u64)1) << 55)

typedef struct DbIter DbIter;
/* Takes ownership of pInternal. pRelease(pArg) runs when the iterator is
** freed (it drops the references the iterator's sources hold). */
int strataDbIterNew(StrataIter *pInternal, u64 seq, const strata_read_options *ro,
                    void (*xRelease)(void *), void *pArg, strata_iter **ppIter);
/* Marks an iterator made by strata_iter_new on db (its release argument is
** the state of strataDbInternalIter): strata_iter_refresh may renew it. */
void strataDbIterAllowRefresh(strata_iter *it, strata *db, int bFillCache);

/* ------------------------------------------------------------------ */
/* db.c internals used by txn.c. */

/* Commit a batch through the group-commit write path. bOwner: the caller
** holds the transaction write lock. */
int strataDbWriteBatch(strata *db, const strata_batch *b, int bOwner);
/* Commit a transaction's batch b (the caller holds the write lock). What
** goes into the memtable, in key order, is either pIndex, holding the same
** operations, operation i with sequence STRATA_TXN_SEQ_BASE + i, or (pIndex
** NULL) aSorted, b's operations sorted by key, later ones first. */
int strataDbWriteTxn(strata *db, const strata_batch *b, Memtable *pIndex,
                     const BatchOpRef *aSorted);
/* Take / drop the transaction write lock. Take fails with STRATA_BUSY after
** the busy timeout, or at once if the database changed after seqSnapshot. */
int strataDbWriteLock(strata *db, u64 seqSnapshot);
void strataDbWriteUnlock(strata *db);
/* Internal iterator over the whole database (no snapshot filtering), and the
** release function for the references it took. */
int strataDbInternalIter(strata *db, int bFillCache, StrataIter **ppIter, void **ppRelease);
void strataDbReleaseIterState(void *p);
/* Renew an internal iterator and its state (*ppIter, *ppState, from
** strataDbInternalIter; either may be NULL) for a read at pSnap (NULL: the
** newest state), whose sequence goes to *pSeq. If the memtables and version
** the state holds are still db's current ones and *ppIter has no error,
** both are kept (the memtable iterators see later writes; the sequence
** hides what is too new). Otherwise both are released and rebuilt over the
** current state; on failure both are NULL. */
int strataDbIterRefresh(strata *db, int bFillCache, void **ppState, StrataIter **ppIter,
                        const strata_snapshot *pSnap, u64 *pSeq);
/* Lookup at seq: STRATA_OK (found, value in pVal), STRATA_NOTFOUND (absent or
** deleted), or an error. ppView, if not NULL, caches the read view (what
** the lookup searches) between calls of one thread: start it NULL, and
** drop it with strataDbViewUnref before the database is closed. */
int strataDbGetInternal(strata *db, ReadView **ppView, const u8 *pKey, size_t nKey, u64 seq,
                        strata_value *pVal);
void strataDbViewUnref(ReadView *pView); /* NULL is fine */
u64 strataDbLastSeq(strata *db);
int strataDbBusyTimeout(strata *db);
int strataValueSet(strata_value *pVal, const void *p, size_t n);

/* ------------------------------------------------------------------ */
/* The database handle (db.c), shared with txn.c and compact.c. */

#include <pthread.h>

struct strata_snapshot {
  u64 seq;
  strata_snapshot *pPrev, *pNext; /* the db's list, oldest first */
};

typedef struct DbStats {
  u64 flushes, flush_bytes_written, flush_micros;
  u64 compactions, compaction_bytes_read, compaction_bytes_written, compaction_micros;
  u64 seek_compactions;
  u64 stall_micros, stall_count;
  u64 user_bytes_written, wal_bytes_written;
  u64 level_read_bytes[STRATA_MAX_LEVELS];
  u64 level_written_bytes[STRATA_MAX_LEVELS];
} DbStats;

#define STRATA_MAX_BG_THREADS 16

struct strata {
  char *zDir;
  strata_options opts;
  strata_env *env;
  StrataFile *pLock;
  StrataIoStats io;
  SstOptions sstOpts;
  BlockCache *pBlockCache;
  BlockCache *pTableCache;
  StrataBudget budget;    /* flush, compaction and scan buffers (MEMORY BUDGET in db.c) */
  size_t nImmCharge;      /* bytes of pImm reserved in pBlockCache (mu) */
  size_t nFreedAtTrim;    /* budget.nFreed at the last heap trim (mu) */

  pthread_mutex_t mu;
  pthread_cond_t bgCv;    /* wakes background threads */
  pthread_cond_t doneCv;  /* background progress (flush/compaction done, error) */
  pthread_cond_t txnCv;   /* the transaction write lock was released */
  pthread_cond_t queueCv; /* a commit group finished */
  Memtable *pMem;         /* active memtable */
  Memtable *pImm;         /* being flushed, or NULL */
  _Atomic(ReadView *) pView; /* pMem + pImm + current version, for lookups (db.c) */
  _Atomic int bImmPending; /* pImm != NULL, readable without the mutex */
  _Atomic int nSstSkipHint; /* of the last table built (SstOptions.nSkipHint) */
  int bTrimPending;         /* the cache shrank: a background thread trims the heap (mu) */
  u64 immWalNumber;       /* the WAL that pImm's writes are in */
  LogWriter *pWal;        /* used only by the commit leader */
  u64 walNumber;
  VersionSet *vs;
  _Atomic u64 lastSeq;    /* published after the memtable insert */
  struct Writer *pWriterHead, *pWriterTail;
  strata_batch groupBatch; /* the leader's combined batch */
  int bTxnLock;           /* a transaction holds the write lock */
  int nTxn;               /* open transactions */
  int nIterators;         /* open iterators */
  strata_snapshot snapList; /* list head */
  strata_snapshot *pSnapSpare; /* a released snapshot kept for the next (mu) */
  int bgError;            /* sticky: writes refused until reopen */
  char zBgError[256];
  int bShutdown;
  int bFlushing;
  int nCompacting;        /* compactions running */
  int bManualCompaction;  /* a strata_compact_range is in progress */
  int nThread;
  pthread_t aThread[STRATA_MAX_BG_THREADS];
  DbStats stats;
  _Atomic u64 nBloomCheck, nBloomUseful;
  /* Compaction state (compact.c). */
  int iCompactLevel;      /* level chosen by strataCompactPick */
  int bSeekPicked;        /* ...for db->pSeekFile */
  FileMeta *pSeekFile;    /* referenced: the file seeks want moved down, */
  int iSeekLevel;         /* and its level (SEEK COMPACTION in compact.c) */
  u64 nCompactionDebt;    /* see strataCompactUpdateDebt */
  /* DEFERRED DELETION (db.c). muDoomed is a leaf lock: the last reference
  ** to a file may go on any thread, with or without mu. */
  pthread_mutex_t muDoomed;
  struct DoomedFile *aDoomed; /* files to delete (muDoomed) */
  int nDoomed, nDoomedAlloc;  /* (muDoomed) */
  int bDeleteNow;             /* no background thread runs: delete at once (muDoomed) */
  int nDeleting;              /* files a background thread is deleting (mu) */
};

void strataDbScheduleWork(strata *db);                /* db->mu held */
void strataDbFlushPending(strata *db);                /* db->mu held */
u64 strataDbOldestSnapshot(strata *db);                /* db->mu held */
void strataDbAdoptFile(strata *db, FileMeta *f);       /* obsolete files get deleted */
void strataDbSstOptions(const strata *db, int level, SstOptions *pOut); /* per output level */
/* Record b's compression probe state (before its Finish) for the next
** table's SstOptions.nSkipHint. */
void strataDbNoteSkipHint(strata *db, const SstBuilder *b);
int strataDbTableIter(strata *db, FileMeta *f, int bFillCache, StrataIter **ppIter);

/* Check every file of the current version: its entries are in order, within
** [smallest, largest], with sequences within [minSeq, maxSeq]; levels >= 1
** do not overlap; L0 files hold newer sequences as numbers grow. Reads every
** block (checksums included). STRATA_CORRUPT with a message on failure. */
int strataDbCheck(strata *db);

/* compact.c: leveled compaction. */
/* Recompute db->nCompactionDebt: bytes that compaction still has to move
** (db->mu held; after every version change). */
void strataCompactUpdateDebt(strata *db);
/* The debt at which writes slow down (bHard = 0) or stop (bHard = 1). */
u64 strataCompactDebtLimit(const strata *db, int bHard);
/* 1 if a compaction should run now (db->mu held). */
int strataCompactPick(strata *db);
/* Run one compaction (db->mu held; released during the merge). */
void strataCompactRun(strata *db);
/* Charge one seek to file f of `level` in version v, the first of two or
** more files whose key ranges hold the sought key (SEEK COMPACTION; db->mu
** NOT held; the caller holds a reference to v). */
void strataCompactNoteSeek(strata *db, const Version *v, FileMeta *f, int level);
/* Drop db->pSeekFile (db->mu held). */
void strataCompactSeekClear(strata *db);
/* db.c: charge a seek of user key k through the iterator state pState
** (strataDbInternalIter's) to the file seek compaction should move down. */
void strataDbNoteSeek(strata *db, void *pState, const u8 *k, size_t n);

#endif /* STRATA_INT_H */
