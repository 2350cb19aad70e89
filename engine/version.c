/*
** version.c -- versions (the live sstables per level), version edits, the
** manifest that logs edits, CURRENT, and file naming.
**
** VERSIONS
** A Version is an immutable, reference-counted set of files per level.
** Readers hold a reference to the version they started with, so a file is
** never deleted under them. Each change (flush, compaction) is a VersionEdit:
** files added and removed, plus the counters (next file number, last
** sequence, log number). An edit is appended to the manifest (a record log,
** see log.c) and made durable before the new version is installed, and
** before any file it removes is deleted.
**
** MANIFEST AND CURRENT
** CURRENT holds the name of the live manifest and a newline. It is replaced
** atomically (write a temporary file, sync, rename, sync the directory), so
** at every moment it names a complete manifest. A new manifest starts with
** one edit that lists the whole current version. See doc/FORMAT.md.
**
** LEVEL ORDER
** L0 files may overlap; they are kept by file number ascending, and a larger
** number always holds newer data. Files of L1 and below do not overlap and
** are kept by smallest key.
*/
#include "strataInt.h"

#include <stdio.h>
#include <stdlib.h>

/* Edit record tags (doc/FORMAT.md, "Manifest records"). */
#define TAG_LOG_NUMBER 1
#define TAG_NEXT_FILE 2
#define TAG_LAST_SEQ 3
#define TAG_DEL_FILE 4
#define TAG_ADD_FILE 5

/* Start a new manifest when the current one exceeds this. */
#define MANIFEST_MAX_BYTES (4u << 20)

/* FILE NAMES */

char *strataFileName(const char *zDir, int type, u64 number) {
  unsigned long long n = (unsigned long long)number;
  switch (type) {
    case STRATA_FILE_WAL: return strataMprintf("%s/%06llu.log", zDir, n);
    case STRATA_FILE_SST: return strataMprintf("%s/%06llu.sst", zDir, n);
    case STRATA_FILE_MANIFEST: return strataMprintf("%s/MANIFEST-%06llu", zDir, n);
    case STRATA_FILE_CURRENT: return strataMprintf("%s/CURRENT", zDir);
    case STRATA_FILE_LOCK: return strataMprintf("%s/LOCK", zDir);
    default: return strataMprintf("%s/%06llu.tmp", zDir, n);
  }
}

static int parseNumber(const char *z, const char *zSuffix, u64 *pNumber) {
  u64 n = 0;
  const char *p = z;
  if (*p < '0' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') {
    if (n > (~(u64)0) / 10 - 10) return 0;
    n = n * 10 + (u64)(*p - '0');
    p++;
  }
  if (strcmp(p, zSuffix) != 0) return 0;
  *pNumber = n;
  return 1;
}

int strataParseFileName(const char *zName, u64 *pNumber) {
  *pNumber = 0;
  if (!strcmp(zName, "CURRENT")) return STRATA_FILE_CURRENT;
  if (!strcmp(zName, "LOCK")) return STRATA_FILE_LOCK;
  if (!strncmp(zName, "MANIFEST-", 9)) {
    return parseNumber(zName + 9, "", pNumber) ? STRATA_FILE_MANIFEST : 0;
  }
  if (parseNumber(zName, ".log", pNumber)) return STRATA_FILE_WAL;
  if (parseNumber(zName, ".sst", pNumber)) return STRATA_FILE_SST;
  if (parseNumber(zName, ".tmp", pNumber)) return STRATA_FILE_TEMP;
  if (!strcmp(zName, "CURRENT.tmp")) return STRATA_FILE_TEMP;
  return 0;
}

/* FILE METADATA AND VERSIONS */

FileMeta *strataFileMetaNew(void) {
  FileMeta *f = strataMallocZero(sizeof(*f));
  if (f) atomic_store(&f->nRef, 1);
  return f;
}

int strataFileMetaFromProps(u64 number, const SstProps *p, FileMeta **ppMeta) {
  FileMeta *f = strataFileMetaNew();
  int rc;
  *ppMeta = NULL;
  if (!f) return strataErr(STRATA_NOMEM, "out of memory");
  f->number = number;
  f->size = p->fileSize;
  f->minSeq = p->minSeq;
  f->maxSeq = p->maxSeq;
  f->nEntries = p->nEntries;
  f->nDeletes = p->nDeletes;
  rc = strataBufSet(&f->smallest, p->smallest.a, p->smallest.n);
  if (rc == STRATA_OK) rc = strataBufSet(&f->largest, p->largest.a, p->largest.n);
  if (rc) {
    strataFileMetaUnref(f);
    return rc;
  }
  *ppMeta = f;
  return STRATA_OK;
}

void strataFileMetaRef(FileMeta *f) { atomic_fetch_add(&f->nRef, 1); }

void strataFileMetaUnref(FileMeta *f) {
  if (f && atomic_fetch_sub(&f->nRef, 1) == 1) {
    if (atomic_load(&f->bObsolete) && f->xObsolete) f->xObsolete(f->pObsoleteCtx, f->number);
    strataBufFree(&f->smallest);
    strataBufFree(&f->largest);
    strataFreeMem(f);
  }
}

void strataVersionRef(Version *v) { atomic_fetch_add(&v->nRef, 1); }

void strataVersionUnref(Version *v) {
  int i, j;
  if (!v || atomic_fetch_sub(&v->nRef, 1) != 1) return;
  for (i = 0; i < STRATA_MAX_LEVELS; i++) {
    for (j = 0; j < v->nFile[i]; j++) strataFileMetaUnref(v->aFile[i][j]);
    strataFreeMem(v->aFile[i]);
  }
  strataFreeMem(v);
}

static Version *versionNew(void) {
  Version *v = strataMallocZero(sizeof(*v));
  if (v) atomic_store(&v->nRef, 1);
  return v;
}

u64 strataVersionLevelBytes(const Version *v, int level) {
  u64 n = 0;
  int i;
  for (i = 0; i < v->nFile[level]; i++) n += v->aFile[level][i]->size;
  return n;
}

static int fileSmallestCmp(const FileMeta *a, const FileMeta *b) {
  return strataIkeyCompare(a->smallest.a, a->smallest.n, b->smallest.a, b->smallest.n);
}

int strataVersionCheck(const Version *v) {
  int i, j;
  for (i = 0; i < STRATA_MAX_LEVELS; i++) {
    for (j = 0; j < v->nFile[i]; j++) {
      const FileMeta *f = v->aFile[i][j];
      if (f->smallest.n < 8 || f->largest.n < 8 ||
          strataIkeyCompare(f->smallest.a, f->smallest.n, f->largest.a, f->largest.n) > 0) {
        return strataErr(STRATA_CORRUPT, "manifest: file %llu has a bad key range",
                         (unsigned long long)f->number);
      }
      if (j == 0) continue;
      if (i == 0) {
        if (v->aFile[0][j - 1]->number >= f->number) {
          return strataErr(STRATA_CORRUPT, "manifest: L0 files out of order");
        }
      } else {
        const FileMeta *p = v->aFile[i][j - 1];
        if (strataIkeyCompare(p->largest.a, p->largest.n, f->smallest.a, f->smallest.n) >= 0) {
          return strataErr(STRATA_CORRUPT, "manifest: files %llu and %llu overlap in L%d",
                           (unsigned long long)p->number, (unsigned long long)f->number, i);
        }
      }
    }
  }
  return STRATA_OK;
}

/* VERSION EDITS */

void strataEditInit(VersionEdit *e) { memset(e, 0, sizeof(*e)); }

void strataEditClear(VersionEdit *e) {
  int i;
  for (i = 0; i < e->nAdd; i++) strataFileMetaUnref(e->aAdd[i].pMeta);
  strataFreeMem(e->aAdd);
  strataFreeMem(e->aDel);
  strataEditInit(e);
}

int strataEditAddFile(VersionEdit *e, int level, FileMeta *pMeta) {
  if (e->nAdd == e->nAddAlloc) {
    int n = e->nAddAlloc ? e->nAddAlloc * 2 : 8;
    EditFile *a = strataRealloc(e->aAdd, sizeof(EditFile) * (size_t)n);
    if (!a) return strataErr(STRATA_NOMEM, "out of memory");
    e->aAdd = a;
    e->nAddAlloc = n;
  }
  strataFileMetaRef(pMeta);
  e->aAdd[e->nAdd].level = level;
  e->aAdd[e->nAdd].pMeta = pMeta;
  e->nAdd++;
  return STRATA_OK;
}

int strataEditDelFile(VersionEdit *e, int level, u64 number) {
  if (e->nDel == e->nDelAlloc) {
    int n = e->nDelAlloc ? e->nDelAlloc * 2 : 8;
    EditDel *a = strataRealloc(e->aDel, sizeof(EditDel) * (size_t)n);
    if (!a) return strataErr(STRATA_NOMEM, "out of memory");
    e->aDel = a;
    e->nDelAlloc = n;
  }
  e->aDel[e->nDel].level = level;
  e->aDel[e->nDel].number = number;
  e->nDel++;
  return STRATA_OK;
}

static int bufAppendBytes(StrataBuf *b, const StrataBuf *pKey) {
  int rc = strataBufAppendVarint(b, pKey->n);
  if (rc == STRATA_OK) rc = strataBufAppend(b, pKey->a, pKey->n);
  return rc;
}

int strataEditEncode(const VersionEdit *e, StrataBuf *b) {
  int rc = STRATA_OK, i;
  b->n = 0;
#define PUTV(v) if (rc == STRATA_OK) rc = strataBufAppendVarint(b, (v))
  if (e->bLogNumber) { PUTV(TAG_LOG_NUMBER); PUTV(e->logNumber); }
  if (e->bNextFile) { PUTV(TAG_NEXT_FILE); PUTV(e->nextFile); }
  if (e->bLastSeq) { PUTV(TAG_LAST_SEQ); PUTV(e->lastSeq); }
  for (i = 0; i < e->nDel; i++) {
    PUTV(TAG_DEL_FILE);
    PUTV((u64)e->aDel[i].level);
    PUTV(e->aDel[i].number);
  }
  for (i = 0; i < e->nAdd; i++) {
    const FileMeta *f = e->aAdd[i].pMeta;
    PUTV(TAG_ADD_FILE);
    PUTV((u64)e->aAdd[i].level);
    PUTV(f->number);
    PUTV(f->size);
    if (rc == STRATA_OK) rc = bufAppendBytes(b, &f->smallest);
    if (rc == STRATA_OK) rc = bufAppendBytes(b, &f->largest);
    PUTV(f->minSeq);
    PUTV(f->maxSeq);
    PUTV(f->nEntries);
    PUTV(f->nDeletes);
  }
#undef PUTV
  return rc;
}

static int editCorrupt(const char *zWhat) {
  return strataErr(STRATA_CORRUPT, "manifest: malformed version edit (%s)", zWhat);
}

static const u8 *getBytes(const u8 *p, const u8 *pEnd, StrataBuf *pOut, int *pRc) {
  u64 n;
  p = strataGetVarint64(p, pEnd, &n);
  if (!p || n > (u64)(pEnd - p) || n < 8) {
    *pRc = editCorrupt("key");
    return NULL;
  }
  *pRc = strataBufSet(pOut, p, (size_t)n);
  return *pRc ? NULL : p + n;
}

int strataEditDecode(VersionEdit *e, const u8 *p, size_t n) {
  const u8 *pEnd = p + n;
  int rc = STRATA_OK;
  strataEditInit(e);
  while (p < pEnd && rc == STRATA_OK) {
    u64 tag, level, num;
    p = strataGetVarint64(p, pEnd, &tag);
    if (!p) return editCorrupt("tag");
    switch (tag) {
      case TAG_LOG_NUMBER:
        if (!(p = strataGetVarint64(p, pEnd, &e->logNumber))) return editCorrupt("log number");
        e->bLogNumber = 1;
        break;
      case TAG_NEXT_FILE:
        if (!(p = strataGetVarint64(p, pEnd, &e->nextFile))) return editCorrupt("next file");
        e->bNextFile = 1;
        break;
      case TAG_LAST_SEQ:
        if (!(p = strataGetVarint64(p, pEnd, &e->lastSeq))) return editCorrupt("last sequence");
        e->bLastSeq = 1;
        break;
      case TAG_DEL_FILE:
        if (!(p = strataGetVarint64(p, pEnd, &level)) || level >= STRATA_MAX_LEVELS ||
            !(p = strataGetVarint64(p, pEnd, &num))) {
          rc = editCorrupt("deleted file");
          break;
        }
        rc = strataEditDelFile(e, (int)level, num);
        break;
      case TAG_ADD_FILE: {
        FileMeta *f;
        if (!(p = strataGetVarint64(p, pEnd, &level)) || level >= STRATA_MAX_LEVELS) {
          rc = editCorrupt("level");
          break;
        }
        f = strataFileMetaNew();
        if (!f) {
          rc = strataErr(STRATA_NOMEM, "out of memory");
          break;
        }
        if (!(p = strataGetVarint64(p, pEnd, &f->number)) ||
            !(p = strataGetVarint64(p, pEnd, &f->size))) {
          rc = editCorrupt("file");
        }
        if (rc == STRATA_OK) p = getBytes(p, pEnd, &f->smallest, &rc);
        if (rc == STRATA_OK) p = getBytes(p, pEnd, &f->largest, &rc);
        if (rc == STRATA_OK &&
            (!(p = strataGetVarint64(p, pEnd, &f->minSeq)) ||
             !(p = strataGetVarint64(p, pEnd, &f->maxSeq)) ||
             !(p = strataGetVarint64(p, pEnd, &f->nEntries)) ||
             !(p = strataGetVarint64(p, pEnd, &f->nDeletes)))) {
          rc = editCorrupt("file counters");
        }
        if (rc == STRATA_OK) rc = strataEditAddFile(e, (int)level, f);
        strataFileMetaUnref(f);
        break;
      }
      default:
        rc = strataErr(STRATA_CORRUPT, "manifest: unknown edit tag %llu", (unsigned long long)tag);
    }
  }
  if (rc) strataEditClear(e);
  return rc;
}

static int cmpFilePtr(const void *a, const void *b) {
  return fileSmallestCmp(*(FileMeta *const *)a, *(FileMeta *const *)b);
}

static int cmpFileNumber(const void *a, const void *b) {
  u64 x = (*(FileMeta *const *)a)->number, y = (*(FileMeta *const *)b)->number;
  return x < y ? -1 : (x > y ? 1 : 0);
}

static int editDeletes(const VersionEdit *e, int level, u64 number) {
  int i;
  for (i = 0; i < e->nDel; i++) {
    if (e->aDel[i].level == level && e->aDel[i].number == number) return 1;
  }
  return 0;
}

int strataVersionApply(const Version *pBase, const VersionEdit *e, Version **ppOut) {
  Version *v = versionNew();
  int level, i, rc = STRATA_OK;
  *ppOut = NULL;
  if (!v) return strataErr(STRATA_NOMEM, "out of memory");
  for (level = 0; level < STRATA_MAX_LEVELS && rc == STRATA_OK; level++) {
    int nMax = (pBase ? pBase->nFile[level] : 0), n = 0;
    for (i = 0; i < e->nAdd; i++) nMax += (e->aAdd[i].level == level);
    if (nMax == 0) continue;
    v->aFile[level] = strataMalloc(sizeof(FileMeta *) * (size_t)nMax);
    if (!v->aFile[level]) {
      rc = strataErr(STRATA_NOMEM, "out of memory");
      break;
    }
    for (i = 0; pBase && i < pBase->nFile[level]; i++) {
      FileMeta *f = pBase->aFile[level][i];
      if (editDeletes(e, level, f->number)) continue;
      strataFileMetaRef(f);
      v->aFile[level][n++] = f;
    }
    for (i = 0; i < e->nAdd; i++) {
      if (e->aAdd[i].level != level) continue;
      strataFileMetaRef(e->aAdd[i].pMeta);
      v->aFile[level][n++] = e->aAdd[i].pMeta;
    }
    v->nFile[level] = n;
    qsort(v->aFile[level], (size_t)n, sizeof(FileMeta *), level == 0 ? cmpFileNumber : cmpFilePtr);
  }
  if (rc == STRATA_OK) rc = strataVersionCheck(v);
  if (rc) {
    strataVersionUnref(v);
    return rc;
  }
  *ppOut = v;
  return STRATA_OK;
}

/* VERSION SET */

/* After e is installed, the files it removed from vOld are obsolete: each is
** deleted when the last version holding it is released. */
static void markObsolete(const Version *vOld, const VersionEdit *e) {
  int i, j, k, bMoved;
  for (i = 0; i < e->nDel; i++) {
    int level = e->aDel[i].level;
    /* A file deleted and added again (a trivial move) stays live. */
    for (k = 0, bMoved = 0; k < e->nAdd; k++) bMoved |= (e->aAdd[k].pMeta->number == e->aDel[i].number);
    if (bMoved) continue;
    for (j = 0; j < vOld->nFile[level]; j++) {
      FileMeta *f = vOld->aFile[level][j];
      if (f->number == e->aDel[i].number) atomic_store(&f->bObsolete, 1);
    }
  }
}

static void vsApplyCounters(VersionSet *vs, const VersionEdit *e) {
  if (e->bLogNumber) vs->logNumber = e->logNumber;
  if (e->bNextFile && e->nextFile > vs->nextFile) vs->nextFile = e->nextFile;
  if (e->bLastSeq && e->lastSeq > vs->lastSeq) vs->lastSeq = e->lastSeq;
}

/* Read CURRENT into the manifest number. */
static int readCurrent(VersionSet *vs, u64 *pNumber) {
  StrataBuf b = {0};
  char *zPath = strataFileName(vs->zDir, STRATA_FILE_CURRENT, 0);
  int rc;
  if (!zPath) return strataErr(STRATA_NOMEM, "out of memory");
  rc = strataEnvReadFile(vs->env, zPath, &b);
  strataFreeMem(zPath);
  if (rc == STRATA_OK) {
    u64 n;
    char zName[64];
    size_t len = b.n;
    if (len > 0 && b.a[len - 1] == '\n') len--;
    if (len == 0 || len >= sizeof(zName)) {
      rc = strataErr(STRATA_CORRUPT, "%s/CURRENT: malformed", vs->zDir);
    } else {
      memcpy(zName, b.a, len);
      zName[len] = 0;
      if (strataParseFileName(zName, &n) != STRATA_FILE_MANIFEST) {
        rc = strataErr(STRATA_CORRUPT, "%s/CURRENT: does not name a manifest", vs->zDir);
      } else {
        *pNumber = n;
      }
    }
  }
  strataBufFree(&b);
  return rc;
}

static int vsReplay(VersionSet *vs, const char *zManifest) {
  LogReader *r = NULL;
  Version *v = NULL;
  int rc = strataLogReaderOpen(vs->env, zManifest, STRATA_LOG_MANIFEST, &r);
  int nEdit = 0;
  if (rc == STRATA_CANTOPEN) {
    return strataErr(STRATA_CORRUPT, "%s/CURRENT names %s, which is missing", vs->zDir, zManifest);
  }
  if (rc) return rc;
  v = versionNew();
  if (!v) rc = strataErr(STRATA_NOMEM, "out of memory");
  while (rc == STRATA_OK) {
    const u8 *p;
    size_t n;
    VersionEdit e;
    Version *vNew = NULL;
    rc = strataLogRead(r, &p, &n);
    if (rc == STRATA_NOTFOUND) {
      rc = STRATA_OK;
      break;
    }
    if (rc) break;
    rc = strataEditDecode(&e, p, n);
    if (rc) break;
    rc = strataVersionApply(v, &e, &vNew);
    vsApplyCounters(vs, &e);
    strataEditClear(&e);
    if (rc) break;
    strataVersionUnref(v);
    v = vNew;
    nEdit++;
  }
  strataLogReaderClose(r);
  if (rc == STRATA_OK && nEdit == 0) {
    rc = strataErr(STRATA_CORRUPT, "%s: manifest holds no version", zManifest);
  }
  if (rc) {
    strataVersionUnref(v);
    return rc;
  }
  vs->pCurrent = v;
  return STRATA_OK;
}

int strataVersionSetOpen(strata_env *env, const char *zDir, StrataIoStats *pIoStats, int bSync,
                         VersionSet **ppSet, int *pbExists) {
  VersionSet *vs = strataMallocZero(sizeof(*vs));
  char *zCurrent = NULL;
  int rc = STRATA_OK;
  *ppSet = NULL;
  *pbExists = 0;
  if (!vs || !(vs->zDir = strataStrdup(zDir))) {
    strataFreeMem(vs);
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  vs->env = env;
  vs->pIoStats = pIoStats;
  vs->bSync = bSync;
  pthread_cond_init(&vs->writerCv, NULL);
  vs->nextFile = 2;
  zCurrent = strataFileName(zDir, STRATA_FILE_CURRENT, 0);
  if (!zCurrent) {
    rc = strataErr(STRATA_NOMEM, "out of memory");
  } else if (env->xExists(env, zCurrent)) {
    u64 num = 0;
    *pbExists = 1;
    rc = readCurrent(vs, &num);
    if (rc == STRATA_OK) {
      char *zManifest = strataFileName(zDir, STRATA_FILE_MANIFEST, num);
      if (!zManifest) {
        rc = strataErr(STRATA_NOMEM, "out of memory");
      } else {
        rc = vsReplay(vs, zManifest);
        strataFreeMem(zManifest);
      }
      vs->manifestNumber = num;
      if (vs->nextFile <= num) vs->nextFile = num + 1;
    }
  } else {
    vs->pCurrent = versionNew();
    if (!vs->pCurrent) rc = strataErr(STRATA_NOMEM, "out of memory");
  }
  strataFreeMem(zCurrent);
  if (rc) {
    strataVersionSetClose(vs);
    return rc;
  }
  *ppSet = vs;
  return STRATA_OK;
}

u64 strataVersionSetNewFileNumber(VersionSet *vs) { return vs->nextFile++; }

/* Fill e with the whole current version and the counters. */
static int vsSnapshotEdit(VersionSet *vs, VersionEdit *e) {
  int level, i, rc = STRATA_OK;
  e->bLogNumber = e->bNextFile = e->bLastSeq = 1;
  e->logNumber = vs->logNumber;
  e->nextFile = vs->nextFile;
  e->lastSeq = vs->lastSeq;
  for (level = 0; level < STRATA_MAX_LEVELS && rc == STRATA_OK; level++) {
    for (i = 0; i < vs->pCurrent->nFile[level] && rc == STRATA_OK; i++) {
      rc = strataEditAddFile(e, level, vs->pCurrent->aFile[level][i]);
    }
  }
  return rc;
}

int strataVersionSetNewManifest(VersionSet *vs, const VersionEdit *pExtra) {
  VersionEdit snap;
  StrataBuf b = {0};
  LogWriter *w = NULL;
  Version *vNew = NULL;
  u64 num;
  char *zPath = NULL, zName[64];
  int rc, bInstalled = 0;

  /* Apply pExtra first so the snapshot holds it. */
  if (pExtra) {
    rc = strataVersionApply(vs->pCurrent, pExtra, &vNew);
    if (rc) return rc;
  }
  num = vs->nextFile++;
  strataEditInit(&snap);
  if (vNew) {
    Version *vOld = vs->pCurrent;
    vs->pCurrent = vNew;
    rc = vsSnapshotEdit(vs, &snap);
    vs->pCurrent = vOld;
  } else {
    rc = vsSnapshotEdit(vs, &snap);
  }
  if (pExtra) {
    if (pExtra->bLogNumber) snap.logNumber = pExtra->logNumber;
    if (pExtra->bLastSeq && pExtra->lastSeq > snap.lastSeq) snap.lastSeq = pExtra->lastSeq;
  }
  snap.nextFile = vs->nextFile;
  if (rc == STRATA_OK) rc = strataEditEncode(&snap, &b);
  if (rc == STRATA_OK) {
    zPath = strataFileName(vs->zDir, STRATA_FILE_MANIFEST, num);
    if (!zPath) rc = strataErr(STRATA_NOMEM, "out of memory");
  }
  if (rc == STRATA_OK) rc = strataLogWriterOpen(vs->env, zPath, STRATA_LOG_MANIFEST, vs->pIoStats, &w);
  if (rc == STRATA_OK) rc = strataLogAppend(w, b.a, b.n);
  /* The manifest is always synced before CURRENT names it: CURRENT must
  ** never point at a manifest that a crash could truncate. */
  if (rc == STRATA_OK) rc = strataLogSync(w);
  if (rc == STRATA_OK) {
    snprintf(zName, sizeof(zName), "MANIFEST-%06llu\n", (unsigned long long)num);
    rc = strataEnvWriteFileAtomic(vs->env, vs->zDir, "CURRENT", zName, strlen(zName), 1,
                                  &bInstalled);
  }
  if (rc == STRATA_OK || bInstalled) {
    /* Once CURRENT names the new manifest it is the live one, even if the
    ** directory sync after the rename failed (rc is still returned). */
    u64 oldNum = vs->manifestNumber;
    strataLogWriterClose(vs->pManifest);
    vs->pManifest = w;
    vs->manifestNumber = num;
    vsApplyCounters(vs, &snap);
    if (vNew) {
      markObsolete(vs->pCurrent, pExtra);
      strataVersionUnref(vs->pCurrent);
      vs->pCurrent = vNew;
      vNew = NULL;
    }
    if (oldNum && oldNum != num) {
      char *zOld = strataFileName(vs->zDir, STRATA_FILE_MANIFEST, oldNum);
      if (zOld) vs->env->xDelete(vs->env, zOld);
      strataFreeMem(zOld);
    }
  } else {
    strataLogWriterClose(w);
    if (zPath) vs->env->xDelete(vs->env, zPath);
  }
  strataVersionUnref(vNew);
  strataEditClear(&snap);
  strataBufFree(&b);
  strataFreeMem(zPath);
  return rc;
}

/* The manifest record is written and synced with pMu released: an fsync
** can take tens of milliseconds while compactions write, and every commit
** needs the database mutex. Edits are serialized by bWriting instead, so
** each is applied to the version the previous one installed, and
** pCurrent does not change during the write. Whatever the edit removes
** stays marked as being compacted until it returns, so nothing picks it
** meanwhile. */
int strataVersionSetLogAndApply(VersionSet *vs, VersionEdit *e, pthread_mutex_t *pMu) {
  StrataBuf b = {0};
  Version *vNew = NULL;
  int rc;
  while (pMu && vs->bWriting) pthread_cond_wait(&vs->writerCv, pMu);
  if (!vs->pManifest || strataLogSize(vs->pManifest) > MANIFEST_MAX_BYTES) {
    return strataVersionSetNewManifest(vs, e); /* rare: stays under pMu */
  }
  e->bNextFile = 1;
  e->nextFile = vs->nextFile;
  rc = strataVersionApply(vs->pCurrent, e, &vNew);
  if (rc == STRATA_OK) rc = strataEditEncode(e, &b);
  if (rc == STRATA_OK) {
    vs->bWriting = 1;
    if (pMu) pthread_mutex_unlock(pMu);
    rc = strataLogAppend(vs->pManifest, b.a, b.n);
    if (rc == STRATA_OK) rc = vs->bSync ? strataLogSync(vs->pManifest) : strataLogFlush(vs->pManifest);
    if (pMu) pthread_mutex_lock(pMu);
    vs->bWriting = 0;
    pthread_cond_broadcast(&vs->writerCv);
  }
  strataBufFree(&b);
  if (rc) {
    /* The manifest may now hold a partial record: start a fresh one at the
    ** next edit rather than append after it. */
    strataLogWriterClose(vs->pManifest);
    vs->pManifest = NULL;
    strataVersionUnref(vNew);
    return rc;
  }
  vsApplyCounters(vs, e);
  markObsolete(vs->pCurrent, e);
  strataVersionUnref(vs->pCurrent);
  vs->pCurrent = vNew;
  return STRATA_OK;
}

void strataVersionSetClose(VersionSet *vs) {
  if (!vs) return;
  strataLogWriterClose(vs->pManifest);
  strataVersionUnref(vs->pCurrent);
  pthread_cond_destroy(&vs->writerCv);
  strataFreeMem(vs->zDir);
  strataFreeMem(vs);
}
