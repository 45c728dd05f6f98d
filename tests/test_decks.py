"""Every audit's deck through the real CLI, order by order and case by case.

Each deck file (``audits/<id>/deck/*.toml``) holds input rows and the FULL expected result of its
audit, and of any other audit in rows marked ``audit = "<other id>"``:

* ``[[expected_orders]]``: one row per audited order, matched on ``order_id``; every other key is an
  output column of ``OUT/<audit>/audited_orders.csv`` and must read exactly so, except
  ``patient_id`` / ``index_date``, which name the order's case (its patient through the run's
  ``--reid-file`` crosswalk, and the case's ``index_date``).
* ``[[expected_cases]]`` (``case_id``) or ``[[expected_episodes]]`` (``patient_id`` + ``index_date``
  and output columns of ``cases.csv``): every case of the file's patients.
* ``expected_verified_from`` (a separate file only): its audit's ``verified_from`` in metrics.json.

A separate file's ``[extract]`` is the config it runs with (where the site declares its extract starts).

Any order or case of the file's patients that a file does not list must not be in that audit's outputs.
Every audit that can run is checked on every deck file; an audit whose folder cannot run yet (no
models) is skipped with its reason.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import polars as pl
import pytest

from pipeline import audits, deck
from pipeline.deck import deck_files, deck_problems, mine, order_ids, patient_ids, rows_of

FOUND = audits.discover()
FILES = deck_files(FOUND)
PAIRS = [(f, a) for f in FILES for a in FOUND]


@cache
def _outputs(out: str, reid: str, audit_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    return deck.results({"out": out, "reid": reid}, audit_id)


def _results(deck_runs, f, audit_id: str):
    run = deck.run_of(deck_runs["runs"], f)
    if run is None:
        pytest.skip(f"{f.id} runs on its own input, for audit {f.audit}, which cannot run yet")
    if f.separate and not (Path(run["out"]) / audit_id).is_dir():
        # a separate input may lack a table another audit requires: that audit is skipped, with a line in the log
        assert f"{audit_id}" in run["stderr"] and "skip" in run["stderr"].lower(), run["stderr"][-2000:]
    return _outputs(str(run["out"]), str(run["reid"]), audit_id)


@pytest.mark.parametrize(("f", "audit"), PAIRS, ids=[f"{a.id}:{f.id}" for f, a in PAIRS])
def test_deck_file(deck_runs, f, audit):
    if not audit.runnable:
        pytest.skip(f"audit {audit.id} cannot run yet: {audit.problem}")
    orders, cases = _results(deck_runs, f, audit.id)
    problems = deck_problems(orders, cases, f, audit.id)
    assert not problems, f"{audit.id} on deck {f.id}: {f.case['description']}\n  " + "\n  ".join(problems)


VERIFIED = [f for f in FILES if "expected_verified_from" in f.case]


@pytest.mark.parametrize("f", VERIFIED, ids=[f.id for f in VERIFIED])
def test_deck_file_verified_from(deck_runs, f):
    """A separate file's ``expected_verified_from``: the first site-local date whose units' look-back lies within the
    data held, as its audit's metrics.json (and every row of its feed) says it; it follows from where the file's
    diagnoses are held from (its [extract] data_since when it declares one, else half the busiest month)."""
    assert f.separate, f"{f.id}: expected_verified_from is the file's own input's; set separate_input = true"
    audit = deck_runs["audits"][f.audit]
    if not audit.runnable:
        pytest.skip(f"audit {audit.id} cannot run yet: {audit.problem}")
    folder = Path(deck_runs["runs"][f.id]["out"]) / f.audit
    said = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["verified_from"]
    assert said == f.case["expected_verified_from"], f"{f.id}: {f.case['description']}"


@pytest.mark.parametrize("audit", FOUND, ids=[a.id for a in FOUND])
def test_no_order_outside_the_decks(deck_runs, audit):
    if not audit.runnable:
        pytest.skip(f"audit {audit.id} cannot run yet: {audit.problem}")
    run = deck_runs["runs"]["combined"]
    orders, _ = _outputs(str(run["out"]), str(run["reid"]), audit.id)
    every = set().union(*(order_ids(f.case) for f in FILES if not f.separate))
    stray = sorted(set(orders["order_id"]) - every)
    assert not stray, f"{audit.id}/audited_orders.csv lists orders that are in no deck file: {stray}"


@pytest.mark.parametrize("audit", FOUND, ids=[a.id for a in FOUND])
def test_every_rule_is_fired_by_the_deck(audit):
    """Every rule of every audit's registry is the expected reason of some deck order."""
    registry = [r["reason_code"] for r in audits.check_rules(audit)] if audit.rules_csv.is_file() else []
    carried = {
        code
        for f in FILES
        for e in rows_of(f.case, "expected_orders")
        if mine(e, f, audit.id)
        for field in ("reasons", "secondary_reasons")
        for code in e.get(field, "").split("|")
        if code
    }
    unfired = [code for code in registry if code not in carried]
    assert not unfired, f"rules of {audit.id} that no deck order expects (add a deck case that fires each): {unfired}"
    unknown = sorted(carried - set(registry))
    assert not unknown, f"deck orders of {audit.id} expect reason codes its registry lacks: {unknown}"


@pytest.mark.parametrize("audit", FOUND, ids=[a.id for a in FOUND])
def test_no_raw_patient_id_in_outputs(deck_runs, audit):
    if not audit.runnable:
        pytest.skip(f"audit {audit.id} cannot run yet: {audit.problem}")
    folder = Path(deck_runs["runs"]["combined"]["out"]) / audit.id
    every = sorted(set().union(*(patient_ids(f.case) for f in FILES)), key=len, reverse=True)
    for name in ("audited_orders.csv", "cases.csv", "attrition.csv", "metrics.csv", "report.html"):
        text = (folder / name).read_text(encoding="utf-8")
        leaked = [p for p in every if p in text]
        assert not leaked, f"{audit.id}/{name} shows raw patient ids {leaked[:5]}; patients appear only as patient_key"


@pytest.mark.parametrize("audit", FOUND, ids=[a.id for a in FOUND])
def test_attrition_lists_the_reasons_rows_in_rule_order(deck_runs, audit):
    """attrition.csv and the report's attrition table list the exclusion rows of the audit's reasons in its rules.csv
    order, not by name (the CSF-leak audit's 'Excluded: outside_window' came before red_flag_indication, listed
    ahead of it)."""
    if not audit.runnable:
        pytest.skip(f"audit {audit.id} cannot run yet: {audit.problem}")
    folder = Path(deck_runs["runs"]["combined"]["out"]) / audit.id
    rules = audits.check_rules(audit)
    in_rule_order = [r["reason_code"] for r in rules if r["verdict"] in ("excluded", "not_evaluable")]
    steps = pl.read_csv(folder / "attrition.csv", infer_schema=False)["step"].to_list()
    listed = [s.split(": ", 1)[1] for s in steps if s.startswith(("Excluded: ", "Not evaluable: "))]
    assert listed == in_rule_order
    html = (folder / "report.html").read_text(encoding="utf-8")
    labels = {r["reason_code"]: r["label"] for r in rules}
    shown = [
        html.index(f"− {'Excluded' if r['verdict'] == 'excluded' else 'Not evaluable'}: {labels[r['reason_code']]}<")
        for r in rules
        if r["verdict"] in ("excluded", "not_evaluable")
    ]
    assert shown == sorted(shown), "the report's attrition table lists the reasons out of rule order"
