//! Certificates are verified: an `https://` homeserver on 127.0.0.1 whose certificate the
//! client does not trust is rejected before any request is sent (a transient transport error
//! that names the certificate and carries no token); the same server is accepted once its CA
//! is configured, and a certificate for another host name is rejected even then.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rcjobs_chat::ChatError;
use rcjobs_matrix::{Auth, MatrixBackend, MatrixClient, MatrixConfig, MatrixError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct TlsServer {
    url: url::Url,
    ca_pem: String,
    /// Requests that got past the handshake and were answered.
    served: Arc<AtomicUsize>,
}

/// A minimal HTTPS server answering the bot's `whoami` to anything, with a leaf
/// certificate for `names` signed by a CA generated here.
async fn tls_server(names: &[&str]) -> TlsServer {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rcjobs test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = r#"{"user_id":"@rcbot:tls.test"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer {
        url: url::Url::parse(&format!("https://127.0.0.1:{}/", addr.port())).unwrap(),
        ca_pem: ca.pem(),
        served,
    }
}

fn config(url: url::Url) -> MatrixConfig {
    MatrixConfig::new(url, Auth::Token("syt_tls_test_token".into()))
}

#[tokio::test]
async fn an_untrusted_certificate_is_rejected_before_any_request() {
    let server = tls_server(&["127.0.0.1"]).await;
    let client = MatrixClient::new(config(server.url.clone())).unwrap();
    let err = MatrixBackend::connect(client).await.unwrap_err();
    match &err {
        MatrixError::Transport { message, .. } => assert!(
            message.to_lowercase().contains("certificate"),
            "the error names the certificate problem: {message}"
        ),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(server.served.load(Ordering::SeqCst), 0, "no request served");
    assert!(!format!("{err} {err:?}").contains("syt_tls_test_token"));
    assert!(matches!(ChatError::from(err), ChatError::Transient { .. }));
}

#[tokio::test]
async fn a_configured_ca_is_trusted_and_the_host_name_is_checked() {
    let server = tls_server(&["127.0.0.1"]).await;
    let mut cfg = config(server.url.clone());
    cfg.extra_root_certs_pem = vec![server.ca_pem.clone().into_bytes()];
    let backend = MatrixBackend::connect(MatrixClient::new(cfg).unwrap())
        .await
        .unwrap();
    assert_eq!(backend.server_name(), "tls.test");
    assert_eq!(server.served.load(Ordering::SeqCst), 1);

    let other = tls_server(&["matrix.example.org"]).await;
    let mut cfg = config(other.url.clone());
    cfg.extra_root_certs_pem = vec![other.ca_pem.clone().into_bytes()];
    let err = MatrixBackend::connect(MatrixClient::new(cfg).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, MatrixError::Transport { .. }), "{err:?}");
    assert_eq!(other.served.load(Ordering::SeqCst), 0);
}
