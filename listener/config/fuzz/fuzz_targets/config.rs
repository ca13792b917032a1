//! Feeds arbitrary bytes to the configuration loader: it may not panic, and a
//! configuration it accepts must be valid and survive a round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_config::check_loader_input;

fuzz_target!(|data: &[u8]| check_loader_input(data));
