/*
** bench.c -- strata-bench: throughput, write amplification and space of
** strata, side by side with LevelDB and RocksDB when they are available.
**
**   strata-bench [--benchmarks=fillseq,readrandom,...] [--num=N] [--engines=...]
**
** The program uses only the public API (strata.h) and the peers' public C
** APIs (<leveldb/c.h>, <rocksdb/c.h>, compiled in when configure defines
** HAVE_LEVELDB / HAVE_ROCKSDB). Because it is a client of the engine and not
** part of it, it allocates with malloc() rather than the engine's internal
** allocator.
**
** WORKLOADS
**
**   fillseq       num puts, keys 0..num-1 in order, into an empty database
**   fillrandom    num puts, keys drawn uniformly from [0, num), empty database
**   overwrite     num puts of uniform random keys into the current database
**   readrandom    reads lookups of uniform random keys (some may be absent)
**   readmissing   reads lookups of keys that cannot exist (a suffix byte)
**   seekrandom    reads times: a new iterator, seek to a uniform random key,
**                 then 10 nexts (as LevelDB's db_bench, one iterator per seek)
**   readseq       a forward scan of up to reads entries with one iterator
**   readreverse   the same, backwards
**   deleterandom  deletes of distinct existing keys in random order (by
**                 default half of the keys that exist when it starts)
**
**   Keys are the key number in decimal, zero-padded to key_size bytes. Every
**   engine gets exactly the same key sequence (the generator is reseeded from
**   --seed for each workload and engine). A read workload that runs before
**   any fill first runs fillrandom, as does overwrite or deleterandom.
**
** VALUES
**
**   Values are slices of a 1 MiB pool built like db_bench's generator: pieces
**   of 100 bytes, each made of compression_ratio * 100 random bytes repeated
**   to fill the piece, so a value compresses to about ratio * value_size. The
**   slice for a key depends on the key and on the write workload that stored
**   it, so a read can check the exact bytes it gets back.
**
** FAIRNESS
**
**   All engines get the same write buffer (strata's memtable_size), the same
**   block cache budget (cache_size), 4 KiB blocks, bloom filters with 10 bits
**   per key, the same limit on open files, and their write-ahead log. Writes
**   are synced at every commit only with --sync=full (the peers' sync write
**   option); strata's default NORMAL mode, like the peers' unsynced writes,
**   hands every commit to the OS.
**
**   Compression: zstd at strata's level for strata and RocksDB. LevelDB's C
**   API (1.23) offers only snappy, so LevelDB uses snappy; the header of the
**   output says so. --compression=none turns it off for all three.
**
**   Shape of the tree: RocksDB is given strata's L0 triggers, target file
**   size and L1 size (it allows setting them); LevelDB's are fixed in its
**   code (L0 4/8/12 files, 2 MiB files, L1 10 MiB) and stay as they are.
**   strata counts index and filter blocks in its cache budget, so RocksDB is
**   told to cache them too (with L0's pinned, its recommended setting);
**   LevelDB cannot and keeps them outside the cache. Background work:
**   strata's background_threads, LevelDB's single thread, RocksDB's default
**   of 2 background jobs (one flush, one compaction).
**
**   Settling. After each write workload, the figures are taken twice: at the
**   end of the loop (an engine may still owe flushes and compactions) and
**   after waiting until its background work is done; "settled ops/s" charges
**   that wait to the workload. Every read workload therefore starts on a
**   settled database for all engines; no engine's active memtable is forced
**   to disk. The waits:
**     strata   strata_wait_idle().
**     rocksdb  poll every 10 ms until the properties num-running-flushes,
**              num-running-compactions, mem-table-flush-pending and
**              compaction-pending are all 0.
**     leveldb  has no such call (compact_range would rewrite the whole tree
**              into one level: far more than settling), so: poll every 20 ms
**              until fewer than 4 files are in L0 and the process has written
**              (almost) nothing (/proc/self/io wchar: under 4 KiB per poll)
**              for 500 ms. LevelDB starts the next compaction as soon as one
**              ends and writes its output 64 KiB at a time as it goes, so a
**              quiet half second means its thread is idle. The wait is
**              charged up to the start of the quiet period, not its end.
**   Engines run one after the other and each is settled before the next
**   starts, so no engine's background work runs during another's workload.
**
** MEASURING WRITES
**
**   User bytes are key + value bytes of the puts (key bytes of the deletes).
**   Write amplification ("w-amp") is bytes the engine wrote to files / user
**   bytes. For strata it is strata_get_stats()'s disk_bytes_written (log,
**   tables, manifest). The peers have no such counter in their C APIs, so
**   for them it is the delta of wchar in /proc/self/io: bytes the process
**   passed to write() and pwrite() calls (all three engines write files with
**   write(), not mmap, and the benchmark itself writes nothing while it
**   measures). wchar is also shown for strata, so the three can be compared
**   by one yardstick ("wchar-amp"). "wbytes-amp" uses write_bytes, bytes the
**   kernel will send to the storage device: it is counted in whole pages when
**   a page cache page is first dirtied, so a log that appends small records
**   to a page that is still dirty is counted once per page, and files deleted
**   before write-back are counted anyway. It is closer to device wear but
**   noisier; wchar is the more reliable of the two for comparing engines.
**   "disk-MB" is the space the engine's directory takes (allocated blocks, as
**   du). MB means 2^20 bytes.
**
** CHECKS
**
**   The benchmark keeps a model of the database (which keys exist and which
**   write stored them) and checks every answer, so a broken engine cannot
**   post a fast number: point reads compare found counts with the model and
**   compare every value byte; seeks check ordering, the number of entries
**   visited and every value; scans check ordering, the number of entries and
**   value lengths on every entry, and the value bytes of every 16th entry
**   (keeping the check cheaper than the work it checks). A failed check
**   prints WRONG and makes the exit status 1.
**
** OUTPUT
**
**   For each workload, one line per engine (and a "settled" line for writes),
**   then the ratio of strata's ops/s to each peer's. With --histogram, the
**   latency percentiles of single operations (a batch's commit counts in the
**   operation that completes the batch). With --stats, files per level and
**   strata's engine counters.
*/
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "benchutil.h"
#include "strata.h"

#ifdef HAVE_LEVELDB
#include <leveldb/c.h>
#endif
#ifdef HAVE_ROCKSDB
#include <rocksdb/c.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* CONFIGURATION */

typedef struct Config {
  uint64_t nNum;         /* entries in a fill; keys are drawn from [0, nNum) */
  uint64_t nReads;       /* operations of a read workload (0: nNum) */
  uint64_t nDeletes;     /* deletes of deleterandom (0: half the existing keys) */
  int nKey;              /* key bytes */
  int nVal;              /* value bytes */
  double ratio;          /* compressible fraction of a value */
  int syncMode;          /* STRATA_SYNC_* */
  int nBatch;            /* operations per write batch */
  uint64_t seed;
  size_t cacheSize;      /* 0: strata's default */
  size_t memtableSize;   /* 0: strata's default */
  int compression;       /* STRATA_COMPRESSION_* */
  int bHistogram, bStats, bKeep;
  const char *zDb;
  const char *zBenchmarks;
  const char *zEngines;
} Config;

static Config cfg = {
    .nNum = 1000000,
    .nKey = 16,
    .nVal = 100,
    .ratio = 0.5,
    .syncMode = STRATA_SYNC_NORMAL,
    .nBatch = 1,
    .seed = 301,
    .compression = STRATA_COMPRESSION_ZSTD,
    .zDb = "/tmp/strata-bench",
    .zBenchmarks =
        "fillseq,fillrandom,overwrite,readrandom,readmissing,seekrandom,readseq,readreverse,"
        "deleterandom",
};

static int nFailedChecks; /* workloads whose answers were wrong */

/* Print a message and exit with status 1. Never returns. */
/* ------------------------------------------------------------------ */
/* TIME, RANDOM NUMBERS, HISTOGRAMS */

/* Latency histogram in nanoseconds: exact below 16, then 8 buckets per power
** of two (at most 12.5% error on a percentile). */
#define HIST_N (16 + 60 * 8)
typedef struct Histogram {
  uint64_t a[HIST_N];
  uint64_t n, max;
} Histogram;

static inline int histBucket(uint64_t v) {
  int e;
  if (v < 16) return (int)v;
  e = 63 - __builtin_clzll(v);
  return 16 + (e - 4) * 8 + (int)((v >> (e - 3)) & 7);
}

/* The largest value that falls in bucket i. */
static uint64_t histBucketHigh(int i) {
  int e, sub;
  if (i < 16) return (uint64_t)i;
  e = (i - 16) / 8 + 4;
  sub = (i - 16) % 8;
  return ((uint64_t)(8 + sub + 1) << (e - 3)) - 1;
}

static inline void histAdd(Histogram *h, uint64_t v) {
  h->a[histBucket(v)]++;
  h->n++;
  if (v > h->max) h->max = v;
}

/* The value below which a fraction p of the samples fall (bucket bound). */
static uint64_t histPercentile(const Histogram *h, double p) {
  uint64_t nWant = (uint64_t)(p * (double)h->n + 0.999999), nSeen = 0;
  int i;
  if (nWant == 0) nWant = 1;
  for (i = 0; i < HIST_N; i++) {
    nSeen += h->a[i];
    if (nSeen >= nWant) {
      uint64_t v = histBucketHigh(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

/* Start and end of one timed operation; free when there is no histogram. */
static inline uint64_t opStart(const Histogram *h) { return h ? nowNs() : 0; }
static inline void opEnd(Histogram *h, uint64_t t0) {
  if (h) histAdd(h, nowNs() - t0);
}

/* ------------------------------------------------------------------ */
/* KEYS, VALUES AND THE MODEL */

/* Write key number k as nKey zero-padded decimal digits. */
static inline void keyFormat(char *z, uint64_t k) {
  int i;
  for (i = cfg.nKey - 1; i >= 0; i--) {
    z[i] = (char)('0' + k % 10);
    k /= 10;
  }
}

/* Parse a key written by keyFormat(). Returns 1 and sets *pk, or 0 if the
** bytes are not such a key of a number below nNum. */
static int keyParse(const char *z, size_t n, uint64_t *pk) {
  uint64_t k = 0;
  size_t i;
  if (n != (size_t)cfg.nKey) return 0;
  for (i = 0; i < n; i++) {
    unsigned d = (unsigned)(unsigned char)z[i] - '0';
    if (d > 9) return 0;
    k = k * 10 + d;
    if (k >= cfg.nNum) return 0;
  }
  *pk = k;
  return 1;
}

/* What the database holds: for each key the generation of the write
** workload that stored it (0: absent). Shared by all engines, since they all
** get the same operations; updated after every engine ran a write workload. */
typedef struct Model {
  uint8_t *aGen;
  uint64_t nExist;
  unsigned gen;  /* generation of the latest write workload, 1..255 */
  int bFilled;   /* a fill has run */
} Model;

static Model model;

static unsigned modelNextGen(void) {
  model.gen = model.gen % 255 + 1;
  return model.gen;
}

static void modelSet(uint64_t k, unsigned gen) {
  if (!model.aGen[k]) model.nExist++;
  model.aGen[k] = (uint8_t)gen;
}

static void modelClear(uint64_t k) {
  if (model.aGen[k]) model.nExist--;
  model.aGen[k] = 0;
}

/* ------------------------------------------------------------------ */
/* PROCESS I/O COUNTERS AND DISK USAGE */

static int pathExists(const char *z) {
  struct stat st;
  return stat(z, &st) == 0;
}

/* ------------------------------------------------------------------ */
/* ENGINES
** Each engine is a table of methods. Methods exit the program on an engine
** error (a benchmark cannot go on after one). The indirect call costs the
** same few nanoseconds for every engine. */

typedef struct Engine Engine;

typedef struct EngineMethods {
  const char *zName;
  void (*xOpen)(Engine *);    /* open, creating the database if needed */
  void (*xClose)(Engine *);
  void (*xDestroy)(Engine *); /* delete the (closed) database, if any */
  void (*xPut)(Engine *, const char *, size_t, const uint8_t *, size_t);
  void (*xDelete)(Engine *, const char *, size_t);
  void (*xBatchPut)(Engine *, const char *, size_t, const uint8_t *, size_t);
  void (*xBatchDelete)(Engine *, const char *, size_t);
  void (*xBatchCommit)(Engine *); /* write the batch, then empty it */
  /* Returns 1 and the value (valid until the next xGet), or 0 if absent. */
  int (*xGet)(Engine *, const char *, size_t, const uint8_t **, size_t *);
  void *(*xIterNew)(Engine *);
  void (*xIterFree)(Engine *, void *); /* exits if the iterator saw an error */
  void (*xIterSeek)(void *, const char *, size_t);
  void (*xIterSeekFirst)(void *);
  void (*xIterSeekLast)(void *);
  void (*xIterNext)(void *);
  void (*xIterPrev)(void *);
  int (*xIterValid)(void *);
  const char *(*xIterKey)(void *, size_t *);
  const char *(*xIterValue)(void *, size_t *);
  /* Wait until no flush or compaction is pending or running; returns the
  ** time (nowNs()) at which the engine became idle. */
  uint64_t (*xWaitIdle)(Engine *);
  /* The engine's own count of bytes written to files: 1 and *pn, or 0. */
  int (*xDiskBytes)(Engine *, uint64_t *);
  void (*xPrintStats)(Engine *); /* --stats: one line, with files per level */
} EngineMethods;

struct Engine {
  const EngineMethods *pM;
  char zDir[1024];
  char zDesc[256];      /* settings worth printing in the header */
  int bOpen;
  strata_options sOpts; /* strata's options; the peers copy the shared ones */
  strata *pStrata;
  strata_batch *pSBatch;
  strata_value sVal;
#ifdef HAVE_LEVELDB
  leveldb_t *pLdb;
  leveldb_options_t *pLOpts;
  leveldb_cache_t *pLCache;
  leveldb_filterpolicy_t *pLFilter;
  leveldb_readoptions_t *pLRead;
  leveldb_writeoptions_t *pLWrite;
  leveldb_writebatch_t *pLBatch;
  char *pLVal; /* the last value leveldb_get() returned */
#endif
#ifdef HAVE_ROCKSDB
  rocksdb_t *pRdb;
  rocksdb_options_t *pROpts;
  rocksdb_block_based_table_options_t *pRTable;
  rocksdb_cache_t *pRCache;
  rocksdb_filterpolicy_t *pRFilter;
  rocksdb_readoptions_t *pRRead;
  rocksdb_writeoptions_t *pRWrite;
  rocksdb_writebatch_t *pRBatch;
  rocksdb_pinnableslice_t *pRVal; /* the last value rocksdb_get_pinned() returned */
#endif
};

/* The level base strata uses: level_base_size, or 4 memtables when 0. */
static size_t strataLevelBase(const strata_options *o) {
  return o->level_base_size ? o->level_base_size : 4 * o->memtable_size;
}

/* ---- strata ---- */

static void stDie(const char *zOp, int rc) __attribute__((noreturn));
static void stDie(const char *zOp, int rc) {
  die("strata: %s: %s (%s)", zOp, strata_errmsg(), strata_errstr(rc));
}

static void stOpen(Engine *e) {
  int rc = strata_open(e->zDir, &e->sOpts, &e->pStrata);
  if (rc) stDie("open", rc);
  if (cfg.nBatch > 1 && (rc = strata_batch_new(&e->pSBatch)) != STRATA_OK) stDie("batch", rc);
}

static void stClose(Engine *e) {
  int rc;
  strata_batch_free(e->pSBatch);
  e->pSBatch = NULL;
  strata_value_free(&e->sVal);
  memset(&e->sVal, 0, sizeof(e->sVal));
  rc = strata_close(e->pStrata);
  e->pStrata = NULL;
  if (rc) stDie("close", rc);
}

static void stDestroy(Engine *e) {
  int rc;
  if (!pathExists(e->zDir)) return;
  rc = strata_destroy(e->zDir, NULL);
  if (rc) stDie("destroy", rc);
}

static void stPut(Engine *e, const char *k, size_t nk, const uint8_t *v, size_t nv) {
  int rc = strata_put(e->pStrata, k, nk, v, nv);
  if (rc) stDie("put", rc);
}

static void stDelete(Engine *e, const char *k, size_t nk) {
  int rc = strata_delete(e->pStrata, k, nk);
  if (rc) stDie("delete", rc);
}

static void stBatchPut(Engine *e, const char *k, size_t nk, const uint8_t *v, size_t nv) {
  int rc = strata_batch_put(e->pSBatch, k, nk, v, nv);
  if (rc) stDie("batch put", rc);
}

static void stBatchDelete(Engine *e, const char *k, size_t nk) {
  int rc = strata_batch_delete(e->pSBatch, k, nk);
  if (rc) stDie("batch delete", rc);
}

static void stBatchCommit(Engine *e) {
  int rc = strata_write(e->pStrata, e->pSBatch);
  if (rc) stDie("write", rc);
  strata_batch_clear(e->pSBatch);
}

/* One reused strata_value: no allocation per lookup once it is big enough. */
static int stGet(Engine *e, const char *k, size_t nk, const uint8_t **pp, size_t *pn) {
  int rc = strata_get(e->pStrata, NULL, k, nk, &e->sVal);
  if (rc == STRATA_OK) {
    *pp = e->sVal.p;
    *pn = e->sVal.n;
    return 1;
  }
  if (rc == STRATA_NOTFOUND) return 0;
  stDie("get", rc);
}

static void *stIterNew(Engine *e) {
  strata_read_options ro;
  strata_iter *it = NULL;
  int rc;
  strata_read_options_init(&ro);
  rc = strata_iter_new(e->pStrata, &ro, &it);
  if (rc) stDie("iterator", rc);
  return it;
}

static void stIterFree(Engine *e, void *p) {
  int rc = strata_iter_status(p);
  strata_iter_free(p);
  if (rc) stDie("iterator", rc);
}

static void stIterSeek(void *p, const char *k, size_t nk) { strata_iter_seek(p, k, nk); }
static void stIterSeekFirst(void *p) { strata_iter_seek_first(p); }
static void stIterSeekLast(void *p) { strata_iter_seek_last(p); }
static void stIterNext(void *p) { strata_iter_next(p); }
static void stIterPrev(void *p) { strata_iter_prev(p); }
static int stIterValid(void *p) { return strata_iter_valid(p); }
static const char *stIterKey(void *p, size_t *pn) { return strata_iter_key(p, pn); }
static const char *stIterValue(void *p, size_t *pn) { return strata_iter_value(p, pn); }

static uint64_t stWaitIdle(Engine *e) {
  int rc = strata_wait_idle(e->pStrata);
  if (rc) stDie("wait_idle", rc);
  return nowNs();
}

static int stDiskBytes(Engine *e, uint64_t *pn) {
  strata_stats s;
  int rc = strata_get_stats(e->pStrata, &s);
  if (rc) stDie("stats", rc);
  *pn = s.disk_bytes_written;
  return 1;
}

static void stPrintStats(Engine *e) {
  strata_stats s;
  int rc = strata_get_stats(e->pStrata, &s), i;
  uint64_t nCache;
  if (rc) stDie("stats", rc);
  nCache = s.cache_hits + s.cache_misses;
  printf("    strata: files/level");
  for (i = 0; i < STRATA_MAX_LEVELS; i++) printf("%c%d", i ? '/' : ' ', s.level_files[i]);
  printf(", flushes %" PRIu64 ", compactions %" PRIu64 ", stalls %" PRIu64 " (%.1f ms)",
         s.flushes, s.compactions, s.stall_count, (double)s.stall_micros / 1e3);
  printf(", cache hits %.1f%%, bloom useful %" PRIu64 " of %" PRIu64 "\n",
         nCache ? 100.0 * (double)s.cache_hits / (double)nCache : 0.0, s.bloom_useful,
         s.bloom_checks);
}

static const EngineMethods strataMethods = {
    .zName = "strata",
    .xOpen = stOpen,
    .xClose = stClose,
    .xDestroy = stDestroy,
    .xPut = stPut,
    .xDelete = stDelete,
    .xBatchPut = stBatchPut,
    .xBatchDelete = stBatchDelete,
    .xBatchCommit = stBatchCommit,
    .xGet = stGet,
    .xIterNew = stIterNew,
    .xIterFree = stIterFree,
    .xIterSeek = stIterSeek,
    .xIterSeekFirst = stIterSeekFirst,
    .xIterSeekLast = stIterSeekLast,
    .xIterNext = stIterNext,
    .xIterPrev = stIterPrev,
    .xIterValid = stIterValid,
    .xIterKey = stIterKey,
    .xIterValue = stIterValue,
    .xWaitIdle = stWaitIdle,
    .xDiskBytes = stDiskBytes,
    .xPrintStats = stPrintStats,
};

/* ---- LevelDB ---- */
#ifdef HAVE_LEVELDB

static void ldCheck(const char *zOp, char *zErr) {
  if (zErr) die("leveldb: %s: %s", zOp, zErr);
}

static void ldOpen(Engine *e) {
  const strata_options *o = &e->sOpts;
  char *zErr = NULL;
  e->pLOpts = leveldb_options_create();
  e->pLCache = leveldb_cache_create_lru(o->cache_size);
  e->pLFilter = leveldb_filterpolicy_create_bloom(10);
  leveldb_options_set_create_if_missing(e->pLOpts, 1);
  leveldb_options_set_write_buffer_size(e->pLOpts, o->memtable_size);
  leveldb_options_set_cache(e->pLOpts, e->pLCache);
  leveldb_options_set_filter_policy(e->pLOpts, e->pLFilter);
  leveldb_options_set_block_size(e->pLOpts, o->block_size);
  leveldb_options_set_max_open_files(e->pLOpts, o->max_open_files);
  leveldb_options_set_compression(e->pLOpts, cfg.compression == STRATA_COMPRESSION_NONE
                                                 ? leveldb_no_compression
                                                 : leveldb_snappy_compression);
  e->pLdb = leveldb_open(e->pLOpts, e->zDir, &zErr);
  ldCheck("open", zErr);
  e->pLRead = leveldb_readoptions_create();
  e->pLWrite = leveldb_writeoptions_create();
  leveldb_writeoptions_set_sync(e->pLWrite, cfg.syncMode == STRATA_SYNC_FULL);
  e->pLBatch = leveldb_writebatch_create();
}

static void ldClose(Engine *e) {
  leveldb_close(e->pLdb);
  leveldb_free(e->pLVal);
  leveldb_writebatch_destroy(e->pLBatch);
  leveldb_writeoptions_destroy(e->pLWrite);
  leveldb_readoptions_destroy(e->pLRead);
  leveldb_options_destroy(e->pLOpts);
  leveldb_filterpolicy_destroy(e->pLFilter);
  leveldb_cache_destroy(e->pLCache);
  e->pLdb = NULL;
  e->pLVal = NULL;
}

static void ldDestroy(Engine *e) {
  char *zErr = NULL;
  leveldb_options_t *pOpts;
  if (!pathExists(e->zDir)) return;
  pOpts = leveldb_options_create();
  leveldb_destroy_db(pOpts, e->zDir, &zErr);
  leveldb_options_destroy(pOpts);
  ldCheck("destroy", zErr);
}

static void ldPut(Engine *e, const char *k, size_t nk, const uint8_t *v, size_t nv) {
  char *zErr = NULL;
  leveldb_put(e->pLdb, e->pLWrite, k, nk, (const char *)v, nv, &zErr);
  ldCheck("put", zErr);
}

static void ldDelete(Engine *e, const char *k, size_t nk) {
  char *zErr = NULL;
  leveldb_delete(e->pLdb, e->pLWrite, k, nk, &zErr);
  ldCheck("delete", zErr);
}

static void ldBatchPut(Engine *e, const char *k, size_t nk, const uint8_t *v, size_t nv) {
  leveldb_writebatch_put(e->pLBatch, k, nk, (const char *)v, nv);
}

static void ldBatchDelete(Engine *e, const char *k, size_t nk) {
  leveldb_writebatch_delete(e->pLBatch, k, nk);
}

static void ldBatchCommit(Engine *e) {
  char *zErr = NULL;
  leveldb_write(e->pLdb, e->pLWrite, e->pLBatch, &zErr);
  ldCheck("write", zErr);
  leveldb_writebatch_clear(e->pLBatch);
}

/* LevelDB's C API returns a malloc'd copy of every value: that cost is the
** API's, and is part of what a C caller of LevelDB gets. */
static int ldGet(Engine *e, const char *k, size_t nk, const uint8_t **pp, size_t *pn) {
  char *zErr = NULL;
  leveldb_free(e->pLVal);
  e->pLVal = leveldb_get(e->pLdb, e->pLRead, k, nk, pn, &zErr);
  ldCheck("get", zErr);
  *pp = (const uint8_t *)e->pLVal;
  return e->pLVal != NULL;
}

static void *ldIterNew(Engine *e) { return leveldb_create_iterator(e->pLdb, e->pLRead); }

static void ldIterFree(Engine *e, void *p) {
  char *zErr = NULL;
  leveldb_iter_get_error(p, &zErr);
  leveldb_iter_destroy(p);
  ldCheck("iterator", zErr);
}

static void ldIterSeek(void *p, const char *k, size_t nk) { leveldb_iter_seek(p, k, nk); }
static void ldIterSeekFirst(void *p) { leveldb_iter_seek_to_first(p); }
static void ldIterSeekLast(void *p) { leveldb_iter_seek_to_last(p); }
static void ldIterNext(void *p) { leveldb_iter_next(p); }
static void ldIterPrev(void *p) { leveldb_iter_prev(p); }
static int ldIterValid(void *p) { return leveldb_iter_valid(p); }
static const char *ldIterKey(void *p, size_t *pn) { return leveldb_iter_key(p, pn); }
static const char *ldIterValue(void *p, size_t *pn) { return leveldb_iter_value(p, pn); }

/* An integer property, or -1. */
static long long ldProperty(Engine *e, const char *zName) {
  char *z = leveldb_property_value(e->pLdb, zName);
  long long v = z ? atoll(z) : -1;
  leveldb_free(z);
  return v;
}

/* See FAIRNESS in the header: idle = fewer than 4 L0 files and (almost) no
** byte written by the process for 500 ms. A few bytes per poll are allowed:
** LevelDB writes tables 64 KiB at a time, while small writes may come from
** elsewhere (valgrind's scheduler writes a byte per thread switch). Returns
** the time the quiet began. */
static uint64_t ldWaitIdle(Engine *e) {
  const int msPoll = 20, nQuietPolls = 25;
  const uint64_t nQuietBytes = 4096;
  uint64_t wLast = 0, tQuiet = 0, tPrev = 0;
  int nQuiet = 0;
  long nPoll;
  for (nPoll = 0;; nPoll++) {
    long long nL0 = ldProperty(e, "leveldb.num-files-at-level0");
    uint64_t t = nowNs();
    IoCounters io;
    ioRead(&io);
    if (nPoll > 0 && io.wchar - wLast < nQuietBytes && nL0 < 4) {
      /* The writing stopped after the previous poll: count from there (this
      ** errs in LevelDB's favour by up to one poll interval). */
      if (nQuiet++ == 0) tQuiet = tPrev;
      if (nQuiet >= nQuietPolls) return tQuiet;
    } else {
      nQuiet = 0;
    }
    wLast = io.wchar;
    tPrev = t;
    if (nPoll * msPoll > 600 * 1000) {
      fprintf(stderr, "strata-bench: leveldb did not settle in 10 minutes; going on\n");
      return t;
    }
    sleepMs(msPoll);
  }
}

static void ldPrintStats(Engine *e) {
  int i;
  printf("    leveldb: files/level");
  for (i = 0; i < 7; i++) {
    char zName[64];
    snprintf(zName, sizeof(zName), "leveldb.num-files-at-level%d", i);
    printf("%c%lld", i ? '/' : ' ', ldProperty(e, zName));
  }
  printf("\n");
}

static const EngineMethods leveldbMethods = {
    .zName = "leveldb",
    .xOpen = ldOpen,
    .xClose = ldClose,
    .xDestroy = ldDestroy,
    .xPut = ldPut,
    .xDelete = ldDelete,
    .xBatchPut = ldBatchPut,
    .xBatchDelete = ldBatchDelete,
    .xBatchCommit = ldBatchCommit,
    .xGet = ldGet,
    .xIterNew = ldIterNew,
    .xIterFree = ldIterFree,
    .xIterSeek = ldIterSeek,
    .xIterSeekFirst = ldIterSeekFirst,
    .xIterSeekLast = ldIterSeekLast,
    .xIterNext = ldIterNext,
    .xIterPrev = ldIterPrev,
    .xIterValid = ldIterValid,
    .xIterKey = ldIterKey,
    .xIterValue = ldIterValue,
    .xWaitIdle = ldWaitIdle,
    .xDiskBytes = NULL,
    .xPrintStats = ldPrintStats,
};
#endif /* HAVE_LEVELDB */

/* ---- RocksDB ---- */
#ifdef HAVE_ROCKSDB

static void rdCheck(const char *zOp, char *zErr) {
  if (zErr) die("rocksdb: %s: %s", zOp, zErr);
}

static void rdOpen(Engine *e) {
  const strata_options *o = &e->sOpts;
  char *zErr = NULL;
  rocksdb_options_t *p = e->pROpts = rocksdb_options_create();
  e->pRTable = rocksdb_block_based_options_create();
  e->pRCache = rocksdb_cache_create_lru(o->cache_size);
  e->pRFilter = rocksdb_filterpolicy_create_bloom_full(10);
  rocksdb_block_based_options_set_block_cache(e->pRTable, e->pRCache);
  rocksdb_block_based_options_set_filter_policy(e->pRTable, e->pRFilter);
  rocksdb_block_based_options_set_block_size(e->pRTable, o->block_size);
  rocksdb_block_based_options_set_cache_index_and_filter_blocks(e->pRTable, 1);
  rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(e->pRTable, 1);
  rocksdb_options_set_block_based_table_factory(p, e->pRTable);
  rocksdb_options_set_create_if_missing(p, 1);
  rocksdb_options_set_write_buffer_size(p, o->memtable_size);
  rocksdb_options_set_max_open_files(p, o->max_open_files);
  rocksdb_options_set_level0_file_num_compaction_trigger(p, o->l0_compaction_trigger);
  rocksdb_options_set_level0_slowdown_writes_trigger(p, o->l0_slowdown_trigger);
  rocksdb_options_set_level0_stop_writes_trigger(p, o->l0_stop_trigger);
  rocksdb_options_set_target_file_size_base(p, o->target_file_size);
  rocksdb_options_set_max_bytes_for_level_base(p, strataLevelBase(o));
  rocksdb_options_set_max_bytes_for_level_multiplier(p, o->level_multiplier);
  rocksdb_options_set_max_background_jobs(p, 2);
  rocksdb_options_set_info_log_level(p, 2 /* WARN: keep its LOG file out of the figures */);
  rocksdb_options_set_stats_dump_period_sec(p, 0);
  if (cfg.compression == STRATA_COMPRESSION_NONE) {
    rocksdb_options_set_compression(p, rocksdb_no_compression);
  } else {
    rocksdb_options_set_compression(p, rocksdb_zstd_compression);
    rocksdb_options_set_compression_options(p, -14, o->compression_level, 0, 0);
  }
  e->pRdb = rocksdb_open(p, e->zDir, &zErr);
  rdCheck("open", zErr);
  e->pRRead = rocksdb_readoptions_create();
  e->pRWrite = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(e->pRWrite, cfg.syncMode == STRATA_SYNC_FULL);
  e->pRBatch = rocksdb_writebatch_create();
}

static void rdClose(Engine *e) {
  rocksdb_pinnableslice_destroy(e->pRVal);
  e->pRVal = NULL;
  rocksdb_close(e->pRdb);
  e->pRdb = NULL;
  rocksdb_writebatch_destroy(e->pRBatch);
  rocksdb_writeoptions_destroy(e->pRWrite);
  rocksdb_readoptions_destroy(e->pRRead);
  rocksdb_options_destroy(e->pROpts);
  rocksdb_block_based_options_destroy(e->pRTable); /* also releases the filter policy */
  rocksdb_cache_destroy(e->pRCache);
}

static void rdDestroy(Engine *e) {
  char *zErr = NULL;
  rocksdb_options_t *pOpts;
  if (!pathExists(e->zDir)) return;
  pOpts = rocksdb_options_create();
  rocksdb_destroy_db(pOpts, e->zDir, &zErr);
  rocksdb_options_destroy(pOpts);
  rdCheck("destroy", zErr);
}

static void rdPut(Engine *e, const char *k, size_t nk, const uint8_t *v, size_t nv) {
  char *zErr = NULL;
  rocksdb_put(e->pRdb, e->pRWrite, k, nk, (const char *)v, nv, &zErr);
  rdCheck("put", zErr);
}

static void rdDelete(Engine *e, const char *k, size_t nk) {
  char *zErr = NULL;
  rocksdb_delete(e->pRdb, e->pRWrite, k, nk, &zErr);
  rdCheck("delete", zErr);
}

static void rdBatchPut(Engine *e, const char *k, size_t nk, const uint8_t *v, size_t nv) {
  rocksdb_writebatch_put(e->pRBatch, k, nk, (const char *)v, nv);
}

static void rdBatchDelete(Engine *e, const char *k, size_t nk) {
  rocksdb_writebatch_delete(e->pRBatch, k, nk);
}

static void rdBatchCommit(Engine *e) {
  char *zErr = NULL;
  rocksdb_write(e->pRdb, e->pRWrite, e->pRBatch, &zErr);
  rdCheck("write", zErr);
  rocksdb_writebatch_clear(e->pRBatch);
}

/* The pinned get is the C API's cheapest lookup: it allocates a small
** holder per call but does not copy the value. */
static int rdGet(Engine *e, const char *k, size_t nk, const uint8_t **pp, size_t *pn) {
  char *zErr = NULL;
  rocksdb_pinnableslice_destroy(e->pRVal);
  e->pRVal = rocksdb_get_pinned(e->pRdb, e->pRRead, k, nk, &zErr);
  rdCheck("get", zErr);
  if (!e->pRVal) return 0;
  *pp = (const uint8_t *)rocksdb_pinnableslice_value(e->pRVal, pn);
  return 1;
}

static void *rdIterNew(Engine *e) { return rocksdb_create_iterator(e->pRdb, e->pRRead); }

static void rdIterFree(Engine *e, void *p) {
  char *zErr = NULL;
  rocksdb_iter_get_error(p, &zErr);
  rocksdb_iter_destroy(p);
  rdCheck("iterator", zErr);
}

static void rdIterSeek(void *p, const char *k, size_t nk) { rocksdb_iter_seek(p, k, nk); }
static void rdIterSeekFirst(void *p) { rocksdb_iter_seek_to_first(p); }
static void rdIterSeekLast(void *p) { rocksdb_iter_seek_to_last(p); }
static void rdIterNext(void *p) { rocksdb_iter_next(p); }
static void rdIterPrev(void *p) { rocksdb_iter_prev(p); }
static int rdIterValid(void *p) { return rocksdb_iter_valid(p); }
static const char *rdIterKey(void *p, size_t *pn) { return rocksdb_iter_key(p, pn); }
static const char *rdIterValue(void *p, size_t *pn) { return rocksdb_iter_value(p, pn); }

static uint64_t rdProperty(Engine *e, const char *zName) {
  uint64_t v = 0;
  if (rocksdb_property_int(e->pRdb, zName, &v) != 0) die("rocksdb: no property %s", zName);
  return v;
}

static uint64_t rdWaitIdle(Engine *e) {
  for (;;) {
    if (rdProperty(e, "rocksdb.num-running-flushes") == 0 &&
        rdProperty(e, "rocksdb.num-running-compactions") == 0 &&
        rdProperty(e, "rocksdb.mem-table-flush-pending") == 0 &&
        rdProperty(e, "rocksdb.compaction-pending") == 0) {
      return nowNs();
    }
    sleepMs(10);
  }
}

static void rdPrintStats(Engine *e) {
  int i;
  printf("    rocksdb: files/level");
  for (i = 0; i < 7; i++) {
    char zName[64];
    char *z;
    snprintf(zName, sizeof(zName), "rocksdb.num-files-at-level%d", i);
    z = rocksdb_property_value(e->pRdb, zName); /* a string property */
    printf("%c%s", i ? '/' : ' ', z ? z : "?");
    rocksdb_free(z);
  }
  printf("\n");
}

static const EngineMethods rocksdbMethods = {
    .zName = "rocksdb",
    .xOpen = rdOpen,
    .xClose = rdClose,
    .xDestroy = rdDestroy,
    .xPut = rdPut,
    .xDelete = rdDelete,
    .xBatchPut = rdBatchPut,
    .xBatchDelete = rdBatchDelete,
    .xBatchCommit = rdBatchCommit,
    .xGet = rdGet,
    .xIterNew = rdIterNew,
    .xIterFree = rdIterFree,
    .xIterSeek = rdIterSeek,
    .xIterSeekFirst = rdIterSeekFirst,
    .xIterSeekLast = rdIterSeekLast,
    .xIterNext = rdIterNext,
    .xIterPrev = rdIterPrev,
    .xIterValid = rdIterValid,
    .xIterKey = rdIterKey,
    .xIterValue = rdIterValue,
    .xWaitIdle = rdWaitIdle,
    .xDiskBytes = NULL,
    .xPrintStats = rdPrintStats,
};
#endif /* HAVE_ROCKSDB */

/* ------------------------------------------------------------------ */
/* WORKLOADS */

enum {
  W_FILLSEQ,
  W_FILLRANDOM,
  W_OVERWRITE,
  W_READRANDOM,
  W_READMISSING,
  W_SEEKRANDOM,
  W_READSEQ,
  W_READREVERSE,
  W_DELETERANDOM,
  W_COUNT
};

static const struct {
  const char *zName;
  int bWrite; /* figures at the end of the loop and after settling */
  int bFill;  /* starts from an empty database */
} aWorkload[W_COUNT] = {
    {"fillseq", 1, 1},     {"fillrandom", 1, 1},  {"overwrite", 1, 0},
    {"readrandom", 0, 0},  {"readmissing", 0, 0}, {"seekrandom", 0, 0},
    {"readseq", 0, 0},     {"readreverse", 0, 0}, {"deleterandom", 1, 0},
};

#define MAX_KEY_SIZE 1024
#define SEEK_NEXTS 10

/* What one workload does, the same for every engine. */
typedef struct Workload {
  int w;            /* W_* */
  uint64_t seed;    /* the key generator's seed */
  unsigned gen;     /* writes: generation of the values written */
  uint64_t nOps;    /* operations (scans: at most this many entries) */
  uint32_t *aKeys;  /* deleterandom: the keys, in order */
  uint32_t *aNext;  /* seekrandom: aNext[k] = first existing key >= k, or nNum */
} Workload;

/* What one engine did in one workload. */
typedef struct Result {
  uint64_t nOps;
  uint64_t nBytes;      /* key + value bytes written or returned */
  double secs;          /* the loop */
  double secsWait;      /* writes: from the end of the loop until idle */
  int bEngine;          /* the engine counts its own bytes written */
  uint64_t aEngine[2];  /* its count: at the end of the loop, settled */
  IoCounters aIo[2];    /* /proc/self/io deltas: at the end of the loop, settled */
  uint64_t aDu[2];      /* disk space: at the end of the loop, settled */
  uint64_t nFound;      /* point reads and seeks: exact key found */
  uint64_t nBad;        /* wrong answers */
  Histogram *pHist;     /* --histogram */
} Result;

static inline uint64_t workloadKey(const Workload *p, Rng *r, uint64_t i) {
  if (p->w == W_FILLSEQ) return i;
  if (p->w == W_DELETERANDOM) return p->aKeys[i];
  return rngUniform(r, cfg.nNum);
}

/* fillseq, fillrandom, overwrite, deleterandom. */
static void runWrites(Engine *e, const Workload *p, Result *r) {
  const EngineMethods *m = e->pM;
  const size_t nKey = (size_t)cfg.nKey, nVal = (size_t)cfg.nVal;
  const int bDel = p->w == W_DELETERANDOM, nBatch = cfg.nBatch;
  char aKey[MAX_KEY_SIZE];
  Rng rng = {p->seed};
  uint64_t i, t0;
  int nPend = 0;
  t0 = nowNs();
  for (i = 0; i < p->nOps; i++) {
    uint64_t k = workloadKey(p, &rng, i), tOp;
    keyFormat(aKey, k);
    tOp = opStart(r->pHist);
    if (nBatch == 1) {
      if (bDel) {
        m->xDelete(e, aKey, nKey);
      } else {
        m->xPut(e, aKey, nKey, valueFor(k, p->gen), nVal);
      }
    } else {
      if (bDel) {
        m->xBatchDelete(e, aKey, nKey);
      } else {
        m->xBatchPut(e, aKey, nKey, valueFor(k, p->gen), nVal);
      }
      if (++nPend == nBatch) {
        m->xBatchCommit(e);
        nPend = 0;
      }
    }
    opEnd(r->pHist, tOp);
  }
  if (nPend) m->xBatchCommit(e);
  r->secs = (double)(nowNs() - t0) / 1e9;
  r->nOps = p->nOps;
  r->nBytes = p->nOps * (nKey + (bDel ? 0 : nVal));
}

/* readrandom and readmissing: every value found is compared with the model. */
static void runReads(Engine *e, const Workload *p, Result *r) {
  const EngineMethods *m = e->pM;
  const int bMissing = p->w == W_READMISSING;
  const size_t nKey = (size_t)cfg.nKey + (size_t)bMissing, nVal = (size_t)cfg.nVal;
  char aKey[MAX_KEY_SIZE + 1];
  Rng rng = {p->seed};
  uint64_t i, t0;
  aKey[cfg.nKey] = '.'; /* readmissing: no written key has this byte */
  t0 = nowNs();
  for (i = 0; i < p->nOps; i++) {
    uint64_t k = rngUniform(&rng, cfg.nNum), tOp;
    const uint8_t *pv;
    size_t nv;
    keyFormat(aKey, k);
    tOp = opStart(r->pHist);
    r->nBytes += nKey;
    if (m->xGet(e, aKey, nKey, &pv, &nv)) {
      unsigned g = model.aGen[k];
      r->nFound++;
      r->nBytes += nv;
      if (bMissing || !g || nv != nVal || memcmp(pv, valueFor(k, g), nVal) != 0) r->nBad++;
    }
    opEnd(r->pHist, tOp);
  }
  r->secs = (double)(nowNs() - t0) / 1e9;
  r->nOps = p->nOps;
}

/* Check one entry an iterator returned against the key the model expects.
** Returns 1 if right. With bValue 0 only the key and the value's length. */
static inline int entryCheck(const char *pk, size_t nk, const char *pv, size_t nv, uint64_t kWant,
                             int bValue) {
  uint64_t k;
  unsigned g;
  if (nv != (size_t)cfg.nVal || !keyParse(pk, nk, &k) || k != kWant) return 0;
  if (!bValue) return 1;
  g = model.aGen[k];
  return g && memcmp(pv, valueFor(k, g), nv) == 0;
}

/* seekrandom: a new iterator per operation, a seek, then SEEK_NEXTS nexts.
** Every entry must be the next existing key of the model, with its value. */
static void runSeeks(Engine *e, const Workload *p, Result *r) {
  const EngineMethods *m = e->pM;
  const size_t nKey = (size_t)cfg.nKey;
  char aKey[MAX_KEY_SIZE];
  Rng rng = {p->seed};
  uint64_t i, t0;
  t0 = nowNs();
  for (i = 0; i < p->nOps; i++) {
    uint64_t k = rngUniform(&rng, cfg.nNum), tOp, kWant = p->aNext[k];
    void *it;
    int j, bOk = 1;
    keyFormat(aKey, k);
    tOp = opStart(r->pHist);
    it = m->xIterNew(e);
    m->xIterSeek(it, aKey, nKey);
    for (j = 0; j <= SEEK_NEXTS && m->xIterValid(it); j++) {
      size_t nk, nv;
      const char *pk = m->xIterKey(it, &nk), *pv = m->xIterValue(it, &nv);
      if (j == 0 && nk == nKey && memcmp(pk, aKey, nKey) == 0) r->nFound++;
      r->nBytes += nk + nv;
      if (!entryCheck(pk, nk, pv, nv, kWant, 1)) {
        bOk = 0;
        break;
      }
      kWant = p->aNext[kWant + 1];
      if (j < SEEK_NEXTS) m->xIterNext(it);
    }
    if (bOk && j <= SEEK_NEXTS && kWant < cfg.nNum) bOk = 0; /* ended too soon */
    m->xIterFree(e, it);
    opEnd(r->pHist, tOp);
    if (!bOk) r->nBad++;
  }
  r->secs = (double)(nowNs() - t0) / 1e9;
  r->nOps = p->nOps;
}

/* The next existing key of the model after k in the scan's direction, or
** nNum when there is none. */
static inline uint64_t modelStep(uint64_t k, int bReverse) {
  if (bReverse) {
    while (k-- > 0) {
      if (model.aGen[k]) return k;
    }
    return cfg.nNum;
  }
  for (k++; k < cfg.nNum; k++) {
    if (model.aGen[k]) return k;
  }
  return cfg.nNum;
}

/* readseq and readreverse: one iterator, up to nOps entries. Keys must come
** in order (memcmp with the previous key) with values of the right length;
** every 16th entry is compared in full with the model. */
static void runScan(Engine *e, const Workload *p, Result *r) {
  const EngineMethods *m = e->pM;
  const int bReverse = p->w == W_READREVERSE;
  const size_t nKey = (size_t)cfg.nKey, nVal = (size_t)cfg.nVal;
  char aPrev[MAX_KEY_SIZE];
  uint64_t n = 0, t0, tOp = 0;
  void *it;
  t0 = nowNs();
  it = m->xIterNew(e);
  if (r->pHist) tOp = nowNs();
  if (bReverse) {
    m->xIterSeekLast(it);
  } else {
    m->xIterSeekFirst(it);
  }
  while (n < p->nOps && m->xIterValid(it)) {
    size_t nk, nv;
    const char *pk = m->xIterKey(it, &nk), *pv = m->xIterValue(it, &nv);
    r->nBytes += nk + nv;
    if (nk != nKey || nv != nVal) {
      r->nBad++;
    } else if (n > 0 && (bReverse ? memcmp(pk, aPrev, nKey) >= 0 : memcmp(pk, aPrev, nKey) <= 0)) {
      r->nBad++;
    } else if ((n & 15) == 0) {
      uint64_t k;
      if (!keyParse(pk, nk, &k) || !entryCheck(pk, nk, pv, nv, k, 1)) r->nBad++;
    }
    memcpy(aPrev, pk, nk <= nKey ? nk : nKey);
    n++;
    if (bReverse) {
      m->xIterPrev(it);
    } else {
      m->xIterNext(it);
    }
    if (r->pHist) {
      uint64_t t = nowNs();
      histAdd(r->pHist, t - tOp);
      tOp = t;
    }
  }
  m->xIterFree(e, it);
  r->secs = (double)(nowNs() - t0) / 1e9;
  r->nOps = n;
}

/* ------------------------------------------------------------------ */
/* RUNNING A WORKLOAD ON EVERY ENGINE */

static Engine *aEngine[3];
static int nEngine;
static int nRun; /* workloads run so far */

/* Prepare the keys of deleterandom: distinct existing keys in random order. */
static void prepareDeletes(Workload *p) {
  uint64_t k, n = 0, i;
  Rng rng = {p->seed ^ 0xDE1E7Eull};
  p->aKeys = xmalloc((model.nExist ? model.nExist : 1) * sizeof(uint32_t));
  for (k = 0; k < cfg.nNum; k++) {
    if (model.aGen[k]) p->aKeys[n++] = (uint32_t)k;
  }
  for (i = n; i > 1; i--) { /* Fisher-Yates */
    uint64_t j = rngUniform(&rng, i);
    uint32_t t = p->aKeys[i - 1];
    p->aKeys[i - 1] = p->aKeys[j];
    p->aKeys[j] = t;
  }
  p->nOps = cfg.nDeletes ? (cfg.nDeletes < n ? cfg.nDeletes : n) : n / 2;
}

/* aNext[k] = the first existing key >= k (nNum if none), for k in [0, nNum]. */
static void prepareSeeks(Workload *p) {
  uint64_t k = cfg.nNum;
  p->aNext = xmalloc((cfg.nNum + 1) * sizeof(uint32_t));
  p->aNext[k] = (uint32_t)k;
  while (k-- > 0) p->aNext[k] = model.aGen[k] ? (uint32_t)k : p->aNext[k + 1];
}

/* Apply a write workload to the model, replaying its key sequence. */
static void modelApply(const Workload *p) {
  Rng rng = {p->seed};
  uint64_t i;
  if (aWorkload[p->w].bFill) {
    memset(model.aGen, 0, cfg.nNum);
    model.nExist = 0;
    model.bFilled = 1;
  }
  for (i = 0; i < p->nOps; i++) {
    uint64_t k = workloadKey(p, &rng, i);
    if (p->w == W_DELETERANDOM) {
      modelClear(k);
    } else {
      modelSet(k, p->gen);
    }
  }
}

/* The number of exact-key hits the model predicts for a read workload. */
static uint64_t expectedFound(const Workload *p) {
  Rng rng = {p->seed};
  uint64_t i, n = 0;
  if (p->w == W_READMISSING) return 0;
  if (p->w == W_READSEQ || p->w == W_READREVERSE) {
    return p->nOps < model.nExist ? p->nOps : model.nExist;
  }
  for (i = 0; i < p->nOps; i++) n += model.aGen[rngUniform(&rng, cfg.nNum)] != 0;
  return n;
}

static double ratioOf(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

static double mib(uint64_t n) { return (double)n / 1048576.0; }

/* Print a write-amplification figure, or "-" when it cannot be measured. */
static void printAmp(int w, int bOk, uint64_t nWritten, uint64_t nUser) {
  if (bOk && nUser) {
    printf(" %*.2f", w, ratioOf(nWritten, nUser));
  } else {
    printf(" %*s", w, "-");
  }
}

static void printHistogram(const Histogram *h) {
  if (!h || !h->n) return;
  printf("      us/op: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.1f\n",
         (double)histPercentile(h, 0.50) / 1e3, (double)histPercentile(h, 0.90) / 1e3,
         (double)histPercentile(h, 0.99) / 1e3, (double)histPercentile(h, 0.999) / 1e3,
         (double)h->max / 1e3);
}

static double opsPerSec(const Result *r, int bSettled) {
  double s = r->secs + (bSettled ? r->secsWait : 0.0);
  return s > 0 ? (double)r->nOps / s : 0.0;
}

/* One line of a write workload: at the end of the loop (i = 0) or settled. */
static void printWriteRow(const char *zName, const Result *r, int i) {
  double s = r->secs + (i ? r->secsWait : 0.0);
  uint64_t nUser = r->nBytes;
  printf("  %-10s %10.0f %8.2f %9.3f", zName, opsPerSec(r, i), s > 0 ? mib(r->nBytes) / s : 0.0,
         r->nOps ? s * 1e6 / (double)r->nOps : 0.0);
  printAmp(7, r->bEngine || r->aIo[i].bOk, r->bEngine ? r->aEngine[i] : r->aIo[i].wchar, nUser);
  printAmp(10, r->aIo[i].bOk, r->aIo[i].wchar, nUser);
  printAmp(11, r->aIo[i].bOk, r->aIo[i].writeBytes, nUser);
  printf(" %9.1f", mib(r->aDu[i]));
  if (i) printf("   (waited %.3f s)", r->secsWait);
  printf("\n");
}

static void printReadRow(const char *zName, const Result *r, uint64_t nExpect, int w) {
  double s = r->secs;
  int bScan = w == W_READSEQ || w == W_READREVERSE;
  uint64_t nGot = bScan ? r->nOps : r->nFound;
  printf("  %-10s %10.0f %8.2f %9.3f", zName, opsPerSec(r, 0), s > 0 ? mib(r->nBytes) / s : 0.0,
         r->nOps ? s * 1e6 / (double)r->nOps : 0.0);
  if (bScan) {
    printf("   read %" PRIu64 " entries", r->nOps);
  } else {
    printf("   found %" PRIu64 " of %" PRIu64, r->nFound, r->nOps);
  }
  if (nGot == nExpect && r->nBad == 0) {
    printf(", ok\n");
  } else {
    printf(", WRONG: expected %" PRIu64 ", %" PRIu64 " wrong answers\n", nExpect, r->nBad);
    nFailedChecks++;
  }
}

/* The ratio of strata's ops/s to each peer's. */
static void printRatios(const Result *aRes, int bWrite) {
  int i, iStrata = -1;
  for (i = 0; i < nEngine; i++) {
    if (aEngine[i]->pM == &strataMethods) iStrata = i;
  }
  if (iStrata < 0) return;
  for (i = 0; i < nEngine; i++) {
    double a, b;
    if (i == iStrata) continue;
    a = opsPerSec(&aRes[iStrata], 0);
    b = opsPerSec(&aRes[i], 0);
    printf("  strata/%s ops/s: %.2fx", aEngine[i]->pM->zName, b > 0 ? a / b : 0.0);
    if (bWrite) {
      a = opsPerSec(&aRes[iStrata], 1);
      b = opsPerSec(&aRes[i], 1);
      printf(" (settled %.2fx)", b > 0 ? a / b : 0.0);
    }
    printf("\n");
  }
}

static void runWorkload(int w, int bImplicit) {
  Workload wl;
  Result aRes[3];
  const int bWrite = aWorkload[w].bWrite;
  uint64_t nExpect = 0;
  int i;

  memset(&wl, 0, sizeof(wl));
  memset(aRes, 0, sizeof(aRes));
  wl.w = w;
  wl.seed = mix64(cfg.seed * 0x9E3779B97F4A7C15ull + (uint64_t)++nRun);
  wl.nOps = bWrite ? cfg.nNum : cfg.nReads;
  if (bWrite) wl.gen = modelNextGen();
  if (w == W_DELETERANDOM) prepareDeletes(&wl);
  if (w == W_SEEKRANDOM) prepareSeeks(&wl);

  printf("\n%s%s: %" PRIu64 " %s", aWorkload[w].zName, bImplicit ? " (run first: no fill yet)" : "",
         wl.nOps, w == W_READSEQ || w == W_READREVERSE ? "entries at most" : "operations");
  if (bWrite) printf(", batch %d", cfg.nBatch);
  printf(", database %" PRIu64 " keys\n", aWorkload[w].bFill ? 0 : model.nExist);
  if (bWrite) {
    printf("  %-10s %10s %8s %9s %7s %10s %11s %9s\n", "engine", "ops/s", "MB/s", "us/op",
           "w-amp", "wchar-amp", "wbytes-amp", "disk-MB");
  } else {
    printf("  %-10s %10s %8s %9s   %s\n", "engine", "ops/s", "MB/s", "us/op", "check");
  }
  if (!bWrite) nExpect = expectedFound(&wl);
  fflush(stdout);

  for (i = 0; i < nEngine; i++) {
    Engine *e = aEngine[i];
    Result *r = &aRes[i];
    IoCounters io0, io;
    uint64_t nEng0 = 0, nEng, tEnd;
    if (aWorkload[w].bFill) {
      if (e->bOpen) e->pM->xClose(e);
      e->bOpen = 0;
      e->pM->xDestroy(e);
      e->pM->xOpen(e);
      e->bOpen = 1;
    }
    if (cfg.bHistogram) {
      r->pHist = xmalloc(sizeof(Histogram));
      memset(r->pHist, 0, sizeof(Histogram));
    }
    r->bEngine = e->pM->xDiskBytes != NULL && e->pM->xDiskBytes(e, &nEng0);
    ioRead(&io0);
    switch (w) {
      case W_READRANDOM:
      case W_READMISSING: runReads(e, &wl, r); break;
      case W_SEEKRANDOM: runSeeks(e, &wl, r); break;
      case W_READSEQ:
      case W_READREVERSE: runScan(e, &wl, r); break;
      default: runWrites(e, &wl, r); break;
    }
    tEnd = nowNs();
    if (bWrite) {
      /* At the end of the loop, then settled (see FAIRNESS). */
      int j;
      for (j = 0; j < 2; j++) {
        if (j == 1) {
          uint64_t tIdle = e->pM->xWaitIdle(e);
          r->secsWait = tIdle > tEnd ? (double)(tIdle - tEnd) / 1e9 : 0.0;
        }
        if (r->bEngine) {
          e->pM->xDiskBytes(e, &nEng);
          r->aEngine[j] = nEng - nEng0;
        }
        ioRead(&io);
        r->aIo[j].bOk = io0.bOk && io.bOk;
        r->aIo[j].wchar = io.wchar - io0.wchar;
        r->aIo[j].writeBytes = io.writeBytes - io0.writeBytes;
        r->aDu[j] = duPath(e->zDir);
      }
    }
  }

  for (i = 0; i < nEngine; i++) {
    const Result *r = &aRes[i];
    if (bWrite) {
      printWriteRow(aEngine[i]->pM->zName, r, 0);
      printHistogram(r->pHist);
      printWriteRow("  settled", r, 1);
    } else {
      printReadRow(aEngine[i]->pM->zName, r, nExpect, w);
      printHistogram(r->pHist);
    }
    if (cfg.bStats) aEngine[i]->pM->xPrintStats(aEngine[i]);
  }
  printRatios(aRes, bWrite);
  fflush(stdout);

  if (bWrite) modelApply(&wl);
  for (i = 0; i < nEngine; i++) free(aRes[i].pHist);
  free(wl.aKeys);
  free(wl.aNext);
}

/* ------------------------------------------------------------------ */
/* OPTIONS AND MAIN */

static void usage(void) {
  printf(
      "usage: strata-bench [--option=value ...]\n"
      "  --benchmarks=LIST      comma list of: fillseq fillrandom overwrite readrandom\n"
      "                         readmissing seekrandom readseq readreverse deleterandom\n"
      "                         (default: all, in that order)\n"
      "  --engines=LIST         strata,leveldb,rocksdb (default: all compiled in)\n"
      "  --num=N                entries (default 1000000)\n"
      "  --reads=N              operations of read workloads (default num)\n"
      "  --deletes=N            deletes of deleterandom (default half the keys)\n"
      "  --key_size=N           key bytes (default 16)\n"
      "  --value_size=N         value bytes (default 100)\n"
      "  --compression_ratio=R  compressible fraction of a value (default 0.5)\n"
      "  --compression=zstd|none\n"
      "  --sync=off|normal|full strata's sync mode; peers sync writes only for full\n"
      "  --batch=N              operations per write batch (default 1)\n"
      "  --cache_size=BYTES     block cache (default: strata's; K, M, G suffixes)\n"
      "  --memtable_size=BYTES  write buffer (default: strata's)\n"
      "  --db=DIR               where the databases go (default /tmp/strata-bench)\n"
      "  --seed=N               random seed (default 301)\n"
      "  --histogram            latency percentiles\n"
      "  --stats                files per level and engine counters after each workload\n"
      "  --keep                 keep the databases at the end\n");
}

/* Parse an unsigned integer with an optional K, M or G (binary) suffix. */
static uint64_t parseSize(const char *zOpt, const char *z) {
  char *zEnd;
  unsigned long long v;
  errno = 0;
  v = strtoull(z, &zEnd, 10);
  if (errno || zEnd == z || *z == '-') die("bad value for --%s: %s", zOpt, z);
  switch (*zEnd) {
    case 'k': case 'K': v <<= 10; zEnd++; break;
    case 'm': case 'M': v <<= 20; zEnd++; break;
    case 'g': case 'G': v <<= 30; zEnd++; break;
    default: break;
  }
  if (*zEnd) die("bad value for --%s: %s", zOpt, z);
  return v;
}

static int parseFlag(const char *zOpt, const char *z) {
  if (!z || !strcmp(z, "1") || !strcmp(z, "true")) return 1;
  if (!strcmp(z, "0") || !strcmp(z, "false")) return 0;
  die("bad value for --%s: %s", zOpt, z);
}

static void parseArgs(int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++) {
    char zName[64];
    const char *zArg = argv[i], *zVal, *zEq;
    size_t n;
    if (strncmp(zArg, "--", 2) != 0) die("unexpected argument %s (try --help)", zArg);
    zArg += 2;
    zEq = strchr(zArg, '=');
    n = zEq ? (size_t)(zEq - zArg) : strlen(zArg);
    if (n >= sizeof(zName)) die("unknown option --%s", zArg);
    memcpy(zName, zArg, n);
    zName[n] = 0;
    zVal = zEq ? zEq + 1 : NULL;
    if (!strcmp(zName, "help")) {
      usage();
      exit(0);
    } else if (!strcmp(zName, "histogram")) {
      cfg.bHistogram = parseFlag(zName, zVal);
    } else if (!strcmp(zName, "stats")) {
      cfg.bStats = parseFlag(zName, zVal);
    } else if (!strcmp(zName, "keep")) {
      cfg.bKeep = parseFlag(zName, zVal);
    } else if (!zVal) {
      die("--%s needs a value (--%s=...)", zName, zName);
    } else if (!strcmp(zName, "benchmarks")) {
      cfg.zBenchmarks = zVal;
    } else if (!strcmp(zName, "engines")) {
      cfg.zEngines = zVal;
    } else if (!strcmp(zName, "db")) {
      cfg.zDb = zVal;
    } else if (!strcmp(zName, "num")) {
      cfg.nNum = parseSize(zName, zVal);
    } else if (!strcmp(zName, "reads")) {
      cfg.nReads = parseSize(zName, zVal);
    } else if (!strcmp(zName, "deletes")) {
      cfg.nDeletes = parseSize(zName, zVal);
    } else if (!strcmp(zName, "key_size")) {
      cfg.nKey = (int)parseSize(zName, zVal);
    } else if (!strcmp(zName, "value_size")) {
      uint64_t v = parseSize(zName, zVal);
      if (v > (64u << 20)) die("--value_size: at most 64 MiB");
      cfg.nVal = (int)v;
    } else if (!strcmp(zName, "compression_ratio")) {
      char *zEnd;
      cfg.ratio = strtod(zVal, &zEnd);
      if (*zEnd || !(cfg.ratio > 0.0 && cfg.ratio <= 1.0)) {
        die("--compression_ratio: a number in (0, 1]");
      }
    } else if (!strcmp(zName, "compression")) {
      if (!strcmp(zVal, "zstd")) {
        cfg.compression = STRATA_COMPRESSION_ZSTD;
      } else if (!strcmp(zVal, "none")) {
        cfg.compression = STRATA_COMPRESSION_NONE;
      } else {
        die("--compression: zstd or none");
      }
    } else if (!strcmp(zName, "sync")) {
      if (!strcmp(zVal, "off")) {
        cfg.syncMode = STRATA_SYNC_OFF;
      } else if (!strcmp(zVal, "normal")) {
        cfg.syncMode = STRATA_SYNC_NORMAL;
      } else if (!strcmp(zVal, "full")) {
        cfg.syncMode = STRATA_SYNC_FULL;
      } else {
        die("--sync: off, normal or full");
      }
    } else if (!strcmp(zName, "batch")) {
      uint64_t v = parseSize(zName, zVal);
      if (v < 1 || v > 1000000) die("--batch: 1 to 1000000");
      cfg.nBatch = (int)v;
    } else if (!strcmp(zName, "seed")) {
      cfg.seed = parseSize(zName, zVal);
    } else if (!strcmp(zName, "cache_size")) {
      cfg.cacheSize = (size_t)parseSize(zName, zVal);
    } else if (!strcmp(zName, "memtable_size")) {
      cfg.memtableSize = (size_t)parseSize(zName, zVal);
    } else {
      die("unknown option --%s (try --help)", zName);
    }
  }
  if (cfg.nNum < 1 || cfg.nNum >= UINT32_MAX) die("--num: 1 to %u", UINT32_MAX - 1);
  if (!cfg.nReads) cfg.nReads = cfg.nNum;
  if (cfg.nKey < 1 || cfg.nKey > MAX_KEY_SIZE) die("--key_size: 1 to %d", MAX_KEY_SIZE);
  {
    /* Every key number must fit in key_size digits. */
    uint64_t nMax = 1;
    int j;
    for (j = 0; j < cfg.nKey && nMax < cfg.nNum; j++) nMax *= 10;
    if (nMax < cfg.nNum) die("--key_size=%d is too small for --num=%" PRIu64, cfg.nKey, cfg.nNum);
  }
}

/* Create zDir and its parents. Exits on failure. */
static void mkdirs(const char *zDir) {
  char z[1024];
  size_t i, n = strlen(zDir);
  if (n == 0 || n >= sizeof(z)) die("bad --db directory");
  memcpy(z, zDir, n + 1);
  for (i = 1; i <= n; i++) {
    if (z[i] == '/' || z[i] == 0) {
      char c = z[i];
      z[i] = 0;
      if (mkdir(z, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", z, strerror(errno));
      z[i] = c;
    }
  }
}

static void addEngine(const char *zName, size_t n, const strata_options *pOpts) {
  const EngineMethods *pM = NULL;
  const strata_options *o = pOpts;
  Engine *e;
  int i;
  if (n == 6 && !strncmp(zName, "strata", n)) pM = &strataMethods;
#ifdef HAVE_LEVELDB
  if (n == 7 && !strncmp(zName, "leveldb", n)) pM = &leveldbMethods;
#endif
#ifdef HAVE_ROCKSDB
  if (n == 7 && !strncmp(zName, "rocksdb", n)) pM = &rocksdbMethods;
#endif
  if (!pM) {
    if ((n == 7 && !strncmp(zName, "leveldb", n)) || (n == 7 && !strncmp(zName, "rocksdb", n))) {
      die("%.*s is not compiled in (configure did not find it)", (int)n, zName);
    }
    die("unknown engine %.*s", (int)n, zName);
  }
  for (i = 0; i < nEngine; i++) {
    if (aEngine[i]->pM == pM) return;
  }
  e = xmalloc(sizeof(Engine));
  memset(e, 0, sizeof(*e));
  e->pM = pM;
  e->sOpts = *pOpts;
  snprintf(e->zDir, sizeof(e->zDir), "%s/%s", cfg.zDb, pM->zName);
  if (pM == &strataMethods) {
    char zComp[32] = "no compression";
    if (o->compression == STRATA_COMPRESSION_ZSTD) {
      snprintf(zComp, sizeof(zComp), "zstd level %d", o->compression_level);
    }
    snprintf(e->zDesc, sizeof(e->zDesc),
             "%s, L0 triggers %d/%d/%d, files %.1f MiB, L1 %.1f MiB x%d, %d background thread(s), "
             "index and filter blocks in the cache",
             zComp, o->l0_compaction_trigger, o->l0_slowdown_trigger, o->l0_stop_trigger,
             mib(o->target_file_size), mib(strataLevelBase(o)), o->level_multiplier,
             o->background_threads);
  }
#ifdef HAVE_LEVELDB
  if (pM == &leveldbMethods) {
    snprintf(e->zDesc, sizeof(e->zDesc),
             "%d.%d, %s, L0 triggers 4/8/12, files 2 MiB, L1 10 MiB x10 (fixed by LevelDB), "
             "1 background thread, index and filter blocks outside the cache",
             leveldb_major_version(), leveldb_minor_version(),
             cfg.compression == STRATA_COMPRESSION_NONE ? "no compression"
                                                        : "snappy (its C API has no zstd)");
  }
#endif
#ifdef HAVE_ROCKSDB
  if (pM == &rocksdbMethods) {
    char zComp[32] = "no compression";
    if (cfg.compression != STRATA_COMPRESSION_NONE) {
      snprintf(zComp, sizeof(zComp), "zstd level %d", o->compression_level);
    }
    snprintf(e->zDesc, sizeof(e->zDesc),
             "%s, L0 triggers %d/%d/%d, files %.1f MiB, L1 %.1f MiB x%d, 2 background jobs, "
             "index and filter blocks in the cache",
             zComp, o->l0_compaction_trigger, o->l0_slowdown_trigger, o->l0_stop_trigger,
             mib(o->target_file_size), mib(strataLevelBase(o)), o->level_multiplier);
  }
#endif
  aEngine[nEngine++] = e;
}

/* Call x(z, n) for each item of a comma-separated list. */
static void forEachItem(const char *zList, void (*x)(const char *, size_t, const void *),
                        const void *pArg) {
  const char *z = zList;
  while (*z) {
    size_t n = strcspn(z, ",");
    if (n) x(z, n, pArg);
    z += n;
    if (*z == ',') z++;
  }
}

static void addEngineItem(const char *z, size_t n, const void *pArg) { addEngine(z, n, pArg); }

static int workloadByName(const char *z, size_t n) {
  int w;
  for (w = 0; w < W_COUNT; w++) {
    if (strlen(aWorkload[w].zName) == n && !strncmp(aWorkload[w].zName, z, n)) return w;
  }
  die("unknown benchmark %.*s", (int)n, z);
}

static void checkWorkloadItem(const char *z, size_t n, const void *pArg) { workloadByName(z, n); }

static void runWorkloadItem(const char *z, size_t n, const void *pArg) {
  int w = workloadByName(z, n);
  if (!aWorkload[w].bFill && !model.bFilled) runWorkload(W_FILLRANDOM, 1);
  runWorkload(w, 0);
}

int main(int argc, char **argv) {
  strata_options opts;
  const char *zSync;
  int i;
  benchSetProgram("strata-bench", 1);

  parseArgs(argc, argv);
  strata_options_init(&opts);
  if (cfg.memtableSize) opts.memtable_size = cfg.memtableSize;
  if (cfg.cacheSize) opts.cache_size = cfg.cacheSize;
  opts.compression = cfg.compression;
  opts.bloom_bits_per_key = 10;
  opts.sync = cfg.syncMode;
  forEachItem(cfg.zBenchmarks, checkWorkloadItem, NULL);
  if (cfg.zEngines) {
    forEachItem(cfg.zEngines, addEngineItem, &opts);
  } else {
    addEngine("strata", 6, &opts);
#ifdef HAVE_LEVELDB
    addEngine("leveldb", 7, &opts);
#endif
#ifdef HAVE_ROCKSDB
    addEngine("rocksdb", 7, &opts);
#endif
  }
  if (nEngine == 0) die("no engine to run");

  zSync = cfg.syncMode == STRATA_SYNC_FULL  ? "full"
          : cfg.syncMode == STRATA_SYNC_OFF ? "off"
                                            : "normal";
  printf("strata-bench: %" PRIu64 " entries, %d-byte keys, %d-byte values "
         "(~%.0f bytes compressed), %" PRIu64 " reads, batch %d, sync %s, seed %" PRIu64 "\n",
         cfg.nNum, cfg.nKey, cfg.nVal, cfg.ratio * cfg.nVal, cfg.nReads, cfg.nBatch, zSync,
         cfg.seed);
  printf("shared settings: write buffer %.1f MiB, block cache %.1f MiB, block %zu bytes, "
         "bloom 10 bits/key, max open files %d, %s\n",
         mib(opts.memtable_size), mib(opts.cache_size), opts.block_size, opts.max_open_files,
         cfg.syncMode == STRATA_SYNC_FULL ? "peers sync every write" : "peers do not sync writes");
  for (i = 0; i < nEngine; i++) printf("  %-8s %s\n", aEngine[i]->pM->zName, aEngine[i]->zDesc);
  printf("w-amp: bytes the engine wrote to files / user bytes (strata: its own count; peers: "
         "wchar)\n");

  mkdirs(cfg.zDb);
  for (i = 0; i < nEngine; i++) aEngine[i]->pM->xDestroy(aEngine[i]); /* an earlier run's */
  benchPoolInit((size_t)(cfg.ratio * 100.0), (size_t)cfg.nVal, cfg.seed);
  model.aGen = xmalloc(cfg.nNum);
  memset(model.aGen, 0, cfg.nNum);

  forEachItem(cfg.zBenchmarks, runWorkloadItem, NULL);

  for (i = 0; i < nEngine; i++) {
    Engine *e = aEngine[i];
    if (e->bOpen) e->pM->xClose(e);
    if (!cfg.bKeep) e->pM->xDestroy(e);
    free(e);
  }
  if (!cfg.bKeep) rmdir(cfg.zDb); /* only if empty: it may hold other things */
  free(model.aGen);
  free(aBenchPool);
  if (nFailedChecks) {
    printf("\n%d workload(s) gave WRONG answers\n", nFailedChecks);
    return 1;
  }
  return 0;
}
