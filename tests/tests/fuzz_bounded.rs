//! The bounded fuzz run of CI: every fuzz target's body (`fuzz/src/lib.rs`,
//! the code libFuzzer drives, compiled in here as a module so that CI
//! builds nothing extra) fed by a plain mutation fuzzer, as an ordinary
//! `cargo test` on the stable toolchain with no instrumentation.
//!
//! Why not libFuzzer in CI: installing cargo-fuzz and building the four
//! instrumented targets costs ~7 minutes on a fresh 2-core machine, more
//! than the CI budget has left. This run is blind (no coverage feedback)
//! but cheap: it replays `fuzz/regressions/` and `fuzz/seeds/` (the
//! corpus libFuzzer's runs distilled, so mutations start deep inside the
//! formats), then mutates them for a few seconds per target. The debug
//! build has overflow checks and debug assertions on, and the crate's
//! `BoundedAllocator` refuses any single allocation over 256 MiB, so a
//! size taken from the input aborts the run.
//!
//! Environment: `RUNNEL_FUZZ_CI_SECONDS` (per target, default 15),
//! `RUNNEL_FUZZ_CI_SEED` (default: from the clock; printed, and a run
//! with the same seed and corpus makes the same inputs in the same order).
//! A panicking input is written to `target/fuzz/artifacts/ci-<target>-<n>`
//! and printed in hex; save it under `fuzz/regressions/<target>/`.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod runnel_fuzz;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutations per derived input, at most: few keep the input close to a
/// valid one (deep in the format), a handful reaches odd corners.
const MUTATIONS_MAX: u64 = 8;
/// Inputs grow to at most this (the seeds are far smaller; libFuzzer's
/// default `-max_len` is 4,096 for an empty corpus).
const INPUT_BYTES_MAX: usize = 64 << 10;
/// Values that break size and count fields (lengths of -1, 0, maxima).
const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// SplitMix64: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    std::env::var("RUNNEL_FUZZ_CI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

fn budget() -> Duration {
    let seconds = std::env::var("RUNNEL_FUZZ_CI_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(seconds)
}

/// The committed inputs of a target: regressions first, then seeds.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["regressions", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || name.starts_with("README") || !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).expect("a corpus file is readable");
            inputs.push((path, bytes));
        }
    }
    inputs
}

/// One mutation of `input` in place (`other` is a second corpus input to
/// splice from).
fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = rng.next() as u8;
        }
        2 if len >= 4 => {
            // A size or count field: an interesting value, either byte order.
            let at = rng.below(len - 3);
            let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
            let bytes = if rng.below(2) == 0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            input[at..at + 4].copy_from_slice(&bytes);
        }
        3 if len < INPUT_BYTES_MAX => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(at..at, fill);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            input.drain(at..at + n);
        }
        5 if len > 0 && len < INPUT_BYTES_MAX => {
            // Repeat a piece (a record or array element twice).
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(256));
            let piece = input[at..at + n].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, piece);
        }
        6 if !other.is_empty() => {
            // Splice: our head, the other input's tail.
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
            input.truncate(INPUT_BYTES_MAX);
        }
        7 if len > 0 => {
            let at = rng.below(len);
            input.truncate(at);
        }
        8 if len > 0 => {
            // A signed varint of -1 (a null), as the records use.
            let at = rng.below(len);
            input[at] = 0x01;
        }
        _ => input.push(rng.next() as u8),
    }
}

/// Replays the corpus, then mutates it until the budget is spent. Panics
/// (naming the input) if any input panics.
fn fuzz(target: &str, run: fn(&[u8])) {
    let corpus = corpus(target);
    assert!(
        !corpus.is_empty(),
        "fuzz/seeds/{target} is empty: the bounded run needs seeds"
    );
    for (path, bytes) in &corpus {
        if std::panic::catch_unwind(|| run(bytes)).is_err() {
            panic!("{target}: {} panics", path.display());
        }
    }
    let seed = seed();
    let budget = budget();
    println!(
        "fuzz {target}: {} corpus inputs replayed; mutating for {} s, RUNNEL_FUZZ_CI_SEED={seed}",
        corpus.len(),
        budget.as_secs()
    );
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut executions: u64 = 0;
    while started.elapsed() < budget {
        let base = &corpus[rng.below(corpus.len())].1;
        let other = &corpus[rng.below(corpus.len())].1;
        let mut input = base.clone();
        for _ in 0..1 + rng.next() % MUTATIONS_MAX {
            mutate_once(&mut rng, &mut input, other);
        }
        executions += 1;
        if std::panic::catch_unwind(|| run(&input)).is_err() {
            let saved = save(target, executions, &input);
            panic!(
                "{target}: input {executions} of seed {seed} panics; saved to {} ({})",
                saved.display(),
                hex(&input)
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "fuzz {target}: {executions} executions in {seconds:.1} s ({:.0}/s), no crash",
        executions as f64 / seconds
    );
    assert!(executions > 0, "{target}: no input ran within the budget");
}

fn save(target: &str, n: u64, input: &[u8]) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("fuzz/artifacts");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("ci-{target}-{n}"));
    let _ = std::fs::write(&path, input);
    path
}

fn hex(input: &[u8]) -> String {
    input.iter().take(200).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn kafka_request() {
    fuzz("kafka_request", runnel_fuzz::kafka_request::run);
}

#[test]
fn internal_frame() {
    fuzz("internal_frame", runnel_fuzz::internal_frame::run);
}

#[test]
fn batch_check() {
    fuzz("batch_check", runnel_fuzz::batch_check::run);
}

#[test]
fn segment_recovery() {
    fuzz("segment_recovery", runnel_fuzz::segment_recovery::run);
}

/// The mutator must change inputs (a fuzzer that replays its seeds
/// unchanged finds nothing) and must stay within its size bound.
#[test]
fn mutations_change_inputs_within_bounds() {
    let mut rng = Rng(7);
    let base = vec![0u8; 100];
    let other = vec![0xffu8; 50];
    let mut changed = 0;
    for _ in 0..1_000 {
        let mut input = base.clone();
        for _ in 0..1 + rng.next() % MUTATIONS_MAX {
            mutate_once(&mut rng, &mut input, &other);
        }
        assert!(input.len() <= INPUT_BYTES_MAX);
        if input != base {
            changed += 1;
        }
    }
    assert!(changed > 900, "only {changed} of 1,000 inputs changed");
}
