//! The command line (SPEC §1). Definitions and help text only: no I/O, no logic.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Ship an application through stages and regions with health gates, automatic rollback and a
/// tamper-evident history.
#[derive(Debug, Parser)]
// `--version` names the commit too (stamped by build.rs), so a bug report says which build.
#[command(name = "shipgate", about, max_term_width = 100)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SHIPGATE_COMMIT"), ")"))]
#[command(after_help = MAIN_AFTER_HELP, after_long_help = MAIN_AFTER_LONG_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

const MAIN_AFTER_HELP: &str = "\
Examples:
  shipgate validate                     check pipeline.toml and print the plan
  shipgate deploy --dry-run             the exact commands a deploy would run
  shipgate deploy                       deploy, gate, roll back on failure
  shipgate status                       what runs where

`shipgate <command> --help` has examples and exit codes for each command; the README has the
pipeline.toml reference, the GitHub Actions workflows and the reliability guarantees.";

const MAIN_AFTER_LONG_HELP: &str = concat!(
    "Examples:
  shipgate validate                     check pipeline.toml and print the plan
  shipgate deploy --dry-run             the exact commands a deploy would run
  shipgate deploy                       deploy, gate, roll back on failure
  shipgate status                       what runs where

`shipgate <command> --help` has examples and exit codes for each command; the README has the
pipeline.toml reference, the GitHub Actions workflows and the reliability guarantees.

",
    exit_codes!()
);

/// Every exit code shipgate returns (SPEC §6).
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0    success (also: a declined prompt; nothing changed)
  1    failed, and every change was rolled back (or: an event could not be delivered, or a
       record could not be written and the deploy was rolled back)
  2    usage or configuration error, or an unwritable state dir; nothing was changed
  3    rollback failed: some regions may run an unknown or mixed version
  4    partial: some regions failed under `continue` or `rollback-region`
  5    another deploy holds the lock
  6    `status --check`: a gate tripped or cannot be probed, a region needs a human, or
       `--live` found drift
  7    blocked by policy (a closed window, a freeze, the stopped line, a missing approval);
       nothing was changed (never for rollback or recover)
  129  interrupted by SIGHUP: terminal closed (after cleanup)
  130  interrupted by SIGINT (after cleanup)
  143  interrupted by SIGTERM (after cleanup)"
    };
}
use exit_codes;

pub const EXIT_CODES_HELP: &str = exit_codes!();

const DEPLOY_HELP: &str = "\
Examples:
  shipgate deploy                              the version from SHIPGATE_VERSION or [app].version
  shipgate deploy --version v1.4.2 --dry-run   the plan and every command, nothing changed
  shipgate deploy --stage canary               only the canary stage
  shipgate deploy --lock-wait 10m              wait for a running deploy instead of exit 5
  shipgate deploy --wait-for-window 30m        wait for a deploy window to open instead of exit 7

Exit codes: 0 success, 1 failed and rolled back, 2 usage/config (nothing changed), 3 rollback
failed (a human must look: `shipgate recover`), 4 partial, 5 locked, 7 blocked by policy
(nothing changed, or the stages before the block done), 130/143 interrupted.";

const ROLLBACK_HELP: &str = "\
Examples:
  shipgate rollback                            every region to its previous good version (asks)
  shipgate rollback --region lhr --yes         one region, no prompt
  shipgate rollback --to v1.4.1 --reason \"bad migration\"
  shipgate rollback --dry-run                  the plan and the exact commands, nothing changed

Exit codes: 0 rolled back and verified (or the prompt was declined: nothing changed), 1 a
region's rollback or its verification failed, 2 usage (nothing changed), 3 regions left on an
unknown version, 5 locked, 130/143 interrupted.";

const RECOVER_HELP: &str = "\
Examples:
  shipgate recover                             the latest deploy's regions back, verified (asks)
  shipgate recover --latest --yes              in a workflow step after a cancelled run
  shipgate recover 01M8XCPQN8XPKN1T2F0NHXPQE0  one deploy by id
  shipgate recover --dry-run                   what would run, nothing changed

Exit codes: 0 every region at a known, verified version (or nothing to do, or the prompt was
declined), 2 usage (nothing changed), 3 a region is still not at a known, verified version,
5 locked, 130/143 interrupted.";

const STATUS_HELP: &str = "\
Examples:
  shipgate status                              what runs where, from history
  shipgate status --live                       ask the platform too and flag drift
  shipgate status --check --notify             every gate once; exit 6 and alert when one trips
  shipgate status --format json | jq .regions

Exit codes: 0 ok, 2 usage/config, 6 `--check`: a gate tripped or cannot be probed, a region
needs a human, or `--live` found drift.";

const HISTORY_HELP: &str = "\
Examples:
  shipgate history --last 20                   the newest records
  shipgate history --kind deploy --status failed --since 7d
  shipgate history --stats > report.txt        success and rollback rates, durations
  shipgate history --audit                     the notification audit trail
  shipgate history verify                      check both hash chains

Exit codes: 0 ok, 1 `verify` found a broken chain or a torn line, 2 usage.";

const VALIDATE_HELP: &str = "\
Examples:
  shipgate validate                            ./pipeline.toml
  shipgate -c deploy/prod.toml validate
  shipgate validate --format json | jq .stages

Exit codes: 0 valid (warnings about missing programs included), 2 invalid, with every problem
and where it is.";

const LOCK_HELP: &str = "\
Examples:
  shipgate lock status                         who holds the deploy lock
  shipgate lock release                        clear what a crashed holder left
  shipgate lock release --force                release a lock held by a live process
  shipgate lock acquire --message \"db migration, ask alice\" --ttl 2h
                                               hold deploys (and rollbacks) by hand, with a reason
  shipgate lock release                        release a manual lock (anyone may; recorded)

Exit codes: 0 ok, 2 usage, 5 `release` of a lock another live process holds (without --force),
or `acquire` while a deploy or another manual lock holds it.";

const PUBLISH_EVENT_HELP: &str = "\
Examples:
  shipgate publish-event --platform netlify --event-type success --commit-sha \"$GITHUB_SHA\"
  shipgate publish-event --from render --payload payload.json
  shipgate publish-event --platform fly --event-type failure --best-effort

Exit codes: 0 delivered (or recorded with no sink, or --best-effort), 1 not delivered, 2 usage.";

const EXPLAIN_HELP: &str = "\
Examples:
  shipgate explain                             the last deploy: what happened, why, what next
  shipgate explain 01M8XCPQN8XPKN1T2F0NHXPQE0  one deploy by id
  shipgate explain last --md > postmortem.md   a postmortem skeleton
  shipgate explain --format json | jq .next

Exit codes: 0 told, 2 no such deploy (or no history).";

const APPROVE_HELP: &str = "\
Examples:
  shipgate approve 01M8XCPQN8XPKN1T2F0NHXPQE0 --stage primary
  shipgate approve 01M8XCPQN8XPKN1T2F0NHXPQE0 --stage primary --key ~/.ssh/id_ed25519
  SHIPGATE_SIGNING_KEY=~/.ssh/id_ed25519 shipgate approve 01M8XCPQN8XPKN1T2F0NHXPQE0 --stage full

The deploy waiting on the stage goes on once enough distinct people approved. With
`[approvals] allowed_signers` the approval is signed with your SSH key and must verify.

Exit codes: 0 recorded, 2 usage (no such deploy, not waiting on that stage, unsigned or
unknown key, your own deploy, already approved; nothing was recorded).";

const REJECT_HELP: &str = "\
Examples:
  shipgate reject 01M8XCPQN8XPKN1T2F0NHXPQE0 --stage primary --reason \"migration not ready\"
  shipgate reject 01M8XCPQN8XPKN1T2F0NHXPQE0 --stage primary --reason \"not today\" --key ~/.ssh/id_ed25519

The deploy waiting on the stage stops: `blocked` (exit 7) under `on_timeout = \"stop\"`, rolled
back under `on_timeout = \"rollback\"`.

Exit codes: 0 recorded, 2 usage (no such deploy, not waiting on that stage, unsigned or
unknown key; nothing was recorded).";

const COMPLETIONS_HELP: &str = "\
Examples:
  shipgate completions bash > /etc/bash_completion.d/shipgate
  shipgate completions zsh > \"${fpath[1]}/_shipgate\"
  shipgate completions fish > ~/.config/fish/completions/shipgate.fish

Exit codes: 0 printed, 2 usage.";

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Path of the pipeline file
    #[arg(
        short,
        long,
        global = true,
        env = "SHIPGATE_CONFIG",
        default_value = "pipeline.toml"
    )]
    pub config: PathBuf,

    /// Directory of history, audit, status and lock files (overrides `[state].dir`)
    #[arg(long, global = true, env = "SHIPGATE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Output format of the answer on stdout: text for people, or data for programs
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Print only errors and the verdict (no progress, warnings or notes)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Never draw progress bars; print plain timestamped lines instead
    #[arg(long, global = true, env = "SHIPGATE_NO_PROGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_progress: bool,

    /// When to use colour (auto honours NO_COLOR, CLICOLOR, CLICOLOR_FORCE and TERM=dumb)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// What started this run, as recorded in history (default: detected: github-actions, ci,
    /// terminal, cron or script)
    #[arg(long, global = true, env = "SHIPGATE_TRIGGER", value_name = "NAME", value_parser = parse_trigger)]
    pub trigger: Option<String>,

    /// The GitHub repository whose Deployments mirror this run (`[github] deployments`);
    /// default: `[github] repository`, then GITHUB_REPOSITORY
    #[arg(long, global = true, value_name = "OWNER/NAME", value_parser = parse_repository)]
    pub repository: Option<String>,
}

/// `owner/name`.
fn parse_repository(s: &str) -> Result<String, String> {
    if crate::config::valid_repository(s) {
        Ok(s.to_string())
    } else {
        Err("expected OWNER/NAME (letters, digits, `-`, `_`, `.`)".into())
    }
}

/// A trigger name: lowercase letters, digits and `-`, at most 32 characters.
fn parse_trigger(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(
            "a trigger is lowercase letters, digits and `-` (at most 32), e.g. `release-train`"
                .into(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people (alias: table); progress and warnings stay on stderr
    #[value(alias = "table")]
    Human,
    /// One JSON document on stdout
    Json,
    /// One JSON record per line on stdout (for record streams such as `history`)
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a version through the pipeline's stages, with gates and automatic rollback
    #[command(after_help = DEPLOY_HELP)]
    Deploy(DeployArgs),
    /// Return regions to an earlier version
    #[command(after_help = ROLLBACK_HELP)]
    Rollback(RollbackArgs),
    /// Show what runs where; `--check` runs every gate once (for cron)
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Build a deployment event, record it and deliver it to the `[events]` sink
    #[command(after_help = PUBLISH_EVENT_HELP)]
    PublishEvent(PublishEventArgs),
    /// Query the deploy history or the audit trail, newest first
    #[command(after_help = HISTORY_HELP)]
    History(HistoryArgs),
    /// Load and check the pipeline file and print the resolved plan
    #[command(after_help = VALIDATE_HELP)]
    Validate,
    /// Show, release or hold (by hand, with a reason) the deploy lock
    #[command(after_help = LOCK_HELP)]
    Lock(LockArgs),
    /// Finish an interrupted, cancelled or rollback-failed deploy: every region it changed back
    /// to its captured previous version, verified
    #[command(after_help = RECOVER_HELP)]
    Recover(RecoverArgs),
    /// Tell the story of one deploy from history and audit, and what to run next
    #[command(after_help = EXPLAIN_HELP)]
    Explain(ExplainArgs),
    /// What deploy windows and freezes allow now (or `--at` another time), per stage
    #[command(after_help = POLICY_HELP)]
    Policy(PolicyArgs),
    /// Stop the line (`freeze start`) or let deploys go again (`freeze end`)
    #[command(after_help = FREEZE_HELP)]
    Freeze(FreezeArgs),
    /// Approve a stage a deploy is waiting on (`approval` on the stage)
    #[command(after_help = APPROVE_HELP)]
    Approve(ApproveArgs),
    /// Reject a stage a deploy is waiting on: the deploy stops
    #[command(after_help = REJECT_HELP)]
    Reject(RejectArgs),
    /// Statistical canary judges: replay one over recorded deploys
    #[command(after_help = JUDGE_HELP)]
    Judge(JudgeArgs),
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
}

const JUDGE_HELP: &str = "\
Examples:
  shipgate judge backtest errors_vs_baseline            every deploy of the last 30 days
  shipgate judge backtest errors_vs_baseline --since 7d --format json

Exit codes: 0 every deploy replayed (whatever the judge would have said), 1 some could not be
(Prometheus unreadable: the counts leave them out), 2 usage (unknown gate, not a judge, used
by no stage).";

#[derive(Debug, Args)]
pub struct JudgeArgs {
    #[command(subcommand)]
    pub action: JudgeAction,
}

#[derive(Debug, Subcommand)]
pub enum JudgeAction {
    /// Replay a judge gate over every recorded deploy's gate window (times from history, data
    /// from Prometheus): how many recorded rollbacks it would have caught, how many healthy
    /// deploys it would have failed
    Backtest {
        /// The judge gate (`[gate.NAME]` with type = "judge")
        #[arg(value_name = "GATE")]
        gate: String,
        /// Deploys started since a duration ago (30d) or a date (2026-01-31, RFC 3339)
        #[arg(long, value_name = "DUR|DATE", default_value = "30d")]
        since: String,
    },
}

const POLICY_HELP: &str = "\
Examples:
  shipgate policy                                 open and closed stages now, and what opens next
  shipgate policy --at 2026-12-24T10:00:00Z       the same at another time
  shipgate policy --format json

Exit codes: 0 shown, 2 usage or configuration error.";

const FREEZE_HELP: &str = "\
Examples:
  shipgate freeze start --reason \"incident 4711\"             every stage, until `freeze end`
  shipgate freeze start --reason \"db migration\" --until 2h --stage primary
  shipgate freeze end --reason \"resolved\"

Exit codes: 0 recorded (or nothing to end), 2 usage (nothing changed).";

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The instant to evaluate (RFC 3339; default now, or SHIPGATE_NOW)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

#[derive(Debug, Args)]
pub struct FreezeArgs {
    #[command(subcommand)]
    pub action: FreezeAction,
}

#[derive(Debug, Subcommand)]
pub enum FreezeAction {
    /// Stop deploys (every stage, or the `--stage`s) until `freeze end` or `--until`
    Start {
        /// Why, shown to every deploy it blocks
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// When it ends by itself: an RFC 3339 time or a duration from now (e.g. 2h)
        #[arg(long, value_name = "TIME|DUR")]
        until: Option<String>,
        /// Only these stages (repeatable)
        #[arg(long = "stage", value_name = "NAME")]
        stages: Vec<String>,
    },
    /// Let deploys go again
    End {
        /// Why, recorded
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Version to deploy (default: SHIPGATE_VERSION, then `[app].version`)
    #[arg(long, env = "SHIPGATE_VERSION", value_name = "V")]
    pub version: Option<String>,
    /// Run only these stages (repeatable), in pipeline order
    #[arg(long = "stage", value_name = "NAME")]
    pub stages: Vec<String>,
    /// Print the plan and the exact commands; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Wait this long for the deploy lock instead of failing at once (e.g. 5m)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub lock_wait: Option<std::time::Duration>,
    /// Exit 0 instead of 4 when some regions failed under `continue` or `rollback-region`
    #[arg(long)]
    pub allow_partial: bool,
    /// When a window is closed (or a freeze ends by itself), wait up to this long for it to
    /// open instead of exiting 7 (e.g. 30m)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub wait_for_window: Option<std::time::Duration>,
    /// Deploy through a closed window or a freeze (audited: P1 notification and audit record)
    #[arg(long, requires = "reason")]
    pub override_policy: bool,
    /// Why the policy is overridden (with --override-policy)
    #[arg(long, value_name = "TEXT", requires = "override_policy")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Version to return to (default: each region's previous successful version)
    #[arg(long, value_name = "V")]
    pub to: Option<String>,
    /// Only these regions (repeatable)
    #[arg(long = "region", value_name = "R")]
    pub regions: Vec<String>,
    /// Only this stage's regions
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// Why, recorded in history and audit
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Skip the gates after rolling back
    #[arg(long)]
    pub no_verify: bool,
    /// Allow `--to` a version with no successful deploy in history
    #[arg(long)]
    pub force: bool,
    /// Wait this long for the deploy lock instead of failing at once
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub lock_wait: Option<std::time::Duration>,
    /// Show the plan and the exact commands, change nothing (no lock, no record)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The deploy to recover (default: the latest)
    #[arg(value_name = "DEPLOY_ID", conflicts_with = "latest")]
    pub deploy_id: Option<String>,
    /// Recover the latest deploy (the default; for workflows that want to say so)
    #[arg(long)]
    pub latest: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Show what would be done and the exact commands; change nothing (no lock, no record)
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the gates after returning the regions
    #[arg(long)]
    pub no_verify: bool,
    /// Wait this long for the deploy lock instead of failing at once
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub lock_wait: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Ask the platform what really runs and flag drift from history
    #[arg(long)]
    pub live: bool,
    /// Run every gate once per region and exit 6 if any trips (for cron)
    #[arg(long)]
    pub check: bool,
    /// Send an alert to the notification sinks when the check fails
    #[arg(long)]
    pub notify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadSource {
    Netlify,
    Render,
    Github,
}

#[derive(Debug, Args)]
pub struct PublishEventArgs {
    /// Platform that deployed (netlify, render, fly, kubernetes, …)
    #[arg(long, value_name = "P", required_unless_present = "from")]
    pub platform: Option<String>,
    /// start | success | failure | progress
    #[arg(long, value_name = "T", required_unless_present = "from")]
    pub event_type: Option<String>,
    /// Status text (default from the type: started, deployed, failed, in_progress)
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Branch that was deployed (metadata.branch)
    #[arg(long, value_name = "B")]
    pub branch: Option<String>,
    /// Commit that was deployed (metadata.commit_sha)
    #[arg(long, value_name = "SHA")]
    pub commit_sha: Option<String>,
    /// Where the deploy can be seen (metadata.deploy_url)
    #[arg(long, value_name = "URL")]
    pub deploy_url: Option<String>,
    /// The platform's deploy id (metadata.deploy_id)
    #[arg(long, value_name = "ID")]
    pub deploy_id: Option<String>,
    /// Free text (metadata.message)
    #[arg(long, value_name = "M")]
    pub message: Option<String>,
    /// Extra metadata (repeatable)
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Normalise this platform's own webhook payload
    #[arg(long, value_enum, requires = "payload")]
    pub from: Option<PayloadSource>,
    /// The payload file, or - for stdin
    #[arg(long, value_name = "FILE|-", requires = "from")]
    pub payload: Option<String>,
    /// Exit 0 even when the event could not be delivered
    #[arg(long)]
    pub best_effort: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: Option<HistoryAction>,
    /// Only the newest N records
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Only records since a duration ago (24h) or a date (2026-01-31, RFC 3339)
    #[arg(long, value_name = "DUR|DATE")]
    pub since: Option<String>,
    /// deploy | stage | gate | rollback | event | freeze | approval
    #[arg(long, value_name = "K")]
    pub kind: Option<String>,
    /// Only records of this stage
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// Only records naming this region
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Only records with this status (success, failed, rolled_back, partial, cancelled, …)
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Only records of this version
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Success rate, rollback rate, durations per stage and deploy frequency
    #[arg(long)]
    pub stats: bool,
    /// Query the audit trail instead of the history
    #[arg(long)]
    pub audit: bool,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Check both files' hash chains and report the first broken or torn line
    Verify,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// What to do with the lock
    #[command(subcommand)]
    pub action: LockAction,
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Show who holds the deploy lock
    Status,
    /// Release the deploy lock
    Release {
        /// Release a lock held by another live process
        #[arg(long)]
        force: bool,
    },
    /// Hold the deploy lock by hand, with a reason: deploys, rollbacks and recovers exit 5
    /// with it until `lock release` (or the ttl ends)
    Acquire {
        /// Why deploys must wait (shown to everyone refused, recorded in the audit trail)
        #[arg(long, value_name = "TEXT")]
        message: String,
        /// Let the lock end by itself after this long (e.g. 2h; default: until released)
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The deploy to explain: its id, or `last` (the default)
    #[arg(value_name = "DEPLOY_ID|last")]
    pub deploy: Option<String>,
    /// A Markdown postmortem skeleton instead (the timeline as a table)
    #[arg(long)]
    pub md: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The waiting deploy (its id: in the notification, `shipgate history --kind approval`)
    #[arg(value_name = "DEPLOY_ID")]
    pub deploy_id: String,
    /// The stage it waits on
    #[arg(long, value_name = "S")]
    pub stage: String,
    /// Why, recorded with the approval (not signed)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// SSH private key to sign with (required when `[approvals] allowed_signers` is set)
    #[arg(long, env = "SHIPGATE_SIGNING_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The waiting deploy
    #[arg(value_name = "DEPLOY_ID")]
    pub deploy_id: String,
    /// The stage it waits on
    #[arg(long, value_name = "S")]
    pub stage: String,
    /// Why, recorded with the rejection and told to the deploy (not signed)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// SSH private key to sign with (required when `[approvals] allowed_signers` is set)
    #[arg(long, env = "SHIPGATE_SIGNING_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

/// Parses a humantime duration (`300s`, `5m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use forms like 300s, 5m, 1h30m)"))
}

#[cfg(test)]
mod help_tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command, subcommands included, with its path (`shipgate history verify`).
    fn all_commands(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            out.push((p.clone(), sub.clone()));
            all_commands(sub, p, out);
        }
    }

    #[test]
    fn every_option_is_described_and_every_command_teaches_by_example() {
        let mut root = Cli::command();
        root.build();
        let mut commands = Vec::new();
        all_commands(&root, "shipgate".into(), &mut commands);
        for (path, cmd) in std::iter::once(("shipgate".to_string(), root.clone())).chain(commands) {
            if cmd.get_name() == "help" {
                continue;
            }
            for arg in cmd.get_arguments() {
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "`{path}`: `{}` has no description",
                    arg.get_id()
                );
            }
            assert!(
                cmd.get_about().is_some() || path == "shipgate",
                "`{path}` has no description"
            );
        }
        for sub in root.get_subcommands().filter(|c| c.get_name() != "help") {
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Examples:\n"),
                "`{}`: no examples",
                sub.get_name()
            );
            let examples = after
                .lines()
                .filter(|l| l.starts_with("  shipgate "))
                .count();
            assert!(
                (2..=5).contains(&examples),
                "`{}`: {examples} examples",
                sub.get_name()
            );
            assert!(
                after.contains("Exit codes:"),
                "`{}`: no exit codes",
                sub.get_name()
            );
            // Global options under their own heading.
            let config = sub
                .get_arguments()
                .find(|a| a.get_id() == "config")
                .expect("the global --config");
            assert_eq!(config.get_help_heading(), Some("Global options"));
        }
    }
}
