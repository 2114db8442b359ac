// The outlet page in a real browser: headless Chromium (Debian's `chromium`) driven by
// Playwright. Opens the page of `cardwright outlet serve`, waits for the card, clicks the
// application, waits for "installed" and saves a screenshot; clicks it again and waits for
// the clerk's "already on this card" (second screenshot). Also checks that the page's own
// requests carry what the outlet demands: a request without the CSRF token is refused, and
// a page of another origin cannot start an install.
//
// Environment:
//   OUTLET_URL          the page's base URL (required), e.g. http://127.0.0.1:7070
//   OUTLET_APP          the application to click (required), e.g. reg
//   SCREENSHOT          screenshot after the install (default test-artifacts/outlet-installed.png)
//   SCREENSHOT_ERROR    screenshot of the error state (default test-artifacts/outlet-already-present.png)
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Prints one JSON line {"card", "installed", "result", "outcome", "again", "again_code",
// "no_csrf", "foreign_started", ...} and exits 0 when the install succeeded, the second click was
// refused as already present, and neither a request without the CSRF token nor a page of
// another origin started anything; 1 otherwise.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer } from 'node:http';

const base = process.env.OUTLET_URL;
const app = process.env.OUTLET_APP;
if (!base || !app) {
  console.error('outlet.mjs: set OUTLET_URL and OUTLET_APP');
  process.exit(2);
}
const shotInstalled = process.env.SCREENSHOT || 'test-artifacts/outlet-installed.png';
const shotError = process.env.SCREENSHOT_ERROR || 'test-artifacts/outlet-already-present.png';
const timeout = 90_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let exitCode = 1;
const report = {};
const finished = '#result[data-state="installed"], #result[data-state="error"]';
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const page = await context.newPage();
  page.on('console', (m) => console.error(`[page] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page] error: ${e.message}`));
  const requests = [];
  page.on('request', (r) => { if (r.method() === 'POST') requests.push(r); });
  await page.goto(`${base}/`);

  // The catalog lists the application; the card shows as present and served here.
  const button = page.locator(`button.app[data-app="${app}"]`);
  await button.waitFor({ timeout });
  report.listed = (await button.innerText()).replace(/\s+/g, ' ').trim();
  await page.locator('#card-status[data-state="ready"]').waitFor({ timeout });
  report.card = await page.locator('#card-status').innerText();

  // The click installs it: the progress bar runs, then "installed".
  await button.click();
  await page.locator(finished).waitFor({ timeout });
  report.installed = await page.locator('#result').getAttribute('data-state');
  report.result = (await page.locator('#result').innerText()).replace(/\s+/g, ' ').trim();
  mkdirSync(dirname(shotInstalled), { recursive: true });
  await page.screenshot({ path: shotInstalled, fullPage: true });
  // What the page showed, as the outlet answered it (instance, registration, certificates).
  report.outcome = await page.evaluate(async () => (await (await fetch('/api/state')).json()).job.outcome);
  if (requests.length) {
    const h = await requests[0].allHeaders();
    report.sent_csrf = typeof h['x-csrf-token'] === 'string' && h['x-csrf-token'].length === 64;
    report.sent_origin = h.origin;
  }

  // Clicked again: refused in the clerk's words.
  await page.locator('#card-status[data-state="ready"]').waitFor({ timeout });
  await button.click();
  await page.locator('#result[data-state="error"]').waitFor({ timeout });
  report.again_code = await page.locator('#result').getAttribute('data-code');
  report.again = (await page.locator('#result').innerText()).replace(/\s+/g, ' ').trim();
  mkdirSync(dirname(shotError), { recursive: true });
  await page.screenshot({ path: shotError, fullPage: true });

  // From the page's own origin, a request without the session's token is refused.
  report.no_csrf = await page.evaluate(async (name) => {
    const r = await fetch('/api/install', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ application: name }),
    });
    return `${r.status} ${(await r.json()).error}`;
  }, app);

  // A page of another origin (served here on another loopback port) fires a simple
  // cross-origin POST (no preflight): the outlet refuses it, nothing starts.
  const jobBefore = await page.evaluate(async () => (await (await fetch('/api/state')).json()).job.id);
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><script>
      fetch(${JSON.stringify(base)} + '/api/install', { method: 'POST', mode: 'no-cors',
        headers: { 'Content-Type': 'text/plain' }, body: '{"application":${JSON.stringify(app)}}' })
        .then(() => { document.title = 'sent'; }, () => { document.title = 'failed'; });
    </script>`);
  });
  await new Promise((ok) => evil.listen(0, '127.0.0.1', ok));
  const foreign = await context.newPage();
  await foreign.goto(`http://127.0.0.1:${evil.address().port}/`);
  await foreign.waitForFunction(() => document.title !== '', null, { timeout });
  evil.close();
  await new Promise((ok) => setTimeout(ok, 1500));
  const jobAfter = await page.evaluate(async () => (await (await fetch('/api/state')).json()).job.id);
  report.foreign_started = jobAfter !== jobBefore;

  exitCode = report.installed === 'installed' && report.again_code === 'already_present'
    && report.no_csrf === '403 csrf' && report.sent_csrf === true
    && report.foreign_started === false ? 0 : 1;
} catch (e) {
  report.error = e.message;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(exitCode);
