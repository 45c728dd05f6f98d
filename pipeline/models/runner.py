"""Build the SQL models in dependency order: the core models (sql/), each audit's, and the generated ones.

A model is one SELECT in one file; its table is named after the file and its layer comes from the
name (``stg_``, ``int_``, ``mart_``; after the ``<audit id>__`` prefix for an audit's models).
Its dependencies are the tables it reads, taken from the SQL as sqlglot parses it (DuckDB dialect).
A model that reads a table no model, generated model or declared source provides is refused, and
so is one that reads another audit's tables or a later layer.

Table or view: ``stg_`` models are views, ``int_`` and ``mart_`` models tables, unless the model's
leading comment block holds a line ``-- materialised: view`` (or ``table``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache, cached_property
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

from pipeline.errors import ConfigError, first_line
from pipeline.ingest.contract import CONTRACTS
from pipeline.resources import sql_dir

log = logging.getLogger(__name__)
LAYERS = ("stg", "int", "mart")
MATERIALISATION = {"stg": "VIEW", "int": "TABLE", "mart": "TABLE"}
_DIRECTIVE = re.compile(r"^--\s*materiali[sz]ed:\s*(view|table)\s*$", re.IGNORECASE)
# what an audit's SQL can get wrong (a column, a table, a function, a cast); not an interrupt, memory or the disk
AUTHOR_ERRORS = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException, duckdb.ConversionException)

# tables the run itself provides (not models): what a model may read besides other models
RUN_SOURCES = (
    *(f"src_{c.name}" for c in CONTRACTS),  # the delivered rows (ingest.source_store)
    "run_parameters",  # site_timezone
    "audit_period",  # first_month, last_month, trend_first_month of the reported period
    "input_columns",  # table_name, column_name: the optional contract columns the extracts hold
    "pseudonym_key_pads",  # the HMAC pads of the pseudonym key (session only)
    "ref_verdicts",  # the verdict vocabulary and precedence (pipeline/models/verdicts.csv)
    "ref_imaging_codes",  # the merged code map: every audit's code_map.csv with the site's map over it
)
AUDIT_SOURCES = ("parameters", "ref_rules", "ref_measures", "ref_value_sets")  # <id>__<name>: each audit's own seeds


@dataclass(frozen=True)
class Model:
    name: str
    path: Path | None  # None for a generated model
    sql: str
    audit: str | None = None  # the audit it belongs to; None for a core model
    made_from: str | None = None  # a generated model: what the engine writes it from (an audit's file, in words)

    @property
    def layer(self) -> str:
        return self.name.removeprefix(f"{self.audit}__").split("_", 1)[0]

    @property
    def where(self) -> str:
        if self.path:
            return str(self.path)
        return f"the generated model {self.name}" + (f" (written from {self.made_from})" if self.made_from else "")

    @property
    def materialisation(self) -> str:
        """The layer's default, or a ``-- materialised: view|table`` line in the leading comment block."""
        for line in self.sql.strip().splitlines():
            line = line.strip()
            if not line.startswith("--"):
                break
            match = _DIRECTIVE.match(line)
            if match:
                return match.group(1).upper()
        return MATERIALISATION[self.layer]

    @cached_property
    def reads(self) -> frozenset[str]:
        """Every table or view the SQL reads, common table expressions left out."""
        try:
            kind, tables = _tables_read(self.sql)
        except sqlglot.errors.ParseError as exc:
            raise ConfigError(f"{self.where}: cannot parse the SQL ({str(exc).splitlines()[0]}); fix the model") from None
        if kind != "query":
            raise ConfigError(f"{self.where}: a model is one SELECT; this file holds a {kind.upper()}")
        return tables


@cache
def _tables_read(sql: str) -> tuple[str, frozenset[str]]:
    """(the statement's kind, the tables it reads but defines no CTE for), by the SQL's text. Parsing the models is a
    tenth of a small run's CPU (0.35 of 4 s), and the same text parses the same: a process forked from one that parsed
    them (the test suite's commands, tests/cli_child.py) reads them for free. A text that does not parse raises, and
    is not kept."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    if not isinstance(tree, exp.Query):
        return tree.key, frozenset()
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return "query", frozenset(t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes)


def _layer_of(name: str) -> str | None:
    head = name.split("_", 1)[0]
    return head if head in LAYERS else None


def core_models(root: Path | None = None) -> list[Model]:
    """The models every audit reads (sql/*.sql): staging of the input tables."""
    models = []
    for path in sorted((root or sql_dir()).glob("*.sql")):
        if _layer_of(path.stem) is None:
            raise ConfigError(f"{path}: a model's name starts with its layer ({', '.join(f'{x}_' for x in LAYERS)})")
        models.append(Model(path.stem, path, path.read_text(encoding="utf-8")))
    return models


def audit_models(audit) -> list[Model]:
    """The audit's own models (audits/<id>/sql) and those the engine generates for it."""
    from pipeline.audits import model_files
    from pipeline.models import generated, measures

    own = [Model(name, path, path.read_text(encoding="utf-8"), audit.id) for name, path in model_files(audit).items()]
    return own + generated.models_for(audit) + measures.models_for(audit)


def declared_sources(audit_ids: list[str]) -> set[str]:
    return set(RUN_SOURCES) | {f"{a}__{s}" for a in audit_ids for s in AUDIT_SOURCES}


def execution_order(models: list[Model], audit_ids: list[str] | None = None) -> list[Model]:
    """Every model after the models it reads; refuses a model reading what nothing provides,
    another audit's tables, or a later layer."""
    by_name: dict[str, Model] = {}
    for m in models:
        if m.name in by_name:
            raise ConfigError(f"{m.where}: a model named {m.name} exists twice ({by_name[m.name].where})")
        by_name[m.name] = m
    audit_ids = sorted({m.audit for m in models if m.audit} | set(audit_ids or []))
    sources = declared_sources(audit_ids)
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    graph = {}
    for m in models:
        deps = set()
        for table in sorted(m.reads):
            owner = table.split("__", 1)[0] if "__" in table else None
            # first: another audit's table is refused as such, loaded in this run or not ("which no model provides"
            # sent an author of a run with --audit looking for a missing model)
            if owner is not None and owner != m.audit:
                who = f"audit {m.audit}" if m.audit else "a core model"
                raise ConfigError(f"{m.where}: reads {table}, a table of audit {owner}; {who} reads only its own and the core's")
            if table in by_name:
                dep = by_name[table]
                if rank[dep.layer] > rank[m.layer] and dep.audit == m.audit:
                    raise ConfigError(f"{m.where}: reads {table} ({dep.layer}), a later layer than its own ({m.layer})")
                deps.add(table)
            elif table not in sources:
                raise ConfigError(
                    f"{m.where}: reads {table}, which no model, generated model or declared source provides "
                    f"(sources: src_<table>, run_parameters, audit_period, input_columns, pseudonym_key_pads, ref_verdicts, "
                    f"ref_imaging_codes, <audit>__parameters, <audit>__ref_rules, <audit>__ref_measures, <audit>__ref_value_sets)"
                )
        graph[m.name] = deps
    try:
        return [by_name[n] for n in TopologicalSorter(graph).static_order()]
    except CycleError as exc:
        raise ConfigError(f"the models read each other in a circle: {' -> '.join(exc.args[1])}") from None


def run_models(con: duckdb.DuckDBPyConnection, models: list[Model], layers: tuple[str, ...] = LAYERS, spark=None) -> list[str]:
    """Build the models of the given layers (tables or views); returns the names in the order built.
    With ``spark`` (a ``pipeline.models.spark.SparkModels``) they run on Spark and land here."""
    if spark is not None:
        return spark.run_models(con, models, layers)
    ordered = [m for m in execution_order(models) if m.layer in layers]
    for m in ordered:
        log.debug("building %s (%s)", m.name, m.layer)
        build(con, m)
    return [m.name for m in ordered]


def build(con: duckdb.DuckDBPyConnection, m: Model, sql: str | None = None) -> None:
    """The model's table or view in the warehouse, from its SQL or from ``sql`` (its result computed elsewhere)."""
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
    try:
        con.execute(f"CREATE OR REPLACE {kind} {m.name} AS\n{sql or m.sql}")
    except AUTHOR_ERRORS as exc:
        if m.audit is None or sql is not None:  # the engine's own SQL: a bug, with its traceback
            raise
        # an audit's model naming a column its inputs lack, a function DuckDB has not, a cast its data refuses: the
        # author's to fix, in the file that says it (it was exit 70, "a bug in order-audit", naming no file)
        fix = "fix the audit's SQL" if m.path else "fix what it is written from"
        raise ConfigError(f"{m.where}: DuckDB cannot build the model ({first_line(exc)}); {fix}") from None
