//! cairn-store: content-addressed blocks, IPFS-compatible UnixFS DAGs, and the sled blockstore.
//!
//! Everything here is local and synchronous except [`BlockSource`], the narrow async read trait
//! that the filesystem reads through (so it never knows whether a block came from disk or a peer).
//!
//! # Layout
//! - `hash`: hash functions, CID construction and verification.
//! - `block`: [`Block`], bytes with their CID.
//! - `varint`, `pb`, `unixfs`: the dag-pb and UnixFS codecs (canonical, Kubo-identical).
//! - `blockstore`: the [`Blockstore`] trait.
//! - `source`: the [`BlockSource`] read trait and [`LocalSource`].
//!
//! ```
//! use cairn_store::{cid_for, HashAlg, RAW};
//! let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"hello world\n");
//! assert_eq!(cid.to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod block;
mod blockstore;
mod hash;
mod pb;
mod sink;
mod source;
mod unixfs;
mod varint;

pub use block::Block;
pub use blockstore::{Blockstore, StoreError, StoreStats};
pub use bytes::Bytes;
pub use cid::Cid;
pub use hash::{cid_for, verify, HashAlg, UnknownHash, VerifyError, BLAKE3, DAG_PB, RAW, SHA2_256};
pub use pb::{PbError, PbLink, PbNode, MAX_LINKS};
pub use sink::{BlockSink, NullSink, StoreSink};
pub use source::{BlockSource, GetError, LocalSource};
pub use unixfs::{DataType, UnixFsData, UnixFsError, UnixTime};
