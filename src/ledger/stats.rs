//! `history --stats`: success and rollback rates, durations per stage, deploy frequency and gate
//! pass rates, accumulated over the records of a window in one streaming pass (newest first).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::deploy_status;
use super::query::Facts;

/// Mean and 95th percentile (nearest rank) of a set of durations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Durations {
    pub count: usize,
    pub mean_seconds: f64,
    pub p95_seconds: f64,
}

impl Durations {
    pub fn of(values: &mut [f64]) -> Option<Durations> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Some(Durations {
            count: n,
            mean_seconds: values.iter().sum::<f64>() / n as f64,
            p95_seconds: values[rank - 1],
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GateCounts {
    pub pass: u64,
    pub fail: u64,
    pub tripped: u64,
    /// pass / (pass + fail + tripped) of the recorded results (gates record state changes).
    pub pass_rate: Option<f64>,
}

/// The statistics of a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Deploys seen (by deploy id), finished or not.
    pub deploys: u64,
    /// Deploys whose last record has a final status.
    pub finished: u64,
    /// Finished deploys by final status.
    pub by_status: BTreeMap<String, u64>,
    /// success / finished.
    pub success_rate: Option<f64>,
    /// (rolled_back + rollback_failed) / finished.
    pub rollback_rate: Option<f64>,
    /// Rollback records started by hand.
    pub manual_rollbacks: u64,
    /// Whole deploys, then each stage.
    pub deploy_duration: Option<Durations>,
    pub stage_durations: BTreeMap<String, Durations>,
    /// Deploys per day over the window.
    pub deploys_per_day: Option<f64>,
    pub window_days: Option<f64>,
    pub first: Option<String>,
    pub last: Option<String>,
    /// region → gate → counts.
    pub gates: BTreeMap<String, BTreeMap<String, GateCounts>>,
}

/// Accumulates [`Stats`] from records fed newest first.
#[derive(Default)]
pub struct StatsBuilder {
    seen: HashSet<String>,
    stats: Stats,
    deploy_durations: Vec<f64>,
    stage_durations: BTreeMap<String, Vec<f64>>,
    /// `ts` of the newest and oldest record seen (parsed once, at the end).
    newest: Option<String>,
    oldest: String,
}

impl StatsBuilder {
    pub fn add(&mut self, f: &Facts<'_>) {
        if self.newest.is_none() {
            self.newest = Some(f.ts.to_string());
        }
        self.oldest.clear();
        self.oldest.push_str(&f.ts);
        match f.kind.as_ref() {
            "deploy" => {
                let id = f.deploy_id.as_deref().unwrap_or(&f.id);
                // Newest first: the first record of a deploy carries its final state.
                if !self.seen.insert(id.to_string()) {
                    return;
                }
                self.stats.deploys += 1;
                let status = f.status.as_deref().unwrap_or("");
                if deploy_status::FINAL.contains(&status) {
                    self.stats.finished += 1;
                    *self.stats.by_status.entry(status.to_string()).or_default() += 1;
                    if let Some(d) = f.duration_seconds {
                        self.deploy_durations.push(d);
                    }
                }
            }
            "stage" => {
                if let (Some(stage), Some(d)) = (&f.stage, f.duration_seconds) {
                    self.stage_durations
                        .entry(stage.to_string())
                        .or_default()
                        .push(d);
                }
            }
            "gate" => {
                let region = f.region.as_deref().unwrap_or("");
                let gate = f.gate.as_deref().unwrap_or("");
                let counts = self
                    .stats
                    .gates
                    .entry(region.to_string())
                    .or_default()
                    .entry(gate.to_string())
                    .or_default();
                match f.result.as_deref() {
                    Some("pass") => counts.pass += 1,
                    Some("fail") => counts.fail += 1,
                    Some("tripped") => counts.tripped += 1,
                    _ => {}
                }
            }
            "rollback" if f.automatic == Some(false) => self.stats.manual_rollbacks += 1,
            _ => {}
        }
    }

    /// The statistics; `since` (the window's start, when given) sets the window for the rate.
    pub fn finish(mut self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Stats {
        let s = &mut self.stats;
        let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let count = |k: &str| s.by_status.get(k).copied().unwrap_or(0);
        s.success_rate = rate(count(deploy_status::SUCCESS), s.finished);
        s.rollback_rate = rate(
            count(deploy_status::ROLLED_BACK) + count(deploy_status::ROLLBACK_FAILED),
            s.finished,
        );
        s.deploy_duration = Durations::of(&mut self.deploy_durations);
        s.stage_durations = self
            .stage_durations
            .iter_mut()
            .filter_map(|(k, v)| Durations::of(v).map(|d| (k.clone(), d)))
            .collect();
        for gates in s.gates.values_mut() {
            for c in gates.values_mut() {
                c.pass_rate = rate(c.pass, c.pass + c.fail + c.tripped);
            }
        }
        let parse = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let newest = self.newest.as_deref().and_then(parse);
        let oldest = parse(&self.oldest);
        let start = since.or(oldest);
        let end = if since.is_some() { Some(now) } else { newest };
        if let (Some(a), Some(b)) = (start, end) {
            // At least a day, so a burst of deploys in one hour does not read as 100 a day.
            let days = ((b - a).num_seconds() as f64 / 86_400.0).max(1.0);
            s.window_days = Some(days);
            s.deploys_per_day = Some(s.deploys as f64 / days);
        }
        s.first = oldest.map(|t| t.to_rfc3339());
        s.last = newest.map(|t| t.to_rfc3339());
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        let d = Durations::of(&mut v).unwrap();
        assert_eq!(d.p95_seconds, 19.0);
        assert_eq!(d.mean_seconds, 10.5);
        assert_eq!(Durations::of(&mut [7.0]).unwrap().p95_seconds, 7.0);
    }
}
