/**
 * A small, safe Markdown → HTML renderer for the Kimi panel.
 *
 * Safe by construction: every piece of source text is HTML-escaped before it is wrapped in tags this module
 * writes itself, so model output can never inject markup or script. Links keep only http(s) and mailto targets.
 * It covers what chat models write: ATX headings, paragraphs, fenced code (also an unclosed fence while a reply
 * is still streaming), indented lists (ordered and not, nested), block quotes, GFM tables, rules, and inline
 * code, bold, italics, strike-through, links and autolinks.
 * No vscode import: unit-tested under plain Node.
 */

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

const SAFE_URL = /^(https?:\/\/|mailto:)/i;

/** Inline markup of one block's text (already split into lines by the block parser). */
export function renderInline(text: string): string {
  // Pull code spans out first: nothing inside them is markup.
  const codes: string[] = [];
  const stash = (html: string) => `\u0000${codes.push(html) - 1}\u0000`;
  let s = text.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_m, _ticks: string, code: string) =>
    stash(`<code>${escapeHtml(code.trim() === "" ? code : code.replace(/^ (.*) $/s, "$1"))}</code>`),
  );
  // Links before escaping, so the URL is taken verbatim and then escaped as an attribute.
  s = s.replace(/\[([^\]\n]+)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g, (_m, label: string, url: string) => {
    if (!SAFE_URL.test(url)) {
      return stash(escapeHtml(label));
    }
    return stash(`<a href="${escapeHtml(url)}">${renderEmphasis(escapeHtml(label))}</a>`);
  });
  s = s.replace(/<(https?:\/\/[^\s<>]+)>/g, (_m, url: string) => stash(`<a href="${escapeHtml(url)}">${escapeHtml(url)}</a>`));
  s = renderEmphasis(escapeHtml(s));
  // Two trailing spaces or a backslash at the end of a line: hard break.
  s = s.replace(/(?: {2,}|\\)\n/g, "<br>\n");
  return s.replace(/\u0000(\d+)\u0000/g, (_m, i: string) => codes[Number(i)]);
}

function renderEmphasis(s: string): string {
  return s
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>");
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

/**
 * Called for each fenced code block, in document order, with its text, its language and the `<pre>` written for
 * it; returns the HTML to use instead (e.g. with an "Apply" button). `closed` is false for a fence still open at the
 * end (a reply that is still streaming).
 */
export type CodeBlockHook = (code: string, lang: string, html: string, closed: boolean) => string;

/** Render a whole Markdown document (or a prefix of one, while it streams in). */
export function renderMarkdown(source: string, onCode?: CodeBlockHook): string {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  return renderBlocks(lines, onCode).join("\n");
}

function renderBlocks(lines: string[], onCode?: CodeBlockHook): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      const lang = fence[2];
      const body: string[] = [];
      i++;
      while (i < lines.length && !isClosingFence(lines[i], marker)) {
        body.push(lines[i]);
        i++;
      }
      const closed = i < lines.length;
      i++; // the closing fence (or past the end while the reply still streams)
      const cls = lang ? ` class="language-${escapeHtml(lang)}"` : "";
      const html = `<pre><code${cls}>${escapeHtml(body.join("\n"))}</code></pre>`;
      out.push(onCode ? onCode(body.join("\n"), lang, html, closed) : html);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${renderInline(heading[2] ?? "")}</h${level}>`);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      out.push("<hr>");
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner: string[] = [];
      while (i < lines.length && lines[i].trim() !== "" && (QUOTE.test(lines[i]) || inner.length > 0)) {
        const m = QUOTE.exec(lines[i]);
        inner.push(m ? m[1] : lines[i]);
        i++;
      }
      out.push(`<blockquote>\n${renderBlocks(inner, onCode).join("\n")}\n</blockquote>`);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const end = listEnd(lines, i);
      out.push(renderList(lines.slice(i, end), onCode));
      i = end;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEPARATOR.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const rows: string[] = [line];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim() !== "") {
        rows.push(lines[i]);
        i++;
      }
      out.push(renderTable(rows));
      continue;
    }
    // Paragraph: up to a blank line or the start of another block.
    const para: string[] = [];
    while (i < lines.length && lines[i].trim() !== "" && (para.length === 0 || !startsBlock(lines[i]))) {
      para.push(lines[i].replace(/^\s+/, ""));
      i++;
    }
    out.push(`<p>${renderInline(para.join("\n"))}</p>`);
  }
  return out;
}

function isClosingFence(line: string, marker: string): boolean {
  const t = line.trim();
  return t.length >= marker.length && t[0] === marker[0] && /^([`~])\1*$/.test(t);
}

function startsBlock(line: string): boolean {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

/** Where the list starting at `start` ends: a blank line followed by a non-indented non-item, or another block. */
function listEnd(lines: string[], start: number): number {
  const baseIndent = LIST_ITEM.exec(lines[start])![1].length;
  let i = start + 1;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      const next = lines[i + 1];
      if (next === undefined) {
        return i;
      }
      const m = LIST_ITEM.exec(next);
      const indent = next.length - next.trimStart().length;
      if ((m && m[1].length >= baseIndent) || indent > baseIndent) {
        i++;
        continue;
      }
      return i;
    }
    const m = LIST_ITEM.exec(line);
    if (m && m[1].length < baseIndent) {
      return i;
    }
    if (!m && line.length - line.trimStart().length <= baseIndent && startsBlock(line)) {
      return i;
    }
    i++;
  }
  return i;
}

function renderList(lines: string[], onCode?: CodeBlockHook): string {
  const first = LIST_ITEM.exec(lines[0])!;
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items: string[][] = [];
  for (const line of lines) {
    const m = LIST_ITEM.exec(line);
    if (m && m[1].length === baseIndent) {
      items.push([m[3]]);
    } else {
      // Continuation or nested content: drop the item's indentation so nested lists parse from column 0.
      const strip = Math.min(line.length - line.trimStart().length, baseIndent + 2 + (ordered ? 1 : 0));
      items[items.length - 1].push(line.slice(strip));
    }
  }
  const start = ordered ? parseInt(first[2], 10) : 1;
  const open = ordered ? (start !== 1 ? `<ol start="${start}">` : "<ol>") : "<ul>";
  const body = items.map((item) => {
    const [head, ...rest] = item;
    const nested = rest.some((l) => l.trim() !== "") ? "\n" + renderBlocks(rest, onCode).join("\n") : "";
    return `<li>${renderInline(head)}${nested}</li>`;
  });
  return `${open}\n${body.join("\n")}\n${ordered ? "</ol>" : "</ul>"}`;
}

function splitRow(row: string): string[] {
  let t = row.trim();
  if (t.startsWith("|")) {
    t = t.slice(1);
  }
  if (t.endsWith("|") && !t.endsWith("\\|")) {
    t = t.slice(0, -1);
  }
  return t.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function renderTable(rows: string[]): string {
  const [head, ...body] = rows;
  const cells = (row: string, tag: string) => splitRow(row).map((c) => `<${tag}>${renderInline(c)}</${tag}>`).join("");
  const bodyHtml = body.map((r) => `<tr>${cells(r, "td")}</tr>`).join("\n");
  return `<table>\n<thead><tr>${cells(head, "th")}</tr></thead>\n<tbody>\n${bodyHtml}\n</tbody>\n</table>`;
}
