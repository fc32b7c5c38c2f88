//! Times in a real FUSE mount (`cairn mount`, foreground): content without a UnixFS mtime shows
//! the time the mount started, never 1970-01-01; a recorded mtime is shown as recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_tests::TestRepo;

/// Whole seconds since the epoch.
fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn nodes_without_mtime_show_the_mount_start_and_recorded_mtimes_stay() {
    let r = TestRepo::new();
    std::fs::create_dir_all(r.path("tree/sub")).unwrap();
    std::fs::write(r.path("tree/plain.txt"), b"no mtime recorded\n").unwrap();
    std::fs::write(r.path("tree/sub/deep.txt"), b"nor here\n").unwrap();
    let tree = r.cairn(&["add", "-r", "-Q", "tree"]).expect_ok();

    // A file whose UnixFS node records its mtime: 2001-09-09T01:46:40Z.
    let recorded = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::write(r.path("old.txt"), b"dated\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(r.path("old.txt"))
        .unwrap()
        .set_modified(recorded)
        .unwrap();
    let old = r
        .cairn(&["add", "-Q", "--preserve-mtime", "old.txt"])
        .expect_ok();

    let before = secs(SystemTime::now());
    let m = r.mount(&tree, &r.path("mnt"));
    let after = secs(SystemTime::now());
    for p in ["", "plain.txt", "sub", "sub/deep.txt"] {
        let meta = std::fs::metadata(m.dir.join(p)).unwrap();
        for (what, t) in [
            ("mtime", meta.mtime()),
            ("atime", meta.atime()),
            ("ctime", meta.ctime()),
        ] {
            assert!(
                (before..=after).contains(&t),
                "{p:?} {what} {t}: not the mount's start ({before}..={after})"
            );
        }
    }
    // The same for the whole life of the mount (`make` and backup tools compare times).
    let first = std::fs::metadata(m.dir.join("plain.txt")).unwrap().mtime();
    let again = std::fs::metadata(m.dir.join("sub/deep.txt"))
        .unwrap()
        .mtime();
    assert_eq!(first, again);
    m.stop();

    let m = r.mount(&old, &r.path("mnt2"));
    let meta = std::fs::metadata(m.dir.join(&old)).unwrap();
    assert_eq!(meta.mtime(), 1_000_000_000, "the recorded mtime");
    // The synthetic directory holding a single-file mount has no node: the mount's start.
    let root = std::fs::metadata(&m.dir).unwrap().mtime();
    assert!(root > 1_000_000_000, "{root}");
    m.stop();
}
