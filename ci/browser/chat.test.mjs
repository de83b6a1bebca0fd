// Real-browser test of streamgate's built-in chat page (web/index.html).
//
//   STREAMGATE_URL=http://127.0.0.1:8080 SCREENSHOT_DIR=ci/artifacts node ci/browser/chat.test.mjs
//
// Needs a running gateway on the mock model and Debian's Chromium at /usr/bin/chromium
// (CHROMIUM_PATH overrides). Prints one line per test and a final "N passed, M failed";
// exits non-zero on any failure.
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.STREAMGATE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR || path.join(HERE, '..', 'artifacts'));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 30_000;        // bound on every single wait
const TEST_LIMIT = 90_000;  // bound on one test
const RUN_LIMIT = 300_000;  // bound on the whole run

const PROMPT = 'Explain how a resumable token stream survives a dropped connection.';
const TOKENS = 100;         // same length for the baseline and the interrupted run

// --------------------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: timed out after ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

async function waitForGateway() {
  const deadline = Date.now() + WAIT;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(BASE + '/', { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.cause?.code || e.message;
    }
    await sleep(250);
  }
  throw new Error(`gateway at ${BASE} did not answer GET / within ${WAIT / 1000} s (${last})`);
}

// A TCP proxy we can cut: every socket through it can be reset at once, which is a real network
// failure for the browser (not a polite end of stream).
function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const streamGets = [];   // { lastEventId } for every GET of /api/chat/streams/ seen
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port) || 80, hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => { sockets.delete(client); sockets.delete(upstream); client.destroy(); upstream.destroy(); };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (buf) => {
      const head = buf.toString('latin1');
      if (/^GET [^ ]*\/api\/chat\/streams\//m.test(head)) {
        const m = /^last-event-id:\s*(\S+)/im.exec(head);
        const q = /[?&]last_event_id=(\d+)/.exec(head.split('\r\n')[0]);
        streamGets.push({ lastEventId: m ? m[1] : q ? q[1] : null });
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      resolve({
        url,
        streamGets,
        cut() {
          const n = sockets.size;
          for (const s of sockets) (s.resetAndDestroy ? s.resetAndDestroy() : s.destroy());
          sockets.clear();
          return n;
        },
        close() { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r())); },
      });
    });
  });
}

const pageErrors = [];

// A fresh browser context: `extra` is merged into every POST body by the page (test hook), and an
// observer records every state the connection badge goes through.
async function openChat(browser, url, { extra, viewport, colorScheme, isMobile } = {}) {
  const ctx = await browser.newContext({
    viewport: viewport || { width: 1280, height: 800 },
    colorScheme: colorScheme || 'light',
    isMobile: !!isMobile,
    hasTouch: !!isMobile,
    deviceScaleFactor: isMobile ? 2 : 1,
  });
  await ctx.addInitScript((extraJson) => {
    try {
      if (extraJson) localStorage.setItem('streamgate_extra', extraJson);
      else localStorage.removeItem('streamgate_extra');
    } catch { /* storage unavailable */ }
    window.__connStates = [];
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target.id === 'conn') window.__connStates.push(r.target.getAttribute('data-state'));
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  }, extra ? JSON.stringify(extra) : '');
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => pageErrors.push(`${url}: ${e.message}`));
  await page.goto(url + '/', { waitUntil: 'load', timeout: WAIT });
  await page.waitForSelector('#prompt', { timeout: WAIT });
  return { ctx, page };
}

// Runs fn(page) in a fresh context; on failure saves a screenshot of the page for the CI artifacts.
async function withChat(url, opts, fn) {
  const { ctx, page } = await openChat(browser, url, opts);
  try {
    return await fn(page);
  } catch (e) {
    try {
      fs.mkdirSync(SHOTS, { recursive: true });
      const file = path.join(SHOTS, `failure-${Date.now()}.png`);
      await page.screenshot({ path: file, timeout: 5000 });
      e.message += ` [screenshot: ${file}]`;
    } catch { /* page gone */ }
    throw e;
  } finally {
    await ctx.close().catch(() => {});
  }
}

const assistantCount = (page) => page.locator('.msg.assistant').count();

// Types a prompt, sends it with Enter and returns the index of the new assistant message.
async function send(page, text) {
  const before = await assistantCount(page);
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant').length > n, before, { timeout: WAIT });
  return before;
}

async function waitState(page, index, states, timeout = WAIT) {
  try {
    await page.waitForFunction(
      ([i, s]) => s.includes(document.querySelectorAll('.msg.assistant')[i]?.dataset.state),
      [index, states], { timeout, polling: 50 });
  } catch {
    const info = await describe(page, index);
    throw new Error(`assistant message #${index} did not reach data-state=${states.join('|')} within ${timeout / 1000} s (${info})`);
  }
}

async function waitAnswerLength(page, index, min, timeout = WAIT) {
  try {
    await page.waitForFunction(
      ([i, n]) => (document.querySelectorAll('.msg.assistant')[i]?.querySelector('.answer')?.textContent.length || 0) >= n,
      [index, min], { timeout, polling: 20 });
  } catch {
    throw new Error(`answer #${index} did not reach ${min} characters within ${timeout / 1000} s (${await describe(page, index)})`);
  }
}

async function describe(page, index) {
  return page.evaluate((i) => {
    const m = document.querySelectorAll('.msg.assistant')[i];
    if (!m) return 'no such message';
    const err = m.querySelector('.err');
    return `state=${m.dataset.state}, ${m.querySelector('.answer').textContent.length} chars` +
      (err && !err.hidden ? `, error shown: "${err.textContent}"` : '');
  }, index).catch((e) => `page unavailable: ${e.message}`);
}

const answerText = (page, index) =>
  page.evaluate((i) => document.querySelectorAll('.msg.assistant')[i].querySelector('.answer').textContent, index);

// Reads a finished stream from the start (Last-Event-ID: 0) and parses its SSE events.
async function replayStream(streamUrl) {
  const res = await fetch(new URL(streamUrl, BASE), { headers: { 'Last-Event-ID': '0', Accept: 'text/event-stream' }, signal: AbortSignal.timeout(10_000) });
  assert(res.status === 200, `replaying ${streamUrl} answered HTTP ${res.status}`);
  const events = [];
  for (const block of (await res.text()).split(/\r\n\r\n|\n\n|\r\r/)) {
    const ev = { event: 'message', data: [], id: null };
    for (const line of block.split(/\r\n|\n|\r/)) {
      const m = /^([^:]*)(?::\s?(.*))?$/.exec(line);
      if (!line || line.startsWith(':') || !m) continue;
      if (m[1] === 'data') ev.data.push(m[2] ?? '');
      else if (m[1] === 'event') ev.event = m[2];
      else if (m[1] === 'id') ev.id = m[2];
    }
    if (ev.data.length) events.push({ ...ev, data: ev.data.join('\n') });
  }
  return events;
}

function firstDifference(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `lengths ${a.length} vs ${b.length}, first difference at ${i}: ` +
    `expected ${JSON.stringify(a.slice(Math.max(0, i - 20), i + 30))}, got ${JSON.stringify(b.slice(Math.max(0, i - 20), i + 30))}`;
}

// --------------------------------------------------------------------------- tests
const tests = [];
const test = (name, fn) => tests.push({ name, fn });
let baseline = null;
let browser;

test('streams an answer into the page (EventSource flow)', async () => {
  await withChat(BASE, { extra: { mock: { tokens: TOKENS, tokens_per_sec: 200 } } }, async (page) => {
    const models = await page.locator('#model option').allTextContents();
    assert(models.length > 0 && models.every((m) => m.trim()), `#model has no usable options: ${JSON.stringify(models)}`);
    const created = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/api/chat/messages'), { timeout: WAIT });
    const i = await send(page, PROMPT);
    const createdRes = await created;
    assert(createdRes.status() === 201, `POST /api/chat/messages answered ${createdRes.status()}, expected 201`);
    const { stream_url: streamUrl } = await createdRes.json();
    await waitState(page, i, ['done']);
    const text = await answerText(page, i);
    assert(text.trim().length > 0, 'the finished answer is empty');
    // The page shows exactly the concatenated content deltas of the stream, markdown and all.
    const events = await replayStream(streamUrl);
    const sent = events.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data).content ?? '').join('');
    assert(text === sent, `.answer differs from the stream's content deltas (${firstDifference(sent, text)})`);
    assert(events.at(-1)?.event === 'stop', `the stream does not end with event: stop (last: ${events.at(-1)?.event})`);
    const meta = await page.locator('.msg.assistant .meta').nth(i).textContent();
    assert(/\d+ \+ \d+ tokens/.test(meta), `usage is not shown after the stop event (meta: "${meta}")`);
    assert(await page.locator('#send').isVisible(), '#send is not visible again after the answer finished');
    assert(!(await page.locator('#stop').isVisible()), '#stop is still visible after the answer finished');
    baseline = text;

    // Multi-turn: the second POST carries the whole conversation and the test hook's extra fields.
    const reqP = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/api/chat/messages'), { timeout: WAIT });
    const j = await send(page, 'And now in one sentence?');
    const body = (await reqP).postDataJSON();
    const roles = (body.messages || []).map((m) => m.role).join(',');
    assert(roles === 'user,assistant,user', `second request should carry user,assistant,user; got ${roles}`);
    assert(body.messages[0].content === PROMPT, 'first user message not sent back verbatim');
    assert(body.messages[1].content === text, 'previous answer not sent back verbatim');
    assert(body.mock && body.mock.tokens === TOKENS, 'extra fields from localStorage.streamgate_extra were not merged into the POST body');
    await waitState(page, j, ['done']);
  });
});

test('a dropped connection resumes with Last-Event-ID: no token lost or repeated', async () => {
  assert(baseline != null, 'needs the uninterrupted answer from the first test');
  const proxy = await startProxy(BASE);
  const streaming = (page, k) => page.evaluate((n) => document.querySelectorAll('.msg.assistant')[n].dataset.state === 'streaming', k);
  try {
    await withChat(proxy.url, { extra: { mock: { tokens: TOKENS, tokens_per_sec: 20 } } }, async (page) => {
      const i = await send(page, PROMPT);
      await waitAnswerLength(page, i, Math.min(40, Math.floor(baseline.length / 4)));
      assert(proxy.cut() > 0, 'no proxied socket was open to cut');
      try {
        await page.waitForFunction(() => window.__streamgate && window.__streamgate.reconnects >= 1, null, { timeout: WAIT });
      } catch {
        const n = await page.evaluate(() => window.__streamgate?.reconnects).catch(() => '?');
        throw new Error(`the page did not resume after the connection was cut (reconnects=${n}, ${await describe(page, i)})`);
      }
      // Cut a second time, after some more text, if the answer is still streaming.
      if (await streaming(page, i)) {
        const len = (await answerText(page, i)).length;
        await page.waitForFunction(([k, n]) => {
          const m = document.querySelectorAll('.msg.assistant')[k];
          return m.dataset.state !== 'streaming' || m.querySelector('.answer').textContent.length > n + 20;
        }, [i, len], { timeout: WAIT, polling: 20 });
        if (await streaming(page, i)) proxy.cut();
      }
      await waitState(page, i, ['done']);
      const text = await answerText(page, i);
      const hooks = await page.evaluate(() => ({ ...window.__streamgate, states: window.__connStates }));
      assert(text === baseline, `the resumed answer differs from the uninterrupted one (${firstDifference(baseline, text)})`);
      assert(hooks.reconnects >= 1, `window.__streamgate.reconnects is ${hooks.reconnects}, expected >= 1`);
      assert(hooks.states.includes('reconnecting'), `#conn never showed data-state=reconnecting (saw ${hooks.states.join(' → ')})`);
      assert(hooks.states.includes('live'), `#conn never showed data-state=live (saw ${hooks.states.join(' → ')})`);
      assert(!hooks.duplicates, `the gateway replayed ${hooks.duplicates} event(s) the page had already seen (Last-Event-ID not honoured exactly)`);
      const resumed = proxy.streamGets.filter((g) => Number(g.lastEventId) > 0);
      assert(resumed.length >= 1, `no stream GET carried Last-Event-ID (saw ${JSON.stringify(proxy.streamGets)})`);
      console.log(`     ${hooks.reconnects} reconnect(s); Last-Event-ID of each stream GET: ${proxy.streamGets.map((g) => g.lastEventId ?? '-').join(', ')}`);
    });
  } finally {
    await proxy.close();
  }
});

test('the Stop button cancels the generation', async () => {
  await withChat(BASE, { extra: { mock: { tokens: 2000, tokens_per_sec: 20 } } }, async (page) => {
    const created = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/api/chat/messages'), { timeout: WAIT });
    const i = await send(page, 'Write a very long story about a lighthouse keeper.');
    const { stream_url: streamUrl } = await (await created).json();
    await waitAnswerLength(page, i, 1);
    assert(await page.locator('#stop').isVisible(), '#stop is not visible while generating');
    await page.click('#stop');
    await waitState(page, i, ['cancelled'], 10_000);
    const len = (await answerText(page, i)).length;
    await sleep(600);
    const len2 = (await answerText(page, i)).length;
    assert(len2 === len, `the answer kept growing after it was cancelled (${len} → ${len2} chars)`);
    assert(await page.locator('#send').isVisible(), '#send is not visible again after Stop');
    const meta = await page.locator('.msg.assistant .meta').nth(i).textContent();
    assert(/\d+ \+ \d+ tokens/.test(meta), `no usage shown: the gateway's stop event (finish_reason "cancelled") did not reach the page (meta: "${meta}")`);
    // The gateway itself must have ended the generation with stop/cancelled.
    const res = await fetch(new URL(streamUrl, BASE), { headers: { 'Last-Event-ID': '0' }, signal: AbortSignal.timeout(10_000) });
    const replay = res.status === 200 ? await res.text() : `HTTP ${res.status}`;
    assert(/event: ?stop\r?\n(?:[^\n]*\n)*?data: ?[^\n]*"finish_reason" ?: ?"cancelled"/.test(replay),
      `replaying the cancelled stream does not end with stop/"cancelled": ${replay.slice(-300)}`);
  });
});

test('screenshots: desktop and phone, light and dark', async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const shapes = [
    ['desktop', { viewport: { width: 1280, height: 800 } }],
    ['phone', { viewport: { width: 390, height: 844 }, isMobile: true }],
  ];
  for (const [shape, opts] of shapes) {
    await withChat(BASE, { extra: { mock: { tokens: 60, tokens_per_sec: 200 } }, ...opts }, async (page) => {
      if (shape === 'desktop') await page.screenshot({ path: path.join(SHOTS, 'empty-desktop-light.png') });
      const a = await send(page, 'What does streamgate do?');
      await waitState(page, a, ['done']);
      const b = await send(page, 'Show me a code example');
      await waitState(page, b, ['done']);
      for (const colorScheme of ['light', 'dark']) {
        await page.emulateMedia({ colorScheme });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert(overflow <= 0, `${shape}/${colorScheme}: the page scrolls sideways by ${overflow}px`);
        await page.screenshot({ path: path.join(SHOTS, `chat-${shape}-${colorScheme}.png`) });
      }
    });
  }
  console.log(`     saved in ${SHOTS}`);
});

// --------------------------------------------------------------------------- runner
let passed = 0, failed = 0;
const watchdog = setTimeout(() => {
  console.error(`FAIL the whole run exceeded ${RUN_LIMIT / 1000} s`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, RUN_LIMIT);

try {
  await waitForGateway();
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: WAIT,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
    });
  } catch (e) {
    throw new Error(`could not start Chromium at ${CHROMIUM} (apt-get install -y chromium): ${e.message.split('\n')[0]}`);
  }
  console.log(`chat page at ${BASE}, Chromium ${browser.version()}`);
  for (const { name, fn } of tests) {
    const t0 = Date.now();
    const errorsBefore = pageErrors.length;
    try {
      await withTimeout(fn(), TEST_LIMIT, name);
      const errs = pageErrors.slice(errorsBefore);
      assert(errs.length === 0, `the page threw: ${errs.join(' | ')}`);
      passed++;
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e.message}`);
    }
  }
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
clearTimeout(watchdog);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
