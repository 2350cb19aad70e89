/*
** test_crash.c -- kill -9 crash test: a child process writes numbered
** batches and acknowledges each one through a pipe; the parent kills it
** with SIGKILL at a random moment, reopens the database and checks that
** exactly a prefix of the batches survived, each one whole.
**
** THE BATCHES
** Batch N (N = 1, 2, ...) holds K(N) = 1 + N % 5 puts "b<N>-k<i>" whose
** values encode N and i (some a few KiB, so memtables fill and flush during
** the run), deletes the keys of batch N - WINDOW (so deletions are
** crash-tested too and the database stays small), and sets the shared key
** "last" to N. After strata_write returns OK the child writes N to the
** pipe. Every FLUSH_EVERY batches it calls strata_flush (every third time
** strata_compact_range over everything instead), announcing it first, so
** the parent can aim kills at flushes and compactions. Background
** compaction runs throughout as well (small memtables and files).
**
** THE CHECK
** After the kill the parent opens the database itself. With H the value of
** "last" (0 if absent): H >= every acknowledged batch and H <= the last one
** acknowledged + 1 (the child has at most one batch in flight); batches
** H-WINDOW+1..H are present with exactly their keys and values; no other
** key exists (no batch after H, no partial batch, nothing deleted comes
** back). With sync=off a crash may lose acknowledged batches, so only the
** prefix and the atomicity are checked (H may be below the acknowledged).
** The next round goes on writing from H + 1 on the same database, so
** recovery is repeated on the result of earlier recoveries, and some kills
** land while the child is still opening (during recovery itself).
**
** ROUNDS
** Default: 60 kills with sync=full, 30 with sync=normal, 20 with sync=off.
** STRATA_SOAK: 500, 200 and 100.
*/
#include "strata.h"
#include "testutil.h"

#include <errno.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/wait.h>

#define WINDOW 150     /* batches kept alive: batch N deletes batch N-WINDOW */
#define FLUSH_EVERY 37 /* the child flushes after every this many batches */

/* Messages from the child (one write() each, so they arrive whole). */
#define MSG_ACK 1   /* batch v is committed */
#define MSG_FLUSH 2 /* about to call strata_flush */
#define MSG_ERROR 3 /* a call failed with rc v: the child exits */
#define MSG_OPEN 4  /* the database is open */

typedef struct Msg {
  int32_t type;
  int32_t rc;
  int64_t v;
} Msg;

static int nKeys(int64_t n) {
  return 1 + (int)(n % 5);
}

static void key_of(char *z, size_t nz, int64_t n, int i) {
  snprintf(z, nz, "b%08lld-k%d", (long long)n, i);
}

/* The value of key i of batch n, in buf; returns its length. */
static size_t value_of(unsigned char *buf, size_t nBuf, int64_t n, int i) {
  size_t len = 20 + (size_t)((n * 7919 + i * 131) % 300), j;
  int nHead;
  if ((n + i) % 23 == 0) len = 3000 + (size_t)(n % 1000);
  if (len > nBuf) len = nBuf;
  nHead = snprintf((char *)buf, nBuf, "v%lld.%d:", (long long)n, i);
  for (j = (size_t)nHead; j < len; j++) buf[j] = (unsigned char)('a' + (n + i + (int64_t)j) % 26);
  return len < (size_t)nHead ? (size_t)nHead : len;
}

static void set_options(strata_options *o, int sync) {
  strata_options_init(o);
  o->sync = sync;
  o->memtable_size = 32 * 1024;
  o->block_size = 1024;
  o->target_file_size = 64 * 1024;
  /* Compaction runs (at 4 L0 files), but writes never stop to wait for it. */
  o->l0_slowdown_trigger = 1000;
  o->l0_stop_trigger = 1000;
}

static void send_msg(int fd, int type, int rc, int64_t v) {
  Msg m;
  ssize_t w;
  m.type = type;
  m.rc = rc;
  m.v = v;
  do {
    w = write(fd, &m, sizeof(m));
  } while (w < 0 && errno == EINTR);
}

/* THE CHILD: write batches from nStart + 1 on, forever (until killed). */
static void child_main(const char *zDir, int sync, int64_t nStart, int fd) {
  strata_options o;
  strata *db = NULL;
  strata_batch *b = NULL;
  static unsigned char aVal[8192];
  int64_t n;
  int rc;
  set_options(&o, sync);
  rc = strata_open(zDir, &o, &db);
  if (rc) {
    send_msg(fd, MSG_ERROR, rc, 0);
    _exit(3);
  }
  send_msg(fd, MSG_OPEN, 0, 0);
  if (strata_batch_new(&b)) _exit(4);
  for (n = nStart + 1;; n++) {
    char zKey[64];
    int i;
    strata_batch_clear(b);
    for (i = 0; i < nKeys(n); i++) {
      size_t nVal = value_of(aVal, sizeof(aVal), n, i);
      key_of(zKey, sizeof(zKey), n, i);
      strata_batch_put(b, zKey, strlen(zKey), aVal, nVal);
    }
    if (n > WINDOW) {
      for (i = 0; i < nKeys(n - WINDOW); i++) {
        key_of(zKey, sizeof(zKey), n - WINDOW, i);
        strata_batch_delete(b, zKey, strlen(zKey));
      }
    }
    snprintf(zKey, sizeof(zKey), "%lld", (long long)n);
    strata_batch_put(b, "last", 4, zKey, strlen(zKey));
    rc = strata_write(db, b);
    if (rc) {
      send_msg(fd, MSG_ERROR, rc, n);
      _exit(5);
    }
    send_msg(fd, MSG_ACK, 0, n);
    if (n % FLUSH_EVERY == 0) {
      send_msg(fd, MSG_FLUSH, 0, n);
      /* Every third time a full compaction, so kills land inside one too. */
      rc = (n % (3 * FLUSH_EVERY) == 0) ? strata_compact_range(db, NULL, 0, NULL, 0) : strata_flush(db);
      if (rc) {
        send_msg(fd, MSG_ERROR, rc, n);
        _exit(6);
      }
    }
  }
}

/* THE PARENT */

typedef struct Round {
  int64_t nMaxAck; /* highest acknowledged batch, or -1 */
  int bOpened;     /* the child got its database open */
  int bFlushSeen;  /* a flush was announced */
  int childRc;     /* MSG_ERROR's rc, or 0 */
  int64_t nErrBatch;
} Round;

static void handle_msg(Round *r, const Msg *m) {
  switch (m->type) {
    case MSG_ACK:
      if (m->v > r->nMaxAck) r->nMaxAck = m->v;
      break;
    case MSG_FLUSH:
      r->bFlushSeen = 1;
      break;
    case MSG_OPEN:
      r->bOpened = 1;
      break;
    case MSG_ERROR:
      r->childRc = m->rc;
      r->nErrBatch = m->v;
      break;
    default:
      break;
  }
}

static int64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Read messages until the deadline (ms clock) or until stop() says so.
** Returns 0 at the deadline/stop, 1 if the pipe closed (the child exited). */
static int read_msgs(int fd, Round *r, int64_t tDeadline, int (*xStop)(const Round *)) {
  for (;;) {
    struct pollfd p;
    int64_t now = now_ms();
    int n;
    if (xStop && xStop(r)) return 0;
    if (now >= tDeadline) return 0;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    n = poll(&p, 1, (int)(tDeadline - now));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    {
      Msg m;
      ssize_t got = read(fd, &m, sizeof(m));
      if (got == (ssize_t)sizeof(m)) {
        handle_msg(r, &m);
      } else if (got == 0) {
        return 1;
      } else if (got < 0 && errno != EINTR) {
        return 1;
      }
    }
  }
}

static int stop_on_ack(const Round *r) {
  return r->nMaxAck >= 0 || r->childRc != 0;
}
static int stop_on_flush(const Round *r) {
  return r->bFlushSeen || r->childRc != 0;
}

/* Everything left in the pipe after the child died still counts. */
static void drain(int fd, Round *r) {
  Msg m;
  while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) handle_msg(r, &m);
}

typedef struct CrashStats {
  int nKill, nKillBeforeAck, nKillAtFlush, nBatchesLost;
  int64_t nMaxBatch;
} CrashStats;

/* Open the database and check it against the rules in the file header.
** Returns H (the last batch present), or -1 after a failed check. */
static int64_t verify(const char *zDir, int sync, int64_t nPrev, const Round *r, int bDurable,
                      int iRound, CrashStats *cs) {
  strata_options o;
  strata *db = NULL;
  strata_value val = {0};
  strata_iter *it = NULL;
  int64_t h = 0, nLow;
  static int aCount[WINDOW];
  static unsigned char aWant[8192];
  int rc, i, bad = 0;
  long nKey = 0;

  set_options(&o, sync);
  rc = strata_open(zDir, &o, &db);
  CHECK_EQ(rc, STRATA_OK);
  if (rc) {
    fprintf(stderr, "  round %d: reopen failed: %s\n", iRound, strata_errmsg());
    return -1;
  }
  rc = strata_get(db, NULL, "last", 4, &val);
  if (rc == STRATA_OK) {
    char z[32];
    size_t n = val.n < sizeof(z) - 1 ? val.n : sizeof(z) - 1;
    memcpy(z, val.p, n);
    z[n] = 0;
    h = strtoll(z, NULL, 10);
  } else {
    CHECK_EQ(rc, STRATA_NOTFOUND);
  }
  /* Durability: nothing acknowledged is lost (sync normal/full). */
  if (bDurable) {
    if (h < r->nMaxAck || h < nPrev) {
      fprintf(stderr,
              "  round %d: last batch present is %lld, but %lld was acknowledged "
              "(previous round ended at %lld)\n",
              iRound, (long long)h, (long long)r->nMaxAck, (long long)nPrev);
      bad++;
    }
  } else if (h < nPrev) {
    /* With sync=off what an earlier round verified was written by a clean
    ** reopen, so it must stay. */
    fprintf(stderr, "  round %d (sync=off): batch %lld went missing after being verified\n", iRound,
            (long long)nPrev);
    bad++;
  }
  if (h > (r->nMaxAck > nPrev ? r->nMaxAck : nPrev) + 1) {
    fprintf(stderr, "  round %d: batch %lld present but only %lld were acknowledged\n", iRound,
            (long long)h, (long long)r->nMaxAck);
    bad++;
  }
  if (!bDurable && r->nMaxAck > h) cs->nBatchesLost += (int)(r->nMaxAck - h);

  /* Every key: "last", or a key of a live batch with the right value. */
  nLow = h - WINDOW + 1;
  if (nLow < 1) nLow = 1;
  memset(aCount, 0, sizeof(aCount));
  rc = strata_iter_new(db, NULL, &it);
  CHECK_EQ(rc, STRATA_OK);
  if (rc == STRATA_OK) {
    for (strata_iter_seek_first(it); strata_iter_valid(it); strata_iter_next(it)) {
      size_t nK, nV;
      const char *pK = strata_iter_key(it, &nK);
      const void *pV = strata_iter_value(it, &nV);
      char zKey[64];
      long long n;
      int k;
      nKey++;
      if (nK == 4 && memcmp(pK, "last", 4) == 0) continue;
      if (nK >= sizeof(zKey) ||
          (memcpy(zKey, pK, nK), zKey[nK] = 0, sscanf(zKey, "b%lld-k%d", &n, &k) != 2)) {
        if (bad++ < 5) fprintf(stderr, "  round %d: unexpected key %.*s\n", iRound, (int)nK, pK);
        continue;
      }
      if (n < nLow || n > h || k < 0 || k >= nKeys(n)) {
        if (bad++ < 5) {
          fprintf(stderr, "  round %d: key %s present, but the live batches are %lld..%lld\n",
                  iRound, zKey, (long long)nLow, (long long)h);
        }
        continue;
      }
      {
        size_t nWant = value_of(aWant, sizeof(aWant), n, k);
        if (nV != nWant || memcmp(pV, aWant, nV) != 0) {
          if (bad++ < 5) fprintf(stderr, "  round %d: key %s has a wrong value\n", iRound, zKey);
        }
      }
      aCount[n % WINDOW]++;
    }
    if (strata_iter_status(it) != STRATA_OK) {
      fprintf(stderr, "  round %d: iteration failed: %s\n", iRound, strata_errmsg());
      bad++;
    }
    strata_iter_free(it);
  }
  for (i = 0; i < WINDOW; i++) {
    int64_t n = nLow + i;
    if (n > h) break;
    if (aCount[n % WINDOW] != nKeys(n)) {
      if (bad++ < 5) {
        fprintf(stderr, "  round %d: batch %lld has %d of its %d keys (last = %lld)\n", iRound,
                (long long)n, aCount[n % WINDOW], nKeys(n), (long long)h);
      }
    }
  }
  /* Point lookups agree: the newest batch is there, the next is not. */
  if (h > 0) {
    char zKey[64];
    key_of(zKey, sizeof(zKey), h, 0);
    rc = strata_get(db, NULL, zKey, strlen(zKey), &val);
    if (rc != STRATA_OK) {
      fprintf(stderr, "  round %d: get %s: rc=%d\n", iRound, zKey, rc);
      bad++;
    }
  }
  {
    char zKey[64];
    key_of(zKey, sizeof(zKey), h + 1, 0);
    rc = strata_get(db, NULL, zKey, strlen(zKey), &val);
    if (rc != STRATA_NOTFOUND) {
      fprintf(stderr, "  round %d: get %s (after the last batch): rc=%d\n", iRound, zKey, rc);
      bad++;
    }
  }
  /* Recovery leaves no debris: one WAL, one manifest, and exactly the
  ** tables of the current version. */
  if (strata_wait_idle(db) == STRATA_OK) {
    strata_stats st;
    DIR *d = opendir(zDir);
    int nLog = 0, nSst = 0, nManifest = 0, nTmp = 0, nLive = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
      size_t len = strlen(de->d_name);
      if (len > 4 && !strcmp(de->d_name + len - 4, ".log")) nLog++;
      if (len > 4 && !strcmp(de->d_name + len - 4, ".sst")) nSst++;
      if (len > 4 && !strcmp(de->d_name + len - 4, ".tmp")) nTmp++;
      if (!strncmp(de->d_name, "MANIFEST-", 9)) nManifest++;
    }
    if (d) closedir(d);
    if (strata_get_stats(db, &st) == STRATA_OK) {
      for (i = 0; i < STRATA_MAX_LEVELS; i++) nLive += st.level_files[i];
    }
    if (nLog != 1 || nManifest != 1 || nTmp != 0 || nSst != nLive) {
      fprintf(stderr,
              "  round %d: after recovery the directory holds %d WALs, %d manifests, "
              "%d temp files, %d tables (%d live)\n",
              iRound, nLog, nManifest, nTmp, nSst, nLive);
      bad++;
    }
  }
  strata_value_free(&val);
  rc = strata_close(db);
  CHECK_EQ(rc, STRATA_OK);
  if (bad) {
    CHECK(bad == 0);
    fprintf(stderr,
            "  round %d: %d problems (%ld keys, last %lld, acknowledged %lld, "
            "previous %lld)\n",
            iRound, bad, nKey, (long long)h, (long long)r->nMaxAck, (long long)nPrev);
    return -1;
  }
  if (h > cs->nMaxBatch) cs->nMaxBatch = h;
  return h;
}

/* One kill: fork a writer, kill it at a random moment, verify. Returns the
** new last batch, or -1 after a failure. */
static int64_t crash_round(const char *zDir, int sync, int64_t nPrev, TestRng *rng, int iRound,
                           CrashStats *cs) {
  int fds[2], status = 0, mode;
  pid_t pid;
  Round r;
  int64_t t0;
  memset(&r, 0, sizeof(r));
  r.nMaxAck = -1;
  if (pipe(fds) != 0) {
    CHECK(0);
    return -1;
  }
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid < 0) {
    CHECK(0);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    child_main(zDir, sync, nPrev, fds[1]);
    _exit(0);
  }
  close(fds[1]);
  t0 = now_ms();
  mode = (int)test_randn(rng, 10);
  if (mode == 0) {
    /* Early: likely while the child opens and recovers. */
    read_msgs(fds[0], &r, t0 + (int64_t)test_randn(rng, 4), NULL);
  } else if (mode <= 2) {
    /* At a flush: shortly after the child announces one. */
    read_msgs(fds[0], &r, t0 + 20000, stop_on_flush);
    read_msgs(fds[0], &r, now_ms() + (int64_t)test_randn(rng, 4), NULL);
  } else {
    /* In the middle of writing: a random delay after the first ack. */
    read_msgs(fds[0], &r, t0 + 20000, stop_on_ack);
    read_msgs(fds[0], &r, now_ms() + (int64_t)test_randn(rng, 200), NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  drain(fds[0], &r);
  close(fds[0]);
  cs->nKill++;
  if (r.nMaxAck < 0) cs->nKillBeforeAck++;
  if (mode >= 1 && mode <= 2 && r.bFlushSeen) cs->nKillAtFlush++;
  if (r.childRc) {
    fprintf(stderr, "  round %d: the writer failed with rc=%d at batch %lld\n", iRound, r.childRc,
            (long long)r.nErrBatch);
    CHECK(r.childRc == 0);
    return -1;
  }
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
    fprintf(stderr, "  round %d: the writer exited by itself (status 0x%x)\n", iRound, status);
    CHECK(0);
    return -1;
  }
  return verify(zDir, sync, nPrev, &r, sync != STRATA_SYNC_OFF, iRound, cs);
}

static void run_crash(const char *zName, int sync, int nRound) {
  char zWhat[64];
  uint64_t seed;
  TestRng rng;
  char zDir[4096];
  int64_t h = 0;
  int i;
  CrashStats cs;
  int64_t t0 = now_ms();
  memset(&cs, 0, sizeof(cs));
  snprintf(zWhat, sizeof(zWhat), "crash %s", zName);
  seed = test_seed(zWhat);
  test_srand(&rng, seed);
  snprintf(zDir, sizeof(zDir), "%s", test_dir(zName));
  for (i = 0; i < nRound; i++) {
    int64_t hNew = crash_round(zDir, sync, h, &rng, i, &cs);
    if (hNew < 0) {
      fprintf(stderr,
              "  %s: failed in round %d; the database is kept in %s; replay with "
              "STRATA_SEED=%llu\n",
              zName, i, zDir, (unsigned long long)seed);
      return;
    }
    h = hNew;
  }
  printf(
      "#   %s: %d kills (%d before the first ack, %d at a flush), %lld batches survived, "
      "%d acknowledged batches lost (allowed with sync=off), %lld ms\n",
      zName, cs.nKill, cs.nKillBeforeAck, cs.nKillAtFlush, (long long)h, cs.nBatchesLost,
      (long long)(now_ms() - t0));
  /* The run must have made progress, or it tested nothing. */
  CHECK(h > 0);
  test_rmdir(zDir);
}

static void test_crash_sync_full(void) {
  run_crash("crash_full", STRATA_SYNC_FULL, test_soak() ? 500 : test_valgrind() ? 4 : 60);
}
static void test_crash_sync_normal(void) {
  run_crash("crash_normal", STRATA_SYNC_NORMAL, test_soak() ? 200 : test_valgrind() ? 3 : 30);
}
static void test_crash_sync_off(void) {
  run_crash("crash_off", STRATA_SYNC_OFF, test_soak() ? 100 : test_valgrind() ? 2 : 20);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_crash_sync_full);
  RUN(test_crash_sync_normal);
  RUN(test_crash_sync_off);
  return TEST_SUMMARY();
}
