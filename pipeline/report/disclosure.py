"""Small-cell protection for the shared feed: which counts to withhold so none of 1..k-1 is released.

A *table* (``unit``) is one count laid out over periods and groups: a measure's numerator, or a
denominator shared by several measures. Its cells add up two ways, and both are protected:

* **groups** (``_Lines``): in every period the hospital-wide cell is the sum of the department
  cells, and again of the provider cells. A line (total + one level's cells) never holds exactly one
  withheld cell, and the withheld cells of a line never add up to 1..k-1 (both would give a hidden
  count away by subtraction): the smallest released cell of the line is withheld as a complement.
* **time** (``_SeriesGrid``): a quarter, a rolling 12 months and the run's total are sums of months.
  Per group, no withheld cell may be computable from the released cells of the same group (linear
  algebra on which months each cell covers; a month without a row is a known zero), and the months
  an aggregate hides may not add up to 1..k-1. Months are given up first, rolling windows last.
* **time and departments together** (``_Joint``): the two sums above combine (a department's quarter
  minus its released months, against the hospital's month minus the other departments...). Per
  table, every hidden small count of the overall and department cells is checked against all the
  released ones at once (unknowns: department x calendar month); one it determines gives up a
  released cell of that derivation. Providers are protected by the first two only: a joint system of
  hundreds of providers x months is too large to solve per table.

The passes repeat until neither changes anything. The work is vectorised (numpy over the lines and
over a series x period grid, batched pseudo-inverses for the distinct patterns of withheld cells,
each pattern solved once): no Python loop over cells.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# which cell to give up first when a complement is needed: months, then quarters, rolling windows, the run
PERIOD_PREFERENCE = {"month": 0, "quarter": 1, "rolling_12m": 2, "all": 3}
_EPS = 1e-8


def small(values: np.ndarray | pl.Expr, k: int):
    """A count that may not be released: 1 to k-1."""
    return (values >= 1) & (values <= k - 1)


def protect(cells: pl.DataFrame, periods: dict[str, tuple[str, list[int]]], k: int) -> np.ndarray:
    """The final withheld mask (aligned to ``cells``), from the primary one in ``cells['withheld']``.

    ``cells``: one row per cell with ``unit, period, level`` (overall / department / provider),
    ``group_key`` (not null), ``value`` (the count), ``complement`` (denominator - numerator for a
    numerator table, else null) and ``den`` (the cell's denominator: a cell over nothing is no
    complement). ``periods``: period -> (period type, indices of the calendar months it sums).
    """
    withheld = cells["withheld"].to_numpy().copy()
    if cells.height == 0:
        return withheld
    frame = cells.with_row_index("idx").with_columns(pl.col("complement").fill_null(0))
    lines, grid, joint = _Lines(frame, k), _SeriesGrid(frame, periods), _Joint(frame, periods, k)
    while True:
        before = withheld.copy()
        withheld = joint.settle(grid.settle(lines.hierarchy_pass(withheld), k))
        if (withheld == before).all():
            return withheld


def _month_cover(periods: dict[str, tuple[str, list[int]]]) -> dict[str, np.ndarray]:
    """Per period, a 0/1 row over the calendar months: which months it sums."""
    n_months = 1 + max((m for _, ms in periods.values() for m in ms), default=-1)
    cover = {p: np.zeros(n_months) for p in periods}
    for p, (_, ms) in periods.items():
        cover[p][ms] = 1.0
    return cover


# ----------------------------------------------------------------------------- groups


class _Lines:
    """The sums over groups: per unit and period, the total and one level's cells (department or provider)."""

    def __init__(self, frame: pl.DataFrame, k: int):
        self.k = k
        self.value = frame["value"].to_numpy().astype(float)
        self.comp = frame["complement"].to_numpy().astype(float)
        sib = frame.filter(pl.col("level") != "overall").with_columns(
            pl.struct("unit", "period", "level").rank("dense").cast(pl.Int64).sub(1).alias("line")
        )
        totals = frame.filter(pl.col("level") == "overall").select("unit", "period", pl.col("idx").alias("total"))
        line_total = sib.select("line", "unit", "period").unique().join(totals, on=["unit", "period"], how="left").sort("line")
        self.n_lines = line_total.height
        self.total = line_total["total"].fill_null(-1).to_numpy()
        # siblings in the order a complement is chosen: per line, the next-smallest count (a zero adds nothing)
        ordered = sib.sort("line", pl.col("value") == 0, "value", "group_key")
        self.idx = ordered["idx"].to_numpy()
        self.line = ordered["line"].to_numpy()
        self.den = ordered["den"].to_numpy()

    def hierarchy_pass(self, withheld: np.ndarray) -> np.ndarray:
        """One complement for every line that gives a hidden count away: exactly one withheld cell, or
        withheld cells adding up to 1..k-1 next to a released total."""
        if self.n_lines == 0:
            return withheld
        w = withheld[self.idx]
        n_w = np.bincount(self.line, weights=w, minlength=self.n_lines)
        sum_w = np.bincount(self.line, weights=self.value[self.idx] * w, minlength=self.n_lines)
        sum_cw = np.bincount(self.line, weights=self.comp[self.idx] * w, minlength=self.n_lines)
        has_total = self.total >= 0
        total_w = has_total & withheld[np.where(has_total, self.total, 0)]
        # the siblings' withheld sum can be computed only when the total is released
        needy = (n_w + total_w == 1) | (~total_w & (small(sum_w, self.k) | small(sum_cw, self.k)))
        if not needy.any():
            return withheld
        out = withheld.copy()
        eligible = needy[self.line] & ~w & (self.den > 0)
        lines_e, first = np.unique(self.line[eligible], return_index=True)
        out[self.idx[eligible][first]] = True
        # no sibling left to give up: the total goes (then nothing in the line can be subtracted)
        bare = needy & has_total & ~total_w
        bare[lines_e] = False
        out[self.total[bare]] = True
        return out


# ----------------------------------------------------------------------------- time


class _SeriesGrid:
    """The cells as a series x period grid: one series per (unit, level, group), one column per period."""

    def __init__(self, frame: pl.DataFrame, periods: dict[str, tuple[str, list[int]]]):
        order = sorted(periods, key=lambda p: (PERIOD_PREFERENCE[periods[p][0]], p))
        self.col = {p: i for i, p in enumerate(order)}
        cover = _month_cover(periods)
        n_months = 1 + max((m for _, ms in periods.values() for m in ms), default=-1)
        self.cover = np.array([cover[p] for p in order]).reshape(len(order), n_months)
        self.is_month = np.array([periods[p][0] == "month" for p in order])
        self.pref = np.array([PERIOD_PREFERENCE[periods[p][0]] for p in order])
        keyed = frame.with_columns(
            pl.struct("unit", "level", "group_key").rank("dense").cast(pl.Int64).sub(1).alias("s"),
            pl.col("period").replace_strict(self.col, return_dtype=pl.Int64).alias("c"),
        )
        s, c = keyed["s"].to_numpy(), keyed["c"].to_numpy()
        shape = (int(s.max()) + 1, len(order))
        self.s, self.c = s, c
        self.present = np.zeros(shape, bool)
        self.present[s, c] = True
        self.value = np.zeros(shape)
        self.value[s, c] = keyed["value"].to_numpy()
        self.comp = np.zeros(shape)
        self.comp[s, c] = keyed["complement"].to_numpy()
        self.den = np.zeros(shape)
        self.den[s, c] = keyed["den"].to_numpy()
        self.in_agg = self.cover @ self.cover.T > 0  # (periods, periods): month column m lies in aggregate a
        self._known: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}  # pattern -> _derivable, across passes
        self._seen: np.ndarray | None = None  # the withheld grid settle() left

    def settle(self, withheld: np.ndarray, k: int) -> np.ndarray:
        """Withhold cells until no series gives a hidden count away over time; each pass looks only at the
        series the previous one changed (the first, at those that changed since the last call)."""
        if not self.cover.size:
            return withheld
        w = np.zeros(self.present.shape, bool)
        w[self.s, self.c] = withheld
        rows = np.arange(w.shape[0]) if self._seen is None else np.flatnonzero((w != self._seen).any(axis=1))
        while rows.size:
            add = self._exact_disclosures(w, rows) | self._small_hidden_sums(w, rows, k)
            w[rows] |= add
            rows = rows[add.any(axis=1)]
        self._seen = w
        return withheld | w[self.s, self.c]

    def _choose(self, candidates: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per series (``rows``), the one candidate to withhold: earliest period type, then smallest count."""
        score = np.where(candidates, self.pref[None, :] * 1e12 + self.value[rows], np.inf)
        best = np.argmin(score, axis=1)
        chosen = np.zeros(candidates.shape, bool)
        found = np.flatnonzero(np.isfinite(score[np.arange(len(best)), best]))
        chosen[found, best[found]] = True
        return chosen

    def _exact_disclosures(self, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For ``rows``: a cell to withhold where withheld cells can be computed from the released ones."""
        add = np.zeros((rows.size, w.shape[1]), bool)
        hot = np.flatnonzero(w[rows].any(axis=1))
        if hot.size == 0:
            return add
        series = rows[hot]
        packed = np.packbits(w[series], axis=1)
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        uniq_keys = [bytes(u) for u in uniq]
        todo = [i for i, key in enumerate(uniq_keys) if key not in self._known]
        if todo:
            for i, d, inv in zip(todo, *self._derivable(w[series][first[todo]]), strict=True):
                self._known[uniq_keys[i]] = (d, inv)
        disclosed = np.stack([self._known[key][0] for key in uniq_keys])
        involved = np.stack([self._known[key][1] for key in uniq_keys])
        inverse = inverse.reshape(-1)
        cand = involved[inverse] & self.present[series] & (self.den[series] > 0)
        hit = disclosed.any(axis=1)[inverse]
        add[hot] = self._choose(cand & hit[:, None], series)
        return add

    def _derivable(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pattern of withheld cells: which withheld cells the released ones determine (a month without a
        row is released as zero), and which released cells such a derivation uses."""
        released = ~patterns
        basis = self.cover[None, :, :] * released[:, :, None]  # (patterns, periods, months): known rows
        pinv = np.linalg.pinv(basis, rcond=1e-10)  # (patterns, months, periods)
        projected = self.cover[None, :, :] @ pinv @ basis  # each cell's part in the span of the known ones
        residual = np.abs(self.cover[None, :, :] - projected).max(axis=2)
        disclosed = patterns & (residual < _EPS)  # (patterns, periods)
        coef = self.cover[None, :, :] @ pinv  # (patterns, periods, periods): cell c from known cell j
        involved = ((np.abs(coef) > _EPS) & disclosed[:, :, None]).any(axis=1) & released
        return disclosed, involved

    def _small_hidden_sums(self, w: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
        """For ``rows``: released aggregates whose withheld months add up to 1..k-1 get one more month
        withheld (one that adds to the sum), or are withheld themselves."""
        wr, value, comp = w[rows], self.value[rows], self.comp[rows]
        month_w = wr & self.is_month[None, :]
        sums = ((value * month_w) @ self.cover) @ self.cover.T  # per series and period: its withheld months' sum
        sums_c = ((comp * month_w) @ self.cover) @ self.cover.T
        bad = ~self.is_month[None, :] & self.present[rows] & ~wr & (small(sums, k) | small(sums_c, k))
        add = np.zeros_like(wr)
        if not bad.any():
            return add
        first_bad = np.argmax(bad, axis=1)  # one aggregate per series per pass
        hit = np.flatnonzero(bad.any(axis=1))
        agg = first_bad[hit]
        months_in = self.in_agg[agg] & self.is_month[None, :]
        grows = (small(sums[hit, agg], k)[:, None] & (value[hit] > 0)) | (small(sums_c[hit, agg], k)[:, None] & (comp[hit] > 0))
        chosen = self._choose(months_in & self.present[rows[hit]] & ~wr[hit] & grows, rows[hit])
        none = ~chosen.any(axis=1)
        chosen[none, agg[none]] = True  # no month left to give: the aggregate itself
        add[hit] = chosen
        return add


# ----------------------------------------------------------------------------- time x departments


class _Joint:
    """Per table, the overall and department cells as linear sums of unknown department x month counts."""

    def __init__(self, frame: pl.DataFrame, periods: dict[str, tuple[str, list[int]]], k: int):
        self.k = k
        cover = _month_cover(periods)
        n_months = 1 + max((m for _, ms in periods.values() for m in ms), default=-1)
        self.tables = []
        cells = frame.filter(pl.col("level").is_in(["overall", "department"]) & pl.col("period").is_in(list(periods)))
        for (_,), table in cells.group_by(["unit"], maintain_order=True):
            groups = sorted(table.filter(pl.col("level") == "department")["group_key"].unique().to_list())
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
            # a department without a row in a period the table has is a known zero (as in _SeriesGrid)
            present = {(p, g) for p, lv, g in table.select("period", "level", "group_key").iter_rows() if lv == "department"}
            zeros = []
            for p in table["period"].unique(maintain_order=True).to_list():  # a period the table has at all
                for g in groups:
                    if (p, g) not in present:
                        vec = np.zeros((len(groups), n_months))
                        vec[gidx[g], :] = cover[p]
                        zeros.append(vec.ravel())
            pref = np.array([PERIOD_PREFERENCE[periods[p][0]] for p in table["period"]])
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

    def settle(self, withheld: np.ndarray) -> np.ndarray:
        """Withhold released cells until no hidden small count of a table follows from the released ones."""
        out = withheld.copy()
        for idx, vecs, zeros, value, comp, den, pref in self.tables:
            hidden_small = small(value, self.k) | small(comp, self.k)
            while True:
                w = out[idx]
                targets = np.flatnonzero(w & hidden_small)
                if targets.size == 0:
                    break
                known_rows = np.flatnonzero(~w)
                known = np.vstack([vecs[known_rows], zeros])
                if known.shape[0] == 0:
                    break
                pinv = np.linalg.pinv(known, rcond=1e-10)
                coef = vecs[targets] @ pinv  # each target as a combination of the known rows
                determined = np.abs(coef @ known - vecs[targets]).max(axis=1) < _EPS
                if not determined.any():
                    break
                # a released cell the first determined target's derivation uses: months first, smallest count
                uses = np.abs(coef[np.flatnonzero(determined)[0], : known_rows.size]) > _EPS
                cand = known_rows[uses & (den[known_rows] > 0)]
                if cand.size == 0:
                    cand = known_rows[uses]
                if cand.size == 0:  # derived from the known zeros alone: nothing released to give up
                    break
                pick = cand[np.lexsort((value[cand], pref[cand]))[0]]
                out[idx[pick]] = True
        return out
