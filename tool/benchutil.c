/*
** benchutil.c -- helpers shared by the benchmark programs (see benchutil.h).
*/
#include "benchutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *zProgram = "bench";
static int dieCode = 1;

void benchSetProgram(const char *zName, int exitCode) {
  zProgram = zName;
  dieCode = exitCode;
}

void die(const char *zFmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s: ", zProgram);
  va_start(ap, zFmt);
  vfprintf(stderr, zFmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  exit(dieCode);
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}

uint64_t nowNs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sleepMs(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint8_t *aBenchPool;
size_t nBenchPool;
size_t nBenchVal;

void benchPoolInit(size_t nRaw, size_t nVal, uint64_t seed) {
  const size_t nPiece = 100;
  size_t i, j;
  Rng r = {seed ^ 0x5EEDull};
  if (nRaw < 1) nRaw = 1;
  if (nRaw > nPiece) nRaw = nPiece;
  nBenchVal = nVal;
  nBenchPool = (size_t)1 << 20;
  if (nBenchPool < nVal * 4) nBenchPool = nVal * 4;
  aBenchPool = xmalloc(nBenchPool);
  for (i = 0; i < nBenchPool; i += nPiece) {
    size_t nThis = nBenchPool - i < nPiece ? nBenchPool - i : nPiece;
    for (j = 0; j < nThis; j++) {
      aBenchPool[i + j] = j < nRaw ? (uint8_t)rngNext(&r) : aBenchPool[i + j % nRaw];
    }
  }
}

void ioRead(IoCounters *p) {
  char zLine[128];
  FILE *f = fopen("/proc/self/io", "r");
  memset(p, 0, sizeof(*p));
  if (!f) return;
  while (fgets(zLine, sizeof(zLine), f)) {
    unsigned long long v;
    if (sscanf(zLine, "wchar: %llu", &v) == 1) {
      p->wchar = v;
      p->bOk = 1;
    } else if (sscanf(zLine, "write_bytes: %llu", &v) == 1) {
      p->writeBytes = v;
    }
  }
  fclose(f);
}

uint64_t duPath(const char *zPath) {
  struct stat st;
  uint64_t n = 0;
  DIR *d;
  struct dirent *pEnt;
  if (lstat(zPath, &st) != 0) return 0; /* absent, or removed meanwhile */
  if (!S_ISDIR(st.st_mode)) return (uint64_t)st.st_blocks * 512;
  d = opendir(zPath);
  if (!d) return 0;
  while ((pEnt = readdir(d)) != NULL) {
    char zSub[4096];
    if (!strcmp(pEnt->d_name, ".") || !strcmp(pEnt->d_name, "..")) continue;
    snprintf(zSub, sizeof(zSub), "%s/%s", zPath, pEnt->d_name);
    n += duPath(zSub);
  }
  closedir(d);
  return n;
}
