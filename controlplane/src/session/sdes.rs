//! SDES-SRTP (RFC 4568) terminated at the relay: each party keys its own leg with
//! the relay, so the relay decrypts what a party sends with that party's key and
//! encrypts what it forwards with its own key for the other leg. Keys never pass
//! from one party to the other, and none is ever logged (`MasterKey`'s `Debug` is
//! redacted; error texts name tags and suites only).
//!
//! ```text
//!   X (offerer)                    relay                      Y (answerer)
//!   a=crypto X's keys  --offer-->  parse, pick suite   --->   a=crypto relay keys (sy),
//!                                                             one per enabled suite
//!   a=crypto relay key <--answer-- Y's tag -> suite     <---  a=crypto Y's key
//!   (sx), one line               X's line -> X's key
//! ```
//!
//! A key's lifetime (`|2^31`) is accepted but not enforced beyond SRTP's own index
//! limits (the context refuses to wrap its packet index); MKIs are refused.

use ferrelay_engine::CryptoSpec;
use ferrelay_sdp::{Crypto, Media, Proto};
use ferrelay_srtp::{MasterKey, SrtpParams, Suite};

use super::flags::eq_norm;

/// Replay window of every SRTP context the relay asks for (RFC 3711 §3.3.2: >= 64).
const REPLAY_WINDOW: u16 = 128;

/// rtpengine's `SDES-*` options: which suites the relay offers and accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdesFlags {
    /// `SDES-off`: the relay does no SDES; SRTP on both legs passes through opaque.
    pub off: bool,
    /// `SDES-no-<suite>`: bit `i` excludes `Suite::NEGOTIABLE[i]`.
    no: u8,
    /// `SDES-only-<suite>`: when non-zero, only these bits are enabled.
    only: u8,
}

impl SdesFlags {
    /// Applies one word of the `SDES` list (or a flag word after `SDES-`), already
    /// in `norm` form; unknown words and suites are ignored, as rtpengine does.
    pub fn word(&mut self, w: &str) {
        if matches!(w, "off" | "no" | "disable") {
            self.off = true;
        } else if let Some(s) = w.strip_prefix("no ") {
            self.no |= bit(s);
        } else if let Some(s) = w.strip_prefix("only ") {
            self.only |= bit(s);
        }
    }

    fn allows(&self, s: Suite) -> bool {
        let b = bit_of(s);
        self.no & b == 0 && (self.only == 0 || self.only & b != 0)
    }

    /// The suites offers list, in the relay's order of preference.
    pub fn enabled(&self) -> impl Iterator<Item = Suite> + '_ {
        Suite::NEGOTIABLE.into_iter().filter(|s| self.allows(*s))
    }
}

fn bit_of(s: Suite) -> u8 {
    Suite::NEGOTIABLE
        .iter()
        .position(|n| *n == s)
        .map_or(0, |i| 1 << i)
}

/// The bit of the suite named `name` (in `norm` form); 0 when unknown.
fn bit(name: &str) -> u8 {
    Suite::NEGOTIABLE
        .into_iter()
        .find(|s| eq_norm(s.sdes_name().as_bytes(), name.as_bytes()))
        .map_or(0, bit_of)
}

/// How a party's leg is keyed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Keying {
    /// Plain RTP.
    #[default]
    Plain,
    /// SRTP keyed by SDES with the relay.
    Sdes,
    /// SRTP whose keys travel end to end (`SDES-off`); forwarded untouched.
    Opaque,
}

/// One key line a party offered and the relay can use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartyLine {
    tag: u32,
    suite: Suite,
    key: MasterKey,
}

/// The SDES state of one side (one party, one m= line).
#[derive(Debug, Clone, Default)]
pub struct SideCrypto {
    pub keying: Keying,
    /// The relay's master key per suite on this leg; kept across re-offers so a
    /// re-INVITE with the same crypto does not re-key.
    relay_keys: Vec<(Suite, MasterKey)>,
    /// The `(tag, suite)` lines of the relay's last offer to this party.
    offered: Vec<(u32, Suite)>,
    /// This party's own offer: the line the relay will answer (applied at the answer).
    pending: Option<PartyLine>,
    /// In force: the suite, the tag it was agreed under, and the party's key.
    agreed: Option<PartyLine>,
}

impl SideCrypto {
    /// Plain RTP with no keys: what a side without SDES state reads as.
    pub const PLAIN: SideCrypto = SideCrypto {
        keying: Keying::Plain,
        relay_keys: Vec::new(),
        offered: Vec::new(),
        pending: None,
        agreed: None,
    };

    /// Nothing to keep: plain RTP and no key made or learnt.
    pub fn is_plain(&self) -> bool {
        self.keying == Keying::Plain
            && self.relay_keys.is_empty()
            && self.offered.is_empty()
            && self.pending.is_none()
            && self.agreed.is_none()
    }

    /// The relay's key for `suite` on this leg, made from the OS CSPRNG when new.
    fn relay_key(&mut self, suite: Suite) -> Result<MasterKey, String> {
        if let Some((_, k)) = self.relay_keys.iter().find(|(s, _)| *s == suite) {
            return Ok(k.clone());
        }
        let mut buf = [0u8; 46];
        let len = suite.key_len() + suite.salt_len();
        getrandom::fill(&mut buf[..len])
            .map_err(|e| format!("no randomness for SRTP keys: {e}"))?;
        let k = MasterKey::from_concatenated(suite, &buf[..len])
            .map_err(|e| format!("SRTP key: {e}"))?;
        self.relay_keys.push((suite, k.clone()));
        Ok(k)
    }

    fn set_keying(&mut self, k: Keying) {
        if self.keying != k {
            self.offered.clear();
            self.pending = None;
            self.agreed = None;
        }
        self.keying = k;
    }

    /// What the party sends with, when agreed: decrypts what arrives on this side.
    fn party_params(&self) -> Option<SrtpParams> {
        self.agreed.as_ref().map(|l| SrtpParams {
            suite: l.suite,
            key: l.key.clone(),
            replay_window: REPLAY_WINDOW,
        })
    }

    /// The relay's agreed key toward this party: encrypts what is sent to it.
    fn relay_params(&self) -> Option<SrtpParams> {
        let suite = self.agreed.as_ref()?.suite;
        let (_, key) = self.relay_keys.iter().find(|(s, _)| *s == suite)?;
        Some(SrtpParams {
            suite,
            key: key.clone(),
            replay_window: REPLAY_WINDOW,
        })
    }
}

/// The transform of flows on side `from` forwarding to side `to`; `None` while a
/// leg's keys are not agreed yet (the flows then drop rather than pass ciphertext
/// to a plain party, or plaintext to an SRTP one).
pub fn spec(from: &SideCrypto, to: &SideCrypto) -> Option<CryptoSpec> {
    let decrypt = match from.keying {
        Keying::Sdes => Some(from.party_params()?),
        Keying::Plain | Keying::Opaque => None,
    };
    let encrypt = match to.keying {
        Keying::Sdes => Some(to.relay_params()?),
        Keying::Plain | Keying::Opaque => None,
    };
    Some(CryptoSpec { decrypt, encrypt })
}

/// How an m= line's a=crypto lines and protocol change on their way out.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// `None`: leave the a=crypto lines as they are.
    pub crypto: Option<Vec<Crypto>>,
    pub proto: Option<Proto>,
}

impl Edit {
    pub fn apply(self, m: &mut Media) {
        if m.is_rejected() {
            return;
        }
        if let Some(p) = self.proto {
            m.set_proto(p);
        }
        match self.crypto {
            Some(c) if c.is_empty() => m.remove_crypto(),
            Some(c) => m.set_crypto(c),
            None => {}
        }
    }
}

/// Why one offered a=crypto line cannot be used, or its key.
fn usable(c: &Crypto, flags: &SdesFlags) -> Result<PartyLine, String> {
    let what = |why: &dyn std::fmt::Display| format!("a=crypto:{} {}: {why}", c.tag, c.suite);
    let suite = Suite::from_sdes_name(&c.suite)
        .filter(|s| *s != Suite::Null)
        .ok_or_else(|| what(&"unsupported suite"))?;
    if !flags.allows(suite) {
        return Err(what(&"disabled by SDES flags"));
    }
    // RFC 4568 §6.3: session parameters the relay cannot honour make the line
    // unusable; a window size hint is only a hint (§6.3.7).
    if let Some(p) = c.session_params.iter().find(|p| !p.starts_with("WSH=")) {
        return Err(what(&format_args!(
            "session parameter {p} is not supported"
        )));
    }
    if c.keys.len() != 1 {
        return Err(what(&"exactly one inline key is supported"));
    }
    let k = c
        .inline_key()
        .ok_or_else(|| what(&"no inline key (RFC 4568 §6.1)"))?;
    // The lifetime is accepted but not enforced (see the module docs).
    let key = MasterKey::from_sdes(suite, &k.key_salt, k.mki.is_some()).map_err(|e| what(&e))?;
    Ok(PartyLine {
        tag: c.tag,
        suite,
        key,
    })
}

/// RFC 4568 §7.1.1: the answer picks one of the offered lines; the relay picks
/// the first it supports and the flags allow.
fn first_usable(m: &Media, flags: &SdesFlags) -> Result<PartyLine, String> {
    let mut why = Vec::new();
    for c in m.crypto() {
        match usable(c, flags) {
            Ok(l) => return Ok(l),
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        why.push("no a=crypto line".into());
    }
    Err(format!(
        "No usable SDES crypto in the offer: {}",
        why.join("; ")
    ))
}

/// The offer on one m= line: learns the offerer's (`sx`) keys, makes the relay's
/// keys for the answerer (`sy`), and says how the line is rewritten for the answerer.
pub fn offer(
    sx: &mut SideCrypto,
    sy: &mut SideCrypto,
    m: &Media,
    want: Option<&Proto>,
    flags: &SdesFlags,
) -> Result<Edit, String> {
    let p = m.proto();
    if m.is_rejected() || !p.is_rtp() {
        return Ok(Edit::default());
    }
    let x_srtp = p.is_srtp();
    let y_srtp = want.map_or(x_srtp, Proto::is_srtp);
    if flags.off {
        if x_srtp != y_srtp {
            return Err(format!(
                "Translating {p} needs SDES keys, but SDES is off for this call"
            ));
        }
        let k = if x_srtp {
            Keying::Opaque
        } else {
            Keying::Plain
        };
        sx.set_keying(k);
        sy.set_keying(k);
        return Ok(Edit::default());
    }
    // Everything that can refuse the offer is checked before any state changes,
    // so a refused re-offer leaves the call as it was.
    let pick = if x_srtp {
        Some(first_usable(m, flags)?)
    } else {
        None
    };
    if y_srtp && flags.enabled().next().is_none() {
        return Err("The SDES flags leave no SRTP suite to offer".into());
    }
    sx.set_keying(if x_srtp { Keying::Sdes } else { Keying::Plain });
    sy.set_keying(if y_srtp { Keying::Sdes } else { Keying::Plain });
    if let Some(pick) = pick {
        sx.relay_key(pick.suite)?;
        sx.pending = Some(pick);
    }
    if !y_srtp {
        return Ok(Edit {
            crypto: x_srtp.then(Vec::new),
            proto: None,
        });
    }
    let mut lines = Vec::new();
    sy.offered.clear();
    for (i, suite) in flags.enabled().enumerate() {
        let tag = i as u32 + 1;
        let key = sy.relay_key(suite)?;
        sy.offered.push((tag, suite));
        lines.push(Crypto::new_inline(
            tag,
            suite.sdes_name(),
            key.concatenated().to_vec(),
        ));
    }
    Ok(Edit {
        crypto: Some(lines),
        proto: None,
    })
}

/// The answer on one m= line: learns the answerer's (`sy`) chosen line and key,
/// puts the offerer's (`sx`) agreed line in force, and says how the line is
/// rewritten for the offerer (`x_proto`: what the offerer spoke).
pub fn answer(
    sx: &mut SideCrypto,
    sy: &mut SideCrypto,
    m: &Media,
    x_proto: &Proto,
) -> Result<Edit, String> {
    let p = m.proto();
    if m.is_rejected() || !p.is_rtp() {
        return Ok(Edit::default());
    }
    match (sy.keying, p.is_srtp()) {
        (Keying::Opaque, _) => return Ok(Edit::default()),
        // Nothing to translate: the answer goes back as it came (rewritten elsewhere).
        (Keying::Plain, false) if sx.keying == Keying::Plain => return Ok(Edit::default()),
        (Keying::Plain, false) => {}
        (Keying::Plain, true) => {
            return Err(format!(
                "The answer is {p}, but the offer to it was plain RTP"
            ));
        }
        (Keying::Sdes, false) => {
            return Err(format!("The answer is {p}, but SRTP (SDES) was offered"));
        }
        (Keying::Sdes, true) => {
            let c = m
                .crypto()
                .next()
                .ok_or("The SRTP answer has no a=crypto line")?;
            let &(_, suite) = sy
                .offered
                .iter()
                .find(|(t, _)| *t == c.tag)
                .ok_or_else(|| format!("The answer's a=crypto tag {} was not offered", c.tag))?;
            if Suite::from_sdes_name(&c.suite) != Some(suite) {
                return Err(format!(
                    "The answer's a=crypto:{} names {}, but {} was offered under that tag",
                    c.tag,
                    c.suite,
                    suite.sdes_name()
                ));
            }
            let only = SdesFlags {
                only: bit_of(suite),
                ..SdesFlags::default()
            };
            let line = usable(c, &only).map_err(|e| format!("The answer's {e}"))?;
            sy.agreed = Some(line);
        }
    }
    let crypto = match sx.keying {
        Keying::Sdes => {
            // A second answer (183, then 200) repeats what is in force.
            let line = sx
                .pending
                .take()
                .or_else(|| sx.agreed.clone())
                .ok_or("No SDES crypto is pending from the offer")?;
            let key = sx.relay_key(line.suite)?;
            let out =
                Crypto::new_inline(line.tag, line.suite.sdes_name(), key.concatenated().into());
            sx.agreed = Some(line);
            vec![out]
        }
        Keying::Plain | Keying::Opaque => Vec::new(),
    };
    Ok(Edit {
        crypto: Some(crypto),
        proto: Some(x_proto.clone()),
    })
}
