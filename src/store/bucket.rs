//! A lake in object storage (`s3://bucket/prefix`, `gs://…`, `az://…`), mounted at a local cache
//! directory. The store's code works on paths under the cache; at the few points where a file
//! must reach the bucket it asks this module whether the path is mounted:
//!
//! - **Delta logs** are read and committed in the bucket by delta-rs itself (its default log
//!   store: a commit is a conditional `PUT` that fails when the version exists, so two writers
//!   never both commit one version) — nothing of a log is cached.
//! - **Data files** (and the run history's and metric table's) are written to the cache,
//!   uploaded before the commit that adds them, and downloaded on first read. A data file is
//!   never rewritten under its name, so a cached copy is never stale.
//! - **State files** (bookmarks, checkpoint numbers, coverage) are read from the bucket every time
//!   ([`pull`]) and uploaded as written ([`push`]); every read-modify-write of a shared one
//!   happens under the state lease.
//! - **Locks** are leases ([`Lease`]): an object created only if absent, naming its holder and an
//!   expiry the holder renews; a holder killed with `kill -9` stops renewing, and the next
//!   writer takes the lease over once it has expired (a conditional `PUT` on the stale object's
//!   ETag, so two writers never both take it).
//!
//! Credentials come from each cloud's own environment (`AWS_*` with web identity and instance
//! metadata, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_*` and managed identity), never from the
//! configuration, and no message of this module contains one: errors name the object's URL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use url::Url;

pub use object_store;

use super::delta::block_on;
use super::lock::LockHolder;

/// The URL schemes of object storage `[store] path` accepts.
pub const SCHEMES: [&str; 6] = ["s3", "s3a", "gs", "az", "abfs", "abfss"];

/// Whether `path` (as written in the configuration) names object storage.
pub fn is_url(path: &str) -> bool {
    path.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// How to reach an S3-compatible store, from `[store.s3]`; everything else (keys, tokens, roles)
/// comes from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint of an S3-compatible store (MinIO, Ceph, R2): `https://minio.example:9000`.
    pub endpoint: Option<String>,
    /// Region (else `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint` (most S3-compatible
    /// stores want this; AWS accepts both). Default: true with an `endpoint`, false without.
    pub path_style: Option<bool>,
    /// Allow an `http://` endpoint (a store on the same host or in the cluster network).
    #[serde(default)]
    pub allow_http: bool,
}

/// What went wrong talking to the bucket.
#[derive(Debug, thiserror::Error)]
#[error("object storage: cannot {action} {url}: {message}")]
pub struct BucketError {
    /// What was being done.
    pub action: &'static str,
    /// The object (or the lake) it was done to.
    pub url: String,
    /// What the client said.
    pub message: String,
}

/// A lake's bucket (and prefix in it), mounted at a cache directory.
pub struct Bucket {
    /// The lake's URL, ending in `/`.
    url: Url,
    /// The bucket's store, rooted at the bucket.
    store: Arc<dyn ObjectStore>,
    /// The lake's prefix in the bucket (empty for a whole bucket).
    prefix: String,
    /// The local directory the lake is mounted at.
    cache: PathBuf,
    /// How long a lease runs unless renewed.
    lease: Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("url", &self.url.as_str())
            .field("cache", &self.cache)
            .finish()
    }
}

/// Requests tandem itself made to buckets (delta-rs' own, for the logs, are not counted), and
/// the time they took, by kind: `get`, `put`, `delete`, `list`.
static REQUESTS: Mutex<std::collections::BTreeMap<&'static str, (u64, Duration)>> =
    Mutex::new(std::collections::BTreeMap::new());

fn count(kind: &'static str, started: std::time::Instant) {
    let mut requests = REQUESTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = requests.entry(kind).or_default();
    entry.0 += 1;
    entry.1 += started.elapsed();
}

/// How many requests of each kind this process made to buckets for state files, data files,
/// raw pages and leases, and how long they took (for benchmarks).
pub fn requests() -> Vec<(&'static str, u64, Duration)> {
    REQUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(kind, (n, t))| (*kind, *n, *t))
        .collect()
}

/// The lakes this process has mounted.
static MOUNTS: Mutex<Vec<Arc<Bucket>>> = Mutex::new(Vec::new());

/// Mounts the lake at `url` at a directory under `cache_root` (named after the URL, so every run
/// on this host reuses what earlier ones downloaded) and returns the directory. Mounting the same
/// URL again returns the same directory.
pub fn mount(url: &str, s3: &S3Options, cache_root: &Path, lease: Duration) -> Result<PathBuf, BucketError> {
    mount_with(url, cache_root, lease, |parsed| build_store(parsed, s3))
}

/// [`mount`] with a client the caller built (rooted at the bucket): for a program embedding
/// tandem with credentials of its own, and for tests.
pub fn mount_store(
    url: &str,
    store: Arc<dyn ObjectStore>,
    cache_root: &Path,
    lease: Duration,
) -> Result<PathBuf, BucketError> {
    mount_with(url, cache_root, lease, |_| Ok(store))
}

fn mount_with(
    url: &str,
    cache_root: &Path,
    lease: Duration,
    client: impl FnOnce(&Url) -> Result<Arc<dyn ObjectStore>, String>,
) -> Result<PathBuf, BucketError> {
    let error = |message: String| BucketError {
        action: "open the lake at",
        url: url.to_owned(),
        message,
    };
    let mut parsed = Url::parse(url).map_err(|e| error(e.to_string()))?;
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    let mut mounts = MOUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(mounted) = mounts.iter().find(|b| b.url == parsed) {
        return Ok(mounted.cache.clone());
    }
    let store = client(&parsed).map_err(error)?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let prefix = parsed.path().trim_matches('/').to_owned();
    let mut cache = cache_root.join(parsed.scheme()).join(safe(&host));
    for part in prefix.split('/').filter(|p| !p.is_empty()) {
        cache.push(safe(part));
    }
    std::fs::create_dir_all(&cache).map_err(|e| {
        error(format!(
            "cannot create the cache directory {}: {e}",
            cache.display()
        ))
    })?;
    mounts.push(Arc::new(Bucket {
        url: parsed,
        store,
        prefix,
        cache: cache.clone(),
        lease: lease.max(Duration::from_secs(1)),
    }));
    Ok(cache)
}

fn safe(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The bucket's client, from the URL, `[store.s3]` and the cloud's standard environment.
fn build_store(url: &Url, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, String> {
    let bucket_url = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_url(format!("s3://{}", url.host_str().unwrap_or_default()));
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            } else if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            let path_style = s3.path_style.unwrap_or(s3.endpoint.is_some());
            builder = builder
                .with_virtual_hosted_style_request(!path_style)
                .with_allow_http(s3.allow_http);
            Arc::new(builder.build().map_err(|e| e.to_string())?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(&bucket_url)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("`{other}://` is not object storage tandem reads")),
    };
    Ok(store)
}

/// The mounted lake `path` lies in, and its key in the bucket.
pub fn of(path: &Path) -> Option<(Arc<Bucket>, Key)> {
    let mounts = MOUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    mounts.iter().find_map(|bucket| {
        let relative = path.strip_prefix(&bucket.cache).ok()?;
        let key = bucket.key_of(relative)?;
        Some((Arc::clone(bucket), key))
    })
}

/// The client of a mounted bucket `url` lies in (same scheme and bucket).
pub fn store_for_url(url: &Url) -> Option<Arc<dyn ObjectStore>> {
    let mounts = MOUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    mounts
        .iter()
        .find(|b| b.url.scheme() == url.scheme() && b.url.host_str() == url.host_str())
        .map(|b| b.store())
}

/// How to name `path` to a user: its object's URL in a mounted lake, else the path.
pub fn url_of_lake(path: &Path) -> String {
    match of(path) {
        Some((bucket, key)) => bucket.url_of(&key),
        None => path.display().to_string(),
    }
}

/// Whether `path` lies in a mounted lake.
pub fn is_mounted(path: &Path) -> bool {
    of(path).is_some()
}

impl Bucket {
    fn key_of(&self, relative: &Path) -> Option<Key> {
        let mut parts: Vec<String> = Vec::new();
        if !self.prefix.is_empty() {
            parts.push(self.prefix.clone());
        }
        for component in relative.components() {
            parts.push(component.as_os_str().to_str()?.to_owned());
        }
        Some(Key::from(parts.join("/")))
    }

    /// The lake's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL of the object at `key`, for messages.
    pub fn url_of(&self, key: &Key) -> String {
        format!(
            "{}://{}/{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default(),
            key
        )
    }

    /// The URL of a table directory of the mounted lake (for delta-rs), ending in `/`.
    pub fn dir_url(&self, dir: &Path) -> Option<Url> {
        let relative = dir.strip_prefix(&self.cache).ok()?;
        let mut url = self.url.clone();
        let mut path = url.path().to_owned();
        for component in relative.components() {
            path.push_str(component.as_os_str().to_str()?);
            path.push('/');
        }
        url.set_path(&path);
        Some(url)
    }

    /// The bucket's client (rooted at the bucket).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    fn error(&self, action: &'static str, key: &Key, e: impl std::fmt::Display) -> BucketError {
        BucketError {
            action,
            url: self.url_of(key),
            message: e.to_string(),
        }
    }

    /// The object at `key` and its ETag; `None` when there is none.
    pub fn get(&self, key: &Key) -> Result<Option<(Bytes, Option<String>)>, BucketError> {
        let store = self.store();
        let at = key.clone();
        let _counted = Counted("get", std::time::Instant::now());
        match block_on(async move {
            let result = store.get(&at).await?;
            let etag = result.meta.e_tag.clone();
            Ok::<_, object_store::Error>((result.bytes().await?, etag))
        }) {
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    /// Writes the object at `key`: unconditionally, only if absent (`Create`), or only if it is
    /// still the version with this ETag (`Update`). `Ok(None)` when the condition failed;
    /// otherwise the new ETag.
    pub fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<Option<String>, BucketError> {
        let store = self.store();
        let at = key.clone();
        let _counted = Counted("put", std::time::Instant::now());
        match block_on(async move {
            store
                .put_opts(&at, PutPayload::from_bytes(bytes), PutOptions::from(mode))
                .await
        }) {
            Ok(result) => Ok(Some(result.e_tag.unwrap_or_default())),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(None)
            }
            Err(e) => Err(self.error("write", key, e)),
        }
    }

    /// Removes the object at `key` (absent is fine).
    pub fn delete(&self, key: &Key) -> Result<(), BucketError> {
        let store = self.store();
        let at = key.clone();
        let _counted = Counted("delete", std::time::Instant::now());
        match block_on(async move { store.delete(&at).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// The keys (with sizes and modification times) under `prefix`, at any depth.
    pub fn list(&self, prefix: &Key) -> Result<Vec<(Key, u64, DateTime<Utc>)>, BucketError> {
        let store = self.store();
        let at = prefix.clone();
        let _counted = Counted("list", std::time::Instant::now());
        block_on(async move {
            store
                .list(Some(&at))
                .map_ok(|meta| (meta.location, meta.size, meta.last_modified))
                .try_collect::<Vec<_>>()
                .await
        })
        .map_err(|e| self.error("list", prefix, e))
    }

    /// The local path of the object at `key`.
    fn local(&self, key: &Key) -> PathBuf {
        let mut path = self.cache.clone();
        let relative = key
            .as_ref()
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(key.as_ref())
            .trim_start_matches('/');
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path.push(part);
        }
        path
    }
}

/// Counts a request when it ends.
struct Counted(&'static str, std::time::Instant);

impl Drop for Counted {
    fn drop(&mut self) {
        count(self.0, self.1);
    }
}

fn io(e: BucketError) -> std::io::Error {
    std::io::Error::other(e)
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so a reader (another
/// process sharing the cache) never sees half a file.
fn write_local(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = crate::atomic::tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// What a read under the state lease saw of an object: the version a write must still find.
#[derive(Debug, Clone)]
enum Seen {
    Absent,
    Version(String),
}

std::thread_local! {
    /// While this thread holds the state lease ([`begin_guarded`]): the state files it read, so
    /// that writing one back is conditional on nobody having written it since.
    static GUARDED: std::cell::RefCell<Option<std::collections::HashMap<PathBuf, Seen>>> =
        const { std::cell::RefCell::new(None) };
}

/// Marks the start of a read-modify-write of state files by this thread (it holds the state
/// lease): until [`end_guarded`], a file it reads and writes back is written only if it is
/// still the version read. Should a lease run out under a stalled holder and another writer
/// update the file meanwhile, the write fails loudly instead of undoing that update.
pub fn begin_guarded() {
    GUARDED.with(|g| *g.borrow_mut() = Some(std::collections::HashMap::new()));
}

/// Ends what [`begin_guarded`] started.
pub fn end_guarded() {
    GUARDED.with(|g| *g.borrow_mut() = None);
}

fn saw(path: &Path, seen: Seen) {
    GUARDED.with(|g| {
        if let Some(map) = g.borrow_mut().as_mut() {
            map.insert(path.to_owned(), seen);
        }
    });
}

fn seen(path: &Path) -> Option<Seen> {
    GUARDED.with(|g| g.borrow().as_ref().and_then(|map| map.get(path).cloned()))
}

/// Replaces the cached copy of a mutable file (a state file) with the bucket's, or removes it
/// when the bucket has none. Does nothing for a path outside a mounted lake.
pub fn pull(path: &Path) -> std::io::Result<()> {
    let Some((bucket, key)) = of(path) else {
        return Ok(());
    };
    match bucket.get(&key).map_err(io)? {
        Some((bytes, etag)) => {
            if let Some(etag) = etag {
                saw(path, Seen::Version(etag));
            }
            write_local(path, &bytes)
        }
        None => {
            saw(path, Seen::Absent);
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    }
}

/// Replaces the cached copies of every object under `dir` with the bucket's (state files), and
/// removes cached files the bucket no longer has. Does nothing outside a mounted lake.
pub fn pull_dir(dir: &Path) -> std::io::Result<()> {
    let Some((bucket, key)) = of(dir) else {
        return Ok(());
    };
    let listed = bucket.list(&key).map_err(io)?;
    let mut present = std::collections::BTreeSet::new();
    for (object, _, _) in listed {
        let local = bucket.local(&object);
        if let Some((bytes, _)) = bucket.get(&object).map_err(io)? {
            write_local(&local, &bytes)?;
            present.insert(local);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let temporary = path.extension().is_some_and(|e| e == "tmp");
            if path.is_file() && !temporary && !present.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

/// Downloads the object of an immutable file (a data file, a raw page archive) into the cache
/// unless it is there already. Does nothing outside a mounted lake; a missing object leaves the
/// path missing (the caller says what that means).
pub fn fetch(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let Some((bucket, key)) = of(path) else {
        return Ok(());
    };
    if let Some((bytes, _)) = bucket.get(&key).map_err(io)? {
        write_local(path, &bytes)?;
    }
    Ok(())
}

/// Downloads every object under `dir` the cache does not have (immutable files). Does nothing
/// outside a mounted lake.
pub fn fetch_dir(dir: &Path) -> std::io::Result<()> {
    fetch_dir_where(dir, |_| true)
}

/// [`fetch_dir`] of the objects whose cache path `wanted` accepts.
fn fetch_dir_where(dir: &Path, wanted: impl Fn(&Path) -> bool) -> std::io::Result<()> {
    let Some((bucket, key)) = of(dir) else {
        return Ok(());
    };
    for (object, _, _) in bucket.list(&key).map_err(io)? {
        let local = bucket.local(&object);
        if wanted(&local) && !local.exists() {
            if let Some((bytes, _)) = bucket.get(&object).map_err(io)? {
                write_local(&local, &bytes)?;
            }
        }
    }
    Ok(())
}

/// Uploads the cached file at `path` to the bucket. Does nothing outside a mounted lake.
pub fn push(path: &Path) -> std::io::Result<()> {
    let Some((bucket, key)) = of(path) else {
        return Ok(());
    };
    let bytes = std::fs::read(path)?;
    let mode = match seen(path) {
        Some(Seen::Absent) => PutMode::Create,
        Some(Seen::Version(etag)) => PutMode::Update(UpdateVersion {
            e_tag: Some(etag),
            version: None,
        }),
        None => PutMode::Overwrite,
    };
    match bucket.put(&key, Bytes::from(bytes), mode).map_err(io)? {
        Some(etag) => {
            if seen(path).is_some() {
                saw(path, Seen::Version(etag));
            }
            Ok(())
        }
        None => Err(std::io::Error::other(format!(
            "{} was changed by another writer since this one read it (this writer's state lease ran out while it was stalled?); nothing was overwritten: run again",
            bucket.url_of(&key)
        ))),
    }
}

/// Removes the file at `path` from the bucket (and the cache). Outside a mounted lake, only the
/// file.
pub fn remove(path: &Path) -> std::io::Result<()> {
    if let Some((bucket, key)) = of(path) {
        bucket.delete(&key).map_err(io)?;
        saw(path, Seen::Absent);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A file of a mounted lake: its cache path, its size and when its object was last written.
pub type Listed = (PathBuf, u64, DateTime<Utc>);

/// The files under `dir` in the bucket, as cache paths, with their modification times; `None`
/// outside a mounted lake.
pub fn list_dir(dir: &Path) -> std::io::Result<Option<Vec<Listed>>> {
    let Some((bucket, key)) = of(dir) else {
        return Ok(None);
    };
    Ok(Some(
        bucket
            .list(&key)
            .map_err(io)?
            .into_iter()
            .map(|(object, size, modified)| (bucket.local(&object), size, modified))
            .collect(),
    ))
}

/// Checks that the lake mounted at `lake` can be used: an object created only if absent (and
/// refused the second time: a store that ignores `If-None-Match` would let two writers commit one
/// Delta version), read back, listed and deleted. Returns the lake's URL.
pub fn probe(lake: &Path) -> Result<String, BucketError> {
    let probe = lake.join("locks").join(format!(
        "probe-{}-{}-{}",
        safe(&super::lock::host_name()),
        std::process::id(),
        Utc::now().timestamp_micros()
    ));
    let Some((bucket, key)) = of(&probe) else {
        return Err(BucketError {
            action: "check",
            url: lake.display().to_string(),
            message: "not a lake in object storage".to_owned(),
        });
    };
    let refuse = |message: &str| BucketError {
        action: "check",
        url: bucket.url_of(&key),
        message: message.to_owned(),
    };
    if bucket
        .put(&key, Bytes::from_static(b"probe"), PutMode::Create)?
        .is_none()
    {
        return Err(refuse("the probe object exists already; run the check again"));
    }
    let second = bucket.put(&key, Bytes::from_static(b"again"), PutMode::Create);
    let got = bucket.get(&key);
    let folder = Key::from_iter(key.parts().take(key.parts().count().saturating_sub(1)));
    let listed = bucket.list(&folder);
    bucket.delete(&key)?;
    if second?.is_some() {
        return Err(refuse(
            "the store accepted a second create of one object: it does not honour `If-None-Match: *` on PUT, so two writers could commit the same Delta version; use a store (or version) with conditional writes",
        ));
    }
    if got?.is_none_or(|(bytes, _)| bytes.as_ref() != b"probe") {
        return Err(refuse("the probe object did not read back as written"));
    }
    if !listed?.iter().any(|(object, _, _)| *object == key) {
        return Err(refuse("the probe object is not listed"));
    }
    Ok(bucket.url.to_string())
}

/// The output trees (report and export folders in a bucket) this process mounted, to publish.
static TREES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Mounts a report (or export) folder in a bucket (`s3://site/reports`) at a local directory and
/// brings it up to date for rendering into: of the run folders this host lacks, their JSON files
/// only (`meta.json`, which the index lists runs by, and a digest's `summary.json`, which the next
/// digest compares with; a folder is never rewritten under its name), not their pages and charts;
/// and the bucket's `index.html`. [`publish_trees`] uploads what the command adds.
pub fn mount_tree(url: &str, s3: &S3Options, cache_root: &Path) -> Result<PathBuf, BucketError> {
    let dir = mount(url, s3, &cache_root.join("out"), Duration::from_secs(60))?;
    let failed = |e: std::io::Error| BucketError {
        action: "read",
        url: url.to_owned(),
        message: e.to_string(),
    };
    fetch_dir_where(&dir, |path| path.extension().is_some_and(|e| e == "json")).map_err(failed)?;
    pull(&dir.join("index.html")).map_err(failed)?;
    let mut trees = TREES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !trees.contains(&dir) {
        trees.push(dir.clone());
    }
    Ok(dir)
}

/// Uploads what this process added to the output trees it mounted: every file the bucket lacks
/// (hidden folders, a run being written, left out), then the top-level files (`index.html`)
/// last, so the index never links a run not yet there. Returns the trees' URLs and the files
/// uploaded.
pub fn publish_trees() -> Result<Vec<(String, usize)>, BucketError> {
    let trees: Vec<PathBuf> = TREES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut published = Vec::new();
    for dir in trees {
        let Some((bucket, key)) = of(&dir) else {
            continue;
        };
        let present: std::collections::BTreeSet<PathBuf> = bucket
            .list(&key)?
            .into_iter()
            .map(|(object, _, _)| bucket.local(&object))
            .collect();
        let mut files = Vec::new();
        collect_files(&dir, &mut files).map_err(|e| bucket.error("read", &key, e))?;
        let visible = |f: &PathBuf| {
            f.strip_prefix(&dir).is_ok_and(|r| {
                !r.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            }) && f.extension().is_none_or(|e| e != "tmp")
        };
        let top = |f: &PathBuf| f.parent() == Some(dir.as_path());
        let mut upload: Vec<PathBuf> = files
            .into_iter()
            .filter(|f| visible(f) && (top(f) || !present.contains(f)))
            .collect();
        upload.sort_by_key(|f| (top(f), f.clone()));
        for file in &upload {
            let Some(object) = file
                .strip_prefix(&bucket.cache)
                .ok()
                .and_then(|r| bucket.key_of(r))
            else {
                continue;
            };
            let bytes = std::fs::read(file).map_err(|e| bucket.error("read", &object, e))?;
            let store = bucket.store();
            let at = object.clone();
            let kind = content_type(file);
            block_on(async move {
                let mut options = PutOptions::default();
                if let Some(kind) = kind {
                    options
                        .attributes
                        .insert(object_store::Attribute::ContentType, kind.into());
                }
                store.put_opts(&at, PutPayload::from(bytes), options).await
            })
            .map_err(|e| bucket.error("write", &object, e))?;
        }
        published.push((bucket.url.to_string(), upload.len()));
    }
    Ok(published)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The `Content-Type` a static site serves a report file with.
fn content_type(path: &Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "parquet" => "application/vnd.apache.parquet",
        _ => return None,
    })
}

/// What a lease object says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LeaseBody {
    /// Who holds it.
    pub holder: LockHolder,
    /// Until when, unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Display for LeaseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (its lease runs to {} unless renewed)",
            self.holder,
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held lease; renewed by a thread of its own until dropped, then deleted.
#[derive(Debug)]
pub struct Lease {
    bucket: Arc<Bucket>,
    key: Key,
    shared: Arc<LeaseState>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct LeaseState {
    /// Who holds it.
    holder: LockHolder,
    /// The ETag of the lease as last written; `None` once lost.
    etag: Mutex<Option<String>>,
    /// Set to stop the renewer.
    stop: Mutex<bool>,
    wake: Condvar,
}

/// Why a lease was not taken.
#[derive(Debug)]
pub enum Refused {
    /// Another holder has it (and its lease has not expired).
    Held(LeaseBody),
    /// The bucket could not be asked.
    Error(BucketError),
}

impl From<BucketError> for Refused {
    fn from(e: BucketError) -> Self {
        Self::Error(e)
    }
}

impl Lease {
    /// Takes the lease at `<lake>/<name>` for `holder`, for `ttl` at a time. One found expired (a
    /// holder killed, or cut off from the bucket for longer than `ttl`) is taken over, with a
    /// warning naming the previous holder. Returns the lease and whether it was taken over.
    pub fn take(path: &Path, holder: &LockHolder) -> Result<(Self, bool), Refused> {
        let Some((bucket, key)) = of(path) else {
            return Err(Refused::Error(BucketError {
                action: "take a lease at",
                url: path.display().to_string(),
                message: "not in a lake in object storage".to_owned(),
            }));
        };
        let ttl = bucket.lease;
        let body = |holder: &LockHolder| -> Bytes {
            let body = LeaseBody {
                holder: holder.clone(),
                expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
            };
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
        };
        // Twice at most: a lease released between the failed create and the read is created again.
        for _ in 0..2 {
            if let Some(etag) = bucket.put(&key, body(holder), PutMode::Create)? {
                return Ok((Self::start(bucket, key, etag, holder, ttl), false));
            }
            let Some((bytes, etag)) = bucket.get(&key)? else {
                continue;
            };
            let current: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
            if let Some(current) = &current
                && current.expires_at > Utc::now()
            {
                return Err(Refused::Held(current.clone()));
            }
            // Expired (or unreadable: a lease object is never written half): take it over, unless
            // another writer does so first.
            let mode = PutMode::Update(UpdateVersion {
                e_tag: etag,
                version: None,
            });
            if let Some(new) = bucket.put(&key, body(holder), mode)? {
                if let Some(previous) = &current {
                    tracing::warn!(
                        lease = %bucket.url_of(&key),
                        previous = %previous.holder,
                        "Taking over a lease its holder stopped renewing (killed?)."
                    );
                }
                return Ok((Self::start(bucket, key, new, holder, ttl), true));
            }
            match bucket.get(&key)? {
                Some((bytes, _)) => {
                    if let Ok(winner) = serde_json::from_slice::<LeaseBody>(&bytes) {
                        return Err(Refused::Held(winner));
                    }
                }
                None => continue,
            }
        }
        Err(Refused::Error(BucketError {
            action: "take the lease",
            url: bucket.url_of(&key),
            message: "it changed hands while being taken; try again".to_owned(),
        }))
    }

    /// The lease at `path`, if a holder has it and it has not expired.
    pub fn holder(path: &Path) -> Result<Option<LeaseBody>, BucketError> {
        let Some((bucket, key)) = of(path) else {
            return Ok(None);
        };
        Ok(bucket
            .get(&key)?
            .and_then(|(bytes, _)| serde_json::from_slice::<LeaseBody>(&bytes).ok())
            .filter(|body| body.expires_at > Utc::now()))
    }

    /// The leases under `dir` that a holder has and that have not expired.
    pub fn holders_under(dir: &Path) -> Result<Vec<LeaseBody>, BucketError> {
        let Some((bucket, key)) = of(dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (object, _, _) in bucket.list(&key)? {
            if let Some((bytes, _)) = bucket.get(&object)?
                && let Ok(body) = serde_json::from_slice::<LeaseBody>(&bytes)
                && body.expires_at > Utc::now()
            {
                out.push(body);
            }
        }
        Ok(out)
    }

    fn start(bucket: Arc<Bucket>, key: Key, etag: String, holder: &LockHolder, ttl: Duration) -> Self {
        let shared = Arc::new(LeaseState {
            holder: holder.clone(),
            etag: Mutex::new(Some(etag)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let renewer = {
            let (bucket, key, shared) = (Arc::clone(&bucket), key.clone(), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("tandem-lease".to_owned())
                .spawn(move || renew(&bucket, &key, &shared, ttl))
                .ok()
        };
        Self {
            bucket,
            key,
            shared,
            renewer,
        }
    }

    /// Whether the lease is still this process's (a renewal found it taken over: the process was
    /// cut off from the bucket for longer than the lease).
    pub fn is_held(&self) -> bool {
        self.shared
            .etag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Stops renewing the lease without releasing it: what a holder killed with `kill -9`
    /// leaves behind, for tests of the takeover.
    #[doc(hidden)]
    pub fn abandon(self) {
        *self
            .shared
            .etag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        drop(self);
    }

    /// The lease object's URL.
    pub fn url(&self) -> String {
        self.bucket.url_of(&self.key)
    }
}

/// Renews the lease every third of its term until told to stop; a renewal refused (another
/// holder took the lease over) marks it lost.
fn renew(bucket: &Bucket, key: &Key, shared: &LeaseState, ttl: Duration) {
    let every = ttl / 3;
    loop {
        {
            let stop = shared
                .stop
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (stop, _) = shared
                .wake
                .wait_timeout_while(stop, every, |stop| !*stop)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *stop {
                return;
            }
        }
        let mut etag = shared
            .etag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(current) = etag.clone() else {
            return;
        };
        let body = LeaseBody {
            holder: shared.holder.clone(),
            expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
        };
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(current),
            version: None,
        });
        match bucket.put(
            key,
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            mode,
        ) {
            Ok(Some(new)) => *etag = Some(new),
            Ok(None) => {
                tracing::error!(lease = %bucket.url_of(key), "Another writer took over the lease; this one stops committing.");
                *etag = None;
                return;
            }
            // The bucket could not be reached this time: the lease still runs; try again.
            Err(e) => tracing::warn!(error = %e, "Cannot renew a lease; trying again."),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if self.is_held() {
            if let Err(e) = self.bucket.delete(&self.key) {
                tracing::warn!(error = %e, "Cannot release a lease; it expires by itself.");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    /// A lake mounted over an in-memory store (conditional writes included), in a fresh cache.
    fn mounted(url: &str) -> (tempfile::TempDir, PathBuf, Arc<dyn ObjectStore>) {
        let cache = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lake = mount_store(url, Arc::clone(&store), cache.path(), Duration::from_secs(5)).unwrap();
        (cache, lake, store)
    }

    #[test]
    fn a_mounted_lake_maps_its_cache_paths_to_keys_and_urls_under_its_prefix() {
        let (cache, lake, _) = mounted("s3://acme-lake/prod/tandem");
        assert_eq!(lake, cache.path().join("s3/acme-lake/prod/tandem"));
        let (bucket, key) = of(&lake.join("state").join("bookmarks.json")).unwrap();
        assert_eq!(key.as_ref(), "prod/tandem/state/bookmarks.json");
        assert_eq!(
            bucket.url_of(&key),
            "s3://acme-lake/prod/tandem/state/bookmarks.json"
        );
        assert_eq!(
            bucket
                .dir_url(&lake.join("tables").join("deployments"))
                .unwrap()
                .as_str(),
            "s3://acme-lake/prod/tandem/tables/deployments/"
        );
        assert_eq!(url_of_lake(&lake), "s3://acme-lake/prod/tandem");
        assert!(
            of(cache.path()).is_none(),
            "the cache root itself is not in the lake"
        );
        assert!(
            is_url("S3://x/y") && is_url("abfss://c@a.dfs.core.windows.net/p") && !is_url("/var/lib/lake")
        );
        assert!(!is_url("https://example.com/lake"));
    }

    #[test]
    fn a_state_file_written_back_under_the_lease_must_still_be_the_version_read() {
        let (_cache, lake, store) = mounted("s3://acme-lake/guarded");
        let path = lake.join("state").join("bookmarks.json");
        let key = Key::from("guarded/state/bookmarks.json");
        begin_guarded();
        // Absent when read: created only if still absent.
        pull(&path).unwrap();
        write_local(&path, b"{\"a\": 1}").unwrap();
        push(&path).unwrap();
        // Read again and written twice in one read-modify-write: each write follows the last.
        pull(&path).unwrap();
        write_local(&path, b"{\"a\": 2}").unwrap();
        push(&path).unwrap();
        write_local(&path, b"{\"a\": 3}").unwrap();
        push(&path).unwrap();
        // Another writer updates it meanwhile: the write back fails, and theirs stays.
        block_on(async { store.put(&key, PutPayload::from_static(b"{\"b\": 9}")).await }).unwrap();
        write_local(&path, b"{\"a\": 4}").unwrap();
        let err = push(&path).unwrap_err().to_string();
        assert!(
            err.contains("changed by another writer")
                && err.contains("s3://acme-lake/guarded/state/bookmarks.json"),
            "{err}"
        );
        end_guarded();
        let (bytes, _) = of(&path).unwrap().0.get(&key).unwrap().unwrap();
        assert_eq!(bytes.as_ref(), b"{\"b\": 9}");
        // Outside a read-modify-write (the last run's health), a write is unconditional.
        write_local(&path, b"{\"c\": 1}").unwrap();
        push(&path).unwrap();
        pull(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"c\": 1}");
        // Gone from the bucket: gone from the cache when next read.
        remove(&path).unwrap();
        write_local(&path, b"stale").unwrap();
        pull(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn immutable_files_are_downloaded_once_and_the_probe_passes_on_a_store_with_conditional_writes() {
        let (_cache, lake, store) = mounted("s3://acme-lake/files");
        let key = Key::from("files/tables/t/part-1.parquet");
        block_on(async { store.put(&key, PutPayload::from_static(b"one")).await }).unwrap();
        let path = lake.join("tables/t/part-1.parquet");
        fetch(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        // Cached: not downloaded again (a data file never changes under its name).
        block_on(async { store.put(&key, PutPayload::from_static(b"two")).await }).unwrap();
        fetch(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        // A missing object leaves the path missing for the caller to name.
        let missing = lake.join("tables/t/part-2.parquet");
        fetch(&missing).unwrap();
        assert!(!missing.exists());
        assert_eq!(probe(&lake).unwrap(), "s3://acme-lake/files/");
        let left = block_on(async { store.list(None).try_collect::<Vec<_>>().await }).unwrap();
        assert_eq!(left.len(), 1, "the probe removed its object");
    }
}
