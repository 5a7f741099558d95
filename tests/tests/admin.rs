//! The administration, content and status routes through plain HTTP, success and error cases,
//! and the newcomer's walk from an empty unit to modules running.

use std::time::Duration;

use integration_tests::webhook::{Answer, Webhook};
use integration_tests::{Gateway, TestBed};
use serde_json::{Value, json};

async fn bed_and_gateway() -> (TestBed, Gateway) {
    let bed = TestBed::new().await;
    let gateway = bed.gateway().await;
    (bed, gateway)
}

fn code(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_is_written_read_and_deleted_whole() {
    let (bed, gateway) = bed_and_gateway().await;
    let path = format!("/admin/storageUnits/{}", bed.unit);

    let (status, body) = gateway.call("GET", &path, None).await;
    assert_eq!((status, code(&body)), (404, "STORAGE_UNIT_NOT_FOUND"));

    let config = json!({
        "reprocessQueue": {"enabled": true},
        "reprocessJob": {"running": true},
        "maxAttempts": 4,
        "leaseSeconds": 45,
        "modules": {"index": [{"module": "webhook", "settings": {"url": "https://example.org/hook"}}]}
    });
    let (status, body) = gateway.call("PUT", &path, Some(config.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_object().unwrap().keys().next().map(String::as_str), Some("message"), "message comes first");

    let (status, body) = gateway.call("GET", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!((&body["maxAttempts"], &body["leaseSeconds"]), (&json!(4), &json!(45)));
    assert_eq!(body["modules"], config["modules"]);

    let (status, _) = gateway.call("DELETE", &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = gateway.call("DELETE", &path, None).await;
    assert_eq!(status, 404);
    let (status, body) = gateway.call("POST", &path, Some(config)).await;
    assert_eq!((status, code(&body)), (405, "METHOD_NOT_ALLOWED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_configuration_is_refused_naming_the_field_and_the_stored_one_kept() {
    let (bed, gateway) = bed_and_gateway().await;
    let path = format!("/admin/storageUnits/{}", bed.unit);
    let good = json!({"reprocessQueue": {"enabled": true}, "maxAttempts": 3});
    assert_eq!(gateway.call("PUT", &path, Some(good)).await.0, 200);

    let refusals = [
        (json!({"modules": {"index": [{"module": "ftp"}]}}), "modules.index[0].module"),
        (json!({"modules": {"index": [{"module": "webhook", "settings": {"url": "file:///etc"}}]}}), "settings.url"),
        (json!({"modules": {"ocr": [{"module": "sqs", "settings": {"queueUrl": "not a url"}}]}}), "settings.queueUrl"),
        (json!({"modules": {"a b": []}}), "scope"),
        (json!({"maxAttempts": 0}), "maxAttempts"),
        (json!({"leaseSeconds": 100000}), "leaseSeconds"),
        (json!({"reprocessQueue": {"enabled": "yes"}}), "enabled"),
    ];
    for (config, field) in refusals {
        let (status, body) = gateway.call("PUT", &path, Some(config.clone())).await;
        assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{config}");
        assert!(body["detail"].as_str().unwrap().contains(field), "{config}: {body}");
    }
    let (status, body) = gateway.call_raw("PUT", &path, "{not json").await;
    assert_eq!((status, code(&body)), (400, "BAD_REQUEST"));
    let (status, _) = gateway.call("PUT", "/admin/storageUnits/bad%23name", Some(json!({}))).await;
    assert_eq!(status, 400);

    let (_, stored) = gateway.call("GET", &path, None).await;
    assert_eq!(stored["maxAttempts"], 3, "the refused writes changed nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn switches_and_modules_have_their_own_routes() {
    let (bed, gateway) = bed_and_gateway().await;
    let unit = bed.unit.as_str();
    assert_eq!(gateway.call("PUT", &format!("/admin/enableReprocessingQueue/{unit}/true"), None).await.0, 404);
    bed.configure(json!({})).await;

    let (status, body) = gateway.call("PUT", &format!("/admin/enableReprocessingQueue/{unit}/true"), None).await;
    assert_eq!((status, &body["reprocessQueue"]["enabled"]), (200, &json!(true)));
    let (status, _) = gateway.call("PUT", &format!("/admin/enableReprocessingQueue/{unit}/maybe"), None).await;
    assert_eq!(status, 400);

    let modules = json!({"modules": {"ocr": [{"module": "webhook", "settings": {"url": "http://127.0.0.1:1/x", "timeoutMs": 500}}]}});
    let (status, _) = gateway.call("POST", &format!("/admin/setContentProcessingModules/{unit}"), Some(modules)).await;
    assert_eq!(status, 200);
    let bad = json!({"modules": {"ocr": [{"module": "webhook", "settings": {"url": "gopher://x"}}]}});
    let (status, body) = gateway.call("POST", &format!("/admin/setContentProcessingModules/{unit}"), Some(bad)).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = gateway.call("PUT", &format!("/admin/reprocessingJob/{unit}/stop"), None).await;
    assert_eq!((status, &body["reprocessJob"]["running"]), (200, &json!(false)));
    let (status, _) = gateway.call("PUT", &format!("/admin/reprocessingJob/{unit}/pause"), None).await;
    assert_eq!(status, 400);
    let (status, _) = gateway.call("GET", &format!("/admin/reprocessingJob/{unit}/stop"), None).await;
    assert_eq!(status, 405);

    let (_, config) = gateway.call("GET", &format!("/admin/storageUnits/{unit}"), None).await;
    assert_eq!(config["reprocessQueue"]["enabled"], true);
    assert_eq!(config["reprocessJob"]["running"], false);
    assert_eq!(config["modules"]["ocr"][0]["settings"]["timeoutMs"], 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn content_is_added_updated_fetched_and_deleted() {
    let (bed, gateway) = bed_and_gateway().await;
    let unit = bed.unit.as_str();
    let execute = format!("/transaction/execute/{unit}/index");
    let add = json!({"key": "a/b c", "content": {"title": "one"}, "action": "add"});
    assert_eq!(gateway.call("POST", &execute, Some(add.clone())).await.0, 404, "the unit must exist");
    bed.configure(json!({})).await;

    assert_eq!(gateway.call("POST", &execute, Some(add.clone())).await.0, 200);
    let (status, body) = gateway.call("PUT", &execute, Some(add)).await;
    assert_eq!((status, code(&body)), (409, "KEY_EXISTS"));
    let update = json!({"key": "a/b c", "content": {"title": "two"}, "action": "update"});
    assert_eq!(gateway.call("PUT", &execute, Some(update)).await.0, 200);

    let (status, body) = gateway.call("GET", &format!("/access/fetch/{unit}/a%2Fb%20c/index"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["key"], "a/b c");
    assert_eq!(body["content"], json!({"index": {"title": "two"}}));
    let (status, body) = gateway.call("GET", &format!("/access/fetch/{unit}/a%2Fb%20c/ocr"), None).await;
    assert_eq!((status, code(&body)), (404, "KEY_NOT_FOUND"));

    let delete = json!({"key": "a/b c", "action": "delete"});
    assert_eq!(gateway.call("POST", &execute, Some(delete.clone())).await.0, 200);
    let (status, body) = gateway.call("POST", &execute, Some(delete)).await;
    assert_eq!((status, code(&body)), (404, "KEY_NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_content_is_a_4xx() {
    let (bed, gateway) = bed_and_gateway().await;
    bed.configure(json!({})).await;
    let execute = format!("/transaction/execute/{}/index", bed.unit);

    for body in [
        json!({"key": "k", "content": [1, 2], "action": "add"}),
        json!({"key": "k", "content": "text", "action": "update"}),
        json!({"key": "k", "action": "add"}),
        json!({"key": "k", "content": {}, "action": "upsert"}),
        json!({"key": "", "content": {}, "action": "add"}),
        json!({"content": {}, "action": "add"}),
    ] {
        let (status, answer) = gateway.call("POST", &execute, Some(body.clone())).await;
        assert_eq!((status, code(&answer)), (400, "BAD_REQUEST"), "{body}: {answer}");
    }

    let huge = json!({"key": "big", "content": {"text": "x".repeat(500 * 1024)}, "action": "add"});
    let (status, answer) = gateway.call("POST", &execute, Some(huge)).await;
    assert_eq!((status, code(&answer)), (413, "CONTENT_TOO_LARGE"), "{answer}");
    let (status, _) = gateway.call("GET", &format!("/access/fetch/{}/big/index", bed.unit), None).await;
    assert_eq!(status, 404, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_items_and_shows_one_item_with_its_lease_and_error() {
    let (bed, gateway) = bed_and_gateway().await;
    let webhook = Webhook::start(vec![Answer::Status(400)]).await;
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "reprocessJob": {"running": false},
        "modules": {"index": [{"module": "webhook", "settings": {"url": webhook.url}}]}
    }))
    .await;
    let unit = bed.unit.as_str();
    for key in ["a", "b", "c"] {
        bed.store("index", key, json!({})).await;
    }
    gateway.call("GET", &format!("/reprocess/keys/{unit}/index?keys=a,b,c"), None).await;

    let (status, body) = gateway.call("GET", &format!("/reprocess/status/{unit}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["storageUnit"], unit);
    assert_eq!(body["items"], json!({"queued": 0, "assigned": 0, "waiting": 3, "failed": 0}));

    let (status, body) = gateway.call("GET", &format!("/reprocess/status/{unit}/a/index"), None).await;
    assert_eq!(status, 200);
    assert_eq!((&body["state"], &body["attempts"], &body["lease"]), (&json!("waiting"), &json!(0), &Value::Null));

    gateway.call("PUT", &format!("/admin/reprocessingJob/{unit}/start"), None).await;
    bed.run_worker_until_idle(Duration::from_secs(2), Duration::from_secs(30)).await;
    let (_, body) = gateway.call("GET", &format!("/reprocess/status/{unit}"), None).await;
    assert_eq!(body["items"], json!({"queued": 0, "assigned": 0, "waiting": 0, "failed": 3}), "{body}");
    let (_, body) = gateway.call("GET", &format!("/reprocess/status/{unit}/a/index"), None).await;
    assert_eq!(body["state"], "failed");
    assert!(body["lastError"].as_str().unwrap().contains("400"), "{body}");

    gateway.call("POST", &format!("/reprocess/all/{unit}/index"), None).await;
    let (_, body) = gateway.call("GET", &format!("/reprocess/status/{unit}"), None).await;
    assert_eq!(body["expansions"][0]["scope"], "index");
    assert_eq!(body["expansions"][0]["state"], "running");

    let (status, body) = gateway.call("GET", &format!("/reprocess/status/{unit}/nope/index"), None).await;
    assert_eq!((status, code(&body)), (404, "KEY_NOT_FOUND"));
    let (status, body) = gateway.call("GET", "/reprocess/status/no-such-unit", None).await;
    assert_eq!((status, code(&body)), (404, "STORAGE_UNIT_NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_shows_its_owner_and_expiry() {
    let (bed, gateway) = bed_and_gateway().await;
    let webhook = Webhook::start(vec![Answer::Slow(Duration::from_millis(1500))]).await;
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "modules": {"index": [{"module": "webhook", "settings": {"url": webhook.url}}]}
    }))
    .await;
    bed.store("index", "doc", json!({})).await;
    let unit = bed.unit.as_str();
    gateway.call("POST", &format!("/reprocess/key/{unit}/doc/index"), None).await;

    let run = bed.run_worker_once();
    let look = async {
        loop {
            let (_, body) = gateway.call("GET", &format!("/reprocess/status/{unit}/doc/index"), None).await;
            if body["state"] == "assigned" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (_, body) = tokio::join!(run, look);
    assert_eq!(body["attempts"], 1);
    assert!(body["lease"]["owner"].as_str().unwrap().starts_with("worker-"), "{body}");
    assert!(body["lease"]["expiresAt"].as_str().unwrap().ends_with('Z'), "{body}");
}

/// The README's walkthrough, step by step.
#[tokio::test(flavor = "multi_thread")]
async fn from_an_empty_unit_to_modules_running() {
    let (bed, gateway) = bed_and_gateway().await;
    let webhook = Webhook::start(vec![Answer::Status(200)]).await;
    let unit = bed.unit.as_str();

    let config = json!({"reprocessQueue": {"enabled": true}, "modules": {}});
    assert_eq!(gateway.call("PUT", &format!("/admin/storageUnits/{unit}"), Some(config)).await.0, 200);
    let document = json!({"key": "doc-1", "content": {"title": "Hello"}, "action": "add"});
    assert_eq!(gateway.call("POST", &format!("/transaction/execute/{unit}/index"), Some(document)).await.0, 200);
    let modules = json!({"modules": {"index": [{"module": "webhook", "settings": {"url": webhook.url}}]}});
    assert_eq!(gateway.call("POST", &format!("/admin/setContentProcessingModules/{unit}"), Some(modules)).await.0, 200);
    let (status, body) = gateway.call("POST", &format!("/reprocess/key/{unit}/doc-1/index"), None).await;
    assert_eq!((status, &body["queued"]), (200, &json!(1)));
    let (_, body) = gateway.call("GET", &format!("/reprocess/status/{unit}/doc-1/index"), None).await;
    assert_eq!(body["state"], "queued");

    bed.run_worker_until_idle(Duration::from_secs(2), Duration::from_secs(30)).await;

    assert_eq!(webhook.received()[0].body["content"], json!({"title": "Hello"}));
    let (status, _) = gateway.call("GET", &format!("/reprocess/status/{unit}/doc-1/index"), None).await;
    assert_eq!(status, 404, "a finished item leaves the queue");
    let (status, body) = gateway.call("POST", &format!("/reprocess/reset/{unit}"), None).await;
    assert_eq!((status, &body["requeued"]), (200, &json!(0)));
}
