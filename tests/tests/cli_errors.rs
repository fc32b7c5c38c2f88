//! Bad input through the real `cairn` binary: every case ends with one clear `Error:` line and a
//! non-zero exit, never a panic, a backtrace or a hang — and nothing is written where it must not be.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use cairn_store::{
    cid_for, Block, Blockstore, Bytes, DataType, HashAlg, PbLink, PbNode, Repo, UnixFsData, DAG_PB,
    RAW,
};
use cairn_tests::TestRepo;

#[test]
fn invalid_cid_text_is_named() {
    let r = TestRepo::new();
    r.cairn(&["cat", "not-a-cid"])
        .expect_err("invalid CID \"not-a-cid\"");
    r.cairn(&["ls", "/ipfs/zzz/a"]).expect_err("invalid CID");
    r.cairn(&["block", "get", "Qm123"])
        .expect_err("invalid CID");
    r.cairn(&["pin", "rm", "bafy-nope"])
        .expect_err("invalid CID");
}

#[test]
fn content_missing_offline_fails_fast() {
    let r = TestRepo::new();
    let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"nobody has this").to_string();
    let started = std::time::Instant::now();
    r.cairn(&["cat", &cid]).expect_err("not found locally");
    r.cairn(&["get", &cid]).expect_err("not found locally");
    r.cairn(&["ls", &cid]).expect_err("not found locally");
    r.cairn(&["pin", "add", &cid]).expect_err(&cid);
    r.cairn(&["dag", "export", &cid]).expect_err(&cid);
    // Offline means no waiting on anything: generous bound, only to catch a hang.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn missing_and_unreadable_inputs() {
    let r = TestRepo::new();
    r.cairn(&["add", "does/not/exist"])
        .expect_err("does/not/exist");
    // /proc/self/mem is a "file" whose first page cannot be read: the read error is reported.
    r.cairn(&["add", "/proc/self/mem"])
        .expect_err("/proc/self/mem");
    // A directory without -r.
    std::fs::create_dir(r.path("dir")).unwrap();
    r.cairn(&["add", "dir"]).expect_err("use -r");
    // A FIFO cannot be stored in UnixFS.
    let fifo = r.path("dir/pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    r.cairn(&["add", "-r", "dir"]).expect_err("FIFO");
    // Nothing was pinned by the failed adds.
    assert_eq!(r.cairn(&["pin", "ls"]).expect_ok(), "");
}

#[test]
fn bad_options_are_refused() {
    let r = TestRepo::new();
    std::fs::write(r.path("f"), b"x").unwrap();
    r.cairn(&["add", "--chunker", "size-0", "f"])
        .expect_err("chunk");
    r.cairn(&["add", "--chunker", "rabin", "f"])
        .expect_err("rabin");
    // Caught by the command-line parser, which lists the allowed values (usage errors exit 2).
    let run = r.cairn(&["add", "--hash", "md5", "f"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("'md5'") && run.stderr.contains("sha2-256, blake3"),
        "{}",
        run.stderr
    );
    r.cairn(&["add", "--cid-version", "0", "--hash", "blake3", "f"])
        .expect_err("CIDv0");
}

#[test]
fn uninitialised_repo_and_double_init() {
    let r = TestRepo::uninitialised();
    let run = r.cairn(&[
        "cat",
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
    ]);
    run.expect_err("cairn init");
    assert!(
        !r.repo().exists(),
        "a failed command must not create the repo"
    );
    r.cairn(&["init"]).expect_ok();
    r.cairn(&["init"]).expect_err("already exists");
}

#[test]
fn a_repo_in_use_is_refused_clearly() {
    let r = TestRepo::new();
    let held = Repo::open(&r.repo()).unwrap();
    r.cairn(&["repo", "stat"])
        .expect_err("in use by another cairn process");
    drop(held);
    r.cairn(&["repo", "stat"]).expect_ok();
}

#[test]
fn corrupt_block_on_disk_is_detected_and_named() {
    let r = TestRepo::new();
    std::fs::write(r.path("f"), cairn_tests::pseudo_random(600_000, 7)).unwrap();
    let root = r.cairn(&["add", "-Q", "f"]).expect_ok();
    // Pick a leaf and overwrite its bytes behind cairn's back.
    let leaf = {
        let repo = Repo::open(&r.repo()).unwrap();
        let data = repo.store().get(&root.parse().unwrap()).unwrap().unwrap();
        let node = PbNode::decode(&data).unwrap();
        let leaf = node.links[1].cid;
        repo.store()
            .put_unchecked_for_tests(&leaf, b"rotten bytes")
            .unwrap();
        leaf.to_string()
    };
    r.cairn(&["cat", &root]).expect_err(&leaf);
    r.cairn(&["block", "get", &leaf])
        .expect_err(&format!("corrupt block on disk: {leaf}"));
    let verify = r.cairn(&["repo", "verify"]);
    verify.expect_err("corrupt");
    assert!(
        verify.text().contains(&leaf),
        "verify names the block: {}",
        verify.text()
    );
    r.cairn(&["pin", "verify"]).expect_err("verification");

    // Repair: drop the bad block and add the file again.
    r.cairn(&["block", "rm", &root]).expect_err("pinned");
    r.cairn(&["block", "rm", &leaf]).expect_ok();
    r.cairn(&["pin", "verify"]).expect_err("verification");
    assert_eq!(r.cairn(&["add", "-Q", "f"]).expect_ok(), root);
    r.cairn(&["repo", "verify"]).expect_ok();
    r.cairn(&["pin", "verify"]).expect_ok();
    assert_eq!(
        r.cairn(&["cat", &root]).stdout,
        cairn_tests::pseudo_random(600_000, 7)
    );
}

/// A directory node whose single entry has the hostile `name`.
fn hostile_dir(name: &str) -> Vec<u8> {
    let child = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"pwned\n"));
    let node = PbNode {
        links: vec![PbLink {
            cid: *child.cid(),
            name: Some(name.to_string()),
            tsize: Some(6),
        }],
        data: Some(Bytes::from(UnixFsData::new(DataType::Directory).encode())),
    };
    node.encode()
}

#[test]
fn hostile_link_names_never_escape_the_output_dir() {
    let r = TestRepo::new();
    let child = r.cairn_stdin(&["block", "put"], b"pwned\n").expect_ok();
    assert_eq!(
        child,
        cid_for(1, RAW, HashAlg::Sha2_256, b"pwned\n").to_string()
    );
    for (i, name) in [
        "../escaped",
        "a/b",
        "..",
        ".",
        "",
        "nul\0byte",
        "/etc/passwd",
    ]
    .iter()
    .enumerate()
    {
        let dag = hostile_dir(name);
        let cid = r
            .cairn_stdin(&["block", "put", "--format", "dag-pb"], &dag)
            .expect_ok();
        assert_eq!(cid, cid_for(1, DAG_PB, HashAlg::Sha2_256, &dag).to_string());
        let out = format!("out{i}");
        r.cairn(&["get", &cid, "-o", &out]).expect_err("");
        r.cairn(&["ls", &cid]).expect_err("");
        assert!(
            !r.path("escaped").exists(),
            "{name:?} escaped the output directory"
        );
        assert!(!r.path(&format!("out{i}/pwned")).exists());
    }
}

#[test]
fn json_output_and_quiet_add() {
    let r = TestRepo::new();
    std::fs::write(r.path("f"), b"hello world\n").unwrap();
    let q = r.cairn(&["add", "-Q", "f"]).expect_ok();
    assert_eq!(
        q,
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );
    let v0 = r.cairn(&["add", "--cid-version", "0", "f"]).expect_ok();
    assert_eq!(v0, "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o f");
    let stat = r.cairn(&["--json", "repo", "stat"]).expect_ok();
    let v: serde_json::Value = serde_json::from_str(&stat).unwrap();
    assert_eq!(v["pins"], 2);
    assert!(v["blocks"].as_u64().unwrap() >= 2);
    // Piped output never carries progress bars or escape codes.
    let big = r.path("big");
    std::fs::write(&big, cairn_tests::pseudo_random(3 << 20, 1)).unwrap();
    let run = r.cairn(&["add", "--progress", "big"]);
    run.expect_ok();
    assert!(
        !run.stderr.contains('\u{1b}'),
        "escape codes on a pipe: {:?}",
        run.stderr
    );
}

#[test]
fn content_never_carries_setuid_bits_and_timeouts_are_bounded() {
    let r = TestRepo::new();
    // A file node claiming mode 04755 (setuid), built by hand and stored as a raw dag-pb block.
    let mut data = UnixFsData::new(DataType::File);
    data.data = Some(Bytes::from_static(b"#!/bin/sh\n"));
    data.filesize = Some(10);
    data.mode = Some(0o4755);
    let node = PbNode {
        links: vec![],
        data: Some(Bytes::from(data.encode())),
    };
    let cid = r
        .cairn_stdin(&["block", "put", "--format", "dag-pb"], &node.encode())
        .expect_ok();
    r.cairn(&["get", &cid, "-o", "suid"]).expect_ok();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(r.path("suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "mode {mode:o}");

    // --timeout outside 1..=86400 is refused by the argument parser, not carried to the node.
    for bad in ["0", "18446744073709551615"] {
        let run = r.cairn(&["--timeout", bad, "cat", &cid]);
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    }
}

/// Names in `dir` other than `keep`.
fn leftovers(dir: &std::path::Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn a_failed_get_leaves_nothing_and_a_rerun_succeeds() {
    let r = TestRepo::new();
    let src = r.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"first\n").unwrap();
    std::fs::write(
        src.join("sub/big.bin"),
        cairn_tests::pseudo_random(3 << 20, 11),
    )
    .unwrap();
    std::fs::write(src.join("sub/z.txt"), b"last, and missing\n").unwrap();
    let root = r
        .cairn(&["add", "-r", "-Q", "--cid-version", "1", "src"])
        .expect_ok();
    // z.txt is one raw block, written after everything else: take it away.
    let listing = r.cairn(&["ls", &format!("{root}/sub")]).expect_ok();
    let z = listing
        .lines()
        .find(|l| l.ends_with(" z.txt"))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    let block = r.cairn(&["block", "get", &z]);
    assert!(block.ok());
    r.cairn(&["block", "rm", &z]).expect_ok();

    for out in ["out", "src-copy"] {
        r.cairn(&["get", &root, "-o", out]).expect_err(&z);
        assert_eq!(
            leftovers(r.dir.path(), &["repo", "src"]),
            Vec::<String>::new()
        );
    }
    // A single file fails the same way.
    r.cairn(&["get", &z, "-o", "z"]).expect_err(&z);
    assert_eq!(
        leftovers(r.dir.path(), &["repo", "src"]),
        Vec::<String>::new()
    );

    assert_eq!(
        r.cairn_stdin(&["block", "put"], &block.stdout).expect_ok(),
        z
    );
    r.cairn(&["get", &root, "-o", "out"]).expect_ok();
    let diff = std::process::Command::new("diff")
        .arg("-r")
        .arg(&src)
        .arg(r.path("out"))
        .status()
        .unwrap();
    assert!(diff.success(), "the re-run got a different tree");
    assert_eq!(
        leftovers(r.dir.path(), &["repo", "src", "out"]),
        Vec::<String>::new()
    );
}

#[test]
fn an_interrupted_get_leaves_nothing() {
    let r = TestRepo::new();
    // 50 000 entries sharing one block: little to import, a lot of files to write.
    let mut b = cairn_tests::Blocks::default();
    let f = b.raw(b"many copies\n");
    let entries = (0..50_000).map(|i| (format!("f{i:05}"), f, 12)).collect();
    let dir = b.sharded_dir(entries);
    b.import(&r, dir);

    let get = r
        .command(&["get", &dir.to_string(), "-o", "out"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cairn_tests::wait_for(60, "the partial output to appear", || {
        let found = leftovers(r.dir.path(), &["repo"])
            .iter()
            .any(|n| n.starts_with(".out.cairn-partial-"));
        found.then_some(())
    });
    cairn_tests::signal(get.id(), libc::SIGINT);
    let out = get.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "get was not interrupted: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(leftovers(r.dir.path(), &["repo"]), Vec::<String>::new());
}
