//! Real FUSE mounts of imported trees (needs /dev/fuse and fusermount3; CI runs as root).
//!
//! Every mount lives in a [`Mounted`] whose drop unmounts, so a failing assertion never leaves a
//! mount behind; waits poll with a deadline.
#![allow(clippy::unwrap_used)]

use cairn_tests::pseudo_random;
use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cairn_fs::{mount, MountError, MountHandle, MountOptions, MountRoot};
use cairn_store::{
    import_path, BlockSource, Bytes, Cid, DagReader, GetError, ImportOptions, LocalSource,
    SledStore, StoreSink,
};
use tempfile::TempDir;

const BIG: usize = 46 << 20;

/// A mount and the directory it sits in; dropping it unmounts before the directory goes away.
struct Mounted {
    handle: Option<MountHandle>,
    _dir: TempDir,
    path: PathBuf,
}

impl Mounted {
    fn unmount(mut self) {
        if let Some(h) = self.handle.take() {
            h.unmount().unwrap();
        }
        assert!(
            !is_mounted(&self.path),
            "{} still mounted",
            self.path.display()
        );
    }
}

fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(target))
}

fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn mount_at<S: BlockSource + Clone>(
    source: S,
    root: MountRoot,
    options: MountOptions,
    rt: &tokio::runtime::Runtime,
) -> Mounted {
    let dir = tempfile::tempdir().unwrap();
    let path = fs::canonicalize(dir.path()).unwrap().join("mnt");
    fs::create_dir(&path).unwrap();
    let handle = mount(source, root, &path, options, rt.handle().clone()).unwrap();
    let m = Mounted {
        handle: Some(handle),
        _dir: dir,
        path,
    };
    wait_for("the mount", Duration::from_secs(10), || is_mounted(&m.path));
    m
}

struct Store {
    _dir: TempDir,
    source: LocalSource<SledStore>,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), Default::default()).unwrap());
    Store {
        source: LocalSource::new(store),
        _dir: dir,
    }
}

fn import(store: &Store, path: &Path, opts: &ImportOptions) -> Cid {
    let sink = StoreSink(store.source.store().clone());
    import_path(path, opts, &sink, &mut |_| {}).unwrap().cid
}

fn block_on<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

/// The source tree: empty file and dir, unicode name, symlink, nested dirs, a 2-level file,
/// and a HAMT-sharded directory.
fn source_tree() -> TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("empty"), b"").unwrap();
    fs::create_dir(p.join("emptydir")).unwrap();
    fs::write(p.join("ünïcødé ✓ name.txt"), "grüße\n".repeat(100)).unwrap();
    std::os::unix::fs::symlink("ünïcødé ✓ name.txt", p.join("link")).unwrap();
    fs::create_dir_all(p.join("sub/deeper")).unwrap();
    fs::write(p.join("sub/deeper/file.txt"), b"deep\n").unwrap();
    fs::write(p.join("sub/mode640"), b"mode").unwrap();
    fs::set_permissions(p.join("sub/mode640"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(p.join("big.bin"), pseudo_random(BIG, 7)).unwrap();
    fs::create_dir(p.join("sharded")).unwrap();
    for i in 0..4000 {
        let name = format!("entry number {i:05} with a name long enough to shard the directory");
        fs::write(p.join("sharded").join(name), i.to_string()).unwrap();
    }
    t
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(u64, [u8; 32]),
    Dir,
    Link(PathBuf),
}

/// Every entry under `root` with its kind and content digest.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let ft = e.file_type().unwrap();
            let full = root.join(&rel);
            let entry = if ft.is_symlink() {
                Entry::Link(fs::read_link(&full).unwrap())
            } else if ft.is_dir() {
                todo.push(rel.clone());
                Entry::Dir
            } else {
                let data = fs::read(&full).unwrap();
                Entry::File(data.len() as u64, blake3_like(&data))
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// A cheap 256-bit digest for comparisons (not cryptographic; both sides use it).
fn blake3_like(data: &[u8]) -> [u8; 32] {
    let cid = cairn_store::cid_for(1, cairn_store::RAW, cairn_store::HashAlg::Blake3, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&cid.hash().digest()[..32]);
    out
}

fn xattr(path: &Path, name: &str) -> std::io::Result<String> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::getxattr(path, name, &mut buf[..])?;
    Ok(String::from_utf8(buf[..n].to_vec()).unwrap())
}

fn errno(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

const EROFS: i32 = 30;
const EIO: i32 = 5;
const ENOENT: i32 = 2;

#[test]
fn mounted_tree_matches_source() {
    let rt = runtime();
    let src = source_tree();
    let store = store();
    let opts = ImportOptions {
        preserve_mode: true,
        preserve_mtime: true,
        ..Default::default()
    };
    let root = import(&store, src.path(), &opts);
    let reader = DagReader::new(store.source.clone());
    let big_cid = block_on(&rt, reader.resolve(&root, &["big.bin"])).unwrap();
    let sharded = block_on(&rt, reader.resolve(&root, &["sharded"])).unwrap();
    assert!(
        block_on(&rt, reader.stat(&sharded)).unwrap().is_sharded,
        "fixture must be sharded"
    );
    assert!(
        block_on(&rt, reader.leaves(&big_cid, 0, BIG as u64))
            .unwrap()
            .len()
            > 174,
        "fixture must have 2 levels"
    );

    let m = mount_at(
        store.source.clone(),
        MountRoot::Cid(root),
        MountOptions::default(),
        &rt,
    );
    let mnt = m.path.clone();

    // Byte-for-byte, entry for entry.
    assert_eq!(snapshot(&mnt), snapshot(src.path()));
    assert_eq!(
        fs::read_link(mnt.join("link")).unwrap(),
        PathBuf::from("ünïcødé ✓ name.txt")
    );
    assert_eq!(
        fs::read(mnt.join("link")).unwrap(),
        fs::read(src.path().join("link")).unwrap()
    );
    assert_eq!(fs::read_dir(mnt.join("emptydir")).unwrap().count(), 0);

    // Attributes.
    let meta = fs::metadata(mnt.join("sub/mode640")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    let src_meta = fs::metadata(src.path().join("big.bin")).unwrap();
    let big_meta = fs::metadata(mnt.join("big.bin")).unwrap();
    assert_eq!(big_meta.len(), BIG as u64);
    assert_eq!(big_meta.mtime(), src_meta.mtime());
    assert!(fs::symlink_metadata(mnt.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::metadata(mnt.join("sub")).unwrap().nlink(), 2);
    let ino1 = fs::metadata(mnt.join("sub/deeper/file.txt")).unwrap().ino();
    assert_eq!(
        fs::metadata(mnt.join("sub/deeper/file.txt")).unwrap().ino(),
        ino1,
        "inodes are stable"
    );

    // Random-offset reads.
    let expect = fs::read(src.path().join("big.bin")).unwrap();
    let f = fs::File::open(mnt.join("big.bin")).unwrap();
    let mut x = 12345u64;
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (x >> 20) as usize % (BIG + 1000);
        let len = (x >> 8) as usize % 700_000;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = f.read_at(&mut buf[got..], (off + got) as u64).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let from = off.min(BIG);
        let to = (off + len).min(BIG);
        assert_eq!(&buf[..got], &expect[from..to], "read_at({off}, {len})");
    }
    drop(f);

    // Many parallel readers.
    let digest = blake3_like(&expect);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let path = if i % 2 == 0 {
                mnt.join("big.bin")
            } else {
                mnt.join("sharded")
            };
            std::thread::spawn(move || {
                if path.is_dir() {
                    fs::read_dir(&path).unwrap().count() as u64
                } else {
                    assert_eq!(blake3_like(&fs::read(&path).unwrap()), digest);
                    0
                }
            })
        })
        .collect();
    for r in readers {
        let n = r.join().unwrap();
        assert!(n == 0 || n == 4000);
    }

    // Extended attributes.
    assert_eq!(xattr(&mnt, "user.cairn.cid").unwrap(), root.to_string());
    assert_eq!(
        xattr(&mnt.join("big.bin"), "user.cairn.cid").unwrap(),
        big_cid.to_string()
    );
    let local = xattr(&mnt.join("big.bin"), "user.cairn.local").unwrap();
    let (have, total) = local
        .trim_end_matches(" blocks local")
        .split_once('/')
        .unwrap();
    assert_eq!(have, total, "{local}");
    assert_eq!(errno(xattr(&mnt, "user.other")), Some(61 /* ENODATA */));

    // Read-only.
    assert_eq!(errno(fs::write(mnt.join("new"), b"x")), Some(EROFS));
    assert_eq!(
        errno(fs::OpenOptions::new().write(true).open(mnt.join("empty"))),
        Some(EROFS)
    );
    assert_eq!(errno(fs::create_dir(mnt.join("d"))), Some(EROFS));
    assert_eq!(errno(fs::remove_file(mnt.join("empty"))), Some(EROFS));
    assert_eq!(
        errno(fs::rename(mnt.join("empty"), mnt.join("e2"))),
        Some(EROFS)
    );
    assert_eq!(
        errno(fs::set_permissions(
            mnt.join("empty"),
            fs::Permissions::from_mode(0o777)
        )),
        Some(EROFS)
    );
    assert_eq!(errno(fs::metadata(mnt.join("nope"))), Some(ENOENT));

    // Sequential throughput: the mount vs. the source file on the same machine.
    let time = |p: &Path| {
        let start = Instant::now();
        let mut f = fs::File::open(p).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            let k = f.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k;
        }
        assert_eq!(n, BIG);
        start.elapsed()
    };
    // A fresh mount so the kernel page cache of the first one does not help.
    m.unmount();
    let m = mount_at(
        store.source.clone(),
        MountRoot::Cid(root),
        MountOptions::default(),
        &rt,
    );
    let through_mount = time(&m.path.join("big.bin"));
    let source = time(&src.path().join("big.bin"));
    let start = Instant::now();
    let mut cursor = reader.cursor(&big_cid, 0);
    let mut n = 0;
    while let Some(chunk) = block_on(&rt, cursor.next_chunk()).unwrap() {
        n += chunk.len();
    }
    assert_eq!(n, BIG);
    let direct = start.elapsed();
    let mib = BIG as f64 / (1 << 20) as f64;
    println!(
        "sequential read of {mib:.0} MiB: mount {:.0} MiB/s, DagReader cursor {:.0} MiB/s, \
         source file (page cache) {:.0} MiB/s; mount/cursor ratio {:.2}",
        mib / through_mount.as_secs_f64(),
        mib / direct.as_secs_f64(),
        mib / source.as_secs_f64(),
        direct.as_secs_f64() / through_mount.as_secs_f64(),
    );
    m.unmount();
}

#[test]
fn single_file_root_and_namespace() {
    let rt = runtime();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f.txt"), b"single file\n").unwrap();
    fs::create_dir(src.path().join("d")).unwrap();
    fs::write(src.path().join("d/inner"), b"inner\n").unwrap();
    let store = store();
    let file = import(&store, &src.path().join("f.txt"), &ImportOptions::default());
    let dir = import(&store, &src.path().join("d"), &ImportOptions::default());

    let m = mount_at(
        store.source.clone(),
        MountRoot::Cid(file),
        MountOptions::default(),
        &rt,
    );
    let names: Vec<_> = fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [file.to_string()]);
    assert_eq!(
        fs::read(m.path.join(file.to_string())).unwrap(),
        b"single file\n"
    );
    m.unmount();

    let m = mount_at(
        store.source.clone(),
        MountRoot::Namespace,
        MountOptions::default(),
        &rt,
    );
    assert_eq!(fs::read_dir(&m.path).unwrap().count(), 0);
    assert_eq!(
        fs::read(m.path.join(dir.to_string()).join("inner")).unwrap(),
        b"inner\n"
    );
    assert_eq!(
        fs::read(m.path.join(file.to_string())).unwrap(),
        b"single file\n"
    );
    assert_eq!(errno(fs::metadata(m.path.join("not-a-cid"))), Some(ENOENT));
    let mut listed: Vec<_> = fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut want = vec![file.to_string(), dir.to_string()];
    want.sort();
    assert_eq!(listed, want);
    m.unmount();
}

/// Serves from the local store, except one CID that never arrives.
#[derive(Clone)]
struct Stalling {
    inner: LocalSource<SledStore>,
    stalled: Cid,
}

impl BlockSource for Stalling {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        let stall = *cid == self.stalled;
        let inner = self.inner.clone();
        let cid = *cid;
        async move {
            if stall {
                std::future::pending::<()>().await;
            }
            inner.get(&cid).await
        }
    }
    fn has_local(&self, cid: &Cid) -> bool {
        *cid != self.stalled && self.inner.has_local(cid)
    }
}

#[test]
fn unavailable_content_fails_with_eio_without_stalling_local_reads() {
    let rt = runtime();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("slow.bin"), pseudo_random(3 << 20, 3)).unwrap();
    fs::write(src.path().join("fast.bin"), pseudo_random(1 << 20, 5)).unwrap();
    let store = store();
    let root = import(&store, src.path(), &ImportOptions::default());
    let reader = DagReader::new(store.source.clone());
    let slow = block_on(&rt, reader.resolve(&root, &["slow.bin"])).unwrap();
    let stalled = block_on(&rt, reader.leaves(&slow, 1 << 20, 1)).unwrap()[0].0;

    let source = Stalling {
        inner: store.source.clone(),
        stalled,
    };
    let options = MountOptions {
        timeout: Duration::from_secs(2),
        ..MountOptions::default()
    };
    let m = mount_at(source, MountRoot::Cid(root), options, &rt);

    let (tx, rx) = mpsc::channel();
    let slow_path = m.path.join("slow.bin");
    let slow_reader = std::thread::spawn(move || {
        let f = fs::File::open(slow_path).unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tx.send(errno(f.read_at(&mut buf, 1 << 20)));
    });
    // While that read waits for its block, local content reads fine.
    assert_eq!(
        fs::read(m.path.join("fast.bin")).unwrap(),
        fs::read(src.path().join("fast.bin")).unwrap()
    );
    let f = fs::File::open(m.path.join("slow.bin")).unwrap();
    let mut head = vec![0u8; 4096];
    assert_eq!(
        f.read_at(&mut head, 0).unwrap(),
        4096,
        "the local part of the slow file reads"
    );
    drop(f);
    assert!(
        rx.try_recv().is_err(),
        "the stalled read should still be pending"
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), Some(EIO));
    slow_reader.join().unwrap();
    m.unmount();
}

#[test]
fn bad_mountpoints_are_refused() {
    let rt = runtime();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a"), b"a").unwrap();
    let store = store();
    let root = import(&store, src.path(), &ImportOptions::default());
    let try_mount = |p: &Path| {
        mount(
            store.source.clone(),
            MountRoot::Cid(root),
            p,
            MountOptions::default(),
            rt.handle().clone(),
        )
    };

    let dir = tempfile::tempdir().unwrap();
    let e = try_mount(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(e, MountError::MissingMountpoint { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    fs::write(dir.path().join("file"), b"x").unwrap();
    assert!(matches!(
        try_mount(&dir.path().join("file")),
        Err(MountError::NotADirectory { .. })
    ));
    let e = try_mount(dir.path()).unwrap_err();
    assert!(matches!(e, MountError::NotEmpty { .. }), "{e}");

    let m = mount_at(
        store.source.clone(),
        MountRoot::Cid(root),
        MountOptions::default(),
        &rt,
    );
    let e = try_mount(&m.path).unwrap_err();
    assert!(matches!(e, MountError::AlreadyMounted { .. }), "{e}");
    assert_eq!(
        fs::read(m.path.join("a")).unwrap(),
        b"a",
        "the first mount still works"
    );
    m.unmount();

    // Unmounting on drop.
    let m = mount_at(
        store.source.clone(),
        MountRoot::Cid(root),
        MountOptions::default(),
        &rt,
    );
    let path = m.path.clone();
    drop(m);
    assert!(!is_mounted(&path));
}

#[test]
fn missing_root_is_a_clear_error() {
    let rt = runtime();
    let store = store();
    let gone = cairn_store::cid_for(
        1,
        cairn_store::RAW,
        cairn_store::HashAlg::Sha2_256,
        b"not stored",
    );
    let dir = tempfile::tempdir().unwrap();
    let e = mount(
        store.source.clone(),
        MountRoot::Cid(gone),
        dir.path(),
        MountOptions::default(),
        rt.handle().clone(),
    )
    .unwrap_err();
    assert!(e.to_string().contains(&gone.to_string()), "{e}");
}

/// The inode count the mount reports on its root (`user.cairn.inodes`).
fn mount_inodes(mnt: &Path) -> u64 {
    xattr(mnt, cairn_fs::XATTR_INODES).unwrap().parse().unwrap()
}

/// Drops the kernel's dentry and inode caches (what memory pressure would do), so that it
/// sends FORGET for every inode of the mount that nothing holds.
fn drop_kernel_caches() {
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

#[test]
fn forgotten_inodes_leave_the_table_and_memory_stays_bounded() {
    const ENTRIES: usize = 200_000;
    let r = cairn_tests::TestRepo::new();
    let mut b = cairn_tests::Blocks::default();
    let f = b.raw(b"same content\n");
    let entries = (0..ENTRIES)
        .map(|i| (format!("entry-{i:07}"), f, 13))
        .collect();
    let dir = b.sharded_dir(entries);
    b.import(&r, dir);
    let m = r.mount(&dir.to_string(), &r.path("mnt"));
    let rss = |what: &str| {
        let kib = cairn_tests::vm_kib(m.pid(), "VmRSS:").unwrap();
        println!("{what}: mount VmRSS {} MiB", kib / 1024);
        kib
    };
    rss("mounted");
    // Twice: the table fills and empties again, nothing accumulates.
    for round in 0..2 {
        // `-printf %s` needs every entry's attributes: one lookup each.
        let out = Command::new("find")
            .arg(&m.dir)
            .args(["-printf", "%s\n"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            out.stdout.iter().filter(|&&c| c == b'\n').count(),
            ENTRIES + 1
        );
        let held = mount_inodes(&m.dir);
        assert!(
            held > ENTRIES as u64,
            "round {round}: {held} inodes after find"
        );
        rss(&format!("round {round}, after find"));
        drop_kernel_caches();
        cairn_tests::wait_for(60, "the kernel to forget the mount's inodes", || {
            (mount_inodes(&m.dir) < 1000).then_some(())
        });
        rss(&format!("round {round}, after the kernel forgot"));
    }
    // RSS right after forgetting is printed, not compared: whether freed memory goes back to
    // the OS at once is the allocator's choice, and the bounded caches keep warming over both
    // passes (runs here: 134 -> 67 MiB, then 163 -> 95 MiB; another 136 -> 107 MiB). What is
    // promised is checked: the inode table empties each round (above) and the peak is bounded.
    // Besides the inodes the kernel holds, the mount's memory is its caches, each bounded
    // (sled's page cache, decoded nodes, leaf data: 160 MiB together by default), so two
    // passes over 200 000 entries stay well under this.
    let peak = cairn_tests::vm_kib(m.pid(), "VmHWM:").unwrap();
    println!("mount VmHWM {} MiB", peak / 1024);
    assert!(peak < 512 << 10, "mount peak RSS {peak} KiB");
    m.stop();
}

#[test]
fn closing_files_logs_no_unimplemented_operations() {
    let r = cairn_tests::TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a.txt"), b"hello\n").unwrap();
    fs::write(src.path().join("b.bin"), pseudo_random(300_000, 9)).unwrap();
    let root = r
        .cairn(&["add", "-r", "-Q", src.path().to_str().unwrap()])
        .expect_ok();
    let m = r.mount(&root, &r.path("mnt"));
    for name in ["a.txt", "b.bin"] {
        let cat = Command::new("cat").arg(m.dir.join(name)).output().unwrap();
        assert!(cat.status.success());
        assert_eq!(cat.stdout, fs::read(src.path().join(name)).unwrap());
    }
    assert_eq!(fs::read(m.dir.join("a.txt")).unwrap(), b"hello\n");
    let log = m.stop();
    assert!(!log.contains("Not Implemented"), "mount log: {log}");
}
