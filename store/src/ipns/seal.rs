//! A share key sealed to one writer, so that a member list (which anyone following the share
//! may read) can hand the share's key to the writers its owner lets publish, and to nobody else.
//!
//! The writer's Ed25519 key is used as an X25519 key (its Edwards point mapped to Montgomery
//! form; its secret scalar, the first half of SHA-512 of the seed, as the X25519 secret), as
//! age and libsodium's `crypto_sign_ed25519_pk_to_curve25519` do:
//!
//! 1. `e` is a fresh random X25519 secret, `E = X25519(e, 9)`;
//! 2. `S = X25519(e, R)` for the writer's key `R`; an all-zero `S` (a small-order `R`) is
//!    refused;
//! 3. `k = SHA-256("cairn-seal-v1" ‖ len(context) as u32 BE ‖ context ‖ E ‖ R ‖ S)`;
//! 4. sealed = `E ‖ ChaCha20-Poly1305(k, nonce 0, aad = context, seed)`: 32 + 32 + 16 bytes.
//!
//! The nonce can be fixed: every key `k` seals one message (`e` is never reused). The context
//! binds the sealed key to where it appears (the share and the writer), so it cannot be moved to
//! another list entry; the opened key must still be checked against the share id.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use sha2::{Digest, Sha256};

use super::key::{Ed25519PublicKey, ShareKey};

/// The length of a sealed key.
pub const SEALED_LEN: usize = 32 + 32 + 16;
const DOMAIN: &[u8] = b"cairn-seal-v1";

/// Why a sealed key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not [`SEALED_LEN`] bytes.
    #[error("a sealed key is {SEALED_LEN} bytes, not {0}")]
    Length(usize),
    /// The key it was sealed to cannot take part in a key exchange.
    #[error("the key is not usable for sealing (a small-order point)")]
    WeakKey,
    /// The OS random source failed.
    #[error("cannot seal a key: the OS random source failed")]
    Random,
    /// It was not sealed to this key, for this context, or it was altered.
    #[error("the sealed key does not open with this key (sealed to another, or altered)")]
    DoesNotOpen,
}

fn derive(context: &[u8], eph: &[u8; 32], to: &[u8; 32], shared: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(
        u32::try_from(context.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    h.update(context);
    h.update(eph);
    h.update(to);
    h.update(shared);
    h.finalize().into()
}

/// `secret`'s seed sealed to `to` for `context` (see the module notes).
pub fn seal(
    secret: &ShareKey,
    to: &Ed25519PublicKey,
    context: &[u8],
) -> Result<Vec<u8>, SealError> {
    let r = to.to_x25519().ok_or(SealError::WeakKey)?;
    let mut e = [0u8; 32];
    getrandom::getrandom(&mut e).map_err(|_| SealError::Random)?;
    let eph = MontgomeryPoint::mul_base_clamped(e).to_bytes();
    let shared = MontgomeryPoint(r).mul_clamped(e).to_bytes();
    e.fill(0);
    if shared == [0u8; 32] {
        return Err(SealError::WeakKey);
    }
    let k = derive(context, &eph, &r, &shared);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&k));
    let seed = secret.seed();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &seed,
                aad: context,
            },
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    let mut out = Vec::with_capacity(SEALED_LEN);
    out.extend_from_slice(&eph);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens `sealed` (made by [`seal`] to `me`'s public key for `context`): the key it carries.
pub fn open(sealed: &[u8], me: &ShareKey, context: &[u8]) -> Result<ShareKey, SealError> {
    if sealed.len() != SEALED_LEN {
        return Err(SealError::Length(sealed.len()));
    }
    let r = me.public_key().to_x25519().ok_or(SealError::WeakKey)?;
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&sealed[..32]);
    let shared = MontgomeryPoint(eph)
        .mul_clamped(me.x25519_secret())
        .to_bytes();
    if shared == [0u8; 32] {
        return Err(SealError::DoesNotOpen);
    }
    let k = derive(context, &eph, &r, &shared);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&k));
    let seed = cipher
        .decrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &sealed[32..],
                aad: context,
            },
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| SealError::DoesNotOpen)?;
    Ok(ShareKey::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_writer_and_context() {
        let share = ShareKey::from_seed(&[7; 32]);
        let bob = ShareKey::from_seed(&[8; 32]);
        let eve = ShareKey::from_seed(&[9; 32]);
        let sealed = seal(&share, &bob.public_key(), b"ctx").unwrap();
        assert_eq!(sealed.len(), SEALED_LEN);
        assert_eq!(open(&sealed, &bob, b"ctx").unwrap().name(), share.name());
        // Two seals of one key differ (a fresh ephemeral key each time).
        assert_ne!(seal(&share, &bob.public_key(), b"ctx").unwrap(), sealed);
        assert_eq!(
            open(&sealed, &eve, b"ctx").unwrap_err(),
            SealError::DoesNotOpen
        );
        assert_eq!(
            open(&sealed, &bob, b"other").unwrap_err(),
            SealError::DoesNotOpen
        );
        for i in [0, 31, 32, 63, 64, SEALED_LEN - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&bad, &bob, b"ctx").is_err(), "flipped byte {i}");
        }
        assert_eq!(
            open(&sealed[..40], &bob, b"ctx").unwrap_err(),
            SealError::Length(40)
        );
        // An ephemeral key of small order (all zero) gives no shared secret.
        let mut zero = sealed.clone();
        zero[..32].fill(0);
        assert_eq!(
            open(&zero, &bob, b"ctx").unwrap_err(),
            SealError::DoesNotOpen
        );
    }
}
