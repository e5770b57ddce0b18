//! Timestamps for the prefix: local `HH:MM:SS` (honcho) and RFC 3339 UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Local wall-clock `HH:MM:SS` for a Unix time in seconds (honours `TZ`).
pub(crate) fn local_hms(secs: i64) -> [u8; 8] {
    // `time_t` is 64-bit on the 64-bit targets procrun supports (glibc and musl alike); it is
    // not named because libc deprecates the alias on musl.
    let t: i64 = secs;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value, and
    // `localtime_r` is the re-entrant variant that only writes into the `tm` we own.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return hms(secs.rem_euclid(86_400) as u32);
        }
        tm
    };
    hms((tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) as u32)
}

fn hms(day_secs: u32) -> [u8; 8] {
    let (h, m, s) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
    let d = |n: u32| b'0' + n as u8;
    [
        d(h / 10),
        d(h % 10),
        b':',
        d(m / 10),
        d(m % 10),
        b':',
        d(s / 10),
        d(s % 10),
    ]
}

/// Seconds and milliseconds since the Unix epoch.
pub(crate) fn now() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time.
pub(crate) fn rfc3339_utc(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's published algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = hms(rem);
    format!(
        "{year:04}-{month:02}-{day:02}T{}.{millis:03}Z",
        std::str::from_utf8(&t).unwrap_or("00:00:00")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_798_761_599, 999, "2026-12-31T23:59:59.999Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
        ];
        for (s, ms, want) in cases {
            assert_eq!(rfc3339_utc(s, ms), want);
        }
        assert_eq!(&hms(3 * 3600 + 4 * 60 + 5), b"03:04:05");
    }
}
