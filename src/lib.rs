//! shipgate: ship an application through stages and regions with health gates, automatic
//! rollback and a tamper-evident history.
//!
//! The data flows one way: command line ([`cli`]) → settings ([`config`]) → plan and run
//! ([`pipeline`], [`adapters`], [`gates`], [`exec`]) → ledger ([`ledger`]) → reports
//! ([`report`], [`notify`], [`events`], [`deployments`]).

/// `eprintln!` that never panics, for text for people: it goes through the neutraliser
/// ([`output::neutral::text`]), so text from elsewhere formatted into it cannot drive the
/// terminal or the GitHub runner. stderr may be a pipe whose reader died (`deploy 2>&1 | tee
/// log` after Ctrl-C, a dropped SSH session): the line is lost, but the deploy, its rollback and
/// its records go on; `eprintln!` would panic half-way through.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut text = format!($($arg)*);
        text.push('\n');
        $crate::output::raw_stderr(&$crate::output::neutral::text(&text));
    }};
}

/// `eprint!` that never panics, neutralised (see [`say!`]).
#[macro_export]
macro_rules! say_part {
    ($($arg:tt)*) => {{
        $crate::output::raw_stderr(&$crate::output::neutral::text(&format!($($arg)*)));
    }};
}

/// `println!` that never panics, for a command's answer on stdout in human form (tables, plans,
/// the final summary): neutralised like [`say!`], so `shipgate status | grep lhr` reads it.
#[macro_export]
macro_rules! answer {
    ($($arg:tt)*) => {{
        let mut text = format!($($arg)*);
        text.push('\n');
        $crate::output::raw_stdout(&$crate::output::neutral::text(&text));
    }};
}

/// `print!` that never panics, for the answer on stdout (see [`answer!`]).
#[macro_export]
macro_rules! answer_part {
    ($($arg:tt)*) => {{
        $crate::output::raw_stdout(&$crate::output::neutral::text(&format!($($arg)*)));
    }};
}

/// `println!` that never panics, for data on stdout (JSON documents): neutralised as JSON
/// ([`output::neutral::json`]), which leaves every value a program reads unchanged.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stdout().lock(), "{}", $crate::output::neutral::json(&text));
    }};
}

pub mod adapters;
pub mod approvals;
pub mod cli;
pub mod commands;
pub mod config;
pub mod deployments;
pub mod error;
pub mod events;
pub mod exec;
pub mod exit_code;
pub mod gates;
pub mod ledger;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod redact;
pub mod report;
pub mod version;
