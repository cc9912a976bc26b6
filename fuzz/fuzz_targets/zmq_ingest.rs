//! ZeroMQ ingest: the input split into the parts of one ROUTER message (first byte: number of
//! parts 0–4 and whether to fix the checksum; each part but the last prefixed by its u16
//! length), handled as `aggregator/src/ingest/zmq.rs` does — identity, then exactly
//! `[header, payload]` through `from_parts` into the real `Admission`, anything else rejected
//! as a malformed header — and every ack back to the identity checked to be bounded.
#![no_main]

use bytes::Bytes;
use fleetset_aggregator::fuzzing::AdmissionHarness;
use fleetset_aggregator::ingest::AckTo;
use fleetset_fuzz::{check_accepted, check_ack, contract, reseal, verify_options, Input};
use fleetset_proto::frame::from_parts;
use fleetset_proto::{pb, FrameError};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use tokio::sync::mpsc;

thread_local! {
    static HARNESS: RefCell<AdmissionHarness> = RefCell::new(
        AdmissionHarness::new(verify_options(1, false), contract(1)).expect("runtime"),
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let first = input.u8();
    let n = usize::from(first % 5);
    let mut parts: Vec<Bytes> = (1..n)
        .map(|_| Bytes::copy_from_slice(input.part()))
        .collect();
    if n > 0 {
        parts.push(Bytes::copy_from_slice(input.rest()));
    }
    let mut parts = parts.into_iter();
    let Some(identity) = parts.next() else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(Bytes, pb::Ack)>();
    let reply = AckTo::Zmq {
        identity: identity.clone(),
        tx,
    };
    let (header, payload) = (parts.next(), parts.next());
    let extra = parts.next().is_some();
    let frame = match (header, payload, extra) {
        (Some(h), Some(p), false) => from_parts(&h, p.to_vec()),
        _ => Err(FrameError::MalformedHeader(
            "expected a two-part message [header, payload]".into(),
        )),
    };
    HARNESS.with_borrow_mut(|h| {
        let out = match frame {
            Ok(mut frame) => {
                if first & 0x80 != 0 {
                    reseal(&mut frame, None);
                }
                h.admit(frame, reply)
            }
            Err(err) => h.reject(None, &err, &reply),
        };
        for s in &out.stored {
            check_accepted(s, &verify_options(1, false), &contract(1));
        }
        let mut answers = out.stored.len();
        while let Ok((to, ack)) = rx.try_recv() {
            assert_eq!(to, identity, "ack routed to another identity");
            check_ack(&ack);
            answers += 1;
        }
        assert!(answers <= 1, "one answer per message");
    });
});
