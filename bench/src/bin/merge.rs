//! Merge benchmark: two writers' heads of one share that diverged by CHANGED files each (default
//! 1 000, disjoint, plus 10 changed on both sides) in one folder of FILES files (default
//! 100 000), merged the way a daemon merges another writer's head: the three versions read
//! from the repo (base, ours, theirs, with their id trees), the three-way merge by node
//! identity, the merged version's directories and id tree written and flushed.
//!
//! Usage: `cargo build --release -p cairn-bench --bin merge && ./target/release/merge [FILES]
//! [CHANGED] [WORKDIR]`
//!
//! Reference, in the same run on the same disk: `diff -rq` of the two sides' folders written
//! out as plain files (what a plain tool takes just to find what differs), with the page cache
//! warm for both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

use cairn_store::heads::{merge_options, merge_trees};
use cairn_store::identity::{read_version, write_version};
use cairn_store::merge::{Content, Entry, Side, Tree, ROOT};
use cairn_store::{import_file, Blockstore, DagReader, ImportOptions, LocalSource, Repo};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let files: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let changed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let work = PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "/tmp/cairn-bench-merge".into()),
    );
    assert!(2 * changed + 10 <= files, "CHANGED is too large for FILES");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let repo = Repo::init(&work.join("repo")).unwrap();
    let session = repo.session();
    let file = |text: &str| {
        let imported = import_file(
            text.as_bytes(),
            text.len() as u64,
            None,
            None,
            &ImportOptions::default(),
            &session,
        )
        .unwrap();
        Content::File {
            cid: imported.cid,
            size: text.len() as u64,
        }
    };
    let name = |i: u64| format!("f{i:06}.txt");
    // Node ids 1.. are the files, all in the root folder.
    let t = Instant::now();
    let mut base = Tree::default();
    for i in 0..files {
        base.nodes.insert(
            u128::from(i) + 1,
            Entry {
                parent: ROOT,
                name: name(i),
                content: file(&format!("base {i}\n")),
            },
        );
    }
    let (mut ours, mut theirs) = (base.clone(), base.clone());
    let both = 2 * changed..2 * changed + 10;
    for i in (0..changed).chain(both.clone()) {
        ours.nodes.get_mut(&(u128::from(i) + 1)).unwrap().content = file(&format!("ours {i}\n"));
    }
    for i in (changed..2 * changed).chain(both) {
        theirs.nodes.get_mut(&(u128::from(i) + 1)).unwrap().content =
            file(&format!("theirs {i}\n"));
    }
    let opts = ImportOptions::default();
    let wb = write_version(&base, &opts, &session).unwrap();
    let wo = write_version(&ours, &opts, &session).unwrap();
    let wt = write_version(&theirs, &opts, &session).unwrap();
    repo.store().flush().unwrap();
    println!(
        "set-up: {files} files in one folder, {changed} changed on each side and 10 on both; \
         three versions written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runs = Vec::new();
    let mut conflicts = 0;
    let mut merged_root = None;
    for _ in 0..3 {
        let t = Instant::now();
        let reader = DagReader::new(LocalSource::new(repo.store().clone()));
        let (b, o, th) = rt.block_on(async {
            (
                read_version(&reader, wb.root, Some(wb.ids)).await.unwrap(),
                read_version(&reader, wo.root, Some(wo.ids)).await.unwrap(),
                read_version(&reader, wt.root, Some(wt.ids)).await.unwrap(),
            )
        });
        let read = t.elapsed();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_780_000_000 + s);
        let out = merge_trees(
            &b,
            Side {
                tree: &o,
                writer: "ours",
                time: at(1),
            },
            Side {
                tree: &th,
                writer: "theirs",
                time: at(2),
            },
            &merge_options(&wo.root, &wt.root),
            &repo.session(),
        )
        .unwrap();
        repo.store().flush().unwrap();
        let total = t.elapsed();
        conflicts = out.conflicts.len();
        assert_eq!(
            out.tree.nodes.len() as u64,
            files + 10,
            "every file and 10 copies"
        );
        merged_root = Some(out.written.root);
        runs.push((read, total));
    }
    runs.sort_by_key(|r| r.1);
    let (read, total) = runs[1];

    // The reference: both sides as plain folders, `diff -rq` between them.
    let (da, db) = (work.join("ours"), work.join("theirs"));
    write_plain(&da, files, |i| {
        if i < changed || (2 * changed..2 * changed + 10).contains(&i) {
            format!("ours {i}\n")
        } else {
            format!("base {i}\n")
        }
    });
    write_plain(&db, files, |i| {
        if (changed..2 * changed + 10).contains(&i) {
            format!("theirs {i}\n")
        } else {
            format!("base {i}\n")
        }
    });
    let diff = |warm: bool| {
        let t = Instant::now();
        let out = Command::new("diff")
            .arg("-rq")
            .arg(&da)
            .arg(&db)
            .output()
            .unwrap();
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        if warm {
            assert_eq!(
                n as u64,
                2 * changed + 10,
                "diff -rq finds every changed file"
            );
        }
        t.elapsed()
    };
    diff(false);
    let mut ref_runs: Vec<Duration> = (0..3).map(|_| diff(true)).collect();
    ref_runs.sort();
    let reference = ref_runs[1];

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "merge of the two heads (median of 3; merged root {}, {conflicts} conflict copies):",
        merged_root.unwrap()
    );
    println!(
        "  read base, ours, theirs from the repo  {:>8.0} ms",
        ms(read)
    );
    println!(
        "  merge + write + flush                  {:>8.0} ms",
        ms(total - read)
    );
    println!(
        "  total                                  {:>8.0} ms",
        ms(total)
    );
    println!(
        "  diff -rq of the two plain folders      {:>8.0} ms  (merge {:.2}x)",
        ms(reference),
        total.as_secs_f64() / reference.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
}

fn write_plain(dir: &Path, files: u64, text: impl Fn(u64) -> String) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i:06}.txt")), text(i)).unwrap();
    }
}
