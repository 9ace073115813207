/* The KPI API docs page: Swagger UI (vendored in swagger-ui/) over /api/v1/openapi.json, set up
   as FastAPI's /docs page was (the offspot original's), with nothing fetched from elsewhere:
   no validator badge (it would ask validator.swagger.io), no CDN. */
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: new URL(root.dataset.openapi, document.baseURI).href,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    onComplete: function () { document.body.dataset.state = "ready"; }
  });
})();
