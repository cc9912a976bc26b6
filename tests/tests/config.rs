//! `validate` and `print-config` of both real binaries: a bad file exits non-zero naming the
//! key, the value and what is allowed; the environment and `--set` layer over the file; what
//! `print-config` prints validates again and means the same configuration.

use fleetset_tests::{bin, TempDir};
use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin(binary));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the binary")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `validate --config FILE` with `body`: whether it passed, and what it said.
fn validate(binary: &str, dir: &TempDir, name: &str, body: &str) -> (bool, String) {
    let f = dir.path().join(name);
    std::fs::write(&f, body).unwrap();
    let o = run(binary, &["validate", "--config", f.to_str().unwrap()], &[]);
    (o.status.success(), text(&o))
}

#[test]
fn bad_configurations_are_refused_naming_the_key() {
    let dir = TempDir::new("config-bad");
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "fleetset-aggregator",
            "[store]\ncommit_rwos = 5\n",
            &["store.commit_rwos", "commit_rows"],
        ),
        (
            "fleetset-aggregator",
            "[ingest.zmq]\nenabled = \"yes\"\n",
            &["ingest.zmq.enabled", "yes"],
        ),
        (
            "fleetset-aggregator",
            "[store]\ncommit_interval = \"1ms\"\n",
            &["store.commit_interval", "1ms", ">= \"10ms\""],
        ),
        (
            "fleetset-aggregator",
            "[ingest]\nhmac_key_hex = \"not-hex-secret\"\n",
            &["ingest.hmac_key_hex", "non-empty hex"],
        ),
        (
            "fleetset-aggregator",
            "[ingest]\nhmac_key_hex = \"5ec2e7\"\nhmac_master_key_file = \"master.key\"\n",
            &[
                "ingest.hmac_master_key_file",
                "ingest.hmac_key_hex",
                "not both",
            ],
        ),
        (
            "fleetset-agent",
            "[window]\nlenght = \"5m\"\n",
            &["window.lenght", "length"],
        ),
        (
            "fleetset-agent",
            "[transport]\nmax_in_flight = -3\n",
            &["transport.max_in_flight", "-3"],
        ),
        (
            "fleetset-agent",
            "[window.lttb]\nthreshold = 2\n",
            &["window.lttb.threshold", "2", ">= 3"],
        ),
        (
            "fleetset-agent",
            "[transport]\nprotocol = \"grpc\"\n",
            &["transport.aggregator", "http://"],
        ),
        (
            "fleetset-agent",
            "[labels]\nSite = \"eu-1\"\n",
            &["labels.Site", "[a-z0-9_]"],
        ),
    ];
    for (i, (binary, body, needles)) in cases.iter().enumerate() {
        let (ok, said) = validate(binary, &dir, &format!("bad{i}.toml"), body);
        assert!(!ok, "{binary} accepted {body:?}: {said}");
        for n in *needles {
            assert!(
                said.contains(n),
                "{binary} on {body:?}: {n:?} not in {said}"
            );
        }
        assert!(
            !said.contains("not-hex-secret"),
            "a secret was printed: {said}"
        );
    }
}

#[test]
fn print_config_validates_again_and_layers_apply() {
    let dir = TempDir::new("config-print");
    // The aggregator's defaults listen on 0.0.0.0 without TLS: valid only with allow_insecure.
    for (binary, sets) in [
        (
            "fleetset-aggregator",
            &["--set", "security.allow_insecure=true"][..],
        ),
        ("fleetset-agent", &[][..]),
    ] {
        let o = run(binary, &[&["print-config"][..], sets].concat(), &[]);
        assert!(o.status.success(), "{}", text(&o));
        let printed = String::from_utf8(o.stdout).unwrap();
        let (ok, said) = validate(binary, &dir, &format!("{binary}.toml"), &printed);
        assert!(
            ok,
            "{binary}: print-config output does not validate: {said}"
        );
    }
    // file < environment < flag < --set, key by key.
    let f = dir.path().join("layers.toml");
    std::fs::write(
        &f,
        "[store]\ncommit_rows = 11\ncommit_interval = \"7s\"\n[live]\nqueue = 5\n",
    )
    .unwrap();
    let o = run(
        "fleetset-aggregator",
        &[
            "print-config",
            "--config",
            f.to_str().unwrap(),
            "--commit-interval",
            "3s",
            "--set",
            "live.queue=9",
        ],
        &[
            ("FLEETSET_STORE_COMMIT_ROWS", "12"),
            ("FLEETSET_LIVE_QUEUE", "8"),
        ],
    );
    let printed = text(&o);
    assert!(o.status.success(), "{printed}");
    for line in ["commit_rows = 12", "commit_interval = \"3s\"", "queue = 9"] {
        assert!(
            printed.lines().any(|l| l == line),
            "{line:?} not in {printed}"
        );
    }
    let o = run(
        "fleetset-agent",
        &[
            "print-config",
            "--label",
            "site=eu-1",
            "--set",
            "labels.rack=r7",
        ],
        &[],
    );
    let printed = text(&o);
    assert!(
        printed.contains("labels = { rack = \"r7\", site = \"eu-1\" }"),
        "{printed}"
    );
}

/// Secret values (HMAC keys, salts, token file contents) never appear in `print-config`,
/// `validate` errors or the error of a failing `serve`; they show as `***`.
#[test]
fn secrets_are_never_shown() {
    let dir = TempDir::new("config-secrets");
    let key = "5ec2e7c0ffee5ec2e7";
    for (binary, set) in [
        ("fleetset-aggregator", "ingest.hmac_key_hex"),
        ("fleetset-agent", "transport.hmac_key_hex"),
    ] {
        let o = run(
            binary,
            &["print-config", "--set", &format!("{set}={key}")],
            &[],
        );
        let said = text(&o);
        assert!(o.status.success(), "{said}");
        assert!(!said.contains(key) && said.contains("= \"***\""), "{said}");
    }
    // Not hex; the wrong type; a TOML syntax error on the secret's line (the parser's own
    // message would quote it).
    for (body, needle) in [
        ("[ingest]\nhmac_key_hex = \"zz5ec2e7zz\"\n", "***"),
        ("[ingest]\nhmac_key_hex = 5152535455\n", "***"),
        ("[ingest]\nhmac_key_hex = 5ec2e7\n", "line 2"),
    ] {
        let (ok, said) = validate("fleetset-aggregator", &dir, "secret.toml", body);
        assert!(!ok && said.contains(needle), "{said}");
        assert!(!said.contains("5152535455"), "a secret was printed: {said}");
        assert!(!said.contains("5ec2e7"), "a secret was printed: {said}");
    }
    // A failing start: a bad key, then a token file whose digest is malformed.
    let data = dir.path().join("data");
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--zmq-bind",
            "tcp://127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--zmq-pub",
            "tcp://127.0.0.1:0",
            "--otlp-listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
        ];
        args.extend(extra);
        let o = run(
            "fleetset-aggregator",
            &args,
            &[("FLEETSET_TELEMETRY_LISTEN", "127.0.0.1:0")],
        );
        (o.status.success(), text(&o))
    };
    let (ok, said) = serve(&["--set", "ingest.hmac_key_hex=zz5ec2e7zz"]);
    assert!(!ok && said.contains("ingest.hmac_key_hex"), "{said}");
    assert!(!said.contains("5ec2e7"), "a secret was printed: {said}");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nname = \"ci\"\nsha256 = \"5ec2e7d16e575ec2e7\"\nscopes = [\"otlp\"]\n",
    )
    .unwrap();
    let file = format!("security.tokens.file={}", tokens.display());
    let (ok, said) = serve(&["--set", &file]);
    assert!(
        !ok && said.contains("tokens.toml") && said.contains("64 hex"),
        "{said}"
    );
    assert!(
        !said.contains("5ec2e7"),
        "token file contents printed: {said}"
    );
}
