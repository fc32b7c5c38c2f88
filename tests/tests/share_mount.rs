//! Writable share mounts through the real binary and real FUSE mounts: the same work done in a
//! mounted share and in a local directory gives the same tree (git, tar, rsync, an editor's
//! save, renames, modes, times, sparse files), random writes against a model, POSIX details
//! (O_EXCL, O_APPEND, renameat2 flags, hard links, mmap, flock, names, xattrs, inode numbers),
//! commits (their triggers, their cost in blocks), `kill -9` at every step of a commit, history
//! and retention while mounted, a full disk, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_store::FAULT_ENV;
use cairn_tests::{wait_for, MountGuard, TestRepo, TreeEntry};
use serde_json::Value;

fn json(r: &TestRepo, args: &[&str]) -> Vec<Value> {
    r.json(args)
}

/// A new empty share; its id.
fn new_share(r: &TestRepo, label: &str) -> String {
    json(r, &["share", "new", label])[0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The head's sequence number.
fn head_seq(r: &TestRepo, label: &str) -> u64 {
    json(r, &["share", "log", label])[0]["sequence"]
        .as_u64()
        .unwrap()
}

/// Waits until the share's head is at least version `seq`.
fn wait_version(r: &TestRepo, label: &str, seq: u64) -> u64 {
    wait_for(30, "a commit", || {
        let s = head_seq(r, label);
        (s >= seq).then_some(s)
    })
}

/// Runs a bash script in `dir`, failing the test with its output if it fails.
fn sh(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new("bash");
    c.arg("-euo").arg("pipefail").arg("-c").arg(script);
    c.current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "script failed in {}:\n{text}",
        dir.display()
    );
    text
}

/// Runs a Python program in `dir`; its stdout.
fn py(dir: &Path, code: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A tree with file mtimes kept only below the paths in `timed` (where a tool set them), and
/// without `skip` (whose bytes legitimately differ, e.g. git's index with inode numbers).
fn comparable(root: &Path, timed: &[&str], skip: &[&str]) -> BTreeMap<PathBuf, TreeEntry> {
    cairn_tests::read_tree(root)
        .into_iter()
        .filter(|(p, _)| !skip.iter().any(|s| p.starts_with(s)))
        .map(|(p, mut e)| {
            if let TreeEntry::File { mtime, .. } = &mut e {
                if !timed.iter().any(|t| p.starts_with(t)) {
                    *mtime = 0;
                }
            }
            (p, e)
        })
        .collect()
}

fn assert_same_tree(a: &BTreeMap<PathBuf, TreeEntry>, b: &BTreeMap<PathBuf, TreeEntry>) {
    let names = |t: &BTreeMap<PathBuf, TreeEntry>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "different names");
    for (p, e) in a {
        let other = &b[p];
        if e != other {
            let short = |e: &TreeEntry| match e {
                TreeEntry::File { mode, mtime, data } => {
                    format!("file mode {mode:o} mtime {mtime} {} bytes", data.len())
                }
                other => format!("{other:?}"),
            };
            panic!("{} differs: {} vs {}", p.display(), short(e), short(other));
        }
    }
}

/// A local tree to archive and to rsync: nested directories, an executable, a symlink,
/// fixed old mtimes.
fn source_tree(r: &TestRepo) -> PathBuf {
    let src = r.path("source");
    sh(
        &r.path(""),
        "mkdir -p source/d1/d2/d3 source/sub/deeper source/empty
         printf 'nested\\n' > source/d1/d2/d3/file.txt
         printf '#!/bin/sh\\necho hi\\n' > source/run.sh && chmod 0755 source/run.sh
         head -c 700000 /dev/urandom > source/sub/blob.bin
         printf 'deep\\n' > source/sub/deeper/x
         ln -s d1/d2/d3/file.txt source/link
         ln -s /nowhere source/dangling
         find source -exec touch -h -d '2021-03-04 05:06:07' {} +",
        &[],
    );
    src
}

/// The work of the differential test, in the current directory. `$SRC` is a local tree and
/// `$ARCHIVE` a tar of it.
const WORK: &str = r#"
mkdir -p a/b/c && echo one > a/b/c/f.txt
head -c 100000 /dev/zero | tr '\0' x > big.txt
echo appended >> big.txt
truncate -s 50 a/b/c/f.txt
truncate -s 300000 sparse.bin
printf 'end' | dd of=sparse.bin bs=1 seek=299000 conv=notrunc status=none
mv a/b a/moved
mkdir dst && mv a/moved dst/
echo old > target.txt && echo new > source.txt && mv source.txt target.txt
ln -s ../target.txt dst/link
chmod 0755 big.txt && chmod 0600 target.txt
touch -d '2020-01-02 03:04:05' target.txt
python3 - <<'PY'
import os
with open('doc.txt', 'w') as f:
    f.write('version one\n')
tmp = '.doc.txt.swp'
with open(tmp, 'w') as f:
    f.write('version two, saved as an editor does\n')
    f.flush()
    os.fsync(f.fileno())
os.rename(tmp, 'doc.txt')
PY
mkdir tarred && tar -xf "$ARCHIVE" -C tarred
cp -r tarred/d1 copied && cp -r dst dst-copy
rsync -a "$SRC/" synced/
rm -r synced/sub
mkdir -p gone/x/y && echo z > gone/x/y/z && rm -r gone
git init -q repo
cd repo
git config user.email t@example.org && git config user.name tester
echo a > a && git add a && git commit -qm one
echo b >> a && mkdir sub && echo c > sub/c && git add -A && git commit -qm two
git rm -q a && echo d > d && git add d && git commit -qm three
git checkout -q HEAD~2
test -z "$(git status --porcelain)"
test "$(git log --oneline | wc -l)" = 1
git checkout -q -
git fsck --no-progress 2>&1
test "$(cat sub/c)" = c
"#;

#[test]
fn work_in_a_mounted_share_matches_the_same_work_on_local_disk() {
    let r = TestRepo::new();
    new_share(&r, "work");
    let src = source_tree(&r);
    let archive = r.path("source.tar");
    sh(
        &r.path(""),
        &format!("tar -cf {} -C source .", archive.display()),
        &[],
    );
    let env = [
        ("SRC", src.to_str().unwrap()),
        ("ARCHIVE", archive.to_str().unwrap()),
        ("GIT_AUTHOR_DATE", "2022-01-01T00:00:00Z"),
        ("GIT_COMMITTER_DATE", "2022-01-01T00:00:00Z"),
    ];
    let local = r.path("local");
    fs::create_dir_all(&local).unwrap();
    sh(&local, WORK, &env);

    let m = r.mount("work", &r.path("mnt"));
    sh(&m.dir, WORK, &env);
    let timed = ["target.txt", "tarred", "synced"];
    // git's index records inode numbers and ctimes; its objects and refs must match.
    let skip = ["repo/.git/index"];
    let want = comparable(&local, &timed, &skip);
    assert_same_tree(&want, &comparable(&m.dir, &timed, &skip));

    // Everything is committed (at the latest when the mount ends) and comes back.
    let before = head_seq(&r, "work");
    let log = m.stop();
    assert!(!cairn_tests::is_mounted(&r.path("mnt")), "{log}");
    assert!(head_seq(&r, "work") >= before);
    let m = r.mount("work", &r.path("mnt"));
    assert_same_tree(&want, &comparable(&m.dir, &timed, &skip));
    sh(
        &m.dir.join("repo"),
        "test -z \"$(git status --porcelain)\" && git fsck --no-progress",
        &[],
    );
    // The tree in the store is the mount's: `cairn get` of the head gives it too.
    let root = json(&r, &["share", "log", "work"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    let got = r.path("got");
    r.cairn(&["get", &root, "-o", got.to_str().unwrap()])
        .expect_ok();
    let names = |t: BTreeMap<PathBuf, TreeEntry>| t.into_keys().collect::<Vec<_>>();
    assert_eq!(
        names(comparable(&got, &[], &skip)),
        names(comparable(&local, &[], &skip))
    );
    drop(m);
    r.cairn(&["repo", "verify"]).expect_ok();
}

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random writes, truncates, appends and syncs on a few files of a mounted share, checked
/// against an in-memory model after every read, after commits and after a remount.
/// `CAIRN_TEST_SEED=<n>` replays one seed.
#[test]
fn random_writes_match_a_model_across_commits_and_remounts() {
    let seeds: Vec<u64> = match std::env::var("CAIRN_TEST_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => vec![1, 2, 3],
    };
    let r = TestRepo::new();
    new_share(&r, "rand");
    for seed in seeds {
        let mut m = Some(r.mount("rand", &r.path("mnt")));
        let dir = m.as_ref().unwrap().dir.clone();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let names = ["f0", "f1", "f2"];
        let mut model: Vec<Vec<u8>> = names
            .iter()
            .map(|n| fs::read(dir.join(format!("{seed}-{n}"))).unwrap_or_default())
            .collect();
        for step in 0..300 {
            let i = rng.below(3) as usize;
            let path = dir.join(format!("{seed}-{}", names[i]));
            let f = fs::File::options()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let model = &mut model[i];
            match rng.below(10) {
                0..=4 => {
                    // A write anywhere, also past the end (a hole).
                    let off = rng.below(model.len() as u64 + 600_000);
                    let len = 1 + rng.below(300_000) as usize;
                    let data = cairn_tests::pseudo_random(len, rng.next());
                    f.write_all_at(&data, off).unwrap();
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                5 => {
                    let len = rng.below(model.len() as u64 + 100_000);
                    f.set_len(len).unwrap();
                    model.resize(len as usize, 0);
                }
                6 => {
                    let data = cairn_tests::pseudo_random(1 + rng.below(5000) as usize, step);
                    let mut a = fs::File::options().append(true).open(&path).unwrap();
                    std::io::Write::write_all(&mut a, &data).unwrap();
                    model.extend_from_slice(&data);
                }
                7 => f.sync_all().unwrap(),
                8 => {
                    let off = rng.below(model.len() as u64 + 10);
                    let len = rng.below(200_000) as usize;
                    let mut buf = vec![0u8; len];
                    let n = read_full_at(&f, &mut buf, off);
                    let from = (off as usize).min(model.len());
                    let to = (from + len).min(model.len());
                    assert_eq!(
                        &buf[..n],
                        &model[from..to],
                        "seed {seed} step {step}: read at {off}"
                    );
                }
                _ => {
                    // Sometimes wait for a commit to happen in the middle of the work.
                    if rng.below(4) == 0 {
                        r.cairn(&["share", "commit", "rand"]).expect_ok();
                    }
                }
            }
        }
        for (i, n) in names.iter().enumerate() {
            let got = fs::read(dir.join(format!("{seed}-{n}"))).unwrap();
            assert!(got == model[i], "seed {seed}: {n} differs before remount");
        }
        drop(m.take());
        let m = r.mount("rand", &r.path("mnt"));
        for (i, n) in names.iter().enumerate() {
            let got = fs::read(m.dir.join(format!("{seed}-{n}"))).unwrap();
            assert!(got == model[i], "seed {seed}: {n} differs after remount");
        }
    }
    r.cairn(&["repo", "verify"]).expect_ok();
}

fn read_full_at(f: &fs::File, buf: &mut [u8], off: u64) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// What the POSIX test checks, in Python (renameat2, mmap, flock, raw names).
const POSIX: &str = r#"
import ctypes, errno, fcntl, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def fails(e, f, *a):
    try:
        f(*a)
    except OSError as x:
        assert x.errno == e, (f, a, x)
        return
    raise AssertionError(f"{f} {a} did not fail")
# O_EXCL on an existing name
open('x', 'w').write('x')
fails(errno.EEXIST, os.open, 'x', os.O_CREAT | os.O_EXCL | os.O_WRONLY)
# O_APPEND and O_TRUNC
fd = os.open('x', os.O_WRONLY | os.O_APPEND); os.write(fd, b'yz'); os.close(fd)
assert open('x').read() == 'xyz'
fd = os.open('x', os.O_WRONLY | os.O_TRUNC); os.write(fd, b'T'); os.close(fd)
assert open('x').read() == 'T'
# renameat2: NOREPLACE refuses, EXCHANGE swaps
open('y', 'w').write('why')
AT = -100
def renameat2(a, b, flags):
    if libc.renameat2(AT, a.encode(), AT, b.encode(), flags) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
fails(errno.EEXIST, renameat2, 'x', 'y', 1)
renameat2('x', 'y', 2)
assert open('x').read() == 'why' and open('y').read() == 'T'
fails(errno.EINVAL, renameat2, 'x', 'y', 3)
# hard links are refused
fails(errno.EPERM, os.link, 'x', 'x2')
# special files are refused
fails(errno.EPERM, os.mkfifo, 'fifo')
# names: too long, not UTF-8
fails(errno.ENAMETOOLONG, open, 'n' * 256, 'w')
open('n' * 255, 'w').write('ok')
fails(errno.EINVAL, os.open, b'bad\xff', os.O_CREAT | os.O_WRONLY)
# inode numbers survive renames
ino = os.stat('y').st_ino
os.mkdir('d'); os.rename('y', 'd/y2')
assert os.stat('d/y2').st_ino == ino
print(ino)
# shared mmap writes reach the file
with open('m', 'wb') as f:
    f.write(b'\0' * 8192)
with open('m', 'r+b') as f:
    mm = mmap.mmap(f.fileno(), 8192)
    mm[100:105] = b'hello'
    mm.flush(); mm.close()
assert open('m', 'rb').read()[100:105] == b'hello'
# flock: a second exclusive lock is refused while the first is held
a = open('x'); b = open('x')
fcntl.flock(a, fcntl.LOCK_EX)
fails(errno.EWOULDBLOCK, fcntl.flock, b, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.flock(a, fcntl.LOCK_UN); fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
# fdatasync and fsync of a directory
fd = os.open('m', os.O_RDWR); os.fdatasync(fd); os.close(fd)
fd = os.open('.', os.O_RDONLY); os.fsync(fd); os.close(fd)
# statfs reports a real disk
st = os.statvfs('.')
assert st.f_blocks > 0 and st.f_bsize > 0 and st.f_namemax == 255
"#;

#[test]
fn posix_details_hold_on_a_mounted_share() {
    let r = TestRepo::new();
    new_share(&r, "px");
    let m = r.mount("px", &r.path("mnt"));
    let ino: u64 = py(&m.dir, POSIX).trim().parse().unwrap();
    // The fsyncs committed; the inode number survives the commit too.
    assert!(head_seq(&r, "px") >= 2);
    r.cairn(&["share", "commit", "px"]).expect_ok();
    assert_eq!(fs::metadata(m.dir.join("d/y2")).unwrap().ino(), ino);
    // statfs is the repo's disk.
    let df = |p: &Path| {
        let out = Command::new("stat")
            .args(["-f", "-c", "%b %S"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(df(&m.dir), df(&r.repo()));
    drop(m);
    r.cairn(&["repo", "verify"]).expect_ok();
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    let code = format!(
        "import os,sys\ntry:\n  print(os.getxattr({:?}, {name:?}).decode())\nexcept OSError as e:\n  print('errno', e.errno)",
        path.to_str().unwrap()
    );
    let out = py(Path::new("/"), &code);
    let out = out.trim();
    (!out.starts_with("errno")).then(|| out.to_string())
}

#[test]
fn xattrs_give_each_node_its_committed_cid_and_whether_it_changed_since() {
    let r = TestRepo::new();
    new_share(&r, "x");
    // No commit but the one asked for below.
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "3600000"])
        .expect_ok();
    r.cairn(&["config", "set", "shares.commit_max_secs", "3600"])
        .expect_ok();
    let m = r.mount("x", &r.path("mnt"));
    fs::create_dir(m.dir.join("dir")).unwrap();
    fs::write(m.dir.join("dir/file"), b"content\n").unwrap();
    // Not committed yet: no CID for the new file, and it is dirty.
    assert_eq!(xattr(&m.dir.join("dir/file"), "user.cairn.cid"), None);
    assert_eq!(
        xattr(&m.dir.join("dir/file"), "user.cairn.dirty").as_deref(),
        Some("true")
    );
    r.cairn(&["share", "commit", "x"]).expect_ok();
    let head = &json(&r, &["share", "log", "x"])[0];
    assert_eq!(
        xattr(&m.dir, "user.cairn.cid").as_deref(),
        head["root"].as_str()
    );
    assert_eq!(
        xattr(&m.dir, "user.cairn.version"),
        Some(head["sequence"].to_string())
    );
    let file_cid = xattr(&m.dir.join("dir/file"), "user.cairn.cid").unwrap();
    assert_eq!(r.cairn(&["cat", &file_cid]).expect_ok(), "content");
    for p in ["", "dir", "dir/file"] {
        assert_eq!(
            xattr(&m.dir.join(p), "user.cairn.dirty").as_deref(),
            Some("false"),
            "{p}"
        );
    }
    // A change makes the file and its parents dirty, not its siblings.
    fs::write(m.dir.join("other"), b"o").unwrap();
    r.cairn(&["share", "commit", "x"]).expect_ok();
    fs::write(m.dir.join("dir/file"), b"changed\n").unwrap();
    assert_eq!(
        xattr(&m.dir.join("dir/file"), "user.cairn.cid").as_deref(),
        Some(file_cid.as_str()),
        "the CID is the committed one until the next commit"
    );
    for (p, dirty) in [
        ("", "true"),
        ("dir", "true"),
        ("dir/file", "true"),
        ("other", "false"),
    ] {
        let got = xattr(&m.dir.join(p), "user.cairn.dirty");
        assert_eq!(got.as_deref(), Some(dirty), "{p}");
    }
}

#[test]
fn commits_happen_after_a_quiet_period_and_on_fsync() {
    let r = TestRepo::new();
    new_share(&r, "q");
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "200"])
        .expect_ok();
    let m = r.mount("q", &r.path("mnt"));
    assert_eq!(head_seq(&r, "q"), 1);
    fs::write(m.dir.join("a"), b"a").unwrap();
    // No fsync: the quiet period commits it.
    wait_version(&r, "q", 2);
    // An fsync commits before it returns.
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "3600000"])
        .expect_ok();
    drop(m);
    let m = r.mount("q", &r.path("mnt"));
    let seq = head_seq(&r, "q");
    let f = fs::File::create(m.dir.join("b")).unwrap();
    std::io::Write::write_all(&mut &f, b"bee").unwrap();
    f.sync_all().unwrap();
    assert_eq!(head_seq(&r, "q"), seq + 1, "fsync committed");
    // `cairn share commit` commits, and says when there is nothing to commit.
    fs::write(m.dir.join("c"), b"c").unwrap();
    let c = &json(&r, &["share", "commit", "q"])[0];
    assert_eq!(c["committed"], true, "{c}");
    assert_eq!(c["sequence"], seq + 2);
    let c = &json(&r, &["share", "commit", "q"])[0];
    assert_eq!(c["committed"], false, "{c}");
    // The log counts the files each version changed.
    let log = json(&r, &["share", "log", "q"]);
    assert_eq!(log[0]["changed"], 1, "{:?}", log[0]);
    let listed = &json(&r, &["share", "ls"])[0];
    assert_eq!(
        listed["mounted_at"].as_str(),
        Some(m.dir.to_str().unwrap()),
        "{listed}"
    );
}

#[test]
fn while_writes_go_on_commits_still_happen_every_max_interval() {
    let r = TestRepo::new();
    new_share(&r, "busy");
    // The quiet period never comes; the longest interval is 1 s.
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "3600000"])
        .expect_ok();
    r.cairn(&["config", "set", "shares.commit_max_secs", "1"])
        .expect_ok();
    let m = r.mount("busy", &r.path("mnt"));
    let f = fs::File::create(m.dir.join("log.txt")).unwrap();
    let start = std::time::Instant::now();
    let mut off = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(3500) {
        f.write_all_at(b"a line of the log\n", off).unwrap();
        off += 18;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let seq = head_seq(&r, "busy");
    assert!(seq >= 3, "only {} commits in 3.5 s of writes", seq - 1);
    // Each version holds a prefix of the log: a file written across commits.
    let log = json(&r, &["share", "log", "busy"]);
    let root = log[0]["root"].as_str().unwrap();
    let text = r.cairn(&["cat", &format!("{root}/log.txt")]).expect_ok();
    assert!(text.lines().all(|l| l == "a line of the log"), "{text}");
}

/// A folder of `dirs` × `files` small files, as a new share.
fn big_share(r: &TestRepo, label: &str, dirs: usize, files: usize) {
    let src = r.path(&format!("{label}-src"));
    for d in 0..dirs {
        let dir = src.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    r.cairn(&["share", "new", label, "--from", src.to_str().unwrap()])
        .expect_ok();
}

#[test]
fn a_one_byte_change_stores_blocks_along_its_path_only() {
    let r = TestRepo::new();
    let mut blocks = Vec::new();
    for (label, dirs) in [("small", 10), ("large", 100)] {
        big_share(&r, label, dirs, 100);
        let m = r.mount_with(label, &r.path(label), &[], &[]);
        let before = json(&r, &["repo", "stat"])[0]["blocks"].as_u64().unwrap();
        let f = fs::File::options()
            .write(true)
            .open(m.dir.join("d007/f042.txt"))
            .unwrap();
        f.write_all_at(b"X", 0).unwrap();
        drop(f);
        let c = &json(&r, &["share", "commit", label])[0];
        assert_eq!(c["changed"], 1, "{c}");
        let after = json(&r, &["repo", "stat"])[0]["blocks"].as_u64().unwrap();
        // The file's leaf, its directory, the root, the record, the commit, and the id blocks
        // of the directory and the root.
        assert_eq!(c["blocks"], 7, "{label}: {c}");
        assert!(after - before <= 7, "{label}: {before} -> {after} blocks");
        blocks.push(c["blocks"].as_u64().unwrap());
        drop(m);
    }
    assert_eq!(blocks[0], blocks[1], "independent of the folder's size");
}

#[test]
fn kill_9_at_every_step_of_a_commit_loses_nothing_synced() {
    let r = TestRepo::new();
    new_share(&r, "k");
    // No quiet-period commits: only the fsyncs commit.
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "3600000"])
        .expect_ok();
    let points = [
        "overlay-data-synced",
        "share-commit-built",
        "share-record-stored",
        "share-roots-journaled",
        "share-head-written",
        "share-commit-published",
        "share-commit-reset",
    ];
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, point) in points.iter().enumerate() {
        let before = head_seq(&r, "k");
        let m = r.mount_with("k", &r.path("mnt"), &[], &[(FAULT_ENV, point)]);
        let name = format!("file{i}");
        let data = cairn_tests::pseudo_random(200_000 + i * 1000, i as u64);
        let f = fs::File::create(m.dir.join(&name)).unwrap();
        f.write_all_at(&data, 0).unwrap();
        // The fsync dies with the process somewhere in its sync or commit. Every write that
        // returned reached the staging area, which a kill -9 (unlike a power cut) cannot undo.
        assert!(f.sync_all().is_err(), "not killed at {point}");
        drop(f);
        expected.insert(name, data);
        let pid = m.pid();
        wait_for(30, "the crash", || {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
                .then_some(())
        });
        let _ = m.stop();
        // The head is a valid version: the old one, or the new one if the crash came after
        // the head moved.
        let seq = head_seq(&r, "k");
        assert!(
            seq == before || seq == before + 1,
            "{point}: {before} -> {seq}"
        );
        // Remount: the staged change is there and is committed at once.
        let m = r.mount("k", &r.path("mnt"));
        for (n, d) in &expected {
            let got = fs::read(m.dir.join(n)).unwrap_or_default();
            assert!(got == *d, "after a crash at {point}: {n} differs");
        }
        let c = &json(&r, &["share", "commit", "k"])[0];
        assert_eq!(
            c["committed"], false,
            "{point}: committed at mount already: {c}"
        );
        let log = json(&r, &["share", "log", "k"]);
        let seqs: Vec<u64> = log
            .iter()
            .map(|v| v["sequence"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{point}: {seqs:?}");
        drop(m);
        r.cairn(&["repo", "verify"]).expect_ok();
    }
    // Everything is in the head, as `cairn cat` of its paths shows.
    let root = json(&r, &["share", "log", "k"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    for (n, d) in &expected {
        let out = r
            .command(&["cat", &format!("{root}/{n}")])
            .output()
            .unwrap();
        assert!(out.stdout == *d, "{n} in the head");
    }
}

#[test]
fn history_retention_and_old_versions_while_mounted() {
    let r = TestRepo::new();
    new_share(&r, "h");
    let m = r.mount("h", &r.path("mnt"));
    fs::write(m.dir.join("a.txt"), b"one\n").unwrap();
    r.cairn(&["share", "commit", "h"]).expect_ok();
    let v2 = json(&r, &["share", "log", "h"])[0].clone();
    fs::write(m.dir.join("a.txt"), b"two\n").unwrap();
    fs::write(m.dir.join("b.txt"), b"bee\n").unwrap();
    r.cairn(&["share", "commit", "h"]).expect_ok();
    let diff: Vec<String> = json(&r, &["share", "diff", "h"])
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["change"].as_str().unwrap(),
                c["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(diff, ["modified a.txt", "added b.txt"]);
    // An old version mounts read-only by its CID, next to the writable mount.
    let old_dir = r.path("old");
    fs::create_dir_all(&old_dir).unwrap();
    r.cairn(&[
        "mount",
        v2["root"].as_str().unwrap(),
        old_dir.to_str().unwrap(),
    ])
    .expect_ok();
    let old = fs::canonicalize(&old_dir).unwrap();
    assert_eq!(fs::read(old.join("a.txt")).unwrap(), b"one\n");
    let e = fs::write(old.join("a.txt"), b"no").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // Retention keeps one version, but never the mounted one, also through a GC.
    r.cairn(&["share", "retention", "h", "--versions", "1"])
        .expect_ok();
    for i in 0..3 {
        fs::write(m.dir.join("c.txt"), format!("{i}")).unwrap();
        r.cairn(&["share", "commit", "h"]).expect_ok();
    }
    r.cairn(&["repo", "gc"]).expect_ok();
    assert_eq!(fs::read(old.join("a.txt")).unwrap(), b"one\n");
    assert_eq!(
        r.cairn(&["cat", &format!("{}/a.txt", v2["root"].as_str().unwrap())])
            .expect_ok(),
        "one"
    );
    // Restore and rm wait for the writable mount to go.
    r.cairn(&["share", "restore", "h", "2"])
        .expect_err("mounted writable");
    r.cairn(&["share", "rm", "h"])
        .expect_err("mounted writable");
    r.cairn(&["unmount", old.to_str().unwrap()]).expect_ok();
    drop(m);
    r.cairn(&["share", "restore", "h", "2"]).expect_ok();
    let m = r.mount("h", &r.path("mnt"));
    assert_eq!(fs::read(m.dir.join("a.txt")).unwrap(), b"one\n");
    assert!(!m.dir.join("b.txt").exists());
    drop(m);
    r.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn gc_during_writes_and_commits_keeps_staged_data_the_head_and_retained_versions() {
    let r = TestRepo::new();
    new_share(&r, "g");
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "50"])
        .expect_ok();
    let m = r.mount("g", &r.path("mnt"));
    let dir = m.dir.clone();
    let writer = std::thread::spawn(move || {
        let mut want = BTreeMap::new();
        for i in 0..60u64 {
            let name = format!("f{}", i % 20);
            let data = cairn_tests::pseudo_random(50_000 + (i as usize) * 997, i);
            fs::write(dir.join(&name), &data).unwrap();
            if i % 7 == 0 {
                fs::File::open(dir.join(&name)).unwrap().sync_all().unwrap();
            }
            want.insert(name, data);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        want
    });
    // GCs while files are written and committed (quiet-period commits every 50 ms).
    for _ in 0..8 {
        r.cairn(&["repo", "gc"]).expect_ok();
    }
    let want = writer.join().unwrap();
    r.cairn(&["share", "commit", "g"]).expect_ok();
    r.cairn(&["repo", "gc"]).expect_ok();
    for (n, d) in &want {
        assert!(fs::read(m.dir.join(n)).unwrap() == *d, "{n} in the mount");
    }
    drop(m);
    r.cairn(&["repo", "gc"]).expect_ok();
    // Every retained version is complete, the head has everything.
    let log = json(&r, &["share", "log", "g"]);
    let root = log[0]["root"].as_str().unwrap();
    for (n, d) in &want {
        let out = r
            .command(&["cat", &format!("{root}/{n}")])
            .output()
            .unwrap();
        assert!(out.stdout == *d, "{n} in the head");
    }
    for v in &log {
        // Offline, a `get` fails on any missing block: each retained version is whole.
        let out = r.path(&format!("v{}", v["sequence"]));
        r.cairn(&[
            "get",
            v["root"].as_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .expect_ok();
    }
    r.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn bad_input_unknown_shares_missing_keys_read_only_mounts() {
    let r = TestRepo::new();
    let mnt = r.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    r.cairn(&["mount", "nosuchshare", mnt.to_str().unwrap()])
        .expect_err("nor is \"nosuchshare\" a share of this repo");
    let name = new_share(&r, "s");
    // Mounted twice writable: refused, naming the first mount.
    let m = r.mount("s", &mnt);
    let second = r.path("second");
    fs::create_dir_all(&second).unwrap();
    r.cairn(&["mount", "s", second.to_str().unwrap()])
        .expect_err("already mounted writable");
    // --read-only mounts the head beside it.
    r.cairn(&["mount", "s", second.to_str().unwrap(), "--read-only"])
        .expect_ok();
    let e = fs::write(fs::canonicalize(&second).unwrap().join("f"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    r.cairn(&["unmount", second.to_str().unwrap()]).expect_ok();
    fs::write(m.dir.join("kept.txt"), b"kept\n").unwrap();
    r.cairn(&["share", "commit", "s"]).expect_ok();
    drop(m);
    // A damaged head file: the newest valid stored version takes its place, the share mounts
    // writable on it, and the next version numbers on above every sequence used.
    let head = r.repo().join("shares").join(&name).join("head");
    let before = head_seq(&r, "s");
    let mut bytes = fs::read(&head).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&head, &bytes).unwrap();
    let m = r.mount("s", &mnt);
    assert_eq!(fs::read(m.dir.join("kept.txt")).unwrap(), b"kept\n");
    fs::write(m.dir.join("more.txt"), b"more").unwrap();
    let c = &json(&r, &["share", "commit", "s"])[0];
    assert!(c["sequence"].as_u64().unwrap() > before, "{c}");
    drop(m);
    // Without its key the share mounts read-only, and says why.
    let key = r.repo().join("shares").join(&name).join("key");
    fs::remove_file(&key).unwrap();
    let listed = &json(&r, &["share", "ls"])[0];
    assert_eq!(listed["writable"], false);
    let m = r.mount("s", &second);
    let e = fs::write(m.dir.join("f"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    r.cairn(&["share", "commit", "s"]).expect_err("read-only");
    drop(m);
}

#[test]
fn a_daemon_serves_writable_mounts_and_commits_them_when_it_stops() {
    let r = TestRepo::new();
    r.use_loopback_network();
    new_share(&r, "d");
    // Only explicit commits, fsyncs and the end of the mount commit.
    r.cairn(&["config", "set", "shares.commit_quiet_ms", "3600000"])
        .expect_ok();
    let mut d = r.daemon();
    let mnt = r.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let j = &json(&r, &["mount", "d", mnt.to_str().unwrap()])[0];
    assert_eq!(j["served_by"], "daemon", "{j}");
    assert_eq!(j["writable"], true, "{j}");
    let dir = fs::canonicalize(&mnt).unwrap();
    let guard = MountGuard(dir.clone());
    fs::write(dir.join("through-the-daemon.txt"), b"served\n").unwrap();
    r.cairn(&["share", "commit", "d"]).expect_ok();
    assert_eq!(head_seq(&r, "d"), 2);
    // Not committed yet when the daemon stops: its shutdown unmounts, which commits.
    fs::write(dir.join("last.txt"), b"last\n").unwrap();
    assert_eq!(d.stop(), Some(0));
    drop(guard);
    assert!(!cairn_tests::is_mounted(&dir));
    let root = json(&r, &["share", "log", "d"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        r.cairn(&["cat", &format!("{root}/last.txt")]).expect_ok(),
        "last"
    );
    r.cairn(&["repo", "verify"]).expect_ok();
}

#[test]
fn a_damaged_staging_journal_is_reported_and_nothing_is_discarded_silently() {
    let r = TestRepo::new();
    let name = new_share(&r, "j");
    let m = r.mount("j", &r.path("mnt"));
    fs::write(m.dir.join("f"), b"x").unwrap();
    r.cairn(&["share", "commit", "j"]).expect_ok();
    drop(m);
    let journal = r.repo().join("shares").join(&name).join("stage/journal");
    let mut bytes = fs::read(&journal).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&journal, &bytes).unwrap();
    let mnt = r.path("mnt2");
    fs::create_dir_all(&mnt).unwrap();
    let out = r
        .command(&["mount", "j", mnt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged") && err.contains("move it away"),
        "{err}"
    );
    assert!(!cairn_tests::is_mounted(&fs::canonicalize(&mnt).unwrap()));
    // The committed versions are untouched, and moving the journal away mounts again.
    assert_eq!(head_seq(&r, "j"), 2);
    fs::rename(&journal, journal.with_extension("bad")).unwrap();
    let m = r.mount("j", &mnt);
    assert_eq!(fs::read(m.dir.join("f")).unwrap(), b"x");
}

/// A repo on a small tmpfs, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn new(dir: PathBuf, mib: u64) -> Tmpfs {
        fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs (the tests run as root)");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_fails_writes_with_enospc_and_the_share_recovers() {
    let r = TestRepo::uninitialised();
    let disk = Tmpfs::new(r.path("disk"), 48);
    let repo = disk.dir.join("repo");
    let run = |args: &[&str]| {
        let mut full = vec!["--repo", repo.to_str().unwrap()];
        full.extend_from_slice(args);
        r.cairn(&full)
    };
    run(&["init", "--profile", "local"]).expect_ok();
    run(&["share", "new", "full"]).expect_ok();
    let mnt = r.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let mut child = r
        .command(&[
            "--repo",
            repo.to_str().unwrap(),
            "mount",
            "full",
            mnt.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = fs::canonicalize(&mnt).unwrap();
    wait_for(30, "the mount", || {
        cairn_tests::is_mounted(&dir).then_some(())
    });
    let guard = MountGuard(dir.clone());
    fs::write(dir.join("small.txt"), b"kept\n").unwrap();
    fs::File::open(dir.join("small.txt"))
        .unwrap()
        .sync_all()
        .unwrap();
    let committed = run(&["--json", "share", "log", "full"]).expect_ok();
    // Far more than fits.
    let big = fs::File::create(dir.join("big.bin")).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut err = None;
    for i in 0..200u64 {
        if let Err(e) = big
            .write_all_at(&chunk, i << 20)
            .and_then(|()| big.sync_all())
        {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("the disk never filled");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(big);
    // The mount is up, and what was committed is intact.
    assert_eq!(fs::read(dir.join("small.txt")).unwrap(), b"kept\n");
    assert!(run(&["--json", "share", "log", "full"])
        .expect_ok()
        .contains(committed.lines().next().unwrap()));
    // Space freed: writing and committing work again.
    fs::remove_file(dir.join("big.bin")).unwrap();
    let d = fs::File::open(&dir).unwrap();
    d.sync_all().unwrap();
    fs::write(dir.join("after.txt"), b"after\n").unwrap();
    let f = fs::File::open(dir.join("after.txt")).unwrap();
    f.sync_all().unwrap();
    run(&["share", "commit", "full"]).expect_ok();
    let head = run(&["--json", "share", "log", "full"]).expect_ok();
    let root: Value = serde_json::from_str(head.lines().next().unwrap()).unwrap();
    let root = root["root"].as_str().unwrap().to_string();
    assert_eq!(
        run(&["cat", &format!("{root}/after.txt")]).expect_ok(),
        "after"
    );
    drop((d, f));
    signal_and_wait(&mut child);
    drop(guard);
    run(&["repo", "verify"]).expect_ok();
}

fn signal_and_wait(child: &mut std::process::Child) {
    cairn_tests::signal(child.id(), libc::SIGINT);
    let _ = wait_for(30, "the mount process to end", || {
        child.try_wait().ok().flatten()
    });
}

#[test]
fn a_read_only_mount_follows_the_share_as_its_writable_mount_commits() {
    let r = TestRepo::new();
    r.use_loopback_network();
    new_share(&r, "f");
    // Both mounts served by one daemon.
    let _d = r.daemon();
    let wdir = r.path("w");
    fs::create_dir_all(&wdir).unwrap();
    r.cairn(&["mount", "f", wdir.to_str().unwrap()]).expect_ok();
    let w = MountGuard(fs::canonicalize(&wdir).unwrap());
    fs::create_dir_all(w.0.join("docs/old")).unwrap();
    fs::write(w.0.join("docs/keep.txt"), b"unchanged\n").unwrap();
    fs::write(w.0.join("docs/edit.txt"), b"first\n").unwrap();
    fs::write(w.0.join("docs/old/gone.txt"), b"bye\n").unwrap();
    r.cairn(&["share", "commit", "f"]).expect_ok();
    // The follower, on the head.
    let ro = r.path("ro");
    fs::create_dir_all(&ro).unwrap();
    r.cairn(&["mount", "f", ro.to_str().unwrap(), "--read-only"])
        .expect_ok();
    let ro = fs::canonicalize(&ro).unwrap();
    let _guard = MountGuard(ro.clone());
    assert_eq!(fs::read(ro.join("docs/edit.txt")).unwrap(), b"first\n");
    assert_eq!(fs::read(ro.join("docs/keep.txt")).unwrap(), b"unchanged\n");
    let keep_ino = fs::metadata(ro.join("docs/keep.txt")).unwrap().ino();
    assert!(ro.join("docs/old/gone.txt").exists());
    // A file open on the follower keeps reading the version it opened.
    let open = fs::File::open(ro.join("docs/edit.txt")).unwrap();

    fs::write(w.0.join("docs/edit.txt"), b"second, longer\n").unwrap();
    fs::remove_file(w.0.join("docs/old/gone.txt")).unwrap();
    fs::remove_dir(w.0.join("docs/old")).unwrap();
    fs::write(w.0.join("new.txt"), b"new\n").unwrap();
    let started = std::time::Instant::now();
    r.cairn(&["share", "commit", "f"]).expect_ok();
    wait_for(10, "the follower to show the new version", || {
        (fs::read(ro.join("docs/edit.txt")).ok()? == b"second, longer\n").then_some(())
    });
    eprintln!("follower showed the commit after {:?}", started.elapsed());
    assert_eq!(
        xattr(&ro, "user.cairn.version"),
        Some(head_seq(&r, "f").to_string()),
        "the version shown"
    );
    assert_eq!(fs::read(ro.join("new.txt")).unwrap(), b"new\n");
    assert!(!ro.join("docs/old").exists(), "a removed directory is gone");
    assert_eq!(
        fs::metadata(ro.join("docs/keep.txt")).unwrap().ino(),
        keep_ino,
        "an unchanged file keeps its inode"
    );
    assert_eq!(fs::read(ro.join("docs/keep.txt")).unwrap(), b"unchanged\n");
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &open, &mut old).unwrap();
    assert_eq!(old, "first\n", "the open file read the version it opened");
    drop(open);
    // A restore moves it too.
    r.cairn(&["unmount", w.0.to_str().unwrap()]).expect_ok();
    r.cairn(&["share", "restore", "f", "2"]).expect_ok();
    wait_for(10, "the follower to show the restored version", || {
        (fs::read(ro.join("docs/edit.txt")).ok()? == b"first\n").then_some(())
    });
    assert!(ro.join("docs/old/gone.txt").exists());
}

/// The entries of id block `cid`, read with `cairn block get`.
fn id_entries(r: &TestRepo, cid: &str) -> cairn_store::identity::IdEntries {
    let run = r.cairn(&["block", "get", cid, "-o", "-"]);
    assert!(run.ok(), "{}", run.text());
    let cid: cairn_store::Cid = cid.parse().unwrap();
    cairn_store::identity::decode_id_block(&run.stdout, cid)
        .unwrap_or_else(|e| panic!("{e}: {} bytes {:02x?}", run.stdout.len(), run.stdout))
}

/// The id of the node at `path` (`/`-separated) in the id tree `ids`.
fn id_of(r: &TestRepo, ids: &str, path: &str) -> u128 {
    let mut block = ids.to_string();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let entries = id_entries(r, &block);
        let (id, sub) = entries[*part];
        if i + 1 == parts.len() {
            return id;
        }
        block = sub.unwrap().to_string();
    }
    unreachable!()
}

#[test]
fn commits_through_a_mount_keep_each_nodes_identity_across_renames_and_gc() {
    let r = TestRepo::new();
    new_share(&r, "ids");
    let m = r.mount("ids", &r.path("mnt"));
    fs::create_dir(m.dir.join("a")).unwrap();
    fs::create_dir(m.dir.join("b")).unwrap();
    let f = fs::File::create(m.dir.join("a/report.txt")).unwrap();
    std::io::Write::write_all(&mut &f, b"draft").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let v = &json(&r, &["share", "log", "ids"])[0];
    let ids1 = v["ids"]
        .as_str()
        .expect("a commit has an id tree")
        .to_string();
    let report = id_of(&r, &ids1, "a/report.txt");
    let dir_a = id_of(&r, &ids1, "a");
    // Renamed into another directory and edited in the same commit; a new file beside it.
    fs::rename(m.dir.join("a/report.txt"), m.dir.join("b/final.txt")).unwrap();
    let f = fs::OpenOptions::new()
        .append(true)
        .open(m.dir.join("b/final.txt"))
        .unwrap();
    std::io::Write::write_all(&mut &f, b" and final").unwrap();
    fs::write(m.dir.join("b/new.txt"), b"new").unwrap();
    f.sync_all().unwrap();
    drop(f);
    r.cairn(&["share", "commit", "ids"]).expect_ok();
    let v = &json(&r, &["share", "log", "ids"])[0];
    let ids2 = v["ids"].as_str().unwrap().to_string();
    assert_ne!(ids1, ids2);
    assert_eq!(
        id_of(&r, &ids2, "b/final.txt"),
        report,
        "the rename kept its identity"
    );
    assert_eq!(id_of(&r, &ids2, "a"), dir_a);
    let new = id_of(&r, &ids2, "b/new.txt");
    assert!(new != report && new != dir_a);
    assert!(
        !id_entries(&r, &id_entries(&r, &ids2)["a"].1.unwrap().to_string())
            .contains_key("report.txt")
    );
    drop(m);
    // GC keeps every retained version's id tree; the repo verifies clean.
    r.cairn(&["repo", "gc"]).expect_ok();
    assert_eq!(id_of(&r, &ids1, "a/report.txt"), report);
    assert_eq!(id_of(&r, &ids2, "b/final.txt"), report);
    r.cairn(&["repo", "verify"]).expect_ok();
    // A remount takes identities from the head's id tree: one more rename keeps the id.
    let m = r.mount("ids", &r.path("mnt"));
    fs::rename(m.dir.join("b/final.txt"), m.dir.join("final.txt")).unwrap();
    r.cairn(&["share", "commit", "ids"]).expect_ok();
    drop(m);
    let v = &json(&r, &["share", "log", "ids"])[0];
    assert_eq!(id_of(&r, v["ids"].as_str().unwrap(), "final.txt"), report);
}
