//! Following benchmark: two daemons on 127.0.0.1. A writes in its writable share mount; B
//! follows the share by its id.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/follow [SIZE_MIB] [WORKDIR]`
//!
//! - Follow latency: 100 commits of a small change (write + `fsync` on A, which commits and
//!   publishes), each timed from A's `fsync` returning to B's read of the file returning the
//!   new bytes (B polls every 0.2 ms); p50, p99, max.
//! - A fresh follower reads a big file: A writes SIZE_MIB (default 1024) into the share; C, a
//!   third daemon, mounts the share id and `cat`s the file (fetched through Bitswap from A as
//!   it is read), beside `cairn cat <cid>` of the same file on a fourth, fresh daemon D.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_bench::{
    cairn_cmd, init_loopback_repo, make_file, mb_per_s, run, start_daemon, unmount_if_mounted,
    warm_cache,
};

fn main() {
    let (mib, work) = cairn_bench::size_and_workdir("/tmp/cairn-bench-follow");
    let len = mib << 20;
    let input = work.join(format!("input-{mib}MiB.bin"));
    make_file(&input, len, 0xf0110_u64);
    warm_cache(&input);
    let repos: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| work.join(n)).collect();
    for r in &repos {
        let _ = std::fs::remove_dir_all(r);
        init_loopback_repo(r);
    }
    let (ra, rb, rc, rd) = (&repos[0], &repos[1], &repos[2], &repos[3]);
    // Only fsyncs commit here: no quiet-period commit in the middle of a measurement.
    run(cairn_cmd(ra).args(["config", "set", "shares.commit_quiet_ms", "3600000"]));
    let (out, _) = run(cairn_cmd(ra).args(["--json", "share", "new", "bench"]));
    let name = field(&out, "name");
    let a = start_daemon(ra);
    let b = start_daemon(rb);
    run(cairn_cmd(rb).args(["swarm", "connect", &a.addr]));
    let ma = mount_via_daemon(ra, "bench", &work.join("ma"));
    std::fs::write(ma.join("note.txt"), "0\n").unwrap();
    sync(&ma.join("note.txt"));
    let mb = mount_via_daemon(rb, &name, &work.join("mb"));
    assert_eq!(std::fs::read_to_string(mb.join("note.txt")).unwrap(), "0\n");

    let mut delays = Vec::new();
    for i in 1..=100 {
        let text = format!("{i}\n");
        let f = std::fs::File::create(ma.join("note.txt")).unwrap();
        f.write_all_at(text.as_bytes(), 0).unwrap();
        f.sync_all().unwrap();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(mb.join("note.txt")).is_ok_and(|s| s == text) {
                break;
            }
            assert!(Instant::now() < deadline, "B never showed commit {i}");
            std::thread::sleep(Duration::from_micros(200));
        }
        delays.push(t.elapsed());
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("follow latency over 100 commits (A's fsync returns -> B reads the new bytes):");
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        ms(delays[49]),
        ms(delays[98]),
        ms(delays[99])
    );

    // A big file.
    let t = Instant::now();
    run(Command::new("dd")
        .arg(format!("if={}", input.display()))
        .arg(format!("of={}", ma.join("big.bin").display()))
        .args(["bs=1M", "conv=fsync", "status=none"]));
    println!(
        "\nA wrote {mib} MiB into the share and committed it in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (log, _) = run(cairn_cmd(ra).args(["--json", "share", "log", "bench"]));
    let root = field(log.lines().next().unwrap(), "root");
    let (big, _) = run(cairn_cmd(ra).args(["--json", "ls", &root]));
    let big_cid = big
        .lines()
        .find(|l| l.contains("\"big.bin\""))
        .map(|l| field(l, "cid"))
        .expect("big.bin listed");
    let c = start_daemon(rc);
    run(cairn_cmd(rc).args(["swarm", "connect", &a.addr]));
    let t = Instant::now();
    let mc = mount_via_daemon(rc, &name, &work.join("mc"));
    let mounted = t.elapsed();
    let t = Instant::now();
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("cat {} > /dev/null", mc.join("big.bin").display())));
    let cat_mount = t.elapsed();
    let d = start_daemon(rd);
    run(cairn_cmd(rd).args(["swarm", "connect", &a.addr]));
    let t = Instant::now();
    run(Command::new("sh").arg("-c").arg(format!(
        "{} --repo {} cat {big_cid} > /dev/null",
        cairn_bench::cairn_bin().display(),
        rd.display()
    )));
    let cat_cli = t.elapsed();
    println!("a fresh follower mounts the share id and reads the {mib} MiB file from A:");
    println!(
        "  mount of the share id                {:>8.1} ms",
        ms(mounted)
    );
    println!(
        "  cat through the following mount      {:>8.0} MB/s",
        mb_per_s(len, cat_mount)
    );
    println!(
        "  cairn cat <cid> on a fresh daemon    {:>8.0} MB/s  (mount {:.2}x)",
        mb_per_s(len, cat_cli),
        cat_cli.as_secs_f64() / cat_mount.as_secs_f64()
    );
    for m in [&mc, &mb, &ma] {
        unmount_if_mounted(m);
    }
    drop((a, b, c, d));
}

/// `cairn mount WHAT DIR` through the daemon of `repo`; the canonical mount point.
fn mount_via_daemon(repo: &Path, what: &str, dir: &Path) -> std::path::PathBuf {
    unmount_if_mounted(dir);
    std::fs::create_dir_all(dir).unwrap();
    run(cairn_cmd(repo).arg("mount").arg(what).arg(dir));
    std::fs::canonicalize(dir).unwrap()
}

fn sync(path: &Path) {
    std::fs::File::open(path).unwrap().sync_all().unwrap();
}

/// A string field of a one-line JSON object.
fn field(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    json[at..at + json[at..].find('"').unwrap()].to_string()
}
