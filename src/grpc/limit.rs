//! The gRPC request size limit, answered with RESOURCE_EXHAUSTED.
//!
//! tonic's own limit answers OUT_OF_RANGE; AIP-193 and our users expect
//! RESOURCE_EXHAUSTED for "too big". So tonic's limit is lifted and the
//! request body is wrapped instead: once it has delivered more bytes than the
//! limit allows, it fails with a `tonic::Status`, which tonic finds in the
//! error chain and returns as is. Memory stays bounded by the limit.
//!
//! A streaming handler may swallow that error and end its response normally
//! (tonic-reflection does: it stops reading and closes with OK), so the
//! response is wrapped too: a call whose request overflowed always ends with
//! RESOURCE_EXHAUSTED in its trailers, whatever the handler made of it.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// A body that fails with RESOURCE_EXHAUSTED past `remaining` bytes.
struct Limited {
    inner: Body,
    remaining: usize,
    limit: usize,
    overflowed: Arc<AtomicBool>,
}

fn too_large(limit: usize) -> String {
    format!("the request is larger than the {limit} bytes this server accepts (--max-message-kb)")
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > self.remaining {
                        self.overflowed.store(true, Ordering::Relaxed);
                        crate::metrics::refused("size");
                        let status = tonic::Status::resource_exhausted(too_large(self.limit));
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

/// A response body whose trailers say RESOURCE_EXHAUSTED once its request
/// has overflowed.
struct OverflowTrailers {
    inner: Body,
    overflowed: Arc<AtomicBool>,
    limit: usize,
}

impl http_body::Body for OverflowTrailers {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        let Poll::Ready(Some(Ok(frame))) = frame else {
            return frame;
        };
        if !frame.is_trailers() || !self.overflowed.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Ok(frame)));
        }
        let mut trailers = frame.into_trailers().unwrap_or_default();
        let response = crate::server::grpc_status(tonic::Code::ResourceExhausted, &too_large(self.limit));
        for name in ["grpc-status", "grpc-message"] {
            if let Some(v) = response.headers().get(name) {
                trailers.insert(name, v.clone());
            }
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: wraps every gRPC request body in a limit of `limit` bytes
/// (messages and their 5-byte prefixes together), and the response in the
/// trailers that report an overflow.
pub async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let overflowed = Arc::new(AtomicBool::new(false));
    let body = Body::new(Limited {
        inner: body,
        remaining: limit,
        limit,
        overflowed: overflowed.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    response.map(|inner| {
        Body::new(OverflowTrailers {
            inner,
            overflowed,
            limit,
        })
    })
}
