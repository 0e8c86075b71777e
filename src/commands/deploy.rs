//! `shipgate deploy`.

use crate::cli::{DeployArgs, GlobalArgs};
use crate::error::Error;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &DeployArgs, output: &Output) -> Result<i32, Error> {
    let _ = (global, args, output);
    Err(super::not_implemented("deploy"))
}
