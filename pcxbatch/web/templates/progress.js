// Live progress for a job page: ask the server every second, reload when the state changes.
(function () {
  var state = document.getElementById("state");
  if (!state || state.dataset.busy !== "yes") { return; }
  var shown = document.getElementById("progress");
  function tick() {
    fetch("/jobs/" + state.dataset.job + "/progress", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (d.state !== state.textContent.trim().replace(/ /g, "_")) { location.reload(); return; }
        var p = d.progress;
        if (shown && d.state === "running") {
          shown.textContent = p.done + " of " + p.total + " rows done · " + p.rate + " rows/s · " +
            p.retries + " retries" + (p.eta_seconds ? " · about " + p.eta_seconds + " s left" : "") + ".";
        }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
