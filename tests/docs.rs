//! The README documents what the code does: the canonical schema is generated from the code's own
//! column declarations and must match.

#[test]
fn readme_documents_the_canonical_schema() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let schema = tandem::store::schema_markdown();
    assert!(
        readme.contains(&schema),
        "README.md's canonical tables section is out of date; replace it with:\n\n{schema}\n"
    );
}

#[test]
fn readme_documents_every_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for m in tandem::metric::MetricId::ALL {
        assert!(
            readme.contains(&format!("`{}`", m.as_str())),
            "README lacks metric {}",
            m.as_str()
        );
    }
}
