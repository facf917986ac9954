// Copy and download buttons of the account and webhook pages, for what is shown only once
// (a webhook's secret, recovery codes). Everything happens in the browser: a download is a
// Blob made from the page's own text, so nothing is asked of the server again.
//
//   <button type="button" data-copy-from="#id">           copies the element's text
//   <button type="button" data-download-from="#id"
//           data-download-name="file.txt"
//           data-download-heading="first line">           saves it as a text file
//   data-status="#id": an aria-live element that says what happened.
//
// An element with [data-copy-item] children gives one line per child (a list of codes).
(function () {
  "use strict";

  function textOf(selector) {
    var source = document.querySelector(selector);
    if (!source) { return null; }
    var items = source.querySelectorAll("[data-copy-item]");
    if (items.length) {
      return Array.prototype.map.call(items, function (item) {
        return item.textContent.trim();
      }).join("\n");
    }
    return source.textContent.trim();
  }

  function say(button, message) {
    var status = document.querySelector(button.getAttribute("data-status") || "");
    if (status) { status.textContent = message; }
  }

  // Without the clipboard API (plain http to another host): select the text, so that
  // Ctrl+C copies it, and say so.
  function selectForCopying(selector) {
    var source = document.querySelector(selector);
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return document.execCommand && document.execCommand("copy");
  }

  document.querySelectorAll("button[data-copy-from]").forEach(function (button) {
    button.addEventListener("click", function () {
      var selector = button.getAttribute("data-copy-from");
      var text = textOf(selector);
      if (text === null) { return; }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () {
          say(button, "Copied to the clipboard.");
        }, function () {
          say(button, selectForCopying(selector) ? "Copied to the clipboard."
            : "Could not copy: the text is selected, press Ctrl+C.");
        });
      } else {
        say(button, selectForCopying(selector) ? "Copied to the clipboard."
          : "Could not copy: the text is selected, press Ctrl+C.");
      }
    });
  });

  document.querySelectorAll("button[data-download-from]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = textOf(button.getAttribute("data-download-from"));
      if (text === null) { return; }
      var heading = button.getAttribute("data-download-heading");
      var body = (heading ? heading + "\n\n" : "") + text + "\n";
      var url = URL.createObjectURL(new Blob([body], {type: "text/plain;charset=utf-8"}));
      var link = document.createElement("a");
      link.href = url;
      link.download = button.getAttribute("data-download-name") || "download.txt";
      document.body.appendChild(link);
      link.click();
      link.remove();
      // After the click has been handled: the download has its own copy by then.
      window.setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
      say(button, "Saved as " + link.download + ".");
    });
  });
}());
