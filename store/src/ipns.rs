//! IPNS: share keys, names and signed records (ipfs/specs `ipns-record`), shared by the shared
//! folders (a commit's head is an IPNS record) and by the network (DHT and pubsub carry them).
//!
//! Only Ed25519 keys are supported, inlined in their names (identity multihash), so a record
//! never needs its `pubKey` field. Everything that decodes bytes here is total: hostile input
//! from peers gets a typed error, never a panic, and costs at most its own size.
//!
//! # Layout
//! - `key`: [`ShareKey`] (key pair, key files) and [`Ed25519PublicKey`] (libp2p protobuf form).
//! - `name`: [`IpnsName`] (text forms, CID, routing key, pubsub topic).
//! - `record`: [`IpnsRecord`] (create, verify, validate, preference order), [`RecordFields`],
//!   [`RecordValue`].
//! - `seal`: a share key sealed to one writer's key ([`seal`], [`open_sealed`]).
//! - `cbor`: the strict DAG-CBOR subset of the record's `data`, [`CborValue`].
//! - `time`: RFC 3339 with nanoseconds.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use cairn_store::{cid_for, HashAlg, IpnsRecord, RecordFields, RecordValue, ShareKey, RAW};
//!
//! let key = ShareKey::generate().unwrap();
//! let root = cid_for(1, RAW, HashAlg::Sha2_256, b"hello world\n");
//! let now = SystemTime::now();
//! let fields = RecordFields::new(RecordValue::ipfs(root), 1, now + Duration::from_secs(3600));
//! let record = IpnsRecord::create(&key, &fields).unwrap();
//! let back = IpnsRecord::validate(record.as_bytes(), &key.name(), now).unwrap();
//! assert_eq!(back.value().to_string(), format!("/ipfs/{root}"));
//! assert!(key.name().to_string().starts_with("k51"));
//! ```

pub(crate) mod cbor;
mod key;
mod name;
mod record;
mod seal;
mod time;

pub use cbor::{CborError, CborValue, MAX_DEPTH as CBOR_MAX_DEPTH};
pub use key::{Ed25519PublicKey, KeyError, PublicKeyError, ShareKey, KEY_TYPE_ED25519};
pub use name::{IpnsName, NameError, LIBP2P_KEY};
pub use record::{
    IpnsRecord, RecordError, RecordFields, RecordValue, DEFAULT_TTL, MAX_RECORD_SIZE,
    SIGNATURE_V2_PREFIX,
};
pub use seal::{open as open_sealed, seal, SealError, SEALED_LEN};
pub use time::format_utc_seconds;
