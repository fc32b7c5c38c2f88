//! Several-writers benchmark: two daemons on 127.0.0.1, the share's owner A and a member B
//! (granted by its peer id), each on its own writable mount of the share.
//!
//! Usage: `cargo build --release -p cairn -p cairn-bench && ./target/release/writers [ROUNDS]
//! [WORKDIR]`
//!
//! - One writer at a time (ROUNDS, default 50, alternating A and B): a small file written and
//!   `fsync`ed on one mount, timed from the `fsync` returning to the other mount reading the
//!   new bytes (it polls every 0.2 ms). The other writer fast-forwards to the commit.
//! - Both at once (ROUNDS): A and B each write and `fsync` a different file at the same moment;
//!   timed from the later `fsync` returning to both mounts showing both files (each writer
//!   merges the other's head; the two merges meet and one is kept).
//!
//! - A publisher with the owner away (ROUNDS): B is granted `--publish` too, a third daemon C
//!   follows the share on a read-only mount, A's daemon is stopped; B writes and `fsync`s a
//!   file, timed from the `fsync` returning to C's mount reading it (B signs the share's record
//!   for its commit; C takes it and moves). Beside it, with A still there, the same with A
//!   writing (the owner's record), as the figure to compare with.
//!
//! Reference, in the same run: `dd conv=fsync` of the same bytes to a file on the same disk
//! (what the `fsync` alone costs there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_bench::{cairn_cmd, init_loopback_repo, run, start_daemon, unmount_if_mounted};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(50);
    let work = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/cairn-bench-writers".into()),
    );
    std::fs::create_dir_all(&work).unwrap();
    let (ra, rb, rc) = (work.join("a"), work.join("b"), work.join("c"));
    for r in [&ra, &rb, &rc] {
        let _ = std::fs::remove_dir_all(r);
        init_loopback_repo(r);
        // Only fsyncs commit: no quiet-period commit in the middle of a measurement.
        run(cairn_cmd(r).args(["config", "set", "shares.commit_quiet_ms", "3600000"]));
    }
    let (out, _) = run(cairn_cmd(&ra).args(["--json", "share", "new", "bench"]));
    let name = field(&out, "name");
    let a = start_daemon(&ra);
    let b = start_daemon(&rb);
    run(cairn_cmd(&rb).args(["swarm", "connect", &a.addr]));
    let (id, _) = run(cairn_cmd(&rb).args(["--json", "id"]));
    let bob = field(&id, "peer_id");
    run(cairn_cmd(&ra).args(["share", "grant", "bench", &bob, "--label", "bob"]));
    let ma = mount_via_daemon(&ra, "bench", &work.join("ma"));
    write_synced(&ma.join("start.txt"), "0\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Command::new(cairn_bench::cairn_bin())
        .arg("--repo")
        .arg(&rb)
        .args(["name", "resolve", &name])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "B never resolved the share");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mb = mount_via_daemon(&rb, &name, &work.join("mb"));
    wait_shows(&mb, &[("start.txt", "0\n")], Duration::from_secs(60));

    // One writer at a time.
    let mut one = Vec::new();
    for i in 0..rounds {
        let (from, to) = if i % 2 == 0 { (&ma, &mb) } else { (&mb, &ma) };
        let file = format!("one-{i}.txt");
        let text = format!("{i}\n");
        write_synced(&from.join(&file), &text);
        let t = Instant::now();
        wait_shows(to, &[(&file, &text)], Duration::from_secs(30));
        one.push(t.elapsed());
    }
    // Both at once.
    let mut both = Vec::new();
    for i in 0..rounds {
        let (fa, fb) = (format!("a-{i}.txt"), format!("b-{i}.txt"));
        let text = format!("{i}\n");
        let (pa, pb) = (ma.join(&fa), mb.join(&fb));
        let (ta, tb) = (text.clone(), text.clone());
        let ja = std::thread::spawn(move || {
            write_synced(&pa, &ta);
            Instant::now()
        });
        let jb = std::thread::spawn(move || {
            write_synced(&pb, &tb);
            Instant::now()
        });
        let t = ja.join().unwrap().max(jb.join().unwrap());
        let want = [(fa.as_str(), text.as_str()), (fb.as_str(), text.as_str())];
        wait_shows(&ma, &want, Duration::from_secs(60));
        wait_shows(&mb, &want, Duration::from_secs(60));
        both.push(t.elapsed());
    }
    // A follower C; B may publish from now on (the grant makes a version naming the new list,
    // which B takes).
    let c = start_daemon(&rc);
    for addr in [&a.addr, &b.addr] {
        run(cairn_cmd(&rc).args(["swarm", "connect", addr]));
    }
    run(cairn_cmd(&ra).args([
        "share",
        "grant",
        "bench",
        &bob,
        "--label",
        "bob",
        "--publish",
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (m, _) = run(cairn_cmd(&rb).args(["--json", "share", "members", &name]));
        if m.lines()
            .any(|l| l.contains("\"label\":\"bob\"") && l.contains("\"publish\":true"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "B never learnt it may publish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mc = mount_via_daemon(&rc, &name, &work.join("mc"));
    wait_shows(&mc, &[("start.txt", "0\n")], Duration::from_secs(60));
    // The owner's record first (A there), then B's with A gone.
    let mut by_owner = Vec::new();
    for i in 0..rounds {
        let (file, text) = (format!("o-{i}.txt"), format!("{i}\n"));
        write_synced(&ma.join(&file), &text);
        let t = Instant::now();
        wait_shows(&mc, &[(&file, &text)], Duration::from_secs(30));
        by_owner.push(t.elapsed());
        // B has it too before the next round (no merge in the next measurement).
        wait_shows(&mb, &[(&file, &text)], Duration::from_secs(30));
    }
    unmount_if_mounted(&ma);
    drop(a);
    let mut by_publisher = Vec::new();
    for i in 0..rounds {
        let (file, text) = (format!("p-{i}.txt"), format!("{i}\n"));
        write_synced(&mb.join(&file), &text);
        let t = Instant::now();
        wait_shows(&mc, &[(&file, &text)], Duration::from_secs(30));
        by_publisher.push(t.elapsed());
    }
    // The reference: the same bytes with `dd conv=fsync` to the same disk.
    let mut dd = Vec::new();
    for i in 0..rounds {
        let out = work.join("dd.txt");
        let t = Instant::now();
        run(Command::new("sh").arg("-c").arg(format!(
            "printf '{i}\\n' | dd of={} conv=fsync status=none",
            out.display()
        )));
        dd.push(t.elapsed());
    }
    // A's daemon is gone: the command opens A's repo itself.
    let (merges, _) = run(cairn_cmd(&ra).args(["--json", "share", "log", "bench"]));
    let merge_commits = merges
        .lines()
        .filter(|l| l.contains("\"parents\":2"))
        .count();
    println!("{rounds} rounds each, two writers' mounts on 127.0.0.1:");
    report(
        "one writer: fsync returns -> the other mount reads it",
        &mut one,
    );
    report(
        "both at once: later fsync -> both mounts show both",
        &mut both,
    );
    report(
        "reference: dd conv=fsync of the same bytes (whole dd)",
        &mut dd,
    );
    report(
        "owner online: A's fsync -> follower C's mount reads it",
        &mut by_owner,
    );
    report(
        "owner away: publisher B's fsync -> C's mount reads it",
        &mut by_publisher,
    );
    println!("  merge commits in the owner's history: {merge_commits}");
    let (sa, sb) = (both[both.len() / 2], dd[dd.len() / 2]);
    println!(
        "  both-at-once p50 is {:.1}x the dd p50",
        sa.as_secs_f64() / sb.as_secs_f64()
    );
    let (sp, so) = (by_publisher[rounds / 2], by_owner[rounds / 2]);
    println!(
        "  publisher p50 is {:.2}x the owner's p50, {:.1}x the dd p50",
        sp.as_secs_f64() / so.as_secs_f64(),
        sp.as_secs_f64() / sb.as_secs_f64()
    );
    for m in [&mc, &mb] {
        unmount_if_mounted(m);
    }
    drop((b, c));
}

fn report(what: &str, d: &mut [Duration]) {
    d.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = d.len();
    println!(
        "  {what:<56} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        ms(d[n / 2]),
        ms(d[(n * 99 / 100).min(n - 1)]),
        ms(d[n - 1])
    );
}

fn write_synced(path: &Path, text: &str) {
    let f = std::fs::File::create(path).unwrap();
    f.write_all_at(text.as_bytes(), 0).unwrap();
    f.sync_all().unwrap();
}

fn wait_shows(dir: &Path, files: &[(&str, &str)], limit: Duration) {
    let deadline = Instant::now() + limit;
    while !files
        .iter()
        .all(|(f, t)| std::fs::read_to_string(dir.join(f)).is_ok_and(|s| s == *t))
    {
        assert!(
            Instant::now() < deadline,
            "{} never showed {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `cairn mount WHAT DIR` through the daemon of `repo`; the canonical mount point.
fn mount_via_daemon(repo: &Path, what: &str, dir: &Path) -> PathBuf {
    unmount_if_mounted(dir);
    std::fs::create_dir_all(dir).unwrap();
    run(cairn_cmd(repo).arg("mount").arg(what).arg(dir));
    std::fs::canonicalize(dir).unwrap()
}

/// A string field of a one-line JSON object.
fn field(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    json[at..at + json[at..].find('"').unwrap()].to_string()
}
