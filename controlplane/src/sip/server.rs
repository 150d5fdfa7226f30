//! The SIP listeners around the sans-IO [`Proxy`]: one UDP socket and one TCP
//! listener on the same address. A single task owns the proxy; TCP connections
//! (accepted, or opened toward a next hop) feed it whole messages through a bounded
//! channel, and a failed connect becomes a 503 upstream.
//!
//! What a peer can make the front end hold is bounded ([`TcpLimits`]): the number of
//! connections, how long a silent one stays open, and how many replies may wait for
//! a peer that does not read.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::addr::Transport;
use super::config::TcpLimits;
use super::message::{self, MAX_MESSAGE};
use super::proxy::{Outgoing, Peer, Proxy};
use crate::ng::server::Shared;
use crate::session::backend::MediaBackend;

/// What the connection tasks tell the proxy task; `u64` names the connection so a
/// late event of a replaced connection does not drop its successor.
#[derive(Debug)]
enum Event {
    Message(Peer, Vec<u8>),
    /// Connecting to this peer failed.
    Unreachable(Peer, u64),
    /// The connection to this address ended.
    Closed(SocketAddr, u64),
}

/// Messages from all connections waiting for the proxy task; a connection whose
/// message does not fit waits (stops reading), which is TCP's own back-pressure.
const EVENT_QUEUE: usize = 1024;

/// Longest the proxy task sleeps between timer checks.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Binds UDP and TCP on `addr` (TCP on the port UDP got, for port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound).await?;
    Ok((udp, tcp))
}

/// One open (or opening) TCP connection, as the proxy task sees it.
#[derive(Debug)]
struct Conn {
    id: u64,
    queue: mpsc::Sender<Vec<u8>>,
    task: AbortHandle,
}

/// The TCP side of the proxy task: the connections by peer address.
#[derive(Debug)]
struct Tcp {
    limits: TcpLimits,
    conns: HashMap<SocketAddr, Conn>,
    next_id: u64,
    events: mpsc::Sender<Event>,
    stop: watch::Receiver<bool>,
    /// Accepts are being refused (logged once per episode, not per connection).
    refusing: bool,
}

impl Tcp {
    fn full(&self) -> bool {
        self.conns.len() >= self.limits.max_connections
    }

    fn accepted(&mut self, stream: TcpStream, from: SocketAddr) {
        if self.full() {
            if !self.refusing {
                tracing::warn!(
                    max = self.limits.max_connections,
                    "SIP TCP connection limit reached, refusing new connections"
                );
                self.refusing = true;
            }
            return; // dropping the stream closes it
        }
        if self.refusing {
            tracing::info!("SIP TCP connections below the limit again");
            self.refusing = false;
        }
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let id = self.id();
        let task = tokio::spawn(connection(
            stream,
            from,
            id,
            rx,
            self.events.clone(),
            self.stop.clone(),
            self.limits.idle,
        ));
        self.insert(from, id, tx, task.abort_handle());
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn insert(
        &mut self,
        addr: SocketAddr,
        id: u64,
        queue: mpsc::Sender<Vec<u8>>,
        task: AbortHandle,
    ) {
        if let Some(old) = self.conns.insert(addr, Conn { id, queue, task }) {
            old.task.abort();
        }
    }

    /// Forgets the connection `id` to `addr`, if it is still the current one.
    fn closed(&mut self, addr: SocketAddr, id: u64) -> bool {
        if self.conns.get(&addr).is_some_and(|c| c.id == id) {
            self.conns.remove(&addr);
            return true;
        }
        false
    }

    /// Queues `bytes` for `to`, opening a connection on first use. `false` means the
    /// message cannot be delivered (no room for another connection).
    fn send(&mut self, to: Peer, bytes: Vec<u8>) -> bool {
        let bytes = match self.conns.get(&to.addr) {
            Some(c) => match c.queue.try_send(bytes) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The peer stopped reading: close rather than buffer without end.
                    tracing::info!(peer = %to.addr, "SIP TCP peer not reading, closing");
                    if let Some(c) = self.conns.remove(&to.addr) {
                        c.task.abort();
                    }
                    return false;
                }
                // The task ended and its Closed event is on the way: open anew.
                Err(mpsc::error::TrySendError::Closed(b)) => b,
            },
            None => bytes,
        };
        self.conns.remove(&to.addr);
        if self.full() {
            tracing::info!(peer = %to.addr, "SIP TCP connection limit reached, not connecting");
            return false;
        }
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let _ = tx.try_send(bytes); // a fresh queue has room
        let id = self.id();
        let (events, stop, idle) = (self.events.clone(), self.stop.clone(), self.limits.idle);
        let task = tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to.addr)).await {
                Ok(Ok(stream)) => connection(stream, to.addr, id, rx, events, stop, idle).await,
                _ => {
                    let _ = events.send(Event::Unreachable(to, id)).await;
                }
            }
        });
        self.insert(to.addr, id, tx, task.abort_handle());
        true
    }
}

/// Runs the front end until `stop` turns true.
pub async fn serve<B: MediaBackend + 'static>(
    udp: UdpSocket,
    tcp_listener: TcpListener,
    mut proxy: Proxy,
    ctl: Shared<B>,
    limits: TcpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let udp = Arc::new(udp);
    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let mut tcp = Tcp {
        limits,
        conns: HashMap::new(),
        next_id: 0,
        events: tx,
        stop: stop.clone(),
        refusing: false,
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let now = Instant::now();
        let sleep = proxy.next_wakeup().map_or(MAX_SLEEP, |w| {
            w.saturating_duration_since(now).min(MAX_SLEEP)
        });
        let out = tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return } else { continue },
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let peer = Peer { transport: Transport::Udp, addr: from };
                    proxy.on_message(&buf[..n], peer, Instant::now(), &mut &*ctl)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "SIP UDP receive error");
                    continue;
                }
            },
            r = tcp_listener.accept() => match r {
                Ok((stream, from)) => {
                    tcp.accepted(stream, from);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SIP TCP accept failed");
                    continue;
                }
            },
            Some(ev) = rx.recv() => match ev {
                Event::Message(peer, bytes) => {
                    proxy.on_message(&bytes, peer, Instant::now(), &mut &*ctl)
                }
                Event::Unreachable(peer, id) => {
                    if !tcp.closed(peer.addr, id) {
                        continue;
                    }
                    proxy.on_unreachable(peer, Instant::now(), &mut &*ctl)
                }
                Event::Closed(addr, id) => {
                    tcp.closed(addr, id);
                    continue;
                }
            },
            _ = tokio::time::sleep(sleep) => {
                proxy.poll(Instant::now(), &mut &*ctl)
            }
        };
        // What cannot be sent is reported to the proxy at once (a 503 upstream), and
        // what that produces is sent in turn.
        let mut queue: VecDeque<Outgoing> = out.into();
        while let Some(o) = queue.pop_front() {
            if !send(&udp, &mut tcp, &o).await {
                queue.extend(proxy.on_unreachable(o.to, Instant::now(), &mut &*ctl));
            }
        }
    }
}

/// Sends one message: a datagram, or onto the connection to that peer (opened on
/// first use). `false` when it could not be sent.
async fn send(udp: &UdpSocket, tcp: &mut Tcp, o: &Outgoing) -> bool {
    match o.to.transport {
        Transport::Udp => match udp.send_to(&o.bytes, o.to.addr).await {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(to = %o.to.addr, error = %e, "SIP UDP send failed");
                false
            }
        },
        Transport::Tcp => tcp.send(o.to, o.bytes.clone()),
    }
}

/// Reads framed messages from a stream and writes what is queued for it, until
/// either side closes, the stream breaks, or nothing moves for `idle`.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut queue: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
    idle: Duration,
) {
    let from = Peer {
        transport: Transport::Tcp,
        addr: peer,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16_384];
    let mut framer = message::Framer::default();
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    loop {
        // RFC 5626 §3.5.1 keep-alives (CRLF) between messages are skipped.
        let skip = buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if skip > 0 {
            buf.drain(..skip);
            framer.reset();
        }
        match framer.next(&buf) {
            Ok(Some(n)) => {
                let msg = buf.drain(..n).collect();
                if events.send(Event::Message(from, msg)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!(%peer, error = %e, "SIP TCP stream broken, closing");
                let _ = events.send(Event::Closed(peer, id)).await;
                return;
            }
        }
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            () = &mut quiet => {
                tracing::debug!(%peer, "SIP TCP connection idle, closing");
                let _ = events.send(Event::Closed(peer, id)).await;
                return;
            }
            q = queue.recv() => match q {
                Some(bytes) => {
                    // A peer that stops reading blocks this write: for `idle` at most,
                    // or until the proxy task finds the queue full and aborts this task.
                    let wrote = tokio::time::timeout(idle, stream.write_all(&bytes)).await;
                    if !matches!(wrote, Ok(Ok(()))) {
                        let _ = events.send(Event::Closed(peer, id)).await;
                        return;
                    }
                }
                None => return,
            },
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => {
                    let _ = events.send(Event::Closed(peer, id)).await;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        quiet.as_mut().reset(tokio::time::Instant::now() + idle);
    }
}

/// The bound front end, ready to start once the controller exists.
#[derive(Debug)]
pub struct Bound {
    udp: UdpSocket,
    tcp: TcpListener,
    proxy: Proxy,
    limits: TcpLimits,
    /// The address UDP and TCP listen on.
    pub addr: SocketAddr,
}

/// Binds the front end when `[sip] listen` / `--listen-sip` is set.
pub async fn bind_config(
    cfg: &super::config::SipConfig,
) -> Result<Option<Bound>, (SocketAddr, std::io::Error)> {
    let Some(want) = cfg.listen else {
        return Ok(None);
    };
    let (udp, tcp) = bind(want).await.map_err(|e| (want, e))?;
    let addr = udp.local_addr().map_err(|e| (want, e))?;
    let proxy = Proxy::new(super::ProxyConfig {
        local: addr,
        routes: cfg.routes.clone(),
        timers: cfg.timers,
    });
    Ok(Some(Bound {
        udp,
        tcp,
        proxy,
        limits: cfg.tcp,
        addr,
    }))
}

impl Bound {
    /// Starts serving on the relay's controller.
    pub fn spawn<B: MediaBackend + 'static>(
        self,
        ctl: Shared<B>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tracing::info!(addr = %self.addr, "SIP front end listening (UDP and TCP)");
        tokio::spawn(serve(
            self.udp,
            self.tcp,
            self.proxy,
            ctl,
            self.limits,
            stop,
        ))
    }
}
