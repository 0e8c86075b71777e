//! `pipeline.toml`: the model, its loading and checking, and placeholders.

mod load;
pub mod matchers;
mod model;
pub mod placeholder;
pub mod promql;
mod raw;

pub use load::{did_you_mean, load, parse, valid_repository, Diagnostic};
pub use model::*;
