//! Command-line arguments (clap derive). Kubo users should feel at home.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cairn: a content-addressed filesystem that speaks IPFS.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository directory [default: $CAIRN_REPO, else ~/.cairn]
    #[arg(long, global = true, env = "CAIRN_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,

    /// Print JSON Lines: one JSON object per result (docs/CLI.md gives each command's shape);
    /// errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars and no acknowledgements; results only (`add -Q` prints just the root
    /// CID).
    #[arg(short = 'Q', long, global = true)]
    pub quiet: bool,

    /// Give up on content the network does not deliver within this many seconds, 1 to 86400
    /// [default: network.fetch_timeout_secs of the config, 30]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    #[command(
        after_help = "Examples:\n  cairn init                                 listen on port 4001 (TCP and QUIC)\n  cairn --repo ./r init --profile local      loopback only, OS-chosen ports"
    )]
    Init(InitArgs),
    /// Read and change the repo's configuration (config.toml).
    #[command(
        subcommand,
        after_help = "Examples:\n  cairn config show --keys\n  cairn config get network.listen\n  cairn config set network.listen /ip4/0.0.0.0/tcp/4101 /ip4/0.0.0.0/udp/4101/quic-v1\n  cairn config set network.bootstrap '[]'\n  cairn config profile local"
    )]
    Config(ConfigCommand),
    /// Add files or directories to the repository.
    #[command(
        after_help = "Examples:\n  cairn add notes.txt                        prints: added <cid> notes.txt\n  cairn add -r photos/                       a directory, every file and folder in it\n  cairn add -Q -r photos/                    only the root CID (for scripts)\n  cairn add --cid-version 0 file             the CID Kubo's `ipfs add` gives"
    )]
    Add(AddArgs),
    /// Print the bytes of a file.
    #[command(
        after_help = "Examples:\n  cairn cat bafy.../notes.txt\n  cairn cat /ipfs/bafy.../video.mp4 --offset 1000000 --length 4096 -o part.bin"
    )]
    Cat(CatArgs),
    /// Write a file or directory tree to disk.
    #[command(
        after_help = "Examples:\n  cairn get bafy...                          writes ./bafy...\n  cairn get bafy.../photos -o ~/photos"
    )]
    Get(GetArgs),
    /// List a directory.
    #[command(
        after_help = "Examples:\n  cairn ls bafy...\n  cairn --json ls bafy.../photos | jq -r .name"
    )]
    Ls(LsArgs),
    /// Pin content so garbage collection keeps it.
    #[command(
        subcommand,
        after_help = "Examples:\n  cairn pin add bafy...                      fetches what is missing (with a daemon), then pins\n  cairn pin ls --type recursive\n  cairn pin rm bafy..."
    )]
    Pin(PinCommand),
    /// Repository maintenance.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Shared folders: each a share id (an IPNS name) whose versions are signed records.
    #[command(
        subcommand,
        after_help = "Examples:\n  cairn share new notes                      an empty folder; prints its share id (k51…)\n  cairn share new photos --from ~/photos     starts from a folder on disk (or a CID)\n  cairn share log notes\n  cairn share diff notes 3 5\n  cairn share restore notes 3\n  cairn mount notes ~/notes"
    )]
    Share(ShareCommand),
    /// IPNS names, as Kubo's `ipfs name`: resolve one, publish a version by hand.
    #[command(
        subcommand,
        after_help = "Examples:\n  cairn name resolve k51qzi5uqu5d…           prints /ipfs/<root> of the newest version\n  cairn name publish --key notes <cid>       makes a directory the share's next version\n  cairn cat /ipns/k51qzi5uqu5d…/todo.txt     any read command takes /ipns/ paths"
    )]
    Name(NameCommand),
    /// Raw block access.
    #[command(subcommand)]
    Block(BlockCommand),
    /// DAG import/export (CAR v1).
    #[command(subcommand)]
    Dag(DagCommand),
    /// Run the network node and the local API; other commands then go through it.
    #[command(
        after_help = "Examples:\n  cairn daemon\n  cairn daemon --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1"
    )]
    Daemon(DaemonArgs),
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
    #[command(
        after_help = "Examples:\n  cairn mount bafy... ~/mnt                  through the daemon if one runs, else in the foreground\n  cairn mount --namespace /ipfs              every CID at /ipfs/<cid>/...\n  cairn unmount ~/mnt"
    )]
    Mount(MountArgs),
    /// Unmount a cairn mount.
    Unmount {
        /// The mount point.
        dir: PathBuf,
    },
    /// Print a shell completion script, e.g. `cairn completions bash > /etc/bash_completion.d/cairn`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write man pages (cairn.1 and one per subcommand) generated from this help.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        output: PathBuf,
    },
}

/// Shells `cairn completions` writes scripts for.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Shell {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Settings profiles for `cairn init --profile` and `cairn config profile`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Profile {
    /// Listen on every interface, TCP and QUIC port 4001 (as Kubo does).
    Default,
    /// Loopback only, ports chosen by the OS, no bootstrap peers, no mDNS: tests, several
    /// nodes on one machine, air-gapped use.
    Local,
}

/// `cairn init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Settings to start from.
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
}

/// `cairn daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Listen on this multiaddr instead of network.listen (repeat for several), e.g.
    /// /ip4/127.0.0.1/tcp/0 [default: network.listen of the config]
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Serve the HTTP gateway on IP:PORT instead of gateway.listen, or `off` [default:
    /// gateway.listen of the config, 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<String>,
}

/// `cairn config ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Print the whole effective configuration (defaults included).
    Show {
        /// Describe every key: its value, what it does and the values it takes.
        #[arg(long)]
        keys: bool,
    },
    /// Print one key's value, e.g. `cairn config get network.listen`.
    Get {
        /// A key such as network.listen (`cairn config show --keys` lists them).
        key: String,
    },
    /// Change one key, checked first, e.g. `cairn config set network.listen /ip4/127.0.0.1/tcp/4101`.
    Set {
        /// A key such as network.listen (`cairn config show --keys` lists them).
        key: String,
        /// The value; a list key takes several values, or `[]` for an empty list.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        values: Vec<String>,
    },
    /// Apply a settings profile to this repo.
    Profile {
        /// The profile.
        #[arg(value_enum)]
        profile: Profile,
    },
    /// Edit config.toml in $VISUAL or $EDITOR; saved only if it is valid.
    Edit,
}

/// `cairn share ...`.
#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Create a shared folder with a new key; prints its share id.
    New {
        /// A local name for it (letters, digits, '.', '_', '-').
        label: String,
        /// Start from this directory on disk, or `<cid>[/path]` of a directory in the repo
        /// [default: an empty folder]
        #[arg(long, value_name = "PATH|CID")]
        from: Option<String>,
    },
    /// Follow another node's share by its id (needs a daemon): its newest version becomes its
    /// head here and each new one is taken as it is published; mount it, read it with
    /// `/ipns/<id>/…`, `share rm` to stop.
    Follow {
        /// The share id (k51…, or /ipns/k51…).
        share: String,
        /// A local name for it [default: followed-<last 8 characters of the id>]
        #[arg(long)]
        label: Option<String>,
        /// Also keep every version (within retention) offline, fetched whole as it arrives
        /// (as `cairn pin add /ipns/ID`).
        #[arg(long)]
        pin: bool,
    },
    /// Let another writer commit to a share of this repo (its peer id or writer key); the
    /// signed member list is part of the share's history.
    Grant {
        /// Label or share id.
        share: String,
        /// The writer: its peer id (12D3Koo…) or key (k51…).
        writer: String,
        /// A name for it in listings and conflict copies [default: the last 8 characters of
        /// its key]
        #[arg(long)]
        label: Option<String>,
        /// Also let it publish the share's head record, so followers get its writes while
        /// this node is offline: the share's key goes to it, sealed to its key in the member
        /// list (a later revocation refuses its commits but cannot take the key back).
        #[arg(long)]
        publish: bool,
    },
    /// Take a writer's access away: its later commits are refused.
    Revoke {
        /// Label or share id.
        share: String,
        /// The writer: its peer id or key.
        writer: String,
    },
    /// The writers of a share: its owner and those granted.
    Members {
        /// Label or share id.
        share: String,
    },
    /// Conflict copies still present in a share's head (`<name>.cairn-conflict-<writer>-<time>`
    /// files a merge kept beside the version that won).
    Conflicts {
        /// Label or share id.
        share: String,
    },
    /// List the shares of this repo.
    Ls,
    /// How current a share is here: the version shown, the peers with the share connected,
    /// the last DHT check, and whether it is stale (a newer version may exist).
    Status {
        /// Label or share id [default: every share]
        share: Option<String>,
    },
    /// Commit a share's staged changes now (those of its writable mount, or left staged by a
    /// crash) as a new version.
    Commit {
        /// Label or share id.
        share: String,
    },
    /// Forget a share: its key and head go, its versions are unpinned.
    Rm {
        /// Label or share id.
        share: String,
    },
    /// List a share's versions, newest first.
    Log {
        /// Label or share id.
        share: String,
    },
    /// Paths added, removed or modified between two versions.
    Diff {
        /// Label or share id.
        share: String,
        /// The older version (sequence number or root CID; any directory CID in the repo)
        /// [default: the version before TO]
        from: Option<String>,
        /// The newer version, as FROM [default: the head]
        to: Option<String>,
    },
    /// Make an old version the new head (a new version; history is kept).
    Restore {
        /// Label or share id.
        share: String,
        /// The version (sequence number or root CID).
        #[arg(value_name = "VERSION")]
        which: String,
    },
    /// Show or change how many versions a share keeps.
    Retention {
        /// Label or share id.
        share: String,
        /// Keep the newest N versions [default: unchanged; 100 for a new share]
        #[arg(long, value_name = "N")]
        versions: Option<u64>,
        /// Also keep every version younger than SECS seconds [default: unchanged; 0, off]
        #[arg(long, value_name = "SECS")]
        secs: Option<u64>,
    },
}

/// `cairn name ...`.
#[derive(Debug, Subcommand)]
pub enum NameCommand {
    /// Print the `/ipfs/` path an IPNS name points at (`/ipns/<name>[/path]` or `<name>`).
    Resolve {
        /// The name: a share id (k51…), `/ipns/<name>` or `/ipns/<name>/path`.
        name: String,
    },
    /// Make a directory the next version of a share whose key this repo holds.
    Publish {
        /// The share: label or share id (required; no default: Kubo's node key "self" is not a
        /// share)
        #[arg(long)]
        key: String,
        /// `<cid>[/path]`, `/ipfs/…` or `/ipns/…` of a directory.
        path: String,
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
    /// The CID to mount, or a share's label or share id (omit with --namespace).
    #[arg(value_name = "CID|SHARE")]
    pub cid: Option<String>,
    /// The mount point (an existing, empty directory).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Mount every CID lazily: DIR/<cid>/path, like Kubo's /ipfs [default: off, mount one CID]
    #[arg(long, value_name = "DIR", conflicts_with = "cid")]
    pub namespace: Option<PathBuf>,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf for non-root).
    #[arg(long)]
    pub allow_other: bool,
    /// Mount a writable share read-only (its head) [default: writable when the repo holds
    /// the share's key]
    #[arg(long)]
    pub read_only: bool,
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
    /// CID version: 0 (Kubo's default import) or 1 [default: import.cid_version of the
    /// config, 1]
    #[arg(long, value_name = "0|1", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub cid_version: Option<u8>,
    /// Store leaves as raw blocks [default: import.raw_leaves of the config (true); with
    /// --cid-version: true for 1, false for 0]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub raw_leaves: Option<bool>,
    /// Chunker: size-N (fixed, N ≤ 1048576) or fastcdc-MIN-AVG-MAX [default: import.chunker of
    /// the config, size-262144]
    #[arg(long, value_name = "SPEC")]
    pub chunker: Option<String>,
    /// Hash function: sha2-256 or blake3 [default: import.hash of the config, sha2-256]
    #[arg(long, value_name = "NAME", value_parser = ["sha2-256", "blake3"])]
    pub hash: Option<String>,
    /// Pin the added content (recursively).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
    pub pin: bool,
    /// Name for the pin [default: none]
    #[arg(long, value_name = "NAME")]
    pub pin_name: Option<String>,
    /// Only compute the CIDs; store nothing.
    #[arg(short = 'n', long)]
    pub only_hash: bool,
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
#[derive(Debug, Clone, Args)]
pub struct CatArgs {
    /// `<cid>[/path]`, `/ipfs/<cid>[/path]` or `/ipns/<name>[/path]`.
    pub path: String,
    /// Byte offset to start at
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Maximum number of bytes to print [default: to the end].
    #[arg(long)]
    pub length: Option<u64>,
    /// Write to this file instead of stdout (`-` for stdout even when it is a terminal and the
    /// file is binary) [default: stdout].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `cairn get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// `<cid>[/path]`, `/ipfs/<cid>[/path]` or `/ipns/<name>[/path]`.
    pub path: String,
    /// Where to write; never over something that exists [default: the last path segment, or
    /// the CID, in the current directory].
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// `cairn ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// `<cid>[/path]`, `/ipfs/<cid>[/path]` or `/ipns/<name>[/path]`.
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
        /// A name for the pin [default: none].
        #[arg(long)]
        name: Option<String>,
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
    Gc,
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
        /// Write to this file instead of stdout (`-` for stdout even when it is a terminal)
        /// [default: stdout, refused if it is a terminal].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Store stdin (or a file) as one block and print its CID.
    Put {
        /// A file to read instead of stdin.
        file: Option<PathBuf>,
        /// Codec of the block
        #[arg(long, default_value = "raw", value_parser = ["raw", "dag-pb"])]
        format: String,
        /// Hash function
        #[arg(long, default_value = "sha2-256", value_parser = ["sha2-256", "blake3"])]
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
        /// Write to this file instead of stdout (`-` for stdout even when it is a terminal)
        /// [default: stdout, refused if it is a terminal].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
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
