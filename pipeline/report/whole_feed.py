"""The feed's small-cell rule over the whole feed at once: no withheld count follows from every released count of
the hospital and its departments together.

The passes each weigh part of what a reader can combine, in turn until neither adds a cell: a cell's counts together
(``relations``), each table's lines, series and department x month system (``disclosure``). A count worked out within
its cell and carried into another table's quarter, and that table's hospital less its departments, can still give a
withheld count away that no part shows alone (the 100k-patient demo's CSF-leak feed gave one reason share's 1 order so,
from 851 released counts of 22 measures). ``Check`` is the last check, over the cells the passes leave: every
released count of the hospital and department cells in one linear system, as a reader who has the whole feed can set
it up. Its unknowns are atom x department x calendar month (a count is the sum of its atoms over its groups and
months; ``relations.Atoms``); a released 0, or a department without a row where its table has others, is a 0 of each
unknown it sums; a numerator equal to its denominator, a 0 of the rest of the denominator's atoms. A withheld count of
1..k-1 (or complement) in the span of the released rows is given away, and one released count its derivation uses is
given up; the passes then protect that one as they protect any other, and the check runs again.

The provider cells are not in it: the joint pass weighs them per table (``disclosure._Joint``), and the feed lays out
only the headline measures per provider.

Cost: the system is solved per connected part (the unknowns some count ties together) while its released counts x
unknowns stay within ``WHOLE_FEED_ENTRIES``: one pivoted QR of the released rows, the sparse targets projected onto it
(their entries x its rank, not a solve per target), and a minimum-norm solve (``combinations``) only for a target it
gives. The unknowns do not grow with the orders (atoms x departments x months), nor do the hospital and department
cells; a part over the cap (a hospital of many departments) is left to the passes and named (``Check.left_out``).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph

from pipeline.report import combinations, disclosure, relations

_EPS = 1e-8
# the largest part solved, in its dense matrix's entries (released counts x unknowns): the demos' largest system is the
# case-dense 100k CSF-leak feed's, 1,219 x 2,760 (3.4M, a pivoted QR ~0.8 CPU-s); beyond it the part is left to the passes
WHOLE_FEED_ENTRIES = 8_000_000


class Check:
    """The last check, for the rounds of one feed; it keeps which parts were over ``WHOLE_FEED_ENTRIES`` last."""

    def __init__(self):
        self.left_out: list[str] = []  # per part over the cap: its size, as "released counts x unknowns"

    def __call__(
        self,
        den_cells: pl.DataFrame,
        fam: pl.DataFrame,
        cell: list[str],
        counts: relations.Counts,
        k: int,
        cover: np.ndarray,
        preference: np.ndarray,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The cells to withhold as well (``relations.exposed``'s answer: ``den_key``s and ``fam_key``s): one released
        count of each part of the system in which a withheld count of 1..k-1 (or complement) of the hospital or a
        department follows from the released ones. ``den_cells``, ``fam``, ``cell``, ``counts``, ``cover``: as
        ``relations.exposed``'s; ``preference``: per period code, its ``disclosure.PERIOD_PREFERENCE``."""
        key, count, value, withheld, codes, overall = relations.as_arrays(den_cells, fam, cell, counts)
        level = np.concatenate([f["level"].to_numpy() for f in (den_cells, fam)])
        n_den = den_cells.height
        period = codes[cell.index("period_code")]
        system = _System(level, codes[cell.index("group_key_code")], count, value, period, overall, cover, counts, n_den)
        above = level != "provider"
        released = above & ~withheld
        atoms_of = counts.atoms.T > 0  # (counts, atoms)
        denominator = np.zeros(count.size, np.int64)
        denominator[n_den:] = fam["denominator"].fill_null(0).to_numpy()
        is_num = np.arange(count.size) >= n_den
        of_den = atoms_of[counts.kind_of[count]]
        # a numerator whose atoms are some of its denominator's (the audits' ties): its complement is the rest of them
        nested = ~(atoms_of[count] & ~of_den).any(axis=1)
        # known 0s: released 0s; the rest of a denominator all in its numerator; a department without a row (_System)
        zeros = np.flatnonzero(released & (value == 0))
        system.zero(zeros, atoms_of[count[zeros]])
        full = released & is_num & (value > 0) & (value == denominator)
        rest = np.flatnonzero(full & nested)
        system.zero(rest, of_den[rest] & ~atoms_of[count[rest]])
        # released rows, and a numerator equal to its denominator where they share no atoms (hand-built counts): the
        # two less each other is 0
        known = np.flatnonzero(released & (value > 0))
        equal = np.flatnonzero(full & ~nested)
        rows = scipy.sparse.vstack(
            [system.rows(known, atoms_of[count[known]]), system.complements(equal, atoms_of[count[equal]], of_den[equal])]
        )
        known = np.concatenate([known, equal])
        # the targets, in the cells' order (by key: the same feed whatever order the frames hand them over in)
        hidden = np.flatnonzero(above & withheld & disclosure.small(value, k))
        hidden = hidden[np.lexsort((key[hidden], is_num[hidden]))]
        hidden_complement = np.flatnonzero(above & withheld & is_num & disclosure.small(denominator - value, k))
        hidden_complement = hidden_complement[np.argsort(key[hidden_complement], kind="stable")]
        targets = scipy.sparse.vstack(
            [
                system.rows(hidden, atoms_of[count[hidden]]),
                system.complements(hidden_complement, atoms_of[count[hidden_complement]], of_den[hidden_complement]),
            ]
        ).tocsr()
        if targets.shape[0] == 0 or rows.shape[0] == 0:
            self.left_out = []
            return _keys(key, np.zeros(0, np.int64), n_den)
        # the cell given up: off-headline numerators first (``counts.rank``), months first, the smallest count
        order = np.lexsort((key[known], is_num[known], value[known], preference[period[known]], counts.rank[count[known]]))
        cost = np.empty(known.size, np.int64)
        cost[order] = np.arange(known.size)
        given_up, self.left_out = _solved(rows.tocsr(), targets, cost)
        return _keys(key, known[given_up], n_den)


class _System:
    """The unknowns (atom x group x month) and the 0s known among them; a group is a department, or the units the
    hospital counts and no department holds (never released: one group more, only where there are such units)."""

    def __init__(self, level, group_code, count, value, period, overall, cover, counts, n_den):
        self.cover, self.period = cover, period
        department = level == "department"
        groups, index = np.unique(group_code[department], return_inverse=True)
        self.group = np.full(count.size, -1)  # -1: every group (the hospital)
        self.group[department] = index
        # the hospital less its departments, per count and period: units no department holds, a group of their own
        by = np.unique(disclosure.key_of([count, period]), return_inverse=True)[1]
        hospital = np.bincount(by, weights=np.where(overall, value, 0))
        departments = np.bincount(by, weights=np.where(department, value, 0))
        has_rows = np.bincount(by, weights=department) > 0
        unattributed = bool((has_rows & (hospital != departments)).any())
        self.n_groups = groups.size + unattributed
        self.n_months = cover.shape[1]
        self.n_atoms = counts.atoms.shape[0]
        self.known_zero = np.zeros(self.n_atoms * self.n_groups * self.n_months, bool)
        # a department without a row of a denominator in a period the denominator has for others: none of its atoms
        den = np.flatnonzero(department[:n_den])
        if den.size and groups.size:
            has = np.zeros((groups.size, int(count[:n_den].max()) + 1, cover.shape[0]), bool)
            has[self.group[den], count[den], period[den]] = True
            g, c, p = np.nonzero(has.any(axis=0)[None] & ~has)
            atoms_of = counts.atoms.T > 0
            _, cols = self._entries(atoms_of[c], g, p)
            self.known_zero[cols] = True

    def _entries(self, atoms: np.ndarray, group: np.ndarray, period: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row (its atoms, its group: -1 every group, its period), its unknowns: (row, column) pairs."""
        r, a = np.nonzero(atoms)
        pair, month = np.nonzero(self.cover[period[r]])
        r, a = r[pair], a[pair]
        g = group[r]
        each = np.where(g < 0, self.n_groups, 1)
        rep = np.repeat(np.arange(r.size), each)
        offset = np.arange(rep.size) - np.repeat(np.cumsum(each) - each, each)
        g = np.where(g[rep] < 0, offset, g[rep])
        return r[rep], (a[rep] * self.n_groups + g) * self.n_months + month[rep]

    def zero(self, cells: np.ndarray, atoms: np.ndarray) -> None:
        """Each unknown that ``cells`` sum over ``atoms`` (per cell, its atoms' mask) is 0."""
        _, cols = self._entries(atoms, self.group[cells], self.period[cells])
        self.known_zero[cols] = True

    def rows(self, cells: np.ndarray, atoms: np.ndarray) -> scipy.sparse.csr_matrix:
        """The cells as sums of the unknowns not known to be 0 (``atoms``: per cell, its atoms' mask)."""
        r, cols = self._entries(atoms, self.group[cells], self.period[cells])
        keep = ~self.known_zero[cols]
        return scipy.sparse.csr_matrix(
            (np.ones(int(keep.sum())), (r[keep], cols[keep])), shape=(cells.size, self.known_zero.size)
        )

    def complements(self, cells: np.ndarray, atoms: np.ndarray, denominator_atoms: np.ndarray) -> scipy.sparse.csr_matrix:
        """Numerator cells' complements (``rows``' over their denominators' atoms less over their own)."""
        rows = (self.rows(cells, denominator_atoms) - self.rows(cells, atoms)).tocsr()
        rows.eliminate_zeros()
        return rows


def _solved(rows: scipy.sparse.csr_matrix, targets: scipy.sparse.csr_matrix, cost: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per connected part of the system with a target its released rows give: the row (by ``cost``, the least) that
    the least-norm derivation of its first such target uses. Also the parts over ``WHOLE_FEED_ENTRIES``."""
    n_rows = rows.shape[0]
    graph = scipy.sparse.vstack([rows, targets]).tocsr()
    # rows and unknowns as one graph's nodes: an unknown is tied to every row that sums it
    bipartite = scipy.sparse.bmat([[None, graph], [graph.T, None]]).tocsr()
    _, label = scipy.sparse.csgraph.connected_components(bipartite, directed=False)
    row_label, col_label = label[: graph.shape[0]], label[graph.shape[0] :]
    target_label = row_label[n_rows:]
    has_target = targets.getnnz(axis=1) > 0
    given_up, left_out = [], []
    for part in np.unique(target_label[has_target]):
        cols = np.flatnonzero(col_label == part)
        mine = np.flatnonzero(row_label[:n_rows] == part)
        if mine.size == 0:
            continue
        if mine.size * cols.size > WHOLE_FEED_ENTRIES:
            left_out.append(f"{mine.size:,} x {cols.size:,}")
            continue
        known = rows[mine][:, cols].toarray()
        aimed = targets[np.flatnonzero((target_label == part) & has_target)][:, cols]
        # one released count of the first target's derivation at a time, until no target follows (the passes then
        # protect them all in one more round: a round of the passes costs more than these solves). One that every
        # derivation of it uses (no other combination of the rows stands in for it) first: giving up another may
        # leave the target to the next derivation
        while (determined := np.flatnonzero(_in_span(known, aimed))).size:
            coef = combinations.min_norm_combination(known, aimed[determined[0]].toarray())[0]
            uses = np.flatnonzero(np.abs(coef) > _EPS)
            needed = uses[_independent(known)[uses]]
            uses = needed if needed.size else uses
            pick = uses[np.argmin(cost[mine[uses]])]
            given_up.append(mine[pick])
            known[pick] = 0.0
    return np.array(given_up, np.int64), left_out


def _in_span(known: np.ndarray, targets: scipy.sparse.csr_matrix) -> np.ndarray:
    """Per target row, whether it lies in the span of the rows of ``known``: its length equals its projection's onto
    an orthonormal basis of them (a pivoted QR). The targets are sparse (a few atoms x months each), so projecting
    thousands of them costs their entries times the rank, not a dense solve with a right-hand side each."""
    q, r, _ = scipy.linalg.qr(known.T, mode="economic", pivoting=True, check_finite=False)
    diagonal = np.abs(np.diag(r))
    rank = int((diagonal > combinations.RCOND * max(diagonal.max(initial=0.0), 1.0)).sum())
    projected = targets @ q[:, :rank]
    left = np.asarray(targets.multiply(targets).sum(axis=1)).ravel() - (projected * projected).sum(axis=1)
    return left < 1e-6


def _independent(known: np.ndarray) -> np.ndarray:
    """Per row of ``known``, whether no combination of the other rows gives it: its unit vector lies in the span of
    the columns (its leverage is 1), so every combination of the rows that gives a target uses it alike."""
    q, r, _ = scipy.linalg.qr(known, mode="economic", pivoting=True, check_finite=False)
    diagonal = np.abs(np.diag(r))
    rank = int((diagonal > combinations.RCOND * max(diagonal.max(initial=0.0), 1.0)).sum())
    return (q[:, :rank] ** 2).sum(axis=1) > 1 - 1e-6


def _keys(key: np.ndarray, cells: np.ndarray, n_den: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``relations.exposed``'s answer for ``cells`` (indices into the denominators' cells, then the numerators')."""
    is_den = cells < n_den
    return (
        pl.DataFrame({"den_key": pl.Series(key[cells[is_den]], dtype=pl.Int64)}),
        pl.DataFrame({"fam_key": pl.Series(key[cells[~is_den]], dtype=pl.Int64)}),
    )
