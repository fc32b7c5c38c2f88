//! An in-memory block store for the crate's unit tests: a sink that keeps what it is given
//! (counting the blocks put) and a source that serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;

use crate::source::GetError;
use crate::{Block, BlockSink, BlockSource, StoreError};

#[derive(Default, Clone)]
pub(crate) struct MemBlocks {
    pub blocks: Arc<Mutex<HashMap<Cid, Bytes>>>,
    pub puts: Arc<Mutex<usize>>,
}

impl BlockSink for MemBlocks {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        *self.puts.lock().unwrap() += blocks.len();
        let mut m = self.blocks.lock().unwrap();
        for b in blocks {
            let (c, d) = b.into_parts();
            m.insert(c, d);
        }
        Ok(())
    }
}

impl BlockSource for MemBlocks {
    async fn get(&self, cid: &Cid) -> Result<Bytes, GetError> {
        self.blocks
            .lock()
            .unwrap()
            .get(cid)
            .cloned()
            .ok_or(GetError::NotFoundLocally(*cid))
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.blocks.lock().unwrap().contains_key(cid)
    }
}
