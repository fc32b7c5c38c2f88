//! Writers that may not write a share publish commits on its heads topic, through a real libp2p
//! peer (cairn's own network stack, started in this process beside two real daemons), each
//! commit correctly signed by its writer's key and naming a version whose blocks the peer
//! serves: a key that was never a member; the same key with a member list it signed itself,
//! naming itself; and a member after its revocation (whose commit from before the revocation
//! was merged, as it should be), who then signs a record of the share with the key it was
//! given to publish, naming its refused commit. The owner refuses each, says so in its log, and neither its
//! mount nor its history changes; a follower of the share never shows them and keeps following
//! the owner's versions. A member's head whose blocks are out of reach when it arrives is taken once
//! they are (the owner tries again).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_net::{MemoryStore, NetConfig, NetSource, Node};
use cairn_store::commit::{Commit, CommitFields};
use cairn_store::identity::{read_version, write_version};
use cairn_store::merge::{Content, Entry, ROOT};
use cairn_store::{
    Block, BlockSink, Blockstore, CborValue, DagReader, HashAlg, ImportOptions, IpnsName,
    IpnsRecord, Member, MemberList, RecordFields, RecordValue, ShareKey, FIELD_COMMIT, RAW,
};
use cairn_tests::{wait_for, TestRepo};

/// A commit by `writer` on `tip` adding `file` (name, content), naming member list `members`.
struct Forge<'a> {
    writer: &'a ShareKey,
    tip: &'a Commit,
    file: (&'a str, &'a str),
    members: cairn_store::Cid,
    seq: u64,
}

/// A peer that speaks for writers who may not write (see the module notes).
struct Intruder {
    node: Node,
    store: Arc<MemoryStore>,
    share: IpnsName,
    heads: tokio::sync::Mutex<tokio::sync::broadcast::Receiver<cairn_net::HeadEvent>>,
}

impl Intruder {
    /// The first head the owner announces (from now on) that `wanted` accepts: the owner
    /// announces its head to a new subscriber and whenever its tip moves.
    async fn owner_head(&self, wanted: impl Fn(&Commit) -> bool) -> Commit {
        let mut heads = self.heads.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ev = tokio::time::timeout_at(deadline, heads.recv())
                .await
                .expect("the owner announces its head")
                .unwrap();
            let c = Commit::verify(&ev.commit, &self.share).unwrap();
            if c.writer == self.share && wanted(&c) {
                return c;
            }
        }
    }

    /// Commit `f` (its version served from here), announced on the share's heads topic.
    async fn publish(&self, f: Forge<'_>) -> Commit {
        let (c, blocks) = self.prepare(f).await;
        self.serve(blocks);
        self.announce(&c).await;
        c
    }

    /// As [`Intruder::publish`], but the new version's blocks are not served: returned.
    async fn publish_withheld(&self, f: Forge<'_>) -> (Commit, Vec<Block>) {
        let (c, blocks) = self.prepare(f).await;
        self.announce(&c).await;
        (c, blocks)
    }

    /// Serves `blocks` from now on.
    fn serve(&self, blocks: Vec<Block>) {
        for b in &blocks {
            self.store.put(b).unwrap();
        }
    }

    /// Commit `f`, and the blocks of its version.
    async fn prepare(&self, f: Forge<'_>) -> (Commit, Vec<Block>) {
        let Forge {
            writer,
            tip,
            file,
            members,
            seq,
        } = f;
        let reader = DagReader::new(NetSource::new(self.node.clone()));
        let mut tree = read_version(&reader, tip.root, Some(tip.ids))
            .await
            .unwrap();
        let data = Block::encode(1, RAW, HashAlg::Sha2_256, file.1.as_bytes().to_vec().into());
        let id = cairn_store::merge::hashed_id(b"intruder\0", &[file.0.as_bytes()]);
        tree.nodes.insert(
            id,
            Entry {
                parent: ROOT,
                name: file.0.into(),
                content: Content::File {
                    cid: *data.cid(),
                    size: file.1.len() as u64,
                },
            },
        );
        let held = Collect::default();
        let w = write_version(&tree, &ImportOptions::default(), &held).unwrap();
        let mut blocks = held.0.into_inner().unwrap();
        blocks.push(data);
        let c = Commit::create(
            writer,
            &CommitFields {
                share: self.share,
                seq,
                parents: vec![*tip.block().cid()],
                root: w.root,
                ids: w.ids,
                members,
                time: SystemTime::now(),
            },
        )
        .unwrap();
        blocks.push(c.block());
        (c, blocks)
    }

    /// Announces `c` on the share's heads topic.
    async fn announce(&self, c: &Commit) {
        // Until a peer of the topic has heard it (the mesh forms a moment after subscribing).
        for _ in 0..100 {
            if self
                .node
                .announce_head(self.share, c.as_bytes().to_vec())
                .await
                .unwrap()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no peer of the heads topic heard the commit");
    }
}

/// Keeps the blocks a version is written as.
#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<Block>>);

impl BlockSink for Collect {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), cairn_store::StoreError> {
        self.0.lock().unwrap().extend(blocks);
        Ok(())
    }
}

fn log_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn commits_of_non_members_forged_lists_and_revoked_writers_are_refused_and_followers_unaffected() {
    let (a, c) = (TestRepo::new(), TestRepo::new());
    a.use_loopback_network();
    c.use_loopback_network();
    let src = a.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello.txt"), "hello\n").unwrap();
    let share = &a.json(&["share", "new", "team", "--from", src.to_str().unwrap()])[0];
    let name: IpnsName = share["name"].as_str().unwrap().parse().unwrap();
    let id = name.to_string();
    let da = a.daemon();
    let dc = c.daemon();
    c.cairn(&["swarm", "connect", &da.tcp_addr()]).expect_ok();
    wait_for(30, "the share at the follower", || {
        c.cairn(&["name", "resolve", &id]).ok().then_some(())
    });
    let aw = a.path("a-mnt");
    let cw = c.path("c-mnt");
    fs::create_dir_all(&aw).unwrap();
    fs::create_dir_all(&cw).unwrap();
    assert_eq!(
        a.json(&["mount", "team", aw.to_str().unwrap()])[0]["writable"],
        true
    );
    let _ga = cairn_tests::MountGuard(aw.clone());
    assert_eq!(
        c.json(&["mount", &id, cw.to_str().unwrap()])[0]["writable"],
        false,
        "a follower that is no member mounts read-only"
    );
    let _gc = cairn_tests::MountGuard(cw.clone());
    wait_for(30, "hello.txt at the follower", || {
        cw.join("hello.txt").exists().then_some(())
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    // Trudy is the peer's own identity (a member's key is its peer id); Mallory a key of her own.
    let trudy_seed = [0x54; 32];
    let trudy = ShareKey::from_seed(&trudy_seed);
    let mallory = ShareKey::from_seed(&[0x4d; 32]);
    let intruder = rt.block_on(async {
        let store = Arc::new(MemoryStore::new());
        let node = Node::start(NetConfig::local(), trudy_seed, store.clone())
            .await
            .unwrap();
        node.connect(&da.tcp_addr()).await.unwrap();
        node.connect(&dc.tcp_addr()).await.unwrap();
        let heads = tokio::sync::Mutex::new(node.head_events());
        node.serve_heads(name).await.unwrap();
        Intruder {
            node,
            store,
            share: name,
            heads,
        }
    });
    let tip = rt.block_on(intruder.owner_head(|_| true));

    // 1. Mallory was never a member: her commit names the share's real member list.
    let refused = "refused a head that is not a member's";
    rt.block_on(intruder.publish(Forge {
        writer: &mallory,
        tip: &tip,
        file: ("mallory.txt", "from a key that was never a member\n"),
        members: tip.members,
        seq: 1,
    }));
    wait_for(30, "the owner to refuse mallory's commit", || {
        (log_lines(&da.log(), refused) >= 1).then_some(())
    });

    // 2. Mallory signs a member list of her own for the share, naming herself.
    let forged = MemberList::create(
        &mallory,
        1000,
        None,
        BTreeMap::from([(
            mallory.name().to_string(),
            Member {
                writer: mallory.name(),
                label: "mallory".into(),
                publish: true,
                sealed: None,
            },
        )]),
        BTreeMap::new(),
    )
    .unwrap();
    intruder.store.put(&forged.block()).unwrap();
    rt.block_on(intruder.publish(Forge {
        writer: &mallory,
        tip: &tip,
        file: ("forged.txt", "under a member list the owner never signed\n"),
        members: *forged.block().cid(),
        seq: 2,
    }));
    wait_for(30, "the owner to refuse the forged member list", || {
        da.log()
            .lines()
            .any(|l| l.contains("cannot take another writer's head") && l.contains("member list"))
            .then_some(())
    });

    // 3. Trudy, granted, writes: her commit is merged, as a member's should be.
    a.cairn(&[
        "share",
        "grant",
        "team",
        &intruder.node.peer_id().to_string(),
        "--label",
        "trudy",
        "--publish",
    ])
    .expect_ok();
    let members = a.json(&["share", "members", "team"]);
    assert!(members.iter().any(|m| m["label"] == "trudy"), "{members:?}");
    // Her list is the one the owner's next head names (the grant makes a version).
    let granted_tip = rt.block_on(intruder.owner_head(|t| t.members != tip.members));
    let before = rt.block_on(intruder.publish(Forge {
        writer: &trudy,
        tip: &granted_tip,
        file: ("trudy.txt", "written while a member\n"),
        members: granted_tip.members,
        seq: 1,
    }));
    wait_for(60, "trudy's file on the owner's mount", || {
        aw.join("trudy.txt").exists().then_some(())
    });
    wait_for(60, "trudy's file at the follower", || {
        cw.join("trudy.txt").exists().then_some(())
    });

    // Her next commit's blocks are out of reach when it arrives (as when a writer goes
    // offline right after announcing): the owner tries again and takes it once they are.
    let retries = log_lines(&da.log(), "trying again");
    let (again, held) = rt.block_on(intruder.publish_withheld(Forge {
        writer: &trudy,
        tip: &before,
        file: ("again.txt", "reachable only later\n"),
        members: granted_tip.members,
        seq: 2,
    }));
    wait_for(60, "the owner to say it will try again", || {
        (log_lines(
            &da.log(),
            "cannot take another writer's head yet; trying again",
        ) > retries)
            .then_some(())
    });
    assert!(!aw.join("again.txt").exists());
    intruder.serve(held);
    wait_for(
        120,
        "the withheld commit's file on the owner's mount",
        || aw.join("again.txt").exists().then_some(()),
    );
    let before = again;

    // 4. Revoked, she commits on her own head, naming the list that granted her: refused.
    a.cairn(&[
        "share",
        "revoke",
        "team",
        &intruder.node.peer_id().to_string(),
    ])
    .expect_ok();
    let refusals = log_lines(&da.log(), refused);
    let late = rt.block_on(intruder.publish(Forge {
        writer: &trudy,
        tip: &before,
        file: ("late.txt", "written after the revocation\n"),
        members: granted_tip.members,
        seq: 3,
    }));
    wait_for(
        30,
        "the owner to refuse the revoked writer's commit",
        || (log_lines(&da.log(), refused) > refusals).then_some(()),
    );

    // 5. She kept the share's key (sealed to her in the list that granted her publishing):
    // a record she signs with it, far ahead in sequence, naming her refused commit, is
    // refused by the follower and the owner alike (its commit is not acceptable as a head).
    let share_key = rt.block_on(async {
        let bytes = intruder.node.fetch(granted_tip.members).await.unwrap();
        let list = MemberList::verify(&bytes, &name).unwrap();
        list.publish_key(&trudy)
            .unwrap()
            .expect("trudy was granted publishing")
    });
    assert_eq!(share_key.name(), name);
    let follower_head = c.json(&["share", "log", &id])[0]["sequence"]
        .as_u64()
        .unwrap();
    let mut fields = RecordFields::new(
        RecordValue::ipfs(late.root),
        follower_head + 1000,
        SystemTime::now() + Duration::from_secs(3600),
    );
    fields.extra.insert(
        FIELD_COMMIT.to_string(),
        CborValue::Bytes(late.block().cid().to_bytes()),
    );
    let record = IpnsRecord::create(&share_key, &fields).unwrap();
    let record_refused = "refused a record of a share";
    let (before_c, before_a) = (
        log_lines(&dc.log(), record_refused),
        log_lines(&da.log(), record_refused),
    );
    rt.block_on(async {
        intruder.node.serve_name(name).await.unwrap();
        for _ in 0..100 {
            let put = intruder
                .node
                .put_record(name, record.as_bytes().to_vec())
                .await
                .unwrap();
            if put.pushed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no peer of the share's topic took the record");
    });
    wait_for(
        30,
        "the follower and the owner to refuse the record",
        || {
            (log_lines(&dc.log(), record_refused) > before_c
                && log_lines(&da.log(), record_refused) > before_a)
                .then_some(())
        },
    );
    assert_eq!(
        c.json(&["share", "log", &id])[0]["sequence"]
            .as_u64()
            .unwrap(),
        follower_head,
        "the follower's head did not move"
    );
    // Nor do they keep it for others: a new peer that knows only them and asks the DHT for
    // the share's record gets their own head, not the refused one.
    let pulled = rt.block_on(async {
        let probe = Node::start(NetConfig::local(), [0x50; 32], Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        probe.connect(&da.tcp_addr()).await.unwrap();
        probe.connect(&dc.tcp_addr()).await.unwrap();
        // The daemons join the probe's routing table once identify has run with them: until
        // then a lookup has no one to ask.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let found = loop {
            let found = probe
                .lookup_record(name, Duration::from_secs(10))
                .await
                .unwrap();
            if !found.answered_by.is_empty() || tokio::time::Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        probe.shutdown().await.unwrap();
        found
    });
    assert!(!pulled.answered_by.is_empty(), "no daemon answered");
    let pulled = IpnsRecord::verify(&pulled.record.unwrap(), &name).unwrap();
    assert!(
        pulled.sequence() < follower_head + 1000,
        "a daemon still hands out the refused record"
    );

    // Nothing of the refused commits anywhere: not on the owner's mount, not in its history,
    // not at the follower; and the follower still follows the owner.
    let log = a.json(&["share", "log", "team"]);
    for v in &log {
        assert!(v["writer"] != "mallory", "{log:?}");
    }
    fs::write(aw.join("after.txt"), "the owner goes on\n").unwrap();
    fs::File::open(&aw).unwrap().sync_all().unwrap();
    wait_for(60, "the owner's next version at the follower", || {
        cw.join("after.txt").exists().then_some(())
    });
    for dir in [&aw, &cw] {
        for refused_file in ["mallory.txt", "forged.txt", "late.txt"] {
            assert!(
                !dir.join(refused_file).exists(),
                "{refused_file} reached {}",
                dir.display()
            );
        }
        assert_eq!(
            fs::read_to_string(dir.join("hello.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("trudy.txt")).unwrap(),
            "written while a member\n"
        );
    }
    assert!(
        !dc.log().contains("panicked") && !da.log().contains("panicked"),
        "{}",
        da.log()
    );

    rt.block_on(intruder.node.shutdown()).unwrap();
    drop(rt);
    for (r, dir) in [(&a, &aw), (&c, &cw)] {
        r.cairn(&["unmount", dir.to_str().unwrap()]).expect_ok();
    }
    let (mut da, mut dc) = (da, dc);
    assert_eq!(da.stop(), Some(0));
    assert_eq!(dc.stop(), Some(0));
    a.cairn(&["repo", "verify"]).expect_ok();
    c.cairn(&["repo", "verify"]).expect_ok();
}
