//! `shipgate history`, `history verify` and the ledger files under crashes and concurrency.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use shipgate::ledger::jsonl::{hash_line, GENESIS};
use shipgate::ledger::{DeployRecord, HistoryRecord, Ledger};

use crate::common::{code, Project};

/// Writes records (each with its own `ts`) as a valid hash chain, as the ledger would.
pub fn write_chain(path: &Path, records: &[Value]) {
    let mut prev = GENESIS.to_string();
    let mut text = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut obj = serde_json::Map::new();
        obj.insert("schema".into(), json!(1));
        obj.insert("id".into(), json!(format!("01J0000000000000000000{i:04}")));
        obj.insert("prev".into(), json!(prev));
        for (k, v) in r.as_object().unwrap() {
            obj.insert(k.clone(), v.clone());
        }
        let line = serde_json::to_vec(&obj).unwrap();
        prev = hash_line(&line);
        text.extend_from_slice(&line);
        text.push(b'\n');
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A hand-made history: two deploys succeed, one rolls back, one is interrupted.
///
/// | deploy | version | status      | duration | stages (duration)               |
/// | d1     | v1      | success     | 100      | canary 40, primary 50           |
/// | d2     | v2      | success     | 200      | canary 60, primary 120          |
/// | d3     | v3      | rolled_back | 300      | canary 80 (lhr gate api tripped)|
/// | d4     | v4      | started     | -        | -                               |
pub fn fixture() -> Vec<Value> {
    let mut r = Vec::new();
    let deploy = |ts: &str, id: &str, v: &str, status: &str, dur: Option<f64>| {
        json!({"ts": ts, "kind": "deploy", "deploy_id": id, "app": "web", "version": v,
               "status": status, "stages": ["canary", "primary"], "start_time": ts,
               "duration_seconds": dur, "actor": "alice", "trigger": "terminal"})
    };
    let stage =
        |ts: &str, id: &str, v: &str, stage: &str, regions: &[&str], status: &str, dur: f64| {
            let detail: serde_json::Map<String, Value> = regions
                .iter()
                .map(|r| (r.to_string(), json!({"status": status})))
                .collect();
            json!({"ts": ts, "kind": "stage", "deploy_id": id, "stage": stage, "version": v,
               "regions": regions, "status": status, "end_time": ts,
               "duration_seconds": dur, "regions_detail": detail})
        };
    let gate = |ts: &str, id: &str, stage: &str, region: &str, gate: &str, result: &str| {
        json!({"ts": ts, "kind": "gate", "deploy_id": id, "stage": stage, "region": region,
               "gate": gate, "severity": "P0", "result": result, "detail": "HTTP 200",
               "consecutive_failures": 0})
    };
    r.push(deploy(
        "2026-01-10T10:00:00.000Z",
        "d1",
        "v1",
        "started",
        None,
    ));
    r.push(gate(
        "2026-01-10T10:00:30.000Z",
        "d1",
        "canary",
        "lhr",
        "api",
        "pass",
    ));
    r.push(stage(
        "2026-01-10T10:00:40.000Z",
        "d1",
        "v1",
        "canary",
        &["lhr", "nrt"],
        "success",
        40.0,
    ));
    r.push(stage(
        "2026-01-10T10:01:30.000Z",
        "d1",
        "v1",
        "primary",
        &["ewr"],
        "success",
        50.0,
    ));
    r.push(deploy(
        "2026-01-10T10:01:40.000Z",
        "d1",
        "v1",
        "success",
        Some(100.0),
    ));
    r.push(deploy(
        "2026-01-11T10:00:00.000Z",
        "d2",
        "v2",
        "started",
        None,
    ));
    r.push(gate(
        "2026-01-11T10:00:30.000Z",
        "d2",
        "canary",
        "lhr",
        "api",
        "pass",
    ));
    r.push(stage(
        "2026-01-11T10:01:00.000Z",
        "d2",
        "v2",
        "canary",
        &["lhr", "nrt"],
        "success",
        60.0,
    ));
    r.push(stage(
        "2026-01-11T10:03:00.000Z",
        "d2",
        "v2",
        "primary",
        &["ewr"],
        "success",
        120.0,
    ));
    r.push(deploy(
        "2026-01-11T10:03:20.000Z",
        "d2",
        "v2",
        "success",
        Some(200.0),
    ));
    r.push(deploy(
        "2026-01-12T10:00:00.000Z",
        "d3",
        "v3",
        "started",
        None,
    ));
    r.push(gate(
        "2026-01-12T10:00:30.000Z",
        "d3",
        "canary",
        "lhr",
        "api",
        "fail",
    ));
    r.push(gate(
        "2026-01-12T10:00:40.000Z",
        "d3",
        "canary",
        "lhr",
        "api",
        "tripped",
    ));
    r.push(stage(
        "2026-01-12T10:01:20.000Z",
        "d3",
        "v3",
        "canary",
        &["lhr", "nrt"],
        "failed",
        80.0,
    ));
    r.push(
        json!({"ts": "2026-01-12T10:02:00.000Z", "kind": "rollback", "deploy_id": "d3",
                  "regions": ["lhr", "nrt"], "from_version": {"lhr": "v3", "nrt": "v3"},
                  "to_version": {"lhr": "v2", "nrt": "v2"}, "status": "success",
                  "automatic": true, "actor": "alice"}),
    );
    r.push(deploy(
        "2026-01-12T10:05:00.000Z",
        "d3",
        "v3",
        "rolled_back",
        Some(300.0),
    ));
    r.push(deploy(
        "2026-01-13T10:00:00.000Z",
        "d4",
        "v4",
        "started",
        None,
    ));
    r
}

/// A project whose state dir holds [`fixture`].
pub fn fixture_project() -> Project {
    let p = Project::new();
    write_chain(&p.state_dir().join("history.jsonl"), &fixture());
    p
}

fn state_args<'a>(p: &'a Project, rest: &[&'a str]) -> Vec<String> {
    let mut v = vec![
        "--state-dir".to_string(),
        p.state_dir().display().to_string(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn run(p: &Project, rest: &[&str]) -> crate::common::Run {
    let args = state_args(p, rest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.run(&args)
}

fn kinds_and_status(run: &crate::common::Run) -> Vec<String> {
    run.stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = v["status"].as_str().or(v["result"].as_str()).unwrap_or("");
            format!(
                "{}:{}:{s}",
                v["kind"].as_str().unwrap(),
                v["deploy_id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn history_works_with_only_a_state_dir_and_lists_newest_first() {
    let p = fixture_project();
    let r = run(&p, &["history", "--format", "jsonl"]).expect(code::SUCCESS);
    let all = kinds_and_status(&r);
    assert_eq!(all.len(), 17);
    assert_eq!(all[0], "deploy:d4:started");
    assert_eq!(all[16], "deploy:d1:started");
    // jsonl prints the stored lines byte for byte
    let stored = p.read(".shipgate/history.jsonl");
    assert_eq!(r.stdout.lines().last(), stored.lines().next());
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

/// A typo in `--state-dir`: readers say nothing was recorded there and create nothing;
/// `history verify` fails rather than report an intact chain of a ledger that is not there.
#[test]
fn a_missing_state_dir_is_never_created_by_readers_and_fails_verify() {
    let p = Project::new();
    let missing = p.path().join("no/such/dir");
    let dir = missing.to_str().unwrap();
    let r = p
        .run(&["--state-dir", dir, "history", "verify"])
        .expect(code::FAILED);
    assert!(
        r.stderr.contains("nothing to verify: state directory"),
        "{}",
        r.stderr
    );
    for args in [vec!["history"], vec!["status"], vec!["lock", "status"]] {
        let mut a = vec!["--state-dir", dir];
        a.extend(&args);
        let r = p.run(&a).expect(code::SUCCESS);
        assert!(
            r.stderr
                .contains("does not exist: nothing has been recorded there"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(
        !p.path().join("no").exists(),
        "a reader created the directory"
    );
}

#[test]
fn a_state_dir_that_is_a_file_is_a_usage_error_with_a_hint() {
    let p = crate::common::pipeline::exec_project(crate::common::pipeline::THREE_STAGES);
    p.write("afile", "");
    let r = p
        .run(&["--state-dir", "afile", "deploy"])
        .expect(code::USAGE);
    assert!(
        r.stderr
            .contains("hint: `afile` is a file: point --state-dir"),
        "{}",
        r.stderr
    );
    assert_eq!(p.calls(), Vec::<String>::new(), "something ran");
}

#[test]
fn last_stops_after_n_matches() {
    let p = fixture_project();
    let r = run(&p, &["history", "--last", "2", "--format", "jsonl"]).expect(code::SUCCESS);
    assert_eq!(
        kinds_and_status(&r),
        vec!["deploy:d4:started", "deploy:d3:rolled_back"]
    );
    let r = run(
        &p,
        &[
            "history", "--last", "2", "--kind", "stage", "--format", "jsonl",
        ],
    )
    .expect(code::SUCCESS);
    assert_eq!(
        kinds_and_status(&r),
        vec!["stage:d3:failed", "stage:d2:success"]
    );
}

#[test]
fn every_filter() {
    let p = fixture_project();
    let q = |args: &[&str]| {
        let mut a = vec!["history", "--format", "jsonl"];
        a.extend_from_slice(args);
        kinds_and_status(&run(&p, &a).expect(code::SUCCESS))
    };
    assert_eq!(q(&["--kind", "rollback"]), vec!["rollback:d3:success"]);
    assert_eq!(
        q(&["--stage", "primary"]),
        // deploy records list their stages
        vec![
            "deploy:d4:started",
            "deploy:d3:rolled_back",
            "deploy:d3:started",
            "deploy:d2:success",
            "stage:d2:success",
            "deploy:d2:started",
            "deploy:d1:success",
            "stage:d1:success",
            "deploy:d1:started"
        ]
    );
    assert_eq!(
        q(&["--stage", "primary", "--kind", "stage"]),
        vec!["stage:d2:success", "stage:d1:success"]
    );
    // region: gate region field, stage regions lists and regions_detail keys, rollback regions
    assert_eq!(
        q(&["--region", "nrt"]),
        vec![
            "rollback:d3:success",
            "stage:d3:failed",
            "stage:d2:success",
            "stage:d1:success"
        ]
    );
    assert_eq!(q(&["--region", "lhr", "--kind", "gate"]).len(), 4);
    // status: deploy/stage/rollback status or gate result
    assert_eq!(q(&["--status", "tripped"]), vec!["gate:d3:tripped"]);
    assert_eq!(q(&["--status", "failed"]), vec!["stage:d3:failed"]);
    assert_eq!(
        q(&["--status", "rolled_back"]),
        vec!["deploy:d3:rolled_back"]
    );
    // version: version field or rollback target
    assert_eq!(
        q(&["--version", "v2", "--kind", "stage"]),
        vec!["stage:d2:success", "stage:d2:success"]
    );
    assert_eq!(
        q(&["--version", "v2", "--kind", "rollback"]),
        vec!["rollback:d3:success"]
    );
    // since: a date, an RFC 3339 time
    assert_eq!(q(&["--since", "2026-01-12"]).len(), 7);
    assert_eq!(
        q(&["--since", "2026-01-12T10:04:00Z"]),
        vec!["deploy:d4:started", "deploy:d3:rolled_back"]
    );
    assert_eq!(q(&["--since", "2026-01-12", "--kind", "gate"]).len(), 2);
    // a duration ago: everything in the fixture is older than a day... unless the clock is odd
    assert!(q(&["--since", "1h"]).is_empty());
    // nothing matches
    assert!(q(&["--status", "cancelled"]).is_empty());
}

#[test]
fn bad_filters_are_usage_errors() {
    let p = fixture_project();
    let r = run(&p, &["history", "--kind", "deplyo"]).expect(code::USAGE);
    assert!(r.stderr.contains("did you mean `deploy`"), "{}", r.stderr);
    let r = run(&p, &["history", "--since", "yesterday"]).expect(code::USAGE);
    assert!(r.stderr.contains("--since"), "{}", r.stderr);
    let r = run(&p, &["history", "--audit", "--kind", "deploy"]).expect(code::USAGE);
    assert!(
        r.stderr.contains("--kind does not apply to --audit"),
        "{}",
        r.stderr
    );
}

/// `--status` is free text (an event may carry any status), so a value nobody wrote is not an
/// error; when it matches nothing, the closest status shipgate writes is suggested.
#[test]
fn a_status_that_matches_nothing_suggests_the_closest_known_one() {
    let p = fixture_project();
    let r = run(&p, &["history", "--status", "rolledback"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("(no records)"), "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "warning: no record has the status `rolledback`; did you mean `rolled_back`?"
        ),
        "{}",
        r.stderr
    );
    // A known status that matches nothing, or a match, says nothing more.
    let r = run(&p, &["history", "--status", "cancelled"]).expect(code::SUCCESS);
    assert!(!r.stderr.contains("no record has"), "{}", r.stderr);
    let r = run(&p, &["history", "--status", "rolled_back"]).expect(code::SUCCESS);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    assert!(r.stdout.contains("rolled_back"), "{}", r.stdout);
}

#[test]
fn json_is_one_array_and_human_is_an_aligned_uncut_table_when_piped() {
    let p = fixture_project();
    let r = run(
        &p,
        &[
            "history", "--format", "json", "--kind", "deploy", "--last", "3",
        ],
    )
    .expect(code::SUCCESS);
    let v = r.json();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["deploy_id"], "d4");
    assert_eq!(arr[1]["status"], "rolled_back");
    let r = run(&p, &["history", "--format", "json", "--kind", "event"]).expect(code::SUCCESS);
    assert_eq!(r.json(), json!([]));

    let r = run(&p, &["history", "--last", "4"]).expect(code::SUCCESS);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    // Piped: columns line up, nothing is cut (a terminal cuts to its width).
    assert_eq!(
        lines[0],
        "TIME             KIND     STAGE   VERSION  REGIONS   STATUS      DUR   ACTOR     REASON"
    );
    assert_eq!(
        lines[1],
        "2026-01-13 10:00 deploy   canary,primary v4                 started           alice"
    );
    assert_eq!(
        lines[2],
        "2026-01-12 10:05 deploy   canary,primary v3                 rolled_back 5m00  alice"
    );
    assert_eq!(
        lines[3],
        "2026-01-12 10:02 rollback         v2       lhr,nrt   success           alice"
    );
    assert_eq!(
        lines[4],
        "2026-01-12 10:01 stage    canary  v3       lhr,nrt   failed      1m20"
    );
}

#[test]
fn stats_match_the_hand_computed_fixture() {
    let p = fixture_project();
    let r = run(&p, &["history", "--stats", "--format", "json"]).expect(code::SUCCESS);
    let s = r.json();
    assert_eq!(s["deploys"], 4);
    assert_eq!(s["finished"], 3);
    // 2 of 3 finished deploys succeeded, 1 rolled back
    assert!((s["success_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert!((s["rollback_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    // deploy durations 100, 200, 300: mean 200, p95 (nearest rank of 3) 300
    assert_eq!(
        s["deploy_duration"],
        json!({"count": 3, "mean_seconds": 200.0, "p95_seconds": 300.0, "p95_relative_error": 0.0})
    );
    // canary 40, 60, 80 → mean 60, p95 80; primary 50, 120 → mean 85, p95 120
    assert_eq!(
        s["stage_durations"]["canary"],
        json!({"count": 3, "mean_seconds": 60.0, "p95_seconds": 80.0, "p95_relative_error": 0.0})
    );
    assert_eq!(
        s["stage_durations"]["primary"],
        json!({"count": 2, "mean_seconds": 85.0, "p95_seconds": 120.0, "p95_relative_error": 0.0})
    );
    // 2026-01-10T10:00 .. 2026-01-13T10:00 = 3 days, 4 deploys
    assert_eq!(s["window_days"], 3.0);
    assert!((s["deploys_per_day"].as_f64().unwrap() - 4.0 / 3.0).abs() < 1e-9);
    // lhr api: 2 pass, 1 fail, 1 tripped
    assert_eq!(
        s["gates"]["lhr"]["api"],
        json!({"pass": 2, "fail": 1, "tripped": 1, "pass_rate": 0.5})
    );

    // over a filtered window: since 2026-01-11 → d2, d3, d4 (d2 and d3 finished)
    let r = run(
        &p,
        &[
            "history",
            "--stats",
            "--since",
            "2026-01-11",
            "--format",
            "json",
        ],
    )
    .expect(code::SUCCESS);
    let s = r.json();
    assert_eq!(
        (s["deploys"].as_u64(), s["finished"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(s["success_rate"], 0.5);

    let r = run(&p, &["history", "--stats"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("success rate 66.7%"), "{}", r.stdout);
    assert!(r.stdout.contains("rollback rate 33.3%"), "{}", r.stdout);
    assert!(
        r.stdout.contains("  canary       1m00     1m20       3"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  lhr      api           50.0%  (2 pass, 1 fail, 1 tripped)"),
        "{}",
        r.stdout
    );
}

#[test]
fn audit_trail_is_listed_with_audit() {
    let p = Project::new();
    let ledger = Ledger::open(&p.state_dir()).unwrap();
    for (i, title) in ["deploy started", "deploy failed", "lock force-released"]
        .iter()
        .enumerate()
    {
        ledger
            .append_audit(&shipgate::ledger::AuditRecord {
                priority: format!("P{i}"),
                title: title.to_string(),
                delivered: vec!["slack".into()],
                ..Default::default()
            })
            .unwrap();
    }
    let r = run(
        &p,
        &["history", "--audit", "--format", "jsonl", "--last", "2"],
    )
    .expect(code::SUCCESS);
    let titles: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["title"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(titles, vec!["lock force-released", "deploy failed"]);
    let r = run(&p, &["history", "--audit"]).expect(code::SUCCESS);
    assert!(
        r.stdout.contains("P2  slack        lock force-released"),
        "{}",
        r.stdout
    );
    run(&p, &["history", "verify"]).expect(code::SUCCESS);
}

#[test]
fn last_reads_only_the_tail_of_a_file_with_a_garbage_head() {
    let p = Project::new();
    let path = p.state_dir().join("history.jsonl");
    std::fs::create_dir_all(p.state_dir()).unwrap();
    // 8 MB of invalid UTF-8 and broken JSON lines, then valid records.
    let mut bytes = Vec::new();
    for _ in 0..80_000 {
        bytes.extend_from_slice(b"\xff\xfe{not json at all, \x80\x81 garbage garbage garbage garbage garbage garbage}\n");
    }
    std::fs::write(&path, &bytes).unwrap();
    let ledger = Ledger::open(&p.state_dir()).unwrap();
    for i in 0..10 {
        ledger
            .append_history(&HistoryRecord::Deploy(DeployRecord {
                deploy_id: format!("d{i}"),
                status: "success".into(),
                ..Default::default()
            }))
            .unwrap();
    }
    let r = run(&p, &["history", "--last", "5", "--format", "jsonl"]).expect(code::SUCCESS);
    assert_eq!(
        kinds_and_status(&r),
        vec![
            "deploy:d9:success",
            "deploy:d8:success",
            "deploy:d7:success",
            "deploy:d6:success",
            "deploy:d5:success"
        ]
    );
    assert!(r.stderr.is_empty(), "warned about the head: {}", r.stderr);
    // A full scan does see the garbage, and says so (a bounded number of times).
    let r = run(&p, &["history", "--kind", "deploy", "--format", "jsonl"]).expect(code::SUCCESS);
    assert_eq!(r.stdout.lines().count(), 10);
    let r = run(&p, &["history", "--format", "jsonl"]).expect(code::SUCCESS);
    assert!(
        r.stderr.contains("skipped an unreadable line"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.lines().count() <= 21,
        "{}",
        r.stderr.lines().count()
    );
}

#[test]
fn verify_names_a_tampered_line() {
    let p = fixture_project();
    run(&p, &["history", "verify"]).expect(code::SUCCESS);
    let path = p.state_dir().join("history.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    // Change one byte of line 8 (d2's canary stage): its version v2 → v9.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines[7].contains("\"version\":\"v2\""));
    lines[7] = lines[7].replacen("\"version\":\"v2\"", "\"version\":\"v9\"", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let r = run(&p, &["history", "verify"]).expect(code::FAILED);
    assert!(
        r.stderr.contains("history.jsonl line 9: bad prev hash")
            && r.stderr.contains("line 8 was changed"),
        "{}",
        r.stderr
    );
    let r = run(&p, &["history", "verify", "--format", "json"]).expect(code::FAILED);
    let v = r.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["files"]["history.jsonl"]["problems"][0]["line"], 9);
}

#[test]
fn verify_reports_unparsable_lines_and_missing_fields() {
    let p = Project::new();
    let mut records = fixture();
    records[2].as_object_mut().unwrap().remove("kind");
    write_chain(&p.state_dir().join("history.jsonl"), &records);
    let r = run(&p, &["history", "verify"]).expect(code::FAILED);
    assert!(
        r.stderr
            .contains("history.jsonl line 3: missing fields: kind"),
        "{}",
        r.stderr
    );

    write_chain(&p.state_dir().join("history.jsonl"), &fixture());
    write_chain(
        &p.state_dir().join("audit.jsonl"),
        &[json!({"ts": "2026-01-01T00:00:00Z", "priority": "P3", "title": "x"})],
    );
    let mut audit = std::fs::OpenOptions::new()
        .append(true)
        .open(p.state_dir().join("audit.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut audit, b"{\"oops\n").unwrap();
    let r = run(&p, &["history", "verify"]).expect(code::FAILED);
    assert!(
        r.stderr.contains("audit.jsonl line 2: unparsable JSON"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_torn_final_line_is_skipped_reported_and_moved_aside_by_the_next_append() {
    let p = fixture_project();
    let path = p.state_dir().join("history.jsonl");
    let torn = b"{\"schema\":1,\"id\":\"01J9TORN\",\"ts\":\"2026-01-14T0";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);
    // Readers skip it with a warning.
    let r = run(&p, &["history", "--last", "1", "--format", "jsonl"]).expect(code::SUCCESS);
    assert_eq!(kinds_and_status(&r), vec!["deploy:d4:started"]);
    assert!(r.stderr.contains("torn final line"), "{}", r.stderr);
    // Verify reports the tear (and changes nothing).
    let r = run(&p, &["history", "verify"]).expect(code::FAILED);
    assert!(
        r.stderr.contains("history.jsonl line 18: torn final line"),
        "{}",
        r.stderr
    );
    let before = std::fs::read_to_string(&path).unwrap();
    // The next append moves the torn bytes aside and chains to the last whole line.
    let ledger = Ledger::open(&p.state_dir()).unwrap();
    ledger
        .append_history(&HistoryRecord::Deploy(DeployRecord {
            deploy_id: "d5".into(),
            status: "started".into(),
            ..Default::default()
        }))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 18);
    assert!(before.starts_with(&lines[..17].join("\n")));
    let last: Value = serde_json::from_str(lines[17]).unwrap();
    assert_eq!(last["deploy_id"], "d5");
    assert_eq!(last["prev"], hash_line(lines[16].as_bytes()));
    let aside: Vec<_> = std::fs::read_dir(p.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("history.jsonl.torn-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), torn);
    // Verify passes and says what was repaired.
    let r = run(&p, &["history", "verify"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("repaired"), "{}", r.stderr);
    let r = run(&p, &["history", "--last", "2", "--format", "jsonl"]).expect(code::SUCCESS);
    assert_eq!(
        kinds_and_status(&r),
        vec!["deploy:d5:started", "deploy:d4:started"]
    );
}

// ---------------------------------------------------------------------------------------------
// Several processes. The test binary re-executes itself running one `#[ignore]`d helper test,
// told what to do through the environment (the helpers do nothing when run without it).

const APPEND_DIR: &str = "SHIPGATE_TEST_APPEND_DIR";
const APPEND_COUNT: &str = "SHIPGATE_TEST_APPEND_COUNT";

/// Runs one helper test of this binary in a child process.
pub fn helper(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ]);
    cmd.stdout(std::process::Stdio::null());
    cmd
}

/// Helper: appends `APPEND_COUNT` history and audit records (0: forever) to `APPEND_DIR`.
#[test]
#[ignore = "helper run by other tests in a child process"]
fn helper_append() {
    let Ok(dir) = std::env::var(APPEND_DIR) else {
        return;
    };
    let count: u64 = std::env::var(APPEND_COUNT).unwrap().parse().unwrap();
    let ledger = Ledger::open(Path::new(&dir)).unwrap();
    let me = std::process::id();
    let mut i = 0;
    while count == 0 || i < count {
        ledger
            .append_history(&HistoryRecord::Deploy(DeployRecord {
                deploy_id: format!("{me}-{i}"),
                status: "started".into(),
                // Long enough that a write is more than a page now and then.
                reason: Some("x".repeat((i as usize * 37) % 700)),
                ..Default::default()
            }))
            .unwrap();
        ledger
            .append_audit(&shipgate::ledger::AuditRecord {
                priority: "P3".into(),
                title: format!("{me}-{i}"),
                ..Default::default()
            })
            .unwrap();
        i += 1;
    }
}

#[test]
fn eight_processes_appending_lose_nothing_and_keep_both_chains() {
    let p = Project::new();
    let dir = p.state_dir();
    let children: Vec<_> = (0..8)
        .map(|_| {
            helper("history::helper_append")
                .env(APPEND_DIR, &dir)
                .env(APPEND_COUNT, "2000")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for (file, field) in [("history.jsonl", "deploy_id"), ("audit.jsonl", "title")] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.ends_with('\n'));
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("a whole, uninterleaved line");
            assert!(seen.insert(v[field].as_str().unwrap().to_string()));
        }
        assert_eq!(seen.len(), 16_000, "{file}");
    }
    let r = run(&p, &["history", "verify", "--format", "json"]).expect(code::SUCCESS);
    assert_eq!(r.json()["files"]["history.jsonl"]["lines"], 16_000);
    assert_eq!(r.json()["files"]["audit.jsonl"]["lines"], 16_000);
}

#[test]
fn a_writer_killed_in_a_tight_append_loop_leaves_at_most_one_torn_line() {
    let p = Project::new();
    let dir = p.state_dir();
    let mut child = helper("history::helper_append")
        .env(APPEND_DIR, &dir)
        .env(APPEND_COUNT, "0")
        .spawn()
        .unwrap();
    // Let it get going, then kill it mid-loop.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(dir.join("history.jsonl")).map_or(0, |m| m.len()) < 50_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never wrote"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever the kill interrupted: at most the final line is torn, and only in the last file.
    let r = run(&p, &["history", "verify", "--format", "json"]);
    let v = r.json();
    for file in ["history.jsonl", "audit.jsonl"] {
        let problems = v["files"][file]["problems"].as_array().unwrap();
        let lines = v["files"][file]["lines"].as_u64().unwrap();
        assert!(problems.len() <= 1, "{file}: {problems:?}");
        if let Some(pr) = problems.first() {
            assert_eq!(pr["line"].as_u64().unwrap(), lines);
            assert!(pr["message"].as_str().unwrap().contains("torn final line"));
        }
    }
    // A new writer appends cleanly after it; the chain holds (apart from a tear, if any).
    let ledger = Ledger::open(&dir).unwrap();
    ledger
        .append_history(&HistoryRecord::Deploy(DeployRecord {
            deploy_id: "after".into(),
            ..Default::default()
        }))
        .unwrap();
    let r = run(&p, &["history", "--last", "1", "--format", "jsonl"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("\"deploy_id\":\"after\""));
    let r = run(&p, &["history", "verify", "--format", "json"]);
    let problems = r.json()["files"]["history.jsonl"]["problems"]
        .as_array()
        .unwrap()
        .len();
    assert!(problems <= 1);
    assert_eq!(
        r.code,
        if problems == 0
            && r.json()["files"]["audit.jsonl"]["problems"]
                .as_array()
                .unwrap()
                .is_empty()
        {
            code::SUCCESS
        } else {
            code::FAILED
        }
    );
}

#[test]
fn stats_read_in_parallel_parts_equal_the_sequential_scan() {
    let p = Project::new();
    let mut records = Vec::new();
    for copy in 0..300 {
        for mut r in fixture() {
            let id = r["deploy_id"].as_str().unwrap_or("").to_string();
            r["deploy_id"] = json!(format!("{id}-{copy}"));
            records.push(r);
        }
    }
    write_chain(&p.state_dir().join("history.jsonl"), &records);
    assert!(
        std::fs::metadata(p.state_dir().join("history.jsonl"))
            .unwrap()
            .len()
            > 1 << 20
    );
    let parallel = run(&p, &["history", "--stats", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    // --since takes the sequential path, newest first.
    let sequential = run(
        &p,
        &[
            "history",
            "--stats",
            "--since",
            "2000-01-01",
            "--format",
            "json",
        ],
    )
    .expect(code::SUCCESS)
    .json();
    for key in [
        "deploys",
        "finished",
        "by_status",
        "success_rate",
        "deploy_duration",
        "stage_durations",
        "gates",
    ] {
        assert_eq!(parallel[key], sequential[key], "{key}");
    }
    assert_eq!(parallel["deploys"], 1200);
    assert_eq!(parallel["finished"], 900);
    assert_eq!(parallel["gates"]["lhr"]["api"]["tripped"], 300);
}
