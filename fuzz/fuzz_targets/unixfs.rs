//! UnixFS Data decoding: never panics; decoded messages survive an encode/decode round trip.
#![no_main]
use cairn_store::{Bytes, UnixFsData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = UnixFsData::decode(&Bytes::copy_from_slice(data)) {
        let again = UnixFsData::decode(&Bytes::from(msg.encode())).expect("re-encoded data decodes");
        assert_eq!(again, msg);
    }
});
