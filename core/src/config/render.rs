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

/// Checks that the generated docs of `C` are what the repository holds: the Markdown table
/// between `<!-- config:NAME -->` and `<!-- /config:NAME -->` in `readme`, and the whole of
/// `example` (commented TOML of the defaults). With `FLEETSET_UPDATE_DOCS=1` it writes them
/// instead. For a unit test of each binary; `Err` says what drifted and how to regenerate.
pub fn check_docs<C: super::ConfigCommand>(
    name: &str,
    readme: &std::path::Path,
    example: &std::path::Path,
) -> Result<(), String> {
    let update = std::env::var_os("FLEETSET_UPDATE_DOCS").is_some_and(|v| v == "1");
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
    };
    let (open, close) = (
        format!("<!-- config:{name} -->\n"),
        format!("<!-- /config:{name} -->"),
    );
    let text = read(readme)?;
    let start = text
        .find(&open)
        .ok_or_else(|| format!("{} has no {open:?} marker", readme.display()))?
        + open.len();
    let end = text[start..]
        .find(&close)
        .ok_or_else(|| format!("{} has no {close:?} marker", readme.display()))?
        + start;
    let table = render_markdown::<C>();
    let toml_text = render_toml(&C::default(), C::TITLE);
    let mut drift = Vec::new();
    if text[start..end] != table {
        drift.push(readme.display().to_string());
        if update {
            let new = format!("{}{table}{}", &text[..start], &text[end..]);
            std::fs::write(readme, new).map_err(|e| e.to_string())?;
        }
    }
    if read(example).unwrap_or_default() != toml_text {
        drift.push(example.display().to_string());
        if update {
            std::fs::write(example, &toml_text).map_err(|e| e.to_string())?;
        }
    }
    match (drift.is_empty(), update) {
        (true, _) | (false, true) => Ok(()),
        (false, false) => Err(format!(
            "{} differ from the `{name}` configuration declaration; regenerate with \
             FLEETSET_UPDATE_DOCS=1 cargo test -p fleetset-{name} docs_match",
            drift.join(" and ")
        )),
    }
}
