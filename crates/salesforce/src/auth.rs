//! OAuth2 flows (password, client_credentials, refresh_token, JWT bearer) and the token cache
//! shared by every request of a connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use reqwest::Method;
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{Auth, Call, Http, Target};
use crate::secret::Secret;

pub use driftless_secret::{Credentials, PrivateKey};

/// The flow's name in logs.
fn grant(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Password { .. } => "password",
        Credentials::ClientCredentials { .. } => "client_credentials",
        Credentials::RefreshToken { .. } => "refresh_token",
        Credentials::JwtBearer { .. } => "jwt_bearer",
    }
}

/// A live session.
#[derive(Debug)]
pub(crate) struct Token {
    pub access_token: Secret,
    /// Without a trailing slash.
    pub instance_url: String,
    pub org_id: String,
    pub user_id: String,
}

impl Token {
    /// Identifies the org for the long-running cap. The instance URL is part of it so that two
    /// simulators in one process, which may share an org id, do not share a cap.
    pub fn org_key(&self) -> String {
        format!("{} {}", self.instance_url, self.org_id)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    instance_url: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    refresh_token: Option<Secret>,
}

#[derive(serde::Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// The token cache. Requests share one token; when Salesforce says it is invalid, exactly one
/// request logs in again and the others pick up its token.
pub(crate) struct TokenCache {
    login_url: String,
    credentials: Mutex<Credentials>,
    current: tokio::sync::Mutex<Option<Arc<Token>>>,
    logins: AtomicU64,
}

impl TokenCache {
    pub fn new(login_url: &str, credentials: Credentials) -> TokenCache {
        TokenCache {
            login_url: login_url.trim_end_matches('/').to_owned(),
            credentials: Mutex::new(credentials),
            current: tokio::sync::Mutex::new(None),
            logins: AtomicU64::new(0),
        }
    }

    /// The current token, logging in if there is none.
    pub async fn token(&self, http: &Http) -> Result<Arc<Token>> {
        let mut current = self.current.lock().await;
        if let Some(token) = &*current {
            return Ok(token.clone());
        }
        // Boxed: logging in goes through the same request loop that asks for tokens.
        let token = Arc::new(Box::pin(self.login(http)).await?);
        *current = Some(token.clone());
        Ok(token)
    }

    /// Replaces `stale` with a fresh token, unless another request already did.
    pub async fn renew(&self, http: &Http, stale: &Arc<Token>) -> Result<Arc<Token>> {
        let mut current = self.current.lock().await;
        if let Some(token) = &*current {
            if !Arc::ptr_eq(token, stale) {
                return Ok(token.clone());
            }
        }
        // Boxed: logging in goes through the same request loop that asks for tokens.
        let token = Arc::new(Box::pin(self.login(http)).await?);
        *current = Some(token.clone());
        Ok(token)
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    async fn login(&self, http: &Http) -> Result<Token> {
        let credentials = self.credentials.lock().clone();
        let form = self.form(&credentials)?;
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| Error::config("cannot encode login").with_source(e))?;
        let call = Call {
            method: Method::POST,
            target: Target::Absolute(format!("{}/services/oauth2/token", self.login_url)),
            route: "oauth2.token",
            auth: Auth::None,
            headers: Vec::new(),
            body: Some((body.into(), "application/x-www-form-urlencoded")),
            idempotent: true,
            long_running: false,
        }
        .header("accept", "application/json");
        tracing::debug!(grant = grant(&credentials), "logging in");
        let response: TokenResponse = http
            .execute_json(&call, None)
            .await
            .map_err(|e| self.login_error(e))?;
        if let (Some(new), Credentials::RefreshToken { refresh_token, .. }) =
            (&response.refresh_token, &mut *self.credentials.lock())
        {
            if new != refresh_token {
                *refresh_token = new.clone();
            }
        }
        let (org_id, user_id) = response
            .id
            .as_deref()
            .and_then(|id| {
                let mut parts = id.trim_end_matches('/').rsplit('/');
                let user = parts.next()?;
                let org = parts.next()?;
                Some((org.to_owned(), user.to_owned()))
            })
            .unwrap_or_else(|| (response.instance_url.clone(), String::new()));
        self.logins.fetch_add(1, Ordering::Relaxed);
        tracing::info!(grant = grant(&credentials), org_id = %org_id, "logged in");
        Ok(Token {
            access_token: response.access_token,
            instance_url: response.instance_url.trim_end_matches('/').to_owned(),
            org_id,
            user_id,
        })
    }

    /// Says which login URL answered what, since a wrong `login_url` otherwise surfaces as a
    /// "not found" that callers would read as a missing object.
    fn login_error(&self, e: Error) -> Error {
        let url = &self.login_url;
        match e.kind() {
            // 401/403 from the token endpoint mean the credentials, not a session, are bad.
            ErrorKind::InvalidSession | ErrorKind::Rejected | ErrorKind::Authentication => {
                Error::new(
                    ErrorKind::Authentication,
                    format!("login at {url} refused: {}", e.message()),
                )
                .with_status_opt(e.status())
                .with_code(e.code().unwrap_or("login_refused").to_owned())
                .with_route("oauth2.token")
            }
            ErrorKind::NotFound => Error::new(
                ErrorKind::Config,
                format!(
                    "login URL {url} answered 404 to POST /services/oauth2/token: \
                     it is not a Salesforce login endpoint"
                ),
            )
            .with_status_opt(e.status())
            .with_route("oauth2.token"),
            ErrorKind::Protocol => Error::new(
                ErrorKind::Config,
                format!(
                    "login URL {url} did not answer like a Salesforce login endpoint: {}",
                    e.message()
                ),
            )
            .with_status_opt(e.status())
            .with_route("oauth2.token"),
            _ => e,
        }
    }

    fn form(&self, credentials: &Credentials) -> Result<Vec<(&'static str, String)>> {
        Ok(match credentials {
            Credentials::Password {
                username,
                password,
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "password".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().into()),
                ("username", username.clone()),
                ("password", password.expose().into()),
            ],
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().into()),
            ],
            Credentials::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => {
                let mut form = vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh_token.expose().into()),
                    ("client_id", client_id.clone()),
                ];
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.expose().into()));
                }
                form
            }
            Credentials::JwtBearer {
                client_id,
                username,
                private_key,
                audience,
            } => {
                let audience = audience.as_deref().unwrap_or(&self.login_url);
                let pem = private_key.pem().map_err(|e| {
                    let file = match private_key {
                        PrivateKey::File(path) => path.display().to_string(),
                        PrivateKey::Pem(_) => String::new(),
                    };
                    Error::config(format!("cannot read private_key_file {file}: {e}"))
                })?;
                let assertion = jwt_assertion(client_id, username, audience, &pem)?;
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    ("assertion", assertion.expose().into()),
                ]
            }
        })
    }
}

/// The RS256 assertion of the JWT bearer flow, valid for three minutes as Salesforce advises.
pub(crate) fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    key_pem: &Secret,
) -> Result<Secret> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
        .map_err(|_| Error::config("jwt private key is not an RSA PEM key"))?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 180)
        .unwrap_or(0);
    let claims = JwtClaims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp,
    };
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|_| Error::config("cannot sign jwt assertion"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../tests/fixtures/jwt-test-key.pem");
    const PUB: &str = include_str!("../tests/fixtures/jwt-test-key.pub.pem");

    #[test]
    fn jwt_assertion_is_rs256_with_salesforce_claims() {
        let jwt = jwt_assertion(
            "consumer-key",
            "admin@example.com",
            "https://login.salesforce.com",
            &Secret::new(KEY),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://login.salesforce.com"]);
        validation.set_issuer(&["consumer-key"]);
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUB.as_bytes()).unwrap();
        let data =
            jsonwebtoken::decode::<serde_json::Value>(jwt.expose(), &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "admin@example.com");
        assert_eq!(data.header.alg, jsonwebtoken::Algorithm::RS256);
    }

    #[test]
    fn bad_key_is_a_config_error_without_the_key() {
        let err = jwt_assertion("a", "b", "c", &Secret::new("not a key")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("not a key"));
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials::Password {
            username: "u".into(),
            password: Secret::new("pw-123"),
            client_id: "cid".into(),
            client_secret: Secret::new("cs-456"),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("pw-123") && !s.contains("cs-456"), "{s}");
    }
}
