//! The SIP listeners around the sans-IO [`Proxy`]: one UDP socket and one TCP
//! listener on the same address. A single task owns the proxy; TCP connections
//! (accepted, or opened toward a next hop) feed it whole messages through a channel,
//! and a failed connect becomes a 503 upstream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::addr::Transport;
use super::message::{self, MAX_MESSAGE};
use super::proxy::{Outgoing, Peer, Proxy};
use crate::ng::server::Shared;
use crate::session::backend::MediaBackend;

/// What the connection tasks tell the proxy task.
#[derive(Debug)]
enum Event {
    Message(Peer, Vec<u8>),
    /// Connecting to this peer failed.
    Unreachable(Peer),
    /// The connection to this address ended.
    Closed(SocketAddr),
}

/// Longest the proxy task sleeps between timer checks.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Binds UDP and TCP on `addr` (TCP on the port UDP got, for port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound).await?;
    Ok((udp, tcp))
}

/// Runs the front end until `stop` turns true.
pub async fn serve<B: MediaBackend + 'static>(
    udp: UdpSocket,
    tcp: TcpListener,
    mut proxy: Proxy,
    ctl: Shared<B>,
    mut stop: watch::Receiver<bool>,
) {
    let udp = Arc::new(udp);
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut conns: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
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
                    let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
                    proxy.on_message(&buf[..n], peer, Instant::now(), &mut *c)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "SIP UDP receive error");
                    continue;
                }
            },
            r = tcp.accept() => match r {
                Ok((stream, from)) => {
                    let (stx, srx) = mpsc::unbounded_channel();
                    conns.insert(from, stx);
                    tokio::spawn(connection(stream, from, srx, tx.clone(), stop.clone()));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SIP TCP accept failed");
                    continue;
                }
            },
            Some(ev) = rx.recv() => match ev {
                Event::Message(peer, bytes) => {
                    let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
                    proxy.on_message(&bytes, peer, Instant::now(), &mut *c)
                }
                Event::Unreachable(peer) => {
                    conns.remove(&peer.addr);
                    let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
                    proxy.on_unreachable(peer, Instant::now(), &mut *c)
                }
                Event::Closed(addr) => {
                    conns.remove(&addr);
                    continue;
                }
            },
            _ = tokio::time::sleep(sleep) => {
                let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
                proxy.poll(Instant::now(), &mut *c)
            }
        };
        for o in out {
            send(&udp, &mut conns, &tx, &stop, o).await;
        }
    }
}

/// Sends one message: a datagram, or onto the connection to that peer (opened on
/// first use).
async fn send(
    udp: &UdpSocket,
    conns: &mut HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    events: &mpsc::UnboundedSender<Event>,
    stop: &watch::Receiver<bool>,
    o: Outgoing,
) {
    match o.to.transport {
        Transport::Udp => {
            if let Err(e) = udp.send_to(&o.bytes, o.to.addr).await {
                tracing::info!(to = %o.to.addr, error = %e, "SIP UDP send failed");
                let _ = events.send(Event::Unreachable(o.to));
            }
        }
        Transport::Tcp => {
            if let Some(s) = conns.get(&o.to.addr)
                && s.send(o.bytes.clone()).is_ok()
            {
                return;
            }
            let (stx, srx) = mpsc::unbounded_channel();
            let _ = stx.send(o.bytes);
            conns.insert(o.to.addr, stx);
            let (events, stop) = (events.clone(), stop.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(o.to.addr))
                    .await
                {
                    Ok(Ok(stream)) => connection(stream, o.to.addr, srx, events, stop).await,
                    _ => {
                        let _ = events.send(Event::Unreachable(o.to));
                    }
                }
            });
        }
    }
}

/// Reads framed messages from a stream and writes what is queued for it.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let from = Peer {
        transport: Transport::Tcp,
        addr: peer,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16_384];
    let mut framer = message::Framer::default();
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
                if events.send(Event::Message(from, msg)).is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!(%peer, error = %e, "SIP TCP stream broken, closing");
                let _ = events.send(Event::Closed(peer));
                return;
            }
        }
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            q = queue.recv() => match q {
                Some(bytes) => if stream.write_all(&bytes).await.is_err() {
                    let _ = events.send(Event::Closed(peer));
                    return;
                },
                None => return,
            },
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => {
                    let _ = events.send(Event::Closed(peer));
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// The bound front end, ready to start once the controller exists.
#[derive(Debug)]
pub struct Bound {
    udp: UdpSocket,
    tcp: TcpListener,
    proxy: Proxy,
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
        tokio::spawn(serve(self.udp, self.tcp, self.proxy, ctl, stop))
    }
}
