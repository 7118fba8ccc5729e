// A job page that is not final reloads itself when the job changes state, so the timeline, the
// result and the actions stay current. Segment swatches get their colours here (no inline styles).
"use strict";
(function () {
  for (const swatch of document.querySelectorAll(".swatch[data-color]")) {
    swatch.style.background = swatch.dataset.color;
  }
  const head = document.getElementById("jobhead");
  if (!head || head.dataset.final === "yes") return;
  const source = new EventSource("/events?job=" + encodeURIComponent(head.dataset.job) + "&since=" + head.dataset.since);
  source.addEventListener("job", (event) => {
    const change = JSON.parse(event.data);
    if (change.id === head.dataset.job && change.state !== head.dataset.state) {
      source.close();
      window.location.reload();
    }
  });
})();
