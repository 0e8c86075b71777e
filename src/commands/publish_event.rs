//! `shipgate publish-event`.

use crate::cli::{GlobalArgs, PublishEventArgs};
use crate::error::Error;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &PublishEventArgs, output: &Output) -> Result<i32, Error> {
    let _ = (global, args, output);
    Err(super::not_implemented("publish-event"))
}
