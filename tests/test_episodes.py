"""The CSF-leak audit's anchored imaging episodes (no recursion: pointer doubling over "next order
more than episode_hours later") against a brute-force reference on random cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from conftest import ROOT

EPISODES_SQL = (ROOT / "audits" / "csf_leak" / "sql" / "csf_leak__int_imaging_episodes.sql").read_text(encoding="utf-8")
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def reference_episodes(orders: list[tuple], episode_hours: float) -> dict[tuple[int, int], tuple[int, datetime]]:
    """The definition, walked order by order: a new episode when an order is more than episode_hours
    after the current episode's first order; (case_id, order_id) -> (episode_number, start)."""
    out = {}
    by_case: dict[int, list[tuple]] = {}
    for case_id, order_id, at, eligible in orders:
        if eligible:
            by_case.setdefault(case_id, []).append((at, order_id))
    reach = timedelta(hours=episode_hours)
    for case_id, rows in by_case.items():
        number, start = 0, None
        for at, order_id in sorted(rows):
            if start is None or at - start > reach:
                number, start = number + 1, at
            out[(case_id, order_id)] = (number, start)
    return out


def random_orders(rng: random.Random, n_cases: int, episode_hours: float) -> list[tuple]:
    """Cases of 0-60 orders over 30 days: same-second ties, gaps of exactly episode_hours (the edge),
    millisecond fractions, ineligible orders in between."""
    orders, order_id = [], 0
    for case_id in range(n_cases):
        times: list[datetime] = []
        for _ in range(rng.randint(0, 60)):
            kind = rng.random()
            if times and kind < 0.15:
                at = rng.choice(times)  # a tie
            elif times and kind < 0.3:
                at = rng.choice(times) + timedelta(hours=episode_hours)  # exactly on the edge
            elif times and kind < 0.4:
                at = rng.choice(times) + timedelta(hours=episode_hours, milliseconds=rng.choice([-1, 1]))
            else:
                at = T0 + timedelta(seconds=rng.randint(0, 30 * 86400), milliseconds=rng.choice([0, 0, 0, 250, 999]))
            times.append(at)
            order_id += 1
            orders.append((case_id, order_id, at, rng.random() < 0.85))
    return orders


def run_model(orders: list[tuple], episode_hours: float) -> dict[tuple[int, int], tuple[int, datetime]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    columns = "case_id BIGINT, order_id BIGINT, ordered_at TIMESTAMPTZ, is_eligible BOOLEAN"
    con.execute(f"CREATE TABLE csf_leak__int_case_orders ({columns})")
    con.executemany("INSERT INTO csf_leak__int_case_orders VALUES (?, ?, ?, ?)", orders)
    con.execute("CREATE TABLE csf_leak__parameters AS SELECT CAST(? AS DOUBLE) AS episode_hours", [episode_hours])
    rows = con.execute(EPISODES_SQL).fetchall()
    return {(c, o): (n, start) for c, o, n, start in rows}


@pytest.mark.parametrize(("seed", "episode_hours"), [(1, 24.0), (2, 24.0), (3, 6.0), (4, 1.5), (5, 72.0), (6, 0.25)])
def test_episodes_match_the_order_by_order_definition(seed, episode_hours):
    orders = random_orders(random.Random(seed), 150, episode_hours)
    expected = reference_episodes(orders, episode_hours)
    assert max(n for n, _ in expected.values()) > 8  # long chains, so the later doubling passes are exercised
    assert run_model(orders, episode_hours) == expected


def test_more_episodes_than_the_passes_reach_stop_the_run():
    orders = [(1, i, T0 + timedelta(hours=2 * i), True) for i in range(70)]  # 70 episodes of 1 h
    assert max(n for n, _ in reference_episodes(orders, 1.0).values()) == 70
    with pytest.raises(duckdb.Error, match="more than 64 imaging episodes"):
        run_model(orders, 1.0)
    # 64 is still within reach
    assert run_model(orders[:64], 1.0) == reference_episodes(orders[:64], 1.0)
