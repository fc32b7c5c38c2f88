//! `cairn config show|get|set|edit|profile` and `cairn init --profile`: the repo's `config.toml`
//! from the command line, every key validated before anything is written.
//!
//! The file is edited with `toml_edit`, so a user's comments and layout survive `config set`; it
//! is replaced atomically (written beside, synced, renamed), so a crash leaves the old file or
//! the new one. The config is read without the repo lock: these commands work while a daemon or
//! a mount owns the repo, and say when a change takes effect only on its next start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_store::{ChunkerSpec, Config};
use clap::ValueEnum;
use serde::Serialize;

use crate::args::{ConfigCommand, Profile};
use crate::output::Console;

const FILE: &str = "config.toml";

/// What values a key takes.
#[derive(Clone, Copy)]
enum Kind {
    /// A string checked by the function (which says what is wrong).
    Text(fn(&str) -> Result<(), String>),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// An integer in `min..=max`.
    Int { min: u64, max: u64 },
    /// An integer, or `auto` for the built-in choice (the key is then left out of the file).
    IntOrAuto { min: u64, max: u64 },
    /// A list of strings, each checked by the function.
    List(fn(&str) -> Result<(), String>),
}

/// One settable key.
struct Key {
    name: &'static str,
    kind: Kind,
    /// What the allowed values are, as error messages and `config show --keys` say it.
    allowed: &'static str,
    /// What it does.
    help: &'static str,
    /// Whether a running daemon or mount picks a change up only when it restarts.
    needs_restart: bool,
}

/// Every key of `config.toml`.
const KEYS: &[Key] = &[
    Key {
        name: "import.chunker",
        kind: Kind::Text(check_chunker),
        allowed: "size-N (N ≤ 1048576) or fastcdc-MIN-AVG-MAX",
        help: "how `cairn add` splits files",
        needs_restart: false,
    },
    Key {
        name: "import.cid_version",
        kind: Kind::Int { min: 0, max: 1 },
        allowed: "0 or 1",
        help: "CID version of what `cairn add` makes",
        needs_restart: false,
    },
    Key {
        name: "import.raw_leaves",
        kind: Kind::Bool,
        allowed: "true or false",
        help: "store file chunks as raw blocks",
        needs_restart: false,
    },
    Key {
        name: "import.hash",
        kind: Kind::OneOf(&["sha2-256", "blake3"]),
        allowed: "sha2-256 or blake3",
        help: "hash function of what `cairn add` makes",
        needs_restart: false,
    },
    Key {
        name: "gc.period_secs",
        kind: Kind::Int {
            min: 0,
            max: u64::MAX,
        },
        allowed: "seconds, 0 = never",
        help: "run GC this often while a daemon runs",
        needs_restart: true,
    },
    Key {
        name: "gc.storage_max_bytes",
        kind: Kind::Int {
            min: 0,
            max: u64::MAX,
        },
        allowed: "bytes, 0 = no limit",
        help: "run GC when the store grows past this size",
        needs_restart: true,
    },
    Key {
        name: "store.cache_mib",
        kind: Kind::Int {
            min: 1,
            max: 1 << 20,
        },
        allowed: "MiB, 1 to 1048576",
        help: "index page cache",
        needs_restart: true,
    },
    Key {
        name: "store.inline_max_bytes",
        kind: Kind::Int {
            min: 0,
            max: 1 << 20,
        },
        allowed: "bytes, 0 to 1048576",
        help: "blocks up to this size go into pack files, larger ones into files of their own",
        needs_restart: true,
    },
    Key {
        name: "store.reserve_mib",
        kind: Kind::IntOrAuto {
            min: 0,
            max: u64::MAX,
        },
        allowed: "MiB, 0 = off, or auto (5 % of the disk, 1 MiB to 1 GiB)",
        help: "free space that writes leave on the repo's disk",
        needs_restart: true,
    },
    Key {
        name: "store.pack_max_mib",
        kind: Kind::Int { min: 1, max: 4096 },
        allowed: "MiB, 1 to 4096",
        help: "size at which a pack file is closed",
        needs_restart: true,
    },
    Key {
        name: "shares.keep_versions",
        kind: Kind::Int {
            min: 1,
            max: u64::MAX,
        },
        allowed: "versions, at least 1",
        help: "how many versions a new share keeps (`cairn share retention` changes one share)",
        needs_restart: false,
    },
    Key {
        name: "shares.keep_secs",
        kind: Kind::Int {
            min: 0,
            max: u64::MAX,
        },
        allowed: "seconds, 0 = none by age",
        help: "a new share also keeps every version younger than this",
        needs_restart: false,
    },
    Key {
        name: "shares.commit_quiet_ms",
        kind: Kind::Int {
            min: 10,
            max: 3_600_000,
        },
        allowed: "milliseconds, 10 to 3600000",
        help: "a writable share mount commits once no change came for this long",
        needs_restart: true,
    },
    Key {
        name: "shares.commit_max_secs",
        kind: Kind::Int { min: 1, max: 86400 },
        allowed: "seconds, 1 to 86400",
        help: "while changes go on, a writable share mount commits at least this often",
        needs_restart: true,
    },
    Key {
        name: "network.listen",
        kind: Kind::List(check_listen_addr),
        allowed: "multiaddrs such as /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1 (port 0: the OS picks one)",
        help: "addresses the daemon listens on",
        needs_restart: true,
    },
    Key {
        name: "network.bootstrap",
        kind: Kind::List(check_peer_addr),
        allowed: "multiaddrs ending in /p2p/<peer id>",
        help: "peers the daemon dials at start",
        needs_restart: true,
    },
    Key {
        name: "network.dht_mode",
        kind: Kind::OneOf(&["auto", "client", "server"]),
        allowed: "auto, client or server",
        help: "whether this node answers DHT queries",
        needs_restart: true,
    },
    Key {
        name: "network.kad_protocol",
        kind: Kind::Text(check_protocol),
        allowed: "a protocol name starting with /, e.g. /ipfs/kad/1.0.0",
        help: "the Kademlia protocol (another name makes a private DHT)",
        needs_restart: true,
    },
    Key {
        name: "network.provide_strategy",
        kind: Kind::OneOf(&["roots", "pinned", "all"]),
        allowed: "roots, pinned or all",
        help: "what the daemon announces on the DHT",
        needs_restart: true,
    },
    Key {
        name: "network.reprovide_interval_secs",
        kind: Kind::Int {
            min: 0,
            max: u64::MAX,
        },
        allowed: "seconds, 0 = never",
        help: "how often announcements are renewed",
        needs_restart: true,
    },
    Key {
        name: "network.mdns",
        kind: Kind::Bool,
        allowed: "true or false",
        help: "discover peers on the local network",
        needs_restart: true,
    },
    Key {
        name: "network.fetch_timeout_secs",
        kind: Kind::Int { min: 1, max: 86_400 },
        allowed: "seconds, 1 to 86400",
        help: "how long a read waits for a block from the network (--timeout overrides it)",
        needs_restart: true,
    },
    Key {
        name: "gateway.listen",
        kind: Kind::Text(check_gateway_listen),
        allowed: "IP:PORT (e.g. 127.0.0.1:8080; port 0 picks a free one) or off",
        help: "where `cairn daemon` serves its HTTP gateway (`--gateway` overrides it)",
        needs_restart: true,
    },
];

/// A gateway address: `off`, or an IP and port.
pub fn check_gateway_listen(s: &str) -> Result<(), String> {
    if s == "off" || s.parse::<std::net::SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("{s:?} is not IP:PORT (e.g. 127.0.0.1:8080) or off"))
    }
}

fn check_chunker(s: &str) -> Result<(), String> {
    let spec = s.parse::<ChunkerSpec>().map_err(|e| e.to_string())?;
    spec.validate().map_err(|e| e.to_string())
}

fn check_listen_addr(s: &str) -> Result<(), String> {
    s.parse::<cairn_net::Multiaddr>()
        .map(|_| ())
        .map_err(|e| format!("{s:?} is not a multiaddr ({e})"))
}

fn check_peer_addr(s: &str) -> Result<(), String> {
    check_listen_addr(s)?;
    if !s.contains("/p2p/") {
        return Err(format!("{s:?} does not end in /p2p/<peer id>"));
    }
    Ok(())
}

fn check_protocol(s: &str) -> Result<(), String> {
    if s.starts_with('/') && s.len() > 1 && !s.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!("{s:?} is not a protocol name"))
    }
}

fn key(name: &str) -> Result<&'static Key> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        crate::error::coded(
            "invalid_input",
            format!(
                "unknown config key {name:?}; the keys are: {} (`cairn config show --keys` describes them)",
                names.join(", ")
            ),
        )
    })
}

/// The value `text` stands for under `key`, checked.
fn parse_value(key: &Key, values: &[String]) -> Result<Option<toml_edit::Value>> {
    let bad = |v: &str, why: Option<String>| {
        let why = why.map(|w| format!(": {w}")).unwrap_or_default();
        crate::error::coded(
            "invalid_input",
            format!(
                "invalid value {v:?} for {}{why}; allowed: {}",
                key.name, key.allowed
            ),
        )
    };
    let single = || -> Result<&str> {
        match values {
            [one] => Ok(one.as_str()),
            _ => Err(crate::error::coded(
                "invalid_input",
                format!(
                    "{} takes one value ({}), got {}",
                    key.name,
                    key.allowed,
                    values.len()
                ),
            )),
        }
    };
    Ok(Some(match key.kind {
        Kind::Text(check) => {
            let v = single()?;
            check(v).map_err(|why| bad(v, Some(why)))?;
            v.into()
        }
        Kind::OneOf(allowed) => {
            let v = single()?;
            if !allowed.contains(&v) {
                return Err(bad(v, None));
            }
            v.into()
        }
        Kind::Bool => {
            let v = single()?;
            match v {
                "true" => true.into(),
                "false" => false.into(),
                _ => return Err(bad(v, None)),
            }
        }
        Kind::Int { min, max } => {
            let v = single()?;
            int(v, min, max).map_err(|why| bad(v, why))?.into()
        }
        Kind::IntOrAuto { min, max } => {
            let v = single()?;
            if v == "auto" {
                return Ok(None);
            }
            int(v, min, max).map_err(|why| bad(v, why))?.into()
        }
        Kind::List(check) => {
            let items = list_items(values)?;
            let mut array = toml_edit::Array::new();
            for item in &items {
                check(item).map_err(|why| bad(item, Some(why)))?;
                array.push(item.as_str());
            }
            toml_edit::Value::Array(array)
        }
    }))
}

/// A list given as several arguments, or as one `[..]` (TOML or JSON array), `[]` for empty.
fn list_items(values: &[String]) -> Result<Vec<String>> {
    if let [one] = values {
        let t = one.trim();
        if t.starts_with('[') {
            let parsed: Vec<String> = serde_json::from_str(t)
                .ok()
                .or_else(|| {
                    toml::from_str::<toml::Table>(&format!("v = {t}"))
                        .ok()
                        .and_then(|tb| tb.get("v")?.clone().try_into().ok())
                })
                .with_context(|| {
                    format!("cannot read {t:?} as a list of strings (e.g. '[\"/ip4/127.0.0.1/tcp/0\"]')")
                })?;
            return Ok(parsed);
        }
    }
    Ok(values.to_vec())
}

fn int(v: &str, min: u64, max: u64) -> Result<i64, Option<String>> {
    let n: u64 = v.parse().map_err(|_| None)?;
    if n < min || n > max {
        return Err(Some(format!("out of range {min}..={max}")));
    }
    // TOML integers are signed 64-bit.
    i64::try_from(n).map_err(|_| Some("too large for TOML".to_string()))
}

/// Checks every key of a whole config (after `config edit`, and before a daemon uses it).
pub fn validate(config: &Config) -> Result<()> {
    let value = toml::Value::try_from(config).context("cannot encode the config")?;
    for key in KEYS {
        let Some(v) = lookup(&value, key.name) else {
            continue;
        };
        let texts: Vec<String> = match v {
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect(),
            toml::Value::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        };
        parse_value(key, &texts).with_context(|| "in the repo's config.toml".to_string())?;
    }
    Ok(())
}

fn lookup<'a>(value: &'a toml::Value, name: &str) -> Option<&'a toml::Value> {
    name.split('.').try_fold(value, |v, part| v.get(part))
}

fn path_of(repo_dir: &Path) -> PathBuf {
    repo_dir.join(FILE)
}

fn read_text(repo_dir: &Path) -> Result<String> {
    let path = path_of(repo_dir);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(cairn_store::RepoError::NotInitialised {
                path: repo_dir.to_path_buf(),
            }))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The effective config of the repo at `repo_dir` (defaults filled in).
pub fn load(repo_dir: &Path) -> Result<Config> {
    let text = read_text(repo_dir)?;
    toml::from_str(&text).with_context(|| format!("invalid {}", path_of(repo_dir).display()))
}

/// Replaces `config.toml` atomically with `text` (which must be a valid config).
fn write_text(repo_dir: &Path, text: &str) -> Result<()> {
    let path = path_of(repo_dir);
    cairn_store::replace_file(&path, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Sets (or, with `None`, removes) `name` in the document.
fn set_in(doc: &mut toml_edit::DocumentMut, name: &str, value: Option<toml_edit::Value>) {
    let (section, field) = name.split_once('.').unwrap_or(("", name));
    if !doc.contains_table(section) {
        doc.insert(section, toml_edit::table());
    }
    let Some(table) = doc.get_mut(section).and_then(|t| t.as_table_like_mut()) else {
        return;
    };
    match value {
        Some(v) => {
            table.insert(field, toml_edit::value(v));
        }
        None => {
            table.remove(field);
        }
    }
}

/// Applies `changes` to the repo's config file, keeping its comments, after checking that the
/// result is a valid config.
fn apply(repo_dir: &Path, changes: &[(&Key, Option<toml_edit::Value>)]) -> Result<Config> {
    let text = read_text(repo_dir)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("invalid {}", path_of(repo_dir).display()))?;
    for (key, value) in changes {
        set_in(&mut doc, key.name, value.clone());
    }
    let new_text = doc.to_string();
    let config: Config = toml::from_str(&new_text)
        .with_context(|| format!("the change would make {FILE} invalid"))?;
    validate(&config)?;
    write_text(repo_dir, &new_text)?;
    Ok(config)
}

/// Settings of a profile.
fn profile_changes(profile: Profile) -> Vec<(&'static str, Vec<String>)> {
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let d = cairn_store::NetworkConfig::default();
    match profile {
        Profile::Default => vec![
            ("network.listen", d.listen.clone()),
            ("network.mdns", vec![d.mdns.to_string()]),
        ],
        Profile::Local => vec![
            (
                "network.listen",
                list(&["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]),
            ),
            ("network.bootstrap", list(&["[]"])),
            ("network.mdns", list(&["false"])),
        ],
    }
}

/// Applies `profile` to an existing repo's config.
pub fn apply_profile(repo_dir: &Path, profile: Profile) -> Result<()> {
    let changes = profile_changes(profile)
        .into_iter()
        .map(|(name, values)| {
            let k = key(name)?;
            Ok((k, parse_value(k, &values)?))
        })
        .collect::<Result<Vec<_>>>()?;
    apply(repo_dir, &changes)?;
    Ok(())
}

/// The config a new repo gets with `profile`.
pub fn profile_config(profile: Profile) -> Result<Config> {
    let mut doc: toml_edit::DocumentMut = toml::to_string_pretty(&Config::default())
        .context("cannot encode the default config")?
        .parse()
        .context("cannot encode the default config")?;
    for (name, values) in profile_changes(profile) {
        let k = key(name)?;
        set_in(&mut doc, k.name, parse_value(k, &values)?);
    }
    toml::from_str(&doc.to_string()).context("cannot build the profile's config")
}

#[derive(Serialize)]
struct KeyInfo {
    key: &'static str,
    value: serde_json::Value,
    allowed: &'static str,
    description: &'static str,
    needs_restart: bool,
}

fn json_of(v: Option<&toml::Value>) -> serde_json::Value {
    v.and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn text_of(v: Option<&toml::Value>) -> String {
    match v {
        None => "auto".to_string(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    }
}

/// `cairn config ...`. `owner` is the pid of a process serving the repo, if one runs.
pub fn run(repo_dir: &Path, console: &Console, cmd: ConfigCommand, owner: bool) -> Result<()> {
    let mut out = console.output();
    match cmd {
        ConfigCommand::Show { keys } => {
            let config = load(repo_dir)?;
            let value = toml::Value::try_from(&config).context("cannot encode the config")?;
            if keys {
                for k in KEYS {
                    let v = lookup(&value, k.name);
                    let info = KeyInfo {
                        key: k.name,
                        value: json_of(v),
                        allowed: k.allowed,
                        description: k.help,
                        needs_restart: k.needs_restart,
                    };
                    out.item(&info, || {
                        format!(
                            "{} = {}\n    {}; allowed: {}",
                            k.name,
                            text_of(v).replace('\n', ", "),
                            k.help,
                            k.allowed
                        )
                    })?;
                }
            } else {
                let text = toml::to_string_pretty(&config).context("cannot encode the config")?;
                out.item(&config, || text.trim_end().to_string())?;
            }
        }
        ConfigCommand::Get { key: name } => {
            let k = key(&name)?;
            let config = load(repo_dir)?;
            let value = toml::Value::try_from(&config).context("cannot encode the config")?;
            let v = lookup(&value, k.name);
            out.item(
                &serde_json::json!({ "key": k.name, "value": json_of(v) }),
                || text_of(v),
            )?;
        }
        ConfigCommand::Set { key: name, values } => {
            let k = key(&name)?;
            let value = parse_value(k, &values)?;
            let config = apply(repo_dir, &[(k, value)])?;
            let v = toml::Value::try_from(&config)
                .ok()
                .and_then(|all| lookup(&all, k.name).cloned());
            out.item(
                &serde_json::json!({ "key": k.name, "value": json_of(v.as_ref()) }),
                || {
                    let mut s = format!("{} = {}", k.name, text_of(v.as_ref()).replace('\n', ", "));
                    if owner && k.needs_restart {
                        s.push_str(
                            "\n(the running cairn process of this repo uses it after a restart)",
                        );
                    }
                    s
                },
            )?;
        }
        ConfigCommand::Profile { profile } => {
            apply_profile(repo_dir, profile)?;
            let name = profile
                .to_possible_value()
                .map(|v| v.get_name().to_string());
            let name = name.unwrap_or_default();
            out.item(&serde_json::json!({ "profile": name }), || {
                let mut s = format!("applied profile {name}");
                if owner {
                    s.push_str(" (the running cairn process of this repo uses it after a restart)");
                }
                s
            })?;
        }
        ConfigCommand::Edit => {
            edit(repo_dir)?;
            out.item(&serde_json::json!({ "edited": path_of(repo_dir) }), || {
                format!("saved {}", path_of(repo_dir).display())
            })?;
        }
    }
    out.finish()
}

/// `cairn config edit`: the user's editor on a copy; the copy replaces the config only if it is
/// valid, else it is kept for another try.
fn edit(repo_dir: &Path) -> Result<()> {
    let text = read_text(repo_dir)?;
    let copy = repo_dir.join(format!("{FILE}.edit"));
    // An earlier edit that did not validate is offered again rather than lost.
    if !copy.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", copy.display()))?;
    }
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_string());
    // Like git: the editor variable may hold arguments, so a shell runs it.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&copy)
        .status()
        .with_context(|| format!("cannot run the editor {editor:?} (set $VISUAL or $EDITOR)"))?;
    if !status.success() {
        bail!(
            "the editor {editor:?} failed ({status}); the config is unchanged, your edit is kept in {}",
            copy.display()
        );
    }
    let edited = std::fs::read_to_string(&copy)
        .with_context(|| format!("cannot read {}", copy.display()))?;
    let checked = check_document(&edited);
    if let Err(e) = checked {
        bail!(
            "{e:#}; the config is unchanged, your edit is kept in {} (run `cairn config edit` again to fix it)",
            copy.display()
        );
    }
    write_text(repo_dir, &edited)?;
    let _ = std::fs::remove_file(&copy);
    Ok(())
}

/// A whole config file's text: it parses, every key is known, every value allowed.
fn check_document(text: &str) -> Result<()> {
    let table: toml::Table = toml::from_str(text).context("not valid TOML")?;
    for (section, fields) in &table {
        let Some(fields) = fields.as_table() else {
            bail!("unknown config key {section:?} (settings live in sections such as [network])");
        };
        for field in fields.keys() {
            key(&format!("{section}.{field}"))?;
        }
    }
    let config: Config = toml::from_str(text).context("not a valid cairn config")?;
    validate(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_exists_in_the_default_config_and_its_default_is_allowed() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        for k in KEYS {
            if matches!(k.kind, Kind::IntOrAuto { .. }) {
                continue;
            }
            assert!(lookup(&value, k.name).is_some(), "{} missing", k.name);
        }
        validate(&Config::default()).unwrap();
        for p in Profile::value_variants() {
            validate(&profile_config(*p).unwrap()).unwrap();
        }
    }

    #[test]
    fn values_are_checked_per_key() {
        let v = |name: &str, vals: &[&str]| {
            let vals: Vec<String> = vals.iter().map(|s| s.to_string()).collect();
            parse_value(key(name).unwrap(), &vals)
        };
        assert!(v("network.dht_mode", &["server"]).is_ok());
        let e = v("network.dht_mode", &["fast"]).unwrap_err().to_string();
        assert!(
            e.contains("network.dht_mode") && e.contains("auto, client or server"),
            "{e}"
        );
        assert!(v("import.cid_version", &["2"]).is_err());
        assert!(v("import.chunker", &["size-0"]).is_err());
        assert!(v("import.chunker", &["fastcdc-1000-4000-16000"]).is_ok());
        assert!(v(
            "network.listen",
            &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
        )
        .is_ok());
        assert!(v("network.listen", &["[\"/ip4/127.0.0.1/tcp/0\"]"]).is_ok());
        assert!(v("network.listen", &["127.0.0.1:4001"]).is_err());
        assert!(v("network.bootstrap", &["/ip4/1.2.3.4/tcp/4001"]).is_err());
        assert!(v("network.bootstrap", &["[]"]).unwrap().is_some());
        assert!(v("store.reserve_mib", &["auto"]).unwrap().is_none());
        assert!(v("network.mdns", &["yes"]).is_err());
        assert!(key("network.prot").is_err());
    }

    #[test]
    fn documents_with_unknown_keys_or_bad_values_are_refused() {
        assert!(check_document("[network]\nmdns = true\n").is_ok());
        assert!(check_document("[network]\nmdsn = true\n").is_err());
        assert!(check_document("[network]\ndht_mode = \"x\"\n").is_err());
        assert!(check_document("network = 1\n").is_err());
        assert!(check_document("[network\n").is_err());
    }
}
