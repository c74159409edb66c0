//! The current set of services as one Prometheus `file_sd` JSON file (spec 6.7), rewritten
//! atomically (temp file, fsync, rename, fsync of the directory) when the set changed.
//!
//! Each service is `{"targets":["ip:port"],"labels":{...}}` with labels `service`,
//! `service_id`, `tags` (`,a,b,` as Prometheus' Consul discovery writes them), `container`,
//! `container_id`, and `meta_<attribute>` for every attribute, its name sanitized to
//! `[a-zA-Z_][a-zA-Z0-9_]*`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Backend, Error, Uri};
use crate::service::Service;

pub struct File {
    path: PathBuf,
    /// Service ID -> entry, sorted so the file is stable.
    services: BTreeMap<String, Entry>,
    dirty: bool,
}

#[derive(Serialize, Clone, PartialEq, Debug)]
pub struct Entry {
    targets: [String; 1],
    labels: BTreeMap<String, String>,
}

impl File {
    pub fn from_uri(u: &Uri) -> Result<File, String> {
        // file:///abs/path (authority empty) or file://relative/path.
        let path = format!("{}{}", u.authority, u.path);
        if path.is_empty() || path.ends_with('/') {
            return Err(format!(
                "file: no file name in the registry URI (file:///path/services.json): {path:?}"
            ));
        }
        Ok(File::new(PathBuf::from(path)))
    }

    pub fn new(path: PathBuf) -> File {
        File {
            path,
            services: BTreeMap::new(),
            // Written after the first sync even if empty: the file shows the truth from then on.
            dirty: true,
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let entries: Vec<&Entry> = self.services.values().collect();
        let mut json = serde_json::to_vec_pretty(&entries).map_err(std::io::Error::other)?;
        json.push(b'\n');
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The `file_sd` entry of a service.
pub fn entry(s: &Service) -> Entry {
    let mut labels = BTreeMap::new();
    labels.insert("service".to_string(), s.name.clone());
    labels.insert("service_id".to_string(), s.id.clone());
    labels.insert("tags".to_string(), format!(",{},", s.tags.join(",")));
    labels.insert("container".to_string(), s.container_name.clone());
    labels.insert("container_id".to_string(), s.container_id.clone());
    for (k, v) in &s.attrs {
        labels.insert(format!("meta_{}", label_name(k)), v.clone());
    }
    Entry {
        targets: [s.address()],
        labels,
    }
}

/// A Prometheus label name: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn label_name(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Backend for File {
    fn ping(&mut self) -> Result<(), Error> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        match dir {
            Some(d) if !Path::new(d).is_dir() => Err(Error(format!(
                "file: directory {} does not exist",
                d.display()
            ))),
            _ => Ok(()),
        }
    }

    fn register(&mut self, s: &Service) -> Result<(), Error> {
        let e = entry(s);
        if self.services.get(&s.id) != Some(&e) {
            self.services.insert(s.id.clone(), e);
            self.dirty = true;
        }
        Ok(())
    }

    fn deregister(&mut self, s: &Service) -> Result<(), Error> {
        if self.services.remove(&s.id).is_some() {
            self.dirty = true;
        }
        Ok(())
    }

    /// What this run wrote (the file is rewritten from it, so nothing older survives).
    fn list(&mut self) -> Result<Vec<Service>, Error> {
        Ok(self
            .services
            .iter()
            .map(|(id, e)| Service {
                id: id.clone(),
                name: e.labels.get("service").cloned().unwrap_or_default(),
                ..Service::default()
            })
            .collect())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        self.write()
            .map_err(|e| Error(format!("file: write {}: {e}", self.path.display())))?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(id: &str, attrs: &[(&str, &str)]) -> Service {
        Service {
            id: id.into(),
            name: "web".into(),
            ip: "127.0.0.1".into(),
            port: 8080,
            tags: vec!["a".into(), "b".into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            container_id: "0123456789abcdef".into(),
            container_name: "web.1".into(),
            exposed_port: 80,
            proto: "tcp".into(),
        }
    }

    #[test]
    fn entries_and_atomic_rewrite() {
        let dir = std::env::temp_dir().join(format!("rgtr-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("services.json");
        let mut f = File::new(path.clone());
        f.ping().unwrap();
        f.flush().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[]\n",
            "an empty set is written too"
        );
        f.register(&svc(
            "h:web.1:80",
            &[("region", "us2"), ("weird key-1", "x")],
        ))
        .unwrap();
        f.register(&svc("h:web.0:80", &[])).unwrap();
        f.flush().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["labels"]["service_id"], "h:web.0:80", "sorted by ID");
        assert_eq!(v[1]["targets"], serde_json::json!(["127.0.0.1:8080"]));
        assert_eq!(v[1]["labels"]["tags"], ",a,b,");
        assert_eq!(v[1]["labels"]["meta_region"], "us2");
        assert_eq!(v[1]["labels"]["meta_weird_key_1"], "x");
        for entry in v.as_array().unwrap() {
            for name in entry["labels"].as_object().unwrap().keys() {
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{name}"
                );
            }
        }
        // No change, no write: the file's inode stays the same.
        use std::os::unix::fs::MetadataExt;
        let ino = fs::metadata(&path).unwrap().ino();
        f.register(&svc("h:web.0:80", &[])).unwrap();
        f.flush().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
        f.deregister(&svc("h:web.0:80", &[])).unwrap();
        f.flush().unwrap();
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            ino,
            "rewritten by rename"
        );
        assert!(!dir.join(".services.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uris() {
        let f = |s: &str| File::from_uri(&Uri::parse(s).unwrap()).map(|f| f.path);
        assert_eq!(
            f("file:///tmp/x.json").unwrap(),
            PathBuf::from("/tmp/x.json")
        );
        assert_eq!(f("file://rel/x.json").unwrap(), PathBuf::from("rel/x.json"));
        assert!(f("file://").is_err());
        assert!(f("file:///tmp/").is_err());
        let mut missing = File::new(PathBuf::from("/nonexistent-dir/x.json"));
        assert!(missing
            .ping()
            .unwrap_err()
            .to_string()
            .contains("/nonexistent-dir"));
    }
}
