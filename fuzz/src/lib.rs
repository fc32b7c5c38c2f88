//! cairn-fuzz: one set of fuzz entry points for every decoder that reads bytes from a peer, a file
//! or a user, with the seed corpora and the bounded mutation run that CI uses.
//!
//! The same entry points ([`TARGETS`]) are driven three ways:
//! - `cargo test -p cairn-fuzz` (part of `cargo test --workspace`): every seed and committed
//!   regression input, then a fixed number of deterministic mutants per target (`tests/smoke.rs`);
//! - `fuzz/afl`: coverage-guided fuzzing with AFL++ through cargo-afl, on stable Rust, for long runs;
//! - `fuzz/libfuzzer`: the same with libFuzzer through cargo-fuzz, on nightly.
//!
//! `fuzz/README.md` says how to run each, and `docs/BENCHMARKS.md` ("Fuzzing (issue 7)") what the
//! long runs found.
//!
//! # Layout
//! - `targets`: the entry points ([`dag_pb`], [`unixfs`], [`car`], [`bitswap`], [`cid_path`]) and [`TARGETS`].
//! - `seeds`: seed corpora built with cairn's encoders ([`seeds::generate`]).
//! - `mutate`: the deterministic mutator of the bounded run ([`Rng`], [`mutate()`]).
//! - `run`: the bounded run ([`run_target`], [`Budget`], [`Report`]) and regression inputs.
//!
//! ```
//! use cairn_fuzz::{run_target, seeds, Budget, TARGETS};
//! let corpora = seeds::generate().unwrap();
//! let t = &TARGETS[0];
//! let report = run_target(t, &[&corpora[t.name]], Budget { mutants: 100, time: None, seed: 1 });
//! assert!(report.failures.is_empty(), "{}", report.describe(None));
//! ```

pub mod mutate;
mod run;
pub mod seeds;
mod targets;

pub use mutate::{mutate, Rng};
pub use run::{
    afl_corpus, hex, pack, read_inputs, regressions, run_one, run_target, unpack, Budget, Failure,
    Report, MAX_FAILURES,
};
pub use targets::{
    bitswap, by_name, car, cid_path, dag_pb, fuzz_share_key, ipns_record, unixfs, Target, TARGETS,
};
