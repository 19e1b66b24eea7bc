//! Pure placement: rendezvous (highest random weight) hashing of keys to
//! nodes. Adding or removing a node moves only the keys it wins or held.

/// Returns the weight of `node` for `key`: a 64-bit mix of both.
fn weight(key: u64, node: u64) -> u64 {
    // SplitMix64 finaliser over the combined value: cheap and well spread.
    let mut z = key ^ node.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Returns the `count` nodes with the highest weight for `key`, best first.
pub fn replicas(key: u64, nodes: &[u64], count: usize) -> Vec<u64> {
    let mut ranked: Vec<(u64, u64)> = nodes.iter().map(|n| (weight(key, *n), *n)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.into_iter().take(count).map(|(_, n)| n).collect()
}

/// Returns the node with the highest weight for `key`, if there is any.
pub fn owner(key: u64, nodes: impl IntoIterator<Item = u64>) -> Option<u64> {
    nodes.into_iter().max_by_key(|n| (weight(key, *n), *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_evenly_over_ten_nodes() {
        let nodes: Vec<u64> = (1..=10).collect();
        let mut counts = [0usize; 11];
        for key in 0..100_000u64 {
            counts[replicas(key, &nodes, 1)[0] as usize] += 1;
        }
        let mean = 10_000.0;
        for count in &counts[1..] {
            let off = (*count as f64 - mean).abs() / mean;
            assert!(off < 0.10, "{counts:?}");
        }
    }

    #[test]
    fn a_join_moves_about_one_nth_of_the_keys() {
        let before: Vec<u64> = (1..=9).collect();
        let after: Vec<u64> = (1..=10).collect();
        let moved = (0..100_000u64)
            .filter(|key| replicas(*key, &before, 1) != replicas(*key, &after, 1))
            .count();
        let fraction = moved as f64 / 100_000.0;
        println!("a tenth node moved {fraction:.4} of 100,000 keys");
        // Ideal: 1/10. Every moved key went to the new node.
        assert!((0.09..0.11).contains(&fraction), "moved {fraction}");
        assert!((0..100_000u64).all(|key| {
            let (b, a) = (replicas(key, &before, 1), replicas(key, &after, 1));
            b == a || a == vec![10]
        }));
    }

    #[test]
    fn the_owner_is_the_first_replica() {
        let nodes = [7, 3, 11, 5];
        for key in 0..1_000u64 {
            assert_eq!(owner(key, nodes), Some(replicas(key, &nodes, 1)[0]));
        }
        assert_eq!(owner(1, []), None);
    }

    #[test]
    fn replica_sets_are_distinct_and_stable() {
        let nodes = [7, 3, 11, 5];
        let set = replicas(42, &nodes, 3);
        assert_eq!(set.len(), 3);
        let mut dedup = set.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), 3);
        assert_eq!(
            set,
            replicas(42, &[5, 11, 3, 7], 3),
            "independent of node order"
        );
        assert_eq!(
            replicas(1, &[1, 2], 3).len(),
            2,
            "never more replicas than nodes"
        );
    }
}
