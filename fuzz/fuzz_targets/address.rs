//! libFuzzer entry point for the `address` harness (see src/lib.rs for what it feeds where
//! and which properties it checks). Run with scripts/fuzz address.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::address(data));
