/*
** db.c -- the public entry points: open and recovery, the write path with
** group commit, reads, snapshots, flush and background work, statistics.
**
** LOCKING
** db->mu guards the memtable pointers, the version set, the writer queue,
** the snapshot list and the background state. It is never held during WAL
** or table I/O on the write path (the leader of a commit group drops it),
** and readers hold it only long enough to take references.
**
** WRITE PATH (GROUP COMMIT)
** A writer joins a FIFO queue. The writer at the front is the leader: it
** makes room in the memtable (switching to a new memtable and WAL if full),
** gathers the batches of the writers queued behind it into one group,
** assigns their sequence numbers, and with the mutex released appends the
** group to the WAL as one record (one write() for sync=normal, plus
** fdatasync for sync=full) and inserts it into the memtable (a transaction's
** operations in key order, from its private memtable or sorted by it,
** which the skiplist takes far more cheaply than random order; each keeps
** the sequence number of its place in the batch, so the log and what
** readers see are the same as for batch order). It then
** publishes the new last sequence and wakes the group. Only the leader
** touches the WAL and inserts into the memtable, so the skiplist has one
** writer at a time.
**
** READ VIEWS
** A point lookup searches the active memtable, the immutable one and the
** current version. Taking a reference to each under db->mu (and dropping
** them after) costs a mutex round trip and six atomic updates per lookup,
** and each table probe another pin and unpin in the table cache. Instead
** the database keeps a ReadView: one reference-counted object holding
** those three, replaced (dbViewInstall, db->mu held) whenever one of them
** changes, and published in db->pView. A caller that keeps a view between
** lookups (a transaction) takes db->mu only when db->pView is no longer the
** view it holds: otherwise the view is still exactly what it would take.
** (A replaced view also stays a correct basis for reads at sequences
** published before it was replaced: its memtables and files still hold all
** of that data. Holding it only keeps those alive longer.) strata_get
** takes db->mu once, to reference the current view.
** A view also pins the readers of the tables that lookups through it
** touch, in one slot per file of its version, filled on first use and
** released with the view; so a lookup probes a table without going
** through the table cache. Versions with more files than half of
** max_open_files pin nothing, to keep the open files within the limit. A
** view that cannot be allocated leaves db->pView NULL, and lookups then
** take references one by one as before.
**
** RECOVERY
** Open reads CURRENT and the manifest, replays every WAL not yet covered by
** a table into memtables that it writes out as L0 tables, and starts a new
** manifest that records the result. Files that no version references
** (a crash during a flush or compaction) are deleted.
**
** FAILURES
** A failed WAL write or flush makes the handle read-only (sticky error):
** the memtable may then hold writes that are not in the log, or the log a
** partial record. Reads go on; writes fail until the database is reopened,
** and recovery then restores exactly the acknowledged writes.
*/
#include "strataInt.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <time.h>
#include <unistd.h>

/* OPTIONS */

void strata_options_init(strata_options *o) {
  memset(o, 0, sizeof(*o));
  o->create_if_missing = 1;
  o->memtable_size = 8u << 20;
  o->block_size = 4096;
  o->compression = STRATA_COMPRESSION_ZSTD;
  o->compression_level = 1;
  o->compress_from_level = 0;
  o->bloom_bits_per_key = 10;
  o->cache_size = 32u << 20;
  o->max_open_files = 500;
  o->sync = STRATA_SYNC_NORMAL;
  o->l0_compaction_trigger = 4;
  o->l0_slowdown_trigger = 12;
  o->l0_stop_trigger = 20;
  o->target_file_size = 8u << 20;
  o->level_multiplier = 10;
  o->background_threads = 2; /* a flush need not wait for a compaction */
  o->busy_timeout_ms = 5000;
  o->mmap_reads = sizeof(void *) >= 8; /* tables may not fit 32-bit address space */
}

static int checkOptions(const strata_options *o) {
#define BAD(...) return strataErr(STRATA_ERROR, __VA_ARGS__)
  if (o->memtable_size < 4096 || o->memtable_size > ((size_t)1 << 34)) {
    BAD("memtable_size must be between 4 KiB and 16 GiB");
  }
  if (o->block_size < 256 || o->block_size > (64u << 20)) BAD("block_size must be between 256 B and 64 MiB");
  if (o->compression != STRATA_COMPRESSION_NONE && o->compression != STRATA_COMPRESSION_ZSTD) {
    BAD("unknown compression %d", o->compression);
  }
  if (o->compression_level < -7 || o->compression_level > 22) BAD("compression_level must be -7..22");
  if (o->compress_from_level < 0 || o->compress_from_level > STRATA_MAX_LEVELS) {
    BAD("compress_from_level must be 0..%d", STRATA_MAX_LEVELS);
  }
  if (o->bloom_bits_per_key < 0 || o->bloom_bits_per_key > 64) BAD("bloom_bits_per_key must be 0..64");
  if (o->sync < STRATA_SYNC_OFF || o->sync > STRATA_SYNC_FULL) BAD("sync must be off, normal or full");
  if (o->max_open_files < 10) BAD("max_open_files must be at least 10");
  if (o->l0_compaction_trigger < 1 || o->l0_slowdown_trigger < o->l0_compaction_trigger ||
      o->l0_stop_trigger < o->l0_slowdown_trigger) {
    BAD("L0 triggers must satisfy 1 <= compaction <= slowdown <= stop");
  }
  if (o->level_multiplier < 2 || o->level_multiplier > 100) BAD("level_multiplier must be 2..100");
  if (o->target_file_size < 4096) BAD("target_file_size must be at least 4 KiB");
  if (o->background_threads < 1 || o->background_threads > 16) BAD("background_threads must be 1..16");
  if (o->busy_timeout_ms < 0) BAD("busy_timeout_ms must be >= 0");
  if (o->mmap_reads != 0 && o->mmap_reads != 1) BAD("mmap_reads must be 0 or 1");
  if (o->verify_always != 0 && o->verify_always != 1) BAD("verify_always must be 0 or 1");
#undef BAD
  return STRATA_OK;
}

/* TABLE CACHE */

static void tableFree(void *p) { strataSstClose((SstReader *)p); }

/* A pinned reader for file f. */
static int tableGet(strata *db, const FileMeta *f, CacheHandle **ppH) {
  CacheHandle *h = strataCacheLookup(db->pTableCache, f->number, 0);
  if (!h) {
    SstReader *r = NULL;
    char *zPath = strataFileName(db->zDir, STRATA_FILE_SST, f->number);
    int rc;
    if (!zPath) return strataErr(STRATA_NOMEM, "out of memory");
    rc = strataSstOpen(db->env, zPath, f->number, db->pBlockCache, &db->io, &r);
    strataFreeMem(zPath);
    if (rc) return rc;
    strataSstSetBudget(r, &db->budget);
    if (db->opts.mmap_reads) strataSstMap(r, db->opts.verify_always); /* else r reads the file */
    h = strataCacheInsert(db->pTableCache, f->number, 0, r, 1, tableFree);
    if (!h) return strataErr(STRATA_NOMEM, "out of memory");
  }
  *ppH = h;
  return STRATA_OK;
}

typedef struct TableIterCtx {
  strata *db;
  int bFillCache;
} TableIterCtx;

int strataDbTableIter(strata *db, FileMeta *f, int bFillCache, StrataIter **ppIter) {
  CacheHandle *h = NULL;
  int rc = tableGet(db, f, &h);
  *ppIter = NULL;
  if (rc) return rc;
  rc = strataSstIterNew((SstReader *)strataCacheValue(h), bFillCache, ppIter);
  if (rc) {
    strataCacheRelease(db->pTableCache, h);
    return rc;
  }
  /* The iterator keeps the table open, and lets go of it when closed. */
  strataSstIterHold(*ppIter, db->pTableCache, h);
  return STRATA_OK;
}

static int openTableIterCb(void *pCtx, FileMeta *f, StrataIter **ppIter) {
  TableIterCtx *c = pCtx;
  return strataDbTableIter(c->db, f, c->bFillCache, ppIter);
}

/* DEFERRED DELETION
** Deleting a file is slow I/O: on ext4 mounted with `discard`, unlinking an
** 80 MB table waits for the device to discard every extent, and even
** without it the extents are freed under the journal. The last reference
** to an obsolete table is often dropped by the writer (refreshing its read
** view) or by a background thread inside a version change (with mu held,
** which writers wait for); at 10M rows that put about 15% of the writer's
** time in unlink. So obsolete tables (closed at once: fileObsolete) and
** flushed WALs go on a queue that a background thread empties without mu
** held, between flushes and compactions. A crash meanwhile loses nothing:
** the files are in no version and no manifest, and the next open deletes
** them (deleteObsoleteFiles). File numbers are never reused, so a late
** delete cannot hit a new file. While no background thread runs (during
** open and after close has stopped them) files are deleted at once.
** strata_wait_idle waits for the queue. */
typedef struct DoomedFile {
  u64 number;
  int type; /* STRATA_FILE_SST or STRATA_FILE_WAL */
} DoomedFile;

/* Delete one file now. */
static void deleteFileNow(strata *db, int type, u64 number) {
  char *zPath = strataFileName(db->zDir, type, number);
  if (zPath) db->env->xDelete(db->env, zPath);
  strataFreeMem(zPath);
}

/* Queue a file for a background thread, or delete it now if none runs or
** the queue cannot grow. Any thread, mu held or not. */
static void deleteLater(strata *db, int type, u64 number) {
  int bNow;
  pthread_mutex_lock(&db->muDoomed);
  bNow = db->bDeleteNow;
  if (!bNow && db->nDoomed == db->nDoomedAlloc) {
    int nNew = db->nDoomedAlloc ? 2 * db->nDoomedAlloc : 16;
    DoomedFile *a = strataRealloc(db->aDoomed, sizeof(DoomedFile) * (size_t)nNew);
    if (a) {
      db->aDoomed = a;
      db->nDoomedAlloc = nNew;
    } else {
      bNow = 1;
    }
  }
  if (!bNow) {
    db->aDoomed[db->nDoomed].number = number;
    db->aDoomed[db->nDoomed].type = type;
    db->nDoomed++;
  }
  pthread_mutex_unlock(&db->muDoomed);
  if (bNow) {
    deleteFileNow(db, type, number);
  } else {
    /* Without mu this wake-up can come just before a thread waits and be
    ** missed; an idle thread also looks at the queue once a second. */
    pthread_cond_broadcast(&db->bgCv);
  }
}

static int doomedCount(strata *db) {
  int n;
  pthread_mutex_lock(&db->muDoomed);
  n = db->nDoomed;
  pthread_mutex_unlock(&db->muDoomed);
  return n;
}

/* Delete every queued file. With bgThread, mu is held on entry and exit and
** released meanwhile, and strata_wait_idle sees the work as in progress. */
static void deleteDoomed(strata *db, int bBgThread) {
  DoomedFile *a;
  int n, i;
  pthread_mutex_lock(&db->muDoomed);
  a = db->aDoomed;
  n = db->nDoomed;
  db->aDoomed = NULL;
  db->nDoomed = db->nDoomedAlloc = 0;
  pthread_mutex_unlock(&db->muDoomed);
  if (n == 0) {
    strataFreeMem(a);
    return;
  }
  if (bBgThread) {
    db->nDeleting += n;
    pthread_mutex_unlock(&db->mu);
  }
  for (i = 0; i < n; i++) deleteFileNow(db, a[i].type, a[i].number);
  strataFreeMem(a);
  if (bBgThread) {
    pthread_mutex_lock(&db->mu);
    db->nDeleting -= n;
    pthread_cond_broadcast(&db->doneCv);
  }
}

/* From here on files are deleted when they become obsolete (bNow) or queued. */
static void setDeleteNow(strata *db, int bNow) {
  pthread_mutex_lock(&db->muDoomed);
  db->bDeleteNow = bNow;
  pthread_mutex_unlock(&db->muDoomed);
}

/* Called when the last version holding a removed file goes away. The table
** is closed at once, so that its index, filter and cached blocks leave the
** memory budget now (a queued table kept them: 45 MB at the peak of a 10M
** fill against a 41.9 MB budget); only the unlink waits. */
static void fileObsolete(void *pCtx, u64 number) {
  strata *db = pCtx;
  strataCacheErase(db->pTableCache, number, 0);
  strataCacheEraseId(db->pBlockCache, number);
  deleteLater(db, STRATA_FILE_SST, number);
}

void strataDbAdoptFile(strata *db, FileMeta *f) {
  f->xObsolete = fileObsolete;
  f->pObsoleteCtx = db;
}

/* ERRORS */

/* Set the sticky background error (db->mu held). */
static void setBgError(strata *db, int rc) {
  if (db->bgError == STRATA_OK) {
    db->bgError = rc;
    snprintf(db->zBgError, sizeof(db->zBgError), "%s", strataErrMsgGet());
  }
  pthread_cond_broadcast(&db->doneCv);
}

static int bgErrorReport(strata *db) {
  return strataErr(STRATA_READONLY, "database is read-only after an earlier failure (%s); reopen it",
                   db->zBgError);
}

/* READ VIEWS (see the file header) */

struct ReadView {
  _Atomic int nRef;
  strata *db;
  Memtable *pMem, *pImm;  /* one reference each (pImm may be NULL) */
  Version *pVersion;      /* one reference */
  int nPin;               /* slots in aPin; 0 when tables are not pinned */
  int aBase[STRATA_MAX_LEVELS]; /* slot of each level's first file */
  /* FILE BOUNDS: per file slot, the windows of its smallest and largest
  ** user keys (aBound[2 * slot], aBound[2 * slot + 1]), or NULL. */
  u64 *aBound;
  size_t nBoundCommon;          /* bytes every file key starts with... */
  const u8 *pBoundCommon;       /* ...namely these (in a FileMeta key) */
  _Atomic(CacheHandle *) aPin[]; /* per file: its pinned reader, or NULL */
};

/* FILE BOUNDS
** A lookup finds its candidate tables by comparing the key with the
** smallest and largest keys of files: the L0 files, and a binary search
** per level. Each such key is a separate allocation behind its FileMeta:
** two or three cold lines per comparison. So a view keeps, per file, the 8
** bytes of both bound user keys after the prefix common to all of them, as
** big-endian integers padded with zeros, in one dense array: a comparison
** reads one word, and only equal windows compare the keys themselves.
** Built with the view; without memory for it lookups compare the keys. */

/* Fill v->aBound (and the common prefix) from its version. Leaves it NULL
** when out of memory or when there are no files. */
static void viewBoundsBuild(ReadView *v) {
  const Version *ver = v->pVersion;
  const u8 *p0 = NULL;
  size_t c = 0;
  int level, i, iSlot = 0, nFile = 0;
  u64 *a;
  for (level = 0; level < STRATA_MAX_LEVELS; level++) {
    for (i = 0; i < ver->nFile[level]; i++) {
      const FileMeta *f = ver->aFile[level][i];
      const StrataBuf *aKey[2] = {&f->smallest, &f->largest};
      int k;
      for (k = 0; k < 2; k++) {
        const u8 *u = aKey[k]->a;
        size_t nu = aKey[k]->n - STRATA_TRAILER, j = 0;
        if (!p0) {
          p0 = u;
          c = nu;
        }
        while (j < c && j < nu && u[j] == p0[j]) j++;
        c = j;
      }
      nFile++;
    }
  }
  if (nFile == 0) return;
  a = strataMalloc(sizeof(u64) * 2 * (size_t)nFile);
  if (!a) return;
  for (level = 0; level < STRATA_MAX_LEVELS; level++) {
    for (i = 0; i < ver->nFile[level]; i++, iSlot++) {
      const FileMeta *f = ver->aFile[level][i];
      a[2 * iSlot] = strataKeyWindow(f->smallest.a, f->smallest.n - STRATA_TRAILER, c);
      a[2 * iSlot + 1] = strataKeyWindow(f->largest.a, f->largest.n - STRATA_TRAILER, c);
    }
  }
  v->aBound = a;
  v->nBoundCommon = c;
  v->pBoundCommon = p0;
}

static void viewRef(ReadView *v) { atomic_fetch_add_explicit(&v->nRef, 1, memory_order_relaxed); }

/* Drop a reference; the last one unpins the tables and releases the rest.
** Accepts NULL. */
void strataDbViewUnref(ReadView *v) {
  int i;
  if (!v || atomic_fetch_sub_explicit(&v->nRef, 1, memory_order_acq_rel) != 1) return;
  for (i = 0; i < v->nPin; i++) {
    CacheHandle *h = atomic_load_explicit(&v->aPin[i], memory_order_acquire);
    if (h) strataCacheRelease(v->db->pTableCache, h);
  }
  strataMemtableUnref(v->pMem);
  strataMemtableUnref(v->pImm);
  strataVersionUnref(v->pVersion);
  strataFreeMem(v->aBound);
  strataFreeMem(v);
}

/* Make db->pView match db->pMem, db->pImm and the current version (db->mu
** held; a no-op if it does already). Called after every change of one of
** them. If no view can be allocated, db->pView becomes NULL. */
static void dbViewInstall(strata *db) {
  ReadView *pOld = atomic_load_explicit(&db->pView, memory_order_relaxed);
  Version *pVer = db->vs ? db->vs->pCurrent : NULL;
  ReadView *v = NULL;
  int nFile = 0, i;
  if (pOld && pOld->pMem == db->pMem && pOld->pImm == db->pImm && pOld->pVersion == pVer) return;
  if (db->pMem && pVer) {
    for (i = 0; i < STRATA_MAX_LEVELS; i++) nFile += pVer->nFile[i];
    if (nFile > db->opts.max_open_files / 2) nFile = 0;
    v = strataMallocZero(sizeof(ReadView) + sizeof(v->aPin[0]) * (size_t)nFile);
  }
  if (v) {
    atomic_init(&v->nRef, 1);
    v->db = db;
    v->pMem = db->pMem;
    strataMemtableRef(v->pMem);
    v->pImm = db->pImm;
    if (v->pImm) strataMemtableRef(v->pImm);
    v->pVersion = pVer;
    strataVersionRef(pVer);
    v->nPin = nFile;
    for (i = 0, nFile = 0; i < STRATA_MAX_LEVELS; i++) {
      v->aBase[i] = nFile;
      nFile += pVer->nFile[i];
    }
    for (i = 0; i < v->nPin; i++) atomic_init(&v->aPin[i], NULL);
    viewBoundsBuild(v);
  }
  atomic_store_explicit(&db->pView, v, memory_order_release);
  strataDbViewUnref(pOld);
}

/* A reference to the current view (NULL if none can be allocated). */
static ReadView *dbViewGet(strata *db) {
  ReadView *v;
  pthread_mutex_lock(&db->mu);
  v = atomic_load_explicit(&db->pView, memory_order_relaxed);
  if (!v) { /* an earlier allocation failed: try again */
    dbViewInstall(db);
    v = atomic_load_explicit(&db->pView, memory_order_relaxed);
  }
  if (v) viewRef(v);
  pthread_mutex_unlock(&db->mu);
  return v;
}

/* Table options for output level `level`. */
void strataDbSstOptions(const strata *db, int level, SstOptions *pOut) {
  *pOut = db->sstOpts;
  if (level < db->opts.compress_from_level) pOut->compression = STRATA_COMPRESSION_NONE;
  /* Flushes and compactions write the same data: each table starts where
  ** the last one left off in finding it incompressible. */
  pOut->nSkipHint = atomic_load_explicit(&db->nSstSkipHint, memory_order_relaxed);
}

void strataDbNoteSkipHint(strata *db, const SstBuilder *b) {
  int n = strataSstBuilderSkipHint(b);
  /* Tables of levels stored uncompressed (compress_from_level) tell nothing. */
  if (n >= 0) atomic_store_explicit(&db->nSstSkipHint, n, memory_order_relaxed);
}

/* FLUSH
** Write a memtable to a new L0 table. The caller holds db->mu; it is
** released during the table build. On success *ppMeta is the new file (NULL
** if the memtable was empty). */
static int writeLevel0(strata *db, Memtable *pMem, FileMeta **ppMeta) {
  StrataIter *it = NULL;
  SstBuilder *b = NULL;
  SstProps props;
  FileMeta *f = NULL;
  char *zPath = NULL;
  u64 number = strataVersionSetNewFileNumber(db->vs);
  u64 t0 = strataNowMicros();
  int rc;
  memset(&props, 0, sizeof(props));
  *ppMeta = NULL;
  pthread_mutex_unlock(&db->mu);

  rc = strataMemtableIterNew(pMem, &it);
  if (rc == STRATA_OK) {
    it->pMethods->xSeekFirst(it);
    if (!it->bValid) goto flush_done; /* nothing to write */
    zPath = strataFileName(db->zDir, STRATA_FILE_SST, number);
    if (!zPath) rc = strataErr(STRATA_NOMEM, "out of memory");
  }
  if (rc == STRATA_OK) {
    SstOptions so;
    strataDbSstOptions(db, 0, &so);
    rc = strataSstBuilderNew(db->env, zPath, &so, &db->io, &b);
  }
  while (rc == STRATA_OK && it->bValid) {
    rc = strataSstBuilderAdd(b, it->pKey, it->nKey, it->pVal, it->nVal);
    it->pMethods->xNext(it);
  }
  if (rc == STRATA_OK && it->rc) rc = it->rc;
  if (rc == STRATA_OK) {
    strataDbNoteSkipHint(db, b);
    rc = strataSstBuilderFinish(b, &props);
    b = NULL;
  }
  if (rc == STRATA_OK) rc = db->env->xSyncDir(db->env, db->zDir);
  if (rc == STRATA_OK) rc = strataFileMetaFromProps(number, &props, &f);
flush_done:
  strataSstBuilderAbandon(b);
  strataIterClose(it);
  if (rc && zPath) db->env->xDelete(db->env, zPath);
  strataFreeMem(zPath);
  pthread_mutex_lock(&db->mu);
  if (rc == STRATA_OK && f) {
    strataDbAdoptFile(db, f);
    db->stats.flushes++;
    db->stats.flush_bytes_written += props.fileSize;
    db->stats.level_written_bytes[0] += props.fileSize;
    db->stats.flush_micros += strataNowMicros() - t0;
    *ppMeta = f;
  } else {
    strataFileMetaUnref(f);
  }
  strataSstPropsFree(&props);
  return rc;
}

/* MEMORY BUDGET
** memtable_size + cache_size is one budget. The active memtable (its key
** filter included) takes memtable_size; everything else the database holds
** in any number is charged to the block cache, which holds that much less
** data: the index and filter blocks of open tables (reserved by their
** readers); an immutable memtable until its flush is done (here); the
** buffers of table builders, for flushes and compactions alike; and the
** read-ahead windows of table iterators, which compactions and long scans
** use, bounded together by db->budget.nReadaheadMax. All are reservations
** in the cache (strataCacheReserve): it evicts to make room at once, and
** grows back when they are given back. What is left is small and does not
** grow with the data: per-thread compression contexts and block stashes,
** versions and file metadata, the WAL buffer, a transaction's writes. */

/* Read-ahead allowed to all iterators at once: 1/32 of the cache, at least
** one 16 KiB window, at most sixteen of 256 KiB. */
static size_t dbReadaheadBudget(size_t nCache) {
  size_t n = nCache / 32;
  if (n < (16u << 10)) n = 16u << 10;
  if (n > (4u << 20)) n = 4u << 20;
  return n;
}

/* Reserve in the block cache what the immutable memtable holds (nothing
** once there is none). db->mu held. */
static void dbChargeImmutable(strata *db) {
  size_t n = db->pImm ? strataMemtableMemoryUsage(db->pImm) : 0;
  if (n > db->nImmCharge) {
    strataCacheReserve(db->pBlockCache, n - db->nImmCharge);
  } else {
    strataCacheUnreserve(db->pBlockCache, db->nImmCharge - n);
  }
  db->nImmCharge = n;
  /* The blocks just evicted are holes in the heap: their pages go back to
  ** the system (bgTrimHeap), or the process keeps them resident beside the
  ** new memtable. Not here: the trim walks the heap, and db->mu is held. */
  if (db->pImm) {
    db->bTrimPending = 1;
    pthread_cond_broadcast(&db->bgCv);
  }
}

/* RETURNING MEMORY
** What the cache evicts to make room for a reservation, and what builders,
** read-ahead windows and closed readers free, goes back to the C library,
** which keeps it resident (a heap per thread that allocates) unless told
** to hand free pages back. A trim walks every heap (a millisecond or two),
** so a background thread does it outside db->mu: after a memtable switch
** made the cache shrink (bTrimPending), after a flush or compaction once
** DB_TRIM_MIN or more has been given back since the last trim (a large
** fill gives back the buffers and input tables of nearly every compaction,
** and its background threads seldom go idle), and when it goes idle. */
#define DB_TRIM_MIN(db) ((db)->opts.cache_size / 32 > (1u << 20) ? (db)->opts.cache_size / 32 : (1u << 20))

static int dbTrimDue(strata *db) {
  size_t nFreed = atomic_load_explicit(&db->budget.nFreed, memory_order_relaxed);
  return db->bTrimPending || nFreed - db->nFreedAtTrim >= DB_TRIM_MIN(db);
}

/* Hand free heap pages back to the system, outside db->mu (held on entry
** and on return). */
static void bgTrimHeap(strata *db) {
  db->bTrimPending = 0;
  db->nFreedAtTrim = atomic_load_explicit(&db->budget.nFreed, memory_order_relaxed);
#ifdef __GLIBC__
  pthread_mutex_unlock(&db->mu);
  malloc_trim(0);
  pthread_mutex_lock(&db->mu);
#endif
}

/* Flush the immutable memtable (db->mu held, db->pImm set). */
static int flushImmutable(strata *db);

/* Compaction calls this between keys, while a memtable waits for its
** flush (db->mu held): a long compaction does not hold up the flush that
** writers may soon wait for, nor the heap trim after the switch. */
void strataDbFlushPending(strata *db) {
  if (db->bgError != STRATA_OK) return;
  if (db->bTrimPending) bgTrimHeap(db);
  if (db->pImm && !db->bFlushing) flushImmutable(db);
}

static int flushImmutable(strata *db) {
  FileMeta *f = NULL;
  VersionEdit e;
  Memtable *pImm = db->pImm;
  u64 immWal = db->immWalNumber;
  int rc;
  db->bFlushing = 1;
  rc = writeLevel0(db, pImm, &f);
  strataEditInit(&e);
  if (rc == STRATA_OK) {
    if (f) rc = strataEditAddFile(&e, 0, f);
    e.bLogNumber = 1;
    e.logNumber = db->walNumber; /* the live WAL holds everything newer */
    e.bLastSeq = 1;
    e.lastSeq = atomic_load(&db->lastSeq);
  }
  if (rc == STRATA_OK) rc = strataVersionSetLogAndApply(db->vs, &e, &db->mu);
  if (rc == STRATA_OK) strataCompactUpdateDebt(db);
  strataEditClear(&e);
  if (rc == STRATA_OK) {
    db->pImm = NULL;
    atomic_store(&db->bImmPending, 0);
    strataMemtableUnref(pImm);
    dbChargeImmutable(db);
    deleteLater(db, STRATA_FILE_WAL, immWal);
  }
  /* After a failed manifest write the edit may or may not be on disk, so
  ** the new table stays: the next open deletes it if no version has it. */
  dbViewInstall(db);
  strataFileMetaUnref(f);
  db->bFlushing = 0;
  if (rc) setBgError(db, rc);
  pthread_cond_broadcast(&db->doneCv);
  return rc;
}

/* BACKGROUND THREAD */

static void *bgMain(void *pArg) {
  strata *db = pArg;
  int bWorked = 0; /* flushed or compacted since this thread last trimmed */
  pthread_mutex_lock(&db->mu);
  while (!db->bShutdown) {
    if (db->bTrimPending) {
      bgTrimHeap(db);
      bWorked = 0;
    } else if (db->bgError == STRATA_OK && db->pImm && !db->bFlushing) {
      flushImmutable(db);
      bWorked = 1;
      if (dbTrimDue(db)) bgTrimHeap(db);
    } else if (doomedCount(db) > 0) {
      deleteDoomed(db, 1); /* releases and retakes db->mu */
    } else if (db->bgError == STRATA_OK && strataCompactPick(db)) {
      strataCompactRun(db); /* releases and retakes db->mu */
      bWorked = 1;
      if (dbTrimDue(db)) bgTrimHeap(db);
      /* A new version (for the read view), and an idle thread may now find
      ** a compaction that conflicted with this one. */
      strataDbScheduleWork(db);
    } else if (bWorked) {
      /* Going idle: the C library gives each thread its own heap, and
      ** what a flush or compaction freed there stays resident (~4 MB over
      ** the budget measured after a 1M row fill) unless handed back; so do
      ** this thread's compression contexts (~0.8 MB) and block stash. */
      pthread_mutex_unlock(&db->mu);
      strataCompressThreadRelease();
      strataSstThreadRelease();
      pthread_mutex_lock(&db->mu);
      bgTrimHeap(db);
      bWorked = 0;
    } else {
      /* Timed: a file queued without mu may have woken no one (DEFERRED
      ** DELETION). */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += 1;
      pthread_cond_timedwait(&db->bgCv, &db->mu, &ts);
    }
  }
  pthread_mutex_unlock(&db->mu);
  return NULL;
}

/* Wake the background threads (db->mu held). Also brings the read view up
** to date, since callers (manual compaction among them) call it after
** changing the version. */
void strataDbScheduleWork(strata *db) {
  dbViewInstall(db);
  pthread_cond_broadcast(&db->bgCv);
}

/* A memtable for the write path: with a key filter sized for a full one
** (~16 bits per 100-byte entry). */
static int dbMemtableNew(strata *db, Memtable **pp) {
  int rc = strataMemtableNew(pp);
  if (rc == STRATA_OK) {
    rc = strataMemtableEnableBloom(*pp, db->opts.memtable_size / 6);
    if (rc) {
      strataMemtableUnref(*pp);
      *pp = NULL;
    }
  }
  return rc;
}

/* MAKING ROOM
** Called by the commit leader with db->mu held. Switches to a new memtable
** and WAL when the active one is full (or bForce), waiting while the
** previous one is still being flushed; slows writes down gently while L0
** backs up, and stops them only at the stop trigger. */
static int newWal(strata *db) {
  u64 number = strataVersionSetNewFileNumber(db->vs);
  char *zPath = strataFileName(db->zDir, STRATA_FILE_WAL, number);
  LogWriter *w = NULL;
  int rc;
  if (!zPath) return strataErr(STRATA_NOMEM, "out of memory");
  rc = strataLogWriterOpen(db->env, zPath, STRATA_LOG_WAL, &db->io, &w);
  if (rc == STRATA_OK && db->opts.sync == STRATA_SYNC_FULL) {
    rc = strataLogSync(w);
    if (rc == STRATA_OK) rc = db->env->xSyncDir(db->env, db->zDir);
  }
  if (rc) {
    strataLogWriterClose(w);
    db->env->xDelete(db->env, zPath);
  } else {
    db->pWal = w;
    db->walNumber = number;
  }
  strataFreeMem(zPath);
  return rc;
}

static int makeRoom(strata *db, int bForce) {
  int bSlowed = 0;
  for (;;) {
    int nL0 = db->vs->pCurrent->nFile[0];
    int bCompact = !db->opts.disable_compaction;
    u64 nDebt = db->nCompactionDebt;
    if (db->bgError) return bgErrorReport(db);
    if (!bSlowed && bCompact &&
        (nL0 >= db->opts.l0_slowdown_trigger || nDebt >= strataCompactDebtLimit(db, 0))) {
      /* Delay grows from 1 ms at the slowdown trigger towards the stop. */
      int span = db->opts.l0_stop_trigger - db->opts.l0_slowdown_trigger + 1;
      int over = nL0 - db->opts.l0_slowdown_trigger;
      u64 us = 1000u * (u64)(1 + 4 * (over > 0 ? over : 0) / span);
      pthread_mutex_unlock(&db->mu);
      usleep((useconds_t)us);
      pthread_mutex_lock(&db->mu);
      db->stats.stall_micros += us;
      db->stats.stall_count++;
      bSlowed = 1;
    } else if (!bForce && strataMemtableMemoryUsage(db->pMem) < db->opts.memtable_size) {
      return STRATA_OK;
    } else if (bForce && strataMemtableCount(db->pMem) == 0) {
      return STRATA_OK;
    } else if (db->pImm || (bCompact && (nL0 >= db->opts.l0_stop_trigger ||
                                          nDebt >= strataCompactDebtLimit(db, 1)))) {
      u64 t0 = strataNowMicros();
      strataDbScheduleWork(db);
      pthread_cond_wait(&db->doneCv, &db->mu);
      db->stats.stall_micros += strataNowMicros() - t0;
      db->stats.stall_count++;
    } else {
      Memtable *pNew = NULL;
      LogWriter *pOld = db->pWal;
      u64 oldNumber = db->walNumber;
      int rc = dbMemtableNew(db, &pNew);
      if (rc == STRATA_OK) rc = newWal(db);
      if (rc) {
        strataMemtableUnref(pNew);
        return rc;
      }
      /* The old WAL is complete: flush its buffer before the table that
      ** covers it can make it obsolete. */
      rc = strataLogWriterClose(pOld);
      if (rc) {
        setBgError(db, rc);
        return rc;
      }
      db->pImm = db->pMem;
      atomic_store(&db->bImmPending, 1);
      db->immWalNumber = oldNumber;
      db->pMem = pNew;
      dbChargeImmutable(db);
      dbViewInstall(db);
      bForce = 0;
      strataDbScheduleWork(db);
    }
  }
}

/* WRITE PATH */

typedef struct Writer {
  const strata_batch *pBatch; /* NULL: only make room / sync */
  Memtable *pIndex;           /* NULL, or pBatch's operations in key order (txn) */
  const BatchOpRef *aSorted;  /* NULL, or the same as an array (txn) */
  int bForceFlush;            /* switch the memtable even if not full */
  int bSync;                  /* fsync the WAL after this write */
  int bDone;
  int rc;
  char zErr[256];
  pthread_cond_t cv;
  struct Writer *pNext;
} Writer;

static int memInsertOp(void *pCtx, u64 seq, int type, const u8 *k, size_t nk, const u8 *v,
                       size_t nv) {
  return strataMemtableAdd((Memtable *)pCtx, seq, type, k, nk, v, nv);
}

static int dbWrite(strata *db, Writer *w, int bOwner) {
  Writer *pLast, *p;
  const strata_batch *pGroup = NULL;
  u64 seq = 0;
  u32 nOp = 0;
  int rc = STRATA_OK;

  pthread_cond_init(&w->cv, NULL);
  pthread_mutex_lock(&db->mu);
  /* A transaction holding the write lock excludes other writers. */
  if (!bOwner && db->bTxnLock) {
    u64 tEnd = strataNowMicros() + (u64)db->opts.busy_timeout_ms * 1000u;
    while (db->bTxnLock && rc == STRATA_OK) {
      struct timespec ts;
      u64 now = strataNowMicros();
      if (now >= tEnd) {
        rc = strataErr(STRATA_BUSY, "database is locked by a write transaction");
        break;
      }
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += (time_t)((tEnd - now) / 1000000u);
      ts.tv_nsec += (long)(((tEnd - now) % 1000000u) * 1000u);
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&db->txnCv, &db->mu, &ts);
    }
    if (rc) {
      pthread_mutex_unlock(&db->mu);
      pthread_cond_destroy(&w->cv);
      return rc;
    }
  }
  w->pNext = NULL;
  if (db->pWriterTail) {
    db->pWriterTail->pNext = w;
  } else {
    db->pWriterHead = w;
  }
  db->pWriterTail = w;
  while (!w->bDone && db->pWriterHead != w) pthread_cond_wait(&w->cv, &db->mu);
  if (w->bDone) {
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w->cv);
    if (w->rc) strataErr(w->rc, "%s", w->zErr);
    return w->rc;
  }

  /* This writer leads a group. */
  rc = makeRoom(db, w->bForceFlush);
  pLast = w;
  if (rc == STRATA_OK && w->pBatch) {
    size_t nMax = w->pBatch->rep.n <= (128u << 10) ? w->pBatch->rep.n + (128u << 10) : (1u << 20);
    size_t nSize = w->pBatch->rep.n;
    pGroup = w->pBatch;
    /* Gather followers with batches, up to nMax bytes. */
    for (p = w->pNext; p && p->pBatch && !p->bForceFlush; p = p->pNext) {
      if (p->bSync && !w->bSync) break; /* a sync write must not ride unsynced */
      nSize += p->pBatch->rep.n;
      if (nSize > nMax) break;
      if (pGroup == w->pBatch) {
        db->groupBatch.rep.n = 0;
        db->groupBatch.nUserBytes = 0;
        rc = strataBufAppend(&db->groupBatch.rep, w->pBatch->rep.a, w->pBatch->rep.n);
        db->groupBatch.nUserBytes = w->pBatch->nUserBytes;
        if (rc) break;
        pGroup = &db->groupBatch;
      }
      rc = strataBatchAppend(&db->groupBatch, p->pBatch);
      if (rc) break;
      pLast = p;
    }
    if (rc == STRATA_OK) {
      nOp = strataBatchCount(pGroup);
      seq = atomic_load(&db->lastSeq) + 1;
      strataBatchSetSeq((strata_batch *)pGroup, seq);
    }
  }
  pthread_mutex_unlock(&db->mu);

  if (rc == STRATA_OK && pGroup && nOp > 0) {
    rc = strataLogAppend(db->pWal, pGroup->rep.a, pGroup->rep.n);
    if (rc == STRATA_OK) {
      if (w->bSync || db->opts.sync == STRATA_SYNC_FULL) {
        rc = strataLogSync(db->pWal);
      } else if (db->opts.sync == STRATA_SYNC_NORMAL) {
        rc = strataLogFlush(db->pWal);
      }
    }
    if (rc == STRATA_OK && pGroup == w->pBatch && w->pIndex) {
      rc = strataMemtableAddAll(db->pMem, w->pIndex, STRATA_TXN_SEQ_BASE, seq);
    } else if (rc == STRATA_OK && pGroup == w->pBatch && w->aSorted) {
      const BatchOpRef *a = w->aSorted;
      u32 i;
      for (i = 0; i < nOp && rc == STRATA_OK; i++) {
        rc = strataMemtableAdd(db->pMem, seq + a[i].iOp, a[i].type, a[i].pKey, a[i].nKey,
                               a[i].pVal, a[i].nVal);
      }
    } else if (rc == STRATA_OK) {
      rc = strataBatchIterate(pGroup->rep.a, pGroup->rep.n, db->pMem, memInsertOp);
    }
  } else if (rc == STRATA_OK && w->bSync) {
    rc = strataLogSync(db->pWal);
  }

  pthread_mutex_lock(&db->mu);
  if (rc == STRATA_OK && pGroup && nOp > 0) {
    atomic_store_explicit(&db->lastSeq, seq + nOp - 1, memory_order_release);
    db->stats.wal_bytes_written += pGroup->rep.n + 16;
    db->stats.user_bytes_written += pGroup->nUserBytes;
  } else if (rc && rc != STRATA_READONLY) {
    /* The WAL or the memtable may now be out of step with what was
    ** acknowledged: refuse further writes until reopened. */
    setBgError(db, rc);
  }
  /* Wake the group, and hand the lead to the next writer. */
  for (;;) {
    Writer *pReady = db->pWriterHead;
    db->pWriterHead = pReady->pNext;
    if (!db->pWriterHead) db->pWriterTail = NULL;
    if (pReady != w) {
      pReady->rc = rc;
      if (rc) snprintf(pReady->zErr, sizeof(pReady->zErr), "%s", strataErrMsgGet());
      pReady->bDone = 1;
      pthread_cond_signal(&pReady->cv);
    }
    if (pReady == pLast) break;
  }
  if (db->pWriterHead) pthread_cond_signal(&db->pWriterHead->cv);
  pthread_cond_broadcast(&db->queueCv);
  pthread_mutex_unlock(&db->mu);
  pthread_cond_destroy(&w->cv);
  return rc;
}

int strataDbWriteBatch(strata *db, const strata_batch *b, int bOwner) {
  Writer w;
  memset(&w, 0, sizeof(w));
  w.pBatch = b;
  if (strataBatchCount(b) == 0) return STRATA_OK;
  return dbWrite(db, &w, bOwner);
}

int strataDbWriteTxn(strata *db, const strata_batch *b, Memtable *pIndex,
                     const BatchOpRef *aSorted) {
  Writer w;
  memset(&w, 0, sizeof(w));
  w.pBatch = b;
  w.pIndex = pIndex;
  w.aSorted = pIndex ? NULL : aSorted;
  assert(pIndex ? strataMemtableCount(pIndex) == strataBatchCount(b) : aSorted != NULL);
  if (strataBatchCount(b) == 0) return STRATA_OK;
  return dbWrite(db, &w, 1);
}

int strata_write(strata *db, const strata_batch *pBatch) {
  if (!db || !pBatch) return strataErr(STRATA_MISUSE, "strata_write: NULL argument");
  return strataDbWriteBatch(db, pBatch, 0);
}

/* Single writes use a per-thread batch so they allocate nothing; a thread's
** batch is freed when the thread exits. */
static pthread_key_t batchKey;
static pthread_once_t batchOnce = PTHREAD_ONCE_INIT;

static void batchKeyFree(void *p) {
  strata_batch *b = p;
  strataBufFree(&b->rep);
  strataFreeMem(b);
}

static void batchKeyInit(void) { pthread_key_create(&batchKey, batchKeyFree); }

static strata_batch *threadBatch(void) {
  strata_batch *b;
  pthread_once(&batchOnce, batchKeyInit);
  b = pthread_getspecific(batchKey);
  if (!b) {
    b = strataMallocZero(sizeof(*b));
    if (!b) return NULL;
    if (pthread_setspecific(batchKey, b) != 0) {
      strataFreeMem(b);
      return NULL;
    }
  }
  if (!b->rep.a && strataBatchInit(b) != STRATA_OK) return NULL;
  strata_batch_clear(b);
  return b;
}

int strata_put(strata *db, const void *pKey, size_t nKey, const void *pVal, size_t nVal) {
  strata_batch *b;
  int rc;
  if (!db) return strataErr(STRATA_MISUSE, "strata_put: NULL database");
  b = threadBatch();
  if (!b) return strataErr(STRATA_NOMEM, "out of memory");
  rc = strata_batch_put(b, pKey, nKey, pVal, nVal);
  if (rc == STRATA_OK) rc = strataDbWriteBatch(db, b, 0);
  if (b->rep.nAlloc > (1u << 20)) strataBufFree(&b->rep); /* keep no huge buffer */
  return rc;
}

int strata_delete(strata *db, const void *pKey, size_t nKey) {
  strata_batch *b;
  int rc;
  if (!db) return strataErr(STRATA_MISUSE, "strata_delete: NULL database");
  b = threadBatch();
  if (!b) return strataErr(STRATA_NOMEM, "out of memory");
  rc = strata_batch_delete(b, pKey, nKey);
  if (rc == STRATA_OK) rc = strataDbWriteBatch(db, b, 0);
  return rc;
}

/* TRANSACTION WRITE LOCK */

int strataDbWriteLock(strata *db, u64 seqSnapshot) {
  int rc = STRATA_OK;
  u64 tEnd = strataNowMicros() + (u64)db->opts.busy_timeout_ms * 1000u;
  pthread_mutex_lock(&db->mu);
  while (db->bTxnLock || db->pWriterHead) {
    struct timespec ts;
    u64 now = strataNowMicros();
    if (atomic_load(&db->lastSeq) > seqSnapshot) break; /* stale: no point waiting */
    if (now >= tEnd) {
      rc = strataErr(STRATA_BUSY, "database is locked by another writer");
      break;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    {
      u64 wait = tEnd - now;
      if (wait > 10000) wait = 10000; /* re-check the queue every 10 ms */
      ts.tv_nsec += (long)(wait * 1000u);
      while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
    }
    pthread_cond_timedwait(db->bTxnLock ? &db->txnCv : &db->queueCv, &db->mu, &ts);
  }
  if (rc == STRATA_OK && atomic_load(&db->lastSeq) > seqSnapshot) {
    rc = strataErr(STRATA_BUSY, "database changed after this transaction's snapshot was taken");
  }
  if (rc == STRATA_OK && db->bgError) rc = bgErrorReport(db);
  if (rc == STRATA_OK) db->bTxnLock = 1;
  pthread_mutex_unlock(&db->mu);
  return rc;
}

void strataDbWriteUnlock(strata *db) {
  pthread_mutex_lock(&db->mu);
  db->bTxnLock = 0;
  pthread_cond_broadcast(&db->txnCv);
  pthread_mutex_unlock(&db->mu);
}

int strataDbBusyTimeout(strata *db) { return db->opts.busy_timeout_ms; }
u64 strataDbLastSeq(strata *db) { return atomic_load(&db->lastSeq); }

/* READS */

/* References a reader holds: the memtables and the version. */
typedef struct ReadState {
  strata *db;
  Memtable *pMem, *pImm;
  Version *pVersion;
} ReadState;

static void readStateGet(strata *db, ReadState *s) {
  pthread_mutex_lock(&db->mu);
  s->db = db;
  s->pMem = db->pMem;
  strataMemtableRef(s->pMem);
  s->pImm = db->pImm;
  if (s->pImm) strataMemtableRef(s->pImm);
  s->pVersion = db->vs->pCurrent;
  strataVersionRef(s->pVersion);
  pthread_mutex_unlock(&db->mu);
}

static void readStateRelease(ReadState *s) {
  strataMemtableUnref(s->pMem);
  if (s->pImm) strataMemtableUnref(s->pImm);
  strataVersionUnref(s->pVersion);
}

int strataValueSet(strata_value *pVal, const void *p, size_t n) {
  if (n > pVal->nAlloc || !pVal->p) {
    size_t nNew = n < 64 ? 64 : n + n / 4;
    void *pNew = strataRealloc(pVal->p, nNew);
    if (!pNew) return strataErr(STRATA_NOMEM, "out of memory");
    pVal->p = pNew;
    pVal->nAlloc = nNew;
  }
  if (n) memcpy(pVal->p, p, n);
  pVal->n = n;
  return STRATA_OK;
}

void strata_value_free(strata_value *pVal) {
  if (!pVal) return;
  strataFreeMem(pVal->p);
  memset(pVal, 0, sizeof(*pVal));
}

/* Look up one table, file iFile of view v's version (v may be NULL), for
** user key pKey whose filter hash is `hash`. *pbDone = 1 if it held an
** entry for the key. */
static int getFromTable(strata *db, ReadView *v, int iFile, FileMeta *f, const u8 *pKey,
                        size_t nKey, u32 hash, u64 seq, strata_value *pVal, StrataReadStats *pRs,
                        int *pbDone) {
  CacheHandle *h = NULL;
  int rc = STRATA_OK, bFound = 0, type = 0, bPinned = 0;
  StrataBuf buf;
  *pbDone = 0;
  if (v && iFile < v->nPin) {
    h = atomic_load_explicit(&v->aPin[iFile], memory_order_acquire);
    if (!h) {
      CacheHandle *pNone = NULL;
      rc = tableGet(db, f, &h);
      if (rc) return rc;
      /* Another lookup may have pinned it meanwhile: keep one pin. */
      if (!atomic_compare_exchange_strong_explicit(&v->aPin[iFile], &pNone, h,
                                                   memory_order_acq_rel, memory_order_acquire)) {
        strataCacheRelease(db->pTableCache, h);
        h = pNone;
      }
    }
    bPinned = 1;
  } else {
    rc = tableGet(db, f, &h);
    if (rc) return rc;
  }
  /* Most tables a lookup meets answer from their filter alone: that check
  ** comes first, so they never pay for the full Get (which checks again,
  ** uncounted). The value is copied straight into the caller's buffer. */
  if (!strataSstFilterCheck((SstReader *)strataCacheValue(h), hash, pRs)) {
    if (!bPinned) strataCacheRelease(db->pTableCache, h);
    return STRATA_OK;
  }
  buf.a = pVal->p;
  buf.n = 0;
  buf.nAlloc = pVal->nAlloc;
  rc = strataSstGetHashed((SstReader *)strataCacheValue(h), pKey, nKey, hash, seq, NULL, &bFound,
                          &type, &buf);
  pVal->p = buf.a;
  pVal->nAlloc = buf.nAlloc;
  if (!bPinned) strataCacheRelease(db->pTableCache, h);
  if (rc) return rc;
  if (bFound) {
    *pbDone = 1;
    if (type == STRATA_TYPE_DELETE) return STRATA_NOTFOUND;
    pVal->n = buf.n;
  }
  return STRATA_OK;
}

static inline int keyInFile(const FileMeta *f, const u8 *pKey, size_t nKey) {
  return strataUkeyCompare(pKey, nKey, f->smallest.a, f->smallest.n - 8) >= 0 &&
         strataUkeyCompare(pKey, nKey, f->largest.a, f->largest.n - 8) <= 0;
}

/* Prefetch the filter line of file iFile of view v for the key with filter
** hash `hash`, if the view has that table pinned already (v may be NULL). */
static inline void viewPrefetch(ReadView *v, int iFile, u32 hash) {
  if (v && iFile < v->nPin) {
    CacheHandle *h = atomic_load_explicit(&v->aPin[iFile], memory_order_acquire);
    if (h) strataSstPrefetch((const SstReader *)strataCacheValue(h), hash);
  }
}

/* The tables of a version that may hold a key, in the order a lookup
** probes them: L0 newest first, then one per level. */
typedef struct TableCand {
  int level; /* STRATA_MAX_LEVELS once there are no more */
  int i;     /* next L0 file to consider (counting down) */
  /* With a view's FILE BOUNDS: */
  const u64 *aBound; /* NULL: compare the keys */
  const int *aBase;  /* the view's slot of each level's first file */
  u64 t;             /* the key's window */
} TableCand;

/* Start c for user key pKey/nKey over version v (pView: NULL, or a view of
** v, whose bounds are used). Returns 0 if no file can hold the key. */
static int tableCandInit(TableCand *c, const Version *v, const ReadView *pView, const u8 *pKey,
                         size_t nKey) {
  c->level = 0;
  c->i = v->nFile[0] - 1;
  c->aBound = NULL;
  c->aBase = NULL;
  c->t = 0;
  if (pView && pView->aBound) {
    size_t n = pView->nBoundCommon;
    int cmp = n ? memcmp(pKey, pView->pBoundCommon, nKey < n ? nKey : n) : 0;
    /* Every file key starts with the common prefix: a key that does not
    ** is below or above them all. */
    if (cmp != 0 || nKey < n) return 0;
    c->aBound = pView->aBound;
    c->aBase = pView->aBase;
    c->t = strataKeyWindow(pKey, nKey, n);
  }
  return 1;
}

/* Order of the key against bound iBound (2 * slot, + 1 for the largest) of
** file f: by the windows, by the keys if they tie. */
static inline int candCompare(const TableCand *c, int iBound, const StrataBuf *pBound,
                              const u8 *pKey, size_t nKey) {
  u64 w = c->aBound[iBound];
  if (c->t != w) return c->t < w ? -1 : 1;
  return strataUkeyCompare(pKey, nKey, pBound->a, pBound->n - 8);
}

/* 1 if user key pKey lies within file f (slot iSlot when c has bounds). */
static inline int candInFile(const TableCand *c, int iSlot, const FileMeta *f, const u8 *pKey,
                             size_t nKey) {
  if (c->aBound) {
    return candCompare(c, 2 * iSlot, &f->smallest, pKey, nKey) >= 0 &&
           candCompare(c, 2 * iSlot + 1, &f->largest, pKey, nKey) <= 0;
  }
  return keyInFile(f, pKey, nKey);
}

/* The next table of version v that may hold user key pKey: sets *pLevel
** and *pIdx (its index in its level) and returns 1, or returns 0. */
static inline __attribute__((always_inline)) int tableCandNext(const Version *v, TableCand *c,
                                                               const u8 *pKey, size_t nKey,
                                                               int *pLevel, int *pIdx) {
  if (c->level == 0) {
    while (c->i >= 0) {
      int i = c->i--;
      if (candInFile(c, i, v->aFile[0][i], pKey, nKey)) { /* L0 slots start at 0 */
        *pLevel = 0;
        *pIdx = i;
        return 1;
      }
    }
    c->level = 1;
  }
  for (; c->level < STRATA_MAX_LEVELS; c->level++) {
    int lo = 0, hi = v->nFile[c->level];
    int iBase = c->aBound ? c->aBase[c->level] : 0;
    while (lo < hi) { /* first file whose largest user key >= key */
      int mid = (lo + hi) / 2;
      const FileMeta *f = v->aFile[c->level][mid];
      int cmp = c->aBound ? candCompare(c, 2 * (iBase + mid) + 1, &f->largest, pKey, nKey)
                          : strataUkeyCompare(pKey, nKey, f->largest.a, f->largest.n - 8);
      if (cmp > 0) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo < v->nFile[c->level] &&
        candInFile(c, iBase + lo, v->aFile[c->level][lo], pKey, nKey)) {
      *pLevel = c->level++;
      *pIdx = lo;
      return 1;
    }
  }
  return 0;
}

#define GET_LOOKAHEAD 2 /* candidate tables whose filter lines are in flight */

/* Look up version v (pView: NULL, or a view holding v, whose pinned tables
** are used).
**
** A lookup that misses the memtables usually tests two or three table
** filters, each a cold line. So the filter lines of the next
** GET_LOOKAHEAD candidate tables (those pinned already) are prefetched
** before the first is probed, and one more each time one is: their loads
** overlap instead of queueing one behind the other, while a key found early
** wastes at most that many candidate searches. The key is hashed for the
** filters once, not once per table. */
static int getFromVersion(strata *db, Version *v, ReadView *pView, const u8 *pKey, size_t nKey,
                          u64 seq, strata_value *pVal) {
  StrataReadStats rs = {0, 0};
  int rc = STRATA_NOTFOUND, bDone = 0, nQ = 0, iQ = 0;
  int aLevel[GET_LOOKAHEAD], aIdx[GET_LOOKAHEAD]; /* ring of candidates found, not probed */
  TableCand cand;
  u32 hash;
  if (!tableCandInit(&cand, v, pView, pKey, nKey)) return STRATA_NOTFOUND;
  hash = strataBloomHash(pKey, nKey);
  while (!bDone && (rc == STRATA_OK || rc == STRATA_NOTFOUND)) {
    int level, idx, iSlot;
    while (nQ - iQ < GET_LOOKAHEAD &&
           tableCandNext(v, &cand, pKey, nKey, &aLevel[nQ % GET_LOOKAHEAD],
                         &aIdx[nQ % GET_LOOKAHEAD])) {
      level = aLevel[nQ % GET_LOOKAHEAD];
      if (pView) viewPrefetch(pView, pView->aBase[level] + aIdx[nQ % GET_LOOKAHEAD], hash);
      nQ++;
    }
    if (iQ == nQ) break;
    level = aLevel[iQ % GET_LOOKAHEAD];
    idx = aIdx[iQ % GET_LOOKAHEAD];
    iQ++;
    iSlot = pView ? pView->aBase[level] + idx : 0;
    rc = getFromTable(db, pView, iSlot, v->aFile[level][idx], pKey, nKey, hash, seq, pVal, &rs,
                      &bDone);
    if (!bDone && rc == STRATA_OK) rc = STRATA_NOTFOUND;
  }
  if (rs.nBloomCheck) {
    atomic_fetch_add_explicit(&db->nBloomCheck, rs.nBloomCheck, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->nBloomUseful, rs.nBloomUseful, memory_order_relaxed);
  }
  if (!bDone && rc == STRATA_OK) rc = STRATA_NOTFOUND;
  return rc;
}

static int memGet(Memtable *m, const u8 *pKey, size_t nKey, u64 seq, strata_value *pVal,
                  int *pRc) {
  int type;
  const u8 *pV;
  size_t nV;
  if (!strataMemtableGet(m, pKey, nKey, seq, &type, &pV, &nV)) return 0;
  *pRc = (type == STRATA_TYPE_DELETE) ? STRATA_NOTFOUND : strataValueSet(pVal, pV, nV);
  return 1;
}

/* Without a view: references taken one by one (the fallback). */
static int getNoView(strata *db, const u8 *pKey, size_t nKey, u64 seq, strata_value *pVal) {
  ReadState s;
  int rc;
  readStateGet(db, &s);
  if (!memGet(s.pMem, pKey, nKey, seq, pVal, &rc) &&
      !(s.pImm && memGet(s.pImm, pKey, nKey, seq, pVal, &rc))) {
    rc = getFromVersion(db, s.pVersion, NULL, pKey, nKey, seq, pVal);
  }
  readStateRelease(&s);
  return rc;
}

int strataDbGetInternal(strata *db, ReadView **ppView, const u8 *pKey, size_t nKey, u64 seq,
                        strata_value *pVal) {
  ReadView *v = ppView ? *ppView : NULL;
  int rc;
  /* acquire: pairs with the release in dbViewInstall, so the view's fields
  ** are seen initialized. The caller's seq was read before this load, so a
  ** view that is still current holds every write up to seq. */
  if (!v || v != atomic_load_explicit(&db->pView, memory_order_acquire)) {
    ReadView *pNew = dbViewGet(db);
    if (ppView) {
      strataDbViewUnref(v);
      *ppView = pNew;
    }
    v = pNew;
    if (!v) return getNoView(db, pKey, nKey, seq, pVal);
  }
  if (!memGet(v->pMem, pKey, nKey, seq, pVal, &rc) &&
      !(v->pImm && memGet(v->pImm, pKey, nKey, seq, pVal, &rc))) {
    rc = getFromVersion(db, v->pVersion, v, pKey, nKey, seq, pVal);
  }
  if (!ppView) strataDbViewUnref(v);
  return rc;
}

int strata_get(strata *db, const strata_snapshot *pSnap, const void *pKey, size_t nKey,
               strata_value *pVal) {
  u64 seq;
  if (!db || !pVal || (!pKey && nKey)) return strataErr(STRATA_MISUSE, "strata_get: NULL argument");
  if (nKey > STRATA_MAX_KEY) return STRATA_NOTFOUND;
  seq = pSnap ? pSnap->seq : atomic_load_explicit(&db->lastSeq, memory_order_acquire);
  return strataDbGetInternal(db, NULL, pKey, nKey, seq, pVal);
}

/* ITERATORS */

typedef struct IterState {
  ReadState s;
  TableIterCtx ctx;
} IterState;

void strataDbReleaseIterState(void *p) {
  IterState *st = p;
  if (!st) return;
  readStateRelease(&st->s);
  pthread_mutex_lock(&st->s.db->mu);
  st->s.db->nIterators--;
  pthread_mutex_unlock(&st->s.db->mu);
  strataFreeMem(st);
}

int strataDbInternalIter(strata *db, int bFillCache, StrataIter **ppIter, void **ppRelease) {
  IterState *st = strataMallocZero(sizeof(*st));
  StrataIter *aChild[2 + 64 + STRATA_MAX_LEVELS];
  StrataIter **apChild = aChild;
  int nChild = 0, i, rc = STRATA_OK, nMax;
  Version *v;
  *ppIter = NULL;
  *ppRelease = NULL;
  if (!st) return strataErr(STRATA_NOMEM, "out of memory");
  readStateGet(db, &st->s);
  pthread_mutex_lock(&db->mu);
  db->nIterators++;
  pthread_mutex_unlock(&db->mu);
  st->ctx.db = db;
  st->ctx.bFillCache = bFillCache;
  v = st->s.pVersion;
  nMax = 2 + v->nFile[0] + STRATA_MAX_LEVELS;
  if (nMax > (int)(sizeof(aChild) / sizeof(aChild[0]))) {
    apChild = strataMalloc(sizeof(StrataIter *) * (size_t)nMax);
    if (!apChild) {
      strataDbReleaseIterState(st);
      return strataErr(STRATA_NOMEM, "out of memory");
    }
  }
  rc = strataMemtableIterNew(st->s.pMem, &apChild[nChild]);
  if (rc == STRATA_OK) nChild++;
  if (rc == STRATA_OK && st->s.pImm) {
    rc = strataMemtableIterNew(st->s.pImm, &apChild[nChild]);
    if (rc == STRATA_OK) nChild++;
  }
  for (i = v->nFile[0] - 1; rc == STRATA_OK && i >= 0; i--) {
    rc = strataDbTableIter(db, v->aFile[0][i], bFillCache, &apChild[nChild]);
    if (rc == STRATA_OK) nChild++;
  }
  for (i = 1; rc == STRATA_OK && i < STRATA_MAX_LEVELS; i++) {
    if (v->nFile[i] == 0) continue;
    rc = strataLevelIterNew(v->aFile[i], v->nFile[i], openTableIterCb, &st->ctx, &apChild[nChild]);
    if (rc == STRATA_OK) nChild++;
  }
  if (rc == STRATA_OK) {
    rc = strataMergeIterNew(apChild, nChild, ppIter);
  } else {
    for (i = 0; i < nChild; i++) strataIterClose(apChild[i]);
  }
  if (apChild != aChild) strataFreeMem(apChild);
  if (rc) {
    strataDbReleaseIterState(st);
    return rc;
  }
  *ppRelease = st;
  return STRATA_OK;
}

void strataDbNoteSeek(strata *db, void *pState, const u8 *k, size_t n) {
  const Version *v = ((IterState *)pState)->s.pVersion;
  TableCand c;
  int aLevel[2], aIdx[2];
  if (tableCandInit(&c, v, NULL, k, n) && tableCandNext(v, &c, k, n, &aLevel[0], &aIdx[0]) &&
      tableCandNext(v, &c, k, n, &aLevel[1], &aIdx[1])) {
    strataCompactNoteSeek(db, v, v->aFile[aLevel[0]][aIdx[0]], aLevel[0]);
  }
}

/* For strata_iter_refresh. The read point is taken before the sources are
** compared, as strata_iter_new does, so every write at or below it is in
** them. Equal pointers mean the same objects: the state holds references to
** them, so none of them can have been freed and its address reused. */
int strataDbIterRefresh(strata *db, int bFillCache, void **ppState, StrataIter **ppIter,
                        const strata_snapshot *pSnap, u64 *pSeq) {
  IterState *st = *ppState;
  int bCurrent = 0;
  *pSeq = pSnap ? pSnap->seq : atomic_load_explicit(&db->lastSeq, memory_order_acquire);
  if (st && *ppIter && (*ppIter)->rc == STRATA_OK) {
    pthread_mutex_lock(&db->mu);
    bCurrent = st->s.pMem == db->pMem && st->s.pImm == db->pImm &&
               st->s.pVersion == db->vs->pCurrent;
    pthread_mutex_unlock(&db->mu);
  }
  if (bCurrent) return STRATA_OK;
  /* Let go of the old sources first: they may be a flushed memtable and
  ** deleted files. */
  strataIterClose(*ppIter);
  *ppIter = NULL;
  strataDbReleaseIterState(st);
  *ppState = NULL;
  return strataDbInternalIter(db, bFillCache, ppIter, ppState);
}

int strata_iter_new(strata *db, const strata_read_options *ro, strata_iter **ppIter) {
  StrataIter *pInternal = NULL;
  void *pState = NULL;
  u64 seq;
  int rc;
  if (!ppIter) return strataErr(STRATA_MISUSE, "strata_iter_new: NULL argument");
  *ppIter = NULL;
  if (!db) return strataErr(STRATA_MISUSE, "strata_iter_new: NULL database");
  seq = (ro && ro->snapshot) ? ro->snapshot->seq : atomic_load(&db->lastSeq);
  rc = strataDbInternalIter(db, ro ? ro->fill_cache : 1, &pInternal, &pState);
  if (rc) return rc;
  rc = strataDbIterNew(pInternal, seq, ro, strataDbReleaseIterState, pState, ppIter);
  if (rc == STRATA_OK) strataDbIterAllowRefresh(*ppIter, db, ro ? ro->fill_cache : 1);
  return rc;
}

/* SNAPSHOTS */

/* SQL statements take a snapshot each: the last one released is kept
** (db->pSnapSpare) for the next, so that they allocate nothing. */
const strata_snapshot *strata_snapshot_new(strata *db) {
  strata_snapshot *s;
  if (!db) return NULL;
  pthread_mutex_lock(&db->mu);
  s = db->pSnapSpare;
  db->pSnapSpare = NULL;
  if (!s) {
    pthread_mutex_unlock(&db->mu);
    s = strataMallocZero(sizeof(*s));
    if (!s) {
      strataErr(STRATA_NOMEM, "out of memory");
      return NULL;
    }
    pthread_mutex_lock(&db->mu);
  }
  s->seq = atomic_load(&db->lastSeq);
  s->pNext = &db->snapList;
  s->pPrev = db->snapList.pPrev;
  s->pPrev->pNext = s;
  db->snapList.pPrev = s;
  pthread_mutex_unlock(&db->mu);
  return s;
}

void strata_snapshot_release(strata *db, const strata_snapshot *pSnap) {
  strata_snapshot *s = (strata_snapshot *)pSnap;
  if (!db || !s) return;
  pthread_mutex_lock(&db->mu);
  s->pPrev->pNext = s->pNext;
  s->pNext->pPrev = s->pPrev;
  if (!db->pSnapSpare) {
    db->pSnapSpare = s;
    s = NULL;
  }
  pthread_mutex_unlock(&db->mu);
  strataFreeMem(s);
}

uint64_t strata_snapshot_sequence(const strata_snapshot *pSnap) { return pSnap ? pSnap->seq : 0; }

/* Oldest sequence a reader may still need (db->mu held). */
u64 strataDbOldestSnapshot(strata *db) {
  if (db->snapList.pNext != &db->snapList) return db->snapList.pNext->seq;
  return atomic_load(&db->lastSeq);
}

/* MAINTENANCE */

int strata_flush(strata *db) {
  Writer w;
  int rc;
  if (!db) return strataErr(STRATA_MISUSE, "strata_flush: NULL database");
  memset(&w, 0, sizeof(w));
  w.bForceFlush = 1;
  rc = dbWrite(db, &w, 0);
  if (rc) return rc;
  pthread_mutex_lock(&db->mu);
  while (db->pImm && db->bgError == STRATA_OK) pthread_cond_wait(&db->doneCv, &db->mu);
  rc = db->bgError ? bgErrorReport(db) : STRATA_OK;
  pthread_mutex_unlock(&db->mu);
  return rc;
}

int strata_sync(strata *db) {
  Writer w;
  if (!db) return strataErr(STRATA_MISUSE, "strata_sync: NULL database");
  memset(&w, 0, sizeof(w));
  w.bSync = 1;
  return dbWrite(db, &w, 0);
}

int strata_wait_idle(strata *db) {
  int rc;
  if (!db) return strataErr(STRATA_MISUSE, "strata_wait_idle: NULL database");
  pthread_mutex_lock(&db->mu);
  while ((db->bgError == STRATA_OK &&
          (db->pImm || db->nCompacting > 0 || db->bFlushing || strataCompactPick(db))) ||
         db->nDeleting > 0 || doomedCount(db) > 0) {
    strataDbScheduleWork(db);
    pthread_cond_wait(&db->doneCv, &db->mu);
  }
  rc = db->bgError ? bgErrorReport(db) : STRATA_OK;
  pthread_mutex_unlock(&db->mu);
  return rc;
}

int strata_get_stats(strata *db, strata_stats *p) {
  int i;
  Version *v;
  if (!db || !p) return strataErr(STRATA_MISUSE, "strata_get_stats: NULL argument");
  memset(p, 0, sizeof(*p));
  pthread_mutex_lock(&db->mu);
  p->last_sequence = atomic_load(&db->lastSeq);
  p->memtable_bytes = strataMemtableMemoryUsage(db->pMem) +
                      (db->pImm ? strataMemtableMemoryUsage(db->pImm) : 0);
  v = db->vs->pCurrent;
  for (i = 0; i < STRATA_MAX_LEVELS; i++) {
    p->level_files[i] = v->nFile[i];
    p->level_bytes[i] = strataVersionLevelBytes(v, i);
    p->live_bytes += p->level_bytes[i];
  }
  p->flushes = db->stats.flushes;
  p->compactions = db->stats.compactions;
  p->seek_compactions = db->stats.seek_compactions;
  p->compaction_bytes_read = db->stats.compaction_bytes_read;
  p->compaction_bytes_written = db->stats.compaction_bytes_written;
  p->flush_bytes_written = db->stats.flush_bytes_written;
  p->stall_micros = db->stats.stall_micros;
  p->stall_count = db->stats.stall_count;
  p->user_bytes_written = db->stats.user_bytes_written;
  p->wal_bytes_written = db->stats.wal_bytes_written;
  for (i = 0; i < STRATA_MAX_LEVELS; i++) {
    p->level_written_bytes[i] = db->stats.level_written_bytes[i];
    p->level_read_bytes[i] = db->stats.level_read_bytes[i];
  }
  pthread_mutex_unlock(&db->mu);
  p->disk_bytes_written = atomic_load(&db->io.nWritten);
  p->bloom_checks = atomic_load(&db->nBloomCheck);
  p->bloom_useful = atomic_load(&db->nBloomUseful);
  strataCacheCounters(db->pBlockCache, &p->cache_hits, &p->cache_misses);
  /* Blocks and reservations: what the cache's budget is spent on. */
  p->cache_bytes = strataCacheUsage(db->pBlockCache) + strataCacheReserved(db->pBlockCache);
  p->open_files = strataCacheCount(db->pTableCache);
  return STRATA_OK;
}

/* OPEN AND RECOVERY */

static int recoverReplayOp(void *pCtx, u64 seq, int type, const u8 *k, size_t nk, const u8 *v,
                           size_t nv) {
  strata *db = pCtx;
  if (seq > atomic_load(&db->lastSeq)) atomic_store(&db->lastSeq, seq);
  return strataMemtableAdd(db->pMem, seq, type, k, nk, v, nv);
}

/* Write the recovery memtable to L0 and install it in the in-memory version;
** the new manifest written at the end of open records it (db->mu held). */
static int recoverFlush(strata *db) {
  FileMeta *f = NULL;
  int rc = writeLevel0(db, db->pMem, &f);
  if (rc == STRATA_OK && f) {
    Version *vNew = NULL;
    VersionEdit one;
    /* Install in the in-memory version now, so later L0 files sort after it;
    ** the manifest records it with the rest in e. */
    strataEditInit(&one);
    rc = strataEditAddFile(&one, 0, f);
    if (rc == STRATA_OK) rc = strataVersionApply(db->vs->pCurrent, &one, &vNew);
    if (rc == STRATA_OK) {
      strataVersionUnref(db->vs->pCurrent);
      db->vs->pCurrent = vNew;
    }
    strataEditClear(&one);
  }
  strataFileMetaUnref(f);
  if (rc == STRATA_OK) {
    strataMemtableUnref(db->pMem);
    db->pMem = NULL;
    rc = dbMemtableNew(db, &db->pMem);
  }
  return rc;
}

static int cmpU64(const void *a, const void *b) {
  u64 x = *(const u64 *)a, y = *(const u64 *)b;
  return x < y ? -1 : (x > y ? 1 : 0);
}

/* Replay the WALs at or after the manifest's log number, in order. */
static int recoverWals(strata *db, char **azName, int nName) {
  u64 *aNum = strataMalloc(sizeof(u64) * (size_t)(nName ? nName : 1));
  int nWal = 0, i, rc = STRATA_OK;
  if (!aNum) return strataErr(STRATA_NOMEM, "out of memory");
  for (i = 0; i < nName; i++) {
    u64 num;
    if (strataParseFileName(azName[i], &num) == STRATA_FILE_WAL && num >= db->vs->logNumber) {
      aNum[nWal++] = num;
    }
  }
  qsort(aNum, (size_t)nWal, sizeof(u64), cmpU64);
  for (i = 0; i < nWal && rc == STRATA_OK; i++) {
    char *zPath = strataFileName(db->zDir, STRATA_FILE_WAL, aNum[i]);
    LogReader *r = NULL;
    if (!zPath) {
      rc = strataErr(STRATA_NOMEM, "out of memory");
      break;
    }
    rc = strataLogReaderOpen(db->env, zPath, STRATA_LOG_WAL, &r);
    while (rc == STRATA_OK) {
      const u8 *p;
      size_t n;
      rc = strataLogRead(r, &p, &n);
      if (rc == STRATA_NOTFOUND) {
        rc = STRATA_OK;
        break;
      }
      if (rc) break;
      if (n < STRATA_BATCH_HEADER) {
        rc = strataErr(STRATA_CORRUPT, "%s: WAL record too short", zPath);
        break;
      }
      rc = strataBatchIterate(p, n, db, recoverReplayOp);
      if (rc == STRATA_CORRUPT) {
        rc = strataErr(STRATA_CORRUPT, "%s: malformed batch in WAL", zPath);
      }
      if (rc == STRATA_OK && strataMemtableMemoryUsage(db->pMem) >= db->opts.memtable_size) {
        rc = recoverFlush(db);
      }
    }
    strataLogReaderClose(r);
    strataFreeMem(zPath);
    if (aNum[i] >= db->vs->nextFile) db->vs->nextFile = aNum[i] + 1;
  }
  if (rc == STRATA_OK && strataMemtableCount(db->pMem) > 0) rc = recoverFlush(db);
  strataFreeMem(aNum);
  return rc;
}

/* Delete every file of ours that the current version and the live WAL do
** not need: leftovers of a crash during a flush or a compaction. */
static void deleteObsoleteFiles(strata *db, char **azName, int nName) {
  int i, level, j;
  for (i = 0; i < nName; i++) {
    u64 num;
    int type = strataParseFileName(azName[i], &num), bKeep = 1;
    switch (type) {
      case STRATA_FILE_WAL: bKeep = (num == db->walNumber); break;
      case STRATA_FILE_MANIFEST: bKeep = (num == db->vs->manifestNumber); break;
      case STRATA_FILE_TEMP: bKeep = 0; break;
      case STRATA_FILE_SST:
        bKeep = 0;
        for (level = 0; level < STRATA_MAX_LEVELS && !bKeep; level++) {
          for (j = 0; j < db->vs->pCurrent->nFile[level]; j++) {
            if (db->vs->pCurrent->aFile[level][j]->number == num) bKeep = 1;
          }
        }
        break;
      default: break;
    }
    if (!bKeep) {
      char *zPath = strataMprintf("%s/%s", db->zDir, azName[i]);
      if (zPath) db->env->xDelete(db->env, zPath);
      strataFreeMem(zPath);
    }
  }
}

static void dbFree(strata *db) {
  if (!db) return;
  strataDbViewUnref(atomic_load(&db->pView)); /* before the table cache goes */
  strataLogWriterClose(db->pWal);
  strataMemtableUnref(db->pMem);
  strataMemtableUnref(db->pImm);
  strataCompactSeekClear(db);
  strataVersionSetClose(db->vs);
  strataCacheFree(db->pTableCache);
  strataCacheFree(db->pBlockCache);
  strataFileClose(db->pLock);
  strataBufFree(&db->groupBatch.rep);
  pthread_mutex_destroy(&db->mu);
  pthread_mutex_destroy(&db->muDoomed);
  strataFreeMem(db->aDoomed); /* empty: close deleted them */
  pthread_cond_destroy(&db->bgCv);
  pthread_cond_destroy(&db->doneCv);
  pthread_cond_destroy(&db->txnCv);
  pthread_cond_destroy(&db->queueCv);
  strataFreeMem(db->pSnapSpare);
  strataFreeMem(db->zDir);
  strataFreeMem(db);
}

static void adoptVersionFiles(strata *db) {
  int level, i;
  for (level = 0; level < STRATA_MAX_LEVELS; level++) {
    for (i = 0; i < db->vs->pCurrent->nFile[level]; i++) {
      strataDbAdoptFile(db, db->vs->pCurrent->aFile[level][i]);
    }
  }
}

int strata_open(const char *zPath, const strata_options *pOpts, strata **ppDb) {
  strata *db = NULL;
  strata_options opts;
  char **azName = NULL;
  int nName = 0, bExists = 0, rc, i;
  char *zLock = NULL;
  VersionEdit e;

  if (!ppDb) return strataErr(STRATA_MISUSE, "strata_open: NULL output pointer");
  *ppDb = NULL;
  if (!zPath || !*zPath) return strataErr(STRATA_MISUSE, "strata_open: empty path");
  if (pOpts) {
    opts = *pOpts;
  } else {
    strata_options_init(&opts);
  }
  rc = checkOptions(&opts);
  if (rc) return rc;
  strataEditInit(&e);

  db = strataMallocZero(sizeof(*db));
  if (!db || !(db->zDir = strataStrdup(zPath))) {
    strataFreeMem(db);
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  db->opts = opts;
  db->env = opts.env ? opts.env : strataEnvDefault();
  pthread_mutex_init(&db->mu, NULL);
  pthread_mutex_init(&db->muDoomed, NULL);
  db->bDeleteNow = 1; /* until the background threads start */
  pthread_cond_init(&db->bgCv, NULL);
  pthread_cond_init(&db->doneCv, NULL);
  pthread_cond_init(&db->txnCv, NULL);
  pthread_cond_init(&db->queueCv, NULL);
  db->snapList.pNext = db->snapList.pPrev = &db->snapList;
  db->sstOpts.nBlockSize = opts.block_size;
  db->sstOpts.compression = opts.compression;
  db->sstOpts.compressionLevel = opts.compression_level;
  db->sstOpts.bloomBitsPerKey = opts.bloom_bits_per_key;
  db->sstOpts.restartInterval = 16;
  db->sstOpts.bSync = 1; /* tables are synced before a manifest names them */
  strataBatchInit(&db->groupBatch);

  if (!db->env->xExists(db->env, zPath)) {
    if (!opts.create_if_missing) {
      rc = strataErr(STRATA_CANTOPEN, "%s: no such database (create_if_missing is off)", zPath);
      goto open_failed;
    }
    rc = db->env->xMkdir(db->env, zPath);
    if (rc) goto open_failed;
  }
  zLock = strataFileName(zPath, STRATA_FILE_LOCK, 0);
  if (!zLock) {
    rc = strataErr(STRATA_NOMEM, "out of memory");
    goto open_failed;
  }
  rc = db->env->xLock(db->env, zLock, &db->pLock);
  strataFreeMem(zLock);
  if (rc) goto open_failed;

  rc = strataCacheNew(opts.cache_size, &db->pBlockCache);
  if (rc == STRATA_OK) rc = strataCacheNew((size_t)opts.max_open_files, &db->pTableCache);
  if (rc) goto open_failed;
  db->budget.pCache = db->pBlockCache;
  db->budget.nReadaheadMax = dbReadaheadBudget(opts.cache_size);
  atomic_init(&db->budget.nReadahead, 0);
  db->sstOpts.pBudget = &db->budget;

  rc = strataVersionSetOpen(db->env, zPath, &db->io, 1, &db->vs, &bExists);
  if (rc) goto open_failed;
  if (bExists && opts.error_if_exists) {
    rc = strataErr(STRATA_ERROR, "%s: database exists (error_if_exists is on)", zPath);
    goto open_failed;
  }
  if (!bExists) {
    /* A directory with files but no CURRENT is not ours to take over. */
    rc = db->env->xListDir(db->env, zPath, &azName, &nName);
    if (rc) goto open_failed;
    for (i = 0; i < nName; i++) {
      u64 num;
      int type = strataParseFileName(azName[i], &num);
      /* LOCK, temporaries and a manifest are what a creation cut short by a
      ** crash leaves (CURRENT is written before any WAL or table). */
      if (type != STRATA_FILE_LOCK && type != STRATA_FILE_TEMP && type != STRATA_FILE_MANIFEST) {
        rc = strataErr(STRATA_CANTOPEN, "%s: not a strata database (found %s but no CURRENT)",
                       zPath, azName[i]);
        goto open_failed;
      }
    }
    if (!opts.create_if_missing) {
      rc = strataErr(STRATA_CANTOPEN, "%s: no such database (create_if_missing is off)", zPath);
      goto open_failed;
    }
    strataFreeList(azName, nName);
    azName = NULL;
    nName = 0;
    rc = strataVersionSetNewManifest(db->vs, NULL);
    if (rc) goto open_failed;
  }
  atomic_store(&db->lastSeq, db->vs->lastSeq);
  adoptVersionFiles(db);

  rc = dbMemtableNew(db, &db->pMem);
  if (rc) goto open_failed;
  rc = db->env->xListDir(db->env, zPath, &azName, &nName);
  if (rc) goto open_failed;
  pthread_mutex_lock(&db->mu);
  rc = recoverWals(db, azName, nName);
  if (rc == STRATA_OK) rc = newWal(db);
  if (rc == STRATA_OK) {
    e.bLogNumber = 1;
    e.logNumber = db->walNumber;
    e.bLastSeq = 1;
    e.lastSeq = atomic_load(&db->lastSeq);
    db->vs->lastSeq = e.lastSeq;
    rc = strataVersionSetNewManifest(db->vs, &e);
  }
  pthread_mutex_unlock(&db->mu);
  if (rc) goto open_failed;
  adoptVersionFiles(db);
  pthread_mutex_lock(&db->mu);
  strataCompactUpdateDebt(db);
  dbViewInstall(db);
  pthread_mutex_unlock(&db->mu);
  deleteObsoleteFiles(db, azName, nName);
  strataFreeList(azName, nName);
  azName = NULL;
  strataEditClear(&e);

  db->nThread = opts.background_threads;
  setDeleteNow(db, 0);
  for (i = 0; i < db->nThread; i++) {
    if (pthread_create(&db->aThread[i], NULL, bgMain, db) != 0) {
      db->nThread = i;
      rc = strataErr(STRATA_ERROR, "cannot start a background thread");
      strata_close(db);
      return rc;
    }
  }
  *ppDb = db;
  return STRATA_OK;

open_failed:
  strataFreeList(azName, nName);
  strataEditClear(&e);
  if (db->pWal) {
    /* A WAL created by this failed open holds nothing: remove it. */
    char *zWal = strataFileName(db->zDir, STRATA_FILE_WAL, db->walNumber);
    strataLogWriterClose(db->pWal);
    db->pWal = NULL;
    if (zWal) db->env->xDelete(db->env, zWal);
    strataFreeMem(zWal);
  }
  dbFree(db);
  return rc;
}

int strata_close(strata *db) {
  int i, rc = STRATA_OK;
  if (!db) return STRATA_OK;
  pthread_mutex_lock(&db->mu);
  if (db->nIterators > 0 || db->snapList.pNext != &db->snapList || db->nTxn > 0) {
    pthread_mutex_unlock(&db->mu);
    return strataErr(STRATA_MISUSE, "strata_close: iterators, snapshots or transactions are still open");
  }
  db->bShutdown = 1;
  pthread_cond_broadcast(&db->bgCv);
  pthread_mutex_unlock(&db->mu);
  for (i = 0; i < db->nThread; i++) pthread_join(db->aThread[i], NULL);
  setDeleteNow(db, 1);
  deleteDoomed(db, 0);
  /* The buffered WAL tail (sync=off) reaches the OS here. */
  if (db->pWal) {
    rc = db->bgError ? STRATA_OK : strataLogFlush(db->pWal);
    if (rc == STRATA_OK && db->opts.sync == STRATA_SYNC_FULL && !db->bgError) {
      rc = strataLogSync(db->pWal);
    }
  }
  dbFree(db);
  /* Per-thread caches would otherwise outlive the last database of a thread
  ** that never exits (the main thread), and be lost when the library is
  ** unloaded with it. */
  strataSstThreadRelease();
  strataCompressThreadRelease();
  return rc;
}

int strata_destroy(const char *zPath, strata_env *env) {
  char **azName = NULL;
  int nName = 0, i, rc;
  StrataFile *pLock = NULL;
  char *zLock;
  if (!zPath) return strataErr(STRATA_MISUSE, "strata_destroy: NULL path");
  if (!env) env = strataEnvDefault();
  if (!env->xExists(env, zPath)) return STRATA_OK;
  zLock = strataFileName(zPath, STRATA_FILE_LOCK, 0);
  if (!zLock) return strataErr(STRATA_NOMEM, "out of memory");
  rc = env->xLock(env, zLock, &pLock);
  if (rc == STRATA_OK) rc = env->xListDir(env, zPath, &azName, &nName);
  for (i = 0; rc == STRATA_OK && i < nName; i++) {
    u64 num;
    if (strataParseFileName(azName[i], &num) && strcmp(azName[i], "LOCK") != 0) {
      char *zFile = strataMprintf("%s/%s", zPath, azName[i]);
      if (!zFile) rc = strataErr(STRATA_NOMEM, "out of memory");
      if (rc == STRATA_OK) rc = env->xDelete(env, zFile);
      strataFreeMem(zFile);
    }
  }
  if (rc == STRATA_OK) env->xDelete(env, zLock);
  strataFileClose(pLock);
  if (rc == STRATA_OK) rc = env->xRmdir(env, zPath);
  strataFreeList(azName, nName);
  strataFreeMem(zLock);
  return rc;
}
