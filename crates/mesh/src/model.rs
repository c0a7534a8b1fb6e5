//! The objects the model reads, as the cluster would: Kubernetes workloads and
//! Services (leniently: `kubernetes-validate --strict` polices their schema), and
//! Istio's networking objects (strictly: a field Istio does not define is an error,
//! so a typo like `matchs` cannot pass silently; a field Istio defines but this
//! model does not implement is kept, and reported as "not modelled").
//!
//! Long because it is a schema: one plain type per object and field, no
//! logic. Read beside Istio's API reference, one file is the clearer; the
//! rules that use the fields live in `compile`, `decide`, `authn` and `authz`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub type Labels = BTreeMap<String, String>;

/// Where an object was read: file and 1-based document index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, document {}", self.file, self.document)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Labels,
}

impl Meta {
    /// The namespace, as kubectl reads it: `default` when none is stated.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

// ---- Kubernetes ----

#[derive(Clone, Debug, Deserialize)]
pub struct Namespace {
    pub metadata: Meta,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServiceAccount {
    pub metadata: Meta,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Service {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<Value>,
    pub app_protocol: Option<String>,
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Deployment {
    pub metadata: Meta,
    pub spec: DeploymentSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: Option<u32>,
    #[serde(default)]
    pub selector: LabelSelector,
    pub template: PodTemplate,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    pub match_expressions: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub service_account_name: Option<String>,
    pub automount_service_account_token: Option<bool>,
    pub security_context: Option<Value>,
    pub termination_grace_period_seconds: Option<u64>,
    #[serde(default)]
    pub containers: Vec<Container>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    pub readiness_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    pub resources: Option<Value>,
    pub security_context: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HttpGet {
    pub path: Option<String>,
    pub port: Value,
}

impl Container {
    /// The value of an environment variable set in the manifest.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }
}

// ---- Istio networking (v1, v1beta1, v1alpha3 share these fields) ----

#[derive(Clone, Debug, Deserialize)]
pub struct Gateway {
    pub metadata: Meta,
    pub spec: GatewaySpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub servers: Vec<Server>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    pub port: GatewayPort,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub bind: Option<String>,
    pub default_endpoint: Option<String>,
    pub name: Option<String>,
    pub tls: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayPort {
    pub number: u32,
    pub protocol: String,
    pub name: Option<String>,
    pub target_port: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DestinationRule {
    pub metadata: Meta,
    pub spec: DestinationRuleSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    #[serde(default)]
    pub subsets: Vec<Subset>,
    pub traffic_policy: Option<Value>,
    pub export_to: Option<Vec<String>>,
    pub workload_selector: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subset {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    pub traffic_policy: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VirtualService {
    pub metadata: Meta,
    pub spec: VirtualServiceSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Absent or empty means `mesh`.
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    pub tls: Option<Value>,
    pub tcp: Option<Value>,
    pub export_to: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatch>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    pub redirect: Option<Value>,
    pub direct_response: Option<Value>,
    pub delegate: Option<Value>,
    pub rewrite: Option<Value>,
    pub timeout: Option<Value>,
    pub retries: Option<Value>,
    pub fault: Option<Value>,
    pub mirror: Option<Value>,
    pub mirrors: Option<Value>,
    pub mirror_percentage: Option<Value>,
    pub mirror_percent: Option<Value>,
    #[serde(rename = "mirror_percent")]
    pub mirror_percent_snake: Option<Value>,
    pub cors_policy: Option<Value>,
    pub headers: Option<Value>,
}

impl HttpRoute {
    /// The fields Istio defines that this model does not apply: a local run
    /// differs from the cluster where they are set.
    pub fn not_modelled(&self) -> Vec<&'static str> {
        let fields: [(&'static str, bool); 8] = [
            ("redirect", self.redirect.is_some()),
            ("directResponse", self.direct_response.is_some()),
            ("delegate", self.delegate.is_some()),
            ("rewrite", self.rewrite.is_some()),
            (
                "fault.delay.exponentialDelay",
                self.fault
                    .as_ref()
                    .is_some_and(|f| f["delay"].get("exponentialDelay").is_some()),
            ),
            (
                "fault.abort.grpcStatus",
                self.fault.as_ref().is_some_and(|f| {
                    f["abort"].get("grpcStatus").is_some() || f["abort"].get("http2Error").is_some()
                }),
            ),
            ("corsPolicy", self.cors_policy.is_some()),
            (
                "headers (a host or :authority rewrite)",
                self.headers
                    .iter()
                    .chain(self.route.iter().filter_map(|d| d.headers.as_ref()))
                    .any(crate::headers::rewrites_authority),
            ),
        ];
        fields
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatch {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    pub port: Option<u32>,
    #[serde(default)]
    pub source_labels: Labels,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    pub ignore_uri_case: Option<bool>,
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    pub source_namespace: Option<String>,
    pub stat_prefix: Option<String>,
}

/// Istio's `StringMatch`: one of exact, prefix or regex (RE2, matched against
/// the whole value, as Envoy's safe_regex does), or none of them, `{}`, which
/// istiod translates to a presence match (`canBeConvertedToPresentMatch`, as
/// would `regex: "*"`, had its validation not refused that already).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawStringMatch")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// `{}`: the header or parameter is present, whatever its value.
    Present,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStringMatch {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
}

impl TryFrom<RawStringMatch> for StringMatch {
    type Error = &'static str;

    fn try_from(r: RawStringMatch) -> Result<Self, Self::Error> {
        match (r.exact, r.prefix, r.regex) {
            (None, None, None) => Ok(StringMatch::Present),
            (Some(e), None, None) => Ok(StringMatch::Exact(e)),
            (None, Some(p), None) => Ok(StringMatch::Prefix(p)),
            (None, None, Some(r)) => Ok(StringMatch::Regex(r)),
            _ => Err("a StringMatch takes one of exact, prefix or regex"),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    pub destination: Destination,
    pub weight: Option<i64>,
    pub headers: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    pub number: u32,
}

// ---- Istio security (security.istio.io/v1 and v1beta1 share these fields) ----

/// `selector` of a security object: the pods it applies to, in its namespace
/// (in Istio's root namespace, `istio-system`, in every namespace).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: Labels,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PeerAuthentication {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: PeerAuthenticationSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<MutualTls>,
    /// By the workload's (container) port.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<u32, MutualTls>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualTls {
    /// `UNSET`, `DISABLE`, `PERMISSIVE` or `STRICT`.
    pub mode: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuthorizationPolicy {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: AuthorizationPolicySpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<Value>,
    pub target_refs: Option<Value>,
    /// Absent: an ALLOW policy allows nothing, a DENY policy denies nothing.
    pub rules: Option<Vec<AuthzRule>>,
    /// `ALLOW` (the default), `DENY`, `AUDIT` or `CUSTOM`.
    pub action: Option<String>,
    pub provider: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzRule {
    #[serde(default)]
    pub from: Vec<AuthzFrom>,
    #[serde(default)]
    pub to: Vec<AuthzTo>,
    #[serde(default)]
    pub when: Vec<Condition>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzFrom {
    #[serde(default)]
    pub source: Source,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzTo {
    #[serde(default)]
    pub operation: Operation,
}

/// Who sends the request. Every field set must hold; each lists values of
/// which one must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    pub principals: Option<Vec<String>>,
    pub not_principals: Option<Vec<String>>,
    pub request_principals: Option<Vec<String>>,
    pub not_request_principals: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub not_namespaces: Option<Vec<String>>,
    pub service_accounts: Option<Vec<String>>,
    pub not_service_accounts: Option<Vec<String>>,
    pub ip_blocks: Option<Vec<String>>,
    pub not_ip_blocks: Option<Vec<String>>,
    pub remote_ip_blocks: Option<Vec<String>>,
    pub not_remote_ip_blocks: Option<Vec<String>>,
    pub trust_domains: Option<Vec<String>>,
    pub not_trust_domains: Option<Vec<String>>,
}

/// What the request does.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    pub hosts: Option<Vec<String>>,
    pub not_hosts: Option<Vec<String>>,
    pub ports: Option<Vec<String>>,
    pub not_ports: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub not_methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub not_paths: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    pub values: Option<Vec<String>>,
    pub not_values: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RequestAuthentication {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: RequestAuthenticationSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<Value>,
    pub target_refs: Option<Value>,
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtRule {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    pub jwks: Option<String>,
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: Option<String>,
    #[serde(default)]
    pub forward_original_token: bool,
    pub output_claim_to_headers: Option<Value>,
    pub timeout: Option<String>,
    pub space_delimited_claims: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtHeader {
    pub name: String,
    pub prefix: Option<String>,
}

/// A `Sidecar`: which hosts a workload's proxy knows (egress). Read so that
/// `weather check` sees it; the local data plane does not limit egress.
#[derive(Clone, Debug, Deserialize)]
pub struct Sidecar {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: SidecarSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarSpec {
    pub workload_selector: Option<Value>,
    pub ingress: Option<Value>,
    #[serde(default)]
    pub egress: Vec<SidecarEgress>,
    pub outbound_traffic_policy: Option<Value>,
    pub inbound_connection_pool: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarEgress {
    pub port: Option<Value>,
    pub bind: Option<String>,
    pub capture_mode: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
}
