//! The polars side of the data team's export: frames built from canonical records or from plain
//! columns, people's text replaced column by column, and each frame checked against the columns
//! the export documents, then written as Parquet and as spreadsheet-safe CSV.
//!
//! Parquet keeps native types (instants as UTC milliseconds, lists as lists). CSV has RFC 3339 UTC
//! instants ending in `Z` (always with milliseconds, so every reader infers one format), nulls as
//! empty fields and lists as JSON arrays. Every file is written atomically. What the export holds,
//! how its files are named and what its schema files say is the export floor's (`src/export/`);
//! this module never decides a file's name or a column's meaning.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;
use serde::Serialize;
use tandem_connectors::model::{ColumnKind, Table};

use super::PipelineError;
use super::codec::{polars_error, spreadsheet_safe, write_atomic};
use crate::store::codec::{frame_of, parquet_writer, timestamp_dtype};

/// What a column holds, as Parquet and as CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// UTF-8 text.
    Text,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float.
    Float,
    /// true / false.
    Bool,
    /// An instant (UTC, milliseconds).
    Timestamp,
    /// A list of text values.
    TextList,
}

impl Kind {
    /// The Parquet type the column is written as.
    pub fn parquet_type(self) -> &'static str {
        match self {
            Self::Text => "STRING",
            Self::Integer => "INT64",
            Self::Float => "DOUBLE",
            Self::Bool => "BOOLEAN",
            Self::Timestamp => "TIMESTAMP(MILLIS, UTC)",
            Self::TextList => "LIST<STRING>",
        }
    }

    /// How the column is written in the CSV file.
    pub fn csv_type(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "integer",
            Self::Float => "decimal",
            Self::Bool => "true/false",
            Self::Timestamp => "RFC 3339 UTC instant (`2026-08-03T09:30:00.000Z`)",
            Self::TextList => "JSON array of text (`[\"a\",\"b\"]`)",
        }
    }

    /// The kind a canonical table's declared column is written as.
    pub fn of(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Text => Self::Text,
            ColumnKind::Integer => Self::Integer,
            ColumnKind::Bool => Self::Bool,
            ColumnKind::Timestamp => Self::Timestamp,
            ColumnKind::TextList => Self::TextList,
        }
    }

    fn dtype(self) -> DataType {
        match self {
            Self::Text => DataType::String,
            Self::Integer => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Timestamp => timestamp_dtype(),
            Self::TextList => DataType::List(Box::new(DataType::String)),
        }
    }
}

/// A column as the export documents it: what [`Frame::write`] checks the frame against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// Column name.
    pub name: &'a str,
    /// What it holds.
    pub kind: Kind,
    /// Whether it may hold nulls.
    pub nullable: bool,
}

/// A table on its way to an export's file pair.
#[derive(Debug, Clone)]
pub struct Frame {
    frame: DataFrame,
}

impl Frame {
    /// A canonical table's rows, columns as the lake declares them (`path` names the file in
    /// errors).
    pub fn of_table<T: Table>(rows: &[T], path: &Path) -> Result<Self, PipelineError> {
        Ok(Self {
            frame: frame_of(rows, path)?,
        })
    }

    /// Rows in the frame.
    pub fn height(&self) -> usize {
        self.frame.height()
    }

    /// Passes every value of a text or list-of-text column through `replace` (nulls, and null
    /// items of lists, stay null).
    pub fn replace_text(
        &mut self,
        column: &str,
        replace: &dyn Fn(&str) -> String,
        path: &Path,
    ) -> Result<(), PipelineError> {
        let mapped = map_text(self.frame.column(column), replace, path)?;
        self.frame
            .replace(column, mapped)
            .map_err(|e| polars_error(format!("pseudonymising `{column}`"), path, e))?;
        Ok(())
    }

    /// Checks the frame against `columns` (names in order, types, no null where none is allowed),
    /// then writes it to `parquet` and to `csv`; `table` names it in errors.
    pub fn write(
        mut self,
        table: &'static str,
        columns: &[Expected<'_>],
        parquet: &Path,
        csv: &Path,
    ) -> Result<(), PipelineError> {
        let schema_error = |column: &str, message: String| PipelineError::Schema {
            table,
            path: parquet.to_owned(),
            column: column.to_owned(),
            message,
        };
        let frame = &mut self.frame;
        let names: Vec<&str> = frame.get_column_names().iter().map(|n| n.as_str()).collect();
        let documented: Vec<&str> = columns.iter().map(|c| c.name).collect();
        if names != documented {
            return Err(schema_error(
                "*",
                format!("the frame has columns {names:?} but the schema documents {documented:?}"),
            ));
        }
        for doc in columns {
            let column = frame
                .column(doc.name)
                .map_err(|e| schema_error(doc.name, e.to_string()))?;
            if column.dtype() != &doc.kind.dtype() {
                return Err(schema_error(
                    doc.name,
                    format!(
                        "is {} but documented as {}",
                        column.dtype(),
                        doc.kind.parquet_type()
                    ),
                ));
            }
            if !doc.nullable && column.null_count() > 0 {
                return Err(schema_error(
                    doc.name,
                    "null in a column documented non-nullable".to_owned(),
                ));
            }
        }
        write_atomic(parquet, |file| {
            parquet_writer(file, frame.schema())
                .finish(frame)
                .map(drop)
                .map_err(|e| polars_error(format!("writing `{table}`"), parquet, e))
        })?;
        let mut sheet = csv_frame(frame, columns, csv)?;
        write_atomic(csv, |file| {
            CsvWriter::new(file)
                .include_header(true)
                .finish(&mut sheet)
                .map_err(|e| polars_error(format!("writing `{table}`"), csv, e))
        })
    }
}

/// A frame built column by column, each column as long as the frame.
#[derive(Debug)]
pub struct Columns {
    height: usize,
    columns: Vec<Column>,
}

impl Columns {
    /// No columns yet, for a frame of `height` rows.
    pub fn new(height: usize) -> Self {
        Self {
            height,
            columns: Vec::new(),
        }
    }

    /// A text column without nulls.
    pub fn text(mut self, name: &str, values: Vec<&str>) -> Self {
        self.columns.push(Series::new(name.into(), values).into_column());
        self
    }

    /// A text column that may hold nulls.
    pub fn optional_text(mut self, name: &str, values: Vec<Option<&str>>) -> Self {
        self.columns.push(Series::new(name.into(), values).into_column());
        self
    }

    /// An integer column without nulls.
    pub fn integers(mut self, name: &str, values: Vec<i64>) -> Self {
        self.columns.push(Series::new(name.into(), values).into_column());
        self
    }

    /// An integer column that may hold nulls.
    pub fn optional_integers(mut self, name: &str, values: Vec<Option<i64>>) -> Self {
        self.columns.push(Series::new(name.into(), values).into_column());
        self
    }

    /// A float column that may hold nulls.
    pub fn floats(mut self, name: &str, values: Vec<Option<f64>>) -> Self {
        self.columns.push(Series::new(name.into(), values).into_column());
        self
    }

    /// A timestamp column (UTC, milliseconds).
    pub fn instants(mut self, name: &str, values: impl Iterator<Item = Option<DateTime<Utc>>>) -> Self {
        self.columns.push(
            Int64Chunked::from_iter_options(name.into(), values.map(|v| v.map(|at| at.timestamp_millis())))
                .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
                .into_series()
                .into_column(),
        );
        self
    }

    /// The frame; `what` and `path` name it in errors (columns of another length, a name twice).
    pub fn finish(self, what: &str, path: &Path) -> Result<Frame, PipelineError> {
        let frame = DataFrame::new(self.height, self.columns)
            .map_err(|e| polars_error(format!("building {what}"), path, e))?;
        Ok(Frame { frame })
    }
}

/// A text or list-of-text column with every value passed through `replace` (nulls, and null items
/// of lists, stay null).
fn map_text(
    column: Result<&Column, PolarsError>,
    replace: &dyn Fn(&str) -> String,
    path: &Path,
) -> Result<Column, PipelineError> {
    let fail = |e| polars_error("pseudonymising a column".to_owned(), path, e);
    let column = column.map_err(fail)?;
    let name = column.name().clone();
    let series = match column.dtype() {
        DataType::List(_) => {
            let lists = column.list().map_err(fail)?;
            let mut builder = ListStringChunkedBuilder::new(name, lists.len(), lists.len() * 2);
            for list in lists.series_iter() {
                match list {
                    None => builder.append_null(),
                    Some(items) => {
                        // A null item is nobody: it stays null rather than becoming "".
                        let texts: Vec<Option<String>> = items
                            .str()
                            .map_err(fail)?
                            .iter()
                            .map(|v| v.map(replace))
                            .collect();
                        builder
                            .append_series(&Series::new(PlSmallStr::EMPTY, texts))
                            .map_err(fail)?;
                    }
                }
            }
            builder.finish().into_series()
        }
        _ => {
            let texts: Vec<Option<String>> = column
                .str()
                .map_err(fail)?
                .iter()
                .map(|v| v.map(replace))
                .collect();
            Series::new(name, texts)
        }
    };
    Ok(series.into_column())
}

/// The frame as the CSV file holds it: instants as RFC 3339 text, lists as JSON text, text that
/// a spreadsheet would take for a formula behind a `'`.
fn csv_frame(frame: &DataFrame, columns: &[Expected<'_>], path: &Path) -> Result<DataFrame, PipelineError> {
    let fail = |e| polars_error("preparing the CSV file".to_owned(), path, e);
    let mut out = Vec::with_capacity(columns.len());
    for doc in columns {
        let column = frame.column(doc.name).map_err(fail)?;
        let name: PlSmallStr = doc.name.into();
        out.push(match doc.kind {
            Kind::Timestamp => {
                let millis = column.datetime().map_err(fail)?.physical();
                let texts: Vec<Option<String>> = millis
                    .iter()
                    .map(|v| {
                        v.and_then(DateTime::<Utc>::from_timestamp_millis)
                            .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
                    })
                    .collect();
                Series::new(name, texts).into_column()
            }
            Kind::TextList => {
                let lists = column.list().map_err(fail)?;
                let mut texts: Vec<Option<String>> = Vec::with_capacity(lists.len());
                for list in lists.series_iter() {
                    texts.push(match list {
                        None => None,
                        Some(items) => {
                            let items: Vec<Option<&str>> = items.str().map_err(fail)?.iter().collect();
                            Some(serde_json::Value::from(items).to_string())
                        }
                    });
                }
                Series::new(name, texts).into_column()
            }
            _ => column.clone(),
        });
    }
    let sheet = DataFrame::new(frame.height(), out).map_err(fail)?;
    spreadsheet_safe(&sheet).map_err(fail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pseudonymising_a_list_keeps_its_null_items_null() {
        let items = Series::new(PlSmallStr::EMPTY, [Some("jdoe"), None, Some("sam")]);
        let empty = Series::new(PlSmallStr::EMPTY, Vec::<Option<&str>>::new());
        let lists: ListChunked = [Some(items), None, Some(empty)].into_iter().collect();
        let column = lists.with_name("reviewers".into()).into_series().into_column();
        let mapped = map_text(Ok(&column), &|v| format!("p-{v}"), Path::new("reviews.parquet")).unwrap();
        let rows: Vec<Option<Vec<Option<String>>>> = mapped
            .list()
            .unwrap()
            .series_iter()
            .map(|l| l.map(|s| s.str().unwrap().iter().map(|v| v.map(str::to_owned)).collect()))
            .collect();
        let text = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows,
            vec![
                Some(vec![text("p-jdoe"), None, text("p-sam")]),
                None,
                Some(vec![])
            ]
        );
    }

    #[test]
    fn a_frame_that_differs_from_its_documentation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (parquet, csv) = (dir.path().join("t.parquet"), dir.path().join("t.csv"));
        let frame = Columns::new(1)
            .integers("a", vec![1])
            .finish("a test frame", &parquet)
            .unwrap();
        let expect = |name, kind| Expected {
            name,
            kind,
            nullable: false,
        };
        let err = frame
            .clone()
            .write("t", &[expect("a", Kind::Text)], &parquet, &csv)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column `a`") && err.contains("documented as STRING"),
            "{err}"
        );
        let err = frame
            .write("t", &[expect("b", Kind::Integer)], &parquet, &csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema documents [\"b\"]"), "{err}");
        assert!(!parquet.exists());
    }

    #[test]
    fn a_null_in_a_column_documented_non_nullable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (parquet, csv) = (dir.path().join("t.parquet"), dir.path().join("t.csv"));
        let frame = Columns::new(2)
            .optional_text("a", vec![Some("x"), None])
            .finish("a test frame", &parquet)
            .unwrap();
        let expected = [Expected {
            name: "a",
            kind: Kind::Text,
            nullable: false,
        }];
        let err = frame
            .write("t", &expected, &parquet, &csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("null in a column documented non-nullable"), "{err}");
        assert!(!parquet.exists() && !csv.exists());
    }
}
