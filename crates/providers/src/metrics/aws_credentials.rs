//! Where CloudWatch's AWS credentials come from, in the order of the AWS SDKs' default chain
//! (the part of it that applies to a pod):
//!
//! 1. the template's Secret (`aws_access_key_id`, `aws_secret_access_key`, optional
//!    `aws_session_token`, the names of the AWS credentials file; Flagger reads no Secret here);
//! 2. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
//! 3. web identity, as EKS IAM roles for service accounts set it up: `AWS_ROLE_ARN` and
//!    `AWS_WEB_IDENTITY_TOKEN_FILE`, exchanged with STS `AssumeRoleWithWebIdentity`.
//!
//! Not followed: shared config/credentials files, the container credentials endpoint (EKS Pod
//! Identity, ECS) and the EC2 instance metadata service.

use aws_credential_types::Credentials;

use super::MetricError;
use super::factory::{ProviderConfigError, VendorConfig};
use super::http::{send, truncate};

pub const ACCESS_KEY_ID: &str = "aws_access_key_id";
pub const SECRET_ACCESS_KEY: &str = "aws_secret_access_key";
pub const SESSION_TOKEN: &str = "aws_session_token";

#[derive(Debug)]
pub enum CredentialSource {
    Static(Credentials),
    WebIdentity {
        role_arn: String,
        token_file: String,
        session_name: String,
        /// STS base URL: the region's, or `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`.
        sts: String,
    },
}

impl CredentialSource {
    pub fn from_config(
        config: &VendorConfig,
        region: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderConfigError> {
        if let Some(id) = config.optional(ACCESS_KEY_ID)? {
            let secret = config.required("cloudwatch", SECRET_ACCESS_KEY)?;
            let token = config.optional(SESSION_TOKEN)?;
            return Ok(Self::Static(Credentials::new(
                id, secret, token, None, "secret",
            )));
        }
        let var = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        if let (Some(id), Some(secret)) = (
            var(&["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"]),
            var(&["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"]),
        ) {
            let token = var(&["AWS_SESSION_TOKEN"]);
            return Ok(Self::Static(Credentials::new(
                id,
                secret,
                token,
                None,
                "environment",
            )));
        }
        if let (Some(role_arn), Some(token_file)) = (
            var(&["AWS_ROLE_ARN"]),
            var(&["AWS_WEB_IDENTITY_TOKEN_FILE"]),
        ) {
            let sts = var(&["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"])
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
            return Ok(Self::WebIdentity {
                role_arn,
                token_file,
                session_name: var(&["AWS_ROLE_SESSION_NAME"])
                    .unwrap_or_else(|| "flagger-rs".to_string()),
                sts: sts.trim_end_matches('/').to_string(),
            });
        }
        Err(ProviderConfigError(format!(
            "no AWS credentials for cloudwatch: give the template a secretRef with \
             {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}, or set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (IAM roles \
             for service accounts) in the controller's environment"
        )))
    }

    /// The credentials to sign with now; web identity asks STS each time (the provider lives for
    /// one evaluation).
    pub async fn resolve(&self, client: &reqwest::Client) -> Result<Credentials, MetricError> {
        let (role_arn, token_file, session_name, sts) = match self {
            Self::Static(c) => return Ok(c.clone()),
            Self::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts,
            } => (role_arn, token_file, session_name, sts),
        };
        // Read each time: the kubelet rotates the projected token.
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            MetricError::failed(format!("reading the web identity token {token_file}: {e}"))
        })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", role_arn)
            .append_pair("RoleSessionName", session_name)
            .append_pair("WebIdentityToken", token.trim())
            .finish();
        let req = client
            .post(format!("{sts}/"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let (status, body) = send(req).await?;
        parse_assume_role(status, &body)
    }
}

/// STS answers in XML (the Query protocol); the handful of leaf elements needed are unique in it.
pub fn parse_assume_role(status: u16, body: &str) -> Result<Credentials, MetricError> {
    if status >= 400 {
        let detail = match (xml_text(body, "Code"), xml_text(body, "Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => truncate(body),
        };
        return Err(MetricError::failed(format!(
            "AssumeRoleWithWebIdentity (HTTP {status}): {detail}"
        )));
    }
    let field = |tag: &str| {
        xml_text(body, tag).ok_or_else(|| {
            MetricError::failed(format!("AssumeRoleWithWebIdentity answer lacks {tag}"))
        })
    };
    Ok(Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("SessionToken")?),
        None,
        "web-identity",
    ))
}

/// The text of the first `<tag>…</tag>`, with XML's predefined entities decoded.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(
        body[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}
