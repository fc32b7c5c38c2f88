//! Share keys: Ed25519 key pairs, their libp2p protobuf forms, and key files.
//!
//! A public key travels as the libp2p `PublicKey` protobuf (`Type = 1` (Ed25519), `Data` = the
//! 32-byte key): `08 01 12 20 ‖ key`, 36 bytes. Only this canonical encoding is accepted, since
//! an IPNS name is these very bytes and a second encoding of one key would be a second name.
//!
//! A key file holds the libp2p `PrivateKey` protobuf (`Type = 1`, `Data` = seed ‖ public key):
//! `08 01 12 40 ‖ seed ‖ key`, 68 bytes, the format go-libp2p and js-libp2p store keys in (Kubo's
//! `ipfs key import` reads it as `libp2p-protobuf-cleartext`). [`ShareKey::save`] creates it
//! with mode 0600 from the first byte on (a temporary file beside the target, created 0600,
//! written and fsynced, then hard-linked to the final name, which fails rather than replace an
//! existing key, then the directory fsynced). [`ShareKey::load`] refuses a file that anyone but
//! its owner may read or write, or that is not exactly such a protobuf whose public half matches
//! its seed.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::name::IpnsName;
use crate::varint;

/// libp2p `KeyType` of Ed25519.
pub const KEY_TYPE_ED25519: u64 = 1;

/// Length of the `PublicKey` protobuf of an Ed25519 key.
pub const PUBLIC_KEY_PROTOBUF_LEN: usize = 36;

const PUBLIC_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];
const PRIVATE_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x40];
const PRIVATE_PROTOBUF_LEN: usize = 68;
/// Key files larger than this are not read at all.
const MAX_KEY_FILE: u64 = 4096;

/// Why bytes are not a public key cairn accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// Not a libp2p `PublicKey` protobuf.
    #[error("not a libp2p public key protobuf: {0}")]
    Malformed(&'static str),
    /// A key type other than Ed25519 (0 RSA, 2 Secp256k1, 3 ECDSA).
    #[error("key type {0} is not supported: only Ed25519 (type 1) keys are")]
    UnsupportedType(u64),
    /// 32 bytes that are not an Ed25519 point.
    #[error("the 32 bytes are not an Ed25519 public key")]
    NotAPoint,
}

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The OS random source failed.
    #[error("cannot generate a share key: {0}")]
    Random(getrandom::Error),
    /// Reading or writing the file failed.
    #[error("share key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `save` to a path that already holds a file.
    #[error("share key file {path} already exists; refusing to replace it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a regular file.
    #[error("share key file {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Group or others may read or write the file.
    #[error("share key file {path} has mode {mode:04o}, open to other users; run `chmod 600 {path}` if the key is still secret")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a libp2p Ed25519 private key protobuf.
    #[error("share key file {path} is not an Ed25519 key file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// An Ed25519 public key, the key of an IPNS name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ed25519PublicKey([u8; 32]);

impl Ed25519PublicKey {
    /// The key of 32 bytes, if they are a point of the curve.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, PublicKeyError> {
        VerifyingKey::from_bytes(bytes).map_err(|_| PublicKeyError::NotAPoint)?;
        Ok(Ed25519PublicKey(*bytes))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The libp2p `PublicKey` protobuf: `08 01 12 20 ‖ key`.
    pub fn to_protobuf(&self) -> [u8; PUBLIC_KEY_PROTOBUF_LEN] {
        let mut out = [0u8; PUBLIC_KEY_PROTOBUF_LEN];
        out[..4].copy_from_slice(&PUBLIC_PREFIX);
        out[4..].copy_from_slice(&self.0);
        out
    }

    /// Reads a libp2p `PublicKey` protobuf; only the canonical Ed25519 encoding is accepted.
    pub fn from_protobuf(bytes: &[u8]) -> Result<Self, PublicKeyError> {
        let (key_type, data) =
            read_key_protobuf(bytes).ok_or(PublicKeyError::Malformed("bad framing"))?;
        if key_type != KEY_TYPE_ED25519 {
            return Err(PublicKeyError::UnsupportedType(key_type));
        }
        let key: &[u8; 32] = data
            .try_into()
            .map_err(|_| PublicKeyError::Malformed("Ed25519 key is not 32 bytes"))?;
        let k = Self::from_bytes(key)?;
        if k.to_protobuf() != bytes {
            return Err(PublicKeyError::Malformed("not canonically encoded"));
        }
        Ok(k)
    }

    /// Whether `signature` is this key's signature of `message` (strict RFC 8032 checks: no
    /// malleable signatures, no small-order keys).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        VerifyingKey::from_bytes(&self.0)
            .map(|k| k.verify_strict(message, &sig).is_ok())
            .unwrap_or(false)
    }

    /// The IPNS name of this key.
    pub fn name(&self) -> IpnsName {
        IpnsName::from_public_key(*self)
    }

    /// The key as an X25519 public key (the birational map of the Edwards point), what a
    /// secret is sealed to (see `seal.rs`).
    pub(super) fn to_x25519(self) -> Option<[u8; 32]> {
        VerifyingKey::from_bytes(&self.0)
            .ok()
            .map(|k| k.to_montgomery().to_bytes())
    }
}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey({})", self.name())
    }
}

/// Reads `Type` (field 1, varint) and `Data` (field 2, bytes) of a key protobuf, each exactly once.
fn read_key_protobuf(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut r = varint::Reader::new(bytes);
    let (mut key_type, mut data) = (None, None);
    while !r.is_empty() {
        match r.tag()? {
            (1, 0) if key_type.is_none() => key_type = Some(r.uvarint()?),
            (2, 2) if data.is_none() => {
                let (s, e) = r.len_delimited()?;
                data = Some(&bytes[s..e]);
            }
            _ => return None,
        }
    }
    Some((key_type?, data?))
}

/// The key pair of a share (or of any IPNS name cairn publishes).
///
/// `Debug` shows the name, never the secret.
#[derive(Clone)]
pub struct ShareKey {
    signing: SigningKey,
}

impl ShareKey {
    /// A new random key, from the OS random source.
    pub fn generate() -> Result<ShareKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(KeyError::Random)?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// The key of a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> ShareKey {
        ShareKey {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The IPNS name (share id) of this key.
    pub fn name(&self) -> IpnsName {
        self.public_key().name()
    }

    /// The X25519 secret scalar of this key (before clamping): opens what was sealed to
    /// [`Ed25519PublicKey::to_x25519`] of the public half.
    pub(super) fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    /// The 32-byte seed (what a sealed key carries).
    pub(super) fn seed(&self) -> [u8; 32] {
        *self.signing.as_bytes()
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    fn to_private_protobuf(&self) -> [u8; PRIVATE_PROTOBUF_LEN] {
        let mut out = [0u8; PRIVATE_PROTOBUF_LEN];
        out[..4].copy_from_slice(&PRIVATE_PREFIX);
        out[4..36].copy_from_slice(self.signing.as_bytes());
        out[36..].copy_from_slice(&self.public_key().0);
        out
    }

    fn from_private_protobuf(bytes: &[u8]) -> Result<ShareKey, &'static str> {
        let (key_type, data) = read_key_protobuf(bytes).ok_or("bad protobuf framing")?;
        if key_type != KEY_TYPE_ED25519 {
            return Err("key type is not Ed25519 (1)");
        }
        if data.len() != 64 {
            return Err("Ed25519 private key data is not 64 bytes (seed and public key)");
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&data[..32]);
        let key = Self::from_seed(&seed);
        seed.fill(0);
        if key.public_key().0[..] != data[32..] {
            return Err("public key does not belong to the seed");
        }
        Ok(key)
    }

    /// Writes the key to a new file at `path`, mode 0600, durably; fails if `path` exists.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| io_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut salt = [0u8; 8];
        getrandom::getrandom(&mut salt).map_err(KeyError::Random)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(
            ".tmp-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(salt)
        ));
        let tmp = dir.join(tmp_name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err)?;
        let written = (|| {
            // The umask can only have taken bits away; make it exactly 0600.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            let mut bytes = self.to_private_protobuf();
            let w = f.write_all(&bytes).and_then(|()| f.sync_all());
            bytes.fill(0);
            w?;
            fs::hard_link(&tmp, path)
        })();
        drop(f);
        let removed = fs::remove_file(&tmp);
        match written {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err(e)),
            Ok(()) => {}
        }
        removed.map_err(io_err)?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyError::Io { path: dir, source })
    }

    /// Reads a key file written by [`save`](Self::save) (or any libp2p Ed25519 private key
    /// protobuf), refusing one that group or others may access.
    pub fn load(path: &Path) -> Result<ShareKey, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        // O_NONBLOCK: a FIFO put in the key's place must not hang the open.
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err)?;
        let meta = f.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let malformed = |reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        if meta.len() > MAX_KEY_FILE {
            return Err(malformed("file is too large for a key"));
        }
        let mut bytes = Vec::with_capacity(PRIVATE_PROTOBUF_LEN);
        f.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        let key = Self::from_private_protobuf(&bytes).map_err(malformed);
        bytes.fill(0);
        key
    }
}

impl fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareKey({})", self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 8032, 7.1, test 1.
    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIG_HEX: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn seed() -> [u8; 32] {
        hex(SEED_HEX).try_into().unwrap()
    }

    #[test]
    fn rfc8032_vector() {
        let key = ShareKey::from_seed(&seed());
        assert_eq!(key.public_key().to_bytes().to_vec(), hex(PUBLIC_HEX));
        let sig = key.sign(b"");
        assert_eq!(sig.to_vec(), hex(SIG_HEX));
        assert!(key.public_key().verify(b"", &sig));
        assert!(!key.public_key().verify(b"x", &sig));
        assert!(!key.public_key().verify(b"", &sig[..63]));
    }

    #[test]
    fn public_key_protobuf() {
        let k = ShareKey::from_seed(&seed()).public_key();
        let pb = k.to_protobuf();
        assert_eq!(&pb[..4], &[8, 1, 0x12, 0x20]);
        assert_eq!(Ed25519PublicKey::from_protobuf(&pb), Ok(k));
        // RSA, a short key, non-canonical field order, a trailing field.
        assert_eq!(
            Ed25519PublicKey::from_protobuf(&[8, 0, 0x12, 1, 0]),
            Err(PublicKeyError::UnsupportedType(0))
        );
        assert!(Ed25519PublicKey::from_protobuf(&pb[..35]).is_err());
        let mut swapped = vec![0x12, 0x20];
        swapped.extend_from_slice(&hex(PUBLIC_HEX));
        swapped.extend_from_slice(&[8, 1]);
        assert_eq!(
            Ed25519PublicKey::from_protobuf(&swapped),
            Err(PublicKeyError::Malformed("not canonically encoded"))
        );
        let mut extra = pb.to_vec();
        extra.extend_from_slice(&[0x18, 0]);
        assert!(Ed25519PublicKey::from_protobuf(&extra).is_err());
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share.key");
        let key = ShareKey::generate().unwrap();
        key.save(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), PRIVATE_PROTOBUF_LEN as u64);
        let back = ShareKey::load(&path).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        // Nothing else is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A second save does not replace the first key.
        let other = ShareKey::generate().unwrap();
        assert!(matches!(other.save(&path), Err(KeyError::Exists { .. })));
        assert_eq!(ShareKey::load(&path).unwrap().name(), key.name());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(format!("{key:?}"), format!("ShareKey({})", key.name()));
    }

    #[test]
    fn save_is_0600_whatever_the_umask() {
        // A process-wide umask would race with other tests; an existing 0777 directory and the
        // explicit set_permissions are what matter. Check the file is never created wider.
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("k");
        ShareKey::generate().unwrap().save(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn load_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        ShareKey::from_seed(&seed()).save(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = ShareKey::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::Permissions { mode: m, .. } if m == mode),
                "{err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(ShareKey::load(&path).is_ok());

        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .unwrap()
                .write_all(bytes)
                .unwrap();
            p
        };
        let good = ShareKey::from_seed(&seed()).to_private_protobuf();
        let mut wrong_public = good;
        wrong_public[67] ^= 1;
        let mut rsa = good;
        rsa[1] = 0;
        let cases: [(&str, &[u8]); 5] = [
            ("empty", b""),
            ("short", &good[..67]),
            ("wrong-public", &wrong_public),
            ("rsa", &rsa),
            ("long", &[0u8; 5000]),
        ];
        for (name, bytes) in cases {
            let p = write(name, bytes);
            let err = ShareKey::load(&p).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{name}: {err}");
        }
        assert!(matches!(
            ShareKey::load(dir.path()),
            Err(KeyError::NotAFile { .. })
        ));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            ShareKey::load(&fifo),
            Err(KeyError::NotAFile { .. })
        ));
        assert!(matches!(
            ShareKey::generate().unwrap().save(&dir.path().join("no/such/dir/k")),
            Err(KeyError::Io { path, .. }) if path.ends_with("no/such/dir/k")
        ));
        assert!(matches!(
            ShareKey::load(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
