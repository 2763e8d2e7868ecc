//! Crash-safe metadata: topics, committed offsets, lease groups and lease state, producer-id
//! allocation and log start offsets. A CRC-framed journal of changes, compacted into a
//! snapshot written to a temporary file and atomically renamed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use broker_api::{CommittedOffset, LeaseGroupConfig, OffsetCommit, TopicConfig};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{LogError, LogResult};
use crate::io::{sync_dir, Io};
use crate::lease::{PartLeases, RecState};

/// A topic as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: u64,
    pub config: TopicConfig,
    pub log_start: Vec<i64>,
}

/// Everything the metadata holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    pub next_topic_id: u64,
    pub next_producer_id: i64,
    pub topics: BTreeMap<String, TopicMeta>,
    /// group -> topic -> partition -> commit.
    pub commits: BTreeMap<String, BTreeMap<String, BTreeMap<i32, CommittedOffset>>>,
    /// topic -> group -> config.
    pub lease_groups: BTreeMap<String, BTreeMap<String, LeaseGroupConfig>>,
    /// topic -> group -> partition -> state.
    pub leases: BTreeMap<String, BTreeMap<String, BTreeMap<i32, PartLeases>>>,
    /// group -> settings (Kafka's GROUP config resource); never an empty map. Absent from
    /// snapshots written before group configs existed.
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// group -> its coordinator's saved state; never empty. Absent from snapshots written
    /// before group snapshots existed.
    #[serde(default)]
    pub group_snapshots: BTreeMap<String, Opaque>,
}

/// Opaque bytes, kept in the JSON journal and snapshot as a base64 string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opaque(pub Bytes);

impl Serialize for Opaque {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(|v| Opaque(Bytes::from(v)))
            .map_err(serde::de::Error::custom)
    }
}

/// One journaled change. Applying a change twice has the effect of applying it once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    CreateTopic {
        name: String,
        id: u64,
        config: TopicConfig,
    },
    UpdateTopic {
        name: String,
        config: TopicConfig,
    },
    DeleteTopic {
        name: String,
        id: u64,
    },
    NextProducerId(i64),
    Commit {
        group: String,
        commits: Vec<OffsetCommit>,
    },
    /// Deletes the group's commits of the listed (topic, partition)s, or all when `None`.
    DeleteCommits {
        group: String,
        partitions: Option<Vec<(String, i32)>>,
    },
    LogStart {
        topic: String,
        partition: i32,
        offset: i64,
    },
    LeaseGroup {
        topic: String,
        group: String,
        config: LeaseGroupConfig,
    },
    Lease {
        topic: String,
        group: String,
        partition: i32,
        floor: i64,
        set: Vec<(i64, RecState)>,
        dead: Vec<i64>,
    },
    /// Starts a group's lease state of one partition over at `start`, forward or back (see
    /// [`PartLeases::reset`]); `Lease` entries can only move the floor forward.
    LeaseReset {
        topic: String,
        group: String,
        partition: i32,
        start: i64,
    },
    /// Forgets a lease group of a topic: its config and its state on every partition.
    DeleteLeaseGroup {
        topic: String,
        group: String,
    },
    /// Replaces the settings kept for a group name; an empty map removes them.
    GroupConfig {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces a group's saved coordinator state; empty bytes remove it.
    GroupSnapshot {
        group: String,
        state: Opaque,
    },
}

impl MetaState {
    /// Applies one change.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::CreateTopic { name, id, config } => {
                self.next_topic_id = self.next_topic_id.max(id + 1);
                if self.topics.get(name).is_none_or(|t| t.id < *id) {
                    self.remove_topic(name);
                    self.topics.insert(
                        name.clone(),
                        TopicMeta {
                            id: *id,
                            config: config.clone(),
                            log_start: vec![0; config.partitions as usize],
                        },
                    );
                }
            }
            Op::UpdateTopic { name, config } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.config = config.clone();
                    // Added partitions (the count never shrinks) start at offset 0.
                    let n = (config.partitions as usize).max(t.log_start.len());
                    t.log_start.resize(n, 0);
                }
            }
            Op::DeleteTopic { name, id } => {
                if self.topics.get(name).is_some_and(|t| t.id == *id) {
                    self.remove_topic(name);
                }
            }
            Op::NextProducerId(n) => self.next_producer_id = self.next_producer_id.max(*n),
            Op::Commit { group, commits } => {
                let g = self.commits.entry(group.clone()).or_default();
                for c in commits {
                    g.entry(c.topic.clone()).or_default().insert(
                        c.partition,
                        CommittedOffset {
                            offset: c.offset,
                            leader_epoch: c.leader_epoch,
                            metadata: c.metadata.clone(),
                        },
                    );
                }
            }
            Op::DeleteCommits { group, partitions } => {
                self.delete_commits(group, partitions.as_deref());
            }
            Op::LogStart {
                topic,
                partition,
                offset,
            } => {
                if let Some(ls) = self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.log_start.get_mut(*partition as usize))
                {
                    *ls = (*ls).max(*offset);
                }
            }
            Op::LeaseGroup {
                topic,
                group,
                config,
            } => {
                self.lease_groups
                    .entry(topic.clone())
                    .or_default()
                    .insert(group.clone(), config.clone());
            }
            Op::Lease {
                topic,
                group,
                partition,
                floor,
                set,
                dead,
            } => {
                self.leases
                    .entry(topic.clone())
                    .or_default()
                    .entry(group.clone())
                    .or_default()
                    .entry(*partition)
                    .or_default()
                    .apply(*floor, set, dead);
            }
            Op::LeaseReset {
                topic,
                group,
                partition,
                start,
            } => {
                self.leases
                    .entry(topic.clone())
                    .or_default()
                    .entry(group.clone())
                    .or_default()
                    .entry(*partition)
                    .or_default()
                    .reset(*start);
            }
            Op::DeleteLeaseGroup { topic, group } => {
                if let Some(groups) = self.lease_groups.get_mut(topic) {
                    groups.remove(group);
                    if groups.is_empty() {
                        self.lease_groups.remove(topic);
                    }
                }
                if let Some(groups) = self.leases.get_mut(topic) {
                    groups.remove(group);
                    if groups.is_empty() {
                        self.leases.remove(topic);
                    }
                }
            }
            Op::GroupConfig { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), configs.clone());
                }
            }
            Op::GroupSnapshot { group, state } => {
                if state.0.is_empty() {
                    self.group_snapshots.remove(group);
                } else {
                    self.group_snapshots.insert(group.clone(), state.clone());
                }
            }
        }
    }

    /// True when `group` has a config or lease state on `topic`.
    pub fn has_lease_group(&self, topic: &str, group: &str) -> bool {
        self.lease_groups
            .get(topic)
            .is_some_and(|g| g.contains_key(group))
            || self
                .leases
                .get(topic)
                .is_some_and(|g| g.contains_key(group))
    }

    /// Deletes the group's commits of `partitions` (every commit when `None`); returns how
    /// many existed. A group left without commits is forgotten.
    pub fn delete_commits(&mut self, group: &str, partitions: Option<&[(String, i32)]>) -> u64 {
        let Some(g) = self.commits.get_mut(group) else {
            return 0;
        };
        let removed = match partitions {
            None => g.values().map(|p| p.len() as u64).sum(),
            Some(list) => list
                .iter()
                .filter(|(t, p)| g.get_mut(t).is_some_and(|parts| parts.remove(p).is_some()))
                .count() as u64,
        };
        g.retain(|_, parts| !parts.is_empty());
        if partitions.is_none() || g.is_empty() {
            self.commits.remove(group);
        }
        removed
    }

    /// Forgets a topic and everything stored for it.
    pub fn remove_topic(&mut self, name: &str) {
        self.topics.remove(name);
        self.lease_groups.remove(name);
        self.leases.remove(name);
        for g in self.commits.values_mut() {
            g.remove(name);
        }
        self.commits.retain(|_, g| !g.is_empty());
    }
}

/// Frame: length u32 (of seq + payload), CRC-32 u32 (of seq + payload), seq u64, payload.
const FRAME_HEAD: usize = 8;

fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + payload.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(FRAME_HEAD + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Parses frames from `data`; returns them and the length of the valid prefix.
pub(crate) fn parse_frames(data: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + FRAME_HEAD + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        let end = pos + FRAME_HEAD + len;
        if len < 8 || end > data.len() {
            break;
        }
        let body = &data[pos + FRAME_HEAD..end];
        if crc32fast::hash(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
        out.push((seq, &body[8..]));
        pos = end;
    }
    (out, pos)
}

pub(crate) const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";

fn journal_name(n: u64) -> String {
    format!("journal-{n:020}")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) state: MetaState,
}

/// The metadata state with its journal.
pub struct Meta {
    pub state: MetaState,
    dir: PathBuf,
    io: Io,
    file: Arc<File>,
    file_no: u64,
    pos: u64,
    seq: u64,
    snapshot_bytes: u64,
}

impl Meta {
    /// Loads the snapshot and replays the journal after it; a torn journal tail is cut off.
    pub fn load(dir: &Path, io: &Io, snapshot_bytes: u64) -> LogResult<Meta> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let mut state = MetaState {
            next_producer_id: 1,
            ..MetaState::default()
        };
        let mut snap_seq = 0u64;
        let snap_path = dir.join(SNAPSHOT);
        match std::fs::read(&snap_path) {
            Ok(data) => {
                let (frames, _) = parse_frames(&data);
                let (_, payload) = frames.first().ok_or_else(|| {
                    LogError::Metadata(format!(
                        "metadata snapshot {} ({} bytes) fails its CRC or is torn at byte 0; \
                         `broker verify` reports it; restore it from a backup",
                        snap_path.display(),
                        data.len()
                    ))
                })?;
                let snap: Snapshot = serde_json::from_slice(payload).map_err(|e| {
                    LogError::Metadata(format!("metadata snapshot {}: {e}", snap_path.display()))
                })?;
                snap_seq = snap.seq;
                state = snap.state;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("reading the metadata snapshot", e)),
        }
        let _ = std::fs::remove_file(dir.join(SNAPSHOT_TMP));
        let mut journals: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| LogError::io("listing metadata", e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("journal-")?.parse().ok()
            })
            .collect();
        journals.sort_unstable();
        let mut seq = snap_seq;
        let mut last_valid = 0usize;
        for &n in &journals {
            let path = dir.join(journal_name(n));
            let data = std::fs::read(&path).map_err(|e| LogError::io("reading the journal", e))?;
            let (frames, valid) = parse_frames(&data);
            for (s, payload) in frames {
                if s <= snap_seq {
                    continue;
                }
                let op: Op = serde_json::from_slice(payload).map_err(|e| {
                    LogError::Metadata(format!("journal entry {s} in {}: {e}", path.display()))
                })?;
                state.apply(&op);
                seq = seq.max(s);
            }
            if valid < data.len() {
                tracing::warn!(
                    journal = %path.display(),
                    byte = valid,
                    len = data.len(),
                    "metadata journal frame at this byte is torn or fails its CRC; entries from it on are not applied"
                );
            }
            last_valid = valid;
        }
        let file_no = journals.last().copied().unwrap_or(0);
        let path = dir.join(journal_name(file_no));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LogError::io("opening the journal", e))?;
        // The cut bytes are kept in a quarantine file beside the journal.
        if let Some(q) = crate::damage::cut_to_quarantine(&file, &path, last_valid as u64, io)? {
            tracing::warn!(
                journal = %path.display(),
                byte = last_valid,
                quarantine = %q.display(),
                "cut the metadata journal's damaged tail into a quarantine file"
            );
        }
        io.sync_all(&file)
            .map_err(|e| LogError::io("syncing the journal", e))?;
        sync_dir(io, dir).map_err(|e| LogError::io("syncing metadata directory", e))?;
        Ok(Meta {
            state,
            dir: dir.to_path_buf(),
            io: io.clone(),
            file: Arc::new(file),
            file_no,
            pos: last_valid as u64,
            seq,
            snapshot_bytes,
        })
    }

    /// Applies `op` and appends it to the journal (not yet synced); returns its sequence
    /// number. On failure nothing changes.
    pub fn record(&mut self, op: Op) -> LogResult<u64> {
        let payload = serde_json::to_vec(&op)
            .map_err(|e| LogError::Metadata(format!("encoding a journal entry: {e}")))?;
        let seq = self.seq + 1;
        let bytes = frame(seq, &payload);
        if let Err(e) = self.io.write_at(&self.file, &bytes, self.pos) {
            let _ = self.file.set_len(self.pos);
            return Err(LogError::io("writing the journal", e));
        }
        self.pos += bytes.len() as u64;
        self.seq = seq;
        self.state.apply(&op);
        if self.pos >= self.snapshot_bytes {
            if let Err(e) = self.compact() {
                tracing::warn!(error = %e, "metadata snapshot failed; the journal keeps growing");
            }
        }
        Ok(seq)
    }

    /// The newest sequence number and the journal file holding it (for syncing).
    pub fn sync_target(&self) -> (u64, Arc<File>) {
        (self.seq, self.file.clone())
    }

    /// Writes a snapshot of the whole state and starts a fresh journal file.
    pub fn compact(&mut self) -> LogResult<()> {
        let snap = Snapshot {
            seq: self.seq,
            state: self.state.clone(),
        };
        let payload = serde_json::to_vec(&snap)
            .map_err(|e| LogError::Metadata(format!("encoding the snapshot: {e}")))?;
        let bytes = frame(self.seq, &payload);
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let f = File::create(&tmp).map_err(|e| LogError::io("creating the snapshot", e))?;
        self.io
            .write_at(&f, &bytes, 0)
            .map_err(|e| LogError::io("writing the snapshot", e))?;
        self.io
            .sync_all(&f)
            .map_err(|e| LogError::io("syncing the snapshot", e))?;
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT))
            .map_err(|e| LogError::io("renaming the snapshot", e))?;
        let next_no = self.file_no + 1;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(journal_name(next_no)))
            .map_err(|e| LogError::io("creating a journal", e))?;
        sync_dir(&self.io, &self.dir).map_err(|e| LogError::io("syncing metadata directory", e))?;
        for n in 0..=self.file_no {
            let _ = std::fs::remove_file(self.dir.join(journal_name(n)));
        }
        self.file = Arc::new(file);
        self.file_no = next_no;
        self.pos = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journal entries and snapshots written before commits had a leader epoch decode with
    /// `leader_epoch: None`.
    #[test]
    fn commits_without_a_leader_epoch_decode() {
        let old = r#"{"Commit":{"group":"g","commits":[
            {"topic":"t","partition":0,"offset":5,"metadata":"m"}]}}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        let mut state = MetaState::default();
        state.apply(&op);
        let c = &state.commits["g"]["t"][&0];
        assert_eq!(
            (c.offset, c.leader_epoch, c.metadata.as_str()),
            (5, None, "m")
        );
        let snap = r#"{"next_topic_id":1,"next_producer_id":1,"topics":{},
            "commits":{"g":{"t":{"0":{"offset":5,"metadata":"m"}}}},
            "lease_groups":{},"leases":{}}"#;
        let state: MetaState = serde_json::from_str(snap).unwrap();
        assert_eq!(state.commits["g"]["t"][&0].leader_epoch, None);
        // And a new entry keeps its epoch and a NUL byte through the JSON journal.
        let op = Op::Commit {
            group: "g".into(),
            commits: vec![OffsetCommit {
                topic: "t".into(),
                partition: 1,
                offset: 6,
                leader_epoch: Some(-3),
                metadata: "a\0b".into(),
            }],
        };
        let back: Op = serde_json::from_slice(&serde_json::to_vec(&op).unwrap()).unwrap();
        let mut state = MetaState::default();
        state.apply(&back);
        let c = &state.commits["g"]["t"][&1];
        assert_eq!((c.leader_epoch, c.metadata.as_str()), (Some(-3), "a\0b"));
    }

    /// Lease-group entries written before groups had an isolation decode as read committed;
    /// a read-uncommitted config comes back through the JSON journal.
    #[test]
    fn lease_groups_without_an_isolation_decode_read_committed() {
        let old = r#"{"LeaseGroup":{"topic":"t","group":"g","config":{
            "max_deliveries":3,"dead_letter_topic":null,"ordered_by_key":true}}}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        let mut state = MetaState::default();
        state.apply(&op);
        let c = &state.lease_groups["t"]["g"];
        assert_eq!(
            (c.max_deliveries, c.ordered_by_key, c.read_uncommitted),
            (Some(3), true, false)
        );
        let op = Op::LeaseGroup {
            topic: "t".into(),
            group: "u".into(),
            config: LeaseGroupConfig {
                read_uncommitted: true,
                ..LeaseGroupConfig::default()
            },
        };
        let back: Op = serde_json::from_slice(&serde_json::to_vec(&op).unwrap()).unwrap();
        state.apply(&back);
        assert!(state.lease_groups["t"]["u"].read_uncommitted);
        // And through a snapshot of the state.
        let snap: MetaState = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
        assert!(snap.lease_groups["t"]["u"].read_uncommitted);
        assert!(!snap.lease_groups["t"]["g"].read_uncommitted);
    }

    /// A reset moves the floor back (which `Lease` entries never do) and forgets the state
    /// from the start on; a group deletion and group configs apply as written. Each entry
    /// applied twice has the effect of applying it once.
    #[test]
    fn resets_deletions_and_group_configs_apply() {
        use crate::lease::Phase;
        let done = |dead| RecState {
            deliveries: 1,
            first_leased_at: 7,
            phase: Phase::Done { dead },
        };
        let lease = Op::Lease {
            topic: "t".into(),
            group: "g".into(),
            partition: 0,
            floor: 0,
            set: vec![(0, done(false)), (1, done(true)), (2, done(false))],
            dead: vec![1],
        };
        let reset = |start| Op::LeaseReset {
            topic: "t".into(),
            group: "g".into(),
            partition: 0,
            start,
        };
        let configs: BTreeMap<String, String> = [("k".to_string(), "v \u{e9}".to_string())].into();
        let ops = [
            lease,
            reset(1),
            Op::LeaseGroup {
                topic: "t".into(),
                group: "h".into(),
                config: LeaseGroupConfig::default(),
            },
            Op::DeleteLeaseGroup {
                topic: "t".into(),
                group: "h".into(),
            },
            Op::GroupConfig {
                group: "a".into(),
                configs: configs.clone(),
            },
            Op::GroupConfig {
                group: "b".into(),
                configs: configs.clone(),
            },
            Op::GroupConfig {
                group: "b".into(),
                configs: BTreeMap::new(),
            },
        ];
        let mut state = MetaState::default();
        for op in &ops {
            let back: Op = serde_json::from_slice(&serde_json::to_vec(op).unwrap()).unwrap();
            state.apply(&back);
            state.apply(&back);
        }
        let st = &state.leases["t"]["g"][&0];
        assert_eq!((st.floor, st.recs.len(), st.dead.len()), (1, 0, 0));
        assert!(!state.has_lease_group("t", "h"));
        assert!(state.has_lease_group("t", "g"));
        assert!(!state.lease_groups.contains_key("t"));
        assert_eq!(state.group_configs.len(), 1);
        assert_eq!(state.group_configs["a"], configs);
        // Forward over a dead-lettered record keeps its mark (it stays done).
        let mut state = MetaState::default();
        state.apply(&ops[0]);
        state.apply(&reset(3));
        let st = &state.leases["t"]["g"][&0];
        assert_eq!((st.floor, st.recs.len()), (3, 0));
        assert_eq!(st.dead.iter().copied().collect::<Vec<_>>(), vec![1]);
    }
}
