//! Platform adapters: fly, kubernetes and exec. Each builds argv as data (pure, unit-tested on
//! exact argv) and parses the platform's answers (pure); the executor runs them.

pub mod canary;
pub mod exec;
pub mod fly;
pub mod kubernetes;
pub mod steps;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::placeholder::Vars;
use crate::config::{AdapterKind, Config};
use crate::error::Error;
use crate::exec::{Cancel, CommandSpec, LineSink};
use crate::ledger::records::CommandRun;

/// What runs in a region, as the platform tells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "value", rename_all = "lowercase")]
pub enum Live {
    /// Every instance runs this version.
    Version(String),
    /// Instances run different versions (sorted, deduplicated).
    Mixed(Vec<String>),
    /// Nothing is deployed there (no machines, no deployment).
    Absent,
}

impl Live {
    /// The single version, if there is one.
    pub fn version(&self) -> Option<&str> {
        match self {
            Live::Version(v) => Some(v),
            _ => None,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Live::Version(v) => v.clone(),
            Live::Mixed(vs) => format!("mixed ({})", vs.join(", ")),
            Live::Absent => "nothing deployed".to_string(),
        }
    }
}

/// A program an adapter runs, as configured: checked before a run changes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// `argv[0]`, possibly holding `{placeholders}`.
    pub template: String,
    /// The config key that sets it (named when it cannot be started).
    pub key: &'static str,
    /// Only a deploy runs it; a manual rollback does not.
    pub deploy_only: bool,
}

/// What every adapter call needs besides its arguments.
pub struct RunCtx<'a> {
    pub cancel: &'a Cancel,
    /// Bound on any one command.
    pub command_timeout: Duration,
    /// Commands run here (the config file's directory).
    pub cwd: PathBuf,
    /// Each line a command prints, for the log.
    pub on_line: Option<LineSink<'a>>,
    /// Where each command run is written down for the run's records (`explain` tells them).
    pub journal: Option<&'a Journal>,
}

/// The platform commands a run made, until its next record takes them.
#[derive(Debug, Default)]
pub struct Journal(std::sync::Mutex<Vec<CommandRun>>);

impl Journal {
    fn push(&self, run: CommandRun) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(run);
    }
    /// Every command written down since the last take, in the order they started.
    pub fn take(&self) -> Vec<CommandRun> {
        let mut runs = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        runs.sort_by(|a, b| a.ts.cmp(&b.ts));
        runs
    }
}

/// What one finished (or refused) command leaves in the journal.
fn command_run(
    spec: &CommandSpec,
    ts: String,
    started: std::time::Instant,
    result: &Result<crate::exec::CommandOutput, Error>,
) -> CommandRun {
    let mut run = CommandRun {
        ts,
        command: spec.display(),
        duration_seconds: crate::pipeline::engine::secs(started.elapsed()),
        ..Default::default()
    };
    match result {
        Ok(out) => {
            run.exit_code = out.code;
            run.signal = out.signal;
            run.stderr = crate::exec::last_stderr_line(out);
        }
        Err(e) => run.error = Some(crate::pipeline::engine::first_line(&e.to_string())),
    }
    run
}

/// The outcome of deploying or rolling back one region.
pub type RegionResult = (String, Result<(), Error>);

pub trait Adapter: Send + Sync {
    fn kind(&self) -> AdapterKind;

    /// Whether one call deploys all of a stage's regions (fly: `--regions a,b`). When false, the
    /// engine calls [`Adapter::deploy`] once per region, in parallel.
    fn batches_regions(&self) -> bool;

    /// The exact commands [`Adapter::deploy`] runs for these regions (for `--dry-run` and tests).
    /// `vars` holds app, version, previous_version, stage, image, deploy_id (and region when
    /// there is one region).
    fn deploy_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec>;

    /// Deploys `vars["version"]` to `regions` and reports each region's outcome. For a batching
    /// adapter a region whose instances do not all run the new version afterwards has failed.
    fn deploy(&self, regions: &[String], vars: &Vars, ctx: &RunCtx<'_>) -> Vec<RegionResult>;

    /// Whether [`Adapter::current`] can tell what runs (the exec adapter cannot without a
    /// `current` command; the caller then relies on history).
    fn reads_live_version(&self) -> bool {
        true
    }

    /// What runs in `region` now.
    fn current(&self, region: &str, vars: &Vars, ctx: &RunCtx<'_>) -> Result<Live, Error>;

    /// The exact commands [`Adapter::current`] runs to read what runs in `regions` (for
    /// `--dry-run`): one per region, or one for all where the platform lists them at once.
    fn current_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec>;

    /// Returns `regions` to `to_version`. `vars` describe what is being left (`version` is the
    /// version the regions run now); the adapter renders its commands with `version` =
    /// `to_version` and `previous_version` = the version being left. `None` asks the platform
    /// to undo its last change
    /// (`kubectl rollout undo`) where it can, and is an error where it cannot.
    fn rollback(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Vec<RegionResult>;

    /// The exact commands [`Adapter::rollback`] runs (for `--dry-run`, confirmation prompts, tests).
    fn rollback_commands(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec>;

    /// Every program [`Adapter::deploy`], [`Adapter::current`] and [`Adapter::rollback`] may
    /// run, for the preflight check.
    fn programs(&self) -> Vec<Program>;

    /// Reads what a step in `region` is computed from (kubernetes: the replicas, the stable
    /// Deployment; fly: the machines). Nothing for adapters whose steps need nothing.
    fn step_basis(
        &self,
        _region: &str,
        _vars: &Vars,
        _ctx: &RunCtx<'_>,
    ) -> Result<steps::StepBasis, Error> {
        Ok(steps::StepBasis::default())
    }

    /// The exact commands of one step of a stepped stage in `region`: `vars["weight"]` is the
    /// new version's share. By default the deploy commands (exec renders `{weight}`).
    fn step_commands(
        &self,
        region: &str,
        vars: &Vars,
        _basis: &steps::StepBasis,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        self.deploy_commands(&[region.to_string()], vars, timeout)
    }

    /// Runs one step in each of `regions`: reads its basis, then its commands in order.
    fn deploy_step(&self, regions: &[String], vars: &Vars, ctx: &RunCtx<'_>) -> Vec<RegionResult> {
        per_region(regions, |region| {
            let vars = vars.clone().with("region", region);
            let basis = self.step_basis(region, &vars, ctx)?;
            run_in_order(
                &self.step_commands(region, &vars, &basis, ctx.command_timeout),
                ctx,
            )
        })
    }

    /// Versions the platform remembers for `region`, newest first (`flyctl releases`,
    /// `kubectl rollout history`), for rollback when history has none. Empty when it keeps none.
    fn release_history(
        &self,
        region: &str,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Result<Vec<String>, Error>;
}

/// The adapter the config names.
pub fn build(config: &Config) -> Result<Box<dyn Adapter>, Error> {
    match config.target.adapter {
        AdapterKind::Fly => Ok(Box::new(fly::Fly::new(config)?)),
        AdapterKind::Kubernetes => Ok(Box::new(kubernetes::Kubernetes::new(config)?)),
        AdapterKind::Exec => Ok(Box::new(exec::Exec::new(config)?)),
    }
}

/// Runs one adapter command in the context: its cancel token, its line sink, its directory,
/// its journal. A non-zero exit is an error showing the redacted argv and the stderr tail.
pub(crate) fn run_checked(
    spec: &CommandSpec,
    ctx: &RunCtx<'_>,
) -> Result<crate::exec::CommandOutput, Error> {
    journaled(&in_ctx(spec, ctx), ctx, Check::ExitZero, ctx.on_line)
}

/// Like [`run_checked`] for a command whose stdout is data (`--json`, `-o json`, a version):
/// only its stderr goes to the log, not a JSON document line by line.
pub(crate) fn run_checked_data(
    spec: &CommandSpec,
    ctx: &RunCtx<'_>,
) -> Result<crate::exec::CommandOutput, Error> {
    run_data_with(spec, ctx, Check::ExitZero)
}

/// Like [`run_checked_data`], but a non-zero exit is the caller's to judge.
pub(crate) fn run_data(
    spec: &CommandSpec,
    ctx: &RunCtx<'_>,
) -> Result<crate::exec::CommandOutput, Error> {
    run_data_with(spec, ctx, Check::Nothing)
}

/// Whether a non-zero exit is an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    ExitZero,
    Nothing,
}

fn run_data_with(
    spec: &CommandSpec,
    ctx: &RunCtx<'_>,
    check: Check,
) -> Result<crate::exec::CommandOutput, Error> {
    let spec = in_ctx(spec, ctx);
    match ctx.on_line {
        None => journaled(&spec, ctx, check, None),
        Some(sink) => {
            let stderr_only = |stream: crate::exec::Stream, line: &str| {
                if stream == crate::exec::Stream::Stderr {
                    sink(stream, line);
                }
            };
            journaled(&spec, ctx, check, Some(&stderr_only))
        }
    }
}

/// Runs `spec`, writing it down in the context's journal.
fn journaled(
    spec: &CommandSpec,
    ctx: &RunCtx<'_>,
    check: Check,
    on_line: Option<LineSink<'_>>,
) -> Result<crate::exec::CommandOutput, Error> {
    let ts = crate::pipeline::actor::now_rfc3339();
    let started = std::time::Instant::now();
    let result = crate::exec::run(spec, ctx.cancel, on_line);
    if let Some(journal) = ctx.journal {
        journal.push(command_run(spec, ts, started, &result));
    }
    match result {
        Ok(out) if check == Check::ExitZero && !out.success() => {
            Err(crate::exec::failure(spec, &out))
        }
        other => other,
    }
}

fn in_ctx(spec: &CommandSpec, ctx: &RunCtx<'_>) -> CommandSpec {
    let mut spec = spec.clone();
    if !ctx.cwd.as_os_str().is_empty() {
        spec.cwd = Some(ctx.cwd.clone());
    }
    spec
}

/// Runs `specs` in order, stopping at the first failure. Only a first command that never
/// started leaves the region unchanged; once one has run, a later one that cannot start does not.
pub(crate) fn run_in_order(specs: &[CommandSpec], ctx: &RunCtx<'_>) -> Result<(), Error> {
    for (i, spec) in specs.iter().enumerate() {
        run_checked(spec, ctx).map_err(|mut e| {
            e.not_started &= i == 0;
            e
        })?;
    }
    Ok(())
}

/// A copy of an error, for reporting one failure against every region it concerns.
pub(crate) fn same_error(e: &Error) -> Error {
    Error {
        code: e.code,
        message: e.message.clone(),
        causes: e.causes.clone(),
        hint: e.hint.clone(),
        detail: e.detail.clone(),
        not_started: e.not_started,
        unreadable: e.unreadable,
        locations: e.locations.clone(),
    }
}

/// The version an image reference carries, read through the image template: with
/// `registry/app:{version}-slim`, `registry/app:v1-slim` is `v1`. Falls back to the tag
/// (`repo:tag@digest` → `tag`) when the reference does not fit the template, and to the whole
/// reference when it has no tag.
pub fn version_from_image(template: &str, vars: &Vars, image: &str) -> String {
    const MARK: &str = "\u{1}shipgate-version\u{1}";
    // A digest pinned by the platform (`repo:v2@sha256:…`) is not part of the version.
    let full = image;
    let image = match image.split_once('@') {
        Some((name, _)) if !template.contains('@') => name,
        _ => image,
    };
    let marked = vars.clone().with("version", MARK).render(template);
    if let Some((prefix, suffix)) = marked.split_once(MARK) {
        if image.len() > prefix.len() + suffix.len()
            && image.starts_with(prefix)
            && image.ends_with(suffix)
        {
            let candidate = &image[prefix.len()..image.len() - suffix.len()];
            if vars.clone().with("version", candidate).render(template) == image {
                return candidate.to_string();
            }
        }
    }
    image_tag(full).unwrap_or(full).to_string()
}

/// The tag of an image reference: the part after the last `:` of its last path segment,
/// without a digest.
pub fn image_tag(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
}

/// The image for `version`: the `[target].image` template rendered with `vars`, version
/// replaced.
pub(crate) fn image_for(template: &str, vars: &Vars, version: &str) -> String {
    vars.clone().with("version", version).render(template)
}

/// The first of `names` found on PATH, or the first name (so the error names the program).
pub(crate) fn find_on_path(names: &[&str]) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            if dir.join(name).is_file() {
                return name.to_string();
            }
        }
    }
    names.first().copied().unwrap_or_default().to_string()
}

/// The JSON document in a command's stdout, tolerating lines of noise before it (update
/// notices, warnings printed to stdout) and after it.
pub(crate) fn json_document(stdout: &str) -> Result<serde_json::Value, String> {
    let trimmed = stdout.trim_start();
    let mut starts = vec![0];
    let mut offset = 0;
    for line in trimmed.split_inclusive('\n') {
        if offset > 0 && line.trim_start().starts_with(['[', '{']) {
            starts.push(offset);
        }
        offset += line.len();
    }
    let mut first_err = None;
    for start in starts {
        let mut stream =
            serde_json::Deserializer::from_str(&trimmed[start..]).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(v)) if v.is_array() || v.is_object() => return Ok(v),
            Some(Err(e)) => {
                first_err.get_or_insert_with(|| e.to_string());
            }
            _ => {}
        }
    }
    Err(first_err.unwrap_or_else(|| "no JSON document in the output".to_string()))
}

/// Runs `f` for each region on its own thread and gathers the results in `regions`' order.
pub(crate) fn per_region<F>(regions: &[String], f: F) -> Vec<RegionResult>
where
    F: Fn(&str) -> Result<(), Error> + Sync,
{
    if regions.len() <= 1 {
        return regions.iter().map(|r| (r.clone(), f(r))).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = regions
            .iter()
            .map(|r| {
                let f = &f;
                (r.clone(), s.spawn(move || f(r)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(r, h)| {
                let res = h.join().unwrap_or_else(|_| {
                    Err(Error::failed(format!("the worker for region {r} panicked")))
                });
                (r, res)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_through_the_image_template() {
        let vars = Vars::new().with("app", "web");
        let t = "registry.fly.io/{app}:{version}-slim";
        assert_eq!(
            version_from_image(t, &vars, "registry.fly.io/web:v1.2-slim"),
            "v1.2"
        );
        assert_eq!(version_from_image(t, &vars, "other.io/web:abc"), "abc");
        assert_eq!(
            version_from_image(t, &vars, "registry.fly.io/web:v3-slim@sha256:ab"),
            "v3"
        );
        assert_eq!(
            version_from_image(t, &vars, "localhost:5000/web"),
            "localhost:5000/web"
        );
        assert_eq!(image_tag("localhost:5000/web:v3@sha256:ab"), Some("v3"));
        assert_eq!(image_tag("web@sha256:ab"), None);
        assert_eq!(
            version_from_image(t, &vars, "web@sha256:ab"),
            "web@sha256:ab"
        );
    }

    #[test]
    fn json_is_found_after_noise() {
        let v = json_document("Update available 0.1 -> 0.2\n[{\"a\":1}]\ntrailing\n").unwrap();
        assert_eq!(v, serde_json::json!([{"a": 1}]));
        assert!(json_document("nothing here").is_err());
    }
}
