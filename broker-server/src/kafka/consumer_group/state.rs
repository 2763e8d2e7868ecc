//! A KIP-848 consumer group's state as its coordinator saves it through the store
//! (`Cluster::save_group_state`, the same slot a classic group's snapshot uses), so that the
//! next coordinator (this broker after a restart, or another broker of the cluster) carries
//! on with the same group epoch, member epochs and assignments: members keep heartbeating
//! with their epochs and nobody rebalances.
//!
//! Format (big-endian; strings and optional strings as in `group_state.rs`): version byte 3,
//! group epoch i32, assignment epoch i32, assignor, resolved regex count u32 with each regex,
//! subscribed topic count u32 with (name, id 16 bytes, partition count i32) each, member
//! count u32 with per member: id, instance id, rack id, client id, client host, rebalance
//! timeout u32 ms, topic name count u32 with each name, regex, assignor, state u8, epoch i32,
//! previous epoch i32, assigned partitions, partitions pending revocation, revoking u8; then
//! target count u32 with (member id, partitions) each. Partitions: topic count u32 with (id
//! 16 bytes, count u32, partition i32 each).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{compile_regex, Group, Member, MemberState, Partitions, TopicMeta};
use crate::kafka::group_state::{bytes, opt, Reader};

/// The version byte of this format (1 and 2 are classic groups' snapshots).
pub const VERSION: u8 = 3;

/// Whether `data` holds a consumer group's state (rather than a classic group's).
pub fn is_consumer_group_state(data: &[u8]) -> bool {
    data.first() == Some(&VERSION)
}

pub(super) fn encode(g: &Group) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VERSION);
    b.put_i32(g.epoch);
    b.put_i32(g.assignment_epoch);
    bytes(&mut b, g.assignor.as_bytes());
    b.put_u32(g.resolved_regexes.len() as u32);
    for re in &g.resolved_regexes {
        bytes(&mut b, re.as_bytes());
    }
    b.put_u32(g.subscribed.len() as u32);
    for (name, t) in &g.subscribed {
        bytes(&mut b, name.as_bytes());
        b.put_slice(t.id.as_bytes());
        b.put_i32(t.partitions);
    }
    b.put_u32(g.members.len() as u32);
    for (id, m) in &g.members {
        bytes(&mut b, id.as_bytes());
        opt(&mut b, m.instance_id.as_deref());
        opt(&mut b, m.rack_id.as_deref());
        bytes(&mut b, m.client_id.as_bytes());
        bytes(&mut b, m.client_host.as_bytes());
        b.put_u32(m.rebalance_timeout.as_millis().min(u32::MAX as u128) as u32);
        b.put_u32(m.topic_names.len() as u32);
        for n in &m.topic_names {
            bytes(&mut b, n.as_bytes());
        }
        opt(&mut b, m.topic_regex.as_ref().map(|(s, _)| s.as_str()));
        opt(&mut b, m.assignor.as_deref());
        b.put_u8(match m.state {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        });
        b.put_i32(m.epoch);
        b.put_i32(m.previous_epoch);
        partitions(&mut b, &m.assigned);
        partitions(&mut b, &m.pending_revocation);
        b.put_u8(m.revoke_deadline.is_some() as u8);
    }
    b.put_u32(g.target.len() as u32);
    for (id, p) in &g.target {
        bytes(&mut b, id.as_bytes());
        partitions(&mut b, p);
    }
    b.freeze()
}

/// The saved group as of `now` (every member gets a full session from `now`; one that was
/// revoking gets its rebalance timeout again); `None` for bytes this build cannot read.
pub(super) fn decode(data: &[u8], now: Instant) -> Option<Group> {
    let mut r = Reader(data);
    if r.u8()? != VERSION {
        return None;
    }
    let mut g = Group {
        epoch: r.i32()?,
        assignment_epoch: r.i32()?,
        assignor: r.string()?,
        ..Group::default()
    };
    for _ in 0..r.count()? {
        g.resolved_regexes.insert(r.string()?);
    }
    for _ in 0..r.count()? {
        let name = r.string()?;
        let id = uuid(&mut r)?;
        let partitions = r.i32()?;
        g.subscribed.insert(name, TopicMeta { id, partitions });
    }
    for _ in 0..r.count()? {
        let id = r.string()?;
        let mut m = Member::new(now);
        m.instance_id = r.opt()?;
        m.rack_id = r.opt()?;
        m.client_id = r.string()?;
        m.client_host = r.string()?;
        m.rebalance_timeout = Duration::from_millis(r.u32()? as u64);
        for _ in 0..r.count()? {
            m.topic_names.insert(r.string()?);
        }
        m.topic_regex = match r.opt()? {
            Some(s) => Some((s.clone(), compile_regex(&s)?)),
            None => None,
        };
        m.assignor = r.opt()?;
        m.state = match r.u8()? {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => return None,
        };
        m.epoch = r.i32()?;
        m.previous_epoch = r.i32()?;
        m.assigned = read_partitions(&mut r)?;
        m.pending_revocation = read_partitions(&mut r)?;
        m.revoke_deadline = (r.u8()? != 0).then(|| now + m.rebalance_timeout);
        g.put_member(&id, m);
    }
    for _ in 0..r.count()? {
        let id = r.string()?;
        g.target.insert(id, read_partitions(&mut r)?);
    }
    r.end()?;
    Some(g)
}

fn partitions(b: &mut BytesMut, p: &Partitions) {
    b.put_u32(p.len() as u32);
    for (t, ps) in p {
        b.put_slice(t.as_bytes());
        b.put_u32(ps.len() as u32);
        for n in ps {
            b.put_i32(*n);
        }
    }
}

fn read_partitions(r: &mut Reader) -> Option<Partitions> {
    let mut out = BTreeMap::new();
    for _ in 0..r.count()? {
        let t = uuid(r)?;
        let mut ps = BTreeSet::new();
        for _ in 0..r.count()? {
            ps.insert(r.i32()?);
        }
        out.insert(t, ps);
    }
    Some(out)
}

fn uuid(r: &mut Reader) -> Option<Uuid> {
    Some(Uuid::from_bytes(r.take(16)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now: Instant) -> Group {
        let t1 = Uuid::from_u128(1);
        let t2 = Uuid::from_u128(2);
        let mut g = Group {
            epoch: 7,
            assignment_epoch: 6,
            assignor: "range".into(),
            ..Group::default()
        };
        g.resolved_regexes.insert("orders-.*".into());
        g.subscribed.insert(
            "a".into(),
            TopicMeta {
                id: t1,
                partitions: 3,
            },
        );
        g.subscribed.insert(
            "orders-1".into(),
            TopicMeta {
                id: t2,
                partitions: 2,
            },
        );
        let mut a = Member::new(now);
        a.client_id = "c1".into();
        a.client_host = "/127.0.0.1".into();
        a.instance_id = Some("i1".into());
        a.topic_names.insert("a".into());
        a.epoch = 6;
        a.previous_epoch = 5;
        a.assigned.insert(t1, [0, 1].into());
        a.pending_revocation.insert(t1, [2].into());
        a.state = MemberState::UnrevokedPartitions;
        a.revoke_deadline = Some(now);
        g.put_member("m1", a);
        let mut b = Member::new(now);
        b.topic_regex = Some(("orders-.*".into(), compile_regex("orders-.*").unwrap()));
        b.assignor = Some("range".into());
        b.rack_id = Some("r1".into());
        b.epoch = 6;
        b.assigned.insert(t2, [0, 1].into());
        g.put_member("m2", b);
        g.target.insert("m1".into(), [(t1, [0, 1].into())].into());
        g.target
            .insert("m2".into(), [(t1, [2].into()), (t2, [0, 1].into())].into());
        g
    }

    #[test]
    fn a_group_round_trips() {
        let now = Instant::now();
        let g = sample(now);
        let data = encode(&g);
        assert!(is_consumer_group_state(&data));
        let back = decode(&data, now).expect("decodes");
        assert_eq!(encode(&back), data);
        assert_eq!(back.owners, g.owners);
        assert_eq!(back.state(), g.state());
        assert_eq!(
            back.members["m2"].topic_regex.as_ref().unwrap().0,
            "orders-.*"
        );
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let now = Instant::now();
        let data = encode(&sample(now));
        for cut in [1, 5, data.len() / 2, data.len() - 1] {
            assert!(decode(&data[..cut], now).is_none(), "cut at {cut}");
        }
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(decode(&longer, now).is_none());
        let mut classic = data.to_vec();
        classic[0] = 2;
        assert!(decode(&classic, now).is_none());
        // A huge count is refused before anything is allocated for it.
        let mut huge = BytesMut::new();
        huge.put_u8(VERSION);
        huge.put_i32(1);
        huge.put_i32(1);
        bytes(&mut huge, b"uniform");
        huge.put_u32(u32::MAX);
        assert!(decode(&huge, now).is_none());
    }
}
