/*
** sstable.c -- immutable sorted tables: the builder, the reader, Get, the
** two-level iterator and the verifier. Block encoding is in block.c, the
** filter in bloom.c, compression in compress.c. doc/FORMAT.md is the
** authoritative description of the file.
**
** FILE LAYOUT
**
**   data block 0 .. data block n-1     cut at nBlockSize (uncompressed)
**   filter block                       absent when bloomBitsPerKey = 0
**   properties block
**   index block
**   footer                             SST_FOOTER_SIZE (64) bytes
**
**   Every block is followed by a 5-byte trailer: the compression type (u8:
**   0 none, 1 zstd) and the masked CRC-32C (u32) of the stored bytes and the
**   type byte. A block handle is (offset, size) of the stored bytes, trailer
**   excluded. A block is stored compressed only if that saves at least 1/8
**   of its size; filter and properties blocks are never compressed.
**
**   The index block maps one separator key per data block to the block's
**   handle (varint64 offset, varint64 size), with a restart at every entry
**   so lookups binary-search it directly. The separator of block i is an
**   internal key >= the last key of block i and < the first key of block
**   i+1: when the user keys differ it is a short user key between them with
**   the largest trailer (so it sorts before every real version of that user
**   key), otherwise the last key itself. The last block's separator is a
**   short user key above its last key.
**
** FOOTER (fixed size, at the end of the file)
**
**   0   u64 index offset     8  u64 index size
**   16  u64 filter offset    24 u64 filter size (0: no filter)
**   32  u64 props offset     40 u64 props size
**   48  u32 format version   52 u32 masked CRC-32C of bytes 0..51
**   56  8-byte magic "strataST"
**
** READING
**
**   strataSstOpen reads the footer, then the index, filter and properties
**   blocks, checks their checksums and structure, and keeps them decoded in
**   memory for the reader's lifetime (reserved in the block cache, if any:
**   see CHARGING THE CACHE). Data blocks are read on
**   demand: through the block cache when there is one (key (id, block
**   offset), value the decoded block, charge its allocation plus the entry's
**   own cost), else into a buffer of the iterator (or, for Get, a temporary
**   one). Every read from disk is checksummed; a mismatch is STRATA_CORRUPT
**   naming the file and offset, and the bytes are never used. Every handle
**   and length read from the file is checked against the file before it is
**   used.
**
**   A mapped table (MAPPED TABLES) reads its uncompressed data blocks in
**   place instead.
**
**   A Get with a cache hit allocates nothing: the lookup key and both block
**   iterators live on the stack (keys longer than the inline buffers are the
**   exception), and the value is copied into the caller's reusable buffer.
**   A Get that misses reads the block into a spare buffer (SPARE BLOCK
**   BUFFERS), searches it, and only then gives it to the cache, unpinned
**   (strataCacheAdd): no pin to release, and no allocation once the cache
**   is full (its RECYCLING).
**
** ITERATION
**
**   The iterator walks the index block and, inside the current data block, a
**   block iterator; moving off either end of a data block moves the index and
**   loads the neighbour. A Seek through the index windows loads its block
**   directly and positions the index iterator only when the scan leaves that
**   block (LAZY INDEX POSITION). The current block stays pinned (a cache
**   handle or the iterator's own buffer) until the iterator moves to another
**   block or is closed. A scan that does not fill the cache (compaction) and
**   keeps moving in one direction reads ahead: after two consecutive blocks
**   it reads a window of several blocks at once (starting at the block it
**   needs, or ending there when moving backward), doubling up to
**   SST_READAHEAD_MAX, as far as the database's budget for read-ahead
**   allows (READ-AHEAD BUDGET).
**
** SCANS
**
**   An iterator asked to fill the cache stops adding the blocks it reads
**   once it has moved through SST_SCAN_NOFILL consecutive blocks in one
**   direction (it still uses blocks that are in the cache), and from there
**   on reads ahead like a scan that does not fill. A long scan would only
**   push out the blocks that lookups and short range reads keep using, for
**   blocks it will not come back to; and inserting a block and evicting
**   another costs more than reading it. A seek starts the count again, so
**   short range reads (a few blocks) are cached as before.
**
** MAPPED TABLES
**
**   strataSstMap maps the whole file read-only. A data block stored
**   uncompressed is then used where it lies in the mapping, and never
**   enters the block cache. Its checksum is verified before its first use
**   (VERIFIED BLOCKS), or before every use if the table was mapped with
**   bVerifyAlways. A read so costs no system
**   call, no copy into a buffer, no allocation and no eviction, and the
**   block cache is left to the blocks that need decoding, which are read
**   from the mapping (no system call) and cached as before. A long scan
**   still reads through its read-ahead windows (sstIterReadsAhead). The mapping
**   lives as long as the reader; tables are never changed after they are
**   written, so it never sees a file shrink under it. An I/O error under a
**   mapping cannot be returned as an error (the kernel signals the
**   process), which is why a database can turn mapping off (mmap=off).
**
** VERIFIED BLOCKS
**
**   A block used in place is checked once per reader, as a block read into
**   the cache is checked once per read: a bit per block, set after its
**   checksum matched, lets later uses skip the check. Verifying a 4 KiB
**   block streams all its cache lines from memory while a seek reads a
**   few of them: at 1M rows, checking once cut the CPU time of a random
**   lookup by 29% and of a 10-row seek by 22%. A damaged block is never
**   marked, so it fails every use. What this gives up is damage that
**   appears under an open table after its block was checked (the page
**   cache dropped the page and the disk returned other bytes):
**   bVerifyAlways (the verify = 'always' option) checks every use.
**   The bit of block (off, size) is off >> shift, where 1 << shift is at
**   most the smallest distance between two blocks' offsets, so no two
**   blocks share one; bits are set and read with relaxed atomics (they vouch
**   for bytes of an immutable file, not for anything another thread wrote).
**   Without index windows (which hold the offsets) or when the smallest
**   distance is so small that the bits would outgrow 8 bytes a block,
**   every use is checked.
**
** THREADS
**
**   A reader is immutable after open: any number of threads may call Get and
**   create iterators at once (pread is positional, the cache is
**   thread-safe). An iterator belongs to one thread, and every iterator must
**   be closed before its reader.
*/
#include "block.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#define SST_MAGIC "strataST"
#define SST_FOOTER_SIZE 64
#define SST_FOOTER_INDEX 0
#define SST_FOOTER_FILTER 16
#define SST_FOOTER_PROPS 32
#define SST_FOOTER_VERSION 48
#define SST_FOOTER_CRC 52
#define SST_FOOTER_MAGIC 56

#define SST_TRAILER 5 /* type byte + masked CRC */
#define SST_TYPE_NONE 0
#define SST_TYPE_ZSTD 1

#define SST_WRITE_BUFFER (256 * 1024)
#define SST_MAX_BLOCK_SIZE (256u * 1024 * 1024) /* nBlockSize is clamped to this */
#define SST_READAHEAD_MIN (16 * 1024)
#define SST_READAHEAD_MAX (256 * 1024)
/* Consecutive block moves in one direction after which an iterator stops
** adding the blocks it reads to the cache (SCANS). */
#define SST_SCAN_NOFILL 16
#define SST_LOOKUP_STACK 512 /* lookup keys up to this size need no allocation */

/* A decoded data block as held in the cache: one allocation. */
typedef struct SstBlock {
  size_t n;      /* bytes of the block in a[] */
  size_t nAlloc; /* room in a[] */
  u8 a[];
} SstBlock;

void strataSstPropsFree(SstProps *p) {
  if (!p) return;
  strataBufFree(&p->smallest);
  strataBufFree(&p->largest);
}

/* ================================================================== */
/* BUILDER */

struct SstBuilder {
  strata_env *env;
  char *zPath;
  StrataFile *pFile;
  SstOptions opts;
  int rc;            /* sticky: the first write or encoding error */
  u64 offset;        /* bytes written, buffered included */
  StrataBuf wbuf;    /* write buffer (SST_WRITE_BUFFER) */
  BlockBuilder data; /* the data block being filled */
  BlockBuilder index;
  StrataBuf lastKey; /* the last internal key added */
  int bPendingIndex; /* a data block's index entry waits for the next key */
  u64 pendingOff, pendingSize;
  StrataBuf sep;  /* separator scratch */
  StrataBuf cbuf; /* compression output */
  int nNoGain;    /* data blocks in a row that compression did not shrink */
  int nSkip;      /* data blocks left to store without trying */
  int nSkipNext;  /* the length of the next skip if the probe after this one fails */
  u32 *aHash;     /* one hash per distinct user key, for the filter */
  size_t nHash, nHashAlloc;
  SstProps props;
  size_t nCharged; /* bytes reserved in opts.pBudget's cache (CHARGING THE BUDGET) */
};

/* CHARGING THE BUDGET
** A builder's buffers (the write buffer, the block being filled, the
** index block, the filter's key hashes, the compression output and the
** filter built in it) are memory a flush or compaction holds outside the
** block cache: with opts.pBudget they are reserved in its cache while the
** builder lives, in steps of SST_CHARGE_STEP, so that a table costs a
** handful of reservations, not one per block. */
#define SST_CHARGE_STEP (64 * 1024)

static size_t blockBuilderBytes(const BlockBuilder *p) {
  return p->buf.nAlloc + p->restarts.nAlloc + p->lastKey.nAlloc;
}

/* Reserve what b's buffers have grown to beyond its charge. */
static void builderCharge(SstBuilder *b) {
  size_t n;
  if (!b->opts.pBudget || !b->opts.pBudget->pCache) return;
  n = sizeof(*b) + b->wbuf.nAlloc + b->cbuf.nAlloc + b->sep.nAlloc + b->lastKey.nAlloc +
      b->nHashAlloc * sizeof(u32) + blockBuilderBytes(&b->data) + blockBuilderBytes(&b->index);
  if (n > b->nCharged) {
    n = (n + SST_CHARGE_STEP - 1) / SST_CHARGE_STEP * SST_CHARGE_STEP;
    strataCacheReserve(b->opts.pBudget->pCache, n - b->nCharged);
    b->nCharged = n;
  }
}

/* Append bytes to the file through the write buffer. Returns STRATA_OK or
** the write error. */
static int builderEmit(SstBuilder *b, const u8 *p, size_t n) {
  int rc;
  b->offset += n;
  if (b->wbuf.n + n <= b->wbuf.nAlloc) {
    memcpy(b->wbuf.a + b->wbuf.n, p, n);
    b->wbuf.n += n;
    return STRATA_OK;
  }
  if (b->wbuf.n) {
    rc = strataFileAppend(b->pFile, b->wbuf.a, b->wbuf.n);
    b->wbuf.n = 0;
    if (rc) return rc;
  }
  if (n >= b->wbuf.nAlloc) return strataFileAppend(b->pFile, p, n); /* too big to buffer */
  memcpy(b->wbuf.a, p, n);
  b->wbuf.n = n;
  return STRATA_OK;
}

#define SST_NOGAIN_RUN 8
#define SST_NOGAIN_SKIP 64
#define SST_NOGAIN_SKIP_MAX 1024

/* Write one block with its trailer; compress it if allowed and worthwhile.
** Sets *pOff and *pSize to its handle. Returns STRATA_OK or an error. */
static int builderWriteBlock(SstBuilder *b, const u8 *p, size_t n, int bCompress, u64 *pOff,
                             u64 *pSize) {
  u8 aTrailer[SST_TRAILER];
  const u8 *pOut = p;
  size_t nOut = n;
  int rc;
  aTrailer[0] = SST_TYPE_NONE;
  /* Incompressible data (random values) would cost a compression per block
  ** for nothing (~50 instructions a byte at level 1): after SST_NOGAIN_RUN
  ** blocks in a row that did not shrink by a quarter, the next
  ** SST_NOGAIN_SKIP are stored as they are, then one block is tried. Each
  ** probe that fails doubles the skip (up to SST_NOGAIN_SKIP_MAX), so a
  ** table of random values spends well under 1% of its blocks on
  ** compression attempts; a probe that succeeds goes back to compressing
  ** every block. A block that shrinks by 1/8 to 1/4 is still stored
  ** compressed, but counts as no gain: small random values with their
  ** keys and trailers land there, and saving a tenth of the bytes is not
  ** worth a compression per block written and a decompression per block
  ** read. A table started with a skip hint (the state an earlier table
  ** ended in) probes its first block and, if that fails, goes straight to
  ** the hinted skip: without it every table of a flush or compaction paid
  ** its own run of SST_NOGAIN_RUN attempts and short skips. */
  if (bCompress && b->nSkip > 0) {
    b->nSkip--;
    bCompress = 0;
  }
  if (bCompress && b->opts.compression == STRATA_COMPRESSION_ZSTD && n >= 64) {
    b->cbuf.n = 0;
    rc = strataCompress(STRATA_COMPRESSION_ZSTD, b->opts.compressionLevel, p, n, &b->cbuf);
    if (rc) return rc;
    if (b->cbuf.n <= n - n / 8) {
      aTrailer[0] = SST_TYPE_ZSTD;
      pOut = b->cbuf.a;
      nOut = b->cbuf.n;
    }
    if (b->cbuf.n <= n - n / 4) {
      b->nNoGain = 0;
      b->nSkipNext = 0;
    } else if (b->nSkipNext > 0) {
      /* A failed probe after a skip. */
      b->nSkip = b->nSkipNext;
      if (b->nSkipNext < SST_NOGAIN_SKIP_MAX) b->nSkipNext *= 2;
    } else if (++b->nNoGain >= SST_NOGAIN_RUN) {
      b->nNoGain = 0;
      b->nSkip = SST_NOGAIN_SKIP;
      b->nSkipNext = 2 * SST_NOGAIN_SKIP;
    }
  }
  strataPut32(aTrailer + 1, strataCrcMask(strataCrc32c(strataCrc32c(0, pOut, nOut), aTrailer, 1)));
  *pOff = b->offset;
  *pSize = nOut;
  rc = builderEmit(b, pOut, nOut);
  if (rc == STRATA_OK) rc = builderEmit(b, aTrailer, SST_TRAILER);
  return rc;
}

/* Set pSep to a short internal key k with a <= k and, if b is given, k < b
** (a < b). User keys are shortened only when that keeps both bounds; the
** trailer of a shortened key is the largest possible, which is harmless as
** its user key lies strictly between those of a and b. */
static int sstSeparator(StrataBuf *pSep, const u8 *a, size_t na, const u8 *b, size_t nb) {
  size_t nua = na - STRATA_TRAILER, i, j = (size_t)-1;
  if (b) {
    size_t nub = nb - STRATA_TRAILER, n = nua < nub ? nua : nub;
    for (i = 0; i < n && a[i] == b[i]; i++) {
    }
    if (i < n) { /* the user keys differ at i, a[i] < b[i] */
      if (a[i] + 1 < b[i]) {
        j = i;
      } else {
        /* a[0..i] followed by any byte of a after i that can be raised still
        ** sorts below b (it has a[i] < b[i]) and above a. */
        for (j = i + 1; j < nua && a[j] == 0xff; j++) {
        }
        if (j >= nua) j = (size_t)-1;
      }
    }
  } else {
    for (j = 0; j < nua && a[j] == 0xff; j++) {
    }
    if (j >= nua) j = (size_t)-1;
  }
  if (j != (size_t)-1 && j + 1 < nua) {
    int rc = strataIkeyBuild(pSep, a, j + 1, STRATA_MAX_SEQ, STRATA_TYPE_VALUE);
    if (rc == STRATA_OK) pSep->a[j]++;
    return rc;
  }
  return strataBufSet(pSep, a, na);
}

/* Add the index entry of the last data block, separating it from pNext
** (NULL at the end of the table). */
static int builderAddIndex(SstBuilder *b, const u8 *pNext, size_t nNext) {
  u8 aHandle[20];
  int n = 0, rc;
  rc = sstSeparator(&b->sep, b->lastKey.a, b->lastKey.n, pNext, nNext);
  if (rc) return rc;
  n += strataPutVarint64(aHandle, b->pendingOff);
  n += strataPutVarint64(aHandle + n, b->pendingSize);
  b->bPendingIndex = 0;
  return strataBlockBuilderAdd(&b->index, b->sep.a, b->sep.n, aHandle, (size_t)n);
}

static int builderFlushData(SstBuilder *b) {
  const u8 *p;
  size_t n;
  int rc = strataBlockBuilderFinish(&b->data, &p, &n);
  if (rc == STRATA_OK) rc = builderWriteBlock(b, p, n, 1, &b->pendingOff, &b->pendingSize);
  if (rc) return rc;
  strataBlockBuilderReset(&b->data);
  b->bPendingIndex = 1;
  b->props.nDataBlocks++;
  builderCharge(b); /* the index grew, and maybe the hashes */
  return STRATA_OK;
}

/* Create zPath for writing. opts: nBlockSize 0 means 4096 (clamped to 256
** MiB), restartInterval < 1 means 16; an unknown compression is
** STRATA_ERROR. Returns STRATA_OK with *ppBuilder, or an error (open
** failure, STRATA_NOMEM) with *ppBuilder NULL. */
int strataSstBuilderNew(strata_env *env, const char *zPath, const SstOptions *opts,
                        StrataIoStats *pStats, SstBuilder **ppBuilder) {
  SstBuilder *b;
  int rc;
  *ppBuilder = NULL;
  if (opts->compression != STRATA_COMPRESSION_NONE &&
      opts->compression != STRATA_COMPRESSION_ZSTD) {
    return strataErr(STRATA_ERROR, "unknown compression type %d", opts->compression);
  }
  b = strataMallocZero(sizeof(*b));
  if (!b) return strataErr(STRATA_NOMEM, "out of memory");
  b->env = env;
  b->opts = *opts;
  if (b->opts.nBlockSize == 0) b->opts.nBlockSize = 4096;
  if (b->opts.nBlockSize > SST_MAX_BLOCK_SIZE) b->opts.nBlockSize = SST_MAX_BLOCK_SIZE;
  if (b->opts.restartInterval < 1) b->opts.restartInterval = 16;
  if (b->opts.nSkipHint > 0) {
    b->nSkipNext = b->opts.nSkipHint < SST_NOGAIN_SKIP ? SST_NOGAIN_SKIP : b->opts.nSkipHint;
    if (b->nSkipNext > SST_NOGAIN_SKIP_MAX) b->nSkipNext = SST_NOGAIN_SKIP_MAX;
  }
  strataBlockBuilderInit(&b->data, b->opts.restartInterval);
  strataBlockBuilderInit(&b->index, 1);
  b->props.minSeq = STRATA_MAX_SEQ;
  b->zPath = strataStrdup(zPath);
  rc = b->zPath ? strataBufReserve(&b->wbuf, SST_WRITE_BUFFER)
                : strataErr(STRATA_NOMEM, "out of memory");
  if (rc == STRATA_OK) rc = strataEnvOpen(env, zPath, STRATA_OPEN_WRITE, pStats, &b->pFile);
  if (rc) {
    strataFreeMem(b->zPath);
    strataBufFree(&b->wbuf);
    strataFreeMem(b);
    return rc;
  }
  builderCharge(b);
  *ppBuilder = b;
  return STRATA_OK;
}

/* Add an entry. Keys must be strictly increasing internal keys. Returns
** STRATA_OK; STRATA_MISUSE (bad order or key shorter than a trailer) or
** STRATA_TOOBIG (limits), which leave the builder unchanged; or a write /
** memory error, after which every call fails with it. */
int strataSstBuilderAdd(SstBuilder *b, const u8 *pIkey, size_t nIkey, const u8 *pVal, size_t nVal) {
  u64 seq;
  int rc, cmp = -1;
  if (b->rc) return b->rc;
  if (nIkey < STRATA_TRAILER) return strataErr(STRATA_MISUSE, "internal key too short");
  if (nIkey - STRATA_TRAILER > STRATA_MAX_KEY) {
    return strataErr(STRATA_TOOBIG, "key of %zu bytes exceeds the limit", nIkey - STRATA_TRAILER);
  }
  if (nVal > STRATA_MAX_VALUE)
    return strataErr(STRATA_TOOBIG, "value of %zu bytes exceeds the limit", nVal);
  if (b->props.nEntries > 0) {
    /* One user key comparison serves the order check and the filter's
    ** "new user key" test; equal user keys need descending trailers. */
    cmp = strataUkeyCompare(b->lastKey.a, b->lastKey.n - 8, pIkey, nIkey - 8);
    if (cmp > 0 || (cmp == 0 && strataGet64(b->lastKey.a + b->lastKey.n - 8) <=
                                    strataGet64(pIkey + nIkey - 8))) {
      return strataErr(STRATA_MISUSE, "%s: keys added out of order", b->zPath);
    }
  }
  if (b->bPendingIndex && (rc = builderAddIndex(b, pIkey, nIkey)) != STRATA_OK) goto add_failed;
  if (b->opts.bloomBitsPerKey > 0 && cmp != 0) {
    if (b->nHash == b->nHashAlloc) {
      size_t nNew = b->nHashAlloc ? b->nHashAlloc * 2 : 1024;
      u32 *aNew = strataRealloc(b->aHash, nNew * sizeof(u32));
      if (!aNew) {
        rc = strataErr(STRATA_NOMEM, "out of memory");
        goto add_failed;
      }
      b->aHash = aNew;
      b->nHashAlloc = nNew;
    }
    b->aHash[b->nHash++] = strataBloomHash(pIkey, nIkey - STRATA_TRAILER);
  }
  if ((rc = strataBlockBuilderAdd(&b->data, pIkey, nIkey, pVal, nVal)) != STRATA_OK)
    goto add_failed;
  if ((rc = strataBufSetFast(&b->lastKey, pIkey, nIkey)) != STRATA_OK) goto add_failed;
  if (b->props.nEntries == 0 && (rc = strataBufSet(&b->props.smallest, pIkey, nIkey)))
    goto add_failed;
  seq = strataIkeySeq(pIkey, nIkey);
  if (seq < b->props.minSeq) b->props.minSeq = seq;
  if (seq > b->props.maxSeq) b->props.maxSeq = seq;
  if (strataIkeyType(pIkey, nIkey) == STRATA_TYPE_DELETE) b->props.nDeletes++;
  b->props.nEntries++;
  b->props.nRawKeyBytes += nIkey;
  b->props.nRawValBytes += nVal;
  if (strataBlockBuilderSize(&b->data) >= b->opts.nBlockSize && (rc = builderFlushData(b))) {
    goto add_failed;
  }
  return STRATA_OK;
add_failed:
  b->rc = rc;
  return rc;
}

u64 strataSstBuilderFileSize(const SstBuilder *b) {
  return b->offset + (strataBlockBuilderEmpty(&b->data) ? 0 : strataBlockBuilderSize(&b->data));
}

u64 strataSstBuilderCount(const SstBuilder *b) {
  return b->props.nEntries;
}

int strataSstBuilderSkipHint(const SstBuilder *b) {
  if (b->opts.compression == STRATA_COMPRESSION_NONE) return -1;
  return b->nSkip > 0 || b->nSkipNext > 0 ? b->nSkipNext : 0;
}

static void builderFree(SstBuilder *b) {
  size_t nCharged = b->nCharged;
  StrataBudget *pBudget = nCharged ? b->opts.pBudget : NULL;
  strataFileClose(b->pFile);
  strataFreeMem(b->zPath);
  strataBufFree(&b->wbuf);
  strataBlockBuilderFree(&b->data);
  strataBlockBuilderFree(&b->index);
  strataBufFree(&b->lastKey);
  strataBufFree(&b->sep);
  strataBufFree(&b->cbuf);
  strataFreeMem(b->aHash);
  strataSstPropsFree(&b->props);
  strataFreeMem(b);
  if (pBudget) { /* freed: the cache may grow back */
    strataCacheUnreserve(pBudget->pCache, nCharged);
    atomic_fetch_add_explicit(&pBudget->nFreed, nCharged, memory_order_relaxed);
  }
}

/* Encode the properties block (see FORMAT.md). */
static int propsEncode(const SstProps *p, StrataBuf *pOut) {
  u64 aV[8];
  int i, rc = STRATA_OK;
  aV[0] = STRATA_FORMAT_VERSION;
  aV[1] = p->nEntries;
  aV[2] = p->nDeletes;
  aV[3] = p->nDataBlocks;
  aV[4] = p->nRawKeyBytes;
  aV[5] = p->nRawValBytes;
  aV[6] = p->minSeq;
  aV[7] = p->maxSeq;
  pOut->n = 0;
  for (i = 0; i < 8 && rc == STRATA_OK; i++) rc = strataBufAppendVarint(pOut, aV[i]);
  if (rc == STRATA_OK) rc = strataBufAppendVarint(pOut, p->smallest.n);
  if (rc == STRATA_OK) rc = strataBufAppend(pOut, p->smallest.a, p->smallest.n);
  if (rc == STRATA_OK) rc = strataBufAppendVarint(pOut, p->largest.n);
  if (rc == STRATA_OK) rc = strataBufAppend(pOut, p->largest.a, p->largest.n);
  return rc;
}

/* Write the rest of the table and the footer, sync if opts->bSync, close
** the file and free b. On success *pProps (overwritten: pass it zeroed or
** freed) describes the table. On failure the partial file is deleted and
** *pProps is zeroed. Either way b is gone. */
int strataSstBuilderFinish(SstBuilder *b, SstProps *pProps) {
  u64 hIndex[2] = {0, 0}, hFilter[2] = {0, 0}, hProps[2] = {0, 0};
  u8 aFooter[SST_FOOTER_SIZE];
  const u8 *p;
  size_t n;
  int rc = b->rc;
  memset(pProps, 0, sizeof(*pProps));
  if (rc == STRATA_OK && !strataBlockBuilderEmpty(&b->data)) rc = builderFlushData(b);
  if (rc == STRATA_OK && b->bPendingIndex) rc = builderAddIndex(b, NULL, 0);
  if (rc == STRATA_OK && b->opts.bloomBitsPerKey > 0) {
    /* Built in cbuf: a block written uncompressed does not touch it. */
    b->cbuf.n = 0;
    rc = strataBloomBuild(b->aHash, b->nHash, b->opts.bloomBitsPerKey, &b->cbuf);
    builderCharge(b);
    if (rc == STRATA_OK && b->cbuf.n) {
      rc = builderWriteBlock(b, b->cbuf.a, b->cbuf.n, 0, &hFilter[0], &hFilter[1]);
    }
  }
  if (rc == STRATA_OK) {
    if (b->props.nEntries == 0) b->props.minSeq = 0;
    rc = strataBufSet(&b->props.largest, b->lastKey.a, b->lastKey.n);
  }
  if (rc == STRATA_OK) rc = propsEncode(&b->props, &b->sep);
  if (rc == STRATA_OK) rc = builderWriteBlock(b, b->sep.a, b->sep.n, 0, &hProps[0], &hProps[1]);
  if (rc == STRATA_OK) rc = strataBlockBuilderFinish(&b->index, &p, &n);
  /* The index always gets its try: its keys compress even when values do not. */
  b->nSkip = b->nSkipNext = 0;
  if (rc == STRATA_OK) rc = builderWriteBlock(b, p, n, 1, &hIndex[0], &hIndex[1]);
  if (rc == STRATA_OK) {
    strataPut64(aFooter + SST_FOOTER_INDEX, hIndex[0]);
    strataPut64(aFooter + SST_FOOTER_INDEX + 8, hIndex[1]);
    strataPut64(aFooter + SST_FOOTER_FILTER, hFilter[0]);
    strataPut64(aFooter + SST_FOOTER_FILTER + 8, hFilter[1]);
    strataPut64(aFooter + SST_FOOTER_PROPS, hProps[0]);
    strataPut64(aFooter + SST_FOOTER_PROPS + 8, hProps[1]);
    strataPut32(aFooter + SST_FOOTER_VERSION, STRATA_FORMAT_VERSION);
    strataPut32(aFooter + SST_FOOTER_CRC, strataCrcMask(strataCrc32c(0, aFooter, SST_FOOTER_CRC)));
    memcpy(aFooter + SST_FOOTER_MAGIC, SST_MAGIC, 8);
    rc = builderEmit(b, aFooter, SST_FOOTER_SIZE);
  }
  if (rc == STRATA_OK && b->wbuf.n) rc = strataFileAppend(b->pFile, b->wbuf.a, b->wbuf.n);
  b->wbuf.n = 0;
  if (rc == STRATA_OK && b->opts.bSync) rc = strataFileSync(b->pFile);
  if (rc == STRATA_OK) {
    *pProps = b->props;
    pProps->fileSize = b->offset;
    memset(&b->props, 0, sizeof(b->props));
    builderFree(b);
    return STRATA_OK;
  }
  strataSstBuilderAbandon(b);
  return rc;
}

void strataSstBuilderAbandon(SstBuilder *b) {
  if (!b) return;
  strataFileClose(b->pFile);
  b->pFile = NULL;
  b->env->xDelete(b->env, b->zPath);
  builderFree(b);
}

/* ================================================================== */
/* READER */

struct SstReader {
  strata_env *env;
  char *zPath;
  StrataFile *pFile;
  u64 id;
  BlockCache *pCache;
  u64 fileSize;
  u64 nDataEnd; /* data blocks lie in [0, nDataEnd) */
  u64 indexOff; /* offset of the index block (messages) */
  SstProps props;
  u8 *aIndex; /* decoded index block */
  size_t nIndex;
  u8 *aFilter; /* filter, NULL if none */
  size_t nFilter;
  BloomFilter bloom; /* aFilter's geometry, read once */
  /* INDEX WINDOWS: NULL if not built. */
  u64 *aIxWindow;      /* per index entry: 8 bytes of its user key, see below */
  u32 *aIxOff;         /* offset of every data block, then the end of the last
                       ** (in aIxWindow's allocation): see sstIxOff */
  u32 nIx;             /* entries with a window: all but the last index entry */
  size_t nIxCommon;    /* bytes every one of their user keys starts with... */
  const u8 *pIxCommon; /* ...namely these (in aIndex) */
  size_t nCharged;     /* bytes reserved in pCache for the above (CHARGING THE CACHE) */
  StrataBudget *pBudget; /* NULL, or where iterators charge read-ahead (READ-AHEAD BUDGET) */
  const u8 *pMap;        /* the file mapped (MAPPED TABLES), or NULL */
  _Atomic u64 *aVerified; /* VERIFIED BLOCKS: NULL if every use is checked */
  size_t nVerified;       /* words in aVerified */
  unsigned verifyShift;   /* block (off, size) has bit off >> verifyShift */
};

/* INDEX WINDOWS
** The index block is binary-searched once per Get and per Seek. Read in
** place, every probe costs two cache misses (the restart array, then the key)
** and a varint decode. So a reader also keeps, per index entry, the 8 bytes
** of its user key that follow the prefix common to all of them, as a
** big-endian integer padded with zeros: a dense array in which the search
** mostly stays within a few cache lines. Padded windows order keys correctly
** when they differ; equal windows fall back to comparing the keys. The last
** separator is left out: it is a short key above the table, which would leave
** the others no common prefix (and the window covering too little of them).
** Get also finds the decoded, checked block handles there, so it does not
** touch the index block at all unless windows tie, and the iterator takes
** them from there too. Data blocks lie back to back from offset 0, so a
** block's handle is its offset and the next block's (the last block's end
** is kept after the offsets): 4 bytes per block, while the data area is
** under 4 GiB. Built at open (12 bytes per data block, charged with the
** index) when every index entry is a restart point and the blocks lie as
** the builder writes them; otherwise, or without memory for it, seeks
** search the index block itself. */

/* CHARGING THE CACHE
** The reader owns its index and filter blocks (and index windows) for its
** lifetime. With a block cache, their bytes (strataSstMemoryUsage) are
** reserved in it while the reader is open, so the cache holds that much
** less: they count against its budget without being entries. (As one
** pinned entry each they overflowed the shards they hashed to: a table's
** index and filter are a sizeable part of a shard's share.) */

static int sstHandleDecode(const SstReader *r, const u8 *p, size_t n, u64 *pOff, u64 *pSize);

/* Offset and stored size of data block i (0 <= i <= r->nIx) from the index
** windows (r->aIxOff set). */
static inline u64 sstIxOff(const SstReader *r, u32 i) { return r->aIxOff[i]; }
static inline u64 sstIxSize(const SstReader *r, u32 i) {
  return (u64)(r->aIxOff[i + 1] - r->aIxOff[i]) - SST_TRAILER;
}

/* Build r->aIxWindow and r->aIxOff from the (checked) index block, if
** every entry is a restart point and every handle is good (r->nDataEnd is
** set). Leaves them NULL if not, or if out of memory. */
static void sstIxWindowBuild(SstReader *r) {
  BlockIter ix;
  const u8 *pFirst, *pLast, *k;
  size_t nFirst, nLast, nk, c = 0;
  u64 *a, off, size, end = 0;
  u32 i, n, *aOff;
  ix.aKey = NULL;
  strataBlockIterInit(&ix, r->aIndex, r->nIndex);
  if (ix.base.rc || ix.nRestart != r->props.nDataBlocks || ix.nRestart < 2) goto build_done;
  if (r->nDataEnd > UINT32_MAX) goto build_done; /* offsets would not fit */
  n = ix.nRestart - 1; /* all but the last entry */
  if (strataBlockRestartKey(&ix, 0, &pFirst, &nFirst) ||
      strataBlockRestartKey(&ix, n - 1, &pLast, &nLast)) {
    goto build_done;
  }
  nFirst -= STRATA_TRAILER;
  nLast -= STRATA_TRAILER;
  while (c < nFirst && c < nLast && pFirst[c] == pLast[c]) c++;
  a = strataMalloc(sizeof(u64) * n + sizeof(u32) * ((size_t)n + 2));
  if (!a) goto build_done;
  aOff = (u32 *)(void *)(a + n);
  for (i = 0; i <= n; i++) {
    if (i < n && strataBlockRestartKey(&ix, i, &k, &nk)) break;
    if (i < n) a[i] = strataKeyWindow(k, nk - STRATA_TRAILER, c);
    strataBlockIterSeekRestart(&ix, i);
    if (!ix.base.bValid || sstHandleDecode(r, ix.base.pVal, ix.base.nVal, &off, &size) != STRATA_OK) {
      break; /* searches of the block itself will report it */
    }
    if (off != end) break; /* not back to back: the handles are needed */
    aOff[i] = (u32)off;
    end = off + size + SST_TRAILER;
  }
  if (i <= n) {
    strataFreeMem(a);
    goto build_done;
  }
  aOff[n + 1] = (u32)end; /* sstHandleDecode kept it inside the data area */
  r->aIxWindow = a;
  r->aIxOff = aOff;
  r->nIx = n;
  r->nIxCommon = c;
  r->pIxCommon = pFirst;
build_done:
  strataBlockIterRelease(&ix);
}

/* The window of internal key pKey (user key of nu bytes) after its first
** c <= nu bytes, as strataKeyWindow: its trailer follows the user key, so
** 8 bytes can always be read there and the bytes past the user key masked. */
static inline u64 sstIkeyWindow(const u8 *pKey, size_t nu, size_t c) {
  u64 w = __builtin_bswap64(strataGet64(pKey + c));
  if (UNLIKELY(nu - c < 8)) w = nu == c ? 0 : w & (~(u64)0 << (8 * (8 - (nu - c))));
  return w;
}

/* The first windowed index entry >= internal key pKey/nKey, or nIx if
** there is none (then only the last entry can be). Ties are broken with the
** keys, read through ix (Init'ed on r->aIndex), which holds the error if
** that fails. Requires r->aIxWindow.
**
** The windows are searched without branches on their values (a random
** target mispredicts every other branch of an ordinary binary search); only
** a window equal to the target's, which a shortened separator makes rare,
** goes on to the keys. */
static u32 sstIxLowerBound(const SstReader *r, BlockIter *ix, const u8 *pKey, size_t nKey) {
  size_t nu = nKey - STRATA_TRAILER, c = r->nIxCommon;
  const u64 *aW = r->aIxWindow, *pBase = aW;
  u32 lo, hi = r->nIx, n = r->nIx;
  u64 t;
  int cmp;
  /* Every windowed key starts with the common prefix. Both keys have at
  ** least 8 bytes (the trailer at least): a short prefix is one word. */
  if (c == 0) {
    cmp = 0;
  } else if (c <= 8 && nu >= c) {
    u64 m = ~(u64)0 << (8 * (8 - c));
    u64 a = __builtin_bswap64(strataGet64(pKey)) & m;
    u64 b = __builtin_bswap64(strataGet64(r->pIxCommon)) & m;
    cmp = (a > b) - (a < b);
  } else {
    cmp = memcmp(pKey, r->pIxCommon, nu < c ? nu : c);
  }
  if (cmp < 0 || (cmp == 0 && nu < c)) return 0; /* below them all */
  if (cmp > 0) return hi;                         /* above them all */
  t = sstIkeyWindow(pKey, nu, c);
  /* n >= 1: the answer is in [pBase, pBase + n]. */
  while (n > 1) {
    u32 half = n / 2;
    pBase = pBase[half] < t ? pBase + half : pBase;
    n -= half;
  }
  lo = (u32)(pBase - aW) + (*pBase < t);
  if (LIKELY(lo == hi || aW[lo] != t)) return lo;
  /* Windows equal to the target's from lo on: the keys decide. */
  while (lo < hi) {
    u32 mid = lo + (hi - lo) / 2;
    u64 w = aW[mid];
    if (w > t) {
      hi = mid;
    } else {
      const u8 *k;
      size_t nk;
      if (!ix->aKey) strataBlockIterInit(ix, r->aIndex, r->nIndex); /* Get inits lazily */
      if (strataBlockRestartKey(ix, mid, &k, &nk)) return 0;
      if (strataIkeyCompare(k, nk, pKey, nKey) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
  }
  return lo;
}

/* Position index iterator ix (over r->aIndex) on the first entry >= the
** internal key pKey/nKey, as strataBlockIterSeek does, through the windows
** when there are any. */
static void sstIndexSeek(const SstReader *r, BlockIter *ix, const u8 *pKey, size_t nKey) {
  u32 lo;
  if (!r->aIxWindow) {
    strataBlockIterSeek(ix, pKey, nKey);
    return;
  }
  lo = sstIxLowerBound(r, ix, pKey, nKey);
  if (ix->base.rc) return;
  strataBlockIterSeekRestart(ix, lo);
  if (lo == r->nIx && ix->base.bValid &&
      strataIkeyCompare(ix->base.pKey, ix->base.nKey, pKey, nKey) < 0) {
    strataBlockIterNext(ix); /* above the last separator too: invalid */
  }
}

/* Report corruption in r at offset off. Returns STRATA_CORRUPT. */
static int sstCorrupt(const SstReader *r, u64 off, const char *zWhy) {
  return strataErr(STRATA_CORRUPT, "sstable %s: %s (offset %llu)", r->zPath, zWhy,
                   (unsigned long long)off);
}

/* Prefix the thread's current message with the file and block offset. */
static int sstWrapErr(const SstReader *r, int rc, const char *zWhat, u64 off) {
  char zMsg[400];
  snprintf(zMsg, sizeof(zMsg), "%s", strataErrMsgGet());
  return strataErr(rc, "sstable %s: %s at offset %llu: %s", r->zPath, zWhat,
                   (unsigned long long)off, zMsg);
}

/* Check that (off, size) + trailer lies inside [0, nEnd), and that size is
** possible for a stored block (so damage never makes us allocate more). */
static int sstHandleOk(u64 off, u64 size, u64 nEnd) {
  return size < STRATA_BLOCK_MAX && size <= nEnd && off <= nEnd - size &&
         nEnd - size - off >= SST_TRAILER;
}

/* Count n bytes used from the mapping as read, as a read of the file would. */
static inline void sstCountMapped(SstReader *r, size_t n) {
  if (r->pFile->pStats)
    atomic_fetch_add_explicit(&r->pFile->pStats->nRead, n, memory_order_relaxed);
}

/* Read the stored block (off, size) and its trailer into aRaw (size + 5
** bytes) and verify the checksum. Sets *pType. Returns STRATA_OK, an I/O
** error, or STRATA_CORRUPT (short read, checksum, unknown type). */
static int sstCheckRaw(SstReader *r, u64 off, u64 size, const u8 *aRaw, int *pType);

static int sstReadRaw(SstReader *r, u64 off, u64 size, u8 *aRaw, int *pType) {
  size_t n = (size_t)size + SST_TRAILER, nRead = 0;
  int rc;
  if (r->pMap && off <= r->fileSize && n <= r->fileSize - off) {
    memcpy(aRaw, r->pMap + off, n);
    sstCountMapped(r, n);
    nRead = n;
  } else {
    rc = strataFileRead(r->pFile, aRaw, n, off, &nRead);
    if (rc) return rc;
  }
  if (nRead != n) return sstCorrupt(r, off, "block truncated");
  return sstCheckRaw(r, off, size, aRaw, pType);
}

/* Verify the checksum of stored block (off, size) at aRaw (its trailer
** follows it) and set *pType. STRATA_OK or STRATA_CORRUPT. */
static int sstCheckRaw(SstReader *r, u64 off, u64 size, const u8 *aRaw, int *pType) {
  u32 crc = strataCrc32c(0, aRaw, (size_t)size + 1);
  if (strataCrcMask(crc) != strataGet32(aRaw + size + 1))
    return sstCorrupt(r, off, "block checksum mismatch");
  *pType = aRaw[size];
  if (*pType != SST_TYPE_NONE && *pType != SST_TYPE_ZSTD) {
    return sstCorrupt(r, off, "unknown block compression type");
  }
  return STRATA_OK;
}

/* Stored block (off, size) of a mapped table, where it lies in the
** mapping: *paRaw, its checksum verified and *pType set, as sstReadRaw
** would leave it. Handles are checked against the data area before use. */
static int sstMappedRaw(SstReader *r, u64 off, u64 size, const u8 **paRaw, int *pType) {
  *paRaw = r->pMap + off;
  sstCountMapped(r, (size_t)size + SST_TRAILER);
  return sstCheckRaw(r, off, size, *paRaw, pType);
}

/* Data block (off, size) of a mapped table in place (MAPPED TABLES), with
** its checksum verified: STRATA_OK and *pa, or SST_NOT_IN_PLACE if the table
** is not mapped or the block is stored compressed (read it the other way),
** or STRATA_CORRUPT. */
#define SST_NOT_IN_PLACE (-1)
static int sstMappedBlock(SstReader *r, u64 off, u64 size, const u8 **pa) {
  int type = 0, rc;
  u64 iBit, m;
  _Atomic u64 *pWord;
  if (!r->pMap || r->pMap[off + size] != SST_TYPE_NONE) return SST_NOT_IN_PLACE;
  if (!r->aVerified) return sstMappedRaw(r, off, size, pa, &type);
  iBit = off >> r->verifyShift;
  pWord = &r->aVerified[iBit / 64];
  m = (u64)1 << (iBit % 64);
  if (atomic_load_explicit(pWord, memory_order_relaxed) & m) {
    *pa = r->pMap + off;
    sstCountMapped(r, (size_t)size + SST_TRAILER);
    return STRATA_OK;
  }
  rc = sstMappedRaw(r, off, size, pa, &type);
  if (rc == STRATA_OK) atomic_fetch_or_explicit(pWord, m, memory_order_relaxed);
  return rc;
}

/* Decoded size of a verified stored block. */
static int sstDecodedSize(SstReader *r, u64 off, int type, const u8 *a, size_t n, size_t *pn) {
  int rc = strataDecompressedSize(type, a, n, pn);
  if (rc) return sstWrapErr(r, rc, "block", off);
  return STRATA_OK;
}

/* Read block (off, size) into one exact allocation of its decoded bytes.
** *ppAlloc receives it (caller frees), *pn the decoded size (metadata
** blocks and Verify; data blocks for the cache use sstLoadBlock). Returns
** STRATA_OK or an error. */
static int sstLoadOwned(SstReader *r, u64 off, u64 size, u8 **ppAlloc, size_t *pn) {
  u8 *aRaw, *aOut = NULL;
  size_t nRaw = (size_t)size + SST_TRAILER, nDec = 0;
  int type = 0, rc;
  *ppAlloc = NULL;
  *pn = 0;
  /* Read straight into an allocation that becomes the result if the block
  ** is stored uncompressed. */
  aRaw = strataMalloc(nRaw);
  if (!aRaw) return strataErr(STRATA_NOMEM, "out of memory (%zu byte block)", nRaw);
  rc = sstReadRaw(r, off, size, aRaw, &type);
  if (rc == STRATA_OK && type == SST_TYPE_NONE) {
    *ppAlloc = aRaw;
    *pn = (size_t)size;
    return STRATA_OK;
  }
  if (rc == STRATA_OK) rc = sstDecodedSize(r, off, type, aRaw, (size_t)size, &nDec);
  if (rc == STRATA_OK) {
    aOut = strataMalloc(nDec);
    if (!aOut) rc = strataErr(STRATA_NOMEM, "out of memory (%zu byte block)", nDec);
  }
  if (rc == STRATA_OK) {
    rc = strataDecompress(type, aRaw, (size_t)size, aOut, nDec);
    if (rc) rc = sstWrapErr(r, rc, "block", off);
  }
  strataFreeMem(aRaw);
  if (rc) {
    strataFreeMem(aOut);
    return rc;
  }
  *ppAlloc = aOut;
  *pn = nDec;
  return STRATA_OK;
}

/* Read and decode a metadata block into an owned buffer. */
static int sstLoadMeta(SstReader *r, const u8 *pHandle, const char *zWhat, u8 **ppOut, size_t *pn) {
  u64 off = strataGet64(pHandle), size = strataGet64(pHandle + 8);
  if (!sstHandleOk(off, size, r->fileSize - SST_FOOTER_SIZE)) {
    return strataErr(STRATA_CORRUPT, "sstable %s: %s block handle out of range", r->zPath, zWhat);
  }
  return sstLoadOwned(r, off, size, ppOut, pn);
}

static int propsDecode(SstReader *r, const u8 *p, size_t n) {
  const u8 *pEnd = p + n;
  u64 aV[8], nKey;
  SstProps *pr = &r->props;
  int i;
  for (i = 0; i < 8; i++) {
    if ((p = strataGetVarint64(p, pEnd, &aV[i])) == NULL) goto props_corrupt;
  }
  if (aV[0] != STRATA_FORMAT_VERSION) {
    return strataErr(STRATA_CORRUPT, "sstable %s: unsupported properties version %llu", r->zPath,
                     (unsigned long long)aV[0]);
  }
  pr->nEntries = aV[1];
  pr->nDeletes = aV[2];
  pr->nDataBlocks = aV[3];
  pr->nRawKeyBytes = aV[4];
  pr->nRawValBytes = aV[5];
  pr->minSeq = aV[6];
  pr->maxSeq = aV[7];
  if ((p = strataGetVarint64(p, pEnd, &nKey)) == NULL || nKey > (u64)(pEnd - p)) goto props_corrupt;
  if (strataBufSet(&pr->smallest, p, (size_t)nKey)) return STRATA_NOMEM;
  p += nKey;
  if ((p = strataGetVarint64(p, pEnd, &nKey)) == NULL || nKey > (u64)(pEnd - p)) goto props_corrupt;
  if (strataBufSet(&pr->largest, p, (size_t)nKey)) return STRATA_NOMEM;
  /* Later versions may append fields: ignored. */
  if (pr->nDeletes > pr->nEntries || pr->minSeq > pr->maxSeq) goto props_corrupt;
  if (pr->nEntries > 0) {
    if (pr->smallest.n < STRATA_TRAILER || pr->largest.n < STRATA_TRAILER ||
        strataIkeyCompare(pr->smallest.a, pr->smallest.n, pr->largest.a, pr->largest.n) > 0) {
      goto props_corrupt;
    }
  }
  return STRATA_OK;
props_corrupt:
  return strataErr(STRATA_CORRUPT, "sstable %s: malformed properties block", r->zPath);
}

/* Open zPath. With pCache, the index and filter are charged to it (see
** CHARGING THE CACHE). Returns STRATA_OK with *ppReader; STRATA_CANTOPEN or an I/O
** error; STRATA_CORRUPT ("not an sstable" for a wrong magic number, or a
** damaged footer, index, filter or properties block); STRATA_NOMEM. */
int strataSstOpen(strata_env *env, const char *zPath, u64 id, BlockCache *pCache,
                  StrataIoStats *pStats, SstReader **ppReader) {
  SstReader *r;
  u8 aFooter[SST_FOOTER_SIZE];
  u64 nMin;
  u64 nEntries = 0;
  int rc;
  *ppReader = NULL;
  r = strataMallocZero(sizeof(*r));
  if (!r) return strataErr(STRATA_NOMEM, "out of memory");
  r->env = env;
  r->id = id;
  r->pCache = pCache;
  r->zPath = strataStrdup(zPath);
  if (!r->zPath) {
    rc = strataErr(STRATA_NOMEM, "out of memory");
    goto open_failed;
  }
  rc = strataEnvOpen(env, zPath, STRATA_OPEN_READ, pStats, &r->pFile);
  if (rc == STRATA_OK) rc = strataFileSize(r->pFile, &r->fileSize);
  if (rc) goto open_failed;
  if (r->fileSize < SST_FOOTER_SIZE) {
    rc = strataErr(STRATA_CORRUPT, "sstable %s: not an sstable (only %llu bytes)", zPath,
                   (unsigned long long)r->fileSize);
    goto open_failed;
  }
  rc =
      strataFileReadExact(r->pFile, aFooter, SST_FOOTER_SIZE, r->fileSize - SST_FOOTER_SIZE, zPath);
  if (rc) goto open_failed;
  if (memcmp(aFooter + SST_FOOTER_MAGIC, SST_MAGIC, 8) != 0) {
    rc = strataErr(STRATA_CORRUPT, "sstable %s: not an sstable (bad magic number)", zPath);
    goto open_failed;
  }
  if (strataCrcMask(strataCrc32c(0, aFooter, SST_FOOTER_CRC)) !=
      strataGet32(aFooter + SST_FOOTER_CRC)) {
    rc = sstCorrupt(r, r->fileSize - SST_FOOTER_SIZE, "footer checksum mismatch");
    goto open_failed;
  }
  if (strataGet32(aFooter + SST_FOOTER_VERSION) != STRATA_FORMAT_VERSION) {
    rc = strataErr(STRATA_CORRUPT, "sstable %s: unsupported format version %u", zPath,
                   strataGet32(aFooter + SST_FOOTER_VERSION));
    goto open_failed;
  }

  /* Properties first: the rest is checked against them. */
  {
    u8 *aProps = NULL;
    size_t nProps = 0;
    rc = sstLoadMeta(r, aFooter + SST_FOOTER_PROPS, "properties", &aProps, &nProps);
    if (rc == STRATA_OK) rc = propsDecode(r, aProps, nProps);
    strataFreeMem(aProps);
    if (rc) goto open_failed;
  }
  rc = sstLoadMeta(r, aFooter + SST_FOOTER_INDEX, "index", &r->aIndex, &r->nIndex);
  if (rc) goto open_failed;
  rc = strataBlockCheck(r->aIndex, r->nIndex, &nEntries);
  if (rc == STRATA_OK && nEntries != r->props.nDataBlocks) {
    rc = strataErr(STRATA_CORRUPT, "index has %llu entries for %llu data blocks",
                   (unsigned long long)nEntries, (unsigned long long)r->props.nDataBlocks);
  }
  if (rc) {
    rc = sstWrapErr(r, rc, "index block", strataGet64(aFooter + SST_FOOTER_INDEX));
    goto open_failed;
  }
  if (strataGet64(aFooter + SST_FOOTER_FILTER + 8) > 0) {
    rc = sstLoadMeta(r, aFooter + SST_FOOTER_FILTER, "filter", &r->aFilter, &r->nFilter);
    if (rc) goto open_failed;
    strataBloomInit(&r->bloom, r->aFilter, r->nFilter);
  }

  /* Data blocks end where the first metadata block starts. */
  nMin = strataGet64(aFooter + SST_FOOTER_PROPS);
  if (strataGet64(aFooter + SST_FOOTER_INDEX) < nMin)
    nMin = strataGet64(aFooter + SST_FOOTER_INDEX);
  if (r->aFilter && strataGet64(aFooter + SST_FOOTER_FILTER) < nMin) {
    nMin = strataGet64(aFooter + SST_FOOTER_FILTER);
  }
  r->nDataEnd = nMin;
  r->indexOff = strataGet64(aFooter + SST_FOOTER_INDEX);
  r->props.fileSize = r->fileSize;
  sstIxWindowBuild(r);
  if (pCache) {
    r->nCharged = strataSstMemoryUsage(r);
    strataCacheReserve(pCache, r->nCharged);
  }
  *ppReader = r;
  return STRATA_OK;

open_failed:
  strataSstClose(r);
  return rc;
}

void strataSstClose(SstReader *r) {
  size_t nCharged;
  BlockCache *pCache;
  StrataBudget *pBudget;
  if (!r) return;
  nCharged = r->nCharged;
  pCache = r->pCache;
  pBudget = r->pBudget;
  strataFileClose(r->pFile);
  strataFreeMem(r->zPath);
  strataFreeMem(r->aIndex);
  strataFreeMem(r->aFilter);
  strataFreeMem(r->aIxWindow);
  strataFreeMem((void *)r->aVerified);
  strataSstPropsFree(&r->props);
  strataFreeMem(r);
  if (nCharged) strataCacheUnreserve(pCache, nCharged); /* freed: the cache may grow back */
  if (pBudget) atomic_fetch_add_explicit(&pBudget->nFreed, nCharged, memory_order_relaxed);
}

void strataSstSetBudget(SstReader *r, StrataBudget *pBudget) { r->pBudget = pBudget; }

/* Set up VERIFIED BLOCKS for a mapped reader, if its index windows allow;
** charged to the cache with the rest of the reader. */
static void sstVerifiedBuild(SstReader *r) {
  u64 minGap = ~(u64)0, nBits;
  unsigned shift = 0;
  size_t nWords;
  u32 i;
  if (!r->aIxOff) return;
  for (i = 0; i < r->nIx; i++) {
    u64 gap = sstIxOff(r, i + 1) - sstIxOff(r, i); /* > 0: blocks lie back to back */
    if (gap < minGap) minGap = gap;
  }
  while (shift < 63 && ((u64)2 << shift) <= minGap) shift++;
  nBits = (r->nDataEnd >> shift) + 1;
  nWords = (size_t)((nBits + 63) / 64);
  if (nWords > (size_t)r->nIx + 1) return;
  r->aVerified = strataMalloc(nWords * sizeof(u64));
  if (!r->aVerified) return; /* checks every use */
  for (i = 0; i < nWords; i++) atomic_init(&r->aVerified[i], 0);
  r->nVerified = nWords;
  r->verifyShift = shift;
  if (r->pCache) {
    size_t n = strataSstMemoryUsage(r);
    strataCacheReserve(r->pCache, n - r->nCharged);
    r->nCharged = n;
  }
}

int strataSstMap(SstReader *r, int bVerifyAlways) {
  int rc = strataFileMap(r->pFile, r->fileSize, &r->pMap);
  if (rc) {
    r->pMap = NULL;
    return rc;
  }
  if (!bVerifyAlways) sstVerifiedBuild(r);
  return STRATA_OK;
}

const SstProps *strataSstProps(const SstReader *r) {
  return &r->props;
}

size_t strataSstMemoryUsage(const SstReader *r) {
  return sizeof(*r) + r->nIndex + r->nFilter + (r->aIxWindow ? sizeof(u64) * r->nIx + sizeof(u32) * (r->nIx + 2) : 0) +
         r->nVerified * sizeof(u64) +
         r->props.smallest.nAlloc + r->props.largest.nAlloc + strlen(r->zPath) + 1;
}

/* Decode a block handle from an index value and check it against the data
** area. Returns STRATA_OK or STRATA_CORRUPT. */
static int sstHandleDecode(const SstReader *r, const u8 *p, size_t n, u64 *pOff, u64 *pSize) {
  const u8 *pEnd = p + n;
  if ((p = strataGetVarint64(p, pEnd, pOff)) == NULL ||
      (p = strataGetVarint64(p, pEnd, pSize)) == NULL || !sstHandleOk(*pOff, *pSize, r->nDataEnd)) {
    return strataErr(STRATA_CORRUPT, "sstable %s: bad data block handle in the index", r->zPath);
  }
  return STRATA_OK;
}

/* SPARE BLOCK BUFFERS
** A point lookup that misses the cache reads a block into a new buffer and
** inserts it, and the insert evicts the oldest block, whose buffer is
** freed: a malloc and a free of a cold 4 KiB chunk per miss. Instead, a
** freed block buffer goes to a small stash of the freeing thread (eviction
** runs in the inserting thread), and the next block loaded by that thread
** takes a buffer from it if one is big enough. Buffers are sized in steps
** of SST_BLOCK_ROUND so that blocks of similar size share them; the cache
** is charged the whole buffer. The stash also keeps one closed table
** iterator (with its buffers): a level iterator opens one per file it
** enters, once per seek when seeks are random. A thread's stash is freed
** when it exits or closes a database. */
#define SST_SPARE_MAX 8
#define SST_SPARE_LARGEST (64 * 1024) /* bigger buffers are not kept */
#define SST_BLOCK_ROUND 128

struct SstIter;
static void sstIterFree(struct SstIter *it);

typedef struct SstSpare {
  int n;
  int bRegistered; /* the exit destructor knows this stash */
  SstBlock *a[SST_SPARE_MAX];
  struct SstIter *pIter; /* a closed iterator, or NULL */
} SstSpare;

static _Thread_local SstSpare sstSpare;
static pthread_key_t sstSpareKey;
static pthread_once_t sstSpareOnce = PTHREAD_ONCE_INIT;
static int bSpareKeyOk;

static void sstSpareDestroy(void *p) {
  SstSpare *s = p;
  while (s->n > 0) strataFreeMem(s->a[--s->n]);
  sstIterFree(s->pIter);
  s->pIter = NULL;
}

void strataSstThreadRelease(void) { sstSpareDestroy(&sstSpare); }

static void sstSpareInit(void) {
  bSpareKeyOk = pthread_key_create(&sstSpareKey, sstSpareDestroy) == 0;
}

/* Make sure the thread's stash is freed when it exits. Returns 0 if that
** cannot be arranged (then nothing may be stashed). */
static int sstSpareRegister(SstSpare *s) {
  if (!s->bRegistered) {
    pthread_once(&sstSpareOnce, sstSpareInit);
    if (!bSpareKeyOk || pthread_setspecific(sstSpareKey, s) != 0) return 0;
    s->bRegistered = 1;
  }
  return 1;
}

/* A block buffer with room for n bytes: a spare or a new one. NULL if out
** of memory (message set). */
static SstBlock *sstBlockAlloc(size_t n) {
  SstSpare *s = &sstSpare;
  SstBlock *p;
  size_t nAlloc;
  int i;
  for (i = s->n - 1; i >= 0; i--) {
    p = s->a[i];
    if (p->nAlloc >= n && p->nAlloc - n < SST_BLOCK_ROUND) {
      s->a[i] = s->a[--s->n];
      return p;
    }
  }
  nAlloc = (n + SST_BLOCK_ROUND - 1) & ~(size_t)(SST_BLOCK_ROUND - 1);
  p = strataMalloc(offsetof(SstBlock, a) + nAlloc);
  if (!p) {
    strataErr(STRATA_NOMEM, "out of memory (%zu byte block)", n);
    return NULL;
  }
  p->nAlloc = nAlloc;
  return p;
}

/* Free a block buffer (into the stash if there is room): the cache's
** xFree for data blocks. NULL is a no-op. */
static void sstBlockFree(void *pArg) {
  SstSpare *s = &sstSpare;
  SstBlock *p = pArg;
  if (!p) return;
  if (s->n < SST_SPARE_MAX && p->nAlloc <= SST_SPARE_LARGEST && sstSpareRegister(s)) {
    s->a[s->n++] = p;
    return;
  }
  strataFreeMem(p);
}

/* Read data block (off, size) into a block buffer (*ppBlk, freed with
** sstBlockFree): the stored bytes land in it directly when the block is not
** compressed. Returns STRATA_OK or an error (*ppBlk NULL). */
static int sstLoadBlock(SstReader *r, u64 off, u64 size, SstBlock **ppBlk) {
  size_t nRaw = (size_t)size + SST_TRAILER, nDec = 0;
  SstBlock *pRaw = NULL, *pOut = NULL;
  const u8 *aRaw;
  int type = 0, rc;
  *ppBlk = NULL;
  if (r->pMap && r->pMap[off + size] != SST_TYPE_NONE) {
    rc = sstMappedRaw(r, off, size, &aRaw, &type); /* decoded from the mapping */
  } else {
    pRaw = sstBlockAlloc(nRaw);
    if (!pRaw) return STRATA_NOMEM;
    rc = sstReadRaw(r, off, size, pRaw->a, &type);
    if (rc == STRATA_OK && type == SST_TYPE_NONE) {
      pRaw->n = (size_t)size;
      *ppBlk = pRaw;
      return STRATA_OK;
    }
    aRaw = pRaw->a;
  }
  if (rc == STRATA_OK) rc = sstDecodedSize(r, off, type, aRaw, (size_t)size, &nDec);
  if (rc == STRATA_OK && (pOut = sstBlockAlloc(nDec)) == NULL) rc = STRATA_NOMEM;
  if (rc == STRATA_OK) {
    rc = strataDecompress(type, aRaw, (size_t)size, pOut->a, nDec);
    if (rc) rc = sstWrapErr(r, rc, "block", off);
  }
  sstBlockFree(pRaw);
  if (rc) {
    sstBlockFree(pOut);
    return rc;
  }
  pOut->n = nDec;
  *ppBlk = pOut;
  return STRATA_OK;
}

/* What a data block costs the cache: its buffer and the entry (USAGE in
** cache.c). */
static inline size_t sstBlockCharge(const SstBlock *p) {
  return offsetof(SstBlock, a) + p->nAlloc + strataCacheEntryOverhead();
}

/* A data block pinned for use: in the cache (h) or owned (pOwned). */
typedef struct BlockRef {
  CacheHandle *h;
  SstBlock *pOwned;
  const u8 *a;
  size_t n;
} BlockRef;

/* Ask for the lines of a cached block (off, size) that any use of it reads
** first: its header, and its tail, where the restart array is (for a block
** stored uncompressed, size is its length; otherwise the guess is only
** wasted). */
static inline void sstPrefetchBlock(const SstBlock *pBlk, u64 size) {
  __builtin_prefetch(pBlk);
  __builtin_prefetch((const void *)((uintptr_t)pBlk->a + (uintptr_t)size - 4));
}

static int sstPinMissed(SstReader *r, u64 off, u64 size, int bFill, BlockRef *pRef);

/* Pin data block (off, size) from the cache, or read it (and insert it
** into the cache if bFill). Returns STRATA_OK or an error. */
static int sstPinBlock(SstReader *r, u64 off, u64 size, int bFill, BlockRef *pRef) {
  pRef->h = NULL;
  pRef->pOwned = NULL;
  if (r->pMap) {
    int rc = sstMappedBlock(r, off, size, &pRef->a);
    pRef->n = (size_t)size;
    if (rc != SST_NOT_IN_PLACE) return rc;
  }
  if (r->pCache) {
    CacheHandle *h = strataCacheLookup(r->pCache, r->id, off);
    if (h) {
      SstBlock *pBlk = strataCacheValue(h);
      sstPrefetchBlock(pBlk, size); /* the header and tail misses overlap */
      pRef->h = h;
      pRef->a = pBlk->a;
      pRef->n = pBlk->n;
      return STRATA_OK;
    }
  }
  return sstPinMissed(r, off, size, bFill, pRef);
}

/* sstPinBlock for a block not in the cache (pRef's pins clear). */
static int sstPinMissed(SstReader *r, u64 off, u64 size, int bFill, BlockRef *pRef) {
  SstBlock *pBlk;
  int rc = sstLoadBlock(r, off, size, &pBlk);
  if (rc) return rc;
  pRef->a = pBlk->a;
  pRef->n = pBlk->n;
  if (r->pCache && bFill) {
    CacheHandle *h =
        strataCacheInsert(r->pCache, r->id, off, pBlk, sstBlockCharge(pBlk), sstBlockFree);
    if (!h) return strataErr(STRATA_NOMEM, "out of memory");
    pRef->h = h;
  } else {
    pRef->pOwned = pBlk;
  }
  return STRATA_OK;
}

/* Give a block that sstPinBlock read without filling the cache (pOwned) to
** the cache, unpinned: for a Get that has finished with it, which so saves
** the pin's release. Out of memory just frees it. */
static void sstCacheOwned(SstReader *r, u64 off, BlockRef *pRef) {
  SstBlock *pBlk = pRef->pOwned;
  if (!pBlk || !r->pCache) return;
  pRef->pOwned = NULL;
  strataCacheAdd(r->pCache, r->id, off, pBlk, sstBlockCharge(pBlk), sstBlockFree);
}

static void sstUnpinBlock(SstReader *r, BlockRef *pRef) {
  if (pRef->h) strataCacheRelease(r->pCache, pRef->h);
  sstBlockFree(pRef->pOwned);
  pRef->h = NULL;
  pRef->pOwned = NULL;
}

/* ================================================================== */
/* GET */

int strataSstGet(SstReader *r, const u8 *pUkey, size_t nUkey, u64 seq, StrataReadStats *pStats,
                 int *pFound, int *pType, StrataBuf *pVal) {
  const SstProps *pr = &r->props;
  *pFound = 0;
  *pType = 0;
  if (pr->nEntries == 0) return STRATA_OK;
  /* Outside the table's key range: no need to ask the filter. */
  if (strataUkeyCompare(pUkey, nUkey, pr->smallest.a, pr->smallest.n - 8) < 0 ||
      strataUkeyCompare(pUkey, nUkey, pr->largest.a, pr->largest.n - 8) > 0) {
    return STRATA_OK;
  }
  return strataSstGetHashed(r, pUkey, nUkey, strataBloomHash(pUkey, nUkey), seq, pStats, pFound,
                            pType, pVal);
}

/* Ask for the filter line that a Get of the key with filter hash `hash`
** will test, so that a lookup probing several tables waits for their lines
** at once rather than one after the other. */
void strataSstPrefetch(const SstReader *r, u32 hash) {
  if (r->aFilter) strataBloomPrefetch(&r->bloom, hash);
}

int strataSstFilterCheck(const SstReader *r, u32 hash, StrataReadStats *pStats) {
  if (r->props.nEntries == 0) return 0;
  if (!r->aFilter) return 1;
  if (pStats) pStats->nBloomCheck++;
  if (strataBloomCheck(&r->bloom, hash)) return 1;
  if (pStats) pStats->nBloomUseful++;
  return 0;
}

int strataSstGetHashed(SstReader *r, const u8 *pUkey, size_t nUkey, u32 hash, u64 seq,
                       StrataReadStats *pStats, int *pFound, int *pType, StrataBuf *pVal) {
  const SstProps *pr = &r->props;
  u8 aLookup[SST_LOOKUP_STACK], *pLookup = aLookup;
  size_t nLookup = nUkey + STRATA_TRAILER;
  BlockIter ix, dt;
  BlockRef ref = {0};
  int rc = STRATA_OK, bHaveBlock = 0;
  u32 iIx = 0;
  *pFound = 0;
  *pType = 0;
  /* The key range was checked by the caller (its props are cold lines). */
  if (pr->nEntries == 0) return STRATA_OK;
  if (r->aFilter) {
    if (pStats) pStats->nBloomCheck++;
    if (!strataBloomCheck(&r->bloom, hash)) {
      if (pStats) pStats->nBloomUseful++;
      return STRATA_OK;
    }
  }
  if (nLookup > sizeof(aLookup)) {
    pLookup = strataMalloc(nLookup);
    if (!pLookup) return strataErr(STRATA_NOMEM, "out of memory");
  }
  memcpy(pLookup, pUkey, nUkey);
  strataPut64(pLookup + nUkey,
              strataPackTrailer(seq > STRATA_MAX_SEQ ? STRATA_MAX_SEQ : seq, STRATA_TYPE_VALUE));
  /* With index windows the index block is read only when windows tie, so
  ** its iterator is set up then (sstIxLowerBound). */
  ix.aKey = NULL;
  ix.base.rc = STRATA_OK;
  dt.aKey = NULL;
  if (r->aIxOff) {
    iIx = sstIxLowerBound(r, &ix, pLookup, nLookup);
  } else {
    strataBlockIterInit(&ix, r->aIndex, r->nIndex);
    strataBlockIterSeek(&ix, pLookup, nLookup);
  }
  /* Normally one block answers; if the key falls past the last entry of the
  ** block its separator chose, the next block's first entry decides. */
  for (;;) {
    u64 off, size;
    if (r->aIxOff) { /* handles decoded at open */
      if (ix.base.rc || iIx > r->nIx) break;
      off = sstIxOff(r, iIx);
      size = sstIxSize(r, iIx);
      iIx++;
    } else {
      if (!ix.base.bValid) break;
      rc = sstHandleDecode(r, ix.base.pVal, ix.base.nVal, &off, &size);
      if (rc) break;
    }
    /* A block read from the file is searched before it goes into the cache
    ** (sstCacheOwned): it needs no pin. */
    rc = sstPinBlock(r, off, size, 0, &ref);
    if (rc) break;
    bHaveBlock = 1;
    strataBlockIterInit(&dt, ref.a, ref.n);
    strataBlockIterSeek(&dt, pLookup, nLookup);
    if (dt.base.bValid) {
      const u8 *k = dt.base.pKey;
      size_t nk = dt.base.nKey;
      if (strataUkeyCompare(k, nk - 8, pUkey, nUkey) == 0) {
        *pFound = 1;
        *pType = strataIkeyType(k, nk);
        if (*pType == STRATA_TYPE_VALUE)
          rc = strataBufSet(pVal, dt.base.pVal, dt.base.nVal);
        else
          pVal->n = 0;
      }
      sstCacheOwned(r, off, &ref); /* the value is copied: the block may go */
      break;
    }
    if (dt.base.rc) {
      rc = sstWrapErr(r, dt.base.rc, "data block", off);
      break;
    }
    sstCacheOwned(r, off, &ref);
    sstUnpinBlock(r, &ref);
    bHaveBlock = 0;
    if (!r->aIxOff) strataBlockIterNext(&ix);
  }
  if (rc == STRATA_OK && ix.base.rc) rc = sstWrapErr(r, ix.base.rc, "index block", r->indexOff);
  if (bHaveBlock) sstUnpinBlock(r, &ref);
  /* Forward seeks allocate only for keys beyond the inline buffer. */
  if (ix.aKey && (ix.aKey != ix.aKeyInline || ix.aPrev)) strataBlockIterRelease(&ix);
  if (dt.aKey && (dt.aKey != dt.aKeyInline || dt.aPrev)) strataBlockIterRelease(&dt);
  if (pLookup != aLookup) strataFreeMem(pLookup);
  if (rc) *pFound = 0;
  return rc;
}

/* ================================================================== */
/* ITERATOR */

typedef struct SstIter {
  StrataIter base;
  SstReader *r;
  int bFillCache;
  BlockIter index;
  BlockIter data;
  int bBlock;    /* data is positioned over a loaded block */
  u64 blockOff;  /* ...this one */
  BlockRef ref;  /* what pins it (neither set: it is in raw/dec) */
  StrataBuf raw; /* stored bytes of a block read without the cache */
  StrataBuf dec; /* decoded bytes of a compressed one */
  StrataBuf ra;  /* readahead window: file bytes [raOff, raOff + ra.n) */
  u64 raOff;
  StrataBudget *pRaBudget; /* what ra.nAlloc is charged to (READ-AHEAD BUDGET), or NULL */
  int nForward;  /* consecutive forward block moves (drives readahead) */
  int nBackward; /* consecutive backward block moves */
  u32 iIxPending; /* 1 + the index entry of the loaded block, when a Seek
                  ** has not positioned the index iterator on it (LAZY
                  ** INDEX POSITION); 0 when the index iterator is there */
  BlockCache *pHoldCache; /* strataSstIterHold: released at close */
  CacheHandle *pHold;
} SstIter;

/* 1 if blocks the iterator reads go into the cache: it was asked to fill
** it, and is not deep into a scan (SCANS). */
static inline int sstIterFills(const SstIter *it) {
  return it->bFillCache && it->nForward < SST_SCAN_NOFILL && it->nBackward < SST_SCAN_NOFILL;
}

/* 1 if the iterator reads blocks through read-ahead windows: it does not
** fill the cache (or no longer does, deep into a scan) and has moved
** through at least two consecutive blocks one way. Such a scan reads with
** pread even from a mapped table (MAPPED TABLES): a window of up to 256 KiB
** costs one system call, and the kernel's copy streams it into the CPU's
** caches, where a walk over the map meets a cold page, its TLB miss and
** the end of the hardware prefetcher's run every 4 KiB. The map buys a
** long scan nothing it needs, so it keeps the path it had before. */
static inline int sstIterReadsAhead(const SstIter *it) {
  return !sstIterFills(it) && (it->nForward >= 2 || it->nBackward >= 2);
}

/* Make the iterator invalid with error rc (sticky). */
static void sstIterFail(SstIter *it, int rc) {
  it->base.rc = rc;
  it->base.bValid = 0;
}

/* READ-AHEAD BUDGET
** A reader given a budget (strataSstSetBudget: the database's) charges the
** windows of its iterators to it: a window grows only while the windows of
** all iterators together stay within nReadaheadMax, and its bytes are
** reserved in the block cache while it is allocated. A window that may not
** grow reads as much as it holds; an iterator with none reads one block at
** a time. Compactions read every input table at once, up to two at a time
** and each possibly split in two, so without the bound their windows alone
** came to a few MB beside the cache. A closed iterator gives its window
** back (a stashed one keeps no window that is charged). */

/* The window a scan wants for block (off, nRaw bytes with its trailer):
** SST_READAHEAD_MIN after two consecutive blocks, doubling with the run up
** to SST_READAHEAD_MAX, at least the block, within the data area. */
static size_t sstRaWant(const SstIter *it, u64 off, size_t nRaw) {
  int nRun = it->nForward >= 2 ? it->nForward : it->nBackward;
  u64 nWant = (u64)SST_READAHEAD_MIN << (nRun - 2 > 4 ? 4 : nRun - 2);
  if (nWant > SST_READAHEAD_MAX) nWant = SST_READAHEAD_MAX;
  if (nWant < nRaw) nWant = nRaw;
  if (it->nForward >= 2) {
    if (nWant > it->r->nDataEnd - off) nWant = it->r->nDataEnd - off;
  } else {
    if (nWant > off + nRaw) nWant = off + nRaw;
  }
  return (size_t)nWant;
}

/* Bytes of the window to read (at least nRaw, at most nWant), with the
** buffer holding them; 0 if the budget allows no window (or, with *pRc
** set, no memory). */
static size_t sstRaWindow(SstIter *it, size_t nWant, size_t nRaw, int *pRc) {
  StrataBudget *pB = it->r->pBudget;
  size_t nHave, nMore;
  u8 *aNew;
  it->ra.n = 0;
  if (!pB) {
    *pRc = strataBufReserve(&it->ra, nWant);
    return *pRc ? 0 : nWant;
  }
  /* A buffer left from a reader without a budget is not charged. */
  if (!it->pRaBudget && it->ra.nAlloc) strataBufFree(&it->ra);
  nHave = it->ra.nAlloc;
  if (nWant <= nHave) return nWant;
  nMore = nWant - nHave;
  if (atomic_fetch_add_explicit(&pB->nReadahead, nMore, memory_order_relaxed) + nMore >
      pB->nReadaheadMax) {
    atomic_fetch_sub_explicit(&pB->nReadahead, nMore, memory_order_relaxed);
    return nHave >= nRaw ? nHave : 0;
  }
  /* The window's bytes are read anew: no copy of the old ones. */
  aNew = strataMalloc(nWant);
  if (!aNew) {
    atomic_fetch_sub_explicit(&pB->nReadahead, nMore, memory_order_relaxed);
    *pRc = strataErr(STRATA_NOMEM, "out of memory (%zu byte read-ahead)", nWant);
    return 0;
  }
  strataFreeMem(it->ra.a);
  it->ra.a = aNew;
  it->ra.nAlloc = nWant;
  it->pRaBudget = pB;
  if (pB->pCache) strataCacheReserve(pB->pCache, nMore);
  return nWant;
}

/* Free the window and give back its charge, if it has one. */
static void sstRaRelease(SstIter *it) {
  StrataBudget *pB = it->pRaBudget;
  size_t n = it->ra.nAlloc;
  if (!pB) return;
  strataBufFree(&it->ra);
  it->raOff = 0;
  it->pRaBudget = NULL;
  atomic_fetch_sub_explicit(&pB->nReadahead, n, memory_order_relaxed);
  atomic_fetch_add_explicit(&pB->nFreed, n, memory_order_relaxed);
  if (pB->pCache) strataCacheUnreserve(pB->pCache, n);
}

/* Read block (off, size) without the cache into the iterator's buffers,
** through the readahead window when scanning forward. */
static int sstIterReadBlock(SstIter *it, u64 off, u64 size, const u8 **pp, size_t *pn) {
  SstReader *r = it->r;
  size_t nRaw = (size_t)size + SST_TRAILER, nDec = 0, nWin = 0;
  const u8 *aRaw;
  int type, rc = STRATA_OK;
  if (r->pMap && !sstIterReadsAhead(it)) {
    /* A compressed block (sstIterFetch took uncompressed ones in place). */
    if ((rc = sstMappedRaw(r, off, size, &aRaw, &type)) != STRATA_OK) return rc;
    goto raw_verified;
  } else if (off >= it->raOff && off + nRaw <= it->raOff + it->ra.n) {
    aRaw = it->ra.a + (off - it->raOff);
  } else if (sstIterReadsAhead(it) &&
             (nWin = sstRaWindow(it, sstRaWant(it, off, nRaw), nRaw, &rc)) > 0) {
    /* Read a window of blocks starting here (ending here, backward),
    ** growing as the scan goes on. */
    u64 winOff = it->nForward >= 2 ? off : off + nRaw - nWin;
    size_t nRead = 0;
    if ((rc = strataFileRead(r->pFile, it->ra.a, nWin, winOff, &nRead)) != STRATA_OK)
      return rc;
    it->ra.n = nRead;
    it->raOff = winOff;
    if (nRead < off - winOff + nRaw) return sstCorrupt(r, off, "block truncated");
    aRaw = it->ra.a + (off - winOff);
  } else {
    if (rc) return rc;
    it->raw.n = 0;
    if ((rc = strataBufReserve(&it->raw, nRaw)) != STRATA_OK) return rc;
    if ((rc = sstReadRaw(r, off, size, it->raw.a, &type)) != STRATA_OK) return rc;
    aRaw = it->raw.a;
    goto raw_verified;
  }
  /* From the window or the mapping: verify as if just read. */
  if ((rc = sstCheckRaw(r, off, size, aRaw, &type)) != STRATA_OK) return rc;
raw_verified:
  if (type == SST_TYPE_NONE) {
    *pp = aRaw;
    *pn = (size_t)size;
    return STRATA_OK;
  }
  if ((rc = sstDecodedSize(r, off, type, aRaw, (size_t)size, &nDec)) != STRATA_OK) return rc;
  it->dec.n = 0;
  if ((rc = strataBufReserve(&it->dec, nDec)) != STRATA_OK) return rc;
  rc = strataDecompress(type, aRaw, (size_t)size, it->dec.a, nDec);
  if (rc) return sstWrapErr(r, rc, "block", off);
  *pp = it->dec.a;
  *pn = nDec;
  return STRATA_OK;
}

/* The handle of the data block the index iterator is on. With INDEX
** WINDOWS every index entry is a restart point, entry i restart i, whose
** handle was decoded and checked at open: it is taken from there when the
** current entry is its region's restart entry, as it always is then. */
static inline int sstIterHandle(const SstIter *it, u64 *pOff, u64 *pSize) {
  const SstReader *r = it->r;
  const BlockIter *ix = &it->index;
  u32 i = ix->iRestart;
  if (LIKELY(r->aIxOff != NULL) && i <= r->nIx &&
      strataGet32(ix->aRestart + 4 * (size_t)i) == ix->iCur) {
    *pOff = sstIxOff(r, i);
    *pSize = sstIxSize(r, i);
    return STRATA_OK;
  }
  return sstHandleDecode(r, ix->base.pVal, ix->base.nVal, pOff, pSize);
}

/* Load the data block the index iterator points at into it->data
** (unpositioned). Returns 0 on success, else the iterator has failed. */
static int sstIterLoadAt(SstIter *it, u64 off, u64 size, int rc);

static int sstIterLoad(SstIter *it) {
  u64 off = 0, size = 0;
  int rc = sstIterHandle(it, &off, &size);
  return sstIterLoadAt(it, off, size, rc);
}

/* Let go of the current block and pin data block (off, size) instead: a
** cache hit sets *ppBlk (its header and tail are only prefetched, for
** sstIterSetBlock to read), a block read from the file *pa and *pn.
** STRATA_OK or an error (then nothing is pinned). */
static int sstIterFetch(SstIter *it, u64 off, u64 size, const SstBlock **ppBlk, const u8 **pa,
                        size_t *pn) {
  SstReader *r = it->r;
  const u8 *a = NULL;
  size_t n = 0;
  int rc = STRATA_OK;
  sstUnpinBlock(r, &it->ref);
  it->bBlock = 0;
  *ppBlk = NULL;
  if (r->pMap && !sstIterReadsAhead(it)) {
    rc = sstMappedBlock(r, off, size, &a);
    if (rc != SST_NOT_IN_PLACE) {
      *pa = a;
      *pn = (size_t)size;
      return rc;
    }
    rc = STRATA_OK;
  }
  if (r->pCache) {
    CacheHandle *h = strataCacheLookup(r->pCache, r->id, off);
    if (h) {
      SstBlock *pBlk = strataCacheValue(h);
      sstPrefetchBlock(pBlk, size);
      it->ref.h = h;
      *ppBlk = pBlk;
      return STRATA_OK;
    }
    if (sstIterFills(it)) { /* read and inserted */
      rc = sstPinMissed(r, off, size, 1, &it->ref);
      a = it->ref.a;
      n = it->ref.n;
    }
  }
  if (rc == STRATA_OK && !a) rc = sstIterReadBlock(it, off, size, &a, &n);
  *pa = a;
  *pn = n;
  return rc;
}

/* Point the data iterator (unpositioned) at the block fetched from offset
** off (pBlk, or else a/n). Returns 0 on success, else the iterator has
** failed. */
static int sstIterSetBlock(SstIter *it, u64 off, const SstBlock *pBlk, const u8 *a, size_t n) {
  if (pBlk) {
    a = pBlk->a;
    n = pBlk->n;
  }
  strataBlockIterInit(&it->data, a, n);
  if (it->data.base.rc) {
    sstIterFail(it, sstWrapErr(it->r, it->data.base.rc, "data block", off));
    return 1;
  }
  it->bBlock = 1;
  it->blockOff = off;
  return 0;
}

/* Load data block (off, size) (rc: an error finding its handle, to fail
** with instead). */
static int sstIterLoadAt(SstIter *it, u64 off, u64 size, int rc) {
  const SstBlock *pBlk = NULL;
  const u8 *a = NULL;
  size_t n = 0;
  if (rc == STRATA_OK) {
    /* Already loaded: keep it, and the data iterator's position, which a
    ** Seek uses as a search hint. */
    if (it->bBlock && off == it->blockOff) return 0;
    rc = sstIterFetch(it, off, size, &pBlk, &a, &n);
  }
  if (rc) {
    sstIterFail(it, rc);
    return 1;
  }
  return sstIterSetBlock(it, off, pBlk, a, n);
}

/* Publish the data iterator's entry, or fail with an error it reports. */
static void sstIterPublish(SstIter *it) {
  if (it->data.base.rc) {
    sstIterFail(it, sstWrapErr(it->r, it->data.base.rc, "data block", it->blockOff));
    return;
  }
  it->base.bValid = it->data.base.bValid;
  it->base.pKey = it->data.base.pKey;
  it->base.nKey = it->data.base.nKey;
  it->base.pVal = it->data.base.pVal;
  it->base.nVal = it->data.base.nVal;
  it->base.bKeepOnPrev = strataBlockIterCanStepBack(&it->data);
}

/* The index iterator moved (or failed to). Returns 1 if it is positioned. */
static int sstIterIndexOk(SstIter *it) {
  if (it->index.base.bValid) return 1;
  /* Off either end: nothing to keep pinned, and no read-ahead to keep. The
  ** data iterator is not used again before a Seek* loads a block. */
  sstUnpinBlock(it->r, &it->ref);
  sstRaRelease(it);
  it->bBlock = 0;
  it->data.base.bValid = 0;
  if (it->index.base.rc)
    sstIterFail(it, sstWrapErr(it->r, it->index.base.rc, "index block", it->r->indexOff));
  else
    it->base.bValid = 0;
  return 0;
}

/* LAZY INDEX POSITION
** With index windows, a Seek finds the block's index entry and handle
** without the index iterator, and positions that only when the scan moves
** off the block: most seeks of a merge read a few entries of one block. */
static inline void sstIterIndexCatchUp(SstIter *it) {
  if (UNLIKELY(it->iIxPending)) {
    strataBlockIterSeekRestart(&it->index, it->iIxPending - 1);
    it->iIxPending = 0;
  }
}

/* While the data iterator is exhausted, move to the next block's first entry. */
static void sstIterSkipForward(SstIter *it) {
  while (!it->data.base.bValid && !it->data.base.rc) {
    sstIterIndexCatchUp(it);
    strataBlockIterNext(&it->index);
    if (!sstIterIndexOk(it)) return;
    it->nForward++;
    it->nBackward = 0;
    if (sstIterLoad(it)) return;
    strataBlockIterSeekFirst(&it->data);
  }
  sstIterPublish(it);
}

static void sstIterSkipBackward(SstIter *it) {
  while (!it->data.base.bValid && !it->data.base.rc) {
    sstIterIndexCatchUp(it);
    strataBlockIterPrev(&it->index);
    if (!sstIterIndexOk(it)) return;
    it->nForward = 0;
    it->nBackward++;
    if (sstIterLoad(it)) return;
    strataBlockIterSeekLast(&it->data);
  }
  sstIterPublish(it);
}

static void sstIterSeekFirst(StrataIter *p) {
  SstIter *it = (SstIter *)p;
  if (it->base.rc) return;
  it->nForward = it->nBackward = 0;
  it->iIxPending = 0;
  strataBlockIterSeekFirst(&it->index);
  if (!sstIterIndexOk(it) || sstIterLoad(it)) return;
  strataBlockIterSeekFirst(&it->data);
  sstIterSkipForward(it);
}

static void sstIterSeekLast(StrataIter *p) {
  SstIter *it = (SstIter *)p;
  if (it->base.rc) return;
  it->nForward = it->nBackward = 0;
  it->iIxPending = 0;
  strataBlockIterSeekLast(&it->index);
  if (!sstIterIndexOk(it) || sstIterLoad(it)) return;
  strataBlockIterSeekLast(&it->data);
  sstIterSkipBackward(it);
}

static void sstIterSeek(StrataIter *p, const u8 *pKey, size_t nKey) {
  SstIter *it = (SstIter *)p;
  const SstReader *r = it->r;
  if (it->base.rc) return;
  it->nForward = it->nBackward = 0;
  it->iIxPending = 0;
  if (r->aIxWindow) {
    u32 i = sstIxLowerBound(r, &it->index, pKey, nKey);
    if (!it->index.base.rc && i < r->nIx) {
      /* LAZY INDEX POSITION: the block of a windowed entry. */
      if (sstIterLoadAt(it, sstIxOff(r, i), sstIxSize(r, i), 0))
        return;
      it->iIxPending = i + 1;
      strataBlockIterSeek(&it->data, pKey, nKey);
      sstIterSkipForward(it);
      return;
    }
  }
  sstIndexSeek(r, &it->index, pKey, nKey);
  if (!sstIterIndexOk(it)) return;
  if (sstIterLoad(it)) return;
  strataBlockIterSeek(&it->data, pKey, nKey);
  sstIterSkipForward(it);
}

/* SEEKING SEVERAL TABLES
** A merging iterator seeks every table it merges, and each table's seek is
** a chain of dependent memory reads, most of them cache misses when seeks
** are random: the index windows, the cache's hash slot for the block, the
** cache entry, the block's header and its restart array (at its end), the
** restart keys, then the entries scanned. One table after the other, a
** seek waits for each miss in turn. strataSstIterSeekMany takes the tables
** through the chain in stages instead, and at each stage asks for what the
** next stage of every table will read before any of them reads it:
**
**   1. find the block in the index windows; prefetch its cache slot
**   2. pin the block (the cache lookup); prefetch its header and its tail,
**      where its restart array is
**   3. set up the block iterator; prefetch its restart entries
**   4. seek in the block, as sstIterSeek does.
**
** The caller's xDuring runs between stages 1 and 2, so that its own reads
** (a merging iterator seeks its memtables there) wait alongside the first
** prefetches.
**
** A table whose seek cannot take this path (no index windows, a key past
** the windowed entries, an error) is seeked by sstIterSeek in stage 4. The
** results, and every iterator's state, are those of xSeek on each. */
#define SST_SEEK_BATCH 16

/* Ask for the restart entries of the data iterator's block (unpositioned),
** as strataBlockIterSeek does itself for a block of few restarts. */
static void sstPrefetchRestarts(const BlockIter *d) {
  u32 i;
  if (d->nRestart > 16) return;
  for (i = 0; i < d->nRestart; i++) {
    u32 off = strataGet32(d->aRestart + 4 * (size_t)i);
    if (off < d->nLimit) __builtin_prefetch(d->aData + off);
  }
}

/* Ask for the lines of the restart region of fresh data iterator d that a
** seek of the internal key whose window is t (sstIkeyWindow(.., 0)) will
** scan: after the restart entries, the scan is the seek's other chain of
** misses. The region is found as strataBlockIterSeek finds it, by the last
** restart key below the target, but on the first 8 bytes of the keys only
** and reading just the common form of a restart entry (one-byte lengths,
** nothing shared): anything else, or windows that tie, stops the search
** where it is. Only a hint: it reads within the block and changes nothing. */
#define SST_REGION_PREFETCH 1024
static void sstPrefetchRegion(const BlockIter *d, u64 t) {
  const u8 *a = d->aData;
  u32 lo = 0, hi = d->nRestart - 1, start, end, o;
  while (lo < hi) {
    u32 mid = lo + (hi - lo + 1) / 2, off = strataGet32(d->aRestart + 4 * (size_t)mid);
    const u8 *p = a + off;
    u64 w;
    if (off >= d->nLimit || d->nLimit - off < 3 + 16 || (p[0] | p[1] | p[2]) >= 0x80 || p[0] != 0 ||
        p[1] < 16 || p[1] > d->nLimit - off - 3) {
      break; /* not the common form (user keys of 8 bytes or more) */
    }
    w = __builtin_bswap64(strataGet64(p + 3));
    if (w < t) {
      lo = mid;
    } else if (w > t) {
      hi = mid - 1;
    } else {
      break;
    }
  }
  start = strataGet32(d->aRestart + 4 * (size_t)lo);
  end = lo + 1 < d->nRestart ? strataGet32(d->aRestart + 4 * (size_t)(lo + 1)) : d->nLimit;
  if (end > d->nLimit) end = d->nLimit;
  if (start >= end) return;
  if (end - start > SST_REGION_PREFETCH) end = start + SST_REGION_PREFETCH;
  /* The region's first line was asked for with the restart entries. Two
  ** lines a round: the second may lie past the region, never past the
  ** block's end by a line (a prefetch there is harmless). */
  for (o = (start | 63) + 1; o < end; o += 128) {
    __builtin_prefetch(a + o);
    __builtin_prefetch((const void *)((uintptr_t)a + o + 64));
  }
}

static void sstSeekBatch(StrataIter **ap, int n, const u8 *pKey, size_t nKey,
                         void (*xDuring)(void *), void *pArg) {
  /* Per table: 1 + the window index of its block, 0 to seek it the plain
  ** way, or -1 once it has failed; and the block fetched by stage 2. */
  i64 aIx[SST_SEEK_BATCH];
  const SstBlock *apBlk[SST_SEEK_BATCH];
  const u8 *aA[SST_SEEK_BATCH];
  size_t aN[SST_SEEK_BATCH];
  u64 t = 0; /* the target's window, once needed */
  int i;
  for (i = 0; i < n; i++) {
    SstIter *it = (SstIter *)ap[i];
    const SstReader *r = it->r;
    u32 k;
    aIx[i] = 0;
    if (it->base.rc || !r->aIxWindow) continue;
    k = sstIxLowerBound(r, &it->index, pKey, nKey);
    if (it->index.base.rc || k >= r->nIx) continue;
    aIx[i] = (i64)k + 1;
    if (it->bBlock && it->blockOff == sstIxOff(r, k)) continue;
    if (r->pMap) { /* the trailer's type byte decides the path, first */
      __builtin_prefetch(r->pMap + sstIxOff(r, k) + sstIxSize(r, k));
      __builtin_prefetch(r->pMap + sstIxOff(r, k));
    } else if (r->pCache) {
      strataCachePrefetch(r->pCache, r->id, sstIxOff(r, k));
    }
  }
  if (xDuring) xDuring(pArg);
  for (i = 0; i < n; i++) {
    SstIter *it = (SstIter *)ap[i];
    u32 k;
    int rc;
    apBlk[i] = NULL;
    aA[i] = NULL;
    if (aIx[i] <= 0) continue;
    it->nForward = it->nBackward = 0;
    it->iIxPending = 0;
    k = (u32)(aIx[i] - 1);
    if (it->bBlock && it->blockOff == sstIxOff(it->r, k)) continue; /* kept, as sstIterLoadAt keeps it */
    rc = sstIterFetch(it, sstIxOff(it->r, k), sstIxSize(it->r, k), &apBlk[i], &aA[i], &aN[i]);
    if (rc) {
      sstIterFail(it, rc);
      aIx[i] = -1;
      apBlk[i] = NULL; /* a failed fetch may have set them */
      aA[i] = NULL;
    }
  }
  for (i = 0; i < n; i++) {
    SstIter *it = (SstIter *)ap[i];
    if (aIx[i] <= 0 || (!apBlk[i] && !aA[i])) continue;
    if (sstIterSetBlock(it, sstIxOff(it->r, (u32)(aIx[i] - 1)), apBlk[i], aA[i], aN[i])) {
      aIx[i] = -1;
      continue;
    }
    sstPrefetchRestarts(&it->data);
  }
  for (i = 0; i < n; i++) {
    if (aIx[i] > 0 && (apBlk[i] || aA[i])) {
      if (t == 0 && nKey >= STRATA_TRAILER) t = sstIkeyWindow(pKey, nKey - STRATA_TRAILER, 0);
      sstPrefetchRegion(&((SstIter *)ap[i])->data, t);
    }
  }
  for (i = 0; i < n; i++) {
    SstIter *it = (SstIter *)ap[i];
    if (aIx[i] > 0) {
      it->iIxPending = (u32)aIx[i];
      strataBlockIterSeek(&it->data, pKey, nKey);
      sstIterSkipForward(it);
    } else if (aIx[i] == 0) {
      sstIterSeek(&it->base, pKey, nKey);
    }
  }
}

void strataSstIterSeekMany(StrataIter **ap, int n, const u8 *pKey, size_t nKey,
                           void (*xDuring)(void *), void *pArg) {
  for (; n > SST_SEEK_BATCH; ap += SST_SEEK_BATCH, n -= SST_SEEK_BATCH) {
    sstSeekBatch(ap, SST_SEEK_BATCH, pKey, nKey, xDuring, pArg);
    xDuring = NULL;
  }
  sstSeekBatch(ap, n, pKey, nKey, xDuring, pArg);
}

/* Publish the entry of a data iterator that stepped within its block. */
static inline void sstIterCopyEntry(SstIter *it) {
  it->base.pKey = it->data.base.pKey;
  it->base.nKey = it->data.base.nKey;
  it->base.pVal = it->data.base.pVal;
  it->base.nVal = it->data.base.nVal;
}

/* A step that stayed inside the data block: publish its entry directly.
** Returns 0 (nothing published) if the block iterator ran off its block. */
static inline int sstIterTakeBlockEntry(SstIter *it) {
  if (!it->data.base.bValid) return 0;
  sstIterCopyEntry(it);
  return 1;
}

static void sstIterNext(StrataIter *p) {
  SstIter *it = (SstIter *)p;
  if (!it->base.bValid) return;
  /* A valid table iterator has a valid data iterator. */
  if (LIKELY(strataBlockIterStep(&it->data))) {
    sstIterCopyEntry(it);
    return;
  }
  strataBlockIterNext(&it->data);
  if (LIKELY(sstIterTakeBlockEntry(it))) return;
  sstIterSkipForward(it);
}

/* A step back stays in the block (and so keeps the current entry: KEPT
** ENTRIES in strataInt.h) only if it is a step in the reverse record. */
static void sstIterPrev(StrataIter *p) {
  SstIter *it = (SstIter *)p;
  if (!it->base.bValid) return;
  if (LIKELY(strataBlockIterStepBack(&it->data))) {
    sstIterCopyEntry(it);
    it->base.bKeepOnPrev = strataBlockIterCanStepBack(&it->data);
    return;
  }
  strataBlockIterPrev(&it->data);
  if (LIKELY(sstIterTakeBlockEntry(it))) {
    it->base.bKeepOnPrev = strataBlockIterCanStepBack(&it->data);
    return;
  }
  sstIterSkipBackward(it);
}

/* Free a closed iterator and its buffers. NULL is a no-op. */
static void sstIterFree(SstIter *it) {
  if (!it) return;
  strataBlockIterRelease(&it->index);
  strataBlockIterRelease(&it->data);
  strataBufFree(&it->raw);
  strataBufFree(&it->dec);
  sstRaRelease(it);
  strataBufFree(&it->ra);
  strataFreeMem(it);
}

static void sstIterClose(StrataIter *p) {
  SstIter *it = (SstIter *)p;
  SstSpare *s = &sstSpare;
  BlockCache *pHoldCache = it->pHoldCache;
  CacheHandle *pHold = it->pHold;
  sstUnpinBlock(it->r, &it->ref);
  sstRaRelease(it); /* back to the budget it was charged to */
  /* Keep it for the next strataSstIterNew of this thread, without a
  ** readahead window (up to SST_READAHEAD_MAX) that a point seek never uses. */
  if (s->pIter == NULL && sstSpareRegister(s)) {
    if (it->ra.nAlloc > SST_SPARE_LARGEST) strataBufFree(&it->ra);
    s->pIter = it;
  } else {
    sstIterFree(it);
  }
  /* Last: this may close the reader. */
  if (pHold) strataCacheRelease(pHoldCache, pHold);
}

/* Make pIter release h (pinned in c) when it is closed: the caller's pin
** on the table cache entry that keeps the reader open, so that no wrapper
** iterator is needed between the table iterator and its user. */
void strataSstIterHold(StrataIter *pIter, BlockCache *c, CacheHandle *h) {
  SstIter *it = (SstIter *)pIter;
  it->pHoldCache = c;
  it->pHold = h;
}

static const StrataIterMethods sstIterMethods = {sstIterSeekFirst, sstIterSeekLast, sstIterSeek,
                                                 sstIterNext,      sstIterPrev,     sstIterClose};

int strataSstIterIs(const StrataIter *p) { return p->pMethods == &sstIterMethods; }

int strataSstIterNew(SstReader *r, int bFillCache, StrataIter **ppIter) {
  SstSpare *s = &sstSpare;
  SstIter *it = s->pIter;
  *ppIter = NULL;
  if (it) {
    /* A stashed iterator: reset all but its buffers (and the BlockIters'
    ** buffers, which Init keeps). */
    s->pIter = NULL;
    memset(&it->base, 0, sizeof(it->base));
    it->bBlock = 0;
    it->blockOff = 0;
    memset(&it->ref, 0, sizeof(it->ref));
    it->raw.n = it->dec.n = it->ra.n = 0;
    it->raOff = 0;
    it->nForward = it->nBackward = 0;
    it->iIxPending = 0;
    it->pHoldCache = NULL;
    it->pHold = NULL;
  } else {
    it = strataMallocZero(sizeof(*it));
    if (!it) return strataErr(STRATA_NOMEM, "out of memory");
  }
  it->base.pMethods = &sstIterMethods;
  it->r = r;
  it->bFillCache = bFillCache;
  strataBlockIterInit(&it->index, r->aIndex, r->nIndex); /* checked at open */
  *ppIter = &it->base;
  return STRATA_OK;
}

/* ================================================================== */
/* VERIFY */

/* Read every data block from disk (not from the cache) and check its
** checksum and structure, that the blocks tile the data area, that keys
** increase across the table and sit between the index separators, that the
** filter admits every key, and that the properties match the contents.
** Returns STRATA_OK, STRATA_CORRUPT (message says what and where), an I/O
** error or STRATA_NOMEM. */
int strataSstVerify(SstReader *r) {
  const SstProps *pr = &r->props;
  BlockIter ix, dt;
  StrataBuf prevKey = {0}, prevSep = {0};
  u64 expectOff = 0, nEntries = 0, nBlocks = 0, nDeletes = 0, nRawKey = 0, nRawVal = 0;
  u64 minSeq = STRATA_MAX_SEQ, maxSeq = 0, off = 0, size = 0;
  u8 *pAlloc = NULL;
  const char *zWhy = NULL;
  int rc = STRATA_OK;
  ix.aKey = NULL;
  dt.aKey = NULL;
  strataBlockIterInit(&ix, r->aIndex, r->nIndex);
  for (strataBlockIterSeekFirst(&ix); ix.base.bValid; strataBlockIterNext(&ix)) {
    size_t n;
    u64 nInBlock;
    int bFirst = 1;
    if ((rc = sstHandleDecode(r, ix.base.pVal, ix.base.nVal, &off, &size)) != STRATA_OK) break;
    if (off != expectOff) {
      zWhy = "data blocks do not follow each other";
      break;
    }
    expectOff = off + size + SST_TRAILER;
    strataFreeMem(pAlloc);
    if ((rc = sstLoadOwned(r, off, size, &pAlloc, &n)) != STRATA_OK) break;
    if ((rc = strataBlockCheck(pAlloc, n, &nInBlock)) != STRATA_OK) {
      rc = sstWrapErr(r, rc, "data block", off);
      break;
    }
    if (nInBlock == 0) {
      zWhy = "empty data block";
      break;
    }
    strataBlockIterInit(&dt, pAlloc, n);
    for (strataBlockIterSeekFirst(&dt); dt.base.bValid; strataBlockIterNext(&dt)) {
      const u8 *k = dt.base.pKey;
      size_t nk = dt.base.nKey;
      u64 seq = strataIkeySeq(k, nk);
      if (nEntries > 0 && strataIkeyCompare(prevKey.a, prevKey.n, k, nk) >= 0) {
        zWhy = "keys out of order between blocks";
      } else if (strataIkeyCompare(k, nk, ix.base.pKey, ix.base.nKey) > 0) {
        zWhy = "key above its index separator";
      } else if (bFirst && nBlocks > 0 && strataIkeyCompare(k, nk, prevSep.a, prevSep.n) <= 0) {
        zWhy = "key not above the previous index separator";
      } else if (r->aFilter && !strataBloomMayContain(r->aFilter, r->nFilter,
                                                      strataBloomHash(k, nk - STRATA_TRAILER))) {
        zWhy = "filter does not admit a key of the table";
      }
      if (zWhy) break;
      if (nEntries == 0 && (pr->smallest.n != nk || memcmp(pr->smallest.a, k, nk) != 0)) {
        zWhy = "first key differs from the smallest key in the properties";
        break;
      }
      if ((rc = strataBufSet(&prevKey, k, nk)) != STRATA_OK) break;
      if (seq < minSeq) minSeq = seq;
      if (seq > maxSeq) maxSeq = seq;
      if (strataIkeyType(k, nk) == STRATA_TYPE_DELETE) nDeletes++;
      nRawKey += nk;
      nRawVal += dt.base.nVal;
      nEntries++;
      bFirst = 0;
    }
    if (rc == STRATA_OK && !zWhy && dt.base.rc) rc = sstWrapErr(r, dt.base.rc, "data block", off);
    if (rc || zWhy) break;
    if ((rc = strataBufSet(&prevSep, ix.base.pKey, ix.base.nKey)) != STRATA_OK) break;
    nBlocks++;
  }
  if (rc == STRATA_OK && !zWhy && ix.base.rc)
    rc = sstWrapErr(r, ix.base.rc, "index block", r->indexOff);
  if (rc == STRATA_OK && !zWhy) {
    off = expectOff;
    if (nEntries == 0) minSeq = 0;
    if (expectOff != r->nDataEnd)
      zWhy = "data blocks do not end where the metadata starts";
    else if (nEntries != pr->nEntries)
      zWhy = "entry count differs from the properties";
    else if (nBlocks != pr->nDataBlocks)
      zWhy = "block count differs from the properties";
    else if (nDeletes != pr->nDeletes)
      zWhy = "deletion count differs from the properties";
    else if (nRawKey != pr->nRawKeyBytes || nRawVal != pr->nRawValBytes) {
      zWhy = "raw sizes differ from the properties";
    } else if (minSeq != pr->minSeq || maxSeq != pr->maxSeq) {
      zWhy = "sequence range differs from the properties";
    } else if (prevKey.n != pr->largest.n ||
               (prevKey.n && memcmp(prevKey.a, pr->largest.a, prevKey.n))) {
      zWhy = "last key differs from the largest key in the properties";
    }
  }
  if (zWhy) rc = sstCorrupt(r, off, zWhy);
  strataFreeMem(pAlloc);
  strataBlockIterRelease(&ix);
  strataBlockIterRelease(&dt);
  strataBufFree(&prevKey);
  strataBufFree(&prevSep);
  return rc;
}
