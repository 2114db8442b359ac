//! Progress bars for long operations (`indicatif`): drawn on standard error when it is a
//! terminal, nothing at all otherwise (scripts, pipes, CI logs), so the output a script reads
//! stays the same.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `total` steps labelled `what`; hidden unless standard error is a terminal.
pub fn bar(what: &str, total: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_when_not_a_terminal() {
        // The test harness captures standard error: no terminal, no drawing.
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let b = super::bar("LOAD", 3);
            assert!(b.is_hidden());
            b.inc(3);
            assert_eq!(b.position(), 3);
        }
    }
}
