//! The five reprocess endpoints, driven by real API Gateway HTTP API 2.0 events and through
//! plain HTTP, against the storage stack on LocalStack.

use integration_tests::TestBed;
use integration_tests::events::HttpApiEvent;
use lambda_http::{Body, Response};
use reprocess_core::queue::ItemState;
use serde_json::{Value, json};

const KEY_ROUTE: &str = "/reprocess/key/{storageUnit}/{keyAndScope+}";
const KEYS_ROUTE: &str = "/reprocess/keys/{storageUnit}/{scope}";

fn answer(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        _ => Value::Null,
    };
    (status, body)
}

async fn enabled_bed() -> TestBed {
    let bed = TestBed::new().await;
    bed.configure(json!({"reprocessQueue": {"enabled": true}})).await;
    bed
}

fn key_event(bed: &TestBed, method: &str, encoded_key: &str, decoded_key: &str, scope: &str) -> HttpApiEvent {
    HttpApiEvent::new(method, KEY_ROUTE, &format!("/reprocess/key/{}/{encoded_key}/{scope}", bed.unit))
        .path_parameter("storageUnit", bed.unit.as_str())
        .path_parameter("keyAndScope", &format!("{decoded_key}/{scope}"))
}

fn keys_event(bed: &TestBed, method: &str, scope: &str) -> HttpApiEvent {
    HttpApiEvent::new(method, KEYS_ROUTE, &format!("/reprocess/keys/{}/{scope}", bed.unit))
        .path_parameter("storageUnit", bed.unit.as_str())
        .path_parameter("scope", scope)
}

/// A key that needs every kind of care: slashes, a space, a plus, a comma, a percent sign and
/// non-ASCII UTF-8. Its percent-encoded form is what a client puts in a path.
const AWKWARD_KEY: &str = "dir/sub dir/ü+1,2%";
const AWKWARD_KEY_ENCODED: &str = "dir%2Fsub%20dir%2F%C3%BC%2B1%2C2%25";

#[tokio::test(flavor = "multi_thread")]
async fn an_awkward_key_is_taken_from_decoded_path_parameters_exactly_once() {
    let bed = enabled_bed().await;
    bed.store("index", AWKWARD_KEY, json!({"title": "t"})).await;

    let event = key_event(&bed, "GET", AWKWARD_KEY_ENCODED, AWKWARD_KEY, "index");
    let (status, body) = answer(reprocess_key::handle(&bed.backends.ports, event.request()).await);

    assert_eq!((status, &body["message"], &body["queued"]), (200, &json!("OK"), &json!(1)), "{body}");
    let item = bed.queue_item("index", AWKWARD_KEY).await.expect("the item was queued under the exact key");
    assert_eq!(item.state, ItemState::Queued);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_works_on_the_key_route_and_other_methods_are_refused() {
    let bed = enabled_bed().await;
    bed.store("index", "doc-1", json!({})).await;

    let (status, _) = answer(
        reprocess_key::handle(&bed.backends.ports, key_event(&bed, "POST", "doc-1", "doc-1", "index").request()).await,
    );
    assert_eq!(status, 200);

    let response =
        reprocess_key::handle(&bed.backends.ports, key_event(&bed, "DELETE", "doc-1", "doc-1", "index").request())
            .await;
    assert_eq!(response.headers().get("allow").unwrap(), "GET, POST");
    let (status, body) = answer(response);
    assert_eq!((status, body["message"].as_str()), (405, Some("METHOD_NOT_ALLOWED")));
}

#[tokio::test(flavor = "multi_thread")]
async fn preconditions_answer_their_codes() {
    let bed = TestBed::new().await;
    bed.store("index", "doc-1", json!({})).await;
    let ports = &bed.backends.ports;

    let (status, body) =
        answer(reprocess_key::handle(ports, key_event(&bed, "GET", "doc-1", "doc-1", "index").request()).await);
    assert_eq!((status, body["message"].as_str()), (404, Some("STORAGE_UNIT_NOT_FOUND")), "{body}");

    bed.configure(json!({"reprocessQueue": {"enabled": false}})).await;
    let (status, body) =
        answer(reprocess_key::handle(ports, key_event(&bed, "GET", "doc-1", "doc-1", "index").request()).await);
    assert_eq!((status, body["message"].as_str()), (409, Some("REPROCESS_QUEUE_DISABLED")), "{body}");

    bed.configure(json!({"reprocessQueue": {"enabled": true}})).await;
    let (status, body) =
        answer(reprocess_key::handle(ports, key_event(&bed, "GET", "nope", "nope", "index").request()).await);
    assert_eq!((status, body["message"].as_str()), (404, Some("KEY_NOT_FOUND")), "{body}");
    let (status, body) =
        answer(reprocess_key::handle(ports, key_event(&bed, "GET", "doc-1", "doc-1", "ocr").request()).await);
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("KEY_NOT_FOUND")),
        "a key is looked up in its scope: {body}"
    );

    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["message", "detail"], "error bodies carry a code and a sentence only");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_400_and_never_touches_the_store() {
    let bed = enabled_bed().await;
    let ports = &bed.backends.ports;

    let bad_requests = [
        keys_event(&bed, "POST", "index").body("{not json"),
        keys_event(&bed, "POST", "index").body(r#"{"keys": []}"#),
        keys_event(&bed, "POST", "index").body(r#"{"other": ["a"]}"#),
        keys_event(&bed, "POST", "index").body(r#"{"keys": ["ok", "tab\there"]}"#),
        keys_event(&bed, "POST", "index").body(&json!({"keys": ["k".repeat(1025)]}).to_string()),
        keys_event(&bed, "POST", "index"),
        keys_event(&bed, "GET", "index"),
        keys_event(&bed, "GET", "index").query("keys="),
        keys_event(&bed, "GET", "bad scope!").query("keys=a"),
    ];
    for event in bad_requests {
        let (status, body) = answer(reprocess_keys::handle(ports, event.request()).await);
        assert_eq!((status, body["message"].as_str()), (400, Some("BAD_REQUEST")), "{}: {body}", event.json());
        assert!(body["detail"].as_str().is_some_and(|detail| !detail.is_empty()));
    }

    let bad_unit = HttpApiEvent::new("GET", KEY_ROUTE, "/reprocess/key/a%23b/doc/index")
        .path_parameter("storageUnit", "a#b")
        .path_parameter("keyAndScope", "doc/index");
    let (status, _) = answer(reprocess_key::handle(ports, bad_unit.request()).await);
    assert_eq!(status, 400);

    let too_many: Vec<String> = (0..10_001).map(|n| format!("k{n}")).collect();
    let event = keys_event(&bed, "POST", "index").body(&json!({"keys": too_many}).to_string());
    let (status, body) = answer(reprocess_keys::handle(ports, event.request()).await);
    assert_eq!((status, body["message"].as_str()), (413, Some("TOO_MANY_KEYS")), "{body}");

    assert_eq!(bed.queue_depth(&bed.queue_url).await, 0, "nothing was dispatched");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_a_query_string_are_queued_and_missing_ones_listed() {
    let bed = enabled_bed().await;
    bed.store("index", "a b", json!({})).await;
    bed.store("index", "c+d", json!({})).await;
    bed.store("index", "é", json!({})).await;

    // Form encoding: `+` is a space, `%2B` a plus; commas separate keys.
    let event = keys_event(&bed, "GET", "index").query("keys=a+b,c%2Bd,%C3%A9,missing-1,missing-2");
    let (status, body) = answer(reprocess_keys::handle(&bed.backends.ports, event.request()).await);

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queued"], 3);
    assert_eq!(body["notFound"], json!(["missing-1", "missing-2"]));
    assert_eq!(body["notFoundCount"], 2);
    for key in ["a b", "c+d", "é"] {
        assert!(bed.queue_item("index", key).await.is_some(), "{key} was queued");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base64_body_carries_keys_with_commas_question_marks_and_hashes() {
    let bed = enabled_bed().await;
    let keys = ["with,comma", "what?", "hash#tag", "slash/and space"];
    for key in keys {
        bed.store("ocr", key, json!({})).await;
    }

    let body = json!({"keys": keys}).to_string();
    let event = keys_event(&bed, "POST", "ocr").base64_body(body.as_bytes());
    let (status, answer_body) = answer(reprocess_keys::handle(&bed.backends.ports, event.request()).await);

    assert_eq!((status, &answer_body["queued"]), (200, &json!(4)), "{answer_body}");
    assert!(answer_body.get("notFound").is_none());
    for key in keys {
        assert!(bed.queue_item("ocr", key).await.is_some(), "{key} was queued");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn when_no_listed_key_is_stored_the_answer_is_key_not_found() {
    let bed = enabled_bed().await;
    let event = keys_event(&bed, "POST", "index").body(r#"{"keys": ["x", "y"]}"#);
    let (status, body) = answer(reprocess_keys::handle(&bed.backends.ports, event.request()).await);
    assert_eq!((status, body["message"].as_str()), (404, Some("KEY_NOT_FOUND")), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_and_reset_answer_through_their_events() {
    let bed = enabled_bed().await;
    let all = HttpApiEvent::new(
        "POST",
        "/reprocess/all/{storageUnit}/{scope}",
        &format!("/reprocess/all/{}/index", bed.unit),
    )
    .path_parameter("storageUnit", bed.unit.as_str())
    .path_parameter("scope", "index");
    let (status, body) = answer(reprocess_all::handle(&bed.backends.ports, all.request()).await);
    assert_eq!(status, 200, "{body}");
    assert!(body["expansionId"].as_str().is_some_and(|id| !id.is_empty()));

    let reset = HttpApiEvent::new("GET", "/reprocess/reset/{storageUnit}", &format!("/reprocess/reset/{}", bed.unit))
        .path_parameter("storageUnit", bed.unit.as_str());
    let (status, body) = answer(reprocess_reset::handle(&bed.backends.ports, reset.request()).await);
    assert_eq!((status, &body["requeued"]), (200, &json!(0)), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_outage_is_a_503_without_internals() {
    let bed = enabled_bed().await;
    // The same stack's names, but an endpoint where nothing listens.
    let dead = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build();
    let settings = reprocess_core::runtime::Settings {
        tables: reprocess_core::adapters::dynamo::Tables {
            config: std::env::var("CONFIG_TABLE").unwrap(),
            content: std::env::var("CONTENT_TABLE").unwrap(),
            queue: std::env::var("QUEUE_TABLE").unwrap(),
        },
        work_queue_url: bed.queue_url.clone(),
        endpoint_url: Some("http://127.0.0.1:9".into()),
    };
    let down = reprocess_core::runtime::Backends::new(&dead, &settings);

    let (status, body) =
        answer(reprocess_key::handle(&down.ports, key_event(&bed, "GET", "doc", "doc", "index").request()).await);

    assert_eq!((status, body["message"].as_str()), (503, Some("SERVICE_UNAVAILABLE")), "{body}");
    let text = body.to_string();
    for internal in ["Table", "127.0.0.1", "dispatch", "arn:"] {
        assert!(!text.contains(internal), "the answer leaks {internal}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn through_plain_http_the_raw_path_is_decoded_exactly_once() {
    let bed = enabled_bed().await;
    bed.store("index", AWKWARD_KEY, json!({})).await;
    let gateway = bed.gateway().await;
    let (address, http) = (gateway.base.trim_start_matches("http://"), &gateway.http);

    let url = format!("http://{address}/reprocess/key/{}/{AWKWARD_KEY_ENCODED}/index", bed.unit);
    let response = http.get(&url).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((status, &body["queued"]), (200, &json!(1)), "{body}");
    assert!(bed.queue_item("index", AWKWARD_KEY).await.is_some());

    let url = format!("http://{address}/reprocess/keys/{}/index", bed.unit);
    let response = http.post(&url).body(json!({"keys": [AWKWARD_KEY, "gone"]}).to_string()).send().await.unwrap();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((&body["alreadyQueued"], &body["notFound"]), (&json!(1), &json!(["gone"])), "{body}");

    let response = http.put(format!("http://{address}/reprocess/reset/{}", bed.unit)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocess_all_takes_a_scheduled_invocation_or_an_http_event_through_one_entry() {
    let bed = enabled_bed().await;
    let ports = &bed.backends.ports;
    let invoke = |event: Value| async move {
        let invocation: reprocess_all::Invocation = serde_json::from_value(event).expect("either kind parses");
        reprocess_all::invoke(ports, invocation).await
    };

    let scheduled = invoke(json!({"storageUnit": bed.unit.as_str(), "scope": "index"})).await.unwrap();
    assert_eq!(scheduled["message"], "OK");
    assert!(scheduled["expansionId"].as_str().is_some());

    let refused = invoke(json!({"storageUnit": "no such unit", "scope": "index"})).await.unwrap_err();
    assert_eq!(refused.code, "BAD_REQUEST");
    let refused = invoke(json!({"storageUnit": "missing-unit", "scope": "index"})).await.unwrap_err();
    assert_eq!(refused.code, "STORAGE_UNIT_NOT_FOUND");

    let event =
        HttpApiEvent::new("GET", "/reprocess/all/{storageUnit}/{scope}", &format!("/reprocess/all/{}/index", bed.unit))
            .path_parameter("storageUnit", bed.unit.as_str())
            .path_parameter("scope", "index");
    let answer = invoke(serde_json::from_str(&event.json()).unwrap()).await.unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_most_a_hundred_missing_keys_are_listed_and_all_are_counted() {
    let bed = enabled_bed().await;
    bed.store("index", "present", json!({})).await;
    let mut keys: Vec<String> = (0..150).map(|n| format!("missing-{n}")).collect();
    keys.push("present".into());

    let event = keys_event(&bed, "POST", "index").body(&json!({ "keys": keys }).to_string());
    let (status, body) = answer(reprocess_keys::handle(&bed.backends.ports, event.request()).await);

    assert_eq!((status, &body["queued"]), (200, &json!(1)), "{body}");
    assert_eq!(body["notFound"].as_array().unwrap().len(), 100);
    assert_eq!(body["notFoundCount"], 150);
}
