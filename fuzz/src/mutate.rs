//! A small, deterministic mutator for the bounded CI run: no coverage feedback, but mutations
//! that matter for length-prefixed binary formats (protobuf, CAR, multiformats varints).
//!
//! Every mutant is a pure function of the seed input, a splice partner and the RNG state, so a
//! run is reproducible from its `--seed`.

/// xorshift64* : tiny, fast, and good enough to pick mutations (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Values that sit on boundaries of lengths, counts and varint widths.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x3fff,
    0x4000,
    0xffff,
    0x1_0000,
    1 << 20,
    (2 << 20) + 1,
    0xffff_ffff,
    1 << 32,
    u64::MAX,
];

/// Inputs are kept under this size so one mutant never costs much.
pub const MAX_INPUT: usize = 64 << 10;

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint starting at `pos`: (value, length), if one is there.
fn varint_at(buf: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in buf.get(pos..)?.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A random run `start..end` inside `len` bytes (empty when `len` is 0).
fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let start = rng.below(len + 1);
    let end = start + rng.below(len - start + 1).min(64);
    (start, end)
}

/// Applies one to four stacked mutations to `input`, splicing from `other` where one is picked.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut buf = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, &mut buf, other);
    }
    buf.truncate(MAX_INPUT);
    buf
}

fn mutate_once(rng: &mut Rng, buf: &mut Vec<u8>, other: &[u8]) {
    let len = buf.len();
    match rng.below(11) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        // Overwrite a byte with a random or a boundary value.
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => 0x80,
                _ => rng.next_u64() as u8,
            };
        }
        // Truncate.
        2 => buf.truncate(rng.below(len + 1)),
        // Delete a run.
        3 => {
            let (s, e) = range(rng, len);
            buf.drain(s..e);
        }
        // Insert random bytes.
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            buf.splice(at..at, bytes);
        }
        // Duplicate a run (repeated fields, repeated sections).
        5 => {
            let (s, e) = range(rng, len);
            let run = buf[s..e].to_vec();
            let at = rng.below(len + 1);
            buf.splice(at..at, run);
        }
        // Splice: keep a prefix of this input, continue with a suffix of another.
        6 => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            buf.truncate(cut);
            buf.extend_from_slice(&other[from..]);
        }
        // Insert a run of another input.
        7 => {
            let (s, e) = range(rng, other.len());
            let at = rng.below(len + 1);
            buf.splice(at..at, other[s..e].iter().copied());
        }
        // Nudge a varint (a length, a count, a tag) up or down a little.
        8 | 9 if len > 0 => {
            let at = rng.below(len);
            if let Some((v, n)) = varint_at(buf, at) {
                let delta = 1 + rng.below(8) as u64;
                let nv = if rng.one_in(2) {
                    v.wrapping_add(delta)
                } else {
                    v.wrapping_sub(delta)
                };
                let mut enc = Vec::with_capacity(10);
                put_uvarint(&mut enc, nv);
                buf.splice(at..at + n, enc);
            }
        }
        // Replace a varint with a boundary value.
        _ if len > 0 => {
            let at = rng.below(len);
            let n = varint_at(buf, at).map_or(1, |(_, n)| n);
            let mut enc = Vec::with_capacity(10);
            put_uvarint(&mut enc, INTERESTING[rng.below(INTERESTING.len())]);
            buf.splice(at..at + n, enc);
        }
        _ => buf.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_reproducible_and_bounded() {
        let input = b"\x0a\x05hello\x12\x03abc".to_vec();
        let other = vec![0x80u8; 100];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..1000)
                .map(|_| mutate(&mut rng, &input, &other))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!(a.iter().all(|m| m.len() <= MAX_INPUT));
        assert!(a.iter().any(|m| m.len() < input.len()));
        assert!(a.iter().any(|m| m.len() > input.len()));
    }

    #[test]
    fn varints_are_found_and_rewritten() {
        assert_eq!(varint_at(&[0x96, 0x01], 0), Some((150, 2)));
        assert_eq!(varint_at(&[0x96], 0), None);
        assert_eq!(varint_at(&[1], 3), None);
        let mut rng = Rng::new(1);
        let mut seen_growth = false;
        for _ in 0..200 {
            let mut buf = vec![0x05u8];
            mutate_once(&mut rng, &mut buf, &[]);
            seen_growth |= buf.len() > 1;
        }
        assert!(seen_growth);
    }
}
