//! The trial stack (`docker-compose.yml`) against the Compose
//! specification's JSON schema, since no Docker engine runs here
//! (`ops/compose.sh check`, check-jsonschema's vendored copy of the schema).

use std::path::Path;

use opsledger_tests::{ops_script, repo};

fn check(file: &Path) -> (bool, String) {
    ops_script("ops/compose.sh", &["check".as_ref(), file.as_os_str()])
}

#[test]
fn the_trial_stack_follows_the_compose_specification() {
    let file = repo().join("docker-compose.yml");
    let (ok, said) = check(&file);
    assert!(ok, "{said}");
    let text = std::fs::read_to_string(&file).unwrap();
    for service in ["postgres:", "mailpit:", "jaeger:", "opsledger:"] {
        assert!(
            text.contains(&format!("\n  {service}")),
            "{service} in the stack"
        );
    }
    assert!(
        text.contains("/readyz"),
        "the service's health check asks /readyz"
    );
    assert!(
        text.contains("OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4318"),
        "the service sends its traces to Jaeger's OTLP/HTTP port"
    );

    // The check can fail: a service with a restart policy Compose does not
    // know, and a health check interval that is not a duration, are refused.
    let dir = std::env::temp_dir().join(format!("opsledger-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("docker-compose.yml");
    std::fs::write(
        &broken,
        "services:\n  opsledger:\n    image: opsledger\n    restart: sometimes\n    \
         healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: [10]\n",
    )
    .unwrap();
    let (ok, said) = check(&broken);
    assert!(!ok, "a broken file passed: {said}");
    let _ = std::fs::remove_dir_all(&dir);
}
