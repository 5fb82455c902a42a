// filebridge's page for one issue's folder: lists it through the API (as the signed-in Jira
// user, with their cookies), links downloads, and uploads. The issue key comes from the
// address (.../issues/<KEY>), the folder from the fragment (#path=a/b).
"use strict";

const key = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const api = `../api/v1/issues/${encodeURIComponent(key)}/files`;
const $ = (id) => document.getElementById(id);

function folder() {
  const match = /^#path=(.*)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : "";
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  $("status").hidden = !text;
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
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
  const link = (label, target) => {
    const a = document.createElement("a");
    a.href = `#path=${encodeURIComponent(target)}`;
    a.textContent = label;
    nav.append(a, " / ");
  };
  link(key, "");
  parts.forEach((part, i) => link(part, parts.slice(0, i + 1).join("/")));
}

async function load() {
  const path = folder();
  $("issue").textContent = key;
  crumbs(path);
  status("Loading…");
  const response = await fetch(`${api}?path=${encodeURIComponent(path)}`, { credentials: "same-origin" });
  if (!response.ok) {
    $("items").hidden = true;
    $("upload").hidden = true;
    status(await problem(response), true);
    return;
  }
  const { items } = await response.json();
  const rows = items.map((item) => {
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
  });
  $("items").querySelector("tbody").replaceChildren(...rows);
  $("items").hidden = false;
  $("upload").hidden = false;
  status(items.length ? "" : "This folder is empty.");
}

async function upload(files) {
  const path = folder();
  for (const file of files) {
    status(`Uploading ${file.name}…`);
    const target = path ? `${path}/${file.name}` : file.name;
    const response = await fetch(`${api}/content?path=${encodeURIComponent(target)}`, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "X-Requested-With": "filebridge" },
      body: file,
    });
    if (!response.ok) {
      status(`${file.name}: ${await problem(response)}`, true);
      return;
    }
  }
  await load();
}

window.addEventListener("hashchange", load);
document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (event) => upload(event.target.files));
  load();
});
