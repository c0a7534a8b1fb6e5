//! The zero-trust release through the local data plane, real sockets and the
//! shipped manifests (istio/security/ and the multiservice-jwt stage): who
//! reaches v2, and who is refused, and how.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use weather::{
    dataplane::{self, Options, Running},
    verify::{self, Class, Judge},
};

use crate::{root, stage_paths};

const V1: &str = "frontend:v1,forecast:v1";
const V2: &str = "frontend:v2,forecast:v2,recommendation:v1";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn start(paths: Vec<PathBuf>, stage: &str) -> Running {
    dataplane::start(Options::local(paths, Some(stage.to_owned())))
        .await
        .unwrap()
}

/// Status, `x-weather-chain` and body of `GET /` with these cookies.
async fn page(ingress: SocketAddr, cookie: &str) -> (u16, String, String) {
    let r = http()
        .get(format!("http://{ingress}/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let chain = r
        .headers()
        .get("x-weather-chain")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), chain, r.text().await.unwrap())
}

/// Logs in through the ingress, as the browser does; the `token` cookie's value.
async fn login(ingress: SocketAddr, user: &str) -> String {
    let url = format!("http://{ingress}");
    let r = http()
        .post(format!("{url}/login"))
        .header("origin", &url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username={user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            let v = v.to_str().ok()?;
            v.strip_prefix("token=")?
                .split(';')
                .next()
                .map(str::to_owned)
        })
        .expect("the login sets a token cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_jwt_stage_only_a_verified_tester_token_reaches_v2() {
    let running = start(stage_paths("multiservice-jwt"), "multiservice-jwt").await;
    let ingress = running.ingress;

    // A cookie anyone can set is no longer enough.
    assert_eq!(page(ingress, "user=tester").await.1, V1);

    // The login's signed token: the whole v2 chain, every time.
    let token = login(ingress, "tester").await;
    let cookie = format!("user=tester; token={token}");
    for _ in 0..40 {
        let (status, chain, _) = page(ingress, &cookie).await;
        assert_eq!(
            (status, chain.as_str()),
            (200, V2),
            "a tester request crossed"
        );
    }

    // A valid token of another user: v1.
    let ann = login(ingress, "ann").await;
    assert_eq!(page(ingress, &format!("token={ann}")).await.1, V1);

    // A forged token: ann's claims under the tester's signature, or a claim
    // rewritten; refused at the gateway as Istio does.
    let parts: Vec<&str> = token.split('.').collect();
    let ann_parts: Vec<&str> = ann.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], ann_parts[1], parts[2]);
    let (status, _, body) = page(ingress, &format!("token={forged}")).await;
    assert_eq!((status, body.trim()), (401, "Jwt verification fails"));

    // Signed by a key the frontend's JWKS does not hold.
    let stranger = frontend::token::Signer::from_pem(&frontend::token::generate_pem().unwrap())
        .unwrap()
        .issue("weather-frontend", "tester", 60)
        .unwrap();
    let (status, _, body) = page(ingress, &format!("token={stranger}")).await;
    assert_eq!(
        (status, body.trim()),
        (401, "Jwks doesn't have key to match kid or alg from Jwt")
    );

    // Expired, with the right key (the one weather up gave the frontend).
    let key = std::env::temp_dir().join("weather-up/jwt-key.pem");
    let signer = frontend::token::Signer::from_file(key.to_str().unwrap()).unwrap();
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let expired = signer
        .sign(
            &serde_json::json!({"iss": "weather-frontend", "sub": "tester",
            "groups": ["testers"], "iat": old, "exp": old + 900}),
        )
        .unwrap();
    let (status, _, body) = page(ingress, &format!("token={expired}")).await;
    assert_eq!((status, body.trim()), (401, "Jwt is expired"));

    // `weather verify` logs its testers in: the promise holds on this stage
    // too, and the model's prediction for it agrees.
    let (manifests, mesh) = crate::shipped("multiservice-jwt");
    for judge in [
        Judge::Promise,
        Judge::Stage {
            name: "multiservice-jwt".into(),
            manifests: Box::new(manifests),
            mesh: Box::new(mesh),
        },
    ] {
        let report = verify::run(verify::Options {
            url: format!("http://{ingress}"),
            requests: 300,
            concurrency: 8,
            judge,
        })
        .await
        .unwrap();
        assert!(report.ok(), "{}", report.render("the JWT stage"));
        assert_eq!(report.crossings, 0);
        assert_eq!(report.rows[&Class::Tester].observed.get(V2), Some(&300));
    }
    running.shutdown().await;
}

/// The address of a workload's outbound sidecar listener.
fn sidecar(running: &Running, workload: &str) -> SocketAddr {
    running
        .sidecars
        .iter()
        .find(|(n, _)| n == workload)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("no sidecar listener for {workload}"))
}

/// Status and body of a request sent through a workload's sidecar.
async fn call(via: SocketAddr, method: &str, host: &str, path: &str) -> (u16, String) {
    let r = http()
        .request(method.parse().unwrap(), format!("http://{via}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_refuses_every_call_no_policy_allows() {
    let running = start(stage_paths("multiservice"), "multiservice").await;
    let forecast = "forecast:3002";
    let frontend = sidecar(&running, "frontend-v1");
    // The frontend may read forecasts...
    let (status, _) = call(frontend, "GET", forecast, "/forecast?city=paris").await;
    assert_eq!(status, 200);
    // ...and do nothing else to them: forecast's sidecar answers.
    let (status, body) = call(frontend, "POST", forecast, "/forecast?city=paris").await;
    assert_eq!((status, body.trim()), (403, "RBAC: access denied"));
    // recommendation calls nobody: its own Sidecar resource keeps it in
    // (REGISTRY_ONLY), before forecast's policy is even reached.
    let recommendation = sidecar(&running, "recommendation-v1");
    let (status, _) = call(recommendation, "GET", forecast, "/forecast?city=paris").await;
    assert_eq!(status, 502);
    running.shutdown().await;

    // Without the Sidecar resources, forecast's own policy refuses it.
    let security = root().join("istio/security");
    let paths = vec![
        root().join("k8s"),
        root().join("istio/base"),
        security.join("peer-authentication.yaml"),
        security.join("authorization-policies.yaml"),
        root().join("istio/stages/multiservice"),
    ];
    let running = start(paths, "multiservice").await;
    let recommendation = sidecar(&running, "recommendation-v1");
    let (status, body) = call(recommendation, "GET", forecast, "/forecast?city=paris").await;
    assert_eq!((status, body.trim()), (403, "RBAC: access denied"));
    // The release itself is untouched: the ingress still serves both chains.
    assert_eq!(page(running.ingress, "").await.1, V1);
    assert_eq!(page(running.ingress, "user=tester").await.1, V2);
    running.shutdown().await;
}

/// On the Gateway API the ingress is the pods istiod deploys for the Gateway,
/// with their own identity (`weather-gateway-istio`): istio/security admits
/// it to the frontend, the release holds under least privilege, and Istio's
/// metrics name it as Kiali would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_gateway_api_the_gateways_own_identity_reaches_the_frontend() {
    use weather::stages::{Api, paths_for};
    let paths = paths_for(&root(), Api::GatewayApi, "multiservice").unwrap();
    let security = root().join("istio/security");
    assert!(paths.contains(&security), "{paths:?}");
    let running = start(paths.clone(), "multiservice").await;
    let admin = weather::admin::serve("127.0.0.1:0".parse().unwrap(), running.plane.clone())
        .await
        .unwrap();
    assert_eq!(page(running.ingress, "").await.1, V1);
    assert_eq!(page(running.ingress, "user=tester").await.1, V2);
    let frontend = sidecar(&running, "frontend-v1");
    let (status, body) = call(frontend, "POST", "forecast:3002", "/forecast?city=paris").await;
    assert_eq!((status, body.trim()), (403, "RBAC: access denied"));
    let text = crate::get_text(&format!("http://{}/stats/prometheus", admin.addr)).await;
    let from_gateway = text.lines().find(|l| {
        l.starts_with("istio_requests_total{")
            && l.contains(r#"source_workload="weather-gateway-istio""#)
            && l.contains(r#"destination_workload="frontend-v1""#)
    });
    let line = from_gateway.unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(
            r#"source_principal="spiffe://cluster.local/ns/istio-system/sa/weather-gateway-istio""#
        ),
        "{line}"
    );
    admin.shutdown().await.unwrap();
    running.shutdown().await;

    // A policy that names only the demo profile's ingress gateway refuses
    // the Gateway's pods: they are not that gateway.
    let text = std::fs::read_to_string(security.join("authorization-policies.yaml")).unwrap();
    let demo_only = text.replace(
        "              - cluster.local/ns/istio-system/sa/weather-gateway-istio\n",
        "",
    );
    assert_ne!(text, demo_only);
    let dir = crate::scratch("gateway-api-demo-ingress-only");
    std::fs::write(dir.join("authorization-policies.yaml"), demo_only).unwrap();
    let mut paths = paths;
    let at = paths.iter().position(|p| p == &security).unwrap();
    paths.insert(at + 1, dir);
    let running = start(paths, "multiservice").await;
    let (status, _, body) = page(running.ingress, "").await;
    assert_eq!((status, body.trim()), (403, "RBAC: access denied"));
    running.shutdown().await;
}
