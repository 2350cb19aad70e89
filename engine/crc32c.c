/*
** crc32c.c -- CRC-32C (Castagnoli polynomial 0x82F63B78).
**
** Uses the SSE4.2 crc32 instruction when the CPU has it (checked once), and
** a slicing-by-8 table otherwise. Every checksum in every strata file is a
** masked CRC-32C (strataCrcMask) of the bytes it covers.
**
** THREE STREAMS
**
** The crc32 instruction takes 3 cycles but a new one can start every
** cycle, so a single dependent chain runs at a third of the possible speed.
** Long buffers (a 4 KiB block is the common case) are therefore cut into
** three consecutive lanes of L bytes whose CRCs are computed side by side,
** the second and third from a zero register. The register update is linear
** over GF(2), so
**
**   crc(s, A B) = shift_L(crc(s, A)) ^ crc(0, B)      (|B| = L)
**
** where shift_L(s) = crc(s, L zero bytes) is itself linear in s: it is a
** 32x32 bit matrix, applied as four 256-entry tables (one per byte of s)
** built once at startup. Rounds use L = 1024 while 3 KiB remain, then
** L = 336 (so that a 4 KiB block plus its trailer leaves only a few words
** over), then L = 64; the rest (under 192 bytes) goes through the single
** chain.
*/
#include "strataInt.h"

#include <pthread.h>

static u32 aTable[8][256];
static _Atomic int eImpl; /* 0 unknown, 1 table, 2 hardware */
static pthread_once_t crcOnce = PTHREAD_ONCE_INIT;

#define CRC_LONG 1024 /* lane length of long rounds */
#define CRC_MID 336   /* lane length of middle rounds */
#define CRC_SHORT 64  /* lane length of short rounds */
static u32 aShiftLong[4][256];  /* shift_CRC_LONG, by byte of the register */
static u32 aShiftMid[4][256];   /* shift_CRC_MID */
static u32 aShiftShort[4][256]; /* shift_CRC_SHORT */

/* The raw register after n zero bytes, bit at a time via the byte table. */
static u32 crcZeros(u32 c, size_t n) {
  while (n--) c = (c >> 8) ^ aTable[0][c & 0xff];
  return c;
}

/* Fill a[k][b] with shift_n(b << 8k): shift_n is linear, so each entry is
** the XOR of the images of its set bits. */
static void crcInitShift(u32 a[4][256], size_t n) {
  u32 aBit[32];
  int k, b, i;
  for (i = 0; i < 32; i++) aBit[i] = crcZeros((u32)1 << i, n);
  for (k = 0; k < 4; k++) {
    for (b = 0; b < 256; b++) {
      u32 v = 0;
      for (i = 0; i < 8; i++) {
        if (b & (1 << i)) v ^= aBit[8 * k + i];
      }
      a[k][b] = v;
    }
  }
}

static inline u32 crcShift(const u32 a[4][256], u32 c) {
  return a[0][c & 0xff] ^ a[1][(c >> 8) & 0xff] ^ a[2][(c >> 16) & 0xff] ^ a[3][c >> 24];
}

static void crcInit(void) {
  u32 i, j;
  int impl = 1;
  for (i = 0; i < 256; i++) {
    u32 c = i;
    for (j = 0; j < 8; j++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    aTable[0][i] = c;
  }
  for (i = 0; i < 256; i++) {
    for (j = 1; j < 8; j++) aTable[j][i] = (aTable[j - 1][i] >> 8) ^ aTable[0][aTable[j - 1][i] & 0xff];
  }
  crcInitShift(aShiftLong, CRC_LONG);
  crcInitShift(aShiftMid, CRC_MID);
  crcInitShift(aShiftShort, CRC_SHORT);
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) impl = 2;
#endif
  atomic_store_explicit(&eImpl, impl, memory_order_release);
}

static u32 crcSoftware(u32 crc, const u8 *p, size_t n) {
  while (n && ((uintptr_t)p & 7)) {
    crc = (crc >> 8) ^ aTable[0][(crc ^ *p++) & 0xff];
    n--;
  }
  while (n >= 8) {
    u64 w = strataGet64(p) ^ crc;
    crc = aTable[7][w & 0xff] ^ aTable[6][(w >> 8) & 0xff] ^ aTable[5][(w >> 16) & 0xff] ^
          aTable[4][(w >> 24) & 0xff] ^ aTable[3][(w >> 32) & 0xff] ^
          aTable[2][(w >> 40) & 0xff] ^ aTable[1][(w >> 48) & 0xff] ^ aTable[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ aTable[0][(crc ^ *p++) & 0xff];
  return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* Three lanes of nLane bytes (a multiple of 8) from p, continuing register
** c; aShift is shift_nLane. Returns the register after all 3 * nLane. */
__attribute__((target("sse4.2"))) static inline u64 crcRound(u64 c, const u8 *p, size_t nLane,
                                                             const u32 aShift[4][256]) {
  u64 c1 = 0, c2 = 0;
  const u8 *pEnd = p + nLane;
  for (; p < pEnd; p += 8) {
    c = __builtin_ia32_crc32di(c, strataGet64(p));
    c1 = __builtin_ia32_crc32di(c1, strataGet64(p + nLane));
    c2 = __builtin_ia32_crc32di(c2, strataGet64(p + 2 * nLane));
  }
  c = crcShift(aShift, (u32)c) ^ (u32)c1;
  return crcShift(aShift, (u32)c) ^ (u32)c2;
}

__attribute__((target("sse4.2"))) static u32 crcHardware(u32 crc, const u8 *p, size_t n) {
  u64 c = crc;
  while (n && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((u32)c, *p++);
    n--;
  }
  while (n >= 3 * CRC_LONG) {
    c = crcRound(c, p, CRC_LONG, aShiftLong);
    p += 3 * CRC_LONG;
    n -= 3 * CRC_LONG;
  }
  while (n >= 3 * CRC_MID) {
    c = crcRound(c, p, CRC_MID, aShiftMid);
    p += 3 * CRC_MID;
    n -= 3 * CRC_MID;
  }
  while (n >= 3 * CRC_SHORT) {
    c = crcRound(c, p, CRC_SHORT, aShiftShort);
    p += 3 * CRC_SHORT;
    n -= 3 * CRC_SHORT;
  }
  while (n >= 8) {
    c = __builtin_ia32_crc32di(c, strataGet64(p));
    p += 8;
    n -= 8;
  }
  while (n--) c = __builtin_ia32_crc32qi((u32)c, *p++);
  return (u32)c;
}
#endif

u32 strataCrc32c(u32 crc, const void *pData, size_t n) {
  const u8 *p = pData;
  int impl = atomic_load_explicit(&eImpl, memory_order_acquire);
  if (UNLIKELY(impl == 0)) {
    pthread_once(&crcOnce, crcInit);
    impl = atomic_load_explicit(&eImpl, memory_order_acquire);
  }
  crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
  if (impl == 2) return ~crcHardware(crc, p, n);
#endif
  return ~crcSoftware(crc, p, n);
}

/* Test hook: the software CRC, whatever the CPU has. */
u32 strataCrc32cSoftware(u32 crc, const void *pData, size_t n) {
  pthread_once(&crcOnce, crcInit);
  return ~crcSoftware(~crc, pData, n);
}
