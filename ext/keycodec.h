/*
** keycodec.h -- order-preserving key encoding and typed row encoding for the
** strata SQLite extension.
**
** OVERVIEW
**
**   The engine stores byte strings ordered by memcmp(). The extension turns
**   the primary key of a row into such a string so that byte order equals
**   SQLite's order for the same values (NULL < numbers < TEXT < BLOB, numbers
**   compared by value whatever their storage class, TEXT and BLOB bytewise),
**   and turns the other columns into a compact typed record. doc/FORMAT.md
**   ("SQL key and row encoding") is the authoritative description.
**
**   This file has no SQLite dependency: values are passed as KcValue, whose
**   type codes equal SQLite's (SQLITE_INTEGER == KC_INTEGER and so on).
**   Nothing here allocates: encoders write into caller buffers whose size the
**   caller obtains from the matching *Len() function first.
*/
#ifndef STRATA_KEYCODEC_H
#define STRATA_KEYCODEC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Value types: the same numbers as SQLite's fundamental datatypes. */
#define KC_INTEGER 1
#define KC_REAL 2
#define KC_TEXT 3
#define KC_BLOB 4
#define KC_NULL 5

/* The first byte of every encoded key value (a type tag). Row keys start with
** one of these, so byte 0x00 is free for table metadata, which therefore
** sorts before every row. KC_KEY_AFTER never starts a value: appended to an
** encoded prefix it gives a string greater than every key with that prefix. */
#define KC_TAG_META 0x00
#define KC_TAG_NULL 0x05
#define KC_TAG_NUM 0x10
#define KC_TAG_TEXT 0x20
#define KC_TAG_BLOB 0x30
#define KC_KEY_AFTER 0xFF

/* Largest encoded size of one numeric key value. */
#define KC_NUM_MAXLEN 11

/* A value handed to or returned by the codec. For TEXT and BLOB, z/n point at
** the bytes (not NUL-terminated); nothing is owned. */
typedef struct KcValue KcValue;
struct KcValue {
  int eType;        /* KC_INTEGER .. KC_NULL */
  int64_t i;        /* KC_INTEGER */
  double r;         /* KC_REAL */
  const uint8_t *z; /* KC_TEXT, KC_BLOB */
  size_t n;
};

/* ---------------------------------------------------------------- keys */

/* Bytes needed to encode v as one key component. */
size_t keycodecKeyLen(const KcValue *v);

/* Encode v at p (keycodecKeyLen(v) bytes available). Returns bytes written.
** A REAL NaN is encoded as NULL (SQLite never stores NaN). */
size_t keycodecKeyPut(uint8_t *p, const KcValue *v);

/* Length of the key component starting at p (at most n bytes), or 0 if the
** bytes there are not a well-formed component (corruption). */
size_t keycodecKeySkip(const uint8_t *p, size_t n);

/* Decode the key component at p[0..n) (its full length, as returned by
** keycodecKeySkip). On success returns 1 and fills *pOut. Numbers come back
** as KC_INTEGER when integral and inside the int64 range, KC_REAL otherwise.
** For TEXT and BLOB, if the component contains no escaped zero byte, pOut->z
** points into p; otherwise *pbEscaped is set, pOut->n is the unescaped length
** and the caller unescapes with keycodecKeyUnescape(). Returns 0 on
** malformed input. */
int keycodecKeyGet(const uint8_t *p, size_t n, KcValue *pOut, int *pbEscaped);

/* Write the unescaped body of the TEXT or BLOB component p[0..n) to zOut
** (pOut->n bytes as returned by keycodecKeyGet). */
void keycodecKeyUnescape(const uint8_t *p, size_t n, uint8_t *zOut);

/* The common case of keycodecKeyGet, inline for the scans that decode the
** key of every row: if p[0..n) is a 9-byte number component holding an
** integer of magnitude below 2^53, store it in *piOut and return 1 (exactly
** what keycodecKeyGet gives). Returns 0 for anything else (a REAL, a number
** of 11 bytes, another type, malformed bytes): the caller asks
** keycodecKeyGet then. Assumes a little-endian host, as keycodec.c. */
static inline int keycodecKeyGetSmallInt(const uint8_t *p, size_t n, int64_t *piOut) {
  uint64_t u;
  double f;
  int64_t i;
  if (n != 9 || p[0] != KC_TAG_NUM) return 0;
  memcpy(&u, p + 1, 8);
  u = __builtin_bswap64(u);
  u = (u >> 63) ? u & ~((uint64_t)1 << 63) : ~u;
  memcpy(&f, &u, 8);
  if (!(f > -9007199254740992.0 && f < 9007199254740992.0)) return 0; /* NaN fails too */
  i = (int64_t)f;
  if ((double)i != f) return 0;
  *piOut = i;
  return 1;
}

/* Number-only helpers, exported for tests: compare two values the way SQLite
** compares numbers (exactly, integers against reals included). Returns <0, 0
** or >0. Both values must be KC_INTEGER or KC_REAL (not NaN). */
int keycodecNumCompare(const KcValue *a, const KcValue *b);

/* ---------------------------------------------------------------- rows */

/* One field of a parsed row: where its body is and what it holds. */
typedef struct KcField KcField;
struct KcField {
  uint32_t iOff;  /* offset of the body from the start of the row */
  uint32_t nBody; /* bytes in the body */
  uint8_t eCode;  /* KC_ROW_* */
};

/* Field codes in the row header (low 3 bits of each field header varint). */
#define KC_ROW_NULL 0
#define KC_ROW_INT 1
#define KC_ROW_REAL 2
#define KC_ROW_TEXT 3
#define KC_ROW_BLOB 4

/* Bytes needed for a row of nField values with key-real mask mReal. */
size_t keycodecRowLen(int nField, const KcValue *aVal, uint64_t mReal);

/* Encode the row at p (keycodecRowLen() bytes). Returns bytes written. */
size_t keycodecRowPut(uint8_t *p, int nField, const KcValue *aVal, uint64_t mReal);

/* Parse the row header of p[0..n): store the number of fields in *pnField,
** the key-real mask in *pmReal and up to nMax field descriptors in aField
** (fields beyond nMax are checked but not stored). Returns the length of the
** header (the field count, the mask and the field headers; at least 2) on
** success, 0 if the row is malformed. Does not decode any value. The result
** depends only on n and the header bytes. */
int keycodecRowParse(const uint8_t *p, size_t n, int nMax, KcField *aField, int *pnField,
                     uint64_t *pmReal);

/* Decode one parsed field of row p into *pOut (TEXT/BLOB point into p). */
void keycodecRowValue(const uint8_t *p, const KcField *pField, KcValue *pOut);

/* ---------------------------------------------------------------- text */

/* Classify UTF-8 text the way SQLite decides whether text "looks like a
** number" when it applies numeric affinity: returns 1 if z[0..n) is an
** integer literal (optional surrounding whitespace and sign), 2 if it is a
** real literal (decimal point and/or exponent), 0 if it is not a number. */
int keycodecTextNumeric(const char *z, size_t n);

/* Parse an integer literal (as classified 1 above) exactly. Returns 1 and
** sets *pv if it fits in int64, 0 if it does not. */
int keycodecTextInt64(const char *z, size_t n, int64_t *pv);

/* ---------------------------------------------------------------- varints */

/* LEB128, as the engine. Put returns bytes written (<= 10); Get returns bytes
** read, or 0 if the varint is truncated or longer than 10 bytes. */
int keycodecPutVarint(uint8_t *p, uint64_t v);
int keycodecVarintLen(uint64_t v);
int keycodecGetVarint(const uint8_t *p, const uint8_t *pEnd, uint64_t *pv);

#endif /* STRATA_KEYCODEC_H */
