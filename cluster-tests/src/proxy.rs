//! A fault proxy for the links between the nodes of a sandbox. Every node
//! advertises a proxy address as its peer address; the proxy forwards TCP
//! peer connections and UDP gossip datagrams to the node's bound address,
//! and for each directed pair of nodes can cut the link, delay it, or drop
//! a fraction of its datagrams. Clients reach the nodes directly.
//!
//! A datagram's source is the sender's bound gossip address (chitchat sends
//! from the socket it listens on); it is forwarded from the sender's own
//! proxy socket, so that replies come back through the proxy too. A TCP
//! connection's source port is ephemeral: its owner is found by looking up
//! the connecting socket's inode among the node processes' descriptors.
//!
//! A cut stalls bytes (as a network that drops packets makes TCP retransmit
//! them) rather than closing connections: the node sees silence, times out,
//! and gets what was stalled once the link heals, unless it gave up on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What happens to the traffic of one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFault {
    /// Nothing gets through: bytes stall, datagrams are dropped.
    pub cut: bool,
    /// Added to every chunk of bytes and every datagram.
    pub delay: Duration,
    /// The fraction of datagrams dropped (TCP has no losses, only delays).
    pub loss: f64,
}

struct Endpoint {
    /// The address the node advertises (TCP and UDP on one port).
    advertised: SocketAddr,
    /// The node's bound peer address.
    listen: SocketAddr,
    udp: Arc<UdpSocket>,
    pid: Option<u32>,
}

#[derive(Default)]
struct State {
    nodes: Vec<Endpoint>,
    links: HashMap<(usize, usize), LinkFault>,
}

/// The proxy: a handle that sets faults; its tasks end when it is dropped.
pub struct FaultProxy {
    state: Arc<Mutex<State>>,
    /// Bumped on every change of faults, so that stalled streams look again.
    changed: watch::Sender<u64>,
    tasks: JoinSet<()>,
}

impl Default for FaultProxy {
    fn default() -> Self {
        FaultProxy {
            state: Arc::default(),
            changed: watch::channel(0).0,
            tasks: JoinSet::new(),
        }
    }
}

impl FaultProxy {
    /// Returns the address node `node` advertises, binding its TCP and UDP
    /// sockets on a free port the first time; traffic to it goes to `listen`.
    pub async fn expose(&mut self, node: usize, listen: SocketAddr) -> std::io::Result<SocketAddr> {
        {
            let mut state = lock(&self.state);
            if let Some(endpoint) = state.nodes.get_mut(node) {
                endpoint.listen = listen;
                return Ok(endpoint.advertised);
            }
            assert_eq!(node, state.nodes.len(), "nodes are exposed in order");
        }
        let (tcp, udp) = bind_pair().await?;
        let advertised = tcp.local_addr()?;
        let udp = Arc::new(udp);
        lock(&self.state).nodes.push(Endpoint {
            advertised,
            listen,
            udp: udp.clone(),
            pid: None,
        });
        self.tasks.spawn(accept(
            node,
            tcp,
            self.state.clone(),
            self.changed.subscribe(),
        ));
        self.tasks
            .spawn(relay_datagrams(node, udp, self.state.clone()));
        Ok(advertised)
    }

    /// Tells the proxy which process node `node` runs as (after a restart).
    pub fn set_pid(&self, node: usize, pid: Option<u32>) {
        if let Some(endpoint) = lock(&self.state).nodes.get_mut(node) {
            endpoint.pid = pid;
        }
    }

    /// Sets the fault of the directed link `from` → `to`.
    pub fn set(&self, from: usize, to: usize, fault: LinkFault) {
        lock(&self.state).links.insert((from, to), fault);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Returns the fault of the directed link `from` → `to`.
    pub fn get(&self, from: usize, to: usize) -> LinkFault {
        link(&self.state, from, to)
    }

    /// Heals every link.
    pub fn heal(&self) {
        lock(&self.state).links.clear();
        self.changed.send_modify(|n| *n += 1);
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn link(state: &Mutex<State>, from: usize, to: usize) -> LinkFault {
    lock(state)
        .links
        .get(&(from, to))
        .copied()
        .unwrap_or_default()
}

/// Binds a TCP listener on a free port and a UDP socket on the same port
/// (gossip and peer links share the advertised port), retrying when the
/// UDP port is taken.
async fn bind_pair() -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..20 {
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        match UdpSocket::bind(tcp.local_addr()?).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port pair")))
}

async fn relay_datagrams(node: usize, socket: Arc<UdpSocket>, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        // Who sent it, and through which socket the receiver must see it.
        let route = {
            let state = lock(&state);
            let sender = state.nodes.iter().position(|e| e.listen == from);
            sender.map(|sender| {
                let fault = state
                    .links
                    .get(&(sender, node))
                    .copied()
                    .unwrap_or_default();
                (
                    state.nodes[sender].udp.clone(),
                    state.nodes[node].listen,
                    fault,
                )
            })
        };
        let Some((via, to, fault)) = route else {
            continue;
        };
        if fault.cut || (fault.loss > 0.0 && rand::rng().random_bool(fault.loss.min(1.0))) {
            continue;
        }
        let datagram = buf[..len].to_vec();
        if fault.delay.is_zero() {
            let _ = via.send_to(&datagram, to).await;
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(fault.delay).await;
                let _ = via.send_to(&datagram, to).await;
            });
        }
    }
}

async fn accept(
    node: usize,
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((inbound, from)) = listener.accept().await else {
            continue;
        };
        let Ok(local) = inbound.local_addr() else {
            continue;
        };
        let (state, changed) = (state.clone(), changed.clone());
        connections.spawn(async move {
            let sender = identify(&state, from, local).await;
            let upstream = lock(&state).nodes[node].listen;
            let Ok(outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            // A connection from outside the cluster is passed on untouched.
            let (to_node, from_node) = match sender {
                Some(sender) => (Some((sender, node)), Some((node, sender))),
                None => (None, None),
            };
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pump(in_read, out_write, to_node, state.clone(), changed.clone()),
                pump(out_read, in_write, from_node, state, changed),
            );
        });
        // Reaps finished connections so the set does not grow without end.
        while connections.try_join_next().is_some() {}
    }
}

/// Returns the node that opened a connection. A node connects right after
/// it is spawned, possibly before the sandbox has told the proxy its pid:
/// an unknown owner is looked up again for a little while.
async fn identify(state: &Arc<Mutex<State>>, from: SocketAddr, local: SocketAddr) -> Option<usize> {
    for _ in 0..20 {
        let pids: Vec<(usize, u32)> = lock(state)
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.pid.map(|pid| (i, pid)))
            .collect();
        let found = tokio::task::spawn_blocking(move || owner(from, local, &pids))
            .await
            .ok()
            .flatten();
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Copies one direction of a connection, holding bytes while the link is
/// cut and each chunk for the link's delay.
async fn pump(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    link_of: Option<(usize, usize)>,
    state: Arc<Mutex<State>>,
    mut changed: watch::Receiver<u64>,
) {
    let fault = move || link_of.map(|(a, b)| link(&state, a, b)).unwrap_or_default();
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            loop {
                let now = fault();
                if now.cut {
                    if changed.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                if read_at + now.delay > Instant::now() {
                    // Wakes early when the delay changes, and looks again.
                    tokio::select! {
                        _ = tokio::time::sleep_until(read_at + now.delay) => {}
                        changed = changed.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
                break;
            }
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    };
    // The writer ends when the reader has ended and everything read is written.
    tokio::join!(reader, writer);
}

/// Returns the node whose process holds the connecting end of a TCP
/// connection from `peer` to `local` (both seen from the proxy).
fn owner(peer: SocketAddr, local: SocketAddr, pids: &[(usize, u32)]) -> Option<usize> {
    let inode = connecting_inode(peer, local)?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().find_map(|&(node, pid)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == &*wanted))
            .then_some(node)
    })
}

/// Finds the inode of the socket whose local address is `from` and remote
/// address is `to` in /proc/net/tcp (IPv4, as the sandbox binds loopback).
fn connecting_inode(from: SocketAddr, to: SocketAddr) -> Option<u64> {
    let hex = |addr: SocketAddr| -> Option<String> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        // The kernel prints the address as a native-endian (little) u32.
        let ip = u32::from_le_bytes(v4.ip().octets());
        Some(format!("{ip:08X}:{:04X}", v4.port()))
    };
    let (from, to) = (hex(from)?, hex(to)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&from.as_str()) && fields.get(2) == Some(&to.as_str()))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_owner_of_a_connection_is_found_by_its_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_server, from) = listener.accept().await.unwrap();
        assert_eq!(from, client.local_addr().unwrap());
        let me = std::process::id();
        let local = listener.local_addr().unwrap();
        assert_eq!(owner(from, local, &[(0, u32::MAX), (4, me)]), Some(4));
    }

    #[tokio::test]
    async fn a_cut_link_stalls_its_bytes_until_it_heals() {
        let node = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = FaultProxy::default();
        let advertised = proxy.expose(0, node.local_addr().unwrap()).await.unwrap();
        // This process plays node 1, the connecting side.
        let _ = proxy
            .expose(1, "127.0.0.1:9".parse().unwrap())
            .await
            .unwrap();
        proxy.set_pid(1, Some(std::process::id()));
        let mut client = TcpStream::connect(advertised).await.unwrap();
        let (mut server, _) = node.accept().await.unwrap();
        client.write_all(b"a").await.unwrap();
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await.unwrap();
        proxy.set(
            1,
            0,
            LinkFault {
                cut: true,
                ..LinkFault::default()
            },
        );
        client.write_all(b"b").await.unwrap();
        // The other direction still flows while this one is cut.
        server.write_all(b"c").await.unwrap();
        client.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"c");
        let stalled =
            tokio::time::timeout(Duration::from_millis(300), server.read_exact(&mut byte));
        assert!(stalled.await.is_err(), "bytes crossed a cut link");
        proxy.heal();
        tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut byte))
            .await
            .expect("bytes flow once the link heals")
            .unwrap();
        assert_eq!(&byte, b"b");
    }
}
