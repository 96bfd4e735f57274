#![no_main]
//! See `runnel_fuzz::batch_check` (fuzz/src/lib.rs) for what this runs and its input format.
libfuzzer_sys::fuzz_target!(|data: &[u8]| runnel_fuzz::batch_check::run(data));
