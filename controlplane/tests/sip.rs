//! Two scripted UAs on loopback call each other through the SIP front end of an
//! in-process relay: signalling checked header by header, media checked byte for
//! byte through the relay ports the front end wrote into the SDP.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ferrelay::relay::RelayHandle;
use ferrelay::sip::message::{Header, Message, StartLine};
use tokio::net::UdpSocket;

/// A scripted user agent: one SIP socket, one RTP socket.
struct Ua {
    sip: UdpSocket,
    rtp: UdpSocket,
    name: &'static str,
    tag: String,
}

impl Ua {
    async fn new(name: &'static str) -> Ua {
        Ua {
            sip: bind().await,
            rtp: bind().await,
            name,
            tag: format!("{name}-tag"),
        }
    }

    fn port(&self) -> u16 {
        self.sip.local_addr().unwrap().port()
    }

    fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.name, self.port())
    }

    fn sdp(&self, dir: &str) -> Vec<u8> {
        sdp(
            self.rtp.local_addr().unwrap().port(),
            &format!("a={dir}\r\n"),
        )
        .into_bytes()
    }

    async fn send(&self, to: SocketAddr, m: &Message) {
        self.sip.send_to(&m.to_bytes(), to).await.unwrap();
    }

    /// The next SIP message, skipping none.
    async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), self.sip.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{}: no SIP message in time", self.name))
            .unwrap();
        Message::parse(&buf[..n]).expect("the proxy sends valid SIP")
    }

    /// The next message that is not a `100 Trying`.
    async fn recv_skip_trying(&self) -> Message {
        loop {
            let m = self.recv().await;
            if m.code() != Some(100) {
                return m;
            }
        }
    }

    /// A request from this UA.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &str,
        ruri: &str,
        call: &str,
        cseq: u32,
        branch: &str,
        to: (&str, Option<&str>),
        routes: &[String],
        body: Option<Vec<u8>>,
    ) -> Message {
        let mut h = vec![
            hdr(
                "Via",
                format!(
                    "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK{branch};rport",
                    self.port()
                ),
            ),
            hdr("Max-Forwards", "70".into()),
            hdr("From", format!("<{}>;tag={}", self.uri(), self.tag)),
            hdr(
                "To",
                match to.1 {
                    Some(t) => format!("<{}>;tag={t}", to.0),
                    None => format!("<{}>", to.0),
                },
            ),
            hdr("Call-ID", call.into()),
            hdr("CSeq", format!("{cseq} {method}")),
            hdr("Contact", format!("<{}>", self.uri())),
        ];
        h.extend(routes.iter().map(|r| hdr("Route", r.clone())));
        if body.is_some() {
            h.push(hdr("Content-Type", "application/sdp".into()));
        }
        Message {
            start: StartLine::Request {
                method: method.into(),
                uri: ruri.into(),
            },
            headers: h,
            body: body.unwrap_or_default(),
        }
    }

    /// A response to `req`, To-tagged with our tag.
    fn respond(&self, req: &Message, code: u16, body: Option<Vec<u8>>) -> Message {
        let mut h: Vec<Header> = req
            .headers
            .iter()
            .filter(|x| {
                matches!(
                    x.name.as_str(),
                    "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route"
                )
            })
            .cloned()
            .collect();
        let to = req.header("To").unwrap();
        let to = if to.contains("tag=") {
            to.to_owned()
        } else {
            format!("{to};tag={}", self.tag)
        };
        h.push(hdr("To", to));
        h.push(hdr("Contact", format!("<{}>", self.uri())));
        if body.is_some() {
            h.push(hdr("Content-Type", "application/sdp".into()));
        }
        Message {
            start: StartLine::Response {
                code,
                reason: "Reason".into(),
            },
            headers: h,
            body: body.unwrap_or_default(),
        }
    }
}

fn hdr(name: &str, value: String) -> Header {
    Header {
        name: name.into(),
        value,
    }
}

fn body_port(m: &Message) -> u16 {
    media_port(std::str::from_utf8(&m.body).unwrap())
}

async fn sip_relay(t1_ms: u64) -> (RelayHandle, SocketAddr) {
    let relay = relay_with(|c| {
        c.sip.listen = Some("127.0.0.1:0".parse().unwrap());
        c.sip.timers.t1 = Duration::from_millis(t1_ms);
        c.delete_delay = Duration::ZERO;
    })
    .await;
    let sip = relay.sip.expect("the SIP front end is on");
    (relay, sip)
}

/// A places a call to B through the proxy and B answers; returns the relay ports A
/// and B send media to, and the Route set A uses in the dialog.
async fn establish(a: &Ua, b: &Ua, proxy: SocketAddr, call: &str) -> (u16, u16, Vec<String>) {
    let inv = a.request(
        "INVITE",
        &b.uri(),
        call,
        1,
        &format!("{call}-1"),
        (&b.uri(), None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    a.send(proxy, &inv).await;
    assert_eq!(a.recv().await.code(), Some(100), "100 Trying at once");
    let got = b.recv().await;
    assert_eq!(got.method(), Some("INVITE"));
    let vias: Vec<&str> = got.headers_named("Via").collect();
    assert_eq!(vias.len(), 2, "proxy Via on top of A's");
    assert!(
        vias[0].contains(&format!("127.0.0.1:{}", proxy.port())),
        "{vias:?}"
    );
    assert!(
        vias[1].contains(&format!("rport={}", a.port())),
        "rport filled: {vias:?}"
    );
    assert_eq!(got.header("Max-Forwards"), Some("69"));
    let rr = got
        .header("Record-Route")
        .expect("Record-Route added")
        .to_owned();
    assert!(rr.contains(";lr"), "{rr}");
    let to_b = body_port(&got);
    assert_ne!(to_b, a.rtp.local_addr().unwrap().port(), "SDP anchored");
    b.send(proxy, &b.respond(&got, 180, None)).await;
    let ringing = a.recv_skip_trying().await;
    assert_eq!(ringing.code(), Some(180));
    assert_eq!(ringing.headers_named("Via").count(), 1, "proxy Via removed");
    b.send(proxy, &b.respond(&got, 200, Some(b.sdp("sendrecv"))))
        .await;
    let ok = a.recv_skip_trying().await;
    assert_eq!(ok.code(), Some(200));
    let to_a = body_port(&ok);
    assert_ne!(to_a, b.rtp.local_addr().unwrap().port(), "answer anchored");
    let routes: Vec<String> = ok
        .headers_named("Record-Route")
        .map(str::to_owned)
        .collect();
    assert_eq!(routes, [rr]);
    let ack = a.request(
        "ACK",
        &b.uri(),
        call,
        1,
        &format!("{call}-ack1"),
        (&b.uri(), Some(&b.tag)),
        &routes,
        None,
    );
    a.send(proxy, &ack).await;
    let got = b.recv().await;
    assert_eq!(got.method(), Some("ACK"), "ACK routed through the proxy");
    (to_a, to_b, routes)
}

async fn media_both_ways(a: &Ua, b: &Ua, to_a: u16, to_b: u16, seq: u16) {
    let pkt = rtp(0, seq, 0xA1A1_A1A1, 0x11);
    let (got, _) = send_until(&a.rtp, at(to_a), &pkt, &b.rtp).await;
    assert_eq!(got, pkt, "A->B bytes unchanged");
    let pkt = rtp(0, seq, 0xB2B2_B2B2, 0x22);
    let (got, _) = send_until(&b.rtp, at(to_b), &pkt, &a.rtp).await;
    assert_eq!(got, pkt, "B->A bytes unchanged");
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn call_exists(relay: &RelayHandle, call: &str) -> bool {
    let mut ng = Ng::new(relay.ng_udp).await;
    result(&ng.call(&cmd("query", call)).await) == "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_hold_resume_and_bye_through_the_front_end() {
    let (relay, proxy) = sip_relay(500).await;
    let (a, b) = (Ua::new("alice").await, Ua::new("bob").await);
    let (to_a, to_b, routes) = establish(&a, &b, proxy, "call-basic").await;
    media_both_ways(&a, &b, to_a, to_b, 1).await;

    // Re-INVITE: hold (sendonly/recvonly), then resume; the relay ports stay.
    for (n, (dir_a, dir_b)) in [("sendonly", "recvonly"), ("sendrecv", "sendrecv")]
        .into_iter()
        .enumerate()
    {
        let cseq = 2 + n as u32;
        let reinv = a.request(
            "INVITE",
            &b.uri(),
            "call-basic",
            cseq,
            &format!("re{n}"),
            (&b.uri(), Some(&b.tag)),
            &routes,
            Some(a.sdp(dir_a)),
        );
        a.send(proxy, &reinv).await;
        let got = b.recv().await;
        assert_eq!(got.method(), Some("INVITE"));
        assert!(got.header("Route").is_none(), "our Route popped");
        assert_eq!(
            got.header("Record-Route"),
            None,
            "no Record-Route in-dialog"
        );
        assert_eq!(body_port(&got), to_b, "same relay port toward B");
        assert!(String::from_utf8_lossy(&got.body).contains(dir_a));
        b.send(proxy, &b.respond(&got, 200, Some(b.sdp(dir_b))))
            .await;
        let ok = a.recv_skip_trying().await;
        assert_eq!(ok.code(), Some(200));
        assert_eq!(body_port(&ok), to_a, "same relay port toward A");
        let ack = a.request(
            "ACK",
            &b.uri(),
            "call-basic",
            cseq,
            &format!("reack{n}"),
            (&b.uri(), Some(&b.tag)),
            &routes,
            None,
        );
        a.send(proxy, &ack).await;
        assert_eq!(b.recv().await.method(), Some("ACK"));
    }
    media_both_ways(&a, &b, to_a, to_b, 50).await;
    assert!(call_exists(&relay, "call-basic").await);

    // BYE from the callee, routed by A's Contact through the Record-Route.
    let bye = b.request(
        "BYE",
        &a.uri(),
        "call-basic",
        1,
        "bye1",
        (&a.uri(), Some(&a.tag)),
        &routes,
        None,
    );
    b.send(proxy, &bye).await;
    let got = a.recv().await;
    assert_eq!(got.method(), Some("BYE"));
    a.send(proxy, &a.respond(&got, 200, None)).await;
    assert_eq!(b.recv().await.code(), Some(200));
    assert!(
        !call_exists(&relay, "call-basic").await,
        "BYE freed the call"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer_ends_the_call() {
    let (relay, proxy) = sip_relay(500).await;
    let (a, b) = (Ua::new("carol").await, Ua::new("dave").await);
    let inv = a.request(
        "INVITE",
        &b.uri(),
        "call-cancel",
        1,
        "c1",
        (&b.uri(), None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    a.send(proxy, &inv).await;
    assert_eq!(a.recv().await.code(), Some(100));
    let got = b.recv().await;
    b.send(proxy, &b.respond(&got, 180, None)).await;
    assert_eq!(a.recv().await.code(), Some(180));
    assert!(
        call_exists(&relay, "call-cancel").await,
        "offer made the call"
    );

    // CANCEL carries the INVITE's branch and CSeq number (RFC 3261 §9.1).
    let mut cancel = a.request(
        "CANCEL",
        &b.uri(),
        "call-cancel",
        1,
        "c1",
        (&b.uri(), None),
        &[],
        None,
    );
    cancel.set_header("CSeq", "1 CANCEL".into());
    a.send(proxy, &cancel).await;
    let ok = a.recv().await;
    assert_eq!(
        (ok.code(), ok.cseq().map(|c| c.1.to_owned())),
        (Some(200), Some("CANCEL".into()))
    );
    let c = b.recv().await;
    assert_eq!(c.method(), Some("CANCEL"));
    assert_eq!(
        c.header("Via"),
        got.header("Via"),
        "the CANCEL matches the forwarded INVITE's branch"
    );
    b.send(proxy, &b.respond(&c, 200, None)).await;
    b.send(proxy, &b.respond(&got, 487, None)).await;
    let term = a.recv().await;
    assert_eq!(term.code(), Some(487));
    let ack = b.recv().await;
    assert_eq!(
        ack.method(),
        Some("ACK"),
        "the proxy ACKs the 487 hop by hop"
    );
    assert_eq!(ack.header("Via"), got.header("Via"));
    assert!(
        !call_exists(&relay, "call-cancel").await,
        "487 freed the call"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_become_408_and_503() {
    // T1 = 20 ms: Timer B fires after 1.28 s.
    let (relay, proxy) = sip_relay(20).await;
    let a = Ua::new("erin").await;
    // Nobody listens there: every retransmission goes unanswered.
    let silent = bind().await;
    let dead = format!(
        "sip:nobody@127.0.0.1:{}",
        silent.local_addr().unwrap().port()
    );
    let inv = a.request(
        "INVITE",
        &dead,
        "call-408",
        1,
        "t1",
        (&dead, None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    a.send(proxy, &inv).await;
    assert_eq!(a.recv().await.code(), Some(100));
    let mut copies = 0;
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(400), silent.recv_from(&mut buf)).await
    {
        copies += 1;
    }
    assert!(copies >= 4, "Timer A retransmits ({copies})");
    let r = a.recv().await;
    assert_eq!(r.code(), Some(408), "Timer B -> 408");
    assert!(!call_exists(&relay, "call-408").await, "408 freed the call");

    // No DNS in the front end: a host name cannot be reached.
    let named = "sip:x@unreachable.invalid";
    let inv = a.request(
        "INVITE",
        named,
        "call-503",
        1,
        "t2",
        (named, None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    a.send(proxy, &inv).await;
    assert_eq!(a.recv().await.code(), Some(100));
    assert_eq!(a.recv().await.code(), Some(503));

    // TCP next hop refusing the connection.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tcp = format!("sip:x@127.0.0.1:{closed};transport=tcp");
    let inv = a.request(
        "INVITE",
        &tcp,
        "call-503b",
        1,
        "t3",
        (&tcp, None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    a.send(proxy, &inv).await;
    assert_eq!(a.recv().await.code(), Some(100));
    assert_eq!(
        a.recv().await.code(),
        Some(503),
        "refused connection -> 503"
    );
    assert!(!call_exists(&relay, "call-503b").await);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_garbage_is_dropped() {
    let (relay, proxy) = sip_relay(500).await;
    let a = Ua::new("frank").await;
    let mut bad = a.request(
        "OPTIONS",
        "sip:x@127.0.0.1:9",
        "call-bad",
        1,
        "m1",
        ("sip:x@127.0.0.1:9", None),
        &[],
        None,
    );
    bad.set_header("CSeq", "one OPTIONS".into());
    a.send(proxy, &bad).await;
    assert_eq!(a.recv().await.code(), Some(400));
    a.sip
        .send_to(b"\x00\x01garbage\r\n\r\n", proxy)
        .await
        .unwrap();
    // Still alive: a well-formed request with Max-Forwards 0 gets 483.
    let mut hop = a.request(
        "OPTIONS",
        "sip:x@127.0.0.1:9",
        "call-mf",
        1,
        "m2",
        ("sip:x@127.0.0.1:9", None),
        &[],
        None,
    );
    hop.set_header("Max-Forwards", "0".into());
    a.send(proxy, &hop).await;
    assert_eq!(a.recv().await.code(), Some(483));
    relay.shutdown().await;
}

/// Reads one framed SIP message from a TCP stream.
async fn read_tcp(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Message {
    use tokio::io::AsyncReadExt;
    loop {
        if let Ok(Some(n)) = ferrelay::sip::message::frame(buf) {
            let m = Message::parse(&buf[..n]).unwrap();
            buf.drain(..n);
            return m;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("SIP over TCP in time")
            .unwrap();
        assert!(n > 0, "proxy closed the TCP connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_over_tcp_callee_over_udp() {
    use tokio::io::AsyncWriteExt;
    let (relay, proxy) = sip_relay(500).await;
    let (a, b) = (Ua::new("gina").await, Ua::new("hank").await);
    let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let mut buf = Vec::new();
    let mut inv = a.request(
        "INVITE",
        &b.uri(),
        "call-tcp",
        1,
        "tcp1",
        (&b.uri(), None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    inv.set_header(
        "Via",
        format!("SIP/2.0/TCP 127.0.0.1:{};branch=z9hG4bKtcp1", a.port()),
    );
    // Split the message so the proxy has to reassemble it from the stream.
    let bytes = inv.to_bytes();
    tcp.write_all(&bytes[..40]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    tcp.write_all(&bytes[40..]).await.unwrap();
    assert_eq!(read_tcp(&mut tcp, &mut buf).await.code(), Some(100));
    let got = b.recv().await;
    assert_eq!(got.method(), Some("INVITE"));
    assert_ne!(
        body_port(&got),
        a.rtp.local_addr().unwrap().port(),
        "SDP anchored"
    );
    b.send(proxy, &b.respond(&got, 200, Some(b.sdp("sendrecv"))))
        .await;
    let ok = read_tcp(&mut tcp, &mut buf).await;
    assert_eq!(
        ok.code(),
        Some(200),
        "the 200 comes back on the caller's connection"
    );
    assert_eq!(ok.headers_named("Via").count(), 1);
    assert!(call_exists(&relay, "call-tcp").await);
    // Double Record-Route between transports: top for the callee (UDP), below
    // for the caller (TCP); the caller's route set is the reverse.
    let rr: Vec<String> = ok
        .headers_named("Record-Route")
        .map(str::to_owned)
        .collect();
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(
        !rr[0].contains("transport=tcp") && rr[1].contains(";transport=tcp"),
        "{rr:?}"
    );
    let routes: Vec<String> = rr.iter().rev().cloned().collect();
    let mut bye = a.request(
        "BYE",
        &b.uri(),
        "call-tcp",
        2,
        "tcpbye",
        (&b.uri(), Some(&b.tag)),
        &routes,
        None,
    );
    bye.set_header(
        "Via",
        format!("SIP/2.0/TCP 127.0.0.1:{};branch=z9hG4bKtcpbye", a.port()),
    );
    tcp.write_all(&bye.to_bytes()).await.unwrap();
    let got = b.recv().await;
    assert_eq!(
        got.method(),
        Some("BYE"),
        "both of our Routes popped, UDP to the callee"
    );
    assert!(got.header("Route").is_none());
    b.send(proxy, &b.respond(&got, 200, None)).await;
    assert_eq!(read_tcp(&mut tcp, &mut buf).await.code(), Some(200));
    assert!(
        !call_exists(&relay, "call-tcp").await,
        "BYE over TCP freed the call"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_policy_forces_sdes_srtp_toward_the_callee_only() {
    use ferrelay::sip::Route;
    use ferrelay::sip::media::SidePolicy;
    let (a, b) = (Ua::new("ivan").await, Ua::new("judy").await);
    let relay = relay_with(|c| {
        c.sip.listen = Some("127.0.0.1:0".parse().unwrap());
        c.sip.routes = vec![Route {
            user_prefix: Some("ju".into()),
            callee: SidePolicy {
                transport_protocol: Some("RTP/SAVP".into()),
            },
            caller: SidePolicy {
                transport_protocol: Some("RTP/AVP".into()),
            },
            ..Route::default()
        }];
    })
    .await;
    let proxy = relay.sip.unwrap();
    let inv = a.request(
        "INVITE",
        &b.uri(),
        "call-sdes",
        1,
        "s1",
        (&b.uri(), None),
        &[],
        Some(a.sdp("sendrecv")),
    );
    a.send(proxy, &inv).await;
    let got = b.recv_skip_trying().await;
    let offer = String::from_utf8(got.body.clone()).unwrap();
    assert!(
        offer.contains(" RTP/SAVP ") && offer.contains("a=crypto:"),
        "SDES offered to the callee: {offer}"
    );
    let to_b = body_port(&got);
    // B answers with its own key; A, plain toward the caller, sees no crypto.
    let tag = offer
        .lines()
        .filter(|l| l.contains("AES_CM_128_HMAC_SHA1_80"))
        .find_map(|l| l.strip_prefix("a=crypto:"))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_owned();
    let line = format!(
        "a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tb\r\n"
    );
    let port = b.rtp.local_addr().unwrap().port();
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n{line}"
    );
    b.send(proxy, &b.respond(&got, 200, Some(answer.into_bytes())))
        .await;
    let ok = a.recv_skip_trying().await;
    assert_eq!(ok.code(), Some(200));
    let back = String::from_utf8(ok.body.clone()).unwrap();
    assert!(
        back.contains(" RTP/AVP ") && !back.contains("a=crypto"),
        "plain toward the caller: {back}"
    );
    // A's plain RTP reaches B protected: same header, a 10-byte auth tag added.
    let pkt = rtp(0, 1, 0x0C0C_0C0C, 0x33);
    let (got, _) = send_until(&a.rtp, at(body_port(&ok)), &pkt, &b.rtp).await;
    assert_eq!(got.len(), pkt.len() + 10, "SRTP toward B");
    assert_eq!(got[..12], pkt[..12]);
    assert_ne!(got[12..pkt.len()], pkt[12..], "payload encrypted");
    let _ = to_b;
    relay.shutdown().await;
}

/// A TCP request the proxy answers itself (Max-Forwards 0 gets 483), to show a
/// connection is served.
async fn tcp_alive(a: &Ua, s: &mut tokio::net::TcpStream, branch: &str) {
    use tokio::io::AsyncWriteExt;
    let mut hop = a.request(
        "OPTIONS",
        "sip:x@127.0.0.1:9",
        &format!("call-{branch}"),
        1,
        branch,
        ("sip:x@127.0.0.1:9", None),
        &[],
        None,
    );
    hop.set_header(
        "Via",
        format!("SIP/2.0/TCP 127.0.0.1:{};branch=z9hG4bK{branch}", a.port()),
    );
    hop.set_header("Max-Forwards", "0".into());
    s.write_all(&hop.to_bytes()).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_tcp(s, &mut buf).await.code(), Some(483));
}

/// Waits for the proxy to close `s` (EOF), failing after `within`.
async fn closed_by_proxy(s: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 512];
    let n = tokio::time::timeout(within, s.read(&mut chunk))
        .await
        .expect("the proxy closes the connection in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed, nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    use tokio::net::TcpStream;
    let relay = relay_with(|c| {
        c.sip.listen = Some("127.0.0.1:0".parse().unwrap());
        c.sip.tcp.max_connections = 2;
        c.sip.tcp.idle = Duration::from_millis(700);
    })
    .await;
    let proxy = relay.sip.expect("the SIP front end is on");
    let a = Ua::new("ivan").await;
    let mut c1 = TcpStream::connect(proxy).await.unwrap();
    let mut c2 = TcpStream::connect(proxy).await.unwrap();
    tcp_alive(&a, &mut c1, "cap1").await;
    tcp_alive(&a, &mut c2, "cap2").await;
    // A third is over the cap: closed at once, long before the idle timeout.
    let mut c3 = TcpStream::connect(proxy).await.unwrap();
    closed_by_proxy(&mut c3, Duration::from_millis(400)).await;
    // Activity keeps a connection open past the idle time...
    tokio::time::sleep(Duration::from_millis(400)).await;
    tcp_alive(&a, &mut c1, "cap3").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    tcp_alive(&a, &mut c1, "cap4").await;
    // ...silence closes it, and that frees the slots.
    closed_by_proxy(&mut c2, Duration::from_secs(2)).await;
    closed_by_proxy(&mut c1, Duration::from_secs(2)).await;
    let mut c4 = TcpStream::connect(proxy).await.unwrap();
    tcp_alive(&a, &mut c4, "cap5").await;
    relay.shutdown().await;
}
