//! Several writers of one share through real daemons on 127.0.0.1 and real FUSE mounts: the
//! owner grants a peer, the peer mounts the share writable, both write at once, and each mount
//! ends up showing both writers' files (heads travel on the share's heads topic, the node that
//! sees another writer's head merges or fast-forwards, the mounts move along); `share log`
//! shows who made each version; a revoked writer's later commits go nowhere.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use cairn_tests::{
    shows, wait_for, write_fsync_unchecked, write_synced, Daemon, MountGuard, TestRepo,
};

/// Paths and file contents below `dir` (directories as `None`): what two members compare.
fn contents(dir: &Path) -> std::collections::BTreeMap<String, Option<String>> {
    cairn_tests::read_tree(dir)
        .into_iter()
        .map(|(p, e)| {
            let text = match e {
                cairn_tests::TreeEntry::File { data, .. } => {
                    Some(String::from_utf8_lossy(&data).into_owned())
                }
                _ => None,
            };
            (p.display().to_string(), text)
        })
        .collect()
}

/// Unmounts both writers' mounts, stops both daemons (each must end with 0) and verifies both
/// repos.
fn end(a: (&TestRepo, MountGuard, Daemon), b: (&TestRepo, MountGuard, Daemon)) {
    for (r, m, mut d) in [a, b] {
        r.cairn(&["unmount", m.0.to_str().unwrap()]).expect_ok();
        assert_eq!(d.stop(), Some(0));
        r.cairn(&["repo", "verify"]).expect_ok();
    }
}

fn head_root(r: &TestRepo, share: &str) -> String {
    r.json(&["share", "log", share])[0]["root"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_owner_and_a_member_write_at_once_and_both_mounts_show_both_writes() {
    let (a, b) = (TestRepo::new(), TestRepo::new());
    a.use_loopback_network();
    b.use_loopback_network();
    let share = &a.json(&["share", "new", "team"])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let da = a.daemon();
    let db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let bob = b.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    a.cairn(&["share", "grant", "team", &bob, "--label", "bob"])
        .expect_ok();

    let (aw, a_writes) = a.mount_share("team", "alice");
    assert!(a_writes);
    write_synced(&aw.0.join("notes.txt"), "v1\n");
    // Bob follows by the share id: granted, his mount is writable.
    wait_for(30, "the first version at bob", || {
        b.cairn(&["name", "resolve", &name]).ok().then_some(())
    });
    let (bw, b_writes) = b.mount_share(&name, "bob");
    assert!(b_writes, "a member's mount is writable");
    wait_for(30, "notes.txt at bob", || {
        shows(&bw.0, &[("notes.txt", "v1\n")]).then_some(())
    });

    // Both write at once, different files.
    write_synced(&aw.0.join("alice.txt"), "from alice\n");
    write_synced(&bw.0.join("bob.txt"), "from bob\n");
    let both = [
        ("notes.txt", "v1\n"),
        ("alice.txt", "from alice\n"),
        ("bob.txt", "from bob\n"),
    ];
    wait_for(60, "both mounts to show both writes", || {
        (shows(&aw.0, &both) && shows(&bw.0, &both)).then_some(())
    });
    // One tree everywhere: the owner's head, which bob follows too.
    wait_for(30, "bob to follow the owner's merged head", || {
        (head_root(&a, "team") == head_root(&b, &name)).then_some(())
    });
    let log = a.json(&["share", "log", "team"]);
    assert!(
        log.iter()
            .any(|v| v["writer"] == "bob" || v["parents"].as_u64() == Some(2)),
        "the owner's history has bob's commit or a merge: {log:?}"
    );
    assert!(log.iter().all(|v| !v["writer"].is_null()), "{log:?}");

    // Revoked, bob's later writes reach no one; the owner's mount is unaffected.
    assert!(b.lists_member(&name, "bob"));
    // Not a publisher: no word of a key.
    let said = a.cairn(&["share", "revoke", "team", &bob]).expect_ok();
    assert!(!said.contains("share's key"), "{said}");
    wait_for(30, "bob to learn of the revocation", || {
        (!b.lists_member(&name, "bob")).then_some(())
    });
    write_fsync_unchecked(&bw.0.join("late.txt"), "too late\n");
    // Committing by hand says why, with a non-zero exit; the change stays staged.
    b.cairn(&["share", "commit", &name])
        .expect_err("is not a member of share");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !aw.0.join("late.txt").exists(),
        "a revoked writer's file reached the owner"
    );
    assert!(shows(&aw.0, &both));

    end((&a, aw, da), (&b, bw, db));
}

/// The named cases of a merge, through real mounts: the member goes offline (its daemon
/// stopped, its share mounted by a foreground `cairn mount` without network) and both edit the
/// same things; when its daemon is back, both mounts end identical, with every write kept.
#[test]
fn edits_made_apart_merge_by_the_rules_when_the_writers_meet_again() {
    let (a, b) = (TestRepo::new(), TestRepo::new());
    a.use_loopback_network();
    b.use_loopback_network();
    let src = a.path("src");
    fs::create_dir_all(&src).unwrap();
    for (f, t) in [
        ("report.txt", "draft\n"),
        ("gone.txt", "old\n"),
        ("moved.txt", "move me\n"),
        ("clash", "a file\n"),
        ("both-gone.txt", "x\n"),
    ] {
        fs::write(src.join(f), t).unwrap();
    }
    let share = &a.json(&["share", "new", "team", "--from", src.to_str().unwrap()])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let da = a.daemon();
    let mut db = b.daemon();
    let a_addr = da.tcp_addr();
    b.cairn(&["swarm", "connect", &a_addr]).expect_ok();
    let bob = b.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    a.cairn(&["share", "grant", "team", &bob, "--label", "bob"])
        .expect_ok();
    let (aw, _) = a.mount_share("team", "alice");
    wait_for(30, "the share at bob", || {
        b.cairn(&["name", "resolve", &name]).ok().then_some(())
    });
    let (bw, b_writes) = b.mount_share(&name, "bob");
    assert!(b_writes);
    wait_for(30, "bob's mount to show the share", || {
        shows(&bw.0, &[("report.txt", "draft\n")]).then_some(())
    });
    b.cairn(&["unmount", bw.0.to_str().unwrap()]).expect_ok();
    assert_eq!(db.stop(), Some(0));

    // Apart: bob offline, each side edits what the other edits too.
    let offline = b.mount_with(&name, &bw.0, &[], &[]);
    write_synced(&aw.0.join("report.txt"), "alice's report\n");
    let mut offline = Some(offline);
    let bob_writes = |offline: &mut Option<cairn_tests::Mount>, name: &str, text: &str| {
        let done = fs::File::create(bw.0.join(name)).and_then(|f| {
            f.write_all_at(text.as_bytes(), 0)?;
            f.sync_all()
        });
        if let Err(e) = done {
            let log = offline.take().map(|m| m.stop()).unwrap_or_default();
            panic!("writing {name} on the offline mount: {e}: {log}");
        }
    };
    bob_writes(&mut offline, "report.txt", "bob's report\n");
    fs::remove_file(aw.0.join("gone.txt")).unwrap();
    bob_writes(&mut offline, "gone.txt", "bob kept it\n");
    fs::rename(aw.0.join("moved.txt"), aw.0.join("renamed.txt")).unwrap();
    bob_writes(&mut offline, "moved.txt", "bob's edit\n");
    fs::remove_file(aw.0.join("clash")).unwrap();
    fs::create_dir(aw.0.join("clash")).unwrap();
    write_synced(&aw.0.join("clash/inside.txt"), "in alice's directory\n");
    bob_writes(&mut offline, "clash", "bob's file\n");
    fs::remove_file(aw.0.join("both-gone.txt")).unwrap();
    fs::remove_file(bw.0.join("both-gone.txt")).unwrap();
    a.cairn(&["share", "commit", "team"]).expect_ok();
    // Bob's foreground mount commits what is staged as it ends.
    let log = offline.take().unwrap().stop();
    assert!(!log.contains("ERROR"), "{log}");

    // Together again: bob's daemon announces his head, both merge, both mounts converge.
    let db = b.daemon();
    b.cairn(&["swarm", "connect", &a_addr]).expect_ok();
    let (bw, b_writes) = b.mount_share(&name, "bob");
    assert!(b_writes);
    wait_for(90, "both mounts to show the same merged tree", || {
        let (ta, tb) = (contents(&aw.0), contents(&bw.0));
        (ta == tb && ta.keys().any(|k| k.contains("cairn-conflict"))).then_some(())
    });
    let t = contents(&aw.0);
    // Same file changed on both sides: one keeps the name, the other is a conflict copy.
    let reports: Vec<&Option<String>> = t
        .iter()
        .filter(|(k, _)| k.starts_with("report"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(reports.len(), 2, "{t:?}");
    for text in ["alice's report\n", "bob's report\n"] {
        assert!(
            reports.iter().any(|r| r.as_deref() == Some(text)),
            "{text}: {t:?}"
        );
    }
    let copy = t
        .keys()
        .find(|k| k.starts_with("report.cairn-conflict-") && k.ends_with(".txt"))
        .unwrap_or_else(|| panic!("a conflict copy of report.txt: {t:?}"));
    // Modify beats delete: the file comes back with bob's bytes.
    assert_eq!(t["gone.txt"].as_deref(), Some("bob kept it\n"));
    // Rename on one side, edit on the other: the edit lands on the new name.
    assert_eq!(t["renamed.txt"].as_deref(), Some("bob's edit\n"));
    assert!(!t.contains_key("moved.txt"), "{t:?}");
    // A directory against a file: both kept, one under another name (the file, which had the
    // name before, keeps it).
    assert_eq!(t["clash"].as_deref(), Some("bob's file\n"), "{t:?}");
    assert!(
        t.iter().any(|(k, v)| k.starts_with("clash.cairn-conflict-")
            && k.ends_with("/inside.txt")
            && v.as_deref() == Some("in alice's directory\n")),
        "{t:?}"
    );
    // Deleted on both sides: gone.
    assert!(!t.contains_key("both-gone.txt"), "{t:?}");
    // `share conflicts` lists the copies, on both nodes alike.
    let listed: Vec<String> = a
        .json(&["share", "conflicts", "team"])
        .iter()
        .map(|j| j["path"].as_str().unwrap().to_string())
        .collect();
    assert!(listed.contains(copy), "{listed:?}");
    wait_for(30, "bob to follow the merged head", || {
        (head_root(&a, "team") == head_root(&b, &name)).then_some(())
    });
    let log = a.json(&["share", "log", "team"]);
    assert!(
        log.iter().any(|v| v["parents"].as_u64() == Some(2)),
        "a merge in the owner's history: {log:?}"
    );

    end((&a, aw, da), (&b, bw, db));
}

/// Changes staged on a writer's mount wait through a crash while another writer's version moves
/// the tip: when the mount comes back it opens over the version the changes were made on, and
/// their commit is merged into the tip (neither the staged file nor the other writer's is lost),
/// after which the mount moves onto the merged tip.
#[test]
fn changes_staged_before_a_crash_merge_into_a_tip_that_moved_meanwhile() {
    let (a, b) = (TestRepo::new(), TestRepo::new());
    a.use_loopback_network();
    b.use_loopback_network();
    // Only fsyncs commit at alice: her write stays staged.
    a.cairn(&["config", "set", "shares.commit_quiet_ms", "3600000"])
        .expect_ok();
    a.cairn(&["config", "set", "shares.commit_max_secs", "3600"])
        .expect_ok();
    let src = a.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("base.txt"), "base\n").unwrap();
    let share = &a.json(&["share", "new", "team", "--from", src.to_str().unwrap()])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let mut da = a.daemon();
    let db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    let bob = b.json(&["id"])[0]["peer_id"].as_str().unwrap().to_string();
    a.cairn(&["share", "grant", "team", &bob, "--label", "bob"])
        .expect_ok();
    let (aw, _) = a.mount_share("team", "alice");
    wait_for(30, "the share at bob", || {
        b.cairn(&["name", "resolve", &name]).ok().then_some(())
    });
    let (bw, b_writes) = b.mount_share(&name, "bob");
    assert!(b_writes);
    wait_for(30, "bob's mount to show the share", || {
        shows(&bw.0, &[("base.txt", "base\n")]).then_some(())
    });

    // Staged, not committed (no fsync); then alice's daemon dies.
    fs::write(aw.0.join("alice.txt"), "staged at alice\n").unwrap();
    cairn_tests::signal(da.pid(), libc::SIGKILL);
    assert_eq!(da.stop(), None, "killed");
    drop(aw);
    // Bob writes while she is down.
    write_synced(&bw.0.join("bob.txt"), "from bob\n");

    // Her daemon back (her mount not yet): bob's head, announced again as she subscribes,
    // moves her tip.
    let da = a.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    wait_for(60, "bob's commit in alice's tip", || {
        let root = head_root(&a, "team");
        (a.cairn(&["cat", &format!("{root}/bob.txt")]).ok()).then_some(())
    });
    // Her mount again: the staged file is there, committed into the tip with bob's.
    let (aw, a_writes) = a.mount_share("team", "alice");
    assert!(a_writes);
    let all = [
        ("base.txt", "base\n"),
        ("alice.txt", "staged at alice\n"),
        ("bob.txt", "from bob\n"),
    ];
    wait_for(60, "both mounts to show every write", || {
        (shows(&aw.0, &all) && shows(&bw.0, &all)).then_some(())
    });
    wait_for(30, "one tree at both", || {
        (head_root(&a, "team") == head_root(&b, &name)).then_some(())
    });
    assert_eq!(contents(&aw.0), contents(&bw.0));
    end((&a, aw, da), (&b, bw, db));
}
