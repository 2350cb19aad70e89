/*
** strata.c -- the SQLite virtual table module "strata", the eponymous table
** "strata_stats" and the SQL functions strata_flush() and strata_compact().
** This is the only file of the project that includes sqlite3ext.h.
**
** TABLE KINDS
**
**   CREATE VIRTUAL TABLE t USING strata(<column defs>, <PRIMARY KEY(...)>,
**   <name = value options>). Three kinds of table come out of a definition:
**
**     ROWID  no primary key: an implicit integer rowid is the engine key, all
**            columns live in the row value. New rowids are max+1 as SQLite's.
**     IPK    a single "INTEGER PRIMARY KEY" column: an alias of the rowid,
**            which is the engine key. NULL inserts the next rowid.
**     PK     any other primary key, single or composite: the key columns are
**            the engine key (WITHOUT ROWID style), NOT NULL implied. SQLite
**            only lets a writable WITHOUT ROWID virtual table have a
**            single-column PRIMARY KEY, so the table is declared to SQLite
**            with one extra HIDDEN column, the encoded key as a BLOB, as its
**            primary key; xUpdate gets the old row's key from it.
**
**   Keys and rows are encoded by keycodec.c (see doc/FORMAT.md). Key byte
**   order is SQLite's order, so key ranges and ORDER BY on the key are
**   answered by the engine. One metadata record (key 0x00 'M', below every
**   row key) holds a signature of the table's layout, checked at connect
**   time so that a directory is never read as another table's data. A table
**   whose directory is missing or foreign still connects (so that it can be
**   dropped); every use reports why and tries to open it again.
**
** PATHS
**
**   Default directory: "<database file>-<table>.strata". path= is taken
**   relative to the directory of the database file (so the table is found
**   whatever the working directory), or to the working directory for a
**   database without a file, which must give path=. DROP TABLE deletes the
**   directory (not inside a transaction: ROLLBACK could not bring the data
**   back); ALTER TABLE RENAME moves a default-named directory; CREATE refuses
**   a directory that holds rows or another table, and takes over only the
**   empty leftover of a CREATE that was rolled back.
**
** AFFINITY AND CONSTRAINTS
**
**   SQLite applies no affinity, NOT NULL or DEFAULT to virtual tables. xUpdate
**   applies affinity exactly as for an ordinary table (numeric affinity via
**   sqlite3_value_numeric_type() plus SQLite's real-to-integer rule, text
**   affinity via sqlite3_value_text()), then NOT NULL, then the key checks.
**   SQLite passes an omitted column as NULL, so a column's DEFAULT is used
**   when an INSERT gives it NULL (an explicit NULL cannot be told apart).
**   CHECK, UNIQUE, REFERENCES, AUTOINCREMENT, GENERATED and ON CONFLICT
**   clauses are refused at CREATE time with a clear error. SQLite refuses
**   UPSERT (INSERT ... ON CONFLICT DO) on every virtual table: INSERT OR
**   REPLACE and INSERT OR IGNORE are the equivalents.
**
** CONFLICTS
**
**   SQLITE_VTAB_CONSTRAINT_SUPPORT is declared and the conflict mode comes
**   from sqlite3_vtab_on_conflict(): OR REPLACE overwrites (and moves an
**   UPDATEd row onto an existing key), OR IGNORE returns SQLITE_CONSTRAINT,
**   which SQLite turns into "skip this row", and ABORT/FAIL/ROLLBACK return
**   SQLITE_CONSTRAINT_PRIMARYKEY or _NOTNULL with SQLite's message. Every
**   xUpdate is atomic (several engine writes are wrapped in an engine
**   savepoint), so a failing row leaves nothing behind; statement and
**   transaction rollback come from xSavepoint/xRollbackTo and xRollback.
**
** TRANSACTIONS AND SNAPSHOTS
**
**   Each connection (sqlite3_vtab) has its own state, and each table is its
**   own engine. xBegin starts an engine write transaction (plus a base
**   savepoint: SQLite rolls back to "savepoint -1", the transaction's start),
**   xSync commits it, so that a failed commit fails the SQL COMMIT, and
**   xRollback drops it. SQLite savepoint levels map to engine savepoints
**   (aSp[]). A transaction that writes several strata tables commits them one
**   after the other (there is no commit across engines). Reads:
**     - inside a write transaction, through it (own writes seen);
**     - inside BEGIN ... COMMIT: the first read or write of the transaction
**       begins read transactions on every strata table of the connection at
**       once (TXN_READ), so the SQL transaction reads one moment throughout;
**       xBegin turns a table's read transaction into its write transaction,
**       so a write after someone else's commit gets SQLITE_BUSY, as in WAL
**       mode. SQLite does not tell a virtual table when a read-only
**       transaction ends: any call that finds the connection in autocommit
**       mode again ends them (a read-only transaction that follows another
**       one with no statement outside a transaction in between keeps the
**       older snapshot; it is still one consistent snapshot);
**     - otherwise through one snapshot shared by the open cursors of the
**       table in the connection (like SQLite's read transaction while
**       statements run).
**   A second writer gets the engine's STRATA_BUSY (after busy_timeout) as
**   SQLITE_BUSY; between connections of one database file SQLite's own file
**   lock usually answers first (use WAL mode for readers beside a writer).
**   Iterators of a transaction must not outlive it or a rollback_to: open
**   cursors copy their current row, drop the iterator and continue on a new
**   one positioned after that row (csrSave/csrRestore).
**
** QUERY PLANS
**
**   xBestIndex uses equality (=, IS, IN all-at-once) on a prefix of the key
**   columns and range constraints (<, <=, >, >=) on the next one, in any
**   number and order. xFilter gives each right-hand value the key column's
**   affinity, as SQLite's comparison would, encodes it like a key and builds
**   key ranges; a full key becomes point lookups (strata_txn_get or
**   strata_get), anything else ranges scanned in key order or in reverse, so
**   ORDER BY on the key (or the part after the equality prefix) is consumed.
**   Used constraints are omitted (SQLite does not re-check them) except on a
**   TEXT key column: whether SQLite converts a number to text there depends
**   on the right-hand side's affinity, which xBestIndex cannot see (see
**   keyOmit). OFFSET is applied by skipping entries when every constraint is
**   omitted. LIMITATION: a number compared with a TEXT key column, when the
**   right-hand side is a column with numeric affinity, matches only the
**   canonical text of the number ('5', not '5.0'); a range on a TEXT key
**   against a column without affinity is evaluated with text affinity.
**
** SHARING
**
**   Connections of one process that open the same table share one strata
**   handle: a registry keyed by the directory's real path, refcounted and
**   guarded by a mutex. DROP TABLE closes the handle and deletes the
**   directory once the last connection lets go.
**
** ERRORS
**
**   Engine codes map to SQLite codes in one place (sqliteRc); the engine's
**   message goes into zErrMsg, prefixed with "strata: ".
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include "keycodec.h"
#include "strata.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef sqlite3_int64 i64;
typedef uint64_t u64;
typedef unsigned char u8;

_Static_assert(KC_INTEGER == SQLITE_INTEGER && KC_REAL == SQLITE_FLOAT && KC_TEXT == SQLITE_TEXT &&
                   KC_BLOB == SQLITE_BLOB && KC_NULL == SQLITE_NULL,
               "keycodec type codes must equal SQLite's");

/* Affinity letters, as SQLite's internal ones. */
#define AFF_BLOB 'A'
#define AFF_TEXT 'B'
#define AFF_NUMERIC 'C'
#define AFF_INTEGER 'D'
#define AFF_REAL 'E'

#define KIND_ROWID 0
#define KIND_IPK 1
#define KIND_PK 2

#define TXN_NONE 0
#define TXN_READ 1
#define TXN_WRITE 2

#define MAX_KEY_COLS 32
#define META_FORMAT 1

/* How xNext steps a scan (Cursor.eStep). */
#define STEP_NEXT 0 /* forward */
#define STEP_PREV 1 /* backward (ORDER BY ... DESC) */
#define STEP_SKIP 2 /* forward, counting rows ahead (COUNTING SCANS) */

/* An iterator a cursor keeps from an earlier statement (CURSOR REUSE). */
#define KEPT_NONE 0
#define KEPT_DB 1  /* of the committed state: refresh before use */
#define KEPT_TXN 2 /* of the connection's transaction: valid until it ends or rolls back */

/* Where a cursor reads from. */
#define SRC_NONE 0
#define SRC_SNAP 1   /* the connection's shared statement snapshot */
#define SRC_TXN 2    /* the connection's engine transaction */
#define SRC_LATEST 3 /* the newest state (a cursor reseated after its txn ended) */

typedef struct Column Column;
typedef struct Cursor Cursor;
typedef struct KeyRange KeyRange;
typedef struct Options Options;
typedef struct Shared Shared;
typedef struct TableDef TableDef;
typedef struct Vtab Vtab;

struct Column {
  char *zName;   /* dequoted name */
  char *zType;   /* declared type as re-emitted to SQLite, or NULL */
  char cAff;     /* AFF_* */
  u8 bNotNull;   /* NOT NULL (key columns of a PK table are always) */
  int iKey;      /* position in the key, or -1 */
  int iField;    /* position in the row value, or -1 for key columns */
  u8 bKeyInt;    /* the whole key, INTEGER or NUMERIC affinity (see strataColumn) */
  char *zColl;   /* COLLATE name, or NULL */
  char *zDflt;   /* DEFAULT as an SQL expression, or NULL */
  u8 bDfltConst; /* zDflt is a literal: evaluated once and cached */
  sqlite3_value *pDflt;  /* cached literal default */
  sqlite3_stmt *pDfltStmt; /* "SELECT <default>" for non-literal defaults */
};

struct Options {
  char *zPath;       /* as given, or NULL for the default */
  int compression;   /* -1: engine default */
  int zstdLevel;     /* 0: engine default */
  i64 blockSize, memtableSize, cacheSize; /* 0: engine default */
  int bloomBits;     /* -1: engine default */
  int sync;          /* -1: engine default */
  int busyTimeout;   /* -1: engine default */
  int mmap;          /* -1: engine default */
  int verify;        /* -1: engine default; 1: 'always'; 0: 'once' */
};

struct TableDef {
  int nCol;
  Column *aCol;
  int eKind;
  int nKey;               /* columns in the key (1 for ROWID/IPK) */
  int aiKey[MAX_KEY_COLS]; /* column of each key position (-1: the implicit rowid) */
  int nField;             /* columns stored in the row value */
  int *aiField;           /* column of each row field */
  char *zKeyCol;          /* PK kind: name of the hidden key column */
  Options opt;
};

/* One open engine, shared by every connection of the process that uses the
** directory. Counters are for strata_stats and the query-plan tests. */
struct Shared {
  char *zReal; /* real path of the directory */
  strata *pDb;
  int nRef;
  int bDoomed; /* DROP TABLE happened: destroy at the last release */
  Shared *pNext;
  _Atomic u64 nRowsVisited, nPointLookups, nSeeks, nIters;
};

struct KeyRange {
  size_t iLo, nLo; /* lower bound (inclusive) in Cursor.aBound, nLo==0: none */
  size_t iHi, nHi; /* upper bound (exclusive), nHi==0: none */
};

struct Vtab {
  sqlite3_vtab base;
  sqlite3 *db;
  char *zDb, *zName;
  char *zPath; /* directory as resolved */
  char *zSig;  /* layout signature (defSignature) */
  char *zNotOpen; /* why the engine could not be opened (pShared is NULL) */
  TableDef *pDef;
  Shared *pShared;
  Vtab *pNextVtab; /* global list, for strata_stats() and friends */
  /* Transaction state of this connection. */
  strata_txn *pTxn;
  int eTxn;
  int *aSp, nSp, nSpAlloc; /* engine savepoint of each SQLite savepoint level */
  int iBaseSp;             /* engine savepoint at the start of the write txn */
  const strata_snapshot *pSnap;
  int nSnapRef;
  Cursor *pCsrList;
  Cursor *pIdleCsr; /* a closed cursor kept with its buffers and iterator (CURSOR REUSE) */
  i64 iNextRowid;
  int bNextRowid;
  /* xUpdate scratch space, reused. */
  u8 *aKey, *aOldKey, *aRow;
  size_t nKeyAlloc, nOldKeyAlloc, nRowAlloc;
  KcValue *aVal;      /* new column values */
  KcValue *aFieldVal; /* the same, gathered in row-field order */
  sqlite3_value **apDup;
  strata_value probe;
};

/* Encoded key components (of constraint values), in one growing buffer. */
typedef struct CompList {
  u8 *a; /* concatenated components */
  size_t n, nAlloc;
  size_t *aOff; /* start of each component; aOff[nComp] == n */
  int nComp, nCompAlloc;
} CompList;

/* What the constraints say about one key position: equality candidates and
** the tightest lower and upper bounds (components stored in `bounds`). */
typedef struct PosCons {
  int bEq;       /* has = or IN: vals holds the candidates */
  int bEmpty;    /* no row can match (NULL operand, contradiction) */
  CompList vals;
  int bLo, bHi, bLoIncl, bHiIncl;
  size_t iLo, nLo, iHi, nHi; /* offsets into bounds.a */
  CompList bounds;
} PosCons;

struct Cursor {
  sqlite3_vtab_cursor base;
  Cursor *pNextCsr;
  /* Source. */
  int eSrc;
  strata_iter *pIter;
  int eKept;              /* pIter is kept from an earlier statement: KEPT_* */
  u64 iKeptAt;            /* nCursorOpens when it was kept */
  int bIterNoFill;        /* pIter was made with fill_cache = 0 */
  int bNoFill;            /* what this filter wants (see FULL SCANS) */
  /* Plan of the current xFilter. */
  int bDesc, bPoint, bEof;
  KeyRange *aRange;
  int nRange, nRangeAlloc, iRange;
  u8 *aBound;
  size_t nBound, nBoundAlloc;
  i64 nSkip;
  /* Current row. */
  const u8 *pKey, *pVal;
  size_t nKey, nVal;
  int bNoCols;            /* the plan reads no column (IDX_NOCOLS) */
  int bLazyRow;           /* the row is the iterator's entry, not fetched yet */
  /* COUNTING SCANS: rows counted ahead of the cursor's row. */
  int eStep;              /* how xNext steps: STEP_* (from bDesc and the plan) */
  void (*xIterStep)(strata_iter *); /* strata_iter_next or _prev, by bDesc */
  int bNoSkip;            /* a row was fetched: no more counting ahead */
  int bSkipped;           /* the iterator may be ahead of the cursor's row */
  u64 nAhead;             /* rows counted that the cursor has not reached */
  u64 nSkipGot;           /* rows the last strata_iter_skip counted */
  u64 nSkipBatch;         /* rows the next strata_iter_skip asks for */
  u8 *aSkipKey;           /* the key of the row that the last skip started at */
  size_t nSkipKey, nSkipKeyAlloc;
  const u8 *pStop;        /* scan range: the bound the scan moves towards, */
  size_t nStop;           /* or nStop 0 (see csrSetStop) */
  strata_value point;     /* value of a point lookup */
  u8 *aCopy;              /* key+value copied when reseated */
  size_t nCopyAlloc;
  int bSaved;             /* the iterator was dropped with the row copied: restore */
  int bStepDone;          /* after a restore: the iterator is already past the row */
  int bKeyParsed, bRowParsed;
  size_t aKeyOff[MAX_KEY_COLS + 1];
  KcField *aField;
  int nField;
  u64 mReal;
  int bShape;             /* aField, nField, mReal are those of the row shape below */
  size_t nShapeVal;       /* ROW SHAPES: the length of that row, */
  u64 wShape, mShape;     /* its first 8 bytes masked to its header */
  u8 *aTmp;
  size_t nTmpAlloc;
  /* xFilter scratch, kept between calls so that a filter allocates nothing
  ** once the buffers have grown (see CURSOR REUSE). */
  PosCons aPc[MAX_KEY_COLS];
  CompList scratch, spare;
  int *aIx;
  int nIxAlloc;
  u8 *aPre;
  size_t nPreAlloc;
  /* Counters for strata_stats, added to the shared ones in batches: a
  ** per-row atomic add costs more than the row. */
  u64 nVisited, nLookups, nSeeksDone, nItersMade;
};

static pthread_mutex_t regMutex = PTHREAD_MUTEX_INITIALIZER;
static Shared *regShared;
static Vtab *regVtabs;
/* Read transactions open in the process (eTxn == TXN_READ), so that the
** common case of none skips endStaleReads' walk under regMutex. */
static _Atomic int nReadTxns;
/* Cursors opened in the process: the clock by which kept iterators age. */
static _Atomic u64 nCursorOpens;
#define KEPT_MAX_AGE 4096    /* opens after which an unused kept iterator is freed */
#define KEPT_SWEEP_EVERY 256 /* opens between two looks for such iterators */

static const u8 aMetaKey[2] = {KC_TAG_META, 'M'};
static const u8 aFirstRowKey[1] = {KC_TAG_NULL};

/* ================================================================ errors */

/* The one place engine codes become SQLite codes. */
static int sqliteRc(int rc) {
  switch (rc) {
    case STRATA_OK:
    case STRATA_NOTFOUND:
      return SQLITE_OK;
    case STRATA_BUSY:
      return SQLITE_BUSY;
    case STRATA_NOMEM:
      return SQLITE_NOMEM;
    case STRATA_READONLY:
      return SQLITE_READONLY;
    case STRATA_IOERR:
      return SQLITE_IOERR;
    case STRATA_CORRUPT:
      return SQLITE_CORRUPT;
    case STRATA_FULL:
      return SQLITE_FULL;
    case STRATA_CANTOPEN:
      return SQLITE_CANTOPEN;
    case STRATA_TOOBIG:
      return SQLITE_TOOBIG;
    case STRATA_MISUSE:
      return SQLITE_MISUSE;
    default:
      return SQLITE_ERROR;
  }
}

/* Replace the vtab's error message. Returns rc. */
static int vtabErr(sqlite3_vtab *p, int rc, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  sqlite3_free(p->zErrMsg);
  p->zErrMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  return rc;
}

/* An engine error: the mapped code, with the engine's message. */
static int engineErr(sqlite3_vtab *p, int rcEngine) {
  return vtabErr(p, sqliteRc(rcEngine), "strata: %s", strata_errmsg());
}

/* ================================================================ buffers */

/* Make *pp hold at least n bytes. Returns SQLITE_OK or SQLITE_NOMEM. */
static int growBuf(u8 **pp, size_t *pnAlloc, size_t n) {
  if (n > *pnAlloc) {
    size_t nNew = *pnAlloc ? *pnAlloc : 64;
    u8 *p;
    while (nNew < n) nNew *= 2;
    p = sqlite3_realloc64(*pp, nNew);
    if (!p) return SQLITE_NOMEM;
    *pp = p;
    *pnAlloc = nNew;
  }
  return SQLITE_OK;
}

/* ================================================================ values */

/* SQLite's rule for storing a REAL in a numeric column as an INTEGER: the
** value is integral and strictly inside the int64 range. */
static int realToInt(double r, i64 *piOut) {
  i64 ix;
  if (r <= -9223372036854775808.0) {
    ix = INT64_MIN;
  } else if (r >= 9223372036854775808.0) {
    ix = INT64_MAX;
  } else {
    ix = (i64)r;
  }
  if (r == (double)ix && ix > INT64_MIN && ix < INT64_MAX) {
    *piOut = ix;
    return 1;
  }
  return 0;
}

static void valueToKc(sqlite3_value *v, KcValue *p) {
  p->eType = sqlite3_value_type(v);
  switch (p->eType) {
    case SQLITE_INTEGER:
      p->i = sqlite3_value_int64(v);
      break;
    case SQLITE_FLOAT:
      p->r = sqlite3_value_double(v);
      break;
    case SQLITE_TEXT:
      p->z = sqlite3_value_text(v);
      p->n = (size_t)sqlite3_value_bytes(v);
      if (!p->z) p->z = (const u8 *)"";
      break;
    case SQLITE_BLOB:
      p->z = sqlite3_value_blob(v);
      p->n = (size_t)sqlite3_value_bytes(v);
      if (!p->z) p->z = (const u8 *)"";
      break;
    default:
      p->eType = SQLITE_NULL;
      break;
  }
}

static int hasDigit(const u8 *z, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (z[i] >= '0' && z[i] <= '9') return 1;
  }
  return 0;
}

/* Integers a REAL column stores as integers (others become doubles). */
#define REAL_EXACT_INT ((i64)1 << 47)

/* Apply affinity cAff to v as SQLite does when storing into a column (bStore)
** or when comparing a column with v (!bStore: no real-to-integer step, which
** does not change the key encoding anyway). The result goes to *pOut; if a
** converted copy had to be made it is returned in *ppDup, to be freed by the
** caller with sqlite3_value_free() once *pOut is no longer used. Returns
** SQLITE_OK or SQLITE_NOMEM. */
static int applyAffinity(sqlite3_value *v, char cAff, int bStore, KcValue *pOut,
                         sqlite3_value **ppDup) {
  int eType = sqlite3_value_type(v);
  *ppDup = NULL;
  if (cAff == AFF_NUMERIC || cAff == AFF_INTEGER || cAff == AFF_REAL) {
    if (eType == SQLITE_TEXT) {
      const u8 *z = sqlite3_value_text(v);
      if (z && hasDigit(z, (size_t)sqlite3_value_bytes(v))) {
        sqlite3_value *pDup = sqlite3_value_dup(v);
        if (!pDup) return SQLITE_NOMEM;
        sqlite3_value_numeric_type(pDup);
        *ppDup = pDup;
        v = pDup;
      }
    }
    valueToKc(v, pOut);
    if (bStore && pOut->eType == SQLITE_FLOAT) {
      i64 ix;
      if (realToInt(pOut->r, &ix) &&
          (cAff != AFF_REAL || (ix >= -REAL_EXACT_INT && ix < REAL_EXACT_INT))) {
        pOut->eType = SQLITE_INTEGER;
        pOut->i = ix;
      }
    } else if (bStore && cAff == AFF_REAL && pOut->eType == SQLITE_INTEGER &&
               (pOut->i < -REAL_EXACT_INT || pOut->i >= REAL_EXACT_INT)) {
      /* As SQLite: a REAL column keeps an integer exactly only up to 2^47. */
      pOut->eType = SQLITE_FLOAT;
      pOut->r = (double)pOut->i;
    }
    return SQLITE_OK;
  }
  if (cAff == AFF_TEXT && (eType == SQLITE_INTEGER || eType == SQLITE_FLOAT)) {
    sqlite3_value *pDup = sqlite3_value_dup(v);
    if (!pDup || !sqlite3_value_text(pDup)) {
      sqlite3_value_free(pDup);
      return SQLITE_NOMEM;
    }
    *ppDup = pDup;
    pOut->eType = SQLITE_TEXT;
    pOut->z = sqlite3_value_text(pDup);
    pOut->n = (size_t)sqlite3_value_bytes(pDup);
    return SQLITE_OK;
  }
  valueToKc(v, pOut);
  return SQLITE_OK;
}

/* Set the result of ctx to v, as a column of affinity cAff reads back: a
** REAL column returns its integers as REAL. bReal forces REAL too. */
static void resultKc(sqlite3_context *ctx, const KcValue *v, char cAff, int bReal) {
  switch (v->eType) {
    case SQLITE_INTEGER:
      if (cAff == AFF_REAL || bReal) {
        sqlite3_result_double(ctx, (double)v->i);
      } else {
        sqlite3_result_int64(ctx, v->i);
      }
      break;
    case SQLITE_FLOAT:
      sqlite3_result_double(ctx, v->r);
      break;
    case SQLITE_TEXT:
      sqlite3_result_text64(ctx, (const char *)v->z, v->n, SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    case SQLITE_BLOB:
      sqlite3_result_blob64(ctx, v->z, v->n, SQLITE_TRANSIENT);
      break;
    default:
      sqlite3_result_null(ctx);
      break;
  }
}

/* ================================================================ parsing */

/* A tiny tokenizer for the CREATE VIRTUAL TABLE arguments. */
#define TK_EOF 0
#define TK_ID 1     /* bare word */
#define TK_QID 2    /* "quoted", [bracketed] or `quoted` identifier */
#define TK_STR 3    /* 'string' */
#define TK_NUM 4
#define TK_BLOB 5   /* x'hex' */
#define TK_PUNCT 6  /* one character */
#define TK_ERR 7

typedef struct Token {
  int eType;
  const char *z;
  int n;
} Token;

typedef struct Lexer {
  const char *z;
  int i;
  Token t; /* current token */
} Lexer;

static int isIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         (unsigned char)c >= 0x80 || c == '$';
}

static void lexNext(Lexer *p) {
  const char *z = p->z;
  int i = p->i;
  for (;;) {
    while (z[i] == ' ' || z[i] == '\t' || z[i] == '\n' || z[i] == '\r' || z[i] == '\f' ||
           z[i] == '\v') {
      i++;
    }
    if (z[i] == '-' && z[i + 1] == '-') {
      while (z[i] && z[i] != '\n') i++;
      continue;
    }
    if (z[i] == '/' && z[i + 1] == '*') {
      i += 2;
      while (z[i] && !(z[i] == '*' && z[i + 1] == '/')) i++;
      if (z[i]) i += 2;
      continue;
    }
    break;
  }
  p->t.z = &z[i];
  if (z[i] == 0) {
    p->t.eType = TK_EOF;
    p->t.n = 0;
  } else if (z[i] == '\'' || z[i] == '"' || z[i] == '`' || z[i] == '[') {
    char cEnd = z[i] == '[' ? ']' : z[i];
    int j = i + 1;
    for (;;) {
      if (z[j] == 0) {
        p->t.eType = TK_ERR;
        break;
      }
      if (z[j] == cEnd) {
        if (cEnd != ']' && z[j + 1] == cEnd) {
          j += 2;
          continue;
        }
        j++;
        p->t.eType = z[i] == '\'' ? TK_STR : TK_QID;
        break;
      }
      j++;
    }
    p->t.n = j - i;
    i = j;
  } else if ((z[i] == 'x' || z[i] == 'X') && z[i + 1] == '\'') {
    int j = i + 2;
    while (z[j] && z[j] != '\'') j++;
    p->t.eType = z[j] ? TK_BLOB : TK_ERR;
    if (z[j]) j++;
    p->t.n = j - i;
    i = j;
  } else if ((z[i] >= '0' && z[i] <= '9') || (z[i] == '.' && z[i + 1] >= '0' && z[i + 1] <= '9')) {
    int j = i;
    while (isIdChar(z[j]) || z[j] == '.' ||
           ((z[j] == '+' || z[j] == '-') && (z[j - 1] == 'e' || z[j - 1] == 'E'))) {
      j++;
    }
    p->t.eType = TK_NUM;
    p->t.n = j - i;
    i = j;
  } else if (isIdChar(z[i])) {
    int j = i;
    while (isIdChar(z[j])) j++;
    p->t.eType = TK_ID;
    p->t.n = j - i;
    i = j;
  } else {
    p->t.eType = TK_PUNCT;
    p->t.n = 1;
    i++;
  }
  p->i = i;
}

static void lexInit(Lexer *p, const char *z) {
  p->z = z;
  p->i = 0;
  lexNext(p);
}

/* Is the current token the keyword zKw (case-insensitive)? */
static int lexIs(Lexer *p, const char *zKw) {
  return p->t.eType == TK_ID && (int)strlen(zKw) == p->t.n &&
         sqlite3_strnicmp(p->t.z, zKw, p->t.n) == 0;
}

static int lexIsPunct(Lexer *p, char c) { return p->t.eType == TK_PUNCT && p->t.z[0] == c; }

/* The dequoted text of a name or string token (sqlite3_malloc'd). */
static char *tokenText(const Token *t) {
  char *z;
  int i, j;
  if (t->eType != TK_QID && t->eType != TK_STR) return sqlite3_mprintf("%.*s", t->n, t->z);
  z = sqlite3_malloc(t->n + 1);
  if (!z) return NULL;
  for (i = 1, j = 0; i < t->n - 1; i++) {
    z[j++] = t->z[i];
    if (t->z[0] != '[' && t->z[i] == t->z[0]) i++;
  }
  z[j] = 0;
  return z;
}

/* Words that end a type name and start a column constraint. */
static int isConstraintWord(Lexer *p) {
  static const char *az[] = {"CONSTRAINT", "PRIMARY", "NOT",        "NULL",      "UNIQUE",
                             "CHECK",      "DEFAULT", "COLLATE",    "REFERENCES", "GENERATED",
                             "AS",         "HIDDEN",  "AUTOINCREMENT"};
  size_t i;
  for (i = 0; i < sizeof(az) / sizeof(az[0]); i++) {
    if (lexIs(p, az[i])) return 1;
  }
  return 0;
}

/* SQLite's rules for the affinity of a declared type. */
static char typeAffinity(const char *zType) {
  char aUp[256];
  size_t i, n;
  if (!zType) return AFF_BLOB;
  n = strlen(zType);
  if (n >= sizeof(aUp)) n = sizeof(aUp) - 1;
  for (i = 0; i < n; i++) {
    char c = zType[i];
    aUp[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
  }
  aUp[n] = 0;
  if (strstr(aUp, "INT")) return AFF_INTEGER;
  if (strstr(aUp, "CHAR") || strstr(aUp, "CLOB") || strstr(aUp, "TEXT")) return AFF_TEXT;
  if (strstr(aUp, "BLOB") || n == 0) return AFF_BLOB;
  if (strstr(aUp, "REAL") || strstr(aUp, "FLOA") || strstr(aUp, "DOUB")) return AFF_REAL;
  return AFF_NUMERIC;
}

static void defFree(TableDef *pDef) {
  int i;
  if (!pDef) return;
  for (i = 0; i < pDef->nCol; i++) {
    Column *c = &pDef->aCol[i];
    sqlite3_free(c->zName);
    sqlite3_free(c->zType);
    sqlite3_free(c->zColl);
    sqlite3_free(c->zDflt);
    sqlite3_value_free(c->pDflt);
    sqlite3_finalize(c->pDfltStmt);
  }
  sqlite3_free(pDef->aCol);
  sqlite3_free(pDef->aiField);
  sqlite3_free(pDef->zKeyCol);
  sqlite3_free(pDef->opt.zPath);
  sqlite3_free(pDef);
}

static int findColumn(TableDef *pDef, const char *zName) {
  int i;
  for (i = 0; i < pDef->nCol; i++) {
    if (sqlite3_stricmp(pDef->aCol[i].zName, zName) == 0) return i;
  }
  return -1;
}

/* Parse a size with an optional k/m/g suffix (powers of 1024). */
static int parseSize(const char *z, i64 *pOut) {
  char *zEnd;
  long long v;
  errno = 0;
  v = strtoll(z, &zEnd, 10);
  if (zEnd == z || errno || v < 0) return 0;
  if (*zEnd == 'k' || *zEnd == 'K') {
    v *= 1024;
    zEnd++;
  } else if (*zEnd == 'm' || *zEnd == 'M') {
    v *= 1024 * 1024;
    zEnd++;
  } else if (*zEnd == 'g' || *zEnd == 'G') {
    v *= 1024LL * 1024 * 1024;
    zEnd++;
  }
  if ((*zEnd == 'b' || *zEnd == 'B') && zEnd[1] == 0) zEnd++;
  if (*zEnd) return 0;
  *pOut = v;
  return 1;
}

static int parseInt(const char *z, int lo, int hi, int *pOut) {
  char *zEnd;
  long v;
  errno = 0;
  v = strtol(z, &zEnd, 10);
  if (zEnd == z || *zEnd || errno || v < lo || v > hi) return 0;
  *pOut = (int)v;
  return 1;
}

/* One "name = value" argument. Returns SQLITE_OK or SQLITE_ERROR with *pzErr. */
static int parseOption(TableDef *pDef, const char *zName, const char *zVal, char **pzErr) {
  Options *o = &pDef->opt;
  int ok = 1;
  if (sqlite3_stricmp(zName, "path") == 0) {
    if (!zVal[0]) {
      ok = 0;
    } else {
      sqlite3_free(o->zPath);
      o->zPath = sqlite3_mprintf("%s", zVal);
    }
  } else if (sqlite3_stricmp(zName, "compression") == 0) {
    if (sqlite3_stricmp(zVal, "none") == 0) {
      o->compression = STRATA_COMPRESSION_NONE;
    } else if (sqlite3_stricmp(zVal, "zstd") == 0) {
      o->compression = STRATA_COMPRESSION_ZSTD;
    } else {
      ok = 0;
    }
  } else if (sqlite3_stricmp(zName, "zstd_level") == 0 ||
             sqlite3_stricmp(zName, "compression_level") == 0) {
    ok = parseInt(zVal, -7, 22, &o->zstdLevel) && o->zstdLevel != 0;
  } else if (sqlite3_stricmp(zName, "block_size") == 0) {
    ok = parseSize(zVal, &o->blockSize) && o->blockSize >= 256 && o->blockSize <= (64 << 20);
  } else if (sqlite3_stricmp(zName, "memtable_size") == 0) {
    ok = parseSize(zVal, &o->memtableSize) && o->memtableSize >= 4096 &&
         o->memtableSize <= ((i64)1 << 34);
  } else if (sqlite3_stricmp(zName, "cache_size") == 0) {
    ok = parseSize(zVal, &o->cacheSize);
  } else if (sqlite3_stricmp(zName, "bloom_bits") == 0) {
    ok = parseInt(zVal, 0, 64, &o->bloomBits);
  } else if (sqlite3_stricmp(zName, "sync") == 0) {
    if (sqlite3_stricmp(zVal, "off") == 0) {
      o->sync = STRATA_SYNC_OFF;
    } else if (sqlite3_stricmp(zVal, "normal") == 0) {
      o->sync = STRATA_SYNC_NORMAL;
    } else if (sqlite3_stricmp(zVal, "full") == 0) {
      o->sync = STRATA_SYNC_FULL;
    } else {
      ok = 0;
    }
  } else if (sqlite3_stricmp(zName, "busy_timeout") == 0) {
    ok = parseInt(zVal, 0, 24 * 3600 * 1000, &o->busyTimeout);
  } else if (sqlite3_stricmp(zName, "mmap") == 0) {
    if (sqlite3_stricmp(zVal, "on") == 0) {
      o->mmap = 1;
    } else if (sqlite3_stricmp(zVal, "off") == 0) {
      o->mmap = 0;
    } else {
      ok = 0;
    }
  } else if (sqlite3_stricmp(zName, "verify") == 0) {
    if (sqlite3_stricmp(zVal, "once") == 0) {
      o->verify = 0;
    } else if (sqlite3_stricmp(zVal, "always") == 0) {
      o->verify = 1;
    } else {
      ok = 0;
    }
  } else {
    *pzErr = sqlite3_mprintf(
        "strata: unknown option \"%s\" (options: path, compression, zstd_level, block_size, "
        "memtable_size, cache_size, bloom_bits, sync, busy_timeout, mmap, verify)",
        zName);
    return SQLITE_ERROR;
  }
  if (!ok) {
    *pzErr = sqlite3_mprintf("strata: bad value for option %s: '%s'", zName, zVal);
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

/* Parse "PRIMARY KEY ( a, b, ... )" after "PRIMARY"; columns are recorded by
** name in azPk. */
static int parsePkList(Lexer *p, char **azPk, int *pnPk, char **pzErr) {
  lexNext(p); /* PRIMARY */
  if (!lexIs(p, "KEY")) goto syntax;
  lexNext(p);
  if (!lexIsPunct(p, '(')) goto syntax;
  lexNext(p);
  for (;;) {
    if (p->t.eType != TK_ID && p->t.eType != TK_QID && p->t.eType != TK_STR) goto syntax;
    if (*pnPk >= MAX_KEY_COLS) {
      *pzErr = sqlite3_mprintf("strata: a primary key may have at most %d columns", MAX_KEY_COLS);
      return SQLITE_ERROR;
    }
    azPk[(*pnPk)++] = tokenText(&p->t);
    lexNext(p);
    if (lexIs(p, "ASC")) {
      lexNext(p);
    } else if (lexIs(p, "DESC")) {
      *pzErr = sqlite3_mprintf("strata: descending primary key columns are not supported");
      return SQLITE_ERROR;
    }
    if (lexIsPunct(p, ',')) {
      lexNext(p);
      continue;
    }
    if (lexIsPunct(p, ')')) break;
    goto syntax;
  }
  lexNext(p);
  if (p->t.eType != TK_EOF) {
    *pzErr = sqlite3_mprintf("strata: unsupported clause after PRIMARY KEY(...): %s", p->t.z);
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
syntax:
  *pzErr = sqlite3_mprintf("strata: syntax error in PRIMARY KEY clause near \"%s\"", p->t.z);
  return SQLITE_ERROR;
}

/* Parse one column definition into *c. A PRIMARY KEY constraint on it sets
** *pbPk. */
static int parseColumn(Lexer *p, Column *c, int *pbPk, char **pzErr) {
  sqlite3_str *pType;
  int nTypeTok = 0;
  c->zName = tokenText(&p->t);
  c->iKey = -1;
  c->iField = -1;
  lexNext(p);
  /* Type name: words, optionally "(n)" or "(n, m)". */
  pType = sqlite3_str_new(NULL);
  while ((p->t.eType == TK_ID || p->t.eType == TK_QID) && !isConstraintWord(p)) {
    char *zWord = tokenText(&p->t);
    int bPlain = p->t.eType == TK_ID;
    if (nTypeTok++) sqlite3_str_appendchar(pType, 1, ' ');
    if (bPlain) {
      sqlite3_str_appendall(pType, zWord ? zWord : "");
    } else {
      sqlite3_str_appendf(pType, "\"%w\"", zWord ? zWord : "");
    }
    sqlite3_free(zWord);
    lexNext(p);
  }
  if (nTypeTok && lexIsPunct(p, '(')) {
    int nArg = 0;
    sqlite3_str_appendchar(pType, 1, '(');
    lexNext(p);
    for (;;) {
      int bNeg = 0;
      if (lexIsPunct(p, '+') || lexIsPunct(p, '-')) {
        bNeg = p->t.z[0] == '-';
        lexNext(p);
      }
      if (p->t.eType != TK_NUM) {
        sqlite3_free(sqlite3_str_finish(pType));
        *pzErr = sqlite3_mprintf("strata: bad type for column %s", c->zName);
        return SQLITE_ERROR;
      }
      if (nArg++) sqlite3_str_appendchar(pType, 1, ',');
      sqlite3_str_appendf(pType, "%s%.*s", bNeg ? "-" : "", p->t.n, p->t.z);
      lexNext(p);
      if (lexIsPunct(p, ',') && nArg < 2) {
        lexNext(p);
        continue;
      }
      if (lexIsPunct(p, ')')) break;
      sqlite3_free(sqlite3_str_finish(pType));
      *pzErr = sqlite3_mprintf("strata: bad type for column %s", c->zName);
      return SQLITE_ERROR;
    }
    sqlite3_str_appendchar(pType, 1, ')');
    lexNext(p);
  }
  c->zType = sqlite3_str_finish(pType);
  if (c->zType && !c->zType[0]) {
    sqlite3_free(c->zType);
    c->zType = NULL;
  }
  c->cAff = typeAffinity(c->zType);

  /* Column constraints. */
  while (p->t.eType != TK_EOF) {
    if (lexIs(p, "CONSTRAINT")) {
      lexNext(p);
      if (p->t.eType != TK_ID && p->t.eType != TK_QID) goto syntax;
      lexNext(p);
    } else if (lexIs(p, "PRIMARY")) {
      lexNext(p);
      if (!lexIs(p, "KEY")) goto syntax;
      lexNext(p);
      if (lexIs(p, "ASC")) {
        lexNext(p);
      } else if (lexIs(p, "DESC")) {
        *pzErr = sqlite3_mprintf("strata: descending primary key columns are not supported");
        return SQLITE_ERROR;
      }
      if (lexIs(p, "ON")) goto conflict_clause;
      if (lexIs(p, "AUTOINCREMENT")) {
        *pzErr = sqlite3_mprintf("strata: AUTOINCREMENT is not supported (column %s)", c->zName);
        return SQLITE_ERROR;
      }
      *pbPk = 1;
    } else if (lexIs(p, "NOT")) {
      lexNext(p);
      if (!lexIs(p, "NULL")) goto syntax;
      lexNext(p);
      if (lexIs(p, "ON")) goto conflict_clause;
      c->bNotNull = 1;
    } else if (lexIs(p, "NULL")) {
      lexNext(p);
    } else if (lexIs(p, "COLLATE")) {
      lexNext(p);
      if (p->t.eType != TK_ID && p->t.eType != TK_QID && p->t.eType != TK_STR) goto syntax;
      sqlite3_free(c->zColl);
      c->zColl = tokenText(&p->t);
      lexNext(p);
    } else if (lexIs(p, "DEFAULT")) {
      const char *zStart;
      lexNext(p);
      zStart = p->t.z;
      sqlite3_free(c->zDflt);
      c->zDflt = NULL;
      c->bDfltConst = 1;
      if (lexIsPunct(p, '(')) {
        int nDepth = 0;
        do {
          if (lexIsPunct(p, '(')) nDepth++;
          if (lexIsPunct(p, ')')) nDepth--;
          if (p->t.eType == TK_EOF || p->t.eType == TK_ERR) goto syntax;
          lexNext(p);
        } while (nDepth > 0);
        c->zDflt = sqlite3_mprintf("%.*s", (int)(p->t.z - zStart), zStart);
        c->bDfltConst = 0;
      } else if (lexIsPunct(p, '+') || lexIsPunct(p, '-')) {
        lexNext(p);
        if (p->t.eType != TK_NUM) goto syntax;
        lexNext(p);
        c->zDflt = sqlite3_mprintf("%.*s", (int)(p->t.z - zStart), zStart);
      } else if (p->t.eType == TK_STR || p->t.eType == TK_NUM || p->t.eType == TK_BLOB) {
        c->zDflt = sqlite3_mprintf("%.*s", p->t.n, p->t.z);
        lexNext(p);
      } else if (p->t.eType == TK_ID || p->t.eType == TK_QID) {
        if (lexIs(p, "CURRENT_TIME") || lexIs(p, "CURRENT_DATE") ||
            lexIs(p, "CURRENT_TIMESTAMP")) {
          c->zDflt = sqlite3_mprintf("%.*s", p->t.n, p->t.z);
          c->bDfltConst = 0;
        } else if (lexIs(p, "NULL") || lexIs(p, "TRUE") || lexIs(p, "FALSE")) {
          c->zDflt = sqlite3_mprintf("%.*s", p->t.n, p->t.z);
        } else {
          /* A bare word is a string, as in SQLite. */
          char *zWord = tokenText(&p->t);
          c->zDflt = sqlite3_mprintf("'%q'", zWord ? zWord : "");
          sqlite3_free(zWord);
        }
        lexNext(p);
      } else {
        goto syntax;
      }
      if (!c->zDflt) return SQLITE_NOMEM;
    } else if (lexIs(p, "CHECK")) {
      *pzErr = sqlite3_mprintf(
          "strata: CHECK constraints are not supported (column %s): virtual tables cannot "
          "enforce them",
          c->zName);
      return SQLITE_ERROR;
    } else if (lexIs(p, "UNIQUE")) {
      *pzErr = sqlite3_mprintf(
          "strata: UNIQUE constraints are not supported (column %s): only the PRIMARY KEY is "
          "unique",
          c->zName);
      return SQLITE_ERROR;
    } else if (lexIs(p, "REFERENCES")) {
      *pzErr = sqlite3_mprintf("strata: foreign keys are not supported (column %s)", c->zName);
      return SQLITE_ERROR;
    } else if (lexIs(p, "GENERATED") || lexIs(p, "AS")) {
      *pzErr = sqlite3_mprintf("strata: generated columns are not supported (column %s)",
                               c->zName);
      return SQLITE_ERROR;
    } else if (lexIs(p, "HIDDEN")) {
      *pzErr = sqlite3_mprintf("strata: HIDDEN columns are not supported (column %s)", c->zName);
      return SQLITE_ERROR;
    } else {
      goto syntax;
    }
  }
  return SQLITE_OK;
conflict_clause:
  *pzErr = sqlite3_mprintf(
      "strata: ON CONFLICT clauses in column definitions are not supported (column %s); use "
      "INSERT OR REPLACE/IGNORE/...",
      c->zName);
  return SQLITE_ERROR;
syntax:
  *pzErr = sqlite3_mprintf("strata: syntax error in definition of column %s near \"%s\"",
                           c->zName ? c->zName : "?", p->t.z);
  return SQLITE_ERROR;
}

/* Parse the module arguments argv[3..argc-1] into a table definition.
** Returns SQLITE_OK and *ppDef, or an error code with *pzErr set. */
static int defParse(int argc, const char *const *argv, TableDef **ppDef, char **pzErr) {
  TableDef *pDef;
  char *azPk[MAX_KEY_COLS];
  int nPk = 0, nColPk = 0, iColPk = -1;
  int i, rc = SQLITE_OK;

  *ppDef = NULL;
  pDef = sqlite3_malloc(sizeof(*pDef));
  if (!pDef) return SQLITE_NOMEM;
  memset(pDef, 0, sizeof(*pDef));
  pDef->opt.compression = -1;
  pDef->opt.bloomBits = -1;
  pDef->opt.sync = -1;
  pDef->opt.busyTimeout = -1;
  pDef->opt.mmap = -1;
  pDef->opt.verify = -1;
  pDef->aCol = sqlite3_malloc64(sizeof(Column) * (u64)(argc > 3 ? argc - 3 : 1));
  if (!pDef->aCol) {
    sqlite3_free(pDef);
    return SQLITE_NOMEM;
  }

  for (i = 3; rc == SQLITE_OK && i < argc; i++) {
    Lexer lex;
    lexInit(&lex, argv[i]);
    if (lex.t.eType == TK_EOF) continue;
    if (lex.t.eType == TK_ERR) {
      *pzErr = sqlite3_mprintf("strata: unterminated quote in argument: %s", argv[i]);
      rc = SQLITE_ERROR;
      break;
    }
    /* name = value */
    {
      Lexer peek = lex;
      lexNext(&peek);
      if (lex.t.eType == TK_ID && lexIsPunct(&peek, '=')) {
        char *zName = tokenText(&lex.t), *zVal = NULL;
        const char *zValStart;
        lexNext(&peek);
        zValStart = peek.t.z;
        if (peek.t.eType == TK_STR || peek.t.eType == TK_QID) {
          zVal = tokenText(&peek.t);
          lexNext(&peek);
        } else {
          while (peek.t.eType != TK_EOF && peek.t.eType != TK_ERR) lexNext(&peek);
          zVal = sqlite3_mprintf("%.*s", (int)(peek.t.z - zValStart), zValStart);
          while (zVal && zVal[0] && zVal[strlen(zVal) - 1] == ' ') zVal[strlen(zVal) - 1] = 0;
        }
        if (peek.t.eType != TK_EOF) {
          *pzErr = sqlite3_mprintf("strata: bad value for option %s: %s", zName, zValStart);
          rc = SQLITE_ERROR;
        } else if (!zName || !zVal) {
          rc = SQLITE_NOMEM;
        } else {
          rc = parseOption(pDef, zName, zVal, pzErr);
        }
        sqlite3_free(zName);
        sqlite3_free(zVal);
        continue;
      }
    }
    if (lexIs(&lex, "CONSTRAINT")) {
      lexNext(&lex);
      lexNext(&lex);
    }
    if (lexIs(&lex, "PRIMARY")) {
      if (nPk) {
        *pzErr = sqlite3_mprintf("strata: more than one primary key");
        rc = SQLITE_ERROR;
      } else {
        rc = parsePkList(&lex, azPk, &nPk, pzErr);
      }
      continue;
    }
    if (lexIs(&lex, "UNIQUE") || lexIs(&lex, "CHECK") || lexIs(&lex, "FOREIGN")) {
      *pzErr = sqlite3_mprintf("strata: %.*s table constraints are not supported", lex.t.n,
                               lex.t.z);
      rc = SQLITE_ERROR;
      continue;
    }
    if (lex.t.eType != TK_ID && lex.t.eType != TK_QID && lex.t.eType != TK_STR) {
      *pzErr = sqlite3_mprintf("strata: cannot parse argument: %s", argv[i]);
      rc = SQLITE_ERROR;
      continue;
    }
    {
      Column *c = &pDef->aCol[pDef->nCol];
      int bPk = 0;
      memset(c, 0, sizeof(*c));
      pDef->nCol++;
      rc = parseColumn(&lex, c, &bPk, pzErr);
      if (rc == SQLITE_OK && !c->zName) rc = SQLITE_NOMEM;
      if (rc == SQLITE_OK && findColumn(pDef, c->zName) != pDef->nCol - 1) {
        *pzErr = sqlite3_mprintf("strata: duplicate column name: %s", c->zName);
        rc = SQLITE_ERROR;
      }
      if (rc == SQLITE_OK && bPk) {
        nColPk++;
        iColPk = pDef->nCol - 1;
      }
    }
  }
  if (rc == SQLITE_OK && pDef->nCol == 0) {
    *pzErr = sqlite3_mprintf("strata: a table needs at least one column");
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && (nColPk > 1 || (nColPk && nPk))) {
    *pzErr = sqlite3_mprintf("strata: table has more than one primary key");
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && nColPk) {
    azPk[0] = sqlite3_mprintf("%s", pDef->aCol[iColPk].zName);
    nPk = 1;
    if (!azPk[0]) rc = SQLITE_NOMEM;
  }
  /* Resolve the key. */
  for (i = 0; rc == SQLITE_OK && i < nPk; i++) {
    int iCol = azPk[i] ? findColumn(pDef, azPk[i]) : -1;
    if (!azPk[i]) {
      rc = SQLITE_NOMEM;
    } else if (iCol < 0) {
      *pzErr = sqlite3_mprintf("strata: no such column in PRIMARY KEY: %s", azPk[i]);
      rc = SQLITE_ERROR;
    } else if (pDef->aCol[iCol].iKey >= 0) {
      *pzErr = sqlite3_mprintf("strata: column %s appears twice in the PRIMARY KEY", azPk[i]);
      rc = SQLITE_ERROR;
    } else {
      Column *c = &pDef->aCol[iCol];
      if (c->zColl && sqlite3_stricmp(c->zColl, "BINARY") != 0) {
        *pzErr = sqlite3_mprintf(
            "strata: primary key column %s must use the BINARY collation (keys are ordered "
            "bytewise)",
            c->zName);
        rc = SQLITE_ERROR;
      }
      c->iKey = i;
      pDef->aiKey[i] = iCol;
    }
  }
  for (i = 0; i < nPk; i++) sqlite3_free(azPk[i]);
  if (rc == SQLITE_OK) {
    if (nPk == 0) {
      pDef->eKind = KIND_ROWID;
      pDef->nKey = 1;
      pDef->aiKey[0] = -1;
    } else if (nPk == 1 && pDef->aCol[pDef->aiKey[0]].zType &&
               sqlite3_stricmp(pDef->aCol[pDef->aiKey[0]].zType, "INTEGER") == 0) {
      pDef->eKind = KIND_IPK;
      pDef->nKey = 1;
    } else {
      pDef->eKind = KIND_PK;
      pDef->nKey = nPk;
      for (i = 0; i < nPk; i++) pDef->aCol[pDef->aiKey[i]].bNotNull = 1;
    }
    pDef->aiField = sqlite3_malloc64(sizeof(int) * (u64)pDef->nCol);
    if (!pDef->aiField) rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK) {
    for (i = 0; i < pDef->nCol; i++) {
      Column *c = &pDef->aCol[i];
      if (c->iKey < 0) {
        c->iField = pDef->nField;
        pDef->aiField[pDef->nField++] = i;
      }
      c->bKeyInt = pDef->nKey == 1 && c->iKey == 0 &&
                   (c->cAff == AFF_INTEGER || c->cAff == AFF_NUMERIC);
    }
    if (pDef->eKind == KIND_PK) {
      /* A name for the hidden key column that no user column has. */
      int n = 0;
      do {
        sqlite3_free(pDef->zKeyCol);
        pDef->zKeyCol = n ? sqlite3_mprintf("strata_key%d", n) : sqlite3_mprintf("strata_key");
        n++;
      } while (pDef->zKeyCol && findColumn(pDef, pDef->zKeyCol) >= 0);
      if (!pDef->zKeyCol) rc = SQLITE_NOMEM;
    }
  }
  if (rc) {
    if (rc == SQLITE_NOMEM && !*pzErr) *pzErr = sqlite3_mprintf("out of memory");
    defFree(pDef);
    return rc;
  }
  *ppDef = pDef;
  return SQLITE_OK;
}

/* The CREATE TABLE statement declared to SQLite. */
static char *defSchema(TableDef *pDef) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  int i;
  sqlite3_str_appendall(s, "CREATE TABLE x(");
  for (i = 0; i < pDef->nCol; i++) {
    Column *c = &pDef->aCol[i];
    if (i) sqlite3_str_appendall(s, ", ");
    sqlite3_str_appendf(s, "\"%w\"", c->zName);
    if (c->zType) sqlite3_str_appendf(s, " %s", c->zType);
    if (c->zColl) sqlite3_str_appendf(s, " COLLATE \"%w\"", c->zColl);
  }
  if (pDef->eKind == KIND_PK) {
    sqlite3_str_appendf(s, ", \"%w\" HIDDEN PRIMARY KEY) WITHOUT ROWID", pDef->zKeyCol);
  } else {
    sqlite3_str_appendall(s, ")");
  }
  return sqlite3_str_finish(s);
}

/* A text describing the stored layout: kind, then per column its name,
** affinity and key position. Stored in the metadata record and compared at
** connect time. */
static char *defSignature(TableDef *pDef) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  int i;
  sqlite3_str_appendf(s, "kind=%d", pDef->eKind);
  for (i = 0; i < pDef->nCol; i++) {
    Column *c = &pDef->aCol[i];
    sqlite3_str_appendf(s, ";%s:%c:%d", c->zName, c->cAff, c->iKey);
  }
  return sqlite3_str_finish(s);
}

/* ================================================================ registry */

static void sharedRelease(Shared *p);

static void sharedApplyOptions(const Options *o, strata_options *so) {
  strata_options_init(so);
  if (o->compression >= 0) so->compression = o->compression;
  if (o->zstdLevel) so->compression_level = o->zstdLevel;
  if (o->blockSize) so->block_size = (size_t)o->blockSize;
  if (o->memtableSize) so->memtable_size = (size_t)o->memtableSize;
  if (o->cacheSize) so->cache_size = (size_t)o->cacheSize;
  if (o->bloomBits >= 0) so->bloom_bits_per_key = o->bloomBits;
  if (o->sync >= 0) so->sync = o->sync;
  if (o->busyTimeout >= 0) so->busy_timeout_ms = o->busyTimeout;
  if (o->mmap >= 0) so->mmap_reads = o->mmap;
  if (o->verify >= 0) so->verify_always = o->verify;
}

/* Find or open the engine for directory zPath. bCreate: create it if it does
** not exist. Returns SQLITE_OK and a counted reference in *ppShared, or an
** error with *pzErr. */
static int sharedAcquire(const char *zPath, const Options *o, int bCreate, Shared **ppShared,
                         char **pzErr) {
  char zReal[PATH_MAX];
  Shared *p;
  strata_options so;
  int rc;
  *ppShared = NULL;
  pthread_mutex_lock(&regMutex);
  if (realpath(zPath, zReal)) {
    for (p = regShared; p; p = p->pNext) {
      if (strcmp(p->zReal, zReal) == 0 && !p->bDoomed && p->pDb) {
        p->nRef++;
        pthread_mutex_unlock(&regMutex);
        *ppShared = p;
        return SQLITE_OK;
      }
    }
  }
  sharedApplyOptions(o, &so);
  so.create_if_missing = bCreate;
  p = sqlite3_malloc(sizeof(*p));
  if (!p) {
    pthread_mutex_unlock(&regMutex);
    return SQLITE_NOMEM;
  }
  memset(p, 0, sizeof(*p));
  rc = strata_open(zPath, &so, &p->pDb);
  if (rc) {
    *pzErr = sqlite3_mprintf("strata: cannot open %s: %s", zPath, strata_errmsg());
    pthread_mutex_unlock(&regMutex);
    sqlite3_free(p);
    return sqliteRc(rc) == SQLITE_OK ? SQLITE_ERROR : sqliteRc(rc);
  }
  if (!realpath(zPath, zReal)) {
    *pzErr = sqlite3_mprintf("strata: cannot resolve %s: %s", zPath, strerror(errno));
    strata_close(p->pDb);
    pthread_mutex_unlock(&regMutex);
    sqlite3_free(p);
    return SQLITE_CANTOPEN;
  }
  p->zReal = sqlite3_mprintf("%s", zReal);
  if (!p->zReal) {
    strata_close(p->pDb);
    pthread_mutex_unlock(&regMutex);
    sqlite3_free(p);
    return SQLITE_NOMEM;
  }
  p->nRef = 1;
  p->pNext = regShared;
  regShared = p;
  pthread_mutex_unlock(&regMutex);
  *ppShared = p;
  return SQLITE_OK;
}

/* Drop a reference; the last one closes the engine (and destroys the
** directory after DROP TABLE). */
static void sharedRelease(Shared *p) {
  Shared **pp;
  if (!p) return;
  pthread_mutex_lock(&regMutex);
  if (--p->nRef > 0) {
    pthread_mutex_unlock(&regMutex);
    return;
  }
  for (pp = &regShared; *pp; pp = &(*pp)->pNext) {
    if (*pp == p) {
      *pp = p->pNext;
      break;
    }
  }
  if (p->pDb) {
    strata_close(p->pDb);
    if (p->bDoomed) strata_destroy(p->zReal, NULL);
  }
  pthread_mutex_unlock(&regMutex);
  sqlite3_free(p->zReal);
  sqlite3_free(p);
}

/* ================================================================ metadata */

/* Read the metadata record: *pzSig gets the signature (sqlite3_malloc'd), or
** NULL if the directory has no metadata. */
static int metaRead(strata *pDb, char **pzSig, char **pzName) {
  strata_value v = {0};
  int rc = strata_get(pDb, NULL, aMetaKey, sizeof(aMetaKey), &v);
  *pzSig = NULL;
  if (pzName) *pzName = NULL;
  if (rc == STRATA_NOTFOUND) return SQLITE_OK;
  if (rc == STRATA_OK) {
    KcField aF[4];
    int nF;
    u64 m;
    if (keycodecRowParse(v.p, v.n, 4, aF, &nF, &m) && nF >= 3) {
      KcValue a, b;
      keycodecRowValue(v.p, &aF[1], &a);
      keycodecRowValue(v.p, &aF[2], &b);
      if (a.eType == SQLITE_TEXT && b.eType == SQLITE_TEXT) {
        *pzSig = sqlite3_mprintf("%.*s", (int)b.n, b.z);
        if (pzName) *pzName = sqlite3_mprintf("%.*s", (int)a.n, a.z);
      }
    }
    if (!*pzSig) rc = STRATA_CORRUPT;
  }
  strata_value_free(&v);
  return rc == STRATA_OK ? SQLITE_OK : (rc == STRATA_CORRUPT ? SQLITE_CORRUPT : sqliteRc(rc));
}

/* Write the metadata record (format, table name, signature). */
static int metaWrite(strata *pDb, const char *zName, const char *zSig) {
  KcValue a[3];
  u8 *p;
  size_t n;
  int rc;
  memset(a, 0, sizeof(a));
  a[0].eType = KC_INTEGER;
  a[0].i = META_FORMAT;
  a[1].eType = KC_TEXT;
  a[1].z = (const u8 *)zName;
  a[1].n = strlen(zName);
  a[2].eType = KC_TEXT;
  a[2].z = (const u8 *)zSig;
  a[2].n = strlen(zSig);
  n = keycodecRowLen(3, a, 0);
  p = sqlite3_malloc64(n);
  if (!p) return SQLITE_NOMEM;
  keycodecRowPut(p, 3, a, 0);
  rc = strata_put(pDb, aMetaKey, sizeof(aMetaKey), p, n);
  sqlite3_free(p);
  return rc;
}

/* Does the table hold any row? */
static int hasRows(strata *pDb, int *pbRows) {
  strata_read_options ro;
  strata_iter *it = NULL;
  int rc;
  strata_read_options_init(&ro);
  ro.lower = aFirstRowKey;
  ro.nLower = sizeof(aFirstRowKey);
  rc = strata_iter_new(pDb, &ro, &it);
  if (rc) return rc;
  strata_iter_seek_first(it);
  *pbRows = strata_iter_valid(it);
  rc = strata_iter_status(it);
  strata_iter_free(it);
  return rc;
}

/* ================================================================ paths */

/* The directory of a table: path= (relative to the database file's
** directory, or to the process's working directory for a database without
** a file), or "<database file>-<table>.strata". NULL with *pzErr if there is
** no file to put it beside. */
static char *tablePath(sqlite3 *db, const char *zDb, const char *zTab, const Options *o,
                       char **pzErr) {
  const char *zFile = sqlite3_db_filename(db, zDb);
  if (o->zPath) {
    if (o->zPath[0] == '/' || !zFile || !zFile[0]) return sqlite3_mprintf("%s", o->zPath);
    {
      const char *zSlash = strrchr(zFile, '/');
      if (!zSlash) return sqlite3_mprintf("%s", o->zPath);
      return sqlite3_mprintf("%.*s/%s", (int)(zSlash - zFile), zFile, o->zPath);
    }
  }
  if (!zFile || !zFile[0]) {
    *pzErr = sqlite3_mprintf(
        "strata: table %s: an in-memory or temporary database has no file to keep the table "
        "beside; give a directory with path='...'",
        zTab);
    return NULL;
  }
  {
    char *z = sqlite3_mprintf("%s-%s.strata", zFile, zTab);
    char *q;
    if (!z) return NULL;
    /* The table name must not add directories to the path. */
    for (q = z + strlen(zFile) + 1; *q; q++) {
      if (*q == '/') *q = '_';
    }
    return z;
  }
}

static int dirExists(const char *zPath) {
  struct stat st;
  return stat(zPath, &st) == 0;
}

/* ================================================================ vtab */

static void csrFree(Cursor *c);
static void compFree(CompList *l);

/* Free the iterator c keeps from an earlier statement, if any (bTxnOnly: only
** a transaction's). */
static void csrKeptFree(Cursor *c, int bTxnOnly) {
  if (c->eKept == KEPT_TXN || (c->eKept == KEPT_DB && !bTxnOnly)) {
    strata_iter_free(c->pIter);
    c->pIter = NULL;
    c->eKept = KEPT_NONE;
  }
}
/* Free the iterators that the table's cursors keep from earlier statements:
** every one (bTxnOnly 0) before the engine is closed (an open iterator would
** make strata_close fail) and when the connection's transaction on the
** table ends, so that none pins replaced memtables and files for long; the
** transaction's (bTxnOnly 1) when it rolls back to a savepoint, which
** leaves its iterators unusable (see CURSOR REUSE). */
static void vtabKeptItersFree(Vtab *p, int bTxnOnly) {
  Cursor *c;
  if (p->pIdleCsr) csrKeptFree(p->pIdleCsr, bTxnOnly);
  for (c = p->pCsrList; c; c = c->pNextCsr) csrKeptFree(c, bTxnOnly);
}

static void vtabFree(Vtab *p) {
  int i;
  if (!p) return;
  sqlite3_free(p->zDb);
  sqlite3_free(p->zName);
  sqlite3_free(p->zPath);
  sqlite3_free(p->zSig);
  sqlite3_free(p->zNotOpen);
  if (p->apDup && p->pDef) {
    for (i = 0; i < p->pDef->nCol; i++) sqlite3_value_free(p->apDup[i]);
  }
  defFree(p->pDef);
  sqlite3_free(p->aSp);
  sqlite3_free(p->aKey);
  sqlite3_free(p->aOldKey);
  sqlite3_free(p->aRow);
  sqlite3_free(p->aVal);
  sqlite3_free(p->aFieldVal);
  sqlite3_free(p->apDup);
  strata_value_free(&p->probe);
  if (p->pIdleCsr) csrFree(p->pIdleCsr);
  sqlite3_free(p->base.zErrMsg);
  sqlite3_free(p);
}

static void vtabListAdd(Vtab *p) {
  pthread_mutex_lock(&regMutex);
  p->pNextVtab = regVtabs;
  regVtabs = p;
  pthread_mutex_unlock(&regMutex);
}

static void vtabListRemove(Vtab *p) {
  Vtab **pp;
  pthread_mutex_lock(&regMutex);
  for (pp = &regVtabs; *pp; pp = &(*pp)->pNextVtab) {
    if (*pp == p) {
      *pp = p->pNextVtab;
      break;
    }
  }
  pthread_mutex_unlock(&regMutex);
}

static int csrSave(Cursor *c);
static int csrRestore(Cursor *c, Vtab *p, int eSrc);


/* End the connection's engine transaction (commit if bCommit). Cursors that
** read through it continue on the newest state. Returns the engine code of
** the commit. */
static int txnEnd(Vtab *p, int bCommit) {
  Cursor *c;
  int rc = STRATA_OK;
  if (!p->pTxn) return STRATA_OK;
  for (c = p->pCsrList; c; c = c->pNextCsr) {
    if (c->eSrc == SRC_TXN) {
      csrSave(c);
      c->eSrc = SRC_LATEST;
    }
  }
  if (bCommit) {
    rc = strata_txn_commit(p->pTxn);
  } else {
    strata_txn_rollback(p->pTxn);
  }
  p->pTxn = NULL;
  if (p->eTxn == TXN_READ) atomic_fetch_sub(&nReadTxns, 1);
  p->eTxn = TXN_NONE;
  vtabKeptItersFree(p, 0);
  p->nSp = 0;
  p->bNextRowid = 0;
  for (c = p->pCsrList; c; c = c->pNextCsr) {
    if (c->bSaved) csrRestore(c, p, SRC_LATEST);
  }
  return rc;
}

/* Roll the transaction back to engine savepoint iSp, re-making the iterators
** of cursors that read through it. */
static int txnRollbackTo(Vtab *p, int iSp) {
  Cursor *c;
  int rc;
  for (c = p->pCsrList; c; c = c->pNextCsr) {
    if (c->eSrc == SRC_TXN) csrSave(c);
  }
  vtabKeptItersFree(p, 1);
  rc = strata_txn_rollback_to(p->pTxn, iSp);
  p->bNextRowid = 0;
  for (c = p->pCsrList; c; c = c->pNextCsr) {
    if (c->bSaved) csrRestore(c, p, SRC_TXN);
  }
  return rc;
}

/* Read transactions kept for a BEGIN ... COMMIT that has ended: SQLite does
** not tell a virtual table that a read-only transaction is over, so every
** call that finds the connection back in autocommit mode ends them, for all
** strata tables of the connection. */
static void endStaleReads(Vtab *pCaller) {
  Vtab *p;
  if (!sqlite3_get_autocommit(pCaller->db) || atomic_load(&nReadTxns) == 0) return;
  pthread_mutex_lock(&regMutex);
  for (p = regVtabs; p; p = p->pNextVtab) {
    if (p->db == pCaller->db && p->eTxn == TXN_READ) txnEnd(p, 0);
  }
  pthread_mutex_unlock(&regMutex);
}

/* The first read or write inside BEGIN ... COMMIT: every strata table of the
** connection that has no transaction yet begins a read transaction now, so
** the whole SQL transaction reads all tables as of one moment. */
static int beginReads(Vtab *pCaller) {
  Vtab *p;
  int rc = STRATA_OK;
  pthread_mutex_lock(&regMutex);
  for (p = regVtabs; p && rc == STRATA_OK; p = p->pNextVtab) {
    if (p->db != pCaller->db || p->pTxn || !p->pShared || !p->pShared->pDb) continue;
    rc = strata_txn_begin(p->pShared->pDb, STRATA_TXN_READ, &p->pTxn);
    if (rc == STRATA_OK) {
      p->eTxn = TXN_READ;
      atomic_fetch_add(&nReadTxns, 1);
    }
  }
  pthread_mutex_unlock(&regMutex);
  return rc ? engineErr(&pCaller->base, rc) : SQLITE_OK;
}

/* Open (or share) the engine of an existing table and check that its
** directory holds this table. On failure p->zNotOpen says why. Returns an
** SQLite code. */
static int vtabOpen(Vtab *p) {
  char *zErr = NULL, *zStored = NULL;
  int rc;
  sqlite3_free(p->zNotOpen);
  p->zNotOpen = NULL;
  if (!dirExists(p->zPath)) {
    p->zNotOpen = sqlite3_mprintf("strata: table %s: directory %s is missing", p->zName, p->zPath);
    return SQLITE_CANTOPEN;
  }
  rc = sharedAcquire(p->zPath, &p->pDef->opt, 0, &p->pShared, &zErr);
  if (rc) {
    p->zNotOpen = sqlite3_mprintf("strata: table %s: %s is not a usable strata table (%s)",
                                  p->zName, p->zPath, zErr ? zErr : "cannot open");
    sqlite3_free(zErr);
    return rc;
  }
  rc = metaRead(p->pShared->pDb, &zStored, NULL);
  if (rc == SQLITE_OK && !zStored) rc = SQLITE_CORRUPT;
  if (rc == SQLITE_OK && strcmp(zStored, p->zSig) != 0) rc = SQLITE_ERROR;
  if (rc) {
    p->zNotOpen = sqlite3_mprintf("strata: table %s: directory %s does not hold this table (%s)",
                                  p->zName, p->zPath,
                                  zStored ? "its columns or key differ" : "no strata table metadata");
    sharedRelease(p->pShared);
    p->pShared = NULL;
  }
  sqlite3_free(zStored);
  return rc;
}

/* Make sure the table's engine is open (retrying a failed open). Returns
** SQLITE_OK, or an error with the reason in the vtab's message. */
static int vtabReady(Vtab *p) {
  int rc;
  if (p->pShared && p->pShared->pDb) return SQLITE_OK;
  if (p->pShared) {
    /* The engine went away under a stale Vtab (DROP, failed RENAME). */
    sharedRelease(p->pShared);
    p->pShared = NULL;
  }
  rc = vtabOpen(p);
  if (rc) vtabErr(&p->base, rc, "%s", p->zNotOpen ? p->zNotOpen : "strata: cannot open table");
  return rc;
}

static int vtabInit(sqlite3 *db, int argc, const char *const *argv, sqlite3_vtab **ppVtab,
                    char **pzErr, int bCreate) {
  Vtab *p = NULL;
  TableDef *pDef = NULL;
  char *zSig = NULL, *zStored = NULL, *zSchema = NULL;
  int rc, bCreated = 0;

  *ppVtab = NULL;
  rc = defParse(argc, argv, &pDef, pzErr);
  if (rc) return rc;
  p = sqlite3_malloc(sizeof(*p));
  if (!p) {
    defFree(pDef);
    return SQLITE_NOMEM;
  }
  memset(p, 0, sizeof(*p));
  p->db = db;
  p->pDef = pDef;
  p->zDb = sqlite3_mprintf("%s", argv[1]);
  p->zName = sqlite3_mprintf("%s", argv[2]);
  p->aVal = sqlite3_malloc64(sizeof(KcValue) * (u64)pDef->nCol);
  p->aFieldVal = sqlite3_malloc64(sizeof(KcValue) * (u64)(pDef->nField + 1));
  p->apDup = sqlite3_malloc64(sizeof(sqlite3_value *) * (u64)pDef->nCol);
  zSig = p->zSig = defSignature(pDef); /* owned by p */
  zSchema = defSchema(pDef);
  if (!p->zDb || !p->zName || !p->aVal || !p->aFieldVal || !p->apDup || !zSig || !zSchema) {
    rc = SQLITE_NOMEM;
    goto init_failed;
  }
  memset(p->apDup, 0, sizeof(sqlite3_value *) * (u64)pDef->nCol);
  p->zPath = tablePath(db, argv[1], argv[2], &pDef->opt, pzErr);
  if (!p->zPath) {
    rc = *pzErr ? SQLITE_ERROR : SQLITE_NOMEM;
    goto init_failed;
  }

  if (bCreate) {
    /* Check the DEFAULT expressions before anything is created. */
    int i;
    for (i = 0; i < pDef->nCol; i++) {
      sqlite3_stmt *pStmt = NULL;
      char *zSql;
      if (!pDef->aCol[i].zDflt) continue;
      zSql = sqlite3_mprintf("SELECT %s", pDef->aCol[i].zDflt);
      if (!zSql) {
        rc = SQLITE_NOMEM;
        goto init_failed;
      }
      rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, NULL);
      sqlite3_free(zSql);
      sqlite3_finalize(pStmt);
      if (rc) {
        *pzErr = sqlite3_mprintf("strata: bad DEFAULT for column %s: %s", pDef->aCol[i].zName,
                                 sqlite3_errmsg(db));
        rc = SQLITE_ERROR;
        goto init_failed;
      }
    }
    if (dirExists(p->zPath)) {
      /* Only an empty table of the same layout (left behind by a CREATE that
      ** was rolled back) may be taken over. */
      int bRows = 0;
      rc = sharedAcquire(p->zPath, &pDef->opt, 0, &p->pShared, pzErr);
      if (rc) {
        sqlite3_free(*pzErr);
        *pzErr = sqlite3_mprintf("strata: cannot create table %s: %s exists and is not a strata "
                                 "table directory",
                                 argv[2], p->zPath);
        rc = SQLITE_ERROR;
        goto init_failed;
      }
      rc = metaRead(p->pShared->pDb, &zStored, NULL);
      if (rc == SQLITE_OK && zStored && strcmp(zStored, zSig) == 0) {
        rc = sqliteRc(hasRows(p->pShared->pDb, &bRows));
      }
      if (rc == SQLITE_OK && zStored && strcmp(zStored, zSig) == 0 && !bRows) {
        rc = sqliteRc(metaWrite(p->pShared->pDb, argv[2], zSig));
      }
      if (rc || !zStored || strcmp(zStored, zSig) != 0 || bRows) {
        *pzErr = sqlite3_mprintf(
            "strata: cannot create table %s: directory %s already holds %s; drop that table or "
            "choose another path",
            argv[2], p->zPath, (zStored && strcmp(zStored, zSig) == 0) ? "rows" : "other data");
        rc = SQLITE_ERROR;
        goto init_failed;
      }
    } else {
      rc = sharedAcquire(p->zPath, &pDef->opt, 1, &p->pShared, pzErr);
      if (rc) goto init_failed;
      bCreated = 1;
      rc = metaWrite(p->pShared->pDb, argv[2], zSig);
      if (rc) {
        *pzErr = sqlite3_mprintf("strata: %s", strata_errmsg());
        rc = sqliteRc(rc);
        goto init_failed;
      }
    }
  } else {
    /* Open the engine now if possible; if not, the table still connects (so
    ** that it can be dropped) and every use reports why and tries again. */
    vtabOpen(p);
  }

  rc = sqlite3_declare_vtab(db, zSchema);
  if (rc) {
    *pzErr = sqlite3_mprintf("strata: cannot declare table %s: %s", argv[2], sqlite3_errmsg(db));
    goto init_failed;
  }
  sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1);
  sqlite3_free(zStored);
  sqlite3_free(zSchema);
  vtabListAdd(p);
  *ppVtab = &p->base;
  return SQLITE_OK;

init_failed:
  if (p->pShared) {
    if (bCreated) p->pShared->bDoomed = 1;
    sharedRelease(p->pShared);
    p->pShared = NULL;
  }
  sqlite3_free(zStored);
  sqlite3_free(zSchema);
  vtabFree(p);
  return rc ? rc : SQLITE_ERROR;
}

static int strataCreate(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                        sqlite3_vtab **ppVtab, char **pzErr) {
  return vtabInit(db, argc, argv, ppVtab, pzErr, 1);
}

static int strataConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                         sqlite3_vtab **ppVtab, char **pzErr) {
  return vtabInit(db, argc, argv, ppVtab, pzErr, 0);
}

static void vtabRelease(Vtab *p) {
  if (p->pTxn) txnEnd(p, 0);
  if (p->pSnap) {
    strata_snapshot_release(p->pShared->pDb, p->pSnap);
    p->pSnap = NULL;
  }
  vtabListRemove(p);
  vtabKeptItersFree(p, 0);
  sharedRelease(p->pShared);
  p->pShared = NULL;
  vtabFree(p);
}

static int strataDisconnect(sqlite3_vtab *pVtab) {
  vtabRelease((Vtab *)pVtab);
  return SQLITE_OK;
}

/* Is the engine of p used by a connection other than p's? (Other Vtabs of
** p's own connection are stale ones, left by a schema reload until SQLite
** disconnects them; they are never used again.) Caller holds regMutex. */
static int usedElsewhere(Vtab *p) {
  Vtab *v;
  for (v = regVtabs; v; v = v->pNextVtab) {
    if (v != p && v->pShared == p->pShared && v->db != p->db) return 1;
  }
  return 0;
}

/* Close the shared engine now (stale Vtabs of p's connection keep a counted
** reference to an engine-less Shared until they are disconnected). Caller
** holds regMutex and has checked usedElsewhere(). */
static void closeEngineNow(Vtab *p) {
  Shared *sh = p->pShared;
  Vtab *v;
  for (v = regVtabs; v; v = v->pNextVtab) {
    if (v != p && v->pShared == sh) {
      if (v->pTxn) txnEnd(v, 0);
      if (v->pSnap) {
        strata_snapshot_release(sh->pDb, v->pSnap);
        v->pSnap = NULL;
      }
    }
    if (v->pShared == sh) vtabKeptItersFree(v, 0);
  }
  strata_close(sh->pDb);
  sh->pDb = NULL;
}

static int strataDestroy(sqlite3_vtab *pVtab) {
  Vtab *p = (Vtab *)pVtab;
  Shared *sh = p->pShared;
  if (!sh) {
    /* Never opened (missing or foreign directory): nothing of ours to delete. */
    vtabRelease(p);
    return SQLITE_OK;
  }
  if (!sqlite3_get_autocommit(p->db)) {
    /* SQLite shows no message for an xDestroy error; SQLITE_LOCKED ("database
    ** table is locked") is the closest meaning. */
    vtabErr(pVtab, SQLITE_LOCKED,
            "strata: DROP TABLE %s inside a transaction is not supported (the data cannot be "
            "restored by ROLLBACK)",
            p->zName);
    return SQLITE_LOCKED;
  }
  if (p->pTxn) txnEnd(p, 0);
  if (p->pSnap) {
    strata_snapshot_release(sh->pDb, p->pSnap);
    p->pSnap = NULL;
  }
  pthread_mutex_lock(&regMutex);
  sh->bDoomed = 1;
  if (!usedElsewhere(p)) {
    /* Delete the directory now rather than when stale references go. */
    char *zReal = sqlite3_mprintf("%s", sh->zReal);
    closeEngineNow(p);
    if (zReal) strata_destroy(zReal, NULL);
    sqlite3_free(zReal);
    sh->bDoomed = 0;
  }
  pthread_mutex_unlock(&regMutex);
  vtabRelease(p);
  return SQLITE_OK;
}

static int strataRename(sqlite3_vtab *pVtab, const char *zNew) {
  Vtab *p = (Vtab *)pVtab;
  TableDef *pDef = p->pDef;
  Shared *sh;
  char *zErr = NULL;
  int rc;
  if (!sqlite3_get_autocommit(p->db) || p->pTxn || p->pCsrList) {
    return vtabErr(pVtab, SQLITE_ERROR,
                   "strata: ALTER TABLE %s RENAME inside a transaction is not supported",
                   p->zName);
  }
  rc = vtabReady(p);
  if (rc) return rc;
  sh = p->pShared;
  if (!pDef->opt.zPath) {
    /* The directory is named after the table: close the engine, move the
    ** directory, reopen it in the same Shared (stale Vtabs point to it). */
    char *zNewPath = tablePath(p->db, p->zDb, zNew, &pDef->opt, &zErr);
    char zReal[PATH_MAX];
    strata_options so;
    if (!zNewPath) {
      rc = vtabErr(pVtab, SQLITE_ERROR, "%s", zErr ? zErr : "out of memory");
      sqlite3_free(zErr);
      return rc;
    }
    if (dirExists(zNewPath)) {
      rc = vtabErr(pVtab, SQLITE_ERROR, "strata: cannot rename %s: %s already exists", p->zName,
                   zNewPath);
      sqlite3_free(zNewPath);
      return rc;
    }
    pthread_mutex_lock(&regMutex);
    if (usedElsewhere(p)) {
      pthread_mutex_unlock(&regMutex);
      sqlite3_free(zNewPath);
      return vtabErr(pVtab, SQLITE_BUSY,
                     "strata: cannot rename %s while another connection uses it", p->zName);
    }
    if (p->pSnap) {
      strata_snapshot_release(sh->pDb, p->pSnap);
      p->pSnap = NULL;
    }
    closeEngineNow(p);
    if (rename(p->zPath, zNewPath) != 0) {
      rc = vtabErr(pVtab, SQLITE_IOERR, "strata: cannot rename %s to %s: %s", p->zPath, zNewPath,
                   strerror(errno));
    } else {
      sqlite3_free(p->zPath);
      p->zPath = zNewPath;
      zNewPath = NULL;
    }
    sqlite3_free(zNewPath);
    sharedApplyOptions(&pDef->opt, &so);
    so.create_if_missing = 0;
    {
      int rc2 = strata_open(p->zPath, &so, &sh->pDb);
      if (rc2) {
        sh->bDoomed = 1; /* unusable: nobody may find it again */
        rc = vtabErr(pVtab, sqliteRc(rc2), "strata: cannot reopen %s: %s", p->zPath,
                     strata_errmsg());
      } else if (realpath(p->zPath, zReal)) {
        char *z = sqlite3_mprintf("%s", zReal);
        if (z) {
          sqlite3_free(sh->zReal);
          sh->zReal = z;
        }
      }
    }
    pthread_mutex_unlock(&regMutex);
    if (rc) return rc;
  }
  rc = metaWrite(sh->pDb, zNew, p->zSig);
  if (rc) return engineErr(pVtab, rc);
  sqlite3_free(p->zName);
  p->zName = sqlite3_mprintf("%s", zNew);
  return p->zName ? SQLITE_OK : SQLITE_NOMEM;
}

/* ---------------------------------------------------------------- txns */

static int strataBegin(sqlite3_vtab *pVtab) {
  Vtab *p = (Vtab *)pVtab;
  int rc = vtabReady(p);
  if (rc) return rc;
  endStaleReads(p);
  p->nSp = 0;
  p->bNextRowid = 0;
  if (p->eTxn == TXN_WRITE) return SQLITE_OK;
  if (p->eTxn == TXN_READ) {
    /* The transaction's reads so far used this snapshot: keep it, so the
    ** first write fails with BUSY if someone committed since. */
    p->eTxn = TXN_WRITE;
    atomic_fetch_sub(&nReadTxns, 1);
  } else {
    rc = strata_txn_begin(p->pShared->pDb, STRATA_TXN_WRITE, &p->pTxn);
    if (rc) return engineErr(pVtab, rc);
    p->eTxn = TXN_WRITE;
  }
  /* SQLite rolls back to "savepoint -1", the start of the transaction. */
  rc = strata_txn_savepoint(p->pTxn, &p->iBaseSp);
  if (rc) return engineErr(pVtab, rc);
  if (!sqlite3_get_autocommit(p->db)) return beginReads(p);
  return SQLITE_OK;
}

static int strataSync(sqlite3_vtab *pVtab) {
  Vtab *p = (Vtab *)pVtab;
  int rc;
  if (p->eTxn != TXN_WRITE) return SQLITE_OK;
  rc = txnEnd(p, 1);
  return rc ? engineErr(pVtab, rc) : SQLITE_OK;
}

static int strataCommit(sqlite3_vtab *pVtab) {
  Vtab *p = (Vtab *)pVtab;
  int rc = SQLITE_OK;
  if (p->eTxn == TXN_WRITE) rc = txnEnd(p, 1);
  return rc ? engineErr(pVtab, rc) : SQLITE_OK;
}

static int strataRollback(sqlite3_vtab *pVtab) {
  Vtab *p = (Vtab *)pVtab;
  txnEnd(p, 0);
  return SQLITE_OK;
}

/* Savepoint levels: aSp[k] is the engine savepoint made for SQLite's level k.
** Levels SQLite opened before this table joined the transaction map to
** engine savepoints made when it joined (nothing had been written yet). */
static int strataSavepoint(sqlite3_vtab *pVtab, int iSavepoint) {
  Vtab *p = (Vtab *)pVtab;
  int rc;
  if (p->eTxn != TXN_WRITE || iSavepoint < 0) return SQLITE_OK;
  if (iSavepoint < p->nSp) {
    rc = strata_txn_release(p->pTxn, p->aSp[iSavepoint]);
    if (rc) return engineErr(pVtab, rc);
    p->nSp = iSavepoint;
  }
  if (iSavepoint >= p->nSpAlloc) {
    int nNew = iSavepoint + 8;
    int *a = sqlite3_realloc64(p->aSp, sizeof(int) * (u64)nNew);
    if (!a) return SQLITE_NOMEM;
    p->aSp = a;
    p->nSpAlloc = nNew;
  }
  while (p->nSp <= iSavepoint) {
    rc = strata_txn_savepoint(p->pTxn, &p->aSp[p->nSp]);
    if (rc) return engineErr(pVtab, rc);
    p->nSp++;
  }
  return SQLITE_OK;
}

static int strataRelease(sqlite3_vtab *pVtab, int iSavepoint) {
  Vtab *p = (Vtab *)pVtab;
  int rc;
  if (p->eTxn != TXN_WRITE) return SQLITE_OK;
  if (iSavepoint < 0) iSavepoint = 0;
  if (iSavepoint >= p->nSp) return SQLITE_OK;
  rc = strata_txn_release(p->pTxn, p->aSp[iSavepoint]);
  if (rc) return engineErr(pVtab, rc);
  p->nSp = iSavepoint;
  return SQLITE_OK;
}

static int strataRollbackTo(sqlite3_vtab *pVtab, int iSavepoint) {
  Vtab *p = (Vtab *)pVtab;
  int rc;
  if (p->eTxn != TXN_WRITE) return SQLITE_OK;
  if (iSavepoint < 0) {
    /* The start of the transaction: every write goes, no level is left. */
    rc = txnRollbackTo(p, p->iBaseSp);
    p->nSp = 0;
  } else {
    if (iSavepoint >= p->nSp) return SQLITE_OK;
    rc = txnRollbackTo(p, p->aSp[iSavepoint]);
    p->nSp = iSavepoint + 1;
  }
  return rc ? engineErr(pVtab, rc) : SQLITE_OK;
}

/* ================================================================ planning */

/* Constraint operators in idxStr. */
#define OP_EQ '='
#define OP_IN 'i'
#define OP_GT '>'
#define OP_GE 'g'
#define OP_LT '<'
#define OP_LE 'l'
#define OP_OFFSET 'o'

#define IDX_DESC 1
#define IDX_NOCOLS 2 /* no column is read (count(*)): rows are not fetched */

/* The key position a constraint column refers to, or -1. */
static int keyPos(TableDef *pDef, int iColumn) {
  if (pDef->eKind != KIND_PK) {
    if (iColumn < 0) return 0;
    if (pDef->eKind == KIND_IPK && iColumn == pDef->aiKey[0]) return 0;
    return -1;
  }
  if (iColumn < 0 || iColumn >= pDef->nCol) return -1;
  return pDef->aCol[iColumn].iKey;
}

/* May SQLite skip re-checking a constraint on key position k? A comparison's
** affinity depends on its right-hand side too, which xBestIndex cannot see:
** for a numeric key column SQLite always compares numerically, exactly as
** xFilter encodes the value; for a TEXT key column a number is converted to
** text only if the right-hand side has no affinity (a literal, a parameter),
** not if it is a column without affinity. xFilter uses the converted value
** (right for literals and parameters) and SQLite re-checks each row. */
static int keyOmit(TableDef *pDef, int k) {
  int iCol = pDef->aiKey[k];
  return iCol < 0 || pDef->aCol[iCol].cAff != AFF_TEXT;
}

static double estimateRows(Vtab *p) {
  strata_stats st;
  double n = 1000.0;
  if (strata_get_stats(p->pShared->pDb, &st) == STRATA_OK) {
    double nBytes = (double)st.live_bytes + (double)st.memtable_bytes;
    if (nBytes / 48.0 > n) n = nBytes / 48.0;
  }
  return n;
}

static int strataBestIndex(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo) {
  Vtab *p = (Vtab *)pVtab;
  TableDef *pDef = p->pDef;
  int nKey = pDef->nKey;
  int i, k, nArg = 0, nPrefix = 0, nIn = 0, bLo = 0, bHi = 0, bAllUsed = 1;
  int bOrder = 0, bDesc = 0;
  char *zIdx;
  double nRow, nTable;
  /* Per constraint: its key position, or -1 if not usable by us. */
  int aPos[256];
  char aOp[256];
  int nCons = pInfo->nConstraint < 256 ? pInfo->nConstraint : 256;

  {
    int rc = vtabReady(p);
    if (rc) return rc;
  }
  endStaleReads(p);
  zIdx = sqlite3_malloc(2 * nCons + 1);
  if (!zIdx) return SQLITE_NOMEM;
  for (i = 0; i < nCons; i++) {
    const struct sqlite3_index_constraint *pc = &pInfo->aConstraint[i];
    const char *zColl;
    aPos[i] = -1;
    aOp[i] = 0;
    if (!pc->usable) continue;
    if (pc->op == SQLITE_INDEX_CONSTRAINT_LIMIT || pc->op == SQLITE_INDEX_CONSTRAINT_OFFSET) {
      continue;
    }
    k = keyPos(pDef, pc->iColumn);
    if (k < 0) continue;
    zColl = sqlite3_vtab_collation(pInfo, i);
    if (zColl && sqlite3_stricmp(zColl, "BINARY") != 0) continue;
    switch (pc->op) {
      case SQLITE_INDEX_CONSTRAINT_EQ:
      case SQLITE_INDEX_CONSTRAINT_IS:
        aOp[i] = sqlite3_vtab_in(pInfo, i, -1) ? OP_IN : OP_EQ;
        break;
      case SQLITE_INDEX_CONSTRAINT_GT:
        aOp[i] = OP_GT;
        break;
      case SQLITE_INDEX_CONSTRAINT_GE:
        aOp[i] = OP_GE;
        break;
      case SQLITE_INDEX_CONSTRAINT_LT:
        aOp[i] = OP_LT;
        break;
      case SQLITE_INDEX_CONSTRAINT_LE:
        aOp[i] = OP_LE;
        break;
      default:
        continue;
    }
    aPos[i] = k;
  }

  /* The equality prefix: every = on a key position, or one IN. */
  for (k = 0; k < nKey; k++) {
    int bEq = 0, iIn = -1;
    for (i = 0; i < nCons; i++) {
      if (aPos[i] == k && aOp[i] == OP_EQ) bEq = 1;
      if (aPos[i] == k && aOp[i] == OP_IN && iIn < 0) iIn = i;
    }
    if (!bEq && iIn < 0) break;
    for (i = 0; i < nCons; i++) {
      if (aPos[i] != k) continue;
      if (aOp[i] == OP_IN && (bEq || i != iIn)) {
        aPos[i] = -1; /* left to SQLite */
        continue;
      }
      if (aOp[i] == OP_IN) {
        sqlite3_vtab_in(pInfo, i, 1);
        nIn++;
      }
      zIdx[2 * nArg] = (char)('A' + k);
      zIdx[2 * nArg + 1] = aOp[i];
      pInfo->aConstraintUsage[i].argvIndex = ++nArg;
      pInfo->aConstraintUsage[i].omit = keyOmit(pDef, k);
    }
    nPrefix++;
  }
  /* Ranges on the next key column. */
  if (nPrefix < nKey) {
    for (i = 0; i < nCons; i++) {
      if (aPos[i] != nPrefix) continue;
      if (aOp[i] == OP_GT || aOp[i] == OP_GE) bLo = 1;
      if (aOp[i] == OP_LT || aOp[i] == OP_LE) bHi = 1;
      if (aOp[i] == OP_EQ || aOp[i] == OP_IN) continue;
      zIdx[2 * nArg] = (char)('A' + nPrefix);
      zIdx[2 * nArg + 1] = aOp[i];
      pInfo->aConstraintUsage[i].argvIndex = ++nArg;
      pInfo->aConstraintUsage[i].omit = keyOmit(pDef, nPrefix);
    }
  }
  for (i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *pc = &pInfo->aConstraint[i];
    if (pc->op == SQLITE_INDEX_CONSTRAINT_LIMIT || pc->op == SQLITE_INDEX_CONSTRAINT_OFFSET) {
      continue;
    }
    if (pc->usable && (i >= nCons || !pInfo->aConstraintUsage[i].omit)) bAllUsed = 0;
    if (!pc->usable) bAllUsed = 0;
  }

  /* ORDER BY: key columns in key order after the fixed prefix, one direction. */
  if (pInfo->nOrderBy > 0) {
    int iPos = 0, ok = 1;
    bDesc = pInfo->aOrderBy[0].desc;
    for (i = 0; ok && i < pInfo->nOrderBy; i++) {
      int kk = keyPos(pDef, pInfo->aOrderBy[i].iColumn);
      if (iPos >= nKey) break; /* the key is unique: later terms cannot matter */
      if (pInfo->aOrderBy[i].desc != bDesc) {
        ok = 0;
        break;
      }
      if (kk < 0) {
        ok = 0;
        break;
      }
      /* Skip key columns fixed by a single-valued equality. */
      while (iPos < kk && iPos < nPrefix) {
        int bSingle = 1, j;
        for (j = 0; j < nCons; j++) {
          if (aPos[j] == iPos && aOp[j] == OP_IN && pInfo->aConstraintUsage[j].argvIndex) {
            bSingle = 0;
          }
        }
        if (!bSingle) break;
        iPos++;
      }
      if (kk < iPos && kk < nPrefix) continue; /* a fixed column */
      if (kk != iPos) {
        ok = 0;
        break;
      }
      iPos++;
    }
    if (ok) bOrder = 1;
  }
  if (bOrder) {
    pInfo->orderByConsumed = 1;
    if (bDesc) pInfo->idxNum |= IDX_DESC;
  }
  if (pInfo->colUsed == 0) pInfo->idxNum |= IDX_NOCOLS;

  /* OFFSET: skipped here only when nothing else filters or reorders. */
  if (bAllUsed && (pInfo->nOrderBy == 0 || bOrder)) {
    for (i = 0; i < nCons; i++) {
      if (pInfo->aConstraint[i].op == SQLITE_INDEX_CONSTRAINT_OFFSET &&
          pInfo->aConstraint[i].usable) {
        zIdx[2 * nArg] = 'A';
        zIdx[2 * nArg + 1] = OP_OFFSET;
        pInfo->aConstraintUsage[i].argvIndex = ++nArg;
        pInfo->aConstraintUsage[i].omit = 1;
        break;
      }
    }
  }
  zIdx[2 * nArg] = 0;
  pInfo->idxStr = zIdx;
  pInfo->needToFreeIdxStr = 1;

  /* Costs: a point lookup ~ one seek; a range ~ a seek plus its rows. */
  nTable = estimateRows(p);
  if (nPrefix == nKey) {
    nRow = 1.0;
    for (i = 0; i < nIn; i++) nRow *= 10.0;
    pInfo->estimatedCost = 10.0 * nRow;
    if (nIn == 0) pInfo->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
  } else {
    nRow = nTable;
    for (i = 0; i < nPrefix; i++) nRow /= 20.0;
    for (i = 0; i < nIn; i++) nRow *= 10.0;
    if (bLo) nRow /= 4.0;
    if (bHi) nRow /= 4.0;
    if (nRow < 1.0) nRow = 1.0;
    pInfo->estimatedCost = (nPrefix || bLo || bHi ? 20.0 : 0.0) + nRow;
  }
  pInfo->estimatedRows = (sqlite3_int64)nRow;
  return SQLITE_OK;
}

/* ================================================================ cursors */

/* CURSOR REUSE
** SQLite opens and closes a cursor for every execution of a statement, so a
** point lookup would otherwise pay a dozen allocations for a cursor, its
** ranges, bounds and filter scratch. The last closed cursor of a table is
** kept (without its snapshot) and handed to the next xOpen.
** It keeps its engine iterator too (eKept): building one means a merging
** iterator with a child per memtable, L0 table and level, which costs as
** much as the seek of a short range scan.
**   KEPT_DB   an iterator of the committed state. The next statement that
**             scans brings it to its own snapshot with strata_iter_refresh,
**             which keeps the children unless a flush or compaction
**             replaced them (then it rebuilds: a refreshed iterator reads
**             exactly what a new one would).
**   KEPT_TXN  an iterator of the connection's transaction: it reads the
**             transaction's snapshot and sees its later writes, so it serves
**             the next statement of the transaction as it is, until the
**             transaction rolls back to a savepoint or ends.
** An iterator is kept only for the source it reads (csrChooseSource).
** Kept iterators pin memtables and table files, so all of them go when the
** connection's transaction on the table ends, and before the engine is
** closed (vtabKeptItersFree), and one that no statement has used for
** KEPT_MAX_AGE cursor opens goes at the connection's next look
** (sweepKeptIters). A connection that uses no strata table at all any
** more keeps its pins until it closes. */

static void csrFree(Cursor *c) {
  int k;
  strata_iter_free(c->pIter);
  strata_value_free(&c->point);
  sqlite3_free(c->aRange);
  sqlite3_free(c->aBound);
  sqlite3_free(c->aCopy);
  sqlite3_free(c->aSkipKey);
  sqlite3_free(c->aField);
  sqlite3_free(c->aTmp);
  for (k = 0; k < MAX_KEY_COLS; k++) {
    compFree(&c->aPc[k].vals);
    compFree(&c->aPc[k].bounds);
  }
  compFree(&c->scratch);
  compFree(&c->spare);
  sqlite3_free(c->aIx);
  sqlite3_free(c->aPre);
  sqlite3_free(c);
}

/* Free the kept iterators of the connection's tables that no statement has
** used for KEPT_MAX_AGE cursor opens, so that a table the connection stops
** reading lets go of replaced memtables and files while the connection
** goes on using other tables. Only the caller's connection is looked at:
** its Vtabs are not in use by another thread. */
static void sweepKeptIters(Vtab *pCaller, u64 now) {
  Vtab *v;
  pthread_mutex_lock(&regMutex);
  for (v = regVtabs; v; v = v->pNextVtab) {
    Cursor *c = v->pIdleCsr;
    if (v->db == pCaller->db && c && c->eKept != KEPT_NONE && now - c->iKeptAt > KEPT_MAX_AGE) {
      csrKeptFree(c, 0);
    }
  }
  pthread_mutex_unlock(&regMutex);
}

static int strataOpen(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **ppCursor) {
  Vtab *p = (Vtab *)pVtab;
  Cursor *c;
  u64 now;
  int rc = vtabReady(p);
  if (rc) return rc;
  now = atomic_fetch_add_explicit(&nCursorOpens, 1, memory_order_relaxed) + 1;
  if (now % KEPT_SWEEP_EVERY == 0) sweepKeptIters(p, now);
  if (p->pIdleCsr) {
    c = p->pIdleCsr;
    p->pIdleCsr = NULL;
    memset(&c->base, 0, sizeof(c->base));
  } else {
    c = sqlite3_malloc(sizeof(*c));
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof(*c));
    c->aField = sqlite3_malloc64(sizeof(KcField) * (u64)(p->pDef->nField + 1));
    if (!c->aField) {
      sqlite3_free(c);
      return SQLITE_NOMEM;
    }
  }
  c->eSrc = SRC_NONE;
  c->bEof = 1;
  c->bLazyRow = 0;
  c->bShape = 0;
  c->bSaved = 0;
  c->bStepDone = 0;
  c->pNextCsr = p->pCsrList;
  p->pCsrList = c;
  *ppCursor = &c->base;
  return SQLITE_OK;
}

/* Add the cursor's counts to the table's shared statistics. */
static void csrFlushCounts(Cursor *c, Vtab *p) {
  Shared *sh = p->pShared;
  if (!sh) return;
  if (c->nVisited) atomic_fetch_add_explicit(&sh->nRowsVisited, c->nVisited, memory_order_relaxed);
  if (c->nLookups) atomic_fetch_add_explicit(&sh->nPointLookups, c->nLookups, memory_order_relaxed);
  if (c->nSeeksDone) atomic_fetch_add_explicit(&sh->nSeeks, c->nSeeksDone, memory_order_relaxed);
  if (c->nItersMade) atomic_fetch_add_explicit(&sh->nIters, c->nItersMade, memory_order_relaxed);
  c->nVisited = c->nLookups = c->nSeeksDone = c->nItersMade = 0;
}

/* Drop the cursor's claim on the read source, and its iterator unless bKeep:
** then the iterator is kept for the cursor's next statement, marked with
** the source it reads (see CURSOR REUSE). */
static void csrDropSource(Cursor *c, Vtab *p, int bKeep) {
  int eKept = c->eKept; /* SRC_NONE: what it keeps already */
  if (c->eSrc == SRC_SNAP || c->eSrc == SRC_LATEST) eKept = KEPT_DB;
  if (c->eSrc == SRC_TXN) eKept = KEPT_TXN;
  if (bKeep && c->pIter) {
    /* Its age counts from its last use. */
    if (c->eKept == KEPT_NONE) {
      c->iKeptAt = atomic_load_explicit(&nCursorOpens, memory_order_relaxed);
    }
    c->eKept = eKept;
  } else {
    strata_iter_free(c->pIter);
    c->pIter = NULL;
    c->eKept = KEPT_NONE;
  }
  if (c->eSrc == SRC_SNAP) {
    if (--p->nSnapRef == 0 && p->pSnap) {
      strata_snapshot_release(p->pShared->pDb, p->pSnap);
      p->pSnap = NULL;
    }
  }
  c->eSrc = SRC_NONE;
}

static int strataClose(sqlite3_vtab_cursor *pCur) {
  Cursor *c = (Cursor *)pCur;
  Vtab *p = (Vtab *)pCur->pVtab;
  Cursor **pp;
  csrFlushCounts(c, p);
  csrDropSource(c, p, !p->pIdleCsr);
  for (pp = &p->pCsrList; *pp; pp = &(*pp)->pNextCsr) {
    if (*pp == c) {
      *pp = c->pNextCsr;
      break;
    }
  }
  if (!p->pIdleCsr) {
    c->pNextCsr = NULL;
    c->pKey = c->pVal = NULL;
    p->pIdleCsr = c;
  } else {
    csrFree(c);
  }
  return SQLITE_OK;
}

/* Choose where this cursor reads from for the xFilter that is starting. */
static int csrChooseSource(Cursor *c, Vtab *p) {
  int eWant;
  endStaleReads(p);
  if (!p->pTxn && !sqlite3_get_autocommit(p->db)) {
    /* First read of a BEGIN ... COMMIT: its snapshot lasts to the end. */
    int rc = beginReads(p);
    if (rc) return rc;
  }
  eWant = p->pTxn ? SRC_TXN : SRC_SNAP;
  if (c->eSrc != eWant) {
    csrDropSource(c, p, 1);
    /* An iterator is kept only for the source it reads. */
    if (c->eKept != (eWant == SRC_TXN ? KEPT_TXN : KEPT_DB)) csrKeptFree(c, 0);
    if (eWant == SRC_SNAP) {
      if (!p->pSnap) {
        p->pSnap = strata_snapshot_new(p->pShared->pDb);
        if (!p->pSnap) return vtabErr(&p->base, SQLITE_NOMEM, "strata: %s", strata_errmsg());
      }
      p->nSnapRef++;
    }
    c->eSrc = eWant;
  }
  return SQLITE_OK;
}

/* FULL SCANS
** A scan of the whole table reads every block once. When the table is much
** larger than the block cache, inserting those blocks only evicts the
** blocks that lookups and seeks come back to, and no block of the scan is
** still there when the next scan wants it; read without filling the cache
** (fill_cache = 0), the engine also reads ahead in large windows. A table
** that fits comfortably keeps the cache, so that repeated scans are served
** from memory. */

/* Is the table more than a quarter of its block cache? */
static int vtabLargerThanCache(Vtab *p) {
  strata_options so;
  strata_stats st;
  size_t nCache;
  strata_options_init(&so);
  nCache = p->pDef->opt.cacheSize ? (size_t)p->pDef->opt.cacheSize : so.cache_size;
  if (strata_get_stats(p->pShared->pDb, &st) != STRATA_OK) return 0;
  return st.live_bytes + st.memtable_bytes > nCache / 4;
}

/* Make sure the cursor has an iterator on its source, made with the cache
** mode the filter wants. */
static int csrIter(Cursor *c, Vtab *p) {
  strata_read_options ro;
  int rc;
  if (c->pIter && c->bIterNoFill != c->bNoFill) {
    strata_iter_free(c->pIter);
    c->pIter = NULL;
    c->eKept = KEPT_NONE;
  }
  if (c->eKept == KEPT_TXN) c->eKept = KEPT_NONE; /* still valid: the transaction is the same */
  if (c->pIter && c->eKept == KEPT_DB) {
    c->eKept = KEPT_NONE;
    rc = strata_iter_refresh(c->pIter, c->eSrc == SRC_SNAP ? p->pSnap : NULL);
    if (rc == STRATA_OK) return SQLITE_OK;
    strata_iter_free(c->pIter); /* and make a new one, which reports the error again */
    c->pIter = NULL;
  }
  if (c->pIter) return SQLITE_OK;
  strata_read_options_init(&ro);
  ro.lower = aFirstRowKey;
  ro.nLower = sizeof(aFirstRowKey);
  ro.fill_cache = !c->bNoFill;
  c->bIterNoFill = c->bNoFill;
  if (c->eSrc == SRC_TXN) {
    rc = strata_txn_iter_new(p->pTxn, &ro, &c->pIter);
  } else {
    ro.snapshot = c->eSrc == SRC_SNAP ? p->pSnap : NULL;
    rc = strata_iter_new(p->pShared->pDb, &ro, &c->pIter);
  }
  if (rc) return engineErr(&p->base, rc);
  c->nItersMade++;
  return SQLITE_OK;
}

static int keyCmp(const u8 *a, size_t na, const u8 *b, size_t nb) {
  size_t n = na < nb ? na : nb;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return na < nb ? -1 : (na > nb ? 1 : 0);
}

static void csrNewRow(Cursor *c) {
  c->bKeyParsed = 0;
  c->bRowParsed = 0;
}

/* Point the cursor at the iterator's entry if it is on this side of the
** range's stop bound (pStop). When the plan reads no column (count(*)) and
** there is no bound to test, the entry is fetched only if a column or the
** rowid is asked for after all (csrFetchRow). */
static inline __attribute__((always_inline)) int csrTakeIter(Cursor *c) {
  if (c->bNoCols && !c->nStop) {
    if (!strata_iter_valid(c->pIter)) return 0;
    c->bLazyRow = 1;
  } else {
    size_t nKey, nVal;
    const void *pKey, *pVal;
    if (!strata_iter_entry(c->pIter, &pKey, &nKey, &pVal, &nVal)) return 0;
    if (c->nStop) {
      int cmp = keyCmp(pKey, nKey, c->pStop, c->nStop);
      if (c->bDesc ? cmp < 0 : cmp >= 0) return 0;
    }
    c->pKey = pKey;
    c->nKey = nKey;
    c->pVal = pVal;
    c->nVal = nVal;
    c->bLazyRow = 0;
  }
  csrNewRow(c);
  c->nVisited++;
  return 1;
}

static void csrCatchUp(Cursor *c);

/* Fetch the entry of a row that csrTakeIter left in the iterator. Returns
** SQLITE_OK, or an error (with the message in pVtab, if given) when the
** iterator could not be brought back to the row from the rows it counted
** ahead (COUNTING SCANS); the row stays unfetched then. */
static int csrFetchRow(Cursor *c, sqlite3_vtab *pVtab) {
  size_t nKey, nVal;
  const void *pKey, *pVal;
  if (c->bSkipped) csrCatchUp(c);
  c->bNoSkip = 1;
  if (c->eStep == STEP_SKIP) c->eStep = STEP_NEXT;
  if (!c->pIter || !strata_iter_entry(c->pIter, &pKey, &nKey, &pVal, &nVal)) {
    int rc = c->pIter ? strata_iter_status(c->pIter) : STRATA_OK;
    c->pKey = c->pVal = NULL;
    c->nKey = c->nVal = 0;
    if (!pVtab) return SQLITE_ERROR;
    if (rc) return engineErr(pVtab, rc);
    return vtabErr(pVtab, SQLITE_INTERNAL, "strata: cursor lost its row");
  }
  c->pKey = pKey;
  c->nKey = nKey;
  c->pVal = pVal;
  c->nVal = nVal;
  c->bLazyRow = 0;
  return SQLITE_OK;
}

/* Set the stop bound of range r: only the bound the scan moves towards can
** be crossed (it started at or inside the other one). A lower bound equal to
** the iterator's own (aFirstRowKey: no constraint) needs no test per row. */
static void csrSetStop(Cursor *c, const KeyRange *r) {
  c->eStep = STEP_PREV;
  if (!c->bDesc) {
    c->pStop = c->aBound + r->iHi;
    c->nStop = r->nHi;
    c->eStep = c->bNoCols && !c->nStop && !c->bNoSkip ? STEP_SKIP : STEP_NEXT;
  } else if (r->nLo == sizeof(aFirstRowKey) &&
             memcmp(c->aBound + r->iLo, aFirstRowKey, sizeof(aFirstRowKey)) == 0) {
    c->pStop = NULL;
    c->nStop = 0;
  } else {
    c->pStop = c->aBound + r->iLo;
    c->nStop = r->nLo;
  }
}

/* Position at the first row of range iRange or a later one (in scan order).
** Sets bEof when the ranges are exhausted. */
static int csrStartRange(Cursor *c, Vtab *p) {
  int rc;
  while (c->iRange < c->nRange) {
    const KeyRange *r = &c->aRange[c->bDesc ? c->nRange - 1 - c->iRange : c->iRange];
    if (c->bPoint) {
      const u8 *pKey = c->aBound + r->iLo;
      c->nLookups++;
      if (c->eSrc == SRC_TXN) {
        rc = strata_txn_get(p->pTxn, pKey, r->nLo, &c->point);
      } else {
        rc = strata_get(p->pShared->pDb, c->eSrc == SRC_SNAP ? p->pSnap : NULL, pKey, r->nLo,
                        &c->point);
      }
      if (rc == STRATA_OK) {
        c->bLazyRow = 0;
        c->pKey = pKey;
        c->nKey = r->nLo;
        c->pVal = c->point.p;
        c->nVal = c->point.n;
        csrNewRow(c);
        c->nVisited++;
        return SQLITE_OK;
      }
      if (rc != STRATA_NOTFOUND) return engineErr(&p->base, rc);
    } else {
      rc = csrIter(c, p);
      if (rc) return rc;
      c->nSeeksDone++;
      csrSetStop(c, r);
      if (!c->bDesc) {
        strata_iter_seek(c->pIter, c->aBound + r->iLo, r->nLo);
      } else if (r->nHi) {
        strata_iter_seek_for_prev(c->pIter, c->aBound + r->iHi, r->nHi);
        if (strata_iter_valid(c->pIter)) {
          size_t n;
          const u8 *k = strata_iter_key(c->pIter, &n);
          if (keyCmp(k, n, c->aBound + r->iHi, r->nHi) >= 0) strata_iter_prev(c->pIter);
        }
      } else {
        strata_iter_seek_last(c->pIter);
      }
      rc = strata_iter_status(c->pIter);
      if (rc) return engineErr(&p->base, rc);
      if (csrTakeIter(c)) return SQLITE_OK;
    }
    c->iRange++;
  }
  c->bEof = 1;
  return SQLITE_OK;
}

/* The iterator of a range scan stepped off the range or its entries. */
static __attribute__((noinline)) int csrStepEnd(Cursor *c, Vtab *p) {
  int rc = strata_iter_status(c->pIter);
  if (rc) return engineErr(&p->base, rc);
  c->iRange++;
  return csrStartRange(c, p);
}

/* COUNTING SCANS
** A plan that reads no column and tests no bound per row (count(*)) only
** needs to know that there is a next row. xNext then counts rows ahead with
** strata_iter_skip, in batches that double from 16 to 1024 rows (so a scan
** cut short, by a LIMIT say, reads at most about twice the rows it returns
** and 16 more), and answers the following calls from the count without
** calling the engine. The iterator is then ahead of the cursor's row: when the row
** is wanted after all (a column or the rowid asked for, or a savepoint that
** copies it: csrFetchRow), csrCatchUp seeks back to the key the batch
** started at and steps to the row, and the scan goes on a row at a time. */

/* Count a batch of rows ahead; the cursor moves to the first. The iterator
** is on the cursor's row, or past the last row (invalid). */
static __attribute__((noinline)) int csrSkipStep(Cursor *c, Vtab *p) {
  size_t n;
  const void *pKey = strata_iter_key(c->pIter, &n);
  u64 k;
  if (!pKey) return csrStepEnd(c, p); /* the last batch ran to the end */
  if (growBuf(&c->aSkipKey, &c->nSkipKeyAlloc, n + 1)) return SQLITE_NOMEM;
  memcpy(c->aSkipKey, pKey, n);
  c->nSkipKey = n;
  k = strata_iter_skip(c->pIter, c->nSkipBatch);
  if (k == 0) return csrStepEnd(c, p);
  c->bSkipped = 1;
  c->nSkipGot = k;
  c->nAhead = k - 1;
  c->nVisited += k;
  if (c->nSkipBatch < 1024) c->nSkipBatch *= 2;
  c->bLazyRow = 1;
  csrNewRow(c);
  return SQLITE_OK;
}

/* Bring the iterator back from the rows it counted ahead to the cursor's
** row (COUNTING SCANS). If the table changed under the transaction's
** iterator meanwhile, it lands where the steps take it. */
static void csrCatchUp(Cursor *c) {
  u64 nStep = c->nSkipGot - c->nAhead; /* rows from the batch's start to the cursor's */
  c->bSkipped = 0;
  c->nAhead = 0;
  if (nStep == c->nSkipGot && strata_iter_valid(c->pIter)) return; /* on the row */
  strata_iter_seek(c->pIter, c->aSkipKey, c->nSkipKey);
  if (strata_iter_valid(c->pIter)) {
    size_t n;
    const u8 *k = strata_iter_key(c->pIter, &n);
    if (keyCmp(k, n, c->aSkipKey, c->nSkipKey) != 0) nStep--; /* that row is gone */
  }
  while (nStep-- > 0 && strata_iter_valid(c->pIter)) strata_iter_next(c->pIter);
}

/* Advance to the next row. */
static inline __attribute__((always_inline)) int csrStep(Cursor *c, Vtab *p) {
  if (c->bEof) return SQLITE_OK;
  if (!c->bPoint) {
    if (!c->pIter) return vtabErr(&p->base, SQLITE_INTERNAL, "strata: cursor lost its iterator");
    if (c->bStepDone) {
      c->bStepDone = 0;
    } else if (c->eStep == STEP_PREV) {
      strata_iter_prev(c->pIter);
    } else if (c->eStep == STEP_SKIP) {
      if (c->nAhead) {
        c->nAhead--;
        return SQLITE_OK;
      }
      return csrSkipStep(c, p);
    } else {
      strata_iter_next(c->pIter);
    }
    if (csrTakeIter(c)) return SQLITE_OK; /* a valid iterator has no error */
    return csrStepEnd(c, p);
  }
  c->iRange++;
  return csrStartRange(c, p);
}

/* The cursor's iterator must go (its transaction ends or rolls back): copy
** the current row out of it and free it. */
static int csrSave(Cursor *c) {
  if (!c->pIter) return SQLITE_OK;
  if (c->bLazyRow && !c->bEof) csrFetchRow(c, NULL); /* on failure: nothing to restore */
  if (!c->bEof && !c->bPoint && c->pKey && c->pKey != c->aCopy) {
    if (growBuf(&c->aCopy, &c->nCopyAlloc, c->nKey + c->nVal + 1)) return SQLITE_NOMEM;
    memcpy(c->aCopy, c->pKey, c->nKey);
    if (c->nVal) memcpy(c->aCopy + c->nKey, c->pVal, c->nVal);
    c->pKey = c->aCopy;
    c->pVal = c->aCopy + c->nKey;
  }
  strata_iter_free(c->pIter);
  c->pIter = NULL;
  c->bSaved = 1;
  return SQLITE_OK;
}

/* Continue a saved cursor on source eSrc: a new iterator, positioned so that
** the next step goes to the row after the saved one. */
static int csrRestore(Cursor *c, Vtab *p, int eSrc) {
  int rc;
  if (c->eSrc != eSrc) {
    csrDropSource(c, p, 0);
    c->eSrc = eSrc;
  }
  if (!c->bSaved) return SQLITE_OK;
  c->bSaved = 0;
  if (c->bEof || c->bPoint || !c->pKey) return SQLITE_OK;
  rc = csrIter(c, p);
  if (rc) return rc;
  if (c->bDesc) {
    strata_iter_seek_for_prev(c->pIter, c->pKey, c->nKey);
  } else {
    strata_iter_seek(c->pIter, c->pKey, c->nKey);
  }
  c->bStepDone = 1;
  if (strata_iter_valid(c->pIter)) {
    size_t n;
    const u8 *k = strata_iter_key(c->pIter, &n);
    if (keyCmp(k, n, c->pKey, c->nKey) == 0) c->bStepDone = 0; /* the same row: step normally */
  }
  return SQLITE_OK;
}


static int compAddRaw(CompList *l, const u8 *x, size_t nx) {
  if (growBuf(&l->a, &l->nAlloc, l->n + nx + 1)) return SQLITE_NOMEM;
  if (l->nComp + 2 > l->nCompAlloc) {
    int nNew = l->nCompAlloc ? 2 * l->nCompAlloc : 8;
    size_t *a = sqlite3_realloc64(l->aOff, sizeof(size_t) * (u64)nNew);
    if (!a) return SQLITE_NOMEM;
    l->aOff = a;
    l->nCompAlloc = nNew;
  }
  l->aOff[l->nComp] = l->n;
  if (nx) memcpy(l->a + l->n, x, nx);
  l->n += nx;
  l->nComp++;
  l->aOff[l->nComp] = l->n;
  return SQLITE_OK;
}

static int compAdd(CompList *l, const KcValue *v) {
  size_t nEnc = keycodecKeyLen(v);
  int rc = compAddRaw(l, NULL, 0);
  if (rc) return rc;
  l->nComp--;
  if (growBuf(&l->a, &l->nAlloc, l->n + nEnc)) return SQLITE_NOMEM;
  l->n += keycodecKeyPut(l->a + l->n, v);
  l->nComp++;
  l->aOff[l->nComp] = l->n;
  return SQLITE_OK;
}

#define COMP_PTR(l, i) ((l)->a + (l)->aOff[i])
#define COMP_LEN(l, i) ((l)->aOff[(i) + 1] - (l)->aOff[i])

static void compFree(CompList *l) {
  sqlite3_free(l->a);
  sqlite3_free(l->aOff);
  memset(l, 0, sizeof(*l));
}

/* Empty l, keeping its buffers. */
static void compReset(CompList *l) {
  l->n = 0;
  l->nComp = 0;
}

static void compSwap(CompList *pA, CompList *pB) {
  CompList t = *pA;
  *pA = *pB;
  *pB = t;
}

/* Forget what pc knew, keeping its buffers. */
static void posReset(PosCons *pc) {
  pc->bEq = pc->bEmpty = 0;
  pc->bLo = pc->bHi = pc->bLoIncl = pc->bHiIncl = 0;
  compReset(&pc->vals);
  compReset(&pc->bounds);
}

/* Replace *pA with the components of *pA that also appear in *pB, built in
** *pSpare (whose buffers are then pA's old ones). */
static int compIntersect(CompList *pA, const CompList *pB, CompList *pSpare) {
  int i, j, rc = SQLITE_OK;
  compReset(pSpare);
  for (i = 0; rc == SQLITE_OK && i < pA->nComp; i++) {
    for (j = 0; j < pB->nComp; j++) {
      if (COMP_LEN(pA, i) == COMP_LEN(pB, j) &&
          memcmp(COMP_PTR(pA, i), COMP_PTR(pB, j), COMP_LEN(pA, i)) == 0) {
        rc = compAddRaw(pSpare, COMP_PTR(pA, i), COMP_LEN(pA, i));
        break;
      }
    }
  }
  compSwap(pA, pSpare);
  return rc;
}


/* Does component x lie inside pc's bounds? Components are prefix-free, so
** memcmp() order on whole components is value order. */
static int compInRange(const PosCons *pc, const u8 *x, size_t nx) {
  if (pc->bLo) {
    int c = keyCmp(x, nx, pc->bounds.a + pc->iLo, pc->nLo);
    if (c < 0 || (c == 0 && !pc->bLoIncl)) return 0;
  }
  if (pc->bHi) {
    int c = keyCmp(x, nx, pc->bounds.a + pc->iHi, pc->nHi);
    if (c > 0 || (c == 0 && !pc->bHiIncl)) return 0;
  }
  return 1;
}

/* Add a bound, keeping the tighter of the old and the new one. */
static int posBound(PosCons *pc, int bLower, const u8 *x, size_t nx, int bIncl) {
  int bHave = bLower ? pc->bLo : pc->bHi;
  int rc;
  if (bHave) {
    const u8 *b = pc->bounds.a + (bLower ? pc->iLo : pc->iHi);
    int c = keyCmp(x, nx, b, bLower ? pc->nLo : pc->nHi);
    int bOldIncl = bLower ? pc->bLoIncl : pc->bHiIncl;
    if (bLower ? (c < 0 || (c == 0 && (bIncl || !bOldIncl))) : (c > 0 || (c == 0 && (bIncl || !bOldIncl)))) {
      return SQLITE_OK; /* the old bound is at least as tight */
    }
  }
  rc = compAddRaw(&pc->bounds, x, nx);
  if (rc) return rc;
  if (bLower) {
    pc->bLo = 1;
    pc->iLo = pc->bounds.aOff[pc->bounds.nComp - 1];
    pc->nLo = nx;
    pc->bLoIncl = bIncl;
  } else {
    pc->bHi = 1;
    pc->iHi = pc->bounds.aOff[pc->bounds.nComp - 1];
    pc->nHi = nx;
    pc->bHiIncl = bIncl;
  }
  return SQLITE_OK;
}

/* Encode one constraint value with key position k's affinity (as SQLite's
** comparison would apply it) and append it to l. *pbNull is set instead if
** the value is NULL: a comparison with NULL is never true. */
static int encodeConstraint(Vtab *p, int k, sqlite3_value *v, CompList *l, int *pbNull) {
  TableDef *pDef = p->pDef;
  char cAff = pDef->aiKey[k] < 0 ? AFF_INTEGER : pDef->aCol[pDef->aiKey[k]].cAff;
  KcValue kv;
  sqlite3_value *pDup = NULL;
  int rc = applyAffinity(v, cAff, 0, &kv, &pDup);
  *pbNull = 0;
  if (rc == SQLITE_OK) {
    if (kv.eType == SQLITE_NULL || (kv.eType == SQLITE_FLOAT && kv.r != kv.r)) {
      *pbNull = 1;
    } else {
      rc = compAdd(l, &kv);
    }
  }
  sqlite3_value_free(pDup);
  return rc;
}

/* Sort the components of l (insertion sort: lists are short) and drop
** duplicates and those outside pc's bounds. The cursor's spare list and
** index array are the scratch space. */
static int compSortUnique(Cursor *c, CompList *l, const PosCons *pc) {
  CompList *out = &c->spare;
  int *aIx, i, j, rc = SQLITE_OK;
  if (l->nComp + 1 > c->nIxAlloc) {
    int nNew = l->nComp + 16;
    aIx = sqlite3_realloc64(c->aIx, sizeof(int) * (u64)nNew);
    if (!aIx) return SQLITE_NOMEM;
    c->aIx = aIx;
    c->nIxAlloc = nNew;
  }
  aIx = c->aIx;
  for (i = 0; i < l->nComp; i++) {
    int v = i;
    for (j = i - 1; j >= 0 && keyCmp(COMP_PTR(l, aIx[j]), COMP_LEN(l, aIx[j]), COMP_PTR(l, v),
                                     COMP_LEN(l, v)) > 0;
         j--) {
      aIx[j + 1] = aIx[j];
    }
    aIx[j + 1] = v;
  }
  compReset(out);
  for (i = 0; rc == SQLITE_OK && i < l->nComp; i++) {
    const u8 *x = COMP_PTR(l, aIx[i]);
    size_t nx = COMP_LEN(l, aIx[i]);
    if (!compInRange(pc, x, nx)) continue;
    if (out->nComp > 0 && keyCmp(COMP_PTR(out, out->nComp - 1), COMP_LEN(out, out->nComp - 1), x,
                                 nx) == 0) {
      continue;
    }
    rc = compAddRaw(out, x, nx);
  }
  compSwap(l, out);
  return rc;
}

/* Append a || b (|| 0xFF if bAfter) to the cursor's bound arena. */
static int boundAdd(Cursor *c, const u8 *a, size_t n, const u8 *b, size_t nb, int bAfter,
                    size_t *piOff, size_t *pnOut) {
  if (growBuf(&c->aBound, &c->nBoundAlloc, c->nBound + n + nb + 1)) return SQLITE_NOMEM;
  *piOff = c->nBound;
  if (n) memcpy(c->aBound + c->nBound, a, n);
  if (nb) memcpy(c->aBound + c->nBound + n, b, nb);
  c->nBound += n + nb;
  if (bAfter) c->aBound[c->nBound++] = KC_KEY_AFTER;
  *pnOut = c->nBound - *piOff;
  return SQLITE_OK;
}

static int rangeAdd(Cursor *c, KeyRange **ppR) {
  if (c->nRange >= c->nRangeAlloc) {
    int nNew = c->nRangeAlloc ? 2 * c->nRangeAlloc : 8;
    KeyRange *a = sqlite3_realloc64(c->aRange, sizeof(KeyRange) * (u64)nNew);
    if (!a) return SQLITE_NOMEM;
    c->aRange = a;
    c->nRangeAlloc = nNew;
  }
  *ppR = &c->aRange[c->nRange++];
  memset(*ppR, 0, sizeof(**ppR));
  return SQLITE_OK;
}

/* Turn the constraint values into the cursor's key ranges: the cartesian
** product of the prefix candidates (in key order, last position fastest),
** each with the bounds of the next key position. */
static int buildRanges(Cursor *c, PosCons *aPc, int nPrefix, int nKey) {
  int aIdx[MAX_KEY_COLS];
  PosCons *pr = nPrefix < nKey ? &aPc[nPrefix] : NULL;
  int k, rc = SQLITE_OK;
  memset(aIdx, 0, sizeof(aIdx));
  c->bPoint = (nPrefix == nKey);
  for (;;) {
    size_t nPre = 0;
    u8 *aPre;
    KeyRange *r;
    for (k = 0; k < nPrefix; k++) nPre += COMP_LEN(&aPc[k].vals, aIdx[k]);
    if (growBuf(&c->aPre, &c->nPreAlloc, nPre + 1)) {
      rc = SQLITE_NOMEM;
      break;
    }
    aPre = c->aPre;
    nPre = 0;
    for (k = 0; k < nPrefix; k++) {
      size_t n = COMP_LEN(&aPc[k].vals, aIdx[k]);
      memcpy(aPre + nPre, COMP_PTR(&aPc[k].vals, aIdx[k]), n);
      nPre += n;
    }
    rc = rangeAdd(c, &r);
    if (rc) break;
    if (c->bPoint) {
      rc = boundAdd(c, aPre, nPre, NULL, 0, 0, &r->iLo, &r->nLo);
    } else {
      if (pr && pr->bLo) {
        rc = boundAdd(c, aPre, nPre, pr->bounds.a + pr->iLo, pr->nLo, !pr->bLoIncl, &r->iLo,
                      &r->nLo);
      } else if (nPre) {
        rc = boundAdd(c, aPre, nPre, NULL, 0, 0, &r->iLo, &r->nLo);
      } else {
        rc = boundAdd(c, aFirstRowKey, sizeof(aFirstRowKey), NULL, 0, 0, &r->iLo, &r->nLo);
      }
      if (rc == SQLITE_OK && pr && pr->bHi) {
        rc = boundAdd(c, aPre, nPre, pr->bounds.a + pr->iHi, pr->nHi, pr->bHiIncl, &r->iHi,
                      &r->nHi);
      } else if (rc == SQLITE_OK && nPre) {
        rc = boundAdd(c, aPre, nPre, NULL, 0, 1, &r->iHi, &r->nHi);
      }
      if (rc == SQLITE_OK && r->nHi &&
          keyCmp(c->aBound + r->iLo, r->nLo, c->aBound + r->iHi, r->nHi) >= 0) {
        c->nRange--; /* an empty range */
      }
    }
    if (rc) break;
    for (k = nPrefix - 1; k >= 0; k--) {
      if (++aIdx[k] < aPc[k].vals.nComp) break;
      aIdx[k] = 0;
    }
    if (k < 0) break;
  }
  return rc;
}

/* INTEGER KEY LOOKUP
** `WHERE k = ?` with an integer on a table whose key is one INTEGER column
** (or the rowid) is the commonest filter there is: its key is encoded
** straight into the cursor's bound arena as the one point range, without
** the constraint lists, sorting and range building that IN lists, composite
** keys and bounds need. It gives the same range the general path builds:
** INTEGER affinity leaves an integer as it is. Returns 0 if the filter is
** not of that shape, and the general path takes it. */
static int filterIntPoint(Cursor *c, Vtab *p, const char *idxStr, int argc,
                          sqlite3_value **argv, int *pRc) {
  TableDef *pDef = p->pDef;
  KcValue kv;
  KeyRange *r;
  if (argc != 1 || pDef->nKey != 1 || !idxStr || idxStr[0] != 'A' || idxStr[1] != OP_EQ ||
      idxStr[2] != 0 || sqlite3_value_type(argv[0]) != SQLITE_INTEGER) {
    return 0;
  }
  if (pDef->aiKey[0] >= 0 && pDef->aCol[pDef->aiKey[0]].cAff != AFF_INTEGER) return 0;
  kv.eType = SQLITE_INTEGER;
  kv.i = sqlite3_value_int64(argv[0]);
  if (growBuf(&c->aBound, &c->nBoundAlloc, KC_NUM_MAXLEN) || rangeAdd(c, &r)) {
    *pRc = SQLITE_NOMEM;
    c->bEof = 1;
    return 1;
  }
  c->bPoint = 1;
  c->nBound = keycodecKeyPut(c->aBound, &kv);
  r->iLo = 0;
  r->nLo = c->nBound;
  *pRc = csrStartRange(c, p);
  return 1;
}

static int strataFilter(sqlite3_vtab_cursor *pCur, int idxNum, const char *idxStr, int argc,
                        sqlite3_value **argv) {
  Cursor *c = (Cursor *)pCur;
  Vtab *p = (Vtab *)pCur->pVtab;
  TableDef *pDef = p->pDef;
  int nKey = pDef->nKey;
  PosCons *aPc = c->aPc;
  CompList *l = &c->scratch;
  int nPrefix = 0, i, k, rc = SQLITE_OK;

  /* Reset every per-scan and per-row state: a cursor is filtered again and
  ** again for IN lists and the inner loops of joins. */
  c->bEof = 0;
  c->bPoint = 0;
  c->bDesc = (idxNum & IDX_DESC) != 0;
  c->bNoCols = (idxNum & IDX_NOCOLS) != 0;
  c->nRange = 0;
  c->iRange = 0;
  c->nBound = 0;
  c->nSkip = 0;
  c->pKey = c->pVal = NULL;
  c->nKey = c->nVal = 0;
  c->bLazyRow = 0;
  c->bStepDone = 0;
  c->bSaved = 0;
  c->eStep = c->bDesc ? STEP_PREV : STEP_NEXT;
  c->xIterStep = c->bDesc ? strata_iter_prev : strata_iter_next;
  c->bNoSkip = c->bSkipped = 0;
  c->nAhead = 0;
  c->nSkipBatch = 16;
  csrNewRow(c);
  csrFlushCounts(c, p);

  rc = csrChooseSource(c, p);
  if (rc) return rc;
  if (filterIntPoint(c, p, idxStr, argc, argv, &rc)) return rc;
  for (k = 0; k < nKey; k++) posReset(&aPc[k]);

  for (i = 0; rc == SQLITE_OK && i < argc && idxStr && idxStr[2 * i]; i++) {
    char op = idxStr[2 * i + 1];
    PosCons *pc;
    int bNull = 0;
    k = idxStr[2 * i] - 'A';
    if (op == OP_OFFSET) {
      i64 n = sqlite3_value_int64(argv[i]);
      c->nSkip = n > 0 ? n : 0;
      continue;
    }
    if (k < 0 || k >= nKey) continue;
    pc = &aPc[k];
    compReset(l);
    if (op == OP_IN) {
      sqlite3_value *pEl = NULL;
      int rc2;
      for (rc2 = sqlite3_vtab_in_first(argv[i], &pEl); rc == SQLITE_OK && rc2 == SQLITE_OK && pEl;
           rc2 = sqlite3_vtab_in_next(argv[i], &pEl)) {
        rc = encodeConstraint(p, k, pEl, l, &bNull); /* NULL members never match */
      }
      if (rc == SQLITE_OK && rc2 != SQLITE_OK && rc2 != SQLITE_DONE) rc = rc2;
      bNull = 0;
    } else {
      rc = encodeConstraint(p, k, argv[i], l, &bNull);
      if (bNull) pc->bEmpty = 1;
    }
    if (rc == SQLITE_OK && !bNull && (op == OP_EQ || op == OP_IN)) {
      if (pc->bEq) {
        rc = compIntersect(&pc->vals, l, &c->spare);
      } else {
        compSwap(&pc->vals, l);
        pc->bEq = 1;
      }
      if (pc->vals.nComp == 0) pc->bEmpty = 1;
    } else if (rc == SQLITE_OK && !bNull) {
      rc = posBound(pc, op == OP_GT || op == OP_GE, l->a, l->n, op == OP_GE || op == OP_LE);
    }
  }
  if (rc) goto filter_done;

  for (k = 0; k < nKey; k++) {
    if (aPc[k].bEmpty) c->bEof = 1;
  }
  for (k = 0; k < nKey && aPc[k].bEq; k++) nPrefix++;
  for (k = 0; rc == SQLITE_OK && !c->bEof && k < nPrefix; k++) {
    rc = compSortUnique(c, &aPc[k].vals, &aPc[k]);
    if (rc == SQLITE_OK && aPc[k].vals.nComp == 0) c->bEof = 1;
  }
  if (rc || c->bEof) goto filter_done;
  rc = buildRanges(c, aPc, nPrefix, nKey);
  if (rc) goto filter_done;
  c->bNoFill =
      !c->bPoint && nPrefix == 0 && !aPc[0].bLo && !aPc[0].bHi && vtabLargerThanCache(p);
  rc = csrStartRange(c, p);
  /* OFFSET: skip rows without decoding them. */
  while (rc == SQLITE_OK && c->nSkip > 0 && !c->bEof) {
    c->nSkip--;
    rc = csrStep(c, p);
  }

filter_done:
  if (rc == SQLITE_NOMEM) c->bEof = 1;
  return rc;
}

/* csrStep out of line, for strataNext's uncommon cases. */
static __attribute__((noinline)) int csrStepOutOfLine(Cursor *c, Vtab *p) {
  return csrStep(c, p);
}

/* The common step of a range scan inline, saving few registers; the rest
** as csrStep. */
static __attribute__((noinline)) int strataNextRow(sqlite3_vtab_cursor *pCur) {
  Cursor *c = (Cursor *)pCur;
  if (__builtin_expect(!c->bEof && !c->bPoint && c->pIter && !c->bStepDone, 1)) {
    /* One call either way: a scan in either direction takes no branch. */
    if (c->eStep == STEP_SKIP) return csrSkipStep(c, (Vtab *)pCur->pVtab);
    c->xIterStep(c->pIter);
    if (__builtin_expect(csrTakeIter(c), 1)) return SQLITE_OK; /* valid: no error */
    return csrStepEnd(c, (Vtab *)pCur->pVtab);
  }
  return csrStepOutOfLine(c, (Vtab *)pCur->pVtab);
}

/* xNext: a row counted ahead (COUNTING SCANS) is answered here, before
** the frame strataNextRow needs is set up. */
static int strataNext(sqlite3_vtab_cursor *pCur) {
  Cursor *c = (Cursor *)pCur;
  if (c->eStep == STEP_SKIP && c->nAhead) {
    c->nAhead--;
    return SQLITE_OK;
  }
  return strataNextRow(pCur);
}

static int strataEof(sqlite3_vtab_cursor *pCur) { return ((Cursor *)pCur)->bEof; }

static int csrParseKey(Cursor *c, TableDef *pDef) {
  size_t off = 0;
  int k;
  if (pDef->nKey == 1) {
    /* One component: keycodecKeyGet checks that it spans the whole key. */
    c->aKeyOff[0] = 0;
    c->aKeyOff[1] = c->nKey;
    c->bKeyParsed = 1;
    return SQLITE_OK;
  }
  for (k = 0; k < pDef->nKey; k++) {
    size_t n = keycodecKeySkip(c->pKey + off, c->nKey - off);
    if (n == 0) return SQLITE_CORRUPT;
    c->aKeyOff[k] = off;
    off += n;
  }
  if (off != c->nKey) return SQLITE_CORRUPT;
  c->aKeyOff[pDef->nKey] = off;
  c->bKeyParsed = 1;
  return SQLITE_OK;
}

/* ROW SHAPES
** The rows of a table mostly have the same header: the same field types and
** sizes (fixed-size values, integers of one width). Parsing depends only on
** the header bytes and the row's length, so a row whose length and header
** bytes equal those of the last row parsed has that row's field offsets,
** field count and REAL mask, which the cursor still holds. For a header of
** up to 8 bytes (a row of up to six fields of up to 15 bytes each, or
** fewer larger ones) that is one masked 8-byte comparison instead of a
** parse; longer headers are parsed every time. */

/* Parse the current row's header into c->aField and remember its shape.
** Returns SQLITE_OK or SQLITE_CORRUPT. */
static int csrParseRowFull(Cursor *c, TableDef *pDef) {
  int nHdr;
  c->bShape = 0;
  nHdr = keycodecRowParse(c->pVal, c->nVal, pDef->nField, c->aField, &c->nField, &c->mReal);
  if (!nHdr) return SQLITE_CORRUPT;
  if (nHdr <= 8 && c->nVal >= 8) {
    u64 w;
    memcpy(&w, c->pVal, 8);
    c->mShape = nHdr == 8 ? ~(u64)0 : ((u64)1 << (8 * nHdr)) - 1;
    c->wShape = w & c->mShape;
    c->nShapeVal = c->nVal;
    c->bShape = 1;
  }
  c->bRowParsed = 1;
  return SQLITE_OK;
}

/* Parse the current row's header into c->aField, or find it has the shape of
** the last one parsed (a remembered shape has nShapeVal >= 8, so the 8-byte
** load is inside the row). Returns SQLITE_OK or SQLITE_CORRUPT. */
static inline int csrParseRow(Cursor *c, TableDef *pDef) {
  if (c->bShape && c->nVal == c->nShapeVal) {
    u64 w;
    memcpy(&w, c->pVal, 8);
    if ((w & c->mShape) == c->wShape) {
      c->bRowParsed = 1;
      return SQLITE_OK;
    }
  }
  return csrParseRowFull(c, pDef);
}

/* Key component k of the current row. */
static int csrKeyValue(Cursor *c, Vtab *p, int k, KcValue *pv) {
  const u8 *z;
  size_t n;
  int bEsc;
  if (!c->bKeyParsed && csrParseKey(c, p->pDef)) goto corrupt;
  z = c->pKey + c->aKeyOff[k];
  n = c->aKeyOff[k + 1] - c->aKeyOff[k];
  if (!keycodecKeyGet(z, n, pv, &bEsc)) goto corrupt;
  if (bEsc) {
    if (growBuf(&c->aTmp, &c->nTmpAlloc, pv->n + 1)) return SQLITE_NOMEM;
    keycodecKeyUnescape(z, n, c->aTmp);
    pv->z = c->aTmp;
  }
  return SQLITE_OK;
corrupt:
  return vtabErr(&p->base, SQLITE_CORRUPT, "strata: malformed key in table %s", p->zName);
}

static int strataColumn(sqlite3_vtab_cursor *pCur, sqlite3_context *ctx, int iCol) {
  Cursor *c = (Cursor *)pCur;
  Vtab *p = (Vtab *)pCur->pVtab;
  TableDef *pDef = p->pDef;
  const Column *pCol;
  KcValue v;
  int rc;
  if (c->bEof) return SQLITE_OK;
  if (c->bLazyRow && (rc = csrFetchRow(c, pCur->pVtab)) != SQLITE_OK) return rc;
  if (iCol == pDef->nCol) {
    /* The hidden key column of a PK table. */
    sqlite3_result_blob64(ctx, c->pKey, c->nKey, SQLITE_TRANSIENT);
    return SQLITE_OK;
  }
  if (iCol < 0 || iCol > pDef->nCol) return SQLITE_OK;
  pCol = &pDef->aCol[iCol];
  if (pCol->bKeyInt) {
    /* An integer key in a column that reads integers back as they are: the
    ** REAL flag is looked at only for INT64_MIN, which this form cannot
    ** hold, so the row need not be parsed. */
    int64_t iKey;
    if (keycodecKeyGetSmallInt(c->pKey, c->nKey, &iKey)) {
      sqlite3_result_int64(ctx, iKey);
      return SQLITE_OK;
    }
  }
  if (pCol->iKey >= 0) {
    int k = pCol->iKey;
    rc = csrKeyValue(c, p, k, &v);
    if (rc) return rc;
    /* A REAL that equals an integer: the row says it was REAL. Only columns
    ** without affinity keep such values, and numeric ones -2^63 (SQLite's
    ** real-to-integer rule stops short of it). */
    if (v.eType == SQLITE_INTEGER &&
        (pCol->cAff == AFF_BLOB || (pCol->cAff != AFF_REAL && v.i == INT64_MIN))) {
      if (!c->bRowParsed && csrParseRow(c, pDef)) goto corrupt;
      if ((c->mReal >> k) & 1) {
        v.eType = SQLITE_FLOAT;
        v.r = (double)v.i;
      }
    }
    resultKc(ctx, &v, pCol->cAff, 0);
    return SQLITE_OK;
  }
  if (!c->bRowParsed && csrParseRow(c, pDef)) goto corrupt;
  {
    int f = pCol->iField;
    const KcField *pField;
    if (f >= c->nField) {
      sqlite3_result_null(ctx);
      return SQLITE_OK;
    }
    pField = &c->aField[f];
    /* Strings and blobs read back as stored whatever the affinity. */
    if (pField->eCode == KC_ROW_BLOB) {
      sqlite3_result_blob64(ctx, c->pVal + pField->iOff, pField->nBody, SQLITE_TRANSIENT);
      return SQLITE_OK;
    }
    if (pField->eCode == KC_ROW_TEXT) {
      sqlite3_result_text64(ctx, (const char *)c->pVal + pField->iOff, pField->nBody,
                            SQLITE_TRANSIENT, SQLITE_UTF8);
      return SQLITE_OK;
    }
    keycodecRowValue(c->pVal, pField, &v);
    resultKc(ctx, &v, pCol->cAff, 0);
  }
  return SQLITE_OK;
corrupt:
  return vtabErr(&p->base, SQLITE_CORRUPT, "strata: malformed row in table %s", p->zName);
}

static int strataRowid(sqlite3_vtab_cursor *pCur, sqlite3_int64 *pRowid) {
  Cursor *c = (Cursor *)pCur;
  Vtab *p = (Vtab *)pCur->pVtab;
  KcValue v;
  int rc;
  int64_t iKey;
  *pRowid = 0;
  if (c->bEof || p->pDef->eKind == KIND_PK) return SQLITE_OK;
  if (c->bLazyRow && (rc = csrFetchRow(c, pCur->pVtab)) != SQLITE_OK) return rc;
  if (keycodecKeyGetSmallInt(c->pKey, c->nKey, &iKey)) {
    *pRowid = iKey;
    return SQLITE_OK;
  }
  rc = csrKeyValue(c, p, 0, &v);
  if (rc) return rc;
  if (v.eType != SQLITE_INTEGER) {
    return vtabErr(&p->base, SQLITE_CORRUPT, "strata: non-integer rowid in table %s", p->zName);
  }
  *pRowid = v.i;
  return SQLITE_OK;
}

/* ================================================================ writes */

/* The largest rowid in the table as the transaction sees it, plus one (or 1
** for an empty table). Returns SQLITE_OK, or SQLITE_FULL if the largest
** possible rowid is taken (then a random free one is used, as SQLite). */
static int nextRowid(Vtab *p, i64 *piRowid) {
  static const u8 aLo[1] = {KC_TAG_NUM}, aHi[1] = {KC_TAG_NUM + 1};
  strata_read_options ro;
  strata_iter *it = NULL;
  int rc;
  if (p->bNextRowid) {
    *piRowid = p->iNextRowid;
    if (p->iNextRowid != INT64_MIN) return SQLITE_OK;
  } else {
    strata_read_options_init(&ro);
    ro.lower = aLo;
    ro.nLower = 1;
    ro.upper = aHi;
    ro.nUpper = 1;
    rc = strata_txn_iter_new(p->pTxn, &ro, &it);
    if (rc) return engineErr(&p->base, rc);
    strata_iter_seek_last(it);
    if (strata_iter_valid(it)) {
      size_t n;
      const u8 *k = strata_iter_key(it, &n);
      KcValue v;
      int bEsc;
      if (!keycodecKeyGet(k, n, &v, &bEsc) || v.eType != SQLITE_INTEGER) {
        strata_iter_free(it);
        return vtabErr(&p->base, SQLITE_CORRUPT, "strata: malformed rowid in table %s",
                       p->zName);
      }
      p->iNextRowid = v.i == INT64_MAX ? INT64_MIN : v.i + 1;
    } else {
      rc = strata_iter_status(it);
      if (rc) {
        strata_iter_free(it);
        return engineErr(&p->base, rc);
      }
      p->iNextRowid = 1;
    }
    strata_iter_free(it);
    p->bNextRowid = 1;
    *piRowid = p->iNextRowid;
    if (p->iNextRowid != INT64_MIN) return SQLITE_OK;
  }
  {
    /* The largest rowid is used: try random ones, as SQLite does. */
    int i;
    for (i = 0; i < 100; i++) {
      u8 aKey[KC_NUM_MAXLEN];
      KcValue v;
      i64 r;
      sqlite3_randomness(sizeof(r), &r);
      r &= INT64_MAX;
      if (r == 0) r = 1;
      v.eType = SQLITE_INTEGER;
      v.i = r;
      rc = strata_txn_get(p->pTxn, aKey, keycodecKeyPut(aKey, &v), &p->probe);
      if (rc == STRATA_NOTFOUND) {
        *piRowid = r;
        return SQLITE_OK;
      }
      if (rc) return engineErr(&p->base, rc);
    }
  }
  return vtabErr(&p->base, SQLITE_FULL, "database or disk is full");
}

/* The default of column i, evaluated now. Returns SQLITE_OK and *ppVal (not
** owned by the caller) or an error. */
static int columnDefault(Vtab *p, int iCol, sqlite3_value **ppVal) {
  Column *col = &p->pDef->aCol[iCol];
  int rc;
  *ppVal = NULL;
  if (col->bDfltConst && col->pDflt) {
    *ppVal = col->pDflt;
    return SQLITE_OK;
  }
  if (!col->pDfltStmt) {
    char *zSql = sqlite3_mprintf("SELECT %s", col->zDflt);
    if (!zSql) return SQLITE_NOMEM;
    rc = sqlite3_prepare_v3(p->db, zSql, -1, SQLITE_PREPARE_PERSISTENT, &col->pDfltStmt, NULL);
    sqlite3_free(zSql);
    if (rc) {
      return vtabErr(&p->base, SQLITE_ERROR, "strata: bad DEFAULT for column %s: %s",
                     col->zName, sqlite3_errmsg(p->db));
    }
  }
  rc = sqlite3_step(col->pDfltStmt);
  if (rc == SQLITE_ROW) {
    sqlite3_value *v = sqlite3_value_dup(sqlite3_column_value(col->pDfltStmt, 0));
    sqlite3_reset(col->pDfltStmt);
    if (!v) return SQLITE_NOMEM;
    sqlite3_value_free(col->pDflt);
    col->pDflt = v;
    *ppVal = v;
    return SQLITE_OK;
  }
  rc = sqlite3_reset(col->pDfltStmt);
  return vtabErr(&p->base, rc ? rc : SQLITE_ERROR, "strata: DEFAULT for column %s failed: %s",
                 col->zName, sqlite3_errmsg(p->db));
}

/* Encode the key of the new row into p->aKey. */
static int encodeKey(Vtab *p, const KcValue *aKv, size_t *pnKey) {
  TableDef *pDef = p->pDef;
  size_t n = 0;
  int k;
  for (k = 0; k < pDef->nKey; k++) n += keycodecKeyLen(&aKv[k]);
  if (n > STRATA_MAX_KEY) {
    return vtabErr(&p->base, SQLITE_TOOBIG, "strata: key too large (%llu bytes; the limit is %d)",
                   (unsigned long long)n, STRATA_MAX_KEY);
  }
  if (growBuf(&p->aKey, &p->nKeyAlloc, n)) return SQLITE_NOMEM;
  n = 0;
  for (k = 0; k < pDef->nKey; k++) n += keycodecKeyPut(p->aKey + n, &aKv[k]);
  *pnKey = n;
  return SQLITE_OK;
}

/* A value that must be an integer rowid, as SQLite's OP_MustBeInt. */
static int mustBeInt(Vtab *p, sqlite3_value *v, i64 *piOut) {
  KcValue kv;
  sqlite3_value *pDup = NULL;
  int rc = applyAffinity(v, AFF_INTEGER, 1, &kv, &pDup);
  if (rc == SQLITE_OK) {
    if (kv.eType == SQLITE_INTEGER) {
      *piOut = kv.i;
    } else {
      rc = vtabErr(&p->base, SQLITE_MISMATCH, "datatype mismatch");
    }
  }
  sqlite3_value_free(pDup);
  return rc;
}

static int keyExists(Vtab *p, const u8 *pKey, size_t nKey, int *pbExists) {
  int rc = strata_txn_get(p->pTxn, pKey, nKey, &p->probe);
  if (rc == STRATA_OK || rc == STRATA_NOTFOUND) {
    *pbExists = (rc == STRATA_OK);
    return SQLITE_OK;
  }
  return engineErr(&p->base, rc);
}

/* A constraint error. Under OR IGNORE SQLite skips the row, but it would keep
** the message and show it for any later error of the statement: none then. */
static int ignoredConstraint(Vtab *p, int rc) {
  sqlite3_free(p->base.zErrMsg);
  p->base.zErrMsg = NULL;
  return rc;
}

static int uniqueError(Vtab *p, int eConflict) {
  TableDef *pDef = p->pDef;
  sqlite3_str *s;
  int k;
  if (eConflict == SQLITE_IGNORE) return ignoredConstraint(p, SQLITE_CONSTRAINT_PRIMARYKEY);
  s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, "UNIQUE constraint failed: ");
  for (k = 0; k < pDef->nKey; k++) {
    if (k) sqlite3_str_appendall(s, ", ");
    sqlite3_str_appendf(s, "%s.%s", p->zName,
                        pDef->aiKey[k] < 0 ? "rowid" : pDef->aCol[pDef->aiKey[k]].zName);
  }
  sqlite3_free(p->base.zErrMsg);
  p->base.zErrMsg = sqlite3_str_finish(s);
  return SQLITE_CONSTRAINT_PRIMARYKEY;
}

/* Run engine writes as one unit: xUpdate never leaves half a change. */
static int writeRow(Vtab *p, const u8 *pOld, size_t nOld, const u8 *pKey, size_t nKey,
                    const u8 *pRow, size_t nRow) {
  int rc, iSp = -1;
  if (pOld) {
    rc = strata_txn_savepoint(p->pTxn, &iSp);
    if (rc) return engineErr(&p->base, rc);
    rc = strata_txn_delete(p->pTxn, pOld, nOld);
    if (rc == STRATA_OK) rc = strata_txn_put(p->pTxn, pKey, nKey, pRow, nRow);
    if (rc) txnRollbackTo(p, iSp);
    strata_txn_release(p->pTxn, iSp);
  } else {
    rc = strata_txn_put(p->pTxn, pKey, nKey, pRow, nRow);
  }
  return rc ? engineErr(&p->base, rc) : SQLITE_OK;
}

/* NOT NULL for the new row in p->aVal (column iSkip, the rowid alias, is
** not checked): under OR REPLACE a NULL takes the column's DEFAULT, as in
** SQLite; otherwise a NULL is a constraint error, or skips the row under OR
** IGNORE. Returns SQLITE_OK or the code to return from xUpdate. */
static int checkNotNull(Vtab *p, int iSkip, int eConflict) {
  TableDef *pDef = p->pDef;
  int i, rc;
  for (i = 0; i < pDef->nCol; i++) {
    Column *col = &pDef->aCol[i];
    if (i == iSkip || p->aVal[i].eType != SQLITE_NULL || !col->bNotNull) continue;
    if (eConflict == SQLITE_REPLACE && col->zDflt) {
      sqlite3_value *v;
      rc = columnDefault(p, i, &v);
      if (rc == SQLITE_OK) {
        sqlite3_value_free(p->apDup[i]);
        p->apDup[i] = NULL;
        rc = applyAffinity(v, col->cAff, 1, &p->aVal[i], &p->apDup[i]);
      }
      if (rc) return rc;
      if (p->aVal[i].eType != SQLITE_NULL) continue;
    }
    if (eConflict == SQLITE_IGNORE) return ignoredConstraint(p, SQLITE_CONSTRAINT_NOTNULL);
    return vtabErr(&p->base, SQLITE_CONSTRAINT_NOTNULL, "NOT NULL constraint failed: %s.%s",
                   p->zName, col->zName);
  }
  return SQLITE_OK;
}

static int strataUpdate(sqlite3_vtab *pVtab, int argc, sqlite3_value **argv,
                        sqlite3_int64 *pRowid) {
  Vtab *p = (Vtab *)pVtab;
  TableDef *pDef = p->pDef;
  int eConflict = sqlite3_vtab_on_conflict(p->db);
  int bInsert = (argc > 1 && sqlite3_value_type(argv[0]) == SQLITE_NULL);
  int i, rc = SQLITE_OK, bAutoRowid = 0;
  KcValue aKv[MAX_KEY_COLS];
  const u8 *pOld = NULL;
  size_t nOld = 0, nKey = 0, nRow;
  i64 iRowid = 0;
  u64 mReal = 0;

  if (p->eTxn != TXN_WRITE) {
    rc = strataBegin(pVtab);
    if (rc) return rc;
  }

  /* The old key (UPDATE and DELETE). */
  if (!bInsert) {
    if (pDef->eKind == KIND_PK) {
      if (sqlite3_value_type(argv[0]) != SQLITE_BLOB) {
        return vtabErr(pVtab, SQLITE_ERROR, "strata: bad key for table %s", p->zName);
      }
      nOld = (size_t)sqlite3_value_bytes(argv[0]);
      if (growBuf(&p->aOldKey, &p->nOldKeyAlloc, nOld + 1)) return SQLITE_NOMEM;
      memcpy(p->aOldKey, sqlite3_value_blob(argv[0]), nOld);
    } else {
      KcValue v;
      v.eType = SQLITE_INTEGER;
      v.i = sqlite3_value_int64(argv[0]);
      if (growBuf(&p->aOldKey, &p->nOldKeyAlloc, KC_NUM_MAXLEN)) return SQLITE_NOMEM;
      nOld = keycodecKeyPut(p->aOldKey, &v);
    }
    pOld = p->aOldKey;
  }
  if (argc == 1) {
    rc = strata_txn_delete(p->pTxn, pOld, nOld);
    p->bNextRowid = 0; /* the largest rowid may be gone: max+1 is lower */
    return rc ? engineErr(pVtab, rc) : SQLITE_OK;
  }

  /* New values with affinity, defaults and NOT NULL. */
  for (i = 0; rc == SQLITE_OK && i < pDef->nCol; i++) {
    Column *col = &pDef->aCol[i];
    sqlite3_value *v = argv[2 + i];
    if (bInsert && col->zDflt && sqlite3_value_type(v) == SQLITE_NULL) {
      rc = columnDefault(p, i, &v);
      if (rc) break;
    }
    sqlite3_value_free(p->apDup[i]);
    p->apDup[i] = NULL;
    rc = applyAffinity(v, col->cAff, 1, &p->aVal[i], &p->apDup[i]);
  }
  if (rc) goto update_done;

  /* The new key. */
  if (pDef->eKind == KIND_PK) {
    rc = checkNotNull(p, -1, eConflict);
    if (rc) goto update_done;
    for (i = 0; i < pDef->nKey; i++) {
      aKv[i] = p->aVal[pDef->aiKey[i]];
      if (aKv[i].eType == SQLITE_FLOAT && pDef->aCol[pDef->aiKey[i]].cAff != AFF_REAL) {
        mReal |= (u64)1 << i;
      }
    }
  } else {
    /* The rowid: IPK column, or argv[1], or the next one. */
    sqlite3_value *pNew = NULL;
    int iIpk = pDef->eKind == KIND_IPK ? pDef->aiKey[0] : -1;
    if (bInsert) {
      if (iIpk >= 0 && sqlite3_value_type(argv[2 + iIpk]) != SQLITE_NULL) {
        pNew = argv[2 + iIpk];
      } else if (sqlite3_value_type(argv[1]) != SQLITE_NULL) {
        pNew = argv[1];
      }
    } else {
      i64 iOld = sqlite3_value_int64(argv[0]);
      pNew = argv[1];
      if (iIpk >= 0) {
        sqlite3_value *pCol = argv[2 + iIpk];
        if (sqlite3_value_type(pCol) != SQLITE_INTEGER || sqlite3_value_int64(pCol) != iOld) {
          pNew = pCol;
        }
      }
    }
    if (pNew) {
      rc = mustBeInt(p, pNew, &iRowid);
    } else {
      rc = nextRowid(p, &iRowid);
      bAutoRowid = 1;
    }
    if (rc) goto update_done;
    rc = checkNotNull(p, iIpk, eConflict);
    if (rc) goto update_done;
    aKv[0].eType = SQLITE_INTEGER;
    aKv[0].i = iRowid;
  }
  rc = encodeKey(p, aKv, &nKey);
  if (rc) goto update_done;

  /* The row value: the non-key columns, in field order. */
  for (i = 0; i < pDef->nField; i++) p->aFieldVal[i] = p->aVal[pDef->aiField[i]];
  nRow = keycodecRowLen(pDef->nField, p->aFieldVal, mReal);
  if (nRow > STRATA_MAX_VALUE) {
    rc = vtabErr(pVtab, SQLITE_TOOBIG, "strata: row too large (%llu bytes; the limit is %d)",
                 (unsigned long long)nRow, STRATA_MAX_VALUE);
    goto update_done;
  }
  if (growBuf(&p->aRow, &p->nRowAlloc, nRow + 1)) {
    rc = SQLITE_NOMEM;
    goto update_done;
  }
  keycodecRowPut(p->aRow, pDef->nField, p->aFieldVal, mReal);

  if (bInsert) {
    if (!bAutoRowid && eConflict != SQLITE_REPLACE) {
      int bExists = 0;
      rc = keyExists(p, p->aKey, nKey, &bExists);
      if (rc) goto update_done;
      if (bExists) {
        rc = uniqueError(p, eConflict);
        goto update_done;
      }
    }
    rc = writeRow(p, NULL, 0, p->aKey, nKey, p->aRow, nRow);
  } else if (nKey == nOld && memcmp(p->aKey, pOld, nKey) == 0) {
    rc = writeRow(p, NULL, 0, p->aKey, nKey, p->aRow, nRow);
  } else {
    if (eConflict != SQLITE_REPLACE) {
      int bExists = 0;
      rc = keyExists(p, p->aKey, nKey, &bExists);
      if (rc) goto update_done;
      if (bExists) {
        rc = uniqueError(p, eConflict);
        goto update_done;
      }
    }
    rc = writeRow(p, pOld, nOld, p->aKey, nKey, p->aRow, nRow);
    p->bNextRowid = 0; /* a rowid moved */
  }
  if (rc == SQLITE_OK && pDef->eKind != KIND_PK) {
    if (p->bNextRowid && iRowid >= p->iNextRowid && p->iNextRowid != INT64_MIN) {
      p->iNextRowid = iRowid == INT64_MAX ? INT64_MIN : iRowid + 1;
    }
  }
  if (rc == SQLITE_OK && bInsert) {
    *pRowid = pDef->eKind == KIND_PK ? sqlite3_last_insert_rowid(p->db) : iRowid;
  }

update_done:
  for (i = 0; i < pDef->nCol; i++) {
    sqlite3_value_free(p->apDup[i]);
    p->apDup[i] = NULL;
  }
  return rc;
}

/* ================================================================ functions */

/* The strata table named zArg ("table" or "schema.table") in connection db.
** Connects it first if this connection has not used it yet. Returns the
** Vtab or NULL with an error message in *pzErr. */
static Vtab *findTable(sqlite3 *db, const char *zArg, char **pzErr) {
  const char *zDot = zArg ? strchr(zArg, '.') : NULL;
  int nDb = zDot ? (int)(zDot - zArg) : 0;
  const char *zTab = zDot ? zDot + 1 : zArg;
  int iTry;
  char zDbName[256];
  if (zDot) sqlite3_snprintf(sizeof(zDbName), zDbName, "%.*s", nDb, zArg);
  if (!zArg) {
    *pzErr = sqlite3_mprintf("strata: a table name is required");
    return NULL;
  }
  for (iTry = 0; iTry < 2; iTry++) {
    Vtab *p;
    pthread_mutex_lock(&regMutex);
    for (p = regVtabs; p; p = p->pNextVtab) {
      if (p->db != db || sqlite3_stricmp(p->zName, zTab) != 0) continue;
      if (zDot && (sqlite3_strnicmp(p->zDb, zArg, nDb) != 0 || p->zDb[nDb] != 0)) continue;
      break;
    }
    pthread_mutex_unlock(&regMutex);
    if (p) {
      if (vtabReady(p)) {
        *pzErr = sqlite3_mprintf("%s", p->base.zErrMsg ? p->base.zErrMsg : "strata: cannot open");
        return NULL;
      }
      return p;
    }
    if (iTry == 0) {
      /* Preparing a statement that names the table connects it. */
      sqlite3_stmt *pStmt = NULL;
      char *zSql = zDot ? sqlite3_mprintf("SELECT 1 FROM \"%w\".\"%w\"", zDbName, zTab)
                        : sqlite3_mprintf("SELECT 1 FROM \"%w\"", zTab);
      if (zSql) sqlite3_prepare_v2(db, zSql, -1, &pStmt, NULL);
      sqlite3_finalize(pStmt);
      sqlite3_free(zSql);
    }
  }
  *pzErr = sqlite3_mprintf("strata: no strata table named %s", zArg);
  return NULL;
}

static void fnMaintain(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  char *zErr = NULL;
  const char *zOp = sqlite3_user_data(ctx);
  Vtab *p = findTable(sqlite3_context_db_handle(ctx), (const char *)sqlite3_value_text(argv[0]),
                      &zErr);
  int rc;
  if (!p) {
    sqlite3_result_error(ctx, zErr ? zErr : "out of memory", -1);
    sqlite3_free(zErr);
    return;
  }
  if (zOp[0] == 'f') {
    rc = strata_flush(p->pShared->pDb);
  } else {
    rc = strata_compact_range(p->pShared->pDb, NULL, 0, NULL, 0);
  }
  if (rc) {
    char *z = sqlite3_mprintf("strata: %s", strata_errmsg());
    sqlite3_result_error(ctx, z ? z : "out of memory", -1);
    sqlite3_result_error_code(ctx, sqliteRc(rc));
    sqlite3_free(z);
    return;
  }
  sqlite3_result_text(ctx, "ok", 2, SQLITE_STATIC);
}

/* ---------------------------------------------------------------- stats */

/* strata_stats: an eponymous table-valued function. SELECT * FROM
** strata_stats('t') gives one (name, value) row per counter of table t's
** engine: levels, bytes, write amplification, cache, bloom filter, and the
** extension's own counters (rows visited, point lookups, seeks). */
typedef struct StatsVtab {
  sqlite3_vtab base;
  sqlite3 *db;
} StatsVtab;

typedef struct StatRow {
  char zName[32];
  int eType; /* SQLITE_INTEGER, SQLITE_FLOAT or SQLITE_TEXT */
  i64 i;
  double r;
  char *z;
} StatRow;

#define STATS_MAX 64

typedef struct StatsCursor {
  sqlite3_vtab_cursor base;
  int iRow, nRow;
  StatRow aRow[STATS_MAX];
} StatsCursor;

static int statsConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                        sqlite3_vtab **ppVtab, char **pzErr) {
  StatsVtab *p;
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(name TEXT, value, tbl HIDDEN)");
  if (rc) return rc;
  p = sqlite3_malloc(sizeof(*p));
  if (!p) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->db = db;
  *ppVtab = &p->base;
  return SQLITE_OK;
}

static int statsDisconnect(sqlite3_vtab *p) {
  sqlite3_free(p->zErrMsg);
  sqlite3_free(p);
  return SQLITE_OK;
}

static int statsBestIndex(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo) {
  int i;
  for (i = 0; i < pInfo->nConstraint; i++) {
    if (pInfo->aConstraint[i].iColumn == 2 &&
        pInfo->aConstraint[i].op == SQLITE_INDEX_CONSTRAINT_EQ) {
      if (!pInfo->aConstraint[i].usable) return SQLITE_CONSTRAINT;
      pInfo->aConstraintUsage[i].argvIndex = 1;
      pInfo->aConstraintUsage[i].omit = 1;
      pInfo->estimatedCost = 10;
      pInfo->estimatedRows = 40;
      return SQLITE_OK;
    }
  }
  pInfo->estimatedCost = 1e9;
  return SQLITE_OK;
}

static void statsReset(StatsCursor *c) {
  int i;
  for (i = 0; i < c->nRow; i++) sqlite3_free(c->aRow[i].z);
  c->nRow = c->iRow = 0;
}

static int statsOpen(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **ppCur) {
  StatsCursor *c = sqlite3_malloc(sizeof(*c));
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *ppCur = &c->base;
  return SQLITE_OK;
}

static int statsClose(sqlite3_vtab_cursor *pCur) {
  statsReset((StatsCursor *)pCur);
  sqlite3_free(pCur);
  return SQLITE_OK;
}

static void statInt(StatsCursor *c, const char *zName, u64 v) {
  StatRow *r;
  if (c->nRow >= STATS_MAX) return;
  r = &c->aRow[c->nRow++];
  sqlite3_snprintf(sizeof(r->zName), r->zName, "%s", zName);
  r->eType = SQLITE_INTEGER;
  r->i = (i64)v;
}

static int statsFilter(sqlite3_vtab_cursor *pCur, int idxNum, const char *idxStr, int argc,
                       sqlite3_value **argv) {
  StatsCursor *c = (StatsCursor *)pCur;
  StatsVtab *pv = (StatsVtab *)pCur->pVtab;
  char *zErr = NULL;
  Vtab *p;
  Shared *sh;
  strata_stats st;
  int rc, i;
  statsReset(c);
  if (argc < 1) {
    return vtabErr(pCur->pVtab, SQLITE_ERROR,
                   "strata_stats: give the table name, as in SELECT * FROM strata_stats('t')");
  }
  p = findTable(pv->db, (const char *)sqlite3_value_text(argv[0]), &zErr);
  if (!p) {
    rc = vtabErr(pCur->pVtab, SQLITE_ERROR, "%s", zErr ? zErr : "out of memory");
    sqlite3_free(zErr);
    return rc;
  }
  sh = p->pShared;
  rc = strata_get_stats(sh->pDb, &st);
  if (rc) return engineErr(pCur->pVtab, rc);
  {
    StatRow *r = &c->aRow[c->nRow++];
    sqlite3_snprintf(sizeof(r->zName), r->zName, "path");
    r->eType = SQLITE_TEXT;
    r->z = sqlite3_mprintf("%s", sh->zReal);
  }
  statInt(c, "last_sequence", st.last_sequence);
  statInt(c, "memtable_bytes", st.memtable_bytes);
  for (i = 0; i < STRATA_MAX_LEVELS; i++) {
    char z[32];
    sqlite3_snprintf(sizeof(z), z, "level%d_files", i);
    statInt(c, z, (u64)st.level_files[i]);
    sqlite3_snprintf(sizeof(z), z, "level%d_bytes", i);
    statInt(c, z, st.level_bytes[i]);
  }
  statInt(c, "live_bytes", st.live_bytes);
  statInt(c, "user_bytes_written", st.user_bytes_written);
  statInt(c, "wal_bytes_written", st.wal_bytes_written);
  statInt(c, "flush_bytes_written", st.flush_bytes_written);
  statInt(c, "compaction_bytes_read", st.compaction_bytes_read);
  statInt(c, "compaction_bytes_written", st.compaction_bytes_written);
  statInt(c, "disk_bytes_written", st.disk_bytes_written);
  {
    StatRow *r = &c->aRow[c->nRow++];
    sqlite3_snprintf(sizeof(r->zName), r->zName, "write_amplification");
    r->eType = SQLITE_FLOAT;
    r->r = st.user_bytes_written ? (double)st.disk_bytes_written / (double)st.user_bytes_written
                                 : 0.0;
  }
  statInt(c, "flushes", st.flushes);
  statInt(c, "compactions", st.compactions);
  statInt(c, "seek_compactions", st.seek_compactions);
  statInt(c, "stall_micros", st.stall_micros);
  statInt(c, "stall_count", st.stall_count);
  statInt(c, "bloom_checks", st.bloom_checks);
  statInt(c, "bloom_useful", st.bloom_useful);
  statInt(c, "cache_hits", st.cache_hits);
  statInt(c, "cache_misses", st.cache_misses);
  statInt(c, "cache_bytes", st.cache_bytes);
  statInt(c, "open_files", st.open_files);
  statInt(c, "rows_visited", atomic_load(&sh->nRowsVisited));
  statInt(c, "point_lookups", atomic_load(&sh->nPointLookups));
  statInt(c, "seeks", atomic_load(&sh->nSeeks));
  statInt(c, "iterators", atomic_load(&sh->nIters));
  return SQLITE_OK;
}

static int statsNext(sqlite3_vtab_cursor *pCur) {
  ((StatsCursor *)pCur)->iRow++;
  return SQLITE_OK;
}

static int statsEof(sqlite3_vtab_cursor *pCur) {
  StatsCursor *c = (StatsCursor *)pCur;
  return c->iRow >= c->nRow;
}

static int statsColumn(sqlite3_vtab_cursor *pCur, sqlite3_context *ctx, int iCol) {
  StatsCursor *c = (StatsCursor *)pCur;
  StatRow *r = &c->aRow[c->iRow];
  if (iCol == 0) {
    sqlite3_result_text(ctx, r->zName, -1, SQLITE_TRANSIENT);
  } else if (iCol == 1) {
    if (r->eType == SQLITE_INTEGER) {
      sqlite3_result_int64(ctx, r->i);
    } else if (r->eType == SQLITE_FLOAT) {
      sqlite3_result_double(ctx, r->r);
    } else {
      sqlite3_result_text(ctx, r->z ? r->z : "", -1, SQLITE_TRANSIENT);
    }
  }
  return SQLITE_OK;
}

static int statsRowid(sqlite3_vtab_cursor *pCur, sqlite3_int64 *pRowid) {
  *pRowid = ((StatsCursor *)pCur)->iRow + 1;
  return SQLITE_OK;
}

/* ================================================================ init */

static sqlite3_module strataModule = {
    2,                /* iVersion */
    strataCreate,     /* xCreate */
    strataConnect,    /* xConnect */
    strataBestIndex,  /* xBestIndex */
    strataDisconnect, /* xDisconnect */
    strataDestroy,    /* xDestroy */
    strataOpen,       /* xOpen */
    strataClose,      /* xClose */
    strataFilter,     /* xFilter */
    strataNext,       /* xNext */
    strataEof,        /* xEof */
    strataColumn,     /* xColumn */
    strataRowid,      /* xRowid */
    strataUpdate,     /* xUpdate */
    strataBegin,      /* xBegin */
    strataSync,       /* xSync */
    strataCommit,     /* xCommit */
    strataRollback,   /* xRollback */
    NULL,             /* xFindFunction */
    strataRename,     /* xRename */
    strataSavepoint,  /* xSavepoint */
    strataRelease,    /* xRelease */
    strataRollbackTo, /* xRollbackTo */
    NULL,             /* xShadowName */
};

static sqlite3_module statsModule = {
    0,               /* iVersion */
    NULL,            /* xCreate: eponymous only */
    statsConnect,    /* xConnect */
    statsBestIndex,  /* xBestIndex */
    statsDisconnect, /* xDisconnect */
    NULL,            /* xDestroy */
    statsOpen,       /* xOpen */
    statsClose,      /* xClose */
    statsFilter,     /* xFilter */
    statsNext,       /* xNext */
    statsEof,        /* xEof */
    statsColumn,     /* xColumn */
    statsRowid,      /* xRowid */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
};

/* The entry point, found by name from the file name strata.so. Registers the
** module, strata_stats and the SQL functions on connection db. */
int sqlite3_strata_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);
int sqlite3_strata_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  int rc;
  SQLITE_EXTENSION_INIT2(pApi);
  if (sqlite3_libversion_number() < 3038000) {
    *pzErrMsg = sqlite3_mprintf("strata needs SQLite 3.38.0 or later (this is %s)",
                                sqlite3_libversion());
    return SQLITE_ERROR;
  }
  rc = sqlite3_create_module(db, "strata", &strataModule, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_create_module(db, "strata_stats", &statsModule, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "strata_flush", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 (void *)"flush", fnMaintain, NULL, NULL);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "strata_compact", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 (void *)"compact", fnMaintain, NULL, NULL);
  }
  return rc;
}
