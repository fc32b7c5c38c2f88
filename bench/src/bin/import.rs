//! Import benchmark: `cairn add` of a 1 GiB file beside `openssl dgst -sha256` of the same file.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/import [SIZE_MIB] [WORKDIR]`
//! Prints throughput of both, the ratio, cairn's peak RSS and the repo's size on disk per byte added.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use cairn_bench::{cairn_bin, disk_usage, make_file, mb_per_s, run, warm_cache};

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
    warm_cache(&file);

    let (_, ssl) = run(Command::new("openssl").args(["dgst", "-sha256"]).arg(&file));
    let ssl_mb = mb_per_s(len, ssl.wall);
    println!("input: {mib} MiB incompressible at {}", file.display());
    println!("openssl dgst -sha256                  {ssl_mb:8.0} MB/s  (reference)");

    let (out, only_hash) = run(Command::new(&cairn)
        .args(["add", "-Q", "--only-hash"])
        .arg(&file));
    let hash_mb = mb_per_s(len, only_hash.wall);
    println!(
        "cairn add --only-hash                 {hash_mb:8.0} MB/s  ratio {:.2}  peak RSS {:.0} MB  root {}",
        hash_mb / ssl_mb,
        only_hash.max_rss as f64 / 1e6,
        out.trim()
    );

    // The repo on the work disk, and on tmpfs (what the software does without the disk's limit).
    let mut repos = vec![("disk", work.join("repo"))];
    if std::path::Path::new("/dev/shm").is_dir() {
        repos.push((
            "tmpfs",
            std::path::PathBuf::from("/dev/shm/cairn-bench-repo"),
        ));
    }
    for (label, repo) in repos {
        let _ = std::fs::remove_dir_all(&repo);
        run(Command::new(&cairn).arg("--repo").arg(&repo).arg("init"));
        let (_, add) = run(Command::new(&cairn)
            .arg("--repo")
            .arg(&repo)
            .args(["add", "-Q"])
            .arg(&file));
        let add_mb = mb_per_s(len, add.wall);
        let disk = disk_usage(&repo.join("blocks"));
        println!(
            "cairn add, repo on {label:5}           {add_mb:8.0} MB/s  ratio {:.2}  peak RSS {:.0} MB  disk/bytes {:.3}",
            add_mb / ssl_mb,
            add.max_rss as f64 / 1e6,
            disk as f64 / len as f64
        );
        let _ = std::fs::remove_dir_all(&repo);
    }
}
