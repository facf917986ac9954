// The API explorer (/api/v1/docs): Swagger UI over this origin's OpenAPI document.
// A file rather than an inline script, so the page keeps the site's Content-Security-Policy.
(function () {
  'use strict';
  var root = document.getElementById('swagger-ui');
  // Following the skip link did not move the focus on this page (found by the every-page
  // browser check; Swagger UI's scripts are in the way), so it moves the focus itself.
  document.getElementById('skip-link').addEventListener('click', function (event) {
    event.preventDefault();
    document.getElementById('main').focus();
  });
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute('data-openapi-url'),
    domNode: root,
    // The operations only: no top bar where another document's URL could be typed in.
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    // Never read ?url= or ?configUrl= from the address: this page shows our document only.
    queryConfigEnabled: false,
    // Tokens typed into Authorize live in this tab's memory, never in localStorage.
    persistAuthorization: false,
    // No badge from an outside validator (and no request leaving the site).
    validatorUrl: null,
    // No deep links: Swagger UI makes each operation's path a link inside the button that
    // opens it, a control nested in a control (axe-core's nested-interactive, serious);
    // every operation keeps its id (#operations-default-listTickets) all the same.
    deepLinking: false,
    displayRequestDuration: true,
    // Swagger UI wraps the server list in a <label> without text: screen readers would
    // announce an unnamed list.
    onComplete: function () {
      var servers = root.querySelector('#servers');
      if (servers) { servers.setAttribute('aria-label', 'Server'); }
    }
  });
}());
