//! `shipgate validate`: load and check the config, print the resolved plan.

use crate::cli::Format;
use crate::config::Config;
use crate::error::Error;
use crate::exit_code;
use crate::output::Output;
use crate::pipeline::plan;

pub fn run(config: &Config, output: &Output) -> Result<i32, Error> {
    match output.format {
        Format::Json | Format::Jsonl => output.json(&plan::config_json(config)),
        Format::Human => {
            if !output.quiet {
                crate::say_part!("{}", plan::render_config(config, output));
                crate::say!("{} is valid", config.path.display());
            }
        }
    }
    Ok(exit_code::SUCCESS)
}
