"""Small-cell protection for the shared feed: which counts to withhold so none of 1..k-1 is released.

A *table* (``unit``) is one count laid out over periods and groups: a measure's numerator, or a
denominator shared by several measures. Its cells add up two ways, and both are protected:

* **groups** (``_Lines``): in every period the hospital-wide cell is the sum of the department
  cells, and again of the provider cells. A line (total + one level's cells) never holds exactly one
  withheld cell, and the withheld cells of a line never add up to 1..k-1 (both would give a hidden
  count away by subtraction): the smallest released cell of the line is withheld as a complement.
* **time** (``_SeriesGrid``): a quarter, a rolling 12 months and the run's total are sums of months.
  Per group, no withheld cell may be computable from the released cells of the same group (a month
  without a row is a known zero), and the months an aggregate hides may not add up to 1..k-1. Months
  are given up first, rolling windows last. Every cell sums a run of months, so it is the difference
  of two running totals: the known cells are the edges of a small graph over the running totals, a
  withheld cell is computable exactly when its two ends are connected, and the known cells a
  derivation uses are those the electrical flow between its ends runs through (the minimum-norm
  combination): connected components and one grounded Laplacian solve per series, no pseudo-inverse.
  A numerator table's complements (its denominator less it) are a series of their own over the same
  cells: a row released shows both, and a released complement of 0 (all of a quarter's orders
  inappropriate) is a 0 in each of its months, as a released count of 0 is.
* **time and groups together** (``_Joint``): the two sums above combine (a department's quarter
  minus its released months, against the hospital's month minus the other departments...). Per
  table, every hidden small count of the overall and department cells is checked against all the
  released ones at once (unknowns: department x calendar month); one it determines gives up a
  released cell of that derivation. The overall and provider cells likewise (unknowns: provider x
  month). Each system is solved by its structure (``_Split``: per group over its months, the hospital's
  cells tying the groups together), never as one dense matrix, so its cost grows with the providers, not
  their square; a table over ``JOINT_PROVIDER_ENTRIES`` is protected by the first two passes only
  (``Protection.joint_left_out`` names those tables: the feed's metrics.json lists their measures).

The hospital's count need not be its groups' sum: units no cell of a level holds (``_remainders``) are one more
cell of that level, never released.

No count is negative: a released 0 of a quarter, a 12-month window or the hospital is a 0 of every month and
department it sums, and so is a withheld cell the caller marks ``zero`` (``relations.zero_by_atoms``: every atom of
its count shown empty). The time and joint passes count such cells as known and never give one up.

The passes repeat until neither changes anything. The work is vectorised (numpy over the lines and
over a series x period grid, batched solves over the series): no Python loop over cells.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse

from pipeline.report import combinations

# which cell to give up first when a complement is needed: months, then quarters, rolling windows, the run
PERIOD_PREFERENCE = {"month": 0, "quarter": 1, "rolling_12m": 2, "all": 3}
_EPS = 1e-8
_RANK_TOL = 1e-9  # an eigenvalue of a group's Gram matrix below this (x its largest) is 0: ``_SplitSystem``
_SPAN_TOL = 1e-9  # a target whose squared distance from the released cells' span is below this is given by them
MIXES = 2  # right-hand sides per series in the time pass's flow solve (``_involved``)
_MIX_SEED = 20261130  # fixed: the same cells give the same feed on every run
# the joint pass's largest table over providers, in its split system's entries (``split_entries``: providers x months x
# (months + hospital cells)): the case-dense 100k demo's largest is 244 x 23 x (23 + 43) = 370,392. Its cost and memory
# grow with the providers, not their square (the dense matrix of cells x provider-months did: 34 million entries
# there); over the cap a table is left to the line and time passes (benchmarks/profile_notes.md, "Stop 32")
JOINT_PROVIDER_ENTRIES = 10_000_000


def small(values: np.ndarray | pl.Expr, k: int):
    """A count that may not be released: 1 to k-1."""
    return (values >= 1) & (values <= k - 1)


def protect(cells: pl.DataFrame, periods: dict[str, tuple[str, list[int]]], k: int) -> np.ndarray:
    """The final withheld mask (aligned to ``cells``), from the primary one in ``cells['withheld']``
    (``Protection``, once).

    ``cells``: one row per cell with ``unit, period, level`` (overall / department / provider),
    ``group_key`` (not null), ``value`` (the count), ``complement`` (denominator - numerator for a
    numerator table, else null) and ``den`` (the cell's denominator: a cell over nothing is no
    complement). ``periods``: period -> (period type, indices of the calendar months it sums).
    An optional ``link`` column ties cells that are the same count in two tables (two measures that agree
    hospital-wide and per department, one of them also laid out per provider): cells of one period, level and
    group with the same ``link`` name are withheld together, so neither table releases what the other hides.
    ``<key>_code`` columns, where given, are the keys' ``order_code`` (the caller's, over these cells or more).
    An optional ``zero`` column marks withheld cells known to be 0 all the same (``relations.zero_by_atoms``), an
    optional ``zero_complement`` those whose complement is.

    A provider whose cells of a table are all withheld from the start (at a large hospital most providers: 1 to
    10 orders in every period) stays so, and only its line sums count for the others: such providers are passed
    on as one cell per table and period holding their sum and how many cells it stands for (``_settled``).
    """
    return Protection(periods, k)(cells)


class Protection:
    """``protect`` for the same cells round after round (``feed.suppress``: their withheld and ``zero`` columns grow,
        the cells stay). The passes are built once while the cells they weigh stay the same, and keep what they settled:
        a round re-examines only the series and tables whose withheld cells or known zeros changed since (the rest would
        find what they found before: nothing more), so its cost follows what the last round changed, not every cell. The
    time pass works out again which withheld cells are unknown (``_SeriesGrid._unknown``) only for the series whose
    cells or known zeros changed, and those under a changed hospital's series."""

    def __init__(self, periods: dict[str, tuple[str, list[int]]], k: int):
        self.periods, self.k = periods, k
        self._passes: _Passes | None = None
        self._layout = _Layout()  # the cells' codes and groupings, worked out once while the cells stay the same

    @property
    def joint_left_out(self) -> list[str]:
        """The tables (``unit``) whose provider cells the passes that weighed the cells last left to the line and
        time passes alone: their joint system (``split_entries``) was over ``JOINT_PROVIDER_ENTRIES``. Those passes
        gave the final mask (the rounds before only withheld cells it starts from), so the caller can say which
        tables were not checked jointly (the feed's ``metrics.json``)."""
        return sorted(self._passes.joint.left_out) if self._passes else []

    def __call__(self, cells: pl.DataFrame) -> np.ndarray:
        """``protect(cells, periods, k)``."""
        if cells.height == 0:
            return cells["withheld"].to_numpy().copy()
        # every key as integer codes (order-preserving: each value's place among the sorted distinct values)
        keys = ("unit", "period", "level", "group_key")
        links = ["link"] if "link" in cells.columns else []
        given = [f"{c}_code" for c in keys if f"{c}_code" in cells.columns]  # the caller's codes of its keys
        zero = [c for c in ("zero", "zero_complement") if c in cells.columns]
        coded = cells.select(*keys, *given, "value", "complement", "den", "withheld", *links, *zero).with_columns(
            *(self._layout.code(cells[c]).alias(f"{c}_code") for c in (*keys, *links) if f"{c}_code" not in given),
            pl.lit(1, pl.Int64).alias("cells"),
        )
        settled = _settled(coded, self._layout.combined)
        if not settled.any():
            return self._protect(coded)
        kept = ~settled
        out = cells["withheld"].to_numpy().copy()  # a settled cell is withheld from the start and stays so
        reduced = pl.concat([coded.filter(pl.Series(kept)), _merged(coded.filter(pl.Series(settled)), links)])
        out[kept] = self._protect(reduced)[: int(kept.sum())]
        return out

    def _protect(self, coded: pl.DataFrame) -> np.ndarray:
        """``protect`` on cells with their keys' codes and a ``cells`` column (how many cells each stands for in
        its lines' count of withheld cells)."""
        n_given = coded.height
        coded = pl.concat([coded, _remainders(coded, self.k)])
        passes = self._passes
        if passes is None or not passes.weigh(coded):  # other cells (more providers settled): built afresh
            passes = self._passes = _Passes(coded, self.periods, self.k)
        withheld = passes.start(coded)
        while True:
            before = withheld.copy()
            withheld = passes.joint.settle(passes.grid.settle(passes.lines.hierarchy_pass(withheld), self.k))
            if passes.link is not None:
                withheld = (np.bincount(passes.link, weights=withheld) > 0)[passes.link]
            if (withheld == before).all():
                out = np.empty_like(withheld)
                out[passes.order] = withheld
                return out[:n_given]


class _Passes:
    """The line, time and joint passes over one set of cells (``Protection``), in the order they weigh them."""

    def __init__(self, coded: pl.DataFrame, periods: dict[str, tuple[str, list[int]]], k: int):
        self.order = _order(coded)
        self.cells = _cells_weighed(coded)[self.order]
        frame = coded[self.order].with_row_index("idx").with_columns(pl.col("complement").fill_null(0))
        self.lines, self.grid, self.joint = _Lines(frame, k), _SeriesGrid(frame, periods), _Joint(frame, periods, k)
        self.link = _link_ids(frame) if "link" in frame.columns else None

    def weigh(self, coded: pl.DataFrame) -> bool:
        """Whether ``coded`` are the cells these passes were built for (their keys, counts and how many cells each
        stands for), whatever is withheld now."""
        if coded.height != self.cells.shape[0]:
            return False
        order = _order(coded)  # the settled providers' cells come out of a group-by, in any order
        if not np.array_equal(_cells_weighed(coded)[order], self.cells):
            return False
        self.order = order
        return True

    def start(self, coded: pl.DataFrame) -> np.ndarray:
        """The withheld cells of ``coded`` in the passes' order, their known zeros handed to the passes."""
        known = {c: coded[c].to_numpy()[self.order] for c in ("zero", "zero_complement") if c in coded.columns}
        self.grid.know(known)
        self.joint.know(known.get("zero"))
        return coded["withheld"].to_numpy()[self.order].copy()


def _order(coded: pl.DataFrame) -> np.ndarray:
    """The order the passes weigh the cells in. They choose among equal candidates by position: one order of the
    cells, whatever the caller's (group-bys and uniques hand them over in any order), so the same counts always give
    the same feed."""
    return np.argsort(_combined(coded, ("unit", "period", "level", "group_key")), kind="stable")


def _cells_weighed(coded: pl.DataFrame) -> np.ndarray:
    columns = ("unit_code", "period_code", "level_code", "group_key_code", "value", "den", "cells")
    return np.column_stack([coded[c].fill_null(0).to_numpy().astype(np.int64) for c in columns])


def _settled(coded: pl.DataFrame, combined=None) -> np.ndarray:
    """Per cell: a provider cell of a table in which every cell of that provider is withheld from the start, and
    tied by ``link`` to no other cell. Nothing can release it, and it takes part only in its lines' count of
    withheld cells and their sums (a series without a released cell gives nothing away over time: every
    subtraction needs a released cell covering one of its months). ``combined``: ``_combined`` or a ``_Layout``'s."""
    combined = combined or _combined
    series = combined(coded, ("unit", "level", "group_key"))
    withheld = coded["withheld"].to_numpy()
    settled = np.bincount(series, weights=~withheld) == 0
    if "link" in coded.columns:
        link = _link_ids(coded, combined)
        tied = (np.bincount(link) > 1)[link]
        settled &= np.bincount(series, weights=tied, minlength=settled.size) == 0
    return (coded["level"] == "provider").to_numpy() & settled[series]


def _merged(settled: pl.DataFrame, links: list[str]) -> pl.DataFrame:
    """The settled cells as one cell per table, period (and link name): their sums, how many cells they stand
    for, in a group of their own after every provider's (a code past the last)."""
    past = int(settled["group_key_code"].max()) + 1
    by = ["unit_code", "period_code", "level_code", *(f"{c}_code" for c in links)]
    merged = settled.group_by(by).agg(
        *(pl.col(c).first() for c in ("unit", "period", "level", *links)),
        pl.col("value", "complement", "den").sum(),
        pl.len().cast(pl.Int64).alias("cells"),
        *(pl.col(c).all() for c in ("zero", "zero_complement") if c in settled.columns),
    )
    link_code = pl.col("link_code") if links else pl.lit(0)
    return merged.with_columns(
        pl.lit(True).alias("withheld"),
        pl.concat_str([pl.lit("\x00settled"), link_code.cast(pl.String)], separator="\x1f").alias("group_key"),
        (past + link_code).cast(settled["group_key_code"].dtype).alias("group_key_code"),
    ).select(settled.columns)


def _remainders(coded: pl.DataFrame, k: int) -> pl.DataFrame:
    """Per table, period and level (department, provider), the units the hospital counts and no cell of the level
    holds (a case without an attributed department, were a model to leave one out), as one more cell of that level,
    in a group of its own after every other: the hospital less the level's released cells gives it, so it is a count
    like any other (withheld from the start when it is 1..k-1) and the line, time and joint passes protect it and
    rely on it only while it stays hidden. It is never released (the caller's cells are all ``protect`` answers
    for). None where the levels' cells add up to the hospital's, as the engine's models always give them."""
    total = pl.col("level") == "overall"
    by = ["unit_code", "period_code", "level_code"]
    parts = (
        coded.filter(~total)
        .group_by(by)
        .agg(pl.col("unit", "period", "level").first(), pl.col("value", "complement", "den").sum())
    )
    whole = coded.filter(total).select(
        "unit_code", "period_code", pl.col("value").alias("v"), pl.col("complement").alias("c"), pl.col("den").alias("d")
    )
    rest = parts.join(whole, on=["unit_code", "period_code"]).select(
        *by,
        "unit",
        "period",
        "level",
        (pl.col("v") - pl.col("value")).alias("value"),
        (pl.col("c") - pl.col("complement")).alias("complement"),
        (pl.col("d") - pl.col("den")).alias("den"),
    )
    rest = rest.filter((pl.col("value") != 0) | (pl.col("den") != 0))
    if rest.height == 0:
        return coded.clear()
    past = int(coded["group_key_code"].max()) + 1
    extra = {
        "group_key": pl.lit("\x00remainder"),
        "group_key_code": pl.lit(past).cast(coded["group_key_code"].dtype),
        "withheld": small(pl.col("value"), k) | small(pl.col("complement").fill_null(0), k),
        "cells": pl.lit(1, pl.Int64),
    }
    if "link" in coded.columns:  # tied to no other cell: a link name of its own per table
        extra["link"] = pl.concat_str([pl.lit("\x00remainder"), pl.col("unit")], separator="\x1f")
        extra["link_code"] = (int(coded["link_code"].max()) + 1 + pl.col("unit_code")).cast(coded["link_code"].dtype)
    for known in ("zero", "zero_complement"):
        if known in coded.columns:
            extra[known] = pl.lit(False)
    return rest.with_columns(**extra).select(coded.columns).cast(coded.schema)


def key_of(codes: list, sizes: list[int] | None = None):
    """One Int64 per row from its integer codes (each ``0 .. size - 1``): the codes as the digits of one number, the
    first the most significant, so rows share a key exactly when they agree in every code, and keys sort as the
    codes do, the first code first. ``codes``: numpy arrays (``sizes`` default to each one's largest code + 1), or
    Polars expressions with ``sizes`` given (the codes' sizes over every frame the keys are compared across; the
    first code's is not used). The one
    home of the cells' keys: the feed joins its cells on them, the passes here number lines and series by them and
    ``relations`` tells the cells apart by them. The sizes' product must stay below 2**63 (thousands of groups,
    hundreds of periods, a few units and levels: far below)."""
    if sizes is None:
        sizes = [int(np.max(c, initial=0)) + 1 for c in codes]
    expr = isinstance(codes[0], pl.Expr)
    key = codes[0].cast(pl.Int64) if expr else np.asarray(codes[0]).astype(np.int64)
    for code, size in zip(codes[1:], sizes[1:], strict=True):
        key = key * size + (code.cast(pl.Int64) if expr else np.asarray(code).astype(np.int64))
    return key


def _combined(frame: pl.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """Per cell, a number shared by the cells that agree in ``columns`` (from their integer codes): their dense
    rank in the order of ``columns`` (0, 1, ...), as a Polars rank of the codes' struct gives it at four times
    the cost, so it also orders the cells (the passes' order, the lines' and series' numbers)."""
    return np.unique(key_of([frame[f"{c}_code"].to_numpy() for c in columns]), return_inverse=True)[1]


def _link_ids(frame: pl.DataFrame, combined=None) -> np.ndarray:
    """Per cell, a number shared by the cells of its period, level and group whose ``link`` names agree: the
    same count in two tables. Made of the integer codes (a few hundred thousand cells: no text is compared)."""
    return (combined or _combined)(frame, ("link", "period", "level", "group_key"))


class _Layout:
    """``order_code`` and ``_combined`` for cells handed over round after round (``Protection``): each answer kept
    with what it was worked out of, and given again while that is the same (a comparison costs a fraction of the
    sorts: at case-dense 10M orders, a second a round)."""

    def __init__(self):
        self._codes: dict[str, tuple[pl.Series, pl.Series]] = {}
        self._combined: dict[tuple[str, ...], tuple[list[np.ndarray], np.ndarray]] = {}

    def code(self, column: pl.Series) -> pl.Series:
        """``order_code(column)``."""
        last = self._codes.get(column.name)
        if last is not None and last[0].dtype == column.dtype and last[0].equals(column):
            return last[1]
        codes = order_code(column)
        self._codes[column.name] = (column, codes)
        return codes

    def combined(self, frame: pl.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
        """``_combined(frame, columns)``."""
        codes = [frame[f"{c}_code"].to_numpy() for c in columns]
        last = self._combined.get(columns)
        if last is not None and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(last[0], codes, strict=True)):
            return last[1]
        out = _combined(frame, columns)
        self._combined[columns] = (codes, out)
        return out


def order_code(column: pl.Series) -> pl.Series:
    """Each value's place in the sorted distinct values (0, 1, ...): sorting and ranking by it is sorting and
    ranking by the text, at the speed of integers (a few distinct units and periods, thousands of groups,
    hundreds of thousands of cells)."""
    distinct = column.unique().sort()
    return column.replace_strict(distinct, pl.int_range(distinct.len(), dtype=pl.UInt32, eager=True))


def _month_cover(periods: dict[str, tuple[str, list[int]]]) -> dict[str, np.ndarray]:
    """Per period, a 0/1 row over the calendar months: which months it sums."""
    n_months = 1 + max((m for _, ms in periods.values() for m in ms), default=-1)
    cover = {p: np.zeros(n_months) for p in periods}
    for p, (_, ms) in periods.items():
        cover[p][ms] = 1.0
    return cover


def _interval_ends(cover: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per period, its first month and one past its last (every period of the feed is a run of consecutive
    months: a month, a quarter, a rolling window, the run's months)."""
    first = cover.argmax(axis=1)
    stop = cover.shape[1] - cover[:, ::-1].argmax(axis=1)
    if not (cover.any(axis=1) & (cover.sum(axis=1) == stop - first)).all():
        raise ValueError("every period must be a run of consecutive months")
    return first, stop


def _components(known: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per series (rows of ``known``, series x periods), a label per running total (node) naming its connected
    component, each known cell an edge first -> stop: label propagation until nothing changes."""
    n, n_nodes = known.shape[0], int(stop.max()) + 1
    rows, cols = np.nonzero(known)
    u, v = rows * n_nodes + first[cols], rows * n_nodes + stop[cols]
    flat = np.tile(np.arange(n_nodes, dtype=np.int64), n)
    while True:
        before = flat.copy()
        np.minimum.at(flat, v, before[u])
        np.minimum.at(flat, u, before[v])
        if (flat == before).all():
            return flat.reshape(n, n_nodes)


def _determined(withheld: np.ndarray, labels: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Which withheld cells the released ones (and the months without a row, known zeros) determine, per series;
    ``labels``: ``_components`` of the known cells.

    A cell summing months a..b-1 is the difference of two running totals, T(b) - T(a), so the known cells are
    the edges of a graph over the running totals 0..n_months, and a cell is determined exactly when its two
    ends are connected (the sums of runs of months form a graphic matroid)."""
    return withheld & (labels[:, first] == labels[:, stop])


def _involved(
    withheld: np.ndarray, determined: np.ndarray, labels: np.ndarray, first: np.ndarray, stop: np.ndarray
) -> np.ndarray:
    """Per series, the known cells some subtraction giving a determined cell away uses: those with a nonzero
    part in the least-squares (minimum-norm) combination of known cells that equals it. On the graph of
    running totals that combination is the electrical flow between the determined cell's two ends (unit
    resistance per known cell), so one grounded Laplacian solve per series gives every determined cell's."""
    n_nodes = int(stop.max()) + 1
    known = ~withheld
    laplacian = _laplacians(known, first, stop, n_nodes)
    # ground one node of each connected component (the one that names it) so the system has one solution
    s, node = np.nonzero(labels == np.arange(n_nodes)[None, :])
    laplacian[s, node, node] += 1.0
    # a series with one or two determined cells: a right-hand side each; with more, two random positive mixes
    # of them (an edge carries part of some cell's flow exactly when it carries part of a mix's, but for a
    # cancellation of probability ~1e-10 per edge): the solve's cost grows with its columns, and a series
    # often has ten or thirty determined cells in its first passes
    count = determined.sum(axis=1)
    width = np.minimum(count, MIXES)
    through = np.zeros_like(known)
    for w in np.unique(width[width > 0]):
        batch = np.flatnonzero(width == w)
        through[batch] = _carries_flow(laplacian[batch], determined[batch], first, stop, int(w))
    return known & through


def _laplacians(known: np.ndarray, first: np.ndarray, stop: np.ndarray, n_nodes: int) -> np.ndarray:
    """Per series, the graph Laplacian of its known cells as edges first -> stop (unit weights): (series, nodes,
    nodes). Scattered from the edges (a bincount over the flat array) rather than a product of the series x
    cell mask with every cell's own Laplacian, which multiplied ~70 x 1,400 mostly-zero floats per series: the
    entries are small integers either way, so the same floats, at a third of the time."""
    n = known.shape[0]
    s, c = np.nonzero(known)
    a, b, base = first[c], stop[c], s * (n_nodes * n_nodes)
    index = np.concatenate([base + a * n_nodes + a, base + b * n_nodes + b, base + a * n_nodes + b, base + b * n_nodes + a])
    weight = np.repeat([1.0, 1.0, -1.0, -1.0], s.size)
    return np.bincount(index, weight, minlength=n * n_nodes * n_nodes).reshape(n, n_nodes, n_nodes)


def _carries_flow(laplacian: np.ndarray, determined: np.ndarray, first: np.ndarray, stop: np.ndarray, width: int) -> np.ndarray:
    """Per series of the batch, the cells (as edges) that carry part of the unit flow between the ends of one
    of its determined cells. Column j of the solve is the series' j-th determined cell where it has ``width``
    of them; a series with more has ``width`` mixes of all its cells' flows (fixed random weights, 1 to 2)."""
    n, n_nodes = laplacian.shape[:2]
    d_s, d_c = np.nonzero(determined)
    per_series = np.bincount(d_s, minlength=n)
    j = np.arange(d_s.size) - np.repeat(np.cumsum(per_series) - per_series, per_series)
    inject = np.zeros((n, n_nodes, width))
    mixed = per_series[d_s] > width
    weight = np.where(mixed[:, None], np.random.default_rng(_MIX_SEED).uniform(1.0, 2.0, (d_s.size, width)), 0.0)
    weight[np.flatnonzero(~mixed), j[~mixed]] = 1.0  # one cell a column
    for col in range(width):
        np.add.at(inject, (d_s, first[d_c], col), weight[:, col])
        np.add.at(inject, (d_s, stop[d_c], col), -weight[:, col])
    potential = np.linalg.solve(laplacian, inject)  # (series, nodes, columns)
    current = potential[:, first, :] - potential[:, stop, :]  # (series, cells as edges, columns)
    return (np.abs(current) > _EPS).any(axis=2)


# ----------------------------------------------------------------------------- groups


class _Lines:
    """The sums over groups: per unit and period, the total and one level's cells (department or provider)."""

    def __init__(self, frame: pl.DataFrame, k: int):
        self.k = k
        self.value = frame["value"].to_numpy().astype(float)
        self.comp = frame["complement"].to_numpy().astype(float)
        sib = frame.filter(pl.col("level") != "overall")
        sib = sib.select("idx", "unit_code", "period_code", "value", "den", "group_key_code", "cells").with_columns(
            pl.Series("line", _combined(sib, ("unit", "period", "level")))
        )
        totals = frame.filter(pl.col("level") == "overall").select("unit_code", "period_code", pl.col("idx").alias("total"))
        line_total = (
            sib.select("line", "unit_code", "period_code")
            .unique()
            .join(totals, on=["unit_code", "period_code"], how="left")
            .sort("line")
        )
        self.n_lines = line_total.height
        self.total = line_total["total"].fill_null(-1).to_numpy()
        # siblings in the order a complement is chosen: per line, the next-smallest count (a zero adds nothing)
        ordered = sib.sort("line", pl.col("value") == 0, "value", "group_key_code")
        self.idx = ordered["idx"].to_numpy()
        self.line = ordered["line"].to_numpy()
        self.den = ordered["den"].to_numpy()
        self.count = ordered["cells"].to_numpy().astype(float)  # a settled providers' cell stands for several

    def hierarchy_pass(self, withheld: np.ndarray) -> np.ndarray:
        """One complement for every line that gives a hidden count away: exactly one withheld cell, or
        withheld cells adding up to 1..k-1 next to a released total."""
        if self.n_lines == 0:
            return withheld
        w = withheld[self.idx]
        n_w = np.bincount(self.line, weights=w * self.count, minlength=self.n_lines)
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
            pl.Series("s", _combined(frame, ("unit", "level", "group_key"))),
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
        self.know({c: keyed[c].to_numpy() for c in ("zero", "zero_complement") if c in keyed.columns})
        self.in_agg = self.cover @ self.cover.T > 0  # (periods, periods): month column m lies in aggregate a
        self.first, self.stop = _interval_ends(self.cover) if self.cover.size else (np.zeros(0, int), np.zeros(0, int))
        # per series, the hospital's series of its table (-1: none, or its own): a hospital's 0 is a 0 of every group
        hospital = dict(keyed.filter(pl.col("level") == "overall").select("unit_code", "s").unique().iter_rows())
        self.hospital = np.full(shape[0], -1)
        self.hospital[s] = keyed["unit_code"].replace_strict(hospital, default=-1, return_dtype=pl.Int64).to_numpy()
        # per hospital series, the series under it (its own included): the series whose known 0s a change of its
        # cells can change (``_unknown``)
        under = np.flatnonzero(self.hospital >= 0)
        self._under = np.zeros(0, np.int64) if under.size == 0 else under[np.argsort(self.hospital[under], kind="stable")]
        self._under_start = np.searchsorted(self.hospital[self._under], np.arange(shape[0] + 1))
        # what settle() left: the unknown cells (withheld, no known 0), the withheld cells and the known 0s it weighed
        self._seen: np.ndarray | None = None
        self._left: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def know(self, known: dict[str, np.ndarray]) -> None:
        """The withheld cells known to be 0 all the same (``zero``: by the atoms, ``relations.zero_by_atoms``) and
        those whose complement is (``zero_complement``), per cell in the frame's order."""
        self.zero = np.zeros(self.present.shape, bool)
        self.zero_complement = np.zeros(self.present.shape, bool)
        for name, grid in (("zero", self.zero), ("zero_complement", self.zero_complement)):
            if name in known:
                grid[self.s, self.c] = known[name]

    def _unknown(self, w: np.ndarray, rows: np.ndarray, of_complement: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """For ``rows`` (series, sorted): (withheld cells not known otherwise, cells known to be 0), of the counts or
        ``of_complement`` of their complements (a withheld row hides both; a released one shows both). No count is
        negative: a released 0 of its series over some months (a quarter, a 12-month window), or of the hospital's
        series of its table, is a 0 in each of those months, so a cell all of whose months such 0s cover is known,
        withheld or not. A row's answer reads its own cells and its hospital's alone (``_touched``)."""
        value, zero = (self.comp, self.zero_complement) if of_complement else (self.value, self.zero)
        hospital = self.hospital[rows]
        read = np.union1d(rows, hospital[hospital >= 0])
        released_zero = self.present[read] & ((~w[read] & (value[read] == 0)) | zero[read])
        zero_month = released_zero.astype(float) @ self.cover > 0  # (series read, months)
        own = zero_month[np.searchsorted(read, rows)]
        has = hospital >= 0
        own[has] |= zero_month[np.searchsorted(read, hospital[has])]
        known_zero = self.present[rows] & ((~own).astype(float) @ self.cover.T == 0)
        return w[rows] & ~known_zero, known_zero

    def _unknowns(self, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``_unknown`` of the counts and of their complements side by side, for ``rows``."""
        return np.hstack([*self._unknown(w, rows), *self._unknown(w, rows, of_complement=True)])

    def _touched(self, rows: np.ndarray) -> np.ndarray:
        """The series whose ``_unknown`` a change of the cells of ``rows`` can change: those and, of a hospital's
        series among them, every series of its table (sorted)."""
        starts, stops = self._under_start[rows], self._under_start[rows + 1]
        size = stops - starts
        under = self._under[np.repeat(starts - np.cumsum(size) + size, size) + np.arange(size.sum())]
        return np.union1d(rows, under)

    def settle(self, withheld: np.ndarray, k: int) -> np.ndarray:
        """Withhold cells until no series gives a hidden count away over time; each pass looks only at the
        series the previous one changed (the first, at those that changed since the last call)."""
        if not self.cover.size:
            return withheld
        w = np.zeros(self.present.shape, bool)
        w[self.s, self.c] = withheld
        # the counts and their complements (a numerator table's: the denominator less it), each a series of its own:
        # a withheld count is given by its released months as much as by its complement's (two 12-month windows
        # less a month a year later whose complement is known to be 0). Weighed again only where the cells or known
        # 0s changed since the last call left them (and the series under a changed hospital's)
        if self._seen is None:
            unknown = self._unknowns(w, np.arange(w.shape[0]))
            rows = np.arange(w.shape[0])
        else:
            was_w, was_zero, was_zero_complement = self._left
            changed = (w != was_w) | (self.zero != was_zero) | (self.zero_complement != was_zero_complement)
            unknown = self._seen.copy()
            rows = self._touched(np.flatnonzero(changed.any(axis=1)))
            unknown[rows] = self._unknowns(w, rows)
            rows = rows[(unknown[rows] != self._seen[rows]).any(axis=1)]
        n = w.shape[1]
        while rows.size:
            add = self._small_hidden_sums(w, rows, k)
            for part in (0, 2 * n):  # the counts, then the complements
                add |= self._exact_disclosures(unknown[:, part : part + n], unknown[:, part + n : part + 2 * n], rows)
            w[rows] |= add
            # a released 0 given up can make other cells (a department's, under the hospital's 0) unknown again
            touched = self._touched(rows[add.any(axis=1)])
            before = unknown[touched]
            unknown[touched] = self._unknowns(w, touched)
            rows = touched[(unknown[touched] != before).any(axis=1)]
        self._seen = unknown
        self._left = (w, self.zero.copy(), self.zero_complement.copy())
        return withheld | w[self.s, self.c]

    def _choose(self, candidates: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per series (``rows``), the one candidate to withhold: earliest period type, then smallest count."""
        score = np.where(candidates, self.pref[None, :] * 1e12 + self.value[rows], np.inf)
        best = np.argmin(score, axis=1)
        chosen = np.zeros(candidates.shape, bool)
        found = np.flatnonzero(np.isfinite(score[np.arange(len(best)), best]))
        chosen[found, best[found]] = True
        return chosen

    def _exact_disclosures(self, w: np.ndarray, known_zero: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For ``rows``: a cell to withhold where withheld cells can be computed from the released ones. ``w``: the
        withheld cells not known otherwise (``_unknown``); a cell known to be 0 is no help to give up."""
        add = np.zeros((rows.size, w.shape[1]), bool)
        hot = np.flatnonzero(w[rows].any(axis=1))
        if hot.size == 0:
            return add
        labels = _components(~w[rows[hot]], self.first, self.stop)
        determined = _determined(w[rows[hot]], labels, self.first, self.stop)
        hit = determined.any(axis=1)
        if not hit.any():
            return add
        hot, determined, labels = hot[hit], determined[hit], labels[hit]
        series = rows[hot]
        involved = _involved(w[series], determined, labels, self.first, self.stop)
        add[hot] = self._choose(involved & self.present[series] & (self.den[series] > 0) & ~known_zero[series], series)
        return add

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


# ----------------------------------------------------------------------------- time x groups


class _Joint:
    """Per table, the hospital's cells and one level's (its departments, or its providers) as sums of unknown
    group x calendar month counts, each split of the hospital on its own (a provider's cells are its own orders or
    cases whatever their department): ``_Split``."""

    def __init__(self, frame: pl.DataFrame, periods: dict[str, tuple[str, list[int]]], k: int):
        self.k = k
        n_months = 1 + max((m for _, ms in periods.values() for m in ms), default=-1)
        self.tables: list[_Split] = []
        self.left_out: list[str] = []  # the tables whose provider cells are over JOINT_PROVIDER_ENTRIES (``unit``)
        split = [
            (level, frame.filter(pl.col("level").is_in(["overall", level]) & pl.col("period").is_in(list(periods))))
            for level in ("department", "provider")
        ]
        for level, (_,), table in ((lv, u, t) for lv, cells in split for u, t in cells.group_by(["unit"], maintain_order=True)):
            n_groups = table.filter(pl.col("level") == level)["group_key"].n_unique()
            if n_groups == 0 or n_months == 0:
                continue
            n_hospital = int((table["level"] == "overall").sum())
            if level == "provider" and split_entries(n_groups, n_months, n_hospital) > JOINT_PROVIDER_ENTRIES:
                self.left_out.append(table["unit"][0])
                continue
            self.tables.append(_Split(table, level, periods))
        self._settled: list[tuple | None] = [None] * len(self.tables)  # per table, its cells (and 0s) settle() left
        self.know(frame["zero"].to_numpy() if "zero" in frame.columns else None)

    def know(self, zero: np.ndarray | None) -> None:
        """The withheld cells known to be 0 all the same (the caller's ``zero``), per cell in the frame's order."""
        self.zero = [np.zeros(t.idx.size, bool) if zero is None else zero[t.idx] for t in self.tables]

    def settle(self, withheld: np.ndarray) -> np.ndarray:
        """Withhold released cells until no hidden small count of a table follows from the released ones.

        A table whose cells and known zeros are as this left them last time (this round of the feed's or an earlier
        one: ``Protection``) is skipped: its loop would stop at once, the same combination telling the same."""
        out = withheld.copy()
        for t, table in enumerate(self.tables):
            zero = self.zero[t]
            if self._settled[t] is not None and all(map(np.array_equal, (out[table.idx], zero), self._settled[t])):
                continue
            table.settle(out, zero, self.k)
            self._settled[t] = (out[table.idx], zero)
        return out


def split_entries(n_groups: int, n_months: int, n_hospital: int) -> int:
    """The entries of ``_SplitSystem``'s largest arrays for a table of ``n_groups`` groups over ``n_months`` months and
    ``n_hospital`` hospital cells: per group a months x months matrix and a months x hospital-cells block."""
    return n_groups * n_months * (n_months + n_hospital)


class _Split:
    """One table's hospital cells and one level's cells (departments or providers) as sums of unknown group x month
    counts: a cell of a group sums its months of that group, a hospital cell its months of every group.

    A withheld count of 1..k-1 that the released cells give (a linear combination of them) gives up a released cell
    of that combination, the minimum-norm one (months first, the smallest count), until none follows. The system is
    never written out as one matrix (cells x groups x months: at 244 providers, 6,113 x 5,612; at a health system's
    thousands, gigabytes): per group it is its own cells over its own months, and the hospital's cells tie the groups
    together (``_SplitSystem``), so its cost grows with the groups, not their square."""

    def __init__(self, table: pl.DataFrame, level: str, periods: dict[str, tuple[str, list[int]]]):
        names = list(periods)
        cover = _month_cover(periods)
        cover = np.array([cover[p] for p in names]).reshape(len(names), -1)
        period = table["period"].replace_strict({p: i for i, p in enumerate(names)}, return_dtype=pl.Int64).to_numpy()
        in_level = (table["level"] == level).to_numpy()
        groups = table.filter(pl.col("level") == level)["group_key"].unique().sort()
        group = table["group_key"].replace_strict(groups, pl.int_range(groups.len(), eager=True), default=-1).to_numpy()
        self.idx = table["idx"].to_numpy()
        self.group = np.where(in_level, group, -1)  # -1: the hospital's cell
        self.periods, self.period = cover, period  # the months each period sums; each cell's period
        self.cover = cover[period]
        self.value = table["value"].to_numpy().astype(float)
        self.comp = table["complement"].to_numpy().astype(float)
        self.den = table["den"].to_numpy().astype(float)
        self.pref = np.array([PERIOD_PREFERENCE[periods[p][0]] for p in names])[period]
        # a department without a row in a period the table has is a known zero (as in _SeriesGrid); a provider's is
        # not: the feed leaves out the provider cells whose denominator it withholds, so a reader cannot tell
        self.absent = np.zeros((groups.len(), cover.shape[1]), bool)
        if level == "department":
            present = np.zeros((len(names), groups.len()), bool)
            present[period[in_level], group[in_level]] = True
            missing = ~present & np.isin(np.arange(len(names)), period)[:, None]
            self.absent = missing.T.astype(float) @ cover > 0
        self._last: _SplitSystem | None = None  # a cell given up changes one group's matrices: the rest are kept

    def settle(self, out: np.ndarray, zero: np.ndarray, k: int) -> None:
        """Withhold (in ``out``, the frame's cells) released cells of this table until no hidden small count of it
        follows from the released ones. ``zero``: the withheld cells known to be 0 all the same."""
        hidden_small = small(self.value, k) | small(self.comp, k)
        hospital = self.group < 0
        while True:
            w = out[self.idx]
            targets = np.flatnonzero(w & hidden_small)
            if targets.size == 0:
                return
            # no count is negative: each group-month a released 0 (or a known zero: no row, the caller's ``zero``)
            # sums is a 0, and those unknowns leave the system
            shown_zero = (~w & (self.value == 0)) | zero
            empty = self.absent | self.cover[shown_zero & hospital].any(axis=0)[None, :]
            own = shown_zero & ~hospital
            free = ~(empty | (_group_sums(self.group[own], self.cover[own], empty.shape[0]) > 0))
            known = np.flatnonzero(~w & (self.value != 0))
            if known.size == 0 or not free.any():  # nothing released, or no unknown left to solve for
                return
            system = self._last = _SplitSystem(self.cover, self.group, known, free, self._last)
            determined = np.flatnonzero(system.determined(self.periods, self.period[targets], self.group[targets]))
            if determined.size == 0:
                return
            first = targets[determined[0]]
            # a released cell the first determined target's derivation uses: months first, smallest count
            uses = np.abs(system.combination(self.cover[first], self.group[first])) > _EPS
            cand = known[uses & (self.den[known] > 0)]
            if cand.size == 0:
                cand = known[uses]
            if cand.size == 0:  # derived from the known zeros alone: nothing released to give up
                return
            out[self.idx[cand[np.lexsort((self.value[cand], self.pref[cand]))[0]]]] = True


def _group_sums(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group (``0 .. n_groups - 1``), the sum of the rows of ``values`` (2-D) that ``group`` gives it: one sparse
    product (``np.add.at`` over thousands of rows is some hundred times slower)."""
    one_hot = scipy.sparse.csr_matrix((np.ones(group.size), (group, np.arange(group.size))), shape=(n_groups, group.size))
    return np.asarray(one_hot @ values).reshape(n_groups, values.shape[1])


def _block_grams(rows: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the Gram matrix (months x months) of its ``rows``: one sparse product of the rows laid out over
    group x month columns, whose diagonal blocks they are (the rows' outer products one by one would be rows x months^2
    floats)."""
    n_months = rows.shape[1]
    r, m = np.nonzero(rows)
    laid_out = scipy.sparse.csr_matrix((rows[r, m], (r, group[r] * n_months + m)), shape=(rows.shape[0], n_groups * n_months))
    product = (laid_out.T @ laid_out).tocoo()
    gram = np.zeros((n_groups, n_months, n_months))
    gram[product.row // n_months, product.row % n_months, product.col % n_months] = product.data
    return gram


class _SplitSystem:
    """The released cells of a ``_Split`` (``known``: rows of its cells, none of them 0) as linear sums of the unknown
    group x month counts not known to be 0 (``free``: groups x months).

    Group g's own cells are the rows of a small matrix A_g over its months; a hospital cell is its months of every
    group (H_g: the hospital cells' rows over group g's free months). A combination of the released cells is c_H over
    the hospital's and c_g over each group's: it gives a target t (t_g over each group's months) exactly when
    H_g' c_H + A_g' c_g = t_g for every g, so when t_g - H_g' c_H lies in the span of A_g's rows (R_g, the projector
    onto the rest, takes it to 0) for some c_H: one system in the hospital cells' coefficients, R_g H_g' c_H = R_g t_g
    stacked over the groups (groups x months rows, hospital cells columns). Given c_H, the least c_g is
    A_g (A_g' A_g)^+ (t_g - H_g' c_H), and the least combination over all (the one the dense system's minimum-norm
    solve gives, and so the same cell given up) minimises |c_H|^2 + sum_g |c_g|^2 over the c_H that solve it: a
    quadratic in c_H alone, solved with its constraints (hospital cells x hospital cells). Per group the work is a
    months x months eigendecomposition; the groups meet only in the hospital cells' system."""

    def __init__(self, cover: np.ndarray, group: np.ndarray, known: np.ndarray, free: np.ndarray, last=None):
        """``last``: the table's previous system, whose groups' matrices are kept where their Gram matrix is the same
        (a cell given up changes one group's)."""
        n_groups, n_months = free.shape
        self.free = free.astype(float)
        self.in_group = group[known] >= 0
        rows = known[self.in_group]
        self.row_group = group[rows]
        self.rows = cover[rows] * self.free[self.row_group]  # each group's cells over its free months
        self.gram = _block_grams(self.rows, self.row_group, n_groups)
        if last is None or last.gram.shape != self.gram.shape:
            self.gram_pinv, self.rest = np.zeros(self.gram.shape), np.zeros(self.gram.shape)
            redo = np.arange(n_groups)
        else:
            self.gram_pinv, self.rest = last.gram_pinv.copy(), last.rest.copy()
            redo = np.flatnonzero((self.gram != last.gram).any(axis=(1, 2)))
        # symmetric eigendecompositions (no SVD: ``combinations`` says why); the Gram matrices are small integer ones
        # whose eigenvalues are either 0 (to ~1e-13) or far from it
        lam, vec = np.linalg.eigh(self.gram[redo])
        spans = lam > _RANK_TOL * np.maximum(lam.max(axis=1, keepdims=True, initial=0.0), 1.0)
        inverse = np.where(spans, 1.0 / np.where(spans, lam, 1.0), 0.0)
        # (batched matrix products, not einsum: BLAS does them)
        self.gram_pinv[redo] = (vec * inverse[:, None, :]) @ vec.transpose(0, 2, 1)
        self.rest[redo] = np.eye(n_months)[None] - (vec * spans[:, None, :]) @ vec.transpose(0, 2, 1)
        self.hospital = cover[known[~self.in_group]][None, :, :] * self.free[:, None, :]  # (groups, hospital cells, months)
        n_hospital = self.hospital.shape[1]
        stacked = (self.rest @ self.hospital.transpose(0, 2, 1)).reshape(n_groups * n_months, n_hospital)
        self.basis = np.zeros((n_groups * n_months, 0))
        self.constraints = np.zeros((0, n_hospital))
        nonzero = np.flatnonzero(np.abs(stacked).max(axis=1, initial=0.0) > _EPS)
        if nonzero.size and n_hospital:
            q, r, pivot = scipy.linalg.qr(stacked[nonzero], mode="economic", pivoting=True, check_finite=False)
            diagonal = np.abs(np.diag(r))
            rank = int((diagonal > combinations.RCOND * max(diagonal.max(initial=0.0), 1.0)).sum())
            self.basis = np.zeros((n_groups * n_months, rank))
            self.basis[nonzero] = q[:, :rank]
            self.constraints = np.zeros((rank, n_hospital))
            self.constraints[:, pivot] = r[:rank]  # stacked = basis @ constraints
        self.basis = self.basis.reshape(n_groups, n_months, -1)

    def _target(self, cover: np.ndarray, group: int) -> np.ndarray:
        """A cell's count over the free unknowns (groups x months)."""
        t = np.zeros(self.free.shape)
        if group >= 0:
            t[group] = cover * self.free[group]
        else:
            t[:] = cover[None, :] * self.free
        return t

    def determined(self, periods: np.ndarray, period: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Per target (its period, a row of ``periods``: the months each period sums; its group or -1 for the
        hospital's), whether some combination of the released cells gives it: R_g t_g, stacked, lies in the span of
        the stacked R_g H_g' (its length equals its projection's onto ``basis``). Worked out per group and period (a
        few dozen periods), not per target: a table's thousands of targets share them."""
        left = np.empty(groups.size)
        of_group = groups >= 0
        # each group's periods over its free months: (groups, months, periods)
        d = self.rest @ (self.free[:, :, None] * periods.T[None])
        projected = self.basis.transpose(0, 2, 1) @ d
        by_group = (d * d).sum(axis=1) - (projected * projected).sum(axis=1)  # (groups, periods)
        left[of_group] = by_group[groups[of_group], period[of_group]]
        hospital = np.unique(period[~of_group])  # the hospital's periods, its every group's months at once
        d = self.rest @ (self.free[:, :, None] * periods[hospital].T[None])
        projected = np.einsum("gmr,gmp->rp", self.basis, d)
        by_period = (d * d).sum(axis=(0, 1)) - (projected * projected).sum(axis=0)
        left[~of_group] = by_period[np.searchsorted(hospital, period[~of_group])]
        return left < _SPAN_TOL

    def combination(self, cover: np.ndarray, group: int) -> np.ndarray:
        """The minimum-norm combination of the released cells (coefficients in ``known``'s order) that gives a target
        ``determined`` found given."""
        t = self._target(cover, group)
        n_hospital = self.hospital.shape[1]
        weighted = self.hospital @ self.gram_pinv  # (groups, hospital cells, months)
        coupled = (weighted @ self.hospital.transpose(0, 2, 1)).sum(axis=0)
        rhs = (weighted @ t[:, :, None]).sum(axis=0)[:, 0]
        rank = self.constraints.shape[0]
        d = (self.rest @ t[:, :, None])[:, :, 0]
        kkt = np.zeros((n_hospital + rank, n_hospital + rank))
        kkt[:n_hospital, :n_hospital] = np.eye(n_hospital) + coupled
        kkt[:n_hospital, n_hospital:] = self.constraints.T
        kkt[n_hospital:, :n_hospital] = self.constraints
        given = np.concatenate([rhs, np.einsum("gmr,gm->r", self.basis, d)])
        of_hospital = scipy.linalg.solve(kkt, given, assume_a="sym", check_finite=False)[:n_hospital] if kkt.size else given
        rest = t - of_hospital @ self.hospital
        weights = (self.gram_pinv @ rest[:, :, None])[:, :, 0]
        coef = np.empty(self.in_group.size)
        coef[self.in_group] = (self.rows * weights[self.row_group]).sum(axis=1)
        coef[~self.in_group] = of_hospital
        return coef
