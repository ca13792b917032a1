//! The fuzz targets' checks on stable Rust (runs in `cargo test`): every seed in
//! `fuzz/seeds/`, truncated at every offset, then mutated by a fixed-seed PRNG (bytes
//! flipped, inserted and deleted, seeds spliced together), must pass
//! [`check_command_input`] and [`check_data_input`]. `POSTERN_MUTATION_ROUNDS`
//! multiplies the rounds for a longer run.

use std::path::Path;

use postern_smtp::invariants::{check_command_input, check_data_input};

/// xorshift64*: a small deterministic PRNG, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Octets that matter to SMTP framing and parsing.
const INTERESTING: &[u8] = b"\r\n.<>@:= \"\\[]\x00\x1b\x7f\xc3\xff";

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn rounds() -> usize {
    std::env::var("POSTERN_MUTATION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        * 20_000
}

/// Runs `check` over the seeds, their truncations and mutants; returns inputs run.
fn run(target: &str, seed: u64, check: fn(&[u8])) -> usize {
    let seeds = seeds(target);
    let mut inputs = 0;
    for bytes in &seeds {
        for cut in 0..=bytes.len() {
            check(&bytes[..cut]);
            inputs += 1;
        }
    }
    let mut rng = Rng(seed);
    for _ in 0..rounds() {
        let mut mutant = seeds[rng.below(seeds.len())].clone();
        if rng.below(4) == 0 {
            let other = &seeds[rng.below(seeds.len())];
            mutant.truncate(rng.below(mutant.len() + 1));
            mutant.extend_from_slice(&other[rng.below(other.len())..]);
        }
        for _ in 0..=rng.below(8) {
            let at = rng.below(mutant.len());
            match rng.below(4) {
                0 if !mutant.is_empty() => mutant[at] = rng.next() as u8,
                1 if !mutant.is_empty() => mutant[at] = INTERESTING[rng.below(INTERESTING.len())],
                2 => mutant.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                _ if !mutant.is_empty() => {
                    mutant.remove(at);
                }
                _ => {}
            }
        }
        check(&mutant);
        inputs += 1;
    }
    inputs
}

#[test]
fn command_parser_over_mutated_seeds() {
    let inputs = run("command", 0x5eed_2026_1201_0001, check_command_input);
    println!("command: {inputs} inputs");
}

#[test]
fn data_framer_over_mutated_seeds() {
    let inputs = run("data_framer", 0x5eed_2026_1201_0002, check_data_input);
    println!("data_framer: {inputs} inputs");
}
