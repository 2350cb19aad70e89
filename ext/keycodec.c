/*
** keycodec.c -- order-preserving key encoding and typed row encoding.
**
** KEY COMPONENTS
**
**   A primary key is the concatenation of one component per key column. Each
**   component starts with a type tag, and tags are ordered as SQLite orders
**   storage classes:
**
**     NULL     0x05
**     number   0x10  f:8  [r:2]
**     TEXT     0x20  escaped-bytes  0x00 0x01
**     BLOB     0x30  escaped-bytes  0x00 0x01
**
**   Numbers. INTEGER and REAL values share one encoding, so 1 and 1.0 are the
**   same key and 2 < 2.5 < 3. f is the largest double that is <= the value
**   (for a REAL, the value itself; -0.0 becomes +0.0), stored big-endian with
**   its bits transformed so that memcmp() order is numeric order: positive
**   doubles get the sign bit set, negative doubles are complemented. Doubles
**   of magnitude >= 2^53 are all integers, and an int64 there may not be a
**   double; for such f (and only such f) two more bytes r follow, big-endian,
**   holding value - f (0..1023). Equal f means both values have r, so the key
**   order is the numeric order and every int64 keeps its own place.
**
**   TEXT and BLOB. The bytes follow with each 0x00 written as 0x00 0xFF, then
**   the terminator 0x00 0x01. A terminator sorts below any continuation, so a
**   shorter string sorts before a longer one it is a prefix of ("a" < "a\0"
**   < "ab"), components concatenate without ambiguity, and the empty string
**   has a key of its own (0x20 0x00 0x01).
**
**   No component starts with 0x00 (free for metadata keys) or 0xFF, so
**   prefix||0xFF is greater than every key that starts with prefix.
**
** ROWS
**
**   row    := varint nField, varint mReal, header[nField], body[nField]
**   header := varint (nBody << 3 | code)   code: 0 NULL, 1 INTEGER (0..8 bytes,
**             little-endian two's complement, sign-extended; 0 bytes = 0),
**             2 REAL (8 bytes IEEE-754 little-endian), 3 TEXT, 4 BLOB.
**
**   mReal marks key columns (bit i = key column i) whose number was stored
**   as REAL although the key decodes it as INTEGER (a REAL 3.0 in a column
**   without affinity): the key cannot carry the storage class because 3 and
**   3.0 must be the same key. Parsing the header gives every field's offset
**   without decoding any value, so columns are decoded lazily.
*/
#include "keycodec.h"

#include <string.h>

/* 2^53 and 2^63 as doubles. */
#define TWO_POW_53 9007199254740992.0
#define TWO_POW_63 9223372036854775808.0

/* ---------------------------------------------------------------- varints */

int keycodecPutVarint(uint8_t *p, uint64_t v) {
  int i = 0;
  while (v >= 0x80) {
    p[i++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[i++] = (uint8_t)v;
  return i;
}

int keycodecVarintLen(uint64_t v) {
  int n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

int keycodecGetVarint(const uint8_t *p, const uint8_t *pEnd, uint64_t *pv) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 10 && p + i < pEnd; i++) {
    v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if ((p[i] & 0x80) == 0) {
      *pv = v;
      return i + 1;
    }
  }
  return 0;
}

/* keycodecGetVarint with the one- and two-byte forms inline: those are
** every row header of an ordinary row (a field of up to 2047 bytes), read
** for every row a scan returns. */
static inline int getVarintFast(const uint8_t *p, const uint8_t *pEnd, uint64_t *pv) {
  if (p < pEnd && p[0] < 0x80) {
    *pv = p[0];
    return 1;
  }
  if (p + 1 < pEnd && p[1] < 0x80) {
    *pv = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
    return 2;
  }
  return keycodecGetVarint(p, pEnd, pv);
}

/* ---------------------------------------------------------------- numbers */

static uint64_t doubleBits(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}

static double bitsDouble(uint64_t u) {
  double d;
  memcpy(&d, &u, 8);
  return d;
}

/* The next double below d (d finite and nonzero). */
static double doubleDown(double d) {
  uint64_t u = doubleBits(d);
  return bitsDouble(d > 0 ? u - 1 : u + 1);
}

/* Split a number into (f, r): f the largest double <= value, r = value - f,
** which is nonzero only for int64 values that are not doubles. */
static void numSplit(const KcValue *v, double *pf, int *pr) {
  if (v->eType == KC_INTEGER) {
    int64_t i = v->i;
    double d = (double)i; /* rounds to nearest: may be above i */
    if (d >= TWO_POW_63 || (int64_t)d > i) d = doubleDown(d);
    *pf = d;
    *pr = (int)(i - (int64_t)d);
  } else {
    double d = v->r;
    if (d == 0.0) d = 0.0; /* -0.0 == 0 */
    *pf = d;
    *pr = 0;
  }
}

static int hasRemainder(double f) { return f >= TWO_POW_53 || f <= -TWO_POW_53; }

int keycodecNumCompare(const KcValue *a, const KcValue *b) {
  double fa, fb;
  int ra, rb;
  numSplit(a, &fa, &ra);
  numSplit(b, &fb, &rb);
  if (fa < fb) return -1;
  if (fa > fb) return 1;
  return ra - rb;
}

static size_t numPut(uint8_t *p, const KcValue *v) {
  double f;
  int r;
  uint64_t u;
  numSplit(v, &f, &r);
  u = doubleBits(f);
  if (u >> 63) {
    u = ~u;
  } else {
    u |= (uint64_t)1 << 63;
  }
  p[0] = KC_TAG_NUM;
  u = __builtin_bswap64(u); /* big-endian on disk; the host is little-endian */
  memcpy(p + 1, &u, 8);
  if (!hasRemainder(f)) return 9;
  p[9] = (uint8_t)(r >> 8);
  p[10] = (uint8_t)r;
  return 11;
}

/* Decode the number at p (n bytes available). Returns bytes used or 0. */
static size_t numGet(const uint8_t *p, size_t n, KcValue *pOut) {
  uint64_t u = 0;
  double f;
  int r = 0;
  size_t nUsed = 9;
  if (n < 9) return 0;
  memcpy(&u, p + 1, 8);
  u = __builtin_bswap64(u); /* big-endian on disk; the host is little-endian */
  if (u >> 63) {
    u &= ~((uint64_t)1 << 63);
  } else {
    u = ~u;
  }
  f = bitsDouble(u);
  if (f != f) return 0; /* NaN is never written */
  if (hasRemainder(f)) {
    if (n < 11) return 0;
    r = (p[9] << 8) | p[10];
    nUsed = 11;
    if (r >= 1024 || (r && (f >= TWO_POW_63 || f < -TWO_POW_63))) return 0;
  }
  if (r) {
    pOut->eType = KC_INTEGER;
    pOut->i = (int64_t)f + r;
  } else if (f >= -TWO_POW_63 && f < TWO_POW_63 && (double)(int64_t)f == f) {
    pOut->eType = KC_INTEGER;
    pOut->i = (int64_t)f;
  } else {
    pOut->eType = KC_REAL;
    pOut->r = f;
  }
  return nUsed;
}

/* ---------------------------------------------------------------- strings */

static size_t strKeyLen(const uint8_t *z, size_t n) {
  size_t nZero = 0, i;
  for (i = 0; i < n; i++) nZero += (z[i] == 0);
  return 1 + n + nZero + 2;
}

static size_t strPut(uint8_t *p, int tag, const uint8_t *z, size_t n) {
  size_t i, j = 1;
  p[0] = (uint8_t)tag;
  for (i = 0; i < n; i++) {
    p[j++] = z[i];
    if (z[i] == 0) p[j++] = 0xFF;
  }
  p[j++] = 0x00;
  p[j++] = 0x01;
  return j;
}

/* Length of the string component at p, or 0 if malformed. Sets *pnBody to the
** unescaped length and *pbEsc if any escape is present. */
static size_t strSkip(const uint8_t *p, size_t n, size_t *pnBody, int *pbEsc) {
  size_t i = 1, nBody = 0;
  int bEsc = 0;
  while (i < n) {
    const uint8_t *pZero = memchr(p + i, 0, n - i);
    if (pZero == NULL || (size_t)(pZero - p) + 1 >= n) return 0;
    nBody += (size_t)(pZero - (p + i));
    i = (size_t)(pZero - p);
    if (p[i + 1] == 0x01) {
      if (pnBody) *pnBody = nBody;
      if (pbEsc) *pbEsc = bEsc;
      return i + 2;
    }
    if (p[i + 1] != 0xFF) return 0;
    bEsc = 1;
    nBody++;
    i += 2;
  }
  return 0;
}

/* ---------------------------------------------------------------- keys */

size_t keycodecKeyLen(const KcValue *v) {
  switch (v->eType) {
    case KC_REAL:
      if (v->r != v->r) return 1; /* NaN is stored as NULL */
      /* fall through */
    case KC_INTEGER: {
      double f;
      int r;
      numSplit(v, &f, &r);
      return hasRemainder(f) ? 11 : 9;
    }
    case KC_TEXT:
    case KC_BLOB:
      return strKeyLen(v->z, v->n);
    default:
      return 1;
  }
}

size_t keycodecKeyPut(uint8_t *p, const KcValue *v) {
  switch (v->eType) {
    case KC_INTEGER:
      return numPut(p, v);
    case KC_REAL:
      if (v->r != v->r) break;
      return numPut(p, v);
    case KC_TEXT:
      return strPut(p, KC_TAG_TEXT, v->z, v->n);
    case KC_BLOB:
      return strPut(p, KC_TAG_BLOB, v->z, v->n);
    default:
      break;
  }
  p[0] = KC_TAG_NULL;
  return 1;
}

size_t keycodecKeySkip(const uint8_t *p, size_t n) {
  KcValue v;
  if (n == 0) return 0;
  switch (p[0]) {
    case KC_TAG_NULL:
      return 1;
    case KC_TAG_NUM:
      return numGet(p, n, &v);
    case KC_TAG_TEXT:
    case KC_TAG_BLOB:
      return strSkip(p, n, NULL, NULL);
    default:
      return 0;
  }
}

int keycodecKeyGet(const uint8_t *p, size_t n, KcValue *pOut, int *pbEscaped) {
  size_t nBody = 0;
  int bEsc = 0;
  *pbEscaped = 0;
  if (n == 0) return 0;
  switch (p[0]) {
    case KC_TAG_NULL:
      pOut->eType = KC_NULL;
      return n == 1;
    case KC_TAG_NUM:
      return numGet(p, n, pOut) == n;
    case KC_TAG_TEXT:
    case KC_TAG_BLOB:
      if (strSkip(p, n, &nBody, &bEsc) != n) return 0;
      pOut->eType = p[0] == KC_TAG_TEXT ? KC_TEXT : KC_BLOB;
      pOut->z = p + 1;
      pOut->n = nBody;
      *pbEscaped = bEsc;
      return 1;
    default:
      return 0;
  }
}

void keycodecKeyUnescape(const uint8_t *p, size_t n, uint8_t *zOut) {
  size_t i = 1, j = 0;
  while (i + 2 < n) {
    zOut[j++] = p[i];
    i += (p[i] == 0) ? 2 : 1;
  }
}

/* ---------------------------------------------------------------- rows */

/* Bytes of the minimal sign-extended little-endian form of v. */
static int intBodyLen(int64_t v) {
  int n = 0;
  if (v == 0) return 0;
  for (n = 1; n < 8; n++) {
    int64_t lim = (int64_t)1 << (8 * n - 1);
    if (v >= -lim && v < lim) break;
  }
  return n;
}

static void fieldHeader(const KcValue *v, uint64_t *pHdr, size_t *pnBody) {
  size_t nBody = 0;
  int code;
  switch (v->eType) {
    case KC_INTEGER:
      code = KC_ROW_INT;
      nBody = (size_t)intBodyLen(v->i);
      break;
    case KC_REAL:
      if (v->r != v->r) {
        code = KC_ROW_NULL;
      } else {
        code = KC_ROW_REAL;
        nBody = 8;
      }
      break;
    case KC_TEXT:
      code = KC_ROW_TEXT;
      nBody = v->n;
      break;
    case KC_BLOB:
      code = KC_ROW_BLOB;
      nBody = v->n;
      break;
    default:
      code = KC_ROW_NULL;
      break;
  }
  *pHdr = ((uint64_t)nBody << 3) | (uint64_t)code;
  *pnBody = nBody;
}

size_t keycodecRowLen(int nField, const KcValue *aVal, uint64_t mReal) {
  size_t n = (size_t)keycodecVarintLen((uint64_t)nField) + (size_t)keycodecVarintLen(mReal);
  int i;
  for (i = 0; i < nField; i++) {
    uint64_t hdr;
    size_t nBody;
    fieldHeader(&aVal[i], &hdr, &nBody);
    n += (size_t)keycodecVarintLen(hdr) + nBody;
  }
  return n;
}

size_t keycodecRowPut(uint8_t *p, int nField, const KcValue *aVal, uint64_t mReal) {
  size_t j = 0;
  int i;
  j += (size_t)keycodecPutVarint(p + j, (uint64_t)nField);
  j += (size_t)keycodecPutVarint(p + j, mReal);
  for (i = 0; i < nField; i++) {
    uint64_t hdr;
    size_t nBody;
    fieldHeader(&aVal[i], &hdr, &nBody);
    j += (size_t)keycodecPutVarint(p + j, hdr);
  }
  for (i = 0; i < nField; i++) {
    const KcValue *v = &aVal[i];
    int k, nInt;
    uint64_t u;
    switch (v->eType) {
      case KC_INTEGER:
        nInt = intBodyLen(v->i);
        u = (uint64_t)v->i;
        for (k = 0; k < nInt; k++) p[j++] = (uint8_t)(u >> (8 * k));
        break;
      case KC_REAL:
        if (v->r != v->r) break;
        u = doubleBits(v->r);
        for (k = 0; k < 8; k++) p[j++] = (uint8_t)(u >> (8 * k));
        break;
      case KC_TEXT:
      case KC_BLOB:
        if (v->n) memcpy(p + j, v->z, v->n);
        j += v->n;
        break;
      default:
        break;
    }
  }
  return j;
}

/* Allowed body sizes of each field code, as [min, min + span] (one unsigned
** comparison): NULL 0, INTEGER 0..8, REAL 8, TEXT and BLOB any. */
static const uint64_t aBodyMin[KC_ROW_BLOB + 1] = {0, 0, 8, 0, 0};
static const uint64_t aBodySpan[KC_ROW_BLOB + 1] = {0, 8, 0, UINT64_MAX, UINT64_MAX};

int keycodecRowParse(const uint8_t *p, size_t n, int nMax, KcField *aField, int *pnField,
                     uint64_t *pmReal) {
  const uint8_t *pEnd = p + n;
  const uint8_t *q;
  uint64_t nField, mReal, nBodyTotal = 0;
  uint32_t iHdrEnd;
  int k, m, nStore;
  /* Every row a scan returns is parsed here, so the usual one-byte field
  ** count and real mask are read without the general varint reader. */
  if (n >= 2 && p[0] < 0x80 && p[1] < 0x80) {
    nField = p[0];
    mReal = p[1];
    q = p + 2;
  } else {
    m = getVarintFast(p, pEnd, &nField);
    if (m == 0 || nField > 65536) return 0;
    q = p + m;
    m = getVarintFast(q, pEnd, &mReal);
    if (m == 0) return 0;
    q += m;
  }
  /* One pass over the headers: offsets are relative to the first body until
  ** the end of the headers, where the bodies start, is known. */
  for (k = 0; k < (int)nField; k++) {
    uint64_t hdr, nBody;
    int code;
    if (q < pEnd && q[0] < 0x80) {
      hdr = *q++;
    } else {
      m = getVarintFast(q, pEnd, &hdr);
      if (m == 0) return 0;
      q += m;
    }
    code = (int)(hdr & 7);
    nBody = hdr >> 3;
    if (code > KC_ROW_BLOB || nBody - aBodyMin[code] > aBodySpan[code]) return 0;
    if (k < nMax) {
      aField[k].iOff = (uint32_t)nBodyTotal;
      aField[k].nBody = (uint32_t)nBody;
      aField[k].eCode = (uint8_t)code;
    }
    nBodyTotal += nBody;
    if (nBodyTotal > n) return 0;
  }
  iHdrEnd = (uint32_t)(q - p);
  if (iHdrEnd + nBodyTotal != n) return 0;
  nStore = (int)nField < nMax ? (int)nField : nMax;
  for (k = 0; k < nStore; k++) aField[k].iOff += iHdrEnd;
  *pnField = (int)nField;
  *pmReal = mReal;
  return (int)iHdrEnd;
}

void keycodecRowValue(const uint8_t *p, const KcField *pField, KcValue *pOut) {
  const uint8_t *b = p + pField->iOff;
  uint64_t u = 0;
  int k;
  switch (pField->eCode) {
    case KC_ROW_INT:
      for (k = (int)pField->nBody - 1; k >= 0; k--) u = (u << 8) | b[k];
      if (pField->nBody > 0 && pField->nBody < 8 && (b[pField->nBody - 1] & 0x80)) {
        u |= ~(uint64_t)0 << (8 * pField->nBody);
      }
      pOut->eType = KC_INTEGER;
      pOut->i = (int64_t)u;
      break;
    case KC_ROW_REAL:
      for (k = 7; k >= 0; k--) u = (u << 8) | b[k];
      pOut->eType = KC_REAL;
      pOut->r = bitsDouble(u);
      break;
    case KC_ROW_TEXT:
    case KC_ROW_BLOB:
      pOut->eType = pField->eCode == KC_ROW_TEXT ? KC_TEXT : KC_BLOB;
      pOut->z = b;
      pOut->n = pField->nBody;
      break;
    default:
      pOut->eType = KC_NULL;
      break;
  }
}

/* ---------------------------------------------------------------- text */

/* SQLite's notion of white space around numbers. */
static int isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int isDigit(char c) { return c >= '0' && c <= '9'; }

int keycodecTextNumeric(const char *z, size_t n) {
  size_t i = 0;
  int nDigit = 0, eType = 1;
  while (i < n && isSpace(z[i])) i++;
  if (i < n && (z[i] == '+' || z[i] == '-')) i++;
  while (i < n && isDigit(z[i])) {
    i++;
    nDigit++;
  }
  if (i < n && z[i] == '.') {
    eType = 2;
    i++;
    while (i < n && isDigit(z[i])) {
      i++;
      nDigit++;
    }
  }
  if (nDigit == 0) return 0;
  if (i < n && (z[i] == 'e' || z[i] == 'E')) {
    int nExp = 0;
    eType = 2;
    i++;
    if (i < n && (z[i] == '+' || z[i] == '-')) i++;
    while (i < n && isDigit(z[i])) {
      i++;
      nExp++;
    }
    if (nExp == 0) return 0;
  }
  while (i < n && isSpace(z[i])) i++;
  return i == n ? eType : 0;
}

int keycodecTextInt64(const char *z, size_t n, int64_t *pv) {
  size_t i = 0;
  int bNeg = 0;
  uint64_t u = 0;
  while (i < n && isSpace(z[i])) i++;
  if (i < n && (z[i] == '+' || z[i] == '-')) bNeg = (z[i++] == '-');
  while (i < n && z[i] == '0') i++;
  for (; i < n && isDigit(z[i]); i++) {
    uint64_t d = (uint64_t)(z[i] - '0');
    if (u > (UINT64_MAX - d) / 10) return 0;
    u = u * 10 + d;
  }
  if (bNeg) {
    if (u > (uint64_t)1 << 63) return 0;
    *pv = (u == (uint64_t)1 << 63) ? INT64_MIN : -(int64_t)u;
  } else {
    if (u > (uint64_t)INT64_MAX) return 0;
    *pv = (int64_t)u;
  }
  return 1;
}
