// Fetches `ipfs://...` URLs through one trustless gateway with Helia's verified fetch (which
// asks the gateway for raw blocks or CARs and checks every block against its CID), writing
// each body to a file and printing one JSON line per URL: {url, status, type, file}.
//
// node --import ./polyfill.mjs fetch.mjs <gateway-url> <out-dir> <url>[|accept] ...
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createVerifiedFetch } from '@helia/verified-fetch'

const [gateway, outDir, ...urls] = process.argv.slice(2)
const verifiedFetch = await createVerifiedFetch({
  gateways: [gateway],
  routers: [],
  allowInsecure: true,
  allowLocal: true
})
let n = 0
for (const arg of urls) {
  const [url, accept] = arg.split('|')
  const res = await verifiedFetch(url, accept ? { headers: { accept } } : {})
  const body = Buffer.from(await res.arrayBuffer())
  const file = join(outDir, `body-${n++}`)
  await writeFile(file, body)
  console.log(JSON.stringify({ url, status: res.status, type: res.headers.get('content-type'), file }))
}
await verifiedFetch.stop()
