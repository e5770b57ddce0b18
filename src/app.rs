//! The command dispatcher: parses arguments, turns them into the plain configuration each
//! command takes, runs the command, and turns errors into messages and exit codes. Nothing here
//! panics on bad input.

use crate::cli::{self, Cli, ColourWhen, Command};
use crate::config::{self, Expand, Inputs, OsEnv};
use crate::error::Error;
use crate::health::{endpoint, probe, status};
use crate::net::{addr, check};
use crate::output::printer::{LogFormat, Style, TimestampFormat};
use crate::supervise::board::Board;
use crate::supervise::spawn::BaseEnv;
use crate::supervise::{run, start};
use nix::sys::signal::SigSet;
use std::rc::Rc;

/// Runs procrun with the process's arguments; `mask` is the signal mask procrun inherited.
pub(crate) fn main(mask: SigSet) -> i32 {
    // procrun's environment is read once, here; it is never changed.
    let os = OsEnv::inherit();
    let cli = match cli::parse(std::env::args_os(), &|key| os.get_os(key)) {
        Ok(cli::Parsed::Cli(cli)) => cli,
        Ok(cli::Parsed::Version(line)) => {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{line}");
            return 0;
        }
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    let inputs = inputs(&cli.common);
    let result = match &cli.command {
        Command::Start(args) => start(&cli, &inputs, args, &os, mask),
        Command::Run(args) => run_command(&inputs, args, &os, mask),
        Command::Check(args) => check(&cli, &inputs, args, &os),
        Command::Probe(args) => probe_command(args),
        Command::Status(args) => status_command(args),
        Command::Export(args) => crate::export::run(&export_options(&cli, inputs, args), &os),
        Command::Version => {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "procrun {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
    };
    result.unwrap_or_else(|e| {
        crate::warn(&format!("error: {}", message(&cli, &e)));
        e.exit_code()
    })
}

/// The message of `e`, naming the variable an option came from when it came from one.
fn message(cli: &Cli, e: &Error) -> String {
    match e {
        Error::Usage { option, message } => {
            format!("{}: {message}", cli.option_label(option))
        }
        _ => e.to_string(),
    }
}

fn inputs(common: &cli::Common) -> Inputs {
    Inputs {
        app_root: common.app_root.clone(),
        procfile: common.procfile.clone(),
        env: common.env.clone(),
    }
}

fn expand(cli: &Cli, e: &cli::Expand) -> Expand {
    Expand {
        port: e.port.clone(),
        concurrency: e.concurrency.clone(),
        port_source: cli.option_label("port"),
    }
}

fn start_options(cli: &Cli, args: &cli::StartArgs) -> config::StartOptions {
    config::StartOptions {
        expand: expand(cli, &args.expand),
        processes: args.processes.clone(),
        quiet: args.quiet.clone(),
        ready: args.ready.clone(),
        roles: config::RoleOptions {
            before: args.before.clone(),
            can_die: args.can_die.clone(),
            auto_restart: args.auto_restart.clone(),
            restart_limit: args.restart_limit,
            restart_delay: args.restart_delay,
            after: args.after.clone(),
            stop_signal: args.stop_signal.clone(),
            drain: args.drain,
        },
    }
}

/// Everything `start` validates before it starts anything; `check` runs the same.
fn prepare_start(
    cli: &Cli,
    inputs: &Inputs,
    args: &cli::StartArgs,
    os: &OsEnv,
) -> Result<(config::StartConfig, Option<addr::HostPort>), Error> {
    let config = config::start(
        inputs,
        &start_options(cli, args),
        os,
        &config::ExecLimits::current(),
    )?;
    let listen = match &args.status_addr {
        Some(text) => Some(addr::parse_listen(text).map_err(|_| Error::InvalidAddress {
            value: text.clone(),
        })?),
        None => None,
    };
    Ok((config, listen))
}

fn check(cli: &Cli, inputs: &Inputs, args: &cli::StartArgs, os: &OsEnv) -> Result<i32, Error> {
    let (config, _) = prepare_start(cli, inputs, args, os)?;
    let sources = &config.sources;
    let mut msg = format!("Valid procfile detected ({})\n", config.types.join(", "));
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

fn colour(common: &cli::Common, os: &OsEnv) -> bool {
    let when = if common.no_colour {
        ColourWhen::Never
    } else {
        common.colour
    };
    match when {
        ColourWhen::Always => true,
        ColourWhen::Never => false,
        ColourWhen::Auto => {
            let no_color = os.get("NO_COLOR").is_some_and(|v| !v.is_empty());
            !no_color && nix::unistd::isatty(std::io::stdout()).unwrap_or(false)
        }
    }
}

fn start(
    cli: &Cli,
    inputs: &Inputs,
    args: &cli::StartArgs,
    os: &OsEnv,
    mask: SigSet,
) -> Result<i32, Error> {
    let (config, listen) = prepare_start(cli, inputs, args, os)?;
    let mut board = None;
    let mut services: Vec<start::Service> = Vec::new();
    match listen {
        Some(listen) => {
            let listener = endpoint::bind(&listen)?;
            let b = Rc::new(Board::new(&config.instances, &config.ready, &config.roles));
            services.push(Box::pin(endpoint::serve(Rc::clone(&b), listener)));
            board = Some(b);
        }
        None if !config.ready.is_empty() => {
            crate::warn("warning: --ready has no effect without --status-addr");
        }
        None => {}
    }
    if config.instances.is_empty() {
        return Ok(0);
    }
    let common = &cli.common;
    let style = Style {
        colour: colour(common, os),
        prefix: !common.no_prefix,
        timestamp: !args.no_timestamp,
        timestamp_format: match args.timestamp_format {
            cli::TimestampFormat::Time => TimestampFormat::Time,
            cli::TimestampFormat::Rfc3339 => TimestampFormat::Rfc3339,
        },
        format: match args.log_format {
            cli::LogFormat::Text => LogFormat::Text,
            cli::LogFormat::Json => LogFormat::Json,
        },
    };
    let plan = start::Plan {
        instances: config.instances,
        overlays: config.overlays,
        base_env: BaseEnv::new(os),
        quiet: config.quiet,
        timeout: args.timeout,
        mask,
        board,
        services,
        roles: config.roles,
        checks: config.ready,
    };
    Ok(start::run(plan, style))
}

fn run_command(
    inputs: &Inputs,
    args: &cli::RunArgs,
    os: &OsEnv,
    mask: SigSet,
) -> Result<i32, Error> {
    let sources = config::run(inputs, os, &args.argv, &config::ExecLimits::current())?;
    // The command finds its program in the PATH it will see: the env files', else procrun's.
    let path = sources
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| os.get("PATH"));
    Ok(run::run(
        &args.argv,
        &BaseEnv::new(os),
        &sources.env,
        path.as_deref(),
        &mask,
        args.timeout,
    ))
}

fn probe_command(args: &cli::ProbeArgs) -> Result<i32, Error> {
    let mut targets = Vec::with_capacity(args.targets.len());
    for raw in &args.targets {
        match check::parse_target(raw) {
            Ok(t) => targets.push((raw.clone(), t)),
            Err(e) => {
                crate::warn(&format!("probe: {raw}: {e}"));
                return Ok(crate::error::EXIT_BAD_INPUT);
            }
        }
    }
    Ok(probe::run(probe::Options {
        targets,
        timeout: args.timeout,
        retries: args.retries,
        interval: args.interval,
        expect: check::Expect {
            status: args
                .expect_status
                .clone()
                .map(|c| check::StatusRanges(c.0))
                .unwrap_or_default(),
            body: args.expect_body.clone(),
        },
        watch: args.watch,
        failures: args.failures,
    }))
}

fn status_command(args: &cli::StatusArgs) -> Result<i32, Error> {
    let text = args.addr.as_deref().unwrap_or(status::DEFAULT_ADDR);
    let Ok(listen) = addr::parse_listen(text) else {
        let e = Error::InvalidAddress { value: text.into() };
        crate::warn(&format!("status: {e}"));
        return Ok(crate::error::EXIT_BAD_INPUT);
    };
    Ok(status::run(&status::Options {
        addr: endpoint::client_addr(&listen),
        json: args.json,
        timeout: args.timeout,
    }))
}

fn export_options(cli: &Cli, inputs: Inputs, args: &cli::ExportArgs) -> crate::export::Options {
    use crate::export::Format;
    crate::export::Options {
        inputs,
        expand: expand(cli, &args.expand),
        app: args.app.clone(),
        log: args.log.clone(),
        user: args.user.clone(),
        shell: args.shell.clone(),
        template_dir: args.template_dir.clone(),
        format: match args.format {
            cli::ExportFormat::Runit => Format::Runit,
            cli::ExportFormat::Supervisord => Format::Supervisord,
            cli::ExportFormat::Systemd => Format::Systemd,
            cli::ExportFormat::Upstart => Format::Upstart,
        },
        location: args.location.clone(),
    }
}
