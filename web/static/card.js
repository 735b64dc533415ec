// An access card's link carries its code in the fragment (#CODE), which the browser never
// sends: fill the form with it and send it, so a scanned card or a home-screen link opens
// the space in one step. Without JavaScript the patient types the code.
(function () {
  "use strict";
  var code = decodeURIComponent(window.location.hash.slice(1));
  var form = document.getElementById("card-form");
  if (!code || !form || document.getElementById("card-error")) return;
  document.getElementById("card-code").value = code;
  form.submit();
})();
