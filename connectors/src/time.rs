//! Parsing the timestamp formats the sources send, into UTC.
//!
//! A timestamp that cannot be parsed is an error for the caller to quarantine: never a guess.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses RFC 3339 (`2011-01-26T19:01:12Z`, `2007-10-29T02:42:39.000-07:00`), Jira's
/// `2024-01-15T10:23:45.123-0800` and ServiceNow's offset-less UTC `2016-01-19 04:52:04`.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Ok(dt.with_timezone(&Utc));
        }
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S") {
        return Ok(naive.and_utc());
    }
    Err(format!("unparsable timestamp {t:?}"))
}

/// Parses an optional timestamp: JSON null, a missing field and `""` are all `None`.
pub fn parse_opt_instant(v: Option<&serde_json::Value>) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => parse_instant(s).map(Some),
        Some(other) => Err(format!("expected a timestamp string, found {other}")),
    }
}

/// Formats an instant the way GitHub and PagerDuty expect in query strings.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_source_format_lands_on_the_same_instant() {
        let want = parse_instant("2024-01-15T18:23:45Z").unwrap();
        assert_eq!(parse_instant("2024-01-15T10:23:45.000-0800").unwrap(), want);
        assert_eq!(parse_instant("2024-01-15T10:23:45-08:00").unwrap(), want);
        assert_eq!(parse_instant("2024-01-15 18:23:45").unwrap(), want);
        assert_eq!(parse_instant("2024-01-15T19:23:45.000+01:00").unwrap(), want);
    }

    #[test]
    fn garbage_is_an_error_not_a_guess() {
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2024-13-45T00:00:00Z").is_err());
    }

    #[test]
    fn empty_and_null_are_none() {
        assert_eq!(parse_opt_instant(None).unwrap(), None);
        assert_eq!(parse_opt_instant(Some(&serde_json::json!(""))).unwrap(), None);
        assert_eq!(parse_opt_instant(Some(&serde_json::Value::Null)).unwrap(), None);
        assert!(parse_opt_instant(Some(&serde_json::json!(5))).is_err());
    }
}
