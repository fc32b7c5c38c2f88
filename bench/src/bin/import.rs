//! Import benchmark: `cairn add` of a 1 GiB file beside `openssl dgst -sha256` of the same file.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/import [SIZE_MIB] [WORKDIR]`
//! Prints throughput of both, the ratio, cairn's peak RSS and the repo's size on disk per byte added.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use cairn_bench::{cairn_bin, disk_usage, make_file, mb_per_s, run};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args
        .next()
        .map(|s| s.parse().expect("SIZE_MIB"))
        .unwrap_or(1024);
    let work = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/cairn-bench".into()));
    std::fs::create_dir_all(&work).unwrap();
    let len = mib << 20;
    let file = work.join(format!("input-{mib}MiB.bin"));
    make_file(&file, len, 0x9e37_79b9_7f4a_7c15);
    let cairn = cairn_bin();

    // Warm the page cache so both measure hashing and storing, not the disk.
    run(Command::new("cat")
        .arg(&file)
        .stdout(std::process::Stdio::null()));

    let (_, ssl) = run(Command::new("openssl").args(["dgst", "-sha256"]).arg(&file));
    let repo = work.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    run(Command::new(&cairn).arg("--repo").arg(&repo).arg("init"));
    let (out, add) = run(Command::new(&cairn)
        .arg("--repo")
        .arg(&repo)
        .args(["add", "-Q"])
        .arg(&file));
    let (_, only_hash) = run(Command::new(&cairn)
        .arg("--repo")
        .arg(&repo)
        .args(["add", "-Q", "--only-hash"])
        .arg(&file));
    let disk = disk_usage(&repo.join("blocks"));

    let ssl_mb = mb_per_s(len, ssl.wall);
    let add_mb = mb_per_s(len, add.wall);
    let hash_mb = mb_per_s(len, only_hash.wall);
    println!("input: {mib} MiB incompressible, root {}", out.trim());
    println!("openssl dgst -sha256        {ssl_mb:8.0} MB/s  (reference)");
    println!(
        "cairn add (store in sled)   {add_mb:8.0} MB/s  ratio {:.2}  peak RSS {:.0} MB",
        add_mb / ssl_mb,
        add.max_rss as f64 / 1e6
    );
    println!(
        "cairn add --only-hash       {hash_mb:8.0} MB/s  ratio {:.2}  peak RSS {:.0} MB",
        hash_mb / ssl_mb,
        only_hash.max_rss as f64 / 1e6
    );
    println!(
        "repo blocks on disk / bytes added: {:.3} ({} bytes for {} bytes)",
        disk as f64 / len as f64,
        disk,
        len
    );
}
