//! Consul through the local agent's HTTP API (spec 6.1): `PUT /v1/agent/service/register`,
//! `PUT /v1/agent/service/deregister/<id>`, `GET /v1/agent/services`, ping on
//! `GET /v1/status/leader`. Checks come from `check_*` attributes; other attributes go to `Meta`
//! when Consul would accept them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::http::{CallError, Client};
use super::{Backend, Error, Health, OpenError, Uri};
use crate::docker::container::id12;
use crate::percent;
use crate::service::Service;

pub struct Consul {
    http: Client,
}

impl Consul {
    /// `consul://host:port`, `consul-tls://host:port` (feature `tls`), `consul-unix:///path`.
    pub fn from_uri(u: &Uri) -> Result<Consul, OpenError> {
        let target = if u.scheme == "consul-unix" {
            super::consul_target(u, Some(&u.path))?
        } else {
            if !u.path.is_empty() && u.path != "/" {
                return Err(OpenError::Usage(format!(
                    "{}: unexpected path {:?} in the registry URI ({}://host:port)",
                    u.scheme, u.path, u.scheme
                )));
            }
            super::consul_target(u, None)?
        };
        let http = Client::new(&target)
            .map_err(|e| OpenError::Setup(format!("{}: {e}", u.scheme)))?
            .with_header("X-Consul-Token", super::consul_token());
        Ok(Consul { http })
    }

    fn get(&self, path: &str) -> Result<String, CallError> {
        self.http.get(path)
    }

    fn put(&self, path: &str, json: Option<&[u8]>) -> Result<String, CallError> {
        self.http.put(path, json.map(|b| ("application/json", b)))
    }
}

impl Backend for Consul {
    fn ping(&mut self) -> Result<(), Error> {
        super::consul_leader(&self.http)
            .map_err(|e| Error(format!("consul: ping {}: {e}", self.http.shown())))
    }

    fn register(&mut self, s: &Service) -> Result<(), Error> {
        let body = registration(s);
        let json = serde_json::to_vec(&body.reg).expect("a registration serializes");
        for w in &body.warnings {
            log::warn!("consul: {}: {w}", s.id);
        }
        self.put("/v1/agent/service/register", Some(&json))
            .map(drop)
            .map_err(|e| Error(format!("consul: register {}: {e}", s.id)))
    }

    fn deregister(&mut self, s: &Service) -> Result<(), Error> {
        let path = format!("/v1/agent/service/deregister/{}", percent::encode(&s.id));
        match self.put(&path, None) {
            Ok(_) => Ok(()),
            // Already gone (the agent restarted, someone removed it): nothing to do. Agents
            // before 1.9 say so with a 500 and these words, later ones with a 404.
            Err(CallError::Status(404, _)) => Ok(()),
            Err(CallError::Status(_, text)) if text.contains("Unknown service") => Ok(()),
            Err(e) => Err(Error(format!("consul: deregister {}: {e}", s.id))),
        }
    }

    /// The agent API keeps nothing between calls: a lane is the same client on a connection
    /// of its own (ureq's pool gives each call in flight its own kept-alive connection).
    fn lane(&self) -> Option<Box<dyn Backend>> {
        Some(Box::new(Consul {
            http: self.http.clone(),
        }))
    }

    fn has_checks(&self) -> bool {
        true
    }

    fn check(&mut self, s: &Service, health: Health) -> Result<(), Error> {
        let (status, output) = match health {
            Health::Healthy => ("passing", "Docker HEALTHCHECK: healthy"),
            Health::Unhealthy => ("critical", "Docker HEALTHCHECK: unhealthy"),
            Health::Starting => ("critical", "Docker HEALTHCHECK: starting"),
        };
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Update<'a> {
            status: &'a str,
            output: &'a str,
        }
        let body =
            serde_json::to_vec(&Update { status, output }).expect("a check update serializes");
        let path = format!(
            "/v1/agent/check/update/{}",
            percent::encode(&format!("service:{}", s.id))
        );
        self.put(&path, Some(&body))
            .map(drop)
            .map_err(|e| Error(format!("consul: check of {}: {e}", s.id)))
    }

    fn list(&mut self) -> Result<Vec<Service>, Error> {
        let text = self
            .get("/v1/agent/services")
            .map_err(|e| Error(format!("consul: list services: {e}")))?;
        let map: BTreeMap<String, Listed> = serde_json::from_str(&text)
            .map_err(|e| Error(format!("consul: list services: invalid JSON: {e}")))?;
        Ok(map
            .into_iter()
            .map(|(id, l)| Service {
                id,
                name: l.service,
                ip: l.address,
                port: l.port,
                tags: l.tags.unwrap_or_default(),
                attrs: l.meta.unwrap_or_default(),
                ..Service::default()
            })
            .collect())
    }
}

/// One entry of `/v1/agent/services`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    service: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    tags: Option<Vec<String>>,
    meta: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// `SERVICE_ENABLE_TAG_OVERRIDE` (fayrus): Consul's anti-entropy leaves catalog-side tag
    /// edits alone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enable_tag_override: bool,
}

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "Option::is_none")]
    pub grpc_use_tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A registration body and what was dropped from it, for warnings.
pub struct Built {
    pub reg: Registration,
    pub warnings: Vec<String>,
}

const MAX_META_PAIRS: usize = 64;
const MAX_META_KEY: usize = 128;
const MAX_META_VALUE: usize = 512;

/// The registration body for a service: pure, so it is table-tested.
pub fn registration(s: &Service) -> Built {
    let mut warnings = Vec::new();
    let mut meta = BTreeMap::new();
    for (k, v) in &s.attrs {
        if k.starts_with("check_") || k == "enable_tag_override" {
            continue;
        }
        let reason = if k.len() > MAX_META_KEY {
            Some("key longer than 128 characters")
        } else if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Some("key has characters other than A-Z a-z 0-9 _ -")
        } else if k.starts_with("consul-") {
            Some("key starts with \"consul-\" (reserved)")
        } else if v.len() > MAX_META_VALUE {
            Some("value longer than 512 characters")
        } else if meta.len() >= MAX_META_PAIRS {
            Some("more than 64 pairs")
        } else {
            None
        };
        match reason {
            Some(r) => warnings.push(format!("Meta {k:?} dropped: {r}")),
            None => {
                meta.insert(k.clone(), v.clone());
            }
        }
    }
    let check = check(s, &mut warnings);
    let enable_tag_override = flag(s, "enable_tag_override", &mut warnings) == Some(true);
    Built {
        reg: Registration {
            id: s.id.clone(),
            name: s.name.clone(),
            tags: s.tags.clone(),
            address: s.ip.clone(),
            port: s.port,
            meta,
            check,
            enable_tag_override,
        },
        warnings,
    }
}

/// `true/false/1/0/yes/no`; anything else is false with a warning.
fn flag(s: &Service, key: &str, warnings: &mut Vec<String>) -> Option<bool> {
    let v = s.attrs.get(key)?;
    Some(crate::service::boolean(v).unwrap_or_else(|| {
        warnings.push(format!("{key}={v:?} is not a boolean; taken as false"));
        false
    }))
}

/// TTL of the check that mirrors a container's Docker health (`SERVICE_CHECK_DOCKER`): the
/// daemon reports it on every health change and every `bridge::CHECK_REPORT_EVERY` (20 s), so
/// the check goes critical a minute after the daemon stops reporting.
pub const DOCKER_CHECK_TTL: &str = "60s";

fn check(s: &Service, warnings: &mut Vec<String>) -> Option<Check> {
    let attr = |k: &str| s.attrs.get(k).filter(|v| !v.is_empty()).cloned();
    let addr = s.address();
    let mut c = Check::default();
    if flag(s, "check_docker", warnings) == Some(true) {
        // Reported by the daemon from the container's health events; critical until then.
        c.ttl = Some(DOCKER_CHECK_TTL.into());
        c.notes = Some("Docker HEALTHCHECK status, reported by registrator".into());
        c.deregister_critical_service_after = attr("check_deregister_after");
        return Some(c);
    }
    if let Some(path) = attr("check_http") {
        c.http = Some(format!("http://{addr}{path}"));
        c.method = attr("check_http_method");
        c.timeout = attr("check_timeout");
    } else if let Some(path) = attr("check_https") {
        c.http = Some(format!("https://{addr}{path}"));
        c.method = attr("check_https_method");
        c.tls_skip_verify = flag(s, "check_tls_skip_verify", warnings);
        c.timeout = attr("check_timeout");
    } else if let Some(cmd) = attr("check_cmd") {
        c.args = Some(vec![
            "check-cmd".into(),
            id12(&s.container_id).to_string(),
            s.exposed_port.to_string(),
            cmd,
        ]);
        c.timeout = attr("check_timeout");
    } else if let Some(line) = attr("check_script") {
        let line = line
            .replace("$SERVICE_IP", &s.ip)
            .replace("$SERVICE_PORT", &s.port.to_string());
        match split_shell(&line) {
            Ok(args) if !args.is_empty() => c.args = Some(args),
            Ok(_) => {
                warnings.push("check_script is empty; no check".into());
                return None;
            }
            Err(e) => {
                warnings.push(format!("check_script {line:?}: {e}; no check"));
                return None;
            }
        }
        c.timeout = attr("check_timeout");
    } else if let Some(ttl) = attr("check_ttl") {
        c.ttl = Some(ttl);
    } else if attr("check_tcp").is_some() {
        c.tcp = Some(addr);
        c.timeout = attr("check_timeout");
    } else if attr("check_grpc").is_some() {
        c.grpc = Some(addr);
        c.grpc_use_tls = flag(s, "check_grpc_use_tls", warnings);
        // Only a check that speaks TLS has a certificate to skip verifying.
        if c.grpc_use_tls == Some(true) {
            c.tls_skip_verify = flag(s, "check_tls_skip_verify", warnings);
        }
        c.timeout = attr("check_timeout");
    } else {
        return None;
    }
    if c.ttl.is_none() {
        c.interval = Some(attr("check_interval").unwrap_or_else(|| "10s".into()));
    }
    c.status = attr("check_initial_status");
    c.deregister_critical_service_after = attr("check_deregister_after");
    Some(c)
}

/// Splits a command line like a POSIX shell would split words: whitespace separates, single
/// quotes keep everything, double quotes keep all but `\"` and `\\`, a backslash escapes the
/// next character. No expansion of anything.
pub fn split_shell(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unclosed double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(attrs: &[(&str, &str)]) -> Service {
        Service {
            id: "h:web:80".into(),
            name: "web".into(),
            ip: "127.0.0.1".into(),
            port: 8080,
            tags: vec![],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            container_id: "0123456789abcdef".into(),
            container_name: "web".into(),
            exposed_port: 80,
            proto: "tcp".into(),
        }
    }

    fn body(attrs: &[(&str, &str)]) -> serde_json::Value {
        serde_json::to_value(registration(&svc(attrs)).reg).unwrap()
    }

    #[test]
    fn plain_registration_omits_empty_fields() {
        assert_eq!(
            body(&[]),
            json!({"ID": "h:web:80", "Name": "web", "Address": "127.0.0.1", "Port": 8080})
        );
        let mut s = svc(&[("region", "us2")]);
        s.tags = vec!["a".into()];
        assert_eq!(
            serde_json::to_value(registration(&s).reg).unwrap(),
            json!({"ID": "h:web:80", "Name": "web", "Tags": ["a"], "Address": "127.0.0.1",
                   "Port": 8080, "Meta": {"region": "us2"}})
        );
    }

    #[test]
    fn checks_in_order_of_precedence() {
        let c = |a: &[(&str, &str)]| body(a)["Check"].clone();
        assert_eq!(
            c(&[
                ("check_http", "/health"),
                ("check_tcp", "1"),
                ("check_timeout", "2s"),
                ("check_http_method", "HEAD")
            ]),
            json!({"HTTP": "http://127.0.0.1:8080/health", "Method": "HEAD", "Interval": "10s", "Timeout": "2s"})
        );
        assert_eq!(
            c(&[
                ("check_https", "/h"),
                ("check_tls_skip_verify", "yes"),
                ("check_interval", "3s")
            ]),
            json!({"HTTP": "https://127.0.0.1:8080/h", "TLSSkipVerify": true, "Interval": "3s"})
        );
        assert_eq!(
            c(&[("check_https", "/h"), ("check_tls_skip_verify", "false")]),
            json!({"HTTP": "https://127.0.0.1:8080/h", "TLSSkipVerify": false, "Interval": "10s"})
        );
        assert_eq!(
            c(&[("check_cmd", "/bin/health")]),
            json!({"Args": ["check-cmd", "0123456789ab", "80", "/bin/health"], "Interval": "10s"})
        );
        assert_eq!(
            c(&[("check_script", "nc -z '$SERVICE_IP' $SERVICE_PORT \"a b\"")]),
            json!({"Args": ["nc", "-z", "127.0.0.1", "8080", "a b"], "Interval": "10s"})
        );
        assert_eq!(
            c(&[
                ("check_ttl", "30s"),
                ("check_interval", "5s"),
                ("check_initial_status", "passing")
            ]),
            json!({"TTL": "30s", "Status": "passing"})
        );
        assert_eq!(
            c(&[("check_tcp", "true"), ("check_deregister_after", "1m")]),
            json!({"TCP": "127.0.0.1:8080", "Interval": "10s", "DeregisterCriticalServiceAfter": "1m"})
        );
        assert_eq!(
            c(&[("check_grpc", "1"), ("check_grpc_use_tls", "1")]),
            json!({"GRPC": "127.0.0.1:8080", "GRPCUseTLS": true, "Interval": "10s"})
        );
        assert_eq!(c(&[("check_script", "'unclosed")]), serde_json::Value::Null);
        assert_eq!(
            c(&[("check_http", "")]),
            serde_json::Value::Null,
            "empty means no check"
        );
    }

    /// Decisions F1: a `SERVICE_*` boolean, sent as `EnableTagOverride`, never in Meta.
    #[test]
    fn enable_tag_override_is_a_boolean_and_not_meta() {
        for v in ["true", "TRUE", "1", "yes"] {
            let b = body(&[("enable_tag_override", v), ("region", "eu")]);
            assert_eq!(b["EnableTagOverride"], json!(true), "{v}");
            assert_eq!(b["Meta"], json!({"region": "eu"}), "{v}");
        }
        for v in ["false", "0", "no", ""] {
            assert!(
                body(&[("enable_tag_override", v)])
                    .get("EnableTagOverride")
                    .is_none(),
                "{v}"
            );
        }
        assert!(body(&[]).get("EnableTagOverride").is_none());
        let built = registration(&svc(&[("enable_tag_override", "maybe")]));
        assert!(!built.reg.enable_tag_override);
        assert_eq!(built.warnings.len(), 1);
    }

    /// Decisions F5: a timeout on every check but TTL; skipping TLS verification only where
    /// the check speaks TLS (HTTPS, gRPC with TLS).
    #[test]
    fn check_timeout_and_tls_skip_verify_where_they_apply() {
        let c = |attrs: &[(&str, &str)]| body(attrs)["Check"].clone();
        for kind in [
            ("check_http", "/"),
            ("check_https", "/"),
            ("check_tcp", "1"),
            ("check_grpc", "1"),
            ("check_cmd", "/x"),
        ] {
            assert_eq!(
                c(&[kind, ("check_timeout", "3s")])["Timeout"],
                json!("3s"),
                "{kind:?}"
            );
        }
        assert!(c(&[("check_ttl", "30s"), ("check_timeout", "3s")])
            .get("Timeout")
            .is_none());
        assert!(c(&[("check_grpc", "1"), ("check_tls_skip_verify", "true")])
            .get("TLSSkipVerify")
            .is_none());
        let grpc_tls = c(&[
            ("check_grpc", "1"),
            ("check_grpc_use_tls", "true"),
            ("check_tls_skip_verify", "true"),
        ]);
        assert_eq!(
            (
                grpc_tls["GRPCUseTLS"].clone(),
                grpc_tls["TLSSkipVerify"].clone()
            ),
            (json!(true), json!(true))
        );
        assert_eq!(
            c(&[("check_https", "/"), ("check_tls_skip_verify", "false")])["TLSSkipVerify"],
            json!(false)
        );
        assert!(c(&[("check_tcp", "1"), ("check_tls_skip_verify", "true")])
            .get("TLSSkipVerify")
            .is_none());
    }

    #[test]
    fn ipv6_check_urls_are_bracketed() {
        let mut s = svc(&[("check_http", "/")]);
        s.ip = "fd00::1".into();
        let b = serde_json::to_value(registration(&s).reg).unwrap();
        assert_eq!(b["Check"]["HTTP"], "http://[fd00::1]:8080/");
    }

    #[test]
    fn meta_consul_would_reject_is_dropped_with_a_warning() {
        let long_key = "k".repeat(129);
        let long_val = "v".repeat(513);
        let mut attrs = vec![
            ("a-ok_key1", "v"),
            ("bad.key", "v"),
            ("consul-x", "v"),
            (long_key.as_str(), "v"),
            ("long", long_val.as_str()),
            ("check_http", "/"),
        ];
        let many: Vec<String> = (0..70).map(|i| format!("m{i:02}")).collect();
        attrs.extend(many.iter().map(|k| (k.as_str(), "x")));
        let built = registration(&svc(&attrs));
        assert_eq!(built.reg.meta.len(), 64);
        assert!(built.reg.meta.contains_key("a-ok_key1"));
        assert!(!built.reg.meta.contains_key("check_http"));
        assert_eq!(built.warnings.len(), 4 + 7, "{:?}", built.warnings);
    }

    #[test]
    fn shell_splitting() {
        assert_eq!(split_shell("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_shell(r#"sh -c 'exit 0' "x\"y" z\ w"#).unwrap(),
            ["sh", "-c", "exit 0", "x\"y", "z w"]
        );
        assert_eq!(split_shell("''").unwrap(), [""]);
        assert!(split_shell("\"open").is_err());
        assert!(split_shell("end\\").is_err());
    }

    #[test]
    fn uris() {
        let u =
            |s: &str| Consul::from_uri(&Uri::parse(s).unwrap()).map(|c| c.http.shown().to_string());
        assert_eq!(u("consul://10.0.0.1:8501").unwrap(), "http://10.0.0.1:8501");
        assert_eq!(
            u("consul-unix:///run/consul.sock").unwrap(),
            "unix:///run/consul.sock"
        );
        assert!(u("consul://host:notaport").is_err());
        assert!(u("consul://host:0").is_err());
        assert!(u("consul://host/path").is_err());
        assert!(u("consul-unix://").is_err());
        assert!(u("consul-unix://host/x.sock").is_err());
    }
}
