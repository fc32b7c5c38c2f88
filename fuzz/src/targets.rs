//! The fuzz entry points: one function per decoder that reads bytes from a peer, a file or a user.
//!
//! Each function takes arbitrary bytes, runs them through the decoder, and panics only when the
//! decoder breaks one of its promises:
//! - it never panics, whatever the bytes (a panic inside the decoder propagates);
//! - it keeps its documented limits (links, blocksizes, wantlist entries, block sizes);
//! - whatever it accepts, cairn's encoder writes back into bytes that decode to the same value
//!   (`decode(encode(x)) == x`, and encoding that again gives the same bytes);
//! - every block it hands on matches its CID.
//!
//! The coverage-guided harnesses (`fuzz/afl`, `fuzz/libfuzzer`) and the bounded CI run
//! (`tests/smoke.rs`) call exactly these functions, so a crash found by one replays in the others.

use bytes::Bytes;
use cairn_net::bitswap::protocol::{
    self, Message, Version, MAX_BLOCK_BYTES, MAX_MESSAGE_BYTES, MAX_PRESENCES, MAX_WANTLIST_ENTRIES,
};
use cairn_net::bitswap::WantType;
use cairn_net::MemoryStore;
use cairn_store::{
    cid_for, export_car, import_car, verify, Block, BlockSink, Blockstore, Cid, CidPath, HashAlg,
    PbNode, StoreError, UnixFsData, CAR_MAX_BLOCK, DAG_PB, MAX_LINKS,
};
use std::sync::Mutex;

/// One fuzz target: a name (the corpus directory and the harness argument) and its entry point.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// `dag_pb`, `unixfs`, `car`, `bitswap` or `cid_path`.
    pub name: &'static str,
    /// What is decoded.
    pub about: &'static str,
    /// The entry point; panics when the decoder breaks a promise.
    pub run: fn(&[u8]),
}

/// Every target, in the order runs and reports list them.
pub const TARGETS: [Target; 6] = [
    Target {
        name: "dag_pb",
        about: "dag-pb PBNode decoding (every block of a UnixFS DAG)",
        run: dag_pb,
    },
    Target {
        name: "unixfs",
        about: "UnixFS Data message decoding (inside every dag-pb node)",
        run: unixfs,
    },
    Target {
        name: "car",
        about: "CAR v1 import (`cairn import`), then export and re-import",
        run: car,
    },
    Target {
        name: "bitswap",
        about: "Bitswap message and frame decoding (what a peer sends)",
        run: bitswap,
    },
    Target {
        name: "cid_path",
        about: "binary CIDs and `<cid>/path` text (user input, links, CAR sections)",
        run: cid_path,
    },
    Target {
        name: "ipns_record",
        about: "IPNS records (share heads, DHT and pubsub values) and IPNS names",
        run: ipns_record,
    },
];

/// The key every `ipns_record` seed is signed with (a fixed seed: replays are exact).
pub fn fuzz_share_key() -> cairn_store::ShareKey {
    cairn_store::ShareKey::from_seed(&[7u8; 32])
}

/// IPNS record verification against the fuzz key's name, and name parsing: never a panic;
/// whatever verifies verifies again from its own bytes with the same fields, and fits the size
/// limit; a name that parses prints as text that parses to the same name.
pub fn ipns_record(data: &[u8]) {
    let name = fuzz_share_key().name();
    match cairn_store::IpnsRecord::verify(data, &name) {
        Ok(record) => {
            assert!(
                data.len() <= cairn_store::IPNS_MAX_RECORD_SIZE,
                "oversized record accepted"
            );
            let again = cairn_store::IpnsRecord::verify(record.as_bytes(), &name)
                .unwrap_or_else(|e| panic!("a verified record does not verify again: {e}"));
            assert_eq!(again.sequence(), record.sequence());
            assert_eq!(again.value(), record.value());
            assert_eq!(again.extra(), record.extra());
            let _ = record
                .value()
                .to_string()
                .parse::<cairn_store::RecordValue>();
        }
        Err(e) => rejected(e),
    }
    if let Ok(n) = cairn_store::IpnsName::from_routing_key(data) {
        assert_eq!(n.routing_key(), data, "routing key round trip");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = text.parse::<cairn_store::IpnsName>() {
            let back: cairn_store::IpnsName = n
                .to_string()
                .parse()
                .unwrap_or_else(|e| panic!("name {n} does not parse from its own text: {e}"));
            assert_eq!(back, n);
        }
    }
}

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// An input the decoder refused: printing the error (as the CLI and the logs do) must not panic.
fn rejected(e: impl std::fmt::Display) {
    let _ = e.to_string();
}

/// dag-pb: decoding never panics, keeps [`MAX_LINKS`], and round-trips through the encoder.
/// A node's Data is then checked as UnixFS, as every reader of a UnixFS DAG does next.
pub fn dag_pb(data: &[u8]) {
    let node = match PbNode::decode(&Bytes::copy_from_slice(data)) {
        Ok(node) => node,
        Err(e) => return rejected(e),
    };
    assert!(node.links.len() <= MAX_LINKS, "more than MAX_LINKS links");
    let encoded = node.encode();
    let again = match PbNode::decode(&Bytes::from(encoded.clone())) {
        Ok(again) => again,
        Err(e) => panic!("a decoded dag-pb node re-encodes to bytes that do not decode: {e}"),
    };
    assert_eq!(again, node, "dag-pb decode(encode(node)) differs from node");
    assert_eq!(again.encode(), encoded, "dag-pb encoding is not stable");
    if let Some(d) = &node.data {
        unixfs(d);
    }
}

/// UnixFS Data: decoding never panics and round-trips through the encoder.
pub fn unixfs(data: &[u8]) {
    let msg = match UnixFsData::decode(&Bytes::copy_from_slice(data)) {
        Ok(msg) => msg,
        Err(e) => return rejected(e),
    };
    assert!(
        msg.blocksizes.len() <= 1 << 16,
        "more than 65536 blocksizes"
    );
    let encoded = msg.encode();
    let again = match UnixFsData::decode(&Bytes::from(encoded.clone())) {
        Ok(again) => again,
        Err(e) => panic!("a decoded UnixFS message re-encodes to bytes that do not decode: {e}"),
    };
    assert_eq!(again, msg, "UnixFS decode(encode(msg)) differs from msg");
    assert_eq!(again.encode(), encoded, "UnixFS encoding is not stable");
}

/// Checks every block handed over against its CID and keeps it.
#[derive(Debug, Default)]
struct CheckingSink {
    blocks: Mutex<Vec<Block>>,
}

impl CheckingSink {
    fn into_blocks(self) -> Vec<Block> {
        self.blocks
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Multihash code of the identity "hash" (the digest is the data itself).
const IDENTITY: u64 = 0x00;

fn assert_matches_cid(cid: &Cid, data: &[u8], what: &str) {
    if cid.hash().code() == IDENTITY {
        assert_eq!(
            cid.hash().digest(),
            data,
            "{what}: identity block {cid} differs from its digest"
        );
    } else if let Err(e) = verify(cid, data) {
        panic!("{what} handed on a block that does not match its CID: {e}");
    }
}

impl BlockSink for CheckingSink {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        for b in &blocks {
            assert_matches_cid(b.cid(), b.data(), "CAR import");
            assert!(
                b.data().len() as u64 <= CAR_MAX_BLOCK,
                "CAR block over the limit"
            );
        }
        self.blocks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(blocks);
        Ok(())
    }
}

/// CAR v1: import never panics and stores only blocks that match their CIDs. When the roots'
/// DAGs are complete, exporting them and importing the export gives the same roots and blocks.
pub fn car(data: &[u8]) {
    let sink = CheckingSink::default();
    let roots = match import_car(data, &sink) {
        Ok(roots) => roots,
        Err(e) => return rejected(e),
    };
    let store = MemoryStore::new();
    for b in sink.into_blocks() {
        if let Err(e) = store.put(&b) {
            panic!("memory store refused a block: {e}");
        }
    }
    let mut exported = Vec::new();
    if let Err(e) = export_car(&store, &roots, &mut exported) {
        // Incomplete or undecodable DAGs cannot be exported; saying so must not panic.
        return rejected(e);
    }
    let again = CheckingSink::default();
    match import_car(&exported[..], &again) {
        Ok(r) => assert_eq!(r, roots, "re-imported CAR has other roots"),
        Err(e) => panic!("cairn cannot import its own export: {e}"),
    }
    for b in again.into_blocks() {
        match store.get(b.cid()) {
            Ok(Some(d)) => assert_eq!(&d, b.data(), "exported block {} changed", b.cid()),
            _ => panic!("export wrote block {} that the import never had", b.cid()),
        }
    }
}

/// Bitswap: the bytes as one message body, then as a stream of length-prefixed frames (as the
/// handler reads them), each frame decoded as a message.
pub fn bitswap(data: &[u8]) {
    bitswap_message(data);
    let mut stream = futures::io::Cursor::new(data);
    // Each frame consumes at least its length byte, so this ends.
    while let Ok(Some(body)) =
        futures::executor::block_on(protocol::read_frame(&mut stream, MAX_MESSAGE_BYTES))
    {
        bitswap_message(&body);
    }
}

/// What a peer speaking `version` receives when `msg` is sent to it.
fn as_received(msg: &Message, version: Version) -> Message {
    let mut m = msg.clone();
    if version < Version::V120 {
        m.presences.clear();
        for e in &mut m.wantlist {
            e.want_type = WantType::Block;
            e.send_dont_have = false;
        }
    }
    if version == Version::V100 {
        // 1.0.0 blocks carry no prefix: the receiver assumes CIDv0 (dag-pb, sha2-256).
        for (cid, d) in &mut m.blocks {
            *cid = cid_for(0, DAG_PB, HashAlg::Sha2_256, d);
        }
    }
    m
}

fn bitswap_message(body: &[u8]) {
    let msg = match protocol::decode(body) {
        Ok(msg) => msg,
        Err(e) => return rejected(e),
    };
    assert!(
        msg.wantlist.len() <= MAX_WANTLIST_ENTRIES,
        "wantlist over the limit"
    );
    assert!(
        msg.presences.len() <= MAX_PRESENCES,
        "presences over the limit"
    );
    for (cid, d) in &msg.blocks {
        assert!(d.len() <= MAX_BLOCK_BYTES, "block over the limit");
        assert_matches_cid(cid, d, "bitswap decode");
    }
    match protocol::decode_shared(&Bytes::copy_from_slice(body)) {
        Ok(shared) => assert_eq!(shared, msg, "decode_shared differs from decode"),
        Err(e) => panic!("decode_shared refused what decode accepted: {e}"),
    }
    for version in [Version::V100, Version::V110, Version::V120] {
        let encoded = protocol::encode(&msg, version);
        let parts: Vec<u8> = protocol::encode_parts(&msg, version).concat();
        assert_eq!(
            parts, encoded,
            "encode_parts differs from encode ({version:?})"
        );
        if encoded.len() > MAX_MESSAGE_BYTES {
            // Sign-extended varints can make a re-encoding longer than what was received.
            continue;
        }
        match protocol::decode(&encoded) {
            Ok(back) => assert_eq!(
                back,
                as_received(&msg, version),
                "bitswap decode(encode(msg)) differs ({version:?})"
            ),
            Err(e) => panic!("a decoded bitswap message re-encodes ({version:?}) to bytes that do not decode: {e}"),
        }
    }
}

/// CIDs and content paths: binary CIDs (dag-pb links, Bitswap, CAR sections) and, when the bytes
/// are UTF-8, CID text and `<cid>/path`, `/ipfs/<cid>/path` as users type them. Whatever parses
/// prints and parses back to the same value.
pub fn cid_path(data: &[u8]) {
    if let Ok(cid) = Cid::try_from(data) {
        match Cid::try_from(cid.to_bytes().as_slice()) {
            Ok(again) => assert_eq!(again, cid, "binary CID round trip"),
            Err(e) => panic!("CID {cid} does not parse from its own bytes: {e}"),
        }
        check_cid_text(&cid);
    }
    // What a CAR section starts with: a CID, then the block. The bytes consumed must hold that
    // same CID. (They need not be its canonical bytes: the multihash crate accepts a 10-byte
    // varint whose last byte overflows 64 bits, and cairn always re-encodes parsed CIDs.)
    let mut cursor = std::io::Cursor::new(data);
    if let Ok(cid) = Cid::read_bytes(&mut cursor) {
        let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        match data.get(..used).map(Cid::try_from) {
            Some(Ok(again)) => assert_eq!(again, cid, "CID bytes read twice differ"),
            _ => panic!("Cid::read_bytes accepted {used} bytes that Cid::try_from refuses"),
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cid) = text.parse::<Cid>() {
        check_cid_text(&cid);
    }
    match text.parse::<CidPath>() {
        Ok(path) => {
            let printed = path.to_string();
            match printed.parse::<CidPath>() {
                Ok(again) => assert_eq!(again, path, "content path {printed:?} round trip"),
                Err(e) => panic!("printed content path {printed:?} does not parse: {e}"),
            }
        }
        Err(e) => rejected(e),
    }
}

fn check_cid_text(cid: &Cid) {
    let text = cid.to_string();
    match text.parse::<Cid>() {
        Ok(again) => assert_eq!(&again, cid, "CID text {text} round trip"),
        Err(e) => panic!("CID text {text} does not parse back: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_accepts_empty_and_garbage_input() {
        for t in &TARGETS {
            (t.run)(&[]);
            (t.run)(&[0xff; 64]);
            (t.run)(b"\x0a\x02\x08\x01");
        }
        assert!(by_name("car").is_some());
        assert!(by_name("nope").is_none());
    }

    #[test]
    #[should_panic(expected = "does not match its CID")]
    fn a_forged_block_is_caught() {
        let cid = cid_for(1, cairn_store::RAW, HashAlg::Sha2_256, b"real");
        assert_matches_cid(&cid, b"forged", "test");
    }
}
