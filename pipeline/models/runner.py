"""Execute the SQL models (sql/staging -> intermediate -> marts) in dependency order.

A model is one SELECT in one file; its table is named after the file. Dependencies are
read from the text: a model depends on every other model whose name it mentions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

import duckdb

from pipeline.resources import sql_dir

log = logging.getLogger(__name__)
LAYERS = ("staging", "intermediate", "marts")
# Staging models are views: they rename and cast, and the intermediate models filter to the
# patients that matter before anything is materialised (10M orders never get copied).
MATERIALISATION = {"staging": "VIEW", "intermediate": "TABLE", "marts": "TABLE"}


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    sql: str

    @property
    def materialisation(self) -> str:
        """The layer's default, or `-- materialised: view|table` on the model's first line."""
        first = self.sql.lstrip().splitlines()[0] if self.sql.strip() else ""
        match = re.match(r"--\s*materiali[sz]ed:\s*(view|table)\b", first, re.IGNORECASE)
        return match.group(1).upper() if match else MATERIALISATION[self.layer]


def discover_models(root: Path | None = None) -> list[Model]:
    root = root or sql_dir()
    models = []
    for layer in LAYERS:
        for path in sorted((root / layer).glob("*.sql")):
            models.append(Model(path.stem, layer, path, path.read_text(encoding="utf-8")))
    return models


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def execution_order(models: list[Model]) -> list[Model]:
    """Layers in order; within the graph, every model after the models it mentions."""
    by_name = {m.name: m for m in models}
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    graph = {}
    for m in models:
        words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", _strip_comments(m.sql)))
        deps = {d for d in words & by_name.keys() if d != m.name}
        for d in deps:
            if rank[by_name[d].layer] > rank[m.layer]:
                raise ValueError(f"model {m.name} ({m.layer}) reads {d} ({by_name[d].layer}): layers flow one way")
        graph[m.name] = deps
    return [by_name[n] for n in TopologicalSorter(graph).static_order()]


def run_models(con: duckdb.DuckDBPyConnection, models: list[Model] | None = None, layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Build the models of the given layers as tables; returns the names in the order built."""
    ordered = [m for m in execution_order(models or discover_models()) if m.layer in layers]
    for m in ordered:
        log.debug("building %s.%s", m.layer, m.name)
        kind = m.materialisation
        # a model may change from table to view between versions of the package
        other = "TABLE" if kind == "VIEW" else "VIEW"
        exists_as_other = con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE table_name = ? AND ? = 'TABLE' UNION ALL "
            "SELECT 1 FROM duckdb_views() WHERE view_name = ? AND ? = 'VIEW'",
            [m.name, other, m.name, other],
        ).fetchall()
        if exists_as_other:
            con.execute(f"DROP {other} {m.name}")
        con.execute(f"CREATE OR REPLACE {kind} {m.name} AS\n{m.sql}")
    return [m.name for m in ordered]
