//! The loader's promise for *any* input, as a check that panics when it does not hold.
//! The cargo-fuzz target in `fuzz/` and the stable mutation test in
//! `tests/mutations.rs` run the same check.

use crate::Config;

/// Parses `data` as a configuration file: never a panic; an error names a field and
/// says something; an accepted configuration is valid and reads back the same after
/// being written out.
pub fn check_loader_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            config.validate().expect("a parsed configuration is valid");
            let yaml = serde_yaml::to_string(&config).expect("a configuration serializes");
            let again = Config::parse(&yaml)
                .unwrap_or_else(|e| panic!("written out, it no longer loads: {e}\n{yaml}"));
            assert_eq!(again, config, "a round trip changes nothing");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}
