//! `status` for people: a block per canary (one named), a table (all of them), a line per
//! change (watching into a pipe). Colours only when a terminal asked for them.

use super::model::{CanaryView, CheckView};
use crate::duration::short as duration;

const BAR_WIDTH: usize = 20;

/// Whether to colour the text (a terminal) or not (a pipe, a file, a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    pub const PLAIN: Style = Style { colour: false };

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn phase(self, phase: &str) -> String {
        let code = match phase {
            "Succeeded" | "Initialized" => "32",
            "Failed" | "Terminated" => "31",
            "Progressing" | "Promoting" | "Finalising" => "33",
            "Waiting" | "WaitingPromotion" => "36",
            _ => "0",
        };
        self.paint(code, phase_label(phase))
    }
}

fn phase_label(phase: &str) -> &str {
    if phase.is_empty() { "New" } else { phase }
}

/// `percent` of `width` cells filled.
fn bar(percent: u32, width: usize, fill: &str, style: Style) -> String {
    let filled = (percent.min(100) as usize * width + 50) / 100;
    let full = style.paint(fill, &"█".repeat(filled));
    format!("{full}{}", "░".repeat(width - filled))
}

fn value(v: Option<f64>, failed: bool) -> String {
    match v {
        // Rates and latencies read best with at most two decimals and no trailing zeros.
        Some(v) => {
            let text = format!("{v:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        None if failed => "failed".to_string(),
        None => "passed".to_string(),
    }
}

fn check_line(c: &CheckView, style: Style) -> String {
    let mark = if c.failed {
        style.paint("31", "✗")
    } else {
        style.paint("32", "✓")
    };
    let against = c
        .threshold
        .as_deref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let kind = match c.kind {
        flagger_api::status::CheckKind::Metric => "",
        flagger_api::status::CheckKind::Webhook => " [webhook]",
        flagger_api::status::CheckKind::PreRollout => " [pre-rollout]",
        flagger_api::status::CheckKind::Gate => " [gate]",
    };
    let message = match (&c.message, c.failed) {
        (Some(m), true) => format!(": {m}"),
        _ => String::new(),
    };
    format!(
        "    {mark} {}{kind}  {}{against}{message}",
        c.name,
        value(c.value, c.failed)
    )
}

fn progress(v: &CanaryView) -> String {
    if !running(v) {
        return "-".into();
    }
    v.progress
        .as_ref()
        .map(|p| format!("{} {} of {}", p.unit, p.current, p.total))
        .unwrap_or_else(|| "-".into())
}

fn eta(v: &CanaryView) -> String {
    match (v.seconds_to_promotion, v.phase.as_str()) {
        (Some(s), _) => duration(s),
        (None, "Succeeded") => "promoted".into(),
        _ => "-".into(),
    }
}

/// Whether a run is under way: only then do a step, failures left and an ETA mean anything.
fn running(v: &CanaryView) -> bool {
    matches!(
        v.phase.as_str(),
        "Waiting" | "Progressing" | "WaitingPromotion" | "Promoting" | "Finalising"
    )
}

/// One canary, in full.
pub fn detail(v: &CanaryView, style: Style) -> String {
    let mut out = format!(
        "{}.{}  {}  {}",
        v.name,
        v.namespace,
        style.phase(&v.phase),
        if v.strategy.is_empty() {
            "-"
        } else {
            &v.strategy
        }
    );
    if let Some(s) = v.seconds_in_phase {
        out.push_str(&format!("  for {}", duration(s)));
    }
    out.push('\n');
    out.push_str(&format!(
        "  primary {} {:>3}%\n  canary  {} {:>3}%\n",
        bar(v.primary_weight, BAR_WIDTH, "34", style),
        v.primary_weight,
        bar(v.canary_weight, BAR_WIDTH, "33", style),
        v.canary_weight
    ));
    if v.mirror_weight > 0 {
        out.push_str(&format!(
            "  mirror  {} {:>3}%\n",
            bar(v.mirror_weight, BAR_WIDTH, "35", style),
            v.mirror_weight
        ));
    }
    let run_bar = v
        .progress
        .as_ref()
        .filter(|p| p.total > 0)
        .map(|p| format!(" {}", bar(p.current * 100 / p.total, 10, "32", style)))
        .unwrap_or_default();
    if running(v) {
        let eta = match v.seconds_to_promotion {
            Some(s) => format!("promotion in {}", duration(s)),
            None => "no promotion in sight".into(),
        };
        out.push_str(&format!("  {}{run_bar}   {eta}\n", progress(v)));
        if let Some(t) = v.threshold {
            out.push_str(&format!(
                "  failed checks {} of {t}, {} left before rollback\n",
                v.failed_checks,
                v.failures_left.unwrap_or(0)
            ));
        }
    } else if let Some(t) = v.threshold.filter(|_| v.failed_checks > 0) {
        out.push_str(&format!("  failed checks {} of {t}\n", v.failed_checks));
    }
    if !v.checks.is_empty() {
        out.push_str("  checks:\n");
        for c in &v.checks {
            out.push_str(&check_line(c, style));
            out.push('\n');
        }
    }
    if let Some(p) = &v.pending {
        out.push_str(&format!("  waiting on {p}\n"));
    }
    if let Some(m) = &v.message {
        out.push_str(&format!("  {m}\n"));
    }
    if let Some(e) = &v.spec_error {
        out.push_str(&format!("  spec error: {e}\n"));
    }
    out
}

/// Every canary, one row each.
pub fn table(views: &[CanaryView], style: Style) -> String {
    if views.is_empty() {
        return "no canaries found".into();
    }
    let name_width = views
        .iter()
        .map(|v| v.name.len() + v.namespace.len() + 1)
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<name_width$}  {:<16}  {:<10}  {:<17}  {:<15}  {:>6}  {:>9}\n",
        "CANARY", "PHASE", "STRATEGY", "CANARY WEIGHT", "PROGRESS", "FAILED", "PROMOTION"
    );
    for v in views {
        let phase = style.phase(&v.phase);
        // Padding counts the escape codes, so pad the plain label and swap the painted one in.
        let phase_cell =
            format!("{:<16}", phase_label(&v.phase)).replacen(phase_label(&v.phase), &phase, 1);
        out.push_str(&format!(
            "{:<name_width$}  {phase_cell}  {:<10}  {} {:>3}%  {:<15}  {:>6}  {:>9}\n",
            format!("{}.{}", v.name, v.namespace),
            if v.strategy.is_empty() {
                "-"
            } else {
                &v.strategy
            },
            bar(v.canary_weight, 10, "33", style),
            v.canary_weight,
            progress(v),
            format!("{}/{}", v.failed_checks, v.threshold.unwrap_or(0)),
            eta(v)
        ));
    }
    out
}

/// One line for a change seen while watching into a pipe.
pub fn change_line(v: &CanaryView, at: jiff::Timestamp) -> String {
    let failing: Vec<&str> = v
        .checks
        .iter()
        .filter(|c| c.failed)
        .map(|c| c.name.as_str())
        .collect();
    let mut line = format!(
        "{} {}.{} {} weight {}/{}",
        at.strftime("%H:%M:%S"),
        v.name,
        v.namespace,
        phase_label(&v.phase),
        v.primary_weight,
        v.canary_weight
    );
    if v.mirror_weight > 0 {
        line.push_str(&format!(" mirror {}%", v.mirror_weight));
    }
    if running(v) {
        line.push_str(&format!(" {}", progress(v)));
    }
    line.push_str(&format!(
        " failed {}/{}",
        v.failed_checks,
        v.threshold.unwrap_or(0)
    ));
    if !failing.is_empty() {
        line.push_str(&format!(" failing {}", failing.join(",")));
    }
    if let Some(p) = &v.pending {
        line.push_str(&format!(" waiting on {p}"));
    }
    line
}
