// The console's one script: times in the browser's zone, the live table kept current (the
// event stream where the server has one, polling where it has not), and SLA countdowns.
"use strict";

function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) t.textContent = d.toLocaleString();
  }
}

function live() {
  const table = document.getElementById("live");
  if (!table) return;
  const state = document.getElementById("live-state");
  const query = table.dataset.query || "";
  let pending = null;
  const refresh = async () => {
    pending = null;
    try {
      const r = await fetch("/console/rows?" + query, { credentials: "same-origin" });
      if (r.redirected || !r.ok) return;
      const tbody = table.querySelector("tbody");
      tbody.innerHTML = await r.text();
      localTimes(tbody);
      table.dataset.refreshed = String(Date.now());
    } catch (e) {
      /* the next event or poll tries again */
    }
  };
  const soon = () => { if (!pending) pending = setTimeout(refresh, 250); };
  const poll = () => {
    if (state) state.textContent = "Updates every 5 seconds.";
    setInterval(refresh, 5000);
  };
  if (!window.EventSource) return poll();
  fetch("/console/events", { method: "HEAD", credentials: "same-origin" }).then((r) => {
    if (r.status === 404) return poll();
    const es = new EventSource("/console/events");
    es.addEventListener("lead", soon);
    es.onopen = () => { if (state) state.textContent = "Live: updates as leads arrive."; };
  }).catch(poll);
}

function countdowns() {
  const items = document.querySelectorAll(".countdown[data-due]");
  if (!items.length) return;
  const tick = () => {
    const now = Date.now();
    for (const el of items) {
      const due = Date.parse(el.dataset.due);
      if (isNaN(due)) continue;
      const left = Math.round((due - now) / 1000);
      if (left <= 0) {
        el.textContent = "breached " + fmt(-left) + " ago";
        el.closest("tr")?.classList.add("breached");
      } else {
        el.textContent = fmt(left) + " left";
      }
    }
  };
  const fmt = (s) => {
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  };
  tick();
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  live();
  countdowns();
});
