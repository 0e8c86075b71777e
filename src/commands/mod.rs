//! One file per subcommand. Each takes the parsed arguments and returns the exit code.

mod completions;
mod deploy;
mod history;
mod lock;
mod publish_event;
mod rollback;
mod status;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::Error;
use crate::output::Output;

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli, output: &Output) -> Result<i32, Error> {
    match cli.command {
        Command::Completions(args) => completions::run(&args),
        Command::Validate => validate::run(&load_config(&cli.global)?, output),
        Command::Deploy(args) => deploy::run(&cli.global, &args, output),
        Command::Rollback(args) => rollback::run(&cli.global, &args, output),
        Command::Status(args) => status::run(&cli.global, &args, output),
        Command::PublishEvent(args) => publish_event::run(&cli.global, &args, output),
        Command::History(args) => history::run(&cli.global, &args, output),
        Command::Lock(args) => lock::run(&cli.global, &args, output),
    }
}

/// Loads the pipeline file and installs its secrets into the redactor.
pub fn load_config(global: &crate::cli::GlobalArgs) -> Result<Config, Error> {
    let config = crate::config::load(&global.config, global.state_dir.as_deref())?;
    let names = config.secret_env_names();
    crate::redact::install_env(&names);
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for secret in crate::redact::global().secrets() {
            // stderr: the runner reads workflow commands there too, and stdout stays data.
            crate::say!("::add-mask::{secret}");
        }
    }
    Ok(config)
}
