// Building the page from data without ever parsing data as HTML: every text from the API
// goes in as a text node, so a document or a name cannot inject markup.

/**
 * `el('a', {href: '#/', class: 'x', onclick: f}, 'text', child)`: an element with
 * attributes, event handlers (`on...`) and children (strings become text nodes; null,
 * undefined and false are skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces everything inside `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/**
 * `text` with every occurrence of the search terms wrapped in <mark>, case-insensitively.
 * Longer terms win where terms overlap (the segmenter gives both 数据库 and 数据).
 */
export function highlight(text, terms) {
  const words = [...new Set(terms.filter((w) => w && w.trim()))].sort((a, b) => b.length - a.length);
  if (words.length === 0) return [text];
  // Latin words match whole words only, as the full-text index does; CJK words anywhere.
  const alternatives = words.map((w) => {
    const escaped = w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return /^\w+$/.test(w) ? `\\b${escaped}\\b` : escaped;
  });
  const pattern = new RegExp(alternatives.join('|'), 'giu');
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    parts.push(el('mark', {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}
