//! The controller's own account of where a late tick's time went (its `flagger_worker_wait_seconds`,
//! `flagger_api_request_duration_seconds`, `flagger_api_budget_wait_seconds_total` and
//! `flagger_outbound_*_seconds` series), read from two scrapes of its `/metrics` and printed as
//! the difference: what one stretch of a benchmark cost, not the whole life of the process.

use std::collections::BTreeMap;

/// One histogram series: its sum, count and cumulative buckets (upper bound, count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub sum: f64,
    pub count: f64,
    pub buckets: Vec<(f64, f64)>,
}

impl Series {
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        }
    }

    /// The upper bound of the bucket that holds quantile `q`: "at most this long".
    pub fn quantile_bound(&self, q: f64) -> f64 {
        let wanted = q * self.count;
        self.buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= wanted)
            .map_or(f64::INFINITY, |(le, _)| *le)
    }

    fn minus(&self, before: &Series) -> Series {
        Series {
            sum: self.sum - before.sum,
            count: self.count - before.count,
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let was = before
                        .buckets
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |(_, n)| *n);
                    (*le, n - was)
                })
                .collect(),
        }
    }
}

/// The histograms by (family, labels other than `le`), and the budget's wait in seconds.
#[derive(Clone, Debug, Default)]
pub struct TickTimings {
    pub histograms: BTreeMap<(String, String), Series>,
    pub budget_wait_s: f64,
}

const FAMILIES: [&str; 4] = [
    "flagger_worker_wait_seconds",
    "flagger_api_request_duration_seconds",
    "flagger_outbound_wait_seconds",
    "flagger_outbound_call_seconds",
];

impl TickTimings {
    /// Reads the series from an OpenMetrics exposition.
    pub fn parse(exposition: &str) -> TickTimings {
        let mut out = TickTimings::default();
        for line in exposition.lines() {
            if let Some(value) = line.strip_prefix("flagger_api_budget_wait_seconds_total ") {
                out.budget_wait_s = value.trim().parse().unwrap_or(0.0);
                continue;
            }
            let Some(family) = FAMILIES.iter().find(|f| line.starts_with(*f)) else {
                continue;
            };
            let rest = &line[family.len()..];
            let Some((part, rest)) = rest.split_once('{') else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            // A watch's answer is the start of a stream that then runs for minutes: not a wait.
            if labels.contains(r#"method="WATCH""#) {
                continue;
            }
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let mut le = None;
            let others: Vec<&str> = labels
                .split(',')
                .filter(|pair| match pair.strip_prefix("le=\"") {
                    Some(bound) => {
                        le = bound.trim_end_matches('"').parse::<f64>().ok();
                        false
                    }
                    None => true,
                })
                .collect();
            let series = out
                .histograms
                .entry((family.to_string(), others.join(",")))
                .or_default();
            match (part, le) {
                ("_sum", _) => series.sum = value,
                ("_count", _) => series.count = value,
                ("_bucket", Some(le)) => series.buckets.push((le, value)),
                _ => {}
            }
        }
        out
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &TickTimings) -> TickTimings {
        TickTimings {
            histograms: self
                .histograms
                .iter()
                .map(|(key, series)| {
                    let was = before.histograms.get(key).cloned().unwrap_or_default();
                    (key.clone(), series.minus(&was))
                })
                .filter(|(_, series)| series.count > 0.0)
                .collect(),
            budget_wait_s: self.budget_wait_s - before.budget_wait_s,
        }
    }

    /// One line per series: count, mean and the bucket of the 99th percentile.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "client requests stood waiting for a QPS token: {:.1} s in all",
            self.budget_wait_s
        )];
        for ((family, labels), series) in &self.histograms {
            let name = family
                .trim_start_matches("flagger_")
                .trim_end_matches("_seconds");
            lines.push(format!(
                "{name} {{{labels}}}: {:.0} times, mean {:.3} s, p99 ≤ {} s",
                series.count,
                series.mean(),
                series.quantile_bound(0.99)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
flagger_worker_wait_seconds_sum{turn="scheduled"} 1.0
flagger_worker_wait_seconds_count{turn="scheduled"} 10
flagger_worker_wait_seconds_bucket{le="0.5",turn="scheduled"} 10
flagger_worker_wait_seconds_bucket{le="1.0",turn="scheduled"} 10
flagger_worker_wait_seconds_bucket{le="+Inf",turn="scheduled"} 10
flagger_api_budget_wait_seconds_total 2.5
"#;
    const AFTER: &str = r#"
flagger_worker_wait_seconds_sum{turn="scheduled"} 101.0
flagger_worker_wait_seconds_count{turn="scheduled"} 110
flagger_worker_wait_seconds_bucket{le="0.5",turn="scheduled"} 20
flagger_worker_wait_seconds_bucket{le="1.0",turn="scheduled"} 110
flagger_worker_wait_seconds_bucket{le="+Inf",turn="scheduled"} 110
flagger_api_request_duration_seconds_sum{method="PATCH",resource="events"} 3.0
flagger_api_request_duration_seconds_count{method="PATCH",resource="events"} 6
flagger_api_request_duration_seconds_bucket{le="+Inf",method="PATCH",resource="events"} 6
flagger_api_request_duration_seconds_sum{method="WATCH",resource="events"} 300.0
flagger_api_request_duration_seconds_count{method="WATCH",resource="events"} 1
flagger_api_budget_wait_seconds_total 7.5
flagger_api_requests_total{method="PATCH",resource="events"} 6
"#;

    #[test]
    fn a_stretch_is_the_difference_of_two_scrapes() {
        let stretch = TickTimings::parse(AFTER).since(&TickTimings::parse(BEFORE));
        assert_eq!(stretch.budget_wait_s, 5.0);
        let waits = &stretch.histograms[&(
            "flagger_worker_wait_seconds".to_string(),
            r#"turn="scheduled""#.to_string(),
        )];
        assert_eq!((waits.count, waits.sum, waits.mean()), (100.0, 100.0, 1.0));
        // 10 of the 100 within 0.5 s, the rest within 1 s: the 99th percentile is in the 1 s bucket.
        assert_eq!(waits.quantile_bound(0.99), 1.0);
        assert_eq!(waits.quantile_bound(0.05), 0.5);
        let patches = &stretch.histograms[&(
            "flagger_api_request_duration_seconds".to_string(),
            r#"method="PATCH",resource="events""#.to_string(),
        )];
        assert_eq!(patches.mean(), 0.5);
        assert_eq!(patches.quantile_bound(0.99), f64::INFINITY);
        // The budget's line, the workers' and the PATCHes'; the watch is left out.
        assert_eq!(stretch.lines().len(), 3, "{:?}", stretch.lines());
    }
}
