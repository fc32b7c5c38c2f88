//! Crash points for fault-injection tests: `CAIRN_FAULT_KILL_AT=<point>[:<n>]` makes the process
//! kill itself with SIGKILL the `n`-th time (default 1st) it passes `<point>`, exactly as a
//! `kill -9` or a power cut at that instant would (nothing is flushed, no destructor runs).
//! Tests use it to stop the store between two writes whose order the crash argument relies on
//! (docs/DESIGN.md, "Crash safety"). Unset, a crash point costs one relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable naming the crash point.
pub const FAULT_ENV: &str = "CAIRN_FAULT_KILL_AT";

struct Armed {
    point: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(FAULT_ENV).ok()?;
            let (point, nth) = match spec.split_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                point,
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Dies here if this crash point is armed and its count is reached (other crates name their
/// own points; see the module doc).
pub fn crash_point(name: &str) {
    let Some(a) = armed() else {
        return;
    };
    if a.point == name && a.seen.fetch_add(1, Ordering::Relaxed) + 1 == a.nth {
        kill_self();
    }
}

#[allow(unsafe_code)]
fn kill_self() {
    // SAFETY: kill(2) and getpid(2) have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}
