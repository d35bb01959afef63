//! libFuzzer entry point for the `x25519_handshake` harness (src/lib.rs says what it feeds
//! where and which properties it checks). Run with scripts/fuzz x25519.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::x25519_handshake(data));
