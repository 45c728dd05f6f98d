"""The low back pain audit's own data-quality checks (audits/low_back_pain/expectations/), through the
real CLI: each warns on a feed that deserves it, names its rows, and stays quiet on a feed without the
optional column it is about."""

from __future__ import annotations

from conftest import run_cli

from pipeline.deck import SITE_TIMEZONE, write_input

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "lbp-expectations-test-key"}
CHECKS = (
    "low_back_pain.diagnoses.setting.recorded",
    "low_back_pain.diagnoses.position.recorded",
    "low_back_pain.diagnoses.position.consistent",
    "low_back_pain.patients.birth_date.known",
)


def _patient(n: int, **dx) -> dict:
    """One patient with a low back pain diagnosis (the given encounter columns) and a lumbar X-ray."""
    pid = f"exp-pt-{n}"
    return {
        "patients": [{"patient_id": pid, "birth_date": dx.pop("birth_date", "1970-05-05")}],
        "diagnoses": [{"patient_id": pid, "diagnosis_code": "M54.50", "recorded_at": "2025-03-03 09:00:00", **dx}],
        "imaging_orders": [
            {
                "order_id": f"exp-or-{n}",
                "patient_id": pid,
                "ordered_at": "2025-03-10 10:00:00",
                "order_code": "72100",
                "ordering_department": "Primary Care",
            }
        ],
    }


def _warnings(tmp_path, cases: list[dict]) -> dict[str, str]:
    inp, out = tmp_path / "in", tmp_path / "out"
    write_input(inp, cases)
    r = run_cli("run", "--input", inp, "--out", out, "--site-timezone", SITE_TIMEZONE, "--audit", "low_back_pain", env=KEY)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "data-quality" in line]
    assert not [line for line in lines if "could not run" in line and "low_back_pain." in line], lines
    return {c: next((line for line in lines if f" {c} " in line), "") for c in CHECKS}


def test_each_check_warns_on_a_feed_that_deserves_it(tmp_path):
    cases = [_patient(i, setting="outpatient", is_principal="true", diagnosis_rank="1") for i in range(1, 8)]
    cases.append(_patient(8, setting="", is_principal="", diagnosis_rank=""))  # 1 of 9: above 5%
    cases.append(_patient(9, setting="emergency", is_principal="true", diagnosis_rank="2", birth_date=""))
    found = _warnings(tmp_path, cases)
    assert "1 of 9" in found["low_back_pain.diagnoses.setting.recorded"], found
    assert "1 of 9" in found["low_back_pain.diagnoses.position.recorded"], found
    assert "1 of 9" in found["low_back_pain.diagnoses.position.consistent"], found
    birth = found["low_back_pain.patients.birth_date.known"]
    assert "1 of" in birth and "exp-pt-9" not in birth, birth  # the patient is shown by pseudonym only


def test_a_feed_without_the_columns_is_not_judged_on_them(tmp_path):
    found = _warnings(tmp_path, [_patient(i) for i in range(1, 6)])
    assert not any(found.values()), found
