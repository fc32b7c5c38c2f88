//! Cross-crate test helpers for cairn: locating and running the real `cairn` binary against
//! throw-away repositories, and deterministic test data.
//!
//! # Layout
//! Everything lives in this file: [`cairn_bin`], [`TestRepo`], [`Run`], [`pseudo_random`].
//!
//! ```no_run
//! let repo = cairn_tests::TestRepo::new();
//! let out = repo.cairn(&["repo", "stat"]);
//! assert!(out.ok());
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `cairn` binary of this build (`cargo build --workspace --bins` puts it next to the
/// test executables' parent directory).
pub fn cairn_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/cairn
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("cairn");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The outcome of one `cairn` run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: Vec<u8>,
    /// Everything on stderr, as text.
    pub stderr: String,
}

impl Run {
    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit 0 and returns stdout as trimmed text.
    pub fn expect_ok(&self) -> String {
        assert!(self.ok(), "cairn failed ({:?}): {}", self.code, self.stderr);
        self.text().trim().to_string()
    }

    /// Asserts a clean failure: non-zero exit, one `Error:` line containing `needle`, no panic.
    pub fn expect_err(&self, needle: &str) {
        assert!(
            !self.ok(),
            "expected failure, got success; stdout: {}",
            self.text()
        );
        assert!(self.code.is_some(), "killed by a signal: {}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "backtrace hint: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr does not mention {needle:?}: {}",
            self.stderr
        );
        // One `Error:` line, or one JSON error object under `--json`.
        let lines = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("Error:") || l.starts_with("{\"error\":"))
            .count();
        assert_eq!(lines, 1, "expected one Error: line: {}", self.stderr);
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A repository in a temporary directory (initialised by [`TestRepo::new`]).
pub struct TestRepo {
    /// The temporary directory holding the repo and scratch files.
    pub dir: tempfile::TempDir,
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRepo {
    /// A fresh, initialised repo.
    pub fn new() -> Self {
        let r = Self::uninitialised();
        r.cairn(&["init"]).expect_ok();
        r
    }

    /// A temporary directory whose repo path does not exist yet.
    pub fn uninitialised() -> Self {
        TestRepo {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The repo directory.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A scratch path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `cairn` command against this repo (not yet run).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cairn_bin());
        c.args(args)
            .env("CAIRN_REPO", self.repo())
            .env_remove("CAIRN_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs `cairn args...` to completion.
    pub fn cairn(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run cairn").into()
    }

    /// `cairn --json args…`, which must succeed, as one JSON value per stdout line.
    pub fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        self.cairn(&full)
            .expect_ok()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Runs `cairn args...` with `input` on stdin.
    pub fn cairn_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().expect("wait cairn").into()
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64*), different for each `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl TestRepo {
    /// Points the repo's node at loopback only: listen on 127.0.0.1 with ephemeral ports, no
    /// bootstrap peers (tests never reach beyond this machine).
    pub fn use_loopback_network(&self) {
        let path = self.repo().join("config.toml");
        let text = std::fs::read_to_string(&path).expect("read config");
        let mut cfg: toml::Table = text.parse().expect("parse config");
        let net = cfg
            .entry("network")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("network table");
        net.insert(
            "listen".into(),
            toml::Value::Array(vec![
                toml::Value::String("/ip4/127.0.0.1/tcp/0".into()),
                toml::Value::String("/ip4/127.0.0.1/udp/0/quic-v1".into()),
            ]),
        );
        net.insert("bootstrap".into(), toml::Value::Array(vec![]));
        std::fs::write(&path, toml::to_string(&cfg).expect("encode config")).expect("write config");
    }

    /// The daemon's Bitswap counters (`cairn --json stat bitswap`).
    pub fn bitswap_stats(&self) -> serde_json::Value {
        let text = self.cairn(&["--json", "stat", "bitswap"]).expect_ok();
        serde_json::from_str(&text).expect("stat bitswap JSON")
    }

    /// Starts `cairn daemon` on this repo and waits until it is ready.
    pub fn daemon(&self) -> Daemon {
        Daemon::start(self, &[])
    }

    /// Starts `cairn daemon <args>` (e.g. `--listen ADDR`) and waits until it is ready.
    pub fn daemon_with(&self, args: &[&str]) -> Daemon {
        Daemon::start(self, args)
    }
}

/// A running `cairn daemon`, stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Option<std::process::Child>,
    /// What the daemon printed before it was ready.
    pub banner: String,
    /// What it logged (its standard error) so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    fn start(repo: &TestRepo, args: &[&str]) -> Daemon {
        use std::io::BufRead;
        let mut argv = vec!["daemon"];
        argv.extend_from_slice(args);
        // Tests run daemons side by side: each gateway on a port of its own.
        if !args.iter().any(|a| a.starts_with("--gateway")) {
            argv.extend_from_slice(&["--gateway", "127.0.0.1:0"]);
        }
        let mut command = repo.command(&argv);
        // Debugging a test: `CAIRN_TEST_LOG=info cargo test ... -- --nocapture` shows what the
        // daemons log.
        if let Ok(filter) = std::env::var("CAIRN_TEST_LOG") {
            command.env("CAIRN_LOG", filter);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        let stdout = child.stdout.take().expect("daemon stdout");
        // Its log is kept for tests that look for what it said, and passed on to the test's
        // standard error as before.
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("daemon stderr");
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                let mut log = keep
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line == "daemon is ready" {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not become ready within 60 s");
            }
        };
        Daemon {
            child: Some(child),
            banner,
            log,
        }
    }

    /// What the daemon logged so far (warnings and errors unless `CAIRN_TEST_LOG` asks for
    /// more).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The daemon's TCP address with its peer id, from its banner.
    pub fn tcp_addr(&self) -> String {
        self.banner
            .lines()
            .filter_map(|l| l.strip_prefix("listening on "))
            .find(|a| a.contains("/tcp/"))
            .expect("a TCP listen address in the banner")
            .to_string()
    }

    /// The daemon's gateway URL (`http://IP:PORT`), from its banner.
    pub fn gateway_url(&self) -> String {
        self.banner
            .lines()
            .find_map(|l| l.strip_prefix("gateway on "))
            .expect("a gateway address in the banner")
            .to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), libc::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `sig` to process `pid`.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what` after `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl TestRepo {
    /// The daemon's API socket (docs/DESIGN.md, "The daemon and the CLI").
    pub fn api_socket(&self) -> PathBuf {
        self.repo().join("api").join("api.sock")
    }
}

impl Daemon {
    /// The daemon's thread count now (`Threads:` in /proc/<pid>/status).
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("daemon /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("Threads: line")
    }

    /// How many descriptors the daemon has open now (entries of /proc/<pid>/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("daemon /proc fd")
            .count()
    }
}

/// A raw API request frame (`R`, JSON `{argv, cwd, progress}`) running `argv` in the daemon, as
/// the CLI sends it; `argv` starts with the program name.
pub fn api_request(argv: &[&str]) -> Vec<u8> {
    let json = serde_json::json!({ "argv": argv, "cwd": "/", "progress": false }).to_string();
    let mut frame = vec![b'R'];
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(json.as_bytes());
    frame
}

/// Reads one API frame (`tag`, payload); `None` at the end of the stream (or on an error).
pub fn read_api_frame(r: &mut impl std::io::Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

/// Raises this process's soft descriptor limit to at least `min` (up to the hard limit), for
/// tests that open many sockets; children (e.g. a daemon) inherit it.
#[allow(unsafe_code)]
pub fn raise_fd_limit(min: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < min {
            lim.rlim_cur = min.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Blocks of a test DAG built in memory (hostile shapes included), imported into a repo with
/// the real `cairn dag import`.
#[derive(Default)]
pub struct Blocks {
    /// The blocks, in the order they were made.
    pub blocks: Vec<cairn_store::Block>,
}

/// A dag-pb link named `name` (cumulative size 1).
pub fn link(cid: cairn_store::Cid, name: &str) -> cairn_store::PbLink {
    cairn_store::PbLink {
        cid,
        name: Some(name.to_string()),
        tsize: Some(1),
    }
}

impl Blocks {
    fn add(&mut self, block: cairn_store::Block) -> cairn_store::Cid {
        let cid = *block.cid();
        self.blocks.push(block);
        cid
    }

    /// A raw block (CIDv1).
    pub fn raw(&mut self, data: &[u8]) -> cairn_store::Cid {
        use cairn_store::{Block, Bytes, HashAlg, RAW};
        self.add(Block::encode(
            1,
            RAW,
            HashAlg::Sha2_256,
            Bytes::copy_from_slice(data),
        ))
    }

    /// A dag-pb node with UnixFS data `fs` (CIDv1).
    pub fn pb(
        &mut self,
        fs: cairn_store::UnixFsData,
        links: Vec<cairn_store::PbLink>,
    ) -> cairn_store::Cid {
        use cairn_store::{Block, Bytes, HashAlg, PbNode, DAG_PB};
        let node = PbNode {
            links,
            data: Some(Bytes::from(fs.encode())),
        };
        self.add(Block::encode(
            1,
            DAG_PB,
            HashAlg::Sha2_256,
            Bytes::from(node.encode()),
        ))
    }

    /// A plain directory with `entries` in the given order.
    pub fn dir(&mut self, entries: &[(&str, cairn_store::Cid)]) -> cairn_store::Cid {
        let links = entries.iter().map(|(n, c)| link(*c, n)).collect();
        self.pb(
            cairn_store::UnixFsData::new(cairn_store::DataType::Directory),
            links,
        )
    }

    /// A HAMT shard node (murmur3) with the given fanout, bitfield and links, as written.
    pub fn shard(
        &mut self,
        fanout: u64,
        bitfield: &[u8],
        links: Vec<cairn_store::PbLink>,
    ) -> cairn_store::Cid {
        let mut fs = cairn_store::UnixFsData::new(cairn_store::DataType::HamtShard);
        fs.hash_type = Some(0x22);
        fs.fanout = Some(fanout);
        fs.data = (!bitfield.is_empty()).then(|| cairn_store::Bytes::copy_from_slice(bitfield));
        self.pb(fs, links)
    }

    /// A valid HAMT-sharded directory over `entries` (name, CID, size).
    pub fn sharded_dir(
        &mut self,
        entries: Vec<(String, cairn_store::Cid, u64)>,
    ) -> cairn_store::Cid {
        cairn_store::build_sharded_directory(entries, &mut |b| {
            self.blocks.push(b);
        })
    }

    /// Writes the DAG under `root` as a CAR (each block once) and imports it into `repo` with
    /// `cairn dag import`.
    pub fn import(&self, repo: &TestRepo, root: cairn_store::Cid) {
        use cairn_store::Blockstore;
        let store = cairn_net::MemoryStore::new();
        store.put_many(&self.blocks).expect("put blocks");
        let path = repo.path(&format!("{root}.car"));
        let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create CAR"));
        cairn_store::export_car(&store, &[root], file).expect("write CAR");
        repo.cairn(&["dag", "import", path.to_str().expect("utf-8 path")])
            .expect_ok();
        std::fs::remove_file(&path).expect("remove CAR");
    }
}

/// Runs `command` to completion and returns its outcome with its peak resident set size in
/// KiB (from `/usr/bin/time`, or, where that is missing, the last `VmHWM` read from /proc
/// while it ran).
pub fn run_measured(mut command: Command) -> (Run, u64) {
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let program = command.get_program().to_owned();
        let mut timed = Command::new(time);
        timed.arg("-f").arg("peak-rss-kib %M").arg(program);
        timed.args(command.get_args());
        for (k, v) in command.get_envs() {
            match v {
                Some(v) => timed.env(k, v),
                None => timed.env_remove(k),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            timed.current_dir(dir);
        }
        timed.stdin(Stdio::null());
        let mut run: Run = timed.output().expect("run /usr/bin/time").into();
        let mut peak = 0;
        let mut rest = Vec::new();
        for line in run.stderr.lines() {
            match line.strip_prefix("peak-rss-kib ") {
                Some(kb) => peak = kb.trim().parse().expect("peak RSS"),
                None => rest.push(line),
            }
        }
        run.stderr = rest.join("\n");
        // /usr/bin/time reports a signal as "Command terminated by signal N" and exit 128+N.
        if run.stderr.contains("Command terminated by signal") {
            run.code = None;
        }
        return (run, peak);
    }
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let mut peak = 0;
    loop {
        peak = peak.max(vm_kib(pid, "VmHWM:").unwrap_or(0));
        if let Ok(out) = rx.recv_timeout(std::time::Duration::from_millis(10)) {
            return (out.expect("wait").into(), peak);
        }
    }
}

/// A `Vm*` figure of process `pid` in KiB (e.g. `VmHWM:`, `VmRSS:`).
pub fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl TestRepo {
    /// Runs `cairn args...` and returns the outcome with its peak RSS in KiB.
    pub fn cairn_measured(&self, args: &[&str]) -> (Run, u64) {
        run_measured(self.command(args))
    }

    /// Mounts `cid` at `dir` with a foreground `cairn mount` (no daemon) and waits for it.
    pub fn mount(&self, cid: &str, dir: &Path) -> Mount {
        self.mount_with(cid, dir, &[], &[])
    }

    /// [`TestRepo::mount`] with more arguments and environment variables.
    pub fn mount_with(&self, cid: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Mount {
        std::fs::create_dir_all(dir).expect("create mount point");
        let mut argv = vec!["mount", cid, dir.to_str().expect("utf-8 path")];
        argv.extend_from_slice(args);
        let mut command = self.command(&argv);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .env("CAIRN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn mount");
        let mut m = Mount {
            child: Some(child),
            dir: std::fs::canonicalize(dir).expect("canonical mount point"),
            log: None,
        };
        let stderr = m.child.as_mut().and_then(|c| c.stderr.take());
        m.log = stderr.map(|mut s| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut text);
                text
            })
        });
        let dir = m.dir.clone();
        let exited = wait_for(30, "the mount", || {
            if let Some(Ok(Some(status))) = m.child.as_mut().map(|c| c.try_wait()) {
                return Some(Some(status));
            }
            is_mounted(&dir).then_some(None)
        });
        if let Some(status) = exited {
            let log = m.log.take().and_then(|h| h.join().ok()).unwrap_or_default();
            panic!("cairn mount exited early: {status}: {log}");
        }
        m
    }
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir.as_str()))
}

/// Unmounts (lazily) a mount a test made through a daemon or a serving process, also when the
/// test fails.
pub struct MountGuard(pub PathBuf);

impl TestRepo {
    /// Mounts `what` (a share, a CID) through the daemon at `<repo dir>/<name>`; says whether
    /// the mount is writable.
    pub fn mount_share(&self, what: &str, name: &str) -> (MountGuard, bool) {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let j = self.json(&["mount", what, dir.to_str().unwrap()]);
        let writable = j[0]["writable"].as_bool().unwrap_or(false);
        (MountGuard(std::fs::canonicalize(&dir).unwrap()), writable)
    }
}

impl TestRepo {
    /// Whether `share members` here lists a writer labelled `label`.
    pub fn lists_member(&self, share: &str, label: &str) -> bool {
        self.json(&["share", "members", share])
            .iter()
            .any(|m| m["label"] == label)
    }
}

/// Writes `text` to `file` and fsyncs it (on a writable share mount the fsync commits).
pub fn write_synced(file: &Path, text: &str) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(file).unwrap();
    f.write_all_at(text.as_bytes(), 0).unwrap();
    f.sync_all().unwrap();
}

/// Writes `text` to `file` and asks for an fsync whose result does not matter (a mount that
/// cannot commit keeps the change staged).
pub fn write_fsync_unchecked(file: &Path, text: &str) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(file).unwrap();
    f.write_all_at(text.as_bytes(), 0).unwrap();
    let _ = f.sync_all();
}

/// Whether each `(name, text)` is a file below `dir` with that content.
pub fn shows(dir: &Path, files: &[(&str, &str)]) -> bool {
    files
        .iter()
        .all(|(name, text)| std::fs::read_to_string(dir.join(name)).is_ok_and(|t| t == *text))
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.0)
                .status();
        }
    }
}

/// A foreground `cairn mount`; dropping it stops the process and unmounts.
pub struct Mount {
    child: Option<std::process::Child>,
    /// The mount point (canonical).
    pub dir: PathBuf,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Mount {
    /// The process serving the mount.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits up to `secs` for the process to end by itself (e.g. after `cairn unmount`) and
    /// returns its exit code and what it logged; `None` if it is still running.
    pub fn wait_exit(&mut self, secs: u64) -> Option<(Option<i32>, String)> {
        let child = self.child.as_mut()?;
        let status = wait_for(secs, "the mount process to exit", || {
            child.try_wait().ok().flatten()
        });
        self.child = None;
        let log = self
            .log
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Some((status.code(), log))
    }

    /// Kills the process serving the mount with SIGKILL, as a crash would, removes the dead
    /// mount and returns what the process logged.
    pub fn kill(self) -> String {
        if let Some(c) = &self.child {
            signal(c.id(), libc::SIGKILL);
        }
        self.stop()
    }

    /// Stops the mount (SIGINT, as Ctrl-C) and returns what the process logged.
    pub fn stop(mut self) -> String {
        self.shutdown();
        self.log
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGINT);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.dir)
                .status();
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One entry of a tree as a local filesystem shows it: what the differential tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry {
    /// A directory with its permission bits.
    Dir { mode: u32 },
    /// A file: permission bits, modification time (seconds) and content.
    File {
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
    },
    /// A symlink and its target.
    Symlink { target: PathBuf },
}

/// Every entry below `root` (relative paths, sorted), without following symlinks.
pub fn read_tree(root: &Path) -> std::collections::BTreeMap<PathBuf, TreeEntry> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("below root").to_path_buf();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.permissions().mode() & 0o7777;
            let e = if meta.file_type().is_symlink() {
                TreeEntry::Symlink {
                    target: std::fs::read_link(&path).expect("readlink"),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                TreeEntry::Dir { mode }
            } else {
                TreeEntry::File {
                    mode,
                    mtime: meta.mtime(),
                    data: std::fs::read(&path).expect("read file"),
                }
            };
            out.insert(rel, e);
        }
    }
    out
}
