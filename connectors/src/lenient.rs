//! Reading a page whose body does not parse whole, so that one bad record does not cost the
//! page: a record holding bytes that are not UTF-8, or nested deeper than serde_json's recursion
//! limit, is replaced by a marked stand-in that the connector quarantines with its reason, and
//! every other record of the page is kept.
//!
//! Why this way: the page is first decoded with invalid bytes replaced (only to find where
//! records begin and end, and which of them held the bad bytes), then split with serde_json's
//! `RawValue`, which skips over a value without building it and so without its recursion limit.
//! Each record is then parsed on its own. Records keep their places in the page, because offset
//! paging (PagerDuty, ServiceNow) counts the records a page held. Only a body whose envelope
//! cannot be read (cut off, not JSON) fails; that is left to the caller.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::model::QuarantineReason;

/// The key of the stand-in that replaces a record that could not be read.
pub const UNREADABLE: &str = "tandem_unreadable";

/// Most characters of an unreadable record kept with it, for the quarantine's `raw` column.
const KEEP_CHARS: usize = 4096;

/// Parses a page body. A body that is valid JSON parses as it is; one that is not is read
/// record by record (see the module doc). Fails with serde_json's error on the whole body when
/// even the envelope cannot be read.
pub fn parse_page(body: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(whole) => record_by_record(body).ok_or(whole),
    }
}

/// Why a record of a page could not be read, when `item` is the stand-in for one.
pub fn unreadable(item: &Value) -> Option<QuarantineReason> {
    let mark = item.get(UNREADABLE)?;
    let text = mark
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("unreadable record");
    let position = mark.get("position").and_then(Value::as_u64).unwrap_or_default();
    let field = format!("record {position} of the page");
    Some(match mark.get("code").and_then(Value::as_str) {
        Some("bad_value") => QuarantineReason::BadValue {
            field,
            error: text.to_owned(),
        },
        _ => QuarantineReason::BadShape(format!("{field}: {text}")),
    })
}

fn record_by_record(body: &[u8]) -> Option<Value> {
    let (text, bad_bytes) = lossy(body);
    let top: &RawValue = serde_json::from_str(&text).ok()?;
    let page = Page {
        base: text.as_ptr() as usize,
        bad_bytes: &bad_bytes,
    };
    match top.get().trim_start().as_bytes().first()? {
        b'[' => page.records(top).map(Value::Array),
        b'{' => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(top.get()).ok()?;
            let mut map = Map::new();
            for (name, raw) in members {
                let value = match raw.get().trim_start().as_bytes().first() {
                    Some(b'[') => Value::Array(page.records(raw)?),
                    // One record under a key (PagerDuty's `{"incident": {…}}` by id): read the
                    // same way as a page's records, a stand-in when it cannot be.
                    Some(b'{') => page.record(0, raw),
                    _ => serde_json::from_str(raw.get()).ok()?,
                };
                map.insert(name, value);
            }
            Some(Value::Object(map))
        }
        _ => None,
    }
}

/// The body as text with each run of invalid bytes replaced by U+FFFD, and where in the text
/// those replacements are.
fn lossy(body: &[u8]) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(body.len());
    let mut bad = Vec::new();
    for chunk in body.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            bad.push(text.len());
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    (text, bad)
}

struct Page<'a> {
    /// Address of the decoded text: record slices point into it, so their offsets are known.
    base: usize,
    bad_bytes: &'a [usize],
}

impl Page<'_> {
    fn records(&self, list: &RawValue) -> Option<Vec<Value>> {
        let items: Vec<&RawValue> = serde_json::from_str(list.get()).ok()?;
        Some(
            items
                .into_iter()
                .enumerate()
                .map(|(position, item)| self.record(position, item))
                .collect(),
        )
    }

    fn record(&self, position: usize, item: &RawValue) -> Value {
        let start = (item.get().as_ptr() as usize).saturating_sub(self.base);
        let end = start + item.get().len();
        if self.bad_bytes.iter().any(|at| (start..end).contains(at)) {
            return stand_in(
                position,
                item.get(),
                "bad_value",
                "a string holds bytes that are not UTF-8 (shown here as U+FFFD)".into(),
            );
        }
        match serde_json::from_str(item.get()) {
            Ok(value) => value,
            Err(e) => stand_in(
                position,
                item.get(),
                "bad_shape",
                format!(
                    "cannot be read as JSON on its own ({e}); most often it is nested deeper than the parser allows"
                ),
            ),
        }
    }
}

/// The identifiers a stand-in keeps, read without building the rest of the record.
#[derive(serde::Deserialize)]
struct Ids {
    id: Option<Value>,
    sys_id: Option<Value>,
    key: Option<Value>,
}

fn stand_in(position: usize, raw: &str, code: &str, reason: String) -> Value {
    let ids: Option<Ids> = serde_json::from_str(raw).ok();
    let scalar = |v: Option<Value>| v.filter(|v| v.is_string() || v.is_number());
    let (id, sys_id) = match ids {
        Some(ids) => {
            let sys_id = scalar(ids.sys_id);
            (scalar(ids.id).or(sys_id.clone()).or(scalar(ids.key)), sys_id)
        }
        None => (None, None),
    };
    let kept: String = raw.chars().take(KEEP_CHARS).collect();
    let mut mark = Map::new();
    mark.insert("position".into(), Value::from(position));
    mark.insert("code".into(), Value::from(code));
    mark.insert("reason".into(), Value::from(reason));
    mark.insert("raw".into(), Value::from(kept));
    let mut stand_in = Map::new();
    if let Some(id) = id {
        stand_in.insert("id".into(), id);
    }
    // ServiceNow keys its records by `sys_id`: kept so a re-polled record is known to be there.
    if let Some(sys_id) = sys_id {
        stand_in.insert("sys_id".into(), sys_id);
    }
    stand_in.insert(UNREADABLE.into(), Value::Object(mark));
    Value::Object(stand_in)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::ReasonCode;

    fn deep(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn a_valid_page_parses_as_it_is() {
        let body = br#"{"issues":[{"id":"1"}],"isLast":true}"#;
        assert_eq!(
            parse_page(body).unwrap(),
            serde_json::json!({"issues": [{"id": "1"}], "isLast": true})
        );
    }

    #[test]
    fn one_record_under_a_key_is_marked_rather_than_stored_garbled_or_failing_the_body() {
        // PagerDuty's incident by id, with a byte that is not UTF-8: a stand-in, not U+FFFD text.
        let mut body = br#"{"incident":{"id":"PT4KHLK","title":"caf"#.to_vec();
        body.push(0xE9);
        body.extend_from_slice(br#""}}"#);
        let page = parse_page(&body).unwrap();
        let reason = unreadable(&page["incident"]).unwrap();
        assert_eq!(reason.code(), ReasonCode::BadValue);
        assert_eq!(page["incident"]["id"], "PT4KHLK");
        // Nested past the parser's limit: a stand-in too, and the body still reads.
        let body = format!(
            r#"{{"incident":{{"id":"PX","details":{}}},"limit":1}}"#,
            deep(300)
        );
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(
            unreadable(&page["incident"]).unwrap().code(),
            ReasonCode::BadShape
        );
        assert_eq!(page["limit"], 1);
    }

    #[test]
    fn a_non_utf8_byte_in_one_record_marks_only_that_record() {
        let mut body = br#"[{"id":1,"title":"ok"},{"id":2,"title":"caf"#.to_vec();
        body.push(0xE9);
        body.extend_from_slice(br#""},{"id":3}]"#);
        let page = parse_page(&body).unwrap();
        let items = page.as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["title"], "ok");
        assert_eq!(items[2]["id"], 3);
        let reason = unreadable(&items[1]).unwrap();
        assert_eq!(reason.code(), ReasonCode::BadValue);
        assert!(
            reason.text().contains("record 1 of the page"),
            "{}",
            reason.text()
        );
        assert!(reason.text().contains("not UTF-8"), "{}", reason.text());
        assert_eq!(items[1]["id"], 2, "the id is kept for the quarantine key");
        assert!(unreadable(&items[0]).is_none());
    }

    #[test]
    fn a_record_nested_past_the_recursion_limit_marks_only_that_record() {
        let body = format!(
            r#"{{"result":[{{"sys_id":"a"}},{{"sys_id":"b","deep":{}}}],"total":2}}"#,
            deep(400)
        );
        assert!(
            serde_json::from_str::<Value>(&body).is_err(),
            "the test needs a body serde_json refuses"
        );
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page["total"], 2);
        let items = page["result"].as_array().unwrap();
        assert_eq!(items[0]["sys_id"], "a");
        let reason = unreadable(&items[1]).unwrap();
        assert_eq!(reason.code(), ReasonCode::BadShape);
        assert!(
            reason.text().contains("record 1 of the page"),
            "{}",
            reason.text()
        );
        assert_eq!(items[1]["id"], "b", "sys_id stands in for the key");
    }

    #[test]
    fn a_body_that_is_cut_off_still_fails() {
        assert!(parse_page(br#"[{"id":1},{"id":"#).is_err());
        assert!(parse_page(b"<html>bad gateway</html>").is_err());
    }
}
