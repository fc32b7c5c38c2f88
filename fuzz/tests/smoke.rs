//! The in-CI fuzz run (issue 7): for every decoder, every seed of its generated corpus, every
//! input of the minimised AFL++ corpus in `fuzz/afl-corpus/<target>/` and every committed
//! regression input in `fuzz/regressions/<target>/`, then a fixed number of
//! deterministic mutants (bit flips, truncations, splices, varint and length tweaks). Any panic,
//! broken limit, unverified block or failed `decode(encode(x))` round trip fails the test and
//! prints the input in hex (also saved under the temp dir, ready to be copied to
//! `fuzz/regressions/<target>/`).
//!
//! `CAIRN_FUZZ_MUTANTS` (per target) and `CAIRN_FUZZ_SEED` change the budget and the mutants;
//! `cargo run -p cairn-fuzz -- run` does the same for longer, and `fuzz/afl` is the
//! coverage-guided fuzzer for long runs.

#![allow(clippy::expect_used)]

use std::sync::OnceLock;

use cairn_fuzz::{afl_corpus, by_name, regressions, run_target, seeds, Budget};

/// Mutants per target in CI: a few seconds each in a debug build on the CI machine.
const CI_MUTANTS: u64 = 100_000;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

fn corpora() -> &'static seeds::Corpora {
    static CORPORA: OnceLock<seeds::Corpora> = OnceLock::new();
    CORPORA.get_or_init(|| seeds::generate().expect("seed corpora"))
}

fn smoke(name: &str) {
    let target = by_name(name).expect("target");
    let seeds = &corpora()[name];
    let corpus = afl_corpus(name).expect("committed corpus");
    let regressions = regressions(name).expect("regression inputs");
    let inputs = seeds.len() + corpus.len() + regressions.len();
    let budget = Budget {
        mutants: env_u64("CAIRN_FUZZ_MUTANTS", CI_MUTANTS),
        time: None,
        seed: env_u64("CAIRN_FUZZ_SEED", 7),
    };
    let report = run_target(target, &[seeds, &corpus, &regressions], budget);
    let save_dir = std::env::temp_dir().join("cairn-fuzz-failures");
    let text = report.describe(Some(&save_dir));
    eprint!("{text}");
    assert!(report.failures.is_empty(), "{text}");
    assert_eq!(
        report.executions,
        inputs as u64 + budget.mutants,
        "the run stopped early"
    );
    assert!(seeds.len() >= 5, "{name}: only {} seeds", seeds.len());
}

#[test]
fn dag_pb_decoder_survives_mutated_nodes() {
    smoke("dag_pb");
}

#[test]
fn unixfs_decoder_survives_mutated_data() {
    smoke("unixfs");
}

#[test]
fn car_import_survives_mutated_archives() {
    smoke("car");
}

#[test]
fn bitswap_decoder_survives_mutated_messages() {
    smoke("bitswap");
}

#[test]
fn cid_and_path_parsers_survive_mutated_text() {
    smoke("cid_path");
}

#[test]
fn ipns_record_verification_survives_mutated_records() {
    smoke("ipns_record");
}
