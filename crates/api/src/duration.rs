//! Go-style durations (`90s`, `1m30s`, `1.5h`, `300ms`) as Flagger parses them.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration {0:?}: expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 30s or 1m30s"
    )]
    Invalid(String),
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// The pattern Flagger's CRD puts on duration fields. It is not anchored at the end, so `1m30s`
/// and `5ms` pass while `1h` and `1.5m` do not.
pub fn matches_schema_pattern(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(s.as_bytes().get(digits), Some(b'm' | b's'))
}

/// Parses a duration as Go's `time.ParseDuration` does (without a sign: none of Flagger's
/// durations may be negative).
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(s.to_string()));
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = body;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let unit_len = after
            .bytes()
            .take_while(|b| !b.is_ascii_digit() && *b != b'.')
            .count();
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| DurationError::Overflow(s.to_string()))?
        };
        let mut frac_nanos: u128 = 0;
        let mut scale: u128 = 1;
        for digit in frac.bytes().take(18) {
            frac_nanos = frac_nanos * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        total_nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(frac_nanos * unit_nanos / scale))
            .and_then(|n| total_nanos.checked_add(n))
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
        rest = next;
    }
    if total_nanos > u128::from(u64::MAX) {
        return Err(DurationError::Overflow(s.to_string()));
    }
    let nanos = total_nanos as u64;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way Go's `Duration.String` does for whole seconds and above
/// (`1m30s`, `2h0m0s`), and as milliseconds below a second.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        let millis = d.subsec_millis();
        return if millis == 0 {
            "0s".into()
        } else {
            format!("{millis}ms")
        };
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_parses() {
        let cases = [
            ("90s", 90_000),
            ("1m30s", 90_000),
            ("2m", 120_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("1h2m3s", 3_723_000),
            ("0", 0),
            ("10us", 0),
        ];
        for (text, millis) in cases {
            assert_eq!(parse(text).map(|d| d.as_millis()), Ok(millis), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "",
            "10",
            "1d",
            "m",
            "1.2.3s",
            "-1s",
            "s10",
            "1 m",
            "99999999999999999999h",
        ] {
            assert!(parse(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn schema_pattern_is_unanchored_at_the_end() {
        for ok in ["90s", "2m", "1m30s", "5ms"] {
            assert!(matches_schema_pattern(ok), "{ok}");
        }
        for bad in ["1h", "1.5m", "", "s", "m5"] {
            assert!(!matches_schema_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(format(Duration::from_secs(5)), "5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }
}
