//! §2: QUIC, ALPN, certificates, pinning, resumption, close codes.

use std::time::Duration;

use super::case;
use crate::client::{self, Closed};
use crate::tls::{ClientCert, ClientTls};
use crate::wire::{Code, Msg, Role, ALPN};
use crate::{describe, ensure, expect_error, fail, Case, Check, Ctx, Id};

pub fn cases() -> Vec<Case> {
    vec![
        case!("transport.handshake", "§2.2", Any, "a pinned handshake with ALPN gridsync/1 completes; the server's certificate key is its node id", handshake),
        case!("transport.wrong-pin", "§2.2", Any, "a client pinning another node id refuses the server; the server proved its real id", wrong_pin),
        case!("transport.wrong-alpn", "§2.1", Any, "a client offering only another ALPN is refused with no_application_protocol (0x178)", wrong_alpn),
        case!("transport.no-alpn", "§2.1", Any, "a client offering no ALPN is refused with no_application_protocol (0x178)", no_alpn),
        case!("transport.no-client-cert", "§2.2", Any, "a client without a certificate is refused (certificate_required) and served no session", no_client_cert),
        case!("transport.non-ed25519-cert", "§2.2", Any, "a client with an ECDSA certificate is refused and served no session", ecdsa_cert),
        case!("transport.no-resumption", "§2.2", Any, "the server issues no session tickets: a second connection cannot resume or send 0-RTT", no_resumption),
        case!("transport.close-code", "§2.3", Any, "a refused session's connection is closed with the error code as QUIC application code", close_code),
    ]
}

async fn handshake(ctx: &Ctx) -> Check {
    let conn = ctx.connect(&ctx.ids.device_a).await?;
    let seen = conn
        .observed
        .lock()
        .map_err(|_| fail("the verifier's record", "poisoned"))?
        .server_key;
    ensure(
        seen == Some(ctx.target_id),
        format!("server certificate key {}", hex::encode(ctx.target_id)),
        format!("{:?}", seen.map(hex::encode)),
    )?;
    let alpn = conn
        .conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    ensure(
        alpn.as_deref() == Some(ALPN),
        "ALPN gridsync/1 selected",
        format!(
            "{:?}",
            alpn.map(|a| String::from_utf8_lossy(&a).into_owned())
        ),
    )?;
    conn.close(0, "done");
    Ok(())
}

async fn wrong_pin(ctx: &Ctx) -> Check {
    let mut other = ctx.target_id;
    other[0] ^= 0xff;
    let options = ClientTls::pinned(other);
    let (config, observed) =
        crate::tls::client_config(&ctx.ids.device_a.seed, &options, client::transport())
            .map_err(|e| fail("a TLS configuration", e.to_string()))?;
    let connecting = ctx
        .endpoint
        .connect_with(config, ctx.addr(), crate::tls::SERVER_NAME)
        .map_err(|e| fail("a connection attempt", e.to_string()))?;
    let result = tokio::time::timeout(client::CONNECT, connecting).await;
    ensure(
        !matches!(result, Ok(Ok(_))),
        "the handshake to fail against a wrong pin",
        "it completed",
    )?;
    let seen = observed
        .lock()
        .map_err(|_| fail("the verifier's record", "poisoned"))?
        .server_key;
    ensure(
        seen == Some(ctx.target_id),
        "the server to present its own Ed25519 key",
        format!("{:?}", seen.map(hex::encode)),
    )
}

/// TLS alert `no_application_protocol` (120) as a QUIC crypto error.
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;
/// TLS alert `certificate_required` (116).
const CERTIFICATE_REQUIRED: u64 = 0x100 + 116;
/// TLS alerts `bad_certificate` (42) and `certificate_unknown` (46), §2.2.
const BAD_CERTIFICATE: u64 = 0x100 + 42;
const CERTIFICATE_UNKNOWN: u64 = 0x100 + 46;

async fn alpn_refused(ctx: &Ctx, alpn: Vec<Vec<u8>>) -> Check {
    let options = ClientTls {
        alpn,
        ..ClientTls::pinned(ctx.target_id)
    };
    match ctx.connect_with(&ctx.ids.device_a, &options).await {
        Err(Closed::Transport { code, .. }) if code == NO_APPLICATION_PROTOCOL => Ok(()),
        Err(other) => Err(fail(
            "transport close 0x178 (no_application_protocol)",
            other.to_string(),
        )),
        Ok(c) => {
            c.close(0, "done");
            Err(fail(
                "transport close 0x178 (no_application_protocol)",
                "the handshake completed",
            ))
        }
    }
}

async fn wrong_alpn(ctx: &Ctx) -> Check {
    alpn_refused(ctx, vec![b"gridsync/0".to_vec()]).await
}

async fn no_alpn(ctx: &Ctx) -> Check {
    alpn_refused(ctx, Vec::new()).await
}

/// The client believes the handshake done before the server checked its certificate (TLS 1.3
/// client authentication): the refusal arrives as a close on the first stream operation.
async fn refused_after_handshake(
    ctx: &Ctx,
    cert: ClientCert,
    accept: impl Fn(&Closed) -> bool,
    expected: &str,
) -> Check {
    let options = ClientTls {
        cert,
        ..ClientTls::pinned(ctx.target_id)
    };
    let id = &ctx.ids.device_a;
    let conn = match ctx.connect_with(id, &options).await {
        Err(c) if accept(&c) => return Ok(()),
        Err(c) => return Err(fail(expected, c.to_string())),
        Ok(c) => c,
    };
    let mut ctl = match conn.control().await {
        Ok(c) => c,
        Err(c) if accept(&c) => return Ok(()),
        Err(c) => return Err(fail(expected, c.to_string())),
    };
    let _ = ctl.send(&ctx.hello(id, Role::Device)).await;
    let reply = ctl.recv().await;
    match &reply {
        Ok(Msg::Welcome { .. }) => Err(fail(expected, "a Welcome: the session was served")),
        Err(crate::client::NoMsg::Closed(c)) if accept(c) => Ok(()),
        _ => match conn.closed_within(client::ANSWER).await {
            Some(c) if accept(&c) => Ok(()),
            Some(c) => Err(fail(expected, c.to_string())),
            None => Err(fail(expected, describe(&reply))),
        },
    }
}

async fn no_client_cert(ctx: &Ctx) -> Check {
    refused_after_handshake(
        ctx,
        ClientCert::None,
        |c| matches!(c, Closed::Transport { code, .. } if *code == CERTIFICATE_REQUIRED),
        "transport close 0x174 (certificate_required)",
    )
    .await
}

async fn ecdsa_cert(ctx: &Ctx) -> Check {
    // An ECDSA key cannot sign with ed25519, the only scheme a server asks for, so a TLS 1.3
    // client has no certificate to offer: certificate_required. A server that sees the
    // certificate anyway refuses it with certificate_unknown (or bad_certificate), §2.2.
    refused_after_handshake(
        ctx,
        ClientCert::Ecdsa,
        |c| {
            matches!(c, Closed::Transport { code, .. }
                if [CERTIFICATE_REQUIRED, BAD_CERTIFICATE, CERTIFICATE_UNKNOWN].contains(code))
        },
        "transport close 0x174 (certificate_required), 0x12a or 0x12e (a refused certificate)",
    )
    .await
}

async fn no_resumption(ctx: &Ctx) -> Check {
    let options = ClientTls {
        resumption: true,
        ..ClientTls::pinned(ctx.target_id)
    };
    let id = &ctx.ids.device_a;
    let (config, _) = crate::tls::client_config(&id.seed, &options, client::transport())
        .map_err(|e| fail("a TLS configuration", e.to_string()))?;
    let first = ctx
        .endpoint
        .connect_with(config.clone(), ctx.addr(), crate::tls::SERVER_NAME)
        .map_err(|e| fail("a connection attempt", e.to_string()))?
        .await
        .map_err(|e| fail("a first connection", e.to_string()))?;
    // A whole round trip, so any ticket the server sends after its handshake has arrived.
    let conn = crate::client::Conn {
        conn: first,
        observed: Default::default(),
    };
    let (mut ctl, _) = ctx.session(&conn, id, Role::Device).await?;
    let _ = ctl.ask(&Msg::Pull { cursor: u64::MAX }).await;
    crate::bye(&mut ctl, &conn).await;
    let second = ctx
        .endpoint
        .connect_with(config, ctx.addr(), crate::tls::SERVER_NAME)
        .map_err(|e| fail("a connection attempt", e.to_string()))?;
    match second.into_0rtt() {
        Ok((c, _)) => {
            c.close(0u32.into(), b"done");
            Err(fail(
                "no session ticket (0-RTT impossible)",
                "the second connection resumed with 0-RTT",
            ))
        }
        Err(connecting) => {
            let c = tokio::time::timeout(client::CONNECT, connecting)
                .await
                .map_err(|_| fail("a full second handshake", "no handshake"))?
                .map_err(|e| fail("a full second handshake", e.to_string()))?;
            c.close(0u32.into(), b"done");
            Ok(())
        }
    }
}

async fn close_code(ctx: &Ctx) -> Check {
    let id: &Id = &ctx.ids.stranger;
    let conn = ctx.connect(id).await?;
    let mut ctl = conn
        .control()
        .await
        .map_err(|e| fail("a control stream", e.to_string()))?;
    let reply = ctl.ask(&ctx.hello(id, Role::Device)).await;
    expect_error(&reply, Code::NotEnrolled, "an unenrolled node")?;
    // The parent closes within its close grace (5 s in the reference) if the child does not.
    match conn.closed_within(Duration::from_secs(15)).await {
        Some(Closed::App { code, .. }) if code == Code::NotEnrolled.number() => Ok(()),
        Some(other) => Err(fail("application close 2 (NotEnrolled)", other.to_string())),
        None => Err(fail(
            "application close 2 (NotEnrolled) within 15 s",
            "the connection stayed open",
        )),
    }
}
