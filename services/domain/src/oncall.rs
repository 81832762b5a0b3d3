//! On-call schedules: who is on call at a given instant.
//!
//! A schedule is a set of rotation layers in one IANA time zone plus
//! overrides. A rotation hands off on the local wall clock: shift `k` starts
//! at `start_date + handoff_time + k * shift_hours` computed on the naive
//! (wall-clock) time line, and only then is that local time turned into an
//! instant. This is what people mean by "the night shift starts at 23:00":
//! hand-offs stay at the same local times all year, and the shift that spans
//! a DST change is an hour shorter or longer in real time.
//!
//! Nothing here reads a clock; the instant to answer for is passed in.

use std::str::FromStr;

use chrono::{
    DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Users one rotation may name.
pub const USERS_MAX: usize = 100;
/// A year: longer shifts are not a rotation.
pub const SHIFT_HOURS_MAX: u32 = 8760;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Users in turn order.
    pub users: Vec<Uuid>,
    /// Length of one shift in whole hours, 1..=8760. Shift boundaries are local wall-clock times.
    pub shift_hours: u32,
    /// Local date and wall-clock time of the first hand-off; shifts start there.
    pub start_date: NaiveDate,
    pub handoff_time: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Override {
    pub override_id: Uuid,
    pub user_id: Uuid,
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    /// IANA name, e.g. "Asia/Tokyo".
    pub time_zone: String,
    /// Layers: each rotation yields one on-call user (or none before its start).
    pub rotations: Vec<Rotation>,
    /// Later entries win over earlier ones.
    pub overrides: Vec<Override>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnCall {
    pub user_id: Uuid,
    /// Which rotation (index) gave this user, or None when an override did.
    pub rotation: Option<usize>,
    pub override_id: Option<Uuid>,
    /// The current shift's start and end as instants (for an override: the override's bounds).
    pub shift_start: DateTime<Utc>,
    pub shift_end: DateTime<Utc>,
}

/// Validates a schedule as submitted and returns its parsed time zone.
///
/// The error names the offending field (`time_zone`, `rotations[1].users`,
/// `overrides[0]`, ...) so that it can be shown to whoever submitted it.
/// Duplicate users within a rotation are allowed: "alice, bob, alice" is a
/// legitimate way to give someone two turns in three.
pub fn validate(schedule: &Schedule) -> Result<Tz, String> {
    let tz = Tz::from_str(&schedule.time_zone).map_err(|_| {
        format!(
            "time_zone: {:?} is not a known IANA time zone",
            schedule.time_zone
        )
    })?;
    if schedule.rotations.is_empty() {
        return Err("rotations: at least one rotation is required".to_owned());
    }
    for (i, rotation) in schedule.rotations.iter().enumerate() {
        let users = rotation.users.len();
        if !(1..=USERS_MAX).contains(&users) {
            return Err(format!(
                "rotations[{i}].users: must name 1 to {USERS_MAX} users, got {users}"
            ));
        }
        if !(1..=SHIFT_HOURS_MAX).contains(&rotation.shift_hours) {
            return Err(format!(
                "rotations[{i}].shift_hours: must be 1 to {SHIFT_HOURS_MAX}, got {}",
                rotation.shift_hours
            ));
        }
        // A first hand-off that has no instant (only possible at the edges of
        // chrono's range) would leave the layer silently empty forever.
        if shift_boundary(&tz, rotation, 0).is_none() {
            return Err(format!(
                "rotations[{i}].start_date: {} {} is out of range",
                rotation.start_date, rotation.handoff_time
            ));
        }
    }
    for (i, o) in schedule.overrides.iter().enumerate() {
        if o.start >= o.end {
            return Err(format!(
                "overrides[{i}]: start {} must be before end {}",
                o.start.to_rfc3339(),
                o.end.to_rfc3339()
            ));
        }
    }
    Ok(tz)
}

/// Who is on call at `at`.
///
/// An override covering `at` (the last one in the list that covers it)
/// replaces everyone; otherwise there is one entry per rotation that has
/// started by `at`, in rotation order. Empty if nobody.
///
/// The schedule is expected to have passed [`validate`]; if it has not, the
/// parts that cannot be evaluated (unknown zone, empty rotation, zero-hour
/// shifts) yield nobody rather than a panic, because a paging path must not
/// crash on old data.
pub fn on_call(schedule: &Schedule, at: DateTime<Utc>) -> Vec<OnCall> {
    // Overrides are instants, not wall-clock times, so they need no zone;
    // the last covering one wins because it is the most recent decision.
    if let Some(o) = schedule
        .overrides
        .iter()
        .rev()
        .find(|o| o.start <= at && at < o.end)
    {
        return vec![OnCall {
            user_id: o.user_id,
            rotation: None,
            override_id: Some(o.override_id),
            shift_start: o.start,
            shift_end: o.end,
        }];
    }
    let Ok(tz) = Tz::from_str(&schedule.time_zone) else {
        return Vec::new();
    };
    schedule
        .rotations
        .iter()
        .enumerate()
        .filter_map(|(i, rotation)| {
            let shift = current_shift(&tz, rotation, at)?;
            let turn = shift.index.rem_euclid(rotation.users.len() as i64) as usize;
            Some(OnCall {
                user_id: rotation.users[turn],
                rotation: Some(i),
                override_id: None,
                shift_start: shift.start,
                shift_end: shift.end,
            })
        })
        .collect()
}

/// One shift of a rotation: its number counted from the first hand-off, and
/// its bounds as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shift {
    index: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// The shift of `rotation` that contains `at` (`start <= at < end`), or
/// None before the first hand-off.
fn current_shift(tz: &Tz, rotation: &Rotation, at: DateTime<Utc>) -> Option<Shift> {
    if rotation.users.is_empty() || rotation.shift_hours == 0 {
        return None;
    }
    if at < shift_boundary(tz, rotation, 0)? {
        return None;
    }
    // Estimate on the wall clock, as the boundaries are defined there. The
    // estimate can be off by a shift near DST changes: in the repeated
    // fall-back hour the local reading goes backwards, and boundaries in a
    // spring-forward gap are moved to the jump. So the estimate is only a
    // starting point and the instants decide.
    let elapsed = local_naive(tz, at)?.signed_duration_since(first_handoff(rotation));
    let shift_secs = i64::from(rotation.shift_hours) * 3600;
    let mut index = elapsed.num_seconds().div_euclid(shift_secs).max(0);
    // Index 0 needs no check: `at` is past the first hand-off (tested above).
    while index > 0 && shift_boundary(tz, rotation, index)? > at {
        index -= 1;
    }
    // Loops rather than a single step: several boundaries can map to the same
    // instant when a long gap swallows them (Samoa skipped a whole day in
    // 2011), which makes zero-length shifts that must be skipped over.
    loop {
        match shift_boundary(tz, rotation, index + 1) {
            Some(next) if next <= at => index += 1,
            next => {
                return Some(Shift {
                    index,
                    start: shift_boundary(tz, rotation, index)?,
                    // Past the representable range the shift simply never ends.
                    end: next.unwrap_or(DateTime::<Utc>::MAX_UTC),
                });
            }
        }
    }
}

fn first_handoff(rotation: &Rotation) -> NaiveDateTime {
    rotation.start_date.and_time(rotation.handoff_time)
}

/// The instant shift `index` starts: wall-clock arithmetic first, zone second.
/// None when the arithmetic leaves chrono's range.
fn shift_boundary(tz: &Tz, rotation: &Rotation, index: i64) -> Option<DateTime<Utc>> {
    let hours = index.checked_mul(i64::from(rotation.shift_hours))?;
    let local = first_handoff(rotation).checked_add_signed(TimeDelta::try_hours(hours)?)?;
    local_to_instant(tz, local)
}

/// Resolves a wall-clock time to an instant. An ambiguous time (fall-back)
/// takes the earlier instant, so a hand-off at 01:30 happens the first time
/// the clock reads 01:30. A time that does not exist (spring-forward gap)
/// takes the instant of the jump: the hand-off happens as soon as the clock
/// has passed it, rather than being skipped or moved an hour early.
fn local_to_instant(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, local),
    }
}

/// The local wall-clock reading of `at`; None outside chrono's range (where
/// `DateTime::naive_local` would panic).
fn local_naive(tz: &Tz, at: DateTime<Utc>) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&at.naive_utc()).fix();
    at.naive_utc()
        .checked_add_signed(TimeDelta::seconds(offset.local_minus_utc().into()))
}

/// For a wall-clock time inside a gap: the instant the clock jumps over it,
/// i.e. the earliest instant whose local reading is at or past `local`.
///
/// chrono-tz does not expose its transitions, so this bisects on whole
/// seconds (transitions are whole seconds). Offsets are under a day
/// (`FixedOffset` cannot express more), so the reading is before `local` a day
/// before `local`-read-as-UTC and past it a day after. Between those the
/// reading can only step over `local` without passing through it at a jump,
/// and since `local` does not exist, the only such jump is the gap itself.
fn gap_end(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    const DAY: i64 = 86_400;
    let reaches = |secs: i64| -> Option<bool> {
        let t = DateTime::from_timestamp(secs, 0)?;
        Some(local_naive(tz, t)? >= local)
    };
    let centre = local.and_utc().timestamp();
    let (mut before, mut after) = (centre - DAY, centre + DAY);
    if reaches(before)? || !reaches(after)? {
        return None;
    }
    while after - before > 1 {
        let mid = before + (after - before) / 2;
        if reaches(mid)? {
            after = mid;
        } else {
            before = mid;
        }
    }
    DateTime::from_timestamp(after, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn users(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).expect("test date")
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("test time")
    }

    fn rotation(users: Vec<Uuid>, shift_hours: u32, start: &str, handoff: NaiveTime) -> Rotation {
        Rotation {
            users,
            shift_hours,
            start_date: date(start),
            handoff_time: handoff,
        }
    }

    fn schedule(zone: &str, rotations: Vec<Rotation>) -> Schedule {
        Schedule {
            time_zone: zone.to_owned(),
            rotations,
            overrides: Vec::new(),
        }
    }

    /// The single entry on call at `at`; fails the test if there is not exactly one.
    fn only(schedule: &Schedule, at: DateTime<Utc>) -> OnCall {
        let mut all = on_call(schedule, at);
        assert_eq!(all.len(), 1, "exactly one on call at {at}: {all:?}");
        all.remove(0)
    }

    /// `n` consecutive shifts of a one-rotation schedule, from the one containing `from`.
    fn shifts(schedule: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<OnCall> {
        let mut out: Vec<OnCall> = Vec::new();
        let mut at = from;
        for _ in 0..n {
            let current = only(schedule, at);
            at = current.shift_end;
            out.push(current);
        }
        out
    }

    fn local(zone: &str, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&Tz::from_str(zone).expect("test zone"))
            .naive_local()
    }

    fn hours(n: i64) -> TimeDelta {
        TimeDelta::hours(n)
    }

    #[test]
    fn round_the_clock_cover_in_tokyo() {
        let team = users(6);
        let s = schedule(
            "Asia/Tokyo",
            vec![rotation(team.clone(), 8, "2026-11-02", time(7, 0))],
        );
        // 07:00 JST on 2 November is 22:00 UTC on 1 November.
        let first = utc("2026-11-01T22:00:00Z");
        let all = shifts(&s, first, 9);
        for (n, shift) in all.iter().enumerate() {
            assert_eq!(shift.user_id, team[n % 6], "shift {n}");
            assert_eq!(shift.rotation, Some(0));
            assert_eq!(shift.override_id, None);
            assert_eq!(shift.shift_start, first + hours(8 * n as i64));
            assert_eq!(shift.shift_end - shift.shift_start, hours(8));
            let start_local = local("Asia/Tokyo", shift.shift_start);
            assert!([7, 15, 23].contains(&start_local.hour()), "{start_local}");
            assert_eq!((start_local.minute(), start_local.second()), (0, 0));
            assert!([22, 6, 14].contains(&shift.shift_start.hour()));
            // Anywhere inside the shift gives the same answer.
            for probe in [
                shift.shift_start,
                shift.shift_start + hours(4),
                shift.shift_end - TimeDelta::seconds(1),
            ] {
                assert_eq!(&only(&s, probe), shift, "at {probe}");
            }
        }
        for pair in all.windows(2) {
            assert_eq!(pair[0].shift_end, pair[1].shift_start);
        }
        // The seventh shift is u0's turn again.
        assert_eq!(all[6].user_id, team[0]);
    }

    #[test]
    fn spring_forward_shortens_the_night_shift_in_new_york() {
        let zone = "America/New_York";
        let team = users(3);
        let s = schedule(zone, vec![rotation(team, 8, "2026-03-01", time(7, 0))]);
        // From 07:00 EST on 7 March (12:00Z) through 9 March.
        let all = shifts(&s, utc("2026-03-07T12:00:00Z"), 7);
        let expected_local = [
            "2026-03-07T07:00:00",
            "2026-03-07T15:00:00",
            "2026-03-07T23:00:00",
            "2026-03-08T07:00:00",
            "2026-03-08T15:00:00",
            "2026-03-08T23:00:00",
            "2026-03-09T07:00:00",
        ];
        for (shift, want) in all.iter().zip(expected_local) {
            assert_eq!(
                local(zone, shift.shift_start).to_string(),
                want.replace('T', " ")
            );
        }
        let night = &all[2];
        assert_eq!(night.shift_start, utc("2026-03-08T04:00:00Z")); // 23:00 EST
        assert_eq!(night.shift_end, utc("2026-03-08T11:00:00Z")); // 07:00 EDT
        assert_eq!(night.shift_end - night.shift_start, hours(7));
        for (n, shift) in all.iter().enumerate() {
            if n != 2 {
                assert_eq!(shift.shift_end - shift.shift_start, hours(8), "shift {n}");
            }
        }
        // During the night, including just after the jump, it is that shift.
        assert_eq!(&only(&s, utc("2026-03-08T06:59:59Z")), night); // 01:59:59 EST
        assert_eq!(&only(&s, utc("2026-03-08T07:00:00Z")), night); // 03:00 EDT
    }

    #[test]
    fn fall_back_lengthens_the_night_shift_in_new_york() {
        let zone = "America/New_York";
        let team = users(3);
        let s = schedule(zone, vec![rotation(team, 8, "2026-03-01", time(7, 0))]);
        // From 07:00 EDT on 31 October (11:00Z) through 2 November.
        let all = shifts(&s, utc("2026-10-31T11:00:00Z"), 7);
        for shift in &all {
            let start = local(zone, shift.shift_start);
            assert!([7, 15, 23].contains(&start.hour()), "{start}");
            assert_eq!((start.minute(), start.second()), (0, 0));
        }
        let night = &all[2];
        assert_eq!(night.shift_start, utc("2026-11-01T03:00:00Z")); // 23:00 EDT
        assert_eq!(night.shift_end, utc("2026-11-01T12:00:00Z")); // 07:00 EST
        assert_eq!(night.shift_end - night.shift_start, hours(9));
        for (n, shift) in all.iter().enumerate() {
            if n != 2 {
                assert_eq!(shift.shift_end - shift.shift_start, hours(8), "shift {n}");
            }
        }
        // 01:30 happens twice; both belong to the same night shift.
        let edt = utc("2026-11-01T05:30:00Z");
        let est = utc("2026-11-01T06:30:00Z");
        assert_eq!(local(zone, edt), local(zone, est));
        assert_eq!(&only(&s, edt), night);
        assert_eq!(&only(&s, est), night);
    }

    #[test]
    fn weekly_rotation_flips_at_monday_nine_across_dst_in_berlin() {
        let zone = "Europe/Berlin";
        let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
        let start = date("2026-10-05");
        assert_eq!(start.weekday(), Weekday::Mon);
        let s = schedule(
            zone,
            vec![rotation(vec![a, b], 168, "2026-10-05", time(9, 0))],
        );
        let all = shifts(&s, utc("2026-10-05T07:00:00Z"), 5);
        let starts: Vec<_> = all.iter().map(|x| x.shift_start).collect();
        assert_eq!(
            starts,
            [
                utc("2026-10-05T07:00:00Z"), // 09:00 CEST
                utc("2026-10-12T07:00:00Z"),
                utc("2026-10-19T07:00:00Z"),
                utc("2026-10-26T08:00:00Z"), // 09:00 CET, after 25 October
                utc("2026-11-02T08:00:00Z"),
            ]
        );
        let who: Vec<_> = all.iter().map(|x| x.user_id).collect();
        assert_eq!(who, [a, b, a, b, a]);
        for shift in &all {
            let start = local(zone, shift.shift_start);
            assert_eq!(start.weekday(), Weekday::Mon);
            assert_eq!(start.time(), time(9, 0));
        }
        // The week spanning the change is an hour longer.
        assert_eq!(all[2].shift_end - all[2].shift_start, hours(169));
        // Just before the Monday hand-off it is still the previous user.
        assert_eq!(only(&s, utc("2026-10-26T07:59:59Z")).user_id, a);
        assert_eq!(only(&s, utc("2026-10-26T08:00:00Z")).user_id, b);
    }

    #[test]
    fn overrides_replace_the_rotation_and_the_last_covering_one_wins() {
        let team = users(2);
        let (x, y) = (Uuid::from_u128(0x100), Uuid::from_u128(0x200));
        let (ox, oy) = (Uuid::from_u128(0x1000), Uuid::from_u128(0x2000));
        let mut s = schedule(
            "UTC",
            vec![rotation(team.clone(), 24, "2026-01-01", time(0, 0))],
        );
        s.overrides = vec![
            Override {
                override_id: ox,
                user_id: x,
                start: utc("2026-01-05T10:00:00Z"),
                end: utc("2026-01-05T14:00:00Z"),
            },
            Override {
                override_id: oy,
                user_id: y,
                start: utc("2026-01-05T12:00:00Z"),
                end: utc("2026-01-05T16:00:00Z"),
            },
        ];
        // 5 January is day 4 of the rotation: team[0]'s turn.
        let before = only(&s, utc("2026-01-05T09:59:59Z"));
        assert_eq!((before.user_id, before.rotation), (team[0], Some(0)));

        let first = only(&s, utc("2026-01-05T10:00:00Z"));
        assert_eq!(first.user_id, x);
        assert_eq!(first.rotation, None);
        assert_eq!(first.override_id, Some(ox));
        assert_eq!(first.shift_start, utc("2026-01-05T10:00:00Z"));
        assert_eq!(first.shift_end, utc("2026-01-05T14:00:00Z"));

        // Both cover 13:00; the later entry wins.
        let overlap = only(&s, utc("2026-01-05T13:00:00Z"));
        assert_eq!((overlap.user_id, overlap.override_id), (y, Some(oy)));
        assert_eq!(overlap.shift_end, utc("2026-01-05T16:00:00Z"));

        // The end is exclusive: the rotation is back at 16:00.
        let after = only(&s, utc("2026-01-05T16:00:00Z"));
        assert_eq!((after.user_id, after.override_id), (team[0], None));
        assert_eq!(after.shift_end, utc("2026-01-06T00:00:00Z"));

        // An override replaces every layer, not just the first.
        s.rotations
            .push(rotation(users(3), 12, "2026-01-01", time(6, 0)));
        assert_eq!(on_call(&s, utc("2026-01-05T09:00:00Z")).len(), 2);
        assert_eq!(only(&s, utc("2026-01-05T11:00:00Z")).user_id, x);
    }

    #[test]
    fn nobody_is_on_call_before_the_first_handoff() {
        let s = schedule(
            "Asia/Tokyo",
            vec![rotation(users(6), 8, "2026-11-02", time(7, 0))],
        );
        assert!(on_call(&s, utc("2026-11-01T21:59:59Z")).is_empty());
        assert!(on_call(&s, utc("2020-01-01T00:00:00Z")).is_empty());
        assert_eq!(on_call(&s, utc("2026-11-01T22:00:00Z")).len(), 1);
    }

    #[test]
    fn each_started_layer_yields_one_entry_in_rotation_order() {
        let primary = users(2);
        let secondary = vec![Uuid::from_u128(0x51), Uuid::from_u128(0x52)];
        let s = schedule(
            "Europe/Berlin",
            vec![
                rotation(primary.clone(), 24, "2026-06-01", time(9, 0)),
                rotation(secondary.clone(), 168, "2026-06-08", time(9, 0)),
            ],
        );
        // Only the primary layer has started on 2 June.
        let early = on_call(&s, utc("2026-06-02T12:00:00Z"));
        assert_eq!(early.len(), 1);
        assert_eq!((early[0].rotation, early[0].user_id), (Some(0), primary[1]));

        let both = on_call(&s, utc("2026-06-09T12:00:00Z"));
        assert_eq!(both.len(), 2);
        assert_eq!((both[0].rotation, both[0].user_id), (Some(0), primary[0]));
        assert_eq!((both[1].rotation, both[1].user_id), (Some(1), secondary[0]));
        assert_eq!(both[1].shift_start, utc("2026-06-08T07:00:00Z"));
        assert_eq!(both[1].shift_end, utc("2026-06-15T07:00:00Z"));
    }

    #[test]
    fn handoff_inside_the_spring_gap_happens_at_the_jump() {
        let s = schedule(
            "America/New_York",
            vec![rotation(users(2), 24, "2026-03-01", time(2, 30))],
        );
        // 02:30 does not exist on 8 March: the hand-off is when 02:00 EST
        // becomes 03:00 EDT, i.e. 07:00Z.
        let gap_day = only(&s, utc("2026-03-08T07:00:00Z"));
        assert_eq!(gap_day.shift_start, utc("2026-03-08T07:00:00Z"));
        assert_eq!(gap_day.shift_end, utc("2026-03-09T06:30:00Z")); // 02:30 EDT
        let day_before = only(&s, utc("2026-03-08T06:59:59Z"));
        assert_eq!(day_before.shift_start, utc("2026-03-07T07:30:00Z")); // 02:30 EST
        assert_eq!(day_before.shift_end, gap_day.shift_start);
        assert_ne!(day_before.user_id, gap_day.user_id);
    }

    #[test]
    fn handoffs_in_a_skipped_day_collapse_onto_the_jump() {
        // Samoa went from 29 December 2011 23:59:59 (-10) straight to
        // 31 December 00:00 (+14), i.e. at 2011-12-30T10:00Z.
        let s = schedule(
            "Pacific/Apia",
            vec![rotation(users(4), 1, "2011-12-01", time(0, 0))],
        );
        let last_before = only(&s, utc("2011-12-30T09:59:59Z"));
        assert_eq!(last_before.shift_start, utc("2011-12-30T09:00:00Z"));
        assert_eq!(last_before.shift_end, utc("2011-12-30T10:00:00Z"));
        // The 24 hourly hand-offs of 30 December all land on the jump and
        // their zero-length shifts are passed over.
        let first_after = only(&s, utc("2011-12-30T10:00:00Z"));
        assert_eq!(first_after.shift_start, utc("2011-12-30T10:00:00Z"));
        assert_eq!(first_after.shift_end, utc("2011-12-30T11:00:00Z"));
        assert_eq!(
            local("Pacific/Apia", first_after.shift_start).to_string(),
            "2011-12-31 00:00:00"
        );
    }

    #[test]
    fn handoff_inside_the_repeated_hour_happens_the_first_time() {
        let s = schedule(
            "America/New_York",
            vec![rotation(users(2), 24, "2026-10-01", time(1, 30))],
        );
        // 01:30 happens at 05:30Z (EDT) and 06:30Z (EST); the hand-off is the
        // first, and the second 01:30 does not hand off again.
        let shift = only(&s, utc("2026-11-01T06:30:00Z"));
        assert_eq!(shift.shift_start, utc("2026-11-01T05:30:00Z"));
        assert_eq!(shift.shift_end, utc("2026-11-02T06:30:00Z")); // 01:30 EST
        assert_eq!(shift.shift_end - shift.shift_start, hours(25));
        assert_eq!(&only(&s, utc("2026-11-01T05:30:00Z")), &shift);
        assert_ne!(only(&s, utc("2026-11-01T05:29:59Z")).user_id, shift.user_id);
    }

    /// Every instant lies in exactly one shift and shifts tile the time line,
    /// including odd transitions: Lord Howe's half-hour DST and Samoa skipping
    /// 30 December 2011 (hand-offs inside the skipped day collapse onto the
    /// jump and must not leave a hole or go backwards).
    #[test]
    fn shifts_tile_the_time_line_across_transitions() {
        let cases = [
            (
                "America/New_York",
                1,
                "2026-01-01",
                time(0, 0),
                "2026-03-06",
                "2026-03-10",
            ),
            (
                "America/New_York",
                8,
                "2026-01-01",
                time(7, 0),
                "2026-10-30",
                "2026-11-03",
            ),
            (
                "Australia/Lord_Howe",
                1,
                "2026-01-01",
                time(1, 30),
                "2026-04-03",
                "2026-04-07",
            ),
            (
                "Australia/Lord_Howe",
                3,
                "2026-01-01",
                time(2, 0),
                "2026-10-02",
                "2026-10-06",
            ),
            (
                "Pacific/Apia",
                1,
                "2011-12-01",
                time(0, 0),
                "2011-12-28",
                "2012-01-02",
            ),
            (
                "Pacific/Apia",
                8,
                "2011-12-01",
                time(23, 0),
                "2011-12-28",
                "2012-01-02",
            ),
            (
                "Europe/Berlin",
                5,
                "2026-03-01",
                time(1, 0),
                "2026-03-27",
                "2026-03-31",
            ),
        ];
        for (zone, shift_hours, start, handoff, from, to) in cases {
            let s = schedule(zone, vec![rotation(users(4), shift_hours, start, handoff)]);
            let mut at = utc(&format!("{from}T00:00:00Z"));
            let until = utc(&format!("{to}T00:00:00Z"));
            let mut previous: Option<OnCall> = None;
            while at < until {
                let current = only(&s, at);
                let label = format!("{zone} {shift_hours}h at {at}");
                assert!(
                    current.shift_start <= at && at < current.shift_end,
                    "{label}"
                );
                if let Some(prev) = &previous {
                    if prev.shift_start != current.shift_start {
                        assert_eq!(prev.shift_end, current.shift_start, "{label}");
                    } else {
                        assert_eq!(prev, &current, "{label}");
                    }
                }
                previous = Some(current);
                at += TimeDelta::minutes(10);
            }
        }
    }

    #[test]
    fn validate_accepts_the_reference_schedule() {
        let s = schedule(
            "Asia/Tokyo",
            vec![rotation(users(6), 8, "2026-11-02", time(7, 0))],
        );
        assert_eq!(validate(&s), Ok(chrono_tz::Asia::Tokyo));
    }

    #[test]
    fn validate_rejects_an_unknown_zone() {
        let s = schedule(
            "Mars/Base",
            vec![rotation(users(1), 8, "2026-11-02", time(7, 0))],
        );
        let err = validate(&s).unwrap_err();
        assert!(err.contains("time_zone"), "{err}");
        assert!(err.contains("Mars/Base"), "{err}");
    }

    #[test]
    fn validate_rejects_bad_rotations() {
        let no_layers = schedule("UTC", Vec::new());
        assert!(validate(&no_layers).unwrap_err().contains("rotations"));

        let zero = schedule("UTC", vec![rotation(users(1), 0, "2026-01-01", time(0, 0))]);
        assert!(validate(&zero)
            .unwrap_err()
            .contains("rotations[0].shift_hours"));

        let too_long = schedule(
            "UTC",
            vec![rotation(
                users(1),
                SHIFT_HOURS_MAX + 1,
                "2026-01-01",
                time(0, 0),
            )],
        );
        assert!(validate(&too_long).unwrap_err().contains("shift_hours"));

        let longest = schedule(
            "UTC",
            vec![rotation(
                users(1),
                SHIFT_HOURS_MAX,
                "2026-01-01",
                time(0, 0),
            )],
        );
        assert!(validate(&longest).is_ok());

        let nobody = schedule(
            "UTC",
            vec![
                rotation(users(1), 8, "2026-01-01", time(0, 0)),
                rotation(Vec::new(), 8, "2026-01-01", time(0, 0)),
            ],
        );
        assert!(validate(&nobody)
            .unwrap_err()
            .contains("rotations[1].users"));

        let crowd = schedule(
            "UTC",
            vec![rotation(
                users(USERS_MAX as u128 + 1),
                8,
                "2026-01-01",
                time(0, 0),
            )],
        );
        assert!(validate(&crowd).unwrap_err().contains("users"));

        let twice = Uuid::from_u128(7);
        let repeated = schedule(
            "UTC",
            vec![rotation(
                vec![twice, Uuid::from_u128(8), twice],
                8,
                "2026-01-01",
                time(0, 0),
            )],
        );
        assert!(validate(&repeated).is_ok());
    }

    #[test]
    fn validate_rejects_an_override_that_does_not_end_after_it_starts() {
        let mut s = schedule("UTC", vec![rotation(users(1), 8, "2026-01-01", time(0, 0))]);
        let at = utc("2026-01-05T10:00:00Z");
        for end in [at, at - TimeDelta::seconds(1)] {
            s.overrides = vec![Override {
                override_id: Uuid::from_u128(1),
                user_id: Uuid::from_u128(2),
                start: at,
                end,
            }];
            let err = validate(&s).unwrap_err();
            assert!(err.contains("overrides[0]"), "{err}");
        }
    }

    #[test]
    fn unvalidated_schedules_yield_nobody_rather_than_panic() {
        let mut s = schedule(
            "Mars/Base",
            vec![rotation(users(1), 8, "2026-01-01", time(0, 0))],
        );
        assert!(on_call(&s, utc("2026-06-01T00:00:00Z")).is_empty());
        s.time_zone = "UTC".to_owned();
        s.rotations
            .push(rotation(Vec::new(), 8, "2026-01-01", time(0, 0)));
        s.rotations
            .push(rotation(users(1), 0, "2026-01-01", time(0, 0)));
        let all = on_call(&s, utc("2026-06-01T00:00:00Z"));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].rotation, Some(0));
    }
}
