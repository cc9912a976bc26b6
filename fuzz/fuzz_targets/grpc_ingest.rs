//! gRPC ingest: a `Publish` message decoded as tonic's prost codec does (`pb::Frame::decode`)
//! and admitted by the aggregator's real `Admission` (verify, contract, reject with a bounded
//! ack). With the first byte odd, the checksum is made to match so decoding is reached.
#![no_main]

use fleetset_aggregator::fuzzing::AdmissionHarness;
use fleetset_fuzz::{check_accepted, check_ack, contract, reseal, verify_options, Input};
use fleetset_proto::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::cell::RefCell;

thread_local! {
    static HARNESS: RefCell<AdmissionHarness> = RefCell::new(
        AdmissionHarness::new(verify_options(0, false), contract(0)).expect("runtime"),
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8();
    // Not a Frame: the stream ends with INVALID_ARGUMENT before admission.
    let Ok(mut frame) = pb::Frame::decode(input.rest()) else {
        return;
    };
    if mode % 2 == 1 {
        reseal(&mut frame, None);
    }
    HARNESS.with_borrow_mut(|h| {
        let peer = h.otlp_peer();
        let out = h.admit(frame, peer);
        for s in &out.stored {
            check_accepted(s, &verify_options(0, false), &contract(0));
        }
        out.acks.iter().for_each(check_ack);
        assert!(
            out.stored.len() + out.acks.len() <= 1,
            "one answer per frame"
        );
    });
});
