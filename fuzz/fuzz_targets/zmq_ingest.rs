//! ZeroMQ ingest: the input split into the parts of one ROUTER message (first byte: number of
//! parts 0–4 and whether to fix the checksum; each part but the last prefixed by its u16
//! length), handled as `aggregator/src/ingest/zmq.rs` does — identity, then exactly
//! `[header, payload]` through its `frame_of` into the real `Admission`, anything else rejected
//! as a malformed header — and every ack back to the identity checked to be bounded.
#![no_main]

use bytes::Bytes;
use fleetset_aggregator::fuzzing::AdmissionHarness;
use fleetset_aggregator::ingest::zmq;
use fleetset_fuzz::{check_accepted, check_ack, contract, reseal, verify_options, Input};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

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
    let mut parts = parts.into_iter().map(|p| p.to_vec());
    let Some(identity) = parts.next() else {
        return;
    };
    let frame = zmq::frame_of(parts);
    HARNESS.with_borrow_mut(|h| {
        let out = match frame {
            Ok(mut frame) => {
                if first & 0x80 != 0 {
                    reseal(&mut frame, None);
                }
                h.admit(frame, h.zmq_peer(identity.clone()))
            }
            Err(err) => {
                let reply = h.zmq_peer(identity.clone());
                h.reject(None, &err, &reply)
            }
        };
        for s in &out.stored {
            check_accepted(s, &verify_options(1, false), &contract(1));
        }
        let mut answers = out.stored.len();
        for (to, ack) in &out.zmq_acks {
            assert_eq!(to, &identity, "ack routed to another identity");
            check_ack(ack);
            answers += 1;
        }
        assert!(answers <= 1, "one answer per message");
    });
});
