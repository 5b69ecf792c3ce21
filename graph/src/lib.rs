//! The graph port: who watched what (`(:User)-[:WATCHED]->(:Title)`) and which identifiers
//! accounts used (`(:User)-[:PAID_WITH]->(:PaymentMethod)`, `(:User)-[:USED]->(:Device)`).
//!
//! Two implementations behind one contract suite (`tests/contract.rs`): [`MemoryGraph`], the
//! in-process graph of the embedded default, and [`Neo4jGraph`] at scale. The graph answers
//! two kinds of questions, and the logic on top of the answers is written once, here:
//! - co-watching, for item-to-item similarity ([`similarity`]);
//! - identifiers shared by accounts, for fraud rings ([`rings`]).
//!
//! The graph is fed by a side path ([`feed::GraphFeeder`]) and read by periodic refreshes,
//! never on a request's path.

pub mod feed;
mod memory;
mod neo4j;
pub mod rings;
pub mod similarity;

use std::fmt;

use async_trait::async_trait;

pub use memory::MemoryGraph;
pub use neo4j::{Neo4jGraph, Neo4jOptions};

/// Why the graph could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Neo4j failed, could not be reached, or did not answer in time.
    #[error("neo4j: {context}: {message}")]
    Neo4j {
        context: &'static str,
        message: String,
    },
    /// An answer did not have the shape the query asks for.
    #[error("graph answer: {0}")]
    Corrupt(String),
}

/// What one coalesced round of playback says about a user and a title. Merging two is
/// commutative: plays add up, the furthest position and the latest time win, completion sticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    pub user: u64,
    pub title: u64,
    /// `start` events.
    pub plays: u64,
    /// The furthest position reached, ms (a replayed event does not inflate it).
    pub watch_ms: u64,
    /// A `complete` event was seen.
    pub completed: bool,
    /// The latest event's time, epoch ms.
    pub last_ts: i64,
}

impl Watch {
    /// Folds `other` (same user and title) into `self`.
    pub fn merge(&mut self, other: &Watch) {
        self.plays = self.plays.saturating_add(other.plays);
        self.watch_ms = self.watch_ms.max(other.watch_ms);
        self.completed |= other.completed;
        self.last_ts = self.last_ts.max(other.last_ts);
    }
}

/// Something an account used that another account could share.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identifier {
    /// A payment method's fingerprint (a hash of the token: never the token).
    PaymentMethod(String),
    /// A device's identifier.
    Device(String),
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::PaymentMethod(fingerprint) => write!(f, "payment_method:{fingerprint}"),
            Identifier::Device(id) => write!(f, "device:{id}"),
        }
    }
}

/// `user` used `identifier`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityLink {
    pub user: u64,
    pub identifier: Identifier,
}

/// One write to the graph: applied as a whole or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphUpdate {
    pub watches: Vec<Watch>,
    pub identities: Vec<IdentityLink>,
}

impl GraphUpdate {
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty() && self.identities.is_empty()
    }
}

/// `title` and `other` were watched by `together` of the same viewers (viewers of more than
/// the query's title cap left out); each title's own viewer count alongside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoWatch {
    pub title: u64,
    pub other: u64,
    pub together: u64,
    pub title_viewers: u64,
    pub other_viewers: u64,
}

/// What a user watched of one title, as the graph holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserWatch {
    pub title: u64,
    pub plays: u64,
    pub watch_ms: u64,
    pub completed: bool,
    pub last_ts: i64,
}

/// Two accounts and the identifiers both used (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedIdentifiers {
    /// The lower account id.
    pub user: u64,
    pub other: u64,
    pub identifiers: Vec<Identifier>,
}

/// A title and how many viewers it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TitleViewers {
    pub title: u64,
    pub viewers: u64,
}

/// The order `watches_of` answers in, on every graph: the latest first (ties: lower title id).
fn latest_first(watches: &mut [UserWatch]) {
    watches.sort_by(|a, b| b.last_ts.cmp(&a.last_ts).then(a.title.cmp(&b.title)));
}

/// The order `titles` answers in, on every graph: most viewed first (ties: lower id).
fn most_viewed_first(titles: &mut [TitleViewers]) {
    titles.sort_by(|a, b| b.viewers.cmp(&a.viewers).then(a.title.cmp(&b.title)));
}

#[async_trait]
pub trait GraphStore: Send + Sync + 'static {
    /// Applies `update` as one write. Watches merge into what the graph holds ([`Watch::merge`]);
    /// an identity link already there changes nothing.
    async fn apply(&self, update: &GraphUpdate) -> Result<(), GraphError>;

    /// For each of `titles`, every other title its viewers watched, with how many of them did.
    /// Viewers who watched more than `max_viewer_titles` titles are left out: such a hub
    /// viewer links everything to everything and says nothing of taste.
    async fn co_watched(
        &self,
        titles: &[u64],
        max_viewer_titles: u64,
    ) -> Result<Vec<CoWatch>, GraphError>;

    /// Each of `users`' watches, the latest first, at most `limit` per user (a user the graph
    /// does not know has none). One entry per user asked, in the order asked.
    async fn watches_of(
        &self,
        users: &[u64],
        limit: usize,
    ) -> Result<Vec<(u64, Vec<UserWatch>)>, GraphError>;

    /// Every title with its viewer count, most viewed first (ties: lower id first).
    async fn titles(&self) -> Result<Vec<TitleViewers>, GraphError>;

    /// How many users watched anything.
    async fn viewer_count(&self) -> Result<u64, GraphError>;

    /// Pairs of accounts that share at least `min_shared` identifiers, counting only
    /// identifiers used by at most `max_accounts` accounts (a hub such as a shop's card reader
    /// or an emulator's default device id links strangers).
    async fn shared_identifiers(
        &self,
        min_shared: usize,
        max_accounts: u64,
    ) -> Result<Vec<SharedIdentifiers>, GraphError>;

    /// Whether the graph answers now.
    async fn ready(&self) -> bool;
}
