//! Crash safety with a real `kill -9`: a `cairn add` or `cairn repo gc` killed at various
//! moments leaves a repo that opens, verifies, and keeps every pin.
//!
//! Uses the `cairn` binary the suite built (see `cairn_tests::cairn_bin`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn cairn_bin() -> PathBuf {
    // The binary the suite built (`cargo build --workspace --bins`), never a build of our own
    // mid-suite.
    cairn_tests::cairn_bin()
}

struct Cli {
    bin: PathBuf,
    repo: PathBuf,
}

impl Cli {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--repo").arg(&self.repo).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out: Output = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `args`, kills it with SIGKILL after `after`, returns whether it had finished.
    fn kill_after(&self, args: &[&str], after: Duration) -> bool {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after); // Timing the kill, not synchronising: any moment is valid.
        let finished = child.try_wait().unwrap().is_some_and(|s| s.success());
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        finished
    }

    /// The repo opens, every block verifies, and every pin is complete and valid.
    fn check(&self, must_be_pinned: &[String]) {
        self.ok(&["repo", "verify"]);
        self.ok(&["pin", "verify"]);
        let pins = self.ok(&["pin", "ls", "--type", "recursive"]);
        for root in must_be_pinned {
            assert!(
                pins.contains(root.as_str()),
                "pin {root} lost; pins:\n{pins}"
            );
        }
    }
}

fn noise_file(path: &Path, seed: u64, len: usize) {
    std::fs::write(path, cairn_tests::pseudo_random(len, seed)).unwrap();
}

#[test]
fn sigkill_during_add_pin_and_gc_keeps_the_repo_consistent() {
    let bin = cairn_bin();
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        bin,
        repo: dir.path().join("repo"),
    };
    cli.ok(&["init"]);

    let first = dir.path().join("first");
    noise_file(&first, 1, 8 << 20);
    let mut pinned = vec![cli
        .ok(&["add", "-Q", first.to_str().unwrap()])
        .trim()
        .to_string()];
    cli.check(&pinned);

    let delays = [5u64, 20, 60, 120, 250, 400, 700, 1000];
    for (i, ms) in delays.iter().enumerate() {
        let f = dir.path().join(format!("f{i}"));
        noise_file(&f, 100 + i as u64, 24 << 20);
        let path = f.to_str().unwrap();
        // Killed add (pinning by default).
        if cli.kill_after(&["add", "-Q", path], Duration::from_millis(*ms)) {
            // It finished before the kill: its pin must be there. Re-adding is idempotent.
            pinned.push(
                cli.ok(&["add", "-Q", "--only-hash", path])
                    .trim()
                    .to_string(),
            );
        }
        cli.check(&pinned);
        // Unpinned garbage, then a killed GC.
        cli.ok(&["add", "-Q", "--pin=false", path]);
        cli.kill_after(&["repo", "gc"], Duration::from_millis(*ms / 4));
        cli.check(&pinned);
    }

    // Finally a complete GC keeps exactly the pinned DAGs, which still read back.
    cli.ok(&["repo", "gc"]);
    cli.check(&pinned);
    let back = cli.cmd(&["cat", &pinned[0]]).output().unwrap();
    assert!(back.status.success());
    assert_eq!(back.stdout, std::fs::read(&first).unwrap());
}
