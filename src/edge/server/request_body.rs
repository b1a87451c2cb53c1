//! Request bodies are read in full before the request is dispatched, so no
//! plugin worker ever waits on a client's bytes. Up to `request_buffer_bytes`
//! stay in memory; the rest is spooled to an unlinked temporary file (writes on
//! blocking threads). A body larger than the buffer must average
//! `min_body_rate` bytes per second after its first [`MIN_RATE_GRACE`], or it
//! gets 408. The pipeline then gets a body that yields the memory, then the
//! file in [`FILE_CHUNK`]-byte reads on blocking threads, one read ahead
//! (`core::read_ahead`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::limit::{LimitedBody, Overflow};
use crate::core::config::server::MIN_RATE_GRACE;
use crate::core::config::ServerConfig;
use crate::core::read_ahead::{FileRange, ReadAhead};
use crate::core::{body, Body, BodyError};

/// Spooled bytes are written to the file in batches of about this size.
const SPOOL_BATCH: usize = 256 * 1024;
/// Reads of the spool file hand out chunks of this size.
const FILE_CHUNK: usize = 128 * 1024;

/// Why a request body was refused before dispatch.
#[derive(Debug, thiserror::Error)]
pub(super) enum RefusedBody {
    #[error("request body too slow: {received} bytes in {elapsed:?}, under min_body_rate ({rate} bytes/s)")]
    TooSlow {
        received: u64,
        elapsed: Duration,
        rate: u64,
    },
    #[error("request body failed: {source}")]
    Client {
        status: StatusCode,
        source: BodyError,
    },
    #[error("cannot spool the request body to a temporary file: {0}")]
    Spool(#[from] io::Error),
}

impl RefusedBody {
    /// The status to answer with.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            RefusedBody::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            RefusedBody::Client { status, .. } => *status,
            RefusedBody::Spool(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Read all of `limited` (whose failures `overflow` classifies) before the
/// request goes to the pipeline. `declared` is its Content-Length, if any.
pub(super) async fn read(
    mut limited: LimitedBody,
    overflow: &Overflow,
    declared: Option<u64>,
    cfg: &ServerConfig,
) -> Result<Body, RefusedBody> {
    let started = Instant::now();
    let buffer = cfg.request_buffer_bytes;
    let rate = cfg.min_body_rate;
    let mut memory = VecDeque::new();
    let mut in_memory = 0u64;
    let mut spool = Spool::default();
    let mut total = 0u64;
    loop {
        let large = declared.is_some_and(|n| n > buffer) || total > buffer;
        let frame = if large && rate > 0 {
            // When the bytes so far stop being enough for the rate.
            let allowed = Duration::from_secs_f64(total as f64 / rate as f64);
            let deadline = started + allowed.max(MIN_RATE_GRACE);
            match tokio::time::timeout_at(deadline, limited.frame()).await {
                Ok(frame) => frame,
                Err(_) => {
                    return Err(RefusedBody::TooSlow {
                        received: total,
                        elapsed: started.elapsed(),
                        rate,
                    })
                }
            }
        } else {
            limited.frame().await
        };
        let data = match frame {
            None => break,
            Some(Err(source)) => {
                let status = overflow.status().unwrap_or(StatusCode::BAD_REQUEST);
                return Err(RefusedBody::Client { status, source });
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        total += data.len() as u64;
        let room = buffer.saturating_sub(in_memory) as usize;
        if data.len() <= room {
            in_memory += data.len() as u64;
            memory.push_back(data);
        } else {
            let mut data = data;
            if room > 0 {
                in_memory += room as u64;
                memory.push_back(data.split_to(room));
            }
            spool.push(data).await?;
        }
    }
    let file = spool.finish().await?;
    if total == 0 {
        return Ok(body::empty());
    }
    let file = file.map(|(file, len)| FileRange::new(file, 0, len, FILE_CHUNK));
    // The reads run on the runtime's blocking threads: the body may be polled
    // from a plugin worker thread.
    let rt = tokio::runtime::Handle::current();
    Ok(Body::new(ReadAhead::new(memory, file, Some(total), rt)))
}

/// The part of a body beyond the memory buffer, on its way to a file.
#[derive(Default)]
struct Spool {
    file: Option<File>,
    /// Bytes not yet written.
    batch: Vec<Bytes>,
    batched: usize,
    /// Bytes written.
    len: u64,
}

impl Spool {
    async fn push(&mut self, data: Bytes) -> io::Result<()> {
        self.batched += data.len();
        self.batch.push(data);
        if self.batched >= SPOOL_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Write the batch on a blocking thread (creating the file the first time).
    async fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let file = self.file.take();
        let file = tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(f) => f,
                None => tempfile::tempfile()?,
            };
            for data in &batch {
                file.write_all(data)?;
            }
            Ok::<_, io::Error>(file)
        })
        .await
        .map_err(io::Error::other)??;
        self.file = Some(file);
        self.len += self.batched as u64;
        self.batched = 0;
        Ok(())
    }

    /// Write what is left; the file and its length, if anything was spooled.
    async fn finish(mut self) -> io::Result<Option<(Arc<File>, u64)>> {
        self.flush().await?;
        Ok(self.file.map(|f| (Arc::new(f), self.len)))
    }
}
