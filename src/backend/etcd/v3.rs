//! The etcd v3 JSON gateway (etcd 3.4 and later): `POST /v3/kv/put|range|deleterange` with
//! base64 keys and values and int64s as JSON strings. `-ttl` is one lease for every key, granted
//! on first use and kept alive by each refresh; a lease etcd no longer has (it was down longer
//! than the TTL, or lost its data) is granted again and every key put again.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::backend::base64;
use crate::backend::http::{CallError, Client};
use crate::backend::kv::Store;

pub struct V3 {
    http: Client,
    name: String,
    ttl: Option<u64>,
    /// The lease every key is put with, once granted (decimal, as the gateway writes it).
    lease: Option<String>,
    /// Keys were put under a lease other than the one the others have: re-put all on refresh.
    regranted: bool,
}

/// The gateway's answers: int64s are strings, zero values are left out.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct Lease {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "TTL")]
    ttl: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeepAlive {
    result: Lease,
}

#[derive(Deserialize)]
struct Kv {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Range {
    kvs: Vec<Kv>,
}

/// The end of the range of every key that starts with `prefix`: its last byte plus one.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

fn lease_lost(e: &CallError) -> bool {
    matches!(e, CallError::Status(_, text) if text.contains("requested lease not found"))
}

impl V3 {
    pub fn new(http: Client, scheme: &str, ttl: Option<u64>) -> V3 {
        V3 {
            name: format!("{scheme} {}", http.shown()),
            http,
            ttl,
            lease: None,
            regranted: false,
        }
    }

    fn call(&self, path: &str, body: &Req) -> Result<String, CallError> {
        let body = serde_json::to_vec(body).expect("a request body serializes");
        self.http.post(path, Some(("application/json", &body)))
    }

    fn grant(&mut self, ttl: u64) -> Result<String, String> {
        let text = self
            .call(
                "/v3/lease/grant",
                &Req {
                    ttl: ttl.to_string(),
                    ..Req::default()
                },
            )
            .map_err(|e| format!("lease grant: {e}"))?;
        let l: Lease =
            serde_json::from_str(&text).map_err(|e| format!("lease grant: invalid JSON: {e}"))?;
        if l.id.is_empty() {
            return Err(format!("lease grant: no lease ID in {text:?}"));
        }
        log::debug!("{}: lease {} granted for {ttl}s", self.name, l.id);
        self.lease = Some(l.id.clone());
        Ok(l.id)
    }

    /// The lease to put keys with: none without `-ttl`, else the current one or a new one.
    fn lease(&mut self) -> Result<Option<String>, String> {
        match (self.ttl, &self.lease) {
            (None, _) => Ok(None),
            (Some(_), Some(l)) => Ok(Some(l.clone())),
            (Some(ttl), None) => self.grant(ttl).map(Some),
        }
    }

    fn put_with(&self, key: &str, value: &str, lease: Option<&str>) -> Result<(), CallError> {
        let body = Req {
            key: base64::encode(key.as_bytes()),
            value: base64::encode(value.as_bytes()),
            lease: lease.unwrap_or_default().to_string(),
            ..Req::default()
        };
        self.call("/v3/kv/put", &body).map(drop)
    }

    /// Is the lease still there? `Ok(false)` when etcd no longer knows it.
    fn keep_alive(&self, lease: &str) -> Result<bool, String> {
        let text = self
            .call(
                "/v3/lease/keepalive",
                &Req {
                    id: lease.to_string(),
                    ..Req::default()
                },
            )
            .map_err(|e| format!("lease keepalive: {e}"))?;
        // The gateway streams one JSON object per line; one request gets one answer.
        let first = text.lines().next().unwrap_or("");
        let k: KeepAlive = serde_json::from_str(first)
            .map_err(|e| format!("lease keepalive: invalid JSON {first:?}: {e}"))?;
        Ok(!matches!(k.result.ttl.as_str(), "" | "0"))
    }
}

/// Every request body sent: the gateway takes int64 values as JSON strings, and a field left
/// out as empty. (A typed body, not `serde_json::Value`: a smaller binary.)
#[derive(serde::Serialize, Default)]
struct Req {
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
    ttl: String,
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    lease: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    range_end: String,
}

impl Store for V3 {
    fn name(&self) -> &str {
        &self.name
    }

    fn ping(&mut self) -> Result<(), String> {
        self.call("/v3/maintenance/status", &Req::default())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let lease = self.lease()?;
        match self.put_with(key, value, lease.as_deref()) {
            Err(e) if lease.is_some() && lease_lost(&e) => {
                // The lease expired since the last refresh: a new one for this key now, and
                // every other key follows at the next refresh.
                let ttl = self.ttl.unwrap_or(1);
                let l = self.grant(ttl)?;
                self.regranted = true;
                self.put_with(key, value, Some(&l))
                    .map_err(|e| e.to_string())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.call(
            "/v3/kv/deleterange",
            &Req {
                key: base64::encode(key.as_bytes()),
                ..Req::default()
            },
        )
        .map(drop)
        .map_err(|e| e.to_string())
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let text = self
            .call(
                "/v3/kv/range",
                &Req {
                    key: base64::encode(prefix.as_bytes()),
                    range_end: base64::encode(&range_end(prefix.as_bytes())),
                    ..Req::default()
                },
            )
            .map_err(|e| e.to_string())?;
        let r: Range = serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
        let text = |b64: &str| {
            base64::decode(b64)
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default()
        };
        Ok(r.kvs
            .iter()
            .map(|kv| (text(&kv.key), text(&kv.value)))
            .collect())
    }

    fn refresh(&mut self, all: &BTreeMap<String, String>) -> Result<(), String> {
        let Some(ttl) = self.ttl else { return Ok(()) };
        let alive = match self.lease.clone() {
            Some(l) => self.keep_alive(&l)?,
            None => false,
        };
        if alive && !self.regranted {
            return Ok(());
        }
        if all.is_empty() {
            // Nothing to keep: a lease is granted again with the next key.
            self.lease = None;
            self.regranted = false;
            return Ok(());
        }
        let lease = if alive {
            self.lease.clone().unwrap_or_default()
        } else {
            let l = self.grant(ttl)?;
            // Until every key is on the new lease, the next refresh puts them all again.
            self.regranted = true;
            l
        };
        for (key, value) in all {
            self.put_with(key, value, Some(&lease))
                .map_err(|e| format!("put back {key}: {e}"))?;
        }
        self.regranted = false;
        log::info!(
            "{}: lease {lease} now holds every key; put back {}",
            self.name,
            all.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_ends() {
        assert_eq!(range_end(b"/services/"), b"/services0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff\xff"), [0]);
        assert_eq!(range_end(b""), [0]);
    }

    #[test]
    fn gateway_answers() {
        let l: Lease = serde_json::from_str(
            r#"{"header":{"cluster_id":"1","revision":"5"},"ID":"7587869463934418436","TTL":"3"}"#,
        )
        .unwrap();
        assert_eq!(
            (l.id.as_str(), l.ttl.as_str()),
            ("7587869463934418436", "3")
        );
        let gone: KeepAlive = serde_json::from_str(r#"{"result":{"header":{},"ID":"1"}}"#).unwrap();
        assert_eq!(gone.result.ttl, "");
        let r: Range = serde_json::from_str(r#"{"header":{},"count":"0"}"#).unwrap();
        assert!(r.kvs.is_empty());
        let r: Range =
            serde_json::from_str(r#"{"kvs":[{"key":"L2EvYg==","value":"MTo=","version":"1"}]}"#)
                .unwrap();
        assert_eq!(r.kvs[0].key, "L2EvYg==");
    }
}
