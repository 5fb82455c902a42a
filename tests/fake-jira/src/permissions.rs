//! The permissions a stock Jira Data Center 10 reports from `GET /rest/api/2/mypermissions`.
//!
//! Jira answers with every permission it knows, not only the ones asked about, so the fake
//! carries the whole catalogue. Ids are Jira's legacy numeric permission ids (still what
//! `id` holds in the REST answer). Jira also still reports a few pre-7.0 keys (`BROWSE`,
//! `PROJECT_ADMIN`, ...) marked `deprecatedKey: true`; they mirror their modern key.

/// Whether a permission is granted system-wide or per project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Project,
}

impl Scope {
    /// The value of `type` in Jira's `PermissionJsonBean`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "GLOBAL",
            Scope::Project => "PROJECT",
        }
    }
}

/// One entry of Jira's permission catalogue.
#[derive(Debug)]
pub struct Permission {
    pub key: &'static str,
    pub id: &'static str,
    pub name: &'static str,
    pub scope: Scope,
    pub description: &'static str,
}

const fn global(
    key: &'static str,
    id: &'static str,
    name: &'static str,
    description: &'static str,
) -> Permission {
    Permission {
        key,
        id,
        name,
        scope: Scope::Global,
        description,
    }
}

const fn project(
    key: &'static str,
    id: &'static str,
    name: &'static str,
    description: &'static str,
) -> Permission {
    Permission {
        key,
        id,
        name,
        scope: Scope::Project,
        description,
    }
}

/// Every permission, modern keys only.
#[rustfmt::skip] // a table reads better one entry a line
pub static CATALOGUE: &[Permission] = &[
    global("ADMINISTER", "0", "Jira Administrators", "Ability to perform most administration functions (excluding Import & Export, SMTP Configuration, etc.)."),
    global("SYSTEM_ADMIN", "44", "Jira System Administrators", "Ability to perform all administration functions. There must be at least one group with this permission."),
    global("USER_PICKER", "27", "Browse users and groups", "Ability to select a user or group from a popup window as well as the ability to use the 'share' issues feature. Users with this permission will also be able to see names of all users and groups in the system."),
    global("CREATE_SHARED_OBJECTS", "22", "Create Shared Objects", "Ability to share dashboards and filters with other users, groups and roles."),
    global("MANAGE_GROUP_FILTER_SUBSCRIPTIONS", "24", "Manage Group Filter Subscriptions", "Ability to manage (create and delete) group filter subscriptions."),
    global("BULK_CHANGE", "33", "Make bulk changes", "Ability to modify a collection of issues at once. For example, resolve multiple issues in one step."),
    project("ADMINISTER_PROJECTS", "23", "Administer Projects", "Ability to administer a project in Jira."),
    project("BROWSE_PROJECTS", "10", "Browse Projects", "Ability to browse projects and the issues within them."),
    project("VIEW_DEV_TOOLS", "29", "View Development Tools", "Allows users in a software project to view development-related information on the issue, such as commits, reviews and build information."),
    project("VIEW_READONLY_WORKFLOW", "45", "View Read-Only Workflow", "Users with this permission may view a read-only version of a workflow."),
    project("CREATE_ISSUES", "11", "Create Issues", "Ability to create issues."),
    project("EDIT_ISSUES", "12", "Edit Issues", "Ability to edit issues."),
    project("TRANSITION_ISSUES", "46", "Transition Issues", "Ability to transition issues."),
    project("SCHEDULE_ISSUES", "28", "Schedule Issues", "Ability to set or edit an issue's due date."),
    project("MOVE_ISSUES", "25", "Move Issues", "Ability to move issues between projects or between workflows of the same project (if applicable). Note the user can only move issues to a project they have the create permission for."),
    project("ASSIGN_ISSUES", "13", "Assign Issues", "Ability to assign issues to other people."),
    project("ASSIGNABLE_USER", "17", "Assignable User", "Users with this permission may be assigned to issues."),
    project("RESOLVE_ISSUES", "14", "Resolve Issues", "Ability to resolve and reopen issues. This includes the ability to set a fix version."),
    project("CLOSE_ISSUES", "18", "Close Issues", "Ability to close issues. Often useful where your developers resolve issues, and a QA department closes them."),
    project("MODIFY_REPORTER", "30", "Modify Reporter", "Ability to modify the reporter when creating or editing an issue."),
    project("DELETE_ISSUES", "16", "Delete Issues", "Ability to delete issues."),
    project("LINK_ISSUES", "21", "Link Issues", "Ability to link issues together and create linked issues. Only useful if issue linking is turned on."),
    project("SET_ISSUE_SECURITY", "26", "Set Issue Security", "Ability to set the level of security on an issue so that only people in that security level can see the issue."),
    project("VIEW_VOTERS_AND_WATCHERS", "31", "View Voters and Watchers", "Ability to view the voters and watchers of an issue."),
    project("MANAGE_WATCHERS", "32", "Manage Watchers", "Ability to manage the watchers of an issue."),
    project("ADD_COMMENTS", "15", "Add Comments", "Ability to comment on issues."),
    project("EDIT_ALL_COMMENTS", "34", "Edit All Comments", "Ability to edit all comments made on issues."),
    project("EDIT_OWN_COMMENTS", "35", "Edit Own Comments", "Ability to edit own comments made on issues."),
    project("DELETE_ALL_COMMENTS", "36", "Delete All Comments", "Ability to delete all comments made on issues."),
    project("DELETE_OWN_COMMENTS", "37", "Delete Own Comments", "Ability to delete own comments made on issues."),
    project("CREATE_ATTACHMENTS", "19", "Create Attachments", "Users with this permission may create attachments."),
    project("DELETE_ALL_ATTACHMENTS", "38", "Delete All Attachments", "Users with this permission may delete all attachments."),
    project("DELETE_OWN_ATTACHMENTS", "39", "Delete Own Attachments", "Users with this permission may delete own attachments."),
    project("WORK_ON_ISSUES", "20", "Work On Issues", "Ability to log work done against an issue. Only useful if Time Tracking is turned on."),
    project("EDIT_OWN_WORKLOGS", "40", "Edit Own Worklogs", "Ability to edit own worklogs made on issues."),
    project("EDIT_ALL_WORKLOGS", "41", "Edit All Worklogs", "Ability to edit all worklogs made on issues."),
    project("DELETE_OWN_WORKLOGS", "42", "Delete Own Worklogs", "Ability to delete own worklogs made on issues."),
    project("DELETE_ALL_WORKLOGS", "43", "Delete All Worklogs", "Ability to delete all worklogs made on issues."),
];

/// Pre-7.0 keys Jira still reports (with `deprecatedKey: true`), and the modern key each mirrors.
pub static DEPRECATED_ALIASES: &[(&str, &str)] = &[
    ("PROJECT_ADMIN", "ADMINISTER_PROJECTS"),
    ("BROWSE", "BROWSE_PROJECTS"),
    ("CREATE_ISSUE", "CREATE_ISSUES"),
    ("EDIT_ISSUE", "EDIT_ISSUES"),
    ("CREATE_ATTACHMENT", "CREATE_ATTACHMENTS"),
    ("ATTACHMENT_DELETE_ALL", "DELETE_ALL_ATTACHMENTS"),
    ("ATTACHMENT_DELETE_OWN", "DELETE_OWN_ATTACHMENTS"),
    ("COMMENT_ISSUE", "ADD_COMMENTS"),
];

/// The catalogue entry for a modern or deprecated key; `None` if Jira knows no such key.
pub fn lookup(key: &str) -> Option<&'static Permission> {
    let modern = DEPRECATED_ALIASES
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new);
    CATALOGUE.iter().find(|p| p.key == modern)
}
