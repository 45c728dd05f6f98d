"""The models the engine writes for every audit, from its registry and manifest.

* ``<id>__int_order_reasons``: one row per rule that fired, read from ``<id>__int_order_flags``
  through each rule's ``flag_column`` (rules.csv): no hand-written list of reasons anywhere.
* ``<id>__int_order_verdicts``: the verdict, reasons and explanation of each (case, order), by the
  engine's precedence (``verdicts.csv``).
* ``<id>__int_patient_keys``: the keyed pseudonym of every patient in ``<id>__int_patients``.

The SQL is in ``templates/`` (one model per file, ``${audit}`` for the audit's id).
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from pipeline.models.runner import Model
from pipeline.sqltext import literal

TEMPLATES = Path(__file__).resolve().parent / "templates"


def template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.sql").read_text(encoding="utf-8"))


def keys_sql(patients: str) -> str:
    """The pseudonym query over the patient ids of ``patients`` (a table or view with patient_id)."""
    return template("int_patient_keys").substitute(patients=patients)


def _fired(audit, rules: list[dict[str, str]]) -> str:
    flags = f"{audit.id}__int_order_flags"
    return "\n    UNION ALL\n".join(
        f"    SELECT case_id, order_id, {literal(r['rule_id'])} AS rule_id FROM {flags} WHERE {r['flag_column']}" for r in rules
    )


def models_for(audit) -> list[Model]:
    from pipeline.audits import check_rules

    rules = check_rules(audit)  # flag columns checked as identifiers: safe to write into the SQL
    reasons = template("int_order_reasons").substitute(audit=audit.id, fired=_fired(audit, rules))
    verdicts = template("int_order_verdicts").substitute(audit=audit.id)
    keys = keys_sql(f"{audit.id}__int_patients")
    flags = f"{audit.folder / 'rules.csv'}'s flag_column over {audit.id}__int_order_flags"
    return [
        Model(f"{audit.id}__int_order_reasons", None, reasons, audit.id, flags),
        Model(f"{audit.id}__int_order_verdicts", None, verdicts, audit.id, f"{audit.folder / 'rules.csv'}"),
        Model(f"{audit.id}__int_patient_keys", None, keys, audit.id, f"{audit.id}__int_patients' patient_id"),
    ]
