//! TLS on both client transports, with a certificate generated in the test.

mod common;

use chorus::TlsConfig;
use chorus::client::{ClientOptions, Connection, TlsClientConfig, Transport};
use chorus::pb::DeviceClass;
use common::*;
use rustls_pki_types::CertificateDer;

#[tokio::test]
async fn both_transports_serve_tls_and_refuse_plaintext() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = TlsConfig {
        cert_path: cert_path.clone(),
        key_path,
    };
    let node = TestNode::start_with(|config| config.tls = Some(tls)).await;
    // User creation goes through REST, which is TLS-only now: use the node directly.
    let ids = chorus::testsuite::create_user(&node.node, "alice", &password("alice")).await;
    chorus::testsuite::create_user(&node.node, "bob", &password("bob")).await;

    let trust = TlsClientConfig {
        ca_certs: vec![CertificateDer::from(cert.cert.der().to_vec())],
        server_name: "localhost".to_string(),
    };
    let mut seen = Vec::new();
    for transport in [Transport::Tcp, Transport::WsBinary, Transport::WsJson] {
        let mut options = ClientOptions::new(node.addr(transport), transport);
        options.tls = Some(trust.clone());
        let conn = Connection::connect(&options).await.unwrap();
        let class = match transport {
            Transport::Tcp => DeviceClass::Pc,
            Transport::WsBinary => DeviceClass::Mobile,
            Transport::WsJson => DeviceClass::Web,
        };
        let session = conn
            .login("alice", &password("alice"), class)
            .await
            .unwrap();
        assert_eq!(session.user_id, ids);
        let conv = conn.lookup("bob").await.unwrap().direct_conversation;
        let ack = conn
            .send_text(&conv, &format!("{transport:?}"), "over tls")
            .await
            .unwrap();
        seen.push(ack.seq);
    }
    assert_eq!(seen, vec![1, 2, 3]);

    // A plaintext client gets nowhere on either port.
    let plain = Connection::connect(&ClientOptions::new(
        node.addr(Transport::Tcp),
        Transport::Tcp,
    ))
    .await
    .unwrap();
    assert!(plain.ping().await.is_err());
    assert!(
        Connection::connect(&ClientOptions::new(
            node.addr(Transport::WsBinary),
            Transport::WsBinary
        ))
        .await
        .is_err()
    );
    // A client that does not trust the certificate fails the handshake.
    let mut untrusted = ClientOptions::new(node.addr(Transport::Tcp), Transport::Tcp);
    untrusted.tls = Some(TlsClientConfig {
        ca_certs: vec![],
        server_name: "localhost".to_string(),
    });
    assert!(Connection::connect(&untrusted).await.is_err());
}
