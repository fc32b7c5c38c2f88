//! The network as a user meets it through the real `cairn` binary and daemons on 127.0.0.1:
//! ports already in use, content announced when the daemon starts, "no providers" answers,
//! `swarm peers` / `swarm disconnect`, and reads that fetch only the blocks they need.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashSet;
use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_store::{BlockSource, Bytes, Cid, DagReader, GetError, LocalSource, Repo, SledStore};
use cairn_tests::{pseudo_random, wait_for, Run, TestRepo};

/// Sets the repo's `network.listen` (and no bootstrap peers).
fn set_listen(repo: &TestRepo, addrs: &[&str]) {
    set_network(
        repo,
        "listen",
        toml::Value::Array(
            addrs
                .iter()
                .map(|a| toml::Value::String(a.to_string()))
                .collect(),
        ),
    );
    set_network(repo, "bootstrap", toml::Value::Array(vec![]));
}

/// Sets one key of the repo config's `[network]` table.
fn set_network(repo: &TestRepo, key: &str, value: toml::Value) {
    let path = repo.repo().join("config.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    cfg["network"]
        .as_table_mut()
        .unwrap()
        .insert(key.into(), value);
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
}

/// Runs `cairn daemon` on `repo` expecting it to fail at start; kills it (and fails the test)
/// if it is still running after 30 s.
fn daemon_must_fail(repo: &TestRepo) -> Run {
    let mut child = repo
        .command(&["daemon", "--gateway", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out: Run = child.wait_with_output().unwrap().into();
            panic!("the second daemon started: {}", out.text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap().into()
}

/// `listening on <addr>/p2p/<id>` lines of a daemon banner, without the `/p2p/` part.
fn bound_addr(banner: &str, transport: &str) -> String {
    banner
        .lines()
        .filter_map(|l| l.strip_prefix("listening on "))
        .find(|a| a.contains(transport))
        .unwrap_or_else(|| panic!("no {transport} address in {banner}"))
        .split("/p2p/")
        .next()
        .unwrap()
        .to_string()
}

/// The JSON objects of a `--json` listing (JSON Lines).
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn peer_id(addr: &str) -> String {
    addr.rsplit('/').next().unwrap().to_string()
}

#[test]
fn a_second_daemon_on_a_port_in_use_fails_with_address_in_use() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let da = a.daemon();
    let tcp = bound_addr(&da.banner, "/tcp/");
    let quic = bound_addr(&da.banner, "/quic-v1");

    // TCP: libp2p listens with SO_REUSEPORT, so without a check the second daemon would share
    // the port silently.
    let b = TestRepo::new();
    set_listen(&b, &[&tcp]);
    let r = daemon_must_fail(&b);
    r.expect_err("address already in use");
    assert!(r.stderr.contains(&tcp), "{}", r.stderr);

    // QUIC: the bind fails by itself; the message must still say why.
    let c = TestRepo::new();
    set_listen(&c, &["/ip4/127.0.0.1/tcp/0", &quic]);
    let r = daemon_must_fail(&c);
    r.expect_err("address already in use");
    assert!(r.stderr.contains(&quic), "{}", r.stderr);

    // Once the first daemon is gone, the same addresses are free again.
    drop(da);
    set_listen(&b, &[&tcp, &quic]);
    let db = b.daemon();
    assert_eq!(bound_addr(&db.banner, "/tcp/"), tcp);
    assert_eq!(bound_addr(&db.banner, "/quic-v1"), quic);
}

/// Content added before the daemon started is announced when it starts (default strategy
/// `roots`): another node finds it with `routing findprovs` and counts it in `status`, with no
/// `routing provide` by anyone.
#[test]
fn content_stored_before_the_daemon_started_is_provided_on_start() {
    let a = TestRepo::new();
    a.use_loopback_network();
    std::fs::write(a.path("f.bin"), pseudo_random(600_000, 8)).unwrap();
    let cid = a.cairn(&["add", "-Q", "f.bin"]).expect_ok();
    let da = a.daemon();
    let a_id = peer_id(&da.tcp_addr());

    let b = TestRepo::new();
    b.use_loopback_network();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let found = wait_for(30, "B to find A as a provider", || {
        let r = b.cairn(&["--json", "routing", "findprovs", &cid]);
        r.ok().then(|| json_lines(&r.text()))
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["provider"], a_id.as_str(), "{found:?}");
    let addrs = found[0]["addresses"].as_array().expect("addresses list");
    assert!(
        addrs
            .iter()
            .any(|x| x.as_str().unwrap().starts_with("/ip4/127.0.0.1/")),
        "{found:?}"
    );
    let text = b.cairn(&["routing", "findprovs", &cid]).expect_ok();
    assert_eq!(text, a_id);

    let status = b.cairn(&["--json", "status", &cid]).expect_ok();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["providers"], 1, "{status}");
    let text = b.cairn(&["status", &cid]).expect_ok();
    assert!(text.contains("1 provider(s)"), "{text}");
}

/// With `provide_strategy = "all"` every stored block is announced on start, leaves included.
#[test]
fn strategy_all_announces_every_block_on_start() {
    let a = TestRepo::new();
    a.use_loopback_network();
    set_network(&a, "provide_strategy", toml::Value::String("all".into()));
    std::fs::write(a.path("f.bin"), pseudo_random(600_000, 9)).unwrap();
    let root = a.cairn(&["add", "-Q", "f.bin"]).expect_ok();
    // The first leaf: the first 256 KiB chunk, a raw block.
    std::fs::write(a.path("leaf.bin"), &pseudo_random(600_000, 9)[..256 << 10]).unwrap();
    let leaf = a
        .cairn(&["add", "-Q", "--only-hash", "leaf.bin"])
        .expect_ok();
    assert_ne!(leaf, root);
    let da = a.daemon();
    let a_id = peer_id(&da.tcp_addr());

    let b = TestRepo::new();
    b.use_loopback_network();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    for cid in [&root, &leaf] {
        let found = wait_for(30, "B to find A as a provider", || {
            let r = b.cairn(&["routing", "findprovs", cid]);
            r.ok().then(|| r.text())
        });
        assert_eq!(found.trim(), a_id, "{cid}");
    }
}

/// A fetch that every connected peer and a completed DHT query answered with "no" ends with
/// that answer at once, not with "not found within 30 s" after its deadline.
#[test]
fn a_fetch_nobody_can_serve_says_no_providers_found() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let da = a.daemon();
    let b = TestRepo::new();
    b.use_loopback_network();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    std::fs::write(b.path("x"), b"held by nobody").unwrap();
    let unknown = b.cairn(&["add", "-Q", "--only-hash", "x"]).expect_ok();
    // The default deadline (30 s) is not what ends it.
    let r = wait_for(30, "the DHT query to reach the connected peer", || {
        let r = b.cairn(&["cat", &unknown]);
        assert!(!r.ok(), "nobody has {unknown}");
        (!r.stderr.contains("not found within")).then_some(r)
    });
    r.expect_err("no providers found for block");
    assert!(
        r.stderr.contains("(the DHT query ended after 1 peer)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&unknown), "{}", r.stderr);
}

#[test]
fn swarm_peers_shows_address_latency_transport_and_protocols_and_disconnect_closes() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let da = a.daemon();
    let a_id = peer_id(&da.tcp_addr());
    let b = TestRepo::new();
    b.use_loopback_network();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();

    // Latency comes from the first ping, protocols from identify: both arrive within moments.
    let peer = wait_for(30, "ping and identify", || {
        let r = b.cairn(&["--json", "swarm", "peers"]).expect_ok();
        let lines = json_lines(&r);
        assert_eq!(lines.len(), 1, "{r}");
        let p = lines[0].clone();
        (p["latency_ms"].is_number() && p["protocols"].is_array()).then_some(p)
    });
    let keys: HashSet<&str> = peer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "peer",
            "address",
            "direction",
            "latency_ms",
            "transport",
            "protocols"
        ]),
        "{peer}"
    );
    assert_eq!(peer["peer"], a_id.as_str());
    assert_eq!(
        peer["address"],
        da.tcp_addr().split("/p2p/").next().unwrap(),
        "{peer}"
    );
    assert_eq!(peer["direction"], "outbound");
    assert_eq!(peer["transport"], "tcp");
    let protocols: Vec<&str> = peer["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(protocols.contains(&"/ipfs/bitswap/1.2.0"), "{peer}");
    assert!(protocols.contains(&"/ipfs/kad/1.0.0"), "{peer}");
    let text = b.cairn(&["swarm", "peers"]).expect_ok();
    assert!(
        text.starts_with(&a_id) && text.contains(" tcp ") && text.contains(" ms "),
        "{text}"
    );

    // A's side sees the same connection as inbound.
    let from_a = json_lines(&a.cairn(&["--json", "swarm", "peers"]).expect_ok());
    assert_eq!(from_a.len(), 1);
    assert_eq!(from_a[0]["direction"], "inbound");

    // Disconnect by peer id.
    let r = b.cairn(&["swarm", "disconnect", &a_id]).expect_ok();
    assert_eq!(r, format!("disconnected from {a_id}"));
    assert_eq!(b.cairn(&["swarm", "peers"]).expect_ok(), "");
    b.cairn(&["swarm", "disconnect", &a_id])
        .expect_err("not connected to");

    // Over QUIC, then disconnect by address.
    let quic = format!("{}/p2p/{a_id}", bound_addr(&da.banner, "/quic-v1"));
    b.cairn(&["swarm", "connect", &quic]).expect_ok();
    let lines = json_lines(&b.cairn(&["--json", "swarm", "peers"]).expect_ok());
    assert_eq!(lines[0]["transport"], "quic-v1", "{lines:?}");
    let quic_only = bound_addr(&da.banner, "/quic-v1");
    let r = b
        .cairn(&["--json", "swarm", "disconnect", &quic_only])
        .expect_ok();
    assert_eq!(json_lines(&r)[0]["disconnected"], a_id.as_str());
    assert_eq!(b.cairn(&["swarm", "peers"]).expect_ok(), "");
    b.cairn(&["swarm", "disconnect", "nonsense"])
        .expect_err("neither a peer id");
}

/// Records every block a reader asks for (the set of blocks a read needs, as an oracle).
#[derive(Clone)]
struct Recording {
    inner: LocalSource<SledStore>,
    seen: Arc<Mutex<HashSet<Cid>>>,
}

impl BlockSource for Recording {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        self.seen.lock().unwrap().insert(*cid);
        self.inner.get(cid)
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.inner.has_local(cid)
    }
}

/// The blocks of `repo` that a plain reader needs to resolve `path` and read `len` bytes
/// (all if `None`) at `offset`, read with the repo opened in this process (no daemon on it).
fn needed(repo: &TestRepo, path: &str, offset: u64, len: Option<u64>) -> (HashSet<Cid>, bool) {
    let r = Repo::open(&repo.repo()).unwrap();
    let source = Recording {
        inner: LocalSource::new(r.store()),
        seen: Arc::default(),
    };
    let reader = DagReader::new(source.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut parts = path.split('/');
    let root: Cid = parts.next().unwrap().parse().unwrap();
    let segments: Vec<&str> = parts.collect();
    let sharded = rt.block_on(async {
        let mut dir = root;
        let mut sharded = false;
        if let Some((_, dirs)) = segments.split_last() {
            dir = reader.resolve(&root, dirs).await.unwrap();
            sharded = reader.stat(&dir).await.unwrap().is_sharded;
        }
        let file = reader.resolve(&root, &segments).await.unwrap();
        let size = reader.stat(&file).await.unwrap().size;
        let len = len.unwrap_or(size).min(size.saturating_sub(offset));
        reader.read(&file, offset, len as usize).await.unwrap();
        let _ = dir;
        sharded
    });
    let seen = source.seen.lock().unwrap().clone();
    (seen, sharded)
}

/// Reads through B's daemon and checks B's Bitswap counters: exactly the blocks the read
/// needs (that B did not have yet) arrive, and no block arrives twice.
struct Counter<'a> {
    b: &'a TestRepo,
    have: HashSet<Cid>,
    received: u64,
}

impl Counter<'_> {
    fn check(&mut self, what: &str, need: HashSet<Cid>, args: &[&str], expect: &[u8]) {
        let r = self.b.cairn(args);
        assert!(r.ok(), "{what}: {}", r.stderr);
        assert!(r.stdout == expect, "{what}: wrong bytes");
        let fresh = need.difference(&self.have).count() as u64;
        self.have.extend(need);
        let s = self.b.bitswap_stats();
        let got = s["blocks_received"].as_u64().unwrap() - self.received;
        self.received += got;
        assert_eq!(got, fresh, "{what}: blocks received ({s})");
        assert_eq!(s["dup_blocks"], 0, "{what}: duplicate blocks ({s})");
        assert_eq!(s["wants"], 0, "{what}: wants left behind ({s})");
    }
}

#[test]
fn reads_through_the_daemon_fetch_only_the_blocks_they_need() {
    let a = TestRepo::new();
    a.use_loopback_network();
    // A file of 391 leaves of 1 KiB under 3 middle nodes.
    let data = pseudo_random(400_000, 11);
    std::fs::write(a.path("big.bin"), &data).unwrap();
    let file = a
        .cairn(&["add", "-Q", "--chunker", "size-1024", "big.bin"])
        .expect_ok();
    // A plain directory of 300 files of 3 leaves each (a dag-pb node per file).
    std::fs::create_dir(a.path("plain")).unwrap();
    for i in 0..300 {
        std::fs::write(a.path(&format!("plain/f{i:03}")), pseudo_random(3000, i)).unwrap();
    }
    let plain = a
        .cairn(&["add", "-r", "-Q", "--chunker", "size-1024", "plain"])
        .expect_ok();
    // A directory too big for one node: HAMT-sharded.
    std::fs::create_dir(a.path("hamt")).unwrap();
    for i in 0..4000u64 {
        let name = format!("hamt/entry-with-a-rather-long-name-{i:05}");
        std::fs::write(a.path(&name), pseudo_random(100, 1000 + i)).unwrap();
    }
    let hamt = a.cairn(&["add", "-r", "-Q", "hamt"]).expect_ok();

    let ranged = needed(&a, &file, 0, Some(10)).0;
    assert_eq!(ranged.len(), 3, "root, first middle node, first leaf");
    let middle = needed(&a, &file, 200_000, Some(3000)).0;
    let whole = needed(&a, &file, 0, None).0;
    assert_eq!(whole.len(), 395);
    let plain_path = format!("{plain}/f150");
    let in_plain = needed(&a, &plain_path, 0, None).0;
    assert_eq!(
        in_plain.len(),
        5,
        "the directory, the file and its 3 leaves"
    );
    let hamt_path = format!("{hamt}/entry-with-a-rather-long-name-02024");
    let (in_hamt, sharded) = needed(&a, &hamt_path, 0, None);
    assert!(sharded, "4000 entries must make a HAMT");
    assert!(
        in_hamt.len() >= 3,
        "root shard, a lower shard, the file: {in_hamt:?}"
    );

    let da = a.daemon();
    let b = TestRepo::new();
    b.use_loopback_network();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let mut c = Counter {
        b: &b,
        have: HashSet::new(),
        received: 0,
    };
    c.check(
        "cat --length 10",
        ranged,
        &["cat", "--length", "10", &file],
        &data[..10],
    );
    c.check(
        "cat --offset --length",
        middle,
        &["cat", "--offset", "200000", "--length", "3000", &file],
        &data[200_000..203_000],
    );
    c.check("cat", whole, &["cat", &file], &data);
    c.check(
        "cat plain/file",
        in_plain,
        &["cat", &plain_path],
        &pseudo_random(3000, 150),
    );
    c.check(
        "cat hamt/file",
        in_hamt,
        &["cat", &hamt_path],
        &pseudo_random(100, 1000 + 2024),
    );
}
