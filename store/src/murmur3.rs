//! MurmurHash3 x64 128-bit (seed 0), the hash behind UnixFS HAMT sharding (multihash 0x22).
//!
//! UnixFS uses only the first 64-bit word `h1`, as big-endian bytes (Go's `murmur3.New64().Sum(nil)`),
//! consumed most significant bit first. The JS importer stores the same 8 bytes reversed and consumes
//! them from the end, which is the same order.

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[inline]
fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

#[inline]
fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// MurmurHash3_x64_128 of `data` with seed 0, as the two words `(h1, h2)`.
pub(crate) fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    let mut h1: u64 = 0;
    let mut h2: u64 = 0;
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        h1 ^= mix_k1(le_u64(&block[..8]));
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(le_u64(&block[8..]));
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    if tail.len() > 8 {
        let mut k2 = 0u64;
        for (i, &b) in tail[8..].iter().enumerate() {
            k2 |= u64::from(b) << (8 * i);
        }
        h2 ^= mix_k2(k2);
    }
    if !tail.is_empty() {
        let mut k1 = 0u64;
        for (i, &b) in tail.iter().take(8).enumerate() {
            k1 |= u64::from(b) << (8 * i);
        }
        h1 ^= mix_k1(k1);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// murmur3-x64-64 as UnixFS uses it: `h1` of the 128-bit hash, big-endian.
pub(crate) fn murmur3_x64_64(data: &[u8]) -> [u8; 8] {
    murmur3_x64_128(data).0.to_be_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Vectors printed by `@multiformats/murmur3` (`murmur3128.encode`, which writes h1 then h2
    /// big-endian) and the JS importer's HAMT hash (first 8 bytes, reversed).
    #[test]
    fn matches_js_multiformats_murmur3() {
        let cases: &[(&str, &str)] = &[
            ("", "00000000000000000000000000000000"),
            ("a", "85555565f6597889e6b53a48510e895a"),
            ("hello", "cbd8a7b341bd9b025b1e906a48ae1d19"),
            (
                "The quick brown fox jumps over the lazy dog",
                "e34bbc7bbc071b6c7a433ca9c49a9347",
            ),
            ("file-0001.txt", "c6b80999e8fbb5986ca8e12871ef88d2"),
            ("0123456789abcdef", "4be06d94cf4ad1a787c35b5c63a708da"),
            ("0123456789abcdef0", "eb24ae8785a5c07573fb68b3313128ca"),
        ];
        for (input, want) in cases {
            let (h1, h2) = murmur3_x64_128(input.as_bytes());
            let mut got = h1.to_be_bytes().to_vec();
            got.extend_from_slice(&h2.to_be_bytes());
            assert_eq!(hex(&got), *want, "murmur3 of {input:?}");
            assert_eq!(
                hex(&murmur3_x64_64(input.as_bytes())),
                want[..16],
                "x64-64 of {input:?}"
            );
        }
    }
}
