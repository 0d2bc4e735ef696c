//! Tracked-config checksums, byte-identical to Flagger's: lowercase hex of the first 8
//! bytes of SHA-256 over Go's `json.Marshal` of the object's `data`.
//!
//! Byte identity matters because `status.trackedConfigs` written by Go Flagger must compare equal
//! after a swap to flagger-rs, or every canary would start a spurious run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sha2::{Digest, Sha256};

/// Checksum of a ConfigMap: `data` only; `binaryData` is ignored, as in Flagger.
pub fn configmap(cm: &ConfigMap) -> String {
    digest(&go_json_string_map(
        cm.data
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    ))
}

/// Checksum of a Secret: Go marshals `map[string][]byte` with base64 (standard, padded) values.
pub fn secret(s: &Secret) -> String {
    let encoded: Option<BTreeMap<&str, String>> = s
        .data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.as_str(), base64(v))).collect());
    digest(&go_json_string_map(
        encoded
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (*k, v.as_str()))),
    ))
}

fn digest(json: &str) -> String {
    let hash = Sha256::digest(json.as_bytes());
    hash[..8]
        .iter()
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `json.Marshal(map[string]string)`: keys sorted, no whitespace. An absent or empty map is `null`
/// because that is what Go sees: the API server omits empty `data`, so client-go decodes it as a
/// nil map.
pub fn go_json_string_map<'a>(entries: Option<impl Iterator<Item = (&'a str, &'a str)>>) -> String {
    let mut sorted: Vec<(&str, &str)> = match entries {
        Some(e) => e.collect(),
        None => return "null".into(),
    };
    if sorted.is_empty() {
        return "null".into();
    }
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(&mut out, k);
        out.push(':');
        go_json_string(&mut out, v);
    }
    out.push('}');
    out
}

/// A string as Go's encoder writes it with HTML escaping on (the `json.Marshal` default).
pub fn go_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go 1.22+ writes the short forms of these two; Flagger is built with a recent Go.
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64(bytes: &ByteString) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.0.len().div_ceil(3) * 4);
    for chunk in bytes.0.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::fixtures;
    use serde_json::json;

    fn encode(pairs: &[(&str, &str)]) -> String {
        go_json_string_map(Some(pairs.iter().copied()))
    }

    // Expected digests below are `printf '%s' '<json>' | sha256sum | cut -c1-16`, and each was
    // cross-checked against Go's own `json.Marshal` + `sha256.Sum256` (go1.26), as Flagger computes them.

    #[test]
    fn del_and_astral_characters_are_written_raw() {
        let got = encode(&[("emoji", "\u{1F600}"), ("del", "\u{7f}")]);
        assert_eq!(got, "{\"del\":\"\u{7f}\",\"emoji\":\"\u{1F600}\"}");
        assert_eq!(digest(&got), "1fee99124541fd64");
    }

    #[test]
    fn absent_and_empty_data_hash_as_null() {
        assert_eq!(digest("null"), "74234e98afe7498f");
        let cm = fixtures::configmap("c", serde_json::Value::Null);
        assert_eq!(configmap(&cm), "74234e98afe7498f");
        let empty = fixtures::configmap("c", json!({}));
        assert_eq!(configmap(&empty), "74234e98afe7498f");
    }

    #[test]
    fn configmap_keys_are_sorted_without_whitespace() {
        let cm = fixtures::configmap("c", json!({"level": "info", "color": "blue"}));
        assert_eq!(
            encode(&[("level", "info"), ("color", "blue")]),
            r#"{"color":"blue","level":"info"}"#
        );
        assert_eq!(configmap(&cm), "91486c53e920cbd2");
    }

    #[test]
    fn binary_data_is_ignored() {
        let mut cm = fixtures::configmap("c", json!({"a": "b"}));
        assert_eq!(configmap(&cm), "db4a7ecb114bc66c");
        cm.binary_data = Some([("bin".to_string(), ByteString(vec![1, 2, 3]))].into());
        assert_eq!(configmap(&cm), "db4a7ecb114bc66c");
    }

    #[test]
    fn strings_are_escaped_like_go() {
        let got = encode(&[
            ("utf8", "é"),
            ("q", "\"\\"),
            ("ls", "\u{2028}\u{2029}"),
            ("html", "<b>&amp;"),
            ("ctl", "\n\t\r\u{8}\u{c}\u{1}\u{1f}"),
        ]);
        assert_eq!(
            got,
            r#"{"ctl":"\n\t\r\b\f\u0001\u001f","html":"\u003cb\u003e\u0026amp;","ls":"\u2028\u2029","q":"\"\\","utf8":"é"}"#
        );
        assert_eq!(digest(&got), "b6292ad9b9af293f");
    }

    #[test]
    fn secret_values_are_base64_encoded() {
        // "s3cr3t" travels as "czNjcjN0"; Go re-encodes the decoded bytes the same way.
        let s = fixtures::secret("s", "Opaque", json!({"token": "czNjcjN0"}));
        assert_eq!(secret(&s), "6010bdf95cfd9d10");
    }

    #[test]
    fn base64_pads_like_the_standard_encoding() {
        let cases: [(&[u8], &str); 5] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xff\xfe\xfd\x00", "//79AA=="),
        ];
        for (raw, want) in cases {
            assert_eq!(base64(&ByteString(raw.to_vec())), want);
        }
    }

    #[test]
    fn checksum_is_sixteen_lowercase_hex_digits() {
        let sum = configmap(&fixtures::configmap("c", json!({"k": "v"})));
        assert_eq!(sum.len(), 16);
        assert!(
            sum.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
