//! Jira's date formats, in UTC (every fake user's time zone is `Etc/UTC`), without a date
//! library: REST timestamps (`2025-01-15T09:30:00.000+0000`) and JQL date literals
//! (`"2025-01-15 09:30"`, `"2025/01/15"`, ...).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Epoch milliseconds as Jira writes them in REST answers.
pub fn jira_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (rest / 3_600_000, rest / 60_000 % 60);
    let (second, milli) = (rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}+0000")
}

/// A JQL date literal: `yyyy-MM-dd[ HH:mm]` or `yyyy/MM/dd[ HH:mm]`, in the user's zone (UTC).
pub fn parse_jql_date(text: &str) -> Option<i64> {
    let (date, time) = match text.trim().split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (text.trim(), None),
    };
    let parts: Vec<&str> = date.split(['-', '/']).collect();
    let [year, month, day] = parts.as_slice() else {
        return None;
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) =
        (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let minutes = match time {
        None => 0,
        Some(t) => {
            let (h, m) = t.split_once(':')?;
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if !(0..24).contains(&h) || !(0..60).contains(&m) || t.len() != 5 {
                return None;
            }
            h * 60 + m
        }
    };
    Some(days_from_civil(year, month, day) * 86_400_000 + minutes * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(jira_time(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(jira_time(1_736_933_400_123), "2025-01-15T09:30:00.123+0000");
        assert_eq!(parse_jql_date("2025-01-15 09:30"), Some(1_736_933_400_000));
        assert_eq!(parse_jql_date("2025/01/15"), Some(1_736_899_200_000));
        assert_eq!(parse_jql_date("2025-1-15"), None);
        assert_eq!(parse_jql_date("2025-01-15 9:30"), None);
    }
}
