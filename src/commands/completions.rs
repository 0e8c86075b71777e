//! `shipgate completions <shell>`.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Error;
use crate::exit_code;

pub fn run(args: &CompletionsArgs) -> Result<i32, Error> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "shipgate", &mut std::io::stdout());
    Ok(exit_code::SUCCESS)
}
