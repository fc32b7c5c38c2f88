//! CAR v1 import from arbitrary bytes: never panics, and every block it accepts matches its CID.
#![no_main]
use cairn_store::{verify, Block, BlockSink, StoreError};
use libfuzzer_sys::fuzz_target;

struct Check;

impl BlockSink for Check {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        for b in blocks {
            verify(b.cid(), b.data()).expect("CAR import passed on an unverified block");
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = cairn_store::import_car(data, &Check);
});
