//! The supervised pool of job workers. (Skeleton: filled in by the job-queue work.)

/// A running pool of workers on this instance.
pub struct Workers;
