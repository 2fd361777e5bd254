// The console's import progress page: asks the job's status (same-origin JSON) every second,
// moves the <progress> bar, and opens the preview or report once the run has finished.
(function () {
  "use strict";
  var card = document.getElementById("import-progress-card");
  if (!card) return;
  var url = card.getAttribute("data-status-url");
  var bar = document.getElementById("import-progress");
  var text = document.getElementById("import-progress-text");
  var template = text.textContent;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.state === "previewing" || s.state === "importing") {
          if (s.total) { bar.max = s.total; bar.value = s.done; }
          text.textContent = template.replace(/^\s*\d+/, String(s.done)).replace(/\?|\d+(?=\D*$)/, String(s.total || "?"));
          window.setTimeout(poll, 1000);
        } else {
          window.location.assign(s.url || window.location.href);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
