//! UTC calendar formatting for log lines, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC time broken into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    pub(crate) fn from(t: SystemTime) -> Civil {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: d.subsec_millis(),
        }
    }

    /// Apache's `%t`: `27/Nov/2026:13:20:01 +0000`.
    pub(crate) fn apache(&self) -> String {
        format!(
            "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// Python logging's `%(asctime)s`: `2026-11-27 13:20:01,123`.
    pub(crate) fn asctime(&self) -> String {
        format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(
            Civil::from(UNIX_EPOCH).apache(),
            "01/Jan/1970:00:00:00 +0000"
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_795_785_601_042);
        assert_eq!(Civil::from(t).apache(), "27/Nov/2026:13:20:01 +0000");
        assert_eq!(Civil::from(t).asctime(), "2026-11-27 13:20:01,042");
        // A leap day.
        assert_eq!(
            Civil::from(UNIX_EPOCH + Duration::from_secs(1_709_251_199)).apache(),
            "29/Feb/2024:23:59:59 +0000"
        );
    }
}
