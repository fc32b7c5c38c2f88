//! How a failed command is reported: one line on stderr, or under `--json` one JSON object
//! `{"error": {"code": ..., "message": ...}}`, with a stable `code` (docs/CLI.md lists them).
//!
//! Codes come from the error's chain: a [`Coded`] error says its code; library errors are
//! classified by type; anything else is `error`.

use std::fmt;

use cairn_store::{GetError, ReadError, RepoError, StoreError};

/// The stable error codes, with what each means (for docs/CLI.md and the tests).
pub const CODES: &[(&str, &str)] = &[
    (
        "usage",
        "the command line is wrong (unknown option, missing argument)",
    ),
    (
        "invalid_input",
        "an argument or value is malformed: a CID, a path, a config value",
    ),
    (
        "not_found",
        "what was named does not exist: a path in a DAG, a local block, a file, a pin",
    ),
    (
        "unreachable",
        "the network did not deliver the content (no providers, or not within the timeout)",
    ),
    ("no_repo", "there is no cairn repo at the path"),
    (
        "repo_busy",
        "the repo is held by another process, or its daemon is too busy",
    ),
    (
        "needs_daemon",
        "the command needs the network: start `cairn daemon`",
    ),
    (
        "no_space",
        "the disk is full (or the free-space reserve is reached)",
    ),
    (
        "corrupt",
        "stored or received data failed verification, or a DAG is malformed or hostile",
    ),
    ("exists", "the output already exists"),
    ("io", "a file or device could not be read or written"),
    ("error", "anything else"),
];

/// An error with its code: raised by the CLI itself, or reported by the process that ran the
/// command for us (the daemon, or another owner of the repo).
#[derive(Debug)]
pub struct Coded {
    /// One of [`CODES`].
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error with a code.
pub fn coded(code: &'static str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// Returns early with a coded error, like `anyhow::bail!`.
#[macro_export]
macro_rules! fail {
    ($code:literal, $($arg:tt)*) => {
        return Err($crate::error::coded($code, format!($($arg)*)))
    };
}

/// The code of an error (the first cause in its chain that has one).
pub fn code(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            if e.is_no_space() {
                return "no_space";
            }
            match e {
                StoreError::Corrupt { .. }
                | StoreError::Index(_)
                | StoreError::Untrusted { .. }
                | StoreError::BadRecord { .. } => return "corrupt",
                StoreError::Io { .. } => return "io",
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            match e {
                RepoError::NotInitialised { .. } => return "no_repo",
                RepoError::InUse { .. } => return "repo_busy",
                RepoError::AlreadyInitialised { .. } => return "exists",
                RepoError::Config { .. } => return "invalid_input",
                _ => {}
            }
        }
        let get = cause.downcast_ref::<GetError>().or_else(|| {
            // `ReadError::Get` is transparent: the chain holds the ReadError, not its GetError.
            match cause.downcast_ref::<ReadError>() {
                Some(ReadError::Get(g)) => Some(g),
                _ => None,
            }
        });
        if let Some(e) = get {
            match e {
                GetError::NotFoundLocally(_) => return "not_found",
                GetError::Timeout { .. } | GetError::Network { .. } => return "unreachable",
                GetError::Corrupt(_) => return "corrupt",
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<ReadError>() {
            match e {
                ReadError::Get(_) => {}
                ReadError::NotFound { .. } => return "not_found",
                ReadError::NotADirectory { .. } | ReadError::NotAFile { .. } => {
                    return "invalid_input"
                }
                _ => return "corrupt",
            }
        }
        if let Some(e) = cause.downcast_ref::<cairn_net::NetError>() {
            use cairn_net::NetError as N;
            match e {
                N::FetchTimeout { .. } | N::Dial { .. } | N::DialTimeout { .. } => {
                    return "unreachable"
                }
                N::BadAddr { .. } => return "invalid_input",
                N::BadDag { .. } => return "corrupt",
                N::Busy { .. } => return "repo_busy",
                _ => {}
            }
        }
        let walk = cause.downcast_ref::<cairn_store::WalkError>().or_else(|| {
            cause
                .downcast_ref::<Box<cairn_store::WalkError>>()
                .map(|b| &**b)
        });
        if let Some(w) = walk {
            return match w {
                cairn_store::WalkError::Missing { .. } => "not_found",
                _ => "corrupt",
            };
        }
        if cause.downcast_ref::<cairn_store::PathError>().is_some() {
            return "invalid_input";
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return match e.kind() {
                std::io::ErrorKind::NotFound => "not_found",
                std::io::ErrorKind::AlreadyExists => "exists",
                std::io::ErrorKind::StorageFull => "no_space",
                _ if e.raw_os_error() == Some(libc::ENOSPC) => "no_space",
                _ => "io",
            };
        }
    }
    "error"
}

/// Says more about an error of a command run without a network (no daemon): content not in the
/// local repo could come from the network.
pub fn offline(err: anyhow::Error) -> anyhow::Error {
    use cairn_store::WalkError;
    let missing = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<GetError>(),
            Some(GetError::NotFoundLocally(_))
        ) || matches!(
            c.downcast_ref::<ReadError>(),
            Some(ReadError::Get(GetError::NotFoundLocally(_)))
        ) || matches!(
            c.downcast_ref::<WalkError>(),
            Some(WalkError::Missing { .. })
        ) || matches!(
            c.downcast_ref::<Box<WalkError>>().map(|b| &**b),
            Some(WalkError::Missing { .. })
        )
    });
    if !missing {
        return err;
    }
    coded(
        "not_found",
        format!(
            "{err:#} (no daemon is running: \
             `cairn daemon` would fetch it from the network)"
        ),
    )
}

/// Names the repo in "no repo" errors as the user gave it (`--repo P` or `$CAIRN_REPO`).
pub fn with_repo_hint(err: anyhow::Error, given: Option<&std::path::Path>) -> anyhow::Error {
    let Some(given) = given else {
        return err;
    };
    let missing = err
        .chain()
        .find_map(|c| match c.downcast_ref::<RepoError>() {
            Some(RepoError::NotInitialised { path }) => Some(path.clone()),
            _ => None,
        });
    match missing {
        Some(path) => coded(
            "no_repo",
            format!(
                "no cairn repo at {}; run `cairn init --repo {}` to create one",
                path.display(),
                given.display()
            ),
        ),
        None => err,
    }
}

/// The payload of an API error frame: `{"code": ..., "message": ...}`.
pub fn frame_payload(err: &anyhow::Error) -> Vec<u8> {
    payload(code(err), &format!("{err:#}"))
}

/// An error frame's payload for a given code and message.
pub fn payload(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
        .unwrap_or_else(|_| message.as_bytes().to_vec())
}

/// The error an API error frame carries.
pub fn from_frame(payload: &[u8]) -> anyhow::Error {
    #[derive(serde::Deserialize)]
    struct Frame {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Frame>(payload) {
        Ok(f) => {
            let code = CODES
                .iter()
                .map(|(c, _)| *c)
                .find(|c| *c == f.code)
                .unwrap_or("error");
            coded(code, f.message)
        }
        Err(_) => anyhow::anyhow!(String::from_utf8_lossy(payload).into_owned()),
    }
}

/// Prints a failed command's error on stderr: text, or JSON with `--json`.
pub fn report(err: &anyhow::Error, json: bool) {
    if json {
        let line = serde_json::json!({
            "error": { "code": code(err), "message": format!("{err:#}") }
        });
        eprintln!("{line}");
    } else {
        eprintln!("Error: {err:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_survive_context_and_the_api() {
        let e = coded("not_found", "no such thing").context("cannot do it");
        assert_eq!(code(&e), "not_found");
        let back = from_frame(&frame_payload(&e));
        assert_eq!(code(&back), "not_found");
        assert_eq!(format!("{back:#}"), "cannot do it: no such thing");
        let plain = anyhow::anyhow!("x");
        assert_eq!(code(&plain), "error");
        assert_eq!(code(&from_frame(b"not json")), "error");
        let io = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(code(&io), "no_space");
    }
}
