//! Bounded property runs of the frame decoder and the request handlers on random input:
//! nothing may panic (or abort on a huge reservation), whatever the bytes. The unbounded
//! version is the cargo-fuzz target in `broker-server/fuzz`.

use std::sync::Arc;

use broker_api::{SharedClock, SystemClock};
use broker_server::config::Config;
use broker_server::kafka::frame::decode_frame;
use broker_server::kafka::produce::decode_batches;
use broker_server::kafka::versions::SUPPORTED;
use broker_server::kafka::{KafkaConfig, KafkaServer};
use broker_server::metrics::Metrics;
use bytes::Bytes;
use proptest::prelude::*;

/// A frame that starts with a real (API, version) header and continues with arbitrary bytes.
fn headed_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SUPPORTED.len(),
        any::<u16>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(i, vpick, cid, tail)| {
            let (api, lo, hi) = SUPPORTED[i];
            let span = (hi - lo + 1) as u16;
            let version = lo + (vpick % span) as i16;
            let mut f = Vec::with_capacity(12 + tail.len());
            f.extend_from_slice(&(api as i16).to_be_bytes());
            f.extend_from_slice(&version.to_be_bytes());
            f.extend_from_slice(&cid.to_be_bytes());
            // A null client id, then the rest at random (flexible headers read tags from it).
            f.extend_from_slice(&(-1i16).to_be_bytes());
            f.extend_from_slice(&tail);
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_frame(Bytes::from(bytes));
    }

    #[test]
    fn random_bodies_of_real_apis_never_panic_the_decoder(frame in headed_frame()) {
        let _ = decode_frame(Bytes::from(frame));
    }

    #[test]
    fn random_record_sets_never_panic_the_batch_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_batches(Bytes::from(bytes));
    }
}

fn server(rt: &tokio::runtime::Runtime) -> (Arc<KafkaServer>, tokio::sync::watch::Sender<bool>) {
    rt.block_on(async {
        let clock: SharedClock = Arc::new(SystemClock);
        let store = Arc::new(store_memory::MemoryStore::new(clock));
        let config = KafkaConfig::new(&Config::default(), "127.0.0.1:9092").unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        (
            KafkaServer::new(store, Arc::new(Metrics::default()), config, rx),
            tx,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_panic_the_handlers(frame in headed_frame()) {
        thread_local! {
            static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
        }
        RT.with(|rt| {
            let (server, stop) = server(rt);
            rt.block_on(async {
                // Long polls and joins are bounded by the stop signal, not by the random input.
                let handled = tokio::time::timeout(
                    std::time::Duration::from_millis(50),
                    server.handle_frame(Bytes::from(frame.clone()), None),
                )
                .await;
                if handled.is_err() {
                    let _ = stop.send(true);
                    let _ = server.handle_frame(Bytes::from(frame), None).await;
                }
            });
        });
    }
}

#[test]
fn huge_array_counts_do_not_abort() {
    // Produce v3 whose topic array claims i32::MAX entries, and Metadata v12 (flexible) whose
    // topic array claims u32::MAX - 1: the decoder reserves before reading, the frame is tiny.
    let mut produce = vec![
        0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0x10, 0,
    ];
    produce.extend_from_slice(&i32::MAX.to_be_bytes());
    produce.extend_from_slice(&[0, 1, b'a']);
    assert!(decode_frame(Bytes::from(produce)).is_err());
    let mut metadata = vec![0, 3, 0, 12, 0, 0, 0, 2, 0xff, 0xff, 0];
    metadata.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(decode_frame(Bytes::from(metadata)).is_err());
}
