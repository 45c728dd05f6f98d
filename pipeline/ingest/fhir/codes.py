"""The codes of an export as `order-audit inspect` shows them: the code systems of the orders' and the procedures'
codes, and the order codes no map knows (the rows of the site's starter local_code_map.csv).

Each resource's code is the coding a run reads (the same pick over the same systems, `sql/codes_<Type>.sql`),
read as a run reads the files (`extract`: DuckDB's NDJSON reader, never one Python object per resource) and
counted by DuckDB: memory for the distinct codes, not for the resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Config
from pipeline.ingest.code_systems import FORMS
from pipeline.ingest.fhir import export, extract, prepare, settings

TEMPLATE_CODES = 500  # as many order codes as inspect lists of an extract
# the names inspect gives the code systems it knows (a site's own system is shown as its URI)
SYSTEM_NAMES = {
    **dict.fromkeys(settings.CPT, "CPT"),
    **dict.fromkeys(settings.LOINC, "LOINC"),
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
    "urn:oid:2.16.840.1.113883.6.4": "ICD-10-PCS",
    settings.SNOMED: "SNOMED CT",
}
NO_SYSTEM = "no system"  # a coding without one
TYPES = {"imaging_orders": "ServiceRequest", "procedures": "Procedure"}


@dataclass
class ExportCodes:
    systems: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> system name -> resources
    # the order codes no map knows and not in CPT form, most ordered first: {code, orders, system, name}
    unknown_codes: list[dict] = field(default_factory=list)


def system_name(uri: str | None) -> str:
    return NO_SYSTEM if uri is None else SYSTEM_NAMES.get(uri, uri)


def read(bulk: export.BulkExport, cfg: Config, code_map: set[str], work: Path) -> ExportCodes:
    """The export's order and procedure codes (work: a scratch folder for the parts read)."""
    found = ExportCodes()
    con = prepare.connect(work)
    try:
        extract.set_variables(con, cfg.fhir, prepare.local_code_systems(cfg, bulk.folder))
        con.execute("CREATE TEMP TABLE known_codes (code VARCHAR)")
        con.executemany("INSERT INTO known_codes VALUES (?)", [[c] for c in sorted(code_map)])
        for table, resource_type in TYPES.items():
            paths = bulk.of(resource_type)
            labels = [str(p) for p in paths]
            out = work / f"codes_{resource_type}.parquet"
            done = extract.extract(con, resource_type, paths, labels, 1, out, query_name=f"codes_{resource_type}")
            # each code's most frequent name, the first in order among as frequent ones: the same bytes every time
            con.execute(
                "CREATE TEMP TABLE codes AS SELECT code_system, code, sum(n)::BIGINT AS n, "
                "list(name ORDER BY n DESC, name NULLS LAST)[1] AS name FROM ("
                f"SELECT code_system, code, name, count(*) AS n FROM ({done.relation}) "
                "WHERE problem IS NULL AND left_out IS NULL AND code <> '' GROUP BY ALL) GROUP BY ALL"
            )
            per_system: dict[str, int] = {}
            for uri, n in con.execute("SELECT code_system, sum(n)::BIGINT FROM codes GROUP BY ALL ORDER BY ALL").fetchall():
                per_system[system_name(uri)] = per_system.get(system_name(uri), 0) + n
            found.systems[table] = dict(sorted(per_system.items()))
            if table == "imaging_orders":  # an unmapped code in CPT form is imaging outside the audits (DESIGN.md)
                rows = con.execute(
                    "SELECT code, n, code_system, name FROM codes "
                    "WHERE code NOT IN (SELECT code FROM known_codes) AND NOT regexp_matches(code, ?) "
                    f"ORDER BY n DESC, code, code_system NULLS FIRST LIMIT {TEMPLATE_CODES}",
                    [FORMS["CPT"]],
                ).fetchall()
                found.unknown_codes = [
                    {"code": code, "orders": n, "system": system_name(uri), "code_system": uri, "name": name}
                    for code, n, uri, name in rows
                ]
            con.execute("DROP TABLE codes")
            for part in work.glob(f"{out.stem}.*"):
                part.unlink()
    finally:
        con.close()
    return found
