//! Columnar Parquet writing for large tables: polars columns built straight from typed records,
//! written row group by row group.
//!
//! [`super::write_table`] goes through serde_json per record, which is right for the store's
//! upserts but far too slow for tens of millions of rows. Here each table says, once, how its
//! fields become columns ([`Columnar`]); a [`TableWriter`] buffers records and writes a row group
//! whenever enough have arrived, so memory is bounded by one row group. The file has exactly the
//! schema the codec writes (checked when the writer is created), so `scan_table`, `read_table` and
//! the engine read it unchanged. Like the codec, it writes to a `.tmp` sibling and renames it into
//! place on [`TableWriter::finish`]. It must not know about metrics.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Table, Ticket, TicketTransition,
};

use super::PipelineError;
use super::codec::{io_error, polars_error};
use crate::store::codec::frame_of;

/// Rows per row group: large enough for fast scans, small enough to keep the buffer modest.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// A table whose records can be turned into polars columns without serde.
pub trait Columnar: Table {
    /// The records as columns, in the order and with the types of `Self::COLUMNS`.
    fn columns(rows: &[Self]) -> Vec<Column>;
}

/// The records as a frame with the codec's schema.
pub fn frame<T: Columnar>(rows: &[T]) -> Result<DataFrame, PolarsError> {
    DataFrame::new(rows.len(), T::columns(rows))
}

/// Writes one table's Parquet file from batches of records.
pub struct TableWriter<T: Columnar> {
    path: PathBuf,
    tmp: PathBuf,
    writer: BatchedWriter<File>,
    buffer: Vec<T>,
    rows: u64,
}

impl<T: Columnar> std::fmt::Debug for TableWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &T::NAME)
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<T: Columnar> TableWriter<T> {
    /// Starts writing `path` (through its `.tmp` sibling). Fails with a schema error when the
    /// table's columns differ from what the codec writes.
    pub fn create(path: &Path) -> Result<Self, PipelineError> {
        let expected = frame_of::<T>(&[], path)?.schema().clone();
        let built = frame::<T>(&[])
            .map_err(|source| polars_error(format!("building table `{}`", T::NAME), path, source))?;
        let found = built.schema();
        if found.as_ref() != expected.as_ref() {
            return Err(PipelineError::Schema {
                table: T::NAME,
                path: path.to_owned(),
                column: "*".to_owned(),
                message: format!("bulk columns {found:?} differ from the declared {expected:?}"),
            });
        }
        let tmp = crate::atomic::tmp_path(path);
        let file = File::create(&tmp).map_err(|source| io_error("create", &tmp, source))?;
        let writer = crate::store::codec::parquet_writer(file, &expected)
            .batched(&expected)
            .map_err(|source| polars_error(format!("writing table `{}`", T::NAME), path, source))?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            writer,
            buffer: Vec::with_capacity(ROW_GROUP_ROWS),
            rows: 0,
        })
    }

    /// Adds records; a row group is written whenever [`ROW_GROUP_ROWS`] are buffered.
    pub fn write(&mut self, rows: impl IntoIterator<Item = T>) -> Result<(), PipelineError> {
        for row in rows {
            self.buffer.push(row);
            if self.buffer.len() >= ROW_GROUP_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PipelineError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let context = || format!("writing table `{}`", T::NAME);
        let batch = frame(&self.buffer).map_err(|source| polars_error(context(), &self.path, source))?;
        self.writer
            .write_batch(&batch)
            .map_err(|source| polars_error(context(), &self.path, source))?;
        self.rows += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is buffered and the footer, syncs, and renames the file into place. Returns the
    /// number of rows written.
    pub fn finish(mut self) -> Result<u64, PipelineError> {
        let result = self.flush().and_then(|()| {
            self.writer
                .finish()
                .map_err(|source| polars_error(format!("writing table `{}`", T::NAME), &self.path, source))?;
            let file = File::options()
                .write(true)
                .open(&self.tmp)
                .map_err(|source| io_error("open", &self.tmp, source))?;
            file.sync_all()
                .map_err(|source| io_error("write", &self.tmp, source))?;
            std::fs::rename(&self.tmp, &self.path)
                .map_err(|source| io_error("rename into place", &self.path, source))
        });
        if result.is_err() {
            // Best effort: the write error is the one worth reporting.
            let _ = std::fs::remove_file(&self.tmp);
        }
        result.map(|()| self.rows)
    }
}

fn name(name: &'static str) -> PlSmallStr {
    PlSmallStr::from_static(name)
}

fn text<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> &str) -> Column {
    StringChunked::from_iter_values(name(column), rows.iter().map(get)).into_column()
}

fn opt_text<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> Option<&str>) -> Column {
    StringChunked::from_iter_options(name(column), rows.iter().map(get)).into_column()
}

fn integer<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> i64) -> Column {
    Int64Chunked::from_iter_values(name(column), rows.iter().map(get)).into_column()
}

fn opt_integer<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> Option<i64>) -> Column {
    Int64Chunked::from_iter_options(name(column), rows.iter().map(get)).into_column()
}

fn flag<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> bool) -> Column {
    BooleanChunked::from_iter_values(name(column), rows.iter().map(get)).into_column()
}

fn opt_flag<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> Option<bool>) -> Column {
    BooleanChunked::from_iter_options(name(column), rows.iter().map(get)).into_column()
}

/// Instants as the codec stores them: milliseconds (truncated), UTC.
fn instant<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> DateTime<Utc>) -> Column {
    opt_instant(column, rows, |r| Some(get(r)))
}

fn opt_instant<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> Option<DateTime<Utc>>) -> Column {
    Int64Chunked::from_iter_options(
        name(column),
        rows.iter().map(|r| get(r).map(|t| t.timestamp_millis())),
    )
    .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
    .into_column()
}

fn texts<T>(column: &'static str, rows: &[T], get: impl Fn(&T) -> &[String]) -> Column {
    let values: usize = rows.iter().map(|r| get(r).len()).sum();
    let mut builder = ListStringChunkedBuilder::new(name(column), rows.len(), values);
    for row in rows {
        builder.append_values_iter(get(row).iter().map(String::as_str));
    }
    builder.finish().into_column()
}

impl Columnar for Deployment {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            text("repo", rows, |r| &r.repo),
            opt_text("service", rows, |r| r.service.as_deref()),
            opt_text("team", rows, |r| r.team.as_deref()),
            text("environment", rows, |r| &r.environment),
            flag("is_production", rows, |r| r.is_production),
            text("status", rows, |r| r.status.as_str()),
            text("sha", rows, |r| &r.sha),
            instant("created_at", rows, |r| r.created_at),
            opt_instant("finished_at", rows, |r| r.finished_at),
            opt_text("deployed_by", rows, |r| r.deployed_by.as_deref()),
            texts("change_refs", rows, |r| &r.change_refs),
            instant("updated_at", rows, |r| r.updated_at),
        ]
    }
}

impl Columnar for Change {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            text("repo", rows, |r| &r.repo),
            opt_text("service", rows, |r| r.service.as_deref()),
            opt_text("team", rows, |r| r.team.as_deref()),
            integer("number", rows, |r| r.number),
            text("title", rows, |r| &r.title),
            text("state", rows, |r| &r.state),
            instant("created_at", rows, |r| r.created_at),
            opt_instant("merged_at", rows, |r| r.merged_at),
            opt_text("merge_commit_sha", rows, |r| r.merge_commit_sha.as_deref()),
            opt_instant("first_commit_at", rows, |r| r.first_commit_at),
            texts("labels", rows, |r| &r.labels),
            flag("is_revert", rows, |r| r.is_revert),
            opt_integer("reverts", rows, |r| r.reverts),
            opt_text("author", rows, |r| r.author.as_deref()),
            instant("updated_at", rows, |r| r.updated_at),
        ]
    }
}

impl Columnar for Incident {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            opt_integer("number", rows, |r| r.number),
            text("title", rows, |r| &r.title),
            opt_text("service_ref", rows, |r| r.service_ref.as_deref()),
            opt_text("team_ref", rows, |r| r.team_ref.as_deref()),
            opt_text("service", rows, |r| r.service.as_deref()),
            opt_text("team", rows, |r| r.team.as_deref()),
            opt_text("severity", rows, |r| r.severity.map(|s| s.as_str())),
            text("status", rows, |r| &r.status),
            instant("started_at", rows, |r| r.started_at),
            opt_instant("acknowledged_at", rows, |r| r.acknowledged_at),
            opt_instant("resolved_at", rows, |r| r.resolved_at),
            texts("cause_refs", rows, |r| &r.cause_refs),
            opt_text("correlation_id", rows, |r| r.correlation_id.as_deref()),
            opt_text("assignee", rows, |r| r.assignee.as_deref()),
            opt_text("acknowledged_by", rows, |r| r.acknowledged_by.as_deref()),
            instant("updated_at", rows, |r| r.updated_at),
        ]
    }
}

impl Columnar for Commit {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            text("repo", rows, |r| &r.repo),
            opt_text("service", rows, |r| r.service.as_deref()),
            opt_text("team", rows, |r| r.team.as_deref()),
            text("sha", rows, |r| &r.sha),
            instant("authored_at", rows, |r| r.authored_at),
            texts("parents", rows, |r| &r.parents),
            text("title", rows, |r| &r.title),
            opt_text("deployment_id", rows, |r| r.deployment_id.as_deref()),
            opt_text("author_name", rows, |r| r.author_name.as_deref()),
            opt_text("author_email", rows, |r| r.author_email.as_deref()),
            instant("updated_at", rows, |r| r.updated_at),
        ]
    }
}

impl Columnar for Ticket {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            text("key", rows, |r| &r.key),
            text("project", rows, |r| &r.project),
            opt_text("service_ref", rows, |r| r.service_ref.as_deref()),
            opt_text("service", rows, |r| r.service.as_deref()),
            opt_text("team", rows, |r| r.team.as_deref()),
            text("category", rows, |r| &r.category),
            text("issue_type", rows, |r| &r.issue_type),
            text("title", rows, |r| &r.title),
            opt_text("priority", rows, |r| r.priority.as_deref()),
            text("status", rows, |r| &r.status),
            text("status_category", rows, |r| &r.status_category),
            texts("labels", rows, |r| &r.labels),
            instant("created_at", rows, |r| r.created_at),
            opt_instant("resolved_at", rows, |r| r.resolved_at),
            opt_text("assignee", rows, |r| r.assignee.as_deref()),
            opt_text("reporter", rows, |r| r.reporter.as_deref()),
            instant("updated_at", rows, |r| r.updated_at),
        ]
    }
}

impl Columnar for TicketTransition {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            text("ticket_id", rows, |r| &r.ticket_id),
            instant("at", rows, |r| r.at),
            opt_text("from_status", rows, |r| r.from_status.as_deref()),
            text("to_status", rows, |r| &r.to_status),
            opt_text("from_category", rows, |r| r.from_category.as_deref()),
            opt_text("to_category", rows, |r| r.to_category.as_deref()),
        ]
    }
}

impl Columnar for ChangeRequest {
    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            text("id", rows, |r| &r.id),
            text("source", rows, |r| &r.source),
            text("number", rows, |r| &r.number),
            text("title", rows, |r| &r.title),
            opt_text("service_ref", rows, |r| r.service_ref.as_deref()),
            opt_text("service", rows, |r| r.service.as_deref()),
            opt_text("team", rows, |r| r.team.as_deref()),
            opt_text("change_type", rows, |r| r.change_type.as_deref()),
            text("state", rows, |r| &r.state),
            opt_flag("approved", rows, |r| r.approved),
            opt_instant("planned_start", rows, |r| r.planned_start),
            opt_instant("planned_end", rows, |r| r.planned_end),
            opt_instant("actual_start", rows, |r| r.actual_start),
            opt_instant("actual_end", rows, |r| r.actual_end),
            opt_instant("closed_at", rows, |r| r.closed_at),
            opt_text("close_code", rows, |r| r.close_code.as_deref()),
            opt_text("requested_by", rows, |r| r.requested_by.as_deref()),
            opt_text("assigned_to", rows, |r| r.assigned_to.as_deref()),
            instant("created_at", rows, |r| r.created_at),
            instant("updated_at", rows, |r| r.updated_at),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tandem_fixtures::large::{LargeSpec, ServiceBatch};

    use super::*;
    use crate::store::codec::{read_table, scan_table};

    fn batch() -> ServiceBatch {
        let spec = LargeSpec {
            services: 2,
            weeks: 6,
            ..LargeSpec::benchmark(0.5)
        };
        let mut all = ServiceBatch::default();
        for b in spec.batches() {
            all.deployments.extend(b.deployments);
            all.changes.extend(b.changes);
            all.commits.extend(b.commits);
            all.incidents.extend(b.incidents);
            all.tickets.extend(b.tickets);
            all.ticket_transitions.extend(b.ticket_transitions);
            all.change_requests.extend(b.change_requests);
        }
        all
    }

    /// What the codec reads back from a record (instants truncated to milliseconds), written
    /// here through the codec itself.
    fn through_codec<T: Table + PartialEq + std::fmt::Debug>(rows: &[T], dir: &Path) -> Vec<T> {
        let path = dir.join(format!("{}-codec.parquet", T::NAME));
        crate::store::codec::write_table(rows, &path).unwrap();
        read_table::<T>(&path).unwrap()
    }

    /// Written in several row groups by the bulk writer, the rows read back equal the records
    /// (as the codec would store them), and the file's schema equals the codec's.
    fn round_trip<T: Columnar + PartialEq + std::fmt::Debug>(rows: &[T], dir: &Path) {
        assert!(rows.len() > 10, "{} has rows to test", T::NAME);
        let path = dir.join(format!("{}.parquet", T::NAME));
        let mut writer = TableWriter::<T>::create(&path).unwrap();
        let (a, b) = rows.split_at(rows.len() / 3);
        writer.write(a.iter().cloned()).unwrap();
        writer.flush().unwrap();
        writer.write(b.iter().cloned()).unwrap();
        assert_eq!(writer.finish().unwrap(), rows.len() as u64);
        assert!(crate::atomic::leftovers(&path).is_empty());

        let read = read_table::<T>(&path).unwrap();
        assert_eq!(read, through_codec(rows, dir), "table {}", T::NAME);

        let ours = ParquetReader::new(File::open(&path).unwrap()).finish().unwrap();
        let codec_path = dir.join(format!("{}-codec.parquet", T::NAME));
        let theirs = ParquetReader::new(File::open(&codec_path).unwrap())
            .finish()
            .unwrap();
        assert_eq!(ours.schema(), theirs.schema(), "table {}", T::NAME);
        assert!(ours.equals_missing(&theirs), "table {}", T::NAME);
        // The engine's reader accepts it too.
        let scanned = scan_table::<T>(std::slice::from_ref(&path))
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(scanned.height(), rows.len());
    }

    #[test]
    fn every_table_round_trips_with_the_codecs_schema() {
        let dir = tempfile::tempdir().unwrap();
        let all = batch();
        round_trip(&all.deployments, dir.path());
        round_trip(&all.changes, dir.path());
        round_trip(&all.commits, dir.path());
        round_trip(&all.incidents, dir.path());
        round_trip(&all.tickets, dir.path());
        round_trip(&all.ticket_transitions, dir.path());
        round_trip(&all.change_requests, dir.path());
    }

    #[test]
    fn sub_millisecond_instants_are_truncated_like_the_codec() {
        use chrono::TimeZone as _;
        let dir = tempfile::tempdir().unwrap();
        let mut rows = batch().deployments;
        rows.truncate(12);
        for (i, d) in rows.iter_mut().enumerate() {
            d.created_at = Utc.timestamp_nanos(1_785_700_000_123_456_789 + i as i64);
        }
        round_trip(&rows, dir.path());
        let read = read_table::<Deployment>(&dir.path().join("deployments.parquet")).unwrap();
        assert_eq!(read[0].created_at.timestamp_millis(), 1_785_700_000_123);
    }

    #[test]
    fn an_empty_table_is_a_file_with_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents.parquet");
        let writer = TableWriter::<Incident>::create(&path).unwrap();
        assert_eq!(writer.finish().unwrap(), 0);
        assert!(read_table::<Incident>(&path).unwrap().is_empty());
        let frame = ParquetReader::new(File::open(&path).unwrap()).finish().unwrap();
        assert_eq!(
            frame.schema().as_ref(),
            frame_of::<Incident>(&[], &path).unwrap().schema().as_ref()
        );
    }
}
