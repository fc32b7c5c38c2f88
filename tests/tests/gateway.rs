//! The daemon's HTTP gateway through `curl`, as users and other IPFS clients call it: files of
//! every shape (empty, one leaf, many leaves, unicode names, symlinks) with their headers and
//! ranges, directories (listing, `index.html`, redirect, HAMT), the trustless formats (raw
//! block, CAR of every scope, imported into another repo to check them), `/ipns/` for a
//! share, and the error statuses (400, 404, 405, 504).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use cairn_tests::{pseudo_random, Daemon, TestRepo};

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// `curl` of `url` (`-I` for HEAD) with extra header lines.
fn curl(repo: &TestRepo, url: &str, head: bool, headers: &[&str]) -> Resp {
    let (hfile, bfile) = (repo.path("curl.headers"), repo.path("curl.body"));
    let _ = fs::remove_file(&bfile);
    let mut c = Command::new("curl");
    c.args(["-s", "-S", "--max-time", "60", "-D"])
        .arg(&hfile)
        .arg("-o")
        .arg(&bfile)
        .args(["-w", "%{http_code}"]);
    if head {
        c.arg("-I");
    }
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c.arg(url).output().expect("run curl (apt install curl)");
    let status: u16 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let mut map = HashMap::new();
    for line in fs::read_to_string(&hfile).unwrap_or_default().lines() {
        if let Some((k, v)) = line.split_once(':') {
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Resp {
        status,
        headers: map,
        body: fs::read(&bfile).unwrap_or_default(),
    }
}

fn get(repo: &TestRepo, url: &str) -> Resp {
    curl(repo, url, false, &[])
}

/// The CID of `path` below `root`, from `cairn ls` of its directory.
fn cid_of(repo: &TestRepo, root: &str, dir: &str, name: &str) -> String {
    let at = if dir.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{dir}")
    };
    repo.json(&["ls", &at])
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {at}"))["cid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn make_tree(dir: &Path) -> Vec<u8> {
    fs::create_dir_all(dir.join("page")).unwrap();
    fs::create_dir_all(dir.join("plain/deeper")).unwrap();
    fs::write(dir.join("empty.txt"), b"").unwrap();
    fs::write(dir.join("small.txt"), b"hello, gateway\n").unwrap();
    let big = pseudo_random(3 * 1024 * 1024 + 12_345, 7);
    fs::write(dir.join("big.bin"), &big).unwrap();
    fs::write(dir.join("ünï cødé 名前.txt"), "unicode\n").unwrap();
    fs::write(dir.join("page/index.html"), "<h1>the index</h1>\n").unwrap();
    fs::write(dir.join("page/other.txt"), "other\n").unwrap();
    fs::write(dir.join("plain/deeper/x.txt"), "x\n").unwrap();
    std::os::unix::fs::symlink("small.txt", dir.join("link")).unwrap();
    big
}

/// A repo holding [`make_tree`] (plus what `extra` writes into it), its root CID, and its
/// daemon with the gateway's URL. `config`: `config set` pairs applied before it starts.
fn served(
    extra: impl FnOnce(&Path),
    config: &[(&str, &str)],
) -> (TestRepo, Vec<u8>, String, Daemon, String) {
    let repo = TestRepo::new();
    repo.use_loopback_network();
    for (k, v) in config {
        repo.cairn(&["config", "set", k, v]).expect_ok();
    }
    let src = repo.path("src");
    let big = make_tree(&src);
    extra(&src);
    let root = repo
        .json(&["add", "-r", src.to_str().unwrap()])
        .last()
        .unwrap()["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let d = repo.daemon();
    let gw = d.gateway_url();
    (repo, big, root, d, gw)
}

#[test]
fn files_and_directories_come_with_their_types_tags_ranges_and_pages() {
    let (repo, big, root, d, gw) = served(|_| {}, &[]);
    let url = |p: &str| format!("{gw}/ipfs/{root}{p}");

    // One leaf: type from the name, length, the CID as ETag, immutable caching.
    let r = get(&repo, &url("/small.txt"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, gateway\n");
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.header("content-length"), "15");
    let small = cid_of(&repo, &root, "", "small.txt");
    assert_eq!(r.header("etag"), format!("\"{small}\""));
    assert!(
        r.header("cache-control").contains("immutable"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("accept-ranges"), "bytes");
    // Revalidation by ETag.
    let etag = format!("If-None-Match: \"{small}\"");
    assert_eq!(curl(&repo, &url("/small.txt"), false, &[&etag]).status, 304);
    // Empty.
    let r = get(&repo, &url("/empty.txt"));
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), "0");
    // Many leaves, whole and by range.
    let size = big.len();
    let r = get(&repo, &url("/big.bin"));
    assert_eq!(r.status, 200);
    assert!(r.body == big, "the big file's bytes differ");
    assert_eq!(r.header("content-type"), "application/octet-stream");
    let r = curl(&repo, &url("/big.bin"), true, &[]);
    // With -I curl writes the headers where the body would go: no payload follows them.
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"HTTP/1.1 200") && r.body.len() < 2000);
    assert_eq!(r.header("content-length"), size.to_string());
    let r = curl(
        &repo,
        &url("/big.bin"),
        false,
        &["Range: bytes=262140-262150"],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &big[262_140..=262_150], "a range across two leaves");
    assert_eq!(
        r.header("content-range"),
        format!("bytes 262140-262150/{size}")
    );
    let r = curl(&repo, &url("/big.bin"), false, &["Range: bytes=-100"]);
    assert_eq!((r.status, &r.body[..]), (206, &big[size - 100..]));
    let r = curl(
        &repo,
        &url("/big.bin"),
        false,
        &["Range: bytes=0-9, 1000000-1000009"],
    );
    assert_eq!(r.status, 206);
    assert!(r
        .header("content-type")
        .starts_with("multipart/byteranges; boundary="));
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains(&format!("Content-Range: bytes 0-9/{size}")),
        "{text}"
    );
    assert!(text.contains(&format!("Content-Range: bytes 1000000-1000009/{size}")));
    assert!(r.body.windows(10).any(|w| w == &big[1_000_000..1_000_010]));
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let r = curl(
        &repo,
        &url("/big.bin"),
        false,
        &[&format!("Range: bytes={size}-")],
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), format!("bytes */{size}"));
    // Unicode names, percent-encoded in the URL.
    let r = get(
        &repo,
        &url("/%C3%BCn%C3%AF%20c%C3%B8d%C3%A9%20%E5%90%8D%E5%89%8D.txt"),
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"unicode\n"[..]));
    // A symlink: its target, not followed.
    let r = get(&repo, &url("/link"));
    assert_eq!((r.status, &r.body[..]), (200, &b"small.txt"[..]));
    // Downloads.
    let r = get(&repo, &url("/small.txt?download=true&filename=s%C3%BC.txt"));
    assert!(
        r.header("content-disposition").starts_with("attachment;")
            && r.header("content-disposition")
                .contains("UTF-8''s%C3%BC%2Etxt"),
        "{:?}",
        r.headers
    );

    // Directories: a redirect to the slash, then the index or a listing.
    let r = get(&repo, &url("/page"));
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), format!("/ipfs/{root}/page/"));
    let r = get(&repo, &url("/page/"));
    assert_eq!((r.status, &r.body[..]), (200, &b"<h1>the index</h1>\n"[..]));
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    let r = get(&repo, &url("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    let page = String::from_utf8_lossy(&r.body).to_string();
    for name in ["small.txt", "big.bin", "page", "plain", "link", "empty.txt"] {
        assert!(page.contains(&format!(">{name}</a>")), "{name} in {page}");
    }
    assert!(page.contains("ünï cødé 名前.txt"), "{page}");
    assert!(page.contains(&small), "the listing shows CIDs");
    assert!(page.contains("3.0 MiB"), "the listing shows sizes: {page}");
    assert!(!page.contains("href=\"../\""), "no parent link at the root");
    let r = get(&repo, &url("/plain/deeper/"));
    let page = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        page.contains("href=\"../\""),
        "a parent link below the root"
    );
    assert!(
        page.contains(&format!("href=\"/ipfs/{root}/plain/\"")),
        "breadcrumbs link each level: {page}"
    );
    drop(d);
}

#[test]
fn trustless_responses_are_blocks_and_cars_another_repo_can_verify() {
    // A directory big enough to be a HAMT.
    let many = |src: &Path| {
        let many = src.join("many");
        fs::create_dir_all(&many).unwrap();
        for i in 0..3000 {
            fs::write(
                many.join(format!("a-file-with-a-long-name-to-make-shards-{i:05}.txt")),
                format!("{i}\n"),
            )
            .unwrap();
        }
    };
    let (repo, big, root, d, gw) = served(many, &[]);
    let url = |p: &str| format!("{gw}/ipfs/{root}{p}");

    // A raw block: its bytes hash to its CID (a fresh repo takes it only if they do).
    let small = cid_of(&repo, &root, "", "small.txt");
    let r = get(&repo, &format!("{gw}/ipfs/{small}?format=raw"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/vnd.ipld.raw");
    assert_eq!(r.body, b"hello, gateway\n");
    let r2 = curl(
        &repo,
        &format!("{gw}/ipfs/{small}"),
        false,
        &["Accept: application/vnd.ipld.raw"],
    );
    assert_eq!(r2.header("content-type"), "application/vnd.ipld.raw");

    // The whole DAG as a CAR, imported into another repo: the same tree comes out.
    let other = TestRepo::new();
    let import = |name: &str, body: &[u8]| -> serde_json::Value {
        let path = other.path(name);
        fs::write(&path, body).unwrap();
        other.json(&["dag", "import", path.to_str().unwrap()])[0].clone()
    };
    let r = get(&repo, &url("?format=car"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    import("all.car", &r.body);
    let out = other.path("out");
    other
        .cairn(&["get", &root, "-o", out.to_str().unwrap()])
        .expect_ok();
    assert!(fs::read(out.join("big.bin")).unwrap() == big);
    assert_eq!(fs::read_dir(out.join("many")).unwrap().count(), 3000);

    // Scopes: a path's CAR holds the path's blocks, then the scope at its end.
    let count = |body: &[u8]| -> u64 {
        let fresh = TestRepo::new();
        let p = fresh.path("x.car");
        fs::write(&p, body).unwrap();
        // A partial DAG: its blocks are taken (each verified), its root cannot be pinned.
        fresh.json(&["dag", "import", "--pin-roots=false", p.to_str().unwrap()])[0]["blocks"]
            .as_u64()
            .unwrap()
    };
    let block = get(&repo, &url("/big.bin?format=car&dag-scope=block"));
    assert_eq!(
        count(&block.body),
        2,
        "the root directory and the file's root"
    );
    let entity = get(&repo, &url("/big.bin?format=car&dag-scope=entity"));
    let leaves = big.len().div_ceil(256 * 1024) as u64;
    assert_eq!(count(&entity.body), 2 + leaves, "every leaf of the file");
    let part = get(&repo, &url("/big.bin?format=car&entity-bytes=0:10"));
    assert_eq!(count(&part.body), 3, "the first leaf alone");
    let tail = get(&repo, &url("/big.bin?format=car&entity-bytes=-10:*"));
    assert_eq!(count(&tail.body), 3, "the last leaf alone");
    // A HAMT directory's entity: its shards, not its entries' files.
    let hamt = get(&repo, &url("/many?format=car&dag-scope=entity"));
    let shards = count(&hamt.body);
    assert!((2..3001).contains(&shards), "{shards} blocks");
    let whole = get(&repo, &url("/many?format=car"));
    assert_eq!(
        count(&whole.body),
        shards + 3000 - 1 + 1,
        "shards, root dir and 3000 files"
    );
    // The listing of a HAMT directory.
    let r = get(&repo, &url("/many/"));
    assert_eq!(r.status, 200);
    let page = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        page.contains("3000 entries"),
        "{}",
        &page[..page.len().min(2000)]
    );
    let r = get(
        &repo,
        &url("/many/a-file-with-a-long-name-to-make-shards-02999.txt"),
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"2999\n"[..]));
    drop(d);
}

#[test]
fn bad_requests_missing_paths_and_unreachable_content_get_their_statuses() {
    let (repo, _, root, d, gw) = served(|_| {}, &[("network.fetch_timeout_secs", "2")]);
    let r = get(&repo, &format!("{gw}/ipfs/not-a-cid"));
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("invalid CID"));
    assert_eq!(get(&repo, &format!("{gw}/ipns/not-a-name")).status, 400);
    assert_eq!(
        get(&repo, &format!("{gw}/ipfs/{root}/nope.txt")).status,
        404
    );
    assert_eq!(
        get(&repo, &format!("{gw}/ipfs/{root}/small.txt/below")).status,
        404
    );
    assert_eq!(get(&repo, &format!("{gw}/elsewhere")).status, 404);
    assert_eq!(
        get(&repo, &format!("{gw}/ipfs/{root}?format=zip")).status,
        400
    );
    let post = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("{gw}/ipfs/{root}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&post.stdout), "405");
    // A block nobody has: 504 within the timeout, not a hang.
    let absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let t = std::time::Instant::now();
    let r = get(&repo, &format!("{gw}/ipfs/{absent}"));
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(
        get(&repo, &format!("{gw}/ipfs/{absent}?format=raw")).status,
        504
    );
    assert_eq!(
        get(&repo, &format!("{gw}/ipfs/{absent}?format=car")).status,
        504
    );
    drop(d);
}

#[test]
fn a_share_is_served_under_ipns_with_a_short_ttl_and_its_record() {
    let repo = TestRepo::new();
    repo.use_loopback_network();
    let src = repo.path("src");
    make_tree(&src);
    let share = &repo.json(&["share", "new", "docs", "--from", src.to_str().unwrap()])[0];
    let name = share["name"].as_str().unwrap().to_string();
    let d = repo.daemon();
    let gw = d.gateway_url();
    let r = get(&repo, &format!("{gw}/ipns/{name}/small.txt"));
    assert_eq!((r.status, &r.body[..]), (200, &b"hello, gateway\n"[..]));
    assert_eq!(r.header("cache-control"), "public, max-age=60");
    let r = get(&repo, &format!("{gw}/ipns/{name}/"));
    assert!(String::from_utf8_lossy(&r.body).contains(">small.txt</a>"));
    let r = get(&repo, &format!("{gw}/ipns/{name}?format=ipns-record"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/vnd.ipfs.ipns-record");
    assert!(!r.body.is_empty());
    drop(d);
}

#[test]
fn slow_parallel_and_vanishing_clients_leave_no_tasks_or_memory_behind() {
    // A file bigger than the socket buffers of a loopback connection can hold, so a slow
    // reader keeps its transfer (and its slot) open.
    let huge = |src: &Path| fs::write(src.join("huge.bin"), pseudo_random(48 << 20, 3)).unwrap();
    let (repo, _, root, d, gw) = served(huge, &[]);
    let url = format!("{gw}/ipfs/{root}/huge.bin");
    let big = fs::read(repo.path("src/huge.bin")).unwrap();
    // Warm up, then the baseline.
    assert!(get(&repo, &url).body == big);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (fds, threads) = (d.open_fds(), d.threads());
    let rss = cairn_tests::vm_kib(d.pid(), "VmRSS:").unwrap();
    // 40 slow readers from one address (48 MiB at 2 KiB/s would take hours): the per-client
    // limit admits 32 of them, the rest get 429.
    let slow: Vec<_> = (0..40)
        .map(|i| {
            Command::new("curl")
                .args([
                    "-s",
                    "--limit-rate",
                    "2k",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .arg(&url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("curl {i}: {e}"))
        })
        .collect();
    // While the admitted ones stall, the refused ones come back with 429 (wait until as many
    // have as the limit leaves out, or 30 s); then every slow client vanishes mid-transfer.
    let mut slow: Vec<_> = slow.into_iter().map(|c| (c, None)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for (c, code) in &mut slow {
            if code.is_none() && c.try_wait().unwrap().is_some() {
                let mut out = String::new();
                std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut out).unwrap();
                *code = Some(out);
            }
        }
        let done = slow.iter().filter(|(_, code)| code.is_some()).count();
        if done >= 40 - gateway_per_client() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut refused = 0;
    for (mut c, code) in slow {
        match code {
            Some(out) => {
                assert_eq!(out, "429", "only refused requests end this early");
                refused += 1;
            }
            None => {
                c.kill().unwrap();
                c.wait().unwrap();
            }
        }
    }
    assert_eq!(refused, 40 - gateway_per_client(), "the per-client limit");
    // Their transfers end, their connections close and their slots free.
    cairn_tests::wait_for(
        30,
        "the vanished clients' connections and tasks to go",
        || (d.open_fds() <= fds + 2 && d.threads() <= threads + 2).then_some(()),
    );
    // Full-speed clients in parallel all get the file.
    let fast: Vec<_> = (0..8)
        .map(|i| {
            let out = repo.path(&format!("fast-{i}"));
            let child = Command::new("curl")
                .args(["-s", "-S", "-f", "--max-time", "60", "-o"])
                .arg(&out)
                .arg(&url)
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    for (mut c, out) in fast {
        assert!(c.wait().unwrap().success());
        assert!(
            fs::read(&out).unwrap() == big,
            "a parallel client's copy differs"
        );
    }
    // Nothing stays behind: descriptors and threads back to the baseline, memory near it.
    cairn_tests::wait_for(30, "the gateway's connections and tasks to go", || {
        (d.open_fds() <= fds + 2 && d.threads() <= threads + 2).then_some(())
    });
    let after = cairn_tests::vm_kib(d.pid(), "VmRSS:").unwrap();
    assert!(
        after < rss + 64 * 1024,
        "the daemon grew from {rss} KiB to {after} KiB"
    );
    drop(d);
}

/// The gateway's per-client limit (`cli/src/gateway.rs`, `PER_CLIENT`).
fn gateway_per_client() -> usize {
    32
}

/// Helia's `@helia/verified-fetch` (pinned in tests/interop/verified-fetch, run on the
/// project's Node 20): an independent client that asks cairn's trustless gateway for raw blocks
/// or CARs and checks every block against its CID before it hands out a byte.
#[test]
fn helias_verified_fetch_reads_files_and_directories_through_the_trustless_gateway() {
    let (repo, big, root, d, gw) = served(|_| {}, &[]);
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/verified-fetch");
    let out = repo.path("vf");
    fs::create_dir_all(&out).unwrap();
    let urls = [
        format!("ipfs://{root}/small.txt"),
        format!("ipfs://{root}/big.bin"),
        format!("ipfs://{root}/empty.txt"),
        format!("ipfs://{root}/%C3%BCn%C3%AF%20c%C3%B8d%C3%A9%20%E5%90%8D%E5%89%8D.txt"),
        format!("ipfs://{root}/page/"),
        format!("ipfs://{root}/|application/vnd.ipld.car"),
    ];
    let run = Command::new("node")
        .current_dir(&client)
        .args(["--import", "./polyfill.mjs", "fetch.mjs", &gw])
        .arg(&out)
        .args(&urls)
        .output()
        .expect("run node (scripts/deps.sh installs it and the client)");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "verified fetch failed: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), urls.len(), "{stdout}");
    let body = |i: usize| {
        assert_eq!(answers[i]["status"], 200, "{}", answers[i]);
        fs::read(answers[i]["file"].as_str().unwrap()).unwrap()
    };
    assert_eq!(body(0), b"hello, gateway\n");
    assert!(
        body(1) == big,
        "the big file through verified fetch differs"
    );
    assert!(body(2).is_empty());
    assert_eq!(body(3), b"unicode\n");
    assert_eq!(body(4), b"<h1>the index</h1>\n", "a directory's index.html");
    // The whole tree as a CAR that verified fetch rebuilt from verified blocks: another repo
    // imports it and has every file.
    let car = body(5);
    let other = TestRepo::new();
    let path = other.path("tree.car");
    fs::write(&path, &car).unwrap();
    other
        .cairn(&["dag", "import", path.to_str().unwrap()])
        .expect_ok();
    let got = other.path("got");
    other
        .cairn(&["get", &root, "-o", got.to_str().unwrap()])
        .expect_ok();
    assert!(fs::read(got.join("big.bin")).unwrap() == big);
    assert_eq!(
        fs::read(got.join("page/index.html")).unwrap(),
        b"<h1>the index</h1>\n"
    );
    drop(d);
}

/// A real browser: headless Chromium (the Debian package) loads a directory listing and a file
/// from the gateway; the rendered DOM is checked and a screenshot of the listing is kept in
/// `target/test-artifacts/gateway-listing.png`.
#[test]
fn a_headless_browser_renders_a_listing_and_a_file() {
    let (repo, _, root, d, gw) = served(|_| {}, &[]);
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium (scripts/deps.sh installs it)");
    let profile = repo.path("chromium-profile");
    let chromium = |args: &[&str], url: &str| {
        let out = Command::new("timeout")
            .arg("120")
            .arg(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let listing = format!("{gw}/ipfs/{root}/");
    let dom = chromium(&["--dump-dom"], &listing);
    for text in [
        "small.txt",
        "big.bin",
        "page",
        "ünï cødé 名前.txt",
        "3.0 MiB",
        &root,
    ] {
        assert!(dom.contains(text), "{text} in the rendered listing: {dom}");
    }
    assert!(dom.contains("<table>") && dom.contains("<nav>"), "{dom}");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("gateway-listing.png");
    let _ = fs::remove_file(&shot);
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1024,768",
        ],
        &listing,
    );
    let png = fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "a real screenshot"
    );
    // A file, rendered as the browser shows text.
    let dom = chromium(&["--dump-dom"], &format!("{gw}/ipfs/{root}/small.txt"));
    assert!(dom.contains("hello, gateway"), "{dom}");
    drop(d);
}

/// A block that fails verification never becomes bytes on the wire: the file's body ends
/// before it (the status was sent with the first block), the block alone is a 504 (no good
/// copy anywhere within the timeout), and a CAR stops before it.
#[test]
fn a_corrupt_block_ends_the_body_short_and_is_never_sent() {
    let repo = TestRepo::new();
    repo.use_loopback_network();
    // A corrupt local block is not used: the daemon asks its peers (there are none) for a good
    // copy, for this long.
    repo.cairn(&["config", "set", "network.fetch_timeout_secs", "2"])
        .expect_ok();
    let data = pseudo_random(600_000, 11);
    fs::write(repo.path("f.bin"), &data).unwrap();
    let root = repo
        .cairn(&["add", "-Q", repo.path("f.bin").to_str().unwrap()])
        .expect_ok();
    let leaf = {
        use cairn_store::Blockstore as _;
        let r = cairn_store::Repo::open(&repo.repo()).unwrap();
        let block = r.store().get(&root.parse().unwrap()).unwrap().unwrap();
        let leaf = cairn_store::PbNode::decode(&block).unwrap().links[1].cid;
        r.store()
            .put_unchecked_for_tests(&leaf, b"rotten bytes")
            .unwrap();
        leaf.to_string()
    };
    let d = repo.daemon();
    let gw = d.gateway_url();
    let out = Command::new("curl")
        .args(["-s", "-o"])
        .arg(repo.path("got"))
        .args(["-w", "%{http_code}"])
        .arg(format!("{gw}/ipfs/{root}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(!out.status.success(), "curl sees the body end short");
    let got = fs::read(repo.path("got")).unwrap();
    assert!(got.len() < data.len(), "{} bytes", got.len());
    assert_eq!(
        got[..],
        data[..got.len()],
        "what came is the file's first bytes"
    );
    assert!(!got.windows(12).any(|w| w == b"rotten bytes"));
    // The block itself: not served (no good copy came within the timeout).
    let r = get(&repo, &format!("{gw}/ipfs/{leaf}?format=raw"));
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(!r.body.windows(12).any(|w| w == b"rotten bytes"));
    let car = get(&repo, &format!("{gw}/ipfs/{root}?format=car"));
    assert!(!car.body.windows(12).any(|w| w == b"rotten bytes"));
    assert!(car.body.len() < data.len());
    drop(d);
}

/// The subdomain gateway: the root in the host name (`<cid>.ipfs.localhost`), one origin per
/// root, as Kubo serves it; a path-gateway URL on such a host goes to its root's subdomain.
#[test]
fn a_root_in_the_host_name_is_served_from_its_own_origin() {
    let (repo, _, root, d, gw) = served(|_| {}, &[]);
    let port = gw.rsplit(':').next().unwrap().to_string();
    let host = format!("Host: {root}.ipfs.localhost:{port}");
    let r = curl(&repo, &format!("{gw}/small.txt"), false, &[&host]);
    assert_eq!((r.status, &r.body[..]), (200, &b"hello, gateway\n"[..]));
    let r = curl(&repo, &format!("{gw}/page/"), false, &[&host]);
    assert_eq!(r.body, b"<h1>the index</h1>\n");
    let r = curl(&repo, &format!("{gw}/"), false, &[&host]);
    assert!(String::from_utf8_lossy(&r.body).contains(">small.txt</a>"));
    // A listing's /ipfs/<cid> link, followed on the subdomain host: to that CID's subdomain.
    let small = cid_of(&repo, &root, "", "small.txt");
    let r = curl(&repo, &format!("{gw}/ipfs/{small}"), false, &[&host]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        format!("http://{small}.ipfs.localhost:{port}/")
    );
    drop(d);
}

#[test]
fn a_bad_or_busy_gateway_address_is_refused_with_what_to_do() {
    let repo = TestRepo::new();
    repo.use_loopback_network();
    repo.cairn(&["daemon", "--gateway", "nonsense"])
        .expect_err("invalid gateway address");
    repo.cairn(&["config", "set", "gateway.listen", "nonsense"])
        .expect_err("is not IP:PORT");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    repo.cairn(&["daemon", "--gateway", &addr])
        .expect_err("--gateway off");
}
