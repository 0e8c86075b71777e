//! `shipgate validate`: load and check the config, print the resolved plan.
//!
//! It also looks for programs a deploy would run that cannot be started, and warns about them
//! without failing: the config itself is valid, and `validate` often runs where the scripts or
//! the platform CLI are not (a lint job, the examples of the README). `deploy` refuses to start
//! without them (exit 2).

use crate::cli::Format;
use crate::config::{Config, Stage};
use crate::error::Error;
use crate::exit_code;
use crate::output::Output;
use crate::pipeline::{plan, preflight};

pub fn run(config: &Config, output: &Output) -> Result<i32, Error> {
    let adapter = crate::adapters::build(config)?;
    let stages: Vec<&Stage> = config.stages.iter().collect();
    let missing = preflight::missing_programs(
        config,
        adapter.as_ref(),
        &stages,
        None,
        preflight::Purpose::Deploy,
    );
    match output.format {
        Format::Json | Format::Jsonl => output.json(&plan::config_json(config)),
        Format::Human => {
            if !output.quiet {
                crate::answer_part!("{}", plan::render_config(config, output));
            }
        }
    }
    for m in &missing {
        output.warn(preflight::warning(m));
    }
    if output.format == Format::Human && !output.quiet {
        crate::answer!("{} is valid", config.path.display());
    }
    Ok(exit_code::SUCCESS)
}
