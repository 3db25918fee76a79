//! The lease steps of a scenario ([`Op::Receive`], [`Op::Park`], [`Op::Running`],
//! [`Op::Complete`], [`Op::CompleteAndReceive`], [`Op::CompleteAgain`], [`Op::Fail`],
//! [`Op::Throttle`], [`Op::Progress`]): applied, the deliveries and completions kept for later
//! steps to pick, and each answer recorded.

use switchyard_core::prelude::*;
use switchyard_core::{Ack, Error};

use super::runner::fatal;
use super::{Op, Runner};

/// The trace line of a call's answer, or the failure that stops the scenario (a backend error).
fn answer<T: std::fmt::Debug>(label: String, r: Result<T, Error>) -> Result<String, String> {
    match r {
        Ok(v) => Ok(format!("{label} -> {v:?}")),
        Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
        Err(e) => Ok(format!("{label} -> error: {e}")),
    }
}

impl<B: Backend> Runner<B> {
    pub(super) async fn apply_lease(&mut self, op: &Op) -> Result<String, String> {
        let line = match op {
            Op::Receive { worker, max } => {
                let worker = self.live_worker(*worker);
                let label = format!("receive w{worker} {max}");
                match self.backend.receive(&self.me(worker), *max).await {
                    Ok(ds) => {
                        self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
                        format!("{label} -> {ds:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Park { worker, max } => {
                let worker = self.live_worker(*worker);
                let label = format!("park w{worker} {max}");
                let asked = self
                    .backend
                    .receive_wait(&self.me(worker), *max, std::time::Duration::ZERO)
                    .await;
                match asked {
                    Ok(ds) => {
                        self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
                        format!("{label} -> {ds:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Running { worker } => {
                let worker = self.live_worker(*worker);
                let label = format!("running w{worker}");
                match self.backend.running(&self.me(worker)).await {
                    Ok(ds) => {
                        for d in &ds {
                            if !self.deliveries.contains(&d.lease) {
                                self.deliveries.push(d.lease.clone());
                            }
                        }
                        format!("{label} -> {ds:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Complete { pick } => {
                if self.deliveries.is_empty() {
                    "complete: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    let out = self
                        .backend
                        .complete(&lease, format!("done-{}", lease.task).into_bytes())
                        .await
                        .map_err(|e| format!("complete: {e}"))?;
                    if out.ack == Ack::Completed {
                        self.completed.push(lease.clone());
                    }
                    format!("complete {lease:?} -> {out:?}")
                }
            }
            Op::CompleteAndReceive { pick, max } => {
                if self.deliveries.is_empty() {
                    "complete-and-receive: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    let (out, ds) = self
                        .backend
                        .complete_and_receive(
                            &lease,
                            format!("done-{}", lease.task).into_bytes(),
                            *max,
                        )
                        .await
                        .map_err(|e| format!("complete-and-receive: {e}"))?;
                    if out.ack == Ack::Completed {
                        self.completed.push(lease.clone());
                    }
                    self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
                    format!("complete-and-receive {lease:?} {max} -> {out:?} {ds:?}")
                }
            }
            Op::CompleteAgain { pick } => {
                if self.completed.is_empty() {
                    "complete-again: nothing completed".to_string()
                } else {
                    let lease = self.completed[pick % self.completed.len()].clone();
                    let snap = self.snapshot().await?;
                    let out = self
                        .backend
                        .complete(&lease, b"again".to_vec())
                        .await
                        .map_err(|e| format!("complete again: {e}"))?;
                    if !matches!(out.ack, Ack::Rejected(_)) {
                        return Err(format!(
                            "second completion of {} accepted: {out:?}",
                            lease.task
                        ));
                    }
                    if self.snapshot().await? != snap {
                        return Err(format!("second completion of {} changed state", lease.task));
                    }
                    format!("complete again {lease:?} -> {out:?}")
                }
            }
            Op::Fail { pick, retry } => {
                if self.deliveries.is_empty() {
                    "fail: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    answer(
                        format!("fail {lease:?} retry {retry}"),
                        self.backend.fail(&lease, "boom", *retry).await,
                    )?
                }
            }
            Op::Throttle { pick, hold_ms } => {
                if self.deliveries.is_empty() {
                    "throttle: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    self.throttled.insert(lease.queue.clone());
                    answer(
                        format!("throttle {lease:?} hold {hold_ms}"),
                        self.backend
                            .throttle(&lease, std::time::Duration::from_millis(*hold_ms))
                            .await,
                    )?
                }
            }
            Op::Progress { pick, ppm, message } => {
                if self.deliveries.is_empty() {
                    "progress: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    let text = if *message { "step ✓ done" } else { "" };
                    let report = switchyard_core::Progress::from_ppm(*ppm, text)
                        .map_err(|e| format!("progress report: {e}"))?;
                    answer(
                        format!("progress {lease:?} {ppm} {text:?}"),
                        self.backend.progress(&lease, &report).await,
                    )?
                }
            }
            other => return Err(format!("not a lease step: {other:?}")),
        };
        Ok(line)
    }
}
