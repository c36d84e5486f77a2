// Python-Markdown renders ```mermaid as <pre><code class="language-mermaid">; mermaid wants
// <pre class="mermaid">. Without mermaid (offline) the source stays as it is.
document.addEventListener("DOMContentLoaded", function () {
  if (typeof mermaid === "undefined") {
    return;
  }
  document.querySelectorAll("pre > code.language-mermaid").forEach(function (code) {
    var pre = code.parentElement;
    pre.className = "mermaid";
    pre.textContent = code.textContent;
  });
  mermaid.initialize({ startOnLoad: false });
  mermaid.run({ querySelector: "pre.mermaid" });
});
