//! Startup configuration: rtpengine's flag names on the command line, the same keys
//! in an optional TOML file, flags winning over the file. Every bad value stops
//! startup with a message that names the key (and, for the file, its line).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use toml::Spanned;

/// Which packet I/O the workers use; `auto` probes io_uring and falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IoBackend {
    Auto,
    #[value(name = "io_uring")]
    IoUring,
    Mmsg,
}

/// How log lines are written: human-readable text, or one JSON object a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// One media interface: where the relay binds, and what it writes into SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Logical name (`--interface name/addr`); `default` when not given.
    pub name: String,
    /// Address the relay binds its media sockets to.
    pub local: IpAddr,
    /// Address announced in SDP (`local!public` for a relay behind 1:1 NAT).
    pub advertised: IpAddr,
}

impl InterfaceSpec {
    /// Parses rtpengine's `[name/]addr[!advertised]` form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, rest) = match s.split_once('/') {
            Some((n, r)) if !n.is_empty() && n.parse::<IpAddr>().is_err() => (n.to_owned(), r),
            Some(_) => return Err(format!("'{s}': expected [name/]address[!advertised]")),
            None => ("default".to_owned(), s),
        };
        let (local, adv) = match rest.split_once('!') {
            Some((l, a)) => (l, Some(a)),
            None => (rest, None),
        };
        let local: IpAddr = local
            .parse()
            .map_err(|_| format!("'{local}' is not an IP address"))?;
        let advertised = match adv {
            Some(a) => a
                .parse()
                .map_err(|_| format!("advertised '{a}' is not an IP address"))?,
            None => local,
        };
        if local.is_ipv4() != advertised.is_ipv4() {
            return Err(format!(
                "'{s}': local and advertised addresses differ in family"
            ));
        }
        Ok(InterfaceSpec {
            name,
            local,
            advertised,
        })
    }
}

impl fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.local)?;
        if self.advertised != self.local {
            write!(f, "!{}", self.advertised)?;
        }
        Ok(())
    }
}

/// Command-line flags, named as rtpengine names them.
#[derive(Debug, Default, Parser)]
#[command(
    name = "ferrelay",
    version,
    about = "RTP/SRTP media relay speaking rtpengine's NG protocol"
)]
pub struct Cli {
    /// TOML file with the same keys as the flags (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NG control address over UDP [default: 127.0.0.1:2223].
    #[arg(long = "listen-ng", value_name = "ADDR")]
    pub listen_ng: Option<String>,
    /// NG control address over TCP [default: 127.0.0.1:2223].
    #[arg(long = "listen-tcp-ng", value_name = "ADDR")]
    pub listen_tcp_ng: Option<String>,
    /// Media interface `[name/]addr[!advertised]`, repeatable [default: 127.0.0.1].
    #[arg(long = "interface", value_name = "SPEC")]
    pub interface: Vec<String>,
    /// Lowest media port [default: 30000].
    #[arg(long = "port-min")]
    pub port_min: Option<u16>,
    /// Highest media port [default: 40000].
    #[arg(long = "port-max")]
    pub port_max: Option<u16>,
    /// Seconds without media before a call is deleted [default: 60].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Seconds without media on a held call before deletion [default: 3600].
    #[arg(long = "silent-timeout")]
    pub silent_timeout: Option<u64>,
    /// Maximum call length in seconds, 0 = unlimited [default: 0].
    #[arg(long = "final-timeout")]
    pub final_timeout: Option<u64>,
    /// Seconds an unanswered offer is kept [default: 3600].
    #[arg(long = "offer-timeout")]
    pub offer_timeout: Option<u64>,
    /// Seconds between delete and the release of ports [default: 30].
    #[arg(long = "delete-delay")]
    pub delete_delay: Option<u64>,
    /// Worker threads [default: one per available core].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Threads answering NG over UDP [default: a quarter of the cores, 1 to 4].
    #[arg(long = "ng-threads")]
    pub ng_threads: Option<usize>,
    /// Packet I/O of the workers [default: auto].
    #[arg(long = "io-backend", value_enum)]
    pub io_backend: Option<IoBackend>,
    /// tracing filter, e.g. `info` or `ferrelay=debug` [default: info].
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Log line format [default: text].
    #[arg(long = "log-format", value_enum)]
    pub log_format: Option<LogFormat>,
    /// HTTP address for /metrics, the JSON API and the dashboard [default: 127.0.0.1:9900].
    #[arg(long = "listen-http", value_name = "ADDR")]
    pub listen_http: Option<String>,
    /// SIP front end (UDP and TCP) address; off unless given (or `[sip] listen`).
    #[arg(long = "listen-sip", value_name = "ADDR")]
    pub listen_sip: Option<String>,
}

/// The file form: same keys as the flags, each value remembering its span.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen_ng: Option<Spanned<String>>,
    listen_tcp_ng: Option<Spanned<String>>,
    interface: Option<Spanned<Vec<String>>>,
    port_min: Option<Spanned<u16>>,
    port_max: Option<Spanned<u16>>,
    timeout: Option<Spanned<u64>>,
    silent_timeout: Option<Spanned<u64>>,
    final_timeout: Option<Spanned<u64>>,
    offer_timeout: Option<Spanned<u64>>,
    delete_delay: Option<Spanned<u64>>,
    workers: Option<Spanned<usize>>,
    ng_threads: Option<Spanned<usize>>,
    io_backend: Option<Spanned<IoBackend>>,
    log_level: Option<Spanned<String>>,
    log_format: Option<Spanned<LogFormat>>,
    listen_http: Option<Spanned<String>>,
    sip: Option<crate::sip::config::SipFile>,
}

/// The resolved, validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_ng: SocketAddr,
    pub listen_tcp_ng: SocketAddr,
    pub interfaces: Vec<InterfaceSpec>,
    pub port_min: u16,
    pub port_max: u16,
    pub timeout: Duration,
    pub silent_timeout: Duration,
    /// `None` = calls have no maximum length.
    pub final_timeout: Option<Duration>,
    pub offer_timeout: Duration,
    pub delete_delay: Duration,
    pub workers: usize,
    /// Threads receiving and answering NG datagrams (TCP, timers and worker
    /// events run on the main runtime).
    pub ng_threads: usize,
    pub io_backend: IoBackend,
    pub log_level: String,
    pub log_format: LogFormat,
    pub listen_http: SocketAddr,
    /// The SIP front end (off unless `listen` is set).
    pub sip: crate::sip::config::SipConfig,
}

/// A startup error that names the offending key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

/// Most media interfaces: a call's side keeps its interface's index in one
/// byte, and no host has anywhere near this many addresses to relay on.
pub const MAX_INTERFACES: usize = 256;

/// Most NG threads by default. They get a quarter of the cores: the rest stay
/// with the workers, and on a small host one thread that keeps its caches warm
/// beats two that share the cores with them (measured on 2 cores: 52 against
/// 69 µs of CPU per offer+answer+delete cycle, at the same rate).
const MAX_DEFAULT_NG_THREADS: usize = 4;

impl Default for Config {
    fn default() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            listen_ng: SocketAddr::new(lo, 2223),
            listen_tcp_ng: SocketAddr::new(lo, 2223),
            interfaces: vec![InterfaceSpec {
                name: "default".into(),
                local: lo,
                advertised: lo,
            }],
            port_min: 30000,
            port_max: 40000,
            timeout: Duration::from_secs(60),
            silent_timeout: Duration::from_secs(3600),
            final_timeout: None,
            offer_timeout: Duration::from_secs(3600),
            delete_delay: Duration::from_secs(30),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ng_threads: (std::thread::available_parallelism().map_or(1, |n| n.get()) / 4)
                .clamp(1, MAX_DEFAULT_NG_THREADS),
            io_backend: IoBackend::Auto,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            listen_http: SocketAddr::new(lo, 9900),
            sip: Default::default(),
        }
    }
}

/// A seconds-valued key: name, flag value, file value, whether 0 is allowed.
type SecondsKey<'a> = (&'a str, &'a Option<u64>, &'a Option<Spanned<u64>>, bool);

/// Where a value came from, for error messages.
struct Origin<'a> {
    file: Option<(&'a Path, &'a str)>,
}

impl Origin<'_> {
    fn flag(key: &str) -> String {
        format!("--{key}")
    }

    fn file_key(&self, key: &str, span: std::ops::Range<usize>) -> String {
        match self.file {
            Some((path, text)) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("{key} ({} line {line})", path.display())
            }
            None => key.to_owned(),
        }
    }
}

fn invalid(origin: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin,
        reason: reason.into(),
    }
}

/// Picks the flag value if given, else the file value, remembering the origin.
fn pick<T: Clone>(
    o: &Origin<'_>,
    key: &str,
    flag: &Option<T>,
    file: &Option<Spanned<T>>,
) -> Option<(T, String)> {
    if let Some(v) = flag {
        return Some((v.clone(), Origin::flag(key)));
    }
    file.as_ref()
        .map(|s| (s.get_ref().clone(), o.file_key(key, s.span())))
}

impl Config {
    /// Resolves flags over an optional file over the defaults.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::resolve(cli, Some((path, &text)))
            }
            None => Self::resolve(cli, None),
        }
    }

    /// Merges `cli` over the TOML `file` (path, text) and validates the result.
    pub fn resolve(cli: &Cli, file: Option<(&Path, &str)>) -> Result<Config, ConfigError> {
        let parsed: FileConfig = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string().trim_end().replace('\n', " "),
            })?,
            None => FileConfig::default(),
        };
        let o = Origin { file };
        let mut c = Config::default();

        for (key, flag, filev, dst) in [
            (
                "listen-ng",
                &cli.listen_ng,
                &parsed.listen_ng,
                &mut c.listen_ng,
            ),
            (
                "listen-tcp-ng",
                &cli.listen_tcp_ng,
                &parsed.listen_tcp_ng,
                &mut c.listen_tcp_ng,
            ),
            (
                "listen-http",
                &cli.listen_http,
                &parsed.listen_http,
                &mut c.listen_http,
            ),
        ] {
            if let Some((v, origin)) = pick(&o, key, flag, filev) {
                *dst = parse_listen(&v).map_err(|r| invalid(origin, r))?;
            }
        }

        let ifaces = if !cli.interface.is_empty() {
            Some((cli.interface.clone(), Origin::flag("interface")))
        } else {
            parsed
                .interface
                .as_ref()
                .map(|s| (s.get_ref().clone(), o.file_key("interface", s.span())))
        };
        if let Some((list, origin)) = ifaces {
            if list.is_empty() {
                return Err(invalid(origin, "at least one interface is needed"));
            }
            if list.len() > MAX_INTERFACES {
                return Err(invalid(
                    origin,
                    format!("{} interfaces; at most {MAX_INTERFACES}", list.len()),
                ));
            }
            c.interfaces = list
                .iter()
                .map(|s| InterfaceSpec::parse(s).map_err(|r| invalid(origin.clone(), r)))
                .collect::<Result<_, _>>()?;
        }

        let pmin = pick(&o, "port-min", &cli.port_min, &parsed.port_min);
        let pmax = pick(&o, "port-max", &cli.port_max, &parsed.port_max);
        if let Some((v, origin)) = &pmin {
            if *v < 1024 {
                return Err(invalid(origin.clone(), format!("{v} is below 1024")));
            }
            c.port_min = *v;
        }
        if let Some((v, _)) = &pmax {
            c.port_max = *v;
        }
        if c.port_max <= c.port_min {
            let origin = pmax
                .map(|(_, o)| o)
                .or(pmin.map(|(_, o)| o))
                .unwrap_or_else(|| "port-max".into());
            return Err(invalid(
                origin,
                format!(
                    "port range {}-{} must hold at least two ports",
                    c.port_min, c.port_max
                ),
            ));
        }

        let secs: [SecondsKey<'_>; 5] = [
            ("timeout", &cli.timeout, &parsed.timeout, false),
            (
                "silent-timeout",
                &cli.silent_timeout,
                &parsed.silent_timeout,
                false,
            ),
            (
                "final-timeout",
                &cli.final_timeout,
                &parsed.final_timeout,
                true,
            ),
            (
                "offer-timeout",
                &cli.offer_timeout,
                &parsed.offer_timeout,
                false,
            ),
            (
                "delete-delay",
                &cli.delete_delay,
                &parsed.delete_delay,
                true,
            ),
        ];
        for (key, flag, filev, zero_ok) in secs {
            let Some((v, origin)) = pick(&o, key, flag, filev) else {
                continue;
            };
            if v == 0 && !zero_ok {
                return Err(invalid(origin, "must be at least 1 second"));
            }
            if v > 7 * 24 * 3600 {
                return Err(invalid(origin, format!("{v} s is longer than a week")));
            }
            let d = Duration::from_secs(v);
            match key {
                "timeout" => c.timeout = d,
                "silent-timeout" => c.silent_timeout = d,
                "final-timeout" => c.final_timeout = (v > 0).then_some(d),
                "offer-timeout" => c.offer_timeout = d,
                _ => c.delete_delay = d,
            }
        }

        if let Some((v, origin)) = pick(&o, "workers", &cli.workers, &parsed.workers) {
            if !(1..=256).contains(&v) {
                return Err(invalid(origin, format!("{v} is not in 1..=256")));
            }
            c.workers = v;
        }
        if let Some((v, origin)) = pick(&o, "ng-threads", &cli.ng_threads, &parsed.ng_threads) {
            if !(1..=64).contains(&v) {
                return Err(invalid(origin, format!("{v} is not in 1..=64")));
            }
            c.ng_threads = v;
        }
        if let Some((v, _)) = pick(&o, "io-backend", &cli.io_backend, &parsed.io_backend) {
            c.io_backend = v;
        }
        if let Some((v, origin)) = pick(&o, "log-level", &cli.log_level, &parsed.log_level) {
            tracing_subscriber::EnvFilter::try_new(&v)
                .map_err(|e| invalid(origin, format!("'{v}': {e}")))?;
            c.log_level = v;
        }
        if let Some((v, _)) = pick(&o, "log-format", &cli.log_format, &parsed.log_format) {
            c.log_format = v;
        }
        c.sip = crate::sip::config::resolve(cli.listen_sip.as_deref(), parsed.sip.as_ref())
            .map_err(|r| invalid("sip".into(), r))?;
        Ok(c)
    }
}

/// Accepts `addr:port`, a bare port (loopback), or `[v6]:port`.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse()
        .map_err(|_| format!("'{s}' is not an address:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["ferrelay"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_without_arguments() {
        let c = Config::resolve(&cli(&[]), None).unwrap();
        assert_eq!(c.listen_ng, "127.0.0.1:2223".parse().unwrap());
        assert_eq!(c.listen_tcp_ng, "127.0.0.1:2223".parse().unwrap());
        assert_eq!((c.port_min, c.port_max), (30000, 40000));
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.delete_delay, Duration::from_secs(30));
        assert_eq!(c.interfaces[0].local, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(c.workers >= 1);
    }

    #[test]
    fn interface_forms() {
        let i = InterfaceSpec::parse("pub/10.0.0.1!203.0.113.5").unwrap();
        assert_eq!(i.name, "pub");
        assert_eq!(i.local, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(i.advertised, "203.0.113.5".parse::<IpAddr>().unwrap());
        let i = InterfaceSpec::parse("::1").unwrap();
        assert_eq!(
            (i.name.as_str(), i.local, i.advertised),
            ("default", i.local, i.local)
        );
        assert!(InterfaceSpec::parse("x/notanip").is_err());
        assert!(InterfaceSpec::parse("10.0.0.1!::1").is_err());
    }

    #[test]
    fn flags_override_file() {
        let text = "port-min = 20000\nport-max = 20100\ntimeout = 5\n";
        let c = Config::resolve(
            &cli(&["--port-max", "20200", "--interface", "a/127.0.0.1"]),
            Some((Path::new("f.toml"), text)),
        )
        .unwrap();
        assert_eq!((c.port_min, c.port_max), (20000, 20200));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.interfaces[0].name, "a");
    }

    #[test]
    fn bad_file_value_names_key_and_line() {
        let text = "timeout = 5\n\nport-min = 500\n";
        let e = Config::resolve(&cli(&[]), Some((Path::new("f.toml"), text)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port-min (f.toml line 3)"), "{e}");
        assert!(e.contains("below 1024"), "{e}");
    }

    #[test]
    fn file_syntax_and_unknown_key_errors_give_line() {
        let e = Config::resolve(
            &cli(&[]),
            Some((Path::new("f.toml"), "timeout = 5\nbogus = 1\n")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2") && e.contains("bogus"), "{e}");
        let e = Config::resolve(&cli(&[]), Some((Path::new("f.toml"), "timeout = \"x\"\n")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = Config::resolve(&cli(&["--port-min", "40000", "--port-max", "30000"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--port-max"), "{e}");
        let e = Config::resolve(&cli(&["--workers", "0"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--workers"), "{e}");
        let e = Config::resolve(&cli(&["--ng-threads", "0"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--ng-threads"), "{e}");
        let c = Config::resolve(&cli(&["--ng-threads", "3"]), None).unwrap();
        assert_eq!(c.ng_threads, 3);
        let mut many = Vec::new();
        for i in 0..=MAX_INTERFACES {
            many.push("--interface".to_owned());
            many.push(format!("i{i}/127.0.0.{}", i % 200 + 1));
        }
        let mut many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = Config::resolve(&cli(&many), None).unwrap_err().to_string();
        assert!(
            e.starts_with("--interface") && e.contains("at most 256"),
            "{e}"
        );
        many.truncate(2 * MAX_INTERFACES);
        let c = Config::resolve(&cli(&many), None).unwrap();
        assert_eq!(c.interfaces.len(), MAX_INTERFACES);
        let e = Config::resolve(&cli(&["--listen-ng", "nowhere"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--listen-ng"), "{e}");
        let e = Config::resolve(&cli(&["--timeout", "0"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--timeout"), "{e}");
        assert!(Cli::try_parse_from(["ferrelay", "--io-backend", "bogus"]).is_err());
        let c = Config::resolve(
            &cli(&["--io-backend", "io_uring", "--listen-ng", "2224"]),
            None,
        )
        .unwrap();
        assert_eq!(c.io_backend, IoBackend::IoUring);
        assert_eq!(c.listen_ng.port(), 2224);
    }
}
