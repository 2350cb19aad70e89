/*
** sqlbench.c -- strata-sql-bench: the same workloads, through SQL, against a
** strata virtual table and ordinary SQLite tables.
**
**   strata-sql-bench [--num=N] [--benchmarks=fillseq,readrandom,...]
**                    [--engines=strata,rowid,without] [--repeats=3] ...
**                    (--help lists every option)
**
** The program is a plain SQLite application: it uses the sqlite3 C API with
** prepared statements, and loads the strata extension at run time
** (sqlite3_load_extension, --ext). It does not link the engine, so what it
** measures is what an application sees: SQLite's VDBE, the virtual table
** module and the engine together. Being a client, it allocates with malloc().
**
** ENGINES
**
**   strata   CREATE VIRTUAL TABLE t USING strata(k INTEGER PRIMARY KEY,
**            v BLOB, path='...', sync='normal'), the engine's own defaults
**            for everything else unless --memtable/--cache/--compression
**   rowid    CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB): the key is the
**            rowid (with --keys=text, a rowid table plus its primary key index)
**   without  CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB) WITHOUT ROWID
**
**   Ordinary tables use journal_mode=WAL and synchronous=NORMAL (--sync=off:
**   OFF, and strata's sync='off'), SQLite's default 4 KiB pages and
**   automatic checkpoints. Their page cache is given strata's memory budget
**   (memtable + block cache, 40 MiB by default; --sqlite-cache changes it), so
**   both sides may hold the same amount of data in the process.
**
** WORKLOADS
**
**   fillseq       INSERT num rows, keys in increasing order, into a new table
**   fillrandom    INSERT num rows, the same keys in a random order, new table
**   overwrite     INSERT OR REPLACE of --writes uniform random existing keys
**   readrandom    SELECT v FROM t WHERE k=?, --reads uniform random keys
**   readmissing   the same with keys that cannot exist (between two keys)
**   seekrandom    SELECT k,v FROM t WHERE k>=? ORDER BY k LIMIT 10, --reads
**                 times, uniform random start keys, every row stepped
**   readseq       SELECT k,v FROM t ORDER BY k: every row
**   readreverse   SELECT k,v FROM t ORDER BY k DESC: every row
**   count         SELECT count(*) FROM t, --count-loops times (rows/s counted)
**   deleterandom  DELETE FROM t WHERE k=?, --deletes distinct existing keys in
**                 a random order
**
**   Key number i (0 <= i < num) is the integer 2*i, or with --keys=text that
**   number as 16 zero-padded decimal digits; readmissing uses 2*i+1, a key
**   between two that exist. fillrandom's order is a keyed bijection of
**   [0, num) (no table of num entries in memory, which would count in the
**   peak memory). Writes are grouped --txn rows to a BEGIN ... COMMIT (1:
**   every statement its own autocommit transaction); reads run as
**   autocommit statements, as most applications issue them.
**
** VALUES
**
**   Values are --value-size byte slices of a 1 MiB pool made of 100-byte
**   pieces; with --values=random every byte is random (incompressible), with
**   --values=half each piece is 50 random bytes repeated (compresses to
**   about half). The slice depends on the key and on the workload that wrote
**   it, so reads check the exact bytes.
**
** PROCESSES, REPEATS, MEDIANS
**
**   Every (engine, repeat) runs the whole workload list in a child process
**   of its own (fork), on a new database, so memory peaks are separable and
**   nothing leaks from one engine into another's run. Engines run one at a
**   time, interleaved: repeat r runs them in an order rotated by r, so no
**   engine always goes first on a cold page cache. The parent reports the
**   median over repeats of every figure.
**
**   Background work. strata flushes and compacts in background threads;
**   an ordinary table does all its work (including checkpoints) in the
**   committing thread. After a write workload the child therefore waits
**   until the process is quiet (no CPU time used by any thread but the
**   benchmark's own, and under 4 KiB written per poll, for 300 ms, polled
**   every 50 ms; the wait is charged up to the start of the quiet period).
**   "ops/s" of a write workload includes that wait (settled); "loop ops/s"
**   is the rate at the end of the loop. Each following workload starts on a
**   settled database.
**
** MEASURES
**
**   ops/s          operations (rows for readseq, readreverse and count) per
**                  second, median of the repeats
**   w-amp          write amplification: bytes written / user bytes, where
**                  user bytes are key + value bytes of every row written
**                  (key bytes of a delete; an integer key counts 8 bytes).
**                  "wchar" is the growth of wchar in /proc/self/io (bytes
**                  the process passed to write()/pwrite(), every thread);
**                  "wbytes" of write_bytes (bytes bound for the device, page
**                  granular); for strata also the engine's disk_bytes_written
**                  from SELECT * FROM strata_stats('t').
**   disk MB        space the database takes after the workload (allocated
**                  blocks, as du, of the .db, -wal, -shm files and the strata
**                  directory), 2^20 bytes
**   peak MB        the highest anonymous resident memory during the workload
**                  (resident minus file-backed pages, /proc/self/statm,
**                  sampled every millisecond by a thread whose own CPU time
**                  is left out) minus that before the database was opened
**                  (the benchmark's own model and value pool): the heap the
**                  engine holds, which its memory budget bounds
**   peak RSS MB    the same from VmHWM (reset through /proc/self/clear_refs
**                  before each workload), which also counts file pages
**                  mapped into the process: strata's tables when it reads
**                  them through memory maps (mmap=on), pages of the kernel's
**                  page cache that a process reading with pread has too,
**                  without their being counted
**   CPU us/op      CPU time of the process (user + system, every thread,
**                  background work included, to the end of the settle wait)
**                  per operation. Unlike ops/s it hardly moves when other
**                  work shares the machine, so it is the figure to compare
**                  changes by in a busy hour.
**
** CHECKS
**
**   Each child keeps a model (one byte per key: which workload wrote it, 0
**   if absent) and checks every answer: inserts must succeed, replaces and
**   deletes must change exactly one row, point reads compare the found
**   count and every value byte, seeks compare the keys and values of every
**   row, scans check order, the row count and every key against the model,
**   value lengths on every row and value bytes of every 16th, count(*)
**   compares the count. A wrong answer prints WRONG and the exit status is 1,
**   and the figure is marked with '!' in the tables.
**
** OUTPUT
**
**   Tables of median figures per workload and engine, with the ratio of
**   strata's ops/s to each ordinary table's. --csv=FILE appends one line per
**   (workload, engine) of medians for tool/sqlbench-chart.sh. --verbose also
**   prints every repeat's figures as they come.
*/
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <sqlite3.h>

#include "benchutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* CONFIGURATION */

#define KEYS_INT 0
#define KEYS_TEXT 1
#define TEXT_KEY_BYTES 16

#define ENGINE_STRATA 0
#define ENGINE_ROWID 1
#define ENGINE_WITHOUT 2
#define N_ENGINE 3

static const char *const azEngine[N_ENGINE] = {"strata", "rowid", "without"};

/* Workloads, in the order of the default list. */
enum {
  W_FILLSEQ,
  W_FILLRANDOM,
  W_OVERWRITE,
  W_READRANDOM,
  W_READMISSING,
  W_SEEKRANDOM,
  W_READSEQ,
  W_READREVERSE,
  W_COUNT,
  W_DELETERANDOM,
  N_WORK
};

static const char *const azWork[N_WORK] = {
    "fillseq",  "fillrandom", "overwrite",   "readrandom", "readmissing",
    "seekrandom", "readseq", "readreverse", "count",      "deleterandom"};

/* Workloads that write (settled after, amplification reported). */
static int isWrite(int w) {
  return w == W_FILLSEQ || w == W_FILLRANDOM || w == W_OVERWRITE || w == W_DELETERANDOM;
}

#define MAX_LIST 32

typedef struct Config {
  uint64_t nNum;         /* rows of a fill; key numbers are [0, nNum) */
  uint64_t nReads;       /* operations of readrandom/readmissing/seekrandom */
  uint64_t nWrites;      /* operations of overwrite */
  uint64_t nDeletes;     /* operations of deleterandom */
  int nCountLoops;       /* count(*) statements of the count workload */
  int eKeys;             /* KEYS_* */
  int nVal;              /* value bytes */
  int bHalf;             /* values compress to about half */
  int nTxn;              /* rows per write transaction */
  int bSyncOff;          /* synchronous=OFF / sync='off' */
  int nRepeat;
  int nSqliteCacheKb;    /* ordinary tables' page cache in KiB; -1: SQLite's default */
  long long nMemtable;   /* strata memtable_size option, 0: engine default */
  long long nCache;      /* strata cache_size option, 0: engine default */
  long long nBlock;      /* strata block_size option, 0: engine default */
  const char *zMmap;     /* strata mmap option ("on"/"off"), NULL: engine default */
  const char *zCompression; /* strata compression option, NULL: default */
  int bSettle;
  int bVerbose, bStats;
  uint64_t seed;
  const char *zDir;
  const char *zExt;
  const char *zCsv;
  int aWork[MAX_LIST], nWork;
  int aEngine[N_ENGINE], nEngine;
} Config;

static Config cfg = {
    .nNum = 1000000,
    .nCountLoops = 5,
    .eKeys = KEYS_INT,
    .nVal = 100,
    .nTxn = 1000,
    .nRepeat = 3,
    .nSqliteCacheKb = 0, /* 0 here: "strata's budget", resolved in main() */
    .bSettle = 1,
    .seed = 301,
    .zDir = "/tmp/strata-sql-bench",
    .zExt = "./.libs/strata.so",
};

/* strata's defaults (engine/strata.h), for the budget of the ordinary tables. */
#define STRATA_DEFAULT_MEMTABLE (8ll << 20)
#define STRATA_DEFAULT_CACHE (32ll << 20)

/* Print a message and exit with status 2. Never returns. */
/* ------------------------------------------------------------------ */
/* TIME, RANDOM NUMBERS, PERMUTATIONS */

/* A keyed bijection of [0, n): rounds of add, odd multiply and xorshift on
** the smallest power of two >= n (each step is invertible modulo 2^bits),
** then cycle-walking until the value falls below n (fewer than 2 rounds on
** average). Gives a random order of all keys without storing it. */
typedef struct Perm {
  uint64_t n, mask;
  int shift;
  uint64_t aAdd[3], aMul[3];
} Perm;

static void permInit(Perm *p, uint64_t n, uint64_t seed) {
  Rng r = {seed};
  int bits = 1, i;
  while (bits < 63 && ((uint64_t)1 << bits) < n) bits++;
  p->n = n;
  p->mask = ((uint64_t)1 << bits) - 1;
  p->shift = (bits + 1) / 2;
  for (i = 0; i < 3; i++) {
    p->aAdd[i] = rngNext(&r);
    p->aMul[i] = rngNext(&r) | 1;
  }
}

static uint64_t permAt(const Perm *p, uint64_t x) {
  do {
    int i;
    for (i = 0; i < 3; i++) {
      x = (x + p->aAdd[i]) & p->mask;
      x = (x * p->aMul[i]) & p->mask;
      x ^= x >> p->shift;
    }
  } while (x >= p->n);
  return x;
}

/* ------------------------------------------------------------------ */
/* KEYS, VALUES AND THE MODEL */

/* Key number i as text: 16 zero-padded decimal digits of v (2i or 2i+1). */
static void keyText(char *z, uint64_t v) {
  int j;
  for (j = TEXT_KEY_BYTES - 1; j >= 0; j--) {
    z[j] = (char)('0' + v % 10);
    v /= 10;
  }
}

/* The key value of a column read back: 1 and the key number in *pi if it is
** an existing-kind key (2i) of a number below nNum, else 0. */
static int keyParse(sqlite3_stmt *pStmt, int iCol, uint64_t *pi) {
  uint64_t v = 0;
  if (cfg.eKeys == KEYS_INT) {
    sqlite3_int64 k;
    if (sqlite3_column_type(pStmt, iCol) != SQLITE_INTEGER) return 0;
    k = sqlite3_column_int64(pStmt, iCol);
    if (k < 0) return 0;
    v = (uint64_t)k;
  } else {
    const unsigned char *z = sqlite3_column_text(pStmt, iCol);
    int n = sqlite3_column_bytes(pStmt, iCol), j;
    if (!z || n != TEXT_KEY_BYTES) return 0;
    for (j = 0; j < n; j++) {
      unsigned d = (unsigned)z[j] - '0';
      if (d > 9) return 0;
      v = v * 10 + d;
    }
  }
  if (v & 1) return 0;
  if (v / 2 >= cfg.nNum) return 0;
  *pi = v / 2;
  return 1;
}

/* Bind key value v (2i or 2i+1) to parameter 1. zBuf: TEXT_KEY_BYTES. */
static void bindKey(sqlite3_stmt *pStmt, uint64_t v, char *zBuf) {
  if (cfg.eKeys == KEYS_INT) {
    sqlite3_bind_int64(pStmt, 1, (sqlite3_int64)v);
  } else {
    keyText(zBuf, v);
    sqlite3_bind_text(pStmt, 1, zBuf, TEXT_KEY_BYTES, SQLITE_STATIC);
  }
}

static size_t keyBytes(void) { return cfg.eKeys == KEYS_INT ? 8 : TEXT_KEY_BYTES; }

/* Which workload wrote each key (0: absent). One byte a key, allocated and
** touched before the database opens, so it is part of the baseline RSS. */
typedef struct Model {
  uint8_t *aGen;
  uint64_t nExist;
  unsigned gen; /* generation of the latest write workload, 1..255 */
  int bFilled;
} Model;

static Model model;

static unsigned modelNextGen(void) {
  model.gen = model.gen % 255 + 1;
  return model.gen;
}

/* ------------------------------------------------------------------ */
/* PROCESS COUNTERS AND DISK USAGE */

/* A "VmXXX:" figure of /proc/self/status in KiB, 0 if unreadable. */
static uint64_t statusKb(const char *zField) {
  char zLine[256];
  size_t n = strlen(zField);
  uint64_t v = 0;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  while (fgets(zLine, sizeof(zLine), f)) {
    if (strncmp(zLine, zField, n) == 0 && zLine[n] == ':') {
      v = strtoull(zLine + n + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0). Returns 0 on success. */
static int peakReset(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY);
  int rc = -1;
  if (fd >= 0) {
    rc = write(fd, "5", 1) == 1 ? 0 : -1;
    close(fd);
  }
  return rc;
}

/* Resident bytes that are not file-backed (statm: resident - shared), read
** through fd (open on /proc/self/statm), or a new descriptor if fd < 0. */
static uint64_t anonBytesFd(int fd) {
  char z[256];
  ssize_t n;
  int bOwn = fd < 0;
  unsigned long long nRes, nShared;
  char *p;
  if (bOwn && (fd = open("/proc/self/statm", O_RDONLY)) < 0) return 0;
  n = pread(fd, z, sizeof(z) - 1, 0);
  if (bOwn) close(fd);
  if (n <= 0) return 0;
  z[n] = 0;
  strtoull(z, &p, 10); /* size */
  nRes = strtoull(p, &p, 10);
  nShared = strtoull(p, &p, 10);
  return nRes > nShared ? (uint64_t)(nRes - nShared) * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static uint64_t anonBytes(void) { return anonBytesFd(-1); }

/* A thread sampling anonBytes() every millisecond while a workload runs. */
typedef struct AnonSampler {
  pthread_t tid;
  atomic_int bStop;
  uint64_t nMax;   /* highest sample */
  uint64_t nCpuUs; /* the thread's own CPU time, left out of the workload's */
} AnonSampler;

/* The running sampler's CPU clock, so that waiting for quiet and the
** workload's CPU time leave it out. */
static clockid_t samplerClock;
static atomic_int bSamplerClock;

static uint64_t samplerCpuUs(void) {
  struct timespec t;
  if (!atomic_load(&bSamplerClock) || clock_gettime(samplerClock, &t) != 0) return 0;
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void *anonSamplerMain(void *pArg) {
  AnonSampler *p = pArg;
  struct timespec ts = {0, 1000000}, cpu;
  int fd = open("/proc/self/statm", O_RDONLY); /* read again and again: cheap */
  while (!atomic_load(&p->bStop)) {
    uint64_t n = anonBytesFd(fd);
    if (n > p->nMax) p->nMax = n;
    nanosleep(&ts, NULL);
  }
  if (fd >= 0) close(fd);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
  p->nCpuUs = (uint64_t)cpu.tv_sec * 1000000u + (uint64_t)cpu.tv_nsec / 1000u;
  return NULL;
}

static void anonSamplerStart(AnonSampler *p) {
  memset(p, 0, sizeof(*p));
  p->nMax = anonBytes();
  if (pthread_create(&p->tid, NULL, anonSamplerMain, p) != 0) die("cannot start a thread");
  if (pthread_getcpuclockid(p->tid, &samplerClock) == 0) atomic_store(&bSamplerClock, 1);
}

/* Stop it; returns the peak (with a last sample). */
static uint64_t anonSamplerStop(AnonSampler *p) {
  uint64_t n = anonBytes();
  atomic_store(&p->bStop, 1);
  atomic_store(&bSamplerClock, 0);
  pthread_join(p->tid, NULL);
  return n > p->nMax ? n : p->nMax;
}

static uint64_t rusageUs(int who) {
  struct rusage ru;
  getrusage(who, &ru);
  return (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
         (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
}

/* CPU time in microseconds of every thread but the calling one: the
** engine's background threads (the caller's own polling does not count). */
static uint64_t cpuOthersUs(void) {
  uint64_t nThread = rusageUs(RUSAGE_THREAD) + samplerCpuUs();
  uint64_t nAll = rusageUs(RUSAGE_SELF);
  return nAll > nThread ? nAll - nThread : 0;
}

/* Remove zPath (a file or a directory tree) if it exists. Exits on failure. */
static void rmPath(const char *zPath) {
  struct stat st;
  if (lstat(zPath, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(zPath);
    struct dirent *pEnt;
    if (!d) die("cannot open directory %s: %s", zPath, strerror(errno));
    while ((pEnt = readdir(d)) != NULL) {
      char zSub[4096];
      if (!strcmp(pEnt->d_name, ".") || !strcmp(pEnt->d_name, "..")) continue;
      snprintf(zSub, sizeof(zSub), "%s/%s", zPath, pEnt->d_name);
      rmPath(zSub);
    }
    closedir(d);
    if (rmdir(zPath) != 0) die("cannot remove %s: %s", zPath, strerror(errno));
  } else if (unlink(zPath) != 0) {
    die("cannot remove %s: %s", zPath, strerror(errno));
  }
}

/* ------------------------------------------------------------------ */
/* ONE ENGINE IN A CHILD PROCESS */

/* What a child reports for one workload, through a pipe. */
typedef struct Result {
  int iWork;
  int bWrong;
  uint64_t nOps;
  double secLoop;    /* to the end of the loop */
  double secSettled; /* including the wait for background work */
  uint64_t nUser;    /* user bytes written */
  uint64_t nWchar, nWbytes;
  int64_t nEngineBytes; /* strata's disk_bytes_written delta, -1: none */
  uint64_t nDisk;       /* bytes on disk after the workload */
  uint64_t nPeak;       /* peak anonymous memory above the baseline, bytes */
  uint64_t nPeakRss;    /* peak RSS (VmHWM) above the baseline, bytes */
  uint64_t nCpuUs;      /* process CPU time (user + system, all threads), us */
} Result;

typedef struct Child {
  int eEngine;
  sqlite3 *db;
  char zDb[1024];     /* the SQLite database file */
  char zStrata[1024]; /* strata's directory */
  int bWrong;         /* the current workload got a wrong answer */
  uint64_t nBaseRss;  /* RSS (bytes) before the database was opened */
  uint64_t nBaseAnon; /* anonymous resident bytes then */
} Child;

/* Record a wrong answer (first few printed). */
static void wrong(Child *c, const char *zWork, const char *zFmt, ...)
    __attribute__((format(printf, 3, 4)));
static void wrong(Child *c, const char *zWork, const char *zFmt, ...) {
  static int nPrinted = 0;
  va_list ap;
  c->bWrong = 1;
  if (nPrinted++ >= 5) return;
  fprintf(stderr, "WRONG: %s %s: ", azEngine[c->eEngine], zWork);
  va_start(ap, zFmt);
  vfprintf(stderr, zFmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
}

static void dbDie(Child *c, const char *zWhat) __attribute__((noreturn));
static void dbDie(Child *c, const char *zWhat) {
  die("%s: %s: %s", azEngine[c->eEngine], zWhat, c->db ? sqlite3_errmsg(c->db) : "no database");
}

static void execSql(Child *c, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(c->db, zSql, NULL, NULL, &zErr) != SQLITE_OK) {
    die("%s: %s: %s", azEngine[c->eEngine], zSql, zErr ? zErr : "error");
  }
}

static sqlite3_stmt *prepare(Child *c, const char *zSql) {
  sqlite3_stmt *p = NULL;
  if (sqlite3_prepare_v3(c->db, zSql, -1, SQLITE_PREPARE_PERSISTENT, &p, NULL) != SQLITE_OK) {
    dbDie(c, zSql);
  }
  return p;
}

/* Open the connection and create table t in a new, empty database. */
static void childOpen(Child *c) {
  char zSql[2048];
  const char *zKeyType = cfg.eKeys == KEYS_INT ? "INTEGER" : "TEXT";
  int rc;
  rmPath(c->zDb);
  {
    char zSide[1100];
    snprintf(zSide, sizeof(zSide), "%s-wal", c->zDb);
    rmPath(zSide);
    snprintf(zSide, sizeof(zSide), "%s-shm", c->zDb);
    rmPath(zSide);
  }
  rmPath(c->zStrata);
  rc = sqlite3_open_v2(c->zDb, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) dbDie(c, "open");
  execSql(c, "PRAGMA journal_mode=WAL");
  execSql(c, cfg.bSyncOff ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=NORMAL");
  if (c->eEngine == ENGINE_STRATA) {
    char *zErr = NULL;
    char zOpt[512] = "";
    size_t n = 0;
    if (cfg.nMemtable) n += (size_t)snprintf(zOpt + n, sizeof(zOpt) - n, ", memtable_size=%lld",
                                             cfg.nMemtable);
    if (cfg.nCache) n += (size_t)snprintf(zOpt + n, sizeof(zOpt) - n, ", cache_size=%lld",
                                          cfg.nCache);
    if (cfg.nBlock) n += (size_t)snprintf(zOpt + n, sizeof(zOpt) - n, ", block_size=%lld",
                                          cfg.nBlock);
    if (cfg.zCompression) n += (size_t)snprintf(zOpt + n, sizeof(zOpt) - n, ", compression='%s'",
                                                cfg.zCompression);
    if (cfg.zMmap) snprintf(zOpt + n, sizeof(zOpt) - n, ", mmap='%s'", cfg.zMmap);
    sqlite3_enable_load_extension(c->db, 1);
    if (sqlite3_load_extension(c->db, cfg.zExt, "sqlite3_strata_init", &zErr) != SQLITE_OK) {
      die("cannot load the strata extension %s: %s (give its path with --ext)", cfg.zExt,
          zErr ? zErr : "error");
    }
    snprintf(zSql, sizeof(zSql),
             "CREATE VIRTUAL TABLE t USING strata(k %s PRIMARY KEY, v BLOB, path='%s', "
             "sync='%s'%s)",
             zKeyType, c->zStrata, cfg.bSyncOff ? "off" : "normal", zOpt);
  } else {
    char zPragma[64];
    if (cfg.nSqliteCacheKb >= 0) {
      snprintf(zPragma, sizeof(zPragma), "PRAGMA cache_size=-%d", cfg.nSqliteCacheKb);
      execSql(c, zPragma);
    }
    snprintf(zSql, sizeof(zSql), "CREATE TABLE t(k %s PRIMARY KEY, v BLOB)%s", zKeyType,
             c->eEngine == ENGINE_WITHOUT ? " WITHOUT ROWID" : "");
  }
  execSql(c, zSql);
}

static void childClose(Child *c) {
  if (c->db && sqlite3_close(c->db) != SQLITE_OK) dbDie(c, "close");
  c->db = NULL;
}

/* One named counter of strata_stats('t'); -1 if unavailable. */
static int64_t strataStat(Child *c, const char *zName) {
  sqlite3_stmt *p = NULL;
  int64_t v = -1;
  if (sqlite3_prepare_v2(c->db, "SELECT value FROM strata_stats('t') WHERE name=?1", -1, &p,
                         NULL) != SQLITE_OK) {
    return -1;
  }
  sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
  if (sqlite3_step(p) == SQLITE_ROW) v = sqlite3_column_int64(p, 0);
  sqlite3_finalize(p);
  return v;
}

/* --stats: strata's counters on one line. */
static void strataPrintStats(Child *c) {
  sqlite3_stmt *p = NULL;
  if (sqlite3_prepare_v2(c->db, "SELECT name, value FROM strata_stats('t')", -1, &p, NULL) !=
      SQLITE_OK) {
    return;
  }
  printf("    [strata_stats]");
  while (sqlite3_step(p) == SQLITE_ROW) {
    const char *zName = (const char *)sqlite3_column_text(p, 0);
    const char *zVal = (const char *)sqlite3_column_text(p, 1);
    if (zVal && strcmp(zVal, "0") != 0 && strcmp(zName, "path") != 0) {
      printf(" %s=%s", zName, zVal);
    }
  }
  printf("\n");
  fflush(stdout);
  sqlite3_finalize(p);
}

/* Wait until the process is quiet: no CPU time used by any other thread than
** this one and (almost) no bytes written for 300 ms. Returns the time (nowNs) when the
** quiet period began. */
static uint64_t waitQuiet(void) {
  uint64_t tQuiet = nowNs(), tStart = tQuiet;
  uint64_t cpu0 = cpuOthersUs();
  IoCounters io0;
  ioRead(&io0);
  for (;;) {
    uint64_t cpu1, t;
    IoCounters io1;
    sleepMs(50);
    cpu1 = cpuOthersUs();
    ioRead(&io1);
    t = nowNs();
    /* The two getrusage() calls are not atomic: a small negative jitter. A
    ** thread that flushes or compacts uses CPU, so CPU is the main sign;
    ** writes of a few bytes (a tool like valgrind logging) are not work. */
    if (cpu1 > cpu0 + 500 || io1.wchar > io0.wchar + 4096) tQuiet = t;
    cpu0 = cpu1;
    io0 = io1;
    if (t - tQuiet >= 300000000ull) return tQuiet;
    if (t - tStart > 3600ull * 1000000000ull) die("background work did not end in an hour");
  }
}

/* Write workloads. Rows are grouped cfg.nTxn to a transaction. */
typedef struct TxnGroup {
  Child *c;
  sqlite3_stmt *pBegin, *pCommit;
  int nInTxn;
} TxnGroup;

static void stepDone(Child *c, sqlite3_stmt *p, const char *zWhat) {
  if (sqlite3_step(p) != SQLITE_DONE) dbDie(c, zWhat);
  sqlite3_reset(p);
}

static void txnInit(TxnGroup *g, Child *c) {
  g->c = c;
  g->nInTxn = 0;
  g->pBegin = cfg.nTxn > 1 ? prepare(c, "BEGIN") : NULL;
  g->pCommit = cfg.nTxn > 1 ? prepare(c, "COMMIT") : NULL;
}

/* Before a row: begin a transaction if none is open. */
static void txnRow(TxnGroup *g) {
  if (g->pBegin && g->nInTxn == 0) stepDone(g->c, g->pBegin, "BEGIN");
}

/* After a row: commit when the group is full (bLast: always). */
static void txnRowDone(TxnGroup *g, int bLast) {
  if (!g->pBegin) return;
  if (++g->nInTxn >= cfg.nTxn || bLast) {
    stepDone(g->c, g->pCommit, "COMMIT");
    g->nInTxn = 0;
  }
}

static void txnFinish(TxnGroup *g) {
  if (g->pBegin && g->nInTxn) stepDone(g->c, g->pCommit, "COMMIT");
  sqlite3_finalize(g->pBegin);
  sqlite3_finalize(g->pCommit);
}

/* fillseq / fillrandom: a new table, then nNum INSERTs. Returns ops. */
static uint64_t runFill(Child *c, int bRandom, uint64_t *pnUser) {
  sqlite3_stmt *p;
  TxnGroup g;
  Perm perm;
  char zKey[TEXT_KEY_BYTES];
  unsigned gen = modelNextGen();
  uint64_t n;
  memset(model.aGen, 0, cfg.nNum);
  model.nExist = 0;
  permInit(&perm, cfg.nNum, cfg.seed * 7 + 1);
  p = prepare(c, "INSERT INTO t(k, v) VALUES(?1, ?2)");
  txnInit(&g, c);
  for (n = 0; n < cfg.nNum; n++) {
    uint64_t i = bRandom ? permAt(&perm, n) : n;
    txnRow(&g);
    bindKey(p, 2 * i, zKey);
    sqlite3_bind_blob(p, 2, valueFor(i, gen), cfg.nVal, SQLITE_STATIC);
    if (sqlite3_step(p) != SQLITE_DONE) dbDie(c, "INSERT");
    sqlite3_reset(p);
    if (!model.aGen[i]) model.nExist++;
    model.aGen[i] = (uint8_t)gen;
    txnRowDone(&g, n + 1 == cfg.nNum);
  }
  txnFinish(&g);
  sqlite3_finalize(p);
  model.bFilled = 1;
  *pnUser = cfg.nNum * (keyBytes() + (uint64_t)cfg.nVal);
  return cfg.nNum;
}

static uint64_t runOverwrite(Child *c, uint64_t *pnUser) {
  sqlite3_stmt *p = prepare(c, "INSERT OR REPLACE INTO t(k, v) VALUES(?1, ?2)");
  TxnGroup g;
  Rng r = {cfg.seed * 11 + 3};
  char zKey[TEXT_KEY_BYTES];
  unsigned gen = modelNextGen();
  uint64_t n, nChanged = 0;
  txnInit(&g, c);
  for (n = 0; n < cfg.nWrites; n++) {
    uint64_t i = rngUniform(&r, cfg.nNum);
    txnRow(&g);
    bindKey(p, 2 * i, zKey);
    sqlite3_bind_blob(p, 2, valueFor(i, gen), cfg.nVal, SQLITE_STATIC);
    if (sqlite3_step(p) != SQLITE_DONE) dbDie(c, "INSERT OR REPLACE");
    sqlite3_reset(p);
    nChanged += (uint64_t)sqlite3_changes(c->db);
    if (!model.aGen[i]) model.nExist++;
    model.aGen[i] = (uint8_t)gen;
    txnRowDone(&g, n + 1 == cfg.nWrites);
  }
  txnFinish(&g);
  sqlite3_finalize(p);
  if (nChanged != cfg.nWrites) {
    wrong(c, "overwrite", "%" PRIu64 " rows changed, expected %" PRIu64, nChanged, cfg.nWrites);
  }
  *pnUser = cfg.nWrites * (keyBytes() + (uint64_t)cfg.nVal);
  return cfg.nWrites;
}

static uint64_t runDelete(Child *c, uint64_t *pnUser) {
  sqlite3_stmt *p = prepare(c, "DELETE FROM t WHERE k = ?1");
  TxnGroup g;
  Perm perm;
  char zKey[TEXT_KEY_BYTES];
  uint64_t n, nDone = 0, nChanged = 0, nExpect = 0;
  permInit(&perm, cfg.nNum, cfg.seed * 13 + 5);
  txnInit(&g, c);
  /* Distinct keys in a random order; those absent in the model change 0 rows. */
  for (n = 0; n < cfg.nNum && nDone < cfg.nDeletes; n++) {
    uint64_t i = permAt(&perm, n);
    txnRow(&g);
    bindKey(p, 2 * i, zKey);
    if (sqlite3_step(p) != SQLITE_DONE) dbDie(c, "DELETE");
    sqlite3_reset(p);
    nChanged += (uint64_t)sqlite3_changes(c->db);
    if (model.aGen[i]) {
      nExpect++;
      model.aGen[i] = 0;
      model.nExist--;
    }
    nDone++;
    txnRowDone(&g, nDone == cfg.nDeletes || n + 1 == cfg.nNum);
  }
  txnFinish(&g);
  sqlite3_finalize(p);
  if (nChanged != nExpect) {
    wrong(c, "deleterandom", "%" PRIu64 " rows deleted, expected %" PRIu64, nChanged, nExpect);
  }
  *pnUser = nDone * keyBytes();
  return nDone;
}

/* Check one row's value column against the model entry of key number i. */
static void checkValue(Child *c, const char *zWork, sqlite3_stmt *p, int iCol, uint64_t i,
                       int bBytes) {
  const void *pv = sqlite3_column_blob(p, iCol);
  int nv = sqlite3_column_bytes(p, iCol);
  if (nv != cfg.nVal) {
    wrong(c, zWork, "key %" PRIu64 ": value of %d bytes, expected %d", i, nv, cfg.nVal);
  } else if (bBytes && (!model.aGen[i] || memcmp(pv, valueFor(i, model.aGen[i]), nv) != 0)) {
    wrong(c, zWork, "key %" PRIu64 ": wrong value bytes", i);
  }
}

/* readrandom (bMissing 0) / readmissing (1). */
static uint64_t runRead(Child *c, int bMissing) {
  const char *zWork = azWork[bMissing ? W_READMISSING : W_READRANDOM];
  sqlite3_stmt *p = prepare(c, "SELECT v FROM t WHERE k = ?1");
  Rng r = {cfg.seed * 17 + (uint64_t)bMissing};
  char zKey[TEXT_KEY_BYTES];
  uint64_t n, nFound = 0, nExpect = 0;
  for (n = 0; n < cfg.nReads; n++) {
    uint64_t i = rngUniform(&r, cfg.nNum);
    int rc;
    bindKey(p, 2 * i + (uint64_t)bMissing, zKey);
    rc = sqlite3_step(p);
    if (!bMissing && model.aGen[i]) nExpect++;
    if (rc == SQLITE_ROW) {
      nFound++;
      if (bMissing) {
        wrong(c, zWork, "key %" PRIu64 "+: found", i);
      } else {
        checkValue(c, zWork, p, 0, i, 1);
      }
      rc = sqlite3_step(p);
    }
    if (rc != SQLITE_DONE) dbDie(c, "SELECT");
    sqlite3_reset(p);
  }
  sqlite3_finalize(p);
  if (nFound != nExpect) {
    wrong(c, zWork, "%" PRIu64 " found, expected %" PRIu64, nFound, nExpect);
  }
  return cfg.nReads;
}

static uint64_t runSeek(Child *c) {
  sqlite3_stmt *p = prepare(c, "SELECT k, v FROM t WHERE k >= ?1 ORDER BY k LIMIT 10");
  Rng r = {cfg.seed * 19 + 7};
  char zKey[TEXT_KEY_BYTES];
  uint64_t n;
  for (n = 0; n < cfg.nReads; n++) {
    uint64_t i = rngUniform(&r, cfg.nNum), iExpect = i;
    int nRow = 0, rc;
    bindKey(p, 2 * i, zKey);
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
      uint64_t iGot;
      while (iExpect < cfg.nNum && !model.aGen[iExpect]) iExpect++;
      if (!keyParse(p, 0, &iGot) || iGot != iExpect) {
        wrong(c, "seekrandom", "seek %" PRIu64 ": row %d has the wrong key", i, nRow);
        break;
      }
      checkValue(c, "seekrandom", p, 1, iGot, 1);
      iExpect++;
      nRow++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) dbDie(c, "SELECT seek");
    if (rc == SQLITE_DONE && nRow < 10) {
      while (iExpect < cfg.nNum && !model.aGen[iExpect]) iExpect++;
      if (iExpect < cfg.nNum) {
        wrong(c, "seekrandom", "seek %" PRIu64 ": %d rows, expected more", i, nRow);
      }
    }
    sqlite3_reset(p);
  }
  sqlite3_finalize(p);
  return cfg.nReads;
}

/* readseq / readreverse: every row. Returns rows. */
static uint64_t runScan(Child *c, int bReverse) {
  const char *zWork = azWork[bReverse ? W_READREVERSE : W_READSEQ];
  sqlite3_stmt *p =
      prepare(c, bReverse ? "SELECT k, v FROM t ORDER BY k DESC" : "SELECT k, v FROM t ORDER BY k");
  uint64_t nRow = 0, iPrev = 0;
  int rc;
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    uint64_t i;
    if (!keyParse(p, 0, &i) || !model.aGen[i]) {
      wrong(c, zWork, "row %" PRIu64 ": a key that should not exist", nRow);
      break;
    }
    if (nRow > 0 && (bReverse ? i >= iPrev : i <= iPrev)) {
      wrong(c, zWork, "row %" PRIu64 ": out of order", nRow);
      break;
    }
    checkValue(c, zWork, p, 1, i, (nRow & 15) == 0);
    iPrev = i;
    nRow++;
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) dbDie(c, "SELECT scan");
  sqlite3_finalize(p);
  if (rc == SQLITE_DONE && nRow != model.nExist) {
    wrong(c, zWork, "%" PRIu64 " rows, expected %" PRIu64, nRow, model.nExist);
  }
  return nRow;
}

static uint64_t runCount(Child *c) {
  sqlite3_stmt *p = prepare(c, "SELECT count(*) FROM t");
  uint64_t nRows = 0;
  int j;
  for (j = 0; j < cfg.nCountLoops; j++) {
    sqlite3_int64 v;
    if (sqlite3_step(p) != SQLITE_ROW) dbDie(c, "SELECT count(*)");
    v = sqlite3_column_int64(p, 0);
    if (v < 0 || (uint64_t)v != model.nExist) {
      wrong(c, "count", "count(*) = %lld, expected %" PRIu64, (long long)v, model.nExist);
    }
    nRows += (uint64_t)v;
    sqlite3_reset(p);
  }
  sqlite3_finalize(p);
  return nRows;
}

static uint64_t diskBytes(Child *c) {
  char z[1100];
  uint64_t n = duPath(c->zDb) + duPath(c->zStrata);
  snprintf(z, sizeof(z), "%s-wal", c->zDb);
  n += duPath(z);
  snprintf(z, sizeof(z), "%s-shm", c->zDb);
  return n + duPath(z);
}

/* CPU time of the whole process (every thread, user + system), us. */
static uint64_t cpuUs(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Run one workload and measure it. */
static void runWorkload(Child *c, int w, Result *pRes) {
  IoCounters io0, io1;
  int64_t eng0 = -1, eng1 = -1;
  uint64_t t0, t1, t2, nUser = 0, nOps = 0, cpu0, nAnon;
  AnonSampler sampler;

  /* A workload that needs rows gets a (separate, unreported) fill first. */
  if (!model.bFilled && w != W_FILLSEQ && w != W_FILLRANDOM) {
    uint64_t nIgnore;
    runFill(c, 1, &nIgnore);
    if (cfg.bSettle && c->eEngine == ENGINE_STRATA) waitQuiet();
  }
  if (w == W_FILLSEQ || w == W_FILLRANDOM) {
    /* A new database for every fill. */
    childClose(c);
    childOpen(c);
  }
  memset(pRes, 0, sizeof(*pRes));
  pRes->iWork = w;
  c->bWrong = 0;
  peakReset(); /* if it fails, the peak is the run's so far */
  anonSamplerStart(&sampler);
  if (c->eEngine == ENGINE_STRATA) eng0 = strataStat(c, "disk_bytes_written");
  ioRead(&io0);
  cpu0 = cpuUs();
  t0 = nowNs();
  switch (w) {
    case W_FILLSEQ: nOps = runFill(c, 0, &nUser); break;
    case W_FILLRANDOM: nOps = runFill(c, 1, &nUser); break;
    case W_OVERWRITE: nOps = runOverwrite(c, &nUser); break;
    case W_READRANDOM: nOps = runRead(c, 0); break;
    case W_READMISSING: nOps = runRead(c, 1); break;
    case W_SEEKRANDOM: nOps = runSeek(c); break;
    case W_READSEQ: nOps = runScan(c, 0); break;
    case W_READREVERSE: nOps = runScan(c, 1); break;
    case W_COUNT: nOps = runCount(c); break;
    case W_DELETERANDOM: nOps = runDelete(c, &nUser); break;
  }
  t1 = nowNs();
  t2 = t1;
  if (isWrite(w) && cfg.bSettle) {
    uint64_t tq = waitQuiet();
    t2 = tq > t1 ? tq : t1;
  }
  ioRead(&io1);
  nAnon = anonSamplerStop(&sampler);
  pRes->nCpuUs = cpuUs() - cpu0;
  pRes->nCpuUs = pRes->nCpuUs > sampler.nCpuUs ? pRes->nCpuUs - sampler.nCpuUs : 0;
  if (c->eEngine == ENGINE_STRATA) eng1 = strataStat(c, "disk_bytes_written");
  pRes->bWrong = c->bWrong;
  pRes->nOps = nOps;
  pRes->secLoop = (double)(t1 - t0) / 1e9;
  pRes->secSettled = (double)(t2 - t0) / 1e9;
  pRes->nUser = nUser;
  pRes->nWchar = io1.wchar - io0.wchar;
  pRes->nWbytes = io1.writeBytes - io0.writeBytes;
  pRes->nEngineBytes = (eng0 >= 0 && eng1 >= eng0) ? eng1 - eng0 : -1;
  pRes->nDisk = diskBytes(c);
  {
    uint64_t nHwm = statusKb("VmHWM") * 1024;
    pRes->nPeakRss = nHwm > c->nBaseRss ? nHwm - c->nBaseRss : 0;
    pRes->nPeak = nAnon > c->nBaseAnon ? nAnon - c->nBaseAnon : 0;
  }
  if (cfg.bStats && c->eEngine == ENGINE_STRATA) strataPrintStats(c);
}

/* The child: every workload of cfg on engine e, results written to fd. */
static void childMain(int e, int fd) {
  Child c;
  int j;
  memset(&c, 0, sizeof(c));
  c.eEngine = e;
  if (mkdir(cfg.zDir, 0755) != 0 && errno != EEXIST) {
    die("cannot create %s: %s", cfg.zDir, strerror(errno));
  }
  snprintf(c.zDb, sizeof(c.zDb), "%s/%s.db", cfg.zDir, azEngine[e]);
  snprintf(c.zStrata, sizeof(c.zStrata), "%s/%s.strata", cfg.zDir, azEngine[e]);
  model.aGen = xmalloc(cfg.nNum);
  memset(model.aGen, 0, cfg.nNum); /* touched: part of the baseline */
  c.nBaseRss = statusKb("VmRSS") * 1024;
  c.nBaseAnon = anonBytes();
  childOpen(&c);
  for (j = 0; j < cfg.nWork; j++) {
    Result res;
    runWorkload(&c, cfg.aWork[j], &res);
    if (write(fd, &res, sizeof(res)) != (ssize_t)sizeof(res)) die("pipe write failed");
  }
  childClose(&c);
  rmPath(c.zDb);
  {
    char z[1100];
    snprintf(z, sizeof(z), "%s-wal", c.zDb);
    rmPath(z);
    snprintf(z, sizeof(z), "%s-shm", c.zDb);
    rmPath(z);
  }
  rmPath(c.zStrata);
  free(model.aGen);
}

/* ------------------------------------------------------------------ */
/* THE PARENT: RUNS, MEDIANS, TABLES */

/* aRes[engine][repeat][workload index in cfg.aWork] */
static Result *aRes;
static int *aGot; /* 1 where a result arrived */

static Result *resAt(int e, int r, int j) {
  return &aRes[((size_t)e * (size_t)cfg.nRepeat + (size_t)r) * (size_t)cfg.nWork + (size_t)j];
}
static int *gotAt(int e, int r, int j) {
  return &aGot[((size_t)e * (size_t)cfg.nRepeat + (size_t)r) * (size_t)cfg.nWork + (size_t)j];
}

static void printResultLine(int e, int r, const Result *p) {
  printf("  repeat %d %-8s %-12s %10.0f ops/s (loop %10.0f)  wchar-amp %6.2f  disk %8.1f MB  "
         "peak %7.1f MB (RSS %7.1f)%s\n",
         r + 1, azEngine[e], azWork[p->iWork], p->secSettled > 0 ? p->nOps / p->secSettled : 0,
         p->secLoop > 0 ? p->nOps / p->secLoop : 0,
         p->nUser ? (double)p->nWchar / (double)p->nUser : 0.0, p->nDisk / 1048576.0,
         p->nPeak / 1048576.0, p->nPeakRss / 1048576.0, p->bWrong ? "  WRONG" : "");
  fflush(stdout);
}

/* Run engine e once (repeat r) in a child. Returns 0, or 1 if it failed. */
static int runChild(int e, int r) {
  int afd[2], j = 0, status = 0;
  pid_t pid;
  fflush(stdout);
  fflush(stderr);
  if (pipe(afd) != 0) die("pipe: %s", strerror(errno));
  pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(afd[0]);
    childMain(e, afd[1]);
    close(afd[1]);
    fflush(stdout);
    _exit(0);
  }
  close(afd[1]);
  for (;;) {
    Result res;
    ssize_t n = read(afd[0], &res, sizeof(res));
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof(res) || j >= cfg.nWork) die("short read from a child");
    *resAt(e, r, j) = res;
    *gotAt(e, r, j) = 1;
    if (cfg.bVerbose) printResultLine(e, r, &res);
    j++;
  }
  close(afd[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || j != cfg.nWork) {
    fprintf(stderr, "strata-sql-bench: the %s run (repeat %d) failed\n", azEngine[e], r + 1);
    return 1;
  }
  return 0;
}

static int cmpDouble(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Figures a table shows; each is a median over the repeats. */
enum {
  M_OPS, M_LOOP_OPS, M_WCHAR_AMP, M_WBYTES_AMP, M_ENGINE_AMP, M_DISK_MB, M_PEAK_MB, M_PEAK_RSS_MB,
  M_CPU_US
};

static double metricOf(const Result *p, int m) {
  switch (m) {
    case M_OPS: return p->secSettled > 0 ? (double)p->nOps / p->secSettled : 0;
    case M_LOOP_OPS: return p->secLoop > 0 ? (double)p->nOps / p->secLoop : 0;
    case M_WCHAR_AMP: return p->nUser ? (double)p->nWchar / (double)p->nUser : -1;
    case M_WBYTES_AMP: return p->nUser ? (double)p->nWbytes / (double)p->nUser : -1;
    case M_ENGINE_AMP:
      return p->nUser && p->nEngineBytes >= 0 ? (double)p->nEngineBytes / (double)p->nUser : -1;
    case M_DISK_MB: return (double)p->nDisk / 1048576.0;
    case M_PEAK_MB: return (double)p->nPeak / 1048576.0;
    case M_PEAK_RSS_MB: return (double)p->nPeakRss / 1048576.0;
    case M_CPU_US: return p->nOps ? (double)p->nCpuUs / (double)p->nOps : -1;
  }
  return -1;
}

/* Median of metric m of engine e, workload slot j; -1 if no result. *pbWrong
** is set if any repeat's answers were wrong. */
static double median(int e, int j, int m, int *pbWrong) {
  double a[64];
  int n = 0, r;
  for (r = 0; r < cfg.nRepeat && n < 64; r++) {
    if (!*gotAt(e, r, j)) continue;
    a[n++] = metricOf(resAt(e, r, j), m);
    if (pbWrong && resAt(e, r, j)->bWrong) *pbWrong = 1;
  }
  if (n == 0) return -1;
  qsort(a, (size_t)n, sizeof(a[0]), cmpDouble);
  return n % 2 ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

static int hasEngine(int e) {
  int i;
  for (i = 0; i < cfg.nEngine; i++) {
    if (cfg.aEngine[i] == e) return 1;
  }
  return 0;
}

static void printTable(const char *zTitle, int m, int bRatio, int bWritesOnly) {
  int i, j;
  printf("\n%s\n%-13s", zTitle, "workload");
  for (i = 0; i < cfg.nEngine; i++) printf(" %13s", azEngine[cfg.aEngine[i]]);
  if (bRatio && hasEngine(ENGINE_STRATA)) {
    for (i = 0; i < cfg.nEngine; i++) {
      char z[32];
      if (cfg.aEngine[i] == ENGINE_STRATA) continue;
      snprintf(z, sizeof(z), "strata/%s", azEngine[cfg.aEngine[i]]);
      printf(" %15s", z);
    }
  }
  printf("\n");
  for (j = 0; j < cfg.nWork; j++) {
    int w = cfg.aWork[j];
    if (bWritesOnly && !isWrite(w)) continue;
    printf("%-13s", azWork[w]);
    for (i = 0; i < cfg.nEngine; i++) {
      int bWrong = 0;
      double v = median(cfg.aEngine[i], j, m, &bWrong);
      if (v < 0) {
        printf(" %13s", "-");
      } else if (m == M_OPS || m == M_LOOP_OPS) {
        printf(" %12.0f%c", v, bWrong ? '!' : ' ');
      } else {
        printf(" %12.2f%c", v, bWrong ? '!' : ' ');
      }
    }
    if (bRatio && hasEngine(ENGINE_STRATA)) {
      double s = median(ENGINE_STRATA, j, m, NULL);
      for (i = 0; i < cfg.nEngine; i++) {
        double o;
        if (cfg.aEngine[i] == ENGINE_STRATA) continue;
        o = median(cfg.aEngine[i], j, m, NULL);
        if (s > 0 && o > 0) {
          printf(" %14.2fx", s / o);
        } else {
          printf(" %15s", "-");
        }
      }
    }
    printf("\n");
  }
}

static void writeCsv(void) {
  FILE *f;
  int bHeader, i, j;
  struct stat st;
  bHeader = stat(cfg.zCsv, &st) != 0 || st.st_size == 0;
  f = fopen(cfg.zCsv, "a");
  if (!f) die("cannot open %s: %s", cfg.zCsv, strerror(errno));
  if (bHeader) {
    fprintf(f, "rows,keys,values,txn,sync,repeats,engine,workload,ops_per_s,loop_ops_per_s,"
               "wamp_wchar,wamp_write_bytes,wamp_engine,disk_mb,peak_mb,wrong,peak_rss_mb\n");
  }
  for (j = 0; j < cfg.nWork; j++) {
    for (i = 0; i < cfg.nEngine; i++) {
      int e = cfg.aEngine[i], bWrong = 0;
      double ops = median(e, j, M_OPS, &bWrong);
      if (ops < 0) continue;
      fprintf(f, "%" PRIu64 ",%s,%s,%d,%s,%d,%s,%s,%.0f,%.0f,%.3f,%.3f,%.3f,%.2f,%.2f,%d,%.2f\n",
              cfg.nNum, cfg.eKeys == KEYS_INT ? "int" : "text", cfg.bHalf ? "half" : "random",
              cfg.nTxn, cfg.bSyncOff ? "off" : "normal", cfg.nRepeat, azEngine[e],
              azWork[cfg.aWork[j]], ops, median(e, j, M_LOOP_OPS, NULL),
              median(e, j, M_WCHAR_AMP, NULL), median(e, j, M_WBYTES_AMP, NULL),
              median(e, j, M_ENGINE_AMP, NULL), median(e, j, M_DISK_MB, NULL),
              median(e, j, M_PEAK_MB, NULL), bWrong, median(e, j, M_PEAK_RSS_MB, NULL));
    }
  }
  fclose(f);
}

/* ------------------------------------------------------------------ */
/* COMMAND LINE */

static void usage(void) {
  printf(
      "usage: strata-sql-bench [options]\n"
      "  --num=N            rows of a fill (default 1000000)\n"
      "  --reads=N          operations of readrandom/readmissing/seekrandom (default\n"
      "                     min(num, 200000))\n"
      "  --writes=N         INSERT OR REPLACEs of overwrite (default num/2)\n"
      "  --deletes=N        DELETEs of deleterandom (default num/2)\n"
      "  --count-loops=N    count(*) statements of count (default 5)\n"
      "  --benchmarks=LIST  workloads in order (default fillseq,fillrandom,overwrite,\n"
      "                     readrandom,readmissing,seekrandom,readseq,readreverse,count,\n"
      "                     deleterandom)\n"
      "  --engines=LIST     strata,rowid,without (default all three)\n"
      "  --repeats=N        runs of each engine; medians are reported (default 3)\n"
      "  --keys=int|text    INTEGER keys or 16-byte TEXT keys (default int)\n"
      "  --values=random|half  incompressible or 50%% compressible (default random)\n"
      "  --value-size=N     value bytes (default 100)\n"
      "  --txn=N            rows per write transaction; 1: autocommit (default 1000)\n"
      "  --sync=normal|off  synchronous=NORMAL/OFF, strata sync='normal'/'off'\n"
      "  --sqlite-cache=KIB page cache of ordinary tables in KiB; -1: SQLite's default\n"
      "                     (default: strata's memtable + cache budget)\n"
      "  --memtable=BYTES   strata memtable_size (default: the engine's, 8 MiB)\n"
      "  --cache=BYTES      strata cache_size (default: the engine's, 32 MiB)\n"
      "  --block-size=BYTES strata block_size (default: the engine's, 4 KiB)\n"
      "  --compression=zstd|none  strata compression (default: the engine's)\n"
      "  --mmap=on|off      strata mmap: read tables through memory maps (default:\n"
      "                     the engine's, on)\n"
      "  --no-settle        do not wait for background work after writes\n"
      "  --dir=DIR          where databases are made (default /tmp/strata-sql-bench)\n"
      "  --ext=PATH         the strata extension (default ./.libs/strata.so)\n"
      "  --csv=FILE         append median figures as CSV\n"
      "  --seed=N           random seed (default 301)\n"
      "  --verbose          print every repeat's figures\n"
      "  --stats            print strata_stats after each strata workload\n");
}

/* "--name=value": the value if zArg is option zName, else NULL. */
static const char *optVal(const char *zArg, const char *zName) {
  size_t n = strlen(zName);
  if (strncmp(zArg, zName, n) == 0 && zArg[n] == '=') return zArg + n + 1;
  return NULL;
}

static uint64_t parseU64(const char *z, const char *zOpt) {
  char *zEnd;
  unsigned long long v;
  errno = 0;
  v = strtoull(z, &zEnd, 10);
  if (zEnd == z || errno) die("bad value for %s: %s", zOpt, z);
  if (*zEnd == 'k' || *zEnd == 'K') {
    v *= 1024;
    zEnd++;
  } else if (*zEnd == 'm' || *zEnd == 'M') {
    v *= 1024 * 1024;
    zEnd++;
  }
  if (*zEnd) die("bad value for %s: %s", zOpt, z);
  return v;
}

/* Split a comma list into indexes of azName[0..nName). Returns the count. */
static int parseList(const char *z, const char *const *azName, int nName, int *aOut, int nMax,
                     const char *zOpt) {
  int n = 0;
  while (*z) {
    const char *zEnd = strchr(z, ',');
    size_t len = zEnd ? (size_t)(zEnd - z) : strlen(z);
    int i;
    for (i = 0; i < nName; i++) {
      if (strlen(azName[i]) == len && strncmp(azName[i], z, len) == 0) break;
    }
    if (i == nName) die("%s: unknown name '%.*s'", zOpt, (int)len, z);
    if (n >= nMax) die("%s: too many names", zOpt);
    aOut[n++] = i;
    z += len;
    if (*z == ',') z++;
  }
  return n;
}

int main(int argc, char **argv) {
  int i, nFailed = 0, bWrong = 0, r, j;
  int bReadsSet = 0, bWritesSet = 0, bDeletesSet = 0, bCacheSet = 0;
  const char *zBench = "fillseq,fillrandom,overwrite,readrandom,readmissing,seekrandom,readseq,"
                       "readreverse,count,deleterandom";
  const char *zEngines = "strata,rowid,without";
  benchSetProgram("strata-sql-bench", 2);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage();
      return 0;
    } else if ((v = optVal(a, "--num"))) {
      cfg.nNum = parseU64(v, a);
    } else if ((v = optVal(a, "--reads"))) {
      cfg.nReads = parseU64(v, a);
      bReadsSet = 1;
    } else if ((v = optVal(a, "--writes"))) {
      cfg.nWrites = parseU64(v, a);
      bWritesSet = 1;
    } else if ((v = optVal(a, "--deletes"))) {
      cfg.nDeletes = parseU64(v, a);
      bDeletesSet = 1;
    } else if ((v = optVal(a, "--count-loops"))) {
      cfg.nCountLoops = (int)parseU64(v, a);
    } else if ((v = optVal(a, "--benchmarks"))) {
      zBench = v;
    } else if ((v = optVal(a, "--engines"))) {
      zEngines = v;
    } else if ((v = optVal(a, "--repeats"))) {
      cfg.nRepeat = (int)parseU64(v, a);
    } else if ((v = optVal(a, "--keys"))) {
      if (!strcmp(v, "int")) {
        cfg.eKeys = KEYS_INT;
      } else if (!strcmp(v, "text")) {
        cfg.eKeys = KEYS_TEXT;
      } else {
        die("--keys: int or text");
      }
    } else if ((v = optVal(a, "--values"))) {
      if (!strcmp(v, "random")) {
        cfg.bHalf = 0;
      } else if (!strcmp(v, "half")) {
        cfg.bHalf = 1;
      } else {
        die("--values: random or half");
      }
    } else if ((v = optVal(a, "--value-size"))) {
      cfg.nVal = (int)parseU64(v, a);
    } else if ((v = optVal(a, "--txn"))) {
      cfg.nTxn = (int)parseU64(v, a);
    } else if ((v = optVal(a, "--sync"))) {
      if (!strcmp(v, "normal")) {
        cfg.bSyncOff = 0;
      } else if (!strcmp(v, "off")) {
        cfg.bSyncOff = 1;
      } else {
        die("--sync: normal or off");
      }
    } else if ((v = optVal(a, "--sqlite-cache"))) {
      cfg.nSqliteCacheKb = !strcmp(v, "-1") ? -1 : (int)parseU64(v, a);
      bCacheSet = 1;
    } else if ((v = optVal(a, "--memtable"))) {
      cfg.nMemtable = (long long)parseU64(v, a);
    } else if ((v = optVal(a, "--cache"))) {
      cfg.nCache = (long long)parseU64(v, a);
    } else if ((v = optVal(a, "--block-size"))) {
      cfg.nBlock = (long long)parseU64(v, a);
    } else if ((v = optVal(a, "--compression"))) {
      if (strcmp(v, "zstd") && strcmp(v, "none")) die("--compression: zstd or none");
      cfg.zCompression = v;
    } else if ((v = optVal(a, "--mmap"))) {
      if (strcmp(v, "on") && strcmp(v, "off")) die("--mmap: on or off");
      cfg.zMmap = v;
    } else if (!strcmp(a, "--no-settle")) {
      cfg.bSettle = 0;
    } else if ((v = optVal(a, "--dir"))) {
      cfg.zDir = v;
    } else if ((v = optVal(a, "--ext"))) {
      cfg.zExt = v;
    } else if ((v = optVal(a, "--csv"))) {
      cfg.zCsv = v;
    } else if ((v = optVal(a, "--seed"))) {
      cfg.seed = parseU64(v, a);
    } else if (!strcmp(a, "--verbose")) {
      cfg.bVerbose = 1;
    } else if (!strcmp(a, "--stats")) {
      cfg.bStats = 1;
      cfg.bVerbose = 1;
    } else {
      die("unknown option %s (--help lists them)", a);
    }
  }
  if (cfg.nNum < 1) die("--num must be at least 1");
  if (cfg.nRepeat < 1 || cfg.nRepeat > 64) die("--repeats: 1..64");
  if (cfg.nTxn < 1) die("--txn must be at least 1");
  if (cfg.nVal < 1 || cfg.nVal > (1 << 20)) die("--value-size: 1..1048576");
  if (cfg.nNum > ((uint64_t)1 << 40)) die("--num too large");
  if (!bReadsSet) cfg.nReads = cfg.nNum < 200000 ? cfg.nNum : 200000;
  if (!bWritesSet) cfg.nWrites = cfg.nNum / 2 ? cfg.nNum / 2 : 1;
  if (!bDeletesSet) cfg.nDeletes = cfg.nNum / 2 ? cfg.nNum / 2 : 1;
  if (!bCacheSet) {
    long long nBudget = (cfg.nMemtable ? cfg.nMemtable : STRATA_DEFAULT_MEMTABLE) +
                        (cfg.nCache ? cfg.nCache : STRATA_DEFAULT_CACHE);
    cfg.nSqliteCacheKb = (int)(nBudget / 1024);
  }
  cfg.nWork = parseList(zBench, azWork, N_WORK, cfg.aWork, MAX_LIST, "--benchmarks");
  cfg.nEngine = parseList(zEngines, azEngine, N_ENGINE, cfg.aEngine, N_ENGINE, "--engines");
  if (cfg.nWork == 0 || cfg.nEngine == 0) die("nothing to run");
  if (hasEngine(ENGINE_STRATA) && access(cfg.zExt, R_OK) != 0) {
    die("the strata extension %s is not readable (build it, or give --ext=PATH)", cfg.zExt);
  }
  benchPoolInit(cfg.bHalf ? 50 : 100, (size_t)cfg.nVal, cfg.seed);

  printf("strata-sql-bench: SQLite %s, %" PRIu64 " rows, %s keys, %d-byte values (%s), "
         "%d rows/txn, %s\n",
         sqlite3_libversion(), cfg.nNum, cfg.eKeys == KEYS_INT ? "integer" : "16-byte text",
         cfg.nVal, cfg.bHalf ? "50% compressible" : "incompressible", cfg.nTxn,
         cfg.bSyncOff ? "synchronous OFF / sync=off" : "synchronous NORMAL / sync=normal");
  printf("  reads %" PRIu64 ", overwrites %" PRIu64 ", deletes %" PRIu64 ", count(*) x%d; "
         "%d repeats, medians; each engine in its own process, interleaved\n",
         cfg.nReads, cfg.nWrites, cfg.nDeletes, cfg.nCountLoops, cfg.nRepeat);
  printf("  strata: memtable %s, cache %s, block %s, compression %s, mmap %s; ordinary tables: "
         "WAL, page cache ",
         cfg.nMemtable ? "(set)" : "8 MiB (default)", cfg.nCache ? "(set)" : "32 MiB (default)",
         cfg.nBlock ? "(set)" : "4 KiB (default)",
         cfg.zCompression ? cfg.zCompression : "zstd (default)",
         cfg.zMmap ? cfg.zMmap : "on (default)");
  if (cfg.nSqliteCacheKb < 0) {
    printf("SQLite's default\n");
  } else {
    printf("%d KiB\n", cfg.nSqliteCacheKb);
  }
  fflush(stdout);

  aRes = xmalloc(sizeof(Result) * (size_t)N_ENGINE * (size_t)cfg.nRepeat * (size_t)cfg.nWork);
  aGot = xmalloc(sizeof(int) * (size_t)N_ENGINE * (size_t)cfg.nRepeat * (size_t)cfg.nWork);
  memset(aGot, 0, sizeof(int) * (size_t)N_ENGINE * (size_t)cfg.nRepeat * (size_t)cfg.nWork);
  for (r = 0; r < cfg.nRepeat; r++) {
    for (i = 0; i < cfg.nEngine; i++) {
      int e = cfg.aEngine[(i + r) % cfg.nEngine];
      nFailed += runChild(e, r);
    }
  }

  printTable("ops/s (median; writes include the wait for background work)", M_OPS, 1, 0);
  printTable("ops/s at the end of the loop (median)", M_LOOP_OPS, 1, 1);
  printTable("write amplification: wchar / user bytes (median)", M_WCHAR_AMP, 0, 1);
  printTable("write amplification: write_bytes / user bytes (median)", M_WBYTES_AMP, 0, 1);
  if (hasEngine(ENGINE_STRATA)) {
    printTable("write amplification: strata disk_bytes_written / user bytes (median)",
               M_ENGINE_AMP, 0, 1);
  }
  printTable("disk MB after the workload (median)", M_DISK_MB, 0, 0);
  printTable("peak memory MB above the baseline during the workload: anonymous pages, the heap "
             "(median)",
             M_PEAK_MB, 0, 0);
  printTable("peak RSS MB above the baseline, also counting mapped file pages (median)",
             M_PEAK_RSS_MB, 0, 0);
  printTable("CPU us per operation, user + system, every thread, to the end of background "
             "work (median)", M_CPU_US, 0, 0);

  for (i = 0; i < cfg.nEngine; i++) {
    for (j = 0; j < cfg.nWork; j++) {
      for (r = 0; r < cfg.nRepeat; r++) {
        if (*gotAt(cfg.aEngine[i], r, j) && resAt(cfg.aEngine[i], r, j)->bWrong) bWrong = 1;
      }
    }
  }
  if (bWrong) printf("\nWRONG answers: figures marked '!' are not valid\n");
  if (cfg.zCsv) writeCsv();
  free(aRes);
  free(aGot);
  free(aBenchPool);
  return nFailed || bWrong ? 1 : 0;
}
