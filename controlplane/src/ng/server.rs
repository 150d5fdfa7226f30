//! The NG listeners: one UDP socket (a datagram is a message) and one TCP listener
//! (a stream of self-delimiting `<cookie> <bencode>` messages). Both hand complete
//! messages to the shared [`Controller`] and stop when told to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::bencode::Scan;
use super::commands::{Controller, Framing, MAX_COOKIE, error_reply, frame, with_cookie};
use crate::session::backend::MediaBackend;

/// Largest NG message over TCP; past it the connection is closed (SDPs are a few KiB).
pub const MAX_TCP_MESSAGE: usize = 1 << 20;

/// The shared controller: commands run one at a time, none of them blocks.
pub type Shared<B> = Arc<Mutex<Controller<B>>>;

/// How long a `query` waits for the counters it asked the workers for:
/// a worker answers within its loop turn and its events are handled on arrival.
pub const FRESH_WAIT: Duration = Duration::from_millis(30);
/// Queries allowed to wait for fresh counters at once (over UDP and TCP together);
/// past it a query is answered at once from the last polled counters, so a flood
/// of queries cannot pile up tasks and copies of their datagrams.
pub const MAX_WAITING_QUERIES: usize = 256;
/// Datagrams handled back to back before the workers are woken and other tasks
/// get a turn: under load several requests wait in the socket, and draining them
/// together costs one wake per worker (and one poll) instead of one per request.
pub const UDP_BATCH: usize = 32;

/// How the NG servers bound the queries that wait for fresh counters.
#[derive(Debug, Clone)]
pub struct QueryWaits {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl Default for QueryWaits {
    fn default() -> Self {
        QueryWaits::new(MAX_WAITING_QUERIES, FRESH_WAIT)
    }
}

impl QueryWaits {
    /// At most `max` queries wait `wait` each at any time.
    pub fn new(max: usize, wait: Duration) -> Self {
        QueryWaits {
            permits: Arc::new(Semaphore::new(max)),
            wait,
        }
    }

    /// A permit to wait, or `None` (counted on the controller) when `max` already do.
    fn try_wait<B>(&self, ctl: &mut Controller<B>) -> Option<OwnedSemaphorePermit> {
        let p = self.permits.clone().try_acquire_owned().ok();
        if p.is_none() {
            ctl.queries_not_waited += 1;
        }
        p
    }
}

/// The controller; a panic while holding the lock would poison it, but the state
/// is still usable.
fn lock<B: MediaBackend>(ctl: &Shared<B>) -> MutexGuard<'_, Controller<B>> {
    ctl.lock().unwrap_or_else(|p| p.into_inner())
}

fn handle<B: MediaBackend>(ctl: &Shared<B>, msg: &[u8]) -> Option<Vec<u8>> {
    lock(ctl).handle(msg, Instant::now())
}

/// Sends one reply without a poll when the socket has room (it almost always has).
async fn reply_to(sock: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    let r = match sock.try_send_to(reply, peer) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => sock.send_to(reply, peer).await,
        r => r,
    };
    if let Err(e) = r {
        tracing::warn!(%peer, error = %e, "NG UDP reply failed");
    }
}

/// Answers NG datagrams until `stop` turns true.
pub async fn serve_udp<B: MediaBackend + 'static>(
    sock: UdpSocket,
    ctl: Shared<B>,
    waits: QueryWaits,
    mut stop: watch::Receiver<bool>,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65_536];
    loop {
        let mut r = tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return } else { continue },
            r = sock.recv_from(&mut buf) => r,
        };
        let (mut served, mut unflushed) = (0, false);
        loop {
            match r {
                Ok((n, peer)) => {
                    unflushed |= serve_datagram(&sock, &ctl, &waits, &buf[..n], peer).await;
                }
                // ICMP errors from earlier replies surface here; keep serving.
                Err(e) => tracing::debug!(error = %e, "NG UDP receive error"),
            }
            served += 1;
            if served == UDP_BATCH {
                break;
            }
            r = match sock.try_recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                r => r,
            };
        }
        // Wake the workers once for every request of the batch, after their
        // replies went out (the sockets are bound, so no media is lost meanwhile).
        if unflushed {
            lock(&ctl).flush();
        }
        if served == UDP_BATCH {
            tokio::task::yield_now().await;
        }
    }
}

/// What to do with one datagram, decided under the controller lock.
enum Action {
    /// Send this reply (worker commands it queued are not yet flushed).
    Reply(Option<Vec<u8>>),
    /// A query that may wait for fresh counters, holding this permit.
    Wait(OwnedSemaphorePermit),
}

fn decide<B: MediaBackend>(ctl: &Shared<B>, waits: &QueryWaits, msg: &[u8]) -> Action {
    let now = Instant::now();
    let mut c = lock(ctl);
    if c.prefetch(msg, now)
        && let Some(permit) = waits.try_wait(&mut c)
    {
        return Action::Wait(permit);
    }
    Action::Reply(c.handle_unflushed(msg, now))
}

/// Answers one datagram; true when it may have queued worker commands not yet
/// flushed.
async fn serve_datagram<B: MediaBackend + 'static>(
    sock: &Arc<UdpSocket>,
    ctl: &Shared<B>,
    waits: &QueryWaits,
    msg: &[u8],
    peer: SocketAddr,
) -> bool {
    match decide(ctl, waits, msg) {
        Action::Reply(reply) => {
            if let Some(reply) = reply {
                reply_to(sock, &reply, peer).await;
            }
            true
        }
        Action::Wait(permit) => {
            // Answered from a task so other requests are not held up.
            let (ctl, sock, msg, wait) = (ctl.clone(), sock.clone(), msg.to_vec(), waits.wait);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let reply = handle(&ctl, &msg);
                drop(permit);
                if let Some(reply) = reply {
                    reply_to(&sock, &reply, peer).await;
                }
            });
            false
        }
    }
}

/// Accepts NG TCP connections until `stop` turns true.
pub async fn serve_tcp<B: MediaBackend + 'static>(
    listener: TcpListener,
    ctl: Shared<B>,
    waits: QueryWaits,
    stop: watch::Receiver<bool>,
) {
    serve_tcp_capped(listener, ctl, waits, MAX_TCP_CONNECTIONS, stop).await;
}

/// Most NG TCP connections open at once. NG clients are a handful of SIP proxies
/// holding one connection or a few each; the bound keeps a misbehaving client
/// from pinning descriptors and buffers without end.
pub const MAX_TCP_CONNECTIONS: usize = 256;

/// [`serve_tcp`] with the connection cap given: past it an accepted connection is
/// closed at once and counted (`Controller::tcp_refused`).
pub async fn serve_tcp_capped<B: MediaBackend + 'static>(
    listener: TcpListener,
    ctl: Shared<B>,
    waits: QueryWaits,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // Logged once per episode of refusals, not per connection.
    let mut refusing = false;
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        lock(&ctl).tcp_refused += 1;
                        if !refusing {
                            tracing::warn!(%peer, max = max_connections, "NG TCP connection limit reached, refusing");
                            refusing = true;
                        }
                        drop(stream);
                        continue;
                    };
                    refusing = false;
                    tracing::debug!(%peer, "NG TCP connection");
                    let (ctl, waits, stop) = (ctl.clone(), waits.clone(), stop.clone());
                    tokio::spawn(async move {
                        connection(stream, ctl, waits, stop).await;
                        drop(slot);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "NG TCP accept failed"),
            }
        }
    }
}

async fn connection<B: MediaBackend>(
    mut stream: TcpStream,
    ctl: Shared<B>,
    waits: QueryWaits,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16_384];
    // Where the message at the front of `buf` may end; decoded only then.
    let mut scan = Scan::default();
    loop {
        // Serve every complete message already buffered.
        loop {
            let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if skip > 0 {
                buf.drain(..skip);
                scan = Scan::default();
            }
            if buf.is_empty() {
                break;
            }
            // A partial message is not decoded again on every read: a peer trickling
            // a large one byte by byte would cost quadratic work.
            let ready = match buf.iter().take(MAX_COOKIE + 1).position(|b| *b == b' ') {
                Some(sp) => scan.worth_decoding(&buf[sp + 1..]),
                None => true,
            };
            if !ready {
                break;
            }
            match frame(&buf) {
                Framing::Partial => break,
                Framing::Message(n) => {
                    scan = Scan::default();
                    let permit = {
                        let mut c = lock(&ctl);
                        if c.prefetch(&buf[..n], Instant::now()) {
                            waits.try_wait(&mut c)
                        } else {
                            None
                        }
                    };
                    if permit.is_some() {
                        tokio::time::sleep(waits.wait).await;
                    }
                    drop(permit);
                    let reply = handle(&ctl, &buf[..n]);
                    buf.drain(..n);
                    if let Some(r) = reply
                        && stream.write_all(&r).await.is_err()
                    {
                        return;
                    }
                }
                Framing::Broken { cookie_len, reason } => {
                    if let Some(n) = cookie_len {
                        let r = with_cookie(&buf[..n], &error_reply(&reason));
                        let _ = stream.write_all(&r).await;
                    }
                    tracing::info!(reason = %reason, "NG TCP stream broken, closing");
                    return;
                }
            }
        }
        if buf.len() > MAX_TCP_MESSAGE {
            tracing::info!("NG TCP message too large, closing");
            return;
        }
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ng::bencode::dict;
    use crate::ng::commands::{tests::controller, with_cookie};
    use crate::ng::{Value, commands::split_cookie};

    #[tokio::test]
    async fn queries_past_the_cap_are_answered_at_once() {
        let ctl = Arc::new(Mutex::new(controller()));
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let offer = dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("q")),
            ("from-tag", Value::str("a")),
            ("sdp", Value::str(sdp)),
        ]);
        let r = handle(&ctl, &with_cookie(b"o", &offer)).unwrap();
        assert!(String::from_utf8_lossy(&r).contains("6:result2:ok"));

        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        // Two may wait, and long enough that none of them answers during the test.
        let waits = QueryWaits::new(2, Duration::from_secs(30));
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve_udp(sock, ctl.clone(), waits, stop_rx));

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let query = dict([
            ("command", Value::str("query")),
            ("call-id", Value::str("q")),
        ]);
        for i in 0..5 {
            let msg = with_cookie(format!("q{i}").as_bytes(), &query);
            client.send_to(&msg, addr).await.unwrap();
        }
        let mut cookies = BTreeSet::new();
        let mut buf = vec![0u8; 65_536];
        for _ in 0..3 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .expect("queries past the cap are answered without waiting")
                .unwrap();
            let (cookie, body) = split_cookie(&buf[..n]).unwrap();
            let reply = Value::decode(body).unwrap();
            assert_eq!(reply.get("result").and_then(Value::as_str), Some("ok"));
            cookies.insert(String::from_utf8(cookie.to_vec()).unwrap());
        }
        // The first two hold the permits and wait; the other three did not.
        assert_eq!(
            cookies,
            BTreeSet::from(["q2".into(), "q3".into(), "q4".into()])
        );
        assert_eq!(lock(&ctl).queries_not_waited, 3);
        let more = tokio::time::timeout(Duration::from_millis(100), client.recv_from(&mut buf));
        assert!(more.await.is_err(), "a waiting query answered early");

        stop.send(true).unwrap();
        server.await.unwrap();
    }

    /// Sends an NG `ping` over `s` and reads the `pong`.
    async fn ping(s: &mut TcpStream, cookie: &str) {
        let msg = with_cookie(cookie.as_bytes(), &dict([("command", Value::str("ping"))]));
        s.write_all(&msg).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("pong in time")
            .unwrap();
        let (c, body) = split_cookie(&buf[..n]).unwrap();
        assert_eq!(c, cookie.as_bytes());
        assert_eq!(
            Value::decode(body)
                .unwrap()
                .get("result")
                .and_then(Value::as_str),
            Some("pong")
        );
    }

    #[tokio::test]
    async fn tcp_connections_past_the_cap_are_closed_and_counted() {
        let ctl = Arc::new(Mutex::new(controller()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve_tcp_capped(
            listener,
            ctl.clone(),
            QueryWaits::default(),
            2,
            stop_rx,
        ));
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        ping(&mut a, "a1").await;
        ping(&mut b, "b1").await;
        // The third is closed at once (EOF), and counted.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(lock(&ctl).tcp_refused, 1);
        ping(&mut a, "a2").await;
        // A closed connection frees its slot.
        drop(b);
        let mut d = None;
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let msg = with_cookie(b"d1", &dict([("command", Value::str("ping"))]));
            s.write_all(&msg).await.unwrap();
            let mut buf = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await
                && n > 0
            {
                d = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(d.is_some(), "the freed slot takes a new connection");
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
