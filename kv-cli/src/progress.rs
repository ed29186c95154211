//! A one-line progress display on standard error, drawn only when standard error is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Width of the bar in characters.
const BAR_WIDTH: u64 = 30;
/// Least time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Moves to the start of the line and erases it.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// A progress line such as `import [#########-----]  64%  6400 keys`, or a plain counter when the
/// total is unknown. When standard error is not a terminal it draws nothing, and its
/// [`Progress::println`] is a plain `eprintln!`.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Whether to draw at all.
    enabled: bool,
    /// The word in front of the bar.
    label: &'static str,
    /// The total amount of work (e.g. bytes of the input file), when known.
    total: Option<u64>,
    /// When the line was last drawn.
    last_draw: Option<Instant>,
}

impl Progress {
    /// A display for `label`, with a bar when `total` is known.
    pub(crate) fn new(label: &'static str, total: Option<u64>) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            label,
            total: total.filter(|&t| t > 0),
            last_draw: None,
        }
    }

    /// Shows `done` of the total and `count` keys, at most ten times a second.
    pub(crate) fn update(&mut self, done: u64, count: u64) {
        if !self.enabled || self.last_draw.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = match self.total {
            Some(total) => {
                let done = done.min(total);
                let filled = done * BAR_WIDTH / total;
                format!(
                    "{} [{}{}] {:>3}% {count} keys",
                    self.label,
                    "#".repeat(usize::try_from(filled).unwrap_or(0)),
                    "-".repeat(usize::try_from(BAR_WIDTH - filled).unwrap_or(0)),
                    done * 100 / total,
                )
            }
            None => format!("{} {count} keys", self.label),
        };
        let mut stderr = std::io::stderr().lock();
        // A failed progress write must not fail the command.
        let _ = write!(stderr, "{CLEAR_LINE}{line}");
        let _ = stderr.flush();
    }

    /// Prints `message` on its own line of standard error, above the progress line.
    pub(crate) fn println(&mut self, message: &str) {
        if self.enabled && self.last_draw.take().is_some() {
            eprint!("{CLEAR_LINE}");
        }
        eprintln!("{message}");
    }
}

impl Drop for Progress {
    /// Erases the progress line, whether the command succeeded or not, so that nothing printed
    /// afterwards (such as an error) lands on it.
    fn drop(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprint!("{CLEAR_LINE}");
        }
    }
}
