//! Progress bars for long operations: drawn on the user's terminal only, never when piped or quiet.
//! When the daemon runs a command for a client, the bar's state travels as PROGRESS frames and the
//! client draws it.

use std::io::IsTerminal;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::{self, ProgressUpdate};

/// Whether this process should draw progress: stdout and stderr are terminals.
pub fn terminal() -> bool {
    std::io::stderr().is_terminal() && std::io::stdout().is_terminal()
}

/// A byte-count bar (with a known total) or spinner (without one) drawn on stderr.
pub fn indicatif_bar(total: Option<u64>, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let style = match total {
        Some(_) => ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> ")),
        None => ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}"),
    };
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A progress bar of a command, wherever its user is.
pub struct Bar {
    inner: Inner,
}

enum Inner {
    Hidden,
    Local(ProgressBar),
    Remote {
        stream: Arc<Mutex<UnixStream>>,
        message: String,
        total: Option<u64>,
        position: u64,
        last_sent: Instant,
    },
}

impl Bar {
    /// A bar drawn by this process.
    pub fn local(visible: bool, total: Option<u64>, message: &str) -> Self {
        Bar {
            inner: if visible {
                Inner::Local(indicatif_bar(total, message))
            } else {
                Inner::Hidden
            },
        }
    }

    /// A bar drawn by the client at the other end of `stream`.
    pub fn remote(
        visible: bool,
        total: Option<u64>,
        message: &str,
        stream: Arc<Mutex<UnixStream>>,
    ) -> Self {
        if !visible {
            return Bar {
                inner: Inner::Hidden,
            };
        }
        let mut bar = Bar {
            inner: Inner::Remote {
                stream,
                message: message.to_string(),
                total,
                position: 0,
                last_sent: Instant::now(),
            },
        };
        bar.send(false);
        bar
    }

    /// Advances by `n`.
    pub fn inc(&mut self, n: u64) {
        match &mut self.inner {
            Inner::Hidden => {}
            Inner::Local(b) => b.inc(n),
            Inner::Remote {
                position,
                last_sent,
                ..
            } => {
                *position += n;
                if last_sent.elapsed() >= Duration::from_millis(100) {
                    self.send(false);
                }
            }
        }
    }

    /// Moves to `pos` (a running total).
    pub fn set_position(&mut self, pos: u64) {
        match &mut self.inner {
            Inner::Hidden => {}
            Inner::Local(b) => b.set_position(pos),
            Inner::Remote { position, .. } => {
                let delta = pos.saturating_sub(*position);
                *position = pos - delta;
                self.inc(delta);
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        match &self.inner {
            Inner::Hidden => {}
            Inner::Local(b) => b.finish_and_clear(),
            Inner::Remote { .. } => self.send(true),
        }
        self.inner = Inner::Hidden;
    }

    fn send(&mut self, finished: bool) {
        if let Inner::Remote {
            stream,
            message,
            total,
            position,
            last_sent,
        } = &mut self.inner
        {
            let update = ProgressUpdate {
                message: message.clone(),
                total: *total,
                position: *position,
                finished,
            };
            if let (Ok(json), Ok(mut s)) = (serde_json::to_vec(&update), stream.lock()) {
                // A client that went away is noticed by the next stdout write.
                let _ = api::write_frame(&mut *s, api::tag::PROGRESS, &json);
            }
            *last_sent = Instant::now();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
