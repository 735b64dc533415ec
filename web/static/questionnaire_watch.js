// A patient filling in a questionnaire from the waiting room: say when the facilitator lets
// them into the call (the answers stay on the page; the thank-you page leads to the call).
"use strict";
(function () {
  var note = document.getElementById("admitted-note"), timer = null;
  function check() {
    fetch(note.dataset.stateUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (st) {
        if (!st || st.status !== "admitted") { return; }
        clearInterval(timer);
        note.className = "notice";
        // The page carries the sentence in the patient's language.
        note.textContent = note.dataset.admittedText;
      })
      .catch(function () { /* the next round will retry */ });
  }
  check(); timer = setInterval(check, 5000);
}());
