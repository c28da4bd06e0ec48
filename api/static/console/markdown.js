// A tiny, safe Markdown subset for model output: paragraphs, headings, emphasis, inline code,
// fenced code blocks and lists. It builds DOM nodes from text (createElement, createTextNode):
// no string is ever parsed as HTML, so markup in the input is shown as the characters it is.
// Links and images are not rendered (their source text stays visible).

const FENCE = /^\s*(```|~~~)/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,9}[.)]\s+(.*)$/;
// Inline: `code`, **strong** / __strong__, *em* / _em_ (underscores only at word edges).
const INLINE = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|(?<!\w)__(?=\S)([\s\S]*?\S)__(?!\w)|\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<!\w)_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/;
const MAX_DEPTH = 8;

export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    if (FENCE.test(line)) {
      const marker = line.match(FENCE)[1];
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(marker); i++) body.push(lines[i]);
      i++;  // the closing fence (or the end)
      const code = document.createElement("code");
      code.textContent = body.join("\n");
      fragment.append(element("pre", [code]));
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      const level = Math.min(6, heading[1].length + 3);  // inside a page section: h4..h6
      fragment.append(element("h" + level, inline(heading[2], 0)));
      i++;
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      const pattern = BULLET.test(line) ? BULLET : NUMBERED;
      const items = [];
      for (; i < lines.length && pattern.test(lines[i]); i++) {
        items.push(element("li", inline(lines[i].match(pattern)[1], 0)));
      }
      fragment.append(element(pattern === BULLET ? "ul" : "ol", items));
      continue;
    }
    const paragraph = [];
    for (; i < lines.length && lines[i].trim() && !startsBlock(lines[i]); i++) {
      paragraph.push(lines[i].trim());
    }
    fragment.append(element("p", inline(paragraph.join(" "), 0)));
  }
  return fragment;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || BULLET.test(line) || NUMBERED.test(line);
}

function inline(text, depth) {
  const nodes = [];
  let rest = text;
  while (rest) {
    const match = depth < MAX_DEPTH ? rest.match(INLINE) : null;
    if (!match) { nodes.push(document.createTextNode(rest)); break; }
    if (match.index) nodes.push(document.createTextNode(rest.slice(0, match.index)));
    if (match[2] !== undefined) {
      const code = document.createElement("code");
      code.textContent = match[2].trim() ? match[2].replace(/^ (.*) $/, "$1") : match[2];
      nodes.push(code);
    } else if (match[3] !== undefined || match[4] !== undefined) {
      nodes.push(element("strong", inline(match[3] ?? match[4], depth + 1)));
    } else {
      nodes.push(element("em", inline(match[5] ?? match[6], depth + 1)));
    }
    rest = rest.slice(match.index + match[0].length);
  }
  return nodes;
}

function element(tag, children) {
  const node = document.createElement(tag);
  node.append(...children);
  return node;
}
