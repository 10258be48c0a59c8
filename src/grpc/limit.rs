//! The message limit of the `kvs.KVS` front door: a request message over it is refused with
//! RESOURCE_EXHAUSTED, the code a value over `--max-value-bytes` gets inside a message under
//! it. tonic's own limit (`max_decoding_message_size`) answers OUT_OF_RANGE, so a value just
//! over the limit and one far over it got different codes. This reads the length prefix of
//! each message as the body streams in, and fails the body with the status before tonic
//! buffers the message (tonic passes a body's `Status` on as it is).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http::Request;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::Status;

/// A gRPC service whose request messages may be at most `max_message_bytes` long.
#[derive(Clone)]
pub struct MessageLimit<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> MessageLimit<S> {
    pub fn new(inner: S, max_message_bytes: usize) -> Self {
        MessageLimit { inner, max_message_bytes }
    }
}

impl<S: NamedService> NamedService for MessageLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for MessageLimit<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> S::Future {
        let framing =
            Framing { max_message_bytes: self.max_message_bytes, header: [0; 5], header_len: 0, body_left: 0 };
        self.inner.call(request.map(|inner| Body::new(LimitedBody { inner, framing })))
    }
}

struct LimitedBody {
    inner: Body,
    framing: Framing,
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|frame| frame.as_ref().ok()).and_then(Frame::data_ref) {
            if let Err(status) = this.framing.scan(data) {
                return Poll::Ready(Some(Err(status)));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where the body is in gRPC's framing: each message is a compression flag, a big-endian
/// 32-bit length and that many bytes.
struct Framing {
    max_message_bytes: usize,
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
}

impl Framing {
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(data.len());
                self.body_left -= skipped;
                data = &data[skipped..];
                continue;
            }
            let taken = (self.header.len() - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + taken].copy_from_slice(&data[..taken]);
            self.header_len += taken;
            data = &data[taken..];
            if self.header_len == self.header.len() {
                let length =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
                if length > self.max_message_bytes {
                    return Err(Status::resource_exhausted(format!(
                        "the request is {length} bytes, over the limit of {} bytes (--max-value-bytes and 1 MiB \
                         for the rest)",
                        self.max_message_bytes
                    )));
                }
                self.header_len = 0;
                self.body_left = length;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(max_message_bytes: usize) -> Framing {
        Framing { max_message_bytes, header: [0; 5], header_len: 0, body_left: 0 }
    }

    #[test]
    fn a_length_prefix_over_the_limit_is_refused_wherever_the_chunks_split_it() {
        let mut fits = framing(10);
        let mut body = vec![0, 0, 0, 0, 10];
        body.extend([7; 10]);
        body.extend([0, 0, 0, 0, 11]);
        assert!(fits.scan(&body[..3]).is_ok());
        assert!(fits.scan(&body[3..12]).is_ok());
        assert!(fits.scan(&body[12..17]).is_ok(), "the first message ends at 15");
        let refused = fits.scan(&body[17..]).expect_err("11 bytes is over 10");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    }
}
