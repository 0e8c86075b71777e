//! `shipgate judge backtest`: which recorded deploys a judge gate would have failed. This part
//! is pure: it reads history records into each deploy's gate windows (the replay and the table
//! are `commands/judge.rs`).
//!
//! A region's window runs from its stage's `started` record (the deploy command's start: the
//! ready time is not recorded) to the first trip recorded for it in that stage (a deploy
//! probe, not a rollback's verification), or else the stage's end. So a rolled-back canary is
//! judged on what was seen before its rollback, not after.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::ledger::records::{DeployStatus, HistoryRecord, RegionState, StageStatus};

/// One region of one stage of one deploy: what the judge would have seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub stage: String,
    pub region: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// What the region ran before (the baseline ran it too).
    pub previous: Option<String>,
}

/// How history says a deploy ended, as the backtest scores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// `rolled_back` or `rollback_failed`: a rollback the judge should catch.
    RolledBack,
    /// `success`: a healthy deploy the judge should pass.
    Healthy,
    /// Anything else (failed deploy commands, partial, cancelled, blocked, unfinished): shown,
    /// not scored.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub deploy_id: String,
    pub version: String,
    pub status: DeployStatus,
    pub started: DateTime<Utc>,
    pub episodes: Vec<Episode>,
}

impl Case {
    pub fn recorded(&self) -> Recorded {
        match self.status {
            DeployStatus::RolledBack | DeployStatus::RollbackFailed => Recorded::RolledBack,
            DeployStatus::Success => Recorded::Healthy,
            _ => Recorded::Other,
        }
    }
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The deploys started since `since`, oldest first, each with the windows of its regions in
/// `stages` (the stages that use the gate). `records` are (ts, record) in file order.
pub fn cases(
    records: impl IntoIterator<Item = (DateTime<Utc>, HistoryRecord)>,
    stages: &[String],
    since: DateTime<Utc>,
) -> Vec<Case> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Case> = BTreeMap::new();
    // (deploy, stage, region) → start, previous version; and → first trip.
    type Key = (String, String, String);
    let mut starts: BTreeMap<Key, (DateTime<Utc>, Option<String>)> = BTreeMap::new();
    let mut trips: BTreeMap<Key, DateTime<Utc>> = BTreeMap::new();
    for (ts, record) in records {
        match record {
            HistoryRecord::Deploy(d) => {
                if d.status == DeployStatus::Started && !by_id.contains_key(&d.deploy_id) {
                    if ts < since {
                        continue;
                    }
                    order.push(d.deploy_id.clone());
                    by_id.insert(
                        d.deploy_id.clone(),
                        Case {
                            deploy_id: d.deploy_id.clone(),
                            version: d.version.clone(),
                            status: d.status,
                            started: time(&d.start_time).unwrap_or(ts),
                            episodes: Vec::new(),
                        },
                    );
                } else if let Some(c) = by_id.get_mut(&d.deploy_id) {
                    c.status = d.status;
                }
            }
            HistoryRecord::Gate(g) if g.result == "tripped" && !g.verifying => {
                trips.entry((g.deploy_id, g.stage, g.region)).or_insert(ts);
            }
            HistoryRecord::Stage(s) if stages.contains(&s.stage) => {
                let Some(case) = by_id.get_mut(&s.deploy_id) else {
                    continue;
                };
                if s.status == StageStatus::Started {
                    let start = time(&s.start_time).unwrap_or(ts);
                    for r in &s.regions {
                        let previous = s
                            .regions_detail
                            .get(r)
                            .and_then(|d| d.previous_version.clone());
                        starts
                            .entry((s.deploy_id.clone(), s.stage.clone(), r.clone()))
                            .or_insert((start, previous));
                    }
                    continue;
                }
                let end = s.end_time.as_deref().and_then(time).unwrap_or(ts);
                for r in &s.regions {
                    let key = (s.deploy_id.clone(), s.stage.clone(), r.clone());
                    let touched = s
                        .regions_detail
                        .get(r)
                        .is_none_or(|d| d.status != RegionState::Skipped);
                    let Some((start, previous)) = starts.get(&key).cloned() else {
                        continue;
                    };
                    if !touched
                        || case
                            .episodes
                            .iter()
                            .any(|e| e.stage == s.stage && &e.region == r)
                    {
                        continue;
                    }
                    let end = trips.get(&key).map_or(end, |t| (*t).min(end)).max(start);
                    case.episodes.push(Episode {
                        stage: s.stage.clone(),
                        region: r.clone(),
                        start,
                        end,
                        previous,
                    });
                }
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::records::*;

    fn at(s: &str) -> DateTime<Utc> {
        time(s).unwrap()
    }

    fn deploy(id: &str, status: DeployStatus, ts: &str) -> (DateTime<Utc>, HistoryRecord) {
        (
            at(ts),
            HistoryRecord::Deploy(DeployRecord {
                deploy_id: id.into(),
                version: "v2".into(),
                status,
                start_time: ts.into(),
                ..Default::default()
            }),
        )
    }

    fn stage(
        id: &str,
        status: StageStatus,
        ts: &str,
        regions: &[(&str, RegionState)],
    ) -> (DateTime<Utc>, HistoryRecord) {
        (
            at(ts),
            HistoryRecord::Stage(StageRecord {
                deploy_id: id.into(),
                stage: "canary".into(),
                regions: regions.iter().map(|(r, _)| r.to_string()).collect(),
                status,
                start_time: ts.into(),
                end_time: (status != StageStatus::Started).then(|| ts.into()),
                regions_detail: regions
                    .iter()
                    .map(|(r, s)| {
                        (
                            r.to_string(),
                            RegionDetail {
                                status: *s,
                                previous_version: Some("v1".into()),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn windows_run_from_the_stage_start_to_the_trip_or_the_stage_end() {
        let trip = (
            at("2026-01-01T10:07:00Z"),
            HistoryRecord::Gate(GateRecord {
                deploy_id: "b".into(),
                stage: "canary".into(),
                region: "lhr".into(),
                result: "tripped".into(),
                ..Default::default()
            }),
        );
        let records = vec![
            deploy("old", DeployStatus::Started, "2025-12-01T10:00:00Z"),
            deploy("a", DeployStatus::Started, "2026-01-01T09:00:00Z"),
            stage(
                "a",
                StageStatus::Started,
                "2026-01-01T09:00:01Z",
                &[("lhr", RegionState::Deploying)],
            ),
            stage(
                "a",
                StageStatus::Success,
                "2026-01-01T09:10:00Z",
                &[("lhr", RegionState::Success)],
            ),
            deploy("a", DeployStatus::Success, "2026-01-01T09:20:00Z"),
            deploy("b", DeployStatus::Started, "2026-01-01T10:00:00Z"),
            stage(
                "b",
                StageStatus::Started,
                "2026-01-01T10:00:01Z",
                &[("lhr", RegionState::Deploying)],
            ),
            trip,
            stage(
                "b",
                StageStatus::RolledBack,
                "2026-01-01T10:09:00Z",
                &[("lhr", RegionState::RolledBack)],
            ),
            deploy("b", DeployStatus::RolledBack, "2026-01-01T10:10:00Z"),
        ];
        let c = cases(records, &["canary".into()], at("2026-01-01T00:00:00Z"));
        assert_eq!(c.len(), 2, "the deploy before --since is left out");
        assert_eq!(c[0].recorded(), Recorded::Healthy);
        assert_eq!(
            c[0].episodes,
            vec![Episode {
                stage: "canary".into(),
                region: "lhr".into(),
                start: at("2026-01-01T09:00:01Z"),
                end: at("2026-01-01T09:10:00Z"),
                previous: Some("v1".into()),
            }]
        );
        assert_eq!(c[1].recorded(), Recorded::RolledBack);
        assert_eq!(
            c[1].episodes[0].end,
            at("2026-01-01T10:07:00Z"),
            "up to the trip"
        );
        let none = cases(Vec::new(), &["canary".into()], at("2026-01-01T00:00:00Z"));
        assert!(none.is_empty());
    }
}
