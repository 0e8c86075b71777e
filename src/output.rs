//! How results reach people and programs: format, quiet, colour, progress bars or plain lines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::{ColorChoice, Format, GlobalArgs};

pub mod neutral;

/// Writes text to stderr as it is, never panicking: only for text neutralised already (what
/// [`crate::say!`] prints) and shipgate's own workflow commands.
pub fn raw_stderr(text: &str) {
    use std::io::Write as _;
    let write = || {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    };
    // While bars are drawn, text goes above them: a redraw never erases a signal notice or an
    // error.
    let bars = BARS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bars {
        Some(m) => m.suspend(write),
        None => write(),
    }
}

/// The progress bars on screen now, if any (set by the reporter while it draws them).
static BARS: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

/// The reporter draws `bars` from now on (`None`: no more).
pub fn set_bars(bars: Option<indicatif::MultiProgress>) {
    *BARS.lock().unwrap_or_else(|e| e.into_inner()) = bars;
}

/// Writes neutralised text to stdout, never panicking (a closed pipe: `shipgate history |
/// head` loses the rest, nothing else).
pub fn raw_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bars, one line per region, redrawn in place.
    Bars,
    /// One timestamped line per state change (logs, CI, pipes).
    Lines,
    /// Nothing but errors and the final result.
    Quiet,
}

/// The one place that decides bars versus lines: bars only for a person at a terminal.
pub fn progress_mode(
    stderr_is_terminal: bool,
    ci: bool,
    no_progress: bool,
    quiet: bool,
) -> ProgressMode {
    if quiet {
        ProgressMode::Quiet
    } else if stderr_is_terminal && !ci && !no_progress {
        ProgressMode::Bars
    } else {
        ProgressMode::Lines
    }
}

/// Whether to colour stderr: `--color`, then NO_COLOR, CLICOLOR_FORCE, CLICOLOR, then the
/// terminal test (<https://no-color.org>, <https://bixense.com/clicolors/>).
pub fn use_color(
    choice: ColorChoice,
    is_terminal: bool,
    env: impl Fn(&str) -> Option<String>,
) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if set("NO_COLOR") || env("TERM").is_some_and(|t| t == "dumb") {
                false
            } else if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
                true
            } else if env("CLICOLOR").is_some_and(|v| v == "0") {
                false
            } else {
                is_terminal
            }
        }
    }
}

/// Whether we run inside a CI system (most set `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        || std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

static JSON_PRINTED: AtomicBool = AtomicBool::new(false);

/// Records that this process has put its JSON document on stdout (so an error that follows
/// does not print a second one).
pub fn mark_json_printed() {
    JSON_PRINTED.store(true, Ordering::SeqCst);
}

/// Settings every command reads to print.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
    pub progress: ProgressMode,
    /// Colour on stderr (progress, warnings, errors).
    pub color: bool,
    /// Colour on stdout (the answer: tables, plans, the summary); never when piped.
    pub color_out: bool,
    /// Running under GitHub Actions (`GITHUB_ACTIONS=true`).
    pub github: bool,
}

impl Output {
    pub fn from_args(g: &GlobalArgs) -> Self {
        let tty = std::io::stderr().is_terminal();
        let env = |k: &str| std::env::var(k).ok();
        // A dumb terminal cannot redraw bars.
        let dumb = env("TERM").is_some_and(|t| t == "dumb");
        Output {
            format: g.format,
            quiet: g.quiet,
            progress: progress_mode(tty && !dumb, in_ci(), g.no_progress, g.quiet),
            color: use_color(g.color, tty, env),
            color_out: use_color(g.color, std::io::stdout().is_terminal(), env),
            github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        }
    }

    /// Whether people-text goes to stderr (it always does unless `--quiet`).
    pub fn chatty(&self) -> bool {
        !self.quiet
    }

    /// Prints a line for people on stderr, redacted, unless quiet.
    pub fn info(&self, line: impl AsRef<str>) {
        if !self.quiet {
            crate::say!("{}", crate::redact::redact(line.as_ref()));
        }
    }

    /// Prints a warning on stderr (not under `--quiet`, which prints errors and the verdict
    /// only); a `::warning::` annotation under GitHub Actions either way.
    pub fn warn(&self, line: impl AsRef<str>) {
        let text = crate::redact::redact(line.as_ref());
        if !self.quiet {
            let label = if self.color {
                neutral::styled(neutral::Style::Yellow, "warning")
            } else {
                "warning".to_string()
            };
            crate::say!("{label}: {text}");
        }
        if self.github {
            crate::report::github::command("warning", &[], &text);
        }
    }

    /// Prints one JSON document on stdout, redacted: pretty for `--format json`, one line for
    /// `--format jsonl`.
    pub fn json(&self, value: &serde_json::Value) {
        let mut v = value.clone();
        crate::redact::redact_json(&mut v);
        mark_json_printed();
        if self.format == Format::Jsonl {
            crate::out!("{}", serde_json::to_string(&v).unwrap_or_default());
        } else {
            crate::out!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }

    /// With `--format json|jsonl`, the one document of a command that ended with `err` before
    /// printing its own: `{"ok": false, "exit_code": …, "error": {message, causes, hint}}`.
    pub fn json_error(&self, err: &crate::error::Error) {
        if self.format == Format::Human || JSON_PRINTED.load(Ordering::SeqCst) {
            return;
        }
        self.json(&serde_json::json!({
            "ok": false,
            "status": "error",
            "exit_code": err.exit_code(),
            "error": {
                "message": err.message,
                "causes": err.causes,
                "hint": err.hint,
                "detail": err.detail,
                "locations": err.locations,
            },
        }));
    }

    /// `s` in bold for the answer on stdout, when its colour is on (a style marker: printed
    /// through [`crate::answer!`] or [`neutral::text`], it becomes the escape sequence).
    pub fn bold(&self, s: &str) -> String {
        if self.color_out {
            neutral::styled(neutral::Style::Bold, s)
        } else {
            s.to_string()
        }
    }

    /// `s` in bold for stderr (progress headers).
    pub fn bold_err(&self, s: &str) -> String {
        if self.color {
            neutral::styled(neutral::Style::Bold, s)
        } else {
            s.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_for_a_person_at_a_terminal() {
        assert_eq!(progress_mode(true, false, false, false), ProgressMode::Bars);
        assert_eq!(
            progress_mode(false, false, false, false),
            ProgressMode::Lines
        );
        assert_eq!(progress_mode(true, true, false, false), ProgressMode::Lines);
        assert_eq!(progress_mode(true, false, true, false), ProgressMode::Lines);
        assert_eq!(progress_mode(true, false, false, true), ProgressMode::Quiet);
        assert_eq!(progress_mode(false, true, true, true), ProgressMode::Quiet);
    }

    #[test]
    fn colour_rules() {
        let none = |_: &str| None;
        assert!(use_color(ColorChoice::Auto, true, none));
        assert!(!use_color(ColorChoice::Auto, true, |k| (k == "TERM")
            .then(|| "dumb".into())));
        assert!(!use_color(ColorChoice::Auto, false, none));
        assert!(!use_color(ColorChoice::Auto, true, |k| (k == "NO_COLOR")
            .then(|| "1".into())));
        assert!(use_color(ColorChoice::Auto, false, |k| (k
            == "CLICOLOR_FORCE")
            .then(|| "1".into())));
        assert!(!use_color(ColorChoice::Auto, true, |k| (k == "CLICOLOR")
            .then(|| "0".into())));
        assert!(use_color(ColorChoice::Always, false, |k| (k == "NO_COLOR")
            .then(|| "1".into())));
        assert!(!use_color(ColorChoice::Never, true, none));
    }
}
