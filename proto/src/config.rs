//! Layered configuration shared by both binaries: built-in defaults, then a TOML file, then
//! command-line flags, each layer overriding the one before key by key.
//!
//! A binary's flags struct derives `Serialize` with every flag an `Option` skipped when `None`;
//! [`layer`] serializes it to a TOML table, overlays it on the file's table and deserializes the
//! result into the binary's config struct (whose `#[serde(default)]` supplies the defaults). The
//! TOML keys are the flag names with `-` replaced by `_`.

use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Why a configuration could not be built.
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
    /// The config file or a flag has a bad key or value.
    #[error("config{}: {message}", path.as_deref().map(|p| format!(" file {p}")).unwrap_or_default())]
    Invalid {
        /// The file, when the error is in it.
        path: Option<String>,
        /// What toml/serde said, naming the key.
        message: String,
    },
}

/// Builds a `C` from the optional TOML file at `file` overlaid with `flags`.
///
/// Errors name the file and the offending key; unknown keys are errors when `C` denies them
/// (`#[serde(deny_unknown_fields)]`).
pub fn layer<C: DeserializeOwned, F: Serialize>(
    file: Option<&Path>,
    flags: &F,
) -> Result<C, ConfigError> {
    let path_str = file.map(|p| p.display().to_string());
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Invalid {
                path: path_str.clone(),
                message: e.to_string(),
            })?
        }
        None => toml::Table::new(),
    };
    let overrides = toml::Table::try_from(flags).map_err(|e| ConfigError::Invalid {
        path: None,
        message: e.to_string(),
    })?;
    table.extend(overrides);
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            path: path_str,
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(default, deny_unknown_fields)]
    struct Conf {
        window: String,
        threshold: u32,
    }
    impl Default for Conf {
        fn default() -> Self {
            Conf {
                window: "5m".into(),
                threshold: 60,
            }
        }
    }
    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        threshold: Option<u32>,
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("fleetset-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "window = \"10s\"\nthreshold = 30\n").unwrap();
        let c: Conf = layer(
            Some(&f),
            &Flags {
                threshold: Some(90),
            },
        )
        .unwrap();
        assert_eq!((c.window.as_str(), c.threshold), ("10s", 90));
        let c: Conf = layer(None, &Flags { threshold: None }).unwrap();
        assert_eq!((c.window.as_str(), c.threshold), ("5m", 60));
        std::fs::write(&f, "windw = \"10s\"\n").unwrap();
        let e = layer::<Conf, _>(Some(&f), &Flags { threshold: None })
            .unwrap_err()
            .to_string();
        assert!(e.contains("windw") && e.contains("c.toml"), "{e}");
    }
}
