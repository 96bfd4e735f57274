#![no_main]
//! See `runnel_fuzz::internal_frame` (fuzz/src/lib.rs) for what this runs and its input format.
libfuzzer_sys::fuzz_target!(|data: &[u8]| runnel_fuzz::internal_frame::run(data));
