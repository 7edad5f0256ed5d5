//! Azure with no credential, on the real producer: one line that says which credentials were looked for and
//! how to give one, never the SDK's developer-tools essay or "must use https"; and the SDK's `info` logs of
//! failed responses kept out of the default log.

use std::time::Duration;

use testkit::azurite;
use testkit::{Proc, command};

/// Runs the producer with no Azure credential in its environment (and no `az`/`azd` on its PATH).
fn without_credentials(url: &str) -> (Option<i32>, String) {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = command("producer");
    azurite::clear_credentials(&mut cmd)
        .env("PATH", empty.path())
        .args(["--queue", url, "--count", "1"]);
    let mut p = Proc::spawn("producer", cmd);
    let status = p.wait(Duration::from_secs(30));
    (status.code(), p.stderr())
}

fn says_what_was_looked_for(err: &str) {
    for var in [
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "Entra ID",
    ] {
        assert!(err.contains(var), "names {var}: {err}");
    }
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn no_credential_against_an_http_endpoint_says_what_was_looked_for_and_why_not_entra() {
    let (code, err) = without_credentials(
        "azure://devstoreaccount1/jobs?endpoint=http://127.0.0.1:1/devstoreaccount1",
    );
    assert_eq!(code, Some(1), "{err}");
    says_what_was_looked_for(&err);
    assert!(!err.contains("must use https"), "{err}");
    assert!(
        err.contains("http://") && err.contains("https"),
        "says why: {err}"
    );
}

#[test]
fn no_credential_and_no_identity_says_what_was_looked_for() {
    let (code, err) = without_credentials(
        "azure://devstoreaccount1/jobs?endpoint=https://127.0.0.1:1/devstoreaccount1",
    );
    assert_eq!(code, Some(1), "{err}");
    says_what_was_looked_for(&err);
}

#[test]
fn the_sdks_failed_response_lines_stay_out_of_the_default_log() {
    // Nothing listens on port 1: every request fails in transport, which the SDK logs at info.
    let mut cmd = command("producer");
    azurite::with_key(&mut cmd).env_remove("RUST_LOG").args([
        "--queue",
        "azure://devstoreaccount1/jobs?endpoint=http://127.0.0.1:1/devstoreaccount1",
        "--count",
        "1",
    ]);
    let mut p = Proc::spawn("producer", cmd);
    let status = p.wait(Duration::from_secs(30));
    let err = p.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("error: "), "{err}");
    assert!(!err.contains("Failed response"), "{err}");
}

#[test]
fn no_ca_certificates_is_one_line_that_says_what_to_install_not_a_panic() {
    // A container on a `scratch` base has no CA certificates: the SDK's own client builder panicked there
    // (exit 101). SSL_CERT_FILE and SSL_CERT_DIR pointing at nothing give the same empty trust store here.
    let empty = tempfile::tempdir().unwrap();
    let pem = empty.path().join("none.pem");
    std::fs::write(&pem, "").unwrap();
    let mut cmd = command("producer");
    azurite::with_key(&mut cmd)
        .env("SSL_CERT_FILE", &pem)
        .env("SSL_CERT_DIR", empty.path())
        .args([
            "--queue",
            "azure://devstoreaccount1/jobs?endpoint=http://127.0.0.1:1/devstoreaccount1",
            "--count",
            "1",
        ]);
    let mut p = Proc::spawn("producer", cmd);
    let status = p.wait(Duration::from_secs(30));
    let err = p.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("No CA certificates") && err.contains("ca-certificates"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}
