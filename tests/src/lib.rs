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
        assert!(!self.ok(), "expected failure, got success; stdout: {}", self.text());
        assert!(self.code.is_some(), "killed by a signal: {}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "backtrace hint: {}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "stderr does not mention {needle:?}: {}",
            self.stderr
        );
        let lines = self.stderr.lines().filter(|l| l.starts_with("Error:")).count();
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
        TestRepo { dir: tempfile::tempdir().expect("tempdir") }
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
