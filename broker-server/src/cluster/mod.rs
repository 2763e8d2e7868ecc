//! This broker's place among the brokers over one store: its node id, the live brokers, who
//! leads each partition and who coordinates each group. Over a store that cannot be shared
//! (log, memory) the broker is the whole cluster.

pub mod placement;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{BrokerEndpoint, BrokerRegistration, LiveBroker, Membership, Store, StoreError};
use parking_lot::RwLock;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ServerError;

/// What the node is while it runs.
struct Current {
    membership: Membership,
    /// Live brokers as last read (always including this one while it is live).
    live: Arc<Vec<LiveBroker>>,
    /// Until when this broker may act as a member: the start of its last successful
    /// heartbeat plus the lapse. `None` on a single broker.
    valid_until: Option<Instant>,
}

/// This broker in its cluster.
pub struct Node {
    /// The shared store; `None` on a single broker.
    store: Option<Arc<dyn Store>>,
    registration: BrokerRegistration,
    heartbeat: Duration,
    current: RwLock<Current>,
    /// Bumped each time the broker registers again (it lapsed): every group it coordinated
    /// before is lost.
    epoch: watch::Sender<u64>,
}

impl Node {
    /// A single broker that is the whole cluster (log and memory stores).
    pub fn single(
        node_id: i32,
        endpoints: Vec<BrokerEndpoint>,
        http_addr: String,
        rack: Option<String>,
    ) -> Arc<Node> {
        let registration = BrokerRegistration {
            node_id: Some(node_id),
            endpoints,
            http_addr,
            rack,
            lapse: Duration::MAX,
        };
        let me = LiveBroker {
            membership: Membership {
                node_id,
                incarnation: 0,
            },
            endpoints: registration.endpoints.clone(),
            http_addr: registration.http_addr.clone(),
            rack: registration.rack.clone(),
            registered_at_ms: 0,
            heartbeat_at_ms: 0,
        };
        Arc::new(Node {
            store: None,
            registration,
            heartbeat: Duration::MAX,
            current: RwLock::new(Current {
                membership: me.membership,
                live: Arc::new(vec![me]),
                valid_until: None,
            }),
            epoch: watch::Sender::new(0),
        })
    }

    /// Joins the cluster of `store` when it has one (registers and reads the live brokers);
    /// else a single broker with `registration.node_id` (default 0).
    pub async fn join(
        store: Arc<dyn Store>,
        registration: BrokerRegistration,
        heartbeat: Duration,
    ) -> Result<Arc<Node>, ServerError> {
        let Some(cluster) = store.cluster() else {
            return Ok(Node::single(
                registration.node_id.unwrap_or(0),
                registration.endpoints,
                registration.http_addr,
                registration.rack,
            ));
        };
        // A broker restarted right after a crash ends its predecessor's registration (it
        // holds the addresses that process served) and takes its node id over.
        let mut attempt = registration.clone();
        if let Some(old) = retire_predecessor(cluster, &registration).await {
            if registration.node_id.is_none() {
                attempt.node_id = Some(old);
            }
        }
        // A node id still held by a live registration: waits (a little longer than one lapse)
        // for it to lapse, as a live holder would have renewed it by then.
        let give_up = Instant::now() + registration.lapse + Duration::from_secs(1);
        let mut waited = false;
        let (membership, started) = loop {
            let started = Instant::now();
            match cluster.register_broker(attempt.clone()).await {
                Ok(m) => break (m, started),
                // Another broker registered under the predecessor's node id first.
                Err(StoreError::NodeIdInUse(_)) if attempt.node_id != registration.node_id => {
                    attempt = registration.clone();
                }
                Err(StoreError::NodeIdInUse(n)) if Instant::now() < give_up => {
                    if !waited {
                        info!(
                            node_id = n,
                            "node id held by a live registration (a crashed predecessor?); \
                             waiting up to {} ms for it to lapse",
                            registration.lapse.as_millis() + 1000
                        );
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(register_error(e, &registration)),
            }
        };
        let live = cluster.live_brokers().await.map_err(|e| {
            ServerError::Open(format!("cannot list the brokers of the cluster: {e}"))
        })?;
        info!(
            node_id = membership.node_id,
            incarnation = membership.incarnation,
            brokers = live.len(),
            "joined the cluster"
        );
        let lapse = registration.lapse;
        Ok(Arc::new(Node {
            current: RwLock::new(Current {
                membership,
                live: Arc::new(with_me(live, membership, &registration)),
                valid_until: Some(started + lapse),
            }),
            store: Some(store.clone()),
            registration,
            heartbeat,
            epoch: watch::Sender::new(0),
        }))
    }

    fn cluster(&self) -> Option<&dyn broker_api::Cluster> {
        self.store.as_ref().and_then(|s| s.cluster())
    }

    /// Whether brokers share the store (several may be live).
    pub fn is_clustered(&self) -> bool {
        self.cluster().is_some()
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.current.read().membership.node_id
    }

    /// This broker's current registration.
    pub fn membership(&self) -> Membership {
        self.current.read().membership
    }

    /// Counts re-registrations; a change means every coordinated group was lost.
    pub fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// Changes each time the node registers again.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// The live brokers, sorted by node id.
    pub fn brokers(&self) -> Arc<Vec<LiveBroker>> {
        self.current.read().live.clone()
    }

    /// Whether this broker may act for the cluster now: its registration cannot have lapsed
    /// (a broker paused past its lapse must not answer as coordinator when it wakes).
    pub fn is_valid(&self) -> bool {
        self.current
            .read()
            .valid_until
            .is_none_or(|t| Instant::now() < t)
    }

    /// The brokers that lead `topic`'s `count` partitions, in partition order (every broker
    /// can serve any of them; this is where clients are told to go).
    pub fn leaders(&self, topic: &str, count: i32) -> Vec<i32> {
        let live = self.brokers();
        let nodes: Vec<i32> = live.iter().map(|b| b.membership.node_id).collect();
        if nodes.is_empty() {
            return vec![self.node_id(); count.max(0) as usize];
        }
        placement::partition_owners(topic, count, &nodes)
    }

    /// The broker a group's coordinator is placed on when no live broker holds it.
    pub fn preferred_coordinator(&self, group: &str) -> i32 {
        let live = self.brokers();
        placement::owner(
            &placement::group_key(group),
            live.iter().map(|b| b.membership.node_id),
        )
        .unwrap_or_else(|| self.node_id())
    }

    /// The group's coordinator: its live holder in the store, else its preferred broker.
    pub async fn coordinator(&self, group: &str) -> Result<i32, StoreError> {
        match self.cluster() {
            None => Ok(self.node_id()),
            Some(c) => match c.coordinator_of(group).await? {
                Some(n) => Ok(n),
                None => Ok(self.preferred_coordinator(group)),
            },
        }
    }

    /// `(host, port)` of `node_id` on `listener` (its first listener when it has no such
    /// one); `None` when the node is not live.
    pub fn endpoint(&self, node_id: i32, listener: &str) -> Option<(String, i32)> {
        let live = self.brokers();
        let b = live.iter().find(|b| b.membership.node_id == node_id)?;
        let e = b
            .endpoints
            .iter()
            .find(|e| e.listener == listener)
            .or_else(|| b.endpoints.first())?;
        Some((e.host.clone(), e.port))
    }

    /// The smallest live node id (reported as the controller).
    pub fn controller(&self) -> i32 {
        self.brokers()
            .first()
            .map_or_else(|| self.node_id(), |b| b.membership.node_id)
    }

    /// Heartbeats until `stop`, registering again after a lapse; leaves the cluster at the
    /// end. Returns at once for a single broker.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::kafka::stopped(&mut stop) => break,
            }
            let started = Instant::now();
            let me = self.membership();
            match cluster.heartbeat(me).await {
                Ok(()) => {
                    self.current.write().valid_until = Some(started + self.registration.lapse);
                }
                Err(StoreError::Fenced(why)) => {
                    warn!(node_id = me.node_id, "{why}; registering again");
                    let again = BrokerRegistration {
                        node_id: Some(me.node_id),
                        ..self.registration.clone()
                    };
                    match cluster.register_broker(again).await {
                        Ok(m) => {
                            let mut cur = self.current.write();
                            cur.membership = m;
                            cur.valid_until = Some(started + self.registration.lapse);
                            drop(cur);
                            self.epoch.send_modify(|e| *e += 1);
                            info!(
                                node_id = m.node_id,
                                incarnation = m.incarnation,
                                "registered again"
                            );
                        }
                        Err(e) => warn!(node_id = me.node_id, "cannot register again: {e}"),
                    }
                }
                Err(e) => {
                    let v = crate::LOG_LIMIT.check("cluster:heartbeat");
                    if v != broker_api::log_limit::Verdict::Suppress {
                        warn!("cluster heartbeat failed: {e}{}", v.suffix());
                    }
                    continue;
                }
            }
            match cluster.live_brokers().await {
                Ok(live) => {
                    let mut cur = self.current.write();
                    let changed = ids(&cur.live) != ids(&live);
                    cur.live = Arc::new(with_me(live, cur.membership, &self.registration));
                    if changed {
                        info!(brokers = ?ids(&cur.live), "live brokers changed");
                    }
                }
                Err(e) => {
                    let v = crate::LOG_LIMIT.check("cluster:live");
                    if v != broker_api::log_limit::Verdict::Suppress {
                        warn!("cannot list the live brokers: {e}{}", v.suffix());
                    }
                }
            }
        }
        let me = self.membership();
        match cluster.deregister(me).await {
            Ok(()) => info!(node_id = me.node_id, "left the cluster"),
            Err(e) => warn!(
                node_id = me.node_id,
                "cannot leave the cluster cleanly: {e}"
            ),
        }
    }
}

/// Ends the live registration of this broker's predecessor, if any, and returns its node
/// id: a registration that advertises exactly this broker's Kafka endpoints, which this
/// process has bound, so the process behind it serves them no more (it crashed or is
/// exiting). Left live until it lapses, it would keep coordinating its groups and
/// transactional ids, so clients would be sent to a node id that then leaves the metadata
/// while their requests wait for it (librdkafka waits for good).
async fn retire_predecessor(
    cluster: &dyn broker_api::Cluster,
    registration: &BrokerRegistration,
) -> Option<i32> {
    let mine = endpoint_set(&registration.endpoints);
    if mine.is_empty() || mine.iter().any(|e| e.port <= 0) {
        return None;
    }
    let live = match cluster.live_brokers().await {
        Ok(live) => live,
        Err(e) => {
            warn!("cannot list the brokers of the cluster to find a predecessor: {e}");
            return None;
        }
    };
    let old = live
        .into_iter()
        .find(|b| endpoint_set(&b.endpoints) == mine)?;
    match cluster.deregister(old.membership).await {
        Ok(()) => {
            info!(
                node_id = old.membership.node_id,
                incarnation = old.membership.incarnation,
                "ended the registration of this broker's predecessor (same addresses)"
            );
            Some(old.membership.node_id)
        }
        Err(e) => {
            warn!(
                node_id = old.membership.node_id,
                "cannot end the registration of this broker's predecessor: {e}"
            );
            None
        }
    }
}

/// Endpoints in a fixed order, for comparing two brokers' addresses.
fn endpoint_set(endpoints: &[BrokerEndpoint]) -> Vec<&BrokerEndpoint> {
    let mut v: Vec<&BrokerEndpoint> = endpoints.iter().collect();
    v.sort_by(|a, b| (&a.listener, &a.host, a.port).cmp(&(&b.listener, &b.host, b.port)));
    v
}

fn ids(live: &[LiveBroker]) -> Vec<i32> {
    live.iter().map(|b| b.membership.node_id).collect()
}

/// The live list with this broker in it (a list read before its own registration was
/// visible, or while it is being renewed, still names it).
fn with_me(
    mut live: Vec<LiveBroker>,
    me: Membership,
    registration: &BrokerRegistration,
) -> Vec<LiveBroker> {
    if !live.iter().any(|b| b.membership == me) {
        live.retain(|b| b.membership.node_id != me.node_id);
        live.push(LiveBroker {
            membership: me,
            endpoints: registration.endpoints.clone(),
            http_addr: registration.http_addr.clone(),
            rack: registration.rack.clone(),
            registered_at_ms: 0,
            heartbeat_at_ms: 0,
        });
    }
    live.sort_by_key(|b| b.membership.node_id);
    live
}

fn register_error(e: StoreError, registration: &BrokerRegistration) -> ServerError {
    match e {
        StoreError::NodeIdInUse(n) => ServerError::Config(format!(
            "node id {n} is held by a live broker of this cluster: give another --node-id, \
             leave it out to have one allocated, or wait {} ms for that broker to lapse if it died",
            registration.lapse.as_millis()
        )),
        other => ServerError::Open(format!(
            "cannot register this broker in the cluster: {other}"
        )),
    }
}
