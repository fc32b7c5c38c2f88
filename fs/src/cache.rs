//! A bounded, least-recently-used cache of leaf data, sized in bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use cairn_store::Cid;

/// Verified leaf data by CID. Entries larger than a quarter of the capacity are not kept.
#[derive(Debug)]
pub(crate) struct LeafCache {
    inner: Mutex<Lru>,
    capacity: u64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<Cid, (Bytes, u64)>,
    /// Use stamp -> CID, oldest first.
    order: BTreeMap<u64, Cid>,
    bytes: u64,
    clock: u64,
}

impl LeafCache {
    pub(crate) fn new(capacity: u64) -> Self {
        LeafCache {
            inner: Mutex::new(Lru::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // The map is updated in single steps; a panic elsewhere cannot leave it half-changed.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, cid: &Cid) -> Option<Bytes> {
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        let (data, old) = {
            let entry = lru.entries.get_mut(cid)?;
            let old = std::mem::replace(&mut entry.1, now);
            (entry.0.clone(), old)
        };
        lru.order.remove(&old);
        lru.order.insert(now, *cid);
        Some(data)
    }

    pub(crate) fn contains(&self, cid: &Cid) -> bool {
        self.lock().entries.contains_key(cid)
    }

    pub(crate) fn insert(&self, cid: Cid, data: Bytes) {
        let len = data.len() as u64;
        if len > self.capacity / 4 {
            return;
        }
        let mut lru = self.lock();
        if lru.entries.contains_key(&cid) {
            return;
        }
        while lru.bytes + len > self.capacity {
            let Some((_, victim)) = lru.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = lru.entries.remove(&victim) {
                lru.bytes -= d.len() as u64;
            }
        }
        lru.clock += 1;
        let now = lru.clock;
        lru.order.insert(now, cid);
        lru.entries.insert(cid, (data, now));
        lru.bytes += len;
    }

    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_store::{cid_for, HashAlg, RAW};

    fn cid(i: u8) -> Cid {
        cid_for(1, RAW, HashAlg::Sha2_256, &[i])
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let c = LeafCache::new(400);
        for i in 0..4 {
            c.insert(cid(i), Bytes::from(vec![i; 100]));
        }
        assert!(c.get(&cid(0)).is_some()); // 0 is now the most recent
        c.insert(cid(9), Bytes::from(vec![9; 100]));
        assert!(c.contains(&cid(0)) && !c.contains(&cid(1)) && c.contains(&cid(9)));
        assert_eq!(c.bytes(), 400);
        c.insert(cid(8), Bytes::from(vec![8; 101])); // too big for a quarter
        assert!(!c.contains(&cid(8)));
    }
}
