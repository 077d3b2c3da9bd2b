//! Active checks (`check inter … fastinter … downinter … rise … fall …`): one task
//! per checked endpoint state runs the backend's probe on the hysteresis's
//! schedule. `fall` failures in a row mark the endpoint down (it gets no new
//! requests; backups take over when no primary is left), `rise` successes mark
//! it up again and start its slow start. Every change is logged with its reason.
//!
//! The task holds only a `Weak` to the state and reads its settings from it each
//! round, so a table swap changes them in place. It ends as soon as the last
//! table using the endpoint drops it (the state's `gone` token) or the check is
//! removed (the endpoint is then up again: unchecked endpoints always are).

use super::hysteresis::Hysteresis;
use super::probe::{self, PhaseTracker, Report, Target};
use crate::balance::EndpointState;
use crate::compile::CompiledTable;
use crate::table::{HealthCheck, InitialState, Probe};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::time::Instant;
use tracing::{info, warn};

/// Counts running check tasks (one per proxy runtime), so tests can see that
/// checks stop with their endpoints.
#[derive(Debug, Default, Clone)]
pub struct CheckTasks(Arc<AtomicUsize>);

impl CheckTasks {
    pub fn running(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn enter(&self) -> TaskGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self.0.clone())
    }
}

struct TaskGuard(Arc<AtomicUsize>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One check's exchange; the network in production, a script in tests.
pub(crate) trait Prober: Send + Sync + 'static {
    fn probe<'a>(
        &'a self,
        probe: &'a Probe,
        target: &'a Target,
        phase: &'a PhaseTracker,
    ) -> impl Future<Output = Report> + Send + 'a;
}

struct Network;

impl Prober for Network {
    fn probe<'a>(
        &'a self,
        probe: &'a Probe,
        target: &'a Target,
        phase: &'a PhaseTracker,
    ) -> impl Future<Output = Report> + Send + 'a {
        probe::run(probe, target, phase)
    }
}

/// Starts checks the table asks for and that are not running yet, and tells
/// running checks of endpoints that no longer want one to stop.
pub fn start_checks(table: &CompiledTable, tasks: &CheckTasks) {
    start_with(table, tasks, &Arc::new(Network));
}

pub(crate) fn start_with<P: Prober>(table: &CompiledTable, tasks: &CheckTasks, prober: &Arc<P>) {
    for backend in &table.backends {
        let check = backend.health_check.clone().map(Arc::new);
        for member in backend.balancer.members() {
            let state = &member.state;
            let mut slot = state.health.lock().unwrap_or_else(|e| e.into_inner());
            slot.config = check.clone();
            let Some(check) = &check else {
                continue;
            };
            slot.status.probe = check.probe.name();
            if slot.running {
                continue;
            }
            slot.running = true;
            let first_time = slot.status.checks == 0;
            drop(slot);
            if first_time && check.initial == InitialState::Down {
                state.set_up(false);
            }
            let clock = backend.balancer.state.clone();
            let task = Task {
                state: Arc::downgrade(state),
                backend: backend.id.clone(),
                now_ms: move || clock.now_ms(),
                prober: prober.clone(),
                _guard: tasks.enter(),
            };
            tokio::spawn(task.run());
        }
    }
}

struct Task<P, C> {
    state: Weak<EndpointState>,
    backend: Arc<str>,
    now_ms: C,
    prober: Arc<P>,
    _guard: TaskGuard,
}

impl<P: Prober, C: Fn() -> u64 + Send + 'static> Task<P, C> {
    async fn run(self) {
        let mut history = Hysteresis::default();
        let Some((check, _)) = self.current() else {
            return;
        };
        // The first check comes at a random point of the first interval, so
        // the checks of many endpoints do not align.
        let mut next = Instant::now() + check.interval.to_std().mul_f64(fastrand::f64());
        loop {
            let Some(gone) = self.state.upgrade().map(|s| s.gone.clone()) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = gone.cancelled() => return,
            }
            // The table may have changed or dropped the check meanwhile.
            let Some((check, target)) = self.current() else {
                return;
            };
            let started = Instant::now();
            let phase = PhaseTracker::default();
            let exchange = tokio::time::timeout(
                check.timeout().to_std(),
                self.prober.probe(&check.probe, &target, &phase),
            );
            let report = tokio::select! {
                result = exchange => result.unwrap_or_else(|_| phase.timed_out(check.timeout())),
                _ = gone.cancelled() => return,
            };
            let Some(endpoint) = self.state.upgrade() else {
                return;
            };
            self.record(&endpoint, &mut history, &check, &target, &report);
            let wait = history.next_interval(endpoint.checks_up(), &check);
            next = (started + wait.to_std()).max(Instant::now());
        }
    }

    fn record(
        &self,
        endpoint: &EndpointState,
        history: &mut Hysteresis,
        check: &HealthCheck,
        target: &Target,
        report: &Report,
    ) {
        let passed = report.code.passed();
        let change = history.record(passed, endpoint.checks_up(), check);
        let changed = change.is_some_and(|up| endpoint.set_up(up));
        let up = endpoint.checks_up();
        let mut slot = endpoint.health.lock().unwrap_or_else(|e| e.into_inner());
        let status = &mut slot.status;
        status.checks += 1;
        if !passed {
            status.failures += 1;
        }
        status.code = report.code.as_str();
        status.last = report.to_string();
        status.state = history.describe(up, check);
        if !changed {
            return;
        }
        let endpoint_name = &endpoint.address;
        let probe = check.probe.name();
        if up {
            drop(slot);
            endpoint.start_ramp((self.now_ms)());
            info!(backend = %self.backend, endpoint = %endpoint_name, check = probe, port = target.port,
                  "endpoint is UP ({report}, {} checks passed)", check.rise);
        } else {
            status.downs += 1;
            status.last_down = Some(format!("{report} ({} checks failed)", check.fall));
            drop(slot);
            warn!(backend = %self.backend, endpoint = %endpoint_name, check = probe, port = target.port,
                  "endpoint is DOWN ({report}, {} checks failed)", check.fall);
        }
    }

    /// The check the latest table wants for this endpoint; `None` ends the task.
    fn current(&self) -> Option<(Arc<HealthCheck>, Target)> {
        let endpoint = self.state.upgrade()?;
        let mut slot = endpoint.health.lock().unwrap_or_else(|e| e.into_inner());
        match &slot.config {
            Some(check) => Some((check.clone(), Target::new(&endpoint.address, check.port))),
            None => {
                slot.running = false;
                slot.status = Default::default();
                drop(slot);
                // Unchecked endpoints are always considered up.
                endpoint.set_up(true);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::runtime::Runtime;
    use crate::table::from_yaml_str;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU8;
    use tokio::time::Instant;

    const HEALTHY: u8 = 0;
    const FAILING: u8 = 1;
    const SILENT: u8 = 2;

    /// Answers as `mode` says and notes when each check started.
    #[derive(Default)]
    struct Script {
        mode: AtomicU8,
        calls: Mutex<Vec<Instant>>,
    }

    impl Script {
        fn set(&self, mode: u8) {
            self.mode.store(mode, Ordering::SeqCst);
        }
        fn calls(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Prober for Script {
        fn probe<'a>(
            &'a self,
            _: &'a Probe,
            _: &'a Target,
            phase: &'a PhaseTracker,
        ) -> impl Future<Output = Report> + Send + 'a {
            self.calls.lock().unwrap().push(Instant::now());
            let mode = self.mode.load(Ordering::SeqCst);
            async move {
                match mode {
                    HEALTHY => Report::new(probe::Code::L7Ok, "fine"),
                    FAILING => Report::new(probe::Code::L7Sts(503), "HTTP/1.1 503"),
                    _ => {
                        phase.set(probe::Phase::Reply);
                        std::future::pending().await
                    }
                }
            }
        }
    }

    fn table(endpoints: std::ops::Range<u16>, check: &str) -> String {
        let mut yaml = format!("backends:\n  b:\n    {check}\n    endpoints:\n");
        for port in endpoints {
            yaml.push_str(&format!("      - address: 127.0.0.1:{}\n", 20000 + port));
        }
        yaml
    }

    const CHECK: &str = "health_check: {interval: 2s, fast_interval: 500ms, down_interval: 5s, \
                         timeout: 1s, rise: 2, fall: 3}";

    /// `yaml` compiled, with its checks started against `script`.
    fn checked(runtime: &Runtime, yaml: &str, script: &Arc<Script>) -> CompiledTable {
        let table = compile(from_yaml_str(yaml).unwrap(), runtime).unwrap();
        start_with(&table, &runtime.checks, script);
        table
    }

    fn first_endpoint(table: &CompiledTable) -> Arc<EndpointState> {
        table.backends[0]
            .balancer
            .members()
            .next()
            .unwrap()
            .state
            .clone()
    }

    fn gaps(calls: &[Instant]) -> Vec<u64> {
        calls
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checks_follow_interval_fastinter_and_downinter() {
        let runtime = Runtime::default();
        let script = Arc::new(Script::default());
        let compiled = checked(&runtime, &table(0..1, CHECK), &script);
        let state = first_endpoint(&compiled);

        until("three healthy checks", || script.calls().len() == 3).await;
        assert_eq!(gaps(&script.calls()), [2000, 2000], "`interval` while up");

        script.set(FAILING);
        until("down", || !state.is_up()).await;
        let calls = script.calls();
        assert_eq!(calls.len(), 6, "fall = 3 failures");
        assert_eq!(
            gaps(&calls)[2..],
            [2000, 500, 500],
            "`fast_interval` while going down"
        );
        let status = state.health.lock().unwrap().status().unwrap();
        assert_eq!(status.state, "DOWN");
        assert_eq!(status.code, "L7STS");
        assert_eq!(status.last, "L7STS 503: HTTP/1.1 503");
        assert_eq!(status.downs, 1);
        assert_eq!(status.failures, 3);

        until("two checks while down", || script.calls().len() == 8).await;
        assert_eq!(
            gaps(&script.calls())[5..],
            [5000, 5000],
            "`down_interval` while down"
        );

        script.set(HEALTHY);
        until("up", || state.is_up()).await;
        let calls = script.calls();
        assert_eq!(calls.len(), 10, "rise = 2 successes");
        assert_eq!(
            gaps(&calls)[7..],
            [5000, 500],
            "`fast_interval` while going up"
        );
        until("one more check", || script.calls().len() == 11).await;
        assert_eq!(gaps(&script.calls())[9], 2000, "back to `interval`");

        // A silent endpoint fails by the timeout, named by the silent layer.
        script.set(SILENT);
        until("down again", || !state.is_up()).await;
        let status = state.health.lock().unwrap().status().unwrap();
        assert_eq!(status.last, "L7TOUT: no answer within 1s");
        assert_eq!(status.downs, 2);
        // Each silent check ends at its timeout; the next starts 500 ms after
        // the previous one started, or at once when the timeout is longer.
        assert_eq!(gaps(&script.calls())[10..], [2000, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn initial_down_waits_for_rise_checks() {
        let runtime = Runtime::default();
        let check = "health_check: {interval: 1s, rise: 3, initial: down}";
        let script = Arc::new(Script::default());
        let compiled = checked(&runtime, &table(0..1, check), &script);
        let state = first_endpoint(&compiled);
        assert!(!state.is_up(), "down before any check");
        until("up", || state.is_up()).await;
        assert_eq!(script.calls().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_start_and_stop_with_their_endpoints_and_state_survives_swaps() {
        let runtime = Runtime::default();
        let script = Arc::new(Script::default());
        script.set(FAILING);
        let all = checked(&runtime, &table(0..20, CHECK), &script);
        assert_eq!(runtime.checks.running(), 20);
        // Starting again (the same table applied twice) starts nothing new.
        start_with(&all, &runtime.checks, &script);
        assert_eq!(runtime.checks.running(), 20);
        let first = first_endpoint(&all);
        until("the first endpoint down", || !first.is_up()).await;

        // A table keeping five endpoints: the others' tasks end when the old
        // table goes; the kept ones keep their state and task.
        let five = checked(&runtime, &table(0..5, CHECK), &script);
        assert_eq!(runtime.checks.running(), 20);
        let kept = first_endpoint(&five);
        assert!(Arc::ptr_eq(&kept, &first), "state is keyed by address");
        drop(first);
        drop(all);
        until("15 tasks to end", || runtime.checks.running() == 5).await;
        assert!(!kept.is_up(), "health survives the swap");

        // Without a check the tasks end at their next turn and the endpoints
        // count as up.
        let unchecked = checked(&runtime, &table(0..5, "retries: 3"), &script);
        drop(five);
        until("the unchecked tasks to end", || {
            runtime.checks.running() == 0
        })
        .await;
        assert!(kept.is_up());
        assert!(kept.health.lock().unwrap().status().is_none());

        // Checks come back with the setting; a table going away ends them.
        let again = checked(&runtime, &table(0..5, CHECK), &script);
        assert_eq!(runtime.checks.running(), 5);
        drop((again, unchecked, kept));
        until("every task to end", || runtime.checks.running() == 0).await;
    }
}
