//! Feeds arbitrary bytes to the DATA framer, whole and cut into pieces, with every
//! line-ending policy: it may not panic, the pieces must give the result of the whole,
//! and what it returns must hold the documented invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::invariants::check_data_input;

fuzz_target!(|data: &[u8]| check_data_input(data));
