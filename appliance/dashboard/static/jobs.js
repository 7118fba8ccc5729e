// The jobs list follows the job store live: each changed job arrives as a server-sent event with its
// rendered row ('html' empty when it no longer matches the filters), which replaces or adds the row.
"use strict";
(function () {
  const table = document.getElementById("jobs");
  if (!table) return;
  const body = table.tBodies[0];
  const live = document.getElementById("live");
  const shown = document.getElementById("shown");
  const total = document.getElementById("total");
  // 'since': the changes between this page's rendering and the subscription are replayed first.
  const source = new EventSource("/events?" + table.dataset.query + "&since=" + table.dataset.since);
  source.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  source.onerror = () => { live.textContent = "reconnecting…"; live.classList.add("off"); };
  source.addEventListener("job", (event) => {
    const change = JSON.parse(event.data);
    const old = document.getElementById("job-" + change.id);
    if (!change.html) {
      if (old) { old.remove(); total.textContent = String(Number(total.textContent) - 1); }
    } else {
      const holder = document.createElement("template");
      holder.innerHTML = change.html.trim();
      const row = holder.content.firstElementChild;
      row.classList.add("flash");
      if (old) old.replaceWith(row);
      else { body.prepend(row); total.textContent = String(Number(total.textContent) + 1); }
    }
    shown.textContent = String(body.rows.length);
  });
})();
