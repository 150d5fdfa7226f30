//! The text log line: the line tracing-subscriber's default formatter writes
//! (`2026-11-23T14:07:53.123456Z  INFO call created call_id=a1 reason="deleted"`),
//! at a fraction of its cost, and with the control characters of every value
//! escaped.
//!
//! Why by hand: the default formatter converts the whole RFC 3339 timestamp
//! (a calendar conversion) and writes every field through `write!` on every
//! line. At the NG rates the relay serves, its two info lines per call were
//! 7 % of the whole process's CPU (perf, session 6). This formatter converts the
//! date once a second per thread (with the `time` crate), writes strings and
//! integers directly, and escapes control characters in every value, not only
//! in the message, so that a call-id or tag from the network cannot forge or
//! colour a log line.
//!
//! Events only: the relay opens no spans, so none are written.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The text event format; `ansi` colours the level and the field names.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFormat {
    ansi: bool,
}

impl TextFormat {
    pub fn new(ansi: bool) -> Self {
        Self { ansi }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        write_timestamp(&mut w, since_epoch)?;
        w.write_str(level(event.metadata().level(), self.ansi))?;
        let mut fields = Fields {
            w: &mut w,
            ansi: self.ansi,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_char('\n')
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of the second the thread last logged in.
struct Stamp {
    secs: u64,
    prefix: String,
}

thread_local! {
    static STAMP: RefCell<Stamp> = const {
        RefCell::new(Stamp { secs: u64::MAX, prefix: String::new() })
    };
}

/// Writes `since_epoch` as RFC 3339 UTC with microseconds and a space, as the
/// default formatter's `SystemTime` timer does.
fn write_timestamp(w: &mut impl Write, since_epoch: Duration) -> fmt::Result {
    let secs = since_epoch.as_secs();
    STAMP.with_borrow_mut(|s| {
        if s.secs != secs {
            s.secs = secs;
            s.prefix.clear();
            date_prefix(&mut s.prefix, secs)?;
        }
        w.write_str(&s.prefix)
    })?;
    let mut micros = since_epoch.subsec_micros();
    let mut digits = *b"000000Z ";
    for d in digits[..6].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    // Only ASCII digits and "Z " were written.
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

fn date_prefix(out: &mut String, secs: u64) -> fmt::Result {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    match t {
        Some(t) => write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        // Beyond year 9999: the seconds since the epoch still order the lines.
        None => write!(out, "@{secs}."),
    }
}

/// The level padded to five columns and a space, as the default writes it.
fn level(level: &Level, ansi: bool) -> &'static str {
    match (*level, ansi) {
        (Level::TRACE, false) => "TRACE ",
        (Level::DEBUG, false) => "DEBUG ",
        (Level::INFO, false) => " INFO ",
        (Level::WARN, false) => " WARN ",
        (Level::ERROR, false) => "ERROR ",
        (Level::TRACE, true) => "\x1b[35mTRACE\x1b[0m ",
        (Level::DEBUG, true) => "\x1b[34mDEBUG\x1b[0m ",
        (Level::INFO, true) => "\x1b[32m INFO\x1b[0m ",
        (Level::WARN, true) => "\x1b[33m WARN\x1b[0m ",
        (Level::ERROR, true) => "\x1b[31mERROR\x1b[0m ",
    }
}

/// Writes the message, then ` name=value` for each field.
struct Fields<'a, W> {
    w: &'a mut W,
    ansi: bool,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    /// Writes the separator and `name=` (nothing for the message); false for a
    /// field not to write.
    fn name(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        let name = field.name();
        // The `log` crate's metadata, bridged by tracing-log: the default
        // formatter leaves it out too.
        if name.starts_with("log.") {
            return false;
        }
        if !self.first {
            self.result = self.w.write_char(' ');
        }
        self.first = false;
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self.result.and_then(|()| {
                if self.ansi {
                    write!(self.w, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")
                } else {
                    self.w.write_str(name)?;
                    self.w.write_char('=')
                }
            });
        }
        self.result.is_ok()
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.name(field) {
            return;
        }
        self.result = if field.name() == "message" {
            Escaping(self.w).write_str(value)
        } else if value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            // What `{:?}` writes for such a string, without its per-char escape.
            self.w.write_char('"').and_then(|()| {
                self.w.write_str(value)?;
                self.w.write_char('"')
            })
        } else {
            // `{:?}` escapes quotes, backslashes and every control character.
            write!(self.w, "{value:?}")
        };
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.name(field) {
            self.result = self.w.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.name(field) {
            self.result = self.w.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.name(field) {
            self.result = self.w.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.name(field) {
            self.result = write!(Escaping(self.w), "{value}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.name(field) {
            self.result = write!(Escaping(self.w), "{value:?}");
        }
    }
}

/// Passes text through with each control character written as an escape:
/// C0 and DEL as `\xNN`, C1 as `\u{NN}`.
struct Escaping<'a, W>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // 0xc2 leads every UTF-8 encoding of U+0080..=U+00BF, C1 among them.
        if s.bytes().all(|b| b >= 0x20 && b != 0x7f && b != 0xc2) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match u32::from(c) {
                n @ (0..=0x1f | 0x7f) => write!(self.0, "\\x{n:02x}")?,
                n @ 0x80..=0x9f => write!(self.0, "\\u{{{n:x}}}")?,
                _ => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// The lines `emit` logs, through this format (or the default one).
    fn lines(ours: bool, ansi: bool, emit: impl Fn()) -> String {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_max_level(Level::TRACE)
            .with_target(false)
            .with_ansi(ansi);
        if ours {
            let sub = builder.event_format(TextFormat::new(ansi)).finish();
            tracing::subscriber::with_default(sub, &emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), &emit);
        }
        buf.text()
    }

    /// The line without its timestamp (up to the first space).
    fn body(line: &str) -> &str {
        line.split_once(' ').unwrap().1
    }

    fn stamp(d: Duration) -> String {
        let mut s = String::new();
        write_timestamp(&mut s, d).unwrap();
        s
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(stamp(Duration::ZERO), "1970-01-01T00:00:00.000000Z ");
        let t = Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(stamp(t), "2023-11-14T22:13:20.123456Z ");
        // The cached date moves on with the second, and at midnight with the day.
        let t = Duration::new(1_700_006_399, 999_999_000);
        assert_eq!(stamp(t), "2023-11-14T23:59:59.999999Z ");
        let t = Duration::new(1_700_006_400, 1_000);
        assert_eq!(stamp(t), "2023-11-15T00:00:00.000001Z ");
        // 2024 is a leap year.
        let t = Duration::new(1_709_164_800, 0);
        assert_eq!(stamp(t), "2024-02-29T00:00:00.000000Z ");
        assert_eq!(
            stamp(Duration::new(1_709_164_800, 5_000)),
            "2024-02-29T00:00:00.000005Z "
        );
    }

    #[test]
    fn timestamp_matches_the_clock() {
        let out = lines(true, false, || tracing::info!("x"));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let t = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64).unwrap();
        let date = format!("{:04}-{:02}-{:02}T", t.year(), u8::from(t.month()), t.day());
        // Not at the stroke of midnight UTC, the date is today's.
        if t.hour() != 0 || t.minute() != 0 {
            assert!(out.starts_with(&date), "{out} vs {date}");
        }
        assert_eq!(
            out.len(),
            "2026-11-23T14:07:53.123456Z  INFO x\n".len(),
            "{out}"
        );
    }

    #[test]
    fn lines_match_the_default_format() {
        let emit = || {
            let call_id = "a1b2@host";
            tracing::info!(call_id = %call_id, from_tag = %"ft", "call created");
            tracing::info!(
                call_id = %call_id,
                reason = "deleted",
                answered = true,
                seconds = 12u64,
                packets = 3400u64,
                delta = -3i64,
                "call ended"
            );
            tracing::warn!(port = 30000u16, error = %"Address in use", "closing failed");
            tracing::error!("cannot listen: {}", "denied");
            tracing::debug!(tag = ?Some("x"), "re-offer");
            tracing::trace!(r#type = "offer", "raw name");
            tracing::info!(n = 7u64);
        };
        let ours = lines(true, false, emit);
        let theirs = lines(false, false, emit);
        assert_eq!(ours.lines().count(), 7, "{ours}");
        assert_eq!(theirs.lines().count(), 7, "{theirs}");
        for (a, b) in ours.lines().zip(theirs.lines()) {
            assert_eq!(body(a), body(b));
        }
        assert!(ours.contains(
            " INFO call ended call_id=a1b2@host reason=\"deleted\" answered=true \
             seconds=12 packets=3400 delta=-3\n"
        ));
    }

    #[test]
    fn control_characters_in_any_value_are_escaped() {
        let out = lines(true, false, || {
            let evil = "x\n2026-01-01T00:00:00.000000Z ERROR forged\x1b[31m\u{9b}";
            tracing::info!(call_id = %evil, tag = evil, "created {}", evil);
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains(
                "created x\\x0a2026-01-01T00:00:00.000000Z ERROR forged\\x1b[31m\\u{9b} \
                 call_id=x\\x0a2026"
            ),
            "{out}"
        );
        // A string field is quoted and escaped as `{:?}` does.
        assert!(out.contains("tag=\"x\\n2026"), "{out}");
        assert!(out.contains("forged\\u{1b}[31m\\u{9b}\"\n"), "{out}");
        // Other characters beyond ASCII pass through.
        let out = lines(true, false, || tracing::info!(user = %"Zoë ¿", "ok"));
        assert!(out.ends_with(" INFO ok user=Zoë ¿\n"), "{out}");
    }

    #[test]
    fn ansi_colours_only_level_and_names() {
        let out = lines(true, true, || tracing::warn!(port = 1u64, "busy"));
        assert!(
            out.ends_with(" \x1b[33m WARN\x1b[0m busy \x1b[3mport\x1b[0m\x1b[2m=\x1b[0m1\n"),
            "{out:?}"
        );
    }
}
