//! An in-memory transport: the nodes of one process reach each other's
//! peer handlers directly, so routing, forwarding, view changes and
//! hand-offs get unit tests without processes or sockets. Every request is
//! encoded and decoded as on a link (a request that would not survive the
//! wire does not survive here) and recorded for the test to read.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use prost::Message as _;

use super::link::{LinkError, PeerHandler, Request, Response, Transport, answer_of, request_label};
use crate::protocol::peer_pb::{PeerRequest, PeerResponse};

/// One request as the network carried it.
#[derive(Debug, Clone)]
pub struct Carried {
    pub from: String,
    pub to: String,
    pub request: Request,
}

#[derive(Default)]
struct State {
    handlers: HashMap<String, Arc<dyn PeerHandler>>,
    carried: Vec<Carried>,
    /// Nodes cut off from every other: nothing reaches them or leaves them.
    isolated: std::collections::HashSet<String>,
}

/// The nodes of one process, by address.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

impl MemoryNetwork {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves requests to `addr` with `handler`.
    pub fn serve(&self, addr: &str, handler: Arc<dyn PeerHandler>) {
        self.state().handlers.insert(addr.to_string(), handler);
    }

    /// Returns the transport of the node at `from`.
    pub fn transport(&self, from: &str) -> Arc<dyn Transport> {
        Arc::new(Endpoint {
            network: self.clone(),
            from: from.to_string(),
        })
    }

    /// Cuts the node at `addr` off from every other, both ways.
    pub fn isolate(&self, addr: &str) {
        self.state().isolated.insert(addr.to_string());
    }

    /// Joins an isolated node back.
    pub fn heal(&self, addr: &str) {
        self.state().isolated.remove(addr);
    }

    /// Returns (and forgets) what the network carried so far.
    pub fn take_carried(&self) -> Vec<Carried> {
        std::mem::take(&mut self.state().carried)
    }

    /// Returns the handler at `to`, recording the request, or why it cannot
    /// be reached.
    fn route(
        &self,
        from: &str,
        to: &str,
        request: &Request,
    ) -> Result<Arc<dyn PeerHandler>, LinkError> {
        let mut state = self.state();
        if state.isolated.contains(from) || state.isolated.contains(to) {
            return Err(LinkError::Unreachable(to.to_string(), "isolated".into()));
        }
        let handler = state
            .handlers
            .get(to)
            .cloned()
            .ok_or_else(|| LinkError::Unreachable(to.to_string(), "no node there".into()))?;
        state.carried.push(Carried {
            from: from.to_string(),
            to: to.to_string(),
            request: request.clone(),
        });
        Ok(handler)
    }
}

/// Returns `request` as the far end of a link would read it.
fn over_the_wire(request: Request) -> Result<Request, LinkError> {
    let bytes = PeerRequest {
        request: Some(request),
    }
    .encode_to_vec();
    PeerRequest::decode(bytes.as_slice())
        .map_err(|e| LinkError::Codec(e.to_string()))?
        .request
        .ok_or_else(|| LinkError::Codec("empty request".into()))
}

struct Endpoint {
    network: MemoryNetwork,
    from: String,
}

impl Transport for Endpoint {
    fn call(
        &self,
        addr: &str,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, LinkError>> + Send + 'static>> {
        let label = request_label(&request);
        let routed = self
            .network
            .route(&self.from, addr, &request)
            .and_then(|handler| Ok((handler, over_the_wire(request)?)));
        Box::pin(async move {
            let (handler, request) = routed?;
            let response = handler.handle(request).await;
            let bytes = PeerResponse {
                response: Some(response),
            }
            .encode_to_vec();
            let back = PeerResponse::decode(bytes.as_slice())
                .map_err(|e| LinkError::Codec(e.to_string()))?;
            answer_of(label, back.response)
        })
    }

    fn tell(&self, addr: &str, request: Request) {
        let Ok(handler) = self.network.route(&self.from, addr, &request) else {
            return;
        };
        if let Ok(request) = over_the_wire(request) {
            handler.tell(request);
        }
    }
}
