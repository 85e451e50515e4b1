//! Amazon CloudWatch (metrics) in the core: the box's metric store ([`Metrics`]) and
//! CloudWatch's operations on it ([`ops`]), with the model's member names (cloudwatch
//! service-2.json, API version 2010-08-01) and exception names. `serve` answers them as
//! `GraniteServiceVersion20100801` in each protocol the model lists
//! (`api::cloudwatch`); the metrics ECS publishes and alarms build on the same store.
//!
//! Local differences (said, not silent; docs/cloudwatch.md): one store per box, for every
//! account and region; metrics live in serve's memory (a restart starts empty) with
//! CloudWatch's retention for high-resolution data (3 hours, then rolled up to the
//! minute) and 15 days for minute data; metric math is evaluated in GetMetricData
//! and in alarms ([`math`], [`query`]), entity association is not kept.

pub mod alarms;
pub mod evaluation;
pub mod math;
pub mod metrics;
pub mod ops;
pub mod query;

pub use alarms::Alarms;
pub use metrics::Metrics;

/// What CloudWatch's operations work on: the box's metrics and alarms.
#[derive(Debug)]
pub struct CloudWatch {
    pub metrics: std::sync::Arc<Metrics>,
    pub alarms: Alarms,
}

/// A CloudWatch exception: the model's shape name (`__type` of the JSON and CBOR
/// protocols) and its awsQuery error code (what botocore reports as the error's `Code`:
/// the service is `awsQueryCompatible`).
#[derive(Debug, thiserror::Error)]
pub enum CwError {
    #[error("InvalidParameterValue: {0}")]
    InvalidParameterValue(String),
    #[error("MissingParameter: {0}")]
    MissingParameter(String),
    #[error("InvalidParameterCombination: {0}")]
    InvalidParameterCombination(String),
    #[error("InvalidNextToken: {0}")]
    InvalidNextToken(String),
    #[error("ResourceNotFound: {0}")]
    ResourceNotFound(String),
    /// The tagging operations' missing resource (the model's `ResourceNotFoundException`,
    /// another shape than DeleteAlarms' `ResourceNotFound`).
    #[error("ResourceNotFoundException: {0}")]
    ResourceNotFoundException(String),
    #[error("InvalidFormat: {0}")]
    InvalidFormat(String),
    #[error("InvalidAction: {0}")]
    UnknownOperation(String),
    /// A request body that does not decode (CBOR or JSON), or whose members do not have
    /// the model's types.
    #[error("SerializationException: {0}")]
    Serialization(String),
    /// An expression of metric math that cannot be evaluated: CloudWatch's generic
    /// `ValidationError` (no shape of the model names it).
    #[error("ValidationError: {0}")]
    Validation(String),
    #[error("InternalServiceError: {0}")]
    Internal(String),
}

pub type CwResult<T> = Result<T, CwError>;

impl CwError {
    /// The exception's shape name in the model (`__type`).
    pub fn name(&self) -> &'static str {
        match self {
            CwError::InvalidParameterValue(_) => "InvalidParameterValueException",
            CwError::MissingParameter(_) => "MissingRequiredParameterException",
            CwError::InvalidParameterCombination(_) => "InvalidParameterCombinationException",
            CwError::InvalidNextToken(_) => "InvalidNextToken",
            CwError::ResourceNotFound(_) => "ResourceNotFound",
            CwError::ResourceNotFoundException(_) => "ResourceNotFoundException",
            CwError::InvalidFormat(_) => "InvalidFormatFault",
            CwError::UnknownOperation(_) => "UnknownOperationException",
            CwError::Serialization(_) => "SerializationException",
            CwError::Validation(_) => "ValidationError",
            CwError::Internal(_) => "InternalServiceFault",
        }
    }

    /// The awsQuery error code (the model's `error.code`), which the SDKs report when the
    /// answer carries `x-amzn-query-error`.
    pub fn query_code(&self) -> &'static str {
        match self {
            CwError::InvalidParameterValue(_) => "InvalidParameterValue",
            CwError::MissingParameter(_) => "MissingParameter",
            CwError::InvalidParameterCombination(_) => "InvalidParameterCombination",
            CwError::InvalidNextToken(_) => "InvalidNextToken",
            CwError::ResourceNotFound(_) => "ResourceNotFound",
            CwError::ResourceNotFoundException(_) => "ResourceNotFoundException",
            CwError::InvalidFormat(_) => "InvalidFormat",
            CwError::UnknownOperation(_) => "InvalidAction",
            CwError::Serialization(_) => "SerializationException",
            CwError::Validation(_) => "ValidationError",
            CwError::Internal(_) => "InternalServiceError",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            CwError::Internal(_) => 500,
            CwError::ResourceNotFound(_) | CwError::ResourceNotFoundException(_) => 404,
            _ => 400,
        }
    }

    /// Whose fault (awsQuery's `Sender`/`Receiver`).
    pub fn sender_fault(&self) -> bool {
        !matches!(self, CwError::Internal(_))
    }

    pub fn message(&self) -> String {
        match self {
            CwError::InvalidParameterValue(m)
            | CwError::MissingParameter(m)
            | CwError::InvalidParameterCombination(m)
            | CwError::InvalidNextToken(m)
            | CwError::ResourceNotFound(m)
            | CwError::ResourceNotFoundException(m)
            | CwError::InvalidFormat(m)
            | CwError::UnknownOperation(m)
            | CwError::Serialization(m)
            | CwError::Validation(m)
            | CwError::Internal(m) => m.clone(),
        }
    }
}
