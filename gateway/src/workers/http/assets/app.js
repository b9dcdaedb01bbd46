// packgate's local page: every pack live (server-sent events from
// /api/live), the pipeline's health, recent events and commands, history
// charts (inline SVG) and CSV downloads. No library, no build step.
//
// What the page shows is also written into data-* attributes (the pack
// cards' raw values, the charts' point counts, the live state), so a
// headless browser can read it back.
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  const state = {
    hello: null,
    packs: new Map(),
    // Server clock minus this browser's, from the last message.
    offsetMs: 0,
    range: 'hour',
    historyPack: null,
    historyTimer: null,
  };

  // ---- building blocks ----------------------------------------------

  function node(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svgNode(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function fixed(value, digits) {
    return typeof value === 'number' && isFinite(value) ? value.toFixed(digits) : '–';
  }

  function serverNow() {
    return Date.now() + state.offsetMs;
  }

  // The same compact ages as `packgate status`.
  function age(ms) {
    ms = Math.max(0, ms);
    const s = Math.floor(ms / 1000);
    if (s < 10) return (ms / 1000).toFixed(1) + ' s';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' m ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' m';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function bytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  function clockTime(ms) {
    return new Date(ms).toLocaleString();
  }

  function fillRows(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows.map((cells) => {
      const tr = node('tr');
      for (const cell of cells) {
        const td = node('td', cell.cls ? { class: cell.cls } : {}, cell.text === undefined ? cell : cell.text);
        if (cell.title) td.title = cell.title;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  // ---- the live stream ------------------------------------------------

  function setLive(what) {
    document.body.dataset.live = what;
    const badge = $('live-state');
    badge.textContent = what;
    badge.className = 'badge ' + what;
  }

  function connect() {
    const source = new EventSource('/api/live');
    source.addEventListener('hello', (e) => {
      state.hello = JSON.parse(e.data);
      $('version').textContent = state.hello.version;
      for (const id of state.hello.configured) {
        addHistoryPack(id);
        // A configured pack is shown before its first sample.
        const article = card(id);
        if (!article.dataset.seq) {
          article.dataset.state = 'waiting';
          article.querySelector('.age').textContent = 'no sample yet';
        }
      }
      $('banks-section').hidden = state.hello.banks.length === 0;
      setLive('live');
    });
    source.addEventListener('packs', (e) => {
      const message = JSON.parse(e.data);
      state.offsetMs = message.now_ms - Date.now();
      for (const pack of message.packs) {
        state.packs.set(pack.id, pack);
        drawPack(pack);
        addHistoryPack(pack.id);
      }
      summarise();
    });
    source.addEventListener('overview', (e) => {
      const overview = JSON.parse(e.data);
      if (overview.now_ms) drawOverview(overview);
    });
    source.onopen = () => setLive('live');
    // The browser reconnects by itself (after the server's retry delay).
    source.onerror = () => setLive('reconnecting');
  }

  // ---- packs ----------------------------------------------------------

  // A cell further than this from the pack's mean is amber, then red.
  const CELL_WARN_V = 0.010;
  const CELL_BAD_V = 0.030;

  function card(id) {
    let article = document.querySelector('article.pack[data-pack="' + CSS.escape(id) + '"]');
    if (article) return article;
    article = node('article', { class: 'pack card', 'data-pack': id });
    const head = node('header');
    head.append(node('h3', {}, id), node('span', { class: 'state' }), node('span', { class: 'age' }));
    const soc = node('div', { class: 'soc' });
    const bar = node('div', { class: 'soc-bar' });
    bar.appendChild(node('div', { class: 'soc-fill' }));
    soc.append(bar, node('span', { class: 'v-soc' }));
    const values = node('dl', { class: 'values' });
    for (const [key, label] of [['voltage', 'Voltage'], ['current', 'Current'], ['power', 'Power'],
      ['cells', 'Cells'], ['spread', 'Spread'], ['temps', 'Temperature'],
      ['soh', 'Health'], ['charge', 'Charge'], ['discharge', 'Discharge']]) {
      const pair = node('div');
      pair.append(node('dt', {}, label), node('dd', { class: 'v-' + key }));
      values.appendChild(pair);
    }
    const cells = svgNode('svg', { class: 'cells', viewBox: '0 0 320 70', preserveAspectRatio: 'none' });
    article.append(head, soc, values, cells, node('ul', { class: 'alarms' }));
    const list = $('packs');
    const after = [...list.children].find((c) => c.dataset.pack > id);
    list.insertBefore(article, after || null);
    $('packs-empty').hidden = true;
    return article;
  }

  function drawPack(p) {
    const article = card(p.id);
    const d = article.dataset;
    d.state = p.state;
    d.seq = p.seq;
    d.boot = p.boot;
    d.timestampMs = p.timestamp_ms;
    d.voltageV = p.voltage_v;
    d.currentA = p.current_a;
    d.socPct = p.soc_pct;
    d.updatedAt = Date.now();
    article.querySelector('.state').textContent = p.state;
    article.querySelector('.soc-fill').style.width = Math.max(0, Math.min(100, p.soc_pct)) + '%';
    article.querySelector('.v-soc').textContent = fixed(p.soc_pct, 1) + ' %';
    article.querySelector('.v-voltage').textContent = fixed(p.voltage_v, 2) + ' V';
    article.querySelector('.v-current').textContent = fixed(p.current_a, 2) + ' A';
    article.querySelector('.v-power').textContent = fixed(p.power_w, 0) + ' W';
    const has = p.cells_v.length > 0;
    article.querySelector('.v-cells').textContent = has
      ? fixed(p.min_cell_v, 3) + '–' + fixed(p.max_cell_v, 3) + ' V' : '–';
    article.querySelector('.v-spread').textContent = has
      ? Math.round((p.max_cell_v - p.min_cell_v) * 1000) + ' mV' : '–';
    const temps = article.querySelector('.v-temps');
    const t = p.temperatures_c;
    temps.textContent = t.length
      ? (t.length > 1 ? fixed(Math.min(...t), 1) + '–' : '') + fixed(Math.max(...t), 1) + ' °C' : '–';
    temps.title = t.map((c, i) => 'sensor ' + (i + 1) + ': ' + fixed(c, 1) + ' °C').join('\n');
    article.querySelector('.v-soh').textContent = p.soh_pct === null ? '–' : fixed(p.soh_pct, 0) + ' %';
    const switchText = (on) => (on ? 'allowed' : 'OFF');
    article.querySelector('.v-charge').textContent = switchText(p.charge_enabled);
    article.querySelector('.v-discharge').textContent = switchText(p.discharge_enabled);
    article.querySelector('.v-charge').classList.toggle('off', !p.charge_enabled);
    article.querySelector('.v-discharge').classList.toggle('off', !p.discharge_enabled);
    drawCells(article.querySelector('svg.cells'), p);
    const alarms = article.querySelector('.alarms');
    alarms.replaceChildren(...(p.alarms.length
      ? p.alarms.map((a) => node('li', { class: 'alarm' }, a.replace(/_/g, ' ')))
      : [node('li', { class: 'quiet' }, 'no alarms')]));
    d.alarms = p.alarms.join(',');
    tick();
  }

  // A bar per cell: its height the cell's voltage within ±50 mV of the
  // pack's mean, its colour its distance from the mean.
  function drawCells(svg, p) {
    const cells = p.cells_v;
    svg.replaceChildren();
    if (!cells.length) return;
    const mean = cells.reduce((a, b) => a + b, 0) / cells.length;
    const width = 320 / cells.length;
    cells.forEach((v, i) => {
      const dev = v - mean;
      const h = 10 + Math.max(0, Math.min(1, (dev + 0.05) / 0.1)) * 55;
      const cls = Math.abs(dev) > CELL_BAD_V ? 'bad' : Math.abs(dev) > CELL_WARN_V ? 'warn' : 'ok';
      const balancing = (p.balancing_mask >>> i) & 1 ? ' balancing' : '';
      const rect = svgNode('rect', {
        x: i * width + 1, y: 70 - h, width: Math.max(1, width - 2), height: h,
        class: 'cell ' + cls + balancing, 'data-v': v,
      });
      const title = svgNode('title');
      title.textContent = 'cell ' + (i + 1) + ': ' + v.toFixed(3) + ' V (' +
        (dev >= 0 ? '+' : '') + Math.round(dev * 1000) + ' mV)' + (balancing ? ', balancing' : '');
      rect.appendChild(title);
      svg.appendChild(rect);
    });
    svg.appendChild(svgNode('line', { x1: 0, x2: 320, y1: 42.5, y2: 42.5, class: 'mean' }));
  }

  // Ages, and packs whose samples stopped coming, once a second.
  function tick() {
    const now = serverNow();
    const staleAfter = state.hello ? state.hello.stale_after_ms : 3000;
    for (const article of document.querySelectorAll('article.pack')) {
      const d = article.dataset;
      if (!d.timestampMs) {
        article.className = 'pack card stale';
        article.querySelector('.state').textContent = d.state || '';
        continue;
      }
      const old = now - Number(d.timestampMs);
      article.querySelector('.age').textContent = age(old) + ' ago';
      const shown = old > staleAfter && d.state === 'online' ? 'stale' : d.state;
      article.querySelector('.state').textContent = shown;
      article.className = 'pack card ' + shown;
    }
    summarise();
  }

  function summarise() {
    const shown = [...document.querySelectorAll('article.pack')];
    const online = shown.filter((a) => a.classList.contains('online')).length;
    const alarmed = shown.filter((a) => a.dataset.alarms).length;
    document.body.dataset.packs = shown.length;
    $('summary').textContent = shown.length + ' packs, ' + online + ' online' +
      (alarmed ? ', ' + alarmed + ' with alarms' : '');
  }

  // ---- the pipeline, events, commands -----------------------------------

  function drawOverview(o) {
    const now = o.now_ms;
    const byName = Object.fromEntries(o.workers.map((w) => [w.name, w]));
    const counter = (w, name) => (w && w.counter && w.counter[0] === name ? w.counter[1] : null);
    const parts = [];
    const published = counter(byName.collect, 'samples_published');
    const stored = counter(byName.data, 'samples_stored');
    if (published !== null) parts.push(published + ' samples published');
    if (stored !== null) parts.push(stored + ' stored');
    for (const s of o.streams) {
      for (const c of s.consumers) {
        if (c.worker === 'data') parts.push('data lag ' + (c.lag === null ? c.state : c.lag));
      }
    }
    if (o.dead_letters !== null && o.dead_letters !== undefined) parts.push(o.dead_letters + ' dead letters');
    parts.push(o.cloud.enabled
      ? 'cloud ' + (o.cloud.up === null ? 'unknown' : o.cloud.up ? 'up' : 'DOWN') +
        (o.cloud.why ? ' (' + o.cloud.why + ')' : '') +
        (o.cloud.backlog === null ? '' : ', backlog ' + o.cloud.backlog)
      : 'cloud disabled');
    parts.push('broker ' + (o.broker.reachable ? 'reachable' : 'unreachable (' + o.broker.reason + ')'));
    $('flow').textContent = parts.join(' · ');
    $('banks-section').hidden = o.banks.length === 0;
    fillRows($('banks'), o.banks.map((b) => [
      { text: b.name, cls: 'bank' },
      b.packs_online + ' / ' + b.packs_total,
      b.soc_pct.toFixed(1) + ' %',
      b.voltage_v.toFixed(2) + ' V',
      b.current_a.toFixed(1) + ' A',
      b.charge_voltage_v.toFixed(1) + ' V',
      { text: b.charge_current_a.toFixed(1) + ' A', cls: 'ccl' },
      { text: b.discharge_current_a.toFixed(1) + ' A', cls: 'dcl' },
      { text: b.stop ? 'STOPPED: ' + b.stop : b.stage, cls: b.stop ? 'state stalled' : 'state alive' },
      age(now - b.timestamp_ms) + ' ago',
    ]));
    fillRows($('workers'), o.workers.map((w) => [
      w.name,
      { text: w.state + (w.why.length ? ': ' + w.why.join('; ') : ''), cls: 'state ' + w.state },
      w.last_seen_ms === null ? 'never' : age(now - w.last_seen_ms) + ' ago',
      w.counter ? w.counter[0] + ' ' + w.counter[1] : '',
      bytes(w.rss_bytes),
      w.uptime_s === null ? '' : age(w.uptime_s * 1000),
      w.instance || '',
    ]));
    fillRows($('streams'), o.streams.map((s) => [
      s.name,
      s.messages === null ? 'unknown' : String(s.messages),
      bytes(s.bytes),
      s.consumers.map((c) => c.name + ' ' + (c.lag === null ? c.state : c.lag)).join(', '),
    ]));
    fillRows($('events'), o.events.map((e) => [
      { text: age(now - e.timestamp_ms) + ' ago', title: clockTime(e.timestamp_ms) },
      e.pack,
      { text: e.kind.replace(/_/g, ' '), cls: e.kind },
      e.detail,
    ]));
    $('events-note').textContent = o.events_note || (o.events.length ? '' : 'none');
    fillRows($('commands'), o.commands.map((c) => [
      { text: age(now - c.received_at_ms) + ' ago', title: clockTime(c.received_at_ms) },
      c.pack,
      c.setting + ' = ' + c.value,
      c.origin,
      { text: (c.outcome || 'pending') + (c.detail ? ' (' + c.detail + ')' : ''), cls: c.outcome || '' },
      c.read_back === null ? '' : String(c.read_back),
      c.id,
    ]));
    $('commands-note').textContent = o.commands_note || (o.commands.length ? '' : 'none');
  }

  // ---- history ----------------------------------------------------------

  function addHistoryPack(id) {
    const select = $('history-pack');
    if ([...select.options].some((o) => o.value === id)) return;
    const after = [...select.options].find((o) => o.value > id);
    select.insertBefore(node('option', { value: id }, id), after || null);
    if (!state.historyPack) {
      state.historyPack = id;
      select.value = id;
      loadHistory();
      updateDownload();
    }
  }

  async function loadHistory() {
    const pack = state.historyPack;
    if (!pack) return;
    clearTimeout(state.historyTimer);
    // Drawn again when a new bucket is due (every 12 s for the hour).
    state.historyTimer = setTimeout(loadHistory, 10000);
    const url = '/api/packs/' + encodeURIComponent(pack) + '/history?range=' + state.range;
    const note = $('history-note');
    let history;
    try {
      const response = await fetch(url, { cache: 'no-store' });
      if (!response.ok) throw new Error((await response.text()).trim());
      history = await response.json();
    } catch (error) {
      note.textContent = String(error.message || error);
      return;
    }
    if (history.pack !== state.historyPack || history.range !== state.range) return;
    clearTimeout(state.historyTimer);
    state.historyTimer = setTimeout(loadHistory, Math.max(5000, history.bucket_ms));
    note.textContent = history.note || (history.samples + ' samples, ' + history.points.length +
      ' points of ' + age(history.bucket_ms));
    const section = $('history-section');
    section.dataset.pack = history.pack;
    section.dataset.range = history.range;
    section.dataset.samples = history.samples;
    drawChart($('chart-voltage'), history, [['voltage_v', 's1']], 2);
    drawChart($('chart-current'), history, [['current_a', 's2']], 1, true);
    drawChart($('chart-soc'), history, [['soc_pct', 's3']], 1);
    drawChart($('chart-cells'), history, [['min_cell_v', 's4'], ['max_cell_v', 's5']], 3);
  }

  // One chart: per series a band from each bucket's lowest to highest
  // value and a line through its means; a gap where buckets are missing.
  function drawChart(svg, history, series, digits, zeroLine) {
    const W = 600, H = 180, L = 52, R = 8, T = 8, B = 22;
    const points = history.points;
    svg.replaceChildren();
    svg.dataset.points = points.length;
    let lo = Infinity, hi = -Infinity;
    for (const p of points) {
      for (const [key] of series) { lo = Math.min(lo, p[key][0]); hi = Math.max(hi, p[key][2]); }
    }
    if (zeroLine && points.length) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (!points.length) {
      svg.appendChild(text(W / 2, H / 2, 'no samples in this span', 'empty'));
      return;
    }
    if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
    const pad = (hi - lo) * 0.05;
    lo -= pad; hi += pad;
    const x = (t) => L + ((t - history.from_ms) / (history.to_ms - history.from_ms)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    // Enough decimals that the grid's labels differ.
    const step = (hi - lo) / 4;
    const places = Math.max(digits, Math.min(4, Math.ceil(-Math.log10(step))));
    for (let i = 0; i <= 4; i++) {
      const v = lo + step * i;
      svg.appendChild(svgNode('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
      svg.appendChild(text(L - 4, y(v) + 4, v.toFixed(places), 'axis y'));
    }
    if (zeroLine) svg.appendChild(svgNode('line', { x1: L, x2: W - R, y1: y(0), y2: y(0), class: 'zero' }));
    const when = (ms) => (history.range === 'week' ? new Date(ms).toLocaleString([], {
      weekday: 'short', hour: '2-digit', minute: '2-digit' })
      : new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    const ticks = history.range === 'hour' ? 6 : history.range === 'day' ? 6 : 7;
    for (let i = 0; i <= ticks; i++) {
      const t = history.from_ms + ((history.to_ms - history.from_ms) * i) / ticks;
      const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
      svg.appendChild(svgNode('line', { x1: x(t), x2: x(t), y1: T, y2: H - B, class: 'grid' }));
      svg.appendChild(text(x(t), H - 6, when(t), 'axis x ' + anchor));
    }
    const gap = history.bucket_ms * 1.5;
    for (const [key, cls] of series) {
      let line = '', band = '', run = [];
      const flush = () => {
        if (!run.length) return;
        band += 'M' + run.map((p) => x(p.t).toFixed(1) + ',' + y(p[key][2]).toFixed(1)).join('L') +
          'L' + run.slice().reverse().map((p) => x(p.t).toFixed(1) + ',' + y(p[key][0]).toFixed(1)).join('L') + 'Z';
        line += 'M' + run.map((p) => x(p.t).toFixed(1) + ',' + y(p[key][1]).toFixed(1)).join('L');
        run = [];
      };
      points.forEach((p, i) => {
        if (i > 0 && p.t - points[i - 1].t > gap) flush();
        run.push(p);
      });
      flush();
      svg.appendChild(svgNode('path', { d: band, class: 'band ' + cls }));
      svg.appendChild(svgNode('path', { d: line, class: 'line ' + cls, 'data-series': key }));
    }
  }

  function text(xPos, yPos, content, cls) {
    const t = svgNode('text', { x: xPos, y: yPos, class: cls });
    t.textContent = content;
    return t;
  }

  // ---- downloads --------------------------------------------------------

  // A datetime-local value for `ms`, in this browser's time zone.
  function localInput(ms) {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 19);
  }

  function updateDownload() {
    const from = new Date($('csv-from').value).getTime();
    const to = new Date($('csv-to').value).getTime();
    const link = $('csv-link');
    if (!state.historyPack || !isFinite(from) || !isFinite(to)) {
      link.removeAttribute('href');
      return;
    }
    link.href = '/api/packs/' + encodeURIComponent(state.historyPack) + '/samples.csv?from=' +
      from + '&to=' + to;
  }

  function start() {
    const now = Date.now();
    $('csv-from').value = localInput(now - 3600000);
    $('csv-to').value = localInput(now);
    $('csv-from').addEventListener('change', updateDownload);
    $('csv-to').addEventListener('change', updateDownload);
    updateDownload();
    $('history-pack').addEventListener('change', (e) => {
      state.historyPack = e.target.value;
      loadHistory();
      updateDownload();
    });
    for (const button of document.querySelectorAll('.ranges button')) {
      button.addEventListener('click', () => {
        state.range = button.dataset.range;
        for (const b of document.querySelectorAll('.ranges button')) b.classList.toggle('on', b === button);
        loadHistory();
      });
    }
    setInterval(tick, 1000);
    connect();
  }

  start();
})();
