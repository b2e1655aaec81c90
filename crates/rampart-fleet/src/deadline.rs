//! Deadline arithmetic: when a notification is due, how long is left, and whether it is near
//! due or overdue. All times are UTC nanoseconds since the Unix epoch.
//!
//! Clocks, counted from the anchor instant `t`:
//! * `hours`: `t + N h`.
//! * `calendar_days`: `t + N × 24 h` (the same time of day N days later; a regime that counts
//!   "N days after the day" ends later than this, never earlier).
//! * `business_days`: the same time of day on the N-th Monday-to-Friday day after `t`'s day (the
//!   anchor day itself is not counted). Public holidays are not known: a holiday makes the real
//!   deadline later than the computed one, never earlier.
//! * `months`: the same day of the month N months later at the same time, or that month's last
//!   day when it is shorter (31 January + 1 month = 28/29 February).
//! * `without_undue_delay`: no fixed end ("without undue delay", "immediately", "as soon as
//!   practicable"); there is nothing to count down.
//!
//! A deadline is *near due* in the last quarter of its span (from anchor to due), and *overdue*
//! once its end has passed without a recorded submission.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime, Weekday};

/// How a deadline is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    Hours,
    CalendarDays,
    BusinessDays,
    Months,
    WithoutUndueDelay,
}

impl Clock {
    pub fn as_str(&self) -> &'static str {
        match self {
            Clock::Hours => "hours",
            Clock::CalendarDays => "calendar_days",
            Clock::BusinessDays => "business_days",
            Clock::Months => "months",
            Clock::WithoutUndueDelay => "without_undue_delay",
        }
    }

    /// "72 hours", "3 business days", "without undue delay".
    pub fn describe(&self, n: Option<u32>) -> String {
        let n = n.unwrap_or(0);
        let plural = if n == 1 { "" } else { "s" };
        match self {
            Clock::Hours => format!("{n} hour{plural}"),
            Clock::CalendarDays => format!("{n} calendar day{plural}"),
            Clock::BusinessDays => format!("{n} business day{plural}"),
            Clock::Months => format!("{n} month{plural}"),
            Clock::WithoutUndueDelay => "without undue delay".into(),
        }
    }
}

const NS_PER_SEC: i128 = 1_000_000_000;

fn to_dt(ns: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn from_dt(dt: OffsetDateTime) -> u64 {
    u64::try_from(dt.unix_timestamp_nanos()).unwrap_or(0)
}

fn days_in_month(year: i32, month: Month) -> u8 {
    time::util::days_in_month(month, year)
}

/// The instant `n` units of `clock` after `from_ns`; `None` for `without_undue_delay`.
pub fn due_ns(clock: Clock, n: u32, from_ns: u64) -> Option<u64> {
    let t = to_dt(from_ns);
    let due = match clock {
        Clock::Hours => t + Duration::hours(i64::from(n)),
        Clock::CalendarDays => t + Duration::days(i64::from(n)),
        Clock::BusinessDays => {
            let mut d: Date = t.date();
            let mut left = n;
            while left > 0 {
                d = d.next_day()?;
                if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                    left -= 1;
                }
            }
            t.replace_date(d)
        }
        Clock::Months => {
            let total =
                i64::from(t.year()) * 12 + i64::from(u8::from(t.month()) - 1) + i64::from(n);
            let year = i32::try_from(total.div_euclid(12)).ok()?;
            let month = Month::try_from(u8::try_from(total.rem_euclid(12) + 1).ok()?).ok()?;
            let day = t.day().min(days_in_month(year, month));
            t.replace_date(Date::from_calendar_date(year, month, day).ok()?)
        }
        Clock::WithoutUndueDelay => return None,
    };
    Some(from_dt(due))
}

/// Where a deadline stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineState {
    /// Submitted (a person recorded it).
    Done,
    /// No fixed end: act without undue delay.
    NoFixedEnd,
    Pending,
    /// In the last quarter of its span.
    NearDue,
    Overdue,
    /// The incident is not confirmed: the deadline is shown, counts nothing, alerts nobody.
    Provisional,
}

impl DeadlineState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadlineState::Done => "done",
            DeadlineState::NoFixedEnd => "no fixed end",
            DeadlineState::Pending => "pending",
            DeadlineState::NearDue => "near due",
            DeadlineState::Overdue => "OVERDUE",
            DeadlineState::Provisional => "provisional (incident not confirmed)",
        }
    }
}

/// The state of a deadline counted from `from_ns`, due at `due` (None: no fixed end), at
/// `now_ns`, given whether it was submitted.
pub fn state(from_ns: u64, due: Option<u64>, now_ns: u64, submitted: bool) -> DeadlineState {
    if submitted {
        return DeadlineState::Done;
    }
    let Some(due) = due else {
        return DeadlineState::NoFixedEnd;
    };
    if now_ns >= due {
        return DeadlineState::Overdue;
    }
    let span = due.saturating_sub(from_ns);
    if due - now_ns <= span / 4 {
        DeadlineState::NearDue
    } else {
        DeadlineState::Pending
    }
}

/// `2026-03-02 14:00 UTC`.
pub fn format_utc(ns: u64) -> String {
    let t = to_dt(ns);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `2026-03-02T14:00:05Z`.
pub fn format_rfc3339(ns: u64) -> String {
    let t = to_dt(ns);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A countdown: `2d 03h 15m left`, `overdue by 5h 02m`.
pub fn countdown(due_ns: u64, now_ns: u64) -> String {
    let (secs, overdue) = if now_ns >= due_ns {
        (((now_ns - due_ns) as i128) / NS_PER_SEC, true)
    } else {
        (((due_ns - now_ns) as i128) / NS_PER_SEC, false)
    };
    let d = secs / 86_400;
    let h = (secs % 86_400) / 3_600;
    let m = (secs % 3_600) / 60;
    let text = if d > 0 {
        format!("{d}d {h:02}h {m:02}m")
    } else {
        format!("{h}h {m:02}m")
    };
    if overdue {
        format!("overdue by {text}")
    } else {
        format!("{text} left")
    }
}

/// Parses `2026-03-02T14:00:00Z` (UTC only; seconds optional) into ns.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim().strip_suffix('Z').unwrap_or(s.trim());
    let (date, clock) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let mut dp = date.splitn(3, '-');
    let y: i32 = dp.next()?.parse().ok()?;
    let m: u8 = dp.next()?.parse().ok()?;
    let d: u8 = dp.next()?.parse().ok()?;
    let mut cp = clock.splitn(3, ':');
    let hh: u8 = cp.next()?.parse().ok()?;
    let mm: u8 = cp.next().unwrap_or("0").parse().ok()?;
    let ss: u8 = cp.next().unwrap_or("0").parse().ok()?;
    let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
    let dt = date.with_hms(hh, mm, ss).ok()?.assume_utc();
    u64::try_from(dt.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> u64 {
        parse_rfc3339(s).unwrap_or_else(|| panic!("bad test time {s}"))
    }

    #[test]
    fn hours_cross_midnight_and_month_end() {
        // 72 h from Friday 2026-01-30 10:15 is Monday 2026-02-02 10:15.
        assert_eq!(
            due_ns(Clock::Hours, 72, at("2026-01-30T10:15:00Z")),
            Some(at("2026-02-02T10:15:00Z"))
        );
        assert_eq!(
            due_ns(Clock::Hours, 6, at("2026-12-31T21:00:00Z")),
            Some(at("2027-01-01T03:00:00Z"))
        );
    }

    #[test]
    fn calendar_days_include_weekends_and_leap_day() {
        // 30 calendar days from 2028-02-10 12:00 (2028 is a leap year) is 2028-03-11 12:00.
        assert_eq!(
            due_ns(Clock::CalendarDays, 30, at("2028-02-10T12:00:00Z")),
            Some(at("2028-03-11T12:00:00Z"))
        );
        assert_eq!(
            due_ns(Clock::CalendarDays, 3, at("2026-03-06T09:00:00Z")),
            Some(at("2026-03-09T09:00:00Z"))
        );
    }

    #[test]
    fn business_days_skip_the_weekend() {
        // Aware Friday 2026-03-06 16:00: Mon 9 (1), Tue 10 (2), Wed 11 (3).
        assert_eq!(
            due_ns(Clock::BusinessDays, 3, at("2026-03-06T16:00:00Z")),
            Some(at("2026-03-11T16:00:00Z"))
        );
        // Aware Saturday 2026-03-07 08:30: the weekend does not count: Mon, Tue, Wed.
        assert_eq!(
            due_ns(Clock::BusinessDays, 3, at("2026-03-07T08:30:00Z")),
            Some(at("2026-03-11T08:30:00Z"))
        );
        // Aware Wednesday 2026-03-04 10:00: Thu 5, Fri 6, Mon 9.
        assert_eq!(
            due_ns(Clock::BusinessDays, 3, at("2026-03-04T10:00:00Z")),
            Some(at("2026-03-09T10:00:00Z"))
        );
        // 20 business days from Monday 2026-03-09: four whole weeks, Monday 2026-04-06.
        assert_eq!(
            due_ns(Clock::BusinessDays, 20, at("2026-03-09T10:00:00Z")),
            Some(at("2026-04-06T10:00:00Z"))
        );
    }

    #[test]
    fn months_clamp_to_the_end_of_shorter_months() {
        assert_eq!(
            due_ns(Clock::Months, 1, at("2026-01-31T10:00:00Z")),
            Some(at("2026-02-28T10:00:00Z"))
        );
        assert_eq!(
            due_ns(Clock::Months, 1, at("2026-12-15T10:00:00Z")),
            Some(at("2027-01-15T10:00:00Z"))
        );
        assert_eq!(due_ns(Clock::WithoutUndueDelay, 0, 5), None);
    }

    #[test]
    fn state_and_countdown() {
        let from = at("2026-03-02T00:00:00Z");
        let due = at("2026-03-05T00:00:00Z"); // 72 h span; near due in the last 18 h
        assert_eq!(
            state(from, Some(due), at("2026-03-04T05:59:00Z"), false),
            DeadlineState::Pending
        );
        assert_eq!(
            state(from, Some(due), at("2026-03-04T06:00:00Z"), false),
            DeadlineState::NearDue
        );
        assert_eq!(
            state(from, Some(due), at("2026-03-05T00:00:00Z"), false),
            DeadlineState::Overdue
        );
        assert_eq!(
            state(from, Some(due), at("2026-03-06T00:00:00Z"), true),
            DeadlineState::Done
        );
        assert_eq!(state(from, None, due, false), DeadlineState::NoFixedEnd);
        assert_eq!(
            countdown(due, at("2026-03-02T20:45:10Z")),
            "2d 03h 14m left"
        );
        assert_eq!(
            countdown(due, at("2026-03-05T05:02:00Z")),
            "overdue by 5h 02m"
        );
        assert_eq!(format_utc(due), "2026-03-05 00:00 UTC");
    }
}
