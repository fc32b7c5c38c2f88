//! Gateway benchmark: one daemon on 127.0.0.1 holding a SIZE_MIB file (default 1024) and a
//! small one.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/gateway [SIZE_MIB]
//! [WORKDIR]`
//!
//! - Throughput: `curl -o /dev/null` of the big file through the gateway, beside `cat` of the
//!   same file through a FUSE mount of the same root served by the same daemon, and `cat` of
//!   the original file on disk (page cache warm for all three: the blocks are local).
//! - Time to first byte of the small file (`curl -w %{time_starttransfer}`, 200 requests,
//!   each a new connection): p50, p99.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use cairn_bench::{
    cairn_cmd, init_loopback_repo, make_file, mb_per_s, run, start_daemon, unmount_if_mounted,
    warm_cache,
};

fn main() {
    let (mib, work) = cairn_bench::size_and_workdir("/tmp/cairn-bench-gateway");
    let len = mib << 20;
    let src = work.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    let input = src.join("big.bin");
    make_file(&input, len, 0x6a7e);
    std::fs::write(src.join("small.txt"), "hello, gateway\n").unwrap();
    let repo = work.join("repo");
    init_loopback_repo(&repo);
    let (out, _) = run(cairn_cmd(&repo).args(["--json", "add", "-r"]).arg(&src));
    let root = field(out.lines().last().unwrap(), "cid");
    let d = start_daemon(&repo);
    let gw = d.gateway.clone().expect("the daemon's gateway address");
    let mnt = work.join("mnt");
    unmount_if_mounted(&mnt);
    std::fs::create_dir_all(&mnt).unwrap();
    run(cairn_cmd(&repo).arg("mount").arg(&root).arg(&mnt));

    let time = |cmd: &str| {
        let t = Instant::now();
        run(Command::new("sh").arg("-c").arg(cmd));
        t.elapsed()
    };
    let url = format!("{gw}/ipfs/{root}/big.bin");
    warm_cache(&input);
    // Once each to warm the store's files and the mount's caches, then measured.
    let curl_cmd = format!("curl -s -S -o /dev/null {url}");
    let cat_mount = format!("cat {} > /dev/null", mnt.join("big.bin").display());
    let cat_disk = format!("cat {} > /dev/null", input.display());
    for c in [&curl_cmd, &cat_mount] {
        time(c);
    }
    let median = |c: &str| {
        let mut v: Vec<Duration> = (0..3).map(|_| time(c)).collect();
        v.sort();
        v[1]
    };
    let (t_curl, t_mount, t_disk) = (median(&curl_cmd), median(&cat_mount), median(&cat_disk));
    println!("{mib} MiB file, blocks local, median of 3:");
    println!(
        "  curl through the gateway          {:>8.0} MB/s",
        mb_per_s(len, t_curl)
    );
    println!(
        "  cat through the FUSE mount        {:>8.0} MB/s  (gateway {:.2}x)",
        mb_per_s(len, t_mount),
        t_mount.as_secs_f64() / t_curl.as_secs_f64()
    );
    println!(
        "  cat of the original file on disk  {:>8.0} MB/s  (gateway {:.2}x)",
        mb_per_s(len, t_disk),
        t_disk.as_secs_f64() / t_curl.as_secs_f64()
    );

    let small = format!("{gw}/ipfs/{root}/small.txt");
    let mut ttfb: Vec<f64> = (0..200)
        .map(|_| {
            let (out, _) = run(Command::new("curl").args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{time_starttransfer}",
                &small,
            ]));
            out.trim().parse::<f64>().unwrap() * 1000.0
        })
        .collect();
    ttfb.sort_by(f64::total_cmp);
    println!(
        "time to first byte of a 15-byte file, 200 requests (new connection each): p50 {:.2} ms, p99 {:.2} ms",
        ttfb[100], ttfb[198]
    );
    unmount_if_mounted(&mnt);
    drop(d);
}

/// A string field of a one-line JSON object.
fn field(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    json[at..at + json[at..].find('"').unwrap()].to_string()
}
