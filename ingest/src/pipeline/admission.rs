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

/// Room held by one request; released on drop.
pub struct AdmissionPermit {
    _permit: OwnedSemaphorePermit,
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
        let units = (bytes.div_ceil(UNIT)).clamp(1, self.max_units as usize) as u32;
        let permit =
            tokio::time::timeout_at(deadline, self.budget.clone().acquire_many_owned(units))
                .await
                .map_err(|_| PipelineError::Overloaded)?
                .map_err(|_| PipelineError::ShuttingDown)?;
        self.metrics.in_flight_bytes_add(bytes as i64);
        Ok(AdmissionPermit {
            _permit: permit,
            bytes,
            metrics: self.metrics.clone(),
        })
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
    async fn a_request_larger_than_the_budget_takes_all_of_it_rather_than_never_fitting() {
        let admission = Admission::new(4 * UNIT, Arc::new(Metrics::default()));
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(admission.acquire(100 * UNIT, deadline).await.is_ok());
    }
}
