// filebridge's page for one issue's folder: lists it through the API (as the signed-in Jira
// user, with their cookies), links downloads, and uploads. The issue key comes from the
// address (.../issues/<KEY>), the folder from the fragment (#path=a/b).
"use strict";

const key = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const api = `../api/v1/issues/${encodeURIComponent(key)}/files`;
const $ = (id) => document.getElementById(id);
// Inside Jira's "Files" panel (jira.js frames this page), where Microsoft's sign-in cannot be
// shown: it refuses to be framed.
const framed = window.top !== window.self;

// Each load() takes a number; an answer that arrives after a newer load() started (the user
// clicked on before the listing came back) is dropped instead of overwriting the newer one.
let generation = 0;

function folder() {
  const match = /^#path=(.*)$/.exec(location.hash);
  if (!match) return "";
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1]; // not percent-encoded after all; the API judges the path
  }
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  $("status").hidden = !text;
}

// The API's problem document as one line: "Not found: no such resource (404)"; and when the
// user must first connect their own storage account (a SharePoint connection that works as
// each user), where to do that, as `connect`.
async function problem(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not a problem document (a proxy's error page, say)
  }
  const title = (body && body.title) || response.statusText || "Error";
  const detail = body && body.detail;
  const text = `${detail ? `${title}: ${detail}` : title} (${response.status})`;
  let connect = null;
  if (response.status === 409 && body && body.code === "storage_account_required") {
    try {
      connect = new URL(body.connect_url, location.href);
    } catch {
      // no usable address: the line above is all there is to show
    }
    if (connect && !/^https?:$/.test(connect.protocol)) connect = null;
  }
  return { text, connect };
}

function failure(error) {
  return `Could not reach filebridge: ${error && error.message ? error.message : error}`;
}

function size(bytes) {
  if (bytes == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = bytes, u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
  return `${u ? n.toFixed(1) : n} ${units[u]}`;
}

function crumbs(path) {
  const nav = $("crumbs");
  nav.replaceChildren();
  const parts = path ? path.split("/") : [];
  const link = (label, target, current) => {
    const a = document.createElement("a");
    a.href = `#path=${encodeURIComponent(target)}`;
    a.textContent = label;
    if (current) a.setAttribute("aria-current", "page");
    if (nav.childNodes.length) nav.append(" / ");
    nav.append(a);
  };
  link(key, "", !parts.length);
  parts.forEach((part, i) => link(part, parts.slice(0, i + 1).join("/"), i === parts.length - 1));
}

// Folders first, then by name; storages list in orders of their own.
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
function byKindAndName(a, b) {
  return (a.kind === "folder" ? 0 : 1) - (b.kind === "folder" ? 0 : 1) || collator.compare(a.name, b.name);
}

function row(item) {
  const tr = document.createElement("tr");
  const name = document.createElement("td");
  const a = document.createElement("a");
  a.textContent = item.kind === "folder" ? `${item.name}/` : item.name;
  a.href = item.kind === "folder"
    ? `#path=${encodeURIComponent(item.path)}`
    : `${api}/content?path=${encodeURIComponent(item.path)}`;
  name.append(a);
  const bytes = document.createElement("td");
  bytes.className = "num";
  bytes.textContent = item.kind === "file" ? size(item.size) : "";
  const modified = document.createElement("td");
  modified.textContent = item.modified ? new Date(item.modified).toLocaleString() : "";
  tr.append(name, bytes, modified);
  return tr;
}

function showNothing(message) {
  $("items").hidden = true;
  $("upload").hidden = true;
  status(message, true);
}

// This page as a path below filebridge's base, the only kind of address the sign-in goes
// back to: "/issues/PROJ-1#path=a%2Fb". The callback takes printable ASCII without "\" or "@"
// up to 512 characters, which encodeURIComponent keeps to; a folder too long for that is
// left out rather than the way back.
function returnTo() {
  const page = `/issues/${encodeURIComponent(key)}`;
  const path = folder();
  const inFolder = `${page}#path=${encodeURIComponent(path)}`;
  return path && inFolder.length <= 512 ? inFolder : page;
}

// The way forward instead of an error: a link to connect the account. On its own the page
// is left for Microsoft's sign-in, which comes back here (return_to). Framed, the sign-in
// opens in a tab of its own (ending on "connected, you can close this tab") and the page
// looks again when the user comes back to it (see comeBack).
function askToConnect(url) {
  $("items").hidden = true;
  $("upload").hidden = true;
  status("");
  const link = $("connect-link");
  if (framed) {
    link.target = "_blank";
    link.rel = "noopener";
  } else {
    url.searchParams.set("return_to", returnTo());
  }
  link.href = url.href;
  $("connect-tab").hidden = !framed;
  $("connect").hidden = false;
}

// Set once the connect link was followed. Where the page stays (framed, or the user opened
// the link in a new tab), each return to it while it still asks loads the listing again, so
// the files appear without a reload once the account is connected.
let connecting = false;
function comeBack() {
  if (connecting && !$("connect").hidden && document.visibilityState === "visible") load();
}

async function load() {
  const mine = ++generation;
  const path = folder();
  $("issue").textContent = key;
  document.title = `Files of ${key}`;
  crumbs(path);
  $("connect").hidden = true;
  status("Loading…");
  let response, items;
  try {
    response = await fetch(`${api}?path=${encodeURIComponent(path)}`, { credentials: "same-origin" });
    if (mine !== generation) return;
    if (!response.ok) {
      const refused = await problem(response);
      if (mine !== generation) return;
      if (refused.connect) askToConnect(refused.connect);
      else showNothing(refused.text);
      return;
    }
    ({ items } = await response.json());
  } catch (error) {
    if (mine === generation) showNothing(failure(error));
    return;
  }
  if (mine !== generation) return;
  $("items").querySelector("tbody").replaceChildren(...items.slice().sort(byKindAndName).map(row));
  $("items").hidden = false;
  $("upload").hidden = false;
  status(items.length ? "" : "This folder is empty.");
}

async function upload(input) {
  // Copy the list: clearing the input below empties it.
  const files = Array.from(input.files);
  if (!files.length) return;
  const path = folder();
  input.disabled = true;
  let error = "";
  let connect = null;
  for (const file of files) {
    status(`Uploading ${file.name}…`);
    const target = path ? `${path}/${file.name}` : file.name;
    try {
      const response = await fetch(`${api}/content?path=${encodeURIComponent(target)}`, {
        method: "PUT",
        credentials: "same-origin",
        headers: { "X-Requested-With": "filebridge" },
        body: file,
      });
      if (!response.ok) {
        const refused = await problem(response);
        error = `${file.name}: ${refused.text}`;
        connect = refused.connect;
      }
    } catch (e) {
      error = `${file.name}: ${failure(e)}`;
    }
    if (error) break;
  }
  // Choosing the same file again must fire another change.
  input.value = "";
  input.disabled = false;
  // Show what did arrive (earlier files of a failed batch), then why the rest did not, or
  // the way to connect the account the upload needs.
  await load();
  if (connect) askToConnect(connect);
  else if (error) status(error, true);
}

window.addEventListener("hashchange", load);
// Coming back from the sign-in's tab: shown again, or (framed) the frame focused again.
document.addEventListener("visibilitychange", comeBack);
window.addEventListener("focus", comeBack);
document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (event) => upload(event.target));
  $("connect-link").addEventListener("click", () => { connecting = true; });
  load();
});
