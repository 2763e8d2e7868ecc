//! Fuzzes the Kafka request decoder: header, every served API's body, and the record
//! batches a Produce carries. Run with `cargo fuzz run kafka_frame` in `broker-server/`.
#![no_main]

use broker_server::kafka::frame::{decode_frame, Frame, KafkaRequest};
use broker_server::kafka::produce::decode_batches;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Frame::Request { request, .. }) = decode_frame(Bytes::copy_from_slice(data)) {
        if let KafkaRequest::Produce(req) = *request {
            for topic in req.topic_data {
                for p in topic.partition_data {
                    let _ = decode_batches(p.records.unwrap_or_default());
                }
            }
        }
    }
    // The same bytes as a record set.
    let _ = decode_batches(Bytes::copy_from_slice(data));
});
