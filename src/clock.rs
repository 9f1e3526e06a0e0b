//! The one place that reads the wall clock, and the date formats mail needs.
//!
//! Everything that depends on the time takes a [`Clock`] (given to
//! `App::build`) so tests can move time by hand. `clippy.toml` bans
//! `SystemTime::now` everywhere else.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time as microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Saturates instead of overflowing: seconds can come from untrusted input.
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn micros(self) -> i64 {
        self.0.rem_euclid(1_000_000)
    }

    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// RFC 5322 §3.3 date, always in UTC: `Fri, 27 Nov 2026 14:05:53 +0000`.
    pub fn rfc5322(self) -> String {
        let c = Civil::from_secs(self.secs());
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let weekday = DAYS[self.secs().div_euclid(86400).rem_euclid(7) as usize];
        format!(
            "{weekday}, {:02} {} {} {:02}:{:02}:{:02} +0000",
            c.day,
            MONTHS[(c.month - 1) as usize],
            c.year,
            c.hour,
            c.minute,
            c.second
        )
    }

    /// Midnight UTC of a calendar date (proleptic Gregorian); `None` when
    /// the date does not exist (2026-02-30) or is out of range.
    pub fn from_date(year: i64, month: u32, day: u32) -> Option<Timestamp> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        // Howard Hinnant's days-from-civil, the inverse of Civil::from_secs.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let t = Timestamp::from_secs(days * 86400);
        let c = Civil::from_secs(t.secs());
        (c.year == year && c.month == month && c.day == day).then_some(t)
    }

    /// The main log's timestamp, as Exim writes it: `2026-11-27 14:05:53` (UTC).
    pub fn log_format(self) -> String {
        let c = Civil::from_secs(self.secs());
        format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )
    }
}

/// Microseconds since the epoch, as the database stores times. Also gives
/// `TryFrom<i64>` (never failing), which `#[sqlx(try_from = "i64")]` reads
/// `Timestamp` columns with.
impl From<i64> for Timestamp {
    fn from(micros: i64) -> Timestamp {
        Timestamp(micros)
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
    fn from_secs(secs: i64) -> Civil {
        let days = secs.div_euclid(86400);
        let tod = secs.rem_euclid(86400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: tod / 3600,
            minute: tod / 60 % 60,
            second: tod % 60,
        }
    }
}

/// Source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one permitted reading of the wall clock
    fn now(&self) -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_micros() as i64)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        // Each reading moves on by a microsecond so names derived from the
        // time stay unique, as they would with a real clock.
        Timestamp(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_as_rfc5322_and_exim_log_lines() {
        // 2026-11-27 14:05:53 UTC, a Friday.
        let t = Timestamp::from_secs(1_795_788_353);
        assert_eq!(t.rfc5322(), "Fri, 27 Nov 2026 14:05:53 +0000");
        assert_eq!(t.log_format(), "2026-11-27 14:05:53");
        assert_eq!(
            Timestamp::from_secs(0).rfc5322(),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(
            Timestamp::from_secs(951_782_400).log_format(),
            "2000-02-29 00:00:00"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_secs(100));
        assert_eq!(c.now().secs(), 100);
        c.advance_secs(3600);
        assert_eq!(c.now().secs(), 3700);
    }
}
