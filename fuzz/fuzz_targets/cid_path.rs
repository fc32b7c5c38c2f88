//! `<cid>/path` parsing of user input: never panics; parsed paths print and parse back the same.
#![no_main]
use cairn_store::CidPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = text.parse::<CidPath>() {
            let again: CidPath = p.to_string().parse().expect("printed path parses");
            assert_eq!(again, p);
        }
    }
});
