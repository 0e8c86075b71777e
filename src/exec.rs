//! Running one child process (SPEC §3 "Child processes"): argv only (never a shell), a null
//! stdin, its own process group, `SHIPGATE_*` env additions, stdout and stderr drained on their
//! own threads and streamed to the log with the tail kept for errors, bounded by a timeout:
//! TERM to the whole group, a grace period, then KILL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// Grace between TERM and KILL, for timeouts and cancellation.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; `argv[0]` is looked up on PATH when it has no slash.
    pub argv: Vec<String>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Working directory (the config file's directory).
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    /// The config key that sets the program's path, named when it is missing
    /// (e.g. `target.fly.bin`).
    pub bin_key: Option<String>,
}

impl CommandSpec {
    pub fn new(argv: Vec<String>, timeout: Duration) -> Self {
        CommandSpec {
            argv,
            env: Vec::new(),
            cwd: None,
            timeout,
            bin_key: None,
        }
    }
    /// The argv, redacted and quoted for display.
    pub fn display(&self) -> String {
        crate::redact::display_argv(&self.argv)
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a finished command left.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// Exit code, when it exited (not killed by a signal).
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// All of stdout (commands whose stdout is data, like `machines list --json`, need it whole).
    pub stdout: String,
    /// The tail of stderr (the last lines, bounded).
    pub stderr_tail: String,
    pub elapsed: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A cancellation token shared by everything a deploy runs. Cancelling it terminates in-flight
/// commands (TERM to the group, grace, KILL) and makes new ones fail at once.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Called with each line a child prints, as it prints it.
pub type LineSink<'a> = &'a (dyn Fn(Stream, &str) + Sync);

/// Runs `spec` to completion. A non-zero exit is `Ok` (see [`CommandOutput::success`]); a
/// missing program, a timeout or a cancellation is an `Err` whose message shows the redacted
/// argv and the stderr tail.
pub fn run(
    spec: &CommandSpec,
    cancel: &Cancel,
    on_line: Option<LineSink<'_>>,
) -> Result<CommandOutput, Error> {
    let _ = (spec, cancel, on_line);
    Err(Error::usage("the executor is not implemented yet"))
}

/// Like [`run`], but a non-zero exit is an error too (showing argv and the stderr tail).
pub fn run_checked(
    spec: &CommandSpec,
    cancel: &Cancel,
    on_line: Option<LineSink<'_>>,
) -> Result<CommandOutput, Error> {
    let out = run(spec, cancel, on_line)?;
    if out.success() {
        Ok(out)
    } else {
        Err(failure(spec, &out))
    }
}

/// The error for a command that exited non-zero: argv, code, and the stderr tail between rules.
pub fn failure(spec: &CommandSpec, out: &CommandOutput) -> Error {
    let how = match (out.code, out.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "failed".to_string(),
    };
    let mut err = Error::failed(format!("`{}` {how}", spec.display()));
    let tail = crate::redact::redact(out.stderr_tail.trim_end());
    if !tail.is_empty() {
        err = err.with_detail(format!("── stderr ──\n{tail}\n────────────"));
    }
    err
}
