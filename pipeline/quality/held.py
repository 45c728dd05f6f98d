"""What the run's warehouse holds, read once before the gate (the warehouse opened read-only, in one place).

A monthly extract holds one month. The gate judges it against what the warehouse holds of the months before:
the patients it knows, the birth dates it was given, the orders of the months the volume check compares. It reads
them from the store's Parquet files (``<warehouse>.sources``), of the loads the warehouse holds now, without the
rows it set aside (``src_excluded``) and without the loads this delivery replaces when it merges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline import warehouse
from pipeline.db import frame
from pipeline.ingest import source_store
from pipeline.models import reference
from pipeline.quality.catalog import relations


@dataclass(frozen=True)
class Held:
    sources: Path  # the warehouse's store of delivered rows, <warehouse>.sources
    site_map: pl.DataFrame | None  # the site code map rows it keeps (reference.keep_site_map)
    loads: pl.DataFrame  # table_name, load_id, first_month, last_month: the loads whose rows it holds
    excluded: pl.DataFrame  # load_id, source_line: their rows it set aside (replaced by a later row, rejected)

    def files(self, table: str, delivered=None) -> list[Path]:
        """The store files of the table's loads the warehouse holds, in load order, but those ``delivered`` (the
        run's ``PreparedTable`` of the table, or None) replaces as it merges: a file of the same months is a
        correction (``ledger.merge_table``), so the held file's rows are not the warehouse's after this run."""
        return self._files(table, delivered, replaced=False)

    def replaced(self, table: str, delivered) -> list[Path]:
        """The store files of the table's held loads ``delivered`` replaces whole as it merges (those ``files``
        leaves out): the months they held are the delivery's alone after the run."""
        return self._files(table, delivered, replaced=True) if delivered is not None else []

    def _files(self, table: str, delivered, replaced: bool) -> list[Path]:
        loads = self.loads.filter(pl.col("table_name") == table)
        if delivered is not None:
            same_months = (pl.col("first_month").eq_missing(delivered.first_month)) & (
                pl.col("last_month").eq_missing(delivered.last_month)
            )
            loads = loads.filter(same_months if replaced else ~same_months)
        return [self.sources / table / f"{load_id}.parquet" for load_id in loads["load_id"]]  # each there (read)


def require_complete(wh_path: Path) -> None:
    """Stop with one line when the warehouse's store lacks a file its ledger names (``source_store.require_complete``);
    nothing when there is no warehouse file yet."""
    if not wh_path.is_file():
        return
    con = warehouse.connect(wh_path, read_only=True)
    try:
        source_store.require_complete(con)
    finally:
        con.close()


def read(wh_path: Path) -> Held | None:
    """The warehouse's holdings, or None when there is no warehouse file yet (a first run)."""
    if not wh_path.is_file():
        return None
    con = warehouse.connect(wh_path, read_only=True)  # another writer: exit 4 naming it, not DuckDB's lock text
    try:
        source_store.require_complete(con)
        present = relations(con)
        site_map = reference.kept_site_map_of(con)
        inside = source_store.rows_inside(con)  # an older warehouse's rows not in the store yet: not judged with
        loads = frame(
            con,
            f"SELECT table_name, load_id, first_month, last_month FROM load_ledger WHERE {source_store.LIVE_LOAD} "
            "ORDER BY loaded_at, load_id"
            if "load_ledger" in present
            else "SELECT ''::VARCHAR AS table_name, ''::VARCHAR AS load_id, ''::VARCHAR AS first_month, "
            "''::VARCHAR AS last_month WHERE false",
        )
        excluded = frame(
            con,
            "SELECT load_id, source_line FROM src_excluded"
            if "src_excluded" in present
            else "SELECT ''::VARCHAR AS load_id, 0::BIGINT AS source_line WHERE false",
        )
    finally:
        con.close()
    loads = loads.filter(~pl.col("table_name").is_in(sorted(inside)))
    real = warehouse.real_path(wh_path)
    return Held(source_store.store_root(real), site_map, loads, excluded)
