"""What the feed releases, combined the ways an analyst can combine it: counts worked out within a cell and carried
across cells, and the feeds of several runs side by side.

``tests/test_feed.py``'s ``disclosure_breaches`` checks each rule on its own: a cell's counts against each other
(over the atoms), and each measure's cells over time and departments. ``combined_breaches`` here puts every released
count of every run into one linear system: unknowns atom x department x month (x run, where the data of a department
and month changed between the runs), so a count worked out in its cell can be carried into a total, and a month of
one run's feed can be subtracted from another run's. It knows nothing of ``pipeline.report.disclosure`` or
``relations``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_feed import (
    CSF_TIES,
    HEADLINE,
    LBP_TIES,
    NO_TIES,
    K,
    build,
    csf_month,
    disclosure_breaches,
    lbp_month,
    lbp_year,
    metrics,
    months_of,
    one_month,
    run_info,
    without_the_whole_feed_check,
)

REST = "\x00hospital only"  # units the hospital counts and no department does (a case without an attributed one)


def _months(start: str, end: str) -> list[str]:
    y0, m0, y1, m1 = int(start[:4]), int(start[5:]), int(end[:4]), int(end[5:])
    return months_of(start, (y1 - y0) * 12 + m1 - m0 + 1)


def combined_breaches(
    runs: list[tuple[pl.DataFrame, pl.DataFrame]],
    ties: dict[str, list[str]] = NO_TIES,
    k: int = K,
    providers: tuple[str, ...] = (),
) -> list[str]:
    """Every withheld count of 1..k-1 (or complement of a withheld numerator) of the hospital and department cells of
    any run's feed that the released counts of all ``runs`` together determine. ``runs``: (feed, the internal metrics
    it was made from) per run; ``ties``: atom -> the counts it adds to (a count no atom names is an atom of its own).
    ``providers``: the measures the feed lays out per provider (the audit's headline ones); with them the provider
    cells are in the system too (below), and a provider's count of 1..k-1 the feed does not release is a target.

    Every count is a sum over atoms x departments x months; a released count, a released 0 (each of its atoms is
    empty) and a department without a row in a period its measure has (a known zero) are known. A department-month's
    atom is one unknown in two runs wherever every count it adds to is the same in both (the data did not change
    there); elsewhere each run has its own.

    The providers are a second split of the hospital's units: every unit has a department and a provider, so per atom
    and month the departments' unknowns and the providers' add up to the same. A provider row holds headline counts
    only, so its unknowns are per provider, month and class of atoms (the atoms that add to the same headline counts:
    no provider row tells them apart), and one known row per run, class and month says the two splits agree. No row
    of a provider is no known 0 (the feed leaves out the provider cells whose denominator it withholds)."""
    feeds = [f.filter(pl.col("level") != "provider") for f, _ in runs]
    measures = sorted({m for f in feeds for m in f["measure_id"].unique()})
    counts = [f"{c}:{m}" for m in measures for c in "dn"]
    # a count no atom names is an atom of its own; but a numerator is part of its denominator: where neither is tied,
    # the denominator is the numerator's atom and one of the rest (its complement)
    untied = {c for c in counts if not any(c in v for v in ties.values())}
    atoms = sorted(ties) + [f"own:{c}" for c in counts if c in untied]
    column = {c: [a for a in atoms if a == f"own:{c}" or c in ties.get(a, ())] for c in counts}
    for m in measures:
        if {f"n:{m}", f"d:{m}"} <= untied:
            column[f"d:{m}"].append(f"own:n:{m}")
    cal = _months(min(f["period_start"].min() for f in feeds), max(f["period_end"].max() for f in feeds))
    # the true monthly counts of each run: (level, group, month, count) -> value
    truths = []
    for _, source in runs:
        rows = source.filter(pl.col("period").is_in(cal) & (pl.col("level") != "provider"))
        truth: dict = {}
        for r in rows.iter_rows(named=True):
            truth[(r["level"], r["group_key"], r["period"], "n:" + r["measure_id"])] = r["numerator"] or 0
            truth[(r["level"], r["group_key"], r["period"], "d:" + r["measure_id"])] = r["denominator"] or 0
        # the hospital's units no department has, of the measures laid out per department (a measure of the hospital
        # alone, the low back pain audit's episodes, is no unit without a department: it took every atom's hospital
        # for more than its departments' sum, and the check missed counts of the 20k-patient demo's feed)
        per_department = set(rows.filter(pl.col("level") == "department")["measure_id"])
        for (level, _, month, c), v in list(truth.items()):
            if level == "overall" and c[2:] in per_department:
                rest = v - sum(x for (lv, _, mo, cc), x in truth.items() if lv == "department" and mo == month and cc == c)
                if rest:
                    truth[("department", REST, month, c)] = rest
        truths.append(truth)
    groups = sorted({g for f in feeds for g in f.filter(pl.col("level") == "department")["group_key"]})
    # a feed without departments: the hospital's units are one group, none of them in a department row
    has_rest = [any(key[1] == REST for key in t) or not groups for t in truths]
    groups += [REST] if any(has_rest) else []
    # one unknown per (run, atom, department, month), shared with an earlier run where its counts agree there
    var: dict = {}
    n_vars = 0
    for r, truth in enumerate(truths):
        for a in atoms:
            mine = [c for c in counts if a in column[c]]
            if a[4:6] in ("n:", "d:") and {f"own:n:{a[6:]}", f"own:d:{a[6:]}"} <= set(atoms):
                # an untied measure: its numerator's atom is the numerator; the rest of its denominator is that less it
                mine = [f"n:{a[6:]}"] + ([f"d:{a[6:]}"] if a[4] == "d" else [])
            for g in groups:
                for m in cal:

                    def value(t: dict, g=g, m=m, mine=mine) -> tuple:
                        return tuple(t.get(("department", g, m, c), 0) for c in mine)

                    same = next((var[(s, a, g, m)] for s in range(r) if value(truths[s]) == value(truth)), None)
                    if same is None:
                        same, n_vars = n_vars, n_vars + 1
                    var[(r, a, g, m)] = same

    def vector(r: int, c: str, gs: list[str], months: list[str]) -> np.ndarray:
        vec = np.zeros(n_vars)
        for a in column[c]:
            for g in gs:
                for m in months:
                    vec[var[(r, a, g, m)]] = 1.0
        return vec

    known, hidden, zeros = [], [], set()  # zeros: the unknowns known to be 0
    for r, (f, truth) in enumerate(zip(feeds, truths, strict=True)):
        present = set(f.select("period", "level", "group_key", "measure_id").iter_rows())
        per_department = set(f.filter(pl.col("level") == "department")["measure_id"])
        for row in f.iter_rows(named=True):
            months = _months(row["period_start"], row["period_end"])
            level, group, measure = row["level"], row["group_key"], row["measure_id"]
            gs = [g for g in groups if g != REST or has_rest[r]] if level == "overall" else [group]
            true = {c: sum(truth.get((level, group, m, c), 0) for m in months) for c in (f"n:{measure}", f"d:{measure}")}
            name = f"run {r}: {measure} {row['period']} {level} {group}"
            vecs = {c: vector(r, c, gs, months) for c in true}
            for c, shown in ((f"n:{measure}", row["numerator"]), (f"d:{measure}", row["denominator"])):
                if shown is None:
                    if 1 <= true[c] < k:
                        hidden.append((vecs[c], f"{name} {c[0]} ({true[c]})"))
                elif shown == 0:
                    zeros.update(np.flatnonzero(vecs[c]).tolist())  # each atom of it is empty
                else:
                    known.append(vecs[c])
            if row["numerator"] is not None and row["numerator"] == row["denominator"]:
                # no count is negative: all of the denominator in the numerator shows the rest of its atoms empty
                zeros.update(np.flatnonzero(vecs[f"d:{measure}"] - vecs[f"n:{measure}"]).tolist())
            complement = true[f"d:{measure}"] - true[f"n:{measure}"]
            if row["numerator"] is None and 1 <= complement < k:
                hidden.append((vecs[f"d:{measure}"] - vecs[f"n:{measure}"], f"{name} complement ({complement})"))
            if level == "overall" and has_rest[r] and measure in per_department:  # units no department holds
                rest = {c: sum(truth.get(("department", REST, m, c), 0) for m in months) for c in true}
                rest_vecs = {c: vector(r, c, [REST], months) for c in true}
                for c, v in rest.items():
                    if 1 <= v < k:
                        hidden.append((rest_vecs[c], f"run {r}: {measure} {row['period']} no department {c[0]} ({v})"))
                rest_complement = rest[f"d:{measure}"] - rest[f"n:{measure}"]
                if 1 <= rest_complement < k:
                    rest_vec = rest_vecs[f"d:{measure}"] - rest_vecs[f"n:{measure}"]
                    hidden.append((rest_vec, f"run {r}: {measure} {row['period']} no department complement ({rest_complement})"))
        # a department without a row in a period its measure has there: nothing in the atoms of its denominator
        for measure in f["measure_id"].unique():
            rows = f.filter((pl.col("measure_id") == measure) & (pl.col("level") == "department"))
            if rows.height == 0:
                continue
            for period, start, end in rows.select("period", "period_start", "period_end").unique().iter_rows():
                for g in groups:
                    if g != REST and (period, "department", g, measure) not in present:
                        vec = vector(r, f"d:{measure}", [g], _months(start, end))
                        zeros.update(np.flatnonzero(vec).tolist())
        if not has_rest[r]:  # the hospital counts no unit the departments do not
            zeros.update(var[(r, a, REST, m)] for a in atoms for m in cal if REST in groups)
    if providers:
        n_vars = _provider_system(
            runs, feeds, providers, measures, atoms, column, groups, var, n_vars, cal, k, known, hidden, zeros
        )
    if not hidden:
        return []
    # a known 0 adds nothing: its unknown leaves every count it is in
    free = np.setdiff1d(np.arange(n_vars), np.fromiter(zeros, int, len(zeros)))
    basis = np.unique(np.array(known).reshape(-1, n_vars)[:, free], axis=0)
    basis = basis[np.abs(basis).sum(axis=1) > 0]
    targets = np.array([vec for vec, _ in hidden])[:, free]
    found = np.abs(targets).sum(axis=1) == 0  # nothing left unknown (no true count of 1..k-1 can be that)
    # solved per set of unknowns that some count ties together (without ties: each measure's two counts)
    linked = _components(np.vstack([basis, targets]) != 0)
    for part in np.unique(linked):
        cols = linked == part
        rows = np.flatnonzero(np.abs(targets[:, cols]).sum(axis=1) > 0)
        a = basis[:, cols][np.abs(basis[:, cols]).sum(axis=1) > 0]
        if rows.size == 0 or a.shape[0] == 0:
            continue
        t = targets[rows][:, cols]
        found[rows] |= np.abs(t @ np.linalg.pinv(a, rcond=1e-10) @ a - t).max(axis=1) < 1e-8
    return sorted(name for (_, name), f in zip(hidden, found, strict=True) if f)


PREST = "\x00no provider"  # units the hospital counts and no provider row holds


def _provider_system(runs, feeds, providers, measures, atoms, column, groups, var, n_vars, cal, k, known, hidden, zeros) -> int:
    """combined_breaches' provider cells: adds their unknowns (padding ``known`` and ``hidden`` to them), the rows that
    tie them to the departments' unknowns, their released counts, 0s and targets; the number of unknowns after."""
    heads = [f"{c}:{m}" for m in sorted(providers) if m in measures for c in "dn"]
    sig = {a: tuple(c for c in heads if a in column[c]) for a in atoms}
    classes = sorted({s for s in sig.values() if s})
    # per run: the true counts of each provider and month (and of the units no provider row holds)
    truths = []
    for _, source in runs:
        rows = source.filter(pl.col("period").is_in(cal) & pl.col("measure_id").is_in(list(providers)))
        truth: dict = {}
        for r in rows.filter(pl.col("level").is_in(["provider", "overall"])).iter_rows(named=True):
            group = r["group_key"] if r["level"] == "provider" else None
            truth[(group, r["period"], "n:" + r["measure_id"])] = r["numerator"] or 0
            truth[(group, r["period"], "d:" + r["measure_id"])] = r["denominator"] or 0
        for (group, month, c), v in [(key, v) for key, v in truth.items() if key[0] is None]:
            rest = v - sum(x for (g, mo, cc), x in truth.items() if g is not None and mo == month and cc == c)
            if rest:
                truth[(PREST, month, c)] = rest
            del truth[(group, month, c)]
        truths.append(truth)
    pvar: dict = {}
    for r, truth in enumerate(truths):
        for p in sorted({key[0] for key in truth}):
            for m in cal:
                value = tuple(truth.get((p, m, c), 0) for c in heads)
                for s in classes:
                    same = next(
                        (
                            pvar[(q, s, p, m)]
                            for q in range(r)
                            if (q, s, p, m) in pvar and tuple(truths[q].get((p, m, c), 0) for c in heads) == value
                        ),
                        None,
                    )
                    if same is None:
                        same, n_vars = n_vars, n_vars + 1
                    pvar[(r, s, p, m)] = same
    for i, vec in enumerate(known):
        known[i] = np.pad(vec, (0, n_vars - vec.size))
    hidden[:] = [(np.pad(vec, (0, n_vars - vec.size)), name) for vec, name in hidden]

    def pvector(r: int, c: str, p: str, months: list[str]) -> np.ndarray:
        vec = np.zeros(n_vars)
        for s in classes:
            if c in s:
                for m in months:
                    vec[pvar[(r, s, p, m)]] = 1.0
        return vec

    for r, (runs_feed, truth) in enumerate(zip([f for f, _ in runs], truths, strict=True)):
        mine = sorted({key[0] for key in truth})
        # the two splits agree: per class and month, the departments' atoms of the class less the providers' unknowns
        for s in classes:
            for m in cal:
                vec = np.zeros(n_vars)
                for a in atoms:
                    if sig[a] == s:
                        for g in groups:
                            vec[var[(r, a, g, m)]] = 1.0
                for p in mine:
                    vec[pvar[(r, s, p, m)]] = -1.0
                known.append(vec)
        rows = runs_feed.filter(pl.col("level") == "provider")
        shown = {(row["period"], row["group_key"], row["measure_id"]): row for row in rows.iter_rows(named=True)}
        periods = feeds[r].select("period", "period_start", "period_end").unique()
        for period, start, end in periods.iter_rows():
            months = _months(start, end)
            for p in mine:
                for measure in sorted(providers):
                    if measure not in measures:
                        continue
                    row = shown.get((period, p, measure))
                    true = {c: sum(truth.get((p, m, c), 0) for m in months) for c in (f"n:{measure}", f"d:{measure}")}
                    vecs = {c: pvector(r, c, p, months) for c in true}
                    name = f"run {r}: {measure} {period} provider {'(none)' if p == PREST else p}"
                    values = (
                        {c: None for c in true}
                        if row is None
                        else {f"n:{measure}": row["numerator"], f"d:{measure}": row["denominator"]}
                    )
                    for c, value in values.items():
                        if value is None:
                            if 1 <= true[c] < k:
                                hidden.append((vecs[c], f"{name} {c[0]} ({true[c]})"))
                        elif value == 0:
                            zeros.update(np.flatnonzero(vecs[c]).tolist())
                        else:
                            known.append(vecs[c])
                    n, d = values.values()
                    if n is not None and n == d:
                        zeros.update(np.flatnonzero(vecs[f"d:{measure}"] - vecs[f"n:{measure}"]).tolist())
                    complement = true[f"d:{measure}"] - true[f"n:{measure}"]
                    if n is None and 1 <= complement < k:
                        hidden.append((vecs[f"d:{measure}"] - vecs[f"n:{measure}"], f"{name} complement ({complement})"))
    return n_vars


def _components(rows: np.ndarray) -> np.ndarray:
    """Per column of ``rows`` (bool, rows x unknowns), a label shared by the columns some rows tie together: the
    least column of each row and the least row label of each column, propagated until nothing changes."""
    r, c = np.nonzero(rows)
    label = np.arange(rows.shape[1])
    while True:
        row_label = np.full(rows.shape[0], rows.shape[1])
        np.minimum.at(row_label, r, label[c])
        before = label.copy()
        np.minimum.at(label, c, row_label[r])
        if (label == before).all():
            return label


# ----------------------------------------------------------------------------- within a cell, then across cells


def test_the_combined_check_finds_what_each_rule_alone_misses(monkeypatch):
    """Without the pass within cells the low back pain year gives counts away; the combined check sees it too (it
    is no weaker than test_feed's)."""
    from pipeline.report import relations

    m = lbp_year(1)
    empty = pl.DataFrame(schema={"den_key": pl.Int64}), pl.DataFrame(schema={"fam_key": pl.Int64})
    monkeypatch.setattr(relations, "exposed", lambda *args: empty)
    without_the_whole_feed_check(monkeypatch)
    assert combined_breaches([(build(m, run_info("all"), LBP_TIES), m)], LBP_TIES)


@pytest.mark.parametrize(
    ("seed", "given_away", "also_withheld"),
    [
        (34, "2026-Q2 department d2 n (2)", ("2026-Q1", "department", "d0", "not_evaluable_order_rate", 20, 55)),
        (47, "2025-Q3 department d2 n (3)", ("2026-Q2", "department", "d3", "excluded_order_rate", 16, 71)),
    ],
)
def test_a_count_only_the_whole_feed_gives_away_is_withheld(seed, given_away, also_withheld, monkeypatch):
    """Years whose feed, as the passes leave it, gives a department's not-evaluable orders away only to a reader who
    solves every released count of every measure together: each cell's counts and each table's cells by themselves
    give nothing (test_feed's ``disclosure_breaches`` finds nothing). The last check (``whole_feed``) puts them in one
    system as that reader does, and withholds one more cell of the derivation; then nothing is given away."""
    m = lbp_year(seed)
    fed = build(m, run_info("all"), LBP_TIES)
    assert combined_breaches([(fed, m)], LBP_TIES) == []
    assert disclosure_breaches(fed, m, ties=LBP_TIES) == []
    without_the_whole_feed_check(monkeypatch)
    passes_alone = build(m, run_info("all"), LBP_TIES)
    assert combined_breaches([(passes_alone, m)], LBP_TIES) == [f"run 0: not_evaluable_order_rate {given_away}"]
    assert disclosure_breaches(passes_alone, m, ties=LBP_TIES) == []
    keys = ["period", "level", "group_key", "measure_id"]
    changed = passes_alone.join(fed, on=keys, suffix="_after").filter(pl.col("suppressed") != pl.col("suppressed_after"))
    assert changed.select(*keys, "numerator", "denominator").rows() == [also_withheld]
    assert changed["suppressed_after"].to_list() == [True]


def test_a_part_of_the_whole_feed_system_over_its_cap_is_left_to_the_passes_and_the_log_says_so(tmp_path, monkeypatch, caplog):
    """Beyond ``whole_feed.WHOLE_FEED_ENTRIES`` (released counts x unknowns of one part of the system) the last check
    does not solve that part: the feed is the passes' alone, and the run's log names the part's size."""
    import json
    import logging

    from pipeline.report import feed, relations, whole_feed

    m = lbp_year(34)
    logger = logging.getLogger("pipeline")
    monkeypatch.setattr(logger, "propagate", True)  # to caplog's handler (the CLI's logging turns it off)
    caplog.set_level(logging.INFO, logger="pipeline")
    monkeypatch.setattr(whole_feed, "WHOLE_FEED_ENTRIES", 10)
    feed.write_feed(tmp_path, m, run_info("all"), "all", relations.Atoms.of(LBP_TIES))
    logged = [r.fields for r in caplog.records if r.fields["event"] == "whole_feed_left_out"]
    assert logged == [{"event": "whole_feed_left_out", "audit_id": "toy", "parts": ["201 x 222"], "max_entries": 10}]
    assert "1 part of the whole-feed check's system (201 x 222 released counts x unknowns)" in caplog.text
    assert "whole_feed" not in json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    without_the_whole_feed_check(monkeypatch)
    assert pl.read_parquet(tmp_path / "metrics.parquet").equals(build(m, run_info("all"), LBP_TIES))


def test_a_measure_of_the_hospital_alone_is_no_unit_without_a_department(monkeypatch):
    """The combined check took a measure the feed lays out hospital-wide only (the low back pain audit's episodes) for
    units no department holds, so every atom of the hospital was more than its departments' sum, and it missed what
    the feed gave away (the 20k-patient demo's January 2025 not-evaluable orders, 2 hospital-wide). Beside such a
    measure it finds the same count as without it."""
    without_the_whole_feed_check(monkeypatch)
    m = lbp_year(34)
    episodes = [
        (period, "overall", "all", "episode_rate", 20, 40)
        for period in m.filter(pl.col("level") == "overall")["period"].unique().sort()
    ]
    with_episodes = pl.concat([m, metrics(episodes)])
    fed = build(with_episodes, run_info("all"), LBP_TIES)
    assert fed.filter(pl.col("measure_id") == "episode_rate")["level"].unique().to_list() == ["overall"]
    found = ["run 0: not_evaluable_order_rate 2026-Q2 department d2 n (2)"]
    assert combined_breaches([(fed, with_episodes)], LBP_TIES) == found


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_lbp_counts_worked_out_in_a_cell_and_carried_across_cells_give_nothing_away(seed):
    m = lbp_year(seed)
    assert combined_breaches([(build(m, run_info("all"), LBP_TIES), m)], LBP_TIES) == []


# a smaller CSF-leak order audit (mart_metric_atoms' shape): evaluated orders are appropriate, inappropriate (some
# premature) or for review; the orders not excluded are those and the not-evaluable ones; all audited orders are
# those and the cancelled ones (reason_cancelled's denominator)
_EVALUATED = ["d:inappropriate_order_rate", "d:premature_order_rate", "d:review_order_rate", "d:not_evaluable_rate"]
CSF_ORDER_TIES = {
    "appropriate": [*_EVALUATED, "d:reason_cancelled"],
    "inappropriate": [*_EVALUATED, "n:inappropriate_order_rate", "d:reason_cancelled"],
    "premature": [*_EVALUATED, "n:inappropriate_order_rate", "n:premature_order_rate", "d:reason_cancelled"],
    "review": [*_EVALUATED, "n:review_order_rate", "d:reason_cancelled"],
    "not_evaluable": ["d:not_evaluable_rate", "n:not_evaluable_rate", "d:reason_cancelled"],
    "cancelled": ["d:reason_cancelled", "n:reason_cancelled"],
}


def tied_year(ties: dict[str, list[str]], seed: int, departments: int = 4) -> pl.DataFrame:
    """12 months, ``departments`` departments whose units fall in the atoms of ``ties`` at random (0 to 12 a month
    each); every count of a cell is the sum of its atoms, summed over departments and months (``lbp_year`` for any
    audit)."""
    rng = np.random.default_rng(seed)
    atoms = sorted(ties)
    counts = sorted({c for cs in ties.values() for c in cs})
    per = {
        (month, f"d{d}"): dict(zip(atoms, rng.choice([0, 0, 1, 2, 4, 7, 12], size=len(atoms)).tolist(), strict=True))
        for month in months_of("2025-07", 12)
        for d in range(departments)
    }
    cells: dict = {}
    for (month, dept), n in per.items():
        for key in (
            (month, "department", dept),
            ("all", "department", dept),
            (month, "overall", "all"),
            ("all", "overall", "all"),
        ):
            total = cells.setdefault(key, dict.fromkeys(atoms, 0))
            for a in atoms:
                total[a] += n[a]
    rows = []
    for (period, level, group), n in cells.items():
        value = {c: sum(n[a] for a in atoms if c in ties[a]) for c in counts}
        dens = [(c[2:], v) for c, v in value.items() if c.startswith("d:") and v > 0]  # a cell over nothing has no row
        rows += [(period, level, group, m, value.get("n:" + m, 0), v) for m, v in dens]
    return metrics(rows)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 9])
def test_csf_counts_worked_out_in_a_cell_and_carried_across_cells_give_nothing_away(seed):
    """Seeds 4 and 9 gave counts away: a quarter's released 0 not-evaluable orders of a department make each of its
    months' orders not excluded its evaluated ones, so January's released 17 not-excluded orders were its withheld
    evaluated ones, and the quarter's 35 evaluated less January's 17 less March's released 13 gave February's 5."""
    m = tied_year(CSF_ORDER_TIES, seed)
    assert combined_breaches([(build(m, run_info("all"), CSF_ORDER_TIES), m)], CSF_ORDER_TIES) == []


def test_the_hand_built_cells_of_both_audits_give_nothing_away_combined():
    m = lbp_month()
    assert combined_breaches([(build(m, run_info("2026-06"), LBP_TIES), m)], LBP_TIES) == []
    m = csf_month()
    assert combined_breaches([(build(m, run_info("2026-06"), CSF_TIES), m)], CSF_TIES) == []


def sparse_years(seed: int) -> pl.DataFrame:
    """24 months, four departments whose event is mostly absent (two months in three: 0; else 1 to 3 of ~20 orders):
    quarters, 12-month windows and hospital months of 0 beside withheld 1s and 2s, as the reason shares of a
    hospital are."""
    rng = np.random.default_rng(seed)
    rows = []
    for month in months_of("2024-07", 24):
        depts = [(d, int(rng.choice([0] * 6 + [1, 2, 3])), int(rng.integers(15, 26))) for d in ("neuro", "anes", "emerg", "pain")]
        rows += [(month, *r[1:]) for r in one_month(*depts)]
    frame = pl.DataFrame(rows, schema=["period", "level", "group_key", "measure_id", "numerator", "denominator"], orient="row")
    run_total = frame.group_by("level", "group_key", "measure_id").agg(pl.col("numerator", "denominator").sum())
    return metrics(rows + [("all", *r) for r in run_total.select(frame.columns[1:]).iter_rows()])


@pytest.mark.parametrize("seed", [3, 4, 7, 10, 15])
def test_a_released_zero_of_months_or_of_the_hospital_is_a_zero_of_each_cell_it_sums(seed):
    """No count is negative: a quarter of 0 is 0 in each of its months, a hospital month of 0 in each department.
    These years gave counts away when the passes over time and departments took a released 0 for one linear
    equation (the 12-month window ending in May less the one ending in April is May less the previous May, and that
    May lay in a quarter of 0)."""
    m = sparse_years(seed)
    assert combined_breaches([(build(m, run_info("all")), m)]) == []


# ----------------------------------------------------------------------------- two runs' feeds side by side


def _delivered(source: Path, out: Path, before: str, recode: bool = False) -> Path:
    """The extracts as delivered before ``before`` (YYYY-MM); ``recode``: a correction to an old month, 2025-10's
    neurology orders recoded to pain management (the data changes there only)."""
    out.mkdir(parents=True)
    (out / "local_code_map.csv").write_bytes((source / "local_code_map.csv").read_bytes())
    for name, column in (("imaging_orders", "ordered_at"), ("procedures", "performed_at"), ("diagnoses", "recorded_at")):
        rows = pl.read_csv(source / f"{name}.csv", infer_schema=False)
        rows = rows.filter(pl.col(column).is_null() | (pl.col(column).str.slice(0, 7) < before))
        if recode and name == "imaging_orders":
            hit = (pl.col("ordered_at").str.slice(0, 7) == "2025-10") & (pl.col("ordering_department") == "neurology")
            rows = rows.with_columns(
                pl.when(hit).then(pl.lit("pain_management")).otherwise("ordering_department").alias("ordering_department")
            )
        rows.write_csv(out / f"{name}.csv")
    return out


@pytest.fixture(scope="module")
def monthly_runs(tmp_path_factory) -> dict:
    """An analyst's archive: the 20k-patient demo's March run (data through March), its April run (through April) and
    April again after a correction to October 2025. Per run and audit: (feed, the metrics it was made from)."""
    import duckdb
    from conftest import run_cli

    from pipeline import audits, publishing
    from pipeline.report.measure import build_metrics
    from pipeline.synth import generate

    base = tmp_path_factory.mktemp("runs")
    generate(base / "all", patients=20_000, months=24, seed=7, start_month="2024-07")
    runs = {}
    for name, month, before, recode in (
        ("march", "2026-03", "2026-04", False),
        ("april", "2026-04", "2026-05", False),
        ("april_again", "2026-04", "2026-05", True),
    ):
        given = _delivered(base / "all", base / f"in_{name}", before, recode)
        wh = base / f"{name}.duckdb"
        result = run_cli("run", "--input", given, "--out", base / name, "--warehouse", wh, "--month", month, "--no-validate")
        assert result.returncode == 0, result.stderr
        con = duckdb.connect(str(wh), read_only=True)
        try:
            for audit in audits.discover():
                publishing.select_audit(con, audit)
                ties = {f"{u}:{a}": a.split("|") for u, a in con.execute("SELECT unit, atom FROM mart_metric_atoms").fetchall()}
                fed = pl.read_parquet(base / name / audit.id / "metrics.parquet")
                runs[name, audit.id] = (fed, build_metrics(con), ties)
        finally:
            con.close()
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("audit_id", ["csf_leak", "low_back_pain"])
def test_each_monthly_feed_alone_gives_nothing_away(monthly_runs, audit_id):
    """Each run's feed on its own gives nothing away, by test_feed's checks and by the combined one. The March feed gave
    a hospital month of inappropriate orders (two 12-month windows, once the same month a year later was known to be 0,
    every inappropriate reason's atoms shown empty by released 0s and missing rows of the departments), then the
    complement of a reason share in August 2024: the two windows' counts less their complements' (both released) left
    August 2024's complement less August 2025's, and August 2025's was known to be 0 by the atoms (every evaluated
    order of that month without the reason shown absent)."""
    from test_feed import disclosure_breaches

    from pipeline import audits

    (audit,) = [a for a in audits.discover() if a.id == audit_id]
    headline = tuple(m.id for m in audit.measures if m.headline)
    for name in ("march", "april", "april_again"):
        fed, source, ties = monthly_runs[name, audit_id]
        assert combined_breaches([(fed, source)], ties, providers=headline) == [], name
        assert disclosure_breaches(fed, source, ties=ties) == [], name


@pytest.mark.slow
def test_two_runs_feeds_side_by_side_give_counts_away_as_the_doc_says(monthly_runs):
    """What docs/METRICS_FEED.md says an archive of feeds does: each run weighs only its own cells, so the March and
    April feeds together give withheld counts away (a 12-month window of one less the overlapping months of the
    other), and so do April's before and after a correction to October 2025 (counts of October's quarter and windows,
    where the two withhold different cells)."""
    from test_feed import FEED_DOC

    def together(a: str, b: str) -> list[str]:
        return combined_breaches([monthly_runs[a, "csf_leak"][:2], monthly_runs[b, "csf_leak"][:2]])

    assert together("march", "april")
    corrected = together("april", "april_again")
    assert corrected and all("2025-" in p or "2024-" in p for p in corrected)
    protects = FEED_DOC[FEED_DOC.index("### What the suppression protects, and what it does not") :].split("\n## ")[0]
    assert "publish the latest feed" in protects and "side by side" in protects


def test_departments_zeros_say_nothing_of_cases_the_hospital_alone_counts():
    """A case without an attributed department counts for the hospital only: the departments' released 0s do not
    make the hospital's months 0. The joint pass, whose unknowns are department-months, found none left to solve for
    and stopped the feed (a zero-size reduction); the hospital's January 4 stays protected (the quarter's 64 less
    February's and March's 30 would give it)."""
    rows = []
    for month, total in (("2026-01", 4), ("2026-02", 30), ("2026-03", 30)):
        rows += [(month, "department", d, "first_imaging_right_study", 0, 20) for d in ("d1", "d2")]
        rows.append((month, "overall", "all", "first_imaging_right_study", total, 100))
    rows += [("all", "department", d, "first_imaging_right_study", 0, 60) for d in ("d1", "d2")]
    rows.append(("all", "overall", "all", "first_imaging_right_study", 64, 300))
    fed = build(metrics(rows), run_info("all"))
    hospital = {r["period"]: r["numerator"] for r in fed.filter(pl.col("level") == "overall").to_dicts()}
    assert hospital["2026-01"] is None
    assert None in (hospital["2026-Q1"], hospital["2026-02"], hospital["2026-03"]), hospital
    assert disclosure_breaches(fed, metrics(rows)) == []
    assert combined_breaches([(fed, metrics(rows))]) == []


# ----------------------------------------------------------------------------- units no department holds

M = "inappropriate_order_rate"


def quarter_with_unattributed(rest: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """January to March 2026, two departments (d1: 20/40, 21/41, 22/42; d2: 25/45, 27/46, 29/47 inappropriate of
    evaluated orders) and the run's total; the hospital counts ``rest`` (month -> numerator, denominator) more: orders
    no department row holds."""
    rows, run = [], {}
    for i, month in enumerate(months_of("2026-01", 3)):
        cells = {("department", "d1"): (20 + i, 40 + i), ("department", "d2"): (25 + 2 * i, 45 + i)}
        n, d = rest.get(month, (0, 0))
        cells["overall", "all"] = (sum(v[0] for v in cells.values()) + n, sum(v[1] for v in cells.values()) + d)
        for (level, group), (n, d) in cells.items():
            rows.append((month, level, group, M, n, d))
            total = run.setdefault((level, group), [0, 0])
            total[0], total[1] = total[0] + n, total[1] + d
    rows += [("all", level, group, M, n, d) for (level, group), (n, d) in run.items()]
    return metrics(rows)


def withheld_cells(fed: pl.DataFrame) -> set[tuple]:
    return set(fed.filter("suppressed").select("period", "level", "group_key", "denominator").rows())


@pytest.mark.parametrize(
    ("rest", "withheld"),
    [
        # 3 orders of January no department holds: the hospital less d1 and d2 would give them; d1 goes (the smaller),
        # and in the quarter and the run's total, which hold the same 3
        (
            {"2026-01": (3, 15)},
            {
                ("2026-01", "department", "d1", 40),
                ("2026-Q1", "department", "d1", 123),
                ("all", "department", "d1", 123),
            },
        ),
        # 30 of 45 in January may be known, February's 3 of 15 not: d1's February goes, then its January (the quarter
        # less January and March would give February); February's 3 stay hidden behind January's 30, which the
        # hospital less the departments no longer gives either
        ({"2026-01": (30, 45), "2026-02": (3, 15)}, {("2026-01", "department", "d1", 40), ("2026-02", "department", "d1", 41)}),
        # 2 of 7 (the denominator small too): d1's denominator goes with its row
        (
            {"2026-01": (2, 7)},
            {("2026-01", "department", "d1", None), ("2026-Q1", "department", "d1", None), ("all", "department", "d1", None)},
        ),
    ],
)
def test_units_no_department_holds_are_never_released_as_the_hospital_less_the_departments(rest, withheld):
    """A unit the hospital counts and no department row holds (the models put an order or case without a department
    under `(not recorded)`, so the engine's own never do this): the hospital less the released departments is their
    count, so the passes treat them as one more group, never released."""
    m = quarter_with_unattributed(rest)
    fed = build(m, run_info("all"))
    assert withheld_cells(fed) == withheld
    assert combined_breaches([(fed, m)]) == []
    assert disclosure_breaches(fed, m) == []


def test_the_checks_see_units_no_department_holds(monkeypatch):
    """Both independent checks find the unattributed 3 a feed gives away when the passes forget them (they must not
    take the hospital for the departments' sum as the passes did)."""
    from pipeline.report import disclosure

    monkeypatch.setattr(disclosure, "_remainders", lambda coded, k: coded.clear())
    m = quarter_with_unattributed({"2026-01": (3, 15)})
    fed = build(m, run_info("all"))
    assert withheld_cells(fed) == set()
    assert combined_breaches([(fed, m)]) == [f"run 0: {M} {p} no department n (3)" for p in ("2026-01", "2026-Q1", "all")]
    assert [p for p in disclosure_breaches(fed, m) if "determined" in p] == [
        f"determined by the released cells: {M} {p} no department numerator (3)" for p in ("2026-01", "2026-Q1", "all")
    ]


# ----------------------------------------------------------------------------- complements over time


def year_and_a_quarter() -> pl.DataFrame:
    """January 2025 to March 2026, the hospital only: 30 of 45 orders inappropriate a month, but 20 of 21 in January
    2025 (1 not: a small complement) and all of them in January to March 2026 (5, 15 and 15: the quarter's 35 of 35)."""
    counts = dict.fromkeys(months_of("2025-01", 15), (30, 45))
    counts |= {"2025-01": (20, 21), "2026-01": (5, 5), "2026-02": (15, 15), "2026-03": (15, 15)}
    rows = [(month, "overall", "all", M, n, d) for month, (n, d) in counts.items()]
    return metrics(rows + [("all", "overall", "all", M, sum(n for n, _ in counts.values()), sum(d for _, d in counts.values()))])


def test_a_complement_known_to_be_0_a_year_later_gives_no_complement_away():
    """2026-Q1's 35 of 35 shows every month of it with no order left over (no count is negative), so the 12-month window
    ending in December 2025 less the one ending in January 2026 gives January 2025's 1 not-inappropriate order: the
    windows' counts are released, their complements with them. The passes over time weigh each table's complements as
    a series of their own, and give up cells of that derivation too."""
    m = year_and_a_quarter()
    fed = build(m, run_info("all"))
    assert withheld_cells(fed) == {
        ("2025-01", "overall", "all", None),
        ("2025-02", "overall", "all", None),
        ("2025-03", "overall", "all", None),
        ("2026-01", "overall", "all", None),
        ("2026-02", "overall", "all", None),
        ("2026-03", "overall", "all", None),
        ("2025-04", "overall", "all", 45),
        ("2025-05", "overall", "all", 45),
        ("2025-07", "overall", "all", 45),
        ("2025-08", "overall", "all", 45),
        ("2025-10", "overall", "all", 45),
        ("2025-11", "overall", "all", 45),
        ("2025-Q1", "overall", "all", 111),
        ("2025-Q2", "overall", "all", 135),
        ("2025-Q3", "overall", "all", 135),
        ("2026-Q1", "overall", "all", 35),
        ("2025-01..2025-12", "overall", "all", 516),
        ("2025-04..2026-03", "overall", "all", 440),
    }
    assert combined_breaches([(fed, m)]) == []
    assert disclosure_breaches(fed, m) == []


def test_the_combined_check_knows_a_numerator_is_part_of_its_denominator():
    """What the feed released before the passes weighed complements (every month of the small counts withheld, the
    windows and quarters released): the combined check finds January 2025's complement, as a numerator of all its
    denominator shows the rest empty."""
    m = year_and_a_quarter()
    months = {"2025-01", "2025-02", "2025-03", "2026-01", "2026-02", "2026-03"}
    fed = build(m, run_info("all", min_cell_count=1)).with_columns(
        pl.when(pl.col("period").is_in(months)).then(None).otherwise("numerator").alias("numerator"),
        pl.when(pl.col("period").is_in(months)).then(None).otherwise("denominator").alias("denominator"),
    )
    assert combined_breaches([(fed, m)]) == [f"run 0: {M} 2025-01 overall all complement (1)"]


# ----------------------------------------------------------------------------- the provider level


def one_department_two_providers(p2: tuple[int, int]) -> pl.DataFrame:
    """June 2026: one department of two providers, P-1 20 of 40 orders inappropriate, P-2 ``p2`` (n, N)."""
    n, d = 20 + p2[0], 40 + p2[1]
    rows = [("2026-06", "overall", "all", M, n, d), ("2026-06", "department", "d1", M, n, d)]
    rows += [("2026-06", "provider", "P-1", M, 20, 40), ("2026-06", "provider", "P-2", M, *p2)]
    return metrics(rows)


def test_the_combined_check_sees_a_providers_count_the_other_providers_give():
    """With the provider level in the system (``providers``), a withheld provider count that the hospital less the
    other providers gives is found; without it the check does not look there. The engine's feed withholds P-1 with
    P-2 (the line pass), and the check finds nothing in it."""
    m = one_department_two_providers((3, 30))
    released = build(m, run_info("all", min_cell_count=1))
    p2 = (pl.col("level") == "provider") & (pl.col("group_key") == "P-2")
    leaky = released.with_columns(
        pl.when(p2).then(None).otherwise("numerator").alias("numerator"), (pl.col("suppressed") | p2).alias("suppressed")
    )
    assert combined_breaches([(leaky, m)], providers=HEADLINE) == [f"run 0: {M} 2026-06 provider P-2 n (3)"]
    assert combined_breaches([(leaky, m)]) == []
    fed = build(m, run_info("all"))
    assert fed.filter(pl.col("level") == "provider").select("group_key", "numerator", "denominator").sort("group_key").rows() == [
        ("P-1", None, 40),
        ("P-2", None, 30),
    ]
    assert combined_breaches([(fed, m)], providers=HEADLINE) == []


def test_the_combined_check_sees_a_providers_count_its_other_periods_give_and_a_small_provider_left_out():
    """A provider's quarter less its released months gives its withheld month; a provider whose denominator is 1 to 10
    has no row, a target all the same (found here: every other count of the line is released)."""
    rows = []
    for month, (n, d) in zip(months_of("2026-01", 3), [(20, 40), (3, 30), (25, 45)], strict=True):
        rows += [(month, level, group, M, n + 4, d + 8) for level, group in (("overall", "all"), ("department", "d1"))]
        rows += [(month, "provider", "P-1", M, n, d), (month, "provider", "P-2", M, 4, 8)]
    m = metrics(rows)
    released = build(m, run_info("all", min_cell_count=1))
    february = (pl.col("level") == "provider") & (pl.col("group_key") == "P-1") & (pl.col("period") == "2026-02")
    leaky = released.with_columns(
        pl.when(february).then(None).otherwise("numerator").alias("numerator"),
        (pl.col("suppressed") | february).alias("suppressed"),
    ).filter(pl.col("group_key") != "P-2")
    found = combined_breaches([(leaky, m)], providers=HEADLINE)
    assert found == sorted(
        [f"run 0: {M} 2026-02 provider P-1 n (3)"]
        + [f"run 0: {M} {p} provider P-2 {c} ({v})" for p in ("2026-01", "2026-02", "2026-03") for c, v in (("n", 4), ("d", 8))]
        + [f"run 0: {M} {p} provider P-2 complement (4)" for p in ("2026-01", "2026-02", "2026-03")]
    )
    fed = build(m, run_info("all"))
    assert combined_breaches([(fed, m)], providers=HEADLINE) == []


@pytest.mark.parametrize(
    ("year", "given_away"),
    [
        ("mixed 18", ["2025-Q3 provider P-d1 n (9)", "2026-Q1 provider P-d1 n (10)"]),
        ("mixed 27", ["2026-Q2 provider P-d2 n (9)"]),
        (
            "sparse 7",
            [
                "2024-10..2025-09 provider P-emerg n (10)",
                "2024-11..2025-10 provider P-emerg n (10)",
                "2025-01 provider P-emerg n (3)",
            ],
        ),
        ("sparse 15", ["2025-03 provider P-neuro n (2)", "2025-Q1 provider P-neuro n (2)"]),
    ],
)
def test_time_and_providers_together_give_no_hidden_count_away(year, given_away, monkeypatch):
    """The joint pass weighs the hospital and its providers over time as it weighs the departments (unknowns: provider
    x month). Without it (a provider table beyond ``JOINT_PROVIDER_ENTRIES``, as a health system's thousands of
    providers are) these years gave provider counts away: a provider's quarter is the hospital's less the other
    providers', whose withheld quarters their 12-month windows less their other quarters give."""
    from test_feed import mixed_year

    from pipeline.report import disclosure

    name, seed = year.split()
    m = mixed_year(int(seed)) if name == "mixed" else sparse_years(int(seed))
    assert combined_breaches([(build(m, run_info("all")), m)], providers=HEADLINE) == []
    assert disclosure_breaches(build(m, run_info("all")), m) == []
    monkeypatch.setattr(disclosure, "JOINT_PROVIDER_ENTRIES", 0)
    found = combined_breaches([(build(m, run_info("all")), m)], providers=HEADLINE)
    assert found == [f"run 0: {M} {p}" for p in given_away]
