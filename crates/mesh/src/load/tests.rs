//! Reading manifests as kubectl does, and refusing what Istio would.

use super::*;

fn load(text: &str) -> Result<Manifests, Vec<LoadError>> {
    let mut m = Manifests::default();
    m.add_yaml("test.yaml", text).map(|()| m)
}

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: forecast-route, namespace: weather}
spec:
  hosts: [forecast]
  http:
  - route:
    - destination: {host: forecast, subset: v1}
";

#[test]
fn reads_several_documents_of_several_kinds() {
    let text = format!(
        "{VS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: forecast, namespace: weather}}\nspec: {{selector: {{app: forecast}}, ports: [{{name: http, port: 3002}}]}}\n---\n"
    );
    let m = load(&text).unwrap();
    assert_eq!(m.virtual_services.len(), 1);
    assert_eq!(m.services[0].spec.ports[0].port, 3002);
}

#[test]
fn a_misspelt_istio_field_names_file_document_object_and_field() {
    let bad = VS.replace("  - route:", "  - matchs: []\n    route:");
    let e = load(&bad).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
            e[0].message.starts_with("test.yaml, document 1 (VirtualService weather/forecast-route): spec.http[0].matchs: unknown field `matchs`, expected one of"),
            "{}",
            e[0].message
        );
}

#[test]
fn a_wrong_type_is_an_error_with_its_path() {
    let bad = VS.replace("subset: v1}", "subset: v1}\n      weight: fifty");
    let e = load(&bad).unwrap_err();
    assert!(
        e[0].message
            .contains("spec.http[0].route[0].weight: invalid type"),
        "{}",
        e[0].message
    );
}

#[test]
fn unknown_kinds_are_skipped_with_a_note() {
    let m = load(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
    )
    .unwrap();
    assert_eq!(
        m.notes,
        [
            "test.yaml, document 1: skipped Kustomization (kustomize.config.k8s.io/v1beta1): not a kind the model reads"
        ]
    );
}

#[test]
fn fields_istio_has_but_the_model_ignores_are_warned_about() {
    let text = VS.replace(
        "  - route:",
        "  - rewrite: {uri: /}\n    fault: {abort: {grpcStatus: UNAVAILABLE}}\n    route:",
    );
    let m = load(&text).unwrap();
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
    assert!(
        m.warnings[0].contains("spec.http[0].rewrite is not modelled"),
        "{}",
        m.warnings[0]
    );
    assert!(
        m.warnings[1].contains("spec.http[0].fault.abort.grpcStatus is not modelled"),
        "{}",
        m.warnings[1]
    );
    // An HTTP fault and a mirror are modelled: no warning.
    let text = VS.replace(
        "  - route:",
        "  - fault: {abort: {httpStatus: 500, percentage: {value: 10}}}\n    mirror: {host: forecast}\n    route:",
    );
    assert!(load(&text).unwrap().warnings.is_empty());
    // A DestinationRule's pool and outlier detection apply; its load
    // balancer does not, at the top or in a subset.
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: f, namespace: weather}\nspec:\n  host: forecast\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}, outlierDetection: {}, loadBalancer: {simple: RANDOM}}\n  subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {tls: {mode: DISABLE}}}]\n";
    let m = load(dr).unwrap();
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("spec.trafficPolicy.loadBalancer is not modelled"));
    assert!(m.warnings[1].contains("spec.subsets[0].trafficPolicy.tls is not modelled"));
}

#[test]
fn broken_yaml_and_unknown_istio_versions_are_errors() {
    assert!(
        load("a: [b\n").unwrap_err()[0]
            .message
            .starts_with("test.yaml: not valid YAML")
    );
    let e = load(&VS.replace("networking.istio.io/v1", "networking.istio.io/v2")).unwrap_err();
    assert!(
        e[0].message
            .contains("unknown apiVersion networking.istio.io/v2")
    );
}

#[test]
fn missing_paths_are_reported() {
    let e = load_paths(&["/definitely/not/here.yaml"]).unwrap_err();
    assert_eq!(
        e[0].message,
        "/definitely/not/here.yaml: no such file or folder"
    );
}
