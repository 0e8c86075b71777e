//! Who runs shipgate and from where: actor, trigger, run URL, commit, host (SPEC §4, §7).

use std::io::IsTerminal;

/// Facts about this invocation, recorded in deploy records and the lock.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub actor: String,
    /// `github-actions` | `ci` | `terminal` | `cron` | `script`, or what `--trigger` /
    /// `SHIPGATE_TRIGGER` says.
    pub trigger: String,
    pub run_url: Option<String>,
    /// GITHUB_SHA, else the commit version resolution found.
    pub commit: Option<String>,
    pub host: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

static TRIGGER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `--trigger` (or `SHIPGATE_TRIGGER`): recorded instead of the detected trigger.
pub fn set_trigger(trigger: &str) {
    let _ = TRIGGER.set(trigger.to_string());
}

/// What started this run: `--trigger`, else GitHub Actions, another CI, a person at a terminal,
/// cron (an ancestor process is cron), or else a script.
fn trigger() -> String {
    if let Some(t) = TRIGGER.get() {
        return t.clone();
    }
    let github = var("GITHUB_ACTIONS").is_some_and(|v| v == "true");
    let detected = if github {
        "github-actions"
    } else if crate::output::in_ci() {
        "ci"
    } else if std::io::stdin().is_terminal() {
        "terminal"
    } else if started_by_cron() {
        "cron"
    } else {
        "script"
    };
    detected.to_string()
}

/// Whether an ancestor of this process is cron (`cron`, `crond`, `anacron`, `fcron`…), read
/// from `/proc`: cron sets no variable of its own.
fn started_by_cron() -> bool {
    let mut pid = std::process::id();
    for _ in 0..16 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            return false;
        };
        if stat[open + 1..close].contains("cron") {
            return true;
        }
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        match ppid {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// Reads the invocation from the environment.
pub fn detect(repo_commit: Option<&str>) -> Invocation {
    let trigger = trigger();
    let actor = var("GITHUB_ACTOR")
        .or_else(|| var("SHIPGATE_ACTOR"))
        .or_else(|| var("USER"))
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| format!("uid-{}", unsafe { libc::getuid() }));
    let run_url = match (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        (Some(server), Some(repo), Some(run)) => {
            Some(format!("{server}/{repo}/actions/runs/{run}"))
        }
        _ => None,
    };
    Invocation {
        actor,
        trigger: trigger.to_string(),
        run_url,
        commit: var("GITHUB_SHA").or_else(|| repo_commit.map(str::to_string)),
        host: hostname(),
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| var("HOSTNAME"))
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
