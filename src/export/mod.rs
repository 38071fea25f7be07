//! The data team's export, on its own floor between the pipeline and the commands: which files an
//! export holds (the canonical tables, the metric table, a per-service breakdown and the records
//! that map to no service, each as Parquet and CSV), what each column means, and the schema
//! (`SCHEMA.md`, `schema.json`) generated from the very column definitions the writer checks every
//! frame against, so the documentation cannot drift from the files. People can be replaced by
//! keyed hashes ([`Pseudonymiser`]).
//!
//! Frames are built and written by the pipeline (`pipeline::frames`: Parquet with native types,
//! CSV with RFC 3339 instants, JSON lists and spreadsheet-safe text, every file atomic); this floor
//! never calls polars and never imports the commands or the reports. It writes files only into the
//! folder it is given; it does not choose that folder or compute metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tandem_connectors::model::{Change, ChangeRequest, Deployment, Incident, Quarantined, Table, Ticket};

use crate::metric::{MetricId, MetricRow};
use crate::pipeline::PipelineError;
pub use crate::pipeline::frames::Kind;
use crate::pipeline::frames::{Columns, Expected, Frame};

mod pseudonym;

pub use pseudonym::{KeyError, MIN_KEY_BYTES, Pseudonymiser};

/// The schema file for people.
pub const SCHEMA_MD: &str = "SCHEMA.md";
/// The schema file for programs.
pub const SCHEMA_JSON: &str = "schema.json";

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A table could not be built, did not match its documented columns or could not be written.
    #[error(transparent)]
    Frame(#[from] PipelineError),
    /// A schema file could not be encoded, created, written or renamed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`encode`, `create`, `rename`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The metrics of the per-service breakdown, one value column (and one `_n` column) each.
pub const BREAKDOWN_METRICS: [MetricId; 13] = [
    MetricId::DeploymentCount,
    MetricId::DeploymentFrequency,
    MetricId::LeadTimeMedian,
    MetricId::ChangeFailureRate,
    MetricId::TimeToRestoreMedian,
    MetricId::DowntimeMinutes,
    MetricId::Availability,
    MetricId::ErrorBudgetConsumed,
    MetricId::TicketsResolved,
    MetricId::TicketBacklog,
    MetricId::SlaBreachRate,
    MetricId::ChangeSuccessRate,
    MetricId::DeploymentsWithoutChangeRecord,
];

/// What pseudonymisation does to a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum People {
    /// Holds no people.
    None,
    /// A person's name, login or email: replaced by its keyed hash.
    Hashed,
    /// JSON text whose people fields (and any email address) are replaced by their keyed hashes.
    HashedInside,
    /// Free text that may name people (a title): left as written.
    FreeText,
}

impl People {
    fn describe(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Hashed => "replaced by a keyed hash",
            Self::HashedInside => "people inside replaced by keyed hashes",
            Self::FreeText => "free text that may name people: left as written",
        }
    }
}

/// One column of an exported file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDoc {
    /// Column name.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// Parquet type.
    pub parquet_type: &'static str,
    /// How it is written in CSV.
    pub csv_type: &'static str,
    /// Whether it may be null (an empty field in CSV).
    pub nullable: bool,
    /// What a value means.
    pub meaning: String,
    /// Unit of the value, where it has one.
    pub unit: Option<String>,
    /// What `--pseudonymise` does to it.
    pub people: People,
}

impl ColumnDoc {
    fn new(name: impl Into<String>, kind: Kind, nullable: bool, meaning: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            parquet_type: kind.parquet_type(),
            csv_type: kind.csv_type(),
            nullable,
            meaning: meaning.into(),
            unit: (kind == Kind::Timestamp).then(|| "UTC instant".to_owned()),
            people: People::None,
        }
    }

    fn unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_owned());
        self
    }
}

/// One exported table: its two files and its columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileDoc {
    /// Table name (`deployments`, `metrics`, …).
    pub table: &'static str,
    /// What the table holds.
    pub about: String,
    /// The Parquet file, relative to the export folder.
    pub parquet: String,
    /// The CSV file, relative to the export folder.
    pub csv: String,
    /// Rows in each of the two files.
    pub rows: usize,
    /// The columns, in file order.
    pub columns: Vec<ColumnDoc>,
}

/// The whole export's description, as written to `schema.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    /// When the export was made.
    pub generated_at: DateTime<Utc>,
    /// Whether people were replaced by keyed hashes.
    pub pseudonymised: bool,
    /// Every file pair.
    pub files: Vec<FileDoc>,
}

/// A record whose repo or service reference maps to no configured service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// Its table (`deployments`, `changes`, `incidents`, `tickets`, `change_requests`).
    pub table: &'static str,
    /// Its id in that table.
    pub id: String,
    /// Configured source name.
    pub source: String,
    /// Which field holds the reference (`repo`, `service_ref`).
    pub reference_field: &'static str,
    /// The reference that matched no `[[service]]` (null when the source gave none).
    pub reference: Option<String>,
    /// When it happened: created (deployments, changes, tickets, change requests) or started
    /// (incidents).
    pub occurred_at: DateTime<Utc>,
}

/// Every deployment, change, incident, ticket and change request without a service, in that
/// table order, each table by id.
pub fn unmapped(
    deployments: &[Deployment],
    changes: &[Change],
    incidents: &[Incident],
    tickets: &[Ticket],
    change_requests: &[ChangeRequest],
) -> Vec<Unmapped> {
    fn rows<'a, T: Table + 'a>(
        records: &'a [T],
        service: impl Fn(&T) -> &Option<String>,
        field: &'static str,
        reference: impl Fn(&T) -> Option<String>,
        source: impl Fn(&T) -> &str,
        at: impl Fn(&T) -> DateTime<Utc>,
    ) -> Vec<Unmapped> {
        let mut out: Vec<Unmapped> = records
            .iter()
            .filter(|r| service(r).is_none())
            .map(|r| Unmapped {
                table: T::NAME,
                id: r.key().to_owned(),
                source: source(r).to_owned(),
                reference_field: field,
                reference: reference(r),
                occurred_at: at(r),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
    let mut out = rows(
        deployments,
        |d| &d.service,
        "repo",
        |d| Some(d.repo.clone()),
        |d| &d.source,
        |d| d.created_at,
    );
    out.extend(rows(
        changes,
        |c| &c.service,
        "repo",
        |c| Some(c.repo.clone()),
        |c| &c.source,
        |c| c.created_at,
    ));
    out.extend(rows(
        incidents,
        |i| &i.service,
        "service_ref",
        |i| i.service_ref.clone(),
        |i| &i.source,
        |i| i.started_at,
    ));
    out.extend(rows(
        tickets,
        |t| &t.service,
        "service_ref",
        |t| t.service_ref.clone(),
        |t| &t.source,
        |t| t.created_at,
    ));
    out.extend(rows(
        change_requests,
        |c| &c.service,
        "service_ref",
        |c| c.service_ref.clone(),
        |c| &c.source,
        |c| c.created_at,
    ));
    out
}

/// An export being written into one folder, file pair by file pair.
#[derive(Debug)]
pub struct Export {
    dir: PathBuf,
    pseudonymiser: Option<Pseudonymiser>,
    files: Vec<FileDoc>,
}

impl Export {
    /// Starts an export into `dir` (which must exist), pseudonymising people when given one.
    pub fn new(dir: &Path, pseudonymiser: Option<Pseudonymiser>) -> Self {
        Self {
            dir: dir.to_owned(),
            pseudonymiser,
            files: Vec::new(),
        }
    }

    /// Writes a canonical table, columns as the lake declares them.
    pub fn table<T: Table>(&mut self, rows: &[T]) -> Result<(), ExportError> {
        let path = self.dir.join(format!("{}.parquet", T::NAME));
        let mut frame = Frame::of_table(rows, &path)?;
        let mut columns = Vec::with_capacity(T::COLUMNS.len());
        for declared in T::COLUMNS {
            let mut doc = ColumnDoc::new(
                declared.name,
                Kind::of(declared.kind),
                declared.nullable,
                declared.doc,
            );
            doc.people = people_of::<T>(declared.name, doc.kind);
            if let Some(p) = &self.pseudonymiser {
                let replace: Option<&dyn Fn(&str) -> String> = match doc.people {
                    People::Hashed => Some(&|v| p.name(v)),
                    People::HashedInside => Some(&|v| p.json_text(v)),
                    People::None | People::FreeText => None,
                };
                if let Some(replace) = replace {
                    frame.replace_text(declared.name, replace, &path)?;
                }
            }
            columns.push(doc);
        }
        let about = format!("The lake's `{}` table, every row.", T::NAME);
        self.write(T::NAME, about, columns, frame)
    }

    /// Writes the metric table.
    pub fn metrics(&mut self, rows: &[MetricRow]) -> Result<(), ExportError> {
        let text = |get: fn(&MetricRow) -> &str| rows.iter().map(get).collect::<Vec<_>>();
        let frame = Columns::new(rows.len())
            .text("metric", text(|r| &r.metric))
            .text("grain", text(|r| &r.grain))
            .text("scope_type", text(|r| &r.scope_type))
            .text("scope", text(|r| &r.scope))
            .instants("period_start", rows.iter().map(|r| Some(r.period_start)))
            .instants("period_end", rows.iter().map(|r| Some(r.period_end)))
            .floats("value", rows.iter().map(|r| r.value).collect())
            .text("unit", text(|r| &r.unit))
            .integers("n", rows.iter().map(|r| r.n).collect())
            .optional_text("method", rows.iter().map(|r| r.method.as_deref()).collect())
            .finish("the metric table", &self.dir)?;
        let docs = vec![
            ColumnDoc::new(
                "metric",
                Kind::Text,
                false,
                "Metric id (the metric list in the README).",
            ),
            ColumnDoc::new(
                "grain",
                Kind::Text,
                false,
                "`day`, `week` (ISO week), `month` or `quarter` in the report time zone, or `range` (the whole range).",
            ),
            ColumnDoc::new("scope_type", Kind::Text, false, "`org`, `service` or `team`."),
            ColumnDoc::new(
                "scope",
                Kind::Text,
                false,
                "`all` for the organisation, else the service or team name.",
            ),
            ColumnDoc::new(
                "period_start",
                Kind::Timestamp,
                false,
                "Start of the period, inclusive.",
            ),
            ColumnDoc::new(
                "period_end",
                Kind::Timestamp,
                false,
                "End of the period, exclusive.",
            ),
            ColumnDoc::new(
                "value",
                Kind::Float,
                true,
                "The value; null when there is nothing to compute it from.",
            )
            .unit("the row's `unit`"),
            ColumnDoc::new(
                "unit",
                Kind::Text,
                false,
                "`count`, `per_day`, `hours`, `minutes`, `ratio` or `coefficient`.",
            ),
            ColumnDoc::new(
                "n",
                Kind::Integer,
                false,
                "Sample size behind the value; below 5 the value is insufficient data.",
            )
            .unit("count"),
            ColumnDoc::new(
                "method",
                Kind::Text,
                true,
                "How the value was derived where the definition allows more than one way; null otherwise.",
            ),
        ];
        let about = "The metric table for the range: one row per metric, scope and period (tidy).";
        self.write("metrics", about.to_owned(), docs, frame)
    }

    /// Writes the per-service breakdown: one row per service and period (the range's periods and
    /// the whole range), the main metrics as columns, each with its sample size.
    pub fn service_breakdown(
        &mut self,
        rows: &[MetricRow],
        teams: &BTreeMap<String, String>,
    ) -> Result<(), ExportError> {
        type Key<'a> = (&'a str, bool, DateTime<Utc>, DateTime<Utc>, &'a str);
        // Periods in time order, the range row last, services by name.
        let mut cells: BTreeMap<Key<'_>, BTreeMap<&str, (Option<f64>, i64)>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.scope_type == "service") {
            let key = (
                r.scope.as_str(),
                r.grain == "range",
                r.period_start,
                r.period_end,
                r.grain.as_str(),
            );
            let entry = cells.entry(key).or_default();
            if BREAKDOWN_METRICS.iter().any(|m| m.as_str() == r.metric) {
                entry.insert(r.metric.as_str(), (r.value, r.n));
            }
        }
        let keys: Vec<&Key<'_>> = cells.keys().collect();
        let mut columns = Columns::new(keys.len())
            .text("service", keys.iter().map(|k| k.0).collect())
            .optional_text(
                "team",
                keys.iter().map(|k| teams.get(k.0).map(String::as_str)).collect(),
            )
            .text("grain", keys.iter().map(|k| k.4).collect())
            .instants("period_start", keys.iter().map(|k| Some(k.2)))
            .instants("period_end", keys.iter().map(|k| Some(k.3)));
        let mut docs = vec![
            ColumnDoc::new(
                "service",
                Kind::Text,
                false,
                "Service name from the `[[service]]` mapping.",
            ),
            ColumnDoc::new(
                "team",
                Kind::Text,
                true,
                "Team owning the service; null when none is configured.",
            ),
            ColumnDoc::new(
                "grain",
                Kind::Text,
                false,
                "`day`, `week`, `month` or `quarter`, or `range` for the whole range.",
            ),
            ColumnDoc::new(
                "period_start",
                Kind::Timestamp,
                false,
                "Start of the period, inclusive.",
            ),
            ColumnDoc::new(
                "period_end",
                Kind::Timestamp,
                false,
                "End of the period, exclusive.",
            ),
        ];
        for metric in BREAKDOWN_METRICS {
            let id = metric.as_str();
            let cell = |k: &&Key<'_>| cells.get(*k).and_then(|m| m.get(id)).copied();
            let values: Vec<Option<f64>> = keys.iter().map(|k| cell(k).and_then(|c| c.0)).collect();
            let ns: Vec<Option<i64>> = keys.iter().map(|k| cell(k).map(|c| c.1)).collect();
            columns = columns
                .floats(id, values)
                .optional_integers(&format!("{id}_n"), ns);
            docs.push(
                ColumnDoc::new(
                    id,
                    Kind::Float,
                    true,
                    format!(
                        "{} The `{id}` value of the metric table; null when it has none.",
                        metric.definition()
                    ),
                )
                .unit(metric.unit()),
            );
            docs.push(
                ColumnDoc::new(
                    format!("{id}_n"),
                    Kind::Integer,
                    true,
                    format!("Sample size behind `{id}` (below 5: insufficient data); null when the metric table has no row."),
                )
                .unit("count"),
            );
        }
        let frame = columns.finish("the service breakdown", &self.dir)?;
        let about = "Per service and period, the main metrics side by side (a pivot of the metric table's service rows).";
        self.write("service_breakdown", about.to_owned(), docs, frame)
    }

    /// Writes the records that map to no service.
    pub fn unmapped(&mut self, records: &[Unmapped]) -> Result<(), ExportError> {
        let text = |get: fn(&Unmapped) -> &str| records.iter().map(get).collect::<Vec<_>>();
        let frame = Columns::new(records.len())
            .text("table", text(|u| u.table))
            .text("id", text(|u| &u.id))
            .text("source", text(|u| &u.source))
            .text("reference_field", text(|u| u.reference_field))
            .optional_text(
                "reference",
                records.iter().map(|u| u.reference.as_deref()).collect(),
            )
            .instants("occurred_at", records.iter().map(|u| Some(u.occurred_at)))
            .finish("the unmapped records", &self.dir)?;
        let docs = vec![
            ColumnDoc::new(
                "table",
                Kind::Text,
                false,
                "The record's table: `deployments`, `changes`, `incidents`, `tickets` or `change_requests`.",
            ),
            ColumnDoc::new("id", Kind::Text, false, "The record's id in that table."),
            ColumnDoc::new("source", Kind::Text, false, "Configured source name."),
            ColumnDoc::new(
                "reference_field",
                Kind::Text,
                false,
                "The field that should have named a service: `repo` or `service_ref`.",
            ),
            ColumnDoc::new(
                "reference",
                Kind::Text,
                true,
                "Its value, which no `[[service]]` entry matches; null when the source gave none.",
            ),
            ColumnDoc::new(
                "occurred_at",
                Kind::Timestamp,
                false,
                "Created (deployments, changes, tickets, change requests) or started (incidents).",
            ),
        ];
        let about = "Deployments, changes, incidents, tickets and change requests whose repo or service reference maps to no configured service: add it to a `[[service]]` entry and run `tandem remap`.";
        self.write("unmapped_records", about.to_owned(), docs, frame)
    }

    /// Writes `SCHEMA.md` and `schema.json` describing every file written so far.
    pub fn finish(self, generated_at: DateTime<Utc>) -> Result<Schema, ExportError> {
        let schema = Schema {
            generated_at,
            pseudonymised: self.pseudonymiser.is_some(),
            files: self.files,
        };
        let json_path = self.dir.join(SCHEMA_JSON);
        let json = serde_json::to_vec_pretty(&schema).map_err(|e| ExportError::Io {
            action: "encode",
            path: json_path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_bytes(&json_path, &json)?;
        write_bytes(&self.dir.join(SCHEMA_MD), schema_markdown(&schema).as_bytes())?;
        Ok(schema)
    }

    /// Has the pipeline check `frame` against `columns` (names in order, types, no null where
    /// none is allowed) and write it as `<table>.parquet` and `<table>.csv`.
    fn write(
        &mut self,
        table: &'static str,
        about: String,
        columns: Vec<ColumnDoc>,
        frame: Frame,
    ) -> Result<(), ExportError> {
        let parquet = format!("{table}.parquet");
        let csv = format!("{table}.csv");
        let rows = frame.height();
        let expected: Vec<Expected<'_>> = columns
            .iter()
            .map(|c| Expected {
                name: &c.name,
                kind: c.kind,
                nullable: c.nullable,
            })
            .collect();
        frame.write(table, &expected, &self.dir.join(&parquet), &self.dir.join(&csv))?;
        self.files.push(FileDoc {
            table,
            about,
            parquet,
            csv,
            rows,
            columns,
        });
        Ok(())
    }
}

/// How a canonical column is treated when people are pseudonymised: the table's declared people
/// columns ([`Table::PEOPLE`]) are hashed, and so, as a safety net for a table that forgot to
/// declare one, is any text column whose name says it holds a person (`author`, `*_by`, `*email`).
fn people_of<T: Table>(column: &str, kind: Kind) -> People {
    match (T::NAME, column, kind) {
        (_, _, Kind::Text | Kind::TextList)
            if T::PEOPLE.contains(&column) || pseudonym::is_person_key(column) =>
        {
            People::Hashed
        }
        (Quarantined::NAME, "raw", _) => People::HashedInside,
        (_, "title", _) => People::FreeText,
        _ => People::None,
    }
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let io_error = |action, path: &Path, source| ExportError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    crate::atomic::write_atomic(
        path,
        |file| std::io::Write::write_all(file, bytes).map_err(|source| io_error("write", path, source)),
        io_error,
    )
}

/// `SCHEMA.md`: every file and every column, for people.
pub fn schema_markdown(schema: &Schema) -> String {
    let mut out = String::from("# Export schema\n\n");
    out.push_str(&format!(
        "Exported {} by tandem. Every table is here twice, with the same rows and columns: \
         `.parquet` (native types; instants are UTC timestamps in milliseconds; lists are lists) and \
         `.csv` (comma-separated with a header; instants are RFC 3339 UTC text ending in `Z`, \
         always with milliseconds; a null is an empty field; lists are JSON arrays of text; a \
         text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return starts with `'` \
         so that spreadsheets show it as text rather than run it as a formula, while the \
         `.parquet` file keeps the exact text). `schema.json` says the same for programs.\n\n",
        schema.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    ));
    if schema.pseudonymised {
        out.push_str(
            "**Pseudonymised.** People's names, logins and emails are replaced by `p-` and 20 hex \
             digits of HMAC-SHA256 under a key this export does not contain; the same person gets the \
             same pseudonym in every table (values are trimmed and lower-cased first). Free text such \
             as titles may still name people and is left as written (see each column's *people* \
             note).\n\n",
        );
    } else {
        out.push_str(
            "**Not pseudonymised.** Fields that hold people are marked in the *people* column: \
             `tandem export --pseudonymise` replaces them with keyed hashes.\n\n",
        );
    }
    out.push_str("| file | rows | what it holds |\n|---|---|---|\n");
    for f in &schema.files {
        out.push_str(&format!(
            "| [`{}`](#{}) (`{}`) | {} | {} |\n",
            f.parquet, f.table, f.csv, f.rows, f.about
        ));
    }
    for f in &schema.files {
        out.push_str(&format!(
            "\n## {}\n\n`{}` and `{}`, {} rows. {}\n\n",
            f.table, f.parquet, f.csv, f.rows, f.about
        ));
        out.push_str(
            "| column | Parquet | CSV | null | unit | meaning | people |\n|---|---|---|---|---|---|---|\n",
        );
        for c in &f.columns {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.parquet_type,
                c.csv_type,
                if c.nullable { "yes" } else { "no" },
                c.unit.as_deref().unwrap_or(""),
                c.meaning.replace('|', "\\|"),
                c.people.describe()
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 8, 3, 0, 0, 0).unwrap() + chrono::Duration::hours(h)
    }

    tandem_connectors::canonical_table! {
        /// A table with people in it, as a future source might bring: a text and a list column.
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        struct Review {
            id: String => "Key.",
            author: Option<String> => "Login.",
            reviewers: Vec<String> => "Logins.",
            title: String => "Title.",
            at: DateTime<Utc> => "When.",
        }
        impl Table {
            const NAME: &'static str = "reviews";
            fn key(&self) -> &str {
                &self.id
            }
            fn updated_at(&self) -> DateTime<Utc> {
                self.at
            }
        }
    }

    fn reviews() -> Vec<Review> {
        vec![
            Review {
                id: "r1".into(),
                author: Some("jdoe".into()),
                reviewers: vec!["samlee".into(), "JDoe".into()],
                title: "Fix, \"quoted\"".into(),
                at: at(1) + chrono::Duration::milliseconds(5),
            },
            Review {
                id: "r2".into(),
                author: None,
                reviewers: vec![],
                title: "jdoe's change".into(),
                at: at(2),
            },
        ]
    }

    #[test]
    fn a_file_that_cannot_be_written_is_named_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the Parquet file goes: the rename into place fails.
        std::fs::create_dir(dir.path().join("reviews.parquet")).unwrap();
        let mut export = Export::new(dir.path(), None);
        let err = export.table(&reviews()).unwrap_err().to_string();
        assert!(err.contains("reviews.parquet"), "{err}");
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["reviews.parquet".to_owned()]);
    }

    #[test]
    fn a_schema_file_that_cannot_be_written_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where `schema.json` goes: the rename into place fails.
        std::fs::create_dir(dir.path().join(SCHEMA_JSON)).unwrap();
        let mut export = Export::new(dir.path(), None);
        export.table(&reviews()).unwrap();
        let err = export.finish(at(0)).unwrap_err();
        assert!(matches!(err, ExportError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(SCHEMA_JSON), "{err}");
        assert!(!dir.path().join(SCHEMA_MD).exists());
    }

    #[test]
    fn csv_has_rfc3339_instants_empty_nulls_and_json_lists() {
        let dir = tempfile::tempdir().unwrap();
        let mut export = Export::new(dir.path(), None);
        export.table(&reviews()).unwrap();
        let schema = export.finish(at(0)).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("reviews.csv")).unwrap();
        assert_eq!(
            csv,
            "id,author,reviewers,title,at\n\
             r1,jdoe,\"[\"\"samlee\"\",\"\"JDoe\"\"]\",\"Fix, \"\"quoted\"\"\",2026-08-03T01:00:00.005Z\n\
             r2,,[],jdoe's change,2026-08-03T02:00:00.000Z\n"
        );
        let f = &schema.files[0];
        assert_eq!((f.table, f.rows, f.columns.len()), ("reviews", 2, 5));
        assert_eq!(f.columns[1].people, People::Hashed);
        assert_eq!(f.columns[2].people, People::Hashed);
        assert_eq!(f.columns[3].people, People::FreeText);
        assert_eq!(f.columns[4].parquet_type, "TIMESTAMP(MILLIS, UTC)");
        let md = std::fs::read_to_string(dir.path().join(SCHEMA_MD)).unwrap();
        assert!(
            md.contains("| `reviewers` | LIST<STRING> | JSON array of text"),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(SCHEMA_JSON)).unwrap()).unwrap();
        assert_eq!(json["files"][0]["columns"][4]["name"], "at");
        assert_eq!(json["pseudonymised"], false);
    }

    #[test]
    fn exactly_the_declared_people_columns_of_the_lake_are_hashed() {
        fn hashed<T: Table>() -> Vec<String> {
            T::COLUMNS
                .iter()
                .filter(|c| people_of::<T>(c.name, Kind::of(c.kind)) == People::Hashed)
                .map(|c| format!("{}.{}", T::NAME, c.name))
                .collect()
        }
        use tandem_connectors::model::{Commit, TicketTransition};
        let all: Vec<String> = [
            hashed::<Deployment>(),
            hashed::<Change>(),
            hashed::<Incident>(),
            hashed::<Commit>(),
            hashed::<Ticket>(),
            hashed::<TicketTransition>(),
            hashed::<ChangeRequest>(),
            hashed::<Quarantined>(),
        ]
        .concat();
        assert_eq!(
            all,
            [
                "deployments.deployed_by",
                "changes.author",
                "incidents.assignee",
                "incidents.acknowledged_by",
                "commits.author_name",
                "commits.author_email",
                "tickets.assignee",
                "tickets.reporter",
                "change_requests.requested_by",
                "change_requests.assigned_to",
            ]
        );
        assert_eq!(people_of::<Quarantined>("raw", Kind::Text), People::HashedInside);
        assert_eq!(people_of::<Change>("title", Kind::Text), People::FreeText);
    }

    #[test]
    fn people_columns_are_hashed_with_the_same_pseudonym_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pseudonymiser::new("a-secret-key-of-at-least-32-bytes").unwrap();
        let mut export = Export::new(dir.path(), Some(p.clone()));
        export.table(&reviews()).unwrap();
        export.finish(at(0)).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("reviews.csv")).unwrap();
        let jdoe = p.name("jdoe");
        let first = csv.lines().nth(1).unwrap();
        assert!(first.starts_with(&format!("r1,{jdoe},")), "{first}");
        assert!(first.contains(&p.name("samlee")), "{first}");
        // "JDoe" is the same person as "jdoe": the same pseudonym, twice on the first line.
        assert_eq!(first.matches(&jdoe).count(), 2, "{first}");
        // Titles are free text: left as written.
        assert!(csv.contains("jdoe's change"), "{csv}");
        assert!(!csv.contains("secret-key"));
        let md = std::fs::read_to_string(dir.path().join(SCHEMA_MD)).unwrap();
        assert!(
            md.contains("**Pseudonymised.**") && !md.contains("secret-key"),
            "{md}"
        );
    }

    fn metric(metric: &str, scope: &str, week: i64, value: Option<f64>, n: i64) -> MetricRow {
        MetricRow {
            metric: metric.into(),
            grain: if week < 0 { "range" } else { "week" }.into(),
            scope_type: "service".into(),
            scope: scope.into(),
            period_start: at(24 * 7 * week.max(0)),
            period_end: at(24 * 7 * if week < 0 { 2 } else { week + 1 }),
            value,
            unit: "count".into(),
            n,
            method: None,
            no_data: None,
        }
    }

    #[test]
    fn the_breakdown_puts_each_services_periods_on_rows_and_metrics_in_columns() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            metric("deployment_count", "search", 0, Some(3.0), 3),
            metric("deployment_count", "checkout", 1, Some(5.0), 5),
            metric("deployment_count", "checkout", 0, Some(2.0), 2),
            metric("deployment_count", "checkout", -1, Some(7.0), 7),
            metric("availability", "checkout", 0, None, 0),
            metric("rework_rate", "checkout", 0, Some(0.5), 2),
        ];
        let teams = BTreeMap::from([("checkout".to_owned(), "payments".to_owned())]);
        let mut export = Export::new(dir.path(), None);
        export.service_breakdown(&rows, &teams).unwrap();
        let schema = export.finish(at(0)).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("service_breakdown.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(header.len(), 5 + 2 * BREAKDOWN_METRICS.len());
        assert_eq!(
            &header[..7],
            [
                "service",
                "team",
                "grain",
                "period_start",
                "period_end",
                "deployment_count",
                "deployment_count_n"
            ]
        );
        assert!(!header.contains(&"rework_rate"), "only the main metrics");
        let cell = |line: &str, column: &str| {
            let i = header.iter().position(|h| *h == column).unwrap();
            line.split(',').nth(i).unwrap().to_owned()
        };
        // checkout's two weeks in time order, then its range row, then search.
        assert_eq!(lines.len(), 5);
        assert!(
            lines[1].starts_with("checkout,payments,week,2026-08-03T00:00:00.000Z"),
            "{}",
            lines[1]
        );
        assert_eq!(
            (
                cell(lines[1], "deployment_count"),
                cell(lines[1], "deployment_count_n")
            ),
            ("2.0".into(), "2".into())
        );
        assert_eq!(
            (cell(lines[1], "availability"), cell(lines[1], "availability_n")),
            (String::new(), "0".into())
        );
        assert_eq!(cell(lines[1], "tickets_resolved_n"), "", "no row: null n");
        assert_eq!(cell(lines[2], "deployment_count"), "5.0");
        assert!(lines[3].starts_with("checkout,payments,range,"), "{}", lines[3]);
        assert_eq!(cell(lines[3], "deployment_count"), "7.0");
        assert!(lines[4].starts_with("search,,week,"), "{}", lines[4]);
        assert_eq!(schema.files[0].columns[5].unit.as_deref(), Some("count"));
    }

    #[test]
    fn unmapped_lists_records_without_a_service_and_their_reference() {
        let dep = |id: &str, service: Option<&str>| Deployment {
            change_refs: Vec::new(),
            deployed_by: None,
            id: id.into(),
            source: "gh".into(),
            repo: "acme/legacy".into(),
            service: service.map(Into::into),
            team: None,
            environment: "production".into(),
            is_production: true,
            status: tandem_connectors::model::DeploymentStatus::Success,
            sha: "abc".into(),
            created_at: at(1),
            finished_at: None,
            updated_at: at(1),
        };
        let found = unmapped(
            &[dep("b", None), dep("a", Some("checkout")), dep("c", None)],
            &[],
            &[],
            &[],
            &[],
        );
        let ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(found[0].reference.as_deref(), Some("acme/legacy"));
        assert_eq!(
            (found[0].table, found[0].reference_field),
            ("deployments", "repo")
        );
    }
}
