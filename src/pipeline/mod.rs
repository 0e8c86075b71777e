//! Plan (what will happen) and run (stages, parallel regions, rollback policy, signals).

pub mod actor;
pub mod deploy;
pub mod plan;
pub mod preflight;
pub mod run;
pub mod signals;
