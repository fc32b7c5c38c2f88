//! Network benchmark: a 256 MiB file moved between two `cairn daemon`s over loopback, beside the
//! same file moved between two Helia nodes (the independent implementation in `net/tests/helia`),
//! in the same run; plus the time to first byte of a one-block file for both.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/net [SIZE_MIB] [WORKDIR]`
//!
//! cairn: two fresh repos listening on 127.0.0.1 only, no bootstrap peers; A adds the file, B
//! connects to A and runs `cairn cat <cid> > /dev/null` (timed from the command's start to its
//! exit, so the figure includes the CLI process and the daemon's local API). Helia: two
//! `peer.mjs` processes, one `add`s, the other `dial`s and `cat`s (timed around the command).
//! Helia is skipped, with a note, when `scripts/helia-setup.sh` has not been run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_bench::{cairn_cmd, init_loopback_repo, make_file, mb_per_s, run, start_daemon};

/// A one-block file for the time-to-first-byte figures (below the 256 KiB chunk size).
const SMALL_LEN: u64 = 100 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args
        .next()
        .map(|s| s.parse().expect("SIZE_MIB"))
        .unwrap_or(256);
    let work = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/cairn-bench-net".into()));
    std::fs::create_dir_all(&work).unwrap();
    let len = mib << 20;
    let file = work.join(format!("input-{mib}MiB.bin"));
    make_file(&file, len, 0x2545_f491_4f6c_dd1d);
    // Fresh small files each run, so no node has them from an earlier run.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let small_cairn = work.join("small-cairn.bin");
    let small_helia = work.join("small-helia.bin");
    let _ = std::fs::remove_file(&small_cairn);
    let _ = std::fs::remove_file(&small_helia);
    make_file(&small_cairn, SMALL_LEN, nonce);
    make_file(&small_helia, SMALL_LEN, nonce ^ 0xdead_beef);
    // Warm the page cache: both adders read the same file.
    run(Command::new("cat").arg(&file).stdout(Stdio::null()));

    println!(
        "input: {mib} MiB incompressible at {}, over 127.0.0.1",
        file.display()
    );
    let cairn = cairn_pair(&work, &file, &small_cairn, len);
    let helia = helia_pair(&work, &file, &small_helia, len);

    println!();
    let line = |who: &str, f: &Fetch| {
        println!(
            "{who:<6} big file  {:>8.1} MB/s  ({} bytes in {:.2} s)",
            mb_per_s(f.bytes, f.wall),
            f.bytes,
            f.wall.as_secs_f64()
        );
    };
    line("cairn", &cairn.big);
    if let Some(h) = &helia {
        line("helia", &h.big);
        println!(
            "ratio  cairn/helia throughput {:.2}",
            mb_per_s(cairn.big.bytes, cairn.big.wall) / mb_per_s(h.big.bytes, h.big.wall)
        );
    }
    println!(
        "cairn  1-block file ({SMALL_LEN} B): first byte {:.1} ms, done {:.1} ms (cat process start to exit)",
        ms(cairn.small_first),
        ms(cairn.small.wall)
    );
    if let Some(h) = &helia {
        println!(
            "helia  1-block file ({SMALL_LEN} B): done {:.1} ms (cat command to reply; Helia returns whole)",
            ms(h.small.wall)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One timed transfer.
struct Fetch {
    bytes: u64,
    wall: Duration,
}

struct Results {
    big: Fetch,
    small: Fetch,
    small_first: Duration,
}

// ---------- cairn ----------

/// A running `cairn daemon`, stopped with SIGTERM when dropped.
/// Runs `cairn cat` to /dev/null-like draining: (bytes, time to first byte, time to exit).
fn timed_cat(repo: &Path, cid: &str) -> (u64, Duration, Duration) {
    let start = Instant::now();
    let mut child = cairn_cmd(repo)
        .args(["cat", cid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut first = None;
    let mut bytes = 0u64;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| start.elapsed());
        bytes += n as u64;
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    let status = child.wait().unwrap();
    let wall = start.elapsed();
    assert!(status.success(), "cairn cat {cid} failed: {err}");
    (bytes, first.unwrap_or(wall), wall)
}

fn cairn_pair(work: &Path, file: &Path, small: &Path, len: u64) -> Results {
    let (ra, rb) = (work.join("repo-a"), work.join("repo-b"));
    init_loopback_repo(&ra);
    init_loopback_repo(&rb);
    let a = start_daemon(&ra);
    let b = start_daemon(&rb);

    let (cid, _) = run(cairn_cmd(&ra).args(["add", "-Q"]).arg(file));
    let cid = cid.trim().to_string();
    let (small_cid, _) = run(cairn_cmd(&ra).args(["add", "-Q"]).arg(small));
    let small_cid = small_cid.trim().to_string();
    run(cairn_cmd(&rb).args(["swarm", "connect", &a.addr]));
    println!("cairn: A added {cid}, B connected to {}", a.addr);

    let (small_bytes, small_first, small_wall) = timed_cat(&rb, &small_cid);
    assert_eq!(small_bytes, SMALL_LEN, "1-block file came back truncated");
    let (bytes, _, wall) = timed_cat(&rb, &cid);
    assert_eq!(bytes, len, "big file came back truncated");
    let (stats, _) = run(cairn_cmd(&rb).args(["--json", "stat", "bitswap"]));
    println!("cairn: B bitswap stats {}", stats.trim());
    drop(b);
    drop(a);
    Results {
        big: Fetch { bytes, wall },
        small: Fetch {
            bytes: small_bytes,
            wall: small_wall,
        },
        small_first,
    }
}

// ---------- Helia ----------

/// A `node peer.mjs` process, driven line by line.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl Peer {
    fn start(dir: &Path, log: &Path) -> Peer {
        let mut child = Command::new("node")
            .arg("peer.mjs")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("cannot start node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("helia peer not ready within 60 s");
        let mut words = ready.split_whitespace();
        assert_eq!(words.next(), Some("READY"), "unexpected first line {ready}");
        let id = words.next().unwrap().to_string();
        let addr = words.next().unwrap().to_string();
        assert!(
            addr.starts_with("/ip4/127.0.0.1/"),
            "{addr} is not loopback"
        );
        let addr = if addr.contains("/p2p/") {
            addr
        } else {
            format!("{addr}/p2p/{id}")
        };
        Peer {
            child,
            stdin,
            lines: rx,
            addr,
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let reply = self
            .lines
            .recv_timeout(Duration::from_secs(900))
            .unwrap_or_else(|_| panic!("no answer from helia to {cmd}"));
        assert!(reply.starts_with("OK"), "helia: {cmd} -> {reply}");
        reply
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn helia_pair(work: &Path, file: &Path, small: &Path, len: u64) -> Option<Results> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../net/tests/helia");
    if !dir.join("node_modules").is_dir() {
        println!(
            "helia: skipped ({} has no node_modules: run scripts/helia-setup.sh)",
            dir.display()
        );
        return None;
    }
    let mut a = Peer::start(&dir, &work.join("helia-a.log"));
    let mut b = Peer::start(&dir, &work.join("helia-b.log"));
    let cid = word(&a.ask(&format!("add {}", file.display())), 1);
    let small_cid = word(&a.ask(&format!("add {}", small.display())), 1);
    let addr = a.addr.clone();
    b.ask(&format!("dial {addr}"));
    println!("helia: A added {cid}, B connected to {addr}");

    let t = Instant::now();
    let reply = b.ask(&format!("cat {small_cid} 60000"));
    let small_wall = t.elapsed();
    assert_eq!(word(&reply, 1).parse::<u64>().unwrap(), SMALL_LEN);

    let t = Instant::now();
    let reply = b.ask(&format!("cat {cid} 900000"));
    let wall = t.elapsed();
    let bytes: u64 = word(&reply, 1).parse().unwrap();
    assert_eq!(bytes, len, "helia returned {reply}");
    Some(Results {
        big: Fetch { bytes, wall },
        small: Fetch {
            bytes: SMALL_LEN,
            wall: small_wall,
        },
        small_first: small_wall,
    })
}

fn word(line: &str, i: usize) -> String {
    line.split_whitespace()
        .nth(i)
        .unwrap_or_default()
        .to_string()
}
