//! Configuration declared once.
//!
//! Each binary's configuration is a tree of sections owned by the modules that use them (the
//! aggregator's `[store]`, `[ingest.zmq]`, …; the agent's `[collect]`, `[window]`, …). A section
//! is a struct deriving [`Section`] (crate `fleetset-core-macros`): every field is one key,
//! declared once with its doc comment, type, default, unit, range and optional command-line flag.
//! From that one declaration come:
//!
//! - the layering ([`load`]): defaults, then the TOML file, then the environment
//!   (`FLEETSET_<SECTION>_<KEY>`, e.g. `FLEETSET_TELEMETRY_LISTEN`), then the binary's common
//!   flags, then `--set section.key=value`, each overriding the one before key by key;
//! - the checks: unknown keys, wrong types and out-of-range values are errors that name the key,
//!   the value and what is allowed ([`ConfigError`]);
//! - `print-config` ([`render_toml`]: the effective configuration as commented TOML with every
//!   default filled in) and the README's key tables ([`render_markdown`]), each key marked
//!   `live` (applied on reload) or `restart`;
//! - hot reload ([`reload`]): SIGHUP and `--watch-config` apply the live keys.

mod flags;
mod layer;
pub mod reload;
mod render;

pub use flags::{ConfigArgs, ConfigCommand};
pub use fleetset_core_macros::Section;
pub use layer::{load, Remote, Source, Sources};
pub use reload::{ReloadStatus, Reloaded, Reloader};
pub use render::{check_docs, render_limits, render_markdown, render_toml};

/// One declared key (or, with `section`, the header of a nested section).
#[derive(Debug, Clone)]
pub struct KeyDoc {
    /// Dotted path from the root, e.g. `ingest.zmq.bind`.
    pub path: String,
    /// The Rust type as written in the declaration, e.g. `Duration`, `Option<String>`.
    pub ty: &'static str,
    /// Unit shown in docs (`ms`, `bytes`, `duration` for humantime strings like `5s`), or empty.
    pub unit: &'static str,
    /// The doc comment, one line.
    pub doc: &'static str,
    /// The common command-line flag (`--<flag>`), if any.
    pub flag: Option<&'static str>,
    /// The value is never printed.
    pub secret: bool,
    /// A table of free string keys (`labels.site = "eu-1"`), set with `k=v` on the command line.
    pub map: bool,
    /// A changed value takes effect on a reload (SIGHUP, `--watch-config`) without a restart.
    pub live: bool,
    /// This entry is a section header, not a key.
    pub section: bool,
    /// A limit on what input may cost: the counter that counts when it bites (`"-"`: none).
    pub limit: Option<&'static str>,
    /// Checks that a TOML value has the key's type (`Err`: what serde expected).
    pub check: Option<fn(toml::Value) -> Result<(), String>>,
}

impl KeyDoc {
    /// A section header entry at `path` with `doc`.
    pub fn section(path: String, doc: &'static str) -> KeyDoc {
        KeyDoc {
            path,
            ty: "",
            unit: "",
            doc,
            flag: None,
            secret: false,
            map: false,
            live: false,
            section: true,
            limit: None,
            check: None,
        }
    }

    /// The environment variable that sets this key: `FLEETSET_` + the path in upper case with
    /// `.` as `_` (`telemetry.listen` → `FLEETSET_TELEMETRY_LISTEN`).
    pub fn env_var(&self) -> String {
        format!("FLEETSET_{}", self.path.to_uppercase().replace('.', "_"))
    }
}

/// A configuration section (or the root of a binary's configuration); implemented by
/// `#[derive(Section)]`.
pub trait Section: serde::Serialize + serde::de::DeserializeOwned + Default {
    /// The section's doc comment.
    const DOC: &'static str;
    /// Appends every key of this section and its subsections, paths prefixed by `prefix`
    /// (empty, or ending in `.`), in declaration order.
    fn describe(prefix: &str, out: &mut Vec<KeyDoc>);
    /// Checks the declared `min`/`max` ranges of every key.
    fn check_ranges(&self, prefix: &str) -> Result<(), ConfigError>;
    /// Every key of this section tree, from the root.
    fn keys() -> Vec<KeyDoc> {
        let mut out = Vec::new();
        Self::describe("", &mut out);
        out
    }
}

/// Why a configuration cannot be used; every variant names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that no section declares.
    #[error("unknown key `{key}` ({origin}); {hint}")]
    Unknown {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: Source,
        /// The keys of that section, or the sections.
        hint: String,
    },
    /// A value of the wrong type.
    #[error("bad value for `{key}` ({origin}): {value}: {why}")]
    Type {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: Source,
        /// The value as given (`***` for secrets).
        value: String,
        /// What the key takes.
        why: String,
    },
    /// A value outside what the key allows (ranges and relations between keys).
    #[error("invalid `{key}` = {value}: allowed: {allowed}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// The value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key` with `value` shown and `allowed` stated.
    pub fn invalid(key: &str, value: impl std::fmt::Display, allowed: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

#[cfg(test)]
mod tests;
