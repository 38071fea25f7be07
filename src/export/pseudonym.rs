//! Pseudonyms for people in exports: a keyed hash (HMAC-SHA256) of a name, login or email, so a
//! shared export still joins on the same person across tables without naming anyone.
//!
//! The key comes from the environment (the command reads it); it never reaches a file, a log line
//! or an error. Values are trimmed and lower-cased before hashing, so `JDoe@Acme.example` and
//! `jdoe@acme.example` get the same pseudonym. This module knows nothing of polars or files.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// What a pseudonym starts with, so a reader can tell it from a real value.
pub const PREFIX: &str = "p-";

/// Hex digits of the HMAC kept in a pseudonym (80 bits: collisions are negligible for the
/// people of one organisation).
const HEX_DIGITS: usize = 20;

/// The shortest key accepted, in bytes: as long as the hash itself (HMAC-SHA256), so that the
/// key cannot be guessed more easily than the pseudonyms.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a pseudonymisation key is refused. The key itself is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("is empty")]
    Empty,
    /// The key is shorter than [`MIN_KEY_BYTES`].
    #[error("is too short: {bytes} bytes, at least {MIN_KEY_BYTES} are needed")]
    TooShort {
        /// The key's length in bytes.
        bytes: usize,
    },
}

/// Column and JSON key names that hold a person (compared lower-case).
const PERSON_KEYS: &[&str] = &[
    "acknowledger",
    "acknowledgers",
    "actor",
    "assigned_to",
    "assignee",
    "assignees",
    "author",
    "author_name",
    "authors",
    "caller_id",
    "committer",
    "committer_name",
    "creator",
    "displayname",
    "merge_user",
    "owner_email",
    "reporter",
    "requested_reviewers",
    "reviewer",
    "reviewers",
    "sender",
    "triggering_actor",
    "user",
    "username",
    "users",
];

/// Keys that look like people by their suffix but hold a record reference.
const NOT_PERSON_KEYS: &[&str] = &["caused_by"];

/// Whether a column or JSON key names a person: one of [`PERSON_KEYS`], or a name ending in
/// `login`, `email`, `emailaddress` or `_by` (`merged_by`, `opened_by`, `sys_created_by`). A
/// ServiceNow dot-walked key (`assigned_to.name`) is judged by the reference it walks from.
pub fn is_person_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let name = name.split('.').next().unwrap_or_default();
    if NOT_PERSON_KEYS.contains(&name) {
        return false;
    }
    PERSON_KEYS.contains(&name)
        || name.ends_with("login")
        || name.ends_with("email")
        || name.ends_with("emailaddress")
        || name.ends_with("_by")
}

/// A keyed hash for people's names, logins and emails.
#[derive(Clone)]
pub struct Pseudonymiser {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser(***)")
    }
}

impl Pseudonymiser {
    /// A pseudonymiser with this key, which must be at least [`MIN_KEY_BYTES`] long: with a short
    /// key, every name would be guessable by trying keys.
    pub fn new(key: &str) -> Result<Self, KeyError> {
        let bytes = key.len();
        match bytes {
            0 => Err(KeyError::Empty),
            _ if bytes < MIN_KEY_BYTES => Err(KeyError::TooShort { bytes }),
            _ => Self::keyed(key.as_bytes()).ok_or(KeyError::TooShort { bytes }),
        }
    }

    /// A pseudonymiser with any key, unchecked (the published HMAC test vectors use short ones).
    fn keyed(key: &[u8]) -> Option<Self> {
        Hmac::<Sha256>::new_from_slice(key).ok().map(|mac| Self { mac })
    }

    /// The pseudonym of one value: `p-` and 20 hex digits of HMAC-SHA256(key, trimmed lower-case
    /// value). An empty value stays empty (there is nobody to hide).
    pub fn name(&self, value: &str) -> String {
        let normal = value.trim().to_lowercase();
        if normal.is_empty() {
            return String::new();
        }
        let mut mac = self.mac.clone();
        mac.update(normal.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PREFIX.len() + HEX_DIGITS);
        out.push_str(PREFIX);
        for byte in digest.iter().take(HEX_DIGITS / 2) {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// A raw source record (JSON text) with its people replaced: every value under a person key
    /// (the whole object of `"assignee": {…}`, ids and URLs included), the `from`/`to` values of a
    /// change-log item whose `field` is a person key, and every email address anywhere. Text that
    /// is not JSON is replaced by its pseudonym as a whole, since nobody can say where the people
    /// are in it.
    pub fn json_text(&self, raw: &str) -> String {
        match serde_json::from_str::<Value>(raw) {
            Ok(mut value) => {
                self.walk(&mut value, false);
                value.to_string()
            }
            Err(_) => self.name(raw),
        }
    }

    fn walk(&self, value: &mut Value, person: bool) {
        match value {
            Value::Object(map) => {
                // Jira change-log items and similar: {"field": "assignee", "from": …, "toString": …}.
                let names_person = ["field", "fieldId", "field_name"]
                    .iter()
                    .filter_map(|k| map.get(*k).and_then(Value::as_str))
                    .any(is_person_key);
                for (key, child) in map.iter_mut() {
                    let changed_value = names_person
                        && matches!(key.as_str(), "from" | "to" | "fromString" | "toString" | "value");
                    self.walk(child, person || changed_value || is_person_key(key));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.walk(item, person)),
            Value::String(text) if person => *text = self.name(text),
            Value::String(text) => {
                if let Some(replaced) = self.emails_in(text) {
                    *text = replaced;
                }
            }
            Value::Number(number) if person => *value = Value::String(self.name(&number.to_string())),
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    /// `text` with every email address replaced by its pseudonym; `None` when it has none.
    fn emails_in(&self, text: &str) -> Option<String> {
        if !text.contains('@') {
            return None;
        }
        let local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
        let domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut found = false;
        while let Some(at) = rest.find('@') {
            let start = rest[..at]
                .char_indices()
                .rev()
                .take_while(|&(_, c)| local(c))
                .last()
                .map_or(at, |(i, _)| i);
            let after = &rest[at + 1..];
            let len = after.find(|c: char| !domain(c)).unwrap_or(after.len());
            let host = after[..len].trim_end_matches('.');
            if start < at && host.contains('.') && !host.starts_with('.') {
                found = true;
                out.push_str(&rest[..start]);
                out.push_str(&self.name(&rest[start..at + 1 + host.len()]));
                rest = &rest[at + 1 + host.len()..];
            } else {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
            }
        }
        out.push_str(rest);
        found.then_some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_shorter_than_32_bytes_are_refused() {
        assert_eq!(Pseudonymiser::new("").err(), Some(KeyError::Empty));
        let short = "x".repeat(31);
        assert_eq!(
            Pseudonymiser::new(&short).err(),
            Some(KeyError::TooShort { bytes: 31 })
        );
        let message = KeyError::TooShort { bytes: 31 }.to_string();
        assert_eq!(message, "is too short: 31 bytes, at least 32 are needed");
        assert!(Pseudonymiser::new(&"x".repeat(32)).is_ok());
        // Bytes, not characters: 16 two-byte characters are 32 bytes.
        assert!(Pseudonymiser::new(&"é".repeat(16)).is_ok());
        assert!(Pseudonymiser::new(&"é".repeat(15)).is_err());
    }

    #[test]
    fn the_pseudonym_is_hmac_sha256_of_the_normalised_value() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?") starts with
        // 5bdcc146bf60754e6a04; the value is already lower-case and trimmed.
        let p = Pseudonymiser::keyed(b"Jefe").unwrap();
        assert_eq!(p.name("what do ya want for nothing?"), "p-5bdcc146bf60754e6a04");
        assert_eq!(
            p.name("  WHAT do ya want for nothing? "),
            "p-5bdcc146bf60754e6a04"
        );
        assert_eq!(p.name(""), "");
        assert_ne!(
            Pseudonymiser::keyed(b"other")
                .unwrap()
                .name("what do ya want for nothing?"),
            p.name("what do ya want for nothing?")
        );
        assert_eq!(format!("{p:?}"), "Pseudonymiser(***)");
    }

    #[test]
    fn people_in_a_raw_record_are_replaced_and_the_rest_kept() {
        let p = Pseudonymiser::new(KEY).unwrap();
        let raw = serde_json::json!({
            "key": "OPS-1",
            "fields": {
                "summary": "Ping ops@acme.example, not me",
                "status": {"name": "Done"},
                "reporter": {"displayName": "Mia Krystof", "accountId": "abc123", "active": true},
                "assignee": null,
            },
            "changelog": {"histories": [{
                "author": {"name": "jon.doe"},
                "items": [
                    {"field": "assignee", "fromString": "Jon Doe", "toString": "Sam Lee", "from": "u1", "to": "u2"},
                    {"field": "status", "fromString": "Open", "toString": "Done"},
                ],
            }]},
            "user": {"login": "jdoe", "id": 1_234_567},
            "opened_by": "Noor Haddad",
        })
        .to_string();
        let out: Value = serde_json::from_str(&p.json_text(&raw)).unwrap();
        let text = out.to_string();
        for person in [
            "Mia Krystof",
            "abc123",
            "jon.doe",
            "Jon Doe",
            "Sam Lee",
            "jdoe",
            "1234567",
            "Noor Haddad",
            "ops@acme.example",
        ] {
            assert!(!text.contains(person), "{person} left in {text}");
        }
        assert_eq!(out["key"], "OPS-1");
        assert_eq!(out["fields"]["status"]["name"], "Done");
        assert_eq!(out["fields"]["reporter"]["active"], true);
        assert_eq!(out["fields"]["reporter"]["displayName"], p.name("Mia Krystof"));
        assert_eq!(out["user"]["login"], p.name("jdoe"));
        assert_eq!(out["user"]["id"], p.name("1234567"));
        assert_eq!(
            out["fields"]["summary"],
            format!("Ping {}, not me", p.name("ops@acme.example"))
        );
        let items = &out["changelog"]["histories"][0]["items"];
        assert_eq!(items[0]["toString"], p.name("Sam Lee"));
        assert_eq!(items[1]["toString"], "Done", "a status change names no person");
        assert_eq!(out["opened_by"], p.name("Noor Haddad"));
    }

    #[test]
    fn email_addresses_are_found_inside_text_and_at_signs_alone_are_kept() {
        let p = Pseudonymiser::new(KEY).unwrap();
        let signed = "Signed-off-by: Jane <jane.roe+ci@mail.acme.example>.";
        assert_eq!(
            p.emails_in(signed).unwrap(),
            format!(
                "Signed-off-by: Jane <{}>.",
                p.name("jane.roe+ci@mail.acme.example")
            )
        );
        assert_eq!(p.emails_in("deploy @ 10:00, ping @team"), None);
        assert_eq!(
            p.emails_in("a@b c@d.io").unwrap(),
            format!("a@b {}", p.name("c@d.io"))
        );
        assert_eq!(p.emails_in("plain"), None);
    }

    #[test]
    fn text_that_is_not_json_is_replaced_whole() {
        let p = Pseudonymiser::new(KEY).unwrap();
        assert_eq!(p.json_text("jdoe,checkout"), p.name("jdoe,checkout"));
    }

    #[test]
    fn person_keys_are_recognised_by_name_and_suffix() {
        for name in [
            "author",
            "Assignee",
            "merged_by",
            "author_email",
            "login",
            "emailAddress",
            "user",
            "assigned_to.name",
            "opened_by.name",
        ] {
            assert!(is_person_key(name), "{name}");
        }
        for name in [
            "title",
            "service",
            "team",
            "status",
            "raw",
            "id",
            "summary",
            "caused_by",
            "caused_by.number",
            "assignment_group.name",
        ] {
            assert!(!is_person_key(name), "{name}");
        }
    }
}
