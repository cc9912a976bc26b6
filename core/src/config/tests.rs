use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where rows go.
#[derive(Debug, Clone, Serialize, Deserialize, Section, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Store {
    /// Data directory.
    #[key(default = "/var/lib/x".into(), flag = "data-dir")]
    data_dir: String,
    /// Commit at least this often.
    #[key(default = Duration::from_secs(5), unit = "duration", min = Duration::from_millis(10))]
    #[serde(with = "humantime_serde")]
    commit_interval: Duration,
    /// Rows per commit.
    #[key(default = 500, unit = "rows", min = 1, max = 1_000_000, live)]
    commit_rows: usize,
    /// Fleet key.
    #[key(secret)]
    key_hex: Option<String>,
}

/// The ZeroMQ listener.
#[derive(Debug, Clone, Serialize, Deserialize, Section, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Zmq {
    /// Serve it.
    #[key(default = true)]
    enabled: bool,
    /// Bind address.
    #[key(default = "tcp://0.0.0.0:5555".into(), flag = "zmq-bind")]
    bind: String,
    /// Frames per peer at once.
    #[key(default = 64, unit = "frames", limit = "frames_refused")]
    max_frames: usize,
}

/// Ingest.
#[derive(Debug, Clone, Serialize, Deserialize, Section, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Ingest {
    /// ZeroMQ.
    #[key(section)]
    zmq: Zmq,
}

/// Test root.
#[derive(Debug, Clone, Serialize, Deserialize, Section, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Root {
    /// Labels.
    #[key(map, flag = "label", live)]
    labels: BTreeMap<String, String>,
    /// The store.
    #[key(section)]
    store: Store,
    /// Ingest.
    #[key(section)]
    ingest: Ingest,
}

impl ConfigCommand for Root {
    const TITLE: &'static str = "test";
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

fn file(text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetset-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let f = dir.join(format!(
        "c{}.toml",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&f, text).unwrap();
    f
}

fn with(file: Option<std::path::PathBuf>, sets: &[(&str, &str)]) -> Result<Root, ConfigError> {
    ConfigArgs::<Root>::new(file, sets).load()
}

#[test]
fn layers_override_key_by_key() {
    let f = file("[store]\ncommit_rows = 7\ndata_dir = \"/d\"\n[ingest.zmq]\nenabled = false\n[labels]\nsite = \"eu\"\n");
    let c = with(
        Some(f),
        &[
            ("store.commit_rows", "9"),
            ("labels.rack", "r1"),
            ("store.commit_interval", "250ms"),
        ],
    )
    .unwrap();
    assert_eq!(c.store.commit_rows, 9);
    assert_eq!(c.store.data_dir, "/d");
    assert_eq!(c.store.commit_interval, Duration::from_millis(250));
    assert!(!c.ingest.zmq.enabled);
    assert_eq!(c.ingest.zmq.bind, "tcp://0.0.0.0:5555");
    assert_eq!(c.labels.len(), 2);
    assert_eq!(with(None, &[]).unwrap(), Root::default());
}

#[test]
fn errors_name_the_key_the_value_and_what_is_allowed() {
    let e = with(Some(file("[store]\ncommit_rwos = 7\n")), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("store.commit_rwos") && e.contains("commit_rows"),
        "{e}"
    );
    let e = with(Some(file("[stor]\nx = 1\n")), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`stor`") && e.contains("store, ingest"), "{e}");
    let e = with(Some(file("[store]\ncommit_rows = \"many\"\n")), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("store.commit_rows") && e.contains("many"), "{e}");
    let e = with(None, &[("store.commit_rows", "0")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("store.commit_rows") && e.contains(">= 1"), "{e}");
    let e = with(None, &[("store.commit_interval", "1ms")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("commit_interval") && e.contains("1ms") && e.contains(">= \"10ms\""),
        "{e}"
    );
    let e = with(None, &[("store.commit_interval", "soon")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("commit_interval") && e.contains("soon"), "{e}");
    let e = with(None, &[("ingest.zmq.enabled", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("ingest.zmq.enabled"), "{e}");
    let e = with(Some(file("[store]\nkey_hex = 12345\n")), &[])
        .unwrap_err()
        .to_string();
    assert!(!e.contains("12345") && e.contains("***"), "{e}");
    let e = with(Some(file("store = 3\n")), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("section"), "{e}");
    let e = with(Some(file("[store\n")), &[]).unwrap_err().to_string();
    assert!(e.contains("not valid TOML"), "{e}");
    // The parser's own message quotes the line: not shown, it may hold a secret.
    let e = with(Some(file("[store]\nkey_hex = 5ec2e7\n")), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && !e.contains("5ec2e7"), "{e}");
}

#[test]
fn print_config_round_trips_and_hides_secrets() {
    let args = ConfigArgs::<Root>::new(
        None,
        &[
            ("store.key_hex", "00ff"),
            ("labels.site", "eu"),
            ("store.commit_rows", "3"),
        ],
    );
    let text = args.print_config().unwrap();
    assert!(!text.contains("00ff"), "{text}");
    assert!(
        text.contains("[ingest.zmq]") && !text.contains("[ingest]\n"),
        "{text}"
    );
    let back = with(Some(file(&text)), &[]).unwrap();
    let mut want = args.load().unwrap();
    want.store.key_hex = None;
    assert_eq!(back, want);
    let md = render_markdown::<Root>();
    assert!(
        md.contains("| `store.commit_rows` | `500` | rows |"),
        "{md}"
    );
    assert!(md.contains("`--zmq-bind`"), "{md}");
}

#[test]
fn flags_and_environment_come_from_the_declaration() {
    use clap::{Args as _, FromArgMatches as _};
    let cmd = ConfigArgs::<Root>::augment_args(clap::Command::new("t"));
    let m = cmd
        .try_get_matches_from([
            "t",
            "--data-dir",
            "/x",
            "--label",
            "a=1",
            "--label",
            "b=2",
            "--set",
            "store.commit_rows=4",
            "--set",
            "ingest.zmq.bind=tcp://127.0.0.1:1",
        ])
        .unwrap();
    let args = ConfigArgs::<Root>::from_arg_matches(&m).unwrap();
    let c = args.load().unwrap();
    assert_eq!(c.store.data_dir, "/x");
    assert_eq!(c.labels.len(), 2);
    assert_eq!(c.store.commit_rows, 4);
    assert_eq!(c.ingest.zmq.bind, "tcp://127.0.0.1:1");
    let keys = Root::keys();
    let k = keys.iter().find(|k| k.path == "ingest.zmq.bind").unwrap();
    assert_eq!(k.env_var(), "FLEETSET_INGEST_ZMQ_BIND");
}

/// A root whose `max_*` key is not declared a limit.
#[derive(Debug, Clone, Serialize, Deserialize, Section, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Unbounded {
    /// Bytes per request.
    #[key(default = 1)]
    max_bytes: usize,
}

impl ConfigCommand for Unbounded {
    const TITLE: &'static str = "test";
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

#[test]
fn limits_are_declared_documented_and_counted() {
    let table = render_limits::<Root>();
    assert!(
        table.contains(
            "| `ingest.zmq.max_frames` | `64` | frames | `frames_refused` | Frames per peer at once. |"
        ),
        "{table}"
    );
    assert!(!table.contains("commit_rows"), "{table}");
    let dir = std::env::temp_dir().join(format!("fleetset-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (readme, example, limits) = (
        dir.join("README.md"),
        dir.join("x.toml"),
        dir.join("limits.md"),
    );
    std::fs::write(
        &readme,
        format!(
            "<!-- config:t -->\n{}<!-- /config:t -->\n",
            render_markdown::<Root>()
        ),
    )
    .unwrap();
    std::fs::write(&example, render_toml(&Root::default(), Root::TITLE)).unwrap();
    std::fs::write(
        &limits,
        format!("<!-- limits:t -->\n{table}<!-- /limits:t -->\n"),
    )
    .unwrap();
    let counters = vec!["frames_refused".to_string()];
    check_docs::<Root>("t", &readme, &example, &limits, &counters).unwrap();
    let e = check_docs::<Root>("t", &readme, &example, &limits, &[]).unwrap_err();
    assert!(
        e.contains("ingest.zmq.max_frames") && e.contains("frames_refused"),
        "{e}"
    );
    std::fs::write(&limits, "<!-- limits:t -->\n<!-- /limits:t -->\n").unwrap();
    let e = check_docs::<Root>("t", &readme, &example, &limits, &counters).unwrap_err();
    assert!(e.contains("limits.md"), "{e}");
    let e = check_docs::<Unbounded>("t", &readme, &example, &limits, &counters).unwrap_err();
    assert!(e.contains("max_bytes") && e.contains("limit"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_applies_live_keys_reports_restart_keys_and_keeps_everything_on_an_invalid_file() {
    let f = file("[store]\ncommit_rows = 7\ndata_dir = \"/d\"\n");
    let args = ConfigArgs::<Root>::new(Some(f.clone()), &[("labels.rack", "r1")]);
    let status = std::sync::Arc::new(ReloadStatus::default());
    let mut reloader = Reloader::new(args.clone(), args.load().unwrap(), status.clone());
    assert!(reloader.reload().unwrap().is_none(), "nothing changed");

    std::fs::write(
        &f,
        "labels = { site = \"eu\" }\n[store]\ncommit_rows = 9\ndata_dir = \"/e\"\n",
    )
    .unwrap();
    let r = reloader.reload().unwrap().expect("live keys changed");
    assert_eq!(r.applied, ["labels", "store.commit_rows"]);
    assert_eq!(r.pending_restart, ["store.data_dir"]);
    assert_eq!(r.config.store.commit_rows, 9);
    assert_eq!(
        r.config.store.data_dir, "/d",
        "a restart key keeps its running value"
    );
    assert_eq!(
        r.config.labels.len(),
        2,
        "the command line still applies: {:?}",
        r.config.labels
    );
    assert_eq!(status.counts(), (2, 1, 0));
    assert!(status
        .verbose(true)
        .contains("config-restart-pending keys changed that need a restart: store.data_dir"));

    std::fs::write(&f, "[store]\ncommit_rows = 0\n").unwrap();
    let e = reloader.reload().unwrap_err().to_string();
    assert!(e.contains("store.commit_rows"), "{e}");
    assert_eq!(
        reloader.running().store.commit_rows,
        9,
        "the running configuration stays"
    );
    assert_eq!(status.counts(), (2, 1, 1));
    assert!(status
        .verbose(true)
        .contains("[-]config-reload failed, generation 2 still running"));
    assert!(status.verbose(false).contains("reason withheld"));
    assert!(
        !status.verbose(false).contains("commit_rows"),
        "no detail without the token"
    );
}

#[test]
fn print_config_and_the_key_table_say_which_keys_reload_live() {
    let toml = render_toml(&Root::default(), "t");
    assert!(
        toml.contains("# Rows per commit. Unit: rows. Reload: live.\ncommit_rows = 500"),
        "{toml}"
    );
    assert!(
        toml.contains("# Data directory. Reload: restart.\ndata_dir"),
        "{toml}"
    );
    let md = render_markdown::<Root>();
    assert!(
        md.contains("| `store.commit_rows` | `500` | rows |  | live | Rows per commit. |"),
        "{md}"
    );
}

#[test]
fn a_remote_configuration_overrides_the_file_on_live_keys_only() {
    let f = file("[store]\ncommit_rows = 7\ndata_dir = \"/d\"\n");
    let remote = |toml: &str| Remote {
        toml: toml.into(),
        name: "generation 3".into(),
    };
    let mut args = ConfigArgs::<Root>::new(Some(f), &[("labels.rack", "r1")]);
    args.remote = Some(remote(
        "labels = { site = \"eu\" }\n[store]\ncommit_rows = 9\n",
    ));
    let c = args.load().unwrap();
    assert_eq!(c.store.commit_rows, 9, "remote over the file");
    assert_eq!(c.store.data_dir, "/d");
    assert_eq!(
        c.labels.len(),
        2,
        "remote labels merge with the command line's"
    );

    // The command line still wins over the remote configuration.
    let mut args = ConfigArgs::<Root>::new(None, &[("store.commit_rows", "5")]);
    args.remote = Some(remote("[store]\ncommit_rows = 9\n"));
    assert_eq!(args.load().unwrap().store.commit_rows, 5);

    // A restart key (where data goes, credentials, …) is refused, named with the generation.
    args.remote = Some(remote("[store]\ndata_dir = \"/elsewhere\"\n"));
    let e = args.load().unwrap_err().to_string();
    assert!(
        e.contains("store.data_dir")
            && e.contains("generation 3")
            && e.contains("not changeable remotely"),
        "{e}"
    );
    args.remote = Some(remote("[store]\nkey_hex = \"abcd\"\n"));
    let e = args.load().unwrap_err().to_string();
    assert!(e.contains("store.key_hex") && !e.contains("abcd"), "{e}");
    // Out of range and not TOML: named too.
    let mut args = ConfigArgs::<Root>::new(None, &[]);
    args.remote = Some(remote("[store]\ncommit_rows = 0\n"));
    let e = args.load().unwrap_err().to_string();
    assert!(e.contains("store.commit_rows"), "{e}");
    args.remote = Some(remote("[store\n"));
    let e = args.load().unwrap_err().to_string();
    assert!(e.contains("remote configuration (generation 3)"), "{e}");
}
