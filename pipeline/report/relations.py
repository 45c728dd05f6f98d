"""The feed's small-cell rule within one cell: no withheld count follows from the released counts beside it.

The counts of a cell are not independent. In the low back pain audit every audited order is judged,
excluded or not evaluable, so the not-evaluable orders are the audited orders less the judged less the
excluded: three released counts give the fourth (147 - 110 - 30 = 7). Which counts tie together is the
audit's: every count is a sum over *atoms*, the distinct sets of counts one row of a unit adds to
(``mart_metric_atoms``, generated from the measures' SQL, so no relation is guessed from the numbers).
A count is a 0/1 column over the atoms; the released counts of a cell determine a withheld one exactly
when its column lies in the span of theirs (and of the atoms a released zero shows to be empty).

``exposed`` finds every cell where that happens, and withholds there the cheapest set of counts that one
order or case moved from one atom to another would change unseen, until none is left: numerators (one row)
before denominators (every row built on them), off the headline before on it, the counts fewer measures
share, the smaller. Withheld counts
that follow from others are settled whatever their size: a count of 40 withheld to protect a 3 beside it
in another department protects nothing once it can be worked out. ``zero_by_atoms`` tells the passes across cells
which withheld counts released 0s elsewhere show to be 0. The rule across cells (totals,
periods) is ``disclosure.protect``'s; ``feed.suppress`` runs the two in turn until neither adds a cell. The rounds hand
over the same cells, a few more withheld each time, so both remember what they weighed on the ``Counts`` (``settled``,
``shown``): a cell's answer in ``exposed`` is a function of its own entries alone, and one in ``zero_by_atoms`` of the
atoms shown empty in its own group, so a round weighs again only the cells whose entries or empty atoms changed, and
sorts the cells into cells and groups only when their layout changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import polars as pl

from pipeline.report import combinations, disclosure

TOLERANCE = 1e-9  # the columns are 0/1 and the coefficients small integers: a residual is 0 or about 1

# a count's state in a cell: withheld; released (above 0); released 0 (each of its atoms holds no row); no row where
# the count is laid out (a known 0, and nothing to withhold); not laid out at the cell's level (unknown)
WITHHELD, RELEASED, ZERO_ROW, NO_ROW, ABSENT = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Atoms:
    """Per count (``d:<measure>``: its denominator, ``n:<measure>``: its numerator), the atoms it sums."""

    members: dict[str, frozenset[str]]

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> Atoms:
        """From the audit's ``mart_metric_atoms`` (``publishing.select_audit``'s view)."""
        members: dict[str, set[str]] = {}
        for unit, atom in con.execute("SELECT unit, atom FROM mart_metric_atoms ORDER BY unit, atom").fetchall():
            for count in (atom or "").split("|"):
                if count:
                    members.setdefault(count, set()).add(f"{unit}:{atom}")
        return cls({c: frozenset(a) for c, a in members.items()})

    @classmethod
    def of(cls, rows: dict[str, list[str]]) -> Atoms:
        """From atom name -> the counts it adds to (hand-built cases)."""
        members: dict[str, set[str]] = {}
        for atom, counts in rows.items():
            for count in counts:
                members.setdefault(count, set()).add(atom)
        return cls({c: frozenset(a) for c, a in members.items()})

    def columns(self, counts: list[str]) -> np.ndarray:
        """(atoms, counts) 0/1 matrix. A numerator no atom adds to, of a denominator some do, holds no row anywhere;
        any other count the atoms do not know is an atom of its own (tied to nothing: hand-built counts)."""
        members = {c: self.members.get(c, self._unknown(c)) for c in counts}
        names = sorted({a for atoms in members.values() for a in atoms})
        index = {a: i for i, a in enumerate(names)}
        matrix = np.zeros((len(names), len(counts)))
        for j, c in enumerate(counts):
            for a in members[c]:
                matrix[index[a], j] = 1.0
        return matrix

    def _unknown(self, count: str) -> frozenset[str]:
        if count.startswith("n:") and "d:" + count[2:] in self.members:
            return frozenset()
        return frozenset({f"own:{count}"})


@dataclass(frozen=True)
class Counts:
    """The counts of a cell, as columns: the denominators (by kind code), then the numerators (by family code)."""

    atoms: np.ndarray  # (atoms, counts)
    kind_of: np.ndarray  # per count: the column of its denominator (a denominator: itself)
    is_numerator: np.ndarray  # bool per count
    rank: np.ndarray  # per count: what it costs to give up (the least first), before its value
    # per pattern of states, its derivations: the passes meet the same few dozen patterns again and again
    memo: dict[bytes, list] = field(default_factory=dict, compare=False, repr=False)
    # per k, what ``exposed`` last weighed: the cells' layout (their ids, keys, counts, values, the counts laid out per
    # level), which entries were withheld and known 0s, and per cell whether it gave nothing away. A cell's answer is
    # a function of its own entries alone, so a cell found as it was left settled needs no pass
    settled: dict[int, tuple] = field(default_factory=dict, compare=False, repr=False)
    # what ``zero_by_atoms`` last weighed: the cells' layout, the atoms it found empty, and per kind (a count, a
    # complement) the cells it answered and the answers (``_ShownEmpty``)
    shown: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


def exposed(
    den_cells: pl.DataFrame, fam: pl.DataFrame, cell: list[str], counts: Counts, k: int, cover: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The cells to withhold as well: (``den_key`` of denominators, ``fam_key`` of numerators).

    ``den_cells``: ``den_key, kind_code, level, <cell>, value, den_withheld``; ``fam``: ``fam_key, family_code, level,
    <cell>, numerator, row_withheld``; ``cell``: the cell's integer codes, ``period_code`` and ``level_code`` among
    them. ``counts``: their columns (the kind codes first, then ``len(kinds) + family_code``). ``cover``: (period
    codes, calendar months) bool, the months each period sums."""
    n_counts = counts.is_numerator.size
    key, count, v, w, codes, overall = as_arrays(den_cells, fam, cell, counts)
    cell_id = disclosure.key_of(codes)
    level = codes[cell.index("level_code")]
    # counts are never negative: a released 0 of a quarter, of 12 months or of the hospital is a 0 in every month and
    # department it sums, so a withheld count there is a known 0 (a quarter's 0 not-evaluable orders tell that each of
    # its months' orders not excluded are its evaluated ones)
    group = [codes[cell.index("level_code")], codes[cell.index("group_key_code")]]
    zero = w.copy()  # only a withheld count can be a known 0
    zero[w] = _zero_elsewhere(codes[cell.index("period_code")], group, count, ~w & (v == 0), overall, cover, w, counts)
    # a count laid out at a level (it has a row there somewhere) and without a row in a cell is a known zero
    laid_out = np.zeros((int(level.max(initial=0)) + 1, n_counts), bool)
    laid_out[level, count] = True
    # only a cell with something withheld can give it away, and of those, only one not as an earlier call left it
    # settled (the feed's rounds change a few cells each): a cell's answer is a function of its own counts alone
    ids, c_idx = _distinct(counts, "cells", cell_id)
    look = np.bincount(c_idx, weights=w, minlength=ids.size) > 0
    entries, last = (cell_id, key, count, v, laid_out), counts.settled.get(k)
    if last is not None and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(last[0], entries, strict=True)):
        was_w, was_zero, was_settled = last[1:]
        moved = np.bincount(c_idx, weights=(w != was_w) | (zero != was_zero), minlength=ids.size) > 0
        look &= moved | ~was_settled
    settled = np.ones(ids.size, bool)  # the cells that, as they are now, give nothing away
    # a withheld entry (and a known 0) now, kept for the next call
    remembered = (entries, w, zero)
    keep = look[c_idx]
    looked = np.flatnonzero(look)
    c_idx = (np.cumsum(look) - 1)[c_idx[keep]]  # the cells kept, numbered 0, 1, ... in the same order
    key, count, v, w, level, zero = key[keep], count[keep], v[keep], w[keep], level[keep], zero[keep]
    n_cells = looked.size
    cell_level = np.zeros(n_cells, np.int64)
    cell_level[c_idx] = level
    value = np.zeros((n_cells, n_counts), np.int64)
    value[c_idx, count] = v
    keys = np.full((n_cells, n_counts), -1, np.int64)
    keys[c_idx, count] = key
    state = np.where(laid_out[cell_level], NO_ROW, ABSENT).astype(np.int8)
    state[c_idx, count] = np.where(zero, NO_ROW, np.where(w, WITHHELD, np.where(v == 0, ZERO_ROW, RELEASED)))
    forced = np.zeros((n_cells, n_counts), bool)
    active = np.arange(n_cells)  # the cells a pass looks at: all, then those the last pass changed
    for _ in range(n_counts):  # each pass withholds one more set of counts in every cell still exposed
        found = _one_more(state[active], value[active], counts, k)
        changed = found.any(axis=1)
        if not changed.any():
            settled[looked[forced.any(axis=1)]] = False  # what they give up changes them: weighed again next time
            counts.settled[k] = (*remembered, settled)
            break
        active, found = active[changed], found[changed]
        forced[active] |= found
        # a withheld denominator withholds every numerator over it in the cell
        shown = (state[active] == RELEASED) | (state[active] == ZERO_ROW)
        over = counts.is_numerator[None, :] & found[:, counts.kind_of] & shown
        state[active] = np.where(found | over, WITHHELD, state[active])
    else:  # stopped by the bound with a cell still exposed: nothing to take as settled next time
        counts.settled.pop(k, None)
    rows, cols = np.nonzero(forced & (keys >= 0))
    given_up = keys[rows, cols]
    is_num = counts.is_numerator[cols]
    return (
        pl.DataFrame({"den_key": pl.Series(given_up[~is_num], dtype=pl.Int64)}),
        pl.DataFrame({"fam_key": pl.Series(given_up[is_num], dtype=pl.Int64)}),
    )


def as_arrays(
    den_cells: pl.DataFrame, fam: pl.DataFrame, cell: list[str], counts: Counts
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """The denominators' cells, then the numerators' (``exposed``'s frames), as numpy: per cell its key, its count's
    column, value, whether withheld, its ``cell`` codes and whether it is the hospital's (joins of ~600k rows in
    Polars took ~0.6 s). Also ``whole_feed``'s, which weighs the same cells all at once."""
    n_kinds = int(counts.is_numerator.size - counts.is_numerator.sum())
    parts = [
        (den_cells, "den_key", den_cells["kind_code"], "value", "den_withheld"),
        (fam, "fam_key", fam["family_code"].cast(pl.Int64) + n_kinds, "numerator", "row_withheld"),
    ]
    key = np.concatenate([f[name].to_numpy() for f, name, *_ in parts]).astype(np.int64)
    count = np.concatenate([c.cast(pl.Int64).to_numpy() for _, _, c, *_ in parts])
    v = np.concatenate([f[c].fill_null(0).to_numpy() for f, _, _, c, _ in parts]).astype(np.int64)
    w = np.concatenate([f[c].fill_null(False).to_numpy() for f, *_, c in parts])
    codes = [np.concatenate([f[c].to_numpy() for f, *_ in parts]).astype(np.int64) for c in cell]
    overall = np.concatenate([(f["level"] == "overall").to_numpy() for f, *_ in parts])
    return key, count, v, w, codes, overall


def zero_by_atoms(
    den_cells: pl.DataFrame, fam: pl.DataFrame, cell: list[str], counts: Counts, cover: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per denominator cell and per numerator cell (``exposed``'s frames, in their order): whether its count is
    known to be 0 there though it is withheld; and per numerator cell, whether its complement is (every atom of its
    denominator it does not hold shown empty). No count is negative, so a released 0 shows each atom of its count
    empty in each month it sums, for its group (the hospital's: for every group; every department's: for the
    hospital); a count all of whose atoms are so shown empty in every month of the cell is 0, whichever counts
    showed them (a month's inappropriate orders are 0 when the quarters of every inappropriate reason show 0). The
    passes over time and departments take it as known. Only a count that is 0 is ever so marked: where the hospital
    counts units no department has (a case without an attributed department), its departments' 0s say nothing of
    it, and a cell the passes took as known would go unprotected."""
    _, count, v, w, codes, overall = as_arrays(den_cells, fam, cell, counts)
    level = np.concatenate([f["level"].to_numpy() for f in (den_cells, fam)])
    period = codes[cell.index("period_code")]
    _, series = _distinct(
        counts, "groups", disclosure.key_of([codes[cell.index("level_code")], codes[cell.index("group_key_code")]])
    )
    atoms_of = counts.atoms.T > 0  # (counts, atoms)
    n_series = int(series.max(initial=-1)) + 1
    zero = np.flatnonzero(~w & (v == 0))
    empty = np.zeros((n_series + 1, atoms_of.shape[1], cover.shape[1]), bool)  # the last: the hospital's
    shown = atoms_of[count[zero]][:, :, None] & cover[period[zero]][:, None, :]  # (released 0s, atoms, months)
    np.logical_or.at(empty, np.where(overall[zero], n_series, series[zero]), shown)
    # a department without a row of a denominator in a period the denominator has for others: nothing in its atoms
    n_den = den_cells.height
    d = np.flatnonzero(level[:n_den] == "department")
    if d.size:
        n_periods = cover.shape[0]
        has_row = np.zeros((n_series, atoms_of.shape[0], n_periods), bool)
        has_row[series[d], count[d], period[d]] = True
        dept = np.unique(series[d])
        missing = has_row.any(axis=0)[None] & ~has_row[dept]  # (departments, counts, periods)
        s_i, c_i, p_i = np.nonzero(missing)
        np.logical_or.at(empty, dept[s_i], atoms_of[c_i][:, :, None] & cover[p_i][:, None, :])
    # the hospital's count is its departments' sum: empty where each department's is
    departments = np.unique(series[level == "department"])
    if departments.size:
        empty[n_series] |= empty[departments].all(axis=0)
    empty[:n_series] |= empty[n_series]

    row = np.where(overall, n_series, series)  # per cell, its row of ``empty``
    # a cell's answer reads its own row of ``empty`` alone: with the cells laid out as last time, only the cells not
    # answered then or whose row changed since are weighed again (a round of the feed changes a few)
    layout = (count, period, row, cover)
    last = counts.shown.get("layout")
    same = last is not None and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(last, layout, strict=True))
    was_empty = counts.shown.get("empty") if same else None
    changed = None if was_empty is None or was_empty.shape != empty.shape else (was_empty != empty).any(axis=(1, 2))
    counts.shown.update(layout=layout, empty=empty)

    def shown_empty(kind: str, hidden: np.ndarray, atoms: np.ndarray) -> np.ndarray:
        """Per cell of ``hidden`` (withheld, a count or complement of 0: only such a one is ever marked, the others are
        not looked at), whether every one of ``atoms`` (its count's, per cell) is shown empty in each of its months."""
        out = np.zeros(count.size, bool)
        answered, answers = counts.shown.get(kind, (None, None)) if changed is not None else (None, None)
        todo = np.arange(hidden.size)
        if answered is not None:
            again = ~answered[hidden] | changed[row[hidden]]
            out[hidden[~again]] = answers[hidden[~again]]
            todo = np.flatnonzero(again)
        for start in range(0, todo.size, 20_000):  # (cells, atoms, months) a block at a time
            at = todo[start : start + 20_000]
            r = hidden[at]
            needed = atoms[at][:, :, None] & cover[period[r]][:, None, :]
            out[r] = ~(~empty[row[r]] & needed).any(axis=(1, 2))
        now_answered = np.zeros(count.size, bool)
        now_answered[hidden] = True
        counts.shown[kind] = (now_answered, out)
        return out

    hidden = np.flatnonzero(w & (v == 0))
    zero = shown_empty("count", hidden, atoms_of[count[hidden]])
    # a numerator's complement (its denominator less it) is the atoms of the denominator the numerator does not hold
    complement = np.zeros(count.size, np.int64)
    complement[n_den:] = fam["denominator"].fill_null(0).to_numpy() - v[n_den:]
    hidden = np.flatnonzero(w & (complement == 0) & counts.is_numerator[count] & (np.arange(count.size) >= n_den))
    rest = atoms_of[counts.kind_of[count[hidden]]] & ~atoms_of[count[hidden]]
    zero_complement = shown_empty("complement", hidden, rest)
    return zero[:n_den], zero[n_den:], zero_complement[n_den:]


def _zero_elsewhere(
    period: np.ndarray,
    group: list[np.ndarray],
    count: np.ndarray,
    released_zero: np.ndarray,
    overall: np.ndarray,
    cover: np.ndarray,
    rows: np.ndarray,
    counts: Counts,
) -> np.ndarray:
    """Per row of ``rows`` (a mask), whether released 0s of its count cover it: of its own level and group (``group``:
    their codes) over months that include all of its period's, or of the hospital over them (any group, any level)."""
    ids, s_idx = _distinct(counts, "series", disclosure.key_of([count, *group]))
    zero_months = np.zeros((ids.size, cover.shape[1]), bool)  # per series, the months a released 0 of its own covers
    np.logical_or.at(zero_months, s_idx[released_zero], cover[period[released_zero]])
    hospital = np.zeros((int(count.max(initial=0)) + 1, cover.shape[1]), bool)  # per count, the hospital's
    mine = released_zero & overall
    np.logical_or.at(hospital, count[mine], cover[period[mine]])
    known = zero_months[s_idx[rows]] | hospital[count[rows]]
    return ~(cover[period[rows]] & ~known).any(axis=1)


def _distinct(counts: Counts, name: str, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)``, kept in ``counts.shown`` under ``name``: the feed's rounds hand over
    the same cells each time, and a comparison costs a fraction of the sort."""
    last = counts.shown.get(name)
    if last is not None and last[0].shape == key.shape and np.array_equal(last[0], key):
        return last[1], last[2]
    ids, inverse = np.unique(key, return_inverse=True)
    counts.shown[name] = (key, ids, inverse)
    return ids, inverse


def _one_more(state: np.ndarray, value: np.ndarray, counts: Counts, k: int) -> np.ndarray:
    """(cells, counts) bool: the shown counts to withhold in each cell where something withheld follows from what is
    known, none elsewhere: a withheld count (whatever its size), or the complement of a withheld numerator (its
    denominator less it) of 1 to k-1. One linear-algebra pass per distinct pattern of states, not per cell."""
    patterns, inverse = _patterns(state)
    out = np.zeros(state.shape, bool)
    for p, pattern in enumerate(patterns):
        found = counts.memo.get(pattern.tobytes())
        if found is None:
            found = counts.memo[pattern.tobytes()] = _derivations(pattern, counts)
        if not found:
            continue
        members = np.nonzero(inverse == p)[0]
        # per cell the first derivation that gives something away there
        applies = np.stack(
            [
                np.ones(members.size, bool)
                if complement is None
                else disclosure.small(value[members, counts.kind_of[complement]] - value[members, complement], k)
                for complement, _ in found
            ],
            axis=1,
        )
        first = np.where(applies.any(axis=1), applies.argmax(axis=1), -1)
        for t, (_, withhold) in enumerate(found):
            cells = members[first == t]
            if cells.size == 0:
                continue
            # per cell the cheapest way: the least rank in all, then the least value
            ranks = withhold @ counts.rank.astype(np.float64)
            sizes = value[cells].astype(np.float64) @ withhold.T
            cost = ranks[None, :] * (sizes.max(initial=0) + 1) + sizes
            chosen = withhold[np.argmin(cost, axis=1)]
            out[cells] |= chosen
    return out


def _patterns(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``state`` and each row's pattern: the rows packed 21 states to an integer (3 bits each)
    and ranked by Polars (numpy's row-wise unique sorts the whole matrix: seconds at 40k cells)."""
    n_cells, n_counts = state.shape
    words = []
    for start in range(0, n_counts, 21):
        block = state[:, start : start + 21].astype(np.int64)
        words.append((block << (3 * np.arange(block.shape[1], dtype=np.int64))).sum(axis=1))
    frame = pl.DataFrame({f"w{i}": w for i, w in enumerate(words)})
    inverse = frame.select(pl.struct(frame.columns).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    first = np.full(int(inverse.max(initial=-1)) + 1, n_cells, np.int64)
    np.minimum.at(first, inverse, np.arange(n_cells))
    return state[first], inverse


def _derivations(pattern: np.ndarray, counts: Counts) -> list[tuple[int | None, np.ndarray]]:
    """For one pattern of states, what the known counts determine: (None, ways) for a withheld count, (numerator,
    ways) for the complement of a withheld numerator. ways: (ways, counts) bool, each a set of shown counts whose
    withholding leaves it undetermined.

    A way is a change of the atoms' rows the reader cannot see once those counts are withheld: one row moved from an
    atom outside the target to one inside it (or one row more inside it) changes the target and only the counts it
    withholds, so the target is no longer determined. Counts without a row where laid out (known zeros) cannot be
    withheld: a change touching their atoms is no way."""
    atoms = counts.atoms
    known_zero = np.isin(pattern, (ZERO_ROW, NO_ROW))
    empty = atoms[:, known_zero].sum(axis=1) > 0  # atoms a known 0 shows hold no row
    released = pattern == RELEASED
    basis = np.hstack([atoms[:, released], np.eye(atoms.shape[0])[:, empty]])
    hidden = np.nonzero(pattern == WITHHELD)[0]
    if basis.shape[1] == 0 or hidden.size == 0:
        return []
    targets = [(None, atoms[:, j]) for j in hidden]
    targets += [(j, atoms[:, counts.kind_of[j]] - atoms[:, j]) for j in hidden if counts.is_numerator[j]]
    coef = combinations.min_norm_combination(basis.T, np.array([t for _, t in targets]))  # basis columns: the known counts
    n_atoms = atoms.shape[0]
    found = []
    for (complement, target), weights in zip(targets, coef, strict=True):
        if not target.any() or np.abs(basis @ weights - target).max() > TOLERANCE:
            continue  # nothing, or not determined
        inside, outside = np.nonzero(target)[0], np.nonzero(target == 0)[0]
        changes = [np.eye(n_atoms)[:, inside]]  # a row more inside
        if outside.size:  # a row moved from outside to inside
            pairs = np.eye(n_atoms)[:, np.repeat(inside, outside.size)] - np.eye(n_atoms)[:, np.tile(outside, inside.size)]
            changes.append(pairs)
        change = np.hstack(changes)  # (atoms, ways)
        seen = np.abs(atoms.T @ change) > TOLERANCE  # (counts, ways): the counts each change shows in
        touched = (atoms.T @ np.abs(change)) > TOLERANCE  # a known zero is broken by any row in its atoms
        withhold = (seen & released[:, None]) | (touched & (pattern == ZERO_ROW)[:, None])
        possible = ~(touched & (pattern == NO_ROW)[:, None]).any(axis=0) & withhold.any(axis=0)
        if possible.any():
            found.append((complement, withhold[:, possible].T))
    return found
