//! The tag templates in a build without the `templates` feature (a single-backend board build
//! that must stay small): a value with `{{` is still recognised as a template, and each one is
//! an error that says so, so `-tags` is a usage error and a `SERVICE_*TAGS` template skips its
//! service with the reason, as a template that does not parse would.

use std::rc::Rc;

const NONE: &str = "this build has no templates (cargo feature templates)";

#[derive(Debug, Clone, PartialEq)]
pub struct Template;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError;

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NONE)
    }
}

/// `httpGet`'s way out, as with the feature.
pub type Fetch<'f> = &'f mut dyn FnMut(&str) -> Vec<u8>;

impl Template {
    pub fn parse(_: &str) -> Result<Template, ParseError> {
        Err(ParseError)
    }

    pub fn is_template(src: &str) -> bool {
        src.contains("{{")
    }

    pub fn render(&self, _: &[u8], _: Option<Fetch>, _: &mut String) -> Result<(), String> {
        Err(NONE.into())
    }
}

pub fn cached(_: &str) -> Rc<Result<Template, ParseError>> {
    Rc::new(Err(ParseError))
}
