// The demo page: measure this page's own request, show its headers, poll the status.
"use strict";

function $(id) { return document.getElementById(id); }
function ms(x) { return x.toFixed(1) + " ms"; }
function human(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function journey() {
  const nav = performance.getEntriesByType("navigation")[0];
  if (nav) {
    const connect = nav.connectEnd - nav.connectStart;
    const wait = nav.responseStart - nav.requestStart;
    const transfer = nav.responseEnd - nav.responseStart;
    $("t-connect").textContent = connect > 0 ? "TCP handshake " + ms(connect) : "connection reused";
    $("t-wait").textContent = "request to first byte " + ms(wait);
    $("t-transfer").textContent = "transfer " + ms(transfer);
    $("summary").textContent = "Your browser fetched " + location.pathname + " (" +
      human(nav.encodedBodySize || 0) + ") in " + ms(nav.responseEnd - nav.startTime) +
      "; the server's part (steps 1–12) took at most " + ms(wait + transfer) + ".";
  }
  // ask again with HEAD to show what the server put in the reply (step 9)
  fetch(location.pathname, { method: "HEAD", cache: "no-store" }).then(r => {
    const lines = ["HTTP/1.1 " + r.status + " " + r.statusText];
    r.headers.forEach((v, k) => lines.push(k + ": " + v));
    $("headers").textContent = lines.join("\n");
    $("resp-head").textContent = r.status + " " + r.statusText + ", " +
      (r.headers.get("content-length") || "?") + " bytes, ETag " + (r.headers.get("etag") || "-");
    $("req-line").textContent = "GET " + location.pathname + " HTTP/1.1";
  }).catch(() => { $("headers").textContent = "(could not ask the server)"; });
}

function status() {
  fetch("/_status.json", { cache: "no-store" }).then(r => r.json()).then(s => {
    $("st-model").textContent = s.model;
    $("st-workers").textContent = s.workers;
    $("st-uptime").textContent = Math.round(s.uptime) + " s";
    $("st-now").textContent = s.connections.now;
    $("st-total").textContent = s.connections.total;
    $("st-refused").textContent = s.connections.refused;
    $("st-requests").textContent = s.requests.total;
    $("st-rate").textContent = s.requests.per_second_10s;
    $("st-bytes").textContent = human(s.bytes_out);
    $("st-classes").textContent = Object.entries(s.requests.by_class)
      .map(([k, v]) => k + " " + v).join(" · ");
    const body = $("st-sockets");
    body.textContent = "";
    for (const so of (s.sockets || []).slice(0, 20)) {
      const tr = document.createElement("tr");
      for (const v of [so.state, so.local, so.remote, so.recv_q, so.send_q]) {
        const td = document.createElement("td");
        td.textContent = v === null || v === undefined ? "" : String(v);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    $("st-live").textContent = "updated " + new Date().toLocaleTimeString();
  }).catch(() => { $("st-live").textContent = "status unavailable (--no-status?)"; });
}

journey();
status();
setInterval(status, 1000);
