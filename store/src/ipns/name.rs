//! IPNS names: the identity multihash of an Ed25519 key's libp2p `PublicKey` protobuf.
//!
//! Written as a CIDv1 with codec `libp2p-key` (0x72) in base36 lowercase (`k51qzi5uqu5d…`, as
//! Kubo and Helia print names). Read from that form with or without `/ipns/`, from the same CID
//! in any other multibase (`bafzaa…`), and from the base58btc peer-id form (`12D3KooW…`).
//!
//! Bytes on the wire:
//! - multihash: `00 24 ‖ 08 01 12 20 ‖ key` (identity, 36 bytes), 38 bytes;
//! - CID: `01 72 ‖ multihash`;
//! - routing key (DHT record key): `/ipns/` ‖ multihash;
//! - pubsub topic (ipns-pubsub-router): `/record/` ‖ base64url-unpadded(routing key).

use std::fmt;
use std::str::FromStr;

use cid::multibase::Base;
use cid::Cid;
use multihash::Multihash;

use super::key::{Ed25519PublicKey, PublicKeyError, PUBLIC_KEY_PROTOBUF_LEN};
use crate::varint;

/// Multicodec of `libp2p-key`, the codec of IPNS name CIDs.
pub const LIBP2P_KEY: u64 = 0x72;
/// Multihash code of `identity`.
pub const IDENTITY: u64 = 0x00;
/// Routing-key prefix of IPNS records (`/ipns/`).
pub const ROUTING_PREFIX: &[u8] = b"/ipns/";
/// Prefix of IPNS pubsub topics.
pub const TOPIC_PREFIX: &str = "/record/";
/// Longest text accepted as a name (a k51 name is 62 characters): bounds the base decoding work.
const MAX_NAME_TEXT: usize = 256;

/// Why text or bytes are not an IPNS name cairn accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Text that is not a name.
    #[error("invalid IPNS name {text:?}: {reason}; an IPNS name looks like k51qzi5uqu5d… (or /ipns/k51…, or a 12D3KooW… peer id)")]
    Text {
        /// The text (cut to 80 characters).
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A CID of another codec.
    #[error(
        "CID {cid} has codec {codec:#x}, not libp2p-key (0x72): it is content, not an IPNS name"
    )]
    NotLibp2pKey {
        /// The CID.
        cid: String,
        /// Its codec.
        codec: u64,
    },
    /// A multihash other than identity: a hashed (RSA-era) key.
    #[error("IPNS names with hashed keys (multihash {code:#x}, RSA era) are not supported: only Ed25519 names")]
    HashedKey {
        /// The multihash code.
        code: u64,
    },
    /// Multihash or routing-key bytes that do not parse.
    #[error("malformed IPNS name bytes: {0}")]
    Bytes(&'static str),
    /// The multihash holds a key cairn does not accept.
    #[error("IPNS name key: {0}")]
    Key(#[from] PublicKeyError),
}

/// An IPNS name of an Ed25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpnsName {
    key: Ed25519PublicKey,
}

impl IpnsName {
    /// The name of `key`.
    pub fn from_public_key(key: Ed25519PublicKey) -> IpnsName {
        IpnsName { key }
    }

    /// The key the name stands for.
    pub fn public_key(&self) -> Ed25519PublicKey {
        self.key
    }

    /// The multihash bytes: `00 24 ‖ PublicKey protobuf`.
    pub fn multihash_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + PUBLIC_KEY_PROTOBUF_LEN);
        out.push(IDENTITY as u8);
        out.push(PUBLIC_KEY_PROTOBUF_LEN as u8);
        out.extend_from_slice(&self.key.to_protobuf());
        out
    }

    /// The name read from multihash bytes (exactly one multihash, nothing after it).
    pub fn from_multihash_bytes(bytes: &[u8]) -> Result<IpnsName, NameError> {
        let (code, n) =
            varint::read_uvarint(bytes).ok_or(NameError::Bytes("bad multihash code"))?;
        let rest = &bytes[n..];
        let (len, m) =
            varint::read_uvarint(rest).ok_or(NameError::Bytes("bad multihash length"))?;
        let digest = &rest[m..];
        if u64::try_from(digest.len()).ok() != Some(len) {
            return Err(NameError::Bytes(
                "multihash length does not match its digest",
            ));
        }
        if code != IDENTITY {
            return Err(NameError::HashedKey { code });
        }
        Ok(IpnsName {
            key: Ed25519PublicKey::from_protobuf(digest)?,
        })
    }

    /// The CIDv1 `libp2p-key` of the name.
    pub fn to_cid(&self) -> Cid {
        // A 36-byte identity digest always fits the 64-byte multihash.
        let mh = Multihash::<64>::wrap(IDENTITY, &self.key.to_protobuf()).unwrap_or_default();
        Cid::new_v1(LIBP2P_KEY, mh)
    }

    /// The name a CID stands for (CIDv1 `libp2p-key` with an identity multihash).
    pub fn from_cid(cid: &Cid) -> Result<IpnsName, NameError> {
        if cid.codec() != LIBP2P_KEY {
            return Err(NameError::NotLibp2pKey {
                cid: cid.to_string(),
                codec: cid.codec(),
            });
        }
        Self::from_multihash_bytes(&cid.hash().to_bytes())
    }

    /// The DHT key of the name's records: `/ipns/` ‖ multihash bytes.
    pub fn routing_key(&self) -> Vec<u8> {
        let mut out = ROUTING_PREFIX.to_vec();
        out.extend_from_slice(&self.multihash_bytes());
        out
    }

    /// The name of a DHT record key (`/ipns/` ‖ multihash bytes).
    pub fn from_routing_key(key: &[u8]) -> Result<IpnsName, NameError> {
        let mh = key
            .strip_prefix(ROUTING_PREFIX)
            .ok_or(NameError::Bytes("routing key does not start with /ipns/"))?;
        Self::from_multihash_bytes(mh)
    }

    /// The IPNS-over-PubSub topic: `/record/` ‖ base64url-unpadded(routing key).
    pub fn pubsub_topic(&self) -> String {
        format!(
            "{TOPIC_PREFIX}{}",
            Base::Base64Url.encode(self.routing_key())
        )
    }

    /// The base58btc peer-id form (`12D3KooW…`).
    pub fn to_peer_id_string(&self) -> String {
        Base::Base58Btc.encode(self.multihash_bytes())
    }
}

impl fmt::Display for IpnsName {
    /// Base36 lowercase CIDv1, `k51…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .to_cid()
            .to_string_of_base(Base::Base36Lower)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for IpnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpnsName({self})")
    }
}

impl FromStr for IpnsName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text_err = |reason: &str| NameError::Text {
            text: s.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        let bare = s.strip_prefix("/ipns/").unwrap_or(s);
        let bare = bare.strip_suffix('/').unwrap_or(bare);
        if bare.is_empty() {
            return Err(text_err("empty"));
        }
        if bare.contains('/') {
            return Err(text_err("a path follows the name"));
        }
        if bare.len() > MAX_NAME_TEXT {
            return Err(text_err("too long"));
        }
        // Peer ids in base58btc: identity multihashes start with "1", sha2-256 ones with "Qm".
        if bare.starts_with('1') || bare.starts_with("Qm") {
            let bytes = Base::Base58Btc
                .decode(bare)
                .map_err(|_| text_err("not base58btc"))?;
            return Self::from_multihash_bytes(&bytes);
        }
        let cid = Cid::try_from(bare).map_err(|e| text_err(&crate::path::cid_parse_reason(&e)))?;
        Self::from_cid(&cid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ipns::key::ShareKey;
    use proptest::prelude::*;

    /// The spec's V2-only test vector name (ipfs/specs ipns-record, "Test Vectors").
    const SPEC_NAME: &str = "k51qzi5uqu5dit2ku9mutlfgwyz8u730on38kd10m97m36bjt66my99hb6103f";

    #[test]
    fn spec_name_round_trips_through_every_form() {
        let name: IpnsName = SPEC_NAME.parse().unwrap();
        assert_eq!(name.to_string(), SPEC_NAME);
        assert_eq!(
            format!("/ipns/{SPEC_NAME}").parse::<IpnsName>().unwrap(),
            name
        );
        assert_eq!(
            format!("/ipns/{SPEC_NAME}/").parse::<IpnsName>().unwrap(),
            name
        );
        let peer_id = name.to_peer_id_string();
        assert!(peer_id.starts_with("12D3KooW"), "{peer_id}");
        assert_eq!(peer_id.parse::<IpnsName>().unwrap(), name);
        let base32 = name.to_cid().to_string();
        assert!(base32.starts_with("bafzaa"), "{base32}");
        assert_eq!(base32.parse::<IpnsName>().unwrap(), name);
        let base58 = name.to_cid().to_string_of_base(Base::Base58Btc).unwrap();
        assert_eq!(base58.parse::<IpnsName>().unwrap(), name);
        let upper = name.to_cid().to_string_of_base(Base::Base36Upper).unwrap();
        assert_eq!(upper.parse::<IpnsName>().unwrap(), name);
    }

    #[test]
    fn bytes_forms() {
        let name = ShareKey::generate().unwrap().name();
        let mh = name.multihash_bytes();
        assert_eq!(mh.len(), 38);
        assert_eq!(&mh[..6], &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        assert_eq!(name.to_cid().to_bytes()[..2], [0x01, 0x72]);
        let key = name.routing_key();
        assert_eq!(&key[..6], b"/ipns/");
        assert_eq!(IpnsName::from_routing_key(&key).unwrap(), name);
        let topic = name.pubsub_topic();
        assert!(topic.starts_with("/record/L2lwbnMvAC"), "{topic}");
        let encoded = &topic["/record/".len()..];
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{topic}"
        );
        assert_eq!(Base::Base64Url.decode(encoded).unwrap(), key);
        assert!(name.to_string().starts_with("k51qzi5uqu5d"));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let content = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
        assert!(matches!(
            content.parse::<IpnsName>(),
            Err(NameError::NotLibp2pKey { codec: 0x55, .. })
        ));
        // An RSA-era peer id (sha2-256 multihash).
        let rsa = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        assert!(matches!(
            rsa.parse::<IpnsName>(),
            Err(NameError::HashedKey { code: 0x12 })
        ));
        for bad in [
            "",
            "/ipns/",
            "k51xyz",
            &format!("/ipns/{SPEC_NAME}/a"),
            &"k".repeat(300),
            "1111",
        ] {
            let e = bad.parse::<IpnsName>().unwrap_err();
            assert!(e.to_string().contains("IPNS name"), "{bad:?}: {e}");
        }
        let name: IpnsName = SPEC_NAME.parse().unwrap();
        let mut mh = name.multihash_bytes();
        mh.push(0);
        assert!(IpnsName::from_multihash_bytes(&mh).is_err());
        assert!(IpnsName::from_multihash_bytes(&mh[..37]).is_err());
        assert!(IpnsName::from_routing_key(&mh[..37]).is_err());
        // Secp256k1 key type (2) inlined.
        let mut secp = vec![0x00, 37, 0x08, 0x02, 0x12, 33];
        secp.extend_from_slice(&[2u8; 33]);
        assert_eq!(
            IpnsName::from_multihash_bytes(&secp),
            Err(NameError::Key(PublicKeyError::UnsupportedType(2)))
        );
    }

    proptest! {
        #[test]
        fn text_round_trip(seed in any::<[u8; 32]>()) {
            let name = ShareKey::from_seed(&seed).name();
            prop_assert_eq!(name.to_string().parse::<IpnsName>().unwrap(), name);
            prop_assert_eq!(name.to_peer_id_string().parse::<IpnsName>().unwrap(), name);
            prop_assert_eq!(IpnsName::from_routing_key(&name.routing_key()).unwrap(), name);
        }

        #[test]
        fn parsing_garbage_never_panics(s in ".{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = s.parse::<IpnsName>();
            let _ = IpnsName::from_multihash_bytes(&bytes);
            let _ = IpnsName::from_routing_key(&bytes);
        }
    }
}
