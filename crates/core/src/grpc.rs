//! gRPC status codes: their numbers (the `grpc-status` header), the names config entries use
//! for them (`Retry.On`, `CircuitBreaker.ErrorTypes`: Envoy's lower-case, dash-separated
//! spelling, e.g. `resource-exhausted`), and the HTTP status each is equivalent to (Envoy's
//! `grpcToHttpStatus`), so `5xx` in `ErrorTypes` covers a failing gRPC call as it covers a
//! failing HTTP one.

/// One gRPC status: `(code, name, HTTP equivalent)`.
const CODES: [(u32, &str, u16); 17] = [
    (0, "ok", 200),
    (1, "cancelled", 499),
    (2, "unknown", 500),
    (3, "invalid-argument", 400),
    (4, "deadline-exceeded", 504),
    (5, "not-found", 404),
    (6, "already-exists", 409),
    (7, "permission-denied", 403),
    (8, "resource-exhausted", 429),
    (9, "failed-precondition", 400),
    (10, "aborted", 409),
    (11, "out-of-range", 400),
    (12, "unimplemented", 501),
    (13, "internal", 500),
    (14, "unavailable", 503),
    (15, "data-loss", 500),
    (16, "unauthenticated", 401),
];

pub const OK: u32 = 0;
pub const DEADLINE_EXCEEDED: u32 = 4;
pub const PERMISSION_DENIED: u32 = 7;
pub const RESOURCE_EXHAUSTED: u32 = 8;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;

/// The code of a status name (`unavailable` -> 14).
pub fn code_of(name: &str) -> Option<u32> {
    CODES
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(c, _, _)| *c)
}

/// The name of a code (`14` -> `unavailable`); `None` for codes gRPC does not define.
pub fn name_of(code: u32) -> Option<&'static str> {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, n, _)| *n)
}

/// The HTTP status a gRPC code is equivalent to; unknown codes count as 500.
pub fn http_status(code: u32) -> u16 {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(500, |(_, _, h)| *h)
}

/// Every name but `ok`: what `Retry.On` accepts besides its HTTP conditions.
pub fn names() -> impl Iterator<Item = &'static str> {
    CODES.iter().skip(1).map(|(_, n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_codes_and_http_equivalents() {
        assert_eq!(code_of("unavailable"), Some(UNAVAILABLE));
        assert_eq!(code_of("resource-exhausted"), Some(RESOURCE_EXHAUSTED));
        assert_eq!(code_of("UNAVAILABLE"), None);
        assert_eq!(name_of(4), Some("deadline-exceeded"));
        assert_eq!(name_of(99), None);
        assert_eq!(http_status(UNAVAILABLE), 503);
        assert_eq!(http_status(PERMISSION_DENIED), 403);
        assert_eq!(http_status(99), 500);
        assert_eq!(names().count(), 16);
        assert!(names().all(|n| n != "ok"));
    }
}
