//! Admission by bytes: a request takes room from a byte budget before its events enter the
//! pipeline and gives it back when it is answered. When the budget stays full past the request's
//! deadline the request is shed (503), so memory stays bounded however hard clients push.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::PipelineError;
use crate::telemetry::Metrics;

/// Budget unit: semaphores count permits in u32, so bytes are counted in KiB.
const UNIT: usize = 1024;

#[derive(Clone)]
pub struct Admission {
    budget: Arc<Semaphore>,
    max_units: u32,
    metrics: Arc<Metrics>,
}

/// Room held by one request; released on drop. It can grow as the request's body is read and
/// decompressed, so bytes count against the budget from the moment they are held.
pub struct AdmissionPermit {
    /// `None` until the first bytes are admitted.
    permit: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    max_units: u32,
    bytes: usize,
    metrics: Arc<Metrics>,
}

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        self.metrics.in_flight_bytes_add(-(self.bytes as i64));
    }
}

impl Admission {
    pub fn new(max_bytes: usize, metrics: Arc<Metrics>) -> Admission {
        let max_units =
            (max_bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
        Admission {
            budget: Arc::new(Semaphore::new(max_units as usize)),
            max_units,
            metrics,
        }
    }

    pub async fn acquire(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Result<AdmissionPermit, PipelineError> {
        let mut permit = self.empty();
        permit.grow_to(bytes.max(1), deadline).await?;
        Ok(permit)
    }

    /// A permit holding nothing yet, to [`AdmissionPermit::grow_to`] as a body arrives.
    pub fn empty(&self) -> AdmissionPermit {
        AdmissionPermit {
            permit: None,
            budget: self.budget.clone(),
            max_units: self.max_units,
            bytes: 0,
            metrics: self.metrics.clone(),
        }
    }
}

impl AdmissionPermit {
    /// Holds room for `bytes` in all, waiting at most until `deadline` for the difference. A
    /// request larger than the whole budget takes all of it rather than never fitting.
    pub async fn grow_to(&mut self, bytes: usize, deadline: Instant) -> Result<(), PipelineError> {
        let missing = self.missing_units(bytes);
        if missing > 0 {
            let more =
                tokio::time::timeout_at(deadline, self.budget.clone().acquire_many_owned(missing))
                    .await
                    .map_err(|_| PipelineError::Overloaded)?
                    .map_err(|_| PipelineError::ShuttingDown)?;
            match &mut self.permit {
                Some(held) => held.merge(more),
                None => self.permit = Some(more),
            }
        }
        self.count(bytes);
        Ok(())
    }

    /// [`AdmissionPermit::grow_to`] from a thread of the blocking pool (decompression).
    pub fn grow_to_blocking(
        &mut self,
        runtime: &tokio::runtime::Handle,
        bytes: usize,
        deadline: Instant,
    ) -> Result<(), PipelineError> {
        if self.missing_units(bytes) == 0 {
            self.count(bytes);
            return Ok(());
        }
        runtime.block_on(self.grow_to(bytes, deadline))
    }

    /// Bytes this permit holds room for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn missing_units(&self, bytes: usize) -> u32 {
        let wanted = bytes.div_ceil(UNIT).min(self.max_units as usize) as u32;
        let held = self
            .permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        wanted.saturating_sub(held as u32)
    }

    fn count(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.metrics
                .in_flight_bytes_add((bytes - self.bytes) as i64);
            self.bytes = bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_budget_sheds_at_the_deadline_and_frees_on_drop() {
        let admission = Admission::new(10 * UNIT, Arc::new(Metrics::default()));
        let soon = || Instant::now() + Duration::from_millis(50);
        let held = admission.acquire(8 * UNIT, soon()).await.unwrap();
        assert!(matches!(
            admission.acquire(4 * UNIT, soon()).await,
            Err(PipelineError::Overloaded)
        ));
        drop(held);
        assert!(admission.acquire(4 * UNIT, soon()).await.is_ok());
    }

    #[tokio::test]
    async fn a_growing_permit_counts_against_the_budget_and_frees_it_all_on_drop() {
        let admission = Admission::new(10 * UNIT, Arc::new(Metrics::default()));
        let soon = || Instant::now() + Duration::from_millis(50);
        let mut growing = admission.empty();
        growing.grow_to(3 * UNIT, soon()).await.unwrap();
        growing.grow_to(6 * UNIT, soon()).await.unwrap();
        assert_eq!(growing.bytes(), 6 * UNIT);
        assert!(matches!(
            admission.acquire(5 * UNIT, soon()).await,
            Err(PipelineError::Overloaded)
        ));
        drop(growing);
        assert!(admission.acquire(10 * UNIT, soon()).await.is_ok());
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_all_of_it_rather_than_never_fitting() {
        let admission = Admission::new(4 * UNIT, Arc::new(Metrics::default()));
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(admission.acquire(100 * UNIT, deadline).await.is_ok());
    }
}
