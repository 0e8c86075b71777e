//! `shipgate rollback`.

use crate::cli::{GlobalArgs, RollbackArgs};
use crate::error::Error;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &RollbackArgs, output: &Output) -> Result<i32, Error> {
    let _ = (global, args, output);
    Err(super::not_implemented("rollback"))
}
