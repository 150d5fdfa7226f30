//! The load engine: client sockets per call, evenly paced RTP senders, epoll-driven
//! receivers, and the report. Library code so the end-to-end bench drives the same
//! engine in-process and reads its live counters over a measurement window.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

use ferrelay_srtp::SrtpContext;

use crate::accounting::{Latency, RxStream};
use crate::call_source::{Call, CallAddrs};
use crate::packet::{self, RTP_HEADER, TxStream};
use crate::report::LoadReport;

/// Room after the packet for the SRTP auth tag (and MKI) when protecting in place.
const TAILROOM: usize = 64;

/// What to send and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Packets per second per direction per call.
    pub pps: u32,
    /// RTP payload bytes (160 = 20 ms G.711; 172-byte packets).
    pub payload_len: usize,
    /// Total sending time, warm-up included.
    pub duration: Duration,
    /// Leading part of `duration` excluded from loss and latency (latching, caches).
    pub warmup: Duration,
    /// How long receivers keep listening after the last send.
    pub drain: Duration,
    pub sender_threads: usize,
    pub receiver_threads: usize,
    /// Cores the load threads are pinned to, round-robin; empty leaves them unpinned.
    pub cpus: Vec<usize>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            pps: 50,
            payload_len: packet::DEFAULT_PAYLOAD,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            drain: Duration::from_millis(500),
            sender_threads: 1,
            receiver_threads: 1,
            cpus: Vec::new(),
        }
    }
}

/// Counters readable while the run is going (e.g. to count what a forwarder
/// delivered during a CPU measurement window). `sent` and `received` are added in
/// batches (every 64 sends, every receiver wake-up of at most 20 ms), not per packet.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    /// Our packets received on the socket they were meant for, warm-up included.
    pub received: AtomicU64,
    /// SRTP packets that failed authentication (replays are counted as duplicates).
    pub srtp_errors: AtomicU64,
    /// Plain packets whose payload fill was not what was sent.
    pub corrupt: AtomicU64,
}

/// What one sender thread hands back.
#[derive(Debug, Default)]
struct SenderOut {
    /// (stream, packets sent after warm-up)
    measured: Vec<(u32, u64)>,
    sent_total: u64,
    send_errors: u64,
    /// Largest lateness of a send behind its scheduled time, ns.
    max_lag_ns: u64,
}

/// What one receiver thread hands back.
#[derive(Debug, Default)]
struct ReceiverOut {
    streams: Vec<(u32, RxStream)>,
    latency: Latency,
    misrouted: u64,
    foreign: u64,
    corrupt: u64,
    srtp_errors: u64,
}

/// A running load: started by [`LoadRun::start`], finished by [`LoadRun::wait`].
#[derive(Debug)]
pub struct LoadRun {
    cfg: LoadConfig,
    calls: usize,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
    started: Instant,
    srtp_streams: usize,
    senders: Vec<JoinHandle<SenderOut>>,
    receivers: Vec<JoinHandle<io::Result<ReceiverOut>>>,
}

/// Binds one client socket connected to `relay`, so only the relay's packets reach it.
fn client_socket(relay: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match relay {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(any)?;
    s.connect(relay)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Connects an already bound (and announced) client socket to its relay address.
fn connected(s: UdpSocket, relay: SocketAddr) -> io::Result<UdpSocket> {
    s.connect(relay)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// One stream a sender thread owns: sent from socket `stream`.
struct TxSock {
    stream: u32,
    sock: Arc<UdpSocket>,
    srtp: Option<SrtpContext>,
}

/// One socket a receiver thread owns: socket `index` gets stream `index ^ 1`.
struct RxSock {
    index: usize,
    sock: Arc<UdpSocket>,
    srtp: Option<SrtpContext>,
}

fn pin(cpus: &[usize], n: usize) {
    if let Some(&id) = cpus.get(n % cpus.len().max(1)) {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

impl LoadRun {
    /// Opens two client sockets per call and starts the sender and receiver threads.
    ///
    /// Stream `2i` goes A client -> `calls[i].a` -> relay -> B client, stream `2i+1`
    /// the other way; socket `2i` is the A client, `2i+1` the B client, so stream `s`
    /// is sent from socket `s` and received on socket `s ^ 1`.
    pub fn start(cfg: LoadConfig, calls: &[CallAddrs]) -> io::Result<LoadRun> {
        Self::start_calls(cfg, calls.iter().map(|&c| Call::from(c)).collect())
    }

    /// Like [`LoadRun::start`] for calls that may bring their own (announced)
    /// client sockets and SRTP keys per leg: an SRTP client protects what it
    /// sends with its own key and unprotects what it gets with the relay's.
    pub fn start_calls(cfg: LoadConfig, calls: Vec<Call>) -> io::Result<LoadRun> {
        if cfg.pps == 0 || cfg.sender_threads == 0 || cfg.receiver_threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pps and thread counts must be at least 1",
            ));
        }
        if cfg.payload_len < packet::META_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("payload must be at least {} bytes", packet::META_LEN),
            ));
        }
        let n_calls = calls.len();
        let mut socks = Vec::with_capacity(n_calls * 2);
        // Per socket: (context protecting what it sends, context opening what it gets).
        let mut crypto: Vec<(Option<SrtpContext>, Option<SrtpContext>)> =
            Vec::with_capacity(n_calls * 2);
        for c in calls {
            let (a, b) = match c.sockets {
                Some((a, b)) => (connected(a, c.addrs.a)?, connected(b, c.addrs.b)?),
                None => (client_socket(c.addrs.a)?, client_socket(c.addrs.b)?),
            };
            socks.push(Arc::new(a));
            socks.push(Arc::new(b));
            for leg in [&c.a_srtp, &c.b_srtp] {
                crypto.push(match leg {
                    Some(k) => (
                        Some(k.sender().map_err(io::Error::other)?),
                        Some(k.receiver().map_err(io::Error::other)?),
                    ),
                    None => (None, None),
                });
            }
        }
        let srtp_streams = crypto.iter().filter(|c| c.0.is_some()).count();
        let (mut tx_ctx, mut rx_ctx): (Vec<_>, Vec<_>) = crypto.into_iter().unzip();
        let live = Arc::new(Live::default());
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let n_streams = socks.len();

        let mut receivers = Vec::new();
        for r in 0..cfg.receiver_threads {
            let mine: Vec<RxSock> = socks
                .iter()
                .enumerate()
                .filter(|(j, _)| j % cfg.receiver_threads == r)
                .map(|(j, s)| RxSock {
                    index: j,
                    sock: Arc::clone(s),
                    srtp: rx_ctx[j].take(),
                })
                .collect();
            let (live, stop, cfg2) = (Arc::clone(&live), Arc::clone(&stop), cfg.clone());
            let core = cfg.sender_threads + r;
            receivers.push(
                std::thread::Builder::new()
                    .name(format!("load-rx{r}"))
                    .spawn(move || {
                        pin(&cfg2.cpus, core);
                        receive(mine, &cfg2, epoch, &live, &stop)
                    })?,
            );
        }

        let mut senders = Vec::new();
        for t in 0..cfg.sender_threads {
            let mine: Vec<TxSock> = (0..n_streams)
                .filter(|s| s % cfg.sender_threads == t)
                .map(|s| TxSock {
                    stream: s as u32,
                    sock: Arc::clone(&socks[s]),
                    srtp: tx_ctx[s].take(),
                })
                .collect();
            let (live, cfg2) = (Arc::clone(&live), cfg.clone());
            senders.push(
                std::thread::Builder::new()
                    .name(format!("load-tx{t}"))
                    .spawn(move || {
                        pin(&cfg2.cpus, t);
                        send(mine, n_streams, &cfg2, epoch, &live)
                    })?,
            );
        }
        Ok(LoadRun {
            cfg,
            calls: n_calls,
            live,
            stop,
            started: epoch,
            srtp_streams,
            senders,
            receivers,
        })
    }

    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Time since the threads started (the run's clock).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The configuration this run was started with.
    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }

    /// Waits for the senders to finish, lets the receivers drain, and builds the report.
    pub fn wait(self) -> io::Result<LoadReport> {
        let mut sent_measured = vec![0u64; self.calls * 2];
        let (mut sent_total, mut send_errors, mut max_lag_ns) = (0, 0, 0);
        for h in self.senders {
            let out = h
                .join()
                .map_err(|_| io::Error::other("sender thread panicked"))?;
            for (s, n) in out.measured {
                sent_measured[s as usize] = n;
            }
            sent_total += out.sent_total;
            send_errors += out.send_errors;
            max_lag_ns = max_lag_ns.max(out.max_lag_ns);
        }
        std::thread::sleep(self.cfg.drain);
        self.stop.store(true, Ordering::Relaxed);
        let mut rx = vec![RxStream::new(); self.calls * 2];
        let mut latency = Latency::new();
        let (mut misrouted, mut foreign, mut corrupt, mut srtp_errors) = (0, 0, 0, 0);
        for h in self.receivers {
            let out = h
                .join()
                .map_err(|_| io::Error::other("receiver thread panicked"))??;
            for (s, st) in out.streams {
                rx[s as usize] = st;
            }
            latency.merge(&out.latency);
            misrouted += out.misrouted;
            foreign += out.foreign;
            corrupt += out.corrupt;
            srtp_errors += out.srtp_errors;
        }
        Ok(LoadReport::build(
            &self.cfg,
            self.calls,
            &sent_measured,
            &rx,
            &latency,
            crate::report::Extra {
                sent_total,
                send_errors,
                misrouted,
                foreign,
                max_lag_ns,
                corrupt,
                srtp_errors,
                srtp_streams: self.srtp_streams,
            },
        ))
    }
}

/// Paces this thread's streams: stream `s` of `n_streams` sends at phase
/// `s / n_streams` of the packet period, so sends are spread evenly over time
/// across all threads instead of bursting once per period.
fn send(
    mut mine: Vec<TxSock>,
    n_streams: usize,
    cfg: &LoadConfig,
    epoch: Instant,
    live: &Live,
) -> SenderOut {
    let period_ns = 1_000_000_000u64 / u64::from(cfg.pps);
    let end_ns = cfg.duration.as_nanos() as u64;
    let warm_ns = cfg.warmup.as_nanos() as u64;
    let mut tx: Vec<TxStream> = mine
        .iter()
        .map(|t| TxStream::new(t.stream, 8000 / cfg.pps.min(8000)))
        .collect();
    let phase: Vec<u64> = mine
        .iter()
        .map(|t| u64::from(t.stream) * period_ns / n_streams as u64)
        .collect();
    let mut out = SenderOut {
        measured: mine.iter().map(|t| (t.stream, 0)).collect(),
        ..SenderOut::default()
    };
    let len = RTP_HEADER + cfg.payload_len;
    let mut buf = vec![0u8; len + TAILROOM];
    let mut round = 0u64;
    // Sends not yet added to `live.sent`: one shared atomic per packet would bounce
    // its cache line between sender and receiver cores.
    let mut unflushed = 0u64;
    'run: loop {
        for (k, t) in mine.iter_mut().enumerate() {
            if unflushed >= 64 {
                live.sent.fetch_add(unflushed, Ordering::Relaxed);
                unflushed = 0;
            }
            let due = round * period_ns + phase[k];
            if due >= end_ns {
                break 'run;
            }
            let mut now = epoch.elapsed().as_nanos() as u64;
            if now < due {
                std::thread::sleep(Duration::from_nanos(due - now));
                now = epoch.elapsed().as_nanos() as u64;
            }
            // A generator that cannot keep up stops at the end time anyway, so every
            // run is bounded in time; its report shows the rate it really offered.
            if now >= end_ns {
                break 'run;
            }
            out.max_lag_ns = out.max_lag_ns.max(now.saturating_sub(due));
            tx[k].write_next(&mut buf[..len], now);
            let n = match &mut t.srtp {
                None => len,
                Some(ctx) => match ctx.protect_rtp(&mut buf, len) {
                    Ok(n) => n,
                    Err(_) => {
                        out.send_errors += 1;
                        continue;
                    }
                },
            };
            match t.sock.send(&buf[..n]) {
                Ok(_) => {
                    out.sent_total += 1;
                    unflushed += 1;
                    if now >= warm_ns {
                        out.measured[k].1 += 1;
                    }
                }
                // WouldBlock (full socket buffer) or ECONNREFUSED (relay port not
                // up): the packet was not sent; counted, not retried.
                Err(_) => out.send_errors += 1,
            }
        }
        round += 1;
        live.sent.fetch_add(unflushed, Ordering::Relaxed);
        unflushed = 0;
    }
    live.sent.fetch_add(unflushed, Ordering::Relaxed);
    out
}

/// Datagrams read per `recvmmsg` call.
const RX_BATCH: usize = 16;
const RX_BUF: usize = 2048;

/// Receives on this thread's sockets until `stop`.
///
/// One `recvmmsg` per ready socket and batch: a batch shorter than [`RX_BATCH`]
/// means the socket is drained (mio registers edge-triggered, so a later arrival
/// wakes us again), which saves the extra `EAGAIN` read per wake-up that per-packet
/// `recv` needs; at tens of packets per second per socket that read was half the
/// receive syscalls.
fn receive(
    mut mine: Vec<RxSock>,
    cfg: &LoadConfig,
    epoch: Instant,
    live: &Live,
    stop: &AtomicBool,
) -> io::Result<ReceiverOut> {
    let warm_ns = cfg.warmup.as_nanos() as u64;
    let mut poll = Poll::new()?;
    let mut socks = Vec::with_capacity(mine.len());
    for (i, r) in mine.iter().enumerate() {
        let mut m = mio::net::UdpSocket::from_std(r.sock.try_clone()?);
        poll.registry()
            .register(&mut m, Token(i), Interest::READABLE)?;
        socks.push(m);
    }
    let mut out = ReceiverOut {
        streams: mine
            .iter()
            .map(|r| ((r.index ^ 1) as u32, RxStream::new()))
            .collect(),
        ..ReceiverOut::default()
    };
    let mut events = Events::with_capacity(1024);
    let mut bufs: Box<[[u8; RX_BUF]; RX_BATCH]> = Box::new([[0u8; RX_BUF]; RX_BATCH]);
    let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(RX_BATCH, None);
    let mut lens = [0usize; RX_BATCH];
    // Arrivals not yet added to `live.received`, flushed once per wake-up.
    let mut received = 0u64;
    while !stop.load(Ordering::Relaxed) {
        live.received.fetch_add(received, Ordering::Relaxed);
        received = 0;
        match poll.poll(&mut events, Some(Duration::from_millis(20))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            loop {
                let got = {
                    let mut iov = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
                    match recvmmsg(
                        socks[i].as_raw_fd(),
                        &mut hdrs,
                        iov.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(res) => {
                            let mut g = 0;
                            for m in res {
                                lens[g] = m.bytes;
                                g += 1;
                            }
                            g
                        }
                        // An ICMP error for an earlier send is reported once: read on.
                        Err(Errno::ECONNREFUSED) => continue,
                        // EAGAIN: drained. Anything else: leave this socket for now.
                        Err(_) => break,
                    }
                };
                let now = epoch.elapsed().as_nanos() as u64;
                for (buf, &n) in bufs.iter_mut().zip(&lens[..got]) {
                    if on_datagram(&mut out, &mut mine[i], i, buf, n, now, warm_ns, live) {
                        received += 1;
                    }
                }
                if got < RX_BATCH {
                    break;
                }
            }
        }
    }
    live.received.fetch_add(received, Ordering::Relaxed);
    Ok(out)
}

/// Accounts one datagram that arrived on socket `i` at `now`; true when it was
/// one of ours on the right socket.
#[allow(clippy::too_many_arguments)]
fn on_datagram(
    out: &mut ReceiverOut,
    sock: &mut RxSock,
    i: usize,
    buf: &mut [u8],
    mut n: usize,
    now: u64,
    warm_ns: u64,
    live: &Live,
) -> bool {
    if let Some(ctx) = &mut sock.srtp {
        match ctx.unprotect_rtp(buf, n) {
            Ok(m) => n = m,
            // RFC 3711 §3.3.2: a replayed index is a duplicate delivery.
            Err(e) if e.is_replay() => {
                out.streams[i].1.duplicates += 1;
                return false;
            }
            Err(_) => {
                out.srtp_errors += 1;
                live.srtp_errors.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
    }
    let pkt = &buf[..n];
    let Ok(meta) = packet::parse(pkt) else {
        out.foreign += 1;
        return false;
    };
    let (stream, st) = &mut out.streams[i];
    if meta.stream != *stream {
        out.misrouted += 1;
        return false;
    }
    if !packet::payload_intact(pkt, &meta) {
        out.corrupt += 1;
        live.corrupt.fetch_add(1, Ordering::Relaxed);
    }
    if meta.send_ns >= warm_ns {
        st.on_packet(meta.seq);
        let transit = now.saturating_sub(meta.send_ns);
        st.on_transit(transit as i64);
        out.latency.record(transit);
    }
    true
}
