//! Go templates built from the language's own pieces, in orders that are right and wrong: the
//! parser sees real syntax often enough to get deep, and broken syntax everywhere.

use crate::mutate::mutate_text;
use crate::rng::Rng;

/// Tokens that may stand inside `{{ }}`.
const TOKENS: &[&str] = &[
    "variables.key",
    "name",
    ".",
    "namespace",
    "$",
    "target",
    "|",
    "service",
    "(",
    "ingress",
    ")",
    "route",
    "interval",
    "variables",
    "variables.missing",
    ".",
    ".Name",
    ".Namespace",
    ".Status",
    ".Phase",
    ".Fields",
    ".Metadata",
    ".Metadata.environment",
    ".Reason.Metric",
    ".CanaryAnalysis.Iterations",
    ".Nope",
    ".Name.Deeper",
    "$",
    "$x",
    "$y",
    "$x :=",
    "$x =",
    "$i, $v :=",
    "|",
    "(",
    ")",
    ",",
    "index",
    "printf",
    "print",
    "println",
    "len",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    "nil",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e309",
    "0x1F",
    "0b101",
    "0o17",
    "1_000",
    "'a'",
    "'\\n'",
    "'é'",
    "''",
    "\"%s\"",
    "\"%d\"",
    "\"%v %v %v\"",
    "\"%*d\"",
    "\"%.99999f\"",
    "\"%!\"",
    "\"%[3]s\"",
    "\"é\"",
    "\"\\u00e9\"",
    "\"\\x\"",
    "\"}}\"",
    "`raw }} text`",
    "\"key\"",
    "99999999999999999999",
    "-",
    "é",
];

const KEYWORDS: &[&str] = &[
    "if",
    "else",
    "else if",
    "end",
    "range",
    "with",
    "define \"a\"",
    "template \"a\"",
    "template \"a\" .",
    "block \"a\" .",
    "break",
    "continue",
];

fn action_body(rng: &mut Rng, out: &mut String) {
    if rng.chance(25) {
        out.push_str(rng.pick(KEYWORDS).copied().unwrap_or_default());
        out.push(' ');
    }
    for _ in 0..rng.below(6) {
        out.push_str(rng.pick(TOKENS).copied().unwrap_or_default());
        if rng.chance(85) {
            out.push(' ');
        }
    }
}

/// One generated template.
pub fn generate(rng: &mut Rng, seeds: &[String]) -> String {
    if !seeds.is_empty() && rng.chance(30) {
        let seed = rng.pick(seeds).cloned().unwrap_or_default();
        return mutate_text(rng, seed.as_bytes());
    }
    let mut out = build(rng, 0);
    if rng.chance(10) {
        out = mutate_text(rng, out.as_bytes());
    }
    out
}

fn build(rng: &mut Rng, depth: usize) -> String {
    let mut out = String::new();
    let parts = 1 + rng.below(12);
    for _ in 0..parts {
        match rng.below(10) {
            0 => out.push_str(
                rng.pick(&["text ", "é ", "}} ", "{ ", "\n", "sum(rate(x[1m])) "])
                    .copied()
                    .unwrap_or_default(),
            ),
            1 => out.push_str("{{/* comment */}}"),
            2 => {
                // A block that is closed, so nesting gets deep enough to matter.
                let kw = rng.pick(&["if", "range", "with"]).copied().unwrap_or("if");
                out.push_str("{{ ");
                out.push_str(kw);
                out.push(' ');
                action_body(rng, &mut out);
                out.push_str("}}");
                if depth < 8 && rng.chance(50) {
                    let inner = build(rng, depth + 1);
                    out.push_str(&inner);
                }
                if rng.chance(30) {
                    out.push_str("{{ else }}");
                }
                out.push_str("{{ end }}");
            }
            3 => {
                let depth = rng.below(80);
                out.push_str("{{ ");
                out.push_str(&"(".repeat(depth));
                out.push_str(rng.pick(TOKENS).copied().unwrap_or_default());
                out.push_str(&")".repeat(depth));
                out.push_str(" }}");
            }
            _ => {
                out.push_str(
                    rng.pick(&["{{ ", "{{- ", "{{", "{{-"])
                        .copied()
                        .unwrap_or_default(),
                );
                action_body(rng, &mut out);
                if rng.chance(95) {
                    out.push_str(
                        rng.pick(&["}}", " -}}", "-}}"])
                            .copied()
                            .unwrap_or_default(),
                    );
                }
            }
        }
        if out.len() > 4096 {
            break;
        }
    }
    out
}
