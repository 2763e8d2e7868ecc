//! A broker paused (SIGSTOP) in the middle of a transaction must not stall the others: with
//! the store's session options PostgreSQL ends the paused session's transaction after
//! `idle_in_transaction_timeout`, releasing its row locks. The paused broker is played by a
//! raw connection with the store's own options that takes the lock an append takes (the
//! partition row, `FOR UPDATE`) or the one a fenced offset commit takes (the coordinator row,
//! `FOR SHARE`), then sends nothing more.

mod support;

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, BrokerEndpoint, BrokerRegistration, CoordinatorClaim, ManualClock, Record, Store,
    TopicConfig,
};
use store_postgres::{PgOptions, PgStore};

const IDLE_TIMEOUT: Duration = Duration::from_millis(400);
/// Far longer than the timeout: an append still blocked then is blocked for good.
const PATIENCE: Duration = Duration::from_secs(30);

async fn store_and_peer(schema: &str) -> (PgStore, tokio_postgres::Client) {
    let url = support::database_url();
    PgStore::drop_schema(&url, schema)
        .await
        .expect("drop schema");
    let options = PgOptions {
        schema: schema.to_string(),
        pool_size: 4,
        idle_in_transaction_timeout: Some(IDLE_TIMEOUT),
        ..PgOptions::default()
    };
    let mut config: tokio_postgres::Config = url.parse().expect("database URL");
    config.options(options.session_options());
    let store = PgStore::connect(&url, options, Arc::new(ManualClock::default()))
        .await
        .expect("open store");
    let (peer, connection) = config.connect(tokio_postgres::NoTls).await.expect("peer");
    tokio::spawn(connection);
    (store, peer)
}

fn batch(value: &str) -> AppendBatch {
    AppendBatch::new(vec![Record::from_value(value.as_bytes().to_vec())])
}

#[tokio::test]
async fn append_is_not_blocked_by_a_paused_peer_holding_the_partition_row() {
    let (store, peer) = store_and_peer("paused_peer_append").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .expect("create topic");
    store
        .append("t", 0, batch("before"))
        .await
        .expect("first append");

    peer.batch_execute("BEGIN").await.expect("begin");
    let locked = peer
        .query(
            "SELECT p.next_offset FROM partitions p JOIN topics t ON t.id = p.topic_id \
             WHERE t.name = 't' AND p.partition = 0 FOR UPDATE OF p",
            &[],
        )
        .await
        .expect("lock the partition row");
    assert_eq!(locked.len(), 1, "the partition row exists");

    let appended = tokio::time::timeout(PATIENCE, store.append("t", 0, batch("after")))
        .await
        .unwrap_or_else(|_| panic!("an append waited {PATIENCE:?} behind a paused peer's row lock"))
        .expect("append after the peer's transaction ended");
    assert_eq!(appended.base_offset, 1);

    let err = peer
        .query("SELECT 1", &[])
        .await
        .expect_err("the paused peer's session is over");
    assert!(
        peer.is_closed() || err.to_string().contains("idle"),
        "unexpected error for the paused peer: {err}"
    );
    store.close().await.expect("close");
}

#[tokio::test]
async fn coordinator_claim_is_not_blocked_by_a_paused_peer_holding_the_coordinator_row() {
    let (store, peer) = store_and_peer("paused_peer_claim").await;
    let cluster = store
        .cluster()
        .expect("postgres offers the cluster contract");
    let membership = cluster
        .register_broker(BrokerRegistration {
            node_id: Some(7),
            endpoints: vec![BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            http_addr: "127.0.0.1:9080".into(),
            rack: None,
            lapse: Duration::from_secs(60),
        })
        .await
        .expect("register");
    let fence = match cluster
        .claim_coordinator(membership, "g")
        .await
        .expect("claim")
    {
        CoordinatorClaim::Granted { fence, .. } => fence,
        other => panic!("a lone broker must be granted the group: {other:?}"),
    };

    peer.batch_execute("BEGIN").await.expect("begin");
    peer.query(
        "SELECT 1 FROM group_coordinators WHERE grp = 'g' FOR SHARE",
        &[],
    )
    .await
    .expect("share-lock the coordinator row");

    tokio::time::timeout(PATIENCE, cluster.resign_coordinator(&fence))
        .await
        .unwrap_or_else(|_| {
            panic!("a coordinator update waited {PATIENCE:?} behind a paused peer's share lock")
        })
        .expect("resign after the peer's transaction ended");
    store.close().await.expect("close");
}
