//! libFuzzer harness for the `dag_pb` entry point of cairn-fuzz (what it checks is documented there).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz::dag_pb(data));
