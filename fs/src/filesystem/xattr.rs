//! Extended attributes: `user.cairn.cid`, `user.cairn.local`, `user.cairn.inodes`.

use super::*;

/// Answers an extended attribute request: the size when asked for it, else the bytes.
pub(crate) fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if size < len {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl<S: BlockSource + Clone> Shared<S> {
    /// "N/M blocks local" for a node: a file's leaves and root, or the node's own block.
    /// The presence checks (store lookups) run on a blocking thread.
    pub(super) async fn local_report(self: Arc<Self>, info: NodeInfo) -> Result<String, FsError> {
        let mut leaves = Vec::new();
        if info.kind == EntryKind::File && info.cid.codec() != RAW {
            leaves = self.reader.leaves(&info.cid, 0, info.size).await?;
            if leaves.len() > LOCAL_REPORT_MAX_LEAVES {
                leaves.clear();
            }
        }
        let source = self.reader.source().clone();
        let count = move || {
            let (mut local, mut total) = (u64::from(source.has_local(&info.cid)), 1u64);
            for (cid, _, _) in leaves.iter().filter(|l| l.0 != info.cid) {
                total += 1;
                local += u64::from(source.has_local(cid));
            }
            format!("{local}/{total} blocks local")
        };
        tokio::task::spawn_blocking(count)
            .await
            .map_err(|_| FsError::TaskFailed)
    }
}
