//! One connection of a `tcp` listener: the PROXY header when the listener
//! expects one, the source filter, an endpoint (connect retries and
//! redispatch happen before any byte is forwarded), a PROXY header toward the
//! endpoint when its backend sends one, then bytes both ways.

use super::counters::Open;
use super::forward::{self, LogContext};
use super::relay::{self, Ended};
use crate::compile::{CompiledTable, ListenerKind, canonical_client};
use crate::proxy_protocol;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A connection accepted by the `tcp` listener at `bind`, already counted
/// open and within `max_conn` (`open`); `table` was live at accept.
pub async fn serve(
    table: Arc<CompiledTable>,
    bind: SocketAddr,
    mut client: TcpStream,
    peer: SocketAddr,
    open: Open,
    stop: CancellationToken,
) {
    let Some(listener) = table.listener(bind) else {
        return;
    };
    let ListenerKind::Tcp(settings) = &listener.kind else {
        return;
    };
    let name = listener.name.clone();
    let counters = settings.counters.clone();
    let local = client.local_addr().unwrap_or(bind);

    // Who the client is: the peer, or whom a trusted PROXY header names.
    let mut first = Vec::new();
    let (source, destination) = if settings.accept_proxy.is_some() {
        if !settings.trusts(canonical_client(peer.ip())) {
            counters.proxy_header_rejected();
            debug!(listener = %name, %peer, "closing: PROXY headers are not accepted from this address");
            return;
        }
        match proxy_protocol::read_header(&mut client, settings.proxy_header_timeout).await {
            Ok((header, rest)) => {
                first = rest;
                match header.addresses {
                    Some(a) => (a.source, a.destination),
                    None => (peer, local),
                }
            }
            Err(e) => {
                counters.proxy_header_rejected();
                debug!(listener = %name, %peer, "closing: PROXY header: {e}");
                return;
            }
        }
    } else {
        (peer, local)
    };
    if !settings.access.admits(canonical_client(source.ip())) {
        counters.denied();
        debug!(listener = %name, %peer, client = %source, "closing: the client address is not admitted");
        return;
    }

    let Some(backend) = settings
        .target
        .backend
        .and_then(|ix| table.backends.get(ix))
    else {
        counters.connect_failed();
        debug!(listener = %name, %peer, "closing: the listener's backend is not defined");
        return;
    };
    let log = LogContext {
        listener: &name,
        route: &name,
        peer: source,
    };
    let hash = settings.target.hash(source);
    let Some((lease, upstream)) = forward::connect(backend, hash, &log).await else {
        counters.connect_failed();
        return;
    };
    let mut preamble = 0;
    if let Some(version) = backend.proxy_protocol {
        let mut header = proxy_protocol::encode(version.into(), source, destination);
        preamble = header.len();
        header.extend_from_slice(&first);
        first = header;
    }
    let backend_id = backend.id.clone();
    let endpoint = lease.endpoint().address.clone();
    let idle = settings.idle;
    // A long connection must not keep an old table alive; the lease holds
    // only the endpoint's runtime state.
    drop(table);
    let relayed = relay::relay(
        &client, &upstream, &first, preamble, idle, &*counters, &stop,
    )
    .await;
    drop(lease);
    drop(open);
    let how = match relayed.ended {
        Ended::Closed => "closed",
        Ended::Reset => "reset",
        Ended::Idle => "idle timeout",
        Ended::Stopped => "drain deadline",
    };
    debug!(listener = %name, backend = %backend_id, %endpoint, %peer, client = %source,
           up = relayed.up, down = relayed.down, "connection ended: {how}");
}

impl From<crate::table::ProxyProtocolVersion> for proxy_protocol::Version {
    fn from(version: crate::table::ProxyProtocolVersion) -> Self {
        match version {
            crate::table::ProxyProtocolVersion::V1 => Self::V1,
            crate::table::ProxyProtocolVersion::V2 => Self::V2,
        }
    }
}
