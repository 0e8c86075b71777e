//! The resolved pipeline model: every default applied, every reference checked.
//!
//! Everything after loading works on these types; `raw.rs` is only the file's shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::placeholder;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file as given on the command line.
    pub path: PathBuf,
    /// Directory holding the file: commands run here and a relative `[state].dir` starts here.
    pub base_dir: PathBuf,
    pub app: AppConfig,
    pub target: TargetConfig,
    pub state: StateConfig,
    pub defaults: Defaults,
    pub stages: Vec<Stage>,
    pub gates: BTreeMap<String, Gate>,
    pub notify: NotifyConfig,
    pub events: Option<EventsConfig>,
    pub github: GithubConfig,
    /// `[[window]]`: when stages may be deployed to.
    pub windows: Vec<Window>,
    /// `[[freeze]]`: when they may not.
    pub freezes: Vec<Freeze>,
    pub policy: PolicyConfig,
    pub approvals: ApprovalsConfig,
}

/// A deploy window: on `days`, from `start` to `end` (local time in `tz`; an `end` at or before
/// `start` runs past midnight into the next day).
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub name: String,
    pub days: Vec<chrono::Weekday>,
    pub start: chrono::NaiveTime,
    pub end: chrono::NaiveTime,
    /// The IANA name.
    #[serde(rename = "tz")]
    pub tz_name: String,
    #[serde(skip)]
    pub tz: chrono_tz::Tz,
    /// The stages it governs; empty: every stage.
    pub stages: Vec<String>,
}

/// A configured freeze: no deploys to its stages in `[from, to)`.
#[derive(Debug, Clone, Serialize)]
pub struct Freeze {
    pub name: String,
    pub from: chrono::DateTime<chrono::FixedOffset>,
    pub to: chrono::DateTime<chrono::FixedOffset>,
    pub reason: Option<String>,
    /// Empty: every stage.
    pub stages: Vec<String>,
}

/// What `deploy --override-policy` needs besides a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideRequires {
    #[default]
    Reason,
    Approval,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyConfig {
    pub override_requires: OverrideRequires,
    /// How long an override waits for its approval (`override_requires = "approval"`).
    #[serde(with = "humantime_serde")]
    pub override_timeout: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            override_requires: OverrideRequires::Reason,
            override_timeout: Duration::from_secs(3600),
        }
    }
}

impl Window {
    pub fn governs(&self, stage: &str) -> bool {
        self.stages.is_empty() || self.stages.iter().any(|s| s == stage)
    }
}

impl Freeze {
    pub fn governs(&self, stage: &str) -> bool {
        self.stages.is_empty() || self.stages.iter().any(|s| s == stage)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppConfig {
    pub name: String,
    pub version: VersionSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionSource {
    GitShort,
    GitSha,
    GitDescribe,
    /// `env:VAR`: the version is the value of `VAR`.
    Env(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    Fly,
    Kubernetes,
    Exec,
}

impl AdapterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Fly => "fly",
            AdapterKind::Kubernetes => "kubernetes",
            AdapterKind::Exec => "exec",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetConfig {
    pub adapter: AdapterKind,
    /// Image template (fly and kubernetes), e.g. `registry.fly.io/app:{version}`.
    pub image: Option<String>,
    pub fly: Option<FlyConfig>,
    pub kubernetes: Option<KubernetesConfig>,
    pub exec: Option<ExecConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlyConfig {
    pub app: String,
    /// `flyctl deploy --strategy`; `None` leaves flyctl's default.
    pub strategy: Option<String>,
    #[serde(with = "humantime_serde_opt")]
    pub wait_timeout: Option<Duration>,
    /// The flyctl binary; `None` looks up `flyctl`, then `fly`, on PATH.
    pub bin: Option<String>,
    /// Extra arguments appended to `flyctl deploy`.
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KubernetesConfig {
    pub deployment: String,
    pub container: String,
    pub namespace: Option<String>,
    /// Context template, e.g. `{region}`; `None` uses the current context.
    pub context: Option<String>,
    /// The kubectl binary; `None` looks up `kubectl` on PATH.
    pub bin: Option<String>,
    /// How a stepped stage shifts traffic to the canary.
    pub traffic: Traffic,
    /// `traffic = "gateway-api"`: the HTTPRoute whose `backendRefs[].weight` is set.
    pub route: Option<String>,
    /// The stable Service the route sends to (default: the deployment's name); the canary's is
    /// `<service>-canary`.
    pub service: String,
}

/// How a stepped stage gives the new version its share (kubernetes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// The share of replicas: the canary Deployment runs ceil(share × replicas), the stable one
    /// the rest; one Service selects both.
    #[default]
    Replicas,
    /// Gateway API: the HTTPRoute's weights send the share to the canary Service.
    GatewayApi,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecConfig {
    pub deploy: Vec<String>,
    pub current: Option<Vec<String>>,
    pub rollback: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    File,
    Git,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateConfig {
    /// Resolved directory (a relative `[state].dir` is relative to the config file's directory;
    /// `--state-dir` is relative to the working directory).
    pub dir: PathBuf,
    pub store: StoreKind,
    pub remote: String,
    pub branch: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    pub on_failure: OnFailure,
    pub verify_rollback: bool,
    pub max_parallel: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    Rollback,
    RollbackStage,
    RollbackRegion,
    Continue,
}

impl OnFailure {
    pub const NAMES: &'static [&'static str] =
        &["rollback", "rollback-stage", "rollback-region", "continue"];
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Rollback => "rollback",
            OnFailure::RollbackStage => "rollback-stage",
            OnFailure::RollbackRegion => "rollback-region",
            OnFailure::Continue => "continue",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    pub regions: Vec<String>,
    pub gates: Vec<String>,
    /// Gates probed once (by their trip rule) against the version each region runs now,
    /// before the deploy changes anything: a trip blocks the deploy (exit 7).
    pub preflight: Vec<String>,
    /// The whole stage: deploy and gates, from the stage's start.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Keep watching gates this long after they first pass.
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    pub on_failure: OnFailure,
    /// 0 = every region at once.
    pub max_parallel: usize,
    pub verify_rollback: bool,
    /// The stage waits for this approval before it deploys.
    pub approval: Option<Approval>,
    /// The new version's share (percent) at each step, strictly increasing, ending at 100;
    /// empty: one step to 100 % (no canary).
    pub steps: Vec<u8>,
    /// How long the gates watch each step before the next (the last step bakes for `bake`).
    #[serde(with = "humantime_serde")]
    pub step_pause: Duration,
}

impl Stage {
    /// Whether the stage shifts the new version in steps.
    pub fn stepped(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// A stage's `approval`: how many distinct people must approve, and for how long the deploy
/// waits.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub required: u32,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A P1 reminder this often while it waits; `None`: no reminders.
    #[serde(with = "humantime_serde_opt")]
    pub remind_every: Option<Duration>,
    pub on_timeout: OnTimeout,
}

/// What a stage's approval timing out (or being rejected) does to the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// The deploy ends `blocked` (exit 7); earlier stages are left as they are.
    Stop,
    /// Every region the deploy changed is rolled back, as after a failed stage.
    Rollback,
}

impl OnTimeout {
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Stop => "stop",
            OnTimeout::Rollback => "rollback",
        }
    }
}

/// `[approvals]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApprovalsConfig {
    /// The OpenSSH allowed-signers file (resolved against the config's directory): when set,
    /// every approval and rejection must be signed by a key it lists.
    pub allowed_signers: Option<PathBuf>,
    /// Whether the deploy's own actor may approve it.
    pub self_approval: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum Severity {
    P0,
    P1,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
        }
    }
}

/// Notification priority: P0 is the most urgent. A sink with `min_priority = P2` receives
/// P0, P1 and P2.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum Priority {
    P0,
    P1,
    P2,
    P3,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
        }
    }
    /// Whether a sink configured with `min` receives a notification of this priority.
    pub fn reaches(self, min: Priority) -> bool {
        self <= min
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub name: String,
    pub kind: GateKind,
    /// Time between probes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// One probe's time limit.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Wait before the first probe.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    pub severity: Severity,
    /// Consecutive failed probes that trip the gate.
    pub failures: u32,
}

impl Gate {
    /// Whether any templated field of the gate mentions `{name}`.
    pub fn uses(&self, name: &str) -> bool {
        self.kind
            .templates()
            .iter()
            .any(|t| placeholder::mentions(t, name))
    }

    /// Whether any templated field of the gate mentions `{region}`: if not, the gate is probed
    /// once per stage and its result shared by every region.
    pub fn uses_region(&self) -> bool {
        self.uses("region")
    }

    /// Whether probing the gate needs the version a region runs: it mentions `{version}`, or
    /// `{image}` (rendered from the version).
    pub fn needs_version(&self) -> bool {
        self.uses("version") || self.uses("image")
    }

    /// The trip rule (SPEC §3), one for `deploy` and `status --check`: the gate trips after
    /// this many consecutive failed probes. `failures` as configured (the loader defaults it to
    /// 1 for P0, 3 for P1), never less than 1.
    pub fn trip_after(&self) -> u32 {
        self.failures.max(1)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum GateKind {
    Http(HttpGate),
    Dns(DnsGate),
    Tcp(TcpGate),
    Prometheus(PrometheusGate),
    Command(CommandGate),
    Judge(JudgeGate),
    Alertmanager(AlertmanagerGate),
    Json(JsonGate),
}

impl GateKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            GateKind::Http(_) => "http",
            GateKind::Dns(_) => "dns",
            GateKind::Tcp(_) => "tcp",
            GateKind::Prometheus(_) => "prometheus",
            GateKind::Command(_) => "command",
            GateKind::Judge(_) => "judge",
            GateKind::Alertmanager(_) => "alertmanager",
            GateKind::Json(_) => "json",
        }
    }
    /// The PromQL the gate sends, as (field, server URL template, query template): checked
    /// before anything changes (`config::promql`, `pipeline::queries`).
    pub fn promql(&self) -> Vec<(&'static str, &str, &str)> {
        match self {
            GateKind::Prometheus(p) => vec![("query", p.url.as_str(), p.query.as_str())],
            GateKind::Judge(j) => j
                .queries()
                .into_iter()
                .map(|(key, q)| (key, j.url.as_str(), q))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every templated string of the gate.
    pub fn templates(&self) -> Vec<&str> {
        match self {
            GateKind::Http(h) => {
                let mut v = vec![h.url.as_str()];
                for (k, val) in &h.headers {
                    v.push(k);
                    v.push(val);
                }
                if let Some(b) = &h.body_contains {
                    v.push(b);
                }
                v
            }
            GateKind::Dns(d) => {
                let mut v = vec![d.host.as_str()];
                v.extend(d.addresses.iter().map(String::as_str));
                v
            }
            GateKind::Tcp(t) => vec![t.address.as_str()],
            GateKind::Prometheus(p) => vec![p.url.as_str(), p.query.as_str()],
            GateKind::Command(c) => c.run.iter().map(String::as_str).collect(),
            GateKind::Judge(j) => {
                let mut v = vec![j.url.as_str()];
                v.extend(j.queries().into_iter().map(|(_, q)| q));
                v
            }
            GateKind::Alertmanager(a) => {
                let mut v = vec![a.url.as_str()];
                v.extend(a.matchers.iter().map(String::as_str));
                v
            }
            GateKind::Json(j) => {
                let mut v = vec![j.url.as_str()];
                for (k, val) in &j.headers {
                    v.push(k);
                    v.push(val);
                }
                if let Some(e) = &j.equals {
                    v.push(e);
                }
                v
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpGate {
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// Accepted status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub body_contains: Option<String>,
    #[serde(with = "humantime_serde_opt")]
    pub max_latency: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsGate {
    pub host: String,
    /// When not empty, every one of these addresses must be among the answers.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpGate {
    /// `host:port`.
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEmpty {
    Fail,
    Pass,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrometheusGate {
    /// Base URL of the Prometheus server; `/api/v1/query` is appended.
    pub url: String,
    pub query: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub on_empty: OnEmpty,
}

/// `type = "judge"`: the canary region against a baseline, by a statistical test (issue 15).
#[derive(Debug, Clone, Serialize)]
pub struct JudgeGate {
    /// Base URL of the Prometheus server; `/api/v1/query_range` is appended.
    pub url: String,
    pub method: JudgeMethod,
    /// `rate`: errors and requests per `step` (each with `{region}`).
    pub errors: Option<String>,
    pub requests: Option<String>,
    /// `mann-whitney`: one value per `step` (a latency, say), with `{region}`.
    pub query: Option<String>,
    pub baseline: Baseline,
    /// How far back a probe looks, clipped to the time since the region's deploy.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The range query's resolution.
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    pub direction: Direction,
    /// The worst canary/baseline ratio tolerated (1.2: 20 % worse).
    pub max_ratio: f64,
    /// In (0, 1): a probe fails when its p-value is below `1 - confidence`.
    pub confidence: f64,
    /// Requests (`rate`) or points (`mann-whitney`) each side needs before the test says
    /// anything.
    pub min_samples: u64,
    pub on_inconclusive: OnInconclusive,
}

impl JudgeGate {
    /// The gate's PromQL, named by their keys.
    pub fn queries(&self) -> Vec<(&'static str, &str)> {
        [
            ("errors", &self.errors),
            ("requests", &self.requests),
            ("query", &self.query),
        ]
        .into_iter()
        .filter_map(|(k, q)| q.as_deref().map(|q| (k, q)))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeMethod {
    /// An exact conditional binomial test on error counts.
    Rate,
    /// Mann-Whitney U on per-step values, with the Hodges-Lehmann shift.
    MannWhitney,
}

impl JudgeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeMethod::Rate => "rate",
            JudgeMethod::MannWhitney => "mann-whitney",
        }
    }
}

/// What the canary is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// The regions of the stages after the canary's: they still run the previous version.
    LaterStages,
    /// These regions.
    Regions(Vec<String>),
    /// The canary region itself, over the `window` before its deploy.
    SelfBefore,
}

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is worse (error rates, latency).
    Increase,
    /// Lower is worse (success rates, throughput).
    Decrease,
    /// Either way is worse.
    Either,
}

/// What a probe without enough samples does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInconclusive {
    /// Neither a pass nor a failure: keep probing until the stage times out.
    Wait,
    Pass,
    Fail,
}

/// Trips while an alert matching every matcher fires (active, not silenced, not inhibited).
#[derive(Debug, Clone, Serialize)]
pub struct AlertmanagerGate {
    /// Base URL of Alertmanager; `/api/v2/alerts` is appended.
    pub url: String,
    /// Alertmanager matchers (`region="{region}"`, `severity=~"critical|page"`), each sent
    /// as one `filter`.
    pub matchers: Vec<String>,
}

/// An HTTP endpoint whose JSON body is tested at a JSONPath.
#[derive(Debug, Clone, Serialize)]
pub struct JsonGate {
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// A JSONPath (RFC 9535), e.g. `$.checks.db.status`; checked while loading.
    pub path: String,
    /// The value there must be this string (or a number or boolean written so).
    pub equals: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandGate {
    pub run: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifyConfig {
    pub slack: Option<SinkConfig>,
    pub discord: Option<SinkConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkConfig {
    /// Environment variable holding the webhook URL (a secret).
    pub webhook_env: String,
    pub min_priority: Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    Cloudevents,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signing {
    StandardWebhooks,
    Github,
    None,
}

/// What `[github] deployments` mirrors into GitHub Deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentsMode {
    /// One GitHub deployment per stage (its environment rendered with `{stage}`).
    PerStage,
    /// One per region.
    PerRegion,
    #[default]
    Off,
}

/// `[github]`: GitHub Deployments mirroring what runs where.
#[derive(Debug, Clone, Serialize)]
pub struct GithubConfig {
    pub deployments: DeploymentsMode,
    /// The environment's name, with `{app}`, `{stage}` and (per region) `{region}`.
    pub environment: String,
    /// The environment's URL, same placeholders.
    pub environment_url: Option<String>,
    /// The variable holding the API token (a secret).
    pub token_env: String,
    /// `owner/name`; else `--repository`, else `GITHUB_REPOSITORY`.
    pub repository: Option<String>,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            deployments: DeploymentsMode::Off,
            environment: "production-{stage}".into(),
            environment_url: None,
            token_env: "GITHUB_TOKEN".into(),
            repository: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventsConfig {
    /// The sink URL, literal.
    pub url: Option<String>,
    /// Or the environment variable holding it.
    pub url_env: Option<String>,
    pub format: EventFormat,
    pub signing: Signing,
    pub secret_env: Option<String>,
    pub source: String,
}

impl Config {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Every region, in pipeline order.
    pub fn regions(&self) -> Vec<&str> {
        self.stages
            .iter()
            .flat_map(|s| s.regions.iter().map(String::as_str))
            .collect()
    }

    /// The regions of the stages after `region`'s, in pipeline order: while that stage
    /// deploys they still run the previous version (a judge gate's `later-stages` baseline).
    pub fn later_regions(&self, region: &str) -> Vec<String> {
        let Some(i) = self
            .stages
            .iter()
            .position(|s| s.regions.iter().any(|r| r == region))
        else {
            return Vec::new();
        };
        self.stages[i + 1..]
            .iter()
            .flat_map(|s| s.regions.iter().cloned())
            .collect()
    }

    /// The stage a region belongs to.
    pub fn stage_of(&self, region: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.regions.iter().any(|r| r == region))
    }

    /// Names of every environment variable whose value is a secret (SPEC §3): each `*_env`
    /// variable the config names, and the platform tokens.
    pub fn secret_env_names(&self) -> Vec<String> {
        let mut names: Vec<String> = crate::redact::ALWAYS_SECRET
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(s) = &self.notify.slack {
            names.push(s.webhook_env.clone());
        }
        if let Some(d) = &self.notify.discord {
            names.push(d.webhook_env.clone());
        }
        if let Some(e) = &self.events {
            names.extend(e.url_env.iter().cloned());
            names.extend(e.secret_env.iter().cloned());
        }
        if self.github.deployments != DeploymentsMode::Off {
            names.push(self.github.token_env.clone());
        }
        if let VersionSource::Env(_) = self.app.version {
            // a version is not a secret
        }
        names.sort();
        names.dedup();
        names
    }
}

/// Serde helpers printing durations the way they are written (`5m`, `300s`).
mod humantime_serde {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

mod humantime_serde_opt {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_gate(run: &[&str], severity: Severity, failures: u32) -> Gate {
        Gate {
            name: "smoke".into(),
            kind: GateKind::Command(CommandGate {
                run: run.iter().map(|s| s.to_string()).collect(),
            }),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            delay: Duration::ZERO,
            severity,
            failures,
        }
    }

    #[test]
    fn a_gate_says_which_placeholders_it_needs() {
        let g = command_gate(&["./smoke.sh", "{region}", "v={version}"], Severity::P1, 3);
        assert!(g.uses("region") && g.uses_region() && g.uses("version") && g.needs_version());
        assert!(!g.uses("stage"));
        let g = command_gate(&["./smoke.sh", "{image}"], Severity::P1, 3);
        assert!(
            !g.uses("version") && g.needs_version(),
            "{{image}} is rendered from the version"
        );
        let g = command_gate(&["./smoke.sh", "{{version}}"], Severity::P1, 3);
        assert!(!g.needs_version(), "a literal brace is not a placeholder");
    }

    #[test]
    fn the_trip_rule_is_the_configured_failures_whatever_the_severity() {
        assert_eq!(command_gate(&["x"], Severity::P0, 3).trip_after(), 3);
        assert_eq!(command_gate(&["x"], Severity::P1, 3).trip_after(), 3);
        assert_eq!(command_gate(&["x"], Severity::P0, 1).trip_after(), 1);
        assert_eq!(command_gate(&["x"], Severity::P0, 0).trip_after(), 1);
    }
}
