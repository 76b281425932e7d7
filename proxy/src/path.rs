//! Request paths as the inbound side matches and forwards them (Envoy's `normalize_path` and
//! `merge_slashes`): an L7 intention on `/admin` must not be dodged by `//admin`, `/./admin`,
//! `/%61dmin` or `/x/../admin`, and the app must act on the path that was authorised.
//!
//! In order: percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded and
//! every other escape's hex is upper-cased; runs of `/` become one; `.` and `..` segments are
//! resolved (RFC 3986 §5.2.4, never above the root). Escapes whose meaning differs from
//! server to server (`%2F`, `%5C`), `%00` and broken escapes are refused rather than guessed.

use std::fmt::Write as _;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("the path has an encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
    #[error("the path has an encoded NUL (%00)")]
    EncodedNul,
    #[error("the path has a broken percent-encoding")]
    BadEscape,
    #[error("the path does not start with /")]
    NotAbsolute,
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode unreserved escapes, upper-case the others, refuse the dangerous ones.
fn escapes(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(rest) = path.get(i..) {
        let Some(at) = rest.find('%') else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at]);
        i += at;
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        match (hi << 4) | lo {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0 => return Err(PathError::EncodedNul),
            b if unreserved(b) => out.push(char::from(b)),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
        i += 3;
    }
    Ok(out)
}

/// The normalised form of `path` (without the query). `*` (`OPTIONS *`) stays as it is.
pub fn normalize(path: &str) -> Result<String, PathError> {
    if path == "*" {
        return Ok(path.to_owned());
    }
    if path.is_empty() {
        return Ok("/".to_owned());
    }
    let decoded = escapes(path)?;
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    // Empty segments are merged slashes, except a last one, which is the trailing slash.
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (n, s) in segments.iter().enumerate() {
        match *s {
            "" if n < last => {}
            "." | ".." => {
                if *s == ".." {
                    out.pop();
                }
                // `/a/.` and `/a/b/..` name a directory: keep the trailing slash.
                if n == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn dot_segments_merged_slashes_and_escapes_are_resolved() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("*", "*"),
            ("/public/x", "/public/x"),
            ("/public/x/", "/public/x/"),
            ("//admin/x", "/admin/x"),
            ("/a///b//", "/a/b/"),
            ("/./admin/x", "/admin/x"),
            ("/public/../admin/x", "/admin/x"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/./b/../../c", "/c"),
            ("/..", "/"),
            ("/../../admin", "/admin"),
            ("/a//../b", "/b"),
            ("/...", "/..."),
            ("/.a/..b/", "/.a/..b/"),
            ("/%61dmin/x", "/admin/x"),
            ("/%2e%2E/admin", "/admin"),
            ("/public/%2e/x", "/public/x"),
            ("/%7e%5f%2D%30%7A", "/~_-0z"),
            ("/a%3ab%3Fc%20d", "/a%3Ab%3Fc%20d"),
            ("/%c3%a9", "/%C3%A9"),
            ("/é", "/é"),
            ("/%25", "/%25"),
            ("/%2561", "/%2561"),
        ] {
            assert_eq!(n(raw), want, "{raw}");
        }
    }

    #[test]
    fn ambiguous_or_broken_escapes_are_refused() {
        for (raw, want) in [
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a%00", PathError::EncodedNul),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/a%%41", PathError::BadEscape),
            ("/a%é", PathError::BadEscape),
            ("admin", PathError::NotAbsolute),
            ("%2e%2e/admin", PathError::NotAbsolute),
        ] {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in ["//a/./b/../%63/", "/%7e/%3a/..", "/x/%2e%2e/%2e/y"] {
            let once = n(raw);
            assert_eq!(n(&once), once, "{raw}");
        }
    }
}
