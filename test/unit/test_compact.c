/*
** test_compact.c -- leveled compaction: results against a model with
** compaction running, deleted keys staying deleted (also across reopen),
** snapshots keeping old versions, bounded space under overwrites, gentle
** write stalls, manual compaction, and the invariant checker after each
** step.
*/
#include "strata.h"
#include "strataInt.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>

#define NKEYS 5000

static strata *openSmall(const char *zDir, size_t nMem) {
  strata_options o;
  strata *db = NULL;
  strata_options_init(&o);
  o.memtable_size = nMem;
  o.block_size = 1024;
  o.target_file_size = 64 << 10;
  o.level_base_size = 256 << 10;
  o.level_multiplier = 4;
  o.sync = STRATA_SYNC_OFF;
  if (strata_open(zDir, &o, &db) != STRATA_OK) fprintf(stderr, "open: %s\n", strata_errmsg());
  return db;
}

/* Model: value version per key, 0 = absent. */
static int aModel[NKEYS];

static void mkKey(char *z, int i) { snprintf(z, 32, "key-%06d", i); }
static void mkVal(char *z, int i, int ver) { snprintf(z, 64, "value-%d-%d-%s", i, ver, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); }

static int verifyAll(strata *db, const char *zWhen) {
  int i, nBad = 0;
  strata_value v = {0};
  strata_iter *it = NULL;
  for (i = 0; i < NKEYS; i++) {
    char k[32], want[64];
    int rc;
    mkKey(k, i);
    rc = strata_get(db, NULL, k, strlen(k), &v);
    if (aModel[i] == 0) {
      if (rc != STRATA_NOTFOUND) nBad++;
    } else {
      mkVal(want, i, aModel[i]);
      if (rc != STRATA_OK || v.n != strlen(want) || memcmp(v.p, want, v.n)) nBad++;
    }
  }
  /* The scan agrees too. */
  if (strata_iter_new(db, NULL, &it) == STRATA_OK) {
    int next = 0;
    for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) {
      size_t n;
      const char *k = strata_iter_key(it, &n);
      int idx = atoi(k + 4);
      while (next < idx) {
        if (aModel[next]) nBad++;
        next++;
      }
      if (!aModel[idx]) nBad++;
      next = idx + 1;
    }
    if (strata_iter_status(it)) nBad++;
    strata_iter_free(it);
  }
  strata_value_free(&v);
  if (nBad) fprintf(stderr, "  %s: %d mismatches\n", zWhen, nBad);
  return nBad;
}

/* One random write to db and aModel: a delete one time in nDelOneIn, else
** a put of the value stamped iStamp. */
static void modelWrite(strata *db, TestRng *pR, int nDelOneIn, int iStamp) {
  int k = (int)test_randn(pR, NKEYS);
  char zk[32], zv[64];
  mkKey(zk, k);
  if (test_randn(pR, nDelOneIn) == 0) {
    CHECK_EQ(strata_delete(db, zk, strlen(zk)), STRATA_OK);
    aModel[k] = 0;
  } else {
    aModel[k] = iStamp;
    mkVal(zv, k, aModel[k]);
    CHECK_EQ(strata_put(db, zk, strlen(zk), zv, strlen(zv)), STRATA_OK);
  }
}

static void test_model_with_compaction(void) {
  const char *zDir = test_dir("cmp_model");
  strata *db = openSmall(zDir, 32 << 10);
  TestRng r;
  strata_stats st;
  int round, i;
  if (!db) return;
  test_srand(&r, test_seed("compact model"));
  memset(aModel, 0, sizeof aModel);
  for (round = 0; round < 6; round++) {
    for (i = 0; i < 20000; i++) {
      modelWrite(db, &r, 4, round * 100000 + i + 1);
    }
    CHECK_EQ(verifyAll(db, "while compacting"), 0);
    CHECK_EQ(strata_wait_idle(db), STRATA_OK);
    CHECK_EQ(strataDbCheck(db), STRATA_OK);
    CHECK_EQ(verifyAll(db, "idle"), 0);
    if (round % 2 == 1) {
      strata_get_stats(db, &st);
      CHECK(st.compactions > 0);
      CHECK(st.compaction_bytes_written > 0);
      CHECK_EQ(strata_close(db), STRATA_OK);
      db = openSmall(zDir, 32 << 10);
      if (!db) return;
      CHECK_EQ(verifyAll(db, "reopened"), 0);
    }
  }
  strata_get_stats(db, &st);
  CHECK(st.level_files[1] + st.level_files[2] + st.level_files[3] > 0);
  /* Everything into the bottom level: tombstones disappear, data stays. */
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  CHECK_EQ(verifyAll(db, "after full compaction"), 0);
  strata_get_stats(db, &st);
  CHECK_EQ(st.level_files[0], 0);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_deleted_stays_deleted(void) {
  const char *zDir = test_dir("cmp_del");
  strata *db = openSmall(zDir, 16 << 10);
  strata_value v = {0};
  int i;
  char zk[32], zv[64];
  if (!db) return;
  /* Old versions deep down, a tombstone on top, then lots of churn above. */
  for (i = 0; i < 3000; i++) {
    mkKey(zk, i);
    mkVal(zv, i, 1);
    strata_put(db, zk, strlen(zk), zv, strlen(zv));
  }
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  for (i = 0; i < 3000; i += 3) {
    mkKey(zk, i);
    strata_delete(db, zk, strlen(zk));
  }
  for (i = 0; i < 40000; i++) {
    snprintf(zk, sizeof zk, "zzz-%06d", i % 7000);
    mkVal(zv, i, 2);
    strata_put(db, zk, strlen(zk), zv, strlen(zv));
  }
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  for (i = 0; i < 3000; i++) {
    int rc;
    mkKey(zk, i);
    rc = strata_get(db, NULL, zk, strlen(zk), &v);
    CHECK_EQ(rc, (i % 3 == 0) ? STRATA_NOTFOUND : STRATA_OK);
  }
  strata_close(db);
  db = openSmall(zDir, 16 << 10);
  if (!db) return;
  CHECK_EQ(strata_compact_range(db, "key-", 4, "key-~", 5), STRATA_OK);
  for (i = 0; i < 3000; i++) {
    int rc;
    mkKey(zk, i);
    rc = strata_get(db, NULL, zk, strlen(zk), &v);
    CHECK_EQ(rc, (i % 3 == 0) ? STRATA_NOTFOUND : STRATA_OK);
  }
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  strata_value_free(&v);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_snapshot_survives_compaction(void) {
  const char *zDir = test_dir("cmp_snap");
  strata *db = openSmall(zDir, 16 << 10);
  const strata_snapshot *s;
  strata_value v = {0};
  char zk[32], zv[64];
  int i, nBad = 0;
  if (!db) return;
  for (i = 0; i < 2000; i++) {
    mkKey(zk, i);
    mkVal(zv, i, 1);
    strata_put(db, zk, strlen(zk), zv, strlen(zv));
  }
  s = strata_snapshot_new(db);
  for (i = 0; i < 2000; i++) {
    mkKey(zk, i);
    if (i % 2) {
      strata_delete(db, zk, strlen(zk));
    } else {
      mkVal(zv, i, 2);
      strata_put(db, zk, strlen(zk), zv, strlen(zv));
    }
  }
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  for (i = 0; i < 2000; i++) {
    mkKey(zk, i);
    mkVal(zv, i, 1);
    if (strata_get(db, s, zk, strlen(zk), &v) != STRATA_OK || v.n != strlen(zv) || memcmp(v.p, zv, v.n)) nBad++;
  }
  CHECK_EQ(nBad, 0);
  strata_snapshot_release(db, s);
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  {
    strata_stats st;
    strata_get_stats(db, &st);
    /* Old versions and tombstones are gone once no snapshot needs them. */
    CHECK(st.live_bytes < 2000 * 40);
  }
  strata_value_free(&v);
  strata_close(db);
  test_rmdir(zDir);
}

/* Overwrites of a small key set keep disk use near the live data. */
static void test_space_bounded(void) {
  const char *zDir = test_dir("cmp_space");
  strata *db = openSmall(zDir, 256 << 10);
  strata_stats st;
  int i, nKeys = test_soak() ? 100000 : 10000, nWrites = test_soak() ? 10000000 : 300000;
  u8 val[100];
  if (!db) return;
  for (i = 0; i < nWrites; i++) {
    char zk[32];
    int k = (int)(((u64)i * 2654435761u) % (u64)nKeys);
    int j;
    snprintf(zk, sizeof zk, "%016d", k);
    for (j = 0; j < 100; j++) val[j] = (u8)(i * 7 + j * 13); /* not compressible */
    if (strata_put(db, zk, 16, val, 100) != STRATA_OK) {
      CHECK(0);
      break;
    }
  }
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  strata_get_stats(db, &st);
  printf("# %d overwrites of %d keys: live %llu KiB for %d KiB of data, WA %.2f, stalls %llu us\n",
         nWrites, nKeys, (unsigned long long)st.live_bytes / 1024, nKeys * 116 / 1024,
         (double)st.disk_bytes_written / (double)st.user_bytes_written,
         (unsigned long long)st.stall_micros);
  CHECK(st.live_bytes < (u64)nKeys * 116 * 3);
  CHECK(st.stall_count == 0 || st.stall_micros > 0);
  strata_close(db);
  test_rmdir(zDir);
}

/* Tables start with the compression probe state of the tables before them
** (the db's skip hint): after flushes and compactions of incompressible
** values, compressible ones written next are still compressed. */
static void test_compression_after_random(void) {
  const char *zDir = test_dir("cmp_hint");
  strata *db = openSmall(zDir, 256 << 10);
  strata_stats st;
  TestRng rng;
  u64 nRandomLive;
  int i, j, n = 20000;
  u8 val[100];
  if (!db) return;
  test_srand(&rng, test_seed("compression_after_random"));
  for (i = 0; i < n; i++) {
    char zk[32];
    snprintf(zk, sizeof zk, "a-%08d", i);
    for (j = 0; j < 100; j++) val[j] = (u8)test_randn(&rng, 256);
    CHECK_EQ(strata_put(db, zk, 10, val, 100), STRATA_OK);
  }
  CHECK_EQ(strata_flush(db), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  strata_get_stats(db, &st);
  nRandomLive = st.live_bytes;
  CHECK(nRandomLive > (u64)n * 100);
  memset(val, 'v', sizeof val);
  for (i = 0; i < n; i++) {
    char zk[32];
    snprintf(zk, sizeof zk, "b-%08d", i);
    CHECK_EQ(strata_put(db, zk, 10, val, 100), STRATA_OK);
  }
  CHECK_EQ(strata_flush(db), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  strata_get_stats(db, &st);
  printf("# live %llu bytes after random values, %llu after as many compressible ones\n",
         (unsigned long long)nRandomLive, (unsigned long long)st.live_bytes);
  CHECK(st.live_bytes < nRandomLive + nRandomLive / 2);
  strata_close(db);
  test_rmdir(zDir);
}

/* The key of entry i of test_level_sizing: a permutation of 0..n-1 (n a
** power of two), so the fill is in random order and every key is new. */
static void sizingKey(char *z, u32 i, u32 n) {
  snprintf(z, 32, "%012u", (unsigned)((i * 2654435761u) & (n - 1)));
}

/* LEVEL SIZING: once the bottom level holds more than an L0 batch, L1's
** target is B * r with r^k = bottom bytes / B (k the bottom level), above
** level_base_size; after the fill settles L1 is near that target and no
** level is over its own. Files of each level stay disjoint, and every key
** reads back, before and after a reopen. */
static void test_level_sizing(void) {
  const char *zDir = test_dir("cmp_sizing");
  strata_options o;
  strata *db = NULL;
  strata_stats st;
  strata_value v = {0};
  u64 nBatch, nBase = 256 << 10, nLast, nL1Target;
  u32 i, n = test_soak() ? (1u << 18) : test_valgrind() ? (1u << 16) : (1u << 17);
  int j, iLast = 0, iPass, nBad = 0;
  u8 val[100];
  double r;
  strata_options_init(&o);
  o.memtable_size = 64 << 10;
  o.block_size = 1024;
  o.target_file_size = 64 << 10;
  o.level_base_size = nBase;
  o.sync = STRATA_SYNC_OFF;
  nBatch = (u64)o.l0_compaction_trigger * o.memtable_size;
  if (strata_open(zDir, &o, &db) != STRATA_OK) {
    CHECK(0);
    return;
  }
  for (i = 0; i < n; i++) {
    char zk[32];
    sizingKey(zk, i, n);
    for (j = 0; j < 100; j++) val[j] = (u8)((i * 2654435761u) >> (j % 24)) ^ (u8)j;
    if (strata_put(db, zk, 12, val, 100) != STRATA_OK) {
      CHECK(0);
      break;
    }
  }
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  strata_get_stats(db, &st);
  for (j = 1; j < STRATA_MAX_LEVELS; j++) {
    if (st.level_files[j] > 0) iLast = j;
  }
  CHECK(iLast >= 2);
  nLast = st.level_bytes[iLast];
  /* r^iLast = nLast / nBatch, as compact.c computes it. */
  for (r = 1; r < 10; r += 0.001) {
    double p = 1;
    for (j = 0; j < iLast; j++) p *= r;
    if (p >= (double)nLast / (double)nBatch) break;
  }
  nL1Target = (u64)((double)nBatch * r);
  if (nL1Target < nBase) nL1Target = nBase;
  printf("# levels:");
  for (j = 0; j <= iLast; j++) printf(" L%d %llu KiB", j, (unsigned long long)st.level_bytes[j] >> 10);
  printf("; L1 target %llu KiB\n", (unsigned long long)nL1Target >> 10);
  CHECK(nL1Target > 2 * nBase); /* the test is about a grown L1 */
  CHECK(st.level_bytes[1] > 2 * nBase);
  CHECK(st.level_bytes[1] <= nL1Target + nL1Target / 50);
  for (iPass = 0; iPass < 2; iPass++) {
    for (i = 0; i < n; i += 7) {
      char zk[32];
      sizingKey(zk, i, n);
      if (strata_get(db, NULL, zk, 12, &v) != STRATA_OK || v.n != 100) nBad++;
    }
    CHECK_EQ(nBad, 0);
    if (iPass == 0) {
      strata_close(db);
      db = NULL;
      CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
      if (!db) break;
      CHECK_EQ(strataDbCheck(db), STRATA_OK);
    }
  }
  strata_value_free(&v);
  strata_close(db);
  test_rmdir(zDir);
}

/* Readers and a writer with compaction going on: scans stay ordered and
** complete. */
static _Atomic int bStop; /* atomic: read by the scanning threads */
static void *scanMain(void *p) {
  strata *db = p;
  long bad = 0;
  while (!bStop) {
    strata_iter *it = NULL;
    int n = 0;
    if (strata_iter_new(db, NULL, &it)) return (void *)1;
    for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) n++;
    if (n != 4000 || strata_iter_status(it)) bad++;
    strata_iter_free(it);
  }
  return (void *)bad;
}

static void test_concurrent_readers(void) {
  const char *zDir = test_dir("cmp_conc");
  strata *db = openSmall(zDir, 16 << 10);
  pthread_t th[2];
  int i;
  void *ret;
  char zk[32], zv[64];
  if (!db) return;
  for (i = 0; i < 4000; i++) {
    mkKey(zk, i);
    mkVal(zv, i, 0);
    strata_put(db, zk, strlen(zk), zv, strlen(zv));
  }
  bStop = 0;
  for (i = 0; i < 2; i++) pthread_create(&th[i], NULL, scanMain, db);
  for (i = 0; i < 60000; i++) { /* overwrite existing keys only: count stays 4000 */
    mkKey(zk, i % 4000);
    mkVal(zv, i % 4000, i);
    strata_put(db, zk, strlen(zk), zv, strlen(zv));
  }
  bStop = 1;
  for (i = 0; i < 2; i++) {
    pthread_join(th[i], &ret);
    CHECK(ret == NULL);
  }
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  strata_close(db);
  test_rmdir(zDir);
}

/* HOLDING A COMPACTION
** An env whose xOpen, once armed, parks the first background thread that
** creates a table (a compaction output: the test writes nothing then, so
** there is no flush) until released. While it is parked, whether a second
** compaction can start is a property of the picker and the thread pool
** alone, whatever the scheduling. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int bArmed, bHeld, bRelease;
  pthread_t main;
  strata_env env;
} gHold;

static int holdOpen(strata_env *env, const char *zPath, int flags, StrataFile **ppFile) {
  size_t n = strlen(zPath);
  int rc = strataEnvDefault()->xOpen(strataEnvDefault(), zPath, flags, ppFile);
  (void)env;
  if (rc == STRATA_OK && flags == STRATA_OPEN_WRITE && n > 4 && !strcmp(zPath + n - 4, ".sst")) {
    pthread_mutex_lock(&gHold.mu);
    if (gHold.bArmed && !gHold.bHeld && !pthread_equal(pthread_self(), gHold.main)) {
      gHold.bHeld = 1;
      pthread_cond_broadcast(&gHold.cv);
      while (!gHold.bRelease) pthread_cond_wait(&gHold.cv, &gHold.mu);
    }
    pthread_mutex_unlock(&gHold.mu);
  }
  return rc;
}

static strata_env *holdEnv(void) {
  pthread_mutex_init(&gHold.mu, NULL);
  pthread_cond_init(&gHold.cv, NULL);
  gHold.env = *strataEnvDefault();
  gHold.env.xOpen = holdOpen;
  gHold.bArmed = gHold.bHeld = gHold.bRelease = 0;
  return &gHold.env;
}

/* With gHold armed before db was opened on smaller level targets (so that
** every level above the bottom wants compacting): waits until a compaction
** is parked, then until a second one runs beside it or none can be picked.
** Returns 1 if two ran at once. The waits end whatever the scheduling: the
** background threads sleep only when nothing can be picked, and they are
** woken here while something can. */
static int secondCompactionRuns(strata *db) {
  int bTwo, bHeld;
  for (;;) {
    int bIdle;
    pthread_mutex_lock(&gHold.mu);
    bHeld = gHold.bHeld;
    pthread_mutex_unlock(&gHold.mu);
    if (bHeld) break;
    /* No merge running and none to pick: nothing will ever be parked. A
    ** thread picks and starts a merge under db->mu in one go. */
    pthread_mutex_lock(&db->mu);
    bIdle = db->nCompacting == 0 && !strataCompactPick(db);
    if (!bIdle) pthread_cond_broadcast(&db->bgCv);
    pthread_mutex_unlock(&db->mu);
    if (bIdle) {
      pthread_mutex_lock(&gHold.mu);
      bHeld = gHold.bHeld;
      pthread_mutex_unlock(&gHold.mu);
      if (!bHeld) fprintf(stderr, "  no compaction to hold\n");
      break;
    }
    sched_yield();
  }
  pthread_mutex_lock(&db->mu);
  while (bHeld && db->nCompacting < 2 && strataCompactPick(db)) {
    pthread_cond_broadcast(&db->bgCv);
    pthread_mutex_unlock(&db->mu);
    sched_yield();
    pthread_mutex_lock(&db->mu);
  }
  bTwo = bHeld && db->nCompacting >= 2;
  pthread_mutex_unlock(&db->mu);
  pthread_mutex_lock(&gHold.mu);
  gHold.bArmed = 0;
  gHold.bRelease = 1;
  pthread_cond_broadcast(&gHold.cv);
  pthread_mutex_unlock(&gHold.mu);
  return bTwo;
}

/* Several background threads compact at once, on disjoint inputs: the
** model agrees while they run, the structural checks hold (no overlapping
** files in L1+, L0 in sequence order), and so does everything across a
** reopen and a full manual compaction. That two compactions really run at
** once is shown by parking one (gHold) after a reopen on level targets a
** quarter of the size, when every level wants compacting. */
static void test_parallel_compactions(void) {
  const char *zDir = test_dir("cmp_par");
  strata_options o;
  strata *db = NULL;
  TestRng r;
  int round, i;
  strata_options_init(&o);
  /* Many small levels: below L1 (which every L0 compaction takes whole)
  ** compactions of disjoint key ranges can overlap in time. */
  o.memtable_size = 16 << 10;
  o.block_size = 1024;
  o.target_file_size = 8 << 10;
  o.level_base_size = 32 << 10;
  o.level_multiplier = 2;
  o.background_threads = 4;
  o.sync = STRATA_SYNC_OFF;
  o.env = holdEnv();
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  test_srand(&r, test_seed("parallel compactions"));
  memset(aModel, 0, sizeof aModel);
  for (round = 0; round < 4; round++) {
    for (i = 0; i < 30000; i++) {
      modelWrite(db, &r, 5, round * 100000 + i + 1);
      if (i % 5000 == 4999) CHECK_EQ(strataDbCheck(db), STRATA_OK);
    }
    CHECK_EQ(verifyAll(db, "parallel, while compacting"), 0);
    CHECK_EQ(strata_wait_idle(db), STRATA_OK);
    CHECK_EQ(strataDbCheck(db), STRATA_OK);
    CHECK_EQ(verifyAll(db, "parallel, idle"), 0);
  }
  /* Nothing left in the WAL, so the reopen writes no table itself. */
  CHECK_EQ(strata_flush(db), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  CHECK_EQ(strata_close(db), STRATA_OK);
  db = NULL;
  o.level_base_size = 8 << 10;
  pthread_mutex_lock(&gHold.mu);
  gHold.main = pthread_self();
  gHold.bArmed = 1;
  pthread_mutex_unlock(&gHold.mu);
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  /* More than one compaction runs at a time. */
  CHECK(secondCompactionRuns(db));
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  CHECK_EQ(verifyAll(db, "parallel, reopened"), 0);
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  CHECK_EQ(verifyAll(db, "parallel, after full compaction"), 0);
  strata_close(db);
  test_rmdir(zDir);
}

/* Levels holding files: a bit per level. */
static int levelsInUse(strata *db) {
  strata_stats st;
  int i, m = 0;
  strata_get_stats(db, &st);
  for (i = 0; i < STRATA_MAX_LEVELS; i++) m |= st.level_files[i] ? 1 << i : 0;
  return m;
}

/* nSeek seeks at random keys, each checked against the model. */
static int seekRounds(strata *db, TestRng *pR, int nSeek) {
  strata_iter *it = NULL;
  int i, nBad = 0;
  if (strata_iter_new(db, NULL, &it) != STRATA_OK) return 1;
  for (i = 0; i < nSeek; i++) {
    int k = (int)test_randn(pR, NKEYS), want = k;
    char zk[32];
    mkKey(zk, k);
    while (want < NKEYS && !aModel[want]) want++;
    strata_iter_seek(it, zk, strlen(zk));
    if (want == NKEYS) {
      nBad += strata_iter_valid(it) != 0;
    } else {
      size_t n;
      const char *pk;
      mkKey(zk, want);
      pk = strata_iter_valid(it) ? strata_iter_key(it, &n) : NULL;
      nBad += !pk || n != strlen(zk) || memcmp(pk, zk, n) != 0;
    }
  }
  nBad += strata_iter_status(it) != STRATA_OK;
  strata_iter_free(it);
  return nBad;
}

/* SEEK COMPACTION: seeks that meet an L0 table above the bottom level move
** it down, and then every file above the bottom in turn, until one level is
** left; with disable_compaction nothing moves. */
static void test_seek_compaction(void) {
  const char *zDir = test_dir("cmp_seek");
  strata *db = openSmall(zDir, 32 << 10);
  TestRng r;
  strata_stats st;
  int i, round, mask;
  if (!db) return;
  test_srand(&r, test_seed("seek compaction"));
  memset(aModel, 0, sizeof aModel);
  for (i = 0; i < 3 * NKEYS; i++) modelWrite(db, &r, 5, i + 1);
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  /* Newer versions of some keys in L0, above the bottom level. */
  for (i = 0; i < NKEYS / 20; i++) modelWrite(db, &r, 5, 100000 + i);
  CHECK_EQ(strata_flush(db), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  mask = levelsInUse(db);
  CHECK(mask & 1);
  CHECK((mask & ~1) != 0);
  strata_get_stats(db, &st);
  CHECK_EQ(st.seek_compactions, 0);
  for (round = 0; round < 40 && (levelsInUse(db) & (levelsInUse(db) - 1)); round++) {
    CHECK_EQ(seekRounds(db, &r, 1000), 0);
    CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  }
  mask = levelsInUse(db);
  CHECK_EQ(mask & (mask - 1), 0); /* one level left */
  CHECK((mask & 1) == 0);
  strata_get_stats(db, &st);
  CHECK(st.seek_compactions >= 1);
  CHECK_EQ(strataDbCheck(db), STRATA_OK);
  CHECK_EQ(verifyAll(db, "after seek compactions"), 0);
  strata_close(db);
  test_rmdir(zDir);

  /* Without automatic compaction, seeks change nothing. */
  {
    strata_options o;
    zDir = test_dir("cmp_seek_off");
    strata_options_init(&o);
    o.memtable_size = 32 << 10;
    o.disable_compaction = 1;
    o.sync = STRATA_SYNC_OFF;
    db = NULL;
    CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
    if (!db) return;
    memset(aModel, 0, sizeof aModel);
    for (i = 0; i < NKEYS; i++) modelWrite(db, &r, 5, i + 1);
    CHECK_EQ(strata_flush(db), STRATA_OK);
    mask = levelsInUse(db);
    CHECK(mask & 1);
    CHECK_EQ(seekRounds(db, &r, 5000), 0);
    CHECK_EQ(strata_wait_idle(db), STRATA_OK);
    CHECK_EQ(levelsInUse(db), mask);
    strata_get_stats(db, &st);
    CHECK_EQ(st.seek_compactions, 0);
    strata_close(db);
    test_rmdir(zDir);
  }
}

int main(void) {
  RUN(test_model_with_compaction);
  RUN(test_deleted_stays_deleted);
  RUN(test_snapshot_survives_compaction);
  RUN(test_space_bounded);
  RUN(test_compression_after_random);
  RUN(test_level_sizing);
  RUN(test_concurrent_readers);
  RUN(test_parallel_compactions);
  RUN(test_seek_compaction);
  return TEST_SUMMARY();
}
