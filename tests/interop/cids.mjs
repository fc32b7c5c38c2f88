// Prints the CIDs the JS ipfs-unixfs-importer computes for files and directory trees, as the
// independent reference for cairn's interop tests (tests/tests/interop_cids.rs).
//
// Input (stdin): {"jobs": [{"path": "/abs/path", "cidVersion": 0|1, "rawLeaves": bool,
//                           "chunkSize": 262144, "maxChildrenPerNode": 174,
//                           "shardSplitThresholdBytes": 262144}]}
// Output (stdout): one JSON line per job: {"path", "root", "entries": [{"path", "cid"}]}.
// Directories are walked like `ipfs add -r`: entries in name-byte order, each directory listed
// before its contents, symlinks stored as symlinks, hidden files included.
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

async function * walk (abs, rel) {
  const st = await lstat(abs)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: await readlink(abs) }
  } else if (st.isFile()) {
    yield { path: rel, content: createReadStream(abs, { highWaterMark: 1 << 20 }) }
  } else if (st.isDirectory()) {
    yield { path: rel }
    const names = (await readdir(abs)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    for (const name of names) {
      yield * walk(join(abs, name), `${rel}/${name}`)
    }
  } else {
    throw new Error(`${abs}: unsupported file type`)
  }
}

async function run (job) {
  const name = basename(job.path)
  const entries = []
  for await (const entry of importer(walk(job.path, name), new BlackHoleBlockstore(), {
    cidVersion: job.cidVersion,
    rawLeaves: job.rawLeaves,
    chunker: fixedSize({ chunkSize: job.chunkSize ?? 262144 }),
    layout: balanced({ maxChildrenPerNode: job.maxChildrenPerNode ?? 174 }),
    shardSplitThresholdBytes: job.shardSplitThresholdBytes ?? 262144,
    wrapWithDirectory: false
  })) {
    entries.push({ path: entry.path, cid: entry.cid.toString() })
  }
  const root = entries.find(e => e.path === name)
  return { path: job.path, root: root?.cid ?? null, entries }
}

let input = ''
for await (const chunk of process.stdin) input += chunk
const { jobs } = JSON.parse(input)
for (const job of jobs) {
  process.stdout.write(JSON.stringify(await run(job)) + '\n')
}
