-- The first episode of each case with a complete-spine MRI carrying non-contrast sequences:
-- orders in later episodes are subsequent imaging.
SELECT case_id, min(episode_number) AS first_complete_episode
FROM csf_leak__int_episode_coverage
WHERE is_complete_noncontrast
GROUP BY case_id
