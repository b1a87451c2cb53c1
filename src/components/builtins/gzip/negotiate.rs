//! Which coding a request accepts: `Accept-Encoding` with q-values (RFC 9110
//! 12.5.3), `*` for codings not named, `x-gzip` as `gzip`; ties go to the
//! order of the filter's `encodings`.

use http::HeaderMap;

/// A content coding the filter can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Br,
}

impl Coding {
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
        }
    }

    pub(crate) fn parse(token: &str) -> Option<Coding> {
        match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "br" => Some(Coding::Br),
            _ => None,
        }
    }
}

/// The best of `offered` the request accepts with q > 0, if any.
pub(crate) fn choose(headers: &HeaderMap, offered: &[Coding]) -> Option<Coding> {
    let mut explicit: Vec<(Coding, f32)> = Vec::new();
    let mut star = None;
    for value in headers.get_all(http::header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let mut q = 1.0f32;
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v
                            .trim()
                            .parse()
                            .ok()
                            .filter(|q: &f32| (0.0..=1.0).contains(q))
                            .unwrap_or(0.0);
                    }
                }
            }
            if token == "*" {
                star = Some(q);
            } else if let Some(c) = Coding::parse(token) {
                explicit.push((c, q));
            }
        }
    }
    let mut best: Option<(Coding, f32)> = None;
    for &c in offered {
        let q = explicit
            .iter()
            .find(|(e, _)| *e == c)
            .map(|(_, q)| *q)
            .or(star)
            .unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((c, q));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(ae: &[&str], offered: &[Coding]) -> Option<Coding> {
        let mut h = HeaderMap::new();
        for v in ae {
            h.append(http::header::ACCEPT_ENCODING, v.parse().unwrap());
        }
        choose(&h, offered)
    }

    #[test]
    fn q_values_stars_and_ties() {
        use Coding::*;
        let both = [Gzip, Br];
        assert_eq!(pick(&[], &both), None);
        assert_eq!(pick(&["gzip"], &both), Some(Gzip));
        assert_eq!(pick(&["GZIP;Q=0.5"], &both), Some(Gzip));
        assert_eq!(pick(&["gzip, br"], &both), Some(Gzip));
        assert_eq!(pick(&["gzip, br"], &[Br, Gzip]), Some(Br));
        assert_eq!(pick(&["gzip;q=0.5, br;q=0.9"], &both), Some(Br));
        assert_eq!(pick(&["gzip;q=0"], &both), None);
        assert_eq!(pick(&["*"], &both), Some(Gzip));
        assert_eq!(pick(&["*;q=0.1, gzip;q=0"], &both), Some(Br));
        assert_eq!(pick(&["identity"], &both), None);
        assert_eq!(pick(&["x-gzip"], &both), Some(Gzip));
        assert_eq!(pick(&["br"], &[Gzip]), None);
        assert_eq!(pick(&["deflate", "br;q=0.2"], &both), Some(Br));
        assert_eq!(pick(&["gzip;q=nonsense"], &both), None);
    }
}
