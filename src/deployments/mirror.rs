//! From history records to GitHub Deployments calls: pure, so every sequence is unit-tested.
//!
//! | record | what the Environments page gets |
//! | ------ | ------------------------------- |
//! | `stage` started | a deployment of the version per environment (stage or region), `in_progress` |
//! | `stage` ended | `success`, or `failure` with the reason (an environment a rollback already settled is left alone) |
//! | `rollback` | the environment's deployment `failure` "rolled back: …" (or `error` when the rollback failed), then a deployment of the restored version, `success` |
//! | `deploy` ended | an environment still open (a cancel, a stop) `error` or `failure` with the outcome |
//!
//! A manual `rollback` or `recover` runs without a deploy: the deployment it marks is the
//! environment's latest one shipgate created, and only when that one carries the version being
//! rolled back from (so the success of an earlier restore is never marked failed).

use std::collections::BTreeMap;

use crate::config::placeholder::Vars;
use crate::config::{Config, DeploymentsMode};
use crate::ledger::records::*;

/// The states shipgate posts (GitHub's `deployment_status.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    InProgress,
    Success,
    Failure,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::InProgress => "in_progress",
            State::Success => "success",
            State::Failure => "failure",
            State::Error => "error",
        }
    }
}

/// One call to make, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create a deployment of `version` in `environment`; later [`Op::Status`] of the same
    /// environment go to it.
    Create {
        environment: String,
        git_ref: String,
        /// Refs to try, in order, when GitHub does not know `git_ref` (422).
        other_refs: Vec<String>,
        version: String,
        regions: Vec<String>,
        deploy_id: String,
        stage: Option<String>,
        /// A deployment of the version a rollback restored.
        restored: bool,
    },
    /// Post a status to the environment's deployment: the one this run created, or else its
    /// latest shipgate deployment when that one is of `of_version`.
    Status {
        environment: String,
        state: State,
        description: String,
        of_version: Option<String>,
        /// `[github] environment_url`, rendered.
        environment_url: Option<String>,
    },
}

impl Op {
    pub fn environment(&self) -> &str {
        match self {
            Op::Create { environment, .. } | Op::Status { environment, .. } => environment,
        }
    }
}

/// The deploy being mirrored.
#[derive(Debug, Clone)]
struct Deploy {
    deploy_id: String,
    version: String,
    commit: Option<String>,
}

/// Translates history records into [`Op`]s.
pub struct Mirror {
    mode: DeploymentsMode,
    app: String,
    environment: String,
    environment_url: Option<String>,
    /// Region → its stage, in pipeline order.
    stage_of: BTreeMap<String, String>,
    /// The ref a deployment is created on when history knows no commit for its version.
    fallback_ref: Option<String>,
    deploy: Option<Deploy>,
    /// Environments whose deployment this run created and has not settled yet.
    open: BTreeMap<String, Vec<String>>,
}

impl Mirror {
    pub fn new(config: &Config, fallback_ref: Option<String>) -> Mirror {
        let stage_of = config
            .stages
            .iter()
            .flat_map(|s| s.regions.iter().map(|r| (r.clone(), s.name.clone())))
            .collect();
        Mirror {
            mode: config.github.deployments,
            app: config.app.name.clone(),
            environment: config.github.environment.clone(),
            environment_url: config.github.environment_url.clone(),
            stage_of,
            fallback_ref,
            deploy: None,
            open: BTreeMap::new(),
        }
    }

    /// The environment `region` is mirrored in.
    pub fn environment_of(&self, region: &str) -> String {
        self.vars(region).render(&self.environment)
    }

    /// The environment URL of the environment `region` is mirrored in.
    fn url_of(&self, regions: &[String]) -> Option<String> {
        let template = self.environment_url.as_ref()?;
        Some(self.vars(regions.first()?).render(template))
    }

    fn vars(&self, region: &str) -> Vars {
        let mut vars = Vars::new();
        vars.set("app", self.app.clone());
        if let Some(stage) = self.stage_of.get(region) {
            vars.set("stage", stage.clone());
        }
        if self.mode == DeploymentsMode::PerRegion {
            vars.set("region", region);
        }
        vars
    }

    /// `regions` grouped by environment, in the order given.
    fn group<'r>(
        &self,
        regions: impl IntoIterator<Item = &'r String>,
    ) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in regions {
            let env = self.environment_of(r);
            match groups.iter_mut().find(|(e, _)| *e == env) {
                Some((_, rs)) => rs.push(r.clone()),
                None => groups.push((env, vec![r.clone()])),
            }
        }
        groups
    }

    /// The calls `record` asks for. `commit_of(version)`: the commit history says deployed it.
    pub fn observe(
        &mut self,
        record: &HistoryRecord,
        commit_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Op> {
        match record {
            HistoryRecord::Deploy(d) if d.status == DeployStatus::Started => {
                self.deploy = Some(Deploy {
                    deploy_id: d.deploy_id.clone(),
                    version: d.version.clone(),
                    commit: d.commit.clone(),
                });
                Vec::new()
            }
            HistoryRecord::Deploy(d) if d.status.is_final() => self.deploy_ended(d),
            HistoryRecord::Stage(s) if s.status == StageStatus::Started => self.stage_started(s),
            HistoryRecord::Stage(s) => self.stage_ended(s),
            HistoryRecord::Rollback(r) => self.rolled_back(r, commit_of),
            _ => Vec::new(),
        }
    }

    fn stage_started(&mut self, s: &StageRecord) -> Vec<Op> {
        let Some(deploy) = self.deploy.clone() else {
            return Vec::new();
        };
        let git_ref = deploy
            .commit
            .clone()
            .or_else(|| self.fallback_ref.clone())
            .unwrap_or_else(|| deploy.version.clone());
        let mut ops = Vec::new();
        for (environment, regions) in self.group(&s.regions) {
            self.open.insert(environment.clone(), regions.clone());
            ops.push(Op::Create {
                environment: environment.clone(),
                git_ref: git_ref.clone(),
                other_refs: others(&git_ref, [Some(deploy.version.clone())]),
                version: deploy.version.clone(),
                regions: regions.clone(),
                deploy_id: deploy.deploy_id.clone(),
                stage: Some(s.stage.clone()),
                restored: false,
            });
            ops.push(Op::Status {
                environment,
                state: State::InProgress,
                description: format!("deploying {} to {}", deploy.version, regions.join(", ")),
                of_version: None,
                environment_url: self.url_of(&regions),
            });
        }
        ops
    }

    fn stage_ended(&mut self, s: &StageRecord) -> Vec<Op> {
        let mut ops = Vec::new();
        for (environment, regions) in self.group(&s.regions) {
            if self.open.remove(&environment).is_none() {
                continue;
            }
            let (state, description) = settle(&s.version, &regions, &s.regions_detail);
            ops.push(Op::Status {
                environment,
                state,
                description,
                of_version: None,
                environment_url: self.url_of(&regions),
            });
        }
        ops
    }

    fn rolled_back(
        &mut self,
        r: &RollbackRecord,
        commit_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Op> {
        let reason = r.reason.clone().unwrap_or_else(|| "no reason given".into());
        let mut ops = Vec::new();
        for (environment, regions) in self.group(&r.regions) {
            let detail = |region: &String| r.regions_detail.get(region);
            let failed: Vec<&String> = regions
                .iter()
                .filter(|g| {
                    r.errors.contains_key(*g)
                        || detail(g).is_some_and(|d| d.status == RegionState::RollbackFailed)
                })
                .collect();
            let from = regions
                .iter()
                .find_map(|g| r.from_version.get(g))
                .cloned()
                .or_else(|| self.deploy.as_ref().map(|d| d.version.clone()));
            let created_here = self.open.remove(&environment).is_some();
            let (state, description) = if failed.is_empty() {
                (State::Failure, format!("rolled back: {reason}"))
            } else {
                let first = failed[0];
                let why = r
                    .errors
                    .get(first)
                    .cloned()
                    .or_else(|| detail(first).and_then(|d| d.error.clone()))
                    .unwrap_or_default();
                (
                    State::Error,
                    format!(
                        "rollback failed in {}: {why}",
                        failed
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            };
            ops.push(Op::Status {
                environment: environment.clone(),
                state,
                description,
                of_version: if created_here { None } else { from.clone() },
                environment_url: self.url_of(&regions),
            });
            // What runs now, where the rollback (or recover) settled it.
            let mut restored: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for g in &regions {
                if failed.contains(&g) {
                    continue;
                }
                let settled = match detail(g) {
                    Some(d) => matches!(d.status, RegionState::RolledBack | RegionState::Resolved),
                    None => r.status == "success",
                };
                let version = detail(g)
                    .and_then(|d| d.version.clone())
                    .or_else(|| r.to_version.get(g).cloned());
                if let (true, Some(v)) = (settled, version) {
                    restored.entry(v).or_default().push(g.clone());
                }
            }
            for (version, regions) in restored {
                // What history says deployed it, else the version itself (a tag, a commit),
                // else this run's commit.
                let git_ref = commit_of(&version).unwrap_or_else(|| version.clone());
                let other_refs =
                    others(&git_ref, [Some(version.clone()), self.fallback_ref.clone()]);
                ops.push(Op::Create {
                    environment: environment.clone(),
                    git_ref,
                    other_refs,
                    version: version.clone(),
                    regions: regions.clone(),
                    deploy_id: r.deploy_id.clone(),
                    stage: None,
                    restored: true,
                });
                ops.push(Op::Status {
                    environment: environment.clone(),
                    state: State::Success,
                    description: format!(
                        "restored {version} in {}{}",
                        regions.join(", "),
                        from.as_ref()
                            .map(|f| format!(" (rolled back from {f})"))
                            .unwrap_or_default()
                    ),
                    of_version: None,
                    environment_url: self.url_of(&regions),
                });
            }
        }
        ops
    }

    fn deploy_ended(&mut self, d: &DeployRecord) -> Vec<Op> {
        let state = match d.status {
            DeployStatus::Success => State::Success,
            DeployStatus::Cancelled | DeployStatus::RollbackFailed => State::Error,
            _ => State::Failure,
        };
        let reason = d.reason.clone().unwrap_or_default();
        let description = match (d.status, reason.is_empty()) {
            (DeployStatus::Success, _) => format!("{} healthy", d.version),
            (status, true) => status.as_str().replace('_', " "),
            (status, false) => format!("{}: {reason}", status.as_str().replace('_', " ")),
        };
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|(environment, regions)| Op::Status {
                environment,
                state,
                description: description.clone(),
                of_version: None,
                environment_url: self.url_of(&regions),
            })
            .collect()
    }
}

/// The candidates after `first`, without repeats.
fn others<const N: usize>(first: &str, candidates: [Option<String>; N]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in candidates.into_iter().flatten() {
        if c != first && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A stage's end in the environment of `regions`: success when each is healthy, else the
/// first problem.
fn settle(
    version: &str,
    regions: &[String],
    detail: &BTreeMap<String, RegionDetail>,
) -> (State, String) {
    let problem = regions.iter().find_map(|r| {
        let d = detail.get(r)?;
        let why = d.error.clone().unwrap_or_default();
        let (state, what) = match d.status {
            RegionState::Success | RegionState::Skipped | RegionState::Resolved => return None,
            RegionState::RolledBack => (State::Failure, "rolled back"),
            RegionState::Cancelled => (State::Error, "cancelled"),
            RegionState::RollbackFailed => (State::Error, "rollback failed"),
            _ => (State::Failure, "failed"),
        };
        let text = if why.is_empty() {
            format!("{what} in {r}")
        } else {
            format!("{what} in {r}: {why}")
        };
        Some((state, text))
    });
    problem.unwrap_or_else(|| {
        (
            State::Success,
            format!("{version} healthy in {}", regions.join(", ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[app]
name = "web"
[target]
adapter = "exec"
[target.exec]
deploy = ["true"]
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
[[stage]]
name = "primary"
regions = ["ewr"]
[github]
deployments = "{mode}"
"#
            ),
        )
        .unwrap();
        crate::config::load(&path, None).unwrap()
    }

    fn started(version: &str) -> HistoryRecord {
        HistoryRecord::Deploy(DeployRecord {
            deploy_id: "D1".into(),
            version: version.into(),
            status: DeployStatus::Started,
            commit: Some("c0ffee".into()),
            ..Default::default()
        })
    }

    fn stage(
        name: &str,
        regions: &[&str],
        status: StageStatus,
        states: &[RegionState],
    ) -> HistoryRecord {
        HistoryRecord::Stage(StageRecord {
            deploy_id: "D1".into(),
            stage: name.into(),
            version: "v2".into(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            status,
            regions_detail: regions
                .iter()
                .zip(states)
                .map(|(r, s)| {
                    (
                        r.to_string(),
                        RegionDetail {
                            status: *s,
                            error: (*s != RegionState::Success).then(|| "gate api tripped".into()),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        })
    }

    fn states(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                Op::Create {
                    environment,
                    version,
                    restored,
                    ..
                } => {
                    format!(
                        "create {environment} {version}{}",
                        if *restored { " restored" } else { "" }
                    )
                }
                Op::Status {
                    environment, state, ..
                } => format!("{environment} {}", state.as_str()),
            })
            .collect()
    }

    #[test]
    fn a_success_creates_one_deployment_per_stage_and_settles_it() {
        let mut m = Mirror::new(&config("per-stage"), None);
        let none = |_: &str| None;
        let mut ops = m.observe(&started("v2"), &none);
        ops.extend(m.observe(
            &stage("canary", &["lhr", "nrt"], StageStatus::Started, &[]),
            &none,
        ));
        ops.extend(m.observe(
            &stage(
                "canary",
                &["lhr", "nrt"],
                StageStatus::Success,
                &[RegionState::Success; 2],
            ),
            &none,
        ));
        assert_eq!(
            states(&ops),
            [
                "create production-canary v2",
                "production-canary in_progress",
                "production-canary success"
            ]
        );
        match &ops[0] {
            Op::Create {
                git_ref, regions, ..
            } => {
                assert_eq!(git_ref, "c0ffee");
                assert_eq!(regions, &["lhr", "nrt"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn per_region_settles_each_region_on_its_own() {
        let mut m = Mirror::new(&config("per-region"), None);
        let none = |_: &str| None;
        m.observe(&started("v2"), &none);
        let ops = m.observe(
            &stage("canary", &["lhr", "nrt"], StageStatus::Started, &[]),
            &none,
        );
        assert_eq!(ops.len(), 4);
        let ops = m.observe(
            &stage(
                "canary",
                &["lhr", "nrt"],
                StageStatus::Partial,
                &[RegionState::Success, RegionState::Failed],
            ),
            &none,
        );
        assert_eq!(
            states(&ops),
            ["production-lhr success", "production-nrt failure"]
        );
    }

    #[test]
    fn a_rollback_fails_the_new_deployment_and_restores_the_old_version() {
        let mut m = Mirror::new(&config("per-stage"), None);
        let commit = |v: &str| (v == "v1").then(|| "abc111".to_string());
        m.observe(&started("v2"), &commit);
        m.observe(
            &stage("canary", &["lhr", "nrt"], StageStatus::Started, &[]),
            &commit,
        );
        let rollback = HistoryRecord::Rollback(RollbackRecord {
            deploy_id: "D1".into(),
            regions: vec!["lhr".into(), "nrt".into()],
            from_version: [("lhr".into(), "v2".into()), ("nrt".into(), "v2".into())].into(),
            to_version: [("lhr".into(), "v1".into()), ("nrt".into(), "v1".into())].into(),
            status: "success".into(),
            reason: Some("gate api tripped".into()),
            ..Default::default()
        });
        let mut ops = m.observe(&rollback, &commit);
        ops.extend(m.observe(
            &stage(
                "canary",
                &["lhr", "nrt"],
                StageStatus::RolledBack,
                &[RegionState::RolledBack; 2],
            ),
            &commit,
        ));
        assert_eq!(
            states(&ops),
            [
                "production-canary failure",
                "create production-canary v1 restored",
                "production-canary success"
            ]
        );
        assert!(
            matches!(&ops[0], Op::Status { description, of_version: None, .. } if description == "rolled back: gate api tripped")
        );
        assert!(matches!(&ops[1], Op::Create { git_ref, .. } if git_ref == "abc111"));
    }

    #[test]
    fn a_manual_rollback_marks_only_the_deployment_of_the_version_it_leaves() {
        let mut m = Mirror::new(&config("per-stage"), Some("HEADSHA".into()));
        let rollback = HistoryRecord::Rollback(RollbackRecord {
            deploy_id: "R1".into(),
            regions: vec!["ewr".into()],
            from_version: [("ewr".into(), "v2".into())].into(),
            to_version: [("ewr".into(), "v1".into())].into(),
            status: "success".into(),
            reason: Some("bad".into()),
            ..Default::default()
        });
        let ops = m.observe(&rollback, &|_| None);
        assert_eq!(
            states(&ops),
            [
                "production-primary failure",
                "create production-primary v1 restored",
                "production-primary success"
            ]
        );
        assert!(matches!(&ops[0], Op::Status { of_version: Some(v), .. } if v == "v2"));
        assert!(matches!(&ops[1], Op::Create { git_ref, other_refs, .. }
            if git_ref == "v1" && other_refs == &["HEADSHA"]));
    }

    #[test]
    fn a_cancelled_deploy_settles_what_is_still_open() {
        let mut m = Mirror::new(&config("per-stage"), None);
        let none = |_: &str| None;
        m.observe(&started("v2"), &none);
        m.observe(
            &stage("canary", &["lhr", "nrt"], StageStatus::Started, &[]),
            &none,
        );
        let ops = m.observe(
            &HistoryRecord::Deploy(DeployRecord {
                status: DeployStatus::Cancelled,
                reason: Some("SIGTERM".into()),
                ..Default::default()
            }),
            &none,
        );
        assert_eq!(states(&ops), ["production-canary error"]);
        assert!(
            matches!(&ops[0], Op::Status { description, .. } if description == "cancelled: SIGTERM")
        );
    }
}
