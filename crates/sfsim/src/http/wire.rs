//! Response header names in Salesforce's casing on HTTP/1.1.
//!
//! Header names are case-insensitive by the RFC, but clients written against Salesforce look
//! some up case-sensitively (`Sforce-Locator`, `Content-Type`), so the simulator has to send them
//! as Salesforce does. actix keeps header names lower-case (the `http` crate cannot hold anything
//! else), and its optional camel-casing (`ResponseHead::set_camel_case_headers`) makes
//! `Sforce-Numberofrecords` out of `sforce-numberofrecords` and does not reach the headers its
//! dispatcher writes for protocol errors. So the casing is applied where the bytes leave: [`CasedIo`]
//! wraps each HTTP/1.1 connection and rewrites the header names of every response head it frames.
//! Only the case of name bytes changes, never a length, and bodies pass through untouched: the
//! writer follows `Content-Length` and chunked framing to know where each head starts.

use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The Salesforce spelling of a header name, given in lower case.
fn salesforce_casing(lower: &[u8]) -> Option<&'static [u8]> {
    Some(match lower {
        b"sforce-numberofrecords" => b"Sforce-NumberOfRecords",
        b"etag" => b"ETag",
        b"www-authenticate" => b"WWW-Authenticate",
        b"x-xss-protection" => b"X-XSS-Protection",
        b"content-md5" => b"Content-MD5",
        _ => return None,
    })
}

/// Rewrites `name` in place: an exception from the table, else Camel-Case (`Sforce-Limit-Info`).
pub fn recase(name: &mut [u8]) {
    name.make_ascii_lowercase();
    if let Some(exact) = salesforce_casing(name) {
        name.copy_from_slice(exact);
        return;
    }
    let mut upper_next = true;
    for b in name.iter_mut() {
        if upper_next {
            b.make_ascii_uppercase();
        }
        upper_next = *b == b'-';
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    StatusLine,
    /// At the start of a header line (or of the blank line ending the head).
    LineStart,
    Name,
    Value,
    /// Saw `\r` where a header line would start: the head ends at the `\n`.
    HeadEnd,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The `\r\n` after a chunk's data.
    ChunkDataEnd(u8),
    /// After the last chunk: trailer lines up to an empty one.
    Trailer {
        line_empty: bool,
    },
    /// Bytes whose framing is unknown or not HTTP/1.1 (an upgrade, a close-delimited body):
    /// passed on as they are.
    Passthrough,
}

/// The framing state of one connection's outgoing bytes.
#[derive(Debug)]
pub struct ResponseRecaser {
    state: State,
    /// The status line, or the header name, or the value of a framing header, being read.
    scratch: Vec<u8>,
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    /// Whether the value being read is one the framing depends on.
    keep_value: bool,
    /// Whether no byte of the current fixed-length body has been seen yet.
    body_fresh: bool,
}

impl Default for ResponseRecaser {
    fn default() -> Self {
        ResponseRecaser {
            state: State::StatusLine,
            scratch: Vec::new(),
            status: 0,
            content_length: None,
            chunked: false,
            keep_value: false,
            body_fresh: false,
        }
    }
}

impl ResponseRecaser {
    /// Appends `input`, recased, to `out`. A header name split across calls is held back until
    /// its `:` arrives.
    pub fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) {
        while !input.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                // The answer to a HEAD request declares a length but has no body: what follows its
                // head is the next response's status line.
                State::Body(_) if self.body_fresh && looks_like_status_line(input) => {
                    self.state = State::StatusLine;
                }
                State::Body(n) => {
                    self.body_fresh = false;
                    let take = (n.min(input.len() as u64)) as usize;
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.state = match n - take as u64 {
                        0 => State::StatusLine,
                        left => State::Body(left),
                    };
                }
                State::ChunkData(n) => {
                    let take = (n.min(input.len() as u64)) as usize;
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.state = match n - take as u64 {
                        0 => State::ChunkDataEnd(2),
                        left => State::ChunkData(left),
                    };
                }
                State::Name => {
                    match input.iter().position(|&b| b == b':' || b == b'\n') {
                        Some(i) if input[i] == b':' => {
                            self.scratch.extend_from_slice(&input[..i]);
                            self.keep_value = self.scratch.eq_ignore_ascii_case(b"content-length")
                                || self.scratch.eq_ignore_ascii_case(b"transfer-encoding");
                            let mut name = std::mem::take(&mut self.scratch);
                            recase(&mut name);
                            out.extend_from_slice(&name);
                            out.extend_from_slice(b":");
                            if self.keep_value {
                                // The name stays for `end_of_value`, in lower case.
                                name.make_ascii_lowercase();
                                name.push(b':');
                                self.scratch = name;
                            }
                            self.state = State::Value;
                            input = &input[i + 1..];
                        }
                        // Not a header line after all: give up on framing this connection.
                        Some(_) => {
                            out.extend_from_slice(&std::mem::take(&mut self.scratch));
                            self.state = State::Passthrough;
                        }
                        None => {
                            self.scratch.extend_from_slice(input);
                            return;
                        }
                    }
                }
                State::LineStart if input[0] != b'\r' && input[0] != b'\n' => {
                    // A header name starts: it is written once complete, recased.
                    self.scratch.clear();
                    self.state = State::Name;
                }
                _ => {
                    let b = input[0];
                    input = &input[1..];
                    out.extend_from_slice(&[b]);
                    self.step(b);
                }
            }
        }
    }

    /// Whether a header name is held back, waiting for the rest of it.
    pub fn holds_partial_name(&self) -> bool {
        self.state == State::Name && !self.scratch.is_empty()
    }

    /// Hands back a held partial name as it came, for a flush that cannot wait for the rest.
    pub fn release_partial(&mut self, out: &mut BytesMut) {
        if self.holds_partial_name() {
            out.extend_from_slice(&std::mem::take(&mut self.scratch));
            self.state = State::Passthrough;
        }
    }

    /// One byte of the head, chunk-size lines or trailer (already copied to the output).
    fn step(&mut self, b: u8) {
        self.state = match self.state {
            State::StatusLine => {
                if b == b'\n' {
                    self.status = parse_status(&self.scratch);
                    self.scratch.clear();
                    self.content_length = None;
                    self.chunked = false;
                    if self.status == 0 {
                        State::Passthrough
                    } else {
                        State::LineStart
                    }
                } else {
                    self.scratch.push(b);
                    State::StatusLine
                }
            }
            State::LineStart => match b {
                b'\r' => State::HeadEnd,
                _ => self.body_state(),
            },
            State::Value => {
                if b == b'\n' {
                    self.end_of_value();
                    State::LineStart
                } else {
                    if self.keep_value {
                        self.scratch.push(b);
                    }
                    State::Value
                }
            }
            State::HeadEnd => {
                if b == b'\n' {
                    self.body_state()
                } else {
                    State::Passthrough
                }
            }
            State::ChunkSize => {
                if b == b'\n' {
                    let line = std::mem::take(&mut self.scratch);
                    match parse_chunk_size(&line) {
                        Some(0) => State::Trailer { line_empty: true },
                        Some(n) => State::ChunkData(n),
                        None => State::Passthrough,
                    }
                } else {
                    self.scratch.push(b);
                    State::ChunkSize
                }
            }
            State::ChunkDataEnd(left) => match left {
                1 => State::ChunkSize,
                _ => State::ChunkDataEnd(left - 1),
            },
            State::Trailer { line_empty } => match b {
                b'\n' if line_empty => State::StatusLine,
                b'\n' => State::Trailer { line_empty: true },
                b'\r' => State::Trailer { line_empty },
                _ => State::Trailer { line_empty: false },
            },
            s @ (State::Name | State::Body(_) | State::ChunkData(_) | State::Passthrough) => s,
        };
    }

    fn end_of_value(&mut self) {
        if !self.keep_value {
            return;
        }
        self.keep_value = false;
        let line = std::mem::take(&mut self.scratch);
        let text = String::from_utf8_lossy(&line);
        if let Some(v) = text.strip_prefix("content-length:") {
            self.content_length = v.trim().parse().ok();
        } else if let Some(v) = text.strip_prefix("transfer-encoding:") {
            self.chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }

    /// What follows a head, by RFC 9112 section 6.3 (a HEAD request's response would be framed
    /// wrongly, and the simulator serves none).
    fn body_state(&mut self) -> State {
        match self.status {
            101 => State::Passthrough,
            100..=199 | 204 | 304 => State::StatusLine,
            _ if self.chunked => State::ChunkSize,
            _ => match self.content_length {
                Some(0) => State::StatusLine,
                Some(n) => {
                    self.body_fresh = true;
                    State::Body(n)
                }
                None => State::Passthrough,
            },
        }
    }
}

/// Whether `b` starts with `HTTP/1.x DDD `.
fn looks_like_status_line(b: &[u8]) -> bool {
    b.len() >= 13
        && b.starts_with(b"HTTP/1.")
        && b[8] == b' '
        && b[9..12].iter().all(u8::is_ascii_digit)
        && b[12] == b' '
}

/// `HTTP/1.1 200 OK\r` → 200; 0 when it is not a status line.
fn parse_status(line: &[u8]) -> u16 {
    if !line.starts_with(b"HTTP/") {
        return 0;
    }
    line.split(|&b| b == b' ')
        .nth(1)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// `1a2b;ext\r` → 0x1a2b.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let hex = text.split(';').next()?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// An HTTP/1.1 connection whose outgoing response heads are recased. Reads pass through.
pub struct CasedIo<T> {
    inner: T,
    recaser: ResponseRecaser,
    /// Recased bytes accepted from the writer and not yet taken by `inner`.
    pending: BytesMut,
}

/// Above this many pending bytes a write waits for the socket instead of buffering more.
const PENDING_LIMIT: usize = 256 * 1024;

impl<T> CasedIo<T> {
    pub fn new(inner: T) -> Self {
        CasedIo {
            inner,
            recaser: ResponseRecaser::default(),
            pending: BytesMut::new(),
        }
    }
}

impl<T: AsyncWrite + Unpin> CasedIo<T> {
    /// Writes pending bytes until none are left or the socket is full.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = self.pending.split_to(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CasedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CasedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.len() >= PENDING_LIMIT {
            ready!(this.drain(cx))?;
        }
        this.recaser.feed(buf, &mut this.pending);
        // Start sending now; whatever the socket does not take waits for the next write or flush.
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.recaser.release_partial(&mut this.pending);
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.recaser.release_partial(&mut this.pending);
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> String {
        let mut r = ResponseRecaser::default();
        let mut out = BytesMut::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn names_take_salesforce_casing() {
        for (from, to) in [
            ("sforce-numberofrecords", "Sforce-NumberOfRecords"),
            ("sforce-limit-info", "Sforce-Limit-Info"),
            ("sforce-locator", "Sforce-Locator"),
            ("content-type", "Content-Type"),
            ("etag", "ETag"),
            ("location", "Location"),
        ] {
            let mut n = from.as_bytes().to_vec();
            recase(&mut n);
            assert_eq!(std::str::from_utf8(&n).unwrap(), to);
        }
    }

    #[test]
    fn heads_are_recased_and_bodies_are_not() {
        let body = "x\r\nsforce-locator: body\r\n\r\n";
        let first = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nsforce-locator: null\r\n\r\n{body}",
            body.len()
        );
        let second = "HTTP/1.1 204 No Content\r\nsforce-limit-info: api-usage=1/5\r\n\r\n";
        let third =
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/csv\r\n\r\n\
                     5\r\nab\r\nc\r\n0\r\n\r\n";
        let fourth =
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nsforce-numberofrecords: 0\r\n\r\n";
        let all = format!("{first}{second}{third}{fourth}");
        // Every split point: heads and bodies may arrive in any pieces.
        for cut in 0..all.len() {
            let (a, b) = all.as_bytes().split_at(cut);
            let got = run(&[a, b]);
            assert!(
                got.contains(&format!(
                    "Content-Length: {}\r\nSforce-Locator: null\r\n\r\n{body}",
                    body.len()
                )),
                "cut {cut}: {got}"
            );
            assert!(
                got.contains("\r\nSforce-Limit-Info: api-usage=1/5\r\n"),
                "cut {cut}"
            );
            assert!(got.contains("Transfer-Encoding: chunked\r\nContent-Type: text/csv\r\n\r\n5\r\nab\r\nc\r\n0\r\n\r\n"), "cut {cut}");
            assert!(
                got.ends_with("Content-Length: 0\r\nSforce-NumberOfRecords: 0\r\n\r\n"),
                "cut {cut}"
            );
            assert_eq!(got.len(), all.len());
        }
    }

    #[test]
    fn a_head_answer_without_its_body_does_not_hide_the_next_head() {
        let got = run(&[
            b"HTTP/1.1 200 OK\r\ncontent-length: 120\r\ncontent-type: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nsforce-locator: x\r\n\r\nok",
        ]);
        assert!(
            got.ends_with("Content-Length: 2\r\nSforce-Locator: x\r\n\r\nok"),
            "{got}"
        );
    }

    #[test]
    fn an_unframeable_stream_passes_through() {
        let got = run(&[b"HTTP/1.1 200 OK\r\ncontent-type: a\r\n\r\nrest\r\nx-y: z\r\n"]);
        assert_eq!(
            got,
            "HTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\nrest\r\nx-y: z\r\n"
        );
    }
}
