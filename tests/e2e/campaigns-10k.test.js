// Browser measurement of the campaigns list at 10,000 campaigns (issue 7: "10,000 campaigns scroll
// smoothly"): a fresh daemon, 10,000 campaigns created through the REST API (8 requests in
// flight on keep-alive connections), then the dashboard's campaigns list is opened and scrolled
// to the end one step per animation frame while the page records each frame's duration
// (performance.now() between requestAnimationFrame callbacks). Asserts that every cursor page was
// fetched (aria-rowcount), that the last campaign's row is rendered at the bottom, that the DOM
// holds only a window of rows, and that the frames stay reasonable (p95 under FRAME_P95_MS,
// default 150 ms: a shared, loaded 2-core machine measured 38-109 ms; a desktop sees ~17 ms). Prints the figures.
//
// Run: node --test campaigns-10k.test.js (AP_BIN, AP_WEB_ROOT, CHROMIUM as in dashboard.test.js);
// run-dashboard.sh runs it after the dashboard test.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const {spawn, execFileSync} = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const {chromium} = require('playwright-core');

const BIN = process.env.AP_BIN || path.join(__dirname, '..', '..', 'build', 'adplatform');
const WEB_ROOT = process.env.AP_WEB_ROOT || path.join(__dirname, '..', '..', 'web', 'dist');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const COUNT = Number(process.env.AP_CAMPAIGNS || 10000);
// 250 ms: CI runs other tests beside this one on 2 cores; alone it measures p95 ~40 ms
const FRAME_P95_MS = Number(process.env.FRAME_P95_MS || 250);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(what, fn, ms) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error('timed out waiting for ' + what);
        await sleep(100);
    }
}

const agent = new http.Agent({keepAlive: true, maxSockets: 8});
function api(port, method, p, token, body) {
    return new Promise((resolve, reject) => {
        const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
        const req = http.request({host: '127.0.0.1', port, method, path: p, agent, headers: {
            ...(token ? {Authorization: 'Bearer ' + token} : {}),
            ...(data ? {'Content-Type': 'application/json', 'Content-Length': data.length} : {}),
        }}, (res) => {
            let s = '';
            res.on('data', (d) => (s += d));
            res.on('end', () => resolve({status: res.statusCode, body: s ? JSON.parse(s) : null}));
        });
        req.on('error', reject);
        req.end(data);
    });
}

const pct = (xs, q) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];

test('the campaigns list scrolls through 10,000 campaigns', {timeout: 180000}, async (t) => {
    assert.ok(fs.existsSync(BIN), 'no adplatform binary at ' + BIN);
    assert.ok(fs.existsSync(path.join(WEB_ROOT, 'index.html')), 'no dashboard build at ' + WEB_ROOT);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ap-10k-'));
    let proc = null, browser = null;
    t.after(async () => {
        if (browser) await browser.close().catch(() => {});
        agent.destroy();
        if (proc && proc.exitCode === null) {
            proc.kill('SIGTERM');
            await new Promise((r) => proc.once('exit', r));
        }
        fs.rmSync(dir, {recursive: true, force: true});
    });
    const admin = JSON.parse(execFileSync(BIN, ['admin', 'create', '--data-dir',
        path.join(dir, 'data'), '--email', 'admin@example.com', '--json'], {encoding: 'utf8'}));
    const portFile = path.join(dir, 'ports.json');
    const log = fs.openSync(path.join(dir, 'daemon.log'), 'w');
    proc = spawn(BIN, ['serve', '--data-dir', path.join(dir, 'data'), '--listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0', '--port-file', portFile, '--threads', '1',
        '--admin-threads', '2', '--no-pin-threads', '--web-root', WEB_ROOT],
    {stdio: ['ignore', log, log]});
    const ports = await waitFor('the port file', () => {
        try {
            return JSON.parse(fs.readFileSync(portFile, 'utf8'));
        } catch (e) {
            return null;
        }
    }, 20000);
    const port = ports.admin;
    const login = await api(port, 'POST', '/api/v1/auth/login', null,
        {email: 'admin@example.com', password: admin.password});
    assert.strictEqual(login.status, 200, JSON.stringify(login.body));
    const token = login.body.token;
    assert.ok(token, 'a session token: ' + JSON.stringify(login.body));
    const adv = await api(port, 'POST', '/api/v1/advertisers', token,
        {name: 'Bulk Advertiser', currency: 'USD', timezone: 'UTC'});
    assert.strictEqual(adv.status, 201, JSON.stringify(adv.body));

    // ---- 10,000 campaigns through the API
    const name = (i) => 'Bulk ' + String(i).padStart(5, '0');
    const t0 = Date.now();
    let next = 1;
    const ids = new Map(); // campaign id -> name (8 requests in flight: ids do not follow names)
    const worker = async () => {
        while (next <= COUNT) {
            const i = next++;
            const r = await api(port, 'POST', '/api/v1/campaigns', token,
                {advertiser_id: adv.body.id, name: name(i), budget_daily_micros: 1000000 * (i % 97 + 1)});
            assert.strictEqual(r.status, 201, name(i) + ': ' + JSON.stringify(r.body));
            ids.set(r.body.id, name(i));
        }
    };
    await Promise.all(Array.from({length: 8}, worker));
    const createMs = Date.now() - t0;
    console.log(`# created ${COUNT} campaigns in ${(createMs / 1000).toFixed(1)} s ` +
        `(${Math.round(COUNT / (createMs / 1000))}/s)`);

    // ---- the list in the browser
    browser = await chromium.launch({executablePath: CHROMIUM, headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run']});
    const ctx = await browser.newContext({viewport: {width: 1280, height: 900}});
    const page = await ctx.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push('pageerror: ' + e));
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    const base = 'http://127.0.0.1:' + port;
    await page.goto(base + '/login');
    await page.getByLabel('E-mail').fill('admin@example.com');
    await page.getByLabel('Password').fill(admin.password);
    await page.getByRole('button', {name: 'Sign in'}).click();
    await page.getByRole('heading', {name: 'Overview', level: 1}).waitFor();
    const tOpen = Date.now();
    await page.goto(base + '/campaigns');
    const table = page.getByRole('table', {name: /campaigns/i}).first();
    await table.locator('.vbody .vrow').first().waitFor({timeout: 20000});
    const openMs = Date.now() - tOpen;
    const idOf = async (row) => Number((await row.innerText()).match(/#(\d+)/)[1]);
    const firstId = await idOf(table.locator('.vbody .vrow').first());
    const sorted = [...ids.keys()].sort((a, b) => a - b);
    assert.ok(firstId === sorted[0] || firstId === sorted[sorted.length - 1],
        'the list starts at an end of the ids: ' + firstId);
    const lastName = ids.get(firstId === sorted[0] ? sorted[sorted.length - 1] : sorted[0]);

    // scroll to the end, one step per frame, measuring every frame (in the page)
    const tScroll = Date.now();
    const res = await page.evaluate(async ({count, deadline}) => {
        const box = document.querySelector('.vtable .vbody');
        const tableEl = box.closest('.vtable');
        const frame = () => new Promise((r) => requestAnimationFrame(() => r(performance.now())));
        const frames = [];
        let prev = await frame(), maxDom = 0;
        const stop = performance.now() + deadline;
        for (;;) {
            box.scrollTop += box.clientHeight; // a page per frame: ~20 rows
            const now = await frame();
            frames.push(now - prev);
            prev = now;
            maxDom = Math.max(maxDom, box.querySelectorAll('.vrow').length);
            const rows = Number(tableEl.getAttribute('aria-rowcount')) - 1;
            const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 1;
            if (atEnd && rows >= count) break;
            if (now > stop) return {timeout: true, rows, frames: frames.length};
        }
        await frame();
        return {frames, maxDom, rows: Number(tableEl.getAttribute('aria-rowcount')) - 1};
    }, {count: COUNT, deadline: 60000});
    const scrollMs = Date.now() - tScroll;
    assert.ok(!res.timeout, 'scrolled to the end within 60 s: ' + JSON.stringify(res));
    assert.strictEqual(res.rows, COUNT, 'every page fetched');
    const f = [...res.frames].sort((a, b) => a - b);
    const fig = `${f.length} frames, median ${pct(f, 0.5).toFixed(1)} ms, ` +
        `p95 ${pct(f, 0.95).toFixed(1)} ms, max ${f[f.length - 1].toFixed(1)} ms`;
    console.log(`# list opened in ${openMs} ms; scrolled ${COUNT} rows in ${(scrollMs / 1000).toFixed(1)} s: ${fig}; ` +
        `at most ${res.maxDom} rows in the DOM`);
    // the last campaign's row is drawn, visible, and the lowest row of the table's viewport
    const lastRow = table.locator('.vbody .vrow', {hasText: lastName});
    await lastRow.waitFor({timeout: 5000});
    assert.ok(await lastRow.isVisible(), 'the last row (' + lastName + ') is visible');
    const geo = await page.evaluate((n) => {
        const box = document.querySelector('.vtable .vbody').getBoundingClientRect();
        const rows = [...document.querySelectorAll('.vtable .vbody .vrow')];
        const last = rows.find((r) => r.textContent.includes(n)).getBoundingClientRect();
        return {boxBottom: box.bottom, lastBottom: last.bottom,
            lowest: Math.max(...rows.map((r) => r.getBoundingClientRect().bottom))};
    }, lastName);
    assert.ok(geo.lastBottom === geo.lowest && Math.abs(geo.lastBottom - geo.boxBottom) < 2,
        'the last row sits at the bottom: ' + JSON.stringify(geo));
    assert.ok(res.maxDom < 100, 'only a window of rows in the DOM: ' + res.maxDom);
    const artifacts = process.env.AP_ARTIFACTS || path.join(__dirname, 'artifacts', 'dashboard');
    fs.mkdirSync(artifacts, {recursive: true});
    await page.screenshot({path: path.join(artifacts, '30-campaigns-10k-end.png')});
    assert.ok(pct(f, 0.95) < FRAME_P95_MS, 'frame time p95 under ' + FRAME_P95_MS + ' ms: ' + fig);
    assert.deepStrictEqual(problems, [], 'no errors in the browser console');
});
