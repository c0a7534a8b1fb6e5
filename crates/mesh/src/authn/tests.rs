//! Peer and request authentication, case by case.

use super::*;
use crate::load::Manifests;
use jsonwebtoken::{EncodingKey, Header, encode};

// A P-256 key made for these tests only (openssl genpkey -algorithm EC
// -pkeyopt ec_paramgen_curve:P-256).
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgns5frTzLqSbcfoZv
8nU+szbvlmBu/knB4NmxULUSBM+hRANCAATaF+AWcsN6YWrR4XEy6zPyihtyN5Hr
bgS69dgzbmoFJNEAPlOqWhVlxhyE2pz/9ad/1oBY5PB2ZHSZv+e980CE
-----END PRIVATE KEY-----
";

fn manifests(yaml: &str) -> Manifests {
    let mut m = Manifests::default();
    m.add_yaml("test.yaml", yaml).expect("loads");
    m
}

fn token(claims: serde_json::Value, kid: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    encode(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn jwks() -> Arc<JwkSet> {
    let key = EncodingKey::from_ec_pem(KEY.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    Arc::new(JwkSet { keys: vec![jwk] })
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

const RA: &str = "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
    - issuer: weather-frontend
      jwksUri: http://frontend.weather.svc.cluster.local:3000/.well-known/jwks.json
      fromCookies: [token]
";

#[test]
fn tokens_are_verified_and_failures_answered_as_envoy_does() {
    let providers = Provider::compile(&manifests(RA).request_authentications[0]);
    let refs: Vec<&Provider> = providers.iter().collect();
    let set = jwks();
    let keys = |uri: &str| uri.ends_with("/jwks.json").then(|| set.clone());
    let run = |cookie: &str| {
        let headers = [("cookie".to_owned(), cookie.to_owned())];
        authenticate(
            &refs,
            &Carrier {
                headers: &headers[..],
                query: "",
            },
            &keys,
        )
    };
    let good = token(
        serde_json::json!({"iss": "weather-frontend", "sub": "tester", "exp": now() + 600, "groups": ["testers"]}),
        "k1",
    );
    match run(&format!("user=tester; token={good}")) {
        Outcome::Valid { policy, claims } => {
            assert_eq!(policy, "istio-system/jwt");
            assert_eq!(
                request_principal(&claims).unwrap(),
                "weather-frontend/tester"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(run("user=tester"), Outcome::NoToken));
    let expired = token(
        serde_json::json!({"iss": "weather-frontend", "sub": "t", "exp": now() - 120}),
        "k1",
    );
    assert!(matches!(
        run(&format!("token={expired}")),
        Outcome::Invalid {
            message: "Jwt is expired"
        }
    ));
    let stranger = token(serde_json::json!({"iss": "someone", "sub": "t"}), "k1");
    assert!(matches!(
        run(&format!("token={stranger}")),
        Outcome::Invalid {
            message: "Jwt issuer is not configured"
        }
    ));
    // A forged signature: the payload of one token on the signature of another.
    let other = token(
        serde_json::json!({"iss": "weather-frontend", "sub": "ann"}),
        "k1",
    );
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[2] = other.split('.').nth(2).unwrap();
    assert!(matches!(
        run(&format!("token={}", parts.join("."))),
        Outcome::Invalid {
            message: "Jwt verification fails"
        }
    ));
    assert!(matches!(run("token=not.a-jwt"), Outcome::Invalid { .. }));
    let unknown_kid = token(
        serde_json::json!({"iss": "weather-frontend", "sub": "t"}),
        "k2",
    );
    assert!(matches!(
        run(&format!("token={unknown_kid}")),
        Outcome::Invalid {
            message: "Jwks doesn't have key to match kid or alg from Jwt"
        }
    ));
}

#[test]
fn without_locations_the_bearer_header_and_access_token_are_read() {
    let ra = manifests(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: weather}
spec:
  jwtRules: [{issuer: weather-frontend, audiences: [weather]}]
",
    );
    let mut providers = Provider::compile(&ra.request_authentications[0]);
    let key = EncodingKey::from_ec_pem(KEY.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    providers[0].jwks = Some(Ok(Arc::new(JwkSet { keys: vec![jwk] })));
    let refs: Vec<&Provider> = providers.iter().collect();
    let none = |_: &str| None;
    let auth = |headers: &[(String, String)], query: &str| {
        authenticate(&refs, &Carrier { headers, query }, &none)
    };
    let t = token(
        serde_json::json!({"iss": "weather-frontend", "sub": "t", "aud": "weather"}),
        "k1",
    );
    let bearer = [("authorization".to_owned(), format!("Bearer {t}"))];
    assert!(matches!(auth(&bearer, ""), Outcome::Valid { .. }));
    let empty: [(String, String); 0] = [];
    let q = format!("city=paris&access_token={t}");
    assert!(matches!(auth(&empty, &q), Outcome::Valid { .. }));
    let wrong_aud = token(
        serde_json::json!({"iss": "weather-frontend", "sub": "t", "aud": "x"}),
        "k1",
    );
    let bearer = [("authorization".to_owned(), format!("Bearer {wrong_aud}"))];
    assert!(matches!(
        auth(&bearer, ""),
        Outcome::Invalid {
            message: "Audiences in Jwt are not allowed"
        }
    ));
}

#[test]
fn the_most_specific_peer_authentication_decides() {
    let m = manifests(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: weather}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: frontend, namespace: weather}
spec:
  selector: {matchLabels: {app: frontend}}
  mtls: {mode: UNSET}
  portLevelMtls: {9000: {mode: DISABLE}}
",
    );
    let pa = &m.peer_authentications;
    let frontend = Labels::from([("app".into(), "frontend".into())]);
    assert_eq!(mtls_mode(pa, "weather", &frontend, 3000).0, Mtls::Strict);
    assert_eq!(
        mtls_mode(pa, "weather", &frontend, 9000),
        (Mtls::Disable, Some("weather/frontend".into()))
    );
    assert_eq!(
        mtls_mode(pa, "other", &frontend, 3000),
        (Mtls::Permissive, None)
    );
}
