//! Writable share mount benchmark: each figure beside a reference measured in the same run on
//! the same machine and disk.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/share [SIZE_MIB] [WORKDIR]`
//!
//! - Sequential write: `dd if=<input> of=<mnt>/big bs=1M conv=fsync` into a mounted share (the
//!   fsync also commits: the file is chunked into blocks and signed as a new version) beside the
//!   same `dd` to a file in WORKDIR (the disk the repo is on); the input is in the page cache.
//!   Also `cp` of the input into the mount, then `cairn share commit`.
//! - Untar: `tar -xf` of an archive of 5 000 small files (50 directories × 100 files of
//!   1–8 KiB) into the mount, then `cairn share commit`, beside `tar -xf` into WORKDIR then
//!   `sync -f`.
//! - Commit cost: a one-line change in a folder of 1 000, 10 000 and 100 000 files (100 per
//!   directory): `cairn --json share commit` reports the time and the new blocks.
//! - Reads: `cat` (128 KiB reads) and `dd bs=1M` of the committed big file through a fresh
//!   writable mount and through a CID mount of the same root, beside `cat` of the input; the
//!   repo's files are in the page cache (the FUSE path, not the disk).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_bench::{cairn_cmd, make_file, mb_per_s, run, unmount_if_mounted, warm_cache, Mount};

fn main() {
    let (mib, work) = cairn_bench::size_and_workdir("/tmp/cairn-bench-share");
    let len = mib << 20;
    let input = work.join(format!("input-{mib}MiB.bin"));
    make_file(&input, len, 0x5eed_5eed_5eed_5eed);
    warm_cache(&input);
    println!(
        "input: {mib} MiB incompressible at {}; {} cores",
        input.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let repo = work.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    run(cairn_cmd(&repo).arg("init"));
    // Only explicit commits and fsyncs: the quiet-period commit would run inside the timings.
    run(cairn_cmd(&repo).args(["config", "set", "shares.commit_quiet_ms", "3600000"]));
    run(cairn_cmd(&repo).args(["config", "set", "shares.commit_max_secs", "86400"]));
    run(cairn_cmd(&repo).args(["share", "new", "bench"]));
    let mnt = work.join("mnt");
    unmount_if_mounted(&mnt);
    std::fs::create_dir_all(&mnt).unwrap();

    // Sequential write.
    let local = work.join("local-big.bin");
    let _ = std::fs::remove_file(&local);
    let dd_local = timed(
        Command::new("dd")
            .arg(format!("if={}", input.display()))
            .arg(format!("of={}", local.display()))
            .args(["bs=1M", "conv=fsync", "status=none"]),
    );
    let _ = std::fs::remove_file(&local);
    let mount = Mount::start(&repo, "bench", &mnt);
    let dd_share = timed(
        Command::new("dd")
            .arg(format!("if={}", input.display()))
            .arg(format!("of={}", mnt.join("big.bin").display()))
            .args(["bs=1M", "conv=fsync", "status=none"]),
    );
    let cp_share = timed(Command::new("cp").arg(&input).arg(mnt.join("copy.bin")));
    let (out, commit_cp) = run(cairn_cmd(&repo).args(["--json", "share", "commit", "bench"]));
    assert!(out.contains("\"committed\":true"), "{out}");
    println!("sequential write of {mib} MiB, then fsync (the share's fsync commits):");
    println!(
        "  dd bs=1M conv=fsync to local disk   {:>8.0} MB/s",
        mb_per_s(len, dd_local)
    );
    println!(
        "  dd bs=1M conv=fsync into the share  {:>8.0} MB/s  ({:.2}x local)",
        mb_per_s(len, dd_share),
        dd_local.as_secs_f64() / dd_share.as_secs_f64()
    );
    println!(
        "  cp into the share, then share commit {:>7.0} MB/s  (cp {:.2} s + commit {:.2} s)",
        mb_per_s(len, cp_share + commit_cp.wall),
        cp_share.as_secs_f64(),
        commit_cp.wall.as_secs_f64()
    );

    // Untar.
    let tree = work.join("tree");
    let tarball = work.join("tree.tar");
    if !tarball.exists() {
        make_tree(&tree, 50, 100);
        sh(&format!(
            "tar -cf {} -C {} .",
            tarball.display(),
            tree.display()
        ));
    }
    warm_cache(&tarball);
    let local_untar = work.join("untar-local");
    let _ = std::fs::remove_dir_all(&local_untar);
    std::fs::create_dir_all(&local_untar).unwrap();
    let untar_local = timed(Command::new("sh").arg("-c").arg(format!(
        "tar -xf {} -C {d} && sync -f {d}",
        tarball.display(),
        d = local_untar.display()
    )));
    let into = mnt.join("untar");
    std::fs::create_dir_all(&into).unwrap();
    let untar_share = timed(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&into),
    );
    let (_, commit_untar) = run(cairn_cmd(&repo).args(["--json", "share", "commit", "bench"]));
    println!("\nuntar of 5 000 files (50 dirs x 100, 1-8 KiB):");
    println!(
        "  tar -xf + sync -f on local disk      {:>8.2} s",
        untar_local.as_secs_f64()
    );
    println!(
        "  tar -xf into the share + share commit {:>7.2} s  (tar {:.2} s + commit {:.2} s; {:.2}x local)",
        (untar_share + commit_untar.wall).as_secs_f64(),
        untar_share.as_secs_f64(),
        commit_untar.wall.as_secs_f64(),
        untar_local.as_secs_f64() / (untar_share + commit_untar.wall).as_secs_f64()
    );
    drop(mount);

    // Reads of the committed file.
    let root = head_root(&repo, "bench");
    let mount = Mount::start(&repo, "bench", &mnt);
    let big = mnt.join("big.bin");
    warm_repo(&repo);
    let cat_share = timed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cat {} > /dev/null", big.display())),
    );
    drop(mount);
    let mount = Mount::start(&repo, "bench", &mnt);
    warm_repo(&repo);
    let dd_read_share = timed(
        Command::new("dd")
            .arg(format!("if={}", big.display()))
            .args(["of=/dev/null", "bs=1M", "status=none"]),
    );
    drop(mount);
    let cid_mount = Mount::start(&repo, &root, &mnt);
    warm_repo(&repo);
    let cat_cid = timed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cat {} > /dev/null", big.display())),
    );
    drop(cid_mount);
    let cat_src = timed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cat {} > /dev/null", input.display())),
    );
    println!("\nfirst read of the committed {mib} MiB file through a fresh mount (repo in the page cache):");
    println!(
        "  cat of the input file (page cache)   {:>8.0} MB/s",
        mb_per_s(len, cat_src)
    );
    println!(
        "  cat through the share mount          {:>8.0} MB/s",
        mb_per_s(len, cat_share)
    );
    println!(
        "  dd bs=1M through the share mount     {:>8.0} MB/s",
        mb_per_s(len, dd_read_share)
    );
    println!(
        "  cat through a CID mount of the root  {:>8.0} MB/s",
        mb_per_s(len, cat_cid)
    );

    // Commit cost against folder size.
    println!("\none-line change in a folder of N files (100 per directory), then share commit:");
    for files in [1_000usize, 10_000, 100_000] {
        let label = format!("c{files}");
        let src = work.join(format!("folder-{files}"));
        if !src.exists() {
            make_tree(&src, files / 100, 100);
        }
        run(cairn_cmd(&repo)
            .args(["share", "new", &label, "--from"])
            .arg(&src));
        let mount = Mount::start(&repo, &label, &mnt);
        let file = mnt.join("d0007").join("f0042.txt");
        let start = Instant::now();
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str("one more line\n");
        std::fs::write(&file, text).unwrap();
        let write = start.elapsed();
        let (out, commit) = run(cairn_cmd(&repo).args(["--json", "share", "commit", &label]));
        let blocks = field(&out, "blocks");
        let ms = field(&out, "ms");
        println!(
            "  {files:>7} files: commit {ms:>4} ms inside the mount ({:.0} ms for the command), {blocks} new blocks (write {:.1} ms)",
            commit.wall.as_secs_f64() * 1000.0,
            write.as_secs_f64() * 1000.0
        );
        drop(mount);
    }
}

/// Runs `cmd` to completion; its wall time.
fn timed(cmd: &mut Command) -> Duration {
    run(cmd).1.wall
}

fn sh(script: &str) {
    run(Command::new("sh").arg("-c").arg(script));
}

/// `dirs` directories of `files` files of 1–8 KiB.
fn make_tree(dir: &Path, dirs: usize, files: usize) {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for d in 0..dirs {
        let sub = dir.join(format!("d{d:04}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..files {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1024 + (x % 7168) as usize;
            let line = format!("file {d}/{f} {x:x}\n");
            let body: String = line.repeat(len / line.len() + 1);
            std::fs::write(sub.join(format!("f{f:04}.txt")), &body[..len]).unwrap();
        }
    }
}

/// Reads the repo's block files once, so reads measure the FUSE path rather than the disk.
fn warm_repo(repo: &Path) {
    let mut stack = vec![repo.join("blocks")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                warm_cache(&p);
            }
        }
    }
}

fn head_root(repo: &Path, share: &str) -> String {
    let (out, _) = run(cairn_cmd(repo).args(["--json", "share", "log", share]));
    let first = out.lines().next().unwrap();
    let at = first.find("\"root\":\"").unwrap() + 8;
    first[at..at + first[at..].find('"').unwrap()].to_string()
}

/// A number field of a one-line JSON object.
fn field(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}
