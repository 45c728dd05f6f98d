"""The metrics feed as a dashboard analyst reads it: the three files as written are what docs/METRICS_FEED.md says.

The doc's tables are read from the markdown (column names in order, types, the allowed values of each code column,
the keys of metrics.json), its snippets are run as written, and the figures it quotes for the 20k-patient demo are
checked against them, so the doc cannot drift from the files. Each feed checked is written by the CLI: the 20k demo
(both audits, a whole-range run and a ``--month`` run on its warehouse), and the edge feeds a dashboard that stacks
months must also read alike (a month without cases, an audit given no case, a feed whose every cell is withheld and
that has no provider row).
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import ROOT, run_cli, write_small_input

from pipeline.report import feed
from pipeline.synth import generate

FEED_DOC = (ROOT / "docs" / "METRICS_FEED.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
AUDITS = ("csf_leak", "low_back_pain")


def doc_columns() -> list[tuple[str, str, str]]:
    """(column, documented type, meaning) of the doc's *Columns* table, in order."""
    table = FEED_DOC[FEED_DOC.index("## Columns") :].split("\n## ")[0]
    out = []
    for names, kind, meaning in re.findall(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \| ([^\n]*) \|$", table, re.M):
        out += [(name, kind.strip(), meaning) for name in re.findall(r"`(\w+)`", names)]
    return out


TYPES = {"string": pl.String, "int64": pl.Int64, "float64": pl.Float64, "bool": pl.Boolean, "date": pl.Date}
CODE_COLUMNS = ("level", "direction", "period_type", "status", "look_back")


def allowed_values(column: str) -> set[str]:
    """The values the doc's table gives a code column: the words in backquotes of its meaning before any
    parenthesis, less column names."""
    (meaning,) = [m for c, _, m in doc_columns() if c == column]
    return set(re.findall(r"`([a-z_0-9]+)`", meaning.split("(")[0])) - {c for c, _, _ in doc_columns()}


def test_the_doc_table_names_every_column_and_the_code_columns_values():
    columns = doc_columns()
    assert [(c, TYPES[t.split(",")[0]]) for c, t, _ in columns] == list(feed.FEED_SCHEMA.items())
    assert {c: allowed_values(c) for c in CODE_COLUMNS} == {
        "level": {"overall", "department", "provider"},
        "direction": {"higher_is_better", "lower_is_better", "neutral"},
        "period_type": {"month", "quarter", "rolling_12m", "all"},
        "status": {"provisional", "final"},
        "look_back": set(feed.LOOK_BACK),
    }


# ----------------------------------------------------------------------------- the feeds, written by the CLI


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The 20k-patient demo the doc quotes (synth --patients 20000 --months 24 --seed 7 --start 2024-07): a
    whole-range run (``all``) and, on its warehouse, ``--month 2026-03`` (``month``)."""
    base = tmp_path_factory.mktemp("demo20k")
    generate(base / "input", patients=20_000, months=24, seed=7, start_month="2024-07")
    wh = base / "wh.duckdb"
    result = run_cli("run", "--input", base / "input", "--out", base / "all", "--warehouse", wh, "--no-validate", "--quiet")
    assert result.returncode == 0, result.stderr
    result = run_cli("run", "--out", base / "month", "--warehouse", wh, "--month", "2026-03", "--no-validate", "--quiet")
    assert result.returncode == 0, result.stderr
    return base


@pytest.fixture(scope="module")
def edges(tmp_path_factory) -> Path:
    """write_small_input's two leak cases: every CSF-leak count is 1 or 2, so every cell is withheld and no provider
    has a row (``small``), and the low back pain audit has no case (no row); ``--month 2030-01``: no case at all."""
    base = tmp_path_factory.mktemp("edges")
    inp = write_small_input(base / "in")
    for name, extra in (("small", []), ("none", ["--month", "2030-01"])):
        result = run_cli("run", "--input", inp, "--out", base / name, "--no-validate", "--quiet", *extra)
        assert result.returncode == 0, result.stderr
    return base


def check_files(folder: Path, audit_id: str) -> pl.DataFrame:
    """Every documented property of one audit's three feed files; the Parquet rows."""
    rows = pl.read_parquet(folder / "metrics.parquet")
    doc = doc_columns()
    # Parquet: the documented columns, in order, with their types
    assert [(c, t) for c, t in rows.schema.items()] == [(c, TYPES[t.split(",")[0]]) for c, t, _ in doc]
    # CSV: the same header, and the same rows once read as the doc says (empty = null, true/false, YYYY-MM-DD,
    # rates with 6 decimals)
    text = (folder / "metrics.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(c for c, _, _ in doc)
    csv = pl.read_csv(folder / "metrics.csv", infer_schema=False)
    for c in ("rate", "ci_low", "ci_high"):
        assert csv[c].drop_nulls().str.contains(r"^[01]\.\d{6}$").all(), c
    assert set(csv["suppressed"]) <= {"true", "false"}
    for c in ("data_through", "verified_from"):
        assert csv[c].drop_nulls().str.contains(r"^\d{4}-\d{2}-\d{2}$").all(), c
    typed = csv.with_columns(
        pl.col("suppressed") == "true",
        *(pl.col(c).str.to_date("%Y-%m-%d") for c in ("data_through", "verified_from")),
        *(pl.col(c).cast(t) for c, t in rows.schema.items() if t in (pl.Int64, pl.Float64)),
    )
    assert typed.equals(rows)
    # the code columns' values, the schema version and the audit
    for c in CODE_COLUMNS:
        assert set(rows[c]) <= allowed_values(c), c
    version = re.search(r"^# The metrics feed \(schema version ([\d.]+)\)", FEED_DOC).group(1)
    assert set(rows["schema_version"]) <= {version} and set(rows["audit_id"]) <= {audit_id}
    # the periods as labelled, with their first and last month
    shape = {"month": r"\d{4}-\d{2}", "quarter": r"\d{4}-Q[1-4]", "rolling_12m": r"\d{4}-\d{2}\.\.\d{4}-\d{2}", "all": "all"}
    for kind, period, start, end in rows.select("period_type", "period", "period_start", "period_end").unique().iter_rows():
        assert re.fullmatch(shape[kind], period), period
        if kind == "month":
            assert start == end == period
        if kind == "rolling_12m":
            assert period == f"{start}..{end}" and int(end[:4]) * 12 + int(end[5:]) - int(start[:4]) * 12 - int(start[5:]) == 11
        if kind == "quarter":
            first = (int(period[-1]) - 1) * 3 + 1
            assert (start, end) == (f"{period[:4]}-{first:02d}", f"{period[:4]}-{first + 2:02d}")
    assert (rows["group_key"] == "all").equals(rows["level"] == "overall")
    # nulls: a withheld row has no numerator, rate or interval; a rate is null only withheld or of no unit
    assert rows["numerator"].is_null().equals(rows["suppressed"])
    assert rows["rate"].is_null().equals(rows["suppressed"] | (rows["denominator"] == 0).fill_null(True))
    assert rows["ci_low"].is_null().equals(rows["rate"].is_null()) and rows["ci_high"].is_null().equals(rows["rate"].is_null())
    assert rows.filter(pl.col("denominator").is_null() & ~pl.col("suppressed")).is_empty()
    assert rows.filter((pl.col("level") == "provider") & pl.col("denominator").is_null()).is_empty()
    assert rows.filter((pl.col("rate") < 0) | (pl.col("ci_high") > 1) | (pl.col("ci_low") > pl.col("rate"))).is_empty()
    assert rows["data_through"].n_unique() <= 1 and rows["verified_from"].n_unique() <= 1
    # look_back: before_data exactly where the period's first day is before verified_from
    first_day = (pl.col("period_start") + "-01").str.to_date()
    expected = pl.when(first_day < pl.col("verified_from")).then(pl.lit("before_data")).otherwise(pl.lit("complete"))
    assert rows.filter(expected != pl.col("look_back")).is_empty()
    # sorted by period, level, group_key, measure_id as text (character by character)
    keys = rows.select("period", "level", "group_key", "measure_id").rows()
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # metrics.json: the documented keys, each what the rows say
    summary = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    section = FEED_DOC[FEED_DOC.index("## metrics.json") :].split("\n## ")[0]
    assert set(summary) == set(re.findall(r"`(\w+)`", section)) - {"overall"}
    assert summary["columns"] == {c: str(t) for c, t in rows.schema.items()} and summary["rows"] == rows.height
    names = re.search(r"by its Polars name: (.*?), the\s+table above's", section, re.S).group(1)
    assert set(summary["columns"].values()) <= set(re.split(r",\s+|\s+or\s+", names)), names
    assert summary["schema_version"] == version and summary["audit_id"] == audit_id
    assert summary["periods"] == sorted(set(rows["period"])) and summary["period_types"] == sorted(set(rows["period_type"]))
    for c in ("data_through", "verified_from"):
        assert {summary[c]} >= {str(v) for v in rows[c].drop_nulls()}, c
    head = rows.filter((pl.col("period") == summary["headline_period"]) & (pl.col("level") == "overall"))
    assert summary["headline"] == json.loads(head.drop("schema_version").write_json())
    return rows


@pytest.mark.slow
def test_every_feed_is_the_documented_schema_and_any_two_stack(demo, edges):
    """Both audits of the 20k demo (whole range and --month) and the edge feeds: the same columns and types, the
    documented values and conventions, in every file."""
    feeds = {}
    for run in (demo / "all", demo / "month", edges / "small", edges / "none"):
        for audit_id in AUDITS:
            feeds[run.name, audit_id] = check_files(run / audit_id, audit_id)
    assert {k: f.height > 0 for k, f in feeds.items()} == {
        ("all", "csf_leak"): True,
        ("all", "low_back_pain"): True,
        ("month", "csf_leak"): True,
        ("month", "low_back_pain"): True,
        ("small", "csf_leak"): True,
        ("small", "low_back_pain"): False,  # no case: a header alone
        ("none", "csf_leak"): False,
        ("none", "low_back_pain"): False,
    }
    small = feeds["small", "csf_leak"]
    assert small["suppressed"].all() and "provider" not in set(small["level"])
    stacked = pl.concat(list(feeds.values()), how="vertical")  # strict: the same columns and types in each
    assert stacked.height == sum(f.height for f in feeds.values())
    # a run without rows still says how far its data reaches (2025-06-03: the small extract's last order)
    summary = json.loads((edges / "none" / "csf_leak" / "metrics.json").read_text(encoding="utf-8"))
    assert (summary["rows"], summary["data_through"], summary["periods"]) == (0, "2025-06-03", [])
    assert summary["site_timezone"] == "America/New_York"  # the zone of those dates (the default setting)
    # the documented example of a period without rows: no leak case in September 2025
    whole = feeds["all", "csf_leak"]
    assert "no row for September 2025" in FEED_DOC
    assert "2025-09" not in set(whole["period"]) and {"2025-08", "2025-10", "2025-Q3"} <= set(whole["period"])


@pytest.mark.slow
def test_the_documented_snippets_give_what_the_doc_says_on_the_20k_demo(demo, monkeypatch):
    """The doc's SQL and Python and the README's SQL, as written, on the demo the doc quotes, give its figures."""
    out = demo / "all"
    sql, csv_sql, _ = re.findall(r"```sql\n(.*?)```", FEED_DOC, re.S)  # the third loads feeds into one table (below)
    points = duckdb.sql(sql.replace("/reports/order-audit/latest/", f"{out}/")).pl()
    # the CSV read with its types: both audits' rows, the version filter working (it failed on a guessed DOUBLE)
    ((csv_rows,),) = duckdb.sql(csv_sql.replace("/reports/order-audit/latest/", f"{out}/")).fetchall()
    assert csv_rows == feed_rows(out).height > 0
    quoted = int(re.search(r"on the 20k-patient one (\d+)", FEED_DOC).group(1))
    assert points.height == quoted and points["rate"].null_count() == 0
    readme_sql = re.search(r"```sql\n(.*?)```", README[README.index("## The metrics feed") :], re.S).group(1)
    readme_points = duckdb.sql(readme_sql.replace("REPORTS/", f"{out}/")).pl()
    assert readme_points.equals(points.select(readme_points.columns))  # the same query, fewer columns
    python = re.findall(r"```python\n(.*?)```", FEED_DOC, re.S)[0]  # the second reads the CSV (below)
    monkeypatch.chdir(out)
    names: dict = {}
    exec(python, names)  # noqa: S102 - the documented snippet itself
    said = re.search(
        r"`monthly` has (\d+) rows.*?`rolling` (\d+), and `first_months` (\d+) periods \(`verified_from` ([\d-]+)\)",
        FEED_DOC,
        re.S,
    )
    assert (len(names["monthly"]), names["rolling"].height, names["first_months"].len()) == tuple(
        int(said.group(i)) for i in (1, 2, 3)
    )
    assert names["monthly"]["suppressed"].all()  # "every one withheld there"
    assert names["first_months"].to_list() == [
        "2024-07", "2024-07..2025-06", "2024-08", "2024-08..2025-07", "2024-09", "2024-09..2025-08", "2024-10",
        "2024-10..2025-09", "2024-11", "2024-11..2025-10", "2024-12", "2024-12..2025-11", "2024-Q3", "2024-Q4", "all",
    ]  # fmt: skip
    assert set(names["verified"]["verified_from"]) == {datetime.date.fromisoformat(said.group(4))}
    # 3.1's Changes quotes the demo's count of before_data rows
    lbp = names["low_back_pain"]
    assert f"{(lbp['look_back'] == 'before_data').sum():,} of {lbp.height:,} rows" in FEED_DOC
    # "Which rows there are": the department periods whose audited orders were all excluded have no judged row (the
    # doc said 17 where the demo has 16, since that sentence was written)
    department = lbp.filter(pl.col("level") == "department")
    judged = department.filter(pl.col("measure_id") == "early_imaging_order_rate").select("period", "group_key")
    excluded = department.filter(pl.col("measure_id") == "excluded_order_rate").select("period", "group_key")
    quoted = re.search(r"on the 20k-patient demo (\d+)\s+department periods", FEED_DOC).group(1)
    assert excluded.join(judged, on=["period", "group_key"], how="anti").height == int(quoted)


def feed_rows(out: Path) -> pl.DataFrame:
    """Both audits' feeds of a run's ``--out``, as one frame."""
    return pl.concat([pl.read_parquet(out / audit_id / "metrics.parquet") for audit_id in AUDITS])


@pytest.mark.slow
def test_the_documented_load_of_each_runs_feeds_keeps_one_feed_per_month(demo, edges, tmp_path):
    """The doc's SQL for a table that every run's feeds are loaded into, as written: the latest feed replaces every
    row of its audit from its first month on (not row by row: a whole-range feed's rows after March, its provider
    rows March withholds and its ``all``, are gone), and a feed that starts later (``trend_months = 12``) leaves the
    older feed's periods that end before its first month. The table's key is unique, and no two feeds' periods in it
    share a month."""
    _, _, load = re.findall(r"```sql\n(.*?)```", FEED_DOC, re.S)
    con = duckdb.connect(str(tmp_path / "dashboard.duckdb"))

    def loaded(out: Path) -> pl.DataFrame:
        con.execute(load.replace("/reports/order-audit/2026-05/", f"{out}/"))
        return con.sql("SELECT * FROM feed_history").pl()

    key = ["audit_id", "period_type", "period_start", "period_end", "level", "group_key", "measure_id"]
    loaded(demo / "all")
    march = feed_rows(demo / "month")
    table = loaded(demo / "month")
    assert table.sort(key).equals(march.sort(key))
    assert feed_rows(demo / "all").join(march, on=["audit_id", "period", "level", "group_key", "measure_id"], how="anti").height
    # a --month 2026-05 run whose trend is 12 months: its first month is 2025-06
    (tmp_path / "trend12.toml").write_text("[reporting]\ntrend_months = 12\n", encoding="utf-8")
    args = ("--warehouse", demo / "wh.duckdb", "--config", tmp_path / "trend12.toml", "--no-validate", "--quiet")
    result = run_cli("run", "--out", tmp_path / "may", "--month", "2026-05", *args)
    assert result.returncode == 0, result.stderr
    may = feed_rows(tmp_path / "may")
    assert set(may.group_by("audit_id").agg(pl.col("period_start").min())["period_start"]) == {"2025-06"}
    table = loaded(tmp_path / "may")
    kept = march.filter(pl.col("period_end") < "2025-06")
    assert kept.height and table.sort(key).equals(pl.concat([kept, may]).sort(key))
    assert table.select(key).is_unique().all()
    assert kept["period_end"].max() < may["period_start"].min()
    # a run's empty feeds (no unit in its months) change nothing; the whole range again leaves its rows alone
    assert loaded(edges / "none").sort(key).equals(table.sort(key))
    assert loaded(demo / "all").sort(key).equals(feed_rows(demo / "all").sort(key))


@pytest.mark.slow
def test_another_run_with_another_pseudonym_key_writes_the_same_feed_bytes(demo, tmp_path):
    """The same extracts give the same three feed files of both audits, byte for byte, in a second run (its own
    warehouse) with another pseudonym key (README, Privacy: rotating it is routine): the feed holds no pseudonym and
    nothing in it follows one. Released rows, provider rows among them, so the bytes say something."""
    out = tmp_path / "rekeyed"
    key = {"ORDER_AUDIT_PSEUDONYM_KEY": "feed-stability-key-2027"}
    result = run_cli("run", "--input", demo / "input", "--out", out, "--no-validate", "--quiet", env=key)
    assert result.returncode == 0, result.stderr
    for audit_id in AUDITS:
        for name in ("metrics.csv", "metrics.parquet", "metrics.json"):
            assert (out / audit_id / name).read_bytes() == (demo / "all" / audit_id / name).read_bytes(), (audit_id, name)
    released = feed_rows(out).filter(~pl.col("suppressed"))
    assert set(released["audit_id"]) == set(AUDITS) and "provider" in set(released["level"])


# the CLI with disclosure.JOINT_PROVIDER_ENTRIES set to sys.argv[1] (then the CLI's own arguments), as a user runs it
CAPPED_CLI = (
    "import sys; from pipeline.report import disclosure; disclosure.JOINT_PROVIDER_ENTRIES = int(sys.argv.pop(1)); "
    "from pipeline.cli import main; sys.argv[0] = 'order-audit'; main()"
)


@pytest.mark.slow
def test_metrics_json_and_the_log_say_which_provider_cells_the_joint_check_left_out(demo, tmp_path):
    """Under the joint pass's cap (the demo's largest provider table is 10,626 entries of its system: the low back pain
    feed's 7 providers x 23 months x (23 months + 43 hospital cells); the CSF-leak feed's two largest 4,872 and 3,654)
    metrics.json says that no measure's provider cells were left out; the demo's warehouse re-audited with the cap at
    3,000 names the measures over it, with the counts concerned (the evaluated orders are the CSF-leak headline
    rates' one denominator), in metrics.json and at info in the log, and gives the same rows (the line and time passes
    withhold all that the joint pass did here)."""
    for run in ("all", "month"):
        for audit_id in AUDITS:
            summary = json.loads((demo / run / audit_id / "metrics.json").read_text(encoding="utf-8"))
            assert summary["provider_joint_check"] == {"max_entries": 10_000_000, "left_out": {}}, (run, audit_id)
    out = tmp_path / "capped"
    args = ("run", "--out", out, "--warehouse", demo / "wh.duckdb", "--no-validate", "--log-format", "json")
    result = subprocess.run(
        [sys.executable, "-c", CAPPED_CLI, "3000", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert result.returncode == 0, result.stderr
    left_out = {
        "csf_leak": {"inappropriate_order_rate": ["denominator"], "premature_order_rate": ["denominator", "numerator"]},
        "low_back_pain": {"early_imaging_order_rate": ["denominator"]},
    }
    logged = [json.loads(line) for line in result.stderr.splitlines() if '"provider_joint_left_out"' in line]
    assert [(e["level"], e["audit_id"], e["measures"], e["max_entries"]) for e in logged] == [
        ("info", audit_id, sorted(measures), 3000) for audit_id, measures in left_out.items()
    ]
    for audit_id, measures in left_out.items():
        summary = json.loads((out / audit_id / "metrics.json").read_text(encoding="utf-8"))
        assert summary["provider_joint_check"] == {"max_entries": 3000, "left_out": measures}
        for name in ("metrics.csv", "metrics.parquet"):
            assert (out / audit_id / name).read_bytes() == (demo / "all" / audit_id / name).read_bytes(), name


@pytest.mark.slow
def test_the_feed_marks_the_same_look_back_as_the_report_whatever_the_runs_period(demo):
    """The report's first page says from which date episodes are verified (run.json period_notes); the feed's
    verified_from is that date, on the whole-range run whose period holds such episodes and on a --month run whose
    period holds none (no note), where the feed's first months still reach before the data."""
    whole = json.loads((demo / "all" / "low_back_pain" / "run.json").read_text(encoding="utf-8"))
    (note,) = whole["period_notes"]
    said = re.search(r"for an episode indexed before (\d{4}-\d{2}-\d{2})", note["text"]).group(1)
    month_run = json.loads((demo / "month" / "low_back_pain" / "run.json").read_text(encoding="utf-8"))
    assert month_run["period_notes"] == []
    for run in ("all", "month"):
        rows = pl.read_parquet(demo / run / "low_back_pain" / "metrics.parquet")
        assert set(rows["verified_from"]) == {datetime.date.fromisoformat(said)}, run
        before = set(rows.filter(pl.col("look_back") == "before_data")["period"])
        months = {p for p in before if re.fullmatch(r"\d{4}-\d{2}", p)}
        assert months == {f"2024-{m:02d}" for m in range(7, 13)}, run
        assert ("all" in before) == (run == "all")  # --month 2026-03: its own month, verified
    csf = pl.read_parquet(demo / "all" / "csf_leak" / "metrics.parquet")
    assert set(csf["look_back"]) == {"complete"} and csf["verified_from"].null_count() == csf.height


def test_the_documented_csv_reads_give_the_feeds_types_also_without_rows(tmp_path, monkeypatch):
    """The doc's CSV reads, as written (its second SQL block and second Python block), on a feed with rows (every
    count released, a department spelled 0101) and one without (the low back pain audit given no case: the header
    alone). DuckDB and Polars give the Parquet file's types and rows; pandas the nullable types of its Parquet read,
    dates as datetime64. The reads the doc gave before typed two columns: Polars read data_through as text, a
    header-only feed as text throughout, and a department 0101 as the number 101 (so did pandas)."""
    inp = write_small_input(tmp_path / "in")
    orders = (inp / "imaging_orders.csv").read_text(encoding="utf-8")
    # a department the CSV quotes as a formula: the doc's third Python block drops the quote (the analyst's review)
    orders = orders.replace(",Neurology,", ",0101,").replace(",Emergency,", ",-Emergency,")
    (inp / "imaging_orders.csv").write_text(orders, encoding="utf-8")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[feed]\nmin_cell_count = 1\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", "--input", inp, "--out", out, "--config", cfg, "--no-validate", "--quiet")
    assert result.returncode == 0, result.stderr
    leak, lbp = (pl.read_parquet(out / a / "metrics.parquet") for a in AUDITS)
    assert leak.height and {"0101", "-Emergency"} <= set(leak["group_key"]) and leak["numerator"].null_count() == 0
    assert lbp.height == 0
    csv_sql = re.findall(r"```sql\n(.*?)```", FEED_DOC, re.S)[1]
    ((counted,),) = duckdb.sql(csv_sql.replace("/reports/order-audit/latest/", f"{out}/")).fetchall()
    assert counted == leak.height
    (unquote,) = re.findall(r"In DuckDB, in place of\n`group_key`: `(CASE WHEN .*? AS group_key)`", FEED_DOC, re.S)
    python = "\n".join(re.findall(r"```python\n(.*?)```", FEED_DOC, re.S)[1:3])  # the typed read, the quotes dropped
    for audit_id, parquet in zip(AUDITS, (leak, lbp), strict=True):
        one = duckdb.sql(
            csv_sql.replace("/reports/order-audit/latest/*/", f"{out}/{audit_id}/").replace("count(*)", f"* REPLACE ({unquote})")
        )
        assert one.pl().equals(parquet), audit_id
        monkeypatch.chdir(out)
        names: dict = {}
        exec(python.replace("csf_leak/", f"{audit_id}/"), names)  # noqa: S102 - the documented snippet itself
        assert names["feed_pl"].schema == parquet.schema and names["feed_pl"].equals(parquet), audit_id
        feed_csv = names["feed_csv"]
        want = pd_types(out / audit_id / "metrics.parquet")
        if parquet.height:
            assert {c: str(t).split("[")[0] for c, t in feed_csv.dtypes.items()} == want, audit_id
            assert feed_csv["group_key"].tolist().count("0101") == (leak["group_key"] == "0101").sum()
        else:
            assert list(feed_csv.columns) == parquet.columns and len(feed_csv) == 0


def pd_types(parquet: Path) -> dict[str, str]:
    """The dtypes of ``pd.read_parquet(..., dtype_backend="numpy_nullable")``, the dates as datetime64 (the CSV read
    parses them)."""
    import pandas as pd  # noqa: PLC0415

    read = pd.read_parquet(parquet, dtype_backend="numpy_nullable")
    return {c: "datetime64" if c in ("data_through", "verified_from") else str(t) for c, t in read.dtypes.items()}


def test_the_doc_attributes_a_case_as_the_audit_does():
    """group_key's meaning said a case belongs to the department of its first imaging order; the CSF-leak audit
    attributes it to its first evaluated one (``[report] case_department = "first_imaging_department"``, of the
    judged orders): a case whose first order was cancelled or not evaluable counts under another department."""
    from pipeline import audits  # noqa: PLC0415

    (meaning,) = [m for c, _, m in doc_columns() if c == "group_key"]
    attributed = [a for a in audits.discover() if a.manifest.get("report", {}).get("case_department")]
    assert attributed
    for audit in attributed:
        label = audit.manifest["report"]["case_department_label"]  # "the department of its first evaluated imaging order"
        assert label.removeprefix("the department of its ") in meaning, (audit.id, label)


def test_the_doc_states_each_audits_days_to_final_as_its_manifest_does():
    """*Provisional and final* gave one horizon, 74 days, under `[case]` settings: the low back pain audit's months turn
    final 42 days after their end (its audit window), and `[case]` is a section the config refuses."""
    from pipeline import audits  # noqa: PLC0415

    section = FEED_DOC[FEED_DOC.index("## Provisional and final") :].split("\n## ")[0]
    stated = {
        "csf_leak": re.search(r"A CSF-leak month is \*\*final\*\*.*?= (\d+)\s+days by default", section, re.S),
        "low_back_pain": re.search(r"a low back pain month once .*?: (\d+) days\)", section, re.S),
    }
    for audit in audits.discover():
        days = audits.maturity_horizon_days(audit, audit.parameters)
        assert stated[audit.id] and int(stated[audit.id].group(1)) == days, (audit.id, days)
    assert "settings)" not in section and "`[maturity] days_after_month`" in section
    # README's Scheduling and docs/SCHEDULING.md gave the CSF-leak audit's 74 days as every month's
    scheduling = (ROOT / "docs" / "SCHEDULING.md").read_text(encoding="utf-8")
    for text in (README, scheduling):
        for paragraph in re.split(r"\n\s*\n", text):
            if "14 + 30 + 30" in paragraph:
                assert "low back" in paragraph and "42 days" in paragraph, paragraph[:200]


def test_the_documented_commands_run_the_docs_sql_without_a_duckdb_shell(tmp_path):
    """No DuckDB shell comes with the project: the doc's two commands (the venv's Python and its duckdb package) run
    its dashboard query and its load into one table as written, from files."""
    result = run_cli("run", "--input", write_small_input(tmp_path / "in"), "--out", tmp_path / "out", "--no-validate", "--quiet")
    assert result.returncode == 0, result.stderr
    query, _, load = re.findall(r"```sql\n(.*?)```", FEED_DOC, re.S)
    (tmp_path / "query.sql").write_text(query.replace("/reports/order-audit/latest/", f"{tmp_path / 'out'}/"))
    (tmp_path / "load.sql").write_text(load.replace("/reports/order-audit/2026-05/", f"{tmp_path / 'out'}/"))
    commands = re.findall(r'`\.venv/bin/python -c "(import duckdb;.*?)"`', FEED_DOC, re.S)
    assert len(commands) == 2, commands
    ran = [subprocess.run([sys.executable, "-c", c], cwd=tmp_path, capture_output=True, text=True, check=False) for c in commands]
    assert [r.returncode for r in ran] == [0, 0], [r.stderr for r in ran]
    assert "department" in ran[0].stdout  # the query's table, printed (every cell of the small input withheld: no row)
    loaded = duckdb.connect(str(tmp_path / "history.duckdb"), read_only=True)
    assert loaded.execute("SELECT count(*) FROM feed_history").fetchall()[0][0] == feed_rows(tmp_path / "out").height


def test_the_feeds_dates_have_one_type_per_reader_whether_null_or_filled(tmp_path, monkeypatch):
    """A hand-built feed row written by the feed's writer twice, ``verified_from`` null (the CSF-leak feed) and filled
    (low back pain): the Parquet files type both dates DATE alike, and the doc's pandas CSV read gives both files the
    same dtypes. Its read before gave the null column datetime64[s] and the filled one datetime64[us] (parse_dates), so
    a dashboard stacking the two audits' feeds got two dtypes."""
    import pandas as pd  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    row = {c: None for c in feed.FEED_SCHEMA} | {
        "schema_version": feed.SCHEMA_VERSION, "audit_id": "a", "period": "2026-04", "level": "overall",
        "group_key": "all", "measure_id": "m", "numerator": 3, "denominator": 13, "suppressed": False,
        "direction": "neutral", "period_type": "month", "period_start": "2026-04", "period_end": "2026-04",
        "status": "final", "data_through": datetime.date(2026, 6, 30), "look_back": "complete",
    }  # fmt: skip
    python = re.findall(r"```python\n(.*?)```", FEED_DOC, re.S)[1]  # the typed CSV read
    read = {}
    for name, verified_from in (("null", None), ("filled", datetime.date(2024, 12, 28))):
        folder = tmp_path / name / "csf_leak"
        folder.mkdir(parents=True)
        feed.write_rows(pl.DataFrame([row | {"verified_from": verified_from}], schema=feed.FEED_SCHEMA), folder)
        types = {f.name: (f.physical_type, str(f.logical_type)) for f in pq.ParquetFile(folder / "metrics.parquet").schema}
        assert types["verified_from"] == types["data_through"] == ("INT32", "Date"), name
        monkeypatch.chdir(folder.parent)
        names: dict = {}
        exec(python, names)  # noqa: S102 - the documented snippet itself
        read[name] = names["feed_csv"]
        assert read[name]["verified_from"].tolist() == [pd.NaT if verified_from is None else pd.Timestamp(verified_from)]
        assert pd.read_parquet(folder / "metrics.parquet")["verified_from"].tolist() == [verified_from]
    assert read["null"].dtypes.to_dict() == read["filled"].dtypes.to_dict()
    assert str(read["null"]["verified_from"].dtype) == "datetime64[s]"
