//! Three writers of one share on three real daemons, each on its own writable FUSE mount, doing
//! random operations (create, write, append, truncate, rename, delete, mkdir, rmdir, and writes
//! to one file they all share) with random pauses, while one writer at a time is cut off (its
//! daemon stopped, its mount a foreground `cairn mount` with no network) and comes back. At the
//! end every mount shows the same tree, and a model of what each writer did checks that no
//! fsynced write was lost.
//!
//! Replay a run with `CAIRN_SEED=<seed>` (each run prints its seed); `CAIRN_ROUNDS` sets how
//! many partition rounds it does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_tests::{wait_for, write_synced, Daemon, Mount, MountGuard, TestRepo};

/// splitmix64: small, seedable, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Where a writer's mount is served.
enum Served {
    Daemon(Daemon, MountGuard),
    Offline(Mount),
    Down,
}

struct Writer {
    repo: TestRepo,
    /// What `cairn mount` is given: the label on the owner, the share id on members.
    what: String,
    dir: PathBuf,
    served: Served,
    /// Its own part of the folder, `w<i>/…`, as it wrote it: path → content (`None`: a
    /// directory). Nobody else touches it, so the merged tree must hold exactly this.
    own: BTreeMap<String, Option<String>>,
}

fn fsync_dir(dir: &Path) {
    fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// Paths and file contents below `dir` (directories as `None`); `None` if the tree changed
/// while it was read (a mount moving onto a merged version).
fn contents(dir: &Path) -> Option<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ok()? {
            let path = entry.ok()?.path();
            let rel = path.strip_prefix(dir).ok()?.display().to_string();
            if fs::symlink_metadata(&path).ok()?.is_dir() {
                stack.push(path);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(fs::read_to_string(&path).ok()?));
            }
        }
    }
    Some(out)
}

impl Writer {
    fn mount_daemon(&mut self, peers: &[String]) {
        let d = self.repo.daemon();
        for p in peers {
            self.repo.cairn(&["swarm", "connect", p]).expect_ok();
        }
        let j = self
            .repo
            .json(&["mount", &self.what, self.dir.to_str().unwrap()]);
        assert_eq!(j[0]["writable"], true, "{j:?}");
        self.served = Served::Daemon(d, MountGuard(self.dir.clone()));
    }

    fn addr(&self) -> Option<String> {
        match &self.served {
            Served::Daemon(d, _) => Some(d.tcp_addr()),
            _ => None,
        }
    }

    /// Cuts the writer off: its daemon stops; a foreground mount without network serves it.
    fn go_offline(&mut self) {
        if let Served::Daemon(mut d, m) = std::mem::replace(&mut self.served, Served::Down) {
            self.repo
                .cairn(&["unmount", m.0.to_str().unwrap()])
                .expect_ok();
            assert_eq!(d.stop(), Some(0));
        }
        self.served = Served::Offline(self.repo.mount_with(&self.what, &self.dir, &[], &[]));
    }

    fn come_back(&mut self, peers: &[String]) {
        if let Served::Offline(m) = std::mem::replace(&mut self.served, Served::Down) {
            let log = m.stop();
            assert!(!log.contains("ERROR"), "{log}");
        }
        self.mount_daemon(peers);
    }

    fn stop(&mut self) {
        match std::mem::replace(&mut self.served, Served::Down) {
            Served::Daemon(mut d, m) => {
                self.repo
                    .cairn(&["unmount", m.0.to_str().unwrap()])
                    .expect_ok();
                assert_eq!(d.stop(), Some(0));
            }
            Served::Offline(m) => drop(m.stop()),
            Served::Down => {}
        }
        self.repo.cairn(&["repo", "verify"]).expect_ok();
    }

    fn files(&self) -> Vec<String> {
        self.own
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn dirs(&self) -> Vec<String> {
        self.own
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// One random operation in its own part of the folder (or on the shared file), fsynced;
    /// returns the shared file's new content when it wrote that.
    fn act(&mut self, i: usize, step: usize, rng: &mut Rng) -> Option<String> {
        let me = format!("w{i}");
        let text = format!("writer {i} step {step}\n");
        let files = self.files();
        let dirs = self.dirs();
        let op = rng.below(9);
        let before = self.own.clone();
        let r = self.act_op(i, step, rng, op, files, dirs, &me, text);
        // Shown when the test fails: what each writer did, to read beside the daemons' logs.
        let gone: Vec<_> = before
            .keys()
            .filter(|k| !self.own.contains_key(*k))
            .collect();
        let changed: Vec<_> = self
            .own
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        eprintln!("step {step}: writer {i} op {op}: gone {gone:?}, new or changed {changed:?}");
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn act_op(
        &mut self,
        i: usize,
        step: usize,
        rng: &mut Rng,
        op: usize,
        files: Vec<String>,
        dirs: Vec<String>,
        me: &str,
        text: String,
    ) -> Option<String> {
        let me = me.to_string();
        let p = |rel: &str| self.dir.join(rel);
        match op {
            1 if !files.is_empty() => {
                // Overwrite.
                let f = &files[rng.below(files.len())];
                write_synced(&p(f), &text);
                self.own.insert(f.clone(), Some(text));
            }
            2 if !files.is_empty() => {
                // Append.
                let f = files[rng.below(files.len())].clone();
                let file = fs::OpenOptions::new().append(true).open(p(&f)).unwrap();
                std::io::Write::write_all(&mut &file, text.as_bytes()).unwrap();
                file.sync_all().unwrap();
                self.own
                    .get_mut(&f)
                    .unwrap()
                    .as_mut()
                    .unwrap()
                    .push_str(&text);
            }
            3 if !files.is_empty() => {
                // Truncate.
                let f = files[rng.below(files.len())].clone();
                let old = self.own[&f].clone().unwrap();
                let len = rng.below(old.len() + 1);
                let file = fs::OpenOptions::new().write(true).open(p(&f)).unwrap();
                file.set_len(len as u64).unwrap();
                file.sync_all().unwrap();
                self.own.insert(f, Some(old[..len].to_string()));
            }
            4 if !files.is_empty() => {
                // Rename, maybe into another of its directories.
                let f = files[rng.below(files.len())].clone();
                let to_dir = &dirs[rng.below(dirs.len())];
                let to = format!("{to_dir}/r{step}.txt");
                fs::rename(p(&f), p(&to)).unwrap();
                fsync_dir(&p(to_dir));
                let v = self.own.remove(&f).unwrap();
                self.own.insert(to, v);
            }
            5 if !files.is_empty() => {
                // Delete.
                let f = files[rng.below(files.len())].clone();
                fs::remove_file(p(&f)).unwrap();
                fsync_dir(&p(&me));
                self.own.remove(&f);
            }
            6 if dirs.len() < 4 => {
                let d = format!("{}/d{step}", dirs[rng.below(dirs.len())]);
                fs::create_dir(p(&d)).unwrap();
                fsync_dir(&p(&me));
                self.own.insert(d, None);
            }
            7 => {
                // Remove an empty directory of its own (not its top one), if it has one.
                let empty: Vec<&String> = dirs
                    .iter()
                    .filter(|d| {
                        **d != me && !self.own.keys().any(|k| k.starts_with(&format!("{d}/")))
                    })
                    .collect();
                if let Some(d) = empty.first().map(|d| (*d).clone()) {
                    fs::remove_dir(p(&d)).unwrap();
                    fsync_dir(&p(&me));
                    self.own.remove(&d);
                }
            }
            8 if std::env::var_os("CAIRN_NO_SHARED").is_none() => {
                let shared = format!("shared by writer {i} at step {step}\n");
                write_synced(&p("shared.txt"), &shared);
                return Some(shared);
            }
            _ => {
                // Create.
                let d = &dirs[rng.below(dirs.len())];
                let f = format!("{d}/f{step}.txt");
                write_synced(&p(&f), &text);
                self.own.insert(f, Some(text));
            }
        }
        None
    }
}

/// The tree all three mounts show once they show the same (at most 120 s); otherwise the
/// test fails naming what differs.
fn converged(dirs: &[PathBuf], seed: u64, round: usize) -> BTreeMap<String, Option<String>> {
    let start = std::time::Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        if let Some(t) = dirs.iter().map(|d| contents(d)).collect::<Option<Vec<_>>>() {
            if t[0] == t[1] && t[1] == t[2] {
                return t[0].clone();
            }
            last = t;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut differ = Vec::new();
    if let [a, b, c] = &last[..] {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).chain(c.keys()).collect();
        for k in keys {
            let v = [a.get(k), b.get(k), c.get(k)];
            if v[0] != v[1] || v[1] != v[2] {
                differ.push(format!("{k}: {v:?}"));
            }
        }
    }
    panic!("seed {seed}, round {round}: the mounts did not converge in 120 s; they differ in {differ:#?}");
}

#[test]
fn three_writers_with_random_edits_and_partitions_converge_without_losing_a_write() {
    let seed: u64 = std::env::var("CAIRN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: usize = std::env::var("CAIRN_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    eprintln!("seed {seed}: replay with CAIRN_SEED={seed}");
    let mut rng = Rng(seed);

    let repos = [TestRepo::new(), TestRepo::new(), TestRepo::new()];
    for r in &repos {
        r.use_loopback_network();
    }
    let src = repos[0].path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("shared.txt"), "at the start\n").unwrap();
    let share = &repos[0].json(&["share", "new", "team", "--from", src.to_str().unwrap()])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let mut writers: Vec<Writer> = repos
        .into_iter()
        .enumerate()
        .map(|(i, repo)| {
            let dir = repo.path(&format!("w{i}-mnt"));
            fs::create_dir_all(&dir).unwrap();
            let dir = fs::canonicalize(&dir).unwrap();
            Writer {
                what: if i == 0 { "team".into() } else { name.clone() },
                repo,
                dir,
                served: Served::Down,
                own: BTreeMap::new(),
            }
        })
        .collect();
    writers[0].mount_daemon(&[]);
    let owner = writers[0].addr().unwrap();
    for i in 1..3 {
        // The member's daemon first (its key is its peer id), then the grant.
        let d = writers[i].repo.daemon();
        writers[i]
            .repo
            .cairn(&["swarm", "connect", &owner])
            .expect_ok();
        let id = writers[i].repo.json(&["id"])[0]["peer_id"]
            .as_str()
            .unwrap()
            .to_string();
        writers[0]
            .repo
            .cairn(&["share", "grant", "team", &id, "--label", &format!("w{i}")])
            .expect_ok();
        wait_for(30, "the share at a member", || {
            writers[i]
                .repo
                .cairn(&["name", "resolve", &name])
                .ok()
                .then_some(())
        });
        let j = writers[i]
            .repo
            .json(&["mount", &name, writers[i].dir.to_str().unwrap()]);
        assert_eq!(j[0]["writable"], true, "{j:?}");
        writers[i].served = Served::Daemon(d, MountGuard(writers[i].dir.clone()));
    }
    let addrs = |ws: &[Writer], but: usize| -> Vec<String> {
        ws.iter()
            .enumerate()
            .filter(|(j, _)| *j != but)
            .filter_map(|(_, w)| w.addr())
            .collect()
    };
    let peers = addrs(&writers, 2);
    for p in peers.iter().skip(1) {
        writers[2].repo.cairn(&["swarm", "connect", p]).expect_ok();
    }
    // Each writer makes its own directory.
    for (i, w) in writers.iter_mut().enumerate() {
        let d = format!("w{i}");
        wait_for(30, "the share on the mount", || {
            w.dir.join("shared.txt").exists().then_some(())
        });
        fs::create_dir(w.dir.join(&d)).unwrap();
        write_synced(&w.dir.join(format!("{d}/first.txt")), "first\n");
        w.own.insert(d.clone(), None);
        w.own
            .insert(format!("{d}/first.txt"), Some("first\n".into()));
    }

    let mut shared_writes: Vec<String> = vec!["at the start\n".into()];
    let mut step = 0;
    for round in 0..rounds {
        let cut = rng.below(3);
        eprintln!("round {round}: writer {cut} cut off");
        writers[cut].go_offline();
        for _ in 0..20 {
            step += 1;
            let i = rng.below(3);
            if let Some(s) = writers[i].act(i, step, &mut rng) {
                eprintln!("step {step}: writer {i} wrote shared.txt");
                shared_writes.push(s);
            }
            std::thread::sleep(Duration::from_millis(rng.below(250) as u64));
        }
        let peers = addrs(&writers, cut);
        writers[cut].come_back(&peers);
        let dirs: Vec<PathBuf> = writers.iter().map(|w| w.dir.clone()).collect();
        let tree = converged(&dirs, seed, round);
        // No lost write: each writer's own part is exactly what it left there.
        for (i, w) in writers.iter().enumerate() {
            let prefix = format!("w{i}");
            let got: BTreeMap<String, Option<String>> = tree
                .iter()
                .filter(|(k, _)| **k == prefix || k.starts_with(&format!("{prefix}/")))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(got, w.own, "seed {seed}, round {round}: writer {i}'s files");
        }
        // The shared file and its conflict copies hold only what writers wrote there, and the
        // last write (nothing came after it) is among them.
        let shared: BTreeSet<&String> = tree
            .iter()
            .filter(|(k, _)| !k.contains('/') && k.starts_with("shared"))
            .filter_map(|(_, v)| v.as_ref())
            .collect();
        assert!(
            shared.iter().all(|s| shared_writes.contains(s)),
            "seed {seed}: {shared:?}"
        );
        assert!(
            shared.contains(shared_writes.last().unwrap()),
            "seed {seed}, round {round}: the last write to shared.txt is lost: {tree:?}"
        );
        assert!(
            tree.keys()
                .all(|k| k.starts_with("shared") || k.starts_with('w')),
            "seed {seed}: {tree:?}"
        );
    }
    for w in &mut writers {
        w.stop();
    }
}
