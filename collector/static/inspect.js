// Pages of an archive whose file list is still being built reload themselves until it is
// ready (the server answers 503 with Retry-After meanwhile); without JavaScript the page
// has a plain "Reload now" link instead.
(function () {
  "use strict";

  var waiting = document.querySelector("[data-reload-after]");
  if (!waiting) { return; }
  var seconds = parseFloat(waiting.getAttribute("data-reload-after"));
  if (!(seconds > 0)) { seconds = 2; }
  window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
}());
