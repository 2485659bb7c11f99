// The interface's words in English and Chinese. The language follows the browser until the
// user picks one with the switch in the header; the choice is kept in localStorage.

const STRINGS = {
  en: {
    'lang.switch': '中文',
    'nav.kbs': 'Knowledge bases',
    'signin.title': 'Sign in',
    'signin.help': 'Enter an API key. The first admin key is ADMIN_API_KEY in the stack\'s .env file.',
    'signin.key': 'API key',
    'signin.remember': 'Remember on this browser',
    'signin.submit': 'Sign in',
    'signin.out': 'Sign out',
    'signin.expired': 'The API key was refused. Sign in again.',
    'kbs.title': 'Knowledge bases',
    'kbs.empty': 'No knowledge base yet. Create the first one below.',
    'kbs.create': 'New knowledge base',
    'kbs.name': 'Name',
    'kbs.description': 'Description',
    'kbs.submit': 'Create',
    'kbs.created': 'Created',
    'kbs.chunking': 'Chunks of {size} characters, overlap {overlap}',
    'kbs.delete': 'Delete',
    'kbs.confirmDelete': 'Delete the knowledge base “{name}” with all its documents? This cannot be undone.',
    'kbs.deleted': 'Deleted “{name}”.',
    'tab.documents': 'Documents',
    'tab.search': 'Search',
    'kb.embedding': 'Vectors: {model} ({dims} dimensions)',
    'kb.noEmbedding': 'Vectors: none yet (made with the configured embedding model as documents are added)',
    'kb.reindex': 'Rebuild vectors',
    'kb.confirmReindex': 'Make every document’s vectors again with the configured embedding model? Search answers by keyword until they are done.',
    'kb.reindexed': '{n} documents are getting new vectors from {model}.',
    'vectors.none': '',
    'vectors.pending': 'vectors waiting',
    'vectors.processing': 'embedding',
    'vectors.completed': 'vectors',
    'vectors.failed': 'no vectors',
    'match.keyword': 'keyword',
    'match.vector': 'meaning',
    'match.both': 'keyword + meaning',
    'upload.drop': 'Drop files here or choose them',
    'upload.choose': 'Choose files',
    'upload.limit': 'Up to {mb} MB per file. PDF, Word, Excel, PowerPoint, Markdown, text, HTML, CSV, EPUB and images.',
    'upload.tooLarge': '{name} is {size}: larger than the {mb} MB limit. Nothing was sent.',
    'upload.empty': '{name} is empty. Nothing was sent.',
    'upload.queued': 'uploaded',
    'upload.text': 'Add text',
    'upload.url': 'Add a web page',
    'upload.title': 'Title',
    'upload.content': 'Text',
    'upload.urlField': 'URL',
    'upload.add': 'Add',
    'docs.title': 'Title',
    'docs.type': 'Type',
    'docs.size': 'Size',
    'docs.status': 'Status',
    'docs.chunks': 'Chunks',
    'docs.added': 'Added',
    'docs.empty': 'No documents yet.',
    'docs.view': 'Chunks',
    'docs.reparse': 'Parse again',
    'docs.delete': 'Delete',
    'docs.confirmDelete': 'Delete “{name}”, its chunks and its stored file?',
    'docs.total': '{n} documents',
    'docs.totalOne': '1 document',
    'status.pending': 'waiting',
    'status.processing': 'parsing',
    'status.completed': 'completed',
    'status.failed': 'failed',
    'search.placeholder': 'Search this knowledge base',
    'search.submit': 'Search',
    'search.topK': 'Results',
    'search.none': 'Nothing matches “{q}”.',
    'search.count': '{n} passages for “{q}”',
    'search.countOne': '1 passage for “{q}”',
    'search.score': 'score {score}',
    'chunks.title': 'Chunks of {name}',
    'chunks.back': 'Back to the documents',
    'chunks.position': 'Chunk {n}',
    'chunks.empty': 'This document has no chunks (yet).',
    'page.prev': 'Previous',
    'page.next': 'Next',
    'page.of': 'Page {page} of {pages}',
    'err.network': 'The server could not be reached. Is the stack running (cargo xtask ps)?',
    'err.gateway': 'The app is not answering behind the web server (HTTP {status}). Check it with cargo xtask ps and cargo xtask logs app.',
    'err.tooLarge': 'The file is larger than the server accepts (MAX_FILE_SIZE_MB).',
    'err.unexpected': 'Unexpected answer from the server (HTTP {status}).',
    'footer.version': 'weknora {version} · schema {schema}',
  },
  zh: {
    'lang.switch': 'English',
    'nav.kbs': '知识库',
    'signin.title': '登录',
    'signin.help': '请输入 API 密钥。第一个管理员密钥是部署目录 .env 文件中的 ADMIN_API_KEY。',
    'signin.key': 'API 密钥',
    'signin.remember': '在此浏览器上记住',
    'signin.submit': '登录',
    'signin.out': '退出',
    'signin.expired': 'API 密钥被拒绝，请重新登录。',
    'kbs.title': '知识库',
    'kbs.empty': '还没有知识库。请在下方创建第一个。',
    'kbs.create': '新建知识库',
    'kbs.name': '名称',
    'kbs.description': '描述',
    'kbs.submit': '创建',
    'kbs.created': '创建于',
    'kbs.chunking': '分块 {size} 字符，重叠 {overlap}',
    'kbs.delete': '删除',
    'kbs.confirmDelete': '删除知识库“{name}”及其全部文档？此操作无法撤销。',
    'kbs.deleted': '已删除“{name}”。',
    'tab.documents': '文档',
    'tab.search': '检索',
    'kb.embedding': '向量：{model}（{dims} 维）',
    'kb.noEmbedding': '向量：暂无（添加文档时用配置的向量模型生成）',
    'kb.reindex': '重建向量',
    'kb.confirmReindex': '用配置的向量模型重新生成所有文档的向量？完成之前检索只按关键词进行。',
    'kb.reindexed': '{n} 个文档正在由 {model} 重新生成向量。',
    'vectors.none': '',
    'vectors.pending': '等待向量化',
    'vectors.processing': '向量化中',
    'vectors.completed': '已向量化',
    'vectors.failed': '无向量',
    'match.keyword': '关键词',
    'match.vector': '语义',
    'match.both': '关键词 + 语义',
    'upload.drop': '将文件拖放到此处，或选择文件',
    'upload.choose': '选择文件',
    'upload.limit': '每个文件最大 {mb} MB。支持 PDF、Word、Excel、PowerPoint、Markdown、文本、HTML、CSV、EPUB 和图片。',
    'upload.tooLarge': '{name} 大小为 {size}，超过 {mb} MB 的上限，未上传。',
    'upload.empty': '{name} 是空文件，未上传。',
    'upload.queued': '已上传',
    'upload.text': '添加文本',
    'upload.url': '添加网页',
    'upload.title': '标题',
    'upload.content': '正文',
    'upload.urlField': '网址',
    'upload.add': '添加',
    'docs.title': '标题',
    'docs.type': '类型',
    'docs.size': '大小',
    'docs.status': '状态',
    'docs.chunks': '分块',
    'docs.added': '添加于',
    'docs.empty': '还没有文档。',
    'docs.view': '查看分块',
    'docs.reparse': '重新解析',
    'docs.delete': '删除',
    'docs.confirmDelete': '删除“{name}”及其分块和存储的文件？',
    'docs.total': '共 {n} 个文档',
    'status.pending': '等待中',
    'status.processing': '解析中',
    'status.completed': '已完成',
    'status.failed': '失败',
    'search.placeholder': '在此知识库中检索',
    'search.submit': '检索',
    'search.topK': '结果数',
    'search.none': '没有与“{q}”匹配的内容。',
    'search.count': '“{q}”的 {n} 个段落',
    'search.score': '得分 {score}',
    'chunks.title': '{name} 的分块',
    'chunks.back': '返回文档列表',
    'chunks.position': '第 {n} 块',
    'chunks.empty': '此文档（暂时）没有分块。',
    'page.prev': '上一页',
    'page.next': '下一页',
    'page.of': '第 {page} / {pages} 页',
    'err.network': '无法连接服务器。服务是否在运行（cargo xtask ps）？',
    'err.gateway': 'Web 服务器后面的应用没有响应（HTTP {status}）。请用 cargo xtask ps 和 cargo xtask logs app 检查。',
    'err.tooLarge': '文件超过服务器允许的大小（MAX_FILE_SIZE_MB）。',
    'err.unexpected': '服务器返回了意外的响应（HTTP {status}）。',
    'footer.version': 'weknora {version} · 数据库结构 {schema}',
  },
};

const LANG_KEY = 'weknora.lang';

export function language() {
  const chosen = localStorage.getItem(LANG_KEY);
  if (chosen && STRINGS[chosen]) return chosen;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export function setLanguage(lang) {
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

/**
 * The text for `key` in the current language, with `{name}` placeholders filled in. With
 * `n: 1`, the key's singular form (`<key>One`) where the language has one.
 */
export function t(key, values = {}) {
  const strings = STRINGS[language()];
  const singular = values.n === 1 ? strings[`${key}One`] : undefined;
  const text = singular ?? strings[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function formatDate(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString(language() === 'zh' ? 'zh-CN' : 'en-GB', {
    dateStyle: 'medium',
    timeStyle: 'short',
  });
}
