//! The daemon's local API under load and abuse, through the real `cairn daemon`: many concurrent
//! clients, idle and finished connections left open, slow clients, and all command slots taken
//! (docs/DESIGN.md, "The daemon and the CLI": 64 commands, 10 s for a whole request, 5 s of
//! waiting for a slot, 1024 connections).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_store::{cid_for, HashAlg, RAW};
use cairn_tests::{api_request, raise_fd_limit, read_api_frame, wait_for, TestRepo};

/// The daemon's command slots (`api::MAX_COMMANDS`).
const MAX_COMMANDS: usize = 64;
/// The daemon's bound on open API connections (`api::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 1024;

/// `cairn id` through the daemon lists its listen addresses; offline it says there are none.
fn assert_from_daemon(id: &str) {
    assert!(
        id.contains("/ip4/127.0.0.1/"),
        "not answered by the daemon: {id}"
    );
}

#[test]
fn concurrent_clients_are_never_told_the_daemon_is_busy() {
    const CLIENTS: usize = 48;
    const ROUNDS: usize = 200;
    let r = TestRepo::new();
    r.use_loopback_network();
    let _d = r.daemon();
    let busy = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    let run = r.cairn(&["id"]);
                    if !run.ok() {
                        if run.stderr.contains("busy") {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        failures.lock().unwrap().push(run.stderr);
                    } else if !run.text().contains("/ip4/127.0.0.1/") {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("not answered by the daemon: {}", run.text()));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{} of {} runs failed, {} told busy",
        failures.len(),
        CLIENTS * ROUNDS,
        busy.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} of {} runs failed, {} of them told the daemon is busy; first: {}",
        failures.len(),
        CLIENTS * ROUNDS,
        busy.load(Ordering::Relaxed),
        failures[0]
    );
}

#[test]
fn idle_and_finished_connections_cost_no_threads_and_bounded_descriptors() {
    const CONNS: usize = 1500;
    raise_fd_limit(4 * CONNS as u64);
    let r = TestRepo::new();
    r.use_loopback_network();
    let d = r.daemon();
    assert_from_daemon(&r.cairn(&["id"]).expect_ok());
    let (threads0, fds0) = (d.threads(), d.open_fds());

    // Connections that never send anything.
    let mut silent: Vec<UnixStream> = (0..CONNS)
        .map(|_| UnixStream::connect(r.api_socket()).unwrap())
        .collect();
    // A real command still gets through meanwhile.
    assert_from_daemon(&r.cairn(&["id"]).expect_ok());
    let (threads1, fds1) = (d.threads(), d.open_fds());
    eprintln!("{CONNS} silent connections: threads {threads0} -> {threads1}, fds {fds0} -> {fds1}");
    assert!(
        threads1 <= threads0 + 16,
        "{CONNS} silent connections: {threads0} -> {threads1} threads"
    );
    // Slack for the descriptors of the command just run (its connection and the clone that
    // watches it may not be closed yet) and of the node's own sockets.
    assert!(
        fds1 <= fds0 + MAX_CONNECTIONS + 32,
        "{CONNS} silent connections: {fds0} -> {fds1} descriptors"
    );
    // Past the bound, the oldest silent connection made room, and was told why.
    let oldest = &mut silent[0];
    oldest
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (tag, message) = read_api_frame(oldest).expect("a reply to the oldest idle connection");
    let message = String::from_utf8_lossy(&message);
    assert_eq!(tag, b'E', "{message}");
    assert!(
        message.contains("API connections are open"),
        "oldest idle connection: {message}"
    );
    drop(silent);

    // Connections whose command finished, left open by their client: the daemon closes them.
    let request = api_request(&["cairn", "id"]);
    let mut finished = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let mut s = UnixStream::connect(r.api_socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&request).unwrap();
        loop {
            let (tag, payload) = read_api_frame(&mut s).expect("the command's reply");
            match tag {
                b'O' => assert_from_daemon(&String::from_utf8_lossy(&payload)),
                b'K' => break,
                other => panic!("frame {other:#x}: {}", String::from_utf8_lossy(&payload)),
            }
        }
        let mut byte = [0u8; 1];
        assert_eq!(
            s.read(&mut byte).map_err(|e| e.kind()),
            Ok(0),
            "the daemon kept a finished connection open"
        );
        finished.push(s);
    }
    let (threads2, fds2) = (d.threads(), d.open_fds());
    eprintln!(
        "{CONNS} finished connections: threads {threads0} -> {threads2}, fds {fds0} -> {fds2}"
    );
    assert!(
        threads2 <= threads0 + 32,
        "{CONNS} finished connections: {threads0} -> {threads2} threads"
    );
    assert!(
        fds2 <= fds0 + 32,
        "{CONNS} finished connections: {fds0} -> {fds2} descriptors"
    );
    assert_from_daemon(&r.cairn(&["id"]).expect_ok());
    drop(finished);
}

/// A client sending its request one byte every few seconds.
struct Slow {
    stream: UnixStream,
    sent: usize,
    reply: Vec<u8>,
    closed: bool,
}

impl Slow {
    /// Reads what the daemon sent so far, noting when it closed the connection.
    fn drain(&mut self) {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.reply.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }
}

#[test]
fn slow_clients_are_dropped_at_the_deadline_and_hold_no_slot() {
    const SLOW: usize = MAX_COMMANDS + 16;
    let r = TestRepo::new();
    r.use_loopback_network();
    let _d = r.daemon();
    // Sent whole at 1 byte per 2 s, this takes minutes; the deadline for all of it is 10 s.
    let request = api_request(&["cairn", "id"]);
    let mut slow: Vec<Slow> = (0..SLOW)
        .map(|_| {
            let stream = UnixStream::connect(r.api_socket()).unwrap();
            stream.set_nonblocking(true).unwrap();
            Slow {
                stream,
                sent: 0,
                reply: Vec::new(),
                closed: false,
            }
        })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(90);
    let mut checked = false;
    loop {
        for c in slow.iter_mut().filter(|c| !c.closed) {
            c.drain();
            if c.closed {
                continue;
            }
            assert!(
                c.sent < request.len(),
                "a client sent its whole request at 1 byte per 2 s without being dropped"
            );
            match c.stream.write(&request[c.sent..=c.sent]) {
                Ok(n) => c.sent += n,
                Err(_) => {
                    // Closed by the daemon: its reason may still be unread.
                    c.drain();
                    c.closed = true;
                }
            }
        }
        if !checked {
            // Every slow client is connected and mid-request: a normal command still runs.
            assert_from_daemon(&r.cairn(&["id"]).expect_ok());
            checked = true;
        }
        if slow.iter().all(|c| c.closed) {
            break;
        }
        let open = slow.iter().filter(|c| !c.closed).count();
        assert!(
            Instant::now() < give_up,
            "{open} slow clients still connected after 90 s"
        );
        // The pace of a slow client, not a synchronisation.
        std::thread::sleep(Duration::from_secs(2));
    }
    for c in &slow {
        assert!(c.sent < request.len());
        let (tag, message) = read_api_frame(&mut &c.reply[..]).expect("a reason for closing");
        let message = String::from_utf8_lossy(&message);
        assert_eq!(tag, b'E', "{message}");
        assert!(
            message.contains("no complete request within 10 s"),
            "{message}"
        );
    }
    assert_from_daemon(&r.cairn(&["id"]).expect_ok());
}

#[test]
fn a_client_waits_for_a_slot_and_is_told_busy_only_after() {
    let r = TestRepo::new();
    r.use_loopback_network();
    let _d = r.daemon();
    // Commands that run until their client leaves: reads of content nobody has.
    let mut blockers: Vec<UnixStream> = (0..MAX_COMMANDS)
        .map(|i| {
            let cid = cid_for(1, RAW, HashAlg::Sha2_256, format!("nobody {i}").as_bytes());
            let mut s = UnixStream::connect(r.api_socket()).unwrap();
            s.write_all(&api_request(&[
                "cairn",
                "--timeout",
                "3600",
                "cat",
                &cid.to_string(),
            ]))
            .unwrap();
            s
        })
        .collect();
    // Once every slot is taken, a command waits for one, then is told the daemon is busy.
    let busy = wait_for(120, "every command slot taken", || {
        let run = r.cairn(&["--json", "stat", "bitswap"]);
        (!run.ok()).then_some(run)
    });
    busy.expect_err("the daemon is busy (64 commands running); try again");

    // A client that arrives while all slots are taken gets the first one to come free.
    let mut waiter = UnixStream::connect(r.api_socket()).unwrap();
    waiter
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    waiter.write_all(&api_request(&["cairn", "id"])).unwrap();
    drop(blockers.pop());
    let mut out = Vec::new();
    loop {
        let (tag, payload) = read_api_frame(&mut waiter).expect("the waiter's reply");
        match tag {
            b'O' => out.extend_from_slice(&payload),
            b'K' => break,
            other => panic!("frame {other:#x}: {}", String::from_utf8_lossy(&payload)),
        }
    }
    assert_from_daemon(&String::from_utf8_lossy(&out));
    // The blockers' commands end with their connections.
    drop(blockers);
    let stats = wait_for(30, "the blockers' wants cancelled", || {
        let run = r.cairn(&["--json", "stat", "bitswap"]);
        let v: serde_json::Value = serde_json::from_str(&run.expect_ok()).unwrap();
        (v["wants"] == 0).then_some(v)
    });
    assert_eq!(stats["wants"], 0);
}
