//! Hostile text from a source, end to end: synced from a file import, then exported, written to
//! the metric table and posted in the nightly digest. CSV cells cannot run as spreadsheet
//! formulas, the digest cannot notify or link in a chat channel, and the Parquet files keep the
//! exact text.

use std::io::Write as _;

use chrono::{Duration, NaiveDate};
use tandem::cli::{ExportArgs, RangeArgs};
use tandem::report::nightly::Window;
use tandem::store::Store;
use tandem_connectors::model::Incident;

use crate::common::{World, env, fast_sync};

const WEEKS: u32 = 4;
/// A service name a source may send: a chat mention, a Slack control sequence and a link.
const SERVICE: &str = "@here <!channel> https://evil.example/login";
/// An incident title that is a spreadsheet formula.
const TITLE: &str = "=HYPERLINK(\"https://evil.example\",\"click\")";

/// Adds five failed deployments and five incidents of the hostile service on `day` to the
/// world's file imports.
fn import_hostile_records(world: &World, day: NaiveDate) {
    let imports = world.dir.path().join("imports");
    let mut deployments = std::fs::OpenOptions::new()
        .append(true)
        .open(imports.join("deployments.csv"))
        .unwrap();
    let mut incidents = std::fs::OpenOptions::new()
        .append(true)
        .open(imports.join("incidents.ndjson"))
        .unwrap();
    for i in 0..5 {
        let at = day.and_hms_opt(9 + i, 0, 0).unwrap().and_utc();
        writeln!(
            deployments,
            "legacy/evil,production,true,failure,{:040x},{},{},\"{}\"",
            0xe7_1000 + i,
            at.format("%Y-%m-%d %H:%M:%S"),
            (at + Duration::minutes(20)).format("%Y-%m-%d %H:%M:%S"),
            SERVICE.replace('"', "\"\"")
        )
        .unwrap();
        let line = serde_json::json!({
            "number": 9000 + i,
            "title": TITLE,
            "service": SERVICE,
            "severity": "sev2",
            "status": "resolved",
            "started_at": (at + Duration::minutes(30)).to_rfc3339(),
            "acknowledged_at": (at + Duration::minutes(35)).to_rfc3339(),
            "resolved_at": (at + Duration::minutes(90)).to_rfc3339(),
            "cause_refs": [],
        });
        writeln!(incidents, "{line}").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_source_text_is_inert_in_every_csv_and_in_the_chat_digest() {
    let world = World::start(WEEKS).await;
    let day = world.org.spec.start + Duration::days(10);
    import_hostile_records(&world, day);
    let config = world.config();
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    tandem::sync::sync(&config, &store, &env(), &fast_sync())
        .await
        .unwrap();
    let stored: Vec<Incident> = store.read().unwrap();
    assert_eq!(
        stored.iter().filter(|i| i.title == TITLE).count(),
        5,
        "the lake keeps the exact text"
    );

    // The data team's export: CSV neutralised, Parquet exact.
    let out = world.dir.path().join("out");
    let args = ExportArgs {
        range: RangeArgs {
            weeks: Some(WEEKS),
            until: Some(world.org.spec.start + Duration::weeks(i64::from(WEEKS))),
            ..RangeArgs::default()
        },
        out: Some(out.clone()),
        pseudonymise: false,
    };
    let ctx = tandem::commands::Context {
        env: env(),
        progress: false,
    };
    tandem::commands::export::run(&args, &config, &ctx).unwrap();
    let export = std::fs::read_dir(out.join("export"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let incidents_csv = std::fs::read_to_string(export.join("incidents.csv")).unwrap();
    assert!(
        incidents_csv.contains("\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"click\"\")\""),
        "{incidents_csv}"
    );
    assert!(incidents_csv.contains("'@here <!channel>"), "{incidents_csv}");
    for csv in [
        &incidents_csv,
        &std::fs::read_to_string(export.join("metrics.csv")).unwrap(),
    ] {
        for line in csv.lines() {
            for cell in line.split(',') {
                let cell = cell.trim_start_matches('"');
                assert!(
                    !cell.starts_with(['=', '+', '@']),
                    "a cell a spreadsheet would run: {cell:?} in {line}"
                );
            }
        }
    }
    let exported = tandem::pipeline::read_metrics(&export.join("metrics.parquet")).unwrap();
    assert!(
        exported.iter().any(|r| r.scope == SERVICE),
        "the export's Parquet keeps the exact service name"
    );

    // The lake's metric table.
    let table = tandem::commands::metrics::compute(&args.range, &config).unwrap();
    let parquet = store.metrics_path();
    // Its CSV, as `tandem metrics --format csv` prints it.
    let mut csv = Vec::new();
    tandem::pipeline::write_metrics_csv(&table, &mut csv, std::path::Path::new("stdout")).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.contains(",'@here <!channel> https://evil.example/login,"),
        "{csv}"
    );
    assert!(!csv.contains(",@here"), "{csv}");
    let rows = tandem::pipeline::read_metrics(&parquet).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.scope == SERVICE && r.value.is_some_and(|v| v > 0.0))
    );

    // The chat digest of that day.
    let now = (day + Duration::days(1)).and_hms_opt(6, 0, 0).unwrap().and_utc();
    let digest =
        tandem::commands::nightly::write(&config, Some(out), Window::ending(day), None, now).unwrap();
    let md = std::fs::read_to_string(&digest.digest).unwrap();
    assert!(
        md.contains("@\u{2060}here"),
        "the service is listed, made inert: {md}"
    );
    for live in ["@here", "<!channel>", "https://", "evil.example"] {
        assert!(!md.contains(live), "{live:?} in the digest: {md}");
    }
    let html = std::fs::read_to_string(&digest.html).unwrap();
    assert!(!html.contains("<!channel>"), "{html}");
}
