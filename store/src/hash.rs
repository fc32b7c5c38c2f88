//! Hash functions and CID construction/verification.

use cid::Cid;
use multihash::Multihash;
use sha2::Digest;

/// Multicodec of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of dag-cbor (cairn's id blocks: maps whose links are CBOR tag 42).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of blake3 (32-byte digest).
pub const BLAKE3: u64 = 0x1e;

/// The hash functions cairn can address blocks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlg {
    /// sha2-256, the IPFS default.
    #[default]
    Sha2_256,
    /// blake3 with a 32-byte digest.
    Blake3,
}

impl HashAlg {
    /// The multihash code of this function.
    pub fn code(self) -> u64 {
        match self {
            HashAlg::Sha2_256 => SHA2_256,
            HashAlg::Blake3 => BLAKE3,
        }
    }

    /// The function behind a multihash code, if cairn knows it.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            SHA2_256 => Some(HashAlg::Sha2_256),
            BLAKE3 => Some(HashAlg::Blake3),
            _ => None,
        }
    }

    /// Hashes `data` into a multihash.
    pub fn digest(self, data: &[u8]) -> Multihash<64> {
        let wrapped = match self {
            HashAlg::Sha2_256 => Multihash::wrap(SHA2_256, &sha2::Sha256::digest(data)),
            HashAlg::Blake3 => Multihash::wrap(BLAKE3, blake3::hash(data).as_bytes()),
        };
        // Both digests are 32 bytes, well under the 64-byte capacity.
        wrapped.unwrap_or_default()
    }
}

impl std::str::FromStr for HashAlg {
    type Err = UnknownHash;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha2-256" => Ok(HashAlg::Sha2_256),
            "blake3" => Ok(HashAlg::Blake3),
            other => Err(UnknownHash(other.to_string())),
        }
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashAlg::Sha2_256 => "sha2-256",
            HashAlg::Blake3 => "blake3",
        })
    }
}

/// A hash function name cairn does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown hash function {0:?} (expected sha2-256 or blake3)")]
pub struct UnknownHash(pub String);

/// Why bytes do not match a CID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The CID uses a hash function cairn cannot compute.
    #[error("block {cid}: unsupported hash function 0x{code:x}")]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
    /// The bytes hash to something else.
    #[error("block {cid}: content does not match its CID")]
    Mismatch {
        /// The CID the bytes were claimed to have.
        cid: Cid,
    },
}

/// Builds a CID of `version` (0 or 1) for `data` under `codec` and `alg`.
/// CIDv0 is only possible for dag-pb + sha2-256; other combinations fall back to CIDv1.
pub fn cid_for(version: u8, codec: u64, alg: HashAlg, data: &[u8]) -> Cid {
    let mh = alg.digest(data);
    if version == 0 && codec == DAG_PB && alg == HashAlg::Sha2_256 {
        if let Ok(cid) = Cid::new_v0(mh) {
            return cid;
        }
    }
    Cid::new_v1(codec, mh)
}

/// Checks that `data` hashes to `cid`'s multihash.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), VerifyError> {
    let code = cid.hash().code();
    let alg = HashAlg::from_code(code).ok_or(VerifyError::UnsupportedHash { cid: *cid, code })?;
    let got = alg.digest(data);
    if got.digest() == cid.hash().digest() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch { cid: *cid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_leaf_of_hello_world_matches_kubo() {
        let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"hello world\n");
        assert_eq!(
            cid.to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        assert!(verify(&cid, b"hello world\n").is_ok());
        assert_eq!(
            verify(&cid, b"hello world!"),
            Err(VerifyError::Mismatch { cid })
        );
    }

    #[test]
    fn blake3_cids_verify() {
        let cid = cid_for(1, RAW, HashAlg::Blake3, b"abc");
        assert_eq!(cid.hash().code(), BLAKE3);
        assert!(verify(&cid, b"abc").is_ok());
        assert!(verify(&cid, b"abd").is_err());
    }
}
