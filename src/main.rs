use clap::Parser;

fn main() {
    let cli = shipgate::cli::Cli::parse();
    let output = shipgate::output::Output::from_args(&cli.global);
    let code = match shipgate::commands::run(cli, &output) {
        Ok(code) => code,
        Err(err) => {
            let text = shipgate::redact::redact(&err.render(output.color));
            shipgate::say_part!("{text}");
            output.json_error(&err);
            if output.github {
                let message = shipgate::redact::redact(&err.to_string());
                shipgate::report::github::command(&format!(
                    "::error title=shipgate::{}",
                    shipgate::output::github_escape(&message)
                ));
                // Later workflow steps read the outcome even when shipgate stopped early.
                let _ = shipgate::report::github::write_outputs(&[
                    ("status", "error".to_string()),
                    ("exit_code", err.exit_code().to_string()),
                ]);
            }
            err.exit_code()
        }
    };
    std::process::exit(code);
}
