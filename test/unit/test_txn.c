/*
** test_txn.c -- transactions: own writes, snapshot isolation, the write lock
** and BUSY, savepoints, iterators over own writes, commit and rollback.
*/
#include "strata.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static strata *openDb(const char *zDir, int busyMs) {
  strata_options o;
  strata *db = NULL;
  strata_options_init(&o);
  o.memtable_size = 64 << 10;
  o.busy_timeout_ms = busyMs;
  if (strata_open(zDir, &o, &db) != STRATA_OK) fprintf(stderr, "open: %s\n", strata_errmsg());
  return db;
}

static int tget(strata_txn *t, const char *k, char *z) {
  strata_value v = {0};
  int rc = strata_txn_get(t, k, strlen(k), &v);
  if (rc == STRATA_OK) {
    memcpy(z, v.p, v.n);
    z[v.n] = 0;
  }
  strata_value_free(&v);
  return rc;
}

static int dget(strata *db, const char *k, char *z) {
  strata_value v = {0};
  int rc = strata_get(db, NULL, k, strlen(k), &v);
  if (rc == STRATA_OK) {
    memcpy(z, v.p, v.n);
    z[v.n] = 0;
  }
  strata_value_free(&v);
  return rc;
}

static void test_own_writes_and_commit(void) {
  const char *zDir = test_dir("txn_basic");
  strata *db = openDb(zDir, 100);
  strata_txn *t = NULL;
  char z[128];
  if (!db) return;
  strata_put(db, "a", 1, "old", 3);
  strata_put(db, "gone", 4, "x", 1);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_READ, &t), STRATA_OK);
  CHECK_EQ(strata_txn_put(t, "a", 1, "new", 3), STRATA_OK);
  CHECK_EQ(strata_txn_put(t, "b", 1, "bee", 3), STRATA_OK);
  CHECK_EQ(strata_txn_delete(t, "gone", 4), STRATA_OK);
  CHECK_EQ(tget(t, "a", z), STRATA_OK);
  CHECK(!strcmp(z, "new"));
  CHECK_EQ(tget(t, "gone", z), STRATA_NOTFOUND);
  CHECK_EQ(dget(db, "a", z), STRATA_OK); /* not visible outside yet */
  CHECK(!strcmp(z, "old"));
  CHECK_EQ(dget(db, "b", z), STRATA_NOTFOUND);
  CHECK_EQ(strata_txn_count(t), 3);
  CHECK_EQ(strata_txn_commit(t), STRATA_OK);
  CHECK_EQ(dget(db, "a", z), STRATA_OK);
  CHECK(!strcmp(z, "new"));
  CHECK_EQ(dget(db, "b", z), STRATA_OK);
  CHECK_EQ(dget(db, "gone", z), STRATA_NOTFOUND);
  /* Rollback discards. */
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &t), STRATA_OK);
  strata_txn_put(t, "c", 1, "sea", 3);
  strata_txn_rollback(t);
  CHECK_EQ(dget(db, "c", z), STRATA_NOTFOUND);
  strata_close(db);
  /* Committed data survives reopen. */
  db = openDb(zDir, 100);
  CHECK_EQ(dget(db, "b", z), STRATA_OK);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_snapshot_isolation(void) {
  const char *zDir = test_dir("txn_iso");
  strata *db = openDb(zDir, 50);
  strata_txn *r = NULL, *w = NULL;
  char z[128];
  if (!db) return;
  strata_put(db, "k", 1, "v1", 2);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_READ, &r), STRATA_OK);
  strata_put(db, "k", 1, "v2", 2);
  CHECK_EQ(tget(r, "k", z), STRATA_OK);
  CHECK(!strcmp(z, "v1")); /* repeatable read */
  /* The reader's snapshot is stale: its first write is refused. */
  CHECK_EQ(strata_txn_put(r, "x", 1, "y", 1), STRATA_BUSY);
  strata_txn_rollback(r);
  /* A write transaction blocks plain writers and other write transactions. */
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &w), STRATA_OK);
  CHECK_EQ(strata_put(db, "z", 1, "1", 1), STRATA_BUSY);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &r), STRATA_BUSY);
  CHECK(r == NULL);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_READ, &r), STRATA_OK); /* readers are fine */
  CHECK_EQ(tget(r, "k", z), STRATA_OK);
  CHECK_EQ(strata_txn_put(w, "k", 1, "v3", 2), STRATA_OK);
  CHECK_EQ(strata_txn_commit(w), STRATA_OK);
  CHECK_EQ(tget(r, "k", z), STRATA_OK);
  CHECK(!strcmp(z, "v2"));
  strata_txn_rollback(r);
  CHECK_EQ(strata_put(db, "z", 1, "1", 1), STRATA_OK);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_savepoints(void) {
  const char *zDir = test_dir("txn_sp");
  strata *db = openDb(zDir, 50);
  strata_txn *t = NULL;
  int sp0, sp1, sp2;
  char z[128];
  if (!db) return;
  strata_put(db, "base", 4, "b", 1);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &t), STRATA_OK);
  strata_txn_put(t, "a", 1, "1", 1);
  CHECK_EQ(strata_txn_savepoint(t, &sp0), STRATA_OK);
  CHECK_EQ(sp0, 0);
  strata_txn_put(t, "b", 1, "2", 1);
  strata_txn_put(t, "a", 1, "1b", 2);
  CHECK_EQ(strata_txn_savepoint(t, &sp1), STRATA_OK);
  strata_txn_delete(t, "base", 4);
  CHECK_EQ(strata_txn_savepoint(t, &sp2), STRATA_OK);
  CHECK_EQ(sp2, 2);
  strata_txn_put(t, "c", 1, "3", 1);
  CHECK_EQ(tget(t, "base", z), STRATA_NOTFOUND);
  CHECK_EQ(strata_txn_rollback_to(t, sp1), STRATA_OK);
  CHECK_EQ(tget(t, "base", z), STRATA_OK);
  CHECK_EQ(tget(t, "c", z), STRATA_NOTFOUND);
  CHECK_EQ(tget(t, "a", z), STRATA_OK);
  CHECK(!strcmp(z, "1b"));
  CHECK_EQ(strata_txn_rollback_to(t, 2), STRATA_MISUSE); /* sp2 is gone */
  CHECK_EQ(strata_txn_rollback_to(t, sp0), STRATA_OK);
  CHECK_EQ(tget(t, "a", z), STRATA_OK);
  CHECK(!strcmp(z, "1"));
  CHECK_EQ(tget(t, "b", z), STRATA_NOTFOUND);
  CHECK_EQ(strata_txn_count(t), 1);
  strata_txn_put(t, "d", 1, "4", 1);
  CHECK_EQ(strata_txn_release(t, sp0), STRATA_OK);
  CHECK_EQ(strata_txn_rollback_to(t, sp0), STRATA_MISUSE);
  CHECK_EQ(strata_txn_commit(t), STRATA_OK);
  CHECK_EQ(dget(db, "a", z), STRATA_OK);
  CHECK(!strcmp(z, "1"));
  CHECK_EQ(dget(db, "d", z), STRATA_OK);
  CHECK_EQ(dget(db, "b", z), STRATA_NOTFOUND);
  CHECK_EQ(dget(db, "base", z), STRATA_OK);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_txn_iterator(void) {
  const char *zDir = test_dir("txn_iter");
  strata *db = openDb(zDir, 50);
  strata_txn *t = NULL;
  strata_iter *it = NULL;
  const char *azWant[] = {"a=1", "b=txn", "d=4", "e=txn"};
  int i, n;
  if (!db) return;
  strata_put(db, "a", 1, "1", 1);
  strata_put(db, "b", 1, "2", 1);
  strata_put(db, "c", 1, "3", 1);
  strata_put(db, "d", 1, "4", 1);
  strata_flush(db);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &t), STRATA_OK);
  CHECK_EQ(strata_txn_iter_new(t, NULL, &it), STRATA_OK);
  strata_txn_put(t, "b", 1, "txn", 3);
  strata_txn_delete(t, "c", 1);
  strata_txn_put(t, "e", 1, "txn", 3);
  /* The iterator sees writes made after it was created. */
  for (n = 0, strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it), n++) {
    size_t nk, nv;
    const char *k = strata_iter_key(it, &nk), *v = strata_iter_value(it, &nv);
    char z[64];
    snprintf(z, sizeof z, "%.*s=%.*s", (int)nk, k, (int)nv, v);
    if (n < 4) CHECK(!strcmp(z, azWant[n]));
  }
  CHECK_EQ(n, 4);
  for (n = 0, strata_iter_seek_last(it); strata_iter_valid(it); strata_iter_prev(it)) n++;
  CHECK_EQ(n, 4);
  strata_iter_seek(it, "c", 1);
  {
    size_t nk;
    const char *k = strata_iter_key(it, &nk);
    CHECK(strata_iter_valid(it) && nk == 1 && k[0] == 'd');
  }
  strata_iter_free(it);
  strata_txn_commit(t);
  (void)i;
  strata_close(db);
  test_rmdir(zDir);
}

/* Two threads increment a counter in transactions, retrying on BUSY: no
** update may be lost. */
typedef struct CArg {
  strata *db;
  int nDone;
} CArg;

static void *counterMain(void *p) {
  CArg *a = p;
  while (a->nDone < 200) {
    strata_txn *t = NULL;
    char z[32];
    int v = 0, rc;
    if (strata_txn_begin(a->db, STRATA_TXN_READ, &t) != STRATA_OK) continue;
    if (tget(t, "ctr", z) == STRATA_OK) v = atoi(z);
    snprintf(z, sizeof z, "%d", v + 1);
    rc = strata_txn_put(t, "ctr", 3, z, strlen(z));
    if (rc == STRATA_OK) {
      if (strata_txn_commit(t) == STRATA_OK) a->nDone++;
    } else {
      strata_txn_rollback(t);
    }
  }
  return NULL;
}

static void test_counter_no_lost_updates(void) {
  const char *zDir = test_dir("txn_ctr");
  strata *db = openDb(zDir, 1000);
  pthread_t th[2];
  CArg a[2];
  char z[32];
  int i;
  if (!db) return;
  for (i = 0; i < 2; i++) {
    a[i].db = db;
    a[i].nDone = 0;
    pthread_create(&th[i], NULL, counterMain, &a[i]);
  }
  for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CHECK_EQ(dget(db, "ctr", z), STRATA_OK);
  CHECK_EQ(atoi(z), 400);
  strata_close(db);
  test_rmdir(zDir);
}

/* A commit inserts the transaction's writes into the memtable in key order
** (each with the sequence number of its place in the batch): writes in
** random order with repeated keys, deletions and a savepoint rolled back
** must read back as the last write of each key, from the transaction,
** after the commit, through an iterator and after recovery from the WAL;
** a snapshot from before the commit sees none of them. 20000 writes also
** fill the transaction's key filter well past its design load. */
static void commitKeyOrder(const char *zName, const char *zFmt, int bReadOwn) {
  enum { NKEY = 5000, NOP = 20000 };
  const char *zDir = test_dir(zName);
  strata *db = openDb(zDir, 100);
  strata_txn *t = NULL;
  const strata_snapshot *pSnap;
  strata_stats st0, st1;
  static int aModel[NKEY], aSaved[NKEY]; /* -1 absent, else the value's number */
  TestRng rng;
  char zKey[32], zVal[32], z[128];
  int i, iSp = -1, nOp = 0, nCommitted = 0;
  if (!db) return;
  test_srand(&rng, test_seed("txn_order"));
  for (i = 0; i < NKEY; i++) {
    aModel[i] = -1;
    if (i % 3 == 0) { /* some keys exist before the transaction */
      snprintf(zKey, sizeof(zKey), zFmt, i);
      strata_put(db, zKey, strlen(zKey), "before", 6);
      aModel[i] = 0;
    }
  }
  pSnap = strata_snapshot_new(db);
  CHECK_EQ(strata_get_stats(db, &st0), STRATA_OK);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &t), STRATA_OK);
  for (i = 0; i < NOP; i++) {
    int k = (int)test_randn(&rng, NKEY);
    snprintf(zKey, sizeof(zKey), zFmt, k);
    if (i == NOP / 2) {
      CHECK_EQ(strata_txn_savepoint(t, &iSp), STRATA_OK);
      memcpy(aSaved, aModel, sizeof(aModel));
      nCommitted = nOp;
    }
    if (test_randn(&rng, 4) == 0) {
      CHECK_EQ(strata_txn_delete(t, zKey, strlen(zKey)), STRATA_OK);
      aModel[k] = -1;
    } else {
      snprintf(zVal, sizeof(zVal), "v%d", i + 1);
      CHECK_EQ(strata_txn_put(t, zKey, strlen(zKey), zVal, strlen(zVal)), STRATA_OK);
      aModel[k] = i + 1;
    }
    nOp++;
    if (i == NOP / 2 + 1000) { /* undo 1000 writes */
      CHECK_EQ(strata_txn_rollback_to(t, iSp), STRATA_OK);
      memcpy(aModel, aSaved, sizeof(aModel));
      nOp = nCommitted;
    }
  }
  for (i = 0; i < NKEY && bReadOwn; i++) { /* the transaction reads its own writes */
    int rc;
    snprintf(zKey, sizeof(zKey), zFmt, i);
    rc = tget(t, zKey, z);
    CHECK_EQ(rc, aModel[i] < 0 ? STRATA_NOTFOUND : STRATA_OK);
    if (rc == STRATA_OK && aModel[i] > 0) CHECK_EQ(atoi(z + 1), aModel[i]);
  }
  CHECK_EQ(strata_txn_count(t), nOp);
  CHECK_EQ(strata_txn_commit(t), STRATA_OK);
  CHECK_EQ(strata_get_stats(db, &st1), STRATA_OK);
  CHECK_EQ(st1.last_sequence - st0.last_sequence, (uint64_t)nOp); /* one number per op */
  for (int pass = 0; pass < 2; pass++) {
    strata_iter *it = NULL;
    int nSeen = 0, nLive = 0;
    for (i = 0; i < NKEY; i++) {
      strata_value v = {0};
      int rc;
      snprintf(zKey, sizeof(zKey), zFmt, i);
      rc = strata_get(db, NULL, zKey, strlen(zKey), &v);
      CHECK_EQ(rc, aModel[i] < 0 ? STRATA_NOTFOUND : STRATA_OK);
      if (rc == STRATA_OK) {
        snprintf(z, sizeof(z), "%.*s", (int)v.n, (const char *)v.p);
        if (aModel[i] == 0) CHECK(!strcmp(z, "before"));
        if (aModel[i] > 0) CHECK_EQ(atoi(z + 1), aModel[i]);
        nLive++;
      }
      if (pass == 0) { /* the snapshot from before the commit */
        rc = strata_get(db, pSnap, zKey, strlen(zKey), &v);
        CHECK_EQ(rc, i % 3 == 0 ? STRATA_OK : STRATA_NOTFOUND);
      }
      strata_value_free(&v);
    }
    CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
    for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) nSeen++;
    CHECK_EQ(strata_iter_status(it), STRATA_OK);
    strata_iter_free(it);
    CHECK_EQ(nSeen, nLive);
    if (pass == 0) { /* the same again after recovery from the WAL */
      strata_snapshot_release(db, pSnap);
      strata_close(db);
      db = openDb(zDir, 100);
      if (!db) return;
    }
  }
  strata_close(db);
  test_rmdir(zDir);
}

/* Read back before the commit (the commit inserts from the index), and not
** (the commit sorts the batch), with short keys and with long keys that
** share their first 8 bytes (the sort's prefix ties). */
static void test_commit_key_order(void) {
  commitKeyOrder("txn_order", "k%07d", 1);
  commitKeyOrder("txn_order2", "k%07d", 0);
  commitKeyOrder("txn_order3", "common/prefix/%07d", 0);
  commitKeyOrder("txn_order4", "%d", 0);
}

/* A commit that sorts its batch reads the operations back from the batch
** encoding: keys and values on both sides of the one-byte length limit
** (128), empty values and deletions must all arrive intact. */
static void test_commit_lengths(void) {
  enum { NOP = 600 };
  const char *zDir = test_dir("txn_lengths");
  strata *db = openDb(zDir, 100);
  strata_txn *t = NULL;
  static unsigned char aKey[NOP][300], aVal[1000];
  size_t i, aN[NOP];
  if (!db) return;
  for (i = 0; i < sizeof(aVal); i++) aVal[i] = (unsigned char)(i * 7 + 1);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &t), STRATA_OK);
  for (i = 0; i < NOP; i++) {
    aN[i] = 1 + (i * 37) % 299; /* 1..299 bytes */
    memset(aKey[i], 'k', aN[i]);
    aKey[i][0] = (unsigned char)(i >> 8);
    aKey[i][aN[i] - 1] = (unsigned char)i;
    if (i % 5 == 4) {
      CHECK_EQ(strata_txn_delete(t, aKey[i], aN[i]), STRATA_OK);
    } else {
      CHECK_EQ(strata_txn_put(t, aKey[i], aN[i], aVal, (i * 131) % 1000), STRATA_OK);
    }
  }
  CHECK_EQ(strata_txn_commit(t), STRATA_OK);
  for (i = 0; i < NOP; i++) {
    strata_value v = {0};
    int rc = strata_get(db, NULL, aKey[i], aN[i], &v);
    if (i % 5 == 4) {
      CHECK_EQ(rc, STRATA_NOTFOUND);
    } else {
      CHECK_EQ(rc, STRATA_OK);
      CHECK_EQ(v.n, (i * 131) % 1000);
      CHECK(v.n == 0 || memcmp(v.p, aVal, v.n) == 0);
    }
    strata_value_free(&v);
  }
  strata_close(db);
  test_rmdir(zDir);
}

/* Lookups of a transaction keep a read view (memtables + version, with the
** tables it probed pinned) between calls and take a new one when the
** database has changed. Flushes, compactions and deletions after the
** transaction began must not change what it reads. */
static void test_cached_view(void) {
  enum { NKEY = 2000 };
  const char *zDir = test_dir("txn_view");
  strata *db = openDb(zDir, 100);
  strata_txn *t = NULL;
  char zKey[32], zVal[128], z[128];
  int i, round;
  if (!db) return;
  for (i = 0; i < NKEY; i++) {
    snprintf(zKey, sizeof(zKey), "k%06d", i);
    snprintf(zVal, sizeof(zVal), "%-60s", "r0");
    strata_put(db, zKey, strlen(zKey), zVal, strlen(zVal));
  }
  CHECK_EQ(strata_flush(db), STRATA_OK);
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_READ, &t), STRATA_OK);
  CHECK_EQ(tget(t, "k000007", z), STRATA_OK);
  for (round = 1; round <= 4; round++) {
    for (i = 0; i < NKEY; i++) {
      snprintf(zKey, sizeof(zKey), "k%06d", i);
      snprintf(zVal, sizeof(zVal), "r%-59d", round);
      if (i % 7 == round) {
        strata_delete(db, zKey, strlen(zKey));
      } else {
        strata_put(db, zKey, strlen(zKey), zVal, strlen(zVal));
      }
    }
    if (round % 2) CHECK_EQ(strata_flush(db), STRATA_OK);
    if (round == 3) CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
    for (i = 0; i < NKEY; i += 3) {
      snprintf(zKey, sizeof(zKey), "k%06d", i);
      CHECK_EQ(tget(t, zKey, z), STRATA_OK); /* the snapshot's value */
      CHECK(!strncmp(z, "r0 ", 3));
      if (i % 7 == round) {
        CHECK_EQ(dget(db, zKey, z), STRATA_NOTFOUND);
      } else {
        CHECK_EQ(dget(db, zKey, z), STRATA_OK);
        CHECK_EQ(atoi(z + 1), round);
      }
    }
  }
  CHECK_EQ(strata_txn_commit(t), STRATA_OK);
  strata_close(db);
  test_rmdir(zDir);
}

typedef struct ViewArg {
  strata *db;
  _Atomic int *pbStop;
  int nBad;
  _Atomic int nRead;
  _Atomic int bDone; /* the reader has stopped */
} ViewArg;

/* The writer calls this every VIEW_SYNC_EVERY writes: it waits until each
** reader has finished a read since the last call (or has stopped), so the
** readers run while the database changes however the threads are
** scheduled. */
#define VIEW_SYNC_EVERY 500
static void waitForViewReaders(ViewArg *a, int *anSeen) {
  int j;
  for (j = 0; j < 2; j++) {
    while (atomic_load(&a[j].nRead) == anSeen[j] && !atomic_load(&a[j].bDone)) sched_yield();
    anSeen[j] = atomic_load(&a[j].nRead);
  }
}

/* Read "a" and "b" (always written together with the same number) in read
** transactions while the database flushes and compacts under them. */
static void *viewReaderMain(void *p) {
  ViewArg *a = p;
  long lastSeen = 0;
  while (!atomic_load(a->pbStop)) {
    strata_txn *t = NULL;
    char za[128], zb[128], za2[128];
    if (strata_txn_begin(a->db, STRATA_TXN_READ, &t) != STRATA_OK) {
      a->nBad++;
      break;
    }
    for (int j = 0; j < 20; j++) {
      int ra = tget(t, "a", za), rb = tget(t, "b", zb), ra2 = tget(t, "a", za2);
      if (ra != rb || ra != ra2 || (ra == STRATA_OK && (strcmp(za, zb) || strcmp(za, za2)))) {
        a->nBad++;
      }
      if (ra == STRATA_OK) {
        if (atol(za) < lastSeen) a->nBad++; /* snapshots never go back in time */
        if (j == 0) lastSeen = atol(za);
      }
      atomic_fetch_add(&a->nRead, 1);
    }
    strata_txn_commit(t);
  }
  atomic_store(&a->bDone, 1);
  return NULL;
}

static void test_cached_view_concurrent(void) {
  const char *zDir = test_dir("txn_viewmt");
  strata *db = openDb(zDir, 1000);
  _Atomic int bStop = 0;
  pthread_t th[2];
  ViewArg a[2];
  char zVal[160];
  int i, n, nWrite = test_valgrind() ? 1500 : 6000; /* valgrind runs one thread at a time */
  int anSeen[2] = {0, 0};
  if (!db) return;
  for (i = 0; i < 2; i++) {
    a[i].db = db;
    a[i].pbStop = &bStop;
    a[i].nBad = 0;
    atomic_store(&a[i].nRead, 0);
    atomic_store(&a[i].bDone, 0);
    pthread_create(&th[i], NULL, viewReaderMain, &a[i]);
  }
  for (n = 1; n <= nWrite; n++) {
    strata_batch *b = NULL;
    char zFill[32];
    if (n % VIEW_SYNC_EVERY == 1) waitForViewReaders(a, anSeen);
    CHECK_EQ(strata_batch_new(&b), STRATA_OK);
    if (!b) break;
    snprintf(zVal, sizeof(zVal), "%-100d", n);
    strata_batch_put(b, "a", 1, zVal, strlen(zVal));
    strata_batch_put(b, "b", 1, zVal, strlen(zVal));
    snprintf(zFill, sizeof(zFill), "fill%06d", n % 1500); /* more tables to compact */
    strata_batch_put(b, zFill, strlen(zFill), zVal, strlen(zVal));
    CHECK_EQ(strata_write(db, b), STRATA_OK);
    strata_batch_free(b);
  }
  atomic_store(&bStop, 1);
  for (i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    CHECK_EQ(a[i].nBad, 0);
    /* A read between every VIEW_SYNC_EVERY writes: fewer means it stopped early. */
    CHECK(atomic_load(&a[i].nRead) >= (nWrite + VIEW_SYNC_EVERY - 1) / VIEW_SYNC_EVERY);
  }
  strata_close(db);
  test_rmdir(zDir);
}

int main(void) {
  RUN(test_own_writes_and_commit);
  RUN(test_snapshot_isolation);
  RUN(test_savepoints);
  RUN(test_txn_iterator);
  RUN(test_counter_no_lost_updates);
  RUN(test_commit_key_order);
  RUN(test_commit_lengths);
  RUN(test_cached_view);
  RUN(test_cached_view_concurrent);
  return TEST_SUMMARY();
}
