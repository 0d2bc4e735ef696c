//! Recorded series, one row per value: what `flagger-rs plan --replay` reads.
//!
//! ```text
//! # interval,metric,side,value[,total]
//! 1,latency,canary,103.2
//! 1,latency,primary,99.8
//! 1,errors,canary,3,1000
//! ```
//!
//! `side` is `canary` or `primary`. A row with a fifth column is an error metric: `value` errors out
//! of `total` requests over the interval; a metric must keep one form. Blank lines, `#` comments and
//! a header line starting with `interval` are skipped. A hand-written reader because the format is
//! this small and fixed: no quoting, no embedded commas.

use std::collections::BTreeMap;

use crate::counts::Counts;

/// One metric's values over one interval, per side.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    Samples { canary: Vec<f64>, primary: Vec<f64> },
    Counts { canary: Counts, primary: Counts },
}

/// Interval number → metric name → the interval's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    pub intervals: BTreeMap<u32, BTreeMap<String, Window>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RecordingError {
    pub line: usize,
    pub message: String,
}

impl Recording {
    pub fn parse(text: &str) -> Result<Self, RecordingError> {
        let mut recording = Recording::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let row = raw.trim();
            if row.is_empty() || row.starts_with('#') || row.starts_with("interval") {
                continue;
            }
            let fail = |message: String| RecordingError { line, message };
            let fields: Vec<&str> = row.split(',').map(str::trim).collect();
            let (interval, metric, side, value, total) = match fields.as_slice() {
                [i, m, s, v] => (*i, *m, *s, *v, None),
                [i, m, s, v, t] => (*i, *m, *s, *v, Some(*t)),
                _ => {
                    return Err(fail(format!(
                        "expected interval,metric,side,value[,total], got {} fields",
                        fields.len()
                    )));
                }
            };
            let interval: u32 = interval
                .parse()
                .map_err(|_| fail(format!("interval {interval:?} is not a whole number")))?;
            let canary = match side {
                "canary" => true,
                "primary" => false,
                other => {
                    return Err(fail(format!(
                        "side {other:?} is neither canary nor primary"
                    )));
                }
            };
            let windows = recording.intervals.entry(interval).or_default();
            match total {
                None => {
                    let value: f64 = value
                        .parse()
                        .map_err(|_| fail(format!("value {value:?} is not a number")))?;
                    let window = windows
                        .entry(metric.to_string())
                        .or_insert(Window::Samples {
                            canary: Vec::new(),
                            primary: Vec::new(),
                        });
                    let Window::Samples {
                        canary: c,
                        primary: p,
                    } = window
                    else {
                        return Err(fail(format!("metric {metric:?} mixes samples and counts")));
                    };
                    if canary { c } else { p }.push(value);
                }
                Some(total) => {
                    let errors: u64 = value
                        .parse()
                        .map_err(|_| fail(format!("errors {value:?} is not a whole number")))?;
                    let total: u64 = total
                        .parse()
                        .map_err(|_| fail(format!("total {total:?} is not a whole number")))?;
                    let empty = Counts {
                        errors: 0,
                        total: 0,
                    };
                    let window = windows.entry(metric.to_string()).or_insert(Window::Counts {
                        canary: empty,
                        primary: empty,
                    });
                    let Window::Counts {
                        canary: c,
                        primary: p,
                    } = window
                    else {
                        return Err(fail(format!("metric {metric:?} mixes samples and counts")));
                    };
                    let side = if canary { c } else { p };
                    side.errors = side.errors.saturating_add(errors);
                    side.total = side.total.saturating_add(total);
                }
            }
        }
        Ok(recording)
    }
}

#[cfg(test)]
mod tests {
    use super::{Recording, Window};
    use crate::counts::Counts;

    #[test]
    fn reads_samples_and_counts_per_interval() {
        let text = "# a recording\ninterval,metric,side,value,total\n1,latency,canary,10\n1,latency,canary,11\n1,latency,primary,9\n1,errors,canary,3,1000\n1,errors,primary,1,1000\n2,errors,canary,2,500\n";
        let r = Recording::parse(text).unwrap();
        assert_eq!(
            r.intervals[&1]["latency"],
            Window::Samples {
                canary: vec![10.0, 11.0],
                primary: vec![9.0]
            }
        );
        assert_eq!(
            r.intervals[&1]["errors"],
            Window::Counts {
                canary: Counts {
                    errors: 3,
                    total: 1000
                },
                primary: Counts {
                    errors: 1,
                    total: 1000
                }
            }
        );
        assert_eq!(r.intervals.len(), 2);
    }

    #[test]
    fn names_the_line_of_a_bad_row() {
        let e = Recording::parse("1,latency,canary,10\n1,latency,baseline,3\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("baseline"), "{e}");
        let e = Recording::parse("1,m,canary,1\n1,m,canary,1,10\n").unwrap_err();
        assert!(e.message.contains("mixes"), "{e}");
        assert!(Recording::parse("x,m,canary,1\n").is_err());
        assert!(Recording::parse("1,m,canary\n").is_err());
    }
}
