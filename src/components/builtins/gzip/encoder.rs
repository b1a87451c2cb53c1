//! A streaming compressor: bytes in, compressed bytes out as they are ready,
//! a sync flush when the source has nothing more for now (so a slow stream
//! reaches the client promptly), and the end of the stream on finish.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::negotiate::Coding;

/// brotli's window: 2^20 bytes, so one stream's state stays around a MiB or two.
const BROTLI_LGWIN: u32 = 20;

pub(crate) enum Encoder {
    Gzip(Box<GzEncoder<Vec<u8>>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    /// `level` is 0-9 (gzip's levels; brotli's quality of the same number).
    pub(crate) fn new(coding: Coding, level: u32) -> Encoder {
        match coding {
            Coding::Gzip => Encoder::Gzip(Box::new(GzEncoder::new(
                Vec::new(),
                Compression::new(level),
            ))),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                level,
                BROTLI_LGWIN,
            ))),
        }
    }

    /// Compress `data`; what is ready comes back (possibly nothing).
    pub(crate) fn write(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => e.write_all(data)?,
            Encoder::Br(e) => e.write_all(data)?,
        }
        Ok(self.take())
    }

    /// Everything written so far, compressed (a sync flush).
    pub(crate) fn flush(&mut self) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => e.flush()?,
            Encoder::Br(e) => e.flush()?,
        }
        Ok(self.take())
    }

    /// The rest of the stream, with its trailer.
    pub(crate) fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Encoder::Gzip(e) => (*e).finish()?,
            Encoder::Br(e) => e.into_inner(),
        }))
    }

    fn take(&mut self) -> Bytes {
        let out = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
        };
        Bytes::from(std::mem::take(out))
    }
}
