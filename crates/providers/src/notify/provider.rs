//! From an `AlertProvider` (plus its Secret, already read by the caller) or the controller's
//! global flags to a complete, validated delivery target.

use std::collections::BTreeMap;
use std::fmt;

use flagger_api::{AlertProviderSpec, CanaryAlert};
use k8s_openapi::ByteString;

use super::alert::{Severity, admits};
use super::secret::{InvalidUrl, SecretToken, SecretUrl};

/// Where Slack's Web API takes messages when only a token is configured.
pub const SLACK_POST_MESSAGE_URL: &str = "https://slack.com/api/chat.postMessage";
pub const DEFAULT_CHANNEL: &str = "general";
pub const DEFAULT_USERNAME: &str = "flagger";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderType {
    Slack,
    MsTeams,
    Discord,
    Rocket,
    GChat,
    Generic,
}

impl ProviderType {
    pub fn parse(s: &str) -> Option<ProviderType> {
        match s {
            "slack" => Some(ProviderType::Slack),
            "msteams" => Some(ProviderType::MsTeams),
            "discord" => Some(ProviderType::Discord),
            "rocket" => Some(ProviderType::Rocket),
            "gchat" => Some(ProviderType::GChat),
            "generic" => Some(ProviderType::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Slack => "slack",
            ProviderType::MsTeams => "msteams",
            ProviderType::Discord => "discord",
            ProviderType::Rocket => "rocket",
            ProviderType::GChat => "gchat",
            ProviderType::Generic => "generic",
        }
    }

    /// Only these send the Secret's `token` as `Authorization: Bearer`.
    pub fn sends_token(self) -> bool {
        matches!(self, ProviderType::Slack | ProviderType::Generic)
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to deliver; secrets stay wrapped (its `Debug` is safe to log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedProvider {
    pub type_: ProviderType,
    pub address: SecretUrl,
    pub token: Option<SecretToken>,
    pub proxy: Option<SecretUrl>,
    pub channel: String,
    pub username: String,
    pub message_template: Option<String>,
}

/// Why an AlertProvider cannot be used. The alert is skipped with an error log and a Warning
/// event; the run goes on. Never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown alert provider type {0:?}")]
    UnknownType(String),
    #[error("secretRef {0} is set but no Secret data was given")]
    MissingSecret(String),
    #[error("Secret {0} has no key \"address\"")]
    MissingAddress(String),
    #[error("Secret {secret} key {key:?} is not UTF-8")]
    NotUtf8 { secret: String, key: &'static str },
    #[error("address is not a usable URL: {0}")]
    InvalidAddress(InvalidUrl),
    #[error("proxy is not a usable URL: {0}")]
    InvalidProxy(InvalidUrl),
}

/// Secret `data` as the caller has it: the `ByteString`s of a k8s Secret, or plain maps in tests.
pub trait SecretData {
    fn value(&self, key: &str) -> Option<&[u8]>;
}

impl SecretData for BTreeMap<String, ByteString> {
    fn value(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(|b| b.0.as_slice())
    }
}

impl SecretData for BTreeMap<String, Vec<u8>> {
    fn value(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(Vec::as_slice)
    }
}

impl SecretData for BTreeMap<String, String> {
    fn value(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(String::as_bytes)
    }
}

fn text<'a>(
    data: &'a dyn SecretData,
    secret: &str,
    key: &'static str,
) -> Result<Option<&'a str>, ResolveError> {
    match data.value(key) {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(bytes)
            .map(|s| Some(s.trim()))
            .map_err(|_| ResolveError::NotUtf8 {
                secret: secret.to_owned(),
                key,
            }),
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Resolves an AlertProvider. `secret` is the `data` of `spec.secretRef` (same namespace as the
/// provider), read by the caller. `Ok(None)`: the address is empty, the notifier is disabled.
pub fn resolve(
    spec: &AlertProviderSpec,
    secret: Option<&dyn SecretData>,
) -> Result<Option<ResolvedProvider>, ResolveError> {
    let type_ = ProviderType::parse(&spec.type_)
        .ok_or_else(|| ResolveError::UnknownType(spec.type_.clone()))?;
    let mut address = non_empty(spec.address.as_deref()).map(str::to_owned);
    let mut proxy = non_empty(spec.proxy.as_deref()).map(str::to_owned);
    let mut token = None;
    if let Some(secret_ref) = &spec.secret_ref {
        let name = secret_ref.name.as_str();
        let data = secret.ok_or_else(|| ResolveError::MissingSecret(name.to_owned()))?;
        // The Secret's address wins over spec.address, and is required when a Secret is named.
        address = Some(
            text(data, name, "address")?
                .ok_or_else(|| ResolveError::MissingAddress(name.to_owned()))?
                .to_owned(),
        );
        if let Some(p) = non_empty(text(data, name, "proxy")?) {
            proxy = Some(p.to_owned());
        }
        token = non_empty(text(data, name, "token")?).map(SecretToken::new);
    }
    let Some(address) = address.filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(ResolvedProvider {
        type_,
        address: SecretUrl::parse(&address).map_err(ResolveError::InvalidAddress)?,
        token: token.filter(|_| type_.sends_token()),
        proxy: proxy
            .map(|p| SecretUrl::parse(&p))
            .transpose()
            .map_err(ResolveError::InvalidProxy)?,
        channel: non_empty(spec.channel.as_deref())
            .unwrap_or(DEFAULT_CHANNEL)
            .to_owned(),
        username: non_empty(spec.username.as_deref())
            .unwrap_or(DEFAULT_USERNAME)
            .to_owned(),
        message_template: spec
            .message_template
            .clone()
            .filter(|t| !t.trim().is_empty()),
    }))
}

/// Who gets one alert of a canary.
#[derive(Debug, PartialEq)]
pub enum Route<'a> {
    /// No `analysis.alerts`: the global notifier, every severity.
    Global,
    /// The entries whose severity admits the alert (possibly none).
    Providers(Vec<&'a CanaryAlert>),
}

pub fn route(alerts: Option<&[CanaryAlert]>, severity: Severity) -> Route<'_> {
    match alerts {
        None | Some([]) => Route::Global,
        Some(entries) => Route::Providers(
            entries
                .iter()
                .filter(|a| admits(a.severity.as_deref(), severity))
                .collect(),
        ),
    }
}

/// The controller's global notifier flags. Empty strings mean unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GlobalFlags {
    pub slack_url: String,
    pub slack_token: String,
    pub slack_proxy_url: String,
    pub slack_user: String,
    pub slack_channel: String,
    pub msteams_url: String,
    pub msteams_proxy_url: String,
}

impl fmt::Debug for GlobalFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<set>" };
        f.debug_struct("GlobalFlags")
            .field("slack_url", &set(&self.slack_url))
            .field("slack_token", &set(&self.slack_token))
            .field("slack_proxy_url", &set(&self.slack_proxy_url))
            .field("slack_user", &self.slack_user)
            .field("slack_channel", &self.slack_channel)
            .field("msteams_url", &set(&self.msteams_url))
            .field("msteams_proxy_url", &set(&self.msteams_proxy_url))
            .finish()
    }
}

/// The notifier for canaries without `analysis.alerts`. Teams wins over Slack when both are
/// set; a Slack token without a URL posts through `chat.postMessage`; the channel defaults to
/// `general` as for AlertProviders (incoming webhooks ignore it anyway). `Ok(None)`: no global notifier.
pub fn resolve_global(flags: &GlobalFlags) -> Result<Option<ResolvedProvider>, ResolveError> {
    let username = non_empty(Some(&flags.slack_user))
        .unwrap_or(DEFAULT_USERNAME)
        .to_owned();
    let channel = non_empty(Some(&flags.slack_channel))
        .unwrap_or(DEFAULT_CHANNEL)
        .to_owned();
    let proxy = |p: &str| {
        non_empty(Some(p))
            .map(SecretUrl::parse)
            .transpose()
            .map_err(ResolveError::InvalidProxy)
    };
    if let Some(url) = non_empty(Some(&flags.msteams_url)) {
        return Ok(Some(ResolvedProvider {
            type_: ProviderType::MsTeams,
            address: SecretUrl::parse(url).map_err(ResolveError::InvalidAddress)?,
            token: None,
            proxy: proxy(&flags.msteams_proxy_url)?,
            channel,
            username,
            message_template: None,
        }));
    }
    let token = non_empty(Some(&flags.slack_token)).map(SecretToken::new);
    let url = match (non_empty(Some(&flags.slack_url)), &token) {
        (Some(url), _) => url,
        (None, Some(_)) => SLACK_POST_MESSAGE_URL,
        (None, None) => return Ok(None),
    };
    Ok(Some(ResolvedProvider {
        type_: ProviderType::Slack,
        address: SecretUrl::parse(url).map_err(ResolveError::InvalidAddress)?,
        token,
        proxy: proxy(&flags.slack_proxy_url)?,
        channel,
        username,
        message_template: None,
    }))
}

#[cfg(test)]
mod tests {
    use flagger_api::metric_template::SecretRef;

    use super::*;

    fn spec(type_: &str) -> AlertProviderSpec {
        AlertProviderSpec {
            type_: type_.into(),
            ..AlertProviderSpec::default()
        }
    }

    fn secret(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn address_only_gets_defaults() {
        let mut s = spec("slack");
        s.address = Some("https://hooks.slack.com/services/A/B/C".into());
        let p = resolve(&s, None).unwrap().unwrap();
        assert_eq!(p.type_, ProviderType::Slack);
        assert_eq!(p.channel, "general");
        assert_eq!(p.username, "flagger");
        assert_eq!(p.token, None);
        assert_eq!(p.proxy, None);
        assert_eq!(
            p.address.expose().as_str(),
            "https://hooks.slack.com/services/A/B/C"
        );
    }

    #[test]
    fn secret_address_token_and_proxy_win() {
        let mut s = spec("generic");
        s.address = Some("https://ignored.example/".into());
        s.proxy = Some("http://spec-proxy:3128".into());
        s.channel = Some("on-call".into());
        s.username = Some("bot".into());
        s.secret_ref = Some(SecretRef {
            name: "hook".into(),
        });
        let data = secret(&[
            ("address", "https://real.example/hook"),
            ("token", "t0k"),
            ("proxy", "http://p:8080"),
        ]);
        let p = resolve(&s, Some(&data)).unwrap().unwrap();
        assert_eq!(p.address.expose().as_str(), "https://real.example/hook");
        assert_eq!(p.token.as_ref().map(SecretToken::expose), Some("t0k"));
        assert_eq!(
            p.proxy.as_ref().map(|u| u.expose().as_str()),
            Some("http://p:8080/")
        );
        assert_eq!(
            (p.channel.as_str(), p.username.as_str()),
            ("on-call", "bot")
        );
    }

    #[test]
    fn token_is_dropped_for_types_that_do_not_send_it() {
        let mut s = spec("msteams");
        s.secret_ref = Some(SecretRef {
            name: "hook".into(),
        });
        let data = secret(&[
            ("address", "https://x.webhook.office.com/a"),
            ("token", "t0k"),
        ]);
        assert_eq!(resolve(&s, Some(&data)).unwrap().unwrap().token, None);
    }

    #[test]
    fn errors_and_disabled() {
        let mut s = spec("slack");
        s.secret_ref = Some(SecretRef {
            name: "hook".into(),
        });
        assert_eq!(
            resolve(&s, None),
            Err(ResolveError::MissingSecret("hook".into()))
        );
        assert_eq!(
            resolve(&s, Some(&secret(&[("token", "x")]))),
            Err(ResolveError::MissingAddress("hook".into()))
        );
        let bad = BTreeMap::from([("address".to_owned(), vec![0xff, 0xfe])]);
        assert!(matches!(
            resolve(&s, Some(&bad)),
            Err(ResolveError::NotUtf8 { .. })
        ));
        assert_eq!(resolve(&s, Some(&secret(&[("address", "")]))), Ok(None));
        assert_eq!(resolve(&spec("slack"), None), Ok(None));
        assert_eq!(
            resolve(&spec("pagerduty"), None),
            Err(ResolveError::UnknownType("pagerduty".into()))
        );
        let mut s = spec("slack");
        s.address = Some("not a url /SECRETPATH".into());
        let e = resolve(&s, None).unwrap_err();
        assert!(matches!(e, ResolveError::InvalidAddress(_)));
        assert!(!e.to_string().contains("SECRETPATH"), "{e}");
    }

    #[test]
    fn routing_by_severity() {
        let entry = |name: &str, severity: Option<&str>| CanaryAlert {
            name: name.into(),
            severity: severity.map(Into::into),
            ..CanaryAlert::default()
        };
        let alerts = vec![
            entry("all", None),
            entry("info", Some("info")),
            entry("warn", Some("warn")),
            entry("pager", Some("error")),
        ];
        let names = |r: Route<'_>| match r {
            Route::Global => vec!["<global>".to_owned()],
            Route::Providers(p) => p.iter().map(|a| a.name.clone()).collect(),
        };
        assert_eq!(names(route(Some(&alerts), Severity::Info)), ["all", "info"]);
        assert_eq!(
            names(route(Some(&alerts), Severity::Warn)),
            ["all", "info", "warn"]
        );
        assert_eq!(
            names(route(Some(&alerts), Severity::Error)),
            ["all", "info", "warn", "pager"]
        );
        assert_eq!(route(None, Severity::Info), Route::Global);
        assert_eq!(route(Some(&[]), Severity::Error), Route::Global);
    }

    #[test]
    fn global_flags() {
        assert_eq!(resolve_global(&GlobalFlags::default()), Ok(None));
        let slack = GlobalFlags {
            slack_url: "https://hooks.slack.com/x".into(),
            ..GlobalFlags::default()
        };
        let p = resolve_global(&slack).unwrap().unwrap();
        assert_eq!(
            (p.type_, p.channel.as_str(), p.username.as_str()),
            (ProviderType::Slack, "general", "flagger")
        );
        let token = GlobalFlags {
            slack_token: "xoxb-1".into(),
            slack_channel: "ops".into(),
            ..GlobalFlags::default()
        };
        let p = resolve_global(&token).unwrap().unwrap();
        assert_eq!(p.address.expose().as_str(), SLACK_POST_MESSAGE_URL);
        assert_eq!(p.channel, "ops");
        assert!(p.token.is_some());
        let both = GlobalFlags {
            msteams_url: "https://x.webhook.office.com/y".into(),
            ..slack
        };
        assert_eq!(
            resolve_global(&both).unwrap().unwrap().type_,
            ProviderType::MsTeams
        );
        assert!(!format!("{both:?}").contains("webhook.office.com"));
    }
}
