// The dashboard's JavaScript: refresh the live part every few seconds and
// ask before a node action. No library, no build step.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  // What each action does to a node's meetings: none of them ends one.
  const says = {
    cordoned: (n, m) => `Cordon ${n}? It takes no new meetings; no meeting ends: its ${m} meeting(s) run on until they finish, then it is disabled.`,
    enabled: (n) => `Enable ${n}? It takes new meetings again; no meeting ends.`,
    disabled: (n, m) => `Disable ${n}? It takes no new meetings; no meeting ends: its ${m} meeting(s) run on until they finish.`,
  };
  // One form for every node's buttons: its CSRF token is not repeated per row.
  const act = document.getElementById("act");
  live.addEventListener("click", function (ev) {
    const b = ev.target.closest("button[data-to]");
    if (!b || !act) return;
    const row = b.closest("tr");
    const to = b.dataset.to;
    if (!says[to] || !window.confirm(says[to](row.dataset.node, row.dataset.meetings))) return;
    act.action = "/dashboard/nodes/" + encodeURIComponent(row.dataset.id) + "/state";
    act.elements.state.value = to;
    act.submit();
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
