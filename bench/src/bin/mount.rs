//! FUSE mount benchmark: reads through `cairn mount` beside the same reads of the source file, in
//! the same run on the same machine; plus a lazy read of a remote file through a daemon's mount.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/mount [SIZE_MIB] [WORKDIR]`
//!
//! - Sequential: one pass over the file with 1 MiB `read`s, through `<mnt>/<cid>` (a foreground
//!   `cairn --repo R mount <cid> <mnt>`, no daemon) and on the source file.
//!   *cold*: after `echo 3 > /proc/sys/vm/drop_caches` (cairn reads its sled files from disk);
//!   *first read*: a fresh mount while the repo's files sit in the page cache (the FUSE path);
//!   *warm*: the second pass (the mount's own page cache, kept by FOPEN_KEEP_CACHE).
//! - Random: 4 KiB `pread`s at random offsets from two threads, with `POSIX_FADV_RANDOM` (no
//!   kernel readahead), on a fresh mount (repo in the page cache) and on the cached source file.
//! - Lazy remote: two daemons on 127.0.0.1; A adds the file, B connects and mounts the CID
//!   through its daemon, then `head -c 1M` of the file; bytes moved from B's bitswap stats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_bench::{
    cairn_bin, cairn_cmd, drop_caches, init_loopback_repo, is_mounted, make_file, mb_per_s, run,
    seq_read, start_daemon, unmount_if_mounted, warm_cache, Mount,
};

/// Random reads per measurement (split over `RANDOM_THREADS`).
const RANDOM_READS: u64 = 20_000;
const RANDOM_THREADS: u64 = 2;
const RANDOM_LEN: usize = 4096;
/// What the lazy remote read asks for.
const HEAD_BYTES: u64 = 1 << 20;

fn main() {
    let (mib, work) = cairn_bench::size_and_workdir("/tmp/cairn-bench-mount");
    let len = mib << 20;
    let file = work.join(format!("input-{mib}MiB.bin"));
    make_file(&file, len, 0x9e37_79b9_7f4a_7c15);
    println!(
        "input: {mib} MiB incompressible at {}; {} cores",
        file.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let repo = work.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    run(cairn_cmd(&repo).arg("init"));
    let (cid, _) = run(cairn_cmd(&repo).args(["add", "-Q"]).arg(&file));
    let cid = cid.trim().to_string();
    let mnt = work.join("mnt");
    unmount_if_mounted(&mnt);
    std::fs::create_dir_all(&mnt).unwrap();
    let target = mnt.join(&cid);
    println!("added {cid}\n");

    let can_drop = drop_caches();
    if !can_drop {
        println!("note: cannot write /proc/sys/vm/drop_caches: the cold figures are not cold");
    }

    // Sequential, cold.
    drop_caches();
    let src_cold = seq_read(&file);
    let mount = Mount::start(&repo, &cid, &mnt);
    drop_caches();
    let mnt_cold = seq_read(&target);
    drop(mount);
    // First read through a fresh mount, repo files in the page cache.
    warm_dir(&repo);
    let mount = Mount::start(&repo, &cid, &mnt);
    let mnt_first = seq_read(&target);
    // Warm: the mount's page cache.
    let mnt_warm = seq_read(&target);
    drop(mount);
    warm_cache(&file);
    let src_warm = seq_read(&file);

    // Random 4 KiB reads.
    let mount = Mount::start(&repo, &cid, &mnt);
    let mnt_rand = random_reads(&target, len);
    drop(mount);
    warm_cache(&file);
    let src_rand = random_reads(&file, len);

    // Lazy remote read.
    let remote = lazy_remote(&work, &file);

    println!();
    println!("sequential read of {mib} MiB, 1 MiB reads (MB/s = 10^6 B/s)");
    println!("{:<52} {:>10} {:>10} {:>7}", "", "mount", "source", "ratio");
    let seq_line = |label: &str, m: Duration, s: Duration| {
        let (a, b) = (mb_per_s(len, m), mb_per_s(len, s));
        println!("{label:<52} {a:>10.0} {b:>10.0} {:>7.2}", a / b);
    };
    seq_line(
        if can_drop {
            "cold (drop_caches; both from disk)"
        } else {
            "cold (NOT dropped: see note)"
        },
        mnt_cold,
        src_cold,
    );
    seq_line(
        "first read (fresh mount, repo in page cache)",
        mnt_first,
        src_warm,
    );
    seq_line("warm (second read, both in page cache)", mnt_warm, src_warm);
    println!();
    println!(
        "random {RANDOM_LEN} B preads, {RANDOM_READS} over {RANDOM_THREADS} threads, POSIX_FADV_RANDOM (reads/s)"
    );
    println!(
        "{:<52} {:>10.0} {:>10.0} {:>7.3}",
        "fresh mount (repo in page cache) vs cached source",
        mnt_rand,
        src_rand,
        mnt_rand / src_rand
    );
    println!();
    println!(
        "lazy remote read: `head -c {HEAD_BYTES}` of a {mib} MiB file on another daemon, through B's mount"
    );
    println!(
        "  {:.1} ms, {} bytes received by B's bitswap ({} blocks) = {:.2} x the bytes read; the file is {:.0} x larger",
        remote.wall.as_secs_f64() * 1e3,
        remote.bytes_received,
        remote.blocks_received,
        remote.bytes_received as f64 / HEAD_BYTES as f64,
        len as f64 / remote.bytes_received.max(1) as f64
    );
}

/// Reads every file below `dir` once, so it sits in the page cache.
fn warm_dir(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
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

#[allow(unsafe_code)]
fn fadvise_random(f: &File) {
    // SAFETY: posix_fadvise only reads its integer arguments.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
    }
}

/// `RANDOM_READS` preads of `RANDOM_LEN` bytes at random page-aligned offsets; reads per second.
fn random_reads(path: &Path, len: u64) -> f64 {
    let pages = len / RANDOM_LEN as u64;
    let start = Instant::now();
    let threads: Vec<_> = (0..RANDOM_THREADS)
        .map(|t| {
            let f = File::open(path).unwrap();
            fadvise_random(&f);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; RANDOM_LEN];
                let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ (t + 1).wrapping_mul(0x9e37_79b9);
                for _ in 0..RANDOM_READS / RANDOM_THREADS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = (x % pages) * RANDOM_LEN as u64;
                    f.read_exact_at(&mut buf, off).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    RANDOM_READS as f64 / start.elapsed().as_secs_f64()
}

struct Remote {
    wall: Duration,
    bytes_received: u64,
    blocks_received: u64,
}

/// A JSON number field of a flat object, without a JSON parser.
fn json_u64(json: &str, key: &str) -> u64 {
    let at = json
        .find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    json[at + key.len() + 2..]
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

fn lazy_remote(work: &Path, file: &Path) -> Remote {
    let (ra, rb) = (work.join("remote-a"), work.join("remote-b"));
    init_loopback_repo(&ra);
    init_loopback_repo(&rb);
    let a = start_daemon(&ra);
    let b = start_daemon(&rb);
    let (cid, _) = run(cairn_cmd(&ra).args(["add", "-Q"]).arg(file));
    let cid = cid.trim().to_string();
    run(cairn_cmd(&rb).args(["swarm", "connect", &a.addr]));
    let mnt = work.join("remote-mnt");
    unmount_if_mounted(&mnt);
    std::fs::create_dir_all(&mnt).unwrap();
    run(cairn_cmd(&rb).arg("mount").arg(&cid).arg(&mnt));
    let result = std::panic::catch_unwind(|| {
        let (before, _) = run(cairn_cmd(&rb).args(["--json", "stat", "bitswap"]));
        let (_, head) = run(Command::new("sh").arg("-c").arg(format!(
            "head -c {HEAD_BYTES} '{}' > /dev/null",
            mnt.join(&cid).display()
        )));
        let (after, _) = run(cairn_cmd(&rb).args(["--json", "stat", "bitswap"]));
        Remote {
            wall: head.wall,
            bytes_received: json_u64(&after, "bytes_received")
                - json_u64(&before, "bytes_received"),
            blocks_received: json_u64(&after, "blocks_received")
                - json_u64(&before, "blocks_received"),
        }
    });
    let _ = Command::new(cairn_bin())
        .arg("--repo")
        .arg(&rb)
        .arg("unmount")
        .arg(&mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    // Give the daemon time to unmount; then make sure, whatever happened.
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(&mnt) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    unmount_if_mounted(&mnt);
    drop(b);
    drop(a);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e))
}
