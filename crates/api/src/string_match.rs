//! Request matching shared by `service.match`, `analysis.match` and the CORS policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Istio-style string match: none, or exactly one, of `exact`, `prefix`, `regex` (RE2).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("oneOf" = [
    {"not": {"anyOf": [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}]}},
    {"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}
]))]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

impl StringMatch {
    /// How many of the alternatives are set; the schema admits 0 or 1.
    pub fn alternatives(&self) -> usize {
        [&self.exact, &self.prefix, &self.regex]
            .iter()
            .filter(|v| v.is_some())
            .count()
    }
}

/// A CORS origin: exactly one of `exact`, `prefix`, `regex`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("oneOf" = [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}]))]
pub struct OriginMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// An A/B header condition: exactly one of `exact`, `prefix`, `suffix`, `regex`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("oneOf" = [
    {"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["suffix"]}, {"required": ["regex"]}
]))]
pub struct HeaderMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub regex: Option<String>,
}

impl HeaderMatch {
    pub fn alternatives(&self) -> usize {
        [&self.exact, &self.prefix, &self.suffix, &self.regex]
            .iter()
            .filter(|v| v.is_some())
            .count()
    }
}
