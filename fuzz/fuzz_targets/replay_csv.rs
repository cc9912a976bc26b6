//! The agent's CSV replay reader (`agent/src/replay.rs`: header planning, then rows): fuzzed
//! bytes read in memory exactly as replay reads a CSV file (no filesystem per execution), with
//! flags chosen by the first byte (separator, numeric timestamp unit, a strftime format,
//! selected value columns). The report must add up and every metric name must be valid.
#![no_main]

use fleetset_agent::fuzzing::{replay_csv, replay_flags};
use fleetset_agent::replay::ReplayFlags;
use fleetset_fuzz::Input;
use fleetset_proto::model::is_valid_metric_name;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The 32 flag combinations, parsed once.
fn flags(choice: u8) -> &'static ReplayFlags {
    static FLAGS: OnceLock<Vec<ReplayFlags>> = OnceLock::new();
    let all = FLAGS.get_or_init(|| {
        (0..32u8)
            .map(|c| {
                let sep = [",", ";", "\t", "|"][usize::from(c % 4)];
                let unit = ["s", "ms", "us", "ns"][usize::from((c >> 2) % 4)];
                let mut args = vec!["--separator", sep, "--timestamp-unit", unit];
                if c & 0x10 != 0 {
                    args.extend([
                        "--timestamp-format",
                        "%d/%m/%Y %H:%M",
                        "--value-columns",
                        "value,b",
                    ]);
                }
                args.push("input.csv");
                replay_flags(&args).expect("replay flags")
            })
            .collect()
    });
    &all[usize::from(choice % 32)]
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = flags(input.u8());
    if let Ok(read) = replay_csv(flags, input.rest()) {
        let r = &read.report;
        assert!(r.bad_timestamps <= r.rows);
        assert!(r.out_of_order + r.repeated_timestamps <= r.rows);
        for m in &read.metrics {
            assert!(is_valid_metric_name(m), "invalid metric name {m:?}");
        }
        assert!(read.samples.iter().all(|&(_, m, _)| m < read.metrics.len()));
        // Only timestamps a window of which can pass the contract (no overflow when windowed).
        let range = 0..fleetset_proto::contract::MAX_TIME_MS;
        assert!(read.samples.iter().all(|&(ts, _, _)| range.contains(&ts)));
        assert!(read.step_ms > 0 || read.samples.is_empty() || r.rows < 2);
    }
});
