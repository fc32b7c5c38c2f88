//! Content paths: a root CID followed by entry names, as users type them.
//!
//! Accepted forms: `<cid>`, `<cid>/a/b`, `/ipfs/<cid>/a/b` (and `ipfs/<cid>/...`).
//! Empty segments (doubled or trailing slashes) are dropped; `.` and `..` are kept so that
//! resolving them fails with a clear error instead of silently escaping anything.

use std::fmt;
use std::str::FromStr;

use cid::Cid;

/// A root CID and the names to follow from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CidPath {
    /// Where resolution starts.
    pub root: Cid,
    /// Directory entry names, in order.
    pub segments: Vec<String>,
}

/// Why text is not a content path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty (or only slashes).
    #[error("empty path: expected <cid>, <cid>/path or /ipfs/<cid>/path")]
    Empty,
    /// The root is not a CID.
    #[error("invalid CID {text:?}: {reason}; {CID_HINT}")]
    InvalidCid {
        /// The text that should have been a CID.
        text: String,
        /// What the CID parser said.
        reason: String,
    },
}

/// What a CID looks like, for messages about text that is not one.
pub const CID_HINT: &str = "a CID looks like bafybei… or bafkrei… (CIDv1, base32, 59 characters) \
     or Qm… (CIDv0, 46 characters)";

/// The CID parser's complaint, as the middle of a sentence.
pub fn cid_parse_reason(e: &cid::Error) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

impl CidPath {
    /// A path naming `root` itself.
    pub fn new(root: Cid) -> Self {
        CidPath {
            root,
            segments: Vec::new(),
        }
    }

    /// This path extended by one name.
    pub fn join(mut self, name: impl Into<String>) -> Self {
        self.segments.push(name.into());
        self
    }
}

impl FromStr for CidPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/').filter(|p| !p.is_empty()).peekable();
        if parts.peek() == Some(&"ipfs") {
            parts.next();
        }
        let root_text = parts.next().ok_or(PathError::Empty)?;
        let root = Cid::try_from(root_text).map_err(|e| PathError::InvalidCid {
            text: root_text.to_string(),
            reason: cid_parse_reason(&e),
        })?;
        Ok(CidPath {
            root,
            segments: parts.map(str::to_string).collect(),
        })
    }
}

impl fmt::Display for CidPath {
    /// Writes `<cid>/a/b` (the short form, which `from_str` reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)?;
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, DAG_PB, RAW};
    use proptest::prelude::*;

    const DIR: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

    #[test]
    fn accepts_the_three_forms() {
        let bare: CidPath = DIR.parse().unwrap();
        assert!(bare.segments.is_empty());
        let rel: CidPath = format!("{DIR}/a/b").parse().unwrap();
        let ipfs: CidPath = format!("/ipfs/{DIR}/a/b/").parse().unwrap();
        assert_eq!(rel, ipfs);
        assert_eq!(rel.segments, vec!["a", "b"]);
        assert_eq!(rel.to_string(), format!("{DIR}/a/b"));
    }

    #[test]
    fn invalid_cid_is_named() {
        let err = "xyz/a".parse::<CidPath>().unwrap_err();
        assert!(matches!(&err, PathError::InvalidCid { text, .. } if text == "xyz"));
        assert!(
            err.to_string().starts_with("invalid CID \"xyz\": "),
            "{err}"
        );
        assert_eq!("".parse::<CidPath>(), Err(PathError::Empty));
        assert_eq!("/ipfs/".parse::<CidPath>(), Err(PathError::Empty));
    }

    proptest! {
        #[test]
        fn display_round_trips(
            seed in any::<Vec<u8>>(),
            raw in any::<bool>(),
            segs in proptest::collection::vec("[^/]{1,12}", 0..5),
        ) {
            let root = if raw {
                cid_for(1, RAW, HashAlg::Sha2_256, &seed)
            } else {
                cid_for(0, DAG_PB, HashAlg::Sha2_256, &seed)
            };
            let p = CidPath { root, segments: segs };
            prop_assert_eq!(p.to_string().parse::<CidPath>().unwrap(), p);
        }
    }
}
