// Prometheus text parsing and the overview's derived figures (rates between two scrapes, p99 from
// histogram buckets). Pure: unit-tested in test/prom.test.ts.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let lm: RegExpExecArray | null;
      while ((lm = re.exec(m[3]))) labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    }
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (!Number.isNaN(v)) out.push({name: m[1], labels, value: v});
  }
  return out;
}

export type Filter = (l: Record<string, string>) => boolean;

export function sum(samples: Sample[], name: string | RegExp, filter: Filter = () => true): number | null {
  let total = 0, found = false;
  for (const s of samples) {
    if ((typeof name === 'string' ? s.name === name : name.test(s.name)) && filter(s.labels)) {
      total += s.value;
      found = true;
    }
  }
  return found ? total : null;
}

/** Quantile q of a histogram (bucket counts summed over series by `le`), linear within a bucket. */
export function quantileFromBuckets(buckets: Map<number, number>, q: number): number | null {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  if (!les.length) return null;
  const total = buckets.get(Infinity) ?? buckets.get(les[les.length - 1]) ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const le of les) {
    const c = buckets.get(le) ?? 0;
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = c - prevCount;
      return inBucket > 0 ? prevLe + ((le - prevLe) * (rank - prevCount)) / inBucket : le;
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

export function buckets(samples: Sample[], name: string, filter: Filter = () => true): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== name || !filter(s.labels) || s.labels.le === undefined) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    m.set(le, (m.get(le) ?? 0) + s.value);
  }
  return m;
}

export function diffBuckets(cur: Map<number, number>, prev: Map<number, number> | null): Map<number, number> {
  if (!prev) return cur;
  const m = new Map<number, number>();
  for (const [le, c] of cur) m.set(le, Math.max(0, c - (prev.get(le) ?? 0)));
  return m;
}

/** The overview's figures from one scrape (and the previous one, for rates). */
export interface Overview {
  at: number;
  requests: number | null; // data-plane requests, total
  decisions: number | null;
  filled: number | null;
  impressions: number | null;
  clicks: number | null;
  rtbRequests: number | null;
  rtbBids: number | null;
  rtbWins: number | null;
  latency: Map<number, number>;
}

const data: Filter = (l) => l.server === 'data';
const route = (re: RegExp, ok = true): Filter => (l) =>
  l.server === 'data' && re.test(l.route ?? '') && (!ok || /^2/.test(l.status ?? ''));

export function overviewFrom(samples: Sample[], at: number): Overview {
  // ap_events_accepted_total{type=imp|view|click|conv} (src/events/ap_beacon.c); RTB: our seat's
  // ap_rtb_bids/wins_total plus outside partners' ap_rtb_partner_bids/wins_total (src/rtb/ap_rtb.c)
  const evt = (type: string) => sum(samples, 'ap_events_accepted_total', (l) => l.type === type);
  const add = (...xs: (number | null)[]) => (xs.every((x) => x === null) ? null : xs.reduce<number>((a, x) => a + (x ?? 0), 0));
  return {
    at,
    requests: sum(samples, 'adplatform_http_requests_total', data),
    decisions: sum(samples, 'adplatform_http_requests_total', route(/^\/v1\/(decision|ad)$/, false)),
    filled: sum(samples, 'adplatform_http_requests_total', (l) => l.server === 'data' && /^\/v1\/(decision|ad)$/.test(l.route ?? '') && l.status === '200'),
    impressions: evt('imp'),
    clicks: evt('click'),
    rtbRequests: add(sum(samples, 'ap_rtb_auctions_total'), sum(samples, 'ap_rtb_bidder_requests_total')),
    rtbBids: add(sum(samples, 'ap_rtb_bids_total'), sum(samples, 'ap_rtb_partner_bids_total')),
    rtbWins: add(sum(samples, 'ap_rtb_wins_total'), sum(samples, 'ap_rtb_partner_wins_total')),
    latency: buckets(samples, 'adplatform_http_request_duration_seconds_bucket', data),
  };
}

/** The `partner` label of a demand partner's adplatform_partner_* series (src/net/ap_http_client.h:
 * the outbound client's target id, derived from the partner id in src/rtb/ap_rtb_partners.c). */
export function partnerTarget(id: number): string {
  return String(id > 0 ? ((id - 1) % 1023) + 1 : 1);
}

export function rate(cur: number | null, prev: number | null, seconds: number): number | null {
  if (cur === null || prev === null || seconds <= 0) return null;
  return Math.max(0, cur - prev) / seconds;
}

export function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b <= 0 ? null : a / b;
}
