//! A share's member list: the writers the owner lets commit to the share, signed by the share's
//! key, each list a DAG-CBOR block naming the previous one (so the lists form a chain that
//! followers verify, like the versions).
//!
//! Block (raw codec, as records are kept; its bytes a DAG-CBOR map, keys in canonical order):
//! - `members`: map from a writer's key (its IPNS name, `k51…`, the same key as its libp2p peer
//!   id) to a map `{key?: bytes, label: text, publish: 0|1}` (`publish`: the writer may also
//!   publish the share's head record; `key`, present exactly when `publish` is 1: the share's
//!   key sealed to the writer's key, see `ipns/seal.rs`, for the context
//!   `cairn-members-key:<share id>/<writer key>`);
//! - `prev`: CID of the previous list's block (absent for the first);
//! - `revoked` (absent when empty): map from a revoked writer's key to the last of its commit
//!   sequence numbers that stays accepted; its later commits are refused, whatever list they
//!   name;
//! - `seq`: the list's number, 1 for the first, one more each change;
//! - `share`: the share id (text);
//! - `sig`: Ed25519 signature by the share's key over `cairn-members:` ‖ the same map encoded
//!   without `sig`;
//! - `v`: 1.
//!
//! The owner (the share's key) is always a member and is not listed. A list is at most
//! [`MAX_LIST_BYTES`] and [`MAX_MEMBERS`] writers; anything else is refused before use.

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;

use crate::ipns::cbor::{decode_map, encode_map, signing_input, CborValue};
use crate::{Block, HashAlg, IpnsName, ShareKey, RAW};

/// What the signature covers starts with this.
pub const MEMBERS_SIGNATURE_PREFIX: &[u8] = b"cairn-members:";
/// The largest member list block accepted.
pub const MAX_LIST_BYTES: usize = 256 * 1024;
/// The most writers a list may name.
pub const MAX_MEMBERS: usize = 1024;
/// The longest member label.
pub const MAX_MEMBER_LABEL: usize = 64;

/// A writer of a share, other than its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The writer's key.
    pub writer: IpnsName,
    /// A name for it in conflict copies and listings.
    pub label: String,
    /// It may also publish the share's head record.
    pub publish: bool,
    /// The share's key sealed to the writer (present exactly when `publish`; made by
    /// [`MemberList::create`] when missing).
    pub sealed: Option<Vec<u8>>,
}

/// What a member's sealed share key is bound to.
fn seal_context(share: &IpnsName, writer: &IpnsName) -> Vec<u8> {
    format!("cairn-members-key:{share}/{writer}").into_bytes()
}

/// A verified member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberList {
    pub share: IpnsName,
    pub seq: u64,
    pub prev: Option<Cid>,
    /// By the writer's key text.
    pub members: BTreeMap<String, Member>,
    /// Revoked writers (by key text) and the last commit sequence of each that stays accepted.
    pub revoked: BTreeMap<String, u64>,
    bytes: Bytes,
}

/// Why bytes are not a valid member list of a share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("member list over {MAX_LIST_BYTES} bytes")]
    TooBig,
    #[error("member list names over {MAX_MEMBERS} writers")]
    TooMany,
    #[error("member list is malformed: {0}")]
    Malformed(String),
    #[error("member list is for share {found}, not {expected}")]
    OtherShare { expected: String, found: String },
    #[error("member list signature does not verify with the share's key")]
    BadSignature,
    #[error("invalid member label {0:?}: 1 to 64 characters, no '/' or control characters")]
    BadLabel(String),
    #[error("the share's key sealed to {writer} cannot be made or opened: {why}")]
    SealedKey { writer: String, why: String },
}

fn malformed(why: impl Into<String>) -> MembersError {
    MembersError::Malformed(why.into())
}

/// Checks a member label.
pub fn check_member_label(label: &str) -> Result<(), MembersError> {
    let ok = !label.is_empty()
        && label.chars().count() <= MAX_MEMBER_LABEL
        && !label.chars().any(|c| c == '/' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(MembersError::BadLabel(label.to_string()))
    }
}

fn unsigned_map(
    share: &IpnsName,
    seq: u64,
    prev: Option<Cid>,
    members: &BTreeMap<String, Member>,
    revoked: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, CborValue>, MembersError> {
    let mut list = BTreeMap::new();
    for (k, m) in members {
        let mut entry = BTreeMap::new();
        if let Some(sealed) = &m.sealed {
            entry.insert("key".to_string(), CborValue::Bytes(sealed.clone()));
        }
        entry.insert("label".to_string(), CborValue::Text(m.label.clone()));
        entry.insert(
            "publish".to_string(),
            CborValue::Int(i128::from(u8::from(m.publish))),
        );
        let raw = encode_map(&entry).map_err(|e| malformed(e.to_string()))?;
        list.insert(k.clone(), CborValue::Other(raw));
    }
    let mut map = BTreeMap::new();
    map.insert(
        "members".to_string(),
        CborValue::Other(encode_map(&list).map_err(|e| malformed(e.to_string()))?),
    );
    if let Some(p) = prev {
        map.insert("prev".to_string(), CborValue::Link(p));
    }
    if !revoked.is_empty() {
        let cut: BTreeMap<String, CborValue> = revoked
            .iter()
            .map(|(k, v)| (k.clone(), CborValue::Int(i128::from(*v))))
            .collect();
        map.insert(
            "revoked".to_string(),
            CborValue::Other(encode_map(&cut).map_err(|e| malformed(e.to_string()))?),
        );
    }
    map.insert("seq".to_string(), CborValue::Int(i128::from(seq)));
    map.insert("share".to_string(), CborValue::Text(share.to_string()));
    map.insert("v".to_string(), CborValue::Int(1));
    Ok(map)
}

fn signed_message(unsigned: &BTreeMap<String, CborValue>) -> Result<Vec<u8>, MembersError> {
    signing_input(MEMBERS_SIGNATURE_PREFIX, unsigned).map_err(|e| malformed(e.to_string()))
}

impl MemberList {
    /// A new list of share `key`'s writers, signed by it.
    /// A writer who may publish gets the share's key sealed to it (kept if the entry has it
    /// already); one who may not has none.
    pub fn create(
        key: &ShareKey,
        seq: u64,
        prev: Option<Cid>,
        mut members: BTreeMap<String, Member>,
        revoked: BTreeMap<String, u64>,
    ) -> Result<MemberList, MembersError> {
        if members.len() > MAX_MEMBERS || revoked.len() > MAX_MEMBERS {
            return Err(MembersError::TooMany);
        }
        let share = key.name();
        for m in members.values_mut() {
            if !m.publish {
                m.sealed = None;
            } else if m.sealed.is_none() {
                let context = seal_context(&share, &m.writer);
                let sealed =
                    crate::ipns::seal(key, &m.writer.public_key(), &context).map_err(|e| {
                        MembersError::SealedKey {
                            writer: m.writer.to_string(),
                            why: e.to_string(),
                        }
                    })?;
                m.sealed = Some(sealed);
            }
        }
        let mut map = unsigned_map(&share, seq, prev, &members, &revoked)?;
        let sig = key.sign(&signed_message(&map)?);
        map.insert("sig".to_string(), CborValue::Bytes(sig.to_vec()));
        let bytes = encode_map(&map).map_err(|e| malformed(e.to_string()))?;
        if bytes.len() > MAX_LIST_BYTES {
            return Err(MembersError::TooBig);
        }
        Ok(MemberList {
            share,
            seq,
            prev,
            members,
            revoked,
            bytes: Bytes::from(bytes),
        })
    }

    /// `bytes` as a member list of `share`, signed by its key.
    pub fn verify(bytes: &[u8], share: &IpnsName) -> Result<MemberList, MembersError> {
        if bytes.len() > MAX_LIST_BYTES {
            return Err(MembersError::TooBig);
        }
        let mut map = decode_map(bytes).map_err(|e| malformed(e.to_string()))?;
        if map.get("v") != Some(&CborValue::Int(1)) {
            return Err(malformed("not version 1"));
        }
        let Some(CborValue::Bytes(sig)) = map.remove("sig") else {
            return Err(malformed("no signature"));
        };
        let found = match map.get("share") {
            Some(CborValue::Text(t)) => t.clone(),
            _ => return Err(malformed("no share id")),
        };
        if found != share.to_string() {
            return Err(MembersError::OtherShare {
                expected: share.to_string(),
                found,
            });
        }
        if !share.public_key().verify(&signed_message(&map)?, &sig) {
            return Err(MembersError::BadSignature);
        }
        let seq = match map.get("seq") {
            Some(CborValue::Int(i)) => u64::try_from(*i).map_err(|_| malformed("bad seq"))?,
            _ => return Err(malformed("no seq")),
        };
        let prev = match map.get("prev") {
            None => None,
            Some(CborValue::Link(c)) => Some(*c),
            Some(_) => return Err(malformed("prev is not a link")),
        };
        let Some(CborValue::Other(raw)) = map.get("members") else {
            return Err(malformed("no members map"));
        };
        let list = decode_map(raw).map_err(|e| malformed(e.to_string()))?;
        if list.len() > MAX_MEMBERS {
            return Err(MembersError::TooMany);
        }
        let mut members = BTreeMap::new();
        for (k, v) in list {
            let writer: IpnsName = k
                .parse()
                .map_err(|_| malformed(format!("member {k:?} is not a key")))?;
            if writer.to_string() != k {
                return Err(malformed(format!("member {k:?} is not in k51 form")));
            }
            let CborValue::Other(raw) = v else {
                return Err(malformed("member entry is not a map"));
            };
            let entry = decode_map(&raw).map_err(|e| malformed(e.to_string()))?;
            let label = match entry.get("label") {
                Some(CborValue::Text(t)) => t.clone(),
                _ => return Err(malformed("member without a label")),
            };
            check_member_label(&label)?;
            let publish = match entry.get("publish") {
                Some(CborValue::Int(0)) => false,
                Some(CborValue::Int(1)) => true,
                _ => return Err(malformed("member publish is not 0 or 1")),
            };
            let sealed = match (publish, entry.get("key")) {
                (false, None) => None,
                (true, Some(CborValue::Bytes(b))) if b.len() == crate::SEALED_LEN => {
                    Some(b.clone())
                }
                _ => {
                    return Err(malformed(
                        "a member's sealed key is missing, malformed, or given without publish",
                    ))
                }
            };
            members.insert(
                k,
                Member {
                    writer,
                    label,
                    publish,
                    sealed,
                },
            );
        }
        let mut revoked = BTreeMap::new();
        match map.get("revoked") {
            None => {}
            Some(CborValue::Other(raw)) => {
                let cut = decode_map(raw).map_err(|e| malformed(e.to_string()))?;
                if cut.len() > MAX_MEMBERS {
                    return Err(MembersError::TooMany);
                }
                for (k, v) in cut {
                    let writer: IpnsName = k
                        .parse()
                        .map_err(|_| malformed(format!("revoked {k:?} is not a key")))?;
                    if writer.to_string() != k || members.contains_key(&k) {
                        return Err(malformed(format!("revoked {k:?} is malformed or a member")));
                    }
                    let CborValue::Int(n) = v else {
                        return Err(malformed("a revocation is not a sequence number"));
                    };
                    let n = u64::try_from(n).map_err(|_| malformed("bad revocation"))?;
                    revoked.insert(k, n);
                }
            }
            Some(_) => return Err(malformed("revoked is not a map")),
        }
        Ok(MemberList {
            share: *share,
            seq,
            prev,
            members,
            revoked,
            bytes: Bytes::copy_from_slice(bytes),
        })
    }

    /// The list's encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The list as a block: raw codec (as a share's records are kept: GC and walks treat it
    /// as a leaf), SHA-256.
    pub fn block(&self) -> Block {
        Block::encode(1, RAW, HashAlg::Sha2_256, self.bytes.clone())
    }

    /// Whether `writer` may commit under this list (the owner always may).
    pub fn may_write(&self, writer: &IpnsName) -> bool {
        *writer == self.share || self.members.contains_key(&writer.to_string())
    }

    /// For a revoked writer, the last of its commit sequence numbers that stays accepted.
    pub fn revoked_after(&self, writer: &IpnsName) -> Option<u64> {
        self.revoked.get(&writer.to_string()).copied()
    }

    /// The share's key, if this list lets `me` (a writer's key) publish: opened from its
    /// entry and checked against the share id. `Ok(None)` when it may not publish.
    pub fn publish_key(&self, me: &ShareKey) -> Result<Option<ShareKey>, MembersError> {
        let writer = me.name();
        let Some(sealed) = self
            .members
            .get(&writer.to_string())
            .filter(|m| m.publish)
            .and_then(|m| m.sealed.as_ref())
        else {
            return Ok(None);
        };
        let fail = |why: String| MembersError::SealedKey {
            writer: writer.to_string(),
            why,
        };
        let key = crate::ipns::open_sealed(sealed, me, &seal_context(&self.share, &writer))
            .map_err(|e| fail(e.to_string()))?;
        if key.name() != self.share {
            return Err(fail("it is not the share's key".to_string()));
        }
        Ok(Some(key))
    }

    /// Whether `writer` may publish the share's head record.
    pub fn may_publish(&self, writer: &IpnsName) -> bool {
        *writer == self.share
            || self
                .members
                .get(&writer.to_string())
                .is_some_and(|m| m.publish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(seed: u8, label: &str) -> (String, Member) {
        let writer = ShareKey::from_seed(&[seed; 32]).name();
        (
            writer.to_string(),
            Member {
                writer,
                label: label.into(),
                publish: seed.is_multiple_of(2),
                sealed: None,
            },
        )
    }

    #[test]
    fn a_list_verifies_and_round_trips() {
        let key = ShareKey::from_seed(&[1; 32]);
        let members: BTreeMap<_, _> = [member(2, "bob"), member(3, "carol")].into();
        let list = MemberList::create(&key, 1, None, members.clone(), BTreeMap::new()).unwrap();
        let back = MemberList::verify(list.as_bytes(), &key.name()).unwrap();
        assert_eq!(back, list);
        let plain = |m: &BTreeMap<String, Member>| {
            m.iter()
                .map(|(k, m)| (k.clone(), m.label.clone(), m.publish))
                .collect::<Vec<_>>()
        };
        assert_eq!(plain(&back.members), plain(&members));
        assert!(back.may_write(&key.name()));
        assert!(back.may_write(&members.values().next().unwrap().writer));
        assert!(!back.may_write(&ShareKey::from_seed(&[9; 32]).name()));
        assert!(back.may_publish(&ShareKey::from_seed(&[2; 32]).name()));
        assert!(!back.may_publish(&ShareKey::from_seed(&[3; 32]).name()));
        // The block is kept raw, as records are.
        assert_eq!(list.block().cid().codec(), RAW);
        let next = MemberList::create(
            &key,
            2,
            Some(*list.block().cid()),
            BTreeMap::new(),
            [(ShareKey::from_seed(&[2; 32]).name().to_string(), 7)].into(),
        )
        .unwrap();
        let back = MemberList::verify(next.as_bytes(), &key.name()).unwrap();
        assert_eq!(back.prev, Some(*list.block().cid()));
        assert!(back.members.is_empty());
        assert_eq!(
            back.revoked_after(&ShareKey::from_seed(&[2; 32]).name()),
            Some(7)
        );
    }

    #[test]
    fn a_publisher_and_only_it_opens_the_share_key() {
        let key = ShareKey::from_seed(&[1; 32]);
        let (bob, carol) = (ShareKey::from_seed(&[2; 32]), ShareKey::from_seed(&[3; 32]));
        let members: BTreeMap<_, _> = [member(2, "bob"), member(3, "carol")].into();
        let list = MemberList::create(&key, 1, None, members, BTreeMap::new()).unwrap();
        let back = MemberList::verify(list.as_bytes(), &key.name()).unwrap();
        let opened = back.publish_key(&bob).unwrap().expect("bob publishes");
        assert_eq!(opened.name(), key.name());
        assert!(back.members[&bob.name().to_string()].sealed.is_some());
        // Carol writes but does not publish: no key for her, none to open.
        assert!(back.publish_key(&carol).unwrap().is_none());
        assert!(back.members[&carol.name().to_string()].sealed.is_none());
        // A later list keeps bob's sealed key as it is; one that takes publishing away drops it.
        let mut members = back.members.clone();
        let next = MemberList::create(&key, 2, None, members.clone(), BTreeMap::new()).unwrap();
        assert_eq!(
            next.members[&bob.name().to_string()].sealed,
            back.members[&bob.name().to_string()].sealed
        );
        members.get_mut(&bob.name().to_string()).unwrap().publish = false;
        let next = MemberList::create(&key, 3, None, members, BTreeMap::new()).unwrap();
        let next = MemberList::verify(next.as_bytes(), &key.name()).unwrap();
        assert!(next.publish_key(&bob).unwrap().is_none());
        // Bob's sealed key moved into carol's entry does not open for her (it is bound to bob).
        let mut map = decode_map(list.as_bytes()).unwrap();
        let Some(CborValue::Other(raw)) = map.get("members") else {
            panic!("no members")
        };
        let mut entries = decode_map(raw).unwrap();
        let Some(CborValue::Other(b)) = entries.get(&bob.name().to_string()).cloned() else {
            panic!("no bob")
        };
        entries.insert(carol.name().to_string(), CborValue::Other(b));
        map.insert(
            "members".into(),
            CborValue::Other(encode_map(&entries).unwrap()),
        );
        map.remove("sig");
        let sig = key.sign(&signed_message(&map).unwrap());
        map.insert("sig".into(), CborValue::Bytes(sig.to_vec()));
        let moved = MemberList::verify(&encode_map(&map).unwrap(), &key.name()).unwrap();
        assert!(matches!(
            moved.publish_key(&carol),
            Err(MembersError::SealedKey { .. })
        ));
    }

    #[test]
    fn forged_foreign_and_malformed_lists_are_refused() {
        let key = ShareKey::from_seed(&[1; 32]);
        let list =
            MemberList::create(&key, 1, None, [member(2, "bob")].into(), BTreeMap::new()).unwrap();
        // Every single flipped bit is caught.
        let bytes = list.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                MemberList::verify(&bad, &key.name()).is_err(),
                "a flip at byte {i} went through"
            );
        }
        // Another share's list, or one signed by another key for this share.
        let other = ShareKey::from_seed(&[5; 32]);
        assert!(matches!(
            MemberList::verify(list.as_bytes(), &other.name()),
            Err(MembersError::OtherShare { .. })
        ));
        let forged =
            MemberList::create(&other, 1, None, [member(2, "bob")].into(), BTreeMap::new())
                .unwrap();
        let mut map = decode_map(forged.as_bytes()).unwrap();
        map.insert("share".into(), CborValue::Text(key.name().to_string()));
        let relabelled = encode_map(&map).unwrap();
        assert_eq!(
            MemberList::verify(&relabelled, &key.name()),
            Err(MembersError::BadSignature)
        );
        assert!(MemberList::verify(&vec![0xa0; MAX_LIST_BYTES + 1], &key.name()).is_err());
        assert!(MemberList::verify(b"", &key.name()).is_err());
        assert!(check_member_label("a/b").is_err());
        assert!(check_member_label("").is_err());
        assert!(check_member_label("bob's laptop").is_ok());
    }
}
