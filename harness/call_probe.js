// Lab probe for the call page, loaded before the page's own scripts (Playwright's init script,
// puppeteer's evaluateOnNewDocument). Measures what a patient gets, never changes the call:
// - keeps every RTCPeerConnection the page makes (a reconnect makes a new one), so inbound
//   stats can be read per receive slot (mid) in Chromium and Firefox alike;
// - reads getStats() once a second (every 200 ms until the first audio sample is played, for
//   the join time) into window.__clinicboxLab.samples;
// - counts the reconnect notices the page shows: the banner ("Connection lost. Reconnecting",
//   "Connection interrupted...") and tiles captioned "(reconnecting)";
// - keeps a join timeline (window.__clinicboxLab.steps): "Join the call" pressed, each
//   connection's signalling, ICE, DTLS and data-channel states, its first track, with
//   milliseconds since page open, so a slow join can be read step by step.
"use strict";
(function () {
  if (window.__clinicboxLab) { return; }
  var lab = window.__clinicboxLab = {
    openedAt: performance.timeOrigin / 1000,   // page open: navigation start, epoch seconds
    firstAudioAt: null, samples: [], notices: [], pcs: [], steps: []
  };
  function step(what) { lab.steps.push([Math.round(performance.now()), what]); }
  document.addEventListener("click", function (e) {
    if (e.target && e.target.id === "join-btn") { step("join pressed"); }
  }, true);
  var Native = window.RTCPeerConnection;
  if (Native) {
    var Kept = function (config, constraints) {
      var pc = new Native(config, constraints), n = lab.pcs.length + 1;
      lab.pcs.push(pc);
      step("pc" + n + " created");
      ["signalingState", "iceGatheringState", "iceConnectionState", "connectionState"]
        .forEach(function (field) {
          pc.addEventListener(field.toLowerCase().replace("state", "statechange"), function () {
            step("pc" + n + " " + field + " " + pc[field]);
          });
        });
      var firstTrack = true;
      pc.addEventListener("track", function (e) {
        if (firstTrack) { step("pc" + n + " first track " + e.track.kind); firstTrack = false; }
      });
      var open = pc.createDataChannel;
      pc.createDataChannel = function () {
        var channel = open.apply(pc, arguments);
        channel.addEventListener("open", function () { step("pc" + n + " data channel open"); });
        channel.addEventListener("message", function once() {
          step("pc" + n + " first data message");
          channel.removeEventListener("message", once);
        });
        return channel;
      };
      return pc;
    };
    Kept.prototype = Native.prototype;
    Kept.generateCertificate = Native.generateCertificate;
    window.RTCPeerConnection = Kept;
  }

  var NOTICE = /reconnect|interrupted|connection lost/i;
  var lastBanner = "", away = {};
  function noticeSeen(what) { lab.notices.push([Date.now() / 1000, what]); }
  function watchNotices() {
    var banner = document.getElementById("notice");
    var text = banner && !banner.hidden ? banner.textContent : "";
    if (NOTICE.test(text) && text !== lastBanner) { noticeSeen("banner: " + text); }
    lastBanner = NOTICE.test(text) ? text : "";
    var captions = document.querySelectorAll("#tiles figure");
    Array.prototype.forEach.call(captions, function (tile) {
      var cap = tile.querySelector("figcaption");
      var now = !!cap && cap.textContent.indexOf("(reconnecting)") >= 0;
      if (now && !away[tile.id]) { noticeSeen("tile: " + tile.id); }
      away[tile.id] = now;
    });
  }
  new MutationObserver(watchNotices).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ["hidden"]
  });

  var FIELDS = ["packetsReceived", "packetsLost", "bytesReceived", "totalSamplesReceived",
    "concealedSamples", "silentConcealedSamples", "concealmentEvents", "jitterBufferDelay",
    "jitterBufferEmittedCount", "jitterBufferTargetDelay", "framesDecoded", "freezeCount",
    "totalFreezesDuration", "frameWidth", "jitter"];

  function sample() {
    var pc = lab.pcs[lab.pcs.length - 1], call = window.ClinicBoxCall;
    if (!pc || !call || pc.signalingState === "closed") { return Promise.resolve(); }
    var slots = call.slots(), byTrack = {};
    pc.getTransceivers().forEach(function (t) {
      if (t.receiver && t.receiver.track && t.mid !== null) { byTrack[t.receiver.track.id] = t.mid; }
    });
    return pc.getStats().then(function (report) {
      var rows = [];
      report.forEach(function (s) {
        if (s.type !== "inbound-rtp") { return; }
        var mid = s.mid !== undefined ? s.mid : byTrack[s.trackIdentifier];
        if (mid === undefined) { return; }
        var row = { mid: String(mid), kind: s.kind,
          who: (s.kind === "video" ? slots.video : slots.audio)[mid] || null };
        FIELDS.forEach(function (f) { if (s[f] !== undefined) { row[f] = s[f]; } });
        rows.push(row);
        if (s.kind === "audio" && lab.firstAudioAt === null && (s.totalSamplesReceived || 0) > 0 &&
            (s.packetsReceived || 0) > 0) {
          lab.firstAudioAt = Date.now() / 1000;
          step("first audio played");
        }
      });
      // transceivers: the size of the page's offer (a thin link's first offer has fewer).
      lab.samples.push({ t: Date.now() / 1000, pc: lab.pcs.length, me: slots.me, rows: rows,
        transceivers: pc.getTransceivers().length });
    });
  }
  function tick() {
    sample().catch(function () { /* a closing connection: the next tick reads again */ })
      .then(function () { setTimeout(tick, lab.firstAudioAt === null ? 200 : 1000); });
  }
  tick();
}());
