//! A scratch pipeline on the exec adapter: "regions" are files under `state/`, deploys and
//! rollbacks are small sh scripts that log every call and fail on demand through env vars.
//!
//! Knobs (env vars of the shipgate run, inherited by the scripts):
//! - `FAIL_DEPLOY=lhr,ewr`: the deploy of these regions exits 1.
//! - `FAIL_ROLLBACK=lhr`: the rollback of these regions exits 1.
//! - `FAIL_GATE=ewr`: the health gate fails in these regions while they run `BAD_VERSION`
//!   (default `v2`), so a rollback's verification passes.
//! - `DEPLOY_SLEEP=1`: each deploy takes this many seconds; `ROLLBACK_SLEEP` likewise;
//!   `SETTLE_SLEEP=9`: each deploy changes its region first, then waits this long (like a
//!   platform command that updates the instances, then waits for their health checks);
//! - `EMPTY_CURRENT=1`: the `current` command prints nothing (and exits 0);
//!   `SLOW_REGIONS=nrt`: these regions' deploys take 3 s more; `HEALTH_SLEEP=2`: each probe.
//! - a file `state/<region>.bad` holding a version makes the health gate fail in that region
//!   while it runs that version.

use super::Project;

pub const DEPLOY: &str = r#"#!/bin/sh
set -eu
dir="$(cd "$(dirname "$0")" && pwd)"
echo "deploy $1 $2 stage=$SHIPGATE_STAGE prev=$SHIPGATE_PREVIOUS_VERSION id=$SHIPGATE_DEPLOY_ID" >> "$dir/state/calls.log"
case ",${FAIL_DEPLOY:-}," in *",$1,"*) echo "deploy of $1 exploded" >&2; exit 1;; esac
sleep "${DEPLOY_SLEEP:-0}"
case ",${SLOW_REGIONS:-}," in *",$1,"*) sleep 3;; esac
printf '%s\n' "$2" > "$dir/state/$1"
echo "$1 now runs $2"
sleep "${SETTLE_SLEEP:-0}"
"#;

pub const ROLLBACK: &str = r#"#!/bin/sh
set -eu
dir="$(cd "$(dirname "$0")" && pwd)"
echo "rollback $1 $2 prev=$SHIPGATE_PREVIOUS_VERSION" >> "$dir/state/calls.log"
sleep "${ROLLBACK_SLEEP:-0}"
case ",${FAIL_ROLLBACK:-}," in *",$1,"*) echo "rollback of $1 exploded" >&2; exit 1;; esac
printf '%s\n' "$2" > "$dir/state/$1"
"#;

pub const CURRENT: &str = r#"#!/bin/sh
dir="$(cd "$(dirname "$0")" && pwd)"
[ -n "${EMPTY_CURRENT:-}" ] && exit 0
[ -f "$dir/state/$1" ] && cat "$dir/state/$1"
exit 0
"#;

pub const HEALTH: &str = r#"#!/bin/sh
dir="$(cd "$(dirname "$0")" && pwd)"
v="$(cat "$dir/state/$1" 2>/dev/null)"
sleep "${HEALTH_SLEEP:-0}"
if [ -f "$dir/state/$1.bad" ] && [ "$(cat "$dir/state/$1.bad")" = "$v" ]; then echo "$1: HTTP 500 (bad flag)" >&2; exit 1; fi
case ",${FAIL_GATE:-}," in *",$1,"*) if [ "$v" = "${BAD_VERSION:-v2}" ]; then echo "$1: HTTP 503" >&2; exit 1; fi;; esac
echo "$1 ok at $v"
"#;

/// The three-stage pipeline of the seed scenario on the exec adapter.
pub const THREE_STAGES: &str = r#"
[app]
name = "demo"
version = "env:TEST_VERSION"

[target]
adapter = "exec"

[target.exec]
deploy = ["./deploy.sh", "{region}", "{version}"]
current = ["./current.sh", "{region}"]
rollback = ["./rollback.sh", "{region}", "{version}"]

[defaults]
timeout = "30s"
command_timeout = "20s"

[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
gates = ["health"]
on_failure = "rollback"

[[stage]]
name = "primary"
regions = ["ewr"]
gates = ["health"]
on_failure = "rollback"

[[stage]]
name = "full"
regions = ["ord", "fra"]
gates = ["health"]
on_failure = "continue"

[gate.health]
type = "command"
run = ["./health.sh", "{region}"]
interval = "100ms"
timeout = "5s"
severity = "P1"
failures = 2
"#;

/// The `[app]`, `[target]` and `[defaults]` of [`THREE_STAGES`], for pipelines with stages of
/// their own.
pub fn exec_header() -> &'static str {
    THREE_STAGES.split("[[stage]]").next().unwrap_or_default()
}

pub const REGIONS: &[&str] = &["lhr", "nrt", "ewr", "ord", "fra"];

/// A project with the scripts, `config`, and every region of `REGIONS` at `v1`.
pub fn exec_project(config: &str) -> Project {
    let mut p = Project::with_config(config);
    p.script("deploy.sh", DEPLOY);
    p.script("rollback.sh", ROLLBACK);
    p.script("current.sh", CURRENT);
    p.script("health.sh", HEALTH);
    std::fs::create_dir_all(p.path().join("state")).unwrap();
    for r in REGIONS {
        p.write(&format!("state/{r}"), "v1\n");
    }
    p.env("TEST_VERSION", "v2");
    p
}

impl Project {
    /// The version a scratch region runs.
    pub fn live(&self, region: &str) -> String {
        self.read(&format!("state/{region}")).trim().to_string()
    }

    /// The scripts' call log.
    pub fn calls(&self) -> Vec<String> {
        self.read("state/calls.log")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Records of a JSONL file in the state dir.
    pub fn records(&self, file: &str) -> Vec<serde_json::Value> {
        self.read(&format!(".shipgate/{file}"))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn history(&self) -> Vec<serde_json::Value> {
        self.records("history.jsonl")
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.records("audit.jsonl")
    }

    /// History records of one kind.
    pub fn kind(&self, kind: &str) -> Vec<serde_json::Value> {
        self.history()
            .into_iter()
            .filter(|r| r["kind"] == kind)
            .collect()
    }
}
