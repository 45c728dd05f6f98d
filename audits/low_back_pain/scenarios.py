"""Generator scenarios of the low back pain audit: whole patients with the exact expected episodes and orders.

Each scenario is one patient's timeline in site-local calendar days from the index date (day 0) and
local wall-clock times (never in a DST hour), with the verdicts DESIGN.md gives each order. The engine's
generator (pipeline/synth/audit_scenarios.py) appends these patients to its population and writes the
truth as ground_truth/low_back_pain/{orders,episodes}.csv (and ground_truth/csf_leak/ for the patient
who is a case in both audits). The population's background has no low back pain diagnosis, so these are
the audit's only cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

AUDIT = "low_back_pain"
EPISODES_PER_PATIENT = 0.01  # scenario patients per generated patient (at least one of each scenario)
MODALITY = {"72100": "XR", "72110": "XR", "72131": "CT", "72148": "MR", "72158": "MR"}
ORDER_NAMES = {
    "72100": "X-ray lumbosacral spine, 2-3 views",
    "72110": "X-ray lumbosacral spine, 4+ views",
    "72131": "CT lumbar spine without contrast",
    "72148": "MRI lumbar spine without contrast",
    "72141": "MRI cervical spine without contrast",
    "72156": "MRI cervical spine without and with",
    "72157": "MRI thoracic spine without and with",
    "72158": "MRI lumbar spine without and with",
    "LOC-LSPINE-NEW": "Lumbar spine protocol (new local code)",
}
DEPARTMENTS = ["primary_care", "emergency", "orthopedics", "internal_medicine"]


@dataclass(frozen=True)
class Dx:
    code: str
    day: int
    setting: str = "outpatient"
    time: str = "09:00:00"


@dataclass(frozen=True)
class Order:
    code: str
    day: int
    verdict: str | None = None  # None: the audit must not list it
    reasons: str = ""
    episode: int = 0  # which of the scenario's episodes it belongs to
    status: str = "completed"
    indication: str = ""
    missing_time: bool = False
    time: str = "10:00:00"
    red_flag_groups: str = ""
    department: str | None = None  # None: the patient's (one department orders a patient's back imaging)


@dataclass(frozen=True)
class Episode:
    day: int  # the index date, in days from day 0
    outcome: str
    n_orders: int
    red_flag_groups: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: float
    dx: tuple
    orders: tuple = ()
    episodes: tuple = ()  # () : not a case
    age: str = "adult"  # adult | 17 | 18 | 75 | 76 | unknown
    both_audits: bool = False  # also a CSF-leak case (an epidural injection on day 50, a leak, a complete spine)


LBP = (Dx("M54.50", 0),)
EARLY = ("inappropriate", "early_imaging")
AFTER = ("appropriate", "after_conservative_period")


def _one(name, weight, orders, outcome, n=None, dx=LBP, groups="", **kw) -> Scenario:
    n = sum(o.verdict is not None for o in orders) if n is None else n
    return Scenario(name, weight, dx, orders, (Episode(0, outcome, n, groups),), **kw)


# (group, a code of its value set, a day inside its window, a day just outside)
RED_FLAGS = (
    ("cancer", "C79.51", -700, 29),
    ("trauma", "S32.010A", -90, -91),
    ("iv_drug_use", "F11.20", -300, -400),
    ("neurological", "G83.4", -300, -400),
    ("hiv", "B20", -700, 29),
    ("spinal_infection", "M46.25", -300, -400),
    ("organ_transplant", "Z94.0", -700, 29),
    ("steroids", "Z79.52", -300, -400),
    ("osteoporosis", "M81.0", -300, -400),
    ("ankylosing_spondylitis", "M45.6", -700, 29),
    ("palliative_care", "Z51.5", -300, -400),
)


def _red_flag_scenarios() -> tuple[Scenario, ...]:
    out = []
    for group, code, inside, outside in RED_FLAGS:
        out.append(
            _one(
                f"red_flag_{group}_in_window",
                1,
                (Order("72148", 10, "excluded", "red_flag_condition", red_flag_groups=group),),
                "excluded",
                dx=(*LBP, Dx(code, inside)),
                groups=group,
            )
        )
        out.append(
            _one(
                f"red_flag_{group}_outside_window",
                1,
                (Order("72148", 10, *EARLY),),
                "early_imaging",
                dx=(*LBP, Dx(code, outside)),
            )
        )
    return tuple(out)


SCENARIOS: tuple[Scenario, ...] = (
    _one("no_imaging", 30, (), "no_early_imaging"),
    _one("early_xray_day_7", 14, (Order("72100", 7, *EARLY),), "early_imaging"),
    _one(
        "early_day_0_before_diagnosis",
        3,
        (Order("72100", 0, *EARLY, time="08:00:00"),),
        "early_imaging",
        dx=(Dx("M54.50", 0, "emergency", "14:00:00"),),
    ),
    _one("early_day_28", 3, (Order("72148", 28, *EARLY),), "early_imaging"),
    _one("after_day_29", 3, (Order("72131", 29, *AFTER),), "no_early_imaging"),
    _one("window_day_42_43", 2, (Order("72148", 42, *AFTER), Order("72148", 43)), "no_early_imaging"),
    _one("order_before_index", 1, (Order("72100", -1),), "no_early_imaging"),
    _one("not_lumbar_imaging", 2, (Order("72141", 5),), "no_early_imaging"),
    _one("cancelled_early", 2, (Order("72148", 5, "excluded", "cancelled", status="cancelled"),), "no_early_imaging"),
    _one("missing_time", 1, (Order("72148", 5, "not_evaluable", "missing_time", missing_time=True),), "not_evaluable"),
    _one("unmapped_local_code_day_10", 1, (Order("LOC-LSPINE-NEW", 10, "not_evaluable", "unmapped_code"),), "not_evaluable"),
    _one("unmapped_local_code_day_35", 1, (Order("LOC-LSPINE-NEW", 35, "not_evaluable", "unmapped_code"),), "no_early_imaging"),
    _one(
        "red_flag_on_order_indication",
        1,
        (Order("72148", 10, "excluded", "red_flag_condition", indication="C79.51", red_flag_groups="cancer"),),
        "excluded",
        groups="cancer",
    ),
    Scenario(
        "recurrence_within_180_days",
        2,
        (Dx("M54.50", 0), Dx("M54.16", 180), Dx("M54.50", 361)),
        (Order("72100", 3, *EARLY), Order("72100", 363, *EARLY, episode=1)),
        (Episode(0, "early_imaging", 1), Episode(361, "early_imaging", 1)),
    ),
    Scenario(
        "two_episodes_a_year_apart",
        2,
        (Dx("M54.50", 0), Dx("M51.16", 365)),
        (Order("72148", 30, *AFTER), Order("72100", 370, *EARLY, episode=1)),
        (Episode(0, "no_early_imaging", 1), Episode(365, "early_imaging", 1)),
    ),
    Scenario("inpatient_only", 2, (Dx("M54.50", 0, "inpatient"),), (Order("72148", 3),)),
    Scenario("age_17", 1, LBP, (Order("72148", 5),), age="17"),
    _one("age_18", 1, (Order("72148", 5, *EARLY),), "early_imaging", age="18"),
    _one("age_75", 1, (Order("72148", 5, *EARLY),), "early_imaging", age="75"),
    Scenario("age_76", 1, LBP, (Order("72148", 5),), age="76"),
    Scenario("age_unknown", 1, LBP, (Order("72148", 5),), age="unknown"),
    Scenario(
        "both_audits_injection_then_leak",
        1,
        (Dx("M54.16", 0), Dx("G97.1", 51, "emergency", "11:00:00")),
        (
            Order("72100", 25, *EARLY),
            # the lumbar MRI after the conservative period and the leak work-up come from neurology
            Order("72148", 38, *AFTER, department="neurology"),
            *(Order(code, 54, indication="G97.1", department="neurology") for code in ("72156", "72157", "72158")),
        ),
        (Episode(0, "early_imaging", 2),),
        both_audits=True,
    ),
    *_red_flag_scenarios(),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


def _instances(ctx) -> list[int]:
    """Instances of each scenario: one each, the rest by weight (EPISODES_PER_PATIENT of the population, times
    the generator's case density)."""
    weights = np.array([s.weight for s in SCENARIOS], dtype=float)
    extra = max(0, int(round(ctx.patients * EPISODES_PER_PATIENT * ctx.case_density)) - len(SCENARIOS))
    return (1 + ctx.rng.multinomial(extra, weights / weights.sum())).tolist()


def _index_days(ctx, s: Scenario, k: int) -> pl.Series:
    """Random day-0 dates such that the scenario's orders and its audit window fall in the generated
    months when they are long enough."""
    last = max([43, *(o.day for o in s.orders), *(e.day + 43 for e in s.episodes)])
    lo = ctx.first_day.astype("int64")
    hi = max(lo + 1, (ctx.end_day - np.timedelta64(last + 1, "D")).astype("int64"))
    return pl.Series("day0", ctx.rng.integers(lo, hi, k).astype("datetime64[D]"))


def _birth_dates(ctx, day0: pl.Series, age: str) -> pl.Series:
    """Birth dates giving exactly the scenario's age at day 0 (edges: the birthday on day 0 or the day after)."""
    frame = pl.DataFrame({"day0": day0})
    if age in ("adult", "unknown"):
        years = ctx.rng.integers(25, 71, day0.len())
        back = ctx.rng.integers(1, 301, day0.len())
        frame = frame.with_columns(years=pl.Series(years), back=pl.Series(back))
        birth = pl.col("day0").dt.offset_by(pl.format("-{}y", "years")) - pl.duration(days=pl.col("back"))
    else:
        years = {"17": 18, "18": 18, "75": 76, "76": 76}[age]
        plus = 1 if age in ("17", "75") else 0  # born a day later: not yet that birthday on day 0
        # day 0 on 29 February: N years back is 28 February (birthday passed); born a day after a
        # 28 February of a leap year is born on 29 February, whose birthday is 1 March in other years
        # (as the core models count): either way not yet that birthday on day 0
        birth = pl.col("day0").dt.offset_by(f"-{years}y") + pl.duration(days=plus)
    return frame.select(birth.dt.strftime("%Y-%m-%d"))[:, 0]


def _at(day0: pl.Series, day: int, time: str) -> pl.Series:
    return (day0 + timedelta(days=day)).dt.strftime(f"%Y-%m-%d {time}")


def _date(day0: pl.Series, day: int) -> pl.Series:
    return (day0 + timedelta(days=day)).dt.strftime("%Y-%m-%d")


def _scenario(ctx, s: Scenario, k: int) -> dict[str, list[pl.DataFrame]]:
    day0 = _index_days(ctx, s, k)
    pid = ctx.patient_ids(k)
    birth = _birth_dates(ctx, day0, s.age)
    dept = pl.Series(DEPARTMENTS).gather(pl.Series(ctx.rng.integers(0, len(DEPARTMENTS), k)))
    providers = max(10, ctx.patients // 4000)  # a practice's clinicians: several episodes each
    prov = pl.select(pl.lit("DR9") + pl.Series(ctx.rng.integers(0, providers, k)).cast(pl.String).str.zfill(4))[:, 0]
    out: dict[str, list[pl.DataFrame]] = {t: [] for t in ("procedures", "imaging_orders", "diagnoses", "orders", "episodes")}
    out["csf_orders"], out["csf_cases"] = [], []
    # the age comes from a procedure row's birth date (a knee injection: no audit's index procedure)
    out["procedures"].append(
        pl.DataFrame(
            {
                "procedure_id": ctx.procedure_ids(k),
                "patient_id": pid,
                "performed_at": _at(day0, -30, "11:00:00"),
                "procedure_code": "20610",
                "procedure_name": "Arthrocentesis, major joint",
                "department": "pain_management",
                "patient_birth_date": None if s.age == "unknown" else birth,
            }
        )
    )
    for d in s.dx:
        out["diagnoses"].append(
            pl.DataFrame(
                {"patient_id": pid, "diagnosis_code": d.code, "recorded_at": _at(day0, d.day, d.time), "setting": d.setting}
            )
        )
    order_ids = {}
    for i, o in enumerate(s.orders):
        oid = ctx.order_ids(k)
        order_ids[i] = oid
        out["imaging_orders"].append(
            pl.DataFrame(
                {
                    "order_id": oid,
                    "patient_id": pid,
                    "ordered_at": None if o.missing_time else _at(day0, o.day, o.time),
                    "order_code": o.code,
                    "order_name": ORDER_NAMES[o.code],
                    "ordering_department": dept if o.department is None else pl.Series([o.department] * k),
                    "ordering_provider_id": prov,
                    "indication_codes": o.indication or None,
                    "status": o.status,
                },
                schema_overrides={"ordered_at": pl.String, "indication_codes": pl.String},
            )
        )
        if o.verdict is not None:
            ep = s.episodes[o.episode]
            out["orders"].append(
                pl.DataFrame(
                    {
                        "order_id": oid,
                        "patient_id": pid,
                        "index_date": _date(day0, ep.day),
                        "days_since_index": "" if o.missing_time else str(o.day - ep.day),
                        "modality": MODALITY.get(o.code, ""),
                        "verdict": o.verdict,
                        "reasons": o.reasons,
                        "red_flag_groups": o.red_flag_groups,
                        "scenario": s.name,
                    }
                )
            )
    for ep in s.episodes:
        out["episodes"].append(
            pl.DataFrame(
                {
                    "patient_id": pid,
                    "index_date": _date(day0, ep.day),
                    "outcome": ep.outcome,
                    "is_complicated": str(bool(ep.red_flag_groups)).lower(),
                    "red_flag_groups": ep.red_flag_groups,
                    "n_orders": str(ep.n_orders),
                    "scenario": s.name,
                }
            )
        )
    if s.both_audits:
        _csf_side(ctx, s, k, day0, pid, birth, order_ids, out)
    return out


def _csf_side(ctx, s, k, day0, pid, birth, order_ids, out) -> None:
    """The CSF-leak half of the patient in both audits (as deck both_audits_injection_then_leak): an
    epidural injection on day 50 09:00, a leak diagnosed on day 51, a complete spine without and with
    on day 54 10:00 (97 h after: appropriate); the day-38 lumbar MRI is 12 days before (outside_window)."""
    case_id = ctx.procedure_ids(k)
    out["procedures"].append(
        pl.DataFrame(
            {
                "procedure_id": case_id,
                "patient_id": pid,
                "performed_at": _at(day0, 50, "09:00:00"),
                "procedure_code": "62323",
                "procedure_name": "Interlaminar epidural injection, lumbar/sacral, imaging guided",
                "department": "pain_management",
                "patient_birth_date": birth,
            }
        )
    )
    csf = {1: ("excluded", "outside_window"), 2: ("appropriate", "mri_complete_spine_wwo")}
    csf |= {3: csf[2], 4: csf[2]}
    for i, (verdict, reasons) in csf.items():
        out["csf_orders"].append(
            pl.DataFrame({"order_id": order_ids[i], "case_id": case_id, "verdict": verdict, "reasons": reasons})
        )
    out["csf_cases"].append(pl.DataFrame({"case_id": case_id, "patient_id": pid, "scenario": s.name}))


def scenario_rows(ctx):
    """Every scenario's patients and their truth (the generator's hook; see the module docstring)."""
    from pipeline.synth.audit_scenarios import ScenarioRows

    parts: dict[str, list[pl.DataFrame]] = {}
    counts = _instances(ctx)
    for s, k in zip(SCENARIOS, counts, strict=True):
        for name, frames in _scenario(ctx, s, k).items():
            parts.setdefault(name, []).extend(frames)

    def cat(name):
        return pl.concat(parts[name], how="diagonal") if parts.get(name) else pl.DataFrame()

    return ScenarioRows(
        tables={t: cat(t) for t in ("procedures", "imaging_orders", "diagnoses")},
        truth={
            AUDIT: {"orders": cat("orders"), "episodes": cat("episodes")},
            "csf_leak": {"orders": cat("csf_orders"), "cases": cat("csf_cases")},
        },
        summary={"scenarios": dict(zip(SCENARIO_NAMES, counts, strict=True))},
    )
