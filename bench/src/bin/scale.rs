//! A DHT of many real nodes on 127.0.0.1, spread over several processes: how long name
//! resolution (IPNS `GET_VALUE`), fetching the root the name points at (providers through the
//! DHT, then Bitswap) and a provider lookup run to its end take when 1, 10 and 100 followers
//! of a share do it at once, and again after a fifth of the nodes left.
//!
//! Usage: `cargo build --release -p cairn-bench && ./target/release/scale [NODES] [PROCS]`
//! (default 200 nodes in 4 processes). Each node is a full cairn `Node` (TCP, Noise, Yamux,
//! Kademlia in server mode, gossipsub, Bitswap) over a memory store, bootstrapped from up to
//! three earlier nodes, with a daemon's default connection budget (512; `SCALE_CONNS`
//! overrides it). Nodes are spread over processes because every in-process connection takes a
//! descriptor at both ends and a process may hold 20 000 here: one process caps 200 nodes at
//! ~80 connections each, and the nodes closest to a popular key then refuse most of the 100
//! followers that query them at once (an artefact of the simulation, not of the design).
//!
//! The coordinator (this program without `--worker`) starts the workers (`scale --worker`)
//! and drives them with one-line commands on their stdin: `start I ROLE BOOT...` (answers
//! `addr A`), `publish I`, `measure I...` (answers per node `resolve,fetch,provider` in ms, `-`
//! for a failure), `forget I...` (drop the root block), `stop I...`, `quit`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_net::{DhtMode, MemoryStore, NetConfig, Node};
use cairn_store::{
    Block, Blockstore, HashAlg, IpnsRecord, RecordFields, RecordValue, ShareKey, RAW,
};

fn max_connections() -> u32 {
    std::env::var("SCALE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| NetConfig::default().limits.max_connections)
}

fn config(bootstrap: Vec<String>) -> NetConfig {
    let mut cfg = NetConfig {
        dht_mode: DhtMode::Server,
        bootstrap,
        fetch_timeout: Duration::from_secs(20),
        // Only TCP (a QUIC socket per node would double the descriptors), closed when idle.
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".into()],
        idle_timeout: Duration::from_secs(5),
        ..NetConfig::local()
    };
    cfg.limits.max_connections = max_connections();
    cfg
}

fn seed(i: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    s[8..16].copy_from_slice(&(i + 1).to_le_bytes());
    s
}

/// The share every run publishes, and the block its record points at.
fn share() -> (ShareKey, Block) {
    let block = Block::encode(
        1,
        RAW,
        HashAlg::Sha2_256,
        cairn_store::Bytes::from_static(b"scale"),
    );
    (ShareKey::from_seed(&[99; 32]), block)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

// ----- worker -----

fn ms(d: Duration, ok: bool) -> String {
    if ok {
        format!("{:.1}", d.as_secs_f64() * 1000.0)
    } else {
        "-".into()
    }
}

/// What a new follower does, from `n`: resolve, fetch the root; then a whole provider query.
async fn follow_once(n: Node) -> String {
    let (key, block) = share();
    let name = key.name();
    let t = Instant::now();
    let rec = n
        .get_record(name, Duration::from_secs(30))
        .await
        .ok()
        .flatten();
    let resolve = ms(t.elapsed(), rec.is_some());
    let t = Instant::now();
    let got = n
        .fetch_with_timeout(*block.cid(), Duration::from_secs(30))
        .await;
    let fetch = ms(t.elapsed(), got.is_ok());
    let t = Instant::now();
    let provs = n
        .find_providers(*block.cid(), Duration::from_secs(30))
        .await
        .unwrap_or_default();
    let prov = ms(t.elapsed(), !provs.is_empty());
    format!("{resolve},{fetch},{prov}")
}

async fn worker() {
    let mut nodes: HashMap<usize, Node> = HashMap::new();
    let (key, block) = share();
    let mut out = std::io::stdout();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ids = || -> Vec<usize> { words[1..].iter().map(|w| w.parse().unwrap()).collect() };
        let reply = match words.first().copied() {
            Some("start") => {
                let i: usize = words[1].parse().unwrap();
                let boot = words[3..].iter().map(|s| s.to_string()).collect();
                let mut cfg = config(boot);
                if words[2] == "publisher" {
                    cfg.limits.max_connections = cfg.limits.max_connections.max(512);
                }
                let store: Arc<dyn Blockstore> = Arc::new(MemoryStore::new());
                let node = Node::start(cfg, seed(i as u64), store).await.unwrap();
                let a = node.listen_addrs().await.unwrap()[0].to_string();
                nodes.insert(i, node);
                format!("addr {a}")
            }
            Some("publish") => {
                let n = &nodes[&words[1].parse::<usize>().unwrap()];
                n.store().put(&block).unwrap();
                let fields = RecordFields::new(
                    RecordValue::ipfs(*block.cid()),
                    1,
                    std::time::SystemTime::now() + Duration::from_secs(3600),
                );
                let record = IpnsRecord::create(&key, &fields).unwrap();
                let put = n
                    .put_record(key.name(), record.as_bytes().to_vec())
                    .await
                    .unwrap();
                let provided = n.provide(vec![*block.cid()]).await.unwrap();
                format!("published: dht put {}, provide {provided:?}", put.dht)
            }
            Some("measure") => {
                let tasks: Vec<_> = ids()
                    .iter()
                    .map(|i| tokio::spawn(follow_once(nodes[i].clone())))
                    .collect();
                let mut parts = vec!["m".to_string()];
                for t in tasks {
                    parts.push(t.await.unwrap());
                }
                parts.join(" ")
            }
            Some("forget") => {
                for i in ids() {
                    let _ = nodes[&i].store().delete(block.cid());
                }
                "ok".into()
            }
            Some("stop") => {
                for i in ids() {
                    if let Some(n) = nodes.remove(&i) {
                        let _ = n.shutdown().await;
                    }
                }
                "ok".into()
            }
            _ => break,
        };
        writeln!(out, "{reply}").unwrap();
        out.flush().unwrap();
    }
    for n in nodes.values() {
        let _ = n.shutdown().await;
    }
}

// ----- coordinator -----

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn answer(&mut self) -> String {
        let mut s = String::new();
        assert!(self.stdout.read_line(&mut s).unwrap() > 0, "a worker died");
        s.trim_end().to_string()
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.answer()
    }
}

/// Latencies of one kind of lookup, and how many failed.
#[derive(Default)]
struct Figures {
    ok: Vec<Duration>,
    failed: usize,
}

impl Figures {
    fn add(&mut self, text: &str) {
        match text.parse::<f64>() {
            Ok(v) => self.ok.push(Duration::from_secs_f64(v / 1000.0)),
            Err(_) => self.failed += 1,
        }
    }

    fn text(&mut self) -> String {
        self.ok.sort();
        if self.ok.is_empty() {
            return format!("all {} failed", self.failed);
        }
        format!(
            "p50 {:>6.1} p99 {:>6.1} failed {}",
            percentile(&self.ok, 0.5),
            percentile(&self.ok, 0.99),
            self.failed
        )
    }
}

fn coordinator(count: usize, procs: usize) {
    let exe = std::env::current_exe().unwrap();
    let mut workers: Vec<Worker> = (0..procs)
        .map(|_| {
            let mut child = Command::new(&exe)
                .arg("--worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker");
            let stdin = child.stdin.take().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            Worker {
                child,
                stdin,
                stdout,
            }
        })
        .collect();
    let of = |i: usize| i % procs;
    let publisher = count / 2;
    let t = Instant::now();
    let mut addrs: Vec<String> = Vec::new();
    for i in 0..count {
        // Each node knows up to three earlier nodes, so the network is not a star.
        let boot: Vec<String> = (0..3)
            .filter_map(|k| i.checked_sub(1 + k * (i / 3 + 1)).map(|j| addrs[j].clone()))
            .collect();
        let role = if i == publisher { "publisher" } else { "node" };
        let a = workers[of(i)].ask(&format!("start {i} {role} {}", boot.join(" ")));
        addrs.push(a.strip_prefix("addr ").unwrap().to_string());
    }
    // Let the routing tables fill.
    std::thread::sleep(Duration::from_secs(10));
    println!(
        "{count} nodes in {procs} processes up in {:.1} s (with 10 s for routing tables), at \
         most {} connections per node",
        t.elapsed().as_secs_f64(),
        max_connections()
    );
    println!(
        "{}",
        workers[of(publisher)].ask(&format!("publish {publisher}"))
    );

    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut pick = |n: usize, alive: &[usize]| -> Vec<usize> {
        let mut out = Vec::new();
        // The publisher is never picked.
        while out.len() < n.min(alive.len() - 1) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let c = alive[(rng % alive.len() as u64) as usize];
            if !out.contains(&c) && c != publisher {
                out.push(c);
            }
        }
        out
    };
    // Sends `cmd` with each worker's share of `ids` to every worker at once, then collects.
    let broadcast = |workers: &mut Vec<Worker>, cmd: &str, ids: &[usize]| -> Vec<String> {
        let mut asked = Vec::new();
        for (w, worker) in workers.iter_mut().enumerate() {
            let mine: Vec<String> = ids
                .iter()
                .filter(|&&i| of(i) == w)
                .map(|i| i.to_string())
                .collect();
            if !mine.is_empty() {
                worker.send(&format!("{cmd} {}", mine.join(" ")));
                asked.push(w);
            }
        }
        asked.into_iter().map(|w| workers[w].answer()).collect()
    };
    let mut alive: Vec<usize> = (0..count).collect();
    for phase in ["all nodes", "after 20 % left"] {
        if phase != "all nodes" {
            let leaving = pick(count / 5, &alive);
            broadcast(&mut workers, "stop", &leaving);
            alive.retain(|i| !leaving.contains(i));
            std::thread::sleep(Duration::from_secs(2));
        }
        println!(
            "\n{phase} ({} up): resolve (GET_VALUE), fetch of the root, provider query, ms",
            alive.len()
        );
        for followers in [1usize, 10, 100] {
            let who = pick(followers, &alive);
            let mut figs: [Figures; 3] = Default::default();
            for answer in broadcast(&mut workers, "measure", &who) {
                for node in answer.split_whitespace().skip(1) {
                    for (f, v) in figs.iter_mut().zip(node.split(',')) {
                        f.add(v);
                    }
                }
            }
            let [res, fetch, prov] = &mut figs;
            println!(
                "  {followers:>3} followers: resolve {} | fetch root {} | provider query {}",
                res.text(),
                fetch.text(),
                prov.text(),
            );
            // The next round fetches again from other nodes: forget the block here.
            broadcast(&mut workers, "forget", &who);
        }
    }
    for w in &mut workers {
        w.send("quit");
    }
    for w in &mut workers {
        let _ = w.child.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(worker());
        return;
    }
    let count: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(200);
    let procs: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(4);
    coordinator(count, procs.max(1));
}
