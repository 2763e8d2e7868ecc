// The broker console: a single page over the JSON API at /api/v1 (docs/console.md).
//
// Nothing here runs unless the page is open and visible: the current view polls the API on a
// timer that stops when the tab is hidden or another view opens, and rates and histories are
// computed here from the counters each poll returns. The server keeps nothing for the page.
'use strict';
(() => {
  // ---------- small helpers ----------

  const $ = (sel, root = document) => root.querySelector(sel);

  /** Builds an element; every text goes in as text (never parsed as HTML). */
  function h(tag, attrs, ...kids) {
    const el = document.createElementNS(
      tag === 'svg' || tag === 'path' || tag === 'polyline' ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'value' && 'value' in el) el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, kids);
    return el;
  }

  /** Appends children: nested arrays are flattened, null, undefined and false skipped. */
  function append(el, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) kid.forEach((k) => append(el, k));
    else el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }

  /** Replaces an element's children (as `append` takes them). */
  function fill(el, ...kids) {
    el.replaceChildren();
    append(el, kids);
  }

  /** Calls the API; resolves to the JSON answer, rejects with the API's error message. */
  async function api(path, options = {}) {
    const init = { method: options.method || 'GET', headers: {} };
    if (options.body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    const resp = await fetch('/api/v1' + path, init);
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!resp.ok) throw new Error((body && body.error) || `HTTP ${resp.status}: ${text.slice(0, 200)}`);
    return body;
  }

  const enc = encodeURIComponent;
  const fmtNum = (n) => (n === null || n === undefined) ? '–' : Number(n).toLocaleString('en-US');
  function fmtBytes(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0; let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }
  const fmtRate = (r) => (r === null || r === undefined) ? '–' : (r >= 100 ? Math.round(r).toLocaleString('en-US') : r.toFixed(1));
  const fmtTime = (ms) => new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC');

  /** A small SVG line chart of `values` (the newest last). */
  function sparkline(values, cls = 'spark', w = 90, hgt = 22) {
    const svg = h('svg', { class: cls, viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', role: 'img',
                          'aria-label': values.length ? `last ${fmtRate(values[values.length - 1])}` : 'no data yet' });
    if (values.length < 2) return svg;
    const max = Math.max(...values, 1e-9);
    const step = w / (values.length - 1);
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 1 - (v / max) * (hgt - 3)).toFixed(1)}`);
    svg.append(h('path', { class: 'area', d: `M0,${hgt} L${pts.join(' L')} L${w},${hgt} Z` }));
    svg.append(h('polyline', { class: 'line', points: pts.join(' ') }));
    return svg;
  }

  /** Rates per second from counters sampled at each poll, with a short history each. */
  const rates = {
    prev: new Map(), hist: new Map(),
    push(key, counter, nowMs) {
      const p = this.prev.get(key);
      this.prev.set(key, { v: counter, t: nowMs });
      if (!p || nowMs <= p.t) return null;
      const r = Math.max(0, (counter - p.v) * 1000 / (nowMs - p.t));
      this.record(key, r);
      return r;
    },
    record(key, value) {
      const a = this.hist.get(key) || [];
      a.push(value);
      if (a.length > 90) a.shift();
      this.hist.set(key, a);
    },
    history(key) { return this.hist.get(key) || []; },
    last(key) { const a = this.history(key); return a.length ? a[a.length - 1] : null; },
  };

  function toast(message, bad = false) {
    const t = h('div', { class: 'toast' + (bad ? ' bad' : ''), 'data-test': bad ? 'toast-error' : 'toast' }, message);
    $('#toasts').append(t);
    setTimeout(() => t.remove(), bad ? 9000 : 5000);
  }

  /** Asks before a destructive action; with `word`, the user must type it. Resolves true to go on. */
  function confirmAction({ title, text, word, ok = 'Confirm' }) {
    const d = $('#confirm');
    $('#confirm-title').textContent = title;
    $('#confirm-text').textContent = text;
    $('#confirm-ok').textContent = ok;
    const input = $('#confirm-input');
    input.value = '';
    $('#confirm-type-label').hidden = !word;
    $('#confirm-word').textContent = word || '';
    const okBtn = $('#confirm-ok');
    okBtn.disabled = !!word;
    input.oninput = () => { okBtn.disabled = input.value !== word; };
    return new Promise((resolve) => {
      d.onclose = () => resolve(d.returnValue === 'ok' && (!word || input.value === word));
      d.returnValue = '';
      d.showModal();
      (word ? input : okBtn).focus();
    });
  }

  const table = (cols, rows, attrs = {}) => h('div', { class: 'table-wrap scroll' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { class: c.num ? 'num' : (c.narrow ? 'hide-narrow' : null) }, c.label)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'Nothing yet.')))));
  const card = (label, value, test) => h('div', { class: 'card' }, h('div', { class: 'label' }, label),
    h('div', { class: 'value', 'data-test': test }, value));
  const errorBox = (e) => h('div', { class: 'error-box', 'data-test': 'error' }, e.message || String(e));
  const kv = (text) => {
    const out = {};
    for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const i = line.indexOf('=');
      if (i < 1) throw new Error(`"${line}" is not KEY=VALUE`);
      out[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    return out;
  };

  // ---------- live refresh ----------

  let current = null; // { refresh, interval } of the open view
  let timer = null;
  let generation = 0;

  function setLive(state, why) {
    const el = $('#live');
    el.className = 'live' + (state === 'live' ? '' : ' ' + state);
    el.textContent = { live: '● live', paused: '❚❚ paused', manual: '○ on demand' }[state] || '● error';
    el.title = why || (state === 'live' ? 'Figures refresh while this page is visible' : 'Refreshing stops while the page is hidden');
  }

  function schedule() {
    clearTimeout(timer);
    if (!current || !current.refresh || document.hidden) return;
    timer = setTimeout(tick, current.interval || 2000);
  }

  async function tick() {
    const g = generation;
    if (!current || !current.refresh) return;
    try {
      await current.refresh();
      if (g === generation) setLive(current.refresh ? 'live' : 'paused');
    } catch (e) {
      if (g === generation) setLive('error', e.message);
    }
    if (g === generation) schedule();
  }

  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { clearTimeout(timer); setLive('paused'); } else { tick(); }
  });

  // ---------- views ----------

  function overviewView(root) {
    const body = h('div');
    root.append(h('h1', {}, 'Overview'), body);
    async function refresh() {
      const o = await api('/overview');
      const t = o.now_ms;
      const c = o.counters;
      const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
      const series = [
        ['produced', 'Produced records/s', c.appended_records],
        ['consumed', 'Consumed records/s (group commits)', c.committed_offsets],
        ['sqs', 'SQS requests/s', sum(c.sqs_requests)],
        ['kafka-in', 'Kafka bytes in/s', (c.bytes_received || {}).kafka || 0],
        ['kafka-out', 'Kafka bytes out/s', (c.bytes_sent || {}).kafka || 0],
      ];
      for (const [key, , v] of series) rates.push('overview:' + key, v, t);
      const s = o.store;
      fill(body,
        h('div', { class: 'cards' },
          card('Store', h('span', {}, s.kind + ' ', h('span', { class: 'badge ' + (s.healthy ? 'ok' : 'bad'), 'data-test': 'store-health' }, s.healthy ? 'healthy' : 'unhealthy')), 'store-kind'),
          card('Version', o.version, 'version'),
          card('Uptime', fmtDuration(o.uptime_ms), 'uptime'),
          card('Topics', fmtNum(o.totals.topics), 'total-topics'),
          card('Partitions', fmtNum(o.totals.partitions), 'total-partitions'),
          card('Records', fmtNum(o.totals.records) + (o.totals.partial ? '+' : ''), 'total-records'),
          card('Queues', fmtNum(o.totals.queues), 'total-queues'),
          card('Groups', `${fmtNum(o.totals.groups)} (${fmtNum(o.totals.live_groups)} live)`, 'total-groups')),
        s.error ? errorBox(new Error('Store: ' + s.error)) : null,
        h('h2', {}, 'Throughput'),
        h('div', { class: 'charts' }, series.map(([key, label]) => {
          const hist = rates.history('overview:' + key);
          const last = rates.last('overview:' + key);
          return h('div', { class: 'card chart', 'data-test': 'chart-' + key },
            h('div', { class: 'label' }, label),
            h('div', { class: 'value' }, key.startsWith('kafka') ? (last === null ? '–' : fmtBytes(last) + '/s') : fmtRate(last)),
            sparkline(hist, 'big', 300, 60));
        })),
        h('h2', {}, 'Brokers'),
        table([{ label: 'Node' }, { label: 'State' }, { label: 'Kafka' }, { label: 'Advertised', narrow: true }, { label: 'HTTP' }],
          o.brokers.map((b) => h('tr', {},
            h('td', {}, b.node_id), h('td', {}, h('span', { class: 'badge ok' }, b.state)),
            h('td', { class: 'mono' }, b.kafka_addr), h('td', { class: 'mono hide-narrow' }, b.advertised_addr),
            h('td', { class: 'mono' }, b.http_addr)))));
    }
    return { refresh, interval: 2000 };
  }

  function topicsView(root) {
    const list = h('div');
    const form = h('form', { class: 'inline', id: 'create-topic' },
      h('label', {}, 'Name', h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]+', placeholder: 'orders' })),
      h('label', {}, 'Partitions', h('input', { name: 'partitions', type: 'number', min: 1, value: 1 })),
      h('label', { style: 'flex:1;min-width:14rem' }, 'Settings (KEY=VALUE per line)', h('textarea', { name: 'configs', rows: 1, placeholder: 'retention.ms=86400000' })),
      h('button', { type: 'submit' }, 'Create topic'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      try {
        const body = { name: f.get('name').trim(), partitions: Number(f.get('partitions') || 1), configs: kv(f.get('configs') || '') };
        await api('/topics', { method: 'POST', body });
        toast(`Created topic ${body.name}`);
        form.reset();
        await refresh();
      } catch (e) { toast(e.message, true); }
    });
    const filter = h('input', { type: 'search', placeholder: 'Filter topics', 'aria-label': 'Filter topics' });
    root.append(h('h1', {}, 'Topics'), h('details', {}, h('summary', {}, 'Create a topic'), h('div', { class: 'panel' }, form)),
      h('div', { class: 'toolbar' }, filter), list);
    let last = [];
    function render() {
      const q = filter.value.trim().toLowerCase();
      fill(list, table(
        [{ label: 'Topic' }, { label: 'Partitions', num: true }, { label: 'Records', num: true }, { label: 'Size', num: true },
         { label: 'Produced/s', num: true }, { label: '' }],
        last.filter((t) => !q || t.topic.toLowerCase().includes(q)).map((t) => h('tr', { 'data-topic': t.topic },
          h('td', {}, h('a', { href: '#/topics/' + enc(t.topic) }, t.topic), t.queue ? [' ', h('span', { class: 'badge info' }, 'queue')] : null),
          h('td', { class: 'num' }, t.partitions),
          h('td', { class: 'num records' }, fmtNum(t.records)),
          h('td', { class: 'num' }, fmtBytes(t.bytes)),
          h('td', { class: 'num' }, fmtRate(rates.last('topic:' + t.topic))),
          h('td', {}, sparkline(rates.history('topic:' + t.topic)))))));
    }
    filter.addEventListener('input', render);
    async function refresh() {
      last = await api('/topics');
      const now = Date.now();
      for (const t of last) rates.push('topic:' + t.topic, t.appended_records, now);
      render();
    }
    return { refresh, interval: 3000 };
  }

  function topicView(root, name) {
    const head = h('h1', {}, 'Topic ', h('code', {}, name));
    const body = h('div');
    const configs = h('div');
    const del = h('button', { class: 'danger', id: 'delete-topic', onclick: async () => {
      const ok = await confirmAction({ title: `Delete topic ${name}?`, text: 'Every record, committed offset and lease of this topic is removed. This cannot be undone.', word: name, ok: 'Delete topic' });
      if (!ok) return;
      try { await api('/topics/' + enc(name), { method: 'DELETE' }); toast(`Deleted topic ${name}`); location.hash = '#/topics'; }
      catch (e) { toast(e.message, true); }
    } }, 'Delete topic');
    root.append(head, h('div', { class: 'toolbar' },
      h('a', { href: `#/messages?topic=${enc(name)}` }, h('button', { class: 'secondary', type: 'button' }, 'Browse messages')), del), body,
      h('h2', {}, 'Settings'), configs);
    const setForm = h('form', { class: 'inline', id: 'alter-config' },
      h('label', {}, 'Setting', h('input', { name: 'key', required: true, placeholder: 'retention.ms' })),
      h('label', {}, 'Value', h('input', { name: 'value', required: true, placeholder: '86400000' })),
      h('button', { type: 'submit' }, 'Set'));
    setForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(setForm);
      const key = f.get('key').trim();
      const ok = await confirmAction({ title: `Change ${key}?`, text: `Set ${key} = ${f.get('value')} on topic ${name}. Retention settings can remove records at the next retention check.`, ok: 'Change setting' });
      if (!ok) return;
      try { await api(`/topics/${enc(name)}/configs`, { method: 'POST', body: { set: { [key]: f.get('value') } } }); toast(`Set ${key} on ${name}`); setForm.reset(); loadConfigs(); }
      catch (e) { toast(e.message, true); }
    });
    async function loadConfigs() {
      try {
        const list = await api(`/topics/${enc(name)}/configs`);
        fill(configs, h('div', { class: 'panel' }, setForm), table([{ label: 'Setting' }, { label: 'Value' }, { label: 'Source' }, { label: '' }],
          list.map((c) => h('tr', { 'data-config': c.name },
            h('td', { class: 'mono' }, c.name), h('td', { class: 'mono value' }, c.value === null ? '–' : c.value),
            h('td', {}, c.source === 'topic' ? h('span', { class: 'badge info' }, 'set') : h('span', { class: 'muted' }, c.source)),
            h('td', {}, c.source === 'topic' ? h('button', { class: 'secondary', onclick: async () => {
              if (!await confirmAction({ title: `Reset ${c.name}?`, text: `Back to the default on topic ${name}.`, ok: 'Reset' })) return;
              try { await api(`/topics/${enc(name)}/configs`, { method: 'POST', body: { delete: [c.name] } }); toast(`Reset ${c.name}`); loadConfigs(); }
              catch (e) { toast(e.message, true); }
            } }, 'Reset') : null)))));
      } catch (e) { fill(configs, errorBox(e)); }
    }
    loadConfigs();
    async function refresh() {
      const t = await api('/topics/' + enc(name));
      const now = Date.now();
      for (const p of t.partitions) rates.push(`part:${name}/${p.partition}`, p.end, now);
      const total = t.partitions.reduce((a, p) => a + p.records, 0);
      const size = t.partitions.some((p) => p.bytes !== null) ? t.partitions.reduce((a, p) => a + (p.bytes || 0), 0) : null;
      fill(body,
        h('div', { class: 'cards' },
          card('Partitions', t.partitions.length, 'partitions'), card('Records', fmtNum(total), 'records'),
          card('Size', fmtBytes(size), 'size'), card('Retention', t.config.retention_ms ? fmtDuration(t.config.retention_ms) : 'forever', 'retention'),
          card('Kind', t.queue ? 'SQS queue' : 'Kafka topic', 'kind')),
        h('h2', {}, 'Partitions'),
        table([{ label: 'Partition', num: true }, { label: 'Log start', num: true }, { label: 'End', num: true }, { label: 'Records', num: true },
               { label: 'Size', num: true }, { label: 'Records/s', num: true }, { label: '' }],
          t.partitions.map((p) => h('tr', { 'data-partition': p.partition },
            h('td', { class: 'num' }, h('a', { href: `#/messages?topic=${enc(name)}&partition=${p.partition}` }, p.partition)),
            h('td', { class: 'num' }, fmtNum(p.log_start)), h('td', { class: 'num end' }, fmtNum(p.end)),
            h('td', { class: 'num' }, fmtNum(p.records)), h('td', { class: 'num' }, fmtBytes(p.bytes)),
            h('td', { class: 'num' }, fmtRate(rates.last(`part:${name}/${p.partition}`))),
            h('td', {}, sparkline(rates.history(`part:${name}/${p.partition}`)))))));
    }
    return { refresh, interval: 2000 };
  }

  // How the message browser shows values: text, json or hex.
  let valueFormat = 'text';

  function decodeBase64(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function hexDump(bytes) {
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const chunk = Array.from(bytes.slice(i, i + 16));
      const hex = chunk.map((b) => b.toString(16).padStart(2, '0')).join(' ');
      const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
      lines.push(i.toString(16).padStart(6, '0') + '  ' + hex.padEnd(48) + ' ' + ascii);
    }
    return lines.join('\n');
  }

  /** Short bytes (keys, header values) on one line: the text, or hex when not UTF-8. */
  function inlineBytes(shown) {
    if (!shown) return '(null)';
    if (shown.text !== null) return shown.text;
    return '0x' + Array.from(decodeBase64(shown.base64)).map((b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** A key or value as the chosen format; the note says when it falls back. */
  function showBytes(shown) {
    if (!shown) return { text: '(null)', note: '' };
    const cut = shown.truncated ? ` (first ${fmtBytes(64 * 1024)} of ${fmtBytes(shown.size)})` : '';
    if (valueFormat === 'hex' || shown.text === null) {
      return { text: hexDump(decodeBase64(shown.base64)), note: (shown.text === null && valueFormat !== 'hex' ? 'not UTF-8: shown as hex' : '') + cut };
    }
    if (valueFormat === 'json') {
      try { return { text: JSON.stringify(JSON.parse(shown.text), null, 2), note: cut }; }
      catch (e) { return { text: shown.text, note: 'not JSON: shown as text' + cut }; }
    }
    return { text: shown.text, note: cut };
  }

  function messagesView(root, _arg, params) {
    const state = {
      topic: params.get('topic') || '', partition: params.get('partition') || '0',
      offset: params.get('offset') || '', timestamp: params.get('timestamp') || '', key: params.get('key') || '', limit: params.get('limit') || '20',
    };
    const topicSel = h('select', { name: 'topic', id: 'browse-topic', required: true });
    const form = h('form', { class: 'inline', id: 'browse' },
      h('label', {}, 'Topic', topicSel),
      h('label', {}, 'Partition', h('input', { name: 'partition', type: 'number', min: 0, value: state.partition, id: 'browse-partition' })),
      h('label', {}, 'From offset', h('input', { name: 'offset', type: 'number', min: 0, value: state.offset, placeholder: 'newest', id: 'browse-offset' })),
      h('label', {}, 'Or from time', h('input', { name: 'timestamp', type: 'datetime-local', step: 1, id: 'browse-time' })),
      h('label', {}, 'Key', h('input', { name: 'key', value: state.key, placeholder: 'any', id: 'browse-key' })),
      h('label', {}, 'Limit', h('input', { name: 'limit', type: 'number', min: 1, max: 500, value: state.limit })),
      h('button', { type: 'submit', id: 'browse-go' }, 'Show'));
    if (state.timestamp) {
      const d = new Date(Number(state.timestamp));
      form.elements.timestamp.value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    }
    const formats = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Value format' },
      ['text', 'json', 'hex'].map((f) => h('button', { type: 'button', 'data-format': f, class: f === valueFormat ? 'on' : null, onclick: () => {
        valueFormat = f;
        formats.querySelectorAll('button').forEach((b) => b.classList.toggle('on', b.dataset.format === f));
        renderRecords();
      } }, f.toUpperCase())));
    const results = h('div', { id: 'records' });
    const produceForm = h('form', { id: 'produce' },
      h('div', { class: 'inline' },
        h('label', {}, 'Partition', h('input', { name: 'partition', type: 'number', min: 0, value: 0 })),
        h('label', {}, 'Key', h('input', { name: 'key', placeholder: '(none)', id: 'produce-key' }))),
      h('label', {}, 'Value', h('textarea', { name: 'value', rows: 4, id: 'produce-value', placeholder: '{"hello": "world"}' })),
      h('label', {}, 'Headers (KEY=VALUE per line)', h('textarea', { name: 'headers', rows: 2 })),
      h('p', {}, h('button', { type: 'submit', id: 'produce-go' }, 'Produce')));
    produceForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(produceForm);
      try {
        const headers = Object.entries(kv(f.get('headers') || '')).map(([key, value]) => ({ key, value }));
        const body = { partition: Number(f.get('partition') || 0), value: f.get('value'), headers };
        if (f.get('key')) body.key = f.get('key');
        const r = await api(`/topics/${enc(topicSel.value)}/records`, { method: 'POST', body });
        toast(`Produced to ${r.topic} partition ${r.partition} at offset ${r.offset}`);
        await load();
      } catch (e) { toast(e.message, true); }
    });
    root.append(h('h1', {}, 'Messages'), h('div', { class: 'panel' }, form, h('div', { class: 'toolbar' }, 'Show values as ', formats)),
      results, h('details', {}, h('summary', {}, 'Produce a test message'), h('div', { class: 'panel' }, produceForm)));
    let page = null;
    function renderRecords() {
      if (!page) return;
      const nav = h('div', { class: 'toolbar' },
        h('span', { class: 'muted', 'data-test': 'range' }, `Partition ${page.partition}: offsets ${fmtNum(page.log_start)} to ${fmtNum(page.end)}; showing from ${fmtNum(page.from)}`),
        h('button', { class: 'secondary', type: 'button', disabled: page.from <= page.log_start, onclick: () => go({ offset: Math.max(page.log_start, page.from - Number(state.limit)) }) }, '← Older'),
        h('button', { class: 'secondary', type: 'button', disabled: page.next >= page.end, onclick: () => go({ offset: page.next }) }, 'Newer →'),
        h('button', { class: 'secondary', type: 'button', onclick: () => go({ offset: '' }) }, 'Newest'));
      fill(results, nav, page.records.length ? page.records.map((r) => {
        const v = showBytes(r.value);
        return h('div', { class: 'record', 'data-offset': r.offset },
          h('div', { class: 'meta' },
            h('span', {}, 'offset ', h('b', {}, r.offset)),
            h('span', {}, 'time ', h('b', {}, fmtTime(r.timestamp_ms))),
            h('span', {}, 'key ', h('b', { class: 'key' }, inlineBytes(r.key))),
            h('span', {}, 'size ', h('b', {}, fmtBytes(r.size)))),
          r.headers.length ? h('div', { class: 'headers' }, 'headers: ', r.headers.map((hd, i) => h('span', {}, i ? ', ' : '', h('code', {}, hd.key), '=', h('code', {}, inlineBytes(hd.value))))) : null,
          v.note ? h('div', { class: 'muted' }, v.note) : null,
          h('pre', { class: 'value' }, v.text));
      }) : h('p', { class: 'muted' }, state.key ? `No record with key "${state.key}" between offsets ${page.from} and ${page.next}.` : 'No records here.'),
      state.key && page.next < page.end ? h('button', { class: 'secondary', type: 'button', onclick: () => go({ offset: page.next }) }, 'Search further') : null);
    }
    function go(changes) {
      Object.assign(state, changes);
      if ('offset' in changes && !('timestamp' in changes)) state.timestamp = '';
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(state)) if (v !== '' && v !== null) p.set(k, v);
      history.replaceState(null, '', '#/messages?' + p.toString());
      load();
    }
    async function load() {
      if (!topicSel.value) return;
      const q = new URLSearchParams({ limit: state.limit || '20' });
      if (state.offset !== '') q.set('offset', state.offset);
      else if (state.timestamp !== '') q.set('timestamp', state.timestamp);
      if (state.key) q.set('key', state.key);
      try {
        page = await api(`/topics/${enc(topicSel.value)}/partitions/${enc(state.partition || 0)}/records?${q}`);
        state.topic = topicSel.value;
        renderRecords();
      } catch (e) { fill(results, errorBox(e)); }
    }
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const ts = f.get('timestamp');
      const offset = f.get('offset') || '';
      go({
        topic: topicSel.value, partition: f.get('partition') || '0', key: f.get('key') || '', limit: f.get('limit') || '20',
        offset, timestamp: !offset && ts ? String(new Date(ts).getTime()) : '',
      });
    });
    api('/topics').then((topics) => {
      fill(topicSel, ...topics.map((t) => h('option', { value: t.topic, selected: t.topic === state.topic }, t.topic)));
      if (!topics.length) fill(results, h('p', { class: 'muted' }, 'No topics yet.'));
      else { if (!state.topic) state.topic = topicSel.value; load(); }
    }).catch((e) => fill(results, errorBox(e)));
    return { refresh: null };
  }

  /** Total lag per group over time, kept while the page is open. */
  const lagHistory = new Map();
  function recordLag(group, lag) {
    const a = lagHistory.get(group) || [];
    a.push(lag);
    if (a.length > 90) a.shift();
    lagHistory.set(group, a);
  }

  function groupsView(root) {
    const list = h('div');
    root.append(h('h1', {}, 'Consumer groups'), list);
    async function refresh() {
      const groups = await api('/groups');
      for (const g of groups) recordLag(g.group, g.lag);
      fill(list, table(
        [{ label: 'Group' }, { label: 'State' }, { label: 'Members', num: true }, { label: 'Topics', narrow: true }, { label: 'Lag', num: true }, { label: 'Lag over time' }],
        groups.map((g) => h('tr', { 'data-group': g.group },
          h('td', {}, h('a', { href: '#/groups/' + enc(g.group) }, g.group)),
          h('td', {}, h('span', { class: 'badge ' + (g.state === 'Stable' ? 'ok' : g.state === 'Empty' ? 'info' : 'warn') }, g.state)),
          h('td', { class: 'num' }, g.members),
          h('td', { class: 'hide-narrow' }, g.topics.join(', ')),
          h('td', { class: 'num lag' }, fmtNum(g.lag)),
          h('td', {}, sparkline(lagHistory.get(g.group) || []))))));
    }
    return { refresh, interval: 2000 };
  }

  function groupView(root, name) {
    const body = h('div');
    const topicIn = h('input', { name: 'topic', id: 'reset-topic', required: true, list: 'group-topics', placeholder: 'topic' });
    const toSel = h('select', { name: 'to', id: 'reset-to' },
      ['earliest', 'latest', 'timestamp', 'offset'].map((t) => h('option', { value: t }, t)));
    const valueIn = h('input', { name: 'value', id: 'reset-value', placeholder: 'ms or offset', disabled: true });
    toSel.addEventListener('change', () => { valueIn.disabled = !['timestamp', 'offset'].includes(toSel.value); });
    const plan = h('div', { id: 'reset-plan' });
    const exec = h('button', { type: 'button', class: 'danger', id: 'reset-execute', disabled: true }, 'Reset offsets');
    const datalist = h('datalist', { id: 'group-topics' });
    const resetForm = h('form', { class: 'inline', id: 'reset' },
      h('label', {}, 'Topic', topicIn, datalist), h('label', {}, 'To', toSel), h('label', {}, 'Value', valueIn),
      h('button', { type: 'submit', class: 'secondary', id: 'reset-preview' }, 'Preview (dry run)'), exec);
    const request = (execute) => {
      const body = { topic: topicIn.value.trim(), to: toSel.value, execute };
      if (toSel.value === 'timestamp') body.timestamp = Number(valueIn.value);
      if (toSel.value === 'offset') body.offset = Number(valueIn.value);
      return api(`/groups/${enc(name)}/reset-offsets`, { method: 'POST', body });
    };
    const showPlan = (r) => fill(plan,
      h('p', { class: 'muted' }, r.executed ? `Reset done on topic ${r.topic}:` : `Dry run: group ${r.group} on topic ${r.topic} would move to:`),
      table([{ label: 'Partition', num: true }, { label: 'Current', num: true }, { label: 'New', num: true }],
        r.offsets.map((o) => h('tr', { 'data-partition': o.partition },
          h('td', { class: 'num' }, o.partition), h('td', { class: 'num' }, o.current_offset === null ? '–' : fmtNum(o.current_offset)),
          h('td', { class: 'num new' }, fmtNum(o.new_offset))))));
    resetForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try { showPlan(await request(false)); exec.disabled = false; }
      catch (e) { fill(plan, errorBox(e)); exec.disabled = true; }
    });
    [topicIn, toSel, valueIn].forEach((el) => el.addEventListener('input', () => { exec.disabled = true; }));
    exec.addEventListener('click', async () => {
      const ok = await confirmAction({ title: `Reset offsets of ${name}?`, text: `The committed offsets of group ${name} on topic ${topicIn.value} move as previewed; its consumers will re-read or skip records.`, word: name, ok: 'Reset offsets' });
      if (!ok) return;
      try { showPlan(await request(true)); exec.disabled = true; toast(`Reset the offsets of ${name}`); await refresh(); }
      catch (e) { toast(e.message, true); }
    });
    root.append(h('h1', {}, 'Group ', h('code', {}, name)), body,
      h('h2', {}, 'Reset offsets'), h('div', { class: 'panel' },
        h('p', { class: 'muted' }, 'Only while the group has no members: stop its consumers first. Preview first; the reset commits the previewed plan again, computed anew.'),
        resetForm, plan));
    async function refresh() {
      const g = await api('/groups/' + enc(name));
      recordLag(name, g.lag);
      const topics = [...new Set(g.partitions.map((p) => p.topic))];
      fill(datalist, ...topics.map((t) => h('option', { value: t })));
      if (!topicIn.value && topics.length === 1) topicIn.value = topics[0];
      fill(body,
        h('div', { class: 'cards' },
          card('State', h('span', { class: 'badge ' + (g.state === 'Stable' ? 'ok' : 'info') }, g.state), 'state'),
          card('Members', g.members.length, 'members'), card('Total lag', fmtNum(g.lag), 'lag'),
          card('Protocol', g.protocol || '–', 'protocol')),
        h('div', { class: 'card chart', 'data-test': 'chart-lag' }, h('div', { class: 'label' }, 'Lag over time (since this page opened)'),
          sparkline(lagHistory.get(name) || [], 'big', 300, 60)),
        h('h2', {}, 'Partitions'),
        table([{ label: 'Topic' }, { label: 'Partition', num: true }, { label: 'Committed', num: true }, { label: 'End', num: true },
               { label: 'Lag', num: true }, { label: 'Member', narrow: true }],
          g.partitions.map((p) => h('tr', { 'data-partition': `${p.topic}/${p.partition}` },
            h('td', {}, h('a', { href: '#/topics/' + enc(p.topic) }, p.topic)), h('td', { class: 'num' }, p.partition),
            h('td', { class: 'num committed' }, p.committed === null ? '–' : fmtNum(p.committed)),
            h('td', { class: 'num' }, fmtNum(p.end)), h('td', { class: 'num lag' }, fmtNum(p.lag)),
            h('td', { class: 'mono hide-narrow' }, p.member || '–')))),
        h('h2', {}, 'Members'),
        table([{ label: 'Member' }, { label: 'Client' }, { label: 'Host', narrow: true }, { label: 'Assigned' }],
          g.members.map((m) => h('tr', { 'data-member': m.member_id },
            h('td', { class: 'mono' }, m.member_id), h('td', {}, m.client_id), h('td', { class: 'hide-narrow' }, m.host),
            h('td', {}, m.assignments.map(([t, ps]) => `${t}: ${ps.join(', ')}`).join('; ') || '–')))));
    }
    return { refresh, interval: 2000 };
  }

  function queuesView(root) {
    const list = h('div');
    root.append(h('h1', {}, 'Queues'), list);
    async function refresh() {
      const queues = await api('/queues');
      for (const q of queues) rates.record('depth:' + q.queue, q.available);
      fill(list, table(
        [{ label: 'Queue' }, { label: 'Available', num: true }, { label: 'In flight', num: true }, { label: 'Delayed', num: true },
         { label: 'Dead-lettered', num: true }, { label: 'Oldest', num: true }, { label: 'Depth' }, { label: 'Dead-letter queue', narrow: true }, { label: '' }],
        queues.map((q) => h('tr', { 'data-queue': q.queue },
          h('td', {}, h('a', { href: '#/topics/' + enc(q.queue) }, q.queue), q.fifo ? [' ', h('span', { class: 'badge info' }, 'FIFO')] : null,
            q.sources.length ? [' ', h('span', { class: 'badge warn', title: 'Dead-letter queue of ' + q.sources.join(', ') }, 'DLQ')] : null),
          h('td', { class: 'num available' }, fmtNum(q.available)), h('td', { class: 'num in-flight' }, fmtNum(q.in_flight)),
          h('td', { class: 'num delayed' }, fmtNum(q.delayed)), h('td', { class: 'num dead-lettered' }, fmtNum(q.dead_lettered)),
          h('td', { class: 'num oldest' }, fmtDuration(q.oldest_age_ms)),
          h('td', {}, sparkline(rates.history('depth:' + q.queue))),
          h('td', { class: 'hide-narrow' }, q.dead_letter_queue ? [h('a', { href: '#/topics/' + enc(q.dead_letter_queue) }, q.dead_letter_queue), ` after ${q.max_receive_count} receives`] : '–'),
          h('td', {}, q.sources.length ? h('button', { class: 'secondary redrive', type: 'button', disabled: q.available === 0, onclick: async () => {
            const ok = await confirmAction({ title: `Redrive ${q.queue}?`, text: `Move the ${fmtNum(q.available)} available messages of ${q.queue} back to the queues they came from (${q.sources.join(', ')}).`, ok: 'Redrive' });
            if (!ok) return;
            try { const r = await api(`/queues/${enc(q.queue)}/redrive`, { method: 'POST', body: {} }); toast(`Moved ${r.moved} messages` + (r.skipped ? `; ${r.skipped} left (no source queue)` : '')); await refresh(); }
            catch (e) { toast(e.message, true); }
          } }, 'Redrive') : null)))));
    }
    return { refresh, interval: 2000 };
  }

  function storeView(root, _arg, params) {
    const body = h('div');
    const topicSel = h('select', { id: 'store-topic' }, h('option', { value: '' }, 'all topics'));
    topicSel.addEventListener('change', () => refresh().catch((e) => fill(body, errorBox(e))));
    root.append(h('h1', {}, 'Store'), h('div', { class: 'toolbar' }, h('label', {}, 'Topic', topicSel)), body);
    api('/topics').then((ts) => {
      for (const t of ts) topicSel.append(h('option', { value: t.topic, selected: t.topic === params.get('topic') }, t.topic));
    }).catch(() => {});
    async function refresh() {
      const s = await api('/store' + (topicSel.value ? '?topic=' + enc(topicSel.value) : ''));
      const parts = s.report.partitions;
      const total = parts.reduce((a, p) => a + p.bytes, 0);
      const cell = (v, col) => {
        if (v === null) return '–';
        if (typeof v === 'number' && /bytes$/.test(col)) return fmtBytes(v);
        if (typeof v === 'number' && /timestamp_ms$/.test(col)) return fmtTime(v);
        if (typeof v === 'number' && /pct$/.test(col)) return v.toFixed(1) + ' %';
        return typeof v === 'number' ? fmtNum(v) : v;
      };
      fill(body,
        h('div', { class: 'cards' },
          card('Kind', s.kind, 'store-kind'),
          card('Health', h('span', { class: 'badge ' + (s.healthy ? 'ok' : 'bad') }, s.healthy ? 'healthy' : 'unhealthy'), 'store-health'),
          card('Partitions measured', fmtNum(parts.length), 'measured'),
          card(s.kind === 'postgres' ? 'Record bytes in tables' : 'Bytes on disk', fmtBytes(total), 'store-bytes'),
          card('Damaged batches found', fmtNum(s.corrupt_batches), 'corrupt')),
        s.error ? errorBox(new Error(s.error)) : null,
        s.report.tables.map((t) => [
          h('h2', {}, t.title), h('p', { class: 'muted' }, t.note),
          table(t.columns.map((c) => ({ label: c.replace(/_/g, ' ') })),
            t.rows.map((r) => h('tr', { 'data-table': t.title }, r.map((v, i) => h('td', { class: typeof v === 'number' ? 'num' : null }, cell(v, t.columns[i]))))))]),
        s.report.tables.length ? null : h('p', { class: 'muted' }, `The ${s.kind} store reports no tables.`));
    }
    return { refresh, interval: 5000 };
  }

  // ---------- routing ----------

  const views = {
    overview: overviewView, topics: topicsView, topic: topicView, messages: messagesView,
    groups: groupsView, group: groupView, queues: queuesView, store: storeView,
  };

  function route() {
    generation++;
    clearTimeout(timer);
    const hash = location.hash.replace(/^#\/?/, '') || 'overview';
    const [path, query] = hash.split('?');
    const parts = path.split('/').map(decodeURIComponent);
    let page = parts[0] || 'overview';
    const arg = parts.slice(1).join('/');
    if (arg && (page === 'topics' || page === 'groups')) page = page.slice(0, -1);
    const navPage = { topic: 'topics', group: 'groups' }[page] || page;
    document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === navPage));
    const root = $('#view');
    fill(root);
    const view = views[page];
    document.title = `${navPage[0].toUpperCase()}${navPage.slice(1)} · Broker console`;
    if (!view) { root.append(errorBox(new Error(`No page "${page}".`))); current = null; return; }
    current = view(root, arg, new URLSearchParams(query || ''));
    if (current.refresh) { tick(); } else { setLive('manual', 'This page reads when you ask'); }
  }

  window.addEventListener('hashchange', route);
  route();
})();
