//! Cloud Map's errors, by the exception names of its API (botocore's
//! `servicediscovery` model): every one is the caller's (HTTP 400) but a store failure.

#[derive(Debug, thiserror::Error)]
pub enum SdError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NamespaceNotFound(String),
    #[error("{0}")]
    ServiceNotFound(String),
    #[error("{0}")]
    InstanceNotFound(String),
    #[error("{0}")]
    OperationNotFound(String),
    #[error("{0}")]
    CustomHealthNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{message}")]
    NamespaceAlreadyExists {
        message: String,
        namespace_id: String,
        creator_request_id: Option<String>,
    },
    #[error("{message}")]
    ServiceAlreadyExists {
        message: String,
        service_id: String,
        service_arn: String,
        creator_request_id: Option<String>,
    },
    #[error("{0}")]
    ResourceNotFoundException(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("failed to keep the Cloud Map resources in the store")]
    Store(#[from] crate::store::StoreError),
    /// The server's own failure (the cluster's rows in etcd, a stored row that does not
    /// decode).
    #[error("{0}")]
    Internal(String),
}

pub type SdResult<T> = Result<T, SdError>;

impl SdError {
    /// The exception name (`__type`).
    pub fn name(&self) -> &'static str {
        match self {
            SdError::InvalidInput(_) => "InvalidInput",
            SdError::NamespaceNotFound(_) => "NamespaceNotFound",
            SdError::ServiceNotFound(_) => "ServiceNotFound",
            SdError::InstanceNotFound(_) => "InstanceNotFound",
            SdError::OperationNotFound(_) => "OperationNotFound",
            SdError::CustomHealthNotFound(_) => "CustomHealthNotFound",
            SdError::ResourceInUse(_) => "ResourceInUse",
            SdError::NamespaceAlreadyExists { .. } => "NamespaceAlreadyExists",
            SdError::ServiceAlreadyExists { .. } => "ServiceAlreadyExists",
            SdError::ResourceNotFoundException(_) => "ResourceNotFoundException",
            SdError::UnknownOperation(_) => "UnknownOperationException",
            SdError::Store(_) | SdError::Internal(_) => "InternalFailure",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            SdError::Store(_) | SdError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// The error's body: `__type`, `Message` and the members the exception's shape has.
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            SdError::Store(e) => crate::errors::error_chain(e),
            other => other.to_string(),
        };
        let mut v = serde_json::json!({"__type": self.name(), "Message": message});
        match self {
            SdError::NamespaceAlreadyExists {
                namespace_id,
                creator_request_id,
                ..
            } => {
                v["NamespaceId"] = namespace_id.clone().into();
                if let Some(c) = creator_request_id {
                    v["CreatorRequestId"] = c.clone().into();
                }
            }
            SdError::ServiceAlreadyExists {
                service_id,
                service_arn,
                creator_request_id,
                ..
            } => {
                v["ServiceId"] = service_id.clone().into();
                v["ServiceArn"] = service_arn.clone().into();
                if let Some(c) = creator_request_id {
                    v["CreatorRequestId"] = c.clone().into();
                }
            }
            _ => {}
        }
        v
    }
}
