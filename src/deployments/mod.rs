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
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
}

/// A call to make, with the deploy it is about.
type Call = (Op, Option<String>);

/// What the worker and the waiting command share: the records not yet translated, the calls
/// not yet made and the one being made — so that a wait cut short records each of them as not
/// made, whatever the worker is stuck in.
struct Shared {
    records: Mutex<mpsc::Receiver<HistoryRecord>>,
    state: Mutex<State>,
}

struct State {
    mirror: Mirror,
    pending: std::collections::VecDeque<Call>,
    /// The call being made.
    in_flight: Option<Call>,
    abandoned: bool,
    warnings: Vec<String>,
}

impl Shared {
    /// Translates the records that arrived into calls (all of them when `wait` is zero; else
    /// waits up to `wait` for one). False once the ledger stopped sending and all were read.
    fn take_records(&self, ledger: &Ledger, wait: Duration) -> bool {
        let rx = lock(&self.records);
        let mut connected = true;
        let mut first = if wait.is_zero() {
            None
        } else {
            match rx.recv_timeout(wait) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        };
        loop {
            let record = match first.take() {
                Some(r) => r,
                None => match rx.try_recv() {
                    Ok(r) => r,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        connected = false;
                        break;
                    }
                },
            };
            let deploy_id = record_deploy_id(&record);
            let commit_of = |version: &str| commit_of(ledger, version);
            let mut state = lock(&self.state);
            let ops = state.mirror.observe(&record, &commit_of);
            state
                .pending
                .extend(ops.into_iter().map(|op| (op, deploy_id.clone())));
        }
        connected
    }
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
            ledger: ledger.clone(),
            log_url: invocation.run_url.clone(),
            ids: Default::default(),
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            records: Mutex::new(rx),
            state: Mutex::new(State {
                mirror,
                pending: Default::default(),
                in_flight: None,
                abandoned: false,
                warnings: Vec::new(),
            }),
        });
        let handle = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("github-deployments".into())
                .spawn(move || worker.run(&shared))
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
                self.abandon();
                break;
            }
            if start.elapsed() > Duration::from_secs(1) {
                if let Some(f) = on_waiting.take() {
                    f("waiting for GitHub Deployments to be updated (Ctrl-C to stop waiting)…");
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut warnings = std::mem::take(&mut lock(&self.shared.state).warnings);
        if self.handle.is_finished() {
            if let Err(panic) = self.handle.join() {
                warnings.push(format!(
                    "the GitHub Deployments thread failed ({}): the calls it had not made are not \
                     recorded",
                    panic_text(&panic)
                ));
            }
        }
        warnings
    }

    /// Records every call not made yet (the one in flight, those queued, those of records not
    /// yet translated) as not made, on this thread: the worker may be stuck in a request.
    fn abandon(&self) {
        {
            lock(&self.shared.state).abandoned = true;
        }
        self.shared.take_records(&self.ledger, Duration::ZERO);
        let calls: Vec<Call> = {
            let mut state = lock(&self.shared.state);
            let mut calls: Vec<Call> = state.in_flight.take().into_iter().collect();
            calls.extend(state.pending.drain(..));
            calls
        };
        let mut state_warnings = Vec::new();
        for (op, deploy_id) in &calls {
            if let Err(e) = audit(
                &self.ledger,
                op,
                deploy_id.clone(),
                None,
                Err(ABANDONED.into()),
            ) {
                state_warnings.push(e);
            }
        }
        if !calls.is_empty() {
            state_warnings.push(format!(
                "{} GitHub Deployments call(s) not made: shipgate was interrupted (recorded in \
                 the audit trail)",
                calls.len()
            ));
        }
        lock(&self.shared.state).warnings.extend(state_warnings);
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

struct Worker {
    client: api::Client,
    ledger: Ledger,
    log_url: Option<String>,
    /// Environment → the deployment this run made there last.
    ids: std::collections::BTreeMap<String, u64>,
}

impl Worker {
    fn run(mut self, shared: &Shared) {
        let mut connected = true;
        loop {
            let next = {
                let mut state = lock(&shared.state);
                if state.abandoned {
                    return;
                }
                let next = state.pending.pop_front();
                state.in_flight = next.clone();
                next
            };
            let Some((op, deploy_id)) = next else {
                if !connected {
                    return;
                }
                connected = shared.take_records(&self.ledger, Duration::from_millis(20));
                continue;
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.make(&op)))
                .unwrap_or_else(|p| Err(format!("failed: {}", panic_text(&p))));
            {
                let mut state = lock(&shared.state);
                // Taken: the command recorded it as not made already.
                if state.in_flight.take().is_none() {
                    return;
                }
                if let Err(e) = &result {
                    state.warnings.push(crate::redact::redact(&format!(
                        "GitHub deployment `{}` not updated: {e}",
                        op.environment()
                    )));
                }
            }
            let id = self.ids.get(op.environment()).copied();
            if let Err(e) = audit(&self.ledger, &op, deploy_id, id, result) {
                lock(&shared.state).warnings.push(e);
            }
        }
    }

    /// Makes one call; `Ok(false)` when there was nothing to update.
    fn make(&mut self, op: &Op) -> Result<bool, String> {
        match op {
            Op::Create {
                environment,
                git_ref,
                other_refs,
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
                // GitHub answers 422 for a ref it does not know: try the next candidate.
                let mut refs = std::iter::once(git_ref).chain(other_refs).peekable();
                let id = loop {
                    let Some(r) = refs.next() else {
                        return Err("no ref to create the deployment on".into());
                    };
                    match self.client.create(&api::NewDeployment {
                        git_ref: r,
                        environment,
                        description: &description,
                        payload: payload.clone(),
                    }) {
                        Err(e) if e.starts_with("HTTP 422") && refs.peek().is_some() => continue,
                        other => break other?,
                    }
                };
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
        HistoryRecord::Freeze(_) => return None,
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
