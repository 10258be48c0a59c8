//! What a new user hit at the front doors, done the way they did it: keys that are not UTF-8
//! once percent-decoded, binary values in JSON output, the size limits on keys and gRPC
//! messages, error answers and logging, and the Content-Type of binary values.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use cete_proto::kvs::{GetRequest, SetRequest};
use common::{block_on, cli, cli_ok, eventually, BackgroundCli, NdjsonWatch, Node};
use serde_json::Value;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A JPEG-looking value holding every byte value: not UTF-8, and altered by any re-encoding.
fn photo() -> Vec<u8> {
    [0xFF, 0xD8, 0xFF, 0xE0].into_iter().chain(0..=255u8).chain((0..=255u8).rev()).cycle().take(2011).collect()
}

/// The bytes a JSON object carries under `"value"` or `"value_base64"`, checking it has one.
fn value_of(object: &Value) -> Vec<u8> {
    match (object.get("value"), object.get("value_base64")) {
        (Some(Value::String(text)), None) => text.as_bytes().to_vec(),
        (None, Some(Value::String(encoded))) => {
            base64::engine::general_purpose::STANDARD.decode(encoded).expect("value_base64 is standard base64")
        }
        _ => panic!("not exactly one of value and value_base64 in {object}"),
    }
}

#[test]
fn http_keys_that_are_not_utf8_are_refused_never_aliased() {
    let node = Node::start("node1");

    // Before, %FF and %FE both became U+FFFD: two paths, one key.
    node.put("/v1/data/%FF", "first").assert_error(400);
    node.put("/v1/data/%FE", "second").assert_error(400);
    node.put("/v1/data/user/%80", "third").assert_error(400);
    node.put("/v1/data/%C3", "half a character").assert_error(400);
    node.get("/v1/data/%FF").assert_error(400);
    node.delete("/v1/data/%FE").assert_error(400);
    node.get("/v1/scan?prefix=%FF").assert_error(400);
    node.get("/v1/watch?prefix=%FE").assert_error(400);
    node.delete("/v1/cluster/%FF").assert_error(400);
    let everything = node.get("/v1/scan?prefix=");
    assert_eq!(everything.json()["pairs"], serde_json::json!([]), "nothing was stored: {everything:?}");

    // A key that is UTF-8 once decoded is the key, byte for byte, on both front doors.
    node.put("/v1/data/caf%C3%A9%2Fmenu", "open").assert_success();
    assert_eq!(node.get("/v1/data/caf%C3%A9%2Fmenu").text(), "open");
    let over_grpc = block_on(async {
        let mut kvs = node.grpc_client().await;
        kvs.get(GetRequest { key: "café/menu".into() }).await.expect("Get café/menu").into_inner().value
    });
    assert_eq!(over_grpc, "open");
    assert_eq!(node.get("/v1/scan?prefix=caf%C3%A9").json()["pairs"][0]["key"], "café/menu");
}

#[test]
fn binary_values_travel_in_json_as_base64_and_text_as_text() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.clone();
    let photo = photo();
    let http_watch = NdjsonWatch::open(&node, "prefix=pics/");
    let cli_watch = BackgroundCli::spawn(&["watch", "--prefix", "pics/", "--grpc-address", &grpc]);

    node.put("/v1/data/pics/photo", photo.clone()).assert_success();
    node.put("/v1/data/pics/title", "caf\u{e9}").assert_success();

    let scanned = node.get("/v1/scan?prefix=pics/").json();
    assert_eq!(scanned["pairs"][0]["key"], "pics/photo");
    assert!(value_of(&scanned["pairs"][0]) == photo, "/v1/scan altered the photo");
    assert_eq!(scanned["pairs"][1], serde_json::json!({"key": "pics/title", "value": "café"}));

    let lines: Vec<Value> = cli_ok(&["scan", "pics/", "--grpc-address", &grpc])
        .lines()
        .map(|line| serde_json::from_str(line).expect("`cete scan` prints JSON lines"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(value_of(&lines[0]) == photo, "`cete scan` altered the photo");
    assert_eq!(lines[1], serde_json::json!({"key": "pics/title", "value": "café"}));

    let set = http_watch.next_change(TIMEOUT);
    assert_eq!((&set["type"], &set["data"]["key"]), (&Value::from("Set"), &Value::from("pics/photo")));
    assert!(value_of(&set["data"]) == photo, "GET /v1/watch altered the photo");
    assert_eq!(http_watch.next_change(TIMEOUT)["data"], serde_json::json!({"key": "pics/title", "value": "café"}));

    // `cete watch` may have subscribed after the writes: write again until it prints.
    let printed = eventually("a Set line of the photo from `cete watch`", TIMEOUT, || {
        node.put("/v1/data/pics/photo", photo.clone()).assert_success();
        let lines: Vec<Value> = cli_watch.stdout().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        lines.into_iter().find(|line| line["data"]["key"] == "pics/photo")
    });
    assert!(value_of(&printed["data"]) == photo, "`cete watch` altered the photo: {printed}");

    // Redirected to a file, `cete get` gives back the bytes stored: no newline added.
    let got = cli(&["get", "pics/photo", "--grpc-address", &grpc]);
    assert!(got.status.success(), "{got:?}");
    assert!(got.stdout == photo, "`cete get > file` gave {} bytes for {}", got.stdout.len(), photo.len());
    assert_eq!(cli(&["get", "pics/title", "--grpc-address", &grpc]).stdout, "café".as_bytes());
}

#[test]
fn unrecognised_binary_is_served_as_octet_stream_and_text_as_text() {
    let node = Node::start("node1");

    node.put("/v1/data/control", b"\x00\x01\x02".to_vec()).assert_success();
    node.put("/v1/data/text", "line one\n\tline two\r\n").assert_success();

    let control = node.get("/v1/data/control");
    assert_eq!(control.content_type, "application/octet-stream", "{control:?}");
    assert_eq!(control.body, b"\x00\x01\x02");
    assert_eq!(node.get("/v1/data/text").content_type, "text/plain; charset=utf-8");
}

#[test]
fn keys_over_4_kib_are_refused_on_both_front_doors() {
    let node = Node::start("node1");
    let longest = "k".repeat(4096);
    let too_long = "k".repeat(4097);

    node.put(&format!("/v1/data/{longest}"), "fits").assert_success();
    assert_eq!(node.get(&format!("/v1/data/{longest}")).text(), "fits");
    node.put(&format!("/v1/data/{too_long}"), "too long").assert_error(400);
    // 2049 two-byte characters are 4098 bytes: the limit counts bytes, not characters.
    node.put(&format!("/v1/data/{}", "%C3%A9".repeat(2049)), "too long").assert_error(400);

    block_on(async {
        let mut kvs = node.grpc_client().await;
        for key in [too_long.clone(), "k".repeat(16 * 1024 * 1024)] {
            let set = SetRequest { key, value: Bytes::from_static(b"too long"), ..Default::default() };
            let refused = kvs.set(set).await.expect_err("a key over 4 KiB");
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        }
    });
    let stored = node.get("/v1/scan?prefix=k").json();
    assert_eq!(stored["pairs"].as_array().map(Vec::len), Some(1), "only the 4096-byte key: {stored}");
}

#[test]
fn grpc_messages_over_the_value_limit_are_resource_exhausted_at_every_size() {
    let node = Node::start_with("node1", &["--max-value-bytes=1024"]);
    block_on(async {
        let mut kvs = node.grpc_client().await;
        kvs.set(SetRequest { key: "fits".into(), value: vec![b'x'; 1024].into(), ..Default::default() })
            .await
            .expect("1024 bytes fit");
        // Before, past the limit plus tonic's slack (1 MiB) the code was OUT_OF_RANGE.
        for size in [1025, 64 * 1024, (1 << 20) + 1024, 2 << 20, 8 << 20] {
            let set = SetRequest { key: format!("big{size}"), value: vec![b'x'; size].into(), ..Default::default() };
            let refused = kvs.set(set).await.expect_err("over the limit");
            assert_eq!(refused.code(), Code::ResourceExhausted, "a {size}-byte value: {refused:?}");
        }
        let after = kvs.get(GetRequest { key: "fits".into() }).await.expect("still serving");
        assert_eq!(after.into_inner().value.len(), 1024);
    });
    assert!(!node.log().contains(" ERROR "), "a client's bad request logged as an error:\n{}", node.log());
}

/// `kvs.SetRequest` with its key as bytes, to send one that is not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct SetRequestWithRawKey {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `kvs.SetRequest` with a number where the key should be: the wrong wire type.
#[derive(Clone, PartialEq, prost::Message)]
struct SetRequestWithNumericKey {
    #[prost(uint64, tag = "1")]
    key: u64,
}

/// Calls `/kvs.KVS/Set` with `message` as the request and returns how it was refused.
async fn refused_set<M: prost::Message + Default + Send + Sync + 'static>(address: &str, message: M) -> tonic::Status {
    let channel = Channel::from_shared(format!("http://{address}")).expect("URI").connect().await.expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<M, ()>::default();
    let path = PathAndQuery::from_static("/kvs.KVS/Set");
    grpc.unary(tonic::Request::new(message), path, codec).await.expect_err("an undecodable Set")
}

#[test]
fn undecodable_grpc_requests_are_invalid_argument() {
    let node = Node::start("node1");
    block_on(async {
        let grpc = node.addresses.grpc.as_str();
        let not_utf8 = refused_set(grpc, SetRequestWithRawKey { key: vec![0xFF], value: b"v".to_vec() }).await;
        assert_eq!(not_utf8.code(), Code::InvalidArgument, "{not_utf8:?}");
        let wrong_type = refused_set(grpc, SetRequestWithNumericKey { key: 7 }).await;
        assert_eq!(wrong_type.code(), Code::InvalidArgument, "{wrong_type:?}");
    });
    assert!(!node.log().contains(" ERROR "), "a client's bad request logged as an error:\n{}", node.log());
}

#[test]
fn a_grpc_watch_prefix_that_is_not_text_is_refused_not_read_as_everything() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let mut request = tonic::Request::new(());
        let prefix = tonic::metadata::MetadataValue::try_from(&b"user/\xff"[..]).expect("a header value");
        request.metadata_mut().insert(common::WATCH_PREFIX_KEY, prefix);
        let refused = kvs.watch(request).await.map(|_| ()).expect_err("a prefix that is not text");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    });
}

/// Sends `request` as it is on a new connection; the status line and body of the answer.
fn raw_http(node: &Node, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(&node.addresses.http).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    stream.write_all(request).expect("send");
    // Each request says `Connection: close` or is malformed: the node closes after answering.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (head.lines().next().unwrap_or_default().to_string(), body.as_bytes().to_vec())
}

#[test]
fn http_client_errors_answer_json_and_are_not_logged_as_errors() {
    let node = Node::start_with("node1", &["--log-level=DEBUG"]);

    // What actix's HTTP/1 parser answers before there is a request to route: a status and no
    // body (actix has no hook for these), and never an ERROR in the log. (A request head over
    // 128 KiB gets 431 so; not sent here, as the node may reset the connection before the
    // client reads the answer.)
    let malformed: [&[u8]; 2] = [
        b"PUT /v1/data/k HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /v1/data/k HTTP/1.1\r\nHo st: a\r\n\r\n",
    ];
    for request in malformed {
        let (status_line, _) = raw_http(&node, request);
        assert!(status_line.starts_with("HTTP/1.1 400"), "{status_line}");
    }
    // actix logs each connection it drops as it closes it: here at DEBUG, and only there.
    let parse_errors = |log: &str| log.lines().filter(|line| line.contains("request parse error")).count();
    eventually("actix's two parse errors in the log", TIMEOUT, || (parse_errors(&node.log()) == 2).then_some(()));
    let assert_no_errors_logged = || {
        let log = node.log();
        let errors: Vec<&str> = log.lines().filter(|line| line.contains(" ERROR ")).collect();
        assert!(errors.is_empty(), "client errors logged as errors: {errors:#?}");
    };
    assert_no_errors_logged();

    // Everything that reaches the app answers JSON.
    node.get("/v1/nowhere").assert_error(404);
    common::http(reqwest::Method::POST, &node.url("/v1/data/k"), Vec::new(), None).assert_error(405);
    node.put("/v1/cluster/node2", "{not json").assert_error(400);
    node.put(&format!("/v1/data/{}", "k".repeat(20_000)), "a long URL").assert_error(400);
    node.get("/v1/data/k?consistency=sometimes").assert_error(400);
    let (status_line, body) = raw_http(&node, b"GET /v1/data/%FF HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(status_line.starts_with("HTTP/1.1 400"), "{status_line}");
    assert!(serde_json::from_slice::<Value>(&body).is_ok_and(|json| json["error"].is_string()), "{body:?}");
    assert_no_errors_logged();
}
