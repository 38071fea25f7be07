//! Loading a large number of rows into an empty table at once: rows are buffered per partition,
//! written as data files when the buffer is full, and committed as one version at the end, so the
//! table is either empty or fully loaded. For benchmark lakes and other sources that hold each key
//! once; it must not be used to merge into a table that has rows (that is an upsert's job, which
//! looks up every key).

use std::collections::BTreeMap;

use tandem_connectors::model::Table;

use super::delta::{DeltaError, NewFile, Operation};
use super::{Store, StoreError, table};

/// Rows a loader buffers (across its partitions) before writing them out, unless told otherwise.
pub const DEFAULT_BUFFER_ROWS: usize = 1 << 20;

/// A bulk load of one table in progress (see [`Store::bulk_load`]). Dropped without
/// [`BulkLoad::finish`], it leaves the table as it was; its data files stay unreferenced until
/// `tandem maintain` vacuums them.
#[derive(Debug)]
pub struct BulkLoad<T: Table> {
    store: Store,
    partitions: BTreeMap<Option<String>, Vec<T>>,
    buffered: usize,
    buffer_rows: usize,
    written: Vec<NewFile>,
    rows: u64,
}

impl Store {
    /// Starts loading rows into the table `T`, which must have none yet. The rows must hold each
    /// key once: a key found twice within one written data file is an error, but keys are not
    /// compared across files (that would hold every key in memory).
    pub fn bulk_load<T: Table>(&self) -> Result<BulkLoad<T>, StoreError> {
        let files = self.with_table::<T, _>(|t| Ok(t.log.files()?.len()))?;
        if files > 0 {
            return Err(StoreError::Delta(DeltaError {
                dir: self.table_dir(T::NAME),
                conflict: false,
                message: format!(
                    "a bulk load needs an empty table; this one has {files} data file(s): upsert into it instead"
                ),
            }));
        }
        Ok(BulkLoad {
            store: self.clone(),
            partitions: BTreeMap::new(),
            buffered: 0,
            buffer_rows: DEFAULT_BUFFER_ROWS,
            written: Vec::new(),
            rows: 0,
        })
    }
}

impl<T: Table> BulkLoad<T> {
    /// Buffers up to `rows` rows before writing them out: more memory, fewer and larger files.
    pub fn with_buffer_rows(mut self, rows: usize) -> Self {
        self.buffer_rows = rows.max(1);
        self
    }

    /// Adds rows; whenever the buffer is full, every partition's buffered rows become a data file.
    pub fn push(&mut self, rows: impl IntoIterator<Item = T>) -> Result<(), StoreError> {
        for row in rows {
            self.partitions
                .entry(table::partition_of(&row))
                .or_default()
                .push(row);
            self.buffered += 1;
            if self.buffered >= self.buffer_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes each partition's buffered rows as a data file (not yet committed).
    fn flush(&mut self) -> Result<(), StoreError> {
        let dir = self.store.table_dir(T::NAME);
        for (partition, mut rows) in std::mem::take(&mut self.partitions) {
            rows.sort_by(|a, b| a.key().cmp(b.key()));
            if let Some(pair) = rows.windows(2).find(|w| w[0].key() == w[1].key()) {
                return Err(StoreError::Delta(DeltaError {
                    dir,
                    conflict: false,
                    message: format!(
                        "a bulk load was given the key {} twice; each key must come once",
                        pair[0].key()
                    ),
                }));
            }
            self.rows += rows.len() as u64;
            self.written
                .push(table::write_file(&dir, &partition, &[], &rows)?);
        }
        self.buffered = 0;
        Ok(())
    }

    /// Writes what is buffered and commits every written file as one version of the table.
    /// Returns the rows loaded.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        self.flush()?;
        let adds = std::mem::take(&mut self.written);
        if adds.is_empty() {
            return Ok(0);
        }
        self.store.with_table::<T, _>(|t| {
            let files = t.log.files()?.len();
            if files > 0 {
                // Another writer got there first: committing would double its keys.
                return Err(StoreError::Delta(DeltaError {
                    dir: t.log.dir().to_owned(),
                    conflict: false,
                    message: format!(
                        "the table got {files} data file(s) during the bulk load, which is not committed"
                    ),
                }));
            }
            t.log.commit(adds, &[], None, Operation::Upsert)?;
            Ok(())
        })?;
        Ok(self.rows)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use tandem_connectors::model::{Deployment, DeploymentStatus};

    use super::*;
    use crate::store::delta::AsOf;

    fn dep(id: usize, days: i64) -> Deployment {
        let at = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap() + Duration::days(days);
        Deployment {
            change_refs: vec![format!("c{id}")],
            deployed_by: None,
            id: format!("gh:{id:04}"),
            source: "gh".into(),
            repo: "acme/a".into(),
            service: Some("a".into()),
            team: None,
            environment: "production".into(),
            is_production: true,
            status: DeploymentStatus::Success,
            sha: format!("{id:040}"),
            created_at: at,
            finished_at: Some(at + Duration::minutes(5)),
            updated_at: at + Duration::minutes(5),
        }
    }

    #[test]
    fn a_bulk_load_reads_back_as_what_an_upsert_writes_in_one_commit_per_partition_and_flush() {
        let rows: Vec<Deployment> = (0..50).map(|i| dep(i, i as i64 * 3)).collect();
        let bulk_dir = tempfile::tempdir().unwrap();
        let bulk = Store::open(bulk_dir.path()).unwrap();
        let mut load = bulk.bulk_load::<Deployment>().unwrap().with_buffer_rows(20);
        load.push(rows[..30].to_vec()).unwrap();
        load.push(rows[30..].to_vec()).unwrap();
        assert_eq!(
            bulk.read::<Deployment>().unwrap().len(),
            0,
            "nothing is visible before the load finishes"
        );
        assert_eq!(load.finish().unwrap(), 50);

        let upsert_dir = tempfile::tempdir().unwrap();
        let upserted = Store::open(upsert_dir.path()).unwrap();
        upserted.upsert(rows.clone()).unwrap();
        assert_eq!(
            bulk.read::<Deployment>().unwrap(),
            upserted.read::<Deployment>().unwrap()
        );
        // Version 0 creates the table, version 1 is the whole load.
        assert_eq!(
            bulk.table_version(Deployment::NAME, AsOf::Latest).unwrap(),
            Some(1)
        );
        // 150 days span six months; a flush every 20 rows writes each buffered month's rows.
        let files = bulk.table_files(Deployment::NAME, AsOf::Latest).unwrap();
        assert!(files.len() > 6, "{files:?}");
        assert!(
            files.iter().all(|f| f.to_string_lossy().contains("month=")),
            "partitioned as tandem writes the table: {files:?}"
        );
        assert_eq!(bulk.read_count(Deployment::NAME).unwrap(), 50);

        // The loaded table takes upserts like any other.
        let mut newer = rows[0].clone();
        newer.status = DeploymentStatus::Failure;
        newer.updated_at += Duration::hours(1);
        bulk.upsert(vec![newer.clone()]).unwrap();
        let back = bulk.read::<Deployment>().unwrap();
        assert_eq!(back.len(), 50);
        assert_eq!(back[0], newer);
    }

    #[test]
    fn a_bulk_load_refuses_a_table_with_rows_and_a_key_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut load = store.bulk_load::<Deployment>().unwrap();
        load.push(vec![dep(1, 0), dep(1, 0)]).unwrap();
        let err = load.finish().unwrap_err().to_string();
        assert!(err.contains("gh:0001") && err.contains("twice"), "{err}");
        assert_eq!(store.read::<Deployment>().unwrap().len(), 0);

        store.upsert(vec![dep(2, 0)]).unwrap();
        let err = store.bulk_load::<Deployment>().unwrap_err().to_string();
        assert!(err.contains("empty table") && err.contains("upsert"), "{err}");
    }
}
