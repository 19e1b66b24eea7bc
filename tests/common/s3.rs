//! A real S3 server for the tests of files kept in an object store: moto's
//! server (PyPI, installed by `scripts/setup.sh`'s `ensure_moto`), started
//! on port 0 in a process of its own and stopped when dropped. Also used by
//! cluster-tests/tests/files_s3.rs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Keys moto accepts (it checks the signature's form, not the secret).
pub const KEY_ID: &str = "chorus-test";
pub const SECRET: &str = "chorus-test-secret";

/// Runs the server until stdin closes, after printing its port.
const SERVER: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

fn python() -> String {
    std::env::var("CHORUS_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/chorus-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

impl S3Server {
    /// Starts the server and creates `buckets` in it.
    pub async fn start(buckets: &[&str]) -> S3Server {
        let mut child = Command::new(python())
            .args(["-c", SERVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} for moto's S3 server ({e}): run `source scripts/setup.sh && \
                     ensure_moto`, or set CHORUS_PYTHON",
                    python()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            panic!("moto's S3 server did not start (is moto[server] installed?): {line:?}")
        });
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for bucket in buckets {
            let status = http
                .put(format!("{}/{bucket}", server.endpoint))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "creating bucket {bucket}: {status}");
        }
        server
    }

    /// The names of the objects in `bucket` under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The `[files.s3]` section of a node on this server.
    pub fn config(&self, bucket: &str, prefix: &str) -> chorus::S3Config {
        chorus::S3Config {
            bucket: bucket.into(),
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            prefix: prefix.into(),
            allow_http: true,
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
