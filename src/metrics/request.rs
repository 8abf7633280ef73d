//! HTTP/1.x on the metrics port, sans I/O: a request head in (parsed by
//! `httparse`), the answer's bytes out. Every answer closes the
//! connection (`Connection: close`): a scrape is one request, and a
//! connection that outlives its answer would only hold a slot.

use super::exposition::CONTENT_TYPE;

/// Longest request head accepted; a scrape's is a few hundred bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Headers parsed at most (Prometheus sends about six).
const MAX_HEADERS: usize = 32;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet (and within [`MAX_REQUEST`]).
    Partial,
    /// A complete head.
    Request { method: String, path: String },
    /// Not a request we can answer: the status to send, and why.
    Bad { status: u16, why: String },
}

/// Parses the request head in `buf` (all bytes received on the
/// connection).
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Parsed::Request {
            method: req.method.unwrap_or_default().to_string(),
            path: req.path.unwrap_or_default().to_string(),
        },
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST => Parsed::Bad {
            status: 431,
            why: format!("request head longer than {MAX_REQUEST} bytes"),
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Bad {
            status: 431,
            why: format!("more than {MAX_HEADERS} headers"),
        },
        Err(e) => Parsed::Bad {
            status: 400,
            why: format!("not an HTTP request ({e})"),
        },
    }
}

/// What to answer a complete request: status and whether the body is the
/// exposition (`None` = a short text body given here).
pub fn route(method: &str, path: &str) -> (u16, Option<&'static str>) {
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => (200, None),
        ("GET" | "HEAD", "/") => (200, Some("tidstorage: metrics are at /metrics\n")),
        ("GET" | "HEAD", _) => (404, Some("not found: metrics are at /metrics\n")),
        _ => (405, Some("only GET /metrics is served here\n")),
    }
}

/// The whole answer: status line, headers, and the body unless `head_only`.
pub fn answer(status: u16, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The answer to the request in `buf`, or `None` while it is incomplete.
/// `metrics` renders the exposition, only when it is asked for.
pub fn respond(buf: &[u8], metrics: impl FnOnce() -> String) -> Option<(u16, Vec<u8>)> {
    let text = "text/plain; charset=utf-8";
    match parse(buf) {
        Parsed::Partial => None,
        Parsed::Bad { status, why } => {
            Some((status, answer(status, text, &format!("{why}\n"), false)))
        }
        Parsed::Request { method, path } => {
            let head = method == "HEAD";
            Some(match route(&method, &path) {
                (200, None) => (200, answer(200, CONTENT_TYPE, &metrics(), head)),
                (status, body) => (status, answer(status, text, body.unwrap_or(""), head)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_byte_by_byte_and_bad_ones() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        for n in 0..req.len() {
            assert_eq!(parse(&req[..n]), Parsed::Partial, "prefix {n}");
        }
        assert_eq!(
            parse(req),
            Parsed::Request {
                method: "GET".into(),
                path: "/metrics".into()
            }
        );
        let (st, a) = respond(req, || "m 1\n".into()).unwrap();
        assert_eq!(st, 200);
        let a = String::from_utf8(a).unwrap();
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("Content-Type: text/plain; version=0.0.4"), "{a}");
        assert!(
            a.contains("Content-Length: 4\r\n") && a.ends_with("\r\n\r\nm 1\n"),
            "{a}"
        );
        let (st, a) = respond(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", || "m 1\n".into()).unwrap();
        assert_eq!(st, 200);
        assert!(a.ends_with(b"\r\n\r\n"));
        assert_eq!(
            respond(b"\x00\x01garbage\r\n\r\n", String::new).unwrap().0,
            400
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", String::new)
                .unwrap()
                .0,
            405
        );
        assert_eq!(
            respond(b"GET /x HTTP/1.1\r\n\r\n", String::new).unwrap().0,
            404
        );
        let huge = vec![b'a'; MAX_REQUEST + 1];
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.extend_from_slice(&huge);
        assert_eq!(respond(&long, String::new).unwrap().0, 431);
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(respond(&many, String::new).unwrap().0, 431);
    }
}
