//! Following a share from another node: two daemons on 127.0.0.1; A writes in its writable
//! mount, B mounts the share id and sees each commit (pushed by IPNS over PubSub, content
//! fetched on demand through Bitswap), `cairn name resolve` finds the newest record through
//! the DHT, and a follower that was away catches up when it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::time::Instant;

use cairn_tests::{wait_for, write_synced, MountGuard, TestRepo};

fn mount(r: &TestRepo, what: &str, name: &str) -> MountGuard {
    let dir = r.path(name);
    fs::create_dir_all(&dir).unwrap();
    r.cairn(&["mount", what, dir.to_str().unwrap()]).expect_ok();
    MountGuard(fs::canonicalize(&dir).unwrap())
}

#[test]
fn a_peer_mounts_a_share_by_its_id_and_follows_each_commit() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    let share = &a.json(&["share", "new", "team"])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let da = a.daemon();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();

    let aw = mount(&a, "team", "writable");
    write_synced(&aw.0.join("plan.txt"), "version one\n");

    // B: the share id is all it needs.
    let t = Instant::now();
    let bf = mount(&b, &name, "following");
    eprintln!("B mounted the share in {:?}", t.elapsed());
    assert_eq!(
        fs::read_to_string(bf.0.join("plan.txt")).unwrap(),
        "version one\n"
    );
    let listed = &b.json(&["share", "ls"])[0];
    assert_eq!(listed["writable"], false, "{listed}");
    assert_eq!(listed["name"], name.as_str());

    // Each commit reaches B's mount: measured from A's fsync returning to B reading it.
    let mut delays = Vec::new();
    for i in 2..=4 {
        let text = format!("version {i}\n");
        write_synced(&aw.0.join("plan.txt"), &text);
        let t = Instant::now();
        wait_for(20, "B to show A's commit", || {
            (fs::read_to_string(bf.0.join("plan.txt")).ok()? == text).then_some(())
        });
        delays.push(t.elapsed());
    }
    eprintln!("follow delays (A's fsync -> B reads the new bytes): {delays:?}");
    // B's namespace mount resolves the share id in its root, and moves with it.
    let ns_dir = b.path("ns");
    fs::create_dir_all(&ns_dir).unwrap();
    b.cairn(&["mount", "--namespace", ns_dir.to_str().unwrap()])
        .expect_ok();
    let ns = MountGuard(fs::canonicalize(&ns_dir).unwrap());
    let via_ns = ns.0.join(&name).join("plan.txt");
    assert_eq!(fs::read_to_string(&via_ns).unwrap(), "version 4\n");
    write_synced(&aw.0.join("plan.txt"), "version 5\n");
    wait_for(20, "the namespace path to show A's commit", || {
        (fs::read_to_string(&via_ns).ok()? == "version 5\n").then_some(())
    });
    let e = fs::metadata(ns.0.join("not-a-name")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    b.cairn(&["unmount", ns.0.to_str().unwrap()]).expect_ok();
    // B says when it last heard of the share, and from whom (the pushes come from A).
    let a_id = a.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    let listed = &b.json(&["share", "ls"])[0];
    assert!(listed["seen"].is_string(), "{listed}");
    // Pushed by A, or found again in the DHT by a catch-up.
    let from = listed["seen_from"].as_str().unwrap();
    assert!(from == a_id || from == "dht", "{listed}");

    // Name resolution through the network, as Kubo's `ipfs name resolve`.
    let head = a.json(&["share", "log", "team"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    let resolved = &b.json(&["name", "resolve", &name])[0];
    assert_eq!(resolved["value"], format!("/ipfs/{head}"), "{resolved}");
    assert_eq!(
        b.cairn(&["cat", &format!("/ipns/{name}/plan.txt")])
            .expect_ok(),
        "version 5"
    );
    // B's copy of the history comes with the records.
    assert!(b.json(&["share", "log", &name]).len() >= 2);
    // B cannot write.
    let e = fs::write(bf.0.join("plan.txt"), b"mine").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    b.cairn(&["unmount", bf.0.to_str().unwrap()]).expect_ok();
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
}

#[test]
fn a_follower_that_was_away_catches_up_when_it_connects_again() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    let name = a.json(&["share", "new", "away"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let da = a.daemon();
    let mut db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let aw = mount(&a, "away", "writable");
    write_synced(&aw.0.join("f.txt"), "one\n");
    let bf = mount(&b, &name, "following");
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "one\n");
    b.cairn(&["unmount", bf.0.to_str().unwrap()]).expect_ok();
    // B goes away; A commits three times.
    assert_eq!(db.stop(), Some(0));
    for i in 2..=4 {
        write_synced(&aw.0.join("f.txt"), &format!("{i}\n"));
    }
    let head = a.json(&["share", "log", "away"])[0]["sequence"]
        .as_u64()
        .unwrap();
    // B is back: its mount shows the last version it had, then the newest once connected.
    let _db = b.daemon();
    let bf = mount(&b, &name, "following");
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "one\n");
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    wait_for(20, "B to catch up", || {
        (fs::read_to_string(bf.0.join("f.txt")).ok()? == "4\n").then_some(())
    });
    let listed = &b.json(&["share", "ls"])[0];
    assert_eq!(listed["sequence"], head, "{listed}");
    b.cairn(&["unmount", bf.0.to_str().unwrap()]).expect_ok();
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
}

#[test]
fn an_unknown_share_id_is_refused_clearly_by_a_daemon() {
    let b = TestRepo::new();
    b.use_loopback_network();
    b.cairn(&["config", "set", "network.fetch_timeout_secs", "3"])
        .expect_ok();
    let _db = b.daemon();
    let nobody = "k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w";
    let dir = b.path("m");
    fs::create_dir_all(&dir).unwrap();
    b.cairn(&["mount", nobody, dir.to_str().unwrap()])
        .expect_err("no record of /ipns/");
    b.cairn(&["name", "resolve", nobody])
        .expect_err("no record of /ipns/");
    b.cairn(&["share", "follow", nobody])
        .expect_err("no record of /ipns/");
    b.cairn(&["share", "follow", "k51nonsense"])
        .expect_err("invalid share id");
    b.cairn(&["share", "new", "mine"]).expect_ok();
    b.cairn(&["share", "follow", nobody, "--label", "mine"])
        .expect_err("exists already");
    b.cairn(&["share", "follow", nobody, "--label", "a b/c"])
        .expect_err("invalid share label");
    assert!(
        b.json(&["share", "ls"]).len() == 1,
        "a failed follow left a share"
    );
}

#[test]
fn a_pinned_follow_keeps_every_retained_version_offline() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    let name = a.json(&["share", "new", "kept"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut da = a.daemon();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let aw = mount(&a, "kept", "writable");
    write_synced(&aw.0.join("doc.txt"), "first\n");
    let pinned = &b.json(&["pin", "add", &format!("/ipns/{name}")])[0];
    assert_eq!(pinned["type"], "share", "{pinned}");
    let listed = &b.json(&["share", "ls"])[0];
    let first = listed["root"].as_str().unwrap().to_string();
    // Two more versions arrive and are fetched whole.
    write_synced(&aw.0.join("doc.txt"), "second\n");
    write_synced(&aw.0.join("big.bin"), &"x".repeat(3 << 20));
    let head = a.json(&["share", "log", "kept"])[0]["sequence"]
        .as_u64()
        .unwrap();
    wait_for(20, "B to take the last version", || {
        (b.json(&["share", "ls"])[0]["sequence"].as_u64()? == head).then_some(())
    });
    let last = b.json(&["share", "ls"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(30, "B to hold the last version's blocks", || {
        let out = b.cairn(&["status", &last]);
        out.ok()
            .then(|| out.text())
            .filter(|t| t.contains("complete"))
    });
    // A is gone: B still has every version, and B's daemon serves them offline.
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
    assert_eq!(da.stop(), Some(0));
    assert_eq!(
        b.cairn(&["cat", &format!("{first}/doc.txt")]).expect_ok(),
        "first"
    );
    assert_eq!(
        b.cairn(&["cat", &format!("{last}/doc.txt")]).expect_ok(),
        "second"
    );
    let big = b
        .command(&["cat", &format!("{last}/big.bin")])
        .output()
        .unwrap();
    assert_eq!(big.stdout.len(), 3 << 20);
    // A GC keeps them: they are the share's retained versions.
    b.cairn(&["repo", "gc"]).expect_ok();
    assert_eq!(
        b.cairn(&["cat", &format!("{first}/doc.txt")]).expect_ok(),
        "first"
    );
}

#[test]
fn three_followers_one_offline_for_three_commits_all_end_on_the_newest() {
    let a = TestRepo::new();
    let followers: Vec<TestRepo> = (0..3).map(|_| TestRepo::new()).collect();
    a.use_loopback_network();
    for f in &followers {
        f.use_loopback_network();
    }
    let name = a.json(&["share", "new", "many"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let da = a.daemon();
    let mut daemons: Vec<_> = followers.iter().map(|f| f.daemon()).collect();
    for f in &followers {
        f.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    }
    let aw = mount(&a, "many", "writable");
    write_synced(&aw.0.join("n.txt"), "1\n");
    // The first follows without mounting, under a label of its choice, then mounts that.
    let followed = &followers[0].json(&["share", "follow", &name, "--label", "theirs"])[0];
    assert_eq!(
        (&followed["label"], &followed["sequence"]),
        (&serde_json::json!("theirs"), &serde_json::json!(2)),
        "{followed}"
    );
    let mut mounts: Vec<MountGuard> = followers
        .iter()
        .enumerate()
        .map(|(i, f)| mount(f, if i == 0 { "theirs" } else { &name }, "following"))
        .collect();
    for m in &mounts {
        assert_eq!(fs::read_to_string(m.0.join("n.txt")).unwrap(), "1\n");
    }
    // The third goes away for three commits; the others follow each one.
    followers[2]
        .cairn(&["unmount", mounts[2].0.to_str().unwrap()])
        .expect_ok();
    assert_eq!(daemons[2].stop(), Some(0));
    for i in 2..=4 {
        let text = format!("{i}\n");
        write_synced(&aw.0.join("n.txt"), &text);
        for m in &mounts[..2] {
            wait_for(20, "a live follower to show the commit", || {
                (fs::read_to_string(m.0.join("n.txt")).ok()? == text).then_some(())
            });
        }
    }
    // Back: it catches up once connected, and all three show the same version.
    daemons[2] = followers[2].daemon();
    // (Its earlier guard unmounts the old path when replaced: mount elsewhere.)
    mounts[2] = mount(&followers[2], &name, "following-again");
    followers[2]
        .cairn(&["swarm", "connect", &da.tcp_addr()])
        .expect_ok();
    wait_for(20, "the returning follower to catch up", || {
        (fs::read_to_string(mounts[2].0.join("n.txt")).ok()? == "4\n").then_some(())
    });
    let roots: Vec<String> = followers
        .iter()
        .map(|f| {
            f.json(&["share", "ls"])[0]["root"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let head = a.json(&["share", "log", "many"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(roots.iter().all(|r| *r == head), "{roots:?} vs {head}");
    for (f, m) in followers.iter().zip(&mounts) {
        f.cairn(&["unmount", m.0.to_str().unwrap()]).expect_ok();
    }
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
}

/// An unused TCP port on 127.0.0.1 (for a daemon that must come back at the same address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sets `network.<key>` in `r`'s config.
fn set_network(r: &TestRepo, key: &str, value: toml::Value) {
    let path = r.repo().join("config.toml");
    let mut cfg: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
    cfg["network"]
        .as_table_mut()
        .unwrap()
        .insert(key.into(), value);
    fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
}

fn xattr(path: &std::path::Path, name: &str) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::getxattr(path, name, &mut buf[..]).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn the_follower_ends_on_the_newest_version_through_publisher_and_follower_restarts() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    let port = free_port();
    let a_listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let a_id = a.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    // B joins the network through A, as a node joins through its bootstrap peers.
    set_network(
        &b,
        "bootstrap",
        toml::Value::Array(vec![format!("{a_listen}/p2p/{a_id}").into()]),
    );
    let name = a.json(&["share", "new", "churn"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut da = a.daemon_with(&["--listen", &a_listen]);
    let aw = mount(&a, "churn", "writable");
    for i in 1..=3 {
        write_synced(&aw.0.join("f.txt"), &format!("{i}\n"));
    }
    let mut db = b.daemon();
    let bf = mount(&b, &name, "following");
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "3\n");
    wait_for(20, "B's mount to say it is current", || {
        (xattr(&bf.0, "user.cairn.stale")? == "0").then_some(())
    });
    // B took only the newest record; `share log` fetches the history through the chain.
    let log = b.json(&["share", "log", &name]);
    let seqs: Vec<u64> = log
        .iter()
        .map(|v| v["sequence"].as_u64().unwrap())
        .collect();
    let a_seqs: Vec<u64> = a
        .json(&["share", "log", "churn"])
        .iter()
        .map(|v| v["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, a_seqs, "{log:?}");
    let status = &b.json(&["share", "status", &name])[0];
    assert_eq!(status["stale"], false, "{status}");
    assert_eq!(status["role"], "follower", "{status}");
    assert_eq!(status["sources"][0], a_id.as_str(), "{status}");
    // The owner sees its follower among the share's peers.
    let b_id = b.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    wait_for(10, "A to see its follower", || {
        let s = &a.json(&["share", "status", "churn"])[0];
        (s["sources"][0] == b_id.as_str() && s["stale"] == false).then_some(())
    });

    // The publisher goes away: B keeps serving what it has, and says it is stale.
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
    assert_eq!(da.stop(), Some(0));
    wait_for(30, "B's mount to say it is stale", || {
        (xattr(&bf.0, "user.cairn.stale")? == "1").then_some(())
    });
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "3\n");
    let status = &b.json(&["share", "status", &name])[0];
    assert_eq!(status["stale"], true, "{status}");
    assert_eq!(status["sources"], serde_json::json!([]), "{status}");
    let text = b.cairn(&["share", "status", &name]).expect_ok();
    assert!(text.contains("stale"), "{text}");

    // The publisher restarts at the same address and commits: B dials it again, catches up.
    let mut da = a.daemon_with(&["--listen", &a_listen]);
    let aw = mount(&a, "churn", "writable");
    write_synced(&aw.0.join("f.txt"), "4\n");
    let t = Instant::now();
    wait_for(60, "B to follow the restarted publisher", || {
        (fs::read_to_string(bf.0.join("f.txt")).ok()? == "4\n").then_some(())
    });
    println!(
        "after the publisher's restart, B showed its commit in {:?}",
        t.elapsed()
    );
    wait_for(20, "B's mount to say it is current again", || {
        (xattr(&bf.0, "user.cairn.stale")? == "0").then_some(())
    });

    // The follower restarts while the publisher commits twice.
    b.cairn(&["unmount", bf.0.to_str().unwrap()]).expect_ok();
    assert_eq!(db.stop(), Some(0));
    // Without a daemon nothing is followed live: a followed share is stale by definition.
    let status = &b.json(&["share", "status", &name])[0];
    assert_eq!(
        (&status["online"], &status["sources"], &status["stale"]),
        (
            &serde_json::json!(false),
            &serde_json::Value::Null,
            &serde_json::json!(true)
        ),
        "{status}"
    );
    write_synced(&aw.0.join("f.txt"), "5\n");
    write_synced(&aw.0.join("g.txt"), "new\n");
    let _db = b.daemon();
    let bf = mount(&b, &name, "following");
    wait_for(30, "the restarted follower to catch up", || {
        (fs::read_to_string(bf.0.join("g.txt")).ok()? == "new\n").then_some(())
    });
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "5\n");
    let head = a.json(&["share", "log", "churn"])[0]["sequence"].clone();
    assert_eq!(
        xattr(&bf.0, "user.cairn.version").unwrap(),
        head.to_string()
    );
    b.cairn(&["unmount", bf.0.to_str().unwrap()]).expect_ok();
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
    assert_eq!(da.stop(), Some(0));
}

#[test]
fn a_version_whose_root_cannot_be_fetched_does_not_replace_the_working_one() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    // B gives up on a missing block after 2 s (the root fetch waits at most that).
    set_network(&b, "fetch_timeout_secs", 2.into());
    let name = a.json(&["share", "new", "roots"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let da = a.daemon();
    let _db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let aw = mount(&a, "roots", "writable");
    write_synced(&aw.0.join("f.txt"), "good\n");
    let bf = mount(&b, &name, "following");
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "good\n");
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
    let working = xattr(&bf.0, "user.cairn.version").unwrap();

    // A publishes a version and then loses its root block: nobody can serve it.
    let dir = a.path("next");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f.txt"), "next\n").unwrap();
    let root = a
        .cairn(&["add", "-r", "-Q", dir.to_str().unwrap()])
        .expect_ok()
        .trim()
        .to_string();
    b.cairn(&["swarm", "disconnect", &da.tcp_addr()])
        .expect_ok();
    a.cairn(&["name", "publish", "--key", "roots", &root])
        .expect_ok();
    a.cairn(&["block", "rm", "--force", &root]).expect_ok();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    // B hears of the version (pull on connect), cannot fetch its root, keeps the working one.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(fs::read_to_string(bf.0.join("f.txt")).unwrap(), "good\n");
    assert_eq!(xattr(&bf.0, "user.cairn.version").unwrap(), working);
    assert_eq!(
        b.json(&["share", "ls"])[0]["sequence"].to_string(),
        working,
        "B's head must not move to a version it cannot read"
    );
    // The root comes back at A: B takes the version on its own (it tries again).
    a.cairn(&["add", "-r", dir.to_str().unwrap()]).expect_ok();
    wait_for(60, "B to take the version once its root is there", || {
        (fs::read_to_string(bf.0.join("f.txt")).ok()? == "next\n").then_some(())
    });
    assert_ne!(xattr(&bf.0, "user.cairn.version").unwrap(), working);
    b.cairn(&["unmount", bf.0.to_str().unwrap()]).expect_ok();
}
