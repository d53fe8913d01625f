//! When a rep can take leads: working hours in their time zone, out-of-office ranges.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// `Mon-Fri 08:00-18:00`, or several such spans joined by commas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingHours {
    text: String,
    spans: Vec<Span>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn day(s: &str) -> Result<usize, String> {
    let s = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|(d, _)| s.starts_with(d) && d.len() <= s.len())
        .ok_or_else(|| format!("'{s}' is not a day (Mon, Tue, …)"))
}

fn time(s: &str) -> Result<NaiveTime, String> {
    if s.trim() == "24:00" {
        return Ok(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN));
    }
    NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| format!("'{}' is not a time (HH:MM)", s.trim()))
}

impl WorkingHours {
    pub fn parse(s: &str) -> Result<WorkingHours, String> {
        let mut spans = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (days, hours) =
                part.split_once(' ').ok_or_else(|| format!("'{part}' should look like 'Mon-Fri 08:00-18:00'"))?;
            let mut set = [false; 7];
            match days.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut i = a;
                    loop {
                        set[i] = true;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => set[day(days)?] = true,
            }
            let (start, end) =
                hours.trim().split_once('-').ok_or_else(|| format!("'{hours}' should be a range like 08:00-18:00"))?;
            let (start, end) = (time(start)?, time(end)?);
            if start >= end {
                return Err(format!("'{hours}' ends before it starts"));
            }
            spans.push(Span { days: set, start, end });
        }
        Ok(WorkingHours { text: s.trim().to_owned(), spans })
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `at` falls inside these hours, read on the rep's wall clock in `tz`.
    pub fn contains(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let local = at.with_timezone(&tz);
        let wd = local.weekday().num_days_from_monday() as usize;
        let t = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second()).unwrap_or(NaiveTime::MIN);
        self.spans.iter().any(|s| s.days[wd] && t >= s.start && t < s.end)
    }
}

/// `2026-12-24/2027-01-02`: both days included, on the rep's calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl DateRange {
    pub fn parse(s: &str) -> Result<DateRange, String> {
        let date = |d: &str| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| format!("'{}' is not a date (YYYY-MM-DD)", d.trim()))
        };
        let (first, last) = match s.split_once('/') {
            Some((a, b)) => (date(a)?, date(b)?),
            None => (date(s)?, date(s)?),
        };
        if last < first {
            return Err(format!("'{s}' ends before it starts"));
        }
        Ok(DateRange { first, last })
    }

    /// `2026-12-24/2027-01-02`, as it is parsed.
    pub fn text(&self) -> String {
        format!("{}/{}", self.first, self.last)
    }

    pub fn contains(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let d = at.with_timezone(&tz).date_naive();
        self.first <= d && d <= self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn weekday_hours_in_the_reps_zone() {
        let h = WorkingHours::parse("Mon-Fri 08:00-18:00").unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        // Tue 2026-11-24 13:00 UTC is 08:00 in New York.
        assert!(h.contains(Utc.with_ymd_and_hms(2026, 11, 24, 13, 0, 0).unwrap(), ny));
        assert!(!h.contains(Utc.with_ymd_and_hms(2026, 11, 24, 12, 59, 0).unwrap(), ny));
        // Saturday.
        assert!(!h.contains(Utc.with_ymd_and_hms(2026, 11, 28, 15, 0, 0).unwrap(), ny));
        let wrap = WorkingHours::parse("Sat-Mon 10:00-12:00, Wed 09:00-10:00").unwrap();
        assert!(wrap.contains(Utc.with_ymd_and_hms(2026, 11, 29, 10, 30, 0).unwrap(), chrono_tz::UTC));
        assert!(!wrap.contains(Utc.with_ymd_and_hms(2026, 11, 24, 10, 30, 0).unwrap(), chrono_tz::UTC));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "Mon-Fri", "Funday 08:00-10:00", "Mon 18:00-08:00", "Mon 8-10"] {
            assert!(WorkingHours::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DateRange::parse("2027-01-02/2026-12-24").is_err());
        let r = DateRange::parse("2026-12-24/2027-01-02").unwrap();
        assert!(r.contains(Utc.with_ymd_and_hms(2027, 1, 2, 23, 0, 0).unwrap(), chrono_tz::UTC));
    }
}
