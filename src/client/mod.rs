//! The Chorus client: a connection library (TCP or WebSocket, protobuf or
//! JSON, optional TLS) used by the terminal client, the tests and the
//! benchmarks, and the `chorus client` command itself.

mod account;
pub mod backup;
pub mod cli;
mod conn;
pub mod files;
pub mod status;

pub use conn::{ClientError, ClientOptions, Connection, Event, TlsClientConfig, Transport};
