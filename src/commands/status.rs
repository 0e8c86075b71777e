//! `shipgate status`.

use crate::cli::{GlobalArgs, StatusArgs};
use crate::error::Error;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &StatusArgs, output: &Output) -> Result<i32, Error> {
    let _ = (global, args, output);
    Err(super::not_implemented("status"))
}
