//! How a connection logs in to Salesforce: what the config file describes and what the client
//! uses, one type for both (the config loader builds it, the client's token cache consumes it).

use std::path::PathBuf;

use crate::Secret;

/// The OAuth2 flow and its inputs. Secrets are [`Secret`]s, so `Debug` never shows them.
#[derive(Clone, Debug, PartialEq)]
pub enum Credentials {
    /// `grant_type=password`; `password` is the password with the security token appended.
    Password {
        username: String,
        password: Secret,
        client_id: String,
        client_secret: Secret,
    },
    /// `grant_type=client_credentials` (the connected app's run-as user).
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// `grant_type=refresh_token`. A rotated refresh token in the answer replaces this one.
    RefreshToken {
        client_id: String,
        client_secret: Option<Secret>,
        refresh_token: Secret,
    },
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an RS256 assertion signed
    /// by `private_key` (PKCS#1 or PKCS#8). `audience` defaults to the login URL.
    JwtBearer {
        client_id: String,
        username: String,
        private_key: PrivateKey,
        audience: Option<String>,
    },
}

/// The JWT flow's key: inline, or a file read at each login (so a rotated key is picked up).
#[derive(Clone, Debug, PartialEq)]
pub enum PrivateKey {
    Pem(Secret),
    File(PathBuf),
}

impl PrivateKey {
    pub fn pem(&self) -> std::io::Result<Secret> {
        match self {
            PrivateKey::Pem(pem) => Ok(pem.clone()),
            PrivateKey::File(path) => std::fs::read_to_string(path).map(Secret::new),
        }
    }
}

impl Credentials {
    /// The config's name for the flow (`auth = "..."`).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Password { .. } => "password",
            Credentials::ClientCredentials { .. } => "client_credentials",
            Credentials::RefreshToken { .. } => "refresh_token",
            Credentials::JwtBearer { .. } => "jwt",
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            Credentials::Password { client_id, .. }
            | Credentials::ClientCredentials { client_id, .. }
            | Credentials::RefreshToken { client_id, .. }
            | Credentials::JwtBearer { client_id, .. } => client_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_when_asked_and_a_missing_one_is_an_error() {
        let path = std::env::temp_dir().join(format!("driftless-key-{}", std::process::id()));
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----").unwrap();
        let key = PrivateKey::File(path.clone());
        assert_eq!(key.pem().unwrap().expose(), "-----BEGIN PRIVATE KEY-----");
        std::fs::remove_file(&path).unwrap();
        assert!(key.pem().is_err());
        assert_eq!(
            PrivateKey::Pem(Secret::new("k")).pem().unwrap().expose(),
            "k"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = Credentials::Password {
            username: "u".into(),
            password: Secret::new("hunter2"),
            client_id: "c".into(),
            client_secret: Secret::new("shh"),
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2") && !text.contains("shh"), "{text}");
        assert_eq!((c.kind(), c.client_id()), ("password", "c"));
    }
}
