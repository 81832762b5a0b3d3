//! Calendar periods and service hours in a client's time zone (SPEC §6).
//!
//! Reports are computed over instants (`[from, to)` in UTC) but asked for
//! as calendar periods in the client's IANA zone: a March in Europe/Berlin
//! is 743 hours long, an October 745. A service's SLA may commit to hours
//! of the week only (weekdays 09:00–18:00, say), kept on the local wall
//! clock, so DST moves them in UTC.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// An IANA time zone name that chrono-tz knows (`Asia/Tokyo`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Result<TimeZoneName, String> {
        let raw = raw.trim();
        Tz::from_str(raw)
            .map(|tz| TimeZoneName(tz.name().to_owned()))
            .map_err(|_| {
                format!("{raw:?} is not an IANA time zone (e.g. Asia/Tokyo, Europe/Berlin, UTC)")
            })
    }

    pub fn utc() -> TimeZoneName {
        TimeZoneName("UTC".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn tz(&self) -> Tz {
        Tz::from_str(&self.0).unwrap_or(Tz::UTC)
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        TimeZoneName::parse(&raw)
    }
}

impl From<TimeZoneName> for String {
    fn from(z: TimeZoneName) -> String {
        z.0
    }
}

/// The first instant at or after local midnight of `date` in `tz` (a day
/// that starts in a DST gap starts when the gap ends).
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_instant(tz, date, NaiveTime::MIN)
}

/// The instant of a local wall-clock time; in a DST gap, the instant the
/// gap ends; in an overlap, the earlier one.
fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = date.and_time(time);
    let mut probe = naive;
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&naive)
}

/// A calendar month of a zone, as instants: `[first midnight, next first midnight)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    /// `YYYY-MM`.
    pub fn parse(raw: &str) -> Result<Month, String> {
        let bad = || format!("{raw:?} is not a month (YYYY-MM)");
        let (y, m) = raw.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a valid month")
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The month `at` falls in, in `tz`.
    pub fn of(at: DateTime<Utc>, tz: Tz) -> Month {
        let local = at.with_timezone(&tz);
        Month {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The month's instants in `tz`.
    pub fn span(self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            local_midnight(tz, self.first_day()),
            local_midnight(tz, self.next().first_day()),
        )
    }

    /// The instant a local day starts in `tz`.
    pub fn local_instant_of(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
        local_midnight(tz, date)
    }

    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        let first = self.first_day();
        let next = self.next().first_day();
        first.iter_days().take_while(move |d| *d < next)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Hours of the week an SLA commits to, on the local wall clock of the
/// client's zone: `days`, from `from` to `to` (`24:00` for the day's end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceHours {
    pub days: Vec<Day>,
    pub from: String,
    pub to: String,
}

/// A day of the week, as `mon` … `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

/// `HH:MM`, or `24:00` (the end of the day: `None`).
fn clock(field: &str, raw: &str) -> Result<Option<NaiveTime>, String> {
    if raw == "24:00" {
        return Ok(None);
    }
    NaiveTime::parse_from_str(raw, "%H:%M")
        .map(Some)
        .map_err(|_| format!("{field} must be HH:MM (00:00 to 24:00), not {raw:?}"))
}

impl ServiceHours {
    pub fn parse(days: Vec<Day>, from: &str, to: &str) -> Result<ServiceHours, String> {
        if days.is_empty() {
            return Err("sla_hours.days must name at least one day".into());
        }
        let mut unique = days.clone();
        unique.sort_by_key(|d| d.weekday().num_days_from_monday());
        unique.dedup();
        if unique.len() != days.len() {
            return Err("sla_hours.days must not repeat a day".into());
        }
        let start = clock("sla_hours.from", from)?.ok_or("sla_hours.from must be before 24:00")?;
        if clock("sla_hours.to", to)?.is_some_and(|end| end <= start) {
            return Err("sla_hours.to must be after sla_hours.from".into());
        }
        Ok(ServiceHours {
            days: unique,
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    /// The committed intervals that overlap `[from, to)`, clipped to it.
    pub fn intervals(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let (Ok(Some(start)), Ok(end)) = (clock("from", &self.from), clock("to", &self.to)) else {
            return vec![];
        };
        let first = from.with_timezone(&tz).date_naive() - Duration::days(1);
        let last = to.with_timezone(&tz).date_naive() + Duration::days(1);
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .filter(|d| self.days.iter().any(|x| x.weekday() == d.weekday()))
            .filter_map(|d| {
                let s = local_instant(tz, d, start);
                let e = match end {
                    Some(e) => local_instant(tz, d, e),
                    None => local_midnight(tz, d + Duration::days(1)),
                };
                let (s, e) = (s.max(from), e.min(to));
                (s < e).then_some((s, e))
            })
            .collect()
    }
}

/// The last instant RFC 3339 can write (its years have four digits):
/// nothing the service answers lies beyond it.
pub fn last_instant() -> DateTime<Utc> {
    DateTime::<Utc>::MAX_UTC.min(
        chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 999_999_999))
            .expect("a valid date")
            .and_utc(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        (to - from).num_hours()
    }

    #[test]
    fn a_month_with_a_dst_change_is_an_hour_short_or_long() {
        let berlin = TimeZoneName::parse("Europe/Berlin").unwrap().tz();
        let (s, e) = Month::parse("2027-03").unwrap().span(berlin);
        assert_eq!(hours(s, e), 743);
        assert_eq!(s, Utc.with_ymd_and_hms(2027, 2, 28, 23, 0, 0).unwrap());
        let (s, e) = Month::parse("2027-10").unwrap().span(berlin);
        assert_eq!(hours(s, e), 745);
        let ny = TimeZoneName::parse("America/New_York").unwrap().tz();
        let (s, e) = Month::parse("2027-03").unwrap().span(ny);
        assert_eq!(hours(s, e), 743);
        let (s, e) = Month::parse("2027-11").unwrap().span(ny);
        assert_eq!(hours(s, e), 721);
        let tokyo = TimeZoneName::parse("Asia/Tokyo").unwrap().tz();
        let (s, e) = Month::parse("2027-03").unwrap().span(tokyo);
        assert_eq!(hours(s, e), 744);
    }

    #[test]
    fn months_and_zones_are_parsed_strictly() {
        assert!(Month::parse("2027-13").is_err());
        assert!(Month::parse("2027-3").is_err());
        assert!(Month::parse("march").is_err());
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
        assert_eq!(
            TimeZoneName::parse(" Asia/Tokyo ").unwrap().as_str(),
            "Asia/Tokyo"
        );
        assert_eq!(
            Month::parse("2027-12").unwrap().next().to_string(),
            "2028-01"
        );
    }

    #[test]
    fn service_hours_follow_the_local_wall_clock_across_dst() {
        let berlin = TimeZoneName::parse("Europe/Berlin").unwrap().tz();
        let weekdays = ServiceHours::parse(
            vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            "09:00",
            "18:00",
        )
        .unwrap();
        let (s, e) = Month::parse("2027-03").unwrap().span(berlin);
        let committed = weekdays.intervals(berlin, s, e);
        // March 2027 has 23 weekdays, 9 hours each.
        assert_eq!(committed.len(), 23);
        let total: i64 = committed.iter().map(|(a, b)| (*b - *a).num_hours()).sum();
        assert_eq!(total, 23 * 9);
        // 09:00 in Berlin is 08:00 UTC before the change (28 March), 07:00 after.
        assert_eq!(
            committed[0].0,
            Utc.with_ymd_and_hms(2027, 3, 1, 8, 0, 0).unwrap()
        );
        assert_eq!(
            committed[22].0,
            Utc.with_ymd_and_hms(2027, 3, 31, 7, 0, 0).unwrap()
        );
        let all_day = ServiceHours::parse(vec![Day::Sun], "00:00", "24:00").unwrap();
        let sundays = all_day.intervals(berlin, s, e);
        // The 28th (the change) has 23 hours.
        assert_eq!(
            sundays
                .iter()
                .map(|(a, b)| (*b - *a).num_hours())
                .collect::<Vec<_>>(),
            vec![24, 24, 24, 23]
        );
        assert!(ServiceHours::parse(vec![], "09:00", "18:00").is_err());
        assert!(ServiceHours::parse(vec![Day::Mon], "18:00", "09:00").is_err());
        assert!(ServiceHours::parse(vec![Day::Mon, Day::Mon], "09:00", "18:00").is_err());
        assert!(ServiceHours::parse(vec![Day::Mon], "9am", "18:00").is_err());
    }
}
