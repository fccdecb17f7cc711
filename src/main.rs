//! The `ringfetch` binary: parse the command line, run it, exit with its status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match ringfetch::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version on stdout (exit 0) and usage errors on stderr.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                ringfetch::EXIT_USAGE
            } else {
                ringfetch::EXIT_OK
            });
        }
    };
    ExitCode::from(ringfetch::run(cli))
}
