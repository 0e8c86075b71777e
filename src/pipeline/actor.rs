//! Who runs shipgate and from where: actor, trigger, run URL, commit, host (SPEC §4, §7).

use std::io::IsTerminal;

/// Facts about this invocation, recorded in deploy records and the lock.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub actor: String,
    /// `github-actions` | `terminal` | `cron` | `ci`.
    pub trigger: String,
    pub run_url: Option<String>,
    /// GITHUB_SHA, else the commit version resolution found.
    pub commit: Option<String>,
    pub host: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads the invocation from the environment.
pub fn detect(repo_commit: Option<&str>) -> Invocation {
    let github = var("GITHUB_ACTIONS").is_some_and(|v| v == "true");
    let trigger = if github {
        "github-actions"
    } else if crate::output::in_ci() {
        "ci"
    } else if std::io::stdin().is_terminal() {
        "terminal"
    } else {
        "cron"
    };
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
