//! `kill -9` at exact points of the store's write order, through the real binary: the store
//! kills itself (SIGKILL) at a named crash point (`CAIRN_FAULT_KILL_AT`, see
//! `store/src/fault.rs`) during an `add` or a `repo gc`, and every time the repo must open,
//! `repo verify` and `pin verify` must be clean, and every pin made before must read back.
//! At the end the index is deleted and `repo repair` must bring everything back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use cairn_store::FAULT_ENV;
use cairn_tests::{pseudo_random, TestRepo};

/// A tree of `n` small files (pack records) and one 600 KB file (block files), seeded.
fn make_tree(dir: &Path, n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for i in 0..n {
        let data = pseudo_random(200 + i % 3000, seed * 10_000 + i as u64);
        let name = format!("s{i}");
        fs::write(dir.join(&name), &data).unwrap();
        files.push((name, data));
    }
    let big = pseudo_random(600_000, seed);
    fs::write(dir.join("big"), &big).unwrap();
    files.push(("big".into(), big));
    files
}

struct Pinned {
    root: String,
    files: Vec<(String, Vec<u8>)>,
}

fn check(repo: &TestRepo, pinned: &[Pinned], what: &str) {
    let v = repo.cairn(&["repo", "verify"]);
    assert!(v.ok(), "{what}: repo verify: {}{}", v.text(), v.stderr);
    let p = repo.cairn(&["pin", "verify"]);
    assert!(p.ok(), "{what}: pin verify: {}{}", p.text(), p.stderr);
    for t in pinned {
        // Spot-check a few files of each pinned tree, and the big one.
        for (name, data) in t.files.iter().step_by(37).chain(t.files.last()) {
            let out = repo.cairn(&["cat", &format!("{}/{name}", t.root)]);
            assert!(out.ok(), "{what}: cat {}/{name}: {}", t.root, out.stderr);
            assert!(out.stdout == *data, "{what}: {}/{name} differs", t.root);
        }
    }
}

/// Runs `cairn args` with the crash point armed; returns whether it finished (else it must
/// have died by SIGKILL at the point).
fn run_armed(repo: &TestRepo, args: &[&str], point: &str) -> bool {
    let out = repo.command(args).env(FAULT_ENV, point).output().unwrap();
    match out.status.signal() {
        Some(9) => false,
        Some(s) => panic!("cairn {args:?} died by signal {s}"),
        None => {
            assert!(
                out.status.success(),
                "cairn {args:?} at {point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
    }
}

#[test]
fn sigkill_at_every_crash_point_loses_nothing_committed() {
    let repo = TestRepo::new();
    // Small packs, so that GC has whole packs to compact.
    let cfg = repo.repo().join("config.toml");
    let text = fs::read_to_string(&cfg).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    t.entry("store")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap()
        .insert("pack_max_mib".into(), toml::Value::Integer(1));
    fs::write(&cfg, toml::to_string(&t).unwrap()).unwrap();

    let mut pinned = Vec::new();
    let first = repo.path("t0");
    let files = make_tree(&first, 400, 1);
    let root = repo
        .cairn(&["add", "-r", "-Q", first.to_str().unwrap()])
        .expect_ok();
    pinned.push(Pinned { root, files });
    check(&repo, &pinned, "first add");

    let mut killed = 0;
    let mut killed_in_gc = Vec::new();
    let mut seed = 2;
    // Crash points on the way in (add).
    for point in [
        "file-written",
        "file-written:3",
        "pack-appended",
        "pack-appended:4",
        "indexed",
        "indexed:5",
        "journaled",
    ] {
        seed += 1;
        let dir = repo.path(&format!("t{seed}"));
        let files = make_tree(&dir, 600, seed);
        let args = ["add", "-r", "-Q", dir.to_str().unwrap()];
        if run_armed(&repo, &args, point) {
            let root = repo
                .cairn(&["add", "-r", "-Q", "--only-hash", dir.to_str().unwrap()])
                .expect_ok();
            pinned.push(Pinned { root, files });
        } else {
            killed += 1;
        }
        check(&repo, &pinned, &format!("add killed at {point}"));
    }
    // Crash points on the way out (GC): unpinned garbage first, spread over several packs.
    for point in [
        "tombstoned",
        "tombstoned:3",
        "unindexed",
        "compact-copied",
        "compact-indexed",
        "compact-indexed:2",
    ] {
        seed += 1;
        let dir = repo.path(&format!("g{seed}"));
        make_tree(&dir, 3000, seed);
        repo.cairn(&["add", "-r", "-Q", "--pin=false", dir.to_str().unwrap()])
            .expect_ok();
        if !run_armed(&repo, &["repo", "gc", "-Q"], point) {
            killed += 1;
            killed_in_gc.push(point);
        }
        check(&repo, &pinned, &format!("gc killed at {point}"));
    }
    assert!(killed >= 10, "only {killed} runs reached their crash point");
    for point in [
        "tombstoned",
        "unindexed",
        "compact-copied",
        "compact-indexed",
    ] {
        assert!(
            killed_in_gc.contains(&point),
            "gc never reached {point}: {killed_in_gc:?}"
        );
    }

    // The block files alone are enough: no index, then repair.
    fs::remove_dir_all(repo.repo().join("blocks/db")).unwrap();
    repo.cairn(&["repo", "repair"]).expect_ok();
    check(&repo, &pinned, "after repair");
    repo.cairn(&["repo", "gc", "-Q"]).expect_ok();
    check(&repo, &pinned, "gc after repair");
}
