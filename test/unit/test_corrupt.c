/*
** test_corrupt.c -- damaged files: the engine reports STRATA_CORRUPT (or
** CANTOPEN for a missing file) with a message naming the file, never
** returns wrong data, never treats acknowledged data as absent, and a
** failed open changes nothing on disk.
**
** THE DATABASE
** build_db() makes a database with NSST keys "s00000".. in one sstable
** (written by strata_flush) and NWAL keys "w0000".. in the WAL, one record
** per put (sync=full, compaction off), then closes it without flushing the
** WAL. Files are found by listing the directory (NNNNNN.log, NNNNNN.sst,
** MANIFEST-NNNNNN, CURRENT: doc/FORMAT.md, "Directory layout"); offsets
** inside files come from the formats in doc/FORMAT.md: a record log is a
** 16-byte file header and records of a 16-byte header (length at offset 4)
** plus payload; an sstable starts with its data blocks and ends with a
** 64-byte footer whose first 16 bytes are the index block's offset and size.
**
** CASES
** (a) a flipped byte in a WAL record in the middle of the log, payload or
**     header: open fails with CORRUPT naming the file and the offset;
** (b) a WAL cut in the middle of its last record (or followed by zeros): a
**     torn tail; open succeeds with every earlier record;
** (c) a flipped byte in an sstable data block (with and without zstd): gets
**     and scans touching that block say CORRUPT, the other blocks read fine;
** (d) a flipped byte in the footer or the index block, or a truncated
**     table: open or the first read says CORRUPT;
** (e) a flipped byte in a manifest record followed by another, garbage or
**     empty CURRENT, CURRENT naming a missing manifest: open fails with
**     CORRUPT; a damaged last manifest record loses no acknowledged data
**     silently;
** (f) a table named by the manifest is missing: CORRUPT or CANTOPEN naming
**     it, never "not found";
** (g) a directory with foreign files and no CURRENT: open fails, and
**     nothing in the directory is deleted or changed.
*/
#include "strata.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>

#define NSST 2000
#define NWAL 200

/* FILE HELPERS */

/* The name of the file in zDir whose name ends with zSuffix (or, for
** "MANIFEST-", starts with it) with the highest number; "" if none. */
static const char *find_file(const char *zDir, const char *zPattern) {
  static char zBest[256];
  unsigned long long best = 0;
  DIR *d = opendir(zDir);
  struct dirent *de;
  zBest[0] = 0;
  while (d && (de = readdir(d)) != NULL) {
    const char *z = de->d_name;
    size_t n = strlen(z), nP = strlen(zPattern);
    unsigned long long num;
    if (!strcmp(zPattern, "MANIFEST-")) {
      if (strncmp(z, zPattern, nP) != 0) continue;
      num = strtoull(z + nP, NULL, 10);
    } else {
      if (n <= nP || strcmp(z + n - nP, zPattern) != 0) continue;
      num = strtoull(z, NULL, 10);
    }
    if (zBest[0] == 0 || num > best) {
      best = num;
      snprintf(zBest, sizeof(zBest), "%s", z);
    }
  }
  if (d) closedir(d);
  return zBest;
}

static char *path_of(const char *zDir, const char *zName) {
  static char az[4][4096];
  static int i;
  char *z = az[i++ & 3];
  if (snprintf(z, sizeof(az[0]), "%s/%s", zDir, zName) >= (int)sizeof(az[0])) CHECK(0);
  return z;
}

static long file_size(const char *zPath) {
  struct stat st;
  return stat(zPath, &st) == 0 ? (long)st.st_size : -1;
}

static void flip_byte(const char *zPath, long off) {
  int fd = open(zPath, O_RDWR);
  unsigned char c = 0;
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK(pread(fd, &c, 1, off) == 1);
  c ^= 0x5a;
  CHECK(pwrite(fd, &c, 1, off) == 1);
  close(fd);
}

static void write_file(const char *zPath, const void *p, size_t n) {
  FILE *f = fopen(zPath, "wb");
  CHECK(f != NULL);
  if (!f) return;
  if (n) CHECK(fwrite(p, 1, n, f) == n);
  fclose(f);
}

/* The whole file in a malloc'd buffer (*pn bytes). */
static unsigned char *read_file(const char *zPath, long *pn) {
  long n = file_size(zPath);
  unsigned char *a;
  FILE *f;
  *pn = 0;
  if (n < 0) return NULL;
  a = malloc((size_t)n + 1);
  f = fopen(zPath, "rb");
  if (!a || !f) {
    free(a);
    if (f) fclose(f);
    return NULL;
  }
  if (n) CHECK(fread(a, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  *pn = n;
  return a;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) {
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Offsets of the records of a record log (at most nMax). */
static int log_records(const char *zPath, long *aOff, int nMax) {
  long n, off = 16;
  int nRec = 0;
  unsigned char *a = read_file(zPath, &n);
  if (!a) return 0;
  while (off + 16 <= n && nRec < nMax) {
    uint32_t len = get32(a + off + 4);
    if (off + 16 + (long)len > n) break;
    aOff[nRec++] = off;
    off += 16 + (long)len;
  }
  free(a);
  return nRec;
}

/* A fingerprint of the directory: names, sizes and a hash of the contents
** of every file except LOCK, sorted by name. */
static void dir_fingerprint(const char *zDir, char *zOut, size_t nOut) {
  char aName[64][256];
  int nName = 0, i, j;
  DIR *d = opendir(zDir);
  struct dirent *de;
  size_t k = 0;
  while (d && (de = readdir(d)) != NULL && nName < 64) {
    if (de->d_name[0] == '.' || !strcmp(de->d_name, "LOCK")) continue;
    snprintf(aName[nName++], sizeof(aName[0]), "%s", de->d_name);
  }
  if (d) closedir(d);
  for (i = 1; i < nName; i++) {
    for (j = i; j > 0 && strcmp(aName[j - 1], aName[j]) > 0; j--) {
      char t[256];
      memcpy(t, aName[j], sizeof(t));
      memcpy(aName[j], aName[j - 1], sizeof(t));
      memcpy(aName[j - 1], t, sizeof(t));
    }
  }
  zOut[0] = 0;
  for (i = 0; i < nName && k + 300 < nOut; i++) {
    long n;
    unsigned char *a = read_file(path_of(zDir, aName[i]), &n);
    uint64_t h = 1469598103934665603ULL;
    long x;
    for (x = 0; a && x < n; x++) h = (h ^ a[x]) * 1099511628211ULL;
    free(a);
    k +=
        (size_t)snprintf(zOut + k, nOut - k, "%s:%ld:%016llx ", aName[i], n, (unsigned long long)h);
  }
}

/* THE DATABASE */

static void set_options(strata_options *o, int compression) {
  strata_options_init(o);
  o->sync = STRATA_SYNC_NORMAL; /* a record per put either way; no process crash here */
  o->memtable_size = 4 << 20;
  o->block_size = 1024;
  o->compression = compression;
  o->disable_compaction = 1;
  o->create_if_missing = 0; /* a reopen must never make a new database */
}

static size_t sst_value(char *z, size_t nz, int i) {
  int n = snprintf(z, nz, "sv%05d-", i);
  while (n < 60) z[n++] = (char)('a' + i % 26);
  return (size_t)n;
}

static size_t wal_value(char *z, size_t nz, int i) {
  int n = snprintf(z, nz, "wv%04d-", i);
  while (n < 50) z[n++] = (char)('A' + i % 26);
  return (size_t)n;
}

/* Keys s<iFirst>..s<iEnd - 1>, in batches of 100. */
static int put_sst_keys(strata *db, int iFirst, int iEnd) {
  strata_batch *b = NULL;
  char zKey[32], zVal[128];
  int i, rc = strata_batch_new(&b);
  for (i = iFirst; i < iEnd && rc == STRATA_OK; i++) {
    snprintf(zKey, sizeof(zKey), "s%05d", i);
    rc = strata_batch_put(b, zKey, strlen(zKey), zVal, sst_value(zVal, sizeof(zVal), i));
    if (rc == STRATA_OK && (i % 100 == 99 || i == iEnd - 1)) {
      rc = strata_write(db, b);
      strata_batch_clear(b);
    }
  }
  strata_batch_free(b);
  return rc;
}

static int build_db(const char *zDir, int compression) {
  strata_options o;
  strata *db = NULL;
  char zKey[32], zVal[128];
  int i, rc;
  set_options(&o, compression);
  o.create_if_missing = 1;
  rc = strata_open(zDir, &o, &db);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) return rc;
  rc = put_sst_keys(db, 0, NSST);
  if (rc == STRATA_OK) rc = strata_flush(db);
  for (i = 0; i < NWAL && rc == STRATA_OK; i++) {
    snprintf(zKey, sizeof(zKey), "w%04d", i);
    rc = strata_put(db, zKey, strlen(zKey), zVal, wal_value(zVal, sizeof(zVal), i));
  }
  CHECK_EQ(rc, STRATA_OK);
  CHECK_EQ(strata_close(db), STRATA_OK);
  /* The expected shape: one table, one WAL with a record per put. */
  CHECK(find_file(zDir, ".sst")[0] != 0);
  CHECK(find_file(zDir, ".log")[0] != 0);
  return rc;
}

static int open_db(const char *zDir, int compression, strata **pDb) {
  strata_options o;
  set_options(&o, compression);
  return strata_open(zDir, &o, pDb);
}

/* Check a get of "s%05d" / "w%04d": returns the rc, and CHECKs that a value
** returned is the right one. */
static int get_key(strata *db, int bWal, int i, strata_value *pVal) {
  char zKey[32], zWant[128];
  size_t nWant;
  int rc;
  snprintf(zKey, sizeof(zKey), bWal ? "w%04d" : "s%05d", i);
  nWant = bWal ? wal_value(zWant, sizeof(zWant), i) : sst_value(zWant, sizeof(zWant), i);
  rc = strata_get(db, NULL, zKey, strlen(zKey), pVal);
  if (rc == STRATA_OK) {
    if (pVal->n != nWant || memcmp(pVal->p, zWant, nWant) != 0) {
      fprintf(stderr, "  get %s returned a wrong value\n", zKey);
      CHECK(0);
    }
  }
  return rc;
}

/* Every key present with the right value (nWal of the WAL keys). */
static void check_all(strata *db, int nWal) {
  strata_value v = {0};
  int i, nBad = 0;
  for (i = 0; i < NSST; i++) nBad += get_key(db, 0, i, &v) != STRATA_OK;
  for (i = 0; i < NWAL; i++) {
    int rc = get_key(db, 1, i, &v);
    nBad += i < nWal ? rc != STRATA_OK : rc != STRATA_NOTFOUND;
  }
  if (nBad) fprintf(stderr, "  %d keys are not as expected (%d WAL records kept)\n", nBad, nWal);
  CHECK_EQ(nBad, 0);
  strata_value_free(&v);
}

/* Open must fail with rc (or rc2), with a message containing zWant, and
** leave the directory as it was. */
static void expect_open_fails(const char *zDir, int rc1, int rc2, const char *zWant) {
  static char zBefore[20000], zAfter[20000];
  strata *db = NULL;
  int rc;
  dir_fingerprint(zDir, zBefore, sizeof(zBefore));
  rc = open_db(zDir, STRATA_COMPRESSION_NONE, &db);
  if (rc != rc1 && rc != rc2) {
    fprintf(stderr, "  open %s: rc=%d (%s), expected %s: %s\n", zDir, rc, strata_errstr(rc),
            strata_errstr(rc1), rc ? strata_errmsg() : "");
  }
  CHECK(rc == rc1 || rc == rc2);
  if (rc == STRATA_OK) {
    strata_close(db);
    return;
  }
  if (zWant && !strstr(strata_errmsg(), zWant)) {
    fprintf(stderr, "  open failed with \"%s\", which does not mention %s\n", strata_errmsg(),
            zWant);
    CHECK(0);
  }
  dir_fingerprint(zDir, zAfter, sizeof(zAfter));
  if (strcmp(zBefore, zAfter) != 0) {
    fprintf(stderr, "  a failed open changed the directory:\n    before: %s\n    after:  %s\n",
            zBefore, zAfter);
    CHECK(0);
  }
}

/* (a) WAL damaged in the middle. */
static void test_corrupt_wal_middle(void) {
  int iCase;
  for (iCase = 0; iCase < 2; iCase++) {
    const char *zDir = test_dir(iCase ? "wal_mid_hdr" : "wal_mid_payload");
    char zDirCopy[4096], zLog[256], zWant[300];
    long aOff[NWAL + 8];
    int nRec;
    snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);
    if (build_db(zDirCopy, STRATA_COMPRESSION_NONE)) return;
    snprintf(zLog, sizeof(zLog), "%s", find_file(zDirCopy, ".log"));
    nRec = log_records(path_of(zDirCopy, zLog), aOff, NWAL + 8);
    CHECK_EQ(nRec, NWAL);
    if (nRec < 100) return;
    /* Payload byte (iCase 0) or the length in the header (iCase 1). */
    flip_byte(path_of(zDirCopy, zLog), aOff[100] + (iCase ? 4 : 16 + 5));
    expect_open_fails(zDirCopy, STRATA_CORRUPT, STRATA_CORRUPT, zLog);
    snprintf(zWant, sizeof(zWant), "offset %ld", aOff[100]);
    if (!strstr(strata_errmsg(), zWant)) {
      fprintf(stderr, "  the message \"%s\" does not give the %s\n", strata_errmsg(), zWant);
      CHECK(0);
    }
    /* The damaged WAL is still there for a repair tool. */
    CHECK(file_size(path_of(zDirCopy, zLog)) > aOff[nRec - 1]);
    test_rmdir(zDirCopy);
  }
}

/* (b) A torn tail: cut inside the last record's payload, inside its header,
** or followed by zeros. */
static void test_corrupt_wal_torn_tail(void) {
  int iCase;
  for (iCase = 0; iCase < 3; iCase++) {
    const char *zDir = test_dir("wal_torn");
    char zDirCopy[4096], zLog[256];
    long aOff[NWAL + 8], nSize;
    int nRec, nKept = NWAL - 1, rc;
    strata *db = NULL;
    snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);
    if (build_db(zDirCopy, STRATA_COMPRESSION_NONE)) return;
    snprintf(zLog, sizeof(zLog), "%s", find_file(zDirCopy, ".log"));
    nRec = log_records(path_of(zDirCopy, zLog), aOff, NWAL + 8);
    CHECK_EQ(nRec, NWAL);
    if (nRec != NWAL) return;
    nSize = file_size(path_of(zDirCopy, zLog));
    if (iCase == 0) {
      CHECK(truncate(path_of(zDirCopy, zLog),
                     aOff[NWAL - 1] + 16 + (nSize - aOff[NWAL - 1] - 16) / 2) == 0);
    } else if (iCase == 1) {
      CHECK(truncate(path_of(zDirCopy, zLog), aOff[NWAL - 1] + 7) == 0);
    } else {
      /* Preallocated space after the last record reads as zeros. */
      CHECK(truncate(path_of(zDirCopy, zLog), nSize + 4096) == 0);
      nKept = NWAL;
    }
    rc = open_db(zDirCopy, STRATA_COMPRESSION_NONE, &db);
    CHECK_EQ(rc, STRATA_OK);
    if (rc) {
      fprintf(stderr, "  case %d: open after a torn tail: %s\n", iCase, strata_errmsg());
      continue;
    }
    check_all(db, nKept);
    /* The database goes on: a new write survives another reopen. */
    CHECK_EQ(strata_put(db, "after", 5, "x", 1), STRATA_OK);
    CHECK_EQ(strata_close(db), STRATA_OK);
    rc = open_db(zDirCopy, STRATA_COMPRESSION_NONE, &db);
    CHECK_EQ(rc, STRATA_OK);
    if (rc == STRATA_OK) {
      strata_value v = {0};
      CHECK_EQ(strata_get(db, NULL, "after", 5, &v), STRATA_OK);
      check_all(db, nKept);
      strata_value_free(&v);
      strata_close(db);
    }
    test_rmdir(zDirCopy);
  }
}

/* (c) A data block damaged: the keys of that block say CORRUPT, the others
** read fine, and nothing returns wrong data. */
static void sst_data_block(int compression) {
  const char *zDir = test_dir(compression ? "sst_block_zstd" : "sst_block");
  char zDirCopy[4096], zSst[256];
  strata *db = NULL;
  strata_value v = {0};
  strata_iter *it = NULL;
  int i, rc, nCorrupt = 0, nOk = 0, iFirstOk = -1, bContiguous = 1;
  snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);
  if (build_db(zDirCopy, compression)) return;
  snprintf(zSst, sizeof(zSst), "%s", find_file(zDirCopy, ".sst"));
  flip_byte(path_of(zDirCopy, zSst), 100); /* inside data block 0 */
  rc = open_db(zDirCopy, compression, &db);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) return;
  for (i = 0; i < NSST; i++) {
    rc = get_key(db, 0, i, &v);
    if (rc == STRATA_CORRUPT) {
      nCorrupt++;
      if (iFirstOk >= 0) bContiguous = 0;
      if (nCorrupt == 1 && !strstr(strata_errmsg(), zSst)) {
        fprintf(stderr, "  the message \"%s\" does not name %s\n", strata_errmsg(), zSst);
        CHECK(0);
      }
    } else if (rc == STRATA_OK) {
      nOk++;
      if (iFirstOk < 0) iFirstOk = i;
    } else {
      fprintf(stderr, "  get s%05d: rc=%d (%s)\n", i, rc, strata_errmsg());
      CHECK(0);
    }
  }
  /* Block 0 holds the first keys; 60-byte values in 1 KiB blocks: a dozen. */
  CHECK(nCorrupt > 0 && nCorrupt < 100);
  CHECK(bContiguous && iFirstOk == nCorrupt);
  CHECK_EQ(nOk + nCorrupt, NSST);
  for (i = 0; i < NWAL; i++) CHECK_EQ(get_key(db, 1, i, &v), STRATA_OK);

  /* Scans: from the start, CORRUPT at once; from the middle, fine to the
  ** end; backwards from the end, fine until the damaged block. */
  /* (An iterator's error is sticky, so each scan gets a new one.) */
  CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
  if (it) {
    strata_iter_seek_first(it);
    CHECK(!strata_iter_valid(it));
    CHECK_EQ(strata_iter_status(it), STRATA_CORRUPT);
    strata_iter_free(it);
    it = NULL;
  }
  CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
  if (it) {
    int n = 0;
    strata_iter_seek(it, "s01000", 6);
    for (; strata_iter_valid(it); strata_iter_next(it)) n++;
    CHECK_EQ(strata_iter_status(it), STRATA_OK);
    CHECK_EQ(n, NSST - 1000 + NWAL);
    strata_iter_free(it);
    it = NULL;
  }
  CHECK_EQ(strata_iter_new(db, NULL, &it), STRATA_OK);
  if (it) {
    int n = 0;
    for (strata_iter_seek_last(it); strata_iter_valid(it); strata_iter_prev(it)) {
      size_t nK, nV;
      const char *pK = strata_iter_key(it, &nK);
      const char *pV = strata_iter_value(it, &nV);
      char zWant[128], zKey[64];
      size_t nWant;
      /* The key is not NUL-terminated: copy it before atoi. */
      snprintf(zKey, sizeof(zKey), "%.*s", (int)nK, pK);
      nWant = zKey[0] == 's' ? sst_value(zWant, sizeof(zWant), atoi(zKey + 1))
                             : wal_value(zWant, sizeof(zWant), atoi(zKey + 1));
      CHECK(nV == nWant && memcmp(pV, zWant, nV) == 0);
      n++;
    }
    CHECK_EQ(strata_iter_status(it), STRATA_CORRUPT);
    /* Backwards, the key just after the damaged block may be lost too: to
    ** know it has its newest version the iterator looks at the entry
    ** before it, which is in the damaged block. */
    CHECK(n == NSST - nCorrupt + NWAL || n == NSST - nCorrupt + NWAL - 1);
    strata_iter_free(it);
  }
  strata_value_free(&v);
  CHECK_EQ(strata_close(db), STRATA_OK);
  test_rmdir(zDirCopy);
}

static void test_corrupt_sst_data_block(void) {
  sst_data_block(STRATA_COMPRESSION_NONE);
  sst_data_block(STRATA_COMPRESSION_ZSTD);
}

/* (d) Footer, index block, truncation: open fails with CORRUPT, or opens
** and every read of the table's keys says CORRUPT (never wrong or absent). */
static void test_corrupt_sst_footer_index(void) {
  int iCase;
  for (iCase = 0; iCase < 4; iCase++) {
    static const char *azCase[] = {"footer handle", "footer magic", "index block", "truncated"};
    const char *zDir = test_dir("sst_meta");
    char zDirCopy[4096], zSst[256];
    strata *db = NULL;
    long nSize;
    int rc;
    snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);
    if (build_db(zDirCopy, STRATA_COMPRESSION_NONE)) return;
    snprintf(zSst, sizeof(zSst), "%s", find_file(zDirCopy, ".sst"));
    nSize = file_size(path_of(zDirCopy, zSst));
    if (iCase == 0) {
      flip_byte(path_of(zDirCopy, zSst), nSize - 64 + 1); /* the index offset */
    } else if (iCase == 1) {
      flip_byte(path_of(zDirCopy, zSst), nSize - 1);
    } else if (iCase == 2) {
      long n;
      unsigned char *a = read_file(path_of(zDirCopy, zSst), &n);
      uint64_t off = a ? get64(a + n - 64) : 0, sz = a ? get64(a + n - 56) : 0;
      free(a);
      CHECK(off > 0 && off + sz + 5 + 64 <= (uint64_t)n);
      flip_byte(path_of(zDirCopy, zSst), (long)(off + sz / 2));
    } else {
      CHECK(truncate(path_of(zDirCopy, zSst), nSize / 2) == 0);
    }
    rc = open_db(zDirCopy, STRATA_COMPRESSION_NONE, &db);
    if (rc == STRATA_OK) {
      strata_value v = {0};
      strata_iter *it = NULL;
      int aProbe[] = {0, 500, 1000, NSST - 1}, i;
      for (i = 0; i < 4; i++) {
        rc = get_key(db, 0, aProbe[i], &v);
        if (rc != STRATA_CORRUPT) {
          fprintf(stderr, "  %s: get s%05d: rc=%d (%s)\n", azCase[iCase], aProbe[i], rc,
                  rc ? strata_errmsg() : "");
        }
        CHECK_EQ(rc, STRATA_CORRUPT);
        if (rc == STRATA_CORRUPT && !strstr(strata_errmsg(), zSst)) {
          fprintf(stderr, "  %s: the message \"%s\" does not name %s\n", azCase[iCase],
                  strata_errmsg(), zSst);
          CHECK(0);
        }
      }
      /* The WAL's keys live in another table and still read. */
      CHECK_EQ(get_key(db, 1, 7, &v), STRATA_OK);
      /* A scan fails at once, or when it gets to the table. */
      rc = strata_iter_new(db, NULL, &it);
      if (rc == STRATA_OK) {
        strata_iter_seek_first(it);
        CHECK(!strata_iter_valid(it));
        CHECK_EQ(strata_iter_status(it), STRATA_CORRUPT);
        strata_iter_free(it);
      } else {
        CHECK_EQ(rc, STRATA_CORRUPT);
      }
      strata_value_free(&v);
      strata_close(db);
    } else {
      if (rc != STRATA_CORRUPT)
        fprintf(stderr, "  %s: open: rc=%d (%s)\n", azCase[iCase], rc, strata_errmsg());
      CHECK_EQ(rc, STRATA_CORRUPT);
      CHECK(strstr(strata_errmsg(), zSst) != NULL);
    }
    test_rmdir(zDirCopy);
  }
}

/* A database whose manifest has several records: one per flush. */
static int build_db_flushes(const char *zDir) {
  strata_options o;
  strata *db = NULL;
  int i, rc;
  set_options(&o, STRATA_COMPRESSION_NONE);
  o.create_if_missing = 1;
  rc = strata_open(zDir, &o, &db);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) return rc;
  for (i = 0; i < NSST && rc == STRATA_OK; i += 500) {
    rc = put_sst_keys(db, i, i + 500);
    if (rc == STRATA_OK) rc = strata_flush(db);
  }
  CHECK_EQ(rc, STRATA_OK);
  CHECK_EQ(strata_close(db), STRATA_OK);
  return rc;
}

/* (e) Manifest and CURRENT. */
static void test_corrupt_manifest(void) {
  const char *zDir = test_dir("manifest");
  char zDirCopy[4096], zMan[256], zCur[300];
  long aOff[64];
  int nRec, rc;
  strata *db = NULL;
  snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);

  /* A damaged record with valid ones after it. */
  if (build_db_flushes(zDirCopy)) return;
  snprintf(zMan, sizeof(zMan), "%s", find_file(zDirCopy, "MANIFEST-"));
  nRec = log_records(path_of(zDirCopy, zMan), aOff, 64);
  CHECK(nRec >= 3);
  if (nRec >= 3) {
    flip_byte(path_of(zDirCopy, zMan), aOff[1] + 16 + 3);
    expect_open_fails(zDirCopy, STRATA_CORRUPT, STRATA_CORRUPT, zMan);
  }
  test_rmdir(zDirCopy);

  /* The last record damaged (after it was synced): whatever the engine
  ** decides, no acknowledged key may silently disappear. */
  if (build_db_flushes(zDirCopy)) return;
  snprintf(zMan, sizeof(zMan), "%s", find_file(zDirCopy, "MANIFEST-"));
  nRec = log_records(path_of(zDirCopy, zMan), aOff, 64);
  if (nRec >= 2) {
    flip_byte(path_of(zDirCopy, zMan), aOff[nRec - 1] + 16 + 3);
    rc = open_db(zDirCopy, STRATA_COMPRESSION_NONE, &db);
    if (rc == STRATA_OK) {
      strata_value v = {0};
      int i, nMissing = 0;
      for (i = 0; i < NSST; i++) nMissing += get_key(db, 0, i, &v) != STRATA_OK;
      if (nMissing) {
        fprintf(stderr,
                "  damaged last manifest record: open succeeded and %d of %d keys are "
                "gone\n",
                nMissing, NSST);
      }
      CHECK_EQ(nMissing, 0);
      strata_value_free(&v);
      strata_close(db);
    } else {
      CHECK_EQ(rc, STRATA_CORRUPT);
      CHECK(strstr(strata_errmsg(), zMan) != NULL);
    }
  }
  test_rmdir(zDirCopy);

  /* CURRENT: garbage, empty, naming a missing manifest. */
  if (build_db_flushes(zDirCopy)) return;
  snprintf(zCur, sizeof(zCur), "%s", path_of(zDirCopy, "CURRENT"));
  write_file(zCur, "garbage\n", 8);
  expect_open_fails(zDirCopy, STRATA_CORRUPT, STRATA_CORRUPT, "CURRENT");
  write_file(zCur, "", 0);
  expect_open_fails(zDirCopy, STRATA_CORRUPT, STRATA_CORRUPT, "CURRENT");
  write_file(zCur, "MANIFEST-999999\n", 16);
  expect_open_fails(zDirCopy, STRATA_CORRUPT, STRATA_CORRUPT, "MANIFEST-999999");
  /* Put the right name back: the database is intact. */
  snprintf(zMan, sizeof(zMan), "%s\n", find_file(zDirCopy, "MANIFEST-"));
  write_file(zCur, zMan, strlen(zMan));
  rc = open_db(zDirCopy, STRATA_COMPRESSION_NONE, &db);
  CHECK_EQ(rc, STRATA_OK);
  if (rc == STRATA_OK) {
    strata_value v = {0};
    int i, nBad = 0;
    for (i = 0; i < NSST; i++) nBad += get_key(db, 0, i, &v) != STRATA_OK;
    CHECK_EQ(nBad, 0);
    strata_value_free(&v);
    strata_close(db);
  }
  test_rmdir(zDirCopy);
}

/* (f) A table the manifest names is missing. */
static void test_corrupt_missing_sst(void) {
  const char *zDir = test_dir("missing_sst");
  char zDirCopy[4096], zSst[256];
  strata *db = NULL;
  int rc;
  snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);
  if (build_db(zDirCopy, STRATA_COMPRESSION_NONE)) return;
  snprintf(zSst, sizeof(zSst), "%s", find_file(zDirCopy, ".sst"));
  CHECK(unlink(path_of(zDirCopy, zSst)) == 0);
  rc = open_db(zDirCopy, STRATA_COMPRESSION_NONE, &db);
  if (rc == STRATA_OK) {
    strata_value v = {0};
    strata_iter *it = NULL;
    rc = get_key(db, 0, 5, &v);
    if (rc != STRATA_CORRUPT && rc != STRATA_CANTOPEN) {
      fprintf(stderr, "  get of a key in the missing table: rc=%d (%s)\n", rc, strata_errmsg());
    }
    CHECK(rc == STRATA_CORRUPT || rc == STRATA_CANTOPEN);
    CHECK(strstr(strata_errmsg(), zSst) != NULL);
    rc = strata_iter_new(db, NULL, &it);
    if (rc == STRATA_OK) {
      strata_iter_seek_first(it);
      CHECK(!strata_iter_valid(it));
      rc = strata_iter_status(it);
      strata_iter_free(it);
    }
    CHECK(rc == STRATA_CORRUPT || rc == STRATA_CANTOPEN);
    strata_value_free(&v);
    strata_close(db);
  } else {
    if (rc != STRATA_CORRUPT && rc != STRATA_CANTOPEN) {
      fprintf(stderr, "  open with a missing table: rc=%d (%s)\n", rc, strata_errmsg());
    }
    CHECK(rc == STRATA_CORRUPT || rc == STRATA_CANTOPEN);
    CHECK(strstr(strata_errmsg(), zSst) != NULL);
  }
  test_rmdir(zDirCopy);
}

/* (g) Not a database: foreign files, or strata-looking files without
** CURRENT. Open fails and touches nothing. */
static void test_corrupt_foreign_dir(void) {
  const char *zDir = test_dir("foreign");
  char zDirCopy[4096];
  snprintf(zDirCopy, sizeof(zDirCopy), "%s", zDir);
  CHECK(mkdir(zDirCopy, 0755) == 0);
  write_file(path_of(zDirCopy, "notes.txt"), "my notes\n", 9);
  write_file(path_of(zDirCopy, "data.bin"), "\x01\x02\x03", 3);
  {
    strata_options o;
    strata *db = NULL;
    static char zBefore[4000], zAfter[4000];
    int rc;
    dir_fingerprint(zDirCopy, zBefore, sizeof(zBefore));
    strata_options_init(&o); /* create_if_missing is on */
    rc = strata_open(zDirCopy, &o, &db);
    CHECK(rc != STRATA_OK);
    if (rc == STRATA_OK) strata_close(db);
    CHECK(rc == STRATA_CANTOPEN || rc == STRATA_CORRUPT);
    CHECK(strstr(strata_errmsg(), "not a strata database") != NULL);
    dir_fingerprint(zDirCopy, zAfter, sizeof(zAfter));
    CHECK(strcmp(zBefore, zAfter) == 0);
    CHECK(file_size(path_of(zDirCopy, "CURRENT")) < 0);

    /* Files named like ours but no CURRENT: refused, kept. */
    write_file(path_of(zDirCopy, "000007.log"), "not really a log", 16);
    write_file(path_of(zDirCopy, "000008.sst"), "not really a table", 18);
    dir_fingerprint(zDirCopy, zBefore, sizeof(zBefore));
    rc = strata_open(zDirCopy, &o, &db);
    CHECK(rc == STRATA_CANTOPEN || rc == STRATA_CORRUPT);
    if (rc == STRATA_OK) strata_close(db);
    dir_fingerprint(zDirCopy, zAfter, sizeof(zAfter));
    CHECK(strcmp(zBefore, zAfter) == 0);
    CHECK_EQ(file_size(path_of(zDirCopy, "000007.log")), 16);
    CHECK_EQ(file_size(path_of(zDirCopy, "000008.sst")), 18);
  }
  test_rmdir(zDirCopy);
}

int main(void) {
  RUN(test_corrupt_wal_middle);
  RUN(test_corrupt_wal_torn_tail);
  RUN(test_corrupt_sst_data_block);
  RUN(test_corrupt_sst_footer_index);
  RUN(test_corrupt_manifest);
  RUN(test_corrupt_missing_sst);
  RUN(test_corrupt_foreign_dir);
  return TEST_SUMMARY();
}
