//! Values that must never reach a log line, an event or an error message.
//!
//! A Slack or Teams incoming-webhook URL is a bearer credential: anyone holding it can post to
//! the channel. These newtypes keep the real value reachable only through `expose`, and print a
//! redacted form everywhere else, so a `{:?}` on any struct that holds one is safe.

use std::fmt;

use url::Url;

/// An endpoint URL whose path, query and credentials are secret (webhook URLs, proxies with
/// `user:password@`). Printed as `scheme://host[:port]/…`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// Parses an absolute http(s) URL. The error never repeats the input.
    pub fn parse(raw: &str) -> Result<SecretUrl, InvalidUrl> {
        let url = Url::parse(raw.trim()).map_err(|e| InvalidUrl(e.to_string()))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(InvalidUrl(format!("unsupported scheme {other:?}"))),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidUrl("no host".into()));
        }
        Ok(SecretUrl(url))
    }

    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// The printable form; also what `Debug` and `Display` show.
    pub fn redacted(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port() {
            Some(port) => format!("{}://{host}:{port}/…", self.0.scheme()),
            None => format!("{}://{host}/…", self.0.scheme()),
        }
    }

    /// Substrings of the URL that identify the credential; error texts from the HTTP stack or
    /// a receiver are scrubbed of each of them.
    pub(crate) fn secret_parts(&self) -> Vec<String> {
        let mut parts = vec![self.0.as_str().to_owned()];
        let path = self.0.path();
        if path.len() > 1 {
            parts.push(path.to_owned());
        }
        if let Some(q) = self.0.query().filter(|q| !q.is_empty()) {
            parts.push(q.to_owned());
        }
        if let Some(p) = self.0.password().filter(|p| !p.is_empty()) {
            parts.push(p.to_owned());
        }
        if !self.0.username().is_empty() {
            parts.push(self.0.username().to_owned());
        }
        parts
    }

    pub(crate) fn with_path(&self, path: &str) -> SecretUrl {
        let mut url = self.0.clone();
        url.set_path(path);
        SecretUrl(url)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Why an address was refused; carries the parser's reason, never the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidUrl(pub String);

impl fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API token (`Authorization: Bearer`).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(token: impl Into<String>) -> SecretToken {
        SecretToken(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(…)")
    }
}

/// Replaces every occurrence of a secret in `text`. Short fragments are skipped: scrubbing "/"
/// or "a" would shred the message and protect nothing.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() >= 4)
        .collect();
    // Longest first, so a full URL is replaced before its path is looked for.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_show_only_scheme_and_host() {
        let u = SecretUrl::parse("https://hooks.slack.com/services/T000/B000/XXXXSECRET").unwrap();
        assert_eq!(format!("{u}"), "https://hooks.slack.com/…");
        assert_eq!(format!("{u:?}"), "SecretUrl(https://hooks.slack.com/…)");
        let p = SecretUrl::parse("http://user:hunter22@proxy.local:3128").unwrap();
        assert_eq!(format!("{p:?}"), "SecretUrl(http://proxy.local:3128/…)");
        assert!(!format!("{:?}", SecretToken::new("xoxb-123")).contains("xoxb"));
    }

    #[test]
    fn parse_errors_do_not_echo_the_input() {
        let e = SecretUrl::parse("hooks.slack.com/services/SECRETPATH").unwrap_err();
        assert!(!e.to_string().contains("SECRETPATH"), "{e}");
        let e = SecretUrl::parse("ftp://x.example/SECRETPATH").unwrap_err();
        assert!(!e.to_string().contains("SECRETPATH"), "{e}");
    }

    #[test]
    fn scrub_removes_url_path_and_query() {
        let u = SecretUrl::parse("https://h.example/services/SECRET?sig=SIGVALUE").unwrap();
        let text = format!(
            "error sending request for url ({}) sig=SIGVALUE /services/SECRET",
            u.expose()
        );
        let clean = scrub(&text, &u.secret_parts());
        assert!(
            !clean.contains("SECRET") && !clean.contains("SIGVALUE"),
            "{clean}"
        );
    }
}
