"""Counts in words: one home (pipeline.wording) for every "1 order" / "2 orders" a reader sees."""

from pipeline.cli import _period_summary
from pipeline.wording import counted


def test_a_count_takes_the_number_of_its_noun():
    assert counted(0, "order") == "0 orders"
    assert counted(1, "order") == "1 order"
    assert counted(12_345, "episode") == "12,345 episodes"
    assert counted(1, "analysis", "analyses") == "1 analysis" and counted(2, "analysis", "analyses") == "2 analyses"


def test_runs_says_one_order_revised_not_one_orders():
    one = {"cases": 1, "audited_orders": 1, "status": "final", "revised_orders": 1, "revised_since": "R1"}
    assert _period_summary("2026-04", one, unit="episode") == "2026-04: 1 episode/1 order (final), revised 1 order since R1"
    many = {"cases": 3, "audited_orders": 2_000, "revised_orders": 5, "revised_since": "R1"}
    assert _period_summary("2026-04", many) == "2026-04: 3 cases/2,000 orders, revised 5 orders since R1"
