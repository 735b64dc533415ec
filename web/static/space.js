// Registers the service worker that keeps the safety plan readable offline (offline.js).
(function () {
  "use strict";
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/me/offline.js", { scope: "/me/" }).catch(function () {});
  }
})();
