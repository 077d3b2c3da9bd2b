//! Paced load: a fixed number of GETs at a fixed rate over many keep-alive
//! connections, each outcome recorded with the time it was sent, so a test can
//! tell what happened before and after an event (a backend killed mid-run).

use crate::client::{self, fetch};
use http::StatusCode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What to send.
#[derive(Clone, Debug)]
pub struct PacedLoad {
    pub proxy: SocketAddr,
    pub path: String,
    /// Requests per second, over all connections.
    pub rate: u32,
    pub total: usize,
    /// Client tasks, each with its own keep-alive connection, sending one request
    /// at a time; request `k` is due at `k / rate` after the start, and the next
    /// free task sends it (late if every task is busy).
    pub connections: usize,
    /// Task `i` opens its connection no earlier than `i / connections × ramp`
    /// after the start, so hundreds of connections do not all open at once;
    /// requests due meanwhile go to the tasks already running.
    pub ramp: Duration,
}

/// One request.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    pub latency: Duration,
    /// The answering backend's name (`x-backend` on a 200), or what went wrong.
    pub outcome: Result<String, String>,
}

pub struct Running {
    started: Instant,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

impl PacedLoad {
    pub fn start(self) -> Running {
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let load = Arc::new(self);
        let tasks = (0..load.connections)
            .map(|i| {
                let (load, next) = (load.clone(), next.clone());
                let joins = started + load.ramp.mul_f64(i as f64 / load.connections.max(1) as f64);
                tokio::spawn(async move {
                    tokio::time::sleep_until(joins.into()).await;
                    let client = client::client();
                    let mut samples = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= load.total {
                            return samples;
                        }
                        let nanos = k as u128 * 1_000_000_000 / u128::from(load.rate.max(1));
                        let due = started + Duration::from_nanos(nanos as u64);
                        tokio::time::sleep_until(due.into()).await;
                        let sent = started.elapsed();
                        let outcome = match fetch(&client, load.proxy, None, &load.path).await {
                            Ok(reply) => match reply.backend() {
                                Some(b) if reply.status == StatusCode::OK => Ok(b.to_owned()),
                                _ => Err(format!("{}: {}", reply.status, reply.text())),
                            },
                            Err(e) => Err(format!("{e:#}")),
                        };
                        samples.push(Sample {
                            sent,
                            latency: started.elapsed() - sent,
                            outcome,
                        });
                    }
                })
            })
            .collect();
        Running { started, tasks }
    }
}

impl Running {
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits for every request; samples in the order sent.
    pub async fn finish(self) -> Report {
        let mut samples = Vec::new();
        for task in self.tasks {
            samples.extend(task.await.expect("load task panicked"));
        }
        samples.sort_by_key(|s| s.sent);
        Report {
            wall: self.started.elapsed(),
            samples,
        }
    }
}

pub struct Report {
    /// From the start until the last answer.
    pub wall: Duration,
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.outcome.is_err()).collect()
    }

    /// Answers per backend among the samples `which` selects.
    pub fn by_backend(&self, which: impl Fn(&Sample) -> bool) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| which(s)) {
            if let Ok(b) = &s.outcome {
                *out.entry(b.clone()).or_default() += 1;
            }
        }
        out
    }

    /// Requests per second from the start to the last request sent.
    pub fn send_rate(&self) -> f64 {
        let span = self.samples.last().map_or(Duration::ZERO, |s| s.sent);
        if span.is_zero() {
            return 0.0;
        }
        (self.samples.len() - 1) as f64 / span.as_secs_f64()
    }

    pub fn latencies(&self) -> Vec<Duration> {
        self.samples.iter().map(|s| s.latency).collect()
    }
}
