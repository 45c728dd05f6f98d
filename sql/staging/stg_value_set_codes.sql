-- Value-set members in dotless upper-case form; `match` is exact or prefix.
SELECT value_set, code_system, code, code_norm, match, valid_from, valid_to
FROM ref_value_sets
