/*
 * AdPlatform publisher tag (GET /v1/tag.js). No dependencies; runs as an async script.
 *
 *   <div data-ap-placement="12" data-ap-keywords="sports,news" data-ap-user="u-42"></div>
 *   <script async src="https://ads.example.com/v1/tag.js"></script>
 *
 * Every run (the snippet may appear once per placement) collects the placement divs not yet
 * handled and asks POST /v1/decision on the origin it was loaded from, ONE request per batch.
 * Each ad renders in a sandboxed iframe of the creative's size; the impression URL fires when it
 * rendered, the view URL when >= 50% of it was visible for 1 s continuously (MRC display); a
 * placement without an ad collapses. Lines starting with // and indentation are stripped when
 * the file is embedded into the binary (web/tag/embed.cmake): no // after code on a line.
 */
(function (w, d) {
    'use strict';
    var A = w.adplatform = w.adplatform || {};
    if (!A.base) {
        var s = d.currentScript;
        if (!s || !/\/v1\/tag\.js/.test(s.src || '')) {
            s = d.querySelector('script[src*="/v1/tag.js"]');
        }
        A.base = s ? new URL(s.src, d.baseURI).origin : location.origin;
        A.n = 0;
        A.fired = [];
    }
    if (A.scan) {
        A.scan();
        return;
    }

    // Fire-and-forget GET of a tracking URL (cookies included: our first-party id).
    function ping(url) {
        if (!url) return;
        A.fired.push(url);
        try {
            fetch(url, {mode: 'no-cors', credentials: 'include', keepalive: true});
        } catch (e) {
            (new Image()).src = url;
        }
    }

    function esc(v) {
        return String(v).replace(/[&<>"']/g, function (c) {
            return '&#' + c.charCodeAt(0) + ';';
        });
    }

    // Asks the page's IAB CMPs (TCF v2, US Privacy) if there are any, then cb(consent), where
    // consent is the decision request's {gdpr, tcf, us_privacy}; waits 500 ms at most.
    function consent(cb) {
        var out = {}, left = 0, done = false;
        function end() {
            if (!done && left <= 0) {
                done = true;
                cb(out);
            }
        }
        if (typeof w.__tcfapi == 'function') {
            left++;
            try {
                w.__tcfapi('addEventListener', 2, function (t, ok) {
                    if (ok && t && (t.eventStatus == 'tcloaded' ||
                            t.eventStatus == 'useractioncomplete')) {
                        out.gdpr = !!t.gdprApplies;
                        if (t.tcString) out.tcf = t.tcString;
                        left--;
                        end();
                    }
                });
            } catch (e) {
                left--;
            }
        }
        if (typeof w.__uspapi == 'function') {
            left++;
            try {
                w.__uspapi('getUSPData', 1, function (u, ok) {
                    if (ok && u && u.uspString) out.us_privacy = u.uspString;
                    left--;
                    end();
                });
            } catch (e) {
                left--;
            }
        }
        setTimeout(function () {
            left = 0;
            end();
        }, 500);
        end();
    }

    // Starts the MRC display viewability clock for one ad frame.
    function watch(el, url) {
        if (!url) return;
        if (!('IntersectionObserver' in w)) return;
        var timer = 0, seen = false;
        var io = new IntersectionObserver(function (es) {
            var e = es[es.length - 1];
            var vis = e.isIntersecting && e.intersectionRatio >= 0.5 && !d.hidden;
            if (vis && !timer && !seen) {
                timer = setTimeout(function () {
                    seen = true;
                    io.disconnect();
                    ping(url);
                }, 1000);
            } else if (!vis && timer) {
                clearTimeout(timer);
                timer = 0;
            }
        }, {threshold: [0, 0.5, 1]});
        io.observe(el);
        d.addEventListener('visibilitychange', function () {
            if (d.hidden && timer) {
                clearTimeout(timer);
                timer = 0;
            } else if (!d.hidden && !seen) {
                io.unobserve(el);
                io.observe(el);
            }
        });
    }

    function collapse(div) {
        div.style.display = 'none';
        div.setAttribute('data-ap-state', 'empty');
    }

    function render(div, ad) {
        var c = ad.creative || {}, f = d.createElement('iframe');
        var wd = c.width || 300, ht = c.height || 250, doc;
        f.width = wd;
        f.height = ht;
        f.title = 'Advertisement';
        f.setAttribute('scrolling', 'no');
        f.setAttribute('frameborder', '0');
        f.style.cssText = 'border:0;display:block;overflow:hidden;width:' + wd + 'px;height:' +
            ht + 'px';
        if (c.type == 'html') {
            f.setAttribute('sandbox', 'allow-scripts allow-popups allow-popups-to-escape-sandbox');
            doc = c.html || '';
        } else if (c.url) {
            f.setAttribute('sandbox', 'allow-popups allow-popups-to-escape-sandbox');
            doc = '<style>html,body{margin:0;padding:0;overflow:hidden}img{display:block;' +
                'border:0}</style><a href="' + esc(ad.click_url || '#') +
                '" target="_blank" rel="noopener"><img src="' + esc(c.url) + '" width="' + wd +
                '" height="' + ht + '" alt="Advertisement"></a>';
        } else {
            return false;
        }
        f.srcdoc = doc;
        f.onload = function () {
            if (f.apDone) return;
            f.apDone = 1;
            ping(ad.impression_url);
            watch(f, ad.view_url);
        };
        div.appendChild(f);
        return true;
    }

    function fill(batch, res) {
        var dec = (res && res.decisions) || {};
        if (res && res.user && res.user.key) A.user = res.user.key;
        for (var i = 0; i < batch.length; i++) {
            var b = batch[i], ads = dec[b.key], n = 0;
            b.div.setAttribute('data-ap-state', 'done');
            for (var j = 0; ads && j < ads.length; j++) {
                if (ads[j] && render(b.div, ads[j])) n++;
            }
            if (!n) collapse(b.div);
        }
    }

    A.scan = function () {
        var els = d.querySelectorAll('[data-ap-placement]:not([data-ap-state])');
        var batch = [], req = {placements: []}, kw = {}, kws = [];
        for (var i = 0; i < els.length && batch.length < 20; i++) {
            var el = els[i], id = parseInt(el.getAttribute('data-ap-placement'), 10);
            el.setAttribute('data-ap-state', 'pending');
            if (!(id > 0)) {
                collapse(el);
                continue;
            }
            var key = el.id || ('ap-' + (++A.n));
            var cnt = parseInt(el.getAttribute('data-ap-count'), 10) || 1;
            batch.push({div: el, key: key});
            req.placements.push({id: id, div: key, count: cnt});
            var words = (el.getAttribute('data-ap-keywords') || '').split(',');
            for (var k = 0; k < words.length; k++) {
                var t = words[k].trim();
                if (t && !kw[t]) {
                    kw[t] = 1;
                    kws.push(t);
                }
            }
            A.user = A.user || el.getAttribute('data-ap-user') || undefined;
        }
        if (!batch.length) return;
        req.keywords = kws;
        req.url = location.href;
        req.referrer = d.referrer;
        if (A.user) req.user = {key: A.user};
        consent(function (c) {
            for (var k in c) {
                req.consent = c;
                break;
            }
            var same = A.base == location.origin;
            fetch(A.base + '/v1/decision', {
                method: 'POST',
                credentials: 'include',
                headers: {'Content-Type': same ? 'application/json' : 'text/plain'},
                body: JSON.stringify(req)
            }).then(function (r) {
                return r.ok ? r.json() : null;
            }).then(function (res) {
                fill(batch, res);
            }, function () {
                fill(batch, null);
            });
        });
        if (els.length > batch.length) setTimeout(A.scan, 0);
    };

    A.scan();
    if (d.readyState == 'loading') d.addEventListener('DOMContentLoaded', A.scan);
})(window, document);
