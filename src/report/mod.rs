//! Reports: live progress (indicatif bars for a person at a terminal, timestamped plain lines
//! elsewhere), the final summary, the JSON result, and GitHub Actions annotations.
//!
//! The engine calls one [`Reporter`] from many threads; every method is `&self`.

pub mod github;
pub mod result;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{neutral, Output, ProgressMode};
use crate::redact::redact;

/// What a region is doing, as shown on its progress line.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Waiting,
    Deploying,
    /// Gates running: `passed` of `total` passed at least once; failing gates with counts.
    Gates {
        passed: usize,
        total: usize,
        failing: Vec<(String, u32, u32)>,
        baking: bool,
    },
    Healthy,
    Failed(String),
    RollingBack(String),
    Verifying,
    RolledBack(String),
    RollbackFailed(String),
}

impl Phase {
    fn text(&self) -> String {
        match self {
            Phase::Waiting => "waiting".into(),
            Phase::Deploying => "deploying".into(),
            Phase::Gates {
                passed,
                total,
                failing,
                baking,
            } => {
                // "baking" once every gate has passed and only the bake time is left.
                let mut s = if *baking && passed == total {
                    format!("gates {passed}/{total} passed, baking")
                } else {
                    format!("gates {passed}/{total} passed")
                };
                for (gate, n, of) in failing {
                    s.push_str(&format!(", {gate} failing {n}/{of}"));
                }
                s
            }
            Phase::Healthy => "healthy".into(),
            Phase::Failed(why) => format!("failed: {why}"),
            Phase::RollingBack(to) => format!("rolling back to {to}"),
            Phase::Verifying => "verifying rollback".into(),
            Phase::RolledBack(to) => format!("rolled back to {to}"),
            Phase::RollbackFailed(why) => format!("rollback failed: {why}"),
        }
    }
}

/// A region's bar: its mark (the spinner while it is live), its name padded to `width`, its
/// elapsed time next to its state, and the state cut to what is left of the terminal's width.
fn bar_style(mark: Option<&str>, width: usize) -> ProgressStyle {
    let mark = mark.unwrap_or("{spinner}");
    ProgressStyle::with_template(&format!(
        "{mark} {{prefix:<{width}}} {{elapsed:>4}}  {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The narrowest region column.
const REGION_WIDTH: usize = 8;

pub struct Reporter {
    pub output: Output,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, (ProgressBar, Instant)>>,
    last_phase: Mutex<HashMap<String, String>>,
    group_open: Mutex<bool>,
    /// The region column: as wide as the longest region name seen.
    region_width: std::sync::atomic::AtomicUsize,
}

impl Reporter {
    pub fn new(output: &Output) -> Self {
        let multi = (output.progress == ProgressMode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        if multi.is_some() {
            crate::output::set_bars(multi.clone());
        }
        Reporter {
            output: output.clone(),
            multi,
            bars: Mutex::new(HashMap::new()),
            last_phase: Mutex::new(HashMap::new()),
            group_open: Mutex::new(false),
            region_width: std::sync::atomic::AtomicUsize::new(REGION_WIDTH),
        }
    }

    /// A plain line for people: timestamped in line mode, above the bars in bar mode.
    pub fn line(&self, text: &str) {
        let text = redact(text);
        match self.output.progress {
            ProgressMode::Quiet => {}
            ProgressMode::Bars => {
                if let Some(m) = &self.multi {
                    let _ = m.println(neutral::text(&text));
                }
            }
            ProgressMode::Lines => {
                crate::say!("{} {text}", chrono::Utc::now().format("%H:%M:%S%.3f"));
            }
        }
    }

    /// A warning (not under `--quiet`); a `::warning::` annotation under GitHub Actions.
    pub fn warn(&self, text: &str) {
        self.warn_line(text);
        if self.output.github {
            github::command("warning", &[], &redact(text));
        }
    }

    /// A warning for people only: its annotation is written elsewhere.
    pub fn warn_line(&self, text: &str) {
        let text = redact(text);
        match (&self.multi, self.output.progress) {
            (Some(m), _) => {
                let _ = m.println(neutral::text(&format!("warning: {text}")));
            }
            (None, ProgressMode::Lines) => crate::say!(
                "{} warning: {text}",
                chrono::Utc::now().format("%H:%M:%S%.3f")
            ),
            // `--quiet` prints errors and the verdict only (the annotation still goes).
            (None, ProgressMode::Quiet) => {}
            (None, _) => crate::say!("warning: {text}"),
        }
    }

    /// An `::error title=…::` annotation under GitHub Actions (and a line for people).
    pub fn error(&self, title: &str, text: &str) {
        let text = self.error_line(title, text);
        if self.output.github {
            github::command("error", &[("title", title)], &text);
        }
    }

    /// The line of [`Reporter::error`] without its annotation (written elsewhere); returns
    /// the text shown.
    pub fn error_line(&self, title: &str, text: &str) -> String {
        let text = redact(text.trim_end());
        let text = text.strip_prefix("error: ").unwrap_or(&text).to_string();
        self.line(&format!("error: {title}: {text}"));
        text
    }

    pub fn stage_started(&self, index: usize, total: usize, name: &str, regions: &[String]) {
        if self.output.github {
            self.end_group();
            github::command(
                "group",
                &[],
                &format!(
                    "Stage {}/{}: {name} ({})",
                    index + 1,
                    total,
                    regions.join(", ")
                ),
            );
            *self.group_open.lock().unwrap() = true;
        }
        let header = format!("stage {}/{total} {name}: {}", index + 1, regions.join(", "));
        match &self.multi {
            Some(m) => {
                let _ = m.println(neutral::text(&self.output.bold_err(&header)));
            }
            None => self.line(&header),
        }
        let longest = regions.iter().map(|r| r.chars().count()).max();
        self.region_width.fetch_max(
            longest.unwrap_or(0).min(32),
            std::sync::atomic::Ordering::Relaxed,
        );
        for region in regions {
            self.ensure_bar(region);
        }
    }

    fn width(&self) -> usize {
        self.region_width.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn end_group(&self) {
        let mut open = self.group_open.lock().unwrap();
        if *open {
            github::command("endgroup", &[], "");
            *open = false;
        }
    }

    fn ensure_bar(&self, region: &str) {
        let Some(m) = &self.multi else { return };
        let mut bars = self.bars.lock().unwrap();
        if !bars.contains_key(region) {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(bar_style(None, self.width()));
            bar.set_prefix(neutral::inline(region).into_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bars.insert(region.to_string(), (bar, Instant::now()));
        }
    }

    /// A region changed phase: the bar's message, or one line per change.
    pub fn phase(&self, region: &str, phase: &Phase) {
        let text = redact(&phase.text());
        {
            let mut last = self.last_phase.lock().unwrap();
            if last.get(region) == Some(&text) {
                return;
            }
            last.insert(region.to_string(), text.clone());
        }
        if self.multi.is_some() {
            self.ensure_bar(region);
            let bars = self.bars.lock().unwrap();
            if let Some((bar, _)) = bars.get(region) {
                bar.set_message(neutral::inline(&text).into_owned());
                if matches!(
                    phase,
                    Phase::Healthy
                        | Phase::Failed(_)
                        | Phase::RolledBack(_)
                        | Phase::RollbackFailed(_)
                ) {
                    let mark = if matches!(phase, Phase::Healthy | Phase::RolledBack(_)) {
                        "✓"
                    } else {
                        "✗"
                    };
                    bar.set_style(bar_style(Some(mark), self.width()));
                    bar.disable_steady_tick();
                    bar.tick();
                } else {
                    // A region moving on after a final mark (failed → rolling back → verifying)
                    // is live again: the spinner and its elapsed time tick, so a rollback of
                    // minutes never looks hung. Its time counts from the rollback's start.
                    if matches!(phase, Phase::RollingBack(_)) {
                        bar.reset_elapsed();
                    }
                    bar.set_style(bar_style(None, self.width()));
                    bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
        } else {
            self.line(&format!("{region:<8} {text}"));
        }
    }

    /// A line a command printed: kept out of the bars, shown in line mode.
    pub fn command_output(&self, region: Option<&str>, line: &str) {
        if self.output.progress == ProgressMode::Lines {
            let who = region.unwrap_or("-");
            self.line(&format!("{who:<8} | {line}"));
        }
    }

    pub fn finish(&self) {
        if self.multi.is_some() {
            // Every region's last state stays on screen, above the summary.
            for (bar, _) in self.bars.lock().unwrap().values() {
                bar.disable_steady_tick();
                bar.abandon();
            }
            crate::output::set_bars(None);
        }
        self.end_group();
    }
}
