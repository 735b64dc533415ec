// Registers the service worker that keeps the safety plan readable offline (offline.js).
// Its address and scope come from the page, so they hold behind the centre's relay prefix.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!("serviceWorker" in navigator) || !me || !me.dataset.worker) return;
  navigator.serviceWorker.register(me.dataset.worker, { scope: me.dataset.scope })
    .catch(function () {});
})();
