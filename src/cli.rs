//! Command-line interface: honcho 2.0's commands and options, plus procrun's own. No I/O here;
//! `config` turns these into a validated configuration.
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
    after_help = "Exit codes: 0 ok; 1 bad input (Procfile, .env, options values); 2 usage error; \
otherwise the first stopped process's code, 128+N for a signal death, 130/143 when procrun got SIGINT/SIGTERM."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
    /// Print version information and exit.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
}

/// Options shared by every command (honcho's "common options").
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// Environment files to read, comma-separated, later ones win [default: .env]
    #[arg(
        short = 'e',
        long = "env",
        global = true,
        env = "PROCRUN_ENV",
        value_name = "FILE,..."
    )]
    pub env: Option<String>,
    /// Directory against which the Procfile and env files are resolved (children keep procrun's cwd)
    #[arg(
        short = 'd',
        long = "app-root",
        global = true,
        env = "PROCRUN_APP_ROOT",
        value_name = "DIR"
    )]
    pub app_root: Option<String>,
    /// Procfile path [default: $PROCFILE, environments/$ENV_NAME/Procfile, or Procfile]
    #[arg(
        short = 'f',
        long = "procfile",
        global = true,
        env = "PROCRUN_PROCFILE",
        value_name = "FILE"
    )]
    pub procfile: Option<String>,
    /// Never colour the output (same as --colour never)
    #[arg(long = "no-colour", global = true, env = "PROCRUN_NO_COLOUR")]
    pub no_colour: bool,
    /// Print bare output lines: no timestamp, name or separator
    #[arg(long = "no-prefix", global = true, env = "PROCRUN_NO_PREFIX")]
    pub no_prefix: bool,
    /// When to colour the prefixes (auto: stdout is a terminal and NO_COLOR is unset)
    #[arg(long = "colour", alias = "color", global = true, env = "PROCRUN_COLOUR", value_enum, default_value_t = ColourWhen::Auto)]
    pub colour: ColourWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColourWhen {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// `HH:MM:SS web.1 | text`, as honcho.
    #[default]
    Text,
    /// One JSON object per line: time (RFC 3339, UTC), name, pid, text.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TimestampFormat {
    /// `HH:MM:SS`, local time (honcho).
    #[default]
    Time,
    /// `2026-01-02T03:04:05.678Z`, UTC with milliseconds.
    Rfc3339,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the Procfile's processes (all, or those named) and multiplex their output
    Start(StartArgs),
    /// Run one command with the env files applied, as a container init (signals, reaping)
    Run(RunArgs),
    /// Validate the Procfile (and env files) and say which files were used
    Check,
    /// Probe HTTP, TCP or Unix-socket targets: for HEALTHCHECK, or --watch as a sidecar
    Probe(crate::probe::ProbeArgs),
    /// Show the processes of a running `procrun start --status-addr ...`
    Status(crate::status::StatusArgs),
    /// Write the Procfile as supervisord, systemd, upstart or runit configuration (honcho's export)
    Export(crate::export::ExportArgs),
    /// Print the version
    Version,
}

/// How the Procfile's types become numbered instances with ports (`start` and `export`).
#[derive(Debug, Args, Clone, Default)]
pub struct Expand {
    /// Base port: PORT of the first process type, +100 per type, +1 per instance [default: 5000]
    #[arg(short = 'p', long = "port", env = "PROCRUN_PORT", value_name = "N")]
    pub port: Option<String>,
    /// Instances per process type: name=N,...
    #[arg(
        short = 'c',
        long = "concurrency",
        env = "PROCRUN_CONCURRENCY",
        value_name = "name=N,..."
    )]
    pub concurrency: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StartArgs {
    #[command(flatten)]
    pub expand: Expand,
    /// Drop the output of these process types: name,...
    #[arg(
        short = 'q',
        long = "quiet",
        env = "PROCRUN_QUIET",
        value_name = "name,..."
    )]
    pub quiet: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping
    #[arg(short = 't', long = "timeout", env = "PROCRUN_TIMEOUT", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Output format
    #[arg(long = "log-format", env = "PROCRUN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Leave the time column out of prefixed lines
    #[arg(long = "no-timestamp", env = "PROCRUN_NO_TIMESTAMP")]
    pub no_timestamp: bool,
    /// Format of the time column
    #[arg(long = "timestamp-format", env = "PROCRUN_TIMESTAMP_FORMAT", value_enum, default_value_t = TimestampFormat::Time)]
    pub timestamp_format: TimestampFormat,
    /// Serve GET /health and GET /status on this address (e.g. 127.0.0.1:9000)
    #[arg(long = "status-addr", env = "PROCRUN_STATUS_ADDR", value_name = "ADDR")]
    pub status_addr: Option<String>,
    /// Readiness check per type, for /health: name=tcp or name=http:/path (comma-separated)
    #[arg(
        long = "ready",
        env = "PROCRUN_READY",
        value_name = "name=tcp|http:/path",
        value_delimiter = ','
    )]
    pub ready: Vec<String>,
    /// Process types to start, in this order [default: all, Procfile order]
    #[arg(value_name = "PROCESS")]
    pub processes: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Seconds to wait for leftover processes after the command exits, before SIGKILL
    #[arg(short = 't', long = "timeout", env = "PROCRUN_TIMEOUT", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// The command and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub argv: Vec<String>,
}

/// Parses `5`, `0.5`, `2s`, `500ms`, `1m` into a duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
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
        assert_eq!(cli.common.procfile.as_deref(), Some("B"));
        // `--no` is ambiguous; `--no-color` is not an option (honcho spells it --no-colour).
        assert!(Cli::try_parse_from(["procrun", "start", "--no"]).is_err());
        let cli = Cli::try_parse_from(["procrun", "run", "echo", "-e", "x"]).unwrap();
        let Command::Run(r) = cli.command else {
            panic!()
        };
        assert_eq!(r.argv, vec!["echo", "-e", "x"]);
    }
}
