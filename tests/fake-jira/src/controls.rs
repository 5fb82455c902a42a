//! Settings and inspection a test uses on the fake beside the world itself: the version it
//! reports, search caps, scripted failures, registered webhooks, remote links, issue times,
//! and the deliveries of webhooks (sent, dropped, queued, repeated).

use serde_json::Value;

use crate::FakeJira;
use crate::events::{DeliveryMode, DeliveryRecord};
use crate::hooks::Webhook;

impl FakeJira {
    /// Switches what `serverInfo` reports (and so which webhook API answers), e.g.
    /// [`crate::VERSION_9`] or [`crate::VERSION`].
    pub fn set_version(&self, version: &str) {
        self.shared.world().version = version.to_owned();
    }

    /// Caps search pages at `cap` issues, as `jira.search.views.default.max` does.
    pub fn set_search_cap(&self, cap: u32) {
        self.shared.world().search_cap = cap;
    }

    /// The next `n` calls to search, remote links or webhook registration answer 429 with
    /// `Retry-After: <retry_after_secs>` and Jira DC's `X-RateLimit-*` headers.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        let mut world = self.shared.world();
        world.faults.rate_limited = n;
        world.faults.retry_after_secs = retry_after_secs;
    }

    /// The next `n` calls to search, remote links or webhook registration answer 503.
    pub fn fail_next(&self, n: usize) {
        self.shared.world().faults.unavailable = n;
    }

    /// The registered webhooks, secrets included.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.shared.world().webhooks.clone()
    }

    /// The remote links of an issue, as `GET .../remotelink` shows them.
    pub fn remote_links(&self, issue_key: &str) -> Vec<Value> {
        let world = self.shared.world();
        let Some(issue) = world.find_issue(issue_key) else {
            return Vec::new();
        };
        world
            .remote_links
            .iter()
            .filter(|l| l.issue_id == issue.id)
            .map(|l| crate::links::render(&self.base_url, &issue.key, l))
            .collect()
    }

    /// An issue's `updated`, in epoch milliseconds.
    pub fn issue_updated_ms(&self, issue_key: &str) -> i64 {
        self.shared.world().expect_issue(issue_key).updated_ms
    }

    /// Sets an issue's `updated` (epoch milliseconds), for arranging search results.
    pub fn set_issue_updated_ms(&self, issue_key: &str, ms: i64) {
        self.shared.world().expect_issue(issue_key).updated_ms = ms;
    }

    pub fn set_delivery(&self, mode: DeliveryMode) {
        self.shared.world().deliveries.mode = mode;
    }

    /// Every delivery sent so far, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.shared.world().deliveries.log.clone()
    }

    /// How many deliveries wait in the queue.
    pub fn queued_deliveries(&self) -> usize {
        self.shared.world().deliveries.queue.len()
    }

    /// Sends the queued deliveries in the given order (indexes into the queue; e.g. `[1, 0]`
    /// delivers the second change first) and empties the queue; unnamed ones are dropped.
    pub async fn deliver_queued(&self, order: &[usize]) -> Vec<DeliveryRecord> {
        let queue = std::mem::take(&mut self.shared.world().deliveries.queue);
        let mut sent = Vec::new();
        for &i in order {
            let delivery = queue
                .get(i)
                .unwrap_or_else(|| panic!("fake Jira: no queued delivery {i}"))
                .clone();
            sent.push(self.shared.send(delivery).await);
        }
        sent
    }

    /// Sends delivery `index` of [`FakeJira::deliveries`] again, byte for byte.
    pub async fn redeliver(&self, index: usize) -> DeliveryRecord {
        let delivery = self
            .deliveries()
            .get(index)
            .unwrap_or_else(|| panic!("fake Jira: no delivery {index}"))
            .clone();
        self.shared.send(delivery).await
    }
}
