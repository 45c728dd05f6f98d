"""Great Expectations 1.x on a DuckDB warehouse file: the shim and the context factory.

GX 1.24.1 has no DuckDB support. Through its SQL data source (duckdb-engine) every
row-level expectation fails with ``MetricResolutionError: list index out of range``:
GX fetches results after returning the connection to its pool, and a DuckDB result
dies with its connection (GX issues #10738, #11579). GX keeps one persisted connection
for the dialects listed in the private ``_PERSISTED_CONNECTION_DIALECTS``; adding
DuckDB there fixes it. The name is private, so GX is pinned and
``tests/test_validate.py`` proves the shim still works for the pinned version.

Import this module only from code that validates: ``import great_expectations``
costs 2-3 s.
"""

from __future__ import annotations

import os
from pathlib import Path

PINNED_GX_VERSION = "1.24.1"
DATASOURCE_NAME = "warehouse"

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
    path = Path(warehouse_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"warehouse file not found: {path}")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_sql(
        name=DATASOURCE_NAME,
        # the file goes to duckdb.connect as an argument, not inside the URL: GX substitutes $VAR in
        # connection strings (a folder named a$b failed, ${HOME} would point elsewhere) and a URL
        # would need escaping for every other character a path may hold
        connection_string="duckdb://",
        kwargs={"connect_args": {"database": str(path), "read_only": True}},
    )
    return context, datasource


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
