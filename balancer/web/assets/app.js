// The dashboard's JavaScript: refresh the live part every few seconds and
// ask before a node action. No library, no build step.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  // Ask before every action; the question says what happens to the meetings.
  document.addEventListener("submit", function (ev) {
    const q = ev.target.dataset && ev.target.dataset.confirm;
    if (q && !window.confirm(q)) ev.preventDefault();
  });
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const resp = await fetch("/dashboard/live", { credentials: "same-origin", cache: "no-store" });
      if (resp.status === 401) { window.location.assign("/dashboard/login"); return; }
      if (resp.ok) live.innerHTML = await resp.text();
    } catch (e) {
      // The balancer may be restarting: the next poll tries again.
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, 3000);
})();
