//! One integration binary: every test runs the real `shipgate` binary against fake platform
//! CLIs and real local servers on loopback.

mod common;

mod adapters;
mod approvals;
mod config;
mod cost;
mod deploy;
mod engine_regressions;
mod events;
mod fly;
mod gates;
mod git_auth;
mod git_store;
mod github_annotations;
mod github_deployments;
mod github_files;
mod history;
mod judge;
mod kubernetes;
mod ledger_faults;
mod manual_lock;
mod monitoring_gates;
mod notify;
mod one_truth;
mod operator;
mod output_neutral;
mod policy;
mod preflight;
mod preflight_gates;
mod progressive_steps;
mod promql;
mod rollback;
mod status;
