//! The Redis side of the bus (redis-rs, synchronous: each of the bus's two
//! threads owns one connection): `XADD` with approximate trimming, `XREAD`
//! after a position, and the stream's state for the trimming check.

use std::collections::HashMap;
use std::time::Duration;

use redis::streams::{StreamMaxlen, StreamReadOptions, StreamReadReply};
use redis::{Commands, RedisResult, Value};

use super::message::Message;
use super::position::EntryId;

/// How long connecting may take before Redis counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One connection to the bus's Redis, reopened when it fails.
pub(super) struct Link {
    client: redis::Client,
    conn: Option<redis::Connection>,
    stream: String,
}

/// What the trimming check needs to know about the stream.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct StreamState {
    pub exists: bool,
    /// The newest ID the stream ever gave out.
    pub last: EntryId,
    /// The newest ID trimming removed (`0-0`: none), where Redis (7 and
    /// later) says (7.0 leaves it at `0-0` for `MAXLEN ~` trimming).
    pub max_deleted: Option<EntryId>,
    /// The oldest entry still kept.
    pub first: Option<EntryId>,
    /// Entries kept now, and ever added (Redis 7 and later).
    pub length: u64,
    pub entries_added: Option<u64>,
}

impl Link {
    pub(super) fn new(client: redis::Client, stream: &str) -> Link {
        Link {
            client,
            conn: None,
            stream: stream.to_owned(),
        }
    }

    fn conn(&mut self, read_timeout: Duration) -> RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            self.conn = Some(c);
        }
        let c = self.conn.as_mut().expect("just connected");
        c.set_read_timeout(Some(read_timeout))?;
        c.set_write_timeout(Some(read_timeout))?;
        Ok(c)
    }

    /// Run `f` on the connection; a failure drops it (the next call reconnects).
    fn with<T>(
        &mut self,
        read_timeout: Duration,
        f: impl FnOnce(&mut redis::Connection, &str) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let stream = self.stream.clone();
        let r = self.conn(read_timeout).and_then(|c| f(c, &stream));
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Append `m`, trimming the stream to about `max` entries.
    pub(super) fn publish(&mut self, m: &Message, max: usize) -> RedisResult<EntryId> {
        let id: String = self.with(Duration::from_secs(2), |c, s| {
            c.xadd_maxlen(s, StreamMaxlen::Approx(max), "*", &m.fields())
        })?;
        Ok(EntryId::parse(&id).unwrap_or_default())
    }

    /// The entries after `after` (at most `count`), waiting up to `block` for one.
    pub(super) fn read(
        &mut self,
        after: EntryId,
        block: Option<Duration>,
        count: usize,
    ) -> RedisResult<Vec<(EntryId, Option<Message>)>> {
        let timeout = block.unwrap_or_default() + Duration::from_secs(3);
        let reply: Option<StreamReadReply> = self.with(timeout, |c, s| {
            let mut opts = StreamReadOptions::default().count(count);
            if let Some(b) = block {
                opts = opts.block(b.as_millis() as usize);
            }
            c.xread_options(&[s], &[after.to_string()], &opts)
        })?;
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(id) = EntryId::parse(&entry.id) {
                    out.push((id, Message::parse(&entry.map)));
                }
            }
        }
        Ok(out)
    }

    /// Whether the entry `id` is still in the stream.
    pub(super) fn has(&mut self, id: EntryId) -> RedisResult<bool> {
        let found: Value = self.with(Duration::from_secs(2), |c, s| {
            redis::cmd("XRANGE")
                .arg(s)
                .arg(id.to_string())
                .arg(id.to_string())
                .query(c)
        })?;
        Ok(matches!(found, Value::Array(ref a) if !a.is_empty()))
    }

    /// The stream's state (`exists: false` when there is no such key yet).
    pub(super) fn state(&mut self) -> RedisResult<StreamState> {
        let info: RedisResult<HashMap<String, Value>> = self
            .with(Duration::from_secs(2), |c, s| {
                redis::cmd("XINFO").arg("STREAM").arg(s).query(c)
            });
        let info = match info {
            Ok(i) => i,
            Err(e) if e.to_string().to_ascii_lowercase().contains("no such key") => {
                // The connection is fine: only the key is missing.
                return Ok(StreamState::default());
            }
            Err(e) => return Err(e),
        };
        let id = |k: &str| match info.get(k) {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(EntryId::parse),
            Some(Value::SimpleString(s)) => EntryId::parse(s),
            _ => None,
        };
        let first = match info.get("first-entry") {
            Some(Value::Array(parts)) => match parts.first() {
                Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(EntryId::parse),
                _ => None,
            },
            _ => None,
        };
        let int = |k: &str| match info.get(k) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        Ok(StreamState {
            exists: true,
            last: id("last-generated-id").unwrap_or_default(),
            max_deleted: id("max-deleted-entry-id"),
            first,
            length: int("length").unwrap_or_default(),
            entries_added: int("entries-added"),
        })
    }
}

impl StreamState {
    /// Whether entries after `pos` were trimmed away before this node read
    /// them. `kept`: the entry at `pos` itself is still in the stream (then
    /// nothing newer was trimmed: trimming removes the oldest first).
    pub(super) fn missed_after(&self, pos: EntryId, kept: bool) -> bool {
        if !self.exists {
            // No stream: lost (Redis lost its data) if this node had seen one.
            return !pos.is_start();
        }
        if self.max_deleted.is_some_and(|d| d > pos) {
            return true;
        }
        if pos.is_start() {
            // Nothing seen yet: anything ever trimmed was missed.
            return self.entries_added.is_some_and(|n| n > self.length);
        }
        if kept {
            return false;
        }
        // The position's own entry is gone: newer ones may be too.
        match self.first {
            Some(first) => first > pos,
            None => self.last > pos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    #[test]
    fn a_gap_is_entries_trimmed_after_the_position() {
        let s = StreamState {
            exists: true,
            last: id(50),
            max_deleted: Some(EntryId::default()),
            first: Some(id(21)),
            length: 30,
            entries_added: Some(50),
        };
        // The position's entry was trimmed, and entries after it may be.
        assert!(s.missed_after(id(10), false));
        // Still there: nothing newer was trimmed.
        assert!(!s.missed_after(id(30), true));
        // Redis 7 saying what it deleted.
        let told = StreamState {
            max_deleted: Some(id(25)),
            ..s
        };
        assert!(told.missed_after(id(22), true));
        // A node that saw nothing: anything trimmed was missed.
        assert!(s.missed_after(EntryId::default(), false));
        let untrimmed = StreamState {
            entries_added: Some(30),
            ..s
        };
        assert!(!untrimmed.missed_after(EntryId::default(), false));
        // The stream lost entirely.
        assert!(StreamState::default().missed_after(id(10), false));
        assert!(!StreamState::default().missed_after(EntryId::default(), false));
    }
}
