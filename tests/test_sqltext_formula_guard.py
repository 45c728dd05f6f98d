"""The two shared text guards: SQL quoting and spreadsheet formula neutralisation."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.formula_guard import neutralise, neutralise_expr, restore
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
    ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"],
)
def test_triggers_are_neutralised_and_restorable(raw: str):
    safe = neutralise(raw)
    assert safe == "'" + raw
    assert restore(safe) == raw


@pytest.mark.parametrize("raw", ["Neurology", "72148", "G97.1|R51.0", "", None, "a=b", "'quoted already"])
def test_plain_text_is_unchanged(raw):
    assert neutralise(raw) == raw
    assert restore(raw) == raw


def test_expression_matches_the_scalar_function():
    values = ["=1+1", "plain", None, "-x", "@y", "\tz", "ok-"]
    out = pl.DataFrame({"v": values}).with_columns(neutralise_expr("v"))["v"].to_list()
    assert out == [neutralise(v) for v in values]
