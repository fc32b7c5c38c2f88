//! Bitswap message decoding (what a peer sends): never panics, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_net::bitswap::protocol::decode(data);
});
