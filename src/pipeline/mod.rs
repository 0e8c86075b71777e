//! Plan (what will happen) and run (stages, parallel regions, rollback policy, signals).

pub mod plan;
