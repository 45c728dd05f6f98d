"""FHIR R4 Bulk Data input: a folder of NDJSON files read onto the input contract.

The package keeps to itself; the loader calls it at three narrow points (inputs: is this
folder an export; load: prepare the tables from it; the synth CLI: write one):

    settings  the ``[fhir]`` section of the config (code systems, where the department is)
    export    the files of an export folder: which resource type each holds, NDJSON or not
    lines     one file's lines, numbered, streamed to DuckDB (never one Python object per resource)
    extract   each resource type flattened by DuckDB's JSON functions (sql/extract_*.sql)
    tables    the flattened resources joined into the contract's tables (sql/table_*.sql)
    prepare   the orchestration: export -> typed contract tables with their rejects
    writer    contract tables -> Bulk NDJSON (``order-audit synth --format fhir``, the test deck)
    mapping   the mapping table (FHIR path -> contract column) the docs print
"""
