//! `config.toml`: import defaults, GC, store tuning, and the network settings `cairn-net` reads.
//!
//! Every section and field has a default, so an older or hand-trimmed file still loads.

use serde::{Deserialize, Serialize};

/// The whole repo configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// Defaults for `cairn add`.
    pub import: ImportConfig,
    /// Garbage collection.
    pub gc: GcConfig,
    /// Blockstore tuning.
    pub store: StoreConfig,
    /// libp2p node settings.
    pub network: NetworkConfig,
    /// Shared folders.
    pub shares: SharesConfig,
    /// The daemon's HTTP gateway.
    pub gateway: GatewayConfig,
}

/// The daemon's HTTP gateway (`cairn daemon` serves it; see `cli/src/gateway.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// `IP:PORT` to serve on, or `off`. Loopback by default: the gateway fetches from the
    /// network on behalf of whoever asks it.
    pub listen: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// Defaults for shared folders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharesConfig {
    /// Versions a new share keeps (at least the newest this many).
    pub keep_versions: u64,
    /// A new share also keeps every version younger than this many seconds (0: none by age).
    pub keep_secs: u64,
    /// A writable mount commits once no change came for this many milliseconds.
    pub commit_quiet_ms: u64,
    /// While changes go on, a writable mount commits at least this often (seconds).
    pub commit_max_secs: u64,
}

impl Default for SharesConfig {
    fn default() -> Self {
        SharesConfig {
            keep_versions: crate::share::DEFAULT_KEEP_VERSIONS,
            keep_secs: 0,
            commit_quiet_ms: 500,
            commit_max_secs: 5,
        }
    }
}

/// Defaults for importing files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportConfig {
    /// Chunker spec: `size-<bytes>` or `fastcdc-<min>-<avg>-<max>`.
    pub chunker: String,
    /// CID version of the nodes made (0 or 1).
    pub cid_version: u8,
    /// Store file chunks as raw blocks instead of UnixFS-wrapped dag-pb leaves.
    pub raw_leaves: bool,
    /// Hash function name (`sha2-256` or `blake3`).
    pub hash: String,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            chunker: "size-262144".to_string(),
            cid_version: 1,
            raw_leaves: true,
            hash: "sha2-256".to_string(),
        }
    }
}

/// When GC runs by itself (it always runs on `cairn repo gc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GcConfig {
    /// Run GC every this many seconds while a daemon runs; 0 = never.
    pub period_secs: u64,
    /// Run GC when the store grows past this many bytes; 0 = no limit.
    pub storage_max_bytes: u64,
}

/// Blockstore tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// sled page cache, MiB.
    pub cache_mib: u64,
    /// Blocks larger than this many bytes are stored as files; smaller ones in pack files.
    pub inline_max_bytes: usize,
    /// Free space (MiB) that writes leave on the repo's disk; 0 switches the guard off.
    /// Unset: 5 % of the filesystem, between 1 MiB and 1 GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_mib: Option<u64>,
    /// Size (MiB) at which a pack file of small blocks is closed and a new one started.
    pub pack_max_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = crate::sled_store::StoreOptions::default();
        StoreConfig {
            cache_mib: d.cache_bytes >> 20,
            inline_max_bytes: d.inline_max,
            reserve_mib: None,
            pack_max_mib: d.pack_target >> 20,
        }
    }
}

/// libp2p node settings (read by `cairn-net`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Bootstrap peers, as multiaddrs ending in `/p2p/<peer id>`. Empty by default: cairn dials
    /// nobody it was not told about (add public bootstrap nodes here to join the public DHT).
    pub bootstrap: Vec<String>,
    /// Kademlia mode: `auto`, `client` or `server`.
    pub dht_mode: String,
    /// Kademlia protocol name.
    pub kad_protocol: String,
    /// What to announce to the DHT: `roots` (default), `pinned` or `all`.
    pub provide_strategy: String,
    /// Seconds between re-announcements.
    pub reprovide_interval_secs: u64,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Seconds a network read may wait for a block before it fails (the CLI's `--timeout`
    /// overrides it per command).
    pub fetch_timeout_secs: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".to_string(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".to_string(),
            ],
            bootstrap: Vec::new(),
            dht_mode: "auto".to_string(),
            kad_protocol: "/ipfs/kad/1.0.0".to_string(),
            provide_strategy: "roots".to_string(),
            reprovide_interval_secs: 79_200,
            mdns: false,
            fetch_timeout_secs: 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_partial_files_load() {
        let c = Config::default();
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
        let partial: Config = toml::from_str("[network]\nmdns = true\n").unwrap();
        assert!(partial.network.mdns);
        assert_eq!(partial.network.kad_protocol, "/ipfs/kad/1.0.0");
        assert!(partial.network.bootstrap.is_empty());
    }
}
