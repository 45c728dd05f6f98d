"""pipeline.period_status.finalised: which run made a period final, read from the runs' own records."""

from __future__ import annotations

from pipeline.period_status import final_since, finalised

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
