// Drives the aggregator's web console in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core) as a person would: loads the page, enters the bearer token when the page asks
// for one, waits for a live window to appear, chooses an agent and a metric, reads what the
// chart drew and takes a screenshot. Prints one JSON object on stdout; tests/tests/console.rs
// asserts on it. Every wait is bounded.
//
//   node console.mjs --url http://127.0.0.1:PORT/ --agent A --metric M --live-timeout-ms MS \
//        --screenshot out.png [--token T] [--range-ms MS] [--settle-ms MS] [--chromium PATH]
// (--range-ms: one of the page's ranges, e.g. 300000 for 5 min; default the page's 1 h.)
import { chromium } from 'playwright-core';

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

const a = args(process.argv.slice(2));
for (const k of ['url', 'agent', 'metric', 'live-timeout-ms', 'screenshot']) {
  if (!a[k]) throw new Error(`--${k} is required`);
}
const liveTimeout = Number(a['live-timeout-ms']);
const settle = Number(a['settle-ms'] || 0);
const STEP_TIMEOUT = 20000;

const result = { ok: false, token_asked: false, live: null, chart: null, console_errors: [], error: null };
const browser = await chromium.launch({
  executablePath: a.chromium || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 960 }, deviceScaleFactor: 1 });
  // Every error the page logs, but for the 401 that makes it ask for the token.
  let tokenGiven = !a.token;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (!tokenGiven && /status of 401/.test(m.text())) return;
    result.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => result.console_errors.push(`pageerror: ${e.message}`));
  await page.goto(a.url, { waitUntil: 'domcontentloaded', timeout: STEP_TIMEOUT });
  const loaded = Date.now();

  if (a.token) {
    await page.waitForSelector('#token-panel:not([hidden])', { timeout: STEP_TIMEOUT });
    result.token_asked = true;
    await page.fill('#token-input', a.token);
    tokenGiven = true;
    await page.click('#token-form button[type=submit]');
  }

  try {
    await page.waitForSelector('#live-table tbody tr', { timeout: liveTimeout });
    result.live = await page.evaluate(() => {
      const r = document.querySelector('#live-table tbody tr');
      return { agent_id: r.cells[1].textContent, seq: Number(r.cells[2].textContent) };
    });
    result.live.after_ms = Date.now() - loaded;
  } catch (e) {
    result.live = null;
  }

  if (a['range-ms']) await page.selectOption('#range-select', a['range-ms']);
  await page.waitForSelector(`#agent-select option[value="${a.agent}"]`, { state: 'attached', timeout: STEP_TIMEOUT });
  await page.selectOption('#agent-select', a.agent);
  await page.waitForSelector(`#metric-select option[value="${a.metric}"]`, { state: 'attached', timeout: STEP_TIMEOUT });
  await page.selectOption('#metric-select', a.metric);
  await page.waitForSelector(`#chart[data-state=ready][data-agent="${a.agent}"][data-metric="${a.metric}"]`, { timeout: STEP_TIMEOUT });
  if (settle > 0) await page.waitForTimeout(settle);

  // What the chart drew, counted from the SVG itself.
  result.chart = await page.evaluate(() => {
    const c = document.getElementById('chart');
    const line = c.querySelector('polyline.pts-line');
    const pts = (line?.getAttribute('points') || '').trim();
    return {
      agent: c.dataset.agent,
      metric: c.dataset.metric,
      windows: Number(c.dataset.windows),
      points_reported: Number(c.dataset.points),
      polyline_points: pts ? pts.split(/\s+/).length : 0,
      dots: c.querySelectorAll('g.dots circle').length,
      bands: c.querySelectorAll('g.bands rect.band').length,
      means: c.querySelectorAll('g.means line.mean').length,
      first_start: Number(c.dataset.firstStart),
      last_start: Number(c.dataset.lastStart),
      summary: document.getElementById('chart-summary').textContent,
      fleet_rows: document.querySelectorAll('#fleet-table tbody tr').length,
      live_rows: document.querySelectorAll('#live-table tbody tr').length,
      live_status: document.getElementById('live-status').textContent,
    };
  });
  await page.screenshot({ path: a.screenshot, fullPage: true });
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
