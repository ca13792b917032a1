//! The fuzz targets' checks on stable Rust (runs in `cargo test`): every seed in
//! `fuzz/seeds/`, truncated at every offset, then mutated by `postern-mutate`, must pass
//! [`check_command_input`] and [`check_data_input`]. `POSTERN_MUTATION_ROUNDS`
//! multiplies the rounds for a longer run.

use std::path::{Path, PathBuf};

use postern_smtp::invariants::{check_command_input, check_data_input};

/// Octets that matter to SMTP framing and parsing.
const INTERESTING: &[u8] = b"\r\n.<>@:= \"\\[]+\x00\x1b\x7f\xc3\xff";

fn seeds(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

#[test]
fn command_parser_over_mutated_seeds() {
    let rounds = postern_mutate::rounds(20_000);
    let inputs = postern_mutate::run(
        &seeds("command"),
        0x5eed_2026_1201_0001,
        rounds,
        INTERESTING,
        check_command_input,
    );
    println!("command: {inputs} inputs");
}

#[test]
fn data_framer_over_mutated_seeds() {
    let rounds = postern_mutate::rounds(20_000);
    let inputs = postern_mutate::run(
        &seeds("data_framer"),
        0x5eed_2026_1201_0002,
        rounds,
        INTERESTING,
        check_data_input,
    );
    println!("data_framer: {inputs} inputs");
}
