"""Data-quality gate groundwork: GX on DuckDB (shim, read-only) and the suites' results."""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import sys

import duckdb
import pytest

from pipeline.quality import sql_checks, validate
from pipeline.quality.result import CheckResult
from pipeline.quality.validate import run_suites

NOW = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.UTC)
PARAMS = {"now": NOW}
MONTHS = 12  # 2024-01 .. 2024-12, 40 orders a month
PER_MONTH = 40


def _build(path, *, broken: bool = False) -> None:
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""
        CREATE TABLE src_procedures AS
        SELECT 'PR' || i AS procedure_id, 'P' || (i % 50) AS patient_id,
               TIMESTAMPTZ '2024-01-03 15:00:00+00' + to_days(i * 7) AS performed_at,
               '62270' AS procedure_code, 'Lumbar puncture' AS procedure_name,
               'Neurology' AS department, 'MAIN' AS site, 'DR1' AS provider_id,
               DATE '1980-05-01' AS patient_birth_date, 44.0::DOUBLE AS patient_age,
               22::INTEGER AS needle_gauge,
               CASE WHEN i % 2 = 0 THEN 'cutting' ELSE 'pencil_point' END AS needle_type,
               1::INTEGER AS attempts, 'lateral' AS patient_position,
               'procedures.csv' AS source_file, (i + 2)::BIGINT AS source_line
        FROM range(50) t(i)""")
    # 40 orders in each month of 2024, mid-month noon UTC (same month in New York).
    con.execute(f"""
        CREATE TABLE src_imaging_orders AS
        SELECT 'O' || (m * 100 + j) AS order_id, 'P' || ((m * 100 + j) % 50) AS patient_id,
               TIMESTAMPTZ '2024-01-10 12:00:00+00' + to_months(m) + to_hours(j) AS ordered_at,
               CASE WHEN j % 2 = 0 THEN '72148' ELSE '30855-1' END AS order_code,
               'MRI' AS order_name, 'Neurology' AS ordering_department, 'DR2' AS ordering_provider_id,
               'G97.1|R51' AS indication_codes, 'headache' AS indication_text,
               CASE WHEN j % 4 = 0 THEN 'Completed' ELSE 'ordered' END AS status,
               'routine' AS priority, 'MAIN' AS site,
               'orders.csv' AS source_file, (m * 100 + j + 2)::BIGINT AS source_line
        FROM range({MONTHS}) a(m), range({PER_MONTH}) b(j)""")
    con.execute("""
        CREATE TABLE src_diagnoses AS
        SELECT 'P' || (i % 50) AS patient_id, 'G971' AS diagnosis_code,
               TIMESTAMPTZ '2024-02-01 00:00:00+00' + to_days(i) AS recorded_at,
               'dx.csv' AS source_file, (i + 2)::BIGINT AS source_line
        FROM range(30) t(i)""")
    con.execute("""
        CREATE TABLE ref_imaging_codes (code_system VARCHAR, code VARCHAR, study_type VARCHAR);
        INSERT INTO ref_imaging_codes VALUES
          ('CPT', '72148', 'mri_spine'), ('LOINC', '30855-1', 'mri_spine'), ('LOCAL', 'CTMYELO', 'ct_myelography');
        CREATE TABLE mart_audited_orders AS
        SELECT order_id, 'PR1' AS case_id, 'appropriate' AS verdict,
               'mri_complete_spine_wwo' AS reasons
        FROM src_imaging_orders WHERE order_id LIKE 'O11%';
        CREATE TABLE mart_attrition (step_order INTEGER, step VARCHAR, unit VARCHAR, count BIGINT, kind VARCHAR);
        INSERT INTO mart_attrition VALUES
          (1, 'procedures', 'procedures', 50, 'step'), (2, 'index procedures', 'procedures', 40, 'step'),
          (2, 'not lumbar', 'procedures', 10, 'exclusion'),
          (3, 'cases', 'procedures', 10, 'step'), (1, 'orders', 'orders', 480, 'step'),
          (2, 'case orders', 'orders', 20, 'step');
    """)
    if broken:
        con.execute("""
            -- 1 duplicate order_id (2 rows carry it)
            UPDATE src_imaging_orders SET order_id = 'O1' WHERE order_id = 'O2';
            -- 2 orders in the future, 1 before the floor
            UPDATE src_imaging_orders SET ordered_at = TIMESTAMPTZ '2026-03-01 00:00:00+00'
              WHERE order_id IN ('O3', 'O5');
            UPDATE src_imaging_orders SET ordered_at = TIMESTAMPTZ '1999-12-31 00:00:00+00'
              WHERE order_id = 'O7';
            -- 3 bad statuses
            UPDATE src_imaging_orders SET status = 'lost' WHERE order_id IN ('O101', 'O102', 'O103');
            -- 30 of 480 orders (6.25%) with a local code nobody mapped: mapped share 93.75%
            UPDATE src_imaging_orders SET order_code = 'XMRI' || order_id
              WHERE order_id IN (SELECT order_id FROM src_imaging_orders WHERE order_id LIKE 'O2%' ORDER BY order_id LIMIT 30);
            -- 2 diagnoses of unknown patients
            INSERT INTO src_diagnoses VALUES
              ('NOBODY1', 'G971', TIMESTAMPTZ '2024-03-01 00:00:00+00', 'dx.csv', 100),
              ('NOBODY2', 'G971', TIMESTAMPTZ '2024-03-02 00:00:00+00', 'dx.csv', 101);
            -- 2024-06 keeps a tenth of its usual volume (4 of 40)
            DELETE FROM src_imaging_orders
              WHERE order_id IN (SELECT order_id FROM src_imaging_orders
                                 WHERE ordered_at >= TIMESTAMPTZ '2024-06-01 04:00:00+00'
                                   AND ordered_at <  TIMESTAMPTZ '2024-07-01 04:00:00+00'
                                 ORDER BY order_id OFFSET 4);
            -- outputs: an order twice, a bad verdict, attrition that grows
            INSERT INTO mart_audited_orders VALUES ('O110', 'PR1', 'maybe', 'x');
            UPDATE mart_attrition SET count = 60 WHERE unit = 'procedures' AND step_order = 3;
        """)
    con.close()


@pytest.fixture(scope="module")
def clean_wh(tmp_path_factory):
    path = tmp_path_factory.mktemp("wh") / "clean.duckdb"
    _build(path)
    return path


@pytest.fixture(scope="module")
def broken_wh(tmp_path_factory):
    path = tmp_path_factory.mktemp("wh") / "broken.duckdb"
    _build(path, broken=True)
    return path


@pytest.fixture(scope="module")
def broken_results(broken_wh) -> list[CheckResult]:
    """Every suite's results on the broken warehouse, in this process (run once for the tests that read them)."""
    return run_suites(broken_wh, suites=ALL, params=PARAMS)


def _by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    ids = [r.check_id for r in results]
    assert len(ids) == len(set(ids)), "check ids must be unique"
    return {r.check_id: r for r in results}


ALL = (*validate.ALL_SUITES, *validate.OUTPUT_SUITES)


# (a) the shim -----------------------------------------------------------------------------


def _validate_status(path):
    import great_expectations as gx

    from pipeline.quality.gx_duckdb import close_datasource, make_context

    context, ds = make_context(path, shim=False)
    asset = ds.add_table_asset(name="orders", table_name="src_imaging_orders")
    try:
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        return batch.validate(
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="status", value_set=["ordered", "scheduled", "completed", "cancelled", "Completed"]
            )
        )
    finally:  # GX's engine holds the file open until disposed
        close_datasource(ds)


def test_shim_is_needed_and_sufficient_for_pinned_gx(broken_wh):
    import great_expectations as gx

    from pipeline.quality import gx_duckdb

    assert gx.__version__ == gx_duckdb.PINNED_GX_VERSION
    gx_duckdb.disable_duckdb_persisted_connections()
    try:
        without = _validate_status(broken_wh)
        assert not without.success
        assert "list index out of range" in validate.gx_exception_message(without)
    finally:
        gx_duckdb.enable_duckdb_persisted_connections()
    gx_duckdb.enable_duckdb_persisted_connections()  # idempotent
    from great_expectations.execution_engine import sqlalchemy_execution_engine as eng

    assert sum(getattr(d, "value", d) == "duckdb" for d in eng._PERSISTED_CONNECTION_DIALECTS) == 1
    with_shim = _validate_status(broken_wh)
    assert validate.gx_exception_message(with_shim) is None
    assert with_shim.result["unexpected_count"] == 3  # the three 'lost' statuses


def test_shim_names_pinned_version_when_hook_is_gone(monkeypatch):
    from great_expectations.execution_engine import sqlalchemy_execution_engine as eng

    from pipeline.quality import gx_duckdb

    monkeypatch.delattr(eng, "_PERSISTED_CONNECTION_DIALECTS")
    with pytest.raises(gx_duckdb.GXShimError, match=gx_duckdb.PINNED_GX_VERSION.replace(".", r"\.")):
        gx_duckdb.enable_duckdb_persisted_connections()


# (b) clean warehouse ----------------------------------------------------------------------


def test_clean_warehouse_passes_everything(clean_wh, capfd):
    results = run_suites(clean_wh, suites=ALL, params=PARAMS)
    bad = [(r.check_id, r.status, r.violated_count, r.error) for r in results if r.status != "passed"]
    assert bad == []
    by_id = _by_id(results)
    assert by_id["orders.order_id.unique"].denominator == MONTHS * PER_MONTH
    # orders on the 10th and 11th only: January and December are covered in part, neither compared nor baseline
    assert by_id["orders.volume.monthly"].denominator == MONTHS - 2 - 3
    assert by_id["orders.order_code.mapped_share"].violated_count == 0
    for r in results:
        assert r.severity in ("blocking", "warning") and r.description
    assert "Calculating Metrics" not in capfd.readouterr().err  # no tqdm bars


# (c) broken warehouse ---------------------------------------------------------------------


def test_broken_warehouse_reports_each_failure(broken_wh, broken_results):
    by_id = _by_id(broken_results)
    expected = {
        "orders.order_id.unique": (2, "blocking"),
        "orders.ordered_at.not_future": (2, "blocking"),
        "orders.ordered_at.not_before_floor": (1, "blocking"),
        "orders.status.allowed": (3, "blocking"),
        "orders.order_code.mapped_share": (30, "warning"),
        "orders.order_code.format": (30, "warning"),
        "orders.volume.monthly": (1, "warning"),
        "audited_orders.order_id.unique": (2, "blocking"),
        "audited_orders.verdict.allowed": (1, "blocking"),
        "attrition.adds_up": (1, "blocking"),
    }
    for check_id, (count, severity) in expected.items():
        r = by_id[check_id]
        assert (r.status, r.violated_count, r.severity) == ("failed", count, severity), (check_id, r)
    failed = {cid for cid, r in by_id.items() if r.status != "passed"}
    assert failed == set(expected), failed - set(expected)

    assert by_id["orders.volume.monthly"].sample_keys == ["2024-06"]
    # the two rows sharing order id O1 are one example: an id is named once (the log read "e.g. O1, O1")
    assert by_id["orders.order_id.unique"].violated_count == 2 and by_id["orders.order_id.unique"].sample_keys == ["O1"]
    # samples are the first keys in order, the same every run
    assert by_id["orders.ordered_at.not_future"].sample_keys == ["O3", "O5"]
    assert by_id["orders.ordered_at.not_future"].sample_key == "order_id"
    assert by_id["orders.status.allowed"].sample_keys == ["O101", "O102", "O103"]
    assert by_id["orders.order_code.format"].sample_keys == ["O20", "O200", "O201", "O202", "O203"]  # text order
    # two diagnoses of patients no other feed knows, among the extract's: counted in a note, no warning (a patient
    # diagnosed and never imaged, without a patients table, has no other row); the check fails on a feed mismatch
    known = by_id["diagnoses.patient_id.known_patient"]
    assert (known.status, known.violated_count, known.sample_keys) == ("passed", 2, ["NOBODY1", "NOBODY2"])
    assert known.note.startswith(f"2 of {known.denominator:,} diagnoses belong to a patient with no procedure")
    assert by_id["orders.order_code.mapped_share"].denominator == 480 - 36
    assert by_id["orders.order_id.unique"].row_level is True

    # violations_sql lists exactly the counted rows, so the caller can set them aside
    con = duckdb.connect(str(broken_wh), read_only=True)
    try:
        for r in by_id.values():
            if r.row_level and r.violations_sql:
                n = con.execute(f"SELECT count(*) FROM ({r.violations_sql})").fetchone()[0]
                assert n == r.violated_count, (r.check_id, r.violations_sql)
    finally:
        con.close()


def test_missing_required_table_is_an_error_and_missing_diagnoses_is_skipped(tmp_path):
    path = tmp_path / "partial.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE src_imaging_orders (order_id VARCHAR, patient_id VARCHAR)")
    con.close()
    by_id = _by_id(run_suites(path, suites=("imaging_orders", "procedures", "diagnoses"), params=PARAMS))
    assert by_id["orders.columns.required"].status == "failed"
    assert sorted(by_id["orders.columns.required"].sample_keys) == ["order_code", "ordered_at", "ordering_department"]
    assert by_id["procedures.procedure_id.unique"].status == "error"
    assert not any(cid.startswith("diagnoses.") and r.status == "failed" for cid, r in by_id.items())


def test_now_is_required():
    with pytest.raises(ValueError, match="now"):
        validate.resolve_params({})


# (d) read-only -----------------------------------------------------------------------------


def _reader(path):
    """Another process that holds a read-only connection until told to stop."""
    import subprocess
    import sys

    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('SELECT count(*) FROM src_procedures').fetchone()[0], flush=True); "
        "sys.stdin.readline(); "
        "print(c.execute('SELECT count(*) FROM src_imaging_orders').fetchone()[0], flush=True)"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_gx_opens_the_warehouse_read_only(clean_wh):
    import sqlalchemy as sa

    from pipeline.quality.gx_duckdb import close_datasource, make_context

    reader = _reader(clean_wh)  # a concurrent reader, holding the file open
    try:
        assert reader.stdout.readline().strip() == "50"
        context, ds = make_context(clean_wh)
        engine = ds.get_execution_engine().engine
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM src_procedures")).scalar() == 50
            with pytest.raises(Exception, match="read-only"):
                conn.execute(sa.text("CREATE TABLE gx_was_here (x INTEGER)"))
        close_datasource(ds)
        results = run_suites(clean_wh, suites=("procedures",), params=PARAMS)
        assert results and all(r.status == "passed" for r in results)
        out, _ = reader.communicate("go\n", timeout=30)
        assert out.strip() == str(MONTHS * PER_MONTH)
        assert reader.returncode == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    # nothing lingers: this process can open the file read-write again
    con = duckdb.connect(str(clean_wh))
    con.close()


def test_the_gx_context_writes_no_yaml_as_tables_are_added(clean_wh, monkeypatch):
    """The ephemeral context serialised its whole config to YAML on each asset and batch definition added, more
    CPU than the validations of a small input's table; its config still lists what was added."""
    from great_expectations.data_context.types.base import DataContextConfig

    from pipeline.quality.gx_duckdb import close_datasource, make_context

    context, ds = make_context(clean_wh)
    dumped: list[str] = []
    real = DataContextConfig.to_yaml_str
    monkeypatch.setattr(DataContextConfig, "to_yaml_str", lambda self: dumped.append("yaml") or real(self))
    try:
        for table in ("src_procedures", "src_imaging_orders"):
            ds.add_table_asset(name=f"s__{table}", table_name=table).add_batch_definition_whole_table(f"s__{table}__whole")
    finally:
        close_datasource(ds)
    assert dumped == []
    assert sorted(a.name for a in context.config.fluent_datasources["warehouse"].assets) == [
        "s__src_imaging_orders",
        "s__src_procedures",
    ]


def test_validate_module_does_not_import_gx_at_import_time():
    import subprocess
    import sys

    code = "import sys, pipeline.quality.validate; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# (e) the monthly volume check counts months from 15-minute buckets ----------------------------


@pytest.mark.parametrize(
    ("zone", "floor", "first", "exact"),
    [
        ("America/New_York", "2000-01-01", "2001-09-01", True),
        ("Asia/Kathmandu", "2000-01-01", "2001-09-01", True),  # +05:45
        ("Australia/Lord_Howe", "2000-01-01", "2001-09-01", True),  # 30-minute DST
        ("America/St_Johns", "2000-01-01", "2001-09-01", False),  # DST changes at 00:01 local until 2011
        ("Africa/Monrovia", "1960-01-01", "1967-01-01", False),  # UTC-00:44:30 until 1972
    ],
)
def test_monthly_volume_buckets_agree_with_per_row_months(zone, floor, first, exact):
    con = duckdb.connect()
    # orders at every local month start, 1 us and 15 minutes either side, and one in every
    # 15 minutes (short months come out low)
    con.execute(f"""
        CREATE TABLE src_imaging_orders AS
        SELECT timezone('{zone}', m::TIMESTAMP) + to_microseconds(d) AS ordered_at
        FROM (SELECT unnest(generate_series(TIMESTAMP '{first}', TIMESTAMP '{first}' + INTERVAL 44 MONTH,
                                            INTERVAL 1 MONTH)) AS m),
             (SELECT unnest([-900000000, -1, 0, 1, 899999999]) AS d)
        UNION ALL
        SELECT TIMESTAMPTZ '{first} 00:00:00+00' + to_microseconds(i * 900000000 + 420000000)
        FROM range(128000) t(i)""")
    params = {"now": NOW.replace(year=2030), "site_timezone": zone, "volume_min_ratio": 0.97}
    p = validate.resolve_params({**params, "timestamp_floor": f"{floor}T00:00:00+00:00"})
    _, run = sql_checks.check_monthly_volume(p)
    n, denominator, failed, low, _, _ = run(con)
    assert failed == (n > 0)
    per_row = con.execute(run.per_row_sql).fetchall()
    assert (n, denominator, low) == (sum(r[1] for r in per_row), len(per_row), [r[0] for r in per_row if r[1]])
    assert denominator > 30 and n > 0
    assert con.execute(run.fast_sql).fetchall()[0][0] is exact  # else the per-row query ran


# (g) the gate's worker process --------------------------------------------------------------


def test_the_gate_worker_runs_every_expectation_without_pyspark(broken_wh, broken_results):
    """The run's GX worker (``workers.GxWorker``) leaves PySpark out of its import (GX loads it whenever it is
    installed, and the worker validates on DuckDB only): the same checks and results as in this process."""
    pytest.importorskip("pyspark")  # where PySpark is not installed there is nothing to leave out
    from pipeline import workers

    worker = workers.GxWorker()
    try:
        assert worker._pool is not None
        with pytest.raises(ImportError):
            worker._pool.submit(importlib.import_module, "pyspark").result()
        in_worker = worker.run_suites(broken_wh, ALL, PARAMS)
    finally:
        worker.close()

    def shown(results):
        return [(r.check_id, r.engine, r.status, r.violated_count, r.denominator, r.error) for r in results]

    assert shown(in_worker) == shown(broken_results)
    assert sum(r.engine == "gx" for r in broken_results) > 20 and any(r.status == "failed" for r in broken_results)


def test_a_deferred_module_is_loaded_on_first_use_and_works():
    """``workers.defer`` (the gate's worker defers scipy.stats, which GX imports for expectations our suites never
    use): ``from scipy import stats`` takes the module unloaded, and its first use loads it in full."""
    code = (
        "import types\n"
        "from pipeline import workers\n"
        "workers.defer('scipy.stats')\n"
        "from scipy import stats\n"
        "print(type(stats) is types.ModuleType)\n"
        "print(round(float(stats.entropy([0.5, 0.5], [0.25, 0.75])), 6))\n"
        "print(type(stats) is types.ModuleType)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "0.143841", "True"]


def test_a_deferred_top_level_package_is_imported_on_first_use_and_works():
    """The worker defers altair too, which one of GX's expectations imports (``import altair as alt``) to draw a
    chart: importing GX leaves it unloaded, and the first read through the name GX bound imports it in full, in
    its own place in ``sys.modules``."""
    code = (
        "import sys\n"
        "from pipeline import workers\n"
        "workers.defer('altair')\n"
        "import great_expectations.expectations.core.expect_column_kl_divergence_to_be_less_than as kl\n"
        "print('altair.vegalite' in sys.modules)\n"
        "chart = kl.alt.Chart\n"
        "import altair\n"
        "print('altair.vegalite' in sys.modules, chart is altair.Chart, type(altair).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "True", "module"]


# (e) reflection from DuckDB's own catalog -----------------------------------------------------------------------


def _reflected(url: str, path, names) -> dict:
    """Each table's columns and primary key as SQLAlchemy reflects them through the dialect ``url`` names (the
    types by their repr: SQLAlchemy's type objects do not compare by value); an error, by its class."""
    import sqlalchemy as sa

    from pipeline.quality import gx_duckdb

    gx_duckdb.register_dialect()
    engine = sa.create_engine(url, connect_args={"database": str(path), "read_only": True})
    found = {}
    try:
        for name in names:
            inspector = sa.inspect(engine)  # a fresh one: an inspector caches what it reflected
            columns = [{**c, "type": repr(c["type"])} for c in inspector.get_columns(name)]
            try:
                key = inspector.get_pk_constraint(name)["constrained_columns"]
            except sa.exc.ProgrammingError as exc:
                key = type(exc).__name__
            found[name] = (columns, key)
    finally:
        engine.dispose()
    return found


def test_the_catalog_dialect_reflects_the_tables_a_run_validates_as_duckdb_engine_does(deck_runs, monkeypatch):
    """GX's column reflection read from ``duckdb_columns()`` (``gx_duckdb.CatalogDialect``): on every table the
    suites validate in the deck's warehouse (the sources' views, each audit's marts), and on the run history (a
    table with a key), the same columns, types, nullability, defaults and comments as duckdb-engine's own
    PostgreSQL catalog query gives; duckdb-engine's primary-key query fails on DuckDB (GX takes that for "no
    key"), and the run history's key is its run id."""
    wh = deck_runs["runs"]["combined"]["warehouse"]
    validated = {t["table"] for suite in validate.ALL_SUITES for t in validate.load_suite(suite)["tables"]}
    for audit in (a for a in deck_runs["audits"].values() if a.runnable):
        validated |= {t["table"] for s in validate.OUTPUT_SUITES for t in validate.load_suite(s, f"{audit.id}__")["tables"]}
    names = sorted(validated | {"audit_runs"})
    assert {"src_imaging_orders", "csf_leak__mart_audited_orders", "low_back_pain__mart_audited_orders"} <= set(names)

    import duckdb_engine

    theirs = _reflected("duckdb://", wh, names)

    def refused(*args, **kwargs):
        raise AssertionError("duckdb-engine's catalog query ran")

    # ours reads every one of them itself (equal results by handing them on to duckdb-engine would prove nothing)
    monkeypatch.setattr(duckdb_engine.Dialect, "get_multi_columns", refused)
    monkeypatch.setattr(duckdb_engine.Dialect, "get_pk_constraint", refused)
    ours = _reflected("duckdb+order_audit://", wh, names)
    assert all(columns for columns, _ in ours.values())  # every one is there
    assert {n: c for n, (c, _) in ours.items()} == {n: c for n, (c, _) in theirs.items()}
    assert {k for _, k in theirs.values()} == {"ProgrammingError"}
    assert {n: k for n, (_, k) in ours.items()} == dict.fromkeys(names, []) | {"audit_runs": ["run_id"]}


@pytest.mark.filterwarnings("ignore:Did not recognize type:sqlalchemy.exc.SAWarning")  # the nested types, by both
def test_the_catalog_dialect_reads_every_duckdb_type_a_key_and_only_its_own_schema(tmp_path):
    """Every type DuckDB has, as duckdb-engine names them (nested types unrecognised by both, as NullType); an ENUM
    column (left to duckdb-engine's query); a default, a comment, a primary key, a view, names needing quotes."""
    path = tmp_path / "types.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TYPE mood AS ENUM ('calm', 'cross')")
    con.execute("""
        CREATE TABLE "every type" (
            v VARCHAR NOT NULL DEFAULT 'x', b BOOLEAN, i1 TINYINT, i2 SMALLINT, i4 INTEGER, i8 BIGINT, i16 HUGEINT,
            u1 UTINYINT, u2 USMALLINT, u4 UINTEGER, u8 UBIGINT, f FLOAT, d DOUBLE, n DECIMAL(18, 3), n4 DECIMAL(4, 1),
            dt DATE, t TIME, ts TIMESTAMP, tz TIMESTAMPTZ, ts_ms TIMESTAMP_MS, iv INTERVAL, bl BLOB, u UUID,
            l INTEGER[], s STRUCT(a INTEGER, b VARCHAR), m MAP(VARCHAR, INTEGER)
        )
    """)
    con.execute("COMMENT ON COLUMN \"every type\".d IS 'a comment'")
    con.execute("CREATE TABLE keyed (id VARCHAR PRIMARY KEY, n INTEGER)")
    con.execute("CREATE TABLE moods (m mood)")
    con.execute('CREATE VIEW "a view" AS SELECT v, n, tz FROM "every type"')
    con.execute("CREATE SCHEMA other")
    con.execute("CREATE TABLE other.keyed (elsewhere INTEGER)")  # same name, another schema: not read
    con.close()
    names = ["every type", "keyed", "moods", "a view"]
    theirs, ours = _reflected("duckdb://", path, names), _reflected("duckdb+order_audit://", path, names)
    # duckdb-engine does not scope its query by schema: other.keyed's column came with main.keyed's
    assert [c["name"] for c in theirs["keyed"][0]] == ["elsewhere", "id", "n"]
    theirs["keyed"] = ([c for c in theirs["keyed"][0] if c["name"] != "elsewhere"], theirs["keyed"][1])
    assert {n: c for n, (c, _) in ours.items()} == {n: c for n, (c, _) in theirs.items()}
    assert [c["name"] for c in ours["keyed"][0]] == ["id", "n"]
    assert ours["every type"][0][0] | {"type": None} == {
        "name": "v", "type": None, "nullable": False, "default": "'x'", "autoincrement": False, "comment": None,
    }  # fmt: skip
    assert [c["comment"] for c in ours["every type"][0] if c["comment"]] == ["a comment"]
    assert {n: k for n, (_, k) in ours.items()} == {"every type": [], "keyed": ["id"], "moods": [], "a view": []}


def test_a_run_that_fails_does_not_wait_for_the_gate_worker_s_import():
    """A run that stops on an error (a missing folder, a bad row) mostly stops while its worker still imports GX:
    leaving ``workers.Warm`` on an exception kills the worker, where a shutdown waited for the import (1-2 CPU-s
    and as long again of the error line's wall)."""
    import signal

    from pipeline import workers

    with pytest.raises(RuntimeError), workers.Warm(gx=True) as warm:
        (process,) = warm.gx._pool._processes.values()
        raise RuntimeError("the input folder is missing")
    assert process.exitcode == -signal.SIGKILL and warm.gx._pool is None
    with workers.Warm(gx=True) as warm:  # a run that ends well leaves it to exit
        (process,) = warm.gx._pool._processes.values()
    assert process.exitcode == 0


def test_the_types_a_suite_may_name_are_great_expectations_own():
    """A suite's type is checked as the file is read, without importing GX (``validate.GX_TYPES``): the list is GX's
    registry at the locked version, so no type GX runs is refused and none it lacks (ExpectationNotFoundError
    mid-gate, exit 70) passes."""
    import great_expectations  # noqa: F401  (registers the expectations)
    from great_expectations.expectations import registry

    assert set(registry.list_registered_expectation_implementations()) == validate.GX_TYPES
