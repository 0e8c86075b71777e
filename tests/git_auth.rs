//! The git store's credentials against a real smart-HTTP remote (`git http-backend` on
//! loopback, [`crate::common::git_http`]) that wants one `Authorization` header: the
//! `http.<url>.extraheader` that `actions/checkout` leaves in the clone's config is sent with no
//! configuration, `SHIPGATE_GIT_TOKEN` overrides it, and no form of the secret ever prints.

use base64::Engine;

use crate::common::git_http::{basic, GitHttp, Seen};
use crate::common::{code, Project};
use crate::git_store::{cache_file, clone_with_origin, git, records, remote_file};

const BRANCH: &str = "shipgate/ledger";

/// The job token `actions/checkout` was given.
const SECRET: &str = "ghs_ch3ckoutJobT0ken4f9e";

/// Every form of `token` that could leak: itself, `x-access-token:TOKEN` and its base64.
fn forms_of(token: &str) -> [String; 3] {
    let userpass = format!("x-access-token:{token}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&userpass);
    [token.to_string(), userpass, b64]
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
    remote_file(&server.root().join("app.git"), file)
}

#[track_caller]
fn assert_no_secret(token: &str, what: &str, text: &str) {
    for form in forms_of(token) {
        assert!(!text.contains(&form), "{what} holds `{form}`:\n{text}");
    }
}

fn authorizations(seen: &[Seen]) -> Vec<String> {
    seen.iter().flat_map(|s| s.authorization.clone()).collect()
}

/// How `actions/checkout` stores the credential in the clone's git config.
#[derive(Debug, Clone, Copy)]
enum Checkout {
    /// v4 and before: `git config --local http.<url>/.extraheader …`.
    InRepoConfig,
    /// v6: in a file of its own, included by `includeIf.gitdir:<the clone's .git>.path`.
    IncludedFile,
}

/// Writes the checkout-style credential for `token` into `p`'s config.
fn store_like_checkout(p: &Project, server: &GitHttp, token: &str, how: Checkout) {
    let key = format!("http.{}/.extraheader", server.url);
    match how {
        Checkout::InRepoConfig => {
            git(
                p.path(),
                &["config", "--local", &key, &checkout_header(token)],
            );
        }
        Checkout::IncludedFile => {
            let file = p.path().join("home/git-credentials-1234.config");
            let file = file.to_str().unwrap();
            git(
                p.path(),
                &["config", "--file", file, &key, &checkout_header(token)],
            );
            let git_dir = git(p.path(), &["rev-parse", "--absolute-git-dir"]);
            let include = format!("includeIf.gitdir:{}.path", git_dir.trim());
            git(p.path(), &["config", "--local", &include, file]);
        }
    }
}

#[test]
fn git_store_pushes_with_the_checkouts_extraheader_and_no_other_configuration() {
    for how in [Checkout::InRepoConfig, Checkout::IncludedFile] {
        let server = GitHttp::start(&basic(SECRET));
        let p = clone_served_by(&server);
        store_like_checkout(&p, &server, SECRET, how);

        let run = p.run(&["deploy"]);
        assert_eq!(
            run.code,
            code::SUCCESS,
            "{how:?}\n--- stderr\n{}\n--- backend\n{}\n--- requests\n{:#?}",
            run.stderr,
            server.log(),
            server.seen()
        );

        // The deploy is on the branch, as the server's own repository holds it.
        let history = records(&served_file(&server, "history.jsonl"));
        let deploy = history
            .iter()
            .rev()
            .find(|r| r["kind"] == "deploy")
            .unwrap();
        assert_eq!(deploy["status"], "success", "{how:?} {history:#?}");
        assert_eq!(deploy["version"], "v2");
        let log = git(
            server.root(),
            &["--git-dir=app.git", "log", "--format=%an %s", BRANCH],
        );
        assert!(log.contains("shipgate shipgate: append deploy"), "{log}");

        // Sent up front on every request (never a 401 first), and only it; pushes included.
        let seen = server.seen();
        assert!(
            seen.iter().any(|s| s.method == "POST"
                && s.url.ends_with("/git-receive-pack")
                && s.status == 200),
            "{how:?} {seen:#?}"
        );
        for s in &seen {
            assert_eq!(s.status, 200, "{how:?} {seen:#?}");
            assert_eq!(s.authorization.len(), 1, "{how:?} {seen:#?}");
        }

        // No form of the secret anywhere shipgate writes.
        assert_no_secret(SECRET, "stdout", &run.stdout);
        assert_no_secret(SECRET, "stderr", &run.stderr);
        for file in ["history.jsonl", "audit.jsonl", "status.json"] {
            assert_no_secret(SECRET, file, &served_file(&server, file));
            assert_no_secret(SECRET, file, &cache_file(&p, file));
        }
        let r = p.run(&["history", "--format", "json"]);
        assert_no_secret(
            SECRET,
            "history --format json",
            &format!("{}{}", r.stdout, r.stderr),
        );
    }
}

#[test]
fn git_store_without_a_matching_extraheader_is_exit_2_naming_the_remote_and_no_secret() {
    const WRONG: &str = "ghs_expiredJobT0ken0000aa";
    let server = GitHttp::start(&basic(SECRET));
    // No extraheader at all; one for another path of the same server (git would not send it
    // to this remote either); and one the server refuses (an expired job token).
    for case in ["none", "elsewhere", "refused"] {
        let p = clone_served_by(&server);
        match case {
            "elsewhere" => {
                let key = format!("http.{}/app/.extraheader", server.url);
                git(p.path(), &["config", &key, &checkout_header(SECRET)]);
            }
            "refused" => store_like_checkout(&p, &server, WRONG, Checkout::InRepoConfig),
            _ => {}
        }
        let run = p.run(&["deploy"]).expect(code::USAGE);
        let url = server.repo_url("app.git");
        assert!(run.stderr.contains(&url), "{case}: {}", run.stderr);
        assert!(run.stderr.contains("`[state].remote`"), "{}", run.stderr);
        if case == "refused" {
            assert!(
                run.stderr
                    .contains("refused the `http.<url>.extraheader` credential"),
                "{}",
                run.stderr
            );
        }
        for token in [SECRET, WRONG] {
            assert_no_secret(token, "stderr", &run.stderr);
            assert_no_secret(token, "stdout", &run.stdout);
        }
        // Nothing was written on the server.
        let branches = git(server.root(), &["--git-dir=app.git", "branch", "--list"]);
        assert_eq!(branches, "", "{branches}");
    }
    // The secret scoped to another path was never sent.
    let sent = authorizations(&server.seen());
    assert!(!sent
        .iter()
        .any(|a| forms_of(SECRET).iter().any(|f| a.contains(f.as_str()))));
    assert!(
        sent.iter().any(|a| a.contains(&forms_of(WRONG)[2])),
        "{sent:?}"
    );
}

#[test]
fn git_store_token_from_the_environment_overrides_the_extraheader() {
    const TOKEN: &str = "ghp_personalT0kenForLedger77";
    let server = GitHttp::start(&basic(TOKEN));
    let mut p = clone_served_by(&server);
    store_like_checkout(&p, &server, SECRET, Checkout::InRepoConfig);
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
    assert_no_secret(SECRET, "stderr", &run.stderr);
    assert_no_secret(TOKEN, "stderr", &run.stderr);
}

/// Issue 17: every append and every `status.json` write fetched the branch first (a 7-region
/// deploy fetched some twenty times). A deploy now fetches each ref once: the branch when the
/// store opens, the lock ref when it takes the lock; every append pushes on the tip it knows.
#[test]
fn a_deploy_fetched_the_ledger_branch_before_every_append() {
    let server = GitHttp::start(&basic(SECRET));
    let p = clone_served_by(&server);
    store_like_checkout(&p, &server, SECRET, Checkout::InRepoConfig);
    p.run(&["deploy"]).expect(code::SUCCESS);

    let seen = server.seen();
    let count = |service: &str| {
        seen.iter()
            .filter(|s| s.method == "GET" && s.url.contains(&format!("service={service}")))
            .count()
    };
    let (fetches, pushes) = (count("git-upload-pack"), count("git-receive-pack"));
    let appends = records(&served_file(&server, "history.jsonl")).len();
    assert!(pushes > appends, "{pushes} pushes for {appends} records");
    assert_eq!(
        fetches, 2,
        "{fetches} fetches for {pushes} pushes: {seen:#?}"
    );
}
