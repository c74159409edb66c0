//! The fuzz targets' view of the main crate: its pure modules, through its library target.
//! `harness` holds what the fuzz targets share.

pub use registrator::{docker, service, template};

pub mod harness;
