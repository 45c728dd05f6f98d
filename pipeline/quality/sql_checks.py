"""SQL checks: what GX cannot express over one batch (two tables, or an aggregate over time).

A suite's ``sql_checks`` name these functions (``implementation``); each returns the tables it needs
and a function that, on a DuckDB connection, gives the violated count, the denominator, whether the
check failed, sample keys and the query listing the violating rows. ``run_sql_check`` turns that into
the same ``CheckResult`` as a GX check.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.ingest.code_systems import FORMS
from pipeline.ingest.contract import CUT_OFF_REASON
from pipeline.ingest.held_patient_ids import (
    PUBLISHED_TEXT,
    WITHHELD_REASON,
    WITHHELD_TEXT,
    holds_patient_id,
    may_hold_patient_id,
)
from pipeline.quality.catalog import (
    HELD_BIRTHS_VIEW,
    HELD_ORDERS_VIEW,
    HELD_PATIENTS_VIEW,
    HELD_REPLACED_ORDERS_VIEW,
    relations,
)
from pipeline.quality.lookalikes import check_lookalike_departments
from pipeline.quality.result import MONTHS, SAMPLE_SIZE, CheckResult, examples
from pipeline.sqltext import typed_literal
from pipeline.wording import counted

# the feeds a run may lack (procedures: a run of the low back pain audit alone, or a monthly extract whose
# procedures an earlier month's brought): a check that needs one passes when it is absent, nothing to check.
# The procedures' own suite runs when an audit needs them: there a missing table is an error.
# The warehouse's held views stand in for a feed the extract lacks: like it, they may be absent (no --warehouse).
_OPTIONAL_FEEDS = ("src_procedures", "src_diagnoses", "src_patients", HELD_BIRTHS_VIEW)
_OWN_REQUIRED_FEED = {"procedures.": "src_procedures"}


def run_sql_check(con, spec: dict, existing: set[str], p: dict) -> CheckResult:
    fn: Callable = _SQL_CHECKS[spec["implementation"].rsplit(":", 1)[1]]
    res = CheckResult(
        check_id=spec["check_id"],
        table="",
        severity=spec["severity"],
        status="error",
        violated_count=None,
        denominator=None,
        percent=None,
        description=spec["description"],
        row_level=spec["row_level"],
        engine="sql",
        set_aside_by_loader=spec.get("set_aside_by") == "loader",
    )
    t0 = time.perf_counter()
    try:
        needed, run = fn(p)
        res.table = needed[0]
        # a tuple among the tables: any one of them will do (the extract's procedures or the warehouse's)
        missing = [g for g in (t if isinstance(t, tuple) else (t,) for t in needed) if not set(g) & existing]
        if missing:
            own = next((t for prefix, t in _OWN_REQUIRED_FEED.items() if spec["check_id"].startswith(prefix)), None)
            named = ", ".join(" or ".join(g) for g in missing)
            if all(t in _OPTIONAL_FEEDS and t != own for g in missing for t in g):
                res.status, res.violated_count, res.denominator, res.percent = "passed", 0, 0, 0.0
                res.error = f"{named} absent (optional feed): nothing to check"
            else:
                res.error = f"missing table(s): {named}"
            return res
        res.sample_key = getattr(run, "sample_key", None)
        violated, denominator, failed, sample, vsql, *note = run(con)
        res.note = note[0] if note else None
        res.note_warns = len(note) > 1 and note[1]  # a note that is a warning: published, and worth a look
        res.violated_count, res.denominator = violated, denominator
        res.percent = round(100.0 * violated / denominator, 4) if denominator else 0.0
        res.status = "failed" if failed else "passed"
        res.sample_keys = examples(sample)
        res.violations_sql = vsql
    except Exception as exc:  # a check that cannot run is reported, not raised
        res.status, res.error = "error", f"{type(exc).__name__}: {exc}"
    finally:
        res.seconds = time.perf_counter() - t0
    return res


def _count_and_sample(con, vsql: str, key: str) -> tuple[int, list]:
    """The number of violating rows and the first few keys, in one pass over the query."""
    rows = con.execute(f"SELECT count(*) OVER () AS n, {key} FROM ({vsql}) ORDER BY 2 LIMIT {SAMPLE_SIZE}").fetchall()
    return (rows[0][0] if rows else 0), [r[1] for r in rows]


def _rows_check(vsql: str, total_sql: str, key: str, tables: list[str]):
    """A check whose violations are the rows `vsql` lists, out of the rows `total_sql` counts."""

    def run(con):
        n, sample = _count_and_sample(con, vsql, key)
        total = con.execute(total_sql).fetchall()[0][0]
        return n, total, n > 0, sample, vsql

    run.sample_key = key
    return tables, run


# where a diagnosis's patient is known from: the extract's procedures, orders and patients table (a monthly extract
# may lack its procedures: an earlier month's brought them; a low back pain patient often has neither a procedure
# nor an order, only the patients row that gives the age), and the patients of the extracts the run's warehouse
# holds (gate.build_gate_db's HELD_PATIENTS_VIEW)
KNOWN_PATIENT_SOURCES = ("src_procedures", "src_imaging_orders", "src_patients", HELD_PATIENTS_VIEW)


# the share of the diagnoses whose patient no other feed knows at which the check fails: the feeds' patient ids do
# not match (an extract keyed by another id knows next to none). Below it a diagnosis of an unknown patient is no
# finding: a low back pain patient diagnosed and never imaged has no other row where the site sends no patients
# table (optional), nor has one whose first order comes in a later month's extract; the synthetic data split into
# monthly extracts warned in 15 of 17 months (up to two thirds of a month's diagnoses, no patients table)
KNOWN_PATIENT_MISMATCH_SHARE = 0.9
# and it fails only from this many diagnoses: a monthly extract of seven diagnoses whose patients' orders come in
# the next month's is all unknown, and no sign of ids that do not match
KNOWN_PATIENT_LEAST = 20


def check_diagnoses_known_patient(p: dict):
    def run(con):
        present = relations(con)
        vsql = "SELECT d.* FROM src_diagnoses d WHERE d.patient_id IS NOT NULL" + "".join(
            f" AND NOT EXISTS (SELECT 1 FROM {t} k WHERE k.patient_id = d.patient_id)"
            for t in KNOWN_PATIENT_SOURCES
            if t in present
        )
        n, sample = _count_and_sample(con, vsql, "patient_id")
        total = con.execute("SELECT count(*) FROM src_diagnoses").fetchall()[0][0]
        failed = total >= KNOWN_PATIENT_LEAST and n >= KNOWN_PATIENT_MISMATCH_SHARE * total
        note = (
            f"{n:,} of {total:,} diagnoses belong to a patient with no procedure, order or patients row in this extract "
            "or the warehouse (a patient diagnosed and not imaged where no patients table is sent, or whose first order "
            f"comes in a later extract); the check warns from {KNOWN_PATIENT_MISMATCH_SHARE:.0%} of "
            f"{KNOWN_PATIENT_LEAST} diagnoses or more, where the feeds' patient ids do not match"
            if n and not failed
            else None
        )
        return n, total, failed, sample, vsql, note

    run.sample_key = "patient_id"
    # any source of known patients will do: a monthly extract delivered without its orders file (the warehouse holds
    # earlier ones) had the check 'could not run: missing table(s): src_imaging_orders', a warning in words no
    # operator reads as 'the orders did not come' (period_status says that)
    return ["src_diagnoses", KNOWN_PATIENT_SOURCES], run


# the tables whose patient ids must join: each one the run has (orders always; procedures, diagnoses, patients
# when the audits read them)
PATIENT_ID_TABLES = ("src_imaging_orders", "src_procedures", "src_diagnoses", "src_patients")
# the share of the all-digit patient ids spelled two ways at which the check fails: one such pair among thousands
# of patients is a coincidence a site may have; a table that lost its zeros spells most of its ids so
LEADING_ZERO_SHARE = 0.01


def check_patient_ids_keep_leading_zeros(p: dict):
    """All-digit patient ids that one table spells with leading zeros and another without (000104501, 104501):
    Excel drops the zeros of an id it holds as a number, and the tables then join on no patient (an extract whose
    procedures workbook did audited 1 case of 8, exit 0, no word). Counts the ids of a table with no zero-led id
    that no other table spells so but another spells with zeros (the ids that join on nothing), out of the
    distinct all-digit ids; fails when they are LEADING_ZERO_SHARE of them or more. An id another table spells the
    same is no loss: two sites' numbering, one padded and one not, puts 000123 and 123 (two patients) in the
    orders, and a table from the second site alone then lost nothing (counting every id spelled two ways in any
    table stopped such a run).

    Counting them takes every table's distinct ids (~7 CPU-s at 10M orders), so it is done only when the tables
    can disagree so: one table has ids with a leading zero (not zeros alone) and another has ids that start with
    1-9 and none with a zero, the shape a table that lost its zeros leaves (a scan of each table, ~0.5 CPU-s at
    10M orders). Else nothing is compared: 0 of 0."""

    def run(con):
        tables = [t for t in PATIENT_ID_TABLES if t in relations(con)]
        # per table, its last id that starts with a zero and whether any starts with 1-9 (a scan, no copy of a value)
        shapes = con.execute(
            " UNION ALL ".join(
                f"SELECT max(patient_id) FILTER (WHERE patient_id >= '0' AND patient_id < '1'), "
                f"bool_or(patient_id >= '1' AND patient_id < ':') FROM {t}"
                for t in tables
            )
        ).fetchall()
        # an id of zeros alone ('0', a placeholder) does not make a table's ids padded
        padded = [bool(zero_led and zero_led.lstrip("0")) for zero_led, _ in shapes]
        unpadded = [t for t, (_, digit_led), pad in zip(tables, shapes, padded, strict=True) if digit_led and not pad]
        # each table's distinct all-digit ids and their digits (materialised: the filter pushed into the union ran
        # the pattern on every row of the orders, not on their distinct ids)
        unpadded_names = ", ".join(f"'{t}'" for t in unpadded) or "NULL"
        ids = " UNION ALL ".join(f"SELECT DISTINCT '{t}' AS source, patient_id FROM {t}" for t in tables)
        spelled = (
            f"WITH ids AS MATERIALIZED ({ids}), spelled AS MATERIALIZED (SELECT source, patient_id, "
            "ltrim(patient_id, '0') AS digits FROM ids WHERE regexp_full_match(patient_id, '[0-9]*[1-9][0-9]*')), "
            # an id of a table without zero-led ids that no other table spells so, and another spells with zeros
            "lost AS (SELECT DISTINCT s.patient_id, s.digits FROM spelled s "
            f"WHERE s.source IN ({unpadded_names}) "
            "AND NOT EXISTS (SELECT 1 FROM spelled o WHERE o.source <> s.source AND o.patient_id = s.patient_id) "
            "AND EXISTS (SELECT 1 FROM spelled o WHERE o.source <> s.source AND o.digits = s.digits "
            "AND o.patient_id <> s.patient_id))"
        )
        # the examples: the lost spellings and the zero-led ones of the same digits
        vsql = f"{spelled} SELECT DISTINCT patient_id FROM spelled WHERE digits IN (SELECT digits FROM lost)"
        if not (any(padded) and unpadded):
            return 0, 0, False, [], vsql
        twice, total = con.execute(
            f"{spelled} SELECT (SELECT count(*) FROM lost), count(DISTINCT digits) FROM spelled"
        ).fetchall()[0]
        sample = _count_and_sample(con, vsql, "patient_id")[1] if twice else []
        return twice, total, twice > 0 and twice >= LEADING_ZERO_SHARE * total, sample, vsql

    run.sample_key = "patient_id"
    return ["src_imaging_orders"], run


# where an order's patient's birth date is known from: the extract's procedures and the procedures the run's
# warehouse holds (gate.build_gate_db's HELD_BIRTHS_VIEW; a monthly extract may bring its orders alone)
BIRTH_SOURCES = ("src_procedures", HELD_BIRTHS_VIEW)


def _births_sql(present: set[str]) -> str:
    """Each patient's birth date: the latest the extract's procedures give, else the latest the warehouse holds. The
    extract's counts first: it is the newer delivery, often the correction itself, and the held files still hold
    the file it replaces (superseded only once the run merges): a June file delivered again with a typo'd birth
    date fixed still warned on every June order of the patient, by the date it fixed."""
    per_patient = "SELECT patient_id, max(patient_birth_date) AS birth FROM {} WHERE patient_birth_date IS NOT NULL GROUP BY 1"
    given, held = (per_patient.format(t) if t in present else None for t in BIRTH_SOURCES)
    if given and held:
        return (
            f"WITH given AS ({given}) SELECT * FROM given"
            f" UNION ALL SELECT * FROM ({held}) AS h ANTI JOIN given USING (patient_id)"
        )
    return given or held or ""


def check_orders_after_birth(p: dict):
    def run(con):
        vsql = (
            # the time limit once per distinct birth date (~30k), not per joined order (3.3M): the cast and the day
            # subtraction follow the session time zone (ICU) and cost ~0.1 us each
            f"WITH births AS ({_births_sql(relations(con))}), "
            "limits AS (SELECT birth, CAST(birth AS TIMESTAMPTZ) - INTERVAL 1 DAY AS earliest "
            " FROM (SELECT DISTINCT birth FROM births) AS d) "
            "SELECT o.* FROM src_imaging_orders o JOIN births b USING (patient_id) JOIN limits l USING (birth) "
            "WHERE o.ordered_at < l.earliest"
        )
        n, sample = _count_and_sample(con, vsql, "order_id")
        total = con.execute("SELECT count(*) FROM src_imaging_orders WHERE ordered_at IS NOT NULL").fetchall()[0][0]
        return n, total, n > 0, sample, vsql

    run.sample_key = "order_id"
    return ["src_imaging_orders", BIRTH_SOURCES], run


def check_audited_orders_known(p: dict):
    mart = p.get("table_prefix", "") + "mart_audited_orders"  # the audit's (pipeline/audits.py)
    return _rows_check(
        f"SELECT a.* FROM {mart} a WHERE NOT EXISTS (SELECT 1 FROM src_imaging_orders o WHERE o.order_id = a.order_id)",
        f"SELECT count(*) FROM {mart}",
        "order_id",
        [mart, "src_imaging_orders"],
    )


def check_mapped_share(p: dict):
    min_share = float(p["min_mapped_share"])
    vsql = (
        "SELECT o.* FROM src_imaging_orders o WHERE o.order_code IS NOT NULL "
        # regexp_extract(...) = '': NOT regexp_full_match, once per distinct code (expectations/*.json notes)
        f"AND regexp_extract(upper(trim(o.order_code)), '{FORMS['CPT']}') = '' "
        "AND upper(trim(o.order_code)) NOT IN "
        "(SELECT upper(trim(code)) FROM ref_imaging_codes WHERE code IS NOT NULL)"
    )

    def run(con):
        n, sample = _count_and_sample(con, vsql, "order_id")
        total = con.execute("SELECT count(*) FROM src_imaging_orders WHERE order_code IS NOT NULL").fetchall()[0][0]
        share = 1.0 - n / total if total else 1.0
        return n, total, share < min_share, sample, vsql

    run.sample_key = "order_id"
    return ["src_imaging_orders", "ref_imaging_codes"], run


def check_monthly_volume(p: dict):
    def run(con):
        held = HELD_ORDERS_VIEW in relations(con)
        vsql, fast_sql, judged_sql, edges_sql = _volume_sql(p, held)
        rows = con.execute(fast_sql).fetchall()
        exact = rows[0][0]
        judged = [row[1:] for row in rows if row[1] is not None] if exact else con.execute(judged_sql).fetchall()
        low = [(month, n, baseline) for month, is_low, n, baseline in judged if is_low]
        edges = con.execute(edges_sql).fetchall()
        partial = _partial_months_note(edges, p.get("data_through"), p.get("data_since"))
        partial = _replaced_months_note(partial, edges, [month for month, *_ in judged])
        note = "; ".join(filter(None, (_low_months_note(low, int(p["volume_trailing_months"])), partial))) or None
        return len(low), len(judged), bool(low), [month for month, _, _ in low], vsql.strip(), note

    run.sample_key = MONTHS
    # tests compare the two (on the extract alone: _volume_sql(p, held=True) gives the queries with the warehouse's)
    _, run.fast_sql, run.per_row_sql, _ = _volume_sql(p, held=False)
    return ["src_imaging_orders"], run


def _volume_sql(p: dict, held: bool) -> tuple[str, str, str, str]:
    """The volume check's queries: the low months with their counts (the query a result shows), the months judged
    with their verdicts (fast, and per row: see below), and the counts of orders left out at the extract's ends.
    ``held``: the gate has the warehouse's orders (``HELD_ORDERS_VIEW``) to count the months before the extract's."""
    ratio = float(p["volume_min_ratio"])
    k = int(p["volume_trailing_months"])
    tz = str(p["site_timezone"]).replace("'", "''")
    now = typed_literal(p["now"])
    floor = typed_literal(p["timestamp_floor"])
    in_range = f"ordered_at >= {floor} AND ordered_at <= {now}"  # out-of-range times are other checks' business
    # Calendar months in the site zone, zero-filled so a missing month counts as 0 orders.
    # Only the months the extract covers whole are judged: the data's first month when its first order is on the
    # 1st, its last when its last order is on the month's last day, every month between. An extract that starts or
    # ends mid-month, or a few orders dated past its end (orders after the last index month), is not a drop in
    # volume; those orders are counted in the result's note instead.
    # An extract that declares how far it reaches (``data_through``: a FHIR export's transactionTime) is judged
    # by that instead at its end: every month that ended by then is whole, whatever its last day holds (a small
    # site's empty last Sunday), and a declared month without an order is a drop.
    # Its start likewise (``data_since``: a FHIR export's ``_since``, the server exported what changed after it):
    # the first month that begins (site-local) at or after it is whole, whatever its first day holds; the months
    # before hold only the orders changed since, so they are covered in part (their orders counted in the note).
    since = p.get("data_since")
    if since is None:
        first_full = f"({_first_whole_month('first_date')})"
    else:
        local = f"timezone('{tz}', {typed_literal(since)})"
        first_full = (
            f"(date_trunc('month', {local}) "
            f"+ CASE WHEN {local} = date_trunc('month', {local}) THEN INTERVAL 0 MONTH ELSE INTERVAL 1 MONTH END)"
        )
    through = p.get("data_through")
    # the last month a span of orders ending on last_date covers whole is its own when last_date is its last day
    whole = "CASE WHEN last_date = last_day(last_date) THEN INTERVAL 0 MONTH ELSE INTERVAL 1 MONTH END"
    if through is None:
        last_full = f"(date_trunc('month', last_date) - {whole})"
    else:
        last_full = f"(date_trunc('month', timezone('{tz}', {typed_literal(through)})) - INTERVAL 1 MONTH)"
    covered = f"""span AS (
  SELECT timezone('{tz}', min(ordered_at))::DATE AS first_date, timezone('{tz}', max(ordered_at))::DATE AS last_date
  FROM src_imaging_orders WHERE {in_range}
), covered AS (
  SELECT first_date, last_date,
         {first_full}::DATE AS first_full,
         {last_full}::DATE AS last_full
  FROM span
)"""
    # The months counted: the extract's, and with the warehouse's orders, the warehouse's of the trailing months
    # before the extract's first whole month too, as it will hold them after this run's merge (the extract's rows
    # replace the held rows of the same order id). A monthly extract holds one month: on its own, nothing came
    # before it to compare it with, and a June delivered with a third of its orders passed. The months judged are
    # the extract's own whole months (and those of a held file it replaces whole, below): a file of late orders for
    # a held month judges it only if it covers it whole, and then with the warehouse's orders of it beside its own.
    # The calendar starts at the warehouse's first whole month (its first order on the 1st) when that is later
    # than the trailing months' first: a site's first months are not zeros.
    # A held file the extract replaces whole (a file of the same months, ledger.merge_table) leaves its months the
    # extract's orders alone: the months it covered whole are judged too, whatever the extract covers. Two late
    # orders of March, in a file of March alone, replaced the monthly job's March file of 1,835 orders; the
    # extract covered no month whole, and nothing was judged.
    if held:
        replaced = f"""replaced AS (
  SELECT {_first_whole_month("first_date")} AS first_full,
         date_trunc('month', last_date) - {whole} AS last_full
  FROM (SELECT timezone('{tz}', min(ordered_at))::DATE AS first_date, timezone('{tz}', max(ordered_at))::DATE AS last_date
        FROM {HELD_REPLACED_ORDERS_VIEW} WHERE {in_range})
), judged_span AS (
  SELECT least(CASE WHEN c.first_full <= c.last_full THEN c.first_full END,
               CASE WHEN r.first_full <= r.last_full THEN r.first_full END)::DATE AS first_full,
         greatest(CASE WHEN c.first_full <= c.last_full THEN c.last_full END,
                  CASE WHEN r.first_full <= r.last_full THEN r.last_full END)::DATE AS last_full
  FROM covered AS c, replaced AS r
)"""
        window = (
            f"ordered_at >= timezone('{tz}', ((SELECT first_full FROM judged_span) - INTERVAL {k} MONTH)::TIMESTAMP) "
            f"AND ordered_at < timezone('{tz}', ((SELECT last_full FROM judged_span) + INTERVAL 1 MONTH)::TIMESTAMP)"
        )
        # where the calendar starts: the first order before the extract's first whole month decides it only if it falls
        # within the month before the trailing ones or later (one earlier starts it at the trailing months' first all
        # the same), so only those months are read, not every month the warehouse holds
        before = (
            f"ordered_at >= timezone('{tz}', ((SELECT first_full FROM judged_span) - INTERVAL {k + 1} MONTH)::TIMESTAMP) "
            f"AND ordered_at < timezone('{tz}', (SELECT first_full FROM judged_span)::TIMESTAMP)"
        )
        counted_rows = f"""{replaced}, counted AS (
  SELECT ordered_at FROM src_imaging_orders WHERE {in_range}
  UNION ALL
  SELECT h.ordered_at FROM (SELECT order_id, ordered_at FROM {HELD_ORDERS_VIEW} WHERE {in_range} AND {window}) AS h
  ANTI JOIN src_imaging_orders AS s USING (order_id)
), starts AS (
  SELECT c.*, CASE WHEN h.first_date IS NULL THEN c.first_full
                   ELSE greatest(c.first_full - INTERVAL {k} MONTH, {_first_whole_month("h.first_date")})::DATE
              END AS cal_start
  FROM judged_span AS c, (
    SELECT timezone('{tz}', min(ordered_at))::DATE AS first_date FROM (
      SELECT ordered_at FROM src_imaging_orders WHERE {in_range} AND {before}
      UNION ALL
      SELECT ordered_at FROM {HELD_ORDERS_VIEW} WHERE {in_range} AND {before}
    )
  ) AS h
)"""
    else:
        counted_rows = f"""counted AS (
  SELECT ordered_at FROM src_imaging_orders WHERE {in_range}
), starts AS (
  SELECT first_full, last_full, first_full AS cal_start FROM covered
)"""
    rest = f"""), cal AS (
  SELECT unnest(generate_series(cal_start, last_full, INTERVAL 1 MONTH))::DATE AS month FROM starts
), filled AS (
  SELECT cal.month, coalesce(m.n, 0) AS n FROM cal LEFT JOIN m USING (month)
), judged AS (
  SELECT month, n,
         median(n) OVER (ORDER BY month ROWS BETWEEN {k} PRECEDING AND 1 PRECEDING) AS baseline,
         count(*) OVER (ORDER BY month ROWS BETWEEN {k} PRECEDING AND 1 PRECEDING) AS n_trailing
  FROM filled
)
"""
    judge = f"""FROM judged
WHERE n_trailing = {k}
  AND month >= (SELECT first_full FROM starts)
  AND month < date_trunc('month', timezone('{tz}', {now}))::DATE"""
    vsql = f"""
WITH {covered}, {counted_rows}, m AS (
  SELECT date_trunc('month', timezone('{tz}', ordered_at))::DATE AS month, count(*) AS n
  FROM counted
  GROUP BY 1
{rest}SELECT strftime(month, '%Y-%m') AS month, n AS orders, baseline AS trailing_median
{judge}
  AND n < {ratio} * baseline
ORDER BY month"""
    # The same months, counted from orders per 15 minutes of absolute time: the time zone
    # conversion then runs on the bucket edges (~100k) instead of every order (10M; 1.1 s ->
    # 0.3 s). Exact when no bucket holds a local month boundary or a change of UTC offset
    # (offsets and most transitions are on the 15-minute grid); `exact` says so, else the
    # per-row query above runs (e.g. America/St_Johns, whose transitions were at 00:01 local
    # until 2011). The fast query always returns a row: the flag, joined to the verdicts.
    q = 900_000_000  # microseconds in 15 minutes
    fast_sql = f"""
WITH {covered}, {counted_rows}, b AS (
  SELECT e // {q} - (e % {q} < 0)::BIGINT AS bucket, count(*) AS n
  FROM (SELECT epoch_us(ordered_at) AS e FROM counted)
  GROUP BY 1
), edges AS (
  SELECT n, timezone('{tz}', s) AS lo, timezone('{tz}', s + INTERVAL {q - 1} MICROSECONDS) AS hi
  FROM (SELECT n, to_timestamp(bucket * {q // 1_000_000}) AS s FROM b)
), m AS MATERIALIZED (
  SELECT date_trunc('month', lo)::DATE AS month, sum(n) AS n,
         bool_and(date_trunc('month', hi) = date_trunc('month', lo) AND epoch_us(hi) - epoch_us(lo) = {q - 1}) AS exact
  FROM edges GROUP BY 1
{rest}SELECT f.exact, v.month, v.low, v.n, v.baseline
FROM (SELECT coalesce(bool_and(exact), true) AS exact FROM m) AS f
LEFT JOIN (SELECT strftime(month, '%Y-%m') AS month, n < {ratio} * baseline AS low, n, baseline
{judge}) AS v ON true
ORDER BY v.month"""
    # one pass: every judged month with its verdict (the denominator), instead of two queries
    judged_sql = vsql.replace(f"  AND n < {ratio} * baseline\n", "").replace(
        "SELECT strftime(month, '%Y-%m') AS month, n AS orders, baseline AS trailing_median",
        f"SELECT strftime(month, '%Y-%m') AS month, n < {ratio} * baseline AS low, n, baseline",
    )

    # the orders of the months left out at either end, from the instants of the covered months' edges (no
    # time zone conversion per order)
    edges_sql = f"""
WITH {covered}
SELECT strftime(first_date, '%Y-%m-%d'), strftime(last_date, '%Y-%m-%d'),
       strftime(first_full, '%Y-%m'), strftime(last_full, '%Y-%m'),
       (SELECT count(*) FROM src_imaging_orders WHERE {in_range}
          AND ordered_at < timezone('{tz}', first_full::TIMESTAMP)),
       (SELECT count(*) FROM src_imaging_orders WHERE {in_range}
          AND ordered_at >= timezone('{tz}', (last_full + INTERVAL 1 MONTH)::TIMESTAMP))
FROM covered WHERE first_date IS NOT NULL"""
    return vsql, fast_sql, judged_sql, edges_sql


def _low_months_note(low: list[tuple], k: int) -> str | None:
    """The low months' figures, in words (None: none low): the warning names the months, the data team needs how far
    each fell to tell a missing file from a quiet month."""
    if not low:
        return None
    return "; ".join(
        f"{month} has {counted(n, 'order')}, against a median of {baseline:,.1f}".removesuffix(".0")
        + f" in the {k} months before it"
        for month, n, baseline in low
    )


def _first_whole_month(day: str) -> str:
    """The first calendar month from the one ``day`` (a DATE expression) falls in that holds it whole: its own when
    ``day`` is the 1st, else the next."""
    return f"date_trunc('month', {day}) + CASE WHEN dayofmonth({day}) = 1 THEN INTERVAL 0 MONTH ELSE INTERVAL 1 MONTH END"


def _partial_months_note(edges: list[tuple], through=None, since=None) -> str | None:
    """What the volume check left out at the ends of the extract, in words (None: nothing). ``through``, ``since``:
    the instants the extract declares it reaches and starts from (``data_through``, ``data_since``)."""
    if not edges:
        return None
    first_date, last_date, first_full, last_full, before, after = edges[0]
    if first_full > last_full:
        return f"the orders run from {first_date} to {last_date}, no calendar month whole: no month compared"
    parts = []
    if before:
        starts = f"its data starts {first_date}" if since is None else f"it declares its data since {since.isoformat()}"
        whole = f"the first month the extract covers whole ({starts})"
        parts.append(f"{counted(before, 'order')} dated before {first_full}, {whole}")
    if after:
        ends = f"its data ends {last_date}" if through is None else f"it declares its data through {through.isoformat()}"
        whole = f"the last month the extract covers whole ({ends})"
        parts.append(f"{counted(after, 'order')} dated after {last_full}, {whole}")
    return "; ".join(parts) + ": not compared (a month covered in part is no drop in volume)" if parts else None


def _replaced_months_note(note: str | None, edges: list[tuple], judged: list[str]) -> str | None:
    """The note, with the months judged beyond those the extract covers whole (the months of a held file it
    replaces whole): without them, "no month compared" stood beside a warning of the month."""
    covered = (edges[0][2], edges[0][3]) if edges else None
    extra = [m for m in judged if covered is None or not covered[0] <= m <= covered[1]]
    if not extra:
        return note
    it = "it" if len(extra) == 1 else "them"
    said = (
        f"{', '.join(extra)} compared all the same: the held file of the extract's months, which it replaces, covered {it} whole"
    )
    return f"{note.removesuffix(': no month compared')}; {said}" if note else said


def check_attrition_adds_up(p: dict):
    # steps only (exclusion rows explain the gaps between steps); each step of a unit holds
    # at most as many units as the step before it
    mart = p.get("table_prefix", "") + "mart_attrition"
    vsql = f"""
WITH steps AS (
  SELECT unit, step_order, max(count) AS count FROM {mart} WHERE kind = 'step' GROUP BY unit, step_order
)
SELECT unit, step_order, count, previous_count FROM (
  SELECT unit, step_order, count, lag(count) OVER (PARTITION BY unit ORDER BY step_order) AS previous_count
  FROM steps
) WHERE count > previous_count ORDER BY unit, step_order"""

    def run(con):
        rows = con.execute(vsql).fetchall()
        total = con.execute(f"SELECT count(*) FROM {mart}").fetchall()[0][0]
        return len(rows), total, len(rows) > 0, [f"{r[0]}:step {r[1]}" for r in rows], vsql.strip()

    run.sample_key = "unit:step"
    return [mart], run


def _loader_duplicates(table: str, id_column: str):
    # In the gate, the loader has already set later copies of an id aside (incoming_rejects) and
    # the views hold one row per id: count those copies instead of scanning again. On a
    # warehouse without them (validating stored tables), count every copy of a duplicated id.
    from_loader = (
        f"SELECT source_line, value AS {id_column} FROM incoming_rejects "
        f"WHERE table_name = '{table}' AND reason LIKE 'duplicate %'"
    )
    in_table = (
        f"SELECT {id_column} FROM (SELECT {id_column}, count(*) OVER (PARTITION BY {id_column}) AS copies "
        f"FROM src_{table} WHERE {id_column} IS NOT NULL) AS c WHERE copies > 1"
    )

    def run(con):
        gate = "incoming_rejects" in relations(con)
        vsql = from_loader if gate else in_table
        n, sample = _count_and_sample(con, vsql, id_column)
        total = con.execute(f"SELECT count(*) FROM src_{table}").fetchall()[0][0] + (n if gate else 0)
        return n, total, n > 0, sample, vsql

    run.sample_key = id_column
    return [f"src_{table}"], run


def check_orders_unique(p: dict):
    return _loader_duplicates("imaging_orders", "order_id")


def check_procedures_unique(p: dict):
    return _loader_duplicates("procedures", "procedure_id")


# the share of a table's rows whose published values hold the row's own patient id at which the check fails: a chance
# match of five or more characters, as a whole word, is about one row in a million; an export that builds its ids
# from the MRN (or a column mapping that swapped the provider and the patient) does so in every row, or every row of
# one site's system: a mistake to correct, not values to null quietly. Fewer rows are a warning: the text the loader
# withheld (nulled), the ids and codes published
ID_HOLDS_PATIENT_SHARE = 0.001


def _holds_patient_id_check(table: str, columns: tuple[str, ...], label: str):
    """Published values (an order's id, its provider, department, name ...: the case list, the workbook, the reviewers'
    sheets) that hold the row's own patient id (``holds_patient_id``). The outputs name patients only by a keyed
    pseudonym, and an id built from the MRN would publish the MRN beside it. Fails the run before the warehouse changes
    when ID_HOLDS_PATIENT_SHARE of the rows hold it, and warns below; the examples are line numbers (and the column,
    when several are looked at), never the values. ``columns``: those the table has are looked at, as one text.

    In the gate the loader has already withheld (nulled, with a reject) the text columns' values that hold it
    (``held_patient_ids.WITHHELD_TEXT``): those rejects are counted with what the table still holds (the ids, the
    codes), each row once. On a warehouse without them (validating stored tables) every column is looked at.

    Plain string tests rule out nearly every row before a regular expression is run (``may_hold_patient_id``)."""

    def run(con):
        present = {r[0] for r in con.execute(f"DESCRIBE src_{table}").fetchall()}
        gate = "incoming_rejects" in relations(con)
        withheld = [c for c in WITHHELD_TEXT.get(table, ()) if c in columns] if gate else []
        cols = [c for c in columns if c in present and c not in withheld]
        if not cols and not withheld:
            return 0, 0, False, [], None
        parts = []
        if cols:
            text = cols[0] if len(cols) == 1 else f"concat_ws(' ', {', '.join(cols)})"
            # a CASE, not an AND: DuckDB computed the words of every row's value ahead of the filter (common
            # subexpressions), 6.6 s over 10M orders against 1.3 s so
            parts.append(
                f"SELECT source_line FROM src_{table} WHERE patient_id IS NOT NULL "
                f"AND CASE WHEN {may_hold_patient_id(text)} THEN {holds_patient_id(text)} ELSE false END"
            )
        # the loader's, of the rows the table holds (a row set aside for another reason is not among them)
        loader = (
            f"SELECT source_line, column_name FROM incoming_rejects WHERE table_name = '{table}' "
            f"AND reason = {typed_literal(WITHHELD_REASON)} AND source_line IN (SELECT source_line FROM src_{table})"
        )
        if withheld:
            parts.append(f"SELECT source_line FROM ({loader})")
        vsql = parts[0] if len(parts) == 1 else f"SELECT DISTINCT source_line FROM ({' UNION ALL '.join(parts)})"
        n, lines = _count_and_sample(con, vsql, "source_line")
        total = con.execute(f"SELECT count(*) FROM src_{table}").fetchall()[0][0]
        failed = n > 0 and n >= ID_HOLDS_PATIENT_SHARE * total
        examples = [f"line {line}" for line in lines]
        which: dict[int, list[str]] = {}
        if (len(cols) > 1 or withheld) and lines:  # which column of each example: where the site's fix lies
            listed = ", ".join(map(str, lines))
            if cols:
                named = " || ".join(f"CASE WHEN {holds_patient_id(c)} THEN ' {c}' ELSE '' END" for c in cols)
                for line, found in con.execute(
                    f"SELECT source_line, trim({named}) FROM src_{table} WHERE source_line IN ({listed})"
                ).fetchall():
                    which.setdefault(line, []).extend(found.split())
            if withheld:
                for line, column in con.execute(f"SELECT * FROM ({loader}) WHERE source_line IN ({listed})").fetchall():
                    which.setdefault(line, []).append(column)
            order = {c: i for i, c in enumerate(columns)}
            examples = [f"line {line} ({', '.join(sorted(set(which.get(line, [])), key=order.get)) or label})" for line in lines]
        warning = (
            f"{label} holds the row's patient id in {counted(n, 'row')} of {total:,} (e.g. {', '.join(examples)}), fewer "
            f"than {ID_HOLDS_PATIENT_SHARE:.1%}: {_what_became_of(which, withheld, n, len(lines))}; correct those rows "
            "in the source system"
            if n and not failed
            else None
        )
        return n, total, failed, examples, vsql, warning, True

    run.sample_key = "source_line"
    return [f"src_{table}"], run


def _what_became_of(which: dict[int, list[str]], withheld: list[str], n: int, shown: int) -> str:
    """What the run did with the values found: the text withheld, ids and codes published (the examples' columns say
    which; beyond the examples both may be)."""
    found = {c for cols in which.values() for c in cols}
    nulled, kept = found & set(withheld), found - set(withheld)
    if not withheld or (not nulled and n <= shown):
        return "published as they are"
    if not kept and n <= shown:
        return "withheld from every output (the values nulled, listed in rejects.csv without them)"
    return (
        "the text withheld from every output (the values nulled, listed in rejects.csv without them), a code published as it is"
    )


def check_order_ids_hide_patient_ids(p: dict):
    return _holds_patient_id_check("imaging_orders", ("order_id",), "order_id")


def check_procedure_ids_hide_patient_ids(p: dict):
    return _holds_patient_id_check("procedures", ("procedure_id",), "procedure_id")


def check_order_text_hides_patient_ids(p: dict):
    return _holds_patient_id_check("imaging_orders", PUBLISHED_TEXT["imaging_orders"], "a published column")


def check_procedure_text_hides_patient_ids(p: dict):
    return _holds_patient_id_check("procedures", PUBLISHED_TEXT["procedures"], "a published column")


def _file_cut_short(table: str):
    # The loader sets a CSV's last row aside when it is cut off mid-row (no final line break, too few fields):
    # one reject, yet the sign that the copy or export of the file stopped part-way and the rows after the cut
    # were never delivered. As a reject alone it was a run that exited 0 and logged nothing.
    vsql = f"SELECT source_line FROM incoming_rejects WHERE table_name = '{table}' AND reason = {typed_literal(CUT_OFF_REASON)}"

    def run(con):
        gate = "incoming_rejects" in relations(con)
        if not gate:  # validating a warehouse's stored tables: no file, nothing cut
            return 0, 0, False, [], vsql
        n, lines = _count_and_sample(con, vsql, "source_line")
        total = con.execute(f"SELECT count(*) FROM src_{table}").fetchall()[0][0] + n
        return n, total, n > 0, [f"line {line}" for line in lines], vsql

    run.sample_key = "source_line"
    return [f"src_{table}"], run


def _loader_rejected(table: str, p: dict):
    # The rows the loader set aside at parse (a required value missing, a time it cannot read, a text too long ...):
    # the gate's views hold only the rows it kept, so the not_null checks and the 20% share never saw them, and an
    # extract whose every second order had no order_id (or an unreadable ordered_at) loaded half its rows, exit 0,
    # not a warning in the log, replacing the good file of the same months. Later copies of an id are
    # ``_loader_duplicates``' and a last row cut off ``_file_cut_short``'s: not counted twice.
    vsql = (
        f"SELECT source_line, min(coalesce(column_name || ': ', '') || reason) AS why FROM incoming_rejects "
        f"WHERE table_name = '{table}' AND action = 'row_rejected' AND reason NOT LIKE 'duplicate %' "
        f"AND reason <> {typed_literal(CUT_OFF_REASON)} GROUP BY source_line"
    )

    def run(con):
        # validating a warehouse's stored tables: no parse to judge
        if "incoming_rejects" not in relations(con):
            return 0, 0, False, [], None
        if table in p.get("export_tables", ()):
            # a FHIR export's table is assembled from lines of several types (an order's Encounter line too): the
            # share is of its own resources, counted and named by its reader (fhir.tables.own_rejected). Skipped,
            # every ServiceRequest of an export rejected (a code given as text alone) published empty reports, exit 0
            own = p.get("export_rejected", {}).get(table)
            if own is None:
                return 0, 0, False, [], None
            return own["rejected"], own["judged"], own["rejected"] > 0, own["first"], vsql
        # the first lines with their reason: the line alone left the user to find why in rejects.csv, not published
        rows = con.execute(
            f"SELECT count(*) OVER (), source_line, why FROM ({vsql}) ORDER BY source_line LIMIT {SAMPLE_SIZE}"
        ).fetchall()
        n = rows[0][0] if rows else 0
        excluded = con.execute(
            f"SELECT count(DISTINCT source_line) FROM incoming_rejects WHERE table_name = '{table}' AND action = 'row_rejected'"
        ).fetchall()[0][0]
        total = con.execute(f"SELECT count(*) FROM src_{table}").fetchall()[0][0] + excluded
        return n, total, n > 0, [f"line {line}: {why}" for _, line, why in rows], vsql

    return [f"src_{table}"], run


def check_procedures_rows_readable(p: dict):
    return _loader_rejected("procedures", p)


def check_orders_rows_readable(p: dict):
    return _loader_rejected("imaging_orders", p)


def check_diagnoses_rows_readable(p: dict):
    return _loader_rejected("diagnoses", p)


def check_patients_rows_readable(p: dict):
    return _loader_rejected("patients", p)


def check_procedures_file_whole(p: dict):
    return _file_cut_short("procedures")


def check_orders_file_whole(p: dict):
    return _file_cut_short("imaging_orders")


def check_diagnoses_file_whole(p: dict):
    return _file_cut_short("diagnoses")


def check_patients_file_whole(p: dict):
    return _file_cut_short("patients")


_SQL_CHECKS: dict[str, Callable] = {
    "check_procedures_file_whole": check_procedures_file_whole,
    "check_orders_file_whole": check_orders_file_whole,
    "check_diagnoses_file_whole": check_diagnoses_file_whole,
    "check_patients_file_whole": check_patients_file_whole,
    "check_procedures_rows_readable": check_procedures_rows_readable,
    "check_orders_rows_readable": check_orders_rows_readable,
    "check_diagnoses_rows_readable": check_diagnoses_rows_readable,
    "check_patients_rows_readable": check_patients_rows_readable,
    "check_orders_unique": check_orders_unique,
    "check_procedures_unique": check_procedures_unique,
    "check_diagnoses_known_patient": check_diagnoses_known_patient,
    "check_mapped_share": check_mapped_share,
    "check_monthly_volume": check_monthly_volume,
    "check_orders_after_birth": check_orders_after_birth,
    "check_audited_orders_known": check_audited_orders_known,
    "check_attrition_adds_up": check_attrition_adds_up,
    "check_lookalike_departments": check_lookalike_departments,
    "check_patient_ids_keep_leading_zeros": check_patient_ids_keep_leading_zeros,
    "check_order_ids_hide_patient_ids": check_order_ids_hide_patient_ids,
    "check_procedure_ids_hide_patient_ids": check_procedure_ids_hide_patient_ids,
    "check_order_text_hides_patient_ids": check_order_text_hides_patient_ids,
    "check_procedure_text_hides_patient_ids": check_procedure_text_hides_patient_ids,
}
