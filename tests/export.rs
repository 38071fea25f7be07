//! `tandem export` as the data team uses it: a synced lake exported, then read back with DuckDB and
//! pandas (a real Python subprocess) and compared with the Rust side; pseudonymised exports name
//! nobody, keep the same person's pseudonym stable and depend on the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Duration;
use serde_json::Value;
use tandem::cli::{ExportArgs, RangeArgs};
use tandem::config::Config;
use tandem::export::Pseudonymiser;
use tandem::metric::MetricRow;
use tandem::store::Store;
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Table, Ticket,
};

use crate::common::{World, env, fast_sync};

const WEEKS: u32 = 4;
const PIP_INSTALL: &str = "python3 -m pip install duckdb pandas pyarrow pytz deltalake";

/// Every file pair an export holds.
const FILES: [&str; 11] = [
    "deployments",
    "changes",
    "commits",
    "incidents",
    "tickets",
    "ticket_transitions",
    "change_requests",
    "quarantine",
    "metrics",
    "service_breakdown",
    "unmapped_records",
];

async fn synced_world() -> (World, Config) {
    let world = World::start(WEEKS).await;
    let config = world.config();
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    tandem::sync::sync(&config, &store, &env(), &fast_sync())
        .await
        .unwrap();
    (world, config)
}

fn args(world: &World, out: &Path, pseudonymise: bool) -> ExportArgs {
    ExportArgs {
        range: RangeArgs {
            weeks: Some(WEEKS),
            until: Some(world.org.spec.start + Duration::weeks(i64::from(WEEKS))),
            ..RangeArgs::default()
        },
        out: Some(out.to_owned()),
        pseudonymise,
    }
}

fn context(key: Option<&str>) -> tandem::commands::Context {
    let env = match key {
        Some(key) => env().with_override("TANDEM_PSEUDONYM_KEY", key),
        None => env(),
    };
    tandem::commands::Context { env, progress: false }
}

/// Runs `tandem export` and returns its run folder (the newest under `out/export/`).
fn export(config: &Config, args: &ExportArgs, key: Option<&str>) -> PathBuf {
    let outcome = tandem::commands::export::run(args, config, &context(key)).unwrap();
    assert_eq!(outcome, tandem::commands::Outcome::Success);
    let mut dirs = folders(&args.out.clone().unwrap().join("export"));
    dirs.pop().unwrap()
}

fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Fails, naming the install command, when the readers the data team uses are missing.
pub(crate) fn require_python_readers() {
    let found = Command::new("python3")
        .args(["-c", "import duckdb, pandas, pyarrow, pytz, deltalake"])
        .output();
    match found {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import duckdb, pandas, pyarrow, pytz and deltalake (DuckDB needs it for time zones) ({}); install them with `{PIP_INSTALL}`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => panic!("python3 is not available ({err}); install it, then `{PIP_INSTALL}`"),
    }
}

/// Reads every file of an export with DuckDB and pandas and prints what each reader saw, as JSON:
/// per file and reader the row count, the columns, their types, and the values the test compares.
const READ_BACK: &str = r#"
import json, math, os, sys
import duckdb, pandas as pd

folder = sys.argv[1]
schema = json.load(open(os.path.join(folder, "schema.json")))

def plain(v, kind):
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT:
        return None
    if kind == "timestamp":
        if isinstance(v, str):
            v = pd.Timestamp(v)
        return round(v.timestamp() * 1000)
    if kind == "text_list":
        if isinstance(v, str):
            return json.loads(v)
        return [str(x) for x in list(v)]
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return str(v)

def rows_of(records, columns, kinds):
    return [{c: plain(r[i], kinds[c]) for i, c in enumerate(columns)} for r in records]

out = {}
for f in schema["files"]:
    kinds = {c["name"]: c["kind"] for c in f["columns"]}
    stamps = [c["name"] for c in f["columns"] if c["kind"] == "timestamp"]
    pq = os.path.join(folder, f["parquet"])
    cs = os.path.join(folder, f["csv"])
    seen = {}
    for reader, rel in [
        ("duckdb_parquet", duckdb.sql(f"SELECT * FROM '{pq}'")),
        ("duckdb_csv", duckdb.sql(f"SELECT * FROM read_csv('{cs}')")),
    ]:
        records = rel.fetchall()
        seen[reader] = {
            "rows": len(records),
            "columns": rel.columns,
            "types": [str(t) for t in rel.types],
            "values": rows_of(records, rel.columns, kinds),
        }
    for reader, frame in [
        ("pandas_parquet", pd.read_parquet(pq)),
        ("pandas_csv", pd.read_csv(cs, parse_dates=stamps)),
    ]:
        columns = [str(c) for c in frame.columns]
        seen[reader] = {
            "rows": len(frame),
            "columns": columns,
            "types": [str(t) for t in frame.dtypes],
            "values": rows_of(frame.itertuples(index=False, name=None), columns, kinds),
        }
    out[f["table"]] = seen
print(json.dumps(out))
"#;

fn read_back(folder: &Path) -> Value {
    require_python_readers();
    let out = Command::new("python3")
        .args(["-c", READ_BACK])
        .arg(folder)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reading the export back failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ms(at: chrono::DateTime<chrono::Utc>) -> Value {
    Value::from(at.timestamp_millis())
}

/// Whether two read-back values are equal (numbers within float precision).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_every_table_and_duckdb_and_pandas_read_it_unchanged() {
    let (world, config) = synced_world().await;
    let out = world.dir.path().join("out");
    let folder = export(&config, &args(&world, &out, false), None);

    // The folder is listed in the history, with the schema as its main file.
    let meta = json_file(&folder.join("meta.json"));
    assert_eq!(
        (meta["kind"].as_str(), meta["main"].as_str()),
        (Some("export"), Some("SCHEMA.md"))
    );
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let name = folder.file_name().unwrap().to_string_lossy().into_owned();
    assert!(index.contains(&format!("export/{name}")), "{index}");

    // Every file, in both formats, and nothing temporary left behind.
    for table in FILES {
        for ext in ["parquet", "csv"] {
            assert!(folder.join(format!("{table}.{ext}")).is_file(), "{table}.{ext}");
        }
    }
    assert!(
        !folder
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().path().to_string_lossy().ends_with(".tmp"))
    );

    // Row counts equal the lake's.
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    let schema = json_file(&folder.join("schema.json"));
    let rows_of = |table: &str| {
        schema["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["table"] == table)
            .unwrap_or_else(|| panic!("{table} missing from schema.json"))["rows"]
            .as_u64()
            .unwrap() as usize
    };
    let listed: Vec<&str> = schema["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["table"].as_str().unwrap())
        .collect();
    assert_eq!(listed, FILES);
    for (table, count) in store.row_counts().unwrap() {
        assert_eq!(rows_of(table), count, "{table}");
        assert!(count > 0, "the simulated organisation fills {table}");
    }
    assert!(
        !store.metrics_path().exists(),
        "an export leaves the stored metric table alone"
    );
    let metrics: Vec<MetricRow> =
        tandem::commands::metrics::calculate(&args(&world, &out, false).range, &config).unwrap();
    assert_eq!(rows_of("metrics"), metrics.len());
    let unmapped = store
        .read::<Deployment>()
        .unwrap()
        .iter()
        .filter(|r| r.service.is_none())
        .count()
        + store
            .read::<Change>()
            .unwrap()
            .iter()
            .filter(|r| r.service.is_none())
            .count()
        + store
            .read::<Incident>()
            .unwrap()
            .iter()
            .filter(|r| r.service.is_none())
            .count()
        + store
            .read::<Ticket>()
            .unwrap()
            .iter()
            .filter(|r| r.service.is_none())
            .count()
        + store
            .read::<ChangeRequest>()
            .unwrap()
            .iter()
            .filter(|r| r.service.is_none())
            .count();
    assert!(unmapped > 0, "the simulation leaves some records unmapped");
    assert_eq!(rows_of("unmapped_records"), unmapped);
    let services: std::collections::BTreeSet<&str> = metrics
        .iter()
        .filter(|r| r.scope_type == "service")
        .map(|r| r.scope.as_str())
        .collect();
    // Each service: its WEEKS weeks and the whole range.
    assert_eq!(
        rows_of("service_breakdown"),
        services.len() * (WEEKS as usize + 1)
    );

    // SCHEMA.md documents every file and column.
    let md = std::fs::read_to_string(folder.join("SCHEMA.md")).unwrap();
    for file in schema["files"].as_array().unwrap() {
        let section = md
            .split(&format!("\n## {}\n", file["table"].as_str().unwrap()))
            .nth(1)
            .unwrap_or_else(|| panic!("no section for {}", file["table"]));
        let section = section.split("\n## ").next().unwrap();
        for column in file["columns"].as_array().unwrap() {
            assert!(
                section.contains(&format!("| `{}` |", column["name"].as_str().unwrap())),
                "{} not documented in SCHEMA.md",
                column["name"]
            );
        }
    }

    let seen = read_back(&folder);
    for file in schema["files"].as_array().unwrap() {
        let table = file["table"].as_str().unwrap();
        let documented: Vec<&str> = file["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let kinds: Vec<&str> = file["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["kind"].as_str().unwrap())
            .collect();
        let baseline = &seen[table]["duckdb_parquet"]["values"];
        for reader in ["duckdb_parquet", "duckdb_csv", "pandas_parquet", "pandas_csv"] {
            let got = &seen[table][reader];
            let what = format!("{table} read by {reader}");
            // Every column written is documented and every documented column is written.
            let columns: Vec<&str> = got["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(columns, documented, "{what}");
            assert_eq!(got["rows"].as_u64().unwrap() as usize, rows_of(table), "{what}");
            for (i, kind) in kinds.iter().enumerate() {
                let ty = got["types"][i].as_str().unwrap();
                let has_values = baseline
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| !r[documented[i]].is_null());
                let expected: Option<&str> = match (reader, *kind) {
                    ("duckdb_parquet", "text") => Some("VARCHAR"),
                    ("duckdb_parquet", "integer") => Some("BIGINT"),
                    ("duckdb_parquet", "float") => Some("DOUBLE"),
                    ("duckdb_parquet", "bool") => Some("BOOLEAN"),
                    ("duckdb_parquet", "text_list") => Some("VARCHAR[]"),
                    ("duckdb_parquet" | "duckdb_csv", "timestamp") if has_values => {
                        Some("TIMESTAMP WITH TIME ZONE")
                    }
                    ("pandas_parquet", "timestamp") => Some("datetime64[ms, UTC]"),
                    ("pandas_parquet", "integer") if !file["columns"][i]["nullable"].as_bool().unwrap() => {
                        Some("int64")
                    }
                    ("pandas_parquet", "float") => Some("float64"),
                    _ => None,
                };
                if let Some(expected) = expected {
                    assert_eq!(ty, expected, "{what}, column {}", documented[i]);
                }
                if reader == "pandas_csv" && *kind == "timestamp" && has_values {
                    assert!(
                        ty.starts_with("datetime64[") && ty.ends_with(", UTC]"),
                        "{what}, column {}: {ty}",
                        documented[i]
                    );
                }
            }
            // The same values, row by row, whatever the reader and the format.
            let values = got["values"].as_array().unwrap();
            for (row, (a, b)) in baseline.as_array().unwrap().iter().zip(values).enumerate() {
                for column in &documented {
                    assert!(
                        same(&a[column], &b[column]),
                        "{what}, row {row}, column {column}: {} vs {}",
                        a[column],
                        b[column]
                    );
                }
            }
        }
    }

    // And the values are the lake's: instants to the millisecond, lists, nulls.
    // (pandas reading the CSV: the format furthest from the lake.)
    let csv_rows = |table: &str| seen[table]["pandas_csv"]["values"].as_array().unwrap().clone();
    let deployments = store.read::<Deployment>().unwrap();
    let read = csv_rows("deployments");
    for (d, r) in deployments.iter().zip(&read) {
        assert_eq!(r["id"], Value::from(d.id.clone()));
        assert_eq!(r["created_at"], ms(d.created_at), "{}", d.id);
        assert_eq!(
            r["finished_at"],
            d.finished_at.map_or(Value::Null, ms),
            "{}",
            d.id
        );
        assert_eq!(
            r["service"],
            d.service.clone().map_or(Value::Null, Value::from),
            "{}",
            d.id
        );
    }
    let changes = store.read::<Change>().unwrap();
    let labelled = changes.iter().filter(|c| !c.labels.is_empty()).count();
    assert!(labelled > 0, "some changes carry labels");
    for reader in ["duckdb_parquet", "duckdb_csv", "pandas_parquet", "pandas_csv"] {
        let read = seen["changes"][reader]["values"].as_array().unwrap();
        for (c, r) in changes.iter().zip(read) {
            assert_eq!(r["labels"], Value::from(c.labels.clone()), "{reader}: {}", c.id);
        }
    }
    let q = store.read::<Quarantined>().unwrap();
    let read = csv_rows("quarantine");
    assert_eq!(
        read[0]["raw"],
        Value::from(q[0].raw.clone()),
        "raw JSON survives CSV quoting"
    );
    let total: f64 = metrics.iter().filter_map(|r| r.value).sum();
    let n: i64 = metrics.iter().map(|r| r.n).sum();
    for reader in ["duckdb_parquet", "duckdb_csv", "pandas_parquet", "pandas_csv"] {
        let read = seen["metrics"][reader]["values"].as_array().unwrap();
        let read_total: f64 = read.iter().filter_map(|r| r["value"].as_f64()).sum();
        let read_n: f64 = read.iter().filter_map(|r| r["n"].as_f64()).sum();
        assert!(
            (read_total - total).abs() <= 1e-6 * total.abs().max(1.0),
            "{reader}: {read_total} vs {total}"
        );
        assert_eq!(read_n, n as f64, "{reader}");
    }
    // The breakdown agrees with the metric table: checkout's deployments over the range.
    let range = metrics
        .iter()
        .find(|r| r.metric == "deployment_count" && r.scope == "checkout" && r.grain == "range")
        .unwrap();
    let row = csv_rows("service_breakdown")
        .into_iter()
        .find(|r| r["service"] == "checkout" && r["grain"] == "range")
        .unwrap();
    assert_eq!(row["deployment_count"], Value::from(range.value.unwrap()));
    assert_eq!(row["deployment_count_n"], Value::from(range.n as f64));
    assert_eq!(row["team"], Value::from("payments"));
}

/// Every text an export holds: CSV, schema and meta files as written, Parquet as DuckDB reads it.
fn everything_in(folder: &Path) -> String {
    require_python_readers();
    let dump = Command::new("python3")
        .args([
            "-c",
            "import duckdb, glob, sys\nfor f in sorted(glob.glob(sys.argv[1] + '/*.parquet')):\n    print(duckdb.sql(f\"SELECT * FROM '{f}'\").fetchall())",
        ])
        .arg(folder)
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let mut text = String::from_utf8(dump.stdout).unwrap();
    for entry in folder.read_dir().unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".parquet") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

/// Every string under the given JSON keys, anywhere in `value`.
fn strings_under(value: &Value, keys: &[&str], found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if keys.contains(&k.as_str()) => found.push(s.clone()),
                    _ => strings_under(v, keys, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, keys, found)),
        _ => {}
    }
}

/// Every value of `T`'s people columns in the lake, into `people`; a column no row fills, into
/// `empty`.
fn people_in<T: Table>(store: &Store, people: &mut Vec<String>, empty: &mut Vec<String>) {
    let rows = serde_json::to_value(store.read::<T>().unwrap()).unwrap();
    for column in T::PEOPLE {
        let before = people.len();
        for row in rows.as_array().unwrap() {
            if let Some(name) = row[*column].as_str() {
                people.push(name.to_owned());
            }
        }
        if people.len() == before {
            empty.push(format!("{}.{column}", T::NAME));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pseudonymised_export_names_nobody_and_keeps_each_person_one_pseudonym() {
    let (world, config) = synced_world().await;
    let out = world.dir.path().join("out");
    let plain = export(&config, &args(&world, &out, false), None);

    // The people the plain export holds (in the raw records of the quarantine): names, account ids,
    // logins, emails.
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    let quarantined = store.read::<Quarantined>().unwrap();
    let mut people = Vec::new();
    for q in &quarantined {
        let raw: Value = serde_json::from_str(&q.raw).unwrap();
        for key in ["displayName", "accountId", "login", "email", "emailAddress"] {
            strings_under(&raw, &[key], &mut people);
        }
    }
    assert!(!people.is_empty(), "the simulated quarantine holds people");
    // ... and in the canonical tables' people columns, each filled by some source.
    let mut empty = Vec::new();
    people_in::<Deployment>(&store, &mut people, &mut empty);
    people_in::<Change>(&store, &mut people, &mut empty);
    people_in::<Commit>(&store, &mut people, &mut empty);
    people_in::<Incident>(&store, &mut people, &mut empty);
    people_in::<Ticket>(&store, &mut people, &mut empty);
    people_in::<ChangeRequest>(&store, &mut people, &mut empty);
    assert!(empty.is_empty(), "no source filled {empty:?}");
    people.sort();
    people.dedup();
    let plain_text = everything_in(&plain);
    for person in &people {
        assert!(
            plain_text.contains(person.as_str()),
            "{person} is in the plain export"
        );
    }

    const KEY: &str = "a-long-random-export-key-used-by-these-tests";
    let hidden = export(&config, &args(&world, &out, true), Some(KEY));
    let text = everything_in(&hidden);
    // The Jira user of the PagerDuty integration is hashed where it acts (a reporter, an
    // acknowledger) but its name is also the vendor's, which titles and text name freely.
    let mut known: Vec<&str> = people
        .iter()
        .map(String::as_str)
        .filter(|p| *p != tandem_fixtures::jira_data::INTEGRATION)
        .collect();
    known.extend(tandem_fixtures::org::ENGINEERS);
    known.extend(tandem_fixtures::jira_data::PEOPLE);
    known.push(tandem_fixtures::org::DEPLOY_BOT);
    for person in known {
        assert!(
            !text.contains(person),
            "{person} appears in the pseudonymised export"
        );
    }
    assert!(
        !text.contains("@acme.example"),
        "an email address appears in the pseudonymised export"
    );
    assert!(!text.contains(KEY), "the key appears in the export");

    // Each person has one pseudonym wherever they appear: the keyed hash of their name.
    let p = Pseudonymiser::new(KEY).unwrap();
    for person in &people {
        assert!(text.contains(&p.name(person)), "{person}'s pseudonym is missing");
    }
    let schema = json_file(&hidden.join("schema.json"));
    assert_eq!(schema["pseudonymised"], true);
    let raw = schema["files"][7]["columns"][4].clone();
    assert_eq!(
        (raw["name"].as_str(), raw["people"].as_str()),
        (Some("raw"), Some("hashed_inside"))
    );
    let meta = json_file(&hidden.join("meta.json"));
    assert_eq!(meta["title"], "Data export (pseudonymised)");

    // Everything but the people is unchanged: same rows, same ids, and each people column holds
    // the keyed hash of what the plain export holds.
    let (plain_back, hidden_back) = (read_back(&plain), read_back(&hidden));
    let columns = |table: &str| -> Vec<String> {
        schema["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["table"] == table)
            .unwrap()["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["people"] == "hashed")
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut hashed_columns = 0;
    for table in [
        "deployments",
        "changes",
        "commits",
        "incidents",
        "tickets",
        "change_requests",
    ] {
        let hashed = columns(table);
        hashed_columns += hashed.len();
        let mut expected = plain_back[table]["duckdb_parquet"]["values"].clone();
        for row in expected.as_array_mut().unwrap() {
            for column in &hashed {
                if let Some(name) = row[column.as_str()].as_str() {
                    row[column.as_str()] = Value::from(p.name(name));
                }
            }
        }
        assert_eq!(
            hidden_back[table]["duckdb_parquet"]["values"], expected,
            "{table}"
        );
    }
    assert_eq!(
        hashed_columns, 10,
        "every declared people column is marked hashed"
    );

    // The same person has the same pseudonym across tables and sources: a PagerDuty responder
    // who acknowledged an incident also works Jira tickets, and a GitHub commit's author name
    // (`mia krystof`) is the Jira display name (`Mia Krystof`) in other letter case.
    let values = |back: &Value, table: &str, column: &str| -> std::collections::BTreeSet<String> {
        back[table]["duckdb_parquet"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|row| row[column].as_str().map(str::to_owned))
            .collect()
    };
    let responders = values(&plain_back, "incidents", "acknowledged_by");
    let assignees = values(&plain_back, "tickets", "assignee");
    let shared: Vec<&String> = responders.intersection(&assignees).collect();
    assert!(!shared.is_empty(), "some responder also works tickets");
    for name in shared {
        assert!(values(&hidden_back, "incidents", "acknowledged_by").contains(&p.name(name)));
        assert!(values(&hidden_back, "tickets", "assignee").contains(&p.name(name)));
    }
    let authors = values(&plain_back, "commits", "author_name");
    let same_person: Vec<(&String, &String)> = authors
        .iter()
        .flat_map(|a| assignees.iter().map(move |t| (a, t)))
        .filter(|(a, t)| a != t && a.to_lowercase() == t.to_lowercase())
        .collect();
    assert!(!same_person.is_empty(), "a commit author also works tickets");
    for (author, assignee) in same_person {
        let pseudonym = p.name(author);
        assert_eq!(pseudonym, p.name(assignee));
        assert!(values(&hidden_back, "commits", "author_name").contains(&pseudonym));
        assert!(values(&hidden_back, "tickets", "assignee").contains(&pseudonym));
    }

    // Another key, other pseudonyms.
    let other = export(
        &config,
        &args(&world, &out, true),
        Some("another-long-random-key-of-over-32-bytes"),
    );
    let other_text = everything_in(&other);
    let q = Pseudonymiser::new("another-long-random-key-of-over-32-bytes").unwrap();
    for person in &people {
        assert_ne!(p.name(person), q.name(person));
        assert!(other_text.contains(&q.name(person)) && !other_text.contains(&p.name(person)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonymising_without_a_key_names_the_variable_and_writes_nothing() {
    let world = World::start(1).await;
    let path = world.dir.path().join("tandem.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[export]\npseudonymise_key_env = \"TANDEM_TEST_UNSET_EXPORT_KEY\"\n");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let out = world.dir.path().join("out");
    let err = tandem::commands::export::run(&args(&world, &out, true), &config, &context(None)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("TANDEM_TEST_UNSET_EXPORT_KEY"), "{message}");
    assert!(message.contains("export.pseudonymise_key_env"), "{message}");
    assert!(folders(&out.join("export")).is_empty(), "nothing written");
    assert!(!out.join("index.html").exists());
    assert!(
        message.contains("TANDEM_TEST_UNSET_EXPORT_KEY is not set"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_too_short_or_empty_is_refused_naming_the_variable_and_writing_nothing() {
    let world = World::start(1).await;
    let config = world.config();
    let out = world.dir.path().join("out");
    let short = "0123456789abcdef0123456789abcde";
    for (key, says) in [
        (
            short,
            "the key in TANDEM_PSEUDONYM_KEY is too short: 31 bytes, at least 32 are needed",
        ),
        ("", "the key in TANDEM_PSEUDONYM_KEY is empty"),
    ] {
        let err = tandem::commands::export::run(&args(&world, &out, true), &config, &context(Some(key)))
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(says), "{message}");
        assert!(!message.contains(short), "the key is never shown: {message}");
        assert!(folders(&out.join("export")).is_empty(), "nothing written");
        assert!(!out.join("index.html").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_failing_half_way_is_removed_and_never_listed() {
    let (world, config) = synced_world().await;
    let out = world.dir.path().join("out");
    let args = args(&world, &out, false);
    let done = export(&config, &args, None);
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    let rows = tandem::commands::metrics::calculate(&args.range, &config).unwrap();
    let now = chrono::Utc::now();
    let mut made = None;
    let err = tandem::commands::export::into_run_folder(&out, now, |dir| {
        made = Some(dir.to_owned());
        // The disk refuses the second table (a directory stands where its file goes): the first
        // is already written.
        std::fs::create_dir(dir.join("changes.parquet")).unwrap();
        tandem::commands::export::write(dir, &store, &rows, &config, None, now)
    })
    .unwrap_err();
    let message = format!("{err:#}");
    let made = made.unwrap();
    assert!(message.contains("changes.parquet"), "{message}");
    assert!(
        message.contains(&format!("export to {} failed and was removed", made.display())),
        "{message}"
    );
    assert!(!made.exists(), "the half-made folder is gone");
    assert_eq!(folders(&out.join("export")), vec![done.clone()]);
    tandem::report::archive::write_index(&out, &config.organisation.name).unwrap();
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let name = |dir: &Path| dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(index.contains(&name(&done)), "{index}");
    assert!(!index.contains(&name(&made)), "{index}");
}

#[test]
fn the_schema_is_built_from_the_canonical_tables_declared_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut export = tandem::export::Export::new(dir.path(), None);
    export.table::<Incident>(&[]).unwrap();
    let schema = export.finish(chrono::Utc::now()).unwrap();
    let documented: BTreeMap<&str, bool> = schema.files[0]
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.nullable))
        .collect();
    let declared: BTreeMap<&str, bool> = Incident::COLUMNS.iter().map(|c| (c.name, c.nullable)).collect();
    assert_eq!(documented, declared);
    assert_eq!(schema.files[0].rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_a_damaged_lake_names_the_file_and_leaves_no_folder() {
    let (world, config) = synced_world().await;
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    let commits = store
        .table_files("commits", tandem::store::delta::AsOf::Latest)
        .unwrap()[0]
        .clone();
    std::fs::write(&commits, b"not parquet").unwrap();
    let out = world.dir.path().join("out");
    let err = tandem::commands::export::run(&args(&world, &out, false), &config, &context(None)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(&commits.display().to_string()), "{message}");
    assert!(folders(&out.join("export")).is_empty(), "no run folder");
    assert!(!out.join("index.html").exists(), "no index lists it");
}

/// The lake itself, not only the exports, is read by the data team's engines: every Delta table
/// through the Python `deltalake` package (delta-rs' reference reader) and DuckDB over it, with
/// exactly the rows tandem reads (each row's key and version), list columns included; and the
/// metric table's Parquet file by pandas and DuckDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltalake_and_duckdb_read_the_lake_tables_as_tandem_wrote_them() {
    let (_world, config) = synced_world().await;
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    tandem::commands::metrics::compute(&RangeArgs::default(), &config).unwrap();
    fn rows<T: tandem_connectors::model::Table>(store: &Store) -> (String, String, Vec<String>) {
        let mut keys: Vec<String> = store
            .read::<T>()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r.key(), r.updated_at().timestamp_millis()))
            .collect();
        keys.sort();
        (T::NAME.to_owned(), T::UPDATED_AT.to_owned(), keys)
    }
    use tandem_connectors::model::{Commit, Quarantined, TicketTransition};
    let tables = [
        rows::<Deployment>(&store),
        rows::<Change>(&store),
        rows::<Commit>(&store),
        rows::<Incident>(&store),
        rows::<Ticket>(&store),
        rows::<TicketTransition>(&store),
        rows::<ChangeRequest>(&store),
        rows::<Quarantined>(&store),
    ];
    assert!(
        tables.iter().all(|(_, _, keys)| !keys.is_empty()),
        "every table has rows"
    );

    require_python_readers();
    let script = r#"
import sys, duckdb
from deltalake import DeltaTable
for arg in sys.argv[1:]:
    path, updated = arg.split("|")
    dt = DeltaTable(path)
    table = dt.to_pyarrow_table()
    frame = table.to_pandas()
    keys = sorted(f"{i} {int(t.value // 1_000_000)}" for i, t in zip(frame["id"], frame[updated]))
    dataset = dt.to_pyarrow_dataset()
    counted = duckdb.sql("SELECT count(*), count(DISTINCT id) FROM dataset").fetchall()[0]
    lists = [f.name for f in table.schema if str(f.type).startswith("list")]
    print("	".join([path, ",".join(keys), f"{counted[0]} {counted[1]}", ",".join(lists)]))
"#;
    let args: Vec<String> = tables
        .iter()
        .map(|(name, updated, _)| format!("{}|{updated}", store.table_dir(name).display()))
        .collect();
    let out = Command::new("python3")
        .args(["-c", script])
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), tables.len(), "{stdout}");
    for ((name, _, keys), line) in tables.iter().zip(lines) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            fields[1],
            keys.join(","),
            "deltalake reads the rows tandem reads in `{name}`"
        );
        assert_eq!(
            fields[2],
            format!("{0} {0}", keys.len()),
            "DuckDB counts them, keys unique, in `{name}`"
        );
        if *name == "changes" {
            assert!(fields[3].contains("labels"), "list columns read as lists: {line}");
        }
    }

    // The metric table and the run history are Delta tables too: read with the rows tandem reads.
    for _ in 0..2 {
        tandem::commands::run::sync_recorded(&config, &context(None), chrono::Utc::now())
            .await
            .unwrap();
    }
    let latest = store
        .metrics_version(tandem::store::delta::AsOf::Latest)
        .unwrap()
        .unwrap();
    let instant = |t: chrono::DateTime<chrono::Utc>| Value::from(t.timestamp_millis());
    let bits = |v: f64| Value::from(v.to_bits() as i64);
    let mut expected_metrics: Vec<Value> = tandem::pipeline::read_metrics(&latest.parquet)
        .unwrap()
        .into_iter()
        .map(|r| {
            serde_json::json!([
                r.metric,
                r.grain,
                r.scope_type,
                r.scope,
                instant(r.period_start),
                instant(r.period_end),
                r.value.map(bits),
                r.unit,
                r.n,
                r.method,
                r.no_data
            ])
        })
        .collect();
    let mut expected_runs: Vec<Value> = tandem::pipeline::read_runs(&store.runs_files().unwrap())
        .unwrap()
        .into_iter()
        .map(|r| {
            serde_json::json!([
                instant(r.started_at),
                r.source,
                r.stream,
                r.records,
                r.quarantined,
                bits(r.seconds),
                r.error
            ])
        })
        .collect();
    assert!(expected_metrics.len() > 100 && !expected_runs.is_empty());
    let runs: std::collections::BTreeSet<String> = expected_runs.iter().map(|r| r[0].to_string()).collect();
    assert_eq!(runs.len(), 2, "every stream of both runs");
    let script = r#"
import sys, json, datetime, struct
from deltalake import DeltaTable
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def plain(v):
    if isinstance(v, datetime.datetime):
        return (v - epoch) // datetime.timedelta(milliseconds=1)
    if isinstance(v, float):
        # The exact bits: JSON's decimal text may not round-trip.
        return struct.unpack("<q", struct.pack("<d", v))[0]
    return v
out = {}
for name, path in [("metrics", sys.argv[1]), ("runs", sys.argv[2])]:
    dt = DeltaTable(path)
    table = dt.to_pyarrow_table()
    rows = [[plain(v) for v in row.values()] for row in table.to_pylist()]
    out[name] = {"version": dt.version(), "rows": rows, "types": {f.name: str(f.type) for f in table.schema}}
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(store.metrics_dir())
        .arg(store.runs_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sorted = |rows: &Value| {
        let mut rows: Vec<Value> = rows.as_array().unwrap().clone();
        rows.sort_by_key(|r| r.to_string());
        rows
    };
    expected_metrics.sort_by_key(|r| r.to_string());
    expected_runs.sort_by_key(|r| r.to_string());
    let same = |read: Vec<Value>, expected: &[Value], what: &str| {
        assert_eq!(read.len(), expected.len(), "{what}: as many rows");
        for (r, e) in read.iter().zip(expected) {
            assert_eq!(r, e, "{what}");
        }
    };
    assert_eq!(read["metrics"]["version"], latest.version);
    same(
        sorted(&read["metrics"]["rows"]),
        &expected_metrics,
        "the metric table's rows",
    );
    same(
        sorted(&read["runs"]["rows"]),
        &expected_runs,
        "the run history's rows",
    );
    assert_eq!(read["runs"]["version"], 2, "created, then one append per run");
    for (table, column, kind) in [
        ("metrics", "period_start", "timestamp[us, tz=UTC]"),
        ("metrics", "value", "double"),
        ("metrics", "n", "int64"),
        ("runs", "started_at", "timestamp[us, tz=UTC]"),
        ("runs", "seconds", "double"),
    ] {
        assert_eq!(read[table]["types"][column], kind, "{table}.{column}");
    }

    let metrics = store.metrics_path();
    let metric_rows = tandem::pipeline::read_metrics(&metrics).unwrap().len();
    let script = "import duckdb, pandas as pd, sys\n\
                  f = sys.argv[1]\n\
                  print(len(pd.read_parquet(f)), duckdb.sql(f\"SELECT count(*) FROM '{f}'\").fetchall()[0][0])";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&metrics)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{metric_rows} {metric_rows}")
    );
}
