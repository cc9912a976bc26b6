//! Layering: defaults < TOML file < remote configuration (the control plane's, live keys only)
//! < environment < common flags < `--set`, key by key, with every value checked against its
//! declaration before it is used.

use super::{ConfigError, KeyDoc, Section};
use std::fmt;
use std::path::PathBuf;
use toml::{Table, Value};

/// Where a value came from (named in errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The TOML file at this path.
    File(String),
    /// This environment variable.
    Env(String),
    /// This command-line flag (`--name`).
    Flag(&'static str),
    /// `--set`.
    Set,
    /// The control plane's remote configuration (named, e.g. `generation 4`).
    Remote(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "in {p}"),
            Source::Env(v) => write!(f, "from environment variable {v}"),
            Source::Flag(n) => write!(f, "from --{n}"),
            Source::Set => write!(f, "from --set"),
            Source::Remote(n) => write!(f, "in the remote configuration ({n})"),
        }
    }
}

/// What to layer over the defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file (`--config`).
    pub file: Option<PathBuf>,
    /// Read `FLEETSET_<SECTION>_<KEY>` variables.
    pub env: bool,
    /// Command-line values in order: `(dotted key, value as text, where from)`.
    pub overrides: Vec<(String, String, Source)>,
    /// The control plane's remote configuration, layered over the file: only keys declared
    /// `live` may appear in it (where the binary sends its data, its credentials and every
    /// other restart key stay the local file's).
    pub remote: Option<Remote>,
}

/// A remote configuration: TOML text and what to call it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The TOML body (a fragment: only the keys it changes).
    pub toml: String,
    /// Its name in errors, e.g. `generation 4`.
    pub name: String,
}

/// Builds a `C` from its defaults and `sources`, then checks the declared ranges.
///
/// Errors: an unreadable or non-TOML file; a key no section declares ([`ConfigError::Unknown`]);
/// a value of the wrong type ([`ConfigError::Type`]); a value out of range
/// ([`ConfigError::Invalid`]). Each names the key, the value (never a secret's) and where it
/// was set.
pub fn load<C: Section>(sources: &Sources) -> Result<C, ConfigError> {
    let keys = C::keys();
    let mut table = Table::new();
    if let Some(path) = &sources.file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: shown.clone(),
            message: syntax_message(&text, &e),
        })?;
        absorb(&keys, &mut table, file, "", &Source::File(shown))?;
    }
    if let Some(remote) = &sources.remote {
        let source = Source::Remote(remote.name.clone());
        let body: Table = toml::from_str(&remote.toml).map_err(|e| ConfigError::Syntax {
            path: format!("remote configuration ({})", remote.name),
            message: syntax_message(&remote.toml, &e),
        })?;
        only_live(&keys, &body, "", &source)?;
        absorb(&keys, &mut table, body, "", &source)?;
    }
    if sources.env {
        for k in keys.iter().filter(|k| !k.section) {
            let var = k.env_var();
            if let Ok(raw) = std::env::var(&var) {
                set_text(&keys, &mut table, &k.path, &raw, &Source::Env(var))?;
            }
        }
    }
    for (key, raw, source) in &sources.overrides {
        set_text(&keys, &mut table, key, raw, source)?;
    }
    let config: C = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Type {
            key: "(configuration)".into(),
            origin: Source::Set,
            value: String::new(),
            why: e.message().to_string(),
        })?;
    config.check_ranges("")?;
    Ok(config)
}

fn find<'a>(keys: &'a [KeyDoc], path: &str) -> Option<&'a KeyDoc> {
    keys.iter().find(|k| k.path == path)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The known keys next to an unknown `path`, for its error.
fn hint(keys: &[KeyDoc], path: &str) -> String {
    let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
    let siblings: Vec<&str> = keys
        .iter()
        .filter(|k| k.path.rsplit_once('.').map_or("", |(p, _)| p) == parent)
        .map(|k| k.path.rsplit_once('.').map_or(k.path.as_str(), |(_, n)| n))
        .collect();
    if parent.is_empty() || find(keys, parent).is_some() {
        let at = if parent.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in [{parent}]")
        };
        format!("known {at}: {}", siblings.join(", "))
    } else {
        hint(keys, parent)
    }
}

/// Places `value` at the dotted `path` in `root`, merging tables.
fn insert(root: &mut Table, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut t = root;
    for p in parts {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else {
            unreachable!("just made a table")
        };
        t = next;
    }
    match (t.get_mut(last), value) {
        (Some(Value::Table(old)), Value::Table(new)) => old.extend(new),
        (_, value) => {
            t.insert(last.to_string(), value);
        }
    }
}

/// Line, column and the parser's message, without the source line that the parser's own
/// `Display` quotes (it may hold a secret value).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().trim().to_string();
    };
    let before = text.get(..span.start).unwrap_or("");
    let line = before.matches('\n').count().saturating_add(1);
    let column = before
        .len()
        .saturating_sub(before.rfind('\n').map_or(0, |i| i.saturating_add(1)))
        .saturating_add(1);
    format!("line {line}, column {column}: {}", e.message().trim())
}

fn shown(k: &KeyDoc, v: &Value) -> String {
    if k.secret {
        "***".into()
    } else {
        v.to_string()
    }
}

fn check(k: &KeyDoc, v: &Value, source: &Source) -> Result<(), ConfigError> {
    match k.check {
        Some(check) => check(v.clone()).map_err(|why| ConfigError::Type {
            key: k.path.clone(),
            origin: source.clone(),
            value: shown(k, v),
            // serde's message quotes the value: never for a secret.
            why: if k.secret {
                format!("expected {}", k.ty)
            } else {
                why
            },
        }),
        None => Ok(()),
    }
}

/// Refuses a remote configuration (sub)table `src` at `prefix` that sets a key not declared
/// `live` (a restart key: destination, credentials, listeners, paths).
fn only_live(
    keys: &[KeyDoc],
    src: &Table,
    prefix: &str,
    source: &Source,
) -> Result<(), ConfigError> {
    for (name, value) in src {
        let path = join(prefix, name);
        match (find(keys, &path), value) {
            (Some(k), Value::Table(t)) if k.section => only_live(keys, t, &path, source)?,
            (Some(k), v) if !k.live && !k.section => {
                return Err(ConfigError::Type {
                    key: path.clone(),
                    origin: source.clone(),
                    value: shown(k, v),
                    why: "not changeable remotely: only keys that reload live (print-config: \"Reload: live\") may be set by the control plane".into(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Takes every key of a file's (sub)table `src` at `prefix` into `root`, checking each.
fn absorb(
    keys: &[KeyDoc],
    root: &mut Table,
    src: Table,
    prefix: &str,
    source: &Source,
) -> Result<(), ConfigError> {
    for (name, value) in src {
        let path = join(prefix, &name);
        let Some(k) = find(keys, &path) else {
            return Err(ConfigError::Unknown {
                hint: hint(keys, &path),
                key: path,
                origin: source.clone(),
            });
        };
        if k.section {
            match value {
                Value::Table(t) => absorb(keys, root, t, &path, source)?,
                other => {
                    return Err(ConfigError::Type {
                        key: path.clone(),
                        origin: source.clone(),
                        value: other.to_string(),
                        why: format!("[{path}] is a section: give it as a table"),
                    })
                }
            }
        } else {
            check(k, &value, source)?;
            insert(root, &path, value);
        }
    }
    Ok(())
}

/// The typed value of text given for `k` on the command line or in the environment: the text
/// as a TOML value if that has the key's type (`5`, `true`, `["a"]`), else as a string
/// (`5s`, `tcp://host:5555`).
fn typed(k: &KeyDoc, raw: &str, source: &Source) -> Result<Value, ConfigError> {
    let parsed = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    if let Some(v) = &parsed {
        if check(k, v, source).is_ok() {
            return Ok(v.clone());
        }
    }
    let text = Value::String(raw.to_string());
    if check(k, &text, source).is_ok() {
        return Ok(text);
    }
    // Report the error of the reading that looked like the intended type.
    match parsed {
        Some(v) if !v.is_str() => check(k, &v, source).map(|()| v),
        _ => check(k, &text, source).map(|()| text),
    }
}

/// Sets the key `path` from text: a plain key, a map key (`k=v[,k=v]`, merged), or one entry of
/// a map (`labels.site` = `eu-1`).
fn set_text(
    keys: &[KeyDoc],
    root: &mut Table,
    path: &str,
    raw: &str,
    source: &Source,
) -> Result<(), ConfigError> {
    let unknown = || ConfigError::Unknown {
        key: path.to_string(),
        origin: source.clone(),
        hint: hint(keys, path),
    };
    match find(keys, path) {
        Some(k) if k.section => Err(ConfigError::Type {
            key: path.to_string(),
            origin: source.clone(),
            value: raw.to_string(),
            why: "this is a section; set one of its keys".into(),
        }),
        Some(k) if k.map => {
            let mut t = Table::new();
            for entry in raw.split(',').filter(|e| !e.trim().is_empty()) {
                let (ek, ev) =
                    crate::names::parse_label(entry.trim()).map_err(|why| ConfigError::Type {
                        key: path.to_string(),
                        origin: source.clone(),
                        value: raw.to_string(),
                        why,
                    })?;
                t.insert(ek, Value::String(ev));
            }
            insert(root, path, Value::Table(t));
            Ok(())
        }
        Some(k) => {
            let v = typed(k, raw, source)?;
            insert(root, path, v);
            Ok(())
        }
        None => match path.rsplit_once('.') {
            Some((parent, entry)) if find(keys, parent).is_some_and(|k| k.map) => {
                let mut t = Table::new();
                t.insert(entry.to_string(), Value::String(raw.to_string()));
                insert(root, parent, Value::Table(t));
                Ok(())
            }
            _ => Err(unknown()),
        },
    }
}
