-- Hours from the index procedure to the first evaluated imaging order of each case of the period; on
-- a department's page, the cases whose first imaging order that department placed.
SELECT hours_to_first_imaging AS hours
FROM csf_leak__mart_cases
WHERE hours_to_first_imaging IS NOT NULL
  AND ($department IS NULL OR first_imaging_department = $department)
ORDER BY case_id
