//! Reading one import file in batches, from the start or from a saved position, turning each row
//! into a canonical record or a quarantine entry that names the file, line and column.
//!
//! Blocking I/O: the connector moves a reader into `spawn_blocking` for each batch. A file that
//! cannot be read at all (or a CSV file without a usable header) is an error for the caller;
//! a bad row never is.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FileFormat;
use super::files::ImportFile;
use super::row::{Entity, RowError, check_header};
use crate::model::QuarantineReason;
use crate::model::{Quarantined, Record};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a reader stands in a file: the byte offset of the next row, and the line count the
/// reader needs to number rows from there (CSV: the next row's line; NDJSON: lines consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Byte offset of the next row.
    pub byte: u64,
    /// Line bookkeeping, see above.
    pub line: u64,
    /// Rows read before it (CSV reader bookkeeping).
    #[serde(default)]
    pub record: u64,
}

/// One batch of rows.
#[derive(Debug, Default)]
pub struct Batch {
    /// Rows that became records.
    pub records: Vec<Record>,
    /// Rows that did not, with their reasons.
    pub quarantined: Vec<Quarantined>,
    /// Where the next batch starts.
    pub at: Position,
    /// The file is read to the end.
    pub eof: bool,
}

/// An open import file.
#[derive(Debug)]
pub struct FileReader {
    /// Path as shown in reasons and errors.
    file: String,
    entity: Entity,
    source: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Csv {
        rdr: csv::Reader<File>,
        header: Vec<String>,
    },
    Ndjson {
        rdr: BufReader<File>,
        at: Position,
    },
}

impl FileReader {
    /// Opens `f` (checking a CSV header against the entity's columns) and moves to `from`.
    /// Errors name the file.
    pub fn open(f: &ImportFile, source: &str, from: Option<Position>) -> Result<Self, String> {
        let shown = f.path.display().to_string();
        let fail = |what: String| format!("file {shown}: {what}");
        let file = File::open(&f.path).map_err(|e| fail(format!("cannot open it: {e}")))?;
        let inner = match f.format {
            FileFormat::Csv => {
                let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(file);
                let raw = rdr
                    .byte_headers()
                    .map_err(|e| fail(format!("cannot read the header: {e}")))?
                    .clone();
                let header: Vec<String> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let h = if i == 0 {
                            h.strip_prefix(BOM).unwrap_or(h)
                        } else {
                            h
                        };
                        String::from_utf8_lossy(h).trim().to_ascii_lowercase()
                    })
                    .collect();
                if header.iter().all(String::is_empty) {
                    return Err(fail(format!(
                        "no header row; the first line must name the columns ({})",
                        super::row::column_list(f.entity.columns())
                    )));
                }
                check_header(f.entity, &header).map_err(|e| fail(format!("header: {e}")))?;
                if let Some(at) = from {
                    let mut pos = csv::Position::new();
                    pos.set_byte(at.byte).set_line(at.line).set_record(at.record);
                    rdr.seek(pos)
                        .map_err(|e| fail(format!("cannot resume at byte {}: {e}", at.byte)))?;
                }
                Inner::Csv { rdr, header }
            }
            FileFormat::Ndjson => {
                let mut rdr = BufReader::new(file);
                let at = from.unwrap_or_default();
                if at.byte > 0 {
                    rdr.seek(SeekFrom::Start(at.byte))
                        .map_err(|e| fail(format!("cannot resume at byte {}: {e}", at.byte)))?;
                }
                Inner::Ndjson { rdr, at }
            }
        };
        Ok(Self {
            file: shown,
            entity: f.entity,
            source: source.to_owned(),
            inner,
        })
    }

    /// Reads up to `max` rows (blank lines do not count).
    pub fn next_batch(&mut self, max: usize) -> Result<Batch, String> {
        let mut batch = Batch::default();
        let mut rows = 0;
        match &mut self.inner {
            Inner::Csv { rdr, header } => {
                let mut record = csv::ByteRecord::new();
                while rows < max {
                    let more = rdr
                        .read_byte_record(&mut record)
                        .map_err(|e| format!("file {}: cannot read: {e}", self.file))?;
                    if !more {
                        batch.eof = true;
                        break;
                    }
                    rows += 1;
                    let line = record.position().map_or(0, csv::Position::line);
                    let (raw, problem) = csv_row(header, &record);
                    take(
                        &self.file,
                        self.entity,
                        &self.source,
                        &mut batch,
                        line,
                        raw,
                        problem,
                    );
                }
                let p = rdr.position();
                batch.at = Position {
                    byte: p.byte(),
                    line: p.line(),
                    record: p.record(),
                };
            }
            Inner::Ndjson { rdr, at } => {
                let mut buf = Vec::new();
                while rows < max {
                    buf.clear();
                    let n = rdr
                        .read_until(b'\n', &mut buf)
                        .map_err(|e| format!("file {}: cannot read: {e}", self.file))?;
                    if n == 0 {
                        batch.eof = true;
                        break;
                    }
                    let first = at.byte == 0;
                    at.byte += n as u64;
                    at.line += 1;
                    let mut bytes = buf.as_slice();
                    if first {
                        bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
                    }
                    let text = bytes.trim_ascii();
                    if text.is_empty() {
                        continue;
                    }
                    rows += 1;
                    match serde_json::from_slice::<Value>(text) {
                        Ok(Value::Object(raw)) => take(
                            &self.file,
                            self.entity,
                            &self.source,
                            &mut batch,
                            at.line,
                            raw,
                            None,
                        ),
                        Ok(other) => {
                            let problem = RowError::row(format!("expected a JSON object, found {other}"));
                            batch.quarantined.push(Quarantined::new(
                                &self.source,
                                self.entity.name(),
                                &other,
                                QuarantineReason::BadShape(problem.reason(&self.file, at.line)),
                            ));
                        }
                        Err(e) => {
                            let raw = Value::String(String::from_utf8_lossy(text).into_owned());
                            let problem = RowError::row(format!("not a JSON object: {e}"));
                            batch.quarantined.push(Quarantined::new(
                                &self.source,
                                self.entity.name(),
                                &raw,
                                QuarantineReason::BadShape(problem.reason(&self.file, at.line)),
                            ));
                        }
                    }
                }
                batch.at = *at;
            }
        }
        Ok(batch)
    }
}

/// A CSV row as a JSON object of its non-blank cells (header name → text), and the problem that
/// rejects it before typing, if any (bad UTF-8, more cells than the header). Cells past the
/// header are kept in the raw object as `#13`, … so the quarantine shows them.
fn csv_row(header: &[String], record: &csv::ByteRecord) -> (Map<String, Value>, Option<RowError>) {
    let mut raw = Map::new();
    let mut problem = None;
    for (i, cell) in record.iter().enumerate() {
        let name = header.get(i).cloned().unwrap_or_else(|| format!("#{}", i + 1));
        let text = match std::str::from_utf8(cell) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                problem.get_or_insert(RowError {
                    column: Some(name.clone()),
                    message: "not valid UTF-8".into(),
                });
                String::from_utf8_lossy(cell).into_owned()
            }
        };
        if !text.trim().is_empty() {
            raw.insert(name, Value::String(text));
        }
    }
    if record.len() > header.len() {
        problem = Some(RowError::row(format!(
            "the row has {} cells but the header has {}",
            record.len(),
            header.len()
        )));
    }
    (raw, problem)
}

/// Types a row and files it as a record or a quarantine entry.
fn take(
    file: &str,
    entity: Entity,
    source: &str,
    batch: &mut Batch,
    line: u64,
    raw: Map<String, Value>,
    problem: Option<RowError>,
) {
    let typed = match problem {
        Some(p) => Err(p),
        None => entity.record(&raw, source),
    };
    match typed {
        Ok(record) => batch.records.push(record),
        Err(e) => batch.quarantined.push(Quarantined::new(
            source,
            entity.name(),
            &Value::Object(raw),
            match e.column {
                // A row-level problem: too many cells, or the row does not make a record.
                None => QuarantineReason::BadShape(e.reason(file, line)),
                Some(_) => QuarantineReason::Message(e.reason(file, line)),
            },
        )),
    }
}
