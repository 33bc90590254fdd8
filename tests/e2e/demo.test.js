// Browser test of the publisher tag: the real daemon with a fresh data dir and `adplatform
// demo`, Debian's Chromium driven by Playwright (playwright-core: no browser download). Loads
// /demo and checks that every placement shows its ad (an image in a sandboxed iframe of the
// creative's size), that one batched decision request was made, that every impression URL and
// every view URL (>= 50% visible for 1 s) was requested, and saves a screenshot to
// tests/e2e/artifacts/demo.png.
//
// Run: node --test demo.test.js   (AP_BIN = the adplatform binary, default ../../build/adplatform;
// CHROMIUM = the browser, default /usr/bin/chromium).
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
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, 'artifacts');
const SLOTS = [
    {slot: 'leaderboard', w: 728, h: 90},
    {slot: 'rectangle', w: 300, h: 250},
    {slot: 'skyscraper', w: 160, h: 600},
    {slot: 'mobile', w: 320, h: 50},
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function get(port, p) {
    return new Promise((resolve, reject) => {
        http.get({host: '127.0.0.1', port, path: p}, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
        }).on('error', reject);
    });
}

async function waitFor(what, fn, ms) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error('timed out waiting for ' + what);
        await sleep(50);
    }
}

// Starts `adplatform serve` on free ports; resolves {proc, port, logs()}.
async function startDaemon(dir) {
    const portFile = path.join(dir, 'ports.json');
    const log = path.join(dir, 'daemon.log');
    const out = fs.openSync(log, 'w');
    const proc = spawn(BIN, ['serve', '--data-dir', path.join(dir, 'data'), '--listen',
        '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--port-file', portFile,
        '--threads', '2', '--no-pin-threads'], {stdio: ['ignore', out, out]});
    const logs = () => fs.readFileSync(log, 'utf8');
    let exited = null;
    proc.on('exit', (code) => { exited = code; });
    const ports = await waitFor('the port file', () => {
        if (exited !== null) throw new Error('daemon exited with ' + exited + ':\n' + logs());
        try {
            return JSON.parse(fs.readFileSync(portFile, 'utf8'));
        } catch (e) {
            return null;
        }
    }, 20000);
    await waitFor('/readyz', async () => (await get(ports.listen, '/readyz')) === 200, 20000);
    return {proc, port: ports.listen, logs};
}

test('the demo page renders, counts and views an ad in every slot', async (t) => {
    assert.ok(fs.existsSync(BIN), 'no adplatform binary at ' + BIN + ' (build first)');
    assert.ok(fs.existsSync(CHROMIUM), 'no browser at ' + CHROMIUM + ' (scripts/setup.sh)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ap-e2e-'));
    let daemon = null, browser = null;
    t.after(async () => {
        if (browser) await browser.close().catch(() => {});
        if (daemon && daemon.proc.exitCode === null) {
            daemon.proc.kill('SIGTERM');
            await new Promise((r) => daemon.proc.once('exit', r));
        }
        fs.rmSync(dir, {recursive: true, force: true});
    });

    execFileSync(BIN, ['demo', '--data-dir', path.join(dir, 'data')], {stdio: 'pipe'});
    daemon = await startDaemon(dir);
    const base = 'http://127.0.0.1:' + daemon.port;
    for (const p of ['/v1/tag.js', '/demo'])
        assert.strictEqual(await get(daemon.port, p), 200,
            'GET ' + p + ' (are ap_tag_register and the edge wired into src/app/ap_app.c?)');

    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run',
            '--disable-quic'],
    });
    const page = await browser.newPage({
        viewport: {width: 1280, height: 1000},
        // the contract's request: desktop Chrome (headless Chromium says "HeadlessChrome")
        userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 ' +
            '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
    });
    const requested = [];
    page.on('request', (r) => requested.push(r.url()));
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    const decision = page.waitForResponse((r) => r.url() === base + '/v1/decision');
    await page.goto(base + '/demo', {waitUntil: 'load'});
    const res = await decision;
    assert.strictEqual(res.status(), 200, 'decision status');
    const body = await res.json();
    const req = JSON.parse(res.request().postData());
    assert.strictEqual(req.placements.length, SLOTS.length, 'one batched request for all slots');
    assert.ok(req.url.startsWith(base + '/demo'), 'page url sent');

    // every slot: an ad, rendered as an image of the creative's size in a sandboxed iframe
    const ads = [];
    for (const s of SLOTS) {
        const div = 'ap-' + s.slot;
        const list = body.decisions[div];
        assert.ok(Array.isArray(list) && list.length === 1, 'a decision for ' + div);
        const ad = list[0];
        assert.strictEqual(ad.creative.width, s.w);
        assert.strictEqual(ad.creative.height, s.h);
        ads.push(ad);
        const frame = page.locator('#' + div + ' iframe');
        await frame.waitFor({state: 'attached', timeout: 10000});
        const sandbox = await frame.getAttribute('sandbox');
        assert.ok(sandbox && !sandbox.includes('allow-same-origin'), 'sandboxed: ' + sandbox);
        const box = await frame.boundingBox();
        assert.ok(box && Math.round(box.width) === s.w && Math.round(box.height) === s.h,
            div + ' frame size ' + JSON.stringify(box));
        const img = page.frameLocator('#' + div + ' iframe').locator('a > img');
        await img.waitFor({timeout: 10000});
        await waitFor(div + ' image loaded', () => img.evaluate((i) => i.complete &&
            i.naturalWidth > 0), 10000);
        assert.strictEqual(await img.evaluate((i) => i.naturalWidth), s.w);
        const href = await page.frameLocator('#' + div + ' iframe').locator('a')
            .getAttribute('href');
        assert.strictEqual(href, ad.click_url);
    }

    // impression URLs fire on render; view URLs after >= 50% visible for 1 s
    await waitFor('every impression URL', () => ads.every((a) =>
        requested.includes(a.impression_url)), 10000);
    for (const s of SLOTS) /* in case a slot is below the fold on a small screen */
        await page.locator('#ap-' + s.slot).scrollIntoViewIfNeeded();
    await page.evaluate(() => window.scrollTo(0, 0));
    await waitFor('every view URL', async () => {
        const missing = ads.filter((a) => !requested.includes(a.view_url));
        for (const a of missing) { /* scroll each missing one into view and hold it there */
            const div = Object.keys(body.decisions).find((k) => body.decisions[k][0] === a);
            await page.locator('#' + div).scrollIntoViewIfNeeded();
            await sleep(1300);
        }
        return missing.length === 0;
    }, 30000);
    for (const a of ads) {
        assert.strictEqual(requested.filter((u) => u === a.impression_url).length, 1,
            'impression fired once');
        assert.strictEqual(requested.filter((u) => u === a.view_url).length, 1,
            'view fired once');
    }
    assert.deepStrictEqual(errors, [], 'no script errors');

    fs.mkdirSync(ARTIFACTS, {recursive: true});
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({path: path.join(ARTIFACTS, 'demo.png'), fullPage: true});
});

test('a placement without an ad collapses', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ap-e2e-'));
    let daemon = null, browser = null;
    t.after(async () => {
        if (browser) await browser.close().catch(() => {});
        if (daemon && daemon.proc.exitCode === null) {
            daemon.proc.kill('SIGTERM');
            await new Promise((r) => daemon.proc.once('exit', r));
        }
        fs.rmSync(dir, {recursive: true, force: true});
    });
    execFileSync(BIN, ['demo', '--data-dir', path.join(dir, 'data')], {stdio: 'pipe'});
    daemon = await startDaemon(dir);
    const base = 'http://127.0.0.1:' + daemon.port;
    browser = await chromium.launch({
        executablePath: CHROMIUM, headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    const page = await browser.newPage();
    // the page is our own demo page, with one placement id that does not exist added
    await page.route(base + '/demo', async (route) => {
        const r = await route.fetch();
        const html = (await r.text()).replace('<footer>',
            '<div id="nofill" data-ap-placement="999999"></div><footer>');
        await route.fulfill({response: r, body: html});
    });
    await page.goto(base + '/demo');
    await waitFor('the unknown placement to collapse', () => page.evaluate(() => {
        const d = document.getElementById('nofill');
        return d.getAttribute('data-ap-state') === 'empty' &&
            getComputedStyle(d).display === 'none';
    }), 10000);
});
