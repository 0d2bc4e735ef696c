//! Values as Go's `flag` package reads them, for the command lines of the controller and the
//! loadtester, which take Flagger's flags: one parser each, shared by both.

use std::time::Duration;

/// A duration flag (`-timeout=1h`, `-control-loop-interval=1m30s`): Go's `time.ParseDuration`.
pub fn duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

/// A boolean flag's value (`-enable-leader-election=false`): Go's `strconv.ParseBool`.
pub fn bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean {text:?}: expected true or false (or 1, t, T, TRUE, True, 0, f, F, FALSE, False)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_take_every_form_go_takes() {
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(bool(no), Ok(false), "{no}");
        }
        for bad in ["", "yes", "on", "tRUE", "2"] {
            assert!(bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_go_durations() {
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        let error = duration("soon").unwrap_err();
        assert!(error.contains("soon"), "{error}");
    }
}
