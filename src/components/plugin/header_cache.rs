//! Response headers a plugin sends on every answer (the same `Content-Type`,
//! the same `Cache-Control`), validated once per thread instead of once per
//! response: a header whose exact name and value bytes match one already
//! parsed on this thread is handed out as clones of that parse (for a standard
//! name a copy, for a value a reference count), so it crosses the ABI with no
//! re-validation and no allocation. Anything else is parsed as before and
//! remembered in place of the oldest entry.
//!
//! A hit is byte-for-byte what was validated, so the cache cannot let through
//! anything the parser would refuse; only headers small enough to be worth
//! keeping are remembered, and a thread holds at most [`SLOTS`] of them.

use std::cell::RefCell;

use http::{HeaderName, HeaderValue};

/// Headers remembered per thread.
const SLOTS: usize = 16;
/// Longest name plus value remembered (longer ones are parsed every time).
const MAX_BYTES: usize = 256;

struct Slot {
    /// The name as the plugin spelled it (`HeaderName` keeps it lower-cased).
    raw_name: Box<[u8]>,
    name: HeaderName,
    value: HeaderValue,
}

#[derive(Default)]
struct Cache {
    slots: Vec<Slot>,
    /// The slot the next miss replaces, once all are used.
    next: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

impl Cache {
    fn find(&self, name: &[u8], value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
        self.slots
            .iter()
            .find(|s| s.value.as_bytes() == value && *s.raw_name == *name)
            .map(|s| (s.name.clone(), s.value.clone()))
    }

    fn remember(&mut self, raw_name: &[u8], name: &HeaderName, value: &HeaderValue) {
        let slot = Slot {
            raw_name: raw_name.into(),
            name: name.clone(),
            value: value.clone(),
        };
        if self.slots.len() < SLOTS {
            self.slots.push(slot);
        } else {
            self.slots[self.next] = slot;
            self.next = (self.next + 1) % SLOTS;
        }
    }
}

/// The parsed header for `name: value`: from this thread's cache when the same
/// bytes were parsed before, else from `parse` (and then remembered if it
/// succeeded and is small).
pub(super) fn parsed<E>(
    name: &[u8],
    value: &[u8],
    parse: impl FnOnce() -> Result<(HeaderName, HeaderValue), E>,
) -> Result<(HeaderName, HeaderValue), E> {
    let small = name.len() + value.len() <= MAX_BYTES;
    if small {
        if let Ok(Some(hit)) = CACHE.try_with(|c| c.borrow().find(name, value)) {
            return Ok(hit);
        }
    }
    let (header_name, header_value) = parse()?;
    if small {
        let _ = CACHE.try_with(|c| {
            if let Ok(mut cache) = c.try_borrow_mut() {
                cache.remember(name, &header_name, &header_value);
            }
        });
    }
    Ok((header_name, header_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &[u8], value: &[u8]) -> Result<(HeaderName, HeaderValue), ()> {
        parsed(name, value, || {
            Ok((
                HeaderName::from_bytes(name).map_err(|_| ())?,
                HeaderValue::from_bytes(value).map_err(|_| ())?,
            ))
        })
    }

    #[test]
    fn a_hit_is_the_same_header_without_parsing_again() {
        let first = parse(b"X-Hit-Test", b"one").unwrap();
        let again = parsed(b"X-Hit-Test", b"one", || -> Result<_, ()> {
            panic!("parsed twice")
        })
        .unwrap();
        assert_eq!(first, again);
        assert_eq!(again.0.as_str(), "x-hit-test");
    }

    #[test]
    fn other_bytes_are_parsed_and_invalid_ones_never_remembered() {
        parse(b"X-Other", b"a").unwrap();
        // A different value, or a name spelled differently, is parsed afresh.
        let mut calls = 0;
        for (n, v) in [(&b"X-Other"[..], &b"b"[..]), (b"x-other", b"a")] {
            parsed(n, v, || -> Result<_, ()> {
                calls += 1;
                Ok((
                    HeaderName::from_bytes(n).unwrap(),
                    HeaderValue::from_bytes(v).unwrap(),
                ))
            })
            .unwrap();
        }
        assert_eq!(calls, 2);
        // A refused header stays refused: nothing was stored for it.
        assert!(parse(b"X-Bad", b"a\r\nb").is_err());
        assert!(parse(b"X-Bad", b"a\r\nb").is_err());
    }

    #[test]
    fn the_cache_stays_bounded() {
        for i in 0..SLOTS * 3 {
            parse(format!("x-n{i}").as_bytes(), b"v").unwrap();
        }
        let len = CACHE.with(|c| c.borrow().slots.len());
        assert_eq!(len, SLOTS);
        // The newest are kept.
        let last = format!("x-n{}", SLOTS * 3 - 1);
        let hit = CACHE.with(|c| c.borrow().find(last.as_bytes(), b"v"));
        assert!(hit.is_some());
    }
}
