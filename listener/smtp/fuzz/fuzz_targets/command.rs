//! Feeds arbitrary bytes to the command-line splitter and the command parser: neither
//! may panic, and what they return must hold the documented invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::invariants::check_command_input;

fuzz_target!(|data: &[u8]| check_command_input(data));
