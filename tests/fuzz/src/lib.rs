//! The main crate's pure modules, compiled from their own files (the main crate has no library
//! target). The module tree mirrors `src/` so their `crate::`/`super::` paths resolve; their
//! `#[cfg(test)]` modules are not built here. `harness` holds what the fuzz targets share.
#![allow(dead_code, unused_imports)]

// `#[path]` inside an inline module is relative to that module's directory, `src/docker/` of
// this crate by default. That directory does not exist (and rustc does not normalize `..`), so
// the inline module names the main crate's `src/docker/` as its directory instead.
#[path = "../../../src/docker"]
pub mod docker {
    #[path = "container.rs"]
    pub mod container;
    #[path = "events.rs"]
    pub mod events;
    #[path = "http.rs"]
    pub mod http;
}

#[path = "../../../src/service.rs"]
pub mod service;

pub mod harness;
