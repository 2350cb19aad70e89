/*
** test_log.c -- log.c (the record log) and batch.c (write batches).
**
** Log: round trips of records from 0 bytes to over 1 MiB across flushes,
** the number of write and read calls, torn tails (every truncation offset,
** zero-filled tails, damage in the last record) against mid-log corruption
** (damage anywhere before a valid record), file headers, and write faults
** (sticky failure, short writes, crashes at every write).
** Batch: encode/iterate round trips, limits, and every truncation and
** random damage of an encoding parsed safely (run under ASan/valgrind).
*/
#include "strataInt.h"
#include "testutil.h"

#include <fcntl.h>

/* The format constants, restated from doc/FORMAT.md on purpose: a test that
** shares the code's constants cannot catch a change in them. */
#define FH 16 /* file header */
#define RH 16 /* record header */

/* ------------------------------------------------------------------ */
/* Helpers */

/* Deterministic contents for record id of n bytes. */
static void fillPayload(u8 *p, size_t n, u32 id) {
  u64 x = 0x9E3779B97F4A7C15ull * (id + 1);
  size_t i;
  for (i = 0; i < n; i++) {
    if ((i & 7) == 0) {
      x ^= x >> 12;
      x ^= x << 25;
      x ^= x >> 27;
    }
    p[i] = (u8)(x >> ((i & 7) * 8));
  }
}

static u8 *readWhole(const char *zPath, size_t *pn) {
  FILE *f = fopen(zPath, "rb");
  u8 *a;
  long n;
  *pn = 0;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  a = malloc((size_t)n + 1);
  if (fread(a, 1, (size_t)n, f) != (size_t)n) {
    free(a);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *pn = (size_t)n;
  return a;
}

/* Overwrite in place and then cut to size: truncating to zero first would
** make some filesystems flush the file at close, which is slow. */
static void writeWhole(const char *zPath, const u8 *a, size_t n) {
  int fd = open(zPath, O_WRONLY | O_CREAT, 0644);
  if (fd < 0) return;
  if (n && pwrite(fd, a, n, 0) != (ssize_t)n) fprintf(stderr, "short write to %s\n", zPath);
  if (ftruncate(fd, (off_t)n) != 0) fprintf(stderr, "truncate %s failed\n", zPath);
  close(fd);
}

static u64 fileSize(const char *zPath) {
  struct stat st;
  if (stat(zPath, &st) != 0) return (u64)-1;
  return (u64)st.st_size;
}

/* Write a log of nRec records with the given sizes (payload i from
** fillPayload(i)); aStart[i] receives each record's offset, and
** aStart[nRec] the end. Returns the writer's result. */
static int writeLog(strata_env *env, const char *zPath, u32 kind, int nRec, const size_t *aSize,
                    u64 *aStart) {
  LogWriter *w = NULL;
  size_t nMax = 1, i;
  u8 *p;
  int rc;
  for (i = 0; i < (size_t)nRec; i++) nMax = aSize[i] > nMax ? aSize[i] : nMax;
  p = malloc(nMax);
  rc = strataLogWriterOpen(env ? env : strataEnvDefault(), zPath, kind, NULL, &w);
  if (rc) {
    free(p);
    return rc;
  }
  for (i = 0; i < (size_t)nRec && rc == STRATA_OK; i++) {
    if (aStart) aStart[i] = strataLogSize(w);
    fillPayload(p, aSize[i], (u32)i);
    rc = strataLogAppend(w, p, aSize[i]);
  }
  if (aStart) aStart[nRec] = strataLogSize(w);
  if (rc == STRATA_OK) rc = strataLogWriterClose(w);
  else strataLogWriterClose(w);
  free(p);
  return rc;
}

/* What reading a log gave. */
typedef struct ReadResult {
  int rcOpen;   /* result of opening */
  int nGood;    /* leading records that matched fillPayload(i) with aSize[i] */
  int nRead;    /* records returned */
  int rcEnd;    /* the result that ended reading */
  int bTorn;
  u64 offset;
  char zMsg[512];
} ReadResult;

/* Read the log, comparing record i with fillPayload(i) of aSize[i] (nRec of
** them are known; records beyond that count as mismatches). */
static void readLog(strata_env *env, const char *zPath, u32 kind, int nRec, const size_t *aSize,
                    ReadResult *pRes) {
  LogReader *r = NULL;
  u8 *pWant = NULL;
  size_t nWantAlloc = 0;
  int bMatch = 1;
  memset(pRes, 0, sizeof(*pRes));
  pRes->rcOpen = strataLogReaderOpen(env ? env : strataEnvDefault(), zPath, kind, &r);
  if (pRes->rcOpen) {
    snprintf(pRes->zMsg, sizeof(pRes->zMsg), "%s", strataErrMsgGet());
    CHECK(r == NULL);
    return;
  }
  for (;;) {
    const u8 *p;
    size_t n;
    int rc = strataLogRead(r, &p, &n);
    if (rc != STRATA_OK) {
      pRes->rcEnd = rc;
      snprintf(pRes->zMsg, sizeof(pRes->zMsg), "%s", strataErrMsgGet());
      CHECK(p == NULL && n == 0);
      break;
    }
    if (bMatch && pRes->nRead < nRec && n == aSize[pRes->nRead]) {
      if (n > nWantAlloc) {
        free(pWant);
        nWantAlloc = n;
        pWant = malloc(n);
      }
      fillPayload(pWant, n, (u32)pRes->nRead);
      if (n == 0 || memcmp(p, pWant, n) == 0) pRes->nGood++;
      else bMatch = 0;
    } else {
      bMatch = 0;
    }
    pRes->nRead++;
  }
  pRes->bTorn = strataLogReaderTorn(r);
  pRes->offset = strataLogReaderOffset(r);
  /* A stopped reader stays stopped with the same answer. */
  {
    const u8 *p;
    size_t n;
    CHECK_EQ(strataLogRead(r, &p, &n), pRes->rcEnd);
  }
  strataLogReaderClose(r);
  free(pWant);
}

/* Frame one record by hand, as doc/FORMAT.md describes it. */
static size_t frameRecord(u8 *a, const u8 *p, u32 n, u32 type) {
  strataPut32(a + 4, n);
  strataPut32(a + 8, strataCrcMask(strataCrc32c(0, p, n)));
  strataPut32(a + 12, type);
  strataPut32(a + 0, strataCrcMask(strataCrc32c(0, a + 4, 12)));
  if (n) memcpy(a + RH, p, n);
  return RH + n;
}

static void fileHeader(u8 *a, u32 kind) {
  memcpy(a, "strataLG", 8);
  strataPut32(a + 8, 1);
  strataPut32(a + 12, kind);
}

/* ------------------------------------------------------------------ */
/* Round trips */

static void test_log_roundtrip(void) {
  const char *zDir = test_dir("log_roundtrip");
  char zPath[4200];
  TestRng rng;
  enum { NREC = 320 };
  size_t aSize[NREC];
  u64 aStart[NREC + 1];
  LogWriter *w = NULL;
  u8 *p = malloc(2 * 1024 * 1024);
  int i;
  ReadResult res;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  test_srand(&rng, test_seed("log_roundtrip"));
  for (i = 0; i < NREC; i++) {
    u64 k = test_randn(&rng, 100);
    if (k < 60) aSize[i] = (size_t)test_randn(&rng, 101);
    else if (k < 85) aSize[i] = (size_t)test_randn(&rng, 4097);
    else if (k < 97) aSize[i] = (size_t)test_randn(&rng, 100001);
    else aSize[i] = (size_t)(1024 * 1024 + test_randn(&rng, 600000));
  }
  /* Sizes around the 64 KiB write buffer, a 0-byte and a > 1 MiB record. */
  aSize[10] = 0;
  aSize[11] = 65536 - 16;
  aSize[12] = 65536 - 15;
  aSize[13] = 65536;
  aSize[14] = 65536 - 16 - 1;
  aSize[15] = 1;
  aSize[16] = 1536 * 1024;
  aSize[17] = 0;
  aSize[NREC - 1] = 256 * 1024 + 1; /* bigger than the read window */

  CHECK_EQ(strataLogWriterOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
  CHECK(strataLogSize(w) == FH);
  for (i = 0; i < NREC && w; i++) {
    u64 k = test_randn(&rng, 100);
    aStart[i] = strataLogSize(w);
    fillPayload(p, aSize[i], (u32)i);
    CHECK_EQ(strataLogAppend(w, p, aSize[i]), STRATA_OK);
    memset(p, 0xee, aSize[i]); /* the writer must have copied or written it */
    CHECK(strataLogSize(w) == aStart[i] + RH + aSize[i]);
    if (k < 10) CHECK_EQ(strataLogFlush(w), STRATA_OK);
    if (k == 10) CHECK_EQ(strataLogSync(w), STRATA_OK);
    if (k <= 10) CHECK(fileSize(zPath) == strataLogSize(w)); /* nothing left buffered */
  }
  aStart[NREC] = strataLogSize(w);
  CHECK_EQ(strataLogWriterClose(w), STRATA_OK);
  CHECK(fileSize(zPath) == aStart[NREC]);

  readLog(NULL, zPath, STRATA_LOG_WAL, NREC, aSize, &res);
  CHECK_EQ(res.rcOpen, STRATA_OK);
  CHECK_EQ(res.nRead, NREC);
  CHECK_EQ(res.nGood, NREC);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 0);
  CHECK(res.offset == aStart[NREC]);
  /* The same file is not a manifest. */
  readLog(NULL, zPath, STRATA_LOG_MANIFEST, NREC, aSize, &res);
  CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "expected a manifest") != NULL);
  free(p);
  test_rmdir(zDir);
}

/* The layout on disk is exactly the documented one. */
static void test_log_bytes(void) {
  const char *zDir = test_dir("log_bytes");
  char zPath[4200];
  u8 aWant[200];
  u8 *a;
  size_t n, nWant = 0;
  LogWriter *w = NULL;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/MANIFEST", zDir);
  CHECK_EQ(strataLogWriterOpen(strataEnvDefault(), zPath, STRATA_LOG_MANIFEST, NULL, &w),
           STRATA_OK);
  CHECK(fileSize(zPath) == 0); /* the header is buffered too */
  CHECK(strataLogSize(w) == FH);
  CHECK_EQ(strataLogAppend(w, (const u8 *)"hello", 5), STRATA_OK);
  CHECK_EQ(strataLogAppend(w, NULL, 0), STRATA_OK);
  CHECK(strataLogSize(w) == FH + RH + 5 + RH);
  CHECK(fileSize(zPath) == 0);
  CHECK_EQ(strataLogFlush(w), STRATA_OK);
  CHECK(fileSize(zPath) == FH + RH + 5 + RH);
  CHECK_EQ(strataLogWriterClose(w), STRATA_OK);
  fileHeader(aWant, STRATA_LOG_MANIFEST);
  nWant = FH;
  nWant += frameRecord(aWant + nWant, (const u8 *)"hello", 5, 1);
  nWant += frameRecord(aWant + nWant, NULL, 0, 1);
  a = readWhole(zPath, &n);
  CHECK(a != NULL);
  CHECK_EQ(n, nWant);
  if (a && n == nWant) CHECK(memcmp(a, aWant, n) == 0);
  free(a);
  /* Close with nothing appended still writes the header. */
  CHECK_EQ(strataLogWriterOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
  CHECK_EQ(strataLogWriterClose(w), STRATA_OK);
  CHECK(fileSize(zPath) == FH);
  CHECK_EQ(strataLogWriterClose(NULL), STRATA_OK);
  /* A bad kind is refused. */
  w = (LogWriter *)1;
  CHECK_EQ(strataLogWriterOpen(strataEnvDefault(), zPath, 7, NULL, &w), STRATA_MISUSE);
  CHECK(w == NULL);
  test_rmdir(zDir);
}

/* Many small appends are one write; a large record is two; reads are in
** large chunks. Counted through the fault env, armed to never fire. */
static void test_log_syscalls(void) {
  const char *zDir = test_dir("log_syscalls");
  char zPath[4200];
  strata_env *env = strataFaultEnvNew(NULL);
  LogWriter *w = NULL;
  u8 *p = malloc(1 << 20);
  int i;
  ReadResult res;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  memset(p, 'x', 1 << 20);
  CHECK_EQ(strataLogWriterOpen(env, zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_WRITE, 1000000000);
  for (i = 0; i < 1000; i++) CHECK_EQ(strataLogAppend(w, p, 20), STRATA_OK);
  CHECK_EQ(strataFaultEnvCount(env), 0);
  CHECK_EQ(strataLogFlush(w), STRATA_OK);
  CHECK_EQ(strataFaultEnvCount(env), 1);
  CHECK_EQ(strataLogFlush(w), STRATA_OK); /* nothing buffered: no call */
  CHECK_EQ(strataFaultEnvCount(env), 1);
  CHECK_EQ(strataLogAppend(w, p, 100), STRATA_OK);
  CHECK_EQ(strataLogAppend(w, p, 1 << 20), STRATA_OK); /* buffer + head, then the rest */
  CHECK_EQ(strataFaultEnvCount(env), 3);
  CHECK(fileSize(zPath) == strataLogSize(w));
  /* 100 KiB of 1 KiB records: a write each time 64 KiB fills. */
  for (i = 0; i < 100; i++) CHECK_EQ(strataLogAppend(w, p, 1024 - RH), STRATA_OK);
  CHECK_EQ(strataFaultEnvCount(env), 4);
  CHECK_EQ(strataLogSync(w), STRATA_OK);
  CHECK_EQ(strataFaultEnvCount(env), 5);
  /* 4 MiB of small records. */
  for (i = 0; i < 4 * 1024; i++) CHECK_EQ(strataLogAppend(w, p, 1024 - RH), STRATA_OK);
  CHECK_EQ(strataLogWriterClose(w), STRATA_OK);
  CHECK(strataFaultEnvCount(env) <= 5 + 4 * 1024 / 64 + 1);
  /* Reading it: about one read per 256 KiB (the open counts as one). */
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, 1000000000);
  readLog(env, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.nRead, 1000 + 2 + 100 + 4 * 1024);
  CHECK(strataFaultEnvCount(env) <= (int)(fileSize(zPath) / (256 * 1024)) + 6);
  strataFaultEnvDisarm(env);
  strataFaultEnvFree(env);
  free(p);
  test_rmdir(zDir);
}

/* A reader at the end picks up records appended later (a WAL iterator). */
static void test_log_tail_follow(void) {
  const char *zDir = test_dir("log_tail");
  char zPath[4200];
  LogWriter *w = NULL;
  LogReader *r = NULL;
  const u8 *p;
  size_t n;
  int i;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  CHECK_EQ(strataLogWriterOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
  CHECK_EQ(strataLogAppend(w, (const u8 *)"one", 3), STRATA_OK);
  CHECK_EQ(strataLogFlush(w), STRATA_OK);
  CHECK_EQ(strataLogReaderOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, &r), STRATA_OK);
  CHECK_EQ(strataLogRead(r, &p, &n), STRATA_OK);
  CHECK(n == 3 && memcmp(p, "one", 3) == 0);
  CHECK_EQ(strataLogRead(r, &p, &n), STRATA_NOTFOUND);
  CHECK_EQ(strataLogReaderTorn(r), 0);
  for (i = 0; i < 3; i++) {
    char z[16];
    snprintf(z, sizeof(z), "rec%d", i);
    CHECK_EQ(strataLogAppend(w, (const u8 *)z, strlen(z)), STRATA_OK);
    CHECK_EQ(strataLogFlush(w), STRATA_OK);
    CHECK_EQ(strataLogRead(r, &p, &n), STRATA_OK);
    CHECK(n == strlen(z) && memcmp(p, z, n) == 0);
    CHECK_EQ(strataLogRead(r, &p, &n), STRATA_NOTFOUND);
    CHECK(strataLogReaderOffset(r) == strataLogSize(w));
  }
  strataLogReaderClose(r);
  CHECK_EQ(strataLogWriterClose(w), STRATA_OK);
  strataLogReaderClose(NULL);
  test_rmdir(zDir);
}

/* ------------------------------------------------------------------ */
/* Torn tails and corruption */

/* Every truncation of a small log: the whole records before the cut come
** back, and a cut inside a record is a torn tail at that record's start. */
static void test_log_truncate_every_offset(void) {
  const char *zDir = test_dir("log_truncate");
  char zPath[4200], zCut[4200];
  static const size_t aSize[] = {0, 10, 100, 3, 50, 17, 1};
  enum { NREC = sizeof(aSize) / sizeof(aSize[0]) };
  u64 aStart[NREC + 1];
  u8 *a;
  size_t n, t;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  snprintf(zCut, sizeof(zCut), "%s/cut", zDir);
  CHECK_EQ(writeLog(NULL, zPath, STRATA_LOG_WAL, NREC, aSize, aStart), STRATA_OK);
  a = readWhole(zPath, &n);
  CHECK(a && n == aStart[NREC]);
  for (t = 0; a && t <= n; t++) {
    ReadResult res;
    int k = 0, nBad0 = tu_curFail;
    u64 boundary;
    while (k < NREC && aStart[k + 1] <= t) k++;
    boundary = t < FH ? 0 : aStart[k];
    writeWhole(zCut, a, t);
    readLog(NULL, zCut, STRATA_LOG_WAL, NREC, aSize, &res);
    CHECK_EQ(res.rcOpen, STRATA_OK);
    CHECK_EQ(res.nRead, k);
    CHECK_EQ(res.nGood, k);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK(res.offset == boundary);
    CHECK_EQ(res.bTorn, t != boundary);
    if (tu_curFail != nBad0) {
      fprintf(stderr, "  (cut at %zu)\n", t);
      break;
    }
  }
  free(a);
  test_rmdir(zDir);
}

/* Truncations of a log whose last record is larger than the read window. */
static void test_log_truncate_big(void) {
  const char *zDir = test_dir("log_truncate_big");
  char zPath[4200], zCut[4200];
  static const size_t aSize[] = {100, 2 * 1024 * 1024 + 5};
  u64 aStart[3];
  u8 *a;
  size_t n;
  static const u64 aCut[] = {0, 1, 15, 16, 17, 31, 32, 200, 1000, 65536, 1024 * 1024};
  size_t i;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  snprintf(zCut, sizeof(zCut), "%s/cut", zDir);
  CHECK_EQ(writeLog(NULL, zPath, STRATA_LOG_WAL, 2, aSize, aStart), STRATA_OK);
  a = readWhole(zPath, &n);
  for (i = 0; a && i < sizeof(aCut) / sizeof(aCut[0]); i++) {
    ReadResult res;
    u64 t = aStart[1] + aCut[i];
    writeWhole(zCut, a, (size_t)t);
    readLog(NULL, zCut, STRATA_LOG_WAL, 2, aSize, &res);
    CHECK_EQ(res.nGood, 1);
    CHECK_EQ(res.nRead, 1);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK(res.offset == aStart[1]);
    CHECK_EQ(res.bTorn, aCut[i] != 0);
  }
  /* A header (valid CRC) that claims 3 GiB in a small file: torn, and the
  ** reader must not try to allocate the claimed size. */
  {
    u8 aHdr[FH + RH];
    ReadResult res;
    fileHeader(aHdr, STRATA_LOG_WAL);
    strataPut32(aHdr + FH + 4, 3000000000u);
    strataPut32(aHdr + FH + 8, 0);
    strataPut32(aHdr + FH + 12, 1);
    strataPut32(aHdr + FH, strataCrcMask(strataCrc32c(0, aHdr + FH + 4, 12)));
    writeWhole(zCut, aHdr, sizeof(aHdr));
    /* Five allocations open the reader (itself, its path, its window, the
    ** file and its path); the next one, growing the window, would fail. */
    strataTestFailMalloc(6, 1);
    readLog(NULL, zCut, STRATA_LOG_WAL, 0, NULL, &res);
    strataTestFailMalloc(0, 0);
    CHECK_EQ(res.rcOpen, STRATA_OK);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK_EQ(res.bTorn, 1);
    CHECK(res.offset == FH);
  }
  free(a);
  test_rmdir(zDir);
}

static void test_log_zero_tail(void) {
  const char *zDir = test_dir("log_zero_tail");
  char zPath[4200], zBad[4200];
  static const size_t aSize[] = {5, 300, 0, 40, 1000};
  enum { NREC = sizeof(aSize) / sizeof(aSize[0]) };
  u64 aStart[NREC + 1];
  u8 *a, *b;
  size_t n;
  static const size_t aZero[] = {1, 5, 15, 16, 17, 100, 4096, 300000};
  size_t i;
  ReadResult res;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  snprintf(zBad, sizeof(zBad), "%s/bad", zDir);
  CHECK_EQ(writeLog(NULL, zPath, STRATA_LOG_WAL, NREC, aSize, aStart), STRATA_OK);
  a = readWhole(zPath, &n);
  b = calloc(1, n + 300000);
  memcpy(b, a, n);
  /* Zeros after the last record. */
  for (i = 0; i < sizeof(aZero) / sizeof(aZero[0]); i++) {
    writeWhole(zBad, b, n + aZero[i]);
    readLog(NULL, zBad, STRATA_LOG_WAL, NREC, aSize, &res);
    CHECK_EQ(res.nGood, NREC);
    CHECK_EQ(res.nRead, NREC);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK_EQ(res.bTorn, 1);
    CHECK(res.offset == n);
  }
  /* Zeros over the end of the last record, and over all of it. */
  memset(b + aStart[NREC - 1] + 100, 0, n - aStart[NREC - 1] - 100);
  writeWhole(zBad, b, n + 4096);
  readLog(NULL, zBad, STRATA_LOG_WAL, NREC, aSize, &res);
  CHECK_EQ(res.nGood, NREC - 1);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 1);
  CHECK(res.offset == aStart[NREC - 1]);
  memset(b + aStart[NREC - 1], 0, n - aStart[NREC - 1]);
  writeWhole(zBad, b, n);
  readLog(NULL, zBad, STRATA_LOG_WAL, NREC, aSize, &res);
  CHECK_EQ(res.nGood, NREC - 1);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 1);
  CHECK(res.offset == aStart[NREC - 1]);
  /* Zeros over a middle record, with valid records after it: corruption. */
  memcpy(b, a, n);
  memset(b + aStart[1], 0, aStart[2] - aStart[1]);
  writeWhole(zBad, b, n);
  readLog(NULL, zBad, STRATA_LOG_WAL, NREC, aSize, &res);
  CHECK_EQ(res.nGood, 1);
  CHECK_EQ(res.rcEnd, STRATA_CORRUPT);
  CHECK_EQ(res.bTorn, 0);
  CHECK(res.offset == aStart[1]);
  free(a);
  free(b);
  test_rmdir(zDir);
}

/* A flipped byte anywhere in a middle record is corruption, reported with
** the file and the record's offset; anywhere in the last record, a torn
** tail; anywhere in the file header, a bad file. */
static void test_log_flip_every_byte(void) {
  const char *zDir = test_dir("log_flip");
  char zPath[4200], zBad[4200];
  static const size_t aSize[] = {20, 0, 300, 5, 1000, 40, 7, 64};
  enum { NREC = sizeof(aSize) / sizeof(aSize[0]) };
  u64 aStart[NREC + 1];
  static const u8 aXor[] = {0x01, 0x80, 0xff};
  u8 *a;
  size_t n, pos, x;
  int nBad0 = tu_curFail;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  snprintf(zBad, sizeof(zBad), "%s/bad", zDir);
  CHECK_EQ(writeLog(NULL, zPath, STRATA_LOG_WAL, NREC, aSize, aStart), STRATA_OK);
  a = readWhole(zPath, &n);
  for (pos = 0; a && pos < n && tu_curFail == nBad0; pos++) {
    for (x = 0; x < sizeof(aXor); x++) {
      ReadResult res;
      int k = 0;
      while (k < NREC && aStart[k + 1] <= pos) k++;
      a[pos] ^= aXor[x];
      writeWhole(zBad, a, n);
      a[pos] ^= aXor[x];
      readLog(NULL, zBad, STRATA_LOG_WAL, NREC, aSize, &res);
      if (pos < FH) {
        CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
        CHECK(strstr(res.zMsg, zBad) != NULL);
      } else if (k < NREC - 1) {
        char zOff[64];
        snprintf(zOff, sizeof(zOff), "offset %llu ", (unsigned long long)aStart[k]);
        CHECK_EQ(res.rcOpen, STRATA_OK);
        CHECK_EQ(res.nGood, k);
        CHECK_EQ(res.nRead, k);
        CHECK_EQ(res.rcEnd, STRATA_CORRUPT);
        CHECK(strstr(res.zMsg, zOff) != NULL);
        CHECK(strstr(res.zMsg, zBad) != NULL);
        CHECK_EQ(res.bTorn, 0);
        CHECK(res.offset == aStart[k]);
      } else if (pos < aStart[NREC - 1] + RH) {
        /* The last record's header: its extent is unknown, a torn tail. */
        CHECK_EQ(res.rcOpen, STRATA_OK);
        CHECK_EQ(res.nGood, NREC - 1);
        CHECK_EQ(res.nRead, NREC - 1);
        CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
        CHECK_EQ(res.bTorn, 1);
        CHECK(res.offset == aStart[NREC - 1]);
      } else {
        /* The last record is all there and its end was written: damage, not
        ** a write cut short. */
        CHECK_EQ(res.rcOpen, STRATA_OK);
        CHECK_EQ(res.nGood, NREC - 1);
        CHECK_EQ(res.rcEnd, STRATA_CORRUPT);
        CHECK_EQ(res.bTorn, 0);
        CHECK(strstr(res.zMsg, "complete last record") != NULL);
      }
      if (tu_curFail != nBad0) {
        fprintf(stderr, "  (byte %zu ^ 0x%02x: %s)\n", pos, aXor[x], res.zMsg);
        break;
      }
    }
  }
  free(a);
  test_rmdir(zDir);
}

/* A torn last record whose payload holds something that looks like a valid
** record is still a torn tail: a header that checks is trusted for the
** record's extent, so the search for later records starts after it. */
static void test_log_torn_with_record_inside(void) {
  const char *zDir = test_dir("log_inner");
  char zPath[4200];
  u8 a[2000], inner[100];
  size_t n = 0, nInner;
  u8 payload[1000];
  ReadResult res;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  fileHeader(a, STRATA_LOG_WAL);
  n = FH;
  n += frameRecord(a + n, (const u8 *)"first", 5, 1);
  nInner = frameRecord(inner, (const u8 *)"a record inside a value", 23, 1);
  memset(payload, 'v', sizeof(payload));
  memcpy(payload + 50, inner, nInner);
  /* The record ends in zeros from file offset 1024 on: the shape of a write
  ** a crash cut short (its last sector never written). */
  memset(payload + (1024 - (FH + RH + 5 + RH)), 0, sizeof(payload) - (1024 - (FH + RH + 5 + RH)));
  n += frameRecord(a + n, payload, sizeof(payload), 1);
  a[FH + RH + 5 + RH + 3] ^= 1; /* damage the last payload before the inner record */
  writeWhole(zPath, a, n);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.nRead, 1);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 1);
  CHECK(res.offset == FH + RH + 5);
  /* But a damaged header (extent unknown) followed by a valid record found
  ** by the byte scan is corruption. */
  a[FH + RH + 5 + RH + 3] ^= 1;
  n += frameRecord(a + n, (const u8 *)"third", 5, 1);
  a[FH + RH + 5 + 5] ^= 0x40; /* the length field of the second record */
  writeWhole(zPath, a, n);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.nRead, 1);
  CHECK_EQ(res.rcEnd, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "offset 37 ") != NULL);
  CHECK(strstr(res.zMsg, "bad header checksum") != NULL);
  test_rmdir(zDir);
}

/* Valid checksums with an unknown record type: corruption, even at the end. */
static void test_log_unknown_type(void) {
  const char *zDir = test_dir("log_type");
  char zPath[4200];
  u8 a[200];
  size_t n;
  ReadResult res;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  fileHeader(a, STRATA_LOG_WAL);
  n = FH;
  n += frameRecord(a + n, (const u8 *)"ok", 2, 1);
  n += frameRecord(a + n, (const u8 *)"future", 6, 2);
  writeWhole(zPath, a, n);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.nRead, 1);
  CHECK_EQ(res.rcEnd, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "unknown type") != NULL);
  CHECK(strstr(res.zMsg, "offset 34") != NULL);
  CHECK_EQ(res.bTorn, 0);
  test_rmdir(zDir);
}

static void test_log_file_header(void) {
  const char *zDir = test_dir("log_header");
  char zPath[4200];
  u8 a[FH + RH + 10];
  ReadResult res;
  LogReader *r = (LogReader *)1;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  /* Missing file. */
  CHECK_EQ(strataLogReaderOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, &r), STRATA_CANTOPEN);
  CHECK(r == NULL);
  /* Empty file: an empty log, not torn. */
  writeWhole(zPath, a, 0);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_OK);
  CHECK_EQ(res.nRead, 0);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 0);
  CHECK(res.offset == 0);
  /* A start of a header: an empty log, torn. */
  fileHeader(a, STRATA_LOG_WAL);
  writeWhole(zPath, a, 7);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_OK);
  CHECK_EQ(res.nRead, 0);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 1);
  CHECK(res.offset == 0);
  writeWhole(zPath, a, 15);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_OK);
  CHECK_EQ(res.bTorn, 1);
  /* A short file that is not the start of a header. */
  writeWhole(zPath, (const u8 *)"garbage", 7);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "not a strata log") != NULL);
  writeWhole(zPath, a, 15);
  readLog(NULL, zPath, STRATA_LOG_MANIFEST, 0, NULL, &res); /* the kind differs */
  CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
  /* Header only: empty, not torn. */
  writeWhole(zPath, a, FH);
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_OK);
  CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
  CHECK_EQ(res.bTorn, 0);
  CHECK(res.offset == FH);
  /* Bad magic, version, kind. */
  frameRecord(a + FH, (const u8 *)"0123456789", 10, 1);
  memcpy(a, "leveldbX", 8);
  writeWhole(zPath, a, sizeof(a));
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "not a strata log") != NULL);
  fileHeader(a, STRATA_LOG_WAL);
  strataPut32(a + 8, 2);
  writeWhole(zPath, a, sizeof(a));
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "format version 2") != NULL);
  fileHeader(a, STRATA_LOG_MANIFEST);
  writeWhole(zPath, a, sizeof(a));
  readLog(NULL, zPath, STRATA_LOG_WAL, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_CORRUPT);
  CHECK(strstr(res.zMsg, "is a manifest") != NULL);
  readLog(NULL, zPath, STRATA_LOG_MANIFEST, 0, NULL, &res);
  CHECK_EQ(res.rcOpen, STRATA_OK);
  CHECK_EQ(res.nRead, 1);
  CHECK_EQ(res.bTorn, 0);
  test_rmdir(zDir);
}

/* ------------------------------------------------------------------ */
/* Write faults */

static void test_log_sticky_failure(void) {
  const char *zDir = test_dir("log_sticky");
  char zPath[4200];
  strata_env *env = strataFaultEnvNew(NULL);
  static const int aKind[] = {STRATA_FAULT_EIO, STRATA_FAULT_ENOSPC, STRATA_FAULT_SHORT};
  static const int aWant[] = {STRATA_IOERR, STRATA_FULL, STRATA_IOERR};
  size_t i;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  for (i = 0; i < 3; i++) {
    LogWriter *w = NULL;
    ReadResult res;
    static const size_t aSize[] = {10, 20, 30, 40};
    u8 p[64];
    int k;
    strataFaultEnvDisarm(env);
    CHECK_EQ(strataLogWriterOpen(env, zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
    fillPayload(p, 10, 0);
    CHECK_EQ(strataLogAppend(w, p, 10), STRATA_OK);
    CHECK_EQ(strataLogSync(w), STRATA_OK);
    strataFaultEnvArm(env, aKind[i], STRATA_FAULTOP_WRITE, 1);
    for (k = 1; k < 4; k++) {
      fillPayload(p, aSize[k], (u32)k);
      CHECK_EQ(strataLogAppend(w, p, aSize[k]), STRATA_OK);
    }
    CHECK_EQ(strataLogFlush(w), aWant[i]);
    CHECK_EQ(strataFaultEnvCount(env), 1);
    /* From now on every call gives the first error and writes nothing. */
    CHECK_EQ(strataLogAppend(w, p, 5), aWant[i]);
    CHECK(strstr(strataErrMsgGet(), "earlier write failed") != NULL);
    CHECK(strstr(strataErrMsgGet(), "injected") != NULL);
    CHECK_EQ(strataLogFlush(w), aWant[i]);
    CHECK_EQ(strataLogSync(w), aWant[i]);
    CHECK_EQ(strataLogWriterClose(w), aWant[i]);
    CHECK_EQ(strataFaultEnvCount(env), 1);
    /* Recovery: the synced record, then at most a clean prefix of the rest. */
    strataFaultEnvDisarm(env);
    readLog(NULL, zPath, STRATA_LOG_WAL, 4, aSize, &res);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK(res.nGood >= 1);
    CHECK_EQ(res.nGood, res.nRead);
    if (aKind[i] == STRATA_FAULT_SHORT) {
      /* Half of the 3 buffered frames (36+46+56 bytes) landed: the first
      ** one whole and part of the second. */
      CHECK_EQ(res.nRead, 2);
      CHECK_EQ(res.bTorn, 1);
      CHECK(res.offset == FH + RH + 10 + RH + 20);
    } else {
      CHECK_EQ(res.nRead, 1);
      CHECK_EQ(res.bTorn, 0);
    }
  }

  /* A failed sync is sticky too. */
  {
    LogWriter *w = NULL;
    strataFaultEnvDisarm(env);
    CHECK_EQ(strataLogWriterOpen(env, zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
    strataFaultEnvArm(env, STRATA_FAULT_SYNC, STRATA_FAULTOP_SYNC, 1);
    CHECK_EQ(strataLogAppend(w, (const u8 *)"x", 1), STRATA_OK);
    CHECK_EQ(strataLogSync(w), STRATA_IOERR);
    CHECK_EQ(strataLogAppend(w, (const u8 *)"y", 1), STRATA_IOERR);
    CHECK_EQ(strataLogSync(w), STRATA_IOERR);
    CHECK_EQ(strataFaultEnvCount(env), 1);
    CHECK_EQ(strataLogWriterClose(w), STRATA_IOERR);
  }

  /* The second write of a large record fails: the record is torn. */
  {
    LogWriter *w = NULL;
    ReadResult res;
    static const size_t aSize[] = {10, 500000};
    u8 *p = malloc(500000);
    strataFaultEnvDisarm(env);
    CHECK_EQ(strataLogWriterOpen(env, zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
    fillPayload(p, 10, 0);
    CHECK_EQ(strataLogAppend(w, p, 10), STRATA_OK);
    strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_WRITE, 2);
    fillPayload(p, 500000, 1);
    CHECK_EQ(strataLogAppend(w, p, 500000), STRATA_IOERR);
    CHECK_EQ(strataLogAppend(w, p, 10), STRATA_IOERR);
    CHECK_EQ(strataLogWriterClose(w), STRATA_IOERR);
    strataFaultEnvDisarm(env);
    readLog(NULL, zPath, STRATA_LOG_WAL, 2, aSize, &res);
    CHECK_EQ(res.nRead, 1);
    CHECK_EQ(res.nGood, 1);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK_EQ(res.bTorn, 1);
    CHECK(res.offset == FH + RH + 10);
    free(p);
  }
  strataFaultEnvFree(env);
  test_rmdir(zDir);
}

/* A crash at the nth write, for every n: recovery returns a prefix of the
** records with nothing corrupt, and every record flushed before the crash. */
static void test_log_crash_every_write(void) {
  const char *zDir = test_dir("log_crash");
  char zPath[4200];
  strata_env *env = strataFaultEnvNew(NULL);
  enum { NREC = 120 };
  size_t aSize[NREC];
  int aFlush[NREC];
  TestRng rng;
  int i, nWrite = 0, nCrash;
  u8 *p = malloc(100000);
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  test_srand(&rng, test_seed("log_crash"));
  for (i = 0; i < NREC; i++) {
    aSize[i] = test_randn(&rng, 8) == 0 ? (size_t)test_randn(&rng, 100000)
                                        : (size_t)test_randn(&rng, 3000);
    aFlush[i] = test_randn(&rng, 5) == 0;
  }
  /* Count the writes of an undisturbed run. */
  for (nCrash = 0;; nCrash++) {
    LogWriter *w = NULL;
    ReadResult res;
    int nDurable = 0, rc = STRATA_OK;
    strataFaultEnvArm(env, nCrash ? STRATA_FAULT_CRASH : STRATA_FAULT_EIO, STRATA_FAULTOP_WRITE,
                      nCrash ? nCrash : 1000000000);
    CHECK_EQ(strataLogWriterOpen(env, zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
    for (i = 0; i < NREC && rc == STRATA_OK; i++) {
      fillPayload(p, aSize[i], (u32)i);
      rc = strataLogAppend(w, p, aSize[i]);
      if (rc == STRATA_OK && aFlush[i]) {
        rc = strataLogFlush(w);
        if (rc == STRATA_OK) nDurable = i + 1;
      }
    }
    if (rc == STRATA_OK) rc = strataLogWriterClose(w);
    else strataLogWriterClose(w);
    if (rc == STRATA_OK) nDurable = NREC;
    if (nCrash == 0) nWrite = strataFaultEnvCount(env);
    strataFaultEnvDisarm(env);
    readLog(NULL, zPath, STRATA_LOG_WAL, NREC, aSize, &res);
    CHECK(res.rcOpen == STRATA_OK);
    CHECK_EQ(res.rcEnd, STRATA_NOTFOUND);
    CHECK_EQ(res.nGood, res.nRead);
    CHECK(res.nRead >= nDurable);
    if (nCrash == 0) {
      CHECK_EQ(rc, STRATA_OK);
      CHECK_EQ(res.nRead, NREC);
    } else {
      CHECK_EQ(rc, STRATA_IOERR);
      CHECK(res.nRead < NREC);
      if (nCrash >= nWrite) break;
    }
    if (nCrash > 0 && tu_curFail) {
      fprintf(stderr, "  (crash at write %d)\n", nCrash);
      break;
    }
  }
  CHECK(nCrash > 10);
  free(p);
  strataFaultEnvFree(env);
  test_rmdir(zDir);
}

/* Out of memory while opening. */
static void test_log_nomem(void) {
  const char *zDir = test_dir("log_nomem");
  char zPath[4200];
  int i;
  static const size_t aSize[] = {1, 2};
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  for (i = 1; i <= 7; i++) {
    LogWriter *w = (LogWriter *)1;
    LogReader *r = (LogReader *)1;
    int rc;
    strataTestFailMalloc(i, 0);
    rc = strataLogWriterOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, NULL, &w);
    strataTestFailMalloc(0, 0);
    CHECK(rc == STRATA_OK || rc == STRATA_NOMEM);
    CHECK((rc == STRATA_OK) == (w != NULL));
    if (w) strataLogWriterClose(w);
    CHECK_EQ(writeLog(NULL, zPath, STRATA_LOG_WAL, 2, aSize, NULL), STRATA_OK);
    strataTestFailMalloc(i, 0);
    rc = strataLogReaderOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, &r);
    strataTestFailMalloc(0, 0);
    CHECK(rc == STRATA_OK || rc == STRATA_NOMEM);
    CHECK((rc == STRATA_OK) == (r != NULL));
    if (r) strataLogReaderClose(r);
  }
  test_rmdir(zDir);
}

/* ------------------------------------------------------------------ */
/* Batches */

typedef struct OpRec {
  u64 seq;
  int type;
  StrataBuf key, val;
} OpRec;

typedef struct OpLog {
  OpRec a[2000];
  int n;
  int nStopAt; /* return 42 at this op (-1: never) */
  const u8 *pLo, *pHi; /* the encoding's bounds */
  int bOutOfBounds;
} OpLog;

static int collectOp(void *pCtx, u64 seq, int type, const u8 *pKey, size_t nKey, const u8 *pVal,
                     size_t nVal) {
  OpLog *l = pCtx;
  OpRec *o;
  if (pKey < l->pLo || pKey + nKey > l->pHi) l->bOutOfBounds = 1;
  if (pVal && (pVal < l->pLo || pVal + nVal > l->pHi)) l->bOutOfBounds = 1;
  if (type == STRATA_TYPE_DELETE && (pVal || nVal)) l->bOutOfBounds = 1;
  if (l->n < 2000) {
    o = &l->a[l->n];
    o->seq = seq;
    o->type = type;
    strataBufSet(&o->key, pKey, nKey);
    strataBufSet(&o->val, pVal, nVal);
  }
  if (l->n++ == l->nStopAt) return 42;
  return 0;
}

static void opLogReset(OpLog *l, const u8 *p, size_t n) {
  int i;
  for (i = 0; i < 2000; i++) {
    l->a[i].key.n = 0;
    l->a[i].val.n = 0;
  }
  l->n = 0;
  l->nStopAt = -1;
  l->pLo = p;
  l->pHi = p + n;
  l->bOutOfBounds = 0;
}

static void opLogFree(OpLog *l) {
  int i;
  for (i = 0; i < 2000; i++) {
    strataBufFree(&l->a[i].key);
    strataBufFree(&l->a[i].val);
  }
}

static int batchIterate(const strata_batch *b, OpLog *l) {
  opLogReset(l, b->rep.a, b->rep.n);
  return strataBatchIterate(b->rep.a, b->rep.n, l, collectOp);
}

static void test_batch_roundtrip(void) {
  static OpLog l;
  strata_batch *b = NULL, *c = NULL;
  TestRng rng;
  int i, nOp = 1000;
  u64 nUser = 0;
  u8 key[300], val[3000];
  test_srand(&rng, test_seed("batch_roundtrip"));
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  CHECK_EQ(strata_batch_count(b), 0);
  CHECK_EQ(strataBatchCount(b), 0);
  CHECK_EQ(b->rep.n, STRATA_BATCH_HEADER);
  CHECK_EQ(batchIterate(b, &l), STRATA_OK);
  CHECK_EQ(l.n, 0);
  for (i = 0; i < nOp; i++) {
    size_t nKey = (size_t)test_randn(&rng, i % 10 == 0 ? 300 : 20);
    size_t nVal = (size_t)test_randn(&rng, i % 7 == 0 ? 3000 : 50);
    fillPayload(key, nKey, (u32)i);
    fillPayload(val, nVal, (u32)i + 100000);
    if (i % 3 == 2) {
      CHECK_EQ(strata_batch_delete(b, key, nKey), STRATA_OK);
      nUser += nKey;
    } else {
      CHECK_EQ(strata_batch_put(b, key, nKey, val, nVal), STRATA_OK);
      nUser += nKey + nVal;
    }
  }
  CHECK_EQ(strata_batch_count(b), nOp);
  CHECK(b->nUserBytes == nUser);
  strataBatchSetSeq(b, 5000);
  CHECK(strataBatchSeq(b) == 5000);
  CHECK_EQ(batchIterate(b, &l), STRATA_OK);
  CHECK_EQ(l.n, nOp);
  CHECK_EQ(l.bOutOfBounds, 0);
  for (i = 0; i < nOp && i < l.n; i++) {
    OpRec *o = &l.a[i];
    CHECK(o->seq == 5000 + (u64)i);
    CHECK_EQ(o->type, i % 3 == 2 ? STRATA_TYPE_DELETE : STRATA_TYPE_VALUE);
    fillPayload(key, o->key.n, (u32)i);
    CHECK(o->key.n == 0 || memcmp(o->key.a, key, o->key.n) == 0);
    if (o->type == STRATA_TYPE_DELETE) CHECK_EQ(o->val.n, 0);
    fillPayload(val, o->val.n, (u32)i + 100000);
    CHECK(o->val.n == 0 || memcmp(o->val.a, val, o->val.n) == 0);
  }
  /* xOp stops the walk with its own result. */
  opLogReset(&l, b->rep.a, b->rep.n);
  l.nStopAt = 3;
  CHECK_EQ(strataBatchIterate(b->rep.a, b->rep.n, &l, collectOp), 42);
  CHECK_EQ(l.n, 4);

  /* Append: c's operations after b's, numbered on. */
  CHECK_EQ(strata_batch_new(&c), STRATA_OK);
  CHECK_EQ(strata_batch_put(c, "k1", 2, "v1", 2), STRATA_OK);
  CHECK_EQ(strata_batch_delete(c, "k2", 2), STRATA_OK);
  CHECK_EQ(strataBatchAppend(b, c), STRATA_OK);
  CHECK_EQ(strata_batch_count(b), nOp + 2);
  CHECK(b->nUserBytes == nUser + 6);
  CHECK_EQ(batchIterate(b, &l), STRATA_OK);
  CHECK_EQ(l.n, nOp + 2);
  CHECK(l.a[nOp].seq == 5000 + (u64)nOp && l.a[nOp + 1].seq == 5001 + (u64)nOp);
  CHECK(l.a[nOp].key.n == 2 && memcmp(l.a[nOp].key.a, "k1", 2) == 0);
  CHECK(l.a[nOp].val.n == 2 && memcmp(l.a[nOp].val.a, "v1", 2) == 0);
  CHECK_EQ(l.a[nOp + 1].type, STRATA_TYPE_DELETE);

  /* Clear empties it; it is reusable. */
  strata_batch_clear(b);
  CHECK_EQ(strata_batch_count(b), 0);
  CHECK(b->nUserBytes == 0);
  CHECK(strataBatchSeq(b) == 0);
  CHECK_EQ(b->rep.n, STRATA_BATCH_HEADER);
  CHECK_EQ(strata_batch_put(b, "", 0, "", 0), STRATA_OK); /* empty key and value */
  CHECK_EQ(strata_batch_put(b, NULL, 0, NULL, 0), STRATA_OK);
  CHECK_EQ(batchIterate(b, &l), STRATA_OK);
  CHECK_EQ(l.n, 2);
  CHECK(l.a[0].key.n == 0 && l.a[0].val.n == 0 && l.a[0].type == STRATA_TYPE_VALUE);
  strata_batch_free(b);
  strata_batch_free(c);
  strata_batch_free(NULL);
  strata_batch_clear(NULL);
  CHECK_EQ(strata_batch_count(NULL), 0);
  opLogFree(&l);
}

/* The encoding is exactly the documented one. */
static void test_batch_bytes(void) {
  strata_batch *b = NULL;
  static const u8 aWant[] = {
      0x07, 0, 0, 0, 0, 0, 0, 0, /* seq 7 */
      0x02, 0, 0, 0,             /* count 2 */
      0x01, 0x03, 'k', 'e', 'y', 0x05, 'v', 'a', 'l', 'u', 'e', /* put */
      0x00, 0x01, 'x'};                                         /* delete */
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  CHECK_EQ(strata_batch_put(b, "key", 3, "value", 5), STRATA_OK);
  CHECK_EQ(strata_batch_delete(b, "x", 1), STRATA_OK);
  strataBatchSetSeq(b, 7);
  CHECK_EQ(b->rep.n, sizeof(aWant));
  CHECK(memcmp(b->rep.a, aWant, sizeof(aWant)) == 0);
  /* A 200-byte key takes a two-byte length. */
  strata_batch_clear(b);
  {
    u8 key[200];
    memset(key, 'k', sizeof(key));
    CHECK_EQ(strata_batch_delete(b, key, 200), STRATA_OK);
    CHECK_EQ(b->rep.n, 12 + 1 + 2 + 200);
    CHECK(b->rep.a[13] == 0xc8 && b->rep.a[14] == 0x01);
  }
  strata_batch_free(b);
}

static void test_batch_limits(void) {
  strata_batch *b = NULL;
  u8 *big = calloc(1, STRATA_MAX_KEY + 1);
  size_t n0;
  CHECK_EQ(strata_batch_new(NULL), STRATA_MISUSE);
  CHECK_EQ(strata_batch_put(NULL, "k", 1, "v", 1), STRATA_MISUSE);
  CHECK_EQ(strata_batch_delete(NULL, "k", 1), STRATA_MISUSE);
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  CHECK_EQ(strata_batch_put(b, big, STRATA_MAX_KEY, "v", 1), STRATA_OK);
  CHECK_EQ(strata_batch_delete(b, big, STRATA_MAX_KEY), STRATA_OK);
  n0 = b->rep.n;
  CHECK_EQ(strata_batch_put(b, big, STRATA_MAX_KEY + 1, "v", 1), STRATA_TOOBIG);
  CHECK(strstr(strataErrMsgGet(), "key") != NULL);
  CHECK_EQ(strata_batch_delete(b, big, STRATA_MAX_KEY + 1), STRATA_TOOBIG);
  /* The length is checked before anything is read. */
  CHECK_EQ(strata_batch_put(b, "k", 1, big, (size_t)STRATA_MAX_VALUE + 1), STRATA_TOOBIG);
  CHECK(strstr(strataErrMsgGet(), "value") != NULL);
  CHECK_EQ(strata_batch_put(b, NULL, 1, "v", 1), STRATA_MISUSE);
  CHECK_EQ(strata_batch_put(b, "k", 1, NULL, 1), STRATA_MISUSE);
  CHECK_EQ(strata_batch_count(b), 2);
  CHECK_EQ(b->rep.n, n0);
  CHECK(b->nUserBytes == 2 * STRATA_MAX_KEY + 1);
  /* Out of memory: NOMEM, and the batch is unchanged. */
  strata_batch_free(b);
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  CHECK_EQ(strata_batch_put(b, "a", 1, "b", 1), STRATA_OK);
  n0 = b->rep.n;
  strataTestFailMalloc(1, 0);
  CHECK_EQ(strata_batch_put(b, big, 60000, big, 60000), STRATA_NOMEM);
  strataTestFailMalloc(0, 0);
  CHECK_EQ(b->rep.n, n0);
  CHECK_EQ(strata_batch_count(b), 1);
  CHECK(b->nUserBytes == 2);
  strata_batch_free(b);
  {
    strata_batch *p = (strata_batch *)1;
    int i, rc;
    for (i = 1; i <= 2; i++) {
      strataTestFailMalloc(i, 0);
      rc = strata_batch_new(&p);
      strataTestFailMalloc(0, 0);
      CHECK_EQ(rc, STRATA_NOMEM);
      CHECK(p == NULL);
    }
  }
  free(big);
}

/* Every truncation of a valid encoding and hand-made damage: CORRUPT, and
** xOp is never called for a damaged batch. Each input lives in a buffer of
** its exact size, so ASan or valgrind catch a read past its end. */
static void test_batch_truncated_and_damaged(void) {
  static OpLog l;
  strata_batch *b = NULL;
  size_t n, i;
  u8 *p;
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  CHECK_EQ(strata_batch_put(b, "alpha", 5, "one", 3), STRATA_OK);
  CHECK_EQ(strata_batch_delete(b, "beta", 4), STRATA_OK);
  {
    u8 v[300];
    memset(v, 'v', sizeof(v));
    CHECK_EQ(strata_batch_put(b, "gamma", 5, v, sizeof(v)), STRATA_OK); /* 2-byte vlen */
  }
  CHECK_EQ(strata_batch_put(b, "", 0, "", 0), STRATA_OK);
  strataBatchSetSeq(b, 77);
  n = b->rep.n;
  for (i = 0; i < n; i++) {
    int rc;
    p = malloc(i ? i : 1);
    memcpy(p, b->rep.a, i);
    opLogReset(&l, p, i);
    rc = strataBatchIterate(p, i, &l, collectOp);
    CHECK_EQ(rc, STRATA_CORRUPT);
    CHECK_EQ(l.n, 0);
    free(p);
  }
  p = malloc(n + 1);
  /* The whole encoding parses; one byte more does not. */
  memcpy(p, b->rep.a, n);
  opLogReset(&l, p, n);
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_OK);
  CHECK_EQ(l.n, 4);
  p[n] = 0;
  CHECK_EQ(strataBatchIterate(p, n + 1, &l, collectOp), STRATA_CORRUPT);
  /* Count too large, too small. */
  strataPut32(p + 8, 5);
  opLogReset(&l, p, n);
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  CHECK(strstr(strataErrMsgGet(), "operation 4 of 5") != NULL);
  strataPut32(p + 8, 3);
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  strataPut32(p + 8, 0xffffffffu);
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  strataPut32(p + 8, 4);
  /* Unknown type. */
  p[12] = 2;
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  CHECK(strstr(strataErrMsgGet(), "unknown operation type") != NULL);
  p[12] = 1;
  /* A key length past the end, and an unterminated varint. */
  p[13] = 0x7f;
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  p[13] = 0x85;
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  p[13] = 5;
  /* Sequence numbers past 2^56 - 1. */
  strataPut64(p, STRATA_MAX_SEQ - 2);
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_CORRUPT);
  strataPut64(p, STRATA_MAX_SEQ - 3);
  opLogReset(&l, p, n);
  CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_OK);
  CHECK(l.a[3].seq == STRATA_MAX_SEQ);
  CHECK_EQ(l.bOutOfBounds, 0);
  free(p);
  strata_batch_free(b);
  opLogFree(&l);
}

/* Random damage: every result is OK or CORRUPT, every pointer handed to xOp
** lies inside the input, and CORRUPT means xOp was never called. */
static void test_batch_fuzz(void) {
  static OpLog l;
  strata_batch *b = NULL;
  TestRng rng;
  int iter, nOk = 0, nCorrupt = 0, nIter = test_soak() ? 1000000 : 30000;
  u8 key[40], val[200];
  test_srand(&rng, test_seed("batch_fuzz"));
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  for (iter = 0; iter < nIter; iter++) {
    size_t n, j, nFlip;
    u8 *p;
    int rc;
    if (iter % 100 == 0) {
      int k, nOp = (int)test_randn(&rng, 8);
      strata_batch_clear(b);
      for (k = 0; k < nOp; k++) {
        size_t nKey = (size_t)test_randn(&rng, 40), nVal = (size_t)test_randn(&rng, 200);
        fillPayload(key, nKey, (u32)k);
        fillPayload(val, nVal, (u32)k + 7);
        if (test_randn(&rng, 3) == 0) strata_batch_delete(b, key, nKey);
        else strata_batch_put(b, key, nKey, val, nVal);
      }
      strataBatchSetSeq(b, test_randn(&rng, 1000000));
    }
    n = b->rep.n;
    if (test_randn(&rng, 4) == 0) n = (size_t)test_randn(&rng, n + 1); /* also truncate */
    p = malloc(n ? n : 1);
    memcpy(p, b->rep.a, n);
    nFlip = n ? 1 + (size_t)test_randn(&rng, 3) : 0;
    for (j = 0; j < nFlip; j++) {
      size_t pos = (size_t)test_randn(&rng, n);
      if (test_randn(&rng, 2)) p[pos] ^= (u8)(1u << test_randn(&rng, 8));
      else p[pos] = (u8)test_rand(&rng);
    }
    opLogReset(&l, p, n);
    rc = strataBatchIterate(p, n, &l, collectOp);
    CHECK(rc == STRATA_OK || rc == STRATA_CORRUPT);
    CHECK_EQ(l.bOutOfBounds, 0);
    if (rc == STRATA_OK) {
      nOk++;
      CHECK_EQ(l.n, n >= 12 ? (int)strataGet32(p + 8) : -1);
    } else {
      nCorrupt++;
      CHECK_EQ(l.n, 0);
    }
    free(p);
    if (tu_curFail) break;
  }
  /* Both outcomes happen (flips inside keys and values parse fine). */
  CHECK(nOk > 0);
  CHECK(nCorrupt > 0);
  strata_batch_free(b);
  opLogFree(&l);
}

/* A batch as a WAL record: write, read back, iterate. */
static void test_batch_in_log(void) {
  static OpLog l;
  const char *zDir = test_dir("batch_in_log");
  char zPath[4200];
  strata_batch *b = NULL;
  LogWriter *w = NULL;
  LogReader *r = NULL;
  const u8 *p;
  size_t n;
  int i;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/wal", zDir);
  CHECK_EQ(strata_batch_new(&b), STRATA_OK);
  CHECK_EQ(strataLogWriterOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, NULL, &w), STRATA_OK);
  for (i = 0; i < 10; i++) {
    char z[32];
    snprintf(z, sizeof(z), "key%d", i);
    strata_batch_clear(b);
    CHECK_EQ(strata_batch_put(b, z, strlen(z), "v", 1), STRATA_OK);
    CHECK_EQ(strata_batch_delete(b, "old", 3), STRATA_OK);
    strataBatchSetSeq(b, 1 + 2 * (u64)i);
    CHECK_EQ(strataLogAppend(w, b->rep.a, b->rep.n), STRATA_OK);
  }
  CHECK_EQ(strataLogWriterClose(w), STRATA_OK);
  CHECK_EQ(strataLogReaderOpen(strataEnvDefault(), zPath, STRATA_LOG_WAL, &r), STRATA_OK);
  for (i = 0; i < 10; i++) {
    char z[32];
    snprintf(z, sizeof(z), "key%d", i);
    CHECK_EQ(strataLogRead(r, &p, &n), STRATA_OK);
    opLogReset(&l, p, n);
    CHECK_EQ(strataBatchIterate(p, n, &l, collectOp), STRATA_OK);
    CHECK_EQ(l.n, 2);
    CHECK(l.a[0].seq == 1 + 2 * (u64)i && l.a[1].seq == 2 + 2 * (u64)i);
    CHECK(l.a[0].key.n == strlen(z) && memcmp(l.a[0].key.a, z, l.a[0].key.n) == 0);
  }
  CHECK_EQ(strataLogRead(r, &p, &n), STRATA_NOTFOUND);
  strataLogReaderClose(r);
  strata_batch_free(b);
  opLogFree(&l);
  test_rmdir(zDir);
}

int main(void) {
  RUN(test_log_roundtrip);
  RUN(test_log_bytes);
  RUN(test_log_syscalls);
  RUN(test_log_tail_follow);
  RUN(test_log_truncate_every_offset);
  RUN(test_log_truncate_big);
  RUN(test_log_zero_tail);
  RUN(test_log_flip_every_byte);
  RUN(test_log_torn_with_record_inside);
  RUN(test_log_unknown_type);
  RUN(test_log_file_header);
  RUN(test_log_sticky_failure);
  RUN(test_log_crash_every_write);
  RUN(test_log_nomem);
  RUN(test_batch_roundtrip);
  RUN(test_batch_bytes);
  RUN(test_batch_limits);
  RUN(test_batch_truncated_and_damaged);
  RUN(test_batch_fuzz);
  RUN(test_batch_in_log);
  return TEST_SUMMARY();
}
