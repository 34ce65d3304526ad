// Glue for the vendored ipywidgets embed manager (see ../README.md).
// Loaded by myst-nb (nb_ipywidgets_js in _config.yml) after require.js and
// before embed-amd.js, on pages with saved widget state only.
(function () {
  "use strict";
  // 1. embed-amd.js finds its fonts next to the AMD module
  //    "@jupyter-widgets/html-manager/dist/...": map that id to this folder,
  //    else RequireJS resolves it relative to the page (404s).
  var src = document.currentScript && document.currentScript.src;
  if (src && window.require && window.require.config) {
    window.require.config({
      paths: { "@jupyter-widgets/html-manager/dist": src.slice(0, src.lastIndexOf("/")) },
    });
  }
  // 2. The widgets typeset their labels with the MathJax 2 API
  //    (MathJax.Hub.Queue); the book loads MathJax 3. Forward to MathJax 3.
  function shim() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.version || mj.version.charAt(0) !== "3") return;
    mj.Hub = {
      Queue: function () {
        var elements = [];
        for (var i = 0; i < arguments.length; i++) {
          var a = arguments[i];
          if (Array.isArray(a) && a[0] === "Typeset" && a[2]) elements.push(a[2]);
        }
        var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
        return ready
          .then(function () {
            if (elements.length && mj.typesetPromise) return mj.typesetPromise(elements);
          })
          .catch(function (err) { console.error("MathJax typeset of a widget label failed:", err); });
      },
    };
  }
  shim();
  document.addEventListener("DOMContentLoaded", shim);
})();
