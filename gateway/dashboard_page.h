// The dashboard's two pages, self-contained (no external asset, no network but polling its own
// origin's /admin/qos): the live QoS page and the sign-in form. `{{nonce}}` is replaced per response
// with the nonce the Content-Security-Policy header allows; `{{problem}}` (sign-in form only) with
// a fixed message the server chooses, never with client input.
//
// The live page draws, per group: queue depth (now and over time), running, TTFT p50/p99,
// preemptions, 429/503 counts, weighted tokens; per user: served share vs quota share, cumulative
// and over the last 10 s, for the top users of each group by service (the rest summed in one row,
// so 500 users stay readable); and the config in force with its path and load time. Every number
// cell carries data-k (a JSON array naming it: ["g", group, field], ["u", group, user, field],
// ["o", group, field] for the summed rest, ["cfg", field]) and data-v (the raw value), which the
// end-to-end test compares with /admin/qos.
#pragma once

#include <string_view>

namespace tiergate::gateway {

inline constexpr std::string_view kDashboardPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiergate QoS</title>
<link rel="icon" href="data:,">
<style nonce="{{nonce}}">
:root { --fg:#1d232a; --muted:#5f6b76; --line:#dfe3e8; --bg:#f5f6f8; --card:#fff; --quota:#1f6feb;
        --served:#2da44e; --over:#cf222e; --warn:#9a6700; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
       background:var(--bg); color:var(--fg); }
header { padding:12px 20px; background:#24292f; color:#fff; display:flex; gap:20px; align-items:baseline;
         flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; }
#status { color:#d0d7de; font-size:13px; }
#status .bad { color:#ffb3b3; font-weight:600; }
main { padding:16px 20px; max-width:1500px; }
h2 { font-size:16px; margin:18px 0 8px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 14px;
        margin-bottom:14px; }
.card h3 { margin:0 0 6px; font-size:15px; display:flex; gap:14px; align-items:baseline; flex-wrap:wrap; }
.card h3 small { color:var(--muted); font-weight:400; }
table { border-collapse:collapse; width:100%; }
th, td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { color:var(--muted); font-weight:600; font-size:12px; }
th:first-child, td:first-child { text-align:left; }
td { font-variant-numeric:tabular-nums; }
tr.rest td { color:var(--muted); font-style:italic; }
.user { max-width:260px; overflow:hidden; text-overflow:ellipsis; display:inline-block; vertical-align:bottom; }
.tag { color:var(--muted); font-size:11px; margin-left:4px; }
.bar { position:relative; width:180px; height:12px; background:#eef1f4; border-radius:3px; display:inline-block;
       vertical-align:middle; }
.bar .served { position:absolute; left:0; top:2px; height:8px; background:var(--served); border-radius:2px; }
.bar .served.over { background:var(--over); }
.bar .quota { position:absolute; top:0; width:2px; height:12px; background:var(--quota); }
.legend { color:var(--muted); font-size:12px; }
.legend i { display:inline-block; width:10px; height:8px; margin:0 3px 0 10px; }
.legend .k-served { background:var(--served); } .legend .k-quota { background:var(--quota); width:2px; }
.legend .k-over { background:var(--over); }
.signout { margin-left:auto; }
canvas { vertical-align:middle; }
pre { background:#f0f2f4; padding:10px; overflow:auto; max-height:420px; font-size:12px; }
.warn { color:var(--warn); }
</style>
</head>
<body>
<header><h1>tiergate QoS</h1><div id="status">connecting…</div>
<form method="post" action="/dashboard/logout" class="signout"><button type="submit">Sign out</button></form>
</header>
<main>
<h2>Groups <span class="legend">strict priority, highest first; TTFT over the last minute's first tokens</span></h2>
<div class="card"><table id="groups"><thead><tr>
<th>group</th><th>priority</th><th>waiting</th><th>queue depth, last 3 min</th><th>running</th>
<th>TTFT p50</th><th>TTFT p99</th><th>first tokens (1 min)</th><th>preemptions</th><th>429</th><th>503</th>
<th>weighted tokens</th><th>share of all</th><th>requests</th><th>users</th>
</tr></thead><tbody></tbody></table></div>
<h2>Users by group <span class="legend">top users by service, the rest summed;
<i class="k-served"></i>served share <i class="k-quota"></i>quota share
<i class="k-over"></i>served above quota</span></h2>
<div id="cards"></div>
<details class="card" id="config"><summary>Config in force</summary><pre id="config-json"></pre></details>
</main>
<script nonce="{{nonce}}">
'use strict';
const TOP = 10;           // users listed per group; the rest are summed in one row
const POLL_MS = 1000;
const RECENT_MS = 10000;  // the "last 10 s" share
const HISTORY_MS = 180000;
const history = [];       // {t, users: Map(user -> weighted tokens), waiting: Map(group -> waiting)}
let polls = 0;

function node(tag, props, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'text') e.textContent = v;
    else if (k === 'cls') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children || []) e.appendChild(c);
  return e;
}
const fmtInt = n => Math.round(n).toLocaleString('en-US');
const fmtPct = x => (100 * x).toFixed(1) + '%';
const fmtSec = s => s < 1 ? (1000 * s).toFixed(0) + ' ms' : s.toFixed(2) + ' s';
function cell(key, value, text) {
  return node('td', {'data-k': JSON.stringify(key), 'data-v': String(value), text: text});
}

function status(parts) {
  const s = document.getElementById('status');
  s.replaceChildren(...parts);
}

function recentBase(now) {
  // The newest poll at least RECENT_MS old: shares over (its time, now].
  let base = null;
  for (const h of history) if (now - h.t >= RECENT_MS) base = h;
  return base;
}

function sparkline(values) {
  const c = node('canvas', {width: '150', height: '26'});
  const g = c.getContext('2d');
  const max = Math.max(1, ...values);
  g.strokeStyle = '#1f6feb';
  g.lineWidth = 1.5;
  g.beginPath();
  values.forEach((v, i) => {
    const x = values.length < 2 ? 0 : (i / (values.length - 1)) * 148 + 1;
    const y = 24 - (v / max) * 22;
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  g.fillStyle = '#5f6b76';
  g.font = '10px sans-serif';
  g.fillText('max ' + max, 100, 10);
  return c;
}

function shareBar(served, quota) {
  const b = node('span', {cls: 'bar', title: 'served ' + fmtPct(served) + ', quota ' + fmtPct(quota)});
  const s = node('span', {cls: 'served' + (served > quota + 0.02 ? ' over' : '')});
  s.style.width = Math.min(100, 100 * served) + '%';
  const q = node('span', {cls: 'quota'});
  q.style.left = 'calc(' + Math.min(100, 100 * quota) + '% - 1px)';
  b.append(s, q);
  return b;
}

function render(report) {
  const now = report.server_time_unix_ms;
  const usage = report.usage, config = report.config, source = report.config_source;
  const users = new Map(usage.users.map(u => [u.user_id, u.weighted_tokens]));
  const waiting = new Map(usage.groups.map(g => [g.name, g.waiting]));
  history.push({t: now, users, waiting});
  while (history.length && now - history[0].t > HISTORY_MS) history.shift();
  const base = recentBase(now);
  polls += 1;

  const loaded = new Date(source.loaded_at_unix_ms);
  const parts = [
    node('span', {text: (config.enable_user_qos ? 'QoS on' : 'QoS off (FCFS)') + ' · config '}),
    node('span', {'data-k': '["cfg","path"]', 'data-v': source.path, text: source.path}),
    node('span', {text: ' loaded '}),
    node('span', {'data-k': '["cfg","loaded_at_unix_ms"]', 'data-v': String(source.loaded_at_unix_ms),
                  text: loaded.toISOString().replace('T', ' ').slice(0, 19) + ' UTC'}),
    node('span', {text: ' (' + fmtInt((now - source.loaded_at_unix_ms) / 1000) + ' s ago) · updated ' +
                  new Date(now).toISOString().slice(11, 19) + ' UTC · poll ' + polls}),
  ];
  if (source.last_reload_error) {
    parts.push(node('span', {cls: 'bad', text: ' · last reload rejected: ' + source.last_reload_error}));
  }
  status(parts);

  const total = usage.groups.reduce((a, g) => a + g.weighted_tokens, 0);
  const byGroup = new Map(usage.groups.map(g => [g.name, []]));
  for (const u of usage.users) (byGroup.get(u.group) || []).push(u);

  const rows = [];
  for (const g of usage.groups) {
    const k = f => ['g', g.name, f];
    const depth = history.map(h => h.waiting.get(g.name) || 0);
    const listed = byGroup.get(g.name).length;
    rows.push(node('tr', {}, [
      node('td', {text: g.name}),
      cell(k('priority'), g.priority, String(g.priority)),
      cell(k('waiting'), g.waiting, fmtInt(g.waiting)),
      node('td', {}, [sparkline(depth)]),
      cell(k('running'), g.running, fmtInt(g.running)),
      cell(k('ttft_p50_s'), g.ttft_p50_s, g.ttft_samples ? fmtSec(g.ttft_p50_s) : '–'),
      cell(k('ttft_p99_s'), g.ttft_p99_s, g.ttft_samples ? fmtSec(g.ttft_p99_s) : '–'),
      cell(k('ttft_samples'), g.ttft_samples, fmtInt(g.ttft_samples)),
      cell(k('preemptions'), g.preemptions, fmtInt(g.preemptions)),
      cell(k('refused_429'), g.refused_429, fmtInt(g.refused_429)),
      cell(k('unavailable_503'), g.unavailable_503, fmtInt(g.unavailable_503)),
      cell(k('weighted_tokens'), g.weighted_tokens, fmtInt(g.weighted_tokens)),
      cell(k('share_of_all'), total ? g.weighted_tokens / total : 0, fmtPct(total ? g.weighted_tokens / total : 0)),
      cell(k('requests'), g.requests, fmtInt(g.requests)),
      cell(k('users'), listed + g.retired_users, fmtInt(listed) + (g.retired_users ? ' + ' + fmtInt(g.retired_users) + ' retired' : '')),
    ]));
  }
  document.querySelector('#groups tbody').replaceChildren(...rows);

  const cards = [];
  for (const g of usage.groups) {
    const list = byGroup.get(g.name).slice().sort((a, b) =>
      b.weighted_tokens - a.weighted_tokens || (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0));
    const recentTotal = base ? list.reduce((a, u) => a + Math.max(0, u.weighted_tokens - (base.users.get(u.user_id) || 0)), 0) : 0;
    const recent = u => {
      if (!base || recentTotal <= 0) return null;
      const before = base.users.get(u.user_id) || 0;
      return Math.max(0, u.weighted_tokens - before) / recentTotal;
    };
    const head = node('tr', {}, ['user', 'quota', 'served', 'served, last 10 s', 'served vs quota', 'waiting', 'running',
                                 'requests', 'weighted tokens'].map(t => node('th', {text: t})));
    const body = [];
    for (const u of list.slice(0, TOP)) {
      const k = f => ['u', g.name, u.user_id, f];
      const r = recent(u);
      const name = node('td', {}, [node('span', {cls: 'user', title: u.user_id, text: u.user_id})]);
      if (u.unknown) name.appendChild(node('span', {cls: 'tag', text: 'default'}));
      body.push(node('tr', {}, [
        name,
        cell(k('quota_share'), u.quota_share, fmtPct(u.quota_share)),
        cell(k('served_share'), u.served_share, fmtPct(u.served_share)),
        node('td', {text: r === null ? '–' : fmtPct(r)}),
        node('td', {}, [shareBar(r === null ? u.served_share : r, u.quota_share)]),
        cell(k('waiting'), u.waiting, fmtInt(u.waiting)),
        cell(k('running'), u.running, fmtInt(u.running)),
        cell(k('requests'), u.requests, fmtInt(u.requests)),
        cell(k('weighted_tokens'), u.weighted_tokens, fmtInt(u.weighted_tokens)),
      ]));
    }
    const rest = list.slice(TOP);
    if (rest.length) {
      const sum = f => rest.reduce((a, u) => a + u[f], 0);
      const k = f => ['o', g.name, f];
      body.push(node('tr', {cls: 'rest'}, [
        cell(k('count'), rest.length, fmtInt(rest.length) + ' more users'),
        cell(k('quota_share'), sum('quota_share'), fmtPct(sum('quota_share'))),
        cell(k('served_share'), sum('served_share'), fmtPct(sum('served_share'))),
        node('td', {text: ''}), node('td', {text: ''}),
        cell(k('waiting'), sum('waiting'), fmtInt(sum('waiting'))),
        cell(k('running'), sum('running'), fmtInt(sum('running'))),
        cell(k('requests'), sum('requests'), fmtInt(sum('requests'))),
        cell(k('weighted_tokens'), sum('weighted_tokens'), fmtInt(sum('weighted_tokens'))),
      ]));
    }
    if (!list.length) body.push(node('tr', {}, [node('td', {text: 'no users with an account', colspan: '9'})]));
    const limits = (config.group_limits || {})[g.name];
    cards.push(node('div', {cls: 'card', 'data-group': g.name}, [
      node('h3', {}, [node('span', {text: g.name}),
                      node('small', {text: fmtInt(list.length) + ' users listed' +
                                           (g.retired_users ? ', ' + fmtInt(g.retired_users) + ' retired (idle unknown users, in the totals)' : '') +
                                           (limits ? ' · limits ' + JSON.stringify(limits) : '')})]),
      node('table', {}, [node('thead', {}, [head]), node('tbody', {}, body)]),
    ]));
  }
  document.getElementById('cards').replaceChildren(...cards);
  document.getElementById('config-json').textContent = JSON.stringify(config, null, 2);
  document.body.setAttribute('data-polls', String(polls));
  document.body.setAttribute('data-server-time', String(now));
}

async function poll() {
  try {
    const r = await fetch('/admin/qos', {credentials: 'same-origin', cache: 'no-store'});
    if (r.status === 401 || r.status === 403) {
      status([node('span', {cls: 'bad', text: 'signed out: reload the page to sign in again'})]);
      return;
    }
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
  } catch (e) {
    status([node('span', {cls: 'bad', text: 'cannot read /admin/qos: ' + e.message + ' (retrying)'})]);
  }
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body>
</html>
)PAGE";

inline constexpr std::string_view kSignInPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiergate QoS: sign in</title>
<link rel="icon" href="data:,">
<style nonce="{{nonce}}">
body { font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:#f5f6f8; color:#1d232a;
       display:flex; justify-content:center; padding-top:12vh; margin:0; }
form { background:#fff; border:1px solid #dfe3e8; border-radius:6px; padding:20px 24px; width:420px; }
h1 { font-size:18px; margin:0 0 12px; }
input { width:100%; padding:7px; font:inherit; margin:6px 0 12px; }
.problem { color:#cf222e; }
p { color:#5f6b76; font-size:13px; }
</style>
</head>
<body>
<form method="post" action="/dashboard/login">
<h1>tiergate QoS dashboard</h1>
<div class="problem" id="problem">{{problem}}</div>
<label for="key">Admin API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button id="sign-in" type="submit">Sign in</button>
<p>The key is checked once; the browser then holds a session cookie (HttpOnly, 8 hours).
Create an admin key with <code>tiergate keys add --all-users --admin</code>.</p>
</form>
</body>
</html>
)PAGE";

}  // namespace tiergate::gateway
