//! An ordered string map (Paste Deploy hands configs out in file order).

/// Keys and values in insertion order; keys are unique.
pub(super) type Conf = Vec<(String, String)>;

/// Insert or replace.
pub(super) fn set(conf: &mut Conf, key: &str, value: String) {
    match conf.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => conf.push((key.to_owned(), value)),
    }
}

/// Look up a key.
pub(super) fn get<'a>(conf: &'a Conf, key: &str) -> Option<&'a str> {
    conf.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `base` with every key of `over` laid on top (over wins).
pub(super) fn overlay(base: &Conf, over: &Conf) -> Conf {
    let mut out = base.clone();
    for (k, v) in over {
        set(&mut out, k, v.clone());
    }
    out
}
