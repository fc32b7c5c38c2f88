//! Hostile DAG shapes through the real binary: `ls`, `get`, `pin add`, `dag export`, `repo gc`
//! and a real FUSE mount's `ls`/`find` each finish with a correct, bounded result or a clear
//! one-line error and a non-zero exit, never an abort, and their peak memory stays modest
//! (the DAG of issue 7 made `ls` allocate gigabytes). Memory is asserted, never time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use cairn_store::Cid;
use cairn_tests::{link, run_measured, vm_kib, Blocks, Run, TestRepo};

/// A generous bound on any one command's peak RSS (a debug build idles at a few tens of MiB).
const PEAK_KIB: u64 = 256 << 10;

/// A 256-slot bitfield with every slot set.
const ALL_SLOTS: [u8; 32] = [0xff; 32];

fn assert_modest(what: &str, kib: u64) {
    println!("{what}: peak RSS {} MiB", kib / 1024);
    assert!(
        kib < PEAK_KIB,
        "{what}: peak RSS {kib} KiB over {PEAK_KIB} KiB"
    );
}

/// Nothing but `keep` in `dir`: no output and no `.cairn-partial` left behind.
fn assert_nothing_left(dir: &Path, keep: &[&str]) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

/// `pin add`, `dag export`, `repo gc` (with the pin keeping every block) on `root`: all bounded
/// and successful, since each walks distinct blocks once.
fn pin_export_gc(r: &TestRepo, root: &str, blocks: usize) {
    let (run, kib) = r.cairn_measured(&["pin", "add", root]);
    run.expect_ok();
    assert_modest("pin add", kib);
    let (run, kib) = r.cairn_measured(&["dag", "export", root]);
    assert!(run.ok(), "dag export: {}", run.stderr);
    assert_modest("dag export", kib);
    // The CAR holds each distinct block once: the header plus one section per block.
    let sections = car_sections(&run.stdout);
    assert_eq!(sections, blocks, "blocks in the exported CAR");
    let (run, kib) = r.cairn_measured(&["repo", "gc"]);
    run.expect_ok();
    assert_modest("repo gc", kib);
    r.cairn(&["pin", "verify"]).expect_ok();
}

/// Number of sections after the header of a CAR v1.
fn car_sections(mut car: &[u8]) -> usize {
    fn varint(b: &mut &[u8]) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let header = varint(&mut car);
    car = &car[header..];
    let mut n = 0;
    while !car.is_empty() {
        let len = varint(&mut car);
        car = &car[len..];
        n += 1;
    }
    n
}

/// `get` of `root` fails cleanly naming `needle`, with nothing left behind.
fn get_refused(r: &TestRepo, root: &str, needle: &str) {
    let (run, kib) = r.cairn_measured(&["get", root, "-o", "out"]);
    run.expect_err(needle);
    assert_modest("get", kib);
    assert_nothing_left(r.dir.path(), &["repo", "mnt"]);
}

/// Runs `program args... <mount point>` and returns its outcome.
fn on_mount(m: &cairn_tests::Mount, program: &str, args: &[&str]) -> Run {
    let mut c = Command::new(program);
    c.args(args).arg(&m.dir);
    c.output().unwrap().into()
}

fn mount_peak(m: &cairn_tests::Mount, what: &str) {
    let kib = vm_kib(m.pid(), "VmHWM:").expect("mount process status");
    assert_modest(what, kib);
}

/// The DAG of issue 7: 256 links at each level all to the same child shard, 256 entries at the
/// bottom, 5 blocks claiming 256^4 entries.
fn repeated_shards(b: &mut Blocks) -> Cid {
    let f = b.raw(b"x");
    let bottom = (0..256)
        .map(|i| link(f, &format!("{i:02X}file-{i}")))
        .collect();
    let mut cur = b.shard(256, &ALL_SLOTS, bottom);
    for _ in 0..3 {
        let links = (0..256).map(|i| link(cur, &format!("{i:02X}"))).collect();
        cur = b.shard(256, &ALL_SLOTS, links);
    }
    cur
}

#[test]
fn hamts_that_repeat_shards_are_refused_everywhere() {
    let r = TestRepo::new();
    let mut b = Blocks::default();
    let issue = repeated_shards(&mut b);
    // The same trick without entries to give it away: every slot links one empty shard.
    let empty = b.shard(256, &[], vec![]);
    let links = (0..256).map(|i| link(empty, &format!("{i:02X}"))).collect();
    let empties = b.shard(256, &ALL_SLOTS, links);
    b.import(&r, issue);
    b.import(&r, empties);

    for (root, needle, blocks) in [(issue, "HAMT", 5), (empties, "reaches its shard", 2)] {
        let root = root.to_string();
        let (run, kib) = r.cairn_measured(&["ls", &root]);
        run.expect_err(needle);
        assert_modest("ls of a HAMT that repeats shards", kib);
        get_refused(&r, &root, needle);
        pin_export_gc(&r, &root, blocks);

        let m = r.mount(&root, &r.path("mnt"));
        let ls = on_mount(&m, "ls", &[]);
        assert!(!ls.ok(), "ls over the mount: {}", ls.text());
        assert!(ls.stderr.contains("Input/output error"), "{}", ls.stderr);
        let find = on_mount(&m, "find", &[]);
        assert!(!find.ok(), "find over the mount succeeded");
        assert!(find.text().lines().count() <= 1, "{}", find.text());
        mount_peak(&m, "mount listing a HAMT that repeats shards");
        let log = m.stop();
        assert!(log.contains(&root) || log.contains("HAMT"), "{log}");
    }
}

#[test]
fn a_diamond_of_depth_40_is_bounded() {
    // Every level links its child twice ("a" and "b"): 41 directories, 2^40 paths.
    let r = TestRepo::new();
    let mut b = Blocks::default();
    let f = b.raw(b"bottom\n");
    let mut cur = b.dir(&[("f", f)]);
    for _ in 0..40 {
        cur = b.dir(&[("a", cur), ("b", cur)]);
    }
    b.import(&r, cur);
    let root = cur.to_string();

    let (run, kib) = r.cairn_measured(&["ls", &root]);
    let listing = run.expect_ok();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert_modest("ls of a diamond", kib);
    get_refused(&r, &root, "entries counted per path");
    pin_export_gc(&r, &root, 42);

    let m = r.mount(&root, &r.path("mnt"));
    let find = on_mount(&m, "find", &[]);
    // find walks as far as the mount lets a directory be reached through distinct paths,
    // then reports "Too many links" for the rest and exits non-zero.
    assert!(!find.ok(), "find over a diamond of depth 40 succeeded");
    assert!(
        find.stderr.contains("Too many links"),
        "{}",
        &find.stderr[..find.stderr.len().min(2000)]
    );
    let paths = find.text().lines().count();
    assert!(paths < 200_000, "{paths} paths");
    mount_peak(&m, "mount under find over a diamond");
    m.stop();
}

#[test]
fn deep_chains_are_bounded() {
    let r = TestRepo::new();
    let mut b = Blocks::default();
    // 100 000 nested directories.
    let mut dir = b.dir(&[]);
    for _ in 0..100_000 {
        dir = b.dir(&[("d", dir)]);
    }
    b.import(&r, dir);
    // A file whose tree is a chain of 100 000 nodes.
    let mut file = b.raw(b"end");
    for _ in 0..100_000 {
        let mut fs = cairn_store::UnixFsData::new(cairn_store::DataType::File);
        fs.blocksizes = vec![3];
        fs.filesize = Some(3);
        file = b.pb(fs, vec![link(file, "")]);
    }
    b.import(&r, file);

    let root = dir.to_string();
    let (run, kib) = r.cairn_measured(&["ls", &root]);
    assert_eq!(run.expect_ok().lines().count(), 1);
    assert_modest("ls of a deep chain", kib);
    get_refused(&r, &root, "nest more than 256 levels");
    pin_export_gc(&r, &root, 100_001);

    let m = r.mount(&root, &r.path("mnt"));
    let find = on_mount(&m, "find", &[]);
    assert!(!find.ok(), "find over 100 000 nested directories succeeded");
    assert_eq!(find.text().lines().count(), 257, "the root and 256 levels");
    assert!(
        find.stderr.contains("Too many levels"),
        "{}",
        &find.stderr[..find.stderr.len().min(2000)]
    );
    mount_peak(&m, "mount under find over a deep chain");
    m.stop();

    let file = file.to_string();
    let (run, kib) = r.cairn_measured(&["cat", &file]);
    run.expect_err("nested more than 64 levels");
    assert_modest("cat of a deep file chain", kib);
    get_refused(&r, &file, "nested more than 64 levels");
}

#[test]
fn a_million_entry_hamt_lists_in_bounded_memory() {
    let r = TestRepo::new();
    let mut b = Blocks::default();
    let f = b.raw(b"same content\n");
    let entries = (0..1_000_000)
        .map(|i| (format!("entry-{i:07}"), f, 13))
        .collect();
    let dir = b.sharded_dir(entries);
    let blocks = b.blocks.len();
    b.import(&r, dir);
    let root = dir.to_string();

    let (run, kib) = r.cairn_measured(&["ls", &root]);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.text().lines().count(), 1_000_000);
    assert_modest("ls of a 1e6-entry HAMT", kib);
    // Every shard plus the one file they all name.
    pin_export_gc(&r, &root, blocks);

    let m = r.mount(&root, &r.path("mnt"));
    let ls = on_mount(&m, "ls", &["-f"]);
    assert!(ls.ok(), "{}", ls.stderr);
    // `ls -f` shows . and .. too.
    assert_eq!(ls.text().lines().count(), 1_000_002);
    mount_peak(&m, "mount listing a 1e6-entry HAMT");
    m.stop();
}

#[test]
fn huge_names_are_refused() {
    let r = TestRepo::new();
    let mut b = Blocks::default();
    let f = b.raw(b"x");
    let long = "n".repeat(2000);
    let dir = b.dir(&[("ok", f), (long.as_str(), f)]);
    b.import(&r, dir);
    let root = dir.to_string();

    let (run, kib) = r.cairn_measured(&["ls", &root]);
    run.expect_err("entry name of 2000 bytes");
    assert_modest("ls of a huge name", kib);
    get_refused(&r, &root, "entry name of 2000 bytes");
    pin_export_gc(&r, &root, 2);

    let m = r.mount(&root, &r.path("mnt"));
    let ls = on_mount(&m, "ls", &[]);
    assert!(!ls.ok(), "{}", ls.text());
    m.stop();
}

/// `/usr/bin/time` and the fallback agree that a plain command's peak is small (the helper the
/// other tests rely on measures something).
#[test]
fn peak_rss_is_measured() {
    let r = TestRepo::new();
    let (run, kib) = run_measured(r.command(&["repo", "stat"]));
    run.expect_ok();
    assert!(
        kib > 1024,
        "a cairn process uses more than 1 MiB: {kib} KiB"
    );
}

/// The same shapes served by a peer: a daemon that fetches them over Bitswap for `ls`, `get`,
/// `status` and `pin add` stays bounded (issue 7's DAG also killed a daemon that fetched it
/// from a peer), answers every command with a result or a clear error, and keeps running.
#[test]
fn hostile_dags_from_a_peer_are_bounded_in_the_daemon_that_fetches_them() {
    let (a, b) = (TestRepo::new(), TestRepo::new());
    a.use_loopback_network();
    b.use_loopback_network();
    let mut blocks = Blocks::default();
    let issue = repeated_shards(&mut blocks);
    let f = blocks.raw(b"bottom\n");
    let mut diamond = blocks.dir(&[("f", f)]);
    for _ in 0..40 {
        diamond = blocks.dir(&[("a", diamond), ("b", diamond)]);
    }
    blocks.import(&a, issue);
    blocks.import(&a, diamond);
    let da = a.daemon();
    let mut db = b.daemon();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();

    let issue = issue.to_string();
    b.cairn(&["--timeout", "20", "ls", &issue])
        .expect_err("HAMT");
    get_refused(&b, &issue, "HAMT");
    let status = b.cairn(&["--timeout", "20", "status", &issue]);
    assert!(
        status.ok() || status.stderr.lines().count() == 1,
        "status of a HAMT that repeats shards: {}",
        status.text()
    );
    // Pinning fetches each distinct block once: 5 blocks, not 256^4 entries.
    b.cairn(&["--timeout", "20", "pin", "add", &issue])
        .expect_ok();
    b.cairn(&["pin", "verify"]).expect_ok();

    let diamond = diamond.to_string();
    let listing = b.cairn(&["--timeout", "20", "ls", &diamond]).expect_ok();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    get_refused(&b, &diamond, "entries counted per path");
    b.cairn(&["--timeout", "20", "status", &diamond])
        .expect_ok();
    b.cairn(&["--timeout", "20", "pin", "add", &diamond])
        .expect_ok();

    // The daemon that fetched them is alive, and its peak memory modest.
    b.cairn(&["id"]).expect_ok();
    let kib = vm_kib(db.pid(), "VmHWM:").expect("daemon status");
    assert_modest("daemon that fetched hostile DAGs from a peer", kib);
    assert_eq!(db.stop(), Some(0));
    b.cairn(&["repo", "verify"]).expect_ok();
}
