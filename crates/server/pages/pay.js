// Cardwright check-out page. Plain JavaScript, no build step.
//
// Payment: server POST /api/v1/payments -> agent POST /v1/sign (PIN + canonical bytes)
//          -> server POST /api/v1/payments/{id}/authorise.
// Enrolment: server POST /api/v1/enrolments -> agent POST /v1/enrol (key generation and
//          proof of possession) -> server POST /api/v1/enrolments/{id} -> agent POST
//          /v1/certificate (write the certificate to the card).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const agentUrl = (document.querySelector('meta[name="cardwright-agent"]') || {}).content || 'http://127.0.0.1:7373';

  class CallError extends Error {
    constructor(where, status, code, reason, body) {
      super(`${where}: ${reason} (${code})`);
      this.where = where;
      this.status = status;
      this.code = code;
      this.reason = reason;
      this.body = body || {};
    }
  }

  async function call(where, url, body) {
    const init = body === undefined
      ? { method: 'GET' }
      : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      throw new CallError(where, 0, 'unreachable',
        where === 'agent'
          ? `the Cardwright agent does not answer at ${agentUrl}; start "cardwright agent"`
          : `the server does not answer (${e.message})`);
    }
    let json = null;
    try { json = await response.json(); } catch (e) { json = null; }
    if (!response.ok) {
      const code = (json && json.error) || `http_${response.status}`;
      const reason = (json && json.reason) || response.statusText;
      throw new CallError(where, response.status, code, reason, json);
    }
    return json;
  }

  const server = (path, body) => call('server', path, body);
  const agent = (path, body) => call('agent', agentUrl + path, body);

  function log(text) {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $('log').appendChild(li);
  }

  function show(state, title, details) {
    const box = $('result');
    box.dataset.state = state;
    box.replaceChildren();
    const strong = document.createElement('strong');
    strong.textContent = title;
    box.appendChild(strong);
    for (const line of details || []) {
      const p = document.createElement('p');
      p.textContent = line;
      box.appendChild(p);
    }
  }

  function busy(on) {
    for (const id of ['pay', 'enrol', 'refresh']) $(id).disabled = on;
  }

  function describeError(e) {
    const lines = [e.reason || e.message];
    if (e.body && typeof e.body.pin_retries_left === 'number') {
      lines.push(e.body.pin_retries_left === 0
        ? 'The PIN is now blocked: unblock it with the PUK.'
        : `${e.body.pin_retries_left} PIN tries left.`);
    }
    if (e.code) lines.push(`code: ${e.code}`);
    return lines;
  }

  async function refreshCard() {
    const el = $('card-status');
    try {
      const s = await agent('/v1/status');
      if (!s.card || !s.card.present) {
        el.dataset.state = 'error';
        el.textContent = (s.card && s.card.reason) || 'no card';
        return null;
      }
      const c = s.card;
      const pin = c.pin_blocked ? 'PIN blocked' : (typeof c.pin_retries_left === 'number' ? `${c.pin_retries_left} PIN tries` : 'PIN');
      if (c.certificate) {
        el.dataset.state = 'ready';
        el.textContent = `${c.certificate.subject} (${c.certificate.algorithm}), ${pin}`;
        $('enrol-box').open = false;
      } else {
        el.dataset.state = 'unenrolled';
        el.textContent = `card ready, no certificate yet (${pin})`;
        $('enrol-box').open = true;
      }
      return s;
    } catch (e) {
      el.dataset.state = 'error';
      el.textContent = e.reason || e.message;
      return null;
    }
  }

  async function pay(ev) {
    ev.preventDefault();
    busy(true);
    show('working', 'Asking the server for a payment challenge…');
    try {
      const created = await server('/api/v1/payments', {
        amount: $('amount').value.trim(),
        currency: $('currency').value.trim().toUpperCase(),
        payee: $('payee').value.trim(),
        order_id: $('order').value.trim(),
      });
      log(`challenge ${created.id}: ${created.amount} ${created.request.currency} to ${created.request.payee}`);
      show('working', `Sign ${created.amount} ${created.request.currency} to ${created.request.payee} with your card…`);
      const signed = await agent('/v1/sign', { canonical: created.canonical, pin: $('pin').value });
      // The agent decoded what the card signed: it must be what the server issued.
      const p = signed.payment;
      if (p.challenge_id !== created.id || p.amount_minor !== created.request.amount_minor ||
          p.currency !== created.request.currency || p.payee !== created.request.payee ||
          p.order_id !== created.request.order_id) {
        throw new CallError('page', 0, 'mismatch', 'the card signed another payment than the one shown');
      }
      log('card signed; sending to the server');
      const done = await server(`/api/v1/payments/${created.id}/authorise`, {
        request: created.request,
        certificate: signed.certificate,
        signature: signed.signature,
      });
      const a = done.authorisation;
      show('authorised', 'Payment authorised', [
        `${done.amount} ${a.request.currency} to ${a.request.payee}, order ${a.request.order_id}`,
        `signed by ${a.subject} (certificate ${a.certificate_serial})`,
        `at ${a.authorised_at}`,
      ]);
      $('result').dataset.challenge = created.id;
      log(`authorised ${created.id}`);
    } catch (e) {
      show(e.where === 'server' && e.status >= 400 && e.status < 500 ? 'rejected' : 'error',
        e.where === 'server' ? 'Payment refused' : 'Could not sign', describeError(e));
      log(`failed: ${e.message}`);
    } finally {
      $('pin').value = '';
      busy(false);
      refreshCard();
    }
  }

  async function enrol(ev) {
    ev.preventDefault();
    busy(true);
    show('working', 'Enrolling: asking the server for a key-generation request…');
    try {
      const algorithm = $('enrol-alg').value;
      const started = await server('/api/v1/enrolments', { name: $('enrol-name').value.trim(), algorithm });
      log(`enrolment ${started.id}: generate ${started.keygen.algorithm} in slot ${started.keygen.slot}`);
      show('working', 'The card is generating its key…');
      const card = await agent('/v1/enrol', {
        challenge: started.challenge,
        algorithm: started.keygen.algorithm,
        slot: started.keygen.slot,
        pin: $('pin').value,
      });
      const cert = await server(`/api/v1/enrolments/${started.id}`, {
        algorithm: started.keygen.algorithm,
        public_key_template: card.public_key_template,
        proof: card.proof,
      });
      log(`certificate ${cert.serial} issued to ${cert.subject}`);
      await agent('/v1/certificate', { certificate: cert.certificate, slot: started.keygen.slot });
      show('enrolled', 'Card enrolled', [`${cert.subject}`, `certificate ${cert.serial}, valid until ${cert.not_after}`]);
    } catch (e) {
      show(e.where === 'server' ? 'rejected' : 'error', 'Enrolment failed', describeError(e));
      log(`enrolment failed: ${e.message}`);
    } finally {
      busy(false);
      refreshCard();
    }
  }

  function prefill() {
    const q = new URLSearchParams(location.search);
    for (const [param, id] of [['payee', 'payee'], ['order', 'order'], ['amount', 'amount'], ['currency', 'currency'], ['name', 'enrol-name']]) {
      if (q.has(param)) $(id).value = q.get(param);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    prefill();
    $('pay-form').addEventListener('submit', pay);
    $('enrol-form').addEventListener('submit', enrol);
    $('refresh').addEventListener('click', refreshCard);
    refreshCard();
  });
})();
