//! A transaction the previous broker left open is aborted past its timeout by the broker that
//! restarted on the same data, with no call of its producer (whose read_committed readers
//! would otherwise stop at it for good).

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{SharedClock, Store, SystemClock};
use broker_server::config::{Config, StoreKind};
use broker_server::kafka::client::RawClient;
use broker_server::Server;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use store_log::{LogOptions, LogStore};
use tokio::sync::oneshot;

mod common;
use common::{create_topic, name};

struct Running {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), broker_server::ServerError>>,
}

/// A server on `store`.
async fn start(store: Arc<dyn Store>) -> Running {
    let config = Config {
        store: StoreKind::Memory,
        kafka_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let server = Server::bind(&config, store, clock).await.unwrap();
    let addr = server.addrs().kafka;
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    Running { addr, stop, task }
}

async fn stop(r: Running) {
    let _ = r.stop.send(());
    tokio::time::timeout(Duration::from_secs(30), r.task)
        .await
        .expect("server stops within 30 s")
        .unwrap()
        .unwrap();
}

/// Starts a transaction of `tid` (1 s timeout) that writes to `topic` partition 0.
async fn open_transaction(c: &mut RawClient, tid: &str, topic: &str) {
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                    tid.to_string(),
                ))))
                .with_transaction_timeout_ms(1000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    let add: AddPartitionsToTxnResponse = c
        .call(
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
                    tid.to_string(),
                )))
                .with_v3_and_below_producer_id(init.producer_id)
                .with_v3_and_below_producer_epoch(init.producer_epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![0])]),
        )
        .await
        .unwrap();
    let codes: Vec<i16> = add.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect();
    assert_eq!(codes, vec![0]);
}

/// The log store in `dir`, as a broker restarting there opens it.
fn open_log(dir: &std::path::Path) -> Arc<LogStore> {
    Arc::new(LogStore::open(dir, LogOptions::default(), Arc::new(SystemClock)).unwrap())
}

/// The saved state of `tid` as text (it is tagged JSON).
async fn saved_state(store: &dyn Store, tid: &str) -> String {
    let b = store
        .group_snapshot(&format!("__transaction_state/{tid}"))
        .await
        .unwrap()
        .unwrap_or_default();
    String::from_utf8_lossy(&b).into_owned()
}

#[tokio::test]
async fn a_transaction_left_open_by_a_stopped_broker_is_aborted_past_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_log(dir.path());
    let first = start(store.clone()).await;
    let mut c = RawClient::connect(first.addr).await.unwrap();
    create_topic(&mut c, "t", 1).await;
    open_transaction(&mut c, "tx-restart", "t").await;
    assert!(saved_state(&*store, "tx-restart")
        .await
        .contains("\"Ongoing\""));
    drop(c);
    stop(first).await;
    drop(store);

    // The broker restarted on the same data takes the open transaction over with no call
    // of its producer, and aborts it once its timeout passed.
    let store = open_log(dir.path());
    let second = start(store.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = saved_state(&*store, "tx-restart").await;
        if state.contains("\"CompleteAbort\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction is still not aborted: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(second).await;
}
