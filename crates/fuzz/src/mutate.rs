//! Structure-aware mutation of manifests: values are swapped for ones that sit on the edges of
//! what the decoders and validators handle (durations, numbers, names, templates), subtrees are
//! moved between the repository's examples, and now and then the text itself is damaged so the
//! YAML reader sees broken input too.

use serde_json::{Map, Value};

use crate::rng::Rng;

/// Scalars chosen for the edges they sit on: Go durations, integer and float limits, names,
/// templates, URLs, selectors.
const STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "1m",
    "0s",
    "-5m",
    "1h30m",
    "1.5h",
    "9223372036854775807ns",
    "2562047h47m16.854775808s",
    "99999999999999999999h",
    "1e308",
    "NaN",
    "-0",
    "+Inf",
    "0x10",
    "1_000",
    "300ms",
    "1µs",
    "5m5m5m",
    "h",
    "podinfo",
    "podinfo-primary",
    "a.b.c",
    "-bad-",
    "UPPER",
    "é",
    "\u{0}",
    "\u{feff}x",
    "🙂",
    "istio",
    "gatewayapi:v1",
    "smi:v1alpha3:istio",
    "appmesh:v1beta2",
    "kubernetes",
    "nginx",
    "traefik",
    "kuma",
    "contour",
    "linkerd",
    "prometheus",
    "datadog",
    "cloudwatch",
    "slack",
    "msteams",
    "discord",
    "pre-rollout",
    "rollout",
    "confirm-rollout",
    "post-rollout",
    "rollback",
    "event",
    "confirm-promotion",
    "confirm-traffic-increase",
    "http://",
    "http://localhost:9090",
    "https://user:pass@example.com:99999/x?y#z",
    "ftp://x",
    "://",
    "request-success-rate",
    "request-duration",
    "{{ name }}",
    "{{ variables.missing }}",
    "{{ (((((((((( name )))))))))) }}",
    "{{ if 1 }}{{ range variables }}{{ . }}{{ end }}{{ end }}",
    "{{ .Name }}{{ range .Fields }}{{ .Name }}{{ end }}",
    "{{",
    "}}",
    "{{/*",
    "^[a-z]+$",
    "(",
    "[",
    "*",
    "regex:",
    "exact",
    "Deployment",
    "DaemonSet",
    "Service",
    "apps/v1",
    "flagger.app/v1beta1",
    "flagger.app/v1",
    "Canary",
    "MetricTemplate",
    "AlertProvider",
];

fn number(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(i64::MIN),
        3 => Value::from(i64::MAX),
        4 => Value::from(u64::MAX),
        5 => Value::from(1.5),
        6 => Value::from(1e300),
        7 => Value::from(-0.0),
        8 => Value::from(100),
        9 => Value::from(101),
        10 => Value::from(u32::MAX),
        _ => Value::from(rng.below(1000)),
    }
}

fn long_string(rng: &mut Rng) -> String {
    let unit = rng
        .pick(&["a", "é", "{{", "-", "9", " "])
        .copied()
        .unwrap_or("a");
    unit.repeat(1 + rng.below(5000))
}

/// A fresh scalar or small container.
fn value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=3 => Value::from(rng.pick(STRINGS).copied().unwrap_or_default()),
        4 | 5 => number(rng),
        6 => Value::Bool(rng.chance(50)),
        7 => Value::Null,
        8 => Value::from(long_string(rng)),
        _ => {
            if rng.chance(50) {
                Value::Array(vec![value_shallow(rng)])
            } else {
                let key = rng.pick(STRINGS).copied().unwrap_or("k").to_string();
                Value::Object(Map::from_iter([(key, value_shallow(rng))]))
            }
        }
    }
}

fn value_shallow(rng: &mut Rng) -> Value {
    match rng.below(3) {
        0 => Value::from(rng.pick(STRINGS).copied().unwrap_or_default()),
        1 => number(rng),
        _ => Value::Bool(rng.chance(50)),
    }
}

/// A random subtree of `doc` (possibly `doc` itself).
fn subtree<'a>(rng: &mut Rng, doc: &'a Value) -> &'a Value {
    let mut node = doc;
    loop {
        let next = match node {
            Value::Object(m) if !m.is_empty() => m.values().nth(rng.below(m.len())),
            Value::Array(a) if !a.is_empty() => a.get(rng.below(a.len())),
            _ => None,
        };
        match next {
            Some(child) if rng.chance(75) => node = child,
            _ => return node,
        }
    }
}

/// The JSON pointer of a random node of `doc`.
fn random_pointer(rng: &mut Rng, doc: &Value) -> String {
    let mut pointer = String::new();
    let mut node = doc;
    loop {
        // The root is never replaced whole: a document that is no longer a flagger.app object
        // tests nothing past the reader.
        let stop = !pointer.is_empty() && rng.chance(30);
        let step = match node {
            Value::Object(m) if !m.is_empty() && !stop => m
                .iter()
                .nth(rng.below(m.len()))
                .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)),
            Value::Array(a) if !a.is_empty() && !stop => {
                let i = rng.below(a.len());
                a.get(i).map(|v| (i.to_string(), v))
            }
            _ => None,
        };
        let Some((key, child)) = step else {
            return pointer;
        };
        pointer.push('/');
        pointer.push_str(&key);
        node = child;
    }
}

/// Walks to a random node of `doc` and changes it; `donors` are other documents whose subtrees
/// may be grafted in.
pub fn mutate_value(rng: &mut Rng, doc: &mut Value, donors: &[Value]) {
    let pointer = random_pointer(rng, doc);
    let Some(node) = doc.pointer_mut(&pointer) else {
        return;
    };
    match rng.below(8) {
        0 | 1 => *node = value(rng),
        2 => {
            if let Some(donor) = rng.pick(donors) {
                *node = subtree(rng, donor).clone();
            }
        }
        3 => match node {
            Value::Object(m) if !m.is_empty() => {
                let key = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                m.remove(&key);
            }
            Value::Array(a) if !a.is_empty() => {
                a.remove(rng.below(a.len()));
            }
            _ => *node = Value::Null,
        },
        4 => match node {
            Value::Array(a) if !a.is_empty() => {
                let copy = a.get(rng.below(a.len())).cloned().unwrap_or(Value::Null);
                for _ in 0..=rng.below(40) {
                    a.push(copy.clone());
                }
            }
            Value::Object(m) => {
                let key = rng.pick(STRINGS).copied().unwrap_or("k").to_string();
                m.insert(key, value(rng));
            }
            _ => *node = Value::Array(vec![node.clone()]),
        },
        5 => {
            if let Value::String(s) = node {
                *s = mutate_text(rng, s.as_bytes());
            } else {
                *node = value(rng);
            }
        }
        6 => {
            // A string where a number was and the other way round: the decoders' type checks.
            *node = match &*node {
                Value::Number(n) => Value::from(n.to_string()),
                Value::String(s) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| number(rng)),
                _ => value(rng),
            };
        }
        _ => {
            if let Value::Object(m) = node {
                m.clear();
            } else {
                *node = Value::Object(Map::new());
            }
        }
    }
}

/// Bytes YAML gives meaning to, for damaging text.
const YAML_BYTES: &[u8] = b"{}[]:,\"'&*!|>-#%@`\n\t ?0123456789.eE+";

/// Flips, inserts, deletes and repeats bytes of `text`; the result is lossily made UTF-8 again.
pub fn mutate_text(rng: &mut Rng, text: &[u8]) -> String {
    let mut bytes = text.to_vec();
    for _ in 0..=rng.below(6) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 => bytes.insert(
                at,
                YAML_BYTES
                    .get(rng.below(YAML_BYTES.len()))
                    .copied()
                    .unwrap_or(b' '),
            ),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 if at < bytes.len() => {
                let end = (at + rng.below(64)).min(bytes.len());
                let piece: Vec<u8> = bytes.get(at..end).map(<[u8]>::to_vec).unwrap_or_default();
                for _ in 0..=rng.below(8) {
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
            3 if at < bytes.len() => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            _ => {
                let s = rng.pick(STRINGS).copied().unwrap_or_default();
                bytes.splice(at..at, s.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
