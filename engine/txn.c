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
** of keys it has not written. The private memtable gets a key filter at the
** first write (TXN_BLOOM_BITS, 8 KiB: about 0.1% false positives at a
** thousand keys, degrading gracefully beyond), so such a read skips the
** search of the private skiplist. Read-only transactions never pay for it.
**
** SAVEPOINTS
** A savepoint records the batch length and operation count. Rolling back to
** it truncates the batch and rebuilds the private memtable from what is
** left (a skiplist cannot delete); rollbacks are rare, writes are not.
*/
#include "strataInt.h"

#define TXN_BLOOM_BITS (1u << 16)

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
  Memtable *pMem;
  ReadView *pView; /* cached between reads (strataDbGetInternal) */
  u32 nOp;
  int nSavepoint, nSavepointAlloc;
  TxnSavepoint *aSavepoint;
};

static void txnEnd(strata_txn *t) {
  strata *db = t->db;
  if (t->bWrite) strataDbWriteUnlock(db);
  strata_snapshot_release(db, t->pSnap);
  strataMemtableUnref(t->pMem);
  strataDbViewUnref(t->pView);
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

static int txnWrite(strata_txn *t, int type, const void *pKey, size_t nKey, const void *pVal,
                    size_t nVal) {
  int rc;
  if (!t) return strataErr(STRATA_MISUSE, "NULL transaction");
  if (!t->bWrite) {
    rc = strataDbWriteLock(t->db, t->seq);
    if (rc) return rc;
    t->bWrite = 1;
  }
  if (t->nOp == 0) {
    rc = strataMemtableEnableBloom(t->pMem, TXN_BLOOM_BITS); /* no-op unless still empty */
    if (rc) return rc;
  }
  {
    size_t nRep = t->batch.rep.n;
    u64 nUser = t->batch.nUserBytes;
    rc = (type == STRATA_TYPE_VALUE) ? strata_batch_put(&t->batch, pKey, nKey, pVal, nVal)
                                     : strata_batch_delete(&t->batch, pKey, nKey);
    if (rc) return rc;
    rc = strataMemtableAdd(t->pMem, STRATA_TXN_SEQ_BASE + t->nOp, type, pKey, nKey, pVal, nVal);
    if (rc) {
      /* Keep the batch and its index in step: drop the op just appended. */
      t->batch.rep.n = nRep;
      t->batch.nUserBytes = nUser;
      strataPut32(t->batch.rep.a + 8, t->nOp);
      return rc;
    }
  }
  t->nOp++;
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
  if (t->nOp && strataMemtableGet(t->pMem, pKey, nKey, STRATA_MAX_SEQ, &type, &pV, &nV)) {
    if (type == STRATA_TYPE_DELETE) return STRATA_NOTFOUND;
    return strataValueSet(pVal, pV, nV);
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

static int txnIndexOp(void *pCtx, u64 seq, int type, const u8 *k, size_t nk, const u8 *v,
                      size_t nv) {
  return strataMemtableAdd((Memtable *)pCtx, seq, type, k, nk, v, nv);
}

int strata_txn_rollback_to(strata_txn *t, int i) {
  Memtable *pNew = NULL;
  int rc;
  if (!t || i < 0 || i >= t->nSavepoint) {
    return strataErr(STRATA_MISUSE, "strata_txn_rollback_to: no savepoint %d", i);
  }
  if (t->aSavepoint[i].nOp == t->nOp) {
    t->nSavepoint = i + 1;
    return STRATA_OK;
  }
  rc = strataMemtableNew(&pNew);
  if (rc == STRATA_OK && t->aSavepoint[i].nOp > 0) {
    rc = strataMemtableEnableBloom(pNew, TXN_BLOOM_BITS);
  }
  if (rc) {
    strataMemtableUnref(pNew);
    return rc;
  }
  t->batch.rep.n = t->aSavepoint[i].nRep;
  t->batch.nUserBytes = t->aSavepoint[i].nUserBytes;
  strataPut32(t->batch.rep.a + 8, t->aSavepoint[i].nOp);
  strataBatchSetSeq(&t->batch, STRATA_TXN_SEQ_BASE);
  rc = strataBatchIterate(t->batch.rep.a, t->batch.rep.n, pNew, txnIndexOp);
  if (rc) {
    strataMemtableUnref(pNew);
    return rc;
  }
  strataMemtableUnref(t->pMem);
  t->pMem = pNew;
  t->nOp = t->aSavepoint[i].nOp;
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

int strata_txn_commit(strata_txn *t) {
  int rc = STRATA_OK;
  if (!t) return strataErr(STRATA_MISUSE, "strata_txn_commit: NULL transaction");
  if (t->nOp > 0) rc = strataDbWriteTxn(t->db, &t->batch, t->pMem);
  txnEnd(t);
  return rc;
}

void strata_txn_rollback(strata_txn *t) {
  if (t) txnEnd(t);
}

size_t strata_txn_count(const strata_txn *t) { return t ? t->nOp : 0; }
