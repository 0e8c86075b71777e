//! The judge gate (`type = "judge"`, issue 15): the canary region against a baseline that
//! runs the previous version at the same time (the regions of later stages), or listed
//! regions, or the canary itself before its deploy — by a statistical test, not a threshold.
//!
//! One probe:
//! 1. the window: `window` back from now (or `ctx.at`), clipped to the region's deploy
//!    (`ctx.deployed_at`); `self-before` reads the same length before the deploy instead;
//! 2. range queries at `step`, `{region}` rendered per side; baseline regions are summed
//!    (`rate`) or their points pooled (`mann-whitney`);
//! 3. fewer than `min_samples` requests (points) on either side: inconclusive, and
//!    `on_inconclusive` says what that is;
//! 4. the test ([`stats`]) and a one-line detail with n, rates or medians, the ratio or shift,
//!    the p-value and the verdict.
//!
//! Counts per point: a count query such as `increase(x[1m])` at a 15 s step counts each request
//! four times; when the query has one selector range, the sums are scaled by step / range
//! ([`query::selector_range`]) so n is the number of requests.

pub mod backtest;
pub mod query;
pub mod stats;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::placeholder::Vars;
use crate::config::{Baseline, Direction, JudgeGate, JudgeMethod, OnInconclusive};

use super::probe::{ProbeCtx, ProbeResult};
use super::prometheus::fmt_value;
use query::{QueryError, Range};
use stats::{Counts, Tail};

/// Probes a judge gate once.
pub fn probe(gate: &JudgeGate, timeout: Duration, vars: &Vars, ctx: &ProbeCtx<'_>) -> ProbeResult {
    match evaluate(gate, timeout, vars, ctx) {
        Err(e) if e.broken => ProbeResult::broken(format!("judge: {e}")),
        Err(e) => ProbeResult::fail(format!("judge: {e}")),
        Ok(Verdict::Pass(d)) => ProbeResult::pass(d),
        Ok(Verdict::Fail(d)) => ProbeResult::fail(d),
        Ok(Verdict::Inconclusive(d)) => match gate.on_inconclusive {
            OnInconclusive::Wait => ProbeResult::inconclusive(d),
            OnInconclusive::Pass => {
                ProbeResult::pass(format!("inconclusive: {d}; on_inconclusive = pass"))
            }
            OnInconclusive::Fail => {
                ProbeResult::fail(format!("inconclusive: {d}; on_inconclusive = fail"))
            }
        },
    }
}

/// Reads both sides and runs the test: the verdict before `on_inconclusive` (`judge
/// backtest` tells inconclusive apart), or why Prometheus could not be read.
pub fn evaluate(
    gate: &JudgeGate,
    timeout: Duration,
    vars: &Vars,
    ctx: &ProbeCtx<'_>,
) -> Result<Verdict, QueryError> {
    let end = ctx.at.unwrap_or_else(Utc::now);
    let (canary, baseline) = windows(gate, end, ctx.deployed_at);
    let canary_region = vars.get("region").unwrap_or_default().to_string();
    let baseline_regions: Vec<String> = match &gate.baseline {
        Baseline::LaterStages => ctx.later_regions.clone(),
        Baseline::Regions(list) => list.clone(),
        Baseline::SelfBefore => vec![canary_region.clone()],
    };
    if baseline_regions.is_empty() {
        return Err(format!(
            "no baseline for {canary_region}: no stage after its own (use baseline = \"self-before\" or a list of regions)"
        )
        .into());
    }
    let url = vars.render(&gate.url);
    let read = Reader {
        gate,
        url: &url,
        vars,
        timeout,
    };
    let canary_side = [canary_region];
    match gate.method {
        JudgeMethod::Rate => {
            let c = read.counts(&canary_side, &canary)?;
            let b = read.counts(&baseline_regions, &baseline)?;
            Ok(judge_rate(gate, c, b))
        }
        JudgeMethod::MannWhitney => {
            let c = read.values(&canary_side, &canary)?;
            let b = read.values(&baseline_regions, &baseline)?;
            Ok(judge_values(gate, &c, &b))
        }
    }
}

/// The canary's window and the baseline's: `window` back from `end`, the canary's clipped to
/// `deployed_at`; `self-before`'s baseline is the `window` before the deploy (before the
/// canary's window when no deploy time is known).
pub fn windows(
    gate: &JudgeGate,
    end: DateTime<Utc>,
    deployed_at: Option<DateTime<Utc>>,
) -> (Range, Range) {
    let window = chrono::Duration::from_std(gate.window).unwrap_or(chrono::Duration::zero());
    let mut start = end - window;
    if let Some(d) = deployed_at {
        start = start.max(d).min(end);
    }
    let canary = Range {
        start,
        end,
        step: gate.step,
    };
    let baseline = match gate.baseline {
        Baseline::SelfBefore => {
            let before = deployed_at.unwrap_or(start);
            Range {
                start: before - window,
                end: before,
                step: gate.step,
            }
        }
        _ => canary,
    };
    (canary, baseline)
}

/// What a probe concluded, before `on_inconclusive`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    Inconclusive(String),
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass(_) => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Pass(d) | Verdict::Fail(d) | Verdict::Inconclusive(d) => d,
        }
    }
}

struct Reader<'a> {
    gate: &'a JudgeGate,
    url: &'a str,
    vars: &'a Vars,
    timeout: Duration,
}

impl Reader<'_> {
    fn render(&self, template: &str, region: &str) -> String {
        self.vars.clone().with("region", region).render(template)
    }

    /// Errors and requests over `range`, summed over `regions`, series and points, scaled to
    /// requests (see the module doc).
    fn counts(&self, regions: &[String], range: &Range) -> Result<Counts, QueryError> {
        let errors = self.gate.errors.as_deref().unwrap_or_default();
        let requests = self.gate.requests.as_deref().unwrap_or_default();
        let (mut e, mut n) = (0.0, 0.0);
        for r in regions {
            e += self.sum(errors, r, range)?;
            n += self.sum(requests, r, range)?;
        }
        let count = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v.round() as u64
            } else {
                0
            }
        };
        let (e, n) = (count(e), count(n));
        Ok(Counts {
            errors: e.min(n),
            requests: n,
        })
    }

    fn sum(&self, template: &str, region: &str, range: &Range) -> Result<f64, QueryError> {
        let q = self.render(template, region);
        let total: f64 = query::values(self.url, &q, range, self.timeout)?
            .iter()
            .sum();
        let scale = match query::selector_range(&q) {
            Some(d) if !d.is_zero() => range.step.as_secs_f64() / d.as_secs_f64(),
            _ => 1.0,
        };
        Ok(total * scale)
    }

    /// Every point of `query` over `range`, pooled over `regions`.
    fn values(&self, regions: &[String], range: &Range) -> Result<Vec<f64>, QueryError> {
        let template = self.gate.query.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for r in regions {
            out.extend(query::values(
                self.url,
                &self.render(template, r),
                range,
                self.timeout,
            )?);
        }
        Ok(out.into_iter().filter(|v| v.is_finite()).collect())
    }
}

fn alpha(gate: &JudgeGate) -> f64 {
    1.0 - gate.confidence
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn percent(rate: f64) -> String {
    format!("{}%", fmt_value(rate * 100.0))
}

fn worse_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Increase => "higher",
        Direction::Decrease => "lower",
        Direction::Either => "different",
    }
}

/// The rate test on counts.
pub fn judge_rate(gate: &JudgeGate, canary: Counts, baseline: Counts) -> Verdict {
    let min = gate.min_samples;
    if canary.requests < min || baseline.requests < min {
        let (side, n) = if canary.requests < min {
            ("canary", canary.requests)
        } else {
            ("baseline", baseline.requests)
        };
        return Verdict::Inconclusive(format!(
            "{n} {side} requests < min_samples {min} (canary {}, baseline {})",
            canary.requests, baseline.requests
        ));
    }
    let p = stats::rate_p_value(canary, baseline, gate.max_ratio, gate.direction);
    let ratio = if baseline.rate() > 0.0 {
        fmt_value(canary.rate() / baseline.rate())
    } else if canary.rate() > 0.0 {
        "+Inf".into()
    } else {
        "1".into()
    };
    let facts = format!(
        "rate: canary {}/{} errors ({}) vs baseline {}/{} ({}), ratio {ratio} (max {}), p={}",
        canary.errors,
        canary.requests,
        percent(canary.rate()),
        baseline.errors,
        baseline.requests,
        percent(baseline.rate()),
        fmt_value(gate.max_ratio),
        fmt_p(p),
    );
    decide(gate, p, facts)
}

fn decide(gate: &JudgeGate, p: f64, facts: String) -> Verdict {
    let a = fmt_p(alpha(gate));
    if p < alpha(gate) {
        Verdict::Fail(format!(
            "{facts} < {a}: canary {} beyond max_ratio {}",
            worse_word(gate.direction),
            fmt_value(gate.max_ratio)
        ))
    } else {
        Verdict::Pass(format!(
            "{facts} >= {a}: within max_ratio {}",
            fmt_value(gate.max_ratio)
        ))
    }
}

/// Mann-Whitney U and the Hodges-Lehmann shift on per-step values. The shift allowed is the
/// baseline median × (max_ratio − 1) upwards, × (1 − 1/max_ratio) downwards; the p-value is
/// U's for "the shift is at most that", so it is below 1 − confidence exactly when the shift's
/// one-sided bound at `confidence` is beyond the allowed shift (up to the normal approximation).
pub fn judge_values(gate: &JudgeGate, canary: &[f64], baseline: &[f64]) -> Verdict {
    let min = gate.min_samples as usize;
    if canary.len() < min || baseline.len() < min {
        let (side, n) = if canary.len() < min {
            ("canary", canary.len())
        } else {
            ("baseline", baseline.len())
        };
        return Verdict::Inconclusive(format!(
            "{n} {side} points < min_samples {min} (canary {}, baseline {})",
            canary.len(),
            baseline.len()
        ));
    }
    let base_median = stats::median(baseline).abs();
    let up = base_median * (gate.max_ratio - 1.0);
    let down = base_median * (1.0 - 1.0 / gate.max_ratio);
    let shifted = |by: f64| -> Vec<f64> { canary.iter().map(|v| v - by).collect() };
    let p_up = || stats::mann_whitney(&shifted(up), baseline, Tail::Greater).1;
    let p_down = || stats::mann_whitney(&shifted(-down), baseline, Tail::Less).1;
    let (p, confidence, allowed) = match gate.direction {
        Direction::Increase => (p_up(), gate.confidence, format!("+{}", fmt_value(up))),
        Direction::Decrease => (p_down(), gate.confidence, format!("-{}", fmt_value(down))),
        Direction::Either => (
            (2.0 * p_up().min(p_down())).min(1.0),
            1.0 - alpha(gate) / 2.0,
            format!("±{}/{}", fmt_value(up), fmt_value(down)),
        ),
    };
    let shift = stats::hodges_lehmann(canary, baseline, confidence);
    let bound = match gate.direction {
        Direction::Increase => format!("lower bound {}", signed(shift.lower)),
        Direction::Decrease => format!("upper bound {}", signed(shift.upper)),
        Direction::Either => format!("bounds {}..{}", signed(shift.lower), signed(shift.upper)),
    };
    let facts = format!(
        "mann-whitney: canary median {} (n={}) vs baseline {} (n={}), shift {} ({}% {bound}, allowed {allowed}), p={}",
        fmt_value(stats::median(canary)),
        canary.len(),
        fmt_value(stats::median(baseline)),
        baseline.len(),
        signed(shift.estimate),
        fmt_value(confidence * 100.0),
        fmt_p(p),
    );
    decide(gate, p, facts)
}

fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", fmt_value(v))
    } else {
        fmt_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(method: JudgeMethod, direction: Direction) -> JudgeGate {
        JudgeGate {
            url: "http://prom:9090".into(),
            method,
            errors: Some("e{region}".into()),
            requests: Some("n{region}".into()),
            query: None,
            baseline: Baseline::LaterStages,
            window: Duration::from_secs(600),
            step: Duration::from_secs(15),
            direction,
            max_ratio: 1.2,
            confidence: 0.95,
            min_samples: 50,
            on_inconclusive: OnInconclusive::Wait,
        }
    }

    fn counts(errors: u64, requests: u64) -> Counts {
        Counts { errors, requests }
    }

    #[test]
    fn the_rate_verdict_names_counts_ratio_and_p() {
        let g = gate(JudgeMethod::Rate, Direction::Increase);
        let v = judge_rate(&g, counts(12, 5000), counts(0, 5000));
        assert_eq!(
            v,
            Verdict::Fail("rate: canary 12/5000 errors (0.24%) vs baseline 0/5000 (0%), ratio +Inf (max 1.2), p=0.0007 < 0.05: canary higher beyond max_ratio 1.2".into())
        );
        let v = judge_rate(&g, counts(100, 10_000), counts(100, 10_000));
        assert_eq!(v.word(), "pass", "{v:?}");
        assert!(v.detail().contains("ratio 1 (max 1.2)"), "{v:?}");
        let v = judge_rate(&g, counts(0, 12), counts(0, 5000));
        assert_eq!(
            v,
            Verdict::Inconclusive(
                "12 canary requests < min_samples 50 (canary 12, baseline 5000)".into()
            )
        );
    }

    #[test]
    fn a_lower_success_count_is_worse_when_the_direction_is_decrease() {
        // Successes as the "errors" count: the canary succeeds far less often.
        let g = gate(JudgeMethod::Rate, Direction::Decrease);
        let v = judge_rate(&g, counts(5_000, 10_000), counts(9_000, 10_000));
        assert_eq!(v.word(), "fail", "{v:?}");
        let g = gate(JudgeMethod::Rate, Direction::Increase);
        assert_eq!(
            judge_rate(&g, counts(5_000, 10_000), counts(9_000, 10_000)).word(),
            "pass"
        );
        let g = gate(JudgeMethod::Rate, Direction::Either);
        assert_eq!(
            judge_rate(&g, counts(5_000, 10_000), counts(9_000, 10_000)).word(),
            "fail"
        );
    }

    #[test]
    fn a_shift_beyond_max_ratio_fails_mann_whitney() {
        let mut g = gate(JudgeMethod::MannWhitney, Direction::Increase);
        g.min_samples = 20;
        let base: Vec<f64> = (0..40).map(|i| 100.0 + (i * 7 % 11) as f64).collect();
        let worse: Vec<f64> = base.iter().map(|v| v * 1.5).collect();
        let v = judge_values(&g, &worse, &base);
        assert_eq!(v.word(), "fail", "{v:?}");
        assert!(v.detail().contains("allowed +"), "{v:?}");
        // 10 % slower is within max_ratio 1.2.
        let slightly: Vec<f64> = base.iter().map(|v| v * 1.1).collect();
        assert_eq!(judge_values(&g, &slightly, &base).word(), "pass");
        assert_eq!(judge_values(&g, &base, &base).word(), "pass");
        assert_eq!(judge_values(&g, &base[..5], &base).word(), "inconclusive");
        // Lower is worse: a 50 % drop fails, a rise passes.
        let g = JudgeGate {
            direction: Direction::Decrease,
            ..g
        };
        let lower: Vec<f64> = base.iter().map(|v| v * 0.5).collect();
        assert_eq!(judge_values(&g, &lower, &base).word(), "fail");
        assert_eq!(judge_values(&g, &worse, &base).word(), "pass");
    }

    #[test]
    fn the_canary_window_starts_at_the_deploy() {
        let g = gate(JudgeMethod::Rate, Direction::Increase);
        let end = DateTime::from_timestamp(1_700_000_600, 0).unwrap();
        let deployed = DateTime::from_timestamp(1_700_000_300, 0).unwrap();
        let (c, b) = windows(&g, end, Some(deployed));
        assert_eq!((c.start, c.end), (deployed, end));
        assert_eq!((b.start, b.end), (deployed, end));
        let (c, _) = windows(&g, end, None);
        assert_eq!(c.start, DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let g = JudgeGate {
            baseline: Baseline::SelfBefore,
            ..g
        };
        let (_, b) = windows(&g, end, Some(deployed));
        assert_eq!(b.end, deployed);
        assert_eq!(b.start, DateTime::from_timestamp(1_699_999_700, 0).unwrap());
    }
}
