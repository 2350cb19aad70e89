/*
** test_util.c -- util.c, crc32c.c and env.c: varints, CRC-32C, buffers,
** the allocation failure hook, per-thread error messages and the fault env.
*/
#include "strataInt.h"
#include "testutil.h"

#include <pthread.h>

/* ------------------------------------------------------------------ */
/* Varints */

static void test_varint_roundtrip(void) {
  static const u64 aVal[] = {0,
                             1,
                             127,
                             128,
                             255,
                             300,
                             16383,
                             16384,
                             (1u << 21) - 1,
                             1u << 21,
                             (1u << 28) - 1,
                             1u << 28,
                             0x7fffffffu,
                             0xffffffffu,
                             0x100000000ull,
                             (1ull << 35) - 1,
                             1ull << 56,
                             (1ull << 63) - 1,
                             1ull << 63,
                             0xffffffffffffffffull};
  static const int aLen[] = {1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5, 5, 9, 9, 10, 10};
  size_t i;
  TestRng rng;
  for (i = 0; i < sizeof(aVal) / sizeof(aVal[0]); i++) {
    u8 a[16];
    u64 v = 0;
    const u8 *p;
    int n;
    memset(a, 0xcc, sizeof(a));
    n = strataPutVarint64(a, aVal[i]);
    CHECK_EQ(n, aLen[i]);
    CHECK_EQ(strataVarintLen(aVal[i]), aLen[i]);
    CHECK(a[n] == 0xcc); /* wrote no further */
    p = strataGetVarint64(a, a + n, &v);
    CHECK(p == a + n);
    CHECK(v == aVal[i]);
    if (aVal[i] <= 0xffffffffu) {
      u32 v32 = 0;
      u8 b[8];
      CHECK_EQ(strataPutVarint32(b, (u32)aVal[i]), n);
      CHECK(memcmp(a, b, (size_t)n) == 0);
      p = strataGetVarint32(a, a + n, &v32);
      CHECK(p == a + n);
      CHECK_EQ(v32, aVal[i]);
    } else {
      u32 v32 = 0;
      CHECK(strataGetVarint32(a, a + n, &v32) == NULL); /* too big for 32 bits */
    }
  }
  /* Random values of every width, back to back in one buffer. */
  test_srand(&rng, 7);
  {
    u8 buf[10 * 1000];
    u64 aV[1000];
    u8 *p = buf;
    const u8 *q;
    for (i = 0; i < 1000; i++) {
      aV[i] = test_rand(&rng) >> test_randn(&rng, 64);
      p += strataPutVarint64(p, aV[i]);
    }
    q = buf;
    for (i = 0; i < 1000 && q; i++) {
      u64 v;
      q = strataGetVarint64(q, p, &v);
      CHECK(q != NULL);
      if (q) CHECK(v == aV[i]);
    }
    CHECK(q == p);
  }
}

static void test_varint_reject(void) {
  u8 a[16];
  u64 v;
  u32 v32;
  int n, k;
  static const u64 aVal[] = {128, 16384, 0xffffffffu, 1ull << 40, 0xffffffffffffffffull};
  size_t i;
  /* Every truncation of a multi-byte varint is rejected. */
  for (i = 0; i < sizeof(aVal) / sizeof(aVal[0]); i++) {
    n = strataPutVarint64(a, aVal[i]);
    for (k = 0; k < n; k++) {
      CHECK(strataGetVarint64(a, a + k, &v) == NULL);
      CHECK(strataGetVarint32(a, a + k, &v32) == NULL);
    }
  }
  /* An empty input. */
  CHECK(strataGetVarint64(a, a, &v) == NULL);
  CHECK(strataGetVarint32(a, a, &v32) == NULL);
  /* More than 10 bytes for a varint64. */
  memset(a, 0x80, 11);
  a[11] = 0;
  CHECK(strataGetVarint64(a, a + 12, &v) == NULL);
  /* A continuation bit on every byte up to the end of the input. */
  memset(a, 0xff, 16);
  CHECK(strataGetVarint64(a, a + 16, &v) == NULL);
  CHECK(strataGetVarint32(a, a + 16, &v32) == NULL);
  /* A 5-byte varint32 whose value exceeds 32 bits. */
  a[0] = a[1] = a[2] = a[3] = 0xff;
  a[4] = 0x1f;
  CHECK(strataGetVarint32(a, a + 5, &v32) == NULL);
  CHECK(strataGetVarint64(a, a + 5, &v) == a + 5);
  CHECK(v == 0x1ffffffffull);
}

/* ------------------------------------------------------------------ */
/* CRC-32C */

/* A bit-at-a-time reference, independent of crc32c.c's tables. */
static u32 crcReference(const u8 *p, size_t n) {
  u32 c = 0xffffffffu;
  size_t i;
  int j;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    for (j = 0; j < 8; j++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}

static void test_crc32c(void) {
  u8 a[64];
  int i;
  size_t n, off;
  TestRng rng;
  static u8 aBig[4096 + 16];
  /* Known vectors (RFC 3720 B.4 and the usual check value). */
  CHECK(strataCrc32c(0, "123456789", 9) == 0xE3069283u);
  memset(a, 0, 32);
  CHECK(strataCrc32c(0, a, 32) == 0x8A9136AAu);
  memset(a, 0xff, 32);
  CHECK(strataCrc32c(0, a, 32) == 0x62A8AB43u);
  for (i = 0; i < 32; i++) a[i] = (u8)i;
  CHECK(strataCrc32c(0, a, 32) == 0x46DD794Eu);
  for (i = 0; i < 32; i++) a[i] = (u8)(31 - i);
  CHECK(strataCrc32c(0, a, 32) == 0x113FDB5Cu);
  CHECK(strataCrc32c(0, a, 0) == 0);
  /* Every length and alignment against the reference; and extending. */
  test_srand(&rng, 99);
  for (n = 0; n < sizeof(aBig); n++) aBig[n] = (u8)test_rand(&rng);
  for (off = 0; off < 8; off++) {
    for (n = 0; n < 300; n++) {
      u32 c = strataCrc32c(0, aBig + off, n);
      CHECK(c == crcReference(aBig + off, n));
      if (n > 0) {
        size_t k = (size_t)test_randn(&rng, n);
        CHECK(strataCrc32c(strataCrc32c(0, aBig + off, k), aBig + off + k, n - k) == c);
      }
    }
  }
  CHECK(strataCrc32c(0, aBig + 3, 4096) == crcReference(aBig + 3, 4096));
  /* Lengths around the three-lane rounds (192, 1008 and 3072 bytes per round). */
  {
    static u8 aLong[3 * 3 * 1024 + 1024 + 16];
    static const size_t aLen[] = {191,  192,  193,  383,  384,  1007, 1008, 1009, 1199, 1200,
                                  3071, 3072, 3073, 4079, 4080, 4081, 4096, 4101, 4271, 4272,
                                  6144, 6527, 9216 + 1024};
    size_t j;
    for (n = 0; n < sizeof(aLong); n++) aLong[n] = (u8)test_rand(&rng);
    for (j = 0; j < sizeof(aLen) / sizeof(aLen[0]); j++) {
      for (off = 0; off < 16; off += 5) {
        u32 c = crcReference(aLong + off, aLen[j]);
        CHECK(strataCrc32c(0, aLong + off, aLen[j]) == c);
        CHECK(strataCrc32cSoftware(0, aLong + off, aLen[j]) == c);
      }
    }
    /* Random lengths, alignments and split points; hardware and software agree. */
    for (i = 0; i < 300; i++) {
      size_t k;
      u32 c;
      off = (size_t)test_randn(&rng, 16);
      n = (size_t)test_randn(&rng, sizeof(aLong) - 16);
      k = (size_t)test_randn(&rng, n + 1);
      c = crcReference(aLong + off, n);
      CHECK(strataCrc32c(0, aLong + off, n) == c);
      CHECK(strataCrc32cSoftware(0, aLong + off, n) == c);
      CHECK(strataCrc32c(strataCrc32c(0, aLong + off, k), aLong + off + k, n - k) == c);
      CHECK(strataCrc32cSoftware(strataCrc32c(0, aLong + off, k), aLong + off + k, n - k) == c);
    }
    /* A flipped bit in any lane is seen. */
    for (j = 0; j < 4096; j += 509) {
      u32 c0 = strataCrc32c(0, aLong, 4097);
      aLong[j] ^= 0x01;
      CHECK(strataCrc32c(0, aLong, 4097) != c0);
      aLong[j] ^= 0x01;
    }
  }
  /* One flipped bit changes it. */
  {
    u32 c0 = strataCrc32c(0, aBig, 1000);
    aBig[500] ^= 0x10;
    CHECK(strataCrc32c(0, aBig, 1000) != c0);
    aBig[500] ^= 0x10;
  }
}

static void test_crc_mask(void) {
  static const u32 aVal[] = {0, 1, 0xE3069283u, 0x80000000u, 0xffffffffu, 0xa282ead8u};
  size_t i;
  TestRng rng;
  for (i = 0; i < sizeof(aVal) / sizeof(aVal[0]); i++) {
    CHECK(strataCrcUnmask(strataCrcMask(aVal[i])) == aVal[i]);
    CHECK(strataCrcMask(aVal[i]) != aVal[i]);
  }
  CHECK(strataCrcMask(0) == 0xa282ead8u);
  test_srand(&rng, 3);
  for (i = 0; i < 10000; i++) {
    u32 c = (u32)test_rand(&rng);
    CHECK(strataCrcUnmask(strataCrcMask(c)) == c);
    CHECK(strataCrcMask(strataCrcUnmask(c)) == c);
  }
}

/* ------------------------------------------------------------------ */
/* Buffers and allocation failure */

static void test_buf(void) {
  StrataBuf b = {0};
  u8 a[1000];
  int i;
  const u8 *p;
  u64 v;
  for (i = 0; i < 1000; i++) a[i] = (u8)(i * 7);
  /* Grow from empty through many doublings; contents survive each. */
  for (i = 0; i < 1000; i++) CHECK_EQ(strataBufAppend(&b, a, (size_t)i), STRATA_OK);
  CHECK_EQ(b.n, 999 * 1000 / 2);
  CHECK(b.nAlloc >= b.n);
  {
    size_t off = 0;
    int bad = 0;
    for (i = 0; i < 1000; i++) {
      if (i && memcmp(b.a + off, a, (size_t)i)) bad++;
      off += (size_t)i;
    }
    CHECK_EQ(bad, 0);
  }
  /* Reserve leaves n alone. */
  {
    size_t n0 = b.n;
    CHECK_EQ(strataBufReserve(&b, 1 << 20), STRATA_OK);
    CHECK_EQ(b.n, n0);
    CHECK(b.nAlloc >= n0 + (1 << 20));
  }
  /* Set replaces; fixed-width and varint appends. */
  CHECK_EQ(strataBufSet(&b, "abc", 3), STRATA_OK);
  CHECK_EQ(b.n, 3);
  CHECK(memcmp(b.a, "abc", 3) == 0);
  CHECK_EQ(strataBufAppend32(&b, 0x01020304u), STRATA_OK);
  CHECK_EQ(strataBufAppend64(&b, 0x1122334455667788ull), STRATA_OK);
  CHECK_EQ(strataBufAppendVarint(&b, 300), STRATA_OK);
  CHECK_EQ(b.n, 3 + 4 + 8 + 2);
  CHECK(b.a[3] == 0x04 && b.a[6] == 0x01); /* little-endian */
  CHECK(strataGet32(b.a + 3) == 0x01020304u);
  CHECK(strataGet64(b.a + 7) == 0x1122334455667788ull);
  p = strataGetVarint64(b.a + 15, b.a + b.n, &v);
  CHECK(p == b.a + b.n && v == 300);
  /* Appending nothing to an empty buffer is fine. */
  strataBufFree(&b);
  CHECK(b.a == NULL && b.n == 0 && b.nAlloc == 0);
  CHECK_EQ(strataBufAppend(&b, NULL, 0), STRATA_OK);
  CHECK_EQ(b.n, 0);
  strataBufFree(&b);
  strataBufFree(&b); /* twice is harmless */
}

static void test_fail_malloc(void) {
  StrataBuf b = {0};
  void *p;
  /* The 1st allocation from now fails, once. */
  strataTestFailMalloc(1, 0);
  CHECK_EQ(strataBufAppend(&b, "hello", 5), STRATA_NOMEM);
  CHECK(b.a == NULL && b.n == 0);
  CHECK(strstr(strataErrMsgGet(), "out of memory") != NULL);
  CHECK_EQ(strataBufAppend(&b, "hello", 5), STRATA_OK);
  CHECK_EQ(b.n, 5);
  /* Growth failing leaves the buffer as it was. */
  strataTestFailMalloc(1, 0);
  CHECK_EQ(strataBufAppend(&b, NULL, 0), STRATA_OK); /* no allocation needed: not counted */
  CHECK_EQ(strataBufReserve(&b, 1000), STRATA_NOMEM);
  CHECK_EQ(b.n, 5);
  CHECK(memcmp(b.a, "hello", 5) == 0);
  /* The 3rd fails; sticky: every one after it too, until disabled. */
  strataTestFailMalloc(3, 1);
  p = strataMalloc(10);
  CHECK(p != NULL);
  strataFreeMem(p);
  p = strataMallocZero(10);
  CHECK(p != NULL);
  strataFreeMem(p);
  CHECK(strataMalloc(10) == NULL);
  CHECK(strataMallocZero(10) == NULL);
  CHECK(strataStrdup("x") == NULL);
  CHECK(strataMprintf("%d", 5) == NULL);
  strataTestFailMalloc(0, 0);
  p = strataStrdup("abc");
  CHECK(p != NULL && strcmp(p, "abc") == 0);
  strataFreeMem(p);
  p = strataMprintf("%s-%d", "x", 42);
  CHECK(p != NULL && strcmp(p, "x-42") == 0);
  strataFreeMem(p);
  strataBufFree(&b);
}

/* ------------------------------------------------------------------ */
/* Error messages */

typedef struct ErrThread {
  pthread_barrier_t *pBarrier;
  int id;
  int bOk;
} ErrThread;

static void *errThreadMain(void *pArg) {
  ErrThread *t = pArg;
  char zWant[64];
  int i;
  t->bOk = 1;
  snprintf(zWant, sizeof(zWant), "thread %d failed", t->id);
  for (i = 0; i < 200; i++) {
    if (strataErr(STRATA_IOERR, "thread %d failed", t->id) != STRATA_IOERR) t->bOk = 0;
    /* Both threads have set their message before either reads. */
    if (i == 0) pthread_barrier_wait(t->pBarrier);
    if (strcmp(strataErrMsgGet(), zWant) != 0) t->bOk = 0;
    if (strcmp(strata_errmsg(), zWant) != 0) t->bOk = 0;
  }
  return NULL;
}

static void test_errmsg_threads(void) {
  pthread_barrier_t barrier;
  pthread_t aThread[2];
  ErrThread aT[2];
  int i;
  pthread_barrier_init(&barrier, NULL, 2);
  for (i = 0; i < 2; i++) {
    aT[i].pBarrier = &barrier;
    aT[i].id = i + 1;
    aT[i].bOk = 0;
    CHECK_EQ(pthread_create(&aThread[i], NULL, errThreadMain, &aT[i]), 0);
  }
  for (i = 0; i < 2; i++) pthread_join(aThread[i], NULL);
  CHECK(aT[0].bOk);
  CHECK(aT[1].bOk);
  pthread_barrier_destroy(&barrier);
  /* The main thread's message is its own. */
  strataErrClear();
  CHECK(strcmp(strataErrMsgGet(), "not an error") == 0);
  CHECK_EQ(strataErr(STRATA_CORRUPT, "bad %s at %d", "block", 12), STRATA_CORRUPT);
  CHECK(strcmp(strata_errmsg(), "bad block at 12") == 0);
  /* A long message is cut, not overflowed. */
  {
    char zLong[2000];
    memset(zLong, 'x', sizeof(zLong) - 1);
    zLong[sizeof(zLong) - 1] = 0;
    strataErr(STRATA_ERROR, "%s", zLong);
    CHECK(strlen(strataErrMsgGet()) > 100 && strlen(strataErrMsgGet()) < sizeof(zLong) - 1);
  }
  CHECK(strcmp(strata_errstr(STRATA_CORRUPT), "database is corrupt") == 0);
  CHECK(strcmp(strata_errstr(STRATA_OK), "not an error") == 0);
  CHECK(strcmp(strata_errstr(9999), "unknown error") == 0);
}

/* ------------------------------------------------------------------ */
/* Internal keys */

static void test_ikey(void) {
  StrataBuf a = {0}, b = {0};
  CHECK_EQ(strataIkeyBuild(&a, (const u8 *)"key", 3, 100, STRATA_TYPE_VALUE), STRATA_OK);
  CHECK_EQ(a.n, 11);
  CHECK(strataIkeySeq(a.a, a.n) == 100);
  CHECK_EQ(strataIkeyType(a.a, a.n), STRATA_TYPE_VALUE);
  /* Same user key: newer sequence first. */
  CHECK_EQ(strataIkeyBuild(&b, (const u8 *)"key", 3, 101, STRATA_TYPE_DELETE), STRATA_OK);
  CHECK(strataIkeyCompare(b.a, b.n, a.a, a.n) < 0);
  CHECK(strataIkeyCompare(a.a, a.n, b.a, b.n) > 0);
  CHECK(strataIkeyCompare(a.a, a.n, a.a, a.n) == 0);
  /* A prefix sorts first, whatever the sequence. */
  CHECK_EQ(strataIkeyBuild(&b, (const u8 *)"ke", 2, 1, STRATA_TYPE_VALUE), STRATA_OK);
  CHECK(strataIkeyCompare(b.a, b.n, a.a, a.n) < 0);
  CHECK_EQ(strataIkeyBuild(&b, (const u8 *)"", 0, STRATA_MAX_SEQ, STRATA_TYPE_VALUE), STRATA_OK);
  CHECK(strataIkeySeq(b.a, b.n) == STRATA_MAX_SEQ);
  CHECK(strataIkeyCompare(b.a, b.n, a.a, a.n) < 0);
  strataBufFree(&a);
  strataBufFree(&b);
}

/* ------------------------------------------------------------------ */
/* Fault env */

static u64 fileSizeOf(const char *zPath) {
  struct stat st;
  if (stat(zPath, &st) != 0) return (u64)-1;
  return (u64)st.st_size;
}

static void test_fault_env(void) {
  const char *zDir = test_dir("fault_env");
  char zPath[4200];
  strata_env *env = strataFaultEnvNew(NULL);
  StrataFile *f = NULL;
  u8 a[100], b[100];
  size_t nRead;
  int i, rc;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/f", zDir);
  CHECK(env != NULL);
  for (i = 0; i < 100; i++) a[i] = (u8)i;

  /* Unarmed: a plain pass-through. */
  CHECK_EQ(strataEnvOpen(env, zPath, STRATA_OPEN_WRITE, NULL, &f), STRATA_OK);
  CHECK_EQ(strataFileAppend(f, a, 100), STRATA_OK);
  CHECK_EQ(strataFaultEnvFired(env), 0);

  /* EIO: the 3rd write fails, the others land. */
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_WRITE, 3);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_OK);
  CHECK_EQ(strataFileSync(f), STRATA_OK); /* not a write: not counted */
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_OK);
  CHECK_EQ(strataFaultEnvFired(env), 0);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_IOERR);
  CHECK_EQ(strataFaultEnvFired(env), 1);
  CHECK_EQ(strataFaultEnvCount(env), 3);
  CHECK(strstr(strataErrMsgGet(), "injected") != NULL);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_OK); /* one fault only */
  CHECK_EQ(fileSizeOf(zPath), 130);

  /* ENOSPC reports FULL. */
  strataFaultEnvArm(env, STRATA_FAULT_ENOSPC, STRATA_FAULTOP_WRITE, 1);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_FULL);
  CHECK_EQ(fileSizeOf(zPath), 130);

  /* SHORT: half the bytes land, then an error. */
  strataFaultEnvArm(env, STRATA_FAULT_SHORT, STRATA_FAULTOP_WRITE, 1);
  CHECK_EQ(strataFileAppend(f, a, 100), STRATA_IOERR);
  CHECK_EQ(fileSizeOf(zPath), 180);

  /* SYNC: an fsync failure. */
  strataFaultEnvArm(env, STRATA_FAULT_SYNC, STRATA_FAULTOP_SYNC, 2);
  CHECK_EQ(strataFileSync(f), STRATA_OK);
  CHECK_EQ(strataFileSync(f), STRATA_IOERR);
  CHECK_EQ(strataFileSync(f), STRATA_OK);
  strataFaultEnvDisarm(env);
  strataFileClose(f);
  f = NULL;

  /* The bytes that landed are the right ones: 100 + 3 x 10 + 50 of a. */
  CHECK_EQ(strataEnvOpen(env, zPath, STRATA_OPEN_READ, NULL, &f), STRATA_OK);
  CHECK_EQ(strataFileRead(f, b, 100, 0, &nRead), STRATA_OK);
  CHECK_EQ(nRead, 100);
  CHECK(memcmp(a, b, 100) == 0);
  CHECK_EQ(strataFileRead(f, b, 100, 130, &nRead), STRATA_OK);
  CHECK_EQ(nRead, 50);
  CHECK(memcmp(a, b, 50) == 0);
  /* READ faults. */
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_READ, 1);
  CHECK_EQ(strataFileRead(f, b, 10, 0, &nRead), STRATA_IOERR);
  CHECK_EQ(nRead, 0);
  strataFileClose(f);
  f = NULL;

  /* CRASH: the 2nd write fails and so does every operation after it. */
  strataFaultEnvArm(env, STRATA_FAULT_CRASH, STRATA_FAULTOP_WRITE, 2);
  CHECK_EQ(strataEnvOpen(env, zPath, STRATA_OPEN_APPEND, NULL, &f), STRATA_OK);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_OK);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_IOERR);
  CHECK_EQ(strataFaultEnvFired(env), 1);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_IOERR);
  CHECK_EQ(strataFileSync(f), STRATA_IOERR);
  CHECK_EQ(strataFileRead(f, b, 10, 0, &nRead), STRATA_IOERR);
  CHECK_EQ(strataFileTruncate(f, 0), STRATA_IOERR);
  strataFileClose(f);
  f = NULL;
  {
    StrataFile *g = NULL;
    rc = strataEnvOpen(env, zPath, STRATA_OPEN_READ, NULL, &g);
    CHECK_EQ(rc, STRATA_IOERR);
    CHECK(g == NULL);
    CHECK_EQ(env->xRename(env, zPath, zPath), STRATA_IOERR);
    CHECK_EQ(env->xDelete(env, zPath), STRATA_IOERR);
  }
  CHECK_EQ(fileSizeOf(zPath), 190); /* nothing after the crash landed */
  CHECK(env->xExists(env, zPath));

  /* Re-arming clears the crash. */
  strataFaultEnvDisarm(env);
  CHECK_EQ(strataEnvOpen(env, zPath, STRATA_OPEN_READ, NULL, &f), STRATA_OK);
  strataFileClose(f);

  /* META faults hit open-for-write. */
  strataFaultEnvArm(env, STRATA_FAULT_EIO, STRATA_FAULTOP_META, 1);
  f = NULL;
  CHECK_EQ(strataEnvOpen(env, zPath, STRATA_OPEN_WRITE, NULL, &f), STRATA_IOERR);
  CHECK(f == NULL);
  CHECK_EQ(fileSizeOf(zPath), 190); /* not truncated */
  strataFaultEnvDisarm(env);

  strataFaultEnvFree(env);
  test_rmdir(zDir);
}

/* The I/O counters count what the file methods moved. */
static void test_io_stats(void) {
  const char *zDir = test_dir("io_stats");
  char zPath[4200];
  StrataIoStats st;
  StrataFile *f = NULL;
  u8 a[64] = {0};
  size_t nRead;
  mkdir(zDir, 0755);
  snprintf(zPath, sizeof(zPath), "%s/f", zDir);
  atomic_init(&st.nWritten, 0);
  atomic_init(&st.nRead, 0);
  CHECK_EQ(strataEnvOpen(strataEnvDefault(), zPath, STRATA_OPEN_WRITE, &st, &f), STRATA_OK);
  CHECK_EQ(strataFileAppend(f, a, 64), STRATA_OK);
  CHECK_EQ(strataFileAppend(f, a, 10), STRATA_OK);
  strataFileClose(f);
  CHECK_EQ(atomic_load(&st.nWritten), 74);
  CHECK_EQ(strataEnvOpen(strataEnvDefault(), zPath, STRATA_OPEN_READ, &st, &f), STRATA_OK);
  CHECK_EQ(strataFileRead(f, a, 64, 50, &nRead), STRATA_OK);
  CHECK_EQ(nRead, 24);
  CHECK_EQ(atomic_load(&st.nRead), 24);
  CHECK_EQ(strataFileReadExact(f, a, 64, 50, "test file"), STRATA_CORRUPT);
  strataFileClose(f);
  test_rmdir(zDir);
}

int main(void) {
  RUN(test_varint_roundtrip);
  RUN(test_varint_reject);
  RUN(test_crc32c);
  RUN(test_crc_mask);
  RUN(test_buf);
  RUN(test_fail_malloc);
  RUN(test_errmsg_threads);
  RUN(test_ikey);
  RUN(test_fault_env);
  RUN(test_io_stats);
  return TEST_SUMMARY();
}
