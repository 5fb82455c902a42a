// filebridge inside Jira's own pages. Loaded into Jira's pages by the announcement banner
// (<script src="/filebridge/static/jira.js"></script>) or by the reverse proxy (nginx
// sub_filter; see docs/reverse-proxy.md), it adds a "Files" panel to the right-hand column
// of Jira's issue view: filebridge's issue page in a frame, which lists the folder as the
// signed-in user (same origin, so Jira's session cookie identifies them). It reads nothing
// from Jira but the issue key shown on the page, and does nothing on other pages.
(function () {
  "use strict";
  if (window.filebridgePanel) return; // loaded twice (banner and proxy): one panel
  window.filebridgePanel = true;

  // filebridge's address: where this script came from, without /static/jira.js.
  const self = document.currentScript && document.currentScript.src;
  const base = self ? self.replace(/\/static\/jira\.js(\?.*)?$/, "") : "/filebridge";
  const KEY = /^[A-Z][A-Z0-9_]*-[1-9][0-9]*$/;

  // The issue on view: Jira's issue header link (<a id="key-val" data-issue-key="...">),
  // on the issue page and in the issue navigator's detail view alike.
  function issueKey() {
    const link = document.getElementById("key-val");
    if (!link) return null;
    const key = (link.getAttribute("data-issue-key") || link.textContent || "").trim();
    return KEY.test(key) ? key : null;
  }

  // A frame showing filebridge's page at src from its first load. Each issue gets a new
  // frame: navigating a frame that already shows a page adds an entry to the browser's
  // history, and Back would then show the previous issue's folder beside the issue on view.
  function issueFrame(src) {
    const frame = document.createElement("iframe");
    frame.id = "filebridge-frame";
    frame.title = "Files";
    frame.style.cssText = "width:100%;height:320px;border:0";
    frame.src = src;
    return frame;
  }

  function panel(src) {
    // Jira's own sidebar module markup, so the panel looks and collapses like its neighbours.
    const module = document.createElement("div");
    module.id = "filebridge-module";
    module.className = "module toggle-wrap";
    const header = document.createElement("div");
    header.className = "mod-header";
    const title = document.createElement("h2");
    title.className = "toggle-title";
    title.textContent = "Files";
    header.append(title);
    const content = document.createElement("div");
    content.className = "mod-content";
    content.append(issueFrame(src));
    module.append(header, content);
    return module;
  }

  // Jira replaces the issue view without reloading the page (issue navigator, keyboard
  // shortcuts), so this runs again whenever the page changes, the issue key included.
  function place() {
    const key = issueKey();
    const sidebar = document.getElementById("viewissuesidebar");
    const existing = document.getElementById("filebridge-module");
    if (!key || !sidebar) {
      if (existing) existing.remove();
      return;
    }
    const src = `${base}/issues/${encodeURIComponent(key)}`;
    const shown = existing && existing.querySelector("iframe");
    if (!shown || !sidebar.contains(existing)) {
      if (existing) existing.remove();
      sidebar.prepend(panel(src));
    } else if (shown.getAttribute("src") !== src) {
      shown.replaceWith(issueFrame(src));
    }
  }

  let queued = false;
  function schedule() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      place();
    });
  }
  function start() {
    place();
    new MutationObserver(schedule).observe(document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ["data-issue-key"],
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
