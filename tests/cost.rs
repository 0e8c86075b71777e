//! What a command costs must not grow with the history behind it (issue 17): counted in bytes
//! read (the kernel's accounting of the real binary), never timed.

use crate::common::process::count_reads;
use crate::common::synthetic::{write_history, Options};
use crate::common::Project;

/// A state directory of about `records` history records whose last deploy was killed after
/// it started, plus killed deploys all through history that later deploys followed.
fn project_with_history(records: u64) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.state_dir()).unwrap();
    let opts = Options {
        interrupt_every: Some(97),
        end_interrupted: true,
    };
    write_history(&p.state_dir().join("history.jsonl"), records, opts);
    p
}

/// Regression: `status` read the whole history backwards on every run to find interrupted
/// deploys (`Ledger::interrupted_deploys` kept every deploy id in a set), so a cron job's
/// `status --check` every five minutes cost more each year. Now the fold in `status.json`
/// keeps the open deploys and `status` reads that file and the end of history only.
#[test]
fn status_read_all_of_history_to_find_interrupted_deploys() {
    let mut read = Vec::new();
    for records in [5_000, 50_000] {
        let p = project_with_history(records);
        let history = std::fs::metadata(p.state_dir().join("history.jsonl"))
            .unwrap()
            .len();
        // The first run has no status.json: it folds history once and keeps the result.
        let state = p.state_dir().display().to_string();
        let status = ["--state-dir", &state, "status", "--format", "json"];
        p.run(&status).expect(0);
        let r = count_reads(p.command(&status));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.bytes < history / 4,
            "status read {} bytes of a {history}-byte history",
            r.bytes
        );
        let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        // Only the last deploy is interrupted: the killed ones before it were followed by
        // finished deploys.
        let interrupted = out["interrupted"].as_array().unwrap();
        assert_eq!(interrupted.len(), 1, "{out:#}");
        assert_eq!(interrupted[0]["status"], "started");
        read.push(r.bytes);
        p.skip_fold_check();
    }
    // Ten times the history, the same reads (give or take a block of the reverse reader).
    assert!(
        read[1] <= read[0] + 128 * 1024,
        "status read {} bytes at 5k records and {} at 50k",
        read[0],
        read[1]
    );
}
