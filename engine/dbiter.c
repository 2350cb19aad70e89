/*
** dbiter.c -- the public iterator (strata_iter) over an internal iterator.
**
** VISIBILITY
** An internal iterator yields every version of every key, newest first for
** each key. The db iterator shows, for each user key, the newest version
** with sequence <= the snapshot (or >= STRATA_TXN_SEQ_BASE: the writes of
** the reading transaction itself), and hides the key if that version is a
** deletion. Bounds [lower, upper) are applied here.
**
** DIRECTION
** Moving forward, the internal iterator sits on the entry that supplies the
** current key and value, so both are read in place. Moving backward, it sits
** before all entries of the current key (it had to look at all of them to
** find the newest), so the key and value are read where they were found
** while the internal iterator says that its steps keep them there (KEPT
** ENTRIES in strataInt.h: within a block's reverse record, or from a
** memtable), and copied aside (savedKey, savedVal) before a step that
** would not.
**
** COMMON STEPS
** Most steps meet one visible live entry per key. strata_iter_next and
** strata_iter_prev test for exactly that in a straight line (backward: the
** entry, one step, and the next entry's key differs) and leave every other
** case to the general search, from where they are. strata_iter_skip runs
** the forward step in a loop for callers that only count entries
** (count(*)), holding a key of 8 to 16 bytes as two words in registers
** instead of copying it to savedKey at every step.
*/
#include "strataInt.h"

struct strata_iter {
  StrataIter *pIter; /* internal iterator (owned) */
  u64 seq;
  int bValid;
  int bForward;
  int rc;
  StrataBuf lower, upper; /* copies of the bounds */
  int bLower, bUpper;
  int lowerByte0;     /* the lower bound's first byte; -1 if none or empty */
  StrataBuf savedKey; /* reverse: copy of the current key; forward: key to skip */
  StrataBuf savedVal; /* reverse: copy of the current value */
  const u8 *pRevKey;  /* reverse: the current key and value, in place or in */
  size_t nRevKey;     /* savedKey/savedVal */
  const u8 *pRevVal;
  size_t nRevVal;
  StrataBuf seekKey;  /* scratch for internal seek keys */
  void (*xRelease)(void *);
  void *pReleaseArg;
  strata *db;       /* made by strata_iter_new: pReleaseArg is its state (or */
  int bFillCache;   /* NULL after a failed refresh), and refresh renews it */
};

/* strataBufSetFast for a user key that its internal key's 8-byte trailer follows:
** a short one is copied in words, which may read into the trailer (and
** write up to 16 bytes, within any allocation a StrataBuf makes). */
static inline int keySet(StrataBuf *b, const u8 *p, size_t n) {
  if (LIKELY(n <= 16 && b->nAlloc >= 16)) {
    strataPut64(b->a, strataGet64(p));
    if (n > 8) strataPut64(b->a + 8, strataGet64(p + 8));
    b->n = n;
    return STRATA_OK;
  }
  return strataBufSetFast(b, p, n);
}

static inline int isVisible(const strata_iter *it, u64 seq) {
  return seq <= it->seq || seq >= STRATA_TXN_SEQ_BASE;
}

static inline int iterFail(strata_iter *it) {
  if (it->pIter->rc) {
    it->rc = it->pIter->rc;
    it->bValid = 0;
    return 1;
  }
  return 0;
}

/* Seek the internal iterator to the first entry of user key k. */
static void internalSeek(strata_iter *it, const u8 *k, size_t n, u64 trailer) {
  int rc = strataBufReserve(&it->seekKey, n + 8 - it->seekKey.n);
  it->seekKey.n = 0;
  if (rc) {
    it->rc = rc;
    it->bValid = 0;
    return;
  }
  if (n) memcpy(it->seekKey.a, k, n);
  strataPut64(it->seekKey.a + n, trailer);
  it->seekKey.n = n + 8;
  if (it->db && it->pReleaseArg) strataDbNoteSeek(it->db, it->pReleaseArg, k, n);
  it->pIter->pMethods->xSeek(it->pIter, it->seekKey.a, it->seekKey.n);
}

/* Is user key k/n the key s/ns? Moving forward (backward), the entries
** after a key's are of that key or later (earlier) keys, so equality is all
** there is to test, and most keys differ in length or in their first eight
** bytes. */
static inline int isSameKey(const u8 *k, size_t n, const u8 *s, size_t ns) {
  size_t i = 0;
  if (n != ns) return 0;
  if (n >= 8 && n <= 16) {
    /* Two words, overlapping for under 16 bytes. */
    return strataGet64(k) == strataGet64(s) && strataGet64(k + n - 8) == strataGet64(s + n - 8);
  }
  if (n > 64) return strataMemcmp(k, s, n) == 0;
  for (; i + 8 <= n; i += 8) {
    if (strataGet64(k + i) != strataGet64(s + i)) return 0;
  }
  for (; i < n; i++) {
    if (k[i] != s[i]) return 0;
  }
  return 1;
}

static inline int isSavedKey(const strata_iter *it, const u8 *k, size_t n) {
  return isSameKey(k, n, it->savedKey.a, it->savedKey.n);
}

#define TRAILER_FIRST (~(u64)0) /* sorts before every entry of a key */
#define TRAILER_LAST ((u64)0)   /* sorts after every entry of a key */

/* Forward: from the internal position, find the next visible live key.
** With bSkip, entries of user key savedKey are passed over. */
static inline __attribute__((always_inline)) void findNextUserEntry(strata_iter *it, int bSkip) {
  StrataIter *in = it->pIter;
  while (in->bValid) {
    size_t nU = in->nKey - 8;
    u64 trailer = strataGet64(in->pKey + nU);
    if (isVisible(it, trailer >> 8)) {
      if (bSkip && isSavedKey(it, in->pKey, nU)) {
        /* an older version of a key already passed */
      } else if (it->bUpper && strataUkeyCompare(in->pKey, nU, it->upper.a, it->upper.n) >= 0) {
        break; /* past the range: stop here, not after a run of tombstones */
      } else if ((trailer & 0xff) == STRATA_TYPE_DELETE) {
        if (keySet(&it->savedKey, in->pKey, nU)) {
          it->rc = STRATA_NOMEM;
          break;
        }
        bSkip = 1;
      } else {
        it->bValid = 1;
        it->bForward = 1;
        return;
      }
    }
    in->pMethods->xNext(in);
  }
  iterFail(it);
  it->bValid = 0;
}

static __attribute__((noinline)) int isBelowLowerCompare(const strata_iter *it, const u8 *k,
                                                         size_t n) {
  return it->bLower && strataUkeyCompare(k, n, it->lower.a, it->lower.n) < 0;
}

/* Is user key k/n below the lower bound (if any)? A key whose first byte
** is above the bound's is not (lowerByte0 is -1 without a bound, or with
** an empty one), which for most keys of a bounded scan (the SQL
** extension's bound is one byte below every row) settles it. */
static inline int isBelowLower(const strata_iter *it, const u8 *k, size_t n) {
  if (LIKELY(n > 0 && (int)k[0] > it->lowerByte0)) return 0;
  return isBelowLowerCompare(it, k, n);
}

/* Backward: from the internal position, find the previous visible live key;
** leaves it in pRevKey/pRevVal and the internal iterator before it. The
** entries met after a key's newest visible one are of that key or earlier
** keys, so an inequality means an earlier key. A key is tested against the
** lower bound at its first visible entry, before it can become the result
** (type is DELETE there), so the result needs no test of its own. The
** result is the entry where it was found while the internal iterator keeps
** it there (bKeepOnPrev), else a copy in savedKey/savedVal. The search
** starts with the result so far in type (DELETE: none) and pKey..nVal,
** which the caller has stepped past. */
static inline __attribute__((always_inline)) void findPrevUserEntryFrom(
    strata_iter *it, int type, const u8 *pKey, size_t nKey, const u8 *pVal, size_t nVal) {
  StrataIter *in = it->pIter;
  while (in->bValid) {
    size_t nU = in->nKey - 8;
    u64 trailer = strataGet64(in->pKey + nU);
    if (isVisible(it, trailer >> 8)) {
      if (type != STRATA_TYPE_DELETE && !isSameKey(in->pKey, nU, pKey, nKey)) {
        break; /* passed every entry of the result's key */
      }
      if (type == STRATA_TYPE_DELETE && isBelowLower(it, in->pKey, nU)) {
        break; /* below the range with nothing found */
      }
      type = (int)(trailer & 0xff);
      if (type != STRATA_TYPE_DELETE) {
        pKey = in->pKey;
        nKey = nU;
        pVal = in->pVal;
        nVal = in->nVal;
      }
    }
    if (type != STRATA_TYPE_DELETE && !in->bKeepOnPrev && pKey != it->savedKey.a) {
      /* The step may move the result's bytes: copy them first. */
      if (keySet(&it->savedKey, pKey, nKey) || strataBufSetFast(&it->savedVal, pVal, nVal)) {
        it->rc = STRATA_NOMEM;
        it->bValid = 0;
        return;
      }
      pKey = it->savedKey.a;
      pVal = it->savedVal.a;
    }
    in->pMethods->xPrev(in);
  }
  if (iterFail(it)) return;
  it->bForward = 0;
  it->bValid = (type != STRATA_TYPE_DELETE);
  it->pRevKey = pKey;
  it->nRevKey = nKey;
  it->pRevVal = pVal;
  it->nRevVal = nVal;
}

static __attribute__((noinline)) void findPrevUserEntry(strata_iter *it) {
  findPrevUserEntryFrom(it, STRATA_TYPE_DELETE, NULL, 0, NULL, 0);
}

/* findPrevUserEntryFrom out of line, for strata_iter_prev's uncommon cases. */
static __attribute__((noinline)) void findPrevUserEntryAfter(strata_iter *it, const u8 *pKey,
                                                             size_t nKey, const u8 *pVal,
                                                             size_t nVal) {
  findPrevUserEntryFrom(it, STRATA_TYPE_VALUE, pKey, nKey, pVal, nVal);
}

void strata_iter_seek_first(strata_iter *it) {
  if (it->rc) return;
  if (it->bLower) {
    internalSeek(it, it->lower.a, it->lower.n, TRAILER_FIRST);
  } else {
    it->pIter->pMethods->xSeekFirst(it->pIter);
  }
  findNextUserEntry(it, 0);
}

void strata_iter_seek(strata_iter *it, const void *pKey, size_t nKey) {
  if (it->rc) return;
  if (it->bLower && strataUkeyCompare(pKey, nKey, it->lower.a, it->lower.n) < 0) {
    strata_iter_seek_first(it);
    return;
  }
  internalSeek(it, pKey, nKey, TRAILER_FIRST);
  if (!it->rc) findNextUserEntry(it, 0);
}

/* Position the internal iterator on the last entry with user key < k (bLt)
** or <= k, then find the previous user entry. */
static void seekBefore(strata_iter *it, const u8 *k, size_t n, int bLt) {
  StrataIter *in = it->pIter;
  internalSeek(it, k, n, bLt ? TRAILER_FIRST : TRAILER_LAST);
  if (it->rc) return;
  if (in->bValid) {
    in->pMethods->xPrev(in);
  } else if (!in->rc) {
    in->pMethods->xSeekLast(in);
  }
  findPrevUserEntry(it);
}

void strata_iter_seek_last(strata_iter *it) {
  if (it->rc) return;
  if (it->bUpper) {
    seekBefore(it, it->upper.a, it->upper.n, 1);
  } else {
    it->pIter->pMethods->xSeekLast(it->pIter);
    findPrevUserEntry(it);
  }
}

void strata_iter_seek_for_prev(strata_iter *it, const void *pKey, size_t nKey) {
  if (it->rc) return;
  if (it->bUpper && strataUkeyCompare(pKey, nKey, it->upper.a, it->upper.n) >= 0) {
    strata_iter_seek_last(it);
    return;
  }
  seekBefore(it, pKey, nKey, 0);
}

/* strata_iter_next's cases other than the common one (see there). */
static __attribute__((noinline)) void iterNextSlow(strata_iter *it) {
  StrataIter *in = it->pIter;
  if (it->bForward) {
    /* Stepped off the current key onto a hidden, deleted, repeated or
    ** out-of-range entry (or the end, or an error). */
    findNextUserEntry(it, 1);
    return;
  }
  /* The internal iterator is before the current key's entries: step onto
  ** them, with the key in savedKey to skip them by. */
  if (it->pRevKey != it->savedKey.a && keySet(&it->savedKey, it->pRevKey, it->nRevKey)) {
    it->rc = STRATA_NOMEM;
    it->bValid = 0;
    return;
  }
  if (in->bValid) {
    in->pMethods->xNext(in);
  } else if (!in->rc) {
    in->pMethods->xSeekFirst(in);
  }
  findNextUserEntry(it, 1);
}

/* The common step is inline and saves few registers: forward, onto a
** visible live entry of another key, without an upper bound. */
void strata_iter_next(strata_iter *it) {
  StrataIter *in = it->pIter;
  if (!it->bValid) return;
  if (LIKELY(it->bForward)) {
    if (UNLIKELY(keySet(&it->savedKey, in->pKey, in->nKey - 8))) {
      it->rc = STRATA_NOMEM;
      it->bValid = 0;
      return;
    }
    in->pMethods->xNext(in);
    if (LIKELY(in->bValid && !it->bUpper)) {
      size_t nU = in->nKey - 8;
      u64 trailer = strataGet64(in->pKey + nU);
      if (LIKELY(isVisible(it, trailer >> 8) && (trailer & 0xff) != STRATA_TYPE_DELETE &&
                 !isSavedKey(it, in->pKey, nU))) {
        return; /* bValid and bForward stay 1 */
      }
    }
  }
  iterNextSlow(it);
}

/* strata_iter_next's common step in a loop, with the iterator's state read
** once: for count(*), whose rows are only counted. A user key of 8 to 16
** bytes (most keys) is held in two words, its first and last 8 bytes, in
** registers, instead of being copied to savedKey at every step; the words
** rebuild savedKey when a step needs it (iterNextSlow). */
uint64_t strata_iter_skip(strata_iter *it, uint64_t n) {
  StrataIter *in = it->pIter;
  u64 nLeft = n; /* steps still to take: with the few registers the loop needs */
  if (!it->bValid || n == 0) return 0;
  if (UNLIKELY(!it->bForward || it->bUpper)) {
    for (; nLeft > 0; nLeft--) {
      strata_iter_next(it);
      if (!it->bValid) break;
    }
    return n - nLeft;
  }
  while (nLeft > 0) {
    size_t nKey = in->nKey - 8;
    if (nKey >= 8 && nKey <= 16 && it->savedKey.nAlloc >= 16) {
      /* The current key in two words; on to the first step that needs
      ** more than a comparison with them. */
      u64 w0 = strataGet64(in->pKey), w1 = strataGet64(in->pKey + nKey - 8);
      for (;;) {
        const u8 *pKey;
        size_t nU;
        u64 trailer;
        in->pMethods->xNext(in);
        if (UNLIKELY(!in->bValid)) break;
        pKey = in->pKey;
        nU = in->nKey - 8;
        trailer = strataGet64(pKey + nU);
        if (UNLIKELY(!isVisible(it, trailer >> 8) || (trailer & 0xff) == STRATA_TYPE_DELETE)) break;
        if (nU == nKey) {
          u64 x0 = strataGet64(pKey), x1 = strataGet64(pKey + nU - 8);
          if (UNLIKELY(x0 == w0 && x1 == w1)) break; /* an older version */
          w0 = x0;
          w1 = x1;
        } else if (nU >= 8 && nU <= 16) {
          nKey = nU;
          w0 = strataGet64(pKey);
          w1 = strataGet64(pKey + nU - 8);
        } else {
          /* A key of another length: savedKey from here on. */
          if (--nLeft == 0) return n;
          goto skip_copy;
        }
        if (--nLeft == 0) return n;
      }
      /* The entries from the current one on are iterNextSlow's, which
      ** skips the entries of savedKey: the last key counted. */
      strataPut64(it->savedKey.a, w0);
      strataPut64(it->savedKey.a + nKey - 8, w1);
      it->savedKey.n = nKey;
      iterNextSlow(it);
      if (!it->bValid) break;
      nLeft--;
      continue;
    }
  skip_copy:
    if (UNLIKELY(keySet(&it->savedKey, in->pKey, in->nKey - 8))) {
      it->rc = STRATA_NOMEM;
      it->bValid = 0;
      break;
    }
    in->pMethods->xNext(in);
    if (LIKELY(in->bValid)) {
      size_t nU = in->nKey - 8;
      u64 trailer = strataGet64(in->pKey + nU);
      if (LIKELY(isVisible(it, trailer >> 8) && (trailer & 0xff) != STRATA_TYPE_DELETE &&
                 !isSavedKey(it, in->pKey, nU))) {
        nLeft--;
        continue;
      }
    }
    iterNextSlow(it); /* forward: findNextUserEntry, skipping the saved key */
    if (!it->bValid) break;
    nLeft--;
  }
  return n - nLeft;
}

/* strata_iter_prev's cases other than the common one (see there). */
static __attribute__((noinline)) void iterPrevSlow(strata_iter *it) {
  StrataIter *in = it->pIter;
  if (!it->bValid) return;
  if (it->bForward) {
    /* Move before every entry of the current key. */
    if (keySet(&it->savedKey, in->pKey, in->nKey - 8)) {
      it->rc = STRATA_NOMEM;
      it->bValid = 0;
      return;
    }
    do {
      in->pMethods->xPrev(in);
    } while (in->bValid &&
             strataUkeyCompare(in->pKey, in->nKey - 8, it->savedKey.a, it->savedKey.n) >= 0);
    if (iterFail(it)) return;
  }
  findPrevUserEntry(it);
}

/* The common step back is a straight line: moving backward, the internal
** iterator is on the first entry met of the key before the current one. If
** that entry is visible and live, within the lower bound, and stays in
** place across a step (bKeepOnPrev), one step shows whether the entry
** after it is of another key; if so, it is the result. Anything else (older
** versions to look through, deletions, hidden entries, the end, an error,
** entries that need copying, a change of direction) goes to the general
** search, from where it is. */
void strata_iter_prev(strata_iter *it) {
  StrataIter *in = it->pIter;
  size_t nKey;
  u64 trailer;
  if (UNLIKELY(!it->bValid || it->bForward || !in->bValid || !in->bKeepOnPrev)) {
    iterPrevSlow(it);
    return;
  }
  nKey = in->nKey - 8;
  trailer = strataGet64(in->pKey + nKey);
  if (UNLIKELY(!isVisible(it, trailer >> 8) || (trailer & 0xff) == STRATA_TYPE_DELETE ||
               isBelowLower(it, in->pKey, nKey))) {
    findPrevUserEntry(it);
    return;
  }
  /* The candidate goes where the result is published (it stays in place):
  ** kept in memory, not in registers, across the step. */
  it->pRevKey = in->pKey;
  it->nRevKey = nKey;
  it->pRevVal = in->pVal;
  it->nRevVal = in->nVal;
  in->pMethods->xPrev(in);
  if (LIKELY(in->bValid)) {
    size_t nU = in->nKey - 8;
    trailer = strataGet64(in->pKey + nU);
    if (LIKELY(isVisible(it, trailer >> 8) && !isSameKey(in->pKey, nU, it->pRevKey, it->nRevKey))) {
      return; /* bValid stays 1, bForward 0 */
    }
  }
  findPrevUserEntryAfter(it, it->pRevKey, it->nRevKey, it->pRevVal, it->nRevVal);
}

int strata_iter_valid(const strata_iter *it) { return it && it->bValid; }

const void *strata_iter_key(const strata_iter *it, size_t *pnKey) {
  if (!it->bValid) {
    *pnKey = 0;
    return NULL;
  }
  if (it->bForward) {
    *pnKey = it->pIter->nKey - 8;
    return it->pIter->pKey;
  }
  *pnKey = it->nRevKey;
  return it->pRevKey;
}

const void *strata_iter_value(const strata_iter *it, size_t *pnVal) {
  if (!it->bValid) {
    *pnVal = 0;
    return NULL;
  }
  if (it->bForward) {
    *pnVal = it->pIter->nVal;
    return it->pIter->pVal;
  }
  *pnVal = it->nRevVal;
  return it->pRevVal;
}

int strata_iter_entry(const strata_iter *it, const void **ppKey, size_t *pnKey,
                      const void **ppVal, size_t *pnVal) {
  if (!it->bValid) {
    *ppKey = *ppVal = NULL;
    *pnKey = *pnVal = 0;
    return 0;
  }
  if (it->bForward) {
    const StrataIter *in = it->pIter;
    *ppKey = in->pKey;
    *pnKey = in->nKey - 8;
    *ppVal = in->pVal;
    *pnVal = in->nVal;
  } else {
    *ppKey = it->pRevKey;
    *pnKey = it->nRevKey;
    *ppVal = it->pRevVal;
    *pnVal = it->nRevVal;
  }
  return 1;
}

int strata_iter_status(const strata_iter *it) { return it ? it->rc : STRATA_MISUSE; }

void strata_iter_free(strata_iter *it) {
  if (!it) return;
  strataIterClose(it->pIter);
  if (it->xRelease) it->xRelease(it->pReleaseArg);
  strataBufFree(&it->lower);
  strataBufFree(&it->upper);
  strataBufFree(&it->savedKey);
  strataBufFree(&it->savedVal);
  strataBufFree(&it->seekKey);
  strataFreeMem(it);
}

void strataDbIterAllowRefresh(strata_iter *it, strata *db, int bFillCache) {
  it->db = db;
  it->bFillCache = bFillCache;
}

/* REFRESH
** An iterator kept between uses (the SQL cursor of a table between
** statements) is brought to a new read point without being rebuilt when
** no flush or compaction happened in between: the memtable iterators read
** the live skiplists, so writes made since are there, and moving it->seq
** up makes those at or below the new read point visible and keeps the
** newer ones hidden. Every position and the saved key are forgotten: the
** caller seeks next. */
int strata_iter_refresh(strata_iter *it, const strata_snapshot *pSnap) {
  u64 seq = 0;
  int rc;
  if (!it) return strataErr(STRATA_MISUSE, "strata_iter_refresh: NULL iterator");
  if (!it->db) {
    return strataErr(STRATA_MISUSE, "strata_iter_refresh: not an iterator of strata_iter_new");
  }
  it->bValid = 0;
  it->bForward = 1;
  it->savedKey.n = 0;
  it->savedVal.n = 0;
  if (it->rc) {
    /* Whatever failed is not trusted again: rebuild. */
    strataIterClose(it->pIter);
    it->pIter = NULL;
  }
  rc = strataDbIterRefresh(it->db, it->bFillCache, &it->pReleaseArg, &it->pIter, pSnap, &seq);
  it->rc = rc;
  if (rc) return rc; /* pIter is NULL: every entry point checks rc or bValid first */
  it->seq = seq;
  return STRATA_OK;
}

void strata_read_options_init(strata_read_options *ro) {
  memset(ro, 0, sizeof(*ro));
  ro->fill_cache = 1;
}

int strataDbIterNew(StrataIter *pInternal, u64 seq, const strata_read_options *ro,
                    void (*xRelease)(void *), void *pArg, strata_iter **ppIter) {
  strata_iter *it = strataMallocZero(sizeof(*it));
  int rc = STRATA_OK;
  *ppIter = NULL;
  if (!it) {
    strataIterClose(pInternal);
    if (xRelease) xRelease(pArg);
    return strataErr(STRATA_NOMEM, "out of memory");
  }
  it->pIter = pInternal;
  it->seq = seq;
  it->xRelease = xRelease;
  it->pReleaseArg = pArg;
  it->lowerByte0 = -1;
  if (ro && ro->lower) {
    it->bLower = 1;
    rc = strataBufSet(&it->lower, ro->lower, ro->nLower);
    if (ro->nLower > 0) it->lowerByte0 = ((const u8 *)ro->lower)[0];
  }
  if (rc == STRATA_OK && ro && ro->upper) {
    it->bUpper = 1;
    rc = strataBufSet(&it->upper, ro->upper, ro->nUpper);
  }
  if (rc) {
    strata_iter_free(it);
    return rc;
  }
  *ppIter = it;
  return STRATA_OK;
}
