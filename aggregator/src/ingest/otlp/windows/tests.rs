//! The write-ahead log on real files: what an Export accepted survives a restart, a torn
//! tail is skipped and counted, an acked window's file goes, a replayed committed window is
//! the same frame again (so the store acks it DUPLICATE and writes nothing), a failed append
//! leaves no partial line, a full WAL refuses a request whole, a WAL of another window length
//! is moved; and the admission limits (time bounds, open windows, series, frame bytes) and seqs.

use super::*;
use crate::ingest::otlp::mapping::Point;
use std::sync::atomic::Ordering::Relaxed;

const W: i64 = 1_700_000_040_000; // a minute boundary, ms
const AGENT: &str = "otel-wal-test";

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(tag: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("fleetset-wal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Dir(d)
}

const LIMITS: WindowLimits = WindowLimits {
    max_skew_ms: 600_000,
    max_age_ms: 7 * 86_400_000,
    max_open_windows: 4096,
    max_series: 10_000,
    max_wal_bytes: 1 << 30,
    max_frame_bytes: 8 << 20,
};

fn open(d: &Dir) -> (OtlpWindows, Arc<Counters>) {
    open_with(d, LIMITS)
}

fn open_with(d: &Dir, limits: WindowLimits) -> (OtlpWindows, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let cfg = OtlpWindowConfig {
        window_ms: 60_000,
        grace_ms: 0,
        wal_dir: d.0.clone(),
        lttb: Downsampler::default(),
        keys: Default::default(),
        limits,
    };
    (OtlpWindows::open(cfg, counters.clone()).unwrap(), counters)
}

/// One data point per (series, ts ms, value), from `AGENT`, at now = `W`.
fn try_export(w: &OtlpWindows, points: &[(&str, i64, f64)]) -> Result<Rejections> {
    let points = points
        .iter()
        .map(|(m, ts, v)| {
            vec![Point {
                metric: (*m).into(),
                ts_ms: *ts,
                value: *v,
                start_ns: 0,
            }]
        })
        .collect();
    w.accept(
        vec![SourcePoints {
            agent_id: AGENT.into(),
            host: HostInfo::default(),
            points,
        }],
        W,
    )
}

/// One Export of `values` for `x.gauge`, one second apart from `W + offset_s` s.
fn export(w: &OtlpWindows, offset_s: i64, values: &[f64]) {
    let points: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| ("x.gauge", W + (offset_s + i as i64) * 1000, *v))
        .collect();
    assert_eq!(try_export(w, &points).unwrap().count, 0);
}

fn wal_file(d: &Dir) -> PathBuf {
    d.0.join(format!("{W}.wal"))
}

/// The closed window's frame and its `x.gauge` values.
fn close(w: &OtlpWindows) -> (pb::Frame, Vec<f64>) {
    let mut frames = w.due(W + 60_000);
    assert_eq!(frames.len(), 1, "one window due");
    let frame = frames.remove(0);
    let snap = fleetset_proto::verify(&frame, &fleetset_proto::VerifyOptions::default())
        .expect("the OTLP frame verifies like an agent's");
    let values = snap.data["x.gauge"].iter().map(|p| p.value).collect();
    (frame, values)
}

fn ack(frame: &pb::Frame, status: AckStatus) -> pb::Ack {
    let h = frame.header.as_ref().unwrap();
    pb::Ack {
        agent_id: h.agent_id.clone(),
        seq: h.seq,
        status: status as i32,
        ..Default::default()
    }
}

#[test]
fn accepted_points_are_on_disk_before_the_answer_and_come_back_after_a_restart() {
    let d = dir("replay");
    let (w, _) = open(&d);
    export(&w, 0, &[1.0, 2.0, 3.0]);
    // Written (and fsynced) before accept returned: one checksummed line.
    let text = std::fs::read_to_string(wal_file(&d)).unwrap();
    assert_eq!(text.lines().count(), 1);
    let (sum, json) = text.lines().next().unwrap().split_once('\t').unwrap();
    assert_eq!(checksum(json), sum);
    drop(w); // a crash: nothing closed, nothing acked

    let (w, counters) = open(&d);
    assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 1);
    assert_eq!(counters.otlp_wal_torn.load(Relaxed), 0);
    assert_eq!(close(&w).1, [1.0, 2.0, 3.0]);
}

#[test]
fn a_torn_last_line_is_skipped_and_counted() {
    let d = dir("torn");
    let (w, _) = open(&d);
    export(&w, 0, &[1.0, 2.0]);
    export(&w, 10, &[7.0]);
    drop(w);
    // The second append was cut short by a crash.
    let len = std::fs::metadata(wal_file(&d)).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(wal_file(&d))
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let (w, counters) = open(&d);
    assert_eq!(counters.otlp_wal_torn.load(Relaxed), 1);
    assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 1);
    assert_eq!(
        close(&w).1,
        [1.0, 2.0],
        "the intact record, nothing of the torn one"
    );
}

#[test]
fn the_wal_file_is_deleted_once_its_window_is_acked() {
    let d = dir("ack");
    let (w, _) = open(&d);
    export(&w, 0, &[5.0]);
    let (frame, _) = close(&w);
    assert!(wal_file(&d).exists(), "kept until the frame is acked");
    let mut other = ack(&frame, AckStatus::Committed);
    other.seq += 1;
    w.acked(&other);
    assert!(wal_file(&d).exists(), "an ack for another window keeps it");
    w.acked(&ack(&frame, AckStatus::Committed));
    assert!(!wal_file(&d).exists(), "deleted after the ack");
    drop(w);
    let (w, counters) = open(&d);
    assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 0);
    assert!(w.due(W + 60_000).is_empty());
}

#[test]
fn replaying_an_already_committed_window_adds_nothing() {
    let d = dir("committed");
    let (w, _) = open(&d);
    export(&w, 0, &[1.0, 4.0]);
    let (first, _) = close(&w);
    // Committed by the store, but the aggregator died before the ack deleted the WAL file.
    drop(w);
    let (w, counters) = open(&d);
    assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 1);
    let (again, _) = close(&w);
    // The same frame: same (agent_id, seq, window) and payload, which the store acks
    // DUPLICATE without writing a row.
    assert_eq!(again.header, first.header);
    assert_eq!(again.payload, first.payload);
    w.acked(&ack(&again, AckStatus::Duplicate));
    assert!(!wal_file(&d).exists(), "a DUPLICATE ack also deletes it");
    drop(w);
    let (w, counters) = open(&d);
    assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 0);
    assert!(w.due(W + 60_000).is_empty(), "nothing left to replay");
}

#[test]
fn a_failed_append_leaves_no_partial_line_and_the_next_export_survives() {
    let d = dir("enospc");
    let (w, counters) = open(&d);
    export(&w, 0, &[1.0]);
    let len = std::fs::metadata(wal_file(&d)).unwrap().len();
    // The disk fills up 10 bytes into the next append.
    *w.fail_after.lock().unwrap() = Some(10);
    let err = try_export(&w, &[("x.gauge", W + 5000, 9.0)]).unwrap_err();
    assert!(format!("{err:#}").contains("no space"), "{err:#}");
    assert_eq!(counters.otlp_wal_write_failures.load(Relaxed), 1);
    assert_eq!(
        std::fs::metadata(wal_file(&d)).unwrap().len(),
        len,
        "truncated back to its length before the append"
    );
    *w.fail_after.lock().unwrap() = None;
    export(&w, 10, &[2.0]);
    drop(w); // a crash
    let (w, counters) = open(&d);
    assert_eq!(counters.otlp_wal_torn.load(Relaxed), 0);
    assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 2);
    assert_eq!(close(&w).1, [1.0, 2.0], "the failed point is not there");
}

#[test]
fn a_full_wal_refuses_the_whole_request_and_writes_nothing() {
    let d = dir("full");
    let (w, counters) = open_with(
        &d,
        WindowLimits {
            max_wal_bytes: 300,
            ..LIMITS
        },
    );
    export(&w, 0, &[1.0]);
    let many: Vec<_> = (0..20).map(|i| ("x.gauge", W + 1000 + i, 1.0)).collect();
    let err = try_export(&w, &many).unwrap_err();
    assert!(format!("{err:#}").contains("otlp.max_wal_bytes"), "{err:#}");
    assert_eq!(counters.otlp_wal_full.load(Relaxed), 1);
    assert_eq!(
        std::fs::read_to_string(wal_file(&d))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(close(&w).1, [1.0]);
}

#[test]
fn points_outside_the_time_bounds_are_refused_before_anything_is_written() {
    let d = dir("time");
    let (w, _) = open(&d);
    let year_2500 = 16_725_225_600_000;
    let r = try_export(
        &w,
        &[
            ("x.gauge", year_2500, 1.0),
            ("x.gauge", W - 8 * 86_400_000, 1.0),
            ("x.gauge", W + 601_000, 1.0),
            ("x.gauge", W, 3.0),
        ],
    )
    .unwrap();
    assert_eq!((r.count, r.by[&Refusal::Time]), (3, 3));
    assert!(r.reasons[0].contains("otlp.max_age"), "{:?}", r.reasons);
    assert_eq!(std::fs::read_dir(&d.0).unwrap().count(), 1, "one WAL file");
    assert_eq!(close(&w).1, [3.0]);
}

#[test]
fn open_windows_series_and_frame_bytes_are_bounded() {
    let d = dir("bounds");
    let (w, _) = open_with(
        &d,
        WindowLimits {
            max_open_windows: 2,
            max_series: 3,
            max_frame_bytes: FRAME_SLACK + 2 * SERIES_BYTES + 300,
            ..LIMITS
        },
    );
    // Three windows: the third is refused.
    let r = try_export(
        &w,
        &[
            ("a", W, 1.0),
            ("a", W - 60_000, 1.0),
            ("a", W - 120_000, 1.0),
        ],
    )
    .unwrap();
    assert_eq!(r.by.get(&Refusal::OpenWindows), Some(&1), "{r:?}");
    // Series: a, b, then c would exceed the frame estimate (2 series + a few points).
    let r = try_export(&w, &[("b", W + 1, 1.0), ("c", W + 2, 1.0)]).unwrap();
    assert_eq!(r.by.get(&Refusal::FrameBytes), Some(&1), "{r:?}");
    drop(w);
    let (w, _) = open_with(
        &d,
        WindowLimits {
            max_open_windows: 2,
            max_series: 2,
            ..LIMITS
        },
    );
    let r = try_export(&w, &[("c", W + 3, 1.0), ("a", W + 4, 2.0)]).unwrap();
    assert_eq!(
        r.by.get(&Refusal::Series),
        Some(&1),
        "after a replay too: {r:?}"
    );
    assert_eq!(r.count, 1, "a known series still takes points");
}

#[test]
fn seqs_of_distinct_windows_never_collide() {
    assert_eq!(seq_of(0, 2000), Some(1));
    assert_eq!(seq_of(2000, 2000), Some(2));
    assert_eq!(seq_of(1000, 2000), None, "unaligned");
    assert_eq!(seq_of(-2000, 2000), None);
    assert_eq!(
        seq_of(i64::MAX / 2 * 2, 2),
        Some(u64::try_from(i64::MAX / 2 + 1).unwrap())
    );
    for start in [0, 2000, 4_000_000] {
        assert_eq!(start_of(seq_of(start, 2000).unwrap(), 2000), Some(start));
    }
}

#[test]
fn a_wal_of_another_window_length_is_moved_into_the_current_windows() {
    let d = dir("rewindow");
    let (w, _) = open(&d);
    // Two points 30 s apart in one 60 s window.
    export(&w, 0, &[1.0]);
    export(&w, 30, &[2.0]);
    drop(w);
    // Restarted with 30 s windows: each point in its own window, each sealed.
    let counters = Arc::new(Counters::default());
    let cfg = OtlpWindowConfig {
        window_ms: 30_000,
        grace_ms: 0,
        wal_dir: d.0.clone(),
        lttb: Downsampler::default(),
        keys: Default::default(),
        limits: LIMITS,
    };
    let w = OtlpWindows::open(cfg.clone(), counters).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&d.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [format!("{W}.wal"), format!("{}.wal", W + 30_000)]);
    let frames = w.due(W + 60_000);
    let seqs: Vec<u64> = frames
        .iter()
        .map(|f| f.header.as_ref().unwrap().seq)
        .collect();
    assert_eq!(seqs.len(), 2, "both windows sealed: {seqs:?}");
    assert_ne!(seqs[0], seqs[1]);
    for f in &frames {
        w.acked(&ack(f, AckStatus::Committed));
    }
    assert_eq!(
        std::fs::read_dir(&d.0).unwrap().count(),
        0,
        "all acked, all gone"
    );
}

#[test]
fn closed_marks_older_than_max_age_are_forgotten() {
    let d = dir("forget");
    let (w, _) = open(&d);
    export(&w, 0, &[1.0]);
    close(&w);
    assert!(w.lock().closed.contains_key(AGENT));
    // Eight days later another source's window closes: the old mark goes.
    let later = W + 8 * 86_400_000;
    let other = SourcePoints {
        agent_id: "otel-other".into(),
        host: HostInfo::default(),
        points: vec![vec![Point {
            metric: "x.gauge".into(),
            ts_ms: later,
            value: 1.0,
            start_ns: 0,
        }]],
    };
    assert_eq!(w.accept(vec![other], later).unwrap().count, 0);
    assert_eq!(w.due(later + 60_000).len(), 1);
    let closed = &w.lock().closed;
    assert!(!closed.contains_key(AGENT) && closed.contains_key("otel-other"));
}
