// Keeps the patient's safety plan and crisis page readable without a connection: network
// first, and the last copy loaded when the network fails. Nothing else is kept. Signing out
// sends Clear-Site-Data, which removes this cache.
"use strict";
var CACHE = "clinicbox-plan-v1";
// Path endings, so the same worker serves under the centre's relay prefix (/c/<name>/...).
var KEPT = ["/me/plan", "/me/crisis", "/static/portal.css"];

function kept(path) {
  return KEPT.some(function (end) {
    return path.slice(-end.length) === end;
  });
}

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });
self.addEventListener("fetch", function (event) {
  var url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin ||
      !kept(url.pathname)) {
    return;
  }
  event.respondWith(
    fetch(event.request).then(function (response) {
      if (response.ok && !response.redirected) {
        var copy = response.clone();
        caches.open(CACHE).then(function (cache) { cache.put(url.pathname, copy); });
      }
      return response;
    }).catch(function () {
      return caches.match(url.pathname).then(function (kept) {
        return kept || Response.error();
      });
    })
  );
});
