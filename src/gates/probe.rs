//! One probe of one gate.

use std::path::PathBuf;

use crate::config::placeholder::Vars;
use crate::config::Gate;
use crate::exec::Cancel;

/// The outcome of one probe: pass or fail, and a one-line human detail
/// (`HTTP 503 in 41 ms`, `error rate 0.083 > max 0.05 {region="lhr"}`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeResult {
    pub pass: bool,
    pub detail: String,
}

/// What a probe needs besides the gate.
pub struct ProbeCtx<'a> {
    /// Command gates run here (the config file's directory).
    pub cwd: PathBuf,
    pub cancel: &'a Cancel,
}

/// Probes `gate` once, its templates rendered with `vars`, bounded by `gate.timeout`. Never
/// panics, whatever the server answers.
pub fn probe(gate: &Gate, vars: &Vars, ctx: &ProbeCtx<'_>) -> ProbeResult {
    let _ = (gate, vars, ctx);
    ProbeResult {
        pass: false,
        detail: "probes are not implemented yet".into(),
    }
}
