//! File import: canonical records from CSV or NDJSON files, for systems without a connector.
//!
//! A file holds one entity; its columns are the canonical fields of `crate::model` (the tables'
//! `COLUMNS` are the schema, so this module has no field list of its own). Each stream reads the
//! files of its entity: an unchanged file (same size, modification time and content hash) is
//! skipped, a changed one is re-read in full (the store upserts on the primary key, so that is
//! idempotent), and a checkpoint after every batch records the byte offset reached so a killed
//! run resumes mid-file, once it has verified that the file is still the same.
//!
//! This module never talks to the network, never maps services (the runner does, from
//! `service_ref`), and never stops on a bad row: bad rows are quarantined with file, line and
//! column.

mod files;
mod reader;
mod row;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{Emitter, StreamDef, state_from_bookmark};
use crate::error::ConnectorError;
use crate::http::RetryPolicy;
use crate::secret::SecretEnv;

use files::{Fingerprint, ImportFile, discover, fingerprint};
use reader::{FileReader, Position};
pub use row::Entity;

/// Rows per batch: records and quarantined rows sent before each checkpoint.
const BATCH_ROWS: usize = 1000;

/// `[[source]] kind = "file"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileImportConfig {
    /// Source name, unique in the config (the default `source` of the records and the prefix of
    /// derived ids).
    pub name: String,
    /// A file, or a directory whose recognised files are all read (not recursive). A relative
    /// path is relative to the config file's directory once the config loader has called
    /// [`FileImportConfig::resolve_paths`]; before that, to the working directory.
    pub path: PathBuf,
    /// `csv` or `ndjson`; by default from the extension (`.csv`, `.ndjson`, `.jsonl`). In a
    /// directory, reads only the files of this format.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// The entity the file(s) hold; by default from each file's name (`deployments.csv`,
    /// `incidents-2024.ndjson`). In a directory, every recognised file is read as this entity.
    #[serde(default)]
    pub entity: Option<Entity>,
}

impl FileImportConfig {
    /// Makes a relative `path` relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
    }
}

/// How an import file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-separated, first line the header.
    Csv,
    /// One JSON object per line.
    #[serde(alias = "jsonl")]
    Ndjson,
}

const fn stream(name: &'static str, cursor_field: &'static str) -> StreamDef {
    StreamDef {
        name,
        table: name,
        primary_key: "id",
        cursor_field,
    }
}

/// One stream per entity, named after its table.
const STREAMS: &[StreamDef] = &[
    stream("deployments", "updated_at"),
    stream("changes", "updated_at"),
    stream("commits", "updated_at"),
    stream("incidents", "updated_at"),
    stream("tickets", "updated_at"),
    stream("ticket_transitions", "at"),
    stream("change_requests", "updated_at"),
];

/// Bookmark of one stream.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct StreamState {
    /// Files read to the end, by name under the configured path, with their fingerprint then.
    #[serde(default)]
    done: BTreeMap<String, Fingerprint>,
    /// The file being read at the last checkpoint, and how far.
    #[serde(default)]
    current: Option<Progress>,
    /// The contract's `covers_from`: always null, for a file holds what it holds and no
    /// lookback cuts it.
    #[serde(default, skip_deserializing)]
    covers_from: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    file: String,
    fingerprint: Fingerprint,
    at: Position,
}

/// The file-import connector.
#[derive(Debug, Clone)]
pub struct FileImport {
    config: FileImportConfig,
}

impl FileImport {
    /// Builds the connector; the path is only looked at by `check` and `read`.
    pub fn new(
        config: FileImportConfig,
        _env: &SecretEnv,
        _policy: RetryPolicy,
    ) -> Result<Self, ConnectorError> {
        Ok(Self { config })
    }

    /// The streams offered: one per entity.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// Verifies that the path can be read, that it holds at least one recognised file, and that
    /// every CSV header has the columns its entity requires.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        let config = self.config.clone();
        let source = self.config.name.clone();
        self.blocking(move || {
            let found = discover(&config)?;
            for (path, why) in &found.skipped {
                tracing::warn!(source, file = %path.display(), why, "Skipping a file in the import directory.");
            }
            if found.files.is_empty() {
                return Err(format!(
                    "no file to import in {}: name files after their entity ({}) with .csv, .ndjson or \
                     .jsonl, or set `entity`",
                    config.path.display(),
                    files::entity_names()
                ));
            }
            let problems: Vec<String> = found
                .files
                .iter()
                .filter_map(|f| FileReader::open(f, &source, None).err())
                .collect();
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        })
        .await
    }

    /// Reads the files of `stream`'s entity from `bookmark`, sending records, quarantined rows
    /// and a checkpoint after each batch.
    pub async fn read(
        &self,
        stream: &str,
        bookmark: Option<Value>,
        out: Emitter,
    ) -> Result<(), ConnectorError> {
        let entity = Entity::from_name(stream).ok_or_else(|| ConnectorError::Config {
            source_name: self.config.name.clone(),
            message: format!(
                "no stream `{stream}`; file imports offer {}",
                files::entity_names()
            ),
        })?;
        let mut state: StreamState = state_from_bookmark(bookmark);
        let config = self.config.clone();
        let files: Vec<ImportFile> = self
            .blocking(move || discover(&config))
            .await?
            .files
            .into_iter()
            .filter(|f| f.entity == entity)
            .collect();
        // Forget files that are gone, so the bookmark does not grow forever.
        let before = state.clone();
        state.done.retain(|k, _| files.iter().any(|f| &f.key == k));
        if let Some(c) = &state.current
            && !files.iter().any(|f| f.key == c.file)
        {
            state.current = None;
        }
        let mut unsaved = state != before;
        for f in files {
            let path = f.path.clone();
            let fp = self
                .blocking(move || {
                    fingerprint(&path).map_err(|e| format!("file {}: cannot read it: {e}", path.display()))
                })
                .await?;
            if state.done.get(&f.key) == Some(&fp) {
                tracing::debug!(source = %self.config.name, stream, file = %f.key, "Skipping an unchanged file.");
                continue;
            }
            let from = match &state.current {
                Some(c) if c.file == f.key && c.fingerprint == fp => Some(c.at),
                Some(c) if c.file == f.key => {
                    tracing::info!(
                        source = %self.config.name, stream, file = %f.key,
                        "The file changed since the last checkpoint; reading it from the start."
                    );
                    None
                }
                _ => None,
            };
            let source = self.config.name.clone();
            let (opened, file) = (f.clone(), f.key.clone());
            let mut reader = self
                .blocking(move || FileReader::open(&opened, &source, from))
                .await?;
            loop {
                let (back, batch) = self
                    .blocking(move || reader.next_batch(BATCH_ROWS).map(|b| (reader, b)))
                    .await?;
                reader = back;
                out.records(batch.records).await?;
                out.quarantine(batch.quarantined).await?;
                if batch.eof {
                    state.current = None;
                    state.done.insert(file.clone(), fp.clone());
                } else {
                    state.current = Some(Progress {
                        file: file.clone(),
                        fingerprint: fp.clone(),
                        at: batch.at,
                    });
                }
                out.checkpoint(&state).await?;
                unsaved = false;
                if batch.eof {
                    break;
                }
            }
        }
        if unsaved {
            out.checkpoint(&state).await?;
        }
        Ok(())
    }

    /// Runs file work off the async workers; its error message becomes a config error of this
    /// source (the messages name the file).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let config_error = |message: String| ConnectorError::Config {
            source_name: self.config.name.clone(),
            message,
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| config_error(format!("the file reader stopped: {e}")))?
            .map_err(config_error)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
