//! The plain etcd of tests/services.sh (`ETCD_ADDR`) read through its v3 JSON gateway, for the
//! suites that check what the etcd backends wrote (`tests/registries.rs`, `tests/migration.rs`).

use std::collections::BTreeMap;

use registrator::backend::base64;
use serde_json::{json, Value};

/// POSTs `body` to `path` on the plain etcd and returns its JSON answer.
pub fn etcd_post(path: &str, body: &Value) -> Value {
    let url = format!("http://{}{path}", crate::common::required("ETCD_ADDR"));
    let text = ureq::post(&url)
        .send(body.to_string().as_bytes())
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A range request (`/v3/kv/range`, `/v3/kv/deleterange`) over every key under `prefix`.
pub fn etcd_range(path: &str, prefix: &str) -> Value {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let body = json!({"key": base64::encode(prefix.as_bytes()), "range_end": base64::encode(&end)});
    etcd_post(path, &body)
}

/// Every key under `prefix`: key -> (value, lease; empty without one).
pub fn etcd3(prefix: &str) -> BTreeMap<String, (String, String)> {
    let v = etcd_range("/v3/kv/range", prefix);
    let text =
        |v: &Value| String::from_utf8(base64::decode(v.as_str().unwrap_or("")).unwrap()).unwrap();
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    let lease = kv["lease"].as_str().unwrap_or("").to_string();
                    (text(&kv["key"]), (text(&kv["value"]), lease))
                })
                .collect()
        })
        .unwrap_or_default()
}
