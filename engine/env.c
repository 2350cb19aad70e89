/*
** env.c -- the file system seam: the POSIX env and a fault-injecting env.
**
** All file I/O of the engine goes through a strata_env, so tests can make
** any single operation fail (EIO, ENOSPC, a short write, a failed fsync) or
** simulate a crash (every operation from the Nth on fails) and check that
** the engine reports the error, loses no acknowledged write and reopens.
*/
#include "strataInt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* POSIX ENV */

typedef struct PosixFile {
  StrataFile base;
  int fd;
  char *zPath;
  void *pMap; /* xMap's mapping, or NULL */
  size_t nMap;
} PosixFile;

static int posixErr(int e, const char *zOp, const char *zPath) {
  int rc = (e == ENOSPC || e == EDQUOT) ? STRATA_FULL : STRATA_IOERR;
  return strataErr(rc, "%s %s: %s", zOp, zPath, strerror(e));
}

static int posixRead(StrataFile *f, void *pBuf, size_t n, u64 off, size_t *pnRead) {
  PosixFile *p = (PosixFile *)f;
  size_t nDone = 0;
  while (nDone < n) {
    ssize_t r = pread(p->fd, (u8 *)pBuf + nDone, n - nDone, (off_t)(off + nDone));
    if (r < 0) {
      if (errno == EINTR) continue;
      *pnRead = 0;
      return posixErr(errno, "read", p->zPath);
    }
    if (r == 0) break;
    nDone += (size_t)r;
  }
  *pnRead = nDone;
  return STRATA_OK;
}

static int posixAppend(StrataFile *f, const void *pData, size_t n) {
  PosixFile *p = (PosixFile *)f;
  const u8 *a = pData;
  while (n > 0) {
    ssize_t w = write(p->fd, a, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return posixErr(errno, "write", p->zPath);
    }
    a += w;
    n -= (size_t)w;
  }
  return STRATA_OK;
}

static int posixSync(StrataFile *f) {
  PosixFile *p = (PosixFile *)f;
  if (fdatasync(p->fd) != 0) return posixErr(errno, "fsync", p->zPath);
  return STRATA_OK;
}

static int posixSize(StrataFile *f, u64 *pSize) {
  PosixFile *p = (PosixFile *)f;
  struct stat st;
  if (fstat(p->fd, &st) != 0) return posixErr(errno, "stat", p->zPath);
  *pSize = (u64)st.st_size;
  return STRATA_OK;
}

static int posixTruncate(StrataFile *f, u64 n) {
  PosixFile *p = (PosixFile *)f;
  if (ftruncate(p->fd, (off_t)n) != 0) return posixErr(errno, "truncate", p->zPath);
  return STRATA_OK;
}

/* One mapping per file, made on the first call. MAP_SHARED so that it is
** the page cache itself: nothing is copied, and the pages are the kernel's
** to reclaim. */
static int posixMap(StrataFile *f, u64 n, const u8 **pp) {
  PosixFile *p = (PosixFile *)f;
  if (!p->pMap) {
    void *pMap;
    if (n == 0 || n > (u64)SIZE_MAX) return strataErr(STRATA_IOERR, "mmap %s: bad size", p->zPath);
    pMap = mmap(NULL, (size_t)n, PROT_READ, MAP_SHARED, p->fd, 0);
    if (pMap == MAP_FAILED) return posixErr(errno, "mmap", p->zPath);
    p->pMap = pMap;
    p->nMap = (size_t)n;
  } else if (n > p->nMap) {
    return strataErr(STRATA_IOERR, "mmap %s: already mapped with a smaller size", p->zPath);
  }
  *pp = p->pMap;
  return STRATA_OK;
}

static void posixClose(StrataFile *f) {
  PosixFile *p = (PosixFile *)f;
  if (p->pMap) munmap(p->pMap, p->nMap);
  close(p->fd);
  strataFreeMem(p->zPath);
  strataFreeMem(p);
}

static const StrataFileMethods posixFileMethods = {
    posixRead, posixAppend, posixSync, posixSize, posixTruncate, posixClose, posixMap};

static int posixOpenFd(const char *zPath, int fd, StrataFile **ppFile) {
  PosixFile *p = strataMallocZero(sizeof(*p));
  if (p) p->zPath = strataStrdup(zPath);
  if (!p || !p->zPath) {
    close(fd);
    if (p) strataFreeMem(p);
    *ppFile = NULL;
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  p->base.pMethods = &posixFileMethods;
  p->fd = fd;
  *ppFile = &p->base;
  return STRATA_OK;
}

static int posixOpen(strata_env *env, const char *zPath, int flags, StrataFile **ppFile) {
  int oflags, fd;
  (void)env;
  *ppFile = NULL;
  switch (flags) {
    case STRATA_OPEN_READ: oflags = O_RDONLY; break;
    case STRATA_OPEN_WRITE: oflags = O_WRONLY | O_CREAT | O_TRUNC; break;
    case STRATA_OPEN_APPEND: oflags = O_WRONLY | O_CREAT | O_APPEND; break;
    default: return strataErr(STRATA_MISUSE, "bad open flags %d", flags);
  }
  do {
    fd = open(zPath, oflags | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT && flags == STRATA_OPEN_READ) {
      return strataErr(STRATA_CANTOPEN, "open %s: %s", zPath, strerror(e));
    }
    return posixErr(e, "open", zPath);
  }
  return posixOpenFd(zPath, fd, ppFile);
}

static int posixDelete(strata_env *env, const char *zPath) {
  (void)env;
  if (unlink(zPath) != 0 && errno != ENOENT) return posixErr(errno, "unlink", zPath);
  return STRATA_OK;
}

static int posixRename(strata_env *env, const char *zFrom, const char *zTo) {
  (void)env;
  if (rename(zFrom, zTo) != 0) return posixErr(errno, "rename", zFrom);
  return STRATA_OK;
}

static int posixMkdir(strata_env *env, const char *zPath) {
  (void)env;
  if (mkdir(zPath, 0755) != 0 && errno != EEXIST) return posixErr(errno, "mkdir", zPath);
  return STRATA_OK;
}

static int posixRmdir(strata_env *env, const char *zPath) {
  (void)env;
  if (rmdir(zPath) != 0 && errno != ENOENT) return posixErr(errno, "rmdir", zPath);
  return STRATA_OK;
}

static int posixSyncDir(strata_env *env, const char *zPath) {
  int fd, rc = STRATA_OK;
  (void)env;
  fd = open(zPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return posixErr(errno, "open directory", zPath);
  if (fsync(fd) != 0) rc = posixErr(errno, "fsync directory", zPath);
  close(fd);
  return rc;
}

static int posixExists(strata_env *env, const char *zPath) {
  struct stat st;
  (void)env;
  return stat(zPath, &st) == 0;
}

static int posixListDir(strata_env *env, const char *zPath, char ***pazName, int *pnName) {
  DIR *d;
  struct dirent *e;
  char **az = NULL;
  int n = 0, nAlloc = 0;
  (void)env;
  *pazName = NULL;
  *pnName = 0;
  d = opendir(zPath);
  if (!d) return posixErr(errno, "opendir", zPath);
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == nAlloc) {
      char **azNew;
      nAlloc = nAlloc ? nAlloc * 2 : 16;
      azNew = strataRealloc(az, sizeof(char *) * (size_t)nAlloc);
      if (!azNew) goto list_nomem;
      az = azNew;
    }
    if ((az[n] = strataStrdup(e->d_name)) == NULL) goto list_nomem;
    n++;
  }
  closedir(d);
  *pazName = az;
  *pnName = n;
  return STRATA_OK;
list_nomem:
  closedir(d);
  strataFreeList(az, n);
  return strataErr(STRATA_NOMEM, "out of memory");
}

static int posixLock(strata_env *env, const char *zPath, StrataFile **ppFile) {
  int fd;
  (void)env;
  *ppFile = NULL;
  fd = open(zPath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return posixErr(errno, "open", zPath);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) return strataErr(STRATA_BUSY, "database %s is locked by another handle or process", zPath);
    return posixErr(e, "lock", zPath);
  }
  return posixOpenFd(zPath, fd, ppFile);
}

static strata_env posixEnv = {posixOpen,   posixDelete,  posixRename,  posixMkdir, posixRmdir,
                              posixSyncDir, posixExists, posixListDir, posixLock,  NULL};

strata_env *strataEnvDefault(void) { return &posixEnv; }

void strataFreeList(char **azName, int nName) {
  int i;
  for (i = 0; i < nName; i++) strataFreeMem(azName[i]);
  strataFreeMem(azName);
}

int strataEnvOpen(strata_env *env, const char *zPath, int flags, StrataIoStats *pStats,
                  StrataFile **ppFile) {
  int rc = env->xOpen(env, zPath, flags, ppFile);
  if (rc == STRATA_OK) (*ppFile)->pStats = pStats;
  return rc;
}

int strataFileReadExact(StrataFile *f, void *p, size_t n, u64 off, const char *zWhat) {
  size_t nRead = 0;
  int rc = strataFileRead(f, p, n, off, &nRead);
  if (rc) return rc;
  if (nRead != n) {
    return strataErr(STRATA_CORRUPT, "%s: truncated (wanted %zu bytes at offset %llu, got %zu)",
                     zWhat, n, (unsigned long long)off, nRead);
  }
  return STRATA_OK;
}

int strataEnvWriteFileAtomic(strata_env *env, const char *zDir, const char *zName,
                             const void *p, size_t n, int bSync, int *pbInstalled) {
  char *zTmp = strataMprintf("%s/%s.tmp", zDir, zName);
  char *zDst = strataMprintf("%s/%s", zDir, zName);
  StrataFile *f = NULL;
  int rc;
  *pbInstalled = 0;
  if (!zTmp || !zDst) {
    rc = strataErr(STRATA_NOMEM, "out of memory");
    goto write_done;
  }
  rc = strataEnvOpen(env, zTmp, STRATA_OPEN_WRITE, NULL, &f);
  if (rc) goto write_done;
  rc = strataFileAppend(f, p, n);
  if (rc == STRATA_OK && bSync) rc = strataFileSync(f);
  strataFileClose(f);
  *pbInstalled = 0;
  if (rc == STRATA_OK) rc = env->xRename(env, zTmp, zDst);
  if (rc == STRATA_OK) {
    *pbInstalled = 1;
    if (bSync) rc = env->xSyncDir(env, zDir);
  } else {
    env->xDelete(env, zTmp);
  }
write_done:
  strataFreeMem(zTmp);
  strataFreeMem(zDst);
  return rc;
}

int strataEnvReadFile(strata_env *env, const char *zPath, StrataBuf *pOut) {
  StrataFile *f = NULL;
  u64 sz;
  size_t nRead;
  int rc = strataEnvOpen(env, zPath, STRATA_OPEN_READ, NULL, &f);
  if (rc) return rc;
  rc = strataFileSize(f, &sz);
  pOut->n = 0;
  if (rc == STRATA_OK) rc = strataBufReserve(pOut, (size_t)sz + 1);
  if (rc == STRATA_OK) rc = strataFileRead(f, pOut->a, (size_t)sz, 0, &nRead);
  if (rc == STRATA_OK) pOut->n = nRead;
  strataFileClose(f);
  return rc;
}

/* FAULT ENV
** Wraps a base env. When armed, counts the operations in its mask; the nth
** fails with the chosen kind. CRASH makes every later operation fail too,
** as if the process had died at that point: nothing more reaches the disk. */

typedef struct FaultEnv {
  strata_env base;
  strata_env *pBase;
  pthread_mutex_t mu;
  int kind;
  int opMask;
  int nTarget; /* fire at this count (0: disarmed) */
  int nSeen;
  int bFired;
  int bCrashed;
} FaultEnv;

typedef struct FaultFile {
  StrataFile base;
  FaultEnv *pEnv;
  StrataFile *pReal;
} FaultFile;

/* Returns 0 to go ahead, or the kind of fault to inject now. */
static int faultCheck(FaultEnv *e, int op) {
  int kind = 0;
  pthread_mutex_lock(&e->mu);
  if (e->bCrashed) {
    kind = STRATA_FAULT_CRASH;
  } else if (e->nTarget > 0 && (e->opMask & op)) {
    e->nSeen++;
    if (e->nSeen == e->nTarget) {
      kind = e->kind;
      e->bFired = 1;
      if (kind == STRATA_FAULT_CRASH) e->bCrashed = 1;
    }
  }
  pthread_mutex_unlock(&e->mu);
  return kind;
}

static int faultErr(int kind, const char *zOp) {
  switch (kind) {
    case STRATA_FAULT_ENOSPC: return strataErr(STRATA_FULL, "%s: injected ENOSPC", zOp);
    case STRATA_FAULT_SHORT: return strataErr(STRATA_IOERR, "%s: injected short write", zOp);
    case STRATA_FAULT_SYNC: return strataErr(STRATA_IOERR, "%s: injected fsync failure", zOp);
    case STRATA_FAULT_CRASH: return strataErr(STRATA_IOERR, "%s: injected crash", zOp);
    default: return strataErr(STRATA_IOERR, "%s: injected EIO", zOp);
  }
}

static int faultRead(StrataFile *f, void *pBuf, size_t n, u64 off, size_t *pnRead) {
  FaultFile *p = (FaultFile *)f;
  int kind = faultCheck(p->pEnv, STRATA_FAULTOP_READ);
  if (kind) {
    *pnRead = 0;
    return faultErr(kind, "read");
  }
  return p->pReal->pMethods->xRead(p->pReal, pBuf, n, off, pnRead);
}

static int faultAppend(StrataFile *f, const void *pData, size_t n) {
  FaultFile *p = (FaultFile *)f;
  int kind = faultCheck(p->pEnv, STRATA_FAULTOP_WRITE);
  if (kind == STRATA_FAULT_SHORT && n > 1) {
    p->pReal->pMethods->xAppend(p->pReal, pData, n / 2);
  }
  if (kind) return faultErr(kind, "write");
  return p->pReal->pMethods->xAppend(p->pReal, pData, n);
}

static int faultSync(StrataFile *f) {
  FaultFile *p = (FaultFile *)f;
  int kind = faultCheck(p->pEnv, STRATA_FAULTOP_SYNC);
  if (kind) return faultErr(kind, "fsync");
  return p->pReal->pMethods->xSync(p->pReal);
}

static int faultSize(StrataFile *f, u64 *pSize) {
  FaultFile *p = (FaultFile *)f;
  return p->pReal->pMethods->xSize(p->pReal, pSize);
}

static int faultTruncate(StrataFile *f, u64 n) {
  FaultFile *p = (FaultFile *)f;
  int kind = faultCheck(p->pEnv, STRATA_FAULTOP_WRITE);
  if (kind) return faultErr(kind, "truncate");
  return p->pReal->pMethods->xTruncate(p->pReal, n);
}

static void faultClose(StrataFile *f) {
  FaultFile *p = (FaultFile *)f;
  p->pReal->pMethods->xClose(p->pReal);
  strataFreeMem(p);
}

/* No xMap: reads of a faulty env's tables go through faultRead. */
static const StrataFileMethods faultFileMethods = {
    faultRead, faultAppend, faultSync, faultSize, faultTruncate, faultClose, NULL};

static int faultWrap(FaultEnv *e, StrataFile *pReal, StrataFile **ppFile) {
  FaultFile *p = strataMallocZero(sizeof(*p));
  if (!p) {
    pReal->pMethods->xClose(pReal);
    *ppFile = NULL;
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  p->base.pMethods = &faultFileMethods;
  p->pEnv = e;
  p->pReal = pReal;
  *ppFile = &p->base;
  return STRATA_OK;
}

static int faultOpen(strata_env *env, const char *zPath, int flags, StrataFile **ppFile) {
  FaultEnv *e = (FaultEnv *)env;
  StrataFile *pReal = NULL;
  int rc;
  int kind = faultCheck(e, flags == STRATA_OPEN_READ ? STRATA_FAULTOP_READ : STRATA_FAULTOP_META);
  *ppFile = NULL;
  if (kind) return faultErr(kind, "open");
  rc = e->pBase->xOpen(e->pBase, zPath, flags, &pReal);
  if (rc) return rc;
  return faultWrap(e, pReal, ppFile);
}

#define FAULT_META(name, call)                                      \
  do {                                                              \
    FaultEnv *e = (FaultEnv *)env;                                  \
    int kind = faultCheck(e, STRATA_FAULTOP_META);                  \
    if (kind) return faultErr(kind, name);                          \
    return call;                                                    \
  } while (0)

static int faultDelete(strata_env *env, const char *zPath) {
  FAULT_META("unlink", e->pBase->xDelete(e->pBase, zPath));
}
static int faultRename(strata_env *env, const char *zFrom, const char *zTo) {
  FAULT_META("rename", e->pBase->xRename(e->pBase, zFrom, zTo));
}
static int faultMkdir(strata_env *env, const char *zPath) {
  FAULT_META("mkdir", e->pBase->xMkdir(e->pBase, zPath));
}
static int faultRmdir(strata_env *env, const char *zPath) {
  FAULT_META("rmdir", e->pBase->xRmdir(e->pBase, zPath));
}
static int faultSyncDir(strata_env *env, const char *zPath) {
  FAULT_META("fsync directory", e->pBase->xSyncDir(e->pBase, zPath));
}

static int faultExists(strata_env *env, const char *zPath) {
  FaultEnv *e = (FaultEnv *)env;
  return e->pBase->xExists(e->pBase, zPath);
}

static int faultListDir(strata_env *env, const char *zPath, char ***pazName, int *pnName) {
  FaultEnv *e = (FaultEnv *)env;
  int kind = faultCheck(e, STRATA_FAULTOP_READ);
  *pazName = NULL;
  *pnName = 0;
  if (kind) return faultErr(kind, "opendir");
  return e->pBase->xListDir(e->pBase, zPath, pazName, pnName);
}

static int faultLock(strata_env *env, const char *zPath, StrataFile **ppFile) {
  FaultEnv *e = (FaultEnv *)env;
  return e->pBase->xLock(e->pBase, zPath, ppFile);
}

strata_env *strataFaultEnvNew(strata_env *pBase) {
  FaultEnv *e = strataMallocZero(sizeof(*e));
  if (!e) return NULL;
  e->base.xOpen = faultOpen;
  e->base.xDelete = faultDelete;
  e->base.xRename = faultRename;
  e->base.xMkdir = faultMkdir;
  e->base.xRmdir = faultRmdir;
  e->base.xSyncDir = faultSyncDir;
  e->base.xExists = faultExists;
  e->base.xListDir = faultListDir;
  e->base.xLock = faultLock;
  e->pBase = pBase ? pBase : strataEnvDefault();
  pthread_mutex_init(&e->mu, NULL);
  return &e->base;
}

void strataFaultEnvFree(strata_env *env) {
  FaultEnv *e = (FaultEnv *)env;
  if (!e) return;
  pthread_mutex_destroy(&e->mu);
  strataFreeMem(e);
}

void strataFaultEnvArm(strata_env *env, int kind, int opMask, int n) {
  FaultEnv *e = (FaultEnv *)env;
  pthread_mutex_lock(&e->mu);
  e->kind = kind;
  e->opMask = opMask;
  e->nTarget = n;
  e->nSeen = 0;
  e->bFired = 0;
  e->bCrashed = 0;
  pthread_mutex_unlock(&e->mu);
}

void strataFaultEnvDisarm(strata_env *env) { strataFaultEnvArm(env, 0, 0, 0); }

int strataFaultEnvCount(strata_env *env) {
  FaultEnv *e = (FaultEnv *)env;
  int n;
  pthread_mutex_lock(&e->mu);
  n = e->nSeen;
  pthread_mutex_unlock(&e->mu);
  return n;
}

int strataFaultEnvFired(strata_env *env) {
  FaultEnv *e = (FaultEnv *)env;
  int n;
  pthread_mutex_lock(&e->mu);
  n = e->bFired;
  pthread_mutex_unlock(&e->mu);
  return n;
}
