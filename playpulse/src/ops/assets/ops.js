// The operator dashboard's script: every refresh (while the tab is visible) it reads the
// service's own answers, /metrics (Prometheus text), /readyz and, when they apply, the live QoE
// view and trending titles, then fills the tiles and charts. Rates and percentiles are taken
// over the last refresh interval, from the counters' and histogram buckets' differences, the
// way Prometheus' rate() and histogram_quantile() take them.
(() => {
  'use strict';

  const body = document.body;
  const REFRESH_MS = Number(body.dataset.refreshMs) || 2000;
  const ANALYTICS = body.dataset.analytics === 'true';
  const PLATFORM = body.dataset.platform === 'true';
  // Five minutes of points at the refresh interval.
  const HISTORY_POINTS = Math.ceil(300000 / REFRESH_MS);

  // --- Reading the Prometheus text exposition -------------------------------------------

  function parseMetrics(text) {
    const samples = new Map();
    for (const line of text.split('\n')) {
      if (line === '' || line[0] === '#') continue;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
      if (!match) continue;
      const labels = {};
      if (match[2]) {
        for (const pair of match[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
          labels[pair[1]] = pair[2];
        }
      }
      if (!samples.has(match[1])) samples.set(match[1], []);
      samples.get(match[1]).push({ labels, value: Number(match[3]) });
    }
    return samples;
  }

  const value = (metrics, name) => {
    const found = metrics.get(name);
    return found && found.length ? found[0].value : null;
  };
  const total = (metrics, name) =>
    (metrics.get(name) || []).reduce((sum, sample) => sum + sample.value, 0);
  const buckets = (metrics, name) =>
    (metrics.get(name + '_bucket') || [])
      .map((sample) => ({
        le: sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le),
        count: sample.value,
      }))
      .sort((a, b) => a.le - b.le);

  // The q-quantile of the observations between two readings of a histogram, interpolated
  // within its bucket; null when nothing was observed.
  function quantile(q, now, before) {
    const counts = now.map((bucket, i) => ({
      le: bucket.le,
      count: bucket.count - (before && before[i] ? before[i].count : 0),
    }));
    const observed = counts.length ? counts[counts.length - 1].count : 0;
    if (observed <= 0) return null;
    const rank = q * observed;
    let lower = 0;
    let below = 0;
    for (const bucket of counts) {
      if (bucket.count >= rank) {
        if (bucket.le === Infinity) return lower;
        const inside = bucket.count - below;
        return lower + (bucket.le - lower) * (inside > 0 ? (rank - below) / inside : 0);
      }
      lower = bucket.le;
      below = bucket.count;
    }
    return lower;
  }

  // --- Formatting ----------------------------------------------------------------------

  const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const oneDecimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  function number(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return '–';
    return Math.abs(x) < 10 && x !== Math.round(x) ? oneDecimal.format(x) : grouped.format(x);
  }
  function millis(seconds) {
    if (seconds === null) return '–';
    const ms = seconds * 1000;
    return ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : grouped.format(ms);
  }
  function bytes(x) {
    if (x === null) return ['–', 'bytes'];
    const units = ['bytes', 'KiB', 'MiB', 'GiB'];
    let unit = 0;
    while (Math.abs(x) >= 1024 && unit < units.length - 1) {
      x /= 1024;
      unit += 1;
    }
    return [unit === 0 ? grouped.format(x) : x.toFixed(1), units[unit]];
  }

  // Sets a tile's text, and its raw value for scripts and tests.
  function tile(key, raw, text) {
    const element = document.querySelector(`[data-tile="${key}"]`);
    if (!element) return;
    element.dataset.value = raw === null || raw === undefined ? '' : String(raw);
    element.textContent = text;
  }

  // --- Charts ----------------------------------------------------------------------------

  const COLORS = ['#4ade80', '#f87171', '#60a5fa', '#fbbf24', '#c084fc'];
  const charts = {};
  const chartSeries = {
    events: ['accepted', 'rejected'],
    latency: ['ack p50', 'ack p99', 'sink p99'],
    queue: ['queued events'],
  };
  const points = { t: [], events: [[], []], latency: [[], [], []], queue: [[]] };

  function chartWidth(element) {
    return Math.max(240, element.clientWidth);
  }

  function drawCharts() {
    for (const [key, names] of Object.entries(chartSeries)) {
      const data = [points.t, ...points[key]];
      if (!charts[key]) {
        const element = document.querySelector(`[data-chart="${key}"]`);
        if (!element || typeof uPlot === 'undefined') continue;
        charts[key] = new uPlot(
          {
            width: chartWidth(element),
            height: 170,
            legend: { live: false },
            cursor: { drag: { x: false, y: false } },
            scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
            axes: [
              { stroke: '#9ca3af', grid: { stroke: '#1f2937' }, ticks: { stroke: '#374151' } },
              { stroke: '#9ca3af', grid: { stroke: '#1f2937' }, ticks: { stroke: '#374151' }, size: 60 },
            ],
            series: [
              {},
              ...names.map((label, i) => ({
                label,
                stroke: COLORS[i],
                width: 2,
                fill: i === 0 ? COLORS[i] + '22' : undefined,
                spanGaps: false,
              })),
            ],
          },
          data,
          element,
        );
      } else {
        charts[key].setData(data);
      }
    }
  }

  window.addEventListener('resize', () => {
    for (const [key, chart] of Object.entries(charts)) {
      const element = document.querySelector(`[data-chart="${key}"]`);
      if (element) chart.setSize({ width: chartWidth(element), height: 170 });
    }
  });

  function remember(at, events, latency, queue) {
    points.t.push(at / 1000);
    events.forEach((x, i) => points.events[i].push(x));
    latency.forEach((x, i) => points.latency[i].push(x));
    queue.forEach((x, i) => points.queue[i].push(x));
    if (points.t.length > HISTORY_POINTS) {
      points.t.shift();
      for (const key of Object.keys(chartSeries)) points[key].forEach((line) => line.shift());
    }
  }

  // --- One refresh -------------------------------------------------------------------------

  let previous = null;

  async function fetchText(path) {
    const answer = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
    if (answer.status === 401 || answer.status === 403) {
      window.location.assign('/ops/login');
      throw new Error('not logged in');
    }
    return { status: answer.status, text: await answer.text() };
  }

  async function fetchJson(path) {
    const { status, text } = await fetchText(path);
    try {
      return { status, json: JSON.parse(text) };
    } catch (error) {
      return { status, json: null };
    }
  }

  function showIngest(metrics, at) {
    const accepted = value(metrics, 'playpulse_events_accepted_total');
    const rejectedByReason = metrics.get('playpulse_events_rejected_total') || [];
    const rejected = total(metrics, 'playpulse_events_rejected_total');
    const ack = buckets(metrics, 'playpulse_ack_seconds');
    const sink = buckets(metrics, 'playpulse_sink_write_seconds');
    const lag = buckets(metrics, 'playpulse_invalidation_lag_seconds');
    const before = previous;
    const seconds = before ? (at - before.at) / 1000 : null;
    const rate = (now, then) => (seconds && then !== null && now !== null ? Math.max(0, now - then) / seconds : null);

    const acceptedRate = before ? rate(accepted, before.accepted) : null;
    const rejectedRate = before ? rate(rejected, before.rejected) : null;
    tile('accepted_rate', acceptedRate, number(acceptedRate));
    tile('accepted_rate_sub', accepted, `${number(accepted)} in all`);
    tile('rejected_rate', rejectedRate, number(rejectedRate));
    tile('rejected_rate_sub', rejected, `${number(rejected)} in all`);

    const ackP50 = before ? quantile(0.5, ack, before.ack) : null;
    const ackP99 = before ? quantile(0.99, ack, before.ack) : null;
    tile('ack_p99', ackP99, millis(ackP99));
    tile('ack_p99_sub', ackP50, `p50 ${millis(ackP50)} ms`);
    const sinkP50 = before ? quantile(0.5, sink, before.sink) : null;
    const sinkP99 = before ? quantile(0.99, sink, before.sink) : null;
    tile('sink_p99', sinkP99, millis(sinkP99));
    const batches = value(metrics, 'playpulse_batch_events_count');
    const batchRate = before ? rate(batches, before.batches) : null;
    tile('sink_p99_sub', sinkP50, `p50 ${millis(sinkP50)} ms · ${number(batchRate)} batches/s`);

    const queue = value(metrics, 'playpulse_queue_depth_events');
    tile('queue_depth', queue, number(queue));
    const peak = Math.max(queue || 0, ...points.queue[0].filter((x) => x !== null));
    tile('queue_depth_sub', peak, `peak ${number(peak)} in 5 min`);
    const inFlight = value(metrics, 'playpulse_in_flight_bytes');
    const [inFlightText, inFlightUnit] = bytes(inFlight);
    tile('in_flight_bytes', inFlight, inFlightText);
    const unit = document.querySelector('[data-tile="in_flight_bytes"] + .unit');
    if (unit) unit.textContent = inFlightUnit;
    tile('in_flight_bytes_sub', null, 'admitted, not yet acknowledged');

    const errors = value(metrics, 'playpulse_sink_errors_total');
    const retries = value(metrics, 'playpulse_sink_retries_total');
    tile('sink_errors', errors, number(errors));
    tile('sink_errors_sub', retries, `${number(retries)} retries`);
    document.querySelector('[data-tile="sink_errors"]')?.closest('.tile')
      ?.classList.toggle('bad', before !== null && errors > before.errors);

    const lagP99 = before ? quantile(0.99, lag, before.lag) : null;
    const pending = value(metrics, 'playpulse_invalidation_pending_users');
    tile('invalidation_lag_p99', lagP99, millis(lagP99));
    tile('invalidation_lag_p99_sub', pending, `${number(pending)} users pending`);

    const table = document.querySelector('[data-tile="rejected_reasons"]');
    if (table) {
      const rows = rejectedByReason
        .map((sample) => {
          const then = before ? before.reasons[sample.labels.reason] : undefined;
          const perSecond = then === undefined ? null : rate(sample.value, then);
          return { reason: sample.labels.reason, count: sample.value, perSecond };
        })
        .filter((row) => row.count > 0)
        .sort((a, b) => b.count - a.count);
      table.replaceChildren(
        ...(rows.length
          ? rows.map((row) => {
              const tr = document.createElement('tr');
              tr.dataset.reason = row.reason;
              tr.dataset.value = String(row.count);
              for (const text of [row.reason.replaceAll('_', ' '), number(row.count), `${number(row.perSecond)}/s`]) {
                const td = document.createElement('td');
                td.textContent = text;
                tr.append(td);
              }
              return tr;
            })
          : [Object.assign(document.createElement('tr'), { innerHTML: '<td class="muted">none yet</td>' })]),
      );
    }

    remember(
      at,
      [acceptedRate, rejectedRate],
      [ackP50 === null ? null : ackP50 * 1000, ackP99 === null ? null : ackP99 * 1000, sinkP99 === null ? null : sinkP99 * 1000],
      [queue],
    );
    const reasons = {};
    for (const sample of rejectedByReason) reasons[sample.labels.reason] = sample.value;
    return { at, accepted, rejected, ack, sink, lag, batches, errors, reasons };
  }

  function showPlatform(metrics, now, state) {
    if (!PLATFORM) return;
    const last = value(metrics, 'playpulse_recommendations_last_refresh_timestamp_seconds');
    const age = last ? Math.max(0, now / 1000 - last) : null;
    tile('recs_age', age, age === null ? 'never' : number(age));
    const users = value(metrics, 'playpulse_recommendations_refreshed_users_total');
    const outbox = value(metrics, 'playpulse_outbox_published_total');
    const seconds = previous ? (now - previous.at) / 1000 : null;
    const usersRate = seconds && previous.users !== null ? Math.max(0, users - previous.users) / seconds : null;
    const outboxRate = seconds && previous.outbox !== null ? Math.max(0, outbox - previous.outbox) / seconds : null;
    tile('recs_users_rate', usersRate, number(usersRate));
    tile('recs_failures', value(metrics, 'playpulse_recommendations_refresh_failures_total'),
      number(value(metrics, 'playpulse_recommendations_refresh_failures_total')));
    tile('outbox_rate', outboxRate, number(outboxRate));
    state.users = users;
    state.outbox = outbox;
  }

  function showHealth(ready) {
    for (const element of document.querySelectorAll('[data-port]')) {
      const key = element.dataset.port;
      const answer = ready ? ready[key] : undefined;
      let state;
      if (answer === undefined || answer === null) state = 'unknown';
      else if (element.dataset.required === 'true') state = answer === true || answer === 'ok' ? 'up' : 'down';
      else state = answer === 'ok' || answer === true ? 'up' : 'degraded';
      element.dataset.state = state;
      element.querySelector('.state').textContent = state;
    }
  }

  function showLive(live) {
    if (!live) return;
    tile('concurrent_viewers', live.concurrent_viewers, number(live.concurrent_viewers));
    let views = 0;
    let failures = 0;
    let playing = 0;
    let stalled = 0;
    let startupP95 = null;
    for (const minute of live.minutes || []) {
      views += minute.views || 0;
      failures += minute.playback_failures || 0;
      playing += minute.playing_time_ms || 0;
      stalled += minute.rebuffer_ms || 0;
      if (minute.startup_time_p95_ms !== null && minute.startup_time_p95_ms !== undefined) {
        startupP95 = minute.startup_time_p95_ms;
      }
    }
    tile('startup_p95', startupP95, number(startupP95));
    const rebuffer = playing + stalled > 0 ? (100 * stalled) / (playing + stalled) : null;
    tile('rebuffer_pct', rebuffer, rebuffer === null ? '–' : rebuffer.toFixed(2));
    const failure = views > 0 ? (100 * failures) / views : null;
    tile('failure_pct', failure, failure === null ? '–' : failure.toFixed(2));
    const lag = live.lag_ms === null || live.lag_ms === undefined ? null : live.lag_ms / 1000;
    tile('analytics_lag', lag, lag === null ? '–' : lag.toFixed(1));
    const table = document.querySelector('[data-tile="qoe_worst"]');
    if (!table) return;
    const rows = [];
    for (const [dimension, values] of Object.entries(live.worst || {})) {
      for (const impact of values.slice(0, 2)) {
        if (impact.negative_impact > 0) rows.push({ dimension, ...impact });
      }
    }
    rows.sort((a, b) => b.negative_impact - a.negative_impact);
    table.replaceChildren(
      ...(rows.length
        ? rows.slice(0, 6).map((row) => {
            const tr = document.createElement('tr');
            for (const text of [row.dimension, row.value, `${number(row.negative_impact)} hurt`,
              `${number(row.views)} views`]) {
              const td = document.createElement('td');
              td.textContent = text;
              tr.append(td);
            }
            return tr;
          })
        : [Object.assign(document.createElement('tr'), { innerHTML: '<td class="muted">nobody hurt</td>' })]),
    );
  }

  function showTrending(trending) {
    const list = document.querySelector('[data-tile="trending"]');
    if (!list || !trending) return;
    const titles = trending.titles || [];
    list.dataset.value = titles.map((entry) => entry.title).join(',');
    list.replaceChildren(
      ...(titles.length
        ? titles.map((entry) => {
            const li = document.createElement('li');
            li.innerHTML = '<span class="title"></span><span class="score"></span>';
            li.querySelector('.title').textContent = `title ${entry.title}`;
            li.querySelector('.score').textContent = number(entry.score);
            return li;
          })
        : [Object.assign(document.createElement('li'), { className: 'muted', textContent: 'no plays yet' })]),
    );
  }

  function setState(state, text) {
    const element = document.getElementById('refresh-state');
    element.dataset.state = state;
    element.textContent = text;
  }

  let refreshes = 0;

  async function refresh() {
    const at = Date.now();
    try {
      const [metricsAnswer, readyAnswer, liveAnswer, trendingAnswer] = await Promise.all([
        fetchText('/metrics'),
        fetchJson('/readyz'),
        // Titles left out of the ranking: it reads most of the rows, and a refresh must stay cheap.
        ANALYTICS ? fetchJson('/v1/analytics/live?worst=device,country,cdn').catch(() => null) : null,
        ANALYTICS ? fetchJson('/v1/trending?window=now&limit=10').catch(() => null) : null,
      ]);
      if (metricsAnswer.status !== 200) throw new Error(`/metrics answered ${metricsAnswer.status}`);
      const metrics = parseMetrics(metricsAnswer.text);
      const state = showIngest(metrics, at);
      showPlatform(metrics, at, state);
      showHealth(readyAnswer.json);
      if (liveAnswer && liveAnswer.status === 200) showLive(liveAnswer.json);
      if (trendingAnswer && trendingAnswer.status === 200) showTrending(trendingAnswer.json);
      previous = state;
      drawCharts();
      refreshes += 1;
      body.dataset.refreshes = String(refreshes);
      setState('live', 'live');
      document.getElementById('updated-at').textContent = `updated ${new Date(at).toLocaleTimeString()}`;
    } catch (error) {
      setState('error', `service unreachable (${error.message})`);
      showHealth(null);
    }
  }

  // Refreshes run one after another, only while the tab is visible.
  let timer = null;
  let running = false;
  async function loop() {
    timer = null;
    if (running) return;
    if (document.hidden) {
      setState('paused', 'paused (tab hidden)');
      return;
    }
    running = true;
    try {
      await refresh();
    } finally {
      running = false;
    }
    if (!document.hidden && timer === null) timer = setTimeout(loop, REFRESH_MS);
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && timer === null) loop();
  });
  loop();
})();
