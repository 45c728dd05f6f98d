"""The joint pass over time and groups (``disclosure._Joint``) solves each table's system by its structure (per group,
plus the hospital's cells tying the groups together: ``disclosure._Split``) rather than as one dense matrix of cells x
groups x months. It must withhold exactly what the dense system withholds (the same targets given, the same minimum-norm
derivation, so the same cell given up), on every feed: here the dense pass as it was (``DenseJoint``, without its cap)
against it, on generated feeds and on random tables.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_feed import LBP_TIES, build, lbp_year, many_providers_year, mixed_year, run_info
from test_feed_combined import CSF_ORDER_TIES, HEADLINE, combined_breaches, sparse_years, tied_year

from pipeline.report import combinations, disclosure, feed


class DenseJoint:
    """The joint pass as it was until 2026-12-01, its cap on providers removed: per table, the hospital's cells and one
    level's as the rows of one dense matrix over group x month unknowns, each target's minimum-norm combination by
    ``combinations.min_norm_combination``. The reference the split pass must agree with, cell for cell."""

    def __init__(self, frame: pl.DataFrame, periods: dict[str, tuple[str, list[int]]], k: int):
        self.k = k
        cover = disclosure._month_cover(periods)
        n_months = 1 + max((m for _, ms in periods.values() for m in ms), default=-1)
        self.tables = []
        self.left_out: list[str] = []  # the tables whose provider cells are over JOINT_PROVIDER_ENTRIES (``unit``)
        # the hospital and its departments, then the hospital and its providers: each split of it on its own (a
        # provider's cells are its own orders or cases whatever their department)
        split = [
            (level, frame.filter(pl.col("level").is_in(["overall", level]) & pl.col("period").is_in(list(periods))))
            for level in ("department", "provider")
        ]
        for level, (_,), table in ((lv, u, t) for lv, cells in split for u, t in cells.group_by(["unit"], maintain_order=True)):
            groups = sorted(table.filter(pl.col("level") == level)["group_key"].unique().to_list())
            if not groups or n_months == 0:
                continue
            gidx = {g: i for i, g in enumerate(groups)}
            rows = []
            for r in table.select("idx", "period", "level", "group_key").iter_rows():
                vec = np.zeros((len(groups), n_months))
                if r[2] == "overall":
                    vec[:, :] = cover[r[1]]
                else:
                    vec[gidx[r[3]], :] = cover[r[1]]
                rows.append(vec.ravel())
            # a department without a row in a period the table has is a known zero (as in _SeriesGrid); a provider's is
            # not: the feed leaves out the provider cells whose denominator it withholds, so a reader cannot tell
            present = {(p, g) for p, lv, g in table.select("period", "level", "group_key").iter_rows() if lv == level}
            zeros = []
            for p in table["period"].unique(maintain_order=True).to_list() if level == "department" else []:
                for g in groups:
                    if (p, g) not in present:
                        vec = np.zeros((len(groups), n_months))
                        vec[gidx[g], :] = cover[p]
                        zeros.append(vec.ravel())
            pref = np.array([disclosure.PERIOD_PREFERENCE[periods[p][0]] for p in table["period"]])
            self.tables.append(
                (
                    table["idx"].to_numpy(),
                    np.array(rows),
                    np.array(zeros) if zeros else np.zeros((0, len(groups) * n_months)),
                    table["value"].to_numpy().astype(float),
                    table["complement"].to_numpy().astype(float),
                    table["den"].to_numpy().astype(float),
                    pref,
                )
            )
        self._settled: list[tuple | None] = [None] * len(self.tables)  # per table, its cells (and 0s) settle() left
        self.know(frame["zero"].to_numpy() if "zero" in frame.columns else None)

    def know(self, zero: np.ndarray | None) -> None:
        """The withheld cells known to be 0 all the same (the caller's ``zero``), per cell in the frame's order."""
        self.zero = [np.zeros(t[0].size, bool) if zero is None else zero[t[0]] for t in self.tables]

    def settle(self, withheld: np.ndarray) -> np.ndarray:
        """Withhold released cells until no hidden small count of a table follows from the released ones.

        A table whose cells and known zeros are as this left them last time (this round of the feed's or an earlier
        one: ``Protection``) is skipped: its loop would stop at once, the same combination telling the same."""
        out = withheld.copy()
        for t, (idx, vecs, zeros, value, comp, den, pref) in enumerate(self.tables):
            zero = self.zero[t]
            if self._settled[t] is not None and all(map(np.array_equal, (out[idx], zero), self._settled[t])):
                continue
            hidden_small = disclosure.small(value, self.k) | disclosure.small(comp, self.k)
            while True:
                w = out[idx]
                targets = np.flatnonzero(w & hidden_small)
                if targets.size == 0:
                    break
                known_rows = np.flatnonzero(~w)
                # no count is negative: each department-month a released 0 or a known zero (no row) sums is a 0, and
                # those unknowns leave the system (smaller solves than a row per known 0)
                empty = (vecs[known_rows[value[known_rows] == 0]] != 0).any(axis=0) | (zeros != 0).any(axis=0)
                empty |= (vecs[zero] != 0).any(axis=0)  # withheld, but known to be 0 (the caller's ``zero``)
                known_rows = known_rows[value[known_rows] != 0]
                known, target = vecs[known_rows][:, ~empty], vecs[targets][:, ~empty]
                if known.shape[0] == 0 or known.shape[1] == 0:  # nothing released, or no unknown left to solve for
                    break
                coef = combinations.min_norm_combination(known, target)  # each target as a combination of the known rows
                determined = np.abs(coef @ known - target).max(axis=1) < disclosure._EPS
                if not determined.any():
                    break
                # a released cell the first determined target's derivation uses: months first, smallest count
                uses = np.abs(coef[np.flatnonzero(determined)[0]]) > disclosure._EPS
                cand = known_rows[uses & (den[known_rows] > 0)]
                if cand.size == 0:
                    cand = known_rows[uses]
                if cand.size == 0:  # derived from the known zeros alone: nothing released to give up
                    break
                pick = cand[np.lexsort((value[cand], pref[cand]))[0]]
                out[idx[pick]] = True
            self._settled[t] = (out[idx], zero)
        return out


# feeds of the tests' generators; those marked True give a provider count away without the joint pass over providers
# (test_feed_combined.test_time_and_providers_together_give_no_hidden_count_away): it follows only jointly
FEEDS = {
    "mixed 18": (lambda: (mixed_year(18), {}), True),
    "mixed 27": (lambda: (mixed_year(27), {}), True),
    "mixed 5": (lambda: (mixed_year(5), {}), False),
    "sparse 7": (lambda: (sparse_years(7), {}), True),
    "sparse 15": (lambda: (sparse_years(15), {}), True),
    "sparse 3": (lambda: (sparse_years(3), {}), False),
    "many providers 1": (lambda: (many_providers_year(1), {}), False),
    "many providers 3": (lambda: (many_providers_year(3), {}), False),
    "lbp 3": (lambda: (lbp_year(3), LBP_TIES), False),
    "csf 4": (lambda: (tied_year(CSF_ORDER_TIES, 4), CSF_ORDER_TIES), False),
    "csf 9": (lambda: (tied_year(CSF_ORDER_TIES, 9, departments=6), CSF_ORDER_TIES), False),
}


@pytest.mark.parametrize("name", list(FEEDS))
def test_the_split_pass_withholds_what_the_dense_system_withholds(name, monkeypatch):
    make, jointly = FEEDS[name]
    m, ties = make()
    split = build(m, run_info("all"), ties)
    with monkeypatch.context() as patch:
        patch.setattr(disclosure, "_Joint", DenseJoint)
        dense = build(m, run_info("all"), ties)
    assert split.equals(dense)
    if jointly:  # a feed where the pass over providers matters: without it, other cells are withheld
        assert combined_breaches([(split, m)], providers=HEADLINE) == []
        monkeypatch.setattr(disclosure, "JOINT_PROVIDER_ENTRIES", 0)
        assert not build(m, run_info("all"), ties).equals(split)


def random_table(rng: np.random.Generator, n_groups: int, n_months: int, level: str) -> tuple[pl.DataFrame, dict]:
    """One table's cells (the joint pass's frame): each group's months random small counts (often 0), its quarters,
    12-month windows and run total their sums, the hospital's every group's; some group cells missing (a department
    without a row is a known 0; a provider's is not), some withheld cells marked known to be 0."""
    months = [f"{2024 + i // 12}-{1 + i % 12:02d}" for i in range(n_months)]

    windows = feed.period_windows(months, "all")
    index = {mo: i for i, mo in enumerate(months)}
    periods = {p: (kind, [index[mo] for mo in ms]) for p, (kind, ms) in windows.items()}
    names = list(periods)
    cover = np.array([disclosure._month_cover(periods)[p] for p in names])
    counts = rng.choice([0, 0, 0, 1, 2, 3, 5, 9, 14, 25], size=(n_groups, n_months)).astype(float)
    extra = rng.integers(0, 20, size=(n_groups, n_months)).astype(float)
    value = counts @ cover.T  # (groups, periods)
    den = (counts + extra) @ cover.T
    groups = [f"g{g:02d}" for g in range(n_groups)]
    frame = pl.DataFrame(
        {
            "unit": "n",
            "period": names * (n_groups + 1),
            "level": ["overall"] * len(names) + [level] * (len(names) * n_groups),
            "group_key": ["all"] * len(names) + [g for g in groups for _ in names],
            "value": np.concatenate([value.sum(axis=0), value.ravel()]).astype(np.int64),
            "den": np.concatenate([den.sum(axis=0), den.ravel()]).astype(np.int64),
        }
    ).with_columns((pl.col("den") - pl.col("value")).alias("complement"))
    frame = frame.filter((pl.col("level") == "overall") | (pl.Series(rng.random(frame.height)) > 0.15))
    frame = frame.with_row_index("idx").with_columns(
        pl.col("idx").cast(pl.Int64), pl.Series("zero", (rng.random(frame.height) < 0.03) & (frame["value"] == 0).to_numpy())
    )
    return frame, periods


@pytest.mark.parametrize(
    ("level", "n_groups", "n_months", "seed"),
    [("provider", 6, 12, 1), ("provider", 14, 15, 2), ("department", 5, 12, 3), ("provider", 9, 24, 4)],
)
def test_the_split_system_gives_up_what_the_dense_system_gives_up_on_random_tables(level, n_groups, n_months, seed):
    """Per table and withheld pattern (small cells withheld, random others, released 0s and known 0s among them), the
    split pass withholds exactly the cells the dense one does, hospital targets and group targets alike."""
    rng = np.random.default_rng(seed)
    moved = 0
    for _ in range(8):
        frame, periods = random_table(rng, n_groups, n_months, level)
        value, comp = frame["value"].to_numpy(), frame["complement"].to_numpy()
        primary = disclosure.small(value, 11) | disclosure.small(comp, 11) | frame["zero"].to_numpy()
        withheld = primary | (rng.random(frame.height) < 0.2)
        zero = frame["zero"].to_numpy()
        split, dense = disclosure._Joint(frame, periods, 11), DenseJoint(frame, periods, 11)
        split.know(zero)
        dense.know(zero)
        got, want = split.settle(withheld), dense.settle(withheld)
        assert np.array_equal(got, want)
        moved += int((got & ~withheld).sum())
    assert moved > 0  # the patterns had counts the released cells gave away: cells were given up
