// ClinicBox facilitator panel in the call view: waiting room, message to everyone, poll,
// breakout rooms and questionnaires, without leaving the call. Loaded for facilitators only
// (patients' pages stay small). It reads the panel's state every 4 s and posts to the
// session's own controls, which answer JSON here.
"use strict";
(function () {
  var root = document.getElementById("call");
  var $ = function (id) { return document.getElementById(id); };
  var baseTitle = document.title, lastWaiting = "", TITLES = { phq9: "PHQ-9", gad7: "GAD-7" };

  function problem(text) { var p = $("panel-error"); p.textContent = text; p.hidden = !text; }

  // Post one control; the box answers JSON ({ok} or {message} saying what to fix).
  function post(url, fields) {
    var body = new FormData();
    Object.keys(fields).forEach(function (k) { body.append(k, fields[k]); });
    return fetch(url, { method: "POST", body: body,
      headers: { Accept: "application/json", "X-CSRF-Token": root.dataset.csrf } })
      .then(function (r) {
        if (r.ok) { problem(""); refresh(); return true; }
        return r.json().then(function (j) { problem(j.message || "That did not work. Try again."); return false; });
      })
      .catch(function () { problem("The box did not answer. Check the connection and try again."); return false; });
  }

  function button(text, label, onclick) {
    var b = document.createElement("button"); b.type = "button"; b.textContent = text;
    b.setAttribute("aria-label", label); b.onclick = onclick; return b;
  }

  function showWaiting(waiting) {
    var list = $("waiting-list"), key = JSON.stringify(waiting);
    if (key === lastWaiting) { return; }   // unchanged: keep focus where it is
    lastWaiting = key; list.textContent = "";
    waiting.forEach(function (w) {
      var li = document.createElement("li"), name = document.createElement("span");
      name.textContent = w.name + " "; li.appendChild(name);
      var since = document.createElement("small"); since.textContent = "since " + w.since + " UTC";
      li.appendChild(since);
      li.appendChild(button("Admit", "Admit " + w.name, function () {
        post(root.dataset.removeUrl, { action: "admit", attendance: w.id });
      }));
      li.appendChild(button("Deny", "Deny " + w.name, function () {
        post(root.dataset.removeUrl, { action: "deny", attendance: w.id });
      }));
      list.appendChild(li);
    });
    var n = waiting.length;
    $("waiting-count").textContent = n === 0 ? "Nobody is waiting." :
      (n === 1 ? "1 person is waiting: " : n + " people are waiting: ") +
      waiting.map(function (w) { return w.name; }).join(", ") + ".";
    $("admit-all").hidden = n < 2;
    $("admit-all").textContent = "Admit all (" + n + ")";
    document.title = (n ? "(" + n + " waiting) " : "") + baseTitle;
  }

  function showPoll(poll) {
    var out = $("poll-results"); out.textContent = "";
    $("poll-close").hidden = !(poll && poll.open);
    if (!poll) { return; }
    var h = document.createElement("p");
    h.textContent = (poll.open ? "Open poll: " : "Closed poll: ") + poll.question;
    var ul = document.createElement("ul");
    poll.options.forEach(function (o, i) {
      var li = document.createElement("li"); li.textContent = o + ": " + poll.counts[i]; ul.appendChild(li);
    });
    out.appendChild(h); out.appendChild(ul);
  }

  function apply(st) {
    showWaiting(st.waiting);
    $("message-now").textContent = st.message ? "Showing now: " + st.message : "No message is showing.";
    showPoll(st.poll);
    $("breakout-now").textContent = st.rooms ? "Split into " + st.rooms + " rooms." : "Everyone is together.";
    $("breakout-back").hidden = !st.rooms;
    $("asked-now").textContent = st.asked.length ?
      "Asked for: " + st.asked.map(function (c) { return TITLES[c] || c; }).join(", ") + "." :
      "No questionnaire asked for yet.";
  }

  // Only the newest read is shown: an older one still on its way (started before a change
  // was posted) must not put the old state back.
  var reads = 0;
  function refresh() {
    var n = ++reads;
    fetch(root.dataset.panelUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (st) { if (st && n === reads) { apply(st); } })
      .catch(function () { /* the next round will retry */ });
  }

  $("admit-all").onclick = function () { post(root.dataset.removeUrl, { action: "admit_all" }); };
  $("message-form").onsubmit = function (e) {
    e.preventDefault();
    post(root.dataset.broadcastUrl, { message: $("message-text").value })
      .then(function (ok) { if (ok) { $("message-text").value = ""; } });
  };
  $("message-clear").onclick = function () { post(root.dataset.broadcastUrl, { message: "" }); };
  $("poll-form").onsubmit = function (e) {
    e.preventDefault();
    post(root.dataset.pollUrl, { question: $("poll-question").value,
      options: $("poll-options-text").value })
      .then(function (ok) { if (ok) { $("poll-question").value = ""; $("poll-options-text").value = ""; } });
  };
  $("poll-close").onclick = function () { post(root.dataset.pollUrl, { action: "close" }); };
  $("breakout-form").onsubmit = function (e) {
    e.preventDefault(); post(root.dataset.breakoutUrl, { rooms: $("breakout-rooms").value });
  };
  $("breakout-back").onclick = function () { post(root.dataset.breakoutUrl, { action: "back" }); };
  Array.prototype.forEach.call(document.querySelectorAll(".ask-btn"), function (b) {
    b.onclick = function () { post(root.dataset.askUrl, { instrument: b.dataset.instrument }); };
  });
  refresh(); setInterval(refresh, 4000);
}());
