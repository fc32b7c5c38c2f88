//! The subset of DAG-CBOR that IPNS record `data` needs: a map with text keys whose values are
//! byte strings, integers, text strings, CIDs (tag 42), or any other DAG-CBOR value kept as its
//! raw bytes.
//!
//! Decoding is strict DAG-CBOR and total: definite lengths only, integers and lengths in their
//! shortest form, map keys text strings in canonical order (shorter first, then bytewise) with
//! no duplicates, only tag 42 (a CID behind a `0x00` byte), floats only as finite 64-bit values,
//! no `undefined` or other simple values, nesting at most [`MAX_DEPTH`] deep, and nothing after
//! the top-level item. Every length is checked against the bytes that remain before anything is
//! allocated, so hostile input costs at most its own size.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use cid::Cid;

/// How deep arrays and maps may nest inside an extra field.
pub const MAX_DEPTH: usize = 16;

const MAJOR_UINT: u8 = 0;
const MAJOR_NEGINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
const TAG_CID: u64 = 42;

/// A value of an IPNS record's `data` map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CborValue {
    /// A byte string.
    Bytes(Vec<u8>),
    /// An integer, in the range CBOR can carry: −2⁶⁴ ..= 2⁶⁴−1.
    Int(i128),
    /// A text string.
    Text(String),
    /// A CID (CBOR tag 42).
    Link(Cid),
    /// Any other DAG-CBOR value (booleans, null, floats, arrays, maps), as its encoded bytes.
    Other(Vec<u8>),
}

/// Why bytes are not the DAG-CBOR this module reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The bytes end inside an item.
    #[error("DAG-CBOR ends early")]
    Truncated,
    /// Bytes follow the top-level item.
    #[error("DAG-CBOR has bytes after its value")]
    TrailingBytes,
    /// An integer or length not in its shortest form.
    #[error("DAG-CBOR integer or length not in its shortest form")]
    NotMinimal,
    /// Indefinite lengths or reserved head bytes.
    #[error("DAG-CBOR uses an indefinite length or a reserved encoding")]
    Indefinite,
    /// A text string that is not UTF-8.
    #[error("DAG-CBOR text is not UTF-8")]
    BadUtf8,
    /// A map key that is not a text string.
    #[error("DAG-CBOR map key is not a text string")]
    KeyNotText,
    /// Map keys out of canonical order, or repeated.
    #[error("DAG-CBOR map keys out of canonical order or repeated")]
    KeyOrder,
    /// A tag other than 42, or a tag 42 that does not hold a CID.
    #[error("DAG-CBOR tag is not a CID (tag 42)")]
    BadTag,
    /// A simple value DAG-CBOR forbids (undefined, half/single floats, NaN, infinities).
    #[error("DAG-CBOR simple value or float not allowed")]
    BadSimple,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("DAG-CBOR nests deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The top-level item is not a map.
    #[error("DAG-CBOR data is not a map")]
    NotMap,
    /// An integer outside what CBOR can carry (build side).
    #[error("integer {0} is outside what CBOR can carry")]
    IntOutOfRange(i128),
}

/// Canonical DAG-CBOR key order: shorter keys first, then bytewise.
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

// ---- Encoding

fn put_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Appends a text string.
pub fn put_text(out: &mut Vec<u8>, s: &str) {
    put_head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a map header of `len` entries.
pub fn put_map_header(out: &mut Vec<u8>, len: usize) {
    put_head(out, MAJOR_MAP, len as u64);
}

/// Appends one value. `Other` bytes must already be checked with [`check_item`].
pub fn put_value(out: &mut Vec<u8>, v: &CborValue) -> Result<(), CborError> {
    match v {
        CborValue::Bytes(b) => put_bytes(out, b),
        CborValue::Text(s) => put_text(out, s),
        CborValue::Int(i) => {
            if let Ok(u) = u64::try_from(*i) {
                put_head(out, MAJOR_UINT, u);
            } else {
                let n = u64::try_from(-1 - *i).map_err(|_| CborError::IntOutOfRange(*i))?;
                put_head(out, MAJOR_NEGINT, n);
            }
        }
        CborValue::Link(cid) => {
            put_head(out, MAJOR_TAG, TAG_CID);
            let bytes = cid.to_bytes();
            put_head(out, MAJOR_BYTES, bytes.len() as u64 + 1);
            out.push(0);
            out.extend_from_slice(&bytes);
        }
        CborValue::Other(raw) => out.extend_from_slice(raw),
    }
    Ok(())
}

/// What a signature over `map` covers: `prefix` ‖ the map's encoding (member lists and
/// commits sign this way, each with its own prefix).
pub fn signing_input(
    prefix: &[u8],
    map: &BTreeMap<String, CborValue>,
) -> Result<Vec<u8>, CborError> {
    let mut msg = prefix.to_vec();
    msg.extend(encode_map(map)?);
    Ok(msg)
}

/// Checks that `raw` is exactly one well-formed DAG-CBOR item.
pub fn check_item(raw: &[u8]) -> Result<(), CborError> {
    let mut d = Decoder { buf: raw, pos: 0 };
    d.skip_item(0)?;
    d.finish()
}

// ---- Decoding

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self.pos.checked_add(n).ok_or(CborError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CborError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn finish(&self) -> Result<(), CborError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(CborError::TrailingBytes)
        }
    }

    /// Reads an item head: (major type, low 5 bits, argument). For major 7 the argument of
    /// `info` 25..=27 is the float's bits.
    fn head(&mut self) -> Result<(u8, u8, u64), CborError> {
        let ib = self.take(1)?[0];
        let (major, info) = (ib >> 5, ib & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.take(1)?[0]);
                if v < 24 && major != MAJOR_SIMPLE {
                    return Err(CborError::NotMinimal);
                }
                v
            }
            25 => {
                let b = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if v <= 0xff && major != MAJOR_SIMPLE {
                    return Err(CborError::NotMinimal);
                }
                v
            }
            26 => {
                let b = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if v <= 0xffff && major != MAJOR_SIMPLE {
                    return Err(CborError::NotMinimal);
                }
                v
            }
            27 => {
                let b = self.take(8)?;
                let v = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                if v <= 0xffff_ffff && major != MAJOR_SIMPLE {
                    return Err(CborError::NotMinimal);
                }
                v
            }
            _ => return Err(CborError::Indefinite),
        };
        Ok((major, info, arg))
    }

    /// A length argument, checked against what remains (each element takes at least one byte).
    fn length(&self, arg: u64) -> Result<usize, CborError> {
        let n = usize::try_from(arg).map_err(|_| CborError::Truncated)?;
        if n > self.remaining() {
            return Err(CborError::Truncated);
        }
        Ok(n)
    }

    fn text(&mut self, arg: u64) -> Result<&'a str, CborError> {
        let n = self.length(arg)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| CborError::BadUtf8)
    }

    fn cid(&mut self, arg: u64) -> Result<Cid, CborError> {
        if arg != TAG_CID {
            return Err(CborError::BadTag);
        }
        let (major, _, len) = self.head()?;
        if major != MAJOR_BYTES {
            return Err(CborError::BadTag);
        }
        let n = self.length(len)?;
        let bytes = self.take(n)?;
        let (&prefix, cid_bytes) = bytes.split_first().ok_or(CborError::BadTag)?;
        if prefix != 0 {
            return Err(CborError::BadTag);
        }
        let cid = Cid::try_from(cid_bytes).map_err(|_| CborError::BadTag)?;
        if cid.to_bytes() != cid_bytes {
            return Err(CborError::BadTag);
        }
        Ok(cid)
    }

    fn simple(&mut self, info: u8, arg: u64) -> Result<(), CborError> {
        match info {
            20..=22 => Ok(()), // false, true, null
            27 => {
                let f = f64::from_bits(arg);
                if f.is_finite() {
                    Ok(())
                } else {
                    Err(CborError::BadSimple)
                }
            }
            _ => Err(CborError::BadSimple),
        }
    }

    /// Reads a map key: a text string greater than `prev` in canonical order.
    fn key(&mut self, prev: Option<&str>) -> Result<&'a str, CborError> {
        let (major, _, arg) = self.head()?;
        if major != MAJOR_TEXT {
            return Err(CborError::KeyNotText);
        }
        let key = self.text(arg)?;
        if prev.is_some_and(|p| key_order(p, key) != Ordering::Less) {
            return Err(CborError::KeyOrder);
        }
        Ok(key)
    }

    /// Validates one whole item of any kind.
    fn skip_item(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let (major, info, arg) = self.head()?;
        match major {
            MAJOR_UINT | MAJOR_NEGINT => Ok(()),
            MAJOR_BYTES => {
                let n = self.length(arg)?;
                self.take(n).map(|_| ())
            }
            MAJOR_TEXT => self.text(arg).map(|_| ()),
            MAJOR_ARRAY => {
                let n = self.length(arg)?;
                (0..n).try_for_each(|_| self.skip_item(depth + 1))
            }
            MAJOR_MAP => {
                let n = self.length(arg)?;
                let mut prev = None;
                for _ in 0..n {
                    prev = Some(self.key(prev)?);
                    self.skip_item(depth + 1)?;
                }
                Ok(())
            }
            MAJOR_TAG => self.cid(arg).map(|_| ()),
            _ => self.simple(info, arg),
        }
    }

    /// Reads one value of the data map.
    fn value(&mut self) -> Result<CborValue, CborError> {
        let start = self.pos;
        let (major, info, arg) = self.head()?;
        Ok(match major {
            MAJOR_UINT => CborValue::Int(i128::from(arg)),
            MAJOR_NEGINT => CborValue::Int(-1 - i128::from(arg)),
            MAJOR_BYTES => {
                let n = self.length(arg)?;
                CborValue::Bytes(self.take(n)?.to_vec())
            }
            MAJOR_TEXT => CborValue::Text(self.text(arg)?.to_string()),
            MAJOR_TAG => CborValue::Link(self.cid(arg)?),
            MAJOR_SIMPLE => {
                self.simple(info, arg)?;
                CborValue::Other(self.buf[start..self.pos].to_vec())
            }
            _ => {
                self.pos = start;
                self.skip_item(0)?;
                CborValue::Other(self.buf[start..self.pos].to_vec())
            }
        })
    }
}

/// Decodes a DAG-CBOR map with text keys.
pub fn decode_map(buf: &[u8]) -> Result<BTreeMap<String, CborValue>, CborError> {
    let mut d = Decoder { buf, pos: 0 };
    let (major, _, arg) = d.head()?;
    if major != MAJOR_MAP {
        return Err(CborError::NotMap);
    }
    let n = d.length(arg)?;
    let mut map = BTreeMap::new();
    let mut prev: Option<&str> = None;
    for _ in 0..n {
        let key = d.key(prev)?;
        let value = d.value()?;
        map.insert(key.to_string(), value);
        prev = Some(key);
    }
    d.finish()?;
    Ok(map)
}

/// Encodes a map with text keys in canonical order.
pub fn encode_map(map: &BTreeMap<String, CborValue>) -> Result<Vec<u8>, CborError> {
    let mut entries: Vec<(&String, &CborValue)> = map.iter().collect();
    entries.sort_by(|a, b| key_order(a.0, b.0));
    let mut out = Vec::new();
    put_map_header(&mut out, entries.len());
    for (k, v) in entries {
        put_text(&mut out, k);
        put_value(&mut out, v)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, RAW};
    use proptest::prelude::*;

    fn one(v: CborValue) -> BTreeMap<String, CborValue> {
        BTreeMap::from([("k".to_string(), v)])
    }

    #[test]
    fn integers_use_the_shortest_head() {
        let cases: [(i128, &[u8]); 9] = [
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 24]),
            (255, &[0x18, 0xff]),
            (256, &[0x19, 1, 0]),
            (65_536, &[0x1a, 0, 1, 0, 0]),
            (1 << 32, &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
            (-1, &[0x20]),
            (
                -(1i128 << 64),
                &[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for (v, enc) in cases {
            let mut out = Vec::new();
            put_value(&mut out, &CborValue::Int(v)).unwrap();
            assert_eq!(out, enc, "{v}");
            let map = encode_map(&one(CborValue::Int(v))).unwrap();
            assert_eq!(decode_map(&map).unwrap(), one(CborValue::Int(v)));
        }
        assert_eq!(
            put_value(&mut Vec::new(), &CborValue::Int(1i128 << 64)),
            Err(CborError::IntOutOfRange(1i128 << 64))
        );
    }

    #[test]
    fn keys_are_sorted_length_first() {
        let map: BTreeMap<String, CborValue> = ["Validity", "TTL", "Value", "Sequence", "_c"]
            .iter()
            .map(|k| (k.to_string(), CborValue::Int(0)))
            .collect();
        let enc = encode_map(&map).unwrap();
        let mut expect = vec![0xa5];
        for k in ["_c", "TTL", "Value", "Sequence", "Validity"] {
            put_text(&mut expect, k);
            expect.push(0);
        }
        assert_eq!(enc, expect);
    }

    #[test]
    fn strictness() {
        // {"a": 1, "a": 2}: duplicate. {"b": 0, "a": 0}: out of order. {"aa":0,"b":0}: length first.
        assert_eq!(
            decode_map(&[0xa2, 0x61, b'a', 1, 0x61, b'a', 2]),
            Err(CborError::KeyOrder)
        );
        assert_eq!(
            decode_map(&[0xa2, 0x61, b'b', 0, 0x61, b'a', 0]),
            Err(CborError::KeyOrder)
        );
        assert_eq!(
            decode_map(&[0xa2, 0x62, b'a', b'a', 0, 0x61, b'b', 0]),
            Err(CborError::KeyOrder)
        );
        // Non-minimal integer, non-minimal length, indefinite map, integer key, trailing byte.
        assert_eq!(
            decode_map(&[0xa1, 0x61, b'a', 0x18, 5]),
            Err(CborError::NotMinimal)
        );
        assert_eq!(
            decode_map(&[0xb8, 1, 0x61, b'a', 0]),
            Err(CborError::NotMinimal)
        );
        assert_eq!(decode_map(&[0xbf, 0xff]), Err(CborError::Indefinite));
        assert_eq!(decode_map(&[0xa1, 0x01, 0x00]), Err(CborError::KeyNotText));
        assert_eq!(decode_map(&[0xa0, 0x00]), Err(CborError::TrailingBytes));
        assert_eq!(decode_map(&[0x80]), Err(CborError::NotMap));
        // Tags other than 42; undefined; a half float; NaN as a double.
        assert_eq!(
            decode_map(&[0xa1, 0x61, b'a', 0xc1, 0]),
            Err(CborError::BadTag)
        );
        assert_eq!(
            decode_map(&[0xa1, 0x61, b'a', 0xf7]),
            Err(CborError::BadSimple)
        );
        assert_eq!(
            decode_map(&[0xa1, 0x61, b'a', 0xf9, 0, 0]),
            Err(CborError::BadSimple)
        );
        let mut nan = vec![0xa1, 0x61, b'a', 0xfb];
        nan.extend_from_slice(&f64::NAN.to_bits().to_be_bytes());
        assert_eq!(decode_map(&nan), Err(CborError::BadSimple));
        // Invalid UTF-8 text; a length beyond the end.
        assert_eq!(decode_map(&[0xa1, 0x61, 0xff, 0]), Err(CborError::BadUtf8));
        assert_eq!(
            decode_map(&[0xa1, 0x61, b'a', 0x5a, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated)
        );
        assert_eq!(
            decode_map(&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated)
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = vec![0xa1, 0x61, b'a'];
        deep.extend(std::iter::repeat_n(0x81, MAX_DEPTH + 1));
        deep.push(0);
        assert_eq!(decode_map(&deep), Err(CborError::TooDeep));
        let mut ok = vec![0xa1, 0x61, b'a'];
        ok.extend(std::iter::repeat_n(0x81, MAX_DEPTH));
        ok.push(0);
        assert!(matches!(decode_map(&ok).unwrap()["a"], CborValue::Other(_)));
    }

    #[test]
    fn other_values_are_kept_raw() {
        // {"a": [true, null, 1.5, {"x": h'00'}]}
        let mut item = vec![0x84, 0xf5, 0xf6, 0xfb];
        item.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        item.extend_from_slice(&[0xa1, 0x61, b'x', 0x41, 0x00]);
        check_item(&item).unwrap();
        let map = one(CborValue::Other(item.clone()));
        let enc = encode_map(&map).unwrap();
        assert_eq!(decode_map(&enc).unwrap(), map);
        assert_eq!(
            check_item(&item[..item.len() - 1]),
            Err(CborError::Truncated)
        );
        assert_eq!(check_item(&[0xf5, 0xf5]), Err(CborError::TrailingBytes));
    }

    #[test]
    fn links_are_tag_42() {
        let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"x");
        let enc = encode_map(&one(CborValue::Link(cid))).unwrap();
        assert_eq!(&enc[3..5], &[0xd8, 42]);
        assert_eq!(decode_map(&enc).unwrap(), one(CborValue::Link(cid)));
        // Missing the 0x00 prefix.
        let mut bad = enc.clone();
        let at = 7; // a1 61 'k' d8 2a 58 25 | 00
        assert_eq!(bad[at], 0);
        bad[at] = 1;
        assert_eq!(decode_map(&bad), Err(CborError::BadTag));
    }

    fn arb_value() -> impl Strategy<Value = CborValue> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(CborValue::Bytes),
            (-(1i128 << 64)..(1i128 << 64)).prop_map(CborValue::Int),
            ".{0,20}".prop_map(CborValue::Text),
            any::<Vec<u8>>().prop_map(|s| CborValue::Link(cid_for(1, RAW, HashAlg::Sha2_256, &s))),
            Just(CborValue::Other(vec![0xf6])),
        ]
    }

    proptest! {
        #[test]
        fn map_round_trip(map in proptest::collection::btree_map(".{0,12}", arb_value(), 0..8)) {
            let enc = encode_map(&map).unwrap();
            prop_assert_eq!(decode_map(&enc).unwrap(), map);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_map(&bytes);
            let _ = check_item(&bytes);
        }
    }
}
