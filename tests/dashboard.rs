//! The dashboard at `/ui` (README, "Dashboard"), in a real browser: Debian's headless Chromium
//! driven over WebDriver (chromedriver) by Selenium, from tests/python/dashboard.py, over HTTP,
//! HTTPS, and mTLS with a client certificate in the browser's own certificate database. `make
//! test` installs what it takes (Chromium and libnss3-tools with apt-get, Selenium into the test
//! virtualenv); where something cannot be had the test says so loudly and skips.
mod common;

use std::path::Path;
use std::process::Command;

use common::{data, CertificateAuthority, Cluster, SelfSigned};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The virtualenv's Python, when it and a browser are here (a loud notice where not).
fn browser_python() -> Option<String> {
    let python = match std::env::var("CETE_TEST_PYTHON") {
        Ok(path) if Path::new(&path).exists() => path,
        Ok(path) => panic!("CETE_TEST_PYTHON={path} does not exist: run `make pydeps`"),
        Err(_) => {
            eprintln!(
                "\n######## SKIPPED: Selenium is not installed; `make test` installs it (tests/python/requirements.txt) \
                 ########\n"
            );
            return None;
        }
    };
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!(
            "\n######## SKIPPED: no {CHROMIUM} and {CHROMEDRIVER}; `make test` installs Debian's chromium and \
             chromium-driver (make browser) ########\n"
        );
        return None;
    }
    Some(python)
}

/// Runs the browser through the page at `base` and answers what it saw.
fn drive(python: &str, base: &str, extra: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/dashboard.py");
    let output = Command::new(python).arg(script).arg(base).args(extra).output().expect("run the browser script");
    assert!(
        output.status.success(),
        "dashboard.py {base} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("its JSON")
}

fn assert_saw_the_cluster(saw: &Value, cluster: &Cluster) {
    let mut nodes: Vec<&str> = saw["nodes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2", "node3"], "{saw}");
    assert_eq!(saw["leader"], cluster.nodes[cluster.leader()].id(), "{saw}");
    assert_eq!(saw["feed_saw"], "ui/from-api", "{saw}");
}

#[test]
fn the_dashboard_shows_the_cluster_writes_keys_and_follows_the_watch_feed() {
    let Some(python) = browser_python() else { return };
    let cluster = Cluster::start(3);
    let follower = &cluster.nodes[cluster.followers()[0]];
    let shot = common::temp_dir();
    let shot = shot.path().join("dashboard.png");
    let saw = drive(&python, &format!("http://{}", follower.addresses.http), &["--screenshot", shot.to_str().unwrap()]);
    assert_saw_the_cluster(&saw, &cluster);
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "a screenshot of the page");
    // What the page wrote, read back over the API on another node.
    let other = &cluster.nodes[cluster.leader()];
    let written = other.get(&data("ui/from-page"));
    written.assert_success();
    assert_eq!(written.text(), "written in the browser");
    let hex: String = saw["hex"].as_str().unwrap_or_default().chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert_eq!(hex.to_lowercase(), "7772697474656e20696e207468652062726f77736572", "the value in hex: {saw}");
}

#[test]
fn the_dashboard_works_over_https() {
    let Some(python) = browser_python() else { return };
    let cert = SelfSigned::new("localhost");
    let flags = [
        format!("--certificate-file={}", cert.cert.display()),
        format!("--key-file={}", cert.key.display()),
        "--common-name=localhost".to_string(),
    ];
    let cluster = Cluster::start_https(3, &flags.iter().map(String::as_str).collect::<Vec<_>>(), &cert.cert);
    let node = &cluster.nodes[0];
    let saw = drive(&python, &format!("https://{}", node.addresses.http), &["--insecure"]);
    assert_saw_the_cluster(&saw, &cluster);
    assert_eq!(node.get(&data("ui/from-page")).text(), "written in the browser");
}

#[test]
fn the_dashboard_works_over_mtls_with_the_browsers_client_certificate() {
    let Some(python) = browser_python() else { return };
    if !["certutil", "pk12util"].iter().all(|tool| Command::new(tool).arg("-H").output().is_ok()) {
        eprintln!(
            "\n######## SKIPPED: no certutil and pk12util for the browser's certificate database; `make test` \
             installs Debian's libnss3-tools (make browser) ########\n"
        );
        return;
    }
    let ca = CertificateAuthority::new("cete-test-ca");
    let browser = ca.issue("browser", "browser", "DNS:browser");
    let identity = (browser.chain.clone(), browser.key.clone());
    let client_ca = ca.cert.display().to_string();
    let cluster = Cluster::start_mtls_each(3, &ca.cert, &identity, &|id| {
        let node = ca.issue(id, "localhost", "DNS:localhost,IP:127.0.0.1");
        vec![
            format!("--certificate-file={}", node.chain.display()),
            format!("--key-file={}", node.key.display()),
            format!("--client-ca-file={client_ca}"),
        ]
    });
    let node = &cluster.nodes[cluster.followers()[0]];
    // The browser verifies the node against the CA, and presents its own certificate.
    let (ca_file, chain, key) =
        (ca.cert.display().to_string(), browser.chain.display().to_string(), browser.key.display().to_string());
    let tls = ["--ca", &ca_file, "--client-cert", &chain, "--client-key", &key];
    let saw = drive(&python, &format!("https://{}", node.addresses.http), &tls);
    assert_saw_the_cluster(&saw, &cluster);
    assert_eq!(node.get(&data("ui/from-page")).text(), "written in the browser");
}
