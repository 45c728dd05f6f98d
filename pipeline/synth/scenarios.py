"""The scenario catalogue: one hand-written timeline per path through the rules, with its ground truth.

Each scenario lists the procedures, diagnoses and orders of one patient relative to the index
procedure, and the verdict and reasons the audit's DESIGN.md gives each order (None: not listed).
"""

from __future__ import annotations

from dataclasses import dataclass

H = 3600  # seconds per hour


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
