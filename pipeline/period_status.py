"""What the report's first page says about the period itself: empty, provisional, final since, revised, quiet.

Built once per reported period by the run (``run_info["status"]``) and shown by the partial
``reports/_status_banner.html``; every part is also logged, so the scheduler's log and the report agree.
"""

from __future__ import annotations

import datetime as dt
import logging

import duckdb

from pipeline.logs import event
from pipeline.maturity import Maturity, describe
from pipeline.months import all_months
from pipeline.wording import counted

VOLUME_CHECK = "orders.volume.monthly"


def period_months(label: str, bounds: tuple[str | None, str | None]) -> list[str]:
    """The months a period label reports: one month, or the months the loaded cases span."""
    if label != "all":
        return [label]
    return [m for m in bounds if m]


def case_span(con: duckdb.DuckDBPyConnection, audit) -> tuple[str | None, str | None]:
    """First and last month (site-local) with a case of the audit, read while its marts hold every month."""
    return cases_span(con, audit.model_name("mart_cases"))


def cases_span(con: duckdb.DuckDBPyConnection, table: str = "mart_cases") -> tuple[str | None, str | None]:
    """First and last month (site-local) of the cases in ``table`` (the renderer's session view by default): the
    months a run over every month states as its period, which the feed's ``all`` row names too."""
    return tuple(con.execute(f"SELECT min(index_month), max(index_month) FROM {table}").fetchall()[0])


# the feeds an audit's cases and orders come from (its required tables), the staged view and the date each row carries
FEED_DATES = {
    "procedures": ("stg_procedures", "performed_at"),
    "diagnoses": ("stg_diagnoses", "recorded_at"),
    "imaging_orders": ("stg_imaging_orders", "ordered_at"),
}


Span = tuple[str | None, str | None]  # a first and last local date (YYYY-MM-DD), None where there is none


def feed_spans(dates: dict[str, tuple[str | None, str | None, frozenset[str]]]) -> dict[str, Span]:
    """Each feed's first and last local date, of its ``feed_dates``."""
    return {f: (first, last) for f, (first, last, _) in dates.items()}


def feed_dates(
    con: duckdb.DuckDBPyConnection, site_timezone: str, feeds: tuple[str, ...]
) -> dict[str, tuple[str | None, str | None, frozenset[str]]]:
    """Each of ``feeds`` (an audit's required tables): the first and last local date of a row in the loaded data and
    the local months that hold one ((None, None, {}) for a feed without a row): a month one feed has no row in while
    another does is a delivery short of a file (``build``), in the middle of the data too (its first and last date
    alone hid a July without orders once August's came)."""
    known = [f for f in feeds if f in FEED_DATES]
    if not known:  # an audit that reads none of them: no dates to name
        return {}
    rows = " UNION ALL ".join(f"SELECT {i} AS feed, {FEED_DATES[f][1]} AS t FROM {FEED_DATES[f][0]}" for i, f in enumerate(known))
    got = {
        known[i]: (first, last, frozenset(months))
        for i, first, last, months in con.execute(
            f"""SELECT feed, strftime(min(local), '%Y-%m-%d'), strftime(max(local), '%Y-%m-%d'),
                       list(DISTINCT strftime(local, '%Y-%m'))
                FROM (SELECT feed, timezone(?, t) AS local FROM ({rows}) WHERE t IS NOT NULL) GROUP BY feed""",
            [site_timezone],
        ).fetchall()
    }
    return {f: got.get(f, (None, None, frozenset())) for f in known}


def spanning(spans: dict[str, Span]) -> Span:
    """The first and last date of any of ``spans`` (``feed_spans``)."""
    firsts = [first for first, _ in spans.values() if first]
    lasts = [last for _, last in spans.values() if last]
    return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def feed_words(feed: str) -> str:
    return feed.replace("_", " ")


def feeds_in_words(feeds: tuple[str, ...]) -> str:
    """The feeds ``feed_dates`` reads, as the first page names them: 'diagnoses and imaging orders'."""
    words = [feed_words(f) for f in feeds if f in FEED_DATES]
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def maturity_counts(label: str, maturity: Maturity, spans: dict) -> dict:
    """The period's maturity as `order-audit runs` records it: status and the date it becomes final."""
    described = describe(maturity, period_months(label, spans.get("cases") or (None, None)))
    return {} if described is None else {"status": described["status"], "final_from": described["final_from"]}


def finalised(maturity_status: dict | None, revision: dict | None, earlier: list[dict]) -> dict | None:
    """When a final period was last published provisional (``earlier``: history.period_statuses): the run that first
    published it final (``run_id`` and ``on`` None: this run), the provisional run before it, and the orders that run
    changed since which run. None for a period never recorded provisional (e.g. a backfill of old months)."""
    if not maturity_status or maturity_status["status"] != "final":
        return None
    provisional = [i for i, r in enumerate(earlier) if r["status"] == "provisional"]
    if not provisional:
        return None
    last = earlier[provisional[-1]]
    final = next((r for r in earlier[provisional[-1] + 1 :] if r["status"] == "final"), None)
    if final is None:  # this run turned it final: its own revision says what changed
        run_id, on, orders, since = None, None, (revision or {}).get("orders", 0), (revision or {}).get("since_run")
    else:  # an earlier run did, and recorded its revision (none recorded: it changed no order)
        run_id, on, orders, since = final["run_id"], final["on"], final["revised_orders"], final["revised_since"]
    # no order changed: the run compared itself with the results the provisional run left
    return {"run_id": run_id, "on": on, "provisional_run": last["run_id"], "orders": orders, "since_run": since or last["run_id"]}


def revision_level(revision: dict, earlier: list[dict]) -> int:
    """How loud a revision is logged: a warning, unless the run it compares with published the period provisional
    (``earlier``: history.period_statuses). A provisional month's figures move as late orders arrive, which the
    report already says; the monthly job reruns three such months every load (docs/SCHEDULING.md), and a scheduler
    alerting on warnings was paged every month for it. A month published final, or with no status recorded, that
    changes is late data the reader did not expect: a warning."""
    compared = next((r for r in reversed(earlier) if r["run_id"] == revision.get("since_run")), None)
    return logging.INFO if compared is not None and compared["status"] == "provisional" else logging.WARNING


def _changed(final: dict) -> str:
    """What the run that made the period final changed since the run it compared itself with (``finalised``)."""
    return f"{counted(final['orders'], 'order')} changed" if final["orders"] else "no order or verdict changed"


def final_text(maturity: dict) -> str:
    """A final period as the report's first page and the workbook say it (``maturity``: ``describe``'s): the day the
    audit's windows from the period's last index date end, so a reader holds it beside the dates of the orders (it
    said "past the period's windows" in the workbook, "past the period's last index date plus 42 days" on the page)."""
    through, last, days = maturity["data_through"], maturity["last_index_date"], maturity["horizon_days"]
    if not float(days).is_integer():  # a window in hours ends within a day: no last whole day to name
        return f"Final: the loaded data runs through {through}, past the period's last index date, {last}, plus {days} days."
    window_end = dt.date.fromisoformat(maturity["final_from"]) - dt.timedelta(days=1)
    return (
        f"Final: the loaded data runs through {through}, past {window_end}, the last day of the audit's {days}-day windows"
        f" from the period's last index date, {last}."
    )


def final_since(final: dict) -> str:
    """The report's first page and the workbook on a period ``finalised`` found final after a provisional run."""
    by = (
        f"run {final['run_id']} ({final['on']}) first published it final"
        if final["run_id"]
        else "this run is the first to publish it final"
    )
    changed = f"{_changed(final)} since run {final['since_run']}"
    return f"It was published provisional by run {final['provisional_run']}; {by}, {changed}."


def final_mark(final: dict, date=str) -> str:
    """The site index's cell on the same period, short: its ``run_id`` and ``on`` filled in (the publishing run's
    own where ``finalised`` left them None); ``date`` wraps the day (the page keeps it on one line)."""
    provisional = (
        " published it provisional"
        if final["since_run"] == final["provisional_run"]
        else f"; provisional in run {final['provisional_run']}"
    )
    return (
        f"final since {date(final['on'])} (run {final['run_id']}): {_changed(final)} since run {final['since_run']}{provisional}"
    )


def _say_outside_the_data(
    audit_id: str, label: str, key: str, first: str | None, last: str | None, nothing_new: bool = False
) -> None:
    """An empty month after the data's last date or before its first: a warning. A scheduled job whose extract
    stopped coming (or a month mistyped) published empty months with exit 0 and info lines only; a year mistyped
    (2020-01 for 2026-01) was published final, "no cases", so too. A month before the data in a run that loaded
    nothing new is said at info level: the same night's rerun of a new warehouse's first delivery (its --from three
    months back) was paged again for the same months (the scheduling review). A month after the data stays a
    warning: a job rerun on the same old extract is what an extract that stopped coming looks like."""
    if last and last[:7] < key:
        edge, said, where = (
            ("period_after_data", "data_last", last),
            f"ends {last}, before",
            "reach it (load a newer one, or check the month asked for)",
        )
    elif first and first[:7] > key:
        edge, said, where = (
            ("period_before_data", "data_first", first),
            f"starts {first}, after",
            "reach back to it (check the month asked for, or load the earlier extract)",
        )
    else:
        return
    event(
        f"{audit_id}: {label}: the loaded data {said} the month: the extract does not {where}",
        level=logging.INFO if nothing_new and edge[0] == "period_before_data" else logging.WARNING,
        event=edge[0],
        period=key,
        audit_id=audit_id,
        **{edge[1]: edge[2]},
    )


def _short_feeds(audit_id: str, label: str, key: str, spans: dict, per_feed: dict[str, Span]) -> list[dict]:
    """The audit's feeds without a row in the month ``key`` while another has one, each logged: a monthly delivery
    short of its orders file published "no cases" (or cases never imaged) with exit 0 and a check that could not run
    as its only sign. Each feed's months are read, not its first and last date: a July without orders was seen only
    while July was the latest month."""
    months = spans.get("feed_months") or {}
    short = [f for f in per_feed if key not in months.get(f, ())] if months else []
    if not short or len(short) == len(per_feed):  # no feed reaches the month: the data's edge, not a short feed
        return []
    delivered = spans.get("delivered")  # this run's extract: its tables' months (None: no --input)
    covered = spanning(dict(delivered or {}))
    in_delivery = delivered is not None and bool(covered[0]) and covered[0] <= key <= covered[1]
    for f in short:
        held = per_feed[f]
        dated = f"are dated {held[0]} to {held[1]}" if held[0] else "hold no row"
        # a month the delivery covers without a file of the feed lacks it: said so (a backfill's older months are
        # not this delivery's)
        missing_file = in_delivery and f not in delivered
        # a warning where the month cannot be right: a hospital orders imaging every month (the volume check's
        # premise), and a delivery without the feed's file lacks it; a month without a lumbar procedure at a small
        # site can be true, and is said at info level (the first page says it either way). A run that loaded nothing
        # new says it at info level too, as it does a data-quality finding: the monthly job reruns a month with each
        # new extract, and was paged again for the same gap
        alarming = (f == "imaging_orders" or missing_file) and not spans.get("nothing_new")
        event(
            f"{audit_id}: {label}: no {feed_words(f)} are dated in the month (the loaded {feed_words(f)} {dated}"
            + (", and this delivery has no file of them" if missing_file else "")
            + "), while the other feeds reach it: the period's verdicts and rates lack what they would hold "
            f"(load the {feed_words(f)} extract, then run the period again; or, if the site had none, nothing is "
            "missing)",
            level=logging.WARNING if alarming else logging.INFO,
            event="feed_missing_period",
            period=key,
            audit_id=audit_id,
            feed=f,
            feed_first=held[0],
            feed_last=held[1],
            file_delivered=not missing_file if in_delivery else None,
        )
    return [{"feed": feed_words(f), "first": per_feed[f][0], "last": per_feed[f][1]} for f in short]


def build(
    audit_id: str,
    label: str,
    counts: dict,
    maturity: Maturity | None,
    revision: dict | None,
    dq_results: list,
    spans: dict,
    earlier: list[dict] | None = None,
    case_unit: str = "case",
) -> dict:
    """The period's status for the report (``status`` in the templates), logged as it is built (each line names
    the audit: two audits' periods over the same data can differ, e.g. where a case needs follow-up; and says its
    unit, ``case_unit``: "no cases" of an audit of episodes)."""
    key, (first, last) = label, spans.get("cases") or (None, None)
    if label == "all":  # a run over every month: say which
        label = all_months(first, last)
    status: dict = {"period": label}
    per_feed = spans.get("per_feed") or {}
    # the date by which every feed of the audit has begun (the latest of their first dates): the trend starts at the
    # first month it covers whole, where the first month with a case left the months before it out without a word
    # (the committee review: 21 months of a 24-month trend); not the earliest date (six stray procedures of June
    # before the orders began in July put a month of no data in the trend)
    firsts = [first for first, _ in per_feed.values() if first]
    if firsts and len(firsts) == len(per_feed):
        status["feeds_begun"] = max(firsts)
    if counts.get("cases", 0) == 0:
        first, last = spans.get("data") or (None, None)
        status["empty"] = {
            "data_first": first,
            "data_last": last,
            "feeds": spans.get("feeds"),
            # each feed's own dates: one that stopped early was hidden behind the others' last date
            "by_feed": [{"feed": feed_words(f), "first": a, "last": b} for f, (a, b) in per_feed.items()],
        }
        event(f"{audit_id}: {label}: no {case_unit}s; the report says so", event="period_empty", period=key, audit_id=audit_id)
        if key != "all":
            _say_outside_the_data(audit_id, label, key, first, last, bool(spans.get("nothing_new")))
    short = _short_feeds(audit_id, label, key, spans, per_feed) if key != "all" else []
    if short:
        status["short_feeds"] = short
    maturity_status = describe(maturity, period_months(key, spans.get("cases") or (None, None)))
    if maturity_status:
        status["maturity"] = maturity_status
        if maturity_status["status"] == "provisional":
            event(
                f"{audit_id}: {label} is provisional: the loaded data runs through {maturity_status['data_through']}; "
                f"it becomes final once the data reaches {maturity_status['final_from']}",
                event="period_provisional",
                period=key,
                audit_id=audit_id,
                final_from=maturity_status["final_from"],
                data_through=maturity_status["data_through"],
            )
    final = finalised(maturity_status, revision, earlier or [])
    if final:
        status["finalised"] = final
        if final["run_id"] is None:
            event(
                f"{audit_id}: {label} is final since this run; run {final['provisional_run']} published it provisional "
                f"({counted(final['orders'], 'order')} changed since run {final['since_run']})",
                event="period_final",
                period=key,
                audit_id=audit_id,
                **{k: final[k] for k in ("provisional_run", "orders", "since_run")},
            )
    if revision and revision.get("orders"):
        status["revised"] = revision
        event(
            f"{audit_id}: {label} revised since run {revision['since_run']}: {counted(revision['orders'], 'order')} "
            f"({revision['added']} added, {revision['removed']} removed, {revision['changed']} changed)",
            level=revision_level(revision, earlier or []),
            event="period_revised",
            period=key,
            audit_id=audit_id,
            **{k: revision[k] for k in ("since_run", "orders", "added", "removed", "changed")},
        )
    quiet = [r for r in dq_results if r.check_id == VOLUME_CHECK and r.status == "failed"]
    if quiet:
        status["quiet_months"] = [str(m) for m in quiet[0].sample_keys]
    return status
