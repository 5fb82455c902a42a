//! Scripted failures: throttling (429 or 503 with `Retry-After`, as Microsoft Graph's
//! throttling guidance describes, https://learn.microsoft.com/graph/throttling) for the next N
//! requests of a class, and failures of chosen upload-session fragments.

use std::collections::BTreeMap;

/// Which requests a scripted throttle applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// Every request, including the token endpoint and pre-authenticated URLs.
    Any,
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token,
    /// Any Graph (`/v1.0/...`) request.
    Graph,
    /// Graph `GET` requests (metadata, listings, `/content` redirects).
    GraphRead,
    /// Graph requests that change something (`PUT`, `POST`, `PATCH`, `DELETE`).
    GraphWrite,
    /// Requests to an upload session's `uploadUrl`.
    UploadUrl,
    /// Requests to a pre-authenticated download URL.
    Download,
}

impl RequestClass {
    pub(crate) fn covers(self, actual: RequestClass, write: bool) -> bool {
        match self {
            RequestClass::Any => true,
            RequestClass::Graph => matches!(actual, RequestClass::Graph),
            RequestClass::GraphRead => actual == RequestClass::Graph && !write,
            RequestClass::GraphWrite => actual == RequestClass::Graph && write,
            other => other == actual,
        }
    }
}

/// How an upload-session fragment fails ([`crate::FakeGraph::fail_fragment`]). In every case
/// the fragment's bytes are received and then discarded, so the session still expects them:
/// as Graph documents, "if an upload request is disconnected or fails before the request is
/// completed, all bytes in that request are ignored".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentFault {
    /// Answer with this status (500 `generalException` or 503 `serviceNotAvailable`).
    Status(u16),
    /// Close the connection without a complete answer.
    Drop,
}

#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    pub status: u16,
    pub retry_after: u64,
    pub remaining: usize,
    pub only: RequestClass,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub(crate) throttles: Vec<Throttle>,
    /// Fragment number (counting every fragment PUT the fake has received, from 1) → fault.
    pub(crate) fragments: BTreeMap<usize, FragmentFault>,
    /// The next download sends this many bytes of its body, then nothing more while the
    /// connection stays open (a server gone silent mid-body).
    pub(crate) stall_download_after: Option<usize>,
}

impl Faults {
    /// Takes one scripted throttle that covers this request, if any: `(status, retry-after)`.
    pub(crate) fn take_throttle(&mut self, class: RequestClass, write: bool) -> Option<(u16, u64)> {
        let throttle = self
            .throttles
            .iter_mut()
            .find(|t| t.remaining > 0 && t.only.covers(class, write))?;
        throttle.remaining -= 1;
        let answer = (throttle.status, throttle.retry_after);
        self.throttles.retain(|t| t.remaining > 0);
        Some(answer)
    }
}
