//! Health gates: the probes (http, dns, tcp, prometheus, command) and the trip/bake state
//! machine that turns probe results into region verdicts (SPEC §3).
//!
//! Probes do I/O; [`watch::StageWatch`] is pure and takes `now` from its caller, so its tests
//! run in milliseconds without sleeping. [`check::check_once`] is the `status --check` rule.

pub mod alertmanager;
pub mod check;
mod command;
mod dns;
pub(crate) mod http;
pub mod json;
pub mod judge;
pub mod probe;
pub mod prometheus;
mod tcp;
pub mod watch;

pub use check::check_once;
pub use probe::{probe, ProbeCtx, ProbeResult};
pub use watch::{GateEvent, ProbeKey, RegionVerdict, StageWatch};
