//! A share group's membership as its coordinator saves it through the store (the group-state
//! slot of `Cluster::save_group_state`, as for consumer groups), so the next coordinator (a
//! restarted broker or another broker of the cluster) knows the members and their epochs:
//! they keep heartbeating instead of rejoining. (What each member acquired is the store's
//! lease state, saved by the store itself.)
//!
//! Format (big-endian; strings as in `group_state.rs`): version byte 4, group epoch i32,
//! member count u32, then per member: id, rack (optional), client id, client host, epoch i32,
//! subscribed topic count u32 with each name, assigned topic count u32 with (name, partition
//! count u32, partition i32 each).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::membership::{Group, Member};
use crate::kafka::group_state::{bytes, opt, Reader};

/// The version byte of this format (1-2: classic groups, 3: consumer groups).
pub const VERSION: u8 = 4;

/// Whether `data` holds a share group's state.
pub fn is_share_group_state(data: &[u8]) -> bool {
    data.first() == Some(&VERSION)
}

pub(super) fn encode(g: &Group) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VERSION);
    b.put_i32(g.epoch);
    b.put_u32(g.members.len() as u32);
    for (id, m) in &g.members {
        bytes(&mut b, id.as_bytes());
        opt(&mut b, m.rack.as_deref());
        bytes(&mut b, m.client_id.as_bytes());
        bytes(&mut b, m.client_host.as_bytes());
        b.put_i32(m.epoch);
        b.put_u32(m.subscribed.len() as u32);
        for t in &m.subscribed {
            bytes(&mut b, t.as_bytes());
        }
        b.put_u32(m.assignment.len() as u32);
        for (t, ps) in &m.assignment {
            bytes(&mut b, t.as_bytes());
            b.put_u32(ps.len() as u32);
            for p in ps {
                b.put_i32(*p);
            }
        }
    }
    b.freeze()
}

/// The saved group, its members' sessions counted from `now`; `None` for bytes this build
/// cannot read.
pub(super) fn decode(data: &[u8], now: Instant) -> Option<Group> {
    let mut r = Reader(data);
    if r.u8()? != VERSION {
        return None;
    }
    let mut g = Group::default();
    g.epoch = r.i32()?;
    for _ in 0..r.count()? {
        let id = r.string()?;
        let rack = r.opt()?;
        let client_id = r.string()?;
        let client_host = r.string()?;
        let epoch = r.i32()?;
        let mut subscribed = Vec::new();
        for _ in 0..r.count()? {
            subscribed.push(r.string()?);
        }
        let mut assignment = BTreeMap::new();
        for _ in 0..r.count()? {
            let t = r.string()?;
            let mut ps = Vec::new();
            for _ in 0..r.count()? {
                ps.push(r.i32()?);
            }
            assignment.insert(t, ps);
        }
        let m = Member {
            epoch,
            rack,
            client_id,
            client_host,
            subscribed,
            last_seen: now,
            assignment,
        };
        g.members.insert(id, m);
    }
    r.end()?;
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_round_trips_and_damage_is_refused() {
        let now = Instant::now();
        let mut g = Group::default();
        g.epoch = 9;
        for (id, rack) in [("m1", None), ("m2", Some("r1".to_string()))] {
            g.members.insert(
                id.into(),
                Member {
                    epoch: 9,
                    rack,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    subscribed: vec!["a".into(), "b".into()],
                    last_seen: now,
                    assignment: [("a".to_string(), vec![0, 2])].into(),
                },
            );
        }
        let data = encode(&g);
        assert!(is_share_group_state(&data));
        let back = decode(&data, now).expect("decodes");
        assert_eq!(encode(&back), data);
        for cut in [1, 5, data.len() - 1] {
            assert!(decode(&data[..cut], now).is_none(), "cut at {cut}");
        }
        let mut consumer = data.to_vec();
        consumer[0] = 3;
        assert!(decode(&consumer, now).is_none());
    }
}
