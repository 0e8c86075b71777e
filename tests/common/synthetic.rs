//! A realistic, hash-chained `history.jsonl` of any size, for benchmarks and for the tests
//! that check a command's cost does not grow with history (shared by `examples/` through
//! `#[path]`).
//!
//! Each deploy writes 15 records (deploy started, per stage its gate records and a stage record,
//! deploy finished) over three stages and seven regions; one deploy in 20 fails a gate in the
//! primary stage and rolls back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;

use shipgate::ledger::jsonl::{hash_line, GENESIS};
use shipgate::ledger::*;

pub struct Writer<W: Write> {
    out: W,
    prev: String,
    n: u64,
    line: Vec<u8>,
}

impl<W: Write> Writer<W> {
    fn put(&mut self, ts: chrono::DateTime<chrono::Utc>, body: HistoryRecord) {
        let rec = Stored {
            schema: SCHEMA,
            id: ulid::Ulid::from_parts(ts.timestamp_millis() as u64, self.n as u128).to_string(),
            ts: ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            prev: std::mem::take(&mut self.prev),
            body,
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &rec).unwrap();
        self.prev = hash_line(&self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line).unwrap();
        self.n += 1;
    }
}

/// What to generate besides plain deploys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Every k-th deploy is killed right after its `started` record (never finished).
    pub interrupt_every: Option<u64>,
    /// The last deploy is killed after its `started` record: `status` lists it as interrupted.
    pub end_interrupted: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub records: u64,
    pub deploys: u64,
}

fn interrupted(deploy_id: &str, version: &str, t: chrono::DateTime<chrono::Utc>) -> HistoryRecord {
    HistoryRecord::Deploy(DeployRecord {
        deploy_id: deploy_id.into(),
        app: "nettrace-dashboard".into(),
        version: version.into(),
        status: "started".into(),
        stages: vec!["canary".into()],
        start_time: t.to_rfc3339(),
        actor: "alice".into(),
        trigger: "terminal".into(),
        ..Default::default()
    })
}

/// Writes about `records` records (whole deploys) to `path`, replacing it.
pub fn write_history(path: &std::path::Path, records: u64, opts: Options) -> Summary {
    let file = std::fs::File::create(path).unwrap();
    let mut w = Writer {
        out: std::io::BufWriter::with_capacity(1 << 20, file),
        prev: GENESIS.to_string(),
        n: 0,
        line: Vec::new(),
    };
    let stages: [(&str, &[&str], &[&str]); 3] = [
        ("canary", &["lhr", "nrt"], &["api", "errors"]),
        ("primary", &["ewr"], &["api", "errors"]),
        ("full", &["ord", "fra", "sin", "bom"], &["api"]),
    ];
    let actors = ["alice", "bob", "carol", "github-actions[bot]"];
    // A deploy and the pause after it take about 26 minutes: start early enough that the
    // history ends before 2026 at any size (10M records span some 32 years), so that `--since`
    // finds nothing newer than now.
    let span = chrono::Duration::minutes(26 * (records / 15 + 1) as i64);
    let mut t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
        - span;
    let mut live = "0000000".to_string();
    let mut d = 0u64;
    while w.n < records {
        d += 1;
        let version = format!("{:07x}", d * 2654435761 % 0xfffffff);
        let deploy_id = ulid::Ulid::from_parts(t.timestamp_millis() as u64, d as u128).to_string();
        let fails = d.is_multiple_of(20);
        let actor = actors[(d % 4) as usize].to_string();
        let start = t;
        let deploy = |status: &str, end: Option<chrono::DateTime<chrono::Utc>>| {
            HistoryRecord::Deploy(DeployRecord {
                deploy_id: deploy_id.clone(),
                app: "nettrace-dashboard".into(),
                version: version.clone(),
                previous_versions: stages
                    .iter()
                    .flat_map(|s| s.1.iter())
                    .map(|r| (r.to_string(), live.clone()))
                    .collect(),
                status: status.into(),
                stages: stages.iter().map(|s| s.0.to_string()).collect(),
                start_time: start.to_rfc3339(),
                end_time: end.map(|e| e.to_rfc3339()),
                duration_seconds: end.map(|e| (e - start).num_milliseconds() as f64 / 1000.0),
                actor: actor.clone(),
                trigger: "github-actions".into(),
                run_url: Some(format!(
                    "https://github.com/org/repo/actions/runs/{}",
                    9_000_000 + d
                )),
                commit: Some(format!("{version}{}", "0".repeat(33))),
                ..Default::default()
            })
        };
        w.put(t, deploy("started", None));
        if opts.interrupt_every.is_some_and(|k| d.is_multiple_of(k)) {
            // Killed before its first stage finished: no later record of it.
            t += chrono::Duration::minutes(20);
            continue;
        }
        let mut outcome = "success";
        for (i, (stage, regions, gates)) in stages.iter().enumerate() {
            let stage_start = t;
            let failing = fails && i == 1;
            for region in regions.iter() {
                for gate in gates.iter() {
                    t += chrono::Duration::seconds(10 + (d % 7) as i64);
                    let tripped = failing && *gate == "errors";
                    w.put(
                        t,
                        HistoryRecord::Gate(GateRecord {
                            deploy_id: deploy_id.clone(),
                            stage: stage.to_string(),
                            region: region.to_string(),
                            gate: gate.to_string(),
                            severity: if *gate == "api" { "P0" } else { "P1" }.into(),
                            result: if tripped { "tripped" } else { "pass" }.into(),
                            detail: if tripped {
                                "error rate 0.083 > max 0.05".into()
                            } else {
                                "HTTP 200 in 41 ms".into()
                            },
                            consecutive_failures: if tripped { 3 } else { 0 },
                            trip_after: Some(3),
                            version: Some(version.clone()),
                            verifying: false,
                        }),
                    );
                }
            }
            t += chrono::Duration::seconds(30 + (d % 60) as i64);
            let status = if failing { "failed" } else { "success" };
            w.put(
                t,
                HistoryRecord::Stage(StageRecord {
                    deploy_id: deploy_id.clone(),
                    stage: stage.to_string(),
                    version: version.clone(),
                    regions: regions.iter().map(|r| r.to_string()).collect(),
                    status: status.into(),
                    start_time: stage_start.to_rfc3339(),
                    end_time: Some(t.to_rfc3339()),
                    duration_seconds: Some((t - stage_start).num_seconds() as f64),
                    regions_detail: regions
                        .iter()
                        .map(|r| {
                            (
                                r.to_string(),
                                RegionDetail {
                                    status: status.into(),
                                    previous_version: Some(live.clone()),
                                    version: Some(if failing {
                                        live.clone()
                                    } else {
                                        version.clone()
                                    }),
                                    error: failing.then(|| "gate errors tripped".into()),
                                },
                            )
                        })
                        .collect(),
                    // Each region's deploy command, as the engine writes them down.
                    commands: regions
                        .iter()
                        .map(|r| CommandRun {
                            ts: stage_start.to_rfc3339(),
                            command: format!("flyctl deploy --app web --region {r} --image registry.fly.io/web:{version}"),
                            exit_code: Some(0),
                            duration_seconds: 41.5,
                            ..Default::default()
                        })
                        .collect(),
                    weight: None,
                }),
            );
            if failing {
                t += chrono::Duration::seconds(45);
                let touched: Vec<String> = stages[..=i]
                    .iter()
                    .flat_map(|s| s.1.iter().map(|r| r.to_string()))
                    .collect();
                w.put(
                    t,
                    HistoryRecord::Rollback(RollbackRecord {
                        deploy_id: deploy_id.clone(),
                        regions: touched.clone(),
                        from_version: touched
                            .iter()
                            .map(|r| (r.clone(), version.clone()))
                            .collect::<BTreeMap<_, _>>(),
                        to_version: touched.iter().map(|r| (r.clone(), live.clone())).collect(),
                        status: "success".into(),
                        automatic: true,
                        reason: Some("gate errors tripped in ewr".into()),
                        start_time: t.to_rfc3339(),
                        end_time: Some(t.to_rfc3339()),
                        duration_seconds: Some(45.0),
                        actor: actor.clone(),
                        ..Default::default()
                    }),
                );
                outcome = "rolled_back";
                break;
            }
        }
        t += chrono::Duration::seconds(5);
        w.put(t, deploy(outcome, Some(t)));
        if outcome == "success" {
            live = version;
        }
        t += chrono::Duration::minutes(20);
    }
    if opts.end_interrupted && w.n > 0 {
        d += 1;
        let deploy_id = ulid::Ulid::from_parts(t.timestamp_millis() as u64, d as u128).to_string();
        w.put(t, interrupted(&deploy_id, &format!("{:07x}", d), t));
    }
    w.out.flush().unwrap();
    Summary {
        records: w.n,
        deploys: d,
    }
}
