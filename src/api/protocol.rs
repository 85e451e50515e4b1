//! The protocol layer of `serve`'s `POST /`: which service and wire protocol a request
//! speaks ([`route`]: `X-Amz-Target` for AWS JSON 1.0/1.1, `Action`/`Version` for awsQuery,
//! the SigV4 credential scope's service name), and each protocol's encoding of answers and
//! errors ([`aws_json`], [`aws_error`] for JSON; [`query_error`] for awsQuery, which
//! Elastic Load Balancing v2 speaks). A new service is a row of [`ENDPOINTS`] and
//! its operations' table, not a new parser (docs/architecture.md, "The protocol layer").
//!
//! Ref: botocore `serialize.py` (`JSONSerializer`: `X-Amz-Target: <targetPrefix>.<Op>`,
//! `Content-Type: application/x-amz-json-<jsonVersion>`; `QuerySerializer`: a form body
//! with `Action` and `Version`) and `parsers.py` (`QueryParser`: `<ErrorResponse><Error>
//! <Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`).

use crate::ecs::table::Service;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A wire protocol of the AWS services (botocore's `metadata.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.0 (`application/x-amz-json-1.0`).
    Json10,
    /// AWS JSON 1.1 (`application/x-amz-json-1.1`): ECS, CloudWatch Logs.
    Json11,
    /// awsQuery: a form body, XML answers (Elastic Load Balancing v2).
    Query,
    /// Smithy RPC v2 CBOR: `POST /service/<targetPrefix>/operation/<Op>`, CBOR bodies
    /// (CloudWatch, whose model lists it first: botocore speaks it).
    RpcV2Cbor,
}

/// How one service is reached: its JSON target prefix, its SigV4 signing name, the
/// protocol its model declares (botocore's `metadata`).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub service: Service,
    pub target_prefix: &'static str,
    pub signing_name: &'static str,
    pub protocol: Protocol,
}

/// The services `serve` answers on `POST /`.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        service: Service::Ecs,
        target_prefix: "AmazonEC2ContainerServiceV20141113.",
        signing_name: "ecs",
        protocol: Protocol::Json11,
    },
    Endpoint {
        service: Service::Logs,
        target_prefix: "Logs_20140328.",
        signing_name: "logs",
        protocol: Protocol::Json11,
    },
    Endpoint {
        service: Service::Ecr,
        target_prefix: "AmazonEC2ContainerRegistry_V20150921.",
        signing_name: "ecr",
        protocol: Protocol::Json11,
    },
    Endpoint {
        service: Service::Elb,
        // awsQuery has no target header: the form's `Version` and the signing name say it.
        target_prefix: "",
        signing_name: "elasticloadbalancing",
        protocol: Protocol::Query,
    },
    Endpoint {
        service: Service::CloudMap,
        target_prefix: "Route53AutoNaming_v20170314.",
        signing_name: "servicediscovery",
        protocol: Protocol::Json11,
    },
    Endpoint {
        service: Service::CloudWatch,
        // Also reached as AWS JSON 1.0 with this target (the model's second protocol).
        target_prefix: "GraniteServiceVersion20100801.",
        signing_name: "monitoring",
        protocol: Protocol::RpcV2Cbor,
    },
    Endpoint {
        service: Service::AutoScaling,
        target_prefix: "AnyScaleFrontendService.",
        signing_name: "application-autoscaling",
        protocol: Protocol::Json11,
    },
];

/// ELBv2's API version (the form's `Version`; the model's `metadata.apiVersion`).
pub const ELB_VERSION: &str = "2015-12-01";

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// An AWS JSON call of a service here: `operation` is the name after the prefix.
    Json {
        service: Service,
        protocol: Protocol,
        operation: String,
    },
    /// An awsQuery call (`Action`, `Version`), for the service its SigV4 scope names.
    Query {
        /// The credential scope's service (`elasticloadbalancing`), if signed.
        signing_name: Option<String>,
        action: String,
        version: Option<String>,
    },
    /// Neither: the ECS dispatcher answers (UnknownOperationException naming the target),
    /// as `serve` always did.
    Unknown,
}

/// The service and protocol of a request, from its headers and body.
pub fn route(headers: &HeaderMap, body: &[u8]) -> Route {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(target) = text("x-amz-target") {
        for e in ENDPOINTS.iter().filter(|e| e.protocol != Protocol::Query) {
            if let Some(op) = target.strip_prefix(e.target_prefix) {
                let protocol = match text("content-type") {
                    Some(t) if t.starts_with("application/x-amz-json-1.0") => Protocol::Json10,
                    // A target header is the JSON protocol, whatever the service's first.
                    _ if e.protocol == Protocol::RpcV2Cbor => Protocol::Json10,
                    _ => e.protocol,
                };
                return Route::Json {
                    service: e.service,
                    protocol,
                    operation: op.to_string(),
                };
            }
        }
        return Route::Unknown;
    }
    let form =
        text("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Route::Unknown;
    }
    let (mut action, mut version) = (None, None);
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "Action" => action = Some(v.into_owned()),
            "Version" => version = Some(v.into_owned()),
            _ => {}
        }
    }
    match action {
        Some(action) => Route::Query {
            signing_name: text("authorization")
                .and_then(scope_service)
                .map(str::to_string),
            action,
            version,
        },
        None => Route::Unknown,
    }
}

/// The service and operation of an RPC v2 CBOR call's path
/// (`/service/<targetPrefix>/operation/<Op>`), for a service that speaks it here.
pub fn rpc_v2_route(service: &str, operation: &str) -> Option<(Service, String)> {
    let e = ENDPOINTS.iter().find(|e| {
        e.protocol == Protocol::RpcV2Cbor && e.target_prefix.strip_suffix('.') == Some(service)
    })?;
    let valid = !operation.is_empty() && operation.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then(|| (e.service, operation.to_string()))
}

/// The awsQuery service of a call: the one its SigV4 scope names, else (unsigned, with
/// `--insecure-no-auth`) the one whose API version the form's `Version` is.
pub fn query_service(signing_name: Option<&str>, version: Option<&str>) -> Option<Service> {
    let rows = ENDPOINTS.iter().filter(|e| e.protocol == Protocol::Query);
    match signing_name {
        Some(name) => rows
            .into_iter()
            .find(|e| e.signing_name == name)
            .map(|e| e.service),
        None => (version == Some(ELB_VERSION)).then_some(Service::Elb),
    }
}

/// The service of a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/20240101/us-east-1/<service>/aws4_request`).
fn scope_service(authorization: &str) -> Option<&str> {
    let cred = authorization.split("Credential=").nth(1)?;
    let cred = cred.split([',', ' ']).next()?;
    let mut parts = cred.split('/');
    let service = parts.nth(3)?;
    (parts.next() == Some("aws4_request")).then_some(service)
}

/// AWS JSON 1.1's content type, for the ECS and CloudWatch Logs protocols alike.
const AWS_JSON: &str = "application/x-amz-json-1.1";

/// An AWS JSON 1.1 response: `body` as JSON, and for an error its name in
/// `X-Amzn-ErrorType` (the SDKs read either that or the body's `__type`).
pub fn aws_json(
    status: StatusCode,
    body: &serde_json::Value,
    error_type: Option<&'static str>,
) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(AWS_JSON));
    if let Some(kind) = error_type {
        h.insert("x-amzn-errortype", HeaderValue::from_static(kind));
    }
    resp
}

/// An AWS JSON error response: `{"__type", "message"}` and `X-Amzn-ErrorType`.
pub fn aws_error(status: StatusCode, name: &'static str, message: &str) -> Response {
    aws_json(
        status,
        &serde_json::json!({"__type": name, "message": message}),
        Some(name),
    )
}

/// Who an awsQuery error blames (`<Type>`): the caller or this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Sender,
    /// A failure of this host (a service's 500s).
    Receiver,
}

/// An awsQuery error response, as botocore's `QueryParser` reads it: `<ErrorResponse>`
/// with `<Error><Type/><Code/><Message/></Error>` and a `<RequestId>`, `text/xml`.
pub fn query_error(status: StatusCode, fault: Fault, code: &str, message: &str) -> Response {
    let mut id = [0u8; 16];
    // A request id is for the caller's logs; without the kernel's randomness, zeros.
    let _ = getrandom::getrandom(&mut id);
    let body = query_error_xml(fault, code, message, &hex::encode(id));
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

fn query_error_xml(fault: Fault, code: &str, message: &str, request_id: &str) -> String {
    let kind = match fault {
        Fault::Sender => "Sender",
        Fault::Receiver => "Receiver",
    };
    format!(
        "<ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error>\
         <RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The answer to an awsQuery call for a service not served here: AWS's `InvalidAction`
/// (400, the caller's fault), naming the service it was for.
pub fn no_query_service(signing_name: Option<&str>, action: &str) -> Response {
    let service = signing_name.unwrap_or("an unsigned request's service");
    query_error(
        StatusCode::BAD_REQUEST,
        Fault::Sender,
        "InvalidAction",
        &format!(
            "{action}: this awsQuery service ({service}) is not served by minifargate serve (it \
             answers {}; see docs/serve.md)",
            ENDPOINTS
                .iter()
                .map(|e| e.signing_name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn json_calls_go_to_their_service_by_target() {
        let h = headers(&[
            ("x-amz-target", "Logs_20140328.PutLogEvents"),
            ("content-type", "application/x-amz-json-1.1"),
        ]);
        assert_eq!(
            route(&h, b"{}"),
            Route::Json {
                service: Service::Logs,
                protocol: Protocol::Json11,
                operation: "PutLogEvents".into()
            }
        );
        let h = headers(&[
            ("x-amz-target", "AmazonEC2ContainerServiceV20141113.RunTask"),
            ("content-type", "application/x-amz-json-1.0"),
        ]);
        assert!(matches!(
            route(&h, b"{}"),
            Route::Json { service: Service::Ecs, protocol: Protocol::Json10, ref operation } if operation == "RunTask"
        ));
        // A target of no service here: the ECS dispatcher answers, as before.
        let h = headers(&[("x-amz-target", "DynamoDB_20120810.GetItem")]);
        assert_eq!(route(&h, b"{}"), Route::Unknown);
        assert_eq!(route(&HeaderMap::new(), b"{}"), Route::Unknown);
    }

    #[test]
    fn query_calls_are_read_from_the_form_and_the_signing_scope() {
        // botocore's QuerySerializer: a form body with Action and Version, signed for the
        // service's signing name (elbv2's is elasticloadbalancing).
        let h = headers(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=00",
            ),
        ]);
        let body = b"Action=DescribeLoadBalancers&Version=2015-12-01&Names.member.1=a%20b";
        assert_eq!(
            route(&h, body),
            Route::Query {
                signing_name: Some("elasticloadbalancing".into()),
                action: "DescribeLoadBalancers".into(),
                version: Some("2015-12-01".into()),
            }
        );
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(route(&h, b"Version=1"), Route::Unknown);
    }

    #[test]
    fn query_errors_have_aws_shape_and_escape_their_text() {
        let xml = query_error_xml(Fault::Sender, "InvalidAction", "a <b> & 'c'", "r-1");
        assert_eq!(
            xml,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
             <Message>a &lt;b&gt; &amp; &apos;c&apos;</Message></Error>\
             <RequestId>r-1</RequestId></ErrorResponse>"
        );
    }

    #[test]
    fn ecs_is_the_first_endpoint() {
        // api/ecs.rs names its prefix by this row.
        assert_eq!(ENDPOINTS[0].service, Service::Ecs);
    }

    #[test]
    fn every_endpoint_is_its_model_s() {
        // Each row says what the service model the AWS CLI carries says: target prefix,
        // signing name, protocol.
        for e in ENDPOINTS {
            let (model, prefix) = match e.service {
                Service::Ecs => (
                    crate::ecs::botocore_model::service_model(),
                    "AmazonEC2ContainerServiceV20141113",
                ),
                Service::Logs
                | Service::Elb
                | Service::CloudWatch
                | Service::AutoScaling
                | Service::CloudMap => {
                    continue;
                }
                Service::Ecr => (
                    crate::ecr::api::service_model(),
                    "AmazonEC2ContainerRegistry_V20150921",
                ),
            };
            let m = &model["metadata"];
            assert_eq!(
                format!("{}.", m["targetPrefix"].as_str().unwrap()),
                e.target_prefix
            );
            assert_eq!(prefix, m["targetPrefix"].as_str().unwrap());
            assert_eq!(m["signingName"].as_str().unwrap_or("ecs"), e.signing_name);
            assert_eq!(m["jsonVersion"].as_str(), Some("1.1"));
        }
    }
}
