//! Where partitions and groups live among the live brokers: rendezvous (highest random
//! weight) hashing, so every broker that sees the same live set makes the same choice, and a
//! broker joining or leaving moves only the keys it wins or held. A topic's partitions are
//! placed with bounded loads (no broker leads more than its even share of one topic), so a
//! 2-partition topic on 2 brokers has one leader each, as Kafka's round-robin placement does.

/// The node among `nodes` that owns `key`; `None` when `nodes` is empty.
pub fn owner(key: &[u8], nodes: impl IntoIterator<Item = i32>) -> Option<i32> {
    let k = fnv1a(key);
    nodes
        .into_iter()
        .max_by_key(|&n| (mix(k ^ mix(n as u32 as u64)), n))
}

/// The leader of each of `count` partitions of `topic` among `nodes`, in partition order:
/// each partition goes to the highest-weight node still below its even share (`count / n`,
/// or one more for the first `count % n` nodes to reach it), so the loads differ by at most
/// one; empty when `nodes` is empty.
pub fn partition_owners(topic: &str, count: i32, nodes: &[i32]) -> Vec<i32> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let count = count.max(0);
    let share = count as usize / nodes.len();
    let mut extras = count as usize % nodes.len();
    let mut load = vec![0usize; nodes.len()];
    let mut ranked: Vec<(u64, i32, usize)> = Vec::with_capacity(nodes.len());
    (0..count)
        .map(|p| {
            let k = fnv1a(&partition_key(topic, p));
            ranked.clear();
            ranked.extend(
                nodes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (mix(k ^ mix(n as u32 as u64)), n, i)),
            );
            ranked.sort_unstable_by_key(|&(w, n, _)| std::cmp::Reverse((w, n)));
            let &(_, node, i) = ranked
                .iter()
                .find(|&&(_, _, i)| load[i] < share || (load[i] == share && extras > 0))
                .expect("the shares add up to count");
            if load[i] == share {
                extras -= 1;
            }
            load[i] += 1;
            node
        })
        .collect()
}

/// The key of a partition.
pub fn partition_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 5);
    key.extend_from_slice(b"p");
    key.extend_from_slice(topic.as_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The key of a consumer group.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + 1);
    key.extend_from_slice(b"g");
    key.extend_from_slice(group.as_bytes());
    key
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(nodes: &[i32]) -> Vec<i32> {
        (0..3000)
            .map(|p| owner(&partition_key("t", p), nodes.iter().copied()).unwrap())
            .collect()
    }

    #[test]
    fn keys_spread_evenly_and_a_new_node_takes_only_its_share() {
        let three = owners(&[1, 2, 3]);
        for n in [1, 2, 3] {
            let share = three.iter().filter(|&&o| o == n).count();
            assert!(
                (800..1200).contains(&share),
                "node {n} owns {share} of 3000"
            );
        }
        let four = owners(&[1, 2, 3, 4]);
        let moved = three.iter().zip(&four).filter(|(a, b)| a != b).count();
        assert!(
            four.iter().zip(&three).all(|(b, a)| a == b || *b == 4),
            "a key moved between old nodes"
        );
        assert!(
            (550..950).contains(&moved),
            "{moved} of 3000 keys moved to the new node"
        );
        // Order of the live list does not matter; an empty list owns nothing.
        assert_eq!(owners(&[3, 1, 2]), three);
        assert_eq!(owner(b"x", []), None);
    }

    #[test]
    fn a_topic_is_spread_evenly_and_mostly_stays_put_when_a_node_goes() {
        for count in [1, 2, 3, 7, 12, 100] {
            for nodes in [&[1][..], &[1, 2], &[1, 2, 3], &[4, 9, 2, 7]] {
                let owners = partition_owners("orders", count, nodes);
                assert_eq!(owners.len(), count as usize);
                let loads: Vec<usize> = nodes
                    .iter()
                    .map(|n| owners.iter().filter(|&o| o == n).count())
                    .collect();
                let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
                assert!(
                    hi - lo <= 1,
                    "{count} partitions on {nodes:?}: loads {loads:?}"
                );
            }
        }
        // Two partitions on two nodes: one leader each, whatever the topic.
        for t in 0..200 {
            let o = partition_owners(&format!("t{t}"), 2, &[1, 2]);
            assert_ne!(o[0], o[1], "topic t{t}");
        }
        // Losing a node moves its partitions and few others.
        let three = partition_owners("orders", 300, &[1, 2, 3]);
        let two = partition_owners("orders", 300, &[1, 3]);
        assert!(two.iter().all(|&o| o != 2));
        let kept = three
            .iter()
            .zip(&two)
            .filter(|(a, b)| **a != 2 && a == b)
            .count();
        assert!(
            kept >= 150,
            "{kept} of 200 survivors' partitions kept their leader"
        );
        // The order of the live list does not matter; no node, no owners.
        assert_eq!(partition_owners("orders", 300, &[3, 2, 1]), three);
        assert!(partition_owners("orders", 3, &[]).is_empty());
    }

    #[test]
    fn a_lost_node_gives_up_only_its_keys() {
        let three = owners(&[1, 2, 3]);
        let two = owners(&[1, 3]);
        for (a, b) in three.iter().zip(&two) {
            if *a != 2 {
                assert_eq!(a, b, "a key of a surviving node moved");
            }
        }
    }
}
