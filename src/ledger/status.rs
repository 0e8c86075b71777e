//! `status.json` is the fold of history: [`apply`] is the one reducer. Every state-changing
//! append applies its record to the file ([`super::Ledger::append_history`]); a rebuild folds
//! the whole history through the same function, so the file written after any command equals
//! the file rebuilt from history.
//!
//! Records say what each region runs afterwards (stage and rollback records carry
//! `regions_detail[region].version`), so nothing is inferred and no status is ever derived from
//! message text. `updated_at` is the `ts` of the last record applied, not the clock.

use super::records::*;

/// Whether a record of this kind can change the state (gate, event and approval records
/// cannot).
pub fn changes_state(record: &HistoryRecord) -> bool {
    matches!(
        record,
        HistoryRecord::Deploy(_)
            | HistoryRecord::Stage(_)
            | HistoryRecord::Rollback(_)
            | HistoryRecord::Freeze(_)
    )
}

/// The version of the reducer: raised whenever it starts keeping something new, so a
/// `status.json` written by an older one is rebuilt (once) rather than read as complete.
/// 2: `open_deploys`.
pub const FOLD: u32 = 2;

/// Folds history records, **oldest first**, into the current state.
pub fn fold(records: impl IntoIterator<Item = Stored<HistoryRecord>>) -> StatusFile {
    let mut status = StatusFile::default();
    for r in records {
        apply(&mut status, &r);
    }
    status
}

/// Applies one record to the state.
pub fn apply(status: &mut StatusFile, record: &Stored<HistoryRecord>) {
    if !changes_state(&record.body) {
        return;
    }
    status.updated_at = record.ts.clone();
    status.last_record = record.id.clone();
    status.fold = FOLD;
    match &record.body {
        HistoryRecord::Deploy(d) => apply_deploy(status, d, &record.ts),
        HistoryRecord::Stage(s) => apply_stage(status, s, &record.ts),
        HistoryRecord::Rollback(rb) => apply_rollback(status, rb, &record.ts),
        HistoryRecord::Freeze(f) => {
            status.freeze = (f.action == "start").then(|| {
                Box::new(ActiveFreeze {
                    since: f.at.clone(),
                    actor: f.actor.clone(),
                    reason: f.reason.clone(),
                    until: f.until.clone(),
                    stages: f.stages.clone(),
                })
            });
        }
        HistoryRecord::Gate(_) | HistoryRecord::Event(_) | HistoryRecord::Approval(_) => {}
    }
}

fn apply_deploy(status: &mut StatusFile, d: &DeployRecord, ts: &str) {
    if !d.app.is_empty() {
        status.app = d.app.clone();
    }
    // A new deploy starts, or the current one moves on. A late record about an older deploy
    // (`recover` finishing one) never hides the newer one.
    let current = status.last_deploy.as_ref().map(|l| l.deploy_id.as_str());
    if d.status == DeployStatus::Started || current.is_none() || current == Some(&d.deploy_id) {
        status.last_deploy = Some(LastDeploy {
            deploy_id: d.deploy_id.clone(),
            version: d.version.clone(),
            status: d.status,
            start_time: d.start_time.clone(),
            end_time: d.end_time.clone(),
            actor: d.actor.clone(),
        });
    }
    track_open(status, d, ts);
    // A cancelled deploy says where each region it changed stands (written at once on the
    // second signal, before anything else could be recorded); so does a final record of a
    // deploy whose other records could not all be written (a full disk).
    if !d.status.is_final() || d.regions_detail.is_empty() {
        return;
    }
    let at = d.end_time.clone().unwrap_or_else(|| ts.to_string());
    for (region, r) in &d.regions_detail {
        let entry = status.regions.entry(region.clone()).or_default();
        entry.deploy_id = d.deploy_id.clone();
        entry.deployed_at = at.clone();
        entry.actor = d.actor.clone();
        match (r.position, &r.target) {
            (Position::Back, Some(target)) => {
                entry.version = target.clone();
                entry.status = RegionState::RolledBack;
                entry.may_run = None;
                entry.weight = None;
            }
            _ => {
                entry.version = UNKNOWN_VERSION.into();
                entry.status = if d.status == DeployStatus::Cancelled {
                    RegionState::Cancelled
                } else {
                    RegionState::RollbackFailed
                };
                entry.may_run = Some(d.version.clone());
                entry.weight = None;
            }
        }
    }
}

/// Keeps `open_deploys`: a deploy is open from its first record until its final one (the
/// newest [`OPEN_KEPT`] of them). A final
/// record also closes every open deploy that started before it: deploys run one at a time
/// under the lock, so those were interrupted and have been followed by a finished deploy
/// (history, not the current state; `recover` still finds them in history).
fn track_open(status: &mut StatusFile, d: &DeployRecord, ts: &str) {
    let start_time = if d.start_time.is_empty() {
        ts.to_string()
    } else {
        d.start_time.clone()
    };
    let open = &mut status.open_deploys;
    if d.status.is_final() {
        open.retain(|o| o.deploy_id != d.deploy_id && o.start_time > start_time);
        return;
    }
    let entry = LastDeploy {
        deploy_id: d.deploy_id.clone(),
        version: d.version.clone(),
        status: d.status,
        start_time,
        end_time: d.end_time.clone(),
        actor: d.actor.clone(),
    };
    match open.iter_mut().find(|o| o.deploy_id == d.deploy_id) {
        Some(o) => *o = entry,
        None => open.push(entry),
    }
    // Deploys run one at a time, so more than one is open only when several were killed in a
    // row with no finished deploy since; the file (rewritten on every state change) keeps the
    // newest of them, not an unbounded list.
    if open.len() > OPEN_KEPT {
        open.drain(..open.len() - OPEN_KEPT);
    }
}

/// How many open deploys `status.json` keeps (the newest).
pub const OPEN_KEPT: usize = 20;

fn apply_stage(status: &mut StatusFile, s: &StageRecord, ts: &str) {
    // Stage records carry no actor: deploys run one at a time, so it is the current deploy's.
    let actor = status
        .last_deploy
        .as_ref()
        .filter(|l| l.deploy_id == s.deploy_id)
        .map(|l| l.actor.clone())
        .unwrap_or_default();
    let at = s.end_time.clone().unwrap_or_else(|| ts.to_string());
    for (region, detail) in &s.regions_detail {
        if matches!(detail.status, RegionState::Skipped | RegionState::Other) {
            continue;
        }
        let entry = status.regions.entry(region.clone()).or_default();
        if s.status == StageStatus::Started {
            // Its deploy command is about to run: it may run the new version from now on.
            entry.may_run = Some(s.version.clone());
            entry.weight = s.weight;
            continue;
        }
        entry.may_run = None;
        entry.weight = None;
        entry.status = detail.status;
        entry.deploy_id = s.deploy_id.clone();
        entry.deployed_at = at.clone();
        entry.actor = actor.clone();
        entry.version = match &detail.version {
            Some(v) => v.clone(),
            // Older records: a success ran the stage's version, anything else kept what ran.
            None if detail.status == RegionState::Success => s.version.clone(),
            None if detail.status == RegionState::RollbackFailed => UNKNOWN_VERSION.into(),
            None => std::mem::take(&mut entry.version),
        };
    }
}

fn apply_rollback(status: &mut StatusFile, rb: &RollbackRecord, ts: &str) {
    let at = rb.end_time.clone().unwrap_or_else(|| ts.to_string());
    for region in &rb.regions {
        let (state, version) = match rb.regions_detail.get(region) {
            Some(d) => (d.status, d.version.clone()),
            // Older records: `to_version` lists the regions that went back (and verified).
            None => match rb.to_version.get(region) {
                Some(v) => (RegionState::RolledBack, Some(v.clone())),
                None if rb.errors.contains_key(region) || rb.status != "success" => {
                    (RegionState::RollbackFailed, None)
                }
                None => continue,
            },
        };
        if matches!(state, RegionState::Skipped | RegionState::Other) {
            continue;
        }
        let entry = status.regions.entry(region.clone()).or_default();
        entry.status = state;
        entry.version = version.unwrap_or_else(|| UNKNOWN_VERSION.into());
        entry.may_run = None;
        entry.weight = None;
        entry.deploy_id = rb.deploy_id.clone();
        entry.deployed_at = at.clone();
        entry.actor = rb.actor.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(ts: &str, body: HistoryRecord) -> Stored<HistoryRecord> {
        Stored {
            schema: SCHEMA,
            id: format!("id-{ts}"),
            ts: ts.into(),
            prev: String::new(),
            body,
        }
    }

    #[test]
    fn open_deploys_keep_the_newest_when_many_were_killed_in_a_row() {
        let records = (0..OPEN_KEPT + 5).map(|i| {
            let ts = format!("2026-01-01T00:{:02}:00Z", i);
            stored(
                &ts,
                HistoryRecord::Deploy(DeployRecord {
                    deploy_id: format!("d{i:02}"),
                    status: DeployStatus::Started,
                    start_time: ts.clone(),
                    ..Default::default()
                }),
            )
        });
        let s = fold(records);
        assert_eq!(s.open_deploys.len(), OPEN_KEPT);
        assert_eq!(s.open_deploys[0].deploy_id, "d05");
        assert_eq!(s.open_deploys[OPEN_KEPT - 1].deploy_id, "d24");
        assert_eq!(s.fold, FOLD);
    }

    fn detail(status: RegionState, version: Option<&str>) -> RegionDetail {
        RegionDetail {
            status,
            version: version.map(str::to_string),
            ..Default::default()
        }
    }

    fn stage(
        id: &str,
        version: &str,
        status: StageStatus,
        regions: &[(&str, RegionDetail)],
    ) -> HistoryRecord {
        HistoryRecord::Stage(StageRecord {
            deploy_id: id.into(),
            stage: "canary".into(),
            version: version.into(),
            regions: regions.iter().map(|d| d.0.to_string()).collect(),
            status,
            end_time: (status != StageStatus::Started).then(|| format!("{id}-end")),
            regions_detail: regions
                .iter()
                .map(|(r, d)| (r.to_string(), d.clone()))
                .collect(),
            ..Default::default()
        })
    }

    fn deploy(id: &str, version: &str, status: DeployStatus) -> HistoryRecord {
        HistoryRecord::Deploy(DeployRecord {
            deploy_id: id.into(),
            app: "app".into(),
            version: version.into(),
            status,
            actor: format!("actor-{id}"),
            ..Default::default()
        })
    }

    #[test]
    fn regions_follow_successes_failures_and_rollbacks() {
        use RegionState::*;
        let s = fold(vec![
            stored("1", deploy("d1", "v1", DeployStatus::Started)),
            stored(
                "2",
                stage(
                    "d1",
                    "v1",
                    StageStatus::Success,
                    &[
                        ("lhr", detail(Success, None)),
                        ("nrt", detail(Success, None)),
                    ],
                ),
            ),
            stored("3", deploy("d1", "v1", DeployStatus::Success)),
            stored("4", deploy("d2", "v2", DeployStatus::Started)),
            stored(
                "5",
                stage(
                    "d2",
                    "v2",
                    StageStatus::Started,
                    &[
                        ("lhr", detail(Deploying, None)),
                        ("nrt", detail(Deploying, None)),
                    ],
                ),
            ),
            stored(
                "6",
                HistoryRecord::Rollback(RollbackRecord {
                    deploy_id: "d2".into(),
                    regions: vec!["lhr".into()],
                    to_version: [("lhr".to_string(), "v1".to_string())].into(),
                    status: "success".into(),
                    automatic: true,
                    actor: "actor-d2".into(),
                    ..Default::default()
                }),
            ),
            stored(
                "7",
                stage(
                    "d2",
                    "v2",
                    StageStatus::RolledBack,
                    &[
                        ("lhr", detail(RolledBack, Some("v1"))),
                        ("nrt", detail(Failed, Some("v1"))),
                    ],
                ),
            ),
            stored("8", deploy("d2", "v2", DeployStatus::RolledBack)),
        ]);
        assert_eq!(s.app, "app");
        let lhr = &s.regions["lhr"];
        assert_eq!((lhr.version.as_str(), lhr.status), ("v1", RolledBack));
        assert_eq!(lhr.actor, "actor-d2");
        let nrt = &s.regions["nrt"];
        assert_eq!((nrt.version.as_str(), nrt.status), ("v1", Failed));
        assert_eq!(nrt.may_run, None);
        let last = s.last_deploy.unwrap();
        assert_eq!(
            (last.deploy_id.as_str(), last.status),
            ("d2", DeployStatus::RolledBack)
        );
        assert_eq!(
            (s.updated_at.as_str(), s.last_record.as_str()),
            ("8", "id-8")
        );
    }

    #[test]
    fn a_started_stage_marks_its_regions_as_maybe_running_the_new_version() {
        let s = fold(vec![
            stored("1", deploy("d1", "v2", DeployStatus::Started)),
            stored(
                "2",
                stage(
                    "d1",
                    "v2",
                    StageStatus::Started,
                    &[("lhr", detail(RegionState::Deploying, None))],
                ),
            ),
        ]);
        assert_eq!(s.regions["lhr"].may_run.as_deref(), Some("v2"));
        assert_eq!(s.regions["lhr"].version, "");
    }

    #[test]
    fn a_cancelled_deploy_records_back_mixed_and_unknown_regions() {
        let mut cancelled = DeployRecord {
            deploy_id: "d1".into(),
            version: "v2".into(),
            status: DeployStatus::Cancelled,
            ..Default::default()
        };
        for (r, position) in [("lhr", Position::Back), ("nrt", Position::Unknown)] {
            cancelled.regions_detail.insert(
                r.into(),
                DeployRegion {
                    position,
                    target: Some("v1".into()),
                },
            );
        }
        let s = fold(vec![
            stored("1", deploy("d1", "v2", DeployStatus::Started)),
            stored("2", HistoryRecord::Deploy(cancelled)),
        ]);
        assert_eq!(s.regions["lhr"].version, "v1");
        assert!(!s.regions["lhr"].needs_human());
        assert_eq!(s.regions["nrt"].status, RegionState::Cancelled);
        assert!(s.regions["nrt"].needs_human());
    }

    #[test]
    fn gate_and_event_records_change_nothing() {
        let mut s = StatusFile::default();
        apply(
            &mut s,
            &stored("1", HistoryRecord::Gate(GateRecord::default())),
        );
        assert_eq!(s, StatusFile::default());
    }

    #[test]
    fn a_late_record_of_an_older_deploy_keeps_the_newer_last_deploy() {
        let s = fold(vec![
            stored("1", deploy("d1", "v1", DeployStatus::Started)),
            stored("2", deploy("d2", "v2", DeployStatus::Started)),
            stored("3", deploy("d1", "v1", DeployStatus::RolledBack)),
        ]);
        assert_eq!(s.last_deploy.unwrap().deploy_id, "d2");
    }
}
