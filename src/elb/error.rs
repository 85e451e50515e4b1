//! ELB's errors: one variant per error code the ELBv2 operations here fail with (the
//! botocore model's exception shapes, `error.code`), each with the HTTP status the model
//! gives it. The API answers `<ErrorResponse><Error><Type/><Code/><Message/></Error>`
//! (`crate::api::protocol::query_error`), so the AWS CLI says "An error occurred
//! (LoadBalancerNotFound) …" as it does against AWS.

/// An ELBv2 error (its code is the model's `error.code`, not the shape name).
#[derive(Debug, thiserror::Error)]
pub enum ElbError {
    /// A member missing, out of bounds or of the wrong form (`ValidationError`: the code
    /// AWS's query services answer for a request that breaks the model's constraints).
    #[error("ValidationError: {0}")]
    Validation(String),
    #[error("LoadBalancerNotFound: {0}")]
    LoadBalancerNotFound(String),
    #[error("TargetGroupNotFound: {0}")]
    TargetGroupNotFound(String),
    #[error("ListenerNotFound: {0}")]
    ListenerNotFound(String),
    #[error("DuplicateLoadBalancerName: {0}")]
    DuplicateLoadBalancerName(String),
    #[error("DuplicateTargetGroupName: {0}")]
    DuplicateTargetGroupName(String),
    #[error("DuplicateListener: {0}")]
    DuplicateListener(String),
    #[error("ResourceInUse: {0}")]
    ResourceInUse(String),
    #[error("InvalidConfigurationRequest: {0}")]
    InvalidConfigurationRequest(String),
    #[error("InvalidTarget: {0}")]
    InvalidTarget(String),
    #[error("IncompatibleProtocols: {0}")]
    IncompatibleProtocols(String),
    #[error("UnsupportedProtocol: {0}")]
    UnsupportedProtocol(String),
    #[error("InvalidLoadBalancerAction: {0}")]
    InvalidLoadBalancerAction(String),
    #[error("InvalidScheme: {0}")]
    InvalidScheme(String),
    #[error("TargetGroupAssociationLimit: {0}")]
    TargetGroupAssociationLimit(String),
    #[error("OperationNotPermitted: {0}")]
    OperationNotPermitted(String),
    #[error("TooManyTags: {0}")]
    TooManyTags(String),
    #[error("RuleNotFound: {0}")]
    RuleNotFound(String),
    #[error("PriorityInUse: {0}")]
    PriorityInUse(String),
    #[error("TooManyRules: {0}")]
    TooManyRules(String),
    #[error("TooManyActions: {0}")]
    TooManyActions(String),
    /// An action this endpoint does not answer (AWS's query services' `InvalidAction`).
    #[error("InvalidAction: {0}")]
    InvalidAction(String),
    /// A failure of this host (the store), not of the request.
    #[error("InternalFailure: {0}")]
    Internal(String),
}

pub type ElbResult<T> = Result<T, ElbError>;

impl ElbError {
    /// The error code on the wire (`<Code>`).
    pub fn code(&self) -> &'static str {
        use ElbError::*;
        match self {
            Validation(_) => "ValidationError",
            LoadBalancerNotFound(_) => "LoadBalancerNotFound",
            TargetGroupNotFound(_) => "TargetGroupNotFound",
            ListenerNotFound(_) => "ListenerNotFound",
            DuplicateLoadBalancerName(_) => "DuplicateLoadBalancerName",
            DuplicateTargetGroupName(_) => "DuplicateTargetGroupName",
            DuplicateListener(_) => "DuplicateListener",
            ResourceInUse(_) => "ResourceInUse",
            InvalidConfigurationRequest(_) => "InvalidConfigurationRequest",
            InvalidTarget(_) => "InvalidTarget",
            IncompatibleProtocols(_) => "IncompatibleProtocols",
            UnsupportedProtocol(_) => "UnsupportedProtocol",
            InvalidLoadBalancerAction(_) => "InvalidLoadBalancerAction",
            InvalidScheme(_) => "InvalidScheme",
            TargetGroupAssociationLimit(_) => "TargetGroupAssociationLimit",
            OperationNotPermitted(_) => "OperationNotPermitted",
            TooManyTags(_) => "TooManyTags",
            RuleNotFound(_) => "RuleNotFound",
            PriorityInUse(_) => "PriorityInUse",
            TooManyRules(_) => "TooManyRules",
            TooManyActions(_) => "TooManyActions",
            InvalidAction(_) => "InvalidAction",
            Internal(_) => "InternalFailure",
        }
    }

    /// The message (`<Message>`).
    pub fn message(&self) -> &str {
        use ElbError::*;
        match self {
            Validation(m)
            | LoadBalancerNotFound(m)
            | TargetGroupNotFound(m)
            | ListenerNotFound(m)
            | DuplicateLoadBalancerName(m)
            | DuplicateTargetGroupName(m)
            | DuplicateListener(m)
            | ResourceInUse(m)
            | InvalidConfigurationRequest(m)
            | InvalidTarget(m)
            | IncompatibleProtocols(m)
            | UnsupportedProtocol(m)
            | InvalidLoadBalancerAction(m)
            | InvalidScheme(m)
            | TargetGroupAssociationLimit(m)
            | OperationNotPermitted(m)
            | TooManyTags(m)
            | RuleNotFound(m)
            | PriorityInUse(m)
            | TooManyRules(m)
            | TooManyActions(m)
            | InvalidAction(m)
            | Internal(m) => m,
        }
    }

    /// The HTTP status (the model's `httpStatusCode`; 500 for this host's failures).
    pub fn status(&self) -> u16 {
        match self {
            ElbError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// Whether the caller is at fault (`<Type>Sender</Type>`), else this host.
    pub fn sender_fault(&self) -> bool {
        !matches!(self, ElbError::Internal(_))
    }
}

impl From<crate::store::StoreError> for ElbError {
    fn from(e: crate::store::StoreError) -> Self {
        ElbError::Internal(crate::errors::error_chain(&e))
    }
}
