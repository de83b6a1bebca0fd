//! The TLS stream against a rustls server on a plain thread with a blocking socket, which
//! writes its records the way each test needs them cut.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{RootCertStore, ServerConnection, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// A rustls server over a blocking socket, for one connection.
struct Peer {
    conn: ServerConnection,
    sock: std::net::TcpStream,
}

impl Peer {
    /// Reads until `n` bytes of plaintext have come.
    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        let mut stream = rustls::Stream::new(&mut self.conn, &mut self.sock);
        stream.read_exact(&mut got).unwrap();
        got
    }

    /// Queues `data` as two records and sends them in pieces of `piece` bytes, flushed one
    /// by one, so that the client's reads end inside records and between them.
    fn send_cut(&mut self, data: &[u8], piece: usize) {
        let (first, second) = data.split_at(data.len() / 3);
        self.conn.writer().write_all(first).unwrap();
        self.conn.writer().write_all(second).unwrap();
        let mut wire = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut wire).unwrap();
        }
        for part in wire.chunks(piece) {
            self.sock.write_all(part).unwrap();
            self.sock.flush().unwrap();
            // Each piece its own segment: the client reads between them.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn send(&mut self, data: &[u8]) {
        let mut stream = rustls::Stream::new(&mut self.conn, &mut self.sock);
        stream.write_all(data).unwrap();
        stream.flush().unwrap();
    }

    fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock).unwrap();
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Serves one connection with `serve`, speaking only `versions`; returns its address and
/// certificate, and what `serve` returns when it is done.
fn server<T: std::marker::Send + 'static>(
    versions: &[&'static SupportedProtocolVersion],
    serve: impl FnOnce(&mut Peer) -> T + std::marker::Send + 'static,
) -> (SocketAddr, CertificateDer<'static>, mpsc::Receiver<T>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut peer = Peer {
            conn: ServerConnection::new(Arc::new(config)).unwrap(),
            sock,
        };
        while peer.conn.is_handshaking() {
            peer.conn.complete_io(&mut peer.sock).unwrap();
        }
        let _ = done_tx.send(serve(&mut peer));
    });
    (address, cert.der().clone(), done)
}

/// Connects to `address` trusting `certificate`, within `WAIT`.
async fn try_client(
    address: SocketAddr,
    certificate: CertificateDer<'static>,
) -> io::Result<TlsStream> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connecting = connect(Arc::new(config), name, tcp);
    let connected = tokio::time::timeout(WAIT, connecting).await;
    connected.expect("the handshake ended in time")
}

async fn client(address: SocketAddr, certificate: CertificateDer<'static>) -> TlsStream {
    try_client(address, certificate).await.expect("a handshake")
}

/// Reads until `n` bytes have come, or the stream ends or fails.
async fn read_n(stream: &mut TlsStream, n: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut buf = [0; 1024];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        match read.expect("data or an end in time")? {
            0 => break,
            k => got.extend_from_slice(&buf[..k]),
        }
    }
    Ok(got)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

const BOTH: [&[&SupportedProtocolVersion]; 2] =
    [&[&rustls::version::TLS12], &[&rustls::version::TLS13]];

#[tokio::test]
async fn records_cut_anywhere_by_reads_arrive_whole_over_tls_1_2_and_1_3() {
    for versions in BOTH {
        for piece in [1, 7, 300] {
            let answer = pattern(300);
            let sent = answer.clone();
            let (address, certificate, done) = server(versions, move |peer| {
                let request = peer.read_exact(5);
                peer.send_cut(&sent, piece);
                request
            });
            let mut stream = client(address, certificate).await;
            stream.write_all(b"hello").await.unwrap();
            stream.flush().await.unwrap();
            assert_eq!(read_n(&mut stream, answer.len()).await.unwrap(), answer);
            assert_eq!(done.recv_timeout(WAIT).unwrap(), b"hello");
            // Between records, nothing is kept: the point of this stream.
            assert_eq!(
                stream.incoming.capacity(),
                0,
                "{versions:?}, pieces of {piece}"
            );
            assert_eq!(stream.plaintext.capacity(), 0);
            assert_eq!(stream.outgoing.capacity(), 0);
        }
    }
}

#[tokio::test]
async fn large_writes_and_full_records_go_both_ways() {
    for versions in BOTH {
        let request = pattern(100_000);
        let expected = request.clone();
        let answer = pattern(70_000);
        let sent = answer.clone();
        let (address, certificate, done) = server(versions, move |peer| {
            let got = peer.read_exact(expected.len());
            peer.send(&sent);
            got == expected
        });
        let mut stream = client(address, certificate).await;
        stream.write_all(&request).await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(read_n(&mut stream, answer.len()).await.unwrap(), answer);
        assert!(
            done.recv_timeout(WAIT).unwrap(),
            "the request arrived changed"
        );
    }
}

#[tokio::test]
async fn close_notify_ends_the_stream_and_a_bare_close_is_an_error() {
    for versions in BOTH {
        let (address, certificate, _done) = server(versions, |peer| {
            peer.send(b"last words");
            peer.send_close_notify();
        });
        let mut stream = client(address, certificate).await;
        assert_eq!(
            read_n(&mut stream, usize::MAX).await.unwrap(),
            b"last words"
        );

        let (address, certificate, _done) = server(versions, |peer| {
            peer.send(b"cut");
            peer.sock.shutdown(std::net::Shutdown::Both).unwrap();
        });
        let mut stream = client(address, certificate).await;
        let error = read_n(&mut stream, usize::MAX).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }
}

#[tokio::test]
async fn a_key_update_from_the_upstream_is_answered_and_reading_goes_on() {
    let (address, certificate, done) = server(&[&rustls::version::TLS13], |peer| {
        peer.send(b"before");
        // Asks the client to update its keys too; the answer comes with its next record.
        peer.conn.refresh_traffic_keys().unwrap();
        peer.send(b"after");
        peer.read_exact(4)
    });
    let mut stream = client(address, certificate).await;
    assert_eq!(read_n(&mut stream, 11).await.unwrap(), b"beforeafter");
    stream.write_all(b"more").await.unwrap();
    stream.flush().await.unwrap();
    assert_eq!(done.recv_timeout(WAIT).unwrap(), b"more");
}

#[tokio::test]
async fn shutdown_sends_close_notify() {
    let (address, certificate, done) = server(&[&rustls::version::TLS13], |peer| {
        let mut rest = Vec::new();
        let mut stream = rustls::Stream::new(&mut peer.conn, &mut peer.sock);
        // A clean end: Ok, where a close without close_notify is UnexpectedEof.
        stream
            .read_to_end(&mut rest)
            .map(|_| rest)
            .map_err(|e| e.kind())
    });
    let mut stream = client(address, certificate).await;
    stream.write_all(b"bye").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(done.recv_timeout(WAIT).unwrap(), Ok(b"bye".to_vec()));
}

#[tokio::test]
async fn a_handshake_cut_short_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        // The client's hello, read whole so that closing sends no reset.
        let mut header = [0; 5];
        sock.read_exact(&mut header).unwrap();
        let mut hello = vec![0; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        sock.read_exact(&mut hello).unwrap();
        // Half a record header, then the end.
        sock.write_all(b"\x16\x03").unwrap();
        sock.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = sock.read_to_end(&mut Vec::new());
    });
    let certificate = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]);
    let certificate = certificate.unwrap().cert.der().clone();
    let error = try_client(address, certificate)
        .await
        .err()
        .expect("no connection");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
}
