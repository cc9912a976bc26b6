//! The fleet control plane on the real binaries (README "Managing a fleet"): agents report over
//! OpAMP, `fleet config promote` rolls a generation out to a canary first and then in batches,
//! a generation an agent refuses is rolled back by itself, `fleet config rollback` restores an
//! earlier one, the history survives an aggregator restart, an agent killed while a
//! configuration is on trial comes back on its last known good one, an agent can only report
//! as itself, and the OpenTelemetry Python OpAMP client (a client we did not write) gets its
//! configuration from our server.

use fleetset_aggregator::store::reader::{self, Query};
use fleetset_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `fleetset-aggregator fleet --endpoint URL ARGS…`: (success, stdout, stderr).
fn fleet(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("fleetset-aggregator"))
        .args(["fleet", "--endpoint", url])
        .args(args)
        .output()
        .expect("run fleet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `fleet ARGS… --format json`, parsed; panics with stderr if it fails.
fn fleet_json(url: &str, args: &[&str]) -> Value {
    let (ok, out, err) = fleet(url, &[args, &["--format", "json"]].concat());
    assert!(ok, "fleet {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn agents(url: &str) -> Vec<Value> {
    let (ok, out, _) = fleet(url, &["agents", "--format", "json"]);
    match ok {
        true => serde_json::from_str(&out).unwrap_or_default(),
        false => Vec::new(),
    }
}

fn agent_record(url: &str, id: &str) -> Option<Value> {
    agents(url).into_iter().find(|a| a["agent_id"] == id)
}

fn history(url: &str) -> Vec<Value> {
    fleet_json(url, &["config", "history"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn generation(url: &str, n: u64) -> Value {
    history(url)
        .into_iter()
        .find(|g| g["generation"] == n)
        .unwrap_or(Value::Null)
}

/// Promotes `body` (written to `dir/gen-<note>.toml`) with `args`; returns the new generation.
fn promote(url: &str, dir: &Path, body: &str, args: &[&str]) -> Value {
    let file = dir.join(format!("gen-{}.toml", history(url).len() + 1));
    std::fs::write(&file, body).unwrap();
    let note: &[&str] = match args.contains(&"--note") {
        true => &[],
        false => &["--note", "test"],
    };
    let args = [args, note].concat();
    let (ok, _, err) = fleet(
        url,
        &[&["config", "promote", file.to_str().unwrap()], &args[..]].concat(),
    );
    assert!(ok, "promote failed: {err}");
    history(url).pop().unwrap()
}

/// A synthetic agent (1 s windows of 50 ms samples) reporting to the control plane at `url`
/// every 200 ms.
fn control_agent(dir: &Path, id: &str, site: &str, agg: &Aggregator, extra: &[&str]) -> Proc {
    let endpoint = format!("control.endpoint={}/v1/opamp", agg.control);
    let label = format!("site={site}");
    let mut args = vec![
        "--aggregator",
        agg.zmq.as_str(),
        "--label",
        &label,
        "--set",
        &endpoint,
        "--set",
        "control.poll_interval=200ms",
    ];
    args.extend_from_slice(extra);
    synthetic_agent_with(dir, id, ("1s", "50ms"), &args)
}

/// Points per series of `agent`'s newest stored window.
fn newest_points(data: &Path, agent: &str) -> Option<usize> {
    let query = Query {
        agents: vec![agent.to_string()],
        ..Default::default()
    };
    let windows = reader::windows(data, &query).ok()?;
    let newest = windows.iter().max_by_key(|w| w.snapshot.start)?;
    newest.snapshot.data.values().map(Vec::len).max()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn agent_counter(state: &Path, name: &str) -> u64 {
    agent_counters(state)
        .and_then(|c| c[name].as_u64())
        .unwrap_or(0)
}

/// Every agent in `ids` reports `hash` APPLIED.
fn all_applied(url: &str, ids: &[String], hash: &str) -> bool {
    let list = agents(url);
    ids.iter().all(|id| {
        list.iter().any(|a| {
            a["agent_id"] == id.as_str()
                && a["config_hash"] == hash
                && a["remote_config_status"] == "APPLIED"
        })
    })
}

#[test]
fn a_canary_goes_first_a_refused_generation_rolls_back_and_history_survives_a_restart() {
    let dir = TempDir::new("fleet-rollout");
    let zmq_bind = format!("tcp://127.0.0.1:{}", free_port());
    let control_listen = format!("127.0.0.1:{}", free_port());
    let listen = [
        "--commit-interval",
        "200ms",
        "--zmq-bind",
        zmq_bind.as_str(),
        "--control-listen",
        control_listen.as_str(),
        "--set",
        "control.stale_after=5s",
    ];
    let mut agg = Aggregator::start(dir.path(), &listen).unwrap();
    let url = agg.control.clone();
    let ids: Vec<String> = (0..20).map(|i| format!("node-{i:02}")).collect();
    let site_a: Vec<String> = ids[..10].to_vec();
    let mut procs: Vec<Proc> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| control_agent(dir.path(), id, if i < 10 { "a" } else { "b" }, &agg, &[]))
        .collect();
    wait_for("20 agents reporting", Duration::from_secs(90), || {
        let list = agents(&url);
        (list.len() == 20 && list.iter().all(|a| a["remote_config_status"] == "UNSET"))
            .then_some(())
    })
    .unwrap();
    let listed = fleet_json(&url, &["agents", "--selector", "site=a"]);
    assert_eq!(listed.as_array().unwrap().len(), 10, "{listed}");

    // Generation 1 to site=a: one canary (10 % of 10) first, the rest after a 3 s bake.
    let body1 = "[window.lttb]\nthreshold = 8\n";
    let g1 = promote(
        &url,
        dir.path(),
        body1,
        &[
            "--selector",
            "site=a",
            "--canary",
            "10%",
            "--bake",
            "3s",
            "--batch",
            "50%",
            "--note",
            "fewer points",
        ],
    );
    let hash1 = sha256_hex(body1);
    assert_eq!(g1["hash"], hash1.as_str());
    let canaries: Vec<String> = serde_json::from_value(g1["canaries"].clone()).unwrap();
    assert_eq!(canaries.len(), 1, "{g1}");
    assert!(site_a.contains(&canaries[0]), "{g1}");
    let status = fleet_json(&url, &["config", "status", "1"]);
    assert_eq!(
        status["counts"]["assigned"], 1,
        "only the canary has it: {status}"
    );
    wait_for(
        "the canary applies generation 1",
        Duration::from_secs(30),
        || all_applied(&url, &canaries, &hash1).then_some(()),
    )
    .unwrap();
    let others: Vec<String> = site_a
        .iter()
        .filter(|id| **id != canaries[0])
        .cloned()
        .collect();
    assert!(
        !agents(&url)
            .iter()
            .any(|a| others.iter().any(|o| a["agent_id"] == o.as_str())
                && a["config_hash"] == hash1.as_str()),
        "no other agent may have it before the bake ends"
    );
    wait_for(
        "generation 1 complete on site=a",
        Duration::from_secs(60),
        || {
            (generation(&url, 1)["outcome"] == "complete" && all_applied(&url, &site_a, &hash1))
                .then_some(())
        },
    )
    .unwrap();
    let status = fleet_json(&url, &["config", "status", "1"]);
    assert_eq!(status["counts"]["applied"], 10, "{status}");
    assert!(
        agents(&url)
            .iter()
            .filter(|a| a["labels"]["site"] == "b")
            .all(|a| a["config_hash"] != hash1.as_str() && a["config_generation"] == 0),
        "site=b is outside the selector"
    );
    // The new threshold is in the stored windows of site a, not of site b.
    wait_for(
        "site a stores 8-point series",
        Duration::from_secs(30),
        || (newest_points(&agg.data_dir, &site_a[3]) == Some(8)).then_some(()),
    )
    .unwrap();
    assert!(newest_points(&agg.data_dir, &ids[15]).unwrap_or(0) > 8);

    // Generation 2 changes where agents send their data: not a live key, so the canary refuses
    // it and the gate rolls it back by itself; nobody else ever gets it.
    let body2 = "[transport]\naggregator = \"tcp://10.9.9.9:1\"\n";
    let g2 = promote(
        &url,
        dir.path(),
        body2,
        &[
            "--selector",
            "site=a",
            "--canary",
            "1",
            "--bake",
            "60s",
            "--note",
            "redirect",
        ],
    );
    let canary2 = g2["canaries"][0].as_str().unwrap().to_string();
    let rolled = wait_for("generation 2 rolled back", Duration::from_secs(30), || {
        let g = generation(&url, 2);
        (g["outcome"] == "rolled_back").then_some(g)
    })
    .unwrap();
    let reason = rolled["reason"].as_str().unwrap();
    assert!(
        reason.contains(&canary2)
            && reason.contains("FAILED")
            && reason.contains("transport.aggregator"),
        "{reason}"
    );
    assert_eq!(rolled["previous"].as_object().unwrap().len(), 1, "{rolled}");
    wait_for(
        "site a back on generation 1",
        Duration::from_secs(30),
        || all_applied(&url, &site_a, &hash1).then_some(()),
    )
    .unwrap();
    let state = dir.path().join(&canary2);
    wait_for(
        "the canary counts the refusal",
        Duration::from_secs(15),
        || (agent_counter(&state, "remote_configs_failed") >= 1).then_some(()),
    )
    .unwrap();
    let (_, text, _) = fleet(&url, &["config", "history"]);
    assert!(
        text.contains("rolled_back") && text.contains("redirect"),
        "{text}"
    );

    // Roll back to no remote configuration at all: every agent runs its local file.
    let (ok, out, err) = fleet(
        &url,
        &["config", "rollback", "--to", "0", "--note", "local files"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("generation 3"), "{out}");
    let empty = sha256_hex("");
    wait_for("site a on its local file", Duration::from_secs(30), || {
        all_applied(&url, &site_a, &empty).then_some(())
    })
    .unwrap();
    wait_for(
        "site a stores full series again",
        Duration::from_secs(30),
        || (newest_points(&agg.data_dir, &site_a[3]).unwrap_or(0) > 8).then_some(()),
    )
    .unwrap();

    // A restart keeps the history and first-seen times; the agents carry on.
    let first_seen = agent_record(&url, &ids[0]).unwrap()["first_seen_ms"].clone();
    agg.proc.stop(Duration::from_secs(30)).unwrap();
    let agg = Aggregator::start(dir.path(), &listen).unwrap();
    let h = history(&url);
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[0]["note"], "fewer points");
    assert_eq!(h[1]["outcome"], "rolled_back");
    assert_eq!(h[2]["kind"], "rollback");
    assert_eq!(h[2]["restores"], 0);
    assert_eq!(
        agent_record(&url, &ids[0]).unwrap()["first_seen_ms"],
        first_seen
    );
    wait_for(
        "agents report to the restarted aggregator",
        Duration::from_secs(30),
        || {
            agents(&url)
                .iter()
                .any(|a| {
                    a["agent_id"] == ids[0].as_str()
                        && a["last_report_ms"].as_i64() > first_seen.as_i64().map(|f| f + 1)
                })
                .then_some(())
        },
    )
    .unwrap();
    let status = fleet_json(&url, &["config", "status", "3"]);
    assert_eq!(
        status["counts"]["assigned"], 20,
        "the current generation survives the restart: {status}"
    );

    // An agent offline during a promotion is left out, and catches up when it returns.
    let offline = ids[4].clone();
    procs[4].stop(Duration::from_secs(30)).unwrap();
    wait_for(
        "the stopped agent turns stale",
        Duration::from_secs(30),
        || (agent_record(&url, &offline)?["state"] == "stale").then_some(()),
    )
    .unwrap();
    let body4 = "[window.lttb]\nthreshold = 10\n";
    let g4 = promote(
        &url,
        dir.path(),
        body4,
        &[
            "--selector",
            "site=a",
            "--canary",
            "1",
            "--bake",
            "1s",
            "--batch",
            "100%",
        ],
    );
    assert_ne!(g4["canaries"][0], offline.as_str());
    let hash4 = sha256_hex(body4);
    let online: Vec<String> = site_a
        .iter()
        .filter(|id| **id != offline)
        .cloned()
        .collect();
    wait_for(
        "generation 4 complete on the online agents",
        Duration::from_secs(60),
        || {
            (generation(&url, 4)["outcome"] == "complete" && all_applied(&url, &online, &hash4))
                .then_some(())
        },
    )
    .unwrap();
    procs[4] = control_agent(dir.path(), &offline, "a", &agg, &[]);
    wait_for(
        "the returning agent catches up",
        Duration::from_secs(30),
        || all_applied(&url, std::slice::from_ref(&offline), &hash4).then_some(()),
    )
    .unwrap();

    // rollback --to 1 restores generation 1's body on its selector, at once.
    let (ok, out, err) = fleet(
        &url,
        &[
            "config",
            "rollback",
            "--to",
            "1",
            "--note",
            "8 points again",
        ],
    );
    assert!(ok && out.contains("generation 5"), "{out} {err}");
    wait_for(
        "site a back on generation 1's body",
        Duration::from_secs(30),
        || all_applied(&url, &site_a, &hash1).then_some(()),
    )
    .unwrap();

    let site_b: Vec<String> = ids[10..].to_vec();
    assert!(
        all_applied(&url, &site_b, &empty),
        "generation 1's selector is site=a: site b keeps its local files"
    );

    // Stop them all at once while the aggregator still acks (each drains its last windows).
    for p in &procs {
        p.signal("TERM").unwrap();
    }
    for p in &mut procs {
        assert!(p.wait(Duration::from_secs(30)).unwrap(), "{}", p.log_text());
    }
    // Through promotions, refusals, rollbacks and the restart: no window lost or duplicated.
    let stored = reader::windows(&agg.data_dir, &Query::default()).unwrap();
    for id in &ids {
        let mut seqs: Vec<u64> = stored
            .iter()
            .filter(|w| w.snapshot.agent_id == *id)
            .map(|w| w.snapshot.seq)
            .collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert!(seqs.len() > 10, "{id}: {seqs:?}");
        assert_eq!(seqs, expected, "{id}: windows lost or duplicated");
    }
    drop(agg);
}

#[test]
fn an_agent_killed_while_a_configuration_is_on_trial_comes_back_on_the_last_known_good() {
    let dir = TempDir::new("fleet-crash");
    let agg = Aggregator::start(dir.path(), &["--commit-interval", "200ms"]).unwrap();
    let url = agg.control.clone();
    let confirm = ["--set", "control.confirm_after=4s"];
    let mut agent = control_agent(dir.path(), "crasher", "a", &agg, &confirm);
    let state = dir.path().join("crasher");
    wait_for("the agent reports", Duration::from_secs(30), || {
        agent_record(&url, "crasher")
    })
    .unwrap();
    let (good, trial) = (
        "[window.lttb]\nthreshold = 8\n",
        "[window.lttb]\nthreshold = 9\n",
    );
    promote(
        &url,
        dir.path(),
        good,
        &["--canary", "100%", "--bake", "1s"],
    );
    let lkg = wait_for(
        "generation 1 is the last known good",
        Duration::from_secs(40),
        || {
            let s: Value =
                serde_json::from_slice(&std::fs::read(state.join("remote_config.json")).ok()?)
                    .ok()?;
            (s["good"]["hash"] == sha256_hex(good).as_str()).then_some(s)
        },
    )
    .unwrap();
    assert!(lkg["trial"].is_null(), "{lkg}");

    let g2 = promote(
        &url,
        dir.path(),
        trial,
        &["--canary", "100%", "--bake", "60s"],
    );
    wait_for(
        "the agent applies generation 2",
        Duration::from_secs(30),
        || all_applied(&url, &["crasher".to_string()], g2["hash"].as_str()?).then_some(()),
    )
    .unwrap();
    agent.signal("KILL").unwrap();
    agent.wait(Duration::from_secs(10)).unwrap();
    let s: Value =
        serde_json::from_slice(&std::fs::read(state.join("remote_config.json")).unwrap()).unwrap();
    assert_eq!(
        s["trial"]["hash"], g2["hash"],
        "killed within confirm_after: {s}"
    );

    let mut agent = control_agent(dir.path(), "crasher", "a", &agg, &confirm);
    let rolled = wait_for("generation 2 rolled back", Duration::from_secs(30), || {
        let g = generation(&url, 2);
        (g["outcome"] == "rolled_back").then_some(g)
    })
    .unwrap();
    assert!(
        rolled["reason"].as_str().unwrap().contains("uncleanly"),
        "{rolled}"
    );
    wait_for(
        "the agent runs generation 1 again",
        Duration::from_secs(30),
        || all_applied(&url, &["crasher".to_string()], &sha256_hex(good)).then_some(()),
    )
    .unwrap();
    wait_for("the fallback is counted", Duration::from_secs(15), || {
        (agent_counter(&state, "remote_configs_fallback") == 1).then_some(())
    })
    .unwrap();
    wait_for(
        "8-point series stored after the restart",
        Duration::from_secs(30),
        || (newest_points(&agg.data_dir, "crasher") == Some(8)).then_some(()),
    )
    .unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
}

/// `pki issue-token --dir keys ARGS…`: the token.
fn issue(keys: &Path, args: &[&str]) -> String {
    run_pki(&[&["issue-token", "--dir", keys.to_str().unwrap()], args].concat())
        .trim()
        .to_string()
}

#[test]
fn an_agent_reports_only_as_itself_and_the_admin_api_needs_an_admin_token() {
    let dir = TempDir::new("fleet-identity");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let right = issue(
        &keys,
        &["--scope", "agent", "--agent-id", "right", "--name", "right"],
    );
    let admin = issue(&keys, &["--scope", "admin", "--name", "ops"]);
    let tokens = format!(
        "security.tokens.file={}",
        keys.join("tokens.toml").display()
    );
    let agg = Aggregator::start(dir.path(), &["--set", &tokens]).unwrap();
    let url = agg.control.clone();
    let token_file = dir.path().join("right.token");
    std::fs::write(&token_file, &right).unwrap();
    let admin_file = dir.path().join("admin.token");
    std::fs::write(&admin_file, &admin).unwrap();
    let with_token = format!("control.token_file={}", token_file.display());
    let mut good = control_agent(dir.path(), "right", "a", &agg, &["--set", &with_token]);
    let mut thief = control_agent(dir.path(), "wrong", "a", &agg, &["--set", &with_token]);

    let (ok, _, err) = fleet(&url, &["agents"]);
    assert!(!ok && err.contains("401"), "no token: {err}");
    let admin_flag = ["--token-file", admin_file.to_str().unwrap()];
    let list = |url: &str| -> Vec<Value> {
        let (ok, out, err) = fleet(
            url,
            &[&admin_flag[..], &["agents", "--format", "json"]].concat(),
        );
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    wait_for("the right agent reports", Duration::from_secs(30), || {
        list(&url)
            .into_iter()
            .find(|a| a["agent_id"] == "right" && a["remote_config_status"] == "UNSET")
    })
    .unwrap();
    let thief_state = dir.path().join("wrong");
    wait_for(
        "the other agent is refused",
        Duration::from_secs(30),
        || {
            (agent_counter(&thief_state, "control_errors") >= 2
                && aggregator_counters(&agg.data_dir)?["control_identity_refused"].as_u64()? >= 2)
                .then_some(())
        },
    )
    .unwrap();
    // Its frames put it in the inventory, but no OpAMP report of it was ever taken.
    if let Some(w) = list(&url).into_iter().find(|a| a["agent_id"] == "wrong") {
        assert_eq!(w["last_report_ms"], 0, "{w}");
        assert_eq!(w["instance_uid"], "", "{w}");
    }
    assert_eq!(agent_counter(&thief_state, "control_reports"), 0);
    // The same inventory over gRPC (`Fleet/ListAgents`, grpcio), admin token only.
    let grpc_addr = agg.grpc.trim_start_matches("http://").to_string();
    let got: Value = serde_json::from_str(
        run_python_script(
            "bearer_tokens.py",
            &["fleet-agents", &grpc_addr, &admin, "site=a"],
        )
        .trim(),
    )
    .unwrap();
    assert_eq!(got["code"], "OK", "{got}");
    assert!(
        got["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == "right" && a["labels"]["site"] == "a"),
        "{got}"
    );
    for (token, code) in [
        ("-", "UNAUTHENTICATED"),
        (right.as_str(), "PERMISSION_DENIED"),
    ] {
        let got: Value = serde_json::from_str(
            run_python_script("bearer_tokens.py", &["fleet-agents", &grpc_addr, token]).trim(),
        )
        .unwrap();
        assert_eq!(got["code"], code, "{got}");
    }
    // A token of another scope is not an admin token.
    let right_flag = ["--token-file", token_file.to_str().unwrap()];
    let (ok, _, err) = fleet(&url, &[&right_flag[..], &["agents"]].concat());
    assert!(!ok && err.contains("403"), "{err}");
    good.stop(Duration::from_secs(20)).unwrap();
    thief.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn the_opentelemetry_python_opamp_client_gets_its_configuration() {
    let dir = TempDir::new("fleet-python");
    let agg = Aggregator::start(dir.path(), &[]).unwrap();
    let url = agg.control.clone();
    let out = dir.path().join("received.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/opamp_agent.py");
    let endpoint = format!("{url}/v1/opamp");
    let mut py = Proc::spawn(
        &python(),
        &[
            script.display().to_string(),
            endpoint,
            "py-agent".into(),
            out.display().to_string(),
        ],
        dir.path().join("python.log"),
    )
    .unwrap();
    let record = wait_for(
        "the Python agent in the inventory",
        Duration::from_secs(60),
        || agent_record(&url, "py-agent"),
    )
    .unwrap();
    assert_eq!(record["labels"]["site"], "py", "{record}");
    assert_eq!(record["version"], "9.9.9", "{record}");
    let body = "[collect]\ntop_processes = 3\n";
    promote(
        &url,
        dir.path(),
        body,
        &["--selector", "site=py", "--canary", "100%", "--bake", "0s"],
    );
    let got: Value = wait_for(
        "the Python agent receives it",
        Duration::from_secs(60),
        || serde_json::from_slice(&std::fs::read(&out).ok()?).ok(),
    )
    .unwrap();
    assert_eq!(got["fleetset.toml"], body, "{got}");
    wait_for(
        "APPLIED reported and the generation complete",
        Duration::from_secs(60),
        || {
            let a = agent_record(&url, "py-agent")?;
            (a["remote_config_status"] == "APPLIED"
                && a["config_hash"] == sha256_hex(body).as_str()
                && generation(&url, 1)["outcome"] == "complete")
                .then_some(())
        },
    )
    .unwrap();
    let _ = py.signal("TERM");
    let _ = py.wait(Duration::from_secs(10));
}
