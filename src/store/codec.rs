//! The canonical tables' Parquet codec: records ⇄ Parquet files, driven by each table's one
//! declaration (`canonical_table!`: `Table::COLUMNS` and `Table::cell`), and the one Parquet
//! writer (`parquet_writer`) every file tandem writes goes through.
//!
//! Records are written column by column from their cells (`frame_of`), whether a commit's data
//! file or a bulk writer's row group ([`TableWriter`]), and read back through serde_json, so the
//! codec needs no per-table code: a record's fields are its columns. This is the store's only way
//! into and out of Parquet, and the only file of the store that uses polars. It must not compute
//! metrics, know any particular table, or leave a half-written file where a reader could find it.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;
use serde_json::{Map, Value};
use tandem_connectors::model::{Cell, Column as Declared, ColumnKind, Table};

/// What went wrong encoding or decoding a table's Parquet file.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// polars failed; the message names the table or file.
    #[error("{context}: {source}")]
    Polars {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: PolarsError,
    },
    /// A file could not be created, written, read or renamed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `rename`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or a record does not have the columns its table declares.
    #[error(
        "{}: table `{table}`, column `{column}`: {message}; rewrite the file with this version of tandem",
        path.display()
    )]
    Schema {
        /// The table (`deployments`, `changes`, …).
        table: &'static str,
        /// The file being written or read.
        path: PathBuf,
        /// The column (or serde field) at fault.
        column: String,
        /// What is wrong with it.
        message: String,
    },
    /// One value does not fit its column (wrong type, null where not allowed, bad timestamp).
    #[error("{}: table `{table}`, column `{column}`, row {row}: {message}", path.display())]
    Value {
        /// The table.
        table: &'static str,
        /// The file being written or read.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// The row: its primary key when known (`id = …`), else its position in the file.
        row: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A row read back from a file cannot become a record.
    #[error("{}: table `{table}`, row {row}: {source}", path.display())]
    Decode {
        /// The table.
        table: &'static str,
        /// The file.
        path: PathBuf,
        /// The row: its primary key when known (`id = …`), else its position in the file.
        row: String,
        /// serde's account of the mismatch.
        source: serde_json::Error,
    },
}

/// How instants are stored: UTC, millisecond precision (finer precision is truncated on write).
pub(crate) fn timestamp_dtype() -> DataType {
    DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
}

/// The polars type a declared column is stored as.
fn dtype_of(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Text => DataType::String,
        ColumnKind::Integer => DataType::Int64,
        ColumnKind::Bool => DataType::Boolean,
        ColumnKind::Timestamp => timestamp_dtype(),
        ColumnKind::TextList => DataType::List(Box::new(DataType::String)),
    }
}

/// A Parquet writer as tandem writes every file: zstd, and the Arrow schema (`ARROW:schema`) at
/// polars' oldest compatibility level — text as `large_string` rather than `string_view`, which
/// pyarrow cannot turn into pandas inside a list — so the lake, the metric table and the exports
/// all load unchanged in pandas and DuckDB. The Parquet column types are the same either way.
pub(crate) fn parquet_writer<W: std::io::Write>(sink: W, schema: &Schema) -> ParquetWriter<W> {
    let arrow = schema.to_arrow(CompatLevel::oldest());
    let key = polars_parquet::write::schema_to_metadata_key(&arrow);
    ParquetWriter::new(sink)
        .with_compression(ParquetCompression::Zstd(None))
        .with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![(
            key.key,
            key.value.unwrap_or_default(),
        )])))
}

/// Writes records as one whole Parquet file, atomically: the layout an earlier release kept each
/// table in (`Store::legacy_table_path`), which tests and tools build lakes to migrate from.
pub fn write_table<T: Table>(rows: &[T], path: &Path) -> Result<(), CodecError> {
    let mut frame = frame_of(rows, path)?;
    crate::atomic::write_atomic(
        path,
        |file: &mut File| {
            parquet_writer(file, frame.schema())
                .finish(&mut frame)
                .map(drop)
                .map_err(|source| polars_error(format!("writing table `{}`", T::NAME), path, source))
        },
        io_error,
    )
}

/// Rows per row group of a [`TableWriter`]: large enough for fast scans, small enough to keep its
/// buffer modest.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Writes one table's whole Parquet file from batches of records, for tables of tens of millions
/// of rows: records are buffered and written a row group at a time (memory is bounded by one row
/// group), with the same columns and writer as every other file of the table, so the store's
/// readers and the pipeline read it unchanged. It writes to a `.tmp` sibling renamed into place on
/// [`TableWriter::finish`].
pub struct TableWriter<T: Table> {
    path: PathBuf,
    tmp: PathBuf,
    writer: polars::io::parquet::write::BatchedWriter<File>,
    buffer: Vec<T>,
    rows: u64,
}

impl<T: Table> std::fmt::Debug for TableWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &T::NAME)
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<T: Table> TableWriter<T> {
    /// Starts writing `path` (through its `.tmp` sibling).
    pub fn create(path: &Path) -> Result<Self, CodecError> {
        let schema = frame_of::<T>(&[], path)?.schema().clone();
        let tmp = crate::atomic::tmp_path(path);
        let file = File::create(&tmp).map_err(|source| io_error("create", &tmp, source))?;
        let writer = parquet_writer(file, &schema)
            .batched(&schema)
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
    pub fn write(&mut self, rows: impl IntoIterator<Item = T>) -> Result<(), CodecError> {
        for row in rows {
            self.buffer.push(row);
            if self.buffer.len() >= ROW_GROUP_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CodecError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = frame_of(&self.buffer, &self.path)?;
        self.writer
            .write_batch(&batch)
            .map_err(|source| polars_error(format!("writing table `{}`", T::NAME), &self.path, source))?;
        self.rows += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is buffered and the footer, syncs, and renames the file into place. Returns the
    /// number of rows written.
    pub fn finish(mut self) -> Result<u64, CodecError> {
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

/// Checks that a table file can be opened as Parquet, reading its footer only (cheap for any
/// size): a truncated or empty file fails.
pub(crate) fn check_table(path: &Path) -> Result<(), CodecError> {
    let file = File::open(path).map_err(|source| io_error("open", path, source))?;
    ParquetReader::new(file)
        .num_rows()
        .map(drop)
        .map_err(|source| polars_error("reading the table's footer".to_owned(), path, source))
}

/// Reads records from one Parquet file of the table; a missing file is an empty table.
pub(crate) fn read_table<T: Table>(path: &Path) -> Result<Vec<T>, CodecError> {
    let file = match File::open(path) {
        Ok(file) => file,
        // The store creates a table's file with its first row: no file is an empty table.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error("open", path, source)),
    };
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|source| polars_error(format!("reading table `{}`", T::NAME), path, source))?;
    rows_of::<T>(&frame, path)
}

/// The records of a frame read from `path` (named in errors).
fn rows_of<T: Table>(frame: &DataFrame, path: &Path) -> Result<Vec<T>, CodecError> {
    let mut objects = vec![Map::new(); frame.height()];
    for declared in T::COLUMNS {
        let values = column_values::<T>(frame, declared, path)?;
        for (index, (object, value)) in objects.iter_mut().zip(values).enumerate() {
            if value.is_null() && !declared.nullable {
                return Err(CodecError::Value {
                    table: T::NAME,
                    path: path.to_owned(),
                    column: declared.name,
                    row: row_label(object, index),
                    message: "null in a column declared non-nullable".to_owned(),
                });
            }
            object.insert(declared.name.to_owned(), value);
        }
    }
    objects
        .into_iter()
        .enumerate()
        .map(|(index, object)| {
            let row = row_label(&object, index);
            serde_json::from_value(Value::Object(object)).map_err(|source| CodecError::Decode {
                table: T::NAME,
                path: path.to_owned(),
                row,
                source,
            })
        })
        .collect()
}

/// A data file's rows kept as columns, for a rewrite that changes a few of them: decoding every
/// row into a record and encoding it again would cost far more than the rows that change.
#[derive(Debug)]
pub(crate) struct StoredRows {
    /// The declared columns, in order, in the data files' form (instants as UTC microseconds).
    frame: DataFrame,
    path: PathBuf,
}

impl StoredRows {
    /// Reads a data file of table `T`. A nullable column the file lacks (written before it
    /// existed) reads as null; a required one, or a column of another type, is an error.
    pub(crate) fn read<T: Table>(path: &Path) -> Result<Self, CodecError> {
        let file = File::open(path).map_err(|source| io_error("open", path, source))?;
        let error = |source| polars_error(format!("reading a data file of `{}`", T::NAME), path, source);
        let frame = ParquetReader::new(file).finish().map_err(error)?;
        let mut columns = Vec::with_capacity(T::COLUMNS.len());
        for declared in T::COLUMNS {
            let column = match frame.column(declared.name) {
                Ok(column) => {
                    // The same check the record decoder makes, so a rewrite cannot carry over a
                    // column that would not read back.
                    column_values::<T>(&frame.head(Some(0)), declared, path)?;
                    column.clone()
                }
                Err(_) if declared.nullable => {
                    Column::full_null(declared.name.into(), frame.height(), &dtype_of(declared.kind))
                }
                Err(_) => {
                    return Err(CodecError::Schema {
                        table: T::NAME,
                        path: path.to_owned(),
                        column: declared.name.to_owned(),
                        message: "missing from the file".to_owned(),
                    });
                }
            };
            columns.push(match declared.kind {
                ColumnKind::Timestamp => as_stored_instant(column).map_err(error)?,
                _ => column,
            });
        }
        let frame = DataFrame::new(frame.height(), columns).map_err(error)?;
        Ok(Self {
            frame,
            path: path.to_owned(),
        })
    }

    /// The records among these rows whose key is one of `keys`, decoded.
    pub(crate) fn records<T: Table>(&self, keys: &[&str]) -> Result<Vec<T>, CodecError> {
        let subset = self.filtered(keys, true)?;
        rows_of::<T>(&subset, &self.path)
    }

    /// These rows with (`keep == true`) or without those whose key is one of `keys`.
    fn filtered<S: AsRef<str>>(&self, keys: &[S], keep: bool) -> Result<DataFrame, CodecError> {
        let wanted: std::collections::HashSet<&str> = keys.iter().map(AsRef::as_ref).collect();
        let error = |source| polars_error("selecting rows by key".to_owned(), &self.path, source);
        let ids = self.frame.column("id").and_then(|c| c.str()).map_err(error)?;
        let mask: BooleanChunked = ids
            .iter()
            .map(|id| Some(id.is_some_and(|id| wanted.contains(id)) == keep))
            .collect();
        self.frame.filter(&mask).map_err(error)
    }
}

/// Writes a new data file of a Delta table — the declared columns, instants as microseconds (the
/// Delta `timestamp` type), flushed to disk before the commit that will name it — from stored
/// rows, each without the keys paired with it, and `rows`, sorted by key: a commit's new rows, a
/// copy-on-write rewrite or a compaction, column by column.
/// Returns the file's size and its `add` action's statistics (rows; minimum and maximum of every
/// instant and integer column; nulls per column), which engines use to skip files.
pub(crate) fn write_data_file<T: Table>(
    stored: &[(StoredRows, Vec<String>)],
    rows: &[T],
    path: &Path,
) -> Result<(i64, String), CodecError> {
    let error = |source| polars_error(format!("merging data files of `{}`", T::NAME), path, source);
    let mut frame = data_frame_of(rows, path)?;
    for (old, without) in stored {
        let kept = if without.is_empty() {
            old.frame.clone()
        } else {
            old.filtered(without, false)?
        };
        frame.vstack_mut_owned(kept).map_err(error)?;
    }
    let frame = frame
        .sort(["id"], SortMultipleOptions::default())
        .map_err(error)?;
    write_frame::<T>(frame, path)
}

/// The data files' type of an instant column: UTC microseconds, Delta's `timestamp`.
fn stored_instant() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// An instant column in the data files' form. (polars' cast between two instant types of the same
/// unit keeps the values but drops the time zone, so the zone is set on the values here.)
fn as_stored_instant(column: Column) -> PolarsResult<Column> {
    if column.dtype() == &stored_instant() {
        return Ok(column);
    }
    let micros = column
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?
        .cast(&DataType::Int64)?;
    Ok(micros
        .i64()?
        .clone()
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column())
}

/// Records as a frame in the data files' form (instants as microseconds).
fn data_frame_of<T: Table>(rows: &[T], path: &Path) -> Result<DataFrame, CodecError> {
    let frame = frame_of(rows, path)?;
    let micros: Vec<Expr> = T::COLUMNS
        .iter()
        .filter(|c| c.kind == ColumnKind::Timestamp)
        .map(|c| col(c.name).cast(stored_instant()))
        .collect();
    frame
        .lazy()
        .with_columns(micros)
        .collect()
        .map_err(|source| polars_error(format!("preparing a data file of `{}`", T::NAME), path, source))
}

/// Writes a frame in the data files' form as a data file (see [`write_data_file`]).
fn write_frame<T: Table>(mut frame: DataFrame, path: &Path) -> Result<(i64, String), CodecError> {
    let stats = data_file_stats::<T>(&frame, path)?;
    let size = write_flushed(&mut frame, path, &format!("a data file of `{}`", T::NAME))?;
    Ok((size, stats))
}

/// Writes `frame` as a new Parquet file at `path` (the one writer) and flushes it to disk, as a
/// Delta data file must be before the commit that names it; returns its size. `what` names the
/// file in errors.
pub(crate) fn write_flushed(frame: &mut DataFrame, path: &Path, what: &str) -> Result<i64, CodecError> {
    let file = File::create(path).map_err(|source| io_error("create", path, source))?;
    parquet_writer(file, &frame.schema().clone())
        .finish(frame)
        .map_err(|source| polars_error(format!("writing {what}"), path, source))?;
    let file = File::open(path).map_err(|source| io_error("open", path, source))?;
    file.sync_all()
        .map_err(|source| io_error("flush", path, source))?;
    let size = file
        .metadata()
        .map_err(|source| io_error("measure", path, source))?
        .len();
    Ok(i64::try_from(size).unwrap_or(i64::MAX))
}

/// The Delta statistics of a data file's frame (see [`write_data_file`]).
fn data_file_stats<T: Table>(frame: &DataFrame, path: &Path) -> Result<String, CodecError> {
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    let error = |source| polars_error(format!("summarising a data file of `{}`", T::NAME), path, source);
    for declared in T::COLUMNS {
        if declared.kind == ColumnKind::TextList {
            continue;
        }
        let column = frame.column(declared.name).map_err(error)?;
        nulls.insert(declared.name.to_owned(), Value::from(column.null_count()));
        let range = match declared.kind {
            ColumnKind::Integer => {
                let values = column.i64().map_err(error)?;
                values
                    .min()
                    .zip(values.max())
                    .map(|(lo, hi)| (Value::from(lo), Value::from(hi)))
            }
            ColumnKind::Timestamp => {
                let values = column.cast(&DataType::Int64).map_err(error)?;
                let values = values.i64().map_err(error)?;
                let text = |micros: i64| {
                    DateTime::<Utc>::from_timestamp_micros(micros)
                        .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
                };
                values
                    .min()
                    .zip(values.max())
                    .and_then(|(lo, hi)| text(lo).zip(text(hi)))
            }
            _ => None,
        };
        if let Some((lo, hi)) = range {
            min.insert(declared.name.to_owned(), lo);
            max.insert(declared.name.to_owned(), hi);
        }
    }
    Ok(serde_json::json!({
        "numRecords": frame.height(),
        "minValues": min,
        "maxValues": max,
        "nullCount": nulls,
    })
    .to_string())
}

/// The `id` and `updated` (an instant column, as milliseconds) of every row of a data file: what
/// an upsert needs to know which file holds a key, without decoding whole rows.
pub(crate) fn read_keys(path: &Path, table: &str, updated: &str) -> Result<Vec<(String, i64)>, CodecError> {
    let file = File::open(path).map_err(|source| io_error("open", path, source))?;
    let frame = ParquetReader::new(file)
        .with_columns(Some(vec!["id".to_owned(), updated.to_owned()]))
        .finish()
        .and_then(|f| f.lazy().select([col("id"), millis(updated)]).collect())
        .map_err(|source| polars_error(format!("reading the keys of `{table}`"), path, source))?;
    let error = |source| polars_error(format!("reading the keys of `{table}`"), path, source);
    let ids = frame.column("id").and_then(|c| c.str()).map_err(error)?;
    let times = frame.column(updated).and_then(|c| c.i64()).map_err(error)?;
    Ok(ids
        .iter()
        .zip(times.iter())
        .filter_map(|(id, at)| Some((id?.to_owned(), at.unwrap_or(i64::MIN))))
        .collect())
}

/// The records as a frame with exactly the declared columns and types (also for zero records,
/// which is how the pipeline gets an empty table with the right schema), built column by column
/// from the records' cells ([`Table::cell`]): the one way every Parquet file of a canonical table
/// is written, a store commit's data file and a bulk writer's row group alike.
pub(crate) fn frame_of<T: Table>(rows: &[T], path: &Path) -> Result<DataFrame, CodecError> {
    if let Some(first) = rows.first() {
        declares_every_field(first, path)?;
    }
    let columns = T::COLUMNS
        .iter()
        .enumerate()
        .map(|(index, declared)| build_column(index, declared, rows, path))
        .collect::<Result<Vec<_>, _>>()?;
    DataFrame::new(rows.len(), columns)
        .map_err(|source| polars_error(format!("building table `{}`", T::NAME), path, source))
}

/// Refuses a record with a serde field the table does not declare: only declared columns are
/// written, so its value would be lost, and it would not read back. A table declared with
/// `canonical_table!` cannot have one; one record stands for its type, so a batch pays for one.
fn declares_every_field<T: Table>(row: &T, path: &Path) -> Result<(), CodecError> {
    let schema_error = |column: String, message: &str| CodecError::Schema {
        table: T::NAME,
        path: path.to_owned(),
        column,
        message: message.to_owned(),
    };
    let value = serde_json::to_value(row)
        .map_err(|err| schema_error("*".to_owned(), &format!("the record does not serialize: {err}")))?;
    let Value::Object(object) = value else {
        return Err(schema_error(
            "*".to_owned(),
            "the record does not serialize to an object",
        ));
    };
    match object
        .keys()
        .find(|field| !T::COLUMNS.iter().any(|c| c.name == field.as_str()))
    {
        Some(field) => Err(schema_error(
            field.clone(),
            "the record has this field but the table does not declare it",
        )),
        None => Ok(()),
    }
}

/// The column `T::COLUMNS[index]` of the records. A cell of another kind than declared, or a null
/// in a column declared non-nullable, is an error naming the table, column and row.
fn build_column<T: Table>(
    index: usize,
    declared: &Declared,
    rows: &[T],
    path: &Path,
) -> Result<Column, CodecError> {
    let refuse = |row: &T, cell: Cell<'_>| {
        let message = match cell {
            Cell::Null => "null in a column declared non-nullable".to_owned(),
            other => format!("expected {}, found {}", kind_name(declared.kind), shown(other)),
        };
        CodecError::Value {
            table: T::NAME,
            path: path.to_owned(),
            column: declared.name,
            row: format!("id = {}", row.key()),
            message,
        }
    };
    let name = PlSmallStr::from_static(declared.name);
    let nullable = declared.nullable;
    let series = match declared.kind {
        ColumnKind::Text => {
            let mut builder = StringChunkedBuilder::new(name, rows.len());
            for row in rows {
                match row.cell(index) {
                    Cell::Text(text) => builder.append_value(text),
                    Cell::Null if nullable => builder.append_null(),
                    other => return Err(refuse(row, other)),
                }
            }
            builder.finish().into_series()
        }
        ColumnKind::Integer => {
            let mut builder = PrimitiveChunkedBuilder::<Int64Type>::new(name, rows.len());
            for row in rows {
                match row.cell(index) {
                    Cell::Integer(number) => builder.append_value(number),
                    Cell::Null if nullable => builder.append_null(),
                    other => return Err(refuse(row, other)),
                }
            }
            builder.finish().into_series()
        }
        ColumnKind::Bool => {
            let mut builder = BooleanChunkedBuilder::new(name, rows.len());
            for row in rows {
                match row.cell(index) {
                    Cell::Bool(flag) => builder.append_value(flag),
                    Cell::Null if nullable => builder.append_null(),
                    other => return Err(refuse(row, other)),
                }
            }
            builder.finish().into_series()
        }
        ColumnKind::Timestamp => {
            // Stored at millisecond precision: finer precision is truncated.
            let mut builder = PrimitiveChunkedBuilder::<Int64Type>::new(name, rows.len());
            for row in rows {
                match row.cell(index) {
                    Cell::Timestamp(at) => builder.append_value(at.timestamp_millis()),
                    Cell::Null if nullable => builder.append_null(),
                    other => return Err(refuse(row, other)),
                }
            }
            builder
                .finish()
                .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
                .into_series()
        }
        ColumnKind::TextList => {
            let values = rows
                .iter()
                .map(|row| match row.cell(index) {
                    Cell::TextList(items) => items.len(),
                    _ => 0,
                })
                .sum();
            let mut builder = ListStringChunkedBuilder::new(name, rows.len(), values);
            for row in rows {
                match row.cell(index) {
                    Cell::TextList(items) => builder.append_values_iter(items.iter().map(String::as_str)),
                    Cell::Null if nullable => builder.append_null(),
                    other => return Err(refuse(row, other)),
                }
            }
            builder.finish().into_series()
        }
    };
    Ok(series.into_column())
}

/// A column kind as an error message names it.
fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "text",
        ColumnKind::Integer => "a 64-bit integer",
        ColumnKind::Bool => "true or false",
        ColumnKind::Timestamp => "an instant",
        ColumnKind::TextList => "a list of text",
    }
}

/// A cell as an error message shows it.
fn shown(cell: Cell<'_>) -> String {
    match cell {
        Cell::Null => "null".to_owned(),
        Cell::Text(text) => format!("text {text:?}"),
        Cell::Integer(number) => format!("the integer {number}"),
        Cell::Bool(flag) => flag.to_string(),
        Cell::Timestamp(at) => format!("the instant {}", at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        Cell::TextList(items) => format!("a list of {} texts", items.len()),
    }
}

/// One declared column of a read frame as JSON values, in the shapes serde expects
/// (instants as RFC 3339 strings, lists as arrays).
fn column_values<T: Table>(
    frame: &DataFrame,
    declared: &Declared,
    path: &Path,
) -> Result<Vec<Value>, CodecError> {
    let schema_error = |message: String| CodecError::Schema {
        table: T::NAME,
        path: path.to_owned(),
        column: declared.name.to_owned(),
        message,
    };
    let Ok(column) = frame.column(declared.name) else {
        // A nullable column added in a later version of tandem reads as null from a lake written
        // before it existed; a required one cannot be made up.
        if declared.nullable {
            return Ok(vec![Value::Null; frame.height()]);
        }
        return Err(schema_error("missing from the file".to_owned()));
    };
    let expected = dtype_of(declared.kind);
    let found = column.dtype();
    // Instants written by another tool may use another unit; a naive one is taken as UTC.
    let compatible = match (&expected, found) {
        (DataType::Datetime(..), DataType::Datetime(_, tz)) => {
            tz.is_none() || tz.as_ref() == Some(&TimeZone::UTC)
        }
        _ => found == &expected,
    };
    if !compatible {
        return Err(schema_error(format!("stored as {found}, expected {expected}")));
    }
    let mismatch = |source| polars_error(format!("reading column `{}`", declared.name), path, source);
    let values = match declared.kind {
        ColumnKind::Text => column
            .str()
            .map_err(mismatch)?
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_owned())))
            .collect(),
        ColumnKind::Integer => column
            .i64()
            .map_err(mismatch)?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        ColumnKind::Bool => column
            .bool()
            .map_err(mismatch)?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        ColumnKind::Timestamp => {
            let column = column.cast(&expected).map_err(mismatch)?;
            let millis = column.datetime().map_err(mismatch)?.physical();
            millis
                .iter()
                .enumerate()
                .map(|(index, v)| match v {
                    None => Ok(Value::Null),
                    Some(ms) => rfc3339(ms).map(Value::String).ok_or_else(|| CodecError::Value {
                        table: T::NAME,
                        path: path.to_owned(),
                        column: declared.name,
                        row: format!("#{index}"),
                        message: format!("{ms} ms since the epoch is out of range"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        ColumnKind::TextList => {
            let lists = column.list().map_err(mismatch)?;
            let mut values = Vec::with_capacity(lists.len());
            for list in lists.series_iter() {
                values.push(match list {
                    None => Value::Null,
                    Some(items) => Value::Array(
                        items
                            .str()
                            .map_err(mismatch)?
                            .iter()
                            .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_owned())))
                            .collect(),
                    ),
                });
            }
            values
        }
    };
    Ok(values)
}

/// An instant in the form chrono's serde writes, at the stored (millisecond) precision.
fn rfc3339(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis).map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Names a row read from a file: every canonical table's primary key field is `id`, which is
/// what a user can search the source for; the position is the fallback.
fn row_label(object: &Map<String, Value>, index: usize) -> String {
    match object.get("id") {
        Some(Value::String(id)) => format!("id = {id}"),
        _ => format!("#{index}"),
    }
}

/// A stored instant column as i64 milliseconds, whatever unit the file used (a naive instant is
/// UTC, as the codec reads it).
pub(crate) fn millis(name: &str) -> Expr {
    col(name)
        .cast(timestamp_dtype())
        .cast(DataType::Int64)
        .alias(name)
}

/// A canonical table as a lazy frame with its instants as i64 milliseconds (UTC), from its data
/// files (a missing file contributes nothing; none at all is an empty table with the declared
/// columns). A nullable column that some files lack (written before it existed) reads as null;
/// columns the table does not declare pass through as stored.
pub(crate) fn scan_table<T: Table>(files: &[PathBuf]) -> Result<LazyFrame, CodecError> {
    let mut existing = Vec::with_capacity(files.len());
    for path in files {
        let exists = path
            .try_exists()
            .map_err(|source| io_error("look for", path, source))?;
        if exists {
            existing.push(
                PlRefPath::try_from_path(path)
                    .map_err(|source| polars_error(format!("scanning `{}`", T::NAME), path, source))?,
            );
        }
    }
    let frame = match existing.first() {
        None => frame_of::<T>(&[], Path::new(T::NAME))?.lazy(),
        Some(first) => {
            let first = Path::new(first.as_str()).to_owned();
            let args = ScanArgsParquet {
                allow_missing_columns: true,
                glob: false,
                hive_options: polars::io::HiveOptions::new_disabled(),
                ..ScanArgsParquet::default()
            };
            let mut scan = LazyFrame::scan_parquet_files(existing.into_iter().collect(), args)
                .map_err(|source| polars_error(format!("scanning `{}`", T::NAME), &first, source))?;
            // Read the footer now, so a damaged file is named here rather than in a later error
            // about the whole computation.
            let schema = scan
                .collect_schema()
                .map_err(|source| polars_error(format!("reading table `{}`", T::NAME), &first, source))?;
            // A nullable column added in a later version of tandem reads as null from a lake
            // written before it existed, as in `read_table`.
            let added: Vec<Expr> = T::COLUMNS
                .iter()
                .filter(|c| c.nullable && schema.get(c.name).is_none())
                .map(|c| lit(NULL).cast(dtype_of(c.kind)).alias(c.name))
                .collect();
            if added.is_empty() {
                scan
            } else {
                scan.with_columns(added)
            }
        }
    };
    let instants: Vec<Expr> = T::COLUMNS
        .iter()
        .filter(|c| c.kind == ColumnKind::Timestamp)
        .map(|c| millis(c.name))
        .collect();
    Ok(frame.with_columns(instants))
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> CodecError {
    CodecError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn polars_error(what: String, path: &Path, source: PolarsError) -> CodecError {
    CodecError::Polars {
        context: format!("{what} ({})", path.display()),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone as _;
    use tandem_connectors::model::{Change, Deployment, DeploymentStatus, Incident, Severity};

    use super::*;

    /// The store sits below the sync, the pipeline and everything above them, and polars is
    /// confined to this codec: no other store file (test modules aside) imports either. The one
    /// exception left is the metric table, which the pipeline's writer still writes.
    #[test]
    fn the_store_imports_nothing_above_it_and_only_its_codec_uses_polars() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name.ends_with("_tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Tests may use anything: the code ends where the first test module begins.
            let code = ["#[cfg(test)]\nmod ", "#[cfg(test)]\n#[allow("]
                .iter()
                .filter_map(|start| text.find(start))
                .min()
                .map_or(text.as_str(), |end| &text[..end]);
            for (number, line) in code.lines().enumerate() {
                let above = [
                    "crate::pipeline",
                    "crate::sync",
                    "crate::report",
                    "crate::commands",
                    "crate::export",
                ]
                .iter()
                .any(|floor| line.contains(floor));
                assert!(!above, "{name}:{}: {line}", number + 1);
                let polars = line.contains("polars::") || line.contains("use polars");
                assert!(!polars || name == "codec.rs", "{name}:{}: {line}", number + 1);
            }
            checked += 1;
        }
        assert!(
            checked >= 7,
            "only {checked} store files found in {}",
            dir.display()
        );
    }

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    fn deployments() -> Vec<Deployment> {
        vec![
            Deployment {
                change_refs: vec!["CHG0000123".into(), "c0ffee".into()],
                deployed_by: None,
                id: "gh:acme/api:1".into(),
                source: "gh".into(),
                repo: "acme/api".into(),
                service: Some("api".into()),
                team: None,
                environment: "production".into(),
                is_production: true,
                status: DeploymentStatus::Success,
                sha: "abc1234".into(),
                created_at: at(1_785_700_000_123),
                finished_at: Some(at(1_785_700_100_999)),
                updated_at: at(1_785_700_100_999),
            },
            Deployment {
                change_refs: Vec::new(),
                deployed_by: None,
                id: "gh:acme/api:2".into(),
                source: "gh".into(),
                repo: "acme/api".into(),
                service: None,
                team: Some("core".into()),
                environment: "staging".into(),
                is_production: false,
                status: DeploymentStatus::InProgress,
                sha: "def5678".into(),
                created_at: at(1_785_800_000_001),
                finished_at: None,
                updated_at: at(1_785_800_000_001),
            },
        ]
    }

    fn changes() -> Vec<Change> {
        vec![
            Change {
                author: None,
                id: "gh:acme/api:7".into(),
                source: "gh".into(),
                repo: "acme/api".into(),
                service: Some("api".into()),
                team: None,
                number: 7,
                title: "Fix \"quotes\", commas, and ünïcode".into(),
                state: "merged".into(),
                created_at: at(1_785_600_000_000),
                merged_at: Some(at(1_785_650_000_500)),
                merge_commit_sha: Some("abc1234".into()),
                first_commit_at: None,
                labels: vec!["hotfix".into(), "area/api".into()],
                is_revert: false,
                reverts: None,
                updated_at: at(1_785_650_000_500),
            },
            Change {
                author: None,
                id: "gh:acme/api:8".into(),
                source: "gh".into(),
                repo: "acme/api".into(),
                service: None,
                team: None,
                number: 8,
                title: "Revert 7".into(),
                state: "open".into(),
                created_at: at(1_785_660_000_000),
                merged_at: None,
                merge_commit_sha: None,
                first_commit_at: Some(at(1_785_655_000_007)),
                labels: vec![],
                is_revert: true,
                reverts: Some(7),
                updated_at: at(1_785_660_000_000),
            },
        ]
    }

    fn incidents() -> Vec<Incident> {
        vec![
            Incident {
                acknowledged_by: None,
                assignee: None,
                id: "pd:P1".into(),
                source: "pd".into(),
                number: Some(101),
                title: "API down".into(),
                service_ref: Some("PSVC1".into()),
                team_ref: None,
                service: Some("api".into()),
                team: None,
                severity: Some(Severity::Sev1),
                status: "resolved".into(),
                started_at: at(1_785_700_200_000),
                acknowledged_at: Some(at(1_785_700_260_042)),
                resolved_at: Some(at(1_785_703_800_000)),
                cause_refs: vec!["abc1234".into()],
                correlation_id: None,
                updated_at: at(1_785_703_800_000),
            },
            Incident {
                acknowledged_by: None,
                assignee: None,
                id: "pd:P2".into(),
                source: "pd".into(),
                number: None,
                title: "Slow".into(),
                service_ref: None,
                team_ref: None,
                service: None,
                team: None,
                severity: None,
                status: "triggered".into(),
                started_at: at(1_785_900_000_000),
                acknowledged_at: None,
                resolved_at: None,
                cause_refs: vec![],
                correlation_id: None,
                updated_at: at(1_785_900_000_000),
            },
        ]
    }

    #[test]
    fn round_trips_all_three_tables_with_nulls_lists_and_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        write_table(&deployments(), &path).unwrap();
        assert_eq!(read_table::<Deployment>(&path).unwrap(), deployments());

        let path = dir.path().join("changes.parquet");
        write_table(&changes(), &path).unwrap();
        assert_eq!(read_table::<Change>(&path).unwrap(), changes());

        let path = dir.path().join("incidents.parquet");
        write_table(&incidents(), &path).unwrap();
        assert_eq!(read_table::<Incident>(&path).unwrap(), incidents());
    }

    #[test]
    fn stores_the_declared_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.parquet");
        write_table(&changes(), &path).unwrap();
        let frame = ParquetReader::new(File::open(&path).unwrap()).finish().unwrap();
        let names: Vec<&str> = frame.get_column_names().iter().map(|n| n.as_str()).collect();
        let declared: Vec<&str> = Change::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, declared);
        assert_eq!(frame.column("number").unwrap().dtype(), &DataType::Int64);
        assert_eq!(frame.column("created_at").unwrap().dtype(), &timestamp_dtype());
        assert_eq!(
            frame.column("labels").unwrap().dtype(),
            &DataType::List(Box::new(DataType::String))
        );
        assert_eq!(frame.column("is_revert").unwrap().dtype(), &DataType::Boolean);
    }

    #[test]
    fn an_empty_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents.parquet");
        write_table::<Incident>(&[], &path).unwrap();
        assert!(read_table::<Incident>(&path).unwrap().is_empty());
    }

    #[test]
    fn a_missing_file_is_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let rows = read_table::<Deployment>(&dir.path().join("nope.parquet")).unwrap();
        assert!(rows.is_empty());
    }

    #[test]
    fn writes_atomically_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        write_table(&deployments(), &path).unwrap();
        // Overwriting replaces the whole file.
        write_table(&deployments()[..1], &path).unwrap();
        assert_eq!(read_table::<Deployment>(&path).unwrap().len(), 1);
        assert!(crate::atomic::leftovers(&path).is_empty());
    }

    /// A table declared by hand, whose declared columns disagree with its cells and serde fields,
    /// as a mistake in a table not declared with `canonical_table!` would: `count` is declared an
    /// integer but is text, `note` is declared non-nullable but optional, `extra` is not declared
    /// at all.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Mistaken {
        id: String,
        count: String,
        note: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        extra: Option<String>,
    }

    impl Table for Mistaken {
        const NAME: &'static str = "mistaken";
        const COLUMNS: &'static [Declared] = &[
            Declared {
                name: "id",
                kind: ColumnKind::Text,
                nullable: false,
                doc: "",
            },
            Declared {
                name: "note",
                kind: ColumnKind::Text,
                nullable: false,
                doc: "",
            },
            Declared {
                name: "count",
                kind: ColumnKind::Integer,
                nullable: false,
                doc: "",
            },
        ];
        fn cell(&self, column: usize) -> Cell<'_> {
            match column {
                0 => Cell::Text(&self.id),
                1 => self.note.as_deref().map_or(Cell::Null, Cell::Text),
                2 => Cell::Text(&self.count),
                _ => Cell::Null,
            }
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            DateTime::UNIX_EPOCH
        }
    }

    fn mistaken(count: &str, note: Option<&str>, extra: Option<&str>) -> Mistaken {
        Mistaken {
            id: "m1".into(),
            count: count.into(),
            note: note.map(str::to_owned),
            extra: extra.map(str::to_owned),
        }
    }

    #[test]
    fn writing_a_value_of_the_wrong_type_names_table_column_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mistaken.parquet");
        let err = write_table(&[mistaken("seven", Some("n"), None)], &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "table `mistaken`, column `count`, row id = m1: expected a 64-bit integer, found text \"seven\""
            ),
            "{err}"
        );
        assert!(!path.exists() && crate::atomic::leftovers(&path).is_empty());
    }

    #[test]
    fn writing_a_null_into_a_non_nullable_column_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mistaken.parquet");
        let err = write_table(&[mistaken("7", None, None)], &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "table `mistaken`, column `note`, row id = m1: null in a column declared non-nullable"
            ),
            "{err}"
        );
    }

    #[test]
    fn writing_a_field_the_table_does_not_declare_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mistaken.parquet");
        let err = write_table(&[mistaken("7", Some("n"), Some("x"))], &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `extra`"), "{err}");
        assert!(err.contains("does not declare it"), "{err}");
    }

    #[test]
    fn a_wrong_type_in_the_file_names_file_table_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        // `is_production` stored as text, as another tool might write it.
        let mut frame = frame_of(&deployments(), &path).unwrap();
        let text = Series::new("is_production".into(), ["yes", "no"]);
        frame.replace("is_production", text.into_column()).unwrap();
        let mut file = File::create(&path).unwrap();
        ParquetWriter::new(&mut file).finish(&mut frame).unwrap();

        let err = read_table::<Deployment>(&path).unwrap_err().to_string();
        assert!(err.contains("deployments.parquet"), "{err}");
        assert!(
            err.contains("table `deployments`, column `is_production`"),
            "{err}"
        );
        assert!(err.contains("stored as str"), "{err}");
    }

    #[test]
    fn a_lake_written_before_a_nullable_column_existed_reads_it_as_null() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        let mut frame = frame_of(&deployments(), &path).unwrap();
        frame.drop_in_place("deployed_by").unwrap();
        frame.drop_in_place("change_refs").unwrap();
        let mut file = File::create(&path).unwrap();
        ParquetWriter::new(&mut file).finish(&mut frame).unwrap();

        // The lazy scan the metrics read has the column too, all null.
        let scanned = scan_table::<Deployment>(std::slice::from_ref(&path))
            .unwrap()
            .select([col("change_refs"), col("deployed_by")])
            .collect()
            .unwrap();
        assert_eq!(scanned.height(), deployments().len());
        assert_eq!(
            scanned.column("change_refs").unwrap().null_count(),
            scanned.height()
        );
        assert_eq!(
            scanned.column("deployed_by").unwrap().null_count(),
            scanned.height()
        );

        let read = read_table::<Deployment>(&path).unwrap();
        let expected: Vec<Deployment> = deployments()
            .into_iter()
            .map(|d| Deployment {
                change_refs: Vec::new(),
                deployed_by: None,
                ..d
            })
            .collect();
        assert_eq!(read, expected);

        // A required column missing is an error naming it.
        frame.drop_in_place("sha").unwrap();
        let mut file = File::create(&path).unwrap();
        ParquetWriter::new(&mut file).finish(&mut frame).unwrap();
        let err = read_table::<Deployment>(&path).unwrap_err().to_string();
        assert!(err.contains("column `sha`: missing from the file"), "{err}");
    }

    #[test]
    fn instants_in_another_unit_or_without_a_zone_are_read_as_utc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        let mut frame = frame_of(&deployments(), &path).unwrap();
        for (name, dtype) in [
            (
                "created_at",
                DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
            ),
            ("updated_at", DataType::Datetime(TimeUnit::Nanoseconds, None)),
        ] {
            let column = frame
                .column(name)
                .unwrap()
                .cast(&DataType::Int64)
                .unwrap()
                .i64()
                .unwrap()
                .clone();
            let factor = if name == "created_at" { 1_000 } else { 1_000_000 };
            let other = (column * factor).into_series().cast(&dtype).unwrap();
            frame.replace(name, other.into_column()).unwrap();
        }
        let mut file = File::create(&path).unwrap();
        ParquetWriter::new(&mut file).finish(&mut frame).unwrap();

        assert_eq!(read_table::<Deployment>(&path).unwrap(), deployments());
    }

    #[test]
    fn a_rewrite_keeps_the_stored_rows_swaps_the_replaced_ones_and_adds_the_new_sorted_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old.parquet"), dir.path().join("new.parquet"));
        let stored = deployments();
        write_data_file::<Deployment>(&[], &stored, &old).unwrap();

        let rows = StoredRows::read::<Deployment>(&old).unwrap();
        // Only the rows asked for are decoded.
        let picked: Vec<Deployment> = rows.records(&["gh:acme/api:2", "gh:acme/api:9"]).unwrap();
        assert_eq!(picked, vec![stored[1].clone()]);

        let mut replaced = stored[1].clone();
        replaced.status = DeploymentStatus::Success;
        replaced.finished_at = Some(at(1_785_800_100_000));
        let mut added = stored[0].clone();
        added.id = "gh:acme/api:0".into();
        let (_, stats) = write_data_file(
            &[(rows, vec![replaced.id.clone()])],
            &[replaced.clone(), added.clone()],
            &new,
        )
        .unwrap();
        assert_eq!(
            read_table::<Deployment>(&new).unwrap(),
            vec![added, stored[0].clone(), replaced]
        );
        let stats: Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(stats["numRecords"], 3);
        assert_eq!(stats["maxValues"]["finished_at"], "2026-08-03T23:35:00.000Z");
    }

    #[test]
    fn a_rewrite_of_a_file_from_another_writer_keeps_its_instants_as_utc_and_fills_new_columns() {
        // Another engine's file: instants naive and in nanoseconds or milliseconds, a nullable
        // column missing. The rewritten file holds the same records in tandem's own form.
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old.parquet"), dir.path().join("new.parquet"));
        let mut frame = frame_of(&deployments(), &old).unwrap();
        frame.drop_in_place("deployed_by").unwrap();
        for (name, dtype, factor) in [
            (
                "updated_at",
                DataType::Datetime(TimeUnit::Nanoseconds, None),
                1_000_000,
            ),
            ("created_at", DataType::Datetime(TimeUnit::Milliseconds, None), 1),
        ] {
            let column = frame.column(name).unwrap().cast(&DataType::Int64).unwrap();
            let other = (column.i64().unwrap().clone() * factor)
                .into_series()
                .cast(&dtype)
                .unwrap();
            frame.replace(name, other.into_column()).unwrap();
        }
        ParquetWriter::new(File::create(&old).unwrap())
            .finish(&mut frame)
            .unwrap();

        let rows = StoredRows::read::<Deployment>(&old).unwrap();
        write_data_file::<Deployment>(&[(rows, Vec::new())], &[], &new).unwrap();
        assert_eq!(read_table::<Deployment>(&new).unwrap(), deployments());
        let written = ParquetReader::new(File::open(&new).unwrap()).finish().unwrap();
        for name in ["created_at", "updated_at", "finished_at"] {
            assert_eq!(written.column(name).unwrap().dtype(), &stored_instant(), "{name}");
        }

        // A file whose column has another type is refused, naming it.
        let mut frame = frame_of(&deployments(), &old).unwrap();
        let text = frame
            .column("is_production")
            .unwrap()
            .cast(&DataType::String)
            .unwrap();
        frame.replace("is_production", text).unwrap();
        ParquetWriter::new(File::create(&old).unwrap())
            .finish(&mut frame)
            .unwrap();
        let err = StoredRows::read::<Deployment>(&old).unwrap_err().to_string();
        assert!(err.contains("column `is_production`: stored as str"), "{err}");
    }

    #[test]
    fn a_bad_value_in_a_row_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        let mut frame = frame_of(&deployments(), &path).unwrap();
        let status = Series::new("status".into(), ["success", "exploded"]);
        frame.replace("status", status.into_column()).unwrap();
        let mut file = File::create(&path).unwrap();
        ParquetWriter::new(&mut file).finish(&mut frame).unwrap();

        let err = read_table::<Deployment>(&path).unwrap_err().to_string();
        assert!(err.contains("row id = gh:acme/api:2"), "{err}");
        assert!(err.contains("exploded"), "{err}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod bulk_tests {
    use tandem_connectors::model::{Deployment, Incident};
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
        write_table(rows, &path).unwrap();
        read_table::<T>(&path).unwrap()
    }

    /// Written in several row groups by the bulk writer, the rows read back equal the records
    /// (as a single write would store them), and the file's schema equals a single write's.
    fn round_trip<T: Table + PartialEq + std::fmt::Debug>(rows: &[T], dir: &Path) {
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
