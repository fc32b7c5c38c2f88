//! Interop with Helia (JavaScript IPFS), an independent Bitswap + Kademlia implementation.
//!
//! Needs `net/tests/helia/node_modules` (run `scripts/helia-setup.sh`). Without it these tests
//! fail, unless `CAIRN_SKIP_INTEROP=1` is set, in which case they are skipped with a message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use cairn_net::{fetch_dag, NetSource};
use cairn_store::{cid_for, BlockSource, Blockstore, Cid, HashAlg, PbNode, RAW};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Helia {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    peer_id: String,
    addr: String,
}

fn helia_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helia")
}

impl Helia {
    /// Starts the Helia peer, or returns `None` when interop tests are explicitly skipped.
    async fn spawn() -> Option<Helia> {
        let dir = helia_dir();
        if !dir.join("node_modules").is_dir() {
            if std::env::var("CAIRN_SKIP_INTEROP").as_deref() == Ok("1") {
                eprintln!("CAIRN_SKIP_INTEROP=1: skipping the Helia interop test");
                return None;
            }
            panic!(
                "{}/node_modules is missing: run scripts/helia-setup.sh (needs Node 20 and npm), \
                 or set CAIRN_SKIP_INTEROP=1 to skip interop tests",
                dir.display()
            );
        }
        let mut child = Command::new("node")
            .arg("peer.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node (Node.js 20) must be installed for interop tests");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("Helia starts within 30 s")
            .unwrap()
            .expect("Helia printed READY");
        let mut parts = ready.split_whitespace();
        assert_eq!(parts.next(), Some("READY"), "{ready}");
        let peer_id = parts.next().unwrap().to_string();
        let addr = parts.next().unwrap().to_string();
        Some(Helia {
            _child: child,
            stdin,
            lines,
            peer_id,
            addr,
        })
    }

    async fn cmd(&mut self, line: &str) -> Result<String, String> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("Helia answers {line:?} within 60 s"))
            .unwrap()
            .expect("Helia is still running");
        match reply.strip_prefix("OK") {
            Some(rest) => Ok(rest.trim().to_string()),
            None => Err(reply),
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let cid = cid_for(1, RAW, HashAlg::Sha2_256, data);
    cid.hash()
        .digest()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_adds_a_file_cairn_fetches_it() {
    let Some(mut helia) = Helia::spawn().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.bin");
    let content = bytes(2024, 3 * 1024 * 1024 + 12_345);
    std::fs::write(&path, &content).unwrap();
    let cid: Cid = helia
        .cmd(&format!("add {}", path.display()))
        .await
        .unwrap()
        .parse()
        .unwrap();

    let (node, store) = start_mem(test_config()).await;
    let peer = node.connect(&helia.addr).await.unwrap();
    assert_eq!(peer.to_string(), helia.peer_id);
    let source = NetSource::new(node.clone());
    let done = fetch_dag(&source, cid, 8, |_| {}).await.unwrap();
    assert!(done.blocks >= 5, "{done:?}");

    // Reassemble: the root's links, in order, are raw leaves (Helia: CIDv1, raw leaves).
    let root = PbNode::decode(&store.get(&cid).unwrap().unwrap()).unwrap();
    let mut out = Vec::new();
    for l in root.links {
        assert_eq!(l.cid.codec(), RAW);
        out.extend_from_slice(&source.get(&l.cid).await.unwrap());
    }
    assert_eq!(Bytes::from(out), content);
    assert_eq!(node.bitswap_stats().await.unwrap().rejected_blocks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_has_a_block_helia_fetches_it() {
    let Some(mut helia) = Helia::spawn().await else {
        return;
    };
    let (node, store) = start_mem(test_config()).await;
    let small = raw_block(1, 5000);
    let big = raw_block(2, 1_500_000);
    store.put(&small).unwrap();
    store.put(&big).unwrap();
    let my_addr = addr(&node).await;
    helia.cmd(&format!("dial {my_addr}")).await.unwrap();
    for b in [&small, &big] {
        let got = helia.cmd(&format!("get {} 20000", b.cid())).await.unwrap();
        assert_eq!(got, format!("{} {}", b.data().len(), sha256_hex(b.data())));
    }
    let s = node.bitswap_stats().await.unwrap();
    assert_eq!(s.blocks_sent, 2, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_provider_records_cross_between_cairn_and_helia() {
    let Some(mut helia) = Helia::spawn().await else {
        return;
    };
    let (node, store) = start_mem(test_config()).await;
    node.connect(&helia.addr).await.unwrap();

    // cairn provides; Helia finds cairn. Identify must first tell each side that the other
    // speaks /ipfs/kad/1.0.0, so retry until both routing tables hold the other.
    let mine = raw_block(3, 1000);
    store.put(&mine).unwrap();
    let me = node.peer_id().to_string();
    let mut found = String::new();
    for _ in 0..20 {
        node.provide(vec![*mine.cid()]).await.unwrap();
        found = helia
            .cmd(&format!("findprovs {} 3000", mine.cid()))
            .await
            .unwrap_or_default();
        if found.contains(&me) {
            break;
        }
    }
    assert!(
        found.contains(&me),
        "Helia did not find cairn as provider: {found:?}"
    );

    // Helia provides; cairn finds Helia, then fetches from it.
    let theirs = helia
        .cmd(&format!("block {}", "ab".repeat(777)))
        .await
        .unwrap();
    let theirs: Cid = theirs.parse().unwrap();
    helia.cmd(&format!("provide {theirs}")).await.unwrap();
    let provs = node
        .find_providers(theirs, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        provs.iter().any(|p| p.to_string() == helia.peer_id),
        "cairn did not find Helia as provider: {provs:?}"
    );
    let data = node.fetch(theirs).await.unwrap();
    assert_eq!(data.len(), 777);
}

/// A file cairn's importer built (multi-level, under both Kubo's CIDv0 profile and CIDv1 raw
/// leaves) is read by Helia's UnixFS exporter over Bitswap, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_reads_a_unixfs_file_cairn_imported() {
    let Some(mut helia) = Helia::spawn().await else {
        return;
    };
    let (node, store) = start_mem(test_config()).await;
    let content = bytes(77, 2 * 1024 * 1024 + 4321);
    let mut roots = Vec::new();
    for version in [0u8, 1] {
        let mut opts = cairn_store::ImportOptions::with_cid_version(version);
        // Small nodes so the DAG has three levels: leaves, inner nodes, root.
        opts.max_links = 4;
        opts.chunker = cairn_store::ChunkerSpec::Fixed(100_000);
        let sink = cairn_store::StoreSink(store.clone());
        let imported = cairn_store::import_reader(&content[..], &opts, &sink, &mut |_| {}).unwrap();
        roots.push(imported.cid);
    }
    assert!(roots[0].to_string().starts_with("Qm"), "{}", roots[0]);
    let my_addr = addr(&node).await;
    helia.cmd(&format!("dial {my_addr}")).await.unwrap();
    for root in roots {
        let got = helia.cmd(&format!("cat {root} 30000")).await.unwrap();
        assert_eq!(
            got,
            format!("{} {}", content.len(), sha256_hex(&content)),
            "{root}"
        );
    }
    assert!(node.bitswap_stats().await.unwrap().blocks_sent >= 2 * 23);
}

/// IPNS names between cairn and Helia over the DHT: Helia resolves a record cairn published
/// (as a share's commit puts it), cairn resolves and validates a record Helia published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_and_cairn_resolve_each_others_ipns_names() {
    let Some(mut helia) = Helia::spawn().await else {
        return;
    };
    let (node, store) = start_mem(test_config()).await;
    node.connect(&helia.addr).await.unwrap();
    // Both DHTs learn each other (identify) before the puts.
    wait_until(20, "Helia in cairn's view", || async {
        !node.peers().await.unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // cairn publishes: a record pointing at a block Helia can then fetch from cairn.
    let key = cairn_store::ShareKey::from_seed(&[31; 32]);
    let block = raw_block(77, 1000);
    store.put(&block).unwrap();
    let fields = cairn_store::RecordFields::new(
        cairn_store::RecordValue::ipfs(*block.cid()),
        3,
        std::time::SystemTime::now() + Duration::from_secs(3600),
    );
    let record = cairn_store::IpnsRecord::create(&key, &fields).unwrap();
    let put = node
        .put_record(key.name(), record.as_bytes().to_vec())
        .await
        .unwrap();
    assert!(put.dht, "{put:?}");
    let got = helia
        .cmd(&format!("nameget {} 20000", key.name()))
        .await
        .unwrap();
    assert_eq!(got, format!("/ipfs/{} 3", block.cid()));
    let fetched = helia
        .cmd(&format!("get {} 20000", block.cid()))
        .await
        .unwrap();
    assert_eq!(fetched, format!("1000 {}", sha256_hex(block.data())));

    // Helia publishes; cairn resolves it through the DHT and validates it.
    let seed = [41u8; 32];
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let target = format!("/ipfs/{}", raw_block(78, 10).cid());
    let name = helia
        .cmd(&format!("nameput {hex} {target} 9"))
        .await
        .unwrap();
    let name: cairn_store::IpnsName = name.parse().unwrap();
    assert_eq!(name, cairn_store::ShareKey::from_seed(&seed).name());
    let bytes = node
        .get_record(name, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("Helia's record");
    let theirs =
        cairn_store::IpnsRecord::validate(&bytes, &name, std::time::SystemTime::now()).unwrap();
    assert_eq!(theirs.sequence(), 9);
    assert_eq!(format!("{}", theirs.value()), target);
}
