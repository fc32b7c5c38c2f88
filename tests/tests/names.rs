//! IPNS names in the CLI, as Kubo users write them: `cairn name resolve|publish` and
//! `/ipns/<name>[/path]` in the read commands, for the shares of this repo.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fs;

use cairn_tests::TestRepo;
use serde_json::Value;

fn json(r: &TestRepo, args: &[&str]) -> Vec<Value> {
    r.json(args)
}

#[test]
fn ipns_paths_resolve_to_a_shares_head_in_every_read_command() {
    let r = TestRepo::new();
    let src = r.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/note.txt"), "hello names\n").unwrap();
    let share = &json(&r, &["share", "new", "n", "--from", src.to_str().unwrap()])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let root = share["root"].as_str().unwrap().to_string();

    let resolved = &json(&r, &["name", "resolve", &name])[0];
    assert_eq!(resolved["value"], format!("/ipfs/{root}"));
    assert_eq!(resolved["sequence"], 1);
    assert_eq!(
        r.cairn(&["name", "resolve", &format!("/ipns/{name}/sub")])
            .expect_ok(),
        format!("/ipfs/{root}/sub")
    );
    let ipns = format!("/ipns/{name}/sub/note.txt");
    assert_eq!(r.cairn(&["cat", &ipns]).expect_ok(), "hello names");
    assert_eq!(
        r.cairn(&["cat", &format!("{name}/sub/note.txt")])
            .expect_ok(),
        "hello names"
    );
    assert!(r
        .cairn(&["ls", &format!("/ipns/{name}/sub")])
        .expect_ok()
        .contains("note.txt"));
    let out = r.path("got.txt");
    r.cairn(&["get", &ipns, "-o", out.to_str().unwrap()])
        .expect_ok();
    assert_eq!(fs::read(&out).unwrap(), b"hello names\n");
    r.cairn(&["pin", "add", &format!("/ipns/{name}")])
        .expect_ok();
    assert!(r.cairn(&["pin", "ls"]).expect_ok().contains(&root));

    // Publishing by hand: a directory becomes the next version, and names follow it.
    let other = r.path("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("v2.txt"), "second\n").unwrap();
    let added = r
        .cairn(&["add", "-r", "-Q", other.to_str().unwrap()])
        .expect_ok();
    let published = &json(&r, &["name", "publish", "--key", "n", &added])[0];
    assert_eq!(published["sequence"], 2, "{published}");
    assert_eq!(published["value"], format!("/ipfs/{added}"));
    assert_eq!(
        r.cairn(&["cat", &format!("/ipns/{name}/v2.txt")])
            .expect_ok(),
        "second"
    );
    assert_eq!(json(&r, &["share", "log", "n"]).len(), 2);
    // A file is not a version.
    let file = r
        .cairn(&["add", "-Q", other.join("v2.txt").to_str().unwrap()])
        .expect_ok();
    r.cairn(&["name", "publish", "--key", "n", &file])
        .expect_err("is a");

    // The share mounts by its /ipns/ path too.
    let m = r.mount(&format!("/ipns/{name}"), &r.path("mnt"));
    assert_eq!(fs::read(m.dir.join("v2.txt")).unwrap(), b"second\n");
}

#[test]
fn bad_and_unknown_names_are_refused_clearly() {
    let r = TestRepo::new();
    r.cairn(&["name", "resolve", "/ipns/not-a-name"])
        .expect_err("invalid IPNS name");
    // A valid name of no share here.
    let unknown = "k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w";
    r.cairn(&["name", "resolve", unknown])
        .expect_err("no record of /ipns/");
    r.cairn(&["cat", &format!("/ipns/{unknown}/x")])
        .expect_err("no record of /ipns/");
    let e = r.cairn(&["--json", "name", "resolve", unknown]);
    assert!(!e.ok());
    assert!(e.stderr.contains("\"not_found\""), "{}", e.stderr);
    let name = r.json(&["share", "new", "ro"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    r.cairn(&["name", "publish", "--key", "nosuch", "bafkqaaa"])
        .expect_err("nosuch");
    // While its writable mount runs, the mount's commits publish it.
    let root = r.json(&["share", "log", "ro"])[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    let m = r.mount("ro", &r.path("mnt"));
    r.cairn(&["name", "publish", "--key", "ro", &root])
        .expect_err("mounted writable");
    drop(m);
    // Without the key, nothing can be published.
    fs::remove_file(r.repo().join("shares").join(&name).join("key")).unwrap();
    r.cairn(&["name", "publish", "--key", "ro", &root])
        .expect_err("does not hold its key");
}
