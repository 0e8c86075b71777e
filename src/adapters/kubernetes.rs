//! The kubernetes adapter: each region is a kube context (`context = "{region}"`). A deploy sets
//! the container's image, records why in `kubernetes.io/change-cause`, and waits for the
//! rollout; a rollback sets the previous image back (or `rollout undo` when none is known).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::canary;
use super::steps::{share_of, StepBasis};
use super::{Live, RegionResult, RunCtx};
use crate::config::placeholder::{Vars, WEIGHT};
use crate::config::{AdapterKind, Config, KubernetesConfig, Traffic};
use crate::error::Error;
use crate::exec::CommandSpec;

const BIN_KEY: &str = "target.kubernetes.bin";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The annotation holding a deployment's (and its ReplicaSets') revision number.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// `rollout status --timeout` is this much shorter than the command's own bound, so kubectl
/// reports its own "timed out waiting" before shipgate has to kill it.
const ROLLOUT_MARGIN: Duration = Duration::from_secs(5);

pub struct Kubernetes {
    cfg: KubernetesConfig,
    /// The `[target].image` template.
    image: String,
    bin: String,
    base_dir: PathBuf,
}

/// What `kubectl get deployment -o json` says about the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentState {
    /// The configured container's image.
    pub image: String,
    /// `deployment.kubernetes.io/revision`.
    pub revision: Option<u64>,
    pub change_cause: Option<String>,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub replicas: Option<i64>,
    pub updated_replicas: Option<i64>,
    /// `spec.selector.matchLabels` as a label selector (`app=api,tier=web`).
    pub selector: Option<String>,
}

impl DeploymentState {
    /// Whether a rollout is still going (not every replica runs the current template).
    pub fn rolling_out(&self) -> bool {
        let behind =
            matches!((self.generation, self.observed_generation), (Some(g), Some(o)) if o < g);
        let not_updated = matches!(
            (self.replicas, self.updated_replicas),
            (Some(r), u) if u.unwrap_or(0) < r
        );
        behind || not_updated
    }
}

impl Kubernetes {
    pub fn new(config: &Config) -> Result<Self, Error> {
        let cfg = config.target.kubernetes.clone().ok_or_else(|| {
            Error::usage("adapter `kubernetes` needs a `[target.kubernetes]` section").with_hint(
                "add [target.kubernetes] with deployment = \"api\" and container = \"api\"",
            )
        })?;
        let image = config.target.image.clone().ok_or_else(|| {
            Error::usage("the kubernetes adapter needs `image` in [target]")
                .with_hint("add image = \"registry.example.com/app:{version}\"")
        })?;
        let bin = cfg.bin.clone().unwrap_or_else(|| "kubectl".to_string());
        Ok(Kubernetes {
            cfg,
            image,
            bin,
            base_dir: config.base_dir.clone(),
        })
    }

    fn region_vars(vars: &Vars, region: &str) -> Vars {
        vars.clone().with("region", region)
    }

    /// `kubectl [--context C] [--namespace N]` for `region`.
    pub fn base_argv(&self, region: &str, vars: &Vars) -> Vec<String> {
        let vars = Self::region_vars(vars, region);
        let mut argv = vec![self.bin.clone()];
        if let Some(c) = &self.cfg.context {
            argv.extend(["--context".to_string(), vars.render(c)]);
        }
        if let Some(n) = &self.cfg.namespace {
            argv.extend(["--namespace".to_string(), vars.render(n)]);
        }
        argv
    }

    fn spec(&self, region: &str, vars: &Vars, args: &[&str], timeout: Duration) -> CommandSpec {
        let mut argv = self.base_argv(region, vars);
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut spec = CommandSpec::new(argv, timeout);
        spec.cwd = Some(self.base_dir.clone());
        spec.bin_key = Some(BIN_KEY.to_string());
        spec
    }

    fn deployment_ref(&self) -> String {
        format!("deployment/{}", self.cfg.deployment)
    }

    /// `set image`, `annotate` with the change-cause, `rollout status`.
    fn set_image_commands(
        &self,
        region: &str,
        version: &str,
        cause: &str,
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let vars = Self::region_vars(vars, region).with("version", version);
        let image = super::image_for(&self.image, &vars, version);
        let dep = self.deployment_ref();
        vec![
            self.spec(
                region,
                &vars,
                &[
                    "set",
                    "image",
                    &dep,
                    &format!("{}={image}", self.cfg.container),
                ],
                timeout,
            ),
            self.spec(
                region,
                &vars,
                &[
                    "annotate",
                    &dep,
                    &format!("{CHANGE_CAUSE}={cause}"),
                    "--overwrite",
                ],
                timeout,
            ),
            self.rollout_status(region, &vars, timeout),
        ]
    }

    /// `rollout status deployment/D --timeout=Ns`, N a little under the command's bound.
    pub fn rollout_status(&self, region: &str, vars: &Vars, timeout: Duration) -> CommandSpec {
        let wait = timeout.saturating_sub(ROLLOUT_MARGIN).as_secs().max(1);
        self.spec(
            region,
            vars,
            &[
                "rollout",
                "status",
                &self.deployment_ref(),
                &format!("--timeout={wait}s"),
            ],
            timeout,
        )
    }

    /// `get deployment D -o json`.
    pub fn get_deployment(&self, region: &str, vars: &Vars, timeout: Duration) -> CommandSpec {
        self.spec(
            region,
            vars,
            &["get", "deployment", &self.cfg.deployment, "-o", "json"],
            timeout,
        )
    }

    /// `get replicasets -l SELECTOR -o json`.
    pub fn get_replicasets(
        &self,
        region: &str,
        vars: &Vars,
        selector: &str,
        timeout: Duration,
    ) -> CommandSpec {
        self.spec(
            region,
            vars,
            &["get", "replicasets", "-l", selector, "-o", "json"],
            timeout,
        )
    }

    fn rollback_region_commands(
        &self,
        region: &str,
        to_version: Option<&str>,
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        match to_version {
            Some(to) => {
                let vars = super::fly::rollback_vars(vars, to);
                let cause = cause("rollback to", to, &vars);
                self.set_image_commands(region, to, &cause, &vars, timeout)
            }
            None => vec![
                self.spec(
                    region,
                    vars,
                    &["rollout", "undo", &self.deployment_ref()],
                    timeout,
                ),
                self.rollout_status(region, vars, timeout),
            ],
        }
    }

    /// The deployment's ReplicaSets in `region`, newest revision first.
    pub fn replicasets(
        &self,
        region: &str,
        vars: &Vars,
        selector: &str,
        ctx: &RunCtx<'_>,
    ) -> Result<Vec<ReplicaSet>, Error> {
        let spec = self.get_replicasets(region, vars, selector, ctx.command_timeout);
        let out = super::run_checked_data(&spec, ctx)?;
        parse_replicasets(&out.stdout, &self.cfg.deployment, &self.cfg.container).map_err(|e| {
            Error::failed(format!("cannot read the output of `{}`", spec.display()))
                .unreadable()
                .caused_by(e)
        })
    }

    /// The deployment in `region`, or `None` when it does not exist.
    pub fn deployment(
        &self,
        region: &str,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Result<Option<DeploymentState>, Error> {
        let spec = self.get_deployment(region, vars, ctx.command_timeout);
        let out = super::run_data(&spec, ctx)?;
        if !out.success() {
            if is_not_found(&out.stderr_tail) {
                return Ok(None);
            }
            return Err(crate::exec::failure(&spec, &out));
        }
        parse_deployment(&out.stdout, &self.cfg.container)
            .map(Some)
            .map_err(|e| {
                Error::failed(format!("cannot read the output of `{}`", spec.display()))
                    .unreadable()
                    .caused_by(e)
            })
    }
}

/// A stepped stage (`steps`): the canary Deployment, the stable one scaled in step (or the
/// route's weights), and a rollback that leaves the region wholly on the stable Deployment.
impl Kubernetes {
    fn canary_ref(&self) -> String {
        format!("deployment/{}", canary::canary_name(&self.cfg.deployment))
    }

    /// `scale deployment/D --replicas=N` (`<replicas>` when the dry run could not read N).
    fn scale(
        &self,
        region: &str,
        vars: &Vars,
        target: &str,
        n: Option<u32>,
        timeout: Duration,
    ) -> CommandSpec {
        let n = n.map_or("<replicas>".to_string(), |n| n.to_string());
        self.spec(
            region,
            vars,
            &["scale", target, &format!("--replicas={n}")],
            timeout,
        )
    }

    /// `apply -f -` with the canary manifest on stdin.
    fn apply_canary(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        replicas: Option<u32>,
        timeout: Duration,
    ) -> CommandSpec {
        let version = vars.get("version").unwrap_or_default();
        let image = super::image_for(&self.image, vars, version);
        let mut spec = self.spec(region, vars, &["apply", "-f", "-"], timeout);
        spec.stdin = basis.stable.as_ref().and_then(|stable| {
            canary::manifest(
                stable,
                &self.cfg.deployment,
                &self.cfg.container,
                &image,
                replicas.unwrap_or(1),
                &cause("deploy", version, vars),
            )
            .ok()
        });
        spec
    }

    /// `patch httproute R --type=json -p PATCH` giving the canary `weight` percent.
    fn weigh_route(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        weight: u8,
        timeout: Duration,
    ) -> CommandSpec {
        let route = self.cfg.route.clone().unwrap_or_default();
        let stable = &self.cfg.service;
        let patch = basis
            .route
            .as_ref()
            .and_then(|r| canary::route_patch(r, stable, &canary::canary_name(stable), weight).ok())
            .unwrap_or_else(|| {
                format!(
                    "<weights: {stable} {}, {stable}-canary {weight}>",
                    100 - weight
                )
            });
        self.spec(
            region,
            vars,
            &["patch", "httproute", &route, "--type=json", "-p", &patch],
            timeout,
        )
    }

    /// `get KIND NAME -o json`, `None` when it does not exist.
    fn read_object(
        &self,
        region: &str,
        vars: &Vars,
        kind: &str,
        name: &str,
        ctx: &RunCtx<'_>,
    ) -> Result<Option<Value>, Error> {
        let spec = self.spec(
            region,
            vars,
            &["get", kind, name, "-o", "json"],
            ctx.command_timeout,
        );
        let out = super::run_data(&spec, ctx)?;
        if !out.success() {
            if is_not_found(&out.stderr_tail) {
                return Ok(None);
            }
            return Err(crate::exec::failure(&spec, &out));
        }
        super::json_document(&out.stdout).map(Some).map_err(|e| {
            Error::failed(format!("cannot read the output of `{}`", spec.display()))
                .unreadable()
                .caused_by(e)
        })
    }

    /// The replicas the region serves with: the stable's plus the canary's in `replicas`
    /// mode (the stable was scaled down by them), the stable's with a route.
    fn total(&self, basis: &StepBasis) -> Option<u32> {
        basis.replicas
    }

    /// The commands of a step to `weight` (< 100) percent.
    fn canary_step(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        weight: u8,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let total = self.total(basis);
        let canary = self.canary_ref();
        match self.cfg.traffic {
            Traffic::Replicas => {
                let share = total.map(|n| share_of(n, weight));
                vec![
                    self.apply_canary(region, vars, basis, share, timeout),
                    self.scale(
                        region,
                        vars,
                        &self.deployment_ref(),
                        total.zip(share).map(|(n, s)| n.saturating_sub(s)),
                        timeout,
                    ),
                    self.rollout_status_of(region, vars, &canary, timeout),
                ]
            }
            Traffic::GatewayApi => vec![
                self.apply_canary(region, vars, basis, total, timeout),
                self.rollout_status_of(region, vars, &canary, timeout),
                self.weigh_route(region, vars, basis, weight, timeout),
            ],
        }
    }

    /// The last step: the stable Deployment gets the new image (and its replicas back), then
    /// the canary goes to 0.
    fn promote(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let version = vars.get("version").unwrap_or_default();
        let mut cmds = self.set_image_commands(
            region,
            version,
            &cause("deploy", version, vars),
            vars,
            timeout,
        );
        let status = cmds.pop().expect("set image ends with its rollout status");
        if self.cfg.traffic == Traffic::Replicas {
            cmds.push(self.scale(
                region,
                vars,
                &self.deployment_ref(),
                self.total(basis),
                timeout,
            ));
        }
        cmds.push(status);
        if self.cfg.traffic == Traffic::GatewayApi {
            cmds.push(self.weigh_route(region, vars, basis, 0, timeout));
        }
        if basis.canary.is_some() || !basis.read {
            cmds.push(self.scale(region, vars, &self.canary_ref(), Some(0), timeout));
        }
        cmds
    }

    /// A stepped region's rollback: the stable Deployment serves it all again on `to`.
    fn stepped_rollback(
        &self,
        region: &str,
        to: Option<&str>,
        vars: &Vars,
        basis: &StepBasis,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let mut cmds = Vec::new();
        if self.cfg.traffic == Traffic::Replicas {
            cmds.push(self.scale(
                region,
                vars,
                &self.deployment_ref(),
                self.total(basis),
                timeout,
            ));
        }
        cmds.extend(self.rollback_region_commands(region, to, vars, timeout));
        if self.cfg.traffic == Traffic::GatewayApi {
            cmds.push(self.weigh_route(region, vars, basis, 0, timeout));
        }
        if basis.canary.is_some() || !basis.read {
            cmds.push(self.scale(region, vars, &self.canary_ref(), Some(0), timeout));
        }
        cmds
    }

    /// `rollout status TARGET --timeout=Ns`.
    fn rollout_status_of(
        &self,
        region: &str,
        vars: &Vars,
        target: &str,
        timeout: Duration,
    ) -> CommandSpec {
        let wait = timeout.saturating_sub(ROLLOUT_MARGIN).as_secs().max(1);
        self.spec(
            region,
            vars,
            &["rollout", "status", target, &format!("--timeout={wait}s")],
            timeout,
        )
    }
}

/// Whether the caller runs a stepped stage (its vars carry the step's `{weight}`).
fn stepped(vars: &Vars) -> bool {
    vars.get(WEIGHT).is_some()
}

/// The change-cause shipgate records: `shipgate deploy v2 (01J…)`.
fn cause(what: &str, version: &str, vars: &Vars) -> String {
    match vars.get("deploy_id").filter(|d| !d.is_empty()) {
        Some(id) => format!("shipgate {what} {version} ({id})"),
        None => format!("shipgate {what} {version}"),
    }
}

use super::run_in_order as run_all;

impl super::Adapter for Kubernetes {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Kubernetes
    }

    fn batches_regions(&self) -> bool {
        false
    }

    fn deploy_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let version = vars.get("version").unwrap_or_default();
        let cause = cause("deploy", version, vars);
        regions
            .iter()
            .flat_map(|r| self.set_image_commands(r, version, &cause, vars, timeout))
            .collect()
    }

    fn deploy(&self, regions: &[String], vars: &Vars, ctx: &RunCtx<'_>) -> Vec<RegionResult> {
        super::per_region(regions, |region| {
            let cmds = self.deploy_commands(&[region.to_string()], vars, ctx.command_timeout);
            run_all(&cmds, ctx)
        })
    }

    /// The configured container's image in the region's deployment. While a rollout is in
    /// progress, the images of every ReplicaSet that still has pods: mixed when they differ.
    /// `kubectl get deployment` per region (a rollout in progress also reads its replica sets).
    fn current_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        regions
            .iter()
            .map(|r| self.get_deployment(r, &Self::region_vars(vars, r), timeout))
            .collect()
    }

    fn current(&self, region: &str, vars: &Vars, ctx: &RunCtx<'_>) -> Result<Live, Error> {
        let vars = Self::region_vars(vars, region);
        let Some(dep) = self.deployment(region, &vars, ctx)? else {
            return Ok(Live::Absent);
        };
        let mut versions = vec![super::version_from_image(&self.image, &vars, &dep.image)];
        if let (true, Some(selector)) = (dep.rolling_out(), &dep.selector) {
            for rs in self.replicasets(region, &vars, selector, ctx)? {
                if rs.replicas > 0 {
                    versions.push(super::version_from_image(&self.image, &vars, &rs.image));
                }
            }
        }
        versions.sort();
        versions.dedup();
        Ok(if versions.len() == 1 {
            Live::Version(versions.remove(0))
        } else {
            Live::Mixed(versions)
        })
    }

    fn rollback(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Vec<RegionResult> {
        super::per_region(regions, |region| {
            let cmds = if stepped(vars) {
                let rvars = Self::region_vars(vars, region);
                let basis = super::Adapter::step_basis(self, region, &rvars, ctx)?;
                self.stepped_rollback(region, to_version, vars, &basis, ctx.command_timeout)
            } else {
                self.rollback_region_commands(region, to_version, vars, ctx.command_timeout)
            };
            run_all(&cmds, ctx)
        })
    }

    fn rollback_commands(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        regions
            .iter()
            .flat_map(|r| match stepped(vars) {
                true => self.stepped_rollback(r, to_version, vars, &StepBasis::default(), timeout),
                false => self.rollback_region_commands(r, to_version, vars, timeout),
            })
            .collect()
    }

    /// The stable and canary Deployments (and the route), read before each step.
    fn step_basis(&self, region: &str, vars: &Vars, ctx: &RunCtx<'_>) -> Result<StepBasis, Error> {
        let vars = Self::region_vars(vars, region);
        let stable = self
            .read_object(region, &vars, "deployment", &self.cfg.deployment, ctx)?
            .ok_or_else(|| {
                Error::failed(format!(
                    "deployment `{}` does not exist in {region}: a stepped stage starts from a running stable deployment",
                    self.cfg.deployment
                ))
            })?;
        let canary_name = canary::canary_name(&self.cfg.deployment);
        let canary = self.read_object(region, &vars, "deployment", &canary_name, ctx)?;
        let route = match (&self.cfg.traffic, &self.cfg.route) {
            (Traffic::GatewayApi, Some(r)) => Some(
                self.read_object(region, &vars, "httproute", r, ctx)?
                    .ok_or_else(|| {
                        Error::failed(format!("httproute `{r}` does not exist in {region}"))
                    })?,
            ),
            _ => None,
        };
        let replicas = match self.cfg.traffic {
            Traffic::Replicas => {
                canary::replicas(Some(&stable)) + canary::replicas(canary.as_ref())
            }
            Traffic::GatewayApi => canary::replicas(Some(&stable)),
        };
        Ok(StepBasis {
            replicas: Some(replicas),
            stable: Some(stable),
            canary,
            route,
            read: true,
            machines: Vec::new(),
        })
    }

    fn step_commands(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let vars = Self::region_vars(vars, region);
        match vars.get(WEIGHT).and_then(|w| w.parse::<u8>().ok()) {
            Some(w) if w < 100 => self.canary_step(region, &vars, basis, w, timeout),
            _ => self.promote(region, &vars, basis, timeout),
        }
    }

    fn programs(&self) -> Vec<super::Program> {
        vec![super::Program {
            template: self.bin.clone(),
            key: BIN_KEY,
            deploy_only: false,
        }]
    }

    /// The images of the deployment's ReplicaSets (what `kubectl rollout history` lists), by
    /// revision, newest first, each version once. Empty when the deployment does not exist.
    fn release_history(
        &self,
        region: &str,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Result<Vec<String>, Error> {
        let vars = Self::region_vars(vars, region);
        let Some(dep) = self.deployment(region, &vars, ctx)? else {
            return Ok(Vec::new());
        };
        let Some(selector) = dep.selector else {
            return Ok(Vec::new());
        };
        let mut versions: Vec<String> = Vec::new();
        for rs in self.replicasets(region, &vars, &selector, ctx)? {
            let v = super::version_from_image(&self.image, &vars, &rs.image);
            if !versions.contains(&v) {
                versions.push(v);
            }
        }
        Ok(versions)
    }
}

/// Whether kubectl's stderr says the object does not exist.
pub fn is_not_found(stderr: &str) -> bool {
    stderr.contains("(NotFound)") || stderr.contains("NotFound") && stderr.contains("not found")
}

fn container_image(pod_spec: &Value, container: &str) -> Option<String> {
    pod_spec
        .get("containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))?
        .get("image")?
        .as_str()
        .map(str::to_string)
}

fn revision_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/annotations")?
        .get(REVISION)?
        .as_str()?
        .parse()
        .ok()
}

/// Parses `kubectl get deployment -o json` for `container`.
pub fn parse_deployment(stdout: &str, container: &str) -> Result<DeploymentState, String> {
    let doc = super::json_document(stdout)?;
    let pod_spec = doc
        .pointer("/spec/template/spec")
        .ok_or("the deployment has no pod template")?;
    let image = container_image(pod_spec, container).ok_or_else(|| {
        let names: Vec<&str> = pod_spec
            .get("containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "the deployment has no container `{container}` (it has: {})",
            names.join(", ")
        )
    })?;
    let selector = doc
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            pairs.join(",")
        });
    let int = |p: &str| doc.pointer(p).and_then(Value::as_i64);
    Ok(DeploymentState {
        image,
        revision: revision_of(&doc),
        change_cause: doc
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE))
            .and_then(Value::as_str)
            .map(str::to_string),
        generation: int("/metadata/generation"),
        observed_generation: int("/status/observedGeneration"),
        replicas: int("/spec/replicas"),
        updated_replicas: int("/status/updatedReplicas"),
        selector,
    })
}

/// One ReplicaSet of a deployment: one revision of its pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSet {
    pub revision: u64,
    /// The configured container's image.
    pub image: String,
    /// Pods it runs now (`status.replicas`).
    pub replicas: i64,
}

/// Parses `kubectl get replicasets -o json`: the ReplicaSets owned by `deployment`, newest
/// revision first.
pub fn parse_replicasets(
    stdout: &str,
    deployment: &str,
    container: &str,
) -> Result<Vec<ReplicaSet>, String> {
    let doc = super::json_document(stdout)?;
    let items = doc
        .get("items")
        .and_then(Value::as_array)
        .ok_or("expected a List with `items`")?;
    let mut out: Vec<ReplicaSet> = items
        .iter()
        .filter(|rs| {
            match rs
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
            {
                Some(owners) => owners.iter().any(|o| {
                    o.get("kind").and_then(Value::as_str) == Some("Deployment")
                        && o.get("name").and_then(Value::as_str) == Some(deployment)
                }),
                None => true,
            }
        })
        .filter_map(|rs| {
            Some(ReplicaSet {
                revision: revision_of(rs)?,
                image: container_image(rs.pointer("/spec/template/spec")?, container)?,
                replicas: rs
                    .pointer("/status/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Adapter;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
[app]
name = "web"
[target]
adapter = "kubernetes"
image = "ghcr.io/acme/web:{{version}}"
[target.kubernetes]
deployment = "api"
container = "app"
{extra}
[[stage]]
name = "canary"
regions = ["eu", "us"]
"#
        );
        crate::config::parse(std::path::Path::new("/srv/p/pipeline.toml"), &text, None).unwrap()
    }

    fn vars() -> Vars {
        Vars::new()
            .with("app", "web")
            .with("version", "v2")
            .with("deploy_id", "01JDEPLOY")
    }

    fn argvs(cmds: &[CommandSpec]) -> Vec<Vec<String>> {
        cmds.iter().map(|c| c.argv.clone()).collect()
    }

    #[test]
    fn deploy_sets_the_image_annotates_and_waits_per_context() {
        let k = Kubernetes::new(&config(
            "namespace = \"prod\"\ncontext = \"gke-{region}\"\nbin = \"/usr/local/bin/kubectl\"",
        ))
        .unwrap();
        let cmds = k.deploy_commands(&["eu".into()], &vars(), Duration::from_secs(600));
        let base = [
            "/usr/local/bin/kubectl",
            "--context",
            "gke-eu",
            "--namespace",
            "prod",
        ];
        let with = |rest: &[&str]| -> Vec<String> {
            base.iter().chain(rest).map(|s| s.to_string()).collect()
        };
        assert_eq!(
            argvs(&cmds),
            vec![
                with(&["set", "image", "deployment/api", "app=ghcr.io/acme/web:v2"]),
                with(&[
                    "annotate",
                    "deployment/api",
                    "kubernetes.io/change-cause=shipgate deploy v2 (01JDEPLOY)",
                    "--overwrite"
                ]),
                with(&["rollout", "status", "deployment/api", "--timeout=595s"]),
            ]
        );
        assert_eq!(cmds[0].bin_key.as_deref(), Some("target.kubernetes.bin"));
        assert!(!k.batches_regions());
    }

    #[test]
    fn without_context_or_namespace_the_flags_are_omitted() {
        let k = Kubernetes::new(&config("")).unwrap();
        let cmds = k.rollback_commands(&["us".into()], None, &vars(), Duration::from_secs(3));
        assert_eq!(
            argvs(&cmds),
            vec![
                vec!["kubectl", "rollout", "undo", "deployment/api"],
                vec![
                    "kubectl",
                    "rollout",
                    "status",
                    "deployment/api",
                    "--timeout=1s"
                ],
            ]
        );
    }

    #[test]
    fn rollback_to_a_version_sets_its_image_back() {
        let k = Kubernetes::new(&config("context = \"{region}\"")).unwrap();
        let cmds = k.rollback_commands(
            &["eu".into(), "us".into()],
            Some("v1"),
            &vars(),
            Duration::from_secs(60),
        );
        assert_eq!(cmds.len(), 6);
        assert_eq!(
            cmds[0].argv,
            [
                "kubectl",
                "--context",
                "eu",
                "set",
                "image",
                "deployment/api",
                "app=ghcr.io/acme/web:v1"
            ]
        );
        assert_eq!(
            cmds[1].argv[5],
            "kubernetes.io/change-cause=shipgate rollback to v1 (01JDEPLOY)"
        );
        assert_eq!(cmds[3].argv[2], "us");
        assert_eq!(
            k.get_deployment("eu", &vars(), Duration::from_secs(5)).argv,
            [
                "kubectl",
                "--context",
                "eu",
                "get",
                "deployment",
                "api",
                "-o",
                "json"
            ]
        );
    }

    const DEPLOYMENT: &str = r#"{
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": "api", "namespace": "prod", "generation": 7,
        "annotations": {"deployment.kubernetes.io/revision": "5",
                        "kubernetes.io/change-cause": "shipgate deploy v2 (d)"}},
      "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "web", "app": "api"}},
        "template": {"metadata": {"labels": {"app": "api"}},
          "spec": {"containers": [{"name": "sidecar", "image": "envoy:1.30"},
                                  {"name": "app", "image": "ghcr.io/acme/web:v2"}]}}},
      "status": {"observedGeneration": 7, "replicas": 3, "updatedReplicas": 2}
    }"#;

    #[test]
    fn deployment_json_gives_the_container_image_and_revision() {
        let d = parse_deployment(DEPLOYMENT, "app").unwrap();
        assert_eq!(d.image, "ghcr.io/acme/web:v2");
        assert_eq!(d.revision, Some(5));
        assert_eq!(d.change_cause.as_deref(), Some("shipgate deploy v2 (d)"));
        assert_eq!(d.selector.as_deref(), Some("app=api,tier=web"));
        assert!(d.rolling_out());
        let e = parse_deployment(DEPLOYMENT, "web").unwrap_err();
        assert!(
            e.contains("no container `web` (it has: sidecar, app)"),
            "{e}"
        );
    }

    #[test]
    fn not_found_is_recognised() {
        assert!(is_not_found(
            "Error from server (NotFound): deployments.apps \"api\" not found\n"
        ));
        assert!(!is_not_found("error: context \"eu\" does not exist"));
    }

    #[test]
    fn replicasets_are_sorted_by_revision() {
        let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
          {"metadata": {"name": "api-1", "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [{"kind": "Deployment", "name": "api"}]},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "r/web:v0"}]}}}},
          {"metadata": {"name": "api-3", "annotations": {"deployment.kubernetes.io/revision": "3"},
            "ownerReferences": [{"kind": "Deployment", "name": "api"}]},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "r/web:v2"}]}}},
           "status": {"replicas": 2}},
          {"metadata": {"name": "other-9", "annotations": {"deployment.kubernetes.io/revision": "9"},
            "ownerReferences": [{"kind": "Deployment", "name": "other"}]},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "r/x:v9"}]}}}}
        ]}"#;
        let rs = parse_replicasets(json, "api", "app").unwrap();
        assert_eq!(
            rs.iter()
                .map(|r| (r.revision, r.image.as_str(), r.replicas))
                .collect::<Vec<_>>(),
            vec![(3, "r/web:v2", 2), (1, "r/web:v0", 0)]
        );
    }
}
