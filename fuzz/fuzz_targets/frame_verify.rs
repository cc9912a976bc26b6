//! Frame verification (`fleetset_proto::verify_with`) on fuzzed frames, in four modes chosen
//! by the first byte: a `pb::Frame` as gRPC carries it; ZeroMQ parts `[header, payload]`
//! through `from_parts`; a header derived from the input's next bytes around a payload with a
//! matching checksum (reaches zstd and the decoders with fuzzed bytes); and a valid frame sealed
//! around a fuzzed encoded payload (MessagePack or Protobuf, optionally zstd-compressed first).
//! Each under the default or a tight contract and receiver limits, signed or not.
#![no_main]

use fleetset_fuzz::{
    check_accepted, contract, encoding, reseal, seal_around, verify_options, Input, FLEET_KEY,
    START_MS,
};
use fleetset_proto::contract::MAX_DETAIL_CHARS;
use fleetset_proto::frame::from_parts;
use fleetset_proto::{pb, verify_with, FRAME_VERSION};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8();
    let limits = input.u8();
    let signed = mode & 0x10 != 0;
    let key = signed.then_some(FLEET_KEY);
    let frame = match mode % 4 {
        0 => match pb::Frame::decode(input.rest()) {
            Ok(f) => f,
            Err(_) => return,
        },
        1 => {
            let header = input.part();
            match from_parts(header, input.rest().to_vec()) {
                Ok(f) => f,
                Err(e) => {
                    assert!(fleetset_fuzz::bounded(&e.to_string(), MAX_DETAIL_CHARS * 4));
                    return;
                }
            }
        }
        2 => {
            let enc = input.u8();
            let comp = input.u8();
            let seq = u64::from(input.u16());
            let mut frame = pb::Frame {
                header: Some(pb::FrameHeader {
                    version: if mode & 0x20 != 0 {
                        u32::from(input.u8())
                    } else {
                        FRAME_VERSION
                    },
                    encoding: encoding(enc),
                    compression: i32::from(comp % 3),
                    agent_id: "fuzz-agent".into(),
                    seq,
                    window_start_ms: START_MS,
                    window_end_ms: START_MS + 60_000,
                    ..Default::default()
                }),
                payload: input.rest().to_vec(),
            };
            reseal(&mut frame, key);
            frame
        }
        _ => {
            let enc = input.u8();
            seal_around(input.rest(), encoding(enc), mode & 0x40 != 0, key)
        }
    };
    let opts = verify_options(limits, signed);
    let contract = contract(limits >> 1);
    match verify_with(&frame, &opts, &contract) {
        Ok(s) => check_accepted(&s, &opts, &contract),
        Err(e) => {
            let _ = e.reason();
        }
    }
});
