//! Tests of what the shared HTTP client bounds for every connector: paging walks that would never
//! end, response bodies past the size limit, credentials that must not leave the configured
//! origin, and pages with one unreadable record. Scripted servers speak the vendors' real shapes
//! (their documented paging headers, error bodies and record fields) and bind `127.0.0.1:0`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Datelike, NaiveDate, Utc};
use serde_json::{Value, json};
use tandem_fixtures::{Control, FakeOptions, FakeServers, OrgSpec, Organisation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::contract::{Message, read_all};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, RetryPolicy};
use crate::model::{Quarantined, ReasonCode, Record};
use crate::secret::{Secret, SecretEnv};
use crate::{Connector, SourceConfig};

const TOKEN_VAR: &str = "TANDEM_BOUNDS_TEST_TOKEN";
const TOKEN: &str = "s3cr3t-token-value";

// ---------------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server: one answer per request, `connection: close`.

/// A canned answer.
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send `content-length`; without it the body ends when the connection closes.
    with_length: bool,
}

fn json_answer(body: &Value) -> Canned {
    Canned {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        with_length: true,
    }
}

impl Canned {
    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request as the server saw it: target (`/path?query`) and lower-case headers.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Arc<dyn Fn(&str, &str) -> Canned + Send + Sync>;

struct Scripted {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves `handler(target, base_url)` on `127.0.0.1:0` until the test ends.
async fn serve(handler: impl Fn(&str, &str) -> Canned + Send + Sync + 'static) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Handler = Arc::new(handler);
    let (log, root) = (Arc::clone(&seen), base.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (handler, log, root) = (Arc::clone(&handler), Arc::clone(&log), root.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&byte[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let mut lines = text.split("\r\n");
                let target = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or_default()
                    .to_owned();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                log.lock().unwrap().push(Seen {
                    target: target.clone(),
                    headers,
                });
                let answer = handler(&target, &root);
                let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", answer.status);
                for (n, v) in &answer.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                if answer.with_length {
                    out.push_str(&format!("content-length: {}\r\n", answer.body.len()));
                }
                out.push_str("\r\n");
                let _ = socket.write_all(out.as_bytes()).await;
                let _ = socket.write_all(&answer.body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Scripted { base, seen }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        max_rate_limit_wait: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

fn build(config: Value, policy: RetryPolicy) -> Connector {
    let config: SourceConfig = serde_json::from_value(config).unwrap();
    let env = SecretEnv::process().with_override(TOKEN_VAR, TOKEN);
    Connector::build(&config, &env, policy).unwrap()
}

fn github(base: &str, policy: RetryPolicy) -> Connector {
    build(
        json!({
            "kind": "github", "name": "gh", "base_url": base, "token_env": TOKEN_VAR,
            "repos": ["acme/api"], "compare_commits": false,
        }),
        policy,
    )
}

async fn read(c: &Connector, stream: &str) -> (Result<(), ConnectorError>, Vec<Message>) {
    read_all(|out| c.read(stream, None, out)).await
}

fn param_of(target: &str, name: &str) -> Option<String> {
    target
        .split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// GitHub's deployments list: an empty page of the real shape whose `Link: rel="next"` is
/// `next(page)` (the current `page` parameter, 1 for the first page), or none when `None`.
fn github_with_next(
    next: impl Fn(u32) -> Option<u32> + Send + Sync + 'static,
) -> impl Fn(&str, &str) -> Canned {
    move |target: &str, base: &str| {
        let page = param_of(target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let answer = json_answer(&json!([]));
        match next(page) {
            Some(n) if target.starts_with("/repos/acme/api/deployments") || target.starts_with("/repositories/") => answer.header(
                "link",
                format!(r#"<{base}/repositories/1/deployments?environment=production&per_page=100&page={n}>; rel="next""#),
            ),
            _ => answer,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Endless pagination.

#[tokio::test]
async fn github_next_link_that_repeats_stops_the_stream_naming_the_link() {
    // Every page says the next one is page 2, page 2 included.
    let server = serve(github_with_next(|_| Some(2))).await;
    let (result, _) = read(&github(&server.base, fast()), "deployments").await;
    let err = result.unwrap_err();
    assert!(matches!(err, ConnectorError::Paging { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("source `gh`, stream `deployments`"), "{text}");
    assert!(
        text.contains("/repositories/1/deployments?environment=production&per_page=100&page=2"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(server.seen().len(), 2, "page 2 is fetched once, not again");
}

#[tokio::test]
async fn github_next_links_in_a_cycle_stop_the_stream() {
    // 1 → 2 → 3 → 2: a cycle that never repeats the page just fetched.
    let server = serve(github_with_next(|page| {
        Some(if page == 3 { 2 } else { page + 1 })
    }))
    .await;
    let (result, _) = read(&github(&server.base, fast()), "deployments").await;
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("stream `deployments`") && text.contains("page=2"),
        "{text}"
    );
    assert!(text.contains("a second time"), "{text}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn github_stream_stops_at_the_configured_page_cap() {
    // Every page links to a new one: only the cap ends the walk.
    let server = serve(github_with_next(|page| Some(page + 1))).await;
    let policy = RetryPolicy {
        max_pages_per_stream: 5,
        ..fast()
    };
    let (result, _) = read(&github(&server.base, policy), "deployments").await;
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("stream `deployments`") && text.contains("5 pages"),
        "{text}"
    );
    assert!(
        text.contains("http.max_pages_per_stream"),
        "says how to raise it: {text}"
    );
    assert_eq!(server.seen().len(), 5);
}

#[tokio::test]
async fn jira_page_token_that_repeats_stops_the_stream_naming_the_token() {
    let server = serve(|target: &str, _: &str| {
        if target.starts_with("/rest/api/3/status") {
            json_answer(&json!([]))
        } else {
            // The real /search/jql shape, always handing out the same token.
            json_answer(&json!({"issues": [], "nextPageToken": "CAEaAggD", "isLast": false}))
        }
    })
    .await;
    let jira = build(
        json!({
            "kind": "jira", "name": "jira", "base_url": server.base, "email": "mia@acme.example",
            "token_env": TOKEN_VAR, "projects": ["OPS"],
        }),
        fast(),
    );
    let (result, _) = read(&jira, "issues").await;
    let text = result.unwrap_err().to_string();
    assert!(text.contains("source `jira`, stream `issues`"), "{text}");
    assert!(
        text.contains("CAEaAggD") && text.contains("a second time"),
        "{text}"
    );
    let searches = server
        .seen()
        .iter()
        .filter(|s| s.target.contains("/search/jql"))
        .count();
    assert_eq!(
        searches, 2,
        "the first page and the one with the token, nothing more"
    );
}

/// One status change of a Jira changelog, numbered `id`.
fn history(id: &str) -> Value {
    json!({"id": id, "created": "2026-01-02T10:00:00.000+0000",
           "items": [{"field": "status", "fieldtype": "jira", "from": "1", "fromString": "To Do",
                      "to": "3", "toString": "In Progress"}]})
}

/// A search answer with one issue whose embedded changelog shows 1 of `total` histories.
fn one_issue_search(total: u64) -> Value {
    json!({"isLast": true, "issues": [{
        "id": "10001", "key": "OPS-1",
        "fields": {"summary": "Checkout down", "issuetype": {"id": "1", "name": "Incident"},
                   "status": {"id": "3", "name": "In Progress", "statusCategory": {"key": "indeterminate"}},
                   "created": "2026-01-02T09:00:00.000+0000",
                   "updated": "2026-01-02T10:00:00.000+0000",
                   "project": {"key": "OPS"}},
        "changelog": {"startAt": 0, "maxResults": 1, "total": total, "histories": [history("1")]}}]})
}

#[tokio::test]
async fn jira_changelog_next_page_on_another_host_is_computed_instead() {
    let other = serve(|_: &str, _: &str| json_answer(&json!({"values": [], "isLast": true}))).await;
    let other_base = other.base.clone();
    let home = serve(move |target: &str, _: &str| {
        if target.starts_with("/rest/api/3/status") {
            json_answer(&json!([]))
        } else if target.contains("/changelog") {
            let start = param_of(target, "startAt").unwrap_or_default();
            if start == "0" {
                json_answer(
                    &json!({"startAt": 0, "maxResults": 1, "total": 2, "isLast": false,
                    "values": [history("1")],
                    "nextPage": format!("{other_base}/rest/api/3/issue/10001/changelog?startAt=1")}),
                )
            } else {
                json_answer(&json!({"startAt": 1, "maxResults": 1, "total": 2, "isLast": true,
                    "values": [history("2")]}))
            }
        } else {
            json_answer(&one_issue_search(2))
        }
    })
    .await;
    let jira = build(
        json!({"kind": "jira", "name": "jira", "base_url": home.base, "email": "mia@acme.example",
               "token_env": TOKEN_VAR, "projects": ["OPS"]}),
        fast(),
    );
    let (result, _) = read(&jira, "issues").await;
    result.unwrap();
    assert!(other.seen().is_empty(), "nothing goes outside base_url");
    let changelogs: Vec<String> = home
        .seen()
        .iter()
        .filter(|s| s.target.contains("/changelog"))
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(changelogs.len(), 2, "{changelogs:?}");
    assert_eq!(
        param_of(&changelogs[1], "startAt").as_deref(),
        Some("1"),
        "{changelogs:?}"
    );
}

#[tokio::test]
async fn jira_changelog_computed_after_a_followed_link_asks_for_the_next_page_once() {
    // Page 1 links to page 2 (under base_url); page 2 sends no link though more remain: page 3 is
    // computed from the changelog's own address, not appended to page 2's `startAt=1`.
    // The server's own address, known once it listens: its links are absolute.
    let own = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let own_in = own.clone();
    let home = serve(move |target: &str, _: &str| {
        let base = own_in.lock().unwrap().clone();
        if target.starts_with("/rest/api/3/status") {
            json_answer(&json!([]))
        } else if target.contains("/changelog") {
            let starts: Vec<&str> = target
                .split_once('?')
                .map(|(_, q)| q.split('&').filter(|kv| kv.starts_with("startAt=")).collect())
                .unwrap_or_default();
            match starts.first().copied() {
                Some("startAt=0") => json_answer(&json!({"startAt": 0, "maxResults": 1, "total": 3,
                    "isLast": false, "values": [history("1")],
                    "nextPage": format!("{base}/rest/api/3/issue/10001/changelog?startAt=1")})),
                Some("startAt=1") => json_answer(&json!({"startAt": 1, "maxResults": 1, "total": 3,
                    "isLast": false, "values": [history("2")]})),
                _ => json_answer(&json!({"startAt": 2, "maxResults": 1, "total": 3, "isLast": true,
                    "values": [history("3")]})),
            }
        } else {
            json_answer(&one_issue_search(3))
        }
    })
    .await;
    *own.lock().unwrap() = home.base.clone();
    let jira = build(
        json!({"kind": "jira", "name": "jira", "base_url": home.base, "email": "mia@acme.example",
               "token_env": TOKEN_VAR, "projects": ["OPS"]}),
        fast(),
    );
    let (result, _) = read(&jira, "issues").await;
    result.unwrap();
    let changelogs: Vec<String> = home
        .seen()
        .iter()
        .filter(|s| s.target.contains("/changelog"))
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(changelogs.len(), 3, "{changelogs:?}");
    let last = &changelogs[2];
    assert_eq!(last.matches("startAt=").count(), 1, "{last}");
    assert_eq!(param_of(last, "startAt").as_deref(), Some("2"), "{last}");
}

#[tokio::test]
async fn a_body_over_the_size_limit_fails_without_being_read_whole() {
    // 200 KB of deployments against a 16 KB limit, once with a content-length and once ending
    // only when the connection closes (read in pieces and stopped at the limit).
    let big: Vec<Value> = (0..2000)
        .map(|i| json!({"id": i, "sha": "a".repeat(64)}))
        .collect();
    let body = Value::Array(big).to_string().into_bytes();
    for with_length in [true, false] {
        let body = body.clone();
        let server = serve(move |_: &str, _: &str| Canned {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.clone(),
            with_length,
        })
        .await;
        let policy = RetryPolicy {
            max_response_bytes: 16 * 1024,
            ..fast()
        };
        let (result, _) = read(&github(&server.base, policy), "deployments").await;
        let err = result.unwrap_err();
        assert!(matches!(err, ConnectorError::ResponseTooLarge { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("16384 bytes") && text.contains("http.max_response_mb"),
            "{text}"
        );
        assert_eq!(server.seen().len(), 1, "not retried: it would be as large again");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Credentials stay with the configured origin.

fn every_auth() -> Vec<(Auth, &'static str)> {
    vec![
        (Auth::Bearer(Secret::new(TOKEN)), "authorization"),
        (Auth::PagerDutyToken(Secret::new(TOKEN)), "authorization"),
        (
            Auth::Basic {
                user: "mia@acme.example".into(),
                secret: Secret::new(TOKEN),
            },
            "authorization",
        ),
        (Auth::PrivateToken(Secret::new(TOKEN)), "private-token"),
    ]
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_or_a_next_link_to_another_origin() {
    for (auth, header) in every_auth() {
        let other = serve(|_: &str, _: &str| json_answer(&json!([]))).await;
        let other_base = other.base.clone();
        let home = serve(move |target: &str, base: &str| match target {
            "/moved" => Canned {
                status: 302,
                headers: vec![("location".into(), format!("{other_base}/landing"))],
                body: Vec::new(),
                with_length: true,
            },
            "/moved-home" => Canned {
                status: 301,
                headers: vec![("location".into(), "/landing".into())],
                body: Vec::new(),
                with_length: true,
            },
            "/list" => json_answer(&json!([{"id": 1}]))
                .header("link", format!(r#"<{other_base}/list?page=2>; rel="next""#)),
            _ => json_answer(&json!([{"base": base}])),
        })
        .await;
        let client = HttpClient::new(
            "src",
            &home.base,
            &auth,
            &[("accept", "application/json")],
            "hint".into(),
            fast(),
        )
        .unwrap();
        // A redirect to another origin, and a next link to another origin as a connector
        // follows it.
        client
            .get_json(&format!("{}/moved", home.base), &[])
            .await
            .unwrap();
        let page = client
            .get_json(&format!("{}/list", home.base), &[])
            .await
            .unwrap();
        client.get_json(&page.link("next").unwrap(), &[]).await.unwrap();
        // A redirect within the origin keeps them.
        client
            .get_json(&format!("{}/moved-home", home.base), &[])
            .await
            .unwrap();

        let away = other.seen();
        assert_eq!(
            away.len(),
            2,
            "{auth:?}: the redirect and the next link reached the other server"
        );
        for seen in &away {
            assert_eq!(seen.header(header), None, "{auth:?} leaked to {}", seen.target);
            assert!(
                seen.headers.iter().all(|(_, v)| !v.contains(TOKEN)),
                "{auth:?} leaked to {}",
                seen.target
            );
            assert_eq!(
                seen.header("accept"),
                Some("application/json"),
                "other headers still go"
            );
        }
        let home_seen = home.seen();
        assert_eq!(home_seen.len(), 4);
        assert!(
            home_seen.iter().all(|s| s.header(header).is_some()),
            "{auth:?}: the configured origin gets the credential every time, redirects within it included"
        );
    }
}

#[tokio::test]
async fn github_bearer_token_does_not_follow_a_next_link_to_another_host() {
    let other = serve(|_: &str, _: &str| json_answer(&json!([]))).await;
    let other_base = other.base.clone();
    let home = serve(move |_: &str, _: &str| {
        json_answer(&json!([])).header(
            "link",
            format!(r#"<{other_base}/repositories/1/deployments?page=2>; rel="next""#),
        )
    })
    .await;
    let (result, _) = read(&github(&home.base, fast()), "deployments").await;
    result.unwrap();
    assert!(
        home.seen()
            .iter()
            .all(|s| s.header("authorization") == Some(&format!("Bearer {TOKEN}")))
    );
    let away = other.seen();
    assert_eq!(away.len(), 1, "the next link was followed");
    assert_eq!(away[0].header("authorization"), None, "the token stayed home");
}

#[tokio::test]
async fn a_refusal_from_another_origin_says_credentials_stay_home_not_that_the_token_is_bad() {
    let other = serve(|_: &str, _: &str| Canned {
        status: 401,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"message":"401 Unauthorized"}"#.to_vec(),
        with_length: true,
    })
    .await;
    let other_base = other.base.clone();
    let home = serve(move |_: &str, _: &str| Canned {
        status: 302,
        headers: vec![("location".into(), format!("{other_base}/api/v4/user"))],
        body: Vec::new(),
        with_length: true,
    })
    .await;
    let client = token_client(&home.base, Auth::PrivateToken(Secret::new(TOKEN)));
    let err = client
        .get_json(&format!("{}/api/v4/user", home.base), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outside base_url") && err.contains(&other.base),
        "{err}"
    );
    assert!(!err.contains("check the token") && !err.contains(TOKEN), "{err}");
}

/// A client of `base` with `auth`, whose refusals say to check the token.
fn token_client(base: &str, auth: Auth) -> HttpClient {
    HttpClient::new("src", base, &auth, &[], "check the token".into(), fast()).unwrap()
}

/// GitHub's 404 for what it will not show (or does not have).
fn not_found() -> Canned {
    Canned {
        status: 404,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"message":"Not Found"}"#.to_vec(),
        with_length: true,
    }
}

#[tokio::test]
async fn a_404_from_another_origin_is_a_refusal_not_a_missing_record() {
    // A private repository answers 404 to a request without credentials: behind a proxy whose
    // next links name the server's own host, page 2 must fail loudly, not read as "gone".
    let other = serve(|_: &str, _: &str| not_found()).await;
    let home = serve(|_: &str, _: &str| json_answer(&json!([]))).await;
    let client = token_client(&home.base, Auth::Bearer(Secret::new(TOKEN)));
    let err = client
        .get_json(&format!("{}/repos/acme/a/compare/a...b?page=2", other.base), &[])
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("outside base_url") && text.contains("404"),
        "{text}"
    );
    // From the configured origin a 404 is still what it says.
    let home404 = serve(|_: &str, _: &str| not_found()).await;
    let client = token_client(&home404.base, Auth::Bearer(Secret::new(TOKEN)));
    let err = client
        .get_json(&format!("{}/repos/acme/a/compare/a...b", home404.base), &[])
        .await
        .unwrap_err();
    assert!(!err.is_auth(), "{err}");
}

#[tokio::test]
async fn a_redirect_loop_fails_naming_the_url() {
    let home = serve(|target: &str, _: &str| Canned {
        status: 302,
        headers: vec![("location".into(), target.to_owned())],
        body: Vec::new(),
        with_length: true,
    })
    .await;
    let client = HttpClient::new("src", &home.base, &Auth::None, &[], "hint".into(), fast()).unwrap();
    let err = client
        .get_json(&format!("{}/loop", home.base), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/loop") && err.contains("redirects"), "{err}");
}

#[tokio::test]
async fn gitlab_private_token_does_not_follow_a_redirect_to_another_host() {
    let other = serve(|_: &str, _: &str| json_answer(&json!({"id": 1, "username": "x"}))).await;
    let other_base = other.base.clone();
    let home = serve(move |target: &str, _: &str| Canned {
        status: 302,
        headers: vec![("location".into(), format!("{other_base}{target}"))],
        body: Vec::new(),
        with_length: true,
    })
    .await;
    let gitlab = build(
        json!({
            "kind": "gitlab", "name": "gl", "base_url": home.base, "token_env": TOKEN_VAR,
            "projects": [],
        }),
        fast(),
    );
    let _ = gitlab.check().await;
    assert!(
        !home.seen().is_empty()
            && home
                .seen()
                .iter()
                .all(|s| s.header("private-token") == Some(TOKEN))
    );
    assert!(!other.seen().is_empty(), "the redirect was followed");
    assert!(other.seen().iter().all(|s| s.header("private-token").is_none()));
}

// ---------------------------------------------------------------------------------------------
// 3. One unreadable record does not cost its page (per source, against the fake vendors).

/// Forty whole weeks ending before today: every source's default lookback finds records.
async fn fakes() -> (Arc<Organisation>, FakeServers) {
    let today = Utc::now().date_naive();
    let monday = today - chrono::Days::new(u64::from(today.weekday().num_days_from_monday()));
    let start: NaiveDate = monday - chrono::Days::new(7 * 41);
    let org = Arc::new(
        Organisation::generate(OrgSpec {
            seed: 11,
            start,
            weeks: 40,
        })
        .unwrap(),
    );
    let servers = tandem_fixtures::start(Arc::clone(&org), FakeOptions::with_secret("t"))
        .await
        .unwrap();
    (org, servers)
}

/// The connector of `config` (without `base_url`) pointed at its fake vendor, that fake's
/// control, and the servers (kept alive by the caller).
async fn against_fakes(mut config: Value) -> (Connector, Control, FakeServers) {
    let (_org, servers) = fakes().await;
    let fake = match config["kind"].as_str().unwrap() {
        "github" => &servers.github,
        "gitlab" => &servers.gitlab,
        "jira" => &servers.jira,
        "pagerduty" => &servers.pagerduty,
        _ => &servers.servicenow,
    };
    let control = fake.control.clone();
    config["base_url"] = Value::from(fake.base_url());
    let source: SourceConfig = serde_json::from_value(config).unwrap();
    let connector = Connector::build(&source, &fake_env(), fast()).unwrap();
    (connector, control, servers)
}

fn fake_env() -> SecretEnv {
    let o = FakeOptions::with_secret("t");
    SecretEnv::process()
        .with_override("TANDEM_BOUNDS_GH", o.github_token)
        .with_override("TANDEM_BOUNDS_GL", o.gitlab_token)
        .with_override("TANDEM_BOUNDS_JIRA", o.jira_token)
        .with_override("TANDEM_BOUNDS_PD", o.pagerduty_token)
        .with_override("TANDEM_BOUNDS_SN", o.servicenow_password)
}

fn quarantined(messages: &[Message]) -> Vec<Quarantined> {
    messages
        .iter()
        .flat_map(|m| match m {
            Message::Quarantine(q) => q.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn records(messages: &[Message]) -> Vec<Record> {
    messages
        .iter()
        .flat_map(|m| match m {
            Message::Records(r) => r.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Reads `stream` clean, then again with the first list page spoiled (see
/// `Fault::SpoiledRecords`): the read succeeds, the three spoiled records are quarantined with
/// their reasons, and every other record is still there.
async fn spoiled_page_keeps_the_rest(
    config: Value,
    stream: &str,
    list_path: &str,
    wrong_type: &str,
    max_lost: usize,
) {
    let (connector, control, _servers) = against_fakes(config).await;

    let (clean_result, clean) = read(&connector, stream).await;
    clean_result.unwrap();
    let clean_records = records(&clean);
    // The fakes hold a few bad records on purpose: only what the spoiling added counts here.
    let before: Vec<(String, String)> = quarantined(&clean)
        .into_iter()
        .map(|q| (q.id, q.reason))
        .collect();

    control.spoil_records_next(list_path, Some(wrong_type), 1);
    let (result, spoiled) = read(&connector, stream).await;
    if let Err(e) = &result {
        panic!("{stream}: one bad record failed the read: {e}");
    }
    let rejected: Vec<Quarantined> = quarantined(&spoiled)
        .into_iter()
        .filter(|q| !before.contains(&(q.id.clone(), q.reason.clone())))
        .collect();
    assert_eq!(rejected.len(), 3, "{stream}: {rejected:#?}");
    let wrong = rejected
        .iter()
        .find(|q| q.reason.contains(wrong_type))
        .unwrap_or_else(|| panic!("{stream}: no rejection names {wrong_type}: {rejected:#?}"));
    assert_eq!(
        wrong.reason_code,
        Some(ReasonCode::BadValue),
        "{stream}: {}",
        wrong.reason
    );
    let bad_bytes = rejected.iter().find(|q| q.reason.contains("not UTF-8")).unwrap();
    assert_eq!(bad_bytes.reason_code, Some(ReasonCode::BadValue));
    assert!(
        bad_bytes.reason.contains("record 1 of the page"),
        "{}",
        bad_bytes.reason
    );
    assert!(
        !bad_bytes.id.ends_with(':'),
        "keyed by the record's own id: {}",
        bad_bytes.id
    );
    let deep = rejected
        .iter()
        .find(|q| q.reason.contains("record 2 of the page"))
        .unwrap();
    assert_eq!(deep.reason_code, Some(ReasonCode::BadShape), "{}", deep.reason);
    let kept = records(&spoiled);
    assert!(!kept.is_empty(), "{stream}: the rest of the page is stored");
    let clean_keys: std::collections::BTreeSet<&str> = clean_records.iter().map(Record::key).collect();
    let kept_keys: std::collections::BTreeSet<&str> = kept.iter().map(Record::key).collect();
    let lost = clean_keys.difference(&kept_keys).count();
    assert!(
        kept_keys.is_subset(&clean_keys),
        "{stream}: records appeared from nowhere"
    );
    assert!(
        (1..=max_lost).contains(&lost),
        "{stream}: only the records of the three spoiled items are missing, yet {lost} are"
    );
}

#[tokio::test]
async fn github_page_with_an_unreadable_deployment_keeps_the_others() {
    spoiled_page_keeps_the_rest(
        json!({"kind": "github", "name": "gh-spoiled", "token_env": "TANDEM_BOUNDS_GH",
               "repos": ["acme/search"], "compare_commits": false}),
        "deployments",
        "/deployments?",
        "environment",
        3,
    )
    .await;
}

#[tokio::test]
async fn gitlab_page_with_an_unreadable_deployment_keeps_the_others() {
    spoiled_page_keeps_the_rest(
        json!({"kind": "gitlab", "name": "gl-spoiled", "token_env": "TANDEM_BOUNDS_GL",
               "projects": ["acme/billing"], "environments": ["production"]}),
        "deployments",
        "/deployments?",
        "status",
        3,
    )
    .await;
}

#[tokio::test]
async fn jira_page_with_an_unreadable_issue_keeps_the_others() {
    // One issue maps to a ticket and its transitions: the bound is loose, the subset exact.
    spoiled_page_keeps_the_rest(
        json!({"kind": "jira", "name": "jira-spoiled", "email": "tandem@acme.example",
               "token_env": "TANDEM_BOUNDS_JIRA", "projects": ["OPS", "ENG"]}),
        "issues",
        "/search/jql",
        "key",
        200,
    )
    .await;
}

#[tokio::test]
async fn pagerduty_page_with_an_unreadable_incident_keeps_the_others() {
    spoiled_page_keeps_the_rest(
        // The simulated history in one window from its start, so the first page read has records.
        json!({"kind": "pagerduty", "name": "pd-spoiled", "token_env": "TANDEM_BOUNDS_PD",
               "lookback_days": 7 * 41 + 7, "window_days": 180}),
        "incidents",
        "/incidents?",
        "status",
        3,
    )
    .await;
}

#[tokio::test]
async fn servicenow_page_with_an_unreadable_incident_keeps_the_others() {
    // An incident maps to an incident and a ticket.
    spoiled_page_keeps_the_rest(
        json!({"kind": "servicenow", "name": "sn-spoiled", "user": "tandem.integration",
               "password_env": "TANDEM_BOUNDS_SN"}),
        "incidents",
        "/table/incident",
        "state",
        6,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. `tandem check` calls every endpoint a sync calls.

/// Checks a source against the fakes, with the first request whose target contains `deny`
/// answered `status` (as a proxy or a missing permission would).
async fn check_denying(config: Value, deny: Option<(&str, u16)>) -> Vec<crate::EndpointCheck> {
    let (connector, control, _servers) = against_fakes(config).await;
    if let Some((path, status)) = deny {
        control.fail_next(path, status, 1);
    }
    connector.check_endpoints().await
}

fn failures(checks: &[crate::EndpointCheck]) -> Vec<String> {
    checks
        .iter()
        .filter_map(|c| match &c.outcome {
            crate::CheckOutcome::Failed { error, fix } => Some(format!("{}: {error}; to fix: {fix}", c.name)),
            _ => None,
        })
        .collect()
}

/// The fake answers every endpoint; then denying `deny` alone fails the check naming `name`
/// and saying what to grant (`fix`).
async fn check_names_the_denied_endpoint(config: Value, deny: &str, status: u16, name: &str, fix: &str) {
    let all = check_denying(config.clone(), None).await;
    assert!(failures(&all).is_empty(), "{:#?}", failures(&all));
    assert!(all.len() >= 2, "more than one cheap request: {all:#?}");
    let checks = check_denying(config, Some((deny, status))).await;
    let failed = failures(&checks);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].starts_with(name), "{}", failed[0]);
    assert!(failed[0].contains(fix), "{}", failed[0]);
    assert!(failed[0].contains(&status.to_string()), "{}", failed[0]);
    assert_eq!(checks.len(), all.len(), "every other endpoint is still checked");
}

#[tokio::test]
async fn check_fails_naming_denied_github_deployment_statuses() {
    let config = json!({"kind": "github", "name": "gh-check", "token_env": "TANDEM_BOUNDS_GH",
                        "repos": ["acme/search"], "incident_labels": ["incident"]});
    check_names_the_denied_endpoint(
        config.clone(),
        "/statuses",
        403,
        "deployment statuses of acme/search",
        "Deployments: read",
    )
    .await;
    check_names_the_denied_endpoint(
        config.clone(),
        "/compare/",
        404,
        "commit compare of acme/search",
        "Contents: read",
    )
    .await;
    check_names_the_denied_endpoint(config, "/issues", 403, "issues of acme/search", "Issues: read").await;
}

#[tokio::test]
async fn check_fails_naming_denied_gitlab_merge_requests() {
    let config = json!({"kind": "gitlab", "name": "gl-check", "token_env": "TANDEM_BOUNDS_GL",
                        "projects": ["acme/billing"]});
    check_names_the_denied_endpoint(
        config.clone(),
        "/deployments",
        403,
        "deployments of acme/billing",
        "read_api",
    )
    .await;
    check_names_the_denied_endpoint(
        config,
        "/commits",
        404,
        "merge request commits of acme/billing",
        "Reporter",
    )
    .await;
}

#[tokio::test]
async fn check_fails_naming_denied_jira_changelogs_and_only_warns_without_the_status_list() {
    let config = json!({"kind": "jira", "name": "jira-check", "email": "tandem@acme.example",
                        "token_env": "TANDEM_BOUNDS_JIRA", "projects": ["OPS", "ENG"]});
    check_names_the_denied_endpoint(
        config.clone(),
        "/changelog",
        403,
        "issue changelog",
        "Browse projects",
    )
    .await;
    for status in [403, 404] {
        let checks = check_denying(config.clone(), Some(("/rest/api/3/status", status))).await;
        assert!(failures(&checks).is_empty(), "{checks:#?}");
        let warning = checks
            .iter()
            .find_map(|c| match &c.outcome {
                crate::CheckOutcome::Warning(w) if c.name.starts_with("status list") => Some(w),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no warning: {checks:#?}"));
        assert!(
            warning.contains(&status.to_string()) && warning.contains("carries on"),
            "{warning}"
        );
    }
}

#[tokio::test]
async fn check_fails_naming_denied_pagerduty_log_entries() {
    let config = json!({"kind": "pagerduty", "name": "pd-check", "token_env": "TANDEM_BOUNDS_PD"});
    check_names_the_denied_endpoint(config, "/log_entries", 403, "log entries", "read access").await;
}

#[tokio::test]
async fn check_fails_naming_a_denied_servicenow_table() {
    let config = json!({"kind": "servicenow", "name": "sn-check", "user": "tandem.integration",
                        "password_env": "TANDEM_BOUNDS_SN"});
    check_names_the_denied_endpoint(
        config,
        "/table/change_request",
        403,
        "table change_request",
        "read ACL on change_request",
    )
    .await;
}

#[tokio::test]
async fn check_warns_naming_servicenow_fields_hidden_by_acls() {
    // Field ACLs drop fields from the answer without an error: only the record's sys_id and
    // number come back for change requests.
    let server = serve(|target: &str, _: &str| {
        let row = if target.contains("/table/change_request") {
            json!({"sys_id": "9d385017c611228701d22104cc95c371", "number": "CHG0000001"})
        } else {
            Value::Null
        };
        let rows: Vec<Value> = row.is_object().then_some(row).into_iter().collect();
        json_answer(&json!({ "result": rows }))
    })
    .await;
    let sn = build(
        json!({"kind": "servicenow", "name": "sn", "base_url": server.base, "user": "tandem.integration",
               "password_env": TOKEN_VAR}),
        fast(),
    );
    let checks = sn.check_endpoints().await;
    assert!(failures(&checks).is_empty(), "{checks:#?}");
    let warning = checks
        .iter()
        .find_map(|c| match &c.outcome {
            crate::CheckOutcome::Warning(w) if c.name.starts_with("table change_request") => Some(w),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{checks:#?}"));
    assert!(
        warning.contains("approval") && warning.contains("ACL"),
        "{warning}"
    );
    assert!(
        !warning.contains("number,") && !warning.contains(" number"),
        "number came back: {warning}"
    );
    let asked: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|s| param_of(&s.target, "sysparm_fields"))
        .collect();
    assert_eq!(asked.len(), 2, "one request per table");
    assert!(asked.iter().all(|f| f.contains("sys_id")), "{asked:?}");
}
