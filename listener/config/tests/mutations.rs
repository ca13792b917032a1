//! The fuzz target's check on stable Rust (runs in `cargo test`): every seed in
//! `fuzz/seeds/`, truncated at every offset, then mutated by a fixed-seed PRNG (bytes
//! flipped, inserted and deleted, seeds spliced together), must pass
//! [`check_loader_input`]. `POSTERN_MUTATION_ROUNDS` multiplies the rounds.

use std::path::Path;

use postern_config::check_loader_input;

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

/// Octets that matter to YAML and to the config's own syntaxes.
const INTERESTING: &[u8] = b"\n :-[]{}\"'&*!|>/.0123456789";

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
        * 2000
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
fn config_loader_over_mutated_seeds() {
    let inputs = run("config", 0x5eed_2026_1201_0003, check_loader_input);
    println!("config: {inputs} inputs");
}
