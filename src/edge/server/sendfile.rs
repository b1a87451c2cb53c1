//! Zero-copy bodies: a large page the cache serves from memory goes out with
//! `sendfile(2)` from its file instead of being copied from userspace.
//!
//! The cache answers such a hit with a file-backed body
//! ([`crate::core::body::file_backed`]: bytes known to be exactly an open
//! file's content). When a response leaves the pipeline, the server takes the
//! file out of its body ([`crate::core::Body::take_file`]) and registers bytes
//! and file with the connection's stream ([`Offers::offer`]). hyper owns the
//! connection and only ever writes bytes, so the stream ([`ConnStream`])
//! recognises the registered bytes when hyper writes them (the same memory,
//! within the same `Bytes`) and sends the same range of the file instead.
//! Anything it does not recognise (hyper flattening buffers, an offer already
//! dropped) is written from memory as usual, so the bytes on the wire are the
//! same either way: an offer can only save a copy, never change a response.
//! A filter that wraps the body in a stream of its own turns it into an
//! ordinary body, so nothing is registered for it at all.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crate::core::socket::Sock;
use bytes::Bytes;
use rustix::net::SendFlags;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::head_timeout::Activity;
use crate::core::metrics::METRICS;

/// Bodies smaller than this are written from memory: one copy of a few pages
/// costs less than the extra system call (a smaller body is never file-backed).
pub(crate) const MIN_BYTES: usize = crate::core::body::FILE_BACKED_MIN_BYTES;

/// Offers kept per connection. The server registers one just before handing
/// its response to hyper, which writes one response at a time, so more than
/// this means an earlier one was never recognised (hyper copied its bytes, or
/// the body was not sent); the oldest is dropped.
const MAX_OFFERS: usize = 2;

/// A body whose bytes are exactly `file`'s bytes from offset 0.
struct Offer {
    bytes: Bytes,
    file: File,
}

impl Offer {
    /// The file offset of `buf` if it lies within this offer's bytes.
    fn offset_of(&self, buf: &[u8]) -> Option<u64> {
        let start = self.bytes.as_ptr() as usize;
        let end = start + self.bytes.len();
        let at = buf.as_ptr() as usize;
        (at >= start && at + buf.len() <= end).then(|| (at - start) as u64)
    }
}

/// One connection's offers. Only the connection's own task touches them, so
/// the lock is never contended; it is taken only for buffers of `MIN_BYTES` or more.
#[derive(Clone, Default)]
pub(crate) struct Offers(Arc<Mutex<Vec<Offer>>>);

impl Offers {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Offer>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Let the connection send `bytes` from `file` when hyper writes them. The
    /// caller must know them to be exactly `file`'s content from offset 0 (a
    /// file-backed body's guarantee). Bodies under [`MIN_BYTES`] are ignored.
    pub(crate) fn offer(&self, bytes: Bytes, file: File) {
        if bytes.len() >= MIN_BYTES {
            self.push(Offer { bytes, file });
        }
    }

    fn push(&self, offer: Offer) {
        let mut list = self.list();
        if list.len() == MAX_OFFERS {
            list.remove(0);
        }
        list.push(offer);
    }

    /// Whether `buf` lies within an offer.
    fn holds(&self, buf: &[u8]) -> bool {
        buf.len() >= MIN_BYTES && self.list().iter().any(|o| o.offset_of(buf).is_some())
    }

    /// Send `buf` into `out` from the file of the offer holding it. `Ok(0)` when
    /// no offer holds it or the file came up short: the caller writes it from
    /// memory. An offer sent in full, or short, is dropped.
    fn send(&self, out: &Sock, buf: &[u8]) -> io::Result<usize> {
        let mut list = self.list();
        let Some((index, mut at)) = list
            .iter()
            .enumerate()
            .find_map(|(i, o)| o.offset_of(buf).map(|off| (i, off)))
        else {
            return Ok(0);
        };
        let n = rustix::fs::sendfile(out, &list[index].file, Some(&mut at), buf.len())?;
        METRICS.sent_from_file(n);
        if n == 0 || at as usize >= list[index].bytes.len() {
            list.remove(index);
        }
        Ok(n)
    }
}

/// A client connection (TCP or unix socket) that sends offered bytes with `sendfile`, and fails a
/// write that makes no progress for `send_timeout` (a client that stopped
/// reading), so hyper drops the connection.
pub(crate) struct ConnStream {
    tcp: Sock,
    offers: Offers,
    /// Told of every write that makes progress (see `head_timeout`).
    activity: Arc<Activity>,
    send_timeout: Duration,
    /// Armed only when a write returns `Pending`; disarmed by any progress.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl ConnStream {
    pub(crate) fn new(
        tcp: impl Into<Sock>,
        offers: Offers,
        activity: Arc<Activity>,
        send_timeout: Duration,
    ) -> ConnStream {
        ConnStream {
            tcp: tcp.into(),
            offers,
            activity,
            send_timeout,
            stall: None,
            stalled: false,
        }
    }

    /// Pass on `polled`; a `Pending` starts (or continues) the stall clock and
    /// becomes a `TimedOut` error once it has lasted `send_timeout`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        let deadline = Instant::now() + self.send_timeout;
        let timer = match &mut self.stall {
            Some(timer) => {
                if !self.stalled {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.stalled = true;
        if timer.as_mut().poll(cx).is_ready() {
            self.stalled = false;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no write progress for {:?} (send_timeout)",
                    self.send_timeout
                ),
            )));
        }
        Poll::Pending
    }
}

impl ConnStream {
    /// Run the non-blocking write `op` once the socket is writable.
    fn write_with(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&Sock) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(Interest::WRITABLE, || op(&self.tcp)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.write_vectored_now(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                this.activity.tick();
            }
        }
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then queues body buffers instead of copying them into its own,
        // which is what lets an offered body be recognised.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.tcp).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.tcp).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

impl ConnStream {
    /// One vectored write, offered buffers sent from their files.
    fn write_vectored_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self;
        // Write from memory up to the first offered buffer; send that one from its
        // file. Either way one system call, and hyper calls again for the rest.
        let Some(first_offered) = bufs.iter().position(|b| this.offers.holds(b)) else {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        };
        let mut before = bufs[..first_offered].iter().filter(|b| !b.is_empty());
        match (before.next(), before.next()) {
            (None, _) => {}
            // The head of a response whose body follows from a file: MSG_MORE lets
            // the kernel put both in the same segments instead of sending the
            // head in a packet of its own.
            (Some(head), None) => {
                return this
                    .write_with(cx, |tcp| Ok(rustix::net::send(tcp, head, SendFlags::MORE)?))
            }
            _ => return Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[..first_offered]),
        }
        let buf = &bufs[first_offered];
        match ready!(this.write_with(cx, |tcp| this.offers.send(tcp, buf))) {
            // No longer offered, or the file is shorter than its bytes in memory
            // (cut down in place): send the rest from memory.
            Ok(0) => Pin::new(&mut this.tcp).poll_write(cx, buf),
            sent => Poll::Ready(sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use tokio::net::TcpStream;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: our stream (writing) and the peer that reads.
    async fn pair(offers: &Offers) -> (ConnStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, (server, _)) =
            tokio::join!(client, async { listener.accept().await.unwrap() });
        (
            ConnStream::new(
                server,
                offers.clone(),
                Arc::default(),
                Duration::from_secs(60),
            ),
            client.unwrap(),
        )
    }

    fn file_with(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
    }

    /// Write `head` then `body` the way hyper does (one vectored call, then the
    /// rest) and return what the peer received.
    async fn send(offers: &Offers, head: &[u8], body: &Bytes) -> Vec<u8> {
        let (mut ours, mut peer) = pair(offers).await;
        let total = head.len() + body.len();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; total];
            peer.read_exact(&mut got).await.unwrap();
            got
        });
        let mut head = head;
        let mut body = &body[..];
        while !head.is_empty() || !body.is_empty() {
            let bufs = [IoSlice::new(head), IoSlice::new(body)];
            let n = std::future::poll_fn(|cx| Pin::new(&mut ours).poll_write_vectored(cx, &bufs))
                .await
                .unwrap();
            let from_head = n.min(head.len());
            head = &head[from_head..];
            body = &body[n - from_head..];
        }
        ours.flush().await.unwrap();
        reader.await.unwrap()
    }

    #[tokio::test]
    async fn a_write_stalled_past_send_timeout_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (_peer, (server, _)) = tokio::join!(client, async { listener.accept().await.unwrap() });
        let timeout = Duration::from_millis(200);
        let mut ours = ConnStream::new(server, Offers::default(), Arc::default(), timeout);
        // The peer never reads: the socket buffers fill, then writes stall.
        let chunk = vec![0u8; 1 << 16];
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = ours.write(&chunk).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never stalled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= timeout);
    }

    #[tokio::test]
    async fn offered_bytes_go_out_from_the_file() {
        // The file differs from the bytes in memory here (never in real use), so
        // what arrives shows where it came from.
        let memory = Bytes::from(pattern(300_000, 0));
        let on_disk = pattern(300_000, 0x5a);
        let offers = Offers::default();
        offers.push(Offer {
            bytes: memory.clone(),
            file: file_with(&on_disk),
        });
        let got = send(&offers, b"HEAD\r\n", &memory).await;
        assert_eq!(&got[..6], b"HEAD\r\n");
        assert!(got[6..] == on_disk[..], "the body came from memory");
        assert!(offers.list().is_empty(), "a sent offer is dropped");
    }

    #[tokio::test]
    async fn a_file_cut_short_is_finished_from_memory() {
        let memory = Bytes::from(pattern(300_000, 0));
        let offers = Offers::default();
        offers.push(Offer {
            bytes: memory.clone(),
            file: file_with(&memory[..100_000]),
        });
        assert!(send(&offers, b"", &memory).await == memory[..]);
    }

    #[tokio::test]
    async fn bytes_not_offered_are_written_from_memory() {
        let offered = Bytes::from(pattern(100_000, 0));
        let offers = Offers::default();
        offers.push(Offer {
            bytes: offered.clone(),
            file: file_with(&pattern(100_000, 0x5a)),
        });
        // Same content, other memory: not the offer.
        let copy = Bytes::from(offered.to_vec());
        assert!(send(&offers, b"x", &copy).await[1..] == copy[..]);
    }

    #[tokio::test]
    async fn small_offers_are_ignored() {
        let offers = Offers::default();
        offers.offer(Bytes::from(pattern(MIN_BYTES - 1, 0)), file_with(b"x"));
        assert!(offers.list().is_empty());
        offers.offer(Bytes::from(pattern(MIN_BYTES, 0)), file_with(b"x"));
        assert!(!offers.list().is_empty());
    }

    #[tokio::test]
    async fn a_file_backed_body_is_registered_and_sent_from_its_file() {
        // As the server does: take the file out of the body, offer it, then
        // write what the body yields.
        let memory = Bytes::from(pattern(300_000, 0));
        let on_disk = pattern(300_000, 0x5a);
        let mut body = crate::core::body::file_backed(memory.clone(), file_with(&on_disk));
        let offers = Offers::default();
        let (bytes, file) = body.take_file().expect("file-backed");
        offers.offer(bytes, file);
        let written = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        let got = send(&offers, b"HEAD\r\n", &written).await;
        assert!(got[6..] == on_disk[..], "the body came from memory");
        // A body wrapped as a stream of its own has no file to offer.
        let mut wrapped = crate::core::Body::new(crate::core::body::file_backed(
            memory.clone(),
            file_with(&on_disk),
        ));
        assert!(wrapped.take_file().is_none());
    }
}
