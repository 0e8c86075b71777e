//! The records of `history.jsonl` and `audit.jsonl` (SPEC §4), typed.
//!
//! Every stored line also carries `schema`, `id` (ULID), `ts` (RFC 3339 UTC) and `prev` (the
//! SHA-256 of the previous line): the ledger adds those when it appends ([`Stored`]). Readers are
//! lenient (every field but `kind` has a default) so an older or hand-edited line still reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema version written in every record.
pub const SCHEMA: u32 = 1;

/// A record as stored: the envelope fields and the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored<T> {
    pub schema: u32,
    pub id: String,
    pub ts: String,
    pub prev: String,
    #[serde(flatten)]
    pub body: T,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HistoryRecord {
    Deploy(DeployRecord),
    Stage(StageRecord),
    Gate(GateRecord),
    Rollback(RollbackRecord),
    Event(EventRecord),
    Freeze(FreezeRecord),
    Approval(ApprovalRecord),
}

impl HistoryRecord {
    pub fn kind(&self) -> &'static str {
        match self {
            HistoryRecord::Deploy(_) => "deploy",
            HistoryRecord::Stage(_) => "stage",
            HistoryRecord::Gate(_) => "gate",
            HistoryRecord::Rollback(_) => "rollback",
            HistoryRecord::Event(_) => "event",
            HistoryRecord::Freeze(_) => "freeze",
            HistoryRecord::Approval(_) => "approval",
        }
    }
    /// The platform commands a record carries (deploy, stage and rollback records), to be
    /// filled with those run since the previous such record.
    pub fn commands_mut(&mut self) -> Option<&mut Vec<CommandRun>> {
        match self {
            HistoryRecord::Deploy(r) => Some(&mut r.commands),
            HistoryRecord::Stage(r) => Some(&mut r.commands),
            HistoryRecord::Rollback(r) => Some(&mut r.commands),
            HistoryRecord::Gate(_)
            | HistoryRecord::Event(_)
            | HistoryRecord::Freeze(_)
            | HistoryRecord::Approval(_) => None,
        }
    }
    pub fn deploy_id(&self) -> Option<&str> {
        match self {
            HistoryRecord::Deploy(r) => Some(&r.deploy_id),
            HistoryRecord::Stage(r) => Some(&r.deploy_id),
            HistoryRecord::Gate(r) => Some(&r.deploy_id),
            HistoryRecord::Rollback(r) => Some(&r.deploy_id),
            HistoryRecord::Event(r) => r.deploy_id.as_deref(),
            HistoryRecord::Freeze(_) => None,
            HistoryRecord::Approval(r) => Some(&r.deploy_id),
        }
    }
}

/// Deploy statuses (SPEC §4) as the strings raw-line readers (statistics, queries) match.
/// [`DeployStatus`] is the typed form.
pub mod deploy_status {
    pub const STARTED: &str = "started";
    pub const SUCCESS: &str = "success";
    pub const FAILED: &str = "failed";
    pub const ROLLED_BACK: &str = "rolled_back";
    pub const PARTIAL: &str = "partial";
    pub const ROLLBACK_FAILED: &str = "rollback_failed";
    pub const CANCELLING: &str = "cancelling";
    pub const CANCELLED: &str = "cancelled";
    pub const BLOCKED: &str = "blocked";
    /// Statuses that end a deploy; a deploy with none of these never finished ("interrupted").
    pub const FINAL: &[&str] = &[
        SUCCESS,
        FAILED,
        ROLLED_BACK,
        PARTIAL,
        ROLLBACK_FAILED,
        CANCELLED,
        BLOCKED,
    ];
}

/// Declares a state enum whose serde names are the strings history has always held, with
/// `as_str()`, and `Other` for a name this build does not know (a newer writer's), so an old
/// binary still reads a new line.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
            /// A state this build does not know.
            #[default]
            #[serde(other, rename = "other")]
            Other,
        }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other => "other",
                }
            }
        }
        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $($text => $name::$variant,)*
                    _ => $name::Other,
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states! {
    /// Where a deploy stands (the `status` of its `deploy` records).
    DeployStatus {
        Started = "started",
        Success = "success",
        Failed = "failed",
        RolledBack = "rolled_back",
        Partial = "partial",
        RollbackFailed = "rollback_failed",
        Cancelling = "cancelling",
        Cancelled = "cancelled",
        /// Stopped before a stage by policy (a window closed, a freeze, an approval not
        /// given): the stages before it stay as they are; nothing after it was changed.
        Blocked = "blocked",
    }
}

impl DeployStatus {
    /// Whether this status ends a deploy (a deploy with none never finished: "interrupted").
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            DeployStatus::Started | DeployStatus::Cancelling | DeployStatus::Other
        )
    }
    /// Outcomes whose stages do not make a version a rollback target.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            DeployStatus::RolledBack
                | DeployStatus::RollbackFailed
                | DeployStatus::Failed
                | DeployStatus::Cancelled
                | DeployStatus::Cancelling
        )
    }
}

states! {
    /// How a stage ended (`started` when its first deploy commands are about to run).
    StageStatus {
        Started = "started",
        Success = "success",
        Failed = "failed",
        RolledBack = "rolled_back",
        Partial = "partial",
    }
}

states! {
    /// A region's state in a stage or rollback record, and in `status.json`.
    RegionState {
        /// Not touched.
        Skipped = "skipped",
        /// Its deploy command started and has not reported back: it may run the new version.
        Deploying = "deploying",
        /// Healthy on the new version.
        Success = "success",
        /// Its deploy or a gate failed; left as it is.
        Failed = "failed",
        /// Its deploy was cut short by a signal.
        Cancelled = "cancelled",
        /// Returned to its previous version (and verified, unless told not to).
        RolledBack = "rolled_back",
        /// Its rollback failed or was abandoned: what runs there is for a human to find out.
        RollbackFailed = "rollback_failed",
        /// `recover` found it already at its target and verified it there.
        Resolved = "resolved",
    }
}

impl RegionState {
    /// Whether a human must look: a rollback failed, or a cancelled deploy left it unsettled.
    pub fn needs_human(self) -> bool {
        matches!(self, RegionState::RollbackFailed | RegionState::Cancelled)
    }
}

states! {
    /// Where a region stands when a cancelled deploy stops (`cancelling` and `cancelled`
    /// records): SPEC §3 "back, mixed or unknown".
    Position {
        /// Its deploy command started: it may run the new version; a rollback is due.
        Changed = "changed",
        /// Back on its target.
        Back = "back",
        /// Some instances run one version, some another.
        Mixed = "mixed",
        /// A command was still running there: nobody knows yet.
        Unknown = "unknown",
    }
}

/// A region a cancelled deploy changed: where it stands and where it goes back to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployRegion {
    pub position: Position,
    /// The version it goes back to (captured before the deploy changed it).
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployRecord {
    pub deploy_id: String,
    pub app: String,
    pub version: String,
    /// Region → the version it ran before this deploy (captured before the first change).
    pub previous_versions: BTreeMap<String, String>,
    pub status: DeployStatus,
    /// The stages this deploy runs, in order.
    pub stages: Vec<String>,
    /// The regions those stages deploy to, in order (a first deploy has no previous versions
    /// to name them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_seconds: Option<f64>,
    pub actor: String,
    /// `github-actions` | `terminal` | `cron` | `ci`.
    pub trigger: String,
    pub run_url: Option<String>,
    pub commit: Option<String>,
    pub dirty: bool,
    pub reason: Option<String>,
    /// Regions left on an unknown or mixed version (`rollback_failed`, `cancelled`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mixed_regions: Vec<String>,
    /// Regions that failed, for `partial`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_regions: Vec<String>,
    /// `cancelling` and `cancelled`: each region the deploy changed, where it stands and its
    /// target.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub regions_detail: BTreeMap<String, DeployRegion>,
    /// Platform commands run since the previous record that carries them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandRun>,
    /// `--override-policy`: who went through what, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_override: Option<Box<PolicyOverride>>,
    /// `SHIPGATE_NOW`, when it set the clock the policy was judged by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated_now: Option<String>,
}

/// A deploy that went through a closed window or a freeze.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyOverride {
    pub actor: String,
    pub reason: String,
    /// What it went through, one line per closed stage.
    pub overridden: Vec<String>,
}

/// One platform command a run made (deploy, current read, rollback, release history), as
/// `explain` tells it: redacted argv, how it ended, and the last line it wrote on stderr.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandRun {
    /// When it started (RFC 3339 UTC).
    pub ts: String,
    /// The redacted, quoted argv.
    pub command: String,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    pub duration_seconds: f64,
    /// The last line it wrote on stderr (redacted, one line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Why it did not run to an exit: not started, timed out, cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A region's outcome inside a stage or rollback record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionDetail {
    pub status: RegionState,
    pub previous_version: Option<String>,
    /// What the region runs after the stage (or rollback), as far as anyone knows; `None`:
    /// unknown (a failed rollback, an unreadable platform).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageRecord {
    pub deploy_id: String,
    pub stage: String,
    pub version: String,
    pub regions: Vec<String>,
    pub status: StageStatus,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_seconds: Option<f64>,
    pub regions_detail: BTreeMap<String, RegionDetail>,
    /// Platform commands run since the previous record that carries them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandRun>,
    /// A `started` record of a stepped stage: the new version's share (percent) this step
    /// gives its regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateRecord {
    pub deploy_id: String,
    pub stage: String,
    pub region: String,
    pub gate: String,
    pub severity: String,
    /// `pass` | `fail` | `tripped`.
    pub result: String,
    pub detail: String,
    pub consecutive_failures: u32,
    /// Consecutive failures that trip it (1 for P0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip_after: Option<u32>,
    /// The version the probe checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Probed while verifying a rollback (the version is the one rolled back to).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub verifying: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackRecord {
    /// The deploy that rolled back, or the rollback's own id for a manual one.
    pub deploy_id: String,
    pub regions: Vec<String>,
    /// Region → the version it ran before the rollback.
    pub from_version: BTreeMap<String, String>,
    /// Region → the version it was returned to.
    pub to_version: BTreeMap<String, String>,
    /// `success` | `failed`.
    pub status: String,
    pub automatic: bool,
    pub reason: Option<String>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_seconds: Option<f64>,
    pub actor: String,
    /// Regions whose rollback command failed, with the error.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
    /// Each region's outcome (`rolled_back`, `rollback_failed`, `resolved`) and what it runs
    /// afterwards. Older records lack it: then `to_version` and `errors` say the same.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub regions_detail: BTreeMap<String, RegionDetail>,
    /// Written by `shipgate recover`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recover: bool,
    /// Platform commands run since the previous record that carries them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandRun>,
}

states! {
    /// What an `approval` record says about a stage's approval.
    ApprovalDecision {
        /// The deploy reached the stage and waits.
        Requested = "requested",
        Approved = "approved",
        Rejected = "rejected",
        /// Nobody decided within the stage's `approval.timeout`.
        TimedOut = "timed_out",
    }
}

/// One step of a stage's approval (issue 14): the deploy's request and timeout, and each
/// `shipgate approve` / `reject`. Never changes what runs where (`status.json` ignores it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalRecord {
    pub deploy_id: String,
    pub stage: String,
    pub version: String,
    pub decision: ApprovalDecision,
    /// The approver (approved, rejected), or the deploy's actor (requested, timed out).
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `requested`: how many distinct approvers the stage needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<u32>,
    /// `requested`: how long the deploy waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// `requested`: `stop` | `rollback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    /// The armored SSH signature (`ssh-keygen -Y sign -n shipgate`) over the canonical message
    /// (deploy id, stage, version, decision), when `[approvals] allowed_signers` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The allowed-signers principal the signature verified as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A published deployment event (SPEC §5) with its delivery outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventRecord {
    pub deploy_id: Option<String>,
    /// The event object of SPEC §5.
    pub event: serde_json::Value,
    /// The sink URL (redacted) or `None` when no `[events]` sink is configured.
    pub sink: Option<String>,
    pub delivered: bool,
    pub error: Option<String>,
    pub attempts: u32,
    /// The id sent with the event (CloudEvents `id`, `webhook-id`): the receiver's
    /// deduplication key. Generated before delivery, so it is not the record's own `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// `shipgate freeze start|end`: stop the line (or let it go again).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FreezeRecord {
    /// `start` | `end`.
    pub action: String,
    pub reason: Option<String>,
    pub actor: String,
    /// When a `start` ends by itself (RFC 3339 UTC); `None`: until `freeze end`.
    pub until: Option<String>,
    /// The stages it stops; empty: every stage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// When it was started or ended (RFC 3339 UTC, `SHIPGATE_NOW` when set).
    pub at: String,
    /// `SHIPGATE_NOW`, when it set the clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated_now: Option<String>,
}

/// An active stop-the-line freeze, in `status.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActiveFreeze {
    pub since: String,
    pub actor: String,
    pub reason: Option<String>,
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
}

/// One line of `audit.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    /// `P0`..`P3`.
    pub priority: String,
    pub title: String,
    pub message: String,
    pub context: serde_json::Value,
    pub deploy_id: Option<String>,
    /// Sink names that accepted it.
    pub delivered: Vec<String>,
    pub failed: Vec<SinkFailure>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkFailure {
    pub sink: String,
    pub error: String,
}

/// `status.json`: the current state, rebuilt from history when missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusFile {
    pub app: String,
    /// The `ts` of the last history record applied.
    pub updated_at: String,
    /// The `id` of the last history record applied: the file is current while it is the id of
    /// the newest deploy, stage or rollback record in history.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_record: String,
    pub regions: BTreeMap<String, RegionStatus>,
    pub last_deploy: Option<LastDeploy>,
    /// The stop-the-line freeze in force, if any (it may have passed its `until`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Box<ActiveFreeze>>,
    /// Deploys whose newest deploy record is not final (`started`, `cancelling`), oldest
    /// first, none older than the last finished deploy, at most the newest
    /// [`OPEN_KEPT`](super::status::OPEN_KEPT): a running deploy, or one a kill interrupted.
    /// Kept in the fold so `status` never scans history for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open_deploys: Vec<LastDeploy>,
    /// The reducer that wrote the file ([`super::status::FOLD`]); a file of an older one lacks
    /// what the current one keeps and is rebuilt once. 0: written before this field existed.
    #[serde(skip_serializing_if = "is_zero")]
    pub fold: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The version recorded for a region whose version nobody knows (a failed or abandoned
/// rollback): never a real version, never probed as one.
pub const UNKNOWN_VERSION: &str = "unknown";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionStatus {
    /// What it runs: the last version it was known to run, or [`UNKNOWN_VERSION`].
    pub version: String,
    pub deployed_at: String,
    pub deploy_id: String,
    /// The outcome of the last deploy or rollback that touched the region.
    pub status: RegionState,
    pub actor: String,
    /// A deploy command started here and never reported back: the region may run this
    /// version (until the deploy's stage record, `recover` or a later deploy settles it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub may_run: Option<String>,
    /// A stepped stage in progress: the share (percent) of the region `may_run` has reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
}

impl RegionStatus {
    /// Whether a human must look (listed under "needs a human"; a problem for `--check`).
    pub fn needs_human(&self) -> bool {
        self.status.needs_human() || self.version == UNKNOWN_VERSION
    }
    /// The version it is known to run, if any.
    pub fn known_version(&self) -> Option<&str> {
        Some(self.version.as_str()).filter(|v| !v.is_empty() && *v != UNKNOWN_VERSION)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastDeploy {
    pub deploy_id: String,
    pub version: String,
    pub status: DeployStatus,
    pub start_time: String,
    pub end_time: Option<String>,
    pub actor: String,
}
