import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { escapeHtml, renderInline, renderMarkdown } from "../src/markdown";

describe("renderMarkdown", () => {
  const cases: Array<[string, string, string]> = [
    ["paragraph", "hello world", "<p>hello world</p>"],
    ["two paragraphs", "a\n\nb", "<p>a</p>\n<p>b</p>"],
    ["soft line break stays inside the paragraph", "a\nb", "<p>a\nb</p>"],
    ["heading", "## Title", "<h2>Title</h2>"],
    ["heading with closing hashes", "# Title ##", "<h1>Title</h1>"],
    ["rule", "---", "<hr>"],
    ["fenced code keeps text verbatim", "```py\nx = 1 < 2\n```", '<pre><code class="language-py">x = 1 &lt; 2</code></pre>'],
    ["tilde fence", "~~~\na\n~~~", "<pre><code>a</code></pre>"],
    ["unclosed fence while streaming", "text\n```js\nlet a", '<p>text</p>\n<pre><code class="language-js">let a</code></pre>'],
    ["markup inside code is not rendered", "```\n**x** <b>\n```", "<pre><code>**x** &lt;b&gt;</code></pre>"],
    ["unordered list", "- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"],
    ["ordered list keeps its start", "3. a\n4. b", '<ol start="3">\n<li>a</li>\n<li>b</li>\n</ol>'],
    ["nested list", "- a\n  - b\n- c", "<ul>\n<li>a\n<ul>\n<li>b</li>\n</ul></li>\n<li>c</li>\n</ul>"],
    ["list after paragraph", "Steps:\n1. one\n2. two", "<p>Steps:</p>\n<ol>\n<li>one</li>\n<li>two</li>\n</ol>"],
    ["block quote", "> quoted\n> more", "<blockquote>\n<p>quoted\nmore</p>\n</blockquote>"],
    [
      "table",
      "| a | b |\n|---|:-:|\n| `x` | a \\| b |",
      "<table>\n<thead><tr><th>a</th><th>b</th></tr></thead>\n<tbody>\n<tr><td><code>x</code></td><td>a | b</td></tr>\n</tbody>\n</table>",
    ],
  ];
  for (const [name, source, html] of cases) {
    it(name, () => assert.equal(renderMarkdown(source), html));
  }

  it("never passes raw HTML through", () => {
    const html = renderMarkdown('<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">');
    assert.ok(!html.includes("<script"), html);
    assert.ok(!html.includes("<img"), html);
    assert.ok(html.includes("&lt;script&gt;"), html);
  });

  it("handles CRLF and an empty document", () => {
    assert.equal(renderMarkdown("a\r\n\r\nb"), "<p>a</p>\n<p>b</p>");
    assert.equal(renderMarkdown(""), "");
  });
});

describe("renderInline", () => {
  const cases: Array<[string, string, string]> = [
    ["bold and italics", "**b** and *i* and _j_", "<strong>b</strong> and <em>i</em> and <em>j</em>"],
    ["snake_case is not emphasis", "call my_func_name now", "call my_func_name now"],
    ["code span is literal", "`a *b* <c>`", "<code>a *b* &lt;c&gt;</code>"],
    ["double-backtick code span", "`` a`b ``", "<code>a`b</code>"],
    ["strike-through", "~~old~~", "<del>old</del>"],
    ["http link", "[docs](https://example.com/a?b=1&c=2)", '<a href="https://example.com/a?b=1&amp;c=2">docs</a>'],
    ["javascript: link loses its target", "[x](javascript:void0) and [y](data:text/html,z)", "x and y"],
    ["autolink", "<https://x.org>", '<a href="https://x.org">https://x.org</a>'],
    ["attribute injection is escaped", '[x](https://a.b/"onmouseover="x)', '<a href="https://a.b/&quot;onmouseover=&quot;x">x</a>'],
    ["hard break", "a  \nb", "a<br>\nb"],
  ];
  for (const [name, source, html] of cases) {
    it(name, () => assert.equal(renderInline(source), html));
  }
});

describe("escapeHtml", () => {
  it("escapes the five characters", () => assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"));
});
