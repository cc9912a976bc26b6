//! Seed 000's streaming API on real processes: the aggregator's WebSocket `GET /v1/stream` read
//! by a client we did not write (Python `websockets`, `tests/python/ws_stream.py`) in all three
//! formats with the agent, label and metric filters and `since` (history, then live, no gap and
//! no duplicate); tokens (401, 403, header and subprotocol forms, the selector); the shared
//! `live.max_subscribers` pool; a quiet subscriber kept open by pings past the listener's idle
//! timeout; and `export --stream` into a FIFO read by this test (JSON Lines, length-prefixed
//! Protobuf, a stalled reader told what it missed) and served as WebSocket. Needs
//! `FLEETSET_PYTHON` (websockets, msgpack, grpcio-tools).

use fleetset_proto::pb;
use fleetset_tests::*;
use prost::Message;
use std::io::{BufRead, Read};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ws_url(agg: &Aggregator, query: &str) -> String {
    format!("ws://{}/v1/stream?{query}", agg.metrics)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim().lines().last().unwrap_or("null")).unwrap()
}

/// `ws_stream.py collect URL N FORMAT extra…`: its JSON answer.
fn collect(url: &str, n: usize, format: &str, extra: &[&str]) -> serde_json::Value {
    let n = n.to_string();
    json(&run_python_script(
        "ws_stream.py",
        &[&["collect", url, &n, format], extra].concat(),
    ))
}

/// `ws_stream.py status URL extra…`: the handshake's HTTP status (101: upgraded) and subprotocol.
fn status(url: &str, extra: &[&str]) -> (u64, serde_json::Value) {
    let v = json(&run_python_script(
        "ws_stream.py",
        &[&["status", url], extra].concat(),
    ));
    (v["status"].as_u64().unwrap(), v["subprotocol"].clone())
}

fn windows(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["windows"].as_array().unwrap()
}

fn counter(agg: &Aggregator, name: &str) -> u64 {
    aggregator_counters(&agg.data_dir)
        .and_then(|c| c[name].as_u64())
        .unwrap_or(0)
}

/// Asserts `seqs` run 1, 2, 3, … (no gap, no duplicate), history first then only live.
fn assert_history_then_live(ws: &[serde_json::Value], min_history: usize) {
    let seqs: Vec<u64> = ws.iter().map(|w| w["seq"].as_u64().unwrap()).collect();
    let hist: Vec<bool> = ws.iter().map(|w| w["historical"] == true).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate: {seqs:?} {hist:?}"
    );
    let first_live = hist.iter().position(|h| !h).expect("live windows follow");
    assert!(first_live >= min_history, "history first: {hist:?}");
    assert!(hist[first_live..].iter().all(|h| !h), "then live: {hist:?}");
}

#[test]
fn websocket_clients_get_their_windows_in_each_format_with_since_then_live() {
    let dir = TempDir::new("ws-stream");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "200ms"]).unwrap();
    let mut a1 = synthetic_agent(dir.path(), "a1", "eu-1", &agg.zmq, "300ms");
    let mut a2 = synthetic_agent(dir.path(), "a2", "us-1", &agg.zmq, "300ms");
    a1.wait_acked(6, Duration::from_secs(30)).unwrap();

    // JSON Lines, one agent, one metric, since the beginning: stored windows, then live.
    let v = collect(
        &ws_url(&agg, "format=jsonlines&agent=a1&metric=cpu_percent&since=1"),
        12,
        "jsonlines",
        &[],
    );
    let ws = windows(&v);
    for w in ws {
        assert_eq!(w["agent_id"], "a1", "agent filter: {w}");
        assert_eq!(w["metrics"], serde_json::json!(["cpu_percent"]), "{w}");
        assert_eq!(w["stats"], serde_json::json!(["cpu_percent"]), "{w}");
        assert_eq!(w["labels"]["site"], "eu-1");
        assert!(
            w["points"].as_u64().unwrap() > 0 && w["int_ts"] == true,
            "{w}"
        );
        assert_eq!(w["payload_sha256"].as_str().unwrap().len(), 64);
        assert!(w["end"].as_i64() > w["start"].as_i64());
        assert_eq!(
            w["received_at_us"].as_i64().unwrap() > 0,
            w["historical"] == false
        );
    }
    assert_history_then_live(ws, 6);

    // `since` as RFC 3339 (1.5 s ago: a few stored windows, then live), by label, MessagePack.
    let since = chrono::DateTime::from_timestamp_millis(fleetset_core::time::now_ms() - 1500)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let v = collect(
        &ws_url(
            &agg,
            &format!("format=msgpack&label=site:us-1&since={since}"),
        ),
        10,
        "msgpack",
        &[],
    );
    let ws = windows(&v);
    for w in ws {
        assert_eq!(w["agent_id"], "a2", "label filter: {w}");
        assert_eq!(w["labels"]["site"], "us-1");
        assert!(
            w["metrics"].as_array().unwrap().len() > 1,
            "no metric filter: {w}"
        );
        assert!(
            !w["hostname"].as_str().unwrap().is_empty(),
            "the snapshot's host: {w}"
        );
    }
    assert!(ws.iter().any(|w| w["historical"] == true));
    assert!(ws.iter().any(|w| w["historical"] == false));

    // Protobuf SubscribeResponses (live): the raw payload verifies against its SHA-256.
    let v = collect(
        &ws_url(&agg, "format=protobuf&agent=a2,nobody"),
        3,
        "protobuf",
        &[],
    );
    for w in windows(&v) {
        assert_eq!(w["agent_id"], "a2");
        assert_eq!(w["historical"], false);
        assert_eq!(w["payload_ok"], true, "{w}");
    }

    // Bad queries: 400, counted; a plain GET is no WebSocket.
    for q in ["format=xml", "agents=a1", "since=later", "label=site"] {
        assert_eq!(status(&ws_url(&agg, q), &[]).0, 400, "{q}");
    }
    let (code, _) = http_get_with(&agg.metrics, "/v1/stream", &[]).unwrap();
    assert!(code >= 400, "{code}");
    wait_for(
        "stream_bad_requests counted",
        Duration::from_secs(15),
        || (counter(&agg, "stream_bad_requests") >= 5).then_some(()),
    )
    .unwrap();
    a1.stop(Duration::from_secs(20)).unwrap();
    a2.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn the_stream_needs_a_subscribe_token_by_header_or_subprotocol_and_keeps_its_selector() {
    let dir = TempDir::new("ws-tokens");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let issue = |args: &[&str]| {
        let k = keys.to_str().unwrap();
        run_pki(&[&["issue-token", "--dir", k], args].concat())
    };
    let eu = issue(&[
        "--scope",
        "subscribe",
        "--selector",
        "site=eu-1",
        "--name",
        "eu",
    ]);
    let otlp = issue(&["--scope", "otlp", "--name", "sdk"]);
    let file = format!(
        "security.tokens.file={}",
        keys.join("tokens.toml").display()
    );
    let mut agg = Aggregator::start(dir.path(), &["--set", &file]).unwrap();
    let mut a1 = synthetic_agent(dir.path(), "a1", "eu-1", &agg.zmq, "300ms");
    let mut a2 = synthetic_agent(dir.path(), "a2", "us-1", &agg.zmq, "300ms");
    let url = ws_url(&agg, "format=jsonlines");

    assert_eq!(status(&url, &[]).0, 401, "no token");
    assert_eq!(
        status(&url, &["--header", "fst_wrong"]).0,
        401,
        "unknown token"
    );
    assert_eq!(
        status(&url, &["--subprotocol", &otlp]).0,
        403,
        "no subscribe scope"
    );
    // The header form, then the browser form: answered with subprotocol fleetset.v1.
    let v = collect(&url, 4, "jsonlines", &["--header", &eu]);
    let v2 = collect(&url, 4, "jsonlines", &["--subprotocol", &eu]);
    assert_eq!(v2["subprotocol"], "fleetset.v1");
    for w in windows(&v).iter().chain(windows(&v2)) {
        assert_eq!(w["labels"]["site"], "eu-1", "the selector restricts: {w}");
    }
    // Asking for another site under an eu-1 grant matches nothing: only pings arrive.
    let other = json(&run_python_script(
        "ws_stream.py",
        &[
            "quiet",
            &ws_url(&agg, "label=site:us-1"),
            "2",
            "--header",
            &eu,
        ],
    ));
    assert_eq!(other["messages"], 0, "{other}");
    wait_for("auth refusals counted", Duration::from_secs(15), || {
        (counter(&agg, "auth_unauthenticated") >= 2 && counter(&agg, "auth_permission_denied") >= 1)
            .then_some(())
    })
    .unwrap();
    let log = std::fs::read_to_string(&agg.proc.log).unwrap();
    assert!(
        !log.contains(&eu) && !log.contains(&otlp),
        "tokens never logged"
    );
    a1.stop(Duration::from_secs(20)).unwrap();
    a2.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_websocket_share_max_subscribers_and_quiet_clients_stay_open() {
    let dir = TempDir::new("ws-slots");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--set",
            "live.max_subscribers=1",
            "--set",
            "telemetry.idle_timeout=1s",
        ],
    )
    .unwrap();
    // A gRPC Subscribe holds the only permit: the WebSocket is refused 503 and counted.
    let grpc = pb::live_client::LiveClient::connect(agg.grpc.clone())
        .await
        .unwrap()
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let url = ws_url(&agg, "agent=nobody");
    let u = url.clone();
    let (code, _) = tokio::task::spawn_blocking(move || status(&u, &[]))
        .await
        .unwrap();
    assert_eq!(code, 503);
    // The gRPC client leaves: its permit comes back though no window ever matched.
    drop(grpc);
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("a free permit", Duration::from_secs(15), || {
            (status(&u, &[]).0 == 101).then_some(())
        })
    })
    .await
    .unwrap()
    .unwrap();
    // Nothing matches for 4 s, four times the idle timeout: the server's pings keep it open.
    let u = url.clone();
    let quiet = tokio::task::spawn_blocking(move || {
        json(&run_python_script("ws_stream.py", &["quiet", &u, "4"]))
    })
    .await
    .unwrap();
    assert_eq!(quiet["open"], true, "{quiet}");
    let agg_dir = agg.data_dir.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("live_subscribers_refused", Duration::from_secs(15), || {
            aggregator_counters(&agg_dir)
                .and_then(|c| c["live_subscribers_refused"].as_u64())
                .filter(|n| *n >= 1)
        })
    })
    .await
    .unwrap()
    .unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

/// `fleetset-aggregator export --stream ARGS…`, stderr to `dir/<log>.log`.
fn export_stream(dir: &Path, log: &str, args: &[&str]) -> Proc {
    let args: Vec<String> = ["export", "--stream"]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect();
    Proc::spawn(
        &bin("fleetset-aggregator"),
        &args,
        dir.join(format!("{log}.log")),
    )
    .unwrap()
}

/// Opens the FIFO `path` for reading once `export --stream` made it (bounded wait).
fn open_fifo(path: &Path) -> std::fs::File {
    use std::os::unix::fs::FileTypeExt;
    wait_for("the FIFO", Duration::from_secs(20), || {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.file_type().is_fifo())
    })
    .unwrap();
    // Opening waits for the writer, which is waiting for us.
    std::fs::File::open(path).unwrap()
}

#[test]
fn export_stream_writes_windows_to_a_fifo_with_since_and_filters() {
    let dir = TempDir::new("fifo");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "200ms"]).unwrap();
    let mut a1 = synthetic_agent(dir.path(), "a1", "eu-1", &agg.zmq, "300ms");
    let mut a2 = synthetic_agent(dir.path(), "a2", "us-1", &agg.zmq, "300ms");
    a1.wait_acked(5, Duration::from_secs(30)).unwrap();

    // JSON Lines, newline-delimited, clear identifiers (--no-anonymize).
    let fifo = dir.path().join("windows.fifo");
    let mut p = export_stream(
        dir.path(),
        "export-json",
        &[
            "--endpoint",
            &agg.grpc,
            "--fifo",
            fifo.to_str().unwrap(),
            "--format",
            "jsonlines",
            "--agents",
            "a1",
            "--metrics",
            "cpu_percent",
            "--since",
            "1",
            "--count",
            "10",
            "--no-anonymize",
        ],
    );
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        let f = open_fifo(&fifo);
        let mode = std::fs::metadata(&fifo).unwrap().permissions().mode() & 0o777;
        let lines: Vec<serde_json::Value> = std::io::BufReader::new(f)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        assert_eq!(lines.len(), 10, "--count 10, then the writer closes");
        let ws: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                assert_eq!(l["agent_id"], "a1", "{l}");
                assert_eq!(l["data"].as_object().unwrap().len(), 1, "{l}");
                assert!(l["stats"]["cpu_percent"]["mean"].is_f64(), "{l}");
                serde_json::json!({"seq": l["seq"], "historical": l["historical"]})
            })
            .collect();
        assert_history_then_live(&ws, 5);
        mode
    };
    assert_eq!(mode, 0o600, "mkfifo mode");
    assert!(p.wait(Duration::from_secs(20)).unwrap(), "{}", p.log_text());

    // Protobuf, length-prefixed, anonymized by default (the salt in the aggregator's data dir).
    let fifo = dir.path().join("pb.fifo");
    let mut p = export_stream(
        dir.path(),
        "export-pb",
        &[
            "--endpoint",
            &agg.grpc,
            "--fifo",
            fifo.to_str().unwrap(),
            "--format",
            "protobuf",
            "--label",
            "site=us-1",
            "--count",
            "3",
            "--data-dir",
            agg.data_dir.to_str().unwrap(),
        ],
    );
    let mut f = open_fifo(&fifo);
    for _ in 0..3 {
        let mut len = [0u8; 4];
        f.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
        f.read_exact(&mut msg).unwrap();
        let r = pb::SubscribeResponse::decode(msg.as_slice()).unwrap();
        let Some(pb::subscribe_response::Event::Snapshot(s)) = r.event else {
            panic!("{r:?}")
        };
        assert_eq!(s.host.as_ref().unwrap().labels["site"], "us-1");
        assert!(
            s.agent_id != "a2" && s.agent_id.len() == 16,
            "hashed: {}",
            s.agent_id
        );
        assert!(
            r.frame_payload.is_empty(),
            "the clear payload is not exported"
        );
    }
    assert!(p.wait(Duration::from_secs(20)).unwrap(), "{}", p.log_text());
    drop(f);

    // An existing regular file is not clobbered.
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "keep").unwrap();
    let out = Command::new(bin("fleetset-aggregator"))
        .args([
            "export",
            "--stream",
            "--no-anonymize",
            "--endpoint",
            &agg.grpc,
            "--fifo",
        ])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a named pipe"));
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep");
    a1.stop(Duration::from_secs(20)).unwrap();
    a2.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn a_stalled_fifo_reader_costs_a_bounded_queue_and_is_told_what_it_missed() {
    let dir = TempDir::new("fifo-slow");
    let mut agg = Aggregator::start(
        dir.path(),
        &["--commit-interval", "50ms", "--set", "live.queue=4"],
    )
    .unwrap();
    let fifo = dir.path().join("slow.fifo");
    let mut p = export_stream(
        dir.path(),
        "export-slow",
        &[
            "--endpoint",
            &agg.grpc,
            "--fifo",
            fifo.to_str().unwrap(),
            "--no-anonymize",
        ],
    );
    let f = open_fifo(&fifo);
    // 6,000 five-minute windows of 300 kept points (~7 KB frames, ~15 KB as JSON) replayed as
    // fast as the agent can; the reader reads nothing meanwhile.
    let csv = dir.path().join("load.csv");
    write_csv(&csv, 1_699_999_800, 6000, 300, 300).unwrap();
    let mut r = replay_agent(
        dir.path(),
        &csv,
        "load",
        &agg.zmq,
        "5m",
        &["--set", "window.lttb.threshold=300"],
    );
    assert!(
        r.wait(Duration::from_secs(240)).unwrap(),
        "{}",
        r.log_text()
    );
    let rss = peak_rss_kib(p.pid()).unwrap();
    eprintln!("export --stream peak RSS with a stalled reader: {rss} KiB");
    // Now read what is there: some windows, then a lag notice for the ones skipped.
    let mut lines = std::io::BufReader::new(f).lines();
    let (mut windows, mut lag) = (0, 0);
    while lag == 0 && windows < 6000 {
        let l: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        match l["lag"].as_u64() {
            Some(n) => lag = n,
            None => windows += 1,
        }
    }
    assert!(lag > 0, "a lag notice after {windows} windows");
    // Buffered for it: the pipe (64 KiB), the export's queue (16), the 2 MiB HTTP/2 stream
    // window, the aggregator's queue (16) and ring (4) — about 180 of these windows.
    assert!(
        windows < 300,
        "{windows} windows were buffered for the stalled reader"
    );
    // The export's memory stayed bounded: its queue and HTTP/2 window (about 38 MB peak for
    // this debug build, most of it the runtime), not the 6,000 windows (over 40 MB of payload
    // alone, 90 MB as JSON) an unbounded queue would keep.
    assert!(rss < 64 * 1024, "export --stream peak RSS {rss} KiB");
    p.signal("TERM").unwrap();
    assert!(p.wait(Duration::from_secs(20)).unwrap(), "{}", p.log_text());
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn export_stream_serves_its_windows_over_websocket() {
    let dir = TempDir::new("export-ws");
    let mut agg = Aggregator::start(dir.path(), &[]).unwrap();
    let mut a1 = synthetic_agent(dir.path(), "a1", "eu-1", &agg.zmq, "300ms");
    let mut a2 = synthetic_agent(dir.path(), "a2", "us-1", &agg.zmq, "300ms");
    let port = free_port();
    let mut p = export_stream(
        dir.path(),
        "export-ws",
        &[
            "--endpoint",
            &agg.grpc,
            "--port",
            &port.to_string(),
            "--format",
            "jsonlines",
            "--agents",
            "a2",
            "--no-anonymize",
        ],
    );
    let base = format!("ws://127.0.0.1:{port}");
    wait_for("the export's listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap();
    let v = collect(&format!("{base}/"), 3, "jsonlines", &[]);
    let m = collect(
        &format!("{base}/v1/stream?format=msgpack"),
        3,
        "msgpack",
        &[],
    );
    for w in windows(&v).iter().chain(windows(&m)) {
        assert_eq!(w["agent_id"], "a2", "the export's --agents: {w}");
    }
    assert_eq!(
        status(&format!("{base}/?agent=a1"), &[]).0,
        400,
        "filters are the flags'"
    );
    p.signal("TERM").unwrap();
    assert!(p.wait(Duration::from_secs(20)).unwrap(), "{}", p.log_text());
    a1.stop(Duration::from_secs(20)).unwrap();
    a2.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}
