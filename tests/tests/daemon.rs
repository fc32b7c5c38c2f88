//! Real `cairn daemon` processes on 127.0.0.1: the CLI goes through the daemon's API, content moves
//! between daemons with Bitswap, and bad input or unavailable content ends with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use cairn_store::{cid_for, HashAlg, RAW};
use cairn_tests::{pseudo_random, signal, wait_for, TestRepo};

#[test]
fn two_daemons_trade_content_by_cid_only() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    // The offline identity is the one the daemon will use.
    let offline_id = a.cairn(&["id"]).expect_ok();
    let da = a.daemon();
    let _db = b.daemon();
    assert_eq!(
        offline_id.lines().next().unwrap(),
        da.banner.lines().next().unwrap(),
        "{offline_id} vs {}",
        da.banner
    );

    // A adds through its daemon: a multi-block file and a directory tree.
    let data = pseudo_random(3 * 1024 * 1024 + 17, 42);
    std::fs::write(a.path("big.bin"), &data).unwrap();
    std::fs::create_dir_all(a.path("tree/sub")).unwrap();
    std::fs::write(a.path("tree/a.txt"), b"alpha\n").unwrap();
    std::fs::write(a.path("tree/sub/ß.txt"), pseudo_random(300_000, 3)).unwrap();
    let file_cid = a.cairn(&["add", "-Q", "big.bin"]).expect_ok();
    let tree_cid = a.cairn(&["add", "-r", "-Q", "tree"]).expect_ok();

    // B knows nothing but A's address and the CIDs.
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let peers = b.cairn(&["swarm", "peers"]).expect_ok();
    let a_id = da.tcp_addr().rsplit('/').next().unwrap().to_string();
    assert!(peers.lines().next().unwrap().starts_with(&a_id), "{peers}");

    let got = b.cairn(&["cat", &file_cid]);
    assert!(got.ok(), "{}", got.stderr);
    assert!(got.stdout == data, "fetched bytes differ");
    let ls = b.cairn(&["ls", &tree_cid]).expect_ok();
    assert!(ls.contains(" a.txt") && ls.contains(" sub/"), "{ls}");
    b.cairn(&["get", &tree_cid, "-o", "out"]).expect_ok();
    assert_eq!(std::fs::read(b.path("out/a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        std::fs::read(b.path("out/sub/ß.txt")).unwrap(),
        pseudo_random(300_000, 3)
    );
    let s = b.bitswap_stats();
    assert!(s["blocks_received"].as_u64().unwrap() >= 14, "{s}");
    assert!(
        s["bytes_received"].as_u64().unwrap() >= data.len() as u64,
        "{s}"
    );
    assert_eq!(s["rejected_blocks"], 0);
    let sent = a.bitswap_stats();
    assert!(sent["blocks_sent"].as_u64().unwrap() >= 14, "{sent}");

    // pin add through the daemon keeps the content; status reports it complete.
    let pinned = b.cairn(&["pin", "add", &tree_cid]).expect_ok();
    assert!(pinned.contains(&tree_cid), "{pinned}");
    assert!(b.cairn(&["pin", "ls"]).expect_ok().contains(&tree_cid));
    let status = b.cairn(&["--json", "status", &tree_cid]).expect_ok();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["complete"], true, "{status}");
}

#[test]
fn unavailable_content_times_out_with_a_clear_error() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let _d = a.daemon();
    let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"nobody has this block").to_string();
    let started = Instant::now();
    a.cairn(&["--timeout", "2", "cat", &cid])
        .expect_err("not found within 2 s");
    a.cairn(&["--timeout", "1", "pin", "add", &cid])
        .expect_err("not found within 1 s");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    // Malformed and unreachable addresses.
    a.cairn(&["swarm", "connect", "not-a-multiaddr"])
        .expect_err("not-a-multiaddr");
    a.cairn(&[
        "swarm",
        "connect",
        "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGBWx9gyUFTVQcKMTenQMSyE2ad9m7c9fpjS4NMjoDien",
    ])
    .expect_err("cannot connect");
    a.cairn(&["cat", "bad-cid"]).expect_err("invalid CID");
}

#[test]
fn network_commands_need_a_daemon() {
    let a = TestRepo::new();
    let id = a.cairn(&["--json", "id"]).expect_ok();
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    assert!(
        id["peer_id"].as_str().unwrap().starts_with("12D3Koo"),
        "{id}"
    );
    for args in [
        &["swarm", "peers"][..],
        &["stat", "bitswap"],
        &[
            "routing",
            "findprovs",
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        ],
    ] {
        a.cairn(args).expect_err("start `cairn daemon`");
    }
}

#[test]
fn interrupted_client_cancels_its_fetch_and_sigterm_leaves_a_clean_repo() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let mut d = a.daemon();
    std::fs::write(a.path("f"), pseudo_random(700_000, 9)).unwrap();
    let root = a.cairn(&["add", "-Q", "f"]).expect_ok();

    // A client waiting on content nobody has, interrupted like Ctrl-C.
    let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"never coming").to_string();
    let mut child = a
        .command(&["--timeout", "120", "cat", &cid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(20, "the want to reach the daemon", || {
        (a.bitswap_stats()["wants"].as_u64().unwrap() > 0).then_some(())
    });
    signal(child.id(), libc::SIGINT);
    let _ = child.wait();
    wait_for(20, "the daemon to drop the cancelled want", || {
        (a.bitswap_stats()["wants"].as_u64().unwrap() == 0).then_some(())
    });

    // SIGTERM: clean exit, socket gone, repo consistent and usable offline.
    assert_eq!(d.stop(), Some(0));
    assert!(!a.repo().join("api/api.sock").exists());
    a.cairn(&["repo", "verify"]).expect_ok();
    assert!(a.cairn(&["pin", "ls"]).expect_ok().contains(&root));
    assert_eq!(a.cairn(&["cat", &root]).stdout, pseudo_random(700_000, 9));
}

#[test]
fn the_daemon_collects_garbage_by_itself_when_configured() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let path = a.repo().join("config.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let mut gc = toml::Table::new();
    gc.insert("period_secs".into(), toml::Value::Integer(1));
    cfg.insert("gc".into(), toml::Value::Table(gc));
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let _d = a.daemon();

    std::fs::write(a.path("keep"), pseudo_random(600_000, 1)).unwrap();
    std::fs::write(a.path("drop"), pseudo_random(600_000, 2)).unwrap();
    let keep = a.cairn(&["add", "-Q", "keep"]).expect_ok();
    let drop = a.cairn(&["add", "-Q", "--pin=false", "drop"]).expect_ok();
    let blocks = |r: &TestRepo| {
        let s: serde_json::Value =
            serde_json::from_str(&r.cairn(&["--json", "repo", "stat"]).expect_ok()).unwrap();
        s["blocks"].as_u64().unwrap()
    };
    // Both files are 3 leaves + a root; only the pinned one survives the automatic GC.
    wait_for(30, "the automatic GC", || (blocks(&a) == 4).then_some(()));
    assert_eq!(a.cairn(&["cat", &keep]).stdout, pseudo_random(600_000, 1));
    assert!(a.cairn(&["status", &drop]).expect_ok().contains("0 of"));
}

/// `routing findprovs` tells a DHT query that finished without providers from one that ran out
/// of time.
#[test]
fn findprovs_says_whether_the_dht_query_finished_or_timed_out() {
    let unknown = cid_for(1, RAW, HashAlg::Sha2_256, b"provided by nobody").to_string();

    // No DHT peers at all: the query ends at once, long before the timeout.
    let a = TestRepo::new();
    a.use_loopback_network();
    let da = a.daemon();
    let r = a.cairn(&["--timeout", "60", "routing", "findprovs", &unknown]);
    r.expect_err("no providers found (the DHT query ended after 0 peers)");
    assert!(!r.stderr.contains("within"), "{}", r.stderr);

    // One DHT peer that answers: the query ends after asking it.
    let b = TestRepo::new();
    b.use_loopback_network();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let stderr = wait_for(30, "the DHT query to reach the connected peer", || {
        let r = b.cairn(&["--timeout", "60", "routing", "findprovs", &unknown]);
        assert!(!r.ok(), "nobody provides {unknown}: {}", r.text());
        (!r.stderr.contains("after 0 peers")).then_some(r.stderr)
    });
    assert!(
        stderr.contains("no providers found (the DHT query ended after 1 peer)"),
        "{stderr}"
    );

    // A DHT peer that never answers (a TCP listener that never speaks): the deadline ends the
    // query, and only then is it a timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let c = TestRepo::new();
    c.use_loopback_network();
    let path = c.repo().join("config.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    cfg["network"].as_table_mut().unwrap().insert(
        "bootstrap".into(),
        toml::Value::Array(vec![toml::Value::String(format!(
            "/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWGBWx9gyUFTVQcKMTenQMSyE2ad9m7c9fpjS4NMjoDien"
        ))]),
    );
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let _dc = c.daemon();
    c.cairn(&["--timeout", "2", "routing", "findprovs", &unknown])
        .expect_err("found within 2 s");
}
