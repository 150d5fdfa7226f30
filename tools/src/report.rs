//! The load run's result: totals, loss, ordering and latency, as text or JSON.

use std::fmt;

use serde::Serialize;

use crate::accounting::{Latency, LatencySummary, RxStream};
use crate::load::LoadConfig;

/// Counters gathered from the threads besides the per-stream state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    pub sent_total: u64,
    pub send_errors: u64,
    pub misrouted: u64,
    pub foreign: u64,
    pub max_lag_ns: u64,
    pub corrupt: u64,
    pub srtp_errors: u64,
    pub srtp_streams: usize,
}

/// One direction of one call.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DirStats {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// RFC 3550 interarrival jitter at the end of the run, microseconds.
    pub jitter_us: f64,
}

/// Both directions of one call: A->B is stream 2i, B->A stream 2i+1.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallStats {
    pub call: usize,
    pub a_to_b: DirStats,
    pub b_to_a: DirStats,
}

fn dir(sent: u64, rx: &RxStream) -> DirStats {
    DirStats {
        sent,
        received: rx.unique,
        lost: rx.lost(sent),
        duplicates: rx.duplicates,
        reordered: rx.reordered,
        jitter_us: rx.jitter_ns / 1000.0,
    }
}

/// Summary of one load run; loss, ordering and latency cover packets sent after warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub calls: usize,
    pub streams: usize,
    pub pps_per_direction: u32,
    pub packet_len: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Every packet sent, warm-up included.
    pub sent_total: u64,
    pub send_errors: u64,
    /// Sent after warm-up.
    pub sent: u64,
    /// Unique packets received of those sent after warm-up.
    pub received: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Our packets that reached the wrong client socket.
    pub misrouted: u64,
    /// Datagrams that were not ours at all.
    pub foreign: u64,
    /// Plain packets whose payload was not what was sent.
    pub corrupt: u64,
    /// Streams sent as SRTP (their payload is checked by the auth tag and the fill).
    pub srtp_streams: usize,
    /// SRTP packets that did not authenticate.
    pub srtp_errors: u64,
    pub streams_with_loss: usize,
    /// Offered rate after warm-up, packets per second, all streams.
    pub offered_pps: f64,
    /// Largest delay of a send behind its schedule, microseconds (pacing quality).
    pub max_send_lag_us: f64,
    pub latency: LatencySummary,
    /// RFC 3550 jitter averaged over streams, and the largest, microseconds.
    pub jitter_mean_us: f64,
    pub jitter_max_us: f64,
    /// NG call setup, when the calls were placed over NG.
    pub setup: Option<crate::ng_calls::SetupStats>,
    pub per_call: Vec<CallStats>,
}

impl LoadReport {
    /// Combines per-stream sent counts (indexed by stream) with receive state.
    pub fn build(
        cfg: &LoadConfig,
        calls: usize,
        sent: &[u64],
        rx: &[RxStream],
        latency: &Latency,
        extra: Extra,
    ) -> LoadReport {
        let total_sent: u64 = sent.iter().sum();
        let received: u64 = rx.iter().map(|r| r.unique).sum();
        let lost: u64 = sent.iter().zip(rx).map(|(s, r)| r.lost(*s)).sum();
        let measured_s = cfg.duration.saturating_sub(cfg.warmup).as_secs_f64();
        LoadReport {
            calls,
            streams: sent.len(),
            pps_per_direction: cfg.pps,
            packet_len: crate::packet::RTP_HEADER + cfg.payload_len,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            sent_total: extra.sent_total,
            send_errors: extra.send_errors,
            sent: total_sent,
            received,
            lost,
            loss_pct: if total_sent == 0 {
                0.0
            } else {
                100.0 * lost as f64 / total_sent as f64
            },
            duplicates: rx.iter().map(|r| r.duplicates).sum(),
            reordered: rx.iter().map(|r| r.reordered).sum(),
            misrouted: extra.misrouted,
            foreign: extra.foreign,
            streams_with_loss: sent.iter().zip(rx).filter(|(s, r)| r.lost(**s) > 0).count(),
            offered_pps: if measured_s > 0.0 {
                total_sent as f64 / measured_s
            } else {
                0.0
            },
            max_send_lag_us: extra.max_lag_ns as f64 / 1000.0,
            latency: latency.summary_us(),
            corrupt: extra.corrupt,
            srtp_streams: extra.srtp_streams,
            srtp_errors: extra.srtp_errors,
            jitter_mean_us: if rx.is_empty() {
                0.0
            } else {
                rx.iter().map(|r| r.jitter_ns).sum::<f64>() / rx.len() as f64 / 1000.0
            },
            jitter_max_us: rx.iter().map(|r| r.jitter_ns).fold(0.0, f64::max) / 1000.0,
            setup: None,
            per_call: (0..sent.len() / 2)
                .map(|i| CallStats {
                    call: i,
                    a_to_b: dir(sent[2 * i], &rx[2 * i]),
                    b_to_a: dir(sent[2 * i + 1], &rx[2 * i + 1]),
                })
                .collect(),
        }
    }

    /// No loss, no duplicates, nothing misrouted, damaged or failing SRTP.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.misrouted == 0
            && self.corrupt == 0
            && self.srtp_errors == 0
            && self.send_errors == 0
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "calls {} ({} streams), {} pps/direction, {}-byte packets, {:.1}s ({:.1}s warm-up)",
            self.calls,
            self.streams,
            self.pps_per_direction,
            self.packet_len,
            self.duration_s,
            self.warmup_s
        )?;
        writeln!(
            f,
            "sent {} (measured {}, {:.0} pps offered, {} send errors, max send lag {:.0} us)",
            self.sent_total, self.sent, self.offered_pps, self.send_errors, self.max_send_lag_us
        )?;
        writeln!(
            f,
            "received {}  lost {} ({:.3}%, {} streams)  dup {}  reordered {}  misrouted {}  foreign {}  corrupt {}",
            self.received,
            self.lost,
            self.loss_pct,
            self.streams_with_loss,
            self.duplicates,
            self.reordered,
            self.misrouted,
            self.foreign,
            self.corrupt
        )?;
        if self.srtp_streams > 0 {
            writeln!(
                f,
                "srtp streams {}  srtp auth failures {}",
                self.srtp_streams, self.srtp_errors
            )?;
        }
        if let Some(s) = &self.setup {
            writeln!(
                f,
                "setup {} calls in {:.3}s ({:.0} calls/s, slowest {:.1} ms)",
                s.calls, s.seconds, s.calls_per_s, s.max_ms
            )?;
        }
        writeln!(
            f,
            "jitter us: mean {:.1}  max {:.1}",
            self.jitter_mean_us, self.jitter_max_us
        )?;
        let l = &self.latency;
        write!(
            f,
            "one-way latency us: min {:.1}  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1} ({} samples)",
            l.min_us, l.p50_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.samples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_from_streams() {
        let cfg = LoadConfig::default();
        let mut a = RxStream::new();
        for q in [1u16, 2, 4, 3, 3] {
            a.on_packet(q);
        }
        let mut b = RxStream::new();
        for q in [10u16, 11] {
            b.on_packet(q);
        }
        let mut lat = Latency::new();
        lat.record(1000);
        let r = LoadReport::build(&cfg, 1, &[5, 2], &[a, b], &lat, Extra::default());
        assert_eq!((r.sent, r.received, r.lost), (7, 6, 1));
        assert_eq!((r.duplicates, r.reordered, r.streams_with_loss), (1, 1, 1));
        assert!((r.loss_pct - 100.0 / 7.0).abs() < 1e-9);
        assert_eq!(r.packet_len, 172);
        let text = r.to_string();
        assert!(text.contains("lost 1"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["lost"], 1);
        assert_eq!(r.per_call.len(), 1);
        assert_eq!(r.per_call[0].a_to_b.lost, 1);
        assert_eq!(r.per_call[0].a_to_b.duplicates, 1);
        assert_eq!(r.per_call[0].b_to_a.received, 2);
        assert!(!r.clean());
    }
}
