//! The fake's clock: the system clock plus an offset a test can move forward
//! ([`crate::FakeGraph::advance_clock`]) to expire codes, tokens and upload sessions without
//! sleeping, and the ISO 8601 UTC timestamps Graph writes (`2025-01-15T09:30:00Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch on the fake's clock.
pub fn now(offset_secs: i64) -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    real + offset_secs
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `DateTimeOffset` as Graph serialises it, in UTC with a `Z`.
pub fn iso(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// The identity platform's error `timestamp` (`2016-01-09 02:02:12Z`).
pub fn sts(secs: i64) -> String {
    iso(secs).replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso(1_736_933_400), "2025-01-15T09:30:00Z");
        assert_eq!(super::sts(1_736_933_400), "2025-01-15 09:30:00Z");
    }
}
