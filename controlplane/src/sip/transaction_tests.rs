//! Timers in virtual time: `now` is an `Instant` the tests advance by hand.
use super::*;

const MS: Duration = Duration::from_millis(1);

/// Polls every millisecond over `span`, recording (offset ms, fire).
fn run_client(tx: &mut ClientTx, t0: Instant, span: Duration) -> Vec<(u128, Fire)> {
    let mut fired = Vec::new();
    let mut t = Duration::ZERO;
    while t <= span {
        while let Some(f) = tx.poll(t0 + t) {
            fired.push((t.as_millis(), f));
            if f != Fire::Retransmit {
                return fired;
            }
        }
        t += MS;
    }
    fired
}

#[test]
fn timer_a_doubles_until_timer_b() {
    let t0 = Instant::now();
    let mut tx = ClientTx::new(true, false, Timers::default(), t0);
    let fired = run_client(&mut tx, t0, Duration::from_secs(40));
    let at: Vec<u128> = fired.iter().map(|(t, _)| *t).collect();
    // A at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B at 64*T1 = 32 s.
    assert_eq!(at, [500, 1500, 3500, 7500, 15500, 31500, 32000]);
    assert_eq!(fired.last().unwrap().1, Fire::Timeout);
}

#[test]
fn timer_e_caps_at_t2_and_f_times_out() {
    let t0 = Instant::now();
    let mut tx = ClientTx::new(false, false, Timers::default(), t0);
    let fired = run_client(&mut tx, t0, Duration::from_secs(40));
    let at: Vec<u128> = fired.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        at,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000
        ]
    );
    assert_eq!(fired.last().unwrap().1, Fire::Timeout);
}

#[test]
fn reliable_transport_has_no_retransmissions() {
    let t0 = Instant::now();
    let mut tx = ClientTx::new(true, true, Timers::default(), t0);
    let fired = run_client(&mut tx, t0, Duration::from_secs(40));
    assert_eq!(fired, [(32000, Fire::Timeout)]);
}

#[test]
fn provisional_stops_a_and_starts_c() {
    let t0 = Instant::now();
    let t = Timers::default();
    let mut tx = ClientTx::new(true, false, t, t0);
    assert_eq!(tx.on_response(100, t0 + 100 * MS), Verdict::Forward);
    assert_eq!(tx.state, ClientState::Proceeding);
    assert_eq!(tx.poll(t0 + Duration::from_secs(60)), None, "no A, no B");
    assert_eq!(tx.next_wakeup(), t0 + 100 * MS + t.c);
    assert_eq!(tx.poll(t0 + 100 * MS + t.c), Some(Fire::Timeout), "Timer C");
}

#[test]
fn final_failure_is_acked_and_its_retransmits_absorbed_until_d() {
    let t0 = Instant::now();
    let mut tx = ClientTx::new(true, false, Timers::default(), t0);
    assert_eq!(tx.on_response(486, t0 + MS), Verdict::ForwardAndAck);
    assert_eq!(
        tx.on_response(486, t0 + 2 * MS),
        Verdict::Absorb { resend_ack: true }
    );
    assert_eq!(tx.poll(t0 + Duration::from_secs(31)), None);
    assert_eq!(
        tx.poll(t0 + MS + Duration::from_secs(32)),
        Some(Fire::Terminated),
        "Timer D"
    );
}

#[test]
fn accepted_passes_2xx_retransmissions_until_m() {
    let t0 = Instant::now();
    let mut tx = ClientTx::new(true, false, Timers::default(), t0);
    assert_eq!(tx.on_response(200, t0), Verdict::Forward);
    assert_eq!(tx.on_response(200, t0 + MS), Verdict::Forward);
    assert_eq!(
        tx.on_response(180, t0 + MS),
        Verdict::Absorb { resend_ack: false }
    );
    assert_eq!(
        tx.poll(t0 + Duration::from_secs(32)),
        Some(Fire::Terminated),
        "Timer M"
    );
}

#[test]
fn non_invite_completed_lingers_for_k() {
    let t0 = Instant::now();
    let mut tx = ClientTx::new(false, false, Timers::default(), t0);
    assert_eq!(tx.on_response(200, t0), Verdict::Forward);
    assert_eq!(
        tx.on_response(200, t0),
        Verdict::Absorb { resend_ack: false }
    );
    assert_eq!(tx.poll(t0 + Duration::from_millis(4999)), None);
    assert_eq!(
        tx.poll(t0 + Duration::from_secs(5)),
        Some(Fire::Terminated),
        "Timer K"
    );
}

#[test]
fn server_invite_failure_retransmits_g_until_ack_then_i() {
    let t0 = Instant::now();
    let mut tx = ServerTx::new(true, false, Timers::default());
    assert!(tx.on_retransmit(), "proceeding: resend the provisional");
    tx.on_send(404, t0);
    let mut at = Vec::new();
    for ms in 0..=4000u32 {
        if tx.poll(t0 + ms * MS) == Some(Fire::Retransmit) {
            at.push(ms);
        }
    }
    assert_eq!(at, [500, 1500, 3500], "G doubles, capped at T2");
    tx.on_ack(t0 + Duration::from_secs(4));
    assert_eq!(tx.state, ServerState::Confirmed);
    assert!(
        !tx.on_retransmit(),
        "ACK retransmissions are absorbed silently"
    );
    assert_eq!(tx.poll(t0 + Duration::from_millis(8999)), None);
    assert_eq!(
        tx.poll(t0 + Duration::from_secs(9)),
        Some(Fire::Terminated),
        "Timer I"
    );
}

#[test]
fn server_invite_without_ack_ends_at_h() {
    let t0 = Instant::now();
    let mut tx = ServerTx::new(true, false, Timers::default());
    tx.on_send(500, t0);
    let mut t = t0;
    let end = loop {
        match tx.poll(t) {
            Some(Fire::Terminated) => break t,
            _ => t += MS,
        }
    };
    assert_eq!(end - t0, Duration::from_secs(32), "Timer H");
}

#[test]
fn server_invite_2xx_absorbs_retransmits_until_l() {
    let t0 = Instant::now();
    let mut tx = ServerTx::new(true, false, Timers::default());
    tx.on_send(180, t0);
    assert_eq!(tx.state, ServerState::Proceeding);
    tx.on_send(200, t0);
    assert!(
        !tx.on_retransmit(),
        "Accepted: the 2xx is the UAS's to repeat"
    );
    assert_eq!(tx.next_wakeup(), Some(t0 + Duration::from_secs(32)));
}

#[test]
fn server_non_invite_j_depends_on_transport() {
    let t0 = Instant::now();
    let mut udp = ServerTx::new(false, false, Timers::default());
    udp.on_send(200, t0);
    assert!(udp.on_retransmit());
    assert_eq!(udp.poll(t0 + Duration::from_millis(31_999)), None);
    assert_eq!(
        udp.poll(t0 + Duration::from_secs(32)),
        Some(Fire::Terminated),
        "Timer J"
    );
    let mut tcp = ServerTx::new(false, true, Timers::default());
    tcp.on_send(200, t0);
    assert_eq!(tcp.poll(t0), Some(Fire::Terminated), "J is zero on TCP");
}
