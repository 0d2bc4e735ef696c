//! `flagger-rs validate` as users run it: exit codes and output formats.

use std::path::PathBuf;
use std::process::{Command, Output};

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flagger-rs-validate-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagger-rs"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap()
}

const VALID: &str = r#"apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  revertOnDeletion: true
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5, stepWeight: 10}
"#;

const DEPLOYMENT: &str =
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: podinfo}\nspec: {replicas: 2}\n";

#[test]
fn valid_manifests_exit_zero() {
    let d = dir("valid");
    let file = d.join("canary.yaml");
    std::fs::write(&file, format!("{DEPLOYMENT}---\n{VALID}")).unwrap();
    let out = run(&[file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn the_examples_validate() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let out = run(&[examples]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn problems_are_printed_with_file_document_and_path() {
    let d = dir("broken");
    let file = d.join("broken.yaml");
    let broken = VALID
        .replace("stepWeight: 10", "stepWeight: 10, iterations: 5")
        .replace("port: 9898", "port: 0");
    std::fs::write(&file, format!("{DEPLOYMENT}---\n{broken}")).unwrap();
    let out = run(&[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("{}:2: ", file.display());
    assert!(
        stdout.contains(&format!("{prefix}spec.service.port: must be > 0")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{prefix}spec.analysis.iterations: iterations cannot be combined"
        )),
        "{stdout}"
    );
}

#[test]
fn json_output_lists_every_problem() {
    let d = dir("json");
    let file = d.join("broken.json");
    let doc = serde_json::json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": "slack"}, "spec": {"type": "pager"}
    });
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = run(&["--output", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = findings.as_array().unwrap();
    assert_eq!(list.len(), 2, "{findings:#}");
    for f in list {
        for key in [
            "file", "document", "kind", "name", "path", "severity", "message",
        ] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
        assert_eq!(f["document"], 1);
        assert_eq!(f["kind"], "AlertProvider");
    }
    let paths: Vec<&str> = list.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(
        paths.contains(&"spec.type") && paths.contains(&"spec"),
        "{paths:?}"
    );
}

#[test]
fn other_kinds_are_skipped() {
    let d = dir("skip");
    let file = d.join("app.yml");
    let flux = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: apps}\nspec: {interval: 1h, bogus: [1]}\n";
    std::fs::write(&file, format!("{DEPLOYMENT}---\n{flux}")).unwrap();
    let out = run(&[d.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn warnings_do_not_fail() {
    let d = dir("warn");
    let file = d.join("warn.yaml");
    let warned = VALID.replace(
        "analysis: {interval: 1m,",
        "analysis: {metrics: [{name: error-count, query: up}], interval: 1m,",
    );
    std::fs::write(&file, warned).unwrap();
    let out = run(&[file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("spec.analysis.metrics[0]: warning:"),
        "{stdout}"
    );
}

/// The revertOnDeletion default is information for whoever writes the manifest, not a problem.
#[test]
fn the_revert_on_deletion_default_is_a_note() {
    let d = dir("note");
    let file = d.join("note.yaml");
    std::fs::write(&file, VALID.replace("  revertOnDeletion: true\n", "")).unwrap();
    let out = run(&[file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("spec.revertOnDeletion: note: not set: deleting this Canary"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("0 error(s), 0 warning(s), 1 note(s)"),
        "{stderr}"
    );
    let quiet = run(&["--quiet", file.to_str().unwrap()]);
    assert!(quiet.stdout.is_empty(), "{quiet:?}");
}

#[test]
fn hostile_input_is_a_clean_error() {
    let d = dir("hostile");
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bomb.yaml", bomb.into_bytes(), "invalid YAML"),
        (
            "deep.yaml",
            format!("{}x{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            "invalid YAML",
        ),
        (
            "binary.yaml",
            b"kind: Canary\nmetadata: {name: \xff\xfe}\n".to_vec(),
            "not UTF-8",
        ),
        (
            "huge.yaml",
            vec![b'#'; 9 * 1024 * 1024],
            "larger than the limit",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = d.join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = run(&[file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with(&format!("{}:0: ", file.display())),
            "{name}: {stdout}"
        );
        assert!(stdout.contains(expected), "{name}: {stdout}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{name}: {stdout}"
        );
    }
}

#[test]
fn wrong_api_version_and_kind_are_reported() {
    let d = dir("wrong");
    let file = d.join("wrong.yaml");
    std::fs::write(&file, "apiVersion: flagger.app/v1alpha3\nkind: Canary\nmetadata: {name: a}\nspec: {}\n---\napiVersion: flagger.app/v1beta1\nkind: Rollout\nmetadata: {name: b}\n").unwrap();
    let out = run(&[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(":1: apiVersion: unsupported apiVersion"),
        "{stdout}"
    );
    assert!(stdout.contains(":2: kind: unknown kind"), "{stdout}");
}

#[test]
fn missing_files_fail() {
    let out = run(&["/nonexistent/flagger-rs/canary.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}
