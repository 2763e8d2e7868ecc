//! Fetch sessions (KIP-227, incremental fetch): a consumer that asks for a session sends
//! only the partitions whose position changed, and hears only about partitions with news.
//!
//! A session remembers, per partition, where the client fetches from and the high
//! watermark and log start it was last told. Sessions are held in memory, at most
//! [`MAX_SESSIONS`] (the least recently used is evicted; its client gets
//! FETCH_SESSION_ID_NOT_FOUND and starts a new one, as with Kafka).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use uuid::Uuid;

/// Most sessions kept at once (Kafka's max.incremental.fetch.session.cache.slots).
pub const MAX_SESSIONS: usize = 1000;
/// Session epoch that asks for a new session.
const INITIAL_EPOCH: i32 = 0;
/// Session epoch that closes a session (or asks for none).
const FINAL_EPOCH: i32 = -1;

/// A partition a fetch asks for, with the topic as the request names it.
#[derive(Debug, Clone)]
pub struct Requested {
    pub name: StrBytes,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// What a partition's last response told the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Told {
    pub high_watermark: i64,
    pub log_start: i64,
}

/// Key of a partition in a session: the topic name (below Fetch v13) or id, and the index.
type Key = (String, i32);

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<Key, (Requested, Option<Told>)>,
    last_used: Instant,
}

/// What to do with one fetch.
#[derive(Debug)]
pub enum Plan {
    /// A full fetch of these partitions; `session` is the id to answer with (0 for none).
    Full {
        session: i32,
        partitions: Vec<Requested>,
    },
    /// An incremental fetch of every partition of the session; answer only with news.
    Incremental {
        session: i32,
        partitions: Vec<(Requested, Option<Told>)>,
    },
    /// A top-level error (unknown session, wrong epoch).
    Error(i16),
}

/// The broker's fetch sessions.
#[derive(Debug, Default)]
pub struct FetchSessions {
    inner: Mutex<(i32, HashMap<i32, Session>)>,
}

fn key(p: &Requested, version: i16) -> Key {
    if version >= 13 {
        (p.topic_id.to_string(), p.partition)
    } else {
        (p.name.to_string(), p.partition)
    }
}

/// The partitions a request names, in request order.
pub fn requested(req: &FetchRequest) -> Vec<Requested> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Requested {
                name: t.topic.0.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect()
}

impl FetchSessions {
    /// Decides how to serve `req` (Fetch `version`), creating, updating or closing its
    /// session.
    pub fn plan(&self, req: &FetchRequest, version: i16) -> Plan {
        let parts = requested(req);
        if version < 7 {
            return Plan::Full {
                session: 0,
                partitions: parts,
            };
        }
        let mut inner = self.inner.lock();
        let (next_id, sessions) = &mut *inner;
        let now = Instant::now();
        match (req.session_id, req.session_epoch) {
            (0, FINAL_EPOCH) => Plan::Full {
                session: 0,
                partitions: parts,
            },
            (0, INITIAL_EPOCH) => {
                if sessions.len() >= MAX_SESSIONS {
                    let oldest = sessions
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(id, _)| *id);
                    if let Some(id) = oldest {
                        sessions.remove(&id);
                    }
                }
                let id = loop {
                    *next_id = next_id.wrapping_add(1).max(1);
                    if !sessions.contains_key(next_id) {
                        break *next_id;
                    }
                };
                let partitions = parts
                    .iter()
                    .map(|p| (key(p, version), (p.clone(), None)))
                    .collect();
                sessions.insert(
                    id,
                    Session {
                        next_epoch: 1,
                        partitions,
                        last_used: now,
                    },
                );
                Plan::Full {
                    session: id,
                    partitions: parts,
                }
            }
            (0, _) => Plan::Error(ResponseError::InvalidFetchSessionEpoch.code()),
            (id, FINAL_EPOCH) => {
                sessions.remove(&id);
                Plan::Full {
                    session: 0,
                    partitions: parts,
                }
            }
            (id, epoch) => {
                let Some(s) = sessions.get_mut(&id) else {
                    return Plan::Error(ResponseError::FetchSessionIdNotFound.code());
                };
                if epoch != s.next_epoch {
                    return Plan::Error(ResponseError::InvalidFetchSessionEpoch.code());
                }
                s.next_epoch = s.next_epoch.wrapping_add(1).max(1);
                s.last_used = now;
                for f in &req.forgotten_topics_data {
                    let topic = if version >= 13 {
                        f.topic_id.to_string()
                    } else {
                        f.topic.to_string()
                    };
                    for p in &f.partitions {
                        s.partitions.remove(&(topic.clone(), *p));
                    }
                }
                for p in parts {
                    let k = key(&p, version);
                    let told = s.partitions.get(&k).and_then(|(_, t)| *t);
                    s.partitions.insert(k, (p, told));
                }
                Plan::Incremental {
                    session: id,
                    partitions: s.partitions.values().cloned().collect(),
                }
            }
        }
    }

    /// Records what the session's client was just told about a partition.
    pub fn told(&self, session: i32, p: &Requested, version: i16, told: Told) {
        if session == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(s) = inner.1.get_mut(&session) {
            if let Some(entry) = s.partitions.get_mut(&key(p, version)) {
                entry.1 = Some(told);
            }
        }
    }

    /// Sessions held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::TopicName;

    fn req(session: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (t, p, o) in parts {
            let part = FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(*o)
                .with_partition_max_bytes(1000);
            match topics.iter_mut().find(|x| x.topic.as_str() == *t) {
                Some(x) => x.partitions.push(part),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![part]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(session)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    #[test]
    fn a_session_is_created_updated_and_closed() {
        let s = FetchSessions::default();
        let Plan::Full {
            session,
            partitions,
        } = s.plan(&req(0, 0, &[("a", 0, 5), ("a", 1, 7)]), 12)
        else {
            panic!("a new session starts with a full fetch");
        };
        assert!(session > 0);
        assert_eq!(partitions.len(), 2);
        // The next fetch names only what moved; the session fills in the rest.
        let Plan::Incremental { partitions, .. } = s.plan(&req(session, 1, &[("a", 0, 9)]), 12)
        else {
            panic!("incremental");
        };
        let offsets: Vec<i64> = partitions.iter().map(|(p, _)| p.fetch_offset).collect();
        assert_eq!(offsets, vec![9, 7]);
        // A forgotten partition leaves the session.
        let forget =
            req(session, 2, &[]).with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(vec![1])]);
        let Plan::Incremental { partitions, .. } = s.plan(&forget, 12) else {
            panic!("incremental");
        };
        assert_eq!(partitions.len(), 1);
        // Epochs must follow each other; unknown sessions are reported.
        assert!(matches!(
            s.plan(&req(session, 2, &[]), 12),
            Plan::Error(c) if c == ResponseError::InvalidFetchSessionEpoch.code()
        ));
        assert!(matches!(
            s.plan(&req(session + 100, 1, &[]), 12),
            Plan::Error(c) if c == ResponseError::FetchSessionIdNotFound.code()
        ));
        assert!(matches!(
            s.plan(&req(session, -1, &[]), 12),
            Plan::Full { session: 0, .. }
        ));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let s = FetchSessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            s.plan(&req(0, 0, &[("a", 0, 0)]), 12);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }
}
