/*
** test_fault.c -- fault injection: every I/O operation of a workload fails
** in turn (EIO, ENOSPC, a short write, a failed fsync, a simulated crash),
** and every allocation fails in turn; the engine must report the right
** error, never crash, and lose nothing it acknowledged.
**
** THE WORKLOAD
** Two phases on a fresh database, through the fault env (sync=full, 8 KiB
** memtables so background flushes happen in the middle):
**   A: open (create), puts, batches, a get, strata_flush, more puts,
**      a full scan, close;
**   B: open (recovery), gets, batches, puts, deletes, strata_flush,
**      strata_compact_range over everything, a scan, close.
** Each write is logged as a commit with its outcome: ACKED (returned OK),
** REJECTED (returned READONLY: refused before anything was written) or
** UNCERTAIN (failed with IOERR/FULL/NOMEM: it may or may not have reached
** the log). Keys are "kNN" (NN < 64); a value encodes its commit and
** position, so every value written is distinct.
**
** THE SWEEP
** For each fault kind, arm it at the nth matching operation, n = 1, 2, ...
** until a whole workload runs without the fault firing. For each n:
** - every call returns OK or an allowed error: STRATA_FULL for ENOSPC,
**   STRATA_IOERR for the others (a crash: IOERR from then on), or
**   STRATA_READONLY once the fault has fired (writes after a failure), and
**   its message names the injected failure;
** - every read that succeeds returns a state the commits explain;
** - then, with the fault disarmed, the database opens and holds exactly the
**   acknowledged commits plus, for each uncertain one, all of it or none of
**   it (batches are atomic); and it accepts writes again.
** A state "explained by the commits" is the result of applying the ACKED
** commits and any subset of the UNCERTAIN ones, in order.
**
** SPEED
** The base env of the sweep turns fsync into a no-op (a fault test checks
** error handling, not durability), so the thousands of runs take seconds.
** The fault env is layered on it and still counts (and fails) the syncs.
**
** ALLOCATION FAILURES
** strataTestFailMalloc(n, 0) for n = 1, 2, ... over open / put / batch /
** get / iterate / flush / close: calls return OK, NOMEM or (after a failed
** write) READONLY; reads return correct data or NOMEM; the database then
** reopens with everything acknowledged. The sweep ends at the first n past
** the workload's last allocation (found first with a sticky failure).
*/
#include "strataInt.h"
#include "testutil.h"

#include <stdarg.h>

#define NKEYSPACE 64
#define MAX_COMMIT 128
#define MAX_SUB 8
#define MAX_UNCERTAIN 6

/* THE NO-SYNC BASE ENV: the POSIX env with fsync turned into a no-op. */

typedef struct NsFile {
  StrataFile base;
  StrataFile *pReal;
} NsFile;

static int nsRead(StrataFile *f, void *p, size_t n, u64 off, size_t *pn) {
  StrataFile *r = ((NsFile *)f)->pReal;
  return r->pMethods->xRead(r, p, n, off, pn);
}
static int nsAppend(StrataFile *f, const void *p, size_t n) {
  StrataFile *r = ((NsFile *)f)->pReal;
  return r->pMethods->xAppend(r, p, n);
}
static int nsSync(StrataFile *f) {
  return STRATA_OK;
}
static int nsSize(StrataFile *f, u64 *p) {
  StrataFile *r = ((NsFile *)f)->pReal;
  return r->pMethods->xSize(r, p);
}
static int nsTruncate(StrataFile *f, u64 n) {
  StrataFile *r = ((NsFile *)f)->pReal;
  return r->pMethods->xTruncate(r, n);
}
static void nsClose(StrataFile *f) {
  StrataFile *r = ((NsFile *)f)->pReal;
  r->pMethods->xClose(r);
  free(f);
}
static const StrataFileMethods nsMethods = {nsRead, nsAppend, nsSync, nsSize, nsTruncate, nsClose,
                                            NULL};

static int nsWrap(int rc, StrataFile *pReal, StrataFile **pp) {
  NsFile *p;
  *pp = NULL;
  if (rc) return rc;
  p = malloc(sizeof(*p));
  if (!p) {
    pReal->pMethods->xClose(pReal);
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  memset(p, 0, sizeof(*p));
  p->base.pMethods = &nsMethods;
  p->pReal = pReal;
  *pp = &p->base;
  return STRATA_OK;
}
static int nsOpen(strata_env *e, const char *z, int flags, StrataFile **pp) {
  StrataFile *r = NULL;
  int rc = strataEnvDefault()->xOpen(strataEnvDefault(), z, flags, &r);
  return nsWrap(rc, r, pp);
}
static int nsLock(strata_env *e, const char *z, StrataFile **pp) {
  StrataFile *r = NULL;
  int rc = strataEnvDefault()->xLock(strataEnvDefault(), z, &r);
  return nsWrap(rc, r, pp);
}
static int nsDelete(strata_env *e, const char *z) {
  return strataEnvDefault()->xDelete(strataEnvDefault(), z);
}
static int nsRename(strata_env *e, const char *a, const char *b) {
  return strataEnvDefault()->xRename(strataEnvDefault(), a, b);
}
static int nsMkdir(strata_env *e, const char *z) {
  return strataEnvDefault()->xMkdir(strataEnvDefault(), z);
}
static int nsRmdir(strata_env *e, const char *z) {
  return strataEnvDefault()->xRmdir(strataEnvDefault(), z);
}
static int nsSyncDir(strata_env *e, const char *z) {
  return STRATA_OK;
}
static int nsExists(strata_env *e, const char *z) {
  return strataEnvDefault()->xExists(strataEnvDefault(), z);
}
static int nsListDir(strata_env *e, const char *z, char ***paz, int *pn) {
  return strataEnvDefault()->xListDir(strataEnvDefault(), z, paz, pn);
}
static strata_env nsEnv = {nsOpen,    nsDelete, nsRename,  nsMkdir, nsRmdir,
                           nsSyncDir, nsExists, nsListDir, nsLock,  NULL};

/* COMMITS AND EXPECTED STATES */

#define ACKED 1
#define REJECTED 2
#define UNCERTAIN 3

typedef struct Sub {
  int key;  /* 0..NKEYSPACE-1 */
  int bPut; /* 0: delete */
} Sub;

typedef struct Commit {
  int nSub;
  Sub aSub[MAX_SUB];
  int status;
} Commit;

typedef struct Run {
  const char *zKind;
  int kind; /* STRATA_FAULT_*, or 0 for allocation failures */
  int n;    /* the fault's position */
  strata_env *pFault;
  const char *zDir;
  int nCommit;
  Commit aCommit[MAX_COMMIT];
  int bBad;  /* a check failed in this run */
  int nCall; /* calls made */
  int nErr;  /* calls that failed */
  int bReadonlySeen;
} Run;

/* The value of sub-op i of commit c (key k). */
static size_t value_of(char *z, size_t nz, int c, int i, int k) {
  size_t n = (size_t)snprintf(z, nz, "k%02d=c%d.%d:", k, c, i),
         len = 150 + (size_t)((c * 37 + i * 11) % 250);
  while (n < len && n < nz) {
    z[n] = (char)('a' + (n + (size_t)c) % 26);
    n++;
  }
  return n;
}

static void key_of(char *z, size_t nz, int k) {
  snprintf(z, nz, "k%02d", k);
}

/* The state after the commits, with uncertain commit j (in order of
** appearance) applied iff bit j of mask is set. aState[k] = (c << 8 | i) of
** the sub-op that wrote key k last, or -1 if absent. */
static void state_of(const Run *r, int nCommit, unsigned mask, int *aState) {
  int c, i, j = 0;
  for (i = 0; i < NKEYSPACE; i++) aState[i] = -1;
  for (c = 0; c < nCommit; c++) {
    const Commit *p = &r->aCommit[c];
    if (p->status == REJECTED) continue;
    if (p->status == UNCERTAIN) {
      int bApply = (mask >> j) & 1;
      j++;
      if (!bApply) continue;
    }
    for (i = 0; i < p->nSub; i++) aState[p->aSub[i].key] = p->aSub[i].bPut ? (c << 8 | i) : -1;
  }
}

static int n_uncertain(const Run *r) {
  int c, n = 0;
  for (c = 0; c < r->nCommit; c++) n += (r->aCommit[c].status == UNCERTAIN);
  return n;
}

static void run_fail(Run *r, const char *zFmt, ...) {
  va_list ap;
  r->bBad = 1;
  tu_curFail++;
  if (tu_curFail > 10) return;
  fprintf(stderr, "  %s fault at op %d: ", r->zKind, r->n);
  va_start(ap, zFmt);
  vfprintf(stderr, zFmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
}

/* Is rc an allowed result for a call made when the fault had (bFiredBefore)
** or had not yet fired? The message must name the injected failure. */
static int check_rc(Run *r, int rc, int bFiredBefore, const char *zCall) {
  int bFired = r->pFault ? strataFaultEnvFired(r->pFault) : 1;
  const char *zMsg = rc ? strata_errmsg() : "";
  int bOk;
  r->nCall++;
  if (getenv("STRATA_FAULT_TRACE")) {
    fprintf(stderr, "    %s@%d: %s -> %d%s %s\n", r->zKind, r->n, zCall, rc,
            bFired ? " (fired)" : "", zMsg);
  }
  if (rc == STRATA_OK) return 1;
  r->nErr++;
  if (r->kind == 0) {
    /* Allocation failures. */
    bOk = rc == STRATA_NOMEM || rc == STRATA_READONLY;
    if (rc == STRATA_READONLY) r->bReadonlySeen = 1;
  } else {
    if (rc == STRATA_READONLY) {
      bOk = bFired && strstr(zMsg, "injected") != NULL;
      r->bReadonlySeen = 1;
    } else if (rc == STRATA_FULL) {
      bOk = bFired && r->kind == STRATA_FAULT_ENOSPC && strstr(zMsg, "injected") != NULL;
    } else if (rc == STRATA_IOERR) {
      bOk = bFired && r->kind != STRATA_FAULT_ENOSPC && strstr(zMsg, "injected") != NULL;
    } else {
      bOk = 0;
    }
  }
  (void)bFiredBefore;
  if (!bOk) run_fail(r, "%s returned %d (%s): %s", zCall, rc, strata_errstr(rc), zMsg);
  return 0;
}

/* Does the db (read at its latest state) agree with some state the commits
** explain? Reads every key with strata_get (bGet) or a full scan. Returns OK,
** or the read error (checked by the caller), or -1 after a mismatch
** (reported). */
static int check_state(Run *r, strata *db, int bGet, int bFinal) {
  int nU = n_uncertain(r), aState[NKEYSPACE], aSeen[NKEYSPACE];
  unsigned mask, nMask;
  int k, rc = STRATA_OK;
  char zKey[16], zVal[512], zWant[512];
  strata_value val = {0};
  strata_iter *it = NULL;
  /* What the database holds: aSeen[k] = (c << 8 | i) decoded from the value. */
  for (k = 0; k < NKEYSPACE; k++) aSeen[k] = -1;
  if (bGet) {
    for (k = 0; k < NKEYSPACE && rc == STRATA_OK; k++) {
      key_of(zKey, sizeof(zKey), k);
      rc = strata_get(db, NULL, zKey, strlen(zKey), &val);
      if (rc == STRATA_NOTFOUND) {
        rc = STRATA_OK;
      } else if (rc == STRATA_OK) {
        int kk, c, i;
        if (val.n < sizeof(zVal) &&
            (memcpy(zVal, val.p, val.n), zVal[val.n] = 0,
             sscanf(zVal, "k%d=c%d.%d:", &kk, &c, &i) == 3) &&
            kk == k && c >= 0 && c < r->nCommit && i >= 0 && i < MAX_SUB &&
            value_of(zWant, sizeof(zWant), c, i, k) == val.n && memcmp(zWant, val.p, val.n) == 0) {
          aSeen[k] = c << 8 | i;
        } else {
          run_fail(r, "get %s: a value no commit wrote (%zu bytes)", zKey, val.n);
          rc = -1;
        }
      }
    }
  } else {
    rc = strata_iter_new(db, NULL, &it);
    if (rc == STRATA_OK) {
      for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) {
        size_t nK, nV;
        const char *pK = strata_iter_key(it, &nK);
        const char *pV = strata_iter_value(it, &nV);
        int kk, kv, c, i;
        if (nK != 3 || (memcpy(zKey, pK, 3), zKey[3] = 0, sscanf(zKey, "k%2d", &kk) != 1) ||
            kk < 0 || kk >= NKEYSPACE) {
          run_fail(r, "scan: a key no commit wrote (%.*s)", (int)nK, pK);
          rc = -1;
          break;
        }
        if (nV < sizeof(zVal) &&
            (memcpy(zVal, pV, nV), zVal[nV] = 0, sscanf(zVal, "k%d=c%d.%d:", &kv, &c, &i) == 3) &&
            kv == kk && c >= 0 && c < r->nCommit && i >= 0 && i < MAX_SUB &&
            value_of(zWant, sizeof(zWant), c, i, kk) == nV && memcmp(zWant, pV, nV) == 0) {
          aSeen[kk] = c << 8 | i;
        } else {
          run_fail(r, "scan: key %.*s has a value no commit wrote", (int)nK, pK);
          rc = -1;
          break;
        }
      }
      if (rc == STRATA_OK) rc = strata_iter_status(it);
      strata_iter_free(it);
    }
  }
  strata_value_free(&val);
  if (rc) return rc;
  if (nU > MAX_UNCERTAIN) nU = MAX_UNCERTAIN;
  nMask = 1u << nU;
  for (mask = 0; mask < nMask; mask++) {
    state_of(r, r->nCommit, mask, aState);
    if (memcmp(aState, aSeen, sizeof(aState)) == 0) return STRATA_OK;
  }
  /* Report the first difference from the all-acknowledged state. */
  state_of(r, r->nCommit, 0, aState);
  for (k = 0; k < NKEYSPACE; k++) {
    if (aState[k] != aSeen[k]) {
      run_fail(r, "%s%s: k%02d holds commit %d.%d, expected %d.%d (%d uncertain commits)",
               bFinal ? "after recovery, " : "", bGet ? "get" : "scan", k,
               aSeen[k] < 0 ? -1 : aSeen[k] >> 8, aSeen[k] < 0 ? -1 : aSeen[k] & 0xff,
               aState[k] < 0 ? -1 : aState[k] >> 8, aState[k] < 0 ? -1 : aState[k] & 0xff,
               n_uncertain(r));
      break;
    }
  }
  return -1;
}

/* A commit of nSub sub-ops starting at key k0 with stride; bDel: the last
** sub-op is a delete. Logged with its outcome. */
static void do_commit(Run *r, strata *db, strata_batch *b, int nSub, int k0, int stride, int bDel) {
  Commit *p;
  char zKey[16], zVal[512];
  int i, rc, bFiredBefore = r->pFault ? strataFaultEnvFired(r->pFault) : 0;
  if (r->nCommit == MAX_COMMIT) return;
  p = &r->aCommit[r->nCommit];
  memset(p, 0, sizeof(*p));
  p->nSub = nSub;
  for (i = 0; i < nSub; i++) {
    p->aSub[i].key = (k0 + i * stride) % NKEYSPACE;
    p->aSub[i].bPut = !(bDel && i == nSub - 1);
  }
  if (nSub == 1) {
    key_of(zKey, sizeof(zKey), p->aSub[0].key);
    if (p->aSub[0].bPut) {
      size_t n = value_of(zVal, sizeof(zVal), r->nCommit, 0, p->aSub[0].key);
      rc = strata_put(db, zKey, strlen(zKey), zVal, n);
    } else {
      rc = strata_delete(db, zKey, strlen(zKey));
    }
  } else {
    strata_batch_clear(b);
    rc = STRATA_OK;
    for (i = 0; i < nSub && rc == STRATA_OK; i++) {
      key_of(zKey, sizeof(zKey), p->aSub[i].key);
      if (p->aSub[i].bPut) {
        size_t n = value_of(zVal, sizeof(zVal), r->nCommit, i, p->aSub[i].key);
        rc = strata_batch_put(b, zKey, strlen(zKey), zVal, n);
      } else {
        rc = strata_batch_delete(b, zKey, strlen(zKey));
      }
    }
    if (rc) {
      /* Building a batch only allocates: NOMEM, and nothing was written. */
      check_rc(r, rc, bFiredBefore, "batch_put");
      return;
    }
    rc = strata_write(db, b);
  }
  if (rc == STRATA_OK) {
    p->status = ACKED;
  } else if (rc == STRATA_READONLY) {
    p->status = REJECTED;
  } else {
    p->status = UNCERTAIN;
  }
  r->nCommit++;
  check_rc(r, rc, bFiredBefore, nSub == 1 ? (p->aSub[0].bPut ? "put" : "delete") : "write");
}

static int open_db(Run *r, strata_env *env, strata **pDb) {
  strata_options o;
  int bFired = r->pFault ? strataFaultEnvFired(r->pFault) : 0;
  int rc;
  strata_options_init(&o);
  o.env = env;
  o.sync = STRATA_SYNC_FULL;
  o.memtable_size = 8 * 1024;
  o.block_size = 512;
  o.disable_compaction = 1;
  rc = strata_open(r->zDir, &o, pDb);
  check_rc(r, rc, bFired, "open");
  return rc;
}

static void do_flush(Run *r, strata *db) {
  int bFired = r->pFault ? strataFaultEnvFired(r->pFault) : 0;
  check_rc(r, strata_flush(db), bFired, "flush");
}

/* Compact everything into one level: compaction's reads, table writes,
** manifest edit and deletions get their turn to fail. */
static void do_compact(Run *r, strata *db) {
  int bFired = r->pFault ? strataFaultEnvFired(r->pFault) : 0;
  check_rc(r, strata_compact_range(db, NULL, 0, NULL, 0), bFired, "compact_range");
}

static void do_read_check(Run *r, strata *db, int bGet) {
  int bFired = r->pFault ? strataFaultEnvFired(r->pFault) : 0;
  int rc = check_state(r, db, bGet, 0);
  if (rc != -1) check_rc(r, rc, bFired, bGet ? "get" : "scan");
}

static void do_close(Run *r, strata *db) {
  int bFired = r->pFault ? strataFaultEnvFired(r->pFault) : 0;
  check_rc(r, strata_close(db), bFired, "close");
}

/* The two-phase workload of the file header, through env. */
static void workload(Run *r, strata_env *env, strata_batch *b) {
  strata *db = NULL;
  int i;
  /* Phase A. */
  if (open_db(r, env, &db) == STRATA_OK) {
    for (i = 0; i < 12; i++) do_commit(r, db, b, 1, i * 5, 1, 0);
    for (i = 0; i < 3; i++) do_commit(r, db, b, 5, i * 7 + 1, 3, 1);
    do_read_check(r, db, 1);
    do_flush(r, db);
    for (i = 0; i < 12; i++) do_commit(r, db, b, 1, i * 3 + 2, 1, i % 4 == 3);
    do_read_check(r, db, 0);
    do_close(r, db);
    db = NULL;
  }
  /* Phase B: recovery, then more of everything. */
  if (open_db(r, env, &db) == STRATA_OK) {
    do_read_check(r, db, 1);
    for (i = 0; i < 2; i++) do_commit(r, db, b, 6, i * 11 + 4, 5, 1);
    for (i = 0; i < 8; i++) do_commit(r, db, b, 1, i * 9 + 1, 1, i % 3 == 2);
    do_flush(r, db);
    do_compact(r, db);
    do_commit(r, db, b, 4, 30, 2, 0);
    do_read_check(r, db, 0);
    do_close(r, db);
  }
}

/* After the workload: the database opens without faults, explains its
** contents by the commits (read both ways), and takes writes again. */
static void verify_after(Run *r) {
  strata *db = NULL;
  strata_options o;
  int rc;
  strata_options_init(&o);
  o.env = &nsEnv;
  o.sync = STRATA_SYNC_FULL;
  rc = strata_open(r->zDir, &o, &db);
  if (rc) {
    run_fail(r, "reopen without faults failed: rc=%d %s", rc, strata_errmsg());
    return;
  }
  rc = check_state(r, db, 0, 1);
  if (rc > 0) run_fail(r, "after recovery, scan failed: rc=%d %s", rc, strata_errmsg());
  if (rc == STRATA_OK) {
    rc = check_state(r, db, 1, 1);
    if (rc > 0) run_fail(r, "after recovery, get failed: rc=%d %s", rc, strata_errmsg());
  }
  rc = strata_put(db, "k00", 3, "after", 5);
  if (rc) run_fail(r, "after recovery, put failed: rc=%d %s", rc, strata_errmsg());
  rc = strata_close(db);
  if (rc) run_fail(r, "after recovery, close failed: rc=%d %s", rc, strata_errmsg());
}

/* Append n to the list of failing positions (the first few). */
static void note_failure(char *z, size_t nz, int *pnFailed, int n) {
  size_t len = strlen(z);
  (*pnFailed)++;
  if (*pnFailed <= 40 && len + 12 < nz) snprintf(z + len, nz - len, " %d", n);
  if (*pnFailed == 41 && len + 5 < nz) snprintf(z + len, nz - len, " ...");
}

typedef struct Kind {
  const char *zName;
  int kind;
  int opMask;
} Kind;

static const Kind aKind[] = {
    {"EIO", STRATA_FAULT_EIO, STRATA_FAULTOP_ALL},
    {"ENOSPC", STRATA_FAULT_ENOSPC, STRATA_FAULTOP_WRITE | STRATA_FAULTOP_META},
    {"SHORT", STRATA_FAULT_SHORT, STRATA_FAULTOP_WRITE},
    {"SYNC", STRATA_FAULT_SYNC, STRATA_FAULTOP_SYNC},
    {"CRASH", STRATA_FAULT_CRASH, STRATA_FAULTOP_ALL},
};

/* Sweep one kind over every operation. */
static void sweep(const Kind *k) {
  strata_env *pFault = strataFaultEnvNew(&nsEnv);
  char zDir[4096];
  int n, nMax = 5000, nRun = 0, nFiredErr = 0, nReadonly = 0, nUncertain = 0, bFired = 1;
  int nFailed = 0;
  char zFailed[400] = "";
  Run *r = malloc(sizeof(Run));
  strata_batch *b = NULL;
  CHECK(pFault != NULL && r != NULL && strata_batch_new(&b) == STRATA_OK);
  if (!pFault || !r || !b) return;
  memset(r, 0, sizeof(*r));
  snprintf(zDir, sizeof(zDir), "%s", test_dir(k->zName));
  n = getenv("STRATA_FAULT_FROM") ? atoi(getenv("STRATA_FAULT_FROM")) : 1;
  /* Under valgrind, a sample of the positions: every 7th, from a random start. */
  if (test_valgrind() && !getenv("STRATA_FAULT_FROM")) n = 1 + (int)(time(0) % 7);
  for (; n <= nMax && bFired; n += test_valgrind() ? 7 : 1) {
    memset(r, 0, sizeof(*r));
    r->zKind = k->zName;
    r->kind = k->kind;
    r->n = n;
    r->pFault = pFault;
    r->zDir = zDir;
    test_rmdir(zDir);
    strataFaultEnvArm(pFault, k->kind, k->opMask, n);
    workload(r, pFault, b);
    bFired = strataFaultEnvFired(pFault);
    strataFaultEnvDisarm(pFault);
    r->pFault = NULL;
    verify_after(r);
    nRun++;
    if (r->nErr) nFiredErr++;
    if (r->bReadonlySeen) nReadonly++;
    nUncertain += n_uncertain(r);
    if (r->bBad) note_failure(zFailed, sizeof(zFailed), &nFailed, n);
  }
  CHECK(!bFired); /* the sweep reached the end of the workload */
  printf(
      "#   %s: %d runs (the last fault at op %d fired nowhere), %d with failed calls, "
      "%d saw READONLY, %d uncertain commits\n",
      k->zName, nRun, r->n, nFiredErr, nReadonly, nUncertain);
  if (nFailed) {
    fprintf(stderr,
            "  %s: %d runs failed, with the fault at op%s (replay one with "
            "STRATA_FAULT_FROM=<op> STRATA_FAULT_TRACE=1)\n",
            k->zName, nFailed, zFailed);
  }
  test_rmdir(zDir);
  free(r);
  strata_batch_free(b);
  strataFaultEnvFree(pFault);
}

static void test_fault_eio(void) {
  sweep(&aKind[0]);
}
static void test_fault_enospc(void) {
  sweep(&aKind[1]);
}
static void test_fault_short_write(void) {
  sweep(&aKind[2]);
}
static void test_fault_sync(void) {
  sweep(&aKind[3]);
}
static void test_fault_crash(void) {
  sweep(&aKind[4]);
}

/* ALLOCATION FAILURES */

/* Does the workload finish with every call OK when allocations fail from
** the nth on (sticky)? Then n is past its last allocation. */
static int malloc_workload_clean(const char *zDir, int n, strata_batch *b) {
  Run *r = calloc(1, sizeof(Run));
  int bClean;
  r->zKind = "NOMEM(sticky)";
  r->n = n;
  r->zDir = zDir;
  test_rmdir(zDir);
  strataTestFailMalloc(n, 1);
  workload(r, &nsEnv, b);
  strataTestFailMalloc(0, 0);
  bClean = r->nErr == 0 && !r->bBad;
  free(r);
  return bClean;
}

static void test_fault_malloc(void) {
  char zDir[4096];
  int lo, hi, n, nRun = 0, nErrRuns = 0, step, nFailed = 0;
  char zFailed[400] = "";
  Run *r = malloc(sizeof(Run));
  strata_batch *b = NULL;
  if (!r || strata_batch_new(&b) != STRATA_OK) return;
  snprintf(zDir, sizeof(zDir), "%s", test_dir("nomem"));
  /* Find (about) the number of allocations of the workload: the smallest n
  ** where a sticky failure from the nth allocation on changes nothing. */
  hi = 64;
  while (!malloc_workload_clean(zDir, hi, b) && hi < (1 << 22)) hi *= 2;
  lo = hi / 2;
  while (lo + 1 < hi) {
    int mid = (lo + hi) / 2;
    if (malloc_workload_clean(zDir, mid, b)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  /* Every allocation up to there, once each (a sample beyond the first
  ** thousand unless STRATA_SOAK). */
  step = (!test_soak() && hi > 1500) ? hi / 1000 : 1;
  if (test_valgrind()) step = 7;
  n = getenv("STRATA_FAULT_FROM") ? atoi(getenv("STRATA_FAULT_FROM")) : 1;
  for (; n <= hi + 5; n += (n < 300 && !test_valgrind() ? 1 : step)) {
    memset(r, 0, sizeof(*r));
    r->zKind = "NOMEM";
    r->kind = 0;
    r->n = n;
    r->zDir = zDir;
    test_rmdir(zDir);
    strataTestFailMalloc(n, 0);
    workload(r, &nsEnv, b);
    strataTestFailMalloc(0, 0);
    verify_after(r);
    nRun++;
    if (r->nErr) nErrRuns++;
    if (r->bBad) note_failure(zFailed, sizeof(zFailed), &nFailed, n);
  }
  printf("#   NOMEM: the workload makes about %d allocations; %d runs, %d with failed calls\n", hi,
         nRun, nErrRuns);
  if (nFailed) {
    fprintf(stderr,
            "  NOMEM: %d runs failed, with allocation%s failing (replay one with "
            "STRATA_FAULT_FROM=<n> STRATA_FAULT_TRACE=1)\n",
            nFailed, zFailed);
  }
  CHECK(nErrRuns > 0);
  test_rmdir(zDir);
  free(r);
  strata_batch_free(b);
}

int main(void) {
  RUN(test_fault_eio);
  RUN(test_fault_enospc);
  RUN(test_fault_short_write);
  RUN(test_fault_sync);
  RUN(test_fault_crash);
  RUN(test_fault_malloc);
  return TEST_SUMMARY();
}
