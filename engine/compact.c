/* compact.c -- placeholder: leveled compaction lands with its own change. */
#include "strataInt.h"

int strataCompactPick(strata *db) {
  (void)db;
  return 0;
}

void strataCompactRun(strata *db) { (void)db; }

int strata_compact_range(strata *db, const void *lo, size_t nLo, const void *hi, size_t nHi) {
  (void)lo; (void)nLo; (void)hi; (void)nHi;
  return strata_flush(db);
}
