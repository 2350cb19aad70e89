/*
** txn.c -- transactions: a snapshot, an indexed write buffer, savepoints.
**
** DESIGN
** A transaction reads at the snapshot taken when it began. Its writes go to
** a batch (what commit hands to the write path) and, so that the
** transaction can read them back in key order, into a private memtable
** whose entries carry sequence numbers from STRATA_TXN_SEQ_BASE upward: the
** db iterator always shows those, and they sort before every committed
** version of the same key.
**
** LAZY INDEX
** The private memtable is filled lazily: it holds the first nIndexed
** operations of the batch, and the rest are added only when a read needs
** them (a lookup of a key the filter says may have been written, or an
** iterator). A transaction that only writes, or reads only keys it has not
** written (INSERTs and their uniqueness checks), never builds the index:
** its commit sorts the operations by key instead, which is cheaper than
** inserting each into a skiplist. An iterator of the transaction sees the
** writes made after it was created, which it reads from the index: once
** the transaction has made one, every write is indexed at once.
**
** WRITE LOCK
** The first write takes the database's write lock (strataDbWriteLock), as
** SQLite's BEGIN does when it first writes: it fails with STRATA_BUSY if
** another transaction holds the lock past the busy timeout, or if a commit
** happened after this transaction's snapshot (its reads would be stale).
** While the lock is held no other commit can happen, so committed data never
** has sequence numbers above the snapshot while the transaction writes.
**
** KEY FILTER
** Most reads of a writing transaction (an INSERT's uniqueness check) are
** of keys it has not written. A filter over the keys written (TXN_BLOOM_BITS,
** 8 KiB from the first write, four bits per key in one word: about 0.01%
** false positives at a thousand keys, degrading gracefully beyond) answers
** those without the index. A key the filter lets through is looked for
** first by a scan of the operations not yet indexed, a few instructions
** each, so that a false positive does not build the whole index; once
** such scans have cost more than indexing would (TXN_SCAN_FACTOR), the
** index is brought up to date instead.
** Rolling back to a savepoint leaves the filter as it is: it may then
** report keys no longer written, which costs only a search.
**
** SAVEPOINTS
** A savepoint records the batch length and operation count. Rolling back to
** it truncates the batch; if the index holds operations past the savepoint,
** it is dropped and rebuilt lazily from what is left (a skiplist cannot
** delete). Rollbacks are rare, writes are not.
*/
#include "strataInt.h"

#define TXN_BLOOM_BITS (1u << 16)
#define TXN_BLOOM_WORDS (TXN_BLOOM_BITS / 64)
#define TXN_SCAN_FACTOR 16 /* operations scanned per operation written, at most */

typedef struct TxnSavepoint {
  size_t nRep;
  u32 nOp;
  u64 nUserBytes;
} TxnSavepoint;

struct strata_txn {
  strata *db;
  const strata_snapshot *pSnap;
  u64 seq;
  int bWrite; /* holds the write lock */
  strata_batch batch;
  Memtable *pMem;    /* index of the first nIndexed operations (LAZY INDEX) */
  u32 nIndexed;
  size_t nRepIndexed; /* batch offset of operation nIndexed */
  u64 *aBloom;       /* KEY FILTER: TXN_BLOOM_WORDS words, or NULL before a write */
  int bEagerIndex;   /* an iterator was made: index every write at once */
  u64 nScanned;      /* operations looked at by scans (KEY FILTER) */
  ReadView *pView; /* cached between reads (strataDbGetInternal) */
  u32 nOp;
  int nSavepoint, nSavepointAlloc;
  TxnSavepoint *aSavepoint;
};

/* The batch size of this thread's last transaction: the next one reserves
** that much at its first write, instead of doubling its way up from 64
** bytes (a copy of everything so far at every step). */
static _Thread_local size_t tlBatchHint;

static void txnEnd(strata_txn *t) {
  strata *db = t->db;
  if (t->nOp > 0) tlBatchHint = t->batch.rep.n;
  if (t->bWrite) strataDbWriteUnlock(db);
  strata_snapshot_release(db, t->pSnap);
  strataMemtableUnref(t->pMem);
  strataDbViewUnref(t->pView);
  strataFreeMem(t->aBloom);
  strataBufFree(&t->batch.rep);
  strataFreeMem(t->aSavepoint);
  pthread_mutex_lock(&db->mu);
  db->nTxn--;
  pthread_mutex_unlock(&db->mu);
  strataFreeMem(t);
}

int strata_txn_begin(strata *db, int flags, strata_txn **ppTxn) {
  strata_txn *t;
  int rc;
  if (!ppTxn) return strataErr(STRATA_MISUSE, "strata_txn_begin: NULL argument");
  *ppTxn = NULL;
  if (!db) return strataErr(STRATA_MISUSE, "strata_txn_begin: NULL database");
  t = strataMallocZero(sizeof(*t));
  if (!t) return strataErr(STRATA_NOMEM, "out of memory");
  t->db = db;
  rc = strataBatchInit(&t->batch);
  if (rc == STRATA_OK) rc = strataMemtableNew(&t->pMem);
  if (rc == STRATA_OK) {
    t->pSnap = strata_snapshot_new(db);
    if (!t->pSnap) rc = STRATA_NOMEM;
  }
  if (rc) {
    strataMemtableUnref(t->pMem);
    strataBufFree(&t->batch.rep);
    strataFreeMem(t);
    return rc;
  }
  t->seq = t->pSnap->seq;
  t->nRepIndexed = STRATA_BATCH_HEADER;
  pthread_mutex_lock(&db->mu);
  db->nTxn++;
  pthread_mutex_unlock(&db->mu);
  if (flags & STRATA_TXN_WRITE) {
    rc = strataDbWriteLock(db, t->seq);
    if (rc) {
      txnEnd(t);
      return rc;
    }
    t->bWrite = 1;
  }
  *ppTxn = t;
  return STRATA_OK;
}

/* The four filter bits of a key, and the word that holds them. */
static inline u64 txnBloomBits(const u8 *pKey, size_t nKey, u32 *piWord) {
  u64 h = strataKeyHash64(pKey, nKey);
  *piWord = (u32)(h >> 24) % TXN_BLOOM_WORDS;
  return ((u64)1 << (h & 63)) | ((u64)1 << ((h >> 6) & 63)) | ((u64)1 << ((h >> 12) & 63)) |
         ((u64)1 << ((h >> 18) & 63));
}

/* 0 if the transaction has certainly not written pKey. */
static int txnMayHaveWritten(const strata_txn *t, const u8 *pKey, size_t nKey) {
  u32 iWord;
  u64 bits;
  if (!t->aBloom) return 0;
  bits = txnBloomBits(pKey, nKey, &iWord);
  return (t->aBloom[iWord] & bits) == bits;
}

/* Add one operation to the index, and advance the index past it. */
static int txnIndexOp(void *pCtx, u64 seq, int type, const u8 *k, size_t nk, const u8 *v,
                      size_t nv) {
  strata_txn *t = pCtx;
  int rc = strataMemtableAdd(t->pMem, seq, type, k, nk, v, nv);
  if (rc == STRATA_OK) {
    t->nIndexed++;
    t->nRepIndexed = (size_t)((type == STRATA_TYPE_VALUE ? v + nv : k + nk) - t->batch.rep.a);
  }
  return rc;
}

/* Bring the index up to date with the batch. On failure (NOMEM) the index
** holds a prefix of the operations, which nIndexed and nRepIndexed
** describe, and a later call carries on from there. */
static int txnIndex(strata_txn *t) {
  if (t->nIndexed == t->nOp) return STRATA_OK;
  return strataBatchForEach(&t->batch, t->nRepIndexed, STRATA_TXN_SEQ_BASE + t->nIndexed, t,
                            txnIndexOp);
}

/* The state of a scan for a key among the operations not yet indexed. */
typedef struct TxnScan {
  const u8 *pKey;
  size_t nKey;
  int bFound, type; /* the last operation on the key, if bFound */
  const u8 *pVal;
  size_t nVal;
} TxnScan;

static int txnScanOp(void *pCtx, u64 seq, int type, const u8 *k, size_t nk, const u8 *v,
                     size_t nv) {
  TxnScan *p = pCtx;
  (void)seq;
  if (nk == p->nKey && memcmp(k, p->pKey, nk) == 0) {
    p->bFound = 1;
    p->type = type;
    p->pVal = v;
    p->nVal = nv;
  }
  return STRATA_OK;
}

static int txnWrite(strata_txn *t, int type, const void *pKey, size_t nKey, const void *pVal,
                    size_t nVal) {
  int rc;
  u32 iWord;
  u64 bits, nUser;
  size_t nRep;
  if (!t) return strataErr(STRATA_MISUSE, "NULL transaction");
  if (!t->bWrite) {
    rc = strataDbWriteLock(t->db, t->seq);
    if (rc) return rc;
    t->bWrite = 1;
  }
  if (!t->aBloom) {
    t->aBloom = strataMallocZero(sizeof(u64) * TXN_BLOOM_WORDS);
    if (!t->aBloom) return strataErr(STRATA_NOMEM, "out of memory");
    /* The first write: room for a quarter more than the last transaction
    ** wrote (so a slightly larger one does not double it once more), up to
    ** 16 MiB; failing to get it is no error. */
    size_t nHint = tlBatchHint + tlBatchHint / 4;
    if (nHint > t->batch.rep.nAlloc && nHint <= (16u << 20)) {
      u8 *a = strataRealloc(t->batch.rep.a, nHint);
      if (a) {
        t->batch.rep.a = a;
        t->batch.rep.nAlloc = nHint;
      }
    }
  }
  nRep = t->batch.rep.n;
  nUser = t->batch.nUserBytes;
  rc = (type == STRATA_TYPE_VALUE) ? strata_batch_put(&t->batch, pKey, nKey, pVal, nVal)
                                   : strata_batch_delete(&t->batch, pKey, nKey);
  if (rc) return rc; /* the batch is unchanged */
  bits = txnBloomBits(pKey, nKey, &iWord);
  t->aBloom[iWord] |= bits;
  t->nOp++;
  if (t->bEagerIndex) {
    rc = txnIndex(t);
    if (rc) {
      /* Undo the write (its operation is not in the index: that failed). */
      t->nOp--;
      t->batch.rep.n = nRep;
      t->batch.nUserBytes = nUser;
      strataPut32(t->batch.rep.a + 8, t->nOp);
      return rc;
    }
  }
  return STRATA_OK;
}

int strata_txn_put(strata_txn *t, const void *pKey, size_t nKey, const void *pVal, size_t nVal) {
  return txnWrite(t, STRATA_TYPE_VALUE, pKey, nKey, pVal, nVal);
}

int strata_txn_delete(strata_txn *t, const void *pKey, size_t nKey) {
  return txnWrite(t, STRATA_TYPE_DELETE, pKey, nKey, NULL, 0);
}

int strata_txn_get(strata_txn *t, const void *pKey, size_t nKey, strata_value *pVal) {
  int type;
  const u8 *pV;
  size_t nV;
  if (!t || !pVal) return strataErr(STRATA_MISUSE, "strata_txn_get: NULL argument");
  if (nKey > STRATA_MAX_KEY) return STRATA_NOTFOUND;
  if (t->nOp && txnMayHaveWritten(t, pKey, nKey)) {
    u32 nPending = t->nOp - t->nIndexed;
    int rc;
    if (nPending > 0 && t->nScanned + nPending <= (u64)TXN_SCAN_FACTOR * t->nOp) {
      /* The later operations are not indexed: the last of them on the key
      ** is the newest write, if there is one. */
      TxnScan scan;
      memset(&scan, 0, sizeof(scan));
      scan.pKey = pKey;
      scan.nKey = nKey;
      t->nScanned += nPending;
      rc = strataBatchForEach(&t->batch, t->nRepIndexed, 0, &scan, txnScanOp);
      if (rc) return rc;
      if (scan.bFound) {
        if (scan.type == STRATA_TYPE_DELETE) return STRATA_NOTFOUND;
        return strataValueSet(pVal, scan.pVal, scan.nVal);
      }
    } else {
      rc = txnIndex(t);
      if (rc) return rc;
    }
    if (t->nIndexed > 0 &&
        strataMemtableGet(t->pMem, pKey, nKey, STRATA_MAX_SEQ, &type, &pV, &nV)) {
      if (type == STRATA_TYPE_DELETE) return STRATA_NOTFOUND;
      return strataValueSet(pVal, pV, nV);
    }
  }
  return strataDbGetInternal(t->db, &t->pView, pKey, nKey, t->seq, pVal);
}

int strata_txn_iter_new(strata_txn *t, const strata_read_options *ro, strata_iter **ppIter) {
  StrataIter *ap[2];
  StrataIter *pMerge = NULL;
  void *pState = NULL;
  int rc;
  if (!t || !ppIter) return strataErr(STRATA_MISUSE, "strata_txn_iter_new: NULL argument");
  *ppIter = NULL;
  rc = txnIndex(t);
  if (rc) return rc;
  t->bEagerIndex = 1;
  rc = strataDbInternalIter(t->db, ro ? ro->fill_cache : 1, &ap[0], &pState);
  if (rc) return rc;
  rc = strataMemtableIterNew(t->pMem, &ap[1]);
  if (rc) {
    strataIterClose(ap[0]);
    strataDbReleaseIterState(pState);
    return rc;
  }
  rc = strataMergeIterNew(ap, 2, &pMerge);
  if (rc) {
    strataDbReleaseIterState(pState);
    return rc;
  }
  return strataDbIterNew(pMerge, t->seq, ro, strataDbReleaseIterState, pState, ppIter);
}

int strata_txn_savepoint(strata_txn *t, int *piSavepoint) {
  if (!t || !piSavepoint) return strataErr(STRATA_MISUSE, "strata_txn_savepoint: NULL argument");
  if (t->nSavepoint == t->nSavepointAlloc) {
    int n = t->nSavepointAlloc ? t->nSavepointAlloc * 2 : 8;
    TxnSavepoint *a = strataRealloc(t->aSavepoint, sizeof(TxnSavepoint) * (size_t)n);
    if (!a) return strataErr(STRATA_NOMEM, "out of memory");
    t->aSavepoint = a;
    t->nSavepointAlloc = n;
  }
  t->aSavepoint[t->nSavepoint].nRep = t->batch.rep.n;
  t->aSavepoint[t->nSavepoint].nOp = t->nOp;
  t->aSavepoint[t->nSavepoint].nUserBytes = t->batch.nUserBytes;
  *piSavepoint = t->nSavepoint++;
  return STRATA_OK;
}

int strata_txn_rollback_to(strata_txn *t, int i) {
  const TxnSavepoint *sp;
  if (!t || i < 0 || i >= t->nSavepoint) {
    return strataErr(STRATA_MISUSE, "strata_txn_rollback_to: no savepoint %d", i);
  }
  sp = &t->aSavepoint[i];
  if (sp->nOp != t->nOp) {
    if (t->nIndexed > sp->nOp) {
      /* The index holds undone operations: start a new one (lazily). */
      Memtable *pNew = NULL;
      int rc = strataMemtableNew(&pNew);
      if (rc) return rc;
      strataMemtableUnref(t->pMem);
      t->pMem = pNew;
      t->nIndexed = 0;
      t->nRepIndexed = STRATA_BATCH_HEADER;
    }
    t->batch.rep.n = sp->nRep;
    t->batch.nUserBytes = sp->nUserBytes;
    strataPut32(t->batch.rep.a + 8, sp->nOp);
    t->nOp = sp->nOp;
  }
  t->nSavepoint = i + 1;
  return STRATA_OK;
}

int strata_txn_release(strata_txn *t, int i) {
  if (!t || i < 0 || i >= t->nSavepoint) {
    return strataErr(STRATA_MISUSE, "strata_txn_release: no savepoint %d", i);
  }
  t->nSavepoint = i;
  return STRATA_OK;
}

/* SORTING AT COMMIT
** Operations are sorted as (8-byte big-endian key prefix, position) pairs.
** A large batch is sorted by its prefixes with a least significant byte
** first radix sort: a byte that is the same in every prefix (the type tag,
** the high bytes of integer keys; one pass finds them all) costs no pass,
** so a thousand integer keys take a few cheap passes where a comparison
** sort takes ten comparisons each. The radix sort is stable,
** so operations with equal prefixes stay in batch order; each such run is
** then sorted by the full comparison. Small batches, and those runs, go to
** a merge sort with the comparison inline: the prefix decides almost every
** comparison without touching the keys, where a general qsort pays an
** indirect call and a 32-byte move per step. */
typedef struct TxnSortEnt {
  u64 prefix; /* the key's first 8 bytes, big-endian, zero padded */
  u32 iOp;
} TxnSortEnt;

/* < 0 if x sorts before y: key order, the later write of a key first (as
** in the memtable). aOp resolves equal prefixes. */
static inline int txnSortCmp(const TxnSortEnt *x, const TxnSortEnt *y, const BatchOpRef *aOp) {
  if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
  {
    const BatchOpRef *a = &aOp[x->iOp], *b = &aOp[y->iOp];
    int c = strataUkeyCompare(a->pKey, a->nKey, b->pKey, b->nKey);
    if (c) return c;
  }
  return x->iOp > y->iOp ? -1 : 1; /* iOp is unique */
}

/* Sort a[0..n) using aTmp (room for n) as scratch. */
static void txnSort(TxnSortEnt *a, TxnSortEnt *aTmp, u32 n, const BatchOpRef *aOp) {
  u32 i, j, k, nLeft;
  if (n <= 16) {
    for (i = 1; i < n; i++) {
      TxnSortEnt x = a[i];
      for (j = i; j > 0 && txnSortCmp(&x, &a[j - 1], aOp) < 0; j--) a[j] = a[j - 1];
      a[j] = x;
    }
    return;
  }
  nLeft = n / 2;
  txnSort(a, aTmp, nLeft, aOp);
  txnSort(a + nLeft, aTmp, n - nLeft, aOp);
  if (txnSortCmp(&a[nLeft - 1], &a[nLeft], aOp) < 0) return; /* already in order */
  memcpy(aTmp, a, sizeof(TxnSortEnt) * nLeft);
  for (i = 0, j = nLeft, k = 0; i < nLeft && j < n;) {
    a[k++] = txnSortCmp(&a[j], &aTmp[i], aOp) < 0 ? a[j++] : aTmp[i++];
  }
  while (i < nLeft) a[k++] = aTmp[i++];
}

#define TXN_RADIX_MIN 256 /* fewer operations: the merge sort alone is cheaper */

/* Sort a[0..n) as txnSort does, by a radix sort of the prefixes followed by
** a merge sort of each run of equal prefixes. aTmp has room for n. */
static void txnSortRadix(TxnSortEnt *a, TxnSortEnt *aTmp, u32 n, const BatchOpRef *aOp) {
  u32 aCount[256];
  u32 i, iByte;
  u64 mOr = 0, mAnd = ~(u64)0;
  TxnSortEnt *pSrc = a, *pDst = aTmp;
  if (n < TXN_RADIX_MIN) {
    txnSort(a, aTmp, n, aOp);
    return;
  }
  for (i = 0; i < n; i++) {
    mOr |= a[i].prefix;
    mAnd &= a[i].prefix;
  }
  for (iByte = 0; iByte < 8; iByte++) {
    int sh = 8 * (int)iByte;
    u32 nSum = 0;
    if ((((mOr ^ mAnd) >> sh) & 0xff) == 0) continue; /* the same byte everywhere */
    memset(aCount, 0, sizeof(aCount));
    for (i = 0; i < n; i++) aCount[(pSrc[i].prefix >> sh) & 0xff]++;
    for (i = 0; i < 256; i++) {
      u32 nThis = aCount[i];
      aCount[i] = nSum;
      nSum += nThis;
    }
    for (i = 0; i < n; i++) pDst[aCount[(pSrc[i].prefix >> sh) & 0xff]++] = pSrc[i];
    {
      TxnSortEnt *pSwap = pSrc;
      pSrc = pDst;
      pDst = pSwap;
    }
  }
  if (pSrc != a) memcpy(a, pSrc, sizeof(TxnSortEnt) * n);
  /* Equal prefixes: batch order so far; the keys and positions decide. */
  for (i = 0; i + 1 < n;) {
    u32 j = i + 1;
    while (j < n && a[j].prefix == a[i].prefix) j++;
    if (j - i > 1) txnSort(a + i, aTmp, j - i, aOp);
    i = j;
  }
}

/* Hand the batch to the write path with its operations in key order: from
** the index when it is complete, else sorted here. */
static int txnCommit(strata_txn *t) {
  BatchOpRef *a, *aSorted;
  TxnSortEnt *aEnt;
  u32 i;
  int rc;
  if (t->nIndexed == t->nOp) return strataDbWriteTxn(t->db, &t->batch, t->pMem, NULL);
  if (t->nIndexed > 0) {
    /* Part indexed already (the transaction read its writes): finish it. */
    rc = txnIndex(t);
    if (rc) return rc;
    return strataDbWriteTxn(t->db, &t->batch, t->pMem, NULL);
  }
  /* One allocation: the operations in batch order, the same in key order,
  ** the sort entries and their scratch. */
  a = strataMalloc((sizeof(BatchOpRef) * 2 + sizeof(TxnSortEnt) * 2) * (size_t)t->nOp);
  if (!a) return strataErr(STRATA_NOMEM, "out of memory");
  aSorted = a + t->nOp;
  aEnt = (TxnSortEnt *)(void *)(aSorted + t->nOp);
  strataBatchCollect(&t->batch, a);
  for (i = 0; i < t->nOp; i++) {
    aEnt[i].prefix = strataKeyWindow(a[i].pKey, a[i].nKey, 0);
    aEnt[i].iOp = i;
  }
  txnSortRadix(aEnt, aEnt + t->nOp, t->nOp, a);
  for (i = 0; i < t->nOp; i++) aSorted[i] = a[aEnt[i].iOp];
  rc = strataDbWriteTxn(t->db, &t->batch, NULL, aSorted);
  strataFreeMem(a);
  return rc;
}

int strata_txn_commit(strata_txn *t) {
  int rc = STRATA_OK;
  if (!t) return strataErr(STRATA_MISUSE, "strata_txn_commit: NULL transaction");
  if (t->nOp > 0) rc = txnCommit(t);
  txnEnd(t);
  return rc;
}

void strata_txn_rollback(strata_txn *t) {
  if (t) txnEnd(t);
}

size_t strata_txn_count(const strata_txn *t) { return t ? t->nOp : 0; }
