//! TLS over an upstream socket through rustls's unbuffered API, which leaves every buffer to
//! the caller.
//!
//! Why not rustls's `ClientConnection` (through tokio-rustls, as before): once it has read, it
//! keeps a 4 KiB zero-filled read buffer for the rest of the connection's life, a quarter of
//! what an idle held stream cost over https (BENCHMARKS.md, run H1: 17.3 KiB against 7.6 over
//! http). Here each read lands in a buffer on the stack and its records are decrypted from
//! there; only a record cut by the end of a read is kept on the heap, until its rest comes.
//! Between events a connection keeps no read or write buffer.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use rustls::ClientConfig;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Room for one read from the socket: a TLS record at its largest (rustls's `MAX_WIRE_SIZE`),
/// so that one read can always complete the record it starts.
const READ_ROOM: usize = 16 * 1024 + 2048 + 5;

/// Plaintext taken per write: one full record. The caller's writes loop over larger ones,
/// and the records waiting to go out stay that small.
const WRITE_MAX: usize = 16 * 1024;

pub struct TlsStream {
    tcp: TcpStream,
    conn: UnbufferedClientConnection,
    /// Ciphertext read but not yet decrypted: a record (or handshake message) whose rest has
    /// not come. Empty, and unallocated, between records.
    incoming: Vec<u8>,
    /// Records to send, and how much of them the socket has taken.
    outgoing: Vec<u8>,
    sent: usize,
    /// Decrypted but not yet read: what did not fit in the reader's buffer.
    plaintext: BytesMut,
    /// The upstream sent `close_notify`: after `plaintext`, the end of the stream.
    peer_closed: bool,
    /// This side's `close_notify` is queued: nothing more may be written.
    closing: bool,
}

/// What to encrypt once application data may be sent.
#[derive(Clone, Copy)]
enum ToSend<'d> {
    Data(&'d [u8]),
    CloseNotify,
}

/// Where the connection stands once the records at hand are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The handshake waits for the upstream's next flight.
    Handshaking,
    /// Application data may be sent; whatever comes is read as it comes.
    Traffic,
    /// Both sides have sent `close_notify`.
    Closed,
}

/// Connects over `tcp`: the handshake, within whatever timeout the caller awaits it with.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> io::Result<TlsStream> {
    let conn = UnbufferedClientConnection::new(config, name).map_err(invalid_data)?;
    let mut stream = TlsStream {
        tcp,
        conn,
        incoming: Vec::new(),
        outgoing: Vec::new(),
        sent: 0,
        plaintext: BytesMut::new(),
        peer_closed: false,
        closing: false,
    };
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

impl TlsStream {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut next = self.process_kept(None, None)?;
        loop {
            ready!(self.poll_send(cx))?;
            next = match next {
                Next::Traffic => return Poll::Ready(Ok(())),
                Next::Closed => return Poll::Ready(Err(handshake_eof())),
                Next::Handshaking => match ready!(self.poll_read_records(cx, None))? {
                    Next::Closed => return Poll::Ready(Err(handshake_eof())),
                    next => next,
                },
            };
        }
    }

    /// Reads once from the socket and processes what came, with any record kept from before;
    /// decrypted data goes to `out` as far as it has room, the rest to `plaintext`.
    fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        out: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<Next>> {
        let mut room = [const { MaybeUninit::<u8>::uninit() }; READ_ROOM];
        let mut read = ReadBuf::uninit(&mut room);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
        let fresh = read.filled_mut();
        if fresh.is_empty() {
            return Poll::Ready(if self.peer_closed && self.incoming.is_empty() {
                Ok(Next::Closed)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection without sending TLS close_notify",
                ))
            });
        }
        if !self.incoming.is_empty() {
            self.incoming.extend_from_slice(fresh);
            return Poll::Ready(self.process_kept(out, None));
        }
        // The usual case: the read holds whole records, decrypted straight from the stack.
        let mut records = Records::of(self);
        let (next, done) = records.run(fresh, out, None)?;
        if done < fresh.len() {
            self.incoming.extend_from_slice(&fresh[done..]);
        }
        Poll::Ready(Ok(next))
    }

    /// Processes the records kept in `incoming`, then encrypts `send` once it may be sent.
    fn process_kept(
        &mut self,
        out: Option<&mut ReadBuf<'_>>,
        send: Option<ToSend<'_>>,
    ) -> io::Result<Next> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let (next, done) = Records::of(self).run(&mut incoming, out, send)?;
        if done < incoming.len() {
            incoming.drain(..done);
            self.incoming = incoming;
        }
        Ok(next)
    }

    /// Sends the records waiting in `outgoing`; ready once the socket has taken them all.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        // Released, not kept: a held stream writes once, its request, and then only reads.
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Moves decrypted data kept from before into `out`.
    fn take_plaintext(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.plaintext.len().min(out.remaining());
        out.put_slice(&self.plaintext[..n]);
        self.plaintext.advance(n);
        if self.plaintext.is_empty() {
            self.plaintext = BytesMut::new();
        }
    }
}

/// The parts of a [`TlsStream`] that processing records touches, borrowed apart from the
/// buffer the records are in.
struct Records<'s> {
    conn: &'s mut UnbufferedClientConnection,
    outgoing: &'s mut Vec<u8>,
    plaintext: &'s mut BytesMut,
    peer_closed: &'s mut bool,
}

impl<'s> Records<'s> {
    fn of(stream: &'s mut TlsStream) -> Self {
        Records {
            conn: &mut stream.conn,
            outgoing: &mut stream.outgoing,
            plaintext: &mut stream.plaintext,
            peer_closed: &mut stream.peer_closed,
        }
    }

    /// Processes the records in `input` until the connection waits for the upstream or may
    /// send, then encrypts `send` into `outgoing` if given and allowed. Returns where the
    /// connection stands and how many bytes of `input` are done with; the rest is the start
    /// of a record still to come.
    fn run(
        &mut self,
        input: &mut [u8],
        mut out: Option<&mut ReadBuf<'_>>,
        send: Option<ToSend<'_>>,
    ) -> io::Result<(Next, usize)> {
        let mut done = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut input[done..]);
            let next = match state.map_err(invalid_data)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid_data)?;
                        discard += record.discard;
                        let mut payload = record.payload;
                        if let Some(out) = out.as_deref_mut() {
                            let n = payload.len().min(out.remaining());
                            out.put_slice(&payload[..n]);
                            payload = &payload[n..];
                        }
                        self.plaintext.extend_from_slice(payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let too_small = |e: &EncodeError| match e {
                        EncodeError::InsufficientSize(size) => Some(*size),
                        _ => None,
                    };
                    append(self.outgoing, 0, |buf| encode.encode(buf), too_small)?;
                    None
                }
                // The records are in `outgoing`, which the stream sends before it does
                // anything else on the socket: as good as sent.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Next::Handshaking),
                ConnectionState::WriteTraffic(mut traffic) => {
                    match send {
                        Some(ToSend::Data(data)) => {
                            // Room for the records' headers and tags besides the data.
                            let guess = data.len() + 64 * (data.len() / WRITE_MAX + 1);
                            let encrypt = |buf: &mut [u8]| traffic.encrypt(data, buf);
                            append(self.outgoing, guess, encrypt, too_small_to_encrypt)?;
                        }
                        Some(ToSend::CloseNotify) => {
                            let close = |buf: &mut [u8]| traffic.queue_close_notify(buf);
                            append(self.outgoing, 64, close, too_small_to_encrypt)?;
                        }
                        None => {}
                    }
                    Some(Next::Traffic)
                }
                ConnectionState::PeerClosed => {
                    *self.peer_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    *self.peer_closed = true;
                    Some(Next::Closed)
                }
                // Early data is a server's state; anything else is newer than this code.
                _ => return Err(invalid_data("unexpected TLS connection state")),
            };
            done += discard;
            if let Some(next) = next {
                return Ok((next, done));
            }
        }
    }
}

/// Appends to `outgoing` what `write` puts in a buffer, making the room it asks for if the
/// `guess` was short.
fn append<E: std::error::Error + Send + Sync + 'static>(
    outgoing: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    too_small: impl Fn(&E) -> Option<InsufficientSizeError>,
) -> io::Result<()> {
    let start = outgoing.len();
    outgoing.resize(start + guess, 0);
    let written = match write(&mut outgoing[start..]) {
        Ok(n) => n,
        Err(e) => {
            let Some(InsufficientSizeError { required_size }) = too_small(&e) else {
                outgoing.truncate(start);
                return Err(invalid_data(e));
            };
            outgoing.resize(start + required_size, 0);
            write(&mut outgoing[start..]).map_err(invalid_data)?
        }
    };
    outgoing.truncate(start + written);
    Ok(())
}

fn too_small_to_encrypt(e: &EncryptError) -> Option<InsufficientSizeError> {
    match e {
        EncryptError::InsufficientSize(size) => Some(*size),
        _ => None,
    }
}

fn invalid_data(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn handshake_eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof")
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.plaintext.is_empty() {
                this.take_plaintext(out);
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // Records the connection owes the upstream (a key update's answer) go first.
            ready!(this.poll_send(cx))?;
            let before = out.filled().len();
            let next = ready!(this.poll_read_records(cx, Some(&mut *out)))?;
            if out.filled().len() > before || next == Next::Closed {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        let data = &data[..data.len().min(WRITE_MAX)];
        if this.closing || this.process_kept(None, Some(ToSend::Data(data)))? != Next::Traffic {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Taken: what the socket does not take now, `poll_flush` (or the next write) sends.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            ready!(this.poll_send(cx))?;
            this.process_kept(None, Some(ToSend::CloseNotify))?;
            this.closing = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
