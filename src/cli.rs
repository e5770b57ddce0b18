//! Command-line interface: honcho 2.0's commands and options, plus procrun's own, as clap
//! types, and `parse`, which adds what clap alone does not do the way honcho users expect. A
//! leaf: it imports no other module of procrun and does no I/O (the environment is passed in);
//! `app` turns these types into the plain configuration structs the commands take.
//!
//! - Every option can also come from `PROCRUN_<OPTION>` in the environment (the variable is
//!   named by the option's `env` attribute below). procrun reads these itself rather than
//!   through clap: an empty variable counts as unset (a Dockerfile cannot unset an inherited
//!   `ENV`), a boolean accepts 1/0, true/false, yes/no, on/off in any case, and an invalid value
//!   names the variable. The command line wins over the environment.
//! - Common options work before or after the command (`procrun -f P start` and
//!   `procrun start -f P`), and long options may be abbreviated to any unambiguous prefix, as
//!   with honcho's argparse. A prefix that is ambiguous only because of procrun's own options
//!   means honcho's option (`--c`, `--co`: `--concurrency`, not `--colour`); otherwise the
//!   error lists the candidates.
//! - `-v/--version` after a command prints the version, as honcho does (`procrun start 0.1.0`).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::time::Duration;

/// Run the processes of a Procfile: a honcho drop-in and container init.
#[derive(Debug, Parser)]
#[command(
    name = "procrun",
    version,
    disable_version_flag = true,
    infer_long_args = true,
    after_help = "Every option can also be set as PROCRUN_<OPTION> in the environment (an empty \
variable counts as unset).\n\
Exit codes: 0 ok; 1 bad input (Procfile, .env, option values); 2 usage error (also process-role \
options that do not fit the Procfile); otherwise the first stopped process's code, 128+N for a \
signal death, 129/130/131/143 when procrun got SIGHUP/SIGINT/SIGQUIT/SIGTERM."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Print version information and exit.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub(crate) version: Option<bool>,
    /// Options whose value came from the environment: `(long option, variable)`.
    #[arg(skip)]
    pub(crate) from_env: Vec<(String, String)>,
}

impl Cli {
    /// How to name `--long` in a message: the variable it came from, if it came from one.
    pub(crate) fn option_label(&self, long: &str) -> String {
        let flag = long.trim_start_matches('-');
        match self.from_env.iter().find(|(l, _)| l == flag) {
            Some((_, var)) => format!("{var} (--{flag})"),
            None => format!("--{flag}"),
        }
    }
}

/// Options shared by every command (honcho's "common options").
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct Common {
    /// Environment files to read, comma-separated, later ones win [default: .env] [env: PROCRUN_ENV]
    #[arg(short = 'e', long = "env", global = true, value_name = "FILE,...")]
    pub(crate) env: Option<String>,
    /// Directory against which the Procfile and env files are resolved (children keep procrun's cwd) [env: PROCRUN_APP_ROOT]
    #[arg(short = 'd', long = "app-root", global = true, value_name = "DIR")]
    pub(crate) app_root: Option<String>,
    /// Procfile path [default: $PROCFILE, environments/$ENV_NAME/Procfile, or Procfile] [env: PROCRUN_PROCFILE]
    #[arg(short = 'f', long = "procfile", global = true, value_name = "FILE")]
    pub(crate) procfile: Option<String>,
    /// Never colour the output (same as --colour never) [env: PROCRUN_NO_COLOUR]
    #[arg(long = "no-colour", global = true)]
    pub(crate) no_colour: bool,
    /// Print bare output lines: no timestamp, name or separator [env: PROCRUN_NO_PREFIX]
    #[arg(long = "no-prefix", global = true)]
    pub(crate) no_prefix: bool,
    /// When to colour the prefixes (auto: stdout is a terminal and NO_COLOR is unset) [env: PROCRUN_COLOUR]
    #[arg(long = "colour", alias = "color", global = true, value_enum, default_value_t = ColourWhen::Auto)]
    pub(crate) colour: ColourWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum ColourWhen {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum LogFormat {
    /// `HH:MM:SS web.1 | text`, as honcho.
    #[default]
    Text,
    /// One JSON object per line: time (RFC 3339, UTC), name, pid, text.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum TimestampFormat {
    /// `HH:MM:SS`, local time (honcho).
    #[default]
    Time,
    /// `2026-01-02T03:04:05.678Z`, UTC with milliseconds.
    Rfc3339,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the Procfile's processes (all, or those named) and multiplex their output
    Start(StartArgs),
    /// Run one command with the env files applied, as a container init (signals, reaping)
    Run(RunArgs),
    /// Validate the Procfile, env files and start options as `start` would; say which files were used
    Check(StartArgs),
    /// Probe HTTP, TCP or Unix-socket targets: for HEALTHCHECK, or --watch as a sidecar
    Probe(ProbeArgs),
    /// Show the processes of a running `procrun start --status-addr ...`
    Status(StatusArgs),
    /// Write the Procfile as supervisord, systemd, upstart or runit configuration (honcho's export)
    Export(ExportArgs),
    /// Print the version
    Version,
}

/// How the Procfile's types become numbered instances with ports (`start` and `export`).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct Expand {
    /// Base port: PORT of the first process type, +100 per type, +1 per instance [default: 5000] [env: PROCRUN_PORT]
    #[arg(
        short = 'p',
        long = "port",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub(crate) port: Option<String>,
    /// Instances per process type: name=N,... [env: PROCRUN_CONCURRENCY]
    #[arg(short = 'c', long = "concurrency", value_name = "name=N,...")]
    pub(crate) concurrency: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) expand: Expand,
    /// Drop the output of these process types: name,... [env: PROCRUN_QUIET]
    #[arg(short = 'q', long = "quiet", value_name = "name,...")]
    pub(crate) quiet: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping [env: PROCRUN_TIMEOUT]
    #[arg(short = 't', long = "timeout", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// Output format [env: PROCRUN_LOG_FORMAT]
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Leave the time column out of prefixed lines [env: PROCRUN_NO_TIMESTAMP]
    #[arg(long = "no-timestamp")]
    pub(crate) no_timestamp: bool,
    /// Format of the time column [env: PROCRUN_TIMESTAMP_FORMAT]
    #[arg(long = "timestamp-format", value_enum, default_value_t = TimestampFormat::Time)]
    pub(crate) timestamp_format: TimestampFormat,
    /// Serve GET /health and GET /status on this address (e.g. 127.0.0.1:9000) [env: PROCRUN_STATUS_ADDR]
    #[arg(long = "status-addr", value_name = "ADDR")]
    pub(crate) status_addr: Option<String>,
    /// Readiness check per type, for /health: name=tcp or name=http:/path (comma-separated) [env: PROCRUN_READY]
    #[arg(
        long = "ready",
        value_name = "name=tcp|http:/path",
        value_delimiter = ','
    )]
    pub(crate) ready: Vec<String>,
    /// Run these types first, one after another, each to completion [default: release, if the Procfile has it; '' for none] [env: PROCRUN_BEFORE]
    #[arg(long = "before", value_name = "name,...", value_delimiter = ',')]
    pub(crate) before: Option<Vec<String>>,
    /// These types may stop without ending the run: name,... or all [env: PROCRUN_CAN_DIE]
    #[arg(long = "can-die", value_name = "name,...|all", value_delimiter = ',')]
    pub(crate) can_die: Vec<String>,
    /// Start these types again when they stop: name,... or all (all but --before types) [env: PROCRUN_AUTO_RESTART]
    #[arg(
        long = "auto-restart",
        value_name = "name,...|all",
        value_delimiter = ','
    )]
    pub(crate) auto_restart: Vec<String>,
    /// Restarts allowed within 60 s before an --auto-restart type counts as stopped for good [env: PROCRUN_RESTART_LIMIT]
    #[arg(long = "restart-limit", value_name = "N", default_value_t = 5)]
    pub(crate) restart_limit: u32,
    /// Seconds before the first restart of an --auto-restart type, doubled for each next one up to 30 (0: at once) [env: PROCRUN_RESTART_DELAY]
    #[arg(long = "restart-delay", value_name = "SECONDS", default_value = "0.2", value_parser = parse_seconds)]
    pub(crate) restart_delay: Duration,
    /// Start NAME only when every DEP is ready: NAME=DEP[+DEP...],... [env: PROCRUN_AFTER]
    #[arg(
        long = "after",
        value_name = "name=dep[+dep...],...",
        value_delimiter = ','
    )]
    pub(crate) after: Vec<String>,
    /// Signal that stops a type instead of SIGTERM: name=SIGNAL,... (QUIT, SIGQUIT or 3) [env: PROCRUN_STOP_SIGNAL]
    #[arg(
        long = "stop-signal",
        value_name = "name=SIGNAL,...",
        value_delimiter = ','
    )]
    pub(crate) stop_signal: Vec<String>,
    /// Seconds between a shutdown signal and stopping the processes, while /health says 503 [env: PROCRUN_DRAIN]
    #[arg(long = "drain", value_name = "SECONDS", default_value = "0", value_parser = parse_seconds)]
    pub(crate) drain: Duration,
    /// Process types to start, in this order [default: all, Procfile order]
    #[arg(value_name = "PROCESS")]
    pub(crate) processes: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct RunArgs {
    /// Seconds to wait for leftover processes after the command exits, before SIGKILL [env: PROCRUN_TIMEOUT]
    #[arg(short = 't', long = "timeout", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) argv: Vec<String>,
}

/// Arguments of `procrun probe`.
#[derive(Debug, Args, Clone)]
pub(crate) struct ProbeArgs {
    /// Time allowed for each attempt (connect, request, response) [env: PROCRUN_PROBE_TIMEOUT]
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// Attempts after the first before giving up (one-shot mode) [env: PROCRUN_PROBE_RETRIES]
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "watch")]
    pub(crate) retries: u32,
    /// Pause between attempts [default: 1s; 10s with --watch] [env: PROCRUN_PROBE_INTERVAL]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) interval: Option<Duration>,
    /// Healthy HTTP statuses: 200, 200-299 or a comma-separated list [default: 200-399] [env: PROCRUN_PROBE_EXPECT_STATUS]
    #[arg(long = "expect-status", value_name = "CODES", value_parser = parse_status_ranges)]
    pub(crate) expect_status: Option<StatusCodes>,
    /// The HTTP response body (its first 64 KiB) must contain this text [env: PROCRUN_PROBE_EXPECT_BODY]
    #[arg(long = "expect-body", value_name = "TEXT")]
    pub(crate) expect_body: Option<String>,
    /// Keep probing every --interval; exit 1 after --failures consecutive failed rounds
    #[arg(long)]
    pub(crate) watch: bool,
    /// Consecutive failed rounds after which --watch exits 1 [env: PROCRUN_PROBE_FAILURES]
    #[arg(long, value_name = "N", default_value_t = 3, requires = "watch",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) failures: u32,
    /// Targets: http://host:port/path, tcp://host:port, unix:/path (or unix:/path:/http-path)
    #[arg(required = true, value_name = "TARGET")]
    pub(crate) targets: Vec<String>,
}

/// Arguments of `procrun status`.
#[derive(Debug, Args, Clone)]
pub(crate) struct StatusArgs {
    /// Address of the status endpoint of the running procrun [default: 127.0.0.1:9000] [env: PROCRUN_STATUS_ADDR]
    #[arg(long = "addr", value_name = "ADDR")]
    pub(crate) addr: Option<String>,
    /// Print the JSON of GET /status instead of a table
    #[arg(long)]
    pub(crate) json: bool,
    /// Seconds to wait for the answer
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
}

/// Options of `procrun export` (honcho's, same names and defaults).
#[derive(Debug, Args, Clone)]
pub(crate) struct ExportArgs {
    /// Application name [default: the name of the current directory] [env: PROCRUN_APP]
    #[arg(short = 'a', long = "app", value_name = "APP")]
    pub(crate) app: Option<String>,
    /// Directory for the processes' logs [default: /var/log/APP] [env: PROCRUN_LOG]
    #[arg(short = 'l', long = "log", value_name = "DIR")]
    pub(crate) log: Option<String>,
    #[command(flatten)]
    pub(crate) expand: Expand,
    /// User the processes run as [default: APP] [env: PROCRUN_USER]
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Shell that runs the commands [env: PROCRUN_SHELL]
    #[arg(
        short = 's',
        long = "shell",
        value_name = "SHELL",
        default_value = "/bin/sh"
    )]
    pub(crate) shell: String,
    /// Custom template directory (honcho's; not supported by procrun: an error)
    #[arg(short = 't', long = "template-dir", value_name = "DIR")]
    pub(crate) template_dir: Option<String>,
    /// Format to export to
    #[arg(value_enum, value_name = "FORMAT")]
    pub(crate) format: ExportFormat,
    /// Directory to write the files to (created if missing)
    #[arg(value_name = "LOCATION")]
    pub(crate) location: String,
}

/// The export formats, as honcho names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Runit,
    Supervisord,
    Systemd,
    Upstart,
}

/// honcho 2.0's long options (any command). When a prefix matches several options and exactly
/// one of them is here, it means that one: the others are procrun's additions.
const HONCHO_LONGS: &[&str] = &[
    "env",
    "app-root",
    "procfile",
    "no-colour",
    "no-prefix",
    "version",
    "help",
    "port",
    "concurrency",
    "quiet",
    "app",
    "log",
    "user",
    "shell",
    "template-dir",
];

/// The `PROCRUN_*` variables: (variable, long option, the commands it belongs to; none: a
/// common option). Each option's help names its variable (`[env: ...]`); a unit test checks
/// that they agree and that README lists every variable. (Not clap's `env`: clap would read
/// an empty variable as an empty value and a boolean as `true`/`false` only, and name the
/// option rather than the variable in its errors.)
const ENV_VARS: &[(&str, &str, &[&str])] = &[
    ("PROCRUN_ENV", "env", &[]),
    ("PROCRUN_APP_ROOT", "app-root", &[]),
    ("PROCRUN_PROCFILE", "procfile", &[]),
    ("PROCRUN_NO_COLOUR", "no-colour", &[]),
    ("PROCRUN_NO_PREFIX", "no-prefix", &[]),
    ("PROCRUN_COLOUR", "colour", &[]),
    ("PROCRUN_PORT", "port", &["start", "check", "export"]),
    (
        "PROCRUN_CONCURRENCY",
        "concurrency",
        &["start", "check", "export"],
    ),
    ("PROCRUN_QUIET", "quiet", &["start", "check"]),
    ("PROCRUN_TIMEOUT", "timeout", &["start", "check", "run"]),
    ("PROCRUN_LOG_FORMAT", "log-format", &["start", "check"]),
    ("PROCRUN_NO_TIMESTAMP", "no-timestamp", &["start", "check"]),
    (
        "PROCRUN_TIMESTAMP_FORMAT",
        "timestamp-format",
        &["start", "check"],
    ),
    ("PROCRUN_STATUS_ADDR", "status-addr", &["start", "check"]),
    ("PROCRUN_READY", "ready", &["start", "check"]),
    ("PROCRUN_BEFORE", "before", &["start", "check"]),
    ("PROCRUN_CAN_DIE", "can-die", &["start", "check"]),
    ("PROCRUN_AUTO_RESTART", "auto-restart", &["start", "check"]),
    (
        "PROCRUN_RESTART_LIMIT",
        "restart-limit",
        &["start", "check"],
    ),
    (
        "PROCRUN_RESTART_DELAY",
        "restart-delay",
        &["start", "check"],
    ),
    ("PROCRUN_AFTER", "after", &["start", "check"]),
    ("PROCRUN_STOP_SIGNAL", "stop-signal", &["start", "check"]),
    ("PROCRUN_DRAIN", "drain", &["start", "check"]),
    ("PROCRUN_PROBE_TIMEOUT", "timeout", &["probe"]),
    ("PROCRUN_PROBE_RETRIES", "retries", &["probe"]),
    ("PROCRUN_PROBE_INTERVAL", "interval", &["probe"]),
    ("PROCRUN_PROBE_EXPECT_STATUS", "expect-status", &["probe"]),
    ("PROCRUN_PROBE_EXPECT_BODY", "expect-body", &["probe"]),
    ("PROCRUN_PROBE_FAILURES", "failures", &["probe"]),
    ("PROCRUN_STATUS_ADDR", "addr", &["status"]),
    ("PROCRUN_APP", "app", &["export"]),
    ("PROCRUN_LOG", "log", &["export"]),
    ("PROCRUN_USER", "user", &["export"]),
    ("PROCRUN_SHELL", "shell", &["export"]),
];

/// Parses `1/0`, `true/false`, `yes/no`, `on/off` in any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// One named option of a command, as the scanner sees it.
struct Opt<'a> {
    id: &'a str,
    longs: Vec<&'a str>,
    short: Option<char>,
    takes_value: bool,
}

/// The named options of `c`, with `root`'s global ones and `--help` (which clap adds when it
/// builds a command: the command is not built here, building every subcommand costs time),
/// and for a subcommand `-v/--version`.
fn options<'a>(c: &'a clap::Command, root: Option<&'a clap::Command>) -> Vec<Opt<'a>> {
    let globals = root
        .into_iter()
        .flat_map(|r| r.get_arguments().filter(|a| a.is_global_set()));
    let mut opts: Vec<Opt> = c
        .get_arguments()
        .chain(globals)
        .filter(|a| !a.is_positional())
        .map(|a| Opt {
            id: a.get_id().as_str(),
            longs: a
                .get_long()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default())
                .collect(),
            short: a.get_short(),
            takes_value: a.get_action().takes_values(),
        })
        .collect();
    opts.push(Opt {
        id: "help",
        longs: vec!["help"],
        short: Some('h'),
        takes_value: false,
    });
    if root.is_some() {
        // After a command, honcho's `-v/--version` (found by `scan`, never given to clap).
        opts.push(Opt {
            id: "version",
            longs: vec!["version"],
            short: Some('v'),
            takes_value: false,
        });
    }
    opts
}

/// Resolves `--name`: exact, a unique prefix, or a prefix whose only honcho candidate is one.
/// `Ok(None)`: no such option (clap reports it). `Err`: the candidates of an ambiguous prefix.
fn resolve_long<'o, 'a>(
    opts: &'o [Opt<'a>],
    name: &str,
) -> Result<Option<&'o Opt<'a>>, Vec<String>> {
    if let Some(o) = opts.iter().find(|o| o.longs.contains(&name)) {
        return Ok(Some(o));
    }
    let candidates: Vec<&Opt> = opts
        .iter()
        .filter(|o| o.longs.iter().any(|l| l.starts_with(name)))
        .collect();
    if candidates.len() <= 1 {
        return Ok(candidates.first().copied());
    }
    let honcho: Vec<&Opt> = candidates
        .iter()
        .copied()
        .filter(|o| o.longs.first().is_some_and(|l| HONCHO_LONGS.contains(l)))
        .collect();
    if honcho.len() == 1 {
        return Ok(Some(honcho[0]));
    }
    let mut names: Vec<String> = candidates
        .iter()
        .filter_map(|o| o.longs.first().map(|l| format!("--{l}")))
        .collect();
    names.sort();
    Err(names)
}

/// What the scan of the arguments found.
#[derive(Default)]
struct Scan {
    /// The arguments, with abbreviated long options written out.
    args: Vec<OsString>,
    /// The subcommand and its index in `args`.
    command: Option<(String, usize)>,
    /// Ids of the options given on the command line.
    given: Vec<String>,
    /// `-v/--version` after the command.
    version: bool,
}

/// Walks the arguments as clap will see them (options and their values, the command, `--`,
/// `run`'s command) to expand long-option prefixes with honcho's preference, find the options
/// given and a `-v` after the command.
/// An ambiguous long option: (the command it was given to, if not the root; the message).
type Ambiguous = (Option<String>, String);

fn scan(cmd: &clap::Command, args: Vec<OsString>) -> Result<Scan, Ambiguous> {
    let mut out = Scan {
        args,
        ..Scan::default()
    };
    let root_opts = options(cmd, None);
    let mut sub: Option<&clap::Command> = None;
    let mut sub_opts: Vec<Opt> = Vec::new();
    let mut i = 1;
    while i < out.args.len() {
        let Some(token) = out.args[i].to_str().map(str::to_string) else {
            i += 1;
            continue;
        };
        let opts = if sub.is_some() { &sub_opts } else { &root_opts };
        if token == "--" {
            break;
        }
        if let Some(body) = token.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            match resolve_long(opts, name) {
                Ok(Some(o)) => {
                    if sub.is_some() && o.id == "version" {
                        out.version = true;
                        return Ok(out);
                    }
                    out.given.push(o.id.to_string());
                    let full = o.longs[0];
                    if full != name {
                        out.args[i] = OsString::from(match value {
                            Some(v) => format!("--{full}={v}"),
                            None => format!("--{full}"),
                        });
                    }
                    if o.takes_value && value.is_none() {
                        i += 1;
                    }
                }
                Ok(None) => {}
                Err(candidates) => {
                    return Err((
                        sub.map(|s| s.get_name().to_string()),
                        format!("option '--{name}' is ambiguous: {}", candidates.join(", ")),
                    ));
                }
            }
        } else if token.len() > 1 && token.starts_with('-') {
            for (k, c) in token.char_indices().skip(1) {
                let Some(o) = opts.iter().find(|o| o.short == Some(c)) else {
                    break;
                };
                if sub.is_some() && o.id == "version" {
                    out.version = true;
                    return Ok(out);
                }
                out.given.push(o.id.to_string());
                if o.takes_value {
                    if k + c.len_utf8() == token.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else if let Some(s) = sub {
            if s.get_name() == "run" {
                // The rest is the command and its arguments.
                break;
            }
        } else {
            match cmd.find_subcommand(&token) {
                Some(s) if s.get_name() != "help" => {
                    sub = Some(s);
                    sub_opts = options(s, Some(cmd));
                    out.command = Some((s.get_name().to_string(), i));
                }
                // `help`, or not a command (clap reports it).
                _ => break,
            }
        }
        i += 1;
    }
    Ok(out)
}

/// What the arguments ask for.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A command to run.
    Cli(Box<Cli>),
    /// `-v/--version` after a command: print this line (honcho's `honcho start 2.0.0`).
    Version(String),
}

/// Parses procrun's arguments (`args[0]` is the program) with `env` as the environment for the
/// `PROCRUN_*` variables. A usage error, `--help` and `procrun --version` come back as clap
/// errors (`print` them; `exit_code` is 2 or 0).
pub(crate) fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Parsed, clap::Error> {
    let mut cmd = Cli::command();
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.is_empty() {
        args.push("procrun".into());
    }
    // `docker run IMAGE procrun check` in an image whose ENTRYPOINT is already procrun: the
    // command line starts with procrun's own name again.
    if args.get(1).is_some_and(|a| {
        let a = std::path::Path::new(a);
        a.file_name() == Some(std::ffi::OsStr::new("procrun"))
    }) {
        args.remove(1);
    }
    let scan = scan(&cmd, args).map_err(|(sub, message)| {
        // Built (only now: it costs time) so that the usage names `procrun start`.
        cmd.build();
        let target = match sub.and_then(|name| cmd.find_subcommand_mut(name)) {
            Some(s) => s,
            None => &mut cmd,
        };
        target.error(ErrorKind::UnknownArgument, message)
    })?;
    let mut args = scan.args;
    if scan.version {
        let name = scan.command.map(|(n, _)| n).unwrap_or_default();
        return Ok(Parsed::Version(format!(
            "procrun {name} {}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let mut from_env: Vec<(String, String, OsString)> = Vec::new();
    if let Some((name, at)) = &scan.command {
        let mut injected = Vec::new();
        let sub = cmd.find_subcommand(name);
        for (var, long, commands) in ENV_VARS {
            if !commands.is_empty() && !commands.contains(&name.as_str()) {
                continue;
            }
            let globals = cmd.get_arguments().filter(|a| a.is_global_set());
            let Some(arg) = sub
                .into_iter()
                .flat_map(|s| s.get_arguments())
                .chain(globals)
                .find(|a| a.get_long() == Some(long))
            else {
                continue;
            };
            if scan.given.iter().any(|g| g == arg.get_id().as_str()) {
                continue;
            }
            let Some(value) = env(var).filter(|value| !value.is_empty()) else {
                continue;
            };
            if !arg.get_action().takes_values() {
                match value.to_str().and_then(parse_bool) {
                    Some(true) => injected.push(OsString::from(format!("--{long}"))),
                    Some(false) => continue,
                    None => {
                        let message = format!(
                            "invalid value '{}' in {var}: use 1/0, true/false, yes/no or on/off",
                            value.to_string_lossy()
                        );
                        return Err(cmd.error(ErrorKind::InvalidValue, message));
                    }
                }
            } else {
                let mut token = OsString::from(format!("--{long}="));
                token.push(&value);
                injected.push(token);
            }
            from_env.push((long.to_string(), var.to_string(), value));
        }
        args.splice(at + 1..at + 1, injected);
    }
    let matches = cmd
        .try_get_matches_from_mut(args)
        .map_err(|e| name_the_variable(&mut cmd, e, &from_env))?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    cli.from_env = from_env.into_iter().map(|(l, v, _)| (l, v)).collect();
    Ok(Parsed::Cli(Box::new(cli)))
}

/// Rewrites clap's "invalid value for --option" into one naming the variable the value came
/// from, when it came from one.
fn name_the_variable(
    cmd: &mut clap::Command,
    e: clap::Error,
    from_env: &[(String, String, OsString)],
) -> clap::Error {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--");
    let Some((long, var, value)) = from_env.iter().find(|(l, ..)| l == long) else {
        return e;
    };
    let reason = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) => format!(" (possible values: {})", values.join(", ")),
        _ => std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default(),
    };
    cmd.error(
        e.kind(),
        format!(
            "invalid value '{}' in {var} (for --{long}){reason}",
            value.to_string_lossy()
        ),
    )
}

/// Parses `5`, `0.5`, `2s`, `500ms`, `1m` into a duration.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale < 1e9 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!(
            "invalid duration `{text}` (use seconds, e.g. 5, 0.5, 2s, 500ms)"
        )),
    }
}

/// Parses `200`, `200-299`, `200,204,300-399`.
/// Inclusive ranges of HTTP status codes (`--expect-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusCodes(pub(crate) Vec<(u16, u16)>);

pub(crate) fn parse_status_ranges(text: &str) -> Result<StatusCodes, String> {
    let bad = || format!("invalid status `{text}` (use e.g. 200, 200-299 or 200,204)");
    let code = |s: &str| match s.trim().parse::<u16>() {
        Ok(n) if (100..=999).contains(&n) => Ok(n),
        _ => Err(bad()),
    };
    let mut ranges = Vec::new();
    for item in text.split(',') {
        let range = match item.split_once('-') {
            Some((lo, hi)) => (code(lo)?, code(hi)?),
            None => {
                let n = code(item)?;
                (n, n)
            }
        };
        if range.0 > range.1 {
            return Err(bad());
        }
        ranges.push(range);
    }
    Ok(StatusCodes(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("5", Some(5000)),
            ("0.5", Some(500)),
            ("2s", Some(2000)),
            ("500ms", Some(500)),
            ("1m", Some(60000)),
            ("-1", None),
            ("abc", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_seconds(text).ok().map(|d| d.as_millis() as u64),
                *want,
                "{text}"
            );
        }
    }

    #[test]
    fn procruns_own_name_first_is_skipped() {
        let env = |_: &str| None;
        for argv in [
            &["procrun", "procrun", "run", "--", "sh"][..],
            &[
                "/usr/local/bin/procrun",
                "/usr/local/bin/procrun",
                "run",
                "--",
                "sh",
            ],
            &["procrun", "run", "--", "sh"],
        ] {
            let args = argv.iter().map(OsString::from);
            let Ok(Parsed::Cli(cli)) = parse(args, &env) else {
                panic!("{argv:?}")
            };
            let Command::Run(r) = cli.command else {
                panic!("{argv:?}")
            };
            assert_eq!(r.argv, vec!["sh"], "{argv:?}");
        }
    }

    #[test]
    fn status_codes() {
        type Case<'a> = (&'a str, Option<&'a [(u16, u16)]>);
        let cases: &[Case] = &[
            ("200", Some(&[(200, 200)])),
            (
                "200,204,300-399",
                Some(&[(200, 200), (204, 204), (300, 399)]),
            ),
            ("", None),
            ("2xx", None),
            ("300-200", None),
            ("99", None),
            ("200-", None),
            ("1000", None),
        ];
        for (text, want) in cases {
            let got = parse_status_ranges(text).ok();
            assert_eq!(got.as_ref().map(|c| c.0.as_slice()), *want, "{text}");
        }
        let cli = Cli::try_parse_from([
            "procrun",
            "probe",
            "--expect-status",
            "200-204",
            "tcp://h:1",
        ])
        .unwrap();
        let Command::Probe(p) = cli.command else {
            panic!()
        };
        assert_eq!(p.expect_status, Some(StatusCodes(vec![(200, 204)])));
    }

    /// Parses `args` (without the program name) with the environment `env`.
    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Parsed, clap::Error> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let lookup = move |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let args = std::iter::once("procrun").chain(args.iter().copied());
        parse(args.map(OsString::from), &lookup)
    }

    fn cli(args: &[&str], env: &[(&str, &str)]) -> Cli {
        match parse_with(args, env) {
            Ok(Parsed::Cli(c)) => *c,
            Ok(Parsed::Version(v)) => panic!("{args:?}: version {v}"),
            Err(e) => panic!("{args:?} {env:?}: {e}"),
        }
    }

    fn start_args(c: &Cli) -> &StartArgs {
        match &c.command {
            Command::Start(s) | Command::Check(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn usage_error(args: &[&str], env: &[(&str, &str)]) -> String {
        match parse_with(args, env) {
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                e.to_string()
            }
            Ok(p) => panic!("{args:?} {env:?}: parsed {p:?}"),
        }
    }

    #[test]
    fn cli_shape() {
        Cli::command().debug_assert();
        let c = cli(
            &[
                "--proc", "P", "--env", "a,b", "start", "--no-pre", "-c", "web=2", "web",
            ],
            &[],
        );
        assert_eq!(c.common.procfile.as_deref(), Some("P"));
        assert!(c.common.no_prefix);
        let s = start_args(&c);
        assert_eq!(s.processes, vec!["web"]);
        assert_eq!(s.expand.concurrency.as_deref(), Some("web=2"));
        // After the task wins.
        let c = cli(&["-f", "A", "check", "-f", "B"], &[]);
        assert_eq!(c.common.procfile.as_deref(), Some("B"));
        // `--no-color` is not an option (honcho spells it --no-colour).
        usage_error(&["start", "--no-color"], &[]);
        let c = cli(&["run", "echo", "-e", "x", "--co", "-v"], &[]);
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.argv, vec!["echo", "-e", "x", "--co", "-v"]);
        let c = cli(&["run", "-t", "1", "--", "--co"], &[]);
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.argv, vec!["--co"]);
        // honcho's -p -5 reaches the port check (which names the range).
        let c = cli(&["start", "-p", "-5"], &[]);
        assert_eq!(start_args(&c).expand.port.as_deref(), Some("-5"));
        // `run` without a command is a usage error.
        for args in [&["run"][..], &["run", "--"], &["run", "-t", "1"]] {
            assert!(usage_error(args, &[]).contains("<COMMAND>"), "{args:?}");
        }
    }

    #[test]
    fn long_prefixes_prefer_honcho() {
        // (arguments, the option's long name it must be read as)
        let cases: &[(&[&str], &str)] = &[
            (&["start", "--c", "web=2"], "concurrency"),
            (&["start", "--co", "web=2"], "concurrency"),
            (&["start", "--co=web=2"], "concurrency"),
            (&["start", "--conc", "web=2"], "concurrency"),
            (&["start", "--col", "never"], "colour"),
            (&["start", "--colo=never"], "colour"),
            (&["start", "--a", "dir"], "app-root"),
            (&["start", "--q", "web"], "quiet"),
            (&["start", "--e", "x"], "env"),
            (&["start", "--d", "3"], "drain"),
            (&["start", "--b", ""], "before"),
            (&["start", "--au", "web"], "auto-restart"),
            (&["start", "--can", "web"], "can-die"),
            (&["check", "--c", "web=2"], "concurrency"),
            (&["export", "--c", "web=2", "runit", "out"], "concurrency"),
            (&["--c", "never", "check"], "colour"),
        ];
        for (args, long) in cases {
            let c = cli(args, &[]);
            let got = match *long {
                "concurrency" => match &c.command {
                    Command::Export(e) => e.expand.concurrency.clone(),
                    _ => start_args(&c).expand.concurrency.clone(),
                },
                "colour" => Some(format!("{:?}", c.common.colour)),
                "app-root" => c.common.app_root.clone(),
                "quiet" => start_args(&c).quiet.clone(),
                "env" => c.common.env.clone(),
                "drain" => Some(format!("{:?}", start_args(&c).drain)),
                "before" => start_args(&c).before.as_ref().map(|b| b.join(",")),
                "auto-restart" => Some(start_args(&c).auto_restart.join(",")),
                "can-die" => Some(start_args(&c).can_die.join(",")),
                _ => unreachable!(),
            };
            assert!(
                got.is_some_and(|g| !g.is_empty() || *long == "before"),
                "{args:?}"
            );
        }
        // Ambiguous among honcho's own options, or among procrun's: the candidates, sorted.
        let cases: &[(&[&str], &str)] = &[
            (
                &["start", "--no"],
                "option '--no' is ambiguous: --no-colour, --no-prefix, --no-timestamp",
            ),
            (
                &["start", "--p", "1"],
                "option '--p' is ambiguous: --port, --procfile",
            ),
            (
                &["start", "--t", "1"],
                "option '--t' is ambiguous: --timeout, --timestamp-format",
            ),
            (
                &["start", "--s", "x"],
                "ambiguous: --status-addr, --stop-signal",
            ),
            (
                &["start", "--re", "x"],
                "ambiguous: --ready, --restart-delay, --restart-limit",
            ),
            (&["--no", "check"], "ambiguous: --no-colour, --no-prefix"),
        ];
        for (args, want) in cases {
            let e = usage_error(args, &[]);
            assert!(e.contains(want), "{args:?}: {e}");
            assert!(!e.contains("--color"), "{e}");
        }
    }

    #[test]
    fn version_after_a_command_as_honcho() {
        for (args, want) in [
            (&["start", "-v"][..], "procrun start "),
            (&["start", "--version"], "procrun start "),
            (&["start", "--vers"], "procrun start "),
            (&["check", "-v"], "procrun check "),
            (
                &["-f", "P", "start", "-c", "web=2", "-v", "web"],
                "procrun start ",
            ),
            (&["run", "-v"], "procrun run "),
            (&["export", "-v"], "procrun export "),
        ] {
            match parse_with(args, &[]) {
                Ok(Parsed::Version(v)) => {
                    assert_eq!(
                        v,
                        format!("{want}{}", env!("CARGO_PKG_VERSION")),
                        "{args:?}"
                    )
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        // At the root, clap's own (`procrun 0.1.0`, exit 0).
        let e = parse_with(&["-v"], &[]).unwrap_err();
        assert_eq!((e.kind(), e.exit_code()), (ErrorKind::DisplayVersion, 0));
        // A -v that is a value or part of run's command is not the version.
        let c = cli(&["start", "--quiet=-v"], &[]);
        assert_eq!(start_args(&c).quiet.as_deref(), Some("-v"));
        usage_error(&["start", "-q", "-v"], &[]);
    }

    #[test]
    fn booleans_from_the_environment() {
        let truthy = ["1", "true", "TRUE", "yes", "Yes", "on", "ON", " 1 "];
        let falsy = ["0", "false", "False", "no", "NO", "off", "Off"];
        for var in [
            "PROCRUN_NO_COLOUR",
            "PROCRUN_NO_PREFIX",
            "PROCRUN_NO_TIMESTAMP",
        ] {
            let get = |c: &Cli| match var {
                "PROCRUN_NO_COLOUR" => c.common.no_colour,
                "PROCRUN_NO_PREFIX" => c.common.no_prefix,
                _ => start_args(c).no_timestamp,
            };
            for v in truthy {
                assert!(get(&cli(&["start"], &[(var, v)])), "{var}={v}");
            }
            for v in falsy.iter().chain(&[""]) {
                assert!(!get(&cli(&["start"], &[(var, v)])), "{var}={v}");
            }
            let e = usage_error(&["start"], &[(var, "maybe")]);
            assert!(
                e.contains(&format!("invalid value 'maybe' in {var}")),
                "{e}"
            );
            assert!(!e.contains("'--no-"), "{e}");
        }
        // The command line wins: the flag cannot be turned off, the variable is not read.
        let c = cli(
            &["--no-colour", "start"],
            &[("PROCRUN_NO_COLOUR", "garbage")],
        );
        assert!(c.common.no_colour);
        let c = cli(&["start", "--no-prefix"], &[("PROCRUN_NO_PREFIX", "0")]);
        assert!(c.common.no_prefix);
    }

    /// Every variable an option reads, with a value and what parsing it must give.
    type EnvCase = (
        &'static str,
        &'static [&'static str],
        &'static str,
        fn(&Cli) -> String,
    );

    fn env_cases() -> Vec<EnvCase> {
        fn s(c: &Cli) -> &StartArgs {
            start_args(c)
        }
        fn probe(c: &Cli) -> &ProbeArgs {
            match &c.command {
                Command::Probe(p) => p,
                _ => panic!(),
            }
        }
        fn export(c: &Cli) -> &ExportArgs {
            match &c.command {
                Command::Export(e) => e,
                _ => panic!(),
            }
        }
        let start: &[&str] = &["start"];
        let probe_args: &[&str] = &["probe", "tcp://h:1"];
        let export_args: &[&str] = &["export", "runit", "out"];
        vec![
            ("PROCRUN_ENV", start, "a,b", |c| {
                format!("{:?}", c.common.env)
            }),
            ("PROCRUN_APP_ROOT", start, "/srv", |c| {
                format!("{:?}", c.common.app_root)
            }),
            ("PROCRUN_PROCFILE", start, "P", |c| {
                format!("{:?}", c.common.procfile)
            }),
            ("PROCRUN_NO_COLOUR", start, "1", |c| {
                c.common.no_colour.to_string()
            }),
            ("PROCRUN_NO_PREFIX", start, "yes", |c| {
                c.common.no_prefix.to_string()
            }),
            ("PROCRUN_COLOUR", start, "always", |c| {
                format!("{:?}", c.common.colour)
            }),
            ("PROCRUN_PORT", start, "7000", |c| {
                format!("{:?}", s(c).expand.port)
            }),
            ("PROCRUN_CONCURRENCY", start, "web=2", |c| {
                format!("{:?}", s(c).expand.concurrency)
            }),
            ("PROCRUN_QUIET", start, "web", |c| {
                format!("{:?}", s(c).quiet)
            }),
            ("PROCRUN_TIMEOUT", start, "20", |c| {
                format!("{:?}", s(c).timeout)
            }),
            ("PROCRUN_LOG_FORMAT", start, "json", |c| {
                format!("{:?}", s(c).log_format)
            }),
            ("PROCRUN_NO_TIMESTAMP", start, "on", |c| {
                s(c).no_timestamp.to_string()
            }),
            ("PROCRUN_TIMESTAMP_FORMAT", start, "rfc3339", |c| {
                format!("{:?}", s(c).timestamp_format)
            }),
            ("PROCRUN_STATUS_ADDR", start, "127.0.0.1:9000", |c| {
                format!("{:?}", s(c).status_addr)
            }),
            ("PROCRUN_READY", start, "web=tcp,worker=http:/h", |c| {
                format!("{:?}", s(c).ready)
            }),
            ("PROCRUN_BEFORE", start, "migrate,release", |c| {
                format!("{:?}", s(c).before)
            }),
            ("PROCRUN_CAN_DIE", start, "worker,clock", |c| {
                format!("{:?}", s(c).can_die)
            }),
            ("PROCRUN_AUTO_RESTART", start, "all", |c| {
                format!("{:?}", s(c).auto_restart)
            }),
            ("PROCRUN_RESTART_LIMIT", start, "9", |c| {
                s(c).restart_limit.to_string()
            }),
            ("PROCRUN_RESTART_DELAY", start, "0", |c| {
                format!("{:?}", s(c).restart_delay)
            }),
            ("PROCRUN_AFTER", start, "nginx=web+worker", |c| {
                format!("{:?}", s(c).after)
            }),
            ("PROCRUN_STOP_SIGNAL", start, "nginx=QUIT", |c| {
                format!("{:?}", s(c).stop_signal)
            }),
            ("PROCRUN_DRAIN", start, "2.5", |c| {
                format!("{:?}", s(c).drain)
            }),
            ("PROCRUN_PROBE_TIMEOUT", probe_args, "7", |c| {
                format!("{:?}", probe(c).timeout)
            }),
            ("PROCRUN_PROBE_RETRIES", probe_args, "4", |c| {
                probe(c).retries.to_string()
            }),
            ("PROCRUN_PROBE_INTERVAL", probe_args, "3", |c| {
                format!("{:?}", probe(c).interval)
            }),
            ("PROCRUN_PROBE_EXPECT_STATUS", probe_args, "204", |c| {
                format!("{:?}", probe(c).expect_status)
            }),
            ("PROCRUN_PROBE_EXPECT_BODY", probe_args, "ok", |c| {
                format!("{:?}", probe(c).expect_body)
            }),
            (
                "PROCRUN_PROBE_FAILURES",
                &["probe", "--watch", "tcp://h:1"],
                "6",
                |c| probe(c).failures.to_string(),
            ),
            ("PROCRUN_APP", export_args, "myapp", |c| {
                format!("{:?}", export(c).app)
            }),
            ("PROCRUN_LOG", export_args, "/logs", |c| {
                format!("{:?}", export(c).log)
            }),
            ("PROCRUN_USER", export_args, "me", |c| {
                format!("{:?}", export(c).user)
            }),
            ("PROCRUN_SHELL", export_args, "/bin/bash", |c| {
                export(c).shell.clone()
            }),
        ]
    }

    #[test]
    fn every_procrun_variable() {
        let cases = env_cases();
        // Every variable an option declares is in the table (so it is tested) and in README.
        let readme = include_str!("../README.md");
        let cmd = Cli::command();
        for (var, long, commands) in ENV_VARS {
            assert!(cases.iter().any(|(v, ..)| v == var), "{var} is not tested");
            assert!(
                readme.contains(&format!("`{var}`")),
                "README does not list {var}"
            );
            // The option exists where the table says, and its help names the variable.
            let levels: Vec<&clap::Command> = if commands.is_empty() {
                vec![&cmd]
            } else {
                commands
                    .iter()
                    .map(|c| cmd.find_subcommand(c).expect(c))
                    .collect()
            };
            for level in levels {
                let arg = level
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .unwrap_or_else(|| panic!("{var}: no --{long} in {}", level.get_name()));
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.ends_with(&format!("[env: {var}]")), "{var}: {help}");
            }
        }
        // And every option whose help names a variable is in the table.
        for level in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for arg in level.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if let Some((_, var)) = help.split_once("[env: ") {
                    let var = var.trim_end_matches(']');
                    let long = arg.get_long().unwrap_or_default();
                    assert!(
                        ENV_VARS.iter().any(|(v, l, c)| *v == var
                            && *l == long
                            && (c.is_empty() || c.contains(&level.get_name()))),
                        "{var} (--{long} of {}) is not in ENV_VARS",
                        level.get_name()
                    );
                }
            }
        }
        for (var, args, value, get) in &cases {
            let without = get(&cli(args, &[]));
            let with = get(&cli(args, &[(var, value)]));
            assert_ne!(with, without, "{var}={value} changed nothing");
            // Empty is unset.
            assert_eq!(
                get(&cli(args, &[(var, "")])),
                without,
                "{var}= is not unset"
            );
            let c = cli(args, &[(var, value)]);
            let flag = ENV_VARS
                .iter()
                .find(|v| v.0 == *var)
                .map(|v| v.1.to_string())
                .unwrap();
            assert_eq!(c.option_label(&flag), format!("{var} (--{flag})"));
        }
        // `run` and `status` share variables with `start`.
        let c = cli(&["run", "x"], &[("PROCRUN_TIMEOUT", "9")]);
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.timeout, Duration::from_secs(9));
        let c = cli(&["status"], &[("PROCRUN_STATUS_ADDR", "h:1")]);
        let Command::Status(st) = c.command else {
            panic!()
        };
        assert_eq!(st.addr.as_deref(), Some("h:1"));
        // The command line wins over the variable; a value may start with `-` or hold `=`.
        let c = cli(&["start", "-p", "6000"], &[("PROCRUN_PORT", "7000")]);
        assert_eq!(start_args(&c).expand.port.as_deref(), Some("6000"));
        assert_eq!(c.option_label("port"), "--port");
        let c = cli(&["start", "--po=6000"], &[("PROCRUN_PORT", "7000")]);
        assert_eq!(start_args(&c).expand.port.as_deref(), Some("6000"));
        let c = cli(
            &["start"],
            &[("PROCRUN_PORT", "-5"), ("PROCRUN_AFTER", "a=b")],
        );
        assert_eq!(start_args(&c).expand.port.as_deref(), Some("-5"));
        // Variables of other commands are not read.
        let c = cli(
            &["check"],
            &[("PROCRUN_APP", "x"), ("PROCRUN_PROBE_RETRIES", "x")],
        );
        assert!(c.from_env.is_empty());
        // An invalid value names the variable.
        for (var, value, want) in [
            (
                "PROCRUN_TIMEOUT",
                "abc",
                "invalid value 'abc' in PROCRUN_TIMEOUT (for --timeout): invalid duration",
            ),
            (
                "PROCRUN_LOG_FORMAT",
                "xml",
                "invalid value 'xml' in PROCRUN_LOG_FORMAT (for --log-format) (possible values: text, json)",
            ),
            ("PROCRUN_COLOUR", "red", "in PROCRUN_COLOUR (for --colour)"),
            (
                "PROCRUN_RESTART_LIMIT",
                "-1",
                "in PROCRUN_RESTART_LIMIT (for --restart-limit)",
            ),
        ] {
            let e = usage_error(&["start"], &[(var, value)]);
            assert!(e.contains(want), "{var}: {e}");
        }
    }
}
