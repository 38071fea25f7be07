-- The 12 benchmark metrics of tandem, written by hand for DuckDB over the lake's canonical tables.
--
-- The views `deployments`, `changes`, `commits`, `incidents`, `tickets` and `change_requests` are
-- the current Delta versions of the lake's tables (duckdb_metrics.py creates them). Dollar-brace
-- placeholders are filled in by the script: the range [${start_ms}, ${end_ms}) in epoch
-- milliseconds (UTC), divided into ${weeks} ISO weeks of ${week_ms} ms. Definitions follow
-- metrics.md (the project's metric definitions) with tandem's defaults: production environment as
-- tandem's `is_production` flag says, attribution window 24 h, outage severities sev1 and sev2,
-- change request window tolerance 60 min, default SLA targets by priority.
--
-- Every instant is an integer of epoch milliseconds (as tandem computes), converted to hours or
-- minutes only in the final rows. The result is the table `result`: one row per metric, scope
-- (`org`/`all` and every service) and period (each week, then the whole range), as tandem lays
-- out its metric table.

-- ---------------------------------------------------------------------------------------------
-- Production deployments (metrics.md, DORA, "Production deployment"): successful, to production,
-- finished; anchored on `finished_at`. `pos` is the finish order (ties: by id), the order in
-- which "latest" and "first" are meant below.
CREATE TEMP TABLE prod AS
SELECT (row_number() OVER (ORDER BY fin, id) - 1)::BIGINT AS pos, id, repo, service, sha,
       lower(sha) AS lsha, fin
FROM (SELECT id, repo, service, sha, epoch_ms(finished_at) AS fin
      FROM deployments
      WHERE is_production AND status = 'success' AND finished_at IS NOT NULL);

-- Services with rows: every service named in the tables.
CREATE TEMP TABLE services AS
SELECT DISTINCT service FROM (
    SELECT service FROM deployments UNION ALL SELECT service FROM changes
    UNION ALL SELECT service FROM incidents UNION ALL SELECT service FROM tickets
    UNION ALL SELECT service FROM change_requests)
WHERE service IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Which production deployment shipped each merged change (metrics.md, DORA, "Lead time for
-- changes"). tandem walks the commit graph: each production deployment, in finish order, claims
-- the known commits reachable from its sha that no earlier one claimed. SQL cannot walk parent
-- links at this size, so this script uses what the tables give on a linear main branch (squash
-- or merge commits, each the parent of the next): a commit's ancestors are the commits of its
-- repo authored no later than it. Hence:
--   ancestry: a change whose merge commit is in `commits` is shipped by the first production
--     deployment (finish order) of its repo whose deployed commit is in `commits` and was
--     authored at or after the change's merge commit;
--   time: any other merged change is shipped by the first production deployment of its repo that
--     finished at or after the merge, among the deployments whose sha is not in `commits` (their
--     content is unknown); a change without a merge sha, among all of its repo's deployments.
-- On a repo whose history branches (merge commits with two parents) authored time is not
-- ancestry, and this rule can differ from tandem's; the compares' `deployment_id` is not used
-- (tandem reads it only for commits the walk cannot reach).
-- Commits are looked up by a 64-bit hash of (repo, lower-cased sha) and repos by a hash of their
-- name, which DuckDB joins and partitions much faster than the strings; two of a lake's millions
-- of commits share a key with a chance of about one in a million. A commit two sources hold is
-- one commit.
CREATE MACRO commit_key(repo, sha) AS
    CASE WHEN repo IS NOT NULL AND sha IS NOT NULL THEN hash(repo, lower(sha)) END;

CREATE TEMP TABLE commit_at AS
SELECT commit_key(repo, sha) AS key, hash(repo) AS rk, max(epoch_ms(authored_at)) AS t
FROM commits
WHERE repo IS NOT NULL AND sha IS NOT NULL AND authored_at IS NOT NULL
GROUP BY ALL;

CREATE TEMP TABLE heads AS
SELECT p.pos, hash(p.repo) AS rk, p.fin, c.t AS head_t
FROM prod p LEFT JOIN commit_at c ON c.key = commit_key(p.repo, p.sha)
WHERE p.repo IS NOT NULL AND p.sha IS NOT NULL;

-- The deployments that reach further into the history than every earlier one (their commit is
-- later than every earlier one's): the first deployment reaching each point, so "the first
-- deployment reaching t" is an as-of lookup.
CREATE TEMP TABLE frontier AS
SELECT rk, pos, head_t AS reach FROM (
    SELECT rk, pos, head_t,
           max(head_t) OVER (PARTITION BY rk ORDER BY pos
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM heads WHERE head_t IS NOT NULL)
WHERE before IS NULL OR head_t > before;

-- Each known commit with the first production deployment containing it (none: not deployed).
CREATE TEMP TABLE commit_shipped AS
SELECT c.key, f.pos
FROM commit_at c ASOF LEFT JOIN frontier f ON f.rk = c.rk AND c.t <= f.reach;

DROP TABLE commit_at;

-- Merged changes, linked by ancestry where their merge commit is known and deployed (`pos`).
-- Repos by their hash `rk` here: the few changes named by an incident are looked up by name below.
CREATE TEMP TABLE merged AS
SELECT m.rk, m.number, m.is_revert, m.reverts, m.merged, m.began, m.key IS NOT NULL AS has_sha,
       c.pos
FROM (SELECT hash(repo) AS rk, number, is_revert, reverts, epoch_ms(merged_at) AS merged,
             epoch_ms(coalesce(first_commit_at, created_at)) AS began,
             commit_key(repo, merge_commit_sha) AS key
      FROM changes WHERE merged_at IS NOT NULL AND repo IS NOT NULL) m
LEFT JOIN commit_shipped c ON c.key = m.key;

DROP TABLE commit_shipped;

-- The rest by time: the first deployment finished at or after the merge among those of unknown
-- content (or among all, for a change without a merge sha).
CREATE TEMP TABLE unknown_at AS
SELECT rk, fin, min(pos) AS pos FROM heads WHERE head_t IS NULL GROUP BY ALL;
CREATE TEMP TABLE any_at AS
SELECT rk, fin, min(pos) AS pos FROM heads GROUP BY ALL;

CREATE TEMP TABLE linked_by_time AS
SELECT m.rk, m.number, m.is_revert, m.reverts, m.began, u.pos
FROM (SELECT * FROM merged WHERE pos IS NULL AND has_sha) m
ASOF JOIN unknown_at u ON u.rk = m.rk AND m.merged <= u.fin
UNION ALL
SELECT m.rk, m.number, m.is_revert, m.reverts, m.began, u.pos
FROM (SELECT * FROM merged WHERE pos IS NULL AND NOT has_sha) m
ASOF JOIN any_at u ON u.rk = m.rk AND m.merged <= u.fin;

-- Merged changes with the production deployment that shipped them; unshipped ones have no row.
CREATE TEMP VIEW linked AS
SELECT rk, number, is_revert, reverts, began, pos FROM merged WHERE pos IS NOT NULL
UNION ALL
SELECT * FROM linked_by_time;

-- ---------------------------------------------------------------------------------------------
-- Change failure (metrics.md, DORA, "Change failure" and "Incident attribution"): a production
-- deployment failed when an incident is attributed to it, one of its changes was reverted by a
-- change that was itself deployed, or it was rolled back.

-- (b) reverts: a deployed revert names (repo, number) of a change; the deployment that shipped
-- that change failed.
CREATE TEMP TABLE reverted AS
SELECT DISTINCT o.pos
FROM linked r JOIN linked o ON o.rk = r.rk AND o.number = r.reverts
WHERE r.is_revert AND r.reverts IS NOT NULL;

-- (c) rollbacks: a later deployment of the same service within 7 days whose sha (not the
-- deployment's own) had been deployed to that service before the deployment. Deployments are
-- paired within 7-day buckets (this one and the one before) rather than all pairs of a service.
CREATE TEMP TABLE rolled AS
WITH d AS (
    SELECT pos, service, lsha, fin, fin // ${week_ms} AS b,
           min(pos) OVER (PARTITION BY service, lsha) AS first_pos
    FROM prod WHERE service IS NOT NULL AND sha IS NOT NULL),
redeploys AS (
    SELECT pos, service, lsha, fin, first_pos, b AS bucket FROM d WHERE first_pos < pos
    UNION ALL
    SELECT pos, service, lsha, fin, first_pos, b - 1 FROM d WHERE first_pos < pos)
SELECT DISTINCT d.pos
FROM redeploys r JOIN d ON d.service = r.service AND d.b = r.bucket
WHERE d.pos > r.first_pos AND d.pos < r.pos AND r.fin <= d.fin + ${rollback_ms}
  AND d.lsha <> r.lsha;

-- (a) attribution, step 1 `explicit`: the incident's cause references, in order, trimmed; the
-- first that names a production deployment wins. A reference names deployments by id, by a sha
-- prefix of 7+ hex digits (letter case ignored), by a change number (`#N` of the incident's
-- service, `owner/repo#N`: the deployment that shipped the change and redeploys of its sha) or by
-- a change request (number or vendor id: its service's deployments within its window, actual if
-- known else planned, widened by the tolerance). Of the deployments a reference names, the latest
-- that finished at or before the incident started; one that finished after never caused it.
CREATE TEMP TABLE refs AS
SELECT incident_id, service, started, k, regexp_replace(ref, '^\s+|\s+$', '', 'g') AS ref
FROM (SELECT id AS incident_id, service, epoch_ms(started_at) AS started,
             unnest(cause_refs) AS ref, unnest(generate_series(1, len(cause_refs))) AS k
      FROM incidents
      WHERE len(cause_refs) > 0 AND id IS NOT NULL AND started_at IS NOT NULL)
WHERE ref IS NOT NULL;

CREATE TEMP TABLE named_direct AS
SELECT r.incident_id, r.k, max(p.pos) AS pos
FROM (SELECT * FROM refs) r JOIN prod p ON p.id = r.ref
WHERE p.fin <= r.started
GROUP BY ALL
UNION ALL
SELECT r.incident_id, r.k, max(p.pos) AS pos
FROM (SELECT *, lower(ref) AS lref FROM refs
      WHERE length(ref) >= 7 AND regexp_full_match(ref, '[0-9A-Fa-f]+')) r
JOIN prod p ON left(p.lsha, 7) = left(r.lref, 7)
WHERE starts_with(p.lsha, r.lref) AND p.fin <= r.started
GROUP BY ALL;

-- Change numbers: the changes named, the deployment that shipped each, and the production
-- deployments of the same repo and sha.
CREATE TEMP TABLE named_change AS
WITH numbered AS (
    SELECT incident_id, k, service, started,
           lower(regexp_extract(ref, '^(.*)#([^#]*)$', 1)) AS lrepo,
           regexp_extract(ref, '^(.*)#([^#]*)$', 2) AS digits
    FROM refs WHERE contains(ref, '#')),
wanted AS (
    SELECT incident_id, k, service, started, lrepo, TRY_CAST(digits AS BIGINT) AS number
    FROM numbered
    WHERE regexp_full_match(digits, '[+-]?[0-9]+') AND TRY_CAST(digits AS BIGINT) IS NOT NULL),
named AS (
    SELECT hash(repo) AS rk, lower(repo) AS lrepo, number, service FROM changes
    WHERE merged_at IS NOT NULL AND repo IS NOT NULL
      AND number IN (SELECT number FROM wanted)),
shipped AS (
    SELECT w.incident_id, w.k, w.started, l.pos
    FROM wanted w JOIN named n ON n.number = w.number
    JOIN linked l ON l.rk = n.rk AND l.number = n.number
    WHERE (w.lrepo <> '' AND n.lrepo = w.lrepo)
       OR (w.lrepo = '' AND n.service = w.service)),
with_redeploys AS (
    SELECT s.incident_id, s.k, s.started, s.pos FROM shipped s
    UNION ALL
    SELECT s.incident_id, s.k, s.started, p.pos
    FROM shipped s JOIN prod d ON d.pos = s.pos
    JOIN prod p ON lower(p.repo) = lower(d.repo) AND p.lsha = d.lsha AND p.pos <> d.pos)
SELECT w.incident_id, w.k, max(w.pos) AS pos
FROM with_redeploys w JOIN prod p ON p.pos = w.pos
WHERE p.fin <= w.started
GROUP BY ALL;

-- Change requests by number and by vendor id (the id without its `{source}:` prefix).
CREATE TEMP TABLE cr_names AS
WITH cr AS (
    SELECT id, source, number, service,
           CASE WHEN actual_start IS NOT NULL AND actual_end IS NOT NULL
                THEN epoch_ms(actual_start) ELSE epoch_ms(planned_start) END - ${tolerance_ms} AS w_from,
           CASE WHEN actual_start IS NOT NULL AND actual_end IS NOT NULL
                THEN epoch_ms(actual_end) ELSE epoch_ms(planned_end) END + ${tolerance_ms} AS w_to
    FROM change_requests WHERE service IS NOT NULL)
SELECT DISTINCT name, service, w_from, w_to FROM (
    SELECT lower(number) AS name, service, w_from, w_to FROM cr WHERE number IS NOT NULL
    UNION ALL
    SELECT lower(CASE WHEN starts_with(id, source || ':') THEN id[length(source) + 2:] ELSE id END),
           service, w_from, w_to
    FROM cr WHERE id IS NOT NULL AND source IS NOT NULL)
WHERE w_from IS NOT NULL AND w_to IS NOT NULL;

CREATE TEMP TABLE named_cr AS
SELECT r.incident_id, r.k, max(p.pos) AS pos
FROM (SELECT * FROM refs WHERE NOT contains(ref, '#')) r
JOIN cr_names c ON c.name = lower(r.ref)
JOIN prod p ON p.service = c.service
WHERE p.fin >= c.w_from AND p.fin <= least(c.w_to, r.started)
GROUP BY ALL;

-- Per reference: a deployment named by id or sha first, else through a change or a change
-- request; per incident, the first reference that names one.
CREATE TEMP TABLE explicit AS
WITH direct AS (SELECT incident_id, k, max(pos) AS pos FROM named_direct GROUP BY ALL),
indirect AS (SELECT * FROM named_change UNION ALL SELECT * FROM named_cr),
per_ref AS (
    SELECT * FROM direct
    UNION ALL
    SELECT i.* FROM indirect i ANTI JOIN direct d ON d.incident_id = i.incident_id AND d.k = i.k)
SELECT incident_id, arg_min(pos, k) AS pos FROM per_ref GROUP BY ALL;

-- Step 2 `window`: an incident that names no cause goes to the latest production deployment of
-- its service that finished at or before it started and less than the window before.
CREATE TEMP TABLE svc_deploys AS
SELECT service, fin, max(pos) AS pos FROM prod WHERE service IS NOT NULL GROUP BY ALL;

CREATE TEMP TABLE windowed AS
SELECT d.pos
FROM (SELECT i.id, i.service, epoch_ms(i.started_at) AS started FROM incidents i
      ANTI JOIN explicit e ON e.incident_id = i.id
      WHERE i.service IS NOT NULL AND i.started_at IS NOT NULL) i
ASOF JOIN svc_deploys d ON d.service = i.service AND i.started >= d.fin
WHERE d.fin > i.started - ${window_ms};

CREATE TEMP TABLE failed AS
SELECT pos FROM explicit UNION SELECT pos FROM windowed
UNION SELECT pos FROM reverted UNION SELECT pos FROM rolled;

-- ---------------------------------------------------------------------------------------------
-- The grid: each ISO week of the range (wk 0 …) and the whole range (wk -1); the organisation
-- (every event, with a service or not) and each service.
CREATE TEMP TABLE periods AS
SELECT wk, ${start_ms} + wk * ${week_ms} AS p_from, ${start_ms} + (wk + 1) * ${week_ms} AS p_to,
       'week' AS grain
FROM range(0, ${weeks}) t(wk)
UNION ALL
SELECT -1, ${start_ms}, ${end_ms}, 'range';

CREATE TEMP TABLE scopes AS
SELECT 'org' AS scope_type, 'all' AS scope
UNION ALL
SELECT 'service', service FROM services;

-- Events by scope and period. Each aggregate below groups events (`service`, `at` in the range)
-- by (service, week), (service), (week) and (): the service rows and the organisation's.
CREATE MACRO scope_type_of(g) AS CASE WHEN g = 0 THEN 'service' ELSE 'org' END;
CREATE MACRO week_of(instant) AS (instant - ${start_ms}) // ${week_ms};
CREATE MACRO in_range(instant) AS instant >= ${start_ms} AND instant < ${end_ms};

-- Deployment count, frequency and change failure rate: production deployments by their finish.
CREATE TEMP TABLE agg_deploys AS
SELECT scope_type_of(grouping(service)) AS scope_type, coalesce(service, 'all') AS scope,
       CASE WHEN grouping(wk) = 0 THEN wk ELSE -1 END AS wk,
       count(*) AS deploys, count(f.pos) AS failures
FROM (SELECT p.pos, p.service, week_of(p.fin) AS wk FROM prod p WHERE in_range(p.fin)) p
LEFT JOIN failed f ON f.pos = p.pos
GROUP BY GROUPING SETS ((service, wk), (service), (wk), ())
HAVING NOT (grouping(service) = 0 AND service IS NULL);

-- Lead time for changes: first commit (else the opening) to the finish of the deployment that
-- shipped the change, anchored there and counted for that deployment's service; negative spans
-- are left out. Median and p90 (linear interpolation), in ms.
CREATE TEMP TABLE agg_leads AS
SELECT scope_type_of(grouping(service)) AS scope_type, coalesce(service, 'all') AS scope,
       CASE WHEN grouping(wk) = 0 THEN wk ELSE -1 END AS wk,
       count(lead) AS n, quantile_cont(lead, [0.5, 0.9]) AS q
FROM (SELECT p.service, week_of(p.fin) AS wk,
             CASE WHEN p.fin - l.began >= 0 THEN (p.fin - l.began)::DOUBLE END AS lead
      FROM linked l JOIN prod p ON p.pos = l.pos
      WHERE in_range(p.fin))
GROUP BY GROUPING SETS ((service, wk), (service), (wk), ())
HAVING NOT (grouping(service) = 0 AND service IS NULL);

-- Time to restore (metrics.md, Operations): resolution minus start of incidents resolved in the
-- period (negative spans dropped), mean and median, in ms.
CREATE TEMP TABLE agg_restores AS
SELECT scope_type_of(grouping(service)) AS scope_type, coalesce(service, 'all') AS scope,
       CASE WHEN grouping(wk) = 0 THEN wk ELSE -1 END AS wk,
       count(*) AS n, median(span) AS median, avg(span) AS mean
FROM (SELECT service, week_of(resolved) AS wk, (resolved - started)::DOUBLE AS span
      FROM (SELECT service, epoch_ms(started_at) AS started, epoch_ms(resolved_at) AS resolved
            FROM incidents WHERE resolved_at IS NOT NULL)
      WHERE in_range(resolved) AND resolved - started >= 0)
GROUP BY GROUPING SETS ((service, wk), (service), (wk), ())
HAVING NOT (grouping(service) = 0 AND service IS NULL);

-- Tickets resolved and SLA breaches (metrics.md, ITSM): tickets resolved in the period; a breach
-- is a lead time (resolution minus creation, when not negative) beyond the resolution target of
-- the ticket's priority (letter case ignored); tickets without a target or a valid lead time are
-- not in the SLA sample.
CREATE TEMP TABLE sla_targets AS
SELECT lower(priority) AS priority, (hours * 3600000)::BIGINT AS target FROM (VALUES
    ('P1', 4.0), ('Highest', 4.0), ('1', 4.0), ('Critical', 4.0),
    ('P2', 8.0), ('High', 8.0), ('2', 8.0), ('Major', 8.0),
    ('P3', 72.0), ('Medium', 72.0), ('3', 72.0), ('Moderate', 72.0),
    ('P4', 120.0), ('Low', 120.0), ('4', 120.0), ('Minor', 120.0),
    ('P5', 120.0), ('Lowest', 120.0), ('5', 120.0), ('Planning', 120.0)) t(priority, hours);

CREATE TEMP TABLE agg_tickets AS
SELECT scope_type_of(grouping(service)) AS scope_type, coalesce(service, 'all') AS scope,
       CASE WHEN grouping(wk) = 0 THEN wk ELSE -1 END AS wk,
       count(*) AS resolved, count(breached) AS with_target, sum(breached) AS breached
FROM (SELECT t.service, week_of(t.resolved) AS wk,
             CASE WHEN t.resolved - t.created >= 0 AND s.target IS NOT NULL
                  THEN (t.resolved - t.created > s.target)::INTEGER END AS breached
      FROM (SELECT service, lower(priority) AS priority, epoch_ms(created_at) AS created,
                   epoch_ms(resolved_at) AS resolved
            FROM tickets WHERE resolved_at IS NOT NULL) t
      LEFT JOIN sla_targets s ON s.priority = t.priority
      WHERE in_range(t.resolved))
GROUP BY GROUPING SETS ((service, wk), (service), (wk), ())
HAVING NOT (grouping(service) = 0 AND service IS NULL);

-- Ticket backlog: tickets open at the end of the period, i.e. created before it and not resolved
-- before it. A ticket is open at the ends of weeks `lo` … `hi`: +1 at lo and −1 after hi, summed
-- over the weeks in order. The whole range's backlog is the last week's.
CREATE MACRO floor_div(x, d) AS CASE WHEN x >= 0 THEN x // d ELSE -((d - 1 - x) // d) END;

CREATE TEMP TABLE backlog_steps AS
WITH spans AS (
    SELECT service, greatest(floor_div(created - ${start_ms}, ${week_ms}), 0) AS lo,
           least(CASE WHEN resolved IS NULL THEN ${weeks} - 1
                      ELSE floor_div(greatest(created, resolved) - ${start_ms}, ${week_ms}) - 1 END,
                 ${weeks} - 1) AS hi
    FROM (SELECT service, epoch_ms(created_at) AS created, epoch_ms(resolved_at) AS resolved
          FROM tickets WHERE created_at IS NOT NULL)
    WHERE created < ${end_ms}),
steps AS (
    SELECT service, lo AS wk, 1 AS step FROM spans WHERE lo <= hi
    UNION ALL
    SELECT service, hi + 1, -1 FROM spans WHERE lo <= hi AND hi + 1 < ${weeks})
SELECT scope_type_of(grouping(service)) AS scope_type, coalesce(service, 'all') AS scope, wk,
       sum(step) AS step
FROM steps
GROUP BY GROUPING SETS ((service, wk), (wk))
HAVING NOT (grouping(service) = 0 AND service IS NULL);

CREATE TEMP TABLE agg_backlog AS
WITH weekly AS (
    SELECT s.scope_type, s.scope, p.wk,
           sum(coalesce(b.step, 0)) OVER (PARTITION BY s.scope_type, s.scope ORDER BY p.wk) AS open
    FROM scopes s CROSS JOIN (SELECT wk FROM periods WHERE wk >= 0) p
    LEFT JOIN backlog_steps b ON b.scope_type = s.scope_type AND b.scope = s.scope AND b.wk = p.wk)
SELECT * FROM weekly
UNION ALL
SELECT scope_type, scope, -1, open FROM weekly WHERE wk = ${weeks} - 1;

-- Downtime and availability (metrics.md, Operations, "Downtime"): per service, the union of the
-- intervals [started_at, resolved_at) of its sev1–sev2 incidents, overlaps merged, open incidents
-- running to the period's end, clipped to the period. The intervals of a service are first merged
-- into disjoint islands (touching ones too), whose clipped lengths then add up. For the
-- organisation: the sum over the services (outages without a service belong to none), and
-- availability 1 − downtime ÷ (services × period).
CREATE TEMP TABLE outages AS
SELECT service, epoch_ms(started_at) AS s,
       coalesce(epoch_ms(resolved_at), 9223372036854775807) AS e
FROM incidents
WHERE severity IN ('sev1', 'sev2') AND service IS NOT NULL AND started_at IS NOT NULL;

CREATE TEMP TABLE islands AS
WITH ordered AS (
    SELECT service, s, e,
           max(e) OVER (PARTITION BY service ORDER BY s, e
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS open_until
    FROM outages WHERE s < e),
numbered AS (
    SELECT service, s, e,
           sum(CASE WHEN open_until IS NULL OR s > open_until THEN 1 ELSE 0 END)
               OVER (PARTITION BY service ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS island
    FROM ordered)
SELECT service, min(s) AS s, max(e) AS e FROM numbered GROUP BY service, island;

-- An interval's part in each week it overlaps, and in the range.
CREATE MACRO overlap_weeks(s, e) AS
    range(greatest(floor_div(greatest(s, ${start_ms}) - ${start_ms}, ${week_ms}), 0),
          least(floor_div(least(e, ${end_ms}) - 1 - ${start_ms}, ${week_ms}), ${weeks} - 1) + 1);

CREATE TEMP TABLE service_downtime AS
WITH clipped AS (
    SELECT i.service, w.wk,
           least(i.e, ${start_ms} + (w.wk + 1) * ${week_ms})
             - greatest(i.s, ${start_ms} + w.wk * ${week_ms}) AS ms
    FROM islands i, unnest(overlap_weeks(i.s, i.e)) w(wk)
    WHERE i.s < ${end_ms} AND i.e > ${start_ms}
    UNION ALL
    SELECT service, -1, least(e, ${end_ms}) - greatest(s, ${start_ms})
    FROM islands WHERE s < ${end_ms} AND e > ${start_ms}),
incidents_open AS (
    SELECT o.service, w.wk
    FROM outages o, unnest(overlap_weeks(o.s, o.e)) w(wk)
    WHERE o.s < o.e AND o.s < ${end_ms} AND o.e > ${start_ms}
    UNION ALL
    SELECT service, -1 FROM outages WHERE s < e AND s < ${end_ms} AND e > ${start_ms}),
minutes AS (SELECT service, wk, sum(ms) / 60000.0 AS minutes FROM clipped GROUP BY ALL),
counts AS (SELECT service, wk, count(*) AS n FROM incidents_open GROUP BY ALL)
SELECT coalesce(m.service, c.service) AS service, coalesce(m.wk, c.wk) AS wk,
       coalesce(m.minutes, 0) AS minutes, coalesce(c.n, 0) AS n
FROM minutes m FULL JOIN counts c ON c.service = m.service AND c.wk = m.wk;

CREATE TEMP TABLE agg_downtime AS
SELECT 'service' AS scope_type, d.service AS scope, d.wk, d.minutes, d.n, 1 AS services
FROM service_downtime d SEMI JOIN services s ON s.service = d.service
UNION ALL
SELECT 'org', 'all', p.wk, coalesce(sum(d.minutes), 0), coalesce(sum(d.n), 0),
       (SELECT count(*) FROM services)
FROM periods p LEFT JOIN (SELECT * FROM service_downtime SEMI JOIN services USING (service)) d
    ON d.wk = p.wk
GROUP BY p.wk;

-- ---------------------------------------------------------------------------------------------
-- The rows, in tandem's units: counts, per day, hours, minutes, ratios.
CREATE TEMP TABLE cells AS
SELECT s.scope_type, s.scope, p.wk, p.grain, p.p_from, p.p_to,
       (p.p_to - p.p_from) // 86400000 AS days, (p.p_to - p.p_from) / 60000.0 AS period_minutes,
       coalesce(d.deploys, 0) AS deploys, coalesce(d.failures, 0) AS failures,
       coalesce(l.n, 0) AS lead_n, l.q[1] AS lead_median, l.q[2] AS lead_p90,
       coalesce(r.n, 0) AS restore_n, r.median AS restore_median, r.mean AS restore_mean,
       coalesce(t.resolved, 0) AS resolved, coalesce(t.with_target, 0) AS with_target,
       t.breached, coalesce(b.open, 0) AS open,
       coalesce(dt.minutes, 0) AS down_minutes, coalesce(dt.n, 0) AS down_n,
       CASE WHEN s.scope_type = 'org' THEN (SELECT count(*) FROM services) ELSE 1 END AS n_services
FROM scopes s CROSS JOIN periods p
LEFT JOIN agg_deploys d ON d.scope_type = s.scope_type AND d.scope = s.scope AND d.wk = p.wk
LEFT JOIN agg_leads l ON l.scope_type = s.scope_type AND l.scope = s.scope AND l.wk = p.wk
LEFT JOIN agg_restores r ON r.scope_type = s.scope_type AND r.scope = s.scope AND r.wk = p.wk
LEFT JOIN agg_tickets t ON t.scope_type = s.scope_type AND t.scope = s.scope AND t.wk = p.wk
LEFT JOIN agg_backlog b ON b.scope_type = s.scope_type AND b.scope = s.scope AND b.wk = p.wk
LEFT JOIN agg_downtime dt ON dt.scope_type = s.scope_type AND dt.scope = s.scope AND dt.wk = p.wk;

CREATE TEMP TABLE result AS
SELECT m.metric, c.grain, c.scope_type, c.scope,
       epoch_ms(c.p_from)::TIMESTAMPTZ AS period_start, epoch_ms(c.p_to)::TIMESTAMPTZ AS period_end,
       CASE m.metric
           WHEN 'deployment_count' THEN c.deploys::DOUBLE
           WHEN 'deployment_frequency' THEN c.deploys / c.days
           WHEN 'lead_time_median' THEN c.lead_median / 3600000.0
           WHEN 'lead_time_p90' THEN c.lead_p90 / 3600000.0
           WHEN 'change_failure_rate' THEN CASE WHEN c.deploys > 0 THEN c.failures / c.deploys END
           WHEN 'time_to_restore_mean' THEN c.restore_mean / 3600000.0
           WHEN 'time_to_restore_median' THEN c.restore_median / 3600000.0
           WHEN 'downtime_minutes' THEN c.down_minutes
           WHEN 'availability' THEN 1.0 - c.down_minutes / (c.n_services * c.period_minutes)
           WHEN 'tickets_resolved' THEN c.resolved::DOUBLE
           WHEN 'ticket_backlog' THEN c.open::DOUBLE
           WHEN 'sla_breach_rate' THEN CASE WHEN c.with_target > 0 THEN c.breached / c.with_target END
       END AS value,
       m.unit,
       CASE m.metric
           WHEN 'deployment_count' THEN c.deploys
           WHEN 'deployment_frequency' THEN c.deploys
           WHEN 'lead_time_median' THEN c.lead_n
           WHEN 'lead_time_p90' THEN c.lead_n
           WHEN 'change_failure_rate' THEN c.deploys
           WHEN 'time_to_restore_mean' THEN c.restore_n
           WHEN 'time_to_restore_median' THEN c.restore_n
           WHEN 'downtime_minutes' THEN c.down_n
           WHEN 'availability' THEN c.down_n
           WHEN 'tickets_resolved' THEN c.resolved
           WHEN 'ticket_backlog' THEN c.open
           WHEN 'sla_breach_rate' THEN c.with_target
       END::BIGINT AS n
FROM (VALUES ('deployment_count', 'count'), ('deployment_frequency', 'per_day'),
             ('lead_time_median', 'hours'), ('lead_time_p90', 'hours'),
             ('change_failure_rate', 'ratio'), ('time_to_restore_mean', 'hours'),
             ('time_to_restore_median', 'hours'), ('downtime_minutes', 'minutes'),
             ('availability', 'ratio'), ('tickets_resolved', 'count'),
             ('ticket_backlog', 'count'), ('sla_breach_rate', 'ratio')) m(metric, unit)
CROSS JOIN cells c;
