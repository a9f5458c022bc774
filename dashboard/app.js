// cipc dashboard: plain JavaScript, no build step, no dependencies.
//
// Data flow: open the event stream (/events?since=0, so the broker first
// replays the history it keeps: the activity feed starts full, not empty),
// then load a snapshot (/status, /commands, /questions) and replay the events
// that arrived meanwhile, in order. Every event carries the whole changed
// object, so applying it is an upsert and the view converges. Every event id
// is applied once: the browser's EventSource reconnects by itself and sends
// Last-Event-ID, and a stream we reopen asks for `since` the last id we saw,
// so nothing is lost or shown twice across a drop; a `resync` event (the
// broker forgot what we missed) or a broker restart triggers a fresh snapshot.
//
// "Needs you" gathers what waits on the person: permission prompts of agent
// sessions (kind "permission": the tool and what it will do, Allow / Deny),
// open questions, overdue commands, peers that asked for attention and orders
// nobody online can take.
// It also drives the tab title ("(3) cipc dashboard") and, when the person
// allowed it with "Notify me", browser notifications for new items.
//
// "Leases" lists the paths sessions hold (GET /leases, then `lease` events),
// with a countdown to each expiry; a person may release one.
//
// Safety: everything that came from peers is put on the page with
// textContent / DOM APIs, never as markup (a permission prompt's command or
// file content is agent input like any other). The page's CSP forbids inline
// script, so even a mistake here could not run injected code.
'use strict';

(() => {
  // ---------- tiny DOM helpers ----------
  const $ = (id) => document.getElementById(id);

  /** Creates an element; `props` sets properties (className, textContent, dataset, on*). */
  function h(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = String(v);
        else if (k in e) e[k] = v;
        else e.setAttribute(k, String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  /** A <code> snippet inside helpful text. */
  const code = (t) => h('code', { text: t });

  function empty(...parts) {
    return h('div', { class: 'empty' }, ...parts);
  }

  function pretty(v) {
    if (v === undefined) return '';
    try {
      return JSON.stringify(v, null, 2);
    } catch (_) {
      return String(v);
    }
  }

  function oneLine(v, max = 120) {
    let s;
    try {
      s = typeof v === 'string' ? v : JSON.stringify(v);
    } catch (_) {
      s = String(v);
    }
    if (s === undefined) s = '';
    return s.length > max ? s.slice(0, max - 1) + '…' : s;
  }

  // Ids are UUID v7: the first digits are a timestamp, the last ones random,
  // so the tail tells ids apart.
  const shortId = (id) => (id ? `…${String(id).slice(-8)}` : '');

  /** How long since `ts`, as "<1 s", "12 s", "3 min", "2 h" or "4 d". */
  function since(ts) {
    const t = Date.parse(ts);
    if (Number.isNaN(t)) return '';
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 1) return '<1 s';
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr} h`;
    return `${Math.floor(hr / 24)} d`;
  }

  /** "<prefix>12 s ago" ("<prefix>just now" at first), or with another suffix "<prefix>12 s late". */
  function sinceText(ts, prefix = '', suffix = ' ago') {
    const s = since(ts);
    if (!s) return '';
    if (suffix === ' ago' && (s === '<1 s' || /^[1-4] s$/.test(s))) return `${prefix}just now`;
    return prefix + s + suffix;
  }

  /** An element showing sinceText(), kept fresh by tick(). */
  function agoEl(ts, prefix = '', cls = 'ago', suffix = ' ago') {
    if (!ts) return null;
    return h('time', {
      class: cls,
      dateTime: ts,
      title: new Date(ts).toLocaleString(),
      dataset: { ts, prefix, suffix },
      text: sinceText(ts, prefix, suffix),
    });
  }

  function clock(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return '';
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function parseJson(text, emptyValue) {
    const t = text.trim();
    if (t === '') return { ok: true, value: emptyValue };
    try {
      return { ok: true, value: JSON.parse(t) };
    } catch (e) {
      return { ok: false, error: e.message };
    }
  }

  function showError(el, msg) {
    if (msg) {
      el.textContent = msg;
      el.hidden = false;
    } else {
      el.textContent = '';
      el.hidden = true;
    }
  }

  // ---------- state ----------
  const S = {
    peers: new Map(), // id -> Peer
    commands: new Map(), // id -> Command
    channels: new Map(), // name -> ChannelInfo
    signals: new Map(), // name -> Signal
    questions: new Map(), // id -> Question
    leases: new Map(), // id -> Lease, the held ones
    leasesSupported: true, // false when the broker answers GET /leases with 404
    activity: [], // {kind, ts, text, parts}
    lastEventId: 0, // the newest event applied from this broker
    idsRestart: false, // after a resync: the next event id may be lower
    loaded: false, // the first snapshot is in
    // What the activity feed last said about each object, so an entry
    // describes the change an event brings, whatever the snapshot holds.
    seenPeers: new Map(), // id -> {status, connectedAt, attention}
    seenCommands: new Map(), // id -> {status, overdue}
    seenQuestions: new Map(), // id -> status
    seenLeases: new Map(), // id -> status
    answerNotes: new Map(), // question id -> why answering it failed
    version: '',
    startedAt: null, // broker start time (ms since epoch), to notice restarts
    selected: null, // channel being inspected
    selectedLastSeq: 0,
    activityFilter: 'all',
    commandFilter: 'all',
    tokenRequired: false,
  };
  const MAX_COMMANDS = 500;
  const MAX_ACTIVITY = 400;
  const MAX_MESSAGES = 500;
  const MAX_SEEN = 5000;
  const MAX_CLOSED_QUESTIONS = 200;
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const isOpen = (c) => c.status === 'pending' || c.status === 'delivered';

  // ---------- HTTP ----------
  class HttpError extends Error {
    constructor(status, body) {
      const msg = body && body.error && body.error.message ? body.error.message : `HTTP ${status}`;
      super(msg);
      this.status = status;
      this.code = body && body.error ? body.error.code : '';
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      if (res.status === 401 && S.tokenRequired) showLogin('Your session ended; enter the token again.');
      throw new HttpError(res.status, data);
    }
    return data;
  }

  // ---------- render scheduling ----------
  const dirty = new Set();
  let frame = 0;
  function mark(...what) {
    what.forEach((w) => dirty.add(w));
    if (!frame) frame = requestAnimationFrame(flush);
  }
  function flush() {
    frame = 0;
    const d = new Set(dirty);
    dirty.clear();
    if (d.has('peers') || d.has('commands') || d.has('questions')) renderNeeds();
    if (d.has('peers')) renderPeers();
    if (d.has('leases') || d.has('peers')) renderLeases();
    if (d.has('peers') || d.has('targets')) renderTargets();
    if (d.has('commands') || d.has('peers')) renderCommands();
    if (d.has('channels')) renderChannels();
    if (d.has('signals')) renderSignals();
    if (d.has('activity')) renderActivity();
  }

  // ---------- connection ----------
  let es = null;
  let pending = null; // events that arrived while a snapshot was loading
  let retryTimer = 0;
  let retryDelay = 1000;
  let everOpened = false;
  const EVENT_KINDS = ['peer', 'command', 'message', 'signal', 'question', 'lease', 'edit_refused', 'reset', 'resync'];

  function setConn(state, text) {
    const el = $('conn-state');
    el.className = `conn conn-${state}`;
    el.textContent = text;
    document.body.dataset.conn = state;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    setConn(everOpened ? 'reconnecting' : 'connecting', everOpened ? 'reconnecting…' : 'connecting…');
    // A stream we open sends no Last-Event-ID, so it asks with `since`: on
    // the first load 0 (the broker replays the history it keeps), later the
    // last id we applied (only what we missed). It needs a snapshot either way.
    pending = [];
    let needSnapshot = true;
    const src = new EventSource(`/events?since=${S.lastEventId}`);
    es = src;
    src.onopen = () => {
      if (src !== es) return;
      retryDelay = 1000;
      everOpened = true;
      setConn('live', 'live');
      if (needSnapshot) {
        needSnapshot = false;
        loadSnapshot();
      } else {
        // The browser reconnected by itself and resumed with Last-Event-ID.
        // If the broker restarted meanwhile, its event ids started over: start afresh.
        checkRestart();
      }
    };
    src.onerror = () => {
      if (src !== es) return;
      if (src.readyState === EventSource.CONNECTING) {
        setConn('reconnecting', 'reconnecting…');
        return;
      }
      // CLOSED: the broker answered with an error (401, 429, …) or is gone.
      setConn('reconnecting', 'reconnecting…');
      src.close();
      checkSession().then((ok) => {
        if (ok) {
          retryTimer = setTimeout(connect, retryDelay);
          retryDelay = Math.min(retryDelay * 2, 15000);
        }
      });
    };
    for (const kind of EVENT_KINDS) {
      src.addEventListener(kind, (ev) => {
        if (src !== es) return;
        let data = null;
        try {
          data = JSON.parse(ev.data);
        } catch (_) {
          return;
        }
        // A resync carries no id (the browser then repeats the previous one).
        const id = kind === 'resync' ? 0 : Number(ev.lastEventId) || 0;
        if (pending) pending.push([kind, data, id]);
        else apply(kind, data, id);
      });
    }
  }

  async function checkSession() {
    try {
      const r = await fetch('/dashboard/login', { credentials: 'same-origin', cache: 'no-store' });
      const info = await r.json();
      S.tokenRequired = !!info.tokenRequired;
      if (!info.authorized) {
        showLogin(everOpened ? 'Your session ended (did the broker restart?); enter the token again.' : '');
        return false;
      }
      return true;
    } catch (_) {
      return true; // the broker is unreachable: keep retrying
    }
  }

  const restarted = (started) => S.startedAt !== null && Math.abs(started - S.startedAt) > 5000;

  async function checkRestart() {
    try {
      const st = await api('GET', '/status');
      if (restarted(Date.now() - st.uptimeMs)) {
        addActivity('system', null, ['The broker restarted; reloading its state']);
        connect();
      }
    } catch (_) {
      /* the stream's own error handling takes over */
    }
  }

  async function loadSnapshot() {
    const src = es;
    try {
      // Open commands are loaded apart from the recent ones, so an old order
      // still waiting (overdue, or for a role nobody holds) is never missed.
      const [st, cmds, waiting, late, chans, qs, ls] = await Promise.all([
        api('GET', '/status'),
        api('GET', '/commands?limit=200'),
        api('GET', '/commands?status=pending&limit=1000'),
        api('GET', '/commands?status=delivered&overdue=true&limit=1000'),
        api('GET', '/channels'),
        api('GET', '/questions?status=open'),
        // A broker without leases answers 404: the panel says so.
        api('GET', '/leases').catch((e) => {
          if (e instanceof HttpError && e.status === 404) return null;
          throw e;
        }),
      ]);
      if (src !== es) return;
      const started = Date.now() - st.uptimeMs;
      if (restarted(started)) {
        // A new broker numbers its events from 1 again.
        S.lastEventId = 0;
        forgetSeen();
      }
      S.version = st.version;
      S.startedAt = started;
      $('broker-meta').textContent = `v${st.version}`;
      S.peers.clear();
      S.commands.clear();
      S.channels.clear();
      S.signals.clear();
      S.questions.clear();
      S.leases.clear();
      S.leasesSupported = ls !== null;
      for (const p of st.peers) S.peers.set(p.id, p);
      for (const list of [st.commands.recent, cmds.commands, waiting.commands, late.commands]) {
        for (const c of list) S.commands.set(c.id, c);
      }
      for (const c of chans.channels) S.channels.set(c.name, c);
      for (const s of st.signals) S.signals.set(s.name, s);
      for (const q of qs.questions) S.questions.set(q.id, q);
      if (ls) for (const l of ls.leases) if (l.status === 'held') S.leases.set(l.id, l);
      const replay = pending || [];
      pending = null;
      catchingUp = true;
      try {
        for (const [kind, data, id] of replay) apply(kind, data, id, true);
      } finally {
        catchingUp = false;
      }
      S.loaded = true;
      if (S.selected) openChannel(S.selected);
      mark('peers', 'commands', 'channels', 'signals', 'questions', 'leases', 'activity');
    } catch (e) {
      if (src !== es) return;
      pending = null;
      if (!(e instanceof HttpError && e.status === 401)) {
        addActivity('system', null, [`Could not load the broker's state: ${e.message}`]);
        retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 15000);
      }
    }
  }

  // ---------- applying events ----------
  function apply(kind, data, id = 0, replaying = false) {
    if (kind === 'resync') {
      // The broker could not resume from our id (it forgot, or restarted and
      // numbers its events from 1 again): the ids that follow start afresh.
      S.idsRestart = true;
    } else if (id) {
      // Each event once: a resumed or reopened stream never repeats one.
      if (id <= S.lastEventId && !S.idsRestart) return undefined;
      S.lastEventId = id;
      S.idsRestart = false;
    }
    switch (kind) {
      case 'peer':
        return applyPeer(data);
      case 'command':
        return applyCommand(data);
      case 'message':
        return applyMessage(data);
      case 'signal':
        return applySignal(data);
      case 'question':
        return applyQuestion(data);
      case 'lease':
        return applyLease(data);
      case 'edit_refused':
        return applyEditRefused(data);
      case 'reset':
        return applyReset();
      case 'resync':
        if (!replaying) {
          addActivity('system', null, ['Missed some events; reloading the state']);
          pending = [];
          loadSnapshot();
        }
        return undefined;
      default:
        return undefined;
    }
  }

  // True while events that arrived during a snapshot load are applied on top
  // of it: the snapshot may be newer than they are, so it says nothing about
  // what an event changed. Live, an object the feed has not described yet is
  // compared with what the page shows.
  let catchingUp = false;

  /** Records what the feed last said about `key`, keeping the map bounded. */
  function remember(map, key, value) {
    map.delete(key);
    map.set(key, value);
    if (map.size > MAX_SEEN) map.delete(map.keys().next().value);
  }

  function forgetSeen() {
    S.seenPeers.clear();
    S.seenCommands.clear();
    S.seenQuestions.clear();
    S.seenLeases.clear();
  }

  function peerLabel(p) {
    if (!p) return '';
    return p.name ? `${p.role} (${p.name})` : p.role;
  }

  function applyPeer(p) {
    if (p.forgotten) {
      // Offline too long (or evicted by the peer cap): gone for good.
      S.seenPeers.delete(p.id);
      if (S.peers.delete(p.id)) mark('peers');
      return;
    }
    const cur = S.peers.get(p.id);
    // Heartbeats refresh lastSeen without an event: an older event (from the
    // history replayed on load) must not turn the clock back.
    if (cur && Date.parse(cur.lastSeen) > Date.parse(p.lastSeen)) p = { ...p, lastSeen: cur.lastSeen };
    S.peers.set(p.id, p);
    const prev = S.seenPeers.get(p.id) || (!catchingUp && cur ? { status: cur.status, connectedAt: cur.connectedAt, attention: cur.attention || '' } : undefined);
    const attention = p.attention || '';
    remember(S.seenPeers, p.id, { status: p.status, connectedAt: p.connectedAt, attention });
    const who = strong(peerLabel(p));
    if (!prev) {
      // First news of this peer: a connect if it just connected, else only a non-online status.
      const fresh = Math.abs(Date.parse(p.lastSeen) - Date.parse(p.connectedAt)) < 2000;
      if (p.status === 'online' && fresh) addActivity('peer', p.connectedAt, [who, ` connected via ${p.via || 'http'}`]);
      else if (p.status !== 'online') addActivity('peer', p.lastSeen, [who, ` is now ${p.status}`]);
    } else if (prev.status !== p.status) addActivity('peer', p.lastSeen, [who, ` is now ${p.status}`]);
    else if (prev.connectedAt !== p.connectedAt) addActivity('peer', p.lastSeen, [who, ' reconnected']);
    if (attention && attention !== (prev ? prev.attention : '')) {
      addActivity('peer', p.lastSeen, [strong(peerLabel(p)), ' needs you: ', h('span', { class: 'mono', text: oneLine(attention, 100) })]);
    }
    mark('peers');
  }

  const strong = (t) => h('strong', { text: t });

  function targetLabel(target) {
    const p = S.peers.get(target);
    return p ? peerLabel(p) : target;
  }

  function applyCommand(c) {
    const cur = S.commands.get(c.id);
    S.commands.set(c.id, c);
    if (S.commands.size > MAX_COMMANDS) {
      // Forget the oldest finished ones; open commands stay (they may need the person).
      const done = [...S.commands.values()].filter((x) => !isOpen(x)).map((x) => x.id).sort();
      for (const id of done.slice(0, S.commands.size - MAX_COMMANDS)) S.commands.delete(id);
    }
    const prev = S.seenCommands.get(c.id) || (!catchingUp && cur ? { status: cur.status, overdue: !!cur.overdue } : undefined);
    remember(S.seenCommands, c.id, { status: c.status, overdue: !!c.overdue });
    if (!prev || prev.status !== c.status) {
      const act = strong(c.action);
      let parts;
      switch (c.status) {
        case 'pending':
          parts = prev
            ? [act, ` is pending again for ${targetLabel(c.target)}`]
            : [act, ` sent by ${c.from} to ${targetLabel(c.target)}`];
          break;
        case 'delivered':
          parts = [act, ` delivered to ${targetLabel(c.deliveredTo)}`];
          break;
        case 'acked':
          parts = [act, ' acked', c.result !== undefined ? `: ${oneLine(c.result, 80)}` : ''];
          break;
        case 'failed':
          parts = [act, ` failed: ${oneLine(c.error || '', 80)}`];
          break;
        case 'cancelled':
          parts = [act, ' cancelled'];
          break;
        case 'expired':
          parts = [act, ' expired before anyone took it'];
          break;
        default:
          parts = [act, ` is ${c.status}`];
      }
      addActivity('command', c.ackedAt || c.deliveredAt || c.createdAt, parts);
    }
    if (c.overdue && isOpen(c) && !(prev && prev.overdue)) {
      addActivity('command', c.deadline, [strong(c.action), ` is overdue (for ${targetLabel(c.target)})`]);
    }
    // Peers show what they work on, which follows their commands.
    mark('commands', 'peers');
  }

  function applyMessage(m) {
    const info = S.channels.get(m.channel) || { name: m.channel, count: 0, firstSeq: m.seq, lastSeq: 0 };
    if (m.seq > info.lastSeq) {
      info.count += 1;
      info.lastSeq = m.seq;
      info.lastAt = m.sentAt;
    }
    S.channels.set(m.channel, info);
    addActivity('message', m.sentAt, [strong(`#${m.channel}`), ` ${m.from ? `from ${targetLabel(m.from)} ` : ''}`, h('span', { class: 'mono', text: oneLine(m.data, 90) })]);
    if (S.selected === m.channel) appendMessage(m);
    mark('channels');
  }

  function applySignal(s) {
    S.signals.set(s.name, s);
    if (s.emitted) addActivity('signal', s.emittedAt, [strong(s.name), ` emitted (#${s.count})`, s.data !== undefined ? h('span', { class: 'mono', text: ` ${oneLine(s.data, 80)}` }) : '']);
    else addActivity('signal', null, [strong(s.name), ' cleared']);
    mark('signals');
  }

  function applyQuestion(q) {
    const cur = S.questions.get(q.id);
    S.questions.set(q.id, q);
    const closed = [...S.questions.values()].filter((x) => x.status !== 'open');
    if (closed.length > MAX_CLOSED_QUESTIONS) {
      closed.sort((a, b) => (a.id < b.id ? -1 : 1));
      for (const x of closed.slice(0, closed.length - MAX_CLOSED_QUESTIONS)) {
        if (!S.answerNotes.has(x.id)) S.questions.delete(x.id);
      }
    }
    const prev = S.seenQuestions.get(q.id) || (!catchingUp && cur ? cur.status : undefined);
    remember(S.seenQuestions, q.id, q.status);
    if (prev !== q.status && q.kind === 'permission') permissionActivity(q);
    else if (prev !== q.status) {
      const asker = strong(targetLabel(q.from));
      const text = h('span', { class: 'mono', text: oneLine(q.text, 90) });
      switch (q.status) {
        case 'open':
          addActivity('question', q.createdAt, [asker, ' asks: ', text]);
          break;
        case 'answered':
          addActivity('question', q.answeredAt, [strong(q.answeredBy || 'someone'), ' answered ', asker, ': ', h('span', { class: 'mono', text: oneLine(q.answer || '', 80) })]);
          break;
        case 'cancelled':
          addActivity('question', q.answeredAt, [asker, ' withdrew a question: ', text]);
          break;
        default:
          addActivity('question', q.answeredAt, [asker, `'s question is ${q.status}: `, text]);
      }
    }
    mark('questions');
  }

  /** The feed's line for a permission prompt: asked, allowed or denied (who, the tool, the note), withdrawn, expired. */
  function permissionActivity(q) {
    const { tool, detail } = permSummary(q.context);
    const who = strong(askerOf(q).label);
    const what = [strong(tool), detail ? ': ' : '', detail ? h('span', { class: 'mono', text: oneLine(detail, 90) }) : ''];
    switch (q.status) {
      case 'open':
        addActivity('permission', q.createdAt, [who, ' asks to use ', ...what]);
        break;
      case 'answered': {
        const verdict = q.answer === 'allow' ? 'allowed' : q.answer === 'deny' ? 'denied' : `answered “${oneLine(q.answer || '', 40)}” to`;
        addActivity('permission', q.answeredAt, [
          strong(q.answeredBy || 'someone'), ' ',
          h('span', { class: `verdict verdict-${q.answer === 'allow' ? 'allow' : 'deny'}`, text: verdict }), ' ',
          who, ' ', ...what,
          q.note ? h('span', { class: 'act-note' }, ' · note: ', h('q', { text: oneLine(q.note, 200) })) : '',
        ]);
        break;
      }
      case 'cancelled':
        addActivity('permission', q.answeredAt, [who, ' moved on; its request to use ', ...what, ' was withdrawn']);
        break;
      default:
        addActivity('permission', q.answeredAt, [who, `'s request to use `, ...what, ` is ${q.status}`]);
    }
  }

  // ---------- leases ----------
  function applyLease(l) {
    const cur = S.leases.get(l.id);
    if (l.status === 'held') S.leases.set(l.id, l);
    else S.leases.delete(l.id);
    const prev = S.seenLeases.get(l.id) || (!catchingUp && cur ? cur.status : undefined);
    remember(S.seenLeases, l.id, l.status);
    if (prev !== l.status) {
      const holder = strong(leaseHolderLabel(l));
      const paths = h('span', { class: 'mono', text: oneLine(l.paths.join(', '), 90) });
      switch (l.status) {
        case 'held':
          addActivity('lease', l.createdAt, [holder, l.exclusive ? ' leased ' : ' shares ', paths, ` in ${l.repo}`, l.reason ? ` · ${oneLine(l.reason, 80)}` : '']);
          break;
        case 'released':
          addActivity('lease', l.releasedAt, [holder, '’s lease on ', paths, ` in ${l.repo} was released`]);
          break;
        case 'expired':
          addActivity('lease', l.releasedAt || l.expiresAt, [holder, '’s lease on ', paths, ` in ${l.repo} expired`]);
          break;
        default:
          addActivity('lease', l.releasedAt, [holder, '’s lease on ', paths, ` is ${l.status}`]);
      }
    }
    mark('leases');
  }

  // A session's hook refused an edit of a leased path: who, what, and whose
  // lease was in the way. Nothing in the state changes.
  function applyEditRefused(r) {
    const who = strong(r.peerName ? `${r.peerRole} (${r.peerName})` : r.peerRole || 'a session');
    const paths = h('span', { class: 'mono', text: oneLine((r.paths || []).join(', '), 90) });
    const parts = [who, ` was refused ${r.tool || 'an edit'} of `, paths];
    const l = (r.leases || [])[0];
    if (l) {
      parts.push(': held by ', strong(leaseHolderLabel(l)));
      if (l.reason) parts.push(` · ${oneLine(l.reason, 80)}`);
    }
    addActivity('lease', r.at, parts);
  }

  function applyReset() {
    S.peers.clear();
    S.commands.clear();
    S.channels.clear();
    S.signals.clear();
    S.questions.clear();
    S.leases.clear();
    S.answerNotes.clear();
    forgetSeen();
    S.activity = [];
    closeChannel();
    addActivity('system', null, ['The broker was reset: everything was cleared']);
    mark('peers', 'commands', 'channels', 'signals', 'questions', 'leases', 'activity');
  }

  // ---------- activity ----------
  const ACTIVITY_KINDS = [
    ['all', 'All'],
    ['peer', 'Peers'],
    ['command', 'Commands'],
    ['message', 'Messages'],
    ['signal', 'Signals'],
    ['question', 'Questions'],
    ['permission', 'Permissions'],
    ['lease', 'Leases'],
    ['system', 'System'],
  ];

  function addActivity(kind, ts, parts) {
    S.activity.unshift({ kind, ts: ts || new Date().toISOString(), parts });
    if (S.activity.length > MAX_ACTIVITY) S.activity.length = MAX_ACTIVITY;
    mark('activity');
  }

  function renderFilterChips(container, kinds, current, onPick) {
    container.replaceChildren(
      ...kinds.map(([k, label]) =>
        h('button', {
          type: 'button',
          class: `chip${current === k ? ' chip-on' : ''}`,
          'aria-pressed': String(current === k),
          dataset: { kind: k },
          text: label,
          onclick: () => onPick(k),
        }),
      ),
    );
  }

  function renderActivity() {
    renderFilterChips($('activity-filter'), ACTIVITY_KINDS, S.activityFilter, (k) => {
      S.activityFilter = k;
      mark('activity');
    });
    const list = $('activity-list');
    const items = S.activity.filter((a) => S.activityFilter === 'all' || a.kind === S.activityFilter);
    if (items.length === 0) {
      list.replaceChildren(h('li', { class: 'empty' }, S.activity.length ? 'Nothing of this kind yet.' : 'Waiting for activity: connects, commands, messages, signals and questions show up here as they happen.'));
      return;
    }
    list.replaceChildren(
      ...items.map((a) =>
        h('li', { class: `act act-${a.kind}`, dataset: { kind: a.kind } },
          h('time', { class: 'act-time', dateTime: a.ts, title: new Date(a.ts).toLocaleString(), text: clock(a.ts) }),
          h('span', { class: `tag tag-${a.kind}`, text: a.kind }),
          // parts are strings (→ text nodes) or elements built with h(); never markup.
          h('span', { class: 'act-text' }, ...a.parts.map((p) => (p instanceof Node ? p.cloneNode(true) : p))),
        ),
      ),
    );
  }

  // ---------- needs you ----------
  // What waits on the person, above everything else; hidden while empty.
  const baseTitle = document.title;
  const needEls = new Map(); // item key -> {sig, el}: cards are kept while unchanged, so a half-typed answer survives updates
  const needsSeen = new Set(); // item keys already there (on load) or announced
  let needsPrimed = false;
  const answering = new Set(); // question ids with an answer on its way
  let focusNext = null; // where the keyboard goes once an answered card is gone

  function onlineRoles() {
    const roles = new Set();
    for (const p of S.peers.values()) if (p.status === 'online') roles.add(p.role);
    return roles;
  }

  /** Everything that needs the person, most pressing first. */
  function collectNeeds() {
    const items = [];
    const questions = [...S.questions.values()]
      .filter((q) => q.status === 'open' || answering.has(q.id) || S.answerNotes.has(q.id))
      .sort((a, b) => (a.id < b.id ? -1 : 1)); // UUID v7: in the order asked
    const asking = new Set(); // peers with an open permission prompt: its card says why they wait
    for (const q of questions) {
      const live = q.status === 'open' || answering.has(q.id);
      if (q.kind === 'permission') {
        const who = askerOf(q);
        const { tool, detail } = permSummary(q.context);
        if (q.peer && q.status === 'open') asking.add(q.peer);
        items.push({
          key: `q:${q.id}`,
          kind: 'permission',
          counts: q.status === 'open',
          // Rebuilt when the session's label, agent or status changes (a
          // half-typed reason is carried over), not on every update.
          sig: JSON.stringify([live ? 'open' : `closed ${S.answerNotes.get(q.id) || ''}`, who.label, who.agent || '', who.peer ? who.peer.status : '']),
          build: () => permissionCard(q, live),
          note: { title: `${who.label} asks to use ${tool}`, body: detail || q.text },
        });
        continue;
      }
      items.push({
        key: `q:${q.id}`,
        kind: 'question',
        counts: q.status === 'open',
        sig: live ? 'open' : `closed ${S.answerNotes.get(q.id) || ''}`,
        build: () => questionCard(q, live),
        note: { title: `${targetLabel(q.from)} asks`, body: q.text },
      });
    }
    const roles = onlineRoles();
    const late = [];
    const orphans = [];
    for (const c of S.commands.values()) {
      if (!isOpen(c)) continue;
      if (c.overdue) late.push(c);
      else if (c.status === 'pending' && c.target !== '*' && !UUID_RE.test(c.target) && !roles.has(c.target)) orphans.push(c);
    }
    late.sort((a, b) => String(a.deadline || '').localeCompare(String(b.deadline || '')) || (a.id < b.id ? -1 : 1));
    for (const c of late) {
      const holder = c.deliveredTo ? S.peers.get(c.deliveredTo) : null;
      const held = c.status === 'delivered' ? `held by ${holder ? peerLabel(holder) : shortId(c.deliveredTo)}` : roles.has(c.target) || UUID_RE.test(c.target) ? 'nobody has taken it yet' : `nobody online holds ${c.target}`;
      items.push({
        key: `o:${c.id}`,
        kind: 'overdue',
        counts: true,
        sig: JSON.stringify([c.status, held, targetLabel(c.target)]),
        build: () => overdueCard(c, held),
        note: { title: `Overdue: ${c.action}`, body: `${targetLabel(c.target)} · ${held}` },
      });
    }
    const waiting = [...S.peers.values()]
      .filter((p) => p.attention && !asking.has(p.id))
      .sort((a, b) => (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3) || a.role.localeCompare(b.role));
    for (const p of waiting) {
      items.push({
        key: `a:${p.id}:${p.attention}`,
        kind: 'attention',
        counts: true,
        sig: JSON.stringify([p.status, peerLabel(p)]),
        build: () => attentionCard(p),
        note: { title: `${peerLabel(p)} needs you`, body: p.attention },
      });
    }
    orphans.sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const c of orphans) {
      items.push({
        key: `u:${c.id}`,
        kind: 'orphan',
        counts: true,
        sig: '',
        build: () => orphanCard(c),
        note: { title: `Nobody can take ${c.action}`, body: `No one online holds the role ${c.target}.` },
      });
    }
    return items;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  function renderNeeds() {
    const items = collectNeeds();
    const count = items.filter((i) => i.counts).length;
    document.title = count ? `(${count}) ${baseTitle}` : baseTitle;
    const box = $('needs-you');
    box.hidden = items.length === 0;
    $('needs-count').textContent = String(count);
    const by = (k) => items.filter((i) => i.counts && i.kind === k).length;
    const parts = [];
    if (by('permission')) parts.push(plural(by('permission'), 'permission request', 'permission requests'));
    if (by('question')) parts.push(plural(by('question'), 'question', 'questions'));
    if (by('overdue')) parts.push(plural(by('overdue'), 'overdue command', 'overdue commands'));
    if (by('attention')) parts.push(plural(by('attention'), 'session waiting', 'sessions waiting'));
    if (by('orphan')) parts.push(plural(by('orphan'), 'order nobody can take', 'orders nobody can take'));
    $('needs-summary').textContent = parts.join(' · ');
    // Keyed update: unchanged cards stay as they are (focus, typed text).
    const list = $('needs-list');
    const keep = new Set();
    let refocus = null;
    const els = items.map((it) => {
      keep.add(it.key);
      let e = needEls.get(it.key);
      if (!e || e.sig !== it.sig) {
        const old = e && e.el;
        e = { sig: it.sig, el: it.build() };
        needEls.set(it.key, e);
        // A card rebuilt while open keeps what was typed in it, and the focus.
        if (old) refocus = carryOver(old, e.el) || refocus;
      }
      return e.el;
    });
    for (const k of [...needEls.keys()]) if (!keep.has(k)) needEls.delete(k);
    els.forEach((el, i) => {
      if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
    });
    while (list.children.length > els.length) list.lastElementChild.remove();
    if (refocus && refocus.isConnected) {
      refocus.focus({ preventScroll: true });
      const [from, to] = (refocus.dataset.sel || '').split(',').map(Number);
      if (Number.isFinite(from)) refocus.setSelectionRange(from, to);
    }
    if (focusNext && (!document.activeElement || document.activeElement === document.body)) {
      (focusNext.isConnected ? focusNext : $('needs-h')).focus({ preventScroll: true });
      focusNext = null;
    }
    notifyNew(items);
  }

  /** Copies typed text from a card's old element to its new one; answers the new field if the old one had the focus. */
  function carryOver(from, to) {
    let focus = null;
    for (const sel of ['.perm-note', '.answer-input']) {
      const a = from.querySelector(sel);
      const b = to.querySelector(sel);
      if (!a || !b || b.disabled) continue;
      b.value = a.value;
      if (document.activeElement === a) {
        focus = b;
        b.dataset.sel = `${a.selectionStart ?? a.value.length},${a.selectionEnd ?? a.value.length}`;
      }
    }
    return focus;
  }

  function needTop(kind, label, ...rest) {
    return h('div', { class: 'need-top' }, h('span', { class: `need-kind need-kind-${kind}`, text: label }), ...rest);
  }

  function contextEl(ctx) {
    if (ctx === undefined || ctx === null) return null;
    const text = typeof ctx === 'string' ? ctx : pretty(ctx);
    if (text.length <= 160 && text.split('\n').length <= 4) {
      return h('div', { class: 'need-context' }, h('span', { class: 'label', text: 'context' }), h('pre', { class: 'json', text }));
    }
    return h('details', { class: 'json-box need-context' },
      h('summary', { text: `context ${oneLine(ctx, 70)}` }),
      h('pre', { class: 'json', text }));
  }

  function questionCard(q, live) {
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const textId = `q-text-${q.id}`;
    const card = h('article', { class: `card need need-question${live ? '' : ' need-closed'}`, dataset: { id: q.id, kind: 'question' }, 'aria-labelledby': textId });
    let controls;
    if (!live) {
      controls = h('div', { class: 'need-actions' },
        h('p', { class: 'need-outcome', role: 'alert', text: S.answerNotes.get(q.id) || '' }),
        h('button', { type: 'button', class: 'btn btn-small btn-ghost need-dismiss', text: 'Dismiss', onclick: () => dismissNote(q.id) }));
    } else if (q.choices && q.choices.length) {
      controls = h('div', { class: 'choices', role: 'group', 'aria-label': 'Answers' },
        ...q.choices.map((c) =>
          h('button', { type: 'button', class: 'btn choice', dataset: { choice: c }, text: c, title: `Answer “${c}”`, onclick: () => answerQuestion(q, c, card, err) })));
    } else {
      const input = h('input', { class: 'answer-input', type: 'text', placeholder: 'Your answer', autocomplete: 'off', 'aria-label': 'Your answer', maxLength: 10000 });
      controls = h('form', { class: 'answer-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); answerQuestion(q, input.value, card, err); } },
        input,
        h('button', { type: 'submit', class: 'btn btn-primary answer-send', text: 'Answer' }));
    }
    // DOM append, unlike h(), would write a null (no context) as "null".
    card.append(...[
      needTop('question', 'Question',
        h('span', { class: 'need-who' }, 'from ', strong(targetLabel(q.from))),
        h('span', { class: 'spacer' }),
        agoEl(q.createdAt, 'asked ', 'ago muted')),
      h('p', { class: 'need-text', id: textId, text: q.text }),
      contextEl(q.context),
      controls,
      err,
    ].filter(Boolean));
    return card;
  }

  // ---------- permission prompts ----------
  // A Claude Code session asks to use a tool (kind "permission"; context
  // {tool, input, cwd, session}, input as Claude Code gives it). The card
  // says which session, the tool and exactly what it will do; everything in
  // it is agent input, so it is all text (h() sets textContent).

  const AGENTS = { 'claude-code': 'Claude Code', codex: 'Codex' };
  const knownAgent = (a) => Object.prototype.hasOwnProperty.call(AGENTS, a);
  const agentLabel = (a) => (knownAgent(a) ? AGENTS[a] : String(a));

  /** An agent tag ("Claude Code"), or null when the peer did not say. */
  function agentTag(agent) {
    if (!agent) return null;
    return h('span', { class: `agent agent-${knownAgent(agent) ? agent : 'other'}`, title: `this session is ${agentLabel(agent)}`, text: agentLabel(agent) });
  }

  /** Who asks: the live peer named by `peer` (role, name, agent), else the question's `from`. */
  function askerOf(q) {
    const p = q.peer ? S.peers.get(q.peer) : null;
    return p ? { label: peerLabel(p), agent: p.agent, peer: p } : { label: targetLabel(q.from), agent: undefined, peer: null };
  }

  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  /** A value of untrusted shape as text: strings as they are, anything else as JSON. */
  const str = (v) => (typeof v === 'string' ? v : pretty(v));
  const lineCount = (t) => (t === '' ? 0 : t.split('\n').length);

  /** The files a Codex patch adds, changes, deletes or moves to, once each. */
  function patchFiles(patch) {
    const out = [];
    for (const line of str(patch).split('\n')) {
      const m = /^\*\*\* (?:Add File|Update File|Delete File|Move to): (.+)$/.exec(line);
      if (m && m[1].trim() && !out.includes(m[1].trim())) out.push(m[1].trim());
    }
    return out;
  }

  /** The tool and the one thing that says what it will do (command, file, URL, query). */
  function permSummary(ctx) {
    const c = isObj(ctx) ? ctx : {};
    const tool = typeof c.tool === 'string' && c.tool ? c.tool : 'a tool';
    const i = isObj(c.input) ? c.input : {};
    const pick = (k) => (typeof i[k] === 'string' ? i[k] : '');
    let detail;
    switch (tool) {
      case 'Bash':
        detail = pick('command');
        break;
      case 'Edit':
      case 'MultiEdit':
      case 'Write':
        detail = pick('file_path');
        break;
      case 'NotebookEdit':
        detail = pick('notebook_path');
        break;
      case 'apply_patch':
        detail = patchFiles(pick('command')).join(', ');
        break;
      case 'WebFetch':
        detail = pick('url');
        break;
      case 'WebSearch':
        detail = pick('query');
        break;
      default:
        detail = c.input === undefined ? '' : oneLine(c.input, 200);
    }
    return { tool, detail };
  }

  /** A labelled part of a permission card. */
  function permField(label, ...value) {
    return h('div', { class: 'perm-field' }, h('span', { class: 'label', text: label }), ...value);
  }

  /** A <pre> of agent text: whole (never cut), scrollable when long, reachable by keyboard to scroll. */
  function permPre(text, label, cls = '') {
    return h('pre', { class: `perm-code ${cls}`.trim(), tabIndex: 0, 'aria-label': label, text });
  }

  /** A before/after block: the old text's lines marked removed, the new ones added (the marks are CSS, so copied text stays exact). */
  function diffBlock(oldText, newText) {
    const side = (t, cls, label) =>
      h('div', { class: `diff-side ${cls}` },
        h('span', { class: 'label', text: label }),
        h('pre', { class: 'diff-lines', tabIndex: 0, 'aria-label': `${label} text` },
          ...(t === '' ? [h('span', { class: 'dl dl-empty', text: '(nothing)' })] : t.split('\n').map((l) => h('span', { class: 'dl', text: l })))));
    return h('div', { class: 'diff' }, side(str(oldText ?? ''), 'diff-old', 'before'), side(str(newText ?? ''), 'diff-new', 'after'));
  }

  /** What the tool will do, by tool; anything unknown (MCP tools, new ones) as pretty JSON. */
  function permissionBody(tool, input) {
    const i = isObj(input) ? input : null;
    const has = (k) => i && typeof i[k] === 'string';
    const path = (k, label) => permField(label, h('span', { class: 'mono perm-path', text: i[k] }));
    if (tool === 'Bash' && has('command')) {
      const extra = [];
      if (i.run_in_background === true) extra.push('in the background');
      if (typeof i.timeout === 'number') extra.push(`timeout ${Math.round(i.timeout / 1000)} s`);
      return [
        has('description') && i.description ? h('p', { class: 'perm-desc', text: i.description }) : null,
        permField('command', permPre(i.command, 'Command', 'perm-command')),
        extra.length ? h('p', { class: 'perm-meta muted', text: extra.join(' · ') }) : null,
      ];
    }
    if (tool === 'Edit' && has('file_path')) {
      return [
        path('file_path', 'file'),
        i.replace_all === true ? h('p', { class: 'perm-meta muted', text: 'every occurrence (replace_all)' }) : null,
        diffBlock(i.old_string, i.new_string),
      ];
    }
    if (tool === 'MultiEdit' && has('file_path') && Array.isArray(i.edits)) {
      const n = i.edits.length;
      return [
        path('file_path', 'file'),
        ...i.edits.map((e, k) => {
          const ed = isObj(e) ? e : {};
          return h('div', { class: 'perm-edit' },
            h('span', { class: 'label', text: `edit ${k + 1} of ${n}${ed.replace_all === true ? ' · every occurrence' : ''}` }),
            diffBlock(ed.old_string, ed.new_string));
        }),
      ];
    }
    if (tool === 'Write' && has('file_path')) {
      const content = str(i.content ?? '');
      return [
        path('file_path', 'file'),
        permField(`content · ${plural(lineCount(content), 'line', 'lines')}`, permPre(content, 'File content', 'perm-content')),
      ];
    }
    if (tool === 'NotebookEdit' && has('notebook_path')) {
      const cell = [i.edit_mode, i.cell_type, i.cell_id !== undefined ? `cell ${str(i.cell_id)}` : ''].filter((x) => typeof x === 'string' && x);
      return [
        path('notebook_path', 'notebook'),
        cell.length ? h('p', { class: 'perm-meta muted', text: cell.join(' · ') }) : null,
        i.edit_mode === 'delete' ? null : permField('new source', permPre(str(i.new_source ?? ''), 'New cell source', 'perm-content')),
      ];
    }
    if (tool === 'apply_patch' && has('command')) {
      // Codex's edits: one patch, any number of files.
      const files = patchFiles(i.command);
      return [
        files.length ? permField(files.length === 1 ? 'file' : 'files', h('span', { class: 'mono perm-path', text: files.join(', ') })) : null,
        permField(`patch · ${plural(lineCount(i.command), 'line', 'lines')}`, permPre(i.command, 'Patch', 'perm-content')),
      ];
    }
    if (tool === 'WebFetch' && has('url')) {
      // The URL as text, not a link: one click should not open what an agent chose.
      return [
        permField('url', h('span', { class: 'mono perm-url', text: i.url })),
        i.prompt !== undefined ? permField('prompt', h('p', { class: 'perm-desc', text: str(i.prompt) })) : null,
      ];
    }
    if (tool === 'WebSearch' && has('query')) {
      return [
        permField('query', h('span', { class: 'perm-query', text: i.query })),
        Array.isArray(i.allowed_domains) && i.allowed_domains.length ? permField('only', h('span', { class: 'mono', text: i.allowed_domains.map(str).join(', ') })) : null,
        Array.isArray(i.blocked_domains) && i.blocked_domains.length ? permField('not', h('span', { class: 'mono', text: i.blocked_domains.map(str).join(', ') })) : null,
      ];
    }
    return [input === undefined ? null : permField('input', permPre(pretty(input), 'Tool input', 'json'))];
  }

  /** What the headline says the tool will do. */
  function permVerb(tool, input) {
    const i = isObj(input) ? input : {};
    const mcp = /^mcp__(.+?)__(.+)$/.exec(tool);
    if (mcp) return `call ${mcp[2]} on the MCP server ${mcp[1]}`;
    switch (tool) {
      case 'Bash':
        return 'run a command';
      case 'Edit':
        return 'edit a file';
      case 'MultiEdit':
        return Array.isArray(i.edits) ? `make ${plural(i.edits.length, 'edit', 'edits')} to a file` : 'edit a file';
      case 'Write':
        return 'write a file';
      case 'NotebookEdit':
        return 'edit a notebook';
      case 'apply_patch':
        return 'change files with a patch';
      case 'WebFetch':
        return 'fetch a URL';
      case 'WebSearch':
        return 'search the web';
      default:
        return 'use this tool';
    }
  }

  function permissionCard(q, live) {
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const headId = `q-text-${q.id}`;
    const ctx = isObj(q.context) ? q.context : {};
    const { tool } = permSummary(ctx);
    const known = typeof ctx.tool === 'string' && ctx.tool !== '';
    const who = askerOf(q);
    const card = h('article', {
      class: `card need need-permission${live ? '' : ' need-closed'}`,
      dataset: { id: q.id, kind: 'permission', tool },
      'aria-labelledby': headId,
    });
    let controls;
    if (!live) {
      controls = h('div', { class: 'need-actions' },
        h('p', { class: 'need-outcome', role: 'alert', text: S.answerNotes.get(q.id) || '' }),
        h('button', { type: 'button', class: 'btn btn-small btn-ghost need-dismiss', text: 'Dismiss', onclick: () => dismissNote(q.id) }));
    } else {
      const noteId = `perm-note-${q.id}`;
      const noteInput = h('input', {
        id: noteId,
        class: 'perm-note',
        type: 'text',
        placeholder: 'Reason, if you deny (optional)',
        title: 'Shown to the session as the reason it was denied',
        autocomplete: 'off',
        maxLength: 2000,
        'aria-label': `Reason for denying ${tool} to ${who.label} (optional; the session is shown it)`,
      });
      const deny = () => answerQuestion(q, 'deny', card, err, noteInput.value);
      // Enter in the note denies (a reason only makes sense with Deny);
      // Enter or Space on a focused button presses it, as buttons do.
      controls = h('form', { class: 'perm-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); deny(); } },
        h('div', { class: 'choices perm-choices', role: 'group', 'aria-label': 'Allow or deny' },
          h('button', { type: 'button', class: 'btn perm-allow', dataset: { choice: 'allow' }, text: 'Allow', 'aria-label': `Allow ${who.label} to use ${tool}`, onclick: () => answerQuestion(q, 'allow', card, err) }),
          h('button', { type: 'submit', class: 'btn perm-deny', dataset: { choice: 'deny' }, text: 'Deny', 'aria-label': `Deny ${who.label} the use of ${tool}` })),
        noteInput);
    }
    const p = who.peer;
    const parts = [
      needTop('permission', 'Permission',
        p ? h('span', { class: `dot dot-${p.status}`, title: p.status, 'aria-hidden': 'true' }) : null,
        h('span', { class: 'need-who' }, strong(who.label)),
        agentTag(who.agent),
        h('span', { class: 'spacer' }),
        agoEl(q.createdAt, 'asked ', 'ago muted')),
      known
        ? h('p', { class: 'need-text perm-head', id: headId },
          h('span', { class: 'perm-tool', text: tool }),
          h('span', { class: 'perm-verb', text: ` wants to ${permVerb(tool, ctx.input)}` }))
        : h('p', { class: 'need-text', id: headId, text: q.text }),
      // Without a tool the context has not the shape the hooks send: show it as it is.
      ...(known ? permissionBody(tool, ctx.input) : [contextEl(q.context)]),
      typeof ctx.cwd === 'string' && ctx.cwd ? h('p', { class: 'perm-meta muted' }, 'in ', h('span', { class: 'mono', text: ctx.cwd })) : null,
      controls,
      err,
    ];
    card.append(...parts.filter(Boolean));
    return card;
  }

  function closedNote(q, e) {
    if (!q) return e.message;
    if (q.status === 'answered') return `Already answered by ${q.answeredBy || 'someone'}: “${q.answer || ''}”. Nothing was changed.`;
    if (q.status === 'cancelled') return 'The asker withdrew this question before your answer arrived.';
    if (q.status === 'expired') return 'This question expired before your answer arrived.';
    return e.message;
  }

  function dismissNote(id) {
    S.answerNotes.delete(id);
    mark('questions');
  }

  async function answerQuestion(q, text, card, err, note) {
    const answer = String(text).trim();
    if (!answer) return showError(err, 'Write an answer first.');
    const body = { answer, by: 'dashboard' };
    if (note && note.trim()) body.note = note.trim();
    const controls = [...card.querySelectorAll('button, input, textarea')];
    controls.forEach((c) => (c.disabled = true));
    card.setAttribute('aria-busy', 'true');
    showError(err, '');
    answering.add(q.id);
    try {
      const r = await api('POST', `/questions/${encodeURIComponent(q.id)}/answer`, body);
      answering.delete(q.id);
      // Keyboard users go on to the next item rather than to the top of the page.
      const next = card.nextElementSibling;
      focusNext = (next && next.querySelector('button:not(:disabled), input:not(:disabled)')) || $('needs-h');
      if (r && r.question) applyQuestion(r.question);
      mark('questions');
    } catch (e) {
      answering.delete(q.id);
      if (e instanceof HttpError && (e.status === 409 || e.status === 404)) {
        // Someone was quicker (another dashboard, a peer), or it was withdrawn.
        let latest = null;
        try {
          latest = (await api('GET', `/questions/${encodeURIComponent(q.id)}`)).question;
        } catch (_) {
          /* gone: the broker's message says so */
        }
        if (latest && latest.kind === 'permission' && latest.status === 'cancelled') {
          // The session moved on (answered in its terminal, or gave up): nobody
          // waits for this prompt any more, so its card leaves at once; the
          // activity feed says so.
          const next = card.nextElementSibling;
          focusNext = (next && next.querySelector('button:not(:disabled), input:not(:disabled)')) || $('needs-h');
          applyQuestion(latest);
          mark('questions');
          return;
        }
        S.answerNotes.set(q.id, closedNote(latest, e));
        if (latest) applyQuestion(latest);
        else S.questions.set(q.id, { ...q, status: 'cancelled' });
        mark('questions');
        setTimeout(() => dismissNote(q.id), 30000);
      } else {
        controls.forEach((c) => (c.disabled = false));
        card.removeAttribute('aria-busy');
        showError(err, e.message);
        mark('questions');
      }
    }
  }

  function overdueCard(c, held) {
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    return h('article', { class: 'card need need-overdue', dataset: { id: c.id, kind: 'overdue' } },
      needTop('overdue', 'Overdue',
        h('span', { class: 'cmd-action', text: c.action }),
        h('span', { class: 'muted', text: '→' }),
        h('span', { class: 'cmd-target', title: c.target, text: targetLabel(c.target) }),
        h('span', { class: 'spacer' }),
        agoEl(c.deadline, '', 'late', ' late')),
      h('div', { class: 'need-meta muted' },
        held,
        ` · sent by ${c.from} `,
        agoEl(c.createdAt),
        ' · ',
        h('span', { class: 'mono id', title: c.id, text: shortId(c.id) })),
      h('div', { class: 'need-actions' },
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'btn btn-small need-cancel', text: 'Cancel it', 'aria-label': `Cancel ${c.action} for ${c.target}`, onclick: () => cancelCommand(c.id, err) })),
      err,
    );
  }

  function attentionCard(p) {
    return h('article', { class: 'card need need-attention', dataset: { id: p.id, kind: 'attention' } },
      needTop('attention', 'Waiting',
        h('span', { class: `dot dot-${p.status}`, title: p.status, 'aria-hidden': 'true' }),
        h('span', { class: 'need-who' }, strong(p.role), p.name ? h('span', { class: 'muted', text: ` ${p.name}` }) : null),
        agentTag(p.agent),
        h('span', { class: 'spacer' }),
        agoEl(p.lastSeen, 'seen ', 'ago muted')),
      h('p', { class: 'need-text', text: p.attention }),
      h('div', { class: 'need-actions' },
        h('span', { class: 'muted small', text: p.status === 'online' ? `${p.via || 'http'} session` : `${p.status}` }),
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'btn btn-small', text: 'Send it an order', 'aria-label': `Send ${peerLabel(p)} an order`, onclick: () => orderTo(p.id) })),
    );
  }

  function orphanCard(c) {
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    return h('article', { class: 'card need need-orphan', dataset: { id: c.id, kind: 'orphan' } },
      needTop('orphan', 'No taker',
        h('span', { class: 'cmd-action', text: c.action }),
        h('span', { class: 'muted', text: '→' }),
        h('span', { class: 'cmd-target', text: c.target }),
        h('span', { class: 'spacer' }),
        agoEl(c.createdAt, 'queued ', 'ago muted')),
      h('div', { class: 'need-meta muted', text: `Nobody online holds the role ${c.target}; sent by ${c.from}. It waits until a ${c.target} session connects.` }),
      h('div', { class: 'need-actions' },
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'btn btn-small need-cancel', text: 'Cancel it', 'aria-label': `Cancel ${c.action} for ${c.target}`, onclick: () => cancelCommand(c.id, err) })),
      err,
    );
  }

  /** Points the Command Center at `target`, ready for an action. */
  function orderTo(target) {
    $('cmd-target').value = target;
    $('cmd-form').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    $('cmd-action').focus({ preventScroll: true });
  }

  // ---------- notifications ----------
  const canNotify = typeof window.Notification === 'function';

  function notifyPref() {
    try {
      return localStorage.getItem('cipc-notify');
    } catch (_) {
      return null;
    }
  }

  function setNotifyPref(v) {
    try {
      localStorage.setItem('cipc-notify', v);
    } catch (_) {
      /* private mode: the choice lasts for this page only */
    }
  }

  // Only once the person said so with the button (never asked on load).
  const notifying = () => canNotify && Notification.permission === 'granted' && notifyPref() === 'on';

  function renderNotify() {
    const b = $('notify');
    if (!canNotify) {
      b.hidden = true;
      return;
    }
    b.hidden = false;
    const perm = Notification.permission;
    const on = notifying();
    b.textContent = perm === 'denied' ? 'Notifications blocked' : on ? 'Notifying' : 'Notify me';
    b.setAttribute('aria-pressed', String(on));
    b.disabled = perm === 'denied';
    b.classList.toggle('notify-on', on);
    b.title = perm === 'denied'
      ? 'This browser blocks notifications from this page; allow them in the site settings'
      : on
        ? 'You get a browser notification when something new needs you. Click to stop.'
        : 'Get a browser notification when something new needs you';
  }

  async function onNotify() {
    if (!canNotify) return;
    if (Notification.permission === 'granted') {
      setNotifyPref(notifying() ? 'off' : 'on');
    } else {
      let perm = Notification.permission;
      try {
        perm = await Notification.requestPermission();
      } catch (_) {
        /* keep what the browser says */
      }
      setNotifyPref(perm === 'granted' ? 'on' : 'off');
    }
    renderNotify();
  }

  function notifyNew(items) {
    if (!S.loaded) return;
    const fresh = items.filter((i) => i.counts && !needsSeen.has(i.key));
    for (const i of fresh) needsSeen.add(i.key);
    if (needsSeen.size > MAX_SEEN) {
      const now = new Set(items.map((i) => i.key));
      for (const k of [...needsSeen]) if (!now.has(k)) needsSeen.delete(k);
    }
    // What was there on load is not news.
    if (!needsPrimed) {
      needsPrimed = true;
      return;
    }
    if (fresh.length === 0 || !notifying()) return;
    const first = fresh[0].note;
    try {
      const n = new Notification(fresh.length > 1 ? `${first.title} (and ${fresh.length - 1} more)` : first.title, {
        body: oneLine(first.body, 180),
        tag: 'cipc-needs-you',
      });
      n.onclick = () => {
        window.focus();
        n.close();
      };
    } catch (_) {
      /* some browsers only notify from a service worker */
    }
  }

  // ---------- peers ----------
  const STATUS_ORDER = { online: 0, stale: 1, offline: 2 };

  function workingOn(p) {
    const ids = new Set(p.workingOn || []);
    for (const c of S.commands.values()) {
      if (c.status === 'delivered' && c.deliveredTo === p.id) ids.add(c.id);
    }
    const out = [];
    for (const id of ids) {
      const c = S.commands.get(id);
      if (c && c.status !== 'delivered') continue; // finished since
      out.push({ id, c });
    }
    return out;
  }

  function renderPeers() {
    const list = $('peers-list');
    const peers = [...S.peers.values()].sort(
      (a, b) => (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3) || a.role.localeCompare(b.role) || String(a.id).localeCompare(String(b.id)),
    );
    const online = peers.filter((p) => p.status === 'online').length;
    $('peers-count').textContent = peers.length ? `${online} online · ${peers.length} known` : '';
    if (peers.length === 0) {
      list.replaceChildren(
        empty('No peers yet: run ', code('cipc peers connect backend'), ' or connect from Claude Code (add this broker to ', code('.mcp.json'), ').'),
      );
      return;
    }
    list.replaceChildren(
      ...peers.map((p) => {
        const work = workingOn(p);
        return h('article', { class: `card peer peer-${p.status}`, dataset: { id: p.id, role: p.role } },
          h('div', { class: 'peer-top' },
            h('span', { class: `dot dot-${p.status}`, title: p.status, 'aria-hidden': 'true' }),
            h('span', { class: 'peer-role', text: p.role }),
            p.name ? h('span', { class: 'peer-name', text: p.name }) : null,
            agentTag(p.agent),
            h('span', { class: 'peer-badges' },
              h('span', { class: `badge badge-${p.via || 'http'}`, text: p.via || 'http', title: p.via === 'mcp' ? 'connected over MCP (Claude Code)' : p.via === 'hook' ? 'a Claude Code or Codex session, through its hooks (cipc claude setup, cipc codex setup)' : 'connected over HTTP (CLI, curl, scripts)' }),
              p.protected ? h('span', { class: 'badge badge-protected', text: 'key', title: 'protected: nothing is done in its name without its peer key' }) : null),
          ),
          h('div', { class: 'peer-meta' },
            h('span', { class: `status status-${p.status}`, text: p.status }),
            ' · ',
            agoEl(p.lastSeen, 'last seen '),
            ' · ',
            h('span', { class: 'mono id', title: p.id, text: shortId(p.id) }),
          ),
          p.attention
            ? h('div', { class: 'attention', role: 'status', text: `needs you: ${p.attention}` })
            : null,
          p.capabilities && p.capabilities.length
            ? h('div', { class: 'caps' }, ...p.capabilities.map((c) => h('span', { class: 'cap', text: c })))
            : null,
          work.length
            ? h('div', { class: 'working' },
              h('span', { class: 'muted', text: 'working on ' }),
              ...work.map(({ id, c }) => h('span', { class: 'work', title: id, text: c ? c.action : shortId(id) })))
            : h('div', { class: 'working muted', text: p.status === 'offline' ? 'offline' : 'idle' }),
        );
      }),
    );
  }

  // ---------- leases panel ----------
  let confirmRelease = null; // the lease whose Release waits for "Yes, release"
  const releasing = new Set(); // leases with a DELETE on its way
  const leaseErrors = new Map(); // lease id -> why releasing it failed

  /** The holder as people know it: the live peer (role, name), else the role and name the lease kept. */
  function leaseHolderLabel(l) {
    const p = S.peers.get(l.holder);
    if (p) return peerLabel(p);
    return l.holderName ? `${l.holderRole} (${l.holderName})` : l.holderRole;
  }

  /** "in 12 min" / "in 40 s" until `ts`; "now" once it passed. */
  function untilText(ts) {
    const t = Date.parse(ts);
    if (Number.isNaN(t)) return '';
    const s = Math.round((t - Date.now()) / 1000);
    if (s <= 0) return 'expiring now';
    if (s < 60) return `expires in ${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `expires in ${m} min`;
    const hr = Math.floor(m / 60);
    return `expires in ${hr} h ${m % 60} min`;
  }

  /** An element showing untilText(), kept fresh by tick(). */
  function untilEl(ts) {
    return h('time', { class: 'until', dateTime: ts, title: new Date(ts).toLocaleString(), dataset: { until: ts }, text: untilText(ts) });
  }

  function renderLeases() {
    const list = $('leases-list');
    const leases = [...S.leases.values()].sort((a, b) => a.repo.localeCompare(b.repo) || (a.id < b.id ? -1 : 1));
    $('leases-count').textContent = leases.length ? `${leases.length} held` : '';
    // A re-render keeps the keyboard where it was (Release, Yes, Keep).
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    if (leases.length === 0) {
      list.replaceChildren(
        S.leasesSupported
          ? empty('Nobody holds any paths. Sessions claim what they work on with ', code('cipc lease acquire src/api/'), ' or the MCP tool ', code('claim_paths'), '; an edit of a path another session holds is refused.')
          : empty('This broker does not keep leases.'),
      );
      return;
    }
    list.replaceChildren(...leases.map(leaseCard));
    if (focused) {
      const again = [...list.querySelectorAll('[data-focus-key]')].find((e) => e.dataset.focusKey === focused);
      if (again) again.focus({ preventScroll: true });
      else $('leases-h').focus({ preventScroll: true });
    }
  }

  function leaseCard(l) {
    const p = S.peers.get(l.holder);
    const what = l.paths.join(', ');
    const busy = releasing.has(l.id);
    let actions;
    if (confirmRelease === l.id && !busy) {
      actions = h('div', { class: 'lease-confirm', role: 'group', 'aria-label': `Release ${what}?` },
        h('span', { class: 'lease-ask', text: 'Release it? The holder may then lose work.' }),
        h('button', { type: 'button', class: 'btn btn-small btn-danger lease-yes', text: 'Yes, release', dataset: { focusKey: `yes:${l.id}` }, 'aria-label': `Yes, release ${what} held by ${leaseHolderLabel(l)}`, onclick: () => releaseLease(l.id) }),
        h('button', { type: 'button', class: 'btn btn-small btn-ghost lease-keep', text: 'Keep', dataset: { focusKey: `keep:${l.id}` }, onclick: () => { confirmRelease = null; mark('leases'); requestAnimationFrame(() => focusKey(`release:${l.id}`)); } }));
    } else {
      actions = h('button', {
        type: 'button',
        class: 'btn btn-ghost btn-small lease-release',
        text: busy ? 'Releasing…' : 'Release',
        disabled: busy,
        dataset: { focusKey: `release:${l.id}` },
        'aria-label': `Release ${what} held by ${leaseHolderLabel(l)}`,
        onclick: () => {
          confirmRelease = l.id;
          leaseErrors.delete(l.id);
          mark('leases');
          requestAnimationFrame(() => focusKey(`yes:${l.id}`));
        },
      });
    }
    const err = leaseErrors.get(l.id);
    return h('article', { class: `card lease${l.exclusive ? '' : ' lease-shared'}`, dataset: { id: l.id, holder: l.holder } },
      h('div', { class: 'lease-paths' },
        ...l.paths.map((x) => h('span', { class: 'lease-path', text: x })),
        h('span', { class: `badge ${l.exclusive ? 'badge-exclusive' : 'badge-shared'}`, text: l.exclusive ? 'exclusive' : 'shared', title: l.exclusive ? 'nobody else may hold an overlapping path' : 'others may share it; an exclusive lease may not' })),
      h('div', { class: 'lease-holder' },
        p ? h('span', { class: `dot dot-${p.status}`, title: p.status, 'aria-hidden': 'true' }) : null,
        strong(leaseHolderLabel(l)),
        p ? agentTag(p.agent) : null),
      l.reason ? h('p', { class: 'lease-reason', text: l.reason }) : null,
      h('div', { class: 'lease-meta muted' },
        h('span', { class: 'mono lease-repo', title: 'the repository', text: l.repo }),
        ' · ',
        agoEl(l.createdAt, 'taken '),
        ' · ',
        untilEl(l.expiresAt),
        h('span', { class: 'spacer' }),
        actions),
      err ? h('p', { class: 'form-error', role: 'alert', text: err }) : null,
    );
  }

  function focusKey(key) {
    const e = [...document.querySelectorAll('[data-focus-key]')].find((x) => x.dataset.focusKey === key);
    if (e) e.focus();
  }

  /** DELETE /leases/{id}: a person releases a lease (after "Yes, release"). */
  async function releaseLease(id) {
    confirmRelease = null;
    releasing.add(id);
    leaseErrors.delete(id);
    mark('leases');
    try {
      const r = await api('DELETE', `/leases/${encodeURIComponent(id)}`);
      if (r && r.lease) applyLease(r.lease);
    } catch (e) {
      if (e instanceof HttpError && (e.status === 404 || e.status === 409)) {
        // Released or expired meanwhile: the event says so, or already did.
        S.leases.delete(id);
      } else {
        leaseErrors.set(id, e.message);
      }
    } finally {
      releasing.delete(id);
      mark('leases');
    }
  }

  // ---------- command center ----------
  function renderTargets() {
    const online = [...S.peers.values()].filter((p) => p.status === 'online');
    const roles = [...new Set(online.map((p) => p.role))].sort();
    const dl = $('cmd-targets');
    dl.replaceChildren(
      ...roles.map((r) => h('option', { value: r, label: `role · ${online.filter((p) => p.role === r).length} online` })),
      ...online.map((p) => h('option', { value: p.id, label: `peer · ${peerLabel(p)}` })),
      h('option', { value: '*', label: 'everyone online' }),
    );
    const chips = $('cmd-target-chips');
    const pick = (v) => () => {
      $('cmd-target').value = v;
      $('cmd-action').focus();
    };
    chips.replaceChildren(
      ...(roles.length ? [h('span', { class: 'muted chips-label', text: 'online:' })] : [h('span', { class: 'muted chips-label', text: 'nobody online; commands to a role wait in its queue' })]),
      ...roles.map((r) => h('button', { type: 'button', class: 'chip', dataset: { target: r }, text: r, onclick: pick(r) })),
      h('button', { type: 'button', class: 'chip', dataset: { target: '*' }, text: '* everyone', onclick: pick('*') }),
    );
  }

  const CMD_FILTERS = [
    ['all', 'All'],
    ['open', 'Open'],
    ['acked', 'Acked'],
    ['failed', 'Failed'],
  ];

  function cmdMatches(c) {
    switch (S.commandFilter) {
      case 'open':
        return c.status === 'pending' || c.status === 'delivered';
      case 'acked':
        return c.status === 'acked';
      case 'failed':
        return c.status === 'failed' || c.status === 'cancelled' || c.status === 'expired';
      default:
        return true;
    }
  }

  function renderCommands() {
    renderFilterChips($('cmd-filter'), CMD_FILTERS, S.commandFilter, (k) => {
      S.commandFilter = k;
      mark('commands');
    });
    const all = [...S.commands.values()].sort((a, b) => (a.id < b.id ? 1 : -1));
    const open = all.filter((c) => c.status === 'pending' || c.status === 'delivered').length;
    $('commands-count').textContent = all.length ? `${open} open · ${all.length} shown` : '';
    const list = $('commands-list');
    const items = all.filter(cmdMatches);
    if (items.length === 0) {
      list.replaceChildren(
        all.length
          ? empty('No commands match this filter.')
          : empty('No commands yet. Pick a target above and send one, or from a shell: ', code('cipc send backend run-tests')),
      );
      return;
    }
    list.replaceChildren(
      ...items.map((c) => {
        const taker = c.deliveredTo ? S.peers.get(c.deliveredTo) : null;
        const open = c.status === 'pending' || c.status === 'delivered';
        return h('article', { class: `card cmd cmd-${c.status}`, dataset: { id: c.id, status: c.status } },
          h('div', { class: 'cmd-top' },
            h('span', { class: `badge st st-${c.status}`, text: c.status }),
            c.overdue && open ? h('span', { class: 'badge st-failed', text: 'overdue', title: `past its deadline (${new Date(c.deadline).toLocaleString()})` }) : null,
            h('span', { class: 'cmd-action', text: c.action }),
            h('span', { class: 'muted', text: '→' }),
            h('span', { class: 'cmd-target', title: c.target, text: targetLabel(c.target) }),
            h('span', { class: 'spacer' }),
            agoEl(c.createdAt, '', 'ago muted'),
            open
              ? h('button', { type: 'button', class: 'btn btn-ghost btn-small cmd-cancel', text: 'Cancel', title: 'Cancel this command', onclick: () => cancelCommand(c.id) })
              : null,
          ),
          h('div', { class: 'cmd-meta muted' },
            `from ${c.from}`,
            c.deliveredTo ? ` · taken by ${taker ? peerLabel(taker) : shortId(c.deliveredTo)}` : '',
            c.attempt > 1 ? ` · attempt ${c.attempt}` : '',
            ' · ',
            h('span', { class: 'mono id', title: c.id, text: shortId(c.id) }),
          ),
          c.params !== undefined && !(c.params && typeof c.params === 'object' && Object.keys(c.params).length === 0)
            ? h('details', { class: 'json-box' }, h('summary', { text: `params ${oneLine(c.params, 60)}` }), h('pre', { class: 'json', text: pretty(c.params) }))
            : null,
          c.result !== undefined
            ? h('div', { class: 'cmd-result' }, h('span', { class: 'label', text: 'result' }), h('pre', { class: 'json', text: pretty(c.result) }))
            : null,
          c.error ? h('div', { class: 'cmd-error' }, h('span', { class: 'label', text: c.status === 'failed' ? 'error' : 'note' }), h('pre', { class: 'json', text: c.error })) : null,
        );
      }),
    );
  }

  /** Cancels a command; a failure is shown in `errEl` (or under the Command Center). */
  async function cancelCommand(id, errEl) {
    try {
      const r = await api('DELETE', `/commands/${encodeURIComponent(id)}`);
      if (r && r.command) applyCommand(r.command);
    } catch (e) {
      if (errEl) showError(errEl, e.message);
      else note($('cmd-note'), e.message, true);
    }
  }

  function note(el, text, bad = false) {
    el.textContent = text;
    el.classList.toggle('note-bad', bad);
  }

  function validateParams() {
    const r = parseJson($('cmd-params').value, {});
    const ta = $('cmd-params');
    if (r.ok) {
      ta.removeAttribute('aria-invalid');
      showError($('cmd-error'), '');
    } else {
      ta.setAttribute('aria-invalid', 'true');
      showError($('cmd-error'), `Params are not valid JSON: ${r.error}`);
    }
    return r;
  }

  async function sendCommand(ev) {
    ev.preventDefault();
    const target = $('cmd-target').value.trim();
    const action = $('cmd-action').value.trim();
    const params = validateParams();
    if (!params.ok) return;
    if (!target) return showError($('cmd-error'), 'Pick a target: a role, a peer id, or * for everyone online.');
    if (!action) return showError($('cmd-error'), 'Say what to do: an action such as run-tests.');
    showError($('cmd-error'), '');
    const btn = $('cmd-send');
    btn.disabled = true;
    try {
      const r = await api('POST', '/commands/send', { from: 'dashboard', target, action, params: params.value });
      // The event stream is the source of truth; an answer only fills in what
      // no event has shown yet (it may arrive after the delivery event).
      const fresh = (c) => {
        if (!S.commands.has(c.id)) applyCommand(c);
      };
      if (r.commands) {
        r.commands.forEach(fresh);
        note($('cmd-note'), r.commands.length ? `Sent to ${r.commands.length} peer(s).` : 'Nobody is online to receive it.');
      } else {
        fresh(r.command);
        note($('cmd-note'), r.queued ? `Queued: nobody holds ${target} yet; it waits until someone does.` : `Sent to ${targetLabel(target)}.`);
      }
    } catch (e) {
      showError($('cmd-error'), e.message);
    } finally {
      btn.disabled = false;
    }
  }

  // ---------- channels ----------
  function renderChannels() {
    const chans = [...S.channels.values()].sort((a, b) => (b.lastAt || '').localeCompare(a.lastAt || '') || a.name.localeCompare(b.name));
    $('channels-count').textContent = chans.length ? String(chans.length) : '';
    const list = $('channels-list');
    if (chans.length === 0) {
      list.replaceChildren(
        empty('No channels yet. Post a message below, or from a shell: ', code(`cipc chan send notes '{"text":"hi"}'`)),
      );
      return;
    }
    list.replaceChildren(
      ...chans.map((c) =>
        h('button', {
          type: 'button',
          class: `channel${S.selected === c.name ? ' channel-on' : ''}`,
          dataset: { name: c.name },
          'aria-pressed': String(S.selected === c.name),
          onclick: () => (S.selected === c.name ? closeChannel() : openChannel(c.name)),
        },
        h('span', { class: 'channel-name', text: `#${c.name}` }),
        h('span', { class: 'count-pill', text: String(c.count) }),
        c.lastAt ? agoEl(c.lastAt, '', 'ago muted') : h('span', { class: 'muted', text: 'empty' }),
        ),
      ),
    );
  }

  let channelLoad = 0;
  async function openChannel(name) {
    S.selected = name;
    S.selectedLastSeq = 0;
    $('msg-channel').value = name;
    $('channel-view').hidden = false;
    $('channel-title').textContent = `#${name}`;
    const box = $('messages');
    box.replaceChildren(h('div', { class: 'empty', text: 'Loading…' }));
    mark('channels');
    const my = ++channelLoad;
    const info = S.channels.get(name);
    const since = info ? Math.max(0, info.lastSeq - 200) : 0;
    try {
      const r = await api('GET', `/channels/${encodeURIComponent(name)}/messages?since=${since}&limit=1000`);
      if (my !== channelLoad || S.selected !== name) return;
      box.replaceChildren();
      // Events that arrived while loading are appended by seq, so nothing doubles.
      for (const m of r.messages) appendMessage(m);
      if (r.messages.length === 0) box.replaceChildren(h('div', { class: 'empty', text: 'No messages in this channel yet; new ones appear here live.' }));
    } catch (e) {
      if (my === channelLoad) box.replaceChildren(h('div', { class: 'empty', text: `Could not load messages: ${e.message}` }));
    }
  }

  function closeChannel() {
    S.selected = null;
    S.selectedLastSeq = 0;
    channelLoad++;
    $('channel-view').hidden = true;
    $('messages').replaceChildren();
    mark('channels');
  }

  function appendMessage(m) {
    if (m.seq <= S.selectedLastSeq) return;
    S.selectedLastSeq = m.seq;
    const box = $('messages');
    const emptyEl = box.querySelector('.empty');
    if (emptyEl) emptyEl.remove();
    const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
    box.append(
      h('article', { class: 'message', dataset: { seq: String(m.seq) } },
        h('div', { class: 'message-meta muted' },
          h('span', { class: 'mono', text: `#${m.seq}` }),
          m.from ? h('span', { text: ` · from ${targetLabel(m.from)}` }) : null,
          ' · ',
          h('time', { dateTime: m.sentAt, title: new Date(m.sentAt).toLocaleString(), text: clock(m.sentAt) }),
        ),
        h('pre', { class: 'json', text: pretty(m.data) }),
      ),
    );
    while (box.children.length > MAX_MESSAGES) box.firstElementChild.remove();
    if (stick) box.scrollTop = box.scrollHeight;
  }

  async function postMessage(ev) {
    ev.preventDefault();
    const name = $('msg-channel').value.trim();
    const r = parseJson($('msg-data').value, undefined);
    if (!name) return showError($('msg-error'), 'Name the channel to post to.');
    if (!r.ok) return showError($('msg-error'), `The message is not valid JSON: ${r.error}`);
    if (r.value === undefined) return showError($('msg-error'), 'Write a message: any JSON value, e.g. {"text": "hello"}.');
    showError($('msg-error'), '');
    try {
      await api('POST', `/channels/${encodeURIComponent(name)}/send`, r.value);
      if (S.selected !== name) openChannel(name);
    } catch (e) {
      showError($('msg-error'), e.message);
    }
  }

  // ---------- signals ----------
  function renderSignals() {
    const sigs = [...S.signals.values()].sort((a, b) => a.name.localeCompare(b.name));
    $('signals-count').textContent = sigs.length ? `${sigs.filter((s) => s.emitted).length} set · ${sigs.length}` : '';
    const list = $('signals-list');
    if (sigs.length === 0) {
      list.replaceChildren(
        empty('No signals yet. Emit one below or with ', code('cipc signal emit build-done'), '; sessions wait for it with ', code('cipc signal wait build-done'), '.'),
      );
      return;
    }
    list.replaceChildren(
      ...sigs.map((s) =>
        h('article', { class: `card sig ${s.emitted ? 'sig-on' : 'sig-off'}`, dataset: { name: s.name, emitted: String(s.emitted) } },
          h('div', { class: 'sig-top' },
            h('span', { class: `dot ${s.emitted ? 'dot-online' : 'dot-offline'}`, 'aria-hidden': 'true' }),
            h('span', { class: 'sig-name', text: s.name }),
            h('span', { class: `badge ${s.emitted ? 'st-acked' : 'st-cancelled'}`, text: s.emitted ? 'emitted' : 'clear' }),
            h('span', { class: 'muted', text: `×${s.count}` }),
            h('span', { class: 'spacer' }),
            s.emitted && s.emittedAt ? agoEl(s.emittedAt, '', 'ago muted') : null,
            s.emitted
              ? h('button', { type: 'button', class: 'btn btn-ghost btn-small sig-clear', text: 'Clear', onclick: () => clearSignal(s.name) })
              : h('button', { type: 'button', class: 'btn btn-ghost btn-small sig-emit', text: 'Emit', onclick: () => emitSignal(s.name, undefined) }),
          ),
          s.emittedBy ? h('div', { class: 'muted small', text: `by ${targetLabel(s.emittedBy)}` }) : null,
          s.data !== undefined ? h('pre', { class: 'json', text: pretty(s.data) }) : null,
        ),
      ),
    );
  }

  async function emitSignal(name, data) {
    try {
      const r = await api('POST', `/signals/${encodeURIComponent(name)}`, data === undefined ? {} : { data });
      if (r && r.signal && !S.signals.has(r.signal.name)) {
        S.signals.set(r.signal.name, r.signal);
        mark('signals');
      }
      return true;
    } catch (e) {
      showError($('sig-error'), e.message);
      return false;
    }
  }

  async function clearSignal(name) {
    try {
      await api('DELETE', `/signals/${encodeURIComponent(name)}`);
    } catch (e) {
      showError($('sig-error'), e.message);
    }
  }

  async function onEmit(ev) {
    ev.preventDefault();
    const name = $('sig-name').value.trim();
    const r = parseJson($('sig-data').value, undefined);
    if (!name) return showError($('sig-error'), 'Name the signal to emit.');
    if (!r.ok) return showError($('sig-error'), `The data is not valid JSON: ${r.error}`);
    showError($('sig-error'), '');
    await emitSignal(name, r.value);
  }

  // ---------- login ----------
  function showLogin(message) {
    if (es) es.close();
    es = null;
    clearTimeout(retryTimer);
    $('app').hidden = true;
    $('login').hidden = false;
    $('logout').hidden = true;
    setConn('locked', 'locked');
    showError($('login-error'), message || '');
    $('login-token').focus();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const input = $('login-token');
    const token = input.value.trim();
    if (!token) return showError($('login-error'), 'Paste the token first.');
    const btn = $('login-submit');
    btn.disabled = true;
    try {
      const r = await fetch('/dashboard/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      if (!r.ok) {
        let msg = `Login failed (HTTP ${r.status}).`;
        try {
          const b = await r.json();
          if (r.status === 401) msg = 'Wrong token: check the one the broker was started with.';
          else if (b && b.error) msg = b.error.message;
        } catch (_) {
          /* keep the generic message */
        }
        showError($('login-error'), msg);
        input.select();
        return;
      }
      input.value = '';
      showError($('login-error'), '');
      S.tokenRequired = true;
      start();
    } catch (e) {
      showError($('login-error'), `Could not reach the broker: ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  }

  async function logout() {
    try {
      await fetch('/dashboard/logout', { method: 'POST', credentials: 'same-origin' });
    } finally {
      applyReset();
      S.activity = [];
      // Logging in again starts over, with the broker's history.
      S.lastEventId = 0;
      S.startedAt = null;
      showLogin('Logged out.');
    }
  }

  // ---------- start ----------
  function start() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = !S.tokenRequired;
    mark('peers', 'commands', 'channels', 'signals', 'questions', 'leases', 'activity');
    connect();
  }

  function tick() {
    for (const el of document.querySelectorAll('time[data-ts]')) {
      el.textContent = sinceText(el.dataset.ts, el.dataset.prefix || '', el.dataset.suffix ?? ' ago');
    }
    for (const el of document.querySelectorAll('time[data-until]')) el.textContent = untilText(el.dataset.until);
  }

  async function boot() {
    $('cmd-form').addEventListener('submit', sendCommand);
    $('cmd-params').addEventListener('input', validateParams);
    $('msg-form').addEventListener('submit', postMessage);
    $('msg-data').addEventListener('input', () => {
      const r = parseJson($('msg-data').value, undefined);
      showError($('msg-error'), r.ok ? '' : `The message is not valid JSON: ${r.error}`);
    });
    $('sig-form').addEventListener('submit', onEmit);
    $('login-form').addEventListener('submit', onLogin);
    $('logout').addEventListener('click', logout);
    $('channel-close').addEventListener('click', closeChannel);
    $('notify').addEventListener('click', onNotify);
    renderNotify();
    setInterval(tick, 1000);
    let info = { tokenRequired: false, authorized: true };
    try {
      const r = await fetch('/dashboard/login', { credentials: 'same-origin', cache: 'no-store' });
      info = await r.json();
    } catch (_) {
      /* let the stream report the broker as unreachable */
    }
    S.tokenRequired = !!info.tokenRequired;
    if (!info.authorized) showLogin('');
    else start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
