// Browser test of the admin dashboard (web/, SolidJS) against the real daemon with a fresh data
// dir: an administrator logs in and creates an advertiser, a campaign with targeting and a
// frequency cap, uploads a creative (drag and drop), creates an ad, a publisher, a site and a
// placement; copies the placement's tag into a test page served from another origin and sees the
// ad there; then looks for the impression on the reports page (or, while /api/v1/reports does not
// exist, checks that the page says so). An advertiser-role user then cannot reach another
// advertiser's campaign, neither in the list nor by URL. Every page is screenshotted into
// $AP_ARTIFACTS (default: tests/e2e/artifacts/dashboard), at 1280 px and some at phone width.
//
// Run: node --test dashboard.test.js (AP_BIN: the adplatform binary; AP_WEB_ROOT: the built
// dashboard, default ../../web/dist; CHROMIUM: default /usr/bin/chromium). run-dashboard.sh
// builds the dashboard first.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const {spawn, execFileSync} = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const zlib = require('node:zlib');
const {chromium} = require('playwright-core');

const BIN = process.env.AP_BIN || path.join(__dirname, '..', '..', 'build', 'adplatform');
const WEB_ROOT = process.env.AP_WEB_ROOT || path.join(__dirname, '..', '..', 'web', 'dist');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.AP_ARTIFACTS || path.join(__dirname, 'artifacts', 'dashboard');
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ' +
    'Chrome/120.0.0.0 Safari/537.36';

const nav = (p, name) => p.getByRole('navigation', {name: 'Main'})
    .getByRole('link', {name, exact: true}).click();
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

// A valid PNG of w x h pixels (one colour, a darker frame), made here: no binary fixture.
function makePng(w, h) {
    const crcTable = Array.from({length: 256}, (_, n) => {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        return c >>> 0;
    });
    const crc = (buf) => {
        let c = 0xffffffff;
        for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
        return (c ^ 0xffffffff) >>> 0;
    };
    const chunk = (type, data) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(data.length);
        const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
        const c = Buffer.alloc(4);
        c.writeUInt32BE(crc(td));
        return Buffer.concat([len, td, c]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 2; /* RGB */
    const raw = Buffer.alloc((w * 3 + 1) * h);
    for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
            const edge = x < 4 || y < 4 || x >= w - 4 || y >= h - 4;
            raw.set(edge ? [29, 78, 216] : [253, 230, 138], y * (w * 3 + 1) + 1 + x * 3);
        }
    }
    return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
        chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

function api(port, method, p, token, body) {
    return new Promise((resolve, reject) => {
        const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
        const req = http.request({host: '127.0.0.1', port, method, path: p, headers: {
            Authorization: 'Bearer ' + token,
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

async function startDaemon(dir) {
    const portFile = path.join(dir, 'ports.json');
    const log = path.join(dir, 'daemon.log');
    const out = fs.openSync(log, 'w');
    const proc = spawn(BIN, ['serve', '--data-dir', path.join(dir, 'data'), '--listen',
        '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--port-file', portFile,
        '--threads', '2', '--admin-threads', '2', '--no-pin-threads', '--web-root', WEB_ROOT],
    {stdio: ['ignore', out, out]});
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
    return {proc, port: ports.listen, admin: ports.admin, logs};
}

test('the dashboard: set up a campaign end to end, see the ad, and keep tenants apart', async (t) => {
    assert.ok(fs.existsSync(BIN), 'no adplatform binary at ' + BIN + ' (build first)');
    assert.ok(fs.existsSync(path.join(WEB_ROOT, 'index.html')),
        'no dashboard build at ' + WEB_ROOT + ' (cd web && npm ci && npm run build)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ap-dash-'));
    let daemon = null, browser = null, lastPage = null, pubServer = null;
    t.after(async () => {
        if (lastPage) /* the page as it was at the end (or at a failure) */
            await lastPage.screenshot({path: path.join(ARTIFACTS, 'last-state.png'), fullPage: true})
                .catch(() => {});
        if (browser) await browser.close().catch(() => {});
        if (pubServer) {
            pubServer.closeAllConnections();
            await new Promise((r) => pubServer.close(r));
        }
        if (daemon && daemon.proc.exitCode === null) {
            daemon.proc.kill('SIGTERM');
            await new Promise((r) => daemon.proc.once('exit', r));
        }
        fs.rmSync(dir, {recursive: true, force: true});
    });
    fs.rmSync(ARTIFACTS, {recursive: true, force: true});
    fs.mkdirSync(ARTIFACTS, {recursive: true});

    const admin = JSON.parse(execFileSync(BIN, ['admin', 'create', '--data-dir',
        path.join(dir, 'data'), '--email', 'admin@example.com', '--json'], {encoding: 'utf8'}));
    daemon = await startDaemon(dir);
    const base = 'http://127.0.0.1:' + daemon.admin;
    browser = await chromium.launch({
        executablePath: CHROMIUM, headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    const ctx = await browser.newContext({viewport: {width: 1280, height: 900}, userAgent: UA});
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], {origin: base});
    const page = await ctx.newPage();
    lastPage = page;
    const problems = [];   // page errors and console errors other than expected HTTP failures
    const httpErrors = []; // "Failed to load resource" lines (404 of a missing reports API)
    const watch = (p) => {
        p.on('pageerror', (e) => problems.push('pageerror: ' + e));
        p.on('console', (m) => {
            if (m.type() !== 'error') return;
            if (/Failed to load resource/.test(m.text())) httpErrors.push(m.text());
            else problems.push('console: ' + m.text());
        });
    };
    watch(page);
    const shot = async (name, p = page) => {
        await p.waitForLoadState('networkidle').catch(() => {});
        await p.screenshot({path: path.join(ARTIFACTS, name + '.png'), fullPage: true});
    };
    const heading = (text) => page.getByRole('heading', {name: text, level: 1});

    // ---- log in (the app redirects to /login without a session)
    await page.goto(base + '/campaigns');
    await page.waitForURL(/\/login\?next=/);
    await shot('01-login');
    await page.getByRole('button', {name: 'Sign in'}).click();
    await page.getByText('Enter your e-mail address').waitFor(); // inline validation
    await page.getByLabel('E-mail').fill('admin@example.com');
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', {name: 'Sign in'}).click();
    await page.getByRole('alert').filter({hasText: /password|credentials|sign in/i}).first().waitFor();
    await page.getByLabel('Password').fill(admin.password);
    await page.getByRole('button', {name: 'Sign in'}).click();
    await heading('Campaigns').waitFor(); // back where we wanted to go
    const token = await page.evaluate(() => sessionStorage.getItem('ap.token'));
    assert.ok(/^ses_/.test(token || ''), 'session token in sessionStorage');
    assert.deepStrictEqual((await ctx.cookies()).filter((c) => /ses_/.test(c.value)), [],
        'no token in a cookie');
    await nav(page, 'Overview');
    await heading('Overview').waitFor();
    await page.getByText('Requests/s').waitFor();
    await sleep(3500); // one refresh of the live tiles
    await shot('02-overview');

    // ---- advertiser (with the API's 422 shown next to a field first)
    await nav(page, 'Advertisers');
    await heading('Advertisers').waitFor();
    await page.getByText('No advertisers yet.').waitFor();
    await page.getByRole('link', {name: 'New'}).click();
    await page.getByLabel('Name *').fill('Acme Outdoor');
    await page.getByLabel('Time zone *').fill('Not/AZone');
    await page.getByRole('button', {name: 'Create'}).click();
    const tzErr = page.locator('.field.has-error').filter({hasText: 'Time zone'});
    await tzErr.locator('.field-error').waitFor(); // the API refused the zone: shown by the field
    await page.getByLabel('Time zone *').fill('UTC');
    await page.getByRole('button', {name: 'Create'}).click();
    await heading('Advertisers').waitFor();
    await page.getByRole('link', {name: 'Acme Outdoor'}).waitFor();
    await shot('03-advertisers');
    const advs = (await api(daemon.admin, 'GET', '/api/v1/advertisers', token)).body.data;
    const acme = advs.find((a) => a.name === 'Acme Outdoor');
    assert.ok(acme, 'advertiser created');

    // ---- campaign with targeting and a frequency cap
    await nav(page, 'Campaigns');
    await heading('Campaigns').waitFor();
    await page.getByRole('link', {name: 'New'}).click();
    await heading('New campaign').waitFor();
    await page.getByRole('button', {name: 'Create campaign'}).click();
    await page.getByText('Name is required').waitFor(); // inline validation, nothing sent
    await page.getByLabel('Advertiser *').selectOption(String(acme.id));
    await page.getByLabel('Name *').fill('Trail Shoes Spring');
    await page.getByLabel('Status').selectOption('active');
    await page.getByLabel('Price').fill('2.50');
    await page.getByLabel('Daily budget').fill('100');
    await page.getByLabel('Lifetime budget').fill('2500');
    await page.getByRole('button', {name: 'Add a frequency cap'}).click();
    await page.getByLabel('Cap 1: count').fill('5');
    await page.getByLabel('Cap 1: window').selectOption({label: 'day'});
    await page.getByLabel('Countries to exclude').fill('germ');
    await page.getByRole('button', {name: 'DE — Germany'}).click();
    await page.getByRole('checkbox', {name: 'desktop'}).check();
    await page.getByRole('checkbox', {name: 'windows'}).check();
    await page.getByLabel('Keywords: none of').fill('crypto, Gambling');
    await page.getByLabel('Keywords: none of').blur();
    // the days x hours grid: clear it, then everything again by days; keyboard on a cell
    await page.getByRole('button', {name: 'Clear'}).click();
    await page.getByRole('button', {name: 'Create campaign'}).click();
    await page.getByText('Pick at least one hour').waitFor();
    for (const d of ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'])
        await page.getByRole('button', {name: 'Toggle all of ' + d}).click();
    const cell = page.getByRole('gridcell', {name: 'Mon 3:00'});
    await cell.focus();
    await page.keyboard.press('Space'); // off
    await page.keyboard.press('Space'); // on again
    await shot('04-campaign-new');
    await page.getByRole('button', {name: 'Create campaign'}).click();
    await page.waitForURL(/\/campaigns\/\d+$/);
    const campaignId = Number(page.url().split('/').pop());
    await heading(/Campaign #\d+: Trail Shoes Spring/).waitFor();
    const camp = (await api(daemon.admin, 'GET', '/api/v1/campaigns/' + campaignId, token)).body;
    assert.strictEqual(camp.price_micros, 2500000);
    assert.strictEqual(camp.budget_daily_micros, 100000000);
    assert.deepStrictEqual(camp.frequency_caps, [{count: 5, window_seconds: 86400, scope: 'campaign'}]);
    assert.deepStrictEqual(camp.targeting.countries_exclude, ['DE']);
    assert.deepStrictEqual(camp.targeting.device_types, ['desktop']);
    assert.deepStrictEqual(camp.targeting.os, ['windows']);
    assert.deepStrictEqual(camp.targeting.keywords, {none: ['crypto', 'gambling']});
    assert.strictEqual(camp.targeting.dayparts, undefined, 'all hours = no daypart rule');
    await shot('05-campaign-edit');

    // ---- creative: drag and drop a 300x250 PNG
    await nav(page, 'Creatives');
    await heading('Creatives').waitFor();
    await page.getByRole('link', {name: 'New'}).click();
    await page.getByLabel('Advertiser *').selectOption(String(acme.id));
    const png = makePng(300, 250).toString('base64');
    await page.locator('.dropzone').evaluate((el, b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'trail-300x250.png', {type: 'image/png'}));
        el.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        el.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }, png);
    await page.locator('.detected-size', {hasText: '300×250'}).waitFor();
    assert.strictEqual(await page.getByLabel('Name *').inputValue(), 'trail-300x250');
    await shot('06-creative-upload');
    await page.getByRole('button', {name: 'Upload'}).click();
    await page.waitForURL(/\/creatives\/\d+$/);
    const creativeId = Number(page.url().split('/').pop());
    await page.getByRole('img', {name: 'Creative trail-300x250'}).waitFor();
    await page.locator('.badge', {hasText: 'approved'}).waitFor();
    await shot('07-creative');

    // ---- ad: from the campaign page
    await page.goto(base + '/campaigns/' + campaignId);
    await page.getByRole('link', {name: 'Add an ad'}).click();
    await page.getByLabel('Creative *').selectOption(String(creativeId));
    await page.getByLabel('Landing URL').fill('https://example.com/trail');
    await page.getByRole('button', {name: 'Create'}).click();
    await heading('Ads').waitFor();
    await page.getByRole('link', {name: '#' + creativeId}).first().waitFor();
    await shot('08-ads');

    // ---- publisher, site, placement
    await nav(page, 'Publishers');
    await page.getByRole('link', {name: 'New'}).click();
    await page.getByLabel('Name *').fill('Trail News');
    await page.getByRole('button', {name: 'Create'}).click();
    await page.getByRole('link', {name: 'Trail News'}).waitFor();
    await shot('09-publishers');
    await nav(page, 'Sites & apps');
    await page.getByRole('link', {name: 'New'}).click();
    const pubs = (await api(daemon.admin, 'GET', '/api/v1/publishers', token)).body.data;
    await page.getByLabel('Publisher *').selectOption(String(pubs.find((x) => x.name === 'Trail News').id));
    await page.getByLabel('Name *').fill('trailnews.example');
    await page.getByLabel('Domain').fill('trailnews.example');
    await page.getByRole('button', {name: 'Create'}).click();
    await page.getByRole('link', {name: 'trailnews.example'}).waitFor();
    await shot('10-sites');
    await nav(page, 'Placements');
    await heading('Placements').waitFor();
    await page.getByRole('link', {name: 'New'}).click();
    const sites = (await api(daemon.admin, 'GET', '/api/v1/sites', token)).body.data;
    await page.getByLabel('Site or app *').selectOption(String(sites.find((x) => x.name === 'trailnews.example').id));
    await page.getByLabel('Name *').fill('Sidebar rectangle');
    await page.getByLabel('Sizes').fill('300x250');
    await page.getByRole('button', {name: 'Create'}).click();
    await page.waitForURL(/\/placements\/\d+$/);
    const placementId = Number(page.url().split('/').pop());
    await page.getByRole('button', {name: 'Copy tag'}).click();
    await page.getByText('Copied to the clipboard').waitFor();
    const tag = await page.evaluate(() => navigator.clipboard.readText());
    assert.ok(tag.includes('data-ap-placement="' + placementId + '"'), 'tag copied: ' + tag);
    assert.strictEqual(tag, await page.locator('#ad-tag').inputValue());
    await page.getByRole('button', {name: 'Load live preview'}).click();
    const preview = page.frameLocator('iframe[title="Live preview of the placement"]');
    await preview.locator('img').first().waitFor({timeout: 15000});
    await shot('11-placement-tag');

    // ---- the tag on a publisher's page of ANOTHER origin (a second loopback port served by
    // node's http module): /v1/decision answers CORS with credentials, so the ad shows there.
    const pubHtml = '<!doctype html><html><head><title>Trail News</title></head><body>' +
        '<h1>Trail News</h1><p>Story text.</p>' + tag + '</body></html>';
    pubServer = http.createServer((req, res) => {
        if (req.url !== '/story.html') {
            res.writeHead(404, {'Content-Type': 'text/plain'});
            return res.end('not found');
        }
        res.writeHead(200, {'Content-Type': 'text/html; charset=utf-8'});
        res.end(pubHtml);
    });
    await new Promise((r) => pubServer.listen(0, '127.0.0.1', r));
    const pubOrigin = 'http://127.0.0.1:' + pubServer.address().port;
    assert.notStrictEqual(pubOrigin, 'http://127.0.0.1:' + daemon.port, 'a different origin');
    const pubUrl = pubOrigin + '/story.html';
    const pub = await ctx.newPage();
    const corsSeen = [];
    pub.on('response', (r) => {
        if (r.url().includes('/v1/decision') && r.request().method() === 'POST')
            corsSeen.push(r.headers()['access-control-allow-origin']);
    });
    const pubErrors = [];
    pub.on('pageerror', (e) => pubErrors.push(String(e)));
    const decisions = [];
    pub.on('response', async (r) => {
        if (r.url().includes('/v1/decision'))
            decisions.push(r.status() + ' ' + await r.text().catch(() => '?'));
    });
    const slot = '[data-ap-placement="' + placementId + '"]';
    await waitFor('the ad on the publisher page', async () => {
        await pub.goto(pubUrl, {waitUntil: 'load'});
        await pub.waitForSelector(slot + '[data-ap-state]', {state: 'attached', timeout: 10000});
        return (await pub.locator(slot).getAttribute('data-ap-state')) === 'done';
    }, 20000).catch((e) => {
        throw new Error(e.message + '; decisions: ' + JSON.stringify(decisions));
    });
    lastPage = pub;
    const adImg = pub.frameLocator(slot + ' iframe').locator('a > img');
    await adImg.waitFor({timeout: 10000});
    await waitFor('the ad image loaded', () => adImg.evaluate((i) => i.complete &&
        i.naturalWidth === 300), 10000).catch(async (e) => {
        throw new Error(e.message + ': ' + await adImg.evaluate((i) => i.outerHTML + ' ' + i.complete + ' ' + i.naturalWidth));
    });
    lastPage = page;
    await shot('12-publisher-page', pub);
    assert.deepStrictEqual(pubErrors, [], 'no errors on the publisher page');
    assert.ok(corsSeen.length >= 1 && corsSeen.every((o) => o === pubOrigin),
        'the decision echoed the publisher origin: ' + JSON.stringify(corsSeen));

    // ---- the overview counts the impression (ap_events_accepted_total{type="imp"})
    await nav(page, 'Overview');
    await heading('Overview').waitFor();
    const impOverview = page.locator('.tile', {hasText: 'Impressions (since start)'}).locator('.tile-value').first();
    await waitFor('impressions on the overview', async () => {
        const v = (await impOverview.innerText().catch(() => '—')).trim();
        return v !== '—' && Number(v.replace(/[^0-9]/g, '')) >= 1;
    }, 15000);

    // ---- reports: the impression (when the reports API exists)
    await nav(page, 'Reports');
    await heading('Reports').waitFor();
    const probe = await api(daemon.admin, 'GET', '/api/v1/reports?from=2000-01-01&to=2000-01-01', token);
    if (probe.status === 404) {
        await page.getByText('Reports are not available on this server yet').waitFor();
        console.log('# reports API absent (404): the page shows that; impression not checked');
    } else {
        await page.getByLabel('Granularity').selectOption('total');
        const impTile = page.locator('.tile', {hasText: 'Impressions'}).locator('.tile-value');
        await waitFor('the impression in the report', async () => {
            await page.getByLabel('Granularity').selectOption('day');
            await page.getByLabel('Granularity').selectOption('total');
            await sleep(500);
            const v = await impTile.first().innerText().catch(() => '0');
            return Number(v.replace(/[^0-9]/g, '')) >= 1 &&
                (await page.locator('.report-table tbody tr').count()) >= 1;
        }, 30000);
        const rowText = await page.locator('.report-table tbody tr').first().innerText();
        assert.ok(rowText.includes(String(campaignId)), 'a row of campaign ' + campaignId + ': ' + rowText);
        // sorting and CSV
        await page.locator('.report-table th button').first().click();
        const [dl] = await Promise.all([page.waitForEvent('download'),
            page.getByRole('button', {name: 'Download CSV'}).click()]);
        const csv = fs.readFileSync(await dl.path(), 'utf8');
        assert.ok(/impressions/i.test(csv.split('\n')[0]), 'CSV header: ' + csv.slice(0, 200));
    }
    await shot('13-reports');

    // ---- the other admin pages
    for (const [link, h, name] of [['Demand partners', 'Demand partners', '14-demand-partners'],
        ['Users', 'Users', '15-users'], ['API keys', 'API keys', '16-api-keys'],
        ['Audit log', 'Audit log', '17-audit-log'], ['System health', 'System health', '18-health']]) {
        await nav(page, link);
        await heading(h).waitFor();
        if (link === 'Audit log') await page.getByText('campaign #' + campaignId).first().waitFor();
        if (link === 'System health') {
            await page.getByText('healthy').waitFor();
            const tile = (label) => page.locator('.tile', {hasText: label}).locator('.tile-value').first();
            await waitFor('version and threads on the health page', async () =>
                /^\d+\.\d+/.test(await tile('Version').innerText()) &&
                (await tile('Data-plane threads').innerText()).trim() === '2' &&
                /\d+[ms]/.test(await tile('Uptime').innerText()), 10000);
        }
        await shot(name);
    }

    // ---- a second advertiser with its own campaign, and an advertiser user of Acme only
    const other = await api(daemon.admin, 'POST', '/api/v1/advertisers', token,
        {name: 'Rival Corp', currency: 'USD', timezone: 'UTC'});
    assert.strictEqual(other.status, 201);
    const secret = await api(daemon.admin, 'POST', '/api/v1/campaigns', token,
        {advertiser_id: other.body.id, name: 'Rival Secret Launch'});
    assert.strictEqual(secret.status, 201);
    await nav(page, 'Users');
    await page.getByRole('link', {name: 'New'}).click();
    await page.getByLabel('E-mail *').fill('acme@example.com');
    await page.getByLabel('Password *').fill('acme-password-1');
    await page.getByLabel('Role *').selectOption('advertiser');
    await page.getByLabel('Advertiser ids').fill(String(acme.id));
    await page.getByRole('button', {name: 'Create'}).click();
    await page.getByText('acme@example.com').waitFor();

    // phone width
    await page.setViewportSize({width: 390, height: 844});
    await page.getByRole('button', {name: 'Menu'}).click();
    await nav(page, 'Campaigns');
    await heading('Campaigns').waitFor();
    await shot('19-campaigns-phone');
    await page.setViewportSize({width: 1280, height: 900});

    await page.getByRole('button', {name: 'Log out'}).click();
    await page.waitForURL(/\/login/);
    assert.strictEqual(await page.evaluate(() => sessionStorage.getItem('ap.token')), null);
    const old = await api(daemon.admin, 'GET', '/api/v1/users/me', token);
    assert.strictEqual(old.status, 401, 'the session ended on the server');

    const tctx = await browser.newContext({viewport: {width: 1280, height: 900}});
    const tp = await tctx.newPage();
    lastPage = tp;
    watch(tp);
    await tp.goto(base + '/login');
    await tp.getByLabel('E-mail').fill('acme@example.com');
    await tp.getByLabel('Password').fill('acme-password-1');
    await tp.getByRole('button', {name: 'Sign in'}).click();
    await tp.getByRole('heading', {name: 'Overview', level: 1}).waitFor();
    for (const hidden of ['Users', 'Audit log', 'Demand partners', 'Publishers', 'System health'])
        assert.strictEqual(await tp.getByRole('link', {name: hidden, exact: true}).count(), 0,
            hidden + ' is not offered to an advertiser');
    await nav(tp, 'Campaigns');
    await tp.getByRole('link', {name: 'Trail Shoes Spring'}).waitFor();
    assert.strictEqual(await tp.getByText('Rival Secret Launch').count(), 0, 'not in the list');
    await shot('20-tenant-campaigns', tp);
    await tp.goto(base + '/campaigns/' + secret.body.id);
    await tp.getByRole('heading', {name: 'Not found'}).waitFor();
    assert.strictEqual(await tp.getByText('Rival Secret Launch').count(), 0, 'not by URL');
    await shot('21-tenant-foreign-campaign', tp);
    for (const p of ['/users', '/audit-log']) {
        await tp.goto(base + p);
        await tp.getByRole('heading', {name: 'Not found'}).waitFor();
    }
    await tp.goto(base + '/campaigns/' + campaignId); // their own: fine
    await tp.getByRole('heading', {name: /Trail Shoes Spring/}).waitFor();
    lastPage = null;
    await tctx.close();

    assert.deepStrictEqual(problems, [], 'no errors in the browser console');
    // expected: 401 (the wrong password), 422 (the refused time zone), 404 (a foreign campaign)
    for (const e of httpErrors) assert.ok(/ (401|404|422) /.test(e), 'only expected failures: ' + e);
});
