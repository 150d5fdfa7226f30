//! A baresip phone on loopback, driven over its `ctrl_tcp` interface (netstring JSON
//! commands and events), with a sine tone as microphone; its `sndfile` module records
//! what it decoded, so the test can check the far end's tone arrived intact.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::Peer;

/// How a phone is set up.
#[derive(Debug, Clone, Default)]
pub struct PhoneOpts {
    /// baresip's `mediaenc` account parameter, e.g. `srtp-mand` for SDES on RTP/SAVP.
    pub mediaenc: Option<&'static str>,
    /// Send every request through this proxy (loose-routed outbound proxy).
    pub outbound: Option<std::net::SocketAddr>,
    /// The microphone's tone in Hz [default: 440].
    pub tone_hz: Option<u32>,
}

/// RTP packet counts baresip prints for the audio stream when a call closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpCounts {
    pub sent: u64,
    pub received: u64,
}

/// A running baresip with its control connection.
#[derive(Debug)]
pub struct Phone {
    pub name: String,
    pub sip_port: u16,
    pub tone_hz: u32,
    pub peer: Peer,
    pub dir: PathBuf,
    ctrl: TcpStream,
    inbox: Vec<u8>,
    events: Vec<Value>,
    token: u32,
}

impl Phone {
    /// Starts baresip as `name` on five ports from `base` (SIP UDP+TCP, TLS, control, and
    /// RTP from `base + 10` to `base + 19`), auto-answering incoming calls.
    pub fn start(name: &str, base: u16, opts: &PhoneOpts) -> Phone {
        let bin = crate::require("baresip", "baresip-core");
        let dir = crate::scratch_dir(name);
        let (sip, ctrl) = (base, base + 3);
        let tone_hz = opts.tone_hz.unwrap_or(440);
        // net_interface must be an address (`lo` fails); stereo 48 kHz is all ausine
        // produces; there is no player (the sndfile filter records the decoded audio).
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip}\n\
             net_interface 127.0.0.1\n\
             audio_source ausine,{tone_hz}\n\
             audio_alert aufile,/dev/null\n\
             ausrc_srate 48000\nausrc_channels 2\n\
             auplay_srate 48000\nauplay_channels 1\n\
             rtp_ports {r0}-{r1}\n\
             rtcp_mux no\n\
             rtp_stats yes\n\
             jitter_buffer_delay 1-10\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule ausine.so\nmodule aufile.so\nmodule srtp.so\n\
             module sndfile.so\nsnd_path {dir}\n\
             module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
             module_app rtcpsummary.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl}\n",
            dir = dir.display(),
            r0 = base + 10,
            r1 = base + 19,
        );
        std::fs::write(dir.join("config"), config).expect("write baresip config");
        let mut account = format!(
            "<sip:{name}@127.0.0.1:{sip};transport=udp>;regint=0;answermode=auto;audio_codecs=PCMU"
        );
        if let Some(enc) = opts.mediaenc {
            account.push_str(&format!(";mediaenc={enc}"));
        }
        if let Some(proxy) = opts.outbound {
            account.push_str(&format!(";outbound=\"sip:{proxy};lr\""));
        }
        std::fs::write(dir.join("accounts"), account + "\n").expect("write accounts");
        let mut cmd = Command::new(bin);
        cmd.arg("-f").arg(&dir);
        let mut peer = Peer::spawn(name, cmd, &dir.join("baresip.log"));
        peer.wait_log("baresip is ready", Duration::from_secs(10));
        let ctrl = TcpStream::connect(("127.0.0.1", ctrl))
            .unwrap_or_else(|e| panic!("{name}: ctrl_tcp on {ctrl}: {e}\n{}", peer.tail(20)));
        ctrl.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Phone {
            name: name.to_owned(),
            sip_port: sip,
            tone_hz,
            peer,
            dir,
            ctrl,
            inbox: Vec::new(),
            events: Vec::new(),
            token: 0,
        }
    }

    /// This phone's address for a request-URI.
    pub fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.name, self.sip_port)
    }

    /// Runs a menu command (`dial`, `hangup`, `hold`, `resume`, `callstat`) and returns
    /// its output; panics if baresip refuses it.
    pub fn command(&mut self, command: &str, params: &str) -> String {
        self.token += 1;
        let token = format!("t{}", self.token);
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{body},", body.len());
        self.ctrl.write_all(frame.as_bytes()).expect("ctrl write");
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            self.pump();
            let at = self
                .events
                .iter()
                .position(|m| m["response"] == true && m["token"] == token.as_str());
            if let Some(i) = at {
                let m = self.events.remove(i);
                assert!(
                    m["ok"] == true,
                    "{}: `{command} {params}` failed: {m}\n{}",
                    self.name,
                    self.peer.tail(20)
                );
                return m["data"].as_str().unwrap_or_default().to_owned();
            }
        }
        panic!(
            "{}: no reply to `{command}`\n{}",
            self.name,
            self.peer.tail(20)
        )
    }

    /// Waits for an event of `kind` (e.g. `CALL_ESTABLISHED`) and returns it.
    pub fn wait_event(&mut self, kind: &str, limit: Duration) -> Value {
        let end = Instant::now() + limit;
        loop {
            self.pump();
            if let Some(i) = self
                .events
                .iter()
                .position(|m| m["event"] == true && m["type"] == kind)
            {
                return self.events.remove(i);
            }
            if Instant::now() >= end {
                panic!(
                    "{}: no {kind} within {limit:?}; events seen: {:?}\n{}",
                    self.name,
                    self.events,
                    self.peer.tail(30)
                );
            }
        }
    }

    /// Drops the events seen so far (e.g. the call setup's), so a later wait sees
    /// only what follows.
    pub fn forget_events(&mut self) {
        self.pump();
        self.events.clear();
    }

    /// Reads what the control socket has and splits it into netstring frames.
    fn pump(&mut self) {
        let mut buf = [0u8; 16_384];
        match self.ctrl.read(&mut buf) {
            Ok(0) => panic!(
                "{}: control connection closed\n{}",
                self.name,
                self.peer.tail(20)
            ),
            Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
            Err(_) => return,
        }
        while let Some(colon) = self.inbox.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(&self.inbox[..colon])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                panic!("{}: bad netstring from ctrl_tcp", self.name);
            };
            if self.inbox.len() < colon + 1 + len + 1 {
                return;
            }
            let msg = serde_json::from_slice(&self.inbox[colon + 1..colon + 1 + len])
                .expect("ctrl_tcp sends JSON");
            self.events.push(msg);
            self.inbox.drain(..colon + 1 + len + 1);
        }
    }

    /// The audio RTP counts baresip printed when the call closed (its own socket
    /// counters, `packets:  <tx>  <rx>`).
    pub fn closed_call_counts(&mut self) -> RtpCounts {
        let name = self.name.clone();
        let peer = &mut self.peer;
        peer.wait_log("\nerrors:", Duration::from_secs(5));
        let log = peer.log();
        let line = log
            .lines()
            .rfind(|l| l.starts_with("packets:"))
            .unwrap_or_else(|| panic!("{name}: no RTP stats on hangup\n{}", peer.tail(20)));
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(n.len(), 2, "{name}: unexpected stats line {line:?}");
        RtpCounts {
            sent: n[0],
            received: n[1],
        }
    }
}

impl Phone {
    /// The share of the decoded audio's energy at `hz` over the middle half of the
    /// call (Goertzel): near 1 for a clean tone, near 0 for silence or noise. Reads the
    /// `dump-*-dec.wav` that baresip's sndfile module completes when the call closes.
    pub fn heard_tone(&self, hz: u32) -> f64 {
        let samples = crate::wait_for(Duration::from_secs(3), || {
            let wav = std::fs::read_dir(&self.dir)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-dec.wav"))?;
            let mut reader = hound::WavReader::open(&wav).ok()?;
            let rate = reader.spec().sample_rate;
            let s: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>().ok()?;
            // Half a second at least; a held phone stops recording at hold.
            (s.len() > rate as usize / 2).then_some((s, rate))
        });
        let Some((samples, rate)) = samples else {
            panic!(
                "{}: no decoded-audio recording\n{}",
                self.name,
                self.peer.tail(20)
            );
        };
        let mid = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let mut energy = 0.0f64;
        for &x in mid {
            let x = f64::from(x);
            let s0 = x + c * s1 - s2;
            s2 = s1;
            s1 = s0;
            energy += x * x;
        }
        let power = s1 * s1 + s2 * s2 - c * s1 * s2;
        // A pure tone of N samples gives power = energy * N / 2.
        if energy == 0.0 {
            return 0.0;
        }
        power / (energy * mid.len() as f64 / 2.0)
    }
}
