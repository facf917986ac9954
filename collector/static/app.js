// Small helpers of the staff pages: copy buttons and confirmation of destructive forms.
(function () {
  "use strict";

  // Shows the outcome on the button for a moment (its label, then the original again).
  function tell(button, message) {
    var label = button.getAttribute("data-copy-label") || button.textContent;
    button.setAttribute("data-copy-label", label);
    button.textContent = message;
    window.setTimeout(function () { button.textContent = label; }, 1500);
  }

  // Without the Clipboard API (plain http on another host than localhost), the old way:
  // select a scratch copy of the text and ask the browser to copy the selection.
  function copyBySelection(text) {
    var scratch = document.createElement("textarea");
    scratch.className = "copy-scratch";
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    document.body.appendChild(scratch);
    scratch.select();
    var copied = false;
    try { copied = document.execCommand && document.execCommand("copy"); } catch (e) { copied = false; }
    document.body.removeChild(scratch);
    return copied;
  }

  // When even that fails, the element shown is left selected for Ctrl+C.
  function selectForUser(source) {
    if (!source) { return; }
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copy(button, text, source) {
    text = text.trim();
    function fallback() {
      if (copyBySelection(text)) { tell(button, "Copied"); return; }
      selectForUser(source);
      tell(button, "Press Ctrl+C");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { tell(button, "Copied"); }, fallback);
    } else {
      fallback();
    }
  }

  // <button data-copy="#element-id">: copies that element's text (or value).
  // <button data-copy-value="…">: copies that value (the long-value macro's buttons).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-value]");
    if (!button) { return; }
    if (button.hasAttribute("data-copy-value")) {
      copy(button, button.getAttribute("data-copy-value"),
           button.parentNode.querySelector(".long-value-text"));
      return;
    }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (source) { copy(button, source.value !== undefined ? source.value : source.textContent, source); }
  });

  // <form data-confirm="Really delete …?">: asks before submitting.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
}());
