//! The OpenAPI document of the REST API (`GET /v1/openapi.json`, `src/http/openapi.json`):
//! it names exactly the routes the router has (read from the route definitions in
//! `src/http/`), each of them answers on a live node, it is a valid OpenAPI 3 document
//! (`openapi-spec-validator`), and schemathesis, fuzzing a live node from it, finds no answer
//! that breaks it and no server error.
mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{wait_for_revisions, Node};
use serde_json::Value;

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

/// `(path, method)` of every route `configure` sets up in `file`: each `web::resource("...")`
/// and the methods chained on it, up to the next resource.
fn routes_in(file: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(format!("{}/src/http/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut routes = BTreeSet::new();
    for part in text.split("web::resource(\"").skip(1) {
        let path = part.split('"').next().unwrap();
        // `{key:.*}` is the path parameter `{key}`.
        let path = path.replace(":.*}", "}");
        let chained = part.split("web::resource(").next().unwrap();
        for method in METHODS {
            if chained.contains(&format!(".{method}(")) {
                routes.insert((path.clone(), method.to_string()));
            }
        }
    }
    routes
}

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the spec is JSON")
}

fn spec_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            if operations.get(method).is_some() {
                routes.insert((path.clone(), method.to_string()));
            }
        }
    }
    routes
}

#[test]
fn the_spec_names_every_route_and_only_routes() {
    // Every API route; the dashboard's page and files (ui.rs, `/ui`) are not API.
    let router: BTreeSet<_> = routes_in("routes.rs").union(&routes_in("leases.rs")).cloned().collect();
    assert!(router.len() >= 20, "the route definitions were not found: {router:?}");
    let documented = spec_routes(&spec());
    let missing: Vec<_> = router.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "undocumented routes {missing:?}; documented, not routed {extra:?}"
    );
}

#[test]
fn a_node_serves_the_spec_and_every_operation_in_it() {
    let node = Node::start("node1");
    let served = node.get("/v1/openapi.json");
    served.assert_success();
    assert_eq!(served.json(), spec());
    for (path, method) in spec_routes(&spec()) {
        // Operations that change the membership or stream forever are only checked to be
        // routed: a request that no route takes is 404 `no such endpoint`, or 405.
        let concrete = path.replace("{key}", "openapi/probe").replace("{id}", "0");
        let reply = node.try_request(&method.to_uppercase(), &concrete, Vec::new(), std::time::Duration::from_secs(2));
        if let Ok(reply) = reply {
            let body = String::from_utf8_lossy(&reply.body);
            assert!(
                reply.status != 405 && !body.contains("no such endpoint"),
                "{method} {path} is documented but not routed: {} {body}",
                reply.status
            );
        }
    }
}

/// The project's virtualenv with the Python tools, as `make test` installs it.
fn python_tool(name: &str) -> Option<String> {
    let python = match std::env::var("CETE_TEST_PYTHON") {
        Ok(python) => python,
        Err(_) => {
            eprintln!("\n######## SKIPPED: {name} is not installed; `make test` installs it ########\n");
            return None;
        }
    };
    let tool = std::path::Path::new(&python).with_file_name(name);
    assert!(tool.exists(), "{} is missing: run `make pydeps`", tool.display());
    Some(tool.to_string_lossy().into_owned())
}

#[test]
fn the_spec_is_a_valid_openapi_document() {
    let Some(validator) = python_tool("openapi-spec-validator") else { return };
    let output = Command::new(validator)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json"))
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn schemathesis_finds_nothing_that_breaks_the_spec() {
    let Some(schemathesis) = python_tool("schemathesis") else { return };
    let node = Node::start("node1");
    wait_for_revisions(&node);
    let base = format!("http://{}", node.addresses.http);
    let output = Command::new(schemathesis)
        .args(["run", &format!("{base}/v1/openapi.json")])
        // Not fuzzed: membership changes (a join of a made-up node waits for it; a leave of this
        // node ends the test), the leader transfer, and the watch, which streams until closed.
        .args(["--exclude-path-regex", "^/v1/(cluster/|leader/|watch)"])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance"])
        .args(["--checks", "response_schema_conformance,response_headers_conformance"])
        .args(["--max-examples", "25", "--seed", "1", "--workers", "1", "--request-timeout", "15"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(common::temp_dir().path())
        .output()
        .expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found problems:\n{report}\n--- node log ---\n{}", node.log());
}
