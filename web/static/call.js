// ClinicBox call client: pre-call check, join the SFU, tiles, controls, chat and notices.
// Hand-written and small on purpose: patients load it over slow links on cheap phones.
"use strict";
(function () {
  var root = document.getElementById("call");
  var $ = function (id) { return document.getElementById(id); };
  var local = null, pc = null, channel = null, statsTimer = null, stateTimer = null;
  var state = { muted: false, camOff: false, saver: false, hand: false, locked: false };
  // Receive slots: the offer carries a fixed set of receive-only m-lines, so nobody joining or
  // leaving renegotiates; the box says which participant each slot (by mid) shows.
  var AUDIO_SLOTS = 5, VIDEO_SLOTS = 4;  // the box forwards 3 loudest voices + facilitators
  // On a thin link (the pre-call check was slow, or audio only was chosen) the first offer is
  // a third the size (GPRS carried the full one's 36,000 characters for 14 s and more): the
  // box mixes the voices into the first audio slot there anyway.
  var THIN_AUDIO_SLOTS = 2, THIN_VIDEO_SLOTS = 1, SLOW_MS = 800;
  var me = null, names = {}, mutedBy = {}, selfMuted = {}, tracks = {};
  var slots = { audio: {}, video: {} }, speaker = null;
  // The seat's resume token (from welcome) and the reconnect attempts made for this drop.
  // Kept for this tab only, so a reload takes the seat back from the connection it replaces
  // (the box refuses a live seat to anyone without it).
  var resume = null, away = {}, retries = 0, leaving = false;
  try { resume = window.sessionStorage.getItem("clinicbox-resume"); } catch (x) { /* private mode */ }
  // The pre-call check's median request time (ms; null until measured), and whether the box
  // asked this browser to stop sending video (its uplink cannot carry it).
  var netMs = null, netSlow = null, videoHeld = false;
  // Settles when the pre-call check has its answer (or gave up). Join waits for it, at most
  // NET_WAIT_MS: an offer sent before it is the full one, and on GPRS that 38 kB upload
  // raced the check's own requests through a 20 kbps uplink, stalled past the box's 10 s
  // read timeout and was dropped: the patient never got in.
  var netChecked = null, NET_WAIT_MS = 15000;
  // An offer lost on the way is sent again this many times, this long after the loss.
  var OFFER_RETRIES = 2, OFFER_RETRY_MS = 2000;

  // The page's words in the patient's language: one JSON object the server renders into the
  // page (web/call_strings.py), so this file stays static and cacheable. Read once; a word
  // missing there falls back to the English given here. {name} placeholders are filled in.
  var words = {};
  try { words = JSON.parse($("call-strings").textContent); } catch (x) { /* English */ }
  function tr(key, english, values) {
    var text = typeof words[key] === "string" ? words[key] : english;
    return text.replace(/\{(\w+)\}/g, function (all, name) {
      return values && values[name] !== undefined ? String(values[name]) : all;
    });
  }

  function say(text) {            // plain-language notice, read out by screen readers
    var n = $("notice"); n.textContent = text; n.hidden = !text;
  }
  // Notices that must not overwrite each other or the status line above: a short-lived one
  // that fades, the facilitator's message that stays until dismissed, and adaptation news
  // shown once per change.
  var flashTimer = null, lastAdaptation = "";
  function flash(text) {
    var n = $("flash"); n.textContent = text; n.hidden = !text;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { n.hidden = true; n.textContent = ""; }, 6000);
  }
  function pinMessage(text) {
    $("facilitator-text").textContent = text; $("facilitator-message").hidden = !text;
  }
  function adapted(reason) {
    if (!reason || reason === lastAdaptation) { return; }
    lastAdaptation = reason; $("adaptation").textContent = reason; $("adaptation").hidden = false;
  }
  function check(id, ok, text) {
    var span = $(id).querySelector("span");
    span.textContent = text; span.className = ok ? "ok" : "bad";
  }
  function press(btn, on, onText, offText) {
    btn.setAttribute("aria-pressed", String(on)); btn.textContent = on ? onText : offText;
  }

  // Pre-call check: microphone, camera, and a rough connection estimate from a timed fetch.
  // Settles once the camera and microphone are open (or refused): joining waits for it, or
  // a quick tap on Join (or a slow phone) joined with nothing to send, not even a voice.
  var mediaAsked = Promise.resolve();
  function precheck() {
    mediaAsked = navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { max: 15 } }
    }).then(function (stream) {
      local = stream;
      $("preview").srcObject = stream;
      check("check-mic", stream.getAudioTracks().length > 0, tr("working", "working"));
      check("check-cam", stream.getVideoTracks().length > 0, tr("working", "working"));
    }).catch(function (err) {
      check("check-mic", false,
        tr("notAvailableWhy", "not available ({error})", { error: err.name }));
      check("check-cam", false, tr("notAvailable", "not available"));
    });
    // The median of five timed requests, one after another: a single one read 673, 2,642
    // and 667 ms on the same EDGE link and put one patient in three on audio only.
    // Three of the five over SLOW_MS make the median slow already: joining need not wait
    // for the other two (on GPRS the five took 12-20 s), and they are not sent, so they do
    // not crowd the offer's upload.
    // The page's own style sheet and script count as the first answers (request sent to
    // first byte back, as a timed request measures; only when they came over the network,
    // not from the cache): on GPRS three timed requests after them had taken ~9 s.
    var times = [], slowKnown = null;
    var slowEarly = new Promise(function (resolve) { slowKnown = resolve; });
    function slowSoFar() { return times.filter(function (t) { return t >= SLOW_MS; }).length >= 3; }
    function answered(ms) {
      times.push(ms);
      if (slowSoFar()) { slowKnown(); }
    }
    pageAnswers().forEach(answered);
    function timed() {
      if (times.length >= 5 || slowSoFar()) { return Promise.resolve(); }
      var started = performance.now();
      return fetch(root.dataset.probeUrl, { cache: "no-store" }).then(function (r) { return r.text(); })
        .then(function () { answered(performance.now() - started); });
    }
    var chain = timed();
    for (var n = 1; n < 5; n++) { chain = chain.then(timed); }
    var complete = chain.then(function () {
      times.sort(function (a, b) { return a - b; });
      var ms = netMs = Math.round(times[2]);
      netSlow = ms >= SLOW_MS;
      check("check-net", ms < SLOW_MS, ms < 300 ? tr("netGood", "good ({ms} ms)", { ms: ms }) :
        ms < SLOW_MS ? tr("netFair", "fair ({ms} ms)", { ms: ms }) :
        tr("netSlow", "slow ({ms} ms): audio only is advised", { ms: ms }));
      if (ms >= SLOW_MS) { $("start-audio-only").checked = true; }
    }).catch(function () {
      check("check-net", false, tr("netUnreachable", "cannot reach the box"));
    });
    netChecked = Promise.race([complete, slowEarly.then(slowLink)]);
  }

  // Request-to-first-byte times (ms) of this page's static files that crossed the network.
  function pageAnswers() {
    if (!window.performance || !performance.getEntriesByType) { return []; }
    return performance.getEntriesByType("resource").filter(function (e) {
      return e.name.indexOf(location.origin + "/static/") === 0 && e.transferSize > 0 &&
        e.requestStart > 0 && e.responseStart >= e.requestStart;
    }).slice(0, 2).map(function (e) { return e.responseStart - e.requestStart; });
  }

  // The pre-call check's verdict before its end: slow (three slow answers, or none within
  // NET_WAIT_MS). Audio only is advised as at its end.
  function slowLink() {
    if (netSlow !== null) { return; }
    netSlow = true;
    check("check-net", false, tr("netSlowEarly", "slow: audio only is advised"));
    $("start-audio-only").checked = true;
  }

  // What the camera sends: nothing at all in audio only, while the camera is off, or while
  // the box holds video back (a disabled track would still send black frames: 24-29 kbps
  // into a 20 kbps GPRS uplink).
  function syncVideoSender() {
    if (!pc || !local) { return; }
    var cam = local.getVideoTracks()[0] || null;
    var want = state.saver || state.camOff || videoHeld ? null : cam;
    pc.getTransceivers().forEach(function (t) {
      if (t.receiver.track && t.receiver.track.kind === "video" &&
          t.direction === "sendonly" && !t.sender.track !== !want && !state.sharing) {
        t.sender.replaceTrack(want);
      }
    });
  }

  function tile(id, label) {
    var t = $("tile-" + id);
    if (!t) {
      t = document.createElement("figure"); t.id = "tile-" + id; t.className = "tile";
      var v = document.createElement("video"); v.autoplay = true; v.playsInline = true;
      v.muted = true;               // sound comes from the audio slots
      var c = document.createElement("figcaption");
      t.appendChild(v); t.appendChild(c); $("tiles").appendChild(t);
      caption(id, label);
      if (root.dataset.role === "facilitator" && id !== "self") { controlsFor(t, id); }
      arrange();
    }
    return t;
  }
  function caption(id, label) {
    var t = $("tile-" + id); if (!t) { return; }
    if (label) { names[id] = label; }
    var name = label || names[id] || tr("participant", "Participant");
    var muted = mutedBy[id] || selfMuted[id], cap = t.querySelector("figcaption");
    cap.textContent = name + (muted ? " " + tr("mutedTag", "(muted)") : "") +
      (away[id] ? " " + tr("reconnectingTag", "(reconnecting)") : "");
    t.classList.toggle("muted", !!muted);
    var speaking = speaker !== null && id === speaker && !silenced(id, muted);
    t.classList.toggle("speaking", speaking);
    if (speaking) {                // the outline is not the only cue: screen readers hear it
      var sr = document.createElement("span"); sr.className = "visually-hidden";
      sr.textContent = " " + tr("speakingTag", "(speaking)"); cap.appendChild(sr);
    }
    Array.prototype.forEach.call(t.querySelectorAll(".tile-action"), function (b) {
      if (b.dataset.action === "mute") {
        b.textContent = mutedBy[id] ? tr("unmute", "Unmute") : tr("mute", "Mute");
      }
      b.setAttribute("aria-label", b.textContent + " (" + name + ")");
    });
    people();
  }

  // Show each slot's track where it belongs: video in its participant's tile, audio in a
  // hidden element per slot. Tiles stay for everyone in the room, with or without video.
  function render() {
    var showing = {};
    Object.keys(slots.video).forEach(function (mid) {
      var who = slots.video[mid], track = tracks[mid];
      if (!who || !track) { return; }
      showing[who] = true;
      var v = tile(who).querySelector("video");
      if (!v.srcObject || v.srcObject.getVideoTracks()[0] !== track) {
        v.srcObject = new MediaStream([track]);
      }
    });
    Array.prototype.forEach.call($("tiles").children, function (t) {
      var id = t.id.slice(5), v = t.querySelector("video");
      if (id !== "self" && !showing[id] && v.srcObject) { v.srcObject = null; }
    });
    // Every audio slot plays as soon as its track arrives, before the box's slot map does:
    // the map comes over the data channel, whose SCTP handshake can take many seconds on a
    // lossy link through TURN, and an unnamed slot is silent anyway. A reconnect brings new
    // tracks for the same slots: the element takes the new one.
    Object.keys(tracks).forEach(function (mid) {
      var a = $("slot-" + mid), track = tracks[mid];
      if (track.kind !== "audio") { return; }
      if (!a) {
        a = document.createElement("audio"); a.id = "slot-" + mid; a.autoplay = true;
        root.appendChild(a);
      }
      if (!a.srcObject || a.srcObject.getAudioTracks()[0] !== track) {
        a.srcObject = new MediaStream([track]);
      }
    });
    Object.keys(slots.audio).forEach(function (mid) {
      // "mix": the box's mixed voices of the room, not a person with a tile.
      if (slots.audio[mid] && slots.audio[mid] !== "mix") { tile(slots.audio[mid]); }
    });
  }

  // Facilitator controls on each remote tile; the SFU acts on them and tells everyone.
  function controlsFor(t, id) {
    [["mute", "Mute"], ["pin", "Pin for everyone"], ["remove", "Remove"]].forEach(function (a) {
      var b = document.createElement("button"); b.type = "button"; b.textContent = a[1];
      b.className = "tile-action"; b.dataset.action = a[0];
      b.onclick = function () { act(a[0], id); };
      t.appendChild(b);
    });
    caption(id);
  }
  function act(action, id) {
    // A patient removed in the call is un-admitted in the portal too (the box then
    // drops their media), so their link cannot bring them back without a new admission.
    if (action === "remove" && id.indexOf("attendance/") === 0) { unadmit(id.slice(11)); return; }
    var msg = { type: action, participant: id };
    if (action === "mute") { msg.on = !mutedBy[id]; }   // the same button unmutes
    send(msg);
    if (action === "pin") { pinned = id; arrange(); }
  }

  // The facilitator panel's list of people in the call: name, muted, hand, and the same
  // mute and remove controls as on their tile (reachable without hunting through tiles).
  var peopleShown = "";
  function people() {
    var list = $("people"); if (!list) { return; }
    var rows = Array.prototype.filter.call($("tiles").children, function (t) {
      return t.id !== "tile-self";
    }).map(function (t) {
      var id = t.id.slice(5);
      return [id, (names[id] || "Participant") + (mutedBy[id] || selfMuted[id] ? " (muted)" : "") +
        (hands.indexOf(id) >= 0 ? " (hand raised)" : "") +
        (t.classList.contains("risk") ? " (needs follow-up)" : ""), !!mutedBy[id]];
    });
    var key = JSON.stringify(rows);
    if (key === peopleShown) { return; }   // unchanged: keep keyboard focus where it is
    peopleShown = key; list.textContent = "";
    rows.forEach(function (row) {
      var id = row[0], name = names[id] || "Participant", li = document.createElement("li");
      var label = document.createElement("span"); label.textContent = row[1];
      li.appendChild(label);
      [["mute", mutedBy[id] ? "Unmute" : "Mute"], ["remove", "Remove"]].forEach(function (a) {
        var b = document.createElement("button"); b.type = "button"; b.textContent = a[1];
        b.setAttribute("aria-label", a[1] + " " + name);
        b.onclick = function () { act(a[0], id); }; li.appendChild(b);
      });
      list.appendChild(li);
    });
    if (!rows.length) {
      var none = document.createElement("li"); none.textContent = "Nobody else is in the call yet.";
      list.appendChild(none);
    }
  }

  // Layout: a grid whose columns fill the screen for the number of people, or a speaker
  // view with one large tile (the pinned person, else whoever speaks, else the first other
  // person) over a strip of the rest. Both stack sensibly on a 390 px phone.
  var speakerView = false, pinned = null;
  function arrange() {
    var box = $("tiles"), all = Array.prototype.slice.call(box.children);
    var n = all.length, wide = box.clientWidth >= 560;
    box.style.setProperty("--cols", String(wide ? Math.ceil(Math.sqrt(n)) : Math.min(n, 2)));
    var featured = null;
    if (speakerView) {
      // Yourself only when pinned (sharing your screen) or alone: you know your own face.
      featured = $("tile-" + pinned) || (speaker && speaker !== "self" && $("tile-" + speaker)) ||
        all.filter(function (t) { return t.id !== "tile-self"; })[0] || all[0] || null;
    }
    all.forEach(function (t) { t.classList.toggle("featured", t === featured); });
    box.className = speakerView ? "speaker" : "grid";
    people();
  }

  function unadmit(attendance) {
    var body = new FormData();
    body.append("action", "remove"); body.append("attendance", attendance);
    fetch(root.dataset.removeUrl, { method: "POST", body: body,
      headers: { Accept: "application/json", "X-CSRF-Token": root.dataset.csrf } })
      .then(function (r) { if (!r.ok) { throw new Error(); } })
      .catch(function () { say("That person could not be removed. Try again."); });
  }

  function send(msg) {
    if (channel && channel.readyState === "open") { channel.send(JSON.stringify(msg)); }
  }

  function onEvent(msg) {
    if (msg.type === "chat") {
      var li = document.createElement("li");
      var who = document.createElement("strong"); who.textContent = msg.from + ": ";
      li.appendChild(who); li.appendChild(document.createTextNode(msg.text));
      $("chat-log").appendChild(li);
    } else if (msg.type === "notice") {
      say(msg.text);
    } else if (msg.type === "send-video") {  // the box: your uplink can (not) carry video
      videoHeld = msg.on === false; syncVideoSender();
      if (msg.reason) { say(msg.reason); }
    } else if (msg.type === "quality") {   // adaptive bitrate: a rung changed, with its reason
      adapted(msg.reason);
    } else if (msg.type === "hand") {
      handRaised(msg.participant === me ? "self" : msg.participant, !!msg.raised);
    } else if (msg.type === "mute" && msg.participant === "me") {
      setMuted(msg.on !== false);
      say(msg.on !== false ? tr("mutedByFacilitator", "The facilitator muted your microphone.") :
        tr("unmutedByFacilitator", "The facilitator let you speak again."));
    } else if (msg.type === "muted") {      // someone else was muted, or muted themselves
      (msg.self ? selfMuted : mutedBy)[msg.participant] = !!msg.on; caption(msg.participant);
    } else if (msg.type === "speaker") {
      var was = speaker; speaker = msg.participant === me ? "self" : msg.participant;
      caption(was); caption(speaker);
      if (speakerView && !pinned && was !== speaker) { arrange(); }
    } else if (msg.type === "breakout") {
      $("room-note").hidden = false;
      $("room-note").textContent = msg.room ?
        tr("inBreakout", "You are in breakout room {room}.", { room: msg.room }) :
        tr("backInMain", "You are back in the main room.");
    } else if (msg.type === "pin") {
      var p = $("tile-" + (msg.participant === me ? "self" : msg.participant));
      if (p) { $("tiles").prepend(p); pinned = p.id.slice(5); arrange(); }
    } else if (msg.type === "lock") {
      state.locked = !!msg.on;
      if ($("lock-btn")) { press($("lock-btn"), state.locked, "Unlock room", "Lock room"); }
    } else if (msg.type === "removed") {
      leave(tr("removed", "The facilitator removed you from the call."));
    } else if (msg.type === "welcome") {
      me = msg.participant; resume = msg.resume || null; retries = 0;
      try { window.sessionStorage.setItem("clinicbox-resume", resume || ""); } catch (x) { /* private mode */ }
      (msg.participants || []).forEach(function (p) {   // who was muted before we came
        mutedBy[p.participant] = !!p.muted; selfMuted[p.participant] = !!p.self_muted;
        tile(p.participant, p.name);
        if (p.hand) { handRaised(p.participant, true); }
      });
      if (msg.breakout) { onEvent({ type: "breakout", room: msg.breakout }); }  // joined late
    } else if (msg.type === "participant" && msg.left) {
      var gone = $("tile-" + msg.participant); if (gone) { gone.remove(); }
      delete away[msg.participant];
      if (pinned === msg.participant) { pinned = null; }
      handRaised(msg.participant, false); arrange();
    } else if (msg.type === "participant" && msg.reconnecting !== undefined) {
      away[msg.participant] = !!msg.reconnecting; caption(msg.participant);
    } else if (msg.type === "participant" && msg.name) {
      delete away[msg.participant];
      tile(msg.participant); caption(msg.participant, msg.name);
    } else if (msg.type === "slots") {
      slots = { audio: msg.audio || {}, video: msg.video || {} }; render();
    }
  }

  function quality() {            // connection indicator from inbound loss and round-trip time
    if (!pc) { return; }
    pc.getStats().then(function (stats) {
      var lost = 0, got = 0, rtt = null;
      stats.forEach(function (s) {
        if (s.type === "inbound-rtp") { lost += s.packetsLost || 0; got += s.packetsReceived || 0; }
        if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
          rtt = s.currentRoundTripTime;
        }
      });
      var loss = got ? lost / (lost + got) : 0;
      var level = loss > 0.08 || rtt > 0.6 ? "weak" : loss > 0.02 || rtt > 0.3 ? "fair" : "good";
      $("quality-text").textContent = level === "weak" ? tr("qualityWeak", "weak") :
        level === "fair" ? tr("qualityFair", "fair") : tr("qualityGood", "good");
      $("quality").className = "q-" + level;
    });
  }

  // Resolves once the pre-call check has answered, or after NET_WAIT_MS whatever it says.
  function netCheckDone() {
    if (netSlow !== null || netMs !== null || !netChecked) { return Promise.resolve(); }
    say(tr("checkingConnection", "Checking your connection before joining…"));
    var overdue = {};
    return Promise.race([netChecked, new Promise(function (resolve) {
      setTimeout(function () { resolve(overdue); }, NET_WAIT_MS);
    })]).then(function (result) {
      if (result === overdue) { slowLink(); }
      say("");
    });
  }

  // An offer that got no answer at all (the request itself failed: a GPRS upload that
  // stalled until the connection dropped) is sent again on a fresh connection: the box made
  // no seat for it. An answer that says why (the box's message) is final.
  function connectAgainIfLost(left) {
    return connect().catch(function (err) {
      if (!(err instanceof TypeError) || left <= 0 || leaving) { throw err; }
      var old = pc; pc = null; if (old) { old.close(); }
      say(tr("stillConnecting", "Still connecting…"));
      return new Promise(function (resolve) { setTimeout(resolve, OFFER_RETRY_MS); })
        .then(function () { say(""); return connectAgainIfLost(left - 1); });
    });
  }

  function join() {
    $("join-btn").disabled = true;
    Promise.all([netCheckDone(), mediaAsked])
      .then(function () {
        // Read after the check: on a slow link it ticks audio only, as it would have had
        // the patient waited for it; and only once the camera and microphone answered, so a
        // patient who taps Join early still joins with a voice.
        state.saver = $("start-audio-only").checked;
        return connectAgainIfLost(OFFER_RETRIES);
      })
      .then(function () {
        $("precheck").hidden = true; $("room").hidden = false;
        var self = tile("self", tr("you", "You")); self.replaceChild($("preview"), self.querySelector("video"));
        if (state.saver) { setSaver(true); }
        statsTimer = setInterval(quality, 2000);
      })
      .catch(function (err) {
        say(tr("couldNotJoin", "Could not join the call: {error}", { error: err.message }));
        $("join-btn").disabled = false;
      });
  }

  // aiortc has no ICE restart: after a drop, a new connection offers again with the seat's
  // resume token and gets the same seat back (mute, hand, room) within the box's grace.
  function reconnect() {
    if (leaving || retries >= 6) {
      if (!leaving) {
        say(tr("connectionLost", "The connection was lost. Reload the page to join again."));
      }
      return;
    }
    retries += 1;
    say(tr("reconnecting", "Connection lost. Reconnecting…"));
    var old = pc; pc = null; if (old) { old.close(); }
    setTimeout(function () {
      connect().then(function () { say(tr("reconnected", "Reconnected.")); }).catch(reconnect);
    }, 1000 * Math.min(8, Math.pow(2, retries - 1)));
  }

  function iceServers() {
    try { return JSON.parse(root.dataset.iceServers || "[]"); } catch (x) { return []; }
  }

  // The box forwards Opus and VP8 (with RTX) only. Offering just those keeps every m-line
  // short: with the browser's whole codec list the offer for 17 m-lines is ~39 KB, which
  // takes seconds to cross an EDGE link (and the box's answer repeats what was offered).
  var BOX_CODECS = { audio: ["audio/opus"], video: ["video/vp8", "video/rtx"] };
  function onlyBoxCodecs(t) {
    var kind = t.receiver && t.receiver.track && t.receiver.track.kind;
    if (!kind || !t.setCodecPreferences || !window.RTCRtpReceiver ||
        !RTCRtpReceiver.getCapabilities) { return; }
    var caps = RTCRtpReceiver.getCapabilities(kind);
    var keep = (caps ? caps.codecs : []).filter(function (c) {
      return BOX_CODECS[kind].indexOf(c.mimeType.toLowerCase()) >= 0;
    });
    var plain = keep.filter(function (c) { return c.mimeType.toLowerCase() !== "video/rtx"; });
    // Browsers differ on RTX entries whose codec is gone: without RTX if they refuse it.
    try { t.setCodecPreferences(keep); } catch (x) {
      try { t.setCodecPreferences(plain); } catch (y) { /* the browser's own list, longer */ }
    }
  }

  function connect() {
    // max-bundle: the box (aiortc) runs every m-line over one transport. iceServers: the
    // centre's TURN relay when this seat is remote (UDP, TCP and TLS URLs), none on the LAN.
    pc = new RTCPeerConnection({ iceServers: iceServers(), bundlePolicy: "max-bundle" });
    channel = pc.createDataChannel("events");
    channel.onmessage = function (e) { try { onEvent(JSON.parse(e.data)); } catch (x) { /* ignore */ } };
    channel.onopen = function () { if (state.saver) { send({ type: "data-saver", on: true }); } };
    if (local) {
      local.getTracks().forEach(function (t) {
        if (t.kind === "video" && state.saver) { t.enabled = false; }
        pc.addTransceiver(t, { direction: "sendonly", streams: [local] });
      });
      syncVideoSender();
    }
    var thin = state.saver || netSlow === true;
    var i;
    var audioSlots = thin ? THIN_AUDIO_SLOTS : AUDIO_SLOTS;
    var videoSlots = thin ? THIN_VIDEO_SLOTS : VIDEO_SLOTS;
    for (i = 0; i < audioSlots; i++) { pc.addTransceiver("audio", { direction: "recvonly" }); }
    for (i = 0; i < videoSlots; i++) { pc.addTransceiver("video", { direction: "recvonly" }); }
    pc.getTransceivers().forEach(onlyBoxCodecs);
    pc.ontrack = function (e) {
      tracks[e.transceiver.mid] = e.track;
      if (e.track.kind === "video" && state.saver) { e.track.enabled = false; }
      render();
    };
    var mine = pc;
    pc.onconnectionstatechange = function () {
      if (mine === pc && mine.connectionState === "failed") { reconnect(); }
    };
    return pc.createOffer().then(function (o) { return pc.setLocalDescription(o); })
      .then(gathered)
      .then(function () {
        return offerBody(JSON.stringify({ token: root.dataset.token, sdp: pc.localDescription.sdp,
          type: pc.localDescription.type, resume: resume, thin: thin }));
      })
      .then(function (body) {
        var headers = { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf };
        if (body.gzip) { headers["Content-Encoding"] = "gzip"; }
        return fetch(root.dataset.offerUrl, { method: "POST", headers: headers, body: body.data });
      })
      .then(function (r) {
        if (!r.ok) { return r.json().then(function (j) { throw new Error(j.message); }); }
        return r.json();
      })
      .then(function (answer) { return pc.setRemoteDescription(answer); });
  }

  // The offer's body, gzipped where the browser can: SDP repeats itself m-line after m-line,
  // so ~6-14 KB become ~1-1.5 KB, and on a 20 kbps GPRS uplink that upload (5-20 s with
  // TCP's losses) was the largest part of joining. The box takes either.
  function offerBody(json) {
    if (!window.CompressionStream) { return Promise.resolve({ data: json, gzip: false }); }
    var zipped = new Blob([json]).stream().pipeThrough(new CompressionStream("gzip"));
    return new Response(zipped).arrayBuffer()
      .then(function (data) { return { data: data, gzip: true }; })
      .catch(function () { return { data: json, gzip: false }; });
  }

  // The box answers once, without trickle ICE: send the offer when candidates are gathered,
  // or after 3 s with what we have. With the centre's TURN relay (a remote seat) the offer
  // must carry a relay candidate, or two NATs keep us apart: wait for the first one (up to
  // 10 s on a slow link), not for every TURN transport to finish.
  function gathered() {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      var timer = setTimeout(resolve, iceServers().length ? 10000 : 3000);
      function done() { clearTimeout(timer); resolve(); }
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { done(); }
      });
      pc.addEventListener("icecandidate", function (e) {
        if (e.candidate && / typ relay /.test(e.candidate.candidate)) { done(); }
      });
    });
  }

  function setMuted(on) {
    state.muted = on;
    if (local) { local.getAudioTracks().forEach(function (t) { t.enabled = !on; }); }
    press($("mute-btn"), on, tr("unmute", "Unmute"), tr("mute", "Mute"));
  }
  function setCam(off) {
    state.camOff = off;
    if (local) { local.getVideoTracks().forEach(function (t) { t.enabled = !off; }); }
    syncVideoSender();
    press($("cam-btn"), off, tr("cameraOn", "Camera on"), tr("cameraOff", "Camera off"));
  }
  function setSaver(on) {          // audio only: stop sending and receiving video
    state.saver = on; setCam(on);
    if (pc) {
      pc.getReceivers().forEach(function (r) {
        if (r.track.kind === "video") { r.track.enabled = !on; }
      });
    }
    send({ type: "data-saver", on: on });
    press($("saver-btn"), on, tr("videoOn", "Video on"), tr("audioOnly", "Audio only"));
    say(on ? tr("audioOnlyNotice", "Audio only: video is off to save data.") : "");
  }
  function leave(message) {
    leaving = true;
    clearInterval(statsTimer); clearInterval(stateTimer);
    send({ type: "leave" });   // a goodbye: the box does not hold the seat
    var last = pc; pc = null;
    if (last) { setTimeout(function () { last.close(); }, 300); }  // let the goodbye leave
    if (local) { local.getTracks().forEach(function (t) { t.stop(); }); }
    say(message || "");
  }

  // What the facilitator pushed (message, poll, breakout room, removal), read every 10 s:
  // a few hundred bytes, so it costs little even on a slow link.
  var shownPoll = null, lastMessage = "";
  function applyState(st) {
    if (st.status === "removed") {
      leave(tr("removed", "The facilitator removed you from the call.")); return;
    }
    if (st.session === "ended") {
      leave(tr("sessionEnded", "The session has ended. Thank you for joining.")); return;
    }
    if (st.message !== lastMessage) { pinMessage(st.message ?
      tr("facilitatorMessage", "Message from the facilitator: {message}", { message: st.message }) : ""); }
    lastMessage = st.message;
    var note = $("room-note");
    note.hidden = !st.room;
    note.textContent = st.room ?
      tr("inBreakout", "You are in breakout room {room}.", { room: st.room }) : "";
    var form = $("poll");
    if (!st.poll) { form.hidden = true; shownPoll = null; return; }
    if (shownPoll === st.poll.id) { return; }
    shownPoll = st.poll.id;
    $("poll-q").textContent = tr("poll", "Poll: {question}", { question: st.poll.question });
    var box = $("poll-options"); box.textContent = "";
    st.poll.options.forEach(function (text, i) {
      var label = document.createElement("label"); label.className = "choice";
      var input = document.createElement("input");
      input.type = "radio"; input.name = "choice"; input.value = String(i);
      input.checked = st.poll.voted === i;
      label.appendChild(input); label.appendChild(document.createTextNode(" " + text));
      box.appendChild(label);
    });
    form.hidden = false;
  }
  function pollState() {
    fetch(root.dataset.stateUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      // 403 carries the status of a patient removed from the session: the call ends.
      .then(function (r) { return r.ok || r.status === 403 ? r.json() : null; })
      .then(function (st) { if (st && st.status) { applyState(st); } })
      .catch(function () { /* the next round will retry */ });
  }
  $("poll").onsubmit = function (e) {
    e.preventDefault();
    fetch(root.dataset.voteUrl, { method: "POST", body: new FormData($("poll")),
      headers: { Accept: "application/json", "X-CSRF-Token": root.dataset.csrf } })
      .then(function (r) { flash(r.ok ? tr("pollAnswered", "Thank you, your answer was sent.") :
        tr("pollClosed", "The poll has closed.")); });
  };

  $("join-btn").onclick = join;
  $("mute-btn").onclick = function () {   // the others see a muted marker on this tile
    setMuted(!state.muted); send({ type: "self-mute", on: state.muted });
  };
  $("cam-btn").onclick = function () { setCam(!state.camOff); };
  $("saver-btn").onclick = function () { setSaver(!state.saver); };
  $("hand-btn").onclick = function () {
    state.hand = !state.hand; send({ type: "hand", raised: state.hand });
    press($("hand-btn"), state.hand, tr("lowerHand", "Lower hand"), tr("raiseHand", "Raise hand"));
  };
  $("chat-form").onsubmit = function (e) {
    e.preventDefault();
    var text = $("chat-text").value.trim();
    if (text) { send({ type: "chat", text: text }); $("chat-text").value = ""; }
  };
  if ($("lock-btn")) {
    state.locked = $("lock-btn").getAttribute("aria-pressed") === "true";
    $("lock-btn").onclick = function () {
      // The portal keeps the lock (it refuses new joins); the SFU hears it too.
      var locked = !state.locked, body = new FormData();
      body.append("action", locked ? "lock" : "unlock");
      fetch(root.dataset.stateUrl, { method: "POST", body: body,
        headers: { "X-CSRF-Token": root.dataset.csrf } })
        .then(function (r) {
          if (!r.ok) { say("The room could not be locked. Try again."); return; }
          state.locked = locked; send({ type: "lock", on: locked });
          press($("lock-btn"), locked, "Unlock room", "Lock room");
          say(locked ? "The room is locked: nobody new can join." : "The room is open again.");
        });
    };
  }
  // Screen share: the screen replaces the camera on the same sender (no renegotiation: the
  // box forwards it like the camera); Stop sharing, or the browser's own stop, puts the
  // camera back.
  var screenTrack = null;
  function stopSharing() {
    if (!screenTrack) { return; }
    var track = screenTrack; screenTrack = null; state.sharing = false;
    track.stop();
    // Straight from the screen to the camera (or to nothing while the camera should not
    // send): replaceTrack settles later, so a second pass over the senders now would still
    // see the screen.
    var cam = local ? local.getVideoTracks()[0] || null : null;
    var want = state.saver || state.camOff || videoHeld ? null : cam;
    if (pc) {
      pc.getSenders().forEach(function (s) { if (s.track === track) { s.replaceTrack(want); } });
    }
    press($("share-btn"), false, "Stop sharing", "Share screen");
    $("sharing").hidden = true; flash("You stopped sharing your screen.");
  }
  if ($("share-btn")) {
    $("share-btn").onclick = function () {
      if (state.sharing) { stopSharing(); return; }
      if (!pc || !navigator.mediaDevices.getDisplayMedia) { say("This browser cannot share its screen."); return; }
      navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { max: 5 } } })
        .then(function (screen) {
          var track = screenTrack = screen.getVideoTracks()[0];
          var sent = false;
          pc.getTransceivers().forEach(function (t) {
            if (!sent && t.direction === "sendonly" && t.receiver.track &&
                t.receiver.track.kind === "video") { t.sender.replaceTrack(track); sent = true; }
          });
          state.sharing = true;
          if (me) { send({ type: "pin", participant: me }); }
          press($("share-btn"), true, "Stop sharing", "Share screen");
          $("sharing").hidden = false;
          track.onended = stopSharing;
        }).catch(function () { say("Screen sharing was not started."); });
    };
    $("stop-share").onclick = stopSharing;
  }
  $("layout-btn").onclick = function () {
    speakerView = !speakerView; arrange();
    press($("layout-btn"), speakerView, tr("gridView", "Grid view"), tr("speakerView", "Speaker view"));
  };
  window.addEventListener("resize", function () { arrange(); });
  // Facilitator only: a marker on the tile of anyone in the session with an open risk flag
  // (e.g. PHQ-9 item 9 above zero), checked every 5 s; the box sends seat ids, never reasons.
  function watchRisk() {
    var flagged = {};
    function mark() {
      Array.prototype.forEach.call($("tiles").children, function (t) {
        var on = !!flagged[t.id.slice(5)], badge = t.querySelector(".risk-badge");
        t.classList.toggle("risk", on);
        if (on && !badge) {
          badge = document.createElement("span"); badge.className = "risk-badge";
          badge.textContent = "Needs follow-up"; t.appendChild(badge);
        } else if (!on && badge) { badge.remove(); }
      });
      people();
    }
    function check() {
      fetch(root.dataset.riskUrl, { cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) {
          if (!j) { return; }
          flagged = {};
          j.attendances.forEach(function (id) { flagged["attendance/" + id] = true; });
          mark();
        }).catch(function () { /* the next round will retry */ });
    }
    check(); setInterval(check, 5000);
  }
  if (root.dataset.riskUrl) { watchRisk(); }
  // Speaking is never shown for someone muted (by the facilitator or themselves, or me).
  function silenced(id, muted) { return !!muted || (id === "self" && state.muted); }

  // Raised hands: a badge on the tile, and for the facilitator a list in the order raised.
  var hands = [];
  function handRaised(id, raised) {
    hands = hands.filter(function (h) { return h !== id; });
    if (raised) { hands.push(id); }
    var t = $("tile-" + id);
    if (t) {
      var badge = t.querySelector(".hand-badge");
      t.classList.toggle("hand", raised);
      if (raised && !badge) {
        badge = document.createElement("span"); badge.className = "hand-badge";
        badge.textContent = "\u270B " + tr("handRaised", "Hand raised"); t.appendChild(badge);
      } else if (!raised && badge) { badge.remove(); }
    }
    var list = $("hands"); if (!list) { return; }
    list.textContent = "";
    hands.forEach(function (h) {
      var li = document.createElement("li");
      li.textContent = h === "self" ? tr("you", "You") : (names[h] || tr("participant", "Participant"));
      list.appendChild(li);
    });
    $("no-hands").hidden = hands.length > 0;
    people();
  }

  // Leave asks first (one tap must not end someone's session by mistake).
  function confirmLeave() {
    var btn = $("leave-btn"), box = $("leave-confirm");
    btn.addEventListener("click", function (e) {
      if (box.dataset.sure === "yes") { return; }
      e.preventDefault(); box.hidden = false; $("leave-no").focus();
    });
    $("leave-no").onclick = function () { box.hidden = true; btn.focus(); };
    $("leave-yes").onclick = function () { box.dataset.sure = "yes"; box.hidden = true; btn.click(); };
  }
  confirmLeave();
  $("dismiss-message").onclick = function () { $("facilitator-message").hidden = true; };
  window.addEventListener("pagehide", function () { leave(); });
  // For technicians (and tests): the call's WebRTC statistics, from the browser console.
  window.ClinicBoxCall = {
    stats: function () { return pc ? pc.getStats() : Promise.resolve(null); },
    netMs: function () { return netMs; },
    slots: function () { return { me: me, audio: slots.audio, video: slots.video }; },
    // What the camera's sender carries now, and whether the box holds this browser's video.
    sending: function () {
      var sender = null;
      if (pc) {
        pc.getTransceivers().forEach(function (t) {
          if (t.direction === "sendonly" && t.receiver.track && t.receiver.track.kind === "video") {
            sender = t.sender;
          }
        });
      }
      var track = sender ? sender.track : null;
      return { track: !track ? "none" : track === screenTrack ? "screen" : "camera", held: videoHeld };
    }
  };
  precheck();
  // A patient's page asks the box for its status every 10 s, from when the pre-call check has
  // its verdict: sent at once, the first request crossed a GPRS uplink beside the check's
  // timed request and made it read seconds slower.
  if (root.dataset.role === "patient") {
    netChecked.then(function () {
      if (!leaving) { pollState(); stateTimer = setInterval(pollState, 10000); }
    });
  }
}());
