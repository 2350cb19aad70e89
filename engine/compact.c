/*
** compact.c -- leveled compaction: picking, merging, garbage collection,
** and manual compaction of a key range.
**
** SHAPE
** L0 holds flushed memtables, which may overlap; it is compacted into L1
** when it has l0_compaction_trigger files. Each level below has a target
** size: L1's is level_base_size (default 4 x memtable_size, at least
** 8 MiB) or more (see LEVEL SIZING), and each further level's is
** level_multiplier times the base. The level with the highest score (L0:
** files / trigger; Ln: bytes / target) of at least 1 is compacted next.
**
** LEVEL SIZING
** A byte written reaches the bottom level Lk through k merges: L0 -> L1
** rewrites about size(L1) / B bytes of L1 per byte of the L0 batch B
** (l0_compaction_trigger memtables), and Ln -> Ln+1 about size(Ln+1) /
** size(Ln), since keys spread evenly over a level. With fixed targets L1
** stays at 4 memtables while L2 grows to ten times that, so every byte
** costs ~10 on its way to L2. The ratios' sum is least when they are
** equal: once the bottom level holds S > B bytes, Ln's target is
** B * r^n, r = (S / B)^(1/k), where that is more than the fixed one. In
** practice only L1 grows (to about sqrt(B * S) with two levels, 90 MB at
** 10M 108-byte rows): random 1M and 10M-row fills write 9-10% fewer bytes
** (1M: w-amp 4.34 -> 3.95; 10M at the pace of the SQL path 9.8 -> 8.8).
** The bottom level's own target stays fixed, so a new level opens when it
** would have before; the write stalls' debt limits stay on the base size.
**
** INPUTS
** An L0 compaction takes every L0 file (so no older L0 file can hold a
** version of a key that was moved below a newer one) and the L1 files that
** overlap them. An Ln compaction (n >= 1) takes one file, the one that
** overlaps the fewest bytes of Ln+1 for its size (see pickFile), and the
** Ln+1 files that overlap it. A single input with nothing below it is moved, not rewritten.
**
** CONCURRENCY
** Up to background_threads compactions run at once, on disjoint inputs:
** every input file is marked bCompacting (under db->mu) until its
** compaction is installed or has failed, and a compaction is picked only if
** none of its inputs is marked. That keeps each level's files disjoint: two
** compactions into the same level take disjoint upper files, and one whose
** range would reach into another's outputs overlaps one of that one's
** lower inputs, which are marked. At most one L0 compaction runs (it takes
** every L0 file). A level's score counts only the bytes not already being
** compacted, so a level just over its target does not start a second
** compaction that would leave it under.
**
** OUTPUTS
** Outputs are cut at target_file_size, or earlier when a file would overlap
** more than 10 target sizes of the level below its own (so its own future
** compaction stays small), and only between user keys, so that the files of
** a level never share a user key.
**
** SEEK COMPACTION
** A seek positions a cursor in every sorted run whose range holds its key:
** at 1M rows after a random fill, the memtable, an L0 table, L1 and L2,
** each a block to find and often to read. When reads keep paying for a
** file that sits above others on the same keys, compacting it down pays
** for itself, if reads go on. Every seek is charged to the first (newest)
** of the files whose ranges hold the sought key, when there are at least
** two; a file that has been charged one seek per SEEK_BYTES_PER_CHARGE of
** what its compaction would rewrite (its size and the bytes of the level
** below that it overlaps, as of the first charge; at least
** SEEK_MIN_CHARGES) asks to be compacted into the level below, which
** happens when no compaction is due by size. A seek that meets one run
** fewer saves a few microseconds; rewriting 4 KiB costs some tens: a file
** moves once the seeks so far have paid for a tenth or so of its
** rewrite, a bet that they go on. (At 10M rows, 200k seeks move L0 and
** L1 but not the 80 MB-per-file overlaps of L2 into L3.) Each such file
** moves down in turn, until seeks meet only the memtable and one table of
** the bottom level. Writes start the process over: the charge falls on new
** files as they appear. A charge is one relaxed atomic add on the file;
** only the seek that crosses a multiple of the allowance takes db->mu.
**
** GARBAGE COLLECTION
** A version is dropped only when a newer version of the same key is visible
** to every live snapshot. A deletion is dropped only when, in addition, no
** level below the output can hold the key (the output is its bottom level).
**
** CRASH SAFETY
** Outputs are synced and the directory synced before the manifest edit that
** swaps inputs for outputs is made durable; inputs are deleted only after
** that, when the last reader of the old version lets go. A crash at any
** point leaves the old version whole; unreferenced outputs are removed at
** the next open.
*/
#include "strataInt.h"

#include <stdio.h>
#include <stdlib.h>

#define GRANDPARENT_OVERLAP_FACTOR 10
#define SEEK_BYTES_PER_CHARGE (4u << 10) /* see SEEK COMPACTION */
#define SEEK_MIN_CHARGES 100

/* The fixed target of L1: level_base_size, or 4 memtables and at least 8 MiB. */
static u64 levelBase(const strata *db) {
  u64 base = db->opts.level_base_size;
  if (base == 0) {
    base = 4 * (u64)db->opts.memtable_size;
    if (base < (8u << 20)) base = 8u << 20;
  }
  return base;
}

/* The r >= 1 with r^k = x, to a relative 1e-9; at most rMax. */
static double levelRatio(double x, int k, double rMax) {
  double lo = 1, hi = rMax;
  int i, j;
  if (x <= 1) return 1;
  for (i = 0; i < 40; i++) {
    double mid = (lo + hi) / 2, p = 1;
    for (j = 0; j < k; j++) p *= mid;
    if (p < x) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* Target sizes of v's levels 1 .. STRATA_MAX_LEVELS-1 into aTarget (see
** LEVEL SIZING); aTarget[0] is 0 (L0 goes by file count). db->mu held. */
static void levelTargets(const strata *db, const Version *v, u64 *aTarget) {
  u64 m = (u64)db->opts.level_multiplier;
  u64 nBatch = (u64)db->opts.l0_compaction_trigger * (u64)db->opts.memtable_size, nLast;
  int level, iLast = 0;
  aTarget[0] = 0;
  aTarget[1] = levelBase(db);
  for (level = 2; level < STRATA_MAX_LEVELS; level++) aTarget[level] = aTarget[level - 1] * m;
  for (level = 1; level < STRATA_MAX_LEVELS; level++) {
    if (v->nFile[level] > 0) iLast = level;
  }
  if (iLast < 2) return;
  nLast = strataVersionLevelBytes(v, iLast);
  if (nLast > nBatch) {
    double r = levelRatio((double)nLast / (double)nBatch, iLast, (double)m), t = (double)nBatch;
    for (level = 1; level < iLast; level++) {
      t *= r;
      if (t > (double)aTarget[level]) aTarget[level] = (u64)t;
    }
  }
}

/* Score of a level: >= 1 means it needs compaction. Files being compacted
** do not count (see CONCURRENCY). db->mu held. */
static double levelScore(const strata *db, const Version *v, int level, u64 nTarget) {
  u64 n = 0;
  int i;
  for (i = 0; i < v->nFile[level]; i++) {
    const FileMeta *f = v->aFile[level][i];
    if (!f->bCompacting) n += level == 0 ? 1 : f->size;
  }
  if (level == 0) return (double)n / (double)db->opts.l0_compaction_trigger;
  return (double)n / (double)nTarget;
}

void strataCompactUpdateDebt(strata *db) {
  Version *v = db->vs->pCurrent;
  u64 nDebt = 0, aTarget[STRATA_MAX_LEVELS];
  int level;
  levelTargets(db, v, aTarget);
  for (level = 1; level < STRATA_MAX_LEVELS - 1; level++) {
    u64 n = strataVersionLevelBytes(v, level);
    if (n > aTarget[level]) nDebt += n - aTarget[level];
  }
  if (v->nFile[0] >= db->opts.l0_compaction_trigger) nDebt += strataVersionLevelBytes(v, 0);
  db->nCompactionDebt = nDebt;
}

u64 strataCompactDebtLimit(const strata *db, int bHard) {
  return levelBase(db) * (bHard ? 64u : 16u);
}

static int pickFile(const Version *v, int level);
static int level0Free(const Version *v);
static int fileBusy(const Version *v, int level, int i);
static inline int ukeyCmp(const StrataBuf *a, const StrataBuf *b);

/* Seeks file f of `level` in v is allowed before it asks to be compacted
** down: one per SEEK_BYTES_PER_CHARGE of f and the bytes of level+1 it
** overlaps. */
static unsigned seekAllowance(const Version *v, const FileMeta *f, int level) {
  u64 n = f->size;
  int i;
  for (i = 0; level + 1 < STRATA_MAX_LEVELS && i < v->nFile[level + 1]; i++) {
    const FileMeta *g = v->aFile[level + 1][i];
    if (ukeyCmp(&g->largest, &f->smallest) >= 0 && ukeyCmp(&g->smallest, &f->largest) <= 0) {
      n += g->size;
    }
  }
  n /= SEEK_BYTES_PER_CHARGE;
  return n < SEEK_MIN_CHARGES ? SEEK_MIN_CHARGES : n > (1u << 30) ? (1u << 30) : (unsigned)n;
}

void strataCompactNoteSeek(strata *db, const Version *v, FileMeta *f, int level) {
  unsigned n = atomic_fetch_add_explicit(&f->nSeeks, 1, memory_order_relaxed) + 1;
  unsigned nAllow = atomic_load_explicit(&f->nSeekAllow, memory_order_relaxed);
  if (nAllow == 0) {
    /* Computed once, from the version of the first charge. */
    nAllow = seekAllowance(v, f, level);
    atomic_store_explicit(&f->nSeekAllow, nAllow, memory_order_relaxed);
  }
  /* Every further allowance asks again, in case the first ask found another
  ** file waiting. */
  if (n % nAllow != 0) return;
  pthread_mutex_lock(&db->mu);
  if (!db->pSeekFile && !db->opts.disable_compaction) {
    strataFileMetaRef(f);
    db->pSeekFile = f;
    db->iSeekLevel = level;
    pthread_cond_broadcast(&db->bgCv);
  }
  pthread_mutex_unlock(&db->mu);
}

void strataCompactSeekClear(strata *db) {
  strataFileMetaUnref(db->pSeekFile);
  db->pSeekFile = NULL;
  db->bSeekPicked = 0;
}

/* The level of db->pSeekFile if its compaction may start now, else -1;
** drops the file once it has left its level. db->mu held. */
static int seekPick(strata *db, const Version *v) {
  FileMeta *f = db->pSeekFile;
  int level = db->iSeekLevel, i;
  if (!f) return -1;
  for (i = 0; i < v->nFile[level] && v->aFile[level][i] != f; i++) {
  }
  if (i == v->nFile[level] || level + 1 >= STRATA_MAX_LEVELS) {
    strataCompactSeekClear(db);
    return -1;
  }
  if (level == 0 ? !level0Free(v) : fileBusy(v, level, i)) return -1;
  return level;
}

int strataCompactPick(strata *db) {
  Version *v = db->vs->pCurrent;
  double best = 0;
  u64 aTarget[STRATA_MAX_LEVELS];
  int level, iBest = -1;
  db->bSeekPicked = 0;
  if (db->opts.disable_compaction || db->bManualCompaction) return 0;
  levelTargets(db, v, aTarget);
  for (level = 0; level < STRATA_MAX_LEVELS - 1; level++) {
    double s = levelScore(db, v, level, aTarget[level]);
    if (s >= 1.0 && s > best &&
        (level == 0 ? level0Free(v) : pickFile(v, level) >= 0)) {
      best = s;
      iBest = level;
    }
  }
  if (iBest < 0 && (iBest = seekPick(db, v)) >= 0) db->bSeekPicked = 1;
  db->iCompactLevel = iBest;
  return iBest >= 0;
}

/* User key range helpers (internal keys in FileMeta). */
static inline int ukeyCmp(const StrataBuf *a, const StrataBuf *b) {
  return strataUkeyCompare(a->a, a->n - 8, b->a, b->n - 8);
}

static int fileOverlaps(const FileMeta *f, const u8 *lo, size_t nLo, const u8 *hi, size_t nHi) {
  if (lo && strataUkeyCompare(f->largest.a, f->largest.n - 8, lo, nLo) < 0) return 0;
  if (hi && strataUkeyCompare(f->smallest.a, f->smallest.n - 8, hi, nHi) > 0) return 0;
  return 1;
}

/* A compaction job. */
typedef struct Compaction {
  int level; /* inputs from level and level+1; outputs to level+1 */
  int nIn[2];
  FileMeta **apIn[2];
  StrataBuf lo, hi; /* user key range of all inputs */
  StrataBuf split;  /* where a split compaction's upper half starts (SUBCOMPACTIONS) */
  u64 nBytesIn;
  int bMoved;       /* done by a trivial move */
} Compaction;

static void compactionFree(Compaction *c) {
  int i, j;
  for (i = 0; i < 2; i++) {
    for (j = 0; j < c->nIn[i]; j++) strataFileMetaUnref(c->apIn[i][j]);
    strataFreeMem(c->apIn[i]);
  }
  strataBufFree(&c->lo);
  strataBufFree(&c->hi);
  strataBufFree(&c->split);
}

static int addInput(Compaction *c, int which, FileMeta *f) {
  FileMeta **a = strataRealloc(c->apIn[which], sizeof(FileMeta *) * (size_t)(c->nIn[which] + 1));
  if (!a) return strataErr(STRATA_NOMEM, "out of memory");
  c->apIn[which] = a;
  strataFileMetaRef(f);
  a[c->nIn[which]++] = f;
  c->nBytesIn += f->size;
  return STRATA_OK;
}

/* Widen the user key range [lo, hi] of c to cover f. */
static int widenRange(Compaction *c, const FileMeta *f, int bFirst) {
  int rc = STRATA_OK;
  if (bFirst || strataUkeyCompare(f->smallest.a, f->smallest.n - 8, c->lo.a, c->lo.n) < 0) {
    rc = strataBufSet(&c->lo, f->smallest.a, f->smallest.n - 8);
  }
  if (rc == STRATA_OK &&
      (bFirst || strataUkeyCompare(f->largest.a, f->largest.n - 8, c->hi.a, c->hi.n) > 0)) {
    rc = strataBufSet(&c->hi, f->largest.a, f->largest.n - 8);
  }
  return rc;
}

/* The file of `level` (>= 1) whose compaction rewrites the least below it
** per byte it moves: smallest (overlapping bytes in level+1) / size. Both
** levels are sorted, so one sweep finds every file's overlap. Cheaper
** compactions first keep write amplification down (files that overlap much
** get their turn when the level below has grown to meet them). Files that
** are, or overlap, inputs of a running compaction are passed over (see
** CONCURRENCY). Returns -1 if every file is. db->mu held. */
static int pickFile(const Version *v, int level) {
  FileMeta **a = v->aFile[level], **b = level + 1 < STRATA_MAX_LEVELS ? v->aFile[level + 1] : NULL;
  int n = v->nFile[level], m = b ? v->nFile[level + 1] : 0;
  int i, j = 0, iBest = -1;
  double best = -1;
  for (i = 0; i < n; i++) {
    const FileMeta *f = a[i];
    u64 nOver = 0;
    int k, bBusy = f->bCompacting;
    /* Skip files of level+1 entirely before f. */
    while (j < m && ukeyCmp(&b[j]->largest, &f->smallest) < 0) j++;
    for (k = j; k < m && ukeyCmp(&b[k]->smallest, &f->largest) <= 0; k++) {
      nOver += b[k]->size;
      bBusy |= b[k]->bCompacting;
    }
    if (!bBusy) {
      double r = (double)nOver / (double)(f->size ? f->size : 1);
      if (best < 0 || r < best) {
        best = r;
        iBest = i;
      }
    }
  }
  return iBest;
}

/* 1 if file i of `level` (>= 1), or a file of level+1 it overlaps, is being
** compacted. db->mu held. */
static int fileBusy(const Version *v, int level, int i) {
  const FileMeta *f = v->aFile[level][i];
  int k;
  if (f->bCompacting) return 1;
  for (k = 0; level + 1 < STRATA_MAX_LEVELS && k < v->nFile[level + 1]; k++) {
    const FileMeta *g = v->aFile[level + 1][k];
    if (g->bCompacting && ukeyCmp(&g->largest, &f->smallest) >= 0 &&
        ukeyCmp(&g->smallest, &f->largest) <= 0) {
      return 1;
    }
  }
  return 0;
}

/* 1 if an L0 compaction may start: no L0 file, and no L1 file in the key
** range of L0, is being compacted. db->mu held. */
static int level0Free(const Version *v) {
  const StrataBuf *lo = NULL, *hi = NULL;
  int i;
  for (i = 0; i < v->nFile[0]; i++) {
    const FileMeta *f = v->aFile[0][i];
    if (f->bCompacting) return 0;
    if (!lo || ukeyCmp(&f->smallest, lo) < 0) lo = &f->smallest;
    if (!hi || ukeyCmp(&f->largest, hi) > 0) hi = &f->largest;
  }
  for (i = 0; lo && i < v->nFile[1]; i++) {
    const FileMeta *f = v->aFile[1][i];
    if (f->bCompacting && ukeyCmp(&f->largest, lo) >= 0 && ukeyCmp(&f->smallest, hi) <= 0) return 0;
  }
  return 1;
}

/* Fill c with the files of `level` overlapping [lo, hi] (all L0 files for
** level 0; for bOneFile, pOne or the file pickFile chooses), and the
** overlapping files of level+1. db->mu held. */
static int setupInputs(strata *db, Compaction *c, int level, const u8 *lo, size_t nLo, const u8 *hi,
                       size_t nHi, int bOneFile, FileMeta *pOne) {
  Version *v = db->vs->pCurrent;
  int i, rc = STRATA_OK;
  memset(c, 0, sizeof(*c));
  c->level = level;
  if (level == 0) {
    for (i = 0; i < v->nFile[0] && rc == STRATA_OK; i++) rc = addInput(c, 0, v->aFile[0][i]);
  } else if (pOne) {
    rc = addInput(c, 0, pOne);
  } else if (bOneFile) {
    int iFile = pickFile(v, level);
    if (iFile >= 0) rc = addInput(c, 0, v->aFile[level][iFile]);
  } else {
    for (i = 0; i < v->nFile[level] && rc == STRATA_OK; i++) {
      if (fileOverlaps(v->aFile[level][i], lo, nLo, hi, nHi)) rc = addInput(c, 0, v->aFile[level][i]);
    }
  }
  for (i = 0; i < c->nIn[0] && rc == STRATA_OK; i++) rc = widenRange(c, c->apIn[0][i], i == 0);
  if (rc == STRATA_OK && c->nIn[0] > 0 && level + 1 < STRATA_MAX_LEVELS) {
    for (i = 0; i < v->nFile[level + 1] && rc == STRATA_OK; i++) {
      FileMeta *f = v->aFile[level + 1][i];
      if (fileOverlaps(f, c->lo.a, c->lo.n, c->hi.a, c->hi.n)) rc = addInput(c, 1, f);
    }
  }
  if (rc) compactionFree(c);
  return rc;
}

/* OUTPUT */

typedef struct CompactOut {
  strata *db;
  Compaction *c;
  VersionEdit *e;
  SstBuilder *b;
  u64 number;
  char *zPath;
  u64 nBytesOut;
  int nOut;
  /* Grandparent overlap tracking (level + 2). */
  FileMeta **aGp;
  int nGp, iGp;
  u64 nGpOverlap;
  StrataBuf lastKey; /* previous internal key written */
} CompactOut;

static int outFinish(CompactOut *o) {
  SstProps props;
  FileMeta *f;
  int rc;
  if (!o->b) return STRATA_OK;
  memset(&props, 0, sizeof(props));
  strataDbNoteSkipHint(o->db, o->b);
  rc = strataSstBuilderFinish(o->b, &props);
  o->b = NULL;
  if (rc == STRATA_OK) {
    rc = strataFileMetaFromProps(o->number, &props, &f);
    if (rc == STRATA_OK) {
      rc = strataEditAddFile(o->e, o->c->level + 1, f);
      if (rc == STRATA_OK) {
        strataDbAdoptFile(o->db, f);
        o->nBytesOut += props.fileSize;
        o->nOut++;
      }
      strataFileMetaUnref(f);
    }
  }
  strataSstPropsFree(&props);
  strataFreeMem(o->zPath);
  o->zPath = NULL;
  o->nGpOverlap = 0;
  return rc;
}

static int outStart(CompactOut *o) {
  strata *db = o->db;
  int rc;
  pthread_mutex_lock(&db->mu);
  o->number = strataVersionSetNewFileNumber(db->vs);
  pthread_mutex_unlock(&db->mu);
  o->zPath = strataFileName(db->zDir, STRATA_FILE_SST, o->number);
  if (!o->zPath) return strataErr(STRATA_NOMEM, "out of memory");
  {
    SstOptions so;
    strataDbSstOptions(db, o->c->level + 1, &so);
    rc = strataSstBuilderNew(db->env, o->zPath, &so, &db->io, &o->b);
  }
  return rc;
}

/* 1 if the output should be cut before ikey (a new user key). */
static int shouldCut(CompactOut *o, const u8 *pKey, size_t nKey) {
  strata *db = o->db;
  /* Advance over grandparent files entirely before this key. */
  while (o->iGp < o->nGp) {
    const FileMeta *g = o->aGp[o->iGp];
    if (strataIkeyCompare(pKey, nKey, g->largest.a, g->largest.n) <= 0) break;
    if (o->b) o->nGpOverlap += g->size;
    o->iGp++;
  }
  if (!o->b) return 0;
  if (strataSstBuilderFileSize(o->b) >= db->opts.target_file_size) return 1;
  return o->nGpOverlap > GRANDPARENT_OVERLAP_FACTOR * (u64)db->opts.target_file_size;
}

/* Whether a level below the output may hold ukey (level iterators move
** forward only: keys arrive in order). */
typedef struct BaseCheck {
  Version *v;
  int fromLevel;
  int aPos[STRATA_MAX_LEVELS];
} BaseCheck;

static int keyMayExistBelow(BaseCheck *bc, const u8 *k, size_t n) {
  int level;
  for (level = bc->fromLevel; level < STRATA_MAX_LEVELS; level++) {
    FileMeta **a = bc->v->aFile[level];
    int nf = bc->v->nFile[level];
    while (bc->aPos[level] < nf) {
      const FileMeta *f = a[bc->aPos[level]];
      if (strataUkeyCompare(k, n, f->largest.a, f->largest.n - 8) <= 0) {
        if (strataUkeyCompare(k, n, f->smallest.a, f->smallest.n - 8) >= 0) return 1;
        break;
      }
      bc->aPos[level]++;
    }
  }
  return 0;
}

static int openTableNoFill(void *pCtx, FileMeta *f, StrataIter **ppIter) {
  return strataDbTableIter((strata *)pCtx, f, 0, ppIter);
}

/* Merge the entries of c's inputs with user keys in [pLo, pHi) (NULL: no
** bound) into new tables, added to e; *pnOut is the bytes written. On
** failure the tables this call finished are still in e (the caller deletes
** them). db->mu NOT held. */
static int mergeRange(strata *db, Compaction *c, Version *v, u64 oldestSnap, const StrataBuf *pLo,
                      const StrataBuf *pHi, VersionEdit *e, u64 *pnOut) {
  StrataIter **apChild = NULL, *it = NULL;
  int nChild = 0, i, rc = STRATA_OK;
  CompactOut o;
  BaseCheck bc;
  StrataBuf curUkey = {0};
  int bHaveCur = 0;
  u64 lastSeqForKey = 0;
  u64 nSince = 0;

  memset(&o, 0, sizeof(o));
  memset(&bc, 0, sizeof(bc));
  o.db = db;
  o.c = c;
  o.e = e;
  if (c->level + 2 < STRATA_MAX_LEVELS) {
    o.aGp = v->aFile[c->level + 2];
    o.nGp = v->nFile[c->level + 2];
  }
  bc.v = v;
  bc.fromLevel = c->level + 2;

  apChild = strataMalloc(sizeof(StrataIter *) * (size_t)(c->nIn[0] + 1));
  if (!apChild) return strataErr(STRATA_NOMEM, "out of memory");
  if (c->level == 0) {
    for (i = 0; i < c->nIn[0] && rc == STRATA_OK; i++) {
      rc = strataDbTableIter(db, c->apIn[0][i], 0, &apChild[nChild]);
      if (rc == STRATA_OK) nChild++;
    }
  } else if (c->nIn[0] > 0) {
    rc = strataLevelIterNew(c->apIn[0], c->nIn[0], openTableNoFill, db, &apChild[nChild]);
    if (rc == STRATA_OK) nChild++;
  }
  if (rc == STRATA_OK && c->nIn[1] > 0) {
    rc = strataLevelIterNew(c->apIn[1], c->nIn[1], openTableNoFill, db, &apChild[nChild]);
    if (rc == STRATA_OK) nChild++;
  }
  if (rc == STRATA_OK) {
    rc = strataMergeIterNew(apChild, nChild, &it);
  } else {
    for (i = 0; i < nChild; i++) strataIterClose(apChild[i]);
  }
  strataFreeMem(apChild);
  if (rc) return rc;

  if (pLo) {
    /* The newest version of the first user key >= pLo sorts first. */
    rc = strataIkeyBuild(&curUkey, pLo->a, pLo->n, STRATA_MAX_SEQ, STRATA_TYPE_VALUE);
    if (rc == STRATA_OK) it->pMethods->xSeek(it, curUkey.a, curUkey.n);
  } else {
    it->pMethods->xSeekFirst(it);
  }
  for (; rc == STRATA_OK && it->bValid; it->pMethods->xNext(it)) {
    const u8 *k = it->pKey;
    size_t nU = it->nKey - 8;
    u64 trailer = strataGet64(k + nU), seq = trailer >> 8;
    int type = (int)(trailer & 0xff), bDrop = 0;

    /* Let a waiting flush go first. */
    if ((++nSince & 1023) == 0 && atomic_load_explicit(&db->bImmPending, memory_order_relaxed)) {
      pthread_mutex_lock(&db->mu);
      strataDbFlushPending(db);
      pthread_mutex_unlock(&db->mu);
    }
    if (!bHaveCur || strataUkeyCompare(k, nU, curUkey.a, curUkey.n) != 0) {
      /* A new user key: the only place an output may be cut. */
      if (pHi && strataUkeyCompare(k, nU, pHi->a, pHi->n) >= 0) break;
      if ((rc = strataBufSetFast(&curUkey, k, nU)) != STRATA_OK) break;
      bHaveCur = 1;
      lastSeqForKey = STRATA_MAX_SEQ + 1;
      if (shouldCut(&o, it->pKey, it->nKey)) rc = outFinish(&o);
      if (rc) break;
    }
    if (lastSeqForKey <= oldestSnap) {
      bDrop = 1; /* a newer version is visible to every reader */
    } else if (type == STRATA_TYPE_DELETE && seq <= oldestSnap && !keyMayExistBelow(&bc, k, nU)) {
      bDrop = 1; /* nothing below for the tombstone to hide */
    }
    lastSeqForKey = seq;
    if (bDrop) continue;
    if (!o.b) {
      rc = outStart(&o);
      if (rc) break;
    }
    rc = strataSstBuilderAdd(o.b, it->pKey, it->nKey, it->pVal, it->nVal);
  }
  if (rc == STRATA_OK && it->rc) rc = it->rc;
  strataIterClose(it);
  if (rc == STRATA_OK) rc = outFinish(&o);
  if (rc && o.b) {
    strataSstBuilderAbandon(o.b);
    o.b = NULL;
  }
  strataFreeMem(o.zPath);
  strataBufFree(&curUkey);
  *pnOut = o.nBytesOut;
  return rc;
}

/* SUBCOMPACTIONS
** A large compaction with several lower-level inputs is split at the
** smallest key of its middle lower input into two halves merged at once,
** the upper half by a helper thread: at the end of a bulk write, and while
** writers are stalled, the background has both cores to itself. The halves
** hold disjoint user keys (every version of a key in the same half), so
** their outputs do not overlap and each half's garbage collection decides
** exactly as one merge would. */
#define SUBCOMPACT_MIN_FILES 8 /* of target_file_size, input bytes to split */

typedef struct SubJob {
  strata *db;
  Compaction *c;
  Version *v;
  u64 oldestSnap;
  const StrataBuf *pLo;
  VersionEdit e;
  u64 nOut;
  int rc;
  char zErr[200];
} SubJob;

static void *subMain(void *pArg) {
  SubJob *j = pArg;
  j->rc = mergeRange(j->db, j->c, j->v, j->oldestSnap, j->pLo, NULL, &j->e, &j->nOut);
  if (j->rc) snprintf(j->zErr, sizeof(j->zErr), "%s", strataErrMsgGet());
  return NULL;
}

/* Delete the tables e added: no version refers to them. */
static void deleteOutputs(strata *db, VersionEdit *e) {
  int i;
  for (i = 0; i < e->nAdd; i++) {
    char *z = strataFileName(db->zDir, STRATA_FILE_SST, e->aAdd[i].pMeta->number);
    e->aAdd[i].pMeta->xObsolete = NULL;
    if (z) db->env->xDelete(db->env, z);
    strataFreeMem(z);
  }
}

/* Merge the inputs of c into new tables; fill e. db->mu NOT held. */
static int compactMerge(strata *db, Compaction *c, Version *v, u64 oldestSnap, VersionEdit *e) {
  SubJob sub;
  pthread_t th;
  int rc, rcSub = STRATA_OK, i, bSplit;
  u64 nOut = 0;
  memset(&sub, 0, sizeof(sub));
  strataEditInit(&sub.e);
  bSplit = db->opts.background_threads > 1 && c->nIn[1] >= 2 &&
           c->nBytesIn >= SUBCOMPACT_MIN_FILES * (u64)db->opts.target_file_size;
  if (bSplit) {
    StrataBuf *pMid = &c->apIn[1][c->nIn[1] / 2]->smallest;
    sub.db = db;
    sub.c = c;
    sub.v = v;
    sub.oldestSnap = oldestSnap;
    sub.pLo = &c->split;
    rc = strataBufSet(&c->split, pMid->a, pMid->n - 8);
    /* If no thread can be had, one merge does it all. */
    if (rc || pthread_create(&th, NULL, subMain, &sub) != 0) bSplit = 0;
  }
  rc = mergeRange(db, c, v, oldestSnap, NULL, bSplit ? &c->split : NULL, e, &nOut);
  if (bSplit) {
    pthread_join(th, NULL);
    nOut += sub.nOut;
    rcSub = sub.rc;
    for (i = 0; i < sub.e.nAdd && rc == STRATA_OK; i++) {
      rc = strataEditAddFile(e, sub.e.aAdd[i].level, sub.e.aAdd[i].pMeta);
    }
    if (rc == STRATA_OK && rcSub) rc = strataErr(rcSub, "%s", sub.zErr);
  }
  if (rc == STRATA_OK) rc = db->env->xSyncDir(db->env, db->zDir);
  if (rc) {
    deleteOutputs(db, e);
    deleteOutputs(db, &sub.e);
  }
  strataEditClear(&sub.e);
  pthread_mutex_lock(&db->mu);
  db->stats.compaction_bytes_read += c->nBytesIn;
  db->stats.compaction_bytes_written += nOut;
  db->stats.level_read_bytes[c->level + 1] += c->nBytesIn;
  db->stats.level_written_bytes[c->level + 1] += nOut;
  pthread_mutex_unlock(&db->mu);
  return rc;
}

static int cmpFileSmallest(const void *a, const void *b) {
  const FileMeta *x = *(FileMeta *const *)a, *y = *(FileMeta *const *)b;
  return strataIkeyCompare(x->smallest.a, x->smallest.n, y->smallest.a, y->smallest.n);
}

/* 1 if no two inputs of the upper level share a user key. */
static int inputsDisjoint(Compaction *c) {
  FileMeta **a;
  int i, bOk = 1;
  if (c->nIn[0] <= 1) return 1;
  a = strataMalloc(sizeof(FileMeta *) * (size_t)c->nIn[0]);
  if (!a) return 0;
  memcpy(a, c->apIn[0], sizeof(FileMeta *) * (size_t)c->nIn[0]);
  qsort(a, (size_t)c->nIn[0], sizeof(FileMeta *), cmpFileSmallest);
  for (i = 1; i < c->nIn[0] && bOk; i++) {
    if (ukeyCmp(&a[i - 1]->largest, &a[i]->smallest) >= 0) bOk = 0;
  }
  strataFreeMem(a);
  return bOk;
}

/* Mark (bOn = 1) or unmark the inputs of c as being compacted. db->mu held. */
static void setCompacting(Compaction *c, int bOn) {
  int i, j;
  for (j = 0; j < 2; j++) {
    for (i = 0; i < c->nIn[j]; i++) c->apIn[j][i]->bCompacting = bOn;
  }
}

/* Run compaction c. db->mu held on entry and exit; released while merging. */
static int runCompaction(strata *db, Compaction *c) {
  VersionEdit e;
  Version *v = db->vs->pCurrent;
  u64 t0 = strataNowMicros();
  int i, j, rc = STRATA_OK, bMarked = 0;
  strataEditInit(&e);
  if (c->nIn[0] == 0) return STRATA_OK;
  for (j = 0; j < 2; j++) {
    for (i = 0; i < c->nIn[j] && rc == STRATA_OK; i++) rc = strataEditDelFile(&e, c->level + j, c->apIn[j][i]->number);
  }
  if (rc == STRATA_OK && c->nIn[1] == 0 && inputsDisjoint(c)) {
    /* Trivial move: nothing below to merge with, and (for L0) no two inputs
    ** share a user key, as after sequential writes. */
    for (i = 0; i < c->nIn[0] && rc == STRATA_OK; i++) {
      rc = strataEditAddFile(&e, c->level + 1, c->apIn[0][i]);
    }
    c->bMoved = 1;
  } else if (rc == STRATA_OK) {
    u64 oldest = strataDbOldestSnapshot(db);
    strataVersionRef(v);
    setCompacting(c, 1);
    db->nCompacting++;
    pthread_mutex_unlock(&db->mu);
    rc = compactMerge(db, c, v, oldest, &e);
    pthread_mutex_lock(&db->mu);
    bMarked = 1;
    strataVersionUnref(v);
  }
  if (rc == STRATA_OK) {
    /* The manifest write releases db->mu: a trivial move's inputs, too,
    ** must not be picked meanwhile, and the compaction still counts as
    ** running (strata_compact_range and strata_wait_idle wait for it). */
    if (!bMarked) {
      setCompacting(c, 1);
      db->nCompacting++;
      bMarked = 1;
    }
    rc = strataVersionSetLogAndApply(db->vs, &e, &db->mu);
    if (rc == STRATA_OK) strataCompactUpdateDebt(db);
    /* After a failed manifest write the outputs stay: the edit may be on
    ** disk, and the next open deletes whatever no version holds. */
  }
  /* Installed or failed: either way the inputs are free to be picked (the
  ** ones installed are no longer in the current version). */
  if (bMarked) {
    setCompacting(c, 0);
    db->nCompacting--;
  }
  if (rc == STRATA_OK) {
    db->stats.compactions++;
    db->stats.compaction_micros += strataNowMicros() - t0;
  }
  strataEditClear(&e);
  pthread_cond_broadcast(&db->doneCv);
  return rc;
}

void strataCompactRun(strata *db) {
  Compaction c;
  int level = db->iCompactLevel, rc, bSeek = db->bSeekPicked;
  if (level < 0 || level >= STRATA_MAX_LEVELS - 1) return;
  rc = setupInputs(db, &c, level, NULL, 0, NULL, 0, 1, bSeek && level > 0 ? db->pSeekFile : NULL);
  if (bSeek) {
    /* Taken: later seeks may name the next file. */
    strataCompactSeekClear(db);
    db->stats.seek_compactions++;
  }
  if (rc == STRATA_OK) {
    rc = runCompaction(db, &c);
    compactionFree(&c);
  }
  if (rc) {
    db->bgError = db->bgError ? db->bgError : rc;
    snprintf(db->zBgError, sizeof(db->zBgError), "compaction: %s", strataErrMsgGet());
    pthread_cond_broadcast(&db->doneCv);
  }
}

int strata_compact_range(strata *db, const void *lo, size_t nLo, const void *hi, size_t nHi) {
  int rc, level, maxLevel = 0;
  if (!db) return strataErr(STRATA_MISUSE, "strata_compact_range: NULL database");
  rc = strata_flush(db);
  if (rc) return rc;
  pthread_mutex_lock(&db->mu);
  /* Wait for background compactions to finish, and keep new ones out. */
  while (db->nCompacting > 0 || db->bManualCompaction) pthread_cond_wait(&db->doneCv, &db->mu);
  db->bManualCompaction = 1;
  for (level = 1; level < STRATA_MAX_LEVELS; level++) {
    if (db->vs->pCurrent->nFile[level] > 0) maxLevel = level;
  }
  if (maxLevel == 0) maxLevel = 1;
  for (level = 0; level < maxLevel && rc == STRATA_OK; level++) {
    Compaction c;
    rc = setupInputs(db, &c, level, lo, lo ? nLo : 0, hi, hi ? nHi : 0, 0, NULL);
    if (rc) break;
    if (c.nIn[0] > 0) rc = runCompaction(db, &c);
    compactionFree(&c);
  }
  if (rc && db->bgError == STRATA_OK) {
    db->bgError = rc;
    snprintf(db->zBgError, sizeof(db->zBgError), "compaction: %s", strataErrMsgGet());
  }
  db->bManualCompaction = 0;
  pthread_cond_broadcast(&db->doneCv);
  strataDbScheduleWork(db);
  pthread_mutex_unlock(&db->mu);
  return rc;
}

/* CONSISTENCY CHECK */

static int checkFile(strata *db, int level, FileMeta *f) {
  StrataIter *it = NULL;
  StrataBuf prev = {0};
  u64 n = 0;
  int rc = strataDbTableIter(db, f, 0, &it);
  if (rc) return rc;
  for (it->pMethods->xSeekFirst(it); it->bValid && rc == STRATA_OK; it->pMethods->xNext(it)) {
    u64 seq = strataIkeySeq(it->pKey, it->nKey);
    if (n == 0 && strataIkeyCompare(it->pKey, it->nKey, f->smallest.a, f->smallest.n) != 0) {
      rc = strataErr(STRATA_CORRUPT, "L%d file %llu: first key is not its smallest", level,
                     (unsigned long long)f->number);
    } else if (n > 0 && strataIkeyCompare(prev.a, prev.n, it->pKey, it->nKey) >= 0) {
      rc = strataErr(STRATA_CORRUPT, "L%d file %llu: keys out of order", level,
                     (unsigned long long)f->number);
    } else if (seq < f->minSeq || seq > f->maxSeq) {
      rc = strataErr(STRATA_CORRUPT, "L%d file %llu: sequence %llu outside [%llu, %llu]", level,
                     (unsigned long long)f->number, (unsigned long long)seq,
                     (unsigned long long)f->minSeq, (unsigned long long)f->maxSeq);
    }
    if (rc == STRATA_OK) rc = strataBufSet(&prev, it->pKey, it->nKey);
    n++;
  }
  if (rc == STRATA_OK && it->rc) rc = it->rc;
  if (rc == STRATA_OK && (n != f->nEntries ||
                          strataIkeyCompare(prev.a, prev.n, f->largest.a, f->largest.n) != 0)) {
    rc = strataErr(STRATA_CORRUPT, "L%d file %llu: %llu entries or last key differ from the manifest",
                   level, (unsigned long long)f->number, (unsigned long long)n);
  }
  strataIterClose(it);
  strataBufFree(&prev);
  return rc;
}

int strataDbCheck(strata *db) {
  Version *v;
  int level, i, rc;
  pthread_mutex_lock(&db->mu);
  v = db->vs->pCurrent;
  strataVersionRef(v);
  pthread_mutex_unlock(&db->mu);
  rc = strataVersionCheck(v);
  for (i = 1; rc == STRATA_OK && i < v->nFile[0]; i++) {
    if (v->aFile[0][i]->minSeq <= v->aFile[0][i - 1]->maxSeq &&
        v->aFile[0][i]->minSeq != 0) {
      rc = strataErr(STRATA_CORRUPT, "L0 files %llu and %llu: sequence ranges out of order",
                     (unsigned long long)v->aFile[0][i - 1]->number,
                     (unsigned long long)v->aFile[0][i]->number);
    }
  }
  for (level = 0; rc == STRATA_OK && level < STRATA_MAX_LEVELS; level++) {
    for (i = 0; rc == STRATA_OK && i < v->nFile[level]; i++) rc = checkFile(db, level, v->aFile[level][i]);
  }
  strataVersionUnref(v);
  return rc;
}
