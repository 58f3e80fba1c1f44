#![no_main]
//! See tests/fuzz/checks.rs for what this target checks.

#[path = "../../tests/fuzz/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
