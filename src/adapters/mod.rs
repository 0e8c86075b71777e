//! Platform adapters: fly, kubernetes and exec. Each builds argv as data (pure, unit-tested on
//! exact argv) and parses the platform's answers (pure); the executor runs them.

pub mod exec;
pub mod fly;
pub mod kubernetes;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::placeholder::Vars;
use crate::config::{AdapterKind, Config};
use crate::error::Error;
use crate::exec::{Cancel, CommandSpec, LineSink};

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

/// What every adapter call needs besides its arguments.
pub struct RunCtx<'a> {
    pub cancel: &'a Cancel,
    /// Bound on any one command.
    pub command_timeout: Duration,
    /// Commands run here (the config file's directory).
    pub cwd: PathBuf,
    /// Each line a command prints, for the log.
    pub on_line: Option<LineSink<'a>>,
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

    /// What runs in `region` now.
    fn current(&self, region: &str, vars: &Vars, ctx: &RunCtx<'_>) -> Result<Live, Error>;

    /// Returns `regions` to `to_version`; `None` asks the platform to undo its last change
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
