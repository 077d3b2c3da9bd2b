//! TCP connect (`check` with no `option`): accepted means up.

use super::{Code, Phase, PhaseTracker, Report, Target};
use tokio::net::TcpStream;

pub async fn check(target: &Target, phase: &PhaseTracker) -> Report {
    match connect(target, phase).await {
        Ok(_) => Report::new(Code::L4Ok, ""),
        Err(report) => report,
    }
}

/// A connection to the target, or the `L4CON` report naming why not. Leaves the
/// phase at `Reply` on success, for probes that go on talking.
pub async fn connect(target: &Target, phase: &PhaseTracker) -> Result<TcpStream, Report> {
    phase.set(Phase::Connect);
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| Report::new(Code::L4Con, e.to_string()))?;
    // Checks are small exchanges: no reason to wait for more to coalesce.
    let _ = stream.set_nodelay(true);
    phase.set(Phase::Reply);
    Ok(stream)
}
