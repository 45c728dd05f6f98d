"""``order-audit synth --format fhir``: the generator's extract written as a FHIR R4 Bulk Data export.

writer    contract tables -> Bulk NDJSON (sql/write_<Type>.sql); the FHIR test deck uses it too
generate  the synthetic extract, its ground truth and code map, as an export
"""
