//! Consul KV (spec 6.2): `<prefix>/<name>/<id>` = `<ip>:<port>` through `PUT` and `DELETE` on
//! `/v1/kv/<key>`, listed with `GET /v1/kv/<prefix>?recurse`. `consulkv://host:port/prefix` or
//! `consulkv-unix:///path/to/consul.sock:/prefix`; the prefix is required.

use super::http::{encode_path, CallError, Client};
use super::kv::{Kv, Layout, Store};
use super::{OpenError, Uri};

pub fn open(u: &Uri) -> Result<Kv<ConsulKv>, OpenError> {
    let example = "consulkv://host:port/prefix or consulkv-unix:///path/to/consul.sock:/prefix";
    let (target, prefix) = if u.scheme == "consulkv-unix" {
        let (sock, prefix) = u.path.split_once(':').unwrap_or((&u.path, ""));
        (super::consul_target(u, Some(sock))?, prefix)
    } else {
        (super::consul_target(u, None)?, u.path.as_str())
    };
    if prefix.trim_matches('/').is_empty() {
        return Err(OpenError::Usage(format!(
            "{}: no key prefix in the registry URI ({example})",
            u.scheme
        )));
    }
    let http = Client::new(&target)
        .map_err(|e| OpenError::Setup(format!("{}: {e}", u.scheme)))?
        .with_header("X-Consul-Token", super::consul_token());
    let name = format!("consulkv {}", http.shown());
    Ok(Kv::new(ConsulKv { http, name }, Layout::path(prefix)))
}

pub struct ConsulKv {
    http: Client,
    name: String,
}

/// `/v1/kv/<key>`: Consul keys have no leading slash.
fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_path(key.trim_start_matches('/')))
}

impl Store for ConsulKv {
    fn name(&self) -> &str {
        &self.name
    }

    fn ping(&mut self) -> Result<(), String> {
        super::consul_leader(&self.http)
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let ok = self
            .http
            .put(&kv_path(key), Some(("text/plain", value.as_bytes())))
            .map_err(|e| e.to_string())?;
        match ok.trim() {
            "true" => Ok(()),
            other => Err(format!("Consul answered {other:?}")),
        }
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.http
            .delete(&kv_path(key))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            key: String,
            value: Option<String>,
        }
        let text = match self.http.get(&format!("{}?recurse", kv_path(prefix))) {
            Ok(t) => t,
            // Nothing under the prefix.
            Err(CallError::Status(404, _)) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let entries: Vec<Entry> =
            serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let value = e
                    .value
                    .and_then(|v| super::base64::decode(&v))
                    .and_then(|v| String::from_utf8(v).ok())
                    .unwrap_or_default();
                (format!("/{}", e.key), value)
            })
            .collect())
    }
}
