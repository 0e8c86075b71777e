//! The 3 a.m. operator (issue "The 3 a.m. operator"): the answer of a command is on stdout, so
//! it pipes, greps and redirects; progress, warnings and prompts stay on stderr.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::code;
use crate::common::pipeline::{exec_project, THREE_STAGES};
use crate::common::Project;

/// `shipgate <args> | <filter…>` through a real pipe: what the filter printed.
fn piped(p: &Project, args: &[&str], filter: &[&str]) -> String {
    let mut shipgate = p.command(args).stdout(Stdio::piped()).spawn().unwrap();
    let out = Command::new(filter[0])
        .args(&filter[1..])
        .stdin(shipgate.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = shipgate.wait();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Was: `history`, `status`, `history --stats`, `validate` and `lock status` printed their
/// table on stderr, so `shipgate history | head` showed nothing.
#[test]
fn the_answer_is_on_stdout_so_pipes_and_redirects_work() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);

    let head = piped(&p, &["history"], &["head", "-n", "2"]);
    assert_eq!(head.lines().count(), 2, "{head}");
    assert!(head.starts_with("TIME "), "{head}");

    let grep = piped(&p, &["status"], &["grep", "lhr"]);
    assert!(grep.contains("lhr") && grep.contains("v3"), "{grep}");

    let report = p.path().join("report.txt");
    let f = std::fs::File::create(&report).unwrap();
    let run = p
        .command(&["history", "--stats"])
        .stdout(f)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(code::SUCCESS));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("success rate"), "{text}");

    for args in [
        &["validate"][..],
        &["lock", "status"][..],
        &["history", "--audit"][..],
        &["deploy", "--dry-run"][..],
        &["rollback", "--dry-run"][..],
    ] {
        let r = p.run(args);
        assert_eq!(r.code, code::SUCCESS, "{args:?}: {}", r.stderr);
        assert!(!r.stdout.trim().is_empty(), "{args:?}: nothing on stdout");
        assert!(!r.stdout.contains('\u{1b}'), "{args:?}: colour on a pipe");
    }
    // The final summary of a deploy is its answer; the progress lines are not.
    p.env("TEST_VERSION", "v4");
    let r = p.run(&["deploy"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("deploy success"), "{}", r.stdout);
    assert!(!r.stdout.contains("stage 1/3"), "{}", r.stdout);
    assert!(r.stderr.contains("stage 1/3"), "{}", r.stderr);
}

/// `TERM=dumb` means no colour, even where colour would be forced.
#[test]
fn a_dumb_terminal_gets_no_colour() {
    let mut p = exec_project(THREE_STAGES);
    p.env("CLICOLOR_FORCE", "1");
    let forced = p.run(&["rollback", "--region", "nope", "--yes"]);
    assert!(
        forced.stderr.contains('\u{1b}'),
        "the control: {:?}",
        forced.stderr
    );
    p.env("TERM", "dumb");
    let r = p.run(&["rollback", "--region", "nope", "--yes"]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains('\u{1b}'), "{:?}", r.stderr);
}

/// Was: declining the rollback prompt exited 1, the code reserved for "failed and rolled
/// back". Now it is an answer: exit 0, nothing changed. Through a real terminal.
#[test]
fn a_declined_prompt_changes_nothing_and_exits_0() {
    if !crate::common::pty::Tmux::available() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);
    let history = p.read(".shipgate/history.jsonl");
    let calls = p.calls().len();
    let tty = crate::common::pty::Tmux::start(
        p.path(),
        &p.tty_env(),
        &[crate::common::bin(), "rollback".into()],
    );
    tty.wait_for("the prompt", Duration::from_secs(20), |s| {
        s.contains("[y/N]")
    });
    tty.send(&["n", "Enter"]);
    let screen = tty.wait_for("the exit", Duration::from_secs(20), |s| {
        s.contains("[exit ")
    });
    assert!(screen.contains("aborted; nothing was changed"), "{screen}");
    assert!(screen.contains("[exit 0]"), "{screen}");
    assert_eq!(p.read(".shipgate/history.jsonl"), history);
    assert_eq!(p.calls().len(), calls, "no platform call");
}
