#![no_main]
//! See `runnel_fuzz::segment_recovery` (fuzz/src/lib.rs) for what this runs and its input format.
libfuzzer_sys::fuzz_target!(|data: &[u8]| runnel_fuzz::segment_recovery::run(data));
