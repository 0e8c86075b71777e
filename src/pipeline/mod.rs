//! Plan (what will happen) and run: the engine a run borrows, one stage's loop, the one
//! rollback, the deploy's stage loop and failure policy, the verdict, signals.

pub mod actor;
pub mod approval;
pub mod deploy;
pub mod engine;
pub mod outcome;
pub mod plan;
pub mod preflight;
pub mod preflight_gates;
pub mod progress;
pub mod queries;
pub mod rollback;
pub mod signals;
pub mod stage;
