//! Hostile clients: oversized messages, slow or idle connections, too many
//! connections, deadlines. Every case ends in a clear status, never a hang.

mod common;

use common::{UserMsg, PARENTS};

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{channel_to as channel, start_with as start};

#[tokio::test]
async fn an_oversized_grpc_message_is_resource_exhausted() {
    let (s, _dir) = start(|c| c.max_message_kb = 16).await;
    let ch = channel(&s).await;
    PARENTS[0].create(&ch, PARENTS[0].new_parent("p", "x")).await.unwrap();
    let big = UserMsg {
        user_display_name: Some("x".repeat(20 * 1024)),
        ..Default::default()
    };
    let err = PARENTS[0].create_status(&ch, "User", "p", big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // The connection and server are fine afterwards.
    let ok = UserMsg {
        user_display_name: Some("x".repeat(1024)),
        ..Default::default()
    };
    PARENTS[0].create_status(&ch, "User", "p", ok).await.unwrap();
}

#[tokio::test]
async fn an_oversized_rest_body_is_413() {
    let (s, _dir) = start(|c| c.max_message_kb = 16).await;
    let url = format!(
        "http://{}/v1.0/deviceManagement/deviceCompliancePolicies",
        s.local_addr()
    );
    let body = serde_json::json!({"displayName": "x".repeat(20 * 1024)}).to_string();
    common::http("POST", &url, Some(&body))
        .await
        .graph_error(413, "RequestEntityTooLarge");
}

/// A raw HTTP/2 gRPC call (tonic's client would enforce the deadline itself,
/// so this checks that the server honours `grpc-timeout`).
#[tokio::test]
async fn an_expired_grpc_deadline_is_deadline_exceeded() {
    use prost::Message;
    let (s, _dir) = start(|_| {}).await;
    let ch = channel(&s).await;
    PARENTS[0].create(&ch, PARENTS[0].new_parent("p", "x")).await.unwrap();
    let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let msg = statusd::pb::CreateDeviceComplianceUserStatusRequest {
        parent_id: "p".into(),
        user_status: Some(Default::default()),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let req = hyper::Request::post(format!(
        "http://{}/statusd.v1.DeviceCompliancePolicies/CreateUserStatus",
        s.local_addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", "1n")
    .body(http_body_util::Full::new(hyper::body::Bytes::from(frame)))
    .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "4", "{:?}", resp.headers());
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (s, _dir) = start(|c| c.header_timeout_secs = 1).await;
    let mut tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    tcp.write_all(b"GET /v1.0/deviceManagement/deviceCompliancePolicies HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open for 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (s, _dir) = start(|c| {
        c.max_connections = 2;
        c.header_timeout_secs = 30;
    })
    .await;
    let url = format!(
        "http://{}/v1.0/deviceManagement/deviceCompliancePolicies",
        s.local_addr()
    );
    let idle1 = TcpStream::connect(s.local_addr()).await.unwrap();
    let _idle2 = TcpStream::connect(s.local_addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(async move { common::http("GET", &url, None).await.status });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two were open"
    );
    drop(idle1);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a slot freed");
    assert_eq!(status.unwrap(), 200);
}
