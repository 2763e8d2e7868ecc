//! A consumer group's state as one coordinator hands it to the next through the store
//! (`Cluster::save_group_state`): generation, protocol, leader, and each member with its
//! subscription and assignment, so the members of a stable group keep going with their
//! assignments when their coordinator dies, with no rebalance.
//!
//! Format (big-endian): version byte 2, generation i32, protocol type, protocol, leader
//! (optional strings: i32 length, -1 for none), member count u32, then per member: id,
//! instance id (optional), client id, client host, session and rebalance timeouts (u32 ms),
//! protocol count u16 with (name, metadata bytes) each, assignment bytes. Version 1 is the
//! generation alone.

use bytes::{BufMut, Bytes, BytesMut};

/// A member as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_ms: u32,
    pub rebalance_ms: u32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// A group as saved; `members` is empty when only the generation is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupSnapshot {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

/// Most members a snapshot may hold (a bound on what a damaged row can make us allocate).
const MAX_MEMBERS: u32 = 100_000;
/// Most items of any list of a consumer or share group's saved state (`Reader::count`).
const MAX_ITEMS: u32 = 1_000_000;

impl GroupSnapshot {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(2);
        b.put_i32(self.generation);
        opt(&mut b, self.protocol_type.as_deref());
        opt(&mut b, self.protocol.as_deref());
        opt(&mut b, self.leader.as_deref());
        b.put_u32(self.members.len() as u32);
        for m in &self.members {
            bytes(&mut b, m.id.as_bytes());
            opt(&mut b, m.instance_id.as_deref());
            bytes(&mut b, m.client_id.as_bytes());
            bytes(&mut b, m.client_host.as_bytes());
            b.put_u32(m.session_ms);
            b.put_u32(m.rebalance_ms);
            b.put_u16(m.protocols.len() as u16);
            for (name, meta) in &m.protocols {
                bytes(&mut b, name.as_bytes());
                bytes(&mut b, meta);
            }
            bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    /// The saved group; `None` for bytes this build cannot read (the group then starts over
    /// at generation 0: members rejoin).
    pub fn decode(data: &[u8]) -> Option<GroupSnapshot> {
        let mut r = Reader(data);
        match r.u8()? {
            1 => {
                let generation = r.i32()?;
                r.end()?;
                Some(GroupSnapshot {
                    generation,
                    ..GroupSnapshot::default()
                })
            }
            2 => {
                let generation = r.i32()?;
                let protocol_type = r.opt()?;
                let protocol = r.opt()?;
                let leader = r.opt()?;
                let n = r.u32()?;
                if n > MAX_MEMBERS {
                    return None;
                }
                let mut members = Vec::new();
                for _ in 0..n {
                    let id = r.string()?;
                    let instance_id = r.opt()?;
                    let client_id = r.string()?;
                    let client_host = r.string()?;
                    let session_ms = r.u32()?;
                    let rebalance_ms = r.u32()?;
                    let np = r.u16()?;
                    let mut protocols = Vec::new();
                    for _ in 0..np {
                        protocols.push((r.string()?, Bytes::copy_from_slice(r.bytes()?)));
                    }
                    let assignment = Bytes::copy_from_slice(r.bytes()?);
                    members.push(MemberSnapshot {
                        id,
                        instance_id,
                        client_id,
                        client_host,
                        session_ms,
                        rebalance_ms,
                        protocols,
                        assignment,
                    });
                }
                r.end()?;
                Some(GroupSnapshot {
                    generation,
                    protocol_type,
                    protocol,
                    leader,
                    members,
                })
            }
            _ => None,
        }
    }
}

pub(super) fn bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub(super) fn opt(b: &mut BytesMut, v: Option<&str>) {
    match v {
        Some(s) => bytes(b, s.as_bytes()),
        None => b.put_i32(-1),
    }
}

/// Reads what `bytes` and `opt` wrote, big-endian; `None` past the end.
pub(super) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.i32()?).ok()?;
        self.take(n)
    }
    pub(super) fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    pub(super) fn opt(&mut self) -> Option<Option<String>> {
        let n = self.i32()?;
        if n < 0 {
            return Some(None);
        }
        let s = self.take(n as usize)?;
        Some(Some(String::from_utf8(s.to_vec()).ok()?))
    }
    /// A count of items to read, refused above [`MAX_ITEMS`] (before anything is allocated
    /// for them).
    pub(super) fn count(&mut self) -> Option<u32> {
        self.u32().filter(|n| *n <= MAX_ITEMS)
    }
    pub(super) fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GroupSnapshot {
        GroupSnapshot {
            generation: 7,
            protocol_type: Some("consumer".into()),
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![
                MemberSnapshot {
                    id: "m1".into(),
                    instance_id: None,
                    client_id: "c1".into(),
                    client_host: "/127.0.0.1".into(),
                    session_ms: 6000,
                    rebalance_ms: 30000,
                    protocols: vec![("range".into(), Bytes::from_static(b"\x00\x01sub"))],
                    assignment: Bytes::from_static(b"assigned"),
                },
                MemberSnapshot {
                    id: "m2".into(),
                    instance_id: Some("static-2".into()),
                    client_id: "c2".into(),
                    client_host: String::new(),
                    session_ms: 10000,
                    rebalance_ms: 10000,
                    protocols: vec![],
                    assignment: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let s = sample();
        assert_eq!(GroupSnapshot::decode(&s.encode()), Some(s));
        let gen_only = [1u8, 0, 0, 0, 41];
        assert_eq!(GroupSnapshot::decode(&gen_only).unwrap().generation, 41);
    }

    #[test]
    fn damaged_snapshots_are_refused_not_trusted() {
        let full = sample().encode();
        for cut in 0..full.len() {
            assert_eq!(GroupSnapshot::decode(&full[..cut]), None, "cut at {cut}");
        }
        let mut trailing = full.to_vec();
        trailing.push(0);
        assert_eq!(GroupSnapshot::decode(&trailing), None);
        assert_eq!(GroupSnapshot::decode(&[9, 0, 0, 0, 1]), None);
        // A huge member count is refused before anything is allocated for it.
        let mut huge = vec![2u8, 0, 0, 0, 1];
        for _ in 0..3 {
            huge.extend_from_slice(&(-1i32).to_be_bytes());
        }
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(GroupSnapshot::decode(&huge), None);
    }
}
