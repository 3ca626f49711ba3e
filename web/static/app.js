// alter0 console: chat streaming, task picker, jobs auto-refresh, confirm buttons. No build step.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };

  async function postJSON(url, body) {
    return fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json",
      "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
  }

  async function* ndjson(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line) yield JSON.parse(line);
      }
    }
  }

  // --- chat ---------------------------------------------------------------------------------------
  const form = document.getElementById("chat-form");
  if (form) {
    const conv = document.getElementById("conversation");
    const box = document.getElementById("content");
    const picker = document.getElementById("task-picker");
    const sendBtn = document.getElementById("send");
    const link = (tpl, id, text) => { const a = el("a", "", text); a.href = tpl.replace(/0$/, id); return a; };
    const scroll = () => window.scrollTo(0, document.body.scrollHeight);

    function say(cls, text) {
      const msg = el("div", "msg " + cls); const bubble = el(cls === "cmd" ? "pre" : "div", "bubble", text);
      msg.appendChild(bubble); conv.appendChild(msg); scroll(); return msg;
    }

    async function runCommand(text) {
      const r = await postJSON(form.dataset.send, { content: text });
      const data = await r.json();
      if (!r.ok) { say("cmd err", data.error ? data.error.message : "error"); return null; }
      say("cmd", data.text);
      if (data.data && "task_id" in data.data && picker) refreshPicker(data.data.task_id);
      return data;
    }

    function refreshPicker(taskId) {
      const value = taskId === null || taskId === undefined ? "none" : String(taskId);
      if (![...picker.options].some(o => o.value === value)) {
        const o = el("option", "", "#" + value); o.value = value; picker.appendChild(o);
      }
      picker.value = value;
    }

    async function send(text) {
      say("you", text);
      if (text.startsWith("/")) { await runCommand(text); return; }
      const msg = el("div", "msg bot"); const meta = el("div", "meta", "sending…");
      const bubble = el("div", "bubble reply"); const prog = el("div", "progress");
      msg.append(meta, bubble, prog); conv.appendChild(msg); scroll();
      const r = await postJSON(form.dataset.send, { content: text });
      if (!r.ok) { const d = await r.json().catch(() => ({})); meta.textContent = "error"; bubble.textContent = d.error ? d.error.message : r.statusText; bubble.classList.add("err"); return; }
      const jobId = r.headers.get("X-Job-Id");
      meta.textContent = ""; meta.append("job ", link(form.dataset.jobUrl, jobId, jobId), " queued");
      let reply = "", draft = "";
      for await (const ev of ndjson(r)) {
        if (ev.type === "routed") {
          meta.textContent = "";
          meta.append("job ", link(form.dataset.jobUrl, jobId, jobId), " → ", link(form.dataset.taskUrl, ev.task_id, "task #" + ev.task_id),
            ` (${ev.decision}, confidence ${ev.confidence === null ? "-" : Number(ev.confidence).toFixed(2)}${ev.reason ? ": " + ev.reason : ""})`);
          msg.dataset.task = ev.task_id;
        } else if (ev.type === "state") { prog.textContent = ev.to + "…";
        } else if (ev.type === "retry") { prog.textContent = `retrying ${ev.stage || ""} (${ev.kind || ""})…`;
        } else if (ev.type === "progress" && ev.kind === "executor.delta") {  // the model writing, token by token
          draft += (ev.data && ev.data.text) || ""; if (!reply) { bubble.textContent = draft; scroll(); } prog.textContent = "writing…";
        } else if (ev.type === "progress" && ev.kind === "executor.item") {
          prog.textContent = `${(ev.data && ev.data.type) || "working"}: ${(ev.data && ev.data.text) || ""}`.slice(0, 160);
        } else if (ev.type === "progress") { prog.textContent = (ev.kind || "working") + "…";
        } else if (ev.type === "error") { prog.textContent = `${ev.kind}: ${ev.message}`;
        } else if (ev.type === "chunk") { reply += ev.chunk; bubble.textContent = reply; scroll();
        } else if (ev.type === "timeout") { prog.textContent = ev.message;
        } else if (ev.type === "done") {
          if (ev.status === "done") { prog.textContent = ev.closed ? "task closed" : ""; }
          else { bubble.textContent = (ev.error && ev.error.message) || ev.status; bubble.classList.add("err"); prog.textContent = ev.status; }
          msg.dataset.status = ev.status;
        }
      }
    }

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = box.value.trim();
      if (!text) return;
      box.value = ""; sendBtn.disabled = true;
      try { await send(text); } catch (err) { say("cmd err", String(err)); } finally { sendBtn.disabled = false; box.focus(); }
    });
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    if (picker) picker.addEventListener("change", () => runCommand("/task use " + picker.value));
  }

  // --- diff view: light syntax highlighting of code lines (keywords, strings, numbers, comments) ------
  const TOKENS = /(#.*$|\/\/.*$)|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|\b(def|class|return|if|elif|else|for|while|import|from|as|with|try|except|finally|raise|function|const|let|var|async|await|yield|in|not|and|or|None|True|False|null|true|false|fn|pub|struct|impl|use)\b|\b(\d+(?:\.\d+)?)\b/g;
  document.querySelectorAll(".diff-body span.d-add, .diff-body span.d-del, .diff-body span.d-ctx").forEach((line) => {
    const text = line.textContent;
    const frag = document.createDocumentFragment();
    frag.appendChild(document.createTextNode(text.charAt(0)));
    const body = text.slice(1);
    let last = 0;
    body.replace(TOKENS, (m, comment, str, kw, num, at) => {
      frag.appendChild(document.createTextNode(body.slice(last, at)));
      frag.appendChild(el("span", comment ? "tok-c" : str ? "tok-s" : kw ? "tok-k" : "tok-n", m));
      last = at + m.length;
      return m;
    });
    frag.appendChild(document.createTextNode(body.slice(last)));
    line.textContent = "";
    line.appendChild(frag);
  });

  // --- confirm buttons ----------------------------------------------------------------------------
  document.addEventListener("submit", (e) => {
    const f = e.target;
    if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) e.preventDefault();
  }, true);

  // --- jobs auto-refresh --------------------------------------------------------------------------
  const live = document.getElementById("jobs-live");
  if (live) {
    const toggle = document.getElementById("auto-refresh");
    setInterval(async () => {
      if (!toggle.checked || document.hidden) return;
      try {
        const r = await fetch(live.dataset.src, { headers: { "Accept": "text/html" } });
        if (r.ok) live.innerHTML = await r.text();
      } catch (err) { /* the next tick tries again */ }
    }, 2000);
  }
})();
