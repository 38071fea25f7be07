//! People in source records: the first non-empty name, login or email found at a list of JSON
//! pointers. Connectors use it to fill the canonical people columns; it knows nothing of
//! pseudonyms (exports replace people, not connectors).

use serde_json::Value;

/// The first non-empty, trimmed text at one of `pointers` (tried in order), as the source wrote it;
/// `None` when every pointer is missing, null, empty or not text.
pub(crate) fn person(raw: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| {
        raw.pointer(p)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_non_empty_text_wins_and_nothing_is_none() {
        let raw = json!({"a": {"name": " "}, "b": {"name": " Jon Doe "}, "c": null, "d": 7});
        assert_eq!(person(&raw, &["/a/name", "/b/name"]), Some("Jon Doe".to_owned()));
        assert_eq!(person(&raw, &["/c/name", "/c", "/d", "/missing"]), None);
    }
}
