//! Whole user flows through the real `cairn` binary, offline: add/cat/get/ls round trips, pins and
//! GC, CAR export/import between repos, raw blocks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use cairn_tests::{pseudo_random, TestRepo};

#[test]
fn add_get_cat_ls_round_trip_a_tree() {
    let r = TestRepo::new();
    let src = r.path("src");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("d/e/big.bin"), pseudo_random(2_000_000, 1)).unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    std::fs::write(src.join("ñame with spaces.txt"), b"text\n").unwrap();
    std::os::unix::fs::symlink("d/e/big.bin", src.join("link")).unwrap();
    let out = r.cairn(&["add", "-r", "src"]).expect_ok();
    let root = out
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(out.lines().last().unwrap().ends_with(" src"), "{out}");
    assert!(out.contains(" src/d/e/big.bin"), "{out}");

    r.cairn(&["get", &root, "-o", "copy"]).expect_ok();
    let diff = std::process::Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&src)
        .arg(r.path("copy"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    // get refuses to overwrite.
    r.cairn(&["get", &root, "-o", "copy"])
        .expect_err("already exists");

    let cat = r.cairn(&["cat", &format!("/ipfs/{root}/d/e/big.bin")]);
    assert!(cat.ok() && cat.stdout == pseudo_random(2_000_000, 1));
    let part = r.cairn(&[
        "cat",
        "--offset",
        "1000",
        "--length",
        "10",
        &format!("{root}/d/e/big.bin"),
    ]);
    assert_eq!(part.stdout, pseudo_random(2_000_000, 1)[1000..1010]);
    r.cairn(&["cat", &root]).expect_err("not a file");

    let ls = r.cairn(&["--json", "ls", &root]).expect_ok();
    let names: Vec<String> = ls
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["d", "empty", "link", "zero", "ñame with spaces.txt"]
    );
}

#[test]
fn unpinned_content_is_collected_and_pinned_content_kept() {
    let r = TestRepo::new();
    std::fs::write(r.path("keep"), pseudo_random(700_000, 2)).unwrap();
    std::fs::write(r.path("drop"), pseudo_random(700_000, 3)).unwrap();
    let keep = r
        .cairn(&["add", "-Q", "--pin-name", "mine", "keep"])
        .expect_ok();
    let drop = r.cairn(&["add", "-Q", "--pin=false", "drop"]).expect_ok();
    assert!(r
        .cairn(&["pin", "ls"])
        .expect_ok()
        .contains(&format!("{keep} recursive mine")));
    let gc = r.cairn(&["--json", "repo", "gc", "-Q"]).expect_ok();
    let gc: serde_json::Value = serde_json::from_str(gc.lines().last().unwrap()).unwrap();
    assert_eq!(gc["removed_blocks"], 4, "{gc}");
    r.cairn(&["cat", &drop]).expect_err("not found locally");
    assert_eq!(r.cairn(&["cat", &keep]).stdout, pseudo_random(700_000, 2));

    r.cairn(&["pin", "rm", &keep]).expect_ok();
    r.cairn(&["pin", "rm", &keep]).expect_err("not pinned");
    r.cairn(&["repo", "gc"]).expect_ok();
    let stat: serde_json::Value =
        serde_json::from_str(&r.cairn(&["--json", "repo", "stat"]).expect_ok()).unwrap();
    assert_eq!(stat["blocks"], 0, "{stat}");
}

#[test]
fn car_export_import_moves_a_dag_between_repos() {
    let a = TestRepo::new();
    let b = TestRepo::new();
    std::fs::create_dir_all(a.path("t/sub")).unwrap();
    std::fs::write(a.path("t/sub/f"), pseudo_random(1_500_000, 4)).unwrap();
    let root = a
        .cairn(&["add", "-r", "-Q", "--cid-version", "0", "t"])
        .expect_ok();
    assert!(root.starts_with("Qm"));
    let car = a.cairn(&["dag", "export", &root]);
    assert!(car.ok(), "{}", car.stderr);
    std::fs::write(b.path("x.car"), &car.stdout).unwrap();
    let imported = b.cairn(&["dag", "import", "x.car"]).expect_ok();
    assert!(imported.contains(&root), "{imported}");
    assert!(b.cairn(&["pin", "ls"]).expect_ok().contains(&root));
    b.cairn(&["pin", "verify"]).expect_ok();
    assert_eq!(
        b.cairn(&["cat", &format!("{root}/sub/f")]).stdout,
        pseudo_random(1_500_000, 4)
    );
    // From stdin too, and a truncated CAR is refused without pinning anything.
    let c = TestRepo::new();
    let half = &car.stdout[..car.stdout.len() / 2];
    c.cairn_stdin(&["dag", "import"], half).expect_err("");
    assert_eq!(c.cairn(&["pin", "ls"]).expect_ok(), "");
    c.cairn_stdin(&["dag", "import"], &car.stdout).expect_ok();
}

#[test]
fn raw_blocks_and_hash_choices() {
    let r = TestRepo::new();
    let cid = r
        .cairn_stdin(&["block", "put"], b"hello world\n")
        .expect_ok();
    assert_eq!(
        cid,
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );
    assert_eq!(r.cairn(&["block", "get", &cid]).stdout, b"hello world\n");
    let stat = r.cairn(&["block", "stat", &cid]).expect_ok();
    assert!(stat.contains("Size: 12"), "{stat}");
    let b3 = r
        .cairn_stdin(&["block", "put", "--hash", "blake3"], b"hello world\n")
        .expect_ok();
    assert_ne!(b3, cid);
    assert_eq!(r.cairn(&["block", "get", &b3]).stdout, b"hello world\n");
    r.cairn_stdin(&["block", "put", "--format", "dag-pb"], b"\xff\xff")
        .expect_err("dag-pb");
    std::fs::write(r.path("f"), pseudo_random(600_000, 5)).unwrap();
    let blake = r.cairn(&["add", "-Q", "--hash", "blake3", "f"]).expect_ok();
    assert_eq!(r.cairn(&["cat", &blake]).stdout, pseudo_random(600_000, 5));
    let cdc = r
        .cairn(&["add", "-Q", "--chunker", "fastcdc-16384-65536-262144", "f"])
        .expect_ok();
    assert_eq!(r.cairn(&["cat", &cdc]).stdout, pseudo_random(600_000, 5));
    let only = r
        .cairn(&[
            "add",
            "-Q",
            "--only-hash",
            "--chunker",
            "fastcdc-16384-65536-262144",
            "f",
        ])
        .expect_ok();
    assert_eq!(only, cdc);
}
