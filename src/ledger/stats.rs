//! `history --stats`: success and rollback rates, durations per stage, deploy frequency and gate
//! pass rates, accumulated over the records of a window in one streaming pass over the file,
//! newest first, in memory that does not grow with history: counts and means are exact, the
//! 95th percentiles exact up to [`EXACT`] durations of a kind and within [`P95_ERROR`] beyond.

use std::collections::BTreeMap;

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
    /// How far `p95_seconds` may be from the exact nearest-rank value, relative to it: 0 when
    /// there were at most [`EXACT`] durations (kept as they are), else [`P95_ERROR`] (a
    /// log-bucketed histogram; durations under a millisecond count as 0).
    pub p95_relative_error: f64,
}

impl Durations {
    pub fn of(values: &mut [f64]) -> Option<Durations> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        Some(Durations {
            count: n,
            mean_seconds: values.iter().sum::<f64>() / n as f64,
            p95_seconds: values[p95_rank(n) - 1],
            p95_relative_error: 0.0,
        })
    }
}

/// The nearest rank of the 95th percentile of `n` values (1-based).
fn p95_rank(n: usize) -> usize {
    ((0.95 * n as f64).ceil() as usize).clamp(1, n)
}

/// Up to this many durations of a kind are kept as they are (an exact p95); beyond, they go
/// into a histogram of bounded size.
pub const EXACT: usize = 4096;

/// The relative error bound of a p95 read from the histogram: buckets grow by 1 %, and the
/// value reported is a bucket's geometric middle.
pub const P95_ERROR: f64 = 0.005;

/// The histogram's buckets: `[MIN · GROWTH^i, MIN · GROWTH^(i+1))` seconds, up to ~35 years.
const GROWTH: f64 = 1.01;
const MIN_SECONDS: f64 = 0.001;
const BUCKETS: usize = 2800;

/// Count, sum and the 95th percentile of durations in bounded memory: exact up to [`EXACT`]
/// values, then a log-bucketed histogram (at most 2,800 counters) whose p95 is within
/// [`P95_ERROR`] of the exact one.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    count: u64,
    sum: f64,
    exact: Vec<f64>,
    /// Durations under a millisecond (and nonsense: negative, NaN).
    zero: u64,
    buckets: Vec<u64>,
}

impl Histogram {
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        if self.buckets.is_empty() && self.zero == 0 && self.exact.len() < EXACT {
            self.exact.push(v);
            return;
        }
        self.bucket_exact();
        self.bucket(v);
    }

    fn bucketed(&self) -> bool {
        !self.buckets.is_empty() || self.zero > 0
    }

    fn bucket_exact(&mut self) {
        for v in std::mem::take(&mut self.exact) {
            self.bucket(v);
        }
    }

    fn bucket(&mut self, v: f64) {
        if v.is_nan() || v < MIN_SECONDS {
            self.zero += 1;
            return;
        }
        let i = (((v / MIN_SECONDS).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1);
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
    }

    pub fn merge(&mut self, mut other: Histogram) {
        self.count += other.count;
        self.sum += other.sum;
        if !self.bucketed() && !other.bucketed() && self.exact.len() + other.exact.len() <= EXACT {
            self.exact.append(&mut other.exact);
            return;
        }
        self.bucket_exact();
        other.bucket_exact();
        self.zero += other.zero;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (m, o) in self.buckets.iter_mut().zip(other.buckets) {
            *m += o;
        }
    }

    pub fn durations(&self) -> Option<Durations> {
        if self.count == 0 {
            return None;
        }
        if !self.bucketed() {
            let mut exact = self.exact.clone();
            return Durations::of(&mut exact);
        }
        let rank = p95_rank(self.count as usize) as u64;
        let mut seen = self.zero;
        let mut p95 = 0.0;
        if seen < rank {
            for (i, n) in self.buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    p95 = MIN_SECONDS * GROWTH.powf(i as f64 + 0.5);
                    break;
                }
            }
        }
        Some(Durations {
            count: self.count as usize,
            mean_seconds: self.sum / self.count as f64,
            p95_seconds: p95,
            p95_relative_error: P95_ERROR,
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

fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// What the statistics need of one deploy record.
#[derive(Debug, Clone, Copy)]
struct DeployFact {
    /// Hash of the deploy id (`None`: a record without one, a deploy of its own).
    id: Option<u64>,
    /// The deploy's `started` record: its first, nothing older belongs to it.
    started: bool,
    /// The record matched the query (else it only closes the deploy: see [`StatsBuilder`]).
    counts: bool,
    /// Index into [`deploy_status::FINAL`] + 1; 0 when not final.
    status: u8,
    /// Milliseconds; `u32::MAX`: none.
    duration_ms: u32,
}

impl DeployFact {
    fn of(f: &Facts<'_>) -> DeployFact {
        let status = f.status.as_deref().unwrap_or("");
        DeployFact {
            id: f.deploy_id.as_deref().map(id_hash),
            started: status == deploy_status::STARTED,
            counts: true,
            status: deploy_status::FINAL
                .iter()
                .position(|s| *s == status)
                .map_or(0, |i| i as u8 + 1),
            duration_ms: f.duration_seconds.map_or(u32::MAX, |d| {
                (d * 1000.0).round().clamp(0.0, (u32::MAX - 1) as f64) as u32
            }),
        }
    }
}

/// What the statistics add up regardless of order: gates, stages, manual rollbacks and the
/// window.
#[derive(Debug, Default)]
struct Tally {
    manual_rollbacks: u64,
    gates: BTreeMap<String, BTreeMap<String, GateCounts>>,
    stage_durations: BTreeMap<String, Histogram>,
    /// `ts` of the newest and the oldest record seen.
    newest: Option<String>,
    oldest: Option<String>,
}

impl Tally {
    /// Adds a record older than those added before.
    fn add(&mut self, f: &Facts<'_>) {
        if self.newest.is_none() {
            self.newest = Some(f.ts.to_string());
        }
        let oldest = self.oldest.get_or_insert_with(String::new);
        oldest.clear();
        oldest.push_str(&f.ts);
        match f.kind.as_ref() {
            "stage" => {
                if let (Some(stage), Some(d)) = (&f.stage, f.duration_seconds) {
                    match self.stage_durations.get_mut(stage.as_ref()) {
                        Some(h) => h.add(d),
                        None => {
                            let mut h = Histogram::default();
                            h.add(d);
                            self.stage_durations.insert(stage.to_string(), h);
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

    /// Adds what was seen of records older than those added before.
    fn merge_older(&mut self, other: Tally) {
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
        for (stage, h) in other.stage_durations {
            self.stage_durations.entry(stage).or_default().merge(h);
        }
        if self.newest.is_none() {
            self.newest = other.newest;
        }
        if other.oldest.is_some() {
            self.oldest = other.oldest;
        }
    }
}

/// The statistics of a run of consecutive records (a chunk of the file), added newest first, to
/// be added to a [`StatsBuilder`] in order: chunks can be read on several threads.
#[derive(Debug, Default)]
pub struct StatsChunk {
    tally: Tally,
    deploys: Vec<DeployFact>,
}

impl StatsChunk {
    /// Adds a record that matched, older than those added before.
    pub fn add(&mut self, f: &Facts<'_>) {
        self.tally.add(f);
        if f.kind == "deploy" {
            self.deploys.push(DeployFact::of(f));
        }
    }

    /// A deploy's `started` record that did not match: nothing older belongs to the deploy.
    pub fn close(&mut self, deploy_id: &str) {
        self.deploys.push(DeployFact {
            id: Some(id_hash(deploy_id)),
            started: true,
            counts: false,
            status: 0,
            duration_ms: u32::MAX,
        });
    }
}

/// Accumulates [`Stats`] from records newest first, in memory that does not grow with history.
///
/// A deploy's newest record carries its final state, so it is counted when its first record
/// is seen; its id is then kept until its `started` record (its first, which every deploy
/// writes before anything else) is reached, so its older records are not counted again. Only
/// deploys still open in the scan are held: one or two in a ledger written under the deploy
/// lock. Ids are hashed to 64 bits; a collision (odds ~1e-10 between two open deploys) would
/// merge two deploys in the counts, nothing worse.
#[derive(Debug, Default)]
pub struct StatsBuilder {
    tally: Tally,
    open: std::collections::HashSet<u64>,
    deploys: u64,
    by_status: [u64; deploy_status::FINAL.len()],
    deploy_durations: Histogram,
    /// The most deploys held open at once (for tests).
    pub max_open: usize,
}

impl StatsBuilder {
    /// Adds a record that matched, older than those added before.
    pub fn add(&mut self, f: &Facts<'_>) {
        self.tally.add(f);
        if f.kind == "deploy" {
            self.deploy(DeployFact::of(f));
        }
    }

    /// See [`StatsChunk::close`].
    pub fn close(&mut self, deploy_id: &str) {
        self.open.remove(&id_hash(deploy_id));
    }

    /// Adds a chunk of records older than those added before.
    pub fn add_chunk(&mut self, chunk: StatsChunk) {
        self.tally.merge_older(chunk.tally);
        for d in chunk.deploys {
            self.deploy(d);
        }
    }

    fn deploy(&mut self, d: DeployFact) {
        let Some(id) = d.id else {
            self.count(d);
            return;
        };
        if self.open.contains(&id) {
            if d.started {
                self.open.remove(&id);
            }
            return;
        }
        if !d.counts {
            return;
        }
        self.count(d);
        if !d.started {
            self.open.insert(id);
            self.max_open = self.max_open.max(self.open.len());
        }
    }

    /// Counts a deploy by its newest record.
    fn count(&mut self, d: DeployFact) {
        self.deploys += 1;
        if d.status > 0 {
            self.by_status[d.status as usize - 1] += 1;
            if d.duration_ms != u32::MAX {
                self.deploy_durations.add(f64::from(d.duration_ms) / 1000.0);
            }
        }
    }

    /// The statistics; `since` (the window's start, when given) sets the window for the rate.
    pub fn finish(self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Stats {
        let mut stats = Stats {
            deploys: self.deploys,
            manual_rollbacks: self.tally.manual_rollbacks,
            gates: self.tally.gates,
            ..Stats::default()
        };
        for (status, n) in deploy_status::FINAL.iter().zip(self.by_status) {
            if n > 0 {
                stats.finished += n;
                stats.by_status.insert(status.to_string(), n);
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
        s.deploy_duration = self.deploy_durations.durations();
        s.stage_durations = self
            .tally
            .stage_durations
            .iter()
            .filter_map(|(k, h)| h.durations().map(|d| (k.clone(), d)))
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
        let newest = self.tally.newest.as_deref().and_then(parse);
        let oldest = self.tally.oldest.as_deref().and_then(parse);
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

/// The deploy id of a `started` deploy record, read cheaply (a substring test first): such a
/// record closes its deploy in the statistics even when it does not match the query.
pub fn started_deploy_id(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Brief<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        deploy_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        status: Option<std::borrow::Cow<'a, str>>,
    }
    let started = memchr::memmem::find(line, b"\"started\"").is_some()
        && memchr::memmem::find(line, b"\"deploy\"").is_some();
    if !started {
        return None;
    }
    let b: Brief = serde_json::from_slice(line).ok()?;
    (b.kind == "deploy" && b.status.as_deref() == Some(deploy_status::STARTED))
        .then(|| b.deploy_id.map(|d| d.into_owned()))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[String]) -> Vec<Facts<'_>> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Records in file order; the builder gets them newest first, whole or in chunks.
    fn by_chunks(facts: &[Facts<'_>], cuts: &[usize]) -> Stats {
        let mut b = StatsBuilder::default();
        let mut end = facts.len();
        for &cut in cuts.iter().rev().chain([&0]) {
            let mut chunk = StatsChunk::default();
            facts[cut..end].iter().rev().for_each(|f| chunk.add(f));
            b.add_chunk(chunk);
            end = cut;
        }
        b.finish(None, Utc::now())
    }

    #[test]
    fn chunks_do_not_change_the_result() {
        let lines: Vec<String> = [
            r#"{"ts":"2026-01-01T00:00:00Z","kind":"deploy","deploy_id":"a","status":"started"}"#,
            r#"{"ts":"2026-01-01T00:01:00Z","kind":"gate","region":"lhr","gate":"api","result":"pass"}"#,
            r#"{"ts":"2026-01-01T00:02:00Z","kind":"stage","stage":"canary","duration_seconds":5}"#,
            r#"{"ts":"2026-01-01T00:03:00Z","kind":"deploy","deploy_id":"a","status":"success","duration_seconds":9}"#,
            r#"{"ts":"2026-01-03T00:00:00Z","kind":"deploy","deploy_id":"b","status":"started"}"#,
        ]
        .map(String::from)
        .to_vec();
        let facts = parse(&lines);
        let mut whole = StatsBuilder::default();
        facts.iter().rev().for_each(|f| whole.add(f));
        let a = whole.finish(None, Utc::now());
        for cuts in [&[][..], &[1], &[3], &[2, 4], &[1, 2, 3, 4]] {
            assert_eq!(by_chunks(&facts, cuts), a, "{cuts:?}");
        }
        assert_eq!((a.deploys, a.finished, a.success_rate), (2, 1, Some(1.0)));
        assert_eq!(a.window_days, Some(2.0));
        assert_eq!(a.deploy_duration.unwrap().mean_seconds, 9.0);
    }

    #[test]
    fn a_deploy_counts_once_by_its_newest_record_and_only_open_deploys_are_held() {
        let mut lines = Vec::new();
        for d in 0..3000 {
            let rec = |status: &str| {
                format!(
                    r#"{{"ts":"2026-01-01T00:00:00Z","kind":"deploy","deploy_id":"d{d}","status":"{status}","duration_seconds":{d}}}"#
                )
            };
            lines.push(rec("started"));
            lines.push(rec("cancelling"));
            // A cancelled deploy may get its final record twice (the signal path, then the
            // engine): the newest counts.
            lines.push(rec("cancelled"));
            lines.push(rec(if d % 2 == 0 {
                "cancelled"
            } else {
                "rolled_back"
            }));
        }
        let facts = parse(&lines);
        let mut b = StatsBuilder::default();
        facts.iter().rev().for_each(|f| b.add(f));
        assert_eq!(b.max_open, 1);
        let s = b.finish(None, Utc::now());
        assert_eq!((s.deploys, s.finished), (3000, 3000));
        assert_eq!(s.by_status["cancelled"], 1500);
        assert_eq!(s.by_status["rolled_back"], 1500);
        assert_eq!(by_chunks(&facts, &[5, 1001, 1002, 7000]), s);
        // A `started` record the query skipped still closes its deploy.
        let mut b = StatsBuilder::default();
        for (f, l) in facts.iter().zip(&lines).rev() {
            match started_deploy_id(l.as_bytes()) {
                Some(id) => b.close(&id),
                None => b.add(f),
            }
        }
        assert!(b.open.is_empty());
        assert_eq!(b.finish(None, Utc::now()), s);
    }

    #[test]
    fn p95_from_the_histogram_is_within_its_stated_error() {
        let mut h = Histogram::default();
        let mut all = Vec::new();
        for i in 0..100_000u64 {
            // Skewed durations from 1 ms to hours.
            let v = 0.001 * 1.0002f64.powi((i * 7919 % 100_000) as i32);
            h.add(v);
            all.push(v);
        }
        let d = h.durations().unwrap();
        let exact = Durations::of(&mut all).unwrap();
        assert_eq!(d.count, exact.count);
        assert!((d.mean_seconds - exact.mean_seconds).abs() < 1e-9 * exact.mean_seconds);
        let err = (d.p95_seconds - exact.p95_seconds).abs() / exact.p95_seconds;
        assert!(err <= P95_ERROR, "{err}");
        assert_eq!(d.p95_relative_error, P95_ERROR);
        assert!(h.buckets.len() <= BUCKETS);
        // Few values: exact.
        let mut small = Histogram::default();
        (1..=20).for_each(|v| small.add(f64::from(v)));
        let d = small.durations().unwrap();
        assert_eq!((d.p95_seconds, d.p95_relative_error), (19.0, 0.0));
        // Merging exact and bucketed halves gives what one histogram gives.
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for (i, v) in all.iter().enumerate() {
            if i % 3 == 0 {
                a.add(*v)
            } else {
                b.add(*v)
            }
        }
        a.merge(b);
        assert_eq!(
            a.durations().unwrap().p95_seconds,
            h.durations().unwrap().p95_seconds
        );
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
