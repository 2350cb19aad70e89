/*
** crc32c.c -- CRC-32C (Castagnoli polynomial 0x82F63B78).
**
** Uses the SSE4.2 crc32 instruction when the CPU has it (checked once), and
** a slicing-by-8 table otherwise. Every checksum in every strata file is a
** masked CRC-32C (strataCrcMask) of the bytes it covers.
*/
#include "strataInt.h"

static u32 aTable[8][256];
static _Atomic int eImpl; /* 0 unknown, 1 table, 2 hardware */

static void crcInitTable(void) {
  u32 i, j;
  for (i = 0; i < 256; i++) {
    u32 c = i;
    for (j = 0; j < 8; j++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    aTable[0][i] = c;
  }
  for (i = 0; i < 256; i++) {
    for (j = 1; j < 8; j++) aTable[j][i] = (aTable[j - 1][i] >> 8) ^ aTable[0][aTable[j - 1][i] & 0xff];
  }
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
__attribute__((target("sse4.2"))) static u32 crcHardware(u32 crc, const u8 *p, size_t n) {
  u64 c = crc;
  while (n && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((u32)c, *p++);
    n--;
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
    crcInitTable();
    impl = 1;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) impl = 2;
#endif
    atomic_store_explicit(&eImpl, impl, memory_order_release);
  }
  crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
  if (impl == 2) return ~crcHardware(crc, p, n);
#endif
  return ~crcSoftware(crc, p, n);
}
