//! Command-line arguments (clap derive). Kubo users should feel at home.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cairn: a content-addressed filesystem that speaks IPFS.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository directory (default: $CAIRN_REPO, else ~/.cairn).
    #[arg(long, global = true, env = "CAIRN_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,

    /// Print machine-readable JSON for listings and stats.
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up on content the network does not deliver within this many seconds (1 to 86400).
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init,
    /// Add files or directories to the repository.
    Add(AddArgs),
    /// Print the bytes of a file.
    Cat(CatArgs),
    /// Write a file or directory tree to disk.
    Get(GetArgs),
    /// List a directory.
    Ls(LsArgs),
    /// Pin content so garbage collection keeps it.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Repository maintenance.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Raw block access.
    #[command(subcommand)]
    Block(BlockCommand),
    /// DAG import/export (CAR v1).
    #[command(subcommand)]
    Dag(DagCommand),
    /// Run the network node and the local API; other commands then go through it.
    Daemon,
    /// Show this node's peer id and addresses.
    Id,
    /// Peers and connections.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Content routing on the Kademlia DHT.
    #[command(subcommand)]
    Routing(RoutingCommand),
    /// Network statistics.
    #[command(subcommand)]
    Stat(StatCommand),
    /// How much of a DAG is local, and how many providers the network knows.
    Status {
        /// `<cid>[/path]`.
        path: String,
    },
    /// Mount a DAG (or every CID, with --namespace) read-only with FUSE.
    Mount(MountArgs),
    /// Unmount a cairn mount.
    Unmount {
        /// The mount point.
        dir: PathBuf,
    },
}

/// `cairn swarm ...`.
#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Connected peers: peer id, address, direction, latency (ping), transport and protocols.
    Peers,
    /// Connect to a peer by multiaddr (with /p2p/<peer id>).
    Connect {
        /// The address, e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3KooW...
        addr: String,
    },
    /// Close the connections to a peer.
    Disconnect {
        /// A peer id (12D3KooW...), or a multiaddr: with /p2p/<peer id> it names the peer,
        /// without it the connections to that address are closed.
        peer: String,
    },
    /// Our listen addresses.
    Addrs,
}

/// `cairn routing ...`.
#[derive(Debug, Subcommand)]
pub enum RoutingCommand {
    /// Announce that this node provides a CID.
    Provide {
        /// The CID.
        cid: String,
    },
    /// Find peers that provide a CID.
    Findprovs {
        /// The CID.
        cid: String,
    },
}

/// `cairn stat ...`.
#[derive(Debug, Subcommand)]
pub enum StatCommand {
    /// Bitswap counters: blocks and bytes sent and received, peers.
    Bitswap,
}

/// `cairn mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The CID to mount (omit with --namespace).
    #[arg(value_name = "CID")]
    pub cid: Option<String>,
    /// The mount point (an existing, empty directory).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Mount every CID lazily: DIR/<cid>/path, like Kubo's /ipfs.
    #[arg(long, value_name = "DIR", conflicts_with = "cid")]
    pub namespace: Option<PathBuf>,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf for non-root).
    #[arg(long)]
    pub allow_other: bool,
}

/// `cairn add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Files or directories to add.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Add directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    /// CID version: 0 (Kubo's default import) or 1.
    #[arg(long, value_name = "0|1", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub cid_version: Option<u8>,
    /// Store leaves as raw blocks (default: on for CIDv1, off for CIDv0).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub raw_leaves: Option<bool>,
    /// Chunker: size-N (fixed, N ≤ 1 MiB) or fastcdc-MIN-AVG-MAX.
    #[arg(long, value_name = "SPEC")]
    pub chunker: Option<String>,
    /// Hash function: sha2-256 or blake3.
    #[arg(long, value_name = "NAME")]
    pub hash: Option<String>,
    /// Pin the added content (recursively).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
    pub pin: bool,
    /// Name for the pin.
    #[arg(long, value_name = "NAME")]
    pub pin_name: Option<String>,
    /// Only compute the CIDs; store nothing.
    #[arg(short = 'n', long)]
    pub only_hash: bool,
    /// Print only the final root CID.
    #[arg(short = 'Q', long)]
    pub quiet: bool,
    /// Show a progress bar even when the input is small.
    #[arg(long)]
    pub progress: bool,
    /// Store UnixFS 1.5 file modes.
    #[arg(long)]
    pub preserve_mode: bool,
    /// Store UnixFS 1.5 modification times.
    #[arg(long)]
    pub preserve_mtime: bool,
}

/// `cairn cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    /// `<cid>[/path]` or `/ipfs/<cid>[/path]`.
    pub path: String,
    /// Byte offset to start at.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Maximum number of bytes to print.
    #[arg(long)]
    pub length: Option<u64>,
}

/// `cairn get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// `<cid>[/path]` or `/ipfs/<cid>[/path]`.
    pub path: String,
    /// Where to write (default: the CID or last path segment in the current directory).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// No progress bar.
    #[arg(short = 'Q', long)]
    pub quiet: bool,
}

/// `cairn ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// `<cid>[/path]` or `/ipfs/<cid>[/path]`.
    pub path: String,
}

/// Pin types for listings.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PinTypeArg {
    /// Recursive pins.
    Recursive,
    /// Direct pins.
    Direct,
    /// Blocks kept by recursive pins.
    Indirect,
    /// Every kind.
    All,
}

/// `cairn pin ...`.
#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Pin a DAG (recursively by default).
    Add {
        /// `<cid>[/path]`.
        path: String,
        /// Pin only the root block.
        #[arg(long)]
        direct: bool,
        /// A name for the pin.
        #[arg(long)]
        name: Option<String>,
        /// No progress output.
        #[arg(short = 'Q', long)]
        quiet: bool,
    },
    /// Remove a pin.
    Rm {
        /// The pinned CID.
        cid: String,
    },
    /// List pins.
    Ls {
        /// Which pins to list.
        #[arg(long = "type", value_enum, default_value = "all")]
        kind: PinTypeArg,
    },
    /// Check that every pinned block is present and matches its CID.
    Verify,
}

/// `cairn repo ...`.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Delete every block not reachable from a pin.
    Gc {
        /// Print only totals.
        #[arg(short = 'Q', long)]
        quiet: bool,
    },
    /// Size and count statistics.
    Stat,
    /// Check every block on disk against its CID, and the index against the block files.
    Verify,
    /// Rebuild the block index from the block files and pack files, verifying every block
    /// (after a lost or damaged index; needs the repo to itself: stop the daemon first).
    Repair,
}

/// `cairn block ...`.
#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Print a block's raw bytes.
    Get {
        /// The CID.
        cid: String,
    },
    /// Store stdin (or a file) as one block and print its CID.
    Put {
        /// A file to read instead of stdin.
        file: Option<PathBuf>,
        /// Codec: raw or dag-pb.
        #[arg(long, default_value = "raw")]
        format: String,
        /// Hash function: sha2-256 or blake3.
        #[arg(long, default_value = "sha2-256")]
        hash: String,
        /// CID version (dag-pb + sha2-256 allows 0).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        cid_version: u8,
    },
    /// Print a block's CID and size.
    Stat {
        /// The CID.
        cid: String,
    },
    /// Remove a block (e.g. a corrupt one, so it can be fetched or added again).
    Rm {
        /// The CID.
        cid: String,
        /// Remove it even if it is the root of a pin.
        #[arg(long)]
        force: bool,
    },
}

/// `cairn dag ...`.
#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// Write a DAG as a CAR v1 file to stdout.
    Export {
        /// The root CID.
        cid: String,
    },
    /// Import CAR v1 files and pin their roots.
    Import {
        /// CAR files (stdin if none).
        files: Vec<PathBuf>,
        /// Pin the roots.
        #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
        pin_roots: bool,
    },
}
