//! The corpus itself: CRLF line ends and the X-KumoRef header exactly as
//! the listener writes it.

mod common;

use base64::Engine;

#[test]
fn corpus_files_use_crlf_line_ends() {
    for (name, bytes) in common::all() {
        if name == "garbage.eml" {
            continue;
        }
        for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            assert!(
                at > 0 && bytes[at - 1] == b'\r',
                "{name}: bare LF at byte {at}"
            );
        }
    }
}

#[test]
fn kumoref_is_folded_in_75_char_chunks_of_padded_base64() {
    let header = common::KUMOREF_HEADER
        .strip_prefix("X-KumoRef: ")
        .unwrap()
        .trim_end();
    let chunks: Vec<&str> = header.split("\n\t").collect();
    assert!(chunks.len() > 1);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == 75));
    let json = base64::engine::general_purpose::STANDARD
        .decode(chunks.concat())
        .unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"_@_":"\\_/","campaign":"c1","recipient":"user@example.com","tenant":"t1"}"#
    );
    let raw = common::load("arf-abuse.eml");
    let crlf = common::KUMOREF_HEADER.replace('\n', "\r\n");
    assert!(raw.windows(crlf.len()).any(|w| w == crlf.as_bytes()));
}
