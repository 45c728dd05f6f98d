"""pipeline.period_status.finalised: which run made a period final, read from the runs' own records."""

from __future__ import annotations

from pipeline.period_status import final_mark, final_since, finalised

FINAL, PROVISIONAL = {"status": "final"}, {"status": "provisional"}


def _rec(run_id: str, status: str | None, orders: int = 0, since: str | None = None) -> dict:
    """One earlier run's record of the period, as history.period_statuses reads it."""
    return {"run_id": run_id, "on": f"day-{run_id}", "status": status, "revised_orders": orders, "revised_since": since}


def test_this_run_made_the_period_final():
    revision = {"since_run": "r1", "orders": 2, "added": 2, "removed": 0, "changed": 0}
    assert finalised(FINAL, revision, [_rec("r0", "provisional"), _rec("r1", "provisional", 1, "r0")]) == {
        "run_id": None,
        "on": None,
        "provisional_run": "r1",
        "orders": 2,
        "since_run": "r1",
    }
    # nothing changed: the run compared itself with what the provisional run left
    assert finalised(FINAL, {"since_run": "r1", "orders": 0}, [_rec("r1", "provisional")])["orders"] == 0
    assert finalised(FINAL, None, [_rec("r1", "provisional")])["since_run"] == "r1"


def test_an_earlier_run_made_it_final_and_the_mark_stays():
    records = [_rec("r1", "provisional"), _rec("r2", "final", 4, "r1"), _rec("r3", "final"), _rec("r4", None)]
    expected = {"run_id": "r2", "on": "day-r2", "provisional_run": "r1", "orders": 4, "since_run": "r1"}
    assert finalised(FINAL, None, records) == expected
    # published provisional again in between (data withdrawn): the last provisional run counts
    again = [*records, _rec("r5", "provisional"), _rec("r6", "final")]
    assert finalised(FINAL, None, again) == {
        "run_id": "r6",
        "on": "day-r6",
        "provisional_run": "r5",
        "orders": 0,
        "since_run": "r5",
    }


def test_no_mark_for_a_period_never_published_provisional_or_not_final_now():
    assert finalised(FINAL, None, []) is None
    assert finalised(FINAL, None, [_rec("r1", "final"), _rec("r2", None)]) is None
    assert finalised(PROVISIONAL, None, [_rec("r1", "provisional")]) is None
    assert finalised(None, None, [_rec("r1", "provisional")]) is None


def test_the_first_page_says_who_made_the_period_final_and_what_changed():
    this_run = {"run_id": None, "on": None, "provisional_run": "r1", "orders": 1, "since_run": "r1"}
    assert final_since(this_run) == (
        "It was published provisional by run r1; this run is the first to publish it final, 1 order changed since run r1."
    )
    earlier = {"run_id": "r2", "on": "2026-10-01", "provisional_run": "r1", "orders": 0, "since_run": "r1"}
    assert final_since(earlier) == (
        "It was published provisional by run r1; run r2 (2026-10-01) first published it final, no order or verdict changed"
        " since run r1."
    )
    assert final_since(earlier | {"orders": 1234, "since_run": "r0"}).endswith("final, 1,234 orders changed since run r0.")


def test_the_site_index_cell_says_the_same_shortly():
    """period_status.final_mark, the site index's form of final_since: the same run, day and changes, from one home."""
    earlier = {"run_id": "r2", "on": "2026-10-01", "provisional_run": "r1", "orders": 0, "since_run": "r1"}
    assert final_mark(earlier) == (
        "final since 2026-10-01 (run r2): no order or verdict changed since run r1 published it provisional"
    )
    # compared with a later provisional run than the first: both named; the day wrapped as the page asks
    apart = earlier | {"orders": 1234, "since_run": "r1b"}
    assert final_mark(apart, date=lambda d: f"[{d}]") == (
        "final since [2026-10-01] (run r2): 1,234 orders changed since run r1b; provisional in run r1"
    )
    assert final_since(apart) == (
        "It was published provisional by run r1; run r2 (2026-10-01) first published it final, 1,234 orders changed"
        " since run r1b."
    )


def test_the_runs_records_are_read_oldest_first_dated_by_their_utc_day_whatever_the_session_zone():
    """history.period_statuses over the warehouse's own run records: only runs other than this one that published
    the period (succeeded, or stopped after it was out), the audit's entry of the period alone, oldest first, each
    dated by the UTC day it started (as run.json's ``started_at`` and ``order-audit runs`` date it), whatever the
    connection's time zone; a record from before the period's status was kept (no ``status``, or counts not keyed by
    audit) reads as no status or not at all."""
    import json

    import duckdb

    from pipeline import history

    con = duckdb.connect()
    for ddl in history.DDL:
        con.execute(ddl)
    con.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14: 23:30 UTC on 2 November is 3 November there

    def run(run_id: str, started_utc: str, status: str, counts) -> None:
        con.execute(
            "INSERT INTO audit_runs (run_id, status, started_at, counts) VALUES (?, ?, CAST(? AS TIMESTAMPTZ), ?)",
            [run_id, status, started_utc + "+00:00", None if counts is None else json.dumps(counts)],
        )

    june = {"cases": 3, "audited_orders": 4}
    run("r0-old", "2026-10-01 09:00:00", "succeeded", {"2025-06": june})  # before counts were keyed by audit
    run("r1", "2026-10-02 23:30:00", "succeeded", {"csf_leak": {"2025-06": june | {"status": "provisional"}}})
    # a failed run: June recorded but never published (not read), July published before it failed (read)
    stopped = {"2025-06": june | {"status": "final"}, "2025-07": june | {"status": "final", "published": True}}
    run("r1b", "2026-10-03 08:00:00", "failed", {"csf_leak": stopped})
    run("r1c", "2026-10-03 09:00:00", "succeeded", None)  # a run that recorded no counts
    run("r2-old", "2026-10-04 10:00:00", "succeeded", {"csf_leak": {"2025-06": june}})  # before the status was kept
    made_final = june | {"status": "final", "revised_orders": 2, "revised_since": "r1"}
    run("r3", "2026-11-02 23:30:00", "succeeded", {"csf_leak": {"2025-06": made_final}})
    run("r4", "2026-11-05 10:00:00", "succeeded", {"csf_leak": {"2025-07": june}, "low_back_pain": {"2025-06": june}})
    run("this", "2026-11-06 10:00:00", "running", {"csf_leak": {"2025-06": june | {"status": "final"}}})
    assert history.period_statuses(con, "this", "2025-06", "csf_leak") == [
        {"run_id": "r1", "on": "2026-10-02", "status": "provisional", "revised_orders": 0, "revised_since": None},
        {"run_id": "r2-old", "on": "2026-10-04", "status": None, "revised_orders": 0, "revised_since": None},
        {"run_id": "r3", "on": "2026-11-02", "status": "final", "revised_orders": 2, "revised_since": "r1"},
    ]
    assert finalised(FINAL, None, history.period_statuses(con, "this", "2025-06", "csf_leak")) == {
        "run_id": "r3",
        "on": "2026-11-02",
        "provisional_run": "r1",
        "orders": 2,
        "since_run": "r1",
    }
    assert history.period_statuses(con, "this", "2025-08", "csf_leak") == []  # a month no run recorded
    assert history.period_statuses(con, "this", "2025-07", "csf_leak") == [
        {"run_id": "r1b", "on": "2026-10-03", "status": "final", "revised_orders": 0, "revised_since": None},
        {"run_id": "r4", "on": "2026-11-05", "status": None, "revised_orders": 0, "revised_since": None},
    ]


def test_an_empty_month_names_the_dates_of_the_audits_own_feeds():
    """The low back pain audit's cases come from diagnoses: its empty month said "its procedures and imaging orders
    are dated ..." (procedures it does not read, which a site may not even send), and the warning that the data ends
    before the month read the procedures' dates too, not the diagnoses that stopped coming."""
    import duckdb  # noqa: PLC0415

    from pipeline.period_status import build, feed_dates, feed_spans, feeds_in_words, spanning  # noqa: PLC0415

    def data_span(con, site_timezone, feeds):  # the first and last date of any of the feeds
        return spanning(feed_spans(feed_dates(con, site_timezone, feeds)))

    con = duckdb.connect()
    con.execute("CREATE TABLE stg_procedures AS SELECT TIMESTAMPTZ '2026-06-30 12:00:00+00' AS performed_at")
    con.execute("CREATE TABLE stg_diagnoses AS SELECT TIMESTAMPTZ '2026-05-20 12:00:00+00' AS recorded_at")
    con.execute("CREATE TABLE stg_imaging_orders AS SELECT TIMESTAMPTZ '2024-07-01 12:00:00+00' AS ordered_at")
    lbp, csf = ("diagnoses", "imaging_orders"), ("procedures", "imaging_orders")
    assert data_span(con, "UTC", lbp) == ("2024-07-01", "2026-05-20")
    assert data_span(con, "UTC", csf) == ("2024-07-01", "2026-06-30")
    assert data_span(con, "UTC", ("patients",)) == (None, None)
    assert feeds_in_words(lbp) == "diagnoses and imaging orders"
    assert feeds_in_words(("imaging_orders", "patients")) == "imaging orders"
    spans = {"cases": (None, None), "data": ("2024-07-01", "2026-05-20"), "feeds": feeds_in_words(lbp)}
    status = build("low_back_pain", "2026-06", {"cases": 0}, None, None, [], spans)
    assert status["empty"] == {
        "data_first": "2024-07-01",
        "data_last": "2026-05-20",
        "feeds": "diagnoses and imaging orders",
        "by_feed": [],
    }


def _warned(caplog) -> list[tuple[str, dict]]:
    return [(r.fields["event"], r.fields) for r in caplog.records if r.levelname == "WARNING"]


def test_a_feed_without_a_row_in_a_month_the_others_reach_is_warned_and_shown(caplog, monkeypatch):
    """A monthly delivery without its orders file: the month's procedures and diagnoses came, its orders did not.
    It published "no cases" (or cases never imaged) with exit 0 and info lines, the report naming the feeds' common
    last date, which the orders did not reach. Each feed's own dates are kept; a feed short of the month is a
    warning in the log and on the first page; a month no feed reaches is the data's end, not a short feed."""
    import logging  # noqa: PLC0415

    import duckdb  # noqa: PLC0415

    from pipeline.period_status import build, feed_dates, feed_spans, spanning  # noqa: PLC0415

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_procedures AS SELECT * FROM (VALUES (TIMESTAMPTZ '2026-09-15 12:00:00+00'), "
        "(TIMESTAMPTZ '2026-10-15 12:00:00+00'), (TIMESTAMPTZ '2026-11-30 12:00:00+00')) AS t(performed_at)"
    )
    con.execute("CREATE TABLE stg_diagnoses AS SELECT TIMESTAMPTZ '2026-11-02 12:00:00+00' AS recorded_at WHERE false")
    con.execute(
        "CREATE TABLE stg_imaging_orders AS SELECT * FROM (VALUES (TIMESTAMPTZ '2026-09-01 12:00:00+00'), "
        "(TIMESTAMPTZ '2026-10-31 12:00:00+00'), (NULL)) AS t(ordered_at)"
    )
    per_feed = feed_spans(feed_dates(con, "UTC", ("procedures", "imaging_orders", "diagnoses", "patients")))
    assert per_feed == {
        "procedures": ("2026-09-15", "2026-11-30"),
        "imaging_orders": ("2026-09-01", "2026-10-31"),
        "diagnoses": (None, None),
    }
    assert spanning(per_feed) == ("2026-09-01", "2026-11-30")
    months = {f: m for f, (_, _, m) in feed_dates(con, "UTC", ("procedures", "imaging_orders", "diagnoses")).items()}
    assert months == {
        "procedures": {"2026-09", "2026-10", "2026-11"},
        "imaging_orders": {"2026-09", "2026-10"},
        "diagnoses": set(),
    }
    spans = {"cases": (None, None), "data": spanning(per_feed), "per_feed": per_feed, "feed_months": months, "feeds": "x"}
    logger = logging.getLogger("pipeline")
    monkeypatch.setattr(logger, "propagate", True)  # to caplog's handler (the CLI's logging turns it off)
    caplog.set_level(logging.INFO, logger="pipeline")

    status = build("csf_leak", "2026-11", {"cases": 0}, None, None, [], spans)
    assert status["short_feeds"] == [
        {"feed": "imaging orders", "first": "2026-09-01", "last": "2026-10-31"},
        {"feed": "diagnoses", "first": None, "last": None},
    ]
    assert status["empty"]["by_feed"][:2] == [
        {"feed": "procedures", "first": "2026-09-15", "last": "2026-11-30"},
        {"feed": "imaging orders", "first": "2026-09-01", "last": "2026-10-31"},
    ]
    # the orders a warning (a hospital orders imaging every month), the diagnoses at info level: a run without --input
    # (delivered None) cannot tell a file that did not come from a month without a row
    assert [(e, f["feed"]) for e, f in _warned(caplog)] == [("feed_missing_period", "imaging_orders")]
    said = {r.fields["feed"]: (r.levelname, r.getMessage()) for r in caplog.records if r.fields["event"] == "feed_missing_period"}
    assert said["diagnoses"][0] == "INFO"
    assert said["imaging_orders"][1].startswith(
        "csf_leak: 2026-11: no imaging orders are dated in the month (the loaded imaging orders are dated 2026-09-01 to "
        "2026-10-31), while the other feeds reach it"
    )
    # a delivery without the diagnoses' file: a warning that says so
    caplog.clear()
    delivered = {**spans, "delivered": {"procedures": ("2026-11", "2026-11")}}
    build("csf_leak", "2026-11", {"cases": 0}, None, None, [], delivered)
    assert [f["feed"] for _, f in _warned(caplog)] == ["imaging_orders", "diagnoses"]
    assert "(the loaded diagnoses hold no row, and this delivery has no file of them)" in caplog.text
    # a backfill's older month is not this delivery's: its missing diagnoses are said at info level
    caplog.clear()
    build("csf_leak", "2026-10", {"cases": 1}, None, None, [], delivered)
    assert _warned(caplog) == []
    # a run that loaded nothing new (the monthly job rerunning the month with the same files) repeats the orders'
    # gap at info level, as a data-quality finding: not paged again
    caplog.clear()
    build("csf_leak", "2026-11", {"cases": 0}, None, None, [], {**spans, "nothing_new": True})
    assert _warned(caplog) == [] and "no imaging orders are dated in the month" in caplog.text
    # October: every feed but the diagnoses reaches it; an "all" run judges no month; December: no feed reaches it,
    # which is the data's end (period_after_data), not a short feed
    caplog.clear()
    assert [f["feed"] for f in build("csf_leak", "2026-10", {"cases": 1}, None, None, [], spans)["short_feeds"]] == ["diagnoses"]
    assert "short_feeds" not in build("csf_leak", "all", {"cases": 1}, None, None, [], spans)
    caplog.clear()
    assert "short_feeds" not in build("csf_leak", "2026-12", {"cases": 0}, None, None, [], spans)
    assert [e for e, _ in _warned(caplog)] == ["period_after_data"]


def test_a_month_before_the_data_is_warned(caplog, monkeypatch):
    """A year mistyped (2020-01 for 2026-01) was published final, "no cases", exit 0, with info lines only."""
    import logging  # noqa: PLC0415

    from pipeline.period_status import build  # noqa: PLC0415

    logger = logging.getLogger("pipeline")
    monkeypatch.setattr(logger, "propagate", True)
    caplog.set_level(logging.INFO, logger="pipeline")
    per_feed = {"procedures": ("2025-06-01", "2026-11-30"), "imaging_orders": ("2025-06-02", "2026-11-29")}
    spans = {"cases": (None, None), "data": ("2025-06-01", "2026-11-30"), "per_feed": per_feed, "feeds": "x"}
    status = build("csf_leak", "2020-01", {"cases": 0}, None, None, [], spans)
    assert "short_feeds" not in status
    assert [(e, f["data_first"]) for e, f in _warned(caplog)] == [("period_before_data", "2025-06-01")]
    assert "csf_leak: 2020-01: the loaded data starts 2025-06-01, after the month" in caplog.text
    # a run that loaded nothing new (the same night's rerun of a first delivery whose --from reaches before its data)
    # says it at info level: it was paged again for the same months (the scheduling review); a month after the data
    # stays a warning (a job rerun on the same old extract is what an extract that stopped coming looks like)
    caplog.clear()
    build("csf_leak", "2020-01", {"cases": 0}, None, None, [], {**spans, "nothing_new": True})
    assert _warned(caplog) == [] and "csf_leak: 2020-01: the loaded data starts 2025-06-01" in caplog.text
    build("csf_leak", "2026-12", {"cases": 0}, None, None, [], {**spans, "nothing_new": True})
    assert [e for e, _ in _warned(caplog)] == ["period_after_data"]


def test_a_month_a_feed_skips_in_the_middle_of_the_data_is_short():
    """Orders of June and August, procedures of June, July and August: July lacks its orders. Judged by the feeds'
    first and last dates, July's gap was seen only while July was the latest month: August's extract hid it, and
    the rerun of July published it with no word."""
    from pipeline.period_status import build  # noqa: PLC0415

    per_feed = {"procedures": ("2025-06-01", "2025-08-30"), "imaging_orders": ("2025-06-02", "2025-08-29")}
    months = {"procedures": {"2025-06", "2025-07", "2025-08"}, "imaging_orders": {"2025-06", "2025-08"}}
    spans = {"cases": ("2025-06", "2025-08"), "data": ("2025-06-01", "2025-08-30"), "per_feed": per_feed, "feed_months": months}
    assert [f["feed"] for f in build("csf_leak", "2025-07", {"cases": 3}, None, None, [], spans)["short_feeds"]] == [
        "imaging orders"
    ]
    assert "short_feeds" not in build("csf_leak", "2025-08", {"cases": 3}, None, None, [], spans)
