/*
** benchutil.h -- what strata-bench and strata-sql-bench share: fatal errors,
** time, a seedable random generator, the pool that values are cut from,
** /proc I/O counters and disk usage.
*/
#ifndef STRATA_BENCHUTIL_H
#define STRATA_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The program name and exit status die() uses (set once in main). */
void benchSetProgram(const char *zName, int exitCode);
void die(const char *zFmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void *xmalloc(size_t n); /* malloc() or die */

uint64_t nowNs(void); /* CLOCK_MONOTONIC in nanoseconds */
void sleepMs(int ms);

typedef struct Rng {
  uint64_t s;
} Rng;

/* splitmix64: fast, and every seed gives a full-period sequence. */
static inline uint64_t rngNext(Rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n) without the bias of a modulo (multiply-shift). */
static inline uint64_t rngUniform(Rng *r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)rngNext(r) * n) >> 64);
}

static inline uint64_t mix64(uint64_t x) {
  Rng r = {x};
  return rngNext(&r);
}

/* VALUES
** Values are slices of a pool of at least 1 MiB built from 100-byte pieces
** whose first nRaw bytes are random and the rest repeat them, so a value
** compresses to about nRaw% of its size (db_bench's generator does the same).
** Which slice a key gets depends on the key and on the write workload that
** stored it, so reads can check the exact bytes. */
extern uint8_t *aBenchPool;
extern size_t nBenchPool;
extern size_t nBenchVal;
void benchPoolInit(size_t nRaw, size_t nVal, uint64_t seed);
static inline const uint8_t *valueFor(uint64_t k, unsigned gen) {
  uint64_t h = mix64(k * 0x100000001B3ull + gen);
  return aBenchPool + h % (nBenchPool - nBenchVal + 1);
}

/* /proc/self/io: bytes handed to write() (wchar) and bytes bound for the
** device (write_bytes, page granular). bOk = 0 if unreadable. */
typedef struct IoCounters {
  uint64_t wchar;
  uint64_t writeBytes;
  int bOk;
} IoCounters;
void ioRead(IoCounters *p);

/* Bytes allocated to zPath, recursively for a directory (as du); 0 if absent. */
uint64_t duPath(const char *zPath);

#endif
