//! A writer its owner lets publish keeps the share's record current while the owner is away:
//! three real daemons on 127.0.0.1 (the owner, a member granted `--publish`, a plain follower)
//! and real FUSE mounts. With the owner's daemon stopped, the member's fsynced write reaches
//! the follower's read-only mount through a record the member signed (the share's key came to
//! it sealed in the member list); back, the owner takes the member's head, and its own next
//! version goes above the member's record's sequence, so the follower takes it too. Revoked,
//! the member stops publishing, and nothing it writes later reaches the follower.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use cairn_tests::{
    shows, wait_for, write_fsync_unchecked, write_synced, Daemon, MountGuard, TestRepo,
};

/// The head version of `share` as `r` has it: (sequence, writer label, root).
fn head(r: &TestRepo, share: &str) -> (u64, String, String) {
    let log = r.json(&["share", "log", share]);
    let v = &log[0];
    (
        v["sequence"].as_u64().unwrap(),
        v["writer"].as_str().unwrap_or_default().to_string(),
        v["root"].as_str().unwrap().to_string(),
    )
}

fn unmount_stop_verify(r: &TestRepo, m: MountGuard, mut d: Daemon) {
    r.cairn(&["unmount", m.0.to_str().unwrap()]).expect_ok();
    assert_eq!(d.stop(), Some(0));
    r.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn a_publishing_member_keeps_the_share_current_while_its_owner_is_away() {
    let (a, b, c) = (TestRepo::new(), TestRepo::new(), TestRepo::new());
    for r in [&a, &b, &c] {
        r.use_loopback_network();
    }
    let name = a.json(&["share", "new", "team"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut da = a.daemon();
    let db = b.daemon();
    let dc = c.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    c.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    // The follower also knows the member directly: with the owner gone, that is its source.
    c.cairn(&["swarm", "connect", &db.tcp_addr()]).expect_ok();
    let bob = b.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    let granted = a.cairn(&[
        "share",
        "grant",
        "team",
        &bob,
        "--label",
        "bob",
        "--publish",
    ]);
    let said = granted.expect_ok();
    assert!(said.contains("publish"), "{said}");
    let members = a.json(&["share", "members", "team"]);
    assert!(
        members
            .iter()
            .any(|m| m["label"] == "bob" && m["publish"] == true),
        "{members:?}"
    );

    let (aw, a_writes) = a.mount_share("team", "alice");
    assert!(a_writes);
    write_synced(&aw.0.join("notes.txt"), "v1\n");
    wait_for(30, "the first version at bob and carol", || {
        (b.cairn(&["name", "resolve", &name]).ok() && c.cairn(&["name", "resolve", &name]).ok())
            .then_some(())
    });
    let (bw, b_writes) = b.mount_share(&name, "bob");
    assert!(b_writes, "a member's mount is writable");
    let (cw, c_writes) = c.mount_share(&name, "carol");
    assert!(!c_writes, "a follower's mount is read-only");
    wait_for(30, "notes.txt at bob and carol", || {
        (shows(&bw.0, &[("notes.txt", "v1\n")]) && shows(&cw.0, &[("notes.txt", "v1\n")]))
            .then_some(())
    });
    let (before, _, _) = head(&c, &name);

    // The owner goes away; bob writes. Carol's mount shows it, from a record bob signed.
    a.cairn(&["unmount", aw.0.to_str().unwrap()]).expect_ok();
    assert_eq!(da.stop(), Some(0));
    drop(aw);
    write_synced(&bw.0.join("bob.txt"), "from bob\n");
    wait_for(60, "bob's write at carol, with the owner away", || {
        shows(&cw.0, &[("notes.txt", "v1\n"), ("bob.txt", "from bob\n")]).then_some(())
    });
    let (by_bob, writer, _) = head(&c, &name);
    assert!(by_bob > before, "the record goes up: {before} -> {by_bob}");
    assert_eq!(writer, "bob", "carol's head is bob's commit");
    assert_eq!(
        head(&b, &name).0,
        by_bob,
        "bob's head record is the one carol took"
    );

    // The owner is back: it takes bob's head, and its own next version goes above bob's
    // record (else carol would never take it).
    let da = a.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    c.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let (aw, _) = a.mount_share("team", "alice");
    wait_for(60, "bob's write at the owner", || {
        shows(&aw.0, &[("bob.txt", "from bob\n")]).then_some(())
    });
    write_synced(&aw.0.join("alice.txt"), "from alice\n");
    let all = [
        ("notes.txt", "v1\n"),
        ("bob.txt", "from bob\n"),
        ("alice.txt", "from alice\n"),
    ];
    wait_for(60, "the owner's next version at carol and bob", || {
        (shows(&cw.0, &all) && shows(&bw.0, &all)).then_some(())
    });
    let (after, _, _) = head(&c, &name);
    assert!(
        after > by_bob,
        "the owner's record went above bob's: {by_bob} -> {after}"
    );
    // Carol's history is one chain, strictly down in sequence.
    let log = c.json(&["share", "log", &name]);
    let seqs: Vec<u64> = log
        .iter()
        .map(|v| v["sequence"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");

    // Revoked, bob no longer publishes: what he writes later reaches neither the owner nor
    // carol.
    assert!(b.lists_member(&name, "bob") && c.lists_member(&name, "bob"));
    // Revoking a publisher says what it cannot undo (the key it holds).
    let said = a.cairn(&["share", "revoke", "team", &bob]).expect_ok();
    assert!(
        said.contains("held the share's key") && said.contains("new one"),
        "{said}"
    );
    wait_for(30, "bob and carol to learn of the revocation", || {
        (!b.lists_member(&name, "bob") && !c.lists_member(&name, "bob")).then_some(())
    });
    let settled = head(&c, &name);
    write_fsync_unchecked(&bw.0.join("late.txt"), "too late\n");
    b.cairn(&["share", "commit", &name])
        .expect_err("is not a member of share");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !cw.0.join("late.txt").exists(),
        "a revoked writer's file reached carol"
    );
    assert!(
        !aw.0.join("late.txt").exists(),
        "a revoked writer's file reached the owner"
    );
    assert_eq!(head(&c, &name), settled, "carol's head did not move");
    assert!(shows(&cw.0, &all));
    for d in [&db, &dc] {
        let log = d.log();
        assert!(!log.contains("cannot sign the share's record"), "{log}");
    }

    unmount_stop_verify(&a, aw, da);
    unmount_stop_verify(&b, bw, db);
    unmount_stop_verify(&c, cw, dc);
}
