//! The client plane: TCP and WebSocket long connections, REST over HTTP,
//! TLS, per-IP limits and the client-facing metrics.

mod conn;
mod deadline;
pub mod http;
mod limiter;
pub mod metrics;
mod process_metrics;
mod stream;
pub mod tcp;
pub mod tls;
mod ws;

pub use limiter::ConnLimiter;
