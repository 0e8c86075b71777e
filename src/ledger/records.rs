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
}

impl HistoryRecord {
    pub fn kind(&self) -> &'static str {
        match self {
            HistoryRecord::Deploy(_) => "deploy",
            HistoryRecord::Stage(_) => "stage",
            HistoryRecord::Gate(_) => "gate",
            HistoryRecord::Rollback(_) => "rollback",
            HistoryRecord::Event(_) => "event",
        }
    }
    pub fn deploy_id(&self) -> Option<&str> {
        match self {
            HistoryRecord::Deploy(r) => Some(&r.deploy_id),
            HistoryRecord::Stage(r) => Some(&r.deploy_id),
            HistoryRecord::Gate(r) => Some(&r.deploy_id),
            HistoryRecord::Rollback(r) => Some(&r.deploy_id),
            HistoryRecord::Event(r) => r.deploy_id.as_deref(),
        }
    }
}

/// Deploy statuses (SPEC §4).
pub mod deploy_status {
    pub const STARTED: &str = "started";
    pub const SUCCESS: &str = "success";
    pub const FAILED: &str = "failed";
    pub const ROLLED_BACK: &str = "rolled_back";
    pub const PARTIAL: &str = "partial";
    pub const ROLLBACK_FAILED: &str = "rollback_failed";
    pub const CANCELLING: &str = "cancelling";
    pub const CANCELLED: &str = "cancelled";
    /// Statuses that end a deploy; a deploy with none of these never finished ("interrupted").
    pub const FINAL: &[&str] = &[
        SUCCESS,
        FAILED,
        ROLLED_BACK,
        PARTIAL,
        ROLLBACK_FAILED,
        CANCELLED,
    ];
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployRecord {
    pub deploy_id: String,
    pub app: String,
    pub version: String,
    /// Region → the version it ran before this deploy (captured before the first change).
    pub previous_versions: BTreeMap<String, String>,
    /// See [`deploy_status`].
    pub status: String,
    /// The stages this deploy runs, in order.
    pub stages: Vec<String>,
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
}

/// A region's outcome inside a stage record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionDetail {
    /// `success` | `failed` | `rolled_back` | `rollback_failed` | `skipped`.
    pub status: String,
    pub previous_version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageRecord {
    pub deploy_id: String,
    pub stage: String,
    pub version: String,
    pub regions: Vec<String>,
    /// `success` | `failed` | `rolled_back` | `partial`.
    pub status: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_seconds: Option<f64>,
    pub regions_detail: BTreeMap<String, RegionDetail>,
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
    pub updated_at: String,
    pub regions: BTreeMap<String, RegionStatus>,
    pub last_deploy: Option<LastDeploy>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionStatus {
    pub version: String,
    pub deployed_at: String,
    pub deploy_id: String,
    /// The outcome of the last deploy or rollback that touched the region.
    pub status: String,
    pub actor: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastDeploy {
    pub deploy_id: String,
    pub version: String,
    pub status: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub actor: String,
}
