//! `postern-skip`: how a test that needs something outside the workspace (a tool such as
//! `swaks` or `bao`, or the e2e control plane) behaves when it is missing.
//!
//! - Under CI (`CI` set to anything but empty, `0`, `false` or `no`) a missing dependency
//!   is a failure: [`skip`] panics, because CI installs and starts everything.
//! - Elsewhere [`skip`] prints a loud banner on stderr and, when `POSTERN_SKIP_LOG` names a
//!   file, appends one line `test<TAB>reason` to it, so that `scripts/test` can count and
//!   name every skipped test in its closing summary instead of showing it as a pass.
//!   The caller then returns from the test.

use std::io::Write;

/// The environment variable naming the file [`skip`] appends to.
pub const SKIP_LOG_ENV: &str = "POSTERN_SKIP_LOG";

/// Whether the `CI` environment variable asks for CI behaviour.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| asks_for_ci(&value))
}

/// Whether a value of `CI` asks for CI behaviour.
fn asks_for_ci(value: &str) -> bool {
    !matches!(value.trim(), "" | "0" | "false" | "no")
}

/// Reports that the calling test cannot run because `reason` (what is missing and how to
/// get it). Panics under CI; otherwise prints a banner, records the skip in
/// `$POSTERN_SKIP_LOG` and returns, and the caller returns from the test.
pub fn skip(reason: &str) {
    let test = current_test();
    assert!(!in_ci(), "{test}: {reason}; CI must provide it");
    eprintln!("\n*** SKIPPED {test}: {reason}; this test did not run ***\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let line = format!("{test}\t{}\n", reason.replace(['\t', '\n'], " "));
        // One write(2) of one short line with O_APPEND: lines from concurrent tests and test
        // binaries do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(error) = written {
            panic!("{test}: cannot record the skip in {path:?}: {error}");
        }
    }
}

/// The running test's name: libtest names each test's thread after it. Tokio tests run
/// the body on that same thread.
fn current_test() -> String {
    let binary = std::env::args()
        .next()
        .and_then(|arg0| {
            let name = std::path::Path::new(&arg0)
                .file_name()?
                .to_str()?
                .to_owned();
            // Test binaries are named `name-<16 hex digits>`.
            Some(match name.rsplit_once('-') {
                Some((stem, hash)) if hash.len() == 16 => stem.to_owned(),
                _ => name,
            })
        })
        .unwrap_or_default();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unknown test");
    format!("{binary}::{test}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        for (value, expected) in [
            ("", false),
            ("0", false),
            ("false", false),
            ("no", false),
            ("true", true),
            ("1", true),
        ] {
            assert_eq!(asks_for_ci(value), expected, "CI={value:?}");
        }
    }

    #[test]
    fn the_test_name_includes_the_thread() {
        assert!(current_test().ends_with("tests::the_test_name_includes_the_thread"));
    }
}
