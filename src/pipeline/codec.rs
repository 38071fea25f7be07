//! The pipeline's helpers around the canonical tables' files: naming a table's files in an error,
//! reading a scan in slices, and the spreadsheet-safe text of every CSV file tandem writes. The
//! tables' Parquet codec itself is the store's (`crate::store::codec`). It must not know any
//! particular table or metric.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::PipelineError;
use crate::store::codec::timestamp_dtype;

/// Names a table's data files in an error: their directory (the Delta table), or the one file.
pub(crate) fn describe(files: &[std::path::PathBuf]) -> String {
    match files {
        [] => "an empty table".to_owned(),
        [one] => one.display().to_string(),
        [first, ..] => first.parent().map_or_else(
            || first.display().to_string(),
            |dir| {
                // A partitioned table's files sit one level below the table directory.
                let dir = if dir.file_name().is_some_and(|n| n.to_string_lossy().contains('=')) {
                    dir.parent().unwrap_or(dir)
                } else {
                    dir
                };
                dir.display().to_string()
            },
        ),
    }
}

/// Rows read at a time where a table is read in slices ([`in_slices`]): large enough that the
/// Parquet reader works on whole row groups, small enough that years of changes or commits are
/// never held whole as text.
#[cfg(not(test))]
pub(crate) const SLICE_ROWS: u32 = 1 << 20;
/// In unit tests, a few rows: every scenario's tables are then read in several slices, so the
/// metrics are tested across slice boundaries too.
#[cfg(test)]
pub(crate) const SLICE_ROWS: u32 = 3;

/// Reads a table scan `rows` rows at a time: `shape` (filters, projections) is applied to each
/// slice of the scan and `each` gets the collected result, so a large table is never held whole.
/// The slice is taken before `shape`, where the Parquet reader can skip to the row groups it
/// needs. Each slice has a `row` column (u32): the row's position in the table, for `shape` to
/// keep where a row must be named later without its id.
pub(crate) fn in_slices(
    scan: LazyFrame,
    rows: u32,
    shape: impl Fn(LazyFrame) -> LazyFrame,
    each: impl FnMut(DataFrame) -> PolarsResult<()>,
) -> PolarsResult<()> {
    in_slices_where(scan, rows, |_| true, shape, each)
}

/// How many rows a scan (a table, or a frame) has: from the Parquet footers where polars can.
pub(crate) fn height(scan: &LazyFrame) -> PolarsResult<i64> {
    Ok(scan
        .clone()
        .select([len().cast(DataType::Int64).alias("rows")])
        .collect()?
        .column("rows")?
        .i64()?
        .get(0)
        .unwrap_or(0))
}

/// [`in_slices`], reading only the slices whose rows `wanted` asks for (given the slice's first
/// row and the row after its last): a slice none of whose rows is needed is not read at all.
pub(crate) fn in_slices_where(
    scan: LazyFrame,
    rows: u32,
    mut wanted: impl FnMut(std::ops::Range<IdxSize>) -> bool,
    shape: impl Fn(LazyFrame) -> LazyFrame,
    mut each: impl FnMut(DataFrame) -> PolarsResult<()>,
) -> PolarsResult<()> {
    let height = height(&scan)?;
    let mut offset = 0i64;
    while offset < height {
        let first = IdxSize::try_from(offset)
            .map_err(|_| polars_err!(ComputeError: "a table of over {} rows", IdxSize::MAX))?;
        let end = first.saturating_add(rows as IdxSize);
        if !wanted(first..end) {
            offset += i64::from(rows);
            continue;
        }
        each(
            shape(
                scan.clone()
                    .slice(offset, rows)
                    .with_row_index("row", Some(first)),
            )
            .collect()?,
        )?;
        offset += i64::from(rows);
    }
    Ok(())
}

/// What a spreadsheet reads as the start of a formula (OWASP's CSV-injection list): `=`, `+`,
/// `-`, `@`, tab and carriage return.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell as a spreadsheet must show it: one that starts like a formula gets a leading `'`
/// (OWASP's advice), which spreadsheets take as "this is text" and do not display.
pub(crate) fn spreadsheet_text(text: &str) -> Option<String> {
    text.starts_with(FORMULA_STARTS).then(|| format!("'{text}"))
}

/// `frame` as every CSV file tandem writes holds it: text cells neutralised with
/// [`spreadsheet_text`], so a value from a source (`=HYPERLINK(…)`, `@SUM(…)`) opens as text, not
/// as a formula. Only text columns change: numbers, negative ones included, stay numbers, and
/// the Parquet files keep the exact text.
pub(crate) fn spreadsheet_safe(frame: &DataFrame) -> PolarsResult<DataFrame> {
    let mut columns = Vec::with_capacity(frame.width());
    for column in frame.columns() {
        let texts = match column.dtype() {
            DataType::String => column.str()?,
            _ => {
                columns.push(column.clone());
                continue;
            }
        };
        // Most columns hold nothing to neutralise: they are kept as they are, uncopied.
        if !texts.iter().flatten().any(|t| t.starts_with(FORMULA_STARTS)) {
            columns.push(column.clone());
            continue;
        }
        let safe: Vec<Option<String>> = texts
            .iter()
            .map(|t| t.map(|t| spreadsheet_text(t).unwrap_or_else(|| t.to_owned())))
            .collect();
        columns.push(Series::new(column.name().clone(), safe).into_column());
    }
    DataFrame::new(frame.height(), columns)
}

/// Atomic replacement with the pipeline's error type.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    crate::atomic::write_atomic(path, write, io_error)
}

pub(crate) fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> PipelineError {
    PipelineError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn polars_error(what: String, path: &Path, source: PolarsError) -> PipelineError {
    PipelineError::Polars {
        context: format!("{what} ({})", path.display()),
        source,
    }
}

/// One of tandem's own tables (the metric table, the run history) read whole from a Parquet file:
/// its columns taken by name and type, its cells by row. A missing column or one of another type
/// is a schema error, and a null where a value must be is a value error, each naming the table,
/// the file and the column (and the row).
pub(crate) struct OwnTable<'a> {
    frame: DataFrame,
    table: &'static str,
    path: &'a Path,
}

impl<'a> OwnTable<'a> {
    /// Reads the whole file.
    pub(crate) fn read(table: &'static str, path: &'a Path) -> Result<Self, PipelineError> {
        let file = File::open(path).map_err(|source| io_error("open", path, source))?;
        let frame = ParquetReader::new(file)
            .finish()
            .map_err(|source| polars_error(format!("reading the {table} table"), path, source))?;
        Ok(Self { frame, table, path })
    }

    /// Rows.
    pub(crate) fn height(&self) -> usize {
        self.frame.height()
    }

    fn schema(&self, column: &str, err: &PolarsError) -> PipelineError {
        PipelineError::Schema {
            table: self.table,
            path: self.path.to_owned(),
            column: column.to_owned(),
            message: err.to_string(),
        }
    }

    /// A text column.
    pub(crate) fn text(&self, name: &str) -> Result<StringChunked, PipelineError> {
        self.frame
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(|err| self.schema(name, &err))
    }

    /// A text column that tables written by an earlier release lack (`None` then).
    pub(crate) fn text_if_present(&self, name: &str) -> Result<Option<StringChunked>, PipelineError> {
        match self.frame.column(name) {
            Ok(_) => self.text(name).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// An integer column.
    pub(crate) fn long(&self, name: &str) -> Result<Int64Chunked, PipelineError> {
        self.frame
            .column(name)
            .and_then(|c| c.i64().cloned())
            .map_err(|err| self.schema(name, &err))
    }

    /// A floating-point column.
    pub(crate) fn double(&self, name: &str) -> Result<Float64Chunked, PipelineError> {
        self.frame
            .column(name)
            .and_then(|c| c.f64().cloned())
            .map_err(|err| self.schema(name, &err))
    }

    /// An instant column, as milliseconds since the epoch (UTC) whatever unit it was stored in.
    pub(crate) fn instant(&self, name: &str) -> Result<Int64Chunked, PipelineError> {
        self.frame
            .column(name)
            .and_then(|c| c.cast(&timestamp_dtype()))
            .and_then(|c| c.datetime().map(|ca| ca.physical().clone()))
            .map_err(|err| self.schema(name, &err))
    }

    /// The error for a null (or out-of-range) cell where a value must be.
    pub(crate) fn missing(&self, column: &'static str, row: usize) -> PipelineError {
        PipelineError::Value {
            table: self.table,
            path: self.path.to_owned(),
            column,
            row: format!("#{row}"),
            message: "null or out of range".to_owned(),
        }
    }

    /// The instant of a cell of [`OwnTable::instant`]'s column.
    pub(crate) fn at(
        &self,
        values: &Int64Chunked,
        column: &'static str,
        row: usize,
    ) -> Result<chrono::DateTime<chrono::Utc>, PipelineError> {
        values
            .get(row)
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
            .ok_or_else(|| self.missing(column, row))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A scan of a Parquet file in `dir` with one column `x`: 0, `step`, … nine steps.
    fn numbers(dir: &Path, step: i64) -> LazyFrame {
        let path = dir.join("numbers.parquet");
        let mut frame = df!("x" => (0..10i64).map(|x| x * step).collect::<Vec<_>>()).unwrap();
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut frame)
            .unwrap();
        LazyFrame::scan_parquet(
            PlRefPath::try_from_path(&path).unwrap(),
            ScanArgsParquet::default(),
        )
        .unwrap()
    }

    #[test]
    fn only_the_slices_asked_for_are_read_with_their_rows_positions() {
        // Ten rows in slices of three: only the slice holding row 7 (rows 6 to 8) is wanted.
        let dir = tempfile::tempdir().unwrap();
        let scan = numbers(dir.path(), 1);
        let (mut asked, mut seen) = (Vec::new(), Vec::new());
        in_slices_where(
            scan,
            3,
            |slice| {
                asked.push(slice.clone());
                slice.contains(&7)
            },
            |slice| slice.select([col("row"), col("x")]),
            |part| {
                let (row, x) = (part.column("row")?.idx()?, part.column("x")?.i64()?);
                seen.extend(row.iter().zip(x.iter()).map(|(r, x)| (r.unwrap(), x.unwrap())));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(asked, vec![0..3, 3..6, 6..9, 9..12]);
        assert_eq!(seen, vec![(6, 6), (7, 7), (8, 8)]);
    }

    #[test]
    fn a_table_read_in_slices_is_read_whole_once_with_each_rows_position() {
        // Ten rows in slices of three: four slices, the last of one row; `shape` filters within
        // a slice and `row` is the position in the table, not in the slice.
        let dir = tempfile::tempdir().unwrap();
        let scan = numbers(dir.path(), 10);
        let (mut slices, mut seen) = (0, Vec::new());
        in_slices(
            scan,
            3,
            |slice| {
                slice
                    .filter((col("x") / lit(10i64)).neq(lit(4i64)))
                    .select([col("row"), col("x")])
            },
            |part| {
                slices += 1;
                let (row, x) = (part.column("row")?.idx()?, part.column("x")?.i64()?);
                seen.extend(row.iter().zip(x.iter()).map(|(r, x)| (r.unwrap(), x.unwrap())));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(slices, 4);
        let expected: Vec<(IdxSize, i64)> = (0..10)
            .filter(|&r| r != 4)
            .map(|r| (r, i64::from(r) * 10))
            .collect();
        assert_eq!(seen, expected);
    }
}
