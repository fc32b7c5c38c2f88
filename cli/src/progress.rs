//! Progress bars for long operations: shown only on a terminal, never when piped or quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress output is wanted: both stdout and stderr are terminals and the user did not
/// ask for quiet output. `force` (e.g. `--progress`) shows it whenever stderr is a terminal.
pub fn wanted(quiet: bool, force: bool) -> bool {
    if quiet || !std::io::stderr().is_terminal() {
        return false;
    }
    force || std::io::stdout().is_terminal()
}

/// A byte-count bar (with a known total) or spinner (without one); hidden when not `visible`.
pub fn bytes_bar(visible: bool, total: Option<u64>, message: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => {
            let b = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        }
        None => {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        }
    };
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
