"""Reference seeds (value sets, imaging code map, rule registry) and run parameters -> ref_* tables."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline import months
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.ingest.files import sha256_file
from pipeline.resources import REFERENCE_DIR

STUDY_TYPES = {
    "mri_spine",
    "mri_brain",
    "ct_head",
    "ct_spine",
    "ct_myelography",
    "myelography",
    "myelography_injection",
    "dsm",
    "mr_myelography",
    "cisternography",
    "out_of_scope",
}
CONTRASTS = {"without", "with", "without_and_with", "intrathecal", ""}
CODE_MAP_COLUMNS = ("code_system", "code", "study_type", "modality", "regions", "contrast", "description")
LOCAL_MAP_NAME = "local_code_map.csv"


@dataclass(frozen=True)
class ReferenceInfo:
    rule_set_version: str
    code_set_versions: dict
    files: list[dict]  # name, source and sha256 of every seed read (and the path of the site's local map)


def manifest() -> dict:
    return tomllib.loads((REFERENCE_DIR / "manifest.toml").read_text(encoding="utf-8"))


def _read_seed(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).with_columns(pl.all().fill_null(""))


def read_code_map(path: Path, source: str) -> pl.DataFrame:
    """A code map file (shipped or site-local), checked column by column."""
    try:
        df = _read_seed(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(
            f"{path}: cannot read the code map ({exc.__class__.__name__}); "
            "it must be a UTF-8 CSV with columns " + ",".join(CODE_MAP_COLUMNS)
        ) from None
    missing = [c for c in CODE_MAP_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{path}, line 1: code map lacks column(s) {', '.join(missing)}; copy the header of examples/local_code_map.csv"
        )
    df = df.with_row_index("line", offset=2)
    for column, allowed in (("study_type", STUDY_TYPES), ("contrast", CONTRASTS)):
        bad = df.filter(~pl.col(column).str.strip_chars().str.to_lowercase().is_in(list(allowed)))
        if bad.height:
            row = bad.row(0, named=True)
            raise ConfigError(
                f"{path}, line {row['line']}, column '{column}': '{row[column]}' is not one of "
                f"{', '.join(sorted(a for a in allowed if a))}; fix the code map"
            )
    bad = df.filter(~pl.col("regions").str.to_uppercase().str.contains(r"^[CTL]*$"))
    if bad.height:
        row = bad.row(0, named=True)
        raise ConfigError(
            f"{path}, line {row['line']}, column 'regions': '{row['regions']}' must use only the letters C, T and L"
        )
    return df.select(
        pl.col("code_system").str.strip_chars(),
        pl.col("code").str.strip_chars().str.to_uppercase(),
        pl.col("study_type").str.strip_chars().str.to_lowercase(),
        pl.col("modality").str.strip_chars(),
        pl.col("regions").str.strip_chars().str.to_uppercase(),
        pl.col("contrast").str.strip_chars().str.to_lowercase(),
        pl.col("description"),
        pl.lit(str(path)).alias("source_file"),
        pl.lit(source).alias("map_source"),
    )


def local_code_map_path(cfg: Config, input_dir: Path | None) -> Path | None:
    """The site map: the config's path, else local_code_map.csv beside the extracts."""
    if cfg.local_code_map:
        path = Path(cfg.local_code_map)
        if not path.is_file():
            raise ConfigError(f"{path}: local code map not found; fix local_code_map in the config")
        return path
    if input_dir is not None and (input_dir / LOCAL_MAP_NAME).is_file():
        return input_dir / LOCAL_MAP_NAME
    return None


def load_reference(con: duckdb.DuckDBPyConnection, cfg: Config, input_dir: Path | None) -> ReferenceInfo:
    """Create ref_* tables and the one-row audit_parameters table."""
    files = []
    seeds = {name: REFERENCE_DIR / f"{name}.csv" for name in ("value_sets", "imaging_code_map", "rules", "verdicts")}
    for name, path in seeds.items():
        # shipped with the software: named and hashed, no installation path (outputs name no file of the package)
        files.append({"name": name, "source": "shipped", "sha256": sha256_file(path)})

    value_sets = _read_seed(seeds["value_sets"]).with_columns(
        pl.col("code").str.strip_chars().str.to_uppercase().str.replace_all(".", "", literal=True).alias("code_norm")
    )
    shipped = read_code_map(seeds["imaging_code_map"], "shipped")
    maps = [shipped]
    local = local_code_map_path(cfg, input_dir)
    if local is not None:
        maps.append(read_code_map(local, "local"))
        files.append({"name": "local_code_map", "source": "site", "path": str(local), "sha256": sha256_file(local)})
    # a site row overrides the shipped row for the same code
    code_map = (
        pl.concat(maps)
        .with_row_index("_pos")
        .sort(["code", pl.col("map_source") == "local", "_pos"])
        .unique("code", keep="last", maintain_order=True)
        .drop("_pos")
    )
    rules = _read_seed(seeds["rules"]).with_row_index("rule_order", offset=1)
    verdicts = _read_seed(seeds["verdicts"]).with_columns(pl.col("precedence").cast(pl.Int32))

    for table, frame in (
        ("ref_value_sets", value_sets),
        ("ref_imaging_codes", code_map),
        ("ref_rules", rules),
        ("ref_verdicts", verdicts),
    ):
        con.register("_seed", frame.to_arrow())
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _seed")
        con.unregister("_seed")

    c = cfg.case
    con.execute(
        """CREATE OR REPLACE TABLE audit_parameters AS SELECT
        CAST(? AS VARCHAR) AS site_timezone, CAST(? AS DOUBLE) AS min_age_years,
        CAST(? AS DOUBLE) AS leak_evidence_days, CAST(? AS DOUBLE) AS audit_window_days,
        CAST(? AS DOUBLE) AS outside_window_context_days, CAST(? AS DOUBLE) AS premature_hours,
        CAST(? AS DOUBLE) AS episode_hours""",
        [
            cfg.site_timezone,
            c.min_age_years,
            c.leak_evidence_days,
            c.audit_window_days,
            c.outside_window_context_days,
            c.premature_hours,
            c.episode_hours,
        ],
    )
    m = manifest()
    return ReferenceInfo(
        m["rule_set_version"],
        dict(m.get("code_sets", {})) | {k: v for k, v in m.items() if k not in ("rule_set_version", "code_sets")},
        files,
    )


def set_period(con: duckdb.DuckDBPyConnection, first_month: str | None, last_month: str | None, trend_months: int = 24) -> None:
    """The months whose cases the marts report (by the index procedure's site-local month), and the
    first month of the trend that ends with the last one."""
    trend_first = None
    if last_month is not None:
        trend_first = months.shift(last_month, -(trend_months - 1))
    con.execute(
        "CREATE OR REPLACE TABLE audit_period AS SELECT CAST(? AS VARCHAR) AS first_month, "
        "CAST(? AS VARCHAR) AS last_month, CAST(? AS VARCHAR) AS trend_first_month",
        [first_month, last_month, trend_first],
    )
