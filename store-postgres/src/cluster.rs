//! [`broker_api::Cluster`] on PostgreSQL: the `brokers` and `group_coordinators` tables.
//! Claims lock the group's row; fenced writes hold it shared while they write, so a write
//! and a takeover never interleave.

use async_trait::async_trait;
use broker_api::{
    validate_group_name, BrokerEndpoint, BrokerRegistration, Cluster, CoordinatorClaim,
    CoordinatorFence, LiveBroker, Membership, OffsetCommit, StoreError, StoreResult,
    FIRST_ALLOCATED_NODE_ID,
};
use bytes::Bytes;
use tokio_postgres::types::ToSql;

use crate::error::db_err;
use crate::offsets::CommitRows;
use crate::tx::Tx;
use crate::PgStore;

/// Whether broker row `b` is live at `$now` (the parameter number is substituted).
macro_rules! live {
    ($b:literal, $now:literal) => {
        concat!(
            "(NOT ",
            $b,
            ".left_cluster AND ",
            $now,
            " < ",
            $b,
            ".heartbeat_ms + ",
            $b,
            ".lapse_ms)"
        )
    };
}

const LIVE_BROKERS: &str = concat!(
    "SELECT node_id, incarnation, listeners, hosts, ports, http_addr, rack, registered_ms,
            heartbeat_ms
     FROM brokers b WHERE ",
    live!("b", "$1"),
    " ORDER BY node_id"
);

/// The group's coordinator row, locked, with whether its holder and the caller are live.
const CLAIM: &str = concat!(
    "SELECT c.epoch, c.node_id, c.incarnation, c.state,
       EXISTS (SELECT 1 FROM brokers b WHERE b.node_id = c.node_id
               AND b.incarnation = c.incarnation AND ",
    live!("b", "$4"),
    "),
       EXISTS (SELECT 1 FROM brokers b WHERE b.node_id = $2 AND b.incarnation = $3 AND ",
    live!("b", "$4"),
    ")
     FROM group_coordinators c WHERE c.grp = $1 FOR UPDATE"
);

/// The fence's row, held shared for the rest of the transaction, when the fence is current.
const FENCE: &str = concat!(
    "SELECT 1 FROM group_coordinators c
     WHERE c.grp = $1 AND c.epoch = $2 AND c.node_id = $3 AND c.incarnation = $4
       AND EXISTS (SELECT 1 FROM brokers b WHERE b.node_id = $3 AND b.incarnation = $4 AND ",
    live!("b", "$5"),
    ")
     FOR SHARE"
);

fn not_live(m: Membership) -> StoreError {
    StoreError::Fenced(format!(
        "broker {} (incarnation {}) is not a live member of the cluster",
        m.node_id, m.incarnation
    ))
}

fn stale(fence: &CoordinatorFence) -> StoreError {
    StoreError::Fenced(format!(
        "broker {} no longer coordinates group {} (epoch {})",
        fence.holder.node_id, fence.group, fence.epoch
    ))
}

impl PgStore {
    /// Opens a transaction and checks `fence` in it (its row stays share-locked).
    async fn fenced_tx(&self, fence: &CoordinatorFence) -> StoreResult<Tx> {
        let obj = self.conn().await?;
        let tx = Tx::new(obj);
        let now = self.now();
        let params: [&(dyn ToSql + Sync); 5] = [
            &fence.group,
            &fence.epoch,
            &fence.holder.node_id,
            &fence.holder.incarnation,
            &now,
        ];
        let c = tx.client();
        let (_, row) = tokio::try_join!(c.batch_execute("BEGIN"), c.query_opt(FENCE, &params))
            .map_err(db_err)?;
        if row.is_none() {
            tx.rollback().await;
            return Err(stale(fence));
        }
        Ok(tx)
    }
}

#[async_trait]
impl Cluster for PgStore {
    async fn register_broker(&self, reg: BrokerRegistration) -> StoreResult<Membership> {
        if let Some(n) = reg.node_id.filter(|n| *n < 0) {
            return Err(StoreError::InvalidArgument(format!(
                "node id must be 0 or more, got {n}"
            )));
        }
        let now = self.now();
        let lapse = i64::try_from(reg.lapse.as_millis()).unwrap_or(i64::MAX);
        let obj = self.cluster_conn().await?;
        let tx = Tx::new(obj);
        let c = tx.client();
        // Registrations are rare: one at a time, so two brokers never pick the same free id.
        c.batch_execute("BEGIN; LOCK TABLE brokers IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(db_err)?;
        let live: Vec<i32> = c
            .query(
                concat!("SELECT node_id FROM brokers b WHERE ", live!("b", "$1")),
                &[&now],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let node_id = match reg.node_id {
            Some(n) if live.contains(&n) => {
                tx.rollback().await;
                return Err(StoreError::NodeIdInUse(n));
            }
            Some(n) => n,
            None => (FIRST_ALLOCATED_NODE_ID..)
                .find(|n| !live.contains(n))
                .expect("a free node id"),
        };
        let listeners: Vec<&str> = reg.endpoints.iter().map(|e| e.listener.as_str()).collect();
        let hosts: Vec<&str> = reg.endpoints.iter().map(|e| e.host.as_str()).collect();
        let ports: Vec<i32> = reg.endpoints.iter().map(|e| e.port).collect();
        let row = c
            .query_one(
                "INSERT INTO brokers (node_id, incarnation, listeners, hosts, ports, http_addr,
                     rack, lapse_ms, registered_ms, heartbeat_ms, left_cluster)
                 VALUES ($1, nextval('broker_incarnations'), $2, $3, $4, $5, $6, $7, $8, $8,
                     false)
                 ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation,
                     listeners = excluded.listeners, hosts = excluded.hosts,
                     ports = excluded.ports, http_addr = excluded.http_addr,
                     rack = excluded.rack, lapse_ms = excluded.lapse_ms,
                     registered_ms = excluded.registered_ms,
                     heartbeat_ms = excluded.heartbeat_ms, left_cluster = false
                 RETURNING incarnation",
                &[
                    &node_id,
                    &listeners,
                    &hosts,
                    &ports,
                    &reg.http_addr,
                    &reg.rack,
                    &lapse,
                    &now,
                ],
            )
            .await
            .map_err(db_err)?;
        let incarnation: i64 = row.get(0);
        tx.commit().await?;
        Ok(Membership {
            node_id,
            incarnation,
        })
    }

    async fn heartbeat(&self, me: Membership) -> StoreResult<()> {
        let now = self.now();
        let n = self
            .cluster_conn()
            .await?
            .execute(
                concat!(
                    "UPDATE brokers b SET heartbeat_ms = $3
                     WHERE node_id = $1 AND incarnation = $2 AND ",
                    live!("b", "$3")
                ),
                &[&me.node_id, &me.incarnation, &now],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            return Err(not_live(me));
        }
        Ok(())
    }

    async fn deregister(&self, me: Membership) -> StoreResult<()> {
        self.cluster_conn()
            .await?
            .execute(
                "UPDATE brokers SET left_cluster = true WHERE node_id = $1 AND incarnation = $2",
                &[&me.node_id, &me.incarnation],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn live_brokers(&self) -> StoreResult<Vec<LiveBroker>> {
        let now = self.now();
        let rows = self
            .cluster_conn()
            .await?
            .query(LIVE_BROKERS, &[&now])
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let listeners: Vec<String> = r.get(2);
                let hosts: Vec<String> = r.get(3);
                let ports: Vec<i32> = r.get(4);
                LiveBroker {
                    membership: Membership {
                        node_id: r.get(0),
                        incarnation: r.get(1),
                    },
                    endpoints: listeners
                        .into_iter()
                        .zip(hosts)
                        .zip(ports)
                        .map(|((listener, host), port)| BrokerEndpoint {
                            listener,
                            host,
                            port,
                        })
                        .collect(),
                    http_addr: r.get(5),
                    rack: r.get(6),
                    registered_at_ms: r.get(7),
                    heartbeat_at_ms: r.get(8),
                }
            })
            .collect())
    }

    async fn claim_coordinator(
        &self,
        me: Membership,
        group: &str,
    ) -> StoreResult<CoordinatorClaim> {
        validate_group_name(group)?;
        let now = self.now();
        let obj = self.conn().await?;
        let tx = Tx::new(obj);
        let c = tx.client();
        let insert: [&(dyn ToSql + Sync); 1] = [&group];
        let claim: [&(dyn ToSql + Sync); 4] = [&group, &me.node_id, &me.incarnation, &now];
        // In order (claims are rare): the row must exist before it is locked and read.
        tokio::try_join!(
            c.batch_execute("BEGIN"),
            c.execute(
                "INSERT INTO group_coordinators (grp, epoch, node_id, incarnation)
                 VALUES ($1, 0, -1, -1) ON CONFLICT (grp) DO NOTHING",
                &insert,
            ),
        )
        .map_err(db_err)?;
        let row = c.query_one(CLAIM, &claim).await.map_err(db_err)?;
        let epoch: i64 = row.get(0);
        let holder = Membership {
            node_id: row.get(1),
            incarnation: row.get(2),
        };
        let state: Option<Vec<u8>> = row.get(3);
        let (holder_live, me_live): (bool, bool) = (row.get(4), row.get(5));
        if !me_live {
            tx.rollback().await;
            return Err(not_live(me));
        }
        let epoch = if holder == me {
            epoch
        } else if holder_live {
            tx.rollback().await;
            return Ok(CoordinatorClaim::HeldBy(holder.node_id));
        } else {
            c.execute(
                "UPDATE group_coordinators SET epoch = epoch + 1, node_id = $2, incarnation = $3
                 WHERE grp = $1",
                &[&group, &me.node_id, &me.incarnation],
            )
            .await
            .map_err(db_err)?;
            epoch + 1
        };
        tx.commit().await?;
        Ok(CoordinatorClaim::Granted {
            fence: CoordinatorFence {
                group: group.to_string(),
                holder: me,
                epoch,
            },
            state: state.map(Bytes::from),
        })
    }

    async fn coordinator_of(&self, group: &str) -> StoreResult<Option<i32>> {
        let now = self.now();
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT c.node_id FROM group_coordinators c
                     JOIN brokers b ON b.node_id = c.node_id AND b.incarnation = c.incarnation
                     WHERE c.grp = $1 AND ",
                    live!("b", "$2")
                ),
                &[&group, &now],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn commit_offsets_fenced(
        &self,
        fence: &CoordinatorFence,
        commits: &[OffsetCommit],
    ) -> StoreResult<()> {
        validate_group_name(&fence.group)?;
        let tx = self.fenced_tx(fence).await?;
        let rows = match CommitRows::new(tx.client(), commits).await {
            Ok(rows) => rows,
            Err(e) => {
                tx.rollback().await;
                return Err(e);
            }
        };
        if !rows.is_empty() {
            if let Err(e) = rows.store(tx.client(), &fence.group).await {
                tx.rollback().await;
                return Err(e);
            }
        }
        tx.commit().await
    }

    async fn save_group_state(&self, fence: &CoordinatorFence, state: Bytes) -> StoreResult<()> {
        let tx = self.fenced_tx(fence).await?;
        tx.client()
            .execute(
                "UPDATE group_coordinators SET state = $2 WHERE grp = $1",
                &[&fence.group, &state.as_ref()],
            )
            .await
            .map_err(db_err)?;
        tx.commit().await
    }

    async fn resign_coordinator(&self, fence: &CoordinatorFence) -> StoreResult<()> {
        let tx = self.fenced_tx(fence).await?;
        tx.client()
            .execute(
                "UPDATE group_coordinators SET node_id = -1, incarnation = -1 WHERE grp = $1",
                &[&fence.group],
            )
            .await
            .map_err(db_err)?;
        tx.commit().await
    }
}
