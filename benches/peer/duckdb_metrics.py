#!/usr/bin/env python3
"""The DuckDB peer of tandem's metrics benchmark: 12 of tandem's metrics computed by a hand-written
SQL script (metrics.sql, beside this file) over the current Delta versions of a tandem lake's
canonical tables, per service and ISO week, per service over the whole range, and for the
organisation per week and over the range.

    python3 benches/peer/duckdb_metrics.py --lake LAKE_DIR --weeks N --until YYYY-MM-DD \
        [--out results.parquet] [--compare TANDEM_METRICS.parquet]

The range is tandem's `--weeks N --until DATE` in UTC: the N ISO weeks before DATE (a Monday).
Prints one line of JSON on stdout: wall_secs (listing the tables' files, reading them and the SQL;
not Python's start-up, writing --out nor the comparison), peak_bytes (the process's peak resident
memory, VmHWM), rows (result rows) and, with --compare, how many cells (metric, scope_type, scope,
period) of the 12 metrics for the org and services agree with tandem's metric table (values equal
within a relative 1e-9, or both null); a cell present on one side only disagrees. With
TANDEM_PEER_PROFILE=1 each SQL statement's time goes to stderr.
"""

import argparse
import datetime as dt
import json
import os
import re
import sys
import time

import duckdb
from deltalake import DeltaTable

HERE = os.path.dirname(os.path.abspath(__file__))
WEEK_MS = 7 * 86_400_000

METRICS = [
    "deployment_count",
    "deployment_frequency",
    "lead_time_median",
    "lead_time_p90",
    "change_failure_rate",
    "time_to_restore_mean",
    "time_to_restore_median",
    "downtime_minutes",
    "availability",
    "tickets_resolved",
    "ticket_backlog",
    "sla_breach_rate",
]

# The columns the SQL reads, with their types: a table the lake does not have yet (or one with no
# data files) is read as empty with these columns.
COLUMNS = {
    "deployments": {
        "id": "VARCHAR", "repo": "VARCHAR", "service": "VARCHAR", "is_production": "BOOLEAN",
        "status": "VARCHAR", "sha": "VARCHAR", "finished_at": "TIMESTAMPTZ",
    },
    "changes": {
        "repo": "VARCHAR", "number": "BIGINT", "service": "VARCHAR", "created_at": "TIMESTAMPTZ",
        "merged_at": "TIMESTAMPTZ", "merge_commit_sha": "VARCHAR",
        "first_commit_at": "TIMESTAMPTZ", "is_revert": "BOOLEAN", "reverts": "BIGINT",
    },
    "commits": {"repo": "VARCHAR", "sha": "VARCHAR", "authored_at": "TIMESTAMPTZ"},
    "incidents": {
        "id": "VARCHAR", "service": "VARCHAR", "severity": "VARCHAR",
        "started_at": "TIMESTAMPTZ", "resolved_at": "TIMESTAMPTZ", "cause_refs": "VARCHAR[]",
    },
    "tickets": {
        "service": "VARCHAR", "priority": "VARCHAR", "created_at": "TIMESTAMPTZ",
        "resolved_at": "TIMESTAMPTZ",
    },
    "change_requests": {
        "id": "VARCHAR", "source": "VARCHAR", "number": "VARCHAR", "service": "VARCHAR",
        "planned_start": "TIMESTAMPTZ", "planned_end": "TIMESTAMPTZ",
        "actual_start": "TIMESTAMPTZ", "actual_end": "TIMESTAMPTZ",
    },
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", required=True, help="a tandem lake directory (with tables/<name>/)")
    p.add_argument("--weeks", required=True, type=int, help="ISO weeks in the range (1-520)")
    p.add_argument("--until", required=True, help="exclusive end of the range, a Monday (YYYY-MM-DD)")
    p.add_argument("--out", help="write the result rows to this Parquet file")
    p.add_argument("--compare", help="tandem's metric table (a Parquet file or the Delta table) to compare with")
    args = p.parse_args(argv)
    if not 1 <= args.weeks <= 520:
        p.error(f"--weeks must be between 1 and 520, not {args.weeks}")
    try:
        until = dt.date.fromisoformat(args.until)
    except ValueError:
        p.error(f"--until {args.until!r} is not a date (YYYY-MM-DD)")
    if until.weekday() != 0:
        p.error(f"--until must be a Monday (ISO weeks start on Monday); {until} is a {until:%A}")
    args.until = until
    return args


def range_ms(until, weeks):
    """The range [start, end) in epoch milliseconds, UTC, as tandem's `--weeks N --until DATE`."""
    end = int(dt.datetime(until.year, until.month, until.day, tzinfo=dt.timezone.utc).timestamp()) * 1000
    return end - weeks * WEEK_MS, end


def data_files(lake, table):
    """The Parquet files of the table's current Delta version; None when the lake has no such table."""
    path = os.path.join(lake, "tables", table)
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        return None
    return DeltaTable(path).file_uris()


def sql_list(items):
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


def create_views(con, lake):
    if not os.path.isdir(os.path.join(lake, "tables")):
        sys.exit(f"duckdb_metrics.py: {lake} is not a tandem lake: it has no tables/ directory")
    for table, columns in COLUMNS.items():
        files = data_files(lake, table)
        if files:
            source = f"read_parquet({sql_list(files)}, hive_partitioning = false)"
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
        else:
            cols = ", ".join(f"NULL::{ty} AS {name}" for name, ty in columns.items())
            con.execute(f"CREATE VIEW {table} AS SELECT {cols} WHERE false")


def script(params):
    with open(os.path.join(HERE, "metrics.sql"), encoding="utf-8") as f:
        text = f.read()

    def fill(m):
        if m.group(1) not in params:
            raise KeyError(f"metrics.sql: unknown placeholder ${{{m.group(1)}}}")
        return str(params[m.group(1)])

    return re.sub(r"\$\{(\w+)\}", fill, text)


def peak_bytes():
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def compare(con, tandem):
    """Cells of the 12 metrics (org and services) in both tables, or in one only."""
    if os.path.isdir(os.path.join(tandem, "_delta_log")):
        files = DeltaTable(tandem).file_uris()
    else:
        files = [tandem]
    wanted = f"metric IN {tuple(METRICS)} AND scope_type IN ('org', 'service')"
    # The grain too: with one week, the week's row and the range's cover the same instants.
    key = "metric, scope_type, scope, grain, period_start, period_end"
    con.execute(f"""
        CREATE TEMP TABLE compared AS
        WITH t AS (SELECT {key}, value FROM read_parquet({sql_list(files)}) WHERE {wanted}),
             p AS (SELECT {key}, value FROM result WHERE {wanted})
        SELECT metric, scope_type, scope, grain, period_start, period_end,
               p.metric IS NOT NULL AS in_peer, t.metric IS NOT NULL AS in_tandem,
               p.value AS peer, t.value AS tandem,
               p.metric IS NOT NULL AND t.metric IS NOT NULL AND (
                   (p.value IS NULL AND t.value IS NULL)
                   OR abs(p.value - t.value) <= 1e-9 * greatest(abs(p.value), abs(t.value))) AS agree
        FROM p FULL JOIN t USING ({key})
    """)
    compared, agree, disagree = con.execute(
        "SELECT count(*) FILTER (in_peer AND in_tandem), count(*) FILTER (agree), count(*) FILTER (NOT agree) "
        "FROM compared"
    ).fetchall()[0]
    rows = con.execute(
        "SELECT metric, scope_type, scope, grain, strftime(period_start, '%Y-%m-%dT%H:%M:%SZ'), "
        "strftime(period_end, '%Y-%m-%dT%H:%M:%SZ'), in_peer, in_tandem, peer, tandem "
        "FROM compared WHERE NOT agree "
        "ORDER BY in_peer AND in_tandem DESC, metric, scope_type, scope, grain DESC, period_start LIMIT 5"
    ).fetchall()
    examples = [
        {
            "metric": m, "scope_type": st, "scope": s, "grain": g, "period_start": ps, "period_end": pe,
            "peer": v if ip else "missing", "tandem": w if it else "missing",
        }
        for m, st, s, g, ps, pe, ip, it, v, w in rows
    ]
    return compared, agree, disagree, examples


def main(argv):
    args = parse_args(argv)
    start_ms, end_ms = range_ms(args.until, args.weeks)
    params = {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "weeks": args.weeks,
        "week_ms": WEEK_MS,
        "window_ms": 24 * 3_600_000,
        "rollback_ms": 7 * 86_400_000,
        "tolerance_ms": 60 * 60_000,
    }
    profile = os.environ.get("TANDEM_PEER_PROFILE") == "1"
    sql = script(params)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    began = time.perf_counter()
    create_views(con, args.lake)
    statements = duckdb.extract_statements(sql)
    for statement in statements:
        t0, c0 = time.perf_counter(), time.process_time()
        con.execute(statement)
        if profile:
            first = next(l for l in statement.query.splitlines() if l.strip() and not l.startswith("--"))
            print(f"{time.perf_counter() - t0:7.3f} s  cpu {time.process_time() - c0:6.3f} s  "
                  f"peak {peak_bytes() >> 20:5d} MiB  {first[:70]}", file=sys.stderr)
    rows = con.execute("SELECT count(*) FROM result").fetchall()[0][0]
    wall = time.perf_counter() - began
    if profile:
        print(f"total {wall:.3f} s, cpu {time.process_time():.3f} s", file=sys.stderr)
    peak = peak_bytes()

    if args.out:
        con.execute(f"COPY (SELECT * FROM result) TO '{args.out.replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
    compared = agree = disagree = examples = None
    if args.compare:
        compared, agree, disagree, examples = compare(con, args.compare)
    print(json.dumps({
        "wall_secs": round(wall, 3), "peak_bytes": peak, "rows": rows, "compared": compared,
        "agree": agree, "disagree": disagree, "examples": examples,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
