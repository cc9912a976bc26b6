use super::*;
use crate::model::{Point, ProcessRecord};

const NOW: i64 = 1_700_000_000_000;

fn good() -> Snapshot {
    let mut s = Snapshot {
        agent_id: "web-01-3fa2c9e1".into(),
        seq: 1,
        start: NOW - 60_000,
        end: NOW,
        ..Default::default()
    };
    let pts: Vec<Point> = (0..6)
        .map(|i| Point {
            ts_ms: s.start + i * 10_000,
            value: i as f64,
        })
        .collect();
    let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
    s.stats.insert(
        "cpu_percent".into(),
        WindowStats::from_values(&values).unwrap(),
    );
    s.data.insert("cpu_percent".into(), pts);
    s.host.labels.insert("site".into(), "eu-1".into());
    s
}

fn check(s: &Snapshot) -> Result<(), Violation> {
    Contract::default().check(s, NOW)
}

fn invalid_with(s: &Snapshot, needle: &str) {
    match check(s) {
        Err(Violation::Invalid(e)) => assert!(e.contains(needle), "{e:?} lacks {needle:?}"),
        other => panic!("expected Invalid({needle}), got {other:?}"),
    }
}

#[test]
fn a_real_window_passes() {
    check(&good()).unwrap();
    let mut s = good();
    s.agent_id = "otel-web-1-example-3fa2c9e1".into();
    check(&s).unwrap();
    s.agent_id = format!("{}-3fa2c9e1", "h".repeat(64));
    check(&s).unwrap();
    // A years-old replay (NAB data from 2014) passes: no age bound by default.
    s.start = 1_393_000_000_000;
    s.end = s.start + 300_000;
    s.data.clear();
    s.stats.clear();
    check(&s).unwrap();
}

#[test]
fn ids_seqs_and_windows_outside_the_contract_are_named() {
    for id in ["", "../../etc/x\n\0", ".hidden", "a b", &"a".repeat(129)] {
        let mut s = good();
        s.agent_id = id.into();
        invalid_with(&s, "agent_id");
    }
    for seq in [0, 1 << 63, u64::MAX] {
        let mut s = good();
        s.seq = seq;
        invalid_with(&s, "seq");
    }
    for (start, end) in [(i64::MIN, i64::MAX), (5, 5), (-1, 10), (0, MAX_TIME_MS + 1)] {
        let mut s = good();
        (s.start, s.end) = (start, end);
        s.data.clear();
        s.stats.clear();
        invalid_with(&s, "window");
    }
    let mut s = good();
    s.end = s.start + 86_400_001;
    invalid_with(&s, "longer than");
    s.start = NOW + 3_600_000;
    s.end = s.start + 60_000;
    s.data.clear();
    s.stats.clear();
    assert!(matches!(check(&s), Err(Violation::OutOfRange(_))));
    let aged = Contract {
        max_age_ms: Some(86_400_000),
        ..Default::default()
    };
    s.start = NOW - 2 * 86_400_000;
    s.end = s.start + 60_000;
    assert!(matches!(aged.check(&s, NOW), Err(Violation::OutOfRange(_))));
}

#[test]
fn stats_must_be_finite_and_consistent() {
    let bad = [
        |s: &mut WindowStats| s.mean = f64::INFINITY,
        |s: &mut WindowStats| s.count = u64::MAX,
        |s: &mut WindowStats| s.count = 0,
        |s: &mut WindowStats| s.mean = s.max + 1.0,
        |s: &mut WindowStats| s.first = s.min - 1.0,
        |s: &mut WindowStats| s.std = Some(-1.0),
        |s: &mut WindowStats| s.min = f64::NAN,
    ];
    for f in bad {
        let mut s = good();
        f(s.stats.get_mut("cpu_percent").unwrap());
        invalid_with(&s, "cpu_percent");
    }
}

#[test]
fn names_caps_and_sizes_are_bounded() {
    let mut s = good();
    s.host.labels.insert("x__count".into(), "v".into());
    invalid_with(&s, "label key");
    for key in ["Site", "_x", "a-b", "a.b", ""] {
        let mut s = good();
        s.host.labels.insert(key.into(), "v".into());
        invalid_with(&s, "label key");
    }
    let mut s = good();
    s.host.labels.insert("site".into(), "v".repeat(257));
    invalid_with(&s, "label site");
    let mut s = good();
    s.host.hostname = "a\nb".into();
    invalid_with(&s, "control");
    let mut s = good();
    for i in 0..33 {
        s.host.labels.insert(format!("k{i}"), String::new());
    }
    invalid_with(&s, "labels, limit 32");
    let mut s = good();
    s.processes = vec![ProcessRecord::default(); 101];
    invalid_with(&s, "processes, limit 100");
    let mut s = good();
    for i in 0..1001 {
        s.data.insert(format!("m{i}"), Vec::new());
    }
    invalid_with(&s, "metrics, limit 1000");
}

#[test]
fn unchecked_strings_are_shown_bounded_and_escaped() {
    let long = "x".repeat(1 << 20);
    let shown_long = shown(&long);
    assert!(shown_long.len() < 100, "{}", shown_long.len());
    assert_eq!(shown("a\nb\0"), "a\\nb\\0");
    let mut s = good();
    s.agent_id = long;
    match check(&s) {
        Err(Violation::Invalid(e)) => assert!(e.len() < 300, "{}", e.len()),
        other => panic!("{other:?}"),
    }
}
