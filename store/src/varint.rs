//! Minimal protobuf wire helpers: unsigned varints, tags and length-delimited fields.

/// Appends an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field tag.
pub fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_uvarint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads an unsigned varint from the front of `buf`, returning it and its length.
pub fn read_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A cursor over protobuf-encoded bytes; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads a varint.
    pub fn uvarint(&mut self) -> Option<u64> {
        let (v, n) = read_uvarint(&self.buf[self.pos..])?;
        self.pos += n;
        Some(v)
    }

    /// Reads a field tag as (field number, wire type).
    pub fn tag(&mut self) -> Option<(u32, u8)> {
        let t = self.uvarint()?;
        let field = u32::try_from(t >> 3).ok()?;
        if field == 0 {
            return None;
        }
        Some((field, (t & 7) as u8))
    }

    /// Reads a length-delimited field, returning its byte range in the buffer.
    pub fn len_delimited(&mut self) -> Option<(usize, usize)> {
        let len = usize::try_from(self.uvarint()?).ok()?;
        let start = self.pos;
        let end = start.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        self.pos = end;
        Some((start, end))
    }

    /// Reads a fixed 32-bit little-endian field.
    pub fn fixed32(&mut self) -> Option<u32> {
        let end = self.pos.checked_add(4)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Skips a field of the given wire type (for forward compatibility).
    pub fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            0 => self.uvarint().map(|_| ()),
            1 => {
                let end = self.pos.checked_add(8)?;
                (end <= self.buf.len()).then(|| self.pos = end)
            }
            2 => self.len_delimited().map(|_| ()),
            5 => self.fixed32().map(|_| ()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn uvarint_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert_eq!(read_uvarint(&out), Some((v, out.len())));
        }
    }
}
