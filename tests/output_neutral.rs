//! Output nobody else can write into (issue "A ledger that never lies under faults, and output
//! that nobody else can write into", part 7): text shipgate did not write never reaches the
//! GitHub runner as a workflow command nor the terminal as an escape sequence, and the workflow
//! commands shipgate writes are escaped as `@actions/core` escapes them.

use crate::common::code;
use crate::common::http::Server;
use crate::common::pipeline::{exec_header, exec_project};
use crate::common::Project;

/// What a hostile platform, sink or person puts into the text shipgate prints. `PWN` marks it.
const INJECTIONS: &[&str] = &[
    "::stop-commands::PWNTOKEN",
    "  ::error::PWN forged",
    "\t::add-mask::PWN",
    "##[error]PWN legacy",
    "x ##[group]PWN",
    "\u{1b}]0;PWN title\u{7}",
    "\u{1b}[2J\u{1b}[HPWN",
    "\u{1b}]8;;https://evil.example/\u{1b}\\PWN link\u{1b}]8;;\u{1b}\\",
    "\rPWN::warning::over",
    "\u{9b}2JPWN",
    "\u{202e}NWP",
    "%0A::error::PWN",
    "\u{2028}::notice::PWN",
];

/// The workflow commands shipgate itself writes.
const OWN_COMMANDS: &[&str] = &[
    "error", "warning", "notice", "group", "endgroup", "add-mask",
];

/// Every line of `text` is safe: no escape, no legacy `##[`, no C1 control, and a line that
/// is a workflow command is shipgate's own (at column 0, a known command, nothing injected
/// before its data).
fn assert_clean(text: &str, what: &str) {
    for line in text.split('\n') {
        assert!(!line.contains('\u{1b}'), "{what}: raw ESC in {line:?}");
        assert!(!line.contains("##["), "{what}: `##[` in {line:?}");
        assert!(
            !line.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || (c.is_control() && c != '\t')),
            "{what}: a control character in {line:?}"
        );
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("::") {
            assert_eq!(
                trimmed, line,
                "{what}: an indented workflow command {line:?}"
            );
            let head = rest.split("::").next().unwrap_or_default();
            let name = head.split(' ').next().unwrap_or_default();
            assert!(
                OWN_COMMANDS.contains(&name),
                "{what}: not shipgate's command: {line:?}"
            );
            assert!(!head.contains("PWN"), "{what}: injected command {line:?}");
        }
    }
}

fn github(p: &mut Project) {
    let summary = p.path().join("summary.md");
    let outputs = p.path().join("outputs.txt");
    p.env("GITHUB_ACTIONS", "true");
    p.env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    p.env("GITHUB_OUTPUT", outputs.to_str().unwrap());
}

const STAGES: &str = r#"
[[stage]]
name = "can|ary%::x"
regions = ["lhr"]
on_failure = "rollback"

[events]
url_env = "SHIPGATE_EVENTS_URL"
format = "plain"
signing = "none"
"#;

/// A deploy whose platform prints `payload` on stderr and fails, while the event sink answers
/// 500 with `payload` as its body: every channel carries it.
fn hostile_deploy(payload: &str) -> (Project, Server, crate::common::Run) {
    let sink = Server::fixed(500, payload);
    let mut p = exec_project(&format!("{}{STAGES}", exec_header()));
    p.write("payload", payload);
    p.script(
        "deploy.sh",
        "#!/bin/sh\ndir=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\ncat \"$dir/payload\" >&2\nexit 1\n",
    );
    p.env("SHIPGATE_EVENTS_URL", &format!("{}/events", sink.url));
    p.env("SHIPGATE_RETRY_BASE_MS", "1");
    github(&mut p);
    let r = p.run(&["deploy"]);
    (p, sink, r)
}

#[test]
fn platform_stderr_and_a_sink_body_never_become_workflow_commands_or_escapes() {
    let payload = INJECTIONS.join("\n");
    let (p, sink, r) = hostile_deploy(&payload);
    let r = r.expect(code::FAILED);
    assert!(!sink.requests().is_empty(), "the sink was asked");
    assert_clean(&r.stderr, "stderr");
    assert_clean(&r.stdout, "stdout");
    // The tail is shown, visibly.
    assert!(
        r.stderr.contains("\\x3a:stop-commands::PWNTOKEN"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\\x1b]0;PWN title\\x07"), "{}", r.stderr);
    assert!(r.stderr.contains("#\\x23[error]PWN legacy"), "{}", r.stderr);
    // The group title is escaped data of shipgate's own command.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("::group::Stage 1/1: can|ary%25::x (lhr)")),
        "{}",
        r.stderr
    );
    // The step summary's table keeps its columns.
    let summary = p.read("summary.md");
    let row = summary
        .lines()
        .find(|l| l.contains("lhr"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(row.starts_with("| can\\|ary%::x | lhr |"), "{row}");
    assert_eq!(row.matches(" | ").count(), 5, "{row}");
}

#[test]
fn flag_values_are_quoted_visibly_in_errors_clap_included() {
    let mut p = exec_project(crate::common::pipeline::THREE_STAGES);
    github(&mut p);
    for value in INJECTIONS {
        let value = value.replace('\0', "");
        for args in [
            vec!["status", "--format", value.as_str()],
            vec!["rollback", "--region", value.as_str(), "--yes"],
            vec!["history", "--since", value.as_str()],
        ] {
            let r = p.run(&args);
            assert_ne!(r.code, 0, "{args:?}");
            assert_clean(&r.stderr, &format!("stderr of {args:?}"));
            assert_clean(&r.stdout, &format!("stdout of {args:?}"));
        }
    }
}

#[test]
fn a_multi_line_secret_and_one_with_percent_are_masked_whole_and_line_by_line() {
    let mut p = exec_project(crate::common::pipeline::THREE_STAGES);
    github(&mut p);
    p.env(
        "FLY_API_TOKEN",
        "-----BEGIN KEY-----\nc2VjcmV0LWxpbmU=\n-----END KEY-----",
    );
    p.env("GITHUB_TOKEN", "abc%0Adef:ghi");
    let r = p.run(&["validate"]);
    let masks: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .collect();
    for expected in [
        "-----BEGIN KEY-----%0Ac2VjcmV0LWxpbmU=%0A-----END KEY-----",
        "-----BEGIN KEY-----",
        "c2VjcmV0LWxpbmU=",
        "-----END KEY-----",
        "abc%250Adef:ghi",
    ] {
        assert!(
            masks.contains(&expected),
            "{expected} in {masks:?}\n{}",
            r.stderr
        );
    }
}

/// Random bytes and escape sequences through every printed channel: the platform's stderr,
/// the event sink's body, flag values; the lines shipgate prints stay clean. The seed is
/// printed, and `SHIPGATE_PROPTEST_SEED` replays it.
#[test]
fn random_bytes_through_every_channel_never_escape() {
    let seed = std::env::var("SHIPGATE_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (SHIPGATE_PROPTEST_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let pieces: Vec<char> = "\u{1b}\u{7}\u{9b}\u{85}\u{202e}\u{2028}\r\n\t :#[]%,;0PWN"
        .chars()
        .collect();
    let mut random = |len: usize| -> String {
        (0..len)
            .map(|_| match rng.u8(..4) {
                0 => INJECTIONS[rng.usize(..INJECTIONS.len())].to_string(),
                1 => rng.char('\u{1}'..'\u{a0}').to_string(),
                2 => pieces[rng.usize(..pieces.len())].to_string(),
                _ => rng.alphanumeric().to_string(),
            })
            .collect()
    };
    for round in 0..6 {
        let payload = random(200);
        let (_p, _sink, r) = hostile_deploy(&payload);
        assert_eq!(r.code, code::FAILED, "round {round}: {}", r.stderr);
        assert_clean(
            &r.stderr,
            &format!("seed {seed} round {round} deploy stderr"),
        );
        assert_clean(
            &r.stdout,
            &format!("seed {seed} round {round} deploy stdout"),
        );
    }
    let mut p = exec_project(crate::common::pipeline::THREE_STAGES);
    github(&mut p);
    for round in 0..10 {
        let value = random(40);
        for args in [
            vec!["status", "--format", value.as_str()],
            vec!["rollback", "--region", value.as_str(), "--yes"],
            vec![value.as_str()],
        ] {
            let r = p.run(&args);
            let what = format!("seed {seed} round {round} {args:?}");
            assert_clean(&r.stderr, &what);
            assert_clean(&r.stdout, &what);
        }
    }
}

#[test]
fn colour_is_shipgates_own_and_only_its_own() {
    let p = exec_project(crate::common::pipeline::THREE_STAGES);
    let r = p.run(&[
        "rollback",
        "--color",
        "always",
        "--region",
        "\u{1b}]0;PWN\u{7}\u{1b}[1;31mred",
        "--yes",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("\u{1b}[1;31merror\u{1b}[0m"),
        "{:?}",
        r.stderr
    );
    assert!(
        r.stderr.contains("\\x1b]0;PWN\\x07\\x1b[1;31mred"),
        "{:?}",
        r.stderr
    );
    assert!(!r.stderr.contains("\u{1b}]0"), "{:?}", r.stderr);
    assert_eq!(r.stderr.matches('\u{1b}').count() % 2, 0, "{:?}", r.stderr);
}
