//! `postern-mutate`: the stable-Rust half of Postern's fuzzing. Each crate with a
//! `cargo fuzz` target also runs the target's check in `cargo test`, over inputs made
//! here: every seed of the target's corpus, each truncated at every offset, then
//! mutants from a fixed-seed PRNG (bytes replaced, inserted and deleted, seeds spliced
//! together), so a failure reproduces from the test's seed alone.
//!
//! `POSTERN_MUTATION_ROUNDS` multiplies the number of mutants for a longer run.

use std::path::Path;

/// The environment variable that multiplies the rounds of [`rounds`].
pub const ROUNDS_ENV: &str = "POSTERN_MUTATION_ROUNDS";

/// Every file in `dir` (a fuzz target's seed corpus), sorted so runs are reproducible.
///
/// # Panics
/// When `dir` cannot be read or holds no seed: a check over nothing proves nothing.
pub fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// `base` rounds, times `$POSTERN_MUTATION_ROUNDS` when it is set to a number.
pub fn rounds(base: usize) -> usize {
    std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(1)
        * base
}

/// Makes mutants of byte strings from a fixed seed.
pub struct Mutator {
    rng: fastrand::Rng,
    interesting: &'static [u8],
}

impl Mutator {
    /// A mutator seeded with `seed` that also writes the `interesting` octets (those
    /// that matter to the format under test: delimiters, line ends, digits).
    pub fn new(seed: u64, interesting: &'static [u8]) -> Self {
        assert!(!interesting.is_empty(), "no interesting octets");
        Self {
            rng: fastrand::Rng::with_seed(seed),
            interesting,
        }
    }

    /// A uniform index below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.usize(..n) }
    }

    fn interesting(&mut self) -> u8 {
        self.interesting[self.below(self.interesting.len())]
    }

    /// Applies 1 to 8 edits to `bytes`: an octet replaced by a random or an interesting
    /// one, an interesting octet inserted, or an octet deleted.
    pub fn mutate(&mut self, bytes: &mut Vec<u8>) {
        for _ in 0..=self.below(8) {
            let at = self.below(bytes.len());
            match self.below(4) {
                0 if !bytes.is_empty() => bytes[at] = self.rng.u8(..),
                1 if !bytes.is_empty() => bytes[at] = self.interesting(),
                2 => {
                    let octet = self.interesting();
                    bytes.insert(at, octet);
                }
                _ if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
    }

    /// A prefix of `head` followed by a suffix of `tail`, cut at random offsets.
    pub fn splice(&mut self, head: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut out = head[..self.below(head.len() + 1)].to_vec();
        out.extend_from_slice(&tail[self.below(tail.len() + 1)..]);
        out
    }

    /// A mutant of one of `seeds`: spliced with another one time in four, then mutated.
    pub fn mutant(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut mutant = seeds[self.below(seeds.len())].clone();
        if self.below(4) == 0 {
            let other = &seeds[self.below(seeds.len())];
            mutant = self.splice(&mutant, other);
        }
        self.mutate(&mut mutant);
        mutant
    }
}

/// Runs `check` over every seed in `seeds_dir` truncated at every offset, then over
/// `rounds` mutants made by a [`Mutator`] seeded with `seed`; returns the inputs run.
pub fn run(
    seeds_dir: &Path,
    seed: u64,
    rounds: usize,
    interesting: &'static [u8],
    mut check: impl FnMut(&[u8]),
) -> usize {
    let seeds = seeds(seeds_dir);
    let mut inputs = 0;
    for bytes in &seeds {
        for cut in 0..=bytes.len() {
            check(&bytes[..cut]);
            inputs += 1;
        }
    }
    let mut mutator = Mutator::new(seed, interesting);
    for _ in 0..rounds {
        check(&mutator.mutant(&seeds));
        inputs += 1;
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_mutants() {
        let seeds = vec![b"EHLO a\r\n".to_vec(), b"MAIL FROM:<a@b>\r\n".to_vec()];
        let mut a = Mutator::new(7, b"\r\n");
        let mut b = Mutator::new(7, b"\r\n");
        let mutants: Vec<_> = (0..50).map(|_| a.mutant(&seeds)).collect();
        assert_eq!(
            mutants,
            (0..50).map(|_| b.mutant(&seeds)).collect::<Vec<_>>()
        );
        assert!(
            mutants.iter().any(|m| !seeds.contains(m)),
            "nothing mutated"
        );
    }

    #[test]
    fn empty_inputs_are_mutated_without_panicking() {
        let mut m = Mutator::new(1, b"x");
        for _ in 0..100 {
            let mut empty = Vec::new();
            m.mutate(&mut empty);
            assert!(empty.len() <= 9, "at most one insertion per edit");
            assert!(m.splice(&[], &[]).is_empty());
        }
    }

    #[test]
    fn run_checks_every_truncation_and_every_mutant() {
        let dir = std::env::temp_dir().join(format!("postern-mutate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), b"abc").unwrap();
        let mut seen = 0;
        let inputs = run(&dir, 3, 10, b"z", |_| seen += 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((inputs, seen), (4 + 10, 4 + 10));
    }
}
