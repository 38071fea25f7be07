//! The metric table on disk: Parquet for tandem to read back, CSV for people and spreadsheets.
//!
//! Columns: metric, grain, scope_type, scope (text), period_start, period_end (UTC instants,
//! milliseconds), value (float, null allowed), unit (text), n (integer), method (text, null where
//! the definition has one way only). In the CSV the instants
//! are RFC 3339 strings ending in `Z` (`2026-08-03T00:00:00Z`, fractional seconds only when
//! present) rather than polars' own datetime rendering, so every tool parses them the same way;
//! a null value is an empty field. Both files are written atomically. This module computes
//! nothing.

use std::fs::File;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;

use super::PipelineError;
use super::codec::{io_error, parquet_writer, polars_error, timestamp_dtype, write_atomic};
use crate::metric::MetricRow;

const TABLE: &str = "metrics";

pub(crate) fn write_metrics(rows: &[MetricRow], parquet: &Path, csv: &Path) -> Result<(), PipelineError> {
    let text = |name: &'static str, get: fn(&MetricRow) -> &str| {
        Series::new(name.into(), rows.iter().map(get).collect::<Vec<_>>()).into_column()
    };
    let leading = [
        text("metric", |r| &r.metric),
        text("grain", |r| &r.grain),
        text("scope_type", |r| &r.scope_type),
        text("scope", |r| &r.scope),
    ];
    let trailing = [
        Series::new("value".into(), rows.iter().map(|r| r.value).collect::<Vec<_>>()).into_column(),
        text("unit", |r| &r.unit),
        Series::new("n".into(), rows.iter().map(|r| r.n).collect::<Vec<_>>()).into_column(),
        Series::new(
            "method".into(),
            rows.iter().map(|r| r.method.as_deref()).collect::<Vec<_>>(),
        )
        .into_column(),
    ];

    let instant = |name: &'static str, get: fn(&MetricRow) -> DateTime<Utc>| {
        Int64Chunked::from_vec(
            name.into(),
            rows.iter().map(|r| get(r).timestamp_millis()).collect(),
        )
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column()
    };
    let mut table = frame(
        rows.len(),
        &leading,
        [
            instant("period_start", |r| r.period_start),
            instant("period_end", |r| r.period_end),
        ],
        &trailing,
        parquet,
    )?;
    write_atomic(parquet, |file| {
        parquet_writer(file, table.schema())
            .finish(&mut table)
            .map(drop)
            .map_err(|source| polars_error("writing the metric table".to_owned(), parquet, source))
    })?;

    let rfc3339 = |name: &'static str, get: fn(&MetricRow) -> DateTime<Utc>| {
        let texts: Vec<String> = rows
            .iter()
            .map(|r| get(r).to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .collect();
        Series::new(name.into(), texts).into_column()
    };
    let mut sheet = frame(
        rows.len(),
        &leading,
        [
            rfc3339("period_start", |r| r.period_start),
            rfc3339("period_end", |r| r.period_end),
        ],
        &trailing,
        csv,
    )?;
    write_atomic(csv, |file| {
        CsvWriter::new(file)
            .include_header(true)
            .finish(&mut sheet)
            .map_err(|source| polars_error("writing the metric table".to_owned(), csv, source))
    })
}

/// The metric table's columns in their documented order.
fn frame(
    height: usize,
    leading: &[Column],
    instants: [Column; 2],
    trailing: &[Column],
    path: &Path,
) -> Result<DataFrame, PipelineError> {
    let columns = leading
        .iter()
        .cloned()
        .chain(instants)
        .chain(trailing.iter().cloned())
        .collect();
    DataFrame::new(height, columns)
        .map_err(|source| polars_error("building the metric table".to_owned(), path, source))
}

pub(crate) fn read_metrics(parquet: &Path) -> Result<Vec<MetricRow>, PipelineError> {
    let file = File::open(parquet).map_err(|source| io_error("open", parquet, source))?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|source| polars_error("reading the metric table".to_owned(), parquet, source))?;

    let schema = |column: &str, err: PolarsError| PipelineError::Schema {
        table: TABLE,
        path: parquet.to_owned(),
        column: column.to_owned(),
        message: err.to_string(),
    };
    let text = |name: &str| {
        frame
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(|err| schema(name, err))
    };
    let instant = |name: &str| {
        frame
            .column(name)
            .and_then(|c| c.cast(&timestamp_dtype()))
            .and_then(|c| c.datetime().map(|ca| ca.physical().clone()))
            .map_err(|err| schema(name, err))
    };
    let metric = text("metric")?;
    let grain = text("grain")?;
    let scope_type = text("scope_type")?;
    let scope = text("scope")?;
    let period_start = instant("period_start")?;
    let period_end = instant("period_end")?;
    let value = frame
        .column("value")
        .and_then(|c| c.f64().cloned())
        .map_err(|err| schema("value", err))?;
    let unit = text("unit")?;
    let n = frame
        .column("n")
        .and_then(|c| c.i64().cloned())
        .map_err(|err| schema("n", err))?;
    let method = text("method")?;

    (0..frame.height())
        .map(|row| {
            let missing = |column: &'static str| PipelineError::Value {
                table: TABLE,
                path: parquet.to_owned(),
                column,
                row: format!("#{row}"),
                message: "null or out of range".to_owned(),
            };
            let text = |column: &'static str, values: &StringChunked| {
                values.get(row).map(str::to_owned).ok_or_else(|| missing(column))
            };
            let instant = |column: &'static str, values: &Int64Chunked| {
                values
                    .get(row)
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or_else(|| missing(column))
            };
            Ok(MetricRow {
                metric: text("metric", &metric)?,
                grain: text("grain", &grain)?,
                scope_type: text("scope_type", &scope_type)?,
                scope: text("scope", &scope)?,
                period_start: instant("period_start", &period_start)?,
                period_end: instant("period_end", &period_end)?,
                value: value.get(row),
                unit: text("unit", &unit)?,
                n: n.get(row).ok_or_else(|| missing("n"))?,
                method: method.get(row).map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

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
            },
        ]
    }

    #[test]
    fn round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("metrics.parquet");
        let csv = dir.path().join("metrics.csv");
        write_metrics(&rows(), &parquet, &csv).unwrap();
        assert_eq!(read_metrics(&parquet).unwrap(), rows());
        assert!(!dir.path().join("metrics.parquet.tmp").exists());
        assert!(!dir.path().join("metrics.csv.tmp").exists());
    }

    #[test]
    fn an_empty_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("metrics.parquet");
        write_metrics(&[], &parquet, &dir.path().join("metrics.csv")).unwrap();
        assert!(read_metrics(&parquet).unwrap().is_empty());
    }

    #[test]
    fn the_csv_has_rfc3339_instants_and_empty_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        write_metrics(&rows(), &dir.path().join("metrics.parquet"), &csv).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(
            text,
            "metric,grain,scope_type,scope,period_start,period_end,value,unit,n,method\n\
             deployment_frequency,week,org,all,2026-08-03T00:00:00Z,2026-08-10T00:00:00Z,0.5,per_day,3,\n\
             lead_time_median,range,service,\"api, \"\"v2\"\"\",2026-08-03T00:00:00Z,2026-08-10T00:00:00Z,,hours,0,time\n"
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
