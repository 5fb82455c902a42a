//! What a test does to the fake once it is set up (`setup.rs`): the signed-in user, grants
//! and token lifetimes, the clock, per-user visibility, files and folders put and read
//! directly, counters and scripted failures.
//!
//! Every method panics on an unknown id: a test that names something it never added is wrong.

use bytes::Bytes;
use serde_json::Value;

use crate::FakeGraph;
use crate::faults::{FragmentFault, RequestClass, Throttle};
use crate::graph::json;
use crate::world::{Access, AuthorizeOutcome, Kind};

impl FakeGraph {
    /// The user the "browser" is signed in as for `/authorize`.
    pub fn sign_in(&self, user_id: &str) {
        let mut world = self.shared.world();
        assert!(
            world.users.contains_key(user_id),
            "fake Graph: no user {user_id}"
        );
        world.signed_in = Some(user_id.to_owned());
    }

    pub fn sign_out(&self) {
        self.shared.world().signed_in = None;
    }

    /// What the next `/authorize` request does (then [`AuthorizeOutcome::Approve`] again).
    pub fn script_authorize(&self, outcome: AuthorizeOutcome) {
        self.shared.world().authorize_script.push_back(outcome);
    }

    /// Revokes the user's grants (as "Revoke sessions" does): their refresh tokens are refused
    /// with AADSTS50173; access tokens already issued keep working until they expire.
    pub fn revoke_grant(&self, user_id: &str) {
        *self
            .shared
            .world()
            .grant_generation
            .entry(user_id.to_owned())
            .or_default() += 1;
    }

    /// Marks the user's refresh tokens expired (AADSTS700082).
    pub fn expire_refresh_tokens(&self, user_id: &str) {
        for token in self
            .shared
            .world()
            .refresh_tokens
            .values_mut()
            .filter(|t| t.user == user_id)
        {
            token.expired = true;
        }
    }

    /// Expires every access token issued so far (Graph answers 401 to them).
    pub fn expire_access_tokens(&self) {
        let mut world = self.shared.world();
        let now = world.now();
        for token in world.access_tokens.values_mut() {
            token.expires_at = now;
        }
    }

    /// `expires_in` of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, secs: i64) {
        self.shared.world().settings.access_token_lifetime = secs;
    }

    /// Whether a used refresh token is refused (default `true`, stricter than Entra ID).
    pub fn set_refresh_single_use(&self, on: bool) {
        self.shared.world().settings.refresh_single_use = on;
    }

    /// Moves the fake's clock forward (codes, tokens, assertions, upload sessions).
    pub fn advance_clock(&self, secs: i64) {
        self.shared.world().clock_offset += secs;
    }

    /// Sets what a user may do in a subtree of a drive: `Some(access)` grants it, `None` hides
    /// the subtree (items answer 404 and are left out of listings). The nearest rule on the
    /// item or an ancestor applies.
    pub fn set_visibility(
        &self,
        user_id: &str,
        drive_id: &str,
        item_id: &str,
        access: Option<Access>,
    ) {
        let key = (drive_id.to_owned(), item_id.to_owned());
        self.shared
            .world()
            .visibility
            .entry(user_id.to_owned())
            .or_default()
            .insert(key, access);
    }

    pub fn root_id(&self, drive_id: &str) -> String {
        self.shared
            .world()
            .drive(drive_id)
            .unwrap_or_else(|| panic!("fake Graph: no drive {drive_id}"))
            .root
            .clone()
    }

    /// Creates the folders of `path` (`/a/b`) that are missing; returns the last one's id.
    /// Names are not checked: a test may put what SharePoint would refuse.
    pub fn put_folder(&self, drive_id: &str, path: &str) -> String {
        let mut world = self.shared.world();
        let mut current = world
            .drive(drive_id)
            .unwrap_or_else(|| panic!("fake Graph: no drive {drive_id}"))
            .root
            .clone();
        for name in path.split('/').filter(|s| !s.is_empty()) {
            if let Some(child) = world.drives[drive_id].child(&current, name) {
                current = child.id.clone();
                continue;
            }
            let item = crate::graph::mutate::new_item(
                &mut world,
                &current,
                name,
                Kind::Folder(Default::default()),
            );
            current = item.id.clone();
            world.drive_mut(drive_id).insert(item);
        }
        current
    }

    /// Moves or renames the item at `from` to `to` (`/a/b`; `to`'s parent folders are made),
    /// as a person would in SharePoint: the item keeps its id. Panics when `from` is missing
    /// or `to` is taken.
    pub fn move_item(&self, drive_id: &str, from: &str, to: &str) {
        let (folder, name) = to
            .trim_end_matches('/')
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("fake Graph: `{to}` is not a path"));
        let parent = self.put_folder(drive_id, folder);
        let mut world = self.shared.world();
        let id = world.drives[drive_id]
            .walk(
                &world.drives[drive_id].root,
                &from
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|| panic!("fake Graph: nothing at {from}"))
            .id
            .clone();
        assert!(
            world.drives[drive_id].child(&parent, name).is_none(),
            "fake Graph: {to} is taken"
        );
        let now = world.now();
        world.drive_mut(drive_id).relink(&id, &parent, name, now);
    }

    /// Stores a file at `path`, creating folders as needed and replacing an existing file;
    /// returns its id.
    pub fn put_file(&self, drive_id: &str, path: &str, content: impl Into<Bytes>) -> String {
        let (folder, name) = path
            .trim_start_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", path.trim_start_matches('/')));
        let parent = self.put_folder(drive_id, folder);
        let mut world = self.shared.world();
        let placement = crate::graph::mutate::place(
            &world.drives[drive_id],
            &parent,
            name,
            crate::graph::Conflict::Replace,
        )
        .expect("replace never fails");
        crate::graph::mutate::put_file(
            &mut world,
            drive_id,
            &parent,
            placement,
            content.into(),
            json::mime_for(name),
        )
        .0
    }

    /// The id of the item at `path` (`/` for the root).
    pub fn item_id(&self, drive_id: &str, path: &str) -> Option<String> {
        let world = self.shared.world();
        let drive = world.drive(drive_id)?;
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        drive.walk(&drive.root, &segments).map(|i| i.id.clone())
    }

    /// A file's content, by path.
    pub fn file_bytes(&self, drive_id: &str, path: &str) -> Option<Bytes> {
        let id = self.item_id(drive_id, path)?;
        match &self.shared.world().drive(drive_id)?.item(&id)?.kind {
            Kind::File { content, .. } => Some(content.clone()),
            Kind::Folder(_) => None,
        }
    }

    /// An item's metadata as Graph would answer it, by path.
    pub fn item_json(&self, drive_id: &str, path: &str) -> Option<Value> {
        let id = self.item_id(drive_id, path)?;
        let world = self.shared.world();
        let drive = world.drive(drive_id)?;
        Some(json::item(&world, &self.base_url, drive, drive.item(&id)?))
    }

    /// Requests to the token endpoint, answered or not.
    pub fn token_requests(&self) -> usize {
        self.shared.world().counters.token_requests
    }

    /// Token requests with this `grant_type` (`client_credentials`, `authorization_code`,
    /// `refresh_token`), answered or not (throttled ones included).
    pub fn token_requests_for(&self, grant_type: &str) -> usize {
        let world = self.shared.world();
        world
            .counters
            .token_requests_by_grant
            .get(grant_type)
            .copied()
            .unwrap_or(0)
    }

    /// Tokens issued (successful token requests).
    pub fn tokens_issued(&self) -> usize {
        self.shared.world().counters.tokens_issued
    }

    pub fn graph_requests(&self) -> usize {
        self.shared.world().counters.graph_requests
    }

    /// Upload-session fragments that passed the checks (including ones failed by a fault).
    pub fn fragments_received(&self) -> usize {
        self.shared.world().counters.fragments_received
    }

    pub fn throttled_requests(&self) -> usize {
        self.shared.world().counters.throttled
    }

    pub fn downloads(&self) -> usize {
        self.shared.world().counters.downloads
    }

    /// Open upload sessions.
    pub fn upload_sessions(&self) -> usize {
        self.shared.world().uploads.len()
    }

    /// The next `n` requests of class `only` answer `status` (429 or 503) with
    /// `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: usize, status: u16, retry_after_secs: u64, only: RequestClass) {
        self.shared.world().faults.throttles.push(Throttle {
            status,
            retry_after: retry_after_secs,
            remaining: n,
            only,
        });
    }

    /// The next download through a pre-authenticated URL sends `bytes` of its body and then
    /// stays silent, the connection open.
    pub fn stall_next_download(&self, bytes: usize) {
        self.shared.world().faults.stall_download_after = Some(bytes);
    }

    /// The `nth` fragment PUT from now (1 = the next one) fails with `fault` after its bytes
    /// arrive; none of them are kept.
    pub fn fail_fragment(&self, nth: usize, fault: FragmentFault) {
        let mut world = self.shared.world();
        let at = world.counters.fragments_received + nth;
        world.faults.fragments.insert(at, fault);
    }
}
