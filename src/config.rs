//! The TOML config file: sources (`[[source]] kind = "…"`, a serde-tagged enum), the service
//! mapping, the store location and report settings.
//!
//! Errors name the file and the config key at fault; secrets are never in the file, only the names
//! of the environment variables that hold them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tandem_connectors::model::Severity;
use tandem_connectors::{RetryPolicy, SourceConfig};

/// What is wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has a value tandem cannot use.
    #[error("config {path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `source[1].kind`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[organisation]`.
    #[serde(default)]
    pub organisation: Organisation,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[report]`.
    #[serde(default)]
    pub report: ReportConfig,
    /// `[export]`.
    #[serde(default)]
    pub export: ExportConfig,
    /// `[http]`.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[[source]]` entries.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// `[[service]]` entries: the mapping of repos and incident services to services and teams.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// `[[kpi]]` entries: the shared KPIs, with targets and owners.
    #[serde(default, rename = "kpi")]
    pub kpis: Vec<crate::metric::kpi::KpiSpec>,
    /// Directory of the config file: relative paths in it are relative to this.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[organisation]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Name shown in reports.
    #[serde(default = "default_org_name")]
    pub name: String,
}

impl Default for Organisation {
    fn default() -> Self {
        Self {
            name: default_org_name(),
        }
    }
}

fn default_org_name() -> String {
    "Our organisation".into()
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the lake is (its Delta tables, bookmarks, raw pages and metric table): a directory,
    /// or object storage: `s3://bucket/prefix` (AWS S3 and S3-compatible stores), `gs://…`,
    /// `az://container/prefix` (or `abfss://…`), with credentials from the cloud's environment.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// `[store.s3]`: how to reach an S3-compatible store (endpoint, region, path-style).
    #[serde(default)]
    pub s3: crate::store::bucket::S3Options,
    /// For a lake in object storage: the local directory its data files are cached in (default
    /// `$XDG_CACHE_HOME/tandem`, else `~/.cache/tandem`). Data files never change under their
    /// name, so a cache is never stale; deleting it only costs downloads.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// For a lake in object storage: seconds a writer's lease runs unless renewed (renewed every
    /// third of it). A writer killed with `kill -9` blocks the next one that long at most.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Days removed data files and old log entries are kept: how far back `--as-of` reaches.
    #[serde(default = "default_retention_days")]
    pub retention_days: i64,
    /// Days archived raw pages are kept.
    #[serde(default = "default_retention_days")]
    pub raw_retention_days: i64,
    /// Seconds a stream keeps reading after a commit before it commits its rows and bookmark
    /// again (at the next checkpoint; always at its end). 0 commits at every checkpoint.
    #[serde(default = "default_commit_interval_secs")]
    pub commit_interval_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            s3: crate::store::bucket::S3Options::default(),
            cache_dir: None,
            lease_secs: default_lease_secs(),
            retention_days: default_retention_days(),
            raw_retention_days: default_retention_days(),
            commit_interval_secs: default_commit_interval_secs(),
        }
    }
}

impl StoreConfig {
    /// The retention settings as the store's maintenance takes them.
    pub fn retention(&self) -> crate::store::maintain::Retention {
        crate::store::maintain::Retention {
            days: self.retention_days,
            raw_days: self.raw_retention_days,
        }
    }
}

/// Each commit costs the Delta log a version and every touched partition a file: a first sync
/// that commits every page of a fast source fills the lake with both. Five seconds of reading is
/// what a stopped sync reads again at most.
fn default_commit_interval_secs() -> u64 {
    5
}

fn default_lease_secs() -> u64 {
    60
}

fn default_retention_days() -> i64 {
    crate::store::RETENTION_DAYS
}

fn default_store_path() -> PathBuf {
    PathBuf::from("lake")
}

/// `[http]`: bounds on what a sync fetches from any source, so a server that misbehaves (a next
/// link that never ends, a huge answer) stops one stream instead of running the sync away.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Most pages one stream may fetch in one run.
    #[serde(default = "default_max_pages_per_stream")]
    pub max_pages_per_stream: u64,
    /// Largest response body tandem reads, in megabytes.
    #[serde(default = "default_max_response_mb")]
    pub max_response_mb: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_pages_per_stream: default_max_pages_per_stream(),
            max_response_mb: default_max_response_mb(),
        }
    }
}

impl HttpConfig {
    /// `policy` with these bounds: the one place the `[http]` settings reach the HTTP client.
    pub fn apply(&self, policy: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_pages_per_stream: self.max_pages_per_stream,
            max_response_bytes: self.max_response_mb.saturating_mul(1024 * 1024),
            ..policy
        }
    }
}

fn default_max_pages_per_stream() -> u64 {
    tandem_connectors::http::DEFAULT_MAX_PAGES_PER_STREAM
}

fn default_max_response_mb() -> u64 {
    tandem_connectors::http::DEFAULT_MAX_RESPONSE_MB
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// An incident is attributed to a deployment of its service that finished this many hours
    /// before it started, at most.
    #[serde(default = "default_window_hours")]
    pub attribution_window_hours: i64,
    /// Severities whose incidents count as downtime.
    #[serde(default = "default_outage")]
    pub outage_severities: Vec<Severity>,
    /// Sources whose incidents count in the metrics: the systems of record for incidents, when
    /// the same incident is also mirrored as a Jira or ServiceNow ticket. All sources when empty.
    #[serde(default)]
    pub incident_sources: Vec<String>,
    /// Sources whose incidents' cause references (ServiceNow `caused_by`, a Jira link, a
    /// `caused-by:` label) are read, for their own incidents and for the counted incidents they
    /// mirror. All sources when empty.
    #[serde(default)]
    pub cause_sources: Vec<String>,
    /// How an incident of a source outside `incident_sources` is recognised as a mirror of a
    /// counted one, rules tried in order: `correlation` (the vendor's correlation field),
    /// `number` (same service and incident number), `start` (same service, starts within
    /// `mirror_start_minutes`).
    #[serde(default = "default_mirror_match")]
    pub mirror_match: Vec<crate::pipeline::MirrorMatch>,
    /// For `mirror_match = ["start"]`: minutes between the two starts, at most.
    #[serde(default = "default_mirror_start_minutes")]
    pub mirror_start_minutes: i64,
    /// Availability objective of services that set no `slo` of their own.
    #[serde(default = "default_slo")]
    pub default_slo: f64,
    /// Ticket resolution targets in hours by priority name (case-insensitive).
    #[serde(default = "default_sla_hours")]
    pub sla_hours: std::collections::BTreeMap<String, f64>,
    /// Minutes outside a change request's planned window in which a deployment still counts as
    /// covered by it.
    #[serde(default = "default_tolerance")]
    pub change_window_tolerance_minutes: i64,
    /// Change labels that mark a hotfix, for the rework rate.
    #[serde(default = "default_hotfix_labels")]
    pub hotfix_labels: Vec<String>,
    /// `chain` (explicit reference, then same-service window) or `devlake` (DevLake's rule, to
    /// compare with a DevLake installation).
    #[serde(default)]
    pub attribution: crate::pipeline::Attribution,
}

fn default_mirror_match() -> Vec<crate::pipeline::MirrorMatch> {
    vec![crate::pipeline::MirrorMatch::Correlation]
}

fn default_mirror_start_minutes() -> i64 {
    15
}

fn default_hotfix_labels() -> Vec<String> {
    vec!["hotfix".into()]
}

fn default_slo() -> f64 {
    0.999
}

fn default_tolerance() -> i64 {
    60
}

/// P1 4 h, P2 8 h, P3 3 days, P4 5 days, under the names Jira, ServiceNow and PagerDuty use.
fn default_sla_hours() -> std::collections::BTreeMap<String, f64> {
    [
        (["P1", "Highest", "1", "Critical"], 4.0),
        (["P2", "High", "2", "Major"], 8.0),
        (["P3", "Medium", "3", "Moderate"], 72.0),
        (["P4", "Low", "4", "Minor"], 120.0),
        (["P5", "Lowest", "5", "Planning"], 120.0),
    ]
    .into_iter()
    .flat_map(|(names, hours)| names.into_iter().map(move |n| (n.to_owned(), hours)))
    .collect()
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            attribution_window_hours: default_window_hours(),
            outage_severities: default_outage(),
            incident_sources: Vec::new(),
            cause_sources: Vec::new(),
            mirror_match: default_mirror_match(),
            mirror_start_minutes: default_mirror_start_minutes(),
            default_slo: default_slo(),
            sla_hours: default_sla_hours(),
            change_window_tolerance_minutes: default_tolerance(),
            hotfix_labels: default_hotfix_labels(),
            attribution: Default::default(),
        }
    }
}

fn default_window_hours() -> i64 {
    24
}
fn default_outage() -> Vec<Severity> {
    vec![Severity::Sev1, Severity::Sev2]
}

/// `[report]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Directory the report is written to.
    #[serde(default = "default_report_out")]
    pub out: PathBuf,
    /// ISO weeks covered.
    #[serde(default = "default_weeks")]
    pub weeks: u32,
    /// Monday after the last week covered; the current week's Monday (complete weeks only) when
    /// absent.
    #[serde(default)]
    pub until: Option<NaiveDate>,
    /// IANA time zone in which days, weeks, months and quarters are counted (`Europe/Berlin`).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            out: default_report_out(),
            weeks: default_weeks(),
            until: None,
            time_zone: default_time_zone(),
        }
    }
}

fn default_report_out() -> PathBuf {
    PathBuf::from("report")
}
fn default_weeks() -> u32 {
    12
}

/// `[export]`: how `tandem export` writes files for the data team.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// The environment variable holding the key of `--pseudonymise`'s keyed hash (never the key).
    #[serde(default = "default_pseudonymise_key_env")]
    pub pseudonymise_key_env: String,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            pseudonymise_key_env: default_pseudonymise_key_env(),
        }
    }
}

fn default_pseudonymise_key_env() -> String {
    "TANDEM_PSEUDONYM_KEY".into()
}

/// `[[service]]`: one service, its team, and the source objects that belong to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name as reports show it.
    pub name: String,
    /// Owning team.
    #[serde(default)]
    pub team: Option<String>,
    /// Repositories (`owner/name`) whose deployments and changes are this service's.
    #[serde(default)]
    pub repos: Vec<String>,
    /// PagerDuty service ids whose incidents are this service's.
    #[serde(default)]
    pub pagerduty: Vec<String>,
    /// Jira components whose issues (tickets, incidents, change issues) are this service's.
    #[serde(default)]
    pub jira_components: Vec<String>,
    /// ServiceNow configuration items (`cmdb_ci` sys_id or name) whose incidents and change
    /// requests are this service's.
    #[serde(default)]
    pub servicenow_cis: Vec<String>,
    /// Availability objective (0..1, e.g. 0.999); `metrics.default_slo` when absent.
    #[serde(default)]
    pub slo: Option<f64>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::parse(&text, path, base_dir)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let raw: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: one_line(&e.to_string()),
        })?;
        check_source_kinds(&raw, path)?;
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: one_line(&e.to_string()),
        })?;
        config.base_dir = base_dir;
        let base = config.base_dir.clone();
        for source in &mut config.sources {
            if let SourceConfig::File(f) = source {
                f.resolve_paths(&base);
            }
        }
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        for (key, value) in [
            ("http.max_pages_per_stream", self.http.max_pages_per_stream),
            ("http.max_response_mb", self.http.max_response_mb),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be at least 1".into()));
            }
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if s.name().trim().is_empty() {
                return Err(invalid(format!("source[{i}].name"), "must not be empty".into()));
            }
            if !names.insert(s.name()) {
                return Err(invalid(
                    format!("source[{i}].name"),
                    format!("source name {:?} is used twice; names must be unique", s.name()),
                ));
            }
        }
        let mut services = BTreeSet::new();
        let mut repos = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !services.insert(s.name.as_str()) {
                return Err(invalid(
                    format!("service[{i}].name"),
                    format!("service {:?} is declared twice", s.name),
                ));
            }
            for r in &s.repos {
                if !repos.insert(r.as_str()) {
                    return Err(invalid(
                        format!("service[{i}].repos"),
                        format!("repo {r:?} is mapped to two services"),
                    ));
                }
            }
        }
        for (i, k) in self.kpis.iter().enumerate() {
            if crate::metric::MetricId::parse(&k.metric).is_none() {
                let known: Vec<&str> = crate::metric::MetricId::ALL.iter().map(|m| m.as_str()).collect();
                return Err(invalid(
                    format!("kpi[{i}].metric"),
                    format!("unknown metric {:?}; known: {}", k.metric, known.join(", ")),
                ));
            }
            k.scope_key().map_err(|m| invalid(format!("kpi[{i}].scope"), m))?;
        }
        if self.report.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "report.time_zone".into(),
                format!(
                    "{:?} is not an IANA time zone name (e.g. \"Europe/Berlin\", \"UTC\")",
                    self.report.time_zone
                ),
            ));
        }
        if self.report.weeks == 0 || self.report.weeks > 520 {
            return Err(invalid("report.weeks".into(), "must be between 1 and 520".into()));
        }
        let named = [
            ("incident_sources", &self.metrics.incident_sources),
            ("cause_sources", &self.metrics.cause_sources),
        ];
        for (key, sources) in named {
            for (i, s) in sources.iter().enumerate() {
                if !names.contains(s.as_str()) {
                    return Err(invalid(
                        format!("metrics.{key}[{i}]"),
                        format!("no [[source]] is named {s:?}"),
                    ));
                }
            }
        }
        if self.metrics.mirror_start_minutes < 0 {
            return Err(invalid(
                "metrics.mirror_start_minutes".into(),
                "must not be negative".into(),
            ));
        }
        let slos = self
            .services
            .iter()
            .filter_map(|s| s.slo.map(|v| (format!("service.{}.slo", s.name), v)));
        for (key, v) in slos.chain(std::iter::once((
            "metrics.default_slo".to_owned(),
            self.metrics.default_slo,
        ))) {
            if !(v > 0.0 && v < 1.0) {
                return Err(invalid(
                    key,
                    format!("{v} is not an objective between 0 and 1, e.g. 0.999"),
                ));
            }
        }
        if self.metrics.attribution_window_hours <= 0 {
            return Err(invalid(
                "metrics.attribution_window_hours".into(),
                "must be a positive number of hours".into(),
            ));
        }
        Ok(())
    }

    /// The report time zone (validated on load).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.report.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC)
    }

    /// The lake's local directory: `[store] path` resolved, or for a lake in object storage the
    /// cache directory it is mounted at (see [`crate::store::bucket`]).
    pub fn lake(&self) -> Result<PathBuf, crate::store::bucket::BucketError> {
        use crate::store::bucket;
        let text = self.store.path.to_string_lossy();
        if bucket::is_url(&text) {
            let lease = std::time::Duration::from_secs(self.store.lease_secs);
            return bucket::mount(&text, &self.store.s3, &self.cache_root(), lease);
        }
        if let Some(local) = text.strip_prefix("file://") {
            return Ok(self.resolve(Path::new(local)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(bucket::BucketError {
                action: "open the lake at",
                url: text.to_string(),
                message: format!(
                    "`{scheme}://` is not a place tandem keeps a lake: use a directory, file://, s3://, gs://, az:// or abfss://"
                ),
            });
        }
        Ok(self.resolve(&self.store.path))
    }

    /// Where files of object storage are cached on this host: `[store] cache_dir`, else
    /// `$XDG_CACHE_HOME/tandem`, else `~/.cache/tandem`.
    pub fn cache_root(&self) -> PathBuf {
        match &self.store.cache_dir {
            Some(dir) => self.resolve(dir),
            None => std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("tandem"),
        }
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The service and team a repository maps to.
    pub fn service_of_repo(&self, repo: &str) -> Option<&ServiceConfig> {
        self.services
            .iter()
            .find(|s| s.repos.iter().any(|r| r.eq_ignore_ascii_case(repo)))
    }

    /// The service and team a PagerDuty service id maps to.
    pub fn service_of_pagerduty(&self, id: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.pagerduty.iter().any(|p| p == id))
    }

    /// The service a source's own reference maps to, by source kind: repos for GitHub, GitLab and
    /// file imports of repo records, PagerDuty service ids, Jira components, ServiceNow CIs. Names
    /// compare case-insensitively; ids exactly.
    pub fn service_of(&self, kind: &str, reference: &str) -> Option<&ServiceConfig> {
        match kind {
            "pagerduty" => self.service_of_pagerduty(reference),
            "jira" => self.services.iter().find(|s| {
                s.jira_components
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(reference))
            }),
            "servicenow" => self.services.iter().find(|s| {
                s.servicenow_cis
                    .iter()
                    .any(|c| c == reference || c.eq_ignore_ascii_case(reference))
            }),
            "github" | "gitlab" => self.service_of_repo(reference),
            // A file import names services directly or by any of the references above.
            _ => self
                .services
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(reference))
                .or_else(|| self.service_of_repo(reference))
                .or_else(|| self.service_of_pagerduty(reference))
                .or_else(|| self.service_of("jira", reference))
                .or_else(|| self.service_of("servicenow", reference)),
        }
    }
}

/// Gives an unknown `kind` a message that names the key and lists the known kinds, which serde's
/// generic "unknown variant" message for a tagged enum does not locate.
fn check_source_kinds(raw: &toml::Table, path: &Path) -> Result<(), ConfigError> {
    let Some(sources) = raw.get("source") else {
        return Ok(());
    };
    let Some(sources) = sources.as_array() else {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            key: "source".into(),
            message: "must be an array of tables: write each as [[source]]".into(),
        });
    };
    for (i, s) in sources.iter().enumerate() {
        let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        match s.get("kind").and_then(|k| k.as_str()) {
            Some(kind) if tandem_connectors::KINDS.contains(&kind) => {}
            Some(kind) => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: format!("source[{i}].kind"),
                    message: format!(
                        "unknown source kind {kind:?} (source {name:?}); known kinds: {}",
                        tandem_connectors::KINDS.join(", ")
                    ),
                });
            }
            None => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: format!("source[{i}].kind"),
                    message: format!(
                        "missing (source {name:?}); known kinds: {}",
                        tandem_connectors::KINDS.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("tandem.toml"), PathBuf::from("/etc/tandem"))
    }

    #[test]
    fn unknown_kind_names_the_key_and_the_known_kinds() {
        let err = parse("[[source]]\nname = \"x\"\nkind = \"jora\"\ntoken_env = \"T\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config tandem.toml: `source[0].kind`: unknown source kind \"jora\" (source \"x\"); known kinds: github, gitlab, jira, pagerduty, servicenow, file"
        );
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn the_lake_is_a_directory_a_file_url_or_object_storage_and_nothing_else() {
        let at = |path: &str| parse(&format!("[store]\npath = {path:?}\n")).unwrap().lake();
        assert_eq!(at("lake").unwrap(), PathBuf::from("/etc/tandem/lake"));
        assert_eq!(at("file:///srv/lake").unwrap(), PathBuf::from("/srv/lake"));
        let err = at("https://example.com/lake").unwrap_err().to_string();
        assert!(
            err.contains("`https://` is not a place tandem keeps a lake") && err.contains("s3://"),
            "{err}"
        );
        let c = parse(
            "[store]\npath = \"s3://acme-lake/prod\"\ncache_dir = \"cache\"\nlease_secs = 30\n[store.s3]\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n",
        )
        .unwrap();
        assert_eq!(c.store.lease_secs, 30);
        assert_eq!(c.store.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.cache_root(), PathBuf::from("/etc/tandem/cache"));
        // Mounting needs no request: the lake is the cache directory named after the URL.
        let cache = tempfile::tempdir().unwrap();
        let mut c = c;
        c.store.cache_dir = Some(cache.path().to_owned());
        assert_eq!(c.lake().unwrap(), cache.path().join("s3/acme-lake/prod"));
        let err = parse("[store.s3]\nendpont = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("endpont"), "{err}");
    }

    #[test]
    fn a_full_config_parses_with_defaults() {
        let c = parse(
            r#"
[organisation]
name = "Acme"
[[source]]
name = "gh"
kind = "github"
token_env = "GITHUB_TOKEN"
repos = ["acme/checkout"]
[[source]]
name = "pd"
kind = "pagerduty"
token_env = "PAGERDUTY_TOKEN"
[[service]]
name = "checkout"
team = "payments"
repos = ["acme/checkout"]
pagerduty = ["PCHK"]
"#,
        )
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.resolve(&c.store.path), PathBuf::from("/etc/tandem/lake"));
        assert_eq!(
            c.service_of_repo("Acme/Checkout").map(|s| s.name.as_str()),
            Some("checkout")
        );
        assert_eq!(
            c.service_of_pagerduty("PCHK").and_then(|s| s.team.as_deref()),
            Some("payments")
        );
        assert_eq!(c.metrics.attribution_window_hours, 24);
        assert_eq!(c.report.weeks, 12);
    }

    #[test]
    fn source_mappings_and_lookbacks_parse_and_older_keys_still_read() {
        use tandem_connectors::SourceConfig;
        let c = parse(
            r#"
[[source]]
name = "pd"
kind = "pagerduty"
token_env = "PAGERDUTY_TOKEN"
severities = { "SEV-1" = "sev1", "low" = "sev4" }
[[source]]
name = "jira"
kind = "jira"
base_url = "https://acme.atlassian.net"
token_env = "JIRA_TOKEN"
projects = ["OPS"]
issue_types = { "10004" = "bug", "缺陷" = "bug" }
lookback_days = 730
[[source]]
name = "jira-old"
kind = "jira"
base_url = "https://acme.atlassian.net"
token_env = "JIRA_TOKEN"
projects = ["ENG"]
categories = { "Feature" = "story" }
[[source]]
name = "snow"
kind = "servicenow"
base_url = "https://acme.service-now.com"
token_env = "SERVICENOW_TOKEN"
approved_states = ["approved", "cab_approved"]
priorities = { "1" = "P1", "2" = "P2" }
"#,
        )
        .unwrap();
        let [
            SourceConfig::PagerDuty(pd),
            SourceConfig::Jira(jira),
            SourceConfig::Jira(old),
            SourceConfig::ServiceNow(snow),
        ] = c.sources.as_slice()
        else {
            unreachable!("{:?}", c.sources)
        };
        assert_eq!(pd.severities.get("SEV-1").map(String::as_str), Some("sev1"));
        assert_eq!(pd.lookback_days, 365);
        assert_eq!(jira.issue_types.get("缺陷").map(String::as_str), Some("bug"));
        assert_eq!(jira.lookback_days, 730);
        assert_eq!(old.issue_types.get("Feature").map(String::as_str), Some("story"));
        assert_eq!(old.lookback_days, 365);
        assert_eq!(snow.approved_states, ["approved", "cab_approved"]);
        assert_eq!(snow.priorities.get("1").map(String::as_str), Some("P1"));
        assert_eq!(snow.lookback_days, 365);
    }

    #[test]
    fn duplicate_source_names_are_rejected() {
        let err = parse(
            "[[source]]\nname = \"a\"\nkind = \"pagerduty\"\ntoken_env = \"T\"\n[[source]]\nname = \"a\"\nkind = \"pagerduty\"\ntoken_env = \"T\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`source[1].name`"), "{err}");
    }

    #[test]
    fn cause_sources_and_mirror_rules_default_to_every_source_and_the_correlation_field() {
        let sources = "[[source]]\nname = \"pd\"\nkind = \"pagerduty\"\ntoken_env = \"T\"\n\
                       [[source]]\nname = \"sn\"\nkind = \"servicenow\"\nbase_url = \"https://x.service-now.com\"\ntoken_env = \"T\"\n";
        let c = parse(&format!("[metrics]\nincident_sources = [\"pd\"]\n{sources}")).unwrap();
        assert!(c.metrics.cause_sources.is_empty());
        assert_eq!(
            c.metrics.mirror_match,
            vec![crate::pipeline::MirrorMatch::Correlation]
        );
        assert_eq!(c.metrics.mirror_start_minutes, 15);
        let c = parse(&format!(
            "[metrics]\ncause_sources = [\"sn\"]\nmirror_match = [\"number\", \"start\"]\nmirror_start_minutes = 5\n{sources}"
        ))
        .unwrap();
        assert_eq!(c.metrics.cause_sources, vec!["sn".to_owned()]);
        assert_eq!(
            c.metrics.mirror_match,
            vec![
                crate::pipeline::MirrorMatch::Number,
                crate::pipeline::MirrorMatch::Start
            ]
        );
        let err = parse(&format!("[metrics]\ncause_sources = [\"jira\"]\n{sources}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`metrics.cause_sources[0]`: no [[source]] is named \"jira\""),
            "{err}"
        );
        let err = parse(&format!("[metrics]\nmirror_match = [\"title\"]\n{sources}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("title"), "{err}");
    }

    #[test]
    fn a_misspelt_key_is_an_error_with_its_location() {
        let err = parse("[report]\nweeeks = 3\n").unwrap_err().to_string();
        assert!(err.contains("weeeks"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn http_bounds_default_when_absent_and_reach_the_http_client() {
        let old = parse("[report]\nweeks = 3\n").unwrap();
        let policy = old.http.apply(RetryPolicy::default());
        assert_eq!(policy.max_pages_per_stream, 1_000_000);
        assert_eq!(policy.max_response_bytes, 64 * 1024 * 1024);
        let set = parse("[http]\nmax_pages_per_stream = 50\nmax_response_mb = 2\n").unwrap();
        let policy = set.http.apply(RetryPolicy {
            max_attempts: 9,
            ..RetryPolicy::default()
        });
        assert_eq!(
            (policy.max_pages_per_stream, policy.max_response_bytes),
            (50, 2 * 1024 * 1024)
        );
        assert_eq!(policy.max_attempts, 9, "only the bounds change");
        let err = parse("[http]\nmax_response_mb = 0\n").unwrap_err().to_string();
        assert!(
            err.contains("http.max_response_mb") && err.contains("at least 1"),
            "{err}"
        );
        assert!(
            parse("[http]\nmax_pages = 5\n")
                .unwrap_err()
                .to_string()
                .contains("max_pages")
        );
    }
}
