"""Great Expectations 1.x on a DuckDB warehouse file: the shim and the context factory.

GX 1.24.1 has no DuckDB support. Through its SQL data source (duckdb-engine) every
row-level expectation fails with ``MetricResolutionError: list index out of range``:
GX fetches results after returning the connection to its pool, and a DuckDB result
dies with its connection (GX issues #10738, #11579). GX keeps one persisted connection
for the dialects listed in the private ``_PERSISTED_CONNECTION_DIALECTS``; adding
DuckDB there fixes it. The name is private, so GX is pinned and
``tests/test_validate.py`` proves the shim still works for the pinned version.

GX reflects each table it validates; duckdb-engine's reflection is SQLAlchemy's PostgreSQL
catalog query over DuckDB's ``pg_catalog`` views, ~0.1 s a table. ``CatalogDialect``
(``duckdb+order_audit://``) reads the same rows from DuckDB's ``duckdb_columns()``.

Import this module only from code that validates: ``import great_expectations``
costs 2-3 s.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb_engine

PINNED_GX_VERSION = "1.24.1"
DATASOURCE_NAME = "warehouse"
# duckdb-engine's dialect with DuckDB's own catalog for reflection (``CatalogDialect``), registered under this name
_DIALECT_URL = "duckdb+order_audit://"

_DUCKDB_DIALECT = "duckdb"


class GXShimError(RuntimeError):
    """The private GX hook the DuckDB shim relies on has changed."""


class _DialectName(str):
    """``"duckdb"`` with a ``.value``, as GX reads entries of the tuple.

    GX 1.24.1 checks ``engine.dialect_name in _PERSISTED_CONNECTION_DIALECTS`` (a plain
    string comparison) and, when building the engine, ``url.startswith(entry.value)``
    (which then gets a ``StaticPool``). ``GXSqlDialect`` has no DuckDB member.
    """

    @property
    def value(self) -> str:
        return str(self)


def enable_duckdb_persisted_connections() -> None:
    """Make GX keep one persisted connection for DuckDB (idempotent).

    Raises GXShimError, naming the pinned version, if the private hook is gone.
    """
    import great_expectations as gx
    from great_expectations.execution_engine import sqlalchemy_execution_engine as engine_mod

    current = getattr(engine_mod, "_PERSISTED_CONNECTION_DIALECTS", None)
    if not isinstance(current, tuple):
        raise GXShimError(
            "great_expectations.execution_engine.sqlalchemy_execution_engine."
            "_PERSISTED_CONNECTION_DIALECTS is missing or no longer a tuple in GX "
            f"{gx.__version__}; the DuckDB shim was written for GX {PINNED_GX_VERSION}. "
            f"Pin great-expectations=={PINNED_GX_VERSION} or re-check the shim "
            "(tests/test_validate.py::test_shim_*)."
        )
    if any(getattr(d, "value", d) == _DUCKDB_DIALECT for d in current):
        return
    engine_mod._PERSISTED_CONNECTION_DIALECTS = (*current, _DialectName(_DUCKDB_DIALECT))


def disable_duckdb_persisted_connections() -> None:
    """Undo the shim (tests use it to show the failure the shim prevents)."""
    from great_expectations.execution_engine import sqlalchemy_execution_engine as engine_mod

    current = getattr(engine_mod, "_PERSISTED_CONNECTION_DIALECTS", ())
    engine_mod._PERSISTED_CONNECTION_DIALECTS = tuple(d for d in current if getattr(d, "value", d) != _DUCKDB_DIALECT)


def register_dialect() -> None:
    """``CatalogDialect`` as SQLAlchemy's ``duckdb+order_audit://`` (idempotent)."""
    from sqlalchemy.dialects import registry

    registry.register("duckdb.order_audit", __name__, "CatalogDialect")


def make_context(warehouse_path: str | os.PathLike, *, shim: bool = True):
    """An ephemeral GX context with a read-only SQL data source on the DuckDB file.

    Returns ``(context, datasource)``. Progress bars are off (context variable
    ``progress_bars``; ``TQDM_DISABLE`` as a belt for code paths that ignore it).
    Nothing is written to disk: no ``gx/`` project directory, no data docs.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if shim:
        enable_duckdb_persisted_connections()
    register_dialect()
    path = Path(warehouse_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"warehouse file not found: {path}")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    _keep_config_unsaved(context)
    datasource = context.data_sources.add_sql(
        name=DATASOURCE_NAME,
        # the file goes to duckdb.connect as an argument, not inside the URL: GX substitutes $VAR in
        # connection strings (a folder named a$b failed, ${HOME} would point elsewhere) and a URL
        # would need escaping for every other character a path may hold
        connection_string=_DIALECT_URL,
        kwargs={"connect_args": {"database": str(path), "read_only": True}},
    )
    return context, datasource


def _keep_config_unsaved(context) -> None:
    """The context's project config is not written out as each data source, asset or batch definition is added.

    An ephemeral context still serialises its whole config to YAML into an in-memory store on every addition
    (``_save_project_config``), a store nothing of ours reads back; the cost grows with the assets it holds: 95 ms of
    CPU for 8 tables' assets and batch definitions, 18 ms without (about 40 ms of a small run's input gate, and
    20 ms of each audit's output checks). The config itself (``context.config``) is kept as before; if GX drops the
    private name, this only sets an unused attribute and the saves cost their old time.
    """
    context._save_project_config = lambda: None


def close_datasource(datasource) -> None:
    """Close every DuckDB connection GX holds for this data source.

    With the shim GX keeps one persisted connection (a ``StaticPool``) until the engine
    is disposed. DuckDB refuses a second in-process connection to the same file with a
    different configuration (e.g. the loader's read-write one) while it is open, so
    close it as soon as validation is done.
    """
    engines = []
    ee = getattr(datasource, "_execution_engine", None)
    if ee is not None:
        conn = getattr(ee, "_connection", None)
        if conn is not None:
            conn.close()
            ee._connection = None
        engines.append(ee.engine)
    engine = getattr(datasource, "_engine", None)
    if engine is not None:
        engines.append(engine)
    for engine in engines:
        engine.dispose()


# The columns of the named tables and views as PostgreSQL's catalog query gives them to SQLAlchemy (the rows
# ``PGDialect._get_columns_info`` reads), from ``duckdb_columns()``: the type's name by DuckDB's own
# ``pg_catalog.format_type``, with the type modifier its ``pg_attribute`` view computes, once per distinct type
_COLUMNS_SQL = """
WITH cols AS (
    SELECT table_name, column_index, column_name, column_default, is_nullable, comment, data_type,
           COALESCE(map_type_id_to_pg_oid(data_type_id), data_type_id + 16384) AS type_oid,
           CASE WHEN data_type ILIKE '%decimal%' THEN numeric_precision * 1000 + numeric_scale ELSE -1 END AS typemod
    FROM duckdb_columns()
    WHERE database_name = current_database() AND schema_name = current_schema() AND list_contains($names, table_name)
), types AS (
    SELECT DISTINCT type_oid, typemod, pg_catalog.format_type(type_oid, typemod) AS format_type FROM cols
)
SELECT column_name, format_type, column_default, NOT is_nullable, table_name, comment, data_type LIKE 'ENUM(%'
FROM cols JOIN types USING (type_oid, typemod)
ORDER BY table_name, column_index
"""
_PRIMARY_KEY_SQL = """
SELECT constraint_column_names FROM duckdb_constraints()
WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = ?
  AND constraint_type = 'PRIMARY KEY'
"""
_COLUMN_KEYS = ("name", "format_type", "default", "not_null", "table_name", "comment")
_NO_EXTRAS = {"generated": None, "identity_options": None, "collation": None}


class CatalogDialect(duckdb_engine.Dialect):
    """duckdb-engine's dialect, reflecting a table's columns from DuckDB's catalog functions.

    GX reflects every table it validates (``table.column_types``). duckdb-engine answers with
    SQLAlchemy's PostgreSQL catalog query over DuckDB's ``pg_catalog`` views: ~0.1 s a table on a
    warehouse of ~80 tables. The same rows from ``duckdb_columns()`` take ~0.01 s, and SQLAlchemy's
    own PostgreSQL code (``_get_columns_info``) turns them into the same columns and types
    (``tests/test_validate.py`` compares the two on the tables a run validates and on every DuckDB type).
    Anything else (every table at once, a schema named, an ENUM column) goes to duckdb-engine's query.
    Its primary-key query fails on DuckDB (``REGCLASS`` is not a DuckDB type; GX takes the error for "no
    key", after ~0.03 s a table): the key is read from ``duckdb_constraints()`` instead.
    """

    supports_statement_cache = True  # SQLAlchemy caches a dialect's compiled SQL only if each subclass says so

    def get_pk_constraint(self, connection, table_name, schema=None, **kw):
        if schema is not None:
            return super().get_pk_constraint(connection, table_name, schema=schema, **kw)
        keys = connection.connection.driver_connection.execute(_PRIMARY_KEY_SQL, [table_name]).fetchall()
        return {"constrained_columns": list(keys[0][0]) if keys else [], "name": None, "comment": None}

    def get_multi_columns(self, connection, schema=None, filter_names=None, scope=None, kind=None, **kw):
        if schema is None and filter_names:
            found = connection.connection.driver_connection.execute(_COLUMNS_SQL, {"names": list(filter_names)}).fetchall()
            if not any(r[-1] for r in found):
                rows = [dict(zip(_COLUMN_KEYS, r[:-1], strict=True)) | _NO_EXTRAS for r in found]
                return self._get_columns_info(rows, {}, {}, schema).items()
        return super().get_multi_columns(connection, schema=schema, filter_names=filter_names, scope=scope, kind=kind, **kw)
