//! The gRPC request size limit, answered with RESOURCE_EXHAUSTED.
//!
//! tonic's own limit answers OUT_OF_RANGE; AIP-193 and our users expect
//! RESOURCE_EXHAUSTED for "too big". So tonic's limit is lifted and the
//! request body is wrapped instead: once it has delivered more bytes than the
//! limit allows, it fails with a `tonic::Status`, which tonic finds in the
//! error chain and returns as is. Memory stays bounded by the limit.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body that fails with RESOURCE_EXHAUSTED past `remaining` bytes.
struct Limited {
    inner: Body,
    remaining: usize,
    limit: usize,
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > self.remaining {
                        let status = tonic::Status::resource_exhausted(format!(
                            "the request is larger than the {} bytes this server accepts (--max-message-kb)",
                            self.limit
                        ));
                        return Poll::Ready(Some(Err(Box::new(status))));
                    }
                    self.remaining -= data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            other => other.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as Self::Error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: wraps every gRPC request body in a limit of `limit` bytes
/// (messages and their 5-byte prefixes together).
pub async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = Body::new(Limited {
        inner: body,
        remaining: limit,
        limit,
    });
    next.run(Request::from_parts(parts, body)).await
}
