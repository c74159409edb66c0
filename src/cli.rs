//! The command line: gliderlabs/registrator's flags, in Go style (`-ip X`, `-ip=X`,
//! `-internal=false`) and GNU style (`--ip X`), options before the one registry URI.
//!
//! Go's flag package takes long names after a single dash; lexopt reads `-ip` as `-i -p`, so
//! arguments in option position are first rewritten to the double-dash form (the values of
//! flags that take one are left untouched, so `-retry-attempts -1` works).

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::service::split_tags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deregister {
    #[default]
    Always,
    OnSuccess,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub ip: Option<IpAddr>,
    pub internal: bool,
    pub explicit: bool,
    pub ip_label: Option<String>,
    pub tags: Vec<String>,
    /// `-resync` seconds; `None` when 0.
    pub resync: Option<Duration>,
    pub deregister: Deregister,
    /// `-ttl` and `-ttl-refresh` seconds; both set or neither.
    pub ttl: Option<(u64, u64)>,
    /// Backend pings at start: attempts after the first; `None` means forever (`-1`).
    pub retry_attempts: Option<u64>,
    pub retry_interval: Duration,
    pub cleanup: bool,
    /// `-require-healthy`: containers with a HEALTHCHECK are registered only while healthy.
    pub require_healthy: bool,
    /// `-deregister-on-shutdown`: remove every service this daemon registered before exiting.
    pub deregister_on_shutdown: bool,
    pub uri: String,
}

#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// A usage error: printed on one line, exit status 2.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Flags that take a value, by canonical name.
const VALUE_FLAGS: &[&str] = &[
    "ip",
    "useIpFromLabel",
    "tags",
    "resync",
    "deregister",
    "ttl",
    "ttl-refresh",
    "retry-attempts",
    "retry-interval",
];

/// Canonical flag name for an alias (GNU spellings of the camel-case one).
fn canonical(name: &str) -> &str {
    match name {
        "use-ip-from-label" | "useipfromlabel" => "useIpFromLabel",
        "ttl_refresh" => "ttl-refresh",
        "retry_attempts" => "retry-attempts",
        "retry_interval" => "retry-interval",
        "require_healthy" => "require-healthy",
        "deregister_on_shutdown" => "deregister-on-shutdown",
        n => n,
    }
}

pub const HELP: &str = "\
Usage: registrator [options] <registry URI>

Registers the published ports of running Docker containers as services in a registry
and deregisters them when the containers stop.

Registry URIs (each backend can be left out of a build; see README):
  consul://[host:port]     Consul agent (default 127.0.0.1:8500, or CONSUL_HTTP_ADDR);
                           consul-tls://, consul-unix:///path/consul.sock
  consulkv://[host:port]/prefix      Consul KV: <prefix>/<name>/<id> = ip:port
  etcd://[host:port]/prefix          etcd v3; etcd-legacy:// for the v2 keys API
  skydns2://[host:port]/domain       SkyDNS 2 records in etcd v2; coredns:// in etcd v3
  zookeeper://host:port[,host:port]/base   ephemeral nodes <base>/<name>/<ip:port>
  file:///path/file.json   Prometheus file_sd JSON file, rewritten atomically

Options (single or double dash; -flag=value or -flag value; -bool or -bool=false):
  -ip <addr>               IP registered for every service (default: the binding's host IP,
                           or this host's address for 0.0.0.0)
  -internal                register container IP and exposed port instead of host IP and
                           published port (default false)
  -explicit                register only ports with SERVICE_NAME or SERVICE_<port>_NAME
                           (default false)
  -useIpFromLabel <label>  take the IP from this container label, text after the last '/'
                           dropped (default none)
  -tags <list>             comma-separated tags added to every service; '\\,' escapes a comma
                           (default none)
  -resync <seconds>        re-register all running containers every N seconds (default 0: off)
  -deregister <mode>       always | on-success: keep services of containers that exited with
                           code 1..127 (default always)
  -ttl <seconds>           TTL of services in etcd, etcd-legacy, skydns2 and coredns (default
                           0: none)
  -ttl-refresh <seconds>   refresh the TTL every N seconds; must be below -ttl (default 0)
  -retry-attempts <n>      extra pings of the registry at start; -1 retries forever (default 0)
  -retry-interval <ms>     pause between those pings (default 2000)
  -cleanup                 at start and every sync, remove services with this host's default
                           IDs (<hostname>:<container>:<port>) whose container is not running
                           (default false)
  -require-healthy         register containers that have a HEALTHCHECK only while healthy;
                           deregister on unhealthy (default false)
  -deregister-on-shutdown  on SIGTERM/SIGINT remove every service this daemon registered
                           before exiting (default false: leave them, the containers still run)
  -h, -help                print this help
  -V, -version             print the version

Environment:
  DOCKER_HOST              unix:///path or tcp://host:port (default /tmp/docker.sock if it
                           exists, else /var/run/docker.sock)
  CONSUL_HTTP_ADDR         Consul address when the URI has none
  CONSUL_HTTP_TOKEN        Consul ACL token (sent as X-Consul-Token, never logged)
  RUST_LOG                 log filter, e.g. debug or registrator=debug (default info)
";

/// Rewrites Go-style `-flag` arguments in option position to `--flag`.
fn go_style(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" || !s.starts_with('-') || s == "-" {
            // End of options: the rest goes through untouched.
            out.push(arg);
            out.extend(it);
            break;
        }
        let long = if s.starts_with("--") {
            s.to_string()
        } else if s.len() > 2 {
            format!("-{s}")
        } else {
            // A one-letter flag such as -h or -V.
            out.push(arg);
            continue;
        };
        let takes_value = {
            let name = long[2..].split('=').next().unwrap_or("");
            !long.contains('=') && VALUE_FLAGS.contains(&canonical(name))
        };
        out.push(long.into());
        if takes_value {
            if let Some(v) = it.next() {
                out.push(v);
            }
        }
    }
    out
}

fn parse_bool(flag: &str, v: Option<OsString>) -> Result<bool, Usage> {
    let Some(v) = v else { return Ok(true) };
    match v.to_str().unwrap_or("") {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(Usage(format!(
            "invalid boolean value {other:?} for -{flag}: use true or false"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, Usage> {
    v.trim().parse().map_err(|_| {
        Usage(format!(
            "invalid value {v:?} for -{flag}: expected a whole number"
        ))
    })
}

fn non_negative(flag: &str, v: &str) -> Result<u64, Usage> {
    let n: i64 = parse_num(flag, v)?;
    u64::try_from(n).map_err(|_| {
        Usage(format!(
            "invalid value {v:?} for -{flag}: must not be negative"
        ))
    })
}

pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, Usage> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(go_style(args.into_iter().collect()));
    let mut ip = None;
    let mut internal = false;
    let mut explicit = false;
    let mut ip_label = None;
    let mut tags = Vec::new();
    let mut resync = 0;
    let mut deregister = Deregister::Always;
    let mut ttl = 0;
    let mut ttl_refresh = 0;
    let mut retry_attempts = Some(0);
    let mut retry_interval = 2000;
    let mut cleanup = false;
    let mut require_healthy = false;
    let mut deregister_on_shutdown = false;
    let mut positional: Vec<String> = Vec::new();

    let err = |e: lexopt::Error| Usage(e.to_string());
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long(name) => {
                let name = canonical(name).to_string();
                let flag = name.as_str();
                if VALUE_FLAGS.contains(&flag) {
                    let v = parser.value().map_err(err)?;
                    let v = v
                        .into_string()
                        .map_err(|_| Usage(format!("value of -{flag} is not valid UTF-8")))?;
                    match flag {
                        "ip" if v.is_empty() => ip = None,
                        "ip" => {
                            ip = Some(v.parse::<IpAddr>().map_err(|_| {
                                Usage(format!(
                                    "invalid value {v:?} for -ip: not an IPv4 or IPv6 address"
                                ))
                            })?)
                        }
                        "useIpFromLabel" => ip_label = Some(v).filter(|v| !v.is_empty()),
                        "tags" => tags = split_tags(&v),
                        "resync" => resync = non_negative(flag, &v)?,
                        "deregister" => {
                            deregister = match v.as_str() {
                                "always" => Deregister::Always,
                                "on-success" => Deregister::OnSuccess,
                                _ => {
                                    return Err(Usage(format!(
                                    "invalid value {v:?} for -deregister: use always or on-success"
                                )))
                                }
                            }
                        }
                        "ttl" => ttl = non_negative(flag, &v)?,
                        "ttl-refresh" => ttl_refresh = non_negative(flag, &v)?,
                        "retry-attempts" => {
                            let n: i64 = parse_num(flag, &v)?;
                            retry_attempts = match n {
                                -1 => None,
                                n if n >= 0 => Some(n as u64),
                                _ => {
                                    return Err(Usage(format!(
                                        "invalid value {v:?} for -retry-attempts: use -1 (forever) or a number >= 0"
                                    )))
                                }
                            }
                        }
                        "retry-interval" => {
                            retry_interval = non_negative(flag, &v)?;
                            if retry_interval == 0 {
                                return Err(Usage(
                                    "invalid value \"0\" for -retry-interval: must be > 0 milliseconds".into(),
                                ));
                            }
                        }
                        _ => unreachable!("every VALUE_FLAGS entry is matched"),
                    }
                } else {
                    let v = parser.optional_value();
                    match flag {
                        "internal" => internal = parse_bool(flag, v)?,
                        "explicit" => explicit = parse_bool(flag, v)?,
                        "cleanup" => cleanup = parse_bool(flag, v)?,
                        "require-healthy" => require_healthy = parse_bool(flag, v)?,
                        "deregister-on-shutdown" => deregister_on_shutdown = parse_bool(flag, v)?,
                        _ => return Err(Usage(format!("flag provided but not defined: -{flag}"))),
                    }
                }
            }
            Short(c) => return Err(Usage(format!("flag provided but not defined: -{c}"))),
            Value(v) => {
                positional.push(v.to_string_lossy().into_owned());
                // Go stops at the first non-flag: everything after it is positional too.
                positional.extend(
                    parser
                        .raw_args()
                        .map_err(err)?
                        .map(|a| a.to_string_lossy().into_owned()),
                );
            }
        }
    }

    let uri = match positional.len() {
        0 => return Err(Usage("Missing required argument for registry URI.".into())),
        1 => positional.remove(0),
        _ => {
            return Err(Usage(format!(
                "Extra unparsed arguments: {}; options must come before the registry URI",
                positional[1..].join(" ")
            )))
        }
    };

    let ttl = match (ttl, ttl_refresh) {
        (0, 0) => None,
        (0, _) | (_, 0) => {
            return Err(Usage(
                "-ttl and -ttl-refresh must be set together (both or neither)".into(),
            ))
        }
        (t, r) if t <= r => {
            return Err(Usage(format!(
                "-ttl ({t}) must be greater than -ttl-refresh ({r})"
            )))
        }
        (t, r) => Some((t, r)),
    };

    Ok(Command::Run(Box::new(Config {
        ip,
        internal,
        explicit,
        ip_label,
        tags,
        resync: (resync > 0).then(|| Duration::from_secs(resync)),
        deregister,
        ttl,
        retry_attempts,
        retry_interval: Duration::from_millis(retry_interval),
        cleanup,
        require_healthy,
        deregister_on_shutdown,
        uri,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn ok(s: &[&str]) -> Config {
        match parse(args(s)) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn usage(s: &[&str]) -> String {
        match parse(args(s)) {
            Err(Usage(m)) => m,
            other => panic!("{s:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn go_and_gnu_styles() {
        for form in [
            &["-ip", "1.2.3.4", "-internal", "consul://"][..],
            &["-ip=1.2.3.4", "-internal=true", "consul://"],
            &["--ip", "1.2.3.4", "--internal", "consul://"],
            &["--ip=1.2.3.4", "--internal=1", "consul://"],
        ] {
            let c = ok(form);
            assert_eq!(c.ip, Some("1.2.3.4".parse().unwrap()), "{form:?}");
            assert!(c.internal, "{form:?}");
            assert_eq!(c.uri, "consul://");
        }
        let c = ok(&[
            "-internal=false",
            "-explicit",
            "-cleanup",
            "-useIpFromLabel",
            "ip",
            "file:///x",
        ]);
        assert!(!c.internal && c.explicit && c.cleanup);
        assert_eq!(c.ip_label.as_deref(), Some("ip"));
        assert_eq!(
            ok(&["--use-ip-from-label=l", "x:"]).ip_label.as_deref(),
            Some("l")
        );
    }

    #[test]
    fn defaults() {
        let c = ok(&["consul:"]);
        assert_eq!(c.ip, None);
        assert!(!c.internal && !c.explicit && !c.cleanup);
        assert_eq!(c.resync, None);
        assert_eq!(c.deregister, Deregister::Always);
        assert_eq!(c.ttl, None);
        assert_eq!(c.retry_attempts, Some(0));
        assert_eq!(c.retry_interval, Duration::from_millis(2000));
        assert!(c.tags.is_empty());
    }

    #[test]
    fn values() {
        let c = ok(&[
            "-tags",
            "a,b\\,c",
            "-resync",
            "30",
            "-deregister",
            "on-success",
            "-ttl",
            "30",
            "-ttl-refresh",
            "10",
            "-retry-attempts",
            "-1",
            "-retry-interval",
            "500",
            "-ip",
            "::1",
            "etcd://",
        ]);
        assert_eq!(c.tags, ["a", "b,c"]);
        assert_eq!(c.resync, Some(Duration::from_secs(30)));
        assert_eq!(c.deregister, Deregister::OnSuccess);
        assert_eq!(c.ttl, Some((30, 10)));
        assert_eq!(c.retry_attempts, None);
        assert_eq!(c.retry_interval, Duration::from_millis(500));
        assert_eq!(c.ip, Some("::1".parse().unwrap()));
        assert_eq!(ok(&["-retry-attempts=3", "x:"]).retry_attempts, Some(3));
    }

    #[test]
    fn help_and_version() {
        for h in ["-h", "-help", "--help"] {
            assert!(matches!(parse(args(&[h])), Ok(Command::Help)), "{h}");
        }
        for v in ["-V", "-version", "--version"] {
            assert!(matches!(parse(args(&[v])), Ok(Command::Version)), "{v}");
        }
        for flag in VALUE_FLAGS {
            assert!(HELP.contains(&format!("-{flag} ")), "help lists -{flag}");
        }
        for flag in ["internal", "explicit", "cleanup"] {
            assert!(HELP.contains(&format!("-{flag}")), "help lists -{flag}");
        }
    }

    #[test]
    fn usage_errors() {
        assert_eq!(usage(&[]), "Missing required argument for registry URI.");
        let extra = usage(&["consul://", "-ip", "1.2.3.4"]);
        assert!(
            extra.contains("-ip 1.2.3.4") && extra.contains("before"),
            "{extra}"
        );
        assert!(usage(&["a:", "b:"]).contains("b:"));
        assert!(usage(&["-ip", "nope", "x:"]).contains("not an IPv4 or IPv6"));
        assert!(usage(&["-ip", "1.2.3.4/24", "x:"]).contains("-ip"));
        assert!(usage(&["-resync", "-5", "x:"]).contains("negative"));
        assert!(usage(&["-resync", "abc", "x:"]).contains("whole number"));
        assert!(usage(&["-deregister", "never", "x:"]).contains("on-success"));
        assert!(usage(&["-ttl", "10", "x:"]).contains("together"));
        assert!(usage(&["-ttl-refresh", "10", "x:"]).contains("together"));
        assert!(usage(&["-ttl", "10", "-ttl-refresh", "10", "x:"]).contains("greater"));
        assert!(usage(&["-retry-attempts", "-2", "x:"]).contains("-1"));
        assert!(usage(&["-retry-interval", "0", "x:"]).contains("> 0"));
        assert!(usage(&["-retry-interval", "-5", "x:"]).contains("negative"));
        assert!(usage(&["-internal=maybe", "x:"]).contains("boolean"));
        assert!(usage(&["-bogus", "x:"]).contains("not defined: -bogus"));
        assert!(usage(&["-x", "x:"]).contains("not defined: -x"));
        assert!(usage(&["-ip"]).contains("ip"), "missing value");
    }
}
