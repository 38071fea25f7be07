//! The metric table on disk: Parquet for tandem to read back (a data file of the Delta metric
//! table), CSV for people and spreadsheets when asked for (`tandem metrics --format csv`, exports).
//!
//! Columns: metric, grain, scope_type, scope (text), period_start, period_end (UTC instants,
//! microseconds: the Delta `timestamp` type, as the metric table is a Delta table), value (float, null allowed), unit (text), n (integer), method (text, null where
//! the definition has one way only), no_data (text: why there is no value, null where the inputs
//! cover the period). In the CSV the instants
//! are RFC 3339 strings ending in `Z` (`2026-08-03T00:00:00Z`, fractional seconds only when
//! present) rather than polars' own datetime rendering, so every tool parses them the same way;
//! a null value is an empty field; a text cell that a spreadsheet would take for a formula starts
//! with `'` (the Parquet file keeps the exact text). The Parquet file is written atomically. This
//! module computes nothing.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;

use super::PipelineError;
use super::codec::{OwnTable, io_error, polars_error, spreadsheet_safe, write_atomic};
use crate::metric::{MetricRow, MetricTable};
use crate::store::codec::parquet_writer;

const TABLE: &str = "metrics";

/// Rows per batch written: the table goes to disk a slice at a time, so writing a table of
/// millions of rows never holds it whole as text columns.
const BATCH_ROWS: usize = 1 << 18;

pub(crate) fn write_metrics(table: &MetricTable, parquet: &Path) -> Result<(i64, String), PipelineError> {
    let batches = || {
        (0..table.len().div_ceil(BATCH_ROWS)).map(|b| b * BATCH_ROWS..((b + 1) * BATCH_ROWS).min(table.len()))
    };
    let building = |path| failed("building the metric table", path);
    let writing = |path| failed("writing the metric table", path);

    write_atomic(parquet, |file| {
        let schema = frame(table, 0..0, Instants::Micros)
            .map_err(building(parquet))?
            .schema()
            .clone();
        let mut writer = parquet_writer(file, &schema)
            .batched(&schema)
            .map_err(writing(parquet))?;
        for rows in batches() {
            let batch = frame(table, rows, Instants::Micros).map_err(building(parquet))?;
            writer.write_batch(&batch).map_err(writing(parquet))?;
        }
        writer.finish().map(drop).map_err(writing(parquet))
    })?;
    let size = std::fs::metadata(parquet)
        .map_err(|source| io_error("measure", parquet, source))?
        .len();
    let stats = stats(table.len(), |i| {
        let (_, start, end) = table.period_of(i);
        (
            start,
            end,
            table.n(i),
            [
                table.value(i).is_none(),
                table.method(i).is_none(),
                table.no_data(i).is_none(),
            ],
        )
    });
    Ok((i64::try_from(size).unwrap_or(i64::MAX), stats))
}

/// Writes the metric table as CSV to `out` (`what` names it in an error), a slice at a time.
pub(crate) fn write_metrics_csv(
    table: &MetricTable,
    out: &mut dyn std::io::Write,
    what: &Path,
) -> Result<(), PipelineError> {
    let building = |path| failed("building the metric table", path);
    let writing = |path| failed("writing the metric table", path);
    let schema = frame(table, 0..0, Instants::Rfc3339)
        .map_err(building(what))?
        .schema()
        .clone();
    let mut writer = CsvWriter::new(out)
        .include_header(true)
        .batched(&schema)
        .map_err(writing(what))?;
    for b in 0..table.len().div_ceil(BATCH_ROWS) {
        let rows = b * BATCH_ROWS..((b + 1) * BATCH_ROWS).min(table.len());
        let batch = frame(table, rows, Instants::Rfc3339)
            .and_then(|f| spreadsheet_safe(&f))
            .map_err(building(what))?;
        writer.write_batch(&batch).map_err(writing(what))?;
    }
    writer.finish().map_err(writing(what))
}

/// What a data file's statistics need of one row: period start and end, `n`, and whether
/// `value`, `method` and `no_data` are null.
type StatsRow = (DateTime<Utc>, DateTime<Utc>, i64, [bool; 3]);

/// The Delta `add` statistics of a metric table's data file of `len` rows: rows; minimum and
/// maximum of the period bounds and of `n`; nulls per column.
fn stats(len: usize, row: impl Fn(usize) -> StatsRow) -> String {
    let instant = |t: DateTime<Utc>| serde_json::Value::from(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    let (mut min, mut max) = (serde_json::Map::new(), serde_json::Map::new());
    let mut nulls = [0usize; 3];
    let mut bounds: Option<(StatsRow, StatsRow)> = None;
    for i in 0..len {
        let r = row(i);
        for (count, null) in nulls.iter_mut().zip(r.3) {
            *count += usize::from(null);
        }
        bounds = Some(match bounds {
            None => (r, r),
            Some((lo, hi)) => (
                (lo.0.min(r.0), lo.1.min(r.1), lo.2.min(r.2), lo.3),
                (hi.0.max(r.0), hi.1.max(r.1), hi.2.max(r.2), hi.3),
            ),
        });
    }
    if let Some((lo, hi)) = bounds {
        for (map, r) in [(&mut min, lo), (&mut max, hi)] {
            map.insert("period_start".to_owned(), instant(r.0));
            map.insert("period_end".to_owned(), instant(r.1));
            map.insert("n".to_owned(), r.2.into());
        }
    }
    serde_json::json!({
        "numRecords": len,
        "minValues": min,
        "maxValues": max,
        "nullCount": {
            "metric": 0, "grain": 0, "scope_type": 0, "scope": 0,
            "period_start": 0, "period_end": 0, "unit": 0, "n": 0,
            "value": nulls[0], "method": nulls[1], "no_data": nulls[2],
        },
    })
    .to_string()
}

/// Converts the metric table file of an earlier release (`old`, instants in milliseconds) into a
/// data file of the Delta metric table (`parquet`, instants in microseconds); returns its size and
/// statistics as [`write_metrics`] does. The rows are unchanged.
pub(crate) fn convert_metrics(old: &Path, parquet: &Path) -> Result<(i64, String), PipelineError> {
    let rows = read_metrics(old)?;
    let micros = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    let converting = failed("converting the metric table", old);
    let mut frame = ParquetReader::new(File::open(old).map_err(|source| io_error("open", old, source))?)
        .finish()
        .and_then(|frame| {
            let no_data = if frame.column("no_data").is_ok() {
                col("no_data")
            } else {
                // A table written before tandem kept the reason: nothing was marked.
                lit(NULL).cast(DataType::String).alias("no_data")
            };
            frame
                .lazy()
                .select([
                    col("metric"),
                    col("grain"),
                    col("scope_type"),
                    col("scope"),
                    col("period_start").cast(micros.clone()),
                    col("period_end").cast(micros),
                    col("value"),
                    col("unit"),
                    col("n"),
                    col("method"),
                    no_data,
                ])
                .collect()
        })
        .map_err(converting)?;
    write_atomic(parquet, |file| {
        parquet_writer(file, &frame.schema().clone())
            .finish(&mut frame)
            .map(drop)
            .map_err(failed("writing the metric table", parquet))
    })?;
    let size = std::fs::metadata(parquet)
        .map_err(|source| io_error("measure", parquet, source))?
        .len();
    let stats = stats(rows.len(), |i| {
        let r = &rows[i];
        (
            r.period_start,
            r.period_end,
            r.n,
            [r.value.is_none(), r.method.is_none(), r.no_data.is_none()],
        )
    });
    Ok((i64::try_from(size).unwrap_or(i64::MAX), stats))
}

/// Names the file and the step in a polars error.
fn failed<'a>(what: &'a str, path: &'a Path) -> impl Fn(PolarsError) -> PipelineError + 'a {
    move |source| polars_error(what.to_owned(), path, source)
}

/// How a batch carries the period bounds: UTC datetimes in microseconds, the Delta `timestamp`
/// type (Parquet), or RFC 3339 text (CSV).
#[derive(Clone, Copy)]
enum Instants {
    Micros,
    Rfc3339,
}

/// The metric table's `rows`, in its documented column order.
fn frame(table: &MetricTable, rows: Range<usize>, instants: Instants) -> PolarsResult<DataFrame> {
    let text = |name: &'static str, get: &dyn Fn(usize) -> &'static str| {
        Series::new(name.into(), rows.clone().map(get).collect::<Vec<_>>()).into_column()
    };
    let instant = |name: &'static str, get: &dyn Fn(usize) -> DateTime<Utc>| match instants {
        Instants::Micros => Int64Chunked::from_vec(
            name.into(),
            rows.clone().map(|i| get(i).timestamp_micros()).collect(),
        )
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column(),
        Instants::Rfc3339 => Series::new(
            name.into(),
            rows.clone()
                .map(|i| get(i).to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .collect::<Vec<_>>(),
        )
        .into_column(),
    };
    let columns = vec![
        text("metric", &|i| table.metric(i).as_str()),
        text("grain", &|i| table.period_of(i).0),
        text("scope_type", &|i| table.scope_of(i).0),
        Series::new(
            "scope".into(),
            rows.clone().map(|i| table.scope_of(i).1).collect::<Vec<_>>(),
        )
        .into_column(),
        instant("period_start", &|i| table.period_of(i).1),
        instant("period_end", &|i| table.period_of(i).2),
        Series::new(
            "value".into(),
            rows.clone().map(|i| table.value(i)).collect::<Vec<_>>(),
        )
        .into_column(),
        text("unit", &|i| table.metric(i).unit()),
        Series::new("n".into(), rows.clone().map(|i| table.n(i)).collect::<Vec<_>>()).into_column(),
        Series::new(
            "method".into(),
            rows.clone().map(|i| table.method(i)).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "no_data".into(),
            rows.clone().map(|i| table.no_data(i)).collect::<Vec<_>>(),
        )
        .into_column(),
    ];
    DataFrame::new(rows.len(), columns)
}

pub(crate) fn read_metrics(parquet: &Path) -> Result<Vec<MetricRow>, PipelineError> {
    let t = OwnTable::read(TABLE, parquet)?;
    let (metric, grain, scope_type, scope) = (
        t.text("metric")?,
        t.text("grain")?,
        t.text("scope_type")?,
        t.text("scope")?,
    );
    let (period_start, period_end) = (t.instant("period_start")?, t.instant("period_end")?);
    let (value, unit, n, method) = (
        t.double("value")?,
        t.text("unit")?,
        t.long("n")?,
        t.text("method")?,
    );
    // A table written before tandem kept the reason has no such column: nothing was marked.
    let no_data = t.text_if_present("no_data")?;
    (0..t.height())
        .map(|row| {
            let text = |column: &'static str, values: &StringChunked| {
                values
                    .get(row)
                    .map(str::to_owned)
                    .ok_or_else(|| t.missing(column, row))
            };
            Ok(MetricRow {
                metric: text("metric", &metric)?,
                grain: text("grain", &grain)?,
                scope_type: text("scope_type", &scope_type)?,
                scope: text("scope", &scope)?,
                period_start: t.at(&period_start, "period_start", row)?,
                period_end: t.at(&period_end, "period_end", row)?,
                value: value.get(row),
                unit: text("unit", &unit)?,
                n: n.get(row).ok_or_else(|| t.missing("n", row))?,
                method: method.get(row).map(str::to_owned),
                no_data: no_data.as_ref().and_then(|c| c.get(row)).map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::metric::MetricId;
    use crate::store::codec::timestamp_dtype;

    fn table() -> MetricTable {
        let monday = Utc.with_ymd_and_hms(2026, 8, 3, 0, 0, 0).unwrap();
        let next = Utc.with_ymd_and_hms(2026, 8, 10, 0, 0, 0).unwrap();
        let mut table = MetricTable::new();
        let (org, week) = (table.scope("org", "all"), table.period("week", monday, next));
        table.push(MetricId::DeploymentFrequency, org, week, Some(0.5), 3, None);
        let (api, range) = (
            table.scope("service", "api, \"v2\""),
            table.period("range", monday, next),
        );
        table.push(MetricId::LeadTimeMedian, api, range, None, 0, Some("time"));
        table
    }

    fn rows() -> Vec<MetricRow> {
        let monday = Utc.with_ymd_and_hms(2026, 8, 3, 0, 0, 0).unwrap();
        let next = Utc.with_ymd_and_hms(2026, 8, 10, 0, 0, 0).unwrap();
        vec![
            MetricRow {
                metric: "deployment_frequency".into(),
                grain: "week".into(),
                scope_type: "org".into(),
                scope: "all".into(),
                period_start: monday,
                period_end: next,
                value: Some(0.5),
                unit: "per_day".into(),
                n: 3,
                method: None,
                no_data: None,
            },
            MetricRow {
                metric: "lead_time_median".into(),
                grain: "range".into(),
                scope_type: "service".into(),
                scope: "api, \"v2\"".into(),
                period_start: monday,
                period_end: next,
                value: None,
                unit: "hours".into(),
                n: 0,
                method: Some("time".into()),
                no_data: None,
            },
        ]
    }

    #[test]
    fn the_table_gives_back_the_rows_it_was_given() {
        assert_eq!(table().to_rows(), rows());
    }

    /// The Parquet file, and the CSV a `--format csv` prints, written to `csv`.
    fn write_metrics(
        table: &MetricTable,
        parquet: &Path,
        csv: &Path,
    ) -> Result<(i64, String), PipelineError> {
        let written = super::write_metrics(table, parquet)?;
        let mut file = File::create(csv).unwrap();
        write_metrics_csv(table, &mut file, csv)?;
        Ok(written)
    }

    #[test]
    fn a_table_larger_than_a_batch_is_written_whole_and_in_order() {
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        let mut table = MetricTable::new();
        let count = BATCH_ROWS * 2 + 17;
        for i in 0..count {
            let scope = table.scope("service", &format!("s{}", i % 7));
            let from = start + chrono::Duration::weeks((i % 13) as i64);
            let period = table.period("week", from, from + chrono::Duration::weeks(1));
            let value = (i % 5 != 0).then_some(i as f64);
            table.push(MetricId::DeploymentCount, scope, period, value, i as i64, None);
        }
        let dir = tempfile::tempdir().unwrap();
        let (parquet, csv) = (dir.path().join("metrics.parquet"), dir.path().join("metrics.csv"));
        write_metrics(&table, &parquet, &csv).unwrap();
        let back = read_metrics(&parquet).unwrap();
        assert_eq!(back.len(), count);
        for i in [0, 1, BATCH_ROWS - 1, BATCH_ROWS, BATCH_ROWS + 1, count - 1] {
            assert_eq!(back[i], table.row(i), "row {i}");
        }
        let lines = std::fs::read_to_string(&csv).unwrap().lines().count();
        assert_eq!(lines, count + 1, "a header and one line per row");
    }

    #[test]
    fn round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("metrics.parquet");
        let csv = dir.path().join("metrics.csv");
        write_metrics(&table(), &parquet, &csv).unwrap();
        assert_eq!(read_metrics(&parquet).unwrap(), rows());
        assert!(crate::atomic::leftovers(&dir.path().join("metrics.parquet")).is_empty());
        assert!(crate::atomic::leftovers(&dir.path().join("metrics.csv")).is_empty());
    }

    #[test]
    fn an_empty_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("metrics.parquet");
        write_metrics(&MetricTable::new(), &parquet, &dir.path().join("metrics.csv")).unwrap();
        assert!(read_metrics(&parquet).unwrap().is_empty());
    }

    #[test]
    fn the_csv_has_rfc3339_instants_and_empty_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        write_metrics(&table(), &dir.path().join("metrics.parquet"), &csv).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(
            text,
            "metric,grain,scope_type,scope,period_start,period_end,value,unit,n,method,no_data\n\
             deployment_frequency,week,org,all,2026-08-03T00:00:00Z,2026-08-10T00:00:00Z,0.5,per_day,3,,\n\
             lead_time_median,range,service,\"api, \"\"v2\"\"\",2026-08-03T00:00:00Z,2026-08-10T00:00:00Z,,hours,0,time,\n"
        );
    }

    #[test]
    fn a_figure_without_data_keeps_its_reason_and_loses_its_value_in_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (parquet, csv) = (dir.path().join("metrics.parquet"), dir.path().join("metrics.csv"));
        let mut table = table();
        table.mark_no_data(|metric, grain, _, _| {
            (metric == MetricId::DeploymentFrequency && grain == "week")
                .then(|| "gh has never synced".to_owned())
        });
        write_metrics(&table, &parquet, &csv).unwrap();
        let back = read_metrics(&parquet).unwrap();
        assert_eq!(
            back[0].value, None,
            "a 0.5 from a source that never synced is not shown"
        );
        assert_eq!(back[0].no_data.as_deref(), Some("gh has never synced"));
        assert_eq!(back[0].display_value(), "no data");
        assert_eq!(back[1].no_data, None);
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with(",per_day,3,,gh has never synced"),
            "{text}"
        );
    }

    #[test]
    fn metric_csv_text_that_a_spreadsheet_would_run_is_neutralised_and_numbers_stay_numbers() {
        let start = Utc.with_ymd_and_hms(2026, 8, 3, 0, 0, 0).unwrap();
        let mut table = MetricTable::new();
        let period = table.period("week", start, start + chrono::Duration::weeks(1));
        let hostile = [
            "=HYPERLINK(\"http://evil.example\",\"x\")",
            "+1+2",
            "-1+2",
            "@SUM(A1)",
            "\tcmd",
            "\rcmd",
            "plain-name",
        ];
        for name in hostile {
            let scope = table.scope("service", name);
            table.push(MetricId::DeploymentCount, scope, period, Some(-1.5), 2, None);
        }
        let dir = tempfile::tempdir().unwrap();
        let (parquet, csv) = (dir.path().join("metrics.parquet"), dir.path().join("metrics.csv"));
        write_metrics(&table, &parquet, &csv).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut reader = text.lines().skip(1);
        for expected in [
            "'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\"",
            "'+1+2,",
            "'-1+2,",
            "'@SUM(A1),",
            ",'\tcmd,",
            "'\rcmd",
            "plain-name,",
        ] {
            let line = reader.next().unwrap_or_default();
            assert!(line.contains(expected), "{expected:?} in {line:?}");
            assert!(
                line.contains(",-1.5,count,2,"),
                "a negative number stays a number: {line:?}"
            );
        }
        let scopes: Vec<String> = read_metrics(&parquet)
            .unwrap()
            .into_iter()
            .map(|r| r.scope)
            .collect();
        assert_eq!(scopes, hostile, "the Parquet file keeps the exact text");
    }

    #[test]
    fn a_metric_table_of_an_earlier_release_is_converted_to_microsecond_instants_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (written, csv) = (dir.path().join("new.parquet"), dir.path().join("new.csv"));
        write_metrics(&table(), &written, &csv).unwrap();
        // An earlier release's file: instants in milliseconds, no `no_data` column.
        let old = dir.path().join("old.parquet");
        let mut frame = ParquetReader::new(File::open(&written).unwrap())
            .finish()
            .unwrap()
            .lazy()
            .with_columns([
                col("period_start").cast(timestamp_dtype()),
                col("period_end").cast(timestamp_dtype()),
            ])
            .drop(by_name(["no_data"], true, false))
            .collect()
            .unwrap();
        ParquetWriter::new(File::create(&old).unwrap())
            .finish(&mut frame)
            .unwrap();

        let converted = dir.path().join("converted.parquet");
        let (size, stats) = convert_metrics(&old, &converted).unwrap();
        assert_eq!(read_metrics(&converted).unwrap(), rows());
        assert_eq!(size, std::fs::metadata(&converted).unwrap().len() as i64);
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(stats["numRecords"], 2);
        assert_eq!(stats["minValues"]["period_start"], "2026-08-03T00:00:00.000Z");
        assert_eq!(stats["nullCount"]["value"], 1);
        let frame = ParquetReader::new(File::open(&converted).unwrap())
            .finish()
            .unwrap();
        assert_eq!(
            frame.column("period_start").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)),
            "the Delta `timestamp` type"
        );
        assert_eq!(
            frame.get_column_names(),
            [
                "metric",
                "grain",
                "scope_type",
                "scope",
                "period_start",
                "period_end",
                "value",
                "unit",
                "n",
                "method",
                "no_data"
            ]
        );
    }

    #[test]
    fn a_missing_metric_table_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_metrics(&dir.path().join("metrics.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot open "), "{err}");
        assert!(err.contains("metrics.parquet"), "{err}");
    }
}
