//! GitHub Deployments (`[github] deployments`): the repository's Environments page shows what
//! history says runs where.
//!
//! The mirror follows history, not the engine: every history record a run appends is also
//! sent here ([`Ledger::tap_history`]), turned into REST calls by [`mirror::Mirror`] and made
//! on a thread of its own, in order (a status needs the id of the deployment created before
//! it), off the deploy's path — a slow or refusing API never delays a deploy, and never changes
//! its outcome. Every call is an audit record (`github` delivered or failed). The command waits
//! for the calls after its outcome is shown, as it waits for notifications; a second signal
//! ends the wait and records what was not made as not made.

pub mod api;
pub mod mirror;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, DeploymentsMode};
use crate::ledger::records::{AuditRecord, HistoryRecord, SinkFailure};
use crate::ledger::Ledger;
use crate::pipeline::actor::Invocation;
use mirror::{Mirror, Op};

/// Why a call given up by [`Deployments::finish_or_abandon`] was not made.
const ABANDONED: &str = "not made: shipgate was interrupted while it was updating GitHub";

/// A running mirror.
pub struct Deployments {
    ledger: Ledger,
    shared: Arc<Mutex<Shared>>,
    handle: JoinHandle<()>,
}

/// What the worker and the waiting command share.
#[derive(Default)]
struct Shared {
    /// The call being made, to record as not made should the wait be cut short.
    in_flight: Option<(Op, Option<String>)>,
    abandoned: bool,
    warnings: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Deployments {
    /// Starts mirroring `ledger`'s history when `[github] deployments` is on. `Err` is a
    /// warning: on, but without a token or a repository, so nothing is mirrored.
    pub fn start(
        config: &Config,
        ledger: &Ledger,
        invocation: &Invocation,
        repository: Option<&str>,
    ) -> Result<Option<Deployments>, String> {
        if config.github.deployments == DeploymentsMode::Off {
            return Ok(None);
        }
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let token_env = &config.github.token_env;
        let Some(token) = var(token_env) else {
            return Err(format!(
                "[github] deployments is on but `{token_env}` is not set: GitHub Deployments are \
                 not updated"
            ));
        };
        crate::redact::add_secret(token.trim());
        let repository = repository
            .map(str::to_string)
            .or_else(|| config.github.repository.clone())
            .or_else(|| var("GITHUB_REPOSITORY"));
        let Some(repository) = repository else {
            return Err(
                "[github] deployments is on but no repository is known (set `[github] \
                 repository`, pass --repository or GITHUB_REPOSITORY): GitHub Deployments are \
                 not updated"
                    .into(),
            );
        };
        if !crate::config::valid_repository(&repository) {
            return Err(format!(
                "`{}` is not a GitHub repository (owner/name): GitHub Deployments are not updated",
                crate::output::neutral::inline(&repository)
            ));
        }
        let client = api::Client {
            api: var("GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_string(),
            repository,
            token: token.trim().to_string(),
            policy: crate::notify::delivery::RetryPolicy::from_lookup(&|k| std::env::var(k).ok()),
        };
        let mirror = Mirror::new(config, invocation.commit.clone());
        let worker = Worker {
            client,
            mirror,
            ledger: ledger.clone(),
            log_url: invocation.run_url.clone(),
            ids: Default::default(),
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let handle = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("github-deployments".into())
                .spawn(move || worker.run(rx, &shared))
                .map_err(|e| format!("cannot start the GitHub Deployments thread: {e}"))?
        };
        ledger.tap_history(Some(tx));
        Ok(Some(Deployments {
            ledger: ledger.clone(),
            shared,
            handle,
        }))
    }

    /// Stops following history and waits for the calls still to make. `on_waiting` is told
    /// once when that takes more than a moment; when `abandon()` says so, what is not made yet
    /// is recorded as not made and the wait ends. Returns the warnings (calls that failed).
    pub fn finish_or_abandon(
        self,
        on_waiting: impl FnOnce(&str),
        abandon: impl Fn() -> bool,
    ) -> Vec<String> {
        self.ledger.tap_history(None);
        let start = Instant::now();
        let mut on_waiting = Some(on_waiting);
        while !self.handle.is_finished() {
            if abandon() {
                let in_flight = {
                    let mut shared = lock(&self.shared);
                    shared.abandoned = true;
                    shared.in_flight.take()
                };
                if let Some((op, deploy_id)) = in_flight {
                    let _ = audit(&self.ledger, &op, deploy_id, None, Err(ABANDONED.into()));
                }
                // The worker records the rest as not made, without calling anyone.
                let until = Instant::now() + Duration::from_secs(2);
                while !self.handle.is_finished() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(1) {
                if let Some(f) = on_waiting.take() {
                    f("waiting for GitHub Deployments to be updated (Ctrl-C to stop waiting)…");
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let warnings = std::mem::take(&mut lock(&self.shared).warnings);
        warnings
    }
}

struct Worker {
    client: api::Client,
    mirror: Mirror,
    ledger: Ledger,
    log_url: Option<String>,
    /// Environment → the deployment this run made there last.
    ids: std::collections::BTreeMap<String, u64>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<HistoryRecord>, shared: &Mutex<Shared>) {
        for record in rx {
            let deploy_id = record_deploy_id(&record);
            let ledger = self.ledger.clone();
            let commit_of = |version: &str| commit_of(&ledger, version);
            for op in self.mirror.observe(&record, &commit_of) {
                {
                    let mut s = lock(shared);
                    if s.abandoned {
                        drop(s);
                        let _ = audit(
                            &self.ledger,
                            &op,
                            deploy_id.clone(),
                            None,
                            Err(ABANDONED.into()),
                        );
                        continue;
                    }
                    s.in_flight = Some((op.clone(), deploy_id.clone()));
                }
                let result = self.make(&op);
                let mut s = lock(shared);
                // Taken: the command recorded it as not made already.
                if s.in_flight.take().is_none() {
                    continue;
                }
                if let Err(e) = &result {
                    s.warnings.push(crate::redact::redact(&format!(
                        "GitHub deployment `{}` not updated: {e}",
                        op.environment()
                    )));
                }
                drop(s);
                let id = self.ids.get(op.environment()).copied();
                if let Err(e) = audit(&self.ledger, &op, deploy_id.clone(), id, result) {
                    lock(shared).warnings.push(e);
                }
            }
        }
    }

    /// Makes one call; `Ok(false)` when there was nothing to update.
    fn make(&mut self, op: &Op) -> Result<bool, String> {
        match op {
            Op::Create {
                environment,
                git_ref,
                version,
                regions,
                deploy_id,
                stage,
                restored,
            } => {
                let payload = serde_json::json!({
                    "deploy_id": deploy_id,
                    "version": version,
                    "regions": regions,
                    "stage": stage,
                    "restored": restored,
                });
                let description = if *restored {
                    format!("{version} restored by shipgate")
                } else {
                    format!("{version} by shipgate")
                };
                let id = self.client.create(&api::NewDeployment {
                    git_ref,
                    environment,
                    description: &description,
                    payload,
                })?;
                self.ids.insert(environment.clone(), id);
                Ok(true)
            }
            Op::Status {
                environment,
                state,
                description,
                of_version,
                environment_url,
            } => {
                let id = match (self.ids.get(environment), of_version) {
                    (Some(id), _) => *id,
                    (None, Some(version)) => match self.client.latest(environment, version)? {
                        Some(id) => id,
                        None => return Ok(false),
                    },
                    (None, None) => return Ok(false),
                };
                self.client.status(
                    id,
                    *state,
                    description,
                    self.log_url.as_deref(),
                    environment_url.as_deref(),
                )?;
                Ok(true)
            }
        }
    }
}

fn record_deploy_id(record: &HistoryRecord) -> Option<String> {
    let id = match record {
        HistoryRecord::Deploy(d) => &d.deploy_id,
        HistoryRecord::Stage(s) => &s.deploy_id,
        HistoryRecord::Rollback(r) => &r.deploy_id,
        HistoryRecord::Gate(g) => &g.deploy_id,
        HistoryRecord::Event(e) => return e.deploy_id.clone(),
        HistoryRecord::Approval(a) => &a.deploy_id,
    };
    (!id.is_empty()).then(|| id.clone())
}

/// The commit the newest deploy of `version` recorded.
fn commit_of(ledger: &Ledger, version: &str) -> Option<String> {
    let mut warnings = Vec::new();
    ledger
        .history_rev(&mut warnings)
        .ok()?
        .find_map(|r| match r.body {
            HistoryRecord::Deploy(d) if d.version == version && d.commit.is_some() => d.commit,
            _ => None,
        })
}

/// Appends the audit record of one call. `Err` is a warning: it could not be written.
fn audit(
    ledger: &Ledger,
    op: &Op,
    deploy_id: Option<String>,
    deployment_id: Option<u64>,
    result: Result<bool, String>,
) -> Result<(), String> {
    let (title, message, mut context) = match op {
        Op::Create {
            environment,
            version,
            regions,
            git_ref,
            restored,
            ..
        } => (
            format!("GitHub deployment of {version} to {environment}"),
            if *restored {
                format!("{version} restored in {}", regions.join(", "))
            } else {
                format!("{version} deploying to {}", regions.join(", "))
            },
            serde_json::json!({
                "environment": environment, "version": version, "regions": regions,
                "ref": git_ref, "restored": restored,
            }),
        ),
        Op::Status {
            environment,
            state,
            description,
            ..
        } => (
            format!("GitHub deployment {environment}: {}", state.as_str()),
            api::truncate(description),
            serde_json::json!({"environment": environment, "state": state.as_str()}),
        ),
    };
    if let Some(id) = deployment_id {
        context["deployment_id"] = serde_json::json!(id);
    }
    let (delivered, failed) = match result {
        Ok(true) => (vec!["github".to_string()], Vec::new()),
        Ok(false) => {
            context["skipped"] =
                serde_json::json!("no deployment of this version by shipgate in this environment");
            (Vec::new(), Vec::new())
        }
        Err(error) => (
            Vec::new(),
            vec![SinkFailure {
                sink: "github".into(),
                error: crate::redact::redact(&error),
            }],
        ),
    };
    let record = AuditRecord {
        priority: "P3".into(),
        title,
        message,
        context: serde_json::json!({ "github_deployment": context }),
        deploy_id,
        delivered,
        failed,
    };
    ledger
        .append_audit(&record)
        .map(|_| ())
        .map_err(|e| format!("cannot record a GitHub Deployments call in audit.jsonl: {e}"))
}
