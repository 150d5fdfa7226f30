//! The NG TCP listener (a stream of self-delimiting `<cookie> <bencode>` messages)
//! on the runtime, and what it shares with the UDP threads (`ng::udp`): both hand
//! complete messages to the shards and stop when told to.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::bencode::Scan;
use super::commands::{Framing, MAX_COOKIE, error_reply, frame, with_cookie};
use super::shards::Shards;
use crate::session::backend::MediaBackend;

/// Largest NG message over TCP; past it the connection is closed (SDPs are a few KiB).
pub const MAX_TCP_MESSAGE: usize = 1 << 20;

/// The shared controllers: commands on one call run one at a time, none of them
/// blocks.
pub type Shared<B> = Arc<Shards<B>>;

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

    /// How long a query waits.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// A permit to wait, or `None` (counted on the shards) when `max` already do.
    pub fn try_wait<B: MediaBackend>(&self, ctl: &Shards<B>) -> Option<OwnedSemaphorePermit> {
        let p = self.permits.clone().try_acquire_owned().ok();
        if p.is_none() {
            ctl.query_not_waited();
        }
        p
    }
}

fn handle<B: MediaBackend>(ctl: &Shared<B>, msg: &[u8]) -> Option<bytes::Bytes> {
    ctl.handle(msg, Instant::now())
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
/// closed at once and counted (`Shards::tcp_refused`).
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
                        ctl.tcp_refused.fetch_add(1, Ordering::Relaxed);
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
                    let permit = if ctl.prefetch(&buf[..n], Instant::now()) {
                        waits.try_wait(&ctl)
                    } else {
                        None
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
    use super::*;
    use crate::ng::bencode::dict;
    use crate::ng::commands::{tests::controller, with_cookie};
    use crate::ng::{Value, commands::split_cookie};

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
        let ctl = Arc::new(Shards::new(vec![controller()]));
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
        assert_eq!(ctl.tcp_refused.load(Ordering::Relaxed), 1);
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
