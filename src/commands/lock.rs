//! `shipgate lock`.

use crate::cli::{GlobalArgs, LockArgs};
use crate::error::Error;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &LockArgs, output: &Output) -> Result<i32, Error> {
    let _ = (global, args, output);
    Err(super::not_implemented("lock"))
}
