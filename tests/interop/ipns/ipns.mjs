// js-ipns (the IPNS record library Helia uses) as the independent IPNS implementation of
// cairn's interop tests (tests/tests/ipns_interop.rs). Pure computation: no network, no files.
//
// Input (stdin): {"jobs": [job, ...]}; output (stdout): one JSON line per job, in order.
// Binary values are hex.
//   {"op": "generate"}                          -> {"key", "name", "peerId"}
//       a new Ed25519 key, as the libp2p PrivateKey protobuf (cairn's key file format)
//   {"op": "name", "key"}                       -> {"name", "peerId", "routingKey", "topic"}
//       the k51 name (base36 CIDv1 libp2p-key), the peer id, the DHT key and the pubsub topic
//   {"op": "create", "key", "value", "seq", "validity", "ttlNs", "v1"}
//                                               -> {"record", "name"}
//       a record made by js-ipns, marshalled; "validity" is an RFC 3339 time
//   {"op": "validate", "name", "record"}        -> {"ok": true, "value", "sequence", "validity",
//                                                   "ttl", "v1", "data"} or {"ok": false, "error"}
//       ipnsValidator (size, key, signatureV2, expiry, V1/V2 consistency) for the name's routing key
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createIPNSRecordWithExpiration, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { base36 } from 'multiformats/bases/base36'
import { base64url } from 'multiformats/bases/base64'
import { CID } from 'multiformats/cid'

const hex = (bytes) => Buffer.from(bytes).toString('hex')
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'))

function names (publicKey) {
  const routingKey = multihashToIPNSRoutingKey(publicKey.toMultihash())
  return {
    name: publicKey.toCID().toString(base36),
    peerId: publicKey.toString(),
    routingKey: hex(routingKey),
    topic: '/record/' + base64url.baseEncode(routingKey)
  }
}

async function run (job) {
  switch (job.op) {
    case 'generate': {
      const key = await generateKeyPair('Ed25519')
      const { name, peerId } = names(key.publicKey)
      return { key: hex(privateKeyToProtobuf(key)), name, peerId }
    }
    case 'name':
      return names(privateKeyFromProtobuf(unhex(job.key)).publicKey)
    case 'create': {
      const key = privateKeyFromProtobuf(unhex(job.key))
      const record = await createIPNSRecordWithExpiration(key, job.value, BigInt(job.seq), job.validity, {
        v1Compatible: job.v1,
        ttlNs: BigInt(job.ttlNs)
      })
      return { record: hex(marshalIPNSRecord(record)), name: names(key.publicKey).name }
    }
    case 'validate': {
      const bytes = unhex(job.record)
      try {
        const cid = CID.parse(job.name, base36)
        await ipnsValidator(multihashToIPNSRoutingKey(cid.multihash), bytes)
        const r = unmarshalIPNSRecord(bytes)
        return {
          ok: true,
          value: r.value,
          sequence: r.sequence.toString(),
          validity: r.validity,
          ttl: r.ttl.toString(),
          v1: 'signatureV1' in r,
          data: hex(r.data)
        }
      } catch (err) {
        return { ok: false, error: `${err.name}: ${err.message}` }
      }
    }
    default:
      throw new Error(`unknown op ${job.op}`)
  }
}

let input = ''
for await (const chunk of process.stdin) input += chunk
const { jobs } = JSON.parse(input)
for (const job of jobs) {
  process.stdout.write(JSON.stringify(await run(job)) + '\n')
}
