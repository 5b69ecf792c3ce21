//! Fraud rings, written once for both graphs: accounts linked when they share at least two
//! identifiers (payment-method fingerprints or devices) that few accounts use, grouped into
//! connected components. One shared identifier is a family's card or a lent phone; hub
//! identifiers used by many accounts are left out by the graph query (see
//! [`crate::GraphStore::shared_identifiers`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::{Identifier, SharedIdentifiers};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingOptions {
    /// Identifiers two accounts must share to be linked.
    pub min_shared: usize,
    /// Identifiers used by more accounts than this are hubs: they link no one.
    pub max_accounts_per_identifier: u64,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            min_shared: 2,
            max_accounts_per_identifier: 10,
        }
    }
}

/// Accounts linked, directly or through each other, by shared identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// The lowest account id: stable while the ring only grows.
    pub id: u64,
    /// Sorted.
    pub accounts: Vec<u64>,
    /// The pairs that linked the ring, with what each pair shares.
    pub links: Vec<SharedIdentifiers>,
    /// Every identifier that linked someone, sorted.
    pub identifiers: Vec<Identifier>,
}

/// The connected components of `pairs`, largest first (ties: lower id first).
pub fn rings(pairs: &[SharedIdentifiers]) -> Vec<Ring> {
    let mut parent: BTreeMap<u64, u64> = BTreeMap::new();
    fn root(parent: &mut BTreeMap<u64, u64>, account: u64) -> u64 {
        let mut node = account;
        while let Some(&up) = parent.get(&node) {
            if up == node {
                break;
            }
            node = up;
        }
        // Path compression: everything on the way now points at the root.
        let mut walk = account;
        while walk != node {
            let up = parent.insert(walk, node).unwrap_or(node);
            walk = up;
        }
        node
    }
    for pair in pairs {
        parent.entry(pair.user).or_insert(pair.user);
        parent.entry(pair.other).or_insert(pair.other);
        let (a, b) = (root(&mut parent, pair.user), root(&mut parent, pair.other));
        if a != b {
            // The lower id is the root, so that a ring's id is its lowest account.
            let (low, high) = (a.min(b), a.max(b));
            parent.insert(high, low);
        }
    }
    let mut by_root: BTreeMap<u64, Ring> = BTreeMap::new();
    let accounts: Vec<u64> = parent.keys().copied().collect();
    for account in accounts {
        let id = root(&mut parent, account);
        by_root
            .entry(id)
            .or_insert_with(|| Ring {
                id,
                accounts: Vec::new(),
                links: Vec::new(),
                identifiers: Vec::new(),
            })
            .accounts
            .push(account);
    }
    for pair in pairs {
        let id = root(&mut parent, pair.user);
        if let Some(ring) = by_root.get_mut(&id) {
            ring.links.push(pair.clone());
        }
    }
    let mut rings: Vec<Ring> = by_root
        .into_values()
        .map(|mut ring| {
            let identifiers: BTreeSet<Identifier> = ring
                .links
                .iter()
                .flat_map(|link| link.identifiers.iter().cloned())
                .collect();
            ring.identifiers = identifiers.into_iter().collect();
            ring
        })
        .collect();
    rings.sort_by(|a, b| {
        b.accounts
            .len()
            .cmp(&a.accounts.len())
            .then(a.id.cmp(&b.id))
    });
    rings
}

/// How risky an account looks: 0 outside every ring; inside one, `1 - 1/accounts` (two
/// accounts 0.5, five 0.8, ten 0.9): the more accounts share identifiers, the less likely
/// a household explains it.
pub fn risk_score(ring_accounts: usize) -> f64 {
    if ring_accounts < 2 {
        0.0
    } else {
        1.0 - 1.0 / ring_accounts as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: u64, other: u64) -> SharedIdentifiers {
        SharedIdentifiers {
            user,
            other,
            identifiers: vec![
                Identifier::Device(format!("d{user}-{other}")),
                Identifier::PaymentMethod(format!("p{user}-{other}")),
            ],
        }
    }

    #[test]
    fn chains_join_into_one_ring_and_strangers_stay_apart() {
        let found = rings(&[pair(5, 9), pair(1, 5), pair(20, 30)]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].id, 1);
        assert_eq!(found[0].accounts, vec![1, 5, 9]);
        assert_eq!(found[0].links.len(), 2);
        assert_eq!(found[0].identifiers.len(), 4);
        assert_eq!(found[1].accounts, vec![20, 30]);
    }

    #[test]
    fn risk_grows_with_the_ring() {
        assert_eq!(risk_score(1), 0.0);
        assert_eq!(risk_score(2), 0.5);
        assert!((risk_score(10) - 0.9).abs() < 1e-9);
    }
}
