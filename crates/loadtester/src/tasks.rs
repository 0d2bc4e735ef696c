//! Runs webhook tasks: background `cmd` tasks (built-in load or `sh -c`), deduplicated per
//! (canary, command) like Flagger's task runner, and blocking commands for `bash`, `helm` and
//! `kubectl`; all under one bound on how many run at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::exec::{self, CommandOutput};
use crate::hey::LoadSpec;
use crate::load;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many tasks running (limit {0}); try again later")]
pub struct Busy(pub usize);

/// What a background task does.
#[derive(Debug)]
pub enum Work {
    Load(Box<LoadSpec>),
    Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Started,
    AlreadyRunning,
}

pub struct TaskRunner {
    timeout: Duration,
    max_tasks: usize,
    permits: Arc<Semaphore>,
    running: Mutex<HashSet<(String, String)>>,
    started: AtomicU64,
    finished_tx: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl TaskRunner {
    pub fn new(timeout: Duration, max_tasks: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            timeout,
            max_tasks,
            permits: Arc::new(Semaphore::new(max_tasks)),
            running: Mutex::default(),
            started: AtomicU64::new(0),
            finished_tx: watch::channel(0).0,
            metrics,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Background tasks started since the process began (duplicates not counted).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Counts background tasks as they finish; lets callers wait for completion without polling.
    pub fn finished(&self) -> watch::Receiver<u64> {
        self.finished_tx.subscribe()
    }

    /// Starts `cmd` for `canary` in the background unless the same one is still running.
    pub fn spawn(
        self: &Arc<Self>,
        canary: &str,
        cmd: &str,
        work: Work,
        log_output: bool,
    ) -> Result<Started, Busy> {
        let key = (canary.to_owned(), cmd.to_owned());
        let kind = match work {
            Work::Load(_) => "load",
            Work::Shell => "cmd",
        };
        let permit = {
            let mut running = self.lock_running();
            if running.contains(&key) {
                self.metrics.task(kind, "skipped");
                tracing::info!(canary, cmd, "command skipped, already running");
                return Ok(Started::AlreadyRunning);
            }
            let permit = self.permit(kind)?;
            running.insert(key.clone());
            permit
        };
        self.started.fetch_add(1, Ordering::SeqCst);
        self.metrics.task(kind, "started");
        self.metrics.running.inc();
        // Built before the spawn so that even a task dropped unpolled releases its key.
        let done = Finished {
            runner: Arc::clone(self),
            key,
            permit: Some(permit),
        };
        tokio::spawn(async move {
            let runner = &done.runner;
            let (canary, cmd) = (&done.key.0, &done.key.1);
            tracing::info!(canary, cmd, "command starting");
            let ok = match work {
                Work::Load(spec) => runner.run_load(canary, cmd, &spec, log_output).await,
                Work::Shell => {
                    let out = exec::run("sh", &["-c", cmd], runner.timeout).await;
                    log_result(canary, cmd, &out, log_output);
                    out.success()
                }
            };
            runner
                .metrics
                .task(kind, if ok { "succeeded" } else { "failed" });
        });
        Ok(Started::Started)
    }

    /// Runs a command to completion within the task timeout; the caller answers with its result.
    /// `cmd` is the task's command as the user wrote it, for the logs.
    pub async fn run_blocking(
        &self,
        kind: &str,
        canary: &str,
        cmd: &str,
        program: &str,
        args: &[&str],
    ) -> Result<CommandOutput, Busy> {
        let _permit = self.permit(kind)?;
        self.metrics.running.inc();
        tracing::info!(canary, cmd, "{kind} command starting");
        let out = exec::run(program, args, self.timeout).await;
        self.metrics.running.dec();
        // Flagger always logs the output of blocking commands.
        log_result(canary, cmd, &out, true);
        self.metrics
            .task(kind, if out.success() { "succeeded" } else { "failed" });
        Ok(out)
    }

    async fn run_load(&self, canary: &str, cmd: &str, spec: &LoadSpec, log_output: bool) -> bool {
        match load::run(spec, self.timeout).await {
            Ok(report) => {
                for (code, n) in &report.statuses {
                    self.metrics
                        .load_responses
                        .get_or_create(&crate::metrics::StatusLabels {
                            code: code.to_string(),
                        })
                        .inc_by(*n);
                }
                self.metrics.load_errors.inc_by(report.error_count());
                if log_output {
                    tracing::info!(canary, "{report}");
                }
                tracing::info!(
                    canary,
                    cmd,
                    responses = report.responses,
                    errors = report.error_count(),
                    "command finished"
                );
                // hey exits 0 whatever the responses were; only a load that could not run fails.
                true
            }
            Err(e) => {
                tracing::error!(canary, cmd, error = %e, "command failed");
                false
            }
        }
    }

    fn permit(&self, kind: &str) -> Result<OwnedSemaphorePermit, Busy> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            self.metrics.task(kind, "rejected");
            Busy(self.max_tasks)
        })
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        // The set is only inserted into or removed from, so a poisoned lock still holds valid data.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks a background task finished however it ends, so a panicking task cannot block its
/// (canary, cmd) forever.
struct Finished {
    runner: Arc<TaskRunner>,
    key: (String, String),
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        // Free the slot before announcing the end, so a waiter can start the next task at once.
        drop(self.permit.take());
        self.runner.lock_running().remove(&self.key);
        self.runner.metrics.running.dec();
        self.runner.finished_tx.send_modify(|n| *n += 1);
    }
}

fn log_result(canary: &str, cmd: &str, out: &CommandOutput, log_output: bool) {
    if out.success() {
        if log_output {
            tracing::info!(canary, "{}", out.output_text());
        }
        tracing::info!(canary, cmd, "command finished");
    } else {
        tracing::error!(
            canary,
            cmd,
            outcome = %out.outcome,
            output = %out.output_text(),
            "command failed"
        );
    }
}
