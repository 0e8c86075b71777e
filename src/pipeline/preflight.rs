//! Before anything changes: can every program the run may execute be started?
//!
//! A deploy whose program is missing would otherwise fail in its first region, and the rollback
//! that follows would fail too (nothing ran, so there is nothing to return to): a P0 page for a
//! run that changed nothing. This check resolves each program exactly as the executor will
//! ([`crate::exec::find_program`]) and refuses the run with exit 2 instead.
//!
//! A program whose path holds a placeholder that changes from run to run (`{version}`,
//! `{previous_version}`, `{image}`, `{deploy_id}`) cannot be checked ahead; if it cannot start
//! when its turn comes, its region is left unchanged (see [`crate::error::Error::not_started`]).

use std::path::{Path, PathBuf};

use crate::adapters::Adapter;
use crate::config::placeholder::{self, Vars};
use crate::config::{Config, GateKind, Stage};
use crate::error::Error;
use crate::exec::{find_program, ProgramProblem};

/// Placeholders whose value is only known during a run.
const PER_RUN: &[&str] = &["version", "previous_version", "image", "deploy_id"];

/// Which run is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A deploy: the adapter's every program and the stages' command gates.
    Deploy,
    /// A manual rollback: `current` and `rollback` (or `deploy` standing in for it), and the
    /// command gates when the rollback is verified.
    Rollback { verify: bool },
}

/// A program that cannot be started.
#[derive(Debug, Clone)]
pub struct Missing {
    /// `argv[0]` as it will be run (placeholders filled in).
    pub program: String,
    /// The config key that sets it.
    pub key: String,
    pub problem: ProgramProblem,
    /// The regions that would run it.
    pub regions: Vec<String>,
    /// The directory relative paths (and relative PATH entries) start from.
    pub base_dir: PathBuf,
}

impl Missing {
    /// What is wrong, and where it was looked for.
    pub fn problem(&self) -> String {
        match &self.problem {
            ProgramProblem::NotFound if self.program.contains('/') => format!(
                "no such file: {}",
                self.base_dir
                    .join(&self.program)
                    .components()
                    .collect::<PathBuf>()
                    .display()
            ),
            ProgramProblem::NotFound => "not found on PATH".to_string(),
            other => other.describe(),
        }
    }

    /// One line: the program, its key, the regions that run it, what is wrong.
    pub fn describe(&self) -> String {
        format!(
            "`{}` (set by `{}`, run in {}): {}",
            crate::redact::redact(&self.program),
            self.key,
            self.regions.join(", "),
            self.problem()
        )
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        match &self.problem {
            ProgramProblem::NotFound if self.program.contains('/') && !self.program.starts_with('/') => format!(
                "relative paths start from the pipeline file's directory ({}); create the file, or fix `{}`",
                self.base_dir.display(),
                self.key
            ),
            ProgramProblem::NotFound if self.program.contains('/') => {
                format!("install it there, or fix `{}`", self.key)
            }
            ProgramProblem::NotFound => format!(
                "install `{}` or put its directory on PATH, or set `{}` to its full path",
                self.program, self.key
            ),
            ProgramProblem::NotExecutable(p) => {
                format!("make it executable (`chmod +x {}`), or fix `{}`", p.display(), self.key)
            }
            ProgramProblem::MissingInterpreter { .. } => {
                "install the interpreter, or fix the script's `#!` line (`#!/usr/bin/env NAME` looks it up on PATH)".to_string()
            }
        }
    }
}

/// The programs of `stages` (or, for a rollback, of `regions`' stages) that cannot be started,
/// each once with every region that would run it.
pub fn missing_programs(
    config: &Config,
    adapter: &dyn Adapter,
    stages: &[&Stage],
    regions: Option<&[String]>,
    purpose: Purpose,
) -> Vec<Missing> {
    let mut out: Vec<Missing> = Vec::new();
    let adapter_programs: Vec<_> = adapter
        .programs()
        .into_iter()
        .filter(|p| purpose == Purpose::Deploy || !p.deploy_only)
        .collect();
    let check_gates = match purpose {
        Purpose::Deploy => true,
        Purpose::Rollback { verify } => verify,
    };
    for stage in stages {
        // A deploy also runs the stage's preflight gates (before anything changes).
        let preflight = stage
            .preflight
            .iter()
            .filter(|_| purpose == Purpose::Deploy);
        let mut gate_programs: Vec<(String, String)> = stage
            .gates
            .iter()
            .filter(|_| check_gates && (purpose == Purpose::Deploy || stage.verify_rollback))
            .chain(preflight)
            .filter_map(|name| config.gates.get(name))
            .filter_map(|g| match &g.kind {
                GateKind::Command(c) => c
                    .run
                    .first()
                    .map(|p| (p.clone(), format!("gate.{}.run", g.name))),
                _ => None,
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        gate_programs.retain(|p| seen.insert(p.clone()));
        let programs = adapter_programs
            .iter()
            .map(|p| (p.template.clone(), p.key.to_string()))
            .chain(gate_programs);
        let programs: Vec<(String, String)> = programs.collect();
        for region in &stage.regions {
            if regions.is_some_and(|rs| !rs.contains(region)) {
                continue;
            }
            let vars = Vars::new()
                .with("app", config.app.name.clone())
                .with("stage", stage.name.clone())
                .with("region", region.clone());
            for (template, key) in &programs {
                if let Some(m) = check(template, key, &vars, &config.base_dir) {
                    match out
                        .iter_mut()
                        .find(|o| o.program == m.program && o.key == m.key)
                    {
                        Some(o) => o.regions.push(region.clone()),
                        None => out.push(Missing {
                            regions: vec![region.clone()],
                            ..m
                        }),
                    }
                }
            }
        }
    }
    out
}

fn check(template: &str, key: &str, vars: &Vars, base_dir: &Path) -> Option<Missing> {
    if placeholder::used(template)
        .iter()
        .any(|(name, _)| PER_RUN.contains(name))
    {
        return None;
    }
    let program = vars.render(template);
    // Absolute, so that the paths in messages say where they were looked for.
    let base_dir = &base_dir
        .canonicalize()
        .unwrap_or_else(|_| base_dir.to_path_buf());
    let problem = find_program(&program, Some(base_dir)).err()?;
    Some(Missing {
        program,
        key: key.to_string(),
        problem,
        regions: Vec::new(),
        base_dir: base_dir.to_path_buf(),
    })
}

/// The exit-2 error refusing a run (`what`: "this deploy", "this rollback") because of `missing`.
pub fn refuse(what: &str, missing: &[Missing]) -> Error {
    match missing {
        [one] => Error::usage(format!(
            "cannot start `{}`, set by `{}`: {}; nothing was changed",
            crate::redact::redact(&one.program),
            one.key,
            one.problem()
        ))
        .with_detail(format!("{what} would run it in {}", one.regions.join(", ")))
        .with_hint(one.hint()),
        many => {
            let mut detail = String::new();
            for m in many {
                detail.push_str(&format!("{}\n  hint: {}\n", m.describe(), m.hint()));
            }
            Error::usage(format!(
                "{} programs {what} would run cannot be started; nothing was changed",
                many.len()
            ))
            .with_detail(detail.trim_end())
            .with_hint("fix each program above: every one must exist and be executable before anything is deployed")
        }
    }
}

/// The warning `validate` and `deploy --dry-run` print for a program a deploy would refuse.
pub fn warning(m: &Missing) -> String {
    format!(
        "{}; a deploy would refuse to start (exit 2)\n  hint: {}",
        m.describe(),
        m.hint()
    )
}
