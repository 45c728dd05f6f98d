"""A site's words for the contract's coded values (status, needle type, patient position).

Shipped defaults (``pipeline/reference/value_maps.csv``: common EHR vocabularies such as
Canceled / Sent / Final) and the config's ``[values.<table>.<column>]`` both map a site's
value, matched case-insensitively, to one of the values the contract allows; the config
wins. An unknown value is never guessed: it stays as delivered, the data-quality gate
treats it as today (status: rows set aside), and `unknown_values` names it with the
config lines that would map it.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from pipeline.errors import ConfigError, printable
from pipeline.ingest.contract import CONTRACT_BY_NAME, values_showing_a_patient_id
from pipeline.resources import REFERENCE_DIR

SHIPPED = REFERENCE_DIR / "value_maps.csv"
# a column with more distinct unknown values than this is not a vocabulary that a few map lines
# fix (more likely a shifted column): its values are counted, not listed (they could be ids)
MAX_NAMED_VALUES = 20


def constrained_columns() -> dict[tuple[str, str], tuple[str, ...]]:
    """(table, column) -> allowed values, for every coded column of the contract."""
    return {(t, c): allowed for t, contract in CONTRACT_BY_NAME.items() for c, allowed in contract.vocabularies}


def parse_config_maps(values: dict, where: str) -> dict[str, dict[str, dict[str, str]]]:
    """``[values.<table>.<column>]`` sections: site value -> contract value, checked."""
    allowed_by = constrained_columns()
    out: dict[str, dict[str, dict[str, str]]] = {}
    for table, columns in values.items():
        if table not in CONTRACT_BY_NAME or not isinstance(columns, dict):
            raise ConfigError(f"{where}: unknown table '{table}'; known: {', '.join(CONTRACT_BY_NAME)}")
        for column, mapping in columns.items():
            allowed = allowed_by.get((table, column))
            if allowed is None:
                coded = sorted(c for t, c in allowed_by if t == table)
                raise ConfigError(
                    f"{where}.{table}: '{column}' is not a coded column of {table}; values map for: {', '.join(coded) or 'none'}"
                )
            if not isinstance(mapping, dict):
                raise ConfigError(f'{where}.{table}.{column}: expected lines like "Site value" = "{allowed[0]}"')
            for site_value, contract_value in mapping.items():
                if not isinstance(contract_value, str) or contract_value.strip().lower() not in allowed:
                    raise ConfigError(
                        f'{where}.{table}.{column}: "{site_value}" = {contract_value!r}: the value must be one of '
                        f"{', '.join(allowed)}"
                    )
            out.setdefault(table, {})[column] = {str(k): v.strip().lower() for k, v in mapping.items()}
    return out


def _shipped() -> pl.DataFrame:
    return pl.read_csv(SHIPPED, infer_schema=False, glob=False)


def effective_map(table: str, column: str, configured: dict) -> dict[str, tuple[str, str]]:
    """lower-case site value -> (contract value, where the line comes from), for one coded column.

    The contract's own values map to themselves; the config's lines override shipped ones."""
    allowed = constrained_columns()[(table, column)]
    out = {v: (v, "contract") for v in allowed}
    shipped = _shipped().filter((pl.col("table") == table) & (pl.col("column") == column))
    for site_value, value in shipped.select("site_value", "contract_value").iter_rows():
        if site_value.strip().lower() != value:  # a contract word reads as itself anyway
            out[site_value.strip().lower()] = (value, f"shipped map ({SHIPPED.name})")
    for site_value, value in configured.get(table, {}).get(column, {}).items():
        out[site_value.strip().lower()] = (value, "config")
    return out


def _as_is(readings: dict[str, tuple[str, str]]) -> list[str]:
    """The words that read as themselves (the contract's values), lower-case."""
    return sorted(w for w, (value, _) in readings.items() if w == value and w == w.lower())


def lower_expr(text: pl.Expr, table: str, column: str, configured: dict) -> pl.Expr:
    """The lower-case text `mapped_expr` reads, null where the text already is a contract value:
    lower-casing every row cost more than the whole map (Polars skips the null rows)."""
    as_is = _as_is(effective_map(table, column, configured))
    return pl.when(text.is_in(as_is)).then(None).otherwise(text).str.to_lowercase()


def mapped_expr(lower: pl.Expr, text: pl.Expr, table: str, column: str, configured: dict) -> pl.Expr:
    """The column read through its map: a known word -> the contract's value; else as delivered.

    `lower` (``lower_expr``) and `text` should be columns of their own (computed once). A
    contract value first: Polars then skips the map for the rows that need none, so canonical
    extracts pay next to nothing (1M orders: +0.02 s CPU, against +0.16 s for the chain alone).
    One `when` per contract value with an `is_in` list: streamable (Polars' `replace` is not)."""
    readings = effective_map(table, column, configured)
    as_is = _as_is(readings)
    by_value: dict[str, list[str]] = {}
    for word, (value, _) in readings.items():
        if word != value:
            by_value.setdefault(value, []).append(word)
    mapped = text
    if by_value:
        chain = None
        for value, words in sorted(by_value.items()):
            cond = lower.is_in(sorted(words))
            chain = pl.when(cond).then(pl.lit(value)) if chain is None else chain.when(cond).then(pl.lit(value))
        mapped = chain.otherwise(text)
    return pl.when(text.is_in(as_is)).then(text).when(lower.is_in(as_is)).then(lower).otherwise(mapped)


# ----------------------------------------------------------------------------- unknown values


@dataclass(frozen=True)
class UnknownValues:
    """The values of one coded column that no map knows, with what to add to the config."""

    table: str
    column: str
    path: str
    values: list[tuple[str, int]]  # (value as delivered, rows), most frequent first; empty when too many to list
    distinct: int
    rows: int
    # rows whose value is a patient id of the table (columns shifted, or status and patient_id swapped): no value is
    # then listed, as the published log, run.json and report would print the ids
    patient_ids: int = 0

    @property
    def effect(self) -> str:
        if (self.table, self.column) == ("imaging_orders", "status"):
            return "its rows are set aside (an unknown status could hide a cancellation)"
        return "the rows stay in, but the value counts as unknown"

    def config_lines(self) -> list[str]:
        allowed = constrained_columns()[(self.table, self.column)]
        lines = [f"[values.{self.table}.{self.column}]"]
        lines += [f'{toml_string(v)} = "?"   # one of {", ".join(allowed)}' for v, _ in self.values]
        return lines

    def message(self) -> str:
        if self.patient_ids:
            return (
                f"{self.path}: {self.table}.{self.column} holds {self.distinct} different values no map knows "
                f"({self.rows} rows), {self.patient_ids} of those rows a patient id of the delivery (not shown): the columns "
                f"look shifted or swapped; check the column mapping and the delimiter (order-audit inspect lists the columns)"
            )
        if not self.values:
            return (
                f"{self.path}: {self.table}.{self.column} holds {self.distinct} different values no map knows "
                f"({self.rows} rows): too many for a vocabulary; check the column mapping and the delimiter "
                f"(order-audit inspect lists the columns)"
            )
        # escaped (errors.printable): a value holding a line break or a bidi override keeps the line one line, as read
        listed = ", ".join(f"'{printable(v)}' ({n} row{'s' if n != 1 else ''})" for v, n in self.values)
        return (
            f"{self.path}: {self.table}.{self.column}: no map knows {listed}; {self.effect}. "
            f"To map them, add to the config: " + " / ".join(self.config_lines())
        )

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "column": self.column,
            "file": self.path,
            "values": [{"value": v, "rows": n} for v, n in self.values],
            "distinct_values": self.distinct,
            "rows": self.rows,
            "rows_holding_patient_ids": self.patient_ids,
            "effect": self.effect,
            "config_lines": self.config_lines() if self.values else [],
            "message": self.message(),
        }


def toml_string(text: str) -> str:
    """A TOML basic string: keys and values of the config lines we suggest. JSON's escapes are TOML's; the control
    and format characters JSON leaves as they are (DEL, which TOML refuses raw; a bidi override or a zero-width
    space, which would make the line read otherwise) are written as \\u escapes, so the line pasted reads back
    as the value delivered."""
    return "".join(
        (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}") if unicodedata.category(c)[0] == "C" else c
        for c in json.dumps(text, ensure_ascii=False)
    )


def toml_list(texts: list[str]) -> str:
    """A TOML array of basic strings (toml_string): a list setting we suggest, timestamp_formats = [...]."""
    return f"[{', '.join(toml_string(t) for t in texts)}]"


def unknown_values(
    con, typed_parquet: Path, table: str, path: str, columns: list[str], skip: str | None = None
) -> list[UnknownValues]:
    """Count the values of each coded column that are not contract values after the maps (DuckDB on the typed file).
    ``skip``: a reason of the loader's ``rejects`` table whose lines hold no values (a repeated header row)."""
    from pipeline.sqltext import ident, literal

    found = []
    skipped = "AND source_line NOT IN (SELECT source_line FROM rejects WHERE reason = ?)" if skip else ""
    for (t, column), allowed in constrained_columns().items():
        if t != table or column not in columns:
            continue
        rows = con.execute(
            f"SELECT {ident(column)}, count(*) AS n FROM read_parquet({literal(typed_parquet)}) "
            f"WHERE {ident(column)} IS NOT NULL AND NOT list_contains(?, {ident(column)}) {skipped} "
            "GROUP BY 1 ORDER BY n DESC, 1",
            [list(allowed), *([skip] if skip else [])],
        ).fetchall()
        if not rows:
            continue
        total = sum(n for _, n in rows)
        named = list(rows) if len(rows) <= MAX_NAMED_VALUES else []
        found.append(UnknownValues(table, column, path, named, len(rows), total))
    return found


def without_patient_ids(unknowns: list[UnknownValues], typed_parquets: list[Path]) -> list[UnknownValues]:
    """``unknowns`` with no value listed where one is a patient id of any table of the delivery: a status column
    swapped with patient_id (its ids no id of its own table) printed 15 MRNs in the log, run.json, the report and the
    gate's message. Read only when a coded column holds values no map knows."""
    import duckdb

    from pipeline.sqltext import literal

    listed = sorted({v for u in unknowns for v, _ in u.values})
    if not listed or not typed_parquets:
        return unknowns
    files = ", ".join(literal(p) for p in typed_parquets)
    with duckdb.connect() as con:
        held = {
            v
            for (v,) in con.execute(
                values_showing_a_patient_id(
                    "SELECT unnest(?::VARCHAR[])", f"SELECT patient_id FROM read_parquet([{files}], union_by_name = true)"
                ),
                [listed],
            ).fetchall()
        }
    out = []
    for u in unknowns:
        ids = sum(n for v, n in u.values if v in held)
        out.append(replace(u, values=[], patient_ids=ids) if ids else u)
    return out


def note(unknowns: list[UnknownValues]) -> str:
    """Lines to add under a blocked gate's message: an unmapped status fails orders.status.allowed."""
    return "".join("\n  " + u.message() for u in unknowns)
