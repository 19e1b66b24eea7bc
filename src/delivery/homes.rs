//! Users' homes: the soft state of every online (or watched) user whose
//! home is this node by the ring over the current view. A home knows which
//! nodes hold the user's sessions (all devices), the user's presence, and
//! who watches it. It holds no durable state: sessions re-attach on every
//! view change and on a lease, so a lost home is rebuilt without client
//! action.
//!
//! Each user's home is one record of this node's table, changed under the
//! table's lock and never across an await: one user's operations apply one
//! at a time, in order, as an actor's would, without an actor's memory per
//! online user (docs/decisions/0004). Watchers are told of a change under
//! the same lock (`tell`), so they hear of changes in the order they were
//! made; counting the user in its departments needs a storage read and is
//! left to the caller (`Applied::came_online`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::HomeOp;
use super::metrics as m;
use crate::cluster::View;
use crate::protocol::pb::PresenceStatus;

/// A live session of a user, as its home knows it.
struct Attached {
    node: u64,
    session: u64,
    device_class: i32,
    renewed: Instant,
}

/// One user's home.
struct UserHome {
    /// Live sessions, a few per user (a list costs less than a map).
    sessions: Vec<Attached>,
    /// Watchers: (node, watching user) → last renewal.
    watchers: HashMap<(u64, u64), Instant>,
    /// The status the user chose, and when (ms); shown while any session is
    /// live, and reset to ONLINE when the last one goes.
    status: PresenceStatus,
    status_at: u64,
    /// The presence watchers were last told.
    shown: PresenceStatus,
}

impl UserHome {
    fn new() -> UserHome {
        UserHome {
            sessions: Vec::new(),
            watchers: HashMap::new(),
            status: PresenceStatus::Online,
            status_at: 0,
            shown: PresenceStatus::Offline,
        }
    }

    fn presence(&self) -> PresenceStatus {
        if self.sessions.is_empty() {
            PresenceStatus::Offline
        } else {
            self.status
        }
    }

    /// Applies an operation; returns a watcher this home did not know, who
    /// is owed the current presence (this home may be a rebuilt one whose
    /// user went offline with a dead node).
    fn apply(&mut self, op: HomeOp) -> Option<(u64, u64)> {
        let now = Instant::now();
        match op {
            HomeOp::Attach {
                node,
                session,
                device_class,
                status: (status, at),
            } => {
                match self
                    .sessions
                    .iter_mut()
                    .find(|a| (a.node, a.session) == (node, session))
                {
                    Some(known) => {
                        known.device_class = device_class;
                        known.renewed = now;
                    }
                    None => {
                        self.sessions.reserve_exact(1);
                        self.sessions.push(Attached {
                            node,
                            session,
                            device_class,
                            renewed: now,
                        });
                    }
                }
                self.set_status(status, at);
            }
            HomeOp::Detach { node, session } => {
                self.sessions
                    .retain(|a| (a.node, a.session) != (node, session));
            }
            HomeOp::Watch {
                node,
                watcher,
                quiet,
            } => {
                if self.watchers.insert((node, watcher), now).is_none() && !quiet {
                    return Some((node, watcher));
                }
            }
            HomeOp::Unwatch { node, watcher } => {
                self.watchers.remove(&(node, watcher));
            }
            HomeOp::SetStatus { status, at } => self.set_status(status, at),
        }
        None
    }

    /// Takes a status unless a newer one is known.
    fn set_status(&mut self, status: i32, at: u64) {
        if at < self.status_at {
            return;
        }
        match PresenceStatus::try_from(status) {
            Ok(PresenceStatus::Offline) | Err(_) => {}
            Ok(status) => {
                self.status = status;
                self.status_at = at;
            }
        }
    }

    /// The operations that rebuild this home on another node.
    fn hand_off(&self, user: u64) -> Vec<(u64, HomeOp)> {
        let status = HomeOp::SetStatus {
            status: self.status as i32,
            at: self.status_at,
        };
        let sessions = self.sessions.iter().map(|a| HomeOp::Attach {
            node: a.node,
            session: a.session,
            device_class: a.device_class,
            status: (0, 0),
        });
        let watchers = self.watchers.keys().map(|(node, watcher)| HomeOp::Watch {
            node: *node,
            watcher: *watcher,
            quiet: false,
        });
        std::iter::once(status)
            .chain(sessions)
            .chain(watchers)
            .map(|op| (user, op))
            .collect()
    }
}

/// A presence change that watchers must hear of.
#[derive(Debug, PartialEq, Eq)]
pub struct Notice {
    pub user: u64,
    pub status: PresenceStatus,
    /// (node, watching user).
    pub watchers: Vec<(u64, u64)>,
}

/// What one operation changed, for the caller to act on.
#[derive(Debug)]
pub struct Applied {
    /// The user's presence after the operation.
    pub presence: PresenceStatus,
    /// Watchers to tell (every watcher on a change, or a new watcher).
    #[cfg(test)]
    pub notice: Option<Notice>,
    /// The user just came online: count it in its departments
    /// (`Homes::count_online`).
    pub came_online: bool,
}

#[derive(Default)]
struct Table {
    users: HashMap<u64, UserHome>,
    /// Online users homed here, by department (0 counts everyone).
    online: HashMap<u64, i64>,
    /// The departments each online user homed here is counted in.
    counted: HashMap<u64, Vec<u64>>,
}

impl Table {
    fn count(&mut self, user: u64, departments: Option<Vec<u64>>) {
        let mut change = |departments: &[u64], delta: i64| {
            for department in departments.iter().chain([&0]) {
                let count = self.online.entry(*department).or_default();
                *count += delta;
                if *count == 0 {
                    self.online.remove(department);
                }
            }
        };
        if let Some(old) = self.counted.remove(&user) {
            change(&old, -1);
        }
        if let Some(new) = departments {
            change(&new, 1);
            self.counted.insert(user, new);
        }
    }

    /// Publishes what changed in a user's home: a presence change goes to
    /// its watchers; an empty home is dropped.
    fn settle(&mut self, user: u64) -> (Option<Notice>, bool) {
        let Some(home) = self.users.get_mut(&user) else {
            return (None, false);
        };
        let presence = home.presence();
        let mut notice = None;
        let mut came_online = false;
        if presence != home.shown {
            came_online = home.shown == PresenceStatus::Offline;
            home.shown = presence;
            notice = Some(Notice {
                user,
                status: presence,
                watchers: home.watchers.keys().copied().collect(),
            });
        }
        let empty = home.sessions.is_empty() && home.watchers.is_empty();
        if presence == PresenceStatus::Offline {
            // A chosen status lasts while the user is online: the first
            // device after offline shows ONLINE (docs/protocol.md §5.19),
            // whether or not watchers kept this home. `status_at` stays, so
            // that an older status arriving late does not come back.
            home.status = PresenceStatus::Online;
            self.count(user, None);
        }
        if empty {
            self.users.remove(&user);
        }
        (notice.filter(|n| !n.watchers.is_empty()), came_online)
    }
}

/// The homes of the users this node is home to.
#[derive(Clone, Default)]
pub struct Homes {
    table: Arc<Mutex<Table>>,
}

impl Homes {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gauge(table: &Table) {
        metrics::gauge!(m::LIVE_ACTORS, "kind" => "user").set(table.users.len() as f64);
    }

    /// Applies an operation to a user's home, creating the home if needed;
    /// `tell` pushes the notice, if any, before the lock is released.
    pub fn apply(&self, user: u64, op: HomeOp, tell: impl FnOnce(&Notice)) -> Applied {
        let mut table = self.table();
        let home = table.users.entry(user).or_insert_with(UserHome::new);
        let newcomer = home.apply(op);
        let presence = home.presence();
        let (notice, came_online) = table.settle(user);
        let notice = notice.or_else(|| {
            newcomer.map(|watcher| Notice {
                user,
                status: presence,
                watchers: vec![watcher],
            })
        });
        if let Some(notice) = &notice {
            tell(notice);
        }
        Homes::gauge(&table);
        Applied {
            presence,
            #[cfg(test)]
            notice,
            came_online,
        }
    }

    /// Counts a user in its departments, unless it went offline meanwhile.
    pub fn count_online(&self, user: u64, departments: Vec<u64>) {
        let mut table = self.table();
        let online = table
            .users
            .get(&user)
            .is_some_and(|h| h.shown != PresenceStatus::Offline);
        if online {
            table.count(user, Some(departments));
        }
    }

    /// Groups users homed here by the nodes that hold their sessions.
    pub fn routes(&self, users: &[u64]) -> HashMap<u64, Vec<u64>> {
        let table = self.table();
        let mut by_node: HashMap<u64, Vec<u64>> = HashMap::new();
        for user in users {
            let Some(home) = table.users.get(user) else {
                continue;
            };
            let mut nodes: Vec<u64> = home.sessions.iter().map(|a| a.node).collect();
            nodes.sort_unstable();
            nodes.dedup();
            for node in nodes {
                by_node.entry(node).or_default().push(*user);
            }
        }
        by_node
    }

    /// Drops what dead nodes held, and gives up the users that now belong
    /// to another node (`me` is this node); returns the operations that
    /// rebuild those users on their new homes.
    pub fn view_changed(
        &self,
        view: &View,
        me: u64,
        mut tell: impl FnMut(&Notice),
    ) -> Vec<(u64, HomeOp)> {
        let mut hand_off = Vec::new();
        if view.nodes.is_empty() {
            return hand_off;
        }
        let mut table = self.table();
        let users: Vec<u64> = table.users.keys().copied().collect();
        for user in users {
            let Some(home) = table.users.get_mut(&user) else {
                continue;
            };
            home.sessions.retain(|a| view.nodes.contains_key(&a.node));
            home.watchers
                .retain(|(node, _), _| view.nodes.contains_key(node));
            if view.owner(user) != Some(me) {
                hand_off.extend(home.hand_off(user));
                table.users.remove(&user);
                table.count(user, None);
                continue;
            }
            if let Some(notice) = table.settle(user).0 {
                tell(&notice);
            }
        }
        Homes::gauge(&table);
        hand_off
    }

    /// Drops sessions and watchers not renewed within `lease`.
    pub fn expire(&self, lease: Duration, mut tell: impl FnMut(&Notice)) -> Vec<Notice> {
        let now = Instant::now();
        let mut table = self.table();
        let users: Vec<u64> = table.users.keys().copied().collect();
        let mut notices = Vec::new();
        for user in users {
            if let Some(home) = table.users.get_mut(&user) {
                home.sessions
                    .retain(|a| now.duration_since(a.renewed) < lease);
                home.watchers
                    .retain(|_, renewed| now.duration_since(*renewed) < lease);
            }
            if let Some(notice) = table.settle(user).0 {
                tell(&notice);
                notices.push(notice);
            }
        }
        Homes::gauge(&table);
        notices
    }

    /// Returns the online counts of users homed here, by department.
    pub fn online_counts(&self) -> HashMap<u64, i64> {
        self.table().online.clone()
    }

    /// Returns how many users are homed here.
    pub fn len(&self) -> usize {
        self.table().users.len()
    }

    /// Loses a user's home, as a crash would; returns whether it existed.
    #[cfg(any(test, feature = "testsuite"))]
    pub fn lose(&self, user: u64) -> bool {
        let mut table = self.table();
        table.count(user, None);
        let lost = table.users.remove(&user).is_some();
        Homes::gauge(&table);
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_status(status: PresenceStatus, at: u64) -> HomeOp {
        HomeOp::SetStatus {
            status: status as i32,
            at,
        }
    }

    fn attach(node: u64, session: u64) -> HomeOp {
        HomeOp::Attach {
            node,
            session,
            device_class: 1,
            status: (0, 0),
        }
    }

    #[test]
    fn a_watcher_hears_of_online_busy_and_offline() {
        let homes = Homes::default();
        let watched = homes.apply(
            7,
            HomeOp::Watch {
                node: 1,
                watcher: 9,
                quiet: false,
            },
            |_| {},
        );
        // A new watcher is told the current presence at once.
        assert_eq!(watched.presence, PresenceStatus::Offline);
        assert_eq!(watched.notice.unwrap().watchers, vec![(1, 9)]);
        let mut told = Vec::new();
        let online = homes.apply(7, attach(2, 1), |n| {
            told.push((n.status, n.watchers.clone()))
        });
        assert_eq!(told, vec![(PresenceStatus::Online, vec![(1, 9)])]);
        assert!(online.came_online);
        assert_eq!(online.notice.unwrap().status, PresenceStatus::Online);
        let busy = homes.apply(7, set_status(PresenceStatus::Busy, 10), |_| {});
        assert_eq!(busy.notice.unwrap().status, PresenceStatus::Busy);
        // An older status loses to the newer one.
        let stale = homes.apply(7, set_status(PresenceStatus::Away, 5), |_| {});
        assert!(stale.notice.is_none());
        let offline = homes.apply(
            7,
            HomeOp::Detach {
                node: 2,
                session: 1,
            },
            |_| {},
        );
        assert_eq!(offline.notice.unwrap().status, PresenceStatus::Offline);
        // Still watched: the home stays.
        assert_eq!(homes.len(), 1);
        homes.apply(
            7,
            HomeOp::Unwatch {
                node: 1,
                watcher: 9,
            },
            |_| {},
        );
        assert_eq!(homes.len(), 0);
    }

    #[test]
    fn a_chosen_status_ends_with_the_last_session_and_a_quiet_watch_is_not_told() {
        let homes = Homes::default();
        let quiet = HomeOp::Watch {
            node: 1,
            watcher: 9,
            quiet: true,
        };
        // The watch request answers the presence itself.
        assert!(homes.apply(7, quiet, |_| {}).notice.is_none());
        homes.apply(7, attach(2, 1), |_| {});
        homes.apply(7, set_status(PresenceStatus::Busy, 10), |_| {});
        let detach = HomeOp::Detach {
            node: 2,
            session: 1,
        };
        homes.apply(7, detach, |_| {});
        // The watcher kept the home; the next device still shows ONLINE.
        let back = homes.apply(7, attach(2, 2), |_| {});
        assert_eq!(back.presence, PresenceStatus::Online);
        // An older status arriving late does not come back.
        let stale = homes.apply(7, set_status(PresenceStatus::Away, 5), |_| {});
        assert_eq!(stale.presence, PresenceStatus::Online);
    }

    #[test]
    fn online_counts_follow_sessions_and_skip_a_user_gone_offline() {
        let homes = Homes::default();
        assert!(homes.apply(1, attach(1, 1), |_| {}).came_online);
        homes.count_online(1, vec![10, 11]);
        assert_eq!(
            homes.online_counts(),
            HashMap::from([(0, 1), (10, 1), (11, 1)])
        );
        // A second device does not count twice.
        assert!(!homes.apply(1, attach(1, 2), |_| {}).came_online);
        homes.apply(2, attach(1, 3), |_| {});
        homes.apply(
            2,
            HomeOp::Detach {
                node: 1,
                session: 3,
            },
            |_| {},
        );
        // The department lookup for user 2 finishes after it went offline.
        homes.count_online(2, vec![10]);
        assert_eq!(homes.online_counts()[&10], 1);
        homes.apply(
            1,
            HomeOp::Detach {
                node: 1,
                session: 1,
            },
            |_| {},
        );
        homes.apply(
            1,
            HomeOp::Detach {
                node: 1,
                session: 2,
            },
            |_| {},
        );
        assert!(homes.online_counts().is_empty());
    }

    #[test]
    fn routes_name_each_node_once_per_user() {
        let homes = Homes::default();
        homes.apply(1, attach(1, 1), |_| {});
        homes.apply(1, attach(1, 2), |_| {});
        homes.apply(1, attach(2, 3), |_| {});
        homes.apply(2, attach(2, 4), |_| {});
        let mut routes = homes.routes(&[1, 2, 3]);
        routes.values_mut().for_each(|users| users.sort_unstable());
        assert_eq!(routes, HashMap::from([(1, vec![1]), (2, vec![1, 2])]));
    }

    #[test]
    fn sessions_not_renewed_expire() {
        let homes = Homes::default();
        homes.apply(
            1,
            HomeOp::Watch {
                node: 3,
                watcher: 2,
                quiet: false,
            },
            |_| {},
        );
        homes.apply(1, attach(1, 1), |_| {});
        assert!(homes.expire(Duration::from_secs(60), |_| {}).is_empty());
        // The watcher was not renewed either, so nobody is told.
        assert!(homes.expire(Duration::ZERO, |_| {}).is_empty());
        assert_eq!(homes.len(), 0);
    }
}
