//! Policy without a server: deploy windows and freezes from `pipeline.toml`, and the
//! stop-the-line freeze of `shipgate freeze` (in history, so every runner sharing the store sees
//! it). Pure functions of the config, the active freeze and an instant, so every case is a unit
//! test; [`Clock`] is the one place the instant comes from (`SHIPGATE_NOW` for tests and
//! rehearsals).
//!
//! A stage is open when no configured freeze and no stop-the-line freeze covers it, and, if any
//! window names it, at least one of those windows is open. Policy never blocks a way back:
//! `rollback` and `recover` only warn and record.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveTime, TimeZone, Utc};

use crate::config::{Config, Freeze, Window};
use crate::error::Error;
use crate::ledger::records::ActiveFreeze;

/// The variable that sets the clock (RFC 3339). From it the clock runs on in real time.
pub const NOW_ENV: &str = "SHIPGATE_NOW";

/// Where "now" comes from.
#[derive(Debug, Clone)]
pub struct Clock {
    base: DateTime<Utc>,
    started: std::time::Instant,
    simulated: bool,
}

impl Clock {
    /// The system clock, or `SHIPGATE_NOW` (exit 2 when it is not RFC 3339).
    pub fn from_env() -> Result<Clock, Error> {
        match std::env::var(NOW_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                let at = DateTime::parse_from_rfc3339(v.trim()).map_err(|e| {
                    Error::usage(format!(
                        "{NOW_ENV} is not an RFC 3339 time: `{}` ({e})",
                        crate::output::neutral::inline(&v)
                    ))
                    .with_hint("e.g. SHIPGATE_NOW=2026-12-07T09:30:00+00:00")
                })?;
                Ok(Clock {
                    base: at.with_timezone(&Utc),
                    started: std::time::Instant::now(),
                    simulated: true,
                })
            }
            _ => Ok(Clock::system()),
        }
    }

    pub fn system() -> Clock {
        Clock {
            base: Utc::now(),
            started: std::time::Instant::now(),
            simulated: false,
        }
    }

    /// Now: `SHIPGATE_NOW` plus the time since this process read it, or the system clock.
    pub fn now(&self) -> DateTime<Utc> {
        if self.simulated {
            self.base + ChronoDuration::from_std(self.started.elapsed()).unwrap_or_default()
        } else {
            Utc::now()
        }
    }

    /// `SHIPGATE_NOW` as given, when it is set: recorded with what it decided.
    pub fn simulated(&self) -> Option<String> {
        self.simulated.then(|| rfc3339(self.base))
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What keeps a stage closed.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Outside every window that names the stage.
    Window {
        names: Vec<String>,
        /// The earliest opening of one of them.
        opens: Option<(String, DateTime<Utc>)>,
    },
    /// A `[[freeze]]` of the config.
    Freeze {
        name: String,
        reason: Option<String>,
        to: DateTime<Utc>,
    },
    /// `shipgate freeze start`.
    Line(ActiveFreeze),
}

impl Block {
    /// One line: what blocks and until when.
    pub fn describe(&self, config: &Config) -> String {
        match self {
            Block::Window { names, opens } => {
                let list = names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                match opens {
                    Some((name, at)) => format!(
                        "outside window {list}; `{name}` opens {}",
                        when_in(config, name, *at)
                    ),
                    None => format!("outside window {list}, which never opens"),
                }
            }
            Block::Freeze { name, reason, to } => format!(
                "freeze `{name}`{} until {}",
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                rfc3339(*to)
            ),
            // Text from history (anyone sharing the store wrote it): one line, visible.
            Block::Line(f) => format!(
                "the line is stopped by {} since {}{}{}",
                inline(&f.actor),
                inline(&f.since),
                f.reason
                    .as_deref()
                    .map(|r| format!(": {}", inline(r)))
                    .unwrap_or_default(),
                f.until
                    .as_deref()
                    .map(|u| format!(" (until {})", inline(u)))
                    .unwrap_or_else(|| " (until `shipgate freeze end`)".into())
            ),
        }
    }
}

fn inline(s: &str) -> String {
    crate::output::neutral::inline(s).into_owned()
}

/// `at` in the named window's time zone and in UTC: "Mon 2026-12-07 09:00 GMT (09:00 UTC)".
pub fn when_in(config: &Config, window: &str, at: DateTime<Utc>) -> String {
    match config.windows.iter().find(|w| w.name == window) {
        Some(w) => format!(
            "{} ({})",
            at.with_timezone(&w.tz).format("%a %Y-%m-%d %H:%M %Z"),
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        None => at.format("%a %Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// Whether `w` is open at `at`.
pub fn window_open(w: &Window, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&w.tz);
    let (day, t) = (local.weekday(), local.time());
    if w.start < w.end {
        w.days.contains(&day) && w.start <= t && t < w.end
    } else {
        (w.days.contains(&day) && t >= w.start) || (w.days.contains(&day.pred()) && t < w.end)
    }
}

/// The instant a local date and time names in `tz`: the earlier of an ambiguous one (the hour
/// repeated when clocks go back), the first instant after a skipped one (clocks go forward).
fn local_instant(tz: chrono_tz::Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let naive = date.and_time(time);
    if let Some(t) = tz.from_local_datetime(&naive).earliest() {
        return Some(t.with_timezone(&Utc));
    }
    // In a gap: the first minute that exists after it.
    (1..=180).find_map(|m| {
        tz.from_local_datetime(&(naive + ChronoDuration::minutes(m)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// When `w` next opens at or after `at` (`at` itself when it is open).
pub fn next_open(w: &Window, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if window_open(w, at) {
        return Some(at);
    }
    let today = at.with_timezone(&w.tz).date_naive();
    (0..=8)
        .filter_map(|d| today.checked_add_days(chrono::Days::new(d)))
        .filter(|date| w.days.contains(&date.weekday()))
        .flat_map(|date| {
            // A start in the hour repeated when clocks go back happens twice: the first is
            // the opening; the second too, when the first has passed.
            let second =
                w.tz.from_local_datetime(&date.and_time(w.start))
                    .latest()
                    .map(|t| t.with_timezone(&Utc));
            [local_instant(w.tz, date, w.start), second]
        })
        .flatten()
        .find(|t| *t > at)
}

/// When `w`, open at `at`, closes.
pub fn next_close(w: &Window, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !window_open(w, at) {
        return None;
    }
    let local = at.with_timezone(&w.tz);
    let date = if w.start < w.end || local.time() < w.end {
        local.date_naive()
    } else {
        local.date_naive().succ_opt()?
    };
    // An end in the repeated hour: the one after `at`.
    let first = local_instant(w.tz, date, w.end)?;
    if first > at {
        return Some(first);
    }
    w.tz.from_local_datetime(&date.and_time(w.end))
        .latest()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t > at)
}

fn freeze_active(f: &Freeze, at: DateTime<Utc>) -> bool {
    f.from.with_timezone(&Utc) <= at && at < f.to.with_timezone(&Utc)
}

/// Whether the stop-the-line freeze `line` is in force at `at` for `stage`.
pub fn line_active(line: &ActiveFreeze, stage: &str, at: DateTime<Utc>) -> bool {
    let covers = line.stages.is_empty() || line.stages.iter().any(|s| s == stage);
    let until = line
        .until
        .as_deref()
        .and_then(|u| DateTime::parse_from_rfc3339(u).ok());
    covers && until.is_none_or(|u| at < u.with_timezone(&Utc))
}

/// What keeps `stage` closed at `at` (empty: it is open).
pub fn blocks(
    config: &Config,
    line: Option<&ActiveFreeze>,
    stage: &str,
    at: DateTime<Utc>,
) -> Vec<Block> {
    let mut out = Vec::new();
    if let Some(l) = line.filter(|l| line_active(l, stage, at)) {
        out.push(Block::Line(l.clone()));
    }
    for f in config
        .freezes
        .iter()
        .filter(|f| f.governs(stage) && freeze_active(f, at))
    {
        out.push(Block::Freeze {
            name: f.name.clone(),
            reason: f.reason.clone(),
            to: f.to.with_timezone(&Utc),
        });
    }
    let windows: Vec<&Window> = config.windows.iter().filter(|w| w.governs(stage)).collect();
    if !windows.is_empty() && !windows.iter().any(|w| window_open(w, at)) {
        let opens = windows
            .iter()
            .filter_map(|w| next_open(w, at).map(|t| (w.name.clone(), t)))
            .min_by_key(|(_, t)| *t);
        out.push(Block::Window {
            names: windows.iter().map(|w| w.name.clone()).collect(),
            opens,
        });
    }
    out
}

/// The first instant at or after `at` when every one of `stages` is open, if one comes within
/// a few weeks (a stop-the-line freeze without `until` never ends by itself).
pub fn opens_at(
    config: &Config,
    line: Option<&ActiveFreeze>,
    stages: &[&str],
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut t = at;
    for _ in 0..64 {
        let mut later: Option<DateTime<Utc>> = None;
        for stage in stages {
            for b in blocks(config, line, stage, t) {
                let lift = match b {
                    Block::Window { opens, .. } => opens.map(|(_, o)| o),
                    Block::Freeze { to, .. } => Some(to),
                    Block::Line(l) => l
                        .until
                        .as_deref()
                        .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                        .map(|u| u.with_timezone(&Utc)),
                }?;
                later = Some(later.map_or(lift, |l: DateTime<Utc>| l.max(lift)));
            }
        }
        match later {
            None => return Some(t),
            Some(l) if l <= t => return Some(t),
            Some(l) => t = l,
        }
    }
    None
}

/// For `shipgate policy`: one stage at one instant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageState {
    pub stage: String,
    pub open: bool,
    /// What keeps it closed, one line each.
    pub blocked_by: Vec<String>,
    /// When it opens (closed stages), RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens: Option<String>,
    /// When its windows close (open stages with windows), RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes: Option<String>,
}

pub fn stage_states(
    config: &Config,
    line: Option<&ActiveFreeze>,
    at: DateTime<Utc>,
) -> Vec<StageState> {
    config
        .stages
        .iter()
        .map(|s| {
            let b = blocks(config, line, &s.name, at);
            let closes = if b.is_empty() {
                config
                    .windows
                    .iter()
                    .filter(|w| w.governs(&s.name))
                    .filter_map(|w| next_close(w, at))
                    .max()
                    .map(rfc3339)
            } else {
                None
            };
            StageState {
                stage: s.name.clone(),
                open: b.is_empty(),
                blocked_by: b.iter().map(|b| b.describe(config)).collect(),
                opens: if b.is_empty() {
                    None
                } else {
                    opens_at(config, line, &[s.name.as_str()], at).map(rfc3339)
                },
                closes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
[app]
name = "web"
[target]
adapter = "exec"
[target.exec]
deploy = ["true"]
[[stage]]
name = "canary"
regions = ["lhr"]
[[stage]]
name = "primary"
regions = ["ewr"]
{extra}
"#
        );
        let dir = tempfile::tempdir().unwrap();
        crate::config::parse(&dir.path().join("pipeline.toml"), &text, Some(dir.path())).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const LONDON: &str = r#"
[[window]]
name = "eu-business"
days = ["Mon", "Tue", "Wed", "Thu"]
start = "09:00"
end = "16:00"
tz = "Europe/London"
stages = ["primary"]
"#;

    #[test]
    fn a_window_is_open_in_its_own_time_zone_across_a_dst_change() {
        let c = config(LONDON);
        let w = &c.windows[0];
        // Summer (BST, UTC+1): 09:00 London is 08:00 UTC.
        assert!(!window_open(w, at("2026-10-22T07:59:00Z")));
        assert!(window_open(w, at("2026-10-22T08:00:00Z")));
        // Clocks go back on Sunday 25 October: 09:00 London is 09:00 UTC on Monday.
        assert!(!window_open(w, at("2026-10-26T08:30:00Z")));
        assert!(window_open(w, at("2026-10-26T09:00:00Z")));
        assert_eq!(
            next_open(w, at("2026-10-22T15:30:00Z")),
            Some(at("2026-10-26T09:00:00Z")),
            "Thursday after closing: Monday, in GMT now"
        );
        assert_eq!(
            next_close(w, at("2026-10-26T10:00:00Z")),
            Some(at("2026-10-26T16:00:00Z"))
        );
    }

    #[test]
    fn starts_in_the_spring_gap_and_the_autumn_overlap() {
        // London: clocks go forward 01:00→02:00 on Sun 29 March 2026, back 02:00→01:00 on
        // Sun 25 October 2026.
        let c = config(
            "[[window]]\nname = \"night\"\ndays = [\"Sun\"]\nstart = \"01:30\"\nend = \"03:00\"\ntz = \"Europe/London\"\n",
        );
        let w = &c.windows[0];
        // 01:30 does not exist on 29 March: it opens at 02:00 BST (01:00 UTC).
        assert_eq!(
            next_open(w, at("2026-03-29T00:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // 01:30 happens twice on 25 October: 00:30 UTC (BST), then 01:30 UTC (GMT).
        assert_eq!(
            next_open(w, at("2026-10-25T00:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert!(window_open(w, at("2026-10-25T00:45:00Z")));
        assert_eq!(
            next_close(w, at("2026-10-25T00:45:00Z")),
            Some(at("2026-10-25T03:00:00Z"))
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let c = config(
            "[[window]]\nname = \"night\"\ndays = [\"Fri\"]\nstart = \"22:00\"\nend = \"02:00\"\ntz = \"UTC\"\n",
        );
        let w = &c.windows[0];
        assert!(window_open(w, at("2026-12-04T23:00:00Z"))); // Friday
        assert!(window_open(w, at("2026-12-05T01:59:00Z"))); // Saturday early
        assert!(!window_open(w, at("2026-12-05T02:00:00Z")));
        assert!(!window_open(w, at("2026-12-04T01:00:00Z"))); // Friday early: Thursday's night
        assert_eq!(
            next_close(w, at("2026-12-04T23:00:00Z")),
            Some(at("2026-12-05T02:00:00Z"))
        );
    }

    #[test]
    fn only_named_stages_are_governed_and_any_open_window_opens_a_stage() {
        let c = config(&format!(
            "{LONDON}\n[[window]]\nname = \"us\"\ndays = [\"Mon\"]\nstart = \"09:00\"\nend = \"17:00\"\ntz = \"America/New_York\"\nstages = [\"primary\"]\n"
        ));
        let monday_evening_london = at("2026-12-07T17:00:00Z"); // 12:00 in New York
        assert!(blocks(&c, None, "canary", monday_evening_london).is_empty());
        assert!(blocks(&c, None, "primary", monday_evening_london).is_empty());
        let b = blocks(&c, None, "primary", at("2026-12-07T23:00:00Z"));
        assert!(
            matches!(&b[..], [Block::Window { opens: Some((name, t)), .. }]
            if name == "eu-business" && *t == at("2026-12-08T09:00:00Z")),
            "{b:?}"
        );
    }

    #[test]
    fn freezes_and_the_stopped_line_block_until_they_end() {
        let c = config(&format!(
            "{LONDON}\n[[freeze]]\nname = \"holidays\"\nfrom = \"2026-12-22T00:00:00-05:00\"\nto = \"2027-01-05T00:00:00-05:00\"\nreason = \"holiday freeze\"\n"
        ));
        let b = blocks(&c, None, "canary", at("2026-12-24T12:00:00Z"));
        assert!(matches!(&b[..], [Block::Freeze { name, .. }] if name == "holidays"));
        // The freeze ends on a Tuesday 05:00 UTC; the window opens at 09:00 London.
        assert_eq!(
            opens_at(&c, None, &["canary", "primary"], at("2026-12-24T12:00:00Z")),
            Some(at("2027-01-05T09:00:00Z"))
        );
        let line = ActiveFreeze {
            since: "2026-12-01T10:00:00Z".into(),
            actor: "alice".into(),
            reason: Some("incident".into()),
            until: Some("2026-12-01T12:00:00Z".into()),
            stages: vec![],
        };
        assert!(matches!(
            &blocks(&c, Some(&line), "canary", at("2026-12-01T11:00:00Z"))[..],
            [Block::Line(_)]
        ));
        assert!(blocks(&c, Some(&line), "canary", at("2026-12-01T12:00:00Z")).is_empty());
        let forever = ActiveFreeze {
            until: None,
            ..line
        };
        assert_eq!(
            opens_at(&c, Some(&forever), &["canary"], at("2026-12-01T11:00:00Z")),
            None
        );
    }
}
