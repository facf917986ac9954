// Pages of an archive whose file list is still being built reload themselves until it is
// ready (the server answers 503 with Retry-After meanwhile); without JavaScript the page
// has a plain "Reload now" link instead. A ticket search goes to the address it names in
// data-reload-url (the same search, marked as a retry, so it is audited once), replacing
// the page in the history so that Back does not step through the retries.
(function () {
  "use strict";

  var waiting = document.querySelector("[data-reload-after]");
  if (!waiting) { return; }
  var seconds = parseFloat(waiting.getAttribute("data-reload-after"));
  if (!(seconds > 0)) { seconds = 2; }
  var target = waiting.getAttribute("data-reload-url");
  window.setTimeout(function () {
    if (target) { window.location.replace(target); } else { window.location.reload(); }
  }, seconds * 1000);
}());
