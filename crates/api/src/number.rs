//! Numbers as Flagger's CRD schema types them.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A value that Flagger's schema declares as `type: number`: counts, weights and ports (integers in
/// Flagger's Go types) and thresholds.
///
/// The value is kept exactly as written, so `10` stays `10` and `99.0` stays `99.0` when a manifest
/// round-trips; for integer fields the API server still admits `10.5`, and validation reports it
/// instead of the parser rejecting the whole object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Number(serde_json::Number);

impl Number {
    /// The integer value, or `None` when the number has a fractional part or does not fit.
    pub fn integer(&self) -> Option<i64> {
        if let Some(i) = self.0.as_i64() {
            return Some(i);
        }
        let f = self.0.as_f64()?;
        let in_range = f.fract() == 0.0 && f.abs() < 9.0e15;
        // The guard above makes the cast exact.
        in_range.then_some(f as i64)
    }

    /// The value as a float; NaN only for a number serde_json cannot represent as f64.
    pub fn as_f64(&self) -> f64 {
        self.0.as_f64().unwrap_or(f64::NAN)
    }
}

impl Default for Number {
    fn default() -> Self {
        Number(0.into())
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Number(v.into())
    }
}

impl From<f64> for Number {
    /// Non-finite values have no JSON form and become 0.
    fn from(v: f64) -> Self {
        Number(serde_json::Number::from_f64(v).unwrap_or_else(|| 0.into()))
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for Number {
    fn schema_name() -> Cow<'static, str> {
        "Number".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "number" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_values_are_read_whatever_their_spelling() {
        let int: Number = serde_json::from_str("10").unwrap();
        assert_eq!(int.integer(), Some(10));
        let float: Number = serde_json::from_str("10.0").unwrap();
        assert_eq!(float.integer(), Some(10));
        let frac: Number = serde_json::from_str("10.5").unwrap();
        assert_eq!(frac.integer(), None);
        let neg: Number = serde_json::from_str("-3").unwrap();
        assert_eq!(neg.integer(), Some(-3));
    }

    #[test]
    fn values_round_trip_as_written() {
        for text in ["10", "10.5", "-1", "0"] {
            let int: Number = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&int).unwrap(), text);
        }
    }
}
