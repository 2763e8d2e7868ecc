//! Assignment of topic partitions to the members of a share group. Unlike a consumer group,
//! a partition may go to several members (records are shared by acquisition locks): every
//! partition goes to at least one subscribed member, and every subscribed member gets at
//! least one partition of each topic it subscribes to.

use std::collections::BTreeMap;

/// Per topic: its partition count; per member: its subscribed topics.
/// Returns per member: topic -> sorted partitions.
pub fn assign(
    partitions: &BTreeMap<String, i32>,
    members: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (topic, &count) in partitions {
        if count <= 0 {
            continue;
        }
        let subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.iter().any(|t| t == topic))
            .map(|(m, _)| m)
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        // Start at a topic-dependent member so several topics do not all load the first.
        let shift = topic
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let n = subscribed.len();
        let p = count as usize;
        let mut give = |member: &String, partition: i32| {
            out.entry(member.clone())
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(partition);
        };
        if p >= n {
            for partition in 0..p {
                give(subscribed[(partition + shift) % n], partition as i32);
            }
        } else {
            for (i, member) in subscribed.iter().enumerate() {
                give(member, ((i + shift) % p) as i32);
            }
        }
    }
    for topics in out.values_mut() {
        for parts in topics.values_mut() {
            parts.sort_unstable();
            parts.dedup();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn every_partition_and_every_member_is_covered() {
        let parts: BTreeMap<String, i32> = [("a".to_string(), 6), ("b".to_string(), 1)].into();
        for n in 1..8 {
            let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
            let ms: BTreeMap<String, Vec<String>> = names
                .iter()
                .map(|m| (m.clone(), vec!["a".to_string(), "b".to_string()]))
                .collect();
            let got = assign(&parts, &ms);
            for (topic, &count) in &parts {
                for p in 0..count {
                    assert!(
                        got.values()
                            .any(|t| t.get(topic).is_some_and(|v| v.contains(&p))),
                        "{topic}-{p} unassigned with {n} members"
                    );
                }
                for m in &names {
                    assert!(!got[m][topic].is_empty(), "{m} got nothing of {topic}");
                }
            }
            // With at least as many partitions as members, no partition is given twice.
            let a_total: usize = got.values().map(|t| t["a"].len()).sum();
            assert_eq!(a_total, 6.max(n));
        }
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        let parts: BTreeMap<String, i32> = [("a".to_string(), 2), ("b".to_string(), 2)].into();
        let got = assign(&parts, &members(&[("x", &["a"]), ("y", &["b"])]));
        assert_eq!(got["x"].keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(got["x"]["a"], vec![0, 1]);
        assert_eq!(got["y"]["b"], vec![0, 1]);
    }
}
