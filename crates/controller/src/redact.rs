//! What a remote answer may put into an Event, a log line or an alert: the values of Secrets the
//! controller sent along are removed (a receiver that echoes its request
//! headers in an error page must not publish the token to everyone who can read Events).

/// Replaces every occurrence of each secret value with `[redacted]`. Empty values are skipped
/// (they would match everywhere).
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, "[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_removed_wherever_they_appear() {
        assert_eq!(
            redact("Authorization: Bearer s3cr3t; again s3cr3t", ["s3cr3t", ""]),
            "Authorization: Bearer [redacted]; again [redacted]"
        );
    }
}
