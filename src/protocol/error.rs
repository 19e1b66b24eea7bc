use super::pb;

/// The closed set of protocol error codes, each mapped to one HTTP status and
/// one WebSocket close code.
pub use pb::ErrorCode;

impl ErrorCode {
    /// Returns the HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Invalid | ErrorCode::Unspecified => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::UnavailableRetry => 503,
            ErrorCode::Conflict => 409,
            ErrorCode::Internal => 500,
        }
    }

    /// Returns the WebSocket close code used when a connection ends with this code.
    pub fn ws_close_code(self) -> u16 {
        4000 + self.http_status() % 1000
    }

    /// Returns the name used in logs and metric labels.
    pub fn label(self) -> &'static str {
        self.as_str_name()
    }
}

/// An error that a request ends with, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Returns the frame that reports this error for `request_id`.
    pub fn to_frame(&self, request_id: u64) -> pb::ServerFrame {
        pb::ServerFrame {
            request_id,
            body: Some(pb::server_frame::Body::Error(pb::Error {
                code: self.code as i32,
                message: self.message.clone(),
            })),
        }
    }
}

/// Runs a blocking call (storage reads) off the async workers; a task that
/// fails is an INTERNAL error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProtocolError> + Send + 'static,
) -> Result<T, ProtocolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProtocolError::internal(format!("task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_one_to_one() {
        let codes = [
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Invalid,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::UnavailableRetry,
            ErrorCode::Conflict,
            ErrorCode::Internal,
        ];
        let mut http: Vec<u16> = codes.iter().map(|c| c.http_status()).collect();
        let mut ws: Vec<u16> = codes.iter().map(|c| c.ws_close_code()).collect();
        http.sort();
        http.dedup();
        ws.sort();
        ws.dedup();
        assert_eq!(http.len(), codes.len());
        assert_eq!(ws.len(), codes.len());
        assert_eq!(ErrorCode::Forbidden.ws_close_code(), 4403);
    }
}
