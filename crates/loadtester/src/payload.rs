//! The webhook payload Flagger POSTs.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Payload {
    /// `<name>.<namespace>`: the key of gates and of running tasks.
    pub fn canary(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key).map(String::as_str)
    }

    /// Go's `strconv.ParseBool` on a metadata value; absent or invalid is false, as in Flagger.
    pub fn meta_flag(&self, key: &str) -> bool {
        matches!(
            self.meta(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

/// Flagger's metadata is `map[string]string`, but hand-written payloads (curl, tests) often carry
/// `true` or `30` unquoted; those are taken as their JSON text instead of failing the request.
fn metadata<'de, D>(de: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(de)?;
    Ok(raw.map(|map| {
        map.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_flagger_payload_and_loose_metadata() {
        let p: Payload = serde_json::from_str(
            r#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"r1",
                "metadata":{"type":"bash","cmd":"true","logCmdOutput":true,"n":3}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.canary(), "podinfo.test");
        assert_eq!(p.meta("type"), Some("bash"));
        assert!(p.meta_flag("logCmdOutput"));
        assert_eq!(p.meta("n"), Some("3"));
        assert!(!p.meta_flag("returnCmdOutput"));
    }

    #[test]
    fn metadata_is_optional() {
        let p: Payload = serde_json::from_str(r#"{"name":"a","namespace":"b"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(p.metadata.is_none());
    }
}
