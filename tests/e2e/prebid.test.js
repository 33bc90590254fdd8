// Browser test of the exchange with a real client: Prebid.js (the prebuilt bundle shipped in
// the pinned npm package `prebid.js`, dist/not-for-prod/prebid.js: all modules, no build of
// Prebid) in Debian's Chromium, configured for server-to-server auctions (s2sConfig) at our
// POST /openrtb2/auction, with one ad unit whose bidder is `adplatform` {placement: 2} (the
// demo's 300x250). The page (tests/e2e/prebid/page.html) is served from another origin by a
// small node server, so the auction is a credentialed cross-origin text/plain POST, as on a
// publisher's site. Checks: the request Prebid sent, CORS with credentials, our bid wins,
// renders in the slot (the creative's image, 300x250), its impression beacon is accepted, and
// the impression is counted once (/metrics, then the reports API).
//
// Run: node --test prebid.test.js  (AP_BIN = the adplatform binary, default
// ../../build/adplatform; CHROMIUM = the browser, default /usr/bin/chromium).
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
const PREBID = path.join(__dirname, 'node_modules', 'prebid.js', 'dist', 'not-for-prod',
    'prebid.js');
const PAGE = path.join(__dirname, 'prebid', 'page.html');
const PLACEMENT = 2; // the demo's "Medium Rectangle 300x250"

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(port, p, headers) {
    return new Promise((resolve, reject) => {
        http.get({host: '127.0.0.1', port, path: p, headers: headers || {}}, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve({status: res.statusCode, body}));
        }).on('error', reject);
    });
}

async function waitFor(what, fn, ms) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error('timed out waiting for ' + what);
        await sleep(100);
    }
}

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
    await waitFor('/readyz', async () => (await request(ports.listen, '/readyz')).status === 200,
        20000);
    return {proc, port: ports.listen, admin: ports.admin, logs};
}

// The publisher's site: the test page and the Prebid.js bundle, on another origin.
function startPageServer() {
    const server = http.createServer((req, res) => {
        const u = new URL(req.url, 'http://x');
        if (u.pathname === '/page.html') {
            res.writeHead(200, {'Content-Type': 'text/html; charset=utf-8'});
            fs.createReadStream(PAGE).pipe(res);
        } else if (u.pathname === '/prebid.js') {
            res.writeHead(200, {'Content-Type': 'application/javascript'});
            fs.createReadStream(PREBID).pipe(res);
        } else {
            res.writeHead(404);
            res.end();
        }
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1',
        () => resolve({server, port: server.address().port})));
}

function metric(text, name, labels) {
    const line = text.split('\n').find((l) => l.startsWith(name + labels + ' '));
    return line ? Number(line.split(' ').pop()) : 0;
}

test('Prebid.js (s2s) gets our bid, renders it and its impression is counted', async (t) => {
    assert.ok(fs.existsSync(BIN), 'no adplatform binary at ' + BIN + ' (build first)');
    assert.ok(fs.existsSync(CHROMIUM), 'no browser at ' + CHROMIUM + ' (scripts/setup.sh)');
    assert.ok(fs.existsSync(PREBID), 'no Prebid.js bundle at ' + PREBID + ' (npm ci)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ap-e2e-prebid-'));
    let daemon = null, browser = null, site = null;
    t.after(async () => {
        if (browser) await browser.close().catch(() => {});
        if (site) site.server.close();
        if (daemon && daemon.proc.exitCode === null) {
            daemon.proc.kill('SIGTERM');
            await new Promise((r) => daemon.proc.once('exit', r));
        }
        fs.rmSync(dir, {recursive: true, force: true});
    });

    const data = path.join(dir, 'data');
    execFileSync(BIN, ['demo', '--data-dir', data], {stdio: 'pipe'});
    const admin = JSON.parse(execFileSync(BIN, ['admin', 'create', '--data-dir', data, '--email',
        'e2e@example.com', '--json'], {encoding: 'utf8'}));
    daemon = await startDaemon(dir);
    site = await startPageServer();
    // another origin than the daemon's 127.0.0.1: the auction request is cross-origin
    const pageOrigin = 'http://localhost:' + site.port;
    const ap = 'http://127.0.0.1:' + daemon.port;

    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    const page = await browser.newPage({
        viewport: {width: 1000, height: 700},
        userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 ' +
            '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
    });
    const responses = [];
    page.on('response', (r) => responses.push({url: r.url(), status: r.status()}));
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    const auction = page.waitForResponse((r) => r.url() === ap + '/openrtb2/auction' &&
        r.request().method() === 'POST', {timeout: 20000});
    await page.goto(pageOrigin + '/page.html?ap=' + encodeURIComponent(ap) + '&placement=' +
        PLACEMENT, {waitUntil: 'load'});
    const res = await auction;

    // what Prebid sent: its s2s adapter's OpenRTB request, cross-origin text/plain
    const req = res.request();
    assert.match(req.headers()['content-type'] || '', /^text\/plain/);
    const ortb = JSON.parse(req.postData());
    assert.ok(Array.isArray(ortb.imp) && ortb.imp.length === 1, 'one imp');
    assert.strictEqual(ortb.imp[0].ext.prebid.bidder.adplatform.placement, PLACEMENT);
    assert.deepStrictEqual(ortb.imp[0].banner.format, [{w: 300, h: 250}]);
    // our answer: 200, CORS for a credentialed request
    assert.strictEqual(res.status(), 200, 'auction status');
    const rh = res.headers();
    assert.strictEqual(rh['access-control-allow-origin'], pageOrigin);
    assert.strictEqual(rh['access-control-allow-credentials'], 'true');
    const body = await res.json();
    const bid = body.seatbid[0].bid[0];
    assert.strictEqual(body.seatbid[0].seat, 'adplatform');
    assert.ok(bid.price > 0, 'a priced bid');

    // Prebid: our bid won the ad unit
    const state = await waitFor('bidsBackHandler', () => page.evaluate(() =>
        window.testState.done && window.testState), 15000);
    assert.ok(state.winner, 'a winning bid: ' + JSON.stringify(state));
    assert.strictEqual(state.winner.bidder, 'adplatform');
    assert.strictEqual(state.winner.source, 's2s');
    assert.strictEqual(state.winner.width, 300);
    assert.strictEqual(state.winner.height, 250);
    assert.ok(Math.abs(state.winner.cpm - bid.price) < 1e-9, 'cpm = our price');
    assert.strictEqual(state.winner.targeting.hb_bidder, 'adplatform');
    assert.deepStrictEqual(state.errors, []);

    // rendered in the slot: Prebid's renderer puts the markup in an iframe (srcdoc) inside the
    // document we gave pbjs.renderAd; the creative's image at its size
    const frame = page.frameLocator('#slot-1 iframe').frameLocator('iframe');
    const img = frame.locator('a > img');
    await img.waitFor({timeout: 10000});
    await waitFor('the creative image', () => img.evaluate((i) => i.complete &&
        i.naturalWidth > 0), 10000);
    assert.strictEqual(await img.evaluate((i) => i.naturalWidth), 300);
    const href = await frame.locator('a').getAttribute('href');
    assert.ok(href.startsWith(ap + '/v1/e/click?'), 'click goes through our beacon: ' + href);

    // the impression beacon in the markup was requested and accepted
    const imp = await waitFor('the impression beacon', () => responses.find((r) =>
        r.url.startsWith(ap + '/v1/e/imp?')), 10000);
    assert.ok(imp.status >= 200 && imp.status < 300, 'impression beacon status ' + imp.status);

    // counted: the event log accepted it ...
    const metrics = await waitFor('the impression in /metrics', async () => {
        const m = await request(daemon.admin, '/metrics');
        return m.status === 200 &&
            metric(m.body, 'ap_events_accepted_total', '{type="imp"}') >= 1 && m.body;
    }, 10000);
    assert.ok(metric(metrics, 'ap_events_accepted_total', '{type="imp"}') >= 1);
    // ... and the reports show exactly one impression for the placement (the markup's pixel
    // and Prebid's burl are the same impression id: counted once)
    const auth = {Authorization: 'Bearer ' + admin.api_key};
    const report = await waitFor('the impression in the reports', async () => {
        const r = await request(daemon.admin, '/api/v1/reports?group_by=placement&traffic=all',
            auth);
        assert.strictEqual(r.status, 200, 'reports: ' + r.body);
        const j = JSON.parse(r.body);
        const row = (j.rows || []).find((x) => Number(x.placement_id) === PLACEMENT);
        return row && row.impressions >= 1 && row;
    }, 30000);
    await sleep(1500); // a second, late count (e.g. the billing notice) would show up by now
    const again = JSON.parse((await request(daemon.admin,
        '/api/v1/reports?group_by=placement&traffic=all', auth)).body);
    const row = again.rows.find((x) => Number(x.placement_id) === PLACEMENT);
    assert.strictEqual(row.impressions, 1, 'one impression: ' + JSON.stringify(row));
    assert.strictEqual(report.impressions, 1);
    assert.deepStrictEqual(errors, [], 'no script errors');

    fs.mkdirSync(ARTIFACTS, {recursive: true});
    await page.screenshot({path: path.join(ARTIFACTS, 'prebid.png')});
});
