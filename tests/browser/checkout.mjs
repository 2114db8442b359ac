// The check-out page in a real browser: headless Chromium (Debian's `chromium`) driven by
// Playwright. Enrols the card through the page if it has no certificate, pays, saves a
// screenshot, and checks that a page of another origin cannot use the agent.
//
// Environment:
//   CHECKOUT_URL   the server's base URL (required), e.g. http://127.0.0.1:8080
//   FOREIGN_URL    the same server under another origin (optional), e.g. http://localhost:8080
//   SCREENSHOT     where to save the screenshot (default test-artifacts/checkout.png)
//   CARD_PIN       the card PIN (default 123456)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//
// Prints one JSON line {"state", "challenge", "result", "foreign"} and exits 0 when the
// payment was authorised (and the foreign page was refused), 1 otherwise.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const base = process.env.CHECKOUT_URL;
if (!base) {
  console.error('checkout.mjs: set CHECKOUT_URL');
  process.exit(2);
}
const screenshot = process.env.SCREENSHOT || 'test-artifacts/checkout.png';
const pin = process.env.CARD_PIN || '123456';
const timeout = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let exitCode = 1;
const report = {};
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const page = await context.newPage();
  page.on('console', (m) => console.error(`[page] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page] error: ${e.message}`));
  await page.goto(`${base}/pay?amount=12.34&currency=EUR&payee=SHOP&order=ORDER-BROWSER-1&name=Eve%20Browser`);

  // The page asks the agent for the card status first.
  const status = page.locator('#card-status:not([data-state="unknown"])');
  await status.waitFor({ timeout });
  let cardState = await page.locator('#card-status').getAttribute('data-state');
  if (cardState === 'error') throw new Error(`card status: ${await page.locator('#card-status').textContent()}`);

  if (cardState === 'unenrolled') {
    await page.fill('#pin', pin);
    await page.selectOption('#enrol-alg', 'p256');
    await page.click('#enrol');
    await page.locator('#result[data-state="enrolled"], #result[data-state="rejected"], #result[data-state="error"]').waitFor({ timeout });
    const enrolled = await page.locator('#result').getAttribute('data-state');
    if (enrolled !== 'enrolled') throw new Error(`enrolment: ${await page.locator('#result').textContent()}`);
    await page.locator('#card-status[data-state="ready"]').waitFor({ timeout });
  }

  await page.fill('#pin', pin);
  await page.click('#pay');
  await page.locator('#result[data-state="authorised"], #result[data-state="rejected"], #result[data-state="error"]').waitFor({ timeout });
  report.state = await page.locator('#result').getAttribute('data-state');
  report.challenge = await page.locator('#result').getAttribute('data-challenge');
  report.result = (await page.locator('#result').innerText()).replace(/\s+/g, ' ').trim();
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });

  // Another origin (same server, other host name) must not reach the card.
  if (process.env.FOREIGN_URL) {
    const foreign = await context.newPage();
    await foreign.goto(`${process.env.FOREIGN_URL}/pay`);
    await foreign.locator('#card-status:not([data-state="unknown"])').waitFor({ timeout });
    report.foreign = await foreign.locator('#card-status').getAttribute('data-state');
  }
  exitCode = report.state === 'authorised' && (!process.env.FOREIGN_URL || report.foreign === 'error') ? 0 : 1;
} catch (e) {
  report.error = e.message;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(exitCode);
