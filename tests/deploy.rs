//! The examples in `deploy/` hold what deploy/README.md promises: every YAML document parses;
//! the Kubernetes kinds are there (CronJob, ConfigMap, Secret, ServiceAccount) and no pod
//! mounts a PersistentVolumeClaim; each CronJob forbids concurrent runs, has a five-field
//! schedule, requests and limits, retries long enough to outlast a killed pod's lease, and runs
//! `tandem` with a command line the real binary accepts; the ConfigMap's tandem.toml loads with
//! the real config loader, its lake and reports are in object storage and its cache on an
//! emptyDir every pod mounts; every pod has the lake's credentials (the ServiceAccount with an
//! IAM role, or the Secret's AWS keys) and every environment variable the config names; the
//! systemd units and the crontab are complete and call tandem as it parses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use tandem::config::Config;
use tandem::store::bucket::is_url;

use crate::common::{output, tandem_command};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under `dir`, recursively, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Every YAML document under deploy/, with the file it came from.
fn yaml_documents() -> Vec<(PathBuf, Value)> {
    let mut documents = Vec::new();
    for path in files(&deploy_dir()) {
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
            if !value.is_null() {
                documents.push((path.clone(), value));
            }
        }
    }
    documents
}

fn of_kind<'a>(documents: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {value}"))
}

/// Checks one field of a cron schedule: `*`, a number, a range, a list and `/step`, all in
/// `min..=max`.
fn check_cron_field(field: &str, min: u32, max: u32, schedule: &str) {
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step {
            let step: u32 = step
                .parse()
                .unwrap_or_else(|_| panic!("{schedule:?}: bad step in {field:?}"));
            assert!(step >= 1, "{schedule:?}: step 0 in {field:?}");
        }
        if range == "*" {
            continue;
        }
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        for n in [low, high] {
            let n: u32 = n
                .parse()
                .unwrap_or_else(|_| panic!("{schedule:?}: {field:?} is not a cron field"));
            assert!((min..=max).contains(&n), "{schedule:?}: {n} out of {min}..={max}");
        }
    }
}

/// Checks a five-field cron schedule (minute, hour, day of month, month, day of week).
fn check_cron(schedule: &str) {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{schedule:?}: not 5 cron fields");
    for (field, (min, max)) in fields.iter().zip([(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]) {
        check_cron_field(field, min, max, schedule);
    }
}

/// A Kubernetes quantity in base units (bytes, or cores).
fn quantity(value: &Value, what: &str) -> f64 {
    let text = match value {
        Value::Number(n) => return n.as_f64().unwrap(),
        other => str_of(other, what),
    };
    let suffixes = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("m", 1e-3),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{what}: {text:?}"))
                * factor;
        }
    }
    text.parse().unwrap_or_else(|_| panic!("{what}: {text:?}"))
}

/// Every environment variable the config names (`token_env`, `password_env`,
/// `pseudonymise_key_env`, …), as the loader read it.
fn config_env_vars(config: &Config) -> BTreeSet<String> {
    fn walk(value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key.ends_with("_env") {
                        if let Some(name) = value.as_str() {
                            found.insert(name.to_owned());
                        }
                    }
                    walk(value, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    walk(&serde_json::to_value(config).unwrap(), &mut found);
    found
}

/// `tandem <args> --help` through the real binary: a subcommand or flag it does not know exits 2.
async fn check_command_line(args: &[String], dir: &Path) {
    assert!(!args.is_empty(), "tandem without a subcommand");
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let name = format!("help-{}", args.join("-").replace(['/', ' '], "_"));
    let (code, stdout, stderr) =
        output(tandem_command(&dir.join("unused.toml"), &with_help), dir, &name).await;
    assert_eq!(
        code,
        0,
        "`tandem {}` is not a command line tandem accepts: {stderr}",
        args.join(" ")
    );
    assert!(stdout.contains("Usage:"), "{stdout}");
}

/// The arguments after `tandem` in a shell command line (cron's, systemd's ExecStart), one list
/// per call, up to a redirection, `&&`, `||`, `;` or `|`.
fn tandem_calls(command: &str) -> Vec<Vec<String>> {
    let tokens: Vec<&str> = command.split_whitespace().collect();
    let mut calls = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if *token == "tandem" || token.ends_with("bin/tandem") {
            let args: Vec<String> = tokens[i + 1..]
                .iter()
                .take_while(|t| {
                    !(t.starts_with('>') || t.starts_with("2>") || ["&&", "||", ";", "|"].contains(t))
                })
                .map(|t| (*t).to_owned())
                .collect();
            calls.push(args);
        }
    }
    calls
}

/// The sections of a systemd unit file and their `key=value` lines (repeated keys kept).
fn unit_sections(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("a line outside a section: {line}"));
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        sections
            .entry(section)
            .or_default()
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    sections
}

fn unit_value<'a>(
    sections: &'a BTreeMap<String, Vec<(String, String)>>,
    section: &str,
    key: &str,
) -> Vec<&'a str> {
    sections
        .get(section)
        .map(|lines| {
            lines
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The ConfigMap's tandem.toml, loaded by the real loader as a pod would read it from `path`.
fn configmap_config(config_maps: &[&Value], path: &str) -> (String, Config) {
    let (dir, file) = path.rsplit_once('/').unwrap();
    let text = config_maps
        .iter()
        .find_map(|c| c["data"][file].as_str())
        .unwrap_or_else(|| panic!("no ConfigMap holds {file}"));
    let loaded = tempfile::tempdir().unwrap();
    let written = loaded.path().join(file);
    std::fs::write(&written, text).unwrap();
    let config = Config::load(&written).unwrap_or_else(|e| panic!("the ConfigMap's {file}: {e}"));
    assert_eq!(config.base_dir, loaded.path());
    (dir.to_owned(), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_manifests_hold_what_the_deploy_readme_promises() {
    let documents = yaml_documents();
    let scratch = tempfile::tempdir().unwrap();
    for (path, d) in &documents {
        for key in ["apiVersion", "kind"] {
            assert!(d[key].is_string(), "{}: a document without {key}", path.display());
        }
    }
    for kind in ["CronJob", "ConfigMap", "Secret", "ServiceAccount"] {
        assert!(!of_kind(&documents, kind).is_empty(), "no {kind} under deploy/");
    }

    // `kubectl apply -k` applies every manifest of the folder.
    let kustomizations = of_kind(&documents, "Kustomization");
    assert_eq!(kustomizations.len(), 1);
    let listed: BTreeSet<&str> = kustomizations[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "resources"))
        .collect();
    let manifests: BTreeSet<String> = documents
        .iter()
        .filter(|(_, d)| d["kind"] != "Kustomization")
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, manifests.iter().map(String::as_str).collect());

    let secrets = of_kind(&documents, "Secret");
    let mut secret_keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for secret in &secrets {
        let name = str_of(&secret["metadata"]["name"], "Secret name");
        for (key, value) in secret["stringData"].as_object().unwrap() {
            // Placeholders only: the real values come from the cluster's secret manager.
            assert!(
                str_of(value, key).contains("replace"),
                "Secret {name}: {key} is not a placeholder"
            );
            secret_keys.entry(name).or_default().insert(key);
        }
    }
    // The ServiceAccounts with an IAM role (EKS IRSA): the pods' credentials for the lake.
    let with_role: BTreeSet<&str> = of_kind(&documents, "ServiceAccount")
        .iter()
        .filter(|a| {
            a["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
                .as_str()
                .is_some_and(|arn| arn.starts_with("arn:aws:iam::") && arn.contains(":role/"))
        })
        .map(|a| str_of(&a["metadata"]["name"], "ServiceAccount name"))
        .collect();
    let config_maps = of_kind(&documents, "ConfigMap");

    let mut synced_sources = BTreeSet::new();
    let mut configured_sources = BTreeSet::new();
    let mut command_lines = BTreeSet::new();
    for cron_job in of_kind(&documents, "CronJob") {
        let name = str_of(&cron_job["metadata"]["name"], "CronJob name");
        let spec = &cron_job["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid", "{name}");
        check_cron(str_of(&spec["schedule"], name));
        let job = &spec["jobTemplate"]["spec"];
        let pod = &job["template"]["spec"];
        assert_eq!(
            pod["restartPolicy"], "Never",
            "{name}: a failed pod is retried by the Job"
        );
        let backoff_limit = job["backoffLimit"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: no backoffLimit"));
        let role = pod["serviceAccountName"]
            .as_str()
            .filter(|account| with_role.contains(account));

        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (str_of(&v["name"], "volume name"), v))
            .collect();
        // The lake is in the bucket: a pod keeps nothing on a disk of its own.
        for (volume, definition) in &volumes {
            assert!(
                definition.get("persistentVolumeClaim").is_none(),
                "{name}: volume {volume} is a claim"
            );
        }
        let mut containers: Vec<&Value> = Vec::new();
        for list in ["initContainers", "containers"] {
            containers.extend(pod[list].as_array().into_iter().flatten());
        }
        assert!(!containers.is_empty(), "{name}: no container");
        let container_names: BTreeSet<&str> = containers
            .iter()
            .map(|c| str_of(&c["name"], "container"))
            .collect();
        for rule in job["podFailurePolicy"]["rules"].as_array().into_iter().flatten() {
            let on = str_of(&rule["onExitCodes"]["containerName"], "containerName");
            assert!(
                container_names.contains(on),
                "{name}: podFailurePolicy names {on}"
            );
        }

        for container in containers {
            let what = format!("{name}/{}", str_of(&container["name"], "container name"));
            // Requests and limits of both CPU and memory, limits at least the requests.
            let resources = &container["resources"];
            for resource in ["cpu", "memory"] {
                let request = quantity(&resources["requests"][resource], &what);
                let limit = quantity(&resources["limits"][resource], &what);
                assert!(
                    request > 0.0 && limit >= request,
                    "{what}: {resource} {request} > {limit}"
                );
            }

            // `tandem <subcommand> …`, a command line the binary accepts.
            assert_eq!(container["command"], serde_json::json!(["tandem"]), "{what}");
            let args: Vec<String> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| str_of(a, &what).to_owned())
                .collect();
            if args[0] == "sync" {
                let source = args
                    .iter()
                    .position(|a| a == "--source")
                    .map(|i| args[i + 1].clone());
                synced_sources.insert(source.unwrap_or_else(|| panic!("{what}: a shard syncs one source")));
            }
            if args[0] == "metrics" {
                // The benchmark's peak (README "Benchmarks"): 1.3 GB on the 200-service lake.
                let request = quantity(&resources["requests"]["memory"], &what);
                assert!(
                    request >= 1.3e9,
                    "{what}: {request} bytes is below the benchmark's peak"
                );
            }
            command_lines.insert(args);

            // The environment: the config file, and every variable it names.
            let env: BTreeMap<&str, &str> = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (str_of(&e["name"], &what), e["value"].as_str().unwrap_or_default()))
                .collect();
            assert_eq!(env.get("TANDEM_LOG_FORMAT"), Some(&"json"), "{what}");
            let config_path = env
                .get("TANDEM_CONFIG")
                .unwrap_or_else(|| panic!("{what}: no TANDEM_CONFIG"));
            let (config_dir, config) = configmap_config(&config_maps, config_path);
            let mut provided: BTreeSet<&str> = env.keys().copied().collect();
            for from in container["envFrom"].as_array().into_iter().flatten() {
                let secret = str_of(&from["secretRef"]["name"], &what);
                let keys = secret_keys
                    .get(secret)
                    .unwrap_or_else(|| panic!("{what}: Secret {secret} is not in deploy/"));
                provided.extend(keys.iter().copied());
            }
            for var in config_env_vars(&config) {
                assert!(
                    provided.contains(var.as_str()),
                    "{what}: the config names {var}, the pod lacks it"
                );
            }
            configured_sources.extend(config.sources.iter().map(|s| s.name().to_owned()));

            // The lake and the reports in object storage; the lake's credentials from the pod's
            // role, else the Secret's keys.
            let store = config.store.path.to_string_lossy();
            assert!(
                is_url(&store),
                "{what}: the lake {store} is not in object storage"
            );
            let report = config.report.out.to_string_lossy();
            assert!(
                is_url(&report),
                "{what}: the reports {report} are not in object storage"
            );
            if store.starts_with("s3://") {
                assert!(
                    env.contains_key("AWS_REGION"),
                    "{what}: no AWS_REGION for the bucket"
                );
            }
            let keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
                .iter()
                .all(|key| provided.contains(key));
            assert!(
                role.is_some() || keys,
                "{what}: neither a ServiceAccount with an IAM role nor AWS keys from the Secret"
            );
            // A killed pod's lease blocks the next writer for lease_secs at most; the Job's
            // retries (10 s, doubling) must reach past it.
            assert!(config.store.lease_secs > 0, "{what}: lease_secs 0");
            let retried_for = 10 * ((1u64 << backoff_limit.min(16)) - 1);
            assert!(
                retried_for > config.store.lease_secs,
                "{what}: backoffLimit {backoff_limit} retries for {retried_for} s, within lease_secs {}",
                config.store.lease_secs
            );

            // The config from the ConfigMap; the cache on the pod's emptyDir.
            let mounts: Vec<(&str, &Value)> = container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let volume = volumes[str_of(&m["name"], "mount")];
                    (str_of(&m["mountPath"], "mountPath"), volume)
                })
                .collect();
            let config_volume = mounts
                .iter()
                .find(|(at, _)| *at == config_dir)
                .unwrap_or_else(|| panic!("{what}: nothing mounted at {config_dir}"));
            assert!(config_volume.1["configMap"]["name"].is_string(), "{what}");
            let cache = config
                .store
                .cache_dir
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no [store] cache_dir"));
            assert!(cache.is_absolute(), "{what}: {} is relative", cache.display());
            let on_empty_dir = mounts.iter().any(|(at, volume)| {
                cache.starts_with(at)
                    && volume["emptyDir"]["sizeLimit"].is_string()
                    && quantity(&volume["emptyDir"]["sizeLimit"], &what) > 0.0
            });
            assert!(
                on_empty_dir,
                "{what}: the cache {} is not on an emptyDir with a sizeLimit",
                cache.display()
            );
        }
    }
    // One shard per configured source.
    assert_eq!(synced_sources, configured_sources);
    for args in &command_lines {
        check_command_line(args, scratch.path()).await;
    }
}

/// Source names in the ConfigMap's config, for `%i` of the systemd template and the crontab.
fn example_sources() -> BTreeSet<String> {
    let documents = yaml_documents();
    let config_maps = of_kind(&documents, "ConfigMap");
    let (_, config) = configmap_config(&config_maps, "/etc/tandem/tandem.toml");
    config.sources.iter().map(|s| s.name().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_units_and_crontab_call_tandem_as_it_parses() {
    let scratch = tempfile::tempdir().unwrap();
    let sources = example_sources();
    let mut command_lines: BTreeSet<Vec<String>> = BTreeSet::new();

    let units: Vec<PathBuf> = files(&deploy_dir().join("systemd"));
    let stems = |ext: &str| -> BTreeSet<String> {
        units
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert!(!stems("service").is_empty());
    assert_eq!(stems("service"), stems("timer"), "each service has its timer");
    for path in &units {
        let what = path.display().to_string();
        let sections = unit_sections(&std::fs::read_to_string(path).unwrap());
        assert!(!unit_value(&sections, "Unit", "Description").is_empty(), "{what}");
        match path.extension().and_then(|e| e.to_str()) {
            Some("service") => {
                assert_eq!(unit_value(&sections, "Service", "Type"), ["oneshot"], "{what}");
                let environment = unit_value(&sections, "Service", "Environment");
                assert!(
                    environment.iter().any(|e| e.starts_with("TANDEM_CONFIG=")),
                    "{what}"
                );
                assert!(environment.contains(&"TANDEM_LOG_FORMAT=json"), "{what}");
                assert!(
                    !unit_value(&sections, "Service", "EnvironmentFile").is_empty(),
                    "{what}"
                );
                let exec = unit_value(&sections, "Service", "ExecStart");
                assert_eq!(exec.len(), 1, "{what}");
                let calls = tandem_calls(exec[0]);
                assert_eq!(calls.len(), 1, "{what}: {}", exec[0]);
                let template = path.file_stem().unwrap().to_string_lossy().ends_with('@');
                for source in &sources {
                    let args: Vec<String> = calls[0].iter().map(|a| a.replace("%i", source)).collect();
                    command_lines.insert(args);
                    if !template {
                        break;
                    }
                }
            }
            Some("timer") => {
                let calendar = unit_value(&sections, "Timer", "OnCalendar");
                assert_eq!(calendar.len(), 1, "{what}");
                assert_eq!(
                    unit_value(&sections, "Install", "WantedBy"),
                    ["timers.target"],
                    "{what}"
                );
                // systemd's own parser, where there is one.
                if let Ok(checked) = std::process::Command::new("systemd-analyze")
                    .args(["calendar", calendar[0]])
                    .output()
                {
                    assert!(
                        checked.status.success(),
                        "{what}: OnCalendar={}: {}",
                        calendar[0],
                        String::from_utf8_lossy(&checked.stderr)
                    );
                }
            }
            _ => panic!("{what}: neither a service nor a timer"),
        }
    }

    let crontab = std::fs::read_to_string(deploy_dir().join("crontab")).unwrap();
    let mut jobs = 0;
    let mut variables = BTreeMap::new();
    for line in crontab.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap();
        if let Some((name, value)) = first.split_once('=') {
            variables.insert(name.to_owned(), value.to_owned());
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(parts.len() > 5, "{line}: no command");
        check_cron(&parts[..5].join(" "));
        let command = parts[5..].join(" ");
        // cron turns an unescaped `%` into a newline.
        assert!(!command.contains('%'), "{line}: `%` in a cron command");
        let syntax = std::process::Command::new("sh")
            .args(["-n", "-c", &command])
            .output()
            .unwrap();
        assert!(
            syntax.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        let calls = tandem_calls(&command);
        assert!(!calls.is_empty(), "{line}: does not call tandem");
        for args in calls {
            if args.first().is_some_and(|a| a == "sync") {
                let i = args.iter().position(|a| a == "--source").unwrap();
                assert!(
                    sources.contains(&args[i + 1]),
                    "{line}: no source {}",
                    args[i + 1]
                );
            }
            command_lines.insert(args);
        }
        jobs += 1;
    }
    assert!(jobs > 0, "no job in the crontab");
    assert_eq!(
        variables.get("TANDEM_LOG_FORMAT").map(String::as_str),
        Some("json")
    );
    assert!(variables.contains_key("TANDEM_CONFIG"));

    for args in &command_lines {
        check_command_line(args, scratch.path()).await;
    }
}

#[test]
fn the_deploy_readme_describes_every_file() {
    let dir = deploy_dir();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for path in files(&dir) {
        let relative = path.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        if relative == "README.md" {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            readme.contains(&name),
            "deploy/README.md does not mention {relative}"
        );
    }
}
