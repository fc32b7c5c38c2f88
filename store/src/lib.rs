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
//! - `chunker`: [`ChunkerSpec`] (`size-N`, `fastcdc-MIN-AVG-MAX`) and the streaming [`Chunker`].
//! - `importer`: [`import_reader`] / [`import_path`], files and trees into Kubo-identical UnixFS DAGs
//!   ([`ImportOptions`]); `importer/file.rs` (balanced file trees, parallel hashing), `importer/dir.rs` (walks, directories),
//!   `importer/update.rs` (trees a caller assembles: [`build_directory`], [`import_file`], and
//!   [`update_sharded_directory`], which re-encodes only the shards on changed names' paths).
//! - `hamt`: HAMT-sharded directories (shard building, hash and bucket helpers for lookups).
//! - `murmur3`: murmur3-x64-128/64, the HAMT hash.
//! - `source`: the [`BlockSource`] read trait and [`LocalSource`].
//! - `reader`: [`DagReader`], reading UnixFS DAGs (stat, ranged reads, [`FileCursor`], streamed listings ([`DirCursor`], `reader/dir.rs`: HAMT structure checks), path resolution).
//! - `sled_store`: [`SledStore`], the on-disk blockstore (block files and append-only pack files, a
//!   sled index that [`SledStore::rebuild`] can always rebuild from them).
//! - `pack`: the pack file format (small blocks and tombstones).
//! - `space`: the free-space guard.
//! - `fault`: crash points for fault-injection tests (`CAIRN_FAULT_KILL_AT`).
//! - `journal`: the append-only pin journal (pins and durable GC roots without sled).
//! - `repo`: [`Repo`], the repo directory (config, identity, lock, store) and [`ImportSession`].
//! - `pins`: [`Pins`], recursive and direct pins.
//! - `gc`: mark-and-sweep garbage collection, GC [`Roots`], the live set that protects imports.
//! - `car`: CAR v1 export and import (`car::export`, `car::import`).
//! - `walk`: [`links`] of a block and the [`DagWalk`] depth-first walker.
//! - `path`: [`CidPath`], `<cid>/a/b` and `/ipfs/<cid>/a/b` content paths.
//! - `ipns`: share keys ([`ShareKey`]), IPNS names ([`IpnsName`]) and signed records ([`IpnsRecord`]).
//!
//! ```
//! use cairn_store::{cid_for, HashAlg, RAW};
//! let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"hello world\n");
//! assert_eq!(cid.to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod atomic;
mod block;
mod blockstore;
mod car;
mod chunker;
pub mod commit;
mod fault;
mod gc;
mod hamt;
mod hash;
pub mod heads;
pub mod identity;
mod importer;
mod ipns;
mod journal;
mod members;
pub mod merge;
mod murmur3;
mod pack;
mod path;
mod pb;
mod pins;
mod reader;
mod repo;
mod share;
mod sink;
mod sled_store;
mod source;
mod space;
#[cfg(test)]
mod test_blocks;
mod unixfs;
mod varint;
mod walk;

pub use atomic::replace_file;
pub use block::Block;
pub use blockstore::{Blockstore, IndexError, IndexProblem, StoreError, StoreStats};
pub use bytes::Bytes;
pub use car::{
    encode_header as car_header, export as export_car, import as import_car, CarError, CarStats,
    MAX_BLOCK as CAR_MAX_BLOCK, MAX_HEADER as CAR_MAX_HEADER,
};
pub use chunker::{Chunker, ChunkerError, ChunkerSpec, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
pub use cid::Cid;
pub use fault::{crash_point, FAULT_ENV};
pub use gc::{GcError, GcReport, Roots, GC_UNINDEXED_TOLERANCE};
pub use hamt::build_sharded_directory;
pub use hash::{
    cid_for, verify, HashAlg, UnknownHash, VerifyError, BLAKE3, DAG_CBOR, DAG_PB, RAW, SHA2_256,
};
pub use importer::{
    build_directory, build_symlink, import_file, import_path, import_reader, needs_sharding,
    update_sharded_directory, DirChild, DirNode, ImportError, ImportEvent, ImportOptions, Imported,
    OptionsError, UpdateError, DEFAULT_HAMT_SHARD_THRESHOLD, DEFAULT_MAX_LINKS,
};
pub use ipns::{
    format_utc_seconds, CborError, CborValue, Ed25519PublicKey, IpnsName, IpnsRecord, KeyError,
    NameError, PublicKeyError, RecordError, RecordFields, RecordValue, SealError, ShareKey,
    CBOR_MAX_DEPTH, DEFAULT_TTL as IPNS_DEFAULT_TTL, KEY_TYPE_ED25519, LIBP2P_KEY,
    MAX_RECORD_SIZE as IPNS_MAX_RECORD_SIZE, SEALED_LEN,
    SIGNATURE_V2_PREFIX as IPNS_SIGNATURE_V2_PREFIX,
};
pub use members::{
    check_member_label, Member, MemberList, MembersError, MAX_MEMBERS, MEMBERS_SIGNATURE_PREFIX,
};
pub use path::{cid_parse_reason, CidPath, PathError, CID_HINT};
pub use pb::{PbError, PbLink, PbNode, MAX_LINKS};
pub use pins::{Pin, PinError, PinKind, PinReport, Pins};
pub use reader::{
    is_safe_name, DagReader, DirCursor, DirEntry, EntryKind, FileCursor, NodeInfo, ReadError,
    MAX_DEPTH, MAX_DIR_DEPTH, MAX_DIR_ENTRIES, MAX_NAME_LEN,
};
pub use repo::{
    Config, GatewayConfig, GcConfig, ImportConfig, ImportSession, NetworkConfig, RepairReport,
    Repo, RepoError, RepoLock, SharesConfig, StoreConfig, VerifyReport,
};
pub use share::{
    check_label, record_cid, Retention, Share, ShareError, Shares, Version, FIELD_COMMIT,
    FIELD_PREV, SHARES_DIR,
};
pub use sink::{BlockSink, NullSink, StoreSink};
pub use sled_store::{RebuildReport, SledStore, StoreOptions};
pub use source::{
    read_small_now, read_verified, BlockSource, GetError, LocalSource, INLINE_READ_MAX,
};
pub use space::auto_reserve;
pub use unixfs::{DataType, UnixFsData, UnixFsError, UnixTime};
pub use walk::{codec_has_links, links, DagWalk, Visit, WalkError, WalkMode};
