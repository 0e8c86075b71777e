//! Deployment events (SPEC §5): the event model, CloudEvents, signing, delivery, and the
//! normalisation of Netlify, Render and GitHub webhook payloads.

use crate::config::Config;
use crate::error::Error;
use crate::ledger::Ledger;

/// start | success | failure | progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Start,
    Success,
    Failure,
    Progress,
}

/// The event object of SPEC §5.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentEvent {
    pub platform: String,
    pub event_type: EventType,
    pub status: String,
    pub timestamp: String,
    pub topics: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Builds, records (as an `event` history record) and delivers an event to the `[events]`
/// sink. `Err` when delivery failed after retries (the record is still written).
pub fn publish(
    config: &Config,
    ledger: &Ledger,
    event: &DeploymentEvent,
    deploy_id: Option<&str>,
) -> Result<(), Error> {
    let _ = (config, ledger, event, deploy_id);
    Err(Error::failed("events are not implemented yet"))
}
