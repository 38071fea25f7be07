//! `tandem completions SHELL`: the shell completion script, generated from the clap definitions
//! in `cli.rs`, so it always offers the subcommands and flags this binary has. Prints only; it
//! reads no config and installs nothing.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};

/// Prints the completion script of `args.shell` to stdout.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    // Generated into memory first: clap_complete panics when its writer fails, and stdout may be
    // a closed pipe, which `out` ends quietly.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "tandem", &mut script);
    super::out(&String::from_utf8_lossy(&script));
    Ok(())
}
