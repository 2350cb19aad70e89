/*
** strata.h -- the public C API of the strata LSM storage engine.
**
** CONVENTIONS
**
**   Handles are opaque pointers: strata (a database), strata_batch (a write
**   batch), strata_txn (a transaction), strata_iter (an iterator),
**   strata_snapshot (a consistent read point).
**
**   Keys and values are byte strings passed as pointer + length. They may
**   contain any bytes, including zero. Keys sort by memcmp(), a shorter key
**   before a longer key that it is a prefix of. The engine copies every key
**   and value it is given before the call returns.
**
**   Every function that can fail returns an int code: STRATA_OK (0) on
**   success, otherwise one of the STRATA_* codes below. Codes whose meaning
**   SQLite shares carry SQLite's number. STRATA_NOTFOUND reports absence and
**   is not an error. After an error, strata_errmsg() returns a message for
**   the most recent failed call made by the calling thread.
**
**   Memory returned to the caller says who frees it. Pointers into engine
**   memory (iterator keys and values) are valid until the iterator moves or
**   is freed. Destructors accept NULL.
**
**   Thread safety: a strata handle may be used by any number of threads at
**   once. Writes (put, delete, write, txn commit) are serialized inside the
**   engine: concurrent writers are queued and their batches committed in
**   groups. Readers never block writers and writers never block readers.
**   strata_batch, strata_txn and strata_iter objects are not thread-safe:
**   one thread at a time.
*/
#ifndef STRATA_H
#define STRATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. */
#define STRATA_OK        0   /* success */
#define STRATA_ERROR     1   /* invalid argument or other generic error */
#define STRATA_BUSY      5   /* another writer holds the database */
#define STRATA_NOMEM     7   /* an allocation failed */
#define STRATA_READONLY  8   /* the database is in a read-only state after a failed write */
#define STRATA_IOERR    10   /* an operating system I/O call failed */
#define STRATA_CORRUPT  11   /* a checksum or structural check failed */
#define STRATA_NOTFOUND 12   /* the key is absent (not an error) */
#define STRATA_FULL     13   /* the disk is full */
#define STRATA_CANTOPEN 14   /* the database could not be opened or created */
#define STRATA_TOOBIG   18   /* a key or value exceeds the limits */
#define STRATA_MISUSE   21   /* API used incorrectly */

/* Limits. */
#define STRATA_MAX_KEY   (64 * 1024)          /* bytes in a key */
#define STRATA_MAX_VALUE (1024 * 1024 * 1024) /* bytes in a value */

/* Compression of sstable data blocks. */
#define STRATA_COMPRESSION_NONE 0
#define STRATA_COMPRESSION_ZSTD 1

/* Durability of a commit, as SQLite's PRAGMA synchronous:
**   OFF    the log is buffered in the process; a process crash may lose the
**          most recent commits, never corrupts the database.
**   NORMAL the log is written to the OS at every commit; a process crash
**          loses nothing that was committed; a power loss may lose recent commits.
**   FULL   the log is synced at every commit, and directories after file
**          creation; a power loss loses nothing that was committed. */
#define STRATA_SYNC_OFF    0
#define STRATA_SYNC_NORMAL 1
#define STRATA_SYNC_FULL   2

typedef struct strata strata;
typedef struct strata_batch strata_batch;
typedef struct strata_iter strata_iter;
typedef struct strata_snapshot strata_snapshot;
typedef struct strata_txn strata_txn;
typedef struct strata_env strata_env;

/* Options for strata_open(). Always initialize with strata_options_init(),
** then change fields: new fields may be added in later versions. */
typedef struct strata_options {
  int create_if_missing;     /* create the database if absent (default 1) */
  int error_if_exists;       /* fail with STRATA_ERROR if it exists (default 0) */
  size_t memtable_size;      /* bytes buffered in memory before a flush (default 8 MiB) */
  size_t block_size;         /* target uncompressed data block size (default 4096) */
  int compression;           /* STRATA_COMPRESSION_* (default ZSTD) */
  int compression_level;     /* zstd level, -7..22 (default 1) */
  int compress_from_level;   /* tables of levels below this are stored
                             ** uncompressed (default 0: all compressed). 2
                             ** keeps L0 and L1, which every seek reads and
                             ** compaction rewrites often, free of
                             ** decompression, for more bytes written */
  int bloom_bits_per_key;    /* 0 disables bloom filters (default 10) */
  size_t cache_size;         /* block cache budget in bytes (default 32 MiB):
                             ** cached blocks, and reserved in it the index
                             ** and filter blocks of open tables, a memtable
                             ** being flushed, and the buffers of flushes,
                             ** compactions and scans' read-ahead */
  int max_open_files;        /* table cache limit on open files (default 500) */
  int sync;                  /* STRATA_SYNC_* (default NORMAL) */
  int l0_compaction_trigger; /* L0 file count that starts compaction (default 4) */
  int l0_slowdown_trigger;   /* L0 file count that slows writes (default 12) */
  int l0_stop_trigger;       /* L0 file count that stops writes (default 20) */
  size_t target_file_size;   /* sstable size that compaction aims at (default 8 MiB) */
  size_t level_base_size;    /* least target size of L1 (default 0: 4 x memtable_size);
                             ** L1's target grows with the bottom level, as
                             ** sqrt(L0 batch x bottom bytes) with two levels */
  int level_multiplier;      /* growth factor between levels (default 10) */
  int background_threads;    /* flush/compaction threads (default 2) */
  int disable_compaction;    /* 1: never compact automatically (tests, tools) */
  int busy_timeout_ms;       /* how long strata_txn_begin waits for the write lock */
  int mmap_reads;            /* 1: read tables through read-only memory maps,
                             ** using uncompressed blocks in place (default 1
                             ** with 64-bit pointers). An I/O error under a
                             ** map is a SIGBUS, not an error code: 0 reads
                             ** with pread only */
  int verify_always;         /* 1: verify the checksum of a block read in place
                             ** from a map at every use; 0 (default): at its
                             ** first use while the table is open, as a block
                             ** read into the cache is verified once */
  strata_env *env;           /* NULL: the operating system; tests inject faults here */
} strata_options;

/* Fill *opts with the defaults. */
void strata_options_init(strata_options *opts);

/* Open (or create) the database in directory zPath. On success *ppDb is a
** handle to be closed with strata_close(); on failure *ppDb is NULL and
** strata_errmsg() says why. Only one strata handle per directory may be open
** in a process at a time: a second strata_open() of the same directory gets
** STRATA_BUSY. */
int strata_open(const char *zPath, const strata_options *opts, strata **ppDb);

/* Flush buffered log data, stop background work and free the handle.
** Every snapshot, iterator and transaction must be released first
** (otherwise STRATA_MISUSE and nothing is closed). Accepts NULL. */
int strata_close(strata *db);

/* Delete the database in directory zPath and the directory itself. The
** database must not be open. */
int strata_destroy(const char *zPath, strata_env *env);

/* The message for the most recent failed call in this thread. Valid until
** the next strata call in this thread. Never NULL. */
const char *strata_errmsg(void);

/* A constant string naming a result code. */
const char *strata_errstr(int rc);

/* ------------------------------------------------------------------ */
/* Single writes. Each is its own atomic commit. */

int strata_put(strata *db, const void *pKey, size_t nKey,
               const void *pVal, size_t nVal);
int strata_delete(strata *db, const void *pKey, size_t nKey);

/* A reusable output buffer for strata_get(). Initialize to all zeros. The
** engine grows p as needed (realloc); free with strata_value_free(). */
typedef struct strata_value {
  void *p;       /* value bytes (not NUL-terminated) */
  size_t n;      /* number of bytes in p */
  size_t nAlloc; /* allocated size of p */
} strata_value;
void strata_value_free(strata_value *pVal);

/* Look up pKey as of pSnap (NULL: the latest state). Returns STRATA_OK and
** fills *pVal, or STRATA_NOTFOUND, or an error. */
int strata_get(strata *db, const strata_snapshot *pSnap,
               const void *pKey, size_t nKey, strata_value *pVal);

/* ------------------------------------------------------------------ */
/* Write batches: a set of puts and deletes committed atomically. */

int strata_batch_new(strata_batch **ppBatch);
void strata_batch_free(strata_batch *pBatch);
int strata_batch_put(strata_batch *pBatch, const void *pKey, size_t nKey,
                     const void *pVal, size_t nVal);
int strata_batch_delete(strata_batch *pBatch, const void *pKey, size_t nKey);
void strata_batch_clear(strata_batch *pBatch);
size_t strata_batch_count(const strata_batch *pBatch);

/* Commit every operation of pBatch atomically, in order (a later operation
** on the same key wins). The batch is unchanged and may be reused. */
int strata_write(strata *db, const strata_batch *pBatch);

/* ------------------------------------------------------------------ */
/* Snapshots: a read point. Cheap: no data is copied. A snapshot keeps the
** versions it can see from being garbage collected until released. */

const strata_snapshot *strata_snapshot_new(strata *db);
void strata_snapshot_release(strata *db, const strata_snapshot *pSnap);
uint64_t strata_snapshot_sequence(const strata_snapshot *pSnap);

/* ------------------------------------------------------------------ */
/* Iterators. A new iterator is not positioned (strata_iter_valid() is 0).
** Keys in [lower, upper) only, when bounds are given (lower inclusive, upper
** exclusive; NULL pointer = unbounded). */

typedef struct strata_read_options {
  const strata_snapshot *snapshot; /* NULL: the state when the iterator is made */
  const void *lower; size_t nLower;
  const void *upper; size_t nUpper;
  int fill_cache;                  /* 0: blocks read are not added to the cache */
} strata_read_options;
void strata_read_options_init(strata_read_options *ro);

int strata_iter_new(strata *db, const strata_read_options *ro, strata_iter **ppIter);
void strata_iter_free(strata_iter *it);
void strata_iter_seek_first(strata_iter *it);
void strata_iter_seek_last(strata_iter *it);
void strata_iter_seek(strata_iter *it, const void *pKey, size_t nKey);          /* first key >= */
void strata_iter_seek_for_prev(strata_iter *it, const void *pKey, size_t nKey); /* last key <= */
void strata_iter_next(strata_iter *it);
void strata_iter_prev(strata_iter *it);
/* strata_iter_next up to n times, stopping when the iterator is no longer
** valid. Returns how many of the steps landed on an entry: n, or fewer at
** the end (or on an error: see strata_iter_status). For loops that count
** entries without reading them; each step costs less than a call of
** strata_iter_next. */
uint64_t strata_iter_skip(strata_iter *it, uint64_t n);
int strata_iter_valid(const strata_iter *it);
/* Key and value of the current entry. Valid until the iterator moves or is freed. */
const void *strata_iter_key(const strata_iter *it, size_t *pnKey);
const void *strata_iter_value(const strata_iter *it, size_t *pnVal);
/* strata_iter_valid(), strata_iter_key() and strata_iter_value() in one
** call, for loops that want all three at every step: returns 1 with the
** current key and value (valid until the iterator moves or is freed), or 0
** with NULL pointers and zero lengths. */
int strata_iter_entry(const strata_iter *it, const void **ppKey, size_t *pnKey,
                      const void **ppVal, size_t *pnVal);
/* STRATA_OK, or the error that made the iterator invalid (e.g. STRATA_CORRUPT). */
int strata_iter_status(const strata_iter *it);
/* Reuse an iterator of strata_iter_new for a new read: afterwards it reads
** as of pSnap (NULL: the newest state), with the same bounds and fill_cache,
** exactly as a new iterator would, and is not positioned. Cheap (no
** allocation) unless a flush or compaction happened since it was made or
** last refreshed; then it is rebuilt. An iterator in an error state is
** rebuilt too. Returns STRATA_OK, STRATA_MISUSE for an iterator of a
** transaction, or an error, which strata_iter_status() then also reports
** (free the iterator, or refresh it again). An iterator keeps the memtables
** and table files it reads alive (memory, disk space), however old: one
** kept idle should be refreshed or freed before long. */
int strata_iter_refresh(strata_iter *it, const strata_snapshot *pSnap);

/* ------------------------------------------------------------------ */
/* Transactions. A transaction reads from a snapshot taken at begin, sees its
** own uncommitted writes, and commits them atomically. Only one transaction
** may write at a time: the first write (or strata_txn_begin with
** STRATA_TXN_WRITE) takes the database's write lock, waiting up to
** busy_timeout_ms; if the lock is not free in time, or the database changed
** after the transaction's snapshot was taken, the call returns STRATA_BUSY
** (as SQLite in WAL mode). Savepoints nest. */

#define STRATA_TXN_READ  0
#define STRATA_TXN_WRITE 1

int strata_txn_begin(strata *db, int flags, strata_txn **ppTxn);
int strata_txn_put(strata_txn *t, const void *pKey, size_t nKey, const void *pVal, size_t nVal);
int strata_txn_delete(strata_txn *t, const void *pKey, size_t nKey);
int strata_txn_get(strata_txn *t, const void *pKey, size_t nKey, strata_value *pVal);
/* An iterator over the transaction's snapshot merged with its own writes. It
** sees writes made after it was created. Free before the transaction ends. */
int strata_txn_iter_new(strata_txn *t, const strata_read_options *ro, strata_iter **ppIter);
/* Savepoints are numbered from 0 in the order they are made.
** strata_txn_savepoint marks the current state and sets *piSavepoint to its
** number. strata_txn_rollback_to undoes every write made after savepoint i
** and keeps i (later ones are forgotten); iterators of the transaction made
** before a rollback_to must be freed and made again. strata_txn_release
** forgets savepoint i and those after it, keeping their writes. */
int strata_txn_savepoint(strata_txn *t, int *piSavepoint);
int strata_txn_rollback_to(strata_txn *t, int iSavepoint);
int strata_txn_release(strata_txn *t, int iSavepoint);
int strata_txn_commit(strata_txn *t);   /* frees t, whatever the result */
void strata_txn_rollback(strata_txn *t); /* frees t; accepts NULL */
/* Number of operations buffered. */
size_t strata_txn_count(const strata_txn *t);

/* ------------------------------------------------------------------ */
/* Maintenance. */

/* Write the memtable to an sstable and wait until it is on disk. */
int strata_flush(strata *db);
/* Compact the key range [lo, hi] (NULL = unbounded) down to the bottom level. */
int strata_compact_range(strata *db, const void *lo, size_t nLo, const void *hi, size_t nHi);
/* Wait until no flush, compaction or deletion of obsolete files is pending
** or running (files a compaction replaced are deleted by a background
** thread once no reader holds them). */
int strata_wait_idle(strata *db);
/* Make every commit so far durable against power loss (fsync the log). */
int strata_sync(strata *db);

#define STRATA_MAX_LEVELS 7

typedef struct strata_stats {
  uint64_t last_sequence;
  uint64_t memtable_bytes;                       /* active + immutable */
  int level_files[STRATA_MAX_LEVELS];
  uint64_t level_bytes[STRATA_MAX_LEVELS];
  uint64_t level_read_bytes[STRATA_MAX_LEVELS];    /* compaction input read, by output level */
  uint64_t level_written_bytes[STRATA_MAX_LEVELS]; /* flush/compaction output, by level */
  uint64_t user_bytes_written;    /* keys + values given to put/write */
  uint64_t wal_bytes_written;
  uint64_t flush_bytes_written;
  uint64_t compaction_bytes_read;
  uint64_t compaction_bytes_written;
  uint64_t disk_bytes_written;    /* every byte the engine wrote to files */
  uint64_t flushes, compactions;
  uint64_t stall_micros;          /* time writers spent slowed or stopped */
  uint64_t stall_count;
  uint64_t bloom_checks;          /* point lookups that consulted a filter */
  uint64_t bloom_useful;          /* ...and were answered "absent" by it */
  uint64_t cache_hits, cache_misses;
  uint64_t cache_bytes;           /* bytes charged to the block cache now:
                                  ** cached blocks and reservations (see
                                  ** cache_size) */
  uint64_t open_files;            /* tables in the table cache now */
  uint64_t live_bytes;            /* sum of sstable sizes in the current version */
  uint64_t seek_compactions;      /* compactions started by seeks (see compact.c) */
} strata_stats;

int strata_get_stats(strata *db, strata_stats *pStats);

/* Frees memory the engine returned to the caller where a function says so. */
void strata_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_H */
