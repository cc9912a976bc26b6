//! The declaration rendered for people: `print-config` TOML and the README's key tables.

use super::{KeyDoc, Section};
use std::fmt::Write as _;
use toml::{Table, Value};

/// The value at a dotted `path` of `table`.
pub(super) fn lookup<'a>(table: &'a Table, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    parts.try_fold(table.get(first)?, |v, p| v.as_table()?.get(p))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(p, _)| p)
}

fn name(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, n)| n)
}

/// `config` as commented TOML: every key of the declaration in order, with its doc and unit,
/// its effective value (defaults filled in), unset optional keys and secrets as comments.
/// Feeding the output back to `load` gives the same configuration (secrets aside).
pub fn render_toml<C: Section>(config: &C, title: &str) -> String {
    let table = Table::try_from(config).unwrap_or_default();
    let keys = C::keys();
    let mut out = String::new();
    for line in title.lines() {
        let _ = writeln!(out, "# {line}");
    }
    for k in &keys {
        if k.section {
            if keys.iter().any(|l| !l.section && parent(&l.path) == k.path) {
                let _ = write!(out, "\n# {}\n[{}]\n", k.doc, k.path);
            }
            continue;
        }
        let unit = if k.unit.is_empty() {
            String::new()
        } else {
            format!(" Unit: {}.", k.unit)
        };
        let _ = writeln!(out, "\n# {}{unit}", k.doc);
        let key = name(&k.path);
        match lookup(&table, &k.path) {
            Some(_) if k.secret => {
                let _ = writeln!(out, "# {key} = \"…\"   (set; not shown)");
            }
            Some(v) => {
                let _ = writeln!(out, "{key} = {v}");
            }
            None => {
                let _ = writeln!(out, "# {key} =   (unset)");
            }
        }
    }
    out
}

/// The declaration as a Markdown table (`| key | default | unit | flag | meaning |`), defaults
/// from `C::default()`.
pub fn render_markdown<C: Section>() -> String {
    let table = Table::try_from(C::default()).unwrap_or_default();
    let mut out =
        String::from("| key | default | unit | flag | meaning |\n|---|---|---|---|---|\n");
    for k in C::keys().iter().filter(|k: &&KeyDoc| !k.section) {
        let default = match lookup(&table, &k.path) {
            Some(_) if k.secret => "—".to_string(),
            Some(Value::Table(t)) if t.is_empty() => "—".to_string(),
            Some(v) => format!("`{v}`"),
            None => "—".to_string(),
        };
        let flag = k.flag.map_or(String::new(), |f| format!("`--{f}`"));
        let _ = writeln!(
            out,
            "| `{}` | {default} | {} | {flag} | {} |",
            k.path,
            k.unit,
            k.doc.replace('|', "\\|")
        );
    }
    out
}
