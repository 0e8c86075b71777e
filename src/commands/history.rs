//! `shipgate history`.

use crate::cli::{GlobalArgs, HistoryArgs};
use crate::error::Error;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &HistoryArgs, output: &Output) -> Result<i32, Error> {
    let _ = (global, args, output);
    Err(super::not_implemented("history"))
}
