-- Anchored imaging episodes per case: an episode starts at its first eligible order and
-- takes every order placed within episode_hours of that first order (not chained).
-- Portable form without recursion (docs/SQL_PORTABILITY.md): next_rn is the first order more than
-- episode_hours after each order (a running count over the orders and their "t + episode_hours"
-- probes); the episode starts are the first order, next(first), next(next(first)), ..., found by
-- pointer doubling: pass k adds the starts 2^k .. 2^(k+1)-1 steps away, so six passes find the
-- first 64 episodes of every case.
-- The bound: eligible orders lie in the audit window (index .. index + audit_window_days) and
-- successive starts are more than episode_hours apart, so a case has at most
-- floor(audit_window_days * 24 / episode_hours) + 1 episodes (31 with the defaults). With
-- parameters that allow more than 64, an order left beyond its episode's reach stops the run
-- (error) rather than give a wrong episode.
WITH numbered AS (
    SELECT case_id, order_id, ordered_at, epoch(ordered_at) AS t,
           row_number() OVER (PARTITION BY case_id ORDER BY ordered_at, order_id) AS rn,
           count(*) OVER (PARTITION BY case_id) AS n_orders
    FROM csf_leak__int_case_orders
    WHERE is_eligible
),
probes AS (
    SELECT n.case_id, n.rn, n.n_orders, n.t + prm.episode_hours * 3600 AS probe_t, 1 AS is_probe
    FROM numbered AS n
    CROSS JOIN csf_leak__parameters AS prm
    UNION ALL
    SELECT case_id, rn, n_orders, t, 0 FROM numbered
),
-- an order exactly episode_hours after another sorts before that order's probe: still the same episode
counted AS (
    SELECT case_id, rn, n_orders, is_probe,
           sum(1 - is_probe) OVER (PARTITION BY case_id ORDER BY probe_t, is_probe, rn ROWS UNBOUNDED PRECEDING) + 1 AS next_rn
    FROM probes
),
jump_1 AS (SELECT case_id, rn, next_rn AS to_rn FROM counted WHERE is_probe = 1 AND next_rn <= n_orders),
jump_2 AS (SELECT a.case_id, a.rn, b.to_rn FROM jump_1 AS a JOIN jump_1 AS b ON b.case_id = a.case_id AND b.rn = a.to_rn),
jump_4 AS (SELECT a.case_id, a.rn, b.to_rn FROM jump_2 AS a JOIN jump_2 AS b ON b.case_id = a.case_id AND b.rn = a.to_rn),
jump_8 AS (SELECT a.case_id, a.rn, b.to_rn FROM jump_4 AS a JOIN jump_4 AS b ON b.case_id = a.case_id AND b.rn = a.to_rn),
jump_16 AS (SELECT a.case_id, a.rn, b.to_rn FROM jump_8 AS a JOIN jump_8 AS b ON b.case_id = a.case_id AND b.rn = a.to_rn),
jump_32 AS (SELECT a.case_id, a.rn, b.to_rn FROM jump_16 AS a JOIN jump_16 AS b ON b.case_id = a.case_id AND b.rn = a.to_rn),
starts_1 AS (SELECT case_id, rn, 1 AS episode_number FROM numbered WHERE rn = 1),
starts_2 AS (
    SELECT case_id, rn, episode_number FROM starts_1
    UNION ALL SELECT s.case_id, j.to_rn, s.episode_number + 1 FROM starts_1 AS s JOIN jump_1 AS j ON j.case_id = s.case_id AND j.rn = s.rn
),
starts_4 AS (
    SELECT case_id, rn, episode_number FROM starts_2
    UNION ALL SELECT s.case_id, j.to_rn, s.episode_number + 2 FROM starts_2 AS s JOIN jump_2 AS j ON j.case_id = s.case_id AND j.rn = s.rn
),
starts_8 AS (
    SELECT case_id, rn, episode_number FROM starts_4
    UNION ALL SELECT s.case_id, j.to_rn, s.episode_number + 4 FROM starts_4 AS s JOIN jump_4 AS j ON j.case_id = s.case_id AND j.rn = s.rn
),
starts_16 AS (
    SELECT case_id, rn, episode_number FROM starts_8
    UNION ALL SELECT s.case_id, j.to_rn, s.episode_number + 8 FROM starts_8 AS s JOIN jump_8 AS j ON j.case_id = s.case_id AND j.rn = s.rn
),
starts_32 AS (
    SELECT case_id, rn, episode_number FROM starts_16
    UNION ALL SELECT s.case_id, j.to_rn, s.episode_number + 16 FROM starts_16 AS s JOIN jump_16 AS j ON j.case_id = s.case_id AND j.rn = s.rn
),
starts_64 AS (
    SELECT case_id, rn, episode_number FROM starts_32
    UNION ALL SELECT s.case_id, j.to_rn, s.episode_number + 32 FROM starts_32 AS s JOIN jump_32 AS j ON j.case_id = s.case_id AND j.rn = s.rn
),
-- each order belongs to the latest start at or before it (episode numbers and start times rise with rn)
assigned AS (
    SELECT n.case_id, n.order_id, n.t,
           max(s.episode_number) OVER (PARTITION BY n.case_id ORDER BY n.rn ROWS UNBOUNDED PRECEDING) AS episode_number,
           max(CASE WHEN s.rn IS NOT NULL THEN n.ordered_at END) OVER (PARTITION BY n.case_id ORDER BY n.rn ROWS UNBOUNDED PRECEDING) AS episode_start_at,
           max(CASE WHEN s.rn IS NOT NULL THEN n.t END) OVER (PARTITION BY n.case_id ORDER BY n.rn ROWS UNBOUNDED PRECEDING) AS episode_start_t
    FROM numbered AS n
    LEFT JOIN starts_64 AS s ON s.case_id = n.case_id AND s.rn = n.rn
)
SELECT
    a.case_id,
    a.order_id,
    CASE WHEN a.t - a.episode_start_t > prm.episode_hours * 3600
         THEN CAST(error('csf_leak__int_imaging_episodes: a case has more than 64 imaging episodes; '
                         || 'raise the number of doubling passes in this model') AS INTEGER)
         ELSE a.episode_number END AS episode_number,
    a.episode_start_at
FROM assigned AS a
CROSS JOIN csf_leak__parameters AS prm
