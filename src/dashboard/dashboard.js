// statusd dashboard: a read-only client of the REST API (/beta).
// Every value from the API reaches the page through textContent or an
// attribute, never as markup. What to show (collections, columns, counts,
// status values) comes from /dashboard/schema.json, generated from the model.
'use strict';

(() => {
  const TOKEN_KEY = 'statusd.token';
  const params = new URLSearchParams(location.search);
  const positive = (value, fallback) => {
    const n = Number.parseInt(value ?? '', 10);
    return Number.isFinite(n) && n > 0 ? Math.min(n, 1000) : fallback;
  };
  // Page sizes: `?top=` for status tables, `?parents=` for parent lists.
  const STATUS_PAGE = positive(params.get('top'), 20);
  const PARENT_PAGE = positive(params.get('parents'), 25);

  const $ = (id) => document.getElementById(id);
  let schema = null;
  const sections = [];
  let detail = null;

  // ---- DOM helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c); // strings become text nodes
    }
    return e;
  }

  const number = (n) => Number(n || 0).toLocaleString('en-US');

  // ---- API ---------------------------------------------------------------

  class AuthRequired extends Error {}
  class ApiError extends Error {}

  let inflight = 0;
  function busy(delta) {
    inflight += delta;
    document.body.dataset.loading = inflight > 0 ? 'true' : 'false';
  }

  // Links from the API are absolute; fetch them on this origin (CSP: 'self').
  function relative(link) {
    const u = new URL(link, location.href);
    return u.pathname + u.search;
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    busy(1);
    try {
      let resp;
      try {
        resp = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
      } catch (e) {
        throw new ApiError(`The server cannot be reached (${e.message}).`);
      }
      if (resp.status === 401) {
        showAuth(token !== null);
        throw new AuthRequired('authentication required');
      }
      const text = await resp.text();
      let body = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        body = null;
      }
      if (!resp.ok) {
        const message = body?.error?.message || `${resp.status} ${resp.statusText}`;
        throw new ApiError(`${message} (HTTP ${resp.status})`);
      }
      return body;
    } finally {
      busy(-1);
    }
  }

  // OData string literal: single quotes doubled.
  const literal = (s) => `'${String(s).replaceAll("'", "''")}'`;
  const query = (options) =>
    Object.entries(options)
      .filter(([, v]) => v !== null && v !== undefined && v !== '')
      .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
      .join('&');

  // ---- Errors and auth ---------------------------------------------------

  function showError(e) {
    if (e instanceof AuthRequired) return;
    const line = $('error');
    line.textContent = e instanceof Error ? e.message : String(e);
    line.hidden = false;
  }

  function clearError() {
    $('error').hidden = true;
    $('error').textContent = '';
  }

  function showAuth(refused) {
    const form = $('auth');
    if (refused) {
      sessionStorage.removeItem(TOKEN_KEY);
      const line = $('error');
      line.textContent = 'The token was refused (401). Paste another one.';
      line.hidden = false;
    }
    form.hidden = false;
    updateSignOut();
  }

  function updateSignOut() {
    $('sign-out').hidden = sessionStorage.getItem(TOKEN_KEY) === null;
  }

  // ---- Overviews ---------------------------------------------------------

  function renderLegend() {
    const legend = $('legend');
    legend.replaceChildren(
      ...schema.segments.map((s) =>
        el('li', { 'data-segment': s.key }, el('span', { class: `swatch seg-${s.key}`, 'aria-hidden': 'true' }), s.label),
      ),
    );
  }

  // One overview (counts of one status collection) as a stacked bar with
  // its numbers: each count of the schema, and the total.
  function renderOverview(cell, st, ov) {
    // In the legend's order (Graph's order of the properties differs).
    const order = (c) => schema.segments.findIndex((s) => s.key === c.segment);
    const counts = st.counts
      .map((c) => ({ ...c, n: Number(ov?.[c.property] ?? 0) }))
      .sort((a, b) => order(a) - order(b));
    const total = counts.reduce((a, c) => a + c.n, 0);
    const bySegment = schema.segments.map((s) => ({
      ...s,
      n: counts.filter((c) => c.segment === s.key).reduce((a, c) => a + c.n, 0),
    }));
    const summary = bySegment.filter((s) => s.n > 0).map((s) => `${s.label}: ${number(s.n)}`);
    const bar = el('div', {
      class: 'bar',
      role: 'img',
      'aria-label': `${st.title}: ${total ? summary.join(', ') : 'no statuses'}`,
      title: `${st.title} — ${number(total)} total${summary.length ? `\n${summary.join('\n')}` : ''}`,
    });
    if (total === 0) {
      bar.append(el('span', { class: 'seg seg-empty' }));
    }
    for (const s of bySegment) {
      if (s.n === 0) continue;
      const pct = (100 * s.n) / total;
      const seg = el('span', {
        class: `seg seg-${s.key}`,
        'data-segment': s.key,
        title: `${s.label}: ${number(s.n)} of ${number(total)} (${pct.toFixed(1)} %)`,
      });
      seg.style.flexGrow = String(s.n);
      if (pct >= 6) seg.textContent = number(s.n);
      bar.append(seg);
    }
    const numbers = el(
      'div',
      { class: 'counts' },
      el('span', { class: 'total' }, el('b', { 'data-count': 'total', text: total }),
        ` ${total === 1 ? st.title.toLowerCase().replace(/s$/, '') : st.title.toLowerCase()}`),
    );
    for (const c of counts) {
      numbers.append(
        el(
          'span',
          { class: `count${c.n === 0 ? ' zero' : ''}`, title: c.property },
          el('span', { class: `dot seg-${c.segment}`, 'aria-hidden': 'true' }),
          el('b', { 'data-count': c.property, text: c.n }),
          ` ${c.label}`,
        ),
      );
    }
    cell.replaceChildren(bar, numbers);
    cell.dataset.total = String(total);
    cell.dataset.loaded = 'true';
  }

  function overviewCell(st) {
    return el('div', { class: 'overview', 'data-testid': 'overview', 'data-shape': st.shape, 'data-loaded': 'false' },
      el('div', { class: 'bar' }, el('span', { class: 'seg seg-loading' })));
  }

  async function loadOverview(coll, parentId, st, cell) {
    try {
      const ov = await api(`${schema.prefix}/${coll.path}/${encodeURIComponent(parentId)}/${st.overview}`);
      renderOverview(cell, st, ov);
    } catch (e) {
      cell.replaceChildren(el('span', { class: 'muted', text: 'unavailable' }));
      showError(e);
    }
  }

  // ---- Parent lists --------------------------------------------------------

  function searchText() {
    return $('search').value.trim();
  }

  function firstParentsUrl(sec) {
    const s = searchText();
    return `${schema.prefix}/${sec.coll.path}?${query({
      $top: PARENT_PAGE,
      $select: 'id,displayName',
      $filter: s ? `startswith(displayName,${literal(s)})` : null,
    })}`;
  }

  function buildSection(coll) {
    const tbody = el('tbody');
    const head = el('tr', {}, el('th', { scope: 'col', text: 'Name' }),
      ...coll.statuses.map((st) => el('th', { scope: 'col', text: st.title })));
    const count = el('span', { class: 'muted', 'data-testid': 'parent-count' });
    const empty = el('p', { class: 'empty', hidden: true, text: 'Nothing to show.' });
    const more = el('button', { type: 'button', class: 'ghost', 'data-testid': 'more-parents', hidden: true, text: 'Show more' });
    const root = el(
      'section',
      { class: 'card', 'data-testid': 'collection', 'data-collection': coll.collection, 'data-loading': 'true' },
      el('header', { class: 'card-head' }, el('h2', { text: coll.title }), count),
      el('table', { class: 'parents' }, el('colgroup', {}, el('col', { class: 'col-name' }),
        ...coll.statuses.map(() => el('col', { class: 'col-ov' }))), el('thead', {}, head), tbody),
      empty,
      el('div', { class: 'more' }, more),
    );
    const sec = { coll, root, tbody, count, empty, more, next: null, gen: 0, shown: 0 };
    more.addEventListener('click', () => {
      if (sec.next) loadParents(sec, sec.next, true);
    });
    return sec;
  }

  function parentRow(sec, p) {
    const open = el('button', { type: 'button', class: 'link', 'data-testid': 'parent-open', text: p.displayName ?? p.id });
    const cells = sec.coll.statuses.map((st) => overviewCell(st));
    const tr = el(
      'tr',
      { 'data-testid': 'parent-row', 'data-parent-id': p.id, 'data-collection': sec.coll.collection },
      el('td', { class: 'name' }, open, el('div', { class: 'muted mono', text: p.id })),
      ...cells.map((c) => el('td', {}, c)),
    );
    open.addEventListener('click', () => openDetail(sec, p));
    return { tr, load: () => Promise.all(sec.coll.statuses.map((st, i) => loadOverview(sec.coll, p.id, st, cells[i]))) };
  }

  async function loadParents(sec, url, append) {
    const gen = ++sec.gen;
    sec.root.dataset.loading = 'true';
    try {
      const body = await api(url);
      if (gen !== sec.gen) return;
      const rows = (body?.value ?? []).map((p) => parentRow(sec, p));
      if (!append) {
        sec.tbody.replaceChildren();
        sec.shown = 0;
      }
      sec.tbody.append(...rows.map((r) => r.tr));
      sec.shown += rows.length;
      const next = body?.['@odata.nextLink'];
      sec.next = next ? relative(next) : null;
      sec.more.hidden = !sec.next;
      sec.count.textContent = `${number(sec.shown)}${sec.next ? '+' : ''} shown`;
      sec.empty.hidden = sec.shown > 0;
      sec.empty.textContent = searchText() ? `No name starts with “${searchText()}”.` : 'None yet.';
      await Promise.all(rows.map((r) => r.load()));
    } catch (e) {
      if (gen === sec.gen) showError(e);
    } finally {
      if (gen === sec.gen) sec.root.dataset.loading = 'false';
    }
  }

  function reloadParents() {
    for (const sec of sections) loadParents(sec, firstParentsUrl(sec), false);
  }

  // ---- Drill-down ----------------------------------------------------------

  function formatCell(col, v) {
    if (v === null || v === undefined) return el('span', { class: 'muted', text: '—' });
    if (col.type === 'status') {
      const known = schema.statusValues.find((s) => s.value === v);
      return el('span', { class: `pill seg-${known ? known.segment : 'empty'}`, text: v });
    }
    if (col.type === 'dateTime') {
      const s = String(v);
      if (s.startsWith('0001-01-01')) return el('span', { class: 'muted', text: '—' });
      return el('span', { class: 'mono', title: s, text: s.replace('T', ' ').replace(/\.\d+Z$/, 'Z') });
    }
    return document.createTextNode(String(v));
  }

  const humanize = (name) => {
    const words = name.replace(/DateTime$/, '').replace(/([a-z0-9])([A-Z])/g, '$1 $2');
    return words.charAt(0).toUpperCase() + words.slice(1).toLowerCase();
  };

  function openDetail(sec, parent) {
    clearError();
    detail = { sec, parent, tab: 0, pages: [], total: null, gen: 0 };
    $('overview-view').hidden = true;
    $('detail').hidden = false;
    $('detail').dataset.collection = sec.coll.collection;
    $('detail').dataset.parentId = parent.id;
    $('detail-kind').textContent = sec.coll.title;
    $('detail-title').textContent = parent.displayName ?? parent.id;
    $('detail-id').textContent = parent.id;
    const overviews = $('detail-overviews');
    overviews.replaceChildren();
    const tabs = $('tabs');
    tabs.replaceChildren();
    sec.coll.statuses.forEach((st, i) => {
      const cell = overviewCell(st);
      overviews.append(el('div', { class: 'card mini' }, el('h3', { text: st.title }), cell));
      loadOverview(sec.coll, parent.id, st, cell);
      const tab = el('button', { type: 'button', role: 'tab', 'data-testid': `tab-${st.segment}`, 'data-segment': st.segment, text: `${st.title} (${st.segment})` });
      tab.addEventListener('click', () => selectTab(i));
      tabs.append(tab);
    });
    $('status-filter').value = '';
    selectTab(0);
    window.scrollTo(0, 0);
  }

  function closeDetail() {
    detail = null;
    $('detail').hidden = true;
    $('overview-view').hidden = false;
    clearError();
  }

  function currentStatuses() {
    return detail.sec.coll.statuses[detail.tab];
  }

  function firstStatusesUrl() {
    const st = currentStatuses();
    const status = $('status-filter').value;
    return `${schema.prefix}/${detail.sec.coll.path}/${encodeURIComponent(detail.parent.id)}/${st.segment}?${query({
      $top: STATUS_PAGE,
      $count: 'true',
      $filter: status ? `status eq ${literal(status)}` : null,
    })}`;
  }

  function selectTab(i) {
    detail.tab = i;
    for (const [j, tab] of [...$('tabs').children].entries()) tab.setAttribute('aria-selected', String(i === j));
    const st = currentStatuses();
    $('status-head').replaceChildren(...st.columns.map((c) => el('th', { scope: 'col', 'data-column': c.name, text: humanize(c.name) })));
    restartStatuses();
  }

  function restartStatuses() {
    clearError();
    detail.pages = [firstStatusesUrl()];
    detail.total = null;
    loadStatuses();
  }

  async function loadStatuses() {
    const d = detail;
    const gen = ++d.gen;
    const table = $('status-table');
    const url = d.pages[d.pages.length - 1];
    table.dataset.loading = 'true';
    $('prev-page').disabled = true;
    $('next-page').disabled = true;
    try {
      const body = await api(url);
      if (d !== detail || gen !== d.gen) return;
      const st = currentStatuses();
      const rows = (body?.value ?? []).map((s) =>
        el('tr', { 'data-testid': 'status-row', 'data-status-id': s.id, 'data-status': s.status },
          ...st.columns.map((c) => el('td', { 'data-column': c.name }, formatCell(c, s[c.name])))));
      $('status-body').replaceChildren(...rows);
      $('status-empty').hidden = rows.length > 0;
      if (typeof body?.['@odata.count'] === 'number') d.total = body['@odata.count'];
      const next = body?.['@odata.nextLink'];
      d.next = next ? relative(next) : null;
      const page = d.pages.length;
      const from = (page - 1) * STATUS_PAGE + 1;
      const to = from + rows.length - 1;
      $('page-info').textContent = rows.length
        ? `Page ${page} · rows ${number(from)}–${number(to)}${d.total !== null ? ` of ${number(d.total)}` : ''}`
        : `Page ${page} · no rows`;
      $('page-info').dataset.page = String(page);
      $('page-info').dataset.total = d.total === null ? '' : String(d.total);
      $('prev-page').disabled = page <= 1;
      $('next-page').disabled = !d.next;
    } catch (e) {
      if (d === detail && gen === d.gen) {
        $('status-body').replaceChildren();
        $('prev-page').disabled = d.pages.length <= 1;
        showError(e);
      }
    } finally {
      if (d === detail && gen === d.gen) table.dataset.loading = 'false';
    }
  }

  // ---- Start ---------------------------------------------------------------

  function wire() {
    let timer = null;
    $('search').addEventListener('input', () => {
      for (const sec of sections) sec.root.dataset.loading = 'true';
      if (timer === null) busy(1); // a search is coming: the page is not settled
      else clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        clearError();
        reloadParents();
        busy(-1);
      }, 250);
    });
    $('back').addEventListener('click', closeDetail);
    $('status-filter').addEventListener('change', restartStatuses);
    $('next-page').addEventListener('click', () => {
      if (!detail?.next) return;
      detail.pages.push(detail.next);
      loadStatuses();
    });
    $('prev-page').addEventListener('click', () => {
      if (!detail || detail.pages.length <= 1) return;
      detail.pages.pop();
      loadStatuses();
    });
    $('auth').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      $('auth').hidden = true;
      updateSignOut();
      start();
    });
    $('sign-out').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      updateSignOut();
      location.reload();
    });
  }

  async function start() {
    clearError();
    try {
      if (!schema) {
        schema = await api('/dashboard/schema.json');
        renderLegend();
        const filter = $('status-filter');
        for (const s of schema.statusValues) filter.append(el('option', { value: s.value, text: s.value }));
        for (const coll of schema.collections) {
          const sec = buildSection(coll);
          sections.push(sec);
          $('collections').append(sec.root);
        }
      }
      reloadParents();
      if (detail) loadStatuses();
    } catch (e) {
      showError(e);
    }
  }

  function main() {
    wire();
    updateSignOut();
    busy(0);
    start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
  else main();
})();
