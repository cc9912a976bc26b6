// fleetset web console: the fleet (GET /v1/console/agents), live windows (WebSocket
// /v1/stream, JSON Lines) and a chart of one agent's stored points for one metric over each
// window's exact min–max band and mean (GET /v1/console/series). No framework, no external
// code; every text from the server goes through textContent, never markup.
'use strict';

(() => {
  const TOKEN_KEY = 'fleetset.console.token';
  const LIVE_ROWS = 50;          // rows of the live table kept
  const FLEET_EVERY_MS = 5000;   // fleet refresh period
  const FOLLOW_EVERY_MS = 3000;  // chart refresh at most this often while following live
  const CIRCLES_UP_TO = 3000;    // points drawn as dots as well as a line up to this many
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    agents: new Map(),
    agent: '',
    metric: '',
    liveWindows: 0,
    ws: null,
    wsBackoff: 500,
    series: null,
    followTimer: 0,
    lastFollow: 0,
  };

  class AuthNeeded extends Error {}

  // ---- formatting -------------------------------------------------------------------------
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function utc(ms, withDate) {
    if (!ms) return '—';
    const d = new Date(ms);
    const t = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    return withDate ? `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${t}` : t;
  }
  function ago(ms, now) {
    if (!ms) return '—';
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 120) return `${s} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }
  function num(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '—';
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(Number(v.toPrecision(6)));
  }
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs, parent) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }

  // ---- token and API ----------------------------------------------------------------------
  function authHeaders() {
    return state.token ? { Authorization: `Bearer ${state.token}` } : {};
  }
  function showToken(why) {
    $('token-panel').hidden = false;
    $('token-error').textContent = why || '';
    $('token-input').focus();
  }
  // GET `path` as JSON; a 503 (the aggregator's console reads are all busy) is retried after
  // its retry-after, up to three times.
  async function api(path) {
    let r;
    for (let attempt = 0; ; attempt += 1) {
      r = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
      if (r.status !== 503 || attempt >= 3) break;
      const wait = Math.min(10, Number(r.headers.get('retry-after')) || 1);
      await new Promise((done) => setTimeout(done, wait * 1000));
    }
    let body = {};
    try { body = await r.json(); } catch (_) { body = {}; }
    if (r.status === 401 || r.status === 403) {
      showToken(body.error || `HTTP ${r.status}`);
      throw new AuthNeeded(body.error || `HTTP ${r.status}`);
    }
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    return body;
  }

  // ---- fleet ------------------------------------------------------------------------------
  function totalsBar(totals) {
    const bar = $('totals');
    bar.replaceChildren();
    const rejected = Object.entries(totals || {}).filter(([k]) => k.startsWith('rejected_'));
    const items = [
      ['received', totals.frames_received],
      ['committed', totals.frames_committed],
      ['duplicate', totals.frames_duplicate],
      ['windows stored', totals.window_rows],
      ['rejected', rejected.reduce((s, [, v]) => s + v, 0)],
    ];
    if (totals.frames_received === undefined) return;
    for (const [k, v] of items) {
      const s = el('span', '', 'total');
      s.append(el('b', String(v ?? 0)), ` ${k}`);
      if (k === 'rejected' && rejected.length) s.title = rejected.map(([r, n]) => `${r.slice(9)}: ${n}`).join('\n');
      bar.append(s);
    }
  }
  function rejectsText(rejects) {
    const e = Object.entries(rejects || {});
    if (!e.length) return ['0', ''];
    const n = e.reduce((s, [, v]) => s + v, 0);
    return [String(n), e.map(([r, v]) => `${r.toLowerCase()}: ${v}`).join(', ')];
  }
  // Reloads the fleet table; false when the API asked for a token.
  async function loadFleet() {
    let f;
    try {
      f = await api('/v1/console/agents');
    } catch (e) {
      $('fleet-note').textContent = e instanceof AuthNeeded ? 'a token is needed' : `fleet: ${e.message}`;
      return !(e instanceof AuthNeeded);
    }
    $('fleet-source').textContent = f.source === 'control' ? 'control-plane inventory' : 'from the store, last hour';
    $('fleet-note').textContent = f.truncated ? `only the first ${f.agents.length} agents are listed` :
      (f.agents.length ? '' : 'no agents yet');
    totalsBar(f.totals);
    const body = $('fleet-table').tBodies[0];
    body.replaceChildren();
    state.agents = new Map(f.agents.map((a) => [a.agent_id, a]));
    for (const a of f.agents) {
      const tr = el('tr');
      tr.dataset.agent = a.agent_id;
      if (a.agent_id === state.agent) tr.classList.add('selected');
      const id = el('td', a.agent_id, 'mono');
      const labels = Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ');
      if (labels) id.append(el('div', labels, 'sub'));
      const st = el('td');
      st.append(el('span', a.state, `state ${a.state}`));
      if (a.last_error) st.title = a.last_error;
      else if (a.state === 'unknown') st.title = 'no OpAMP report from this agent yet (its control.endpoint is unset?)';
      else if (a.state === 'stored') st.title = 'the control plane is off: the store knows no health';
      const [nrej, why] = rejectsText(a.rejects);
      const rej = el('td', nrej, nrej === '0' ? 'num' : 'num warn');
      rej.title = why;
      tr.append(id, st, el('td', utc(a.last_window_start_ms, true), 'mono lastwin'),
        el('td', ago(a.last_seen_ms, f.now_ms)), rej);
      tr.addEventListener('click', () => selectAgent(a.agent_id));
      body.append(tr);
    }
    fillAgentSelect();
    return true;
  }
  function fillAgentSelect() {
    const sel = $('agent-select');
    const ids = [...state.agents.keys()];
    const have = [...sel.options].map((o) => o.value).filter(Boolean);
    if (have.join('\n') !== ids.join('\n')) {
      sel.replaceChildren(el('option', '—'));
      sel.options[0].value = '';
      for (const id of ids) {
        const o = el('option', id);
        o.value = id;
        sel.append(o);
      }
    }
    sel.value = state.agent;
  }

  // ---- chart ------------------------------------------------------------------------------
  function rangeMs() { return Number($('range-select').value) || 3600000; }
  function saveHash() {
    const p = new URLSearchParams();
    if (state.agent) p.set('agent', state.agent);
    if (state.metric) p.set('metric', state.metric);
    history.replaceState(null, '', p.toString() ? `#${p}` : location.pathname);
  }
  async function selectAgent(id) {
    state.agent = id;
    state.series = null;
    for (const tr of $('fleet-table').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.agent === id);
    $('agent-select').value = id;
    const sel = $('metric-select');
    sel.replaceChildren(el('option', '—'));
    sel.options[0].value = '';
    if (!id) { state.metric = ''; saveHash(); drawEmpty('choose an agent'); return; }
    let m;
    try {
      m = await api(`/v1/console/metrics?agent=${encodeURIComponent(id)}&from=${Date.now() - rangeMs()}`);
    } catch (e) {
      drawEmpty(e.message, 'error');
      return;
    }
    if (state.agent !== id) return;
    for (const name of m.metrics) {
      const o = el('option', name);
      o.value = name;
      sel.append(o);
    }
    if (!m.metrics.includes(state.metric)) state.metric = m.metrics.includes('cpu_percent') ? 'cpu_percent' : (m.metrics[0] || '');
    sel.value = state.metric;
    saveHash();
    await loadSeries();
  }
  async function loadSeries() {
    const { agent, metric } = state;
    if (!agent || !metric) { drawEmpty(agent ? 'no stored windows in this range' : 'choose an agent'); return; }
    $('chart').dataset.state = 'loading';
    let s;
    try {
      s = await api(`/v1/console/series?agent=${encodeURIComponent(agent)}&metric=${encodeURIComponent(metric)}&from=${Date.now() - rangeMs()}`);
    } catch (e) {
      // Keep a chart already drawn for this choice; say what failed under it.
      if (state.series && state.series.agent_id === agent && state.series.metric === metric) {
        $('chart').dataset.state = 'ready';
        $('chart-summary').textContent = `could not refresh: ${e.message}`;
      } else {
        drawEmpty(e.message, 'error');
      }
      return;
    }
    if (agent !== state.agent || metric !== state.metric) return;
    state.series = s;
    drawChart(s);
  }
  function drawEmpty(why, st = 'empty') {
    const c = $('chart');
    c.replaceChildren(el('div', why, 'empty'));
    c.dataset.state = st;
    $('chart-summary').textContent = '';
  }
  // Tick values: about `n` round numbers (1, 2, 5 × 10^k) covering [lo, hi].
  function ticks(lo, hi, n) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }
  const TIME_STEPS = [1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 216e5, 432e5, 864e5];
  function drawChart(s) {
    const c = $('chart');
    const wins = s.windows;
    if (!wins.length) { drawEmpty(`no stored windows of ${s.metric} for ${s.agent_id} in this range`); return; }
    const W = Math.max(480, c.clientWidth || 800);
    const H = 340;
    const m = { l: 68, r: 16, t: 14, b: 40 };
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    const pts = [];
    for (const w of wins) {
      x0 = Math.min(x0, w.start); x1 = Math.max(x1, w.end);
      if (w.stats) {
        for (const v of [w.stats.min, w.stats.max]) if (Number.isFinite(v)) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
      }
      for (const [t, v] of w.points) {
        pts.push([t, v]);
        if (Number.isFinite(v)) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
      }
    }
    if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const padY = (y1 - y0) * 0.06;
    y0 -= padY; y1 += padY;
    const X = (t) => m.l + ((t - x0) / Math.max(1, x1 - x0)) * (W - m.l - m.r);
    const Y = (v) => m.t + (1 - (v - y0) / (y1 - y0)) * (H - m.t - m.b);

    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
      'aria-label': `${s.metric} of ${s.agent_id}` });
    const grid = svg('g', { class: 'grid' }, root);
    for (const v of ticks(y0, y1, 6)) {
      svg('line', { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }, grid);
      svg('text', { x: m.l - 8, y: Y(v) + 4, class: 'ylab' }, grid).textContent = num(v);
    }
    const step = TIME_STEPS.find((st) => (x1 - x0) / st <= 8) || 864e5;
    for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) {
      svg('line', { x1: X(t), x2: X(t), y1: m.t, y2: H - m.b }, grid);
      // A label that would run past either end of the plot is left out (its line stays).
      if (X(t) < m.l + 28 || X(t) > W - m.r - 28) continue;
      svg('text', { x: X(t), y: H - m.b + 18, class: 'xlab' }, grid).textContent = utc(t);
    }
    svg('text', { x: W - m.r, y: H - 6, class: 'xlab end' }, grid).textContent = 'UTC';
    svg('rect', { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, class: 'frame' }, root);

    const bands = svg('g', { class: 'bands' }, root);
    const means = svg('g', { class: 'means' }, root);
    let raw = 0;
    for (const w of wins) {
      if (!w.stats) continue;
      raw += w.stats.count;
      const bx = X(w.start), bw = Math.max(1, X(w.end) - X(w.start));
      const r = svg('rect', { x: bx, width: bw, y: Y(w.stats.max), height: Math.max(1, Y(w.stats.min) - Y(w.stats.max)), class: 'band' }, bands);
      const st = w.stats;
      svg('title', {}, r).textContent =
        `window ${utc(w.start, true)} – ${utc(w.end)} UTC (seq ${w.seq})\n` +
        `raw samples ${st.count}: min ${num(st.min)}  max ${num(st.max)}  mean ${num(st.mean)}  std ${num(st.std)}\n` +
        `first ${num(st.first)}  last ${num(st.last)}\nstored points ${w.points.length}`;
      svg('line', { x1: bx, x2: bx + bw, y1: Y(st.mean), y2: Y(st.mean), class: 'mean' }, means);
    }
    const finite = pts.filter(([, v]) => Number.isFinite(v));
    svg('polyline', { class: 'pts-line', points: finite.map(([t, v]) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join(' ') }, root);
    if (finite.length <= CIRCLES_UP_TO) {
      const dots = svg('g', { class: 'dots' }, root);
      const r = finite.length * 5 > W - m.l - m.r ? 1.4 : 2.4;
      for (const [t, v] of finite) svg('circle', { cx: X(t).toFixed(1), cy: Y(v).toFixed(1), r }, dots);
    }

    c.replaceChildren(root);
    c.dataset.state = 'ready';
    c.dataset.agent = s.agent_id;
    c.dataset.metric = s.metric;
    c.dataset.windows = String(wins.length);
    c.dataset.points = String(s.points);
    c.dataset.firstStart = String(wins[0].start);
    c.dataset.lastStart = String(wins[wins.length - 1].start);
    const kept = raw ? ` — ${(100 * s.points / raw).toFixed(1)} % of ${raw} raw samples kept` : '';
    $('chart-summary').textContent =
      `${s.agent_id} · ${s.metric}: ${wins.length} windows, ${s.points} stored points${kept}` +
      (s.truncated ? ` (newest ${wins.length} windows only; bound ${s.max_windows} windows / ${s.max_points} points)` : '') +
      `. Hover a band for its exact statistics.`;
  }

  // ---- live windows -----------------------------------------------------------------------
  function setLive(text, cls) {
    const p = $('live-status');
    p.textContent = `live: ${text}`;
    p.className = `pill ${cls}`;
  }
  function onWindow(w) {
    state.liveWindows += 1;
    $('live-count').textContent = `${state.liveWindows} since this page opened`;
    const metrics = Object.keys(w.stats || {});
    const points = Object.values(w.data || {}).reduce((s, p) => s + (Array.isArray(p) ? p.length : 0), 0);
    const tr = el('tr');
    tr.dataset.agent = w.agent_id;
    const rec = w.received_at_us ? Math.round(w.received_at_us / 1000) : Date.now();
    tr.append(el('td', utc(rec), 'mono'), el('td', w.agent_id, 'mono'), el('td', String(w.seq), 'num'),
      el('td', `${utc(w.start, true)} – ${utc(w.end)}${w.historical ? ' (history)' : ''}`, 'mono'),
      el('td', String(metrics.length), 'num'), el('td', String(points), 'num'),
      el('td', String(w.payload_sha256 || '').slice(0, 16), 'mono dim'));
    tr.addEventListener('click', () => selectAgent(w.agent_id));
    const body = $('live-table').tBodies[0];
    body.prepend(tr);
    while (body.rows.length > LIVE_ROWS) body.deleteRow(-1);
    for (const row of $('fleet-table').tBodies[0].rows) {
      if (row.dataset.agent === w.agent_id) row.querySelector('.lastwin').textContent = utc(w.start, true);
    }
    if (!state.agents.has(w.agent_id)) loadFleet();
    if ($('follow').checked && w.agent_id === state.agent && (!state.metric || metrics.includes(state.metric))) scheduleFollow();
  }
  // Refreshes the chart a little after a live window of the chosen agent (the store commits
  // it some seconds later), at most every FOLLOW_EVERY_MS.
  function scheduleFollow() {
    if (state.followTimer) return;
    const wait = Math.max(1500, state.lastFollow + FOLLOW_EVERY_MS - Date.now());
    state.followTimer = setTimeout(() => {
      state.followTimer = 0;
      state.lastFollow = Date.now();
      if (state.metric) loadSeries(); else selectAgent(state.agent);
    }, wait);
  }
  function connectLive() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const protocols = ['fleetset.v1'];
    if (state.token) protocols.push(`bearer.${state.token}`);
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/v1/stream?format=jsonlines`, protocols);
    } catch (e) {
      setLive('unavailable', 'bad');
      return;
    }
    state.ws = ws;
    setLive('connecting', 'off');
    ws.addEventListener('open', () => { state.wsBackoff = 500; setLive('connected', 'ok'); });
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data !== 'string') return;
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (m && typeof m.lag === 'number') { setLive(`${m.lag} windows skipped (slow tab)`, 'warn'); return; }
      if (m && typeof m.agent_id === 'string') onWindow(m);
    });
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
      setLive(`disconnected, retrying in ${Math.round(state.wsBackoff / 1000)} s`, 'bad');
      setTimeout(() => { if (state.ws === ws) connectLive(); }, state.wsBackoff);
      state.wsBackoff = Math.min(30000, state.wsBackoff * 2);
    });
  }
  function reconnectLive() {
    const old = state.ws;
    state.ws = null;
    if (old) old.close();
    connectLive();
  }

  // ---- wiring -----------------------------------------------------------------------------
  function start() {
    $('token-button').addEventListener('click', () => {
      const p = $('token-panel');
      p.hidden = !p.hidden;
      if (!p.hidden) $('token-input').focus();
    });
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.token = $('token-input').value.trim();
      $('token-input').value = '';
      if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token); else sessionStorage.removeItem(TOKEN_KEY);
      $('token-panel').hidden = true;
      $('token-error').textContent = '';
      reconnectLive();
      loadFleet().then(() => state.agent && selectAgent(state.agent));
    });
    $('token-clear').addEventListener('click', () => {
      state.token = '';
      sessionStorage.removeItem(TOKEN_KEY);
      reconnectLive();
    });
    $('agent-select').addEventListener('change', (ev) => selectAgent(ev.target.value));
    $('metric-select').addEventListener('change', (ev) => { state.metric = ev.target.value; saveHash(); loadSeries(); });
    $('range-select').addEventListener('change', () => loadSeries());
    window.addEventListener('resize', () => state.series && drawChart(state.series));

    const h = new URLSearchParams(location.hash.slice(1));
    state.agent = h.get('agent') || '';
    state.metric = h.get('metric') || '';
    drawEmpty('choose an agent');
    setLive('connecting', 'off');
    // The stream opens once the API has shown whether a token is needed (and then with it).
    loadFleet().then((open) => {
      if (!open) return;
      connectLive();
      if (state.agent) selectAgent(state.agent);
    });
    setInterval(loadFleet, FLEET_EVERY_MS);
  }
  start();
})();
