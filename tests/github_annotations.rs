//! Under GitHub Actions every failure is an annotation where it happened, and every run ends
//! with one annotation of its outcome; config errors point at their file, line and column;
//! `status --check` writes annotations, a summary table and outputs.

use crate::common::pipeline::*;
use crate::common::process::{signal, SIGINT};
use crate::common::{code, Project, Run};

/// A project whose runs look like GitHub Actions steps.
fn actions(config: &str) -> Project {
    let mut p = exec_project(config);
    let out = p.path().join("gh-output");
    let summary = p.path().join("gh-summary.md");
    let workspace = p.path().to_str().unwrap().to_string();
    p.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", out.to_str().unwrap())
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .env("GITHUB_WORKSPACE", &workspace);
    p
}

/// The workflow commands of a run (stderr lines starting with `::`), groups left out.
fn annotations(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("::") && !l.contains("group::"))
        .map(str::to_string)
        .collect()
}

fn outputs(p: &Project) -> Vec<String> {
    p.read("gh-output").lines().map(str::to_string).collect()
}

/// Was: a deploy that rolled back ended with no annotation of its outcome.
#[test]
fn a_rolled_back_deploy_has_an_error_for_its_gate_and_one_for_its_outcome() {
    let mut p = actions(THREE_STAGES);
    p.env("FAIL_GATE", "ewr");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    let notes = annotations(&run);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("::error title=gate health tripped in ewr::")),
        "{notes:#?}"
    );
    let outcome: Vec<&String> = notes
        .iter()
        .filter(|n| n.starts_with("::error title=deploy demo v2%3A "))
        .collect();
    assert_eq!(outcome.len(), 1, "{notes:#?}");
    assert!(
        outcome[0].starts_with("::error title=deploy demo v2%3A rolled back (exit 1)::"),
        "{notes:#?}"
    );
    assert!(
        !notes.iter().any(|n| n.starts_with("::notice")),
        "{notes:#?}"
    );
}

/// Was: a failed rollback was one annotation for the whole deploy; each region's is its own,
/// and the outcome is not written twice.
#[test]
fn a_failed_rollback_has_an_error_per_region_and_one_outcome() {
    let mut p = actions(THREE_STAGES);
    p.env("FAIL_GATE", "ewr").env("FAIL_ROLLBACK", "nrt");
    let run = p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    let notes = annotations(&run);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("::error title=rollback failed in nrt::")),
        "{notes:#?}"
    );
    let outcomes = notes
        .iter()
        .filter(|n| {
            n.starts_with("::error title=deploy demo v2%3A rollback failed (exit 3)::")
                || n.starts_with("::error title=rollback failed::")
        })
        .count();
    assert_eq!(outcomes, 1, "{notes:#?}");
}

#[test]
fn a_failed_deploy_command_is_an_error_for_its_region() {
    let mut p = actions(THREE_STAGES);
    p.env("FAIL_DEPLOY", "nrt");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    let notes = annotations(&run);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("::error title=deploy failed in nrt::")),
        "{notes:#?}"
    );
}

/// Was: a success wrote no annotation, and a partial one only a warning with no title.
#[test]
fn a_success_is_a_notice_and_a_partial_deploy_an_error() {
    let p = actions(THREE_STAGES);
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    let notes = annotations(&run);
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.starts_with("::notice title=deploy demo v2%3A success::"))
            .count(),
        1,
        "{notes:#?}"
    );
    assert!(
        !notes.iter().any(|n| n.starts_with("::error")),
        "{notes:#?}"
    );

    let mut p = actions(THREE_STAGES);
    p.env("FAIL_GATE", "fra");
    let run = p.run(&["deploy"]).expect(code::PARTIAL);
    let notes = annotations(&run);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("::error title=deploy demo v2%3A partial (exit 4)::")),
        "{notes:#?}"
    );
    // Allowed to pass: a warning, not an error.
    let run = p.run(&["deploy", "--allow-partial"]).expect(code::SUCCESS);
    assert!(
        annotations(&run)
            .iter()
            .any(|n| n.starts_with("::warning title=deploy demo v2%3A partial::")),
        "{:#?}",
        annotations(&run)
    );
}

/// Was: a config with two errors was one `::error title=shipgate::` with no place.
#[test]
fn each_config_error_is_an_annotation_at_its_file_line_and_column() {
    let config = THREE_STAGES
        .replace(
            "gates = [\"health\"]\non_failure = \"continue\"",
            "gates = [\"nope\"]\non_failure = \"continue\"",
        )
        .replace(
            "on_failure = \"rollback\"\n\n[[stage]]\nname = \"primary\"",
            "on_failure = \"bogus\"\n\n[[stage]]\nname = \"primary\"",
        );
    let p = actions(&config);
    // Run from a subdirectory, as a `working-directory:` would: the file is still named
    // relative to the workspace.
    std::fs::create_dir_all(p.path().join("sub")).unwrap();
    let run: Run = p
        .command(&["-c", "../pipeline.toml", "validate"])
        .current_dir(p.path().join("sub"))
        .output()
        .unwrap()
        .into();
    let run = run.expect(code::USAGE);
    let notes = annotations(&run);
    let errors: Vec<&String> = notes.iter().filter(|n| n.starts_with("::error")).collect();
    assert_eq!(errors.len(), 2, "{notes:#?}");
    let text = p.read("pipeline.toml");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let bogus = line_of("\"bogus\"");
    let nope = line_of("\"nope\"");
    assert!(
        errors.iter().any(|e| e.starts_with(&format!(
            "::error file=pipeline.toml,line={bogus},col=14,endColumn=21,title=shipgate%3A invalid pipeline::invalid on_failure `bogus`"
        ))),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e
            .starts_with(&format!("::error file=pipeline.toml,line={nope},col=10,"))
            && e.contains("unknown gate `nope`")),
        "{errors:#?}"
    );
    let json: serde_json::Value = p
        .run(&["--format", "json", "validate"])
        .expect(code::USAGE)
        .json();
    assert_eq!(
        json["error"]["locations"].as_array().unwrap().len(),
        2,
        "{json}"
    );
}

/// Was: `status --check` under Actions wrote no annotation, summary or output.
#[test]
fn status_check_writes_annotations_a_summary_and_outputs() {
    let mut p = actions(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    std::fs::write(p.path().join("gh-output"), "").unwrap();
    let run = p.run(&["status", "--check"]).expect(code::SUCCESS);
    assert!(
        annotations(&run)
            .iter()
            .any(|n| n.starts_with("::notice title=status check passed%3A demo::")),
        "{:#?}",
        annotations(&run)
    );
    assert_eq!(outputs(&p), ["status=ok", "problems=0", "exit_code=0"]);

    p.write("state/fra.bad", "v2\n");
    std::fs::write(p.path().join("gh-output"), "").unwrap();
    std::fs::write(p.path().join("gh-summary.md"), "").unwrap();
    p.env("GITHUB_ACTIONS", "true");
    let run = p.run(&["status", "--check"]).expect(code::CHECK_FAILED);
    let errors: Vec<String> = annotations(&run)
        .into_iter()
        .filter(|n| n.starts_with("::error title=status check failed%3A demo::"))
        .collect();
    assert_eq!(errors.len(), 1, "{:#?}", annotations(&run));
    assert!(errors[0].contains("fra"), "{errors:#?}");
    assert_eq!(
        outputs(&p),
        ["status=problems", "problems=1", "exit_code=6"]
    );
    let md = p.read("gh-summary.md");
    assert!(
        md.contains("| Region | Stage | Version | State | Gates |"),
        "{md}"
    );
    assert!(
        md.contains("| lhr | canary | v2 | success | health ✓ |"),
        "{md}"
    );
    assert!(
        md.contains("| fra | full | v2 | success | health ✗ "),
        "{md}"
    );
}

/// A cancelled deploy ends with one `::error` naming the cancel and its exit code.
#[test]
fn a_cancelled_deploy_has_one_error_for_its_outcome() {
    let mut p = actions(THREE_STAGES);
    p.env("SETTLE_SLEEP", "9");
    let child = p
        .command(&["deploy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(p.live("lhr") == "v2" && p.live("nrt") == "v2") {
        assert!(
            std::time::Instant::now() < deadline,
            "the canary never ran v2"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    signal(child.id(), SIGINT);
    let run: Run = child.wait_with_output().unwrap().into();
    let run = run.expect(code::SIGINT);
    let notes = annotations(&run);
    let outcome: Vec<&String> = notes
        .iter()
        .filter(|n| n.starts_with("::error title=deploy demo v2%3A "))
        .collect();
    assert_eq!(outcome.len(), 1, "{notes:#?}");
    assert!(
        outcome[0].starts_with("::error title=deploy demo v2%3A cancelled (exit 130)::"),
        "{notes:#?}"
    );
}
