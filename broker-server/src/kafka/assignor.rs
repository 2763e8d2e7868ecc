//! Server-side partition assignors of KIP-848 consumer groups: `uniform` (the default) and
//! `range`, chosen by the members' `server_assignor`.
//!
//! An assignor maps every member to the partitions it should own (the group's *target
//! assignment*); the coordinator then moves each member towards its target one step at a
//! time (`consumer_group.rs`). Both assignors are deterministic; `uniform` is sticky: a
//! member keeps what it had in the previous target as long as the balance allows.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignor used when no member names one.
pub const DEFAULT_ASSIGNOR: &str = "uniform";
/// Every served assignor.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// A member as the assignor sees it.
#[derive(Debug, Clone, Default)]
pub struct AssignMember {
    pub id: String,
    /// The topics it subscribes to (resolved to ids; topics that do not exist are absent).
    pub topics: BTreeSet<Uuid>,
    /// Its partitions in the previous target assignment (for stickiness).
    pub current: Partitions,
}

/// Whether `name` is a served assignor.
pub fn is_known(name: &str) -> bool {
    ASSIGNORS.contains(&name)
}

/// The target assignment of `members` over topics of `partition_counts` (topic id to number
/// of partitions) under the assignor `name` (unknown names use the default).
pub fn assign(
    name: &str,
    members: &[AssignMember],
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    match name {
        "range" => range(members, partition_counts),
        _ => uniform(members, partition_counts),
    }
}

/// Per topic, the subscribed members sorted by id each get a contiguous range; the first
/// `partitions % members` get one more.
fn range(
    members: &[AssignMember],
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = members
        .iter()
        .map(|m| (m.id.clone(), Partitions::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.id.as_str())
            .collect();
        if subs.is_empty() || count <= 0 {
            continue;
        }
        subs.sort_unstable();
        let n = subs.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in subs.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            if take > 0 {
                let set = out
                    .get_mut(*id)
                    .expect("every member has an entry")
                    .entry(*topic)
                    .or_default();
                set.extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

/// Balances the number of partitions per member, each partition going only to members that
/// subscribe to its topic: members first keep what they had (a partition once), the rest go
/// to the least loaded eligible member, then partitions move from the most to the least
/// loaded eligible members until no move narrows the gap.
fn uniform(
    members: &[AssignMember],
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    let mut sorted: Vec<&AssignMember> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    // Every assignable partition, with the members that may own it.
    let mut owner: BTreeMap<(Uuid, i32), Option<usize>> = BTreeMap::new();
    for (topic, &count) in partition_counts {
        if !sorted.iter().any(|m| m.topics.contains(topic)) {
            continue;
        }
        for p in 0..count.max(0) {
            owner.insert((*topic, p), None);
        }
    }
    let mut load = vec![0usize; sorted.len()];
    // 1. Stickiness: keep previous partitions that are still valid, once each.
    for (i, m) in sorted.iter().enumerate() {
        for (topic, parts) in &m.current {
            if !m.topics.contains(topic) {
                continue;
            }
            for p in parts {
                if let Some(slot @ None) = owner.get_mut(&(*topic, *p)) {
                    *slot = Some(i);
                    load[i] += 1;
                }
            }
        }
    }
    // A member holding more than its fair share gives the excess back first, so a joining
    // member of a group with one subscription gets its share.
    let total = owner.len();
    if !sorted.is_empty() {
        let all_same = sorted.windows(2).all(|w| w[0].topics == w[1].topics);
        if all_same {
            let n = sorted.len();
            let ceil = total.div_ceil(n);
            let floor = total / n;
            let mut ceil_slots = total % n;
            // Members keeping ceil partitions are those with the most already.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|a, b| load[*b].cmp(&load[*a]).then(a.cmp(b)));
            let mut quota = vec![floor; n];
            for i in order {
                if ceil_slots > 0 && load[i] >= ceil {
                    quota[i] = ceil;
                    ceil_slots -= 1;
                }
            }
            for (i, q) in quota.iter().enumerate() {
                if load[i] > *q {
                    let mut excess = load[i] - q;
                    for slot in owner.values_mut().rev() {
                        if excess == 0 {
                            break;
                        }
                        if *slot == Some(i) {
                            *slot = None;
                            excess -= 1;
                        }
                    }
                    load[i] = *q;
                }
            }
        }
    }
    // 2. The rest to the least loaded eligible member.
    let keys: Vec<(Uuid, i32)> = owner.keys().copied().collect();
    for key in &keys {
        if owner[key].is_some() {
            continue;
        }
        let best = (0..sorted.len())
            .filter(|i| sorted[*i].topics.contains(&key.0))
            .min_by_key(|i| (load[*i], *i));
        if let Some(i) = best {
            owner.insert(*key, Some(i));
            load[i] += 1;
        }
    }
    // 3. Move partitions while a move narrows a gap of two or more.
    loop {
        let mut moved = false;
        for key in &keys {
            let Some(from) = owner[key] else { continue };
            let to = (0..sorted.len())
                .filter(|i| sorted[*i].topics.contains(&key.0))
                .min_by_key(|i| (load[*i], *i));
            if let Some(to) = to {
                if load[to] + 1 < load[from] {
                    owner.insert(*key, Some(to));
                    load[from] -= 1;
                    load[to] += 1;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Partitions> = sorted
        .iter()
        .map(|m| (m.id.clone(), Partitions::new()))
        .collect();
    for ((topic, p), o) in owner {
        if let Some(i) = o {
            out.get_mut(&sorted[i].id)
                .expect("every member has an entry")
                .entry(topic)
                .or_default()
                .insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[Uuid]) -> AssignMember {
        AssignMember {
            id: id.into(),
            topics: topics.iter().copied().collect(),
            current: Partitions::new(),
        }
    }

    fn count(p: &Partitions) -> usize {
        p.values().map(|s| s.len()).sum()
    }

    fn all_once(out: &BTreeMap<String, Partitions>, counts: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for parts in out.values() {
            for (t, ps) in parts {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t} {p} assigned twice");
                }
            }
        }
        let want: usize = counts.values().map(|c| *c as usize).sum();
        assert_eq!(seen.len(), want);
    }

    #[test]
    fn range_splits_each_topic_in_contiguous_ranges() {
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let counts = BTreeMap::from([(t1, 5), (t2, 2)]);
        let ms = vec![
            member("b", &[t1, t2]),
            member("a", &[t1, t2]),
            member("c", &[t1]),
        ];
        let out = assign("range", &ms, &counts);
        all_once(&out, &counts);
        assert_eq!(out["a"][&t1], BTreeSet::from([0, 1]));
        assert_eq!(out["b"][&t1], BTreeSet::from([2, 3]));
        assert_eq!(out["c"][&t1], BTreeSet::from([4]));
        assert_eq!(out["a"][&t2], BTreeSet::from([0]));
        assert_eq!(out["b"][&t2], BTreeSet::from([1]));
        assert!(!out["c"].contains_key(&t2));
    }

    #[test]
    fn uniform_balances_and_is_sticky() {
        let t = Uuid::new_v4();
        let counts = BTreeMap::from([(t, 6)]);
        let mut ms = vec![member("a", &[t]), member("b", &[t]), member("c", &[t])];
        let first = assign("uniform", &ms, &counts);
        all_once(&first, &counts);
        for m in first.values() {
            assert_eq!(count(m), 2);
        }
        // c leaves: a and b keep theirs and share c's.
        ms.pop();
        for m in &mut ms {
            m.current = first[&m.id].clone();
        }
        let second = assign("uniform", &ms, &counts);
        all_once(&second, &counts);
        for m in &ms {
            assert!(first[&m.id][&t].is_subset(&second[&m.id][&t]));
            assert_eq!(count(&second[&m.id]), 3);
        }
        // d joins: it gets two, taken from a and b, which keep the rest.
        for m in &mut ms {
            m.current = second[&m.id].clone();
        }
        ms.push(member("d", &[t]));
        let third = assign("uniform", &ms, &counts);
        all_once(&third, &counts);
        assert_eq!(count(&third["d"]), 2);
        for id in ["a", "b"] {
            assert_eq!(count(&third[id]), 2);
            assert!(third[id][&t].is_subset(&second[id][&t]));
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let counts = BTreeMap::from([(t1, 4), (t2, 4)]);
        let ms = vec![member("a", &[t1]), member("b", &[t1, t2])];
        let out = assign("uniform", &ms, &counts);
        all_once(&out, &counts);
        assert!(!out["a"].contains_key(&t2));
        assert_eq!(count(&out["a"]), 4);
        assert_eq!(count(&out["b"]), 4);
        // A topic nobody subscribes to is not assigned.
        let ms = vec![member("a", &[t1])];
        let out = assign("uniform", &ms, &counts);
        assert_eq!(count(&out["a"]), 4);
    }
}
