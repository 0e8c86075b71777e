//! `status.json` rebuilt from history: a pure function over records.

use std::collections::VecDeque;

use super::records::*;

/// The actors of the most recent deploys.
#[derive(Default)]
struct Actors(VecDeque<(String, String)>);

impl Actors {
    const KEEP: usize = 64;
    fn insert(&mut self, id: String, actor: String) {
        if let Some(e) = self.0.iter_mut().find(|e| e.0 == id) {
            e.1 = actor;
            return;
        }
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back((id, actor));
    }
    fn get(&self, id: &str) -> Option<&String> {
        self.0.iter().rev().find(|e| e.0 == id).map(|e| &e.1)
    }
}

/// Folds history records, **oldest first**, into the current state. A region's version comes
/// from the last stage record where it succeeded or the last successful rollback to it; its
/// status is the outcome of the last deploy or rollback that touched it.
pub fn rebuild_status(records: impl IntoIterator<Item = Stored<HistoryRecord>>) -> StatusFile {
    let mut status = StatusFile::default();
    // deploy id → actor, for stage records (which carry none). Deploys run one at a time, so
    // only the most recent ones matter: the map stays small over years of history.
    let mut actors: Actors = Actors::default();
    let mut last_ts = String::new();
    for r in records {
        last_ts = r.ts.clone();
        match r.body {
            HistoryRecord::Deploy(d) => {
                if !d.app.is_empty() {
                    status.app = d.app.clone();
                }
                actors.insert(d.deploy_id.clone(), d.actor.clone());
                status.last_deploy = Some(LastDeploy {
                    deploy_id: d.deploy_id,
                    version: d.version,
                    status: d.status,
                    start_time: d.start_time,
                    end_time: d.end_time,
                    actor: d.actor,
                });
            }
            HistoryRecord::Stage(s) => {
                let actor = actors.get(&s.deploy_id).cloned().unwrap_or_default();
                let at = s.end_time.clone().unwrap_or_else(|| r.ts.clone());
                for (region, detail) in &s.regions_detail {
                    if detail.status == "skipped" || detail.status.is_empty() {
                        continue;
                    }
                    let entry = status.regions.entry(region.clone()).or_default();
                    if detail.status == "success" {
                        entry.version = s.version.clone();
                        entry.deployed_at = at.clone();
                        entry.deploy_id = s.deploy_id.clone();
                        entry.actor = actor.clone();
                    }
                    entry.status = detail.status.clone();
                }
            }
            HistoryRecord::Rollback(rb) => {
                let at = rb.end_time.clone().unwrap_or_else(|| r.ts.clone());
                let actor = if rb.actor.is_empty() {
                    actors.get(&rb.deploy_id).cloned().unwrap_or_default()
                } else {
                    rb.actor.clone()
                };
                for region in &rb.regions {
                    let entry = status.regions.entry(region.clone()).or_default();
                    // A rollback record lists every region it tried; `to_version` only those
                    // that went back (and verified), `errors` those that did not. A failed
                    // rollback of some regions says nothing bad about the others.
                    let failed = rb.errors.contains_key(region)
                        || (rb.status != "success" && !rb.to_version.contains_key(region));
                    if failed {
                        // As the engine records it: what runs there is for a human to find out,
                        // unless nothing ran there before (then it still runs what it ran).
                        let kept = rb
                            .errors
                            .get(region)
                            .filter(|e| e.starts_with("nothing ran here before"))
                            .and_then(|_| rb.from_version.get(region));
                        entry.status = "rollback_failed".into();
                        entry.version = kept.cloned().unwrap_or_else(|| "unknown".into());
                        entry.deploy_id = rb.deploy_id.clone();
                        entry.deployed_at = at.clone();
                        entry.actor = actor.clone();
                    } else if let Some(v) = rb.to_version.get(region) {
                        entry.version = v.clone();
                        entry.deployed_at = at.clone();
                        entry.deploy_id = rb.deploy_id.clone();
                        entry.actor = actor.clone();
                        entry.status = "rolled_back".into();
                    }
                }
            }
            HistoryRecord::Gate(_) | HistoryRecord::Event(_) => {}
        }
    }
    status.updated_at = last_ts;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(ts: &str, body: HistoryRecord) -> Stored<HistoryRecord> {
        Stored {
            schema: SCHEMA,
            id: ts.into(),
            ts: ts.into(),
            prev: String::new(),
            body,
        }
    }

    fn stage(id: &str, version: &str, detail: &[(&str, &str)]) -> HistoryRecord {
        HistoryRecord::Stage(StageRecord {
            deploy_id: id.into(),
            stage: "canary".into(),
            version: version.into(),
            regions: detail.iter().map(|d| d.0.to_string()).collect(),
            status: "success".into(),
            end_time: Some(format!("{id}-end")),
            regions_detail: detail
                .iter()
                .map(|(r, s)| {
                    (
                        r.to_string(),
                        RegionDetail {
                            status: s.to_string(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        })
    }

    fn deploy(id: &str, version: &str, status: &str) -> HistoryRecord {
        HistoryRecord::Deploy(DeployRecord {
            deploy_id: id.into(),
            app: "app".into(),
            version: version.into(),
            status: status.into(),
            actor: format!("actor-{id}"),
            ..Default::default()
        })
    }

    #[test]
    fn regions_follow_successes_failures_and_rollbacks() {
        let s = rebuild_status(vec![
            stored("1", deploy("d1", "v1", "started")),
            stored(
                "2",
                stage("d1", "v1", &[("lhr", "success"), ("nrt", "success")]),
            ),
            stored("3", deploy("d1", "v1", "success")),
            stored("4", deploy("d2", "v2", "started")),
            stored(
                "5",
                stage("d2", "v2", &[("lhr", "success"), ("nrt", "failed")]),
            ),
            stored(
                "6",
                HistoryRecord::Rollback(RollbackRecord {
                    deploy_id: "d2".into(),
                    regions: vec!["lhr".into()],
                    to_version: [("lhr".to_string(), "v1".to_string())].into(),
                    status: "success".into(),
                    automatic: true,
                    ..Default::default()
                }),
            ),
            stored("7", deploy("d2", "v2", "rolled_back")),
        ]);
        assert_eq!(s.app, "app");
        let lhr = &s.regions["lhr"];
        assert_eq!(
            (lhr.version.as_str(), lhr.status.as_str()),
            ("v1", "rolled_back")
        );
        assert_eq!(lhr.actor, "actor-d2");
        let nrt = &s.regions["nrt"];
        assert_eq!(
            (nrt.version.as_str(), nrt.status.as_str()),
            ("v1", "failed")
        );
        assert_eq!(
            (nrt.deploy_id.as_str(), nrt.actor.as_str()),
            ("d1", "actor-d1")
        );
        assert_eq!(nrt.deployed_at, "d1-end");
        let last = s.last_deploy.unwrap();
        assert_eq!(
            (last.deploy_id.as_str(), last.status.as_str()),
            ("d2", "rolled_back")
        );
        assert_eq!(s.updated_at, "7");
    }
}
