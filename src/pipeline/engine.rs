//! What a run borrows from the command that set it up ([`Engine`]), and the few things every
//! step does with it: placeholder values, command contexts, records, notifications, and reading
//! what runs where ([`Engine::capture`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::adapters::{Adapter, Live, RunCtx};
use crate::config::placeholder::Vars;
use crate::config::{Config, Priority};
use crate::error::Error;
use crate::exec::Cancel;
use crate::ledger::records::*;
use crate::ledger::Ledger;
use crate::notify::queue::Queue;
use crate::notify::Notification;
use crate::report::Reporter;

use super::actor::Invocation;
use super::progress::Progress;
use super::signals::Signals;

/// Everything a run needs, borrowed from the command that set it up.
pub struct Engine<'a> {
    pub config: &'a Config,
    pub adapter: &'a dyn Adapter,
    pub ledger: &'a Ledger,
    /// Notifications and events are queued, never delivered on the deploy's path.
    pub notify: &'a Queue,
    pub reporter: &'a Reporter,
    pub signals: &'a Signals,
    pub invocation: &'a Invocation,
    /// The deploy's id (or a manual rollback's own id).
    pub deploy_id: String,
    /// The version being deployed (empty for a manual rollback).
    pub version: String,
    /// Where each region this run changed stands, for the records a signal writes at once.
    pub progress: std::sync::Arc<Progress>,
    /// The platform commands run since the last record that carries them.
    pub journal: crate::adapters::Journal,
}

/// Placeholder values of a run (SPEC §2): app, deploy id, stage, region, version, previous
/// version, and the image rendered from them.
pub fn vars(
    config: &Config,
    deploy_id: &str,
    stage: Option<&str>,
    region: Option<&str>,
    version: &str,
    previous: Option<&str>,
) -> Vars {
    let mut vars = Vars::new();
    vars.set("app", config.app.name.clone())
        .set("version", version)
        .set("deploy_id", deploy_id);
    if let Some(s) = stage {
        vars.set("stage", s);
        // A stepped stage's commands know it by `{weight}`: 100 unless a step says less (a
        // rollback gives the version returned to the whole region).
        if config.stage(s).is_some_and(|st| st.stepped()) {
            vars.set(crate::config::placeholder::WEIGHT, "100");
        }
    }
    if let Some(r) = region {
        vars.set("region", r);
    }
    vars.set("previous_version", previous.unwrap_or(""));
    if let Some(image) = &config.target.image {
        let rendered = vars.render(image);
        vars.set("image", rendered);
    }
    vars
}

pub(crate) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

impl Engine<'_> {
    /// Placeholder values for a region (or a shared gate when `region` is `None`).
    pub fn vars(
        &self,
        stage: Option<&str>,
        region: Option<&str>,
        version: &str,
        previous: Option<&str>,
    ) -> Vars {
        vars(
            self.config,
            &self.deploy_id,
            stage,
            region,
            version,
            previous,
        )
    }

    pub(crate) fn ctx<'c>(
        &'c self,
        cancel: &'c Cancel,
        timeout: Duration,
        on_line: &'c (dyn Fn(crate::exec::Stream, &str) + Sync),
    ) -> RunCtx<'c> {
        RunCtx {
            cancel,
            command_timeout: timeout,
            cwd: self.config.base_dir.clone(),
            on_line: Some(on_line),
            journal: Some(&self.journal),
        }
    }

    /// Records a history line; false (and shown) when it cannot be written. From then on
    /// [`Ledger::cannot_record`] says so to the whole run: it starts nothing new.
    pub fn record(&self, mut record: HistoryRecord) -> bool {
        if let Some(commands) = record.commands_mut() {
            commands.extend(self.journal.take());
        }
        match self.ledger.append_history(&record) {
            Ok(appended) => {
                if let Some(w) = appended.warning {
                    self.reporter.warn(&w);
                }
                true
            }
            Err(e) => {
                self.reporter.warn(&format!(
                    "cannot record a {} record in history: {e}",
                    record.kind()
                ));
                false
            }
        }
    }

    /// The command timeout of `region`'s stage.
    pub fn command_timeout(&self, region: &str) -> Duration {
        self.config
            .stage_of(region)
            .map(|s| s.command_timeout)
            .unwrap_or(self.config.defaults.command_timeout)
    }

    pub fn notify(
        &self,
        priority: Priority,
        title: String,
        message: String,
        context: serde_json::Value,
    ) {
        let n = Notification {
            priority,
            title,
            message,
            context,
            deploy_id: Some(self.deploy_id.clone()),
        };
        self.notify.send(n);
    }

    /// Reads what runs in each region now, in parallel. Regions whose read fails are returned
    /// with their error.
    /// What each region of a stepped stage's steps are computed from (for the dry run's exact
    /// argv); a region that cannot be read is left out, with a warning.
    pub fn step_bases(
        &self,
        stages: &[&crate::config::Stage],
        warn: &mut dyn FnMut(&str),
    ) -> BTreeMap<String, crate::adapters::steps::StepBasis> {
        let on_line = |_: crate::exec::Stream, _: &str| {};
        let mut bases = BTreeMap::new();
        for stage in stages.iter().filter(|s| s.stepped()) {
            for r in &stage.regions {
                let vars = self.vars(Some(&stage.name), Some(r), &self.version, None);
                let ctx = self.ctx(&self.signals.work, stage.command_timeout, &on_line);
                match self.adapter.step_basis(r, &vars, &ctx) {
                    Ok(b) => {
                        bases.insert(r.clone(), b);
                    }
                    Err(e) => warn(&format!(
                        "cannot read what the steps in {r} start from ({}): shown with placeholders",
                        first_line(&e.to_string())
                    )),
                }
            }
        }
        bases
    }

    pub fn capture(
        &self,
        regions: &[String],
        cancel: &Cancel,
    ) -> BTreeMap<String, Result<Live, Error>> {
        if !self.adapter.reads_live_version() {
            // No way to ask the platform (exec without `current`): history says what runs.
            let status = self.ledger.status(&mut Vec::new()).unwrap_or_default();
            return regions
                .iter()
                .map(|r| {
                    let known = status.regions.get(r).and_then(|s| s.known_version());
                    let live = known.map(|v| Live::Version(v.to_string()));
                    (r.clone(), Ok(live.unwrap_or(Live::Absent)))
                })
                .collect();
        }
        let on_line = |_: crate::exec::Stream, _: &str| {};
        std::thread::scope(|s| {
            let handles: Vec<_> = regions
                .iter()
                .map(|r| {
                    let stage = self.config.stage_of(r).map(|s| s.name.clone());
                    let timeout = self.command_timeout(r);
                    let on_line = &on_line;
                    s.spawn(move || {
                        let vars = self.vars(stage.as_deref(), Some(r), &self.version, None);
                        let ctx = self.ctx(cancel, timeout, on_line);
                        (r.clone(), self.adapter.current(r, &vars, &ctx))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("capture thread panicked"))
                .collect()
        })
    }
}
