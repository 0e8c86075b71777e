//! The fly adapter: one `flyctl deploy --regions a,b` per stage, then the machines' images
//! per region from `flyctl machines list --json`.
//!
//! `FLY_API_TOKEN` / `FLY_ACCESS_TOKEN` reach flyctl through the inherited environment,
//! untouched; their values are secrets the redactor masks wherever anything prints.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::steps::{share_of, StepBasis};
use super::{Live, RegionResult, RunCtx};
use crate::config::placeholder::{Vars, WEIGHT};
use crate::config::{AdapterKind, Config, FlyConfig};
use crate::error::Error;
use crate::exec::CommandSpec;

const BIN_KEY: &str = "target.fly.bin";

/// The strategy a rollback deploys with: every machine at once, no canary, no waiting on a
/// rolling update of a version we already know.
pub const ROLLBACK_STRATEGY: &str = "immediate";

pub struct Fly {
    cfg: FlyConfig,
    /// The `[target].image` template.
    image: String,
    bin: String,
    base_dir: PathBuf,
}

impl Fly {
    pub fn new(config: &Config) -> Result<Self, Error> {
        let cfg = config.target.fly.clone().ok_or_else(|| {
            Error::usage("adapter `fly` needs a `[target.fly]` section")
                .with_hint("add [target.fly] with app = \"your-fly-app\"")
        })?;
        let image = config.target.image.clone().ok_or_else(|| {
            Error::usage("the fly adapter needs `image` in [target]")
                .with_hint("add image = \"registry.fly.io/app:{version}\"")
        })?;
        let bin = cfg
            .bin
            .clone()
            .unwrap_or_else(|| super::find_on_path(&["flyctl", "fly"]));
        Ok(Fly {
            cfg,
            image,
            bin,
            base_dir: config.base_dir.clone(),
        })
    }

    fn spec(&self, args: Vec<String>, timeout: Duration) -> CommandSpec {
        let mut argv = vec![self.bin.clone()];
        argv.extend(args);
        let mut spec = CommandSpec::new(argv, timeout);
        spec.cwd = Some(self.base_dir.clone());
        spec.bin_key = Some(BIN_KEY.to_string());
        spec
    }

    /// `flyctl deploy --app A --image I --regions r1,r2 [--strategy S] [--wait-timeout Ns]
    /// --yes [args]`.
    pub fn deploy_argv(
        &self,
        regions: &[String],
        image: &str,
        strategy: Option<&str>,
        vars: &Vars,
    ) -> Vec<String> {
        let mut args = vec![
            "deploy".to_string(),
            "--app".to_string(),
            self.cfg.app.clone(),
            "--image".to_string(),
            image.to_string(),
            "--regions".to_string(),
            regions.join(","),
        ];
        if let Some(s) = strategy {
            args.extend(["--strategy".to_string(), s.to_string()]);
        }
        if let Some(w) = self.cfg.wait_timeout {
            // Plain seconds: older flyctl takes an int here, newer ones a duration that also
            // accepts "a number of seconds" (`parseDurationFlag`); `300s` would break the old.
            args.extend(["--wait-timeout".to_string(), w.as_secs().to_string()]);
        }
        args.push("--yes".to_string());
        args.extend(vars.render_argv(&self.cfg.args));
        args
    }

    /// `flyctl machines list --app A --json`.
    pub fn machines_command(&self, timeout: Duration) -> CommandSpec {
        self.spec(
            vec![
                "machines".into(),
                "list".into(),
                "--app".into(),
                self.cfg.app.clone(),
                "--json".into(),
            ],
            timeout,
        )
    }

    /// `flyctl releases --app A --json`.
    pub fn releases_command(&self, timeout: Duration) -> CommandSpec {
        self.spec(
            vec![
                "releases".into(),
                "--app".into(),
                self.cfg.app.clone(),
                "--json".into(),
            ],
            timeout,
        )
    }

    fn deploy_spec(
        &self,
        regions: &[String],
        version: &str,
        strategy: Option<&str>,
        vars: &Vars,
        timeout: Duration,
    ) -> CommandSpec {
        let vars = vars.clone().with("version", version);
        let image = super::image_for(&self.image, &vars, version);
        let vars = vars.with("image", image.clone());
        self.spec(self.deploy_argv(regions, &image, strategy, &vars), timeout)
    }

    /// A step to `weight` (< 100) percent of `region`: `flyctl deploy --only-machines a,b` for
    /// the first `ceil(share)` of its machines (sorted ids, so each step keeps the machines
    /// the last one updated). Without a read basis (dry run) the ids are described.
    fn step_spec(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        weight: u8,
        timeout: Duration,
    ) -> CommandSpec {
        let version = vars.get("version").unwrap_or_default();
        let vars = vars.clone().with("version", version);
        let image = super::image_for(&self.image, &vars, version);
        let vars = vars.with("image", image.clone());
        let ids = if basis.read {
            let n = share_of(basis.machines.len() as u32, weight) as usize;
            basis.machines[..n.min(basis.machines.len())].join(",")
        } else {
            format!("<{weight}% of {region}'s machines>")
        };
        let mut argv = self.deploy_argv(
            &[region.to_string()],
            &image,
            self.cfg.strategy.as_deref(),
            &vars,
        );
        if let Some(at) = argv.iter().position(|a| a == "--regions") {
            argv[at] = "--only-machines".into();
            argv[at + 1] = ids;
        }
        self.spec(argv, timeout)
    }

    fn machines(&self, ctx: &RunCtx<'_>) -> Result<Vec<Machine>, Error> {
        let spec = self.machines_command(ctx.command_timeout);
        let out = super::run_checked_data(&spec, ctx)?;
        parse_machines(&out.stdout).map_err(|e| {
            Error::failed(format!("cannot read the output of `{}`", spec.display()))
                .unreadable()
                .caused_by(e)
        })
    }

    /// Runs one deploy and judges every region on its own from the machines afterwards: a
    /// region runs `version` everywhere, or it has failed (see [`judge_regions`]).
    fn deploy_and_verify(
        &self,
        regions: &[String],
        version: &str,
        strategy: Option<&str>,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Vec<RegionResult> {
        let spec = self.deploy_spec(regions, version, strategy, vars, ctx.command_timeout);
        let deployed = super::run_checked(&spec, ctx).map(|_| ());
        if let Err(e) = &deployed {
            if e.not_started {
                // flyctl never ran: nothing changed anywhere, there is nothing to read.
                return all_failed(regions, e);
            }
        }
        // Also after a failed call: it may have failed in one region and updated the others.
        let machines = self.machines(ctx);
        judge_regions(regions, version, deployed, machines, &self.image, vars)
    }
}

/// Each region's outcome after one `flyctl deploy --regions …` call, judged on its own from
/// the machines list ([`check_region`]). When the call failed, a region whose machines all run
/// `version` is fine (the call failed elsewhere); every other region gets the call's error,
/// with what it runs now as the last cause (`region nrt still runs v2 after deploying v1`).
/// Without a machines list every region fails: with the call's error when it failed, else with
/// the read error — the deploy ran, so the regions may have changed.
pub fn judge_regions(
    regions: &[String],
    version: &str,
    deployed: Result<(), Error>,
    machines: Result<Vec<Machine>, Error>,
    image_template: &str,
    vars: &Vars,
) -> Vec<RegionResult> {
    let machines = match (machines, &deployed) {
        (Ok(m), _) => m,
        (Err(_), Err(deploy_error)) => return all_failed(regions, deploy_error),
        (Err(mut read_error), Ok(())) => {
            read_error.not_started = false;
            return all_failed(regions, &read_error);
        }
    };
    regions
        .iter()
        .map(|r| {
            let live = region_live(&machines, r, image_template, vars);
            let verdict = match (check_region(r, &live, version), &deployed) {
                (Ok(()), _) => Ok(()),
                (Err(state), Ok(())) => Err(state),
                (Err(state), Err(deploy_error)) => {
                    let mut e = super::same_error(deploy_error).caused_by(&state.message);
                    e.not_started = false;
                    if e.hint.is_none() {
                        e.hint = state.hint;
                    }
                    Err(e)
                }
            };
            (r.clone(), verdict)
        })
        .collect()
}

fn all_failed(regions: &[String], e: &Error) -> Vec<RegionResult> {
    regions
        .iter()
        .map(|r| (r.clone(), Err(super::same_error(e))))
        .collect()
}

/// Whether `region` runs `version` everywhere after a deploy.
pub fn check_region(region: &str, live: &Live, version: &str) -> Result<(), Error> {
    let hint = "see `flyctl machines list` and `flyctl logs --region` for that region";
    match live {
        Live::Version(v) if v == version => Ok(()),
        Live::Version(v) => Err(Error::failed(format!(
            "region {region} still runs {v} after deploying {version}"
        ))
        .with_hint(hint)),
        Live::Mixed(vs) => Err(Error::failed(format!(
            "region {region} runs mixed versions ({}) after deploying {version}",
            vs.join(", ")
        ))
        .with_hint(hint)),
        Live::Absent => Err(Error::failed(format!(
            "region {region} has no machines after deploying {version}"
        ))
        .with_hint("create a machine there first (`flyctl scale count --region`)")),
    }
}

impl super::Adapter for Fly {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Fly
    }

    fn batches_regions(&self) -> bool {
        true
    }

    fn deploy_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let version = vars.get("version").unwrap_or_default();
        vec![
            self.deploy_spec(
                regions,
                version,
                self.cfg.strategy.as_deref(),
                vars,
                timeout,
            ),
            self.machines_command(timeout),
        ]
    }

    fn deploy(&self, regions: &[String], vars: &Vars, ctx: &RunCtx<'_>) -> Vec<RegionResult> {
        let Some(version) = vars.get("version") else {
            return all_failed(regions, &Error::usage("no version to deploy"));
        };
        self.deploy_and_verify(regions, version, self.cfg.strategy.as_deref(), vars, ctx)
    }

    /// The region's machine ids, sorted.
    fn step_basis(&self, region: &str, _vars: &Vars, ctx: &RunCtx<'_>) -> Result<StepBasis, Error> {
        let mut machines: Vec<String> = self
            .machines(ctx)?
            .into_iter()
            .filter(|m| m.region == region && m.counts())
            .map(|m| m.id)
            .collect();
        machines.sort();
        if machines.is_empty() {
            return Err(Error::failed(format!(
                "app `{}` has no machines in {region}: a stepped stage updates a share of the region's machines",
                self.cfg.app
            )));
        }
        Ok(StepBasis {
            machines,
            read: true,
            ..Default::default()
        })
    }

    fn step_commands(
        &self,
        region: &str,
        vars: &Vars,
        basis: &StepBasis,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let vars = vars.clone().with("region", region);
        match step_weight(&vars) {
            Some(w) if w < 100 => vec![self.step_spec(region, &vars, basis, w, timeout)],
            _ => self.deploy_commands(&[region.to_string()], &vars, timeout),
        }
    }

    /// A step below 100 % updates a subset; the last one is a whole deploy of the region,
    /// judged from the machines as any deploy is.
    fn deploy_step(&self, regions: &[String], vars: &Vars, ctx: &RunCtx<'_>) -> Vec<RegionResult> {
        if step_weight(vars).is_none_or(|w| w >= 100) {
            return self.deploy(regions, vars, ctx);
        }
        super::per_region(regions, |region| {
            let vars = vars.clone().with("region", region);
            let basis = self.step_basis(region, &vars, ctx)?;
            super::run_in_order(
                &self.step_commands(region, &vars, &basis, ctx.command_timeout),
                ctx,
            )
        })
    }

    fn current(&self, region: &str, vars: &Vars, ctx: &RunCtx<'_>) -> Result<Live, Error> {
        let machines = self.machines(ctx)?;
        Ok(region_live(&machines, region, &self.image, vars))
    }

    /// One `flyctl machines list` answers for every region.
    fn current_commands(
        &self,
        _regions: &[String],
        _vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        vec![self.machines_command(timeout)]
    }

    fn rollback(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Vec<RegionResult> {
        let Some(to) = to_version else {
            return all_failed(regions, &no_previous_version());
        };
        let vars = rollback_vars(vars, to);
        self.deploy_and_verify(regions, to, Some(ROLLBACK_STRATEGY), &vars, ctx)
    }

    fn rollback_commands(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let Some(to) = to_version else {
            return Vec::new();
        };
        let vars = rollback_vars(vars, to);
        vec![
            self.deploy_spec(regions, to, Some(ROLLBACK_STRATEGY), &vars, timeout),
            self.machines_command(timeout),
        ]
    }

    fn programs(&self) -> Vec<super::Program> {
        vec![super::Program {
            template: self.bin.clone(),
            key: BIN_KEY,
            deploy_only: false,
        }]
    }

    /// Fly releases are per app, not per region: every region gets the same list, the
    /// versions of releases that did not fail, newest first, without repeats.
    fn release_history(
        &self,
        _region: &str,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Result<Vec<String>, Error> {
        let spec = self.releases_command(ctx.command_timeout);
        let out = super::run_checked_data(&spec, ctx)?;
        let releases = parse_releases(&out.stdout).map_err(|e| {
            Error::failed(format!("cannot read the output of `{}`", spec.display()))
                .unreadable()
                .caused_by(e)
        })?;
        Ok(release_versions(&releases, &self.image, vars))
    }
}

/// The vars of a rollback: `version` is the target, `previous_version` the version left.
fn step_weight(vars: &Vars) -> Option<u8> {
    vars.get(WEIGHT).and_then(|w| w.parse().ok())
}

pub(crate) fn rollback_vars(vars: &Vars, to: &str) -> Vars {
    let mut v = vars.clone();
    if let Some(from) = vars.get("version") {
        v.set("previous_version", from.to_string());
    }
    v.set("version", to.to_string());
    v
}

pub(crate) fn no_previous_version() -> Error {
    Error::failed("cannot roll back: no previous version known")
        .with_hint("pass `shipgate rollback --to VERSION`")
}

/// One machine of `flyctl machines list --json`; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Machine {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub image_ref: Option<ImageRef>,
    #[serde(default)]
    pub config: Option<MachineConfig>,
    #[serde(default)]
    pub checks: Vec<MachineCheck>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ImageRef {
    #[serde(default)]
    pub registry: String,
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub digest: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MachineConfig {
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MachineCheck {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
}

impl Machine {
    /// The image reference the machine runs: `config.image`, else rebuilt from `image_ref`.
    pub fn image(&self) -> String {
        if let Some(c) = &self.config {
            if !c.image.is_empty() {
                return c.image.clone();
            }
        }
        match &self.image_ref {
            Some(r) => {
                let mut s = String::new();
                if !r.registry.is_empty() {
                    s.push_str(&r.registry);
                    s.push('/');
                }
                s.push_str(&r.repository);
                if !r.tag.is_empty() {
                    s.push(':');
                    s.push_str(&r.tag);
                } else if !r.digest.is_empty() {
                    s.push('@');
                    s.push_str(&r.digest);
                }
                s
            }
            None => String::new(),
        }
    }

    /// Whether the machine counts: destroyed ones linger in the list for a while.
    fn counts(&self) -> bool {
        !matches!(self.state.as_str(), "destroyed" | "destroying")
    }
}

/// Parses `flyctl machines list --json`, tolerating noise around the JSON.
pub fn parse_machines(stdout: &str) -> Result<Vec<Machine>, String> {
    let doc = super::json_document(stdout)?;
    if doc.is_object() && doc.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(Vec::new());
    }
    serde_json::from_value(doc).map_err(|e| format!("unexpected machines list: {e}"))
}

/// What runs in `region`: the version of every machine there, read through the image template.
pub fn region_live(machines: &[Machine], region: &str, image_template: &str, vars: &Vars) -> Live {
    let mut versions: Vec<String> = machines
        .iter()
        .filter(|m| m.region == region && m.counts())
        .map(|m| {
            let image = m.image();
            let from_ref = m.image_ref.as_ref().map(|r| r.tag.clone());
            if image.is_empty() {
                from_ref.unwrap_or_default()
            } else {
                super::version_from_image(image_template, vars, &image)
            }
        })
        .collect();
    if versions.is_empty() {
        return Live::Absent;
    }
    versions.sort();
    versions.dedup();
    if versions.len() == 1 {
        Live::Version(versions.remove(0))
    } else {
        Live::Mixed(versions)
    }
}

/// One release of `flyctl releases --json` (Go field names; camelCase accepted too).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Release {
    #[serde(rename = "Version", alias = "version", default)]
    pub version: Value,
    #[serde(rename = "Status", alias = "status", default)]
    pub status: String,
    #[serde(rename = "ImageRef", alias = "imageRef", alias = "image_ref", default)]
    pub image_ref: Option<String>,
    #[serde(
        rename = "CreatedAt",
        alias = "createdAt",
        alias = "created_at",
        default
    )]
    pub created_at: Option<String>,
}

impl Release {
    fn number(&self) -> Option<i64> {
        match &self.version {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim_start_matches('v').parse().ok(),
            _ => None,
        }
    }
    fn failed(&self) -> bool {
        matches!(
            self.status.to_ascii_lowercase().as_str(),
            "failed" | "cancelled" | "canceled" | "interrupted" | "reverted"
        )
    }
}

/// Parses `flyctl releases --json`.
pub fn parse_releases(stdout: &str) -> Result<Vec<Release>, String> {
    let doc = super::json_document(stdout)?;
    serde_json::from_value(doc).map_err(|e| format!("unexpected releases list: {e}"))
}

/// The versions of the releases that did not fail, newest first, each once.
pub fn release_versions(releases: &[Release], image_template: &str, vars: &Vars) -> Vec<String> {
    let mut sorted: Vec<&Release> = releases.iter().collect();
    // flyctl lists newest first; sort by release number when every release has one.
    if sorted.iter().all(|r| r.number().is_some()) {
        sorted.sort_by_key(|r| std::cmp::Reverse(r.number()));
    }
    let mut out: Vec<String> = Vec::new();
    for r in sorted {
        if r.failed() {
            continue;
        }
        let Some(image) = r.image_ref.as_deref().filter(|i| !i.is_empty()) else {
            continue;
        };
        let v = super::version_from_image(image_template, vars, image);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
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
adapter = "fly"
image = "registry.fly.io/web:{{version}}"
[target.fly]
app = "web-prod"
bin = "/opt/flyctl"
{extra}
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
"#
        );
        crate::config::parse(std::path::Path::new("/srv/p/pipeline.toml"), &text, None).unwrap()
    }

    fn vars() -> Vars {
        Vars::new()
            .with("app", "web")
            .with("version", "v2")
            .with("deploy_id", "d1")
    }

    fn regions() -> Vec<String> {
        vec!["lhr".into(), "nrt".into()]
    }

    #[test]
    fn deploy_argv_is_one_call_for_the_stage() {
        let fly = Fly::new(&config(
            "strategy = \"rolling\"\nwait_timeout = \"5m\"\nargs = [\"--env\", \"DEPLOY={deploy_id}\"]",
        ))
        .unwrap();
        let cmds = fly.deploy_commands(&regions(), &vars(), Duration::from_secs(600));
        assert_eq!(
            cmds[0].argv,
            [
                "/opt/flyctl",
                "deploy",
                "--app",
                "web-prod",
                "--image",
                "registry.fly.io/web:v2",
                "--regions",
                "lhr,nrt",
                "--strategy",
                "rolling",
                "--wait-timeout",
                "300",
                "--yes",
                "--env",
                "DEPLOY=d1"
            ]
        );
        assert_eq!(cmds[0].timeout, Duration::from_secs(600));
        assert_eq!(cmds[0].bin_key.as_deref(), Some("target.fly.bin"));
        assert_eq!(cmds[0].cwd.as_deref(), Some(std::path::Path::new("/srv/p")));
        assert_eq!(
            cmds[1].argv,
            [
                "/opt/flyctl",
                "machines",
                "list",
                "--app",
                "web-prod",
                "--json"
            ]
        );
        assert!(fly.batches_regions());
    }

    #[test]
    fn unset_strategy_and_wait_timeout_are_omitted() {
        let fly = Fly::new(&config("")).unwrap();
        let cmds = fly.deploy_commands(&regions()[..1], &vars(), Duration::from_secs(60));
        assert_eq!(
            cmds[0].argv,
            [
                "/opt/flyctl",
                "deploy",
                "--app",
                "web-prod",
                "--image",
                "registry.fly.io/web:v2",
                "--regions",
                "lhr",
                "--yes"
            ]
        );
    }

    #[test]
    fn rollback_deploys_the_old_image_immediately() {
        let fly = Fly::new(&config("strategy = \"canary\"")).unwrap();
        let cmds = fly.rollback_commands(&regions(), Some("v1"), &vars(), Duration::from_secs(60));
        assert_eq!(
            cmds[0].argv,
            [
                "/opt/flyctl",
                "deploy",
                "--app",
                "web-prod",
                "--image",
                "registry.fly.io/web:v1",
                "--regions",
                "lhr,nrt",
                "--strategy",
                "immediate",
                "--yes"
            ]
        );
        assert!(fly
            .rollback_commands(&regions(), None, &vars(), Duration::from_secs(60))
            .is_empty());
        assert_eq!(
            fly.releases_command(Duration::from_secs(5)).argv,
            ["/opt/flyctl", "releases", "--app", "web-prod", "--json"]
        );
    }

    const MACHINES: &str = r#"Update available: 0.3.1 -> 0.3.2
[
  {"id": "m1", "name": "a", "state": "started", "region": "lhr",
   "image_ref": {"registry": "registry.fly.io", "repository": "web", "tag": "v2",
                 "digest": "sha256:aa", "labels": null},
   "config": {"image": "registry.fly.io/web:v2", "env": {"X": "1"}, "guest": {"cpus": 1}},
   "checks": [{"name": "http", "status": "passing", "output": "ok"}],
   "host_status": "ok", "unknown_field": [1, 2]},
  {"id": "m2", "state": "stopped", "region": "lhr",
   "image_ref": {"registry": "registry.fly.io", "repository": "web", "tag": "v2"},
   "config": {"image": "registry.fly.io/web:v2"}},
  {"id": "m3", "state": "started", "region": "nrt",
   "image_ref": {"registry": "registry.fly.io", "repository": "web", "tag": "v2"},
   "config": {"image": "registry.fly.io/web:v2"}},
  {"id": "m4", "state": "started", "region": "nrt",
   "image_ref": {"registry": "registry.fly.io", "repository": "web", "tag": "v1"}},
  {"id": "m5", "state": "destroyed", "region": "ams",
   "image_ref": {"registry": "registry.fly.io", "repository": "web", "tag": "v0"}}
]
"#;

    #[test]
    fn machines_give_each_region_its_version() {
        let ms = parse_machines(MACHINES).unwrap();
        assert_eq!(ms.len(), 5);
        assert_eq!(ms[0].checks[0].status, "passing");
        assert_eq!(ms[3].image(), "registry.fly.io/web:v1");
        let t = "registry.fly.io/web:{version}";
        let v = vars();
        assert_eq!(region_live(&ms, "lhr", t, &v), Live::Version("v2".into()));
        assert_eq!(
            region_live(&ms, "nrt", t, &v),
            Live::Mixed(vec!["v1".into(), "v2".into()])
        );
        assert_eq!(region_live(&ms, "ams", t, &v), Live::Absent);
        assert_eq!(region_live(&ms, "sin", t, &v), Live::Absent);
        assert_eq!(parse_machines("[]").unwrap(), vec![]);
        assert!(parse_machines("Error: not authorized").is_err());
    }

    #[test]
    fn a_region_not_on_the_new_version_has_failed() {
        assert!(check_region("lhr", &Live::Version("v2".into()), "v2").is_ok());
        let e =
            check_region("nrt", &Live::Mixed(vec!["v1".into(), "v2".into()]), "v2").unwrap_err();
        assert_eq!(
            e.message,
            "region nrt runs mixed versions (v1, v2) after deploying v2"
        );
        let e = check_region("sin", &Live::Version("v1".into()), "v2").unwrap_err();
        assert_eq!(e.message, "region sin still runs v1 after deploying v2");
        assert!(check_region("ams", &Live::Absent, "v2").is_err());
    }

    fn machine(id: &str, region: &str, tag: &str) -> Machine {
        Machine {
            id: id.into(),
            region: region.into(),
            state: "started".into(),
            image_ref: None,
            config: Some(MachineConfig {
                image: format!("registry.fly.io/web:{tag}"),
            }),
            checks: vec![],
        }
    }

    fn deploy_failed_in_nrt() -> Error {
        Error::failed("`flyctl deploy --regions lhr,nrt` exited with code 1")
            .caused_by("Error: failed to update machines in region nrt")
    }

    fn judged(results: Vec<RegionResult>) -> Vec<(String, Option<String>)> {
        results
            .into_iter()
            .map(|(r, res)| (r, res.err().map(|e| e.to_string())))
            .collect()
    }

    #[test]
    fn a_failed_batched_call_fails_only_the_regions_not_on_the_target() {
        let machines = vec![
            machine("m1", "lhr", "v1"),
            machine("m2", "lhr", "v1"),
            machine("m3", "nrt", "v2"),
            machine("m4", "nrt", "v2"),
        ];
        let out = judged(judge_regions(
            &regions(),
            "v1",
            Err(deploy_failed_in_nrt()),
            Ok(machines),
            "registry.fly.io/web:{version}",
            &vars(),
        ));
        assert_eq!(
            out,
            vec![
                ("lhr".to_string(), None),
                (
                    "nrt".to_string(),
                    Some(
                        "`flyctl deploy --regions lhr,nrt` exited with code 1: Error: failed to \
                         update machines in region nrt: region nrt still runs v2 after deploying v1"
                            .to_string()
                    )
                ),
            ]
        );
    }

    #[test]
    fn a_failed_call_with_a_mixed_region_says_so() {
        let machines = vec![
            machine("m1", "lhr", "v1"),
            machine("m3", "nrt", "v1"),
            machine("m4", "nrt", "v2"),
        ];
        let out = judge_regions(
            &regions(),
            "v1",
            Err(deploy_failed_in_nrt()),
            Ok(machines),
            "registry.fly.io/web:{version}",
            &vars(),
        );
        let nrt = out[1].1.as_ref().unwrap_err();
        assert!(
            nrt.to_string()
                .ends_with("region nrt runs mixed versions (v1, v2) after deploying v1"),
            "{nrt}"
        );
        assert!(nrt
            .hint
            .as_deref()
            .unwrap()
            .contains("flyctl machines list"));
        assert!(out[0].1.is_ok());
    }

    #[test]
    fn without_a_machines_list_every_region_fails_with_the_call_error() {
        let out = judged(judge_regions(
            &regions(),
            "v1",
            Err(deploy_failed_in_nrt()),
            Err(Error::failed("`flyctl machines list` exited with code 1")),
            "registry.fly.io/web:{version}",
            &vars(),
        ));
        let call = deploy_failed_in_nrt().to_string();
        assert_eq!(
            out,
            vec![
                ("lhr".to_string(), Some(call.clone())),
                ("nrt".to_string(), Some(call))
            ]
        );
        // A call that succeeded but cannot be checked: the read error, and the regions may
        // have changed.
        let out = judge_regions(
            &regions(),
            "v2",
            Ok(()),
            Err(Error::failed("cannot read").not_started()),
            "registry.fly.io/web:{version}",
            &vars(),
        );
        for (_, r) in &out {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.message, "cannot read");
            assert!(!e.not_started);
        }
    }

    #[test]
    fn a_successful_call_is_judged_per_region_as_before() {
        let machines = vec![machine("m1", "lhr", "v2"), machine("m3", "nrt", "v1")];
        let out = judged(judge_regions(
            &regions(),
            "v2",
            Ok(()),
            Ok(machines),
            "registry.fly.io/web:{version}",
            &vars(),
        ));
        assert_eq!(
            out,
            vec![
                ("lhr".to_string(), None),
                (
                    "nrt".to_string(),
                    Some("region nrt still runs v1 after deploying v2".to_string())
                )
            ]
        );
    }

    #[test]
    fn releases_list_versions_newest_first_without_failures() {
        let json = r#"[
          {"ID": "r3", "Version": 3, "Stable": false, "Status": "failed",
           "ImageRef": "registry.fly.io/web:v3", "CreatedAt": "2026-01-03T00:00:00Z",
           "User": {"Email": "a@b"}},
          {"ID": "r2", "Version": 2, "Status": "complete",
           "ImageRef": "registry.fly.io/web:v2", "CreatedAt": "2026-01-02T00:00:00Z"},
          {"ID": "r4", "Version": 4, "Status": "complete",
           "ImageRef": "registry.fly.io/web:v1", "CreatedAt": "2026-01-04T00:00:00Z"},
          {"ID": "r1", "Version": 1, "Status": "complete",
           "ImageRef": "registry.fly.io/web:v1", "CreatedAt": "2026-01-01T00:00:00Z"}
        ]"#;
        let rs = parse_releases(json).unwrap();
        assert_eq!(rs[0].created_at.as_deref(), Some("2026-01-03T00:00:00Z"));
        assert_eq!(
            release_versions(&rs, "registry.fly.io/web:{version}", &vars()),
            vec!["v1", "v2"]
        );
    }
}
