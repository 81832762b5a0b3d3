//! The deployment manifests (`ops/deploy/`) validated without a cluster:
//! the Kubernetes kinds against the API's schemas, strictly; the
//! CloudNativePG Cluster against its CRD's schema.

use std::path::Path;

use opsledger_tests::{ops_script, repo};

fn check(dir: &Path) -> (bool, String) {
    ops_script("ops/deploy/check.sh", &[dir.as_os_str()])
}

#[test]
fn the_deployment_manifests_follow_their_schemas_and_a_broken_one_is_refused() {
    let deploy = repo().join("ops/deploy");
    let (ok, said) = check(&deploy);
    assert!(ok, "{said}");
    let manifest = std::fs::read_to_string(deploy.join("opsledger.yaml")).unwrap();
    for needed in [
        "kind: Deployment",
        "kind: PodDisruptionBudget",
        "path: /readyz",
        "path: /healthz",
        "secretRef:",
    ] {
        assert!(manifest.contains(needed), "{needed} in opsledger.yaml");
    }
    let postgres = std::fs::read_to_string(deploy.join("postgres.yaml")).unwrap();
    assert!(postgres.contains("synchronous:") && postgres.contains("instances: 3"));

    // A field Kubernetes does not know, and a synchronous standby count that
    // is not a number, are refused.
    let dir = std::env::temp_dir().join(format!("opsledger-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("opsledger.yaml"),
        manifest.replacen("replicas: 3", "replicas: 3\n  replicaz: 3", 1),
    )
    .unwrap();
    std::fs::copy(
        deploy.join("secret.example.yaml"),
        dir.join("secret.example.yaml"),
    )
    .unwrap();
    std::fs::copy(deploy.join("postgres.yaml"), dir.join("postgres.yaml")).unwrap();
    let (ok, said) = check(&dir);
    assert!(!ok, "an unknown field passed: {said}");
    std::fs::write(dir.join("opsledger.yaml"), &manifest).unwrap();
    std::fs::write(
        dir.join("postgres.yaml"),
        postgres.replacen("number: 1", "number: one", 1),
    )
    .unwrap();
    let (ok, said) = check(&dir);
    assert!(!ok, "a broken Cluster passed: {said}");
    let _ = std::fs::remove_dir_all(&dir);
}
