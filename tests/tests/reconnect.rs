//! The aggregator is SIGKILLed and restarted on the same port while an agent runs: the agent
//! notices (send error, closed stream or ack timeout), recreates its link, resends what was not
//! acked, and every window its events report as acked is in the store exactly once.

use fleetset_tests::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn survive_restart(transport: &str) {
    let dir = TempDir::new(&format!("reconnect-{transport}"));
    // Fixed ports outside the ephemeral range, so the second aggregator can bind them again.
    let zmq_bind = format!("tcp://127.0.0.1:{}", free_port());
    let grpc_addr = format!("127.0.0.1:{}", free_port());
    let listen = [
        "--commit-interval",
        "100ms",
        "--zmq-bind",
        &zmq_bind,
        "--grpc-listen",
        &grpc_addr,
    ];
    let first = Aggregator::start(dir.path(), &listen).unwrap();
    let (zmq, grpc) = (first.zmq.clone(), first.grpc.clone());
    let endpoint = if transport == "zmq" {
        zmq.clone()
    } else {
        grpc.clone()
    };
    let mut agent = live_agent(dir.path(), "restarts", &endpoint, transport);
    agent.wait_acked(2, Duration::from_secs(30)).unwrap();

    first.proc.signal("KILL").unwrap();
    drop(first);
    std::thread::sleep(Duration::from_millis(1500)); // windows pile up while it is down
    let mut second = Aggregator::start(dir.path(), &listen).unwrap();
    let before = agent.acked().len();
    agent
        .wait_acked(before + 4, Duration::from_secs(40))
        .unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    second.proc.stop(Duration::from_secs(20)).unwrap();

    let events = agent.events();
    let downs = of_kind(&events, "link", "")
        .into_iter()
        .filter(|e| e.what != "connected")
        .count();
    assert!(downs > 0, "no link failure reported: {events:?}");
    assert!(
        of_kind(&events, "link", "connected").len() >= 2,
        "the link was not recreated: {events:?}"
    );
    let acked = acked(&events);
    check_exactly_once(
        &acked,
        &stored_windows(&second.data_dir, "restarts").unwrap(),
    );
    // Nothing was lost on the agent's side either: every frame it produced, 1..=N, was acked once.
    let mut seqs: Vec<u64> = acked.iter().map(|a| a.seq).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=acked.len() as u64).collect::<Vec<_>>(),
        "{events:?}"
    );
}

/// A synthetic agent with 500 ms windows and a 1 s ack timeout.
fn live_agent(dir: &std::path::Path, agent_id: &str, endpoint: &str, transport: &str) -> Proc {
    let extra = [
        "--aggregator",
        endpoint,
        "--transport",
        transport,
        "--set",
        "transport.ack_timeout=1s",
    ];
    synthetic_agent_with(dir, agent_id, ("500ms", "50ms"), &extra)
}

/// Every window the agent reported as acked is stored exactly once, and nothing else is.
fn check_exactly_once(acked: &[Acked], stored: &[(i64, u64)]) {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for (start, _) in stored {
        *counts.entry(*start).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "a window stored twice: {counts:?}"
    );
    let acked_starts: std::collections::BTreeSet<i64> =
        acked.iter().map(|a| a.window_start).collect();
    assert_eq!(
        counts
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        acked_starts
    );
}

#[test]
fn zmq_agent_survives_aggregator_kill() {
    survive_restart("zmq");
}

#[test]
fn grpc_agent_survives_aggregator_kill() {
    survive_restart("grpc");
}

/// A silent aggregator — connection up, no acks, as after a network cut without a reset — is
/// detected by the ack timeout; the agent recreates its link and resends, and once the
/// aggregator answers again every window arrives exactly once.
fn survive_silence(transport: &str) {
    let dir = TempDir::new(&format!("silent-{transport}"));
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "100ms"]).unwrap();
    let endpoint = if transport == "zmq" {
        agg.zmq.clone()
    } else {
        agg.grpc.clone()
    };
    let mut agent = live_agent(dir.path(), "silence", &endpoint, transport);
    agent.wait_acked(2, Duration::from_secs(30)).unwrap();
    agg.proc.signal("STOP").unwrap();
    wait_for("the ack timeout to fire", Duration::from_secs(20), || {
        (!of_kind(&agent.events(), "link", "ack_timeout").is_empty()).then_some(())
    })
    .unwrap();
    agg.proc.signal("CONT").unwrap();
    let before = agent.acked().len();
    agent
        .wait_acked(before + 4, Duration::from_secs(60))
        .unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let events = agent.events();
    // The frames in flight at the timeout went out again on the new link.
    let timeout = of_kind(&events, "link", "ack_timeout")[0].clone();
    let after: Vec<&Event> = events
        .iter()
        .skip_while(|e| **e != timeout)
        .filter(|e| e.event == "sent")
        .collect();
    assert!(
        after.iter().any(|e| e.resend),
        "no resend after the ack timeout: {events:?}"
    );
    check_exactly_once(
        &acked(&events),
        &stored_windows(&agg.data_dir, "silence").unwrap(),
    );
}

#[test]
fn zmq_agent_survives_a_silent_aggregator() {
    survive_silence("zmq");
}

#[test]
fn grpc_agent_survives_a_silent_aggregator() {
    survive_silence("grpc");
}
