//! Rows into batches: one UNLOGGED batch per partition, or per replica set (rows whose
//! `viewing_history` partitions live on the same nodes). The sink and the baseline writers
//! (`loadgen cassandra --mode best`) group alike because they call the same functions.

use std::collections::HashMap;

use scylla::cluster::ClusterState;
use scylla::routing::Token;
use uuid::Uuid;
use wire::PlaybackEvent;

use crate::config::BatchLimits;
use crate::statements::{history_token, HISTORY_TABLE};

/// One group per partition `(user_id, day)`, split past `max_rows`. A single-partition batch is
/// applied as one mutation on the replicas that own it.
pub fn partition_batches(events: &[PlaybackEvent], limits: &BatchLimits) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_unstable_by_key(|&index| (events[index].user_id, events[index].day()));
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_key = None;
    for index in order {
        let key = (events[index].user_id, events[index].day());
        if current_key != Some(key) || current.len() >= limits.max_rows {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            current_key = Some(key);
        }
        current.push(index);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The rows of `events` (by index) in groups, one UNLOGGED batch each: rows whose
/// `viewing_history` partitions live on the same replicas, as `replica_batches` mode sends
/// them. Public for baseline writers (`loadgen cassandra --mode best`) that must group alike.
pub fn replica_set_batches(
    cluster: &ClusterState,
    keyspace: &str,
    events: &[PlaybackEvent],
    limits: &BatchLimits,
) -> Vec<Vec<usize>> {
    let mut replicas = ReplicaGroups::new(cluster, keyspace);
    replica_batches(events, limits, |event| {
        replicas.group_of(history_token(event.user_id, event.day()))
    })
}

/// One group per replica set (rows whose partitions live on the same nodes, as the Spark
/// Cassandra connector groups them), split past `max_rows` rows or `max_multi_partition_bytes`;
/// within a group the rows of one partition stay together.
fn replica_batches(
    events: &[PlaybackEvent],
    limits: &BatchLimits,
    mut replica_set_of: impl FnMut(&PlaybackEvent) -> usize,
) -> Vec<Vec<usize>> {
    let mut keyed: Vec<(usize, u64, i32, usize)> = events
        .iter()
        .enumerate()
        .map(|(index, event)| (replica_set_of(event), event.user_id, event.day(), index))
        .collect();
    keyed.sort_unstable();
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0;
    let mut current_set = None;
    for (set, _, _, index) in keyed {
        let bytes = mutation_bytes(&events[index]);
        let full = current.len() >= limits.max_rows
            || current_bytes + bytes > limits.max_multi_partition_bytes;
        if current_set != Some(set) || full {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            current_bytes = 0;
            current_set = Some(set);
        }
        current.push(index);
        current_bytes += bytes;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// About what Cassandra counts for a row against `batch_size_fail_threshold` (the mutation's
/// data size): each cell carries a timestamp, a TTL and a local deletion time (16 bytes) beside
/// its value, and the row its clustering key and liveness info. A 12-cell row of ~70 bytes of
/// values counts ~340 bytes, not 70.
pub fn mutation_bytes(event: &PlaybackEvent) -> usize {
    const ROW: usize = 80;
    const CELL: usize = 16;
    let text = |field: &Option<wire::SmolStr>| field.as_ref().map_or(0, |text| CELL + text.len());
    let fixed = |set: bool, bytes: usize| if set { CELL + bytes } else { 0 };
    ROW + (CELL + 16) // session_id
        + (CELL + 8) // content_id
        + (CELL + 1) // kind
        + (CELL + 8) // received_at
        + (CELL + 8) // position_ms
        + fixed(event.sent_at.is_some(), 8)
        + fixed(event.duration_ms.is_some(), 8)
        + fixed(event.bitrate_kbps.is_some(), 4)
        + fixed(event.buffer_ms.is_some(), 4)
        + fixed(event.played_ms.is_some(), 4)
        + fixed(event.startup_ms.is_some(), 4)
        + fixed(event.before_start.is_some(), 1)
        + fixed(event.fatal.is_some(), 1)
        + fixed(event.country.is_some(), 2)
        + text(&event.error_code)
        + text(&event.device)
        + text(&event.cdn)
        + text(&event.app_version)
}

/// Numbers the replica sets of the history table's tokens, for one batch. The replicas of a
/// token depend only on the ring range it falls in, so each range is looked up once.
struct ReplicaGroups<'a> {
    cluster: &'a ClusterState,
    keyspace: &'a str,
    by_range: HashMap<i64, usize>,
    by_replicas: HashMap<Vec<Uuid>, usize>,
}

impl<'a> ReplicaGroups<'a> {
    fn new(cluster: &'a ClusterState, keyspace: &'a str) -> Self {
        ReplicaGroups {
            cluster,
            keyspace,
            by_range: HashMap::new(),
            by_replicas: HashMap::new(),
        }
    }

    fn group_of(&mut self, token: Token) -> usize {
        let range_end = self
            .cluster
            .replica_locator()
            .ring()
            .ring_range_full(token)
            .next()
            .map_or(i64::MIN, |(end, _)| end.value());
        if let Some(&group) = self.by_range.get(&range_end) {
            return group;
        }
        let mut replicas: Vec<Uuid> = self
            .cluster
            .get_token_endpoints(self.keyspace, HISTORY_TABLE, token)
            .iter()
            .map(|(node, _shard)| node.host_id)
            .collect();
        replicas.sort_unstable();
        let next = self.by_replicas.len();
        let group = *self.by_replicas.entry(replicas).or_insert(next);
        self.by_range.insert(range_end, group);
        group
    }
}

#[cfg(test)]
mod tests {
    use wire::MS_PER_DAY;

    use super::*;

    use testkit::event;

    const DAY: i64 = MS_PER_DAY;

    #[test]
    fn partition_batches_hold_one_partition_each_and_every_row_once() {
        let events = vec![
            event(1, 10),
            event(2, 10),
            event(1, 20),
            event(1, DAY + 5),
            event(2, 30),
            event(3, 0),
        ];
        let groups = partition_batches(&events, &BatchLimits::default());
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..events.len()).collect::<Vec<_>>());
        for group in &groups {
            let key = (events[group[0]].user_id, events[group[0]].day());
            assert!(group
                .iter()
                .all(|&i| (events[i].user_id, events[i].day()) == key));
        }
        assert_eq!(groups.len(), 4);
    }

    #[test]
    fn a_large_partition_is_split_at_the_row_cap() {
        let events: Vec<_> = (0..10).map(|i| event(7, i)).collect();
        let limits = BatchLimits {
            max_rows: 4,
            ..BatchLimits::default()
        };
        let sizes: Vec<usize> = partition_batches(&events, &limits)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
    }

    #[test]
    fn replica_batches_never_mix_replica_sets_and_respect_the_byte_cap() {
        let events: Vec<_> = (0..100).map(|i| event(i, i as i64)).collect();
        let limits = BatchLimits {
            max_rows: 1_000,
            max_multi_partition_bytes: 10 * mutation_bytes(&events[0]),
        };
        let groups = replica_batches(&events, &limits, |event| (event.user_id % 3) as usize);
        for group in &groups {
            let set = events[group[0]].user_id % 3;
            assert!(group.iter().all(|&i| events[i].user_id % 3 == set));
            assert!(group.len() <= 10);
        }
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 100);
    }
}
