//! Shared folders through the real binary: creating shares (keys, share ids, the first signed
//! version), the version chain (log, diff, restore), retention with GC, mounting a share's head,
//! a damaged head file, and `kill -9` at every step of a commit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use cairn_store::{IpnsName, IpnsRecord, FAULT_ENV};
use cairn_tests::{TestRepo, TreeEntry};
use serde_json::Value;

fn json(r: &TestRepo, args: &[&str]) -> Vec<Value> {
    r.json(args)
}

fn share_dir(r: &TestRepo, name: &str) -> PathBuf {
    r.repo().join("shares").join(name)
}

fn tree(r: &TestRepo, files: &[(&str, &str)]) -> PathBuf {
    let dir = r.path("src");
    let _ = fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn a_new_share_is_an_ipns_name_with_a_private_key_and_a_signed_first_version() {
    let r = TestRepo::new();
    let created = &json(&r, &["share", "new", "notes"])[0];
    let name = created["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("k51"), "{created}");
    assert_eq!(created["sequence"], 1);
    assert_eq!(created["writable"], true);
    // The share id is the IPNS name of the key in the repo, and the head is signed by it.
    let parsed: IpnsName = name.parse().unwrap();
    assert_eq!(parsed.to_string(), name);
    let dir = share_dir(&r, &name);
    for f in ["key", "head", "share.toml"] {
        let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let head = fs::read(dir.join("head")).unwrap();
    let record = IpnsRecord::verify(&head, &parsed).unwrap();
    assert_eq!(record.sequence(), 1);
    assert_eq!(
        record.value().to_string(),
        format!("/ipfs/{}", created["root"].as_str().unwrap())
    );
    // The first version of a share made from nothing is the empty directory.
    assert_eq!(
        r.cairn(&["ls", created["root"].as_str().unwrap()])
            .expect_ok(),
        ""
    );

    // Listed by label and by id, with one shape.
    let listed = json(&r, &["share", "ls"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], *created);
    // Labels are unique and checked.
    r.cairn(&["share", "new", "notes"])
        .expect_err("exists already");
    r.cairn(&["share", "new", "a/b"])
        .expect_err("invalid share label");
    r.cairn(&["share", "new", &name])
        .expect_err("reads as a share id");
    r.cairn(&["share", "log", "nope"])
        .expect_err("no share \"nope\"");

    // rm forgets it; its versions go at the next GC.
    r.cairn(&["share", "rm", &name]).expect_ok();
    assert!(!dir.exists());
    assert!(json(&r, &["share", "ls"]).is_empty());
}

#[test]
fn versions_chain_diff_restore_and_retention_with_gc() {
    let r = TestRepo::new();
    let src = tree(&r, &[("a.txt", "alpha\n"), ("sub/b.txt", "beta\n")]);
    let v1 = &json(
        &r,
        &["share", "new", "docs", "--from", src.to_str().unwrap()],
    )[0];
    let name = v1["name"].as_str().unwrap().to_string();
    assert_eq!(v1["size"], 11);
    // A second tree (in the repo by CID) to compare versions against, and a share from it.
    let src2 = tree(
        &r,
        &[
            ("a.txt", "alpha\n"),
            ("sub/b.txt", "BETA\n"),
            ("c.txt", "gamma\n"),
        ],
    );
    let root2 = r
        .cairn(&["add", "-r", "-Q", src2.to_str().unwrap()])
        .expect_ok();
    let other = &json(&r, &["share", "new", "docs2", "--from", &root2])[0];
    assert_eq!(other["root"], root2.as_str());

    // History: restore v1 gives v2, linking v1.
    let v2 = &json(&r, &["share", "restore", "docs", "1"])[0];
    assert_eq!(v2["sequence"], 2);
    assert_eq!(v2["root"], v1["root"]);
    let log = json(&r, &["share", "log", &name]);
    let seqs: Vec<u64> = log
        .iter()
        .map(|v| v["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 1]);
    for v in &log {
        for key in ["sequence", "time", "root", "record", "size", "changed"] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
    }

    // Diff: a first version against nothing lists the top level as added; a version against
    // another tree lists exactly what differs, unchanged subtrees unread.
    let changes = |args: &[&str]| -> Vec<(String, String, String)> {
        json(&r, args)
            .iter()
            .map(|c| {
                (
                    c["change"].as_str().unwrap().to_string(),
                    c["path"].as_str().unwrap().to_string(),
                    c["type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        changes(&["share", "diff", "docs2"]),
        [
            s("added", "a.txt", "file"),
            s("added", "c.txt", "file"),
            s("added", "sub", "directory")
        ]
    );
    // a.txt was written again (same bytes, a new mtime, which a share keeps): modified too.
    assert_eq!(
        changes(&["share", "diff", "docs", "1", &root2]),
        [
            s("modified", "a.txt", "file"),
            s("added", "c.txt", "file"),
            s("modified", "sub/b.txt", "file")
        ]
    );
    assert_eq!(
        changes(&["share", "diff", "docs", &root2, "2"]),
        [
            s("modified", "a.txt", "file"),
            s("removed", "c.txt", "file"),
            s("modified", "sub/b.txt", "file")
        ]
    );
    assert!(changes(&["share", "diff", "docs", "1", "2"]).is_empty());

    // Retention: keep 1 version; after the next commit and a GC, only the head's blocks stay
    // pinned by the share, and the log is just the head.
    r.cairn(&["share", "retention", "docs", "--versions", "1"])
        .expect_ok();
    let v3 = &json(&r, &["share", "restore", "docs", "2"])[0];
    assert_eq!(v3["sequence"], 3);
    r.cairn(&["repo", "gc"]).expect_ok();
    let log = json(&r, &["share", "log", "docs"]);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["sequence"], 3);
    // The head's tree survived the GC.
    let root = v3["root"].as_str().unwrap();
    assert_eq!(
        r.cairn(&["cat", &format!("{root}/sub/b.txt")]).expect_ok(),
        "beta"
    );
    r.cairn(&["repo", "verify"]).expect_ok();
    r.cairn(&["share", "restore", "docs", "1"])
        .expect_err("has no version 1");

    // New shares take their retention from the config.
    r.cairn(&["config", "set", "shares.keep_versions", "2"])
        .expect_ok();
    r.cairn(&["share", "new", "later"]).expect_ok();
    let kept = &json(&r, &["share", "retention", "later"])[0];
    assert_eq!(kept["keep_versions"], 2, "{kept}");
    for _ in 0..3 {
        r.cairn(&["share", "restore", "later", "1"]).ok();
    }
    r.cairn(&["repo", "gc"]).expect_ok();
    assert_eq!(json(&r, &["share", "log", "later"]).len(), 2);
}

#[test]
fn a_share_mounts_by_label_and_its_head_survives_a_damaged_head_file() {
    let r = TestRepo::new();
    let src = tree(&r, &[("hello.txt", "hello\n")]);
    let v1 = &json(
        &r,
        &["share", "new", "site", "--from", src.to_str().unwrap()],
    )[0];
    let name = v1["name"].as_str().unwrap().to_string();
    r.cairn(&["share", "restore", "site", "1"]).expect_ok();

    let mnt = r.path("mnt");
    let m = r.mount("site", &mnt);
    assert_eq!(fs::read(m.dir.join("hello.txt")).unwrap(), b"hello\n");
    // statfs on the mount reports the repo's disk (total size and block size), as `df` shows.
    let fs_of = |p: &std::path::Path| {
        let out = std::process::Command::new("stat")
            .args(["-f", "-c", "%b %S %l"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(fs_of(&m.dir), fs_of(&r.repo()));
    drop(m);

    // A damaged head file: the newest valid stored version (v2) takes its place.
    let head = share_dir(&r, &name).join("head");
    let mut bytes = fs::read(&head).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&head, &bytes).unwrap();
    let listed = &json(&r, &["share", "ls"])[0];
    assert_eq!(listed["sequence"], 2, "{listed}");
    // A head signed by another key is not this share's head.
    let other = &json(&r, &["share", "new", "other"])[0];
    let foreign = fs::read(share_dir(&r, other["name"].as_str().unwrap()).join("head")).unwrap();
    fs::write(&head, foreign).unwrap();
    let listed = json(&r, &["share", "ls"]);
    let site = listed.iter().find(|s| s["label"] == "site").unwrap();
    assert_eq!(site["sequence"], 2, "{site}");
    // A damaged share.toml of one share does not hide the others.
    let other_dir = share_dir(&r, other["name"].as_str().unwrap());
    fs::write(other_dir.join("share.toml"), "label = [").unwrap();
    let listed = json(&r, &["share", "ls"]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|s| s["label"] == "site"));
    // The next commit writes a valid head again, above every sequence used.
    let v3 = &json(&r, &["share", "restore", "site", "1"])[0];
    assert_eq!(v3["sequence"], 3);
    IpnsRecord::verify(&fs::read(&head).unwrap(), &name.parse().unwrap()).unwrap();
}

/// Runs `args` with the crash point armed; returns whether it was killed there.
fn killed_at(r: &TestRepo, point: &str, args: &[&str]) -> bool {
    let out = r.command(args).env(FAULT_ENV, point).output().unwrap();
    out.status.signal() == Some(libc::SIGKILL)
}

#[test]
fn kill_9_at_every_step_of_a_commit_leaves_a_valid_head() {
    let r = TestRepo::new();
    let src = tree(&r, &[("f", "one\n")]);
    let v1 = &json(&r, &["share", "new", "k", "--from", src.to_str().unwrap()])[0];
    let name: IpnsName = v1["name"].as_str().unwrap().parse().unwrap();
    let head_path = share_dir(&r, &name.to_string()).join("head");
    let mut last = 1;
    for point in [
        "share-record-stored",
        "share-roots-journaled",
        "share-head-written",
    ] {
        assert!(
            killed_at(&r, point, &["share", "restore", "k", "1"]),
            "not killed at {point}"
        );
        let listed = &json(&r, &["share", "ls"])[0];
        let seq = listed["sequence"].as_u64().unwrap();
        // Before the head is written the old head stays; after, the new one is there.
        if point == "share-head-written" {
            assert_eq!(seq, last + 1, "{point}");
        } else {
            assert_eq!(seq, last, "{point}");
        }
        let record = IpnsRecord::verify(&fs::read(&head_path).unwrap(), &name).unwrap();
        assert_eq!(record.sequence(), seq);
        r.cairn(&["repo", "verify"]).expect_ok();
        r.cairn(&["pin", "verify"]).expect_ok();
        // The next commit works and goes above every sequence used so far.
        let next = &json(&r, &["share", "restore", "k", "1"])[0];
        assert!(next["sequence"].as_u64().unwrap() > seq, "{point}: {next}");
        last = next["sequence"].as_u64().unwrap();
    }
    // History reads back through the chain, strictly decreasing.
    let log = json(&r, &["share", "log", "k"]);
    let seqs: Vec<u64> = log
        .iter()
        .map(|v| v["sequence"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    assert_eq!(seqs[0], last);
}

#[test]
fn a_share_made_from_a_folder_mounts_as_that_folder() {
    use std::os::unix::fs::symlink;
    let r = TestRepo::new();
    let src = r.path("folder");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("docs/deep/er")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("README"), "read me\n").unwrap();
    fs::write(src.join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        src.join("docs/deep/er/notes.txt"),
        cairn_tests::pseudo_random(300_000, 3),
    )
    .unwrap();
    fs::write(src.join("docs/ünï cødé.md"), "名前\n").unwrap();
    fs::set_permissions(
        src.join("docs/ünï cødé.md"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    symlink("../README", src.join("docs/readme-link")).unwrap();
    symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    // A fixed, old mtime, as `touch -d` leaves it.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(src.join("README"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    r.cairn(&["share", "new", "work", "--from", src.to_str().unwrap()])
        .expect_ok();
    let m = r.mount("work", &r.path("mnt"));
    // The head mounts read-only (for now): write bits are not shown, everything else is as
    // in the folder: names, bytes, read and execute bits, mtimes, symlink targets.
    let read_only = |mut t: std::collections::BTreeMap<std::path::PathBuf, TreeEntry>| {
        for e in t.values_mut() {
            match e {
                TreeEntry::Dir { mode } | TreeEntry::File { mode, .. } => *mode &= 0o555,
                TreeEntry::Symlink { .. } => {}
            }
        }
        t
    };
    let mine = read_only(cairn_tests::read_tree(&src));
    let theirs = read_only(cairn_tests::read_tree(&m.dir));
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (path, e) in &mine {
        assert_eq!(e, &theirs[path], "{}", path.display());
    }
}

#[test]
fn bad_starting_points_are_refused_and_no_share_is_made() {
    let r = TestRepo::new();
    r.cairn(&["share", "new", "x", "--from", "no/such/dir"])
        .expect_err("not a CID in this repo nor a directory");
    fs::write(r.path("file"), b"just a file").unwrap();
    r.cairn(&[
        "share",
        "new",
        "x",
        "--from",
        r.path("file").to_str().unwrap(),
    ])
    .expect_err("is not a directory");
    let file_cid = r
        .cairn(&["add", "-Q", r.path("file").to_str().unwrap()])
        .expect_ok();
    r.cairn(&["share", "new", "x", "--from", &file_cid])
        .expect_err("is not a directory");
    assert!(json(&r, &["share", "ls"]).is_empty());
    r.cairn(&["share", "new", "x"]).expect_ok();
    r.cairn(&["share", "diff", "x", "7"])
        .expect_err("has no version 7");
    r.cairn(&[
        "share",
        "log",
        "k51qzi5uqu5dl3b47faldkg8uwwsxdc19qx6duz3e01pp3oidys43fd7npn133",
    ])
    .expect_err("no share");
}

#[test]
fn the_owner_grants_and_revokes_writers_in_a_signed_member_list() {
    let r = TestRepo::new();
    let bob = TestRepo::new();
    let carol = TestRepo::new();
    let name = json(&r, &["share", "new", "team"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // Before any grant: the owner alone.
    let m = json(&r, &["share", "members", "team"]);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (&m[0]["writer"], &m[0]["role"]),
        (&name.as_str().into(), &"owner".into())
    );
    // Bob by peer id, Carol by key, with a label and the right to publish.
    let bob_id = bob.json(&["id"])[0]["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let carol_key = carol.json(&["id"])[0]["peer_id"]
        .as_str()
        .unwrap()
        .parse::<IpnsName>()
        .unwrap()
        .to_string();
    json(&r, &["share", "grant", "team", &bob_id]);
    let granted = &json(
        &r,
        &[
            "share",
            "grant",
            "team",
            &carol_key,
            "--label",
            "carol",
            "--publish",
        ],
    )[0];
    // List 1 is the empty one the share's first version named; each grant makes the next.
    assert_eq!(granted["list"], 3, "{granted}");
    let m = json(&r, &["share", "members", "team"]);
    let bob_key: IpnsName = bob_id.parse().unwrap();
    let row = |k: &str| m.iter().find(|x| x["writer"] == k).cloned();
    let b = row(&bob_key.to_string()).expect("bob is listed");
    assert_eq!(
        (&b["role"], &b["publish"]),
        (&"writer".into(), &false.into()),
        "{b}"
    );
    let c = row(&carol_key).expect("carol is listed");
    assert_eq!(
        (&c["label"], &c["publish"]),
        (&"carol".into(), &true.into()),
        "{c}"
    );
    // The list is signed by the share's key and chained; flipping a byte of the file makes the
    // repo fall back to the list kept as a block.
    let file = share_dir(&r, &name).join("members");
    let bytes = fs::read(&file).unwrap();
    let list = cairn_store::MemberList::verify(&bytes, &name.parse().unwrap()).unwrap();
    assert_eq!(list.seq, 3);
    assert!(list.prev.is_some());
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x40;
    fs::write(&file, &bad).unwrap();
    assert_eq!(json(&r, &["share", "members", "team"]).len(), 3);
    // Revoking: gone from the list; revoking again says it is not a member.
    json(&r, &["share", "revoke", "team", &bob_id]);
    let m = json(&r, &["share", "members", "team"]);
    assert_eq!(m.len(), 2);
    assert!(m
        .iter()
        .all(|x| x["writer"] != bob_key.to_string().as_str()));
    r.cairn(&["share", "revoke", "team", &bob_id])
        .expect_err("is not a member");
    // Bad input: the owner itself, an invalid key, a bad label.
    r.cairn(&["share", "grant", "team", &name])
        .expect_err("always a member");
    r.cairn(&["share", "grant", "team", "12D3KooWnope"])
        .expect_err("invalid writer");
    r.cairn(&["share", "grant", "team", &bob_id, "--label", "a/b"])
        .expect_err("invalid member label");
    // GC keeps every list.
    r.cairn(&["repo", "gc"]).expect_ok();
    fs::remove_file(&file).unwrap();
    assert_eq!(json(&r, &["share", "members", "team"]).len(), 2);
}

#[test]
fn share_conflicts_lists_the_conflict_copies_in_the_head() {
    let r = TestRepo::new();
    let src = tree(
        &r,
        &[
            ("report.txt", "mine"),
            ("report.cairn-conflict-bob-20261202-070000.txt", "bob's"),
            ("sub/notes.md", "n"),
            ("sub/deeper/x.cairn-conflict-carol-20261201-235959", "c"),
        ],
    );
    json(&r, &["share", "new", "c", "--from", src.to_str().unwrap()]);
    let found = json(&r, &["share", "conflicts", "c"]);
    let paths: Vec<&str> = found.iter().map(|v| v["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "report.cairn-conflict-bob-20261202-070000.txt",
            "sub/deeper/x.cairn-conflict-carol-20261201-235959"
        ]
    );
    assert!(found[0]["cid"].as_str().unwrap().starts_with("baf"));
    let clean = TestRepo::new();
    json(&clean, &["share", "new", "clean"]);
    assert!(json(&clean, &["share", "conflicts", "clean"]).is_empty());
    clean
        .cairn(&["share", "conflicts", "nope"])
        .expect_err("no share");
}

#[test]
fn share_commands_refuse_bad_input_clearly() {
    let r = TestRepo::new();
    let name = json(&r, &["share", "new", "own"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let other = TestRepo::new();
    let writer = other.json(&["id"])[0]["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        vec!["share", "status", "nope"],
        vec!["share", "members", "nope"],
        vec!["share", "conflicts", "nope"],
        vec!["share", "grant", "nope", writer.as_str()],
    ] {
        r.cairn(&args).expect_err("no share \"nope\"");
    }
    // Following needs the network: without a daemon it says so, with its own code.
    let out = r
        .command(&["--json", "share", "follow", &name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs_daemon") && err.contains("cairn daemon"),
        "{err}"
    );
    // Without the share's key, the member list cannot change.
    fs::remove_file(share_dir(&r, &name).join("key")).unwrap();
    r.cairn(&["share", "grant", "own", &writer])
        .expect_err("read-only here");
}
