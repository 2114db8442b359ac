// Cardwright outlet page. Plain JavaScript, no build step.
//
// GET /api/catalog lists the applications; GET /api/state (polled) tells the reader, the
// card, the install running or last finished and interrupted installs; a click sends
// POST /api/install {application} (with the session's CSRF token), then the polls show its
// progress (LOAD blocks) and its result.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';
  const POLL_MS = 700;

  let catalog = [];
  let myJob = null;       // the id of the job this page started
  let shownJob = null;    // the id whose result is shown
  let cardReady = false;
  let jobRunning = false;

  class CallError extends Error {
    constructor(status, code, reason) {
      super(`${reason} (${code})`);
      this.status = status;
      this.code = code;
      this.reason = reason;
    }
  }

  async function call(path, body) {
    const init = body === undefined
      ? { method: 'GET' }
      : {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
          body: JSON.stringify(body),
        };
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new CallError(0, 'unreachable', 'the outlet does not answer: is "cardwright outlet serve" running?');
    }
    let json = null;
    try { json = await response.json(); } catch (e) { json = null; }
    if (!response.ok) {
      throw new CallError(response.status, (json && json.error) || `http_${response.status}`,
        (json && json.reason) || response.statusText);
    }
    return json;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function size(bytes) {
    return bytes < 1024 ? `${bytes} bytes` : `${(bytes / 1024).toFixed(1)} KB`;
  }

  function titleOf(name) {
    const a = catalog.find((x) => x.name === name);
    return a ? a.title : name;
  }

  function updateButtons() {
    for (const b of document.querySelectorAll('button.app')) b.disabled = !cardReady || jobRunning;
    $('resume').disabled = !cardReady || jobRunning;
  }

  function renderCatalog() {
    const list = $('catalog');
    list.replaceChildren();
    $('catalog-status').textContent = catalog.length
      ? `${catalog.length} application${catalog.length === 1 ? '' : 's'}`
      : 'The module holds no application yet ("cardwright outlet add").';
    for (const a of catalog) {
      const li = el('li');
      const b = el('button', undefined, 'app');
      b.type = 'button';
      b.dataset.app = a.name;
      b.appendChild(el('span', a.title, 'app-title'));
      b.appendChild(el('span', `${a.name} · version ${a.version} · ${a.provider} · ${size(a.size)}`, 'app-meta'));
      b.addEventListener('click', () => install(a.name));
      li.appendChild(b);
      list.appendChild(li);
    }
    updateButtons();
  }

  function renderCard(reader, card) {
    $('reader').textContent = reader;
    const s = $('card-status');
    s.dataset.state = card.status;
    cardReady = card.status === 'ready';
    switch (card.status) {
      case 'ready': s.textContent = card.card ? `card ${card.card} ready` : 'card ready'; break;
      case 'absent': s.textContent = 'no card: insert the card'; break;
      case 'foreign': s.textContent = card.reason || 'this card cannot be served here'; break;
      default: s.textContent = card.reason || 'the reader does not answer';
    }
  }

  function step(p) {
    if (!p) return { text: 'Starting…', value: 0, max: 1 };
    switch (p.step) {
      case 'connecting': return { text: 'Opening a secure channel to the card…', value: 0, max: 1 };
      case 'loading': return { text: `Loading block ${p.block} of ${p.blocks}`, value: p.block, max: p.blocks };
      case 'installing': return { text: 'Installing the application…', value: 1, max: 1 };
      case 'registering': return { text: `Registering key ${p.key}…`, value: 1, max: 1 };
      default: return { text: p.step, value: 0, max: 1 };
    }
  }

  function renderRunning(job) {
    const box = $('job');
    box.hidden = false;
    box.dataset.state = 'running';
    $('job-title').textContent = job.action === 'resume'
      ? 'Finishing the interrupted install…'
      : `Installing ${titleOf(job.application)}…`;
    const s = step(job.progress);
    $('progress').max = s.max;
    $('progress').value = s.value;
    $('job-step').textContent = s.text;
  }

  const ERROR_TITLES = {
    card_full: 'The card is full',
    already_present: 'Already on this card',
    wrong_card: 'This card cannot be served here',
    card_removed: 'The card was removed',
    no_card: 'No card in the reader',
    package_tampered: 'The stored package was refused',
    unknown_application: 'Unknown application',
    busy: 'The card is busy',
  };

  function showResult(state, title, lines, code) {
    const box = $('result');
    box.dataset.state = state;
    if (code) box.dataset.code = code; else delete box.dataset.code;
    box.replaceChildren(el('strong', title));
    for (const line of lines || []) box.appendChild(el('p', line));
  }

  function renderFinished(job) {
    $('job').hidden = true;
    $('job').dataset.state = 'idle';
    if (job.state === 'installed') {
      const o = job.outcome;
      const lines = [
        `Card ${o.card}, instance ${o.instance}.`,
        `${o.blocks} LOAD block${o.blocks === 1 ? '' : 's'}, ${o.apdus} commands to the card; install record #${o.record}.`,
      ];
      for (const k of o.registration) {
        if (k.subject) lines.push(`Key ${k.id} (${k.kind}, made on the card): certificate ${k.subject}, issued by ${k.issuer}.`);
        else if (k.kcv) lines.push(`Key ${k.id} (${k.kind}, made in the module): key check value ${k.kcv}.`);
        else lines.push(`Key ${k.id} (${k.kind}).`);
      }
      showResult('installed', `${titleOf(o.application)} installed`, lines);
    } else if (job.state === 'resumed') {
      showResult('resumed', 'The interrupted install was settled',
        ['Nothing is left half-installed on the card.']);
    } else if (job.state === 'failed') {
      const lines = [job.reason];
      if (job.error === 'card_removed') lines.push('Insert the card again: the next click finishes the install.');
      showResult('error', ERROR_TITLES[job.error] || 'The install failed', lines, job.error);
    }
  }

  function renderJob(job) {
    jobRunning = job.state === 'running';
    if (jobRunning) {
      renderRunning(job);
    } else if (job.state !== 'idle' && job.id === myJob && shownJob !== job.id) {
      shownJob = job.id;
      renderFinished(job);
    } else {
      $('job').hidden = true;
    }
  }

  function renderPending(pending) {
    const box = $('resume-box');
    box.hidden = pending.length === 0;
    if (pending.length) {
      const p = pending[0];
      const what = p.application ? titleOf(p.application) : 'an application';
      $('resume-text').textContent = `The install of ${what} was interrupted when the card was removed. ` +
        'Insert that card and finish it (or click the application again).';
    }
  }

  async function poll() {
    try {
      const s = await call('/api/state');
      renderCard(s.reader, s.card);
      renderJob(s.job);
      renderPending(s.pending || []);
    } catch (e) {
      const st = $('card-status');
      st.dataset.state = 'reader_error';
      st.textContent = e.reason;
      cardReady = false;
    }
    updateButtons();
    setTimeout(poll, POLL_MS);
  }

  async function start(path, body) {
    try {
      const job = await call(path, body);
      myJob = job.id;
      shownJob = null;
      $('result').dataset.state = 'working';
      $('result').replaceChildren();
      jobRunning = true;
      renderRunning(job);
      updateButtons();
    } catch (e) {
      showResult('error', ERROR_TITLES[e.code] || 'The install could not start', [e.reason], e.code);
    }
  }

  function install(name) { return start('/api/install', { application: name }); }

  $('resume').addEventListener('click', () => start('/api/resume', {}));

  (async function init() {
    try {
      catalog = (await call('/api/catalog')).applications;
      renderCatalog();
    } catch (e) {
      $('catalog-status').textContent = `The catalog could not be read: ${e.reason}`;
    }
    poll();
  })();
})();
