//! The client plane: TCP and WebSocket long connections with a session
//! each, REST over HTTP, TLS, per-IP limits and the client-facing metrics.

mod conn;
mod deadline;
pub mod http;
mod limiter;
pub mod metrics;
mod process_metrics;
mod session;
mod stream;
pub mod tcp;
pub mod tls;
mod ws;

use std::sync::Arc;

pub use limiter::ConnLimiter;

use crate::admin::ClusterAdmin;
use crate::auth::Auth;
use crate::backup::Backups;
use crate::config::NodeConfig;
use crate::delivery::Delivery;
use crate::files::Files;
use crate::groups::Groups;
use crate::lists::Lists;
use crate::messaging::Messaging;
use crate::meta::Meta;
use crate::notices::Notices;
use crate::search::Search;

/// The handles of the planes that connections and REST handlers serve
/// through. It holds no state and has no behaviour of its own: each
/// request goes to the plane that owns it.
#[derive(Clone)]
pub struct Planes {
    pub config: Arc<NodeConfig>,
    pub meta: Meta,
    pub auth: Auth,
    pub delivery: Delivery,
    pub messaging: Messaging,
    pub groups: Groups,
    pub lists: Lists,
    pub notices: Notices,
    pub search: Search,
    pub files: Files,
    pub cluster: ClusterAdmin,
    pub backups: Backups,
    pub limiter: ConnLimiter,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}
