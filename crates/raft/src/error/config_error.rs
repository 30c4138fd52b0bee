use thiserror::Error;

/// A [`crate::Config`] value is out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid raft config: {0}")]
pub struct ConfigError(pub String);
