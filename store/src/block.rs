//! A block: bytes together with the CID they hash to.

use bytes::Bytes;
use cid::Cid;

use crate::hash::{self, VerifyError};

/// Bytes and their CID. A `Block` built with [`Block::verified`] or [`Block::encode`]
/// always holds bytes that match the CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Checks `data` against `cid` and wraps them.
    pub fn verified(cid: Cid, data: Bytes) -> Result<Self, VerifyError> {
        hash::verify(&cid, &data)?;
        Ok(Block { cid, data })
    }

    /// Hashes `data` and wraps it with the CID that results.
    pub fn encode(version: u8, codec: u64, alg: hash::HashAlg, data: Bytes) -> Self {
        let cid = hash::cid_for(version, codec, alg, &data);
        Block { cid, data }
    }

    /// Wraps bytes whose CID the caller has just computed or verified itself.
    pub fn trusted(cid: Cid, data: Bytes) -> Self {
        Block { cid, data }
    }

    /// The CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Splits into CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}
