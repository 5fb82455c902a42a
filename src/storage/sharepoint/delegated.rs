//! Delegated mode: each user's own Microsoft account, through the OAuth 2.0 authorization
//! code flow with PKCE on the tenant's v2.0 endpoints (Microsoft identity platform, "OAuth 2.0
//! authorization code flow"). The app still authenticates itself at the token endpoint with
//! its client secret or certificate, as in app-only mode.
//!
//! This module only speaks to Microsoft: where users' refresh tokens are kept, and when a
//! refresh happens, is `crate::accounts`' business.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::graph::{retry_after, transport};
use super::settings::Settings;
use super::token::{TokenSource, post_form, token_form};
use crate::egress::EgressClient;
use crate::storage::{Storage, StorageError};

/// Least privilege for a user working in a library they can reach: `Files.ReadWrite.All`
/// (read and write the files the user can access, in any site) and `Sites.Read.All` (only to
/// resolve the connection's site URL to its id); `offline_access` for a refresh token;
/// `openid profile` for the account's name in the id token. Graph scopes are bounded by what
/// SharePoint lets the user do, so a user never gets more than SharePoint gives them.
const GRAPH_SCOPES: [&str; 2] = ["Files.ReadWrite.All", "Sites.Read.All"];
const OIDC_SCOPES: &str = "offline_access openid profile";

/// A failed redemption or refresh.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// `invalid_grant`: the code or refresh token is expired, revoked or already used; only a
    /// new sign-in helps.
    #[error("Microsoft refused the grant: {0}")]
    Revoked(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a successful redemption or refresh gives.
pub struct Grant {
    pub access_token: SecretString,
    pub expires_in: Duration,
    /// Microsoft rotates refresh tokens: a new one replaces the stored one.
    pub refresh_token: Option<SecretString>,
    /// The account's `preferred_username` (UPN) from the id token, when there is one.
    pub account: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct Refusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The delegated side of one connection.
pub struct Delegated {
    settings: Settings,
    egress: EgressClient,
    token_url: Url,
    authorize_url: Url,
    scope: String,
}

impl Delegated {
    /// Whether background work acts as the app (`background = "app"`).
    pub fn app_in_background(&self) -> bool {
        self.settings.app_in_background
    }

    pub(super) fn new(settings: Settings, egress: EgressClient) -> Result<Self, StorageError> {
        let resource = settings.graph_resource.as_str().trim_end_matches('/');
        let graph: Vec<String> = GRAPH_SCOPES
            .iter()
            .map(|s| format!("{resource}/{s}"))
            .collect();
        Ok(Self {
            token_url: settings.token_url()?,
            authorize_url: settings.authorize_url()?,
            scope: format!("{OIDC_SCOPES} {}", graph.join(" ")),
            settings,
            egress,
        })
    }

    /// Where to send the user's browser: the authorize endpoint with PKCE (S256).
    pub fn authorize(&self, redirect_uri: &str, state: &str, verifier: &SecretString) -> Url {
        use sha2::Digest;
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.expose_secret()));
        let mut url = self.authorize_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", &self.scope)
            .append_pair("state", state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Redeems an authorization code with the PKCE verifier.
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &SecretString,
        redirect_uri: &str,
    ) -> Result<Grant, GrantError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose_secret()),
            ("scope", &self.scope),
        ];
        self.token_request(&form).await
    }

    /// A new access token (and, as Microsoft rotates them, a new refresh token).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<Grant, GrantError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("scope", &self.scope),
        ];
        self.token_request(&form).await
    }

    /// The connection's storage as seen by the user whose tokens `tokens` gives.
    pub fn open(&self, tokens: Arc<dyn TokenSource>) -> Result<Arc<dyn Storage>, StorageError> {
        super::build(&self.settings, tokens, None, &self.egress)
    }

    /// Sent once: a refresh token must not be offered twice, since a retry after a lost
    /// answer would present a token Microsoft may already have rotated.
    async fn token_request(&self, pairs: &[(&str, &str)]) -> Result<Grant, GrantError> {
        let body = token_form(
            &self.settings.credential,
            &self.settings.client_id,
            &self.token_url,
            pairs,
        )?;
        let response = post_form(&self.egress, &self.token_url, body)
            .await?
            .map_err(|e| transport(e, "token request"))?;
        answer(response).await
    }
}

/// The token endpoint's answer: a grant, or why not.
async fn answer(response: reqwest::Response) -> Result<Grant, GrantError> {
    let status = response.status();
    if status.is_success() {
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| StorageError::Backend(format!("the token endpoint's answer: {e}")))?;
        return Ok(Grant {
            access_token: SecretString::from(answer.access_token),
            expires_in: Duration::from_secs(answer.expires_in),
            refresh_token: answer.refresh_token.map(SecretString::from),
            account: answer.id_token.as_deref().and_then(account_name),
        });
    }
    let headers = response.headers().clone();
    let refusal: Refusal = response.json().await.unwrap_or_default();
    let description = refusal.error_description.lines().next().unwrap_or("");
    if refusal.error == "invalid_grant" {
        return Err(GrantError::Revoked(description.to_string()));
    }
    Err(GrantError::Storage(match status.as_u16() {
        429 | 503 => StorageError::Throttled {
            retry_after: retry_after(&headers),
        },
        400 | 401 | 403 => {
            // AADSTS codes tell the admin what is wrong (secret, consent, redirect URI).
            tracing::warn!(
                error = %refusal.error,
                description,
                "sharepoint: Microsoft refused a delegated token request"
            );
            StorageError::PermissionDenied
        }
        _ => StorageError::Unavailable(format!(
            "token endpoint answered HTTP {status}: {} {description}",
            refusal.error
        )),
    }))
}

/// `preferred_username` (else `name`) from an id token's claims. The token came straight
/// from the token endpoint over the connection filebridge opened, which OpenID Connect
/// accepts in place of checking its signature; it is used for display only.
fn account_name(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    ["preferred_username", "upn", "name"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(|v| v.as_str()))
        .map(str::to_owned)
}

/// The token source of a delegated connection's shared storage: there is no user, so there
/// is no token (background work cannot act in delegated mode).
pub(super) struct NoUser;

#[async_trait]
impl TokenSource for NoUser {
    async fn token(&self) -> Result<SecretString, StorageError> {
        Err(StorageError::Backend(
            "sharepoint: this connection works with each user's own Microsoft account \
             (mode = delegated) and not as the app (background = none), so nothing can be \
             done without a user"
                .into(),
        ))
    }

    async fn rejected(&self, _: &SecretString) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_come_from_the_id_token() {
        let claims =
            URL_SAFE_NO_PAD.encode(br#"{"preferred_username":"a@contoso.com","name":"A"}"#);
        assert_eq!(
            account_name(&format!("e30.{claims}.")).as_deref(),
            Some("a@contoso.com")
        );
        assert_eq!(account_name("garbage"), None);
    }
}
