//! `infra/template.yaml` held to what the code needs: every function's permissions are exactly
//! what its code calls, on named resources; functions are arm64 on provided.al2023; the worker's
//! event source reports partial batch failures and the queue outlasts the worker's timeout.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// What each function's code calls, as `action` on `resource` (a logical id, or a logical id
/// and a path within it). Reading the code is the source of this table: a new call needs a
/// line here and a statement in the template.
fn needs() -> BTreeMap<&'static str, BTreeSet<(&'static str, &'static str)>> {
    let sends = ("sqs:SendMessage", "WorkQueue");
    let read_unit = ("dynamodb:GetItem", "ConfigTable");
    // Existence checks, one conditional write per key (and a read when it is refused), sends.
    let queues_keys = vec![
        read_unit,
        ("dynamodb:BatchGetItem", "ContentTable"),
        ("dynamodb:UpdateItem", "QueueTable"),
        ("dynamodb:GetItem", "QueueTable"),
        sends,
    ];
    let table = [
        ("ReprocessKeyFunction", queues_keys.clone()),
        ("ReprocessKeysFunction", queues_keys),
        ("ReprocessAllFunction", vec![read_unit, ("dynamodb:PutItem", "ConfigTable"), sends]),
        (
            "ReprocessResetFunction",
            vec![
                read_unit,
                ("dynamodb:UpdateItem", "QueueTable"),
                ("dynamodb:GetItem", "QueueTable"),
                ("dynamodb:Query", "QueueTable/index/byUnitState"),
                sends,
            ],
        ),
        (
            "ReprocessStatusFunction",
            vec![
                read_unit,
                ("dynamodb:Query", "ConfigTable"),
                ("dynamodb:GetItem", "QueueTable"),
                ("dynamodb:Query", "QueueTable/index/byUnitState"),
            ],
        ),
        (
            "AdminFunction",
            vec![read_unit, ("dynamodb:PutItem", "ConfigTable"), ("dynamodb:DeleteItem", "ConfigTable"), sends],
        ),
        (
            "TransactionExecuteFunction",
            vec![read_unit, ("dynamodb:PutItem", "ContentTable"), ("dynamodb:DeleteItem", "ContentTable")],
        ),
        ("AccessFetchFunction", vec![read_unit, ("dynamodb:GetItem", "ContentTable")]),
        (
            "WorkerFunction",
            vec![
                read_unit,
                ("dynamodb:UpdateItem", "ConfigTable"),
                ("dynamodb:BatchGetItem", "ContentTable"),
                ("dynamodb:Query", "ContentTable"),
                ("dynamodb:UpdateItem", "QueueTable"),
                ("dynamodb:DeleteItem", "QueueTable"),
                ("dynamodb:GetItem", "QueueTable"),
                ("dynamodb:Query", "QueueTable/index/byUnitState"),
                ("sqs:ReceiveMessage", "WorkQueue"),
                ("sqs:DeleteMessage", "WorkQueue"),
                ("sqs:GetQueueAttributes", "WorkQueue"),
                ("sqs:ChangeMessageVisibility", "WorkQueue"),
                sends,
                // The `sqs` module's downstream queues, by name prefix.
                ("sqs:SendMessage", "downstream queues"),
            ],
        ),
    ];
    table.into_iter().map(|(function, needs)| (function, needs.into_iter().collect())).collect()
}

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).expect("the template parses")
}

fn resources(template: &Value) -> &serde_yaml::Mapping {
    template["Resources"].as_mapping().unwrap()
}

fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == tag => Some(&tagged.value),
        _ => None,
    }
}

/// Names the resource a policy statement's resource entry points at; panics on a wildcard.
fn resource_name(function: &str, resource: &Value) -> String {
    if let Some(attribute) = tagged(resource, "!GetAtt").and_then(Value::as_str) {
        return attribute.trim_end_matches(".Arn").to_owned();
    }
    if let Some(text) = tagged(resource, "!Sub").and_then(Value::as_str) {
        if let Some(rest) = text.strip_prefix("${").and_then(|rest| rest.split_once(".Arn}")) {
            return format!("{}{}", rest.0, rest.1);
        }
        if text.ends_with(":${DownstreamQueuePrefix}*") {
            return "downstream queues".into();
        }
        panic!("{function}: a resource the test does not know: {text}");
    }
    panic!("{function}: resource {resource:?} is a wildcard or a literal; name a resource of the stack")
}

fn granted(template: &Value, function: &str) -> BTreeSet<(String, String)> {
    let function_resource = &resources(template)[function];
    let role = tagged(&function_resource["Properties"]["Role"], "!GetAtt")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{function} has a role of its own"))
        .trim_end_matches(".Arn");
    let policies = resources(template)[role]["Properties"]["Policies"].as_sequence().unwrap();
    let mut granted = BTreeSet::new();
    for policy in policies {
        for statement in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            assert_eq!(statement["Effect"], "Allow");
            let actions: Vec<&str> = match &statement["Action"] {
                Value::Sequence(actions) => actions.iter().filter_map(Value::as_str).collect(),
                Value::String(action) => vec![action.as_str()],
                other => panic!("{function}: actions {other:?}"),
            };
            let resources: Vec<&Value> = match &statement["Resource"] {
                Value::Sequence(resources) => resources.iter().collect(),
                single => vec![single],
            };
            for action in &actions {
                assert!(!action.contains('*'), "{function}: wildcard action {action}");
                for resource in &resources {
                    let name = resource_name(function, resource);
                    if action.starts_with("logs:") {
                        assert!(name.ends_with("Logs"), "{function}: logs go to its own log group, not {name}");
                        continue;
                    }
                    granted.insert((action.to_string(), name));
                }
            }
        }
    }
    granted
}

#[test]
fn every_function_is_granted_exactly_what_its_code_calls() {
    let template = template();
    for (function, needs) in needs() {
        let needs: BTreeSet<(String, String)> =
            needs.into_iter().map(|(action, resource)| (action.to_owned(), resource.to_owned())).collect();
        let granted = granted(&template, function);
        let extra: Vec<_> = granted.difference(&needs).collect();
        let missing: Vec<_> = needs.difference(&granted).collect();
        assert!(extra.is_empty(), "{function} is granted more than it needs: {extra:?}");
        assert!(missing.is_empty(), "{function} lacks what its code calls: {missing:?}");
    }
}

#[test]
fn every_function_in_the_template_is_checked_and_has_its_own_role() {
    let template = template();
    let functions: BTreeSet<String> = resources(&template)
        .iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    let checked: BTreeSet<String> = needs().keys().map(|name| name.to_string()).collect();
    assert_eq!(functions, checked);

    let roles: BTreeSet<String> = functions
        .iter()
        .map(|function| {
            tagged(&resources(&template)[function.as_str()]["Properties"]["Role"], "!GetAtt")
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(roles.len(), functions.len(), "no two functions share a role");
}

#[test]
fn functions_run_on_arm64_and_provided_al2023_with_json_logs() {
    let template = template();
    let function = &template["Globals"]["Function"];
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Architectures"], serde_yaml::from_str::<Value>("[arm64]").unwrap());
    assert_eq!(function["LoggingConfig"]["LogFormat"], "JSON");
    for (name, resource) in resources(&template) {
        if resource["Type"] == "AWS::Serverless::Function" {
            let properties = &resource["Properties"];
            assert!(properties.get("Runtime").is_none() && properties.get("Architectures").is_none(), "{name:?}");
            let logs = tagged(&properties["LoggingConfig"]["LogGroup"], "!Ref").and_then(Value::as_str).unwrap();
            assert!(resources(&template)[logs]["Properties"]["RetentionInDays"].is_tagged(), "{logs} has a retention");
        }
    }
}

trait IsTagged {
    fn is_tagged(&self) -> bool;
}

impl IsTagged for Value {
    fn is_tagged(&self) -> bool {
        matches!(self, Value::Tagged(_))
    }
}

#[test]
fn the_worker_reports_partial_failures_and_the_queue_outlasts_its_timeout() {
    let template = template();
    let mapping = &resources(&template)["WorkerEventSource"]["Properties"];
    assert_eq!(mapping["FunctionResponseTypes"], serde_yaml::from_str::<Value>("[ReportBatchItemFailures]").unwrap());
    assert_eq!(tagged(&mapping["BatchSize"], "!Ref").unwrap(), "WorkerBatchSize");
    assert_eq!(tagged(&mapping["ScalingConfig"]["MaximumConcurrency"], "!Ref").unwrap(), "WorkerMaxConcurrency");

    let worker_timeout = resources(&template)["WorkerFunction"]["Properties"]["Timeout"].as_u64().unwrap();
    let queue = &resources(&template)["WorkQueue"]["Properties"];
    let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
    assert!(visibility >= 6 * worker_timeout, "visibility {visibility} s for a worker of {worker_timeout} s");
    assert!(queue["RedrivePolicy"].get("deadLetterTargetArn").is_some());
}

#[test]
fn every_route_requires_authorization_unless_a_parameter_opens_it() {
    let template = template();
    let mut routes = 0;
    for (name, resource) in resources(&template) {
        if resource["Type"] != "AWS::ApiGatewayV2::Route" {
            continue;
        }
        routes += 1;
        let authorization = serde_yaml::to_string(&resource["Properties"]["AuthorizationType"]).unwrap();
        assert!(authorization.contains("UseJwt") && authorization.contains("AWS_IAM"), "{name:?}: {authorization}");
    }
    assert_eq!(routes, 12, "every route of the contract");
    assert_eq!(template["Parameters"]["ApiAuthorization"]["Default"], "IAM");
}

#[test]
fn tables_are_on_demand_with_point_in_time_recovery() {
    let template = template();
    for (name, resource) in resources(&template) {
        if resource["Type"] == "AWS::DynamoDB::Table" {
            let properties = &resource["Properties"];
            assert_eq!(properties["BillingMode"], "PAY_PER_REQUEST", "{name:?}");
            assert_eq!(properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true, "{name:?}");
        }
    }
}
