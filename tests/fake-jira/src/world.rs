//! The fake Jira's data: users, credentials, projects, issues and who may do what.
//!
//! Everything lives behind one `std::sync::Mutex` in [`crate::FakeJira`]; nothing here awaits,
//! so the lock is never held across a suspension point.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::events::Deliveries;
use crate::hooks::Webhook;
use crate::links::RemoteLinkRecord;
use crate::permissions::{self, Permission, Scope};

/// The first generated user key is `JIRAUSER10100`, as on a fresh Jira DC.
const FIRST_USER_ID: u64 = 10100;
/// Jira numbers projects from 10000 and issues from 10000 too; issues start at 10100 here so a
/// test can't confuse a project id with an issue id by accident.
const FIRST_PROJECT_ID: u64 = 10000;
const FIRST_ISSUE_ID: u64 = 10100;

#[derive(Debug, Clone)]
pub struct User {
    pub key: String,
    pub name: String,
    pub display_name: String,
    pub email: String,
    pub active: bool,
    pub groups: BTreeSet<String>,
    /// Modern keys of the global permissions granted directly.
    pub global: BTreeSet<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: u64,
    pub key: String,
    pub name: String,
    /// The highest issue number given in the project (Jira's `pcounter`): a new issue gets
    /// the next one, and numbers of deleted or moved-away issues are never reused.
    pub counter: u64,
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub key: String,
    pub project_id: u64,
    pub summary: String,
    /// An issue security level: when set, only these user names may see the issue.
    pub restricted_to: Option<BTreeSet<String>>,
    /// Epoch milliseconds, from the world's clock.
    pub created_ms: i64,
    /// Epoch milliseconds; moved forward by every change, as Jira's `updated`.
    pub updated_ms: i64,
}

/// What a request may be asking for permissions about (`mypermissions`' query).
#[derive(Debug, Clone, Copy)]
pub enum Context {
    Global,
    Project(u64),
    Issue(u64),
}

#[derive(Debug)]
pub struct World {
    pub users: BTreeMap<String, User>,
    /// Personal access tokens, `JSESSIONID` values and `seraph.rememberme.cookie` values,
    /// each mapped to a user name. Kept apart because a token is never valid as a cookie.
    pub tokens: HashMap<String, String>,
    pub sessions: HashMap<String, String>,
    pub remember_me: HashMap<String, String>,
    pub projects: BTreeMap<u64, Project>,
    pub issues: BTreeMap<u64, Issue>,
    /// Current and former issue keys (upper case) → issue id: Jira still finds a moved issue
    /// by its old key and answers with the new one.
    pub issue_keys: HashMap<String, u64>,
    /// (user name, project id, modern permission key).
    pub project_grants: BTreeSet<(String, u64, &'static str)>,
    pub calls: HashMap<String, usize>,
    pub last_headers: HashMap<String, Vec<(String, String)>>,
    pub unavailable: bool,
    /// The announcement banner's HTML (Administration → System → Announcement banner).
    pub announcement_banner: Option<String>,
    /// What `serverInfo` reports; decides which webhook API answers.
    pub version: String,
    /// Jira's `jira.search.views.default.max`: the most issues a search page holds.
    pub search_cap: u32,
    pub webhooks: Vec<Webhook>,
    pub remote_links: Vec<RemoteLinkRecord>,
    pub faults: Faults,
    pub deliveries: Deliveries,
    pub(crate) next_webhook: u64,
    pub(crate) next_remote_link: u64,
    pub(crate) next_changelog: u64,
    clock_ms: i64,
    next_user: u64,
    next_project: u64,
    next_issue: u64,
}

/// Failures scripted for the endpoints of background work (search, remote links, webhook
/// registration); identity and permission calls are not affected.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next this many calls answer 429 with rate-limit headers.
    pub rate_limited: usize,
    pub retry_after_secs: u64,
    /// The next this many calls answer 503.
    pub unavailable: usize,
}

impl Default for World {
    fn default() -> Self {
        World {
            users: BTreeMap::new(),
            tokens: HashMap::new(),
            sessions: HashMap::new(),
            remember_me: HashMap::new(),
            projects: BTreeMap::new(),
            issues: BTreeMap::new(),
            issue_keys: HashMap::new(),
            project_grants: BTreeSet::new(),
            calls: HashMap::new(),
            last_headers: HashMap::new(),
            unavailable: false,
            announcement_banner: None,
            version: crate::json::VERSION.to_owned(),
            search_cap: 1000,
            webhooks: Vec::new(),
            remote_links: Vec::new(),
            faults: Faults::default(),
            deliveries: Deliveries::default(),
            next_webhook: 1,
            next_remote_link: 10000,
            next_changelog: 10000,
            clock_ms: 0,
            next_user: FIRST_USER_ID,
            next_project: FIRST_PROJECT_ID,
            next_issue: FIRST_ISSUE_ID,
        }
    }
}

// The setters panic on misuse (unknown user, duplicate key...): they are only called by test
// set-up code, where a loud failure at the mistake beats a confusing 401 later.
impl World {
    /// The world's clock: wall time in epoch milliseconds, but strictly increasing, so every
    /// change has its own `updated` and ordering by it is never ambiguous.
    pub fn tick(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.clock_ms = now.max(self.clock_ms + 1);
        self.clock_ms
    }

    pub fn add_user(&mut self, name: &str, display_name: &str) -> String {
        assert!(
            !self.users.contains_key(name),
            "fake Jira: user {name:?} already exists"
        );
        let key = format!("JIRAUSER{}", self.next_user);
        self.next_user += 1;
        let user = User {
            key: key.clone(),
            name: name.to_owned(),
            display_name: display_name.to_owned(),
            email: format!("{name}@example.com"),
            active: true,
            // Every Jira user is in the default users group.
            groups: BTreeSet::from(["jira-software-users".to_owned()]),
            global: BTreeSet::new(),
        };
        self.users.insert(name.to_owned(), user);
        key
    }

    pub fn user_mut(&mut self, name: &str) -> &mut User {
        self.users
            .get_mut(name)
            .unwrap_or_else(|| panic!("fake Jira: no user {name:?}; call add_user first"))
    }

    pub fn add_project(&mut self, key: &str, name: &str) -> u64 {
        assert!(
            self.project_by_key(key).is_none(),
            "fake Jira: project {key:?} already exists"
        );
        let id = self.next_project;
        self.next_project += 1;
        let project = Project {
            id,
            key: key.to_owned(),
            name: name.to_owned(),
            counter: 0,
        };
        self.projects.insert(id, project);
        id
    }

    pub fn project_by_key(&self, key: &str) -> Option<&Project> {
        self.projects
            .values()
            .find(|p| p.key.eq_ignore_ascii_case(key))
    }

    pub fn expect_project(&self, key: &str) -> u64 {
        self.project_by_key(key)
            .unwrap_or_else(|| panic!("fake Jira: no project {key:?}; call add_project first"))
            .id
    }

    /// A project by numeric id or by key, as `/project/{projectIdOrKey}` takes it.
    pub fn find_project(&self, id_or_key: &str) -> Option<&Project> {
        match id_or_key.parse::<u64>() {
            Ok(id) => self.projects.get(&id),
            Err(_) => self.project_by_key(id_or_key),
        }
    }

    pub fn add_issue(&mut self, project_key: &str, issue_key: &str) -> u64 {
        let project_id = self.expect_project(project_key);
        let upper = issue_key.to_ascii_uppercase();
        assert!(
            !self.issue_keys.contains_key(&upper),
            "fake Jira: issue {issue_key:?} already exists"
        );
        let id = self.next_issue;
        self.next_issue += 1;
        let now = self.tick();
        let issue = Issue {
            id,
            key: issue_key.to_owned(),
            project_id,
            summary: format!("Summary of {issue_key}"),
            restricted_to: None,
            created_ms: now,
            updated_ms: now,
        };
        self.issues.insert(id, issue);
        self.issue_keys.insert(upper, id);
        self.count_key(project_id, issue_key);
        id
    }

    /// Raises the project's counter to the number of `issue_key` when it is a key of the
    /// project (`<PROJECT KEY>-<n>`).
    fn count_key(&mut self, project_id: u64, issue_key: &str) {
        let Some(project) = self.projects.get_mut(&project_id) else {
            return;
        };
        let number = issue_key
            .rsplit_once('-')
            .filter(|(prefix, _)| prefix.eq_ignore_ascii_case(&project.key))
            .and_then(|(_, n)| n.parse::<u64>().ok());
        if let Some(number) = number {
            project.counter = project.counter.max(number);
        }
    }

    /// The key the project's next issue gets, as Jira numbers them: `<KEY>-<counter + 1>`, or
    /// the next number after it whose key no issue holds (a former project key may).
    pub fn next_issue_key(&self, project_id: u64) -> String {
        let project = &self.projects[&project_id];
        (project.counter + 1..)
            .map(|n| format!("{}-{n}", project.key))
            .find(|key| !self.issue_keys.contains_key(&key.to_ascii_uppercase()))
            .expect("an unbounded range has a free number")
    }

    pub fn expect_issue(&mut self, issue_key: &str) -> &mut Issue {
        let id = self
            .issue_keys
            .get(&issue_key.to_ascii_uppercase())
            .copied()
            .unwrap_or_else(|| panic!("fake Jira: no issue {issue_key:?}; call add_issue first"));
        self.issues
            .get_mut(&id)
            .expect("issue_keys points at a stored issue")
    }

    /// Moves an issue (Jira's "Move" or a project key change): it gets a new key, may change
    /// project, and keeps its id; the old key still resolves.
    pub fn move_issue(&mut self, issue_key: &str, new_project_key: &str, new_issue_key: &str) {
        let project_id = self.expect_project(new_project_key);
        let upper = new_issue_key.to_ascii_uppercase();
        assert!(
            !self.issue_keys.contains_key(&upper),
            "fake Jira: issue {new_issue_key:?} already exists"
        );
        let now = self.tick();
        let issue = self.expect_issue(issue_key);
        issue.project_id = project_id;
        issue.key = new_issue_key.to_owned();
        issue.updated_ms = now;
        let id = issue.id;
        self.issue_keys.insert(upper, id);
        self.count_key(project_id, new_issue_key);
    }

    /// Deletes an issue; none of its keys resolve afterwards.
    pub fn delete_issue(&mut self, issue_key: &str) -> Issue {
        let id = self.expect_issue(issue_key).id;
        self.issue_keys.retain(|_, v| *v != id);
        self.remote_links.retain(|l| l.issue_id != id);
        self.issues
            .remove(&id)
            .expect("issue_keys points at a stored issue")
    }

    /// Changes a project's key; its issues get keys under the new one (their old keys still
    /// resolve, as in Jira). Returns the project id.
    pub fn change_project_key(&mut self, old_key: &str, new_key: &str) -> u64 {
        assert!(
            self.project_by_key(new_key).is_none(),
            "fake Jira: project {new_key:?} already exists"
        );
        let project_id = self.expect_project(old_key);
        let old_prefix = format!("{}-", self.projects[&project_id].key);
        if let Some(project) = self.projects.get_mut(&project_id) {
            project.key = new_key.to_owned();
        }
        let mut rekeyed = Vec::new();
        for issue in self
            .issues
            .values_mut()
            .filter(|i| i.project_id == project_id)
        {
            if let Some(number) = issue.key.strip_prefix(&old_prefix) {
                issue.key = format!("{new_key}-{number}");
                rekeyed.push((issue.key.to_ascii_uppercase(), issue.id));
            }
        }
        self.issue_keys.extend(rekeyed);
        project_id
    }

    /// Deletes a project with its issues and grants.
    pub fn delete_project(&mut self, key: &str) -> Project {
        let project_id = self.expect_project(key);
        let gone: Vec<u64> = self
            .issues
            .values()
            .filter(|i| i.project_id == project_id)
            .map(|i| i.id)
            .collect();
        for id in &gone {
            self.issues.remove(id);
        }
        self.issue_keys.retain(|_, id| !gone.contains(id));
        self.remote_links.retain(|l| !gone.contains(&l.issue_id));
        self.project_grants.retain(|(_, p, _)| *p != project_id);
        self.projects
            .remove(&project_id)
            .expect("expect_project found it")
    }

    /// An issue by numeric id or by (current or former) key, as `/issue/{issueIdOrKey}` takes it.
    pub fn find_issue(&self, id_or_key: &str) -> Option<&Issue> {
        let id = match id_or_key.parse::<u64>() {
            Ok(id) => id,
            Err(_) => *self.issue_keys.get(&id_or_key.to_ascii_uppercase())?,
        };
        self.issues.get(&id)
    }

    pub fn grant_project(&mut self, user_name: &str, project_key: &str, permission: &str) {
        self.user_mut(user_name);
        let project_id = self.expect_project(project_key);
        let permission = known_permission(permission, Scope::Project);
        self.project_grants
            .insert((user_name.to_owned(), project_id, permission.key));
    }

    pub fn grant_global(&mut self, user_name: &str, permission: &str) {
        let permission = known_permission(permission, Scope::Global);
        self.user_mut(user_name).global.insert(permission.key);
    }

    /// Forgets a token or cookie value wherever it is registered.
    pub fn revoke(&mut self, credential: &str) {
        self.tokens.remove(credential);
        self.sessions.remove(credential);
        self.remember_me.remove(credential);
    }

    /// Whether `user` holds `permission` (a modern key) in `context`.
    pub fn has_permission(&self, user: &User, permission: &Permission, context: Context) -> bool {
        match permission.scope {
            // Jira system administrators are administrators as well.
            Scope::Global => {
                user.global.contains(permission.key)
                    || (permission.key == "ADMINISTER" && user.global.contains("SYSTEM_ADMIN"))
            }
            Scope::Project => match context {
                // Without a context Jira reports a project permission as held when the user
                // holds it in at least one project.
                Context::Global => self
                    .project_grants
                    .iter()
                    .any(|(name, _, key)| *name == user.name && *key == permission.key),
                Context::Project(project_id) => {
                    self.has_project_permission(user, project_id, permission.key)
                }
                Context::Issue(issue_id) => self.issues.get(&issue_id).is_some_and(|issue| {
                    self.has_project_permission(user, issue.project_id, permission.key)
                }),
            },
        }
    }

    fn has_project_permission(&self, user: &User, project_id: u64, key: &'static str) -> bool {
        self.project_grants
            .contains(&(user.name.clone(), project_id, key))
    }

    pub fn can_see_project(&self, user: &User, project: &Project) -> bool {
        self.has_project_permission(user, project.id, "BROWSE_PROJECTS")
    }

    /// Browse permission on the issue's project and, if the issue has a security level,
    /// membership of it. Jira hides an issue failing either with a 404.
    pub fn can_see_issue(&self, user: &User, issue: &Issue) -> bool {
        self.has_project_permission(user, issue.project_id, "BROWSE_PROJECTS")
            && issue
                .restricted_to
                .as_ref()
                .is_none_or(|allowed| allowed.contains(&user.name))
    }
}

fn known_permission(key: &str, scope: Scope) -> &'static Permission {
    let permission = permissions::lookup(key)
        .unwrap_or_else(|| panic!("fake Jira: Jira knows no permission {key:?}"));
    assert_eq!(
        permission.scope,
        scope,
        "fake Jira: {key:?} is a {} permission",
        permission.scope.as_str()
    );
    permission
}
