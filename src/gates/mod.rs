//! Health gates: the probes (http, dns, tcp, prometheus, command) and the trip/bake state
//! machine that turns probe results into region verdicts (SPEC §3).
//!
//! Probes do I/O; [`watch::StageWatch`] is pure and takes `now` from its caller, so its tests
//! run in milliseconds without sleeping.

pub mod probe;
pub mod watch;

pub use probe::{probe, ProbeCtx, ProbeResult};
pub use watch::{GateEvent, ProbeKey, RegionVerdict, StageWatch};
