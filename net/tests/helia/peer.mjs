// A Helia node (Helia 5.5 stack, libp2p 2.10) for cairn's interop tests, driven line by line
// over stdin. Loopback only: TCP + Noise + Yamux, identify, ping, kad-dht (/ipfs/kad/1.0.0, server
// mode, private addresses kept) and Bitswap; no bootstrap, no mDNS, no gateways, no delegated routing.
//
// Prints "READY <peer id> <multiaddr>" once listening, then answers each command with one line,
// "OK ..." or "ERR <message>":
//   dial <multiaddr>            -> OK
//   add <path>                  -> OK <cid>        (UnixFS file, CIDv1, raw leaves)
//   block <hex>                 -> OK <cid>        (one raw block)
//   cat <cid> <timeout ms>      -> OK <bytes> <sha256 hex>   (fetching over Bitswap as needed)
//   get <cid> <timeout ms>      -> OK <bytes> <sha256 hex>   (one block)
//   provide <cid>               -> OK
//   findprovs <cid> <timeout ms>-> OK <peer id>,<peer id>,...
//   peers                       -> OK <peer id>,...
//   nameget <k51 name> <timeout ms>     -> OK <value> <sequence>   (IPNS record from the DHT)
//   nameput <seed hex> <value> <seq>    -> OK <k51 name>           (a record signed by the
//                                          Ed25519 key of that 32-byte seed, put to the DHT)
//   quit                        -> exits
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bitswap } from '@helia/block-brokers'
import { libp2pRouting } from '@helia/routers'
import { unixfs } from '@helia/unixfs'
import { Helia } from '@helia/utils'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { generateKeyPairFromSeed, publicKeyFromMultihash } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { createLibp2p } from 'libp2p'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const datastore = new MemoryDatastore()
const libp2p = await createLibp2p({
  datastore,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      clientMode: false,
      peerInfoMapper: passthroughMapper,
      validators: { ipns: ipnsValidator },
      selectors: { ipns: ipnsSelector }
    })
  }
})

const helia = new Helia({
  libp2p,
  datastore,
  blockstore: new MemoryBlockstore(),
  blockBrokers: [bitswap()],
  routers: [libp2pRouting(libp2p)]
})
await helia.start()
const fs = unixfs(helia)

const out = (line) => process.stdout.write(line + '\n')
const digest = (chunks) => {
  const h = createHash('sha256')
  let n = 0
  for (const c of chunks) { h.update(c); n += c.length }
  return `${n} ${h.digest('hex')}`
}

out(`READY ${libp2p.peerId.toString()} ${libp2p.getMultiaddrs()[0].toString()}`)

const commands = {
  async dial ([addr]) {
    await libp2p.dial(multiaddr(addr))
    return 'OK'
  },
  async add ([path]) {
    const bytes = await readFile(path)
    const cid = await fs.addBytes(bytes, { cidVersion: 1, rawLeaves: true })
    return `OK ${cid.toString()}`
  },
  async block ([hex]) {
    const bytes = Buffer.from(hex, 'hex')
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    await helia.blockstore.put(cid, bytes)
    return `OK ${cid.toString()}`
  },
  async cat ([cid, ms]) {
    const chunks = []
    for await (const c of fs.cat(CID.parse(cid), { signal: AbortSignal.timeout(Number(ms)) })) chunks.push(c)
    return `OK ${digest(chunks)}`
  },
  async get ([cid, ms]) {
    const b = await helia.blockstore.get(CID.parse(cid), { signal: AbortSignal.timeout(Number(ms)) })
    return `OK ${digest([b])}`
  },
  async provide ([cid]) {
    await helia.routing.provide(CID.parse(cid), { signal: AbortSignal.timeout(30000) })
    return 'OK'
  },
  async findprovs ([cid, ms]) {
    const found = []
    try {
      for await (const p of helia.routing.findProviders(CID.parse(cid), { signal: AbortSignal.timeout(Number(ms)) })) {
        found.push(p.id.toString())
        break
      }
    } catch (e) {
      if (found.length === 0) throw e
    }
    return `OK ${found.join(',')}`
  },
  async nameget ([name, ms]) {
    const peer = peerIdFromString(name)
    const key = multihashToIPNSRoutingKey(peer.toMultihash())
    const bytes = await helia.routing.get(key, { signal: AbortSignal.timeout(Number(ms)) })
    const pub = publicKeyFromMultihash(peer.toMultihash())
    await ipnsValidator(key, bytes)
    const record = unmarshalIPNSRecord(bytes)
    if (pub == null) throw new Error('no public key in the name')
    return `OK ${record.value} ${record.sequence}`
  },
  async nameput ([seedHex, value, seq]) {
    const key = await generateKeyPairFromSeed('Ed25519', Buffer.from(seedHex, 'hex'))
    const record = await createIPNSRecord(key, value, BigInt(seq), 3600 * 1000)
    const routingKey = multihashToIPNSRoutingKey(key.publicKey.toMultihash())
    await helia.routing.put(routingKey, marshalIPNSRecord(record), { signal: AbortSignal.timeout(30000) })
    return `OK ${key.publicKey.toCID().toString(await import('multiformats/bases/base36').then(m => m.base36))}`
  },
  async peers () {
    return `OK ${libp2p.getPeers().map(p => p.toString()).join(',')}`
  },
  async quit () {
    await helia.stop()
    process.exit(0)
  }
}

const rl = createInterface({ input: process.stdin })
rl.on('close', () => { helia.stop().finally(() => process.exit(0)) })
for await (const line of rl) {
  const [cmd, ...args] = line.trim().split(/\s+/)
  if (!cmd) continue
  try {
    const f = commands[cmd]
    out(f ? await f(args) : `ERR unknown command ${cmd}`)
  } catch (e) {
    out(`ERR ${String(e?.message ?? e).replace(/\n/g, ' ')}`)
  }
}
