//! `tandem man`: the man page (roff), generated from the clap definitions in `cli.rs`, so it
//! documents exactly the subcommands and flags this binary has. Reads no config; writes only
//! the pages, and only into the directory named by `--out`.

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, ManArgs};

/// Prints `tandem.1` to stdout, or writes it and a page per subcommand into `--out`.
pub fn run(args: &ManArgs) -> anyhow::Result<()> {
    let Some(dir) = &args.out else {
        let mut page = Vec::new();
        // As `generate_to` does: no page lists `tandem help`, which has no page of its own.
        clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
            .render(&mut page)
            .context("cannot render the man page")?;
        super::out(&String::from_utf8_lossy(&page));
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    crate::say!(
        "Wrote tandem.1 and a page per subcommand (tandem-sync.1, ...) into {}.",
        dir.display()
    );
    Ok(())
}
