//! API Gateway HTTP API payload 2.0 events, made from a real event document.

use base64::Engine;
use lambda_http::Request;
use serde_json::{Map, Value, json};

const TEMPLATE: &str = include_str!("../events/http-api-v2.json");

/// An HTTP API event as API Gateway sends it: `raw_path` percent-encoded as the client sent it,
/// `path_parameters` already decoded, as API Gateway hands them over.
pub struct HttpApiEvent {
    event: Value,
}

impl HttpApiEvent {
    pub fn new(method: &str, route_key: &str, raw_path: &str) -> Self {
        let mut event: Value = serde_json::from_str(TEMPLATE).expect("the event document parses");
        let route_key = format!("ANY {route_key}");
        event["routeKey"] = json!(route_key);
        event["requestContext"]["routeKey"] = json!(route_key);
        event["rawPath"] = json!(raw_path);
        event["requestContext"]["http"]["path"] = json!(raw_path);
        event["requestContext"]["http"]["method"] = json!(method);
        event["pathParameters"] = json!({});
        Self { event }
    }

    pub fn path_parameter(mut self, name: &str, decoded_value: &str) -> Self {
        self.event["pathParameters"][name] = json!(decoded_value);
        self
    }

    /// `raw` as the client sent it; API Gateway also hands over a decoded map.
    pub fn query(mut self, raw: &str) -> Self {
        self.event["rawQueryString"] = json!(raw);
        let decoded: Map<String, Value> =
            form_pairs(raw).into_iter().map(|(name, value)| (name, Value::String(value))).collect();
        self.event["queryStringParameters"] = Value::Object(decoded);
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.event["body"] = json!(body);
        self.event["isBase64Encoded"] = json!(false);
        self
    }

    pub fn base64_body(mut self, body: &[u8]) -> Self {
        self.event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        self.event["isBase64Encoded"] = json!(true);
        self
    }

    pub fn json(&self) -> String {
        self.event.to_string()
    }

    /// The request as the Lambda runtime hands it to the handler.
    pub fn request(&self) -> Request {
        lambda_http::request::from_str(&self.json()).expect("a valid HTTP API event")
    }
}

fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                let spaced = text.replace('+', " ");
                percent_decode(&spaced)
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[index + 1..index + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
