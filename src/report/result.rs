//! The result of a deploy or rollback: one structure rendered as the human summary table, the
//! `--format json` document, and the GitHub step summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionResult {
    pub region: String,
    /// `success` | `failed` | `rolled_back` | `rollback_failed` | `skipped` | `cancelled`.
    pub status: String,
    pub previous_version: Option<String>,
    /// What the region runs now, as far as we know.
    pub version: Option<String>,
    pub error: Option<String>,
    /// Gate → last verdict (`pass`, `fail`, `tripped`).
    pub gates: BTreeMap<String, String>,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageResult {
    pub name: String,
    /// `success` | `failed` | `rolled_back` | `partial` | `skipped` | `cancelled`.
    pub status: String,
    pub regions: Vec<RegionResult>,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// `deploy` or `rollback`.
    pub command: String,
    pub deploy_id: String,
    pub app: String,
    pub version: String,
    pub previous_versions: BTreeMap<String, String>,
    pub status: String,
    pub exit_code: i32,
    pub message: String,
    pub stages: Vec<StageResult>,
    pub duration_seconds: f64,
    /// Regions left on an unknown or mixed version.
    pub mixed_regions: Vec<String>,
    pub warnings: Vec<String>,
}

fn secs(d: f64) -> String {
    if d < 60.0 {
        format!("{d:.1}s")
    } else {
        format!("{}m{:02}s", (d / 60.0) as u64, (d % 60.0) as u64)
    }
}

impl RunResult {
    /// One line: what happened and the exit code (all that `--quiet` prints on success).
    pub fn verdict(&self) -> String {
        format!(
            "{} {}: {} (exit {}, {}, deploy {})",
            self.command,
            self.status,
            self.message,
            self.exit_code,
            secs(self.duration_seconds),
            self.deploy_id
        )
    }

    /// The human summary table (stdout), 80 columns for names and versions that fit theirs.
    pub fn render_human(&self) -> String {
        let mut s = String::new();
        writeln!(s).ok();
        writeln!(
            s,
            "{:<10} {:<10} {:<16} {:<16} {:<15} {:>8}",
            "STAGE", "REGION", "BEFORE", "NOW RUNS", "OUTCOME", "TIME"
        )
        .ok();
        for stage in &self.stages {
            for r in &stage.regions {
                writeln!(
                    s,
                    "{:<10} {:<10} {:<16} {:<16} {:<15} {:>8}",
                    stage.name,
                    r.region,
                    trunc(r.previous_version.as_deref().unwrap_or("-"), 16),
                    trunc(r.version.as_deref().unwrap_or("?"), 16),
                    r.status,
                    secs(r.duration_seconds)
                )
                .ok();
            }
        }
        writeln!(s).ok();
        writeln!(s, "{}", self.verdict()).ok();
        if !self.mixed_regions.is_empty() {
            writeln!(
                s,
                "regions that need a human: {}",
                self.mixed_regions.join(", ")
            )
            .ok();
        }
        for r in self.stages.iter().flat_map(|s| &s.regions) {
            if let Some(e) = &r.error {
                writeln!(s, "  {}: {}", r.region, e.lines().next().unwrap_or("")).ok();
            }
        }
        s
    }

    /// The Markdown table for `$GITHUB_STEP_SUMMARY`: every value from elsewhere is one cell
    /// ([`github::summary_cell`]: a `|` or a newline cannot break the table).
    pub fn render_markdown(&self) -> String {
        use crate::report::github::summary_cell as cell;
        let mut s = String::new();
        writeln!(
            s,
            "### shipgate {}: {} `{}` — {}",
            self.command,
            cell(&self.app),
            cell(&self.version),
            self.status
        )
        .ok();
        writeln!(s).ok();
        writeln!(
            s,
            "| Stage | Region | Before | Now runs | Outcome | Duration |"
        )
        .ok();
        writeln!(s, "| --- | --- | --- | --- | --- | --- |").ok();
        for stage in &self.stages {
            for r in &stage.regions {
                writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    cell(&stage.name),
                    cell(&r.region),
                    cell(r.previous_version.as_deref().unwrap_or("-")),
                    cell(r.version.as_deref().unwrap_or("?")),
                    r.status,
                    secs(r.duration_seconds)
                )
                .ok();
            }
        }
        writeln!(s).ok();
        writeln!(
            s,
            "{} — exit {} — deploy `{}` — {}",
            cell(&self.message),
            self.exit_code,
            cell(&self.deploy_id),
            secs(self.duration_seconds)
        )
        .ok();
        s
    }
}

fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
