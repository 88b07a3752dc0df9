// Starts Swagger UI on /docs. The spec URL comes from the page (url_for), so nothing here
// names a route; validatorUrl null stops Swagger UI from sending the spec to an outside
// validator, which an offline service must never do.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
