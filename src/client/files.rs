//! Files for the terminal client (docs/protocol.md section 7.1): a
//! resumable upload in chunks over the node's REST API, and a download in
//! ranges that goes on from what an earlier, cut download left on disk.
//! Memory held is one chunk either way.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::ClientOptions;
use super::status::{Body, StatusError, expect_ok, request, request_with};

/// Bytes asked per download request.
const DOWNLOAD_CHUNK: u64 = 4 * 1024 * 1024;
/// Times a chunk is sent again after a failure before the upload gives up.
const RETRIES: usize = 3;

/// The node's REST API, as one user.
pub struct Rest {
    pub options: ClientOptions,
    pub token: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StatusError + '_ {
    move |source| StatusError::Io {
        addr: path.display().to_string(),
        source,
    }
}

/// Returns the lowercase hex SHA-256 of a file, read a chunk at a time.
async fn hash_file(path: &Path) -> Result<String, StatusError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Rest {
    /// Uploads the file at `path` for `conversation`; returns the
    /// completed file (its `file_id` is what a message sends). A chunk
    /// that fails is sent again from where the node says the upload stands.
    pub async fn upload(
        &self,
        conversation: &str,
        path: &Path,
        progress: impl Fn(u64, u64),
    ) -> Result<Value, StatusError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| StatusError::Malformed(format!("{} names no file", path.display())))?;
        let size = tokio::fs::metadata(path).await.map_err(io(path))?.len();
        let sha256 = hash_file(path).await?;
        let body = json!({"conversation": conversation, "name": name, "size": size});
        let reply = request(
            &self.options,
            "POST",
            "/api/v1/uploads",
            Some(&self.token),
            Some(&body),
        )
        .await?;
        let upload = expect_ok("announcing the upload", reply)?;
        let id = upload["upload_id"]
            .as_str()
            .ok_or_else(|| StatusError::Malformed("an upload without an id".into()))?
            .to_string();
        let chunk = upload["max_chunk_bytes"]
            .as_u64()
            .unwrap_or(1 << 20)
            .min(4 << 20);
        let at_path = format!("/api/v1/uploads/{id}");
        let mut file = tokio::fs::File::open(path).await.map_err(io(path))?;
        let mut buf = vec![0u8; chunk as usize];
        let (mut offset, mut failures) = (0u64, 0usize);
        while offset < size {
            let len = chunk.min(size - offset) as usize;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(io(path))?;
            file.read_exact(&mut buf[..len]).await.map_err(io(path))?;
            let body = Body {
                content_type: Some("application/offset+octet-stream"),
                headers: &[("upload-offset", offset.to_string())],
                bytes: &buf[..len],
            };
            let sent = request_with(&self.options, "PATCH", &at_path, Some(&self.token), body)
                .await
                .and_then(|reply| expect_ok("sending a chunk", reply));
            match sent {
                Ok(status) => {
                    offset = status["offset"].as_u64().unwrap_or(offset + len as u64);
                    progress(offset, size);
                }
                // A refusal of the file (its type, its size) will not change.
                Err(
                    err @ StatusError::Http {
                        status: 400 | 403 | 413,
                        ..
                    },
                ) => return Err(err),
                Err(err) if failures < RETRIES => {
                    failures += 1;
                    tracing::debug!(error = %err, "chunk failed, asking where the upload stands");
                    let reply =
                        request(&self.options, "GET", &at_path, Some(&self.token), None).await?;
                    offset = expect_ok("reading the upload", reply)?["offset"]
                        .as_u64()
                        .unwrap_or(offset);
                }
                Err(err) => return Err(err),
            }
        }
        let body = json!({ "sha256": sha256 });
        let reply = request(
            &self.options,
            "POST",
            &format!("{at_path}/complete"),
            Some(&self.token),
            Some(&body),
        )
        .await?;
        expect_ok("completing the upload", reply)
    }

    /// Calls the REST API with a JSON body (or none); returns the answer's
    /// JSON (null for none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, StatusError> {
        let (status, bytes) = request(&self.options, method, path, Some(&self.token), body).await?;
        if status == 204 {
            return Ok(Value::Null);
        }
        expect_ok("the request", (status, bytes))
    }

    /// Downloads the file of message `seq` of `conversation` (or its
    /// thumbnail) into `out`, going on from the bytes `out` already holds;
    /// returns the file's size.
    pub async fn download(
        &self,
        conversation: &str,
        seq: u64,
        thumbnail: bool,
        out: &Path,
    ) -> Result<u64, StatusError> {
        let path = format!(
            "/api/v1/conversations/{conversation}/messages/{seq}/file{}",
            if thumbnail { "?thumbnail=true" } else { "" }
        );
        self.download_path(&path, out).await
    }

    /// Downloads the bytes `path` answers into `out`, in ranges, going on
    /// from the bytes `out` already holds; returns the file's size.
    pub async fn download_path(&self, path: &str, out: &Path) -> Result<u64, StatusError> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .await
            .map_err(io(out))?;
        let mut at = file.metadata().await.map_err(io(out))?.len();
        loop {
            let range = format!("bytes={at}-{}", at + DOWNLOAD_CHUNK - 1);
            let body = Body {
                content_type: None,
                headers: &[("range", range)],
                bytes: &[],
            };
            let (status, bytes) =
                request_with(&self.options, "GET", path, Some(&self.token), body).await?;
            match status {
                // Past the end: the file on disk is whole.
                416 => break,
                200 | 206 => {
                    if status == 200 && at > 0 {
                        // The node sent the whole file: start over.
                        file.set_len(0).await.map_err(io(out))?;
                        at = 0;
                    }
                    file.write_all(&bytes).await.map_err(io(out))?;
                    at += bytes.len() as u64;
                    if status == 200 || (bytes.len() as u64) < DOWNLOAD_CHUNK {
                        break;
                    }
                }
                _ => {
                    return Err(StatusError::Http {
                        what: "downloading the file",
                        status,
                        body: String::from_utf8_lossy(&bytes).into_owned(),
                    });
                }
            }
        }
        file.flush().await.map_err(io(out))?;
        file.sync_all().await.map_err(io(out))?;
        Ok(at)
    }
}
