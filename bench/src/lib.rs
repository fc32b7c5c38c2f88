//! Shared helpers for cairn's benchmark programs: running a command while measuring its wall
//! time and peak RSS, generating incompressible test data, and measuring directory sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What one measured run of a command cost.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Wall-clock time.
    pub wall: Duration,
    /// Peak resident set size of the child, in bytes.
    pub max_rss: u64,
}

/// Runs `cmd` to completion, returning its stdout, wall time and peak RSS (from `wait4`).
/// Panics with the command line and stderr if it fails: a benchmark of a failing command is void.
pub fn run(cmd: &mut Command) -> (String, Run) {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    // Read the pipes on threads so a chatty child cannot block.
    let mut child = child;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let mut status: libc::c_int = 0;
    // SAFETY-free alternative is not available for rusage of one child; see lints note in Cargo.toml.
    let usage = wait4(pid, &mut status);
    let wall = start.elapsed();
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    std::mem::forget(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{cmd:?} failed (status {status}): {stderr}");
    (
        stdout,
        Run {
            wall,
            max_rss: usage.ru_maxrss as u64 * 1024,
        },
    )
}

#[allow(unsafe_code)]
fn wait4(pid: libc::pid_t, status: &mut libc::c_int) -> libc::rusage {
    // SAFETY: rusage is plain old data, zero is a valid value; wait4 writes into both out-pointers.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid, status, 0, &mut usage);
        assert!(r == pid, "wait4 failed");
        usage
    }
}

/// Writes `len` bytes of incompressible pseudo-random data (xorshift) to `path`, unless a file of
/// that size already exists there.
pub fn make_file(path: &Path, len: u64, seed: u64) {
    if std::fs::metadata(path)
        .map(|m| m.len() == len)
        .unwrap_or(false)
    {
        return;
    }
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

/// Total size in bytes of the files below `dir` (allocated blocks, like `du`).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                use std::os::unix::fs::MetadataExt;
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// The release `cairn` binary next to this benchmark binary (built by `cargo build --release`).
pub fn cairn_bin() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let p = me.parent().unwrap().join("cairn");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --release -p cairn` first",
        p.display()
    );
    p
}

/// Megabytes (10^6) per second.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Drops the page cache for one file (best effort) so reads measure the same thing each time.
pub fn drop_cache(path: &Path) {
    let _ = Command::new("dd")
        .args([
            format!("if={}", path.display()).as_str(),
            "iflag=nocache",
            "count=0",
            "status=none",
        ])
        .status();
}

/// Reads `path` once with a small buffer so that it sits in the page cache (without growing this
/// process: children forked later would inherit a large peak RSS).
pub fn warm_cache(path: &Path) {
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    while std::io::Read::read(&mut f, &mut buf).unwrap() > 0 {}
}

/// A `cairn --repo REPO` command (not yet run).
pub fn cairn_cmd(repo: &Path) -> Command {
    let mut c = Command::new(cairn_bin());
    c.arg("--repo").arg(repo);
    c
}

/// `cairn init` at `repo` (replacing what was there), then listen on 127.0.0.1 only (random TCP
/// port) and dial nobody: benchmarks never leave this machine.
pub fn init_loopback_repo(repo: &Path) {
    let _ = std::fs::remove_dir_all(repo);
    run(cairn_cmd(repo).arg("init"));
    let path = repo.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cfg: toml::Table = text.parse().unwrap();
    let net = cfg
        .entry("network")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    net.insert(
        "listen".into(),
        toml::Value::Array(vec![toml::Value::String("/ip4/127.0.0.1/tcp/0".into())]),
    );
    net.insert("bootstrap".into(), toml::Value::Array(vec![]));
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
}

/// Sends `sig` to process `pid`.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A running `cairn daemon`, stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Child,
    repo: PathBuf,
    /// Its 127.0.0.1 TCP address with `/p2p/<peer id>`.
    pub addr: String,
    /// Its gateway, `http://IP:PORT`.
    pub gateway: Option<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "daemon on {} ignored SIGTERM, killing it",
            self.repo.display()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cairn daemon` on `repo` (its log beside the repo) and waits until it is ready.
pub fn start_daemon(repo: &Path) -> Daemon {
    let log = File::create(repo.with_extension("daemon.log")).unwrap();
    let mut child = cairn_cmd(repo)
        .args(["daemon", "--gateway", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keep draining stdout for the daemon's whole life so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let (mut addr, mut gateway) = (None, None);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(g) = line.strip_prefix("gateway on ") {
                gateway = Some(g.to_string());
            }
            if let Some(a) = line
                .split_whitespace()
                .find(|w| w.starts_with("/ip4/127.0.0.1/tcp/") && w.contains("/p2p/"))
            {
                addr.get_or_insert_with(|| a.to_string());
            }
            if line.contains("daemon is ready") {
                let _ = tx.send((addr.take(), gateway.take()));
            }
        }
    });
    let mut d = Daemon {
        child,
        repo: repo.to_path_buf(),
        addr: String::new(),
        gateway: None,
    };
    let (addr, gateway) = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("daemon on {} not ready within 60 s", repo.display()));
    d.addr =
        addr.unwrap_or_else(|| panic!("daemon on {} printed no 127.0.0.1 address", repo.display()));
    d.gateway = gateway;
    d
}

/// The arguments `[SIZE_MIB] [WORKDIR]` (1024 and `default_dir` when left out); WORKDIR is made.
pub fn size_and_workdir(default_dir: &str) -> (u64, PathBuf) {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args
        .next()
        .map(|s| s.parse().expect("SIZE_MIB"))
        .unwrap_or(1024);
    let work = PathBuf::from(args.next().unwrap_or_else(|| default_dir.into()));
    std::fs::create_dir_all(&work).unwrap();
    (mib, work)
}

/// Drops the page cache (needs root); whether it could.
pub fn drop_caches() -> bool {
    // sync(1) first so that dirty pages can be dropped too.
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// One pass over `path` with 1 MiB reads; the time taken.
pub fn seq_read(path: &Path) -> Duration {
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let took = start.elapsed();
    assert_eq!(
        total,
        f.metadata().unwrap().len(),
        "short read of {}",
        path.display()
    );
    took
}

pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir.as_str()))
}

pub fn unmount_if_mounted(dir: &Path) {
    if is_mounted(dir) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(dir)
            .status();
    }
}

/// A foreground `cairn mount` (no daemon), stopped with SIGINT and unmounted when dropped.
pub struct Mount {
    child: Child,
    dir: PathBuf,
}

impl Mount {
    pub fn start(repo: &Path, cid: &str, dir: &Path) -> Mount {
        let log = File::create(repo.with_extension("mount.log")).unwrap();
        let mut child = cairn_cmd(repo)
            .arg("mount")
            .arg(cid)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(dir) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("cairn mount exited early ({status}); see the .mount.log beside the repo");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mount did not appear within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount {
            child,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            eprintln!("cairn mount ignored SIGINT, killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        unmount_if_mounted(&self.dir);
    }
}
