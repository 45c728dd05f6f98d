"""Deterministic synthetic extract with exact ground truth.

`generate()` writes the three input tables (procedures, imaging_orders, diagnoses),
the site's local code map, and the ground truth of the audit (which orders the audit
must list, with verdict and reasons) for a synthetic population.

How the truth stays exact: the population is split in two.

* Background patients get random procedures, orders and diagnoses drawn without any
  leak evidence (no leak diagnosis, no blood patch 62273, no leak indication code), so
  none of them is ever a case and none of their orders is audited.
* Scenario patients each play one entry of `SCENARIOS`: a hand-written timeline of
  procedures, diagnoses and orders relative to the index procedure, with the verdict
  and reasons that docs/DESIGN.md gives each order. They also receive random
  non-neuro orders (CPT codes not in the imaging map, or the local out_of_scope code),
  which the audit never lists.

Everything is built as numpy columns (loops run over the scenario catalogue only),
then sorted by time, numbered, and written in chunks, so 2M patients / 10M orders fit
in about a minute and a few GB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

# ----------------------------------------------------------------------------- codes

# Same content as examples/local_code_map.csv (the pipeline reads local_code_map.csv from the input folder).
LOCAL_CODE_MAP_CSV = (
    "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source\n"
    "LOCAL,LOC-DSM,dsm,XR,CTL,intrathecal,Digital subtraction myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-CTMYELO,ct_myelography,CT,CTL,intrathecal,Conventional CT myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-DCTM,ct_myelography,CT,CTL,intrathecal,Dynamic CT myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-MRMYELO,mr_myelography,MR,CTL,intrathecal,MR myelography with intrathecal gadolinium (off-label),2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    'LOCAL,LOC-MRSPINE-WWO,mri_spine,MR,CTL,without_and_with,"Local complete-spine MRI protocol, without and with IV contrast",2000-01-01,,example only: replace with your site\'s exam code master\n'  # noqa: E501
    "LOCAL,LOC-XR-CHEST,out_of_scope,XR,,,Chest radiograph (declared non-neuro so it is not reported as unmapped),2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
)

ORDER_NAMES = {
    # non-neuro (not audited)
    "71046": "XR chest 2 views",
    "74177": "CT abdomen and pelvis with contrast",
    "73721": "MRI knee without contrast",
    "72100": "XR lumbar spine 2-3 views",
    "76700": "US abdomen complete",
    "LOC-XR-CHEST": "XR chest (local)",
    "71250": "CT chest without contrast",
    "73030": "XR shoulder",
    # neuro
    "72141": "MRI cervical spine without contrast",
    "72142": "MRI cervical spine with contrast",
    "72156": "MRI cervical spine without and with contrast",
    "72146": "MRI thoracic spine without contrast",
    "72147": "MRI thoracic spine with contrast",
    "72157": "MRI thoracic spine without and with contrast",
    "72148": "MRI lumbar spine without contrast",
    "72149": "MRI lumbar spine with contrast",
    "72158": "MRI lumbar spine without and with contrast",
    "70551": "MRI brain without contrast",
    "70552": "MRI brain with contrast",
    "70553": "MRI brain without and with contrast",
    "70450": "CT head without contrast",
    "72131": "CT lumbar spine without contrast",
    "72132": "CT lumbar spine with contrast",
    "62284": "Injection for myelography and/or CT",
    "62305": "Myelography 2+ regions, injection and imaging",
    "78630": "Radionuclide cisternography",
    "30855-1": "MR C+T+L spine without and with IV contrast",
    "30854-4": "MR C+T+L spine without contrast",
    "LOC-MRSPINE-WWO": "MRI complete spine without and with contrast (local)",
    "LOC-CTMYELO": "CT myelography (local)",
    "LOC-DCTM": "Dynamic CT myelography (local)",
    "LOC-MRMYELO": "MR myelography intrathecal gadolinium (local)",
    "LOC-DSM": "Digital subtraction myelography (local)",
    "LOC-UNKNOWN-7": "Spine special study (local)",
}
ORDER_CODES = list(ORDER_NAMES)
OCODE = {c: i for i, c in enumerate(ORDER_CODES)}

BG_NONNEURO = (
    ["71046", "74177", "73721", "72100", "76700", "LOC-XR-CHEST", "71250", "73030"],
    [0.26, 0.12, 0.10, 0.14, 0.12, 0.08, 0.10, 0.08],
)
BG_NEURO = (
    ["72148", "72158", "72141", "72156", "70551", "70553", "70450", "72131", "72149"],
    [0.25, 0.10, 0.10, 0.05, 0.15, 0.12, 0.15, 0.04, 0.04],
)
NEURO_SHARE = 0.08

PROC_NAMES = {
    "62322": "Interlaminar epidural injection, lumbar/sacral",
    "62323": "Interlaminar epidural injection, lumbar/sacral, imaging guided",
    "64483": "Transforaminal epidural injection, lumbar/sacral",
    "64493": "Facet joint injection, lumbar/sacral",
    "62270": "Diagnostic lumbar puncture",
    "62328": "Diagnostic lumbar puncture, imaging guided",
    "62272": "Therapeutic spinal puncture",
    "62284": "Injection for myelography and/or CT",
    "20610": "Arthrocentesis/injection, major joint",
    "62321": "Interlaminar epidural injection, cervical/thoracic, imaging guided",
    "64490": "Facet joint injection, cervical/thoracic",
    "20552": "Trigger point injection",
    "27096": "Sacroiliac joint injection",
    "64479": "Transforaminal epidural injection, cervical/thoracic",
    "62273": "Epidural blood patch",
}
PROC_CODES = list(PROC_NAMES)
PCODE = {c: i for i, c in enumerate(PROC_CODES)}
CASE_INDEX_CODES = [
    "62322",
    "62323",
    "64483",
    "62270",
    "62328",
    "62272",
    "64493",
]  # no intrathecal injections
BG_PROCS = (
    [
        "62322",
        "62323",
        "64483",
        "64493",
        "62270",
        "62328",
        "62272",
        "62284",
        "20610",
        "62321",
        "64490",
        "20552",
        "27096",
        "64479",
    ],
    [0.12, 0.10, 0.12, 0.06, 0.08, 0.04, 0.02, 0.01, 0.15, 0.10, 0.07, 0.06, 0.04, 0.03],
)
N_BG_INDEX_SHARE = 0.55
PROC_DEPTS = ["pain_management", "anesthesiology", "interventional_radiology", "neurology", "emergency"]
ORDER_DEPTS = [
    "emergency",
    "primary_care",
    "neurology",
    "orthopedics",
    "pain_management",
    "anesthesiology",
    "neurosurgery",
    "internal_medicine",
]
CASE_ORDER_DEPTS = [2, 4, 0, 1, 5]
SITES = ["MAIN_HOSPITAL", "NORTH_CLINIC"]
STATUSES = ["ordered", "scheduled", "completed", "cancelled"]
PRIORITIES = ["routine", "urgent", "stat"]

# indication code lists (index into INDICATIONS); text is derived
INDICATIONS = [
    ("", ""),
    ("M54.50", "low back pain"),
    ("R51.9", "headache"),
    ("M54.16", "lumbar radiculopathy"),
    ("R10.9", "abdominal pain"),
    ("R05.9", "cough"),
    ("M25.561", "right knee pain"),
    ("S83.511A", "knee injury"),
    ("R51.9|M54.50", "headache; back pain history"),
    ("J18.9", "pneumonia, follow-up"),
    ("G97.1", "post-dural puncture headache"),
    ("G97.1|R51.9", "positional headache after lumbar puncture"),
    ("G06.1", "suspected spinal epidural abscess"),
    ("G06.1|M54.50", "suspected epidural abscess; back pain"),
    ("G83.4", "cauda equina symptoms"),
]
IND = {c: i for i, (c, _) in enumerate(INDICATIONS)}
BG_IND_NONNEURO = (
    [IND[""], IND["R10.9"], IND["R05.9"], IND["M25.561"], IND["S83.511A"], IND["J18.9"], IND["M54.50"]],
    [0.35, 0.15, 0.15, 0.12, 0.05, 0.08, 0.10],
)
BG_IND_NEURO = (
    [IND[""], IND["M54.50"], IND["R51.9"], IND["M54.16"], IND["R51.9|M54.50"], IND["G06.1"], IND["G83.4"]],
    [0.25, 0.25, 0.2, 0.15, 0.1, 0.03, 0.02],
)

BG_DIAGNOSES = (
    [
        "M54.50",
        "M54.16",
        "M51.16",
        "M48.061",
        "I10",
        "E11.9",
        "J45.909",
        "R51.9",
        "F41.1",
        "K21.9",
        "M17.11",
        "Z00.00",
    ],
    [0.14, 0.08, 0.05, 0.04, 0.15, 0.12, 0.06, 0.08, 0.07, 0.08, 0.06, 0.07],
)
LEAK_DX_CODES = ["G97.1", "G97.0", "G96.00", "G96.811", "R51.0", "G97.84"]
LEAK_CODES_ALL = {
    "G97.0",
    "G97.1",
    "G96.00",
    "G96.01",
    "G96.02",
    "G96.08",
    "G96.09",
    "G96.810",
    "G96.811",
    "G96.819",
    "G97.84",
    "R51.0",
}

REGISTRY = [
    "cancelled",
    "red_flag_indication",
    "outside_window",
    "unmapped_code",
    "missing_time",
    "premature",
    "contrast_only",
    "wrong_region",
    "ct_initial",
    "ct_myelography_initial",
    "cisternography_initial",
    "mr_myelography_initial",
    "noncontrast_only",
    "dsm_initial",
    "brain_only_initial",
    "mri_complete_spine_wwo",
    "brain_mri_companion",
    "subsequent_after_mri",
]

# ----------------------------------------------------------------------------- scenarios

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


# ----------------------------------------------------------------------------- helpers


def _to_utc_seconds(local_naive_s: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock seconds since epoch (naive) -> UTC epoch seconds (earliest if ambiguous)."""
    s = pl.Series("t", np.asarray(local_naive_s).astype(np.int64))
    out = pl.from_epoch(s, "s").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.epoch("s")
    if out.null_count():
        raise ValueError("a generated local time falls in a DST gap")
    return out.to_numpy().astype(np.int64)


def _transitions(tz: str, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """UTC instants (hour grid) where the zone's offset goes up (spring) and down (fall) in [lo, hi)."""
    grid = np.arange(lo - lo % H, hi, H, dtype=np.int64)
    if grid.size < 2:
        return [], []
    u = pl.from_epoch(pl.Series(grid), "s").dt.replace_time_zone("UTC")
    loc = u.dt.convert_time_zone(tz).dt.replace_time_zone(None).dt.epoch("s").to_numpy()
    off = loc - grid
    d = np.diff(off)
    spring = grid[1:][d > 0].tolist()
    fall = grid[1:][d < 0].tolist()
    return spring, fall


def _fmt_instants(t: np.ndarray, kind: np.ndarray, missing: np.ndarray | None, tz: str) -> pl.Series:
    """Write UTC seconds as text: kind 0 local naive, 1 local with offset, 2 UTC 'Z', 3 bare local date.

    A local naive time in the second pass of a fall-back hour would be read back as the earlier
    instant (DESIGN.md), so such rows are written with their offset instead."""
    df = pl.DataFrame({"t": t.astype(np.int64), "k": kind.astype(np.int8)})
    utc = pl.from_epoch(pl.col("t"), "s").dt.replace_time_zone("UTC")
    loc = utc.dt.convert_time_zone(tz)
    back = loc.dt.replace_time_zone(None).dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.epoch("s")
    k = pl.when((pl.col("k") == 0) & (back != pl.col("t"))).then(1).otherwise(pl.col("k"))
    out = df.select(
        pl.when(k == 0)
        .then(loc.dt.strftime("%Y-%m-%d %H:%M:%S"))
        .when(k == 1)
        .then(loc.dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
        .when(k == 2)
        .then(utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .otherwise(loc.dt.strftime("%Y-%m-%d"))
        .alias("s")
    )["s"]
    if missing is not None and missing.any():
        out = out.scatter(np.flatnonzero(missing), None)
    return out


def _null_where(series: pl.Series, mask: np.ndarray) -> pl.Series:
    if mask.any():
        return series.scatter(np.flatnonzero(mask), None)
    return series


def _gather(table: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series([t or None for t in table], dtype=pl.String).gather(pl.Series(idx.astype(np.int64)))


def _pick(rng, choices_weights, n):
    c, w = choices_weights
    w = np.asarray(w, dtype=float)
    return rng.choice(len(c), size=n, p=w / w.sum())


class _Writer:
    """Chunked writer for csv or parquet (one file, written in row groups)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.first, self.pq = path, fmt, True, None
        self.fh = open(path, "wb") if fmt == "csv" else None  # noqa: SIM115 (closed in close())

    def write(self, df: pl.DataFrame):
        if self.fmt == "csv":
            df.write_csv(self.fh, include_header=self.first)
        else:
            import pyarrow.parquet as pq

            tbl = df.to_arrow()
            if self.pq is None:
                self.pq = pq.ParquetWriter(str(self.path), tbl.schema)
            self.pq.write_table(tbl)
        self.first = False

    def close(self):
        if self.fh:
            self.fh.close()
        if self.pq:
            self.pq.close()


CHUNK = 1_000_000


# ----------------------------------------------------------------------------- generate


def generate(
    out_dir: Path,
    patients: int,
    months: int,
    seed: int,
    start_month: str = "2024-01",
    fmt: str = "csv",
    site_timezone: str = "America/New_York",
    case_density: float = 1.0,
) -> dict:
    """Write a synthetic extract with its ground truth into out_dir; return the counts summary.

    ``case_density`` multiplies the number of leak work-ups (cases): 1 gives about 0.2% of orders
    audited, 5 about 1.2% (the case-dense benchmark scale, a busy leak clinic).
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    if case_density <= 0:
        raise ValueError(f"case_density must be above 0, got {case_density!r}")
    if patients < 1 or months < 1:
        raise ValueError("patients and months must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tz = site_timezone
    N = int(patients)

    y, m = (int(x) for x in start_month.split("-"))
    ym_end = y * 12 + (m - 1) + months
    start_local = int(np.datetime64(f"{y:04d}-{m:02d}-01", "s").astype(np.int64))
    end_local = int(np.datetime64(f"{ym_end // 12:04d}-{ym_end % 12 + 1:02d}-01", "s").astype(np.int64))
    t_lo, t_hi = (int(x) for x in _to_utc_seconds(np.array([start_local, end_local]), tz))
    day = 86400

    # ---- scenario instance counts
    case_scen = [s for s in SCENARIOS if s.cases]
    nc_scen = [s for s in SCENARIOS if not s.cases]
    n_case_target = max(len(case_scen), int(round(N * 0.5 * N_BG_INDEX_SHARE * 0.015 * case_density)))
    n_nc_target = max(len(nc_scen), int(round(N * 0.001)))
    guarantee = N >= 2000 or (len(SCENARIOS) * 4 <= N)
    counts = {}
    for group, target in ((case_scen, n_case_target), (nc_scen, n_nc_target)):
        w = np.array([s.weight for s in group], dtype=float)
        if guarantee:
            extra = rng.multinomial(target - len(group), w / w.sum())
            c = extra + 1
        else:
            c = rng.multinomial(max(0, min(target, N // 20)), w / w.sum())
        for s, k in zip(group, c, strict=True):
            counts[s.name] = int(k)
    n_scen_pat = sum(counts.values())
    if n_scen_pat > N:
        raise ValueError(f"too few patients ({N}) for the scenario catalogue ({n_scen_pat} needed)")

    perm = rng.permutation(N).astype(np.int64)
    scen_pat_all = perm[:n_scen_pat]
    bg_pat = np.sort(perm[n_scen_pat:])
    del perm

    # ---- per-patient birth dates (days since epoch), most adults, some children
    mid = (t_lo + t_hi) // 2 // day
    age_years = np.where(rng.random(N) < 0.08, rng.uniform(0.5, 17.5, N), rng.uniform(18.5, 90, N))
    birth = (mid - age_years * 365.25).astype(np.int64)
    birth_known = np.ones(N, dtype=bool)

    # ---- DST transitions
    spring, fall = _transitions(tz, t_lo, t_hi)
    if not spring or not fall:
        s2, f2 = _transitions(tz, t_lo, t_lo + 2 * 366 * day)
        spring, fall = spring or s2, fall or f2

    # ---- scenario rows (numpy column lists)
    P_cols = {k: [] for k in ("pat", "t", "code", "key")}
    O_cols = {k: [] for k in ("pat", "t", "code", "status", "ind", "missing", "dept", "prov", "gt")}
    n_order_providers = max(50, N // 400)
    Dg_cols = {k: [] for k in ("pat", "t", "code", "date_only")}
    gt_rows = []  # (order_row_keys, case_proc_keys, verdict, reasons)
    gt_case = []  # (proc_keys, patient_idx, scenario)
    DX_CODES = LEAK_DX_CODES + BG_DIAGNOSES[0]
    DXI = {c: i for i, c in enumerate(DX_CODES)}
    n_proc_s = 0
    n_order_s = 0
    nc_examples = {}
    pos = 0
    span = end_local - start_local
    lo_idx = start_local + 31 * day if span > 120 * day else start_local
    hi_idx = end_local - 75 * day if span > 120 * day else max(start_local + day, end_local - 5 * day)
    for s in SCENARIOS:
        k = counts[s.name]
        if k == 0:
            continue
        pats = scen_pat_all[pos : pos + k]
        pos += k
        # index time
        if s.timing == "random":
            local_day = rng.integers(lo_idx, hi_idx, k) // day * day  # local midnight (naive seconds)
            loc = local_day + rng.integers(7 * 60, 14 * 60, k) * 60
            t0 = _to_utc_seconds(loc, tz)
        elif s.timing in ("dst_spring", "dst_fall"):
            tr = np.array(spring if s.timing == "dst_spring" else fall, dtype=np.int64)
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
            loc = (loc_tr // day - rng.integers(1, 3, k)) * day + rng.integers(7 * 60, 14 * 60, k) * 60
            t0 = _to_utc_seconds(loc, tz)
        else:  # dst_fall_amb: orders in the second pass of the repeated hour
            tr = np.array(fall, dtype=np.int64)
            t0 = tr[rng.integers(0, tr.size, k)] + 20 * 60 - 100 * H
        jit = rng.integers(0, 3, k) * day + rng.integers(0, 120, k) * 60
        if s.age == "teen":
            birth[pats] = t0 // day - (rng.uniform(16.2, 16.8, k) * 365.25).astype(np.int64)
        else:
            birth[pats] = t0 // day - (rng.uniform(19, 85, k) * 365.25).astype(np.int64)
        if s.age == "unknown":
            birth_known[pats] = False
        if not s.cases:
            nc_examples[s.name] = [int(p) + 1 for p in pats[:3]]
        proc_keys = {}
        for p in s.procs:
            code = (
                np.array([PCODE[c] for c in CASE_INDEX_CODES])[rng.integers(0, len(CASE_INDEX_CODES), k)]
                if p.code is None
                else np.full(k, PCODE[p.code])
            )
            keys = np.arange(n_proc_s, n_proc_s + k)
            n_proc_s += k
            proc_keys[p.label] = keys
            P_cols["pat"].append(pats)
            P_cols["t"].append(t0 + int(round(p.h * H)))
            P_cols["code"].append(code)
            P_cols["key"].append(keys)
        for lab in s.cases:
            gt_case.append((proc_keys[lab], pats, s.name))
        for d in s.dx:
            Dg_cols["pat"].append(pats)
            Dg_cols["t"].append(t0 + int(round(d.h * H)))
            Dg_cols["code"].append(np.full(k, DXI[d.code]))
            Dg_cols["date_only"].append(np.full(k, d.date_only))
        default_ind = IND["G97.1|R51.9"] if s.evidence_in_orders else IND["R51.9|M54.50"]
        # one ordering clinician and department per patient's work-up: a complete spine ordered as
        # C + T + L within minutes comes from one person, as it does in a hospital
        pat_dept = np.array(CASE_ORDER_DEPTS)[rng.integers(0, len(CASE_ORDER_DEPTS), k)]
        pat_prov = rng.integers(1, n_order_providers + 1, k)
        for o in s.orders:
            keys = np.arange(n_order_s, n_order_s + k)
            n_order_s += k
            O_cols["pat"].append(pats)
            O_cols["t"].append(t0 + int(round(o.h * H)) + (jit if o.j else 0))
            O_cols["code"].append(np.full(k, OCODE[o.code]))
            O_cols["status"].append(np.full(k, STATUSES.index(o.status)))
            O_cols["ind"].append(np.full(k, default_ind if o.ind is None else IND[o.ind]))
            O_cols["missing"].append(np.full(k, o.missing))
            O_cols["dept"].append(pat_dept)
            O_cols["prov"].append(pat_prov)
            O_cols["gt"].append(keys)
            if o.verdict is not None:
                gt_rows.append((keys, proc_keys[o.case], o.verdict, o.reasons))

    def cat(lst, dtype=np.int64):
        return np.concatenate(lst).astype(dtype) if lst else np.zeros(0, dtype)

    # ---- background procedures
    n_proc_total = int(round(0.5 * N))
    n_bg_p = max(0, n_proc_total - n_proc_s)
    bgp_pat = bg_pat[rng.integers(0, bg_pat.size, n_bg_p)] if bg_pat.size else np.zeros(0, np.int64)
    bg_codes = np.array([PCODE[c] for c in BG_PROCS[0]])
    bgp_code = bg_codes[_pick(rng, BG_PROCS, n_bg_p)]
    bgp_t = rng.integers(t_lo, t_hi, n_bg_p)
    pr_pat = np.concatenate([cat(P_cols["pat"]), bgp_pat])
    pr_t = np.concatenate([cat(P_cols["t"]), bgp_t])
    pr_code = np.concatenate([cat(P_cols["code"]), bgp_code])
    pr_key = np.concatenate([cat(P_cols["key"]), np.full(n_bg_p, -1)])
    n_pr = pr_pat.size

    index_codes = {PCODE[c] for c in BG_PROCS[0][:8]}
    has_index = np.zeros(N, dtype=bool)
    has_index[bgp_pat[np.isin(bgp_code, list(index_codes))]] = True
    has_index[scen_pat_all] = True
    neuro_pool = bg_pat[~has_index[bg_pat]]

    # ---- background orders
    n_ord_total = int(round(5 * N))
    n_bg_o = max(0, n_ord_total - n_order_s)
    is_neuro = rng.random(n_bg_o) < NEURO_SHARE
    if neuro_pool.size == 0:
        is_neuro[:] = False
    nn = int(is_neuro.sum())
    bgo_pat = rng.integers(0, N, n_bg_o)
    if nn:
        bgo_pat[is_neuro] = neuro_pool[rng.integers(0, neuro_pool.size, nn)]
    nonneuro_codes = np.array([OCODE[c] for c in BG_NONNEURO[0]])
    neuro_codes = np.array([OCODE[c] for c in BG_NEURO[0]])
    bgo_code = nonneuro_codes[_pick(rng, BG_NONNEURO, n_bg_o)]
    if nn:
        bgo_code[is_neuro] = neuro_codes[_pick(rng, BG_NEURO, nn)]
    bgo_ind = np.array(BG_IND_NONNEURO[0])[_pick(rng, BG_IND_NONNEURO, n_bg_o)]
    if nn:
        bgo_ind[is_neuro] = np.array(BG_IND_NEURO[0])[_pick(rng, BG_IND_NEURO, nn)]
    bgo_status = rng.choice(4, size=n_bg_o, p=[0.12, 0.10, 0.70, 0.08])
    bgo_t = rng.integers(t_lo, t_hi, n_bg_o)
    bgo_dept = rng.integers(0, len(ORDER_DEPTS), n_bg_o)
    bgo_prov = rng.integers(1, n_order_providers + 1, n_bg_o)
    del is_neuro
    o_pat = np.concatenate([cat(O_cols["pat"]), bgo_pat])
    del bgo_pat
    o_t = np.concatenate([cat(O_cols["t"]), bgo_t])
    del bgo_t
    o_code = np.concatenate([cat(O_cols["code"]), bgo_code]).astype(np.int16)
    del bgo_code
    o_status = np.concatenate([cat(O_cols["status"]), bgo_status]).astype(np.int8)
    del bgo_status
    o_ind = np.concatenate([cat(O_cols["ind"]), bgo_ind]).astype(np.int16)
    del bgo_ind
    o_missing = np.concatenate([cat(O_cols["missing"], bool), np.zeros(n_bg_o, bool)])
    o_dept = np.concatenate([cat(O_cols["dept"]), bgo_dept]).astype(np.int8)
    o_prov = np.concatenate([cat(O_cols["prov"]), bgo_prov]).astype(np.int32)
    del bgo_dept, bgo_prov
    o_key = np.concatenate([cat(O_cols["gt"]), np.full(n_bg_o, -1)])
    n_o = o_pat.size

    # ---- background diagnoses
    n_bg_d = int(round(0.6 * N))
    bgd_pat = rng.integers(0, N, n_bg_d)
    bgd_code = np.array([DXI[c] for c in BG_DIAGNOSES[0]])[_pick(rng, BG_DIAGNOSES, n_bg_d)]
    bgd_t = rng.integers(t_lo, t_hi, n_bg_d)
    bgd_date = rng.random(n_bg_d) < 0.1
    d_pat = np.concatenate([cat(Dg_cols["pat"]), bgd_pat])
    d_t = np.concatenate([cat(Dg_cols["t"]), bgd_t])
    d_code = np.concatenate([cat(Dg_cols["code"]), bgd_code])
    d_date = np.concatenate([cat(Dg_cols["date_only"], bool), bgd_date])

    # ---- id widths
    pw = max(7, len(str(N)))
    prw = max(6, len(str(n_pr)))
    ow = max(8, len(str(n_o)))
    ext = "csv" if fmt == "csv" else "parquet"

    def pid(idx):
        return pl.select(pl.lit("P") + pl.Series(idx.astype(np.int64) + 1).cast(pl.String).str.zfill(pw))[:, 0]

    # ---- procedures: sort by time, number, write
    order = np.lexsort((pr_key, pr_t))
    pr_pat, pr_t, pr_code, pr_key = pr_pat[order], pr_t[order], pr_code[order], pr_key[order]
    proc_num_of_key = np.empty(n_proc_s, np.int64)
    sk = pr_key >= 0
    proc_num_of_key[pr_key[sk]] = np.flatnonzero(sk)
    fmt_kind = rng.choice(3, size=n_pr, p=[0.9, 0.06, 0.04])
    gauge = rng.choice(np.array([18, 20, 22, 24, 25, 27]), size=n_pr, p=[0.05, 0.35, 0.35, 0.1, 0.1, 0.05])
    ntype = rng.choice(2, size=n_pr, p=[0.6, 0.4])
    attempts = rng.choice(np.arange(1, 6), size=n_pr, p=[0.62, 0.22, 0.1, 0.04, 0.02])
    position = rng.choice(3, size=n_pr, p=[0.35, 0.35, 0.3])
    pdept = rng.integers(0, len(PROC_DEPTS), n_pr)
    psite = rng.choice(2, size=n_pr, p=[0.7, 0.3])
    pprov = rng.integers(1, max(30, N // 2000) + 1, n_pr)
    spinal = ~np.isin(pr_code, [PCODE["20610"], PCODE["20552"], PCODE["27096"]])
    w = _Writer(out_dir / f"procedures.{ext}", fmt)
    for a in range(0, max(n_pr, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, n_pr))
        sp = spinal[sl]
        bd = birth[pr_pat[sl]]
        bd_s = _null_where(pl.from_epoch(pl.Series(bd), "d").dt.strftime("%Y-%m-%d"), ~birth_known[pr_pat[sl]])
        df = pl.DataFrame(
            {
                "procedure_id": pl.select(pl.lit("PR") + pl.int_range(sl.start + 1, sl.stop + 1).cast(pl.String).str.zfill(prw))[
                    :, 0
                ],
                "patient_id": pid(pr_pat[sl]),
                "performed_at": _fmt_instants(pr_t[sl], fmt_kind[sl], None, tz),
                "procedure_code": _gather(PROC_CODES, pr_code[sl]),
                "procedure_name": _gather([PROC_NAMES[c] for c in PROC_CODES], pr_code[sl]),
                "department": _gather(PROC_DEPTS, pdept[sl]),
                "site": _gather(SITES, psite[sl]),
                "provider_id": pl.select(pl.lit("PV") + pl.Series(pprov[sl]).cast(pl.String).str.zfill(5))[:, 0],
                "patient_birth_date": bd_s,
                "needle_gauge": _null_where(pl.Series(gauge[sl]).cast(pl.String), ~sp),
                "needle_type": _null_where(_gather(["cutting", "pencil_point"], ntype[sl]), ~sp),
                "attempts": _null_where(pl.Series(attempts[sl]).cast(pl.String), ~sp),
                "patient_position": _null_where(_gather(["sitting", "lateral", "prone"], position[sl]), ~sp),
            }
        )
        w.write(df)
    w.close()
    del pr_pat, pr_t, fmt_kind, gauge, ntype, attempts, position, pdept, psite, pprov, spinal

    # ---- orders
    order = np.lexsort((o_key, o_t))  # orders without a time keep their would-be place
    o_pat, o_t, o_code, o_status, o_ind, o_missing, o_dept, o_prov, o_key = (
        x[order] for x in (o_pat, o_t, o_code, o_status, o_ind, o_missing, o_dept, o_prov, o_key)
    )
    del order
    order_num_of_key = np.empty(n_order_s, np.int64)
    sk = o_key >= 0
    order_num_of_key[o_key[sk]] = np.flatnonzero(sk)
    del o_key, sk
    fmt_kind = rng.choice(3, size=n_o, p=[0.9, 0.06, 0.04]).astype(np.int8)
    prio = rng.choice(3, size=n_o, p=[0.75, 0.2, 0.05]).astype(np.int8)
    osite = rng.choice(2, size=n_o, p=[0.7, 0.3]).astype(np.int8)
    ind_codes = [c for c, _ in INDICATIONS]
    ind_text = [t for _, t in INDICATIONS]
    order_names = [ORDER_NAMES[c] for c in ORDER_CODES]
    w = _Writer(out_dir / f"imaging_orders.{ext}", fmt)
    for a in range(0, max(n_o, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, n_o))
        df = pl.DataFrame(
            {
                "order_id": pl.select(pl.lit("O") + pl.int_range(sl.start + 1, sl.stop + 1).cast(pl.String).str.zfill(ow))[:, 0],
                "patient_id": pid(o_pat[sl]),
                "ordered_at": _fmt_instants(o_t[sl], fmt_kind[sl], o_missing[sl], tz),
                "order_code": _gather(ORDER_CODES, o_code[sl]),
                "order_name": _gather(order_names, o_code[sl]),
                "ordering_department": _gather(ORDER_DEPTS, o_dept[sl]),
                "ordering_provider_id": pl.select(pl.lit("DR") + pl.Series(o_prov[sl]).cast(pl.String).str.zfill(5))[:, 0],
                "indication_codes": _gather(ind_codes, o_ind[sl]),
                "indication_text": _gather(ind_text, o_ind[sl]),
                "status": _gather(STATUSES, o_status[sl]),
                "priority": _gather(PRIORITIES, prio[sl]),
                "site": _gather(SITES, osite[sl]),
            }
        )
        w.write(df)
    w.close()
    del o_pat, o_t, o_code, o_status, o_ind, o_missing, o_dept, fmt_kind, prio, osite, o_prov

    # ---- diagnoses (sorted by time)
    order = np.lexsort((d_pat, d_t))
    d_pat, d_t, d_code, d_date = d_pat[order], d_t[order], d_code[order], d_date[order]
    dk = rng.choice(3, size=d_pat.size, p=[0.9, 0.06, 0.04]).astype(np.int8)
    dk[d_date] = 3
    w = _Writer(out_dir / f"diagnoses.{ext}", fmt)
    for a in range(0, max(d_pat.size, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, d_pat.size))
        w.write(
            pl.DataFrame(
                {
                    "patient_id": pid(d_pat[sl]),
                    "diagnosis_code": _gather(DX_CODES, d_code[sl]),
                    "recorded_at": _fmt_instants(d_t[sl], dk[sl], None, tz),
                }
            )
        )
    w.close()
    n_d = d_pat.size
    del d_pat, d_t, d_code, d_date, dk

    # ---- local code map
    (out_dir / "local_code_map.csv").write_text(LOCAL_CODE_MAP_CSV, encoding="utf-8", newline="")

    # ---- ground truth
    def pr_id(nums):
        return pl.select(pl.lit("PR") + pl.Series(nums + 1).cast(pl.String).str.zfill(prw))[:, 0]

    if gt_rows:
        gt = pl.DataFrame(
            {
                "order_id": pl.concat(
                    [
                        pl.select(pl.lit("O") + pl.Series(order_num_of_key[k] + 1).cast(pl.String).str.zfill(ow))[:, 0]
                        for k, _, _, _ in gt_rows
                    ]
                ),
                "case_id": pl.concat([pr_id(proc_num_of_key[c]) for _, c, _, _ in gt_rows]),
                "verdict": pl.Series([v for k, _, v, _ in gt_rows for _ in range(k.size)], dtype=pl.String),
                "reasons": pl.Series([r for k, _, _, r in gt_rows for _ in range(k.size)], dtype=pl.String),
            }
        ).sort("order_id")
    else:
        gt = pl.DataFrame(schema={"order_id": pl.String, "case_id": pl.String, "verdict": pl.String, "reasons": pl.String})
    gt.write_csv(out_dir / "ground_truth_orders.csv")
    if gt_case:
        gc = pl.DataFrame(
            {
                "case_id": pl.concat([pr_id(proc_num_of_key[k]) for k, _, _ in gt_case]),
                "patient_id": pl.concat([pid(p) for _, p, _ in gt_case]),
                "scenario": pl.Series([s for k, _, s in gt_case for _ in range(k.size)], dtype=pl.String),
            }
        ).sort("case_id")
    else:
        gc = pl.DataFrame(schema={"case_id": pl.String, "patient_id": pl.String, "scenario": pl.String})
    gc.write_csv(out_dir / "ground_truth_cases.csv")

    summary = {
        "generator": "pipeline.synth",
        "parameters": {
            "patients": N,
            "months": months,
            "seed": seed,
            "start_month": start_month,
            "format": fmt,
            "site_timezone": tz,
            "case_density": case_density,
        },
        "counts": {
            "patients": N,
            "procedures": int(n_pr),
            "imaging_orders": int(n_o),
            "diagnoses": int(n_d),
            "ground_truth_orders": gt.height,
            "ground_truth_cases": gc.height,
            "scenario_patients": int(n_scen_pat),
        },
        "verdicts": dict(sorted(gt.group_by("verdict").len().iter_rows())) if gt.height else {},
        "scenarios": {s.name: {"instances": counts[s.name], "is_case": bool(s.cases), "note": s.note} for s in SCENARIOS},
        "noncase_example_patients": {k: [f"P{str(v).zfill(pw)}" for v in vs] for k, vs in nc_examples.items()},
    }
    (out_dir / "synth.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return summary
