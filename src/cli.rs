//! Command line: parse arguments, dispatch to a command, map errors to exit codes.
use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::from(2)
}
