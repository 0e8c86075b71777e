use clap::Parser;

fn main() {
    let cli = shipgate::cli::Cli::parse();
    let output = shipgate::output::Output::from_args(&cli.global);
    let code = match shipgate::commands::run(cli, &output) {
        Ok(code) => code,
        Err(err) => {
            let text = shipgate::redact::redact(&err.render(output.color));
            eprint!("{text}");
            if output.github {
                println!(
                    "::error title=shipgate::{}",
                    shipgate::output::github_escape(&shipgate::redact::redact(&err.to_string()))
                );
            }
            err.exit_code()
        }
    };
    std::process::exit(code);
}
