"""FHIR R4 Bulk Data input: a folder of NDJSON files read onto the input contract.

The package keeps to itself; the engine calls it at narrow points (inputs.find_inputs asks
whether the folder is an export, load.prepare_inputs hands an export over, load.prepare_table
takes the rows and rejects it made, the synth CLI asks pipeline.synth.fhir for an export):

    settings  the ``[fhir]`` section of the config (code systems, where the department is)
    inputs    is the input folder an export; the contract tables it feeds; what inspect shows
    export    the files of an export folder: which resource type each holds, NDJSON or not
    lines     each file's lines, numbered, to DuckDB in tables (never one Python object per resource)
    whole     a whole file through DuckDB's NDJSON reader, when every line is one resource (the fast way)
    extract   each resource type flattened by DuckDB's JSON functions (sql/extract_<Type>.sql)
    tables    the flattened resources joined into the contract's tables (sql/table_<table>.sql)
    orders    the ServiceRequests parsed, joined and typed as imaging_orders in one stream (no part written)
    prepare   the orchestration: export -> typed contract tables with their rejects
    codes     the orders' and procedures' codes as inspect shows them (the starter local_code_map.csv)
    mapping   the mapping table (FHIR path -> contract column) the docs print
"""
