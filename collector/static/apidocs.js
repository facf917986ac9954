// The API explorer (/api/v1/docs): Swagger UI over this origin's OpenAPI document.
// A file rather than an inline script, so the page keeps the site's Content-Security-Policy.
(function () {
  'use strict';
  var root = document.getElementById('swagger-ui');
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
    deepLinking: true,
    displayRequestDuration: true
  });
}());
