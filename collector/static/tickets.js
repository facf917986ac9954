// The ticket page: the "Resolved" switch saves itself when flipped.
(function () {
  "use strict";

  document.querySelectorAll("input[data-autosubmit]").forEach(function (input) {
    var form = input.form;
    form.querySelectorAll("[data-autosubmit-hide]").forEach(function (element) {
      element.classList.add("d-none");
    });
    input.addEventListener("change", function () {
      if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
    });
  });
}());
