//! The store against what real disks and users do, through the real `cairn` binary: a full
//! disk (a real tmpfs, with the free-space guard and without it), a lost or damaged index,
//! a lost pin journal, and a repo that must stay private under a permissive umask.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cairn_tests::{pseudo_random, TestRepo};

/// A tmpfs mounted at the test repo's path, unmounted when dropped.
struct Tmpfs {
    repo: TestRepo,
}

impl Tmpfs {
    fn new(size_mib: u64) -> Tmpfs {
        let repo = TestRepo::uninitialised();
        fs::create_dir_all(repo.repo()).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}M,mode=0755")])
            .arg("tmpfs")
            .arg(repo.repo())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs (the tests run as root)");
        Tmpfs { repo }
    }

    fn resize(&self, size_mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}M")])
            .arg(self.repo.repo())
            .status()
            .unwrap();
        assert!(status.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.repo.repo()).status();
    }
}

fn set_config(repo: &TestRepo, section: &str, key: &str, value: toml::Value) {
    let path = repo.repo().join("config.toml");
    let mut cfg: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
    cfg.entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap()
        .insert(key.into(), value);
    fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
}

fn add_file(repo: &TestRepo, name: &str, len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = pseudo_random(len, seed);
    let path = repo.path(name);
    fs::write(&path, &data).unwrap();
    let cid = repo
        .cairn(&["add", "-Q", path.to_str().unwrap()])
        .expect_ok();
    (cid, data)
}

fn assert_cat(repo: &TestRepo, cid: &str, data: &[u8]) {
    let run = repo.cairn(&["cat", cid]);
    assert!(run.ok(), "cat {cid}: {}", run.stderr);
    assert!(run.stdout == data, "cat {cid}: wrong bytes");
}

/// The sequence of the issue: a 64 MiB repo disk, 5 MiB added, a 200 MiB add that cannot fit,
/// then `repo gc` while the disk is still full, then more space: everything keeps working,
/// nothing added before is lost, and `repo verify` is clean.
fn full_disk_sequence(guard: bool) {
    let disk = Tmpfs::new(64);
    let repo = &disk.repo;
    repo.cairn(&["init"]).expect_ok();
    if !guard {
        set_config(repo, "store", "reserve_mib", toml::Value::Integer(0));
    }
    // The data files live outside the tmpfs (in the test's temp dir).
    let (small, small_data) = add_file(repo, "small.bin", 5 << 20, 1);
    let big = repo.path("big.bin");
    fs::write(&big, pseudo_random(200 << 20, 2)).unwrap();
    let run = repo.cairn(&["add", "-Q", big.to_str().unwrap()]);
    run.expect_err("no space left on device");

    // The disk is (nearly) full now; every command still opens the repo.
    let gc = repo.cairn(&["repo", "gc", "-Q"]);
    assert!(gc.ok(), "gc on a full disk: {}", gc.stderr);
    repo.cairn(&["repo", "stat"]).expect_ok();
    assert_cat(repo, &small, &small_data);
    // A second big add on the still-full disk fails the same clean way.
    repo.cairn(&["add", "-Q", big.to_str().unwrap()])
        .expect_err("no space left on device");

    disk.resize(512);
    repo.cairn(&["repo", "stat"]).expect_ok();
    let verify = repo.cairn(&["repo", "verify"]);
    assert!(
        verify.ok(),
        "verify after freeing space: {}{}",
        verify.text(),
        verify.stderr
    );
    repo.cairn(&["pin", "verify"]).expect_ok();
    assert_cat(repo, &small, &small_data);
    // And the big file fits now.
    let cid = repo
        .cairn(&["add", "-Q", big.to_str().unwrap()])
        .expect_ok();
    let out = repo.cairn(&["cat", &cid]);
    assert!(out.ok() && out.stdout.len() == 200 << 20, "{}", out.stderr);
    repo.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn full_disk_with_the_guard_stops_before_the_disk_is_full() {
    full_disk_sequence(true);
}

#[test]
fn full_disk_without_the_guard_still_reopens_once_space_is_freed() {
    full_disk_sequence(false);
}

#[test]
fn daemon_on_a_full_disk_refuses_writes_and_the_repo_reopens() {
    let disk = Tmpfs::new(48);
    let repo = &disk.repo;
    repo.cairn(&["init"]).expect_ok();
    repo.use_loopback_network();
    let (small, small_data) = add_file(repo, "small.bin", 2 << 20, 3);
    // Fill the disk up to the guard with cairn's own writes, 1 MiB at a time.
    let f = repo.path("more.bin");
    let mut filled = false;
    for seed in 100..200 {
        fs::write(&f, pseudo_random(1 << 20, seed)).unwrap();
        let run = repo.cairn(&["add", "-Q", f.to_str().unwrap()]);
        if !run.ok() {
            run.expect_err("no space left on device");
            filled = true;
            break;
        }
    }
    assert!(filled, "the guard never refused a write on a 48 MiB disk");
    // A daemon starts on that disk (the reserve is there for it), serves reads, refuses writes.
    let mut daemon = repo.daemon();
    repo.cairn(&["add", "-Q", f.to_str().unwrap()])
        .expect_err("no space left on device");
    assert_cat(repo, &small, &small_data);
    repo.cairn(&["repo", "gc", "-Q"]).expect_ok();
    assert_eq!(daemon.stop(), Some(0));

    // Another program fills the disk to the last byte: the daemon cannot start, and says why.
    let filler = repo.repo().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=100"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // sled may or may not need to write to open: either the daemon says the disk is full and
    // exits, or it starts and refuses writes. Never a hang or a broken repo.
    let mut child = repo
        .command(&["daemon", "--gateway", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let socket = repo.repo().join("api/api.sock");
    let exited = cairn_tests::wait_for(60, "the daemon to start or exit", || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Some(status));
        }
        socket.exists().then_some(None)
    });
    match exited {
        Some(status) => {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!status.success(), "daemon exited 0 on a full disk");
            assert!(stderr.contains("no space left on device"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        None => {
            repo.cairn(&["add", "-Q", f.to_str().unwrap()])
                .expect_err("no space left on device");
            cairn_tests::signal(child.id(), libc::SIGTERM);
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(0));
        }
    }
    fs::remove_file(&filler).unwrap();
    // Once space is freed, the repo opens, verifies, and takes writes again.
    repo.cairn(&["repo", "verify"]).expect_ok();
    let mut daemon = repo.daemon();
    // The disk is still full of cairn's own pinned data, up to the guard: small writes fit.
    let (tiny, tiny_data) = add_file(repo, "tiny.bin", 100_000, 6);
    assert_cat(repo, &tiny, &tiny_data);
    assert_cat(repo, &small, &small_data);
    assert_eq!(daemon.stop(), Some(0));
    repo.cairn(&["repo", "verify"]).expect_ok();
}

/// A tree with blocks of every kind: files (large leaves), packs (small leaves, directories).
fn add_tree(repo: &TestRepo) -> (String, Vec<(String, Vec<u8>)>) {
    let dir = repo.path("tree");
    fs::create_dir_all(dir.join("sub")).unwrap();
    let mut files = Vec::new();
    for (i, len) in [0usize, 10, 4000, 300_000, 1 << 20].into_iter().enumerate() {
        let name = format!("sub/f{i}");
        let data = pseudo_random(len, 10 + i as u64);
        fs::write(dir.join(&name), &data).unwrap();
        files.push((name, data));
    }
    let root = repo
        .cairn(&["add", "-r", "-Q", dir.to_str().unwrap()])
        .expect_ok();
    (root, files)
}

fn assert_tree(repo: &TestRepo, root: &str, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        assert_cat(repo, &format!("{root}/{name}"), data);
    }
}

fn block_count(repo: &TestRepo) -> u64 {
    let text = repo.cairn(&["--json", "repo", "stat"]).expect_ok();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["blocks"].as_u64().unwrap()
}

#[test]
fn lost_index_is_refused_then_rebuilt_by_repair() {
    let repo = TestRepo::new();
    let (root, files) = add_tree(&repo);
    // Unpinned content too: repair brings it back unpinned, and GC then removes only it.
    let (loose, _) = add_file(&repo, "loose.bin", 50_000, 20);
    repo.cairn(&["pin", "rm", &loose]).expect_ok();
    let blocks = block_count(&repo);
    fs::remove_dir_all(repo.repo().join("blocks/db")).unwrap();

    for args in [
        &["repo", "stat"][..],
        &["repo", "verify"],
        &["pin", "verify"],
        &["repo", "gc"],
    ] {
        repo.cairn(args).expect_err("run `cairn repo repair`");
    }
    // Nothing was deleted by the refused GC.
    let report = repo.cairn(&["--json", "repo", "repair"]).expect_ok();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    let found = v["pack_blocks"].as_u64().unwrap() + v["file_blocks"].as_u64().unwrap();
    assert_eq!(found, blocks, "{report}");
    assert_eq!(v["pins"].as_u64(), Some(1), "{report}");
    assert_eq!(v["pins_lost"].as_bool(), Some(false), "{report}");
    repo.cairn(&["repo", "verify"]).expect_ok();
    repo.cairn(&["pin", "verify"]).expect_ok();
    assert_tree(&repo, &root, &files);
    let gc = repo.cairn(&["--json", "repo", "gc", "-Q"]).expect_ok();
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    assert!(gc["removed_blocks"].as_u64().unwrap() >= 1, "{gc}");
    assert_tree(&repo, &root, &files);
    repo.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn damaged_index_bytes_are_repaired() {
    let repo = TestRepo::new();
    let (root, files) = add_tree(&repo);
    // Flip one byte in the middle of sled's log, as a bad sector would.
    let db = repo.repo().join("blocks/db/db");
    let mut bytes = fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&db, bytes).unwrap();
    // What a user sees first: either sled did not notice (the index still agrees with the
    // block files, and verify says so), or a one-line error that names the fix. Never a panic.
    for cmd in [&["repo", "stat"][..], &["repo", "verify"], &["ls", &root]] {
        let run = repo.cairn(cmd);
        assert!(
            !run.stderr.contains("panicked") && run.code != Some(101),
            "{cmd:?}: {}",
            run.stderr
        );
        if !run.ok() {
            assert!(
                run.stderr.contains("cairn repo repair"),
                "{cmd:?} on a damaged index: {}",
                run.stderr
            );
            assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
        }
    }
    // Whether or not sled notices, repair rebuilds a correct index from the block files.
    let run = repo.cairn(&["repo", "repair"]);
    assert!(run.ok(), "repair: {}", run.stderr);
    repo.cairn(&["repo", "verify"]).expect_ok();
    repo.cairn(&["pin", "verify"]).expect_ok();
    assert_tree(&repo, &root, &files);
}

#[test]
fn index_that_lost_entries_makes_gc_refuse_and_verify_fail() {
    let repo = TestRepo::new();
    // Many small blocks (a directory of small files), so losing part of the index is visible.
    let dir = repo.path("many");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..1500 {
        fs::write(dir.join(format!("f{i}")), format!("file number {i}")).unwrap();
    }
    let root = repo
        .cairn(&["add", "-r", "-Q", dir.to_str().unwrap()])
        .expect_ok();
    // Replace the index by the index of an empty repo with the same identity: an index that
    // "forgot" every entry but still carries this code's format marker.
    let other = TestRepo::new();
    fs::remove_dir_all(repo.repo().join("blocks/db")).unwrap();
    let copy = Command::new("cp")
        .arg("-a")
        .arg(other.repo().join("blocks/db"))
        .arg(repo.repo().join("blocks/db"))
        .status()
        .unwrap();
    assert!(copy.success());
    repo.cairn(&["repo", "gc"])
        .expect_err("run `cairn repo repair`");
    repo.cairn(&["repo", "verify"])
        .expect_err("run `cairn repo repair`");
    repo.cairn(&["repo", "repair"]).expect_ok();
    repo.cairn(&["repo", "gc", "-Q"]).expect_ok();
    let out = repo.cairn(&["cat", &format!("{root}/f1234")]);
    assert_eq!(out.text(), "file number 1234");
    repo.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn lost_pin_journal_makes_gc_refuse_until_repair_says_so() {
    let repo = TestRepo::new();
    let (root, files) = add_tree(&repo);
    fs::remove_file(repo.repo().join("pins.journal")).unwrap();
    repo.cairn(&["repo", "gc"]).expect_err("pin journal");
    assert_tree(&repo, &root, &files);
    let report = repo.cairn(&["repo", "repair"]).expect_ok();
    assert!(report.contains("earlier pins are unknown"), "{report}");
    repo.cairn(&["pin", "add", &root]).expect_ok();
    repo.cairn(&["repo", "gc", "-Q"]).expect_ok();
    assert_tree(&repo, &root, &files);
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn repo_is_private_whatever_the_umask() {
    let repo = TestRepo::uninitialised();
    // Run init under umask 022 (a shell sets it for the child).
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022 && exec {} --repo {} init",
            cairn_tests::cairn_bin().display(),
            repo.repo().display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    // A file of one large block and a small one (a pack record).
    let f = repo.path("f");
    fs::create_dir_all(&f).unwrap();
    fs::write(f.join("big"), pseudo_random(100_000, 30)).unwrap();
    fs::write(f.join("small"), b"small").unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022 && exec {} --repo {} add -r -Q {}",
            cairn_tests::cairn_bin().display(),
            repo.repo().display(),
            f.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let r = repo.repo();
    assert_eq!(mode(&r), 0o700, "repo dir");
    for file in ["config.toml", "identity.key", "pins.journal"] {
        assert_eq!(mode(&r.join(file)), 0o600, "{file}");
    }
    for dir in ["blocks", "blocks/db", "blocks/files", "blocks/packs"] {
        assert_eq!(mode(&r.join(dir)), 0o700, "{dir}");
    }
    let mut checked = 0;
    for entry in walk(&r.join("blocks")) {
        let m = mode(&entry);
        // sled creates its files with the umask; the 0700 directory around them is what keeps
        // them private (and the store tightens them on the next open).
        if entry.starts_with(r.join("blocks/db")) && !entry.is_dir() {
            assert_eq!(m & 0o700, m & 0o777 & 0o700);
            continue;
        }
        if entry.is_dir() {
            assert_eq!(m, 0o700, "{}", entry.display());
        } else {
            assert_eq!(m, 0o600, "{}", entry.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "block files and packs checked");

    // Later opens tighten sled's own files; what the daemon and shares make (the API
    // directory, share keys and heads) is private too: nothing in the repo is open to the
    // group or others.
    let umask_run = |args: &str| {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 022 && exec {} --repo {} {args}",
                cairn_tests::cairn_bin().display(),
                repo.repo().display(),
            ))
            .status()
            .unwrap();
        assert!(status.success(), "{args}");
    };
    umask_run("repo stat");
    umask_run("share new private-notes");
    let mut d = repo.daemon();
    repo.cairn(&["id"]).expect_ok();
    assert_eq!(d.stop(), Some(0));
    let mut seen = 0;
    for entry in walk(&r) {
        let m = mode(&entry);
        assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.display());
        seen += 1;
    }
    assert!(
        walk(&r)
            .iter()
            .any(|p| p.starts_with(r.join("blocks/db")) && p.is_file()),
        "sled's files checked"
    );
    assert!(
        walk(&r).iter().any(|p| p.starts_with(r.join("shares"))),
        "share files checked"
    );
    assert!(seen > checked);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn pin_add_into_a_full_repo_says_no_space() {
    let a = TestRepo::new();
    a.use_loopback_network();
    let (cid, _) = add_file(&a, "big.bin", 80 << 20, 40);
    let disk = Tmpfs::new(48);
    let b = &disk.repo;
    b.cairn(&["init"]).expect_ok();
    b.use_loopback_network();
    let _da = a.daemon();
    let mut db = b.daemon();
    let da_addr = _da.tcp_addr();
    b.cairn(&["swarm", "connect", &da_addr]).expect_ok();
    b.cairn(&["--timeout", "20", "pin", "add", &cid])
        .expect_err("no space left on device");
    assert_eq!(db.stop(), Some(0));
    b.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn gc_counts_and_reports_the_unindexed_files_it_removes() {
    let repo = TestRepo::new();
    let (cid, data) = add_file(&repo, "kept.bin", 300_000, 50);
    // Block files that no index entry names, as a process killed between writing a file and
    // indexing it leaves them.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for seed in [51, 52] {
        let bytes = pseudo_random(100_000, seed);
        let orphan =
            cairn_store::cid_for(1, cairn_store::RAW, cairn_store::HashAlg::Sha2_256, &bytes);
        let key = orphan.hash().to_bytes();
        let dir = repo
            .repo()
            .join("blocks/files")
            .join(hex(&key[key.len() - 1..]));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(hex(&key)), &bytes).unwrap();
    }
    let text = repo.cairn(&["repo", "gc", "-Q"]).expect_ok();
    assert!(
        text.contains("removed 2 unindexed block files (200000 bytes)"),
        "{text}"
    );
    let json = repo.cairn(&["--json", "repo", "gc", "-Q"]).expect_ok();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["orphan_files"].as_u64(), Some(0), "{json}");
    assert_cat(&repo, &cid, &data);
    repo.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn repair_with_a_daemon_running_is_refused_clearly() {
    let repo = TestRepo::new();
    repo.use_loopback_network();
    let mut daemon = repo.daemon();
    repo.cairn(&["repo", "repair"])
        .expect_err("needs the repo to itself: stop the daemon");
    assert_eq!(daemon.stop(), Some(0));
    repo.cairn(&["repo", "repair"]).expect_ok();
}

#[test]
fn a_damaged_pin_journal_header_is_named() {
    let repo = TestRepo::new();
    let (cid, data) = add_file(&repo, "f.bin", 10_000, 60);
    let journal = repo.repo().join("pins.journal");
    let mut bytes = fs::read(&journal).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&journal, &bytes).unwrap();
    repo.cairn(&["repo", "stat"])
        .expect_err("damaged record in");
    // The rest of the repo is untouched: restoring the header brings everything back.
    bytes[0] ^= 0xff;
    fs::write(&journal, &bytes).unwrap();
    assert_cat(&repo, &cid, &data);
    repo.cairn(&["pin", "verify"]).expect_ok();
}
