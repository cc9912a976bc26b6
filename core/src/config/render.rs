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
        let reload = if k.live { "live" } else { "restart" };
        let _ = writeln!(out, "\n# {}{unit} Reload: {reload}.", k.doc);
        let key = name(&k.path);
        match lookup(&table, &k.path) {
            Some(_) if k.secret => {
                let _ = writeln!(out, "# {key} = \"***\"   (set; not shown)");
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

/// The Markdown default of key `k` in the defaults `table` (`—` for secrets, unset and empty).
fn default_cell(table: &Table, k: &KeyDoc) -> String {
    match lookup(table, &k.path) {
        Some(_) if k.secret => "—".to_string(),
        Some(Value::Table(t)) if t.is_empty() => "—".to_string(),
        Some(v) => format!("`{v}`"),
        None => "—".to_string(),
    }
}

/// The declaration as a Markdown table (`| key | default | unit | flag | reload | meaning |`;
/// reload: `live` or `restart`), defaults from `C::default()`.
pub fn render_markdown<C: Section>() -> String {
    let table = Table::try_from(C::default()).unwrap_or_default();
    let mut out = String::from(
        "| key | default | unit | flag | reload | meaning |\n|---|---|---|---|---|---|\n",
    );
    for k in C::keys().iter().filter(|k: &&KeyDoc| !k.section) {
        let flag = k.flag.map_or(String::new(), |f| format!("`--{f}`"));
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {flag} | {} | {} |",
            k.path,
            default_cell(&table, k),
            k.unit,
            if k.live { "live" } else { "restart" },
            k.doc.replace('|', "\\|")
        );
    }
    out
}

/// The counter of limit key `k`, with `{owner}` replaced by the name of the section that holds
/// the key's section (`ingest.grpc.connections.max_connections` → `grpc`), so one shared
/// section can count per listener. `None`: not a limit.
fn limit_counter(k: &KeyDoc) -> Option<String> {
    let counter = k.limit?;
    let segments: Vec<&str> = k.path.split('.').collect();
    let owner = segments.len().checked_sub(3).map_or("", |i| segments[i]);
    Some(counter.replace("{owner}", owner))
}

/// The limit keys of the declaration (`#[key(limit = "counter")]`) as a Markdown table
/// (`| key | default | unit | counted in | meaning |`), defaults from `C::default()`.
pub fn render_limits<C: Section>() -> String {
    let table = Table::try_from(C::default()).unwrap_or_default();
    let mut out =
        String::from("| key | default | unit | counted in | meaning |\n|---|---|---|---|---|\n");
    for k in C::keys() {
        let Some(counter) = limit_counter(&k) else {
            continue;
        };
        let counter = if counter == "-" {
            "—".to_string()
        } else {
            format!("`{counter}`")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {counter} | {} |",
            k.path,
            default_cell(&table, &k),
            k.unit,
            k.doc.replace('|', "\\|")
        );
    }
    out
}

/// Compares the text between `<!-- TAG -->` and `<!-- /TAG -->` in `path` with `block`; with
/// `update`, writes `block` there. Returns whether it drifted. Errors: unreadable file, no marker.
fn check_block(
    path: &std::path::Path,
    tag: &str,
    block: &str,
    update: bool,
) -> Result<bool, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (open, close) = (format!("<!-- {tag} -->\n"), format!("<!-- /{tag} -->"));
    let start = text
        .find(&open)
        .ok_or_else(|| format!("{} has no {open:?} marker", path.display()))?
        + open.len();
    let end = text[start..]
        .find(&close)
        .ok_or_else(|| format!("{} has no {close:?} marker", path.display()))?
        + start;
    let drifted = text[start..end] != *block;
    if drifted && update {
        let new = format!("{}{block}{}", &text[..start], &text[end..]);
        std::fs::write(path, new).map_err(|e| e.to_string())?;
    }
    Ok(drifted)
}

/// Checks that the generated docs of `C` are what the repository holds: the Markdown table
/// between `<!-- config:NAME -->` and `<!-- /config:NAME -->` in `readme`, the limits table
/// between `<!-- limits:NAME -->` markers in `limits`, and the whole of `example` (commented
/// TOML of the defaults). With `FLEETSET_UPDATE_DOCS=1` it writes them instead. Also checks
/// the limit declarations themselves: every key named `max_*` is a limit, and every limit's
/// counter is one of `counters` (the binary's counter names). For a unit test of each binary;
/// `Err` says what drifted and how to regenerate, or which declaration is wrong.
pub fn check_docs<C: super::ConfigCommand>(
    name: &str,
    readme: &std::path::Path,
    example: &std::path::Path,
    limits: &std::path::Path,
    counters: &[String],
) -> Result<(), String> {
    let keys = C::keys();
    if let Some(k) = keys
        .iter()
        .find(|k| !k.section && k.limit.is_none() && self::name(&k.path).starts_with("max_"))
    {
        return Err(format!(
            "{} bounds input: declare it with #[key(limit = \"<counter>\")]",
            k.path
        ));
    }
    if let Some((k, c)) = keys
        .iter()
        .filter_map(|k| Some((k, limit_counter(k)?)))
        .find(|(_, c)| c != "-" && !counters.iter().any(|n| n == c))
    {
        return Err(format!(
            "{}: limit counter {c:?} is not a counter of fleetset-{name}",
            k.path
        ));
    }
    let update = std::env::var_os("FLEETSET_UPDATE_DOCS").is_some_and(|v| v == "1");
    let mut drift = Vec::new();
    for (path, tag, block) in [
        (readme, format!("config:{name}"), render_markdown::<C>()),
        (limits, format!("limits:{name}"), render_limits::<C>()),
    ] {
        if check_block(path, &tag, &block, update)? {
            drift.push(path.display().to_string());
        }
    }
    let toml_text = render_toml(&C::default(), C::TITLE);
    if std::fs::read_to_string(example).unwrap_or_default() != toml_text {
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
