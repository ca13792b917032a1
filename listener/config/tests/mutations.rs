//! The fuzz target's check on stable Rust (runs in `cargo test`): every seed in
//! `fuzz/seeds/`, truncated at every offset, then mutated by `postern-mutate`, must pass
//! [`check_loader_input`]. `POSTERN_MUTATION_ROUNDS` multiplies the rounds.

use std::path::Path;

use postern_config::check_loader_input;

/// Octets that matter to YAML and to the config's own syntaxes.
const INTERESTING: &[u8] = b"\n :-[]{}\"'&*!|>/.0123456789";

#[test]
fn config_loader_over_mutated_seeds() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/config");
    let rounds = postern_mutate::rounds(2000);
    let inputs = postern_mutate::run(
        &seeds,
        0x5eed_2026_1201_0003,
        rounds,
        INTERESTING,
        check_loader_input,
    );
    println!("config: {inputs} inputs");
}
