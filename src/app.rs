//! The command dispatcher: parses arguments, resolves configuration, runs a command, and turns
//! errors into messages and exit codes. Nothing here panics on bad input.

use crate::cli::{Cli, ColourWhen, Command, Common, StartArgs};
use crate::config::{self, OsEnv};
use crate::error::Error;
use crate::output::printer::Style;
use clap::Parser;
use nix::sys::signal::SigSet;
use std::collections::HashSet;

/// Runs procrun with the process's arguments; `mask` is the signal mask procrun inherited.
pub fn main(mask: SigSet) -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    let os: OsEnv = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let result = match &cli.command {
        Command::Start(args) => start(&cli.common, args, &os, mask),
        Command::Run(args) => run(&cli.common, args, &os, mask),
        Command::Check => check(&cli.common, &os),
        Command::Probe(args) => Ok(crate::probe::run(args)),
        Command::Status(args) => Ok(crate::status::run(args)),
        Command::Export(args) => crate::export::run(&cli.common, args, &os),
        Command::Version => {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "procrun {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
    };
    result.unwrap_or_else(|e| {
        crate::warn(&format!("error: {e}"));
        e.exit_code()
    })
}

fn check(common: &Common, os: &OsEnv) -> Result<i32, Error> {
    let (sources, pf) = config::load(common, os)?;
    let names: Vec<&str> = pf.processes.iter().map(|p| p.name.as_str()).collect();
    let mut msg = format!("Valid procfile detected ({})\n", names.join(", "));
    msg += &format!("procfile: {}\n", sources.procfile.display());
    for (path, found) in &sources.env_files {
        msg += &format!(
            "env file: {}{}\n",
            path.display(),
            if *found { "" } else { " (not found, skipped)" }
        );
    }
    use std::io::Write;
    let _ = std::io::stderr().write_all(msg.as_bytes());
    Ok(0)
}

fn colour(common: &Common, os: &OsEnv) -> bool {
    let when = if common.no_colour {
        ColourWhen::Never
    } else {
        common.colour
    };
    match when {
        ColourWhen::Always => true,
        ColourWhen::Never => false,
        ColourWhen::Auto => {
            let no_color = os.iter().any(|(k, v)| k == "NO_COLOR" && !v.is_empty());
            !no_color && nix::unistd::isatty(std::io::stdout()).unwrap_or(false)
        }
    }
}

fn start(common: &Common, args: &StartArgs, os: &OsEnv, mask: SigSet) -> Result<i32, Error> {
    let (sources, pf) = config::load(common, os)?;
    let instances = config::instances(&pf, &args.expand, &args.processes, &sources.env, os)?;
    let quiet: HashSet<String> = args
        .quiet
        .as_deref()
        .map(|q| q.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let board = crate::status::setup(args, &instances)?;
    if instances.is_empty() {
        return Ok(0);
    }
    let overlays = instances
        .iter()
        .map(|i| config::child_env(os, &sources.env, i))
        .collect();
    let style = Style {
        colour: colour(common, os),
        prefix: !common.no_prefix,
        timestamp: !args.no_timestamp,
        timestamp_format: args.timestamp_format,
        format: args.log_format,
    };
    let plan = crate::supervisor::Plan {
        instances,
        overlays,
        quiet,
        timeout: args.timeout,
        mask,
        board,
    };
    Ok(crate::supervisor::run(plan, style))
}

fn run(
    common: &Common,
    args: &crate::cli::RunArgs,
    os: &OsEnv,
    mask: SigSet,
) -> Result<i32, Error> {
    let sources = config::sources(common, os)?;
    Ok(crate::runcmd::run(
        &args.argv,
        &sources.env,
        &mask,
        args.timeout,
    ))
}
