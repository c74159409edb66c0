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

use std::sync::Arc;

use crate::service::split_tags;
use crate::template::Template;

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
    /// `-tags` when it is a template.
    pub tags_template: Option<Arc<Template>>,
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
    /// `-ip-from-container`: the container's own address, with the published port.
    pub ip_from_container: bool,
    /// `-deregister-on-stop`: deregister at the `kill` of a stop, before the process exits.
    pub deregister_on_stop: bool,
    /// `-swarm`: managers register swarm services' ingress ports; task containers are named
    /// after their service.
    pub swarm: bool,
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

/// The flags, in one table: the names each is known by (Go's spelling first, then the GNU
/// spellings), and what it does to the parsed values. A flag with a value gets it as text; a
/// boolean is written bare or as `-flag=true|false`.
const FLAGS: &[Flag] = &[
    Flag {
        names: &["ip"],
        set: Set::Value(|p, v| {
            p.ip = match v {
                "" => None,
                v => Some(v.parse().map_err(|_| {
                    Usage(format!(
                        "invalid value {v:?} for -ip: not an IPv4 or IPv6 address"
                    ))
                })?),
            };
            Ok(())
        }),
    },
    Flag {
        names: &["internal"],
        set: Set::Bool(|p| &mut p.internal),
    },
    Flag {
        names: &["explicit"],
        set: Set::Bool(|p| &mut p.explicit),
    },
    Flag {
        names: &["useIpFromLabel", "use-ip-from-label", "useipfromlabel"],
        set: Set::Value(|p, v| {
            p.ip_label = Some(v.to_string()).filter(|v| !v.is_empty());
            Ok(())
        }),
    },
    Flag {
        names: &["tags"],
        set: Set::Value(|p, v| {
            // A template is checked now, before anything is connected (Decisions T4).
            p.tags_template = None;
            p.tags = Vec::new();
            if Template::is_template(v) {
                let t = Template::parse(v).map_err(|e| Usage(format!("invalid -tags: {e}")))?;
                p.tags_template = Some(Arc::new(t));
            } else {
                p.tags = split_tags(v);
            }
            Ok(())
        }),
    },
    Flag {
        names: &["resync"],
        set: Set::Value(|p, v| {
            p.resync = non_negative("resync", v)?;
            Ok(())
        }),
    },
    Flag {
        names: &["deregister"],
        set: Set::Value(|p, v| {
            p.deregister = match v {
                "always" => Deregister::Always,
                "on-success" => Deregister::OnSuccess,
                _ => {
                    return Err(Usage(format!(
                        "invalid value {v:?} for -deregister: use always or on-success"
                    )))
                }
            };
            Ok(())
        }),
    },
    Flag {
        names: &["ttl"],
        set: Set::Value(|p, v| {
            p.ttl = non_negative("ttl", v)?;
            Ok(())
        }),
    },
    Flag {
        names: &["ttl-refresh", "ttl_refresh"],
        set: Set::Value(|p, v| {
            p.ttl_refresh = non_negative("ttl-refresh", v)?;
            Ok(())
        }),
    },
    Flag {
        names: &["retry-attempts", "retry_attempts"],
        set: Set::Value(|p, v| {
            p.retry_attempts = match parse_num::<i64>("retry-attempts", v)? {
                -1 => None,
                n if n >= 0 => Some(n as u64),
                _ => {
                    return Err(Usage(format!(
                        "invalid value {v:?} for -retry-attempts: use -1 (forever) or a number >= 0"
                    )))
                }
            };
            Ok(())
        }),
    },
    Flag {
        names: &["retry-interval", "retry_interval"],
        set: Set::Value(|p, v| {
            p.retry_interval = match non_negative("retry-interval", v)? {
                0 => {
                    return Err(Usage(
                        "invalid value \"0\" for -retry-interval: must be > 0 milliseconds".into(),
                    ))
                }
                ms => ms,
            };
            Ok(())
        }),
    },
    Flag {
        names: &["cleanup"],
        set: Set::Bool(|p| &mut p.cleanup),
    },
    Flag {
        names: &["require-healthy", "require_healthy"],
        set: Set::Bool(|p| &mut p.require_healthy),
    },
    Flag {
        names: &["deregister-on-shutdown", "deregister_on_shutdown"],
        set: Set::Bool(|p| &mut p.deregister_on_shutdown),
    },
    Flag {
        names: &["ip-from-container", "ip_from_container"],
        set: Set::Bool(|p| &mut p.ip_from_container),
    },
    Flag {
        names: &["deregister-on-stop", "deregister_on_stop"],
        set: Set::Bool(|p| &mut p.deregister_on_stop),
    },
    Flag {
        names: &["swarm"],
        set: Set::Bool(|p| &mut p.swarm),
    },
];

struct Flag {
    names: &'static [&'static str],
    set: Set,
}

enum Set {
    /// Takes a value: `-flag value` or `-flag=value`.
    Value(fn(&mut Parsed, &str) -> Result<(), Usage>),
    /// A boolean: the field it sets.
    Bool(fn(&mut Parsed) -> &mut bool),
}

impl Flag {
    fn named(name: &str) -> Option<&'static Flag> {
        FLAGS.iter().find(|f| f.names.contains(&name))
    }
    fn takes_value(&self) -> bool {
        matches!(self.set, Set::Value(_))
    }
}

/// The flags' values as given, before the checks between them.
struct Parsed {
    ip: Option<IpAddr>,
    internal: bool,
    explicit: bool,
    ip_label: Option<String>,
    tags: Vec<String>,
    tags_template: Option<Arc<Template>>,
    resync: u64,
    deregister: Deregister,
    ttl: u64,
    ttl_refresh: u64,
    retry_attempts: Option<u64>,
    retry_interval: u64,
    cleanup: bool,
    require_healthy: bool,
    deregister_on_shutdown: bool,
    ip_from_container: bool,
    deregister_on_stop: bool,
    swarm: bool,
}

impl Default for Parsed {
    /// The defaults `-help` gives.
    fn default() -> Parsed {
        Parsed {
            ip: None,
            internal: false,
            explicit: false,
            ip_label: None,
            tags: Vec::new(),
            tags_template: None,
            resync: 0,
            deregister: Deregister::Always,
            ttl: 0,
            ttl_refresh: 0,
            retry_attempts: Some(0),
            retry_interval: 2000,
            cleanup: false,
            require_healthy: false,
            deregister_on_shutdown: false,
            ip_from_container: false,
            deregister_on_stop: false,
            swarm: false,
        }
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
  -ip-from-container       register the container's own IP with the published port; -ip and
                           the binding's IP give way, -useIpFromLabel still wins (default false)
  -explicit                register only ports with SERVICE_NAME or SERVICE_<port>_NAME
                           (default false)
  -useIpFromLabel <label>  take the IP from this container label, text after the last '/'
                           dropped (default none)
  -tags <list>             comma-separated tags added to every service; '\\,' escapes a comma;
                           with '{{' a Go template over the container's inspect, e.g.
                           'host-{{.Config.Hostname}},{{.Config.Labels.env}}' (default none)
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
  -deregister-on-stop      deregister at the stop signal's kill event, before the container
                           exits, so traffic drains during its grace period; other signals
                           (HUP, USR1) change nothing (default false)
  -deregister-on-shutdown  on SIGTERM/SIGINT remove every service this daemon registered
                           before exiting (default false: leave them, the containers still run)
  -swarm                   Docker Swarm: on a manager, register each port a swarm service
                           publishes in ingress mode at this node's address (-ip, else its
                           swarm address), with the service's SERVICE_* labels; on every node,
                           name task containers after their service (default false)
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
        let takes_value =
            !long.contains('=') && Flag::named(&long[2..]).is_some_and(Flag::takes_value);
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
    let mut p = Parsed::default();
    let mut positional: Vec<String> = Vec::new();

    let err = |e: lexopt::Error| Usage(e.to_string());
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long(name) => {
                let Some(flag) = Flag::named(name) else {
                    return Err(Usage(format!("flag provided but not defined: -{name}")));
                };
                let shown = flag.names[0];
                match flag.set {
                    Set::Value(set) => {
                        let v = parser.value().map_err(err)?;
                        let v = v
                            .into_string()
                            .map_err(|_| Usage(format!("value of -{shown} is not valid UTF-8")))?;
                        set(&mut p, &v)?;
                    }
                    Set::Bool(field) => {
                        *field(&mut p) = parse_bool(shown, parser.optional_value())?;
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

    let ttl = match (p.ttl, p.ttl_refresh) {
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
        ip: p.ip,
        internal: p.internal,
        explicit: p.explicit,
        ip_label: p.ip_label,
        tags: p.tags,
        tags_template: p.tags_template,
        resync: (p.resync > 0).then(|| Duration::from_secs(p.resync)),
        deregister: p.deregister,
        ttl,
        retry_attempts: p.retry_attempts,
        retry_interval: Duration::from_millis(p.retry_interval),
        cleanup: p.cleanup,
        require_healthy: p.require_healthy,
        deregister_on_shutdown: p.deregister_on_shutdown,
        ip_from_container: p.ip_from_container,
        swarm: p.swarm,
        deregister_on_stop: p.deregister_on_stop,
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
        assert!(!c.internal && c.explicit && c.cleanup && !c.swarm);
        assert_eq!(c.ip_label.as_deref(), Some("ip"));
        for form in ["-swarm", "--swarm", "-swarm=true"] {
            assert!(ok(&[form, "consul:"]).swarm, "{form}");
        }
        assert!(!ok(&["-swarm=false", "consul:"]).swarm);
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
        for flag in FLAGS {
            let name = flag.names[0];
            let shown = if flag.takes_value() {
                format!("-{name} <")
            } else {
                format!("-{name} ")
            };
            assert!(HELP.contains(&shown), "help lists -{name}");
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
