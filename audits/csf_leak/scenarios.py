"""Generator scenarios of the CSF-leak audit: one hand-written timeline per path through the rules, with its truth.

Each scenario lists the procedures, diagnoses and orders of one patient relative to the index
procedure, and the verdict and reasons DESIGN.md gives each order (None: not listed). Its patients
live inside the generated population (pipeline/synth/population_scenarios.py: the ``population_*``
hook), drawn from the population's random stream; the truth is written as ground_truth_orders.csv and
ground_truth_cases.csv. The background population holds no leak evidence (no leak diagnosis, no blood
patch 62273, no leak indication code), so none of its patients is a case and the truth stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.synth.columns import H, to_utc_seconds
from pipeline.synth.population_scenarios import PopulationContext, PopulationRows, Truth

DAY = 86400
# Leak work-ups at case density 1: half a procedure per patient, 55% of them lumbar index procedures,
# 1.5% of those a leak work-up (about 0.2% of orders audited).
PROCEDURES_PER_PATIENT = 0.5
INDEX_SHARE = 0.55
WORKUP_SHARE = 0.015
NONCASES_PER_PATIENT = 0.001
CASE_INDEX_CODES = ["62322", "62323", "64483", "62270", "62328", "62272", "64493"]  # no intrathecal injections
# a work-up's orders come from one of these departments (one clinician per patient's work-up)
CASE_ORDER_DEPARTMENTS = ["neurology", "pain_management", "emergency", "primary_care", "anesthesiology"]
EVIDENCE_INDICATION = "G97.1|R51.9"  # orders of a scenario whose only leak evidence is on its orders
PLAIN_INDICATION = "R51.9|M54.50"

# The site's local codes the scenarios order (the generator writes them into local_code_map.csv, as
# examples/local_code_map.csv has them).
LOCAL_CODE_MAP = (
    "LOCAL,LOC-DSM,dsm,XR,CTL,intrathecal,Digital subtraction myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-CTMYELO,ct_myelography,CT,CTL,intrathecal,Conventional CT myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-DCTM,ct_myelography,CT,CTL,intrathecal,Dynamic CT myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-MRMYELO,mr_myelography,MR,CTL,intrathecal,MR myelography with intrathecal gadolinium (off-label),2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    'LOCAL,LOC-MRSPINE-WWO,mri_spine,MR,CTL,without_and_with,"Local complete-spine MRI protocol, without and with IV contrast",2000-01-01,,example only: replace with your site\'s exam code master\n'  # noqa: E501
)

# Text of every code the scenarios use (the generator's tables must agree where they hold the code).
NAMES = {
    "procedures": {"62273": "Epidural blood patch"},
    "orders": {
        "72141": "MRI cervical spine without contrast",
        "72142": "MRI cervical spine with contrast",
        "72156": "MRI cervical spine without and with contrast",
        "72146": "MRI thoracic spine without contrast",
        "72147": "MRI thoracic spine with contrast",
        "72157": "MRI thoracic spine without and with contrast",
        "72148": "MRI lumbar spine without contrast",
        "72149": "MRI lumbar spine with contrast",
        "72158": "MRI lumbar spine without and with contrast",
        "70553": "MRI brain without and with contrast",
        "70450": "CT head without contrast",
        "72131": "CT lumbar spine without contrast",
        "72132": "CT lumbar spine with contrast",
        "62284": "Injection for myelography and/or CT",
        "62305": "Myelography 2+ regions, injection and imaging",
        "78630": "Radionuclide cisternography",
        "30855-1": "MR C+T+L spine without and with IV contrast",
        "LOC-MRSPINE-WWO": "MRI complete spine without and with contrast (local)",
        "LOC-CTMYELO": "CT myelography (local)",
        "LOC-DCTM": "Dynamic CT myelography (local)",
        "LOC-MRMYELO": "MR myelography intrathecal gadolinium (local)",
        "LOC-DSM": "Digital subtraction myelography (local)",
        "LOC-UNKNOWN-7": "Spine special study (local)",
    },
    "indications": {
        "G97.1|R51.9": "positional headache after lumbar puncture",
        "R51.9|M54.50": "headache; back pain history",
        "G06.1": "suspected spinal epidural abscess",
        "G06.1|M54.50": "suspected epidural abscess; back pain",
    },
}


@dataclass(frozen=True)
class Ord:
    """An order of a scenario: hours after the index (absolute), expected verdict/reasons."""

    code: str
    h: float
    verdict: str | None = None  # None: the audit must not list it
    reasons: str = ""
    j: bool = True  # add the instance's jitter (days 0-2 + minutes 0-119)
    status: str = "completed"
    ind: str | None = None  # indication codes; None: scenario default
    missing: bool = False
    case: str = "idx"  # label of the case procedure it is audited against


@dataclass(frozen=True)
class P:
    label: str
    code: str | None  # None: a random lumbar index code
    h: float = 0.0


@dataclass(frozen=True)
class D:
    code: str
    h: float
    date_only: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: float
    orders: tuple
    procs: tuple = (P("idx", None),)
    dx: tuple = (D("G97.1", 30),)
    cases: tuple = ("idx",)  # () for a not-a-case scenario
    evidence_in_orders: bool = False
    age: str = "adult"  # adult | teen | unknown
    timing: str = "random"  # random | dst_spring | dst_fall | dst_fall_amb
    note: str = ""


A = ("appropriate", "mri_complete_spine_wwo")


def wwo(h, verdict="appropriate", reasons="mri_complete_spine_wwo", j=True, step_min=(0, 2, 5), case="idx", **kw):
    return tuple(
        Ord(c, h + m / 60, verdict, reasons, j=j, case=case, **kw)
        for c, m in zip(("72156", "72157", "72158"), step_min, strict=True)
    )


def _exact(h0, verdict, reasons):
    # C at h0, T one minute later, L two minutes later; no jitter
    return tuple(Ord(c, h0 + k / 60, verdict, reasons, j=False) for k, c in enumerate(("72156", "72157", "72158")))


NC = ()  # not-a-case marker
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("appropriate_complete_spine", 45, wwo(96)),
    Scenario(
        "evidence_order_indication",
        6,
        wwo(96),
        dx=(),
        evidence_in_orders=True,
        note="leak evidence only from G97.1 on the imaging orders",
    ),
    Scenario(
        "evidence_blood_patch",
        4,
        wwo(96),
        procs=(P("idx", None), P("patch", "62273", 40)),
        dx=(),
        note="leak evidence only from an epidural blood patch 62273",
    ),
    Scenario(
        "evidence_dx_date_only",
        1,
        wwo(96),
        dx=(D("G97.0", 0, date_only=True),),
        note="leak diagnosis recorded as a bare date on the index's local date",
    ),
    Scenario("loinc_complete_spine", 3, (Ord("30855-1", 96, *A),)),
    Scenario("local_complete_spine", 3, (Ord("LOC-MRSPINE-WWO", 96, *A),)),
    Scenario(
        "complete_plus_brain",
        8,
        wwo(96) + (Ord("70553", 96 + 10 / 60, "appropriate", "brain_mri_companion"),),
    ),
    Scenario("split_episode_30min", 3, wwo(96, step_min=(0, 15, 30))),
    Scenario("split_episode_20h", 2, wwo(96, step_min=(0, 10, 20 * 60))),
    Scenario(
        "chained_not_episode",
        1,
        tuple(Ord(c, 96 + k * 20, "inappropriate", "wrong_region") for k, c in enumerate(("72156", "72157", "72158"))),
        note="C, T+20h, L+40h: anchored episodes split them, no complete coverage",
    ),
    Scenario("exactly_72h", 1, _exact(72, *A)),
    Scenario(
        "premature_71h59m",
        1,
        tuple(
            Ord(c, 71 + 59 / 60 + s / 3600, "inappropriate", "premature", j=False)
            for c, s in (("72156", 0), ("72157", 20), ("72158", 40))
        ),
    ),
    Scenario("premature_complete", 2, wwo(30, "inappropriate", "premature", j=False)),
    Scenario("contrast_only", 2, (Ord("72149", 100, "inappropriate", "contrast_only|wrong_region"),)),
    Scenario(
        "contrast_only_premature",
        1,
        (Ord("72149", 30, "inappropriate", "premature|contrast_only|wrong_region", j=False),),
    ),
    Scenario(
        "contrast_only_complete",
        1,
        tuple(Ord(c, 96 + k / 30, "inappropriate", "contrast_only") for k, c in enumerate(("72142", "72147", "72149"))),
    ),
    Scenario("wrong_region", 3, (Ord("72158", 96, "inappropriate", "wrong_region"),)),
    Scenario(
        "wrong_region_two_regions",
        1,
        (
            Ord("72156", 96, "inappropriate", "wrong_region"),
            Ord("72158", 96.05, "inappropriate", "wrong_region"),
        ),
    ),
    Scenario(
        "noncontrast_complete",
        2,
        tuple(Ord(c, 96 + k / 30, "review", "noncontrast_only") for k, c in enumerate(("72141", "72146", "72148"))),
    ),
    Scenario("ct_head_first", 2, (Ord("70450", 96, "inappropriate", "ct_initial"),)),
    Scenario("ct_spine_first", 1, (Ord("72131", 96, "inappropriate", "ct_initial"),)),
    Scenario("ct_myelography_local", 1, (Ord("LOC-CTMYELO", 120, "inappropriate", "ct_myelography_initial"),)),
    Scenario(
        "ct_myelography_derived",
        1,
        (
            Ord("62284", 120, "inappropriate", "ct_myelography_initial"),
            Ord("72132", 120.75, "inappropriate", "ct_myelography_initial"),
        ),
        note="62284 order and CT lumbar with contrast 45 min later, same local date",
    ),
    Scenario(
        "ct_myelography_not_same_day",
        1,
        (Ord("62284", 120, "review", "dsm_initial"), Ord("72132", 150, "inappropriate", "ct_initial")),
        note="62284 and CT with contrast on different local dates: conventional myelography + plain CT",
    ),
    Scenario(
        "index_myelogram_same_day_ct",
        1,
        (Ord("72132", 5, "inappropriate", "premature|ct_initial", j=False),),
        procs=(P("idx", "62284"),),
        note="the index itself is 62284: it does not make the same-day CT a CT myelography",
    ),
    Scenario("cisternography_first", 1, (Ord("78630", 96, "inappropriate", "cisternography_initial"),)),
    Scenario("mr_myelography_first", 1, (Ord("LOC-MRMYELO", 96, "inappropriate", "mr_myelography_initial"),)),
    Scenario("dsm_first", 1, (Ord("LOC-DSM", 96, "review", "dsm_initial"),)),
    Scenario("conventional_myelography_first", 1, (Ord("62305", 96, "review", "dsm_initial"),)),
    Scenario("brain_only", 3, (Ord("70553", 96, "review", "brain_only_initial"),)),
    Scenario("brain_then_complete_spine", 1, (Ord("70553", 96, "review", "brain_only_initial"),) + wwo(144)),
    Scenario("subsequent_ctm", 2, wwo(96) + (Ord("LOC-DCTM", 216, "appropriate", "subsequent_after_mri"),)),
    Scenario(
        "subsequent_mixed",
        1,
        wwo(96)
        + (
            Ord("LOC-DSM", 216, "appropriate", "subsequent_after_mri"),
            Ord("72149", 288, "inappropriate", "contrast_only"),
            Ord("70450", 360, "appropriate", "subsequent_after_mri"),
        ),
    ),
    Scenario(
        "premature_complete_then_ctm",
        1,
        wwo(30, "inappropriate", "premature", j=False) + (Ord("LOC-DCTM", 216, "appropriate", "subsequent_after_mri"),),
        note="the premature complete-spine episode is still the first complete-spine episode",
    ),
    Scenario("red_flag", 2, wwo(96) + (Ord("72158", 240, "excluded", "red_flag_indication", ind="G06.1"),)),
    Scenario("cancelled", 2, (Ord("72149", 30, "excluded", "cancelled", j=False, status="cancelled"),) + wwo(96)),
    Scenario(
        "cancelled_red_flag",
        1,
        wwo(96)
        + (
            Ord(
                "72158",
                120,
                "excluded",
                "cancelled|red_flag_indication",
                status="cancelled",
                ind="G06.1|M54.50",
            ),
        ),
    ),
    Scenario("unmapped", 2, (Ord("LOC-UNKNOWN-7", 30, "not_evaluable", "unmapped_code", j=False),) + wwo(96)),
    Scenario(
        "missing_time",
        2,
        (
            Ord("72158", 50, "not_evaluable", "missing_time", missing=True),
            Ord("70553", 60, "excluded", "cancelled", missing=True, status="cancelled"),
        )
        + wwo(96),
    ),
    Scenario(
        "outside_window",
        2,
        (Ord("70450", -240, "excluded", "outside_window", j=False),)
        + wwo(96)
        + (Ord("72158", 960, "excluded", "outside_window"), Ord("70553", 1680, None)),
    ),
    Scenario("dst_spring_72h", 1, _exact(72, *A), timing="dst_spring"),
    Scenario("dst_spring_71h30", 1, _exact(71.5, "inappropriate", "premature"), timing="dst_spring"),
    Scenario("dst_fall_72h", 1, _exact(72, *A), timing="dst_fall"),
    Scenario("dst_fall_72h30", 1, _exact(72.5, *A), timing="dst_fall"),
    Scenario("dst_fall_71h30", 1, _exact(71.5, "inappropriate", "premature"), timing="dst_fall"),
    Scenario(
        "dst_fall_ambiguous_hour",
        1,
        tuple(Ord(c, 100 + m / 60, *A, j=False) for c, m in (("72156", -10), ("72157", 0), ("72158", 10))),
        timing="dst_fall_amb",
        note="orders in the repeated fall-back hour (second pass), written with offset",
    ),
    Scenario(
        "two_index",
        1,
        (Ord("70450", 48, "excluded", "outside_window", j=False, case="idx2"),) + wwo(216, case="idx2"),
        procs=(P("idx", None), P("idx2", None, 120)),
        dx=(D("G97.1", 144),),
        cases=("idx2",),
    ),
    Scenario(
        "two_cases_overlap",
        1,
        wwo(96) + wwo(576, case="idx2") + (Ord("70450", 624, "appropriate", "subsequent_after_mri", case="idx2"),),
        procs=(P("idx", None), P("idx2", None, 480)),
        dx=(D("G97.1", 24), D("G97.1", 504)),
        cases=("idx", "idx2"),
        note="second case's window overlaps the first: the most recent index wins",
    ),
    # ---- not cases: nothing of theirs is in the ground truth
    Scenario("nc_age16", 2, wwo(96, None, ""), age="teen", cases=NC),
    Scenario(
        "nc_cervical_index",
        2,
        (Ord("72156", 96, None), Ord("70553", 96.1, None)),
        procs=(P("idx", "62321"),),
        cases=NC,
    ),
    Scenario("nc_late_evidence", 2, wwo(500, None, ""), dx=(D("G97.1", 480),), cases=NC),
    Scenario("nc_no_evidence", 2, (Ord("70450", 30, None, j=False),) + wwo(96, None, ""), dx=(), cases=NC),
    Scenario("nc_evidence_before_index", 1, wwo(96, None, ""), dx=(D("G97.1", -72),), cases=NC),
    Scenario("nc_unknown_age", 1, wwo(96, None, ""), age="unknown", cases=NC),
)
SCENARIO_NAMES = [s.name for s in SCENARIOS]


# ----------------------------------------------------------------------------- the generator's hook


def population_instances(rng: np.random.Generator, patients: int, case_density: float) -> dict[str, int]:
    """Patients per scenario: every scenario at least once (from 2,000 patients), the rest by weight;
    ``case_density`` multiplies the leak work-ups (5: about 1.2% of orders audited)."""
    case_scen = [s for s in SCENARIOS if s.cases]
    nc_scen = [s for s in SCENARIOS if not s.cases]
    n = patients
    n_case_target = max(len(case_scen), int(round(n * PROCEDURES_PER_PATIENT * INDEX_SHARE * WORKUP_SHARE * case_density)))
    n_nc_target = max(len(nc_scen), int(round(n * NONCASES_PER_PATIENT)))
    guarantee = n >= 2000 or (len(SCENARIOS) * 4 <= n)
    counts = {}
    for group, target in ((case_scen, n_case_target), (nc_scen, n_nc_target)):
        w = np.array([s.weight for s in group], dtype=float)
        if guarantee:
            c = rng.multinomial(target - len(group), w / w.sum()) + 1
        else:
            c = rng.multinomial(max(0, min(target, n // 20)), w / w.sum())
        for s, k in zip(group, c, strict=True):
            counts[s.name] = int(k)
    return counts


def _index_times(ctx: PopulationContext, s: Scenario, k: int) -> np.ndarray:
    """UTC seconds of k index procedures: a random weekday-hours time inside the months (away from their
    edges when they are long enough), or a day or two before a DST change for the DST scenarios."""
    rng, tz = ctx.rng, ctx.site_timezone
    span = ctx.end_local - ctx.start_local
    lo = ctx.start_local + 31 * DAY if span > 120 * DAY else ctx.start_local
    hi = ctx.end_local - 75 * DAY if span > 120 * DAY else max(ctx.start_local + DAY, ctx.end_local - 5 * DAY)
    transitions = {"dst_spring": ctx.spring, "dst_fall": ctx.fall, "dst_fall_amb": ctx.fall}
    if s.timing == "random" or not transitions[s.timing]:
        # a zone without a change of offset in the months (Asia/Kolkata, Asia/Tokyo: most of the world) has no DST
        # night to place the DST cases in; their hours after the index, and so their verdicts, hold at any time
        # (they crashed the generator: no transition to pick from)
        local_day = rng.integers(lo, hi, k) // DAY * DAY  # local midnight (naive seconds)
        return to_utc_seconds(local_day + rng.integers(7 * 60, 14 * 60, k) * 60, tz)
    if s.timing in ("dst_spring", "dst_fall"):
        tr = np.array(ctx.spring if s.timing == "dst_spring" else ctx.fall, dtype=np.int64)
        tr_pick = tr[rng.integers(0, tr.size, k)]
        # local date of the transition (naive seconds): convert UTC -> local wall clock
        loc_tr = (
            pl.from_epoch(pl.Series(tr_pick), "s")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(tz)
            .dt.replace_time_zone(None)
            .dt.epoch("s")
            .to_numpy()
        )
        loc = (loc_tr // DAY - rng.integers(1, 3, k)) * DAY + rng.integers(7 * 60, 14 * 60, k) * 60
        return to_utc_seconds(loc, tz)
    # dst_fall_amb: orders in the second pass of the repeated hour
    tr = np.array(ctx.fall, dtype=np.int64)
    return tr[rng.integers(0, tr.size, k)] + 20 * 60 - 100 * H


def population_rows(ctx: PopulationContext, patients: np.ndarray, instances: dict[str, int]) -> PopulationRows:
    """Every scenario's patients (``patients``, in catalogue order) as rows and truth, drawn from ``ctx.rng``."""
    rng = ctx.rng
    rows = PopulationRows(names=NAMES)
    gt_orders = []  # (order keys, case procedure keys, verdict, reasons)
    gt_cases = []  # (procedure keys, patients, scenario)
    examples = {}
    pos = 0
    for s in SCENARIOS:
        k = instances[s.name]
        if k == 0:
            continue
        pats = patients[pos : pos + k]
        pos += k
        t0 = _index_times(ctx, s, k)
        jit = rng.integers(0, 3, k) * DAY + rng.integers(0, 120, k) * 60
        years = rng.uniform(16.2, 16.8, k) if s.age == "teen" else rng.uniform(19, 85, k)
        ctx.birth[pats] = t0 // DAY - (years * 365.25).astype(np.int64)
        if s.age == "unknown":
            ctx.birth_known[pats] = False
        if not s.cases:
            examples[s.name] = pats[:3]
        proc_keys = {}
        for p in s.procs:
            code = np.array(CASE_INDEX_CODES)[rng.integers(0, len(CASE_INDEX_CODES), k)] if p.code is None else np.full(k, p.code)
            proc_keys[p.label] = ctx.procedure_keys(k)
            rows.add("procedures", pat=pats, t=t0 + int(round(p.h * H)), code=code, key=proc_keys[p.label])
        for lab in s.cases:
            gt_cases.append((proc_keys[lab], pats, s.name))
        for d in s.dx:
            at = t0 + int(round(d.h * H))
            rows.add("diagnoses", pat=pats, t=at, code=np.full(k, d.code), date_only=np.full(k, d.date_only))
        default_ind = EVIDENCE_INDICATION if s.evidence_in_orders else PLAIN_INDICATION
        # one ordering clinician and department per patient's work-up: a complete spine ordered as
        # C + T + L within minutes comes from one person, as it does in a hospital
        pat_dept = np.array(CASE_ORDER_DEPARTMENTS)[rng.integers(0, len(CASE_ORDER_DEPARTMENTS), k)]
        pat_prov = rng.integers(1, ctx.n_order_providers + 1, k)
        for o in s.orders:
            keys = ctx.order_keys(k)
            rows.add(
                "orders",
                pat=pats,
                t=t0 + int(round(o.h * H)) + (jit if o.j else 0),
                code=np.full(k, o.code),
                status=np.full(k, o.status),
                ind=np.full(k, default_ind if o.ind is None else o.ind),
                missing=np.full(k, o.missing),
                dept=pat_dept,
                prov=pat_prov,
                key=keys,
            )
            if o.verdict is not None:
                gt_orders.append((keys, proc_keys[o.case], o.verdict, o.reasons))
    rows.truth = _truth(gt_orders, gt_cases)
    rows.summary = {"instances": instances, "examples": examples}
    return rows


def _truth(gt_orders: list, gt_cases: list) -> dict[str, Truth]:
    """The audited orders (verdict and reasons) and the cases (with their scenario), keyed by row keys."""

    def keys(parts) -> pl.Series:
        return pl.Series(np.concatenate(parts) if parts else np.zeros(0, np.int64), dtype=pl.Int64)

    def repeated(items) -> pl.Series:
        return pl.Series([v for k, v in items for _ in range(k.size)], dtype=pl.String)

    orders = pl.DataFrame(
        {
            "order_id": keys([k for k, _, _, _ in gt_orders]),
            "case_id": keys([c for _, c, _, _ in gt_orders]),
            "verdict": repeated([(k, v) for k, _, v, _ in gt_orders]),
            "reasons": repeated([(k, r) for k, _, _, r in gt_orders]),
        }
    )
    cases = pl.DataFrame(
        {
            "case_id": keys([k for k, _, _ in gt_cases]),
            "patient_id": keys([p for _, p, _ in gt_cases]),
            "scenario": repeated([(k, s) for k, _, s in gt_cases]),
        }
    )
    return {
        "ground_truth_orders.csv": Truth(orders, {"order_id": "order", "case_id": "procedure"}, "order_id"),
        "ground_truth_cases.csv": Truth(cases, {"case_id": "procedure", "patient_id": "patient"}, "case_id"),
    }


def population_summary(rows: PopulationRows, truth: dict[str, pl.DataFrame], patient_ids) -> dict:
    """synth.json's verdict counts, scenario instances and a few not-a-case patients to look at."""
    gt = truth["ground_truth_orders.csv"]
    instances = rows.summary["instances"]
    return {
        "verdicts": dict(sorted(gt.group_by("verdict").len().iter_rows())) if gt.height else {},
        "scenarios": {s.name: {"instances": instances[s.name], "is_case": bool(s.cases), "note": s.note} for s in SCENARIOS},
        "noncase_example_patients": {name: patient_ids(p) for name, p in rows.summary["examples"].items()},
    }
