/* placeholder */
int sqlite3_strata_init(void);
int sqlite3_strata_init(void) { return 1; }
