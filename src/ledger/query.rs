//! History queries: the filters of `shipgate history`, matched first with a cheap substring test
//! on the raw line and then on a borrowed, partial parse of it ([`Facts`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::error::Error;

/// The history kinds.
pub const KINDS: &[&str] = &[
    "deploy", "stage", "gate", "rollback", "event", "freeze", "approval",
];

/// The outcomes shipgate itself writes (SPEC §4): deploy, stage and rollback statuses, gate
/// results and event types. Events may carry any status text besides.
pub const OUTCOMES: &[&str] = &[
    "started",
    "success",
    "failed",
    "rolled_back",
    "partial",
    "rollback_failed",
    "cancelling",
    "cancelled",
    "blocked",
    "deploying",
    "resolved",
    "pass",
    "fail",
    "tripped",
    "inconclusive",
    "start",
    "failure",
    "progress",
];

/// The fields of a history or audit line that queries, tables and statistics use; everything else
/// is skipped unparsed. Strings borrow from the line unless they hold escapes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Facts<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub deploy_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub stage: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub stages: Vec<Str<'a>>,
    #[serde(borrow)]
    pub region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub regions: Vec<Str<'a>>,
    #[serde(borrow)]
    pub regions_detail: Keys<'a>,
    #[serde(borrow)]
    pub previous_versions: Keys<'a>,
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub result: Option<Cow<'a, str>>,
    /// An approval record's decision.
    #[serde(borrow)]
    pub decision: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub gate: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub version: Option<Cow<'a, str>>,
    pub from_version: BTreeMap<String, String>,
    pub to_version: BTreeMap<String, String>,
    pub duration_seconds: Option<f64>,
    #[serde(borrow)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub actor: Option<Cow<'a, str>>,
    /// Why: a deploy's or rollback's reason, a gate's detail.
    #[serde(borrow)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub detail: Option<Cow<'a, str>>,
    pub automatic: Option<bool>,
    pub event: Option<EventFacts>,
    // audit
    #[serde(borrow)]
    pub priority: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub title: Option<Cow<'a, str>>,
    pub delivered: Option<serde_json::Value>,
    pub failed: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventFacts {
    pub platform: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<String>,
}

impl Facts<'_> {
    /// The regions a record touches: `region`, `regions`, `regions_detail` keys, and the keys of
    /// `previous_versions`, `from_version` and `to_version`.
    pub fn touches_region(&self, r: &str) -> bool {
        self.region.as_deref() == Some(r)
            || self.regions.iter().any(|x| &**x == r)
            || self.regions_detail.contains(r)
            || self.previous_versions.contains(r)
            || self.from_version.contains_key(r)
            || self.to_version.contains_key(r)
    }

    /// The outcome shown in tables and matched by `--status`: status, gate result, event type.
    pub fn outcome(&self) -> Option<&str> {
        self.status
            .as_deref()
            .or(self.result.as_deref())
            .or(self.decision.as_deref())
            .or_else(|| self.event.as_ref().and_then(|e| e.event_type.as_deref()))
    }

    /// The version a record is about: `version`, or a rollback's target versions.
    pub fn versions(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.version.as_deref().into_iter().collect();
        for v in self.to_version.values() {
            if !out.contains(&v.as_str()) {
                out.push(v);
            }
        }
        out
    }

    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.ts)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A string borrowed from the line, or owned when it held escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The keys of a JSON object, its values skipped unparsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys<'a>(pub Vec<Str<'a>>);

impl Keys<'_> {
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|k| &**k == key)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn join(&self, sep: &str) -> String {
        self.0.join(sep)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Keys<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Keys<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<Str<'de>>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Keys(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The filters of `shipgate history`. Every one given must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub kind: Option<String>,
    pub stage: Option<String>,
    pub region: Option<String>,
    pub status: Option<String>,
    pub version: Option<String>,
}

/// A value the substring pre-filter may look for: the JSON encoding of such a value is the value
/// itself in quotes, so a line without that text cannot match.
fn plain(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-:@/ ".contains(&b))
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.kind.is_none()
            && self.stage.is_none()
            && self.region.is_none()
            && self.status.is_none()
            && self.version.is_none()
    }

    /// Quoted strings every matching line must contain, for a `memmem` test before parsing.
    pub fn needles(&self) -> Vec<Vec<u8>> {
        [
            &self.kind,
            &self.stage,
            &self.region,
            &self.status,
            &self.version,
        ]
        .into_iter()
        .flatten()
        .filter(|v| plain(v))
        .map(|v| format!("\"{v}\"").into_bytes())
        .collect()
    }

    pub fn matches(&self, f: &Facts<'_>) -> bool {
        if let Some(k) = &self.kind {
            if f.kind != k.as_str() {
                return false;
            }
        }
        if let Some(s) = &self.stage {
            if f.stage.as_deref() != Some(s.as_str()) && !f.stages.iter().any(|x| **x == **s) {
                return false;
            }
        }
        if let Some(r) = &self.region {
            if !f.touches_region(r) {
                return false;
            }
        }
        if let Some(s) = &self.status {
            if f.status.as_deref() != Some(s.as_str()) && f.result.as_deref() != Some(s.as_str()) {
                let event = f.event.as_ref().and_then(|e| e.event_type.as_deref());
                if event != Some(s.as_str()) {
                    return false;
                }
            }
        }
        if let Some(v) = &self.version {
            if !f.versions().contains(&v.as_str()) && !f.from_version.values().any(|x| x == v) {
                return false;
            }
        }
        if let Some(since) = self.since {
            match f.time() {
                Some(t) if t >= since => {}
                _ => return false,
            }
        }
        true
    }
}

/// A pre-compiled substring test: every needle must occur in the line.
pub struct Prefilter {
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl Prefilter {
    pub fn new(needles: Vec<Vec<u8>>) -> Self {
        Prefilter {
            finders: needles
                .into_iter()
                .map(|n| memchr::memmem::Finder::new(&n).into_owned())
                .collect(),
        }
    }
    pub fn may_match(&self, line: &[u8]) -> bool {
        self.finders.iter().all(|f| f.find(line).is_some())
    }
}

/// The `ts` of a raw line without parsing it (the ledger writes it near the start), if it is
/// there and readable.
pub fn raw_time(line: &[u8]) -> Option<DateTime<Utc>> {
    let key = b"\"ts\":\"";
    let start = memchr::memmem::find(&line[..line.len().min(256)], key)? + key.len();
    let len = memchr::memchr(b'"', &line[start..])?;
    let text = std::str::from_utf8(&line[start..start + len]).ok()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses `--since`: a humantime duration ago (`24h`, `7d`), a date (`2026-01-31`, midnight
/// UTC), or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    if let Ok(d) = humantime::parse_duration(text) {
        let d = chrono::Duration::from_std(d).map_err(|_| Error::usage("--since is too long"))?;
        return Ok(now - d);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    Err(Error::usage(format!("cannot read --since {text:?}"))
        .with_hint("use a duration ago (24h, 7d), a date (2026-01-31) or an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(line: &str) -> Facts<'_> {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn region_matches_field_list_and_detail_keys() {
        let f = Filter {
            region: Some("lhr".into()),
            ..Filter::default()
        };
        assert!(f.matches(&facts(r#"{"kind":"gate","region":"lhr"}"#)));
        assert!(f.matches(&facts(r#"{"kind":"stage","regions":["nrt","lhr"]}"#)));
        assert!(f.matches(&facts(
            r#"{"kind":"stage","regions_detail":{"lhr":{"status":"failed"}}}"#
        )));
        assert!(!f.matches(&facts(r#"{"kind":"stage","regions":["nrt"]}"#)));
    }

    #[test]
    fn status_matches_status_or_gate_result() {
        let f = Filter {
            status: Some("tripped".into()),
            ..Filter::default()
        };
        assert!(f.matches(&facts(r#"{"kind":"gate","result":"tripped"}"#)));
        assert!(!f.matches(&facts(r#"{"kind":"deploy","status":"success"}"#)));
    }

    #[test]
    fn since_takes_durations_dates_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-02-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("24h", now).unwrap().to_rfc3339(),
            "2026-01-31T12:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-01-31", now).unwrap().to_rfc3339(),
            "2026-01-31T00:00:00+00:00"
        );
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn prefilter_needles_are_quoted_plain_values() {
        let f = Filter {
            status: Some("failed".into()),
            version: Some("we\"ird".into()),
            ..Filter::default()
        };
        assert_eq!(f.needles(), vec![b"\"failed\"".to_vec()]);
    }
}
