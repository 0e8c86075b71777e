//! shipgate: ship an application through stages and regions with health gates, automatic
//! rollback and a tamper-evident history.
//!
//! The data flows one way: command line ([`cli`]) → settings ([`config`]) → plan and run
//! ([`pipeline`], [`adapters`], [`gates`], [`exec`]) → ledger ([`ledger`]) → reports
//! ([`report`], [`notify`], [`events`]).

pub mod adapters;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod events;
pub mod exec;
pub mod exit_code;
pub mod gates;
pub mod ledger;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod redact;
pub mod report;
pub mod version;
