//! The checked-in CRD is exactly what `postern-operator crd` prints.

use std::path::Path;

#[test]
fn checked_in_crd_matches_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/esmtplisteners.postern.io.yaml");
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = postern_operator::crd::crd_yaml();
    assert!(
        checked_in == generated,
        "crds/esmtplisteners.postern.io.yaml is stale; regenerate it with\n\n    cargo run -p postern-operator -- crd > crds/esmtplisteners.postern.io.yaml\n"
    );
}

#[test]
fn the_crd_is_namespaced_with_status_and_short_name() {
    let crd = postern_operator::crd::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("esmtplisteners.postern.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["esmtp".to_string()][..])
    );
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Reason", "Listen", "Age"]);
    let scale = version
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .as_ref()
        .expect("the scale subresource (kubectl scale)");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}
