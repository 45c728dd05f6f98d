"""The two shared text guards: SQL quoting and spreadsheet formula neutralisation."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.formula_guard import neutralise, neutralise_expr, neutralise_sql, restore, restore_expr, starts_formula
from pipeline.sqltext import ident, literal


def test_literal_survives_quotes_in_a_path(tmp_path: Path):
    folder = tmp_path / "o'brien's \"data\""
    folder.mkdir()
    target = folder / "x.parquet"
    con = duckdb.connect()
    column, hostile = ident('we"ird'), literal("'; DROP TABLE x; --")
    con.execute(f"COPY (SELECT 42 AS {column}) TO {literal(target)} (FORMAT parquet)")
    assert con.execute(f"SELECT * FROM read_parquet({literal(target)})").fetchall() == [(42,)]
    assert con.execute(f"SELECT {hostile}").fetchall() == [("'; DROP TABLE x; --",)]


@pytest.mark.parametrize(
    "raw",
    [
        *['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"],
        # white space before a trigger (an import that trims runs it), and the full-width forms OWASP lists
        *[" =1+1", "  @SUM(A1)", "\n=1+1", "\r\n+1", "\u00a0-2+3", "\u3000=1", "\t =1"],
        *['\uff1dHYPERLINK("http://x")', "\uff0bSUM(1)", "\uff0d1", "\uff20A1", " \uff1d1", "''=1", "' =1"],
        # every other character str.strip() removes (a trimming import), and the zero-width space and BOM: these were
        # written unquoted (the hostile review)
        *["\u2003=1+1 MRI", "\u202f=2+2", "\u2028=3+3", "\x0b=5+5", "\x1f=10+10", "\u2000@SUM(1)", "\x85-1", "\u200b+1"],
        "\ufeff=1",
    ],
)
def test_triggers_are_neutralised_and_restorable(raw: str):
    safe = neutralise(raw)
    assert safe == "'" + raw
    assert restore(safe) == raw
    assert starts_formula(raw) is not raw.startswith("'") and not starts_formula(safe)


@pytest.mark.parametrize(
    "raw", ["Neurology", "72148", "G97.1|R51.0", "", None, "a=b", "'quoted already", " spaced", "\nline", "x =1", "\uff1ax"]
)
def test_plain_text_is_unchanged(raw):
    assert neutralise(raw) == raw
    assert restore(raw) == raw
    assert not starts_formula(raw)


VALUES = ["=1+1", "plain", None, "-x", "@y", "\tz", "ok-", " =1", "\n@x", "\u3000+1", "\uff1d1", " x", "'\u00a0-1", "a\n=1"]
VALUES += ["\u2003=1", "\x1f+1", "\u2028 @x", "\u2003x"]  # the Unicode and C0 spaces: Python, Polars and DuckDB alike


def test_expression_matches_the_scalar_function():
    out = pl.DataFrame({"v": VALUES}).with_columns(neutralise_expr("v"))["v"].to_list()
    assert out == [neutralise(v) for v in VALUES]
    quoted = (0, 3, 4, 5, 7, 8, 9, 10, 12, 14, 15, 16)
    assert out == [None if v is None else "'" + v if i in quoted else v for i, v in enumerate(VALUES)]


def test_restore_expression_matches_the_scalar_function():
    """restore_expr (a site code map read back) gives what restore gives, on raw and on neutralised text."""
    texts = VALUES + [neutralise(v) for v in VALUES] + ["''=1", "'plain", "'"]
    out = pl.DataFrame({"v": texts}).with_columns(restore_expr("v"))["v"].to_list()
    assert out == [restore(v) for v in texts]
    assert out[len(VALUES) : 2 * len(VALUES)] == VALUES


def test_sql_expression_matches_the_scalar_function():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(VALUES)))
    out = [r[0] for r in con.execute(f"SELECT {neutralise_sql('v')} FROM t ORDER BY i").fetchall()]
    assert out == [neutralise(v) for v in VALUES]
