//! A writer's commit to a share with several writers: which tree it made, from which parent
//! commits, under which member list, signed by the writer's own key. Commits form a DAG (a
//! merge has two parents); [`merge_base`] finds the common ancestor a three-way merge starts
//! from.
//!
//! Block (raw codec, as records are kept; the bytes a DAG-CBOR map, keys in canonical order):
//! `ids` (the version's id tree, see `identity.rs`), `members` (CID of the member list in
//! effect), `parents` (concatenated CID bytes, each length-prefixed by one byte; none for a
//! share's first commit), `root` (UnixFS root), `seq` (the writer's own counter, one more per
//! commit), `share` (share id), `sig` (Ed25519 by the writer's key over `cairn-commit:` ‖ the map
//! without `sig`), `time` (ms since the epoch), `v` = 1, `writer` (the writer's key, `k51…`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cid::Cid;

use crate::ipns::cbor::{decode_map, encode_map, signing_input, CborValue};
use crate::{Block, HashAlg, IpnsName, ShareKey, RAW};

/// What the signature covers starts with this.
pub const COMMIT_SIGNATURE_PREFIX: &[u8] = b"cairn-commit:";
/// The largest commit block accepted.
pub const MAX_COMMIT_BYTES: usize = 16 * 1024;
/// The most parents a commit may have.
pub const MAX_PARENTS: usize = 16;
/// How many commits [`merge_base`] reads at most before it gives up.
pub const MAX_HISTORY_WALK: usize = 100_000;

/// A verified commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub share: IpnsName,
    pub writer: IpnsName,
    pub seq: u64,
    pub parents: Vec<Cid>,
    pub root: Cid,
    pub ids: Cid,
    pub members: Cid,
    pub time: SystemTime,
    bytes: Bytes,
}

/// Why bytes are not a valid commit, or a commit is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("commit over {MAX_COMMIT_BYTES} bytes")]
    TooBig,
    #[error("commit is malformed: {0}")]
    Malformed(String),
    #[error("commit is for share {found}, not {expected}")]
    OtherShare { expected: String, found: String },
    #[error("commit signature does not verify with its writer's key")]
    BadSignature,
    #[error("commit by {writer}, who is not a member under the list it names")]
    NotMember { writer: String },
    #[error("commit {0} is not in the history that could be read")]
    Missing(Cid),
    #[error("the history has over {MAX_HISTORY_WALK} commits to walk")]
    HistoryTooLong,
}

fn malformed(why: impl Into<String>) -> CommitError {
    CommitError::Malformed(why.into())
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn encode_parents(parents: &[Cid]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parents {
        let b = p.to_bytes();
        out.push(b.len() as u8);
        out.extend_from_slice(&b);
    }
    out
}

fn decode_parents(mut b: &[u8]) -> Result<Vec<Cid>, CommitError> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        let len = usize::from(len);
        if rest.len() < len || out.len() >= MAX_PARENTS {
            return Err(malformed("bad parents"));
        }
        out.push(Cid::try_from(&rest[..len]).map_err(|_| malformed("a parent is not a CID"))?);
        b = &rest[len..];
    }
    Ok(out)
}

/// The fields of a commit to make.
#[derive(Debug, Clone)]
pub struct CommitFields {
    pub share: IpnsName,
    pub seq: u64,
    pub parents: Vec<Cid>,
    pub root: Cid,
    pub ids: Cid,
    pub members: Cid,
    pub time: SystemTime,
}

fn unsigned(f: &CommitFields, writer: &IpnsName) -> BTreeMap<String, CborValue> {
    let mut m = BTreeMap::new();
    m.insert("ids".into(), CborValue::Link(f.ids));
    m.insert("members".into(), CborValue::Link(f.members));
    m.insert(
        "parents".into(),
        CborValue::Bytes(encode_parents(&f.parents)),
    );
    m.insert("root".into(), CborValue::Link(f.root));
    m.insert("seq".into(), CborValue::Int(i128::from(f.seq)));
    m.insert("share".into(), CborValue::Text(f.share.to_string()));
    m.insert("time".into(), CborValue::Int(i128::from(ms(f.time))));
    m.insert("v".into(), CborValue::Int(1));
    m.insert("writer".into(), CborValue::Text(writer.to_string()));
    m
}

fn message(m: &BTreeMap<String, CborValue>) -> Result<Vec<u8>, CommitError> {
    signing_input(COMMIT_SIGNATURE_PREFIX, m).map_err(|e| malformed(e.to_string()))
}

impl Commit {
    /// A commit made and signed by `writer`.
    pub fn create(writer: &ShareKey, f: &CommitFields) -> Result<Commit, CommitError> {
        if f.parents.len() > MAX_PARENTS {
            return Err(malformed("too many parents"));
        }
        let name = writer.name();
        let mut m = unsigned(f, &name);
        let sig = writer.sign(&message(&m)?);
        m.insert("sig".into(), CborValue::Bytes(sig.to_vec()));
        let bytes = encode_map(&m).map_err(|e| malformed(e.to_string()))?;
        if bytes.len() > MAX_COMMIT_BYTES {
            return Err(CommitError::TooBig);
        }
        Commit::verify(&bytes, &f.share)
    }

    /// `bytes` as a commit to `share`, signed by the writer it names.
    pub fn verify(bytes: &[u8], share: &IpnsName) -> Result<Commit, CommitError> {
        if bytes.len() > MAX_COMMIT_BYTES {
            return Err(CommitError::TooBig);
        }
        let mut m = decode_map(bytes).map_err(|e| malformed(e.to_string()))?;
        if m.get("v") != Some(&CborValue::Int(1)) {
            return Err(malformed("not version 1"));
        }
        let Some(CborValue::Bytes(sig)) = m.remove("sig") else {
            return Err(malformed("no signature"));
        };
        let text = |k: &str| match m.get(k) {
            Some(CborValue::Text(t)) => Ok(t.clone()),
            _ => Err(malformed(format!("no {k}"))),
        };
        let link = |k: &str| match m.get(k) {
            Some(CborValue::Link(c)) => Ok(*c),
            _ => Err(malformed(format!("no {k}"))),
        };
        let int = |k: &str| match m.get(k) {
            Some(CborValue::Int(i)) => u64::try_from(*i).map_err(|_| malformed(format!("bad {k}"))),
            _ => Err(malformed(format!("no {k}"))),
        };
        let found = text("share")?;
        if found != share.to_string() {
            return Err(CommitError::OtherShare {
                expected: share.to_string(),
                found,
            });
        }
        let writer: IpnsName = text("writer")?
            .parse()
            .map_err(|_| malformed("writer is not a key"))?;
        if !writer.public_key().verify(&message(&m)?, &sig) {
            return Err(CommitError::BadSignature);
        }
        let parents = match m.get("parents") {
            Some(CborValue::Bytes(b)) => decode_parents(b)?,
            _ => return Err(malformed("no parents")),
        };
        Ok(Commit {
            share: *share,
            writer,
            seq: int("seq")?,
            parents,
            root: link("root")?,
            ids: link("ids")?,
            members: link("members")?,
            time: UNIX_EPOCH + Duration::from_millis(int("time")?),
            bytes: Bytes::copy_from_slice(bytes),
        })
    }

    /// Whether the commit is acceptable: its writer is the owner, or a member under `named`
    /// (the list the commit names, verified), and, when it arrives as a head (`reached`),
    /// not revoked under `newest` (the newest list this node knows, which may be later than
    /// `named`). A revoked writer's commits are taken only as the history of another writer's
    /// head (an earlier commit that a member merged, or the owner kept, before the
    /// revocation), never as heads of their own: a revoked writer cannot get past its
    /// revocation by naming an older list or by choosing a sequence number below its cut-off
    /// (both are its own to sign).
    pub fn check_member(
        &self,
        named: Option<&crate::MemberList>,
        newest: Option<&crate::MemberList>,
        reached: Reached,
    ) -> Result<(), CommitError> {
        let refused = || CommitError::NotMember {
            writer: self.writer.to_string(),
        };
        if self.writer == self.share {
            return Ok(());
        }
        if !named.is_some_and(|l| l.may_write(&self.writer)) {
            return Err(refused());
        }
        let revoked = newest.is_some_and(|l| l.revoked_after(&self.writer).is_some());
        match reached {
            Reached::Head if revoked => Err(refused()),
            _ => Ok(()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The commit as a block (raw codec, SHA-256).
    pub fn block(&self) -> Block {
        Block::encode(1, RAW, HashAlg::Sha2_256, self.bytes.clone())
    }
}

/// How a commit reached this node (see [`Commit::check_member`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// As a writer's head.
    Head,
    /// As an ancestor of an accepted commit (its history, vouched for by that commit's signer).
    History,
}

/// The best common ancestor of commits `a` and `b`: of the commits both descend from, one that
/// no other common ancestor descends from, the one with the smallest CID bytes if several (so
/// every node picks the same). `parents` gives a commit's parents (`None`: not readable).
/// `None` if they share no history. Reads at most [`MAX_HISTORY_WALK`] commits.
pub fn merge_base(
    a: Cid,
    b: Cid,
    parents: impl FnMut(&Cid) -> Option<Vec<Cid>>,
) -> Result<Option<Cid>, CommitError> {
    Ok(merge_bases(a, b, parents)?.into_iter().next())
}

/// Every best common ancestor of commits `a` and `b` (those no other common ancestor descends
/// from), by CID bytes: more than one after criss-cross merges (two nodes that merged each
/// other's heads at once). See [`merge_base`].
pub fn merge_bases(
    a: Cid,
    b: Cid,
    mut parents: impl FnMut(&Cid) -> Option<Vec<Cid>>,
) -> Result<Vec<Cid>, CommitError> {
    let mut cache: HashMap<Cid, Vec<Cid>> = HashMap::new();
    let mut get = |c: &Cid, cache: &mut HashMap<Cid, Vec<Cid>>| -> Result<Vec<Cid>, CommitError> {
        if let Some(p) = cache.get(c) {
            return Ok(p.clone());
        }
        if cache.len() >= MAX_HISTORY_WALK {
            return Err(CommitError::HistoryTooLong);
        }
        let p = parents(c).ok_or(CommitError::Missing(*c))?;
        cache.insert(*c, p.clone());
        Ok(p)
    };
    let mut ancestors =
        |start: Cid, cache: &mut HashMap<Cid, Vec<Cid>>| -> Result<HashSet<Cid>, CommitError> {
            let mut seen = HashSet::from([start]);
            let mut queue = VecDeque::from([start]);
            while let Some(c) = queue.pop_front() {
                for p in get(&c, cache)? {
                    if seen.insert(p) {
                        queue.push_back(p);
                    }
                }
            }
            Ok(seen)
        };
    let of_a = ancestors(a, &mut cache)?;
    let of_b = ancestors(b, &mut cache)?;
    let common: HashSet<Cid> = of_a.intersection(&of_b).copied().collect();
    // The best: common ancestors that are not a proper ancestor of another common one. Every
    // proper ancestor of a common ancestor is common too, and its parents are read already.
    let mut dominated: HashSet<Cid> = HashSet::new();
    let mut queue: VecDeque<Cid> = common
        .iter()
        .flat_map(|c| cache.get(c).cloned().unwrap_or_default())
        .collect();
    while let Some(x) = queue.pop_front() {
        if dominated.insert(x) {
            queue.extend(cache.get(&x).cloned().unwrap_or_default());
        }
    }
    let mut best: Vec<Cid> = common.difference(&dominated).copied().collect();
    best.sort_by_key(|c| c.to_bytes());
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        crate::cid_for(1, RAW, HashAlg::Sha2_256, &[n])
    }

    fn fields(share: &ShareKey, seq: u64, parents: Vec<Cid>) -> CommitFields {
        CommitFields {
            share: share.name(),
            seq,
            parents,
            root: cid(1),
            ids: cid(2),
            members: cid(3),
            time: UNIX_EPOCH + Duration::from_millis(1_780_000_000_123),
        }
    }

    #[test]
    fn commits_verify_round_trip_and_refuse_forgeries() {
        let share = ShareKey::from_seed(&[1; 32]);
        let bob = ShareKey::from_seed(&[2; 32]);
        let c = Commit::create(&bob, &fields(&share, 4, vec![cid(8), cid(9)])).unwrap();
        let back = Commit::verify(c.as_bytes(), &share.name()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.writer, bob.name());
        assert_eq!(back.parents, vec![cid(8), cid(9)]);
        assert_eq!(back.time, fields(&share, 0, vec![]).time);
        let bytes = c.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(Commit::verify(&bad, &share.name()).is_err(), "flip at {i}");
        }
        let other = ShareKey::from_seed(&[3; 32]);
        assert!(matches!(
            Commit::verify(c.as_bytes(), &other.name()),
            Err(CommitError::OtherShare { .. })
        ));
        // Membership: the owner always; Bob only under a list that names him.
        let own = Commit::create(&share, &fields(&share, 1, vec![])).unwrap();
        assert!(own.check_member(None, None, Reached::Head).is_ok());
        assert!(c.check_member(None, None, Reached::Head).is_err());
        let list = crate::MemberList::create(
            &share,
            1,
            None,
            [(
                bob.name().to_string(),
                crate::Member {
                    writer: bob.name(),
                    label: "bob".into(),
                    publish: false,
                    sealed: None,
                },
            )]
            .into(),
            BTreeMap::new(),
        )
        .unwrap();
        assert!(c
            .check_member(Some(&list), Some(&list), Reached::Head)
            .is_ok());
        // Revoked after his commit 3: as a head, commit 4 is refused even though it names the
        // old list, and so is any commit with a lower number (he signs the numbers too); as the
        // history of an accepted head, commit 3 stays accepted.
        let revoked = crate::MemberList::create(
            &share,
            2,
            Some(*list.block().cid()),
            BTreeMap::new(),
            [(bob.name().to_string(), 3)].into(),
        )
        .unwrap();
        assert!(c
            .check_member(Some(&revoked), Some(&revoked), Reached::Head)
            .is_err());
        assert!(c
            .check_member(Some(&list), Some(&revoked), Reached::Head)
            .is_err());
        let earlier = Commit::create(&bob, &fields(&share, 3, vec![])).unwrap();
        let backdated = Commit::create(&bob, &fields(&share, 1, vec![])).unwrap();
        assert!(earlier
            .check_member(Some(&list), Some(&revoked), Reached::History)
            .is_ok());
        assert!(backdated
            .check_member(Some(&list), Some(&revoked), Reached::Head)
            .is_err());
        assert!(earlier
            .check_member(Some(&revoked), Some(&revoked), Reached::History)
            .is_err());
    }

    #[test]
    fn the_merge_base_is_the_nearest_common_ancestor() {
        // 1 - 2 - 3 - 5
        //      \     /
        //       4 --+- 6     (5 merges 3 and 4; 6 descends from 4)
        let g: HashMap<Cid, Vec<Cid>> = [
            (cid(1), vec![]),
            (cid(2), vec![cid(1)]),
            (cid(3), vec![cid(2)]),
            (cid(4), vec![cid(2)]),
            (cid(5), vec![cid(3), cid(4)]),
            (cid(6), vec![cid(4)]),
            (cid(7), vec![]),
        ]
        .into();
        let parents = |c: &Cid| g.get(c).cloned();
        assert_eq!(merge_base(cid(3), cid(4), parents).unwrap(), Some(cid(2)));
        assert_eq!(merge_base(cid(5), cid(6), parents).unwrap(), Some(cid(4)));
        assert_eq!(merge_base(cid(6), cid(5), parents).unwrap(), Some(cid(4)));
        // One descends from the other: the older one is the base (a fast-forward).
        assert_eq!(merge_base(cid(5), cid(2), parents).unwrap(), Some(cid(2)));
        assert_eq!(merge_base(cid(7), cid(3), parents).unwrap(), None);
        assert!(matches!(
            merge_base(cid(3), cid(99), parents),
            Err(CommitError::Missing(_))
        ));
    }

    #[test]
    fn a_long_history_is_walked_once() {
        // 20 000 commits in a line, then two heads: the tip of the line is the base, found in
        // linear time (a quadratic walk would not finish here).
        let c = |n: u32| crate::cid_for(1, RAW, HashAlg::Sha2_256, &n.to_le_bytes());
        let mut g: HashMap<Cid, Vec<Cid>> = HashMap::new();
        g.insert(c(0), vec![]);
        for n in 1..20_000 {
            g.insert(c(n), vec![c(n - 1)]);
        }
        g.insert(c(1_000_001), vec![c(19_999)]);
        g.insert(c(1_000_002), vec![c(19_999)]);
        let base = merge_base(c(1_000_001), c(1_000_002), |x| g.get(x).cloned()).unwrap();
        assert_eq!(base, Some(c(19_999)));
    }
}
