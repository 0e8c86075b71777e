//! `history --stats`: success and rollback rates, durations per stage, deploy frequency and gate
//! pass rates, accumulated over the records of a window in streaming passes over the file.

use std::collections::{BTreeMap, HashMap};

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

/// What the statistics keep of a deploy, packed (16 bytes): the offset of its latest record,
/// its duration in milliseconds (`u32::MAX`: none) and its status (an index into [`deploy_status::FINAL`] + 1; 0 when
/// it has not finished).
#[derive(Clone, Copy)]
struct DeployFact {
    offset: u64,
    duration_ms: u32,
    status: u8,
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Accumulates [`Stats`] from records in any order: each record comes with its byte offset in
/// the file, and for a deploy the record furthest into the file carries its final state. So
/// parts of a file can be read in parallel and their builders merged.
#[derive(Default)]
pub struct StatsBuilder {
    /// Hash of a deploy id → (offset, final status or `None`, duration) of its latest record.
    /// Hashed to 64 bits so years of deploys fit in a few MB; a collision (odds ~1e-10 at 100k
    /// deploys) would merge two deploys in the counts, nothing worse.
    deploys: HashMap<u64, DeployFact>,
    manual_rollbacks: u64,
    gates: BTreeMap<String, BTreeMap<String, GateCounts>>,
    stage_durations: BTreeMap<String, Vec<f64>>,
    /// (offset, `ts`) of the newest and oldest record seen (parsed once, at the end).
    newest: Option<(u64, String)>,
    oldest: Option<(u64, String)>,
}

impl StatsBuilder {
    pub fn add(&mut self, offset: u64, f: &Facts<'_>) {
        if self.newest.as_ref().is_none_or(|n| offset > n.0) {
            self.newest = Some((offset, f.ts.to_string()));
        }
        if self.oldest.as_ref().is_none_or(|o| offset < o.0) {
            self.oldest = Some((offset, f.ts.to_string()));
        }
        match f.kind.as_ref() {
            "deploy" => {
                let id = f.deploy_id.as_deref().unwrap_or(&f.id);
                let status = f.status.as_deref().unwrap_or("");
                let status = deploy_status::FINAL
                    .iter()
                    .position(|s| *s == status)
                    .map_or(0, |i| i as u8 + 1);
                let entry = DeployFact {
                    offset,
                    duration_ms: f.duration_seconds.map_or(u32::MAX, |d| {
                        (d * 1000.0).round().clamp(0.0, (u32::MAX - 1) as f64) as u32
                    }),
                    status,
                };
                let e = self.deploys.entry(id_hash(id)).or_insert(entry);
                if e.offset < offset {
                    *e = entry;
                }
            }
            "stage" => {
                if let (Some(stage), Some(d)) = (&f.stage, f.duration_seconds) {
                    match self.stage_durations.get_mut(stage.as_ref()) {
                        Some(v) => v.push(d),
                        None => {
                            self.stage_durations.insert(stage.to_string(), vec![d]);
                        }
                    }
                }
            }
            "gate" => {
                let region = f.region.as_deref().unwrap_or("");
                let gate = f.gate.as_deref().unwrap_or("");
                if !self.gates.contains_key(region) {
                    self.gates.insert(region.to_string(), BTreeMap::new());
                }
                let gates = self.gates.get_mut(region).expect("inserted above");
                if !gates.contains_key(gate) {
                    gates.insert(gate.to_string(), GateCounts::default());
                }
                let counts = gates.get_mut(gate).expect("inserted above");
                match f.result.as_deref() {
                    Some("pass") => counts.pass += 1,
                    Some("fail") => counts.fail += 1,
                    Some("tripped") => counts.tripped += 1,
                    _ => {}
                }
            }
            "rollback" if f.automatic == Some(false) => self.manual_rollbacks += 1,
            _ => {}
        }
    }

    /// Adds what another builder saw (another part of the same file).
    pub fn merge(&mut self, mut other: StatsBuilder) {
        if self.deploys.len() < other.deploys.len() {
            std::mem::swap(&mut self.deploys, &mut other.deploys);
        }
        for (id, e) in other.deploys {
            let mine = self.deploys.entry(id).or_insert(e);
            if mine.offset < e.offset {
                *mine = e;
            }
        }
        self.manual_rollbacks += other.manual_rollbacks;
        for (region, gates) in other.gates {
            let mine = self.gates.entry(region).or_default();
            for (gate, c) in gates {
                let m = mine.entry(gate).or_default();
                m.pass += c.pass;
                m.fail += c.fail;
                m.tripped += c.tripped;
            }
        }
        for (stage, mut d) in other.stage_durations {
            self.stage_durations
                .entry(stage)
                .or_default()
                .append(&mut d);
        }
        if let Some(n) = other.newest {
            if self.newest.as_ref().is_none_or(|m| n.0 > m.0) {
                self.newest = Some(n);
            }
        }
        if let Some(o) = other.oldest {
            if self.oldest.as_ref().is_none_or(|m| o.0 < m.0) {
                self.oldest = Some(o);
            }
        }
    }

    /// The statistics; `since` (the window's start, when given) sets the window for the rate.
    pub fn finish(mut self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Stats {
        let mut stats = Stats {
            deploys: self.deploys.len() as u64,
            manual_rollbacks: self.manual_rollbacks,
            gates: std::mem::take(&mut self.gates),
            ..Stats::default()
        };
        let mut deploy_durations = Vec::new();
        for d in self.deploys.values() {
            if d.status > 0 {
                let status = deploy_status::FINAL[d.status as usize - 1];
                stats.finished += 1;
                *stats.by_status.entry(status.to_string()).or_default() += 1;
                if d.duration_ms != u32::MAX {
                    deploy_durations.push(f64::from(d.duration_ms) / 1000.0);
                }
            }
        }
        let s = &mut stats;
        let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let count = |k: &str| s.by_status.get(k).copied().unwrap_or(0);
        s.success_rate = rate(count(deploy_status::SUCCESS), s.finished);
        s.rollback_rate = rate(
            count(deploy_status::ROLLED_BACK) + count(deploy_status::ROLLBACK_FAILED),
            s.finished,
        );
        s.deploy_duration = Durations::of(&mut deploy_durations);
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
        let newest = self.newest.as_ref().and_then(|n| parse(&n.1));
        let oldest = self.oldest.as_ref().and_then(|o| parse(&o.1));
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
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_parts_do_not_change_the_result() {
        let lines = [
            r#"{"ts":"2026-01-01T00:00:00Z","kind":"deploy","deploy_id":"a","status":"started"}"#,
            r#"{"ts":"2026-01-01T00:01:00Z","kind":"gate","region":"lhr","gate":"api","result":"pass"}"#,
            r#"{"ts":"2026-01-01T00:02:00Z","kind":"stage","stage":"canary","duration_seconds":5}"#,
            r#"{"ts":"2026-01-01T00:03:00Z","kind":"deploy","deploy_id":"a","status":"success","duration_seconds":9}"#,
            r#"{"ts":"2026-01-03T00:00:00Z","kind":"deploy","deploy_id":"b","status":"started"}"#,
        ];
        let facts: Vec<(u64, Facts)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 * 100, serde_json::from_str(l).unwrap()))
            .collect();
        let now = Utc::now();
        let mut forward = StatsBuilder::default();
        facts.iter().for_each(|(o, f)| forward.add(*o, f));
        let mut backward = StatsBuilder::default();
        facts.iter().rev().for_each(|(o, f)| backward.add(*o, f));
        let (mut head, mut tail) = (StatsBuilder::default(), StatsBuilder::default());
        facts[..3].iter().for_each(|(o, f)| head.add(*o, f));
        facts[3..].iter().for_each(|(o, f)| tail.add(*o, f));
        tail.merge(head);
        let a = forward.finish(None, now);
        assert_eq!(a, backward.finish(None, now));
        assert_eq!(a, tail.finish(None, now));
        assert_eq!((a.deploys, a.finished, a.success_rate), (2, 1, Some(1.0)));
        assert_eq!(a.window_days, Some(2.0));
        assert_eq!(a.deploy_duration.unwrap().mean_seconds, 9.0);
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        let d = Durations::of(&mut v).unwrap();
        assert_eq!(d.p95_seconds, 19.0);
        assert_eq!(d.mean_seconds, 10.5);
        assert_eq!(Durations::of(&mut [7.0]).unwrap().p95_seconds, 7.0);
    }
}
