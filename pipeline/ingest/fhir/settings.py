"""The ``[fhir]`` section of the config: what differs between sites' Bulk Data exports.

Which code systems hold the codes the audit reads (the standard URIs and their OID forms;
a site's own exam codes through ``local_code_systems`` or the code_system column of its
local code map), where the department is (the encounter's location, its service type, the
resource's own location, or an extension), which ServiceRequest categories are imaging,
and which identifier names a practitioner.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.errors import ConfigError

CPT = ("http://www.ama-assn.org/go/cpt", "urn:oid:2.16.840.1.113883.6.12")
LOINC = ("http://loinc.org", "urn:oid:2.16.840.1.113883.6.1")
ICD10CM = ("http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.840.1.113883.6.90")
SNOMED = "http://snomed.info/sct"
NPI = "http://hl7.org/fhir/sid/us-npi"

# where a department can come from; "extension" needs department_extension
DEPARTMENT_SOURCES = ("encounter.location", "encounter.serviceType", "location", "extension")
# ServiceRequest.category codings that mean imaging: SNOMED CT "Imaging" (FHIR's example value
# set and US Core) and LOINC "Radiology" (the diagnostic service section)
IMAGING_CATEGORIES = (f"{SNOMED}|363679005", "http://loinc.org|LP29684-5")


@dataclass(frozen=True)
class FhirSettings:
    # code systems in order of preference: the first coding in one of them gives the code
    order_code_systems: tuple[str, ...] = CPT + LOINC
    procedure_code_systems: tuple[str, ...] = CPT
    diagnosis_code_systems: tuple[str, ...] = ICD10CM
    # the site's own code systems (exam and procedure codes): read after the standard ones, mapped
    # through the local code map; a code_system in local_code_map.csv that is a URI counts too
    local_code_systems: tuple[str, ...] = ()
    # where the ordering department / the procedure's department is, tried in order
    order_department: tuple[str, ...] = ("encounter.location", "encounter.serviceType")
    procedure_department: tuple[str, ...] = ("location", "encounter.location", "encounter.serviceType")
    department_extension: str = ""  # the URL of an extension holding the department (source "extension")
    # a ServiceRequest with a category none of which is one of these is not an imaging order (left
    # out, counted); one without a category stays (its code decides). [] reads every ServiceRequest
    imaging_categories: tuple[str, ...] = IMAGING_CATEGORIES
    # a Practitioner's identifier in this system names the provider; else the reference's id
    provider_identifier_system: str = NPI

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _texts(value, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of texts, got {value!r}")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ConfigError(f"{where}: {', '.join(map(repr, bad))} is not a department source; known: {', '.join(allowed)}")
    return tuple(v.strip() for v in value)


def parse(values: dict, where: str) -> FhirSettings:
    """The ``[fhir]`` section, checked setting by setting."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a section of settings")
    known = {f.name for f in dataclasses.fields(FhirSettings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    out: dict = {}
    for name in ("order_code_systems", "procedure_code_systems", "diagnosis_code_systems", "local_code_systems"):
        if name in values:
            out[name] = _texts(values[name], f"{where}.{name}")
    for name in ("order_department", "procedure_department"):
        if name in values:
            out[name] = _texts(values[name], f"{where}.{name}", DEPARTMENT_SOURCES)
    if "imaging_categories" in values:
        given = values["imaging_categories"]
        out["imaging_categories"] = () if given == [] else _texts(given, f"{where}.imaging_categories")
        bad = [c for c in out["imaging_categories"] if "|" not in c]
        if bad:
            raise ConfigError(f'{where}.imaging_categories: {bad[0]!r} must be "system|code" (e.g. "{IMAGING_CATEGORIES[0]}")')
    for name in ("department_extension", "provider_identifier_system"):
        if name in values:
            if not isinstance(values[name], str):
                raise ConfigError(f"{where}.{name}: expected a text, got {values[name]!r}")
            out[name] = values[name].strip()
    settings = FhirSettings(**out)
    uses_extension = "extension" in settings.order_department + settings.procedure_department
    if uses_extension and not settings.department_extension:
        raise ConfigError(f'{where}: a department source is "extension" but department_extension (its URL) is not set')
    return settings
