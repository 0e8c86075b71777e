//! Running one child process (SPEC §3 "Child processes"): argv only (never a shell), a null
//! stdin, its own process group, `SHIPGATE_*` env additions, stdout and stderr read with
//! `poll(2)` by the calling thread (a pidfd wakes it at the child's exit) and streamed to the
//! log with the tail kept for errors, bounded by a timeout:
//! TERM to the whole group, a grace period, then KILL. A command's children die with it: when
//! it exits, anything left in its group gets the same TERM, grace, KILL (without making the
//! caller wait), and whatever is still left at shipgate's exit gets the KILL then.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;

/// Grace between TERM and KILL, for timeouts and cancellation.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// The grace once the run is abandoned (a second signal): the CI runner's SIGKILL follows
/// within seconds, so shipgate must be gone within one.
pub const HURRIED_GRACE: Duration = Duration::from_millis(300);

/// Set by [`hurry_all`]: every stop from now on gets [`HURRIED_GRACE`].
static HURRIED: AtomicBool = AtomicBool::new(false);
/// The process groups of the children running now, for [`kill_all`].
static LIVE_GROUPS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

/// The run is abandoned: commands being stopped (and stopped from now on) get KILL after
/// [`HURRIED_GRACE`] instead of [`KILL_GRACE`].
pub fn hurry_all() {
    HURRIED.store(true, Ordering::SeqCst);
}

/// The groups of commands that exited (or were stopped) with processes still in them, and when
/// their grace ends: they get their KILL then, or at shipgate's exit.
static LINGERING: std::sync::Mutex<Vec<(libc::pid_t, Instant)>> = std::sync::Mutex::new(Vec::new());

/// KILLs the process group of every child still running, and of every command that exited
/// leaving processes behind (the last act before exiting on an abandoned run).
pub fn kill_all() {
    for (pgid, _) in LINGERING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        signal_group(pgid, libc::SIGKILL);
    }
    for pgid in LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        signal_group(*pgid, libc::SIGKILL);
    }
}

/// Before shipgate exits: what is left in the groups of commands that exited (TERMed already)
/// gets the rest of its grace to go, then KILL, so nothing shipgate started outlives it.
pub fn kill_lingering() {
    let lingering: Vec<_> = LINGERING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    for (pgid, deadline) in lingering {
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if group_alive(pgid) {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// The group's leader has exited but processes are left in it: they get KILL once `left` has
/// passed (their TERM was sent already), or at shipgate's exit if that comes first. The group
/// is watched while it waits: once it is empty it is forgotten, so its id, free again, can
/// never bring a KILL to a later group that happens to get it (a new child's group is
/// forgotten here too).
fn kill_after(pgid: libc::pid_t, left: Duration) {
    let deadline = Instant::now() + left;
    LINGERING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((pgid, deadline));
    std::thread::spawn(move || loop {
        let now = Instant::now();
        let mut lingering = LINGERING.lock().unwrap_or_else(|e| e.into_inner());
        // Still ours only while listed: `kill_all`, `kill_lingering` or a new child with this
        // group id may have taken it.
        let Some(at) = lingering.iter().position(|(g, _)| *g == pgid) else {
            return;
        };
        if !group_alive(pgid) {
            lingering.remove(at);
            return;
        }
        if now >= deadline {
            lingering.remove(at);
            signal_group(pgid, libc::SIGKILL);
            return;
        }
        drop(lingering);
        std::thread::sleep(POLL.max((deadline - now).min(Duration::from_millis(100))));
    });
}

fn grace() -> Duration {
    if HURRIED.load(Ordering::SeqCst) {
        HURRIED_GRACE
    } else {
        KILL_GRACE
    }
}

/// Keeps a child's group in [`LIVE_GROUPS`] while it runs.
struct LiveGroup(libc::pid_t);

impl LiveGroup {
    fn new(pgid: libc::pid_t) -> Self {
        // A lingering group with this id is gone (its id was free to be reused): forget it.
        LINGERING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(g, _)| *g != pgid);
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pgid);
        LiveGroup(pgid)
    }
}

impl Drop for LiveGroup {
    fn drop(&mut self) {
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|g| *g != self.0);
    }
}

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
    /// What the child reads on stdin (a manifest for `kubectl apply -f -`); `None`: null.
    pub stdin: Option<String>,
}

impl CommandSpec {
    pub fn new(argv: Vec<String>, timeout: Duration) -> Self {
        CommandSpec {
            argv,
            env: Vec::new(),
            cwd: None,
            timeout,
            bin_key: None,
            stdin: None,
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

/// Cap on the stdout kept in memory; past it the rest is dropped and the tail says so.
pub const STDOUT_CAP: usize = 16 * 1024 * 1024;
/// Bounds on the stderr tail kept for error messages.
pub const STDERR_TAIL_LINES: usize = 50;
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// How often the loop looks at the deadline and the cancel token (a child's exit and its
/// output wake it at once).
const POLL: Duration = Duration::from_millis(20);
/// After the child has exited, how long to wait for its pipes to close. A grandchild that
/// keeps them open (a daemon started without redirecting its output) must not keep shipgate
/// waiting: past this the pipes are closed (the grandchild gets SIGPIPE if it writes on).
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Why a running command is being terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Cancelled,
}

/// A piece read from a pipe: one line (with its newline, if it had one), or the end.
enum Chunk {
    Line(Stream, Vec<u8>),
    Closed(Stream),
}

/// Runs `spec` to completion. A non-zero exit is `Ok` (see [`CommandOutput::success`]); a
/// missing program, a timeout or a cancellation is an `Err` whose message shows the redacted
/// argv and the stderr tail.
///
/// Signal rules: the child leads its own process group, so a TERM or KILL reaches everything it
/// started. On timeout or cancellation the group gets SIGTERM, then SIGKILL after
/// [`KILL_GRACE`] if anything in it still runs or holds the pipes.
pub fn run(
    spec: &CommandSpec,
    cancel: &Cancel,
    on_line: Option<LineSink<'_>>,
) -> Result<CommandOutput, Error> {
    run_from(spec, cancel, on_line, None)
}

/// Like [`run`], with stdin read from the file at `stdin` instead of null (`ssh-keygen -Y
/// verify` reads the signed message there).
pub fn run_with_stdin(
    spec: &CommandSpec,
    cancel: &Cancel,
    stdin: &Path,
) -> Result<CommandOutput, Error> {
    run_from(spec, cancel, None, Some(stdin))
}

fn run_from(
    spec: &CommandSpec,
    cancel: &Cancel,
    on_line: Option<LineSink<'_>>,
    stdin: Option<&Path>,
) -> Result<CommandOutput, Error> {
    let Some(program) = spec.argv.first() else {
        return Err(Error::usage("cannot run an empty command"));
    };
    if cancel.is_cancelled() {
        return Err(Error::failed(format!(
            "`{}` was not started: the run was cancelled",
            spec.display()
        )));
    }
    if let Some(cwd) = &spec.cwd {
        if !cwd.is_dir() {
            return Err(Error::usage(format!(
                "cannot run `{}`: its working directory `{}` does not exist",
                spec.display(),
                cwd.display()
            ))
            .not_started());
        }
    }

    let input = match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).map_err(|e| {
            Error::failed(format!(
                "cannot run `{}`: cannot open its input `{}`",
                spec.display(),
                path.display()
            ))
            .caused_by(e)
            .not_started()
        })?),
        None if spec.stdin.is_some() => Stdio::piped(),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| spawn_error(spec, program, e))?;
    let pgid = child.id() as libc::pid_t;
    let _live = LiveGroup::new(pgid);
    if let (Some(mut pipe), Some(data)) = (child.stdin.take(), spec.stdin.clone()) {
        // Its own thread: a child that stops reading must not block the deadline below. A
        // write error (the child exited early) shows in its exit status.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(data.as_bytes());
        });
    }

    // The output is read here, with poll(2): no reader threads (64 regions deploying at once
    // would otherwise run 128 of them). A child printing faster than we log waits on its pipe.
    let mut pipes: Vec<Pipe> = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push(Pipe::new(Stream::Stdout, out.into()));
    }
    if let Some(err) = child.stderr.take() {
        pipes.push(Pipe::new(Stream::Stderr, err.into()));
    }
    let mut open_pipes = pipes.len();
    // The child's exit wakes the poll at once (a pidfd is readable once it has exited); without
    // one (an old kernel) the exit is seen at the next tick.
    let pidfd = PidFd::open(child.id());

    let redactor = crate::redact::global();
    let mut collected = Collected::default();
    let mut status: Option<(std::process::ExitStatus, Instant)> = None;
    let mut stop: Option<(Stop, Instant)> = None;
    let mut killed = false;

    loop {
        // Wait at most one tick for output or the exit, then read a bounded amount from each
        // pipe, so an endless stream cannot starve the checks below.
        let watch_exit = pidfd.as_ref().filter(|_| status.is_none());
        poll_once(&pipes, watch_exit, POLL);
        for pipe in pipes.iter_mut().filter(|p| p.open) {
            pipe.drain(|chunk| collected.take(chunk, &mut open_pipes, &redactor, on_line));
        }
        let now = Instant::now();
        if status.is_none() {
            if let Some(st) = child.try_wait()? {
                status = Some((st, now));
            }
        }
        match (status, stop) {
            (Some(_), None) if open_pipes == 0 => break,
            (Some((_, exited)), None) if now - exited >= PIPE_DRAIN_GRACE => break,
            (None, None) => {
                let why = if cancel.is_cancelled() {
                    Some(Stop::Cancelled)
                } else if now - start >= spec.timeout {
                    Some(Stop::TimedOut)
                } else {
                    None
                };
                if let Some(why) = why {
                    signal_group(pgid, libc::SIGTERM);
                    stop = Some((why, now));
                }
            }
            (_, Some((_, stopped_at))) => {
                if status.is_some() && open_pipes == 0 {
                    // The child is gone and nothing holds our pipes. Stragglers in its group
                    // that ignore TERM still get the KILL when the grace ends, without making
                    // the caller wait for it.
                    if !killed && group_alive(pgid) {
                        kill_after(pgid, grace().saturating_sub(now - stopped_at));
                    }
                    break;
                }
                if !killed && now - stopped_at >= grace() {
                    signal_group(pgid, libc::SIGKILL);
                    killed = true;
                }
                if killed && now - stopped_at >= grace() + PIPE_DRAIN_GRACE {
                    if status.is_none() {
                        // SIGKILL cannot be ignored; reap it.
                        status = Some((child.wait()?, now));
                    }
                    break;
                }
            }
            _ => {}
        }
    }

    let (st, _) = match status {
        Some(s) => s,
        None => (child.wait()?, Instant::now()),
    };
    if stop.is_none() {
        end_leftovers(spec, pgid, open_pipes > 0);
    }
    let elapsed = start.elapsed();
    let output = collected.finish(st, elapsed);
    match stop {
        None => Ok(output),
        Some((why, _)) => Err(stopped_error(spec, why, &output)),
    }
}

fn spawn_error(spec: &CommandSpec, program: &str, e: std::io::Error) -> Error {
    use std::io::ErrorKind;
    let (what, usage) = match e.kind() {
        ErrorKind::NotFound => ("program not found".to_string(), true),
        ErrorKind::PermissionDenied => ("permission denied (is it executable?)".to_string(), true),
        _ => (e.to_string(), false),
    };
    let message = format!("cannot run `{}`: {what}", crate::redact::redact(program));
    let mut err = if usage {
        Error::usage(message)
    } else {
        Error::failed(message)
    };
    err = err.with_detail(format!("command: {}", spec.display()));
    let looked = if program.contains('/') {
        format!(
            "`{}` must be an executable file",
            crate::redact::redact(program)
        )
    } else {
        format!("`{program}` is looked up on PATH")
    };
    let hint = match &spec.bin_key {
        Some(key) => format!("{looked}; install it, or set `{key}` to its full path"),
        None => format!("{looked}; install it or use its full path"),
    };
    // Spawning failed before the program ran: it changed nothing.
    err.with_hint(hint).not_started()
}

/// Why a program cannot be started, as the executor would find out at spawn time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramProblem {
    /// Nothing by that name: no such file, or not on PATH.
    NotFound,
    /// The file exists but is not an executable file (no execute permission, a directory).
    NotExecutable(PathBuf),
    /// A script whose `#!` interpreter does not exist (the kernel reports "not found").
    MissingInterpreter {
        script: PathBuf,
        interpreter: String,
    },
}

impl ProgramProblem {
    /// What is wrong, as a fragment ("`./deploy.sh`: …").
    pub fn describe(&self) -> String {
        match self {
            ProgramProblem::NotFound => "program not found".to_string(),
            ProgramProblem::NotExecutable(p) => {
                format!("`{}` is not executable", p.display())
            }
            ProgramProblem::MissingInterpreter {
                script,
                interpreter,
            } => format!(
                "`{}` starts with `#!{interpreter}`, which does not exist",
                script.display()
            ),
        }
    }
}

/// The file the executor would run for `program` in `cwd` (SPEC §3), or why it cannot.
///
/// Mirrors [`run`]: a name with a slash is a path, relative ones taken from `cwd` (the child
/// changes directory before it executes); a bare name is searched on the inherited PATH like
/// `execvp` does — entries in order, an empty or relative entry taken from `cwd`, the first
/// executable regular file wins, and a match that is not executable only counts when nothing
/// later is.
pub fn find_program(program: &str, cwd: Option<&Path>) -> Result<PathBuf, ProgramProblem> {
    let base = cwd.unwrap_or(Path::new("."));
    if program.is_empty() {
        return Err(ProgramProblem::NotFound);
    }
    // `components()` drops the `.` in `base/./prog` so the paths named in errors read well.
    if program.contains('/') {
        return check_executable(&base.join(program).components().collect::<PathBuf>());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    let mut denied = None;
    for dir in std::env::split_paths(&path) {
        let candidate: PathBuf = base.join(dir).join(program).components().collect();
        match check_executable(&candidate) {
            Ok(found) => return Ok(found),
            Err(ProgramProblem::NotFound) => {}
            Err(other) => {
                denied.get_or_insert(other);
            }
        }
    }
    Err(denied.unwrap_or(ProgramProblem::NotFound))
}

fn check_executable(path: &Path) -> Result<PathBuf, ProgramProblem> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Err(ProgramProblem::NotFound);
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ProgramProblem::NotFound)?;
    // SAFETY: `c_path` is a valid NUL-terminated string; access has no other preconditions.
    let executable = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    if !meta.is_file() || !executable {
        return Err(ProgramProblem::NotExecutable(path.to_path_buf()));
    }
    if let Some(interpreter) = shebang(path) {
        if interpreter.starts_with('/') && !Path::new(&interpreter).exists() {
            return Err(ProgramProblem::MissingInterpreter {
                script: path.to_path_buf(),
                interpreter,
            });
        }
    }
    Ok(path.to_path_buf())
}

/// The interpreter a `#!` line names, if the file starts with one.
fn shebang(path: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    line.split_whitespace().next().map(str::to_string)
}

fn stopped_error(spec: &CommandSpec, why: Stop, out: &CommandOutput) -> Error {
    let mut err = match why {
        Stop::TimedOut => Error::failed(format!(
            "`{}` timed out after {}",
            spec.display(),
            humantime::format_duration(spec.timeout)
        ))
        .with_hint("raise `command_timeout` (in [defaults] or the stage) if it needs longer"),
        Stop::Cancelled => Error::failed(format!(
            "`{}` was cancelled after {}",
            spec.display(),
            humantime::format_duration(Duration::from_secs(out.elapsed.as_secs()))
        )),
    };
    let tail = crate::redact::redact(out.stderr_tail.trim_end());
    if !tail.is_empty() {
        err = err.with_detail(format!("── stderr ──\n{tail}\n────────────"));
    }
    err
}

/// The command exited by itself: whatever it left in its process group (a `sleep 3600 &` holding
/// stdout) gets TERM now and KILL after the grace, so nothing it started outlives it. Pipes
/// still held with the group gone mean a process that left the group (`setsid`): shipgate
/// cannot reach it and says so.
fn end_leftovers(spec: &CommandSpec, pgid: libc::pid_t, pipes_held: bool) {
    if group_alive(pgid) {
        signal_group(pgid, libc::SIGTERM);
        kill_after(pgid, grace());
    } else if pipes_held {
        let line = format!(
            "`{}` exited, but a process it started outside its process group (setsid?) still \
             holds its output; shipgate cannot stop it",
            crate::redact::redact(&spec.display())
        );
        crate::say!("warning: {line}");
        if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
            crate::report::github::command("warning", &[], &line);
        }
    }
}

/// Sends `signal` to every process in the group. ESRCH (nothing left) is fine.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 0 {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Whether any process is left in the group.
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    pgid > 0 && unsafe { libc::killpg(pgid, 0) } == 0
}

/// Blocks until the child `pid` has exited, leaving it unreaped (`waitid` with `WNOWAIT`): its
/// pid stays its own, and `/proc/<pid>` still holds its accounting, until it is reaped (the
/// tests read a command's I/O accounting this way).
pub fn wait_exited_unreaped(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// One of the child's output pipes, read without blocking: what it yields is cut into pieces of
/// at most [`STDERR_TAIL_BYTES`], each a whole line or part of a longer one.
struct Pipe {
    stream: Stream,
    file: std::fs::File,
    pending: Vec<u8>,
    open: bool,
}

/// How much is read from one pipe between two looks at the child, the deadline and the cancel
/// token.
const READ_BATCH: usize = 1024 * 1024;

impl Pipe {
    fn new(stream: Stream, fd: std::os::fd::OwnedFd) -> Pipe {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Pipe {
            stream,
            file: std::fs::File::from(fd),
            pending: Vec::new(),
            open: true,
        }
    }

    /// Reads what is there now (up to [`READ_BATCH`]) and hands each piece, and at the end of
    /// the stream [`Chunk::Closed`], to `take`.
    fn drain(&mut self, mut take: impl FnMut(Chunk)) {
        // Small: it lives on the stack of every thread running a command (64 regions: 64 of them).
        let mut buf = [0u8; 8 * 1024];
        let mut read = 0;
        while read < READ_BATCH {
            match self.file.read(&mut buf) {
                Ok(0) => {
                    if !self.pending.is_empty() {
                        take(Chunk::Line(self.stream, std::mem::take(&mut self.pending)));
                    }
                    self.open = false;
                    take(Chunk::Closed(self.stream));
                    return;
                }
                Ok(n) => {
                    read += n;
                    self.pending.extend_from_slice(&buf[..n]);
                    self.pieces(&mut take);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pending.clear();
                    self.open = false;
                    take(Chunk::Closed(self.stream));
                    return;
                }
            }
        }
    }

    /// Whole lines, and pieces of [`STDERR_TAIL_BYTES`] of a longer one, off the front.
    fn pieces(&mut self, take: &mut impl FnMut(Chunk)) {
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let end = match memchr::memchr(b'\n', rest) {
                Some(i) if i < STDERR_TAIL_BYTES => i + 1,
                _ if rest.len() >= STDERR_TAIL_BYTES => STDERR_TAIL_BYTES,
                _ => break,
            };
            take(Chunk::Line(self.stream, rest[..end].to_vec()));
            start += end;
        }
        self.pending.drain(..start);
    }
}

/// A pidfd (Linux 5.3+): readable once the process has exited.
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    fn open(pid: u32) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a descriptor the kernel just returned, owned by nobody else.
        (fd >= 0).then(|| PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }
}

/// Waits up to `tick` until an open pipe has something to read (or has closed), or the process
/// behind `exit` has exited. With nothing to watch, it just waits out the tick.
fn poll_once(pipes: &[Pipe], exit: Option<&PidFd>, tick: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = pipes
        .iter()
        .filter(|p| p.open)
        .map(|p| libc::pollfd {
            fd: p.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    if let Some(pidfd) = exit {
        fds.push(libc::pollfd {
            fd: pidfd.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    if fds.is_empty() {
        std::thread::sleep(tick);
        return;
    }
    // SAFETY: `fds` is a valid array of pollfd for the duration of the call. EINTR is a
    // shorter wait, nothing more.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tick.as_millis() as i32,
        )
    };
}

/// Output gathered so far.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stdout_truncated: bool,
    /// Pieces of stderr, each at most one line; a piece without a newline is a line cut short
    /// (or the last one) and is continued by the next.
    stderr: VecDeque<Vec<u8>>,
    stderr_bytes: usize,
    /// Bytes of a line too long for one piece, waiting for the rest before being shown.
    partial: [Vec<u8>; 2],
}

impl Collected {
    fn take(
        &mut self,
        chunk: Chunk,
        open_pipes: &mut usize,
        redactor: &crate::redact::Redactor,
        on_line: Option<LineSink<'_>>,
    ) {
        let (stream, bytes) = match chunk {
            Chunk::Closed(stream) => {
                *open_pipes = open_pipes.saturating_sub(1);
                // A last line without a newline.
                let rest = std::mem::take(&mut self.partial[stream as usize]);
                if let (Some(sink), false) = (on_line, rest.is_empty()) {
                    sink(stream, &redactor.redact(&String::from_utf8_lossy(&rest)));
                }
                return;
            }
            Chunk::Line(stream, bytes) => (stream, bytes),
        };
        match stream {
            Stream::Stdout => {
                if self.stdout.len() + bytes.len() <= STDOUT_CAP {
                    self.stdout.extend_from_slice(&bytes);
                } else {
                    self.stdout_truncated = true;
                }
            }
            Stream::Stderr => {
                self.stderr_bytes += bytes.len();
                self.stderr.push_back(bytes.clone());
                while self.stderr.len() > 1
                    && (self.stderr.len() > STDERR_TAIL_LINES
                        || self.stderr_bytes > STDERR_TAIL_BYTES)
                {
                    if let Some(old) = self.stderr.pop_front() {
                        self.stderr_bytes -= old.len();
                    }
                }
            }
        }
        if let Some(sink) = on_line {
            // A line cut short is shown when it ends, or when it is too long to wait for.
            let slot = &mut self.partial[stream as usize];
            slot.extend_from_slice(&bytes);
            if !bytes.ends_with(b"\n") && slot.len() < STDERR_TAIL_BYTES {
                return;
            }
            let whole = std::mem::take(slot);
            let text = String::from_utf8_lossy(&whole);
            let text = text.trim_end_matches(['\n', '\r']);
            sink(stream, &redactor.redact(text));
        }
    }

    fn finish(mut self, status: std::process::ExitStatus, elapsed: Duration) -> CommandOutput {
        use std::os::unix::process::ExitStatusExt;
        let mut stderr_tail: String = self
            .stderr
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        if self.stdout_truncated {
            if !stderr_tail.is_empty() && !stderr_tail.ends_with('\n') {
                stderr_tail.push('\n');
            }
            stderr_tail.push_str(&format!(
                "[shipgate: stdout was cut at {} MiB]\n",
                STDOUT_CAP / (1024 * 1024)
            ));
        }
        let stdout = match String::from_utf8(std::mem::take(&mut self.stdout)) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        CommandOutput {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr_tail,
            elapsed,
        }
    }
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
    // The last line the program wrote is usually its reason (`error: context "ap" does not
    // exist`): as the cause, it reaches one-line summaries, history and pages too.
    if let Some(last) = last_stderr_line(out) {
        err = err.caused_by(last);
    }
    if !tail.is_empty() {
        err = err.with_detail(format!("── stderr ──\n{tail}\n────────────"));
    }
    err
}

/// The last meaningful line a command wrote on stderr, redacted and made one line (see
/// [`one_line_reason`]); shipgate's own markers (`[shipgate: …]`) are skipped.
pub fn last_stderr_line(out: &CommandOutput) -> Option<String> {
    crate::redact::redact(out.stderr_tail.trim_end())
        .lines()
        .rev()
        .map(one_line_reason)
        .find(|l| !l.is_empty() && !l.starts_with("[shipgate:"))
}

/// A stderr line as a one-line reason: what a terminal would show after its last carriage
/// return (progress bars redraw with `\r`), without ANSI escape sequences and control
/// characters, at most 300 characters.
fn one_line_reason(line: &str) -> String {
    let shown = line
        .rsplit('\r')
        .find(|s| !s.trim().is_empty())
        .unwrap_or("");
    let mut out = String::new();
    let mut chars = shown.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI `ESC [ … final` (colours, cursor moves), or a two-character escape.
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    let out = out.trim();
    if out.chars().count() > 300 {
        format!("{}…", out.chars().take(300).collect::<String>())
    } else {
        out.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn sh(script: &str, timeout: Duration) -> CommandSpec {
        CommandSpec::new(
            vec!["sh".into(), "-c".into(), script.into(), "sh".into()],
            timeout,
        )
    }

    /// Whether `pid` is gone (or a zombie waiting for a reaper that may never come in a
    /// container without an init).
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    fn wait_gone(pid: i32, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if gone(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        gone(pid)
    }

    #[test]
    fn captures_stdout_stderr_tail_and_lines() {
        let lines = Mutex::new(Vec::new());
        let sink = |s: Stream, l: &str| lines.lock().unwrap().push((s, l.to_string()));
        let mut spec = sh(
            "echo out1; echo err1 >&2; printf 'no-newline' ; echo \"$SG_X\" >&2; pwd; exit 3",
            Duration::from_secs(10),
        );
        spec.env.push(("SG_X".into(), "from-env".into()));
        spec.cwd = Some(std::env::temp_dir());
        let out = run(&spec, &Cancel::new(), Some(&sink)).unwrap();
        assert_eq!(out.code, Some(3));
        assert!(!out.success());
        let cwd = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(out.stdout, format!("out1\nno-newline{}\n", cwd.display()));
        assert_eq!(out.stderr_tail, "err1\nfrom-env\n");
        let lines = lines.into_inner().unwrap();
        assert!(lines.contains(&(Stream::Stdout, "out1".into())));
        assert!(lines.contains(&(Stream::Stderr, "from-env".into())));
        let err = run_checked(&spec, &Cancel::new(), None).unwrap_err();
        assert!(
            err.message.contains("exited with code 3"),
            "{}",
            err.message
        );
        // The last stderr line is the cause, so one-line summaries carry the reason.
        assert!(
            err.to_string().ends_with("exited with code 3: from-env"),
            "{err}"
        );
        assert!(err.detail.unwrap().contains("err1\nfrom-env"));
    }

    #[test]
    fn a_reason_is_what_a_terminal_shows_on_one_line() {
        assert_eq!(
            one_line_reason("progress 10%\rprogress 100%\rError: cr reason"),
            "Error: cr reason"
        );
        assert_eq!(
            one_line_reason("\u{1b}[31merror:\u{1b}[0m bad \u{7}thing\r"),
            "error: bad thing"
        );
        let long = one_line_reason(&"x".repeat(5000));
        assert_eq!(long.chars().count(), 301);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn output_is_cut_into_lines_and_pieces_of_a_long_line() {
        let (r, _w) = std::io::pipe().unwrap();
        let mut pipe = Pipe::new(Stream::Stderr, r.into());
        let long = vec![b'x'; STDERR_TAIL_BYTES + 10];
        pipe.pending.extend_from_slice(b"one\ntwo\n");
        pipe.pending.extend_from_slice(&long);
        pipe.pending.extend_from_slice(b"\nrest");
        let mut got = Vec::new();
        pipe.pieces(&mut |c| {
            if let Chunk::Line(_, bytes) = c {
                got.push(bytes)
            }
        });
        assert_eq!(got[0], b"one\n");
        assert_eq!(got[1], b"two\n");
        assert_eq!(got[2].len(), STDERR_TAIL_BYTES);
        assert_eq!(got[3], b"xxxxxxxxxx\n");
        assert_eq!(got.len(), 4);
        // A line not ended yet waits for the rest.
        assert_eq!(pipe.pending, b"rest");
    }

    #[test]
    fn stdin_is_null() {
        let out = run(
            &sh("cat; echo end", Duration::from_secs(10)),
            &Cancel::new(),
            None,
        )
        .unwrap();
        assert_eq!(out.stdout, "end\n");
    }

    #[test]
    fn timeout_kills_the_grandchild_through_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let spec = sh(
            &format!("sleep 100 & echo $! > {}; wait", pidfile.display()),
            Duration::from_millis(500),
        );
        let t = Instant::now();
        let err = run(&spec, &Cancel::new(), None).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(
            err.message.contains("timed out after 500ms"),
            "{}",
            err.message
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_gone(pid, Duration::from_secs(2)),
            "grandchild {pid} survived"
        );
    }

    #[test]
    fn a_child_ignoring_term_is_killed_after_the_grace() {
        // `trap '' TERM` makes the shell and (inherited) its sleep ignore TERM.
        let spec = sh(
            "trap '' TERM; echo started >&2; sleep 100",
            Duration::from_millis(300),
        );
        let t = Instant::now();
        let err = run(&spec, &Cancel::new(), None).unwrap_err();
        let took = t.elapsed();
        assert!(took >= KILL_GRACE, "{took:?}");
        assert!(took < KILL_GRACE + Duration::from_secs(2), "{took:?}");
        assert!(err.message.contains("timed out"), "{}", err.message);
        assert!(err.detail.unwrap().contains("started"));
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_keep_us_waiting_and_dies_with_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let spec = sh(
            &format!(
                "sleep 100 & echo $! > {}; echo bye; exit 0",
                pidfile.display()
            ),
            Duration::from_secs(30),
        );
        let t = Instant::now();
        let out = run(&spec, &Cancel::new(), None).unwrap();
        assert!(t.elapsed() < PIPE_DRAIN_GRACE + Duration::from_secs(2));
        assert_eq!(out.code, Some(0));
        assert_eq!(out.stdout, "bye\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_gone(pid, Duration::from_secs(3)),
            "the grandchild outlived its command"
        );
    }

    #[test]
    fn a_grandchild_ignoring_term_gets_the_kill_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let ready = dir.path().join("ready");
        // The grandchild ignores TERM and closes our pipes, so nothing but the group remembers
        // it. The command exits only once the grandchild's trap is set (else the TERM could
        // come first).
        let spec = sh(
            &format!(
                "(trap '' TERM; : > {ready}; exec sleep 100) >/dev/null 2>&1 & echo $! > {pid}; \
                 while [ ! -e {ready} ]; do sleep 0.01; done; exit 0",
                ready = ready.display(),
                pid = pidfile.display()
            ),
            Duration::from_secs(30),
        );
        run(&spec, &Cancel::new(), None).unwrap();
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!gone(pid), "TERM is ignored: it waits for its KILL");
        let t = Instant::now();
        kill_lingering();
        assert!(t.elapsed() <= KILL_GRACE + Duration::from_secs(1));
        assert!(wait_gone(pid, Duration::from_secs(2)), "KILL at exit");
    }

    #[test]
    fn ten_megabytes_on_stderr_do_not_deadlock() {
        let spec = sh(
            "yes 'a fairly chatty progress line' | head -c 10485760 >&2; echo done",
            Duration::from_secs(60),
        );
        let count = std::sync::atomic::AtomicUsize::new(0);
        let sink = |_: Stream, _: &str| {
            count.fetch_add(1, Ordering::Relaxed);
        };
        let out = run(&spec, &Cancel::new(), Some(&sink)).unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "done\n");
        assert!(out.stderr_tail.len() <= STDERR_TAIL_BYTES);
        assert!(out.stderr_tail.lines().count() <= STDERR_TAIL_LINES);
        assert!(count.load(Ordering::Relaxed) > 300_000);
    }

    #[test]
    fn an_endless_stream_still_times_out() {
        let t = Instant::now();
        let err = run(
            &sh("yes 'endless output'", Duration::from_millis(500)),
            &Cancel::new(),
            Some(&|_: Stream, _: &str| {}),
        )
        .unwrap_err();
        assert!(err.message.contains("timed out"), "{}", err.message);
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }

    #[test]
    fn a_missing_program_is_a_usage_error_naming_the_config_key() {
        let mut spec = CommandSpec::new(
            vec!["shipgate-no-such-flyctl".into(), "deploy".into()],
            Duration::from_secs(5),
        );
        spec.bin_key = Some("target.fly.bin".into());
        let err = run(&spec, &Cancel::new(), None).unwrap_err();
        assert_eq!(err.code, crate::exit_code::USAGE);
        assert!(err.message.contains("`shipgate-no-such-flyctl`"));
        assert!(err.message.contains("program not found"));
        assert!(err.hint.unwrap().contains("set `target.fly.bin`"));
    }

    #[test]
    fn secrets_in_argv_and_output_are_redacted() {
        let secret = "exec-test-s3cret-4c1d";
        crate::redact::add_secret(secret);
        let lines = Mutex::new(Vec::new());
        let sink = |_: Stream, l: &str| lines.lock().unwrap().push(l.to_string());
        let spec = sh("echo \"token=$1\" >&2; exit 1", Duration::from_secs(10));
        let spec = CommandSpec {
            argv: [spec.argv, vec![secret.to_string()]].concat(),
            ..spec
        };
        let err = run_checked(&spec, &Cancel::new(), Some(&sink)).unwrap_err();
        let shown = err.render(false);
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(shown.contains("token=***"), "{shown}");
        assert_eq!(lines.into_inner().unwrap(), vec!["token=***".to_string()]);
    }

    #[test]
    fn cancel_terminates_and_later_commands_fail_at_once() {
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let t = Instant::now();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c2.cancel();
        });
        let err = run(&sh("sleep 100", Duration::from_secs(60)), &cancel, None).unwrap_err();
        canceller.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(err.message.contains("was cancelled"), "{}", err.message);
        let err = run(&sh("echo never", Duration::from_secs(60)), &cancel, None).unwrap_err();
        assert!(err.message.contains("not started"), "{}", err.message);
    }

    #[test]
    fn programs_are_found_where_the_executor_finds_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("deploy.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_program("./deploy.sh", Some(dir.path())),
            Ok(dir.path().join("deploy.sh"))
        );
        assert!(find_program("sh", Some(dir.path())).is_ok());
        assert_eq!(
            find_program("./nope.sh", Some(dir.path())),
            Err(ProgramProblem::NotFound)
        );
        assert_eq!(
            find_program("shipgate-no-such-program", Some(dir.path())),
            Err(ProgramProblem::NotFound)
        );
        // A directory is not a program.
        assert!(matches!(
            find_program(".", Some(dir.path())).or(find_program("./", Some(dir.path()))),
            Err(ProgramProblem::NotExecutable(_))
        ));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Root may execute files without any x bit only when one is set; 0644 has none.
        assert_eq!(
            find_program("./deploy.sh", Some(dir.path())),
            Err(ProgramProblem::NotExecutable(dir.path().join("deploy.sh")))
        );
        std::fs::write(&script, "#!/nonexistent/interp -x\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_program("./deploy.sh", Some(dir.path())),
            Err(ProgramProblem::MissingInterpreter {
                script: dir.path().join("deploy.sh"),
                interpreter: "/nonexistent/interp".into()
            })
        );
        // What the preflight check says cannot start, the executor cannot start either.
        let mut spec = CommandSpec::new(vec!["./deploy.sh".into()], Duration::from_secs(5));
        spec.cwd = Some(dir.path().to_path_buf());
        let err = run(&spec, &Cancel::new(), None).unwrap_err();
        assert!(err.not_started, "{}", err.message);
    }

    #[test]
    fn a_missing_working_directory_is_named() {
        let mut spec = sh("true", Duration::from_secs(5));
        spec.cwd = Some("/nonexistent/shipgate-dir".into());
        let err = run(&spec, &Cancel::new(), None).unwrap_err();
        assert!(err.message.contains("/nonexistent/shipgate-dir"));
    }
}
