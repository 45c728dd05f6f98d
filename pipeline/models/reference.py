"""Reference seeds and parameters as tables the models read (their declared sources).

Engine-wide: ``ref_verdicts`` (verdicts.csv), ``ref_imaging_codes`` (one merged code map: every
audit's ``code_map.csv``, a code shipped by two audits described the same, with the site's local
map over them), ``run_parameters`` (site_timezone) and ``audit_period``. Per audit:
``<id>__ref_rules`` (rules.csv with ``rule_order``), ``<id>__ref_measures`` (the manifest's measures),
``<id>__ref_value_sets`` and the one-row
``<id>__parameters`` (the manifest's parameters with the config's ``[audits.<id>]`` over them, plus
``site_timezone``, ``rule_set_version`` and ``declared_start_date``: the first site-local day of the extract's
declared start, NULL when the config declares none; ``declared_start_date`` below).

Effective dating: every value-set and code-map row carries ``valid_from_at`` and ``valid_until_at``
(UTC instants of site-local midnight at ``valid_from`` and after ``valid_to``; ``valid_until_at``
NULL while the code is in force): a row applies to an event at ``t`` when
``t >= valid_from_at AND (valid_until_at IS NULL OR t < valid_until_at)``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from pipeline import audits as audits_mod
from pipeline import formula_guard, months
from pipeline.config import Config, regular_file
from pipeline.errors import ConfigError
from pipeline.ingest.files import sha256_file

CONTRASTS = {"without", "with", "without_and_with", "intrathecal", ""}
CODE_MAP_COLUMNS = ("code_system", "code", "study_type", "modality", "regions", "contrast", "description")
LOCAL_MAP_NAME = "local_code_map.csv"
OUT_OF_SCOPE = "out_of_scope"  # a site's code that is no audit's imaging (not reported as unmapped)
DATE_FLOOR = "1900-01-01"  # a map row without valid_from applies from any date
VERDICTS_CSV = audits_mod.VERDICTS_CSV


@dataclass(frozen=True)
class ReferenceInfo:
    rule_set_versions: dict[str, str]  # audit id -> rule_set_version
    code_set_versions: dict[str, dict]  # audit id -> its [code_sets]
    parameters: dict[str, dict]  # audit id -> the parameters in force
    files: list[dict]  # name, source and sha256 of every seed read (and the path of the site's local map)


def _read_seed(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False, glob=False).with_columns(pl.all().fill_null(""))


@dataclass(frozen=True)
class Vocabulary:
    """What a code map may say: the study types and region letters of the audits' maps and manifests."""

    study_types: frozenset[str]
    regions: str

    @classmethod
    def of(cls, audits: list) -> Vocabulary:
        types, letters = {OUT_OF_SCOPE}, set()
        for a in audits:
            types |= set(a.study_types)
            if a.code_map_csv.is_file():
                shipped = _read_seed(a.code_map_csv)
                types |= set(shipped["study_type"].str.strip_chars().str.to_lowercase())
                letters |= set("".join(shipped["regions"].str.to_uppercase()))
        return cls(frozenset(types - {""}), "".join(sorted(letters - {" "})))


def read_code_map(path: Path, source: str, vocabulary: Vocabulary, shown: Callable[[str], str] = str) -> pl.DataFrame:
    """A code map file (an audit's or the site's), checked column by column; its rows' source_file is the
    file as the run names it (shown: a site map in a fetched input folder by its URI, ``remote_input.shown_as``)."""
    try:
        df = _read_seed(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(
            f"{path}: cannot read the code map ({exc.__class__.__name__}); "
            "it must be a UTF-8 CSV with columns " + ",".join(CODE_MAP_COLUMNS)
        ) from None
    # a code map that inspect wrote, or a spreadsheet saved, holds text neutralised for spreadsheets ('=...)
    df = df.with_columns(formula_guard.restore_expr(c) for c in df.columns)
    missing = [c for c in CODE_MAP_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{path}, line 1: code map lacks column(s) {', '.join(missing)}; copy the header of examples/local_code_map.csv"
        )
    # a line with no value on it (a trailing blank line, Excel's ',,,,' row) is skipped, as an extract's is: it had
    # stopped every run as "'' is not one of cisternography, ..."
    blank = pl.all_horizontal(pl.col(c).str.strip_chars() == "" for c in df.columns)
    df = df.with_row_index("line", offset=2).filter(~blank)
    for column, allowed in (("study_type", vocabulary.study_types), ("contrast", CONTRASTS)):
        bad = df.filter(~pl.col(column).str.strip_chars().str.to_lowercase().is_in(sorted(allowed)))
        if bad.height:
            row = bad.row(0, named=True)
            raise ConfigError(
                f"{path}, line {row['line']}, column '{column}': '{row[column]}' is not one of "
                f"{', '.join(sorted(a for a in allowed if a))}; fix the code map"
            )
    bad = df.filter(~pl.col("regions").str.to_uppercase().str.contains(f"^[{vocabulary.regions or 'A-Z'}]*$"))
    if bad.height:
        row = bad.row(0, named=True)
        raise ConfigError(
            f"{path}, line {row['line']}, column 'regions': '{row['regions']}' must use only the letters "
            f"{', '.join(vocabulary.regions)}"
        )
    for column in ("valid_from", "valid_to"):
        if column not in df.columns:
            df = df.with_columns(pl.lit("").alias(column))
        bad = df.filter((pl.col(column) != "") & pl.col(column).str.to_date("%Y-%m-%d", strict=False).is_null())
        if bad.height:
            row = bad.row(0, named=True)
            raise ConfigError(f"{path}, line {row['line']}, column '{column}': '{row[column]}' is not a date (YYYY-MM-DD)")
    _refuse_a_code_twice_at_once(path, df)
    return df.select(
        pl.col("code_system").str.strip_chars(),
        pl.col("code").str.strip_chars().str.to_uppercase(),
        pl.col("study_type").str.strip_chars().str.to_lowercase(),
        pl.col("modality").str.strip_chars(),
        pl.col("regions").str.strip_chars().str.to_uppercase(),
        pl.col("contrast").str.strip_chars().str.to_lowercase(),
        pl.col("description"),
        pl.when(pl.col("valid_from") == "").then(pl.lit(DATE_FLOOR)).otherwise(pl.col("valid_from")).alias("valid_from"),
        pl.col("valid_to"),
        pl.lit(shown(str(path))).alias("source_file"),
        pl.lit(source).alias("map_source"),
    )


def _refuse_a_code_twice_at_once(path: Path, df: pl.DataFrame) -> None:
    """A code on two rows whose dates overlap stops the run, naming both lines: the models join orders to the
    map by code and date, so each order of it was audited once per row (a site map giving 72148 as mri_spine
    and as ct_head listed every 72148 order twice, with every reason twice). Rows of one code that follow
    each other in time (valid_to, inclusive, before the next valid_from) are how a code's meaning changes."""
    dated = df.select(
        "line",
        pl.col("code").str.strip_chars().str.to_uppercase().alias("key"),
        pl.when(pl.col("valid_from") == "").then(pl.lit(DATE_FLOOR)).otherwise(pl.col("valid_from")).alias("start"),
        pl.when(pl.col("valid_to") == "").then(pl.lit("9999-12-31")).otherwise(pl.col("valid_to")).alias("end"),
    )
    both = dated.join(dated, on="key", suffix="_b").filter(
        (pl.col("line") < pl.col("line_b")) & (pl.col("start") <= pl.col("end_b")) & (pl.col("start_b") <= pl.col("end"))
    )
    if both.height:
        row = both.sort("line", "line_b").row(0, named=True)
        raise ConfigError(
            f"{path}, line {row['line_b']}: code {row['key']} is on line {row['line']} too, for dates that overlap; "
            "keep one row per code, or set valid_from and valid_to so that the rows follow each other"
        )


def shipped_code_map(audits: list, vocabulary: Vocabulary) -> pl.DataFrame:
    """Every audit's code map as one: a code two audits ship must be described the same by both."""
    maps = [read_code_map(a.code_map_csv, "shipped", vocabulary) for a in audits if a.code_map_csv.is_file()]
    if not maps:
        return read_code_map_schema()
    shipped = pl.concat(maps)
    described = [c for c in CODE_MAP_COLUMNS if c != "description"] + ["valid_from", "valid_to"]
    clash = (
        shipped.group_by("code").agg(pl.struct(described).n_unique().alias("n"), pl.col("source_file")).filter(pl.col("n") > 1)
    )
    if clash.height:
        row = clash.sort("code").row(0, named=True)
        raise ConfigError(
            f"{' and '.join(sorted(set(row['source_file'])))}: code {row['code']} is described differently; "
            "the run has one code map, so audits that ship the same code must agree on it"
        )
    return shipped.unique("code", keep="first", maintain_order=True)


def read_code_map_schema() -> pl.DataFrame:
    cols = [*CODE_MAP_COLUMNS, "valid_from", "valid_to", "source_file", "map_source"]
    return pl.DataFrame(schema={c: pl.String for c in cols})


def local_code_map_path(cfg: Config, input_dir: Path | None) -> Path | None:
    """The site map: the config's path, else local_code_map.csv beside the extracts."""
    if cfg.local_code_map:
        path = Path(cfg.local_code_map)
        if not path.exists():
            raise ConfigError(f"{path}: local code map not found; fix local_code_map in the config")
        regular_file(path, "fix local_code_map in the config")
        return path
    if input_dir is not None and (input_dir / LOCAL_MAP_NAME).is_file():
        return input_dir / LOCAL_MAP_NAME
    if input_dir is not None and os.path.lexists(input_dir / LOCAL_MAP_NAME):
        # a folder, a pipe or a broken link named like the map was passed over: every site code then
        # went unmapped (not_evaluable) with no word of why
        raise ConfigError(
            f"{input_dir / LOCAL_MAP_NAME}: is not a regular file (a folder, a pipe or a broken link); "
            "put the site's code map itself here, or move this out of the folder"
        )
    return None


def code_map(
    audits: list,
    cfg: Config,
    input_dir: Path | None,
    kept: pl.DataFrame | None = None,
    shown: Callable[[str], str] = str,
) -> tuple[pl.DataFrame, Path | None]:
    """The run's one code map: the audits' maps, the site's rows over them (a site row replaces every
    shipped row of its code). ``kept``: the site's rows the warehouse holds, used where no site map is given."""
    vocabulary = Vocabulary.of(audits)
    shipped = shipped_code_map(audits, vocabulary)
    local = local_code_map_path(cfg, input_dir)
    if local is None and kept is None:
        return shipped, None
    site = read_code_map(local, "local", vocabulary, shown) if local is not None else kept
    return pl.concat([shipped.filter(~pl.col("code").is_in(site["code"].implode())), site]), local


def code_map_codes(cfg: Config, input_dir: Path | None, kept: pl.DataFrame | None = None) -> tuple[set[str], Path | None]:
    """The codes the run's one code map knows (``code_map``: every audit's map, and the site's: the config's,
    local_code_map.csv beside the extracts, else ``kept``), upper-case, and the site map's path when one is given."""
    merged, local = code_map(audits_mod.discover(cfg.audits_path), cfg, input_dir, kept)
    return set(merged["code"].to_list()), local


# The site's code map as last loaded. A run without --input re-audits what the warehouse holds: without it the
# site's codes would fall back to unmapped (verdict not_evaluable) and every figure built on them would move.
SITE_MAP_TABLE = "ref_site_code_map"


def kept_site_map_of(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """The kept rows; None when there are none (never kept, or a map with its header only removed them). A run reads
    them before its transaction (``quality.held``): the gate's own database takes them (``keep_site_map``), so that
    its mapped-share check judges the codes as the run will."""
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [SITE_MAP_TABLE]).fetchall()[0][0]
    kept = con.sql(f"SELECT * FROM {SITE_MAP_TABLE}").pl() if found else None
    return kept if kept is not None and kept.height else None


def keep_site_map(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    """``rows`` (from ``kept_site_map_of``) as the site map this database keeps."""
    _table(con, SITE_MAP_TABLE, rows)


def _in_force(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """valid_from / valid_to (dates) -> valid_from_at / valid_until_at (UTC instants at site-local midnight)."""
    zone = ZoneInfo(tz)

    def midnight(text: str, days: int = 0) -> dt.datetime | None:
        if not text:
            return None
        day = dt.date.fromisoformat(text) + dt.timedelta(days=days)
        return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)

    starts = {d: midnight(d) for d in frame["valid_from"].unique().to_list()}
    ends = {d: midnight(d, 1) for d in frame["valid_to"].unique().to_list()}
    utc = pl.Datetime("us", "UTC")
    return frame.with_columns(
        pl.col("valid_from").replace_strict(starts, return_dtype=utc).alias("valid_from_at"),
        pl.col("valid_to").replace_strict(ends, return_dtype=utc).alias("valid_until_at"),
        pl.col("valid_from").str.to_date("%Y-%m-%d"),
        pl.when(pl.col("valid_to") == "").then(None).otherwise(pl.col("valid_to")).str.to_date("%Y-%m-%d").alias("valid_to"),
    )


def _table(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register("_seed", frame.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _seed")
    finally:
        con.unregister("_seed")


def declared_start_date(cfg: Config) -> dt.date | None:
    """The first site-local day the site declares its extract holds whole (``[extract] data_since``): the declared
    date itself, or for a time the day it falls on when it is that day's start (site-local midnight) and else the
    next day, so a day is held only when the declaration covers all of it (as the volume check holds a month only
    when it begins at or after the declared start). None when the config declares no start. A FHIR export's
    ``_since`` is not taken: it says where that export starts, and a warehouse kept across runs holds earlier loads
    (an incremental export's ``_since`` would cut them), while a run without --input has no manifest at all."""
    since = cfg.extract.declared("data_since", cfg.site_timezone)
    if since is None:
        return None
    zone = ZoneInfo(cfg.site_timezone)
    day = since.astimezone(zone).date()
    # the day's start as Extract.declared makes a date's (where midnight falls in a DST gap, the same instant)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return day if since <= start else day + dt.timedelta(days=1)


def _parameters_table(con: duckdb.DuckDBPyConnection, name: str, values: dict, types: dict | None = None) -> None:
    """One row, one typed column per parameter (numbers as written: 72.0 a DOUBLE, 18 a BIGINT); ``types``: the
    SQL type of a value that may be None (a NULL has no type of its own)."""
    kinds = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "VARCHAR", dt.date: "DATE"}
    select = ", ".join(f"CAST(? AS {(types or {}).get(k) or kinds[type(v)]}) AS {k}" for k, v in values.items())
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {select}", list(values.values()))


def load_reference(
    con: duckdb.DuckDBPyConnection, cfg: Config, input_dir: Path | None, audits: list, shown: Callable[[str], str] = str
) -> ReferenceInfo:
    """Every seed and parameter table of the run (for the audits given: the run's, or all for the gate);
    shown: how the run names a file of the input folder (the site's code map: ``remote_input.shown_as``)."""
    files = [{"name": "verdicts", "source": "shipped", "sha256": sha256_file(VERDICTS_CSV)}]
    known = audits_mod.discover(cfg.audits_path)
    # no site map given: no --input, or (a monthly extract folder) none beside the extracts; else the kept rows
    # would be lost for this run, its local codes audited unmapped and the month reported revised
    kept = kept_site_map_of(con) if local_code_map_path(cfg, input_dir) is None else None
    merged, local = code_map(known, cfg, input_dir, kept, shown)  # every audit found: one map whatever the run selects
    if local is not None:
        files.append({"name": "local_code_map", "source": "site", "path": shown(str(local)), "sha256": sha256_file(local)})
        _table(con, SITE_MAP_TABLE, merged.filter(pl.col("map_source") == "local"))
    elif kept is not None:
        paths = sorted(kept["source_file"].unique().to_list())
        files.append({"name": "local_code_map", "source": "warehouse", "path": ", ".join(paths)})
    tz = cfg.site_timezone
    _table(con, "ref_verdicts", _read_seed(VERDICTS_CSV).with_columns(pl.col("precedence").cast(pl.Int32)))
    _table(con, "ref_imaging_codes", _in_force(merged, tz))
    _parameters_table(con, "run_parameters", {"site_timezone": tz})
    declared = declared_start_date(cfg)
    versions, code_sets, parameters = {}, {}, {}
    for audit in audits:
        for seed in (audit.rules_csv, audit.value_sets_csv, audit.code_map_csv):
            if seed.is_file():  # shipped with the audit: named and hashed, no installation path
                files.append({"name": f"{audit.id}/{seed.name}", "source": "shipped", "sha256": sha256_file(seed)})
        values = audits_mod.parameters_for(audit, cfg.audits.get(audit.id), cfg.source_path or "config")
        # labels and explanations in the words of the parameters in force ('within 48 hours' when the run uses 48)
        rules = pl.DataFrame(
            audits_mod.rules_in_force(audit, values), schema={c: pl.String for c in audits_mod.RULE_COLUMNS}
        ).with_row_index("rule_order", offset=1)
        _table(con, f"{audit.id}__ref_rules", rules)
        measures = pl.DataFrame(
            [(m.id, m.label, m.unit, m.numerator, m.denominator, m.direction, m.headline) for m in audit.measures],
            schema=["measure_id", "label", "unit", "numerator", "denominator", "direction", "headline"],
            orient="row",
        )
        _table(con, f"{audit.id}__ref_measures", measures)
        value_sets = (
            _read_seed(audit.value_sets_csv)
            if audit.value_sets_csv.is_file()
            else pl.DataFrame(schema={c: pl.String for c in audits_mod.VALUE_SET_COLUMNS})
        )
        value_sets = value_sets.with_columns(
            pl.col("code").str.strip_chars().str.to_uppercase().str.replace_all(".", "", literal=True).alias("code_norm")
        )
        _table(con, f"{audit.id}__ref_value_sets", _in_force(value_sets, tz))
        parameters[audit.id] = values
        run_values = {"site_timezone": tz, "rule_set_version": audit.rule_set_version, "declared_start_date": declared}
        _parameters_table(con, f"{audit.id}__parameters", {**values, **run_values}, {"declared_start_date": "DATE"})
        versions[audit.id] = audit.rule_set_version
        code_sets[audit.id] = dict(audit.code_sets)
    return ReferenceInfo(versions, code_sets, parameters, files)


def set_period(con: duckdb.DuckDBPyConnection, first_month: str | None, last_month: str | None, trend_months: int = 24) -> None:
    """The months whose cases the marts report (by each case's site-local index month), and the
    first month of the trend that ends with the last one."""
    trend_first = None
    if last_month is not None:
        trend_first = months.shift(last_month, -(trend_months - 1))
    con.execute(
        "CREATE OR REPLACE TABLE audit_period AS SELECT CAST(? AS VARCHAR) AS first_month, "
        "CAST(? AS VARCHAR) AS last_month, CAST(? AS VARCHAR) AS trend_first_month",
        [first_month, last_month, trend_first],
    )
