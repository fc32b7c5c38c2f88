//! `cairn mount` through the real binary, with and without a daemon: real FUSE mounts (CI runs as
//! root with /dev/fuse), always unmounted, polled with deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cairn_store::{cid_for, HashAlg, RAW};
use cairn_tests::{pseudo_random, signal, wait_for, TestRepo};

fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir.as_str()))
}

/// Unmounts `dir` on drop if a test left it mounted (a failed assertion must not leave a dead mount).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.0)
                .status();
        }
    }
}

/// A foreground `cairn mount` process (no daemon), stopped with SIGINT.
struct Foreground {
    child: Child,
    _guard: Unmount,
}

impl Foreground {
    fn start(r: &TestRepo, args: &[&str], dir: &Path) -> Foreground {
        let mut child = r
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let guard = Unmount(dir.to_path_buf());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(dir) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("cairn mount exited early ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Foreground {
            child,
            _guard: guard,
        }
    }
}

fn diff_trees(a: &Path, b: &Path) {
    let out = std::process::Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn offline_mount_serves_the_tree_and_sigint_unmounts() {
    let r = TestRepo::new();
    let src = r.path("src");
    std::fs::create_dir_all(src.join("nested/deeper")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("empty.txt"), b"").unwrap();
    std::fs::write(src.join("nested/ünïcødé.bin"), pseudo_random(1_000_000, 5)).unwrap();
    std::fs::write(src.join("nested/deeper/x"), b"x").unwrap();
    std::os::unix::fs::symlink("nested/deeper/x", src.join("link")).unwrap();
    let cid = r.cairn(&["add", "-r", "-Q", "src"]).expect_ok();

    let mnt = r.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut fg = Foreground::start(&r, &["mount", &cid, "mnt"], &mnt);
    diff_trees(&src, &mnt);
    // Content cannot bring privileges: the mount is nosuid and nodev.
    let mnt_text = mnt.to_string_lossy().into_owned();
    let line = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt_text.as_str()))
        .map(str::to_string)
        .unwrap();
    let opts = line
        .split(' ')
        .nth(3)
        .unwrap()
        .split(',')
        .collect::<Vec<_>>();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev") && opts.contains(&"ro"),
        "{line}"
    );
    // Writes are refused: the mount is read-only.
    let err = std::fs::write(mnt.join("new"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // The mount's process serves the repo's other commands meanwhile.
    assert!(r.cairn(&["repo", "stat"]).expect_ok().contains("blocks:"));

    signal(fg.child.id(), libc::SIGINT);
    let status = fg.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&mnt), "SIGINT left a mount behind");
    r.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn offline_unmount_with_a_file_open_detaches_and_the_mount_process_exits_0() {
    let r = TestRepo::new();
    let data = pseudo_random(4_000_000, 11);
    std::fs::write(r.path("f"), &data).unwrap();
    let cid = r.cairn(&["add", "-Q", "f"]).expect_ok();
    let mnt = r.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut fg = Foreground::start(&r, &["mount", &cid, "mnt"], &mnt);
    let mut file = std::fs::File::open(mnt.join(&cid)).unwrap();
    let mut got = vec![0u8; 4096];
    file.read_exact(&mut got).unwrap();

    // No daemon: `cairn unmount` of a busy mount detaches it lazily, as the daemon does.
    r.cairn(&["unmount", "mnt"]).expect_ok();
    assert!(
        !is_mounted(&mnt),
        "still in /proc/mounts after cairn unmount"
    );
    // The mount process keeps serving the open file until it is closed.
    file.read_to_end(&mut got).unwrap();
    assert!(
        got == data,
        "the open file read differently after the unmount"
    );
    assert!(
        fg.child.try_wait().unwrap().is_none(),
        "the mount process exited while a file was open"
    );
    drop(file);
    let status = wait_for(30, "the mount process to exit", || {
        fg.child.try_wait().unwrap()
    });
    let mut err = String::new();
    fg.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("Error"), "{err}");
    assert!(!is_mounted(&mnt));

    // Nothing open: the mount process also ends with 0 after an unmount from outside.
    let mut fg = Foreground::start(&r, &["mount", &cid, "mnt"], &mnt);
    r.cairn(&["unmount", "mnt"]).expect_ok();
    let status = wait_for(30, "the mount process to exit", || {
        fg.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&mnt));
    // Only FUSE mounts are cairn's to unmount.
    r.cairn(&["unmount", "/proc"])
        .expect_err("not a FUSE mount");
    r.cairn(&["repo", "verify"]).expect_ok();
}

/// The daemon's side of the same: `cairn unmount` of a daemon-served mount with a file open
/// detaches it lazily too (the same outcome as without a daemon), the open file reads to its
/// end, and the daemon stops cleanly afterwards.
#[test]
fn daemon_unmount_with_a_file_open_detaches_as_without_a_daemon() {
    let r = TestRepo::new();
    let data = pseudo_random(4_000_000, 12);
    std::fs::write(r.path("f"), &data).unwrap();
    let cid = r.cairn(&["add", "-Q", "f"]).expect_ok();
    let mut daemon = r.daemon();
    let mnt = r.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _cleanup = Unmount(mnt.clone());
    r.cairn(&["mount", &cid, mnt.to_str().unwrap()]).expect_ok();
    wait_for(30, "the daemon's mount", || is_mounted(&mnt).then_some(()));
    let mut file = std::fs::File::open(mnt.join(&cid)).unwrap();
    let mut got = vec![0u8; 4096];
    file.read_exact(&mut got).unwrap();

    r.cairn(&["unmount", mnt.to_str().unwrap()]).expect_ok();
    assert!(
        !is_mounted(&mnt),
        "still in /proc/mounts after cairn unmount"
    );
    file.read_to_end(&mut got).unwrap();
    assert!(
        got == data,
        "the open file read differently after the unmount"
    );
    drop(file);
    // Unmounted once: a second unmount says it is not mounted, and a new mount works.
    r.cairn(&["unmount", mnt.to_str().unwrap()])
        .expect_err("not");
    r.cairn(&["mount", &cid, mnt.to_str().unwrap()]).expect_ok();
    wait_for(30, "the second mount", || is_mounted(&mnt).then_some(()));
    assert_eq!(std::fs::read(mnt.join(&cid)).unwrap(), data);
    r.cairn(&["unmount", mnt.to_str().unwrap()]).expect_ok();
    assert_eq!(daemon.stop(), Some(0));
    assert!(!is_mounted(&mnt));
    r.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn mount_bad_input_is_refused() {
    let r = TestRepo::new();
    std::fs::write(r.path("f"), b"hello\n").unwrap();
    let cid = r.cairn(&["add", "-Q", "f"]).expect_ok();
    r.cairn(&["mount", &cid, "missing-dir"])
        .expect_err("does not exist");
    std::fs::create_dir(r.path("full")).unwrap();
    std::fs::write(r.path("full/x"), b"x").unwrap();
    r.cairn(&["mount", &cid, "full"]).expect_err("not empty");
    std::fs::create_dir(r.path("mnt")).unwrap();
    r.cairn(&["mount", "not-a-cid", "mnt"])
        .expect_err("invalid CID");
    let absent = cid_for(1, RAW, HashAlg::Sha2_256, b"absent").to_string();
    r.cairn(&["--timeout", "2", "mount", &absent, "mnt"])
        .expect_err(&absent);
    assert!(!is_mounted(&r.path("mnt")));
    r.cairn(&["unmount", "mnt"]).expect_err("not a mount point");
}

#[test]
fn daemon_mount_fetches_only_what_is_read_and_never_hangs() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.use_loopback_network();
    b.use_loopback_network();
    let da = a.daemon();
    let mut db = b.daemon();
    // 40 leaves of 256 KiB under one root.
    let data = pseudo_random(10 << 20, 77);
    std::fs::write(a.path("big.bin"), &data).unwrap();
    let cid = a.cairn(&["add", "-Q", "big.bin"]).expect_ok();
    b.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();

    // B mounts a CID only A has, and a namespace; the daemon serves both.
    let mnt = b.path("mnt");
    let ns = b.path("ipfs");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&ns).unwrap();
    let _g1 = Unmount(mnt.clone());
    let _g2 = Unmount(ns.clone());
    b.cairn(&["--timeout", "3", "mount", &cid, "mnt"])
        .expect_ok();
    b.cairn(&["--timeout", "3", "mount", "--namespace", "ipfs"])
        .expect_ok();
    assert!(is_mounted(&mnt) && is_mounted(&ns));
    b.cairn(&["mount", &cid, "mnt"])
        .expect_err("already a mount point");

    // A small read in the middle moves the root, the leaf, and a bounded readahead: not the file.
    let before = b.bitswap_stats()["blocks_received"].as_u64().unwrap();
    let mut f = std::fs::File::open(mnt.join(&cid)).unwrap();
    f.seek(SeekFrom::Start(5 << 20)).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data[5 << 20..(5 << 20) + 4096]);
    let after = b.bitswap_stats()["blocks_received"].as_u64().unwrap();
    let moved = after - before;
    assert!(
        (1..=6).contains(&moved),
        "a 4 KiB read fetched {moved} blocks"
    );

    // The whole file, through the namespace mount, is right.
    let whole = std::fs::read(ns.join(&cid)).unwrap();
    assert!(whole == data, "namespace read differs");

    // Content nobody has: EIO within the timeout, while local content still reads.
    let absent = cid_for(1, RAW, HashAlg::Sha2_256, b"nobody").to_string();
    let started = Instant::now();
    let slow_path = ns.join(&absent);
    let slow = std::thread::spawn(move || std::fs::read(slow_path));
    let local = std::fs::read(ns.join(&cid)).unwrap();
    assert!(local == data);
    let err = slow.join().unwrap().unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "unavailable content: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    b.cairn(&["unmount", "mnt"]).expect_ok();
    wait_for(10, "unmount", || (!is_mounted(&mnt)).then_some(()));
    // The daemon takes its remaining mounts down with it on SIGTERM.
    assert!(is_mounted(&ns));
    assert_eq!(db.stop(), Some(0));
    assert!(!is_mounted(&ns), "SIGTERM left the namespace mount behind");
}
