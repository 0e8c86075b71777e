//! The test harness: a temp dir, a config, a command line, an environment, and the real binary.

#![allow(dead_code)]

pub mod alertmanager;
pub mod fakes;
pub mod git_http;
pub mod http;
pub mod pipeline;
pub mod process;
pub mod prometheus;
pub mod pty;
pub mod steps;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Exit codes, as the binary documents them (SPEC §6).
pub mod code {
    pub const SUCCESS: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const ROLLBACK_FAILED: i32 = 3;
    pub const PARTIAL: i32 = 4;
    pub const LOCKED: i32 = 5;
    pub const CHECK_FAILED: i32 = 6;
    pub const BLOCKED: i32 = 7;
    pub const SIGHUP: i32 = 129;
    pub const SIGINT: i32 = 130;
    pub const SIGTERM: i32 = 143;
}

/// The binary under test: this build's, or `SHIPGATE_TEST_BIN` (to run a regression test
/// against an older release and watch it fail).
pub fn bin() -> String {
    std::env::var("SHIPGATE_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shipgate").to_string())
}

/// The repository root (for `examples/`, `tests/fakes/`, `tests/fixtures/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch project: a temp dir holding `pipeline.toml`, a `bin/` prepended to PATH for fake
/// CLIs, and the state dir `.shipgate`.
pub struct Project {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// The scenario wrote `status.json` or history by hand on purpose.
    skip_fold_check: std::cell::Cell<bool>,
}

/// What a run of the binary left.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        Project {
            dir,
            env: Vec::new(),
            skip_fold_check: std::cell::Cell::new(false),
        }
    }

    /// A project with this `pipeline.toml`.
    pub fn with_config(config: &str) -> Self {
        let p = Self::new();
        p.write("pipeline.toml", config);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join(".shipgate")
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes an executable script.
    pub fn script(&self, rel: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(rel, text);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// A command for the binary, run in the project dir with a clean, predictable environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.current_dir(self.path())
            .args(args)
            .stdin(std::process::Stdio::null());
        let path = format!(
            "{}:{}",
            self.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path);
        for var in [
            "GITHUB_ACTIONS",
            "GITHUB_OUTPUT",
            "GITHUB_STEP_SUMMARY",
            "SHIPGATE_CONFIG",
            "SHIPGATE_STATE_DIR",
            "SHIPGATE_VERSION",
            "NO_COLOR",
            "CLICOLOR_FORCE",
            "GITHUB_TOKEN",
            "SHIPGATE_GIT_TOKEN",
            "FLY_API_TOKEN",
            "FLY_ACCESS_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("SHIPGATE_NO_PROGRESS", "1").env("CI", "true");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The environment of [`Project::command`] (PATH with the fakes first, and this project's
    /// variables), for running the binary elsewhere (a pty).
    pub fn tty_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "PATH".to_string(),
            format!(
                "{}:{}",
                self.path().join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )];
        env.extend(self.env.iter().cloned());
        env
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run shipgate").into()
    }
}

impl Project {
    /// For a scenario that writes `status.json` or history by hand: the end-of-scenario check
    /// that `status.json` is the fold of history does not apply.
    pub fn skip_fold_check(&self) {
        self.skip_fold_check.set(true);
    }

    /// `status.json` as written, and the fold of `history.jsonl` through the one reducer, when
    /// the state dir (or the git store's cache under `.git`) has both.
    pub fn written_and_folded_status(&self) -> Option<(serde_json::Value, serde_json::Value)> {
        let git_cache = self.path().join(".git/shipgate/origin/shipgate/ledger");
        let dir = if git_cache.join("history.jsonl").exists() {
            git_cache
        } else {
            self.state_dir()
        };
        let written = std::fs::read(dir.join("status.json")).ok()?;
        let history = std::fs::read(dir.join("history.jsonl")).ok()?;
        let written: serde_json::Value = serde_json::from_slice(&written).ok()?;
        let records = history
            .split(|b| *b == b'\n')
            .filter_map(|line| shipgate::ledger::parse_history_line(line).ok());
        let folded = serde_json::to_value(shipgate::ledger::status::fold(records)).unwrap();
        Some((written, folded))
    }
}

/// The end of every scenario: `status.json`, as the last command left it, equals the state
/// rebuilt from history (SPEC §4 "One truth").
impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() || self.skip_fold_check.get() {
            return;
        }
        if let Some((written, folded)) = self.written_and_folded_status() {
            assert_eq!(
                written,
                folded,
                "status.json is not the fold of history in {}",
                self.path().display()
            );
        }
    }
}
