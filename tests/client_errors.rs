//! Errors of the command-line clients that say what to try: no node on the
//! port, a port of the other kind, TLS on one side only.

mod common;

use common::TestNode;

async fn chorus(args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(args)
        .env_remove("CHORUS_SERVER")
        .env_remove("CHORUS_TOKEN")
        .env_remove("CHORUS_PASSWORD")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn client<'a>(server: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "client",
        "--server",
        server,
        "--user",
        "u",
        "--password",
        "p",
    ];
    args.extend_from_slice(extra);
    args.push("conversations");
    args
}

#[tokio::test]
async fn client_errors_say_what_to_try() {
    let node = TestNode::start().await;
    let tcp = node.node.tcp_addr().to_string();
    let http = node.node.http_addr().to_string();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };

    let err = chorus(&client(&closed, &[])).await;
    assert!(err.contains("no node listens there"), "{err}");

    let err = chorus(&client(&http, &[])).await;
    assert!(
        err.contains("closed the connection without answering"),
        "{err}"
    );
    assert!(err.contains("TCP client port"), "{err}");

    let err = chorus(&client(&tcp, &["--transport", "ws"])).await;
    assert!(err.contains("is it the node's HTTP port"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["cluster", "init-ca", "--out"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(made.status.success());
    let ca_pem = ca.join("ca.pem").display().to_string();
    let err = chorus(&client(&tcp, &["--tls-ca", &ca_pem])).await;
    assert!(err.contains("TLS handshake with"), "{err}");
    assert!(err.contains("is TLS on at that port"), "{err}");

    let err = chorus(&["cluster", "status", "--http", &tcp, "--token", "t"]).await;
    assert!(err.contains("gave no HTTP answer"), "{err}");
    assert!(err.contains("is it the node's HTTP port"), "{err}");
}
