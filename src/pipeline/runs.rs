//! The run history's data files (see `store::runs`): Parquet with the history's declared
//! columns, instants as microseconds (the Delta `timestamp` type). Encoding only: which file
//! goes where and the commit are the store's.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;

use super::PipelineError;
use super::codec::{OwnTable, polars_error};
use crate::store::codec::write_flushed;
use crate::store::runs::RunRecord;

const TABLE: &str = "runs";

/// Writes `rows` as a new data file of the run history at `path`, flushed; returns its size and
/// its `add` action's statistics.
pub(crate) fn write_runs(rows: &[RunRecord], path: &Path) -> Result<(i64, String), PipelineError> {
    let error = |source| polars_error("writing the run history".to_owned(), path, source);
    let started: Vec<i64> = rows.iter().map(|r| r.started_at.timestamp_micros()).collect();
    let columns = vec![
        Int64Chunked::from_vec("started_at".into(), started.clone())
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_series()
            .into_column(),
        Series::new(
            "source".into(),
            rows.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "stream".into(),
            rows.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "records".into(),
            rows.iter().map(|r| r.records).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "quarantined".into(),
            rows.iter().map(|r| r.quarantined).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "seconds".into(),
            rows.iter().map(|r| r.seconds).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "error".into(),
            rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>(),
        )
        .into_column(),
    ];
    let mut frame = DataFrame::new(rows.len(), columns).map_err(error)?;
    let size = write_flushed(&mut frame, path, "the run history")?;
    let micros = |m: Option<&i64>| {
        m.and_then(|m| DateTime::<Utc>::from_timestamp_micros(*m))
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
    };
    let records: Vec<i64> = rows.iter().map(|r| r.records).collect();
    let quarantined: Vec<i64> = rows.iter().map(|r| r.quarantined).collect();
    let stats = serde_json::json!({
        "numRecords": rows.len(),
        "minValues": {
            "started_at": micros(started.iter().min()),
            "records": records.iter().min(),
            "quarantined": quarantined.iter().min(),
        },
        "maxValues": {
            "started_at": micros(started.iter().max()),
            "records": records.iter().max(),
            "quarantined": quarantined.iter().max(),
        },
        "nullCount": {
            "started_at": 0, "source": 0, "stream": 0, "records": 0, "quarantined": 0, "seconds": 0,
            "error": rows.iter().filter(|r| r.error.is_none()).count(),
        },
    });
    Ok((size, strip_nulls(stats).to_string()))
}

/// Statistics without the bounds of an empty file (`null` is not a bound).
fn strip_nulls(mut stats: serde_json::Value) -> serde_json::Value {
    for bounds in ["minValues", "maxValues"] {
        if let Some(map) = stats.get_mut(bounds).and_then(|b| b.as_object_mut()) {
            map.retain(|_, v| !v.is_null());
        }
    }
    stats
}

/// Every row of the run history's data `files`, in file order.
pub(crate) fn read_runs(files: &[PathBuf]) -> Result<Vec<RunRecord>, PipelineError> {
    let mut out = Vec::new();
    for path in files {
        let t = OwnTable::read(TABLE, path)?;
        let started = t.instant("started_at")?;
        let (source, stream, error) = (t.text("source")?, t.text("stream")?, t.text("error")?);
        let (records, quarantined) = (t.long("records")?, t.long("quarantined")?);
        let seconds = t.double("seconds")?;
        for row in 0..t.height() {
            let missing = |column: &'static str| t.missing(column, row);
            out.push(RunRecord {
                started_at: t.at(&started, "started_at", row)?,
                source: source.get(row).ok_or_else(|| missing("source"))?.to_owned(),
                stream: stream.get(row).ok_or_else(|| missing("stream"))?.to_owned(),
                records: records.get(row).ok_or_else(|| missing("records"))?,
                quarantined: quarantined.get(row).ok_or_else(|| missing("quarantined"))?,
                seconds: seconds.get(row).ok_or_else(|| missing("seconds"))?,
                error: error.get(row).map(str::to_owned),
            });
        }
    }
    Ok(out)
}
