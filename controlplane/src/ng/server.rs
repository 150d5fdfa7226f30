//! The NG listeners: one UDP socket (a datagram is a message) and one TCP listener
//! (a stream of self-delimiting `<cookie> <bencode>` messages). Both hand complete
//! messages to the shared [`Controller`] and stop when told to.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

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

fn prefetch<B: MediaBackend>(ctl: &Shared<B>, msg: &[u8]) -> bool {
    let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
    c.prefetch(msg, Instant::now())
}

fn handle<B: MediaBackend>(ctl: &Shared<B>, msg: &[u8]) -> Option<Vec<u8>> {
    // A panic while holding the lock would poison it; the state is still usable.
    let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
    c.handle(msg, Instant::now())
}

/// Answers NG datagrams until `stop` turns true.
pub async fn serve_udp<B: MediaBackend + 'static>(
    sock: UdpSocket,
    ctl: Shared<B>,
    mut stop: watch::Receiver<bool>,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            r = sock.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors from earlier replies surface here; keep serving.
                        tracing::debug!(error = %e, "NG UDP receive error");
                        continue;
                    }
                };
                if prefetch(&ctl, &buf[..n]) {
                    // Answered from a task so other requests are not held up.
                    let (ctl, sock, msg) = (ctl.clone(), sock.clone(), buf[..n].to_vec());
                    tokio::spawn(async move {
                        tokio::time::sleep(FRESH_WAIT).await;
                        if let Some(reply) = handle(&ctl, &msg) {
                            let _ = sock.send_to(&reply, peer).await;
                        }
                    });
                    continue;
                }
                if let Some(reply) = handle(&ctl, &buf[..n])
                    && let Err(e) = sock.send_to(&reply, peer).await
                {
                    tracing::warn!(%peer, error = %e, "NG UDP reply failed");
                }
            }
        }
    }
}

/// Accepts NG TCP connections until `stop` turns true.
pub async fn serve_tcp<B: MediaBackend + 'static>(
    listener: TcpListener,
    ctl: Shared<B>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "NG TCP connection");
                    tokio::spawn(connection(stream, ctl.clone(), stop.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "NG TCP accept failed"),
            }
        }
    }
}

async fn connection<B: MediaBackend>(
    mut stream: TcpStream,
    ctl: Shared<B>,
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
                    if prefetch(&ctl, &buf[..n]) {
                        tokio::time::sleep(FRESH_WAIT).await;
                    }
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
