"""The small-cell passes' shortcuts do the same work with less: the same answers as the plain computation.

``pipeline.report.disclosure`` builds each series' graph Laplacian from its known cells directly, and its joint
(time x departments) pass skips a table it left settled; ``pipeline.report.feed`` joins cells on one integer
key. The feed's own rules are tested in test_feed.py and test_disclosure_graph.py; here, that the shortcuts
change no answer and do skip the work.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_disclosure_graph import feed_periods
from test_feed import LBP_TIES, lbp_year, mixed_year, run_info
from test_feed_combined import CSF_ORDER_TIES, tied_year

from pipeline.report import disclosure, feed, relations


@pytest.mark.parametrize(("n_months", "seed"), [(12, 1), (36, 2)])
def test_the_laplacians_are_the_sums_of_the_known_cells_own(n_months, seed):
    _, cover = feed_periods(n_months)
    first, stop = disclosure._interval_ends(cover)
    n_nodes = int(stop.max()) + 1
    known = np.random.default_rng(seed).random((300, cover.shape[0])) < 0.5
    # the textbook form: each known cell's own Laplacian (its incidence vector's outer product), summed
    incidence = np.zeros((first.size, n_nodes))
    incidence[np.arange(first.size), first] = 1.0
    incidence[np.arange(first.size), stop] = -1.0
    own = incidence[:, :, None] * incidence[:, None, :]
    want = np.einsum("sc,cij->sij", known.astype(float), own)
    assert np.array_equal(disclosure._laplacians(known, first, stop, n_nodes), want)


@pytest.mark.parametrize("seed", [18, 27])
def test_the_joint_pass_skips_the_tables_it_left_settled_and_answers_as_afresh(seed, monkeypatch):
    made, calls = [], []
    init, settle = disclosure._Joint.__init__, disclosure._Joint.settle

    def recording_init(self, frame, periods, k):
        made.append((self, frame, periods, k))
        init(self, frame, periods, k)

    def recording_settle(self, withheld):
        out = settle(self, withheld)
        calls.append((self, withheld.copy(), out.copy()))
        return out

    monkeypatch.setattr(disclosure._Joint, "__init__", recording_init)
    monkeypatch.setattr(disclosure._Joint, "settle", recording_settle)
    feed.build_feed(mixed_year(seed), run_info("all"), relations.Atoms({}))
    assert calls
    solves: list[tuple] = []
    system = disclosure._SplitSystem

    def counting_system(*args):
        solves.append(args[2].shape)  # the released cells it solves over
        return system(*args)

    monkeypatch.setattr(disclosure, "_SplitSystem", counting_system)
    afresh = 0
    for joint, frame, periods, k in made:
        mine = [(given, out) for owner, given, out in calls if owner is joint]
        for given, out in mine:  # each call's answer is the one a pass that never ran before gives
            new = object.__new__(disclosure._Joint)
            init(new, frame, periods, k)
            assert np.array_equal(settle(new, given), out)
        afresh += len(solves)
        # what it left settled it leaves as it is, without one solve
        solves.clear()
        assert np.array_equal(settle(joint, mine[-1][1]), mine[-1][1])
        assert solves == []
    assert afresh > 0  # the tables had hidden small counts to check: the pass had work to skip


def test_combined_codes_are_the_dense_rank_of_the_codes_in_order():
    """The passes order their cells and number their lines and series by ``_combined``: it must be the dense
    rank of the codes taken in order (what a Polars rank of their struct gives), empty frames included."""
    rng = np.random.default_rng(7)
    frame = pl.DataFrame({f"{c}_code": rng.integers(0, n, 5000).astype(np.uint32) for c, n in (("a", 3), ("b", 40), ("c", 900))})
    want = frame.select(pl.struct("a_code", "b_code", "c_code").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    assert np.array_equal(disclosure._combined(frame, ("a", "b", "c")), want)
    assert disclosure._combined(frame.head(0), ("a", "b", "c")).size == 0


@pytest.mark.parametrize(("ties", "seed"), [("lbp", 3), ("lbp", 5), ("csf", 4), ("csf", 9)])
def test_the_rounds_reuse_the_passes_and_answer_as_afresh(ties, seed, monkeypatch):
    """``feed.suppress`` hands the same cells to its two ``Protection``s round after round (these years take several:
    counts tied within cells): the passes are built once each (they re-examine only what changed since), and the
    feed is the one passes built afresh every round give."""
    m, ties = (lbp_year(seed), LBP_TIES) if ties == "lbp" else (tied_year(CSF_ORDER_TIES, seed), CSF_ORDER_TIES)
    built = []
    init = disclosure._Passes.__init__

    def counting_init(self, coded, periods, k):
        built.append(coded.height)
        init(self, coded, periods, k)

    monkeypatch.setattr(disclosure._Passes, "__init__", counting_init)
    reused = feed.build_feed(m, run_info("all"), relations.Atoms.of(ties))
    assert len(built) == 2  # the denominators' cells and the numerators'
    protection = disclosure.Protection

    class Afresh:
        """A new Protection every round, its passes built again; what the last one left out of the joint pass."""

        def __init__(self, periods, k):
            self.periods, self.k, self.last = periods, k, None

        def __call__(self, cells):
            self.last = protection(self.periods, self.k)
            return self.last(cells)

        @property
        def joint_left_out(self) -> list[str]:
            return self.last.joint_left_out if self.last else []

    monkeypatch.setattr(disclosure, "Protection", Afresh)
    afresh = feed.build_feed(m, run_info("all"), relations.Atoms.of(ties))
    assert len(built) > 2 + 2  # afresh: one build a round
    assert afresh.equals(reused)


def _tied(ties: str, seed: int) -> tuple[pl.DataFrame, relations.Atoms]:
    if ties == "lbp":
        return lbp_year(seed), relations.Atoms.of(LBP_TIES)
    return tied_year(CSF_ORDER_TIES, seed), relations.Atoms.of(CSF_ORDER_TIES)


@pytest.mark.parametrize(("ties", "seed"), [("lbp", 3), ("lbp", 5), ("csf", 4), ("csf", 9)])
def test_exposed_passes_over_the_cells_as_it_left_them_and_answers_as_afresh(ties, seed, monkeypatch):
    """``relations.exposed`` skips the cells an earlier call left with nothing to give away and unchanged since (the
    feed's rounds change a few): every call's answer is the one a first call, with nothing remembered, gives."""
    m, atoms = _tied(ties, seed)
    calls, weighed = [], []
    exposed, one_more = relations.exposed, relations._one_more

    def recording(den_cells, fam, cell, counts, k, cover):
        out = exposed(den_cells, fam, cell, counts, k, cover)
        calls.append(((den_cells, fam, cell, counts, k, cover), out))
        return out

    def counting(state, value, counts, k):
        weighed.append(state.shape[0])
        return one_more(state, value, counts, k)

    monkeypatch.setattr(relations, "exposed", recording)
    monkeypatch.setattr(relations, "_one_more", counting)
    feed.build_feed(m, run_info("all"), atoms)
    assert len(calls) > 2  # several rounds
    remembering, weighed[:] = sum(weighed), []
    for (den_cells, fam, cell, counts, k, cover), (den, num) in calls:
        fresh = relations.Counts(counts.atoms, counts.kind_of, counts.is_numerator, counts.rank)  # nothing remembered
        want_den, want_num = exposed(den_cells, fam, cell, fresh, k, cover)
        assert sorted(den["den_key"]) == sorted(want_den["den_key"])
        assert sorted(num["fam_key"]) == sorted(want_num["fam_key"])
    assert remembering < sum(weighed)  # cells the later rounds had no need to weigh
    # handed the same cells twice (what it found not withheld in between), it finds the same again
    args, (den, num) = next((a, out) for a, out in calls if out[0].height + out[1].height)
    exposed(*args)
    again_den, again_num = exposed(*args)
    assert sorted(again_den["den_key"]) == sorted(den["den_key"]) and sorted(again_num["fam_key"]) == sorted(num["fam_key"])


@pytest.mark.parametrize(("ties", "seed"), [("lbp", 3), ("csf", 4), ("csf", 9)])
def test_zero_by_atoms_weighs_again_only_what_a_round_changed_and_answers_as_afresh(ties, seed, monkeypatch):
    """``relations.zero_by_atoms`` answers again only the cells it did not answer last time or whose atoms shown empty
    changed since: every call's answer is the one a first call, with nothing remembered, gives."""
    m, atoms = _tied(ties, seed)
    calls, reused = [], []
    zero_by_atoms = relations.zero_by_atoms

    def recording(den_cells, fam, cell, counts, cover):
        before = counts.shown.get("count")
        out = zero_by_atoms(den_cells, fam, cell, counts, cover)
        calls.append(((den_cells, fam, cell, counts, cover), out))
        reused.append(before is not None)
        return out

    monkeypatch.setattr(relations, "zero_by_atoms", recording)
    feed.build_feed(m, run_info("all"), atoms)
    assert len(calls) > 1 and any(reused)  # later rounds had answers to keep
    marked = 0
    for (den_cells, fam, cell, counts, cover), out in calls:
        fresh = relations.Counts(counts.atoms, counts.kind_of, counts.is_numerator, counts.rank)  # nothing remembered
        want = zero_by_atoms(den_cells, fam, cell, fresh, cover)
        assert all(np.array_equal(a, b) for a, b in zip(out, want, strict=True))
        marked += sum(int(a.sum()) for a in want)
    assert marked > 0  # counts the atoms showed to be 0: answers that could have gone stale


@pytest.mark.parametrize(("ties", "seed"), [("lbp", 3), ("csf", 4), ("csf", 9)])
def test_the_time_pass_weighs_again_only_the_series_a_change_reaches_and_answers_as_afresh(ties, seed, monkeypatch):
    """``_SeriesGrid.settle`` works out the unknown cells again only for the series whose cells or known 0s changed
    (and those under a changed hospital's): every call's answer is the one a grid that never ran before gives."""
    m, atoms = _tied(ties, seed)
    made, calls = [], []
    init, settle = disclosure._SeriesGrid.__init__, disclosure._SeriesGrid.settle

    def recording_init(self, frame, periods):
        made.append((self, frame, periods))
        init(self, frame, periods)

    def recording_settle(self, withheld, k):
        given = (withheld.copy(), self.zero.copy(), self.zero_complement.copy())
        out = settle(self, withheld, k)
        calls.append((self, given, k, out.copy()))
        return out

    monkeypatch.setattr(disclosure._SeriesGrid, "__init__", recording_init)
    monkeypatch.setattr(disclosure._SeriesGrid, "settle", recording_settle)
    feed.build_feed(m, run_info("all"), atoms)
    assert made and sum(owner is grid for grid, *_ in made for owner, *_ in calls) > len(made)  # called again
    for grid, frame, periods in made:
        for (withheld, zero, zero_complement), k, out in [(g, k, o) for owner, g, k, o in calls if owner is grid]:
            new = object.__new__(disclosure._SeriesGrid)
            init(new, frame, periods)
            new.zero, new.zero_complement = zero, zero_complement
            assert np.array_equal(settle(new, withheld, k), out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_unknown_cells_of_some_series_are_theirs_of_all_and_a_change_reaches_only_the_touched(seed, monkeypatch):
    """On random withheld cells and known 0s: ``_unknowns`` of some series is those series' rows of ``_unknowns`` of
    all, and changing the cells of some series changes it only in the series ``_touched`` names."""
    made = []
    init = disclosure._SeriesGrid.__init__
    monkeypatch.setattr(disclosure._SeriesGrid, "__init__", lambda self, *a: made.append(self) or init(self, *a))
    m, atoms = _tied("csf", 4)
    feed.build_feed(m, run_info("all"), atoms)
    rng = np.random.default_rng(seed)
    outside = []
    for grid in made:
        every = np.arange(grid.present.shape[0])
        hospitals = np.unique(grid.hospital[(grid.hospital >= 0) & (grid.hospital != every)])
        assert hospitals.size  # departments under a hospital's series: something to reach
        for _ in range(20):
            grid.zero = grid.present & (rng.random(grid.present.shape) < 0.1)
            grid.zero_complement = grid.present & (rng.random(grid.present.shape) < 0.1)
            w = grid.present & (rng.random(grid.present.shape) < 0.5)
            whole = grid._unknowns(w, every)
            some = np.flatnonzero(rng.random(every.size) < 0.3)
            assert np.array_equal(grid._unknowns(w, some), whole[some])
            # some series, a hospital's among them: its released 0s are its departments' too
            changed = np.union1d(np.flatnonzero(rng.random(every.size) < 0.05), rng.choice(hospitals, 1))
            w2 = w.copy()
            w2[changed] = grid.present[changed] & (rng.random((changed.size, w.shape[1])) < 0.5)
            for known in ("zero", "zero_complement"):
                getattr(grid, known)[changed] = grid.present[changed] & (rng.random((changed.size, w.shape[1])) < 0.3)
            moved = np.flatnonzero((grid._unknowns(w2, every) != whole).any(axis=1))
            reached = grid._touched(changed)
            assert np.isin(moved, reached).all()
            outside.append(np.setdiff1d(moved, changed).size)
    assert sum(outside) > 0  # changes that reached series besides their own


def test_the_layout_gives_the_codes_and_groupings_of_the_cells_it_is_handed_now():
    """``disclosure._Layout`` keeps what it worked out of the cells: handed the same cells, changed ones, then the
    first again, each answer is ``order_code``'s and ``_combined``'s of the cells of that call."""
    rng = np.random.default_rng(11)

    def cells(n: int, names: int) -> pl.DataFrame:
        frame = pl.DataFrame({c: rng.integers(0, names, n) for c in ("a", "b")}).with_columns(pl.format("g{}", "a").alias("link"))
        return frame.with_columns(pl.col("a").alias("a_code"), pl.col("b").alias("b_code"))

    first, second, shorter = cells(3000, 40), cells(3000, 40), cells(2000, 40)
    with_null = first.with_columns(pl.when(pl.col("a") == 3).then(None).otherwise("link").alias("link"))
    layout = disclosure._Layout()
    for frame in (first, first, second, shorter, first, with_null, with_null, first):
        assert layout.code(frame["link"]).equals(disclosure.order_code(frame["link"]))
        assert np.array_equal(layout.combined(frame, ("a", "b")), disclosure._combined(frame, ("a", "b")))
