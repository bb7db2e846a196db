// Loaded just before the widget html-manager (embed-amd.js) on pages that hold widgets
// (nb_ipywidgets_js in _config.yml), so that it renders the saved widgets without the internet.

// 1. The html-manager fetches its icon fonts from the folder that require.js says its AMD module
//    came from (by default a path relative to the page, which does not exist), and from
//    __jupyter_widgets_assets_path__: point both at its folder in _static.
(function () {
  var folder = new URL("html-manager/", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = folder;
  window.require.config({paths: {"@jupyter-widgets/html-manager/dist": folder.replace(/\/$/, "")}});
})();

// 2. It typesets widget labels with MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3, whose
//    MathJax has no Hub (a TypeError for every label). Route those calls to MathJax 3. MathJax
//    (a deferred script) is there before DOMContentLoaded, and the widgets render after it.
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) {
    return;
  }
  mj.Hub = {
    Queue: function (job) {
      var element = Array.isArray(job) ? job[2] : undefined;
      mj.startup.promise
        .then(function () { return mj.typesetPromise(element ? [element] : undefined); })
        .catch(function (err) { console.error("MathJax could not typeset a widget label:", err); });
    },
  };
});
