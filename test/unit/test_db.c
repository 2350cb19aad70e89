/*
** test_db.c -- the public API end to end: open/close/reopen, put/get/delete,
** batches, iterators with bounds in both directions, snapshots, flush with
** many L0 tables, option and misuse errors, concurrency, statistics.
*/
#include "strata.h"
#include "strataInt.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

static strata *openDb(const char *zDir, size_t nMem) {
  strata_options o;
  strata *db = NULL;
  strata_options_init(&o);
  o.memtable_size = nMem;
  o.block_size = 512;
  o.disable_compaction = 1;
  if (strata_open(zDir, &o, &db) != STRATA_OK) {
    fprintf(stderr, "open %s: %s\n", zDir, strata_errmsg());
    return NULL;
  }
  return db;
}

static int getStr(strata *db, const strata_snapshot *s, const char *k, char *zOut, size_t nOut) {
  strata_value v = {0};
  int rc = strata_get(db, s, k, strlen(k), &v);
  if (rc == STRATA_OK) {
    size_t n = v.n < nOut - 1 ? v.n : nOut - 1;
    memcpy(zOut, v.p, n);
    zOut[n] = 0;
  }
  strata_value_free(&v);
  return rc;
}

static void test_basic(void) {
  const char *zDir = test_dir("db_basic");
  strata *db = openDb(zDir, 1 << 20);
  char z[64];
  CHECK(db != NULL);
  if (!db) return;
  CHECK_EQ(strata_put(db, "hello", 5, "world", 5), STRATA_OK);
  CHECK_EQ(strata_put(db, "", 0, "empty-key", 9), STRATA_OK);
  CHECK_EQ(strata_put(db, "k\0x", 3, "nul", 3), STRATA_OK);
  CHECK_EQ(getStr(db, NULL, "hello", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "world"));
  CHECK_EQ(getStr(db, NULL, "", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "empty-key"));
  CHECK_EQ(getStr(db, NULL, "hell", z, sizeof z), STRATA_NOTFOUND);
  CHECK_EQ(getStr(db, NULL, "hello!", z, sizeof z), STRATA_NOTFOUND);
  CHECK_EQ(strata_put(db, "hello", 5, "again", 5), STRATA_OK);
  CHECK_EQ(getStr(db, NULL, "hello", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "again"));
  CHECK_EQ(strata_delete(db, "hello", 5), STRATA_OK);
  CHECK_EQ(getStr(db, NULL, "hello", z, sizeof z), STRATA_NOTFOUND);
  CHECK_EQ(strata_delete(db, "never", 5), STRATA_OK);
  CHECK_EQ(strata_close(db), STRATA_OK);
  db = openDb(zDir, 1 << 20);
  CHECK(db != NULL);
  if (!db) return;
  CHECK_EQ(getStr(db, NULL, "hello", z, sizeof z), STRATA_NOTFOUND);
  CHECK_EQ(getStr(db, NULL, "", z, sizeof z), STRATA_OK);
  {
    strata_value v = {0};
    CHECK_EQ(strata_get(db, NULL, "k\0x", 3, &v), STRATA_OK);
    CHECK(v.n == 3 && !memcmp(v.p, "nul", 3));
    strata_value_free(&v);
  }
  CHECK_EQ(strata_close(db), STRATA_OK);
  test_rmdir(zDir);
}

static void test_batch_atomic(void) {
  const char *zDir = test_dir("db_batch");
  strata *db = openDb(zDir, 1 << 20);
  strata_batch *b = NULL;
  char z[64];
  if (!db) return;
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  strata_batch_put(b, "a", 1, "1", 1);
  strata_batch_put(b, "b", 1, "2", 1);
  strata_batch_delete(b, "a", 1);
  strata_batch_put(b, "c", 1, "3", 1);
  strata_batch_put(b, "b", 1, "22", 2);
  CHECK_EQ(strata_batch_count(b), 5);
  CHECK_EQ(strata_write(db, b), STRATA_OK);
  CHECK_EQ(getStr(db, NULL, "a", z, sizeof z), STRATA_NOTFOUND);
  CHECK_EQ(getStr(db, NULL, "b", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "22"));
  CHECK_EQ(getStr(db, NULL, "c", z, sizeof z), STRATA_OK);
  strata_batch_clear(b);
  CHECK_EQ(strata_batch_count(b), 0);
  CHECK_EQ(strata_write(db, b), STRATA_OK); /* empty batch is fine */
  /* Oversized key. */
  {
    size_t n = STRATA_MAX_KEY + 1;
    char *big = calloc(1, n);
    CHECK_EQ(strata_batch_put(b, big, n, "x", 1), STRATA_TOOBIG);
    CHECK_EQ(strata_put(db, big, n, "x", 1), STRATA_TOOBIG);
    CHECK_EQ(strata_put(db, big, STRATA_MAX_KEY, "max", 3), STRATA_OK);
    free(big);
  }
  strata_batch_free(b);
  strata_close(db);
  test_rmdir(zDir);
}

/* Reference data for iterator tests: keys k0000..k1999, even ones only,
** spread across several L0 tables and the memtable, with overwrites and
** deletions layered on top. */
static void fillLayers(strata *db) {
  int i, layer;
  char k[16], v[32];
  for (layer = 0; layer < 4; layer++) {
    for (i = layer; i < 2000; i += 2) {
      snprintf(k, sizeof k, "k%04d", i - (i % 2));
      snprintf(v, sizeof v, "v%d-%d", i - (i % 2), layer);
      strata_put(db, k, 5, v, strlen(v));
    }
    /* Keys that are deleted in a later layer. */
    for (i = 1; i < 2000; i += 2) {
      snprintf(k, sizeof k, "k%04d", i);
      if (layer < 3) {
        strata_put(db, k, 5, "doomed", 6);
      } else {
        strata_delete(db, k, 5);
      }
    }
    if (layer < 3) strata_flush(db);
  }
}

static void checkKey(strata_iter *it, int i) {
  char k[16];
  size_t n;
  const void *p;
  snprintf(k, sizeof k, "k%04d", i);
  if (i < 0) {
    CHECK(!strata_iter_valid(it));
    return;
  }
  CHECK(strata_iter_valid(it));
  if (!strata_iter_valid(it)) return;
  p = strata_iter_key(it, &n);
  CHECK(n == 5 && !memcmp(p, k, 5));
  p = strata_iter_value(it, &n);
  {
    char v[32];
    snprintf(v, sizeof v, "v%d-", i);
    CHECK(n > strlen(v) && !memcmp(p, v, strlen(v)));
  }
}

static void test_iterators(void) {
  const char *zDir = test_dir("db_iter");
  strata *db = openDb(zDir, 64 << 10);
  strata_iter *it = NULL;
  strata_read_options ro;
  strata_stats st;
  int i, n;
  if (!db) return;
  fillLayers(db);
  strata_get_stats(db, &st);
  CHECK(st.level_files[0] >= 3);
  CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
  strata_iter_seek_first(it);
  for (i = 0, n = 0; strata_iter_valid(it); strata_iter_next(it), i += 2, n++) checkKey(it, i);
  CHECK_EQ(n, 1000);
  strata_iter_seek_last(it);
  for (i = 1998, n = 0; strata_iter_valid(it); strata_iter_prev(it), i -= 2, n++) checkKey(it, i);
  CHECK_EQ(n, 1000);
  strata_iter_seek(it, "k0101", 5);
  checkKey(it, 102);
  strata_iter_prev(it);
  checkKey(it, 100);
  strata_iter_next(it);
  checkKey(it, 102);
  strata_iter_seek_for_prev(it, "k0101", 5);
  checkKey(it, 100);
  strata_iter_next(it);
  checkKey(it, 102);
  strata_iter_seek_for_prev(it, "k0100", 5);
  checkKey(it, 100);
  strata_iter_seek(it, "k9", 2);
  CHECK(!strata_iter_valid(it));
  strata_iter_seek_for_prev(it, "a", 1);
  CHECK(!strata_iter_valid(it));
  strata_iter_seek_for_prev(it, "z", 1);
  checkKey(it, 1998);
  CHECK_EQ(strata_iter_status(it), STRATA_OK);
  strata_iter_free(it);

  /* Bounds [k0500, k0600). */
  strata_read_options_init(&ro);
  ro.lower = "k0500";
  ro.nLower = 5;
  ro.upper = "k0600";
  ro.nUpper = 5;
  CHECK_EQ(strata_iter_new(db, &ro, &it), STRATA_OK);
  strata_iter_seek_first(it);
  checkKey(it, 500);
  for (n = 0; strata_iter_valid(it); strata_iter_next(it)) n++;
  CHECK_EQ(n, 50);
  strata_iter_seek_last(it);
  checkKey(it, 598);
  for (n = 0; strata_iter_valid(it); strata_iter_prev(it)) n++;
  CHECK_EQ(n, 50);
  strata_iter_seek(it, "k0001", 5);
  checkKey(it, 500);
  strata_iter_seek(it, "k0700", 5);
  CHECK(!strata_iter_valid(it));
  strata_iter_seek_for_prev(it, "k0900", 5);
  checkKey(it, 598);
  strata_iter_seek_for_prev(it, "k0400", 5);
  CHECK(!strata_iter_valid(it));
  strata_iter_free(it);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_snapshots(void) {
  const char *zDir = test_dir("db_snap");
  strata *db = openDb(zDir, 32 << 10);
  const strata_snapshot *s1, *s2;
  strata_iter *it = NULL;
  strata_read_options ro;
  char z[64];
  int i, n;
  if (!db) return;
  strata_put(db, "x", 1, "1", 1);
  s1 = strata_snapshot_new(db);
  strata_put(db, "x", 1, "2", 1);
  strata_put(db, "y", 1, "new", 3);
  s2 = strata_snapshot_new(db);
  strata_delete(db, "x", 1);
  CHECK(strata_snapshot_sequence(s2) > strata_snapshot_sequence(s1));
  CHECK_EQ(getStr(db, s1, "x", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "1"));
  CHECK_EQ(getStr(db, s1, "y", z, sizeof z), STRATA_NOTFOUND);
  CHECK_EQ(getStr(db, s2, "x", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "2"));
  CHECK_EQ(getStr(db, NULL, "x", z, sizeof z), STRATA_NOTFOUND);
  /* Snapshots survive flushes. */
  for (i = 0; i < 3000; i++) {
    char k[16];
    snprintf(k, sizeof k, "f%05d", i);
    strata_put(db, k, strlen(k), "filler-filler-filler", 20);
  }
  strata_flush(db);
  CHECK_EQ(getStr(db, s1, "x", z, sizeof z), STRATA_OK);
  CHECK(!strcmp(z, "1"));
  strata_read_options_init(&ro);
  ro.snapshot = s1;
  CHECK_EQ(strata_iter_new(db, &ro, &it), STRATA_OK);
  for (strata_iter_seek_first(it), n = 0; strata_iter_valid(it); strata_iter_next(it)) n++;
  CHECK_EQ(n, 1);
  strata_iter_free(it);
  /* close refuses while a snapshot is held */
  CHECK_EQ(strata_close(db), STRATA_MISUSE);
  strata_snapshot_release(db, s1);
  strata_snapshot_release(db, s2);
  /* A released snapshot's memory is reused by the next one (db.c keeps
  ** one): it must read as of its own creation, and close must not count
  ** the spare as held. */
  for (i = 0; i < 3; i++) {
    char v[8];
    snprintf(v, sizeof v, "v%d", i);
    s1 = strata_snapshot_new(db);
    CHECK(s1 != NULL);
    strata_put(db, "x", 1, v, strlen(v));
    s2 = strata_snapshot_new(db);
    CHECK(s1 != s2);
    CHECK(strata_snapshot_sequence(s2) > strata_snapshot_sequence(s1));
    CHECK_EQ(getStr(db, s2, "x", z, sizeof z), STRATA_OK);
    CHECK(!strcmp(z, v));
    CHECK_EQ(getStr(db, s1, "x", z, sizeof z), i == 0 ? STRATA_NOTFOUND : STRATA_OK);
    strata_snapshot_release(db, s2);
    strata_snapshot_release(db, s1);
  }
  CHECK_EQ(strata_close(db), STRATA_OK);
  test_rmdir(zDir);
}

static void test_many_flushes_reopen(void) {
  const char *zDir = test_dir("db_flush");
  strata *db = openDb(zDir, 16 << 10);
  int i;
  strata_stats st;
  char z[64];
  if (!db) return;
  for (i = 0; i < 20000; i++) {
    char k[16], v[32];
    snprintf(k, sizeof k, "key%06d", (i * 7919) % 20000);
    snprintf(v, sizeof v, "val%d", i);
    CHECK_EQ(strata_put(db, k, strlen(k), v, strlen(v)), STRATA_OK);
  }
  strata_get_stats(db, &st);
  CHECK(st.flushes > 5);
  CHECK(st.user_bytes_written > 0 && st.disk_bytes_written > 0);
  strata_close(db);
  db = openDb(zDir, 16 << 10);
  if (!db) return;
  for (i = 0; i < 20000; i += 37) {
    char k[16], v[32];
    int j = 0;
    /* value of key i is from the write where (j*7919)%20000 == i */
    while ((j * 7919) % 20000 != i) j++;
    snprintf(k, sizeof k, "key%06d", i);
    snprintf(v, sizeof v, "val%d", j);
    CHECK_EQ(getStr(db, NULL, k, z, sizeof z), STRATA_OK);
    CHECK(!strcmp(z, v));
  }
  strata_get_stats(db, &st);
  CHECK(st.bloom_checks > 0);
  strata_close(db);
  test_rmdir(zDir);
}

static void test_options_and_errors(void) {
  const char *zDir = test_dir("db_err");
  strata_options o;
  strata *db = NULL, *db2 = NULL;
  char zCopy[4200];
  snprintf(zCopy, sizeof zCopy, "%s", zDir);
  strata_options_init(&o);
  o.create_if_missing = 0;
  CHECK_EQ(strata_open(zCopy, &o, &db), STRATA_CANTOPEN);
  CHECK(db == NULL);
  CHECK(strstr(strata_errmsg(), "create_if_missing") != NULL);
  strata_options_init(&o);
  o.compression = 9;
  CHECK_EQ(strata_open(zCopy, &o, &db), STRATA_ERROR);
  o.compression = STRATA_COMPRESSION_NONE;
  o.sync = 7;
  CHECK_EQ(strata_open(zCopy, &o, &db), STRATA_ERROR);
  CHECK(strstr(strata_errmsg(), "sync") != NULL);
  strata_options_init(&o);
  o.memtable_size = 1;
  CHECK_EQ(strata_open(zCopy, &o, &db), STRATA_ERROR);
  strata_options_init(&o);
  CHECK_EQ(strata_open(zCopy, &o, &db), STRATA_OK);
  CHECK_EQ(strata_open(zCopy, &o, &db2), STRATA_BUSY);
  CHECK(db2 == NULL);
  strata_close(db);
  o.error_if_exists = 1;
  CHECK_EQ(strata_open(zCopy, &o, &db2), STRATA_ERROR);
  CHECK_EQ(strata_destroy(zCopy, NULL), STRATA_OK);
  CHECK(access(zCopy, F_OK) != 0);
  /* A directory with foreign files is refused and left alone. */
  mkdir(zCopy, 0755);
  {
    char zf[4300];
    FILE *fp;
    snprintf(zf, sizeof zf, "%s/000007.sst", zCopy);
    fp = fopen(zf, "w");
    fputs("not a table", fp);
    fclose(fp);
    strata_options_init(&o);
    CHECK_EQ(strata_open(zCopy, &o, &db), STRATA_CANTOPEN);
    CHECK(access(zf, F_OK) == 0);
  }
  CHECK_EQ(strata_put(NULL, "a", 1, "b", 1), STRATA_MISUSE);
  CHECK_EQ(strata_close(NULL), STRATA_OK);
  CHECK(strcmp(strata_errstr(STRATA_CORRUPT), "database is corrupt") == 0);
  test_rmdir(zCopy);
}

static void test_large_values(void) {
  const char *zDir = test_dir("db_large");
  strata *db = openDb(zDir, 256 << 10);
  size_t n = 3 << 20, i;
  u8 *big = malloc(n);
  strata_value v = {0};
  if (!db) return;
  for (i = 0; i < n; i++) big[i] = (u8)(i * 131 + (i >> 12));
  CHECK_EQ(strata_put(db, "big", 3, big, n), STRATA_OK);
  CHECK_EQ(strata_put(db, "small", 5, "s", 1), STRATA_OK);
  CHECK_EQ(strata_get(db, NULL, "big", 3, &v), STRATA_OK);
  CHECK(v.n == n && !memcmp(v.p, big, n));
  strata_flush(db);
  strata_close(db);
  db = openDb(zDir, 256 << 10);
  CHECK_EQ(strata_get(db, NULL, "big", 3, &v), STRATA_OK);
  CHECK(v.n == n && !memcmp(v.p, big, n));
  CHECK_EQ(strata_get(db, NULL, "small", 5, &v), STRATA_OK);
  CHECK(v.n == 1);
  strata_value_free(&v);
  free(big);
  strata_close(db);
  test_rmdir(zDir);
}

/* Several writer threads; each key records its writer; all must land. */
typedef struct WArg {
  strata *db;
  int id;
  int rc;
} WArg;

static void *writerMain(void *p) {
  WArg *a = p;
  int i;
  for (i = 0; i < 5000; i++) {
    char k[32], v[32];
    snprintf(k, sizeof k, "t%d-%05d", a->id, i);
    snprintf(v, sizeof v, "%d:%d", a->id, i);
    if (i % 10 == 0) {
      strata_batch *b;
      strata_batch_new(&b);
      strata_batch_put(b, k, strlen(k), v, strlen(v));
      strata_batch_put(b, "shared", 6, v, strlen(v));
      a->rc |= strata_write(a->db, b);
      strata_batch_free(b);
    } else {
      a->rc |= strata_put(a->db, k, strlen(k), v, strlen(v));
    }
  }
  return NULL;
}

static _Atomic int bStopReaders; /* atomic: read by the reader threads */
static void *readerMain(void *p) {
  WArg *a = p;
  while (!bStopReaders) {
    strata_iter *it = NULL;
    char prev[64] = "";
    size_t nPrev = 0;
    if (strata_iter_new(a->db, NULL, &it) != STRATA_OK) {
      a->rc = 1;
      break;
    }
    for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) {
      size_t n;
      const char *k = strata_iter_key(it, &n);
      if (nPrev && strataUkeyCompare((const u8 *)prev, nPrev, (const u8 *)k, n) >= 0) a->rc = 2;
      if (n < sizeof prev) {
        memcpy(prev, k, n);
        nPrev = n;
      }
    }
    if (strata_iter_status(it)) a->rc = 3;
    strata_iter_free(it);
    /* Block briefly between scans: under valgrind, which runs one thread
    ** at a time, two readers that never block starve the writers. */
    usleep(200);
  }
  return NULL;
}

static void test_concurrent(void) {
  const char *zDir = test_dir("db_conc");
  strata *db = openDb(zDir, 128 << 10);
  pthread_t aW[4], aR[2];
  WArg aArg[6];
  int i, j;
  char z[64];
  if (!db) return;
  bStopReaders = 0;
  for (i = 0; i < 6; i++) {
    aArg[i].db = db;
    aArg[i].id = i;
    aArg[i].rc = 0;
  }
  for (i = 0; i < 2; i++) pthread_create(&aR[i], NULL, readerMain, &aArg[4 + i]);
  for (i = 0; i < 4; i++) pthread_create(&aW[i], NULL, writerMain, &aArg[i]);
  for (i = 0; i < 4; i++) pthread_join(aW[i], NULL);
  bStopReaders = 1;
  for (i = 0; i < 2; i++) pthread_join(aR[i], NULL);
  for (i = 0; i < 6; i++) CHECK_EQ(aArg[i].rc, 0);
  for (i = 0; i < 4; i++) {
    for (j = 0; j < 5000; j += 99) {
      char k[32], v[32];
      snprintf(k, sizeof k, "t%d-%05d", i, j);
      snprintf(v, sizeof v, "%d:%d", i, j);
      CHECK_EQ(getStr(db, NULL, k, z, sizeof z), STRATA_OK);
      CHECK(!strcmp(z, v));
    }
  }
  strata_close(db);
  test_rmdir(zDir);
}

static void test_sync_modes_reopen(void) {
  int mode;
  for (mode = STRATA_SYNC_OFF; mode <= STRATA_SYNC_FULL; mode++) {
    const char *zDir = test_dir("db_sync");
    strata_options o;
    strata *db = NULL;
    char z[64];
    int i;
    strata_options_init(&o);
    o.sync = mode;
    CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
    if (!db) return;
    for (i = 0; i < 100; i++) {
      char k[16];
      snprintf(k, sizeof k, "s%03d", i);
      strata_put(db, k, strlen(k), k, strlen(k));
    }
    CHECK_EQ(strata_sync(db), STRATA_OK);
    CHECK_EQ(strata_close(db), STRATA_OK);
    CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
    CHECK_EQ(getStr(db, NULL, "s099", z, sizeof z), STRATA_OK);
    CHECK(!strcmp(z, "s099"));
    strata_close(db);
    test_rmdir(zDir);
  }
}

/* compress_from_level = 2 stores L0 uncompressed: the same data takes more
** room there and reads back the same. */
static void test_compress_from_level(void) {
  u64 aBytes[2];
  int k;
  for (k = 0; k < 2; k++) {
    const char *zDir = test_dir("db_cfl");
    strata_options o;
    strata *db = NULL;
    strata_stats st;
    char z[128];
    int i;
    strata_options_init(&o);
    o.compress_from_level = k ? 2 : 0;
    CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
    if (!db) return;
    for (i = 0; i < 5000; i++) {
      char key[16], v[101];
      snprintf(key, sizeof key, "c%05d", i);
      memset(v, 'a' + i % 7, 100);
      v[100] = 0;
      strata_put(db, key, strlen(key), v, 100);
    }
    CHECK_EQ(strata_flush(db), STRATA_OK);
    strata_get_stats(db, &st);
    aBytes[k] = st.level_bytes[0];
    CHECK_EQ(getStr(db, NULL, "c04321", z, sizeof z), STRATA_OK);
    CHECK(strlen(z) == 100 && z[0] == 'a' + 4321 % 7);
    strata_close(db);
    test_rmdir(zDir);
  }
  CHECK(aBytes[1] > 2 * aBytes[0]);
  {
    strata_options o;
    strata *db = NULL;
    strata_options_init(&o);
    o.compress_from_level = 99;
    CHECK_EQ(strata_open(test_dir("db_cfl_bad"), &o, &db), STRATA_ERROR);
  }
}

/* Append the iterator's entry as "key=value;" to pOut. */
static void dumpEntry(strata_iter *it, StrataBuf *pOut) {
  size_t n;
  const void *p = strata_iter_key(it, &n);
  strataBufAppend(pOut, p, n);
  strataBufAppend(pOut, "=", 1);
  p = strata_iter_value(it, &n);
  strataBufAppend(pOut, p, n);
  strataBufAppend(pOut, ";", 1);
}

/* Everything an iterator shows, forward then backward, as one string
** "key=value;" per entry (a reverse scan must mirror the forward one). */
static char *iterDump(strata_iter *it) {
  StrataBuf fwd = {0}, rev = {0};
  for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) dumpEntry(it, &fwd);
  for (strata_iter_seek_last(it); strata_iter_valid(it); strata_iter_prev(it)) dumpEntry(it, &rev);
  strataBufAppend(&fwd, "|", 1);
  strataBufAppend(&fwd, rev.a, rev.n);
  strataBufAppend(&fwd, "", 1);
  strataBufFree(&rev);
  return (char *)fwd.a;
}

/* 1 if the refreshed iterator `it` shows exactly what a new iterator with
** the same options shows. */
static int sameAsNew(strata *db, strata_iter *it, const strata_read_options *ro) {
  strata_iter *pNew = NULL;
  char *zA, *zB;
  int bSame;
  if (strata_iter_new(db, ro, &pNew) != STRATA_OK) return 0;
  zA = iterDump(it);
  zB = iterDump(pNew);
  bSame = zA && zB && strcmp(zA, zB) == 0 && strata_iter_status(it) == STRATA_OK;
  if (!bSame) fprintf(stderr, "  refreshed: %.200s\n  new:       %.200s\n", zA, zB);
  strataFreeMem(zA);
  strataFreeMem(zB);
  strata_iter_free(pNew);
  return bSame;
}

/* Table files in the directory (live and not yet deleted). */
static int countSst(const char *zDir) {
  char **az = NULL;
  int n = 0, i, nSst = 0;
  u64 num;
  strata_env *env = strataEnvDefault();
  if (env->xListDir(env, zDir, &az, &n)) return -1;
  for (i = 0; i < n; i++) {
    if (strataParseFileName(az[i], &num) == STRATA_FILE_SST) nSst++;
  }
  strataFreeList(az, n);
  return nSst;
}

/* DEFERRED DELETION: deletes counted by the thread that makes them. */
static struct {
  pthread_mutex_t mu;
  pthread_t main;
  int nMain, nOther;
  strata_env env;
} gDel;

static int delCountDelete(strata_env *env, const char *zPath) {
  (void)env;
  pthread_mutex_lock(&gDel.mu);
  if (pthread_equal(pthread_self(), gDel.main)) {
    gDel.nMain++;
  } else {
    gDel.nOther++;
  }
  pthread_mutex_unlock(&gDel.mu);
  return strataEnvDefault()->xDelete(strataEnvDefault(), zPath);
}

static int liveFiles(strata *db) {
  strata_stats st;
  int i, n = 0;
  if (strata_get_stats(db, &st) != STRATA_OK) return -1;
  for (i = 0; i < STRATA_MAX_LEVELS; i++) n += st.level_files[i];
  return n;
}

/* Obsolete tables and flushed WALs are deleted by background threads, never
** by the thread that drops the last reference (here: the writer, and an
** iterator freed after a compaction); strata_wait_idle waits for them, and
** strata_close deletes what is still queued. */
static void test_deferred_deletion(void) {
  const char *zDir = test_dir("db_deferred_deletion");
  char k[32], v[100];
  strata_options o;
  strata *db = NULL;
  strata_iter *it = NULL;
  int i, nLive;
  pthread_mutex_init(&gDel.mu, NULL);
  gDel.main = pthread_self();
  gDel.nMain = gDel.nOther = 0;
  gDel.env = *strataEnvDefault();
  gDel.env.xDelete = delCountDelete;
  strata_options_init(&o);
  o.env = &gDel.env;
  o.memtable_size = 64 << 10;
  o.level_base_size = 256 << 10;
  o.target_file_size = 64 << 10;
  o.block_size = 512;
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  gDel.nMain = gDel.nOther = 0; /* open replaces the manifest itself */
  memset(v, 'v', sizeof v);
  /* Flushes and compactions while the writer reads (each get may take a
  ** new read view and drop the old one's last reference). */
  for (i = 0; i < 20000; i++) {
    strata_value got = {0};
    snprintf(k, sizeof k, "k%08d", (i * 7919) % 20000);
    CHECK_EQ(strata_put(db, k, strlen(k), v, sizeof v), STRATA_OK);
    if (i % 64 == 0) {
      CHECK_EQ(strata_get(db, NULL, k, strlen(k), &got), STRATA_OK);
      strata_value_free(&got);
    }
  }
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  /* An iterator holds the tables a full compaction replaces. */
  CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  nLive = liveFiles(db);
  CHECK(countSst(zDir) > nLive);
  strata_iter_free(it); /* the last reference, on this thread */
  {
    /* Closed at once (out of the memory budget); only the unlink waits. */
    strata_stats st;
    CHECK_EQ(strata_get_stats(db, &st), STRATA_OK);
    CHECK(st.open_files <= (uint64_t)nLive);
  }
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  CHECK_EQ(countSst(zDir), nLive);
  pthread_mutex_lock(&gDel.mu);
  CHECK(gDel.nOther > 0);
  CHECK_EQ(gDel.nMain, 0);
  pthread_mutex_unlock(&gDel.mu);
  /* Queued at close: strata_close deletes them. */
  CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
  CHECK_EQ(strata_put(db, "k00000001", 9, "new", 3), STRATA_OK);
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  nLive = liveFiles(db);
  strata_iter_free(it);
  CHECK_EQ(strata_close(db), STRATA_OK);
  CHECK_EQ(countSst(zDir), nLive);
  pthread_mutex_destroy(&gDel.mu);
}

/* A manifest fsync parked by a background thread until the test lets it go
** (or, so that a writer stuck behind it fails the test instead of hanging
** it, for at most ten seconds). */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t main;
  int bArmed, bHeld, bRelease, bTimedOut;
  strata_env env;
} gSync;

typedef struct SyncFile {
  StrataFile base;
  StrataFile *pReal;
  int bManifest;
} SyncFile;

static int sfRead(StrataFile *f, void *p, size_t n, u64 off, size_t *pn) {
  StrataFile *r = ((SyncFile *)f)->pReal;
  return r->pMethods->xRead(r, p, n, off, pn);
}
static int sfAppend(StrataFile *f, const void *p, size_t n) {
  StrataFile *r = ((SyncFile *)f)->pReal;
  return r->pMethods->xAppend(r, p, n);
}
static int sfSize(StrataFile *f, u64 *pn) {
  StrataFile *r = ((SyncFile *)f)->pReal;
  return r->pMethods->xSize(r, pn);
}
static int sfTruncate(StrataFile *f, u64 n) {
  StrataFile *r = ((SyncFile *)f)->pReal;
  return r->pMethods->xTruncate(r, n);
}
static void sfClose(StrataFile *f) {
  StrataFile *r = ((SyncFile *)f)->pReal;
  r->pMethods->xClose(r);
  strataFreeMem(f);
}
static int sfSync(StrataFile *f) {
  SyncFile *p = (SyncFile *)f;
  pthread_mutex_lock(&gSync.mu);
  if (p->bManifest && gSync.bArmed && !gSync.bHeld && !pthread_equal(pthread_self(), gSync.main)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    gSync.bHeld = 1;
    pthread_cond_broadcast(&gSync.cv);
    while (!gSync.bRelease) {
      if (pthread_cond_timedwait(&gSync.cv, &gSync.mu, &ts) != 0) {
        gSync.bTimedOut = 1;
        break;
      }
    }
  }
  pthread_mutex_unlock(&gSync.mu);
  return p->pReal->pMethods->xSync(p->pReal);
}
static const StrataFileMethods syncFileMethods = {sfRead, sfAppend, sfSync, sfSize,
                                                  sfTruncate, sfClose, NULL};

static int sfOpen(strata_env *env, const char *zPath, int flags, StrataFile **ppFile) {
  SyncFile *p;
  StrataFile *pReal = NULL;
  int rc = strataEnvDefault()->xOpen(strataEnvDefault(), zPath, flags, &pReal);
  (void)env;
  if (rc) return rc;
  p = strataMallocZero(sizeof(*p));
  if (!p) {
    pReal->pMethods->xClose(pReal);
    return STRATA_NOMEM;
  }
  p->base.pMethods = &syncFileMethods;
  p->pReal = pReal;
  p->bManifest = strstr(zPath, "MANIFEST-") != NULL;
  *ppFile = &p->base;
  return STRATA_OK;
}

/* A flush's manifest record is synced without the database mutex: while a
** background thread is inside that fsync, the writer still commits and
** readers still read. */
static void test_manifest_sync_unlocked(void) {
  const char *zDir = test_dir("db_manifest_sync");
  char k[32], v[100];
  strata_options o;
  strata *db = NULL;
  strata_value got = {0};
  int i, bHeld = 0;
  pthread_mutex_init(&gSync.mu, NULL);
  pthread_cond_init(&gSync.cv, NULL);
  gSync.main = pthread_self();
  gSync.bArmed = gSync.bHeld = gSync.bRelease = gSync.bTimedOut = 0;
  gSync.env = *strataEnvDefault();
  gSync.env.xOpen = sfOpen;
  strata_options_init(&o);
  o.env = &gSync.env;
  o.memtable_size = 64 << 10;
  o.disable_compaction = 1;
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  memset(v, 'v', sizeof v);
  pthread_mutex_lock(&gSync.mu);
  gSync.bArmed = 1;
  pthread_mutex_unlock(&gSync.mu);
  /* One memtable and a bit (~150 bytes an entry): one switch, one flush,
  ** which parks at its manifest sync. */
  for (i = 0; i < 600; i++) {
    snprintf(k, sizeof k, "k%08d", i);
    CHECK_EQ(strata_put(db, k, strlen(k), v, sizeof v), STRATA_OK);
  }
  pthread_mutex_lock(&gSync.mu);
  while (!gSync.bHeld) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_cond_timedwait(&gSync.cv, &gSync.mu, &ts) != 0) break;
  }
  bHeld = gSync.bHeld;
  pthread_mutex_unlock(&gSync.mu);
  CHECK(bHeld);
  /* Commits and reads while it is parked (the new memtable stays under its
  ** size, so no switch has to wait for the flush). */
  for (i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "during%04d", i);
    CHECK_EQ(strata_put(db, k, strlen(k), v, sizeof v), STRATA_OK);
  }
  CHECK_EQ(strata_get(db, NULL, "during0042", 10, &got), STRATA_OK);
  CHECK_EQ(strata_get(db, NULL, "k00000000", 9, &got), STRATA_OK);
  pthread_mutex_lock(&gSync.mu);
  CHECK(!gSync.bTimedOut); /* nothing above waited for the parked sync */
  gSync.bRelease = 1;
  pthread_cond_broadcast(&gSync.cv);
  pthread_mutex_unlock(&gSync.mu);
  CHECK_EQ(strata_flush(db), STRATA_OK);
  strata_value_free(&got);
  CHECK_EQ(strata_close(db), STRATA_OK);
  /* Everything is there after reopening. */
  o.env = NULL;
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  CHECK_EQ(strata_get(db, NULL, "during0099", 10, &got), STRATA_OK);
  CHECK_EQ(strata_get(db, NULL, "k00000001", 9, &got), STRATA_OK);
  strata_value_free(&got);
  CHECK_EQ(strata_close(db), STRATA_OK);
  pthread_mutex_destroy(&gSync.mu);
  pthread_cond_destroy(&gSync.cv);
}

/* strata_iter_refresh: after puts, deletes, flushes and compactions it shows
** what a new iterator shows, at the newest state or at a snapshot, within
** its bounds; until refreshed it keeps its read point; it lets go of
** replaced files when refreshed; a transaction's iterator is refused. */
static void test_iter_refresh(void) {
  const char *zDir = test_dir("db_iter_refresh");
  strata *db = openDb(zDir, 64 << 10);
  strata_iter *it = NULL, *itB = NULL, *itT = NULL;
  strata_read_options ro, roB;
  const strata_snapshot *snap;
  strata_stats st;
  strata_txn *t = NULL;
  char k[16], v[32];
  char *zBefore, *zAfter;
  int i, nLive;
  if (!db) return;
  fillLayers(db);
  strata_read_options_init(&ro);
  strata_read_options_init(&roB);
  roB.lower = "k0500";
  roB.nLower = 5;
  roB.upper = "k0600";
  roB.nUpper = 5;
  CHECK_EQ(strata_iter_new(db, &ro, &it), STRATA_OK);
  CHECK_EQ(strata_iter_new(db, &roB, &itB), STRATA_OK);
  CHECK(sameAsNew(db, it, &ro));

  /* Writes in the memtable only: the iterator keeps its read point until
  ** refreshed, then sees them (new keys, overwrites, deletes). */
  zBefore = iterDump(it);
  for (i = 0; i < 2000; i += 7) {
    snprintf(k, sizeof k, "k%04d", i);
    snprintf(v, sizeof v, "new%d", i);
    if (i % 3 == 0) {
      strata_delete(db, k, 5);
    } else {
      strata_put(db, k, 5, v, strlen(v));
    }
  }
  strata_put(db, "a", 1, "first", 5);
  strata_put(db, "z", 1, "last", 4);
  zAfter = iterDump(it);
  CHECK(zBefore && zAfter && strcmp(zBefore, zAfter) == 0);
  strataFreeMem(zBefore);
  strataFreeMem(zAfter);
  CHECK_EQ(strata_iter_refresh(it, NULL), STRATA_OK);
  CHECK(!strata_iter_valid(it));
  CHECK(sameAsNew(db, it, &ro));
  CHECK_EQ(strata_iter_refresh(itB, NULL), STRATA_OK);
  CHECK(sameAsNew(db, itB, &roB));

  /* A snapshot: writes after it stay hidden when refreshed at it. */
  snap = strata_snapshot_new(db);
  CHECK(snap != NULL);
  ro.snapshot = snap;
  zBefore = iterDump(it);
  strata_delete(db, "a", 1);
  strata_put(db, "k0002", 5, "after-snap", 10);
  strata_put(db, "m", 1, "after-snap", 10);
  CHECK_EQ(strata_iter_refresh(it, snap), STRATA_OK);
  zAfter = iterDump(it);
  CHECK(zBefore && zAfter && strcmp(zBefore, zAfter) == 0);
  strataFreeMem(zBefore);
  strataFreeMem(zAfter);
  CHECK(sameAsNew(db, it, &ro));
  ro.snapshot = NULL;
  CHECK_EQ(strata_iter_refresh(it, NULL), STRATA_OK);
  CHECK(sameAsNew(db, it, &ro));

  /* A flush replaces the memtable, a compaction the files: refreshed, the
  ** iterator shows the same as a new one, at the snapshot and after it. */
  for (i = 1; i < 2000; i += 10) {
    snprintf(k, sizeof k, "k%04d", i);
    strata_put(db, k, 5, "flushed", 7);
  }
  CHECK_EQ(strata_flush(db), STRATA_OK);
  CHECK_EQ(strata_iter_refresh(it, NULL), STRATA_OK);
  CHECK(sameAsNew(db, it, &ro));
  CHECK_EQ(strata_iter_refresh(itB, NULL), STRATA_OK);
  CHECK(sameAsNew(db, itB, &roB));
  strata_put(db, "k0004", 5, "after-flush", 11);
  CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  ro.snapshot = snap;
  CHECK_EQ(strata_iter_refresh(it, snap), STRATA_OK);
  CHECK(sameAsNew(db, it, &ro));
  ro.snapshot = NULL;
  strata_snapshot_release(db, snap);

  /* Unrefreshed, itB still holds the files the compaction replaced; once
  ** both iterators are refreshed only the live files remain. */
  strata_get_stats(db, &st);
  for (i = 0, nLive = 0; i < STRATA_MAX_LEVELS; i++) nLive += st.level_files[i];
  CHECK(countSst(zDir) > nLive);
  CHECK_EQ(strata_iter_refresh(itB, NULL), STRATA_OK);
  CHECK_EQ(strata_iter_refresh(it, NULL), STRATA_OK);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK); /* a background thread deletes them */
  CHECK_EQ(countSst(zDir), nLive);
  CHECK(sameAsNew(db, it, &ro));
  CHECK(sameAsNew(db, itB, &roB));

  /* Refreshing twice with nothing in between changes nothing. */
  CHECK_EQ(strata_iter_refresh(it, NULL), STRATA_OK);
  CHECK_EQ(strata_iter_refresh(it, NULL), STRATA_OK);
  CHECK(sameAsNew(db, it, &ro));

  /* A transaction's iterator cannot be refreshed. */
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_READ, &t), STRATA_OK);
  CHECK_EQ(strata_txn_iter_new(t, NULL, &itT), STRATA_OK);
  CHECK_EQ(strata_iter_refresh(itT, NULL), STRATA_MISUSE);
  CHECK_EQ(strata_iter_refresh(NULL, NULL), STRATA_MISUSE);
  strata_iter_free(itT);
  strata_txn_rollback(t);

  strata_iter_free(it);
  strata_iter_free(itB);
  CHECK_EQ(strata_close(db), STRATA_OK);
  test_rmdir(zDir);
}

/* Point lookups racing flushes and compactions: one writer rewrites every
** key round after round ("r<round>"), deleting and restoring every 7th
** key on the way, through a tiny memtable, cache and files (so views are
** replaced, tables probed across several levels and blocks evicted all
** the time); readers get random keys and check that what they see is
** well formed, and that a key's round never goes backwards for one
** reader. */
#define GR_KEYS 1500
#define GR_ROUNDS 12
static _Atomic int nGetRound;
typedef struct GArg {
  strata *db;
  int rc;
  _Atomic u64 nGets;     /* a reader: gets done */
  _Atomic int bDone;     /* a reader: stopped */
  struct GArg *aReader;  /* the writer: the two readers */
} GArg;

/* The writer waits before each round until every reader has finished a get
** since its last wait (or has stopped), so the readers race every round
** however the threads are scheduled; a reader that never ran would
** otherwise let the test pass without testing anything. */
static void waitForReaders(GArg *a, u64 *anSeen) {
  int j;
  for (j = 0; j < 2; j++) {
    GArg *pR = &a->aReader[j];
    while (atomic_load(&pR->nGets) == anSeen[j] && !atomic_load(&pR->bDone)) sched_yield();
    anSeen[j] = atomic_load(&pR->nGets);
  }
}

static void *getWriterMain(void *p) {
  GArg *a = p;
  u64 anSeen[2] = {0, 0};
  int r, i;
  for (r = 1; r <= GR_ROUNDS && a->rc == 0; r++) {
    waitForReaders(a, anSeen);
    for (i = 0; i < GR_KEYS && a->rc == 0; i++) {
      char k[32], v[32];
      int j = (i * 7919) % GR_KEYS; /* a fixed shuffle */
      snprintf(k, sizeof k, "g%06d", j);
      snprintf(v, sizeof v, "r%d", r);
      if (j % 7 == 0 && strata_delete(a->db, k, strlen(k)) != STRATA_OK) a->rc = 1;
      if (strata_put(a->db, k, strlen(k), v, strlen(v)) != STRATA_OK) a->rc = 2;
    }
    atomic_store(&nGetRound, r);
  }
  return NULL;
}

static void *getReaderMain(void *p) {
  GArg *a = p;
  int aSeen[GR_KEYS] = {0};
  u64 x = 88172645463325252ull ^ (uintptr_t)p;
  strata_value v = {0};
  while (atomic_load(&nGetRound) < GR_ROUNDS && a->rc == 0) {
    int i, r, rc;
    char k[32];
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    i = (int)(x % GR_KEYS);
    snprintf(k, sizeof k, "g%06d", i);
    rc = strata_get(a->db, NULL, k, strlen(k), &v);
    /* Block now and then, so the writer is not starved under valgrind. */
    if (atomic_fetch_add(&a->nGets, 1) % 256 == 255) usleep(100);
    if (rc == STRATA_NOTFOUND && i % 7 == 0) continue; /* between delete and put */
    if (rc != STRATA_OK) {
      a->rc = 10 + rc;
    } else if (v.n < 2 || v.n > 3 || ((const char *)v.p)[0] != 'r') {
      a->rc = 3;
    } else {
      char z[4] = {0};
      memcpy(z, (const char *)v.p + 1, v.n - 1); /* v.p is not terminated */
      r = atoi(z);
      if (r < aSeen[i] || r < 0 || r > GR_ROUNDS) a->rc = 4;
      aSeen[i] = r;
    }
  }
  strata_value_free(&v);
  atomic_store(&a->bDone, 1);
  return NULL;
}

static void test_concurrent_gets(void) {
  const char *zDir = test_dir("db_gets");
  strata_options o;
  strata *db = NULL;
  pthread_t w, aR[2];
  GArg aArg[3];
  int i;
  strata_options_init(&o);
  o.memtable_size = 64 << 10;
  o.block_size = 512;
  o.cache_size = 48 << 10;
  o.target_file_size = 32 << 10;
  o.l0_compaction_trigger = 2;
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  for (i = 0; i < GR_KEYS; i++) {
    char k[32];
    snprintf(k, sizeof k, "g%06d", i);
    CHECK_EQ(strata_put(db, k, strlen(k), "r0", 2), STRATA_OK);
  }
  atomic_store(&nGetRound, 0);
  memset(aArg, 0, sizeof aArg);
  for (i = 0; i < 3; i++) aArg[i].db = db;
  aArg[0].aReader = &aArg[1];
  for (i = 0; i < 2; i++) pthread_create(&aR[i], NULL, getReaderMain, &aArg[1 + i]);
  pthread_create(&w, NULL, getWriterMain, &aArg[0]);
  pthread_join(w, NULL);
  atomic_store(&nGetRound, GR_ROUNDS); /* also if the writer failed */
  for (i = 0; i < 2; i++) pthread_join(aR[i], NULL);
  for (i = 0; i < 3; i++) CHECK_EQ(aArg[i].rc, 0);
  /* A get in every round (waitForReaders): fewer means a reader stopped early. */
  CHECK(atomic_load(&aArg[1].nGets) >= GR_ROUNDS && atomic_load(&aArg[2].nGets) >= GR_ROUNDS);
  CHECK_EQ(strata_wait_idle(db), STRATA_OK);
  for (i = 0; i < GR_KEYS; i++) {
    char k[32], z[32];
    snprintf(k, sizeof k, "g%06d", i);
    CHECK_EQ(getStr(db, NULL, k, z, sizeof z), STRATA_OK);
    CHECK(!strcmp(z, "r12"));
  }
  strata_close(db);
  test_rmdir(zDir);
}

/* FILE BOUNDS (db.c): lookups pick their tables through 8-byte windows of
** the files' bound keys after the prefix common to all of them. Keys here
** share a 25-byte prefix, and many share the next 8 bytes too or differ
** only in trailing zero bytes, so windows tie and the keys must decide;
** files sit in L0 and in deeper levels. Every key written must be found,
** and keys below, above and between them must not. */
#define FB_PREFIX "common-prefix-0123456789/"
static size_t fbKey(u8 *a, int i) {
  size_t n = sizeof(FB_PREFIX) - 1;
  memcpy(a, FB_PREFIX, n);
  switch (i % 4) {
    case 0: n += (size_t)sprintf((char *)a + n, "aaaaaaaa%06d", i); break; /* windows tie */
    case 1: n += (size_t)sprintf((char *)a + n, "b%d", i); break;          /* short tails */
    case 2: /* a tail followed by 1..3 zero bytes */
      n += (size_t)sprintf((char *)a + n, "z%05d", i);
      memset(a + n, 0, (size_t)(i % 3) + 1);
      n += (size_t)(i % 3) + 1;
      break;
    default: n += (size_t)sprintf((char *)a + n, "%08d-%d", i, i * 7); break;
  }
  return n;
}

static void test_file_bounds(void) {
  const char *zDir = test_dir("db_bounds");
  strata_options o;
  strata *db = NULL;
  strata_value v = {0};
  u8 k[64];
  int i, nBad = 0, pass;
  const int N = 6000;
  strata_options_init(&o);
  o.memtable_size = 32 << 10;
  o.block_size = 512;
  o.target_file_size = 16 << 10;
  CHECK_EQ(strata_open(zDir, &o, &db), STRATA_OK);
  if (!db) return;
  for (pass = 0; pass < 2; pass++) {
    for (i = 0; i < N; i++) {
      size_t n = fbKey(k, i);
      int j = (i * 4099) % N;
      n = fbKey(k, j);
      if (pass == 1 && j % 5 == 0) {
        CHECK_EQ(strata_delete(db, k, n), STRATA_OK);
      } else {
        CHECK_EQ(strata_put(db, k, n, &j, sizeof j), STRATA_OK);
      }
    }
    /* The first pass goes down to the deeper levels; the second stays
    ** partly in L0 and the memtable. */
    if (pass == 0) CHECK_EQ(strata_compact_range(db, NULL, 0, NULL, 0), STRATA_OK);
  }
  for (i = 0; i < N; i++) {
    size_t n = fbKey(k, i);
    int rc = strata_get(db, NULL, k, n, &v);
    if (i % 5 == 0) {
      nBad += rc != STRATA_NOTFOUND;
    } else {
      nBad += rc != STRATA_OK || v.n != sizeof i || memcmp(v.p, &i, sizeof i) != 0;
    }
    /* Between keys: one more zero byte. */
    k[n] = 0;
    nBad += strata_get(db, NULL, k, n + 1, &v) != STRATA_NOTFOUND;
  }
  CHECK_EQ(nBad, 0);
  {
    static const char *azMissing[] = {"", "a", "common", "common-prefix-0123456789", "common-prefix-0123456789.",
                                      "common-prefix-0123456789/", "common-prefix-0123456789/zzzz", "zzz"};
    for (i = 0; i < (int)(sizeof(azMissing) / sizeof(azMissing[0])); i++) {
      CHECK_EQ(strata_get(db, NULL, azMissing[i], strlen(azMissing[i]), &v), STRATA_NOTFOUND);
    }
  }
  strata_value_free(&v);
  strata_close(db);
  test_rmdir(zDir);
}

/* SCANS AGAINST A MODEL
** The db iterator's common steps take short cuts: a backward step that
** finds its key in one step of the internal iterator (strata_iter_prev), a
** forward count that holds short keys in registers (strata_iter_skip).
** Every other case must fall back to the general search at the right
** place: several versions of a key, in one table and across tables and the
** memtable, versions newer than the snapshot, deletions, keys of every
** length (8 to 16 bytes take the register path, others the copied key),
** values of one- and two-byte lengths (both forms of block entry), small
** blocks (many restart regions and block boundaries), bounds, a
** transaction's own writes. The model is a sorted array of (key, value). */

typedef struct MEnt {
  u8 k[48];
  int nk;
  u8 v[200];
  int nv;
} MEnt;
typedef struct Model {
  MEnt *a;
  int n;
} Model;

static int mkeyCmp(const u8 *a, int na, const u8 *b, int nb) {
  int c = memcmp(a, b, (size_t)(na < nb ? na : nb));
  return c ? c : na - nb;
}

/* Index of the first entry >= k (m->n if none). */
static int modelLower(const Model *m, const u8 *k, int nk) {
  int lo = 0, hi = m->n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (mkeyCmp(m->a[mid].k, m->a[mid].nk, k, nk) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void modelPut(Model *m, const u8 *k, int nk, const u8 *v, int nv) {
  int i = modelLower(m, k, nk);
  if (i == m->n || mkeyCmp(m->a[i].k, m->a[i].nk, k, nk) != 0) {
    m->a = realloc(m->a, sizeof(MEnt) * (size_t)(m->n + 1));
    memmove(&m->a[i + 1], &m->a[i], sizeof(MEnt) * (size_t)(m->n - i));
    m->n++;
    memcpy(m->a[i].k, k, (size_t)nk);
    m->a[i].nk = nk;
  }
  memcpy(m->a[i].v, v, (size_t)nv);
  m->a[i].nv = nv;
}

static void modelDel(Model *m, const u8 *k, int nk) {
  int i = modelLower(m, k, nk);
  if (i < m->n && mkeyCmp(m->a[i].k, m->a[i].nk, k, nk) == 0) {
    memmove(&m->a[i], &m->a[i + 1], sizeof(MEnt) * (size_t)(m->n - i - 1));
    m->n--;
  }
}

static Model modelCopy(const Model *m) {
  Model c;
  c.n = m->n;
  c.a = malloc(sizeof(MEnt) * (size_t)(m->n + 1));
  memcpy(c.a, m->a, sizeof(MEnt) * (size_t)m->n);
  return c;
}

/* Key number i of a key space whose keys share prefixes: most are 9 bytes
** (a tag and 8 big-endian bytes, like the SQL extension's integer keys),
** others 1-7, 10-16 and 17-40 bytes. */
static int scanKey(int i, u8 *k) {
  int kind = i % 10, n, j;
  if (kind < 5) {
    k[0] = 0x05;
    for (j = 0; j < 8; j++) k[1 + j] = (u8)((u64)(i * 7919) >> (8 * (7 - j)));
    return 9;
  }
  n = kind == 5 ? 1 + i % 7 : kind < 8 ? 10 + i % 7 : 17 + i % 24;
  memset(k, 'p', (size_t)n);
  for (j = 0; j < 4 && j < n; j++) k[n - 1 - j] = (u8)('a' + (i >> (3 * j)) % 8);
  return n;
}

/* Is the iterator on model entry i (or invalid if i is outside)? */
static int atModel(strata_iter *it, const Model *m, int i) {
  const void *pk, *pv;
  size_t nk, nv;
  if (i < 0 || i >= m->n) return !strata_iter_valid(it) && strata_iter_status(it) == STRATA_OK;
  if (!strata_iter_entry(it, &pk, &nk, &pv, &nv)) return 0;
  return (int)nk == m->a[i].nk && memcmp(pk, m->a[i].k, nk) == 0 && (int)nv == m->a[i].nv &&
         (nv == 0 || memcmp(pv, m->a[i].v, nv) == 0);
}

/* Check iterator `it` (made with bounds [lo, hi) of model keys, -1: none)
** against model m: scans both ways, counts, and random walks. */
static void checkScans(strata_iter *it, const Model *m, int iLo, int iHi, TestRng *rng) {
  int i, nBad = 0, step;
  /* The model entries inside the bounds are [b0, b1). */
  int b0 = iLo < 0 ? 0 : iLo, b1 = iHi < 0 ? m->n : iHi;
  Model w;
  w.a = m->a + b0;
  w.n = b1 > b0 ? b1 - b0 : 0;

  strata_iter_seek_first(it);
  for (i = 0; i < w.n; i++) {
    if (!atModel(it, &w, i)) nBad++;
    strata_iter_next(it);
  }
  if (!atModel(it, &w, w.n)) nBad++;
  CHECK_EQ(nBad, 0);

  strata_iter_seek_last(it);
  for (i = w.n - 1; i >= 0; i--) {
    if (!atModel(it, &w, i)) nBad++;
    strata_iter_prev(it);
  }
  if (!atModel(it, &w, -1)) nBad++;
  CHECK_EQ(nBad, 0);

  /* Counting forward in steps of every size. */
  for (step = 1; step <= 40; step += 1 + step / 4) {
    u64 k, nSeen = 0;
    strata_iter_seek_first(it);
    if (w.n == 0) {
      CHECK(!strata_iter_valid(it));
      continue;
    }
    nSeen = 1;
    do {
      k = strata_iter_skip(it, (u64)step);
      nSeen += k;
      if (k == (u64)step && !atModel(it, &w, (int)nSeen - 1)) nBad++;
    } while (k == (u64)step);
    if (nSeen != (u64)w.n || strata_iter_valid(it) || strata_iter_status(it) != STRATA_OK) nBad++;
    CHECK_EQ(strata_iter_skip(it, 5), 0); /* invalid: stays so */
  }
  CHECK_EQ(nBad, 0);

  /* Random walks mixing every move; cur is the model position (-1 or w.n:
  ** invalid). */
  {
    int cur = -1;
    for (step = 0; step < 3 * w.n + 50; step++) {
      int op = (int)test_randn(rng, 12);
      if (op < 3 && cur >= 0 && cur < w.n) {
        strata_iter_next(it);
        cur++;
      } else if (op < 6 && cur >= 0 && cur < w.n) {
        strata_iter_prev(it);
        cur--;
      } else if (op < 8 && cur >= 0 && cur < w.n) {
        u64 n = 1 + test_randn(rng, 30), k = strata_iter_skip(it, n);
        u64 want = (u64)(w.n - 1 - cur) < n ? (u64)(w.n - 1 - cur) : n;
        if (k != want) nBad++;
        cur += (int)k;
        if (k < n) cur = w.n;
      } else if (op == 8 && m->n) {
        /* A model key (maybe outside the bounds), or one just after it. */
        int j = (int)test_randn(rng, (u64)m->n);
        u8 k[64];
        int nk = m->a[j].nk;
        memcpy(k, m->a[j].k, (size_t)nk);
        if (test_randn(rng, 2)) k[nk++] = 0;
        strata_iter_seek(it, k, (size_t)nk);
        cur = modelLower(&w, k, nk);
        if (w.n && mkeyCmp(k, nk, w.a[0].k, w.a[0].nk) < 0) cur = 0;
      } else if (op == 9 && m->n) {
        int j = (int)test_randn(rng, (u64)m->n);
        u8 k[64];
        int nk = m->a[j].nk;
        memcpy(k, m->a[j].k, (size_t)nk);
        if (test_randn(rng, 2)) k[nk++] = 0;
        strata_iter_seek_for_prev(it, k, (size_t)nk);
        cur = modelLower(&w, k, nk);
        if (!(cur < w.n && mkeyCmp(w.a[cur].k, w.a[cur].nk, k, nk) == 0)) cur--;
      } else if (op == 10) {
        strata_iter_seek_last(it);
        cur = w.n - 1;
      } else {
        strata_iter_seek_first(it);
        cur = w.n ? 0 : -1;
      }
      if (cur > w.n) cur = w.n;
      if (!atModel(it, &w, cur)) nBad++;
      if (cur >= w.n || cur < 0) cur = -1; /* off either end: only seeks come back */
    }
  }
  CHECK_EQ(nBad, 0);
}

/* Every bound setting (none, lower, upper, both) of iterators made by
** xNew over model m. */
static void checkAllBounds(strata *db, strata_txn *t, const strata_snapshot *pSnap,
                           const Model *m, TestRng *rng) {
  int b;
  for (b = 0; b < 4; b++) {
    strata_read_options ro;
    strata_iter *it = NULL;
    int iLo = -1, iHi = -1;
    strata_read_options_init(&ro);
    ro.snapshot = pSnap;
    if ((b & 1) && m->n > 4) {
      iLo = (int)test_randn(rng, (u64)m->n / 2);
      ro.lower = m->a[iLo].k;
      ro.nLower = (size_t)m->a[iLo].nk;
    }
    if ((b & 2) && m->n > 4) {
      iHi = m->n / 2 + (int)test_randn(rng, (u64)m->n / 2);
      ro.upper = m->a[iHi].k;
      ro.nUpper = (size_t)m->a[iHi].nk;
    }
    if (t) {
      CHECK_EQ(strata_txn_iter_new(t, &ro, &it), STRATA_OK);
    } else {
      CHECK_EQ(strata_iter_new(db, &ro, &it), STRATA_OK);
    }
    if (!it) continue;
    checkScans(it, m, iLo, iHi, rng);
    strata_iter_free(it);
  }
}

static void test_iter_scan_model(void) {
  const char *zDir = test_dir("db_scan_model");
  strata *db = openDb(zDir, 16 << 10);
  Model m = {0}, aSnapModel[4];
  const strata_snapshot *aSnap[4];
  strata_txn *t = NULL;
  TestRng rng;
  int round, i, nSnap = 0;
  if (!db) return;
  test_srand(&rng, test_seed("scan_model"));
  for (round = 0; round < 8; round++) {
    for (i = 0; i < 300; i++) {
      u8 k[64], v[200];
      int nk = scanKey((int)test_randn(&rng, 400), k), nv, j;
      if (test_randn(&rng, 4) == 0) {
        CHECK_EQ(strata_delete(db, k, (size_t)nk), STRATA_OK);
        modelDel(&m, k, nk);
        continue;
      }
      nv = test_randn(&rng, 3) == 0 ? 128 + (int)test_randn(&rng, 60) : (int)test_randn(&rng, 40);
      for (j = 0; j < nv; j++) v[j] = (u8)test_rand(&rng);
      CHECK_EQ(strata_put(db, k, (size_t)nk, v, (size_t)nv), STRATA_OK);
      modelPut(&m, k, nk, v, nv);
    }
    /* Some rounds end in a table (several versions of keys across tables),
    ** some stay in the memtable; some leave a snapshot behind. */
    if (round % 3 != 2) CHECK_EQ(strata_flush(db), STRATA_OK);
    if (round % 2 == 1 && nSnap < 4) {
      aSnap[nSnap] = strata_snapshot_new(db);
      aSnapModel[nSnap++] = modelCopy(&m);
    }
  }
  checkAllBounds(db, NULL, NULL, &m, &rng);
  for (i = 0; i < nSnap; i++) checkAllBounds(db, NULL, aSnap[i], &aSnapModel[i], &rng);

  /* A transaction's own writes over the newest state. */
  CHECK_EQ(strata_txn_begin(db, STRATA_TXN_WRITE, &t), STRATA_OK);
  if (t) {
    for (i = 0; i < 200; i++) {
      u8 k[64], v[8];
      int nk = scanKey((int)test_randn(&rng, 450), k);
      if (test_randn(&rng, 3) == 0) {
        CHECK_EQ(strata_txn_delete(t, k, (size_t)nk), STRATA_OK);
        modelDel(&m, k, nk);
      } else {
        memcpy(v, "txnval", 6);
        v[6] = (u8)i;
        CHECK_EQ(strata_txn_put(t, k, (size_t)nk, v, 7), STRATA_OK);
        modelPut(&m, k, nk, v, 7);
      }
    }
    checkAllBounds(db, t, NULL, &m, &rng);
    strata_txn_rollback(t);
  }
  for (i = 0; i < nSnap; i++) {
    strata_snapshot_release(db, aSnap[i]);
    free(aSnapModel[i].a);
  }
  free(m.a);
  strata_close(db);
  test_rmdir(zDir);
}

int main(void) {
  RUN(test_compress_from_level);
  RUN(test_basic);
  RUN(test_batch_atomic);
  RUN(test_iterators);
  RUN(test_snapshots);
  RUN(test_iter_refresh);
  RUN(test_deferred_deletion);
  RUN(test_manifest_sync_unlocked);
  RUN(test_iter_scan_model);
  RUN(test_many_flushes_reopen);
  RUN(test_file_bounds);
  RUN(test_options_and_errors);
  RUN(test_large_values);
  RUN(test_concurrent);
  RUN(test_concurrent_gets);
  RUN(test_sync_modes_reopen);
  return TEST_SUMMARY();
}
