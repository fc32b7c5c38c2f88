//! dag-pb decoding: never panics, and whatever decodes re-encodes to bytes that decode the same.
#![no_main]
use cairn_store::{Bytes, PbNode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = PbNode::decode(&Bytes::copy_from_slice(data)) {
        let again = PbNode::decode(&Bytes::from(node.encode())).expect("re-encoded node decodes");
        assert_eq!(again, node);
    }
});
