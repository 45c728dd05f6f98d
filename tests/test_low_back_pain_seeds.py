"""The low back pain audit folder (audits/low_back_pain), checked without running the pipeline.

Value sets against the brief (DOMAIN-LOW-BACK-PAIN.md sections 3 and 5) and the FY2026 ICD-10-CM
code set bundled in simple-icd-10-cm; the code map, the rule registry and the manifest; and the
deck's own consistency (ids, the arithmetic its comments state, registry coverage). The expected
code lists are written out here on purpose: a seed edit that drops or remaps a code must fail.
The end-to-end deck test (the real CLI, order by order) comes with the engine of issue 13.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import simple_icd_10_cm as icd
from test_reference import MAP_COLUMNS as CODE_MAP_COLUMNS
from test_reference import VALUE_SET_COLUMNS, dotless, read_csv

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "audits" / "low_back_pain"
DECK_DIR = AUDIT / "deck"
SITE_TIMEZONE = ZoneInfo("America/New_York")  # the zone the deck runs in (tests/test_deck.py)

RULE_COLUMNS = ["rule_id", "reason_code", "label", "verdict", "flag_column", "explanation", "citation"]
ICD_GO_LIVE = "2015-10-01"

# --- expected content (DOMAIN-LOW-BACK-PAIN.md; deviations are DESIGN.md "Codes") -------------------

LBP_UNCOMPLICATED = {
    # brief section 5, in its order; M54.5, M51.36 and M51.37 are categories (prefix rows)
    "M54.5", "M54.16", "M54.17", "M54.30", "M54.31", "M54.32", "M54.40", "M54.41", "M54.42", "M54.89", "M54.9",
    "M51.16", "M51.17", "M51.26", "M51.27", "M51.36", "M51.37", "M53.2X6", "M53.2X7", "M53.2X8", "M53.3",
    "M53.86", "M53.87", "M53.88", "M47.26", "M47.27", "M47.28", "M47.816", "M47.817", "M47.818", "M48.061",
    "M48.062", "M48.07", "M48.08", "M99.03", "M99.04", "S33.5XXA", "S39.012A",
}  # fmt: skip
# brief section 3, in its order (the order of red_flag_groups in the outputs)
RED_FLAG_GROUPS = [
    "cancer",
    "trauma",
    "iv_drug_use",
    "neurological",
    "hiv",
    "spinal_infection",
    "organ_transplant",
    "steroids",
    "osteoporosis",
    "ankylosing_spondylitis",
    "palliative_care",
]
RED_FLAG_CODES = {
    "cancer": {"Z85"},  # + every malignant-neoplasm category C00-C96 (test_cancer_is_every_malignant_category)
    "trauma": {"S32", "S34", "S22", "S33.0", "S33.1"},
    "iv_drug_use": {"F11", "F13", "F14", "F15", "F19"},
    "neurological": {"G83.4", "R26.2", "R29.2", "R32", "K59.2", "R15.9", "R27.0"},
    "hiv": {"B20", "Z21"},
    "spinal_infection": {"M46.2", "M46.3", "M46.4", "M46.5", "G06.1", "G06.2"},
    # the brief says Z94; skin, bone and cornea grafts (Z94.5-Z94.7) are left out (DESIGN.md, Codes)
    "organ_transplant": {"Z94.0", "Z94.1", "Z94.2", "Z94.3", "Z94.4", "Z94.8", "Z94.9"},
    "steroids": {"Z79.52"},
    "osteoporosis": {"M80", "M81"},
    "ankylosing_spondylitis": {"M45"},
    "palliative_care": {"Z51.5"},
}
RED_FLAG_WINDOWS = {  # group -> look-back text in the value set's source note (brief section 3)
    "cancer": "any time",
    "trauma": "90 days",
    "iv_drug_use": "12 months",
    "neurological": "12 months",
    "hiv": "any time",
    "spinal_infection": "12 months",
    "organ_transplant": "any time",
    "steroids": "12 months",
    "osteoporosis": "12 months",
    "ankylosing_spondylitis": "any time",
    "palliative_care": "12 months",
}
# brief section 5: (study_type, modality, regions, contrast); S = sacrum/coccyx and sacroiliac joints
LBP_IMAGING = {
    "72100": ("xr_spine", "XR", "L", "without"),
    "72110": ("xr_spine", "XR", "L", "without"),
    "72114": ("xr_spine", "XR", "L", "without"),
    "72120": ("xr_spine", "XR", "L", "without"),
    "72220": ("xr_spine", "XR", "S", "without"),
    "72200": ("xr_spine", "XR", "S", "without"),
    "72202": ("xr_spine", "XR", "S", "without"),
    "72131": ("ct_spine", "CT", "L", "without"),
    "72132": ("ct_spine", "CT", "L", "with"),
    "72133": ("ct_spine", "CT", "L", "without_and_with"),
    "72148": ("mri_spine", "MR", "L", "without"),
    "72149": ("mri_spine", "MR", "L", "with"),
    "72158": ("mri_spine", "MR", "L", "without_and_with"),
}
# brief section 4, registry order (= order inside `reasons`)
EXPECTED_RULES = [
    ("LBP-01", "cancelled", "excluded"),
    ("LBP-02", "red_flag_condition", "excluded"),
    ("LBP-03", "unmapped_code", "not_evaluable"),
    ("LBP-04", "missing_time", "not_evaluable"),
    ("LBP-05", "early_imaging", "inappropriate"),
    ("LBP-06", "after_conservative_period", "appropriate"),
]


# --- helpers -----------------------------------------------------------------------------------------


def first_existing(*relative: str) -> Path:
    """A file of the first audit or the engine, before or after issue 13 moves it."""
    for rel in relative:
        if (ROOT / rel).is_file():
            return ROOT / rel
    pytest.fail(f"none of {relative} exists: update this test's path to where the file moved")


def malignant_categories() -> set[str]:
    """Every three-character ICD-10-CM category starting with C (chapter 2, malignant neoplasms)."""
    return {c for c in icd.get_all_codes(True) if c.startswith("C") and len(c) == 3}


@pytest.fixture(scope="module")
def value_sets() -> list[dict[str, str]]:
    cols, rows = read_csv(AUDIT / "value_sets.csv")
    assert cols == VALUE_SET_COLUMNS
    return rows


@pytest.fixture(scope="module")
def code_map() -> list[dict[str, str]]:
    cols, rows = read_csv(AUDIT / "code_map.csv")
    assert cols == CODE_MAP_COLUMNS
    return rows


# --- value sets --------------------------------------------------------------------------------------


def test_value_sets_match_the_brief(value_sets):
    got: dict[str, set[str]] = {}
    for r in value_sets:
        got.setdefault(r["value_set"], set()).add(r["code"])
    expected = {"lbp_uncomplicated": LBP_UNCOMPLICATED}
    expected |= {f"red_flag_{g}": set(codes) for g, codes in RED_FLAG_CODES.items()}
    expected["red_flag_cancer"] = RED_FLAG_CODES["cancer"] | malignant_categories()
    assert got == expected
    assert list(RED_FLAG_CODES) == RED_FLAG_GROUPS


def test_cancer_is_every_malignant_category(value_sets):
    """The brief's `C` prefix, spelt out: C00-C96 with C4A, C7A and C7B; no D code (in situ, benign, uncertain)."""
    cancer = {r["code"] for r in value_sets if r["value_set"] == "red_flag_cancer"} - {"Z85"}
    assert len(cancer) == 91
    assert {"C4A", "C7A", "C7B", "C00", "C96"} <= cancer
    assert all(re.fullmatch(r"C[0-9][0-9A-B]", c) for c in cancer), sorted(cancer)
    assert not any(r["code"].startswith("D") for r in value_sets)
    # every billable C code of FY2026 falls under one of the rows, and nothing else does
    leaves = [c for c in icd.get_all_codes(True) if c.startswith("C") and "-" not in c and icd.is_leaf(c)]
    assert leaves
    assert all(dotless(c)[:3] in cancer for c in leaves)


def test_icd_codes_exist_exact_rows_are_leaves_prefix_rows_are_categories(value_sets):
    for r in value_sets:
        code = r["code"]
        assert r["code_system"] == "ICD-10-CM", r
        assert re.fullmatch(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?", code), f"{code}: use the published dotted form"
        assert icd.is_valid_item(code), f"{code} is not in the FY2026 ICD-10-CM code set"
        if r["match"] == "exact":
            assert icd.is_leaf(code), f"{code} is exact but has children: make it a prefix row"
        else:
            assert r["match"] == "prefix", r
            assert not icd.is_leaf(code), f"{code} is a prefix row but a billable leaf: make it exact"
            assert [c for c in icd.get_descendants(code) if icd.is_leaf(c)], code


def test_fy2025_disc_degeneration_codes_are_prefix_rows(value_sets):
    """M51.36 / M51.37 were billable until FY2024 and gained children in FY2025: only a prefix row matches both."""
    rows = {r["code"]: r for r in value_sets if r["value_set"] == "lbp_uncomplicated"}
    for code in ("M51.36", "M51.37", "M54.5"):
        assert rows[code]["match"] == "prefix", code
    assert set(icd.get_children("M51.36")) == {"M51.360", "M51.361", "M51.362", "M51.369"}
    assert set(icd.get_children("M51.37")) == {"M51.370", "M51.371", "M51.372", "M51.379"}
    assert set(icd.get_children("M54.5")) == {"M54.50", "M54.51", "M54.59"}


def _matches(value_sets, value_set: str, code: str) -> bool:
    norm = dotless(code)
    return any(
        (r["match"] == "exact" and dotless(r["code"]) == norm) or (r["match"] == "prefix" and norm.startswith(dotless(r["code"])))
        for r in value_sets
        if r["value_set"] == value_set
    )


@pytest.mark.parametrize(
    ("code", "value_set", "expected"),
    [
        ("M51.369", "lbp_uncomplicated", True),
        ("M51.37", "lbp_uncomplicated", True),
        ("M54.59", "lbp_uncomplicated", True),
        ("m5450", "lbp_uncomplicated", True),
        ("M54.2", "lbp_uncomplicated", False),  # neck pain
        ("S33.5XXD", "lbp_uncomplicated", False),  # the brief lists the initial encounter only
        ("C79.51", "red_flag_cancer", True),
        ("C61", "red_flag_cancer", True),
        ("Z85.46", "red_flag_cancer", True),
        ("D05.11", "red_flag_cancer", False),
        ("D17.1", "red_flag_cancer", False),
        ("COVID", "red_flag_cancer", False),  # junk text must not match a bare `C` prefix
        ("S32.010A", "red_flag_trauma", True),
        ("S33.101A", "red_flag_trauma", True),
        ("S33.5XXA", "red_flag_trauma", False),
        ("F11.21", "red_flag_iv_drug_use", True),
        ("M46.26", "red_flag_spinal_infection", True),
        ("Z94.81", "red_flag_organ_transplant", True),
        ("Z94.7", "red_flag_organ_transplant", False),
        ("M80.08XA", "red_flag_osteoporosis", True),
        ("M45.A6", "red_flag_ankylosing_spondylitis", True),
    ],
)
def test_value_set_membership_examples(value_sets, code, value_set, expected):
    assert _matches(value_sets, value_set, code) is expected


def test_no_code_in_two_value_sets(value_sets):
    """A diagnosis is low back pain or a red flag, never both (prefix rows compared both ways)."""
    rows = [(r["value_set"], dotless(r["code"])) for r in value_sets]
    assert len(rows) == len(set(rows)), [k for k, n in Counter(rows).items() if n > 1]
    for vs_a, a in rows:
        for vs_b, b in rows:
            if vs_a != vs_b:
                assert not (a.startswith(b) or b.startswith(a)), f"{a} ({vs_a}) overlaps {b} ({vs_b})"


def test_value_set_dates_and_sources(value_sets):
    for r in value_sets:
        assert r["description"].strip() and "|" not in r["description"], r
        assert r["valid_to"] == "", f"{r['code']}: no code of this audit is closed"
        start = dt.date.fromisoformat(r["valid_from"])
        assert start >= dt.date.fromisoformat(ICD_GO_LIVE), r
        assert r["source"].startswith("CMS ICD-10-CM FY2026"), r
        if r["value_set"].startswith("red_flag_"):
            window = RED_FLAG_WINDOWS[r["value_set"].removeprefix("red_flag_")]
            assert f"red-flag window: {window} before to 28 days after the index date" in r["source"], r
    late = {r["code"]: r["valid_from"] for r in value_sets if r["valid_from"] != ICD_GO_LIVE}
    assert late == {"M48.061": "2016-10-01", "M48.062": "2016-10-01"}  # new in FY2017


# --- code map ----------------------------------------------------------------------------------------


def test_code_map_is_the_brief_lumbar_imaging(code_map):
    got = {r["code"]: (r["study_type"], r["modality"], r["regions"], r["contrast"]) for r in code_map}
    assert got == LBP_IMAGING
    for r in code_map:
        assert r["code_system"] == "CPT" and re.fullmatch(r"\d{5}", r["code"]), r
        assert r["source"].startswith("AMA CPT (code number only)"), r  # CPT descriptors are AMA copyright
        assert r["description"].strip() and r["valid_from"] == "2000-01-01" and r["valid_to"] == "", r


def test_code_map_agrees_with_the_csf_map_on_shared_codes(code_map):
    """One merged map serves both audits (DESIGN.md, Codes): a code both ship must be described the same."""
    _, csf = read_csv(first_existing("audits/csf_leak/code_map.csv", "pipeline/reference/imaging_code_map.csv"))
    csf_by_code = {r["code"]: r for r in csf}
    shared = [r for r in code_map if r["code"] in csf_by_code]
    assert {r["code"] for r in shared} == {"72131", "72132", "72133", "72148", "72149", "72158"}
    for r in shared:
        other = csf_by_code[r["code"]]
        assert {k: r[k] for k in CODE_MAP_COLUMNS} == {k: other[k] for k in CODE_MAP_COLUMNS}, r["code"]


# --- rules registry ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[dict[str, str]]:
    cols, rows = read_csv(AUDIT / "rules.csv")
    assert cols == RULE_COLUMNS
    return rows


def test_rules_registry_follows_the_brief(rules):
    assert [(r["rule_id"], r["reason_code"], r["verdict"]) for r in rules] == EXPECTED_RULES
    _, verdicts = read_csv(first_existing("pipeline/reference/verdicts.csv", "pipeline/models/verdicts.csv"))
    known = {v["verdict"] for v in verdicts}
    flags = [r["flag_column"] for r in rules]
    assert len(set(flags)) == len(flags), flags
    for r in rules:
        assert r["verdict"] in known, r
        assert re.fullmatch(r"(is|has)_[a-z_]+", r["flag_column"]), f"{r['flag_column']}: a boolean column is is_/has_"
        text = r["explanation"] + r["citation"]
        assert "|" not in text, "'|' is the list separator of the outputs"
        assert r["explanation"].endswith(".") and len(r["explanation"]) <= 260, r["rule_id"]
        # a committee looks the citation up: no repository file names
        assert not re.search(r"\.(md|csv|sql|py|toml|txt)\b|docs/|seeds/", r["citation"]), r["rule_id"]
        if r["verdict"] in {"inappropriate", "appropriate"}:
            assert "NCQA, HEDIS" in r["citation"] and "doi:10.1016/j.jacr.2021.08.002" in r["citation"], r["rule_id"]


# --- manifest ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest() -> dict:
    with (AUDIT / "audit.toml").open("rb") as fh:
        return tomllib.load(fh)


def test_manifest_identity_and_inputs(manifest):
    assert manifest["id"] == AUDIT.name
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", manifest["version"])
    assert manifest["case_unit"] == "episode"
    assert "Use of Imaging Studies for Low Back Pain" in manifest["guideline"]["reference"]
    assert manifest["guideline"]["doi"] == "10.1016/j.jacr.2021.08.002"
    assert manifest["inputs"]["required"] == ["diagnoses", "imaging_orders"]
    assert manifest["inputs"]["optional"] == ["patients", "procedures"]
    assert manifest["inputs"]["optional_columns"]["diagnoses"] == ["setting", "is_principal", "diagnosis_rank"]


def test_manifest_parameters_are_the_brief_defaults(manifest):
    assert manifest["parameters"] == {
        "min_age_years": 18,
        "max_age_years": 75,
        "negative_history_days": 180,
        "early_imaging_days": 28,
        "audit_window_days": 42,
        "red_flag_days_after_index": 28,
        "red_flag_trauma_lookback_days": 90,
        "red_flag_iv_drug_use_lookback_months": 12,
        "red_flag_neurological_lookback_months": 12,
        "red_flag_spinal_infection_lookback_months": 12,
        "red_flag_steroids_lookback_months": 12,
        "red_flag_osteoporosis_lookback_months": 12,
        "red_flag_palliative_care_lookback_months": 12,
    }
    # every group with a limited look-back has its parameter; the "any time" groups have none
    for group, window in RED_FLAG_WINDOWS.items():
        named = [k for k in manifest["parameters"] if k.startswith(f"red_flag_{group}_lookback_")]
        assert len(named) == (0 if window == "any time" else 1), group


def test_manifest_measures_and_report(manifest):
    measures = {m["id"]: m for m in manifest["measures"]}
    assert len(measures) == len(manifest["measures"])
    for m in measures.values():
        assert m["unit"] in {"order", "case"}, m["id"]
        assert m["direction"] in {"higher_is_better", "lower_is_better", "neutral"}, m["id"]
        assert m["label"].strip() and m["numerator"].strip() and m["denominator"].strip(), m["id"]
    hedis = measures["episodes_without_early_imaging"]
    assert (hedis["unit"], hedis["direction"], hedis.get("headline")) == ("case", "higher_is_better", True)
    early = measures["early_imaging_order_rate"]
    assert (early["unit"], early["direction"], early.get("headline")) == ("order", "lower_is_better", True)
    shares = {"not_evaluable_order_rate", "excluded_order_rate", "not_evaluable_episode_rate", "excluded_episode_rate"}
    assert shares <= set(measures)
    assert manifest["report"]["sections"] == ["episode_rate", "by_modality"]


# --- deck --------------------------------------------------------------------------------------------

INPUT_COLUMNS = {  # required keys of each input row (DOMAIN.md section 5, DESIGN-13 contract additions)
    "patients": {"patient_id", "birth_date"},
    "procedures": {"procedure_id", "patient_id", "performed_at", "procedure_code", "department"},
    "imaging_orders": {"order_id", "patient_id", "ordered_at", "order_code", "ordering_department"},
    "diagnoses": {"patient_id", "diagnosis_code", "recorded_at"},
    "local_codes": {"code_system", "code", "study_type", "modality", "regions", "contrast", "description"},
}
ORDER_KEYS = {"order_id", "patient_id", "index_date", "days_since_index", "modality", "verdict", "reasons"}
ORDER_OPTIONAL = {"red_flag_groups", "secondary_reasons"}
CSF_ORDER_KEYS = {"audit", "order_id", "case_id", "verdict", "reasons"}
EPISODE_KEYS = {
    "patient_id",
    "index_date",
    "age_years",
    "index_setting",
    "is_complicated",
    "red_flag_groups",
    "n_orders",
    "outcome",
    "has_early_imaging",
}
EPISODE_OPTIONAL = {"is_window_before_orders"}  # "false" when absent: the orders held cover the imaging window
TOP_KEYS = {"description", "separate_input", "expected_cases", *INPUT_COLUMNS, "expected_episodes", "expected_orders"}
# a separate file's own: its config's [extract] (a declared start) and its audit's metrics.json verified_from
SEPARATE_KEYS = {"extract", "expected_verified_from"}
SETTINGS = {"outpatient", "emergency", "observation", "telehealth", "inpatient", ""}
OUTCOME_HAS_EARLY = {"early_imaging": "true", "no_early_imaging": "false", "excluded": "", "not_evaluable": ""}
# DOMAIN-LOW-BACK-PAIN.md section 6 (and the list), one deck file at least per item
BRIEF_PATHS = {
    "recurrence_within_180_days": "new episode vs recurrence inside 180 days",
    "early_day_28": "day 28 is early",
    "after_day_29": "day 29 is not",
    "window_day_42_43": "day 42 audited, day 43 not",
    "order_before_index_not_audited": "orders before the index date",
    "red_flag_on_order_indication": "red flag on the order's own indication",
    "age_17_18_75_76_unknown": "age 17 / 18 / 75 / 76 and unknown",
    "cancelled": "cancelled",
    "unmapped_local_code": "unmapped local code",
    "site_local_code_mapped": "a local code mapped through the site code map",
    "missing_time": "missing order time",
    "modalities_xr_ct_mr_one_episode": "an X-ray, a CT and an MRI in one episode",
    "two_episodes_a_year_apart": "two episodes of one patient a year apart",
    "settings": "inpatient vs outpatient / emergency / telehealth / observation",
    "principal_vs_secondary": "principal vs secondary diagnosis",
    "date_only_diagnosis": "a date-only diagnosis recorded_at",
    "dst_local_calendar_days": "a DST change between index and order",
    "both_audits_injection_then_leak": "a case in both audits",
    **{f"red_flag_{g}_window": f"red flag {g} inside and just outside its window" for g in RED_FLAG_GROUPS},
}


def _load_deck(folder: Path) -> dict[str, dict]:
    deck = {}
    for path in sorted(folder.glob("*.toml")):
        with path.open("rb") as fh:
            deck[path.stem] = tomllib.load(fh)
    return deck


LBP_DECK = _load_deck(DECK_DIR)


@pytest.fixture(scope="module")
def csf_deck() -> dict[str, dict]:
    folder = next((ROOT / p for p in ("audits/csf_leak/deck", "tests/deck") if (ROOT / p).is_dir()), None)
    assert folder is not None, "the CSF-leak deck is in neither audits/csf_leak/deck nor tests/deck"
    return _load_deck(folder)


def _lbp_orders(case: dict) -> list[dict]:
    return [e for e in case.get("expected_orders", []) if "audit" not in e]


def _csf_rows(case: dict, table: str) -> list[dict]:
    return [e for e in case.get(table, []) if e.get("audit") == "csf_leak"]


def _local_date(text: str) -> dt.date:
    """A deck timestamp's site-local date: no offset = site-local time; a bare date is that date."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.date() if value.tzinfo is None else value.astimezone(SITE_TIMEZONE).date()


def _birth_span(birth: str) -> tuple[str, str]:
    """A birth date's latest and earliest possible day: a whole date is both; a partial one (1980, 1980-05) spans its
    year or month."""
    if len(birth) == 10:
        return birth, birth
    if len(birth) == 4:
        return f"{birth}-12-31", f"{birth}-01-01"
    year, month = map(int, birth.split("-"))
    after = dt.date(year + month // 12, month % 12 + 1, 1)
    return str(after - dt.timedelta(days=1)), f"{birth}-01"


def _whole_years(birth: str, on: dt.date) -> int:
    born = dt.date.fromisoformat(birth)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def test_deck_is_there():
    assert len(LBP_DECK) >= 40, f"only {len(LBP_DECK)} deck files in {DECK_DIR}"


@pytest.mark.parametrize("stem", sorted(BRIEF_PATHS))
def test_deck_covers_the_brief(stem):
    assert stem in LBP_DECK, f"no deck file {stem}.toml for: {BRIEF_PATHS[stem]}"


@pytest.mark.parametrize("stem", sorted(LBP_DECK))
def test_deck_file_is_well_formed(stem):
    case = LBP_DECK[stem]
    assert str(case.get("description", "")).strip(), "no description"
    assert set(case) <= TOP_KEYS | SEPARATE_KEYS, f"unknown top-level keys {sorted(set(case) - TOP_KEYS - SEPARATE_KEYS)}"
    assert case.get("separate_input") or not SEPARATE_KEYS & set(case), "extract and expected_verified_from: separate files only"
    assert set(case.get("extract", {})) <= {"data_since"}, "a deck file declares a start (data_since), a date"
    for text in [*case.get("extract", {}).values(), case.get("expected_verified_from", "2000-01-01")]:
        assert isinstance(text, str) and dt.date.fromisoformat(text), text
    assert "expected_episodes" in case and "expected_orders" in case, "write expected_episodes / expected_orders = [] for none"
    for table, required in INPUT_COLUMNS.items():
        for row in case.get(table, []):
            assert required <= set(row), f"a {table} row lacks {sorted(required - set(row))}"
            assert all(isinstance(v, str) for v in row.values()), f"{table}: write every value as a string"
    for row in case.get("diagnoses", []):
        assert row.get("setting", "") in SETTINGS, row
        assert row.get("is_principal", "") in {"true", "false", ""}, row
    for e in case["expected_orders"]:
        keys = set(e)
        if "audit" in e:
            assert e["audit"] == "csf_leak" and keys == CSF_ORDER_KEYS, e
        else:
            assert ORDER_KEYS <= keys <= ORDER_KEYS | ORDER_OPTIONAL, e
        assert all(isinstance(v, str) for v in e.values()), e
    for e in case["expected_episodes"]:
        assert EPISODE_KEYS <= set(e) <= EPISODE_KEYS | EPISODE_OPTIONAL, e
        assert all(isinstance(v, str) for v in e.values()), e
    for e in case.get("expected_cases", []):
        assert e.get("audit") == "csf_leak" and set(e) == {"audit", "case_id"}, e
    if case.get("separate_input"):
        assert not any({"setting", "is_principal", "diagnosis_rank"} & set(r) for r in case.get("diagnoses", []))


def test_ids_are_unique_across_both_decks(csf_deck):
    owner: dict[tuple[str, str], str] = {}
    problems = []
    for deck_name, deck in (("low_back_pain", LBP_DECK), ("csf_leak", csf_deck)):
        for stem, case in deck.items():
            where = f"{deck_name}/{stem}"
            ids = [("order_id", r["order_id"]) for r in case.get("imaging_orders", [])]
            ids += [("procedure_id", r["procedure_id"]) for r in case.get("procedures", [])]
            patients = {r["patient_id"] for t in INPUT_COLUMNS if t != "local_codes" for r in case.get(t, [])}
            ids += [("patient_id", p) for p in patients]
            for kind, value in ids:
                if (kind, value) in owner:
                    problems.append(f"{where}: {kind} {value} also used in {owner[(kind, value)]}")
                owner[(kind, value)] = where
                if deck_name == "low_back_pain" and not value.startswith("lbp-"):
                    problems.append(f"{where}: {kind} {value} does not start with lbp-")
    assert not problems, "\n".join(problems)


def test_local_codes_agree_across_both_decks(csf_deck):
    seen: dict[str, tuple[str, dict]] = {}
    for stem, case in [*LBP_DECK.items(), *csf_deck.items()]:
        for row in case.get("local_codes", []):
            key = row["code"].strip().upper()
            assert not re.fullmatch(r"\d{4}[0-9A-Z]", key), f"{stem}: a local code in CPT form would not count as unmapped"
            if key in seen:
                assert seen[key][1] == row, f"{stem}: local code {key} differs from its definition in {seen[key][0]}"
            seen.setdefault(key, (stem, row))


@pytest.mark.parametrize("stem", sorted(LBP_DECK))
def test_expected_orders_refer_to_the_files_inputs(stem):
    case = LBP_DECK[stem]
    orders = {r["order_id"]: r for r in case.get("imaging_orders", [])}
    procedures = {r["procedure_id"] for r in case.get("procedures", [])}
    episodes = {(e["patient_id"], e["index_date"]) for e in case["expected_episodes"]}
    ids = [e["order_id"] for e in _lbp_orders(case)]
    assert len(ids) == len(set(ids)), "an order is expected twice in one audit"
    for e in _lbp_orders(case):
        order = orders.get(e["order_id"])
        assert order is not None, f"{e['order_id']} is not one of this file's imaging_orders"
        assert order["patient_id"] == e["patient_id"], e
        assert (e["patient_id"], e["index_date"]) in episodes, f"{e['order_id']}: its episode is not an expected episode"
    csf_cases = {c["case_id"] for c in _csf_rows(case, "expected_cases")}
    assert csf_cases <= procedures
    for e in _csf_rows(case, "expected_orders"):
        assert e["order_id"] in orders and e["case_id"] in csf_cases, e


def _check_reasons(rows: list[dict], registry: list[tuple[str, str]]) -> list[str]:
    """reasons = the winning verdict's reasons, in registry order, no repeats."""
    verdict_of, order = dict(registry), [code for code, _ in registry]
    problems = []
    for e in rows:
        for field in ("reasons", "secondary_reasons"):
            codes = [c for c in e.get(field, "").split("|") if c]
            unknown = [c for c in codes if c not in verdict_of]
            if unknown:
                problems.append(f"{e['order_id']}: unknown {field} {unknown}")
                continue
            if codes != sorted(set(codes), key=order.index):
                problems.append(f"{e['order_id']}: {field} not in registry order or repeated: {e[field]}")
            if field == "reasons" and (not codes or {verdict_of[c] for c in codes} != {e["verdict"]}):
                problems.append(f"{e['order_id']}: verdict {e['verdict']} but reasons {e['reasons']}")
    return problems


def test_expected_reasons_follow_both_registries(rules):
    lbp_registry = [(r["reason_code"], r["verdict"]) for r in rules]
    _, csf_rules = read_csv(first_existing("audits/csf_leak/rules.csv", "pipeline/reference/rules.csv"))
    csf_registry = [(r["reason_code"], r["verdict"]) for r in csf_rules]
    problems = []
    for stem, case in LBP_DECK.items():
        problems += [f"{stem}: {p}" for p in _check_reasons(_lbp_orders(case), lbp_registry)]
        problems += [f"{stem}: {p}" for p in _check_reasons(_csf_rows(case, "expected_orders"), csf_registry)]
    assert not problems, "\n".join(problems)


def test_every_rule_is_fired_by_the_deck(rules):
    fired = {c for case in LBP_DECK.values() for e in _lbp_orders(case) for c in e["reasons"].split("|")}
    unfired = [r["reason_code"] for r in rules if r["reason_code"] not in fired]
    assert not unfired, f"rules no deck order expects as a reason (add a deck case that fires each): {unfired}"


@pytest.mark.parametrize("stem", sorted(LBP_DECK))
def test_days_and_ages_match_the_files_timestamps(stem):
    """The deck's stated arithmetic: site-local calendar days between index date and order, whole years of age."""
    case = LBP_DECK[stem]
    orders = {r["order_id"]: r for r in case.get("imaging_orders", [])}
    births = {r["patient_id"]: r["birth_date"] for r in case.get("patients", []) if r["birth_date"]}
    for e in _lbp_orders(case):
        ordered_at = orders[e["order_id"]]["ordered_at"]
        want = "" if not ordered_at.strip() else str((_local_date(ordered_at) - dt.date.fromisoformat(e["index_date"])).days)
        assert e["days_since_index"] == want, f"{e['order_id']}: days_since_index {e['days_since_index']}, timestamps say {want}"
        if want:
            assert 0 <= int(want) <= 42, f"{e['order_id']}: day {want} is outside the audit window"
    for ep in case["expected_episodes"]:
        if ep["patient_id"] in births:
            index = dt.date.fromisoformat(ep["index_date"])
            youngest, oldest = (_whole_years(born, index) for born in _birth_span(births[ep["patient_id"]]))
            assert ep["age_years"] == (str(oldest) if youngest == oldest else ""), ep  # a range is no one age
            assert youngest >= 18 and oldest <= 75, ep
        else:
            assert 18 <= int(ep["age_years"]) <= 75, ep


@pytest.mark.parametrize("stem", sorted(LBP_DECK))
def test_episodes_agree_with_their_orders_and_diagnoses(stem, value_sets):
    """Each expected episode starts on a low back pain diagnosis and its outcome follows from its orders (DESIGN.md)."""
    case = LBP_DECK[stem]
    for ep in case["expected_episodes"]:
        key = (ep["patient_id"], ep["index_date"])
        index_rows = [
            d
            for d in case.get("diagnoses", [])
            if d["patient_id"] == key[0]
            and _local_date(d["recorded_at"]) == dt.date.fromisoformat(key[1])
            and _matches(value_sets, "lbp_uncomplicated", d["diagnosis_code"])
        ]
        assert index_rows, f"{key}: no low back pain diagnosis on the index date"
        assert ep["index_setting"] in {d.get("setting", "") for d in index_rows}, ep
        mine = [e for e in _lbp_orders(case) if (e["patient_id"], e["index_date"]) == key]
        assert ep["n_orders"] == str(len(mine)), ep
        groups = [g for g in ep["red_flag_groups"].split("|") if g]
        assert groups == sorted(set(groups), key=RED_FLAG_GROUPS.index), ep
        assert ep["is_complicated"] == ("true" if groups else "false"), ep
        assert ep["has_early_imaging"] == OUTCOME_HAS_EARLY[ep["outcome"]], ep
        early = any("early_imaging" in e["reasons"].split("|") for e in mine)
        # a not-evaluable order could hide early imaging when its day is unknown or within the early days
        unknown = any(e["verdict"] == "not_evaluable" and int(e["days_since_index"] or 0) <= 28 for e in mine)
        if groups:
            assert ep["outcome"] == "excluded", ep
            assert all("red_flag_condition" in e["reasons"].split("|") for e in mine), ep
        elif ep.get("is_window_before_orders", "false") == "true":
            assert ep["outcome"] == "not_evaluable", ep  # not judged, whatever its orders show (DESIGN.md section 8)
        else:
            assert ep["outcome"] == ("early_imaging" if early else "not_evaluable" if unknown else "no_early_imaging"), ep
        for e in mine:
            flagged = "red_flag_condition" in e["reasons"].split("|")
            own = [g for g in e.get("red_flag_groups", "").split("|") if g]
            assert bool(own) == flagged, e
            assert own == sorted(set(own), key=RED_FLAG_GROUPS.index) and set(groups) <= set(own), e


def _orders_held_from(cases: list[dict], declared: str | None = None) -> dt.date | None:
    """The declared start's date (a separate file's [extract] data_since) when there is one, else the first day of the
    first site-local month holding at least half as many orders as the busiest month (DESIGN.md section 8,
    low_back_pain__int_orders_held), over the orders of these deck files; None when they hold no dated order."""
    months: dict[dt.date, int] = {}
    for case in cases:
        for r in case.get("imaging_orders", []):
            if r["ordered_at"].strip():
                month = _local_date(r["ordered_at"]).replace(day=1)
                months[month] = months.get(month, 0) + 1
    busiest = max(months.values(), default=0)
    guessed = min((m for m, n in months.items() if 2 * n >= busiest), default=None)
    return dt.date.fromisoformat(declared) if declared and guessed else guessed


def test_every_episode_says_whether_its_window_is_before_the_orders_held(csf_deck):
    """The combined input (every file of both decks that is not separate) holds its orders from 2016-10, the month of
    its earliest episode (orders_held_combined_input: background orders), so no combined episode is cut; a separate
    file's orders held are its own. Each expected episode's is_window_before_orders ("false" when absent) agrees."""
    combined = [c for c in [*LBP_DECK.values(), *csf_deck.values()] if not c.get("separate_input")]
    combined_from = _orders_held_from(combined)
    assert combined_from == dt.date(2016, 10, 1), (
        f"the combined deck input holds its orders from {combined_from}, not 2016-10-01: a month busier than twice the "
        "background orders of orders_held_combined_input.toml? add rows there"
    )
    problems = []
    for stem, case in LBP_DECK.items():
        declared = case.get("extract", {}).get("data_since")
        held = _orders_held_from([case], declared) if case.get("separate_input") else combined_from
        for ep in case["expected_episodes"]:
            before = held is None or dt.date.fromisoformat(ep["index_date"]) < held
            if ep.get("is_window_before_orders", "false") != str(before).lower():
                problems.append(f"{stem}: {ep['patient_id']} {ep['index_date']}: orders held from {held}")
    assert not problems, "\n".join(problems)
    assert any(ep.get("is_window_before_orders") == "true" for c in LBP_DECK.values() for ep in c["expected_episodes"])
