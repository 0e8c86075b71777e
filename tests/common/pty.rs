//! A real terminal for what a person sees: the binary runs in a detached tmux session on a
//! private server, keys are sent to it, and the screen is read with `capture-pane`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Whether tmux is on this machine: tests skip with a printed reason when it is not,
    /// except in CI (`CI=true`), where `.ci/run` installs it and a missing tmux is a failure.
    pub fn available() -> bool {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found || std::env::var("CI").map_or(true, |v| v != "true"),
            "tmux is not installed: .ci/run installs it (apt-get install tmux)"
        );
        found
    }

    /// Runs `argv` in `cwd` with `env` in a 120x40 terminal; when it ends the pane shows
    /// `[exit N]` and stays open.
    pub fn start(cwd: &Path, env: &[(String, String)], argv: &[String]) -> Tmux {
        Self::start_sized(cwd, env, argv, (120, 40))
    }

    /// [`Tmux::start`] in a terminal of `(columns, rows)`.
    pub fn start_sized(
        cwd: &Path,
        env: &[(String, String)],
        argv: &[String],
        (cols, rows): (u16, u16),
    ) -> Tmux {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let socket = format!("shipgate-test-{}-{}", std::process::id(), fastrand::u64(..));
        // The wrapper survives a Ctrl-C sent to the pane (a caught trap is reset to the
        // default for the command, which handles the signal itself) to show the exit code.
        let mut script = String::from("cd \"$0\" || exit 1; trap : INT; ");
        script.push_str("\"$@\"; echo \"[exit $?]\"; sleep 600");
        let mut cmd = Command::new("tmux");
        cmd.args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &cols,
            "-y",
            &rows,
        ]);
        cmd.arg("env");
        // A person's terminal: not CI, progress and colour on (tmux's server would pass on the
        // test runner's environment).
        for var in [
            "CI",
            "GITHUB_ACTIONS",
            "GITHUB_OUTPUT",
            "GITHUB_STEP_SUMMARY",
            "SHIPGATE_NO_PROGRESS",
            "SHIPGATE_CONFIG",
            "SHIPGATE_STATE_DIR",
            "NO_COLOR",
            "CLICOLOR_FORCE",
        ] {
            cmd.args(["-u", var]);
        }
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(["sh", "-c", &script]).arg(cwd).args(argv);
        let status = cmd.status().expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    pub fn send(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What the terminal shows now (escape sequences interpreted, as a person sees it).
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-S", "-200"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen's rows as the terminal holds them (a long line is several rows).
    pub fn rows(&self) -> Vec<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-S", "-200"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Polls the screen until `pred` holds (panics with the screen after `within`).
    pub fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
