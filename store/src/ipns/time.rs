//! RFC 3339 timestamps as IPNS records carry them (`Validity`), to the nanosecond.
//!
//! Times are kept as nanoseconds since the Unix epoch in an `i128`, which holds every instant of
//! the years 0000–9999 (all that RFC 3339 can write) without overflow. Formatting always writes
//! UTC with nine fraction digits (`2024-05-01T12:00:00.000000000Z`, as js-ipns does); parsing also
//! accepts Go's `RFC3339Nano` form (trailing zeros dropped, no fraction at all) and numeric
//! offsets (`+02:00`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i128 = 86_400;

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Nanoseconds since the epoch of a `SystemTime` (negative before 1970).
pub(crate) fn to_unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The `SystemTime` of nanoseconds since the epoch, if the platform can hold it.
pub(crate) fn from_unix_nanos(nanos: i128) -> Option<SystemTime> {
    let magnitude = nanos.unsigned_abs();
    let secs = u64::try_from(magnitude / NANOS_PER_SEC as u128).ok()?;
    let sub = (magnitude % NANOS_PER_SEC as u128) as u32;
    let d = Duration::new(secs, sub);
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, or `None` outside the years 0000–9999.
pub(crate) fn format_rfc3339(nanos: i128) -> Option<String> {
    let secs = nanos.div_euclid(NANOS_PER_SEC);
    let frac = nanos.rem_euclid(NANOS_PER_SEC);
    let days = i64::try_from(secs.div_euclid(SECS_PER_DAY)).ok()?;
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    ))
}

/// `YYYY-MM-DDTHH:MM:SSZ`: whole seconds, UTC, for people (`share log`, `share ls`).
pub fn format_utc_seconds(t: SystemTime) -> String {
    let nanos = to_unix_nanos(t);
    match format_rfc3339(nanos - nanos.rem_euclid(NANOS_PER_SEC)) {
        // Cut the nine-digit fraction: "…:SS.000000000Z" -> "…:SSZ".
        Some(text) => format!("{}Z", &text[..19]),
        None => "(a time outside the years 0000-9999)".to_string(),
    }
}

/// A fixed-width decimal field of `text` at `at..at + len`.
fn digits(text: &[u8], at: usize, len: usize) -> Option<u32> {
    let field = text.get(at..at.checked_add(len)?)?;
    field.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn expect(text: &[u8], at: usize, byte: u8) -> Option<()> {
    (text.get(at) == Some(&byte)).then_some(())
}

/// Parses an RFC 3339 timestamp into nanoseconds since the epoch; `None` if it is not one.
pub(crate) fn parse_rfc3339(text: &[u8]) -> Option<i128> {
    let year = digits(text, 0, 4)?;
    expect(text, 4, b'-')?;
    let month = digits(text, 5, 2)?;
    expect(text, 7, b'-')?;
    let day = digits(text, 8, 2)?;
    expect(text, 10, b'T')?;
    let hour = digits(text, 11, 2)?;
    expect(text, 13, b':')?;
    let minute = digits(text, 14, 2)?;
    expect(text, 16, b':')?;
    let second = digits(text, 17, 2)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut frac: i128 = 0;
    if text.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < text.len() && text[at].is_ascii_digit() {
            at += 1;
        }
        let n = at - start;
        if n == 0 || n > 9 {
            return None;
        }
        let value = i128::from(digits(text, start, n)?);
        frac = value * 10i128.pow(9 - n as u32);
    }
    let offset_secs: i128 = match text.get(at) {
        Some(b'Z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(text, at + 1, 2)?;
            expect(text, at + 3, b':')?;
            let om = digits(text, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            at += 6;
            let s = i128::from(oh * 3600 + om * 60);
            if sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return None,
    };
    if at != text.len() {
        return None;
    }
    let days = i128::from(days_from_civil(year, month, day));
    let secs = days * SECS_PER_DAY
        + i128::from(hour) * 3600
        + i128::from(minute) * 60
        + i128::from(second)
        - offset_secs;
    Some(secs * NANOS_PER_SEC + frac)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn utc_seconds_for_people() {
        let at = |secs: u64| {
            super::format_utc_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs))
        };
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_083_199), "2026-11-30T23:59:59Z");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00.000000001Z"), Some(1));
        assert_eq!(
            parse_rfc3339(b"2000-03-01T00:00:00.5Z"),
            Some(951_868_800 * NANOS_PER_SEC + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339(b"2000-03-01T02:00:00+02:00"),
            Some(951_868_800 * NANOS_PER_SEC)
        );
        assert_eq!(parse_rfc3339(b"1969-12-31T23:59:59Z"), Some(-NANOS_PER_SEC));
        assert_eq!(
            format_rfc3339(951_868_800 * NANOS_PER_SEC + 5).unwrap(),
            "2000-03-01T00:00:00.000000005Z"
        );
        assert_eq!(
            format_rfc3339(-1).unwrap(),
            "1969-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            &b""[..],
            b"2024-02-30T00:00:00Z",
            b"2023-02-29T00:00:00Z",
            b"2024-13-01T00:00:00Z",
            b"2024-01-01T24:00:00Z",
            b"2024-01-01T00:60:00Z",
            b"2024-01-01T00:00:60Z",
            b"2024-01-01 00:00:00Z",
            b"2024-01-01T00:00:00",
            b"2024-01-01T00:00:00.Z",
            b"2024-01-01T00:00:00.0000000001Z",
            b"2024-01-01T00:00:00Zjunk",
            b"2024-01-01T00:00:00+0200",
            b"+024-01-01T00:00:00Z",
            b"2024-01-01T00:00:00z",
        ] {
            assert_eq!(
                parse_rfc3339(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_rfc3339(b"2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn year_range_is_0_to_9999() {
        let max = parse_rfc3339(b"9999-12-31T23:59:59.999999999Z").unwrap();
        assert!(format_rfc3339(max).is_some());
        assert_eq!(format_rfc3339(max + 1), None);
        let min = parse_rfc3339(b"0000-01-01T00:00:00Z").unwrap();
        assert!(format_rfc3339(min).is_some());
        assert_eq!(format_rfc3339(min - 1), None);
    }

    #[test]
    fn system_time_conversions() {
        let now = SystemTime::now();
        assert_eq!(from_unix_nanos(to_unix_nanos(now)), Some(now));
        let before = UNIX_EPOCH - Duration::new(5, 7);
        assert_eq!(to_unix_nanos(before), -5_000_000_007);
        assert_eq!(from_unix_nanos(-5_000_000_007), Some(before));
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(
            nanos in parse_rfc3339(b"0000-01-01T00:00:00Z").unwrap()
                ..=parse_rfc3339(b"9999-12-31T23:59:59.999999999Z").unwrap()
        ) {
            let text = format_rfc3339(nanos).unwrap();
            prop_assert_eq!(parse_rfc3339(text.as_bytes()), Some(nanos));
        }

        #[test]
        fn parsing_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_rfc3339(&bytes);
        }
    }
}
