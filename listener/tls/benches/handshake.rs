//! Full TLS handshakes over loopback against `TlsProvider::acceptor()`, next to a plaintext
//! connection doing the same one-line round trip.
//!
//! `cargo bench -p postern-tls --bench handshake`
//!
//! Each iteration: TCP connect, (TLS handshake,) send one line, read the echo, close.
//! Client and server run on one current-thread Tokio runtime, so a figure is the CPU cost of
//! both ends together. Session resumption is disabled on the client: every handshake is a
//! full one.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use postern_tls::{TlsMetrics, TlsProvider};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

fn main() {
    divan::main();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a provider on files holding `pem` and a TLS echo server; returns its address.
fn tls_server(rt: &Runtime, pem: &common::Pem, dir: &tempfile::TempDir) -> SocketAddr {
    std::fs::write(dir.path().join("tls.crt"), &pem.cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pem.key).unwrap();
    let config = common::listener(
        Some(common::file(dir.path().join("tls.crt"))),
        Some(common::file(dir.path().join("tls.key"))),
    );
    rt.block_on(async {
        let provider = TlsProvider::start_with(&config, TlsMetrics::default(), common::options())
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = provider.acceptor();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        echo_one(&mut tls).await;
                    }
                });
            }
        });
        addr
    })
}

fn plain_server(rt: &Runtime) -> SocketAddr {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move { echo_one(&mut tcp).await });
            }
        });
        addr
    })
}

async fn echo_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 64];
    if let Ok(n) = stream.read(&mut buf).await
        && n > 0
    {
        let _ = stream.write_all(&buf[..n]).await;
        let _ = stream.shutdown().await;
    }
}

fn connector() -> TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(postern_tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(common::any_certificate())
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

async fn round_trip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S) {
    stream.write_all(b"NOOP\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"NOOP\r\n");
}

fn bench_tls(bencher: Bencher, pem: &common::Pem) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let addr = tls_server(&rt, pem, &dir);
    let connector = connector();
    let name = ServerName::try_from("mx.test.example").unwrap();
    bencher.counter(ItemsCount::new(1u32)).bench_local(|| {
        rt.block_on(async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
            round_trip(&mut tls).await;
        })
    });
}

/// A full TLS 1.3 handshake with an ECDSA P-256 certificate.
#[divan::bench]
fn tls_handshake_ecdsa_p256(bencher: Bencher) {
    bench_tls(bencher, &common::ecdsa_pkcs8("mx.test.example"));
}

/// A full TLS 1.3 handshake with an RSA-2048 certificate.
#[divan::bench]
fn tls_handshake_rsa_2048(bencher: Bencher) {
    bench_tls(bencher, &common::rsa("mx.test.example", false));
}

/// The same connection and round trip without TLS: the baseline.
#[divan::bench]
fn plaintext_connection(bencher: Bencher) {
    let rt = runtime();
    let addr = plain_server(&rt);
    bencher.counter(ItemsCount::new(1u32)).bench_local(|| {
        rt.block_on(async {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            round_trip(&mut tcp).await;
        })
    });
}
