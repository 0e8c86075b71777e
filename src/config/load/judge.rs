//! Loading `type = "judge"` gates (issue 15): every field checked, and after the stages are
//! known, each baseline checked against the stage that uses the gate.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::{hint_for, Checker};
use crate::config::model::*;
use crate::config::placeholder;
use crate::config::raw::*;

/// The keys a judge gate takes (besides the common ones).
pub(super) const KEYS: &[&str] = &[
    "url",
    "method",
    "errors",
    "requests",
    "query",
    "baseline",
    "window",
    "step",
    "direction",
    "max_ratio",
    "confidence",
    "min_samples",
    "on_inconclusive",
];

const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
const DEFAULT_STEP: Duration = Duration::from_secs(15);
/// Prometheus refuses a range query of more than 11,000 points per series.
const MAX_POINTS: u128 = 11_000;
/// Below this many points per side the normal approximation of Mann-Whitney U is poor.
pub(crate) const MIN_MANN_WHITNEY_SAMPLES: i64 = 10;

impl Checker {
    pub(super) fn judge_gate(&mut self, name: &S, gate: &Spanned<RawGate>) -> JudgeGate {
        let g = gate.get_ref();
        let table = format!("gate.{}", name.get_ref());
        let url = self.required(&g.url, gate.span(), &table, "url");
        if let Some(u) = &g.url {
            self.template(u, placeholder::NAMES);
            self.url(u);
        }
        let method = self.choice(
            &g.method,
            "judge method",
            &[
                ("rate", JudgeMethod::Rate),
                ("mann-whitney", JudgeMethod::MannWhitney),
            ],
            JudgeMethod::Rate,
        );
        type Keys<'k> = &'k [(&'k str, &'k Option<S>)];
        let (needed, refused): (Keys, Keys) = match method {
            JudgeMethod::Rate => (
                &[("errors", &g.errors), ("requests", &g.requests)],
                &[("query", &g.query)],
            ),
            JudgeMethod::MannWhitney => (
                &[("query", &g.query)],
                &[("errors", &g.errors), ("requests", &g.requests)],
            ),
        };
        for (key, value) in refused {
            if let Some(v) = value {
                self.error(
                    v.span(),
                    format!("`{key}` is not used by method = \"{}\"", method.as_str()),
                    Some(match method {
                        JudgeMethod::Rate => "method = \"rate\" takes `errors` and `requests` (counts per step); method = \"mann-whitney\" takes `query`".into(),
                        JudgeMethod::MannWhitney => "method = \"mann-whitney\" takes `query` (one value per step); method = \"rate\" takes `errors` and `requests`".into(),
                    }),
                );
            }
        }
        for (key, value) in needed {
            self.required(value, gate.span(), &table, key);
            if let Some(q) = value {
                self.template(q, placeholder::NAMES);
                self.promql(q, &format!("`{key}` of gate `{}`", name.get_ref()));
                if !placeholder::mentions(q.get_ref(), "region") {
                    self.error(
                        q.span(),
                        format!("judge `{key}` has no `{{region}}`: the canary and the baseline would read the same series"),
                        Some(format!("select the region in it, e.g. {{region=\"{{region}}\"}} (judge gate `{}`)", name.get_ref())),
                    );
                }
            }
        }
        let window = self.timeout(&g.window, "window", DEFAULT_WINDOW);
        let step = self.timeout(&g.step, "step", DEFAULT_STEP);
        if let Some(s) = &g.step {
            if step > window {
                self.error(
                    s.span(),
                    format!(
                        "`step` ({}) is longer than `window` ({})",
                        humantime::format_duration(step),
                        humantime::format_duration(window)
                    ),
                    Some(
                        "a window holds several steps: e.g. window = \"10m\", step = \"15s\""
                            .into(),
                    ),
                );
            } else if window.as_millis() / step.as_millis().max(1) > MAX_POINTS {
                self.error(
                    s.span(),
                    format!("`window` / `step` is more than {MAX_POINTS} points, which Prometheus refuses"),
                    Some("make `step` longer".into()),
                );
            }
        }
        let max_ratio = match &g.max_ratio {
            None => 1.2,
            Some(r) if r.get_ref().is_finite() && *r.get_ref() >= 1.0 => *r.get_ref(),
            Some(r) => {
                self.error(
                    r.span(),
                    format!("`max_ratio` must be at least 1, not {}", r.get_ref()),
                    Some("it is the worst canary/baseline ratio tolerated: 1.2 tolerates 20 % worse, 1 nothing worse".into()),
                );
                1.2
            }
        };
        let confidence = match &g.confidence {
            None => 0.95,
            Some(c) if *c.get_ref() > 0.0 && *c.get_ref() < 1.0 => *c.get_ref(),
            Some(c) => {
                self.error(
                    c.span(),
                    format!(
                        "`confidence` must be between 0 and 1 (exclusive), not {}",
                        c.get_ref()
                    ),
                    Some(
                        "e.g. confidence = 0.95: a probe fails when the p-value is below 0.05"
                            .into(),
                    ),
                );
                0.95
            }
        };
        let least = match method {
            JudgeMethod::Rate => 1,
            JudgeMethod::MannWhitney => MIN_MANN_WHITNEY_SAMPLES,
        };
        let min_samples = match &g.min_samples {
            None => 50,
            Some(m) if *m.get_ref() >= least && *m.get_ref() <= 1_000_000_000 => {
                *m.get_ref() as u64
            }
            Some(m) => {
                self.error(
                    m.span(),
                    format!("`min_samples` must be at least {least} for method = \"{}\", not {}", method.as_str(), m.get_ref()),
                    Some(match method {
                        JudgeMethod::Rate => "it counts requests per side; e.g. min_samples = 50".into(),
                        JudgeMethod::MannWhitney => format!("it counts points per side; below {MIN_MANN_WHITNEY_SAMPLES} the normal approximation of U is poor"),
                    }),
                );
                50
            }
        };
        JudgeGate {
            url,
            method,
            errors: g.errors.as_ref().map(|v| v.get_ref().clone()),
            requests: g.requests.as_ref().map(|v| v.get_ref().clone()),
            query: g.query.as_ref().map(|v| v.get_ref().clone()),
            baseline: self.baseline(&g.baseline),
            window,
            step,
            direction: self.choice(
                &g.direction,
                "direction",
                &[
                    ("increase", Direction::Increase),
                    ("decrease", Direction::Decrease),
                    ("either", Direction::Either),
                ],
                Direction::Increase,
            ),
            max_ratio,
            confidence,
            min_samples,
            on_inconclusive: self.choice(
                &g.on_inconclusive,
                "on_inconclusive",
                &[
                    ("wait", OnInconclusive::Wait),
                    ("pass", OnInconclusive::Pass),
                    ("fail", OnInconclusive::Fail),
                ],
                OnInconclusive::Wait,
            ),
        }
    }

    fn baseline(&mut self, value: &Option<Spanned<toml::Value>>) -> Baseline {
        let Some(v) = value else {
            return Baseline::LaterStages;
        };
        let hint = "use baseline = \"later-stages\", \"self-before\" or a list of regions such as [\"nrt\", \"sin\"]";
        match v.get_ref() {
            toml::Value::String(s) => match s.as_str() {
                "later-stages" => Baseline::LaterStages,
                "self-before" => Baseline::SelfBefore,
                other => {
                    let hint = hint_for(other, &["later-stages", "self-before"])
                        .unwrap_or_else(|| hint.into());
                    self.error(v.span(), format!("invalid baseline `{other}`"), Some(hint));
                    Baseline::LaterStages
                }
            },
            toml::Value::Array(items) if !items.is_empty() => {
                let mut regions = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(r) => regions.push(r.to_string()),
                        None => self.error(
                            v.span(),
                            format!("baseline list holds `{item}`, not a region name"),
                            Some(hint.into()),
                        ),
                    }
                }
                Baseline::Regions(regions)
            }
            toml::Value::Array(_) => {
                self.error(v.span(), "baseline lists no region", Some(hint.into()));
                Baseline::LaterStages
            }
            other => {
                self.error(
                    v.span(),
                    format!("invalid baseline `{other}`"),
                    Some(hint.into()),
                );
                Baseline::LaterStages
            }
        }
    }

    /// Each stage that uses a judge gate needs a baseline that still runs the previous
    /// version while it deploys: the regions of later stages.
    pub(super) fn judge_baselines(
        &mut self,
        raw: &RawConfig,
        stages: &[Stage],
        gates: &BTreeMap<String, Gate>,
    ) {
        for (i, (stage, rs)) in stages.iter().zip(&raw.stage).enumerate() {
            let later: Vec<&str> = stages[i + 1..]
                .iter()
                .flat_map(|s| s.regions.iter().map(String::as_str))
                .collect();
            for reference in &rs.get_ref().gates {
                let Some(GateKind::Judge(j)) = gates.get(reference.get_ref()).map(|g| &g.kind)
                else {
                    continue;
                };
                let baseline_span = raw
                    .gate
                    .iter()
                    .find(|(k, _)| k.get_ref() == reference.get_ref())
                    .and_then(|(_, g)| g.get_ref().baseline.as_ref().map(|b| b.span()))
                    .unwrap_or_else(|| reference.span());
                match &j.baseline {
                    Baseline::LaterStages if later.is_empty() => self.error(
                        reference.span(),
                        format!(
                            "judge gate `{}` compares with later stages, but `{}` is the last stage",
                            reference.get_ref(),
                            stage.name
                        ),
                        Some("give the gate baseline = \"self-before\" (the window before the deploy) or a list of regions, or use it on an earlier stage".into()),
                    ),
                    Baseline::Regions(list) => {
                        for r in list {
                            if stage.regions.contains(r) || !later.contains(&r.as_str()) {
                                let why = if stage.regions.contains(r) {
                                    format!("`{r}` is a region of `{}` itself", stage.name)
                                } else if stages.iter().any(|s| s.regions.contains(r)) {
                                    format!("`{r}` deploys before `{}` does", stage.name)
                                } else {
                                    format!("`{r}` is not a region of the pipeline")
                                };
                                self.error(
                                    baseline_span.clone(),
                                    format!(
                                        "judge gate `{}` on stage `{}` cannot use baseline region {why}",
                                        reference.get_ref(),
                                        stage.name
                                    ),
                                    Some(format!(
                                        "a baseline must still run the previous version while `{}` deploys: name regions of later stages ({}) or use \"self-before\"",
                                        stage.name,
                                        if later.is_empty() { "there are none".to_string() } else { later.join(", ") }
                                    )),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
