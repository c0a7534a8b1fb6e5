//! The JWT the login issues when a signing key is configured (`JWT_KEY_FILE`),
//! for the `multiservice-jwt` stage (docs/architecture.md, "Security the model
//! enforces"): ES256, short-lived, `sub` the username and `groups` the
//! user's groups (`testers` for `tester`), set as the cookie `token`. Its
//! public key is served as a JWKS on `/.well-known/jwks.json`, which the
//! ingress gateway's RequestAuthentication reads. The cookie `user=` stays a
//! routing hint; the token is what the gateway can trust.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, ThumbprintHash},
};
use p256::pkcs8::{EncodePrivateKey, LineEnding};

/// The issuer the gateway's RequestAuthentication expects by default.
pub const DEFAULT_ISSUER: &str = "weather-frontend";
/// The cookie that carries the token.
pub const COOKIE: &str = "token";
pub const LOGOUT_COOKIE: &str = "token=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax";

/// A signing key and the JWKS of its public half.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    kid: String,
    jwks: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// From a PKCS#8 PEM P-256 private key.
    pub fn from_pem(pem: &str) -> Result<Signer, String> {
        let key = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| format!("not a PKCS#8 PEM P-256 private key: {e}"))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|e| format!("not a P-256 private key: {e}"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| format!("no thumbprint: {e}"))?;
        jwk.common.key_id = Some(kid.clone());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).map_err(|e| e.to_string())?;
        Ok(Signer { key, kid, jwks })
    }

    /// For clap: the key file `JWT_KEY_FILE` names.
    pub fn from_file(path: &str) -> Result<Signer, String> {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Signer::from_pem(&pem).map_err(|e| format!("{path}: {e}"))
    }

    /// `{"keys": [...]}`: the public key.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A token for `user`, valid `ttl_s` seconds from now.
    pub fn issue(&self, issuer: &str, user: &str, ttl_s: u64) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let groups: &[&str] = if user == "tester" { &["testers"] } else { &[] };
        self.sign(&serde_json::json!({
            "iss": issuer,
            "sub": user,
            "groups": groups,
            "iat": now,
            "exp": now + ttl_s,
        }))
    }

    /// A token of any claims, signed with this key (tests make expired ones).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| e.to_string())
    }
}

/// The `token` cookie for a token that lives `ttl_s` seconds.
pub fn cookie(token: &str, ttl_s: u64) -> String {
    format!("{COOKIE}={token}; Path=/; Max-Age={ttl_s}; HttpOnly; SameSite=Lax")
}

/// A new P-256 private key, as PKCS#8 PEM (`weather keygen`, `weather up`).
pub fn generate_pem() -> Result<String, String> {
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_the_served_jwks_and_names_the_groups() {
        let signer = Signer::from_pem(&generate_pem().unwrap()).unwrap();
        let token = signer.issue(DEFAULT_ISSUER, "tester", 60).unwrap();
        let set: JwkSet = serde_json::from_str(signer.jwks()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_issuer(&[DEFAULT_ISSUER]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "tester");
        assert_eq!(data.claims["groups"], serde_json::json!(["testers"]));
        let other = signer.issue(DEFAULT_ISSUER, "ann", 60).unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(&other);
        assert_eq!(claims.unwrap()["groups"], serde_json::json!([]));
        assert!(
            Signer::from_pem("not a key")
                .unwrap_err()
                .contains("PKCS#8")
        );
    }
}
