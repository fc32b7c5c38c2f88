//! cairn's importer against an independent implementation: the JS `ipfs-unixfs-importer`
//! (tests/interop/cids.mjs, installed by scripts/interop-setup.sh).
//!
//! Without Node.js or the npm modules this test FAILS, unless `CAIRN_SKIP_INTEROP=1` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use cairn_tests::pseudo_random;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn_store::{import_path, import_reader, ImportEvent, ImportOptions, NullSink};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Makes sure the JS importer is installed; `None` means "skip" (CAIRN_SKIP_INTEROP=1).
fn js_importer() -> Option<PathBuf> {
    if std::env::var("CAIRN_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("CAIRN_SKIP_INTEROP=1: skipping the JS interop comparison");
        return None;
    }
    let dir = repo_root().join("tests/interop");
    let setup = repo_root().join("scripts/interop-setup.sh");
    let status = Command::new("bash").arg(&setup).status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "interop test needs Node.js >= 20 and npm to install the JS ipfs-unixfs-importer \
             ({} failed: {other:?}). Install node/npm and run it, or set CAIRN_SKIP_INTEROP=1 to skip.",
            setup.display()
        ),
    }
    Some(dir)
}

#[derive(Debug)]
struct JsResult {
    root: String,
    entries: BTreeMap<String, String>,
}

/// Runs one node process for a batch of jobs.
fn js_cids(dir: &Path, jobs: &[serde_json::Value]) -> Vec<JsResult> {
    let mut child = Command::new("node")
        .arg(dir.join("cids.mjs"))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run node (needed for interop; CAIRN_SKIP_INTEROP=1 skips): {e}")
        });
    let input = serde_json::json!({ "jobs": jobs }).to_string();
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write jobs to node");
    let out = child.wait_with_output().expect("node ran");
    assert!(
        out.status.success(),
        "node cids.mjs failed: {:?}",
        out.status
    );
    let text = String::from_utf8(out.stdout).expect("node prints UTF-8");
    let results: Vec<JsResult> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("node prints JSON lines");
            let entries = v["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or("").to_string(),
                        e["cid"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            JsResult {
                root: v["root"].as_str().expect("a root CID").to_string(),
                entries,
            }
        })
        .collect();
    assert_eq!(results.len(), jobs.len(), "node answered every job");
    results
}

fn cairn_cids(path: &Path, opts: &ImportOptions) -> (String, BTreeMap<String, String>) {
    let mut entries = BTreeMap::new();
    let root = import_path(path, opts, &NullSink, &mut |ev| {
        if let ImportEvent::Added { cid, path, .. } = ev {
            entries.insert(path, cid.to_string());
        }
    })
    .unwrap_or_else(|e| panic!("cairn import of {} failed: {e}", path.display()));
    (root.cid.to_string(), entries)
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, data).expect("write fixture");
}

/// Files of the sizes that break things, a mixed tree and a directory big enough to shard.
fn fixtures(root: &Path) -> Vec<PathBuf> {
    const K256: usize = 262_144;
    let sizes = [
        0,
        1,
        1000,
        K256 - 1,
        K256,
        K256 + 1,
        1 << 20,
        10 << 20,
        174 * K256 + 12_345,
    ];
    let mut paths = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let p = root.join(format!("file-{size}.bin"));
        write(&p, &pseudo_random(size, i as u64 + 1));
        paths.push(p);
    }

    let tree = root.join("tree");
    write(&tree.join("a.txt"), b"hello world\n");
    write(&tree.join(".hidden"), b"hidden files are included\n");
    write(
        &tree.join("sub/nested/deep.bin"),
        &pseudo_random(300_000, 42),
    );
    write(&tree.join("sub/b.txt"), b"bee\n");
    write(&tree.join("ünïcødé/日本語.txt"), "こんにちは\n".as_bytes());
    write(&tree.join("Zebra"), b"upper case sorts first\n");
    fs::create_dir_all(tree.join("empty")).expect("mkdir empty");
    fs::create_dir_all(tree.join("sub/empty-too")).expect("mkdir empty-too");
    #[cfg(unix)]
    std::os::unix::fs::symlink("sub/b.txt", tree.join("link-to-b")).expect("symlink");
    #[cfg(unix)]
    std::os::unix::fs::symlink("/nonexistent/dangling", tree.join("dangling")).expect("symlink");
    paths.push(tree);

    // ~3000 entries * (~70 name bytes + 34..36 CID bytes) > 256 KiB: sharded, with sub-shards.
    let big = root.join("bigdir");
    for i in 0..3000 {
        let name = format!("entry-{i:05}-with-a-fairly-long-name-to-fill-the-directory-node.txt");
        write(&big.join(name), format!("{i}\n").as_bytes());
    }
    write(
        &big.join("a-subdir/inside.txt"),
        b"inside a sharded directory\n",
    );
    fs::create_dir_all(big.join("an-empty-subdir")).expect("mkdir");
    paths.push(big);
    paths
}

/// Directories the JS importer does not list under their own path: empty directories, and
/// directories inside a sharded one (it reports those under the shard's path). cairn lists every
/// directory, as Kubo does; the parents' CIDs still prove these directories are identical.
const JS_UNLISTED: [&str; 4] = [
    "tree/empty",
    "tree/sub/empty-too",
    "bigdir/an-empty-subdir",
    "bigdir/a-subdir",
];

#[test]
fn cids_match_the_js_importer() {
    let Some(js_dir) = js_importer() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = fixtures(tmp.path());
    let settings = [(0u8, false), (1u8, true)];

    let mut jobs = Vec::new();
    for &(v, raw) in &settings {
        for p in &paths {
            jobs.push(serde_json::json!({ "path": p, "cidVersion": v, "rawLeaves": raw }));
        }
    }
    let js = js_cids(&js_dir, &jobs);

    let mut i = 0;
    let mut checked = 0;
    for &(v, raw) in &settings {
        let mut opts = ImportOptions::with_cid_version(v);
        opts.raw_leaves = raw;
        for p in &paths {
            let (root, entries) = cairn_cids(p, &opts);
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert_eq!(
                root, js[i].root,
                "root CID of {name} (cidv{v}, raw_leaves={raw})"
            );
            let mut listed = entries.clone();
            listed.retain(|path, _| !JS_UNLISTED.contains(&path.as_str()));
            let diff: Vec<_> = listed
                .iter()
                .map(|(p, c)| (p, Some(c)))
                .chain(
                    js[i]
                        .entries
                        .keys()
                        .filter(|p| !listed.contains_key(*p))
                        .map(|p| (p, None)),
                )
                .filter(|(p, c)| js[i].entries.get(*p) != *c)
                .map(|(p, c)| format!("{p}: cairn {c:?} js {:?}", js[i].entries.get(p)))
                .collect();
            assert!(
                diff.is_empty(),
                "entry CIDs under {name} (cidv{v}, raw_leaves={raw}) differ:\n{}",
                diff.join("\n")
            );
            eprintln!(
                "cidv{v} raw={raw:<5} {name:<24} {root} ({} entries)",
                entries.len()
            );
            checked += entries.len();
            i += 1;
        }
    }
    eprintln!("{checked} entry CIDs equal to the JS importer's");
}

#[test]
fn known_vectors_from_interop_md() {
    let hello = b"hello world\n";
    let v0 = import_reader(
        &hello[..],
        &ImportOptions::with_cid_version(0),
        &NullSink,
        &mut |_| {},
    )
    .expect("import");
    assert_eq!(
        v0.cid.to_string(),
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    );
    assert_eq!(v0.size, 12);
    let v1 = import_reader(
        &hello[..],
        &ImportOptions::default(),
        &NullSink,
        &mut |_| {},
    )
    .expect("import");
    assert_eq!(
        v1.cid.to_string(),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );

    let empty = import_reader(
        &b""[..],
        &ImportOptions::with_cid_version(0),
        &NullSink,
        &mut |_| {},
    )
    .expect("import");
    assert_eq!(
        empty.cid.to_string(),
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    );
    let empty_raw =
        import_reader(&b""[..], &ImportOptions::default(), &NullSink, &mut |_| {}).expect("import");
    assert_eq!(
        empty_raw.cid.to_string(),
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("empty-dir");
    fs::create_dir(&dir).expect("mkdir");
    let d = import_path(
        &dir,
        &ImportOptions::with_cid_version(0),
        &NullSink,
        &mut |_| {},
    )
    .expect("import");
    assert_eq!(
        d.cid.to_string(),
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
}
