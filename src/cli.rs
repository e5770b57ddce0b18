//! Command-line interface: honcho 2.0's commands and options, plus procrun's own, as clap
//! types. A leaf: it imports no other module of procrun and does no I/O; `app` turns these into
//! the plain configuration structs the commands take.
//!
//! Every option can also come from `PROCRUN_<OPTION>` in the environment. Common options work
//! before or after the command (`procrun -f P start` and `procrun start -f P`), and long
//! options may be abbreviated to any unambiguous prefix, as with honcho's argparse.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// Run the processes of a Procfile: a honcho drop-in and container init.
#[derive(Debug, Parser)]
#[command(
    name = "procrun",
    version,
    disable_version_flag = true,
    infer_long_args = true,
    after_help = "Every option can also be set as PROCRUN_<OPTION> in the environment.\n\
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
}

/// Options shared by every command (honcho's "common options").
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct Common {
    /// Environment files to read, comma-separated, later ones win [default: .env]
    #[arg(
        short = 'e',
        long = "env",
        global = true,
        env = "PROCRUN_ENV",
        value_name = "FILE,..."
    )]
    pub(crate) env: Option<String>,
    /// Directory against which the Procfile and env files are resolved (children keep procrun's cwd)
    #[arg(
        short = 'd',
        long = "app-root",
        global = true,
        env = "PROCRUN_APP_ROOT",
        value_name = "DIR"
    )]
    pub(crate) app_root: Option<String>,
    /// Procfile path [default: $PROCFILE, environments/$ENV_NAME/Procfile, or Procfile]
    #[arg(
        short = 'f',
        long = "procfile",
        global = true,
        env = "PROCRUN_PROCFILE",
        value_name = "FILE"
    )]
    pub(crate) procfile: Option<String>,
    /// Never colour the output (same as --colour never)
    #[arg(long = "no-colour", global = true, env = "PROCRUN_NO_COLOUR")]
    pub(crate) no_colour: bool,
    /// Print bare output lines: no timestamp, name or separator
    #[arg(long = "no-prefix", global = true, env = "PROCRUN_NO_PREFIX")]
    pub(crate) no_prefix: bool,
    /// When to colour the prefixes (auto: stdout is a terminal and NO_COLOR is unset)
    #[arg(long = "colour", alias = "color", global = true, env = "PROCRUN_COLOUR", value_enum, default_value_t = ColourWhen::Auto)]
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
    /// Base port: PORT of the first process type, +100 per type, +1 per instance [default: 5000]
    #[arg(
        short = 'p',
        long = "port",
        env = "PROCRUN_PORT",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub(crate) port: Option<String>,
    /// Instances per process type: name=N,...
    #[arg(
        short = 'c',
        long = "concurrency",
        env = "PROCRUN_CONCURRENCY",
        value_name = "name=N,..."
    )]
    pub(crate) concurrency: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) expand: Expand,
    /// Drop the output of these process types: name,...
    #[arg(
        short = 'q',
        long = "quiet",
        env = "PROCRUN_QUIET",
        value_name = "name,..."
    )]
    pub(crate) quiet: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping
    #[arg(short = 't', long = "timeout", env = "PROCRUN_TIMEOUT", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// Output format
    #[arg(long = "log-format", env = "PROCRUN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Leave the time column out of prefixed lines
    #[arg(long = "no-timestamp", env = "PROCRUN_NO_TIMESTAMP")]
    pub(crate) no_timestamp: bool,
    /// Format of the time column
    #[arg(long = "timestamp-format", env = "PROCRUN_TIMESTAMP_FORMAT", value_enum, default_value_t = TimestampFormat::Time)]
    pub(crate) timestamp_format: TimestampFormat,
    /// Serve GET /health and GET /status on this address (e.g. 127.0.0.1:9000)
    #[arg(long = "status-addr", env = "PROCRUN_STATUS_ADDR", value_name = "ADDR")]
    pub(crate) status_addr: Option<String>,
    /// Readiness check per type, for /health: name=tcp or name=http:/path (comma-separated)
    #[arg(
        long = "ready",
        env = "PROCRUN_READY",
        value_name = "name=tcp|http:/path",
        value_delimiter = ','
    )]
    pub(crate) ready: Vec<String>,
    /// Run these types first, one after another, each to completion [default: release, if the Procfile has it; '' for none]
    #[arg(
        long = "before",
        env = "PROCRUN_BEFORE",
        value_name = "name,...",
        value_delimiter = ','
    )]
    pub(crate) before: Option<Vec<String>>,
    /// These types may stop without ending the run: name,... or all
    #[arg(
        long = "can-die",
        env = "PROCRUN_CAN_DIE",
        value_name = "name,...|all",
        value_delimiter = ','
    )]
    pub(crate) can_die: Vec<String>,
    /// Start these types again when they stop: name,... or all (all but --before types)
    #[arg(
        long = "auto-restart",
        env = "PROCRUN_AUTO_RESTART",
        value_name = "name,...|all",
        value_delimiter = ','
    )]
    pub(crate) auto_restart: Vec<String>,
    /// Restarts allowed within 60 s before an --auto-restart type counts as stopped for good
    #[arg(
        long = "restart-limit",
        env = "PROCRUN_RESTART_LIMIT",
        value_name = "N",
        default_value_t = 5
    )]
    pub(crate) restart_limit: u32,
    /// Start NAME only when every DEP is ready: NAME=DEP[+DEP...],...
    #[arg(
        long = "after",
        env = "PROCRUN_AFTER",
        value_name = "name=dep[+dep...],...",
        value_delimiter = ','
    )]
    pub(crate) after: Vec<String>,
    /// Signal that stops a type instead of SIGTERM: name=SIGNAL,... (QUIT, SIGQUIT or 3)
    #[arg(
        long = "stop-signal",
        env = "PROCRUN_STOP_SIGNAL",
        value_name = "name=SIGNAL,...",
        value_delimiter = ','
    )]
    pub(crate) stop_signal: Vec<String>,
    /// Seconds between a shutdown signal and stopping the processes, while /health says 503
    #[arg(long = "drain", env = "PROCRUN_DRAIN", value_name = "SECONDS", default_value = "0", value_parser = parse_seconds)]
    pub(crate) drain: Duration,
    /// Process types to start, in this order [default: all, Procfile order]
    #[arg(value_name = "PROCESS")]
    pub(crate) processes: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct RunArgs {
    /// Seconds to wait for leftover processes after the command exits, before SIGKILL
    #[arg(short = 't', long = "timeout", env = "PROCRUN_TIMEOUT", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
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
    /// Time allowed for each attempt (connect, request, response)
    #[arg(long, env = "PROCRUN_PROBE_TIMEOUT", value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// Attempts after the first before giving up (one-shot mode)
    #[arg(
        long,
        env = "PROCRUN_PROBE_RETRIES",
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "watch"
    )]
    pub(crate) retries: u32,
    /// Pause between attempts [default: 1s; 10s with --watch]
    #[arg(long, env = "PROCRUN_PROBE_INTERVAL", value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) interval: Option<Duration>,
    /// Healthy HTTP statuses: 200, 200-299 or a comma-separated list [default: 200-399]
    #[arg(long = "expect-status", env = "PROCRUN_PROBE_EXPECT_STATUS", value_name = "CODES", value_parser = parse_status_ranges)]
    pub(crate) expect_status: Option<StatusCodes>,
    /// The HTTP response body (its first 64 KiB) must contain this text
    #[arg(
        long = "expect-body",
        env = "PROCRUN_PROBE_EXPECT_BODY",
        value_name = "TEXT"
    )]
    pub(crate) expect_body: Option<String>,
    /// Keep probing every --interval; exit 1 after --failures consecutive failed rounds
    #[arg(long)]
    pub(crate) watch: bool,
    /// Consecutive failed rounds after which --watch exits 1
    #[arg(long, env = "PROCRUN_PROBE_FAILURES", value_name = "N", default_value_t = 3, requires = "watch",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) failures: u32,
    /// Targets: http://host:port/path, tcp://host:port, unix:/path (or unix:/path:/http-path)
    #[arg(required = true, value_name = "TARGET")]
    pub(crate) targets: Vec<String>,
}

/// Arguments of `procrun status`.
#[derive(Debug, Args, Clone)]
pub(crate) struct StatusArgs {
    /// Address of the status endpoint of the running procrun [default: 127.0.0.1:9000]
    #[arg(long = "addr", env = "PROCRUN_STATUS_ADDR", value_name = "ADDR")]
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
    /// Application name [default: the name of the current directory]
    #[arg(short = 'a', long = "app", env = "PROCRUN_APP", value_name = "APP")]
    pub(crate) app: Option<String>,
    /// Directory for the processes' logs [default: /var/log/APP]
    #[arg(short = 'l', long = "log", env = "PROCRUN_LOG", value_name = "DIR")]
    pub(crate) log: Option<String>,
    #[command(flatten)]
    pub(crate) expand: Expand,
    /// User the processes run as [default: APP]
    #[arg(short = 'u', long = "user", env = "PROCRUN_USER", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Shell that runs the commands
    #[arg(
        short = 's',
        long = "shell",
        env = "PROCRUN_SHELL",
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

    #[test]
    fn cli_shape() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "procrun", "--proc", "P", "--env", "a,b", "start", "--no-pre", "-c", "web=2", "web",
        ])
        .unwrap();
        assert_eq!(cli.common.procfile.as_deref(), Some("P"));
        assert!(cli.common.no_prefix);
        let Command::Start(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.processes, vec!["web"]);
        assert_eq!(s.expand.concurrency.as_deref(), Some("web=2"));
        // After the task wins.
        let cli = Cli::try_parse_from(["procrun", "-f", "A", "check", "-f", "B"]).unwrap();
        assert!(matches!(cli.command, Command::Check(_)));
        assert_eq!(cli.common.procfile.as_deref(), Some("B"));
        // `--no` is ambiguous; `--no-color` is not an option (honcho spells it --no-colour).
        assert!(Cli::try_parse_from(["procrun", "start", "--no"]).is_err());
        let cli = Cli::try_parse_from(["procrun", "run", "echo", "-e", "x"]).unwrap();
        let Command::Run(r) = cli.command else {
            panic!()
        };
        assert_eq!(r.argv, vec!["echo", "-e", "x"]);
        // `run` needs a command; `-p -5` reaches the port check.
        assert_eq!(
            Cli::try_parse_from(["procrun", "run"])
                .unwrap_err()
                .exit_code(),
            2
        );
        let cli = Cli::try_parse_from(["procrun", "start", "-p", "-5"]).unwrap();
        let Command::Start(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.expand.port.as_deref(), Some("-5"));
    }
}
