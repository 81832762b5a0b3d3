//! The bytes on the wire, below actix: the one kind of 4xx that would leave
//! without a problem body.
//!
//! actix-http answers a request whose head it cannot parse (a control
//! character in a header value, a `Content-Length` that is not a number, a
//! head too large or too slow to arrive) by itself, before any middleware
//! runs: a bare status, `content-length: 0`, no body; then it closes the
//! connection. It offers no hook for that answer, so [`ProblemIo`] wraps
//! each connection's socket and rewrites it into a problem.
//!
//! How it is found: the dispatcher encodes that answer whole into its write
//! buffer after everything it answered before on the connection, and writes
//! nothing after it, so it is the complete tail of the first write that
//! carries it. A write ending in a complete response head with an error
//! status, `content-length: 0` and no content type is that answer, because
//! no other response has that shape: every error the application answers
//! carries a content type (`problem_middleware` makes each a problem), and
//! no body we send holds a raw line break followed by a response head (JSON
//! escapes line breaks; so do the iCalendar text and the metrics labels).
//! Every other write passes through untouched, at the cost of comparing its
//! last four bytes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use uuid::Uuid;

use crate::problem::problem_body;

/// A response head the dispatcher writes on its own is a status line and
/// three short headers; a longer tail is not one.
const BARE_HEAD_LEN_MAX: usize = 512;

/// A connection's socket, with the dispatcher's bare error answer rewritten
/// into a problem (see the module's doc).
#[derive(Debug)]
pub struct ProblemIo<T> {
    inner: T,
    /// The rewritten answer, and how much of it the socket has taken.
    pending: Vec<u8>,
    written: usize,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> ProblemIo<T> {
        ProblemIo {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some(rewritten) = rewrite(buf) {
            this.pending = rewritten;
            // All of the caller's bytes are ours to send now: what the
            // socket does not take yet goes with the next flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `buf` with its tail rewritten into a problem, when its tail is a bare
/// error answer.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let window = &buf[buf.len().saturating_sub(BARE_HEAD_LEN_MAX)..];
    let at = buf.len() - window.len() + memchr::memmem::rfind(window, b"HTTP/1.1 ")?;
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(&buf[at..]) {
        Ok(httparse::Status::Complete(n)) if n == buf.len() - at => {}
        _ => return None,
    }
    let status = StatusCode::from_u16(head.code?).ok()?;
    if status.as_u16() < 400 {
        return None;
    }
    let mut empty = false;
    let mut kept = Vec::new();
    for h in head.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            empty = h.value == b"0";
        } else {
            kept.push((h.name, h.value));
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::Value::Object(problem_body(status, "http", detail(status))).to_string();
    let mut out = buf[..at].to_vec();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-length: {}\r\ncontent-type: {}\r\nx-request-id: {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            body.len(),
            crate::problem::PROBLEM_CONTENT_TYPE,
            Uuid::new_v4()
        )
        .as_bytes(),
    );
    for (name, value) in kept {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

/// What the client did wrong, as far as the status tells: the parser's own
/// reason goes only to its trace log.
fn detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => {
            "the request is not valid HTTP/1.1: its request line or a header is malformed \
             (a control character in a header value, a Content-Length that is not a \
             non-negative number, conflicting lengths), so it was not read"
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request's head (request line and headers) is larger than the server reads"
        }
        StatusCode::REQUEST_TIMEOUT => "the request's head did not arrive in time",
        s if s.is_server_error() => "the request could not be handled; retry it",
        _ => "the request was refused before it was read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sat, 05 Dec 2026 04:29:44 GMT\r\n\r\n";

    #[test]
    fn a_bare_error_at_the_end_of_a_write_becomes_a_problem_and_what_precedes_it_stays() {
        let earlier = b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ok\"}";
        let mut buf = earlier.to_vec();
        buf.extend_from_slice(BARE);
        let out = rewrite(&buf).expect("rewritten");
        assert!(out.starts_with(earlier));
        let rest = &out[earlier.len()..];
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut head = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = head.parse(rest).unwrap() else {
            panic!("a whole head")
        };
        assert_eq!(head.code, Some(400));
        let header = |name: &str| {
            head.headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| std::str::from_utf8(h.value).unwrap().to_owned())
        };
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(header("connection").as_deref(), Some("close"));
        assert!(header("date").is_some());
        let body: serde_json::Value = serde_json::from_slice(&rest[n..]).unwrap();
        assert_eq!(header("content-length"), Some(rest[n..].len().to_string()));
        assert_eq!(body["status"], 400);
        assert!(body["detail"].as_str().unwrap().contains("HTTP/1.1"));
    }

    #[test]
    fn other_responses_pass_untouched() {
        for buf in [
            &b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n"[..],
            b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 136\r\ncontent-type: application/problem+json\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\ncontent-type: application/problem+json\r\n\r\n",
            b"{\"note\":\"HTTP/1.1 400 Bad Request\\r\\ncontent-length: 0\\r\\n\\r\\n\"}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"",
        ] {
            assert_eq!(rewrite(buf), None, "{}", String::from_utf8_lossy(buf));
        }
    }
}
