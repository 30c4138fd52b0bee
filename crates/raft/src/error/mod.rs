//! Errors, one type per file (openraft's layout).

mod admin_error;
mod config_error;
mod propose_error;
mod read_error;

pub use admin_error::AdminError;
pub use config_error::ConfigError;
pub use propose_error::ProposeError;
pub use read_error::ReadError;
