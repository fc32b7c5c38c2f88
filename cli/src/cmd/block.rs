//! `cairn block get|put|stat`.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use cairn_store::{Block, Blockstore, Bytes, HashAlg, DAG_PB, RAW};

use crate::args::BlockCommand;

use super::{parse_cid, Ctx};

/// Blocks larger than this are refused (peers would refuse them too).
const MAX_BLOCK: usize = 2 << 20;

/// `cairn block ...`.
pub fn run(ctx: &Ctx<'_>, cmd: BlockCommand) -> Result<()> {
    let repo = ctx.repo;
    let store = repo.store();
    match cmd {
        BlockCommand::Get { cid, output } => {
            let cid = parse_cid(&cid)?;
            let Some(data) = store.get_verified(&cid)? else {
                crate::fail!("not_found", "block {cid} is not in the local repo");
            };
            let output = output.map(|o| ctx.path(&o));
            let mut out =
                ctx.console
                    .binary_out(output.as_deref(), &format!("block {cid}"), None)?;
            out.write_all(&data)?;
            out.finish()
        }
        BlockCommand::Put {
            file,
            format,
            hash,
            cid_version,
        } => {
            let mut data = Vec::new();
            match &file {
                Some(path) => {
                    std::fs::File::open(ctx.path(path))
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .take(MAX_BLOCK as u64 + 1)
                        .read_to_end(&mut data)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                }
                None => {
                    std::io::stdin()
                        .take(MAX_BLOCK as u64 + 1)
                        .read_to_end(&mut data)
                        .context("cannot read stdin")?;
                }
            }
            if data.len() > MAX_BLOCK {
                bail!("block is larger than {MAX_BLOCK} bytes");
            }
            let codec = match format.as_str() {
                "raw" => RAW,
                "dag-pb" | "protobuf" => {
                    cairn_store::PbNode::decode(&Bytes::from(data.clone()))
                        .context("input is not a valid dag-pb node")?;
                    DAG_PB
                }
                other => bail!("unknown block format {other:?} (expected raw or dag-pb)"),
            };
            let alg: HashAlg = hash.parse()?;
            let block = Block::encode(cid_version, codec, alg, Bytes::from(data));
            store.put(&block)?;
            store.flush()?;
            let mut out = ctx.console.output();
            let cid = block.cid().to_string();
            out.item(
                &serde_json::json!({ "cid": cid, "size": block.data().len() }),
                || cid.clone(),
            )?;
            out.finish()
        }
        BlockCommand::Rm { cid, force } => {
            let cid = parse_cid(&cid)?;
            if !force && repo.pins().get(&cid)?.is_some() {
                bail!("{cid} is pinned: `cairn pin rm {cid}` first, or use --force");
            }
            if !store.delete(&cid)? {
                crate::fail!("not_found", "block {cid} is not in the local repo");
            }
            store.flush()?;
            let mut out = ctx.console.output();
            out.ack(&serde_json::json!({ "removed": cid.to_string() }), || {
                format!("removed {cid}")
            })?;
            out.finish()
        }
        BlockCommand::Stat { cid } => {
            let cid = parse_cid(&cid)?;
            let Some(size) = store.size(&cid)? else {
                crate::fail!("not_found", "block {cid} is not in the local repo");
            };
            let mut out = ctx.console.output();
            out.item(
                &serde_json::json!({ "cid": cid.to_string(), "size": size }),
                || format!("Key: {cid}\nSize: {size}"),
            )?;
            out.finish()
        }
    }
}
