use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::outbox::Outbox;
use crate::protocol::pb::PresenceStatus;
use crate::protocol::{SharedFrame, pb};

/// A connection's session as this node's registry knows it.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub id: u64,
    pub device_class: pb::DeviceClass,
    pub token_digest: Vec<u8>,
    pub outbox: Outbox,
    /// Users whose presence this session watches, sorted by id, each with
    /// the presence this session was last told (a sorted list costs an idle
    /// session no more than an empty `Vec`).
    pub watches: Vec<(u64, i32)>,
    /// The status this session last set, and when (ms); (0, 0) if none.
    pub status: (i32, u64),
}

impl LocalSession {
    fn watch_index(&self, user: u64) -> Result<usize, usize> {
        self.watches.binary_search_by_key(&user, |(u, _)| *u)
    }
}

/// What re-attaching one session to its user's home needs.
pub struct Attachment {
    pub user: u64,
    pub id: u64,
    pub device_class: pb::DeviceClass,
    pub status: (i32, u64),
    pub token_digest: Vec<u8>,
}

/// What a WatchPresence request changes at the users' homes.
#[derive(Debug, Default)]
pub struct WatchDelta {
    /// Users that no session of the watcher on this node watched before
    /// (a watch) or that none watches any more (an unwatch): only these
    /// need an operation at their homes.
    pub homes: Vec<u64>,
    /// For an unwatch, the users it stopped watching and their last known
    /// presence.
    pub removed: Vec<(u64, i32)>,
}

/// How long a revoked token is remembered here: long enough for this
/// node's copy of the metadata to apply the revocation.
const REVOKED_MEMORY: Duration = Duration::from_secs(600);
/// Most revoked tokens remembered; the oldest are forgotten first.
const MAX_REVOKED: usize = 100_000;

/// Tokens revoked recently, as this node heard of them.
#[derive(Default)]
struct Revoked {
    digests: HashSet<Vec<u8>>,
    order: VecDeque<(Instant, Vec<u8>)>,
}

impl Revoked {
    fn insert(&mut self, digest: &[u8]) {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < REVOKED_MEMORY && self.order.len() < MAX_REVOKED {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.digests.remove(&old);
            }
        }
        if self.digests.insert(digest.to_vec()) {
            self.order.push_back((now, digest.to_vec()));
        }
    }

    fn contains(&self, digest: &[u8]) -> bool {
        self.digests.contains(digest)
    }
}

/// A presence event held for a session whose WatchPresence answer is not
/// out yet: (watched user, status, frame).
type Held = (u64, i32, Arc<SharedFrame>);

#[derive(Default)]
struct Entries {
    /// Sessions connected to this node, by user.
    local: HashMap<u64, Vec<LocalSession>>,
    /// Presence events for sessions answering a WatchPresence, by session
    /// id: they go out after the answer, so that a client never sees an
    /// event older than the list it is answered.
    held: HashMap<u64, Vec<Held>>,
    revoked: Revoked,
}

impl Entries {
    fn sessions_of_token(&self, user: u64, token_digest: &[u8]) -> Vec<LocalSession> {
        self.local
            .get(&user)
            .map(|sessions| {
                sessions
                    .iter()
                    .filter(|s| s.token_digest == token_digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn session_mut(&mut self, user: u64, id: u64) -> Option<&mut LocalSession> {
        self.local
            .get_mut(&user)
            .and_then(|s| s.iter_mut().find(|s| s.id == id))
    }

    /// Returns whether a session of `user` on this node other than `id`
    /// watches `watched`, and the presence it was last told.
    fn watched_elsewhere(&self, user: u64, id: u64, watched: u64) -> Option<i32> {
        self.local.get(&user)?.iter().find_map(|s| {
            let index = s.watch_index(watched).ok()?;
            (s.id != id).then(|| s.watches[index].1)
        })
    }
}

/// The registry of the sessions connected to this node: what pushes,
/// presence watches and revocations find them by.
#[derive(Clone)]
pub struct Sessions {
    entries: Arc<Mutex<Entries>>,
    next_session: Arc<AtomicU64>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions {
            entries: Arc::default(),
            next_session: Arc::new(AtomicU64::new(1)),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns how many sessions are connected to this node.
    pub fn session_count(&self) -> usize {
        self.entries().local.values().map(Vec::len).sum()
    }

    /// Returns a fresh id for a session of this node.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a session connected to this node, unless its token was
    /// revoked: checked under the lock that a revocation takes, so that a
    /// session either is found by the revocation or is refused here.
    pub fn add_local(&self, user: u64, session: LocalSession) -> bool {
        let mut entries = self.entries();
        if entries.revoked.contains(&session.token_digest) {
            return false;
        }
        // Most users have one session per node: no room for more up front.
        let sessions = entries
            .local
            .entry(user)
            .or_insert_with(|| Vec::with_capacity(1));
        sessions.push(session);
        true
    }

    /// Forgets a session of this node; returns the users it watched that
    /// no other session of its user here watches (their homes may forget
    /// this node's watch).
    pub fn remove_local(&self, user: u64, id: u64) -> Vec<u64> {
        let mut entries = self.entries();
        entries.held.remove(&id);
        let Some(sessions) = entries.local.get_mut(&user) else {
            return Vec::new();
        };
        let Some(index) = sessions.iter().position(|s| s.id == id) else {
            return Vec::new();
        };
        let gone = sessions.swap_remove(index);
        if sessions.is_empty() {
            entries.local.remove(&user);
        }
        gone.watches
            .into_iter()
            .map(|(watched, _)| watched)
            .filter(|watched| entries.watched_elsewhere(user, id, *watched).is_none())
            .collect()
    }

    /// Returns how many users a session watches and which of `users` (sorted)
    /// it does not watch yet.
    pub fn unwatched(&self, user: u64, id: u64, users: &[u64]) -> (usize, Vec<u64>) {
        let entries = self.entries();
        let Some(session) = entries
            .local
            .get(&user)
            .and_then(|s| s.iter().find(|s| s.id == id))
        else {
            return (0, users.to_vec());
        };
        let fresh = users
            .iter()
            .copied()
            .filter(|u| session.watch_index(*u).is_err())
            .collect();
        (session.watches.len(), fresh)
    }

    /// Starts a WatchPresence request of a session: records the watches
    /// added or removed (`users` sorted and deduplicated) and holds presence
    /// events for the session until `finish_watch`. Costs O(request +
    /// watched), both bounded by `limits.max_watched_users_per_session`.
    pub fn begin_watch(&self, user: u64, id: u64, users: &[u64], watch: bool) -> WatchDelta {
        let mut entries = self.entries();
        let mut delta = WatchDelta::default();
        let Some(mut watches) = entries
            .session_mut(user, id)
            .map(|s| std::mem::take(&mut s.watches))
        else {
            return delta;
        };
        let mut added = Vec::new();
        for &watched in users {
            let index = watches.binary_search_by_key(&watched, |(u, _)| *u);
            let elsewhere = entries.watched_elsewhere(user, id, watched);
            match (index, watch) {
                (Err(_), true) => {
                    // Another session of the user here already watches:
                    // its home knows this node, and what it was told holds.
                    if elsewhere.is_none() {
                        delta.homes.push(watched);
                    }
                    let offline = PresenceStatus::Offline as i32;
                    added.push((watched, elsewhere.unwrap_or(offline)));
                }
                (Ok(index), false) => {
                    delta.removed.push(watches[index]);
                    if elsewhere.is_none() {
                        delta.homes.push(watched);
                    }
                }
                _ => {}
            }
        }
        if watch {
            watches.extend(added);
            watches.sort_unstable_by_key(|(u, _)| *u);
        } else {
            watches.retain(|(u, _)| users.binary_search(u).is_err());
        }
        if let Some(session) = entries.session_mut(user, id) {
            session.watches = watches;
        }
        entries.held.insert(id, Vec::new());
        delta
    }

    /// Ends a WatchPresence request: takes the presence the homes answered
    /// (`told`), sends `answer` (given the session's watches), then the
    /// events held meanwhile, all under the lock that pushes take.
    pub fn finish_watch(
        &self,
        user: u64,
        id: u64,
        told: &[(u64, i32)],
        answer: impl FnOnce(&[(u64, i32)]) -> pb::ServerFrame,
    ) {
        let mut entries = self.entries();
        let held = entries.held.remove(&id).unwrap_or_default();
        let Some(session) = entries.session_mut(user, id) else {
            return;
        };
        let newest = told
            .iter()
            .copied()
            .chain(held.iter().map(|(u, s, _)| (*u, *s)));
        for (watched, status) in newest {
            if let Ok(index) = session.watch_index(watched) {
                session.watches[index].1 = status;
            }
        }
        // Answered with what it was told before the held events: these are
        // newer, and follow.
        let mut known = session.watches.clone();
        for &(watched, status) in told {
            if let Ok(index) = known.binary_search_by_key(&watched, |(u, _)| *u) {
                known[index].1 = status;
            }
        }
        session.outbox.send(answer(&known));
        for (_, _, frame) in held {
            session.outbox.push(frame);
        }
    }

    /// Pushes a presence event of `watched` to the sessions of `watchers`
    /// on this node that watch it, and only those; returns how many it reached.
    pub fn push_presence(
        &self,
        frame: &Arc<SharedFrame>,
        watched: u64,
        status: i32,
        watchers: &[u64],
    ) -> u64 {
        let mut entries = self.entries();
        let entries = &mut *entries;
        let mut pushed = 0;
        for user in watchers {
            for session in entries.local.get_mut(user).into_iter().flatten() {
                let Ok(index) = session.watch_index(watched) else {
                    continue;
                };
                session.watches[index].1 = status;
                if let Some(held) = entries.held.get_mut(&session.id) {
                    held.push((watched, status, frame.clone()));
                    pushed += 1;
                } else if session.outbox.push(frame.clone()) {
                    pushed += 1;
                }
            }
        }
        pushed
    }

    /// Records the status a session of this node set.
    pub fn set_status(&self, user: u64, id: u64, status: (i32, u64)) {
        if let Some(session) = self.entries().session_mut(user, id) {
            session.status = status;
        }
    }

    /// Returns every session of this node, and every (watcher, watched)
    /// pair once: what re-attaching needs.
    pub fn attachments(&self) -> (Vec<Attachment>, Vec<(u64, u64)>) {
        let entries = self.entries();
        let mut sessions = Vec::new();
        let mut watches = Vec::new();
        for (user, list) in &entries.local {
            let first = watches.len();
            for session in list {
                sessions.push(Attachment {
                    user: *user,
                    id: session.id,
                    device_class: session.device_class,
                    status: session.status,
                    token_digest: session.token_digest.clone(),
                });
                watches.extend(session.watches.iter().map(|(w, _)| (*user, *w)));
            }
            if list.len() > 1 {
                watches[first..].sort_unstable();
                let mut kept: Vec<(u64, u64)> = watches.drain(first..).collect();
                kept.dedup();
                watches.extend(kept);
            }
        }
        (sessions, watches)
    }

    /// Records a revoked token and returns this node's sessions of `user`
    /// that hold it, under one lock (see `add_local`).
    pub fn revoke_local(&self, user: u64, token_digest: &[u8]) -> Vec<LocalSession> {
        let mut entries = self.entries();
        entries.revoked.insert(token_digest);
        entries.sessions_of_token(user, token_digest)
    }

    /// Returns the sessions of `user` on this node that hold the token.
    pub fn sessions_of_token(&self, user: u64, token_digest: &[u8]) -> Vec<LocalSession> {
        self.entries().sessions_of_token(user, token_digest)
    }

    /// Returns whether this node heard lately that a token was revoked
    /// (its copy of the metadata may not have applied it yet).
    pub fn is_revoked(&self, token_digest: &[u8]) -> bool {
        self.entries().revoked.contains(token_digest)
    }

    /// Pushes a frame to the sessions of `users` on this node, but not to
    /// the session `except`; returns how many sessions it reached.
    pub fn push_local(&self, frame: &Arc<SharedFrame>, users: &[u64], except: Option<u64>) -> u64 {
        let entries = self.entries();
        let mut pushed = 0;
        for user in users {
            for session in entries.local.get(user).into_iter().flatten() {
                if Some(session.id) != except && session.outbox.push(frame.clone()) {
                    pushed += 1;
                }
            }
        }
        pushed
    }

    /// Pushes like [`Sessions::push_local`] and also returns the users
    /// other than `sender` of whom at least one session took the frame.
    pub fn push_local_to(
        &self,
        frame: &Arc<SharedFrame>,
        users: &[u64],
        except: Option<u64>,
        sender: u64,
    ) -> (u64, Vec<u64>) {
        let entries = self.entries();
        let mut pushed = 0;
        let mut reached = Vec::new();
        for user in users {
            let mut took = false;
            for session in entries.local.get(user).into_iter().flatten() {
                if Some(session.id) != except && session.outbox.push(frame.clone()) {
                    pushed += 1;
                    took = true;
                }
            }
            if took && *user != sender {
                reached.push(*user);
            }
        }
        (pushed, reached)
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}
