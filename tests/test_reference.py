"""Content checks for the reference seeds in pipeline/reference (fast, no pipeline run).

The expected code lists are hard-coded from DOMAIN.md sections 2-4 on purpose: a seed
edit that drops or remaps a code must fail here, not pass silently.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import tomllib
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import simple_icd_10_cm as icd

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "audits" / "csf_leak"  # the CSF-leak audit's seeds
VERDICTS_CSV = ROOT / "pipeline" / "models" / "verdicts.csv"  # the engine's
LOCAL_EXAMPLE = ROOT / "examples" / "local_code_map.csv"
SEED_TEXT = ROOT.parent / "shared" / "seeds" / "000_d4cfa7d0c431a4f7.txt"

VALUE_SET_COLUMNS = [
    "value_set",
    "code_system",
    "code",
    "match",
    "description",
    "valid_from",
    "valid_to",
    "source",
]
MAP_COLUMNS = [
    "code_system",
    "code",
    "study_type",
    "modality",
    "regions",
    "contrast",
    "description",
    "valid_from",
    "valid_to",
    "source",
]
STUDY_TYPES = {
    "mri_spine",
    "mri_brain",
    "ct_head",
    "ct_spine",
    "ct_myelography",
    "myelography",
    "myelography_injection",
    "dsm",
    "mr_myelography",
    "cisternography",
    "out_of_scope",
}
CONTRASTS = {"without", "with", "without_and_with", "intrathecal", ""}
MODALITIES = {"MR", "CT", "XR", "NM"}
SPINE_STUDY_TYPES = {"mri_spine", "ct_spine", "myelography", "dsm", "ct_myelography", "mr_myelography"}
REGION_VALUES = {"", "C", "T", "L", "CT", "CL", "TL", "CTL"}  # letters of CTL, in that order

# --- expected content (DOMAIN.md) ------------------------------------------------------

EXPECTED_VALUE_SETS = {
    "index_procedure": {
        "62322",
        "62323",
        "62326",
        "62327",
        "64483",
        "64484",
        "64493",
        "64494",
        "64495",
        "62270",
        "62328",
        "62272",
        "62329",
        "62284",
        "62304",
        "62311",
    },
    "out_of_scope_procedure": {"62320", "62321", "64479", "64480", "64490", "64491", "64492"},
    "blood_patch": {"62273"},
    "intrathecal_injection": {"62284", "62302", "62303", "62304", "62305"},
    "leak_diagnosis": {
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
    },
    "red_flag_indication": {
        "G06.0",
        "G06.1",
        "G06.2",
        "G00",
        "G03.9",
        "G04",
        "M46.2",
        "M46.3",
        "M46.4",
        "M46.5",
        "T81.4",
        "G83.4",
        "G95.20",
        "G95.29",
        "G97.51",
        "G97.52",
        "G97.61",
        "G97.62",
        "G97.63",
        "G97.64",
    },
    "back_pain_history": {
        "M54.50",
        "M54.51",
        "M54.59",
        "M54.40",
        "M54.41",
        "M54.42",
        "M54.16",
        "M54.17",
        "M51.16",
        "M51.17",
        "M48.061",
        "M48.062",
    },
}
EXPECTED_PREFIX_ROWS = {"G00", "G04", "M46.2", "M46.3", "M46.4", "M46.5", "T81.4"}

# (code_system, code) -> (study_type, modality, regions, contrast): DOMAIN.md section 4.
EXPECTED_IMAGING = {
    ("CPT", "72141"): ("mri_spine", "MR", "C", "without"),
    ("CPT", "72142"): ("mri_spine", "MR", "C", "with"),
    ("CPT", "72156"): ("mri_spine", "MR", "C", "without_and_with"),
    ("CPT", "72146"): ("mri_spine", "MR", "T", "without"),
    ("CPT", "72147"): ("mri_spine", "MR", "T", "with"),
    ("CPT", "72157"): ("mri_spine", "MR", "T", "without_and_with"),
    ("CPT", "72148"): ("mri_spine", "MR", "L", "without"),
    ("CPT", "72149"): ("mri_spine", "MR", "L", "with"),
    ("CPT", "72158"): ("mri_spine", "MR", "L", "without_and_with"),
    ("CPT", "70551"): ("mri_brain", "MR", "", "without"),
    ("CPT", "70552"): ("mri_brain", "MR", "", "with"),
    ("CPT", "70553"): ("mri_brain", "MR", "", "without_and_with"),
    ("CPT", "70450"): ("ct_head", "CT", "", "without"),
    ("CPT", "70460"): ("ct_head", "CT", "", "with"),
    ("CPT", "70470"): ("ct_head", "CT", "", "without_and_with"),
    ("CPT", "72125"): ("ct_spine", "CT", "C", "without"),
    ("CPT", "72126"): ("ct_spine", "CT", "C", "with"),
    ("CPT", "72127"): ("ct_spine", "CT", "C", "without_and_with"),
    ("CPT", "72128"): ("ct_spine", "CT", "T", "without"),
    ("CPT", "72129"): ("ct_spine", "CT", "T", "with"),
    ("CPT", "72130"): ("ct_spine", "CT", "T", "without_and_with"),
    ("CPT", "72131"): ("ct_spine", "CT", "L", "without"),
    ("CPT", "72132"): ("ct_spine", "CT", "L", "with"),
    ("CPT", "72133"): ("ct_spine", "CT", "L", "without_and_with"),
    ("LOINC", "30854-4"): ("mri_spine", "MR", "CTL", "without"),
    ("LOINC", "30855-1"): ("mri_spine", "MR", "CTL", "without_and_with"),
    ("CPT", "62302"): ("myelography", "XR", "C", "intrathecal"),
    ("CPT", "62303"): ("myelography", "XR", "T", "intrathecal"),
    ("CPT", "62304"): ("myelography", "XR", "L", "intrathecal"),
    ("CPT", "62305"): ("myelography", "XR", "CTL", "intrathecal"),
    ("CPT", "72240"): ("myelography", "XR", "C", "intrathecal"),
    ("CPT", "72255"): ("myelography", "XR", "T", "intrathecal"),
    ("CPT", "72265"): ("myelography", "XR", "L", "intrathecal"),
    ("CPT", "72270"): ("myelography", "XR", "CTL", "intrathecal"),
    ("CPT", "62284"): ("myelography_injection", "XR", "", "intrathecal"),
    ("CPT", "78630"): ("cisternography", "NM", "", "intrathecal"),
    ("CPT", "78647"): ("cisternography", "NM", "", "intrathecal"),
    ("CPT", "78650"): ("cisternography", "NM", "", "intrathecal"),
}

# The synthetic generator uses exactly these local codes.
EXPECTED_LOCAL = {
    "LOC-DSM": ("dsm", "XR", "CTL", "intrathecal"),
    "LOC-CTMYELO": ("ct_myelography", "CT", "CTL", "intrathecal"),
    "LOC-DCTM": ("ct_myelography", "CT", "CTL", "intrathecal"),
    "LOC-MRMYELO": ("mr_myelography", "MR", "CTL", "intrathecal"),
    "LOC-MRSPINE-WWO": ("mri_spine", "MR", "CTL", "without_and_with"),
    "LOC-XR-CHEST": ("out_of_scope", "XR", "", ""),
}

# DOMAIN.md section 2 / DESIGN.md reasons table, in registry order.
EXPECTED_RULES = [
    ("cancelled", "excluded"),
    ("red_flag_indication", "excluded"),
    ("outside_window", "excluded"),
    ("unmapped_code", "not_evaluable"),
    ("missing_time", "not_evaluable"),
    ("premature", "inappropriate"),
    ("contrast_only", "inappropriate"),
    ("wrong_region", "inappropriate"),
    ("ct_initial", "inappropriate"),
    ("ct_myelography_initial", "inappropriate"),
    ("cisternography_initial", "inappropriate"),
    ("mr_myelography_initial", "inappropriate"),
    ("noncontrast_only", "review"),
    ("dsm_initial", "review"),
    ("brain_only_initial", "review"),
    ("mri_complete_spine_wwo", "appropriate"),
    ("brain_mri_companion", "appropriate"),
    ("subsequent_after_mri", "appropriate"),
]
EXPECTED_VERDICTS = {"excluded": 1, "not_evaluable": 2, "inappropriate": 3, "review": 4, "appropriate": 5}
ACR_REFERENCE = (
    "ACR Appropriateness Criteria, Imaging of Suspected Intracranial Hypotension. "
    "J Am Coll Radiol 2024;21(11S):S396-S412, doi:10.1016/j.jacr.2024.08.020."
)
ACR_DOI = "doi:10.1016/j.jacr.2024.08.020"


# --- helpers ---------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def dotless(code: str) -> str:
    return code.replace(".", "").strip().upper()


def parse_date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def loinc_check_digit_ok(code: str) -> bool:
    body, check = code.split("-")
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            total += d // 10 + d % 10
        else:
            total += d
    return (10 - total % 10) % 10 == int(check)


@pytest.fixture(scope="module")
def value_sets() -> list[dict[str, str]]:
    cols, rows = read_csv(REF / "value_sets.csv")
    assert cols == VALUE_SET_COLUMNS
    return rows


@pytest.fixture(scope="module")
def imaging_map() -> list[dict[str, str]]:
    cols, rows = read_csv(REF / "code_map.csv")
    assert cols == MAP_COLUMNS
    return rows


@pytest.fixture(scope="module")
def local_map() -> list[dict[str, str]]:
    cols, rows = read_csv(LOCAL_EXAMPLE)
    assert cols == MAP_COLUMNS
    return rows


@pytest.fixture(scope="module")
def rules() -> list[dict[str, str]]:
    cols, rows = read_csv(REF / "rules.csv")
    assert cols == ["rule_id", "reason_code", "label", "verdict", "flag_column", "explanation", "citation"]
    return rows


@pytest.fixture(scope="module")
def verdicts() -> list[dict[str, str]]:
    cols, rows = read_csv(VERDICTS_CSV)
    assert cols == ["verdict", "precedence", "description"]
    return rows


# --- value sets ------------------------------------------------------------------------


def test_value_sets_match_domain(value_sets):
    got: dict[str, set[str]] = {}
    for r in value_sets:
        got.setdefault(r["value_set"], set()).add(r["code"])
    assert got == EXPECTED_VALUE_SETS


def test_value_sets_no_duplicates(value_sets):
    keys = Counter((r["value_set"], dotless(r["code"])) for r in value_sets)
    dups = [k for k, n in keys.items() if n > 1]
    assert not dups, f"duplicate (value_set, code): {dups}"


def test_value_set_columns_allowed(value_sets):
    for r in value_sets:
        assert r["code_system"] in {"CPT", "ICD-10-CM"}, r
        assert r["match"] in {"exact", "prefix"}, r
        assert r["description"].strip(), r
        assert r["source"].strip(), r
        assert r["code"] == r["code"].strip().upper(), r
        if r["code_system"] == "CPT":
            assert re.fullmatch(r"\d{4}[0-9A-Z]", r["code"]), r
            assert r["match"] == "exact", r
            assert r["source"].startswith("AMA CPT (code number only)"), r
        else:
            assert re.fullmatch(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?", r["code"]), r
            assert r["source"].startswith("CMS ICD-10-CM FY2026"), r


def test_icd_codes_valid_and_leaf(value_sets):
    icd_rows = [r for r in value_sets if r["code_system"] == "ICD-10-CM"]
    assert icd_rows
    for r in icd_rows:
        code = r["code"]
        assert icd.is_valid_item(code), f"{code} is not in the ICD-10-CM code set"
        if r["match"] == "exact":
            # No exceptions needed: every exact code of the brief is a billable leaf in FY2026.
            assert icd.is_leaf(code), f"{code} is exact but not a billable leaf: make it a prefix row"
        else:
            assert not icd.is_leaf(code), f"{code} is a prefix row but has no children"
            assert icd.get_descendants(code), code


def test_icd_prefix_rows_are_the_domain_prefixes(value_sets):
    prefixes = {r["code"] for r in value_sets if r["match"] == "prefix"}
    assert prefixes == EXPECTED_PREFIX_ROWS


def test_icd_descriptions_are_official_titles(value_sets):
    for r in value_sets:
        if r["code_system"] == "ICD-10-CM":
            assert r["description"] == icd.get_description(r["code"]), r["code"]


def test_prefix_rows_cover_all_descendants(value_sets):
    """A prefix row matches, dotless, every billable code under the category (incl. 7th characters)."""
    for r in value_sets:
        if r["match"] != "prefix":
            continue
        p = dotless(r["code"])
        leaves = [c for c in icd.get_descendants(r["code"]) if icd.is_leaf(c)]
        assert leaves
        assert all(dotless(c).startswith(p) for c in leaves)
    # and concrete examples the pipeline must catch
    red = [dotless(r["code"]) for r in value_sets if r["value_set"] == "red_flag_indication" and r["match"] == "prefix"]
    for example in ["T81.40XA", "T81.44XD", "M46.26", "G00.9", "G04.91"]:
        assert icd.is_valid_item(example), example
        assert any(dotless(example).startswith(p) for p in red), example


def test_value_set_dates(value_sets):
    for r in value_sets:
        assert r["valid_from"], r
        start = parse_date(r["valid_from"])
        if r["valid_to"]:
            assert start <= parse_date(r["valid_to"]), r
        if r["code_system"] == "ICD-10-CM":
            assert start >= dt.date(2015, 10, 1), r
    by_code = {(r["value_set"], r["code"]): r for r in value_sets}
    assert by_code[("index_procedure", "62311")]["valid_to"] == "2016-12-31"
    for code in ["62322", "62323", "62326", "62327"]:
        assert by_code[("index_procedure", code)]["valid_from"] == "2017-01-01"
        assert by_code[("index_procedure", code)]["valid_to"] == ""
    for code in ["62320", "62321"]:
        assert by_code[("out_of_scope_procedure", code)]["valid_from"] == "2017-01-01"
    # FY2021 / FY2022 splits
    for code in ["G96.00", "G96.01", "G96.02", "G96.08", "G96.09", "R51.0"]:
        assert by_code[("leak_diagnosis", code)]["valid_from"] == "2020-10-01"
    for code in ["M54.50", "M54.51", "M54.59"]:
        assert by_code[("back_pain_history", code)]["valid_from"] == "2021-10-01"
    # Only the deleted legacy code is closed.
    assert [r["code"] for r in value_sets if r["valid_to"]] == ["62311"]


# --- imaging code map ------------------------------------------------------------------


def _check_map_rows(rows):
    for r in rows:
        assert r["study_type"] in STUDY_TYPES, r
        assert r["contrast"] in CONTRASTS, r
        assert r["regions"] in REGION_VALUES, r
        assert r["modality"] in MODALITIES, r
        assert r["description"].strip(), r
        assert r["source"].strip(), r
        assert r["valid_from"], r
        start = parse_date(r["valid_from"])
        if r["valid_to"]:
            assert start <= parse_date(r["valid_to"]), r
        if r["study_type"] in {"mri_brain", "ct_head"}:
            assert r["regions"] == "", r
        if r["study_type"] in SPINE_STUDY_TYPES:
            assert r["regions"], r
        if r["study_type"] in {"mri_spine", "mri_brain", "ct_head", "ct_spine"}:
            assert r["contrast"] in {"without", "with", "without_and_with"}, r
        if r["study_type"] in {
            "myelography",
            "myelography_injection",
            "dsm",
            "ct_myelography",
            "mr_myelography",
            "cisternography",
        }:
            assert r["contrast"] == "intrathecal", r
        if r["study_type"] != "out_of_scope":
            assert r["contrast"], r


def test_imaging_map_covers_domain_codes(imaging_map):
    got = {(r["code_system"], r["code"]): (r["study_type"], r["modality"], r["regions"], r["contrast"]) for r in imaging_map}
    missing = set(EXPECTED_IMAGING) - set(got)
    assert not missing, f"imaging codes of DOMAIN.md section 4 missing from the map: {sorted(missing)}"
    wrong = {k: (got[k], v) for k, v in EXPECTED_IMAGING.items() if got[k] != v}
    assert not wrong, f"mapped differently from DOMAIN.md: {wrong}"
    extra = set(got) - set(EXPECTED_IMAGING)
    assert not extra, f"codes not in DOMAIN.md section 4: {sorted(extra)}"


def test_imaging_map_values(imaging_map):
    _check_map_rows(imaging_map)
    for r in imaging_map:
        assert r["code_system"] in {"CPT", "LOINC"}, r
        if r["code_system"] == "CPT":
            assert re.fullmatch(r"\d{5}", r["code"]), r
            assert r["source"].startswith("AMA CPT (code number only)"), r
        else:
            assert re.fullmatch(r"\d{1,7}-\d", r["code"]), r
            assert loinc_check_digit_ok(r["code"]), f"bad LOINC check digit: {r['code']}"


def test_imaging_map_no_duplicates(imaging_map, local_map):
    for rows in (imaging_map, local_map):
        keys = Counter((r["code_system"], r["code"].strip().upper()) for r in rows)
        assert all(n == 1 for n in keys.values()), keys
        # orders carry no code system: a code must also be unique on its own
        codes = Counter(r["code"].strip().upper() for r in rows)
        assert all(n == 1 for n in codes.values()), codes


def test_local_example_map(local_map, imaging_map):
    _check_map_rows(local_map)
    got = {r["code"]: (r["study_type"], r["modality"], r["regions"], r["contrast"]) for r in local_map}
    assert got == EXPECTED_LOCAL
    assert {r["code_system"] for r in local_map} == {"LOCAL"}
    # local example codes must not collide with shipped codes (they would override them)
    assert not set(got) & {r["code"] for r in imaging_map}
    # local codes must not look like CPT codes (an unmapped CPT-form code is treated as non-neuro)
    for code in got:
        assert not re.fullmatch(r"\d{4}[0-9A-Z]", code), code


def test_intrathecal_injections_are_mapped_imaging(value_sets, imaging_map):
    mapped = {r["code"]: r["study_type"] for r in imaging_map}
    for r in value_sets:
        if r["value_set"] == "intrathecal_injection":
            assert mapped.get(r["code"]) in {"myelography", "myelography_injection"}, r["code"]


# --- rules and verdicts ----------------------------------------------------------------


def test_rules_registry(rules, verdicts):
    assert [(r["reason_code"], r["verdict"]) for r in rules] == EXPECTED_RULES
    assert [r["rule_id"] for r in rules] == [f"CSF-{i:02d}" for i in range(1, 19)]
    counts = Counter(r["reason_code"] for r in rules)
    assert all(n == 1 for n in counts.values())
    known = {v["verdict"] for v in verdicts}
    for r in rules:
        assert r["verdict"] in known, r
        assert r["explanation"].strip() and r["citation"].strip(), r
        assert "|" not in r["explanation"] + r["citation"], "'|' is the list separator of the outputs"
        assert r["explanation"].rstrip().endswith("."), r["rule_id"]
        assert len(r["explanation"]) <= 260, f"{r['rule_id']}: keep the explanation to one short sentence"
        if r["verdict"] in {"inappropriate", "review", "appropriate"}:
            assert ACR_DOI in r["citation"], f"{r['rule_id']}: clinical rules cite the ACR criteria"
            assert r["citation"].startswith(ACR_REFERENCE), f"{r['rule_id']}: the full reference, as a reader cites it"
        else:
            assert r["citation"].startswith("order-audit audit definition, "), r["rule_id"]
        # citations are printed for a committee: no file of this repository or of its design notes
        assert not re.search(r"seeds/|DESIGN|DOMAIN|\.md\b|\.txt\b|\.csv\b|docs/", r["citation"]), r["rule_id"]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("'", '"')).strip()


def test_rule_quotes_are_verbatim_from_the_guideline_summary(rules):
    if not SEED_TEXT.exists():
        pytest.skip(f"guideline text not available at {SEED_TEXT}")
    seed = _normalise(SEED_TEXT.read_text(encoding="utf-8"))
    n_quotes = 0
    for r in rules:
        for quote in re.findall(r'"([^"]+)"', r["citation"]):
            for fragment in quote.split("[...]"):
                fragment = _normalise(fragment)
                if fragment:
                    n_quotes += 1
                    assert fragment in seed, f"{r['rule_id']}: not in the guideline text: {fragment!r}"
    assert n_quotes >= 10


def test_verdicts(verdicts):
    got = {v["verdict"]: int(v["precedence"]) for v in verdicts}
    assert got == EXPECTED_VERDICTS
    assert all(v["description"].strip() for v in verdicts)


# --- manifest --------------------------------------------------------------------------


def test_manifest():
    from pipeline import audits

    with (REF / "audit.toml").open("rb") as f:
        m = tomllib.load(f)
    assert audits.load(REF).rule_set_version == "csf-leak-2026.11.0"
    assert m["code_sets"]["icd10cm_release"] == "FY2026"
    assert m["guideline"]["reference"].startswith("ACR Appropriateness Criteria, Imaging of Suspected Intracranial Hypotension")
    assert m["guideline"]["doi"] == "10.1016/j.jacr.2024.08.020"
    assert set(m["code_sets"]) >= {"value_sets", "code_map"}
    for name in ("value_sets", "code_map"):
        assert (REF / f"{name}.csv").exists(), name
        assert re.fullmatch(r"\d{4}\.\d+\.\d+", m["code_sets"][name]), (name, m["code_sets"][name])


@pytest.mark.parametrize("tail", ["\n", ",,,,,,,,,\n", " , ,,,,,,,,\n\n"])
def test_a_blank_line_in_a_code_map_is_skipped_as_in_an_extract(tmp_path, tail):
    """A trailing blank line, or the ',,,,' row a spreadsheet writes, stopped every run: "line 10, column
    'study_type': '' is not one of cisternography, ...; fix the code map" (an adopting site's review). An extract's
    blank line is skipped; so is the map's, and a real error keeps its line number after one."""
    from pipeline import audits as audits_mod  # noqa: PLC0415
    from pipeline.errors import ConfigError  # noqa: PLC0415
    from pipeline.models.reference import Vocabulary, read_code_map  # noqa: PLC0415

    vocabulary = Vocabulary.of(audits_mod.discover())
    path = tmp_path / "local_code_map.csv"
    path.write_text(LOCAL_EXAMPLE.read_text(encoding="utf-8").rstrip("\n") + "\n" + tail, encoding="utf-8")
    assert read_code_map(path, "site", vocabulary).height == pl.read_csv(LOCAL_EXAMPLE, infer_schema=False).height
    lines = len(path.read_text(encoding="utf-8").splitlines())
    path.write_text(path.read_text(encoding="utf-8") + "LOCAL,X1,not_a_type,MR,L,without,x,,,site\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"line {lines + 1}, column 'study_type': 'not_a_type' is not one of"):
        read_code_map(path, "site", vocabulary)
