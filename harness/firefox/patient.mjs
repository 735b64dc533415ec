// A patient in Debian's Firefox ESR, driven over WebDriver BiDi by puppeteer-core (which
// downloads no browser). Run inside the patient's lab namespace by harness.browsercall:
//
//   node patient.mjs '{"base": "https://10.77.0.1:8443", "code": "123456", "name": "Fay",
//                      "probe": "/path/to/call_probe.js"}'
//
// It joins the waiting room by code with consent, waits to be admitted and joins the call
// with Firefox's fake camera and microphone, printing {"event": "waiting"} and
// {"event": "joining"}. Then it answers lines on stdin: "status" with {"firstAudioAt": ...},
// "report" with the probe's samples, reconnect notices, page-open and first-audio times
// (and exits; so does closing stdin). {"error": ...} and exit code 1 when a step fails.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const args = JSON.parse(process.argv[2]);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const browser = await puppeteer.launch({
  browser: "firefox",
  protocol: "webDriverBiDi",
  executablePath: args.executable || "/usr/bin/firefox-esr",
  headless: true,
  acceptInsecureCerts: true,   // the box's own CA; the page is still a secure context
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true,          // fake camera and microphone
    "media.navigator.permission.disabled": true,   // no permission prompt
    "media.autoplay.default": 0,                   // remote audio plays without a gesture
    "media.autoplay.blocking_policy": 0,
    // Host candidates as plain addresses (the lab has no mDNS), as Chromium's flag does.
    "media.peerconnection.ice.obfuscate_host_addresses": false,
  },
});

async function main() {
  const page = await browser.newPage();
  await page.evaluateOnNewDocument(readFileSync(args.probe, "utf8"));
  await page.goto(args.base + "/join", { timeout: 120_000 });
  await page.type("#code", args.code);
  await page.type("#name", args.name);
  await Promise.all([page.waitForNavigation({ timeout: 120_000 }), page.click("button[type=submit]")]);
  await page.click("#agree");
  await Promise.all([page.waitForNavigation({ timeout: 120_000 }), page.click("button[type=submit]")]);
  say({ event: "waiting", url: page.url() });
  // The waiting page reloads itself every 3 s and lands on the call page once admitted.
  await page.waitForFunction(() => location.pathname.endsWith("/call"),
    { timeout: 180_000, polling: 500 });
  await page.waitForFunction(
    () => document.querySelector("#check-cam span")?.textContent === "working",
    { timeout: 60_000, polling: 200 });
  await page.click("#join-btn");
  say({ event: "joining" });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "status") {
      say({ firstAudioAt: await page.evaluate(() => window.__clinicboxLab.firstAudioAt) });
    } else if (line.trim() === "report") {
      say(await page.evaluate(() => {
        const l = window.__clinicboxLab;
        return { samples: l.samples, notices: l.notices, openedAt: l.openedAt,
          firstAudioAt: l.firstAudioAt };
      }));
      return;
    }
  }
}

try {
  await main();
} catch (err) {
  say({ error: String(err && err.message ? err.message : err).split("\n")[0] });
  process.exitCode = 1;
} finally {
  await browser.close().catch(() => {});
}
