// The weknora web interface: plain JavaScript modules, no build step. Routes live in the
// URL's hash so that nginx serves one page and every view can be bookmarked:
//   #/                     knowledge bases
//   #/kb/<id>              a knowledge base's documents (upload, live status)
//   #/kb/<id>/search?q=    search in it
//   #/doc/<id>?page=&chunk= a document's chunks (the one a chat answer cited marked)
//   #/chat/<id>            chat sessions, the chosen one's messages, asking

import { api, apiKey, ApiError, chat, setApiKey, signOut, uploadFile } from './api.js';
import { el, fill, highlight } from './dom.js';
import { formatBytes, formatDate, language, setLanguage, t } from './i18n.js';

const view = document.getElementById('view');
const flashBox = document.getElementById('flash');
/** Upload limit and build facts from /api/v1/system/info (no key needed). */
let system = { limits: { max_file_size_mb: 50 } };
/** Stops the live refresh of the view being left. */
let stopRefresh = () => {};
const ACCEPT =
  '.txt,.md,.markdown,.html,.htm,.pdf,.docx,.xlsx,.xls,.ods,.csv,.tsv,.pptx,.epub,.png,.jpg,.jpeg,.gif,.bmp,.webp,.tif,.tiff,.log';
const PARALLEL_UPLOADS = 3;
const REFRESH_MS = 1500;

// ---------------------------------------------------------------- messages

function flash(message, kind = 'error') {
  fill(flashBox, message ? el('p', { class: kind }, message) : null);
}

/** Shows an error; a refused key sends the user back to sign in. */
function fail(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut();
    location.hash = '#/';
    render().then(() => flash(t('signin.expired')));
    return;
  }
  flash(error.message || String(error));
}

// ---------------------------------------------------------------- header and footer

function renderChrome() {
  const signedIn = Boolean(apiKey());
  fill(document.getElementById('nav'), signedIn
    ? [el('a', { href: '#/', id: 'nav-kbs' }, t('nav.kbs')), el('a', { href: '#/chat', id: 'nav-chat' }, t('nav.chat'))]
    : null);
  const lang = document.getElementById('lang');
  lang.textContent = t('lang.switch');
  const out = document.getElementById('sign-out');
  out.hidden = !signedIn;
  out.textContent = t('signin.out');
  const footer = document.getElementById('footer');
  footer.textContent = system.version
    ? t('footer.version', { version: system.version, schema: system.schema_version ?? '—' })
    : '';
}

document.getElementById('lang').addEventListener('click', () => {
  setLanguage(language() === 'zh' ? 'en' : 'zh');
  render();
});

document.getElementById('sign-out').addEventListener('click', () => {
  signOut();
  location.hash = '#/';
  render();
});

// ---------------------------------------------------------------- sign in

function signInView() {
  const key = el('input', { id: 'api-key', type: 'password', required: true, autocomplete: 'off', size: 40 });
  const remember = el('input', { id: 'remember', type: 'checkbox' });
  const form = el(
    'form',
    { class: 'card narrow', id: 'sign-in' },
    el('h1', {}, t('signin.title')),
    el('p', { class: 'muted' }, t('signin.help')),
    el('label', { for: 'api-key' }, t('signin.key')),
    key,
    el('label', { class: 'check' }, remember, ' ', t('signin.remember')),
    el('button', { type: 'submit' }, t('signin.submit')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('GET', '/tenants/current', undefined, key.value.trim());
      setApiKey(key.value.trim(), remember.checked);
      flash('');
      render();
    } catch (error) {
      flash(error.message);
    }
  });
  fill(view, form);
  key.focus();
}

// ---------------------------------------------------------------- knowledge bases

async function kbListView() {
  const { data: kbs } = await api('GET', '/knowledge-bases');
  const name = el('input', { id: 'kb-name', required: true, maxlength: 200 });
  const description = el('input', { id: 'kb-description', maxlength: 2000 });
  const create = el(
    'form',
    { class: 'card', id: 'kb-create' },
    el('h2', {}, t('kbs.create')),
    el('div', { class: 'row' },
      el('label', {}, t('kbs.name'), name),
      el('label', { class: 'grow' }, t('kbs.description'), description),
      el('button', { type: 'submit' }, t('kbs.submit'))),
  );
  create.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const { data } = await api('POST', '/knowledge-bases', { name: name.value, description: description.value });
      flash('');
      location.hash = `#/kb/${data.id}`;
    } catch (error) {
      fail(error);
    }
  });
  const list = kbs.length
    ? el('ul', { class: 'kbs', id: 'kb-list' }, kbs.map((kb) =>
      el('li', { class: 'card kb', 'data-kb-id': kb.id },
        el('div', { class: 'grow' },
          el('a', { class: 'kb-name', href: `#/kb/${kb.id}` }, kb.name),
          kb.description ? el('p', {}, kb.description) : null,
          el('p', { class: 'muted' },
            t('kbs.chunking', { size: kb.chunk_size, overlap: kb.chunk_overlap }), ' · ',
            t('kbs.created'), ' ', formatDate(kb.created_at))),
        el('button', { type: 'button', class: 'danger kb-delete', onclick: () => deleteKb(kb) }, t('kbs.delete')))))
    : el('p', { class: 'muted', id: 'kb-list' }, t('kbs.empty'));
  fill(view, el('h1', {}, t('kbs.title')), list, create);
}

async function deleteKb(kb) {
  if (!confirm(t('kbs.confirmDelete', { name: kb.name }))) return;
  try {
    await api('DELETE', `/knowledge-bases/${kb.id}`);
    await kbListView();
    flash(t('kbs.deleted', { name: kb.name }), 'notice');
  } catch (error) {
    fail(error);
  }
}

/** The heading and tabs shared by a knowledge base's documents and search views. */
function kbHeader(kb, active) {
  const tab = (id, href, label) => el('a', { href, class: active === id ? 'tab active' : 'tab', id: `tab-${id}` }, label);
  const reindex = async () => {
    if (!confirm(t('kb.confirmReindex'))) return;
    try {
      const { data } = await api('POST', `/knowledge-bases/${kb.id}/reindex`);
      await render();
      flash(t('kb.reindexed', { n: data.documents, model: data.embedding_model }), 'notice');
    } catch (error) {
      fail(error);
    }
  };
  return [
    el('h1', {}, kb.name),
    kb.description ? el('p', { class: 'muted' }, kb.description) : null,
    el('p', { class: 'muted row', id: 'kb-embedding' },
      el('span', { class: 'grow' }, kb.embedding_model
        ? t('kb.embedding', { model: kb.embedding_model, dims: kb.embedding_dimensions })
        : t('kb.noEmbedding')),
      el('button', { type: 'button', class: 'link', id: 'kb-reindex', onclick: reindex }, t('kb.reindex'))),
    el('nav', { class: 'tabs' },
      tab('documents', `#/kb/${kb.id}`, t('tab.documents')),
      tab('search', `#/kb/${kb.id}/search`, t('tab.search'))),
  ];
}

// ---------------------------------------------------------------- documents

async function documentsView(kbId) {
  const { data: kb } = await api('GET', `/knowledge-bases/${kbId}`);
  const table = el('div', { id: 'documents' });
  const uploads = el('ul', { class: 'uploads', id: 'uploads' });
  let page = 1;

  const refresh = async () => {
    const list = await api('GET', `/knowledge-bases/${kbId}/knowledge?page=${page}&page_size=50`);
    fill(table, documentsTable(list, (p) => { page = p; refresh().catch(fail); }, refresh));
    const busy = (status) => status === 'pending' || status === 'processing';
    return list.data.some((d) => busy(d.parse_status) || busy(d.vector_status));
  };
  // Live status: refresh while anything is waiting or parsing, and after every upload.
  let timer = null;
  let alive = true;
  const schedule = async () => {
    clearTimeout(timer);
    if (!alive) return;
    try {
      if (await refresh()) timer = setTimeout(schedule, REFRESH_MS);
    } catch (error) {
      fail(error);
    }
  };
  stopRefresh = () => { alive = false; clearTimeout(timer); };

  fill(view, ...kbHeader(kb, 'documents'),
    dropZone(kbId, uploads, schedule), uploads, textAndUrlForms(kbId, schedule), table);
  await schedule();
}

function dropZone(kbId, uploads, changed) {
  const limitMb = system.limits.max_file_size_mb;
  const input = el('input', { type: 'file', id: 'file-input', multiple: true, accept: ACCEPT, class: 'visually-hidden' });
  const zone = el('label', { class: 'drop', id: 'drop-zone', for: 'file-input' },
    el('strong', {}, t('upload.drop')),
    el('span', { class: 'button' }, t('upload.choose')),
    el('span', { class: 'muted', id: 'upload-limit' }, t('upload.limit', { mb: limitMb })),
    input);
  const take = (files) => {
    if (files.length) uploadAll(kbId, [...files], uploads, changed);
  };
  input.addEventListener('change', () => { take(input.files); input.value = ''; });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    take(e.dataTransfer.files);
  });
  return zone;
}

/** Uploads files a few at a time, each with its own progress bar and outcome. */
async function uploadAll(kbId, files, uploads, changed) {
  const limitMb = system.limits.max_file_size_mb;
  const queue = files.map((file) => {
    const bar = el('progress', { max: 1, value: 0 });
    const outcome = el('span', { class: 'outcome' });
    const item = el('li', { 'data-file': file.name }, el('span', { class: 'file-name' }, file.name),
      el('span', { class: 'muted' }, formatBytes(file.size)), bar, outcome);
    uploads.prepend(item);
    return { file, bar, outcome, item };
  });
  const done = (u, kind, message) => {
    u.item.classList.add(kind);
    u.outcome.textContent = message;
    u.bar.remove();
  };
  const next = async () => {
    for (let u = queue.shift(); u; u = queue.shift()) {
      // Refused here, before a byte is sent: the server would refuse it anyway.
      if (u.file.size > limitMb * 1024 * 1024) {
        done(u, 'failed', t('upload.tooLarge', { name: u.file.name, size: formatBytes(u.file.size), mb: limitMb }));
        continue;
      }
      if (u.file.size === 0) {
        done(u, 'failed', t('upload.empty', { name: u.file.name }));
        continue;
      }
      try {
        await uploadFile(kbId, u.file, (fraction) => { u.bar.value = fraction; });
        done(u, 'ok', t('upload.queued'));
        changed();
      } catch (error) {
        if (error.status === 401) return fail(error);
        done(u, 'failed', error.message);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_UPLOADS }, next));
}

function textAndUrlForms(kbId, changed) {
  const submit = (path, body, form) => async (e) => {
    e.preventDefault();
    try {
      await api('POST', `/knowledge-bases/${kbId}/knowledge/${path}`, body());
      form.reset();
      flash('');
      changed();
    } catch (error) {
      fail(error);
    }
  };
  const title = el('input', { name: 'title', maxlength: 200 });
  const content = el('textarea', { name: 'content', rows: 6, required: true });
  const text = el('form', { id: 'add-text' },
    el('label', {}, t('upload.title'), title),
    el('label', {}, t('upload.content'), content),
    el('button', { type: 'submit' }, t('upload.add')));
  text.addEventListener('submit', submit('manual', () => ({ title: title.value, content: content.value }), text));
  const url = el('input', { name: 'url', type: 'url', required: true, placeholder: 'https://' });
  const page = el('form', { id: 'add-url' },
    el('label', {}, t('upload.urlField'), url),
    el('button', { type: 'submit' }, t('upload.add')));
  page.addEventListener('submit', submit('url', () => ({ url: url.value }), page));
  return el('div', { class: 'row extras' },
    el('details', { class: 'card grow' }, el('summary', {}, t('upload.text')), text),
    el('details', { class: 'card grow' }, el('summary', {}, t('upload.url')), page));
}

function statusBadge(doc) {
  return el('span', { class: `status ${doc.parse_status}`, 'data-status': doc.parse_status, title: doc.error || '' },
    t(`status.${doc.parse_status}`));
}

/** Where the document's vectors stand; nothing when no embedding model makes any. */
function vectorBadge(doc) {
  if (!doc.vector_status || doc.vector_status === 'none') return null;
  return el('span', { class: `status ${doc.vector_status}`, 'data-vectors': doc.vector_status,
    title: doc.vector_error || '' }, t(`vectors.${doc.vector_status}`));
}

function documentsTable(list, goTo, changed) {
  if (list.total === 0) return el('p', { class: 'muted' }, t('docs.empty'));
  const action = (label, cls, run) => el('button', { type: 'button', class: cls, onclick: run }, label);
  const rows = list.data.map((doc) => el('tr', { 'data-doc-id': doc.id },
    el('td', {}, el('a', { href: `#/doc/${doc.id}`, class: 'doc-title' }, doc.title),
      doc.error ? el('div', { class: 'error-text' }, doc.error) : null),
    el('td', {}, doc.file_type || doc.source_type),
    el('td', { class: 'num' }, doc.size_bytes ? formatBytes(doc.size_bytes) : ''),
    el('td', {}, statusBadge(doc), ' ', vectorBadge(doc),
      doc.vector_error ? el('div', { class: 'error-text' }, doc.vector_error) : null),
    el('td', { class: 'num' }, doc.chunk_count),
    el('td', {}, formatDate(doc.created_at)),
    el('td', { class: 'actions' },
      action(t('docs.view'), 'link', () => { location.hash = `#/doc/${doc.id}`; }),
      doc.parse_status === 'failed' || doc.parse_status === 'completed'
        ? action(t('docs.reparse'), 'link', async () => {
          try { await api('POST', `/knowledge/${doc.id}/reparse`); changed(); } catch (error) { fail(error); }
        })
        : null,
      action(t('docs.delete'), 'link danger', async () => {
        if (!confirm(t('docs.confirmDelete', { name: doc.title }))) return;
        try { await api('DELETE', `/knowledge/${doc.id}`); changed(); } catch (error) { fail(error); }
      }))));
  return [
    el('p', { class: 'muted' }, t('docs.total', { n: list.total })),
    el('table', {},
      el('thead', {}, el('tr', {}, ['docs.title', 'docs.type', 'docs.size', 'docs.status', 'docs.chunks', 'docs.added', '']
        .map((k) => el('th', {}, k ? t(k) : '')))),
      el('tbody', {}, rows)),
    pager(list, goTo),
  ];
}

function pager(list, goTo) {
  const pages = Math.max(1, Math.ceil(list.total / list.page_size));
  if (pages === 1) return null;
  return el('div', { class: 'pager' },
    el('button', { type: 'button', disabled: list.page <= 1, onclick: () => goTo(list.page - 1) }, t('page.prev')),
    el('span', {}, t('page.of', { page: list.page, pages })),
    el('button', { type: 'button', disabled: list.page >= pages, onclick: () => goTo(list.page + 1) }, t('page.next')));
}

// ---------------------------------------------------------------- search

async function searchView(kbId, params) {
  const { data: kb } = await api('GET', `/knowledge-bases/${kbId}`);
  const query = el('input', { id: 'search-query', type: 'search', required: true, value: params.get('q') || '',
    placeholder: t('search.placeholder') });
  const topK = el('input', { id: 'search-top-k', type: 'number', min: 1, max: 200, value: params.get('top_k') || kb.retrieval_top_k });
  const form = el('form', { class: 'row', id: 'search' },
    el('span', { class: 'grow' }, query),
    el('label', { class: 'inline' }, t('search.topK'), ' ', topK),
    el('button', { type: 'submit' }, t('search.submit')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ q: query.value, top_k: topK.value });
    location.hash = `#/kb/${kbId}/search?${q}`;
  });
  const results = el('div', { id: 'results' });
  fill(view, ...kbHeader(kb, 'search'), form, results);
  query.focus();
  const q = params.get('q');
  if (!q) return;
  const found = await api('GET',
    `/knowledge-bases/${kbId}/hybrid-search?${new URLSearchParams({ query: q, top_k: topK.value })}`);
  const hits = found.data;
  fill(results,
    el('p', { class: 'muted' }, hits.length ? t('search.count', { n: hits.length, q }) : t('search.none', { q })),
    found.notice ? el('p', { class: 'muted', id: 'search-notice' }, found.notice) : null,
    el('ol', { class: 'hits' }, hits.map((hit) => el('li', { class: 'card hit' },
      el('div', { class: 'row' },
        el('a', { class: 'grow', href: `#/doc/${hit.knowledge_id}` }, hit.knowledge_title),
        el('span', { class: `match ${hit.match_kind}`, 'data-match': hit.match_kind }, t(`match.${hit.match_kind}`)),
        el('span', { class: 'muted' }, t('search.score', { score: hit.score.toFixed(3) }))),
      el('p', { class: 'passage' }, highlight(hit.content, found.terms || []))))));
}

// ---------------------------------------------------------------- chunks

/** Chunks per page in a document's view; a citation's link computes its page from it. */
const CHUNKS_PER_PAGE = 20;

async function chunksView(docId, params) {
  const page = Math.max(1, Number(params.get('page')) || 1);
  const cited = params.has('chunk') ? Number(params.get('chunk')) : null;
  const [{ data: doc }, list] = await Promise.all([
    api('GET', `/knowledge/${docId}`),
    api('GET', `/chunks/${docId}?page=${page}&page_size=${CHUNKS_PER_PAGE}`),
  ]);
  fill(view,
    el('p', {}, el('a', { href: `#/kb/${doc.knowledge_base_id}` }, '← ', t('chunks.back'))),
    el('h1', {}, t('chunks.title', { name: doc.title })),
    el('p', {}, statusBadge(doc), ' ', vectorBadge(doc), ' ',
      doc.error ? el('span', { class: 'error-text' }, doc.error) : null,
      doc.vector_error ? el('span', { class: 'error-text' }, doc.vector_error) : null),
    list.total
      ? el('ol', { class: 'chunks', id: 'chunks' }, list.data.map((c) => el('li',
        { class: c.position === cited ? 'card cited' : 'card', id: `chunk-${c.position}` },
        el('div', { class: 'muted' }, t('chunks.position', { n: c.position + 1 }),
          c.position === cited ? [' · ', t('chunks.cited')] : null),
        el('pre', {}, c.content))))
      : el('p', { class: 'muted' }, t('chunks.empty')),
    pager(list, (p) => { location.hash = `#/doc/${docId}?page=${p}`; }));
  if (cited !== null) document.getElementById(`chunk-${cited}`)?.scrollIntoView({ block: 'center' });
}

/** Where a cited passage is: its document's chunks, on the page that shows it, marked. */
function passageHref(hit) {
  const page = Math.floor(hit.chunk_index / CHUNKS_PER_PAGE) + 1;
  return `#/doc/${hit.knowledge_id}?page=${page}&chunk=${hit.chunk_index}`;
}

// ---------------------------------------------------------------- chat

/** Messages loaded at a time; older ones come with "Earlier messages". */
const MESSAGES_PER_LOAD = 50;
/** `[n]` in an answer cites the n-th of the answer's references. */
const CITATION = /\[(\d+)\]/g;

async function chatView(sessionId) {
  const [{ data: kbs }, models, sessions, session, stored] = await Promise.all([
    api('GET', '/knowledge-bases'),
    // The tenant's own chat models, to pick one for a question; none is fine.
    api('GET', '/models').then((r) => r.data.filter((m) => m.type === 'KnowledgeQA'), () => []),
    api('GET', '/sessions?page=1&page_size=100'),
    sessionId ? api('GET', `/sessions/${sessionId}`).then((r) => r.data) : null,
    sessionId ? api('GET', `/sessions/${sessionId}/messages?limit=${MESSAGES_PER_LOAD}`).then((r) => r.data) : [],
  ]);
  /** The session asked in; none until the first question of a new conversation. */
  let current = session;
  /** Reads the answer streaming in; aborted when the view is left (the answer goes on). */
  let reading = null;
  let alive = true;
  stopRefresh = () => { alive = false; reading?.abort(); };

  const title = el('h1', { id: 'chat-title' }, current?.title || t('chat.new'));
  const list = el('ul', { class: 'sessions', id: 'session-list' });
  const showSessions = (items) => {
    fill(list, items.length ? items.map(sessionItem) : el('li', { class: 'muted' }, t('chat.noSessions')));
    const mine = current && items.find((s) => s.id === current.id);
    if (mine) title.textContent = mine.title || t('chat.new');
  };
  const refreshSessions = () => api('GET', '/sessions?page=1&page_size=100')
    .then((r) => { if (alive) showSessions(r.data); })
    .catch(fail);
  const sessionItem = (s) => el('li', { class: s.id === current?.id ? 'active' : null, 'data-session-id': s.id },
    el('a', { href: `#/chat/${s.id}`, class: 'grow' }, s.title || t('chat.untitled')),
    el('button', { type: 'button', class: 'link danger session-delete', title: t('chat.delete'),
      'aria-label': t('chat.delete'), onclick: () => deleteSession(s) }, '×'));
  const deleteSession = async (s) => {
    if (!confirm(t('chat.confirmDelete', { name: s.title || t('chat.untitled') }))) return;
    try {
      await api('DELETE', `/sessions/${s.id}`);
      if (s.id === current?.id) {
        // Without a hashchange, whose handler would clear the notice below.
        history.replaceState(null, '', '#/chat');
        await render();
      } else {
        await refreshSessions();
      }
      flash(t('chat.deleted', { name: s.title || t('chat.untitled') }), 'notice');
    } catch (error) {
      fail(error);
    }
  };
  showSessions(sessions.data);

  const messages = el('ol', { class: 'messages', id: 'messages' }, stored.map(storedMessageView));
  const empty = stored.length ? null : el('p', { class: 'muted', id: 'chat-empty' }, t('chat.empty'));
  let oldest = stored[0];
  const earlier = el('button', { type: 'button', class: 'link', id: 'chat-earlier',
    hidden: stored.length < MESSAGES_PER_LOAD }, t('chat.earlier'));
  earlier.addEventListener('click', async () => {
    try {
      const q = new URLSearchParams({ limit: MESSAGES_PER_LOAD, before_time: oldest.created_at });
      const { data } = await api('GET', `/sessions/${current.id}/messages?${q}`);
      messages.prepend(...data.map(storedMessageView));
      oldest = data[0] || oldest;
      earlier.hidden = data.length < MESSAGES_PER_LOAD;
    } catch (error) {
      fail(error);
    }
  });

  if (kbs.length === 0) {
    fill(view, el('div', { class: 'chat' }, sessionPanel(list),
      el('section', { class: 'conversation' }, title, earlier, messages,
        el('p', { class: 'card', id: 'chat-no-kb' }, t('chat.noKb'), ' ', el('a', { href: '#/' }, t('chat.createKb'))))));
    return;
  }
  const kb = el('select', { id: 'chat-kb' }, kbs.map((k) =>
    el('option', { value: k.id, selected: k.id === current?.knowledge_base_id }, k.name)));
  kb.addEventListener('change', () => {
    if (current) api('PUT', `/sessions/${current.id}`, { knowledge_base_id: kb.value }).catch(fail);
  });
  const model = models.length
    ? el('select', { id: 'chat-model' }, el('option', { value: '' }, t('chat.defaultModel')),
      models.map((m) => el('option', { value: m.id }, m.name)))
    : null;
  const query = el('textarea', { id: 'chat-query', rows: 3, required: true, placeholder: t('chat.placeholder') });
  const send = el('button', { type: 'submit', id: 'chat-send' }, t('chat.send'));
  const stop = el('button', { type: 'button', id: 'chat-stop', class: 'danger' }, t('chat.stop'));
  const problem = el('p', { class: 'error-text', id: 'chat-error', role: 'alert' });
  const form = el('form', { class: 'card', id: 'ask' },
    el('div', { class: 'row' },
      el('label', {}, t('chat.kb'), ' ', kb),
      model ? el('label', {}, t('chat.modelField'), ' ', model) : null),
    el('label', { for: 'chat-query' }, t('chat.question')), query,
    problem,
    el('div', { class: 'row' }, send, stop));
  const streaming = (on) => {
    send.disabled = on;
    stop.hidden = !on;
    stop.disabled = false;
  };
  // An answer still being written (asked in another tab, or before a reload) can be stopped too.
  stop.hidden = stored.at(-1)?.status !== 'streaming';

  // Enter asks, Shift+Enter starts a new line; not while an input method is composing
  // (Chinese is typed that way, and Enter picks the characters).
  query.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener('click', async () => {
    stop.disabled = true;
    try {
      await api('POST', `/sessions/${current.id}/stop`);
      // Here the stream's last frame says it stopped; an answer streaming elsewhere is reloaded.
      if (!reading) await render();
    } catch (error) {
      fail(error);
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const question = query.value.trim();
    if (!question || reading) return;
    problem.textContent = '';
    try {
      if (!current) {
        current = (await api('POST', '/sessions', { knowledge_base_id: kb.value })).data;
        // The address names the new session without rendering the page again.
        history.replaceState(null, '', `#/chat/${current.id}`);
      }
    } catch (error) {
      return fail(error);
    }
    const asked = userMessageView(question);
    const answer = answerView();
    empty?.remove();
    messages.append(asked, answer.node);
    answer.node.scrollIntoView({ block: 'nearest' });
    query.value = '';
    reading = new AbortController();
    streaming(true);
    let started = false;
    try {
      const body = { query: question, knowledge_base_ids: [kb.value] };
      if (model?.value) body.summary_model_id = model.value;
      await chat(current.id, body,
        (frame) => {
          // The session list shows the new title (the question) from the first frame on.
          if (!started) refreshSessions();
          started = true;
          // Follow the answer as it grows, unless the reader scrolled up to read something else.
          const following = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
          answer.take(frame);
          if (following) window.scrollTo(0, document.body.scrollHeight);
        }, reading.signal);
    } catch (error) {
      if (error.name === 'AbortError') return;
      if (error.status === 401) return fail(error);
      if (started) {
        answer.finish({ status: 'failed', error: error.message });
      } else {
        // Refused before any answer (409 one is running, 429 too many): nothing was
        // asked, so the question goes back into the box to try again.
        asked.remove();
        answer.node.remove();
        query.value = question;
        problem.textContent = error.message;
      }
    } finally {
      reading = null;
      if (alive) {
        streaming(false);
        refreshSessions();
      }
    }
  });

  fill(view, el('div', { class: 'chat' }, sessionPanel(list),
    el('section', { class: 'conversation' }, title, earlier, messages, empty, form)));
  if (stored.length) messages.lastElementChild.scrollIntoView({ block: 'nearest' });
  query.focus();
}

function sessionPanel(list) {
  return el('aside', { class: 'card session-panel' },
    el('a', { class: 'button', href: '#/chat', id: 'chat-new' }, t('chat.new')),
    el('h2', {}, t('chat.sessions')),
    list);
}

function userMessageView(text) {
  return el('li', { class: 'message user' }, el('p', { class: 'question' }, text));
}

function storedMessageView(m) {
  if (m.role === 'user') return userMessageView(m.content);
  const answer = answerView();
  answer.references(m.knowledge_references);
  answer.append(m.content);
  answer.finish(m);
  return answer.node;
}

/**
 * An assistant's answer on the page: filled at once from a stored message, or frame by
 * frame while one streams (`take`). The model's text only ever goes in as text nodes; each
 * `[n]` naming one of the answer's references becomes a button that opens that passage.
 */
function answerView() {
  const text = el('div', { class: 'answer-text' });
  const status = el('p', { class: 'answer-status muted' }, t('chat.searching'));
  const sources = el('ul', { class: 'references' });
  const node = el('li', { class: 'message assistant', 'data-status': 'streaming' }, text, status, sources);
  let content = '';
  let references = [];

  const open = (n) => {
    const details = sources.children[n - 1].querySelector('details');
    details.open = true;
    details.scrollIntoView({ block: 'nearest' });
  };
  // The whole text again at every piece: a citation may arrive cut in two ("[" then "1]").
  const show = () => {
    const parts = [];
    let last = 0;
    for (const match of content.matchAll(CITATION)) {
      const n = Number(match[1]);
      if (n < 1 || n > references.length) continue;
      parts.push(content.slice(last, match.index));
      parts.push(el('button', { type: 'button', class: 'cite', 'data-n': n,
        title: references[n - 1].knowledge_title, onclick: () => open(n) }, match[0]));
      last = match.index + match[0].length;
    }
    parts.push(content.slice(last));
    fill(text, parts);
  };

  const answer = {
    node,
    references(hits) {
      references = hits || [];
      fill(sources, references.map(referenceView));
      show();
    },
    append(piece) {
      content += piece;
      show();
    },
    /** The end: how it ended and what answered, from a stored message or a last frame. */
    finish({ status: outcome, answer_kind: kind, model, error, duration_ms: ms }) {
      node.dataset.status = outcome;
      const extractive = kind === 'extractive';
      fill(status,
        outcome === 'stopped' ? el('span', { class: 'stopped' }, t('chat.stopped')) : null,
        outcome === 'failed' ? el('span', { class: 'error-text' }, error || t('chat.failed')) : null,
        outcome === 'streaming' ? el('span', {}, t('chat.stillWriting')) : null,
        kind ? el('span', { class: 'model', 'data-answer-kind': kind },
          extractive ? t('chat.extractive') : t(outcome === 'failed' ? 'chat.model' : 'chat.answeredBy', { model })) : null,
        ms === null || ms === undefined ? null
          : el('span', {}, ms < 1000 ? t('chat.ms', { ms }) : t('chat.seconds', { s: (ms / 1000).toFixed(1) })));
      if (extractive) node.insertBefore(el('p', { class: 'extractive-note' }, t('chat.noModel')), sources);
    },
    /** One frame of the stream (see the chat API contract). */
    take(frame) {
      if (frame.response_type === 'references') {
        answer.references(frame.knowledge_references);
        status.textContent = t('chat.writing');
      } else if (frame.response_type === 'answer') {
        if (frame.content) answer.append(frame.content);
        if (frame.done) answer.finish(frame.data || { status: 'completed' });
      } else if (frame.response_type === 'error') {
        answer.finish({ ...frame.data, status: 'failed', error: frame.content });
      }
    },
  };
  return answer;
}

function referenceView(hit, i) {
  return el('li', { class: 'reference' },
    el('details', {},
      el('summary', {}, el('span', { class: 'ref-n' }, `[${i + 1}]`), ' ', hit.knowledge_title || hit.knowledge_filename,
        el('span', { class: 'muted' }, ' · ', t('chunks.position', { n: hit.chunk_index + 1 }))),
      el('p', { class: 'passage' }, hit.content),
      el('a', { class: 'ref-doc', href: passageHref(hit) }, t('chat.openDocument'))));
}

// ---------------------------------------------------------------- routing

async function render() {
  stopRefresh();
  stopRefresh = () => {};
  setLanguage(language());
  renderChrome();
  if (!apiKey()) return signInView();
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean);
  try {
    if (parts[0] === 'kb' && parts[1] && parts[2] === 'search') await searchView(parts[1], params);
    else if (parts[0] === 'kb' && parts[1]) await documentsView(parts[1]);
    else if (parts[0] === 'doc' && parts[1]) await chunksView(parts[1], params);
    else if (parts[0] === 'chat') await chatView(parts[1]);
    else await kbListView();
  } catch (error) {
    fail(error);
  }
}

window.addEventListener('hashchange', () => { flash(''); render(); });

api('GET', '/system/info')
  .then((info) => { system = info.data; })
  .catch(() => {})
  .finally(render);
