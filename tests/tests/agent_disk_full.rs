//! A full disk never stops the agent. Its state directory (and so its spool) is a small tmpfs;
//! the aggregator is down, so frames pile up until the disk is full. The agent keeps sampling,
//! deletes its oldest spooled frames to make room (counted, `dropped` events with reason
//! `disk_full`) and never exits. When the aggregator comes up — with the disk still full —
//! delivery resumes by itself: acks free space, new windows are spooled and delivered. Then
//! another file fills the disk so that not even the newest frame fits: frames are held in
//! memory (`held` events) and, once the file is gone, spooled and delivered. Last, the agent is
//! SIGKILLed while frames are held and `next_seq` cannot be written, and restarted: it reuses no
//! seq. Every window acked is stored exactly once, and no seq is acked for two windows.
//!
//! Needs root (it mounts a 96 KiB tmpfs, unmounted on drop); run as root here and in CI.
//! Without root it fails, naming why.

use fleetset_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        assert!(
            out.status.success(),
            "this test must mount a tmpfs (run it as root; `id -u` says {uid:?}): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A file that fills the filesystem it is on.
struct Filler {
    path: PathBuf,
    file: std::fs::File,
}

impl Filler {
    /// Creates `dir/filler` and fills the filesystem with it.
    fn new(dir: &Path) -> Filler {
        let path = dir.join("filler");
        let file = std::fs::File::create(&path).unwrap();
        let mut f = Filler { path, file };
        f.top_up();
        f
    }

    /// Appends to the file until a write fails for lack of space (taking whatever space the
    /// agent freed since).
    fn top_up(&mut self) {
        use std::io::Write;
        let block = [0u8; 4096];
        loop {
            match self.file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
    }

    /// Deletes the file: the space is back.
    fn remove(self) {
        std::fs::remove_file(&self.path).unwrap();
    }
}

fn counter(state: &Path, name: &str) -> u64 {
    agent_counters(state).map_or(0, |c| c[name].as_u64().unwrap_or(0))
}

/// The seqs of the events of kind `event`.
fn seqs(events: &[Event], event: &str) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| e.event == event)
        .filter_map(|e| e.seq)
        .collect()
}

#[test]
fn a_full_disk_never_stops_the_agent_and_it_recovers_by_itself() {
    let dir = TempDir::new("disk-full");
    let id = "diskfull";
    let state = dir.path().join(id);
    let disk = Tmpfs::mount(&state, "96k");
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let extra = [
        "--aggregator",
        &endpoint,
        "--set",
        "transport.ack_timeout=1s",
    ];
    let mut agent = synthetic_agent_with(dir.path(), id, ("500ms", "50ms"), &extra);

    // 1. Aggregator down: frames pile up until the tmpfs is full, then the oldest make room.
    let drops = |a: &Proc| {
        a.events()
            .iter()
            .filter(|e| e.event == "dropped" && e.reason == "disk_full")
            .count()
    };
    wait_for(
        "frames dropped for a full disk",
        Duration::from_secs(90),
        || (drops(&agent) >= 5 || !agent.is_running()).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log_text()));
    assert!(
        agent.is_running(),
        "the agent exited on a full disk:\n{}",
        agent.log_text()
    );
    let framed_before = seqs(&agent.events(), "framed").len();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        seqs(&agent.events(), "framed").len() >= framed_before + 2,
        "the agent stopped framing windows on a full disk"
    );

    // 2. The aggregator comes up, the disk still full: delivery resumes by itself.
    let bind = format!("tcp://127.0.0.1:{port}");
    let mut agg = Aggregator::start(
        dir.path(),
        &["--commit-interval", "100ms", "--zmq-bind", &bind],
    )
    .unwrap();
    let framed_at_start = seqs(&agent.events(), "framed").last().copied().unwrap_or(0);
    wait_for(
        "windows framed after the aggregator came up to be acked",
        Duration::from_secs(60),
        || {
            let fresh = agent
                .acked()
                .iter()
                .filter(|a| a.seq > framed_at_start)
                .count();
            (fresh >= 4).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log_text()));
    assert!(
        agent.is_running(),
        "the agent exited:\n{}",
        agent.log_text()
    );
    wait_for(
        "the status file to show the drops",
        Duration::from_secs(30),
        || (counter(&state, "frames_dropped_disk_full") >= 5).then_some(()),
    )
    .unwrap();

    // 3. Something else fills the disk: not even the newest frame fits, so frames are held in
    //    memory; once the space is back they are spooled and delivered.
    // Acked frames free space the next frame can use, so keep the disk topped up.
    let mut filler = Filler::new(&state);
    wait_for("frames held in memory", Duration::from_secs(30), || {
        filler.top_up();
        (seqs(&agent.events(), "held").len() >= 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log_text()));
    assert!(
        agent.is_running(),
        "the agent exited:\n{}",
        agent.log_text()
    );
    filler.remove();
    let held = seqs(&agent.events(), "held");
    wait_for(
        "the held frames to be delivered",
        Duration::from_secs(60),
        || {
            let acked: BTreeSet<u64> = agent.acked().iter().map(|a| a.seq).collect();
            held.is_subset(&acked).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}; held {held:?}; log:\n{}", agent.log_text()));
    wait_for(
        "the status file to count the failed writes, nothing held",
        Duration::from_secs(30),
        || {
            (counter(&state, "spool_write_failures") > 0
                && counter(&state, "state_write_failures") > 0
                && counter(&state, "spool_held_frames") == 0)
                .then_some(())
        },
    )
    .unwrap();
    let last = seqs(&agent.events(), "framed").last().copied().unwrap_or(0);
    agent
        .wait_acked(agent.acked().len() + 2, Duration::from_secs(30))
        .unwrap();

    // Holding frames costs at most spool.memory_bytes (4 MiB); the agent stays small (about
    // 20 MiB here, as with a healthy disk).
    let peak_kib = peak_rss_kib(agent.pid()).unwrap_or(0);
    eprintln!("agent peak RSS {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "agent peak RSS {peak_kib} KiB");

    // 4. The disk fills again and the agent is killed while frames are held and `next_seq`
    //    cannot be written: the restarted agent must not reuse a seq the aggregator has seen
    //    (it would take the new window for a duplicate and lose it).
    let held_before = seqs(&agent.events(), "held").len();
    let mut filler = Filler::new(&state);
    wait_for("frames held again", Duration::from_secs(30), || {
        filler.top_up();
        (seqs(&agent.events(), "held").len() >= held_before + 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log_text()));
    agent.signal("KILL").unwrap();
    assert!(!agent.wait(Duration::from_secs(10)).unwrap());
    filler.remove();
    let acked_before = agent.acked().len();
    let mut agent = synthetic_agent_with(dir.path(), id, ("500ms", "50ms"), &extra);
    agent
        .wait_acked(acked_before + 4, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log_text()));

    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let events = agent.events();
    let acked = acked(&events);
    assert!(acked.iter().any(|a| a.seq > last), "delivery went on");
    // No seq was acked for two windows (a reused seq is acked DUPLICATE and its window lost),
    // and each delivered window is stored exactly once.
    let mut by_seq: BTreeMap<u64, BTreeSet<i64>> = BTreeMap::new();
    for a in &acked {
        by_seq.entry(a.seq).or_default().insert(a.window_start);
    }
    assert!(
        by_seq.values().all(|w| w.len() == 1),
        "a seq reused: {by_seq:?}"
    );
    let stored = stored_windows(&agg.data_dir, id).unwrap();
    let mut per_window: BTreeMap<i64, usize> = BTreeMap::new();
    for (start, _) in &stored {
        *per_window.entry(*start).or_default() += 1;
    }
    assert!(per_window.values().all(|&n| n == 1), "{per_window:?}");
    let acked_windows: BTreeSet<i64> = acked.iter().map(|a| a.window_start).collect();
    let stored_windows: BTreeSet<i64> = per_window.keys().copied().collect();
    let missing: Vec<&i64> = acked_windows.difference(&stored_windows).collect();
    assert!(
        missing.is_empty(),
        "windows acked but not stored (lost to a reused seq): {missing:?}"
    );
    // A window stored but never acked must be one the agent dropped for the full disk after
    // sending it: libzmq queued its last send while the aggregator was down and delivered it
    // once it came up, when the agent no longer tracked it (nothing lost, counted as dropped).
    let dropped: BTreeSet<i64> = events
        .iter()
        .filter(|e| e.event == "dropped")
        .filter_map(|e| e.window_start)
        .collect();
    let unexplained: Vec<&i64> = stored_windows
        .difference(&acked_windows)
        .filter(|w| !dropped.contains(w))
        .collect();
    assert!(
        unexplained.is_empty(),
        "windows stored but neither acked nor dropped: {unexplained:?}"
    );
    drop(disk);
}
