//! The file's shape as serde reads it, with spans for error messages. Nothing here is trusted:
//! `load.rs` checks it and builds the model.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub app: Option<Spanned<RawApp>>,
    pub target: Option<Spanned<RawTarget>>,
    pub state: Option<Spanned<RawState>>,
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub stage: Vec<Spanned<RawStage>>,
    #[serde(default)]
    pub gate: BTreeMap<S, Spanned<RawGate>>,
    pub notify: Option<RawNotify>,
    pub events: Option<Spanned<RawEvents>>,
    pub github: Option<Spanned<RawGithub>>,
    #[serde(default)]
    pub window: Vec<Spanned<RawWindow>>,
    #[serde(default)]
    pub freeze: Vec<Spanned<RawFreeze>>,
    pub policy: Option<Spanned<RawPolicy>>,
    pub approvals: Option<Spanned<RawApprovals>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub name: Option<S>,
    pub days: Option<Spanned<Vec<S>>>,
    pub start: Option<S>,
    pub end: Option<S>,
    pub tz: Option<S>,
    pub stages: Option<Spanned<Vec<S>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFreeze {
    pub name: Option<S>,
    pub from: Option<S>,
    pub to: Option<S>,
    pub reason: Option<S>,
    pub stages: Option<Spanned<Vec<S>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub override_requires: Option<S>,
    pub override_timeout: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub name: Option<S>,
    pub version: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub adapter: Option<S>,
    pub image: Option<S>,
    pub fly: Option<Spanned<RawFly>>,
    pub kubernetes: Option<Spanned<RawKubernetes>>,
    pub exec: Option<Spanned<RawExec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFly {
    pub app: Option<S>,
    pub strategy: Option<S>,
    pub wait_timeout: Option<S>,
    pub bin: Option<S>,
    #[serde(default)]
    pub args: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetes {
    pub deployment: Option<S>,
    pub container: Option<S>,
    pub namespace: Option<S>,
    pub context: Option<S>,
    pub bin: Option<S>,
    pub traffic: Option<S>,
    pub route: Option<S>,
    pub service: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    pub deploy: Option<Spanned<Vec<S>>>,
    pub current: Option<Spanned<Vec<S>>>,
    pub rollback: Option<Spanned<Vec<S>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub dir: Option<S>,
    pub store: Option<S>,
    pub remote: Option<S>,
    pub branch: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub timeout: Option<S>,
    pub bake: Option<S>,
    pub command_timeout: Option<S>,
    pub on_failure: Option<S>,
    pub verify_rollback: Option<bool>,
    pub max_parallel: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub name: Option<S>,
    pub regions: Option<Spanned<Vec<S>>>,
    #[serde(default)]
    pub gates: Vec<S>,
    /// Gates probed against the current version before anything changes.
    #[serde(default)]
    pub preflight: Vec<S>,
    pub timeout: Option<S>,
    pub bake: Option<S>,
    pub command_timeout: Option<S>,
    pub on_failure: Option<S>,
    pub max_parallel: Option<Spanned<i64>>,
    pub verify_rollback: Option<bool>,
    pub approval: Option<Spanned<RawApproval>>,
    pub steps: Option<Spanned<Vec<Spanned<i64>>>>,
    pub step_pause: Option<S>,
}

/// `approval = { required, timeout, remind_every, on_timeout }` on a `[[stage]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    pub required: Option<Spanned<i64>>,
    pub timeout: Option<S>,
    pub remind_every: Option<S>,
    pub on_timeout: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    pub allowed_signers: Option<S>,
    pub self_approval: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    #[serde(rename = "type")]
    pub kind: Option<S>,
    // common
    pub interval: Option<S>,
    pub timeout: Option<S>,
    pub delay: Option<S>,
    pub severity: Option<S>,
    pub failures: Option<Spanned<i64>>,
    // http
    pub url: Option<S>,
    pub method: Option<S>,
    pub headers: Option<Spanned<BTreeMap<S, S>>>,
    pub expect_status: Option<Spanned<Vec<Spanned<i64>>>>,
    pub body_contains: Option<S>,
    pub max_latency: Option<S>,
    // dns
    pub host: Option<S>,
    pub addresses: Option<Spanned<Vec<S>>>,
    // tcp
    pub address: Option<S>,
    // prometheus
    pub query: Option<S>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub on_empty: Option<S>,
    // command
    pub run: Option<Spanned<Vec<S>>>,
    // judge (also url, method, query)
    pub errors: Option<S>,
    pub requests: Option<S>,
    /// `"later-stages"`, `"self-before"` or a list of regions.
    pub baseline: Option<Spanned<toml::Value>>,
    pub window: Option<S>,
    pub step: Option<S>,
    pub direction: Option<S>,
    pub max_ratio: Option<Spanned<f64>>,
    pub confidence: Option<Spanned<f64>>,
    pub min_samples: Option<Spanned<i64>>,
    pub on_inconclusive: Option<S>,
    // alertmanager
    pub matchers: Option<Spanned<Vec<S>>>,
    // json
    pub path: Option<S>,
    pub equals: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub slack: Option<Spanned<RawSink>>,
    pub discord: Option<Spanned<RawSink>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub webhook_env: Option<S>,
    pub min_priority: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGithub {
    pub deployments: Option<S>,
    pub environment: Option<S>,
    pub environment_url: Option<S>,
    pub token_env: Option<S>,
    pub repository: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub url: Option<S>,
    pub url_env: Option<S>,
    pub format: Option<S>,
    pub signing: Option<S>,
    pub secret_env: Option<S>,
    pub source: Option<S>,
}
