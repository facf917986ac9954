// Light/dark theme: applied before the page paints, remembered in localStorage.
(function () {
  "use strict";
  var KEY = "collector-theme";
  function preferred() {
    var saved = null;
    try { saved = localStorage.getItem(KEY); } catch (e) { /* storage disabled */ }
    if (saved === "light" || saved === "dark") { return saved; }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches
      ? "dark" : "light";
  }
  document.documentElement.setAttribute("data-bs-theme", preferred());
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var next = document.documentElement.getAttribute("data-bs-theme") === "dark"
        ? "light" : "dark";
      document.documentElement.setAttribute("data-bs-theme", next);
      try { localStorage.setItem(KEY, next); } catch (e) { /* storage disabled */ }
    });
  });
}());
