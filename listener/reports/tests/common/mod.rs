//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// The corpus directory.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The bytes of one corpus file.
pub fn load(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every corpus file, sorted by name.
pub fn all() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

/// The trace object every corpus report carries in its X-KumoRef header.
pub fn kumoref_trace() -> serde_json::Value {
    serde_json::json!({"campaign": "c1", "recipient": "user@example.com", "tenant": "t1"})
}

/// The X-KumoRef header of the corpus, as the listener folds it.
pub const KUMOREF_HEADER: &str = "X-KumoRef: eyJfQF8iOiJcXF8vIiwiY2FtcGFpZ24iOiJjMSIsInJlY2lwaWVudCI6InVzZXJAZXhhbXBsZS5\n\tjb20iLCJ0ZW5hbnQiOiJ0MSJ9\n";

/// The headers of the original message returned in most corpus reports,
/// with LF line ends.
pub fn original_headers() -> String {
    format!(
        "{KUMOREF_HEADER}Received: from sender.example.org (198.51.100.7)\n  by relay.postern.example (Postern 198.51.100.1)\n  with ESMTPS id 0195a7b2c3d4e5f60718293a4b5c6d7e for <user@example.com>;\n  Thu, 26 Nov 2026 09:15:02 +0000\nFrom: News <news@sender.example.org>\nTo: user@example.com\nSubject: Weekly offers\nMessage-ID: <c1-0001@sender.example.org>\nDate: Thu, 26 Nov 2026 09:15:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n"
    )
}

/// The whole original message returned in most corpus reports, LF line
/// ends.
pub fn original_message() -> String {
    format!(
        "{}\nHello,\nthis week's offers are below.\n",
        original_headers()
    )
}
