//! Go's `time.ParseDuration` syntax, which Flagger's `-timeout` flag and hey's `-z` use
//! (`1h`, `1m30s`, `1.5h`, `300ms`).

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Go duration. Negative durations are refused: every duration here bounds work.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    if rest.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    // Go accepts a bare "0" without a unit and nothing else.
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(err("expected a number"));
        }
        let value: f64 = number.parse().map_err(|_| err("bad number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        total += value * seconds_per_unit;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| err("out of range"))
}

/// Formats like Go's `Duration.String` for whole seconds and above, enough for log lines.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    if secs == 0 {
        return format!("{millis}ms");
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let seconds = if millis == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{millis:03}s")
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("0", 0),
            ("2h45m", 9_900_000),
            ("10s", 10_000),
        ];
        for (input, millis) in cases {
            assert_eq!(parse(input), Ok(Duration::from_millis(millis)), "{input}");
        }
    }

    #[test]
    fn refuses_bad_durations() {
        for input in ["", "10", "1x", "-1s", "s", ".s", "1.2.3s"] {
            assert!(parse(input).is_err(), "{input} should be refused");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(1500)), "1.500s");
        assert_eq!(format(Duration::from_millis(20)), "20ms");
    }
}
