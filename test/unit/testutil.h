/*
** testutil.h -- the tiny harness every C test program uses.
**
** A program defines test functions and runs them with RUN(fn). CHECK(cond)
** records a failure (with file:line and the condition) and continues; the
** test function fails if any CHECK in it failed. main() ends with
** TEST_SUMMARY(), which prints `N passed, N failed` and returns the exit code.
**
** Each test gets a fresh scratch directory from test_dir(); the base is
** $STRATA_TEST_TMP (default ./test-tmp).
*/
#ifndef STRATA_TESTUTIL_H
#define STRATA_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>

static int tu_nPass, tu_nFail, tu_curFail;
static const char *tu_curName = "";

#define CHECK(c)                                                                     \
  do {                                                                               \
    if (!(c)) {                                                                      \
      tu_curFail++;                                                                  \
      if (tu_curFail <= 10)                                                          \
        fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__,       \
                tu_curName, #c);                                                     \
    }                                                                                \
  } while (0)

/* CHECK that also prints two integers on failure. */
#define CHECK_EQ(a, b)                                                               \
  do {                                                                               \
    long long tu_a = (long long)(a), tu_b = (long long)(b);                          \
    if (tu_a != tu_b) {                                                              \
      tu_curFail++;                                                                  \
      if (tu_curFail <= 10)                                                          \
        fprintf(stderr, "  %s:%d: %s: %s == %s failed: %lld != %lld\n", __FILE__,    \
                __LINE__, tu_curName, #a, #b, tu_a, tu_b);                           \
    }                                                                                \
  } while (0)

#define RUN(fn)                                                                      \
  do {                                                                               \
    tu_curName = #fn;                                                                \
    tu_curFail = 0;                                                                  \
    fn();                                                                            \
    if (tu_curFail) {                                                                \
      tu_nFail++;                                                                    \
      printf("FAIL %s\n", #fn);                                                      \
    } else {                                                                         \
      tu_nPass++;                                                                    \
      printf("ok   %s\n", #fn);                                                      \
    }                                                                                \
    fflush(stdout);                                                                  \
  } while (0)

#define TEST_SUMMARY()                                                               \
  (printf("%d passed, %d failed\n", tu_nPass, tu_nFail), tu_nFail ? 1 : 0)

/* A fresh, empty scratch directory for this test (removed first if present).
** Returns a static buffer: copy it if you need two at once. */
static inline const char *test_dir(const char *zName) {
  static char z[4096];
  const char *zBase = getenv("STRATA_TEST_TMP");
  char zCmd[4200];
  if (!zBase) zBase = "test-tmp";
  mkdir(zBase, 0755);
  snprintf(z, sizeof(z), "%s/%s.%d", zBase, zName, (int)getpid());
  snprintf(zCmd, sizeof(zCmd), "rm -rf '%s'", z);
  if (system(zCmd) != 0) { /* best effort */
  }
  return z;
}

static inline void test_rmdir(const char *zPath) {
  char zCmd[4200];
  snprintf(zCmd, sizeof(zCmd), "rm -rf '%s'", zPath);
  if (system(zCmd) != 0) {
  }
}

/* Deterministic PRNG (xorshift64*), seedable so failures replay. */
typedef struct TestRng { uint64_t s; } TestRng;
static inline uint64_t test_rand(TestRng *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545F4914F6CDD1DULL;
}
static inline void test_srand(TestRng *r, uint64_t seed) { r->s = seed ? seed : 0x9E3779B97F4A7C15ULL; }
static inline uint64_t test_randn(TestRng *r, uint64_t n) { return n ? test_rand(r) % n : 0; }

/* Seed from $STRATA_SEED or the clock; printed so a failure can replay. */
static inline uint64_t test_seed(const char *zWhat) {
  const char *z = getenv("STRATA_SEED");
  uint64_t seed = z ? strtoull(z, 0, 0) : (uint64_t)time(0) ^ ((uint64_t)getpid() << 20);
  printf("# %s seed: STRATA_SEED=%llu\n", zWhat, (unsigned long long)seed);
  return seed;
}

/* 1 when the long (soak) variant was asked for. */
static inline int test_soak(void) { return getenv("STRATA_SOAK") != 0; }

/* 1 under valgrind (`make check-valgrind` sets STRATA_VALGRIND; valgrind's
** preload is the sign otherwise), which runs everything 20-50x slower: the
** big loops shrink there. */
static inline int test_valgrind(void) {
  const char *z = getenv("LD_PRELOAD");
  return getenv("STRATA_VALGRIND") != NULL || (z && strstr(z, "vgpreload") != NULL);
}

#endif
