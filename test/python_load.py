#!/usr/bin/env python3
"""python_load.py -- load the strata extension through Python's sqlite3 module.

Proves the extension works from another binding: load_extension(), a table
with each kind of key, writes in a transaction, a rollback, a query plan that
the engine answers, strata_stats, and a reopen. The extension path comes from
$STRATA_EXT (default ../.libs/strata.so beside this file). The last line is
`N passed, N failed`; the exit status is 1 if anything failed.
"""
import os
import shutil
import sqlite3
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
ext = os.environ.get("STRATA_EXT") or os.path.join(here, "..", ".libs", "strata.so")
base = os.environ.get("STRATA_TEST_TMP") or tempfile.gettempdir()
workdir = tempfile.mkdtemp(prefix="strata-python-", dir=base)
dbfile = os.path.join(workdir, "py.db")

passed = 0
failed = 0


def check(name, got, want):
    global passed, failed
    if got == want:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}\n  expected: {want!r}\n       got: {got!r}")


def connect():
    con = sqlite3.connect(dbfile, isolation_level=None)
    if hasattr(con, "enable_load_extension"):
        con.enable_load_extension(True)
        con.load_extension(ext)
        con.enable_load_extension(False)
    else:
        # This Python was built without loadable-extension support (e.g. a
        # default pyenv build): turn it on for the connection's own sqlite3
        # handle, the first field after the object header of the Connection.
        import ctypes
        lib = ctypes.CDLL("libsqlite3.so.0")
        handle = ctypes.c_void_p.from_address(id(con) + object.__basicsize__).value
        lib.sqlite3_enable_load_extension(ctypes.c_void_p(handle), 1)
        con.execute("SELECT load_extension(?)", (ext,))
        lib.sqlite3_enable_load_extension(ctypes.c_void_p(handle), 0)
    return con


# Prefer a Python whose sqlite3 module can load extensions by itself.
if not hasattr(sqlite3.Connection, "enable_load_extension") and not os.environ.get("STRATA_PY_REEXEC"):
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(cand) and os.path.realpath(cand) != os.path.realpath(sys.executable):
            import subprocess
            probe = subprocess.run([cand, "-c", "import sqlite3,sys; sys.exit(0 if hasattr(sqlite3.Connection, 'enable_load_extension') else 1)"])
            if probe.returncode == 0:
                os.environ["STRATA_PY_REEXEC"] = "1"
                shutil.rmtree(workdir, ignore_errors=True)
                os.execv(cand, [cand, os.path.abspath(__file__)])


try:
    con = connect()
    con.execute("CREATE VIRTUAL TABLE kv USING strata(k TEXT PRIMARY KEY, v)")
    con.execute("CREATE VIRTUAL TABLE n USING strata(id INTEGER PRIMARY KEY, x REAL)")
    con.execute("CREATE VIRTUAL TABLE c USING strata(a, b, v, PRIMARY KEY(a, b))")

    con.execute("BEGIN")
    con.executemany("INSERT INTO kv VALUES(?, ?)", [(f"key{i:04d}", i) for i in range(1000)])
    con.executemany("INSERT INTO n(x) VALUES(?)", [(i / 2,) for i in range(10)])
    con.executemany("INSERT INTO c VALUES(?, ?, ?)", [(i % 3, i, str(i)) for i in range(30)])
    con.execute("COMMIT")
    check("count", con.execute("SELECT count(*) FROM kv").fetchone(), (1000,))
    check("point", con.execute("SELECT v FROM kv WHERE k = ?", ("key0042",)).fetchone(), (42,))
    check("range desc",
          con.execute("SELECT k FROM kv WHERE k >= 'key0990' ORDER BY k DESC LIMIT 3").fetchall(),
          [("key0999",), ("key0998",), ("key0997",)])
    check("types", con.execute("SELECT id, x, typeof(x) FROM n WHERE id = 3").fetchone(),
          (3, 1.0, "real"))
    check("prefix", con.execute("SELECT b FROM c WHERE a = 1 AND b > 20").fetchall(),
          [(22,), (25,), (28,)])
    check("blob and bytes", con.execute("SELECT ?", (b"\x00\x01",)).fetchone(), (b"\x00\x01",))

    con.execute("BEGIN")
    con.execute("DELETE FROM kv WHERE k < 'key0500'")
    check("in txn", con.execute("SELECT count(*) FROM kv").fetchone(), (500,))
    con.execute("ROLLBACK")
    check("rolled back", con.execute("SELECT count(*) FROM kv").fetchone(), (1000,))

    try:
        con.execute("INSERT INTO kv VALUES('key0001', 'dup')")
        check("duplicate", "no error", "IntegrityError")
    except sqlite3.IntegrityError as e:
        check("duplicate", str(e), "UNIQUE constraint failed: kv.k")
    con.execute("INSERT OR REPLACE INTO kv VALUES('key0001', 'replaced')")
    check("replace", con.execute("SELECT v FROM kv WHERE k = 'key0001'").fetchone(), ("replaced",))

    plan = con.execute("EXPLAIN QUERY PLAN SELECT * FROM kv WHERE k = 'x'").fetchall()
    check("plan", plan[0][3], "SCAN kv VIRTUAL TABLE INDEX 0:A=")
    stats = dict(con.execute("SELECT name, value FROM strata_stats('kv')").fetchall())
    check("stats", stats["point_lookups"] >= 1 and "level0_files" in stats, True)
    check("flush", con.execute("SELECT strata_flush('kv')").fetchone(), ("ok",))
    con.close()

    con = connect()
    check("reopen", con.execute("SELECT count(*), max(k) FROM kv").fetchone(), (1000, "key0999"))
    con.execute("DROP TABLE kv")
    check("drop", os.path.exists(dbfile + "-kv.strata"), False)
    con.close()
except Exception as e:  # a crash in the middle counts as a failure
    failed += 1
    print(f"FAIL unexpected error: {e!r}")
finally:
    shutil.rmtree(workdir, ignore_errors=True)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
