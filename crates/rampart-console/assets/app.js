"use strict";
// Rampart dashboard. Every value from the server is put into the page as text (textContent,
// attribute values), never parsed as markup: event fields such as process arguments are
// chosen by whoever runs code on a watched host.
(function () {
  const main = document.getElementById("main");
  let me = null;
  let clockOffsetMs = 0; // server clock minus browser clock
  let stream = null; // the live alerts EventSource, open only on the alerts page

  // ---------- helpers ----------
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
        else if (k.startsWith("data-")) e.setAttribute(k, String(v));
        else if (k === "href") e.setAttribute("href", safeHref(v));
        else e[k] = v;
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  // Links are only ever in-page routes.
  function safeHref(v) {
    const s = String(v);
    return s.startsWith("#/") ? s : "#/overview";
  }
  function hostLink(h) {
    return h ? el("a", { href: "#/hosts/" + encodeURIComponent(h), class: "host" }, h) : "-";
  }
  function nowMs() { return Date.now() + clockOffsetMs; }
  function fmtTime(ns) {
    if (ns === null || ns === undefined || ns === 0) return "-";
    const d = new Date(Number(ns) / 1e6);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function ago(ns) {
    if (!ns) return "never";
    const s = Math.max(0, Math.round((nowMs() - Number(ns) / 1e6) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function countdownText(dueMs) {
    let ms = dueMs - nowMs();
    const over = ms < 0;
    ms = Math.abs(ms);
    const total = Math.floor(ms / 1000);
    const d = Math.floor(total / 86400);
    const h = Math.floor((total % 86400) / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    const t = (d > 0 ? d + "d " : "") + pad(h) + "h " + pad(m) + "m " + pad(s) + "s";
    return over ? "overdue by " + t : t + " left";
  }
  function countdown(dueNs) {
    if (dueNs === null || dueNs === undefined) return el("span", { class: "muted" }, "no fixed end");
    const dueMs = Number(dueNs) / 1e6;
    return el("span", { class: "countdown", "data-due-ms": dueMs }, countdownText(dueMs));
  }
  function tick() {
    for (const e of document.querySelectorAll(".countdown[data-due-ms]")) {
      const due = Number(e.getAttribute("data-due-ms"));
      e.textContent = countdownText(due);
      e.classList.toggle("overdue", due < nowMs());
    }
  }
  setInterval(tick, 1000);

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (r.status === 401) {
      location.replace("/ui/login");
      throw new HttpError(401, "log in first");
    }
    let body = null;
    try { body = await r.json(); } catch (_) { /* empty */ }
    if (!r.ok) throw new HttpError(r.status, (body && body.error) || ("HTTP " + r.status));
    if (body && body.now_ns) clockOffsetMs = Number(body.now_ns) / 1e6 - Date.now();
    return body;
  }
  function show(...nodes) {
    main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false && n !== ""));
    tick();
  }
  function failure(e) {
    show(el("p", { class: "error" }, String(e.message || e)));
  }
  function table(id, headers, rows) {
    return el("table", { id },
      el("thead", null, el("tr", null, headers.map((h) => el("th", null, h)))),
      el("tbody", null, rows));
  }
  function prio(p) { return el("span", { class: "prio-" + p }, p || "-"); }
  function alertRow(a, fresh) {
    return el("tr", { "data-id": a.id, class: fresh ? "new" : null },
      el("td", { class: "time" }, fmtTime(a.time_ns)),
      el("td", null, prio(a.priority)),
      el("td", null, hostLink(a.host)),
      el("td", null, a.container_name || (a.container_id || "").slice(0, 12) || "-"),
      el("td", null, a.rule),
      el("td", { class: "summary" }, a.summary));
  }
  const ALERT_HEADERS = ["Time (UTC)", "Priority", "Host", "Container", "Rule", "Output"];
  function protections(inv) {
    if (!inv) return el("span", { class: "muted" }, "no inventory yet");
    return el("span", null, inv.protections.map((p) =>
      el("span", { class: "badge " + (p.available ? "yes" : "no"), title: p.detail || "" }, p.name)));
  }
  // The fleet configuration a host runs: its version (a "behind" badge when it is not the
  // published one), when it applied it, and its last refusal.
  function configCell(c) {
    if (!c) return el("span", { class: "muted" }, "-");
    return el("span", { class: "config", title: c.refused ? "refused: " + c.refused : "" },
      "v" + String(c.version), c.applied_ns ? " (" + ago(c.applied_ns) + ")" : "",
      c.published_version != null && !c.current ? el("span", { class: "badge no" }, "behind v" + String(c.published_version)) : null,
      c.refused ? el("span", { class: "badge no" }, "refused") : null);
  }
  function stateClass(s) { return String(s || "").replace(/ /g, "_"); }

  // ---------- pages ----------
  async function overview() {
    const o = await api("/ui/api/overview");
    const hosts = o.hosts.map((h) => el("tr", { "data-host": h.host },
      el("td", null, hostLink(h.host)),
      el("td", null, h.region || "-"),
      el("td", null, h.inventory ? h.inventory.agent_version : "-"),
      el("td", { title: fmtTime(h.last_seen_ns) }, ago(h.last_seen_ns), h.revoked ? el("span", { class: "badge no" }, "revoked") : null),
      el("td", null, String(h.alerts_24h)),
      el("td", { class: "host-config" }, configCell(h.config)),
      el("td", null, h.inventory ? (h.inventory.kernel + (h.inventory.sensor ? " / " + h.inventory.sensor : "")) : "-"),
      el("td", null, protections(h.inventory))));
    show(
      el("h1", null, "Fleet overview"),
      el("div", { class: "cards" },
        el("div", { class: "card stat" }, el("div", { class: "n", id: "stat-hosts" }, String(o.hosts.length)), "hosts"),
        el("div", { class: "card stat" }, el("div", { class: "n", id: "stat-alerts" }, (o.alerts_24h_capped ? "≥ " : "") + o.alerts_24h), "alerts in 24 h"),
        el("div", { class: "card stat" }, el("div", { class: "n", id: "stat-incidents" }, String(o.open_incidents)), "open incidents"),
        el("div", { class: "card stat" }, el("div", { class: "n" }, o.next_due_ns ? countdown(o.next_due_ns) : "-"), "next notification deadline"),
        el("div", { class: "card stat" + (o.vulndb && o.vulndb.age_secs != null && o.vulndb.age_secs > 7 * 86400 ? " warn" : "") },
          el("div", { class: "n", id: "stat-vulndb" }, o.vulndb && o.vulndb.age_secs != null ? Math.floor(o.vulndb.age_secs / 86400) + " d" : "none"),
          "vulnerability database age")),
      el("h2", null, "Hosts"),
      table("hosts-table", ["Host", "Region", "Agent", "Last seen", "Alerts 24 h", "Configuration", "Kernel / sensor", "Protections available"], hosts),
      el("h2", null, "Latest alerts"),
      table("recent-alerts", ALERT_HEADERS, o.recent_alerts.map((a) => alertRow(a, false))));
  }

  async function alerts() {
    const body = el("tbody");
    const seen = new Set();
    const status = el("span", { class: "live off", id: "live-status" }, "connecting…");
    const t = el("table", { id: "alerts-table" },
      el("thead", null, el("tr", null, ALERT_HEADERS.map((h) => el("th", null, h)))), body);
    show(el("h1", null, "Alerts ", status), t);
    // The stream opens first and the list is read after, so that no alert falls between
    // the two; ids seen twice are shown once.
    if (stream) stream.close();
    stream = new EventSource("/ui/api/alerts/stream");
    stream.addEventListener("open", () => { status.textContent = "live"; status.className = "live"; });
    stream.addEventListener("error", () => { status.textContent = "reconnecting…"; status.className = "live off"; });
    stream.addEventListener("alert", (ev) => {
      let a;
      try { a = JSON.parse(ev.data); } catch (_) { return; }
      if (seen.has(a.id)) return;
      seen.add(a.id);
      body.prepend(alertRow(a, true));
      while (body.children.length > 500) body.lastChild.remove();
    });
    stream.addEventListener("lagged", () => { status.textContent = "live (some alerts skipped: reload)"; });
    const first = await api("/ui/api/alerts?limit=100");
    for (const a of first.records) {
      if (seen.has(a.id)) continue;
      seen.add(a.id);
      body.append(alertRow(a, false));
    }
  }

  function deadlineTable(deadlines) {
    return table(null, ["Regime", "Deadline", "To", "Due (UTC)", "Countdown", "State"],
      deadlines.map((d) => el("tr", { class: "deadline", "data-key": d.key },
        el("td", { title: d.citation }, d.regime_name || d.regime),
        el("td", null, d.name, el("div", { class: "muted" }, d.period)),
        el("td", null, d.to),
        el("td", null, d.due_ns ? fmtTime(d.due_ns) : "-"),
        el("td", null, d.state === "done" ? el("span", { class: "done" }, "submitted")
          : d.state === "provisional" ? el("span", { class: "muted" }, "not running: incident not confirmed") : countdown(d.due_ns)),
        el("td", { class: stateClass(d.state) }, String(d.state).replace(/_/g, " ")))));
  }

  async function incidents() {
    const r = await api("/ui/api/incidents");
    const rows = r.incidents.map((i) => el("tr", { "data-id": i.id },
      el("td", null, el("a", { href: "#/incidents/" + encodeURIComponent(i.id) }, i.id)),
      el("td", null, i.category),
      el("td", null, prio(i.priority)),
      el("td", null, i.title),
      el("td", null, i.hosts.map((h) => el("span", null, hostLink(h), " "))),
      el("td", null, i.jurisdictions.join(", ") || "-"),
      el("td", null, i.next_due_ns ? countdown(i.next_due_ns) : "-"),
      el("td", null, i.closed ? "closed" : (i.provisional ? "open, provisional" : "open"))));
    show(el("h1", null, "Incidents"),
      r.incidents.length ? table("incidents-table", ["Incident", "Category", "Priority", "Title", "Hosts", "Jurisdictions", "Next deadline", "State"], rows)
        : el("p", { class: "muted" }, "No incidents."));
  }

  async function incident(id) {
    const r = await api("/ui/api/incidents/" + encodeURIComponent(id));
    const i = r.incident;
    show(
      el("h1", null, i.id, " — ", i.title),
      el("div", { class: "cards" },
        el("div", { class: "card" }, "Category: ", i.category, el("br"), "Priority: ", prio(i.priority), el("br"),
          "Personal-data breach: ", i.personal_data_breach ? "yes" : "no", el("br"), "State: ", i.closed ? "closed" : "open", el("br"),
          "Opened because: ", i.opened_because || "-", el("br"),
          i.provisional ? el("span", { class: "provisional" }, "Provisional: not confirmed; deadlines start when a person or a high-confidence alert confirms it")
            : el("span", null, "Confirmed ", i.confirmed_ns ? fmtTime(i.confirmed_ns) : "", " by ", i.confirmed_by || "-")),
        el("div", { class: "card" }, "First alert: ", fmtTime(i.first_ns), el("br"), "Last alert: ", fmtTime(i.last_ns), el("br"),
          "Hosts: ", i.hosts.map((h) => el("span", null, hostLink(h), " ")), el("br"),
          "Jurisdictions: ", i.jurisdictions.join(", ") || "-")),
      el("h2", null, "Notification deadlines"),
      i.deadlines.length ? deadlineTable(i.deadlines) : el("p", { class: "muted" }, "No notification deadline applies."),
      el("h2", null, "Timeline"),
      table("timeline", ["Time (UTC)", "Kind", "Host", "What"], (i.timeline || []).map((e) => el("tr", null,
        el("td", null, fmtTime(e.time_ns)), el("td", null, e.kind), el("td", null, hostLink(e.host)),
        el("td", { class: "summary" }, e.summary)))),
      i.timeline_dropped ? el("p", { class: "muted" }, i.timeline_dropped + " older entries not kept") : null,
      el("h2", null, "Forensic evidence"),
      (r.evidence || []).length ? table("evidence", ["Received (UTC)", "Host", "Container", "Bundle", "Size", "SHA-256"], r.evidence.map((b) => el("tr", null,
        el("td", null, fmtTime(b.received_ns)), el("td", null, hostLink(b.hostname)), el("td", null, b.container),
        el("td", null, b.name), el("td", null, String(b.size)), el("td", { class: "summary" }, b.sha256))))
        : el("p", { class: "muted" }, "No forensic bundle on the server for this incident's alerts."));
  }

  function containerRows(list, withHost) {
    return list.map((c) => el("tr", { "data-id": c.container_id },
      withHost ? el("td", null, hostLink(c.host)) : null,
      el("td", null, c.container_name || c.container_id.slice(0, 12)),
      el("td", null, c.image, el("div", { class: "muted" }, (c.image_id || "").slice(0, 19))),
      el("td", { class: "sig-" + c.signature }, c.signature, c.signer ? el("div", { class: "muted" }, c.signer) : null),
      el("td", null, el("span", { class: c.vulnerabilities.critical ? "prio-Critical" : "" }, String(c.vulnerabilities.critical)),
        " / " + c.vulnerabilities.high + " / " + c.vulnerabilities.medium + " / " + c.vulnerabilities.low),
      el("td", null, c.compliance_score === null || c.compliance_score === undefined ? "-" : String(c.compliance_score),
        c.compliance_failed ? el("span", { class: "muted" }, " (" + c.compliance_failed + " failed)") : null),
      el("td", { title: fmtTime(c.time_ns) }, ago(c.time_ns))));
  }
  const CONTAINER_HEADERS = ["Container", "Image", "Signature", "Vulns C / H / M / L", "Compliance", "Reported"];

  async function containers() {
    const r = await api("/ui/api/containers");
    show(el("h1", null, "Containers"),
      r.total > r.containers.length ? el("p", { class: "muted" }, "Showing the " + r.containers.length + " most recently reported of " + r.total + " containers.") : null,
      r.containers.length ? table("containers-table", ["Host"].concat(CONTAINER_HEADERS), containerRows(r.containers, true))
        : el("p", { class: "muted" }, "No container inventory yet."));
  }

  async function host(name) {
    const h = await api("/ui/api/hosts/" + encodeURIComponent(name));
    const inv = h.inventory;
    show(
      el("h1", null, "Host ", h.host),
      el("div", { class: "cards" },
        el("div", { class: "card" }, "Region: ", h.region || "-", el("br"), "Agent: ", h.agent_id || "-",
          h.revoked ? el("span", { class: "badge no" }, "revoked") : null, el("br"),
          "Last seen: ", ago(h.last_seen_ns), el("br"), "Newest event: ", fmtTime(h.last_event_ns), el("br"),
          "Configuration: ", configCell(h.config),
          h.config && h.config.applied_ns ? el("span", null, el("br"), "Applied: ", fmtTime(h.config.applied_ns)) : null,
          h.config && h.config.refused ? el("span", null, el("br"), "Refused: ", h.config.refused) : null),
        inv ? el("div", { class: "card" }, "Agent version: ", inv.agent_version, el("br"), "Kernel: ", inv.kernel, el("br"),
          "OS: ", inv.os || "-", el("br"), "Sensor: ", inv.sensor || "-", el("br"),
          "Audit score: ", inv.audit_score === null || inv.audit_score === undefined ? "-" : String(inv.audit_score)) : null),
      el("h2", null, "Protections"),
      inv ? table("protections", ["Protection", "Available", "Detail"], inv.protections.map((p) => el("tr", null,
        el("td", null, p.name), el("td", { class: p.available ? "done" : "overdue" }, p.available ? "yes" : "no"), el("td", null, p.detail))))
        : el("p", { class: "muted" }, "No inventory from this host yet."),
      el("h2", null, "Containers"),
      h.containers.length ? table("host-containers", CONTAINER_HEADERS, containerRows(h.containers, false)) : el("p", { class: "muted" }, "None reported."),
      el("h2", null, "Incidents"),
      h.incidents.length ? table(null, ["Incident", "Title", "Next deadline"], h.incidents.map((i) => el("tr", null,
        el("td", null, el("a", { href: "#/incidents/" + encodeURIComponent(i.id) }, i.id)), el("td", null, i.title),
        el("td", null, i.next_due_ns ? countdown(i.next_due_ns) : "-")))) : el("p", { class: "muted" }, "None."),
      el("h2", null, "Recent alerts"),
      table("host-alerts", ALERT_HEADERS, h.alerts.map((a) => alertRow(a, false))));
  }

  // The mesh (analysts): services per host, edges with their last use, refusals.
  async function mesh() {
    const r = await api("/ui/api/mesh");
    const id = (s) => s ? el("code", null, s) : el("span", { class: "muted" }, "unknown");
    show(el("h1", null, "Mesh"),
      r.truncated ? el("p", { class: "muted" }, "More records than one view reads: older use is not counted.") : null,
      r.claims_refused ? el("p", { class: "warn", id: "mesh-claims" }, r.claims_refused + " reports named another host's identity and are not shown.") : null,
      el("h2", null, "Services"),
      r.services.length ? table("mesh-services", ["Host", "Service", "Port", "Reported"], r.services.map((s) => el("tr", { "data-host": s.host, "data-service": s.name },
        el("td", null, hostLink(s.host)), el("td", null, s.name), el("td", null, String(s.port)),
        el("td", { title: fmtTime(s.reported_ns) }, ago(s.reported_ns)))))
        : el("p", { class: "muted" }, "No proxy has reported yet."),
      el("h2", null, "Edges"),
      r.edges.length ? table("mesh-edges", ["Source", "Destination", "Port", "Allowed", "Denied", "Last used", "Last connection"], r.edges.map((e) => el("tr", { "data-source": e.source_identity, "data-destination": e.destination_identity },
        el("td", null, id(e.source_identity)), el("td", null, id(e.destination_identity)), el("td", null, String(e.port)),
        el("td", null, String(e.allowed)), el("td", { class: e.denied ? "overdue" : "" }, String(e.denied)),
        el("td", { class: "last-used", title: e.last_allowed_ns ? fmtTime(e.last_allowed_ns) : "" }, e.last_allowed_ns ? ago(e.last_allowed_ns) : "never"),
        el("td", { title: fmtTime(e.last_ns) }, ago(e.last_ns)))))
        : el("p", { class: "muted" }, "No edge used in the window."),
      el("h2", null, "Denials", el("span", { class: "muted" }, " (" + r.denials_total + ")")),
      r.denials.length ? table("mesh-denials", ["Time (UTC)", "Host", "Source", "Destination", "Reason", "Rule", "Side", "Peer"], r.denials.map((d) => el("tr", null,
        el("td", { class: "time" }, fmtTime(d.time_ns)), el("td", null, hostLink(d.reported_by)),
        el("td", null, id(d.source_identity)), el("td", null, id(d.destination_identity)),
        el("td", null, d.reason), el("td", { class: "summary" }, d.rule), el("td", null, d.mechanism), el("td", null, d.peer || "-"))))
        : el("p", { class: "muted" }, "No refusal in the window."),
      el("h2", null, "Plaintext east-west"),
      r.plaintext.length ? table("mesh-plaintext", ["Time (UTC)", "Host", "Container", "Remote address", "Remote container"], r.plaintext.map((p) => el("tr", { "data-id": p.id },
        el("td", { class: "time" }, fmtTime(p.time_ns)), el("td", null, hostLink(p.host)), el("td", null, p.container || "-"),
        el("td", null, p.remote_address + (p.remote_port ? ":" + p.remote_port : "")),
        el("td", { class: "remote" }, p.remote_container ? el("span", null, p.remote_container, " on ", hostLink(p.remote_host))
          : el("span", { class: "muted" }, p.candidates > 1 ? p.candidates + " containers on other hosts have this address" : "not in the inventory")))))
        : el("p", { class: "muted" }, "No plaintext connection between hosts' containers in the window."));
  }

  async function search(params) {
    const fields = [["host", "Host"], ["container", "Container (id prefix or name)"], ["rule", "Rule"], ["type", "Type"]];
    const form = el("form", { class: "filters", id: "search-form" });
    const inputs = {};
    for (const [k, label] of fields) {
      inputs[k] = el("input", { name: k, id: "q-" + k, value: params.get(k) || "" });
      form.append(el("label", null, label, inputs[k]));
    }
    const kind = el("select", { name: "kind", id: "q-kind" },
      el("option", { value: "" }, "events and alerts"), el("option", { value: "event" }, "events"), el("option", { value: "alert" }, "alerts"));
    kind.value = params.get("kind") || "";
    form.append(el("label", null, "Kind", kind));
    // The address keeps RFC 3339 times; the inputs show local time.
    const toLocalInput = (iso) => {
      const d = new Date(iso || "");
      if (isNaN(d.getTime())) return "";
      return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    };
    const since = el("input", { type: "datetime-local", name: "since", id: "q-since", value: toLocalInput(params.get("since")) });
    const until = el("input", { type: "datetime-local", name: "until", id: "q-until", value: toLocalInput(params.get("until")) });
    form.append(el("label", null, "From (local time)", since), el("label", null, "To", until));
    form.append(el("button", { type: "submit" }, "Search"));
    const results = el("div", { id: "search-results" });
    show(el("h1", null, "Search events"), form, results);

    function query() {
      const q = new URLSearchParams();
      for (const k of Object.keys(inputs)) if (inputs[k].value.trim()) q.set(k, inputs[k].value.trim());
      if (kind.value) q.set("kind", kind.value);
      if (since.value) q.set("since", new Date(since.value).toISOString());
      if (until.value) q.set("until", new Date(until.value).toISOString());
      q.set("limit", "100");
      return q;
    }
    async function run(q, append) {
      const r = await api("/ui/api/search?" + q.toString());
      let tbody = results.querySelector("tbody");
      if (!append || !tbody) {
        tbody = el("tbody");
        results.replaceChildren(
          r.restricted_to_alerts ? el("p", { class: "muted" }, "Your role sees alerts only.") : "",
          el("table", { id: "search-table" }, el("thead", null, el("tr", null,
            ["Time (UTC)", "Kind", "Type", "Host", "Container", "Rule", "Summary"].map((h) => el("th", null, h)))), tbody));
      }
      for (const x of r.records) {
        const row = el("tr", { "data-id": x.id },
          el("td", null, fmtTime(x.time_ns)), el("td", null, x.kind), el("td", null, x.type),
          el("td", null, hostLink(x.host)), el("td", null, x.container_name || (x.container_id || "").slice(0, 12) || "-"),
          el("td", null, x.rule || "-"), el("td", { class: "summary" }, x.summary));
        if (x.record) {
          row.addEventListener("click", () => {
            const next = row.nextElementSibling;
            if (next && next.classList.contains("raw-row")) { next.remove(); return; }
            row.after(el("tr", { class: "raw-row" }, el("td", { colSpan: 7 }, el("pre", { class: "raw" }, JSON.stringify(x.record, null, 2)))));
          });
        }
        tbody.append(row);
      }
      const old = results.querySelector("#more");
      if (old) old.remove();
      if (r.next) {
        results.append(el("button", { id: "more", type: "button", on: { click: () => {
          const q2 = new URLSearchParams(q);
          q2.set("until", r.next.until);
          q2.set("skip", String(r.next.skip));
          run(q2, true).catch(failure);
        } } }, "Older"));
      } else if (!r.records.length && !append) {
        results.append(el("p", { class: "muted" }, "Nothing matches."));
      }
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const q = query();
      const shown = new URLSearchParams(q);
      shown.delete("limit");
      history.replaceState(null, "", "#/search?" + shown.toString());
      run(q, false).catch(failure);
    });
    if ([...params.keys()].length) run(query(), false).catch(failure);
  }

  // ---------- routing ----------
  async function route() {
    if (stream) { stream.close(); stream = null; }
    const hash = location.hash || "#/overview";
    const [path, qs] = hash.slice(1).split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const page = parts[0] || "overview";
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("data-page") === page);
    try {
      if (page === "alerts") await alerts();
      else if (page === "incidents" && parts[1]) await incident(parts[1]);
      else if (page === "incidents") await incidents();
      else if (page === "containers") await containers();
      else if (page === "mesh") await mesh();
      else if (page === "hosts" && parts[1]) await host(parts[1]);
      else if (page === "search") await search(new URLSearchParams(qs || ""));
      else await overview();
    } catch (e) {
      if (e.status !== 401) failure(e);
    }
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/ui/api/logout", { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" }, body: "{}" });
    location.replace("/ui/login");
  });

  (async function start() {
    try {
      me = await api("/ui/api/me");
    } catch (e) {
      if (e.status !== 401) failure(e);
      return;
    }
    document.getElementById("user").textContent = me.username + " (" + me.role + ")";
    window.addEventListener("hashchange", route);
    route();
  })();
})();
