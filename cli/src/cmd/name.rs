//! `cairn name resolve|publish`, as Kubo's `ipfs name`, and `/ipns/<name>[/path]` in every read
//! command's argument.
//!
//! A name resolves to the head of a share this repo holds (its own, by signature-checked head
//! record). Resolving other names needs the network (issue 10's DHT records), so without a
//! record here the answer says so.

use anyhow::Result;
use cairn_store::{Cid, IpnsName};
use serde_json::json;

use super::Ctx;
use crate::args::NameCommand;

/// The IPNS name and the rest of a path, if `text` is `/ipns/<name>[/rest]` or
/// `<k51…>[/rest]`.
pub fn ipns_parts(text: &str) -> Option<(&str, &str)> {
    let t = text.trim();
    let t = t
        .strip_prefix("/ipns/")
        .or_else(|| t.strip_prefix("ipns://"));
    let (explicit, t) = match t {
        Some(rest) => (true, rest),
        None => (false, text.trim()),
    };
    let (name, rest) = match t.find('/') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    // A bare `<k51…>` is a name only if it parses as one (a CID never does: different codec).
    (explicit || name.parse::<IpnsName>().is_ok()).then_some((name, rest))
}

/// What `name` points at: the head of a share of this repo.
pub fn resolve_name(ctx: &Ctx<'_>, name: &str) -> Result<(IpnsName, Cid, u64)> {
    let parsed: IpnsName = name.parse().map_err(|e| {
        crate::error::coded(
            "invalid_input",
            format!("invalid IPNS name {name:?}: {e}; a name looks like k51qzi5uqu5d…"),
        )
    })?;
    match ctx.repo.shares().find(&parsed.to_string()) {
        Ok(share) => match share.head {
            Some(head) => Ok((parsed, head.root, head.sequence)),
            None => crate::fail!(
                "corrupt",
                "share {} has no valid head record here",
                share.label
            ),
        },
        Err(cairn_store::ShareError::NotFound(_)) => crate::fail!(
            "not_found",
            "no record of /ipns/{parsed} here: it names none of this repo's shares (resolving \
             other names on the network comes with DHT records)"
        ),
        Err(e) => Err(e.into()),
    }
}

/// `text` with an IPNS name at its start replaced by the CID it resolves to (`/ipfs/…` paths
/// and CIDs are returned as they are).
pub fn expand(ctx: &Ctx<'_>, text: &str) -> Result<String> {
    match ipns_parts(text) {
        Some((name, rest)) => {
            let (_, root, _) = resolve_name(ctx, name)?;
            Ok(format!("{root}{rest}"))
        }
        None => Ok(text.to_string()),
    }
}

/// `cairn name ...`.
pub async fn run(ctx: &Ctx<'_>, cmd: NameCommand) -> Result<()> {
    let mut out = ctx.console.output();
    match cmd {
        NameCommand::Resolve { name } => {
            let (name_part, rest) = ipns_parts(&name).unwrap_or((name.as_str(), ""));
            let (parsed, root, sequence) = resolve_name(ctx, name_part)?;
            let value = format!("/ipfs/{root}{rest}");
            out.item(
                &json!({ "name": parsed.to_string(), "value": value, "sequence": sequence }),
                || value.clone(),
            )?;
        }
        NameCommand::Publish { key, path } => {
            let share = ctx.repo.shares().find(&key)?;
            if !share.writable {
                crate::fail!(
                    "invalid_input",
                    "cannot publish to {}: this repo does not hold its key",
                    share.label
                );
            }
            if let Some((dir, _)) = ctx.mounts.share(&share.name) {
                crate::fail!(
                    "repo_busy",
                    "share {} is mounted writable at {}: its commits publish it; `cairn unmount {}` \
                     to publish by hand",
                    share.label,
                    dir.display(),
                    dir.display()
                );
            }
            let target = super::parse_path(&expand(ctx, &path)?)?;
            let reader = cairn_store::DagReader::new(cairn_store::LocalSource::new(
                ctx.repo.store().clone(),
            ));
            let root = reader.resolve(&target.root, &target.segments).await?;
            let info = reader.stat(&root).await?;
            if info.kind != cairn_store::EntryKind::Directory {
                crate::fail!(
                    "invalid_input",
                    "a share's version is a directory; {path} is a {:?}",
                    info.kind
                );
            }
            let version = ctx.repo.shares().commit(
                &share.name,
                root,
                None,
                info.size,
                0,
                &ctx.mounts.roots(),
            )?;
            ctx.mounts
                .head_moved(&share.name, version.root, version.sequence);
            let value = format!("/ipfs/{}", version.root);
            out.ack(
                &json!({ "name": share.name.to_string(), "value": value, "sequence": version.sequence }),
                || format!("Published to {}: {value}", share.name),
            )?;
        }
    }
    out.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_at_the_start_of_paths() {
        let k = "k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w";
        assert_eq!(ipns_parts(&format!("/ipns/{k}")), Some((k, "")));
        assert_eq!(ipns_parts(&format!("/ipns/{k}/a/b")), Some((k, "/a/b")));
        assert_eq!(ipns_parts(&format!("{k}/x")), Some((k, "/x")));
        assert_eq!(ipns_parts("/ipns/whatever/x"), Some(("whatever", "/x")));
        let cid = "bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244";
        assert_eq!(ipns_parts(cid), None);
        assert_eq!(ipns_parts(&format!("/ipfs/{cid}/a")), None);
    }
}
