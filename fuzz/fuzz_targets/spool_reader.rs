//! The agent's spool file reader (`agent/src/spool.rs`, as on open): fuzzed bytes written as a
//! `<seq>.frame` file and read back and verified. With the first byte odd, the rest is decoded
//! as a frame whose checksum is fixed before writing, so the reader's verification and
//! decoding are reached. What it accepts must verify and carry the file's seq.
#![no_main]

use fleetset_agent::fuzzing::spool_file;
use fleetset_fuzz::{reseal, Input};
use fleetset_proto::{pb, verify, VerifyOptions};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A directory of this process under the temp dir (tmpfs if TMPDIR points there).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("fleetset-fuzz-spool-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8();
    let rest = input.rest();
    let (bytes, seq) = match (mode % 2 == 1).then(|| pb::Frame::decode(rest)) {
        Some(Ok(mut frame)) => {
            reseal(&mut frame, None);
            let seq = frame.header.as_ref().map_or(1, |h| h.seq);
            (frame.encode_to_vec(), seq)
        }
        _ => (rest.to_vec(), 1),
    };
    let path = dir().join(format!("{seq:020}.frame"));
    std::fs::write(&path, &bytes).expect("write spool file");
    if let Ok((frame, start)) = spool_file(&path, seq) {
        let opts = VerifyOptions {
            max_frame_bytes: usize::MAX,
            max_decompressed_bytes: usize::MAX / 2,
            keys: fleetset_proto::HmacKeys::None,
        };
        let s = verify(&frame, &opts).expect("a loaded spool frame verifies");
        assert_eq!((s.seq, s.start), (seq, start));
    }
    let _ = std::fs::remove_file(&path);
});
