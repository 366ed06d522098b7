// Refreshes the approvals list (#waiting) every few seconds, without reloading the page and
// never while a control inside it has the keyboard focus (a decision in progress is kept).
(function () {
  "use strict";
  var INTERVAL_MS = 3000;
  function refresh() {
    var current = document.getElementById("waiting");
    if (!current || current.contains(document.activeElement)) return;
    fetch(window.location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok || response.redirected) return null;
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("waiting");
        if (fresh && !current.contains(document.activeElement)) {
          current.replaceChildren.apply(current, Array.prototype.slice.call(fresh.childNodes));
        }
      })
      .catch(function () {});
  }
  window.setInterval(refresh, INTERVAL_MS);
})();
