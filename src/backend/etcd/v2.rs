//! The etcd v2 keys API: `PUT /v2/keys/<key>` with the form `value=...[&ttl=N]`, `DELETE`, and
//! `GET ?recursive=true`. A refresh re-arms each key's TTL without a change event
//! (`refresh=true&prevExist=true`) and puts back any key etcd no longer has.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::backend::http::{encode_path, CallError, Client};
use crate::backend::kv::Store;
use crate::percent;

pub struct V2 {
    http: Client,
    name: String,
    ttl: Option<u64>,
}

impl V2 {
    pub fn new(http: Client, scheme: &str, ttl: Option<u64>) -> V2 {
        V2 {
            name: format!("{scheme} {}", http.shown()),
            http,
            ttl,
        }
    }

    fn set(&self, key: &str, form: &str) -> Result<String, CallError> {
        self.http.put(
            &keys_path(key),
            Some(("application/x-www-form-urlencoded", form.as_bytes())),
        )
    }

    fn ttl_param(&self) -> String {
        self.ttl.map(|t| format!("&ttl={t}")).unwrap_or_default()
    }
}

fn keys_path(key: &str) -> String {
    format!("/v2/keys/{}", encode_path(key.trim_start_matches('/')))
}

/// etcd's "Key not found" (errorCode 100) comes as a 404.
fn not_found(e: &CallError) -> bool {
    matches!(e, CallError::Status(404, text) if text.contains("\"errorCode\":100"))
}

#[derive(Deserialize)]
struct Node {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    dir: bool,
    #[serde(default)]
    nodes: Vec<Node>,
}

fn walk(node: Node, out: &mut Vec<(String, String)>) {
    if node.dir {
        for n in node.nodes {
            walk(n, out);
        }
    } else if let Some(v) = node.value {
        out.push((node.key, v));
    }
}

impl Store for V2 {
    fn name(&self) -> &str {
        &self.name
    }

    fn ping(&mut self) -> Result<(), String> {
        match self.http.get("/v2/keys/") {
            Ok(_) => Ok(()),
            Err(CallError::Status(404, text)) if !text.contains("errorCode") => {
                Err("the v2 API is off (etcd 3.4 needs --enable-v2)".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let form = format!("value={}{}", percent::encode(value), self.ttl_param());
        self.set(key, &form).map(drop).map_err(|e| e.to_string())
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        match self.http.delete(&keys_path(key)) {
            Err(e) if !not_found(&e) => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        #[derive(Deserialize)]
        struct Answer {
            node: Node,
        }
        let text = match self
            .http
            .get(&format!("{}?recursive=true", keys_path(prefix)))
        {
            Ok(t) => t,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let a: Answer = serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
        let mut out = Vec::new();
        walk(a.node, &mut out);
        Ok(out)
    }

    fn refresh(&mut self, all: &BTreeMap<String, String>) -> Result<(), String> {
        let Some(ttl) = self.ttl else { return Ok(()) };
        let mut first_error = None;
        let mut restored = 0;
        for (key, value) in all {
            let rearm = format!("ttl={ttl}&refresh=true&prevExist=true");
            let result = match self.set(key, &rearm) {
                Err(e) if not_found(&e) => {
                    restored += 1;
                    self.put(key, value)
                }
                r => r.map(drop).map_err(|e| e.to_string()),
            };
            if let Err(e) = result {
                first_error.get_or_insert(format!("{key}: {e}"));
            }
        }
        if restored > 0 {
            log::info!("{}: put back {restored} keys etcd had lost", self.name);
        }
        first_error.map_or(Ok(()), Err)
    }
}
