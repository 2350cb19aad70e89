/*
** test_version.c -- version edits, versions, the manifest and CURRENT.
*/
#include "strataInt.h"
#include "testutil.h"

static FileMeta *mkFile(u64 number, const char *zLo, const char *zHi, u64 seq) {
  FileMeta *f = strataFileMetaNew();
  f->number = number;
  f->size = 1000 + number;
  f->minSeq = seq;
  f->maxSeq = seq + 10;
  f->nEntries = 7;
  f->nDeletes = 1;
  strataIkeyBuild(&f->smallest, (const u8 *)zLo, strlen(zLo), seq + 10, STRATA_TYPE_VALUE);
  strataIkeyBuild(&f->largest, (const u8 *)zHi, strlen(zHi), seq, STRATA_TYPE_VALUE);
  return f;
}

static void test_filenames(void) {
  u64 n;
  char *z = strataFileName("d", STRATA_FILE_SST, 42);
  CHECK(z && !strcmp(z, "d/000042.sst"));
  strataFreeMem(z);
  CHECK_EQ(strataParseFileName("000042.sst", &n), STRATA_FILE_SST);
  CHECK_EQ(n, 42);
  CHECK_EQ(strataParseFileName("1234567.log", &n), STRATA_FILE_WAL);
  CHECK_EQ(n, 1234567);
  CHECK_EQ(strataParseFileName("MANIFEST-000003", &n), STRATA_FILE_MANIFEST);
  CHECK_EQ(n, 3);
  CHECK_EQ(strataParseFileName("CURRENT", &n), STRATA_FILE_CURRENT);
  CHECK_EQ(strataParseFileName("LOCK", &n), STRATA_FILE_LOCK);
  CHECK_EQ(strataParseFileName("000009.tmp", &n), STRATA_FILE_TEMP);
  CHECK_EQ(strataParseFileName("foo.sst", &n), 0);
  CHECK_EQ(strataParseFileName("12.sstx", &n), 0);
  CHECK_EQ(strataParseFileName("MANIFEST-", &n), 0);
  CHECK_EQ(strataParseFileName("", &n), 0);
  CHECK_EQ(strataParseFileName("99999999999999999999999.log", &n), 0);
}

static void test_edit_roundtrip(void) {
  VersionEdit e, d;
  StrataBuf b = {0};
  FileMeta *f1 = mkFile(5, "apple", "mango", 100), *f2 = mkFile(9, "", "zzz", 7);
  strataEditInit(&e);
  e.bLogNumber = 1;
  e.logNumber = 77;
  e.bNextFile = 1;
  e.nextFile = 123;
  e.bLastSeq = 1;
  e.lastSeq = 999999999999ull;
  CHECK_EQ(strataEditAddFile(&e, 0, f1), STRATA_OK);
  CHECK_EQ(strataEditAddFile(&e, 3, f2), STRATA_OK);
  CHECK_EQ(strataEditDelFile(&e, 2, 44), STRATA_OK);
  CHECK_EQ(strataEditEncode(&e, &b), STRATA_OK);
  CHECK_EQ(strataEditDecode(&d, b.a, b.n), STRATA_OK);
  CHECK(d.bLogNumber && d.logNumber == 77);
  CHECK(d.bNextFile && d.nextFile == 123);
  CHECK(d.bLastSeq && d.lastSeq == 999999999999ull);
  CHECK_EQ(d.nAdd, 2);
  CHECK_EQ(d.nDel, 1);
  if (d.nAdd == 2) {
    FileMeta *g = d.aAdd[1].pMeta;
    CHECK_EQ(d.aAdd[1].level, 3);
    CHECK_EQ(g->number, 9);
    CHECK_EQ(g->size, 1009);
    CHECK_EQ(g->minSeq, 7);
    CHECK_EQ(g->maxSeq, 17);
    CHECK_EQ(g->nEntries, 7);
    CHECK_EQ(g->nDeletes, 1);
    CHECK(g->smallest.n == f2->smallest.n && !memcmp(g->smallest.a, f2->smallest.a, g->smallest.n));
    CHECK(g->largest.n == f2->largest.n && !memcmp(g->largest.a, f2->largest.a, g->largest.n));
  }
  CHECK(d.nDel == 1 && d.aDel[0].level == 2 && d.aDel[0].number == 44);
  strataEditClear(&d);
  /* Every truncation is rejected or parses a prefix; never reads past the end. */
  {
    size_t n;
    int nBad = 0;
    for (n = 0; n < b.n; n++) {
      u8 *a = malloc(n + 1);
      memcpy(a, b.a, n);
      if (strataEditDecode(&d, a, n) == STRATA_OK) {
        strataEditClear(&d);
      } else {
        nBad++;
      }
      free(a);
    }
    CHECK(nBad > 0);
  }
  /* Unknown tag. */
  {
    u8 a[2] = {99, 1};
    CHECK_EQ(strataEditDecode(&d, a, 2), STRATA_CORRUPT);
  }
  strataEditClear(&e);
  strataFileMetaUnref(f1);
  strataFileMetaUnref(f2);
  strataBufFree(&b);
}

static void test_apply_and_check(void) {
  VersionEdit e;
  Version *v1 = NULL, *v2 = NULL, *v3 = NULL;
  FileMeta *a = mkFile(10, "a", "c", 1), *b = mkFile(11, "d", "f", 1), *c = mkFile(12, "b", "z", 1);
  FileMeta *l0a = mkFile(20, "a", "z", 50), *l0b = mkFile(21, "a", "z", 60);
  strataEditInit(&e);
  strataEditAddFile(&e, 1, b);
  strataEditAddFile(&e, 1, a);
  strataEditAddFile(&e, 0, l0b);
  strataEditAddFile(&e, 0, l0a);
  CHECK_EQ(strataVersionApply(NULL, &e, &v1), STRATA_OK);
  strataEditClear(&e);
  if (v1) {
    CHECK_EQ(v1->nFile[1], 2);
    CHECK_EQ(v1->aFile[1][0]->number, 10); /* sorted by smallest key */
    CHECK_EQ(v1->nFile[0], 2);
    CHECK_EQ(v1->aFile[0][0]->number, 20); /* L0 by number */
    CHECK_EQ(strataVersionLevelBytes(v1, 1), 1010 + 1011);
  }
  /* Overlap in L1 is refused. */
  strataEditInit(&e);
  strataEditAddFile(&e, 1, c);
  CHECK_EQ(strataVersionApply(v1, &e, &v2), STRATA_CORRUPT);
  CHECK(v2 == NULL);
  strataEditClear(&e);
  /* Delete + add. */
  strataEditInit(&e);
  strataEditDelFile(&e, 1, 10);
  strataEditDelFile(&e, 1, 11);
  strataEditAddFile(&e, 1, c);
  CHECK_EQ(strataVersionApply(v1, &e, &v3), STRATA_OK);
  if (v3) {
    CHECK_EQ(v3->nFile[1], 1);
    CHECK_EQ(v3->aFile[1][0]->number, 12);
    CHECK_EQ(v3->nFile[0], 2);
  }
  strataEditClear(&e);
  /* v1 keeps its files alive after v3 exists. */
  if (v1) CHECK_EQ(v1->aFile[1][0]->number, 10);
  strataVersionUnref(v1);
  strataVersionUnref(v3);
  strataFileMetaUnref(a);
  strataFileMetaUnref(b);
  strataFileMetaUnref(c);
  strataFileMetaUnref(l0a);
  strataFileMetaUnref(l0b);
}

static int nObsolete;
static u64 lastObsolete;
static void onObsolete(void *p, u64 n) {
  (void)p;
  nObsolete++;
  lastObsolete = n;
}

static void test_versionset_persist(void) {
  const char *zDir = test_dir("vset");
  strata_env *env = strataEnvDefault();
  VersionSet *vs = NULL;
  VersionEdit e;
  int bExists = 1, i;
  FileMeta *f;
  env->xMkdir(env, "test-tmp");
  CHECK_EQ(env->xMkdir(env, zDir), STRATA_OK);
  CHECK_EQ(strataVersionSetOpen(env, zDir, NULL, 1, &vs, &bExists), STRATA_OK);
  CHECK_EQ(bExists, 0);
  if (!vs) return;
  strataEditInit(&e);
  e.bLogNumber = 1;
  e.logNumber = 3;
  CHECK_EQ(strataVersionSetNewManifest(vs, &e), STRATA_OK);
  strataEditClear(&e);
  /* Many edits: adds then a delete. */
  for (i = 0; i < 50; i++) {
    char lo[16], hi[16];
    snprintf(lo, sizeof lo, "k%04d", i * 10);
    snprintf(hi, sizeof hi, "k%04d", i * 10 + 5);
    f = mkFile(strataVersionSetNewFileNumber(vs), lo, hi, (u64)i);
    strataEditInit(&e);
    strataEditAddFile(&e, 2, f);
    e.bLastSeq = 1;
    e.lastSeq = (u64)i * 100;
    CHECK_EQ(strataVersionSetLogAndApply(vs, &e, NULL), STRATA_OK);
    strataEditClear(&e);
    strataFileMetaUnref(f);
  }
  CHECK_EQ(vs->pCurrent->nFile[2], 50);
  {
    u64 victim = vs->pCurrent->aFile[2][7]->number;
    Version *vOld = vs->pCurrent;
    strataVersionRef(vOld);
    vs->pCurrent->aFile[2][7]->xObsolete = onObsolete;
    strataEditInit(&e);
    strataEditDelFile(&e, 2, victim);
    CHECK_EQ(strataVersionSetLogAndApply(vs, &e, NULL), STRATA_OK);
    strataEditClear(&e);
    CHECK_EQ(nObsolete, 0); /* vOld still holds it */
    strataVersionUnref(vOld);
    CHECK_EQ(nObsolete, 1);
    CHECK_EQ(lastObsolete, victim);
  }
  strataVersionSetClose(vs);
  vs = NULL;
  CHECK_EQ(strataVersionSetOpen(env, zDir, NULL, 1, &vs, &bExists), STRATA_OK);
  CHECK_EQ(bExists, 1);
  if (vs) {
    CHECK_EQ(vs->pCurrent->nFile[2], 49);
    CHECK_EQ(vs->logNumber, 3);
    CHECK_EQ(vs->lastSeq, 4900);
    CHECK(vs->nextFile > 50);
    CHECK_EQ(strataVersionCheck(vs->pCurrent), STRATA_OK);
    /* A new manifest holds the same state. */
    CHECK_EQ(strataVersionSetNewManifest(vs, NULL), STRATA_OK);
    strataVersionSetClose(vs);
    vs = NULL;
    CHECK_EQ(strataVersionSetOpen(env, zDir, NULL, 1, &vs, &bExists), STRATA_OK);
    if (vs) {
      CHECK_EQ(vs->pCurrent->nFile[2], 49);
      CHECK_EQ(vs->lastSeq, 4900);
      strataVersionSetClose(vs);
    }
  }
  test_rmdir(zDir);
}

static void test_current_damage(void) {
  const char *zDir = test_dir("vcur");
  strata_env *env = strataEnvDefault();
  VersionSet *vs = NULL;
  int bExists;
  char zPath[4200];
  FILE *fp;
  env->xMkdir(env, zDir);
  CHECK_EQ(strataVersionSetOpen(env, zDir, NULL, 1, &vs, &bExists), STRATA_OK);
  CHECK_EQ(strataVersionSetNewManifest(vs, NULL), STRATA_OK);
  strataVersionSetClose(vs);
  snprintf(zPath, sizeof zPath, "%s/CURRENT", zDir);
  fp = fopen(zPath, "w");
  fputs("garbage\n", fp);
  fclose(fp);
  vs = NULL;
  CHECK_EQ(strataVersionSetOpen(env, zDir, NULL, 1, &vs, &bExists), STRATA_CORRUPT);
  CHECK(vs == NULL);
  fp = fopen(zPath, "w");
  fputs("MANIFEST-999999\n", fp);
  fclose(fp);
  CHECK(strataVersionSetOpen(env, zDir, NULL, 1, &vs, &bExists) != STRATA_OK);
  CHECK(strstr(strataErrMsgGet(), "MANIFEST-999999") != NULL);
  test_rmdir(zDir);
}

int main(void) {
  mkdir("test-tmp", 0755);
  RUN(test_filenames);
  RUN(test_edit_roundtrip);
  RUN(test_apply_and_check);
  RUN(test_versionset_persist);
  RUN(test_current_damage);
  return TEST_SUMMARY();
}
