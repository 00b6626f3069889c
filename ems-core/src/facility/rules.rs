//! Pure rules of facility time and stock, shared by every backend.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::{FacilityBooking, FacilityStatus, Resource, SlotDef, When};
use crate::{Error, Result};

fn to_utc(
    tz: Tz,
    local: NaiveDateTime,
    field: &'static str,
    latest: bool,
) -> Result<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        // In a fold (clocks set back) a start takes the first occurrence, an end the last.
        LocalResult::Ambiguous(a, b) => Ok(if latest { b } else { a }.with_timezone(&Utc)),
        LocalResult::None => Err(Error::invalid(
            field,
            format!("{local} does not exist in {tz} (daylight-saving gap)"),
        )),
    }
}

/// The UTC interval `when` means for `resource`, DST-correct: a named slot must be
/// one of the resource's; a range must end after it starts and must not cross a
/// daylight-saving gap (local times that do not exist), even when both of its ends
/// exist — a multi-day range over the night the clocks go forward is refused.
pub fn local_interval(resource: &Resource, when: &When) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    match when {
        When::Slot { date, slot } => {
            let def = resource.slot(slot).ok_or_else(|| {
                Error::invalid(
                    "when.slot",
                    format!("{slot:?} is not a slot of {}", resource.name),
                )
            })?;
            slot_interval(resource.time_zone, *date, def)
        }
        When::Range { start, end } => range_interval(resource.time_zone, *start, *end),
    }
}

/// The UTC interval of slot `def` on local `date` in `tz` (see [`local_interval`]).
pub fn slot_interval(
    tz: Tz,
    date: NaiveDate,
    def: &SlotDef,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    range_interval(tz, date.and_time(def.start), date.and_time(def.end))
}

fn range_interval(
    tz: Tz,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    if end <= start {
        return Err(Error::invalid("when.end", "must be after start"));
    }
    let (s, e) = (
        to_utc(tz, start, "when.start", false)?,
        to_utc(tz, end, "when.end", true)?,
    );
    if (e - s) < (end - start) {
        return Err(Error::invalid(
            "when",
            format!("{start}..{end} crosses a daylight-saving gap in {tz}"),
        ));
    }
    Ok((s, e))
}

/// The most units of a resource in use at any instant of `[start, end)` among
/// `bookings` (active ones only).
pub fn peak_usage<'a>(
    bookings: impl IntoIterator<Item = &'a FacilityBooking>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> u32 {
    let mut overlapping = bookings
        .into_iter()
        .filter(|b| b.status == FacilityStatus::Active && b.start < end && start < b.end);
    // Usually none or one overlaps (always at most one for exclusive resources).
    let Some(first) = overlapping.next() else {
        return 0;
    };
    let Some(second) = overlapping.next() else {
        return first.quantity;
    };
    let mut edges: Vec<(DateTime<Utc>, i64)> = Vec::new();
    for b in [first, second].into_iter().chain(overlapping) {
        edges.push((b.start.max(start), i64::from(b.quantity)));
        edges.push((b.end.min(end), -i64::from(b.quantity)));
    }
    // Ends before starts at the same instant: back-to-back bookings do not overlap.
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    u32::try_from(peak).unwrap_or(u32::MAX)
}
