//! The git store's credentials against a real smart-HTTP remote (`git http-backend` on
//! loopback, [`crate::common::git_http`]) that wants one `Authorization` header: the
//! `http.<url>.extraheader` that `actions/checkout` leaves in the clone's config is sent with no
//! configuration, `SHIPGATE_GIT_TOKEN` overrides it, and no form of the secret ever prints.

use base64::Engine;

use crate::common::git_http::{basic, GitHttp, Seen};
use crate::common::{code, Project};
use crate::git_store::{clone_with_origin, git, records};

const BRANCH: &str = "shipgate/ledger";

/// The job token `actions/checkout` was given.
const SECRET: &str = "ghs_ch3ckoutJobT0ken4f9e";

/// Every form of [`SECRET`] that could leak: itself, `x-access-token:SECRET` and its base64.
fn forms_of_secret() -> [String; 3] {
    let userpass = format!("x-access-token:{SECRET}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&userpass);
    [SECRET.to_string(), userpass, b64]
}

/// The header `actions/checkout` writes (`AUTHORIZATION: basic <base64>`).
fn checkout_header(token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("AUTHORIZATION: basic {b64}")
}

/// A clone whose `origin` is `app.git` on `server`, run with no credential from the
/// environment and no system or user git config (HOME is an empty directory).
fn clone_served_by(server: &GitHttp) -> Project {
    server.bare("app.git");
    let mut p = clone_with_origin(&server.repo_url("app.git"));
    let home = p.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let home = home.to_str().unwrap().to_string();
    p.env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1");
    p
}

/// The server-side view of the ledger branch: `git --git-dir=<bare> show <branch>:<file>`.
fn served_file(server: &GitHttp, file: &str) -> String {
    git(
        server.root(),
        &["--git-dir=app.git", "show", &format!("{BRANCH}:{file}")],
    )
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for form in forms_of_secret() {
        assert!(!text.contains(&form), "{what} holds `{form}`:\n{text}");
    }
}

fn authorizations(seen: &[Seen]) -> Vec<String> {
    seen.iter().flat_map(|s| s.authorization.clone()).collect()
}

#[test]
fn git_store_without_a_matching_extraheader_is_exit_2_naming_the_remote_and_no_secret() {
    let server = GitHttp::start(&basic(SECRET));
    // No extraheader at all; then one for another path of the same server, which git would not
    // send to this remote either.
    for scoped_elsewhere in [false, true] {
        let p = clone_served_by(&server);
        if scoped_elsewhere {
            git(
                p.path(),
                &[
                    "config",
                    &format!("http.{}/app/.extraheader", server.url),
                    &checkout_header(SECRET),
                ],
            );
        }
        let run = p.run(&["deploy"]).expect(code::USAGE);
        let url = server.repo_url("app.git");
        assert!(run.stderr.contains(&url), "{}", run.stderr);
        assert!(run.stderr.contains("`[state].remote`"), "{}", run.stderr);
        assert_no_secret("stderr", &run.stderr);
        assert_no_secret("stdout", &run.stdout);
        // Nothing was written on the server.
        let branches = git(server.root(), &["--git-dir=app.git", "branch", "--list"]);
        assert_eq!(branches, "", "{branches}");
    }
    assert!(!authorizations(&server.seen())
        .iter()
        .any(|a| forms_of_secret().iter().any(|f| a.contains(f.as_str()))));
}

#[test]
fn git_store_token_from_the_environment_overrides_the_extraheader() {
    const TOKEN: &str = "ghp_personalT0kenForLedger77";
    let server = GitHttp::start(&basic(TOKEN));
    let mut p = clone_served_by(&server);
    git(
        p.path(),
        &[
            "config",
            &format!("http.{}/.extraheader", server.url),
            &checkout_header(SECRET),
        ],
    );
    p.env("SHIPGATE_GIT_TOKEN", TOKEN);

    let run = p.run(&["deploy"]);
    assert_eq!(
        run.code,
        code::SUCCESS,
        "--- stderr\n{}\n--- backend\n{}\n--- requests\n{:#?}",
        run.stderr,
        server.log(),
        server.seen()
    );
    assert_eq!(
        records(&served_file(&server, "history.jsonl"))
            .iter()
            .rev()
            .find(|r| r["kind"] == "deploy")
            .unwrap()["status"],
        "success"
    );
    // The checkout's header was never sent: each request carried the token or nothing (the
    // challenge the token answers).
    let seen = server.seen();
    for a in authorizations(&seen) {
        assert_eq!(a, basic(TOKEN), "{seen:#?}");
    }
    assert!(seen.iter().any(|s| s.status == 401));
    assert_no_secret("stderr", &run.stderr);
    assert!(!run.stderr.contains(TOKEN), "{}", run.stderr);
}
